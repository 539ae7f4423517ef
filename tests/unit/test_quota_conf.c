/* The quota module's configuration (src/quota/conf.c): the `quotas`
 * calendar with its defaults, its zone loaded with the config and errors at
 * their lines, and tier quotas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "quota/conf.h"

#define UPSTREAM "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"

static struct config *load(const char *yaml, char **err)
{
    return cfg_load_string(yaml, strlen(yaml), "t.yaml", NULL, NULL, err);
}

static void expect_error(const char *yaml, const char *want)
{
    char *err = NULL;
    struct config *c = load(yaml, &err);
    if (c) {
        cfg_unref(c);
        fail_msg("accepted:\n%s", yaml);
    }
    if (!err || strcmp(err, want) != 0)
        fail_msg("error:\n%s\nwant:\n%s", err ? err : "(none)", want);
    free(err);
}

static void test_defaults(void **state)
{
    char *err = NULL;
    struct config *c = load(UPSTREAM, &err);
    assert_non_null(c);
    const struct quota_conf *qc = quota_conf(c);
    assert_string_equal(qc->timezone, "UTC");
    assert_int_equal(qc->monthly_reset_day, 1);
    assert_non_null(qc->zone);
    assert_int_equal(quota_zone_offset(qc->zone, 1796461140), 0);
    cfg_unref(c);
}

static void test_calendar_and_tiers(void **state)
{
    char *err = NULL;
    struct config *c = load(UPSTREAM "quotas: {timezone: Europe/Paris, monthly_reset_day: 15}\n"
                                     "tiers:\n"
                                     "  free: {limits: [\"10/s\"], quota: {monthly: 100000}}\n"
                                     "  pro: {quota: {daily: 5000, monthly: 150000}}\n"
                                     "  staff: {exempt: true}\n",
                            &err);
    if (!c)
        fail_msg("%s", err);
    const struct quota_conf *qc = quota_conf(c);
    assert_int_equal(qc->monthly_reset_day, 15);
    assert_int_equal(quota_zone_offset(qc->zone, 1796461140), 3600);
    const struct quota_tier_conf *free_q = quota_tier_conf(cfg_find_tier(c, "free"));
    assert_int_equal(free_q->daily, 0);
    assert_int_equal(free_q->monthly, 100000);
    const struct quota_tier_conf *pro = quota_tier_conf(cfg_find_tier(c, "pro"));
    assert_int_equal(pro->daily, 5000);
    assert_int_equal(pro->monthly, 150000);
    const struct quota_tier_conf *staff = quota_tier_conf(cfg_find_tier(c, "staff"));
    assert_int_equal(staff->daily + staff->monthly, 0);
    struct quota_period p =
        quota_period_at(qc->zone, QUOTA_MONTHLY, qc->monthly_reset_day, 1796461140);
    assert_int_equal(p.start, 1794700800 - 3600); /* 2026-11-15 00:00 in Paris */
    cfg_unref(c);
}

static void test_errors(void **state)
{
    expect_error(UPSTREAM "quotas: {timezone: Mars/Olympus_Mons}\n",
                 "t.yaml:3: quotas: timezone: Mars/Olympus_Mons: unknown time zone "
                 "(/usr/share/zoneinfo/Mars/Olympus_Mons: No such file or directory)");
    expect_error(UPSTREAM "quotas: {timezone: ../../etc/passwd}\n",
                 "t.yaml:3: quotas: timezone: ../../etc/passwd: not a time zone name (such as "
                 "Europe/Paris)");
    expect_error(UPSTREAM "quotas: {monthly_reset_day: 29}\n",
                 "t.yaml:3: quotas.monthly_reset_day: 29 is out of range (1..28)");
    expect_error(UPSTREAM "tiers:\n  free: {quota: {weekly: 10}}\n",
                 "t.yaml:4: unknown key 'tiers.free.quota.weekly'");
    expect_error(UPSTREAM "tiers:\n  free: {quota: {daily: -1}}\n",
                 "t.yaml:4: tiers.free.quota.daily: -1 is out of range (0..1125899906842624)");
}

static const char *alerts_env(const char *name, void *ctx)
{
    return strcmp(name, "WEBHOOK_SECRET") == 0 ? "whsec_from_the_environment" : NULL;
}

