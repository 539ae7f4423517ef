/* Unit tests of src/limit/algo.c: each algorithm with an injected clock
 * (plain microsecond values, no sleeping). The exact arithmetic matters: the
 * Redis store's Lua twin must reproduce these decisions bit for bit. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "limit/limit.h"

#define SEC INT64_C(1000000)
#define MS INT64_C(1000)
#define MINUTE (60 * SEC)
#define HOUR (3600 * SEC)
/* A realistic clock: 2023-11-14T22:00:00Z, a multiple of a day in µs. */
#define T0 (INT64_C(19675) * 86400 * SEC)

static struct limit mk(enum lim_algorithm a, uint64_t count, int64_t window_us, uint64_t burst)
{
    struct limit l;
    memset(&l, 0, sizeof(l));
    l.algorithm = a;
    l.count = count;
    l.window_us = window_us;
    l.burst = burst;
    return l;
}

/* Applies and checks that a denial left the state exactly as it was. */
static struct lim_decision apply(const struct limit *l, struct lim_state *s, int64_t now,
                                 uint32_t cost)
{
    struct lim_state before = *s;
    struct lim_decision d = lim_apply(l, s, now, cost);
    if (!d.allowed) {
        assert_memory_equal(&before, s, sizeof(before));
        assert_int_equal(d.remaining, 0);
        assert_true(d.retry_after_us > 0);
    } else {
        assert_int_equal(d.retry_after_us, 0);
    }
    return d;
}

/* How many requests of <cost> pass in a row at <now>. */
static int count_passes(const struct limit *l, struct lim_state *s, int64_t now, uint32_t cost)
{
    int k = 0;
    while (apply(l, s, now, cost).allowed)
        k++;
    return k;
}

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1Dull;
}

static int64_t rng_range(uint64_t *x, int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rng_next(x) % (uint64_t)(hi - lo + 1));
}

/* ---- names ------------------------------------------------------------ */

static void test_algorithm_names(void **state)
{
    const char *names[] = {"fixed_window", "sliding_window", "token_bucket", "concurrency"};
    for (int i = 0; i < 4; i++) {
        int a = lim_algorithm_from_name(names[i]);
        assert_true(a > 0);
        assert_string_equal(lim_algorithm_name((enum lim_algorithm)a), names[i]);
    }
    assert_int_equal(lim_algorithm_from_name("fixed_window"), LIM_FIXED_WINDOW);
    assert_int_equal(lim_algorithm_from_name("token_bucket"), LIM_TOKEN_BUCKET);
    assert_int_equal(lim_algorithm_from_name("leaky"), -1);
    assert_int_equal(lim_algorithm_from_name("default"), -1);
    assert_int_equal(lim_algorithm_from_name(""), -1);
}

/* ---- fixed window ----------------------------------------------------- */

static void test_fixed_exactly_n_then_deny(void **state)
{
    struct limit l = mk(LIM_FIXED_WINDOW, 100, HOUR, 0);
    struct lim_state s = {0};
    int64_t now = T0 + 10 * MINUTE;
    for (int i = 1; i <= 100; i++) {
        struct lim_decision d = apply(&l, &s, now + i, 1);
        assert_true(d.allowed);
        assert_int_equal(d.limit, 100);
        assert_int_equal(d.remaining, 100 - i);
        assert_int_equal(d.reset_us, T0 + HOUR - (now + i));
    }
    struct lim_decision d = apply(&l, &s, now + 200, 1);
    assert_false(d.allowed);
    assert_int_equal(d.limit, 100);
    assert_int_equal(d.retry_after_us, T0 + HOUR - (now + 200));
    assert_int_equal(d.reset_us, T0 + HOUR - (now + 200));
    assert_int_equal(lim_expiry(&l, &s), T0 + HOUR);
}

