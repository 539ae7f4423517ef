/* The audit module (SPEC 7.5): admin actions, and with audit.requests
 * every request, as chained JSON lines (audit/line.h) in audit.path.
 *
 * Nothing on the request path touches the disk: a line's head (its fields,
 * formatted where the action happened) goes into a bounded queue
 * (audit/queue.h) with one short lock, or is dropped and counted when the
 * queue is full. One audit thread takes what is queued in batches, seals
 * the lines (seq and mac) and appends them under the file's lock
 * (audit/file.h), which is how `sluice keys` can write to the same file at
 * the same time. A write that fails (ENOSPC, EIO) drops its batch and
 * counts it: traffic never waits for the audit log. SIGTERM drains the
 * queue before the process exits. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llhttp.h>

#include "audit/audit.h"
#include "audit/conf.h"
#include "audit/file.h"
#include "audit/line.h"
#include "audit/queue.h"
#include "modules.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/str.h"

/* Lines waiting for the thread. At ~300 bytes a line, 64k lines is ~20 MB:
 * a second or more of a busy gateway's requests while the disk stalls. */
#define AUDIT_QUEUE_MAX 65536
/* Lines sealed and written in one append (one lock, one write). */
#define AUDIT_BATCH 512
/* How long the thread sleeps when there is nothing to write. */
#define AUDIT_IDLE_MS 200

/* gw->ctx[MOD_audit]; NULL without an audit section at start. */
struct audit_gw {
    struct audit_queue *q;
    pthread_t thread;
    char *path;
    unsigned char key[32];
    /* Set by the main thread at start and on reload (atomic). */
    int64_t max_size;
    int keep;
    /* The thread's. */
    struct audit_file file;
    bool failing; /* the last append failed: said once, until one succeeds */
    /* Metrics (atomic; written by the thread). */
    uint64_t m_lines, m_write_dropped;
};

static struct audit_gw *audit_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_audit];
}

/* ---- queueing a line ------------------------------------------------------------- */

static void audit_event_head(struct buf *b, const struct audit_event *ev)
{
    audit_line_head(b, clock_wall_us(), ev->actor, ev->action, ev->target, ev->result, ev->client);
    if (ev->extra && strlen(ev->extra) > AUDIT_EXTRA_MAX)
        buf_append_str(b, ",\"extra_left_out\":true");
    else if (ev->extra)
        buf_append_str(b, ev->extra);
}

void audit_admin(struct gateway *gw, const struct audit_event *ev)
{
    struct audit_gw *g = audit_gw_of(gw);
    if (!g)
        return;
    struct buf b = {0};
    audit_event_head(&b, ev);
    audit_queue_push(g->q, b.data, b.len);
    buf_release(&b);
}

/* "ok", or "<status> <reason>", into <out>. */
static const char *audit_result(int status, char out[64])
{
    if (status < 400)
        return "ok";
    snprintf(out, 64, "%d %s", status, http_reason(status));
    return out;
}

void audit_admin_call(struct exchange *x, const char *action, const char *target, int status,
                      const char *extra)
{
    audit_call(x, "admin-api", action, target, status, extra);
}

void audit_call(struct exchange *x, const char *actor, const char *action, const char *target,
                int status, const char *extra)
{
    char result[64];
    struct audit_event ev = {
        .actor = actor,
        .action = action,
        .target = target,
        .result = audit_result(status, result),
        .client = x->client_ip[0] ? x->client_ip : x->peer_ip,
        .extra = extra,
    };
    audit_admin(x->worker->gw, &ev);
}

/* ---- the command line ------------------------------------------------------------- */

/* The directory of <path> exists (one level is made, as store.data_dir's). */
static void audit_make_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return;
    char *dir = sl_strndup(path, (size_t)(slash - path));
    mkdir(dir, 0700);
    free(dir);
}

/* "cli:<user>" of the effective user (its number when it has no name). */
static void audit_cli_actor(char out[128])
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    uid_t uid = geteuid();
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found)
        snprintf(out, 128, "cli:%s", found->pw_name);
    else
        snprintf(out, 128, "cli:%u", (unsigned)uid);
}

