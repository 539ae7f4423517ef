/* Upstream health: passive ejection and active checks (proxy/health.h). */
#include "proxy/health.h"

#include <stdio.h>
#include <string.h>

#include "modules.h"
#include "obs/metrics.h"
#include "proxy/conf.h"
#include "util/clock.h"
#include "util/mem.h"

/* ---- state ---------------------------------------------------------------------- */

static int64_t px_health_now_ms(void)
{
    return clock_mono_us() / 1000;
}

static void px_health_set(struct px_server *srv, bool down, const char *why)
{
    if (__atomic_exchange_n(&srv->down, down ? 1 : 0, __ATOMIC_RELAXED) == (down ? 1 : 0))
        return;
    /* Said once per change, for the whole gateway. */
    fprintf(stderr, "sluice: upstream %s server %s is %s%s%s\n", srv->group->name, srv->addr,
            down ? "down" : "up again", why ? ": " : "", why ? why : "");
}

bool px_health_usable(const struct px_server *srv, const struct px_health_conf *h)
{
    if (!srv || !h || !h->enabled || !__atomic_load_n(&srv->down, __ATOMIC_RELAXED))
        return true;
    /* Passive only: after `interval`, one request may try it again. */
    return !h->path && px_health_now_ms() >= __atomic_load_n(&srv->retry_at_ms, __ATOMIC_RELAXED);
}

void px_server_suspect(struct px_server *srv)
{
    if (srv)
        __atomic_store_n(&srv->suspect_until_ms, px_health_now_ms() + PX_SUSPECT_MS,
                         __ATOMIC_RELAXED);
}

void px_server_answered(struct px_server *srv)
{
    if (srv && __atomic_load_n(&srv->suspect_until_ms, __ATOMIC_RELAXED))
        __atomic_store_n(&srv->suspect_until_ms, 0, __ATOMIC_RELAXED);
}

bool px_server_is_suspect(const struct px_server *srv)
{
    int64_t until = srv ? __atomic_load_n(&srv->suspect_until_ms, __ATOMIC_RELAXED) : 0;
    return until && px_health_now_ms() < until;
}

void px_health_report(struct px_server *srv, const struct px_health_conf *h, bool ok)
{
    if (!srv || !h || !h->enabled)
        return;
    if (ok) {
        __atomic_store_n(&srv->fails, 0, __ATOMIC_RELAXED);
        /* Active checks alone bring a checked server back; a passive one
         * is back with its first good answer. */
        if (!h->path)
            px_health_set(srv, false, NULL);
        return;
    }
    int fails = __atomic_add_fetch(&srv->fails, 1, __ATOMIC_RELAXED);
    if (fails < h->unhealthy)
        return;
    __atomic_store_n(&srv->retry_at_ms, px_health_now_ms() + h->interval_ms, __ATOMIC_RELAXED);
    px_health_set(srv, true, "requests failed");
}

/* An active check's verdict. */
static void px_health_checked(struct px_server *srv, const struct px_health_conf *h, bool ok,
                              const char *why)
{
    if (ok) {
        __atomic_add_fetch(&srv->checks_ok, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&srv->fails, 0, __ATOMIC_RELAXED);
        if (__atomic_load_n(&srv->down, __ATOMIC_RELAXED) &&
            __atomic_add_fetch(&srv->oks, 1, __ATOMIC_RELAXED) >= h->healthy)
            px_health_set(srv, false, NULL);
        return;
    }
    __atomic_add_fetch(&srv->checks_failed, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&srv->oks, 0, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&srv->fails, 1, __ATOMIC_RELAXED) >= h->unhealthy)
        px_health_set(srv, true, why);
}

/* ---- active checks ---------------------------------------------------------------- */

/* Checks run every PX_CHECK_TICK_MS at the finest; each server at its own
 * interval. */
#define PX_CHECK_TICK_MS 100
/* The status line is all a check reads. */
#define PX_CHECK_READ 512

struct px_check {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    struct px_server *srv;
    struct px_health_conf conf; /* a copy: the config may change meanwhile */
    struct px_checker *owner;
    char req[512];
    char resp[PX_CHECK_READ];
    size_t got;
    bool done;
    int closes;
};

struct px_checker {
    struct worker *w;
    uv_timer_t tick;
    int in_flight;
    bool stopping;
};

static void px_check_closed(uv_handle_t *h)
{
    struct px_check *c = h->data;
    if (--c->closes > 0)
        return;
    c->srv->checking = false;
    struct px_checker *owner = c->owner;
    owner->in_flight--;
    free(c);
    if (owner->stopping && owner->in_flight == 0)
        worker_close_handle(owner->w, (uv_handle_t *)&owner->tick);
}

static void px_check_finish(struct px_check *c, bool ok, const char *why)
{
    if (c->done)
        return;
    c->done = true;
    if (!c->owner->stopping)
        px_health_checked(c->srv, &c->conf, ok, why);
    c->closes = 2;
    uv_close((uv_handle_t *)&c->timer, px_check_closed);
    uv_close((uv_handle_t *)&c->tcp, px_check_closed);
}

static void px_check_timeout(uv_timer_t *t)
{
    px_check_finish(t->data, false, "health check timed out");
}

static void px_check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct px_check *c = h->data;
    *b = uv_buf_init(c->resp + c->got, (unsigned)(sizeof(c->resp) - 1 - c->got));
}