static void test_fixed_rollover(void **state)
{
    struct limit l = mk(LIM_FIXED_WINDOW, 2, MINUTE, 0);
    struct lim_state s = {0};
    assert_int_equal(count_passes(&l, &s, T0 + 59 * SEC, 1), 2);
    /* The last microsecond of the window is still in it. */
    assert_false(apply(&l, &s, T0 + MINUTE - 1, 1).allowed);
    /* Aligned windows: the next one starts at T0 + 1 min, not 1 min after
     * the first request. */
    struct lim_decision d = apply(&l, &s, T0 + MINUTE, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(s.t, T0 + MINUTE);
    assert_int_equal(s.n, 1);
    /* Skipping several windows starts from zero as well. */
    assert_int_equal(count_passes(&l, &s, T0 + 10 * MINUTE + 5, 1), 2);
}

static void test_fixed_cost(void **state)
{
    struct limit l = mk(LIM_FIXED_WINDOW, 10, MINUTE, 0);
    struct lim_state s = {0};
    assert_int_equal(count_passes(&l, &s, T0, 3), 3); /* 9 used */
    struct lim_decision d = apply(&l, &s, T0, 3);
    assert_false(d.allowed);
    d = apply(&l, &s, T0, 1); /* the 10th unit still fits */
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* A cost above the limit never passes; it is told the next window. */
    struct lim_state fresh = {0};
    d = apply(&l, &fresh, T0 + 5 * SEC, 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, 55 * SEC);
}

/* ---- sliding window --------------------------------------------------- */

static void test_sliding_exactly_n_then_deny(void **state)
{
    struct limit l = mk(LIM_SLIDING_WINDOW, 100, HOUR, 0);
    struct lim_state s = {0};
    for (int i = 1; i <= 100; i++) {
        struct lim_decision d = apply(&l, &s, T0 + i * SEC, 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 100 - i);
        /* Counted in this window: gone from the estimate two windows on. */
        assert_int_equal(d.reset_us, T0 + 2 * HOUR - (T0 + i * SEC));
    }
    struct lim_decision d = apply(&l, &s, T0 + 200 * SEC, 1);
    assert_false(d.allowed);
    assert_int_equal(lim_expiry(&l, &s), T0 + 2 * HOUR);
}

/* The previous window full (100 of 100): at x % into the current window,
 * (100 - x) % of it still counts, so x requests pass. */
static void test_sliding_weighting(void **state)
{
    struct limit l = mk(LIM_SLIDING_WINDOW, 100, MINUTE, 0);
    const struct {
        int64_t into; /* µs into the window after the full one */
        int passes;
    } cases[] = {
        {0, 0},
        {MINUTE / 4, 25},
        {MINUTE / 2, 50},
        {3 * MINUTE / 4, 75},
        {MINUTE - MS, 100}, /* weight floor(1 * 1000 / 60000) = 0 */
        {MINUTE, 100},      /* 100 %: the full window is two back */
        /* Millisecond resolution, floored: at 14 999 ms the weight is still
         * 750, at 14 940 ms it is 751 and one request fewer fits. */
        {MINUTE / 4 - 1, 25},
        {MINUTE / 4 - 60 * MS, 24},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct lim_state s = {0};
        assert_int_equal(count_passes(&l, &s, T0 + 30 * SEC, 1), 100);
        int got = count_passes(&l, &s, T0 + MINUTE + cases[c].into, 1);
        if (got != cases[c].passes)
            fail_msg("%lld us into the window: %d passed, want %d", (long long)cases[c].into, got,
                     cases[c].passes);
    }
}

static void test_sliding_state_roll(void **state)
{
    struct limit l = mk(LIM_SLIDING_WINDOW, 10, MINUTE, 0);
    struct lim_state s = {0};
    assert_int_equal(count_passes(&l, &s, T0 + 1 * SEC, 1), 10);
    assert_true(apply(&l, &s, T0 + MINUTE + 30 * SEC, 1).allowed);
    assert_int_equal(s.t, T0 + MINUTE);
    assert_int_equal(s.p, 10);
    assert_int_equal(s.n, 1);
    /* Two windows on, both counters are forgotten. */
    struct lim_decision d = apply(&l, &s, T0 + 3 * MINUTE + 1, 1);
    assert_true(d.allowed);
    assert_int_equal(s.p, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(d.remaining, 9);
}

static void test_sliding_cost_and_reset(void **state)
{
    struct limit l = mk(LIM_SLIDING_WINDOW, 10, MINUTE, 0);
    struct lim_state s = {0};
    assert_int_equal(count_passes(&l, &s, T0, 4), 2); /* 8 used */
    struct lim_decision d = apply(&l, &s, T0, 2);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Half-way into the next window, 5 of the previous 10 still count. */
    d = apply(&l, &s, T0 + MINUTE + 30 * SEC, 5);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset_us, T0 + 3 * MINUTE - (T0 + MINUTE + 30 * SEC));
    /* Nothing in the current window, something in the previous: full again
     * one window on. */
    struct lim_state only_prev = {.t = T0, .n = 3, .p = 0};
    d = apply(&l, &only_prev, T0 + MINUTE + 10 * SEC, 100);
    assert_false(d.allowed);
    assert_int_equal(d.reset_us, T0 + 2 * MINUTE - (T0 + MINUTE + 10 * SEC));
    assert_int_equal(d.retry_after_us, MINUTE); /* cost > count: never */
}

/* Whatever the state, a denied request is told the exact earliest time at
 * which the same request passes: it passes then and not a microsecond
 * before (nor a millisecond before, nor anywhere in between). */
static void test_sliding_retry_after_property(void **state)
{
    static const int64_t windows[] = {SEC,  10 * SEC,    MINUTE,    5 * MINUTE,
                                      HOUR, 86400 * SEC, 1500 * MS, 7 * SEC + 1};
    uint64_t seed = 0x5eed0fa11ed5ull;
    int denied = 0, never = 0, later_window = 0;
    for (int iter = 0; iter < 200000; iter++) {
        int64_t w = windows[rng_range(&seed, 0, sizeof(windows) / sizeof(windows[0]) - 1)];
        uint64_t count = (uint64_t)rng_range(&seed, 1, rng_range(&seed, 0, 1) ? 5 : 300);
        struct limit l = mk(LIM_SLIDING_WINDOW, count, w, 0);
        int64_t start = T0 + rng_range(&seed, 0, 1000) * w;
        int64_t now = start + rng_range(&seed, 0, w - 1);
        struct lim_state s;
        int64_t age = rng_range(&seed, 0, 3);
        s.t = age == 3 ? start - rng_range(&seed, 2, 50) * w : start - age * w;
        if (age == 0 && rng_range(&seed, 0, 1))
            s.t = start; /* the common case, twice as often */
        s.n = (uint32_t)rng_range(&seed, 0, (int64_t)count + 2);
        s.p = (uint32_t)rng_range(&seed, 0, (int64_t)count + 2);
        uint32_t cost =
            (uint32_t)rng_range(&seed, 1, rng_range(&seed, 0, 3) ? 2 : (int64_t)count + 1);

        struct lim_state c = s;
        struct lim_decision d = apply(&l, &c, now, cost);
        if (d.allowed)
            continue;
        denied++;
        int64_t r = d.retry_after_us;
        if (cost > count) {
            never++;
            assert_int_equal(r, w);
            continue;
        }
        if (now + r >= start + w)
            later_window++;
        c = s;
        if (!lim_apply(&l, &c, now + r, cost).allowed)
            fail_msg("iter %d: not allowed at now+retry (w=%lld count=%llu cost=%u t=%lld "
                     "n=%u p=%u now=%lld retry=%lld)",
                     iter, (long long)w, (unsigned long long)count, cost, (long long)(s.t - start),
                     s.n, s.p, (long long)(now - start), (long long)r);
        int64_t before[] = {now + r - 1, now + r - MS, now + rng_range(&seed, 0, r - 1), now};
        for (int k = 0; k < 4; k++) {
            if (before[k] < now)
                continue;
            c = s;
            if (lim_apply(&l, &c, before[k], cost).allowed)
                fail_msg("iter %d: allowed %lld us before now+retry", iter,
                         (long long)(now + r - before[k]));
        }
    }
    /* The generator must exercise every branch. */
    assert_true(denied > 10000);
    assert_true(never > 100);
    assert_true(later_window > 100);
}

/* ---- token bucket (GCRA) ---------------------------------------------- */

static void test_gcra_burst_then_steady_rate(void **state)
{
    /* 10/s burst 5: T = 100 ms, tau = 500 ms. */
    struct limit l = mk(LIM_TOKEN_BUCKET, 10, SEC, 5);
    struct lim_state s = {0};
    int64_t now = T0 + 123456;
    for (int i = 1; i <= 5; i++) {
        struct lim_decision d = apply(&l, &s, now, 1);
        assert_true(d.allowed);
        assert_int_equal(d.limit, 5);
        assert_int_equal(d.remaining, 5 - i);
        assert_int_equal(d.reset_us, i * 100 * MS);
    }
    struct lim_decision d = apply(&l, &s, now, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, 100 * MS);
    assert_int_equal(d.reset_us, 500 * MS);
    /* Exact to the microsecond. */
    assert_false(apply(&l, &s, now + 100 * MS - 1, 1).allowed);
    d = apply(&l, &s, now + 100 * MS, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Steady state: one every 100 ms, never two. */
    for (int k = 2; k <= 50; k++) {
        int64_t t = now + k * 100 * MS;
        d = apply(&l, &s, t - 1, 1);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after_us, 1);
        assert_true(apply(&l, &s, t, 1).allowed);
        assert_false(apply(&l, &s, t, 1).allowed);
    }
    assert_int_equal(lim_expiry(&l, &s), s.t);
    /* Idle long enough, the whole burst is back. */
    assert_int_equal(count_passes(&l, &s, lim_expiry(&l, &s), 1), 5);
}

static void test_gcra_default_burst_and_cost(void **state)
{
    /* burst 0: the bucket holds <count>. 60/min: T = 1 s. */
    struct limit l = mk(LIM_TOKEN_BUCKET, 60, MINUTE, 0);
    struct lim_state s = {0};
    assert_int_equal(count_passes(&l, &s, T0, 1), 60);
    struct lim_decision d = apply(&l, &s, T0, 1);
    assert_int_equal(d.limit, 60);
    assert_int_equal(d.retry_after_us, SEC);

    /* cost 3 of a burst of 5: once, then 100 ms... T = 100 ms here. */
    struct limit c = mk(LIM_TOKEN_BUCKET, 10, SEC, 5);
    struct lim_state cs = {0};
    d = apply(&c, &cs, T0, 3);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 2);
    d = apply(&c, &cs, T0, 3);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, 100 * MS);
    assert_true(apply(&c, &cs, T0 + 100 * MS, 3).allowed);
    /* A cost larger than the bucket can never pass. */
    struct lim_state fresh = {0};
    d = apply(&c, &fresh, T0, 6);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, SEC);
}

