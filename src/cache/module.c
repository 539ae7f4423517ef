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

/* ---- purges ---------------------------------------------------------------------- */

_Static_assert(CACHE_MAX_GLOB == 1024, "the error below names the bound");

/* {"key": "/x?a=1"} and the like: the kind and its argument, or NULL with
 * *<kind> untouched and the reason. */
static const char *cache_purge_request(json_t *doc, enum cache_purge_kind *kind, const char **arg)
{
    if (!doc || !json_is_object(doc) || json_object_size(doc) != 1)
        return "the body must be one JSON object with one of key, prefix, pattern, tag, all";
    int found = cache_purge_kind_from_name(json_object_iter_key(json_object_iter(doc)));
    if (found < 0)
        return "unknown field: use key, prefix, pattern, tag or all";
    json_t *v = json_object_iter_value(json_object_iter(doc));
    if (found == CACHE_PURGE_ALL && !json_is_true(v))
        return "all must be true";
    if (found != CACHE_PURGE_ALL && (!json_is_string(v) || json_string_length(v) == 0))
        return "the value must be a non-empty string";
    if (found == CACHE_PURGE_PATTERN && json_string_length(v) > CACHE_MAX_GLOB)
        return "the pattern is longer than 1024 bytes";
    *kind = (enum cache_purge_kind)found;
    *arg = json_is_string(v) ? json_string_value(v) : "";
    return NULL;
}

/* A purge scans the whole store, which takes milliseconds per 100,000
 * entries: it runs on libuv's thread pool, so the worker's loop keeps
 * serving while it does. */
struct cache_purge_job {
    uv_work_t work;
    struct cache *cache;
    enum cache_purge_kind kind;
    char *arg;
    uint64_t purged;
    struct exchange *x; /* the admin request waiting for the count; NULL once it ended */
    int refs;           /* the pool's, and the exchange's while it waits */
    bool fleet, sent;   /* for the answer: a fleet gateway, and whether the event went out */
};

static void cache_purge_job_unref(struct cache_purge_job *j)
{
    if (--j->refs > 0)
        return;
    free(j->arg);
    free(j);
}

static void cache_purge_job_run(uv_work_t *req)
{
    struct cache_purge_job *j = req->data;
    j->purged = cache_purge(j->cache, j->kind, j->arg);
}

static void cache_purge_respond(struct cache_purge_job *j)
{
    char out[96];
    int olen = j->fleet ? snprintf(out, sizeof(out), "{\"purged\": %llu, \"fleet\": %s}\n",
                                   (unsigned long long)j->purged, j->sent ? "true" : "false")
                        : snprintf(out, sizeof(out), "{\"purged\": %llu}\n",
                                   (unsigned long long)j->purged);
    exchange_respond(j->x, 200, "application/json", out, (size_t)olen);
}

static void cache_purge_job_done(uv_work_t *req, int status)
{
    struct cache_purge_job *j = req->data;
    if (j->x)
        cache_purge_respond(j);
    cache_purge_job_unref(j);
}

static void cache_purge_exchange_ended(struct exchange *x, void *arg)
{
    struct cache_purge_job *j = arg;
    j->x = NULL;
    cache_purge_job_unref(j);
}

static struct cache_purge_job *cache_purge_job_new(struct gateway *gw, enum cache_purge_kind kind,
                                                   const char *arg)
{
    struct cache_purge_job *j = sl_calloc(1, sizeof(*j));
    j->work.data = j;
    j->cache = cache_of(gw);
    j->kind = kind;
    j->arg = sl_strdup(arg);
    j->refs = 1;
    return j;
}

/* Runs <j> on the pool of <loop>; where the pool cannot take it, here. */
static void cache_purge_job_start(uv_loop_t *loop, struct cache_purge_job *j)
{
    if (uv_queue_work(loop, &j->work, cache_purge_job_run, cache_purge_job_done) != 0) {
        cache_purge_job_run(&j->work);
        cache_purge_job_done(&j->work, 0);
    }
}

static void cache_admin_purge(struct exchange *x, const struct sl_admin_call *call)
{
    json_error_t jerr;
    json_t *doc = json_loadb(call->body, call->body_len, 0, &jerr);
    enum cache_purge_kind kind = CACHE_PURGE_ALL;
    const char *arg = "";
    const char *why = cache_purge_request(doc, &kind, &arg);
    if (why) {
        json_decref(doc);
        exchange_respond_error(x, 400, why);
        return;
    }
    struct gateway *gw = x->worker->gw;
    struct cache_purge_job *j = cache_purge_job_new(gw, kind, arg);
    json_decref(doc);
    /* With Redis, every other gateway purges too (SPEC 4.4). */
    struct fleet *f = fleet_of(gw);
    if (f) {
        json_t *ev = json_pack("{s:s, s:s, s:s}", "type", "purge", "kind",
                               cache_purge_kind_name(kind), "arg", j->arg);
        j->fleet = true;
        j->sent = fleet_publish(f, x->worker, ev);
        json_decref(ev);
    }
    j->x = x;
    j->refs++;
    exchange_on_end(x, cache_purge_exchange_ended, j);
    cache_purge_job_start(&x->worker->loop, j);
}

/* A purge made on another gateway, received on <w>'s loop. */
static void cache_apply_purge_event(struct worker *w, const json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    const char *arg = json_string_value(json_object_get(ev, "arg"));
    int k = kind && arg ? cache_purge_kind_from_name(kind) : -1;
    if (k >= 0)
        cache_purge_job_start(&w->loop, cache_purge_job_new(w->gw, (enum cache_purge_kind)k, arg));
}

/* ---- metrics ---------------------------------------------------------------------- */

static const uint64_t *cache_results_of(struct worker *w)
{
    return w->ctx[MOD_cache];
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
    .events = cache_events,
};
