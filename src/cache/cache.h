#ifndef SLUICE_CACHE_H
#define SLUICE_CACHE_H
/* The response cache as a pipeline stage (SPEC 4): lookup, HIT/STALE
 * serving, coalescing of concurrent misses, capture of cacheable upstream
 * responses, stale-while-revalidate refreshes, stale-if-error, 304s, and
 * the purge function every purge (admin API, CLI, later Redis pub/sub)
 * goes through. */

#include <stdint.h>

#include <jansson.h>

#include "pipeline/exchange.h"

struct cache;

/* The process-wide cache: a store of <max_bytes> in which any object up to
 * <max_object_size> fits. */
struct cache *cache_new(uint64_t max_bytes, uint64_t max_object_size);
void cache_free(struct cache *c);

enum stage_result cache_stage(struct exchange *x);

/* Lookup outcomes, counted per worker (worker->ctx[MOD_cache] is an array
 * of CACHE_RESULT_N counters). */
enum cache_result {
    CACHE_RESULT_HIT,
    CACHE_RESULT_MISS,
    CACHE_RESULT_STALE,
    CACHE_RESULT_BYPASS,
    CACHE_RESULT_N
};

enum cache_purge_kind {
    CACHE_PURGE_KEY,
    CACHE_PURGE_PREFIX,
    CACHE_PURGE_PATTERN,
    CACHE_PURGE_TAG,
    CACHE_PURGE_ALL
};
/* Remove entries: by exact path?query (any host; the query compared after
 * sorting), path prefix, glob over path?query, tag, or all (<arg> unused).
 * Returns how many were removed. */
uint64_t cache_purge(struct cache *c, enum cache_purge_kind kind, const char *arg);
/* The kinds by the names the admin API, the CLI and fleet events use
 * ("key", "prefix", "pattern", "tag", "all"): a kind's name, and the kind
 * of a name (-1 when it names none). */
const char *cache_purge_kind_name(enum cache_purge_kind kind);
int cache_purge_kind_from_name(const char *name);

/* cache/purge_admin.c: POST /cache/purge (the count of the whole fleet
 * with Redis), and a purge received from another gateway. Both purge on
 * libuv's thread pool. */
struct sl_admin_call;
void cache_admin_purge(struct exchange *x, const struct sl_admin_call *call);
void cache_apply_purge_event(struct worker *w, const json_t *event);

struct cache_stats {
    uint64_t entries, bytes, evictions;
};
void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