/* Emission interval with a remainder: 7 per 10 s, T = floor(10 s / 7). */
static void test_gcra_retry_after_exact(void **state)
{
    struct limit l = mk(LIM_TOKEN_BUCKET, 7, 10 * SEC, 0);
    int64_t t_us = 10 * SEC / 7;
    uint64_t seed = 42;
    struct lim_state s = {0};
    int64_t now = T0;
    for (int iter = 0; iter < 20000; iter++) {
        now += rng_range(&seed, 0, 2 * t_us);
        uint32_t cost = (uint32_t)rng_range(&seed, 1, 3);
        struct lim_state before = s;
        struct lim_decision d = apply(&l, &s, now, cost);
        if (d.allowed)
            continue;
        struct lim_state c = before;
        assert_false(lim_apply(&l, &c, now + d.retry_after_us - 1, cost).allowed);
        c = before;
        assert_true(lim_apply(&l, &c, now + d.retry_after_us, cost).allowed);
    }
}

/* ---- concurrency ------------------------------------------------------ */

static void test_concurrency_acquire_release(void **state)
{
    struct limit l = mk(LIM_CONCURRENCY, 3, 0, 0);
    struct lim_state s = {0};
    assert_int_equal(lim_expiry(&l, &s), 0);
    for (int i = 1; i <= 3; i++) {
        struct lim_decision d = apply(&l, &s, T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 3 - i);
        assert_int_equal(d.reset_us, 0);
    }
    assert_int_equal(lim_expiry(&l, &s), INT64_MAX);
    struct lim_decision d = apply(&l, &s, T0 + HOUR, 1); /* time does not free slots */
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, SEC);
    lim_release(&l, &s, 1);
    assert_int_equal(s.n, 2);
    assert_true(apply(&l, &s, T0, 1).allowed);
    /* Cost 2 needs two free slots. */
    lim_release(&l, &s, 1);
    assert_false(apply(&l, &s, T0, 2).allowed);
    lim_release(&l, &s, 1);
    assert_true(apply(&l, &s, T0, 2).allowed);
    assert_int_equal(s.n, 3);
    /* Never below zero, however often a slot is given back. */
    lim_release(&l, &s, 2);
    lim_release(&l, &s, 2);
    lim_release(&l, &s, 2);
    assert_int_equal(s.n, 0);
    assert_int_equal(lim_expiry(&l, &s), 0);
    /* Release is a no-op for the other algorithms. */
    struct limit f = mk(LIM_FIXED_WINDOW, 3, MINUTE, 0);
    struct lim_state fs = {.t = T0, .n = 2};
    lim_release(&f, &fs, 1);
    assert_int_equal(fs.n, 2);
}

