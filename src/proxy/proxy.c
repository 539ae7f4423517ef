#include "proxy/proxy.h"

#include <llhttp.h>
#include <strings.h>

#include "modules.h"
#include "net/deadline.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/str.h"

/* Idle connections to one upstream server, for one worker and one config
 * snapshot. */
struct px_pool {
    struct worker *worker;
    const struct cfg_upstream *upstream;
    const struct cfg_addr *addr;
    struct px_conn *idle; /* most recently used first */
    int n_idle;
};

enum px_state {
    PX_CONNECTING,
    PX_ACTIVE, /* serving an exchange */
    PX_IDLE,   /* in its pool's idle list */
    PX_CLOSING,
};

struct px_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_timer_t timer;
    uint64_t deadline; /* loop ms; see net/deadline.h */
    struct worker *worker;
    struct px_pool *pool; /* NULL once the pool is gone */
    struct px_conn *idle_next, *idle_prev;
    enum px_state state;
    struct exchange *x;
    int pending_closes;

    llhttp_t parser;
    char *rbuf;
    bool reading, read_paused;
    struct buf out;
    bool reused;       /* came from the pool: the upstream may have closed it meanwhile */
    bool got_bytes;    /* anything received for the current request */
    bool req_complete; /* the whole request, body included, is queued */
    bool informational, msg_done, head_sent;

    struct buf field, value;
    struct sl_headers headers;
};

static void px_close(struct px_conn *p);
static void px_start_reading(struct px_conn *p);
static void px_send_request(struct exchange *x, struct px_pool *pool);
static struct px_conn *px_connect(struct px_pool *pool, struct exchange *x);

/* ---- pools ------------------------------------------------------------------- */

static void px_idle_remove(struct px_conn *p)
{
    struct px_pool *pool = p->pool;
    if (p->idle_prev)
        p->idle_prev->idle_next = p->idle_next;
    else
        pool->idle = p->idle_next;
    if (p->idle_next)
        p->idle_next->idle_prev = p->idle_prev;
    p->idle_next = p->idle_prev = NULL;
    pool->n_idle--;
}

/* wcfg->ctx[MOD_proxy]: the keep-alive pools of one config snapshot. */
struct px_snapshot {
    struct px_pool **pools; /* [upstream][server] */
    unsigned *rr;           /* round-robin cursor per upstream */
};

static struct px_snapshot *px_snapshot_of(const struct wcfg *h)
{
    return h->ctx[MOD_proxy];
}

/* An upstream failure of <kind> (connect, connect_timeout, read_timeout, ...) on <upstream>. */
static void px_count_error(struct worker *w, const char *upstream, const char *kind)
{
    char name[96];
    metrics_label_escape(name, sizeof(name), upstream);
    char labels[192];
    snprintf(labels, sizeof(labels), "upstream=\"%s\",kind=\"%s\"", name, kind);
    metrics_family_add(w->ctx[MOD_proxy], labels, 1);
}

static void px_pools_init(struct wcfg *wh)
{
    struct px_snapshot *h = sl_calloc(1, sizeof(*h));
    wh->ctx[MOD_proxy] = h;
    const struct config *cfg = wh->cfg;
    h->pools = sl_calloc((size_t)cfg->n_upstreams, sizeof(*h->pools));
    h->rr = sl_calloc((size_t)cfg->n_upstreams, sizeof(*h->rr));
    for (int u = 0; u < cfg->n_upstreams; u++) {
        const struct cfg_upstream *up = &cfg->upstreams[u];
        h->pools[u] = sl_calloc((size_t)up->n_servers, sizeof(struct px_pool));
        for (int s = 0; s < up->n_servers; s++) {
            h->pools[u][s].worker = wh->worker;
            h->pools[u][s].upstream = up;
            h->pools[u][s].addr = &up->servers[s];
        }
    }
}