static void test_alerts_defaults(void **state)
{
    char *err = NULL;
    struct config *c = load(UPSTREAM, &err);
    assert_non_null(c);
    const struct quota_alerts_conf *qa = quota_alerts_conf(c);
    assert_int_equal(qa->n_thresholds, 3);
    assert_int_equal(qa->thresholds[0], 80);
    assert_int_equal(qa->thresholds[1], 95);
    assert_int_equal(qa->thresholds[2], 100);
    assert_null(qa->webhook);
    assert_null(qa->secret);
    cfg_unref(c);
}

static void test_alerts_rows(void **state)
{
    static const char yaml[] = UPSTREAM
        "quota_alerts: {thresholds: [50, 80, 95, 99, 100], "
        "webhook: \"https://hooks.example.com/sluice?x=1\", secret: \"${WEBHOOK_SECRET}\"}\n";
    char *err = NULL;
    struct config *c = cfg_load_string(yaml, strlen(yaml), "t.yaml", alerts_env, NULL, &err);
    if (!c)
        fail_msg("%s", err);
    const struct quota_alerts_conf *qa = quota_alerts_conf(c);
    assert_int_equal(qa->n_thresholds, 5);
    assert_int_equal(qa->thresholds[0], 50);
    assert_int_equal(qa->thresholds[4], 100);
    assert_string_equal(qa->webhook, "https://hooks.example.com/sluice?x=1");
    assert_string_equal(qa->secret, "whsec_from_the_environment");
    cfg_unref(c);

    /* No alerts at all; an empty webhook is none (webhook: "${HOOK:-}"). */
    c = load(UPSTREAM "quota_alerts: {thresholds: [], webhook: \"\"}\n", &err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(quota_alerts_conf(c)->n_thresholds, 0);
    assert_null(quota_alerts_conf(c)->webhook);
    cfg_unref(c);
    c = load(UPSTREAM "quota_alerts: {thresholds: 90}\n", &err);
    assert_non_null(c);
    assert_int_equal(quota_alerts_conf(c)->n_thresholds, 1);
    assert_int_equal(quota_alerts_conf(c)->thresholds[0], 90);
    cfg_unref(c);
}

static void test_alerts_errors(void **state)
{
    expect_error(UPSTREAM "quota_alerts: {thresholds: [0]}\n",
                 "t.yaml:3: quota_alerts.thresholds[0]: '0' is not a percentage 1..100");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [80, 101]}\n",
                 "t.yaml:3: quota_alerts.thresholds[1]: '101' is not a percentage 1..100");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [80, 80%]}\n",
                 "t.yaml:3: quota_alerts.thresholds[1]: '80%' is not a percentage 1..100");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [95, 80]}\n",
                 "t.yaml:3: quota_alerts.thresholds[1]: 80 after 95: thresholds go in ascending "
                 "order, each once");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [80, 80]}\n",
                 "t.yaml:3: quota_alerts.thresholds[1]: 80 after 80: thresholds go in ascending "
                 "order, each once");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [10, 20, 30, 40, 50, 60, 70, 80, 90]}\n",
                 "t.yaml:3: quota_alerts.thresholds: too many entries (9; at most 8)");
    expect_error(UPSTREAM "quota_alerts: {webhook: \"ftp://h/x\", secret: 0123456789abcdef}\n",
                 "t.yaml:3: quota_alerts: webhook: not an http:// or https:// URL: 'ftp://h/x'");
    expect_error(UPSTREAM "quota_alerts: {webhook: \"http://h:0/x\", secret: 0123456789abcdef}\n",
                 "t.yaml:3: quota_alerts: webhook: the port must be a number 1..65535: "
                 "'http://h:0/x'");
    expect_error(UPSTREAM "quota_alerts: {webhook: \"http://127.0.0.1:9999/alerts\"}\n",
                 "t.yaml:3: quota_alerts: secret: required with a webhook (it signs each "
                 "request)");
    expect_error(UPSTREAM "quota_alerts: {webhook: \"http://127.0.0.1:9999/a\", secret: short}\n",
                 "t.yaml:3: quota_alerts: secret: at least 16 characters");
    expect_error(UPSTREAM
                 "quota_alerts: {webhook: \"http://h/\", secret: \"${NO_SUCH_SECRET_VAR}\"}\n",
                 "t.yaml:3: quota_alerts.secret: environment variable 'NO_SUCH_SECRET_VAR' is not "
                 "set (give a default with ${NO_SUCH_SECRET_VAR:-value})");
    expect_error(UPSTREAM "quota_alerts: {thresholds: [80], retries: 3}\n",
                 "t.yaml:3: unknown key 'quota_alerts.retries'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_calendar_and_tiers),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_alerts_defaults),
        cmocka_unit_test(test_alerts_rows), cmocka_unit_test(test_alerts_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
