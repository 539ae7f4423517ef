#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H
/* Client connections: reading and parsing requests (llhttp), creating
 * exchanges, and writing responses back in order. */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pipeline/exchange.h"

struct worker;

enum conn_kind { CONN_PUBLIC, CONN_ADMIN };

/* Accept a pending connection on <server> for worker <w>. */
void conn_accept(struct worker *w, uv_stream_t *server, enum conn_kind kind);

/* Close <c> at once (drain timeout, shutdown). */
void conn_close(struct conn *c);
/* Close <c> if it has no exchange in progress; otherwise make its current
 * response the last one (Connection: close). */
void conn_close_when_idle(struct conn *c);

/* Flush output and take up parked input of every connection touched in this
 * loop iteration (called from the worker's uv_check). */
void conn_run_dirty(struct worker *w);

/* Free the input buffers worker <w> keeps for reuse (after its loop ended). */
void conn_worker_release(struct worker *w);

/* The next connection in its worker's list (for walking it while closing). */
struct conn *conn_next(struct conn *c);

/* The client's address as text. */
const char *conn_peer_ip(const struct conn *c);

#endif