static void px_pools_release(struct wcfg *wh)
{
    struct px_snapshot *h = px_snapshot_of(wh);
    const struct config *cfg = wh->cfg;
    for (int u = 0; u < cfg->n_upstreams; u++) {
        for (int s = 0; s < cfg->upstreams[u].n_servers; s++) {
            struct px_pool *pool = &h->pools[u][s];
            while (pool->idle)
                px_close(pool->idle);
        }
        free(h->pools[u]);
    }
    free(h->pools);
    free(h->rr);
    free(h);
    wh->ctx[MOD_proxy] = NULL;
}

/* ---- closing ----------------------------------------------------------------- */

static void px_on_closed(uv_handle_t *h)
{
    struct px_conn *p = h->data;
    if (--p->pending_closes > 0)
        return;
    buf_release(&p->out);
    buf_release(&p->field);
    buf_release(&p->value);
    free(p->rbuf);
    free(p);
}

static void px_close(struct px_conn *p)
{
    if (p->state == PX_CLOSING)
        return;
    if (p->state == PX_IDLE)
        px_idle_remove(p);
    p->state = PX_CLOSING;
    p->pool = NULL;
    if (p->x) {
        p->x->ctx[MOD_proxy] = NULL;
        p->x = NULL;
    }
    p->pending_closes = 2;
    uv_close((uv_handle_t *)&p->timer, px_on_closed);
    uv_close((uv_handle_t *)&p->tcp, px_on_closed);
}

/* The exchange ended (client gone, or answered otherwise) while we held an
 * upstream connection: it is mid-request, so it cannot be reused. */
static void px_on_exchange_end(struct exchange *x, void *arg)
{
    if (x->ctx[MOD_proxy])
        px_close(x->ctx[MOD_proxy]);
}

/* ---- errors ------------------------------------------------------------------ */

/* The upstream failed <p>'s request: answer the client if nothing was sent
 * yet, otherwise cut the response short so the client sees it incomplete. */
static void px_fail(struct px_conn *p, int status, const char *kind, const char *msg)
{
    struct exchange *x = p->x;
    if (p->pool)
        px_count_error(p->worker, p->pool->upstream->name, kind);
    px_close(p);
    if (!x)
        return;
    if (x->response_started)
        exchange_send_abort(x);
    else
        exchange_respond_error(x, status, msg);
}

/* Connecting to <p>'s server failed, so nothing was sent: try the next
 * server of the group, each at most once, before answering <status>. */
static void px_connect_failed(struct px_conn *p, int status, const char *kind, const char *msg)
{
    struct exchange *x = p->x;
    struct px_pool *pool = p->pool;
    if (!x || !pool) {
        px_fail(p, status, kind, msg);
        return;
    }
    int u = x->route->upstream;
    int n = pool->upstream->n_servers;
    int next = (int)(pool - px_snapshot_of(x->hold)->pools[u] + 1) % n;
    if (++x->upstream_tries >= n) {
        px_fail(p, status, kind, msg);
        return;
    }
    px_count_error(p->worker, pool->upstream->name, kind);
    px_close(p);
    px_send_request(x, &px_snapshot_of(x->hold)->pools[u][next]);
}

static bool px_may_retry(const struct px_conn *p)
{
    const struct exchange *x = p->x;
    bool idempotent = x->method == HTTP_GET || x->method == HTTP_HEAD || x->method == HTTP_PUT ||
                      x->method == HTTP_DELETE || x->method == HTTP_OPTIONS ||
                      x->method == HTTP_TRACE;
    bool no_body = x->content_length <= 0 && !x->chunked;
    return p->reused && !p->got_bytes && idempotent && no_body;
}

/* The upstream closed or reset <p>. A pooled connection it closed while we
 * were sending is the race every keep-alive proxy meets: retry once, on a
 * fresh connection, when that is safe. */
