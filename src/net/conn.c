#include "net/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <strings.h>
#include <llhttp.h>

#include "net/deadline.h"
#include "net/worker.h"
#include "obs/accesslog.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"
#include "util/url.h"

/* Where a connection stands between requests; transitions happen in
 * conn_set_state() only. */
enum conn_state {
    CS_IDLE,    /* waiting for the first byte of a request */
    CS_HEAD,    /* reading a request's headers (header timeout runs) */
    CS_BODY,    /* exchange running, request body still arriving */
    CS_WAIT,    /* request read, response in progress */
    CS_LINGER,  /* last response written, write side shut: discarding input */
    CS_CLOSING, /* uv_close issued; memory goes in the close callback */
};

/* What a paused parser stopped for (llhttp callbacks only record; the work
 * happens in conn_process_input, outside the parser). */
enum conn_event { EV_NONE, EV_HEADERS, EV_MESSAGE };

/* A connection's input side while it is in use: the parser, the bytes read
 * and not parsed yet, and the header being parsed. Taken from the worker's
 * pool when bytes arrive (conn_alloc) and given back when the connection
 * stands between requests with nothing unparsed, so that an idle keep-alive
 * connection holds none of it: thousands of idle clients cost their struct
 * conn, not 64 KiB each. The parser starts afresh with each buffer, which is
 * what llhttp does between two requests anyway. */
struct conn_in {
    struct conn_in *next_free; /* worker->in_pool */
    llhttp_t parser;
    size_t rlen; /* unparsed input at data[0..rlen) */
    /* The header being parsed. Kept allocated while the buffer is pooled:
     * each is bounded by server.max_header_bytes, and the pool by
     * SL_READ_POOL. */
    struct buf field, value;
    size_t header_bytes;
    uint32_t chunk_ext_bytes; /* of the current chunk's extensions (SL_MAX_CHUNK_EXT) */
    const char *error_msg;
    int error_status; /* set by a callback that failed the request */
    int n_cl, n_te, n_host;
    int value_spans;          /* spans of the header value being parsed */
    bool value_split_by_read; /* the last span ended where the input did */
    char data[SL_READ_BUF];
};

/* One per client connection, kept small: an idle keep-alive connection
 * costs this struct and nothing else (the input buffer, the output buffer
 * and the shutdown request exist only while in use). */
struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uint64_t deadline; /* loop ms; see net/deadline.h */
    struct worker *w;
    struct conn *prev, *next; /* worker->conns */
    struct conn *dirty_next;
    struct conn_in *in; /* NULL between requests */
    struct exchange *x;
    struct buf out; /* response bytes not handed to libuv yet; freed once flushed when idle */
    enum conn_kind kind;
    enum conn_state state;
    enum conn_event event;
    int pending_closes;
    bool dirty, need_process;
    bool reading, body_paused, in_process;
    bool resp_chunked, resp_no_body, close_after, continue_sent;
    uint16_t local_port;            /* of the listener, for X-Forwarded-Port */
    char peer_ip[INET6_ADDRSTRLEN]; /* inet_ntop's longest (no zone: it gives none) */
};

static void conn_process_input(struct conn *c);
static const llhttp_settings_t *conn_parser_settings(void);
static void conn_start_reading(struct conn *c);
static void conn_fail(struct conn *c, int status, const char *msg);
static void conn_mark_dirty(struct conn *c);
static void conn_exchange_end(struct conn *c);
static bool conn_exchange_finished(const struct conn *c);

static const char *conn_state_name(enum conn_state s)
{
    static const char *names[] = {"idle", "head", "body", "wait", "linger", "closing"};
    return names[s];
}

/* The only place a connection changes state; asserts the move is legal. */
static void conn_set_state(struct conn *c, enum conn_state to)
{
    enum conn_state from = c->state;
    bool ok = to == CS_CLOSING || (to == CS_LINGER && from != CS_LINGER) ||
              (from == CS_IDLE && to == CS_HEAD) ||
              (from == CS_HEAD && (to == CS_BODY || to == CS_WAIT)) ||
              (from == CS_BODY && to == CS_WAIT) ||
              ((from == CS_WAIT || from == CS_BODY || from == CS_HEAD) && to == CS_IDLE);
    if (!ok) {
        fprintf(stderr, "sluice: bad connection state change %s -> %s\n", conn_state_name(from),
                conn_state_name(to));
        abort();
    }
    c->state = to;
}

/* ---- input buffers ------------------------------------------------------------- */

