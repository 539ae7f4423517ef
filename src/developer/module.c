/* The developer module (developer/developer.h): the stage, the endpoints
 * and their store operations. */
#include <jansson.h>
#include <llhttp.h>

#include "admin/admin.h"
#include "auth/auth.h"
#include "auth/conf.h"
#include "auth/jwt_verify.h"
#include "developer/developer.h"
#include "usage/usage.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* The longest {id} the router takes; a longer one is no key (404). */
#define DEV_MAX_ID 64

/* x->ctx[MOD_developer]: who is calling and what for; in the arena. */
struct dev_call {
    const struct sl_admin_route *route;
    char id[DEV_MAX_ID];
    struct jwtv_claims claims;
    char actor[16 + JWTV_MAX_SUB]; /* "developer:<sub>", for audit lines and events */
};

static struct dev_call *dev_call_of(struct exchange *x)
{
    return x->ctx[MOD_developer];
}

static int64_t dev_now_ms(void)
{
    return clock_wall_us() / 1000;
}

/* ---- answers ------------------------------------------------------------------------ */

static void dev_unauthorized(struct exchange *x, const char *message)
{
    exchange_add_header(x, "WWW-Authenticate", "Bearer realm=\"sluice-developer\"");
    exchange_respond_error(x, 401, message);
}

/* A store outcome other than KS_OK: 404 for a key that is not the caller's
 * (whether it exists or not: its existence is not the caller's business),
 * 409 for the cap, 503 while the store is away, else 500. */
static void dev_store_error(struct exchange *x, const struct auth_op *op)
{
    switch (op->rc) {
    case KS_NOT_FOUND:
        exchange_respond_error(x, 404, "no such key");
        return;
    case KS_CONFLICT:
        exchange_respond_error(x, 409, op->err ? op->err : "too many keys");
        return;
    case KS_UNAVAILABLE:
        exchange_respond_error(x, 503, op->err ? op->err : "the key store cannot be reached");
        return;
    default:
        exchange_respond_error(x, 500, op->err ? op->err : "the key store failed");
    }
}

static int dev_status_of(enum ks_result rc)
{
    return rc == KS_OK            ? 200
           : rc == KS_NOT_FOUND   ? 404
           : rc == KS_CONFLICT    ? 409
           : rc == KS_UNAVAILABLE ? 503
                                  : 500;
}

/* The audit line and the event of a key operation, as the admin API makes
 * them but with the developer as the actor. */
static void dev_audit(struct exchange *x, const struct auth_op *op, const char *action)
{
    auth_key_audit(x, op, action, dev_call_of(x)->actor, dev_status_of(op->rc));
}

static void dev_event(struct exchange *x, const struct auth_op *op, const char *type)
{
    auth_key_event(x, op, type, dev_call_of(x)->actor);
}

static void dev_key_answer(struct exchange *x, struct auth_op *op, int status)
{
    if (op->rc != KS_OK) {
        dev_store_error(x, op);
        return;
    }
    json_t *key = ks_key_json(&op->key);
    if (!op->secret[0]) {
        exchange_respond_json(x, status, key);
        return;
    }
    exchange_respond_json(x, status, json_pack("{s:o, s:s}", "key", key, "secret", op->secret));
}

/* ---- store operations (the writer thread) --------------------------------------- */

/* op->strs[0] is the caller's sub: the owner every operation is held to. */
static const char *dev_owner(const struct auth_op *op)
{
    return op->strs[0];
}

/* Keeps the keys of op's owner in op->list, newest first. */
static void dev_list_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_list(db, &op->list, &op->n_list, &op->err);
    if (op->rc != KS_OK)
        return;
    int n = 0;
    for (int i = 0; i < op->n_list; i++)
        if (strcmp(op->list[i].owner, dev_owner(op)) == 0)
            op->list[n++] = op->list[i];
    op->n_list = n;
}

/* Key op->id, if the owner's: KS_OK with op->key, else KS_NOT_FOUND. */
static enum ks_result dev_get_owned(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_get(db, op->id, &op->key, &op->err);
    if (op->rc == KS_OK && strcmp(op->key.owner, dev_owner(op)) != 0)
        op->rc = KS_NOT_FOUND;
    return op->rc;
}

static void dev_get_run(struct ks_db *db, struct auth_op *op)
{
    dev_get_owned(db, op);
}