int audit_cli(const struct config *cfg, const struct audit_event *ev, char **err)
{
    const struct audit_conf *ac = audit_conf(cfg);
    if (!ac->path)
        return 0;
    char actor[128];
    audit_cli_actor(actor);
    struct audit_event e = *ev;
    if (!e.actor)
        e.actor = actor;
    if (!e.client)
        e.client = "local";
    struct buf b = {0};
    audit_event_head(&b, &e);
    audit_make_dir(ac->path);
    struct audit_file f = {
        .path = ac->path, .max_size = ac->max_size, .keep = ac->keep, .key = ac->key.bytes};
    struct audit_item item = {b.data, b.len};
    int rc = audit_file_append(&f, &item, 1, clock_wall_us(), NULL, err);
    buf_release(&b);
    return rc;
}

/* ---- the audit thread ------------------------------------------------------------- */

static void audit_write_batch(struct audit_gw *g, struct audit_item *items, size_t n)
{
    g->file.max_size = __atomic_load_n(&g->max_size, __ATOMIC_RELAXED);
    g->file.keep = __atomic_load_n(&g->keep, __ATOMIC_RELAXED);
    char *err = NULL;
    size_t written = 0;
    int rc = audit_file_append(&g->file, items, n, clock_wall_us(), &written, &err);
    __atomic_add_fetch(&g->m_lines, written, __ATOMIC_RELAXED);
    if (rc < 0) {
        __atomic_add_fetch(&g->m_write_dropped, n - written, __ATOMIC_RELAXED);
        if (!g->failing)
            fprintf(stderr, "sluice: %s; dropping audit lines until a write succeeds\n", err);
        g->failing = true;
        free(err);
    } else {
        if (g->failing)
            fprintf(stderr, "sluice: audit: writing %s again\n", g->path);
        g->failing = false;
    }
    for (size_t i = 0; i < n; i++)
        free(items[i].head);
}

static void *audit_thread_main(void *arg)
{
    struct audit_gw *g = arg;
    struct audit_item *items = sl_malloc(AUDIT_BATCH * sizeof(*items));
    for (;;) {
        size_t n = audit_queue_take(g->q, items, AUDIT_BATCH, AUDIT_IDLE_MS);
        if (n > 0)
            audit_write_batch(g, items, n);
        else if (audit_queue_closed(g->q))
            break; /* closed and empty: everything queued is written */
    }
    free(items);
    return NULL;
}

/* ---- the request line (audit.requests) --------------------------------------------- */

static const char *audit_decision(enum sl_refusal r)
{
    const char *name = sl_refusal_name(r);
    return name ? name : "none";
}

static const char *audit_cache_status(const struct exchange *x)
{
    for (int i = 0; i < x->resp_extra.n; i++)
        if (str_ieq(x->resp_extra.v[i].name, x->resp_extra.v[i].name_len, "x-cache"))
            return x->resp_extra.v[i].value;
    return "";
}

static void audit_json_member(struct buf *b, const char *name, const char *value)
{
    buf_appendf(b, ",\"%s\":\"", name);
    size_t len = strlen(value);
    json_str_append_n(b, value, len > AUDIT_FIELD_MAX ? AUDIT_FIELD_MAX : len);
    buf_append(b, "\"", 1);
}

/* One line per request: the path without its query string, which often
 * carries credentials (?api_key=, ?token=). */
static void audit_finish(struct exchange *x)
{
    struct audit_gw *g = audit_gw_of(x->worker->gw);
    if (!g || x->admin || !audit_conf(x->cfg)->requests)
        return;
    char status[16];
    snprintf(status, sizeof(status), "%d", x->status);
    struct buf b = {0};
    audit_line_head(&b, clock_wall_us(), x->identity.id[0] ? x->identity.id : "unknown", "request",
                    x->path ? x->path : "", status, x->client_ip[0] ? x->client_ip : x->peer_ip);
    audit_json_member(&b, "request_id", x->request_id);
    audit_json_member(&b, "method", x->method_name ? x->method_name : "");
    buf_appendf(&b, ",\"status\":%d,\"latency_ms\":%.3f", x->status,
                (double)(clock_mono_us() - x->start_us) / 1000.0);
    audit_json_member(&b, "decision", audit_decision(x->refused_by));
    audit_json_member(&b, "cache", audit_cache_status(x));
    audit_queue_push(g->q, b.data, b.len);
    buf_release(&b);
}