/* An input buffer for <c> from its worker's pool (or new), with a fresh parser. */
static struct conn_in *conn_in_take(struct conn *c)
{
    struct worker *w = c->w;
    struct conn_in *in = w->in_pool;
    if (in) {
        w->in_pool = in->next_free;
        w->in_pool_len--;
    } else {
        in = sl_malloc(sizeof(*in));
        in->field = (struct buf){0};
        in->value = (struct buf){0};
    }
    in->next_free = NULL;
    in->rlen = 0;
    in->header_bytes = 0;
    in->chunk_ext_bytes = 0;
    in->field.len = in->value.len = 0;
    in->error_status = 0;
    in->error_msg = NULL;
    llhttp_init(&in->parser, HTTP_REQUEST, conn_parser_settings());
    in->parser.data = c;
    return in;
}

static void conn_in_free(struct conn_in *in)
{
    buf_release(&in->field);
    buf_release(&in->value);
    free(in);
}

/* Back to <w>'s pool, or freed when the pool holds SL_READ_POOL already. */
static void conn_in_put(struct worker *w, struct conn_in *in)
{
    if (w->in_pool_len >= SL_READ_POOL) {
        conn_in_free(in);
        return;
    }
    in->next_free = w->in_pool;
    w->in_pool = in;
    w->in_pool_len++;
}

void conn_worker_release(struct worker *w)
{
    buf_pool_clear(&w->out_pool);
    while (w->in_pool) {
        struct conn_in *in = w->in_pool;
        w->in_pool = in->next_free;
        conn_in_free(in);
    }
    w->in_pool_len = 0;
}

/* Give <c>'s input buffer back when nothing in it is needed: no unparsed
 * bytes, and the parser between two requests -- idle (unless closing after
 * this response: the parser may be mid-request then), or waiting for a
 * response after the whole request was read. Nothing points into the
 * buffer then: the callbacks copied what they kept. */
static void conn_in_release_unused(struct conn *c)
{
    struct conn_in *in = c->in;
    if (!in || in->rlen)
        return;
    if (c->state == CS_WAIT || (c->state == CS_IDLE && !c->close_after)) {
        c->in = NULL;
        conn_in_put(c->w, in);
    }
}

static size_t conn_rlen(const struct conn *c)
{
    return c->in ? c->in->rlen : 0;
}

/* ---- timers ---------------------------------------------------------------- */

static void conn_on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!deadline_due(t, c->deadline, conn_on_timer))
        return;
    switch (c->state) {
    case CS_HEAD:
        conn_fail(c, 408, "the request headers did not arrive in time");
        break;
    case CS_IDLE:
    case CS_BODY: /* a client that stalls mid-body is gone for our purposes */
    case CS_LINGER:
        conn_close(c);
        break;
    default:
        break;
    }
}

/* Arm the timeout the current state calls for: the header timeout runs from a
 * request's first byte and is not extended by further bytes (slowloris); the
 * idle timeout is extended by every read (<restart>). */
static void conn_arm_timer(struct conn *c, bool restart)
{
    const struct cfg_timeouts *to = &c->w->cur->cfg->server.timeouts;
    switch (c->state) {
    case CS_IDLE:
    case CS_BODY:
        if (restart || c->deadline == DEADLINE_NONE)
            deadline_set(&c->timer, &c->deadline, (uint64_t)to->idle_ms, conn_on_timer);
        break;
    case CS_HEAD:
        if (restart || c->deadline == DEADLINE_NONE)
            deadline_set(&c->timer, &c->deadline, (uint64_t)to->header_ms, conn_on_timer);
        break;
    default:
        deadline_clear(&c->deadline);
        break;
    }
}

/* ---- closing ------------------------------------------------------------------ */

static void conn_on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->pending_closes > 0)
        return;
    struct worker *w = c->w;
    buf_pool_give(&w->out_pool, &c->out);
    if (c->in)
        conn_in_put(w, c->in);
    free(c);
    worker_conn_closed(w);
}

/* Free <x> after running its end hooks; <aborted>: the client went away. */
static void conn_exchange_free(struct conn *c, struct exchange *x, bool aborted)
{
    if (aborted && !x->response_done && !x->response_started)
        x->status = 499; /* as nginx logs it: the client closed before the response */
    x->conn = NULL;
    accesslog_exchange(c->w, x);
    if (!x->admin) {
        metrics_exchange_end(c->w->metrics, x);
        pipeline_finish(x);
    }
    exchange_free(x);
}

void conn_close(struct conn *c)
{
    if (c->state == CS_CLOSING)
        return;
    struct exchange *x = c->x;
    c->x = NULL;
    conn_set_state(c, CS_CLOSING);
    if (x)
        conn_exchange_free(c, x, true);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->w->n_conns--;
    __atomic_fetch_sub(&c->w->gw->n_conns, 1, __ATOMIC_RELAXED);
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
}

void conn_close_when_idle(struct conn *c)
{
    if (c->state == CS_IDLE && c->out.len == 0 && c->tcp.write_queue_size == 0) {
        conn_close(c);
        return;
    }
    c->close_after = true;
    /* A stream would hold the drain until its timeout: end it properly. */
    if (c->x && c->x->stream && c->x->response_started)
        exchange_send_end(c->x);
}

