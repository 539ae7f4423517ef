#include "obs/metrics.h"

#include <pthread.h>
#include <stdbool.h>

#include "pipeline/exchange.h"
#include "pipeline/module.h"
#include "util/clock.h"
#include "util/mem.h"

#define SERIES_LABEL 192
#define N_BUCKETS METRICS_N_BUCKETS
#define bucket_le metrics_bucket_le

/* Upper bounds of the latency histogram, in seconds. */
const double metrics_bucket_le[N_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,   1,    2.5,   5,    10};

/* One labelled counter. <used> is published with a release store after the
 * label is written, so the scraper (under <lock>) never sees half a label. */
struct series {
    int used;
    uint64_t count;
    char labels[SERIES_LABEL]; /* already in exposition form: route="/x",status="200" */
};

struct metrics_family {
    struct series *v;
    unsigned cap;         /* power of two */
    pthread_mutex_t lock; /* held when adding a series and when scraping */
    char overflow[SERIES_LABEL];
};
#define series_table metrics_family

/* The last counters used, by (route, status): the usual request finds its
 * counter without formatting a label or hashing it. Keyed by the route's
 * path pointer, so the cache is emptied whenever the worker takes a new
 * config (metrics_forget_routes). */
#define HOT_SLOTS 64
struct hot_counter {
    const char *route;
    int status;
    uint64_t *counter;
};

struct metrics {
    struct hot_counter hot[HOT_SLOTS];
    struct series_table requests;
    int64_t in_flight;
    uint64_t rejected_connections;
    uint64_t accept_deferred;
    uint64_t buckets[N_BUCKETS + 1];
    /* By the status's hundreds (the stats tick's rates), 429s apart: a
     * second counter on a line already written, rather than a scan of the
     * route x status series once a second. */
    uint64_t by_class[6];
    uint64_t status_429;
    uint64_t duration_count;
    uint64_t duration_sum_us;
};

static void series_table_init(struct series_table *t, unsigned cap)
{
    t->v = sl_calloc(cap, sizeof(*t->v));
    t->cap = cap;
    pthread_mutex_init(&t->lock, NULL);
}

static void series_table_release(struct series_table *t)
{
    free(t->v);
    pthread_mutex_destroy(&t->lock);
}

struct metrics *metrics_new(void)
{
    struct metrics *m = sl_calloc(1, sizeof(*m));
    series_table_init(&m->requests, SL_METRIC_SERIES);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    series_table_release(&m->requests);
    free(m);
}

#define counter_add metrics_counter_add

struct metrics_family *metrics_family_new(unsigned cap, const char *overflow)
{
    struct metrics_family *f = sl_calloc(1, sizeof(*f));
    series_table_init(f, cap);
    snprintf(f->overflow, sizeof(f->overflow), "%s", overflow);
    return f;
}

void metrics_family_free(struct metrics_family *f)
{
    if (!f)
        return;
    series_table_release(f);
    free(f);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The counter for <labels>, added if new; when the table is full, new label
 * sets fold into <overflow>. */
static uint64_t *series_find(struct series_table *t, const char *labels, const char *overflow)
{
    unsigned mask = t->cap - 1;
    unsigned i = (unsigned)fnv1a(labels) & mask;
    for (unsigned probes = 0; probes < t->cap; probes++, i = (i + 1) & mask) {
        struct series *s = &t->v[i];
        if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
            if (probes > t->cap / 2 && overflow)
                return series_find(t, overflow, NULL);
            pthread_mutex_lock(&t->lock);
            snprintf(s->labels, sizeof(s->labels), "%s", labels);
            __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&t->lock);
            return &s->count;
        }
        if (strcmp(s->labels, labels) == 0)
            return &s->count;
    }
    return NULL;
}

void metrics_label_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

void metrics_exchange_begin(struct metrics *m)
{
    __atomic_store_n(&m->in_flight, m->in_flight + 1, __ATOMIC_RELAXED);
}

void metrics_exchange_end(struct metrics *m, const struct exchange *x)
{
    __atomic_store_n(&m->in_flight, m->in_flight - 1, __ATOMIC_RELAXED);
    const char *path = x->route ? x->route->path : NULL;
    struct hot_counter *hot = &m->hot[((uintptr_t)path / 8 * 31 + (unsigned)x->status) % HOT_SLOTS];
    if (!hot->counter || hot->route != path || hot->status != x->status) {
        char route[96];
        metrics_label_escape(route, sizeof(route), path ? path : "-");
        char labels[SERIES_LABEL];
        snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", route, x->status);
        hot->counter = series_find(&m->requests, labels, "route=\"other\",status=\"other\"");
        hot->route = path;
        hot->status = x->status;
    }
    if (hot->counter)
        counter_add(hot->counter, 1);

    unsigned cls = (unsigned)x->status / 100;
    counter_add(&m->by_class[cls < 6 ? cls : 0], 1);
    if (x->status == 429)
        counter_add(&m->status_429, 1);

    int64_t us = clock_mono_us() - x->start_us;
    double sec = (double)us / 1e6;
    int b = 0;
    while (b < N_BUCKETS && sec > bucket_le[b])
        b++;
    counter_add(&m->buckets[b], 1);
    counter_add(&m->duration_count, 1);
    counter_add(&m->duration_sum_us, (uint64_t)(us > 0 ? us : 0));
}

void metrics_forget_routes(struct metrics *m)
{
    memset(m->hot, 0, sizeof(m->hot));
}

