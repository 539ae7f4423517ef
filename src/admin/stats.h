#ifndef SLUICE_ADMIN_STATS_H
#define SLUICE_ADMIN_STATS_H
/* The stats tick of GET /events (SPEC 8; docs/admin-api.md, "The stats
 * tick"): once a second, while at least one stream is open, the gateway
 * sums its workers' counters once, diffs them against the previous tick,
 * and publishes the same text to every stream:
 *
 *     event: stats
 *     data: {"type": "stats", "ts": ..., "rps": ..., "rates": {...}, ...}
 *
 * One computation per tick whatever the number of viewers; nothing at all
 * while nobody listens. The request path is not touched beyond the
 * per-worker counters metrics already keeps (obs/metrics.h). */

#include <stdint.h>

#include "obs/metrics.h"
#include "util/buf.h"

struct gateway;

/* What one tick reads: cumulative counters, when they were read, and the
 * gauges of that moment. */
struct stats_sample {
    int64_t mono_us, wall_ms;
    struct metrics_totals m;
    uint64_t cache_hits, cache_misses;
    int redis;       /* -1: no Redis, 0: down, 1: up (every worker connected) */
    unsigned fleet;  /* gateways seen, this one included */
    int connections; /* open client connections, the admin listener's included */
};

/* Reads <gw>'s counters and gauges into <out> (any thread): the core's
 * metrics, then each module's part (sl_module.stats). */
void stats_sample(struct gateway *gw, struct stats_sample *out);

/* The tick's JSON text for the interval from <prev> to <cur> (pure: the
 * unit tests' entry), appended to <out>. */
void stats_render(const struct stats_sample *prev, const struct stats_sample *cur, struct buf *out);

/* Quantile <q> (0..1) in ms of the histogram <buckets> (counts per bucket
 * of metrics_bucket_le, then +Inf) holding <total>, interpolated linearly
 * within a bucket as Prometheus's histogram_quantile does; -1 when
 * <total> is 0. */
double stats_quantile_ms(const uint64_t *buckets, uint64_t total, double q);

#endif
