#ifndef SLUICE_GATEWAY_H
#define SLUICE_GATEWAY_H
/* The run-time a module sees: the gateway process, its worker threads (one
 * libuv loop each) and a worker's hold on a config snapshot. Modules keep
 * their state in the ctx[] slots (indexed by enum sl_module_id, see
 * src/modules.h); the core names no module. Threads, listeners and reloads
 * are net/worker.c's. */

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <uv.h>

#include "conf/conf.h"
#include "pipeline/pipeline.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/limits.h"

struct conn;
struct conn_in;
struct metrics;

/* A worker's hold on one config snapshot. Exchanges count themselves in
 * <users> (worker-local, so no atomics on the hot path); when the worker has
 * moved to a newer snapshot and the last user leaves, the hold is freed and
 * the snapshot's reference dropped. Modules keep per-snapshot state in
 * ctx[] (the proxy's keep-alive pools: a reload starts fresh pools for the
 * new upstream table). */
struct wcfg {
    struct config *cfg;
    struct worker *worker;
    unsigned users;
    bool retired;
    void *ctx[SL_MAX_MODULES];
};

struct worker {
    int id;
    struct gateway *gw;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    uv_check_t check;
    uv_prepare_t prepare;
    uv_timer_t drain_timer;
    uv_tcp_t listeners[SL_MAX_LISTEN];
    int listen_fds[SL_MAX_LISTEN];
    int n_listeners;
    uv_tcp_t admin;
    int admin_fd; /* -1: no admin listener on this worker */

    struct wcfg *cur;
    uint64_t cfg_gen;

    struct conn *conns; /* every open client connection */
    struct conn *dirty; /* connections with output or input to process this iteration */
    int n_conns;
    struct conn_in *in_pool; /* free connection input buffers (net/conn.c), at most SL_READ_POOL */
    int in_pool_len;
    struct arena_pool arenas; /* exchanges' arenas to reuse (pipeline/exchange.c) */
    struct buf_pool out_pool; /* connections' output buffers to reuse (net/conn.c) */
    /* Fair accept (net/worker.c): connections accepted in this loop
     * iteration, and the listeners left with one waiting past
     * SL_ACCEPT_BATCH, to be taken up in the next. */
    int accepted;
    int n_deferred;
    uv_stream_t *deferred[SL_MAX_LISTEN + 1];
    int open_handles; /* worker-level handles still to close at shutdown */
    bool draining, stopped;

    struct metrics *metrics;
    struct buf log;  /* access log lines not yet written */
    int64_t log_sec; /* second of the cached timestamp below */
    char log_time[40];
    uint64_t rid_state;
    void *ctx[SL_MAX_MODULES]; /* each module's per-worker state */
};

struct gateway {
    char *config_path;
    pthread_mutex_t lock; /* guards cfg and gen */
    struct config *cfg;
    uint64_t gen;
    struct worker *workers;
    int n_workers;
    int n_conns;  /* atomic: open client connections, all workers */
    int draining; /* atomic */
    int64_t started_wall_us;
    struct pipeline pipelines[2]; /* the public listener's stages, the admin listener's */
    void *ctx[SL_MAX_MODULES];    /* each module's process-wide state */
};

/* A new hold of <cfg> (taking the caller's reference) for <w>; modules set
 * up their per-snapshot state. */
struct wcfg *wcfg_new(struct worker *w, struct config *cfg);
/* The worker's current snapshot, counted as used until wcfg_release. */
struct wcfg *wcfg_acquire(struct worker *w);
void wcfg_release(struct wcfg *h);
/* The worker moved on: <h> is freed once its last user leaves. */
void wcfg_retire(struct wcfg *h);

/* A fresh request id (32 hex digits) into <out> (>= 33 bytes). */
void worker_request_id(struct worker *w, char *out);

/* A worker-level handle <h> that must be closed before the loop can end
 * (a module's timer): closed now, counted until its close callback. */
void worker_close_handle(struct worker *w, uv_handle_t *h);

#endif
