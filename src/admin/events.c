/* The admin API's event stream (admin/events.h). */
#include "admin/events.h"
#include "admin/stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "modules.h"
#include "obs/metrics.h"
#include "util/limits.h"
#include "util/mem.h"

/* One event as it goes on the wire, queued for one worker. */
struct events_msg {
    struct events_msg *next;
    size_t len;
    char text[]; /* "event: <type>\ndata: <json>\n\n" */
};

struct events_worker;

/* One open stream; lives in its exchange's arena. */
struct events_client {
    struct events_client *next, *prev;
    struct exchange *x;
    struct events_worker *ew;
};

/* Counters of one worker: written on its loop, except EV_DROPPED (by
 * publishers, atomically). */
enum events_count { EV_SENT, EV_DROPPED, EV_CUT, EV_TICKS, EV_N };

/* worker->ctx[MOD_admin]. */
struct events_worker {
    uv_async_t async;
    uv_timer_t ping;
    /* The stats tick (admin/stats.h): runs while this worker has streams,
     * which is the admin listener's worker alone. <last> is the sample
     * the next tick diffs against. */
    uv_timer_t stats;
    struct stats_sample last;
    struct gateway *gw;
    pthread_mutex_t lock; /* guards head, tail, queued, open */
    struct events_msg *head, **tail;
    unsigned queued;
    bool open;                     /* <async> may be sent to (until stop_worker) */
    int n_clients;                 /* written on the loop; read by publishers (atomic) */
    struct events_client *clients; /* loop thread only */
    uint64_t counts[EV_N];
};

static struct events_worker *events_worker_of(struct worker *w)
{
    return w->ctx[MOD_admin];
}

/* ---- publishing (any thread) -------------------------------------------------------- */

