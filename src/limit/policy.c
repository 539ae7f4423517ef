/* The limit stage: which limits apply to a request (SPEC 3.2-3.4), one
 * all-or-nothing decision in the store, and what the client is told (3.5). */
#include "limit/policy.h"

#include "guard/graphql.h"
#include "guard/violations.h"
#include "limit/mem_store.h"
#include "limit/redis_script.h"
#include "net/worker.h"
#include "obs/metrics.h"
#include "store/fleet.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"

/* What an allowed request holds until it ends: its concurrency slots. */
struct lim_held {
    struct lim_store *store;
    struct lim_op ops[SL_MAX_LIMIT_OPS];
    int n;
    uint32_t cost;
};

/* The route's limits for <id>: its tier's entry, else "*" for any identified
 * client; anonymous clients get only an "anonymous" entry. */
static const struct cfg_route_limits *lim_route_limits(const struct cfg_route *r,
                                                       const struct identity *id)
{
    const struct cfg_route_limits *any = NULL;
    for (int i = 0; i < r->n_limits; i++) {
        if (strcmp(r->limits[i].tier, id->tier) == 0)
            return &r->limits[i];
        if (strcmp(r->limits[i].tier, "*") == 0)
            any = &r->limits[i];
    }
    return id->kind == ID_IP ? NULL : any;
}

/* Adds the counter of limit <l> in <scope> for <x>'s identity. Keys name
 * the scope and the limit as written, so counters survive a reload that
 * leaves them unchanged. */
static void lim_add_op(struct exchange *x, struct lim_op *ops, int *n, const char *scope,
                       const struct limit *l)
{
    if (*n >= SL_MAX_LIMIT_OPS)
        return;
    struct buf k = {0};
    buf_appendf(&k, "%s:%s|%s", scope, l->text, x->identity.id);
    ops[*n].limit = l;
    ops[*n].key = arena_strndup(x->arena, k.data, k.len);
    ops[*n].key_len = k.len;
    buf_release(&k);
    (*n)++;
}

static int lim_collect(struct exchange *x, struct lim_op *ops)
{
    int n = 0;
    const struct cfg_tier *tier = cfg_find_tier(x->cfg, x->identity.tier);
    char scope[320];
    if (x->identity.n_limits) {
        /* A key's own limits replace its tier's (SPEC 5.1 overrides). */
        snprintf(scope, sizeof(scope), "k:%s", x->identity.key_id);
        for (int i = 0; i < x->identity.n_limits; i++)
            lim_add_op(x, ops, &n, scope, &x->identity.limits[i]);
    } else if (tier) {
        snprintf(scope, sizeof(scope), "t:%s", tier->name);
        for (int i = 0; i < tier->n_limits; i++)
            lim_add_op(x, ops, &n, scope, &tier->limits[i]);
    }
    const struct cfg_route_limits *rl = lim_route_limits(x->route, &x->identity);
    if (rl) {
        snprintf(scope, sizeof(scope), "r:%c%s:%s", x->route->match == CFG_MATCH_EXACT ? '=' : '^',
                 x->route->path, rl->tier);
        for (int i = 0; i < rl->n_limits; i++)
            lim_add_op(x, ops, &n, scope, &rl->limits[i]);
    }
    return n;
}

/* A denied request consumed nothing: limits that would have let it through
 * still have what they had before it. */
static void lim_uncount(struct lim_op *ops, int n, uint32_t cost)
{
    for (int i = 0; i < n; i++) {
        struct lim_decision *d = &ops[i].decision;
        if (d->allowed)
            d->remaining = d->remaining + cost > d->limit ? d->limit : d->remaining + cost;
    }
}

/* The limit the client is told about: when denied, the one that keeps it
 * out longest; otherwise the one closest to running out. */
static const struct lim_op *lim_most_restrictive(const struct lim_op *ops, int n, bool allowed)
{
    const struct lim_op *best = &ops[0];
    for (int i = 1; i < n; i++) {
        const struct lim_decision *d = &ops[i].decision, *b = &best->decision;
        if (!allowed) {
            if (!d->allowed && (b->allowed || d->retry_after_us > b->retry_after_us))
                best = &ops[i];
        } else if (d->remaining < b->remaining ||
                   (d->remaining == b->remaining && d->reset_us > b->reset_us)) {
            best = &ops[i];
        }
    }
    return best;
}

