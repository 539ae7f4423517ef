/* The key service of one gateway process: the store on its writer thread,
 * the keyring it publishes, and store operations on behalf of exchanges. */
#include "auth/auth.h"
#include "auth/conf.h"
#include "limit/conf.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <string.h>
#include <time.h>

#include "auth/keysnap.h"
#include "obs/metrics.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

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

static int auth_keys_in_force(struct auth_ctx *a)
{
    struct keyring *kr = keyring_current(&a->keys);
    int n = keyring_size(kr);
    keyring_unref(kr);
    return n;
}

static void auth_set_store(struct auth_ctx *a, enum auth_store st)
{
    a->store = st;
    __atomic_store_n(&a->m_store_up, st != AUTH_STORE_DOWN, __ATOMIC_RELAXED);
    __atomic_store_n(&a->m_store_lost, st == AUTH_STORE_LOST, __ATOMIC_RELAXED);
}

/* Looks at the store: can it be reached, and does it still hold the data
 * the known keys came from (its epoch, keystore.h)? Each change is logged
 * once, loudly: an operator must learn that gateways serve keys the store
 * no longer has. */
static enum auth_store auth_look(struct auth_ctx *a, struct ks_db *db)
{
    char now[KS_EPOCH_MAX], *err = NULL;
    if (ks_epoch(db, now, &err) != KS_OK) {
        if (a->store != AUTH_STORE_DOWN)
            fprintf(stderr,
                    "sluice: %s: the %d API key(s) in force stay until it answers "
                    "(checked every %d ms)\n",
                    err ? err : "the key store cannot be reached", auth_keys_in_force(a),
                    AUTH_TICK_MS);
        free(err);
        auth_set_store(a, AUTH_STORE_DOWN);
        return AUTH_STORE_DOWN;
    }
    if (a->store == AUTH_STORE_DOWN)
        fprintf(stderr, "sluice: the key store answers again\n");
    if (!a->advised) {
        /* Once, when the store first answers: it may hold keys now. */
        char *advice = ks_advice(db);
        if (advice)
            fprintf(stderr, "sluice: warning: %s\n", advice);
        free(advice);
        a->advised = true;
    }
    enum auth_store st = AUTH_STORE_OK;
    switch (ks_epoch_check(a->epoch, now)) {
    case KS_EPOCH_NEW:
        str_copy(a->epoch, sizeof(a->epoch), now);
        break;
    case KS_EPOCH_SAME:
        if (a->store == AUTH_STORE_LOST)
            fprintf(stderr,
                    "sluice: the key store holds its data again (epoch %s): API keys are read "
                    "from it\n",
                    now);
        break;
    case KS_EPOCH_LOST:
        if (a->store != AUTH_STORE_LOST || strcmp(a->lost_epoch, now) != 0)
            fprintf(stderr,
                    "sluice: ERROR: the key store LOST ITS DATA (its epoch is %s, the keys came "
                    "from epoch %s; a Redis restarted without persistence?): the %d API key(s) "
                    "known before stay in force, with any created since. Restore them: sluice "
                    "keys export -c FILE --out keys.jsonl, then sluice keys import -c FILE "
                    "keys.jsonl (docs/distributed.md, \"Outages and data loss\")\n",
                    now, a->epoch, a->known ? keysnap_count(a->known) : 0);
        str_copy(a->lost_epoch, sizeof(a->lost_epoch), now);
        st = AUTH_STORE_LOST;
        break;
    }
    auth_set_store(a, st);
    return st;
}

/* Writes the keys just read from the store to the snapshot file, for a
 * start while the store is away. A failure is logged once per streak: the
 * gateway works without the file. */
static void auth_save(struct auth_ctx *a, const struct keysnap *snap)
{
    if (!a->snap_path)
        return;
    char *err = NULL;
    if (keysnap_write(snap, a->snap_path, auth_now_ms(), &err) < 0) {
        if (!a->snap_failing)
            fprintf(stderr, "sluice: cannot write the keyring snapshot: %s\n", err);
        a->snap_failing = true;
        free(err);
        return;
    }
    if (a->snap_failing)
        fprintf(stderr, "sluice: keyring snapshot written again (%s)\n", a->snap_path);
    a->snap_failing = false;
}

/* Reads the keys from the store, which is <st> (not down), and publishes
 * the keyring. When the store lost its data, the keys known before stay,
 * joined by those the store holds now. false when the store cannot be
 * read (the keys in force stay). */
static bool auth_build(struct auth_ctx *a, struct ks_db *db, enum auth_store st)
{
    char *err = NULL;
    int64_t now = auth_now_ms();
    struct keysnap *snap = keysnap_new();
    if (ks_each_active(db, now, keysnap_add, snap, &err) != KS_OK) {
        /* The next change or tick tries again. Said once per failure, not
         * per tick. */
        if (!a->rebuild_failing)
            fprintf(stderr,
                    "sluice: cannot read API keys (the keys read before stay in force): %s\n",
                    err ? err : "?");
        a->rebuild_failing = true;
        free(err);
        keysnap_free(snap);
        return false;
    }
    if (st == AUTH_STORE_LOST && a->known) {
        keysnap_merge(snap, a->known);
    } else {
        keysnap_set_epoch(snap, a->epoch);
        auth_save(a, snap);
    }
    struct keyring *prev = keyring_current(&a->keys);
    struct keyring *kr = keyring_from_snap(
        snap, now, prev, (enum lim_algorithm)__atomic_load_n(&a->default_algo, __ATOMIC_RELAXED));
    keyring_unref(prev);
    if (st == AUTH_STORE_LOST) {
        keysnap_free(snap);
    } else {
        keysnap_free(a->known);
        a->known = snap;
    }
    if (a->rebuild_failing)
        fprintf(stderr, "sluice: API keys read again (%d active)\n", keyring_size(kr));
    a->rebuild_failing = false;
    a->built = st;
    __atomic_store_n(&a->m_from_store, st == AUTH_STORE_OK, __ATOMIC_RELAXED);
    keyring_publish(&a->keys, kr);
    return true;
}

