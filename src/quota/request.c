/* The quota of a request: what applies (SPEC 6.1), and what the client is
 * told once the limit stage has decided it with the rate limits. */
#include <stdio.h>
#include <string.h>

#include "quota/alert.h"
#include "quota/conf.h"
#include "quota/module.h"
#include "quota/quota.h"
#include "util/clock.h"
#include "util/str.h"

/* The day and month holding <now> for <qc>'s calendar: computed once per
 * period per worker, not per request. */
static void quota_periods(struct quota_worker *qw, const struct quota_conf *qc, int64_t now,
                          struct quota_period *day, struct quota_period *month)
{
    if (qw->conf != qc || now < qw->day.start || now >= qw->day.end) {
        qw->conf = qc;
        qw->day = quota_period_at(qc->zone, QUOTA_DAILY, qc->monthly_reset_day, now);
    }
    if (qw->month_conf != qc || now < qw->month.start || now >= qw->month.end) {
        qw->month_conf = qc;
        qw->month = quota_period_at(qc->zone, QUOTA_MONTHLY, qc->monthly_reset_day, now);
    }
    *day = qw->day;
    *month = qw->month;
}

/* A key's own quota replaces its tier's, span by span (SPEC 6.1). */
static struct quota_limits quota_limits_of(const struct exchange *x)
{
    struct quota_limits l = {0};
    const struct cfg_tier *t = cfg_find_tier(x->cfg, x->identity.tier);
    const struct quota_tier_conf *tq = t ? quota_tier_conf(t) : NULL;
    if (tq) {
        l.daily = tq->daily;
        l.monthly = tq->monthly;
    }
    if (x->identity.quota_daily >= 0)
        l.daily = x->identity.quota_daily;
    if (x->identity.quota_monthly >= 0)
        l.monthly = x->identity.quota_monthly;
    return l;
}

struct quota_req *quota_request(struct exchange *x)
{
    if (x->identity.exempt)
        return NULL;
    struct quota_limits l = quota_limits_of(x);
    if (l.daily <= 0 && l.monthly <= 0)
        return NULL;
    struct quota_req *q = arena_calloc(x->arena, sizeof(*q));
    str_copy(q->identity, sizeof(q->identity), x->identity.id);
    q->limits = l;
    quota_periods(quota_worker_of(x->worker), quota_conf(x->cfg), clock_wall_us() / 1000000,
                  &q->day, &q->month);
    q->cost = x->route->cost ? x->route->cost : 1;
    quota_thresholds(x->cfg, &q->thresholds, &q->n_thresholds);
    return q;
}

struct quota_store *quota_store_of(const struct gateway *gw)
{
    return quota_gw_of(gw)->store;
}

void quota_share(struct quota_req *q, unsigned fleet_size)
{
    if (fleet_size <= 1)
        return;
    int64_t *spans[] = {&q->limits.daily, &q->limits.monthly};
    for (int i = 0; i < 2; i++) {
        if (*spans[i] <= 0)
            continue;
        int64_t share = *spans[i] / fleet_size;
        *spans[i] = share ? share : 1;
    }
}

void quota_from_remote(struct quota_req *q, int status, const struct quota_usage *after)
{
    if (status < 0) {
        q->decided = false;
        return;
    }
    /* The script and quota_decide do the same arithmetic: decided again
     * from the counts before this request, the decision (and the
     * thresholds crossed) is the one the script made. */
    struct quota_usage before = *after;
    if (status == 1) {
        before.day_used -= q->cost;
        before.month_used -= q->cost;
    }
    q->decided = true;
    q->decision = quota_decide(&before, &q->limits, &q->day, &q->month, q->cost, q->thresholds,
                               q->n_thresholds);
    q->usage = before;
    if (q->decision.allowed != (status == 1)) {
        /* another gateway's calendar disagrees (a period boundary between
         * the two clocks): the script's verdict stands */
        q->decision.allowed = status == 1;
        q->decision.crossed_daily = q->decision.crossed_monthly = 0;
    }
}

/* Every value here is a count or a time, never negative; str_u64, not
 * snprintf: three headers on every request. */
static void quota_add_i64_header(struct exchange *x, const char *name, int64_t v)
{
    char tmp[24];
    str_u64(tmp, v < 0 ? 0 : (uint64_t)v);
    exchange_add_header(x, name, tmp);
}