/* How long a closing connection keeps discarding what the client still
 * sends (nginx's lingering close), so the kernel does not answer that data
 * with a reset that could destroy the response we just wrote (a 413 or 400
 * sent while the client is still uploading). */
#define CONN_LINGER_MS 2000

/* Called once per request, also when the handle closes first (UV_ECANCELED):
 * the request is freed here. The read side (EOF) or the timer ends the
 * lingering. */
static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
    free(req);
}

static void conn_linger(struct conn *c)
{
    conn_set_state(c, CS_LINGER);
    uv_shutdown_t *req = sl_malloc(sizeof(*req)); /* only lingering connections need one */
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0) {
        free(req);
        conn_close(c);
        return;
    }
    if (c->in)
        c->in->rlen = 0;
    deadline_set(&c->timer, &c->deadline, CONN_LINGER_MS, conn_on_timer);
    conn_start_reading(c);
}

/* ---- writing ------------------------------------------------------------------ */

static void conn_on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    free(req);
    if (c->state == CS_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->tcp.write_queue_size == 0 && c->out.len == 0 && c->close_after && !c->x) {
        conn_linger(c);
        return;
    }
    if (c->x && c->x->on_client_drain && c->tcp.write_queue_size < SL_BODY_HIGH_WATER / 2)
        c->x->on_client_drain(c->x);
}

/* Hand the buffered output to the socket: try a direct write first (no
 * request object, no copy), queue the rest. */
static void conn_flush(struct conn *c)
{
    if (c->state == CS_CLOSING || c->state == CS_LINGER)
        return;
    size_t off = 0;
    if (c->out.len && c->tcp.write_queue_size == 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    if (off < c->out.len) {
        size_t rest = c->out.len - off;
        uv_write_t *req = sl_malloc(sizeof(*req) + rest);
        char *data = (char *)(req + 1);
        memcpy(data, c->out.data + off, rest);
        req->data = c;
        uv_buf_t b = uv_buf_init(data, (unsigned)rest);
        if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_written) < 0) {
            free(req);
            c->out.len = 0;
            conn_close(c);
            return;
        }
    }
    c->out.len = 0;
    if (!c->x)
        buf_pool_give(&c->w->out_pool, &c->out); /* an idle connection holds no buffer */
    if (c->tcp.write_queue_size == 0 && c->close_after && !c->x) {
        conn_linger(c);
        return;
    }
    /* Written straight away: no write callback will say so to a paused producer. */
    if (c->x && c->x->on_client_drain && c->tcp.write_queue_size < SL_BODY_HIGH_WATER / 2)
        c->x->on_client_drain(c->x);
}

static void conn_mark_dirty(struct conn *c)
{
    if (c->dirty || c->state == CS_CLOSING)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

/* Runs once per loop iteration after I/O (uv_check): every response written
 * during the iteration goes out in as few syscalls as possible, and
 * pipelined requests parked behind a finished response are taken up outside
 * any upstream callback. */
void conn_run_dirty(struct worker *w)
{
    while (w->dirty) {
        struct conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        if (c->state == CS_CLOSING)
            continue;
        if (conn_exchange_finished(c))
            conn_exchange_end(c);
        if (c->state == CS_CLOSING)
            continue;
        if (c->need_process) {
            c->need_process = false;
            conn_process_input(c);
        }
        conn_flush(c);
    }
}

static size_t conn_pending_output(const struct exchange *x)
{
    const struct conn *c = x->conn;
    return c ? c->out.len + c->tcp.write_queue_size : 0;
}

static void conn_append_header(struct buf *b, const char *name, size_t nlen, const char *value,
                               size_t vlen)
{
    buf_append(b, name, nlen);
    buf_append(b, ": ", 2);
    buf_append(b, value, vlen);
    buf_append(b, "\r\n", 2);
}

static void conn_response_head(struct exchange *x, int status, const struct sl_headers *headers,
                               int64_t content_length, bool no_body)
{
    struct conn *c = x->conn;
    if (!c)
        return;
    if (!x->client_keep_alive || c->w->draining)
        c->close_after = true;
    c->resp_no_body = no_body;
    c->resp_chunked = false;
    if (!no_body && content_length < 0) {
        if (x->http_minor >= 1)
            c->resp_chunked = true;
        else
            c->close_after = true; /* HTTP/1.0: the end of the body is the close */
    }

    struct buf *b = &c->out;
    buf_pool_take(&c->w->out_pool, b);
    buf_append_str(b, "HTTP/1.1 ");
    buf_append_u64(b, (uint64_t)status);
    buf_append(b, " ", 1);
    buf_append_str(b, http_reason(status));
    buf_append(b, "\r\n", 2);
    for (int i = 0; headers && i < headers->n; i++) {
        const struct sl_header *h = &headers->v[i];
        conn_append_header(b, h->name, h->name_len, h->value, h->value_len);
    }
    for (int i = 0; i < x->resp_extra.n; i++) {
        const struct sl_header *h = &x->resp_extra.v[i];
        conn_append_header(b, h->name, h->name_len, h->value, h->value_len);
    }
    conn_append_header(b, "X-Request-Id", 12, x->request_id, strlen(x->request_id));
    if (content_length >= 0 && (!no_body || x->method == HTTP_HEAD)) {
        buf_append_str(b, "Content-Length: ");
        buf_append_u64(b, (uint64_t)content_length);
        buf_append(b, "\r\n", 2);
    }
    if (c->resp_chunked)
        buf_append_str(b, "Transfer-Encoding: chunked\r\n");
    if (c->close_after)
        buf_append_str(b, "Connection: close\r\n");
    else if (x->http_minor == 0)
        buf_append_str(b, "Connection: keep-alive\r\n");
    buf_append(b, "\r\n", 2);
    conn_mark_dirty(c);
}

static void conn_response_body(struct exchange *x, const char *data, size_t len)
{
    struct conn *c = x->conn;
    if (!c || c->resp_no_body)
        return;
    if (c->resp_chunked) {
        char hex[20];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        buf_append(&c->out, hex, (size_t)n);
        buf_append(&c->out, data, len);
        buf_append(&c->out, "\r\n", 2);
    } else {
        buf_append(&c->out, data, len);
    }
    x->bytes_out += len;
    /* Written in the check phase; producers watch conn_pending_output() and
     * stop reading their source while it is high. */
    conn_mark_dirty(c);
}

/* The exchange is over for this connection: log it, free it and take up the
 * next request (or close). */
static void conn_exchange_end(struct conn *c)
{
    struct exchange *x = c->x;
    c->x = NULL;
    conn_exchange_free(c, x, false);
    deadline_clear(&c->deadline);
    if (c->state != CS_CLOSING)
        conn_set_state(c, CS_IDLE);
    if (c->close_after) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        conn_mark_dirty(c); /* the flush closes it */
        return;
    }
    conn_arm_timer(c, true);
    if (c->in_process)
        return; /* the running conn_process_input loop goes on by itself */
    c->need_process = true;
    conn_mark_dirty(c);
}

