#ifndef SLUICE_LIMIT_CONF_H
#define SLUICE_LIMIT_CONF_H
/* The limit module's configuration (SPEC 2, 3): the top-level `limits`
 * section, each tier's `limits` and each route's `limits`. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "limit/limit.h"
#include "modules.h"

/* `limits`: defaults for every limit. */
struct lim_conf {
    enum lim_algorithm algorithm; /* default for limits that name none; sliding_window */
    bool header_xratelimit;       /* headers: [x-ratelimit] (default) */
    bool header_ietf;             /* headers: [ietf] */
    bool enabled;                 /* false: no limiting anywhere */
    uint64_t max_entries;         /* counters kept in memory; default 1,000,000 */
};

/* A route's limits for one tier ("anonymous", a tier of `tiers`, or "*" for
 * any identified tier without an entry of its own). */
struct lim_route_limits {
    char *tier;
    struct limit *limits;
    int n_limits;
};

/* A route's `limits`. */
struct lim_route_conf {
    bool limits_off; /* `limits: off`: never limited */
    struct lim_route_limits *limits;
    int n_limits;
};

/* A tier's `limits`: counted across all routes. */
struct lim_tier_conf {
    struct limit *limits;
    int n_limits;
};

static inline const struct lim_conf *lim_conf(const struct config *c)
{
    return c->mod[MOD_limit];
}
static inline const struct lim_route_conf *lim_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_limit];
}
static inline const struct lim_tier_conf *lim_tier_conf(const struct cfg_tier *t)
{
    return t->mod[MOD_limit];
}

extern const struct cfg_module lim_cfg_module;

#endif
