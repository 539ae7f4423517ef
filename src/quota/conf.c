/* The quota module's config rows (quota/conf.h). */
#include "quota/conf.h"

#include <stdlib.h>
#include <string.h>

#include "conf/walker.h"
#include "quota/webhook.h"

/* An HMAC key short enough to guess signs nothing. */
#define QUOTA_SECRET_MIN 16

/* The calendar's zone is read when the config loads, so a misspelt zone is
 * an error at its line, and freed with the config. */
static void quota_cfg_free_zone(void *zone)
{
    quota_zone_free(zone);
}

static void quota_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct quota_conf *qc = base;
    if (!qc->timezone) /* already reported */
        return;
    char *err = NULL;
    qc->zone = quota_zone_load(qc->timezone, &err);
    if (!qc->zone) {
        cfg_kerror(cx, line, "timezone: %s", err);
        free(err);
        return;
    }
    cfg_on_free(cx, quota_cfg_free_zone, qc->zone);
}

static const struct cfg_key quota_cfg_keys[] = {
    CFG_ROW("timezone", cfg_set_string, struct quota_conf, timezone, 0, 0, "UTC", CFG_NONEMPTY),
    CFG_INT("monthly_reset_day", struct quota_conf, monthly_reset_day, 1, 28, "1", 0),
    CFG_INT("max_identities", struct quota_conf, max_identities, 1, INT64_C(1) << 32, "1000000",
            CFG_RESTART),
    CFG_END,
};
static const struct cfg_section quota_cfg_section = {quota_cfg_keys, quota_cfg_check};

/* `quota_alerts.thresholds`: percentages 1..100, strictly ascending (each
 * is one alert per period, so a repeat would be a mistake). */
static int quota_cfg_threshold_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s,
                                    int line, int i, void *base)
{
    struct quota_alerts_conf *qa = base;
    int v = 0;
    size_t len = strlen(s);
    for (size_t j = 0; j < len && v <= 100; j++)
        v = s[j] >= '0' && s[j] <= '9' ? v * 10 + (s[j] - '0') : 101;
    if (len == 0 || v < 1 || v > 100) {
        cfg_kerror(cx, line, "'%.*s' is not a percentage 1..100", CFG_QUOTE_MAX, s);
        return -1;
    }
    if (qa->n_thresholds > 0 && v <= qa->thresholds[qa->n_thresholds - 1]) {
        cfg_kerror(cx, line, "%d after %d: thresholds go in ascending order, each once", v,
                   qa->thresholds[qa->n_thresholds - 1]);
        return -1;
    }
    qa->thresholds[qa->n_thresholds++] = v;
    return 0;
}

static void quota_cfg_set_thresholds(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                     void *base)
{
    struct quota_alerts_conf *qa = base;
    if (!node) { /* the row's default, SPEC 6.3's */
        static const int defaults[] = {80, 95, 100};
        memcpy(qa->thresholds, defaults, sizeof(defaults));
        qa->n_thresholds = 3;
        return;
    }
    cfg_each(cx, k, node, base, quota_cfg_threshold_item);
}

/* A secret that was given but could not be read (an unset variable) is
 * left "": reported already, not missing. */
static void quota_cfg_set_secret(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                 void *base)
{
    struct quota_alerts_conf *qa = base;
    cfg_set_string(cx, k, node, base);
    if (node && !qa->secret)
        qa->secret = "";
}

/* The webhook is checked here, so that a URL the delivery thread could not
 * use is an error at its line, not a failure every retry. "" is no webhook
 * (webhook: "${ALERT_WEBHOOK:-}"). */
static void quota_alerts_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct quota_alerts_conf *qa = base;
    if (qa->webhook && !qa->webhook[0])
        qa->webhook = NULL;
    if (!qa->webhook)
        return;
    struct quota_url u;
    const char *why;
    if (quota_url_parse(qa->webhook, &u, &why) != 0)
        cfg_kerror(cx, line, "webhook: %s: '%.*s'", why, CFG_QUOTE_MAX, qa->webhook);
    if (!qa->secret)
        cfg_kerror(cx, line, "secret: required with a webhook (it signs each request)");
    else if (qa->secret[0] && strlen(qa->secret) < QUOTA_SECRET_MIN)
        cfg_kerror(cx, line, "secret: at least %d characters", QUOTA_SECRET_MIN);
}

static const struct cfg_key quota_alerts_cfg_keys[] = {
    CFG_LIST("thresholds", quota_cfg_set_thresholds, struct quota_alerts_conf, thresholds,
             n_thresholds, 0, QUOTA_MAX_THRESHOLDS, "[80, 95, 100]", 0),
    CFG_STRING("webhook", struct quota_alerts_conf, webhook, 0),
    CFG_ROW("secret", quota_cfg_set_secret, struct quota_alerts_conf, secret, 0, 0, NULL,
            CFG_NONEMPTY),
    CFG_END,
};
static const struct cfg_section quota_alerts_cfg_section = {quota_alerts_cfg_keys,
                                                            quota_alerts_cfg_check};

/* The top level; its first member is what quota_conf() returns. */
struct quota_cfg_top {
    struct quota_conf quotas;
    struct quota_alerts_conf alerts;
};
static const struct cfg_key quota_cfg_top_keys[] = {
    /* Read even when absent: the defaults make a UTC calendar. */
    CFG_SECTION("quotas", struct quota_cfg_top, quotas, &quota_cfg_section, 0),
    /* Read even when absent: the default thresholds, no webhook. */
    CFG_SECTION("quota_alerts", struct quota_cfg_top, alerts, &quota_alerts_cfg_section, 0),
    CFG_END,
};

const struct quota_alerts_conf *quota_alerts_conf(const struct config *c)
{
    const struct quota_cfg_top *top = c->mod[MOD_quota];
    return &top->alerts;
}
static const struct cfg_section quota_cfg_top_section = {quota_cfg_top_keys, NULL};

/* A tier's `quota: {daily: N, monthly: N}`. */
static const struct cfg_key quota_cfg_tier_quota_keys[] = {
    CFG_INT("daily", struct quota_tier_conf, daily, 0, INT64_C(1) << 50, "0", 0),
    CFG_INT("monthly", struct quota_tier_conf, monthly, 0, INT64_C(1) << 50, "0", 0),
    CFG_END,
};
static const struct cfg_section quota_cfg_tier_quota_section = {quota_cfg_tier_quota_keys, NULL};

struct quota_cfg_tier {
    struct quota_tier_conf quota;
};
static const struct cfg_key quota_cfg_tier_keys[] = {
    CFG_SECTION("quota", struct quota_cfg_tier, quota, &quota_cfg_tier_quota_section,
                CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section quota_cfg_tier_section = {quota_cfg_tier_keys, NULL};

const struct cfg_module quota_cfg_module = {
    .top = &quota_cfg_top_section,
    .top_size = sizeof(struct quota_cfg_top),
    .tier = &quota_cfg_tier_section,
    .tier_size = sizeof(struct quota_cfg_tier),
};
