#ifndef SLUICE_QUOTA_DECIDE_H
#define SLUICE_QUOTA_DECIDE_H
/* One identity's quota decision (SPEC 6.1), the same for every store: the
 * memory store calls it under its shard's lock, and the Redis script is
 * its twin. Counts reset when the period they belong to has passed; a
 * request that would go over any quota is refused and consumes nothing;
 * an admitted one consumes <cost> from both. */

#include <stdbool.h>
#include <stdint.h>

#include "quota/period.h"

#define QUOTA_MAX_THRESHOLDS 8

/* An identity's quotas; 0: none of that span. */
struct quota_limits {
    int64_t daily, monthly;
};

/* What is stored per identity: each count with the start of its period. */
struct quota_usage {
    int64_t day_start, day_used;
    int64_t month_start, month_used;
};

struct quota_decision {
    bool allowed;
    bool limited;          /* any quota applies (the X-Quota-* headers) */
    enum quota_span which; /* refused: the quota refused by; admitted: the tightest */
    int64_t limit, used, remaining;
    int64_t reset;  /* when <which>'s period ends */
    int64_t window; /* seconds in <which>'s period */
    /* bit i: threshold i of the alert thresholds was crossed by this
     * request, daily and monthly apart (see quota_crossed) */
    unsigned crossed_daily, crossed_monthly;
};

/* Decides for <cost> units against <l> with the periods <day> and <month>
 * holding now, updating <u>. <thresholds>: percentages, ascending. */
struct quota_decision quota_decide(struct quota_usage *u, const struct quota_limits *l,
                                   const struct quota_period *day, const struct quota_period *month,
                                   int64_t cost, const int *thresholds, int n_thresholds);

/* Bit i set when going from <before> to <after> units of <limit> crosses
 * thresholds[i] percent (before < t % <= after). */
unsigned quota_crossed(int64_t before, int64_t after, int64_t limit, const int *thresholds,
                       int n_thresholds);

#endif
