/* The developer endpoints' bodies and rules (src/developer/body.c): what a
 * create or rotate body may hold, and how a request is held to the
 * caller's tier (order under tiers:, exempt tiers, quotas capped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "developer/developer.h"

#define CONFIG                                                                                     \
    "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"                                         \
    "tiers:\n"                                                                                     \
    "  free: {limits: [\"100/h\"], quota: {daily: 1000}}\n"                                        \
    "  pro: {limits: [\"1000/h\"], quota: {daily: 100000, monthly: 1000000}}\n"                    \
    "  enterprise: {limits: [\"10000/h\"]}\n"                                                      \
    "  staff: {exempt: true}\n"                                                                    \
    "identity:\n  jwt: {secret: \"0123456789abcdef0123456789abcdef\", default_tier: free}\n"       \
    "developer: {enabled: true, max_keys: 5}\n"

static struct config *load(const char *yaml)
{
    char *err = NULL;
    struct config *c = cfg_load_string(yaml, strlen(yaml), "t.yaml", NULL, NULL, &err);
    if (!c)
        fail_msg("config: %s", err);
    return c;
}

static int parse(const char *body, struct dev_create *out)
{
    const char *why = NULL;
    int rc = dev_parse_create(body, strlen(body), out, &why);
    if (rc < 0)
        assert_non_null(why);
    return rc;
}

static void test_parse_create(void **state)
{
    struct dev_create r;
    assert_int_equal(parse("{\"name\": \"ci\"}", &r), 0);
    assert_string_equal(r.name, "ci");
    assert_string_equal(r.tier, "");
    assert_int_equal(r.quota_daily, -1);
    assert_int_equal(r.quota_monthly, -1);
    assert_int_equal(
        parse(
            "{\"name\": \"ci\", \"tier\": \"pro\", \"quotas\": {\"daily\": 5, \"monthly\": null}}",
            &r),
        0);
    assert_string_equal(r.tier, "pro");
    assert_int_equal(r.quota_daily, 5);
    assert_int_equal(r.quota_monthly, -1);
    const char *bad[] = {
        "",
        "[]",
        "{\"name\": \"ci\"",
        "{}",
        "{\"name\": \"\"}",
        "{\"name\": 1}",
        "{\"name\": \"a\\u0000b\"}",
        "{\"name\": \"a\\nb\"}",
        "{\"name\": \"ci\", \"owner\": \"mallory\"}",
        "{\"name\": \"ci\", \"name\": \"x\"}",
        "{\"name\": \"ci\", \"tier\": 3}",
        "{\"name\": \"ci\", \"tier\": \"\"}",
        "{\"name\": \"ci\", \"quotas\": []}",
        "{\"name\": \"ci\", \"quotas\": {\"weekly\": 1}}",
        "{\"name\": \"ci\", \"quotas\": {\"daily\": 0}}",
        "{\"name\": \"ci\", \"quotas\": {\"daily\": 1.5}}",
        "{\"name\": \"ci\", \"quotas\": {\"daily\": 9007199254740993}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &r) == 0)
            fail_msg("accepted: %s", bad[i]);
    char big[DEV_MAX_BODY + 64];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse(big, &r), -1);
}

static void test_parse_rotate(void **state)
{
    int64_t g;
    const char *why;
    assert_int_equal(dev_parse_rotate("", 0, &g, &why), 0);
    assert_int_equal(g, 0);
    assert_int_equal(dev_parse_rotate("{}", 2, &g, &why), 0);
    assert_int_equal(dev_parse_rotate("{\"grace\": \"1h\"}", 15, &g, &why), 0);
    assert_int_equal(g, 3600000);
    assert_int_equal(dev_parse_rotate("{\"grace\": \"7d\"}", 15, &g, &why), 0);
    assert_int_equal(dev_parse_rotate("{\"grace\": \"8d\"}", 15, &g, &why), -1);
    assert_int_equal(dev_parse_rotate("{\"grace\": 5}", 12, &g, &why), -1);
    assert_int_equal(dev_parse_rotate("{\"x\": 1}", 8, &g, &why), -1);
    assert_int_equal(dev_parse_rotate("nope", 4, &g, &why), -1);
}

static int apply(const struct config *c, const char *own, const char *body, struct dev_create *r,
                 char *why)
{
    assert_int_equal(parse(body, r), 0);
    return dev_apply_rules(c, dev_caller_tier(c, own), r, why, 256);
}

static void test_rules(void **state)
{
    struct config *c = load(CONFIG);
    struct dev_create r;
    char why[256];
    /* The caller's tier: the claim, else default_tier. */
    assert_string_equal(dev_caller_tier(c, "pro")->name, "pro");
    assert_string_equal(dev_caller_tier(c, "")->name, "free");
    assert_string_equal(dev_caller_tier(c, "nosuch")->name, "free");
    /* Own tier by default, lower allowed, higher not. */
    assert_int_equal(apply(c, "pro", "{\"name\": \"a\"}", &r, why), 0);
    assert_string_equal(r.tier, "pro");
    assert_int_equal(apply(c, "pro", "{\"name\": \"a\", \"tier\": \"free\"}", &r, why), 0);
    assert_int_equal(r.quota_daily, -1);        /* free's own daily quota is lower than pro's */
    assert_int_equal(r.quota_monthly, 1000000); /* free has none: capped to pro's */
    assert_int_equal(apply(c, "free", "{\"name\": \"a\", \"tier\": \"pro\"}", &r, why), 403);
    assert_non_null(strstr(why, "above your own"));
    assert_int_equal(apply(c, "enterprise", "{\"name\": \"a\", \"tier\": \"staff\"}", &r, why),
                     403);
    assert_int_equal(apply(c, "staff", "{\"name\": \"a\", \"tier\": \"enterprise\"}", &r, why), 0);
    assert_int_equal(apply(c, "pro", "{\"name\": \"a\", \"tier\": \"nosuch\"}", &r, why), 400);
    assert_int_equal(apply(c, "pro", "{\"name\": \"a\", \"tier\": \"anonymous\"}", &r, why), 400);
    /* Quotas no higher than the caller's. */
    assert_int_equal(apply(c, "free", "{\"name\": \"a\", \"quotas\": {\"daily\": 1001}}", &r, why),
                     403);
    assert_int_equal(apply(c, "free", "{\"name\": \"a\", \"quotas\": {\"daily\": 10}}", &r, why),
                     0);
    assert_int_equal(r.quota_daily, 10);
    /* enterprise has no quota: anything goes. */
    assert_int_equal(
        apply(c, "enterprise", "{\"name\": \"a\", \"quotas\": {\"monthly\": 5000000000}}", &r, why),
        0);
    assert_int_equal(r.quota_monthly, 5000000000);
    cfg_unref(c);
}

