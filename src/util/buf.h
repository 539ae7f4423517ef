#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H
/* A growable byte buffer on the heap. The struct is embedded by its owner;
 * buf_release frees the bytes, buf_take hands them over. */
#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data;
    size_t len, cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_append_u64(struct buf *b, uint64_t v);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the bytes (caller owns them, free()) and leaves <b> empty. */
char *buf_take(struct buf *b, size_t *len);
void buf_release(struct buf *b);

/* Spare buffer memory for one thread, so that a buffer emptied after each
 * message (a connection's output) does not cost a malloc and a free per
 * message. Buffers larger than BUF_POOL_MAX_CAP are freed, not kept. */
#define BUF_POOL_MAX 128
#define BUF_POOL_MAX_CAP 16384
struct buf_pool {
    struct {
        char *data;
        size_t cap;
    } spare[BUF_POOL_MAX];
    int n;
};
/* Gives <b> (empty, without memory) spare memory from <p>, if any. */
void buf_pool_take(struct buf_pool *p, struct buf *b);
/* As buf_release(<b>), keeping its memory in <p> when there is room. */
void buf_pool_give(struct buf_pool *p, struct buf *b);
void buf_pool_clear(struct buf_pool *p);

#endif
