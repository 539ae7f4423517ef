#ifndef SLUICE_ADMIN_EVENTS_H
#define SLUICE_ADMIN_EVENTS_H
/* The event stream of the admin API (SPEC 8, GET /events): Server-Sent
 * Events of what happens in this gateway (quota alerts, key changes; bans
 * and the stats tick later).
 *
 * Any thread publishes an event (a type and a JSON text); each worker with
 * stream clients gets it through its own uv_async and a bounded queue, and
 * writes it to its clients on its loop:
 *
 *     event: quota.threshold
 *     data: {"type": "quota.threshold", ...}
 *
 * A client whose unsent output grows past SL_EVENTS_CLIENT_MAX_PENDING
 * (a reader that stopped reading) is disconnected rather than buffered
 * without end; a worker whose queue is full (its loop stalled) drops
 * events and counts them (sluice_events_dropped_total). A comment line
 * (": ping") every SL_EVENTS_PING_MS keeps proxies from closing an idle
 * stream. The client going away, or the gateway draining, ends its stream
 * and frees what it held. */

#include <stddef.h>

#include "pipeline/module.h"

/* Sends event <type> ("quota.threshold", letters, digits, '.', '_', '-')
 * with the JSON text <json>/<len> (copied) to every stream client of
 * <gw>. Any thread, from init_worker until dispose_worker; never blocks on
 * I/O. Cheap when nobody listens. */
void events_publish(struct gateway *gw, const char *type, const char *json, size_t len);

/* The admin module's hooks and its GET /events handler (admin/admin.c). */
void events_init_worker(struct worker *w);
void events_stop_worker(struct worker *w);
void events_dispose_worker(struct worker *w);
void events_admin_stream(struct exchange *x, const struct sl_admin_call *call);
void events_metrics(struct gateway *gw, struct buf *out);

#endif
