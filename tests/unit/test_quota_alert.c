/* A quota alert's id and body (src/quota/alert.c): the id is a function of
 * identity, quota, threshold and period only (vectors from Python's
 * hashlib), and the body is SPEC 6.3's JSON, fields in order, nulls for
 * what is missing, valid whatever the identity holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "quota/alert.h"

static const struct quota_alert KEY_ALERT = {
    .identity = "key:k_demo",
    .key_id = "k_demo",
    .owner = "alice",
    .quota = QUOTA_MONTHLY,
    .threshold = 80,
    .used = 80000,
    .limit = 100000,
    .period_start = 1793577600,
    .period_end = 1796256000,
};

static const char *id_of(const struct quota_alert *a)
{
    static char id[QUOTA_ALERT_ID_LEN + 1];
    quota_alert_id(a, id);
    return id;
}

static void test_id_vectors(void **state)
{
    /* hashlib.sha256(b"key:k_demo|monthly|80|1793577600").hexdigest()[:32] */
    assert_string_equal(id_of(&KEY_ALERT), "e61bdf8d0e3f32b89e8dd997e03d9598");
    struct quota_alert ip = {
        .identity = "ip:203.0.113.7",
        .quota = QUOTA_DAILY,
        .threshold = 100,
        .used = 1000,
        .limit = 1000,
        .period_start = 1796428800,
        .period_end = 1796515200,
    };
    assert_string_equal(id_of(&ip), "d19907681154f82706f9391ab4e25902");
}

static void test_id_what_counts(void **state)
{
    char base[QUOTA_ALERT_ID_LEN + 1];
    quota_alert_id(&KEY_ALERT, base);
    /* The same crossing counted again: same id, whatever the counts say. */
    struct quota_alert a = KEY_ALERT;
    a.used = 80001;
    a.limit = 99999;
    a.period_end = 1;
    a.key_id = NULL;
    a.owner = "bob";
    assert_string_equal(id_of(&a), base);
    /* Another identity, quota, threshold or period: another alert. */
    a = KEY_ALERT;
    a.identity = "key:k_demo2";
    assert_string_not_equal(id_of(&a), base);
    a = KEY_ALERT;
    a.quota = QUOTA_DAILY;
    assert_string_not_equal(id_of(&a), base);
    a = KEY_ALERT;
    a.threshold = 95;
    assert_string_not_equal(id_of(&a), base);
    a = KEY_ALERT;
    a.period_start += 86400;
    assert_string_not_equal(id_of(&a), base);
}

static char *body_of(const struct quota_alert *a)
{
    struct buf b = {0};
    quota_alert_body(a, id_of(a), &b);
    buf_append(&b, "", 1);
    return b.data;
}

static void test_body_exact(void **state)
{
    char *body = body_of(&KEY_ALERT);
    assert_string_equal(body, "{\"type\": \"quota.threshold\", \"identity\": \"key:k_demo\", "
                              "\"key_id\": \"k_demo\", \"owner\": \"alice\", \"quota\": "
                              "\"monthly\", \"threshold\": 80, \"used\": 80000, \"limit\": "
                              "100000, \"period_start\": 1793577600, \"period_end\": 1796256000, "
                              "\"id\": \"e61bdf8d0e3f32b89e8dd997e03d9598\"}");
    free(body);

    struct quota_alert ip = {.identity = "ip:2001:db8:1:2::/64",
                             .quota = QUOTA_DAILY,
                             .threshold = 95,
                             .used = 950,
                             .limit = 1000,
                             .period_start = 10,
                             .period_end = 20};
    body = body_of(&ip);
    json_error_t err;
    json_t *doc = json_loads(body, JSON_PRESERVE_ORDER, &err);
    assert_non_null(doc);
    static const char *const order[] = {"type",         "identity",   "key_id", "owner",
                                        "quota",        "threshold",  "used",   "limit",
                                        "period_start", "period_end", "id"};
    int i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        assert_true(i < 11);
        assert_string_equal(k, order[i++]);
    }
    assert_int_equal(i, 11);
    assert_true(json_is_null(json_object_get(doc, "key_id")));
    assert_true(json_is_null(json_object_get(doc, "owner")));
    assert_string_equal(json_string_value(json_object_get(doc, "quota")), "daily");
    assert_string_equal(json_string_value(json_object_get(doc, "identity")),
                        "ip:2001:db8:1:2::/64");
    assert_int_equal(json_integer_value(json_object_get(doc, "threshold")), 95);
    json_decref(doc);
    free(body);
}

static void test_body_escapes(void **state)
{
    struct quota_alert a = KEY_ALERT;
    a.identity = "sub:a\"b\\c\nd\x01";
    a.owner = "\xff owner";
    char *body = body_of(&a);
    assert_null(strchr(body, '\n'));
    json_error_t err;
    json_t *doc = json_loads(body, 0, &err);
    if (!doc)
        fail_msg("%s: %s", body, err.text);
    assert_string_equal(json_string_value(json_object_get(doc, "identity")), "sub:a\"b\\c\nd\x01");
    assert_string_equal(json_string_value(json_object_get(doc, "owner")), "\xef\xbf\xbd owner");
    json_decref(doc);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_vectors),
        cmocka_unit_test(test_id_what_counts),
        cmocka_unit_test(test_body_exact),
        cmocka_unit_test(test_body_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