static void px_on_upstream_gone(struct px_conn *p, const char *why)
{
    struct exchange *x = p->x;
    if (x && px_may_retry(p)) {
        struct px_pool *pool = p->pool;
        px_close(p);
        if (pool) {
            px_connect(pool, x); /* fresh: another pooled one may be just as stale */
            return;
        }
    }
    px_fail(p, 502, "upstream_closed", why);
}

/* ---- timers ------------------------------------------------------------------ */

static void px_on_timer(uv_timer_t *t)
{
    struct px_conn *p = t->data;
    if (!deadline_due(t, p->deadline, px_on_timer))
        return;
    switch (p->state) {
    case PX_CONNECTING:
        px_connect_failed(p, 504, "connect_timeout",
                          "the upstream did not accept the connection in time");
        break;
    case PX_ACTIVE:
        px_fail(p, 504, "read_timeout", "the upstream did not answer in time");
        break;
    case PX_IDLE:
        px_close(p);
        break;
    default:
        break;
    }
}

static void px_arm_timer(struct px_conn *p)
{
    const struct cfg_timeouts *to = &p->x->cfg->server.timeouts;
    int64_t ms = p->state == PX_CONNECTING ? to->upstream_connect_ms : to->upstream_read_ms;
    deadline_set(&p->timer, &p->deadline, (uint64_t)ms, px_on_timer);
}

/* ---- writing ------------------------------------------------------------------ */

static void px_on_written(uv_write_t *req, int status)
{
    struct px_conn *p = req->data;
    free(req);
    if (p->state == PX_CLOSING)
        return;
    if (status < 0) {
        px_on_upstream_gone(p, "the upstream connection failed while sending the request");
        return;
    }
    if (p->x && p->tcp.write_queue_size < SL_BODY_HIGH_WATER / 2)
        exchange_resume_body(p->x);
}

static void px_flush(struct px_conn *p)
{
    if (p->state != PX_ACTIVE || p->out.len == 0)
        return;
    size_t off = 0;
    if (p->tcp.write_queue_size == 0) {
        uv_buf_t b = uv_buf_init(p->out.data, (unsigned)p->out.len);
        int n = uv_try_write((uv_stream_t *)&p->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            p->out.len = 0;
            px_on_upstream_gone(p, "the upstream connection failed while sending the request");
            return;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    if (off < p->out.len) {
        size_t rest = p->out.len - off;
        uv_write_t *req = sl_malloc(sizeof(*req) + rest);
        memcpy(req + 1, p->out.data + off, rest);
        req->data = p;
        uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)rest);
        if (uv_write(req, (uv_stream_t *)&p->tcp, &b, 1, px_on_written) < 0) {
            free(req);
            p->out.len = 0;
            px_on_upstream_gone(p, "the upstream connection failed while sending the request");
            return;
        }
    }
    p->out.len = 0;
    if (!p->x)
        return;
    if (p->tcp.write_queue_size >= SL_BODY_HIGH_WATER)
        exchange_pause_body(p->x);
    else if (p->tcp.write_queue_size < SL_BODY_HIGH_WATER / 2)
        exchange_resume_body(p->x); /* written at once: no write callback will say so */
}

/* Hop-by-hop fields (RFC 9110 7.6.1) and the framing we redo ourselves,
 * with their lengths so most headers are dismissed by length alone. */
static bool px_is_hop_header(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } hop[] = {{"te", 2},
               {"trailer", 7},
               {"upgrade", 7},
               {"connection", 10},
               {"keep-alive", 10},
               {"x-request-id", 12},
               {"content-length", 14},
               {"proxy-connection", 16},
               {"transfer-encoding", 17}};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (hop[i].len == len && strncasecmp(name, hop[i].name, len) == 0)
            return true;
    return len >= 6 && strncasecmp(name, "proxy-", 6) == 0;
}

/* The Connection headers of <h>, or NULL when there is none (the usual case:
 * then nothing else needs to be looked up per header). */
