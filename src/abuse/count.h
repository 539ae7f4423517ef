#ifndef SLUICE_ABUSE_COUNT_H
#define SLUICE_ABUSE_COUNT_H
/* Where violations are counted (SPEC 7.3): in this gateway's memory
 * (abuse/tracker.h) with store.backend memory, in Redis with redis, so the
 * threshold is the fleet's (one script call per 429: 429s are off the fast
 * path). One file per home (count_mem.c, count_redis.c) filling struct
 * abuse_counter_ops. Both count over a sliding window of ABUSE_SLOTS slots,
 * hold at most a bounded number of identities, and forget an identity's
 * count when it passes the threshold, in the same step, so one crossing
 * asks for one ban even with many gateways. */

#include <stdbool.h>
#include <stdint.h>

#include "abuse/tracker.h"
#include "pipeline/gateway.h"

/* <count>: the identity's violations within the window, this one
 * included; <crossed>: more than the threshold (the count was forgotten). */
typedef void (*abuse_count_fn)(void *arg, int64_t count, bool crossed);
/* <v>/<n>: the top violators, most first; <why> non-NULL when they could
 * not be read. Valid during the call only. */
typedef void (*abuse_top_fn)(void *arg, const struct abuse_violator *v, int n, const char *why);

struct abuse_counter;

struct abuse_counter_ops {
    /* One more violation of <identity>, counted by worker <w>; <threshold>
     * 0: never crossed. <done> runs on <w>'s loop, maybe before this
     * returns. */
    void (*record)(struct abuse_counter *c, struct worker *w, const char *identity,
                   int64_t threshold, abuse_count_fn done, void *arg);
    /* The (at most) <n> identities with the most violations within the
     * last <window_ms>: <done> on <w>'s loop, maybe before this returns. */
    void (*top)(struct abuse_counter *c, struct worker *w, int64_t window_ms, int n,
                abuse_top_fn done, void *arg);
    void (*free)(struct abuse_counter *c);
};

struct abuse_counter {
    const struct abuse_counter_ops *ops;
    /* In memory: the counts; with Redis, those of the times it is away. */
    struct abuse_tracker *local;
};

/* Counters over <window_ms> for at most <capacity> identities. */
struct abuse_counter *abuse_counter_mem_new(unsigned capacity, int64_t window_ms);
/* The keys start with <prefix> (store.redis.prefix). */
struct abuse_counter *abuse_counter_redis_new(const char *prefix, unsigned capacity,
                                              int64_t window_ms);

/* The count of a violation at <now_ms> in <t> and the threshold decision:
 * what both homes do in memory. */
int64_t abuse_count_local(struct abuse_tracker *t, const char *identity, int64_t threshold,
                          int64_t now_ms, bool *crossed);

#endif
