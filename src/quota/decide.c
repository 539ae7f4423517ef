/* The quota decision of one request for one identity. */
#include "quota/decide.h"

unsigned quota_crossed(int64_t before, int64_t after, int64_t limit, const int *thresholds,
                       int n_thresholds)
{
    unsigned bits = 0;
    if (limit <= 0)
        return 0;
    for (int i = 0; i < n_thresholds && i < QUOTA_MAX_THRESHOLDS; i++) {
        /* units * 100 against threshold * limit: no rounding, no floats
         * (limits are far below 2^56) */
        __int128 mark = (__int128)thresholds[i] * limit;
        if ((__int128)before * 100 < mark && (__int128)after * 100 >= mark)
            bits |= 1u << i;
    }
    return bits;
}

/* The count of a period that started at <start>: 0 once a newer period
 * began. Only forward: a gateway whose clock is a little behind the one
 * that started the new period counts into the new one rather than
 * resetting it back (Redis: gateways share the counts). */
static void quota_roll(int64_t *stored_start, int64_t *used, int64_t start)
{
    if (*stored_start < start) {
        *stored_start = start;
        *used = 0;
    }
}

static void quota_describe(struct quota_decision *d, enum quota_span which, int64_t limit,
                           int64_t used, const struct quota_period *p)
{
    d->which = which;
    d->limit = limit;
    d->used = used;
    d->remaining = limit > used ? limit - used : 0;
    d->reset = p->end;
    d->window = p->end - p->start;
}

struct quota_decision quota_decide(struct quota_usage *u, const struct quota_limits *l,
                                   const struct quota_period *day, const struct quota_period *month,
                                   int64_t cost, const int *thresholds, int n_thresholds)
{
    struct quota_decision d = {.allowed = true};
    d.limited = l->daily > 0 || l->monthly > 0;
    if (!d.limited)
        return d;
    quota_roll(&u->day_start, &u->day_used, day->start);
    quota_roll(&u->month_start, &u->month_used, month->start);
    bool day_over = l->daily > 0 && u->day_used + cost > l->daily;
    bool month_over = l->monthly > 0 && u->month_used + cost > l->monthly;
    if (day_over || month_over) {
        d.allowed = false;
        /* the monthly one when both: it is the one waiting longer for */
        if (month_over)
            quota_describe(&d, QUOTA_MONTHLY, l->monthly, u->month_used, month);
        else
            quota_describe(&d, QUOTA_DAILY, l->daily, u->day_used, day);
        return d;
    }
    int64_t day_before = u->day_used, month_before = u->month_used;
    u->day_used += cost;
    u->month_used += cost;
    d.crossed_daily = quota_crossed(day_before, u->day_used, l->daily, thresholds, n_thresholds);
    d.crossed_monthly =
        quota_crossed(month_before, u->month_used, l->monthly, thresholds, n_thresholds);
    /* the tightest: fewest units left; a tie goes to the one that resets sooner */
    int64_t day_left = l->daily > 0 ? l->daily - u->day_used : INT64_MAX;
    int64_t month_left = l->monthly > 0 ? l->monthly - u->month_used : INT64_MAX;
    if (day_left < month_left || (day_left == month_left && day->end <= month->end))
        quota_describe(&d, QUOTA_DAILY, l->daily, u->day_used, day);
    else
        quota_describe(&d, QUOTA_MONTHLY, l->monthly, u->month_used, month);
    return d;
}
