#ifndef SLUICE_PROXY_HEALTH_H
#define SLUICE_PROXY_HEALTH_H
/* Upstream servers as the whole gateway sees them (shared by the workers):
 * their open connections (max_connections) and their health — active checks
 * (`health.path` every `health.interval`, from worker 0) and passive
 * ejection (consecutive connect failures and 5xx answers of real requests).
 * A server that is down gets no requests; an upstream with no server up
 * answers 502 at once. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "conf/walker.h"
#include "pipeline/gateway.h"
#include "util/buf.h"

/* One upstream (by name): how many requests of all workers wait for a
 * connection to one of its servers. */
struct px_group {
    char name[CFG_NAME_MAX + 1];
    int index;   /* of the workers' queues */
    int waiting; /* atomic */
};

/* One upstream server: found by upstream name and address, so a reload
 * that keeps both keeps its counts and its health. */
struct px_server {
    char addr[128];
    struct px_group *group;
    int index;                /* in the gateway's table: px_worker.idle */
    int open;                 /* atomic: connections open or opening, all workers */
    int down;                 /* atomic: 1 while unhealthy or ejected */
    int fails, oks;           /* atomic: consecutive failures and (while down) successes */
    int64_t retry_at_ms;      /* atomic: passive ejection: when a request may try it again */
    int64_t suspect_until_ms; /* atomic: see px_server_suspect */
    uint64_t checks_ok, checks_failed; /* atomic: active checks */
    /* The active check in flight (worker 0's loop only). */
    bool checking;
    uint64_t next_check_ms;
};

/* `health` of an upstream (proxy/conf.h px_upstream_conf.health). */
struct px_health_conf {
    bool enabled; /* the section is present */
    char *path;   /* active checks: GET <path>; NULL: passive only */
    int64_t interval_ms;
    int64_t timeout_ms;
    int unhealthy; /* consecutive failures that take a server down */
    int healthy;   /* consecutive check successes that bring it back */
};

/* May a request go to <srv> now? */
bool px_health_usable(const struct px_server *srv, const struct px_health_conf *h);

/* A real request's outcome on <srv> (passive health): <ok> false for a
 * failed connect or a 5xx answer. */
void px_health_report(struct px_server *srv, const struct px_health_conf *h, bool ok);

/* A connection to <srv> failed before it answered (refused, reset,
 * closed): for PX_SUSPECT_MS, new requests prefer the upstream's other
 * servers, with or without `health`. A dying server keeps accepting
 * into its backlog for a few ms; without this, the requests the queue
 * hands it then are lost too. */
#define PX_SUSPECT_MS 1000
void px_server_suspect(struct px_server *srv);
/* It answered: no longer suspect. */
void px_server_answered(struct px_server *srv);
bool px_server_is_suspect(const struct px_server *srv);

/* Active checks of the servers of worker <w>'s config, from its loop
 * (worker 0): start and stop with the worker. */
struct px_checker;
struct px_checker *px_checker_start(struct worker *w);
/* On the loop thread when the worker stops (checks in flight are closed
 * by their own callbacks); px_checker_free once the loop has ended. */
void px_checker_stop(struct px_checker *c);
void px_checker_free(struct px_checker *c);

/* Server <s> of upstream <u> in snapshot <h> (proxy.c); NULL: not counted. */
struct px_server *px_server_of(const struct wcfg *h, int u, int s);

/* Prometheus text for <servers>. */
void px_health_metrics(struct px_server *const *servers, int n, struct buf *out);

#endif