static void test_no_tier(void **state)
{
    /* No default_tier: a token without a tier creates nothing. */
    struct config *c = load("upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"
                            "tiers:\n  free: {limits: [\"100/h\"]}\n"
                            "identity:\n  jwt: {secret: \"0123456789abcdef0123456789abcdef\"}\n"
                            "developer: {enabled: true}\n");
    assert_null(dev_caller_tier(c, ""));
    struct dev_create r;
    char why[256];
    assert_int_equal(apply(c, "", "{\"name\": \"a\"}", &r, why), 403);
    assert_int_equal(dev_conf(c)->max_keys, 20);
    assert_non_null(dev_conf(c)->route);
    cfg_unref(c);
}

static void test_config(void **state)
{
    char *err = NULL;
    const char *yaml = "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"
                       "developer: {enabled: true}\n";
    assert_null(cfg_load_string(yaml, strlen(yaml), "t.yaml", NULL, NULL, &err));
    if (!strstr(err, "developer.enabled needs identity.jwt"))
        fail_msg("error: %s", err);
    free(err);
    /* Off by default: no route under /developer/. */
    struct config *c = load("upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n");
    assert_false(dev_conf(c)->enabled);
    assert_null(dev_conf(c)->route);
    cfg_unref(c);
    c = load(CONFIG);
    const struct cfg_route *r = cfg_match_route(c, "/developer/keys/k_1/rotate", 26, 3);
    assert_ptr_equal(r, dev_conf(c)->route);
    assert_ptr_equal(cfg_match_route(c, "/developer/", 11, 1), r);
    assert_ptr_not_equal(cfg_match_route(c, "/developer", 10, 1), r);
    cfg_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_create), cmocka_unit_test(test_parse_rotate),
        cmocka_unit_test(test_rules),        cmocka_unit_test(test_no_tier),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
