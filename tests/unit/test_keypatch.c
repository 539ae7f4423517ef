/* Unit tests of src/auth/keypatch.c: the body of PATCH /keys/{id} read
 * against a config (every field, null clearing, the normal forms the store
 * keeps, each kind of 400 with its message), and the tier check that `keys
 * create`, `keys update` and PATCH share (naming the tiers a key may take). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keypatch.h"

#define CONFIG                                                                                     \
    "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"                                             \
    "tiers:\n"                                                                                     \
    "  anonymous: {limits: [\"100/h\"]}\n"                                                         \
    "  free: {limits: [\"2/min\"]}\n"                                                              \
    "  pro: {limits: [\"100/min\"]}\n"                                                             \
    "routes:\n"                                                                                    \
    "  - prefix: /\n"

static int setup(void **state)
{
    char *err = NULL;
    struct config *c = cfg_load_string(CONFIG, strlen(CONFIG), "t.yaml", NULL, NULL, &err);
    if (!c) {
        fprintf(stderr, "%s\n", err);
        free(err);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    cfg_unref(*state);
    return 0;
}

/* Parses the JSON text <body>; the reason, or NULL. <p> is left parsed. */
static const char *parse(const struct config *c, const char *body, struct keypatch *p)
{
    json_error_t jerr;
    json_t *doc = json_loads(body, JSON_ALLOW_NUL, &jerr);
    const char *why = keypatch_parse(c, doc, p);
    json_decref(doc);
    return why;
}

/* <body> is refused with a message containing <want>. */
static void refused(const struct config *c, const char *body, const char *want)
{
    struct keypatch p;
    const char *why = parse(c, body, &p);
    if (!why || !strstr(why, want))
        fail_msg("%s: got %s, want a message with '%s'", body, why ? why : "(accepted)", want);
    keypatch_release(&p);
}

static void test_every_field(void **state)
{
    struct config *c = *state;
    struct keypatch p;
    const char *why = parse(c,
                            "{\"tier\": \"pro\", \"name\": \"acme ci\", \"owner\": \"acme\", "
                            "\"scopes\": [\"orders:read\", \"orders:write,admin\"], "
                            "\"limits\": [\"10/s\", \"100/min\"], \"quota_daily\": 500, "
                            "\"quota_monthly\": 9007199254740992}",
                            &p);
    assert_null(why);
    assert_string_equal(p.u.tier, "pro");
    assert_string_equal(p.u.name, "acme ci");
    assert_string_equal(p.u.owner, "acme");
    assert_string_equal(p.u.scopes, "orders:read orders:write admin"); /* the store's form */
    assert_string_equal(p.u.limits, "10/s, 100/min");
    assert_true(p.u.set_quota_daily && p.u.quota_daily == 500);
    assert_true(p.u.set_quota_monthly && p.u.quota_monthly == KS_QUOTA_MAX);
    assert_false(ks_update_empty(&p.u));
    keypatch_release(&p);
    keypatch_release(&p); /* idempotent */

    /* One field: the others are left alone (NULL, not set). */
    assert_null(parse(c, "{\"quota_monthly\": 100000}", &p));
    assert_null(p.u.tier);
    assert_null(p.u.name);
    assert_null(p.u.scopes);
    assert_null(p.u.limits);
    assert_false(p.u.set_quota_daily);
    assert_true(p.u.set_quota_monthly && p.u.quota_monthly == 100000);
    keypatch_release(&p);

    /* Strings for lists, as POST /keys takes them. */
    assert_null(parse(c, "{\"scopes\": \" a, b  c\", \"limits\": \"5/s,1000/h\"}", &p));
    assert_string_equal(p.u.scopes, "a b c");
    assert_string_equal(p.u.limits, "5/s, 1000/h");
    keypatch_release(&p);
}

static void test_null_clears(void **state)
{
    struct config *c = *state;
    struct keypatch p;
    assert_null(parse(c,
                      "{\"name\": null, \"owner\": null, \"scopes\": null, \"limits\": null, "
                      "\"quota_daily\": null, \"quota_monthly\": null}",
                      &p));
    assert_string_equal(p.u.name, "");
    assert_string_equal(p.u.owner, "");
    assert_string_equal(p.u.scopes, "");
    assert_string_equal(p.u.limits, ""); /* the tier's limits again */
    assert_true(p.u.set_quota_daily && p.u.quota_daily == -1);
    assert_true(p.u.set_quota_monthly && p.u.quota_monthly == -1);
    keypatch_release(&p);
    assert_null(parse(c, "{\"scopes\": [], \"limits\": []}", &p));
    assert_string_equal(p.u.scopes, "");
    assert_string_equal(p.u.limits, "");
    keypatch_release(&p);
}