void metrics_family_add(struct metrics_family *f, const char *labels, uint64_t n)
{
    uint64_t *c = series_find(f, labels, f->overflow);
    if (c)
        counter_add(c, n);
}

void metrics_connection_rejected(struct metrics *m)
{
    counter_add(&m->rejected_connections, 1);
}

void metrics_accept_deferred(struct metrics *m)
{
    counter_add(&m->accept_deferred, 1);
}

static struct metrics_family *metrics_requests_of(struct worker *w)
{
    return &w->metrics->requests;
}

void metrics_render_family(struct gateway *gw, struct buf *out, const char *name, const char *help,
                           metrics_family_of_fn of)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    struct series_table merged;
    series_table_init(&merged, SL_METRIC_SERIES * 2);
    for (int w = 0; w < gw->n_workers; w++) {
        struct series_table *t = of(&gw->workers[w]);
        if (!t)
            continue;
        pthread_mutex_lock(&t->lock);
        for (unsigned i = 0; i < t->cap; i++) {
            if (!__atomic_load_n(&t->v[i].used, __ATOMIC_ACQUIRE))
                continue;
            uint64_t *c = series_find(&merged, t->v[i].labels, NULL);
            if (c)
                *c += __atomic_load_n(&t->v[i].count, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&t->lock);
    }
    for (unsigned i = 0; i < merged.cap; i++)
        if (merged.v[i].used)
            buf_appendf(out, "%s{%s} %llu\n", name, merged.v[i].labels,
                        (unsigned long long)merged.v[i].count);
    series_table_release(&merged);
}

void metrics_render_single(struct buf *out, const char *name, const char *type, const char *help,
                           unsigned long long value)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

void metrics_render_fixed(struct gateway *gw, struct buf *out, const char *name, const char *help,
                          const char *label, const char *const *names, int n,
                          metrics_counters_of_fn of)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = 0; i < n; i++) {
        uint64_t sum = 0;
        for (int w = 0; w < gw->n_workers; w++) {
            const uint64_t *v = of(&gw->workers[w]);
            if (v)
                sum += __atomic_load_n(&v[i], __ATOMIC_RELAXED);
        }
        buf_appendf(out, "%s{%s=\"%s\"} %llu\n", name, label, names[i], (unsigned long long)sum);
    }
}

void metrics_totals(struct gateway *gw, struct metrics_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; w < gw->n_workers; w++) {
        struct metrics *m = gw->workers[w].metrics;
        if (!m)
            continue;
        out->requests += __atomic_load_n(&m->duration_count, __ATOMIC_RELAXED);
        for (int c = 0; c < 6; c++)
            out->by_class[c] += __atomic_load_n(&m->by_class[c], __ATOMIC_RELAXED);
        out->status_429 += __atomic_load_n(&m->status_429, __ATOMIC_RELAXED);
        for (int b = 0; b <= N_BUCKETS; b++)
            out->buckets[b] += __atomic_load_n(&m->buckets[b], __ATOMIC_RELAXED);
    }
}

void metrics_render(struct gateway *gw, struct buf *out)
{
    metrics_render_family(gw, out, "sluice_requests_total",
                          "Requests answered, by route and status.", metrics_requests_of);
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++)
        if (mods[m]->metrics)
            mods[m]->metrics(gw, out);

    int64_t in_flight = 0;
    uint64_t rejected = 0, deferred = 0, count = 0, sum_us = 0, buckets[N_BUCKETS + 1] = {0};
    for (int w = 0; w < gw->n_workers; w++) {
        struct metrics *m = gw->workers[w].metrics;
        in_flight += __atomic_load_n(&m->in_flight, __ATOMIC_RELAXED);
        rejected += __atomic_load_n(&m->rejected_connections, __ATOMIC_RELAXED);
        deferred += __atomic_load_n(&m->accept_deferred, __ATOMIC_RELAXED);
        count += __atomic_load_n(&m->duration_count, __ATOMIC_RELAXED);
        sum_us += __atomic_load_n(&m->duration_sum_us, __ATOMIC_RELAXED);
        for (int b = 0; b <= N_BUCKETS; b++)
            buckets[b] += __atomic_load_n(&m->buckets[b], __ATOMIC_RELAXED);
    }
    /* Each exchange begins and ends on one worker, so the sum is never negative. */
    metrics_render_single(out, "sluice_requests_in_flight", "gauge", "Requests being handled now.",
                          (unsigned long long)(in_flight > 0 ? in_flight : 0));
    metrics_render_single(out, "sluice_connections_open", "gauge", "Client connections open now.",
                          (unsigned long long)__atomic_load_n(&gw->n_conns, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_connections_rejected_total", "counter",
                          "Connections shed over max_connections.", rejected);
    metrics_render_single(out, "sluice_accept_deferred_total", "counter",
                          "Accept batches cut short so that open connections are served first.",
                          deferred);
    buf_append_str(out, "# HELP sluice_request_duration_seconds Time from request headers to "
                        "the end of the response.\n"
                        "# TYPE sluice_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += buckets[b];
        buf_appendf(out, "sluice_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_le[b],
                    (unsigned long long)cum);
    }
    cum += buckets[N_BUCKETS];
    buf_appendf(out, "sluice_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
    buf_appendf(out, "sluice_request_duration_seconds_sum %.6f\n", (double)sum_us / 1e6);
    buf_appendf(out, "sluice_request_duration_seconds_count %llu\n", (unsigned long long)count);
}
