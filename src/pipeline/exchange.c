#include "pipeline/exchange.h"

#include <jansson.h>
#include <llhttp.h>

#include "pipeline/gateway.h"
#include "pipeline/pipeline.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/str.h"

/* Most requests fit their parsed headers and strings in the first block. */
#define EXCHANGE_ARENA_FIRST 4096

struct exchange *exchange_new(struct worker *w, const struct exchange_sink *sink, struct conn *c,
                              bool admin)
{
    struct arena *a = arena_pool_get(&w->arenas, EXCHANGE_ARENA_FIRST);
    struct exchange *x = arena_calloc(a, sizeof(*x));
    x->arena = a;
    x->conn = c;
    x->sink = sink;
    x->worker = w;
    x->hold = wcfg_acquire(w);
    x->cfg = x->hold->cfg;
    const struct pipeline *p = &w->gw->pipelines[admin ? 1 : 0];
    x->stages = p->stages;
    x->n_stages = p->n_stages;
    x->admin = admin;
    x->content_length = -1;
    x->body_q_tail = &x->body_q;
    x->start_us = clock_mono_us();
    return x;
}

/* A detached exchange's response goes nowhere; it ends the exchange. */
static void exchange_detached_head(struct exchange *x, int status, const struct sl_headers *h,
                                   int64_t content_length, bool no_body)
{
}
static void exchange_detached_body(struct exchange *x, const char *data, size_t len) {}
static void exchange_detached_end(struct exchange *x)
{
    exchange_free(x); /* nobody else will: it has no connection */
}
static void exchange_detached_nop(struct exchange *x) {}
static size_t exchange_detached_pending(const struct exchange *x)
{
    return 0;
}

static const struct exchange_sink exchange_detached_sink = {
    .head = exchange_detached_head,
    .body = exchange_detached_body,
    .end = exchange_detached_end,
    .abort = exchange_detached_nop,
    .send_continue = exchange_detached_nop,
    .pending = exchange_detached_pending,
    .pause_body = exchange_detached_nop,
    .resume_body = exchange_detached_nop,
};

struct exchange *exchange_new_detached(struct worker *w, const stage_fn *stages, int n_stages)
{
    struct arena *a = arena_new(EXCHANGE_ARENA_FIRST);
    struct exchange *x = arena_calloc(a, sizeof(*x));
    x->arena = a;
    x->worker = w;
    x->hold = wcfg_acquire(w);
    x->cfg = x->hold->cfg;
    x->sink = &exchange_detached_sink;
    x->stages = stages;
    x->n_stages = n_stages;
    x->detached = true;
    x->content_length = -1;
    x->body_q_tail = &x->body_q;
    x->start_us = clock_mono_us();
    x->request_done = true;
    return x;
}

static void exchange_drop_body_queue(struct exchange *x)
{
    struct body_chunk *b = x->body_q;
    while (b) {
        struct body_chunk *next = b->next;
        free(b);
        b = next;
    }
    x->body_q = NULL;
    x->body_q_tail = &x->body_q;
    x->body_q_bytes = 0;
}

void exchange_free(struct exchange *x)
{
    struct exchange_hook *h = x->hooks;
    x->hooks = NULL;
    for (; h; h = h->next)
        h->fn(x, h->arg);
    exchange_drop_body_queue(x);
    wcfg_release(x->hold);
    /* A detached exchange may end where its worker's pool is not ours to
     * touch; the others end on their worker's loop. */
    if (x->detached)
        arena_free(x->arena);
    else
        arena_pool_put(&x->worker->arenas, x->arena);
}

void exchange_on_end(struct exchange *x, exchange_hook_fn fn, void *arg)
{
    struct exchange_hook *h = arena_alloc(x->arena, sizeof(*h));
    h->fn = fn;
    h->arg = arg;
    h->next = x->hooks;
    x->hooks = h;
}

/* Run stages from x->stage until one answers or waits. */
static void exchange_continue(struct exchange *x)
{
    while (x->stage < x->n_stages) {
        enum stage_result r = x->stages[x->stage](x);
        if (r != STAGE_NEXT)
            return;
        x->stage++;
    }
    /* Every stage passed and none answered: a pipeline without a terminal stage. */
    exchange_respond_error(x, 500, "no stage answered the request");
}