static const struct sl_headers *px_connection_headers(const struct sl_headers *h)
{
    for (int i = 0; i < h->n; i++)
        if (h->v[i].name_len == 10 && strncasecmp(h->v[i].name, "connection", 10) == 0)
            return h;
    return NULL;
}

/* Is <name> listed in one of the Connection headers of <h>? */
static bool px_named_by_connection(const struct sl_headers *h, const char *name, size_t len)
{
    char tmp[128];
    if (!h || len >= sizeof(tmp))
        return false;
    memcpy(tmp, name, len);
    tmp[len] = '\0';
    for (int i = 0; i < h->n; i++)
        if (str_ieq(h->v[i].name, h->v[i].name_len, "connection") &&
            str_list_has(h->v[i].value, h->v[i].value_len, tmp))
            return true;
    return false;
}

/* <conn>: px_connection_headers() of the set <f> belongs to. */
static bool px_forwardable(const struct sl_headers *conn, const struct sl_header *f)
{
    return !px_is_hop_header(f->name, f->name_len) &&
           !px_named_by_connection(conn, f->name, f->name_len);
}

static bool px_is_forwarded_header(const struct sl_header *f)
{
    return str_ieq(f->name, f->name_len, "host") ||
           str_ieq(f->name, f->name_len, "x-forwarded-for") ||
           str_ieq(f->name, f->name_len, "x-forwarded-proto") ||
           str_ieq(f->name, f->name_len, "x-forwarded-host") ||
           str_ieq(f->name, f->name_len, "expect");
}

static void px_header_line(struct buf *b, const char *name, const char *value, size_t vlen)
{
    buf_append_str(b, name);
    buf_append(b, ": ", 2);
    buf_append(b, value, vlen);
    buf_append(b, "\r\n", 2);
}

/* The request head as the upstream gets it: the client's headers minus
 * hop-by-hop ones, the X-Forwarded-* set, our request id, and framing we
 * chose (never the client's ambiguous one). */
static void px_build_head(struct px_conn *p, struct exchange *x)
{
    struct buf *b = &p->out;
    buf_append_str(b, x->method_name);
    buf_append(b, " ", 1);
    buf_append(b, x->target, x->target_len);
    buf_append_str(b, " HTTP/1.1\r\n");
    const struct sl_header *xff = NULL;
    const struct sl_headers *conn = px_connection_headers(&x->req_headers);
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *f = &x->req_headers.v[i];
        if (str_ieq(f->name, f->name_len, "x-forwarded-for"))
            xff = f;
        if (!px_forwardable(conn, f) || px_is_forwarded_header(f))
            continue;
        buf_append(b, f->name, f->name_len);
        buf_append(b, ": ", 2);
        buf_append(b, f->value, f->value_len);
        buf_append(b, "\r\n", 2);
    }
    /* The client's Host (or the authority of an absolute-form target). */
    if (x->host)
        px_header_line(b, "Host", x->host, x->host_len);
    else
        px_header_line(b, "Host", p->pool->addr->text, strlen(p->pool->addr->text));
    buf_append_str(b, "X-Forwarded-For: ");
    if (xff) {
        buf_append(b, xff->value, xff->value_len);
        buf_append(b, ", ", 2);
    }
    buf_append_str(b, x->peer_ip); /* the hop we saw, as every proxy appends its peer */
    buf_append(b, "\r\n", 2);
    buf_append_str(b, "X-Forwarded-Proto: http\r\n");
    if (x->host)
        px_header_line(b, "X-Forwarded-Host", x->host, x->host_len);
    px_header_line(b, "X-Request-Id", x->request_id, strlen(x->request_id));
    if (x->chunked) {
        buf_append_str(b, "Transfer-Encoding: chunked\r\n");
    } else if (x->content_length >= 0) {
        buf_append_str(b, "Content-Length: ");
        buf_append_u64(b, (uint64_t)x->content_length);
        buf_append(b, "\r\n", 2);
    }
    buf_append(b, "\r\n", 2);
}

