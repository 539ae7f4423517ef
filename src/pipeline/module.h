#ifndef SLUICE_MODULE_H
#define SLUICE_MODULE_H
/* A module: the one way a feature hooks into the gateway (ARCHITECTURE.md,
 * "Modules"). A module is a folder with one `const struct sl_module`; the
 * list of modules is src/modules.h. The core (net, pipeline, conf walker,
 * store connections) calls the hooks below and names no module. Every hook
 * may be NULL. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pipeline/exchange.h"
#include "pipeline/gateway.h"
#include "util/buf.h"

/* Where a stage runs in the public pipeline; stages of one phase run in the
 * order of the module list. */
enum sl_phase {
    SL_PHASE_EARLY,   /* before routing: the gateway's own endpoints */
    SL_PHASE_ROUTE,   /* which route */
    SL_PHASE_CLIENT,  /* who is asking, by address */
    SL_PHASE_ACCESS,  /* access lists, bans: refuse before spending work */
    SL_PHASE_AUTHN,   /* credentials -> identity */
    SL_PHASE_AUTHZ,   /* the route's auth and scopes */
    SL_PHASE_INSPECT, /* read what the limits need from the body (GraphQL) */
    SL_PHASE_LIMIT,   /* rate limits */
    SL_PHASE_QUOTA,   /* quotas */
    SL_PHASE_CONTENT, /* endpoints the gateway answers itself (/auth/token) */
    SL_PHASE_CACHE,   /* the response cache */
    SL_PHASE_PROXY,   /* the upstream: the terminal stage */
    SL_PHASE_N
};

/* The admin listener's phases. */
enum sl_admin_phase {
    SL_ADMIN_PHASE_AUTH,     /* the admin token */
    SL_ADMIN_PHASE_DISPATCH, /* the route table */
    SL_ADMIN_PHASE_N
};

struct sl_stage {
    int phase; /* enum sl_phase, or enum sl_admin_phase when <admin> */
    bool admin;
    stage_fn fn;
};

/* An admin call as the router hands it to a handler: <id> is the {id} part
 * of the pattern (NULL when it has none), <body> the whole request body
 * (read when the route allows one; "" otherwise). */
struct sl_admin_call {
    const char *id;
    const char *body;
    size_t body_len;
};

/* One admin endpoint: <pattern> is a path with at most one "{id}" segment
 * ("/keys/{id}/rotate"). The router answers 404, 405 with Allow, and 413
 * for a body over <max_body> (0: no body accepted) once for every route.
 * The handler answers at once or later (an operation on the store). */
struct sl_admin_route {
    int method; /* llhttp_method_t */
    const char *pattern;
    void (*handler)(struct exchange *x, const struct sl_admin_call *call);
    size_t max_body;
};

/* A fleet event type (store.backend redis): a message {"type": <type>, ...}
 * published by one gateway reaches <apply> on every other. Runs on the
 * loop of the worker that holds the fleet's subscription (worker 0), <w>. */
struct sl_event_type {
    const char *type;
    void (*apply)(struct worker *w, const json_t *event);
};

/* What modules add to the stats tick of GET /events (admin/stats.h), each
 * its own part, read from any thread. */
struct sl_stats {
    uint64_t cache_hits, cache_misses; /* lookups so far (cumulative) */
    int redis;                         /* -1: no Redis (memory backend), 0: down, 1: up */
    unsigned fleet;                    /* gateways seen, this one included */
};

struct sl_module {
    const char *name;
    /* The module's rows in the config file (conf/conf.h). */
    const struct cfg_module *conf;

    /* Process: <init_process> runs on the main thread before any worker
     * exists (0, or -1 with *<err> malloc'd: the gateway does not start);
     * <dispose_process> after every worker has stopped, in reverse order. */
    int (*init_process)(struct gateway *gw, char **err);
    void (*dispose_process)(struct gateway *gw);
    /* A reload installed <cfg> in place of <old>: settings that wait for a
     * restart are said in <warnings>, one line each. */
    void (*on_reload)(struct gateway *gw, const struct config *old, const struct config *cfg,
                      struct buf *warnings);

    /* Worker: <init_worker> on the main thread before the threads start;
     * <start_worker> on the worker's thread before its loop runs (timers,
     * connections); <stop_worker> on that thread when it stops (close the
     * handles with worker_close_handle); <dispose_worker> after the loop
     * has closed. */
    void (*init_worker)(struct worker *w);
    void (*start_worker)(struct worker *w);
    void (*stop_worker)(struct worker *w);
    void (*dispose_worker)(struct worker *w);

    /* Per config snapshot a worker holds (wcfg): set up when the worker
     * takes a config, released when no exchange uses it any more. */
    void (*init_snapshot)(struct wcfg *h);
    void (*release_snapshot)(struct wcfg *h);

    /* The request pipeline. */
    const struct sl_stage *stages;
    int n_stages;
    /* After the response of every exchange that ran the stages: counts,
     * violations, usage, audit. Never answers. */
    void (*finish)(struct exchange *x);

    /* Admin endpoints, ending with a row whose pattern is NULL. */
    const struct sl_admin_route *admin_routes;
    /* Prometheus text of this module's metrics, all workers summed. */
    void (*metrics)(struct gateway *gw, struct buf *out);
    /* This module's part of the stats tick (any thread). */
    void (*stats)(struct gateway *gw, struct sl_stats *out);
    /* Fleet event types, ending with a row whose type is NULL. */
    const struct sl_event_type *events;
};

/* The modules, in order (src/modules.c): init order, and the order of
 * stages within a phase. */
const struct sl_module *const *sl_module_list(int *n);

/* Call <hook> of every module that has one, in list order or (<reverse>) the
 * reverse. */
#define SL_EACH_MODULE(reverse, hook, ...)                                                         \
    do {                                                                                           \
        int n_;                                                                                    \
        const struct sl_module *const *m_ = sl_module_list(&n_);                                   \
        for (int i_ = 0; i_ < n_; i_++) {                                                          \
            const struct sl_module *mod_ = m_[(reverse) ? n_ - 1 - i_ : i_];                       \
            if (mod_->hook)                                                                        \
                mod_->hook(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

#endif
