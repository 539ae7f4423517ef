/* This node's quota counts (src/quota/store.c): decided with the rest of the
 * request under one lock (a refusal by the limits charges nothing), a
 * period that only rolls forward, the write-behind marks, the sweep, and a
 * full store that admits uncounted rather than forgetting anyone. Periods
 * are injected: no clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "quota/store.h"

static const int TH[] = {80, 95, 100};
static const struct quota_period DAY1 = {86400 * 10, 86400 * 11};
static const struct quota_period DAY2 = {86400 * 11, 86400 * 12};
static const struct quota_period MONTH = {86400 * 1, 86400 * 31};

static struct quota_req req(const char *id, int64_t daily, const struct quota_period *day,
                            int64_t cost)
{
    struct quota_req q;
    memset(&q, 0, sizeof(q));
    strcpy(q.identity, id);
    q.limits.daily = daily;
    q.day = *day;
    q.month = MONTH;
    q.cost = cost;
    q.thresholds = TH;
    q.n_thresholds = 3;
    return q;
}

static bool refuse(void *arg)
{
    (*(int *)arg)++;
    return false;
}

static bool admit(void *arg)
{
    (*(int *)arg)++;
    return true;
}

static void test_all_or_nothing(void **state)
{
    struct quota_store *st = quota_store_new(100);
    int calls = 0;
    struct quota_req q = req("key:a", 3, &DAY1, 1);
    assert_true(quota_store_decide(st, &q, admit, &calls));
    assert_true(q.decided);
    assert_int_equal(q.decision.remaining, 2);
    /* the limits refuse: not charged, and the decision says so */
    q = req("key:a", 3, &DAY1, 1);
    assert_false(quota_store_decide(st, &q, refuse, &calls));
    assert_false(q.decided);
    struct quota_usage u;
    assert_true(quota_store_get(st, "key:a", &u));
    assert_int_equal(u.day_used, 1);
    /* two more fit; the quota's refusal does not ask the limits */
    for (int i = 0; i < 2; i++) {
        q = req("key:a", 3, &DAY1, 1);
        assert_true(quota_store_decide(st, &q, NULL, NULL));
    }
    calls = 0;
    q = req("key:a", 3, &DAY1, 1);
    assert_false(quota_store_decide(st, &q, admit, &calls));
    assert_true(q.decided);
    assert_false(q.decision.allowed);
    assert_int_equal(calls, 0);
    /* another identity is counted apart */
    q = req("key:b", 3, &DAY1, 1);
    assert_true(quota_store_decide(st, &q, NULL, NULL));
    assert_int_equal(q.decision.remaining, 2);
    quota_store_free(st);
}

static void test_rollover_only_forward(void **state)
{
    struct quota_store *st = quota_store_new(100);
    struct quota_req q = req("ip:1.2.3.4", 2, &DAY1, 2);
    assert_true(quota_store_decide(st, &q, NULL, NULL));
    q = req("ip:1.2.3.4", 2, &DAY1, 1);
    assert_false(quota_store_decide(st, &q, NULL, NULL));
    /* the next day: a fresh quota */
    q = req("ip:1.2.3.4", 2, &DAY2, 1);
    assert_true(quota_store_decide(st, &q, NULL, NULL));
    assert_int_equal(q.usage.day_start, DAY2.start);
    assert_int_equal(q.usage.day_used, 1);
    /* a clock still on the day before counts into the newer day */
    q = req("ip:1.2.3.4", 2, &DAY1, 1);
    assert_true(quota_store_decide(st, &q, NULL, NULL));
    assert_int_equal(q.usage.day_start, DAY2.start);
    assert_int_equal(q.usage.day_used, 2);
    /* the month went on counting all along */
    assert_int_equal(q.usage.month_used, 4);
    quota_store_free(st);
}

static void test_dirty_marks(void **state)
{
    struct quota_store *st = quota_store_new(100);
    size_t n;
    assert_null(quota_store_take_dirty(st, &n));
    assert_int_equal(n, 0);
    struct quota_req q = req("key:a", 10, &DAY1, 1);
    quota_store_decide(st, &q, NULL, NULL);
    q = req("key:b", 10, &DAY1, 4);
    quota_store_decide(st, &q, NULL, NULL);
    /* a refusal changes nothing: nothing to write */
    q = req("key:c", 1, &DAY1, 5);
    quota_store_decide(st, &q, NULL, NULL);
    struct quota_row *rows = quota_store_take_dirty(st, &n);
    assert_int_equal(n, 2);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += rows[i].usage.day_used;
    assert_int_equal(sum, 5);
    size_t none;
    assert_null(quota_store_take_dirty(st, &none));
    /* a failed write marks them again */
    quota_store_remark(st, rows, n);
    free(rows);
    rows = quota_store_take_dirty(st, &n);
    assert_int_equal(n, 2);
    free(rows);
    /* a loaded row is not dirty (it is what the table holds) */
    struct quota_usage u = {DAY1.start, 7, MONTH.start, 9};
    quota_store_put(st, "key:d", &u);
    assert_null(quota_store_take_dirty(st, &n));
    q = req("key:d", 10, &DAY1, 1);
    quota_store_decide(st, &q, NULL, NULL);
    assert_int_equal(q.decision.remaining, 2);
    quota_store_free(st);
}

static void test_sweep_and_full(void **state)
{
    struct quota_store *st = quota_store_new(2);
    struct quota_req q = req("key:a", 10, &DAY1, 1);
    quota_store_decide(st, &q, NULL, NULL);
    q = req("key:b", 10, &DAY1, 1);
    quota_store_decide(st, &q, NULL, NULL);
    /* full: a third identity is admitted, uncounted, and said so */
    for (int i = 0; i < 3; i++) {
        q = req("key:c", 1, &DAY1, 1);
        assert_true(quota_store_decide(st, &q, NULL, NULL));
    }
    struct quota_store_stats s;
    quota_store_stats(st, &s);
    assert_int_equal(s.entries, 2);
    assert_int_equal(s.untracked, 3);
    assert_true(s.bytes > 2 * 64);
    /* dirty entries are kept until written */
    assert_int_equal(quota_store_sweep(st, DAY2.start, MONTH.end), 0);
    size_t n;
    free(quota_store_take_dirty(st, &n));
    /* the month still runs: kept */
    assert_int_equal(quota_store_sweep(st, DAY2.start, MONTH.start), 0);
    /* both periods over: dropped, and room again */
    assert_int_equal(quota_store_sweep(st, DAY2.start, MONTH.end), 2);
    q = req("key:c", 1, &DAY2, 1);
    assert_true(quota_store_decide(st, &q, NULL, NULL));
    q = req("key:c", 1, &DAY2, 1);
    assert_false(quota_store_decide(st, &q, NULL, NULL));
    quota_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_rollover_only_forward),
        cmocka_unit_test(test_dirty_marks),
        cmocka_unit_test(test_sweep_and_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
