#include "proxy/proxy.h"

#include <llhttp.h>
#include <pthread.h>
#include <strings.h>
#include <sys/queue.h>

#include "conf/walker.h"
#include "modules.h"
#include "net/deadline.h"
#include "proxy/buffer.h"
#include "proxy/conf.h"
#include "proxy/headers.h"
#include "proxy/health.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* Upstream names and servers the gateway keeps counts for; past these (a
 * long life of reloads renaming upstreams) a new server is not capped. */
#define PX_MAX_GROUPS 1024
#define PX_MAX_SERVERS 4096
/* Upper bounds of the queue wait histogram, in seconds. */
#define PX_WAIT_BUCKETS 9
static const double px_wait_le[PX_WAIT_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};

/* A request waiting in its worker's queue for a connection to a server of
 * its upstream (x->ctx[MOD_proxy]->wait). */
struct px_waiter {
    TAILQ_ENTRY(px_waiter) link;
    struct exchange *x;
    uint64_t deadline; /* loop ms */
    int64_t queued_us; /* when it joined, for the wait histogram */
    struct px_group *group;
    bool linked;
};
TAILQ_HEAD(px_queue, px_waiter);

/* gw->ctx[MOD_proxy]. Entries are added when a config snapshot names them
 * and kept for the process's life (a few per upstream server ever named). */
struct px_gw {
    pthread_mutex_t lock; /* guards adding entries */
    struct px_group *groups[PX_MAX_GROUPS];
    int n_groups;
    struct px_server *servers[PX_MAX_SERVERS];
    int n_servers;
};

/* worker->ctx[MOD_proxy]. */
struct px_worker {
    struct metrics_family *errors;
    struct px_checker *checker; /* worker 0: active health checks */
    uv_async_t wake;            /* another worker freed a connection, or waits for one */
    uv_timer_t queue_timer;     /* the next queue deadline */
    struct px_queue queues[PX_MAX_GROUPS];
    int n_waiting;        /* in this worker's queues */
    uint64_t rejected[2]; /* queue_full, queue_timeout */
    uint64_t wait_buckets[PX_WAIT_BUCKETS + 1];
    uint64_t wait_count, wait_sum_us;
    /* Idle pooled connections per server (px_server.index), written by
     * this worker only: open minus the sum is what carries requests. */
    int idle[PX_MAX_SERVERS];
};

/* Idle connections to one upstream server, for one worker and one config
 * snapshot. */
struct px_pool {
    struct worker *worker;
    const struct cfg_upstream *upstream;
    const struct cfg_addr *addr;
    struct px_server *srv; /* NULL: not counted (the table was full) */
    int index;             /* of the server in its upstream */
    struct px_conn *idle;  /* most recently used first */
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
    struct px_server *srv; /* counted in its open connections, until closed */

    llhttp_t parser;
    char *rbuf;
    bool reading, read_paused;
    struct buf out;
    bool reused;       /* came from the pool: the upstream may have closed it meanwhile */
    bool sent;         /* a byte of the current request went out */
    bool got_bytes;    /* anything received for the current request */
    bool req_complete; /* the whole request, body included, is queued */
    bool informational, msg_done, head_sent;

    struct buf field, value;
    struct sl_headers headers;
};

/* x->ctx[MOD_proxy]: what the proxy holds for an exchange. */
struct px_x {
    struct px_body *body;  /* first: see px_body_of; a body read whole, or NULL */
    struct px_conn *conn;  /* the upstream connection serving it, if any */
    struct px_waiter wait; /* while it waits for a connection */
    uint64_t failed;       /* bit <s>: server <s> could not be connected to */
    int retries;           /* tries left after a sent request failed (upstream.retries) */
    int resets;            /* connections lost before a byte of the request went out */
};

static struct px_x *px_x_of(const struct exchange *x)
{
    return x->ctx[MOD_proxy];
}

static void px_close(struct px_conn *p);
static void px_start_reading(struct px_conn *p);
static void px_begin(struct px_conn *p);
static struct px_conn *px_connect(struct px_pool *pool, struct exchange *x);
static void px_dispatch(struct exchange *x);
static void px_slot_freed(struct worker *w, struct px_server *srv);
static void px_unqueue(struct worker *w, struct px_waiter *wt);
static bool px_hand_over(struct px_conn *p);
static struct px_gw *px_gw_of(const struct gateway *gw);
static struct px_server *px_server_find(struct px_gw *g, const struct cfg_upstream *up, int s);

/* ---- pools ------------------------------------------------------------------- */

static struct px_worker *px_worker_of(const struct worker *w);

/* This worker's count of idle connections to <pool>'s server, moved by <d>
 * (read by the metrics from another thread). */
static void px_count_idle(struct px_pool *pool, int d)
{
    if (!pool->srv)
        return;
    int *n = &px_worker_of(pool->worker)->idle[pool->srv->index];
    __atomic_store_n(n, *n + d, __ATOMIC_RELAXED);
}

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
    px_count_idle(pool, -1);
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

struct px_server *px_server_of(const struct wcfg *h, int u, int s)
{
    struct px_snapshot *snap = px_snapshot_of(h);
    return snap ? snap->pools[u][s].srv : NULL;
}