/* ---- the module -------------------------------------------------------------------- */

static void audit_settings(struct audit_gw *g, const struct audit_conf *ac)
{
    __atomic_store_n(&g->max_size, ac->max_size, __ATOMIC_RELAXED);
    __atomic_store_n(&g->keep, ac->keep, __ATOMIC_RELAXED);
}

static int audit_init_process(struct gateway *gw, char **err)
{
    const struct audit_conf *ac = audit_conf(gw->cfg);
    if (!ac->path)
        return 0;
    audit_make_dir(ac->path);
    /* A log that cannot be opened at all is a config mistake: say so now
     * rather than drop every line. */
    int probe = open(ac->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (probe < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "audit: cannot open %s: %s", ac->path, strerror(errno));
        *err = sl_strdup(msg);
        return -1;
    }
    close(probe);
    struct audit_gw *g = sl_calloc(1, sizeof(*g));
    g->path = sl_strdup(ac->path);
    memcpy(g->key, ac->key.bytes, sizeof(g->key));
    g->file.path = g->path;
    g->file.key = g->key;
    audit_settings(g, ac);
    g->q = audit_queue_new(AUDIT_QUEUE_MAX);
    if (pthread_create(&g->thread, NULL, audit_thread_main, g) != 0)
        sl_fatal("audit: cannot start its thread");
    gw->ctx[MOD_audit] = g;
    return 0;
}

static void audit_dispose_process(struct gateway *gw)
{
    struct audit_gw *g = audit_gw_of(gw);
    if (!g)
        return;
    audit_queue_close(g->q); /* the thread writes what is queued, then ends */
    pthread_join(g->thread, NULL);
    audit_queue_free(g->q);
    free(g->path);
    free(g);
    gw->ctx[MOD_audit] = NULL;
}

/* Every configuration a reload installs, whoever asked for it (SIGHUP or
 * POST /reload, which also has a line of its own). */
static void audit_on_reload(struct gateway *gw, const struct config *old, const struct config *cfg,
                            struct buf *warnings)
{
    struct audit_gw *g = audit_gw_of(gw);
    if (!g)
        return;
    if (audit_conf(cfg)->path)
        audit_settings(g, audit_conf(cfg));
    struct audit_event ev = {.actor = "gateway",
                             .action = "config.reloaded",
                             .target = gw->config_path,
                             .result = "ok",
                             .client = "local"};
    audit_admin(gw, &ev);
}

static void audit_metrics(struct gateway *gw, struct buf *out)
{
    struct audit_gw *g = audit_gw_of(gw);
    uint64_t lines = g ? __atomic_load_n(&g->m_lines, __ATOMIC_RELAXED) : 0;
    uint64_t full = g ? audit_queue_dropped(g->q) : 0;
    uint64_t failed = g ? __atomic_load_n(&g->m_write_dropped, __ATOMIC_RELAXED) : 0;
    metrics_render_single(out, "sluice_audit_lines_total", "counter",
                          "Audit lines written to audit.path.", (unsigned long long)lines);
    buf_appendf(out,
                "# HELP sluice_audit_dropped_total Audit lines dropped: the queue was full, or "
                "the write failed (ENOSPC, EIO).\n"
                "# TYPE sluice_audit_dropped_total counter\n"
                "sluice_audit_dropped_total{reason=\"queue_full\"} %llu\n"
                "sluice_audit_dropped_total{reason=\"write_error\"} %llu\n",
                (unsigned long long)full, (unsigned long long)failed);
}

const struct sl_module audit_module = {
    .name = "audit",
    .conf = &audit_cfg_module,
    .init_process = audit_init_process,
    .dispose_process = audit_dispose_process,
    .on_reload = audit_on_reload,
    .finish = audit_finish,
    .metrics = audit_metrics,
};
