/* The stats tick's arithmetic (src/admin/stats.c): quantiles from the
 * latency histogram's buckets, and the tick's text from two samples:
 * rates per second over the interval, the cache's ratio, nulls when there
 * was nothing to measure, and the gauges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "admin/stats.h"

static void test_quantiles(void **state)
{
    uint64_t b[METRICS_N_BUCKETS + 1] = {0};
    assert_true(stats_quantile_ms(b, 0, 0.5) < 0);
    /* 100 requests all in (1 ms, 5 ms]: linear within the bucket. */
    b[1] = 100;
    assert_float_equal(stats_quantile_ms(b, 100, 0.5), 3.0, 1e-9);
    assert_float_equal(stats_quantile_ms(b, 100, 0.99), 4.96, 1e-9);
    /* 90 under 1 ms, 10 in (10, 25]: p50 in the first, p95 and p99 in the other. */
    memset(b, 0, sizeof(b));
    b[0] = 90;
    b[3] = 10;
    assert_float_equal(stats_quantile_ms(b, 100, 0.5), 0.5 / 0.9, 1e-9);
    assert_float_equal(stats_quantile_ms(b, 100, 0.95), 17.5, 1e-9);
    assert_float_equal(stats_quantile_ms(b, 100, 0.99), 23.5, 1e-9);
    /* Past the last bound: the last bound. */
    memset(b, 0, sizeof(b));
    b[METRICS_N_BUCKETS] = 3;
    assert_float_equal(stats_quantile_ms(b, 3, 0.5), 10000.0, 1e-9);
}

static json_t *render(const struct stats_sample *a, const struct stats_sample *b)
{
    struct buf out = {0};
    stats_render(a, b, &out);
    json_error_t err;
    json_t *doc = json_loadb(out.data, out.len, 0, &err);
    if (!doc)
        fail_msg("not JSON: %.*s (%s)", (int)out.len, out.data, err.text);
    buf_release(&out);
    return doc;
}

static double num(const json_t *doc, const char *a, const char *b)
{
    const json_t *v = json_object_get(doc, a);
    if (b)
        v = json_object_get(v, b);
    if (!json_is_number(v))
        fail_msg("%s.%s is not a number", a, b ? b : "");
    return json_number_value(v);
}

static void test_render_idle(void **state)
{
    struct stats_sample a = {.mono_us = 1000000, .redis = -1, .fleet = 1},
                        b = {.mono_us = 2000000,
                             .wall_ms = 1796500000123,
                             .redis = -1,
                             .fleet = 1,
                             .connections = 3};
    json_t *doc = render(&a, &b);
    assert_int_equal(json_object_size(doc), 9);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "stats");
    assert_true(json_integer_value(json_object_get(doc, "ts")) == 1796500000123);
    assert_float_equal(num(doc, "rps", NULL), 0, 0);
    assert_float_equal(num(doc, "rates", "429"), 0, 0);
    assert_true(json_is_null(json_object_get(json_object_get(doc, "cache"), "hit_ratio")));
    assert_true(json_is_null(json_object_get(json_object_get(doc, "latency_ms"), "p50")));
    assert_string_equal(json_string_value(json_object_get(doc, "redis")), "off");
    assert_int_equal(json_integer_value(json_object_get(doc, "fleet")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "connections")), 3);
    json_decref(doc);
}

static void test_render_busy(void **state)
{
    struct stats_sample a = {.mono_us = 0, .redis = 1, .fleet = 3}, b = a;
    a.m.requests = 1000;
    a.m.by_class[2] = 900;
    a.m.by_class[4] = 100;
    a.m.status_429 = 50;
    a.cache_hits = 10;
    a.cache_misses = 10;
    /* Two seconds later: 400 more requests, 300 2xx, 60 4xx of which 40
     * are 429s, 40 5xx; 30 hits and 10 misses; all under 1 ms. */
    b.mono_us = 2000000;
    b.m.requests = 1400;
    b.m.by_class[2] = 1200;
    b.m.by_class[4] = 160;
    b.m.by_class[5] = 40;
    b.m.status_429 = 90;
    b.m.buckets[0] = 400;
    b.cache_hits = 40;
    b.cache_misses = 20;
    b.redis = 0;
    json_t *doc = render(&a, &b);
    assert_float_equal(num(doc, "rps", NULL), 200, 1e-9);
    assert_float_equal(num(doc, "rates", "2xx"), 150, 1e-9);
    assert_float_equal(num(doc, "rates", "4xx"), 30, 1e-9);
    assert_float_equal(num(doc, "rates", "5xx"), 20, 1e-9);
    assert_float_equal(num(doc, "rates", "429"), 20, 1e-9);
    assert_float_equal(num(doc, "cache", "hits"), 15, 1e-9);
    assert_float_equal(num(doc, "cache", "misses"), 5, 1e-9);
    assert_float_equal(num(doc, "cache", "hit_ratio"), 0.75, 1e-9);
    assert_float_equal(num(doc, "latency_ms", "p50"), 0.5, 1e-9);
    assert_float_equal(num(doc, "latency_ms", "p99"), 0.99, 1e-9);
    assert_string_equal(json_string_value(json_object_get(doc, "redis")), "down");
    assert_int_equal(json_integer_value(json_object_get(doc, "fleet")), 3);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_render_idle),
        cmocka_unit_test(test_render_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
