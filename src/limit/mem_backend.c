/* The memory backend of the limit module: decisions in this node's store,
 * under its shard locks. */
#include "limit/backend.h"
#include "util/clock.h"

/* What an allowed request holds until it ends: its concurrency slots. */
struct lim_held {
    struct lim_store *store;
    struct lim_op ops[SL_MAX_LIMIT_OPS];
    int n;
    uint32_t cost;
};

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

/* The limits of a request, decided under its quota's lock. */
struct lim_local_call {
    struct lim_store *st;
    struct lim_op *ops;
    int n;
    int64_t now_us;
    uint32_t cost;
};

static bool lim_apply_local(void *arg)
{
    struct lim_local_call *c = arg;
    return c->n == 0 || lim_store_apply(c->st, c->ops, c->n, c->now_us, c->cost);
}

/* Decide on this node's memory stores: the quota's lock is taken first and
 * held while the limits decide, so the two are one all-or-nothing step. */
enum stage_result lim_decide_local(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                                   struct quota_req *q)
{
    struct lim_store *st = lim_gw_of(x->worker->gw)->store;
    int64_t now_us = clock_wall_us();
    struct lim_local_call call = {st, ops, n, now_us, cost};
    bool allowed = q ? quota_store_decide(quota_store_of(x->worker->gw), q, lim_apply_local, &call)
                     : lim_apply_local(&call);
    enum stage_result r = lim_finish(x, ops, n, cost, allowed, now_us, q);
    if (r == STAGE_NEXT)
        lim_hold_slots(x, st, ops, n, cost);
    return r;
}

const struct lim_backend lim_mem_backend = {
    .name = "memory",
    .decide = lim_decide_local,
};
