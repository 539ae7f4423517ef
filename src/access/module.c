/* The access module (SPEC 7.1): access lists from the config and from the
 * admin API, checked right after the client address is known and before
 * any other stage spends work; a refusal is 403 "address not allowed".
 * docs/protection.md. */
#include <inttypes.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "access/access.h"
#include "access/conf.h"
#include "access/decide.h"
#include "access/runtime.h"
#include "audit/audit.h"
#include "modules.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/mem.h"

/* A worker's view: its snapshot of the run-time lists and its counters. */
struct acl_worker {
    struct acl_snap *snap;
    uint64_t gen;
    uint64_t denied[ACL_SRC_N]; /* by enum acl_source */
};

static struct acl_runtime *acl_rt_of(const struct gateway *gw)
{
    return gw->ctx[MOD_access];
}

static struct acl_worker *acl_worker_of(const struct worker *w)
{
    return w->ctx[MOD_access];
}

static int64_t acl_wall_ms(void)
{
    return clock_wall_us() / 1000;
}

void acl_refuse(struct exchange *x, int source)
{
    metrics_counter_add(&acl_worker_of(x->worker)->denied[source], 1);
    x->refused_by = SL_REFUSED_ACCESS;
    exchange_respond_error(x, 403, "address not allowed");
}

static enum stage_result acl_stage(struct exchange *x)
{
    struct acl_worker *aw = acl_worker_of(x->worker);
    acl_rt_sync(acl_rt_of(x->worker->gw), &aw->snap, &aw->gen);
    const struct acl_conf *top = acl_conf(x->cfg), *route = acl_route_conf(x->route);
    const struct acl_snap *rt = aw->snap;
    /* No list anywhere (the common case): nothing to parse. */
    if (!(top && (top->allow_trie || top->deny_trie)) &&
        !(route && (route->allow_trie || route->deny_trie)) && !rt->allow && !rt->deny)
        return STAGE_NEXT;
    int family;
    uint8_t addr[16];
    bool ok = acl_parse_addr(x->client_ip, &family, addr);
    /* The config's networks never expire: the clock is read only when
     * run-time entries (which may) exist. */
    int64_t now = rt->allow || rt->deny ? acl_wall_ms() : 0;
    int src = acl_decide(top, route, rt, ok, family, addr, now);
    if (src == ACL_SRC_N)
        return STAGE_NEXT;
    acl_refuse(x, src);
    return STAGE_DONE;
}

/* After authentication (SPEC 7.1: per key allow_ips): a key used from
 * outside its networks is refused as any other address, before the limits
 * and quotas count the request. */
static enum stage_result acl_key_stage(struct exchange *x)
{
    const struct identity *id = &x->identity;
    if (id->n_allow_ips == 0)
        return STAGE_NEXT;
    int family;
    uint8_t addr[16];
    bool ok = acl_parse_addr(x->client_ip, &family, addr);
    if (acl_key_admits(id->allow_ips, id->n_allow_ips, ok, family, addr))
        return STAGE_NEXT;
    acl_refuse(x, ACL_SRC_KEY);
    return STAGE_DONE;
}

/* ---- admin API: /access ------------------------------------------------ */

/* An admin call on its way through the runtime's thread (runtime.h): the
 * store's I/O never runs on a worker's loop. The exchange may end first
 * (the client went away); the op lives until both are done with it. */
struct acl_op {
    struct exchange *x; /* NULL once the exchange ended */
    struct gateway *gw; /* for the audit line when the exchange ended first */
    int refs;           /* the exchange's and the thread's; both on the loop */
    struct acl_runtime *rt;
    struct acl_entry entry; /* POST: in, with its id once stored */
    int64_t id;             /* DELETE */
    int rc;
    json_t *list; /* GET */
    char why[256];
};

static void acl_op_unref(struct acl_op *op)
{
    if (--op->refs > 0)
        return;
    json_decref(op->list);
    free(op);
}

static void acl_op_ended(struct exchange *x, void *arg)
{
    (void)x;
    struct acl_op *op = arg;
    op->x = NULL;
    acl_op_unref(op);
}

static void acl_op_submit(struct exchange *x, struct acl_op *op, dbw_run_fn run, dbw_done_fn done)
{
    op->x = x;
    op->gw = x->worker->gw;
    op->refs = 2;
    op->rt = acl_rt_of(x->worker->gw);
    exchange_on_end(x, acl_op_ended, op);
    acl_rt_submit(op->rt, &x->worker->loop, run, done, op);
}

static void acl_list_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct acl_op *op = arg;
    op->list = acl_rt_list(op->rt, acl_wall_ms());
}

static void acl_list_done(void *arg)
{
    struct acl_op *op = arg;
    if (op->x) {
        exchange_respond_json(op->x, 200, json_pack("{s:O}", "entries", op->list));
    }
    acl_op_unref(op);
}

static void acl_admin_list(struct exchange *x, const struct sl_admin_call *call)
{
    (void)call;
    acl_op_submit(x, sl_calloc(1, sizeof(struct acl_op)), acl_list_run, acl_list_done);
}

static void acl_add_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct acl_op *op = arg;
    op->rc = acl_rt_add(op->rt, &op->entry, op->why, sizeof op->why);
}

/* The audit line of a change that answered <status>. The change happened
 * even when its caller went away first, so it is written then too. */
