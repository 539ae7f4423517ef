/* The abuse module (SPEC 7.3): each 429 of a limit or a quota is a
 * violation of its identity; more than `abuse.violations` within
 * `abuse.window` bans the identity (longer for each repeat, up to
 * `max_ban`); a banned identity gets 403 "temporarily banned" before any
 * other stage spends work: an ip: ban right after the address is known, a
 * key: or sub: ban right after authentication. Bans are kept in the store
 * (abuse/store.h), so they reach the fleet and survive restarts; the admin
 * API lists violators and bans, and makes and ends bans. docs/abuse.md. */
#include <inttypes.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse/ban.h"
#include "abuse/conf.h"
#include "abuse/count.h"
#include "abuse/runtime.h"
#include "abuse/tracker.h"
#include "admin/events.h"
#include "audit/audit.h"
#include "fleet/fleet.h"
#include "modules.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/str.h"

/* Identities whose violations are counted: ~300 bytes each, 15 MB in all;
 * past it the one whose last violation is the oldest is forgotten. */
#define ABUSE_TRACKED_MAX 50000
/* The longest GET /violations list. */
#define ABUSE_TOP_MAX 1000
#define ABUSE_TOP_DEFAULT 20

/* gw->ctx[MOD_abuse]. */
struct abuse_gw {
    struct abuse_runtime *rt;
    struct abuse_counter *counter;
    int64_t window_ms;          /* the counter's: a change waits for a restart */
    bool fleet_counts;          /* the counter is Redis's */
    uint64_t bans[ABUSE_SRC_N]; /* atomic: bans this gateway made, by source */
    /* Set when the first worker stops: the runtime's thread outlives the
     * workers (and the event streams and the audit log they feed), so from
     * then on a ban it makes is stored and logged, not announced. */
    pthread_mutex_t quiet_lock;
    bool quiet;
};

/* w->ctx[MOD_abuse]: the worker's view of the bans and its counter. */
struct abuse_worker {
    struct abuse_snap *snap;
    uint64_t gen;
    uint64_t refused[1]; /* requests refused for a ban */
};

static struct abuse_gw *abuse_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_abuse];
}

static struct abuse_worker *abuse_worker_of(const struct worker *w)
{
    return w->ctx[MOD_abuse];
}

static int64_t abuse_wall_ms(void)
{
    return clock_wall_us() / 1000;
}

/* The policy of config <c>: how long bans last, and how long an ended one
 * counts as a past one (max_ban: a ban that old is forgiven). */
static struct abuse_policy abuse_policy_of(const struct config *c)
{
    const struct abuse_conf *a = abuse_conf(c);
    struct abuse_policy p = {2 * 3600000ll, 2, ABUSE_DEFAULT_MAX_BAN_MS, ABUSE_DEFAULT_MAX_BAN_MS};
    if (a && a->enabled) {
        p.ban_ms = a->ban_ms;
        p.escalate = a->escalate;
        p.max_ban_ms = a->max_ban_ms;
        p.forget_ms = a->max_ban_ms;
    }
    return p;
}

/* <ms> as a config would say it, in the largest unit that divides it
 * ("24h" rather than "1d" below two days). */
