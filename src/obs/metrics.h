#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H
/* Per-worker counters: each worker is the only writer of its own (relaxed
 * atomic stores, no shared cache lines on the hot path); a scrape sums every
 * worker's counters into Prometheus text. The core counts requests here;
 * each module keeps its own counters in its worker state and renders them
 * in its collector (sl_module.metrics) with the helpers below. */

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"

struct metrics;
struct exchange;
struct gateway;
struct worker;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

void metrics_exchange_begin(struct metrics *m);
/* Count <x> by route and status, and its duration. */
void metrics_exchange_end(struct metrics *m, const struct exchange *x);
/* The worker moved to a new config: forget cached counters keyed by routes. */
void metrics_forget_routes(struct metrics *m);
void metrics_connection_rejected(struct metrics *m);
/* A listener was left with a connection for the next loop iteration
 * (SL_ACCEPT_BATCH reached). */
void metrics_accept_deferred(struct metrics *m);

/* The latency histogram's buckets: upper bounds in seconds, then +Inf. */
#define METRICS_N_BUCKETS 12
extern const double metrics_bucket_le[METRICS_N_BUCKETS];

/* Public requests answered so far, all workers summed (cumulative, never
 * reset): what the stats tick of GET /events diffs once a second
 * (admin/stats.c). <by_class>[c] counts statuses c00..c99 (index 0: no
 * status, the client left first); <status_429> the 429s among the 4xx. */
struct metrics_totals {
    uint64_t requests;
    uint64_t by_class[6];
    uint64_t status_429;
    uint64_t buckets[METRICS_N_BUCKETS + 1];
};
void metrics_totals(struct gateway *gw, struct metrics_totals *out);

/* Prometheus text exposition of all workers of <gw> appended to <out>:
 * the core's families, then each module's collector. */
void metrics_render(struct gateway *gw, struct buf *out);

/* ---- for modules' collectors ---------------------------------------------------- */

/* Single writer: a plain load and a relaxed store are enough for the
 * scraper to read a torn-free value. */
static inline void metrics_counter_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* A family of labelled counters one worker writes: <cap> label sets at the
 * most (a power of two); past half full, new label sets count under
 * <overflow> (labels in exposition form, e.g. route="other"). */
struct metrics_family;
struct metrics_family *metrics_family_new(unsigned cap, const char *overflow);
void metrics_family_free(struct metrics_family *f);
/* Add <n> to the counter of <labels> (exposition form: route="/x",status="200"). */
void metrics_family_add(struct metrics_family *f, const char *labels, uint64_t n);
/* <s> escaped for a Prometheus label value into <out> (<cap> bytes, cut short). */
void metrics_label_escape(char *out, size_t cap, const char *s);

/* What a collector reads of each worker. */
typedef struct metrics_family *(*metrics_family_of_fn)(struct worker *w);
typedef const uint64_t *(*metrics_counters_of_fn)(struct worker *w);

/* HELP and TYPE lines, then the family <of> each worker returns, summed. */
void metrics_render_family(struct gateway *gw, struct buf *out, const char *name, const char *help,
                           metrics_family_of_fn of);
/* One unlabelled sample with its HELP and TYPE lines. */
void metrics_render_single(struct buf *out, const char *name, const char *type, const char *help,
                           unsigned long long value);
/* A counter family with a fixed set of label values: each worker's array of
 * <n> counters (<of>) summed, one sample per name of <names>, labelled <label>. */
void metrics_render_fixed(struct gateway *gw, struct buf *out, const char *name, const char *help,
                          const char *label, const char *const *names, int n,
                          metrics_counters_of_fn of);

#endif
