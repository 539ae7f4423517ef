/* The rate-limit algorithms as pure functions (ARCHITECTURE.md "one
 * algorithm, two homes"). The Redis store runs the same arithmetic in Lua,
 * whose numbers are doubles: every value here stays an exact integer below
 * 2^53 for any limit lim_parse accepts (counts < 2^32, windows of days,
 * times in microseconds since the epoch), and every division is a floor of
 * non-negative integers, so the Lua twin can reproduce each decision bit for
 * bit. Any change here must be made there too, and the differential test
 * run.
 *
 * Guards keep a struct limit outside what lim_parse produces from dividing
 * by zero or overflowing; the Lua twin applies the same ones:
 *   - a window counts as at least 1 ms and at most 2^44 us (203 days);
 *   - a count or burst above UINT32_MAX counts as UINT32_MAX (the state
 *     counts in 32 bits);
 *   - token_bucket: the emission interval is at least 1 us, and the burst at
 *     most 2^52 / interval, so that tau and the TAT stay below 2^53;
 *     a count of 0 or a cost above the burst never passes. */

#include "limit/limit.h"

#include <stddef.h>

#define LIM_SECOND_US INT64_C(1000000)
/* The sliding window's weight has millisecond resolution (see lim_sliding). */
#define LIM_MS_US INT64_C(1000)
#define LIM_MAX_WINDOW_US (INT64_C(1) << 44)
#define LIM_MAX_TAU_US (INT64_C(1) << 52)

static const char *const lim_names[] = {
    [LIM_DEFAULT] = "default",
    [LIM_FIXED_WINDOW] = "fixed_window",
    [LIM_SLIDING_WINDOW] = "sliding_window",
    [LIM_TOKEN_BUCKET] = "token_bucket",
    [LIM_CONCURRENCY] = "concurrency",
};

static int64_t lim_window(const struct limit *l)
{
    if (l->window_us < LIM_MS_US)
        return LIM_MS_US;
    return l->window_us > LIM_MAX_WINDOW_US ? LIM_MAX_WINDOW_US : l->window_us;
}

static int64_t lim_count(const struct limit *l)
{
    return l->count > UINT32_MAX ? (int64_t)UINT32_MAX : (int64_t)l->count;
}

/* Start of the window of length <w> that holds <now>, windows aligned to the
 * clock's zero. Floored, as Lua's % is, so times before the epoch (tests)
 * still land in the window that contains them. */
static int64_t lim_window_start(int64_t now, int64_t w)
{
    int64_t r = now % w;
    if (r < 0)
        r += w;
    return now - r;
}

static struct lim_decision lim_fixed(const struct limit *l, struct lim_state *s, int64_t now,
                                     int64_t cost)
{
    int64_t w = lim_window(l), count = lim_count(l);
    int64_t start = lim_window_start(now, w);
    struct lim_decision d = {.limit = (uint64_t)count, .reset_us = start + w - now};
    int64_t n = s->t == start ? s->n : 0;

    if (n + cost > count) {
        /* The next window starts empty: that is the earliest chance. */
        d.retry_after_us = start + w - now;
        return d;
    }
    n += cost;
    s->t = start;
    s->n = (uint32_t)n;
    d.allowed = true;
    d.remaining = (uint64_t)(count - n);
    return d;
}

/* The sliding window's weight of the previous window, in per-mille, <e_ms>
 * milliseconds into a window of <w_ms>: the fraction of the previous window
 * still inside the sliding interval. Whole milliseconds keep the products
 * below 2^53 and Lua's arithmetic exact. */
static int64_t lim_sw_weight(int64_t w_ms, int64_t e_ms)
{
    return ((w_ms - e_ms) * 1000) / w_ms;
}

/* The smallest millisecond <e> in [0, <e_last>] of a window at which
 * <p> * weight(e) <= <budget> (per-mille), or -1 when there is none. The
 * weight never increases with e, so this is a threshold:
 *   floor((w_ms - e) * 1000 / w_ms) <= q   with q = floor(budget / p)
 *   <=> (w_ms - e) * 1000 <= (q + 1) * w_ms - 1
 *   <=> e >= w_ms - floor(((q + 1) * w_ms - 1) / 1000). */
static int64_t lim_sw_first_ms(int64_t w_ms, int64_t e_last, int64_t p, int64_t budget)
{
    if (budget < 0)
        return -1;
    if (p == 0)
        return 0;
    int64_t q = budget / p;
    if (q >= 1000)
        return 0;
    int64_t e = w_ms - ((q + 1) * w_ms - 1) / 1000;
    if (e < 0)
        e = 0;
    return e <= e_last ? e : -1;
}

/* Two-counter approximation of a sliding window (as Cloudflare describes
 * its rate limiting): the count of the current aligned window plus the
 * previous window's count weighted by how much of it the sliding interval
 * still covers. */