static void abuse_fmt_duration(char *out, size_t cap, int64_t ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0 && ms / units[i].ms >= (i == 0 ? 2 : 1)) {
            snprintf(out, cap, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(out, cap, "%" PRId64 "ms", ms);
}

/* ---- the stages -------------------------------------------------------------------- */

/* 403 {"error": "Forbidden", "message": "temporarily banned", "retry_after": N}. */
static void abuse_refuse(struct exchange *x, const struct abuse_ban *b, int64_t now_ms)
{
    int64_t retry = abuse_ban_retry_after(b, now_ms);
    char n[24];
    snprintf(n, sizeof n, "%" PRId64, retry);
    exchange_add_header(x, "Retry-After", n);
    struct buf body = {0};
    buf_appendf(&body,
                "{\"error\": \"Forbidden\", \"message\": \"temporarily banned\", \"retry_after\": "
                "%" PRId64 "}\n",
                retry);
    metrics_counter_add(&abuse_worker_of(x->worker)->refused[0], 1);
    x->refused_by = SL_REFUSED_BAN;
    exchange_respond(x, 403, "application/json", body.data, body.len);
    buf_release(&body);
}

/* Refuses <x> when <identity> is banned; the clock is read only when some
 * ban exists. */
static enum stage_result abuse_check(struct exchange *x, const char *identity)
{
    struct abuse_worker *aw = abuse_worker_of(x->worker);
    abuse_rt_sync(abuse_gw_of(x->worker->gw)->rt, &aw->snap, &aw->gen);
    if (abuse_snap_empty(aw->snap))
        return STAGE_NEXT;
    int64_t now = abuse_wall_ms();
    const struct abuse_ban *b = abuse_snap_find(aw->snap, identity, now);
    if (!b)
        return STAGE_NEXT;
    abuse_refuse(x, b, now);
    return STAGE_DONE;
}

/* In the access phase: the identity is still the client's address. */
static enum stage_result abuse_stage_ip(struct exchange *x)
{
    return abuse_check(x, x->identity.id);
}

/* Right after authentication: a key's or a JWT subject's own ban. */
static enum stage_result abuse_stage_identity(struct exchange *x)
{
    if (x->identity.kind == ID_IP)
        return STAGE_NEXT; /* checked in the access phase */
    return abuse_check(x, x->identity.id);
}

/* ---- announcing a ban ---------------------------------------------------------------- */

/* A made or ended ban <b>: a log line, an event, the counter. Any thread. */
static void abuse_announce(struct gateway *gw, const char *type, const struct abuse_ban *b,
                           int64_t now_ms)
{
    bool added = strcmp(type, "ban.added") == 0;
    char len[32];
    abuse_fmt_duration(len, sizeof len, b->until_ms - b->created_ms);
    if (added) {
        fprintf(stderr,
                "sluice: ban: %s banned for %s (%s, ban %" PRId64 " of this identity)%s%s\n",
                b->identity, len, abuse_source_name(b->source), b->count, b->reason[0] ? ": " : "",
                b->reason);
        __atomic_add_fetch(&abuse_gw_of(gw)->bans[b->source], 1, __ATOMIC_RELAXED);
    } else {
        fprintf(stderr, "sluice: ban: %s unbanned\n", b->identity);
    }
    json_t *ev = json_pack("{s:s, s:o}", "type", type, "ban", abuse_ban_json(b, now_ms));
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    struct abuse_gw *g = abuse_gw_of(gw);
    pthread_mutex_lock(&g->quiet_lock);
    if (text && !g->quiet)
        events_publish(gw, type, text, strlen(text));
    pthread_mutex_unlock(&g->quiet_lock);
    free(text);
    json_decref(ev);
}

/* The members an audit line of ban <b> adds, as a C string in <extra>. */
static void abuse_audit_extra(struct buf *extra, const struct abuse_ban *b)
{
    buf_appendf(extra,
                ",\"source\":\"%s\",\"until\":%" PRId64 ",\"count\":%" PRId64 ",\"reason\":\"",
                abuse_source_name(b->source), (b->until_ms + 999) / 1000, b->count);
    json_str_append(extra, b->reason);
    buf_append(extra, "\"", 2); /* with its NUL */
}

/* ---- violations: the finish hook ------------------------------------------------------- */

/* An automatic ban on its way to the runtime's thread. */
struct abuse_auto {
    struct gateway *gw;
    struct abuse_policy policy;
    char identity[ABUSE_ID_MAX];
    char reason[ABUSE_REASON_MAX];
};

static void abuse_auto_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct abuse_auto *a = arg;
    struct abuse_ban b;
    char why[256];
    int64_t now = abuse_wall_ms();
    int rc = abuse_rt_ban(abuse_gw_of(a->gw)->rt, ABUSE_SRC_AUTO, a->identity, a->reason, 0,
                          &a->policy, now, &b, why, sizeof why);
    if (rc < 0) {
        fprintf(stderr, "sluice: ban: cannot ban %s: %s\n", a->identity, why);
    } else if (rc > 0) {
        abuse_announce(a->gw, "ban.added", &b, now);
        struct buf extra = {0};
        abuse_audit_extra(&extra, &b);
        struct audit_event ev = {"gateway", "ban.add", b.identity, "ok", "local", extra.data};
        struct abuse_gw *g = abuse_gw_of(a->gw);
        pthread_mutex_lock(&g->quiet_lock);
        if (!g->quiet)
            audit_admin(a->gw, &ev);
        pthread_mutex_unlock(&g->quiet_lock);
        buf_release(&extra);
    }
    free(a);
}

