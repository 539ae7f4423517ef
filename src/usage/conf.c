/* The usage module's config rows (usage/conf.h). */
#include "usage/conf.h"

#include <string.h>

#include "conf/walker.h"

int usage_parse_price(const char *s, int64_t *micro)
{
    int64_t whole = 0, frac = 0;
    int n_whole = 0, n_frac = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++, n_whole++) {
        if (n_whole >= 7) /* past USAGE_PRICE_MAX anyway; keeps whole from overflowing */
            return -1;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, n_frac++) {
            if (n_frac >= 6)
                return -1;
            frac = frac * 10 + (*p - '0');
        }
        if (n_frac == 0)
            return -1;
    }
    if (*p != '\0' || n_whole == 0)
        return -1;
    for (int i = n_frac; i < 6; i++)
        frac *= 10;
    int64_t v = whole * 1000000 + frac;
    if (v > (int64_t)USAGE_PRICE_MAX * 1000000)
        return -1;
    *micro = v;
    return 0;
}

static void usage_cfg_set_price(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                void *base)
{
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    struct usage_tier_conf *tc = base;
    if (usage_parse_price(s, &tc->price_micro) < 0)
        cfg_kerror(cx, cfg_line(node),
                   "'%.*s' is not a price (a number from 0 to %d with at most 6 decimals, "
                   "such as 0.5)",
                   CFG_QUOTE_MAX, s, USAGE_PRICE_MAX);
}

static const struct cfg_key usage_cfg_retention_keys[] = {
    /* An hour at least: a row is written while its hour runs. Past 400
     * days, daily rows do the job. */
    CFG_DURATION("hourly", struct usage_retention_conf, hourly_ms, 3600000, 400 * CFG_DAY_MS, "7d"),
    /* A day at least; ten years at most (monthly rows are kept anyway). */
    CFG_DURATION("daily", struct usage_retention_conf, daily_ms, CFG_DAY_MS, 3660 * CFG_DAY_MS,
                 "400d"),
    CFG_END,
};
static const struct cfg_section usage_cfg_retention_section = {usage_cfg_retention_keys, NULL};

static const struct cfg_key usage_cfg_keys[] = {
    CFG_BOOL("enabled", struct usage_conf, enabled, "true"),
    /* A worker hands its rows over five times a second, so 100000 rows
     * means 500000 new identity x route pairs a second before anything
     * folds; ~0.5 KB a row (docs/usage.md) bounds a worker's table at
     * ~50 MB. At least 100, for the tests' sake and for "other" to mean
     * something. */
    CFG_INT("max_rows", struct usage_conf, max_rows, 100, 10000000, "100000", 0),
    CFG_SECTION("retention", struct usage_conf, retention, &usage_cfg_retention_section, 0),
    CFG_END,
};
static const struct cfg_section usage_cfg_section = {usage_cfg_keys, NULL};

/* The top level; its first member is what usage_conf() returns. */
struct usage_cfg_top {
    struct usage_conf usage;
};
static const struct cfg_key usage_cfg_top_keys[] = {
    /* Read even when absent: usage is counted by default. */
    CFG_SECTION("usage", struct usage_cfg_top, usage, &usage_cfg_section, 0),
    CFG_END,
};
static const struct cfg_section usage_cfg_top_section = {usage_cfg_top_keys, NULL};

static const struct cfg_key usage_cfg_tier_keys[] = {
    CFG_ROW("price_per_1k", usage_cfg_set_price, struct usage_tier_conf, price_micro, 0, 0, "0", 0),
    CFG_END,
};
static const struct cfg_section usage_cfg_tier_section = {usage_cfg_tier_keys, NULL};

const struct cfg_module usage_cfg_module = {
    .top = &usage_cfg_top_section,
    .top_size = sizeof(struct usage_cfg_top),
    .tier = &usage_cfg_tier_section,
    .tier_size = sizeof(struct usage_tier_conf),
};
