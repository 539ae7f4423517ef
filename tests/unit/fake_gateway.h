#ifndef SLUICE_TEST_FAKE_GATEWAY_H
#define SLUICE_TEST_FAKE_GATEWAY_H
/* A gateway without sockets, for running the real stages in unit tests
 * (ARCHITECTURE.md, "Modules": any stage can be tested without a socket).
 *
 * fake_gw_new(yaml) loads <yaml> (a "store:" section with a fresh data_dir
 * is appended, so the YAML must not have one), builds the pipelines, runs
 * every module's init_process, and sets up one worker on its own loop the
 * way net/worker.c does (init_worker, wcfg_new, start_worker). Its stage
 * array is the public pipeline with the proxy (the terminal stage) replaced
 * by a fake upstream that answers from fx->up.
 *
 * fake_request(fx, "GET", "/path?q", "Name", "value", ..., NULL) builds an
 * exchange on a fake sink, filled as net/conn.c fills it from a parsed
 * request without a body, runs it, runs the loop (bounded) while a stage
 * waits, and ends the exchange once answered, as the connection does
 * (fake_done: every module's finish hook, then exchange_free). The returned
 * struct fake_resp holds what the client saw and the identity the stages
 * gave the request. For a finer grip, fake_start builds the exchange
 * (r->x) without running it: the test calls exchange_run(r->x), fake_wait
 * and fake_done itself.
 *
 * fake_gw_free(fx) frees what is still open, stops the worker, runs the
 * loop until its handles have closed, and tears everything down in
 * reverse, so that LeakSanitizer sees every byte back. Tests pass it to
 * cmocka as teardown through fake_gw_teardown, which also runs after a
 * failed assertion.
 *
 * Header-only: each test is one executable. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "modules.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "pipeline/exchange.h"
#include "pipeline/gateway.h"
#include "pipeline/module.h"
#include "pipeline/pipeline.h"
#include "support.h"

#define FAKE_MAX_HEADERS 64
#define FAKE_UP_MAX_HEADERS 16
/* How long fake_request runs the loop for a waiting stage (1 ms steps). */
#define FAKE_WAIT_STEPS 3000

struct fake_header {
    char *name, *value;
};

/* A copy of a struct identity that outlives its exchange; "" stands for a
 * NULL string. */
struct fake_identity {
    enum identity_kind kind;
    char id[96];
    char tier[128];
    bool exempt;
    char key_id[64];
    char label[160];
    char scopes[512];
};

/* What the client of one exchange saw through the sink. */
struct fake_resp {
    struct fake_gw *fx;
    struct exchange *x;            /* NULL after fake_done */
    struct fake_identity identity; /* x->identity when the exchange ended */
    int status;                    /* 0: no head yet */
    int64_t content_length;
    bool no_body;
    int heads, body_calls, ends, aborts, continues;
    bool finished; /* the finish hooks ran (fake_done) */
    /* The head's headers, then x->resp_extra, as conn.c writes them. */
    struct fake_header headers[FAKE_MAX_HEADERS];
    int n_headers;
    char *body; /* every body part the client got, NUL-terminated */
    size_t body_len;
    struct fake_resp *next;
};

/* The fake upstream, the terminal stage of fx->stages. */
struct fake_upstream {
    int status;                                       /* 0: 200 */
    const char *headers[2 * FAKE_UP_MAX_HEADERS + 1]; /* name, value, ..., NULL */
    const char *body;                                 /* NULL: "hello from upstream\n" */
    int chunks;                                       /* body sent in this many parts (0: 1) */
    bool defer;                                       /* STAGE_WAIT; fake_upstream_answer answers */
    /* What it saw. */
    int calls;
    struct exchange *waiting; /* deferred and not answered yet */
    struct fake_identity last_identity;
};