void auth_rebuild(struct auth_ctx *a, struct ks_db *db)
{
    enum auth_store st = auth_look(a, db);
    if (st != AUTH_STORE_DOWN)
        auth_build(a, db, st);
}

void auth_refresh(struct auth_ctx *a, struct ks_db *db)
{
    bool changed = ks_changed(db);
    enum auth_store st = auth_look(a, db);
    if (st != AUTH_STORE_DOWN && (changed || st != a->built || a->rebuild_failing))
        auth_build(a, db, st);
}

static void auth_flush(struct auth_ctx *a, struct ks_db *db)
{
    if (a->store == AUTH_STORE_DOWN)
        return; /* last-use times are informative: not worth a connection attempt */
    struct keyring *kr = keyring_current(&a->keys);
    keyring_flush_last_used(kr, db);
    keyring_unref(kr);
}

static void auth_tick(struct ks_db *db, void *arg)
{
    struct auth_ctx *a = arg;
    auth_refresh(a, db);
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

/* A store on a server keeps a snapshot of its keys in data_dir: read it
 * now (into a->known, with the epoch it came from), in case the store
 * cannot be reached or has lost its data. A snapshot that cannot be read
 * is reported and set aside, never fatal. */
static void auth_load_snapshot(struct auth_ctx *a, const struct config *c)
{
    char path[4096];
    if (!ks_is_remote(&a->db))
        return;
    if (keysnap_path(c->store.data_dir, path, sizeof(path)) < 0) {
        fprintf(stderr, "sluice: %s: path too long for the keyring snapshot\n", c->store.data_dir);
        return;
    }
    a->snap_path = sl_strdup(path);
    char *err = NULL;
    if (keysnap_read(path, &a->known, &err) < 0) {
        fprintf(stderr, "sluice: ignoring the keyring snapshot: %s\n", err);
        free(err);
        return;
    }
    if (a->known)
        str_copy(a->epoch, sizeof(a->epoch), keysnap_epoch(a->known));
}

static void auth_release(struct auth_ctx *a)
{
    ks_close(&a->db);
    keyring_holder_release(&a->keys);
    keysnap_free(a->known);
    a->known = NULL;
    free(a->snap_path);
    a->snap_path = NULL;
}

int auth_open(struct auth_ctx *a, const struct config *c, char **err)
{
    struct ks_open_opts ko = auth_ks_opts(c);
    if (ks_open(&a->db, &ko, err) < 0)
        return -1;
    struct ks_db *db = &a->db;
    a->default_algo = (int)lim_conf(c)->algorithm;
    keyring_holder_init(&a->keys, keyring_empty());
    auth_load_snapshot(a, c);
    ks_changed(db);           /* the mark the ticks compare with */
    a->store = AUTH_STORE_OK; /* so that a store away at start is logged */
    enum auth_store st = auth_look(a, db);
    if (st == AUTH_STORE_DOWN || !auth_build(a, db, st)) {
        if (!a->snap_path) { /* a local store (SQLite) that cannot be read: no gateway */
            *err = sl_strdup("cannot read API keys from the key store");
            auth_release(a);
            return -1;
        }
        /* Serve what the snapshot holds; the writer's ticks join the store
         * when it answers. */
        int64_t now = auth_now_ms();
        struct keyring *kr = a->known
                                 ? keyring_from_snap(a->known, now, NULL, lim_conf(c)->algorithm)
                                 : keyring_empty();
        if (a->known) {
            char when[32] = "?";
            time_t t = (time_t)(keysnap_written_ms(a->known) / 1000);
            struct tm tm;
            if (gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            fprintf(stderr,
                    "sluice: WARNING: starting without the key store: %d API key(s) from the "
                    "snapshot %s (written %s), until the store answers\n",
                    keyring_size(kr), a->snap_path, when);
        } else {
            fprintf(stderr,
                    "sluice: WARNING: starting without the key store and without a keyring "
                    "snapshot (%s): no API key is valid until the store answers\n",
                    a->snap_path);
        }
        a->built = st;
        keyring_publish(&a->keys, kr);
    }
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
    auth_release(a);
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
    keypatch_release(&op->patch);
    OPENSSL_cleanse(op->signing, sizeof(op->signing));
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
    struct auth_ctx *a = auth_ctx_of(gw);
    metrics_render_single(out, "sluice_keystore_up", "gauge",
                          "1 when the key store answered the last look (every 200 ms).",
                          (unsigned long long)__atomic_load_n(&a->m_store_up, __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_keystore_data_lost", "gauge",
                          "1 while the key store's epoch differs from the one the keys came from "
                          "(it lost its data; the last known keys stay in force).",
                          (unsigned long long)__atomic_load_n(&a->m_store_lost, __ATOMIC_RELAXED));
    int from_store = __atomic_load_n(&a->m_from_store, __ATOMIC_RELAXED);
    buf_append_str(out, "# HELP sluice_api_keys_source Where the API keys in force come from: "
                        "the key store, or the snapshot and last known keys.\n"
                        "# TYPE sluice_api_keys_source gauge\n");
    buf_append_str(out, from_store ? "sluice_api_keys_source{source=\"store\"} 1\n"
                                     "sluice_api_keys_source{source=\"snapshot\"} 0\n"
                                   : "sluice_api_keys_source{source=\"store\"} 0\n"
                                     "sluice_api_keys_source{source=\"snapshot\"} 1\n");
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