/* A violation being counted (abuse/count.h): what a ban needs if it
 * crosses the threshold. */
struct abuse_counted {
    struct worker *w;
    int64_t window_ms;
    struct abuse_auto *req; /* handed to the runtime's thread on a crossing */
};

static void abuse_on_counted(void *arg, int64_t n, bool crossed)
{
    struct abuse_counted *c = arg;
    struct abuse_auto *req = c->req;
    struct abuse_worker *aw = abuse_worker_of(c->w);
    struct abuse_gw *g = abuse_gw_of(c->w->gw);
    abuse_rt_sync(g->rt, &aw->snap, &aw->gen);
    /* Not when banned already (on another gateway, meanwhile). */
    if (!crossed || abuse_snap_find(aw->snap, req->identity, abuse_wall_ms())) {
        free(req);
        free(c);
        return;
    }
    char win[32];
    abuse_fmt_duration(win, sizeof win, c->window_ms);
    snprintf(req->reason, sizeof req->reason, "%" PRId64 " violations within %s", n, win);
    abuse_rt_post(g->rt, abuse_auto_run, req);
    free(c);
}

/* After the response: a 429 of a limit or a quota is a violation of its
 * identity; the one that crosses the threshold (counting forgets the
 * identity's count then, so the next ban needs as many again) asks the
 * runtime's thread for a ban. */
static void abuse_finish(struct exchange *x)
{
    if (x->refused_by != SL_REFUSED_LIMIT && x->refused_by != SL_REFUSED_QUOTA)
        return;
    struct abuse_gw *g = abuse_gw_of(x->worker->gw);
    const struct abuse_conf *a = abuse_conf(x->cfg);
    struct abuse_counted *c = sl_calloc(1, sizeof *c);
    c->w = x->worker;
    c->window_ms = g->window_ms;
    c->req = sl_calloc(1, sizeof *c->req);
    c->req->gw = x->worker->gw;
    c->req->policy = abuse_policy_of(x->cfg);
    str_copy(c->req->identity, sizeof c->req->identity, x->identity.id);
    g->counter->ops->record(g->counter, x->worker, x->identity.id,
                            a && a->enabled ? a->violations : 0, abuse_on_counted, c);
}

/* ---- admin API: /violations ------------------------------------------------------------ */

/* The value of parameter <name> in query <q>/<len> into <out> (decoded);
 * 1 found, 0 absent, -1 malformed or too long. */
static int abuse_query_param(const char *q, size_t len, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        if (end - i > nlen && memcmp(q + i, name, nlen) == 0 && q[i + nlen] == '=') {
            char raw[128];
            size_t vlen = end - i - nlen - 1;
            if (vlen >= sizeof raw)
                return -1;
            memcpy(raw, q + i + nlen + 1, vlen);
            raw[vlen] = '\0';
            return abuse_pct_decode(raw, out, cap) < 0 ? -1 : 1;
        }
        i = end + 1;
    }
    return 0;
}

/* Is every parameter of <q>/<len> one GET /violations knows? */
static bool abuse_query_known(const char *q, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        size_t klen = 0;
        while (i + klen < end && q[i + klen] != '=')
            klen++;
        if (klen && !str_ieq(q + i, klen, "top") && !str_ieq(q + i, klen, "window"))
            return false;
        i = end + 1;
    }
    return true;
}

