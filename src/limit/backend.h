#ifndef SLUICE_LIMIT_BACKEND_H
#define SLUICE_LIMIT_BACKEND_H
/* Inside the limit module: its state, and the stores a decision is made in
 * (an ops table, one file per backend: mem_backend.c, redis_backend.c). */

#include <uv.h>

#include "limit/mem_store.h"
#include "modules.h"
#include "obs/metrics.h"
#include "quota/quota.h"
#include "store/redis.h"

/* Where the decisions of a gateway are made. <decide> decides the limits
 * <ops> and the quota <q> (NULL: none) all or nothing, and returns what the
 * limit stage returns: STAGE_NEXT (allowed), STAGE_DONE (answered 429 or
 * 503) or STAGE_WAIT (it resumes the exchange when the store answers). */
struct lim_backend {
    const char *name;
    enum stage_result (*decide)(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                                struct quota_req *q);
};
extern const struct lim_backend lim_mem_backend;   /* this node's memory */
extern const struct lim_backend lim_redis_backend; /* shared by the fleet (SPEC 3.6) */

/* What on_failure did when Redis could not decide. */
enum lim_fallback_mode {
    LIM_FALLBACK_LOCAL,
    LIM_FALLBACK_ALLOW,
    LIM_FALLBACK_DENY,
    LIM_FALLBACK_N
};

/* gw->ctx[MOD_limit] */
struct lim_gw {
    const struct lim_backend *backend;
    struct lim_store *store; /* the memory store (also on_failure: local) */
    struct rds_script apply, release;
};

/* worker->ctx[MOD_limit] */
struct lim_worker {
    uv_timer_t sweep; /* drops expired counters */
    struct metrics_family *decisions;
    uint64_t fallback[LIM_FALLBACK_N];
};

static inline struct lim_gw *lim_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_limit];
}

static inline struct lim_worker *lim_worker_of(const struct worker *w)
{
    return w->ctx[MOD_limit];
}

/* What the client is told once the ops have their decisions (policy.c). */
enum stage_result lim_finish(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                             bool allowed, int64_t now_us, struct quota_req *q);
/* Decide in this node's memory store (mem_backend.c); the Redis backend's
 * on_failure: local comes here too. */
enum stage_result lim_decide_local(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                                   struct quota_req *q);

#endif