static void conn_response_end(struct exchange *x)
{
    struct conn *c = x->conn;
    if (!c)
        return;
    if (c->resp_chunked)
        buf_append(&c->out, "0\r\n\r\n", 5);
    conn_mark_dirty(c);
    bool body_unread = !x->request_done && (x->content_length > 0 || x->chunked);
    if (body_unread)
        c->close_after = true; /* a body nobody will read leaves the connection unusable */
    /* The exchange is freed in conn_run_dirty (or by conn_on_message for a
     * request whose end is still to be parsed), never under the caller's feet:
     * stages and upstream callbacks may touch <x> after answering. */
}

/* Has <c>'s exchange nothing left to do? */
static bool conn_exchange_finished(const struct conn *c)
{
    return c->x && c->x->response_done && (c->x->request_done || c->close_after);
}

static void conn_response_abort(struct exchange *x)
{
    struct conn *c = x->conn;
    if (!c)
        return;
    conn_flush(c);
    conn_close(c);
}

static void conn_send_continue(struct exchange *x)
{
    struct conn *c = x->conn;
    if (!c || !x->expect_continue || c->continue_sent || x->response_started || x->request_done)
        return;
    c->continue_sent = true;
    buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    conn_mark_dirty(c);
}

/* ---- reading and parsing --------------------------------------------------------- */

static void conn_pause_body(struct exchange *x)
{
    struct conn *c = x->conn;
    if (!c || c->body_paused)
        return;
    c->body_paused = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void conn_resume_body(struct exchange *x)
{
    struct conn *c = x->conn;
    if (!c || !c->body_paused)
        return;
    c->body_paused = false;
    conn_start_reading(c);
    c->need_process = true;
    conn_mark_dirty(c);
}

/* A connection is the sink of its exchanges' responses. */
static const struct exchange_sink conn_sink = {
    .head = conn_response_head,
    .body = conn_response_body,
    .end = conn_response_end,
    .abort = conn_response_abort,
    .send_continue = conn_send_continue,
    .pending = conn_pending_output,
    .pause_body = conn_pause_body,
    .resume_body = conn_resume_body,
};

static struct exchange *conn_new_exchange(struct conn *c)
{
    bool admin = c->kind == CONN_ADMIN;
    struct exchange *x = exchange_new(c->w, &conn_sink, c, admin);
    if (!admin)
        metrics_exchange_begin(c->w->metrics);
    str_copy(x->peer_ip, sizeof(x->peer_ip), c->peer_ip);
    x->local_port = c->local_port;
    str_copy(x->client_ip, sizeof(x->client_ip), c->peer_ip);
    return x;
}

static int conn_cb_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    conn_set_state(c, CS_HEAD);
    conn_arm_timer(c, true);
    c->x = conn_new_exchange(c);
    c->in->header_bytes = 0;
    c->in->n_cl = c->in->n_te = c->in->n_host = 0;
    c->in->chunk_ext_bytes = 0;
    c->continue_sent = false;
    c->in->field.len = c->in->value.len = 0;
    c->in->value_spans = 0;
    return 0;
}

