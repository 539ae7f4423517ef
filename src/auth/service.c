/* The key service of one gateway process: the store on its writer thread,
 * the keyring it publishes, and store operations on behalf of exchanges. */
#include "auth/auth.h"
#include "auth/conf.h"
#include "limit/conf.h"

#include <openssl/evp.h>

#include "obs/metrics.h"
#include "util/clock.h"
#include "util/mem.h"

/* The writer looks for changes made by other processes (the CLI, other
 * gateways on the same data_dir) this often: revocation must reach every
 * gateway within a second (SPEC 5.1). */
#define AUTH_TICK_MS 200
/* Last-use times reach the disk at most this late; they are informative. */
#define AUTH_FLUSH_MS 5000

static int64_t auth_now_ms(void)
{
    return clock_wall_us() / 1000;
}

void auth_rebuild(struct auth_ctx *a, struct ks_db *db)
{
    char *err = NULL;
    struct keyring *prev = keyring_current(&a->keys);
    struct keyring *kr = keyring_build(
        db, auth_now_ms(), prev,
        (enum lim_algorithm)__atomic_load_n(&a->default_algo, __ATOMIC_RELAXED), &err);
    keyring_unref(prev);
    if (!kr) {
        /* The old keys stay in force; the next change or tick tries again.
         * Said once per failure, not per tick. */
        if (!a->rebuild_failing)
            fprintf(stderr,
                    "sluice: cannot read API keys (the keys read before stay in force): %s\n",
                    err ? err : "?");
        a->rebuild_failing = true;
        free(err);
        return;
    }
    if (a->rebuild_failing)
        fprintf(stderr, "sluice: API keys read again (%d active)\n", keyring_size(kr));
    a->rebuild_failing = false;
    keyring_publish(&a->keys, kr);
}

static void auth_flush(struct auth_ctx *a, struct ks_db *db)
{
    struct keyring *kr = keyring_current(&a->keys);
    keyring_flush_last_used(kr, db);
    keyring_unref(kr);
}

static void auth_tick(struct ks_db *db, void *arg)
{
    struct auth_ctx *a = arg;
    if (ks_changed(db))
        auth_rebuild(a, db);
    int64_t now = auth_now_ms();
    if (now >= a->next_flush_ms) {
        auth_flush(a, db);
        a->next_flush_ms = now + AUTH_FLUSH_MS;
    }
}

/* The key store the config's store section names. */
static struct ks_open_opts auth_ks_opts(const struct config *c)
{
    return (struct ks_open_opts){
        .backend = c->store.backend == CFG_BACKEND_REDIS ? KS_REDIS : KS_SQLITE,
        .data_dir = c->store.data_dir,
        .redis = c->store.redis.conn,
        .redis_prefix = c->store.redis.prefix,
    };
}

int auth_open(struct auth_ctx *a, const struct config *c, char **err)
{
    struct ks_open_opts ko = auth_ks_opts(c);
    if (ks_open(&a->db, &ko, err) < 0)
        return -1;
    struct ks_db *db = &a->db;
    ks_changed(db); /* the mark the ticks compare with */
    a->default_algo = (int)lim_conf(c)->algorithm;
    struct keyring *kr = keyring_build(db, auth_now_ms(), NULL, lim_conf(c)->algorithm, err);
    if (!kr) {
        ks_close(db);
        return -1;
    }
    keyring_holder_init(&a->keys, kr);
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!a->sha256)
        sl_fatal("sluice: SHA-256 unavailable from OpenSSL\n");
    a->next_flush_ms = auth_now_ms() + AUTH_FLUSH_MS;
    a->writer = dbw_start(db, AUTH_TICK_MS, auth_tick, a);
    return 0;
}

static void auth_final_flush(struct ks_db *db, void *arg)
{
    auth_flush(arg, db);
}

void auth_close(struct auth_ctx *a)
{
    if (!a->writer)
        return;
    dbw_post(a->writer, auth_final_flush, a);
    dbw_stop(a->writer);
    a->writer = NULL;
    ks_close(&a->db);
    keyring_holder_release(&a->keys);
    EVP_MD_free(a->sha256);
}