/* GET /violations on its way through the counter (Redis: a script). The
 * exchange may end first; the call lives until both are done with it. */
struct abuse_top_call {
    struct exchange *x; /* NULL once the exchange ended */
    int refs;
    char window[32];
};

static void abuse_top_unref(struct abuse_top_call *t)
{
    if (--t->refs == 0)
        free(t);
}

static void abuse_top_ended(struct exchange *x, void *arg)
{
    (void)x;
    struct abuse_top_call *t = arg;
    t->x = NULL;
    abuse_top_unref(t);
}

static void abuse_top_done(void *arg, const struct abuse_violator *v, int n, const char *why)
{
    struct abuse_top_call *t = arg;
    struct exchange *x = t->x;
    if (x && why) {
        exchange_respond_error(x, 503, why);
    } else if (x) {
        struct abuse_worker *aw = abuse_worker_of(x->worker);
        abuse_rt_sync(abuse_gw_of(x->worker->gw)->rt, &aw->snap, &aw->gen);
        int64_t now = abuse_wall_ms();
        json_t *list = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(
                list, json_pack("{s:o, s:I, s:I, s:b}", "identity", abuse_json_text(v[i].identity),
                                "violations", (json_int_t)v[i].count, "last",
                                (json_int_t)(v[i].last_ms / 1000), "banned",
                                abuse_snap_find(aw->snap, v[i].identity, now) != NULL));
        exchange_respond_json(x, 200,
                              json_pack("{s:s, s:o}", "window", t->window, "violators", list));
    }
    abuse_top_unref(t);
}

/* GET /violations?top=N&window=24h: {"window": "24h", "violators":
 * [{"identity", "violations", "last", "banned"}]}, most violations first. */
static void abuse_admin_violations(struct exchange *x, const struct sl_admin_call *call)
{
    (void)call;
    struct abuse_gw *g = abuse_gw_of(x->worker->gw);
    const char *q = x->query ? x->query : "";
    size_t qlen = x->query ? x->query_len : 0;
    char top_s[32], win_s[32];
    int64_t top = ABUSE_TOP_DEFAULT, tracked = g->window_ms;
    int64_t window = abuse_window_ms(abuse_conf(x->cfg));
    if (window > tracked)
        window = tracked; /* a reload lengthened the window: it applies on restart */
    if (!abuse_query_known(q, qlen)) {
        exchange_respond_error(x, 400, "unknown parameter (GET /violations takes top and window)");
        return;
    }
    int rc = abuse_query_param(q, qlen, "top", top_s, sizeof top_s);
    char *end = NULL;
    if (rc < 0 || (rc > 0 && ((top = strtoll(top_s, &end, 10)) < 1 || top > ABUSE_TOP_MAX ||
                              *end != '\0' || top_s[0] < '0' || top_s[0] > '9'))) {
        exchange_respond_error(x, 400, "top must be a number from 1 to 1000");
        return;
    }
    rc = abuse_query_param(q, qlen, "window", win_s, sizeof win_s);
    if (rc < 0 || (rc > 0 && (cfg_parse_duration_ms(win_s, &window) < 0 || window < 1000 ||
                              window > tracked))) {
        char most[32], msg[160];
        abuse_fmt_duration(most, sizeof most, tracked);
        snprintf(msg, sizeof msg,
                 "window must be a duration such as 1h or 24h, from 1s to %s (the window "
                 "violations are counted over)",
                 most);
        exchange_respond_error(x, 400, msg);
        return;
    }
    struct abuse_top_call *t = sl_calloc(1, sizeof *t);
    t->x = x;
    t->refs = 2;
    if (rc == 0)
        abuse_fmt_duration(t->window, sizeof t->window, window);
    else
        str_copy(t->window, sizeof t->window, win_s);
    exchange_on_end(x, abuse_top_ended, t);
    g->counter->ops->top(g->counter, x->worker, window, (int)top, abuse_top_done, t);
}

/* ---- admin API: /bans ------------------------------------------------------------------- */

/* An admin call on its way through the runtime's thread. The exchange may
 * end first (the client went away); the op lives until both are done. */