static struct lim_decision lim_sliding(const struct limit *l, struct lim_state *s, int64_t now,
                                       int64_t cost)
{
    int64_t w = lim_window(l), count = lim_count(l);
    int64_t start = lim_window_start(now, w);
    int64_t n, p;

    if (s->t == start) {
        n = s->n;
        p = s->p;
    } else if (s->t == start - w) {
        n = 0;
        p = s->n;
    } else {
        n = 0;
        p = 0;
    }

    int64_t w_ms = w / LIM_MS_US;
    int64_t e_ms = (now - start) / LIM_MS_US;
    int64_t estimate_pm = p * lim_sw_weight(w_ms, e_ms) + n * 1000;
    struct lim_decision d = {.limit = (uint64_t)count};

    if (estimate_pm + cost * 1000 <= count * 1000) {
        n += cost;
        s->t = start;
        s->n = (uint32_t)n;
        s->p = (uint32_t)p;
        d.allowed = true;
        d.remaining = (uint64_t)((count * 1000 - estimate_pm - cost * 1000) / 1000);
    } else if (cost > count) {
        /* It can never pass; the window length is the honest "not soon". */
        d.retry_after_us = w;
    } else {
        /* The earliest time this same request passes: later in this window
         * (the previous window's weight falls), else in the next one (this
         * window becomes the previous, the new one starts empty), else two
         * windows on, when everything is forgotten and cost <= count. */
        int64_t e_last = (w - 1) / LIM_MS_US;
        int64_t at;
        int64_t e = lim_sw_first_ms(w_ms, e_last, p, (count - n - cost) * 1000);
        if (e >= 0) {
            at = start + e * LIM_MS_US;
        } else {
            e = lim_sw_first_ms(w_ms, e_last, n, (count - cost) * 1000);
            at = e >= 0 ? start + w + e * LIM_MS_US : start + 2 * w;
        }
        d.retry_after_us = at - now;
    }

    /* Full allowance again once every counted request has left the sliding
     * interval: this window's two windows on, the previous one's one on. */
    int64_t full_at = n > 0 ? start + 2 * w : (p > 0 ? start + w : now);
    d.reset_us = full_at - now;
    return d;
}

/* GCRA, as redis-cell's CL.THROTTLE: the state is the theoretical arrival
 * time (TAT); each request pushes it <T> (the emission interval) per unit of
 * cost; a request passes while the TAT stays within <tau> = T * burst of now. */
static struct lim_decision lim_gcra(const struct limit *l, struct lim_state *s, int64_t now,
                                    int64_t cost)
{
    int64_t w = lim_window(l), count = lim_count(l);
    int64_t t_us = count ? w / count : w;
    if (t_us < 1)
        t_us = 1;
    int64_t b =
        l->burst ? (l->burst > UINT32_MAX ? (int64_t)UINT32_MAX : (int64_t)l->burst) : count;
    if (b > LIM_MAX_TAU_US / t_us)
        b = LIM_MAX_TAU_US / t_us;
    struct lim_decision d = {.limit = (uint64_t)b};
    int64_t tat = s->t > now ? s->t : now;

    if (count == 0 || cost > b) {
        /* Never passes: a request larger than the bucket. Answer with the
         * window, as sliding_window does, rather than a time at which it
         * would still not pass. */
        d.retry_after_us = w;
        d.reset_us = tat - now;
        return d;
    }

    int64_t tau = t_us * b;
    int64_t new_tat = tat + t_us * cost;
    int64_t allow_at = new_tat - tau;

    if (now < allow_at) {
        d.retry_after_us = allow_at - now;
        d.reset_us = tat - now;
        return d;
    }
    s->t = new_tat;
    d.allowed = true;
    d.remaining = (uint64_t)((tau - (new_tat - now)) / t_us);
    d.reset_us = new_tat - now;
    return d;
}

static struct lim_decision lim_concurrency(const struct limit *l, struct lim_state *s, int64_t cost)
{
    int64_t count = lim_count(l);
    int64_t n = s->n;
    struct lim_decision d = {.limit = (uint64_t)count};

    if (n + cost > count) {
        /* Slots come back when responses end, which nobody can predict. */
        d.retry_after_us = LIM_SECOND_US;
        return d;
    }
    n += cost;
    s->n = (uint32_t)n;
    d.allowed = true;
    d.remaining = (uint64_t)(count - n);
    return d;
}

struct lim_decision lim_apply(const struct limit *l, struct lim_state *s, int64_t now_us,
                              uint32_t cost)
{
    switch (l->algorithm) {
    case LIM_FIXED_WINDOW:
        return lim_fixed(l, s, now_us, cost);
    case LIM_TOKEN_BUCKET:
        return lim_gcra(l, s, now_us, cost);
    case LIM_CONCURRENCY:
        return lim_concurrency(l, s, cost);
    case LIM_SLIDING_WINDOW:
    case LIM_DEFAULT:
    default:
        /* LIM_DEFAULT is resolved when the config loads; should one slip
         * through, it gets the documented default (limits.algorithm). */
        return lim_sliding(l, s, now_us, cost);
    }
}

void lim_release(const struct limit *l, struct lim_state *s, uint32_t cost)
{
    if (l->algorithm != LIM_CONCURRENCY)
        return;
    s->n = s->n > cost ? s->n - cost : 0;
}

int64_t lim_expiry(const struct limit *l, const struct lim_state *s)
{
    switch (l->algorithm) {
    case LIM_FIXED_WINDOW:
        return s->t + lim_window(l);
    case LIM_TOKEN_BUCKET:
        return s->t;
    case LIM_CONCURRENCY:
        return s->n == 0 ? 0 : INT64_MAX;
    case LIM_SLIDING_WINDOW:
    case LIM_DEFAULT:
    default:
        return s->t + 2 * lim_window(l);
    }
}

int lim_algorithm_from_name(const char *name)
{
    /* From 1: "default" is not a name users may write. */
    for (size_t i = 1; i < sizeof(lim_names) / sizeof(lim_names[0]); i++)
        if (strcmp(name, lim_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *lim_algorithm_name(enum lim_algorithm a)
{
    if ((unsigned)a >= sizeof(lim_names) / sizeof(lim_names[0]))
        return "unknown";
    return lim_names[a];
}