/* The 429 body in the route's style (SPEC 6.1). */
static void quota_reject_body(struct exchange *x, const struct quota_decision *d, int64_t retry_s,
                              struct buf *b)
{
    const char *span = quota_span_name(d->which);
    char message[96];
    snprintf(message, sizeof(message), "%s quota of %lld requests used up",
             d->which == QUOTA_DAILY ? "Daily" : "Monthly", (long long)d->limit);
    switch (x->route->rejection) {
    case CFG_REJECT_DRF:
        buf_appendf(b, "{\"detail\": \"Request was throttled. Expected available in %lld %s.\"}\n",
                    (long long)retry_s, retry_s == 1 ? "second" : "seconds");
        break;
    case CFG_REJECT_GRAPHQL:
        buf_appendf(b,
                    "{\"errors\": [{\"message\": \"%s\", \"extensions\": {\"code\": "
                    "\"QUOTA_EXCEEDED\", \"quota\": \"%s\", \"resetAt\": %lld}}]}\n",
                    message, span, (long long)d->reset);
        break;
    default:
        buf_appendf(b,
                    "{\"error\": \"Quota exceeded\", \"message\": \"%s\", \"quota\": \"%s\", "
                    "\"reset\": %lld}\n",
                    message, span, (long long)d->reset);
        break;
    }
}

static void quota_headers(struct exchange *x, const struct quota_decision *d)
{
    quota_add_i64_header(x, "X-Quota-Limit", d->limit);
    quota_add_i64_header(x, "X-Quota-Remaining", d->remaining);
    quota_add_i64_header(x, "X-Quota-Reset", d->reset);
}

static enum stage_result quota_reject(struct exchange *x, const struct quota_req *q)
{
    const struct quota_decision *d = &q->decision;
    int64_t retry_s = d->reset - clock_wall_us() / 1000000;
    if (retry_s < 1)
        retry_s = 1;
    quota_add_i64_header(x, "Retry-After", retry_s);
    quota_headers(x, d);
    struct buf b = {0};
    quota_reject_body(x, d, retry_s, &b);
    x->refused_by = SL_REFUSED_QUOTA;
    quota_count(x->worker, false);
    exchange_respond(x, 429, "application/json", b.data, b.len);
    buf_release(&b);
    return STAGE_DONE;
}

/* Every threshold this request crossed, of either quota: one alert each.
 * The crossing is seen by exactly one request (the decision is atomic), so
 * by one gateway of a fleet. */
static void quota_raise_crossed(struct exchange *x, const struct quota_req *q)
{
    const unsigned bits[2] = {q->decision.crossed_daily, q->decision.crossed_monthly};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < q->n_thresholds; i++) {
            if (!(bits[s] & (1u << i)))
                continue;
            enum quota_span span = s == 0 ? QUOTA_DAILY : QUOTA_MONTHLY;
            const struct quota_period *p = s == 0 ? &q->day : &q->month;
            struct quota_alert a = {
                .identity = q->identity,
                .key_id = x->identity.key_id,
                .owner = x->identity.owner,
                .quota = span,
                .threshold = q->thresholds[i],
                .used = s == 0 ? q->usage.day_used : q->usage.month_used,
                .limit = s == 0 ? q->limits.daily : q->limits.monthly,
                .period_start = p->start,
                .period_end = p->end,
            };
            quota_alert_raise(x->worker->gw, &a);
        }
    }
}

enum stage_result quota_answer(struct exchange *x, struct quota_req *q)
{
    if (!q->decided)
        return STAGE_NEXT;
    if (!q->decision.allowed)
        return quota_reject(x, q);
    quota_headers(x, &q->decision);
    quota_count(x->worker, true);
    if (q->decision.crossed_daily || q->decision.crossed_monthly)
        quota_raise_crossed(x, q);
    return STAGE_NEXT;
}

void quota_ietf_items(const struct quota_req *q, struct buf *policy, struct buf *state)
{
    if (!q->decided)
        return;
    int64_t now = clock_wall_us() / 1000000;
    for (int s = 0; s < 2; s++) {
        int64_t limit = s == 0 ? q->limits.daily : q->limits.monthly;
        if (limit <= 0)
            continue;
        const struct quota_period *p = s == 0 ? &q->day : &q->month;
        int64_t used = s == 0 ? q->usage.day_used : q->usage.month_used;
        const char *name = s == 0 ? "daily-quota" : "monthly-quota";
        buf_appendf(policy, "%s\"%s\";q=%lld;w=%lld", policy->len ? ", " : "", name,
                    (long long)limit, (long long)(p->end - p->start));
        buf_appendf(state, "%s\"%s\";r=%lld;t=%lld", state->len ? ", " : "", name,
                    (long long)(limit > used ? limit - used : 0),
                    (long long)(p->end > now ? p->end - now : 0));
    }
}
