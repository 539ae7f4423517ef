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
    char *scope; /* "r:^/path:tier", its counters' key prefix (set on resolve) */
    size_t scope_len;
};

/* A route's `limits`. */
struct lim_route_conf {
    bool limits_off; /* `limits: off`: never limited */
    struct lim_route_limits *limits;
    int n_limits;
    /* The labels of sluice_ratelimit_decisions_total for an allowed [0] and
     * a rejected [1] request, made once rather than per request. */
    char *decision_labels[2];
};

/* A tier's `limits`: counted across all routes. */
struct lim_tier_conf {
    struct limit *limits;
    int n_limits;
    char *scope; /* "t:name", its counters' key prefix (set on resolve) */
    size_t scope_len;
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

/* The scope of route <r>'s limits for <tier> ("r:^/path:tier"), and the
 * labels of sluice_ratelimit_decisions_total for <r>: made once per route
 * on resolve, here for the routes a module adds outside `routes`.
 * Both return the length written (cut short to <cap>). */
int lim_route_scope(char *out, size_t cap, const struct cfg_route *r, const char *tier);
int lim_decision_labels(char *out, size_t cap, const struct cfg_route *r, bool allowed);

extern const struct cfg_module lim_cfg_module;

#endif