/* Request body bytes from the client, re-framed for the upstream. */
static void px_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct px_conn *p = x->ctx[MOD_proxy];
    if (!p)
        return;
    if (len) {
        if (x->chunked) {
            char hex[20];
            int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
            buf_append(&p->out, hex, (size_t)n);
            buf_append(&p->out, data, len);
            buf_append(&p->out, "\r\n", 2);
        } else {
            buf_append(&p->out, data, len);
        }
    }
    if (end) {
        if (x->chunked)
            buf_append(&p->out, "0\r\n\r\n", 5);
        p->req_complete = true;
    }
    px_flush(p);
}

/* ---- the response ----------------------------------------------------------------- */

static int px_cb_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct px_conn *p = parser->data;
    buf_append(&p->field, at, len);
    return 0;
}

static int px_cb_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct px_conn *p = parser->data;
    buf_append(&p->value, at, len);
    return 0;
}

static int px_cb_header_value_complete(llhttp_t *parser)
{
    struct px_conn *p = parser->data;
    if (!p->x)
        return -1; /* the exchange ended under us: stop parsing */
    if (p->headers.n >= SL_MAX_HEADERS)
        return -1;
    sl_headers_add(p->x->arena, &p->headers, p->field.data ? p->field.data : "", p->field.len,
                   p->value.data ? p->value.data : "", p->value.len);
    p->field.len = p->value.len = 0;
    return 0;
}

static int px_cb_headers_complete(llhttp_t *parser)
{
    struct px_conn *p = parser->data;
    if (!p->x)
        return -1; /* the exchange ended under us: stop parsing */
    struct exchange *x = p->x;
    int status = parser->status_code;
    if (status < 200) {
        /* 100/103 from the upstream: we answered Expect ourselves; drop it. */
        p->informational = true;
        p->headers.n = 0;
        return 0;
    }
    struct sl_headers out = {0};
    const struct sl_headers *conn = px_connection_headers(&p->headers);
    for (int i = 0; i < p->headers.n; i++)
        if (px_forwardable(conn, &p->headers.v[i]))
            sl_headers_add(x->arena, &out, p->headers.v[i].name, p->headers.v[i].name_len,
                           p->headers.v[i].value, p->headers.v[i].value_len);
    bool no_body = x->method == HTTP_HEAD || status == 204 || status == 304;
    bool has_length = (parser->flags & F_CONTENT_LENGTH) && !(parser->flags & F_CHUNKED);
    int64_t length = has_length ? (int64_t)parser->content_length : -1;
    p->head_sent = true;
    exchange_send_head(x, status, &out, length, no_body);
    return x->method == HTTP_HEAD ? 1 : 0;
}

static int px_cb_body(llhttp_t *parser, const char *at, size_t len)
{
    struct px_conn *p = parser->data;
    if (!p->x)
        return -1; /* the exchange ended under us: stop parsing */
    exchange_send_body(p->x, at, len);
    return 0;
}

