#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H
/* Worker threads (one libuv loop each, SO_REUSEPORT listeners) and the
 * gateway process that owns them, the config snapshot and reloads. */

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <uv.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "util/buf.h"

struct conn;
struct metrics;
struct px_pool;
struct lim_store;
struct viol_table;
struct cache;
struct auth_waiter;
struct rds;
struct fleet;

/* A worker's hold on one config snapshot. Exchanges count themselves in
 * <users> (worker-local, so no atomics on the hot path); when the worker has
 * moved to a newer snapshot and the last user leaves, the hold is freed and
 * the snapshot's reference dropped. Upstream keep-alive pools belong to the
 * hold, so a reload starts fresh pools for the new upstream table. */
struct wcfg {
    struct config *cfg;
    struct worker *worker;
    unsigned users;
    bool retired;
    struct px_pool **pools; /* [upstream][server] */
    unsigned *rr;           /* round-robin cursor per upstream */
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
    uv_timer_t sweep_timer; /* drops expired rate-limit counters */
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
    int open_handles; /* worker-level handles still to close at shutdown */
    bool draining, stopped;

    struct metrics *metrics;
    struct rds *redis;       /* backend redis: this worker's connection (store/fleet.h) */
    struct keyring *keyring; /* this worker's view of the keys; see keyring_sync */
    uint64_t keyring_gen;
    struct auth_waiter *key_waiters; /* requests whose key is unknown, until the store says */
    bool key_recheck;                /* a question to the store is in flight */
    struct buf log;                  /* access log lines not yet written */
    int64_t log_sec;                 /* second of the cached timestamp below */
    char log_time[40];
    uint64_t rid_state;
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
    struct lim_store *limiter;     /* rate-limit counters, shared by all workers */
    struct viol_table *violations; /* 429s per identity */
    struct cache *cache;           /* the response cache, shared by all workers */
    struct auth_ctx auth;          /* API keys: store writer and keyring */
    struct fleet *fleet;           /* backend redis: connections, heartbeat, events; else NULL */
};

/* Run the gateway on the config at <path> until SIGTERM/SIGINT; the exit code. */
int gw_serve(const char *path);
/* Load the config file again and switch every worker to it. 0, or -1 with
 * *<err> (malloc'd "FILE:LINE: message" lines) and the old config kept. */
int gw_reload(struct gateway *gw, char **err);

/* The worker's current snapshot, counted as used until wcfg_release. */
struct wcfg *wcfg_acquire(struct worker *w);
void wcfg_release(struct wcfg *h);

/* A fresh request id (32 hex digits) into <out> (>= 33 bytes). */
void worker_request_id(struct worker *w, char *out);

/* Called by conn.c when a connection closes; lets a draining worker stop. */
void worker_conn_closed(struct worker *w);

#endif
