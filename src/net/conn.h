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

/* Response streaming, used by whoever produces a response for <x>. The head
 * is built from <status>, <headers> (already free of hop-by-hop fields) and
 * the exchange's extra headers; <content_length> -1 means unknown length
 * (chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0). <no_body>: HEAD,
 * 204, 304. */
void conn_response_head(struct exchange *x, int status, const struct sl_headers *headers,
                        int64_t content_length, bool no_body);
void conn_response_body(struct exchange *x, const char *data, size_t len);
/* The response is complete. */
void conn_response_end(struct exchange *x);
/* The response cannot be completed (upstream died mid-body): the client
 * sees the connection close without a proper end. */
void conn_response_abort(struct exchange *x);
/* "HTTP/1.1 100 Continue" when the client asked for it and the body is now wanted. */
void conn_send_continue(struct exchange *x);
/* Bytes queued toward the client and not yet written. */
size_t conn_pending_output(const struct exchange *x);

/* Stop / start reading the request body (backpressure from the upstream). */
void conn_pause_body(struct exchange *x);
void conn_resume_body(struct exchange *x);

/* Flush output and take up parked input of every connection touched in this
 * loop iteration (called from the worker's uv_check). */
void conn_run_dirty(struct worker *w);

/* The next connection in its worker's list (for walking it while closing). */
struct conn *conn_next(struct conn *c);

/* The client's address as text. */
const char *conn_peer_ip(const struct conn *c);

#endif
