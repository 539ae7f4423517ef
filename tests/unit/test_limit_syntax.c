/* Unit tests of lim_parse (SPEC 3.1): every form of a limit, the policy
 * names the RateLimit headers use, and each rejection with its reason. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "limit/limit.h"

#define S 1000000LL /* one second in microseconds */

struct ok_case {
    const char *in;
    enum lim_algorithm algorithm;
    uint64_t count;
    int64_t window_us;
    uint64_t burst;
    const char *text, *name;
};

static void check_ok(const struct ok_case *c)
{
    struct limit l;
    const char *why = NULL;

    memset(&l, 0xa5, sizeof l);
    if (lim_parse(c->in, &l, &why) != 0)
        fail_msg("'%s' rejected: %s", c->in, why);
    if (l.algorithm != c->algorithm || l.count != c->count || l.window_us != c->window_us ||
        l.burst != c->burst || strcmp(l.text, c->text) != 0 || strcmp(l.name, c->name) != 0)
        fail_msg("'%s': got algorithm %d count %llu window %lld burst %llu text '%s' name '%s'",
                 c->in, (int)l.algorithm, (unsigned long long)l.count, (long long)l.window_us,
                 (unsigned long long)l.burst, l.text, l.name);
}

static void test_units(void **state)
{
    static const struct ok_case ok[] = {
        {"100/h", LIM_DEFAULT, 100, 3600 * S, 0, "100/h", "hourly"},
        {"10/hour", LIM_DEFAULT, 10, 3600 * S, 0, "10/hour", "hourly"},
        {"10/hours", LIM_DEFAULT, 10, 3600 * S, 0, "10/hours", "hourly"},
        {"10/hr", LIM_DEFAULT, 10, 3600 * S, 0, "10/hr", "hourly"},
        {"2/min", LIM_DEFAULT, 2, 60 * S, 0, "2/min", "per-minute"},
        {"20/m", LIM_DEFAULT, 20, 60 * S, 0, "20/m", "per-minute"},
        {"20/minute", LIM_DEFAULT, 20, 60 * S, 0, "20/minute", "per-minute"},
        {"20/minutes", LIM_DEFAULT, 20, 60 * S, 0, "20/minutes", "per-minute"},
        {"1000/d", LIM_DEFAULT, 1000, 86400 * S, 0, "1000/d", "daily"},
        {"1000/day", LIM_DEFAULT, 1000, 86400 * S, 0, "1000/day", "daily"},
        {"1000/days", LIM_DEFAULT, 1000, 86400 * S, 0, "1000/days", "daily"},
        {"5/s", LIM_DEFAULT, 5, S, 0, "5/s", "per-second"},
        {"5/sec", LIM_DEFAULT, 5, S, 0, "5/sec", "per-second"},
        {"5/second", LIM_DEFAULT, 5, S, 0, "5/second", "per-second"},
        {"5/seconds", LIM_DEFAULT, 5, S, 0, "5/seconds", "per-second"},
        /* Leading zeros are still decimal. */
        {"007/h", LIM_DEFAULT, 7, 3600 * S, 0, "007/h", "hourly"},
        {"1/s", LIM_DEFAULT, 1, S, 0, "1/s", "per-second"},
        {"4294967295/d", LIM_DEFAULT, 4294967295u, 86400 * S, 0, "4294967295/d", "daily"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        check_ok(&ok[i]);
}

static void test_multiplier_and_names(void **state)
{
    static const struct ok_case ok[] = {
        {"100/5m", LIM_DEFAULT, 100, 300 * S, 0, "100/5m", "per-5m"},
        {"100/10s", LIM_DEFAULT, 100, 10 * S, 0, "100/10s", "per-10s"},
        {"100/10sec", LIM_DEFAULT, 100, 10 * S, 0, "100/10sec", "per-10s"},
        {"100/2h", LIM_DEFAULT, 100, 7200 * S, 0, "100/2h", "per-2h"},
        {"100/2hours", LIM_DEFAULT, 100, 7200 * S, 0, "100/2hours", "per-2h"},
        {"100/7d", LIM_DEFAULT, 100, 7 * 86400 * S, 0, "100/7d", "per-7d"},
        {"100/90s", LIM_DEFAULT, 100, 90 * S, 0, "100/90s", "per-90s"},
        {"100/05m", LIM_DEFAULT, 100, 300 * S, 0, "100/05m", "per-5m"},
        /* The common windows keep their names however they are written. */
        {"100/1s", LIM_DEFAULT, 100, S, 0, "100/1s", "per-second"},
        {"100/60s", LIM_DEFAULT, 100, 60 * S, 0, "100/60s", "per-minute"},
        {"100/1m", LIM_DEFAULT, 100, 60 * S, 0, "100/1m", "per-minute"},
        {"100/60m", LIM_DEFAULT, 100, 3600 * S, 0, "100/60m", "hourly"},
        {"100/3600s", LIM_DEFAULT, 100, 3600 * S, 0, "100/3600s", "hourly"},
        {"100/24h", LIM_DEFAULT, 100, 86400 * S, 0, "100/24h", "daily"},
        {"100/1440m", LIM_DEFAULT, 100, 86400 * S, 0, "100/1440m", "daily"},
        /* The bounds of the window: 1 s and 365 d. */
        {"1/365d", LIM_DEFAULT, 1, 365 * 86400 * S, 0, "1/365d", "per-365d"},
        {"1/8760h", LIM_DEFAULT, 1, 365 * 86400 * S, 0, "1/8760h", "per-8760h"},
        {"1/31536000s", LIM_DEFAULT, 1, 365 * 86400 * S, 0, "1/31536000s", "per-31536000s"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        check_ok(&ok[i]);
}

static void test_options(void **state)
{
    static const struct ok_case ok[] = {
        /* burst alone means the token bucket, the only algorithm with one. */
        {"10/s burst 100", LIM_TOKEN_BUCKET, 10, S, 100, "10/s burst 100", "per-second"},
        {"10/s algorithm token_bucket burst 5", LIM_TOKEN_BUCKET, 10, S, 5,
         "10/s algorithm token_bucket burst 5", "per-second"},
        {"10/s burst 5 algorithm token_bucket", LIM_TOKEN_BUCKET, 10, S, 5,
         "10/s burst 5 algorithm token_bucket", "per-second"},
        /* No burst: 0, which means the count. */
        {"20/m algorithm token_bucket", LIM_TOKEN_BUCKET, 20, 60 * S, 0,
         "20/m algorithm token_bucket", "per-minute"},
        {"20/m algorithm fixed_window", LIM_FIXED_WINDOW, 20, 60 * S, 0,
         "20/m algorithm fixed_window", "per-minute"},
        {"20/m algorithm sliding_window", LIM_SLIDING_WINDOW, 20, 60 * S, 0,
         "20/m algorithm sliding_window", "per-minute"},
        {"1/s burst 4294967295", LIM_TOKEN_BUCKET, 1, S, 4294967295u, "1/s burst 4294967295",
         "per-second"},
        {"concurrency 20", LIM_CONCURRENCY, 20, 0, 0, "concurrency 20", "concurrency"},
        {"concurrency 1", LIM_CONCURRENCY, 1, 0, 0, "concurrency 1", "concurrency"},
        {"concurrency 1000000", LIM_CONCURRENCY, 1000000, 0, 0, "concurrency 1000000",
         "concurrency"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        check_ok(&ok[i]);
}

static void test_normalised_text(void **state)
{
    /* Blanks fold to one space, so one limit gets one counter key however
     * it is spaced. */
    static const struct ok_case ok[] = {
        {"  100/h  ", LIM_DEFAULT, 100, 3600 * S, 0, "100/h", "hourly"},
        {"10/s   burst\t100", LIM_TOKEN_BUCKET, 10, S, 100, "10/s burst 100", "per-second"},
        {"\tconcurrency    5 ", LIM_CONCURRENCY, 5, 0, 0, "concurrency 5", "concurrency"},
        {"4294967295/31536000s algorithm token_bucket", LIM_TOKEN_BUCKET, 4294967295u,
         365 * 86400 * S, 0, "4294967295/31536000s algorithm token_bucket", "per-31536000s"},
        /* Blanks past the end do not count towards the length. */
        {"1000/1440m burst 4294967 algorithm token_bucket          ", LIM_TOKEN_BUCKET, 1000,
         86400 * S, 4294967, "1000/1440m burst 4294967 algorithm token_bucket", "daily"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        check_ok(&ok[i]);

    /* 47 characters is the longest text that fits struct limit; a longer one
     * is refused, never cut (two limits would share a counter). */
    struct limit l;
    const char *why;
    const char *edge = "1000/1440m burst 4294967 algorithm token_bucket";
    assert_int_equal(strlen(edge), 47);
    assert_int_equal(lim_parse(edge, &l, &why), 0);
    assert_string_equal(l.text, edge);
    const char *spaced = "1000/1440m  burst 4294967 algorithm token_bucket"; /* folds to 47 */
    assert_int_equal(lim_parse(spaced, &l, &why), 0);
    assert_string_equal(l.text, edge);
    const char *over = "10000/1440m burst 4294967 algorithm token_bucket"; /* 48 */
    assert_int_equal(strlen(over), 48);
    assert_int_equal(lim_parse(over, &l, &why), -1);
    assert_string_equal(why, "limit too long (at most 47 characters)");
}

static void test_rejections(void **state)
{
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "empty limit"},
        {"   ", "empty limit"},
        {"100", "missing '/UNIT' after the count"},
        {"100 /h", "missing '/UNIT' after the count"},
        {"100/", "missing unit after '/'"},
        {"100/ h", "missing unit after '/'"},
        {"/h", "missing count before '/'"},
        {"0/h", "count must be a whole number from 1 to 4294967295"},
        {"-1/h", "count must be a whole number from 1 to 4294967295"},
        {"+1/h", "count must be a whole number from 1 to 4294967295"},
        {"1.5/h", "count must be a whole number from 1 to 4294967295"},
        {"0x10/h", "count must be a whole number from 1 to 4294967295"},
        {"4294967296/h", "count must be a whole number from 1 to 4294967295"},
        {"99999999999999999999999/h", "count must be a whole number from 1 to 4294967295"},
        {"100/x", "unknown unit"},
        {"100/H", "unknown unit"},
        {"100/ms", "unknown unit"},
        {"100/hh", "unknown unit"},
        {"100/h/h", "unknown unit"},
        {"100/5x", "unknown unit"},
        {"100/5", "missing unit after the window's multiplier"},
        {"100/0m", "the window must be from 1s to 365d"},
        {"100/0s", "the window must be from 1s to 365d"},
        {"100/366d", "the window must be from 1s to 365d"},
        {"100/8761h", "the window must be from 1s to 365d"},
        {"100/31536001s", "the window must be from 1s to 365d"},
        {"100/99999999999999999999999m", "the window must be from 1s to 365d"},
        {"10/s burst", "'burst' needs a number"},
        {"10/s burst 0", "the burst must be a whole number from 1 to 4294967295"},
        {"10/s burst -1", "the burst must be a whole number from 1 to 4294967295"},
        {"10/s burst x", "the burst must be a whole number from 1 to 4294967295"},
        {"10/s burst 4294967296", "the burst must be a whole number from 1 to 4294967295"},
        {"10/s burst 5 burst 6", "'burst' is given twice"},
        {"10/s algorithm", "'algorithm' needs a name"},
        {"10/s algorithm nope", "unknown algorithm"},
        {"10/s algorithm Token_Bucket", "unknown algorithm"},
        {"10/s algorithm default", "unknown algorithm"},
        {"1/s algorithm token_bucket_token_bucket_token", "unknown algorithm"},
        {"10/s algorithm concurrency", "written 'concurrency N'"},
        {"10/s algorithm fixed_window burst 5", "'burst' applies to the token_bucket algorithm"},
        {"10/s burst 5 algorithm sliding_window", "'burst' applies to the token_bucket algorithm"},
        {"10/s algorithm fixed_window algorithm fixed_window", "'algorithm' is given twice"},
        {"10/s extra", "unexpected text after the limit"},
        {"100/h 5", "unexpected text after the limit"},
        {"10/s burst 5 x", "unexpected text after the limit"},
        {"10/s BURST 5", "unexpected text after the limit"},
        {"hello", "expected N/UNIT"},
        {"burst 5", "expected N/UNIT"},
        {"concurrency", "'concurrency' needs the number of requests in flight"},
        {"concurrency 0", "concurrency must be a whole number from 1 to 1000000"},
        {"concurrency 1000001", "concurrency must be a whole number from 1 to 1000000"},
        {"concurrency x", "concurrency must be a whole number from 1 to 1000000"},
        {"concurrency 5 burst 2", "unexpected text after 'concurrency N'"},
        {"concurrency 5 algorithm token_bucket", "unexpected text after 'concurrency N'"},
        {"concurrency/s", "count must be a whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct limit l, before;
        const char *why = NULL;
        memset(&l, 0x5a, sizeof l);
        before = l;
        if (lim_parse(bad[i].in, &l, &why) != -1)
            fail_msg("'%s' accepted", bad[i].in);
        assert_non_null(why);
        if (!strstr(why, bad[i].why))
            fail_msg("'%s': reason '%s' lacks '%s'", bad[i].in, why, bad[i].why);
        /* A rejected text leaves the limit as it was. */
        assert_memory_equal(&l, &before, sizeof l);
    }
}

static void test_parse_list(void **state)
{
    struct limit l[3];
    const char *why = NULL;
    assert_int_equal(lim_parse_list("100/h, 10/s burst 20,,concurrency 2", l, 3, &why), 3);
    assert_int_equal(l[0].count, 100);
    assert_int_equal(l[1].burst, 20);
    assert_int_equal(l[2].algorithm, LIM_CONCURRENCY);
    assert_int_equal(lim_parse_list("", l, 3, &why), 0);
    assert_int_equal(lim_parse_list("100/h, lots", l, 3, &why), -1);
    assert_non_null(why);
    why = NULL;
    assert_int_equal(lim_parse_list("1/s, 2/s, 3/s, 4/s", l, 3, &why), -1);
    assert_string_equal(why, "too many limits");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),      cmocka_unit_test(test_multiplier_and_names),
        cmocka_unit_test(test_options),    cmocka_unit_test(test_normalised_text),
        cmocka_unit_test(test_rejections), cmocka_unit_test(test_parse_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
