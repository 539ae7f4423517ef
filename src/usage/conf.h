#ifndef SLUICE_USAGE_CONF_H
#define SLUICE_USAGE_CONF_H
/* The usage module's configuration (SPEC 2, 6.4): the top-level `usage`
 * section and each tier's `price_per_1k`. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

/* usage.retention. */
struct usage_retention_conf {
    int64_t hourly_ms; /* hourly rows are kept this long after their hour; default 7d */
    int64_t daily_ms;  /* daily rows; default 400d. Monthly rows are kept. */
};

/* The top-level `usage` section. */
struct usage_conf {
    bool enabled;     /* default true */
    int64_t max_rows; /* rows a worker tracks between two hand-offs; default 100000 */
    struct usage_retention_conf retention;
};

/* A tier's rows. */
struct usage_tier_conf {
    int64_t price_micro; /* price_per_1k in millionths; default 0 */
};

static inline const struct usage_conf *usage_conf(const struct config *c)
{
    return c->mod[MOD_usage];
}
static inline const struct usage_tier_conf *usage_tier_conf(const struct cfg_tier *t)
{
    return t->mod[MOD_usage];
}

/* "0", "2", "0.25", "1.000001": a price with at most 6 decimals, from 0 to
 * USAGE_PRICE_MAX, into millionths. 0 or -1. Pure. */
#define USAGE_PRICE_MAX 1000
int usage_parse_price(const char *s, int64_t *micro);

extern const struct cfg_module usage_cfg_module;

#endif
