#ifndef SLUICE_QUOTA_DELIVERY_H
#define SLUICE_QUOTA_DELIVERY_H
/* The alert thread (SPEC 6.3): what happens to an alert after the request
 * that raised it, off every worker's loop.
 *
 * Workers push alerts (an id and the JSON body) into a bounded queue and
 * never wait. The thread writes each as one log line on stderr and, when a
 * webhook is configured, stores it in the outbox (quota/outbox.h, in the
 * gateway's SQLite file, through a connection of its own) before trying to
 * POST it; then it sends what is due, one at a time, signed
 * (quota/signature.h), and marks each delivered (a 2xx) or failed (anything
 * else, no connection, no answer within the timeout: retried 1 s, 2 s, 4 s
 * ... at most an hour apart, given up 24 hours after the alert was raised).
 *
 * Stopping wakes the thread (and cuts short a POST in progress), writes
 * what is still queued to the outbox and joins: what was not delivered is
 * sent by the next start, which reads the same file. A POST cut short may
 * have reached the receiver, which then sees it again: receivers tell by
 * the alert's id. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct quota_delivery;

/* The webhook in force: <*url> and <*secret> (malloc'd, the caller's to
 * free) and true, or false when none is configured now. Called on the
 * thread before each round, so a reload takes effect at the next one. */
typedef bool (*quota_target_fn)(void *arg, char **url, char **secret);

struct quota_delivery_opts {
    const char *data_dir; /* the gateway's store.data_dir (store/db.h) */
    quota_target_fn target;
    void *target_arg;
    /* UTC seconds: outbox times and the signature's t=; NULL: the wall
     * clock. Tests pass their own and call quota_delivery_kick. */
    int64_t (*now)(void *arg);
    void *now_arg;
    int timeout_ms; /* per POST; 0: QUOTA_WEBHOOK_TIMEOUT_MS */
    FILE *log;      /* the log lines; NULL: stderr */
};

/* Counts since the start, for metrics and tests. */
struct quota_delivery_stats {
    uint64_t raised;    /* taken from the queue (each logged) */
    uint64_t dropped;   /* the queue was full */
    uint64_t stored;    /* new in the outbox (a repeated id is not) */
    uint64_t delivered; /* answered 2xx */
    uint64_t failed;    /* attempts that did not deliver */
    uint64_t given_up;  /* removed after 24 hours of failures */
};

/* Starts the thread. When a webhook is configured already, the outbox is
 * opened first, so that a data_dir that cannot hold it stops the gateway
 * at start: NULL and *<err> (malloc'd) then. <o>'s strings are copied. */
struct quota_delivery *quota_delivery_start(const struct quota_delivery_opts *o, char **err);
/* Queues the alert <id> with body <body>/<len> (copied). Any thread; never
 * blocks. */
void quota_delivery_push(struct quota_delivery *d, const char *id, const char *body, size_t len);
/* Makes the thread look again (the clock moved, the config changed). */
void quota_delivery_kick(struct quota_delivery *d);
void quota_delivery_stats(struct quota_delivery *d, struct quota_delivery_stats *out);
/* Stops the thread as described above and frees <d>. */
void quota_delivery_stop(struct quota_delivery *d);

#endif