static int px_cb_message_complete(llhttp_t *parser)
{
    struct px_conn *p = parser->data;
    if (p->informational) {
        p->informational = false;
        return 0;
    }
    p->msg_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t px_settings;
static pthread_once_t px_settings_once = PTHREAD_ONCE_INIT;

static void px_settings_init(void)
{
    llhttp_settings_init(&px_settings);
    px_settings.on_header_field = px_cb_header_field;
    px_settings.on_header_value = px_cb_header_value;
    px_settings.on_header_value_complete = px_cb_header_value_complete;
    px_settings.on_headers_complete = px_cb_headers_complete;
    px_settings.on_body = px_cb_body;
    px_settings.on_message_complete = px_cb_message_complete;
}

/* Back to the pool, or closed when it cannot carry another request. */
static void px_release(struct px_conn *p, bool reusable)
{
    struct px_pool *pool = p->pool;
    if (p->x) {
        p->x->ctx[MOD_proxy] = NULL;
        p->x = NULL;
    }
    if (!reusable || !pool || pool->n_idle >= pool->upstream->keepalive || pool->worker->draining) {
        px_close(p);
        return;
    }
    p->state = PX_IDLE;
    p->idle_prev = NULL;
    p->idle_next = pool->idle;
    if (pool->idle)
        pool->idle->idle_prev = p;
    pool->idle = p;
    pool->n_idle++;
    deadline_set(&p->timer, &p->deadline, (uint64_t)pool->worker->cur->cfg->server.timeouts.idle_ms,
                 px_on_timer);
    px_start_reading(p); /* to notice when the upstream closes it */
}

/* The upstream's response is complete. */
static void px_finish(struct px_conn *p, size_t leftover)
{
    struct exchange *x = p->x;
    bool reusable = llhttp_should_keep_alive(&p->parser) && p->req_complete && leftover == 0;
    deadline_clear(&p->deadline);
    px_release(p, reusable);
    exchange_send_end(x);
}

static void px_on_client_drain(struct exchange *x)
{
    struct px_conn *p = x->ctx[MOD_proxy];
    if (p && p->read_paused) {
        p->read_paused = false;
        px_start_reading(p);
    }
}

static void px_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct px_conn *p = h->data;
    if (!p->rbuf)
        p->rbuf = sl_malloc(SL_READ_BUF);
    *b = uv_buf_init(p->rbuf, SL_READ_BUF);
}

static void px_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct px_conn *p = s->data;
    if (nread == 0)
        return;
    if (p->state == PX_IDLE) {
        /* An idle connection speaks only to say it is closing. */
        px_close(p);
        return;
    }
    if (p->state != PX_ACTIVE)
        return;
    if (nread < 0) {
        llhttp_errno_t fin = nread == UV_EOF && p->got_bytes ? llhttp_finish(&p->parser) : HPE_OK;
        if ((fin == HPE_OK || fin == HPE_PAUSED) && p->msg_done) {
            px_finish(p, 0); /* a close-delimited body has ended */
            return;
        }
        px_on_upstream_gone(p, "the upstream closed the connection before answering");
        return;
    }
    p->got_bytes = true;
    px_arm_timer(p);
    llhttp_errno_t err = llhttp_execute(&p->parser, b->base, (size_t)nread);
    if (p->state != PX_ACTIVE)
        return; /* the client went away meanwhile */
    if (err == HPE_PAUSED && p->msg_done) {
        size_t used = (size_t)(llhttp_get_error_pos(&p->parser) - b->base);
        px_finish(p, (size_t)nread - used);
        return;
    }
    if (err != HPE_OK) {
        px_fail(p, 502, "bad_response", "the upstream sent an invalid HTTP response");
        return;
    }
    if (p->x && exchange_pending_output(p->x) >= SL_BODY_HIGH_WATER) {
        uv_read_stop(s); /* the client reads slower than the upstream writes */
        p->reading = false;
        p->read_paused = true;
    }
}

static void px_start_reading(struct px_conn *p)
{
    if (p->reading)
        return;
    if (uv_read_start((uv_stream_t *)&p->tcp, px_alloc, px_on_read) == 0)
        p->reading = true;
}

/* ---- starting a request ------------------------------------------------------------ */

static void px_begin(struct px_conn *p)
{
    struct exchange *x = p->x;
    pthread_once(&px_settings_once, px_settings_init);
    llhttp_init(&p->parser, HTTP_RESPONSE, &px_settings);
    p->parser.data = p;
    p->headers.n = 0;
    p->headers.v = NULL;
    p->headers.cap = 0;
    p->field.len = p->value.len = 0;
    p->got_bytes = p->msg_done = p->informational = p->head_sent = false;
    p->req_complete = false;
    p->state = PX_ACTIVE;
    px_arm_timer(p);
    px_build_head(p, x);
    if (x->content_length <= 0 && !x->chunked)
        p->req_complete = true;
    else
        exchange_set_body_sink(x, px_body_sink); /* what queued while we connected, then the rest */
    px_flush(p);
    if (p->state == PX_ACTIVE)
        px_start_reading(p);
}