/* Counts header bytes against server.max_header_bytes; false when over. */
static bool conn_count_header_bytes(struct conn *c, size_t len)
{
    c->in->header_bytes += len;
    if (c->in->header_bytes > c->w->cur->cfg->server.max_header_bytes) {
        c->in->error_status = 431;
        c->in->error_msg = "the request header block is larger than server.max_header_bytes";
        return false;
    }
    return true;
}

static int conn_cb_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!conn_count_header_bytes(c, len))
        return -1;
    struct exchange *x = c->x;
    if (!x->method_name) { /* known from here on: log it even if the headers fail */
        x->method = llhttp_get_method(p);
        x->method_name = llhttp_method_name((llhttp_method_t)x->method);
    }
    x->target = arena_realloc(x->arena, x->target, x->target_len, x->target_len + len + 1);
    memcpy(x->target + x->target_len, at, len);
    x->target_len += len;
    x->target[x->target_len] = '\0';
    return 0;
}

static int conn_cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!conn_count_header_bytes(c, len))
        return -1;
    buf_append(&c->in->field, at, len);
    return 0;
}

/* llhttp accepts obs-fold (a header line continued on the next line after
 * whitespace) and hands the continuation over as a further value span. Two
 * spans of one value are legitimate only when a read boundary split them;
 * otherwise, or when a value starts with whitespace, it was folded: two
 * parsers could read such a header two ways, so it is refused. */
/* Does the first span of a value at <at> sit on a continuation line? llhttp
 * skips the whitespace of an empty first line ("Name:\r\n value"), so look
 * back: a line break before the value, with only blanks between, is a fold. */
static bool conn_follows_line_break(const struct conn *c, const char *at)
{
    const char *p = at;
    while (p > c->in->data && (p[-1] == ' ' || p[-1] == '\t'))
        p--;
    return p == at ? false : p > c->in->data && p[-1] == '\n';
}

static bool conn_is_folded(struct conn *c, const char *at, size_t len)
{
    bool continued = c->in->value.len > 0 || c->in->value_spans > 0;
    bool folded = continued ? !c->in->value_split_by_read : conn_follows_line_break(c, at);
    c->in->value_spans++;
    c->in->value_split_by_read = at + len == c->in->data + c->in->rlen;
    return folded;
}

static int conn_cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!conn_count_header_bytes(c, len))
        return -1;
    if (conn_is_folded(c, at, len)) {
        c->in->error_status = 400;
        c->in->error_msg = "obs-fold (a header continued on the next line) is not accepted";
        return -1;
    }
    buf_append(&c->in->value, at, len);
    return 0;
}

/* Rejects header values that could be read two ways by two parsers. */
static bool conn_value_is_clean(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n')
            return false;
    return true;
}

static int conn_cb_header_value_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct exchange *x = c->x;
    if (x->req_headers.n >= SL_MAX_HEADERS) {
        c->in->error_status = 431;
        c->in->error_msg = "too many request headers";
        return -1;
    }
    if (!conn_value_is_clean(c->in->value.data, c->in->value.len)) {
        c->in->error_status = 400;
        c->in->error_msg = "invalid character in a header value";
        return -1;
    }
    const char *name = c->in->field.data ? c->in->field.data : "";
    size_t nlen = c->in->field.len;
    if (c->state != CS_HEAD) {
        /* A trailer (llhttp reports them as headers after the body). It is
         * dropped when the body is re-framed; it must never join the
         * request's headers, which stages have already judged and the
         * proxy may not have sent yet: "Authorization" in a trailer would
         * otherwise reach the app. */
        c->in->field.len = c->in->value.len = 0;
        c->in->value_spans = 0;
        return 0;
    }
    if (str_ieq(name, nlen, "content-length"))
        c->in->n_cl++;
    else if (str_ieq(name, nlen, "transfer-encoding"))
        c->in->n_te++;
    else if (str_ieq(name, nlen, "host"))
        c->in->n_host++;
    conn_count_header_bytes(c, 4);
    sl_headers_add(x->arena, &x->req_headers, name, nlen,
                   c->in->value.data ? c->in->value.data : "", c->in->value.len);
    c->in->field.len = c->in->value.len = 0;
    c->in->value_spans = 0;
    return 0;
}

/* Request framing must be unambiguous before anything is forwarded: one
 * Content-Length, or Transfer-Encoding exactly "chunked", never both. */
