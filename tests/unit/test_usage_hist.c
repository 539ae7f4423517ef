/* The latency histogram of usage rows (src/usage/hist.c): the bucket of a
 * latency at every bound, and p50/p95/p99 by interpolation inside a
 * bucket, with values worked out by hand (docs/usage.md shows the same
 * arithmetic): one bucket, two far-apart buckets, the open last bucket, an
 * empty histogram; and a day's histogram (the sum of its hours') gives the
 * quantiles of all its samples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "usage/hist.h"

static void assert_near(double got, double want)
{
    if (got < want - 1e-9 || got > want + 1e-9)
        fail_msg("got %.9f, want %.9f", got, want);
}

static void test_buckets(void **state)
{
    assert_int_equal(usage_hist_bucket(-5), 0);
    assert_int_equal(usage_hist_bucket(0), 0);
    assert_int_equal(usage_hist_bucket(999), 0);
    assert_int_equal(usage_hist_bucket(1000), 1);
    assert_int_equal(usage_hist_bucket(1413), 1);
    assert_int_equal(usage_hist_bucket(1414), 2);
    assert_int_equal(usage_hist_bucket(1999), 2);
    assert_int_equal(usage_hist_bucket(2000), 3);
    assert_int_equal(usage_hist_bucket(100000), 14);
    assert_int_equal(usage_hist_bucket(46340949), 31);
    assert_int_equal(usage_hist_bucket(46340950), 32);
    assert_int_equal(usage_hist_bucket(59999999), 32);
    assert_int_equal(usage_hist_bucket(60000000), 33);
    assert_int_equal(usage_hist_bucket(INT64_MAX), 33);
    /* Every bucket holds its lower bound and not its upper one; bounds grow
     * by sqrt(2) (to the microsecond) up to the 60 s cap. */
    for (int b = 0; b < USAGE_LAT_N; b++) {
        assert_int_equal(usage_hist_bucket(usage_hist_lower_us(b)), b);
        if (b == USAGE_LAT_N - 1)
            break;
        assert_int_equal(usage_hist_bucket(usage_hist_upper_us(b) - 1), b);
        assert_int_equal(usage_hist_lower_us(b + 1), usage_hist_upper_us(b));
        if (b >= 1 && b < USAGE_LAT_N - 2) {
            double ratio = (double)usage_hist_upper_us(b) / (double)usage_hist_upper_us(b - 1);
            assert_true(ratio > 1.4139 && ratio < 1.4146);
        }
    }
    assert_int_equal(usage_hist_upper_us(0), 1000);
    assert_int_equal(usage_hist_upper_us(USAGE_LAT_N - 2), 60000000);
}

static void test_quantiles(void **state)
{
    uint64_t h[USAGE_LAT_N] = {0};
    assert_true(usage_hist_quantile_ms(h, 0.5) < 0); /* empty: none */

    /* 100 samples of 1.5 ms: bucket [1.414, 2.000) ms. */
    h[usage_hist_bucket(1500)] = 100;
    assert_near(usage_hist_quantile_ms(h, 0.5), 1.707);    /* 1414 + 586 * 50/100 us */
    assert_near(usage_hist_quantile_ms(h, 0.99), 1.99414); /* 1414 + 586 * 99/100 */
    assert_near(usage_hist_quantile_ms(h, 1.0), 2.0);

    /* 90 fast (0.5 ms) and 10 slow (100 ms, bucket [90.510, 128.000) ms). */
    memset(h, 0, sizeof(h));
    h[usage_hist_bucket(500)] = 90;
    h[usage_hist_bucket(100000)] = 10;
    assert_near(usage_hist_quantile_ms(h, 0.5), 1000.0 * 50 / 90 / 1000); /* in [0, 1) ms */
    assert_near(usage_hist_quantile_ms(h, 0.9), 1.0);      /* the 90th is the last fast one */
    assert_near(usage_hist_quantile_ms(h, 0.95), 109.255); /* 90510 + 37490 * 5/10 us */
    assert_near(usage_hist_quantile_ms(h, 0.99), 124.251); /* 90510 + 37490 * 9/10 */

    /* Past 60 s nothing is known but "60 s or more". */
    memset(h, 0, sizeof(h));
    h[usage_hist_bucket(120000000)] = 1;
    assert_near(usage_hist_quantile_ms(h, 0.5), 60000);
    h[usage_hist_bucket(1500)] = 3;
    assert_near(usage_hist_quantile_ms(h, 0.5), (1414 + 586.0 * 2 / 3) / 1000); /* rank 2 of 3 */
    assert_near(usage_hist_quantile_ms(h, 0.99), 60000);
}

/* Quantiles of a sum of histograms are those of all the samples: the
 * hourly rows of a day, added bucket by bucket, give the day's p99. */
static void test_sum_of_hours(void **state)
{
    uint64_t day[USAGE_LAT_N] = {0}, all[USAGE_LAT_N] = {0};
    for (int hour = 0; hour < 24; hour++) {
        uint64_t h[USAGE_LAT_N] = {0};
        for (int i = 0; i < 50; i++) {
            int64_t us = 200 + (int64_t)hour * 1000 * (i + 1);
            h[usage_hist_bucket(us)]++;
            all[usage_hist_bucket(us)]++;
        }
        for (int b = 0; b < USAGE_LAT_N; b++)
            day[b] += h[b];
    }
    for (double q = 0.05; q <= 1.0; q += 0.05)
        assert_near(usage_hist_quantile_ms(day, q), usage_hist_quantile_ms(all, q));
    assert_true(usage_hist_quantile_ms(day, 0.5) <= usage_hist_quantile_ms(day, 0.95));
    assert_true(usage_hist_quantile_ms(day, 0.95) <= usage_hist_quantile_ms(day, 0.99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_sum_of_hours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
