#ifndef SLUICE_QUOTA_ALERT_H
#define SLUICE_QUOTA_ALERT_H
/* Quota threshold alerts (SPEC 6.3). The request path raises one when a
 * request crosses a threshold of `quota_alerts.thresholds` (quota_decide's
 * crossed bits); the decision is atomic (the memory store's lock, the
 * Redis script), so each crossing is seen by exactly one request of one
 * gateway, and raised once.
 *
 * An alert is a log line, an event on GET /events ("quota.threshold") and,
 * with `quota_alerts.webhook`, a signed POST delivered off the request path
 * and retried for 24 hours (quota/delivery.h). Its id is a hash of what
 * makes it unique (identity, quota, threshold, period), so raising the same
 * alert again (another gateway after a Redis failover, a retry) gives the
 * same id: the outbox keeps it once, and a receiver can tell a repeat.
 *
 * The alert module (quota_alerts_module) owns the delivery thread; it is a
 * module of its own so that it has its own ctx[] slots beside the quota
 * module's counting. */

#include <stdint.h>

#include "pipeline/gateway.h"
#include "quota/period.h"
#include "util/buf.h"

/* Hex digits of an alert's id: 128 bits of SHA-256. */
#define QUOTA_ALERT_ID_LEN 32

struct quota_alert {
    const char *identity;                          /* "key:abc", "ip:203.0.113.7" */
    const char *key_id, *owner;                    /* NULL when none */
    enum quota_span quota;                         /* QUOTA_DAILY / QUOTA_MONTHLY */
    int threshold;                                 /* percent */
    int64_t used, limit, period_start, period_end; /* UTC seconds */
};

/* Raises alert <a> on gateway <gw>: the event goes to GET /events at once,
 * the log line and the webhook to the alert thread. Called on a worker's
 * loop on the request path: never blocks, never touches the disk, copies
 * what it needs from <a>. */
void quota_alert_raise(struct gateway *gw, const struct quota_alert *a);

/* "daily" or "monthly". */
const char *quota_span_name(enum quota_span s);
/* <a>'s id into <out>: the first 16 bytes of
 * SHA-256("<identity>|<quota>|<threshold>|<period_start>") in lowercase hex.
 * Only the identity may hold a '|', and it comes first, so two different
 * alerts never hash the same text. */
void quota_alert_id(const struct quota_alert *a, char out[QUOTA_ALERT_ID_LEN + 1]);
/* <a>'s JSON body with id <id> appended to <out> (SPEC 6.3's fields in its
 * order; key_id and owner null when none), NUL-terminated, no newline. */
void quota_alert_body(const struct quota_alert *a, const char *id, struct buf *out);

#endif