static const char *conn_check_framing(struct conn *c, struct exchange *x)
{
    if (c->in->n_cl > 1)
        return "more than one Content-Length";
    if (c->in->n_te > 1)
        return "more than one Transfer-Encoding";
    if (c->in->n_cl && c->in->n_te)
        return "both Content-Length and Transfer-Encoding";
    if (c->in->n_te) {
        const struct sl_header *te = exchange_req_header(x, "transfer-encoding");
        if (!str_ieq(te->value, te->value_len, "chunked"))
            return "Transfer-Encoding other than chunked";
        if (x->http_minor == 0)
            return "Transfer-Encoding in an HTTP/1.0 request";
    }
    if (c->in->n_host > 1)
        return "more than one Host";
    if (!x->target)
        return "the request target must be a path";
    return NULL;
}

/* Absolute-form ("http://host/path?q", RFC 9112 3.2.2): the authority
 * replaces Host and the rest goes on in origin-form. False if <x>'s target
 * is not in that form. */
static bool conn_take_absolute_form(struct exchange *x)
{
    size_t skip = 0;
    if (x->target_len >= 7 && strncasecmp(x->target, "http://", 7) == 0)
        skip = 7;
    else if (x->target_len >= 8 && strncasecmp(x->target, "https://", 8) == 0)
        skip = 8;
    if (!skip)
        return false;
    const char *auth = x->target + skip;
    size_t alen = strcspn(auth, "/?");
    x->host = arena_strndup(x->arena, auth, alen);
    x->host_len = alen;
    const char *rest = auth + alen;
    size_t rlen = x->target_len - skip - alen;
    if (rlen == 0 || rest[0] == '?') {
        char *t = arena_alloc(x->arena, rlen + 2);
        t[0] = '/';
        memcpy(t + 1, rest, rlen);
        t[rlen + 1] = '\0';
        x->target = t;
        x->target_len = rlen + 1;
    } else {
        x->target = arena_strndup(x->arena, rest, rlen);
        x->target_len = rlen;
    }
    return true;
}

/* Splits the target into path and query and normalises the path (dot
 * segments, repeated slashes) so routing and the upstream see the same path;
 * the target forwarded is rebuilt from the normalised path. */
static const char *conn_split_target(struct exchange *x)
{
    const char *q = memchr(x->target, '?', x->target_len);
    size_t plen = q ? (size_t)(q - x->target) : x->target_len;
    char *path = arena_alloc(x->arena, plen + 2);
    if (url_normalize_path(x->target, plen, path, &x->path_len) != 0)
        return x->target[0] == '/' ? "the request path climbs above the root"
                                   : "the request target must be a path";
    x->path = path;
    size_t qlen = q ? x->target_len - plen : 0;
    if (x->path_len != plen || memcmp(path, x->target, plen) != 0) {
        char *t = arena_alloc(x->arena, x->path_len + qlen + 1);
        memcpy(t, path, x->path_len);
        if (qlen)
            memcpy(t + x->path_len, q, qlen);
        t[x->path_len + qlen] = '\0';
        x->target = t;
        x->target_len = x->path_len + qlen;
        q = qlen ? t + x->path_len : NULL;
    }
    if (q) {
        x->query = q + 1;
        x->query_len = qlen - 1;
    }
    return NULL;
}

static void conn_take_request_id(struct worker *w, struct exchange *x)
{
    const struct sl_header *h = exchange_req_header(x, "x-request-id");
    bool ok = h && h->value_len > 0 && h->value_len <= SL_MAX_REQUEST_ID;
    for (size_t i = 0; ok && i < h->value_len; i++)
        ok = h->value[i] > 0x20 && h->value[i] < 0x7f;
    if (ok) {
        memcpy(x->request_id, h->value, h->value_len);
        x->request_id[h->value_len] = '\0';
    } else {
        worker_request_id(w, x->request_id);
    }
}

static int conn_cb_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct exchange *x = c->x;
    x->method = llhttp_get_method(p);
    x->method_name = llhttp_method_name((llhttp_method_t)x->method);
    x->http_minor = llhttp_get_http_minor(p);
    if (llhttp_get_http_major(p) != 1) {
        c->in->error_status = 505;
        c->in->error_msg = "only HTTP/1.x is supported";
        return -1;
    }
    const char *why = conn_check_framing(c, x);
    if (why) {
        c->in->error_status = 400;
        c->in->error_msg = why;
        return -1;
    }
    if (x->method == HTTP_CONNECT) {
        c->in->error_status = 405;
        c->in->error_msg = "CONNECT is not supported";
        return -1;
    }
    const struct sl_header *h = exchange_req_header(x, "host");
    if (!conn_take_absolute_form(x) && h) {
        x->host = h->value;
        x->host_len = h->value_len;
    }
    if (!x->host && x->http_minor >= 1)
        why = "missing Host header";
    else if (x->host && !url_host_valid(x->host, x->host_len))
        why = "invalid Host header";
    if (!why)
        why = conn_split_target(x);
    if (why) {
        c->in->error_status = 400;
        c->in->error_msg = why;
        return -1;
    }
    x->chunked = c->in->n_te > 0;
    x->content_length = c->in->n_cl ? (int64_t)p->content_length : -1;
    x->client_keep_alive = llhttp_should_keep_alive(p);
    h = exchange_req_header(x, "expect");
    x->expect_continue = h && x->http_minor >= 1 && str_ieq(h->value, h->value_len, "100-continue");
    conn_take_request_id(c->w, x);

    uint64_t max_body = c->w->cur->cfg->server.max_body_bytes;
    if (x->content_length > 0 && (uint64_t)x->content_length > max_body) {
        c->in->error_status = 413;
        c->in->error_msg = "the request body is larger than server.max_body_bytes";
        return -1;
    }
    c->event = EV_HEADERS;
    return HPE_PAUSED;
}