void auth_config_changed(struct auth_ctx *a, const struct config *c)
{
    __atomic_store_n(&a->default_algo, (int)lim_conf(c)->algorithm, __ATOMIC_RELAXED);
}

/* ---- operations for exchanges ------------------------------------------------ */

static void auth_op_unref(struct auth_op *op)
{
    if (--op->refs > 0)
        return;
    for (size_t i = 0; i < sizeof(op->strs) / sizeof(op->strs[0]); i++)
        free(op->strs[i]);
    free(op->list);
    free(op->err);
    free(op);
}

static void auth_op_exchange_ended(struct exchange *x, void *arg)
{
    struct auth_op *op = arg;
    op->x = NULL;
    auth_op_unref(op);
}

static void auth_op_run(struct ks_db *db, void *arg)
{
    struct auth_op *op = arg;
    op->run(db, op);
}

static void auth_op_done(void *arg)
{
    struct auth_op *op = arg;
    if (op->x)
        op->done(op->x, op);
    auth_op_unref(op);
}

struct auth_op *auth_op_new(struct exchange *x, auth_run_fn run, auth_done_fn done)
{
    struct auth_op *op = sl_calloc(1, sizeof(*op));
    op->x = x;
    op->refs = 2;
    op->ctx = auth_ctx_of(x->worker->gw);
    op->run = run;
    op->done = done;
    exchange_on_end(x, auth_op_exchange_ended, op);
    return op;
}

void auth_op_submit(struct auth_op *op)
{
    dbw_submit(op->ctx->writer, &op->x->worker->loop, auth_op_run, auth_op_done, op);
}

void auth_op_cancel(struct auth_op *op)
{
    auth_op_unref(op);
}

/* ---- the module ------------------------------------------------------------------ */

static int auth_init_process(struct gateway *gw, char **err)
{
    struct auth_ctx *a = sl_calloc(1, sizeof(*a));
    if (auth_open(a, gw->cfg, err) != 0) {
        free(a);
        return -1;
    }
    gw->ctx[MOD_auth] = a;
    return 0;
}

static void auth_dispose_process(struct gateway *gw)
{
    auth_close(auth_ctx_of(gw));
    free(auth_ctx_of(gw));
}

static void auth_on_reload(struct gateway *gw, const struct config *old, const struct config *cfg,
                           struct buf *warnings)
{
    auth_config_changed(auth_ctx_of(gw), cfg);
}

static void auth_init_worker(struct worker *w)
{
    w->ctx[MOD_auth] = sl_calloc(1, sizeof(struct auth_worker));
}

static void auth_dispose_worker(struct worker *w)
{
    keyring_unref(auth_worker_of(w)->keyring);
    free(auth_worker_of(w));
}

static const uint64_t *auth_results_of(struct worker *w)
{
    return auth_worker_of(w)->results;
}

static void auth_metrics(struct gateway *gw, struct buf *out)
{
    static const char *const results[AUTH_RESULT_N] = {"api_key", "jwt", "invalid", "missing",
                                                       "forbidden"};
    metrics_render_fixed(gw, out, "sluice_auth_requests_total",
                         "Requests by what authentication made of them (anonymous ones are not "
                         "counted).",
                         "result", results, AUTH_RESULT_N, auth_results_of);
    struct keyring *kr = keyring_current(&auth_ctx_of(gw)->keys);
    metrics_render_single(out, "sluice_api_keys", "gauge", "Active API keys held in memory.",
                          (unsigned long long)keyring_size(kr));
    keyring_unref(kr);
}

static const struct sl_stage auth_stages[] = {
    {SL_PHASE_AUTHN, false, auth_stage_authn},
    {SL_PHASE_AUTHZ, false, auth_stage_authz},
    {SL_PHASE_CONTENT, false, auth_stage_tokens},
};

const struct sl_module auth_module = {
    .name = "auth",
    .conf = &auth_cfg_module,
    .init_process = auth_init_process,
    .dispose_process = auth_dispose_process,
    .on_reload = auth_on_reload,
    .init_worker = auth_init_worker,
    .dispose_worker = auth_dispose_worker,
    .stages = auth_stages,
    .n_stages = 3,
    .admin_routes = auth_admin_routes,
    .metrics = auth_metrics,
};
