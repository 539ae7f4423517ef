/* util/arena: arena_reset, the reuse of a scratch arena (graphql/module.c),
 * and the pool of exchange arenas (pipeline/exchange.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/arena.c"

static int cleanups;

static void count_cleanup(void *arg)
{
    cleanups += *(int *)arg;
}

static void test_reset_keeps_the_largest_block(void **state)
{
    struct arena *a = arena_new(64);
    int one = 1;
    arena_on_free(a, count_cleanup, &one);
    for (int i = 0; i < 100; i++)
        memset(arena_alloc(a, 100), 0xAB, 100); /* several blocks, doubling */
    struct arena_block *newest = a->head;
    assert_non_null(newest->next);
    arena_reset(a, 1 << 20);
    assert_int_equal(cleanups, 1); /* the hooks ran, once */
    assert_ptr_equal(a->head, newest);
    assert_ptr_equal(a->head->next, a->first); /* and the block made with the arena */
    assert_null(a->first->next);
    assert_int_equal(a->head->used, 0);
    assert_int_equal(a->first->used, 0);
    assert_null(a->cleanups);
    /* The same job again fits the kept block: no new block. */
    for (int i = 0; i < 100 && a->head->size - a->head->used >= 112; i++)
        arena_alloc(a, 100);
    assert_ptr_equal(a->head, newest);
    arena_free(a);
    assert_int_equal(cleanups, 1); /* not run again */
}

static void test_reset_drops_a_block_past_the_bound(void **state)
{
    struct arena *a = arena_new(64);
    char *big = arena_alloc(a, 100000);
    memset(big, 1, 100000);
    assert_true(a->head->size >= 100000);
    arena_reset(a, 4096);
    assert_ptr_equal(a->head, a->first); /* back to the block made with the arena */
    assert_int_equal(a->head->size, 64);
    assert_null(a->head->next);
    char *p = arena_strndup(a, "abc", 3);
    assert_string_equal(p, "abc");
    arena_free(a);
}

static void test_pool_reuses_an_arena_reset(void **state)
{
    struct arena_pool pool = {0};
    struct arena *a = arena_pool_get(&pool, 256);
    int one = 1;
    arena_on_free(a, count_cleanup, &one);
    cleanups = 0;
    memset(arena_alloc(a, 5000), 1, 5000); /* a second block */
    arena_pool_put(&pool, a);
    assert_int_equal(cleanups, 1);
#ifndef SL_ASAN
    assert_int_equal(pool.n, 1);
    struct arena *b = arena_pool_get(&pool, 256);
    assert_ptr_equal(b, a); /* the same memory, emptied */
    /* The grown block is kept for the next request (ARENA_POOL_KEEP_MAX). */
    assert_ptr_not_equal(b->head, b->first);
    assert_true(b->head->size >= 5000);
    assert_ptr_equal(b->head->next, b->first);
    assert_int_equal(b->head->used, 0);
    assert_int_equal(b->first->used, 0);
    assert_null(b->cleanups);
    /* One past the bound is not kept. */
    memset(arena_alloc(b, ARENA_POOL_KEEP_MAX + 1), 1, ARENA_POOL_KEEP_MAX + 1);
    arena_pool_put(&pool, b);
    b = arena_pool_get(&pool, 256);
    assert_ptr_equal(b->head, b->first);
    assert_null(b->head->next);
#else
    assert_int_equal(pool.n, 0); /* freed, so ASan sees a use after free */
    struct arena *b = arena_pool_get(&pool, 256);
#endif
    arena_pool_put(&pool, b);
    arena_pool_clear(&pool);
    assert_int_equal(pool.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_keeps_the_largest_block),
        cmocka_unit_test(test_reset_drops_a_block_past_the_bound),
        cmocka_unit_test(test_pool_reuses_an_arena_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
