#ifndef SLUICE_QUOTA_CONF_H
#define SLUICE_QUOTA_CONF_H
/* The quota module's configuration (SPEC 2, 6.1): the top-level `quotas`
 * section (the calendar) and each tier's `quota`. */

#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"
#include "quota/period.h"

/* The top-level `quotas` section. */
struct quota_conf {
    char *timezone;          /* default "UTC" */
    int monthly_reset_day;   /* 1..28, default 1 */
    int64_t max_identities;  /* identities counted in memory; default 1M */
    struct quota_zone *zone; /* loaded from timezone when the config loads */
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

extern const struct cfg_module quota_cfg_module;

#endif
