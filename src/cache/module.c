/* The cache module: the store's lifetime, the stage, POST /cache/purge,
 * purges from other gateways, and the cache's metrics. */
#include <llhttp.h>

#include "cache/cache.h"
#include "cache/conf.h"
#include "cache/rules.h"
#include "fleet/fleet.h"
#include "modules.h"
#include "obs/metrics.h"
#include "util/mem.h"

static struct cache *cache_of(const struct gateway *gw)
{
    return gw->ctx[MOD_cache];
}

static int cache_init_process(struct gateway *gw, char **err)
{
    gw->ctx[MOD_cache] =
        cache_new(cache_conf(gw->cfg)->max_memory, cache_conf(gw->cfg)->max_object_size);
    return 0;
}

static void cache_dispose_process(struct gateway *gw)
{
    cache_free(cache_of(gw));
}

static void cache_on_reload(struct gateway *gw, const struct config *old, const struct config *cfg,
                            struct buf *warnings)
{
    /* max_memory is flagged CFG_RESTART; a smaller object size applies at
     * once, a larger one waits for a store sized for it. */
    if (cache_conf(cfg)->max_object_size > cache_conf(old)->max_object_size)
        buf_append_str(warnings, "a larger cache.max_object_size takes effect only on restart "
                                 "(the store is sized at start)\n");
}

static void cache_init_worker(struct worker *w)
{
    w->ctx[MOD_cache] = sl_calloc(CACHE_RESULT_N, sizeof(uint64_t));
}

static void cache_dispose_worker(struct worker *w)
{
    free(w->ctx[MOD_cache]);
}

/* ---- metrics ---------------------------------------------------------------------- */

static const uint64_t *cache_results_of(struct worker *w)
{
    return w->ctx[MOD_cache];
}

/* Lookups so far for the stats tick: a stale answer is served from the
 * cache, so it is a hit for the ratio; a bypass is no lookup. */
static void cache_stats(struct gateway *gw, struct sl_stats *out)
{
    for (int w = 0; w < gw->n_workers; w++) {
        const uint64_t *v = cache_results_of(&gw->workers[w]);
        if (!v)
            continue;
        out->cache_hits += __atomic_load_n(&v[CACHE_RESULT_HIT], __ATOMIC_RELAXED) +
                           __atomic_load_n(&v[CACHE_RESULT_STALE], __ATOMIC_RELAXED);
        out->cache_misses += __atomic_load_n(&v[CACHE_RESULT_MISS], __ATOMIC_RELAXED);
    }
}

static void cache_metrics(struct gateway *gw, struct buf *out)
{
    static const char *const results[CACHE_RESULT_N] = {"hit", "miss", "stale", "bypass"};
    metrics_render_fixed(gw, out, "sluice_cache_requests_total", "Cache lookups, by result.",
                         "result", results, CACHE_RESULT_N, cache_results_of);
    struct cache_stats cs;
    cache_get_stats(cache_of(gw), &cs);
    metrics_render_single(out, "sluice_cache_entries", "gauge", "Responses held in the cache.",
                          cs.entries);
    metrics_render_single(out, "sluice_cache_bytes", "gauge", "Memory held by cached responses.",
                          cs.bytes);
    metrics_render_single(out, "sluice_cache_evictions_total", "counter",
                          "Responses dropped to stay within max_memory.", cs.evictions);
}

/* Purge requests are small JSON documents. */
#define CACHE_PURGE_MAX_BODY (64u << 10)

static const struct sl_admin_route cache_admin_routes[] = {
    {HTTP_POST, "/cache/purge", cache_admin_purge, CACHE_PURGE_MAX_BODY},
    {0, NULL, NULL, 0},
};

static const struct sl_event_type cache_events[] = {
    {"purge", cache_apply_purge_event},
    {NULL, NULL},
};

static const struct sl_stage cache_stages[] = {
    {SL_PHASE_CACHE, false, cache_stage},
};

const struct sl_module cache_module = {
    .name = "cache",
    .conf = &cache_cfg_module,
    .init_process = cache_init_process,
    .dispose_process = cache_dispose_process,
    .on_reload = cache_on_reload,
    .init_worker = cache_init_worker,
    .dispose_worker = cache_dispose_worker,
    .stages = cache_stages,
    .n_stages = 1,
    .admin_routes = cache_admin_routes,
    .metrics = cache_metrics,
    .stats = cache_stats,
    .events = cache_events,
};
