/* The usage module (SPEC 6.4): counts every public exchange per identity x
 * route x hour, keeps the counts in the store (SQLite, or Redis for a
 * fleet) with daily and monthly rollups, and answers GET /usage and
 * GET /usage/top.
 *
 * The request path only touches its worker's own table (usage/table.h):
 * the finish hook finds or adds the row of the exchange's hour, identity
 * and route and adds to its counters; no lock, no atomic, no I/O. Five
 * times a second each worker hands its whole table to the usage thread (one
 * short lock to queue it) and starts a new one. The usage thread, a store
 * writer of our own (store/writer.h) with its own connection, merges what
 * it receives into one pending table and writes that to the store at most
 * every USAGE_WRITE_MS (one transaction; for Redis one MULTI/EXEC
 * pipeline), so a request is in the store within about half a second and
 * always within a second. A write that fails is kept and tried again; the
 * pending table is bounded like the workers' (past it, identities fold into
 * "other"). SIGTERM loses nothing: each worker hands over what it holds when
 * it stops, and the thread writes it before the process exits. Reports run
 * on the same thread, after writing what is pending. */
#include <llhttp.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "modules.h"
#include "obs/metrics.h"
#include "store/writer.h"
#include "usage/conf.h"
#include "usage/report.h"
#include "usage/store.h"
#include "usage/table.h"
#include "usage/usage.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* A worker hands its table over this often. */
#define USAGE_HANDOFF_MS 200
/* The thread writes what is pending at most this often... */
#define USAGE_WRITE_MS 250
/* ...and looks at least this often. */
#define USAGE_TICK_MS 100
/* Rows past their retention are deleted this often (and at start). */
#define USAGE_PRUNE_EVERY_S 600

/* gw->ctx[MOD_usage]. */
struct usage_gw {
    struct dbw *thread;
    struct usage_store *store; /* the thread's */
    struct siphash_key key;    /* of every table's hash */
    /* The thread's: */
    struct usage_table *pending;
    int64_t last_write_ms;
    int64_t next_prune_s;
    bool failing; /* the last write failed: said once, until one succeeds */
    /* Settings, set by the main thread at start and on reload (atomic). */
    int64_t hourly_s, daily_s, max_pending;
    /* Metrics (atomic; written by the thread). */
    uint64_t m_folded, m_writes, m_write_errors, m_lost_rows, m_pending_rows;
};

enum usage_count { USAGE_M_RECORDED, USAGE_M_FOLDED, USAGE_M_N };

/* worker->ctx[MOD_usage]. */
struct usage_worker {
    struct usage_table *table; /* NULL until the first exchange after a hand-off */
    uv_timer_t timer;
    struct worker *w;
    /* The wall clock minus the loop's cached monotonic time (uv_now), in
     * ms, set at every hand-off: an exchange's hour costs no clock read. */
    int64_t wall_offset_ms;
    uint64_t counts[USAGE_M_N];
};

static struct usage_gw *usage_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_usage];
}

static struct usage_worker *usage_worker_of(const struct worker *w)
{
    return w->ctx[MOD_usage];
}

static int64_t usage_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

static int64_t usage_wall_s(void)
{
    return clock_wall_us() / 1000000;
}

/* ---- the request path ------------------------------------------------------------- */

static void usage_finish(struct exchange *x)
{
    if (x->admin || !x->route)
        return;
    const struct usage_conf *uc = usage_conf(x->cfg);
    if (!uc->enabled)
        return;
    struct usage_worker *uw = usage_worker_of(x->worker);
    if (!uw->table)
        uw->table = usage_table_new((size_t)uc->max_rows, &usage_gw_of(x->worker->gw)->key);
    const struct cfg_tier *tier = x->identity.tier ? cfg_find_tier(x->cfg, x->identity.tier) : NULL;
    struct usage_event ev = {
        .now = ((int64_t)uv_now(&x->worker->loop) + uw->wall_offset_ms) / 1000,
        .identity = x->identity.id[0] ? x->identity.id : "unknown",
        .key_id = x->identity.key_id,
        .route = x->route->path,
        .status = x->status,
        .refused_by = (int)x->refused_by,
        .bytes_in = x->body_bytes,
        .bytes_out = x->bytes_out,
        .latency_us = clock_mono_us() - x->start_us,
        .cost = x->route->cost,
        .price_micro = tier ? usage_tier_conf(tier)->price_micro : 0,
    };
    if (usage_record(uw->table, &ev))
        metrics_counter_add(&uw->counts[USAGE_M_FOLDED], 1);
    metrics_counter_add(&uw->counts[USAGE_M_RECORDED], 1);
}

/* ---- the usage thread ------------------------------------------------------------- */

