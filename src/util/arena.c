#include "util/arena.h"

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

struct arena {
    struct arena_block *head;
    size_t next_size;
    struct arena_cleanup *cleanups;
};

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
    struct arena *a = sl_malloc(sizeof(*a));
    a->head = arena_block_new(first_block);
    a->next_size = first_block * 2;
    a->cleanups = NULL;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    for (struct arena_cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void arena_reset(struct arena *a, size_t keep_max)
{
    for (struct arena_cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    a->cleanups = NULL;
    struct arena_block *keep = a->head;
    struct arena_block *b = keep->next;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    if (keep->size > keep_max) {
        free(keep);
        keep = arena_block_new(keep_max);
    }
    keep->next = NULL;
    keep->used = 0;
    a->head = keep;
    a->next_size = keep->size * 2;
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
