#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H
/* A bump allocator for one exchange's lifetime (after h2o's req->pool and
 * nginx's ngx_pool_t): request-scoped allocations never get an individual
 * free; arena_free() releases them all at once. Out of memory aborts. */
#include <stddef.h>

struct arena;

struct arena *arena_new(size_t first_block);
/* Runs the cleanup hooks (newest first), then frees every block and <a>
 * itself; pointers handed out die with it. */
void arena_free(struct arena *a);
/* Run <fn>(<arg>) when <a> is freed: for what the arena's memory points to
 * but does not hold (a library object, a file). */
void arena_on_free(struct arena *a, void (*fn)(void *arg), void *arg);
/* Empties <a> for reuse: runs the cleanup hooks, frees every block but the
 * newest (the largest) and the first (made with the arena), and the newest
 * too when it is larger than <keep_max>. An arena reused for one
 * short job after another (a worker's scratch space) thus stops calling
 * malloc once its block fits the jobs, which also spares the heap the
 * growing and trimming of large blocks on every job. Pointers handed out
 * before die. */
void arena_reset(struct arena *a, size_t keep_max);
void *arena_alloc(struct arena *a, size_t n);
void *arena_calloc(struct arena *a, size_t n);
/* A NUL-terminated copy of <len> bytes at <s>. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
/* Grows the allocation <p> of <old> bytes to <n> bytes (copying when it cannot
 * grow in place). */
void *arena_realloc(struct arena *a, void *p, size_t old, size_t n);

/* Arenas to reuse, for one thread: an exchange per request would otherwise
 * cost a malloc and a free of its first block. At most ARENA_POOL_MAX are
 * kept (about 0.5 MB with 4 KiB first blocks); what an arena grew beyond
 * its first block is freed when it is put back. 16 were too few for 64
 * busy connections: glibc then trimmed the heap (madvise) on a quarter of
 * the requests (bench/run.sh with BENCH_SYSCALLS=1). */
#define ARENA_POOL_MAX 128
/* A pooled arena that grew keeps its newest block up to this size: a
 * route whose requests outgrow the first block (the limit headers, a
 * GraphQL body) would otherwise malloc and free a block per request. At
 * most ARENA_POOL_MAX * (first block + this) per thread: 2.5 MB. */
#define ARENA_POOL_KEEP_MAX (16u * 1024)
struct arena_pool {
    struct arena *spare[ARENA_POOL_MAX];
    int n;
};
/* A reset arena from <p>, or a new one whose first block is <first_block>
 * bytes (the pool's arenas keep the size they were made with). */
struct arena *arena_pool_get(struct arena_pool *p, size_t first_block);
/* As arena_free(<a>) for its user: cleanups run, pointers die; its first
 * block (and its newest, up to ARENA_POOL_KEEP_MAX) waits in <p> for the
 * next arena_pool_get. */
void arena_pool_put(struct arena_pool *p, struct arena *a);
/* Frees every arena <p> holds. */
void arena_pool_clear(struct arena_pool *p);

#endif