static struct usage_retention usage_retention_now(struct usage_gw *g)
{
    return (struct usage_retention){__atomic_load_n(&g->hourly_s, __ATOMIC_RELAXED),
                                    __atomic_load_n(&g->daily_s, __ATOMIC_RELAXED)};
}

/* Thread: writes the pending rows; kept for the next try when nothing was
 * written. */
static void usage_write_pending(struct usage_gw *g)
{
    g->last_write_ms = usage_mono_ms();
    if (!g->pending)
        return;
    size_t rows = usage_table_size(g->pending);
    struct usage_retention ret = usage_retention_now(g);
    char *err = NULL;
    enum usage_write_result res = usage_store_write(g->store, g->pending, &ret, &err);
    if (res == USAGE_WRITE_RETRY) {
        __atomic_add_fetch(&g->m_write_errors, 1, __ATOMIC_RELAXED);
        if (!g->failing)
            fprintf(stderr, "sluice: %s; keeping %zu usage row(s) to write later\n", err, rows);
        g->failing = true;
        free(err);
        return;
    }
    if (res == USAGE_WRITE_LOST) {
        __atomic_add_fetch(&g->m_write_errors, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&g->m_lost_rows, rows, __ATOMIC_RELAXED);
        fprintf(stderr, "sluice: %s (%zu usage row(s))\n", err, rows);
        free(err);
    } else {
        __atomic_add_fetch(&g->m_writes, 1, __ATOMIC_RELAXED);
        if (g->failing)
            fprintf(stderr, "sluice: usage: writing to the store again\n");
        g->failing = false;
    }
    usage_table_free(g->pending);
    g->pending = NULL;
    __atomic_store_n(&g->m_pending_rows, 0, __ATOMIC_RELAXED);
}

static void usage_prune(struct usage_gw *g, int64_t now)
{
    g->next_prune_s = now + USAGE_PRUNE_EVERY_S;
    struct usage_retention ret = usage_retention_now(g);
    char *err = NULL;
    if (usage_store_prune(g->store, now, &ret, &err) < 0) {
        fprintf(stderr, "sluice: %s\n", err);
        free(err);
    }
}

/* A worker's table on its way to the thread. */
struct usage_batch {
    struct usage_gw *g;
    struct usage_table *t;
};

/* Thread: a worker's table joins the pending rows. */
static void usage_take(struct ks_db *unused, void *arg)
{
    struct usage_batch *b = arg;
    struct usage_gw *g = b->g;
    if (!g->pending)
        g->pending =
            usage_table_new((size_t)__atomic_load_n(&g->max_pending, __ATOMIC_RELAXED), &g->key);
    uint64_t folded = usage_table_merge(g->pending, b->t);
    if (folded)
        __atomic_add_fetch(&g->m_folded, folded, __ATOMIC_RELAXED);
    __atomic_store_n(&g->m_pending_rows, usage_table_size(g->pending), __ATOMIC_RELAXED);
    usage_table_free(b->t);
    free(b);
}

static void usage_tick(struct ks_db *unused, void *arg)
{
    struct usage_gw *g = arg;
    if (g->pending && usage_mono_ms() - g->last_write_ms >= USAGE_WRITE_MS)
        usage_write_pending(g);
    int64_t now = usage_wall_s();
    if (now >= g->next_prune_s)
        usage_prune(g, now);
}

/* Thread, last: whatever the workers handed over when they stopped. */
static void usage_final_write(struct ks_db *unused, void *arg)
{
    struct usage_gw *g = arg;
    usage_write_pending(g);
    if (g->pending)
        fprintf(stderr, "sluice: usage: %zu row(s) could not be written before exit\n",
                usage_table_size(g->pending));
}

/* Worker: hand the table over (if it holds anything). */
static void usage_handoff(struct worker *w)
{
    struct usage_worker *uw = usage_worker_of(w);
    if (!uw->table)
        return;
    struct usage_batch *b = sl_malloc(sizeof(*b));
    b->g = usage_gw_of(w->gw);
    b->t = uw->table;
    uw->table = NULL;
    dbw_post(b->g->thread, usage_take, b);
}

static void usage_sync_clock(struct usage_worker *uw)
{
    uv_update_time(&uw->w->loop);
    uw->wall_offset_ms = clock_wall_us() / 1000 - (int64_t)uv_now(&uw->w->loop);
}

static void usage_on_timer(uv_timer_t *t)
{
    struct usage_worker *uw = t->data;
    usage_sync_clock(uw);
    usage_handoff(uw->w);
}

/* ---- reports ----------------------------------------------------------------------- */

/* One report on behalf of an admin call: run on the thread, answered on
 * the caller's loop unless the client went away (x NULL). */
