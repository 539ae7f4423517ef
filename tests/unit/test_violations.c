/* The bounded violations table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "guard/violations.h"

static void test_counts_per_identity(void **state)
{
    struct viol_table *v = viol_new(100);
    viol_record(v, "ip:1.1.1.1", "/a", 1000);
    viol_record(v, "ip:1.1.1.1", "/b", 2000);
    viol_record(v, "ip:2.2.2.2", "/a", 3000);
    struct viol_view out;
    assert_int_equal(viol_get(v, "ip:1.1.1.1", &out), 0);
    assert_int_equal(out.count, 2);
    assert_int_equal(out.first_us, 1000);
    assert_int_equal(out.last_us, 2000);
    assert_string_equal(out.route, "/b");
    assert_int_equal(viol_get(v, "ip:9.9.9.9", &out), -1);
    viol_free(v);
}

static void test_top_is_sorted_by_count(void **state)
{
    struct viol_table *v = viol_new(100);
    char id[32];
    for (int i = 1; i <= 10; i++) {
        snprintf(id, sizeof(id), "ip:10.0.0.%d", i);
        for (int k = 0; k < i; k++)
            viol_record(v, id, "/", k);
    }
    struct viol_view top[3];
    assert_int_equal(viol_top(v, top, 3), 3);
    assert_string_equal(top[0].identity, "ip:10.0.0.10");
    assert_int_equal(top[0].count, 10);
    assert_int_equal(top[1].count, 9);
    assert_int_equal(top[2].count, 8);
    viol_free(v);
}

static void test_bounded_and_keeps_recent(void **state)
{
    struct viol_table *v = viol_new(1000);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        viol_record(v, id, "/", i);
    }
    assert_true(viol_size(v) <= 1000);
    /* the newest entry survives eviction by least-recently-seen sampling */
    struct viol_view out;
    assert_int_equal(viol_get(v, id, &out), 0);
    viol_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_per_identity),
        cmocka_unit_test(test_top_is_sorted_by_count),
        cmocka_unit_test(test_bounded_and_keeps_recent),
    };
    return cmocka_run_group_tests_name("violations", tests, NULL, NULL);
}