static void acl_audit(struct acl_op *op, const char *action, const char *target, int status,
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

static void acl_audit_add(struct acl_op *op, int status)
{
    const struct acl_entry *e = &op->entry;
    char target[ACL_CIDR_TEXT + 16];
    snprintf(target, sizeof target, "%s:%s", e->list == ACL_ALLOW ? "allow" : "deny", e->cidr);
    struct buf extra = {0};
    buf_appendf(&extra, ",\"id\":%" PRId64 ",\"expires_ms\":%" PRId64 ",\"note\":\"", e->id,
                e->expires_ms);
    json_str_append(&extra, e->note);
    buf_append(&extra, "\"", 2); /* with its NUL: a C string for the audit line */
    acl_audit(op, "access.add", target, status, extra.data);
    buf_release(&extra);
}

/* Each of the add and delete handlers ends in one place that knows what
 * happened: where its audit line is written. */
static void acl_add_done(void *arg)
{
    struct acl_op *op = arg;
    int status = op->rc == ACL_RT_FULL ? 409 : op->rc < 0 ? 503 : 201;
    acl_audit_add(op, status);
    if (op->x) {
        if (status != 201)
            exchange_respond_error(op->x, status, op->why);
        else
            exchange_respond_json(op->x, 201, acl_entry_json(&op->entry));
    }
    acl_op_unref(op);
}

static void acl_admin_add(struct exchange *x, const struct sl_admin_call *call)
{
    struct acl_op *op = sl_calloc(1, sizeof *op);
    const char *bad = acl_entry_parse(call->body, call->body_len, acl_wall_ms(), &op->entry);
    if (bad) {
        free(op);
        exchange_respond_error(x, 400, bad);
        return;
    }
    acl_op_submit(x, op, acl_add_run, acl_add_done);
}

/* <s> as an entry id (1..2^53); false when it is not one. */
static bool acl_parse_id(const char *s, int64_t *id)
{
    char *end;
    if (!s || *s < '1' || *s > '9' || strlen(s) > 16)
        return false;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return false;
    *id = v;
    return true;
}

static void acl_delete_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct acl_op *op = arg;
    op->rc = acl_rt_delete(op->rt, op->id, op->why, sizeof op->why);
}

static void acl_delete_done(void *arg)
{
    struct acl_op *op = arg;
    int status = op->rc < 0 ? 503 : op->rc == 0 ? 404 : 204;
    char target[24];
    snprintf(target, sizeof target, "%" PRId64, op->id);
    acl_audit(op, "access.delete", target, status, NULL);
    if (op->x) {
        if (status == 503)
            exchange_respond_error(op->x, 503, op->why);
        else if (status == 404)
            exchange_respond_error(op->x, 404, "no such access-list entry");
        else
            exchange_respond(op->x, 204, NULL, NULL, 0);
    }
    acl_op_unref(op);
}

static void acl_admin_delete(struct exchange *x, const struct sl_admin_call *call)
{
    int64_t id;
    if (!acl_parse_id(call->id, &id)) {
        exchange_respond_error(x, 404, "no such access-list entry");
        return;
    }
    struct acl_op *op = sl_calloc(1, sizeof *op);
    op->id = id;
    acl_op_submit(x, op, acl_delete_run, acl_delete_done);
}

static const struct sl_admin_route acl_admin_routes[] = {
    {HTTP_GET, "/access", acl_admin_list, 0},
    {HTTP_POST, "/access", acl_admin_add, ACL_BODY_MAX},
    {HTTP_DELETE, "/access/{id}", acl_admin_delete, 0},
    {0, NULL, NULL, 0},
};

/* ---- process, workers, metrics ------------------------------------------ */

static int acl_init_process(struct gateway *gw, char **err)
{
    struct acl_runtime *rt = acl_rt_open(gw->cfg, err);
    if (!rt)
        return -1;
    gw->ctx[MOD_access] = rt;
    return 0;
}

static void acl_dispose_process(struct gateway *gw)
{
    acl_rt_close(acl_rt_of(gw));
    gw->ctx[MOD_access] = NULL;
}

static void acl_init_worker(struct worker *w)
{
    w->ctx[MOD_access] = sl_calloc(1, sizeof(struct acl_worker));
}

static void acl_dispose_worker(struct worker *w)
{
    struct acl_worker *aw = acl_worker_of(w);
    acl_snap_unref(aw->snap);
    free(aw);
}

static const uint64_t *acl_denied_of(struct worker *w)
{
    return acl_worker_of(w)->denied;
}

static void acl_metrics(struct gateway *gw, struct buf *out)
{
    static const char *const sources[ACL_SRC_N] = {"config", "runtime", "key"};
    metrics_render_fixed(gw, out, "sluice_access_denied_total",
                         "Requests refused by an access list, by where the list came from.",
                         "source", sources, ACL_SRC_N, acl_denied_of);
}

static const struct sl_stage acl_stages[] = {
    {SL_PHASE_ACCESS, false, acl_stage},
    {SL_PHASE_AUTHZ, false, acl_key_stage},
};

const struct sl_module access_module = {
    .name = "access",
    .conf = &acl_cfg_module,
    .init_process = acl_init_process,
    .dispose_process = acl_dispose_process,
    .init_worker = acl_init_worker,
    .dispose_worker = acl_dispose_worker,
    .stages = acl_stages,
    .n_stages = 2,
    .admin_routes = acl_admin_routes,
    .metrics = acl_metrics,
};