void exchange_run(struct exchange *x)
{
    x->stage = 0;
    exchange_continue(x);
}

void exchange_resume(struct exchange *x)
{
    x->stage++;
    exchange_continue(x);
}

void sl_headers_add(struct arena *a, struct sl_headers *h, const char *name, size_t name_len,
                    const char *value, size_t value_len)
{
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        h->v = arena_realloc(a, h->v, sizeof(*h->v) * (size_t)h->cap, sizeof(*h->v) * (size_t)cap);
        h->cap = cap;
    }
    struct sl_header *e = &h->v[h->n++];
    e->name = arena_strndup(a, name, name_len);
    e->name_len = name_len;
    e->value = arena_strndup(a, value, value_len);
    e->value_len = value_len;
}

void exchange_add_header(struct exchange *x, const char *name, const char *value)
{
    sl_headers_add(x->arena, &x->resp_extra, name, strlen(name), value, strlen(value));
}

void exchange_set_header(struct exchange *x, const char *name, const char *value)
{
    size_t len = strlen(name);
    for (int i = 0; i < x->resp_extra.n; i++) {
        struct sl_header *h = &x->resp_extra.v[i];
        if (str_ieq(h->name, h->name_len, name)) {
            h->value = arena_strndup(x->arena, value, strlen(value));
            h->value_len = strlen(value);
            return;
        }
    }
    sl_headers_add(x->arena, &x->resp_extra, name, len, value, strlen(value));
}

const struct sl_header *exchange_req_header(const struct exchange *x, const char *name)
{
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *h = &x->req_headers.v[i];
        if (str_ieq(h->name, h->name_len, name))
            return h;
    }
    return NULL;
}

void exchange_respond(struct exchange *x, int status, const char *content_type, const char *body,
                      size_t len)
{
    struct sl_headers h = {0};
    if (content_type)
        sl_headers_add(x->arena, &h, "Content-Type", 12, content_type, strlen(content_type));
    sl_headers_add(x->arena, &h, "Cache-Control", 13, "no-store", 8);
    bool no_body = x->method == HTTP_HEAD || status == 204 || status == 304;
    exchange_send_head(x, status, &h, (int64_t)len, no_body);
    exchange_send_body(x, body, len);
    exchange_send_end(x);
}

void exchange_send_head(struct exchange *x, int status, const struct sl_headers *headers,
                        int64_t content_length, bool no_body)
{
    if (x->response_started)
        return;
    for (struct response_filter *f = x->filters; f; f = f->next)
        if (f->head && f->head(x, f->arg, status, headers, content_length, no_body))
            return;
    x->response_started = true;
    x->status = status;
    x->sink->head(x, status, headers, content_length, no_body);
}

void exchange_send_body(struct exchange *x, const char *data, size_t len)
{
    if (x->response_done || !x->response_started || !len)
        return;
    for (struct response_filter *f = x->filters; f; f = f->next)
        if (f->body)
            f->body(x, f->arg, data, len);
    x->sink->body(x, data, len);
}

void exchange_send_end(struct exchange *x)
{
    if (x->response_done || !x->response_started)
        return;
    x->response_done = true;
    for (struct response_filter *f = x->filters; f; f = f->next)
        if (f->end)
            f->end(x, f->arg);
    x->sink->end(x);
}

void exchange_send_abort(struct exchange *x)
{
    x->sink->abort(x);
}

void exchange_send_continue(struct exchange *x)
{
    x->sink->send_continue(x);
}

size_t exchange_pending_output(const struct exchange *x)
{
    return x->sink->pending(x);
}

void exchange_pause_body(struct exchange *x)
{
    x->sink->pause_body(x);
}

void exchange_resume_body(struct exchange *x)
{
    x->sink->resume_body(x);
}

void exchange_add_filter(struct exchange *x, struct response_filter *f)
{
    struct response_filter **at = &x->filters;
    while (*at)
        at = &(*at)->next;
    f->next = NULL;
    *at = f;
}