static bool events_type_ok(const char *type)
{
    size_t len = strlen(type);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = type[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* "event: <type>\ndata: <json>\n\n"; a line break in <json> starts another
 * data line, which the client joins back with "\n" (SSE's rules), so any
 * text keeps its framing. */
static struct events_msg *events_msg_new(const char *type, const char *json, size_t len)
{
    size_t breaks = 0;
    for (size_t i = 0; i < len; i++)
        breaks += json[i] == '\n' || json[i] == '\r';
    size_t cap = 7 + strlen(type) + 7 + len + breaks * 6 + 3;
    struct events_msg *m = sl_malloc(sizeof(*m) + cap);
    m->next = NULL;
    char *p = m->text;
    p += snprintf(p, cap, "event: %s\ndata: ", type);
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '\r' || json[i] == '\n') {
            if (json[i] == '\r' && i + 1 < len && json[i + 1] == '\n')
                i++;
            memcpy(p, "\ndata: ", 7);
            p += 7;
            continue;
        }
        *p++ = json[i];
    }
    memcpy(p, "\n\n", 2);
    p += 2;
    m->len = (size_t)(p - m->text);
    return m;
}

void events_publish(struct gateway *gw, const char *type, const char *json, size_t len)
{
    if (!events_type_ok(type))
        return;
    for (int i = 0; i < gw->n_workers; i++) {
        struct events_worker *ew = events_worker_of(&gw->workers[i]);
        /* A client subscribing now misses this event: it was not there yet. */
        if (!ew || __atomic_load_n(&ew->n_clients, __ATOMIC_ACQUIRE) == 0)
            continue;
        if (len > SL_EVENTS_MAX_BYTES) {
            __atomic_fetch_add(&ew->counts[EV_DROPPED], 1, __ATOMIC_RELAXED);
            continue;
        }
        struct events_msg *m = events_msg_new(type, json, len);
        pthread_mutex_lock(&ew->lock);
        bool queued = ew->open && ew->queued < SL_EVENTS_QUEUE_MAX;
        if (queued) {
            *ew->tail = m;
            ew->tail = &m->next;
            ew->queued++;
            uv_async_send(&ew->async);
        }
        pthread_mutex_unlock(&ew->lock);
        if (!queued) {
            __atomic_fetch_add(&ew->counts[EV_DROPPED], 1, __ATOMIC_RELAXED);
            free(m);
        }
    }
}

/* ---- the streams (the worker's loop) ------------------------------------------------- */

/* Sends <text> to client <c>, or cuts it off when it has fallen too far
 * behind (which frees <c>). */
static void events_client_send(struct events_client *c, const char *text, size_t len, bool count)
{
    struct events_worker *ew = c->ew;
    if (exchange_pending_output(c->x) + len > SL_EVENTS_CLIENT_MAX_PENDING) {
        metrics_counter_add(&ew->counts[EV_CUT], 1);
        exchange_send_abort(c->x);
        return;
    }
    exchange_send_body(c->x, text, len);
    if (count)
        metrics_counter_add(&ew->counts[EV_SENT], 1);
}

static void events_broadcast(struct events_worker *ew, const char *text, size_t len, bool count)
{
    struct events_client *c = ew->clients;
    while (c) {
        struct events_client *next = c->next; /* sending may free <c>, and only <c> */
        events_client_send(c, text, len, count);
        c = next;
    }
}

static void events_on_async(uv_async_t *a)
{
    struct events_worker *ew = a->data;
    pthread_mutex_lock(&ew->lock);
    struct events_msg *m = ew->head;
    ew->head = NULL;
    ew->tail = &ew->head;
    ew->queued = 0;
    pthread_mutex_unlock(&ew->lock);
    while (m) {
        struct events_msg *next = m->next;
        events_broadcast(ew, m->text, m->len, true);
        free(m);
        m = next;
    }
}

static void events_on_ping(uv_timer_t *t)
{
    static const char ping[] = ": ping\n\n";
    events_broadcast(t->data, ping, sizeof(ping) - 1, false);
}

/* One computation for every stream of the gateway: sample, diff, render,
 * then publish the one text to all of them. */
static void events_on_stats(uv_timer_t *t)
{
    struct events_worker *ew = t->data;
    struct stats_sample cur;
    stats_sample(ew->gw, &cur);
    struct buf b = {0};
    stats_render(&ew->last, &cur, &b);
    ew->last = cur;
    metrics_counter_add(&ew->counts[EV_TICKS], 1);
    events_publish(ew->gw, "stats", b.data, b.len);
    buf_release(&b);
}

/* The end hook of a stream's exchange: the client left, was cut off, or
 * the gateway is draining. */
static void events_client_gone(struct exchange *x, void *arg)
{
    struct events_client *c = arg;
    struct events_worker *ew = c->ew;
    if (c->prev)
        c->prev->next = c->next;
    else
        ew->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (__atomic_sub_fetch(&ew->n_clients, 1, __ATOMIC_RELEASE) == 0) {
        uv_timer_stop(&ew->ping);
        uv_timer_stop(&ew->stats);
    }
}

void events_admin_stream(struct exchange *x, const struct sl_admin_call *call)
{
    struct events_worker *ew = events_worker_of(x->worker);
    if (!ew || !ew->open) {
        exchange_respond_error(x, 503, "the gateway is stopping");
        return;
    }
    if (ew->n_clients >= SL_EVENTS_MAX_CLIENTS) {
        exchange_respond_error(x, 503, "too many open event streams");
        return;
    }
    struct sl_headers h = {0};
    sl_headers_add(x->arena, &h, "Content-Type", 12, "text/event-stream", 17);
    sl_headers_add(x->arena, &h, "Cache-Control", 13, "no-store", 8);
    /* nginx in front would otherwise hold events back in its buffer. */
    sl_headers_add(x->arena, &h, "X-Accel-Buffering", 17, "no", 2);
    x->stream = true;
    exchange_send_head(x, 200, &h, -1, false);

    struct events_client *c = arena_calloc(x->arena, sizeof(*c));
    c->x = x;
    c->ew = ew;
    c->next = ew->clients;
    if (ew->clients)
        ew->clients->prev = c;
    ew->clients = c;
    if (__atomic_add_fetch(&ew->n_clients, 1, __ATOMIC_RELEASE) == 1) {
        uv_timer_start(&ew->ping, events_on_ping, SL_EVENTS_PING_MS, SL_EVENTS_PING_MS);
        /* The first tick diffs against now: a second of traffic, not
         * everything since the last viewer left. */
        stats_sample(ew->gw, &ew->last);
        uv_timer_start(&ew->stats, events_on_stats, SL_EVENTS_STATS_MS, SL_EVENTS_STATS_MS);
    }
    exchange_on_end(x, events_client_gone, c);
    /* Something at once: the client knows the stream is open. */
    static const char hello[] = ": connected\n\n";
    exchange_send_body(x, hello, sizeof(hello) - 1);
}

/* ---- the worker's lifecycle ------------------------------------------------------- */

void events_init_worker(struct worker *w)
{
    struct events_worker *ew = sl_calloc(1, sizeof(*ew));
    pthread_mutex_init(&ew->lock, NULL);
    ew->tail = &ew->head;
    uv_async_init(&w->loop, &ew->async, events_on_async);
    ew->async.data = ew;
    uv_timer_init(&w->loop, &ew->ping);
    ew->ping.data = ew;
    uv_timer_init(&w->loop, &ew->stats);
    ew->stats.data = ew;
    ew->gw = w->gw;
    ew->open = true;
    w->ctx[MOD_admin] = ew;
}

static void events_drop_queue(struct events_worker *ew)
{
    pthread_mutex_lock(&ew->lock);
    struct events_msg *m = ew->head;
    ew->head = NULL;
    ew->tail = &ew->head;
    ew->queued = 0;
    ew->open = false;
    pthread_mutex_unlock(&ew->lock);
    while (m) {
        struct events_msg *next = m->next;
        free(m);
        m = next;
    }
}

/* The worker stops once its last connection has closed, so no stream is
 * left; what is queued goes nowhere. */
void events_stop_worker(struct worker *w)
{
    struct events_worker *ew = events_worker_of(w);
    if (!ew || !ew->open)
        return;
    events_drop_queue(ew);
    worker_close_handle(w, (uv_handle_t *)&ew->async);
    worker_close_handle(w, (uv_handle_t *)&ew->ping);
    worker_close_handle(w, (uv_handle_t *)&ew->stats);
}

void events_dispose_worker(struct worker *w)
{
    struct events_worker *ew = events_worker_of(w);
    if (!ew)
        return;
    events_drop_queue(ew);
    pthread_mutex_destroy(&ew->lock);
    free(ew);
    w->ctx[MOD_admin] = NULL;
}

/* ---- metrics ------------------------------------------------------------------------ */

static const uint64_t *events_counts_of(struct worker *w)
{
    struct events_worker *ew = events_worker_of(w);
    return ew ? ew->counts : NULL;
}

void events_metrics(struct gateway *gw, struct buf *out)
{
    static const char *const results[] = {"sent", "dropped"};
    metrics_render_fixed(gw, out, "sluice_events_total",
                         "Events of GET /events, per stream: sent, or dropped (the worker's "
                         "queue was full).",
                         "result", results, 2, events_counts_of);
    uint64_t cut = 0, streams = 0, ticks = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        struct events_worker *ew = events_worker_of(&gw->workers[i]);
        if (!ew)
            continue;
        cut += __atomic_load_n(&ew->counts[EV_CUT], __ATOMIC_RELAXED);
        ticks += __atomic_load_n(&ew->counts[EV_TICKS], __ATOMIC_RELAXED);
        streams += (uint64_t)__atomic_load_n(&ew->n_clients, __ATOMIC_RELAXED);
    }
    metrics_render_single(out, "sluice_event_streams", "gauge", "Open GET /events streams.",
                          streams);
    metrics_render_single(out, "sluice_event_streams_cut_total", "counter",
                          "Event streams closed because the client fell behind.", cut);
    metrics_render_single(out, "sluice_events_stats_ticks_total", "counter",
                          "Stats ticks computed (one per second while a stream is open, "
                          "whatever the number of streams).",
                          ticks);
}
