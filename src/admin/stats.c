/* The stats tick of GET /events (admin/stats.h). */
#include "admin/stats.h"

#include "pipeline/module.h"
#include "util/clock.h"

/* Every module's part (sl_module.stats): the cache's lookups, the fleet's
 * Redis and size; the defaults say no Redis, a fleet of one. */
static void stats_modules(struct gateway *gw, struct sl_stats *s)
{
    *s = (struct sl_stats){.redis = -1, .fleet = 1};
    SL_EACH_MODULE(false, stats, gw, s);
}

void stats_sample(struct gateway *gw, struct stats_sample *out)
{
    out->mono_us = clock_mono_us();
    out->wall_ms = clock_wall_us() / 1000;
    out->connections = __atomic_load_n(&gw->n_conns, __ATOMIC_RELAXED);
    metrics_totals(gw, &out->m);
    struct sl_stats s;
    stats_modules(gw, &s);
    out->cache_hits = s.cache_hits;
    out->cache_misses = s.cache_misses;
    out->redis = s.redis;
    out->fleet = s.fleet;
}

double stats_quantile_ms(const uint64_t *buckets, uint64_t total, double q)
{
    if (total == 0)
        return -1;
    double rank = q * (double)total;
    uint64_t below = 0;
    for (int b = 0; b < METRICS_N_BUCKETS; b++) {
        uint64_t n = buckets[b];
        if (n && (double)(below + n) >= rank) {
            double lo = b ? metrics_bucket_le[b - 1] * 1000 : 0;
            double hi = metrics_bucket_le[b] * 1000;
            return lo + (hi - lo) * (rank - (double)below) / (double)n;
        }
        below += n;
    }
    /* Past the last bound: all that is known is "more than that". */
    return metrics_bucket_le[METRICS_N_BUCKETS - 1] * 1000;
}

/* <n> events over <sec> seconds, as a JSON number. */
static void stats_rate(struct buf *out, uint64_t n, double sec)
{
    buf_appendf(out, "%.2f", sec > 0 ? (double)n / sec : 0.0);
}

/* A counter's growth; a counter never shrinks, but a tick must not print
 * 1.8e19 if one ever did. */
static uint64_t stats_delta(uint64_t cur, uint64_t prev)
{
    return cur >= prev ? cur - prev : 0;
}

static void stats_ms(struct buf *out, const char *name, double ms, bool last)
{
    if (ms < 0)
        buf_appendf(out, "\"%s\": null%s", name, last ? "" : ", ");
    else
        buf_appendf(out, "\"%s\": %.3f%s", name, ms, last ? "" : ", ");
}

void stats_render(const struct stats_sample *prev, const struct stats_sample *cur, struct buf *out)
{
    double sec = (double)(cur->mono_us - prev->mono_us) / 1e6;
    uint64_t requests = stats_delta(cur->m.requests, prev->m.requests);
    buf_appendf(out, "{\"type\": \"stats\", \"ts\": %lld, \"rps\": ", (long long)cur->wall_ms);
    stats_rate(out, requests, sec);

    static const char *const classes[] = {"2xx", "4xx", "5xx"};
    static const int class_digit[] = {2, 4, 5};
    buf_append_str(out, ", \"rates\": {");
    for (int i = 0; i < 3; i++) {
        int c = class_digit[i];
        buf_appendf(out, "\"%s\": ", classes[i]);
        stats_rate(out, stats_delta(cur->m.by_class[c], prev->m.by_class[c]), sec);
        buf_append_str(out, ", ");
    }
    buf_append_str(out, "\"429\": ");
    stats_rate(out, stats_delta(cur->m.status_429, prev->m.status_429), sec);

    uint64_t hits = stats_delta(cur->cache_hits, prev->cache_hits);
    uint64_t misses = stats_delta(cur->cache_misses, prev->cache_misses);
    buf_append_str(out, "}, \"cache\": {\"hits\": ");
    stats_rate(out, hits, sec);
    buf_append_str(out, ", \"misses\": ");
    stats_rate(out, misses, sec);
    if (hits + misses)
        buf_appendf(out, ", \"hit_ratio\": %.4f}", (double)hits / (double)(hits + misses));
    else
        buf_append_str(out, ", \"hit_ratio\": null}");

    uint64_t buckets[METRICS_N_BUCKETS + 1], total = 0;
    for (int b = 0; b <= METRICS_N_BUCKETS; b++) {
        buckets[b] = stats_delta(cur->m.buckets[b], prev->m.buckets[b]);
        total += buckets[b];
    }
    buf_append_str(out, ", \"latency_ms\": {");
    stats_ms(out, "p50", stats_quantile_ms(buckets, total, 0.50), false);
    stats_ms(out, "p95", stats_quantile_ms(buckets, total, 0.95), false);
    stats_ms(out, "p99", stats_quantile_ms(buckets, total, 0.99), true);
    const char *redis = cur->redis < 0 ? "off" : cur->redis ? "up" : "down";
    buf_appendf(out, "}, \"redis\": \"%s\", \"fleet\": %u, \"connections\": %d}", redis, cur->fleet,
                cur->connections);
}