static void px_on_connect(uv_connect_t *req, int status)
{
    struct px_conn *p = req->data;
    if (p->state != PX_CONNECTING)
        return; /* closed while connecting */
    if (status < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot connect to the upstream: %s", uv_strerror(status));
        px_connect_failed(p, 502, "connect", msg);
        return;
    }
    uv_tcp_nodelay(&p->tcp, 1);
    px_begin(p);
}

static struct px_conn *px_connect(struct px_pool *pool, struct exchange *x)
{
    struct px_conn *p = sl_calloc(1, sizeof(*p));
    p->worker = pool->worker;
    p->pool = pool;
    p->state = PX_CONNECTING;
    uv_tcp_init(&pool->worker->loop, &p->tcp);
    uv_timer_init(&pool->worker->loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->deadline = DEADLINE_NONE;
    p->connect_req.data = p;
    p->x = x;
    x->ctx[MOD_proxy] = p;
    px_arm_timer(p);
    int rc = uv_tcp_connect(&p->connect_req, &p->tcp, (const struct sockaddr *)&pool->addr->sa,
                            px_on_connect);
    if (rc < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot connect to the upstream: %s", uv_strerror(rc));
        px_connect_failed(p, 502, "connect", msg);
        return NULL;
    }
    return p;
}

static void px_send_request(struct exchange *x, struct px_pool *pool)
{
    x->upstream_addr = pool->addr->text;
    struct px_conn *p = pool->idle;
    if (p) {
        px_idle_remove(p);
        deadline_clear(&p->deadline);
        p->reused = true;
        p->x = x;
        x->ctx[MOD_proxy] = p;
        px_begin(p);
        return;
    }
    px_connect(pool, x);
}

enum stage_result px_stage(struct exchange *x)
{
    struct px_snapshot *h = px_snapshot_of(x->hold);
    int u = x->route->upstream;
    const struct cfg_upstream *up = &x->cfg->upstreams[u];
    unsigned s = h->rr[u]++ % (unsigned)up->n_servers;
    exchange_on_end(x, px_on_exchange_end, NULL);
    x->on_client_drain = px_on_client_drain;
    /* The body waits in the exchange until a connection is ready, so a
     * failed connect can move to the next server with nothing lost. */
    exchange_send_continue(x);
    px_send_request(x, &h->pools[u][s]);
    return STAGE_WAIT;
}

/* ---- the module ------------------------------------------------------------------ */

static void px_init_worker(struct worker *w)
{
    w->ctx[MOD_proxy] = metrics_family_new(256, "upstream=\"other\",kind=\"other\"");
}

static void px_dispose_worker(struct worker *w)
{
    metrics_family_free(w->ctx[MOD_proxy]);
}

static struct metrics_family *px_errors_of(struct worker *w)
{
    return w->ctx[MOD_proxy];
}

static void px_metrics(struct gateway *gw, struct buf *out)
{
    metrics_render_family(gw, out, "sluice_upstream_errors_total", "Upstream failures, by kind.",
                          px_errors_of);
}

static const struct sl_stage px_stages[] = {
    {SL_PHASE_PROXY, false, px_stage},
};

const struct sl_module proxy_module = {
    .name = "proxy",
    .init_worker = px_init_worker,
    .dispose_worker = px_dispose_worker,
    .init_snapshot = px_pools_init,
    .release_snapshot = px_pools_release,
    .stages = px_stages,
    .n_stages = 1,
    .metrics = px_metrics,
};