void exchange_remove_filter(struct exchange *x, struct response_filter *f)
{
    for (struct response_filter **at = &x->filters; *at; at = &(*at)->next) {
        if (*at == f) {
            *at = f->next;
            return;
        }
    }
}

void exchange_respond_error(struct exchange *x, int status, const char *message)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"error\": \"");
    json_str_append(&b, http_reason(status));
    buf_append_str(&b, "\", \"message\": \"");
    json_str_append(&b, message);
    buf_append_str(&b, "\"}\n");
    exchange_respond(x, status, "application/json", b.data, b.len);
    buf_release(&b);
}

void exchange_respond_json(struct exchange *x, int status, json_t *doc)
{
    char *body = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!body) {
        exchange_respond_error(x, 500, "out of memory");
        return;
    }
    size_t len = strlen(body);
    char *nl = sl_realloc(body, len + 2);
    nl[len] = '\n';
    nl[len + 1] = '\0';
    exchange_respond(x, status, "application/json", nl, len + 1);
    free(nl);
}

void exchange_set_body_sink(struct exchange *x, body_sink_fn sink)
{
    x->body_sink = sink;
    struct body_chunk *b = x->body_q;
    x->body_q = NULL;
    x->body_q_tail = &x->body_q;
    x->body_q_bytes = 0;
    while (b) {
        struct body_chunk *next = b->next;
        sink(x, b->data, b->len, false);
        free(b);
        b = next;
    }
    if (x->request_done)
        sink(x, NULL, 0, true);
}

void exchange_requeue_body(struct exchange *x, const char *data, size_t len)
{
    x->body_sink = NULL;
    if (!len)
        return;
    struct body_chunk *b = sl_malloc(sizeof(*b) + len);
    b->len = len;
    memcpy(b->data, data, len);
    b->next = x->body_q;
    if (!x->body_q)
        x->body_q_tail = &b->next;
    x->body_q = b;
    x->body_q_bytes += len;
}

void exchange_body_data(struct exchange *x, const char *data, size_t len, bool end)
{
    if (x->body_sink) {
        if (len || end)
            x->body_sink(x, data, len, end);
        return;
    }
    if (!len)
        return;
    /* No consumer yet (a stage is still deciding): keep the bytes, and stop
     * reading when too many wait, so a slow decision cannot make us buffer a
     * whole upload. */
    struct body_chunk *b = sl_malloc(sizeof(*b) + len);
    b->next = NULL;
    b->len = len;
    memcpy(b->data, data, len);
    *x->body_q_tail = b;
    x->body_q_tail = &b->next;
    x->body_q_bytes += len;
    if (x->body_q_bytes >= SL_BODY_HIGH_WATER)
        exchange_pause_body(x);
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        break;
    }
    if (status >= 500)
        return "Server Error";
    if (status >= 400)
        return "Client Error";
    return "Unknown";
}

struct read_body {
    struct buf data;
    size_t max;
    bool too_big;
    void (*done)(struct exchange *x, const char *body, size_t len);
};

static void exchange_read_body_release(struct exchange *x, void *arg)
{
    struct read_body *b = arg;
    buf_release(&b->data);
}

static void exchange_read_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct read_body *b = x->read_body;
    if (len && b->data.len + len <= b->max)
        buf_append(&b->data, data, len);
    else if (len)
        b->too_big = true;
    if (!end)
        return;
    if (b->too_big) {
        char msg[64];
        snprintf(msg, sizeof(msg), "this request's body is limited to %zu bytes", b->max);
        exchange_respond_error(x, 413, msg);
        return;
    }
    b->done(x, b->data.data ? b->data.data : "", b->data.len);
}

enum stage_result exchange_read_body(struct exchange *x, size_t max,
                                     void (*done)(struct exchange *x, const char *body, size_t len))
{
    struct read_body *b = arena_calloc(x->arena, sizeof(*b));
    b->max = max;
    b->done = done;
    x->read_body = b;
    exchange_on_end(x, exchange_read_body_release, b);
    exchange_set_body_sink(x, exchange_read_body_sink);
    return STAGE_WAIT;
}
