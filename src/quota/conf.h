#ifndef SLUICE_QUOTA_CONF_H
#define SLUICE_QUOTA_CONF_H
/* The quota module's configuration (SPEC 2, 6.1, 6.3): the top-level
 * `quotas` section (the calendar), `quota_alerts` (thresholds and the
 * webhook) and each tier's `quota`. */

#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"
#include "quota/decide.h"
#include "quota/period.h"

/* The top-level `quotas` section. */
struct quota_conf {
    char *timezone;          /* default "UTC" */
    int monthly_reset_day;   /* 1..28, default 1 */
    int64_t max_identities;  /* identities counted in memory; default 1M */
    struct quota_zone *zone; /* loaded from timezone when the config loads */
};

/* The top-level `quota_alerts` section (SPEC 6.3). Read even when absent:
 * the thresholds then are 80, 95 and 100 and there is no webhook. */
struct quota_alerts_conf {
    /* Percentages, strictly ascending, 1..100: what the request path passes
     * to quota_decide (thresholds, n_thresholds). Empty: no alerts. */
    int thresholds[QUOTA_MAX_THRESHOLDS];
    int n_thresholds;
    char *webhook; /* http:// or https:// URL, checked at load; NULL: none */
    char *secret;  /* signs the webhook's requests; required with a webhook */
};

/* A tier's `quota`: 0 is no quota of that span. */
struct quota_tier_conf {
    int64_t daily, monthly;
};

static inline const struct quota_conf *quota_conf(const struct config *c)
{
    return c->mod[MOD_quota];
}
static inline const struct quota_tier_conf *quota_tier_conf(const struct cfg_tier *t)
{
    return t->mod[MOD_quota];
}

/* <c>'s `quota_alerts`, never NULL. */
const struct quota_alerts_conf *quota_alerts_conf(const struct config *c);

extern const struct cfg_module quota_cfg_module;

#endif