static int64_t lim_ceil_s(int64_t us)
{
    return us <= 0 ? 0 : (us + 999999) / 1000000;
}

static void lim_add_u64_header(struct exchange *x, const char *name, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    exchange_add_header(x, name, tmp);
}

/* RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers):
 * one list item per applying limit, named after it; names made unique. */
static void lim_ietf_headers(struct exchange *x, const struct lim_op *ops, int n)
{
    struct buf policy = {0}, state = {0};
    for (int i = 0; i < n; i++) {
        const struct limit *l = ops[i].limit;
        const struct lim_decision *d = &ops[i].decision;
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup += strcmp(ops[j].limit->name, l->name) == 0;
        char name[48];
        if (dup)
            snprintf(name, sizeof(name), "%s-%d", l->name, dup + 1);
        else
            snprintf(name, sizeof(name), "%s", l->name);
        buf_appendf(&policy, "%s\"%s\";q=%llu", i ? ", " : "", name, (unsigned long long)d->limit);
        if (l->algorithm != LIM_CONCURRENCY)
            buf_appendf(&policy, ";w=%lld", (long long)(l->window_us / 1000000));
        int64_t t = d->allowed ? d->reset_us : d->retry_after_us;
        buf_appendf(&state, "%s\"%s\";r=%llu;t=%lld", i ? ", " : "", name,
                    (unsigned long long)d->remaining, (long long)lim_ceil_s(t));
    }
    buf_append(&policy, "", 1);
    buf_append(&state, "", 1);
    exchange_add_header(x, "RateLimit-Policy", policy.data);
    exchange_add_header(x, "RateLimit", state.data);
    buf_release(&policy);
    buf_release(&state);
}

static void lim_headers(struct exchange *x, const struct lim_op *ops, int n,
                        const struct lim_op *shown, int64_t now_us)
{
    const struct cfg_limits *cl = &x->cfg->limits;
    if (cl->header_xratelimit) {
        lim_add_u64_header(x, "X-RateLimit-Limit", shown->decision.limit);
        lim_add_u64_header(x, "X-RateLimit-Remaining", shown->decision.remaining);
        lim_add_u64_header(x, "X-RateLimit-Reset",
                           (uint64_t)lim_ceil_s(now_us + shown->decision.reset_us));
    }
    if (cl->header_ietf)
        lim_ietf_headers(x, ops, n);
}

