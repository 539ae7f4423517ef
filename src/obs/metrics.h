#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H
/* Per-worker counters: each worker is the only writer of its own (relaxed
 * atomic stores, no shared cache lines on the hot path); a scrape sums every
 * worker's counters into Prometheus text. */

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"

struct metrics;
struct exchange;
struct gateway;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

void metrics_exchange_begin(struct metrics *m);
/* Count <x> by route and status, and its duration. */
void metrics_exchange_end(struct metrics *m, const struct exchange *x);
/* The worker moved to a new config: forget cached counters keyed by routes. */
void metrics_forget_routes(struct metrics *m);
/* An upstream failure of <kind> (connect, connect_timeout, read_timeout, ...) on <upstream>. */
void metrics_upstream_error(struct metrics *m, const char *upstream, const char *kind);
void metrics_connection_rejected(struct metrics *m);
/* A cache lookup outcome: "hit", "miss", "stale" or "bypass". */
void metrics_cache_result(struct metrics *m, const char *result);
/* What the authentication and authorization stages made of a request. */
enum metrics_auth {
    METRICS_AUTH_API_KEY,   /* identified by an API key */
    METRICS_AUTH_JWT,       /* identified by a JWT */
    METRICS_AUTH_INVALID,   /* 401: credentials sent but not valid */
    METRICS_AUTH_MISSING,   /* 401: none sent on a route that requires them */
    METRICS_AUTH_FORBIDDEN, /* 403: a scope missing */
    METRICS_AUTH_N
};
void metrics_auth(struct metrics *m, enum metrics_auth what);
/* Redis could not decide a request; <mode> is what on_failure did:
 * "local", "allow" or "deny". */
void metrics_limit_fallback(struct metrics *m, const char *mode);
/* A rate-limit decision on <route>. */
void metrics_limit_decision(struct metrics *m, const char *route, bool allowed);

/* Prometheus text exposition of all workers of <gw> appended to <out>. */
void metrics_render(struct gateway *gw, struct buf *out);

#endif
