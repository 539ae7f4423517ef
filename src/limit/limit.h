#ifndef SLUICE_LIMIT_H
#define SLUICE_LIMIT_H
/* Rate-limit algorithms as pure functions over a small state (ARCHITECTURE.md
 * "one algorithm, two homes"): the memory store calls them under a shard
 * lock, the Redis store runs the same arithmetic in Lua. Time is passed in,
 * in microseconds, so tests control it. */

#include <stdbool.h>
#include <stdint.h>

enum lim_algorithm {
    LIM_DEFAULT = 0, /* "use limits.algorithm"; resolved when the config loads */
    LIM_FIXED_WINDOW,
    LIM_SLIDING_WINDOW, /* two-counter weighted approximation */
    LIM_TOKEN_BUCKET,   /* GCRA: emission interval + burst tolerance, as redis-cell */
    LIM_CONCURRENCY,    /* requests in flight */
};

/* One parsed limit, e.g. "100/h", "100/5m", "10/s burst 100",
 * "20/m algorithm token_bucket", "concurrency 20". */
struct limit {
    enum lim_algorithm algorithm;
    uint64_t count;    /* requests per window; slots for concurrency */
    int64_t window_us; /* 0 for concurrency */
    uint64_t burst;    /* token bucket capacity; defaults to <count> */
    char text[48];     /* as written (normalised spacing), for messages and keys */
    char name[32];     /* policy name for RateLimit headers, e.g. "per-minute", "hourly" */
};

/* The state of one counter; 16 bytes serve every algorithm.
 * fixed_window:   t = window start, n = count in it
 * sliding_window: t = current window start, n = its count, p = previous window's count
 * token_bucket:   t = theoretical arrival time (TAT)
 * concurrency:    n = requests in flight */
struct lim_state {
    int64_t t;
    uint32_t n;
    uint32_t p;
};

struct lim_decision {
    bool allowed;
    uint64_t limit;         /* the limit's count (burst for token bucket) */
    uint64_t remaining;     /* requests left after this one (0 when denied) */
    int64_t reset_us;       /* from now until the counter is back to its full allowance */
    int64_t retry_after_us; /* denied: from now until a request of this cost could pass; 0 when
                               allowed */
};

/* Apply limit <l> to state <s> at <now_us> for a request of weight <cost>:
 * decide, and when allowed, consume (update <s>). A denied request leaves <s>
 * as it was. Callers wanting all-or-nothing over several limits apply to
 * copies and write them back only if every decision allowed. */
struct lim_decision lim_apply(const struct limit *l, struct lim_state *s, int64_t now_us,
                              uint32_t cost);

/* Concurrency: give back <cost> slots taken by an allowed request. Never
 * goes below zero. */
void lim_release(const struct limit *l, struct lim_state *s, uint32_t cost);

/* When the state <s> of <l> carries no information any more (it would
 * behave as a fresh state), in the same clock as now_us: the store may drop
 * it then. INT64_MAX while concurrency slots are held. */
int64_t lim_expiry(const struct limit *l, const struct lim_state *s);

/* Parse a limit string (SPEC 3.1). 0 on success; -1 with a reason (static
 * string) in *<why>. <l>'s algorithm stays LIM_DEFAULT unless the text names one. */
int lim_parse(const char *text, struct limit *l, const char **why);

/* A comma-separated list of limits ("100/h, 10/s burst 20"), as key records
 * store them, into <out> (room for <max>): the count, or -1 with *<why>
 * (static) when one does not parse or there are more than <max>. Empty
 * items are skipped. */
int lim_parse_list(const char *text, struct limit *out, int max, const char **why);

/* "fixed_window" ... -> enum; -1 when unknown. */
int lim_algorithm_from_name(const char *name);
const char *lim_algorithm_name(enum lim_algorithm a);

#endif