/* The cap and the creation in one step of the one writer thread. */
static void dev_create_run(struct ks_db *db, struct auth_op *op)
{
    dev_list_run(db, op);
    if (op->rc != KS_OK)
        return;
    int active = 0;
    for (int i = 0; i < op->n_list; i++)
        active += op->list[i].state == KS_ACTIVE;
    free(op->list);
    op->list = NULL;
    op->n_list = 0;
    if (active >= op->limit) {
        op->rc = KS_CONFLICT;
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "you hold %d active keys, the most allowed (developer.max_keys): revoke one "
                 "first",
                 active);
        op->err = sl_strdup(msg);
        return;
    }
    op->rc = ks_create(db, &op->req, dev_now_ms(), &op->key, op->secret, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void dev_rotate_run(struct ks_db *db, struct auth_op *op)
{
    if (dev_get_owned(db, op) != KS_OK)
        return;
    op->rc = ks_rotate(db, op->id, op->grace_ms, dev_now_ms(), &op->key, op->secret, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void dev_revoke_run(struct ks_db *db, struct auth_op *op)
{
    if (dev_get_owned(db, op) != KS_OK)
        return;
    op->rc = ks_revoke(db, op->id, dev_now_ms(), &op->key, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

/* ---- done (the exchange's loop) ------------------------------------------------- */

static void dev_list_done(struct exchange *x, struct auth_op *op)
{
    if (op->rc != KS_OK) {
        dev_store_error(x, op);
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < op->n_list; i++)
        json_array_append_new(arr, ks_key_json(&op->list[i]));
    exchange_respond_json(x, 200, json_pack("{s:o, s:i}", "keys", arr, "count", op->n_list));
}

static void dev_get_done(struct exchange *x, struct auth_op *op)
{
    dev_key_answer(x, op, 200);
}

static void dev_created_done(struct exchange *x, struct auth_op *op)
{
    dev_audit(x, op, "key.create");
    dev_event(x, op, "key.created");
    dev_key_answer(x, op, 201);
}

static void dev_rotated_done(struct exchange *x, struct auth_op *op)
{
    dev_audit(x, op, "key.rotate");
    dev_event(x, op, "key.rotated");
    dev_key_answer(x, op, 200);
}

static void dev_revoked_done(struct exchange *x, struct auth_op *op)
{
    dev_audit(x, op, "key.revoke");
    dev_event(x, op, "key.revoked");
    dev_key_answer(x, op, 200);
}

/* ---- endpoints ------------------------------------------------------------------- */

/* An operation on behalf of the caller of <x>: its sub as the owner. */
static struct auth_op *dev_op_new(struct exchange *x, auth_run_fn run, auth_done_fn done)
{
    struct auth_op *op = auth_op_new(x, run, done);
    op->strs[0] = sl_strdup(dev_call_of(x)->claims.sub);
    return op;
}

/* An operation on key {id}; an id no key can have is a 404 at once. */
static void dev_key_op(struct exchange *x, const struct sl_admin_call *call, auth_run_fn run,
                       auth_done_fn done, int64_t grace_ms)
{
    if (!call->id || strlen(call->id) >= APIKEY_ID_MAX) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    struct auth_op *op = dev_op_new(x, run, done);
    str_copy(op->id, sizeof(op->id), call->id);
    op->grace_ms = grace_ms;
    auth_op_submit(op);
}

static void dev_keys_list(struct exchange *x, const struct sl_admin_call *call)
{
    auth_op_submit(dev_op_new(x, dev_list_run, dev_list_done));
}

static void dev_keys_get(struct exchange *x, const struct sl_admin_call *call)
{
    dev_key_op(x, call, dev_get_run, dev_get_done, 0);
}

static void dev_keys_revoke(struct exchange *x, const struct sl_admin_call *call)
{
    dev_key_op(x, call, dev_revoke_run, dev_revoked_done, 0);
}

static void dev_keys_rotate(struct exchange *x, const struct sl_admin_call *call)
{
    int64_t grace_ms;
    const char *why;
    if (dev_parse_rotate(call->body, call->body_len, &grace_ms, &why) < 0) {
        exchange_respond_error(x, 400, why);
        return;
    }
    dev_key_op(x, call, dev_rotate_run, dev_rotated_done, grace_ms);
}

static void dev_keys_create(struct exchange *x, const struct sl_admin_call *call)
{
    struct dev_create req;
    const char *why;
    if (dev_parse_create(call->body, call->body_len, &req, &why) < 0) {
        exchange_respond_error(x, 400, why);
        return;
    }
    const struct dev_call *dc = dev_call_of(x);
    char msg[256];
    int status =
        dev_apply_rules(x->cfg, dev_caller_tier(x->cfg, dc->claims.tier), &req, msg, sizeof(msg));
    if (status) {
        exchange_respond_error(x, status, msg);
        return;
    }
    struct auth_op *op = dev_op_new(x, dev_create_run, dev_created_done);
    op->strs[1] = sl_strdup(req.name);
    op->strs[2] = sl_strdup(req.tier);
    op->req.owner = op->strs[0];
    op->req.name = op->strs[1];
    op->req.tier = op->strs[2];
    op->req.quota_daily = req.quota_daily;
    op->req.quota_monthly = req.quota_monthly;
    op->limit = dev_conf(x->cfg)->max_keys;
    auth_op_submit(op);
}

/* GET /developer/usage: GET /usage's parameters but identity; checked now
 * (a 400 before the store is asked), read again once the caller's keys are
 * known. */
static int dev_usage_parse(struct exchange *x, struct usage_report *r, char **why)
{
    usage_report_init(r, false);
    if (usage_report_parse_query(r, x->query ? x->query : "", x->query ? x->query_len : 0, why) <
            0 ||
        usage_report_resolve(r, clock_wall_us() / 1000000, why) < 0)
        return -1;
    if (r->identity) {
        *why = sl_strdup("identity is not a parameter here: the report covers your keys, or the "
                         "one named by key");
        return -1;
    }
    return 0;
}

static void dev_usage_done(struct exchange *x, struct auth_op *op)
{
    if (op->rc != KS_OK) {
        dev_store_error(x, op);
        return;
    }
    struct usage_report r;
    char *why = NULL;
    if (dev_usage_parse(x, &r, &why) < 0) { /* it passed a moment ago */
        exchange_respond_error(x, 400, why);
        free(why);
        usage_report_release(&r);
        return;
    }
    bool named_found = false;
    r.key_set = true; /* none of them yet: rows of no key at all */
    for (int i = 0; i < op->n_list; i++) {
        if (r.key_id && strcmp(r.key_id, op->list[i].id) != 0)
            continue;
        named_found = true;
        usage_report_add_key(&r, op->list[i].id);
    }
    if (r.key_id && !named_found) {
        exchange_respond_error(x, 404, "no such key");
        usage_report_release(&r);
        return;
    }
    usage_respond(x, &r);
}

static void dev_usage(struct exchange *x, const struct sl_admin_call *call)
{
    struct usage_report r;
    char *why = NULL;
    int rc = dev_usage_parse(x, &r, &why);
    usage_report_release(&r);
    if (rc < 0) {
        exchange_respond_error(x, 400, why);
        free(why);
        return;
    }
    auth_op_submit(dev_op_new(x, dev_list_run, dev_usage_done));
}

/* ---- the page -------------------------------------------------------------------- */

/* The page runs nothing it did not load from here: no inline script, no
 * other origin, no framing. */
static void dev_static(struct exchange *x, const char *type, const char *text)
{
    exchange_add_header(x, "Content-Security-Policy",
                        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'");
    exchange_add_header(x, "X-Content-Type-Options", "nosniff");
    exchange_add_header(x, "Referrer-Policy", "no-referrer");
    exchange_respond(x, 200, type, text, strlen(text));
}

static void dev_page(struct exchange *x, const struct sl_admin_call *call)
{
    dev_static(x, "text/html; charset=utf-8", dev_page_html);
}

static void dev_script(struct exchange *x, const struct sl_admin_call *call)
{
    dev_static(x, "text/javascript; charset=utf-8", dev_page_js);
}

/* ---- the stage ------------------------------------------------------------------- */

/* Served without a token: static text that holds no data. */
static const struct sl_admin_route dev_page_routes[] = {
    {HTTP_GET, DEV_PREFIX, dev_page, 0},
    {HTTP_GET, DEV_PREFIX "app.js", dev_script, 0},
    {0, NULL, NULL, 0},
};

static const struct sl_admin_route dev_api_routes[] = {
    {HTTP_GET, DEV_PREFIX "keys", dev_keys_list, 0},
    {HTTP_POST, DEV_PREFIX "keys", dev_keys_create, DEV_MAX_BODY},
    {HTTP_GET, DEV_PREFIX "keys/{id}", dev_keys_get, 0},
    {HTTP_DELETE, DEV_PREFIX "keys/{id}", dev_keys_revoke, 0},
    {HTTP_POST, DEV_PREFIX "keys/{id}/rotate", dev_keys_rotate, DEV_MAX_BODY},
    {HTTP_GET, DEV_PREFIX "usage", dev_usage, 0},
    {0, NULL, NULL, 0},
};

static bool dev_is_page_route(const struct sl_admin_route *r)
{
    return r >= dev_page_routes && r < dev_page_routes + 2;
}

/* The caller of <x> as a developer: a JWT of the identity provider, which
 * the auth stage verified. An API key, or a token /auth/token issued for
 * one, is a key acting, not a developer. 0, or -1 after a 401. */
static int dev_authenticate(struct exchange *x, struct dev_call *call)
{
    static const char need[] = "the developer endpoints need a JWT of your identity provider "
                               "(Authorization: Bearer <token>); an API key, or a token issued "
                               "for one, is not enough";
    if (x->identity.kind != ID_JWT || x->identity.key_id) {
        dev_unauthorized(x, need);
        return -1;
    }
    /* The auth stage kept "sub:<sub>" (cut at 95 bytes); the claims again,
     * whole. */
    const struct sl_header *h = exchange_req_header(x, "authorization");
    const struct jwtv *v = auth_conf(x->cfg)->jwt.verifier;
    const char *tok = h ? h->value : "";
    size_t len = h ? h->value_len : 0;
    while (len && (*tok == ' ' || *tok == '\t'))
        tok++, len--;
    if (len > 7 && str_ieq(tok, 7, "bearer "))
        tok += 7, len -= 7;
    while (len && *tok == ' ')
        tok++, len--;
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    if (!v || jwtv_verify(v, tok, len, clock_wall_us() / 1000000, &call->claims) != JWTV_OK ||
        call->claims.key_id[0]) {
        dev_unauthorized(x, need);
        return -1;
    }
    snprintf(call->actor, sizeof(call->actor), "developer:%s", call->claims.sub);
    return 0;
}

static void dev_body_read(struct exchange *x, const char *body, size_t len)
{
    struct dev_call *dc = dev_call_of(x);
    struct sl_admin_call call = {dc->id[0] ? dc->id : NULL, body, len};
    dc->route->handler(x, &call);
}

static enum stage_result dev_stage(struct exchange *x)
{
    const struct dev_conf *conf = dev_conf(x->cfg);
    if (!conf->route || x->route != conf->route)
        return STAGE_NEXT;
    struct dev_call *dc = arena_calloc(x->arena, sizeof(*dc));
    x->ctx[MOD_developer] = dc;
    const struct sl_admin_route *tables[] = {dev_page_routes, dev_api_routes};
    char allow[64];
    dc->route = admin_route_find(tables, 2, x->method, x->path, dc->id, sizeof(dc->id), allow);
    if (!dc->route && allow[0]) {
        exchange_add_header(x, "Allow", allow);
        char msg[96];
        snprintf(msg, sizeof(msg), "use %s", allow);
        exchange_respond_error(x, 405, msg);
        return STAGE_DONE;
    }
    if (!dc->route) {
        exchange_respond_error(x, 404, "no such developer endpoint");
        return STAGE_DONE;
    }
    if (!dev_is_page_route(dc->route) && dev_authenticate(x, dc) < 0)
        return STAGE_DONE;
    if (!dc->route->max_body && (x->content_length > 0 || x->chunked)) {
        exchange_respond_error(x, 413, "this endpoint takes no request body");
        return STAGE_DONE;
    }
    if (dc->route->max_body)
        return exchange_read_body(x, dc->route->max_body, dev_body_read);
    struct sl_admin_call call = {dc->id[0] ? dc->id : NULL, "", 0};
    dc->route->handler(x, &call);
    return STAGE_WAIT;
}

static const struct sl_stage dev_stages[] = {
    {SL_PHASE_CONTENT, false, dev_stage},
};

const struct sl_module developer_module = {
    .name = "developer",
    .conf = &dev_cfg_module,
    .stages = dev_stages,
    .n_stages = 1,
};