struct usage_op {
    struct exchange *x;
    int refs; /* the exchange's and the thread's */
    struct usage_gw *g;
    struct usage_report r;
    int status;
    const char *content_type;
    struct buf body;
    char *err;
};

static void usage_op_unref(struct usage_op *op)
{
    if (--op->refs > 0)
        return;
    usage_report_release(&op->r);
    buf_release(&op->body);
    free(op->err);
    free(op);
}

static void usage_op_ended(struct exchange *x, void *arg)
{
    struct usage_op *op = arg;
    op->x = NULL;
    x->ctx[MOD_usage] = NULL;
    usage_op_unref(op);
}

static void usage_op_run(struct ks_db *unused, void *arg)
{
    struct usage_op *op = arg;
    /* What the workers handed over is in the report. */
    usage_write_pending(op->g);
    op->status = usage_report_run(op->g->store, &op->r, &op->body, &op->content_type, &op->err);
}

static void usage_op_done(void *arg)
{
    struct usage_op *op = arg;
    if (op->x) {
        if (op->status == 200)
            exchange_respond(op->x, 200, op->content_type, op->body.data, op->body.len);
        else
            exchange_respond_error(op->x, op->status, op->err ? op->err : "the usage store failed");
    }
    usage_op_unref(op);
}

static void usage_op_submit(struct usage_op *op)
{
    op->refs++;
    dbw_submit(op->g->thread, &op->x->worker->loop, usage_op_run, usage_op_done, op);
}

void usage_respond(struct exchange *x, struct usage_report *r)
{
    struct usage_op *op = sl_calloc(1, sizeof(*op));
    op->x = x;
    op->refs = 1;
    op->g = usage_gw_of(x->worker->gw);
    op->r = *r;
    memset(r, 0, sizeof(*r));
    x->ctx[MOD_usage] = op;
    exchange_on_end(x, usage_op_ended, op);
    usage_op_submit(op);
}

/* The key named by key= exists (revoked or not): now the report. */
static void usage_key_run(struct ks_db *db, struct auth_op *aop)
{
    aop->rc = ks_get(db, aop->id, &aop->key, &aop->err);
}

static void usage_key_done(struct exchange *x, struct auth_op *aop)
{
    struct usage_op *op = x->ctx[MOD_usage];
    if (aop->rc == KS_NOT_FOUND) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    if (aop->rc != KS_OK) {
        exchange_respond_error(x, aop->rc == KS_UNAVAILABLE ? 503 : 500,
                               aop->err ? aop->err : "the key store failed");
        return;
    }
    usage_op_submit(op);
}

/* GET /usage and GET /usage/top: parameters checked here (400 says what
 * is accepted), the key looked up in the key store (404), then the report
 * on the usage thread. */
static void usage_admin(struct exchange *x, bool top)
{
    struct usage_op *op = sl_calloc(1, sizeof(*op));
    op->x = x;
    op->refs = 1;
    op->g = usage_gw_of(x->worker->gw);
    usage_report_init(&op->r, top);
    x->ctx[MOD_usage] = op;
    exchange_on_end(x, usage_op_ended, op);
    char *why = NULL;
    if (usage_report_parse_query(&op->r, x->query ? x->query : "", x->query ? x->query_len : 0,
                                 &why) < 0 ||
        usage_report_resolve(&op->r, usage_wall_s(), &why) < 0) {
        exchange_respond_error(x, 400, why);
        free(why);
        return;
    }
    if (!op->r.key_id) {
        usage_op_submit(op);
        return;
    }
    if (strlen(op->r.key_id) >= APIKEY_ID_MAX) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    struct auth_op *aop = auth_op_new(x, usage_key_run, usage_key_done);
    str_copy(aop->id, sizeof(aop->id), op->r.key_id);
    auth_op_submit(aop);
}

static void usage_admin_report(struct exchange *x, const struct sl_admin_call *call)
{
    usage_admin(x, false);
}

static void usage_admin_top(struct exchange *x, const struct sl_admin_call *call)
{
    usage_admin(x, true);
}

static const struct sl_admin_route usage_admin_routes[] = {
    {HTTP_GET, "/usage", usage_admin_report, 0},
    {HTTP_GET, "/usage/top", usage_admin_top, 0},
    {0, NULL, NULL, 0},
};

/* ---- the module -------------------------------------------------------------------- */

