#include "util/buf.h"

#include <stdarg.h>
#include <stdbool.h>

#include "util/mem.h"

void buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = sl_realloc(b->data, cap);
    b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    if (!len)
        return;
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_u64(struct buf *b, uint64_t v)
{
    char tmp[24];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        buf_reserve(b, (size_t)n + 1);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

char *buf_take(struct buf *b, size_t *len)
{
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_pool_take(struct buf_pool *p, struct buf *b)
{
    if (b->data || p->n == 0)
        return;
    p->n--;
    b->data = p->spare[p->n].data;
    b->cap = p->spare[p->n].cap;
    b->len = 0;
}

void buf_pool_give(struct buf_pool *p, struct buf *b)
{
    bool keep = b->data && p->n < BUF_POOL_MAX && b->cap <= BUF_POOL_MAX_CAP;
#ifdef SL_ASAN
    keep = false; /* ASan sees a use after free rather than reused bytes */
#endif
    if (!keep) {
        buf_release(b);
        return;
    }
    p->spare[p->n].data = b->data;
    p->spare[p->n].cap = b->cap;
    p->n++;
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_pool_clear(struct buf_pool *p)
{
    while (p->n > 0)
        free(p->spare[--p->n].data);
}
