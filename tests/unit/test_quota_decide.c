/* The quota decision (src/quota/decide.c): exactly N admitted then refused
 * without consuming, the daily and the monthly quota together, costs,
 * period rollover by the period's start (an injected day, no clock),
 * the tightest quota for the headers, and threshold crossings counted once
 * however a request jumps over them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quota/decide.h"

static const int TH[] = {80, 95, 100};

static const struct quota_period DAY1 = {86400 * 10, 86400 * 11};
static const struct quota_period DAY2 = {86400 * 11, 86400 * 12};
static const struct quota_period DAY3 = {86400 * 31, 86400 * 32};
static const struct quota_period MONTH = {86400 * 1, 86400 * 31};
static const struct quota_period MONTH2 = {86400 * 31, 86400 * 59};

static struct quota_decision decide(struct quota_usage *u, int64_t daily, int64_t monthly,
                                    const struct quota_period *day,
                                    const struct quota_period *month, int64_t cost)
{
    struct quota_limits l = {daily, monthly};
    return quota_decide(u, &l, day, month, cost, TH, 3);
}

static void test_exactly_n(void **state)
{
    struct quota_usage u = {0};
    for (int i = 1; i <= 10; i++) {
        struct quota_decision d = decide(&u, 10, 0, &DAY1, &MONTH, 1);
        assert_true(d.allowed);
        assert_true(d.limited);
        assert_int_equal(d.which, QUOTA_DAILY);
        assert_int_equal(d.remaining, 10 - i);
        assert_int_equal(d.reset, DAY1.end);
        assert_int_equal(d.window, 86400);
    }
    for (int i = 0; i < 3; i++) {
        struct quota_decision d = decide(&u, 10, 0, &DAY1, &MONTH, 1);
        assert_false(d.allowed);
        assert_int_equal(d.which, QUOTA_DAILY);
        assert_int_equal(d.remaining, 0);
        assert_int_equal(d.reset, DAY1.end);
    }
    assert_int_equal(u.day_used, 10); /* refusals consumed nothing */
    assert_int_equal(u.month_used, 10);
    /* the next day: a fresh daily count, the month's goes on */
    struct quota_decision d = decide(&u, 10, 0, &DAY2, &MONTH, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    assert_int_equal(u.month_used, 11);
}

static void test_no_quota(void **state)
{
    struct quota_usage u = {0};
    struct quota_decision d = decide(&u, 0, 0, &DAY1, &MONTH, 5);
    assert_true(d.allowed);
    assert_false(d.limited);
    assert_int_equal(u.day_used, 0);
}

static void test_both_and_costs(void **state)
{
    struct quota_usage u = {0};
    /* daily 100, monthly 150: the month is the tightest once under 100 of the day left... */
    struct quota_decision d = decide(&u, 100, 150, &DAY1, &MONTH, 60);
    assert_true(d.allowed);
    assert_int_equal(d.which, QUOTA_DAILY); /* 40 left of the day, 90 of the month */
    assert_int_equal(d.remaining, 40);
    d = decide(&u, 100, 150, &DAY2, &MONTH, 60);
    assert_true(d.allowed);
    assert_int_equal(d.which, QUOTA_MONTHLY); /* 40 of the day, 30 of the month */
    assert_int_equal(d.remaining, 30);
    assert_int_equal(d.reset, MONTH.end);
    assert_int_equal(d.window, MONTH.end - MONTH.start);
    /* a cost of 31 goes over the month only: refused by it, nothing consumed */
    d = decide(&u, 100, 150, &DAY2, &MONTH, 31);
    assert_false(d.allowed);
    assert_int_equal(d.which, QUOTA_MONTHLY);
    assert_int_equal(d.used, 120);
    assert_int_equal(u.day_used, 60);
    /* a cost of 30 fits exactly */
    d = decide(&u, 100, 150, &DAY2, &MONTH, 30);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* both over: the month is named */
    d = decide(&u, 100, 150, &DAY2, &MONTH, 50);
    assert_false(d.allowed);
    assert_int_equal(d.which, QUOTA_MONTHLY);
    /* a new month while the day is still the old one (as after PATCH moved
     * the reset day): the day's count
     * still refuses */
    d = decide(&u, 100, 150, &DAY2, &MONTH2, 50);
    assert_false(d.allowed);
    assert_int_equal(d.which, QUOTA_DAILY);
    assert_int_equal(u.month_used, 0);
    /* a new day of the new month */
    d = decide(&u, 100, 150, &DAY3, &MONTH2, 50);
    assert_true(d.allowed);
    assert_int_equal(u.month_used, 50);
    assert_int_equal(u.day_used, 50);
}

static void test_tie_goes_to_the_sooner_reset(void **state)
{
    struct quota_usage u = {0};
    struct quota_decision d = decide(&u, 10, 10, &DAY1, &MONTH, 1);
    assert_int_equal(d.which, QUOTA_DAILY);
    assert_int_equal(d.reset, DAY1.end);
}

static void test_thresholds(void **state)
{
    struct quota_usage u = {0};
    unsigned seen = 0;
    int crossings[3] = {0};
    for (int i = 0; i < 100; i++) {
        struct quota_decision d = decide(&u, 0, 100, &DAY1, &MONTH, 1);
        assert_true(d.allowed);
        for (int t = 0; t < 3; t++)
            if (d.crossed_monthly & (1u << t)) {
                crossings[t]++;
                /* crossed by the request that reached it */
                assert_int_equal(u.month_used, TH[t]);
            }
        seen |= d.crossed_monthly;
        assert_int_equal(d.crossed_daily, 0);
    }
    assert_int_equal(seen, 7);
    assert_int_equal(crossings[0], 1);
    assert_int_equal(crossings[1], 1);
    assert_int_equal(crossings[2], 1);
    /* one request jumping over two thresholds crosses both */
    assert_int_equal(quota_crossed(70, 96, 100, TH, 3), 3);
    /* not rounding: 79.99 % is not 80 % */
    assert_int_equal(quota_crossed(0, 7999, 10000, TH, 3), 0);
    assert_int_equal(quota_crossed(7999, 8000, 10000, TH, 3), 1);
    /* big limits do not overflow */
    assert_int_equal(quota_crossed(0, INT64_MAX / 2, INT64_MAX / 2, TH, 3), 7);
    assert_int_equal(quota_crossed(0, 5, 0, TH, 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_n),      cmocka_unit_test(test_no_quota),
        cmocka_unit_test(test_both_and_costs), cmocka_unit_test(test_tie_goes_to_the_sooner_reset),
        cmocka_unit_test(test_thresholds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