static void test_refused(void **state)
{
    struct config *c = *state;
    struct keypatch p;
    /* Not an object, or nothing to change. */
    assert_non_null(keypatch_parse(c, NULL, &p));
    keypatch_release(&p);
    refused(c, "[]", "JSON object");
    refused(c, "\"pro\"", "JSON object");
    refused(c, "{}", "at least one of tier");
    /* Unknown fields are named, fields a key cannot change too. */
    refused(c, "{\"colour\": \"red\"}", "unknown field 'colour'");
    refused(c, "{\"tier\": \"pro\", \"expires\": \"1d\"}", "unknown field 'expires'");
    refused(c, "{\"id\": \"key_1\"}", "unknown field 'id'");
    /* Tiers: known, not anonymous, never removed; the message names them. */
    refused(c, "{\"tier\": \"gold\"}",
            "unknown tier 'gold' (a key takes one of the config's "
            "tiers: free, pro)");
    refused(c, "{\"tier\": \"anonymous\"}", "free, pro");
    refused(c, "{\"tier\": null}", "tier cannot be removed");
    refused(c, "{\"tier\": 5}", "tier is a string");
    refused(c, "{\"tier\": \"\"}", "unknown tier ''");
    /* Types and bounds. */
    refused(c, "{\"name\": 5}", "name is a string");
    refused(c, "{\"owner\": [\"a\"]}", "owner is a string");
    refused(c, "{\"name\": \"a\\u0000b\"}", "name is a string");
    char big[300];
    snprintf(big, sizeof(big), "{\"owner\": \"%0129d\"}", 0);
    refused(c, big, "owner is longer than 128 bytes");
    refused(c, "{\"scopes\": [1]}", "scopes is a list of strings");
    refused(c, "{\"scopes\": {}}", "scopes is a list of strings");
    refused(c, "{\"scopes\": \"a\\\"b\"}", "scopes are names");
    refused(c, "{\"scopes\": \"a\\tb\\u0001\"}", "scopes are names");
    refused(c, "{\"limits\": [\"lots\"]}", "limits:");
    refused(c, "{\"limits\": 100}", "limits is a list of strings");
    refused(c,
            "{\"limits\": [\"1/s\", \"2/s\", \"3/s\", \"4/s\", \"5/s\", \"6/s\", \"7/s\", "
            "\"8/s\", \"9/s\", \"10/s\", \"11/s\", \"12/s\", \"13/s\", \"14/s\", \"15/s\", "
            "\"16/s\", \"17/s\"]}",
            "at most 16");
    refused(c, "{\"quota_daily\": 0}", "quota_daily is a whole number");
    refused(c, "{\"quota_daily\": -1}", "quota_daily");
    refused(c, "{\"quota_daily\": 1.5}", "quota_daily");
    refused(c, "{\"quota_daily\": 100.0}", "quota_daily");
    refused(c, "{\"quota_monthly\": \"100\"}", "quota_monthly");
    refused(c, "{\"quota_monthly\": true}", "quota_monthly");
    refused(c, "{\"quota_monthly\": 9007199254740993}", "quota_monthly");
    refused(c, "{\"quota_monthly\": [1]}", "quota_monthly");
    /* One bad field spoils the body, whatever its place. */
    refused(c, "{\"tier\": \"pro\", \"quota_daily\": 0}", "quota_daily");
    refused(c, "{\"quota_daily\": 5, \"tier\": \"gold\"}", "gold");
}

static void test_tier_ok(void **state)
{
    struct config *c = *state;
    char why[KEYPATCH_WHY_MAX] = "";
    assert_true(keypatch_tier_ok(c, "free", why, sizeof(why)));
    assert_true(keypatch_tier_ok(c, "pro", why, sizeof(why)));
    assert_false(keypatch_tier_ok(c, "gold", why, sizeof(why)));
    assert_string_equal(why,
                        "unknown tier 'gold' (a key takes one of the config's tiers: free, pro)");
    assert_false(keypatch_tier_ok(c, "anonymous", why, sizeof(why)));
    assert_string_equal(why,
                        "tier 'anonymous' is for clients without a key (a key takes one of: free, "
                        "pro)");
    /* A small buffer cuts the message, never overflows. */
    char small[16];
    assert_false(keypatch_tier_ok(c, "gold", small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_null_clears),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_tier_ok),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
