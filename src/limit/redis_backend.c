/* The Redis backend of the limit module (SPEC 3.6): every decision is one
 * EVALSHA of the Lua twin on this worker's connection; when Redis cannot
 * decide, store.redis.on_failure says what happens instead. */
#include "fleet/fleet.h"
#include "limit/backend.h"
#include "limit/redis_script.h"
#include "util/clock.h"
#include "util/mem.h"

/* Redis could not decide (down, late, or an answer of the wrong shape):
 * store.redis.on_failure says what happens instead. */
static enum stage_result lim_fallback(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                                      struct quota_req *q)
{
    struct fleet *f = fleet_of(x->worker->gw);
    uint64_t *counts = lim_worker_of(x->worker)->fallback;
    switch (x->cfg->store.redis.on_failure) {
    case CFG_FAIL_ALLOW:
        metrics_counter_add(&counts[LIM_FALLBACK_ALLOW], 1);
        return STAGE_NEXT;
    case CFG_FAIL_DENY:
        metrics_counter_add(&counts[LIM_FALLBACK_DENY], 1);
        exchange_add_header(x, "Retry-After", "1");
        exchange_respond_error(x, 503, "the rate-limit store is unavailable");
        return STAGE_DONE;
    default:
        break;
    }
    /* This node's share of each limit: the fleet as a whole stays near the
     * limit while every member decides alone. */
    metrics_counter_add(&counts[LIM_FALLBACK_LOCAL], 1);
    unsigned size = fleet_size(f);
    struct limit *shares = arena_alloc(x->arena, sizeof(*shares) * (size_t)n);
    for (int i = 0; i < n; i++) {
        shares[i] = *ops[i].limit;
        uint64_t c = shares[i].count / size, b = shares[i].burst / size;
        shares[i].count = c ? c : 1;
        shares[i].burst = b ? b : 1;
        ops[i].limit = &shares[i];
    }
    if (q)
        quota_share(q, size);
    return lim_decide_local(x, ops, n, cost, q);
}

/* A decision asked of Redis; shared by the exchange (which may end first,
 * the client gone) and the reply. */
struct lim_remote {
    struct exchange *x; /* NULL once the exchange ended */
    int refs;
    struct lim_op *ops; /* in the exchange's arena */
    int n;
    uint32_t cost;
    struct quota_req *q; /* in the arena; NULL: none */
    const char *lease;   /* in the arena; "" without concurrency limits */
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
    struct rds *redis = fleet_redis(w);
    if (!redis)
        return;
    /* On the stack: rds_eval copies the arguments. */
    struct lim_lua_call call;
    char keys[LIM_LUA_KEYS_MAX];
    if (lim_lua_build_release(&call, fleet_prefix(fleet_of(w->gw)), l->ops, l->n, l->cost, l->id,
                              keys, sizeof(keys)) == 0 &&
        call.nkeys > 0)
        rds_eval(redis, &lim_gw_of(w->gw)->release, call.nkeys, call.nargs, call.args, call.lens,
                 lim_ignore_reply, NULL);
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
            allowed = lim_lua_parse(reply, r->ops, r->n, r->q, &ok);
        enum stage_result res;
        if (ok) {
            res = lim_finish(x, r->ops, r->n, r->cost, allowed, clock_wall_us(), r->q);
            if (res == STAGE_NEXT)
                lim_hold_leases(x, r->ops, r->n, r->cost, r->lease);
        } else {
            res = lim_fallback(x, r->ops, r->n, r->cost, r->q);
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
                                           uint32_t cost, struct quota_req *q)
{
    struct worker *w = x->worker;
    struct fleet *f = fleet_of(w->gw);
    struct rds *redis = fleet_redis(w);
    if (!redis || !rds_is_up(redis))
        return lim_fallback(x, ops, n, cost, q);
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
    if (lim_lua_build(&call, fleet_prefix(f), ops, n, cost, q, -1, lease,
                      x->cfg->store.redis.lease_ms * 1000, keys, sizeof(keys)) < 0)
        return lim_fallback(x, ops, n, cost, q);
    struct lim_remote *r = sl_calloc(1, sizeof(*r));
    r->x = x;
    r->refs = 2;
    r->ops = ops;
    r->n = n;
    r->cost = cost;
    r->q = q;
    r->lease = lease;
    exchange_on_end(x, lim_remote_gone, r);
    r->submitting = true;
    rds_eval(redis, &lim_gw_of(w->gw)->apply, call.nkeys, call.nargs, call.args, call.lens,
             lim_remote_reply, r);
    r->submitting = false;
    return r->answered_early ? r->early : STAGE_WAIT;
}

const struct lim_backend lim_redis_backend = {
    .name = "redis",
    .decide = lim_decide_remote,
};