/* "HTTP/1.x NNN": 2xx and 3xx are healthy. */
static void px_check_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct px_check *c = s->data;
    if (n == 0)
        return;
    if (n > 0)
        c->got += (size_t)n;
    c->resp[c->got] = '\0';
    char *eol = strstr(c->resp, "\r\n");
    if (!eol && n > 0 && c->got < sizeof(c->resp) - 1)
        return;
    int status = 0;
    if (strncmp(c->resp, "HTTP/1.", 7) == 0 && c->got >= 12)
        status = (c->resp[9] - '0') * 100 + (c->resp[10] - '0') * 10 + (c->resp[11] - '0');
    char why[64];
    snprintf(why, sizeof(why), status ? "health check answered %d" : "no HTTP answer", status);
    px_check_finish(c, status >= 200 && status < 400, why);
}

static void px_check_written(uv_write_t *req, int status)
{
    struct px_check *c = req->data;
    if (status < 0)
        px_check_finish(c, false, "health check request failed");
}

static void px_check_connected(uv_connect_t *req, int status)
{
    struct px_check *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        px_check_finish(c, false, uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)strlen(c->req));
    c->write.data = c;
    uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, px_check_written);
    uv_read_start((uv_stream_t *)&c->tcp, px_check_alloc, px_check_read);
}

static void px_check_start(struct px_checker *k, struct px_server *srv,
                           const struct cfg_upstream *up, const struct cfg_addr *addr,
                           const struct px_health_conf *h)
{
    struct px_check *c = sl_calloc(1, sizeof(*c));
    c->srv = srv;
    c->conf = *h;
    c->owner = k;
    snprintf(c->req, sizeof(c->req),
             "GET %.300s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health\r\nConnection: "
             "close\r\n\r\n",
             h->path, addr->text);
    uv_tcp_init(&k->w->loop, &c->tcp);
    uv_timer_init(&k->w->loop, &c->timer);
    c->tcp.data = c->timer.data = c->connect.data = c;
    srv->checking = true;
    k->in_flight++;
    uv_timer_start(&c->timer, px_check_timeout, (uint64_t)h->timeout_ms, 0);
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr->sa,
                       px_check_connected) < 0)
        px_check_finish(c, false, "cannot connect");
}

/* The servers of the worker's current config whose upstream has a path. */
static void px_checker_tick(uv_timer_t *t)
{
    struct px_checker *k = t->data;
    struct worker *w = k->w;
    if (k->stopping || !w->cur)
        return;
    const struct config *cfg = w->cur->cfg;
    uint64_t now = uv_now(&w->loop);
    for (int u = 0; u < cfg->n_upstreams; u++) {
        const struct cfg_upstream *up = &cfg->upstreams[u];
        const struct px_upstream_conf *uc = px_upstream_conf(up);
        if (!uc || !uc->health.enabled || !uc->health.path)
            continue;
        for (int s = 0; s < up->n_servers; s++) {
            struct px_server *srv = px_server_of(w->cur, u, s);
            if (!srv || srv->checking || now < srv->next_check_ms)
                continue;
            srv->next_check_ms = now + (uint64_t)uc->health.interval_ms;
            px_check_start(k, srv, up, &up->servers[s], &uc->health);
        }
    }
}

struct px_checker *px_checker_start(struct worker *w)
{
    struct px_checker *k = sl_calloc(1, sizeof(*k));
    k->w = w;
    uv_timer_init(&w->loop, &k->tick);
    k->tick.data = k;
    uv_timer_start(&k->tick, px_checker_tick, 10, PX_CHECK_TICK_MS);
    return k;
}

void px_checker_stop(struct px_checker *k)
{
    k->stopping = true;
    uv_timer_stop(&k->tick);
    if (k->in_flight == 0)
        worker_close_handle(k->w, (uv_handle_t *)&k->tick);
    /* else: the last check's close callback closes the tick. The checker
     * itself is freed by px_checker_free after the loop ended. */
}

void px_checker_free(struct px_checker *k)
{
    free(k);
}

void px_health_metrics(struct px_server *const *servers, int n, struct buf *out)
{
    buf_append_str(out, "# HELP sluice_upstream_healthy 1 while an upstream server takes "
                        "requests, 0 while it is down.\n# TYPE sluice_upstream_healthy gauge\n");
    for (int i = 0; i < n; i++) {
        char name[96], addr[160];
        metrics_label_escape(name, sizeof(name), servers[i]->group->name);
        metrics_label_escape(addr, sizeof(addr), servers[i]->addr);
        buf_appendf(out, "sluice_upstream_healthy{upstream=\"%s\",server=\"%s\"} %d\n", name, addr,
                    !__atomic_load_n(&servers[i]->down, __ATOMIC_RELAXED));
    }
    buf_append_str(out, "# HELP sluice_upstream_health_checks_total Active health checks, by "
                        "result.\n# TYPE sluice_upstream_health_checks_total counter\n");
    for (int i = 0; i < n; i++) {
        char name[96], addr[160];
        metrics_label_escape(name, sizeof(name), servers[i]->group->name);
        metrics_label_escape(addr, sizeof(addr), servers[i]->addr);
        buf_appendf(
            out,
            "sluice_upstream_health_checks_total{upstream=\"%s\",server=\"%s\",result=\"ok\"} "
            "%llu\n",
            name, addr,
            (unsigned long long)__atomic_load_n(&servers[i]->checks_ok, __ATOMIC_RELAXED));
        buf_appendf(
            out,
            "sluice_upstream_health_checks_total{upstream=\"%s\",server=\"%s\",result="
            "\"failed\"} %llu\n",
            name, addr,
            (unsigned long long)__atomic_load_n(&servers[i]->checks_failed, __ATOMIC_RELAXED));
    }
}