struct abuse_op {
    struct exchange *x; /* NULL once the exchange ended */
    struct gateway *gw;
    int refs; /* the exchange's and the thread's; both on the loop */
    struct abuse_runtime *rt;
    struct abuse_policy policy;
    struct abuse_ban_req req;
    struct abuse_ban ban; /* made or ended */
    int rc;
    json_t *list;
    char why[256];
};

static void abuse_op_unref(struct abuse_op *op)
{
    if (--op->refs > 0)
        return;
    json_decref(op->list);
    free(op);
}

static void abuse_op_ended(struct exchange *x, void *arg)
{
    (void)x;
    struct abuse_op *op = arg;
    op->x = NULL;
    abuse_op_unref(op);
}

static struct abuse_op *abuse_op_new(struct exchange *x)
{
    struct abuse_op *op = sl_calloc(1, sizeof *op);
    op->gw = x->worker->gw;
    op->rt = abuse_gw_of(op->gw)->rt;
    op->policy = abuse_policy_of(x->cfg);
    return op;
}

static void abuse_op_submit(struct exchange *x, struct abuse_op *op, dbw_run_fn run,
                            dbw_done_fn done)
{
    op->x = x;
    op->refs = 2;
    exchange_on_end(x, abuse_op_ended, op);
    abuse_rt_submit(op->rt, &x->worker->loop, run, done, op);
}

/* The audit line of a change that answered <status>; written even when
 * the caller went away first, since the change happened. */
static void abuse_audit(struct abuse_op *op, const char *action, const char *target, int status,
                        const char *extra)
{
    if (op->x) {
        audit_admin_call(op->x, action, target, status, extra);
        return;
    }
    char result[16];
    snprintf(result, sizeof result, "%d", status);
    struct audit_event ev = {"admin-api",    action, target, status < 400 ? "ok" : result,
                             "disconnected", extra};
    audit_admin(op->gw, &ev);
}

static void abuse_list_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct abuse_op *op = arg;
    op->list = abuse_rt_list(op->rt, abuse_wall_ms());
}

static void abuse_list_done(void *arg)
{
    struct abuse_op *op = arg;
    if (op->x)
        exchange_respond_json(op->x, 200, json_pack("{s:O}", "bans", op->list));
    abuse_op_unref(op);
}

/* GET /bans: {"bans": [ban, ...]}, the active ones, newest first. */
static void abuse_admin_list(struct exchange *x, const struct sl_admin_call *call)
{
    (void)call;
    abuse_op_submit(x, abuse_op_new(x), abuse_list_run, abuse_list_done);
}

static void abuse_add_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct abuse_op *op = arg;
    int64_t now = abuse_wall_ms();
    op->rc = abuse_rt_ban(op->rt, ABUSE_SRC_MANUAL, op->req.identity, op->req.reason,
                          op->req.duration_ms, &op->policy, now, &op->ban, op->why, sizeof op->why);
    if (op->rc > 0)
        abuse_announce(op->gw, "ban.added", &op->ban, now);
}

static void abuse_add_done(void *arg)
{
    struct abuse_op *op = arg;
    int status = op->rc == ABUSE_RT_FULL ? 409 : op->rc < 0 ? 503 : 201;
    struct buf extra = {0};
    if (status == 201) {
        abuse_audit_extra(&extra, &op->ban);
    } else {
        buf_append(&extra, ",\"reason\":\"", 11);
        json_str_append(&extra, op->req.reason);
        buf_append(&extra, "\"", 2);
    }
    abuse_audit(op, "ban.add", op->req.identity, status, extra.data);
    buf_release(&extra);
    if (op->x) {
        if (status != 201)
            exchange_respond_error(op->x, status, op->why);
        else
            exchange_respond_json(op->x, 201, abuse_ban_json(&op->ban, abuse_wall_ms()));
    }
    abuse_op_unref(op);
}

/* POST /bans {"identity": "ip:198.51.100.7", "duration": "1h", "reason": "..."}:
 * 201 with the ban. */