/* ---- all algorithms --------------------------------------------------- */

/* A state at or after its expiry behaves exactly as a fresh one, which is
 * what lets the store drop it. */
static void test_expired_state_is_fresh(void **state)
{
    struct limit ls[] = {
        mk(LIM_FIXED_WINDOW, 5, MINUTE, 0),
        mk(LIM_SLIDING_WINDOW, 5, MINUTE, 0),
        mk(LIM_TOKEN_BUCKET, 5, MINUTE, 2),
        mk(LIM_CONCURRENCY, 5, 0, 0),
    };
    uint64_t seed = 7;
    for (size_t k = 0; k < sizeof(ls) / sizeof(ls[0]); k++) {
        for (int iter = 0; iter < 2000; iter++) {
            struct lim_state s = {0};
            int64_t now = T0;
            int steps = (int)rng_range(&seed, 1, 8);
            for (int i = 0; i < steps; i++) {
                now += rng_range(&seed, 0, 20 * SEC);
                lim_apply(&ls[k], &s, now, 1);
            }
            if (ls[k].algorithm == LIM_CONCURRENCY)
                lim_release(&ls[k], &s, (uint32_t)s.n);
            int64_t at = lim_expiry(&ls[k], &s);
            if (at < now)
                at = now;
            at += rng_range(&seed, 0, 3) * rng_range(&seed, 0, MINUTE);
            struct lim_state fresh = {0};
            struct lim_decision a = lim_apply(&ls[k], &s, at, 1);
            struct lim_decision b = lim_apply(&ls[k], &fresh, at, 1);
            assert_int_equal(a.allowed, b.allowed);
            assert_int_equal(a.limit, b.limit);
            assert_int_equal(a.remaining, b.remaining);
            assert_int_equal(a.reset_us, b.reset_us);
            assert_int_equal(a.retry_after_us, b.retry_after_us);
        }
    }
}