static int conn_cb_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct exchange *x = c->x;
    x->body_bytes += len;
    if (x->body_bytes > c->w->cur->cfg->server.max_body_bytes) {
        c->in->error_status = 413;
        c->in->error_msg = "the request body is larger than server.max_body_bytes";
        return -1;
    }
    exchange_body_data(x, at, len, false);
    return 0;
}

/* Chunk extensions are meaningless to us (dropped when the body is
 * re-framed) but llhttp would read them without end: a 20 MB extension
 * was accepted. */
static int conn_cb_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->in->chunk_ext_bytes += (uint32_t)(len < SL_MAX_CHUNK_EXT ? len : SL_MAX_CHUNK_EXT);
    if (c->in->chunk_ext_bytes <= SL_MAX_CHUNK_EXT)
        return 0;
    c->in->error_status = 400;
    c->in->error_msg = "chunk extensions are limited to 4 KiB";
    return -1;
}

static int conn_cb_chunk_header(llhttp_t *p)
{
    struct conn *c = p->data;
    c->in->chunk_ext_bytes = 0;
    return 0;
}

static int conn_cb_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->event = EV_MESSAGE;
    return HPE_PAUSED;
}

/* Built once, read-only afterwards: shared by every worker's parsers. */
static llhttp_settings_t conn_settings;
static pthread_once_t conn_settings_once = PTHREAD_ONCE_INIT;

static void conn_settings_init(void)
{
    llhttp_settings_init(&conn_settings);
    conn_settings.on_message_begin = conn_cb_message_begin;
    conn_settings.on_url = conn_cb_url;
    conn_settings.on_header_field = conn_cb_header_field;
    conn_settings.on_header_value = conn_cb_header_value;
    conn_settings.on_header_value_complete = conn_cb_header_value_complete;
    conn_settings.on_headers_complete = conn_cb_headers_complete;
    conn_settings.on_body = conn_cb_body;
    conn_settings.on_message_complete = conn_cb_message_complete;
    conn_settings.on_chunk_extension_name = conn_cb_chunk_extension;
    conn_settings.on_chunk_extension_value = conn_cb_chunk_extension;
    conn_settings.on_chunk_header = conn_cb_chunk_header;
}

static const llhttp_settings_t *conn_parser_settings(void)
{
    pthread_once(&conn_settings_once, conn_settings_init);
    return &conn_settings;
}

/* Reply with a gateway error and close once it is written. */
static void conn_fail(struct conn *c, int status, const char *msg)
{
    c->close_after = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (!c->x) {
        c->x = conn_new_exchange(c);
        if (c->state == CS_IDLE)
            conn_set_state(c, CS_HEAD);
    }
    struct exchange *x = c->x;
    if (x->response_done) {
        /* Answered already (a 429 before the body, say): the broken rest of
         * the request only ends the connection, gracefully (lingering). */
        conn_mark_dirty(c);
        return;
    }
    if (x->response_started) {
        conn_response_abort(x);
        return;
    }
    if (!x->request_id[0])
        worker_request_id(c->w, x->request_id);
    if (!x->method_name) {
        x->method_name = "-";
        x->http_minor = 1;
    }
    x->client_keep_alive = false;
    exchange_respond_error(x, status, msg);
}

/* Turn an llhttp error into the response the client gets. */
static void conn_parse_error(struct conn *c, llhttp_errno_t err)
{
    if (c->in->error_status) {
        conn_fail(c, c->in->error_status, c->in->error_msg);
        return;
    }
    if (c->state == CS_IDLE && c->in->rlen == 0) {
        conn_close(c);
        return;
    }
    const char *reason = llhttp_get_error_reason(&c->in->parser);
    conn_fail(c, 400, reason && *reason ? reason : llhttp_errno_name(err));
}

static void conn_on_headers(struct conn *c)
{
    struct exchange *x = c->x;
    conn_set_state(c, CS_BODY);
    conn_arm_timer(c, true);
    exchange_run(x);
}