/* "hour", "5 minutes": the window of <l> in words. */
static void lim_window_words(const struct limit *l, char *out, size_t len)
{
    static const struct {
        int64_t us;
        const char *one, *many;
    } units[] = {{86400000000LL, "day", "days"},
                 {3600000000LL, "hour", "hours"},
                 {60000000LL, "minute", "minutes"},
                 {1000000LL, "second", "seconds"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (l->window_us % units[i].us)
            continue;
        int64_t k = l->window_us / units[i].us;
        if (k == 1)
            snprintf(out, len, "%s", units[i].one);
        else
            snprintf(out, len, "%lld %s", (long long)k, units[i].many);
        return;
    }
    snprintf(out, len, "%lld seconds", (long long)lim_ceil_s(l->window_us));
}

/* The 429 body in the route's style (SPEC 3.5). */
static void lim_reject_body(struct exchange *x, const struct lim_op *shown, int64_t retry_s,
                            int64_t now_us, struct buf *b)
{
    const struct limit *l = shown->limit;
    char window[48];
    lim_window_words(l, window, sizeof(window));
    switch (x->route->rejection) {
    case CFG_REJECT_DRF:
        buf_appendf(b, "{\"detail\": \"Request was throttled. Expected available in %lld %s.\"}\n",
                    (long long)retry_s, retry_s == 1 ? "second" : "seconds");
        break;
    case CFG_REJECT_GRAPHQL:
        buf_append_str(b, "{\"errors\": [{\"message\": \"Rate limit exceeded");
        if (x->gql)
            buf_appendf(b, " for %s '%s'", x->gql->type, x->gql->field);
        buf_appendf(b,
                    ". Limit: %llu requests per %llds. Try again after %lld seconds.\", "
                    "\"extensions\": {\"code\": \"RATE_LIMIT_EXCEEDED\", ",
                    (unsigned long long)shown->decision.limit, (long long)lim_ceil_s(l->window_us),
                    (long long)retry_s);
        if (x->gql)
            buf_appendf(b, "\"operation\": \"%s\", \"type\": \"%s\", ", x->gql->field,
                        x->gql->type);
        buf_appendf(b, "\"resetAt\": %lld}}]}\n", (long long)lim_ceil_s(now_us) + retry_s);
        break;
    default:
        if (l->algorithm == LIM_CONCURRENCY)
            buf_appendf(b,
                        "{\"error\": \"Rate limit exceeded\", \"message\": \"Maximum %llu "
                        "concurrent requests allowed\", \"retry_after\": %lld}\n",
                        (unsigned long long)l->count, (long long)retry_s);
        else
            buf_appendf(b,
                        "{\"error\": \"Rate limit exceeded\", \"message\": \"Maximum %llu "
                        "requests per %s allowed\", \"retry_after\": %lld}\n",
                        (unsigned long long)l->count, window, (long long)retry_s);
        break;
    }
}

static void lim_reject(struct exchange *x, const struct lim_op *shown, int64_t now_us)
{
    int64_t retry_s = lim_ceil_s(shown->decision.retry_after_us);
    if (retry_s < 1)
        retry_s = 1;
    lim_add_u64_header(x, "Retry-After", (uint64_t)retry_s);
    struct buf b = {0};
    lim_reject_body(x, shown, retry_s, now_us, &b);
    struct gateway *gw = x->worker->gw;
    viol_record(gw->violations, x->identity.id, x->route->path, now_us);
    exchange_respond(x, 429, "application/json", b.data, b.len);
    buf_release(&b);
}

static void lim_on_end(struct exchange *x, void *arg)
{
    struct lim_held *h = arg;
    lim_store_release(h->store, h->ops, h->n, h->cost);
}

/* Keeps the concurrency counters of an allowed request until it ends, on
 * whatever path it ends (answered, failed, or the client gone). */
static void lim_hold_slots(struct exchange *x, struct lim_store *st, const struct lim_op *ops,
                           int n, uint32_t cost)
{
    struct lim_held *h = NULL;
    for (int i = 0; i < n; i++) {
        if (ops[i].limit->algorithm != LIM_CONCURRENCY)
            continue;
        if (!h) {
            h = arena_calloc(x->arena, sizeof(*h));
            h->store = st;
            h->cost = cost;
        }
        h->ops[h->n++] = ops[i];
    }
    if (h)
        exchange_on_end(x, lim_on_end, h);
}

/* What the client is told once the ops have their decisions. */
static enum stage_result lim_finish(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                                    bool allowed, int64_t now_us)
{
    if (!allowed)
        lim_uncount(ops, n, cost);
    const struct lim_op *shown = lim_most_restrictive(ops, n, allowed);
    lim_headers(x, ops, n, shown, now_us);
    metrics_limit_decision(x->worker->metrics, x->route->path, allowed);
    if (!allowed) {
        lim_reject(x, shown, now_us);
        return STAGE_DONE;
    }
    return STAGE_NEXT;
}

/* Decide on this node's memory store. */
static enum stage_result lim_decide_local(struct exchange *x, struct lim_op *ops, int n,
                                          uint32_t cost)
{
    struct lim_store *st = x->worker->gw->limiter;
    int64_t now_us = clock_wall_us();
    bool allowed = lim_store_apply(st, ops, n, now_us, cost);
    enum stage_result r = lim_finish(x, ops, n, cost, allowed, now_us);
    if (r == STAGE_NEXT)
        lim_hold_slots(x, st, ops, n, cost);
    return r;
}

/* ---- the Redis store (SPEC 3.6) ----------------------------------------------- */

/* Redis could not decide (down, late, or an answer of the wrong shape):
 * store.redis.on_failure says what happens instead. */
static enum stage_result lim_fallback(struct exchange *x, struct lim_op *ops, int n, uint32_t cost)
{
    struct fleet *f = x->worker->gw->fleet;
    switch (x->cfg->store.redis.on_failure) {
    case CFG_FAIL_ALLOW:
        metrics_limit_fallback(x->worker->metrics, "allow");
        return STAGE_NEXT;
    case CFG_FAIL_DENY:
        metrics_limit_fallback(x->worker->metrics, "deny");
        exchange_add_header(x, "Retry-After", "1");
        exchange_respond_error(x, 503, "the rate-limit store is unavailable");
        return STAGE_DONE;
    default:
        break;
    }
    /* This node's share of each limit: the fleet as a whole stays near the
     * limit while every member decides alone. */
    metrics_limit_fallback(x->worker->metrics, "local");
    unsigned size = fleet_size(f);
    struct limit *shares = arena_alloc(x->arena, sizeof(*shares) * (size_t)n);
    for (int i = 0; i < n; i++) {
        shares[i] = *ops[i].limit;
        uint64_t c = shares[i].count / size, b = shares[i].burst / size;
        shares[i].count = c ? c : 1;
        shares[i].burst = b ? b : 1;
        ops[i].limit = &shares[i];
    }
    return lim_decide_local(x, ops, n, cost);
}

/* A decision asked of Redis; shared by the exchange (which may end first,
 * the client gone) and the reply. */
struct lim_remote {
    struct exchange *x; /* NULL once the exchange ended */
    int refs;
    struct lim_op *ops; /* in the exchange's arena */
    int n;
    uint32_t cost;
    const char *lease; /* in the arena; "" without concurrency limits */
    bool submitting, answered_early;
    enum stage_result early;
};

static void lim_remote_unref(struct lim_remote *r)
{
    if (--r->refs == 0)
        free(r);
}

static void lim_remote_gone(struct exchange *x, void *arg)
{
    struct lim_remote *r = arg;
    r->x = NULL;
    lim_remote_unref(r);
}

struct lim_lease {
    struct lim_op ops[SL_MAX_LIMIT_OPS];
    int n;
    uint32_t cost;
    const char *id;
};

static void lim_ignore_reply(void *arg, enum rds_status st, const redisReply *reply) {}

/* Gives back the request's concurrency leases; if Redis does not hear it,
 * the leases expire by themselves (store.redis.lease). */
static void lim_release_leases(struct exchange *x, void *arg)
{
    struct lim_lease *l = arg;
    struct worker *w = x->worker;
    if (!w->redis)
        return;
    /* On the stack: rds_eval copies the arguments. */
    struct lim_lua_call call;
    char keys[LIM_LUA_KEYS_MAX];
    if (lim_lua_build_release(&call, fleet_prefix(w->gw->fleet), l->ops, l->n, l->cost, l->id, keys,
                              sizeof(keys)) == 0 &&
        call.nkeys > 0)
        rds_eval(w->redis, fleet_release_script(w->gw->fleet), call.nkeys, call.nargs, call.args,
                 call.lens, lim_ignore_reply, NULL);
}

static void lim_hold_leases(struct exchange *x, const struct lim_op *ops, int n, uint32_t cost,
                            const char *lease)
{
    struct lim_lease *l = NULL;
    for (int i = 0; i < n; i++) {
        if (ops[i].limit->algorithm != LIM_CONCURRENCY)
            continue;
        if (!l) {
            l = arena_calloc(x->arena, sizeof(*l));
            l->cost = cost;
            l->id = lease;
        }
        l->ops[l->n++] = ops[i];
    }
    if (l)
        exchange_on_end(x, lim_release_leases, l);
}

static void lim_remote_reply(void *arg, enum rds_status st, const redisReply *reply)
{
    struct lim_remote *r = arg;
    struct exchange *x = r->x;
    if (x) {
        bool ok = false, allowed = false;
        if (st == RDS_OK)
            allowed = lim_lua_parse(reply, r->ops, r->n, &ok);
        enum stage_result res;
        if (ok) {
            res = lim_finish(x, r->ops, r->n, r->cost, allowed, clock_wall_us());
            if (res == STAGE_NEXT)
                lim_hold_leases(x, r->ops, r->n, r->cost, r->lease);
        } else {
            res = lim_fallback(x, r->ops, r->n, r->cost);
        }
        if (r->submitting) {
            r->answered_early = true;
            r->early = res;
        } else if (res == STAGE_NEXT) {
            exchange_resume(x);
        }
    }
    lim_remote_unref(r);
}

static enum stage_result lim_decide_remote(struct exchange *x, struct lim_op *ops, int n,
                                           uint32_t cost)
{
    struct worker *w = x->worker;
    struct fleet *f = w->gw->fleet;
    if (!w->redis || !rds_is_up(w->redis))
        return lim_fallback(x, ops, n, cost);
    /* On the stack, not in the arena (~20 KB a request): rds_eval copies
     * the arguments. */
    struct lim_lua_call call;
    char keys[LIM_LUA_KEYS_MAX];
    /* Lease ids come from the gateway, never from the client (X-Request-Id
     * can be chosen: two requests sharing an id would share one slot). */
    char *lease = "";
    for (int i = 0; i < n; i++) {
        if (ops[i].limit->algorithm == LIM_CONCURRENCY) {
            lease = arena_alloc(x->arena, 33);
            worker_request_id(w, lease);
            break;
        }
    }
    if (lim_lua_build(&call, fleet_prefix(f), ops, n, cost, -1, lease,
                      x->cfg->store.redis.lease_ms * 1000, keys, sizeof(keys)) < 0)
        return lim_fallback(x, ops, n, cost);
    struct lim_remote *r = sl_calloc(1, sizeof(*r));
    r->x = x;
    r->refs = 2;
    r->ops = ops;
    r->n = n;
    r->cost = cost;
    r->lease = lease;
    exchange_on_end(x, lim_remote_gone, r);
    r->submitting = true;
    rds_eval(w->redis, fleet_apply_script(f), call.nkeys, call.nargs, call.args, call.lens,
             lim_remote_reply, r);
    r->submitting = false;
    return r->answered_early ? r->early : STAGE_WAIT;
}

/* The decision proper, once everything it needs is known. */
static enum stage_result lim_decide(struct exchange *x)
{
    struct lim_op *ops = arena_alloc(x->arena, sizeof(*ops) * SL_MAX_LIMIT_OPS);
    int n = lim_collect(x, ops);
    if (n == 0)
        return STAGE_NEXT;
    uint32_t cost = x->route->cost ? x->route->cost : 1;
    if (x->worker->gw->fleet)
        return lim_decide_remote(x, ops, n, cost);
    return lim_decide_local(x, ops, n, cost);
}

/* A GraphQL body is read (up to this much) to name the operation in 429s;
 * the query comes first in practice, and the rest still streams. */
#define LIM_GRAPHQL_PEEK (64u << 10)

struct lim_body {
    struct buf data;
};

static void lim_body_release(struct exchange *x, void *arg)
{
    struct lim_body *b = arg;
    buf_release(&b->data);
}

static void lim_graphql_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct lim_body *b = x->lim_body;
    buf_append(&b->data, data, len);
    if (!end && b->data.len < LIM_GRAPHQL_PEEK)
        return;
    struct gql_op *op = arena_calloc(x->arena, sizeof(*op));
    if (gql_inspect_json(b->data.data ? b->data.data : "", b->data.len, op))
        x->gql = op;
    /* Everything read goes back to the queue for the proxy, unchanged. */
    exchange_requeue_body(x, b->data.data, b->data.len);
    buf_release(&b->data);
    if (lim_decide(x) == STAGE_NEXT)
        exchange_resume(x);
}

enum stage_result lim_stage(struct exchange *x)
{
    const struct config *cfg = x->cfg;
    if (!cfg->limits.enabled || x->route->limits_off || x->identity.exempt)
        return STAGE_NEXT;
    bool has_body = x->content_length > 0 || x->chunked;
    if (x->route->rejection == CFG_REJECT_GRAPHQL && has_body) {
        struct lim_body *b = arena_calloc(x->arena, sizeof(*b));
        x->lim_body = b;
        exchange_on_end(x, lim_body_release, b);
        exchange_set_body_sink(x, lim_graphql_sink);
        return STAGE_WAIT;
    }
    return lim_decide(x);
}