static void test_limit_is_reported(void **state)
{
    struct lim_state s = {0};
    struct limit f = mk(LIM_FIXED_WINDOW, 7, MINUTE, 0);
    assert_int_equal(apply(&f, &s, T0, 1).limit, 7);
    memset(&s, 0, sizeof(s));
    struct limit g = mk(LIM_TOKEN_BUCKET, 7, MINUTE, 20);
    assert_int_equal(apply(&g, &s, T0, 1).limit, 20);
    memset(&s, 0, sizeof(s));
    struct limit c = mk(LIM_CONCURRENCY, 4, 0, 0);
    assert_int_equal(apply(&c, &s, T0, 1).limit, 4);
}

/* Limits lim_parse would never produce must still not divide by zero or
 * overflow (the sanitizer build turns either into a failure). */
static void test_extreme_limits_are_safe(void **state)
{
    const uint64_t counts[] = {0, 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    const int64_t windows[] = {0, -5, 1, 999, MS, 86400 * SEC, INT64_MAX};
    const uint64_t bursts[] = {0, 1, UINT32_MAX, UINT64_MAX};
    const uint32_t costs[] = {0, 1, 1000, UINT32_MAX};
    const enum lim_algorithm algs[] = {LIM_DEFAULT, LIM_FIXED_WINDOW, LIM_SLIDING_WINDOW,
                                       LIM_TOKEN_BUCKET, LIM_CONCURRENCY};
    for (size_t a = 0; a < 5; a++)
        for (size_t c = 0; c < 5; c++)
            for (size_t w = 0; w < 7; w++)
                for (size_t b = 0; b < 4; b++)
                    for (size_t k = 0; k < 4; k++) {
                        struct limit l = mk(algs[a], counts[c], windows[w], bursts[b]);
                        struct lim_state s = {0};
                        for (int i = 0; i < 3; i++) {
                            struct lim_decision d = lim_apply(&l, &s, T0 + i * SEC, costs[k]);
                            assert_true(d.retry_after_us >= 0);
                            assert_true(d.reset_us >= 0);
                        }
                        (void)lim_expiry(&l, &s);
                        lim_release(&l, &s, costs[k]);
                    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_algorithm_names),
        cmocka_unit_test(test_fixed_exactly_n_then_deny),
        cmocka_unit_test(test_fixed_rollover),
        cmocka_unit_test(test_fixed_cost),
        cmocka_unit_test(test_sliding_exactly_n_then_deny),
        cmocka_unit_test(test_sliding_weighting),
        cmocka_unit_test(test_sliding_state_roll),
        cmocka_unit_test(test_sliding_cost_and_reset),
        cmocka_unit_test(test_sliding_retry_after_property),
        cmocka_unit_test(test_gcra_burst_then_steady_rate),
        cmocka_unit_test(test_gcra_default_burst_and_cost),
        cmocka_unit_test(test_gcra_retry_after_exact),
        cmocka_unit_test(test_concurrency_acquire_release),
        cmocka_unit_test(test_expired_state_is_fresh),
        cmocka_unit_test(test_limit_is_reported),
        cmocka_unit_test(test_extreme_limits_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