struct fake_gw {
    struct gateway gw;
    struct worker w;
    char dir[64]; /* mkdtemp; the store's data_dir is <dir>/data */
    char data_dir[96];
    int started; /* modules whose init_process ran */
    bool worker_up;
    stage_fn stages[SL_MAX_STAGES];
    int n_stages;
    struct fake_upstream up;
    char peer_ip[64]; /* of the next requests; "203.0.113.7" by default */
    struct fake_resp *resps;
};

/* ---- the sink ------------------------------------------------------------------ */

static inline struct fake_gw *fake_gw_of(const struct exchange *x)
{
    return (struct fake_gw *)((char *)x->worker - offsetof(struct fake_gw, w));
}

static inline struct fake_resp *fake_resp_of(const struct exchange *x)
{
    for (struct fake_resp *r = fake_gw_of(x)->resps; r; r = r->next)
        if (r->x == x)
            return r;
    fail_msg("the fake sink got an exchange it did not make");
    return NULL;
}

static inline char *fake_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static inline void fake_record_header(struct fake_resp *r, const struct sl_header *h)
{
    assert_true(r->n_headers < FAKE_MAX_HEADERS);
    r->headers[r->n_headers].name = fake_strndup(h->name, h->name_len);
    r->headers[r->n_headers].value = fake_strndup(h->value, h->value_len);
    r->n_headers++;
}

static inline void fake_sink_head(struct exchange *x, int status, const struct sl_headers *headers,
                                  int64_t content_length, bool no_body)
{
    struct fake_resp *r = fake_resp_of(x);
    r->heads++;
    r->status = status;
    r->content_length = content_length;
    r->no_body = no_body;
    for (int i = 0; headers && i < headers->n; i++)
        fake_record_header(r, &headers->v[i]);
    for (int i = 0; i < x->resp_extra.n; i++)
        fake_record_header(r, &x->resp_extra.v[i]);
}

/* As net/conn.c, a response without a body (HEAD, 204, 304) drops what
 * the producer sends anyway. */
static inline void fake_sink_body(struct exchange *x, const char *data, size_t len)
{
    struct fake_resp *r = fake_resp_of(x);
    r->body_calls++;
    if (r->no_body)
        return;
    r->body = realloc(r->body, r->body_len + len + 1);
    assert_non_null(r->body);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
}

static inline void fake_sink_end(struct exchange *x)
{
    fake_resp_of(x)->ends++;
}

static inline void fake_sink_abort(struct exchange *x)
{
    fake_resp_of(x)->aborts++;
}

static inline void fake_sink_continue(struct exchange *x)
{
    fake_resp_of(x)->continues++;
}

static inline size_t fake_sink_pending(const struct exchange *x)
{
    return 0; /* the fake client reads everything at once */
}

static inline void fake_sink_nop(struct exchange *x) {}

static const struct exchange_sink fake_sink = {
    .head = fake_sink_head,
    .body = fake_sink_body,
    .end = fake_sink_end,
    .abort = fake_sink_abort,
    .send_continue = fake_sink_continue,
    .pending = fake_sink_pending,
    .pause_body = fake_sink_nop,
    .resume_body = fake_sink_nop,
};

