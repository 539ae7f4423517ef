#ifndef SLUICE_CACHE_CONF_H
#define SLUICE_CACHE_CONF_H
/* The cache module's configuration (SPEC 4): the top-level `cache` section
 * (the store) and each route's `cache`. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

/* The top-level `cache` section: the store. */
struct cache_conf {
    uint64_t max_memory;      /* default 256m */
    uint64_t max_object_size; /* default 8m; larger bodies stream through uncached */
};

/* A route's `cache` (SPEC 4). */
struct cache_route_conf {
    bool enabled;   /* the route has a cache section */
    int64_t ttl_ms; /* freshness when the origin says nothing (or respect_origin is off) */
    char **tags;    /* purge tags of every entry of the route */
    int n_tags;
    int64_t stale_while_revalidate_ms; /* 0: off */
    int64_t stale_if_error_ms;         /* 0: off */
    bool shared;                       /* one entry for every caller, even with credentials */
    bool respect_origin;               /* s-maxage / max-age override ttl; default true */
};

static inline const struct cache_conf *cache_conf(const struct config *c)
{
    return c->mod[MOD_cache];
}
static inline const struct cache_route_conf *cache_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_cache];
}

extern const struct cfg_module cache_cfg_module;

#endif