static void conn_on_message(struct conn *c)
{
    struct exchange *x = c->x;
    x->request_done = true;
    if (c->state == CS_BODY)
        conn_set_state(c, CS_WAIT);
    conn_arm_timer(c, false);
    exchange_body_data(x, NULL, 0, true);
    if (conn_exchange_finished(c))
        conn_exchange_end(c);
}

/* Parse what is buffered, one event at a time, until input runs out or the
 * current exchange must finish first (pipelined requests wait their turn). */
static void conn_process_input(struct conn *c)
{
    c->in_process = true;
    /* After the headers event the parser may still owe us the end of a
     * bodyless request, which needs no further input: one more pass then. */
    bool owed = false;
    while (c->in && c->state != CS_CLOSING && (c->in->rlen > 0 || owed)) {
        if (c->x ? c->x->request_done : c->close_after)
            break;
        if (c->body_paused)
            break;
        c->event = EV_NONE;
        llhttp_errno_t err = llhttp_execute(&c->in->parser, c->in->data, c->in->rlen);
        size_t used = c->in->rlen;
        if (err == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->in->parser) - c->in->data);
            llhttp_resume(&c->in->parser);
        } else if (err != HPE_OK) {
            conn_parse_error(c, err);
            break;
        }
        memmove(c->in->data, c->in->data + used, c->in->rlen - used);
        c->in->rlen -= used;
        owed = c->event == EV_HEADERS;
        if (c->event == EV_HEADERS)
            conn_on_headers(c);
        else if (c->event == EV_MESSAGE)
            conn_on_message(c);
    }
    c->in_process = false;
    if (c->state == CS_CLOSING)
        return;
    conn_in_release_unused(c);
    if (!c->reading && !c->close_after && !c->body_paused && conn_rlen(c) < SL_READ_BUF)
        conn_start_reading(c);
}

/* libuv asks for a buffer just before it reads: the moment an idle
 * connection needs one again. */
static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;
    if (!c->in)
        c->in = conn_in_take(c);
    *b = uv_buf_init(c->in->data + c->in->rlen, (unsigned)(SL_READ_BUF - c->in->rlen));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (nread == 0) { /* EAGAIN: the buffer taken for this read was not needed */
        conn_in_release_unused(c);
        return;
    }
    if (c->state == CS_LINGER) {
        c->in->rlen = 0; /* discarded */
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread < 0) {
        /* A half-close (EOF) still gets what is already on its way, as with
         * nginx; a client waiting for an upstream that has not answered yet
         * is taken as gone (499), and so is any reset, and a stream's
         * client (its response has no end to wait for). */
        struct exchange *x = c->x;
        bool answering = x ? x->request_done && x->response_started : c->out.len > 0;
        if (nread == UV_EOF && answering && !(x && x->stream)) {
            uv_read_stop(s);
            c->reading = false;
            c->close_after = true;
            conn_mark_dirty(c);
            return;
        }
        conn_close(c);
        return;
    }
    c->in->rlen += (size_t)nread;
    if (c->state == CS_IDLE || c->state == CS_BODY)
        conn_arm_timer(c, true);
    conn_process_input(c);
    if (c->state != CS_CLOSING && conn_rlen(c) >= SL_READ_BUF && c->reading) {
        uv_read_stop(s); /* full of pipelined requests: wait for our turn */
        c->reading = false;
    }
}

static void conn_start_reading(struct conn *c)
{
    if (c->reading || c->state == CS_CLOSING)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read) == 0)
        c->reading = true;
}

struct conn *conn_next(struct conn *c)
{
    return c->next;
}

const char *conn_peer_ip(const struct conn *c)
{
    return c->peer_ip;
}

static void conn_fill_peer(struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    c->peer_ip[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    /* sin_port and sin6_port sit at the same offset. */
    c->local_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A new connection of <kind> on <w>, idle and counted, not yet accepted;
 * <total> (if not NULL): the gateway's connections, this one included. */
static struct conn *conn_new(struct worker *w, enum conn_kind kind, int *total)
{
    struct conn *c = sl_calloc(1, sizeof(*c));
    c->w = w;
    c->kind = kind;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->deadline = DEADLINE_NONE;
    c->state = CS_IDLE;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    int n = __atomic_add_fetch(&w->gw->n_conns, 1, __ATOMIC_RELAXED);
    if (total)
        *total = n;
    return c;
}

void conn_accept(struct worker *w, uv_stream_t *server, enum conn_kind kind)
{
    int total;
    struct conn *c = conn_new(w, kind, &total);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    /* Over server.max_connections: shed at once rather than queue unbounded work. */
    if (kind == CONN_PUBLIC && total > w->cur->cfg->server.max_connections) {
        metrics_connection_rejected(w->metrics);
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_fill_peer(c);
    conn_arm_timer(c, true);
    conn_start_reading(c);
}