/* The first header <name> (case-insensitive) <r> received, or NULL. */
static inline const char *fake_header(const struct fake_resp *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* How many headers <name> <r> received. */
static inline int fake_header_count(const struct fake_resp *r, const char *name)
{
    int n = 0;
    for (int i = 0; i < r->n_headers; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

/* Header <name> of <r> as a number; fails the test when absent. */
static inline long long fake_header_ll(const struct fake_resp *r, const char *name)
{
    const char *v = fake_header(r, name);
    if (!v)
        fail_msg("no %s header", name);
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0')
        fail_msg("%s: %s is not a number", name, v);
    return n;
}

static inline void fake_identity_copy(struct fake_identity *out, const struct identity *id)
{
    out->kind = id->kind;
    snprintf(out->id, sizeof(out->id), "%s", id->id);
    snprintf(out->tier, sizeof(out->tier), "%s", id->tier ? id->tier : "");
    out->exempt = id->exempt;
    snprintf(out->key_id, sizeof(out->key_id), "%s", id->key_id ? id->key_id : "");
    snprintf(out->label, sizeof(out->label), "%s", id->label ? id->label : "");
    snprintf(out->scopes, sizeof(out->scopes), "%s", id->scopes ? id->scopes : "");
}

/* ---- the fake upstream ----------------------------------------------------------- */

static inline void fake_upstream_send(struct exchange *x)
{
    struct fake_upstream *up = &fake_gw_of(x)->up;
    struct sl_headers h = {0};
    for (int i = 0; up->headers[i] && up->headers[i + 1]; i += 2)
        sl_headers_add(x->arena, &h, up->headers[i], strlen(up->headers[i]), up->headers[i + 1],
                       strlen(up->headers[i + 1]));
    const char *body = up->body ? up->body : "hello from upstream\n";
    size_t len = strlen(body);
    int status = up->status ? up->status : 200;
    bool no_body = x->method == HTTP_HEAD || status == 204 || status == 304;
    exchange_send_head(x, status, &h, (int64_t)len, no_body);
    int chunks = up->chunks > 0 ? up->chunks : 1;
    size_t off = 0;
    for (int i = 0; i < chunks && !no_body; i++) {
        size_t n = i == chunks - 1 ? len - off : len / (size_t)chunks;
        exchange_send_body(x, body + off, n);
        off += n;
    }
    exchange_send_end(x);
}

/* The terminal stage in place of the proxy: answers from fx->up, at once or
 * (defer) when the test calls fake_upstream_answer. */
static inline enum stage_result fake_upstream_stage(struct exchange *x)
{
    struct fake_upstream *up = &fake_gw_of(x)->up;
    up->calls++;
    fake_identity_copy(&up->last_identity, &x->identity);
    if (up->defer) {
        assert_null(up->waiting);
        up->waiting = x;
        return STAGE_WAIT;
    }
    fake_upstream_send(x);
    return STAGE_DONE;
}

/* Answer the deferred request now. */
static inline void fake_upstream_answer(struct fake_gw *fx)
{
    struct exchange *x = fx->up.waiting;
    assert_non_null(x);
    fx->up.waiting = NULL;
    fake_upstream_send(x);
}

/* ---- the gateway ------------------------------------------------------------------ */

/* The public pipeline with the proxy's stage replaced by the fake upstream. */
static inline void fake_gw_stages(struct fake_gw *fx)
{
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    stage_fn proxy = NULL;
    for (int m = 0; m < n; m++)
        if (mods[m] == &proxy_module)
            for (int s = 0; s < mods[m]->n_stages; s++)
                if (mods[m]->stages[s].phase == SL_PHASE_PROXY && !mods[m]->stages[s].admin)
                    proxy = mods[m]->stages[s].fn;
    assert_non_null(proxy);
    const struct pipeline *p = &fx->gw.pipelines[0];
    bool replaced = false;
    for (int i = 0; i < p->n_stages; i++) {
        fx->stages[i] = p->stages[i] == proxy ? fake_upstream_stage : p->stages[i];
        replaced |= p->stages[i] == proxy;
    }
    fx->n_stages = p->n_stages;
    assert_true(replaced);
}

static inline void fake_gw_free(struct fake_gw *fx);

/* A gateway configured by <yaml>; fails the test when it does not load or
 * start. */
static inline struct fake_gw *fake_gw_new(const char *yaml)
{
    struct fake_gw *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sluice-stage-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->data_dir, sizeof(fx->data_dir), "%s/data", fx->dir);
    snprintf(fx->peer_ip, sizeof(fx->peer_ip), "203.0.113.7");

    size_t len = strlen(yaml) + strlen(fx->data_dir) + 64;
    char *text = malloc(len);
    assert_non_null(text);
    int n = snprintf(text, len, "%s\nstore:\n  data_dir: \"%s\"\n", yaml, fx->data_dir);
    char *err = NULL;
    struct config *cfg = cfg_load_string(text, (size_t)n, "test.yaml", NULL, NULL, &err);
    free(text);
    if (!cfg) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        fake_gw_free(fx);
        fail_msg("the test's config does not load");
    }

    struct gateway *gw = &fx->gw;
    pthread_mutex_init(&gw->lock, NULL);
    gw->cfg = cfg;
    gw->gen = 1;
    gw->workers = &fx->w;
    gw->n_workers = 1;
    pipeline_build(&gw->pipelines[0], &gw->pipelines[1]);
    fake_gw_stages(fx);
    int n_mods;
    const struct sl_module *const *mods = sl_module_list(&n_mods);
    for (; fx->started < n_mods; fx->started++) {
        const struct sl_module *m = mods[fx->started];
        if (m->init_process && m->init_process(gw, &err) != 0) {
            fprintf(stderr, "%s: %s\n", m->name, err ? err : "?");
            free(err);
            fake_gw_free(fx);
            fail_msg("a module's init_process failed");
        }
    }

    struct worker *w = &fx->w;
    w->gw = gw;
    w->admin_fd = -1;
    assert_int_equal(uv_loop_init(&w->loop), 0);
    w->metrics = metrics_new();
    cfg_ref(cfg);
    w->cur = wcfg_new(w, cfg);
    w->cfg_gen = gw->gen;
    w->rid_state = 0x5eed;
    SL_EACH_MODULE(false, init_worker, w);
    SL_EACH_MODULE(false, start_worker, w);
    fx->worker_up = true;
    return fx;
}

/* Run the loop once without blocking, then nap <ms> (async work on other
 * threads, timers). */
static inline void fake_gw_step(struct fake_gw *fx, int ms)
{
    uv_run(&fx->w.loop, UV_RUN_NOWAIT);
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
    uv_run(&fx->w.loop, UV_RUN_NOWAIT);
}

/* Run the loop until <r>'s response has ended (bounded). */
static inline void fake_wait(struct fake_resp *r)
{
    for (int i = 0; i < FAKE_WAIT_STEPS && !r->ends && !r->aborts; i++)
        fake_gw_step(r->fx, 1);
    if (!r->ends && !r->aborts)
        fail_msg("the exchange did not finish");
}

/* End <r>'s exchange as the connection would: finish hooks, then free. */
static inline void fake_done(struct fake_resp *r)
{
    if (!r->x)
        return;
    fake_identity_copy(&r->identity, &r->x->identity);
    pipeline_finish(r->x);
    r->finished = true;
    exchange_free(r->x);
    r->x = NULL;
}

/* Method <name> as llhttp numbers it. */
static inline int fake_method(const char *name)
{
    for (int m = 0; m <= HTTP_SOURCE; m++) {
        const char *n = llhttp_method_name((llhttp_method_t)m);
        if (n && strcmp(n, name) == 0)
            return m;
    }
    fail_msg("unknown method %s", name);
    return -1;
}

/* Starts a request: <method> <target> with the NULL-terminated name, value
 * pairs in <ap> (a Host header is added when none is given); the exchange is
 * filled as net/conn.c fills it, its request complete (no body). Nothing has
 * run yet. */
static inline struct fake_resp *fake_start_v(struct fake_gw *fx, const char *method,
                                             const char *target, va_list ap)
{
    struct fake_resp *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->fx = fx;
    r->next = fx->resps;
    fx->resps = r;
    struct exchange *x = exchange_new(&fx->w, &fake_sink, NULL, false);
    r->x = x;
    x->stages = fx->stages;
    x->n_stages = fx->n_stages;

    x->method = fake_method(method);
    x->method_name = llhttp_method_name((llhttp_method_t)x->method);
    x->http_minor = 1;
    size_t tlen = strlen(target);
    x->target = arena_strndup(x->arena, target, tlen);
    x->target_len = tlen;
    const char *q = strchr(x->target, '?');
    size_t plen = q ? (size_t)(q - x->target) : tlen;
    x->path = arena_strndup(x->arena, target, plen);
    x->path_len = plen;
    if (q) {
        x->query = q + 1;
        x->query_len = tlen - plen - 1;
    }
    const char *name;
    while ((name = va_arg(ap, const char *))) {
        const char *value = va_arg(ap, const char *);
        sl_headers_add(x->arena, &x->req_headers, name, strlen(name), value, strlen(value));
    }
    const struct sl_header *host = exchange_req_header(x, "host");
    if (!host) {
        sl_headers_add(x->arena, &x->req_headers, "Host", 4, "api.test", 8);
        host = exchange_req_header(x, "host");
    }
    x->host = host->value;
    x->host_len = host->value_len;
    x->content_length = -1;
    x->client_keep_alive = true;
    worker_request_id(&fx->w, x->request_id);
    snprintf(x->peer_ip, sizeof(x->peer_ip), "%s", fx->peer_ip);
    snprintf(x->client_ip, sizeof(x->client_ip), "%s", fx->peer_ip);
    x->request_done = true;
    return r;
}

static inline struct fake_resp *fake_start(struct fake_gw *fx, const char *method,
                                           const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    struct fake_resp *r = fake_start_v(fx, method, target, ap);
    va_end(ap);
    return r;
}

/* Runs a request (see fake_start_v) through the stages; when one waits,
 * runs the loop until the response has ended; then ends the exchange. */
static inline struct fake_resp *fake_request(struct fake_gw *fx, const char *method,
                                             const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    struct fake_resp *r = fake_start_v(fx, method, target, ap);
    va_end(ap);
    exchange_run(r->x);
    fake_wait(r);
    fake_done(r);
    return r;
}

static inline void fake_resp_free(struct fake_resp *r)
{
    for (int i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->body);
    free(r);
}

static inline void fake_gw_free(struct fake_gw *fx)
{
    if (!fx)
        return;
    /* Exchanges still open end as if their clients had gone. */
    fx->up.waiting = NULL;
    for (struct fake_resp *r = fx->resps; r; r = r->next)
        if (r->x) {
            exchange_free(r->x);
            r->x = NULL;
        }
    struct worker *w = &fx->w;
    if (fx->worker_up) {
        SL_EACH_MODULE(true, stop_worker, w);
        wcfg_retire(w->cur);
        w->cur = NULL;
        /* Every handle closes: modules' timers, the store's answers. */
        for (int i = 0; i < FAKE_WAIT_STEPS && (w->open_handles > 0 || uv_loop_alive(&w->loop));
             i++)
            fake_gw_step(fx, 1);
        assert_int_equal(w->open_handles, 0);
        SL_EACH_MODULE(true, dispose_worker, w);
        assert_int_equal(uv_loop_close(&w->loop), 0);
        conn_worker_release(w); /* the input buffers fuzz_http's connections pooled */
        metrics_free(w->metrics);
    }
    int n_mods;
    const struct sl_module *const *mods = sl_module_list(&n_mods);
    for (int m = fx->started - 1; m >= 0; m--)
        if (mods[m]->dispose_process)
            mods[m]->dispose_process(&fx->gw);
    if (fx->gw.cfg) {
        cfg_unref(fx->gw.cfg);
        pthread_mutex_destroy(&fx->gw.lock);
    }
    while (fx->resps) {
        struct fake_resp *next = fx->resps->next;
        fake_resp_free(fx->resps);
        fx->resps = next;
    }
    test_rm_rf(fx->dir);
    free(fx);
}

/* cmocka teardown: frees the gateway a test stored in *<state>. */
static inline int fake_gw_teardown(void **state)
{
    fake_gw_free(*state);
    *state = NULL;
    return 0;
}

/* A gateway for a test, freed by fake_gw_teardown even when the test fails. */
static inline struct fake_gw *fake_gw_start(void **state, const char *yaml)
{
    struct fake_gw *fx = fake_gw_new(yaml);
    *state = fx;
    return fx;
}

#endif
