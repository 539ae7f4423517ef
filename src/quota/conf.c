/* The quota module's config rows (quota/conf.h). */
#include "quota/conf.h"

#include <stdlib.h>

#include "conf/walker.h"

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

/* The top level; its first member is what quota_conf() returns. */
struct quota_cfg_top {
    struct quota_conf quotas;
};
static const struct cfg_key quota_cfg_top_keys[] = {
    /* Read even when absent: the defaults make a UTC calendar. */
    CFG_SECTION("quotas", struct quota_cfg_top, quotas, &quota_cfg_section, 0),
    CFG_END,
};
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