static void abuse_admin_add(struct exchange *x, const struct sl_admin_call *call)
{
    struct abuse_op *op = abuse_op_new(x);
    const char *bad =
        abuse_ban_req_parse(call->body, call->body_len, x->cfg->server.ipv6_prefix, &op->req);
    if (bad) {
        free(op);
        exchange_respond_error(x, 400, bad);
        return;
    }
    abuse_op_submit(x, op, abuse_add_run, abuse_add_done);
}

static void abuse_delete_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct abuse_op *op = arg;
    int64_t now = abuse_wall_ms();
    op->rc = abuse_rt_unban(op->rt, op->req.identity, now, &op->ban, op->why, sizeof op->why);
    if (op->rc > 0)
        abuse_announce(op->gw, "ban.removed", &op->ban, now);
}

static void abuse_delete_done(void *arg)
{
    struct abuse_op *op = arg;
    int status = op->rc < 0 ? 503 : op->rc == 0 ? 404 : 204;
    abuse_audit(op, "ban.remove", op->req.identity, status, NULL);
    if (op->x) {
        if (status == 503)
            exchange_respond_error(op->x, 503, op->why);
        else if (status == 404)
            exchange_respond_error(op->x, 404, "this identity is not banned");
        else
            exchange_respond(op->x, 204, NULL, NULL, 0);
    }
    abuse_op_unref(op);
}

/* DELETE /bans/{identity} (URL-encoded): 204, or 404 when not banned. */
static void abuse_admin_delete(struct exchange *x, const struct sl_admin_call *call)
{
    char raw[ABUSE_ID_MAX * 3];
    int len = abuse_pct_decode(call->id, raw, sizeof raw);
    struct abuse_op *op = abuse_op_new(x);
    const char *bad = len < 0 ? "the identity is not a valid URL-encoded string"
                              : abuse_identity_parse(raw, (size_t)len, x->cfg->server.ipv6_prefix,
                                                     op->req.identity);
    if (bad) {
        free(op);
        exchange_respond_error(x, 400, bad);
        return;
    }
    abuse_op_submit(x, op, abuse_delete_run, abuse_delete_done);
}

static const struct sl_admin_route abuse_admin_routes[] = {
    {HTTP_GET, "/violations", abuse_admin_violations, 0},
    {HTTP_GET, "/bans", abuse_admin_list, 0},
    {HTTP_POST, "/bans", abuse_admin_add, ABUSE_BODY_MAX},
    {HTTP_DELETE, "/bans/{id}", abuse_admin_delete, 0},
    {0, NULL, NULL, 0},
};

/* ---- process, workers, metrics ------------------------------------------------------------ */

static int abuse_init_process(struct gateway *gw, char **err)
{
    struct abuse_policy p = abuse_policy_of(gw->cfg);
    struct abuse_runtime *rt = abuse_rt_open(gw->cfg, p.forget_ms, err);
    if (!rt)
        return -1;
    struct abuse_gw *g = sl_calloc(1, sizeof *g);
    pthread_mutex_init(&g->quiet_lock, NULL);
    g->rt = rt;
    g->window_ms = abuse_window_ms(abuse_conf(gw->cfg));
    /* In Redis only when bans come of the counts: a 429 then costs one more
     * script call, which a fleet without automatic bans does not pay. */
    struct fleet *f = fleet_of(gw);
    g->counter = f && abuse_conf(gw->cfg)->enabled
                     ? abuse_counter_redis_new(fleet_prefix(f), ABUSE_TRACKED_MAX, g->window_ms)
                     : abuse_counter_mem_new(ABUSE_TRACKED_MAX, g->window_ms);
    g->fleet_counts = f && abuse_conf(gw->cfg)->enabled;
    gw->ctx[MOD_abuse] = g;
    return 0;
}

static void abuse_dispose_process(struct gateway *gw)
{
    struct abuse_gw *g = abuse_gw_of(gw);
    if (!g)
        return;
    g->quiet = true; /* no worker runs now (a start that failed never stopped one) */
    abuse_rt_close(g->rt);
    g->counter->ops->free(g->counter);
    pthread_mutex_destroy(&g->quiet_lock);
    free(g);
    gw->ctx[MOD_abuse] = NULL;
}