static void usage_settings(struct usage_gw *g, const struct config *c, int n_workers)
{
    const struct usage_conf *uc = usage_conf(c);
    __atomic_store_n(&g->hourly_s, uc->retention.hourly_ms / 1000, __ATOMIC_RELAXED);
    __atomic_store_n(&g->daily_s, uc->retention.daily_ms / 1000, __ATOMIC_RELAXED);
    /* Every worker's rows fit, so the thread folds nothing the workers did
     * not. */
    __atomic_store_n(&g->max_pending, uc->max_rows * (n_workers > 0 ? n_workers : 1),
                     __ATOMIC_RELAXED);
}

static int usage_init_process(struct gateway *gw, char **err)
{
    const struct config *c = gw->cfg;
    struct usage_store_opts o = {
        .redis = c->store.backend == CFG_BACKEND_REDIS,
        .data_dir = c->store.data_dir,
        .conn = c->store.redis.conn,
        .redis_prefix = c->store.redis.prefix,
    };
    struct usage_store *s = usage_store_open(&o, err);
    if (!s)
        return -1;
    struct usage_gw *g = sl_calloc(1, sizeof(*g));
    g->store = s;
    siphash_key_random(&g->key);
    usage_settings(g, c, gw->n_workers);
    g->thread = dbw_start(NULL, USAGE_TICK_MS, usage_tick, g);
    gw->ctx[MOD_usage] = g;
    return 0;
}

static void usage_dispose_process(struct gateway *gw)
{
    struct usage_gw *g = usage_gw_of(gw);
    dbw_post(g->thread, usage_final_write, g);
    dbw_stop(g->thread);
    usage_table_free(g->pending);
    usage_store_close(g->store);
    free(g);
}

static void usage_on_reload(struct gateway *gw, const struct config *old, const struct config *cfg,
                            struct buf *warnings)
{
    usage_settings(usage_gw_of(gw), cfg, gw->n_workers);
}

static void usage_init_worker(struct worker *w)
{
    struct usage_worker *uw = sl_calloc(1, sizeof(*uw));
    uw->w = w;
    w->ctx[MOD_usage] = uw;
}

static void usage_start_worker(struct worker *w)
{
    struct usage_worker *uw = usage_worker_of(w);
    uv_timer_init(&w->loop, &uw->timer);
    uw->timer.data = uw;
    usage_sync_clock(uw);
    uv_timer_start(&uw->timer, usage_on_timer, USAGE_HANDOFF_MS, USAGE_HANDOFF_MS);
}

static void usage_stop_worker(struct worker *w)
{
    usage_handoff(w); /* every exchange of this worker has finished */
    worker_close_handle(w, (uv_handle_t *)&usage_worker_of(w)->timer);
}

static void usage_dispose_worker(struct worker *w)
{
    struct usage_worker *uw = usage_worker_of(w);
    usage_table_free(uw->table);
    free(uw);
}

static void usage_metrics(struct gateway *gw, struct buf *out)
{
    uint64_t sum[USAGE_M_N] = {0};
    for (int i = 0; i < gw->n_workers; i++)
        for (int m = 0; m < USAGE_M_N; m++)
            sum[m] +=
                __atomic_load_n(&usage_worker_of(&gw->workers[i])->counts[m], __ATOMIC_RELAXED);
    struct usage_gw *g = usage_gw_of(gw);
    metrics_render_single(out, "sluice_usage_recorded_total", "counter",
                          "Exchanges counted in usage rows.", sum[USAGE_M_RECORDED]);
    metrics_render_single(out, "sluice_usage_dropped_total", "counter",
                          "Exchanges counted under identity \"other\" because a usage table "
                          "was full (usage.max_rows).",
                          sum[USAGE_M_FOLDED] + __atomic_load_n(&g->m_folded, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_usage_writes_total", "counter",
                          "Writes of usage rows to the store (one transaction or pipeline each).",
                          __atomic_load_n(&g->m_writes, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_usage_write_errors_total", "counter",
                          "Usage writes that failed (retried, unless possibly applied).",
                          __atomic_load_n(&g->m_write_errors, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_usage_lost_rows_total", "counter",
                          "Usage rows a failed write may or may not have stored (not retried).",
                          __atomic_load_n(&g->m_lost_rows, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_usage_pending_rows", "gauge",
                          "Usage rows waiting to be written.",
                          __atomic_load_n(&g->m_pending_rows, __ATOMIC_RELAXED));
}

const struct sl_module usage_module = {
    .name = "usage",
    .conf = &usage_cfg_module,
    .init_process = usage_init_process,
    .dispose_process = usage_dispose_process,
    .on_reload = usage_on_reload,
    .init_worker = usage_init_worker,
    .start_worker = usage_start_worker,
    .stop_worker = usage_stop_worker,
    .dispose_worker = usage_dispose_worker,
    .finish = usage_finish,
    .admin_routes = usage_admin_routes,
    .metrics = usage_metrics,
};
