#include "util/arena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

struct arena_block {
    struct arena_block *next;
    size_t size, used;
    max_align_t data[];
};

struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *arg);
    void *arg;
};

/* The first block is allocated with the arena itself (one malloc per
 * arena), right after it; later blocks have allocations of their own. */
struct arena {
    struct arena_block *head;
    size_t next_size;
    struct arena_cleanup *cleanups;
    struct arena_block *first;
};

#define ARENA_HEAD_SIZE                                                                            \
    ((sizeof(struct arena) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))

static struct arena_block *arena_block_new(size_t size)
{
    struct arena_block *b = sl_malloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

struct arena *arena_new(size_t first_block)
{
    struct arena *a = sl_malloc(ARENA_HEAD_SIZE + sizeof(struct arena_block) + first_block);
    a->first = (struct arena_block *)((char *)a + ARENA_HEAD_SIZE);
    a->first->next = NULL;
    a->first->size = first_block;
    a->first->used = 0;
    a->head = a->first;
    a->next_size = first_block * 2;
    a->cleanups = NULL;
    return a;
}

/* Runs the cleanups and frees every block but the first: what freeing and
 * reusing have in common. */
static void arena_release_blocks(struct arena *a)
{
    for (struct arena_cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    a->cleanups = NULL;
    struct arena_block *b = a->head;
    while (b != a->first) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = a->first;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    arena_release_blocks(a);
    free(a);
}

struct arena *arena_pool_get(struct arena_pool *p, size_t first_block)
{
    if (p->n == 0)
        return arena_new(first_block);
    return p->spare[--p->n];
}

void arena_pool_put(struct arena_pool *p, struct arena *a)
{
    bool keep = p->n < ARENA_POOL_MAX;
#ifdef SL_ASAN
    /* Under ASan every arena is freed, so a pointer kept past its request
     * is a use after free it reports, not a read of the next request. */
    keep = false;
#endif
    if (!keep) {
        arena_free(a);
        return;
    }
    arena_reset(a, ARENA_POOL_KEEP_MAX);
    p->spare[p->n++] = a;
}

void arena_pool_clear(struct arena_pool *p)
{
    while (p->n > 0)
        arena_free(p->spare[--p->n]);
}

void arena_reset(struct arena *a, size_t keep_max)
{
    for (struct arena_cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    a->cleanups = NULL;
    /* The newest block is kept (a large document's block serves the next
     * one too) unless it passes <keep_max>; the first block, allocated
     * with the arena, always stays. */
    struct arena_block *keep = a->head == a->first || a->head->size > keep_max ? NULL : a->head;
    struct arena_block *b = a->head;
    while (b != a->first) {
        struct arena_block *next = b->next;
        if (b != keep)
            free(b);
        b = next;
    }
    a->first->used = 0;
    a->first->next = NULL;
    if (keep) {
        keep->next = a->first;
        keep->used = 0;
    }
    a->head = keep ? keep : a->first;
    a->next_size = a->head->size * 2;
}

void *arena_alloc(struct arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    struct arena_block *b = a->head;
    if (b->size - b->used < n) {
        size_t size = a->next_size > n ? a->next_size : n;
        if (a->next_size < (1u << 20))
            a->next_size *= 2;
        b = arena_block_new(size);
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void *arena_calloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *arena_realloc(struct arena *a, void *p, size_t old, size_t n)
{
    if (n <= old)
        return p;
    const size_t align = sizeof(max_align_t);
    struct arena_block *b = a->head;
    size_t old_rounded = (old + align - 1) & ~(align - 1);
    /* The last allocation of the newest block can grow where it stands. */
    if (p && (char *)p + old_rounded == (char *)b->data + b->used &&
        b->used - old_rounded + n <= b->size) {
        b->used = b->used - old_rounded + ((n + align - 1) & ~(align - 1));
        return p;
    }
    void *q = arena_alloc(a, n);
    if (old)
        memcpy(q, p, old);
    return q;
}

void arena_on_free(struct arena *a, void (*fn)(void *arg), void *arg)
{
    struct arena_cleanup *c = arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
}