static const struct px_health_conf *px_health_of(const struct px_pool *pool)
{
    const struct px_upstream_conf *uc = px_upstream_conf(pool->upstream);
    return uc ? &uc->health : NULL;
}

/* An upstream failure of <kind> (connect, connect_timeout, read_timeout, ...) on <upstream>. */
static void px_count_error(struct worker *w, const char *upstream, const char *kind)
{
    char name[96];
    metrics_label_escape(name, sizeof(name), upstream);
    char labels[192];
    snprintf(labels, sizeof(labels), "upstream=\"%s\",kind=\"%s\"", name, kind);
    metrics_family_add(((struct px_worker *)w->ctx[MOD_proxy])->errors, labels, 1);
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
            h->pools[u][s].index = s;
            h->pools[u][s].srv = px_server_find(px_gw_of(wh->worker->gw), up, s);
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
    struct px_server *srv = p->srv;
    struct worker *w = p->worker;
    buf_release(&p->out);
    buf_release(&p->field);
    buf_release(&p->value);
    free(p->rbuf);
    free(p);
    /* Counted until the socket is closed: the upstream sees no more than
     * max_connections at any time. */
    if (srv) {
        __atomic_sub_fetch(&srv->open, 1, __ATOMIC_RELEASE);
        px_slot_freed(w, srv);
    }
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
        px_x_of(p->x)->conn = NULL;
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
    struct px_x *px = px_x_of(x);
    px_unqueue(x->worker, &px->wait);
    if (px->conn)
        px_close(px->conn);
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

/* Connecting to <p>'s server failed, so nothing was sent: try the other
 * servers of the group, each at most once, before answering <status>. */
static void px_connect_failed(struct px_conn *p, int status, const char *kind, const char *msg)
{
    struct exchange *x = p->x;
    struct px_pool *pool = p->pool;
    if (!x || !pool) {
        px_fail(p, status, kind, msg);
        return;
    }
    struct px_x *px = px_x_of(x);
    px->failed |= 1ull << pool->index;
    px_server_suspect(pool->srv);
    px_health_report(pool->srv, px_health_of(pool), false);
    x->upstream_tries++;
    if (x->upstream_tries >= pool->upstream->n_servers) {
        px_fail(p, status, kind, msg);
        return;
    }
    px_count_error(p->worker, pool->upstream->name, kind);
    px_close(p);
    px_dispatch(x);
}

static bool px_idempotent(const struct exchange *x)
{
    return x->method == HTTP_GET || x->method == HTTP_HEAD || x->method == HTTP_PUT ||
           x->method == HTTP_DELETE || x->method == HTTP_OPTIONS || x->method == HTTP_TRACE;
}

/* May the request of <p>, whose connection failed before an answer, go
 * out again? When no byte of it was sent, always (whatever its method).
 * When it was sent: a pooled connection the upstream closed as we used it
 * is the race every keep-alive proxy meets (once, idempotent, no body);
 * otherwise only an idempotent request without a body or with a body read
 * whole (request_buffering), upstream.retries times. */
static bool px_may_retry(const struct px_conn *p)
{
    const struct exchange *x = p->x;
    if (p->got_bytes)
        return false;
    if (!p->sent) /* bounded: a server that resets every connection is not tried forever */
        return ++px_x_of(x)->resets <= p->pool->upstream->n_servers + 1;
    /* A streamed body cannot be replayed; a buffered one can. */
    bool no_body = (x->content_length <= 0 && !x->chunked) || px_body_of(x);
    if (!px_idempotent(x) || !no_body)
        return false;
    if (p->reused)
        return true;
    struct px_x *px = px_x_of(x);
    if (px->retries <= 0)
        return false;
    px->retries--;
    return true;
}

/* The upstream closed or reset <p> before answering: retry on a fresh
 * connection when that is safe (px_may_retry), else 502. */
static void px_on_upstream_gone(struct px_conn *p, const char *why)
{
    struct exchange *x = p->x;
    /* A pooled connection closed by the server as we reused it is the
     * ordinary keep-alive race, not a sign of a dying server. */
    if (p->pool && !p->reused && !p->got_bytes)
        px_server_suspect(p->pool->srv);
    if (x && p->pool && px_may_retry(p)) {
        px_count_error(p->worker, p->pool->upstream->name, "upstream_closed");
        px_close(p);
        px_dispatch(x); /* fresh, or a pooled one the queue hands over */
        return;
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

static void px_flush(struct px_conn *p);
static void px_fail(struct px_conn *p, int status, const char *kind, const char *msg);

/* A buffered body goes out as the connection takes it: the next chunk
 * when what was written before has drained. */
static void px_pump(struct px_conn *p)
{
    struct px_body *b = px_body_of(p->x);
    char chunk[SL_READ_BUF];
    while (!p->req_complete && p->tcp.write_queue_size < SL_BODY_HIGH_WATER / 2) {
        ssize_t n = px_body_next(b, chunk, sizeof(chunk));
        if (n < 0) {
            px_fail(p, 500, "buffer", "the buffered request body could not be read");
            return;
        }
        if (n == 0) {
            p->req_complete = true;
            break;
        }
        buf_append(&p->out, chunk, (size_t)n);
        px_flush(p);
        if (p->state != PX_ACTIVE)
            return;
    }
}

/* The upstream took what was written: more of the request body. */
static void px_more_body(struct px_conn *p)
{
    if (px_body_of(p->x))
        px_pump(p);
    else
        exchange_resume_body(p->x);
}

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
        px_more_body(p);
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
        if (off)
            p->sent = true;
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
        p->sent = true;
    }
    p->out.len = 0;
    if (!p->x)
        return;
    if (px_body_of(p->x))
        return; /* px_pump paces itself */
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
        if (hop[i].len == len && (name[0] | 0x20) == hop[i].name[0] &&
            strncasecmp(name, hop[i].name, len) == 0)
            return true;
    return len >= 6 && (name[0] | 0x20) == 'p' && strncasecmp(name, "proxy-", 6) == 0;
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

/* Headers the gateway writes itself for the upstream: the client's are dropped. */
static bool px_is_forwarded_header(const char *name, size_t len)
{
    return str_ieq(name, len, "host") || str_ieq(name, len, "x-forwarded-for") ||
           str_ieq(name, len, "x-forwarded-proto") || str_ieq(name, len, "x-forwarded-host") ||
           str_ieq(name, len, "x-forwarded-port") || str_ieq(name, len, "expect");
}

/* WSGI and CGI servers (gunicorn, uWSGI, mod_wsgi) turn '-' into '_' in
 * header names, so a client's "X-Sluice_Identity" reaches a Django app as
 * HTTP_X_SLUICE_IDENTITY beside the gateway's own (gunicorn joins the two:
 * "key:admin,ip:..."), and "X_Forwarded_Proto: https" as a forwarded scheme.
 * So a client header is judged by its name with '_' read as '-'. Returns
 * <name>, or that folding in <tmp> (of <size> bytes); NULL when the name has
 * an '_' and is too long to fold (such a header is dropped). */
static const char *px_wsgi_name(const char *name, size_t len, char *tmp, size_t size)
{
    if (!memchr(name, '_', len))
        return name;
    if (len > size)
        return NULL;
    for (size_t i = 0; i < len; i++)
        tmp[i] = name[i] == '_' ? '-' : name[i];
    return tmp;
}

static void px_header_line(struct buf *b, const char *name, const char *value, size_t vlen)
{
    buf_append_str(b, name);
    buf_append(b, ": ", 2);
    buf_append(b, value, vlen);
    buf_append(b, "\r\n", 2);
}

/* "<name>: <value>" of a header the gateway writes, unless <value> is NULL
 * or a rule of <rreq> or <ureq> sets (its value went up already) or removes
 * it: "X-Forwarded-Proto: https" behind a TLS terminator. */
static void px_own_line(struct buf *b, const struct px_rules *rreq, const struct px_rules *ureq,
                        const char *name, const char *value)
{
    if (value && !px_rules_replace(rreq, ureq, name, strlen(name)))
        px_header_line(b, name, value, strlen(value));
}

/* The request head as the upstream gets it: the client's headers minus
 * hop-by-hop ones, the X-Forwarded-* set, our request id, and framing we
 * chose (never the client's ambiguous one). */
static void px_build_head(struct px_conn *p, struct exchange *x)
{
    const struct px_route_conf *rc = px_route_conf(x->route);
    const struct px_upstream_conf *uc = px_upstream_conf(p->pool->upstream);
    const struct px_rules *rreq = rc ? &rc->req : NULL, *ureq = uc ? &uc->req : NULL;
    struct buf *b = &p->out;
    size_t target_len;
    const char *target = px_target(x, &target_len);
    buf_append_str(b, x->method_name);
    buf_append(b, " ", 1);
    buf_append(b, target, target_len);
    buf_append_str(b, " HTTP/1.1\r\n");
    const struct sl_header *xff = NULL;
    const struct sl_headers *conn = px_connection_headers(&x->req_headers);
    char folded[256];
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *f = &x->req_headers.v[i];
        if (str_ieq(f->name, f->name_len, "x-forwarded-for"))
            xff = f;
        const char *name = px_wsgi_name(f->name, f->name_len, folded, sizeof(folded));
        size_t len = f->name_len;
        if (!name || !px_forwardable(conn, f) || px_is_hop_header(name, len) ||
            px_is_forwarded_header(name, len) || px_is_identity_header(name, len) ||
            px_rules_replace(rreq, ureq, name, len))
            continue;
        buf_append(b, f->name, f->name_len);
        buf_append(b, ": ", 2);
        buf_append(b, f->value, f->value_len);
        buf_append(b, "\r\n", 2);
    }
    px_rules_append_head(b, ureq, rreq, x);
    px_rules_append_head(b, rreq, NULL, x);
    if (rc && rc->identity_headers) {
        /* Always the gateway's: the client's were dropped above. */
        const struct identity *id = &x->identity;
        px_own_line(b, rreq, ureq, "X-Sluice-Identity", id->id);
        px_own_line(b, rreq, ureq, "X-Sluice-Key-Id", id->key_id);
        px_own_line(b, rreq, ureq, "X-Sluice-Tier", id->tier);
        px_own_line(b, rreq, ureq, "X-Sluice-Scopes", id->scopes);
    }
    /* The client's Host (or the authority of an absolute-form target),
     * unless the upstream says otherwise. */
    const char *addr = p->pool->addr->text;
    if (uc && uc->host == PX_HOST_NAME)
        px_header_line(b, "Host", uc->host_name, strlen(uc->host_name));
    else if ((uc && uc->host == PX_HOST_UPSTREAM) || !x->host)
        px_header_line(b, "Host", addr, strlen(addr));
    else
        px_header_line(b, "Host", x->host, x->host_len);
    if (!px_rules_replace(rreq, ureq, "x-forwarded-for", 15)) {
        buf_append_str(b, "X-Forwarded-For: ");
        if (xff) {
            buf_append(b, xff->value, xff->value_len);
            buf_append(b, ", ", 2);
        }
        buf_append_str(b, x->peer_ip); /* the hop we saw, as every proxy appends its peer */
        buf_append(b, "\r\n", 2);
    }
    px_own_line(b, rreq, ureq, "X-Forwarded-Proto", "http");
    if (x->host && !px_rules_replace(rreq, ureq, "x-forwarded-host", 16))
        px_header_line(b, "X-Forwarded-Host", x->host, x->host_len);
    if (x->local_port && !px_rules_replace(rreq, ureq, "x-forwarded-port", 16)) {
        buf_append_str(b, "X-Forwarded-Port: ");
        buf_append_u64(b, (uint64_t)x->local_port);
        buf_append(b, "\r\n", 2);
    }
    px_own_line(b, rreq, ureq, "X-Request-Id", x->request_id);
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
    struct px_conn *p = px_x_of(x)->conn;
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
    const struct px_route_conf *rc = px_route_conf(x->route);
    const struct px_upstream_conf *uc = p->pool ? px_upstream_conf(p->pool->upstream) : NULL;
    const struct px_rules *rr = rc ? &rc->resp : NULL, *ur = uc ? &uc->resp : NULL;
    for (int i = 0; i < p->headers.n; i++) {
        const struct sl_header *f = &p->headers.v[i];
        if (px_forwardable(conn, f) && !px_rules_replace(rr, ur, f->name, f->name_len))
            sl_headers_add(x->arena, &out, f->name, f->name_len, f->value, f->value_len);
    }
    px_rules_add_headers(&out, ur, rr, x);
    px_rules_add_headers(&out, rr, NULL, x);
    if (p->pool) {
        px_server_answered(p->pool->srv);
        px_health_report(p->pool->srv, px_health_of(p->pool), status < 500);
    }
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

/* Back to the pool, or closed when it cannot carry another request. A
 * request of this worker waiting for the upstream gets it at once; while
 * other workers' requests wait, it is closed so that they can open one. */
static void px_release(struct px_conn *p, bool reusable)
{
    struct px_pool *pool = p->pool;
    if (p->x) {
        px_x_of(p->x)->conn = NULL;
        p->x = NULL;
    }
    if (!reusable || !pool || pool->worker->draining) {
        px_close(p);
        return;
    }
    if (pool->srv && px_hand_over(p))
        return;
    if (pool->n_idle >= pool->upstream->keepalive ||
        (pool->srv && __atomic_load_n(&pool->srv->group->waiting, __ATOMIC_RELAXED) > 0)) {
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
    px_count_idle(pool, 1);
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
    struct px_conn *p = px_x_of(x)->conn;
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
    p->got_bytes = p->msg_done = p->informational = p->head_sent = p->sent = false;
    p->req_complete = false;
    p->state = PX_ACTIVE;
    px_arm_timer(p);
    px_build_head(p, x);
    struct px_body *body = px_body_of(x);
    if (x->content_length <= 0 && !x->chunked) {
        p->req_complete = true;
    } else if (body) {
        px_body_rewind(body); /* from the start, also on a retry */
        px_flush(p);
        if (p->state == PX_ACTIVE)
            px_pump(p);
        if (p->state == PX_ACTIVE)
            px_start_reading(p);
        return;
    } else {
        exchange_set_body_sink(x, px_body_sink); /* what queued while we connected, then the rest */
    }
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
    p->srv = pool->srv; /* the caller reserved its place (px_reserve) */
    p->state = PX_CONNECTING;
    uv_tcp_init(&pool->worker->loop, &p->tcp);
    uv_timer_init(&pool->worker->loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->deadline = DEADLINE_NONE;
    p->connect_req.data = p;
    p->x = x;
    px_x_of(x)->conn = p;
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

/* Start <x> on <p>, an idle connection of its pool. */
static void px_reuse(struct px_conn *p, struct exchange *x)
{
    deadline_clear(&p->deadline);
    p->reused = true;
    p->x = x;
    px_x_of(x)->conn = p;
    x->upstream_addr = p->pool->addr->text;
    px_begin(p);
}

/* Take a place among <pool>'s server's connections; false when all
 * max_connections are open. */
static bool px_reserve(struct px_pool *pool)
{
    if (!pool->srv)
        return true;
    int max = pool->upstream->max_connections;
    int open = __atomic_load_n(&pool->srv->open, __ATOMIC_RELAXED);
    while (open < max)
        if (__atomic_compare_exchange_n(&pool->srv->open, &open, open + 1, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return true;
    return false;
}

/* Is server <s> of <x>'s upstream one <x> may go to now: not failed by
 * it, healthy, and (unless <suspects>) not suspect? */
static bool px_server_ok(struct exchange *x, const struct px_pool *pool, bool suspects)
{
    return !(px_x_of(x)->failed & (1ull << pool->index)) &&
           px_health_usable(pool->srv, px_health_of(pool)) &&
           (suspects || !px_server_is_suspect(pool->srv));
}

/* One pass of px_try_start over the servers, round robin from <first>. */
static bool px_try_servers(struct exchange *x, unsigned first, bool suspects)
{
    struct px_snapshot *h = px_snapshot_of(x->hold);
    int u = x->route->upstream;
    int n = x->cfg->upstreams[u].n_servers;
    for (int i = 0; i < n; i++) {
        struct px_pool *pool = &h->pools[u][(first + (unsigned)i) % (unsigned)n];
        if (!px_server_ok(x, pool, suspects))
            continue;
        if (pool->idle) {
            struct px_conn *p = pool->idle;
            px_idle_remove(p);
            px_reuse(p, x);
            return true;
        }
        if (px_reserve(pool)) {
            x->upstream_addr = pool->addr->text;
            px_connect(pool, x);
            return true;
        }
    }
    return false;
}

/* Does <x>'s upstream have a server that is ok and not suspect? */
static bool px_any_trusted(struct exchange *x)
{
    struct px_snapshot *h = px_snapshot_of(x->hold);
    int u = x->route->upstream;
    for (int s = 0; s < x->cfg->upstreams[u].n_servers; s++)
        if (px_server_ok(x, &h->pools[u][s], false))
            return true;
    return false;
}

/* Send <x> on a connection to a server of its upstream: an idle one, else
 * a new one where the server has room, round robin from the upstream's
 * cursor and skipping servers that failed it. A suspect server is used
 * only when no other is ok: while one is, <x> rather waits for it.
 * False when <x> has to wait (every usable server at max_connections). */
static bool px_try_start(struct exchange *x)
{
    struct px_snapshot *h = px_snapshot_of(x->hold);
    unsigned first = h->rr[x->route->upstream]++;
    if (px_try_servers(x, first, false))
        return true;
    return !px_any_trusted(x) && px_try_servers(x, first, true);
}

/* ---- the queue (upstream max_connections) -------------------------------------------- */

static struct px_gw *px_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_proxy];
}

static struct px_worker *px_worker_of(const struct worker *w)
{
    return w->ctx[MOD_proxy];
}

/* The group of upstream <up>, added if new. */
static struct px_group *px_group_find(struct px_gw *g, const char *name)
{
    for (int i = 0; i < g->n_groups; i++)
        if (strcmp(g->groups[i]->name, name) == 0)
            return g->groups[i];
    if (g->n_groups == PX_MAX_GROUPS)
        return NULL;
    struct px_group *grp = sl_calloc(1, sizeof(*grp));
    snprintf(grp->name, sizeof(grp->name), "%s", name);
    grp->index = g->n_groups;
    g->groups[g->n_groups++] = grp;
    return grp;
}

/* The shared count of server <s> of upstream <up>; NULL (not capped) when
 * the tables are full. Called when a worker takes up a config snapshot. */
static struct px_server *px_server_find(struct px_gw *g, const struct cfg_upstream *up, int s)
{
    struct px_server *found = NULL;
    pthread_mutex_lock(&g->lock);
    struct px_group *grp = px_group_find(g, up->name);
    for (int i = 0; grp && i < g->n_servers && !found; i++)
        if (g->servers[i]->group == grp && strcmp(g->servers[i]->addr, up->servers[s].text) == 0)
            found = g->servers[i];
    if (grp && !found && g->n_servers < PX_MAX_SERVERS) {
        found = sl_calloc(1, sizeof(*found));
        snprintf(found->addr, sizeof(found->addr), "%s", up->servers[s].text);
        found->group = grp;
        found->index = g->n_servers;
        g->servers[g->n_servers++] = found;
    }
    pthread_mutex_unlock(&g->lock);
    return found;
}

static void px_wake_others(struct worker *self)
{
    struct gateway *gw = self->gw;
    for (int i = 0; i < gw->n_workers; i++)
        if (&gw->workers[i] != self && px_worker_of(&gw->workers[i]))
            uv_async_send(&px_worker_of(&gw->workers[i])->wake);
}

static void px_count_wait(struct px_worker *pw, int64_t us)
{
    double sec = (double)us / 1e6;
    int b = 0;
    while (b < PX_WAIT_BUCKETS && sec > px_wait_le[b])
        b++;
    metrics_counter_add(&pw->wait_buckets[b], 1);
    metrics_counter_add(&pw->wait_count, 1);
    metrics_counter_add(&pw->wait_sum_us, (uint64_t)(us > 0 ? us : 0));
}

/* Take <wt> out of its queue, if it is in one. */
static void px_unqueue(struct worker *w, struct px_waiter *wt)
{
    if (!wt->linked)
        return;
    struct px_worker *pw = px_worker_of(w);
    TAILQ_REMOVE(&pw->queues[wt->group->index], wt, link);
    wt->linked = false;
    pw->n_waiting--;
    __atomic_sub_fetch(&wt->group->waiting, 1, __ATOMIC_RELAXED);
    px_count_wait(pw, clock_mono_us() - wt->queued_us);
}

static void px_arm_queue_timer(struct worker *w);

/* Answer 503 for a request the upstream has no room for. */
static void px_reject(struct exchange *x, int cause, const char *msg)
{
    metrics_counter_add(&px_worker_of(x->worker)->rejected[cause], 1);
    exchange_add_header(x, "Retry-After", "1");
    exchange_respond_error(x, 503, msg);
}

/* Is any server of <x>'s upstream up (and not yet failed by <x>)? */
static bool px_any_usable(struct exchange *x)
{
    struct px_snapshot *h = px_snapshot_of(x->hold);
    int u = x->route->upstream;
    for (int s = 0; s < x->cfg->upstreams[u].n_servers; s++) {
        const struct px_pool *pool = &h->pools[u][s];
        if (!(px_x_of(x)->failed & (1ull << s)) && px_health_usable(pool->srv, px_health_of(pool)))
            return true;
    }
    return false;
}

/* Send <x> now, or queue it until a connection is free (503 when the
 * queue is full). */
static void px_dispatch(struct exchange *x)
{
    if (px_try_start(x))
        return;
    if (!px_any_usable(x)) {
        /* At once, not after a connect timeout per server. */
        px_count_error(x->worker, x->cfg->upstreams[x->route->upstream].name, "no_healthy_server");
        exchange_respond_error(x, 502, "no server of the upstream is healthy");
        return;
    }
    struct worker *w = x->worker;
    struct px_x *px = px_x_of(x);
    const struct cfg_upstream *up = &x->cfg->upstreams[x->route->upstream];
    struct px_pool *pool = &px_snapshot_of(x->hold)->pools[x->route->upstream][0];
    struct px_group *grp = pool->srv ? pool->srv->group : NULL;
    if (!grp || __atomic_load_n(&grp->waiting, __ATOMIC_RELAXED) >= up->queue.max) {
        px_reject(x, 0, "the upstream is at capacity and its queue is full; try again later");
        return;
    }
    struct px_waiter *wt = &px->wait;
    struct px_worker *pw = px_worker_of(w);
    wt->x = x;
    wt->group = grp;
    wt->queued_us = clock_mono_us();
    wt->deadline = uv_now(&w->loop) + (uint64_t)up->queue.timeout_ms;
    TAILQ_INSERT_TAIL(&pw->queues[grp->index], wt, link);
    wt->linked = true;
    pw->n_waiting++;
    __atomic_add_fetch(&grp->waiting, 1, __ATOMIC_RELAXED);
    /* Other workers may hold idle connections to its servers: they close
     * them (px_on_wake) so that this one can open its own. */
    px_wake_others(w);
    px_arm_queue_timer(w);
}

/* Start waiting requests of <grp> on this worker while servers have room. */
static void px_run_queue(struct worker *w, struct px_group *grp)
{
    struct px_worker *pw = px_worker_of(w);
    struct px_queue *q = &pw->queues[grp->index];
    struct px_waiter *wt;
    while ((wt = TAILQ_FIRST(q))) {
        struct exchange *x = wt->x;
        px_unqueue(w, wt);
        if (!px_try_start(x)) {
            /* Still no room: back to the head, in its turn. */
            TAILQ_INSERT_HEAD(q, wt, link);
            wt->linked = true;
            pw->n_waiting++;
            __atomic_add_fetch(&grp->waiting, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

/* A connection of <p>'s pool is free: give it to this worker's first
 * request waiting for the upstream. */
static bool px_hand_over(struct px_conn *p)
{
    struct px_worker *pw = px_worker_of(p->worker);
    struct px_queue *q = &pw->queues[p->pool->srv->group->index];
    struct px_waiter *wt;
    TAILQ_FOREACH(wt, q, link)
    {
        /* A request that failed on this server does not come back to it. */
        if (px_x_of(wt->x)->failed & (1ull << p->pool->index))
            continue;
        struct exchange *x = wt->x;
        px_unqueue(p->worker, wt);
        p->state = PX_ACTIVE;
        px_reuse(p, x);
        return true;
    }
    return false;
}

static void px_slot_freed(struct worker *w, struct px_server *srv)
{
    struct px_worker *pw = px_worker_of(w);
    if (pw && !TAILQ_EMPTY(&pw->queues[srv->group->index]))
        px_run_queue(w, srv->group);
    if (__atomic_load_n(&srv->group->waiting, __ATOMIC_RELAXED) > 0)
        px_wake_others(w);
}

/* Close the idle connections this worker keeps to servers of upstreams
 * whose requests wait on other workers: each frees a place. */
static void px_shed_idle(struct worker *w)
{
    struct px_snapshot *h = px_snapshot_of(w->cur);
    const struct config *cfg = w->cur->cfg;
    for (int u = 0; h && u < cfg->n_upstreams; u++) {
        for (int s = 0; s < cfg->upstreams[u].n_servers; s++) {
            struct px_pool *pool = &h->pools[u][s];
            while (pool->idle && pool->srv &&
                   __atomic_load_n(&pool->srv->group->waiting, __ATOMIC_RELAXED) > 0)
                px_close(pool->idle);
        }
    }
}

static void px_on_wake(uv_async_t *a)
{
    struct worker *w = a->data;
    if (w->stopped || !w->cur)
        return;
    struct px_gw *g = px_gw_of(w->gw);
    struct px_worker *pw = px_worker_of(w);
    for (int i = 0; pw->n_waiting && i < g->n_groups; i++)
        if (!TAILQ_EMPTY(&pw->queues[i]))
            px_run_queue(w, g->groups[i]);
    px_shed_idle(w);
}

/* Requests past their upstream's queue.timeout get 503. */
static void px_on_queue_timer(uv_timer_t *t)
{
    struct worker *w = t->data;
    struct px_worker *pw = px_worker_of(w);
    uint64_t now = uv_now(&w->loop);
    for (int i = 0; pw->n_waiting && i < PX_MAX_GROUPS; i++) {
        struct px_waiter *wt;
        while ((wt = TAILQ_FIRST(&pw->queues[i])) && wt->deadline <= now) {
            struct exchange *x = wt->x;
            px_unqueue(w, wt);
            px_reject(x, 1,
                      "the upstream is at capacity; the request waited too long in its "
                      "queue");
        }
    }
    px_arm_queue_timer(w);
}

static void px_arm_queue_timer(struct worker *w)
{
    struct px_worker *pw = px_worker_of(w);
    if (!pw->n_waiting)
        return;
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < PX_MAX_GROUPS; i++) {
        struct px_waiter *wt = TAILQ_FIRST(&pw->queues[i]);
        if (wt && wt->deadline < next)
            next = wt->deadline;
    }
    uint64_t now = uv_now(&w->loop);
    uv_timer_start(&pw->queue_timer, px_on_queue_timer, next > now ? next - now : 0, 0);
}

enum stage_result px_stage(struct exchange *x)
{
    /* A stage before may have read the body whole already (px_body_read_tapped). */
    struct px_body *early = px_body_of(x);
    struct px_x *px = arena_calloc(x->arena, sizeof(*px));
    px->body = early;
    px->retries = x->cfg->upstreams[x->route->upstream].retries;
    x->ctx[MOD_proxy] = px;
    exchange_on_end(x, px_on_exchange_end, NULL);
    x->on_client_drain = px_on_client_drain;
    /* The body waits in the exchange until a connection is ready, so a
     * failed connect can move to the next server with nothing lost. */
    exchange_send_continue(x);
    if (early)
        px_dispatch(x);
    else if (px_body_wanted(x))
        px_body_read(x, px_dispatch); /* the upstream is asked once the body is whole */
    else
        px_dispatch(x);
    return STAGE_WAIT;
}

/* ---- the module ------------------------------------------------------------------ */

static int px_init_process(struct gateway *gw, char **err)
{
    /* Said at start, not at the first chunked upload. */
    if (px_body_check_dir(gw->cfg->store.data_dir, err) < 0)
        return -1;
    struct px_gw *g = sl_calloc(1, sizeof(*g));
    pthread_mutex_init(&g->lock, NULL);
    gw->ctx[MOD_proxy] = g;
    return 0;
}

static void px_dispose_process(struct gateway *gw)
{
    struct px_gw *g = px_gw_of(gw);
    for (int i = 0; i < g->n_servers; i++)
        free(g->servers[i]);
    for (int i = 0; i < g->n_groups; i++)
        free(g->groups[i]);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static void px_init_worker(struct worker *w)
{
    struct px_worker *pw = sl_calloc(1, sizeof(*pw));
    pw->errors = metrics_family_new(256, "upstream=\"other\",kind=\"other\"");
    for (int i = 0; i < PX_MAX_GROUPS; i++)
        TAILQ_INIT(&pw->queues[i]);
    w->ctx[MOD_proxy] = pw;
}

static void px_start_worker(struct worker *w)
{
    struct px_worker *pw = px_worker_of(w);
    if (w->id == 0)
        pw->checker = px_checker_start(w);
    uv_async_init(&w->loop, &pw->wake, px_on_wake);
    pw->wake.data = w;
    uv_timer_init(&w->loop, &pw->queue_timer);
    pw->queue_timer.data = w;
}

static void px_stop_worker(struct worker *w)
{
    struct px_worker *pw = px_worker_of(w);
    if (pw->checker)
        px_checker_stop(pw->checker);
    worker_close_handle(w, (uv_handle_t *)&pw->wake);
    worker_close_handle(w, (uv_handle_t *)&pw->queue_timer);
}

static void px_dispose_worker(struct worker *w)
{
    struct px_worker *pw = px_worker_of(w);
    px_checker_free(pw->checker);
    metrics_family_free(pw->errors);
    free(pw);
}

static struct metrics_family *px_errors_of(struct worker *w)
{
    return px_worker_of(w)->errors;
}

static const uint64_t *px_rejected_of(struct worker *w)
{
    return px_worker_of(w)->rejected;
}

static void px_metrics(struct gateway *gw, struct buf *out)
{
    metrics_render_family(gw, out, "sluice_upstream_errors_total", "Upstream failures, by kind.",
                          px_errors_of);
    static const char *const causes[2] = {"queue_full", "queue_timeout"};
    metrics_render_fixed(gw, out, "sluice_upstream_rejections_total",
                         "Requests answered 503 because every upstream connection was busy.",
                         "cause", causes, 2, px_rejected_of);
    struct px_gw *g = px_gw_of(gw);
    pthread_mutex_lock(&g->lock);
    buf_append_str(out,
                   "# HELP sluice_upstream_connections Connections open or opening to an "
                   "upstream server, all workers.\n# TYPE sluice_upstream_connections gauge\n");
    for (int i = 0; i < g->n_servers; i++) {
        char name[96], addr[160];
        metrics_label_escape(name, sizeof(name), g->servers[i]->group->name);
        metrics_label_escape(addr, sizeof(addr), g->servers[i]->addr);
        buf_appendf(out, "sluice_upstream_connections{upstream=\"%s\",server=\"%s\"} %d\n", name,
                    addr, __atomic_load_n(&g->servers[i]->open, __ATOMIC_RELAXED));
    }
    buf_append_str(out, "# HELP sluice_upstream_busy_connections Connections to an upstream "
                        "server carrying a request or opening for one (open minus idle), all "
                        "workers.\n# TYPE sluice_upstream_busy_connections gauge\n");
    for (int i = 0; i < g->n_servers; i++) {
        int busy = __atomic_load_n(&g->servers[i]->open, __ATOMIC_RELAXED);
        for (int w = 0; w < gw->n_workers; w++)
            busy -= __atomic_load_n(&px_worker_of(&gw->workers[w])->idle[i], __ATOMIC_RELAXED);
        char name[96], addr[160];
        metrics_label_escape(name, sizeof(name), g->servers[i]->group->name);
        metrics_label_escape(addr, sizeof(addr), g->servers[i]->addr);
        buf_appendf(out, "sluice_upstream_busy_connections{upstream=\"%s\",server=\"%s\"} %d\n",
                    name, addr, busy < 0 ? 0 : busy);
    }
    px_health_metrics(g->servers, g->n_servers, out);
    buf_append_str(out, "# HELP sluice_upstream_queue_length Requests waiting for an upstream "
                        "connection.\n# TYPE sluice_upstream_queue_length gauge\n");
    for (int i = 0; i < g->n_groups; i++) {
        char name[96];
        metrics_label_escape(name, sizeof(name), g->groups[i]->name);
        buf_appendf(out, "sluice_upstream_queue_length{upstream=\"%s\"} %d\n", name,
                    __atomic_load_n(&g->groups[i]->waiting, __ATOMIC_RELAXED));
    }
    pthread_mutex_unlock(&g->lock);
    uint64_t buckets[PX_WAIT_BUCKETS + 1] = {0}, count = 0, sum_us = 0;
    for (int w = 0; w < gw->n_workers; w++) {
        struct px_worker *pw = px_worker_of(&gw->workers[w]);
        for (int b = 0; b <= PX_WAIT_BUCKETS; b++)
            buckets[b] += __atomic_load_n(&pw->wait_buckets[b], __ATOMIC_RELAXED);
        count += __atomic_load_n(&pw->wait_count, __ATOMIC_RELAXED);
        sum_us += __atomic_load_n(&pw->wait_sum_us, __ATOMIC_RELAXED);
    }
    buf_append_str(out,
                   "# HELP sluice_upstream_queue_wait_seconds Time requests waited for an "
                   "upstream connection.\n# TYPE sluice_upstream_queue_wait_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < PX_WAIT_BUCKETS; b++) {
        cum += buckets[b];
        buf_appendf(out, "sluice_upstream_queue_wait_seconds_bucket{le=\"%g\"} %llu\n",
                    px_wait_le[b], (unsigned long long)cum);
    }
    cum += buckets[PX_WAIT_BUCKETS];
    buf_appendf(out, "sluice_upstream_queue_wait_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
    buf_appendf(out, "sluice_upstream_queue_wait_seconds_sum %.6f\n", (double)sum_us / 1e6);
    buf_appendf(out, "sluice_upstream_queue_wait_seconds_count %llu\n", (unsigned long long)count);
}

static const struct sl_stage px_stages[] = {
    {SL_PHASE_PROXY, false, px_stage},
};

const struct sl_module proxy_module = {
    .name = "proxy",
    .conf = &px_cfg_module,
    .init_process = px_init_process,
    .dispose_process = px_dispose_process,
    .init_worker = px_init_worker,
    .start_worker = px_start_worker,
    .stop_worker = px_stop_worker,
    .dispose_worker = px_dispose_worker,
    .init_snapshot = px_pools_init,
    .release_snapshot = px_pools_release,
    .stages = px_stages,
    .n_stages = 1,
    .metrics = px_metrics,
};