static void abuse_on_reload(struct gateway *gw, const struct config *old, const struct config *cfg,
                            struct buf *warnings)
{
    (void)old;
    struct abuse_gw *g = abuse_gw_of(gw);
    abuse_rt_set_forget(g->rt, abuse_policy_of(cfg).forget_ms);
    if (abuse_window_ms(abuse_conf(cfg)) != g->window_ms)
        buf_append_str(warnings, "abuse.window changes only on restart\n");
    if (fleet_of(gw) && abuse_conf(cfg)->enabled != g->fleet_counts)
        buf_append_str(warnings, "abuse: counting violations in Redis (fleet-wide) starts or "
                                 "stops only on restart\n");
}

static void abuse_init_worker(struct worker *w)
{
    w->ctx[MOD_abuse] = sl_calloc(1, sizeof(struct abuse_worker));
}

static void abuse_stop_worker(struct worker *w)
{
    struct abuse_gw *g = abuse_gw_of(w->gw);
    pthread_mutex_lock(&g->quiet_lock);
    g->quiet = true;
    pthread_mutex_unlock(&g->quiet_lock);
}

static void abuse_dispose_worker(struct worker *w)
{
    struct abuse_worker *aw = abuse_worker_of(w);
    abuse_snap_unref(aw->snap);
    free(aw);
}

static uint64_t abuse_refused_sum(struct gateway *gw)
{
    uint64_t sum = 0;
    for (int i = 0; i < gw->n_workers; i++)
        sum += __atomic_load_n(&abuse_worker_of(&gw->workers[i])->refused[0], __ATOMIC_RELAXED);
    return sum;
}

static void abuse_metrics(struct gateway *gw, struct buf *out)
{
    struct abuse_gw *g = abuse_gw_of(gw);
    buf_append_str(out, "# HELP sluice_bans_total Bans this gateway made, by source.\n"
                        "# TYPE sluice_bans_total counter\n");
    for (int s = 0; s < ABUSE_SRC_N; s++)
        buf_appendf(out, "sluice_bans_total{source=\"%s\"} %llu\n",
                    abuse_source_name((enum abuse_source)s),
                    (unsigned long long)__atomic_load_n(&g->bans[s], __ATOMIC_RELAXED));
    metrics_render_single(out, "sluice_banned_requests_total", "counter",
                          "Requests refused because their identity is banned.",
                          (unsigned long long)abuse_refused_sum(gw));
    struct abuse_snap *snap = NULL;
    uint64_t gen = 0;
    abuse_rt_sync(g->rt, &snap, &gen);
    int active = abuse_snap_active(snap, abuse_wall_ms());
    abuse_snap_unref(snap);
    metrics_render_single(out, "sluice_bans_active", "gauge",
                          "Bans in force now (fleet-wide, as this gateway last read them).",
                          (unsigned long long)active);
    metrics_render_single(out, "sluice_violators_tracked", "gauge",
                          "Identities whose violations this gateway counts in its memory "
                          "(with Redis: while Redis is away).",
                          abuse_tracker_size(g->counter->local));
}

static const struct sl_stage abuse_stages[] = {
    {SL_PHASE_ACCESS, false, abuse_stage_ip},
    {SL_PHASE_AUTHN, false, abuse_stage_identity},
};

const struct sl_module abuse_module = {
    .name = "abuse",
    .conf = &abuse_cfg_module,
    .init_process = abuse_init_process,
    .dispose_process = abuse_dispose_process,
    .on_reload = abuse_on_reload,
    .init_worker = abuse_init_worker,
    .stop_worker = abuse_stop_worker,
    .dispose_worker = abuse_dispose_worker,
    .stages = abuse_stages,
    .n_stages = 2,
    .finish = abuse_finish,
    .admin_routes = abuse_admin_routes,
    .metrics = abuse_metrics,
};
