/* The key endpoints of the admin API (SPEC 8): the same operations as
 * `sluice keys`, run on the store's writer thread. */
#include <jansson.h>
#include <llhttp.h>

#include "admin/events.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "auth/keypatch.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/str.h"

static int64_t admin_now_ms(void)
{
    return clock_wall_us() / 1000;
}

/* A store failure: 503 while the store cannot be reached (Redis away: try
 * again later), else 500. */
static void admin_store_error(struct exchange *x, const struct auth_op *op)
{
    if (op->rc == KS_UNAVAILABLE)
        exchange_respond_error(x, 503, op->err ? op->err : "the key store cannot be reached");
    else
        exchange_respond_error(x, 500, op->err ? op->err : "the key store failed");
}

/* The answer for a single-key operation, with the secret when one was made. */
static void admin_key_answer(struct exchange *x, struct auth_op *op, int status)
{
    if (op->rc == KS_NOT_FOUND) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    if (op->rc != KS_OK) {
        admin_store_error(x, op);
        return;
    }
    json_t *key = ks_key_json(&op->key);
    if (!op->secret[0]) {
        exchange_respond_json(x, status, key);
        return;
    }
    json_t *doc = json_pack("{s:o, s:s}", "key", key, "secret", op->secret);
    if (op->signing[0])
        json_object_set_new(doc, "signing_secret", json_string(op->signing));
    exchange_respond_json(x, status, doc);
}

void auth_key_event(struct exchange *x, const struct auth_op *op, const char *type,
                    const char *actor)
{
    if (op->rc != KS_OK)
        return;
    json_t *ev = json_pack("{s:s, s:o}", "type", type, "key", ks_key_json(&op->key));
    if (actor)
        json_object_set_new(ev, "actor", json_string(actor));
    char *text = json_dumps(ev, JSON_COMPACT);
    events_publish(x->worker->gw, type, text, strlen(text));
    free(text);
    json_decref(ev);
}

void auth_key_audit(struct exchange *x, const struct auth_op *op, const char *action,
                    const char *actor, int status)
{
    struct buf extra = {0};
    if (op->rc == KS_OK && strcmp(action, "key.create") == 0) {
        buf_append_str(&extra, ",\"tier\":\"");
        json_str_append(&extra, op->key.tier);
        buf_append_str(&extra, "\"");
    } else if (strcmp(action, "key.rotate") == 0) {
        buf_appendf(&extra, ",\"grace_ms\":%lld", (long long)op->grace_ms);
    }
    buf_append(&extra, "", 1);
    audit_call(x, actor, action, op->rc == KS_OK ? op->key.id : op->id, status, extra.data);
    buf_release(&extra);
}

static void admin_key_event(struct exchange *x, const struct auth_op *op, const char *type)
{
    auth_key_event(x, op, type, NULL);
}

/* As the admin API answers: a missing key 404, a store away 503, else 500. */
static void admin_key_audit(struct exchange *x, const struct auth_op *op, const char *action)
{
    int status = op->rc == KS_OK            ? 200
                 : op->rc == KS_NOT_FOUND   ? 404
                 : op->rc == KS_UNAVAILABLE ? 503
                                            : 500;
    auth_key_audit(x, op, action, "admin-api", status);
}

static void admin_created_done(struct exchange *x, struct auth_op *op)
{
    admin_key_audit(x, op, "key.create");
    admin_key_event(x, op, "key.created");
    admin_key_answer(x, op, 201);
}

static void admin_key_done(struct exchange *x, struct auth_op *op)
{
    admin_key_answer(x, op, 200);
}

static void admin_updated_done(struct exchange *x, struct auth_op *op)
{
    admin_key_audit(x, op, "key.update");
    admin_key_answer(x, op, 200);
}

static void admin_revoked_done(struct exchange *x, struct auth_op *op)
{
    admin_key_audit(x, op, "key.revoke");
    admin_key_event(x, op, "key.revoked");
    admin_key_answer(x, op, 200);
}

static void admin_rotated_done(struct exchange *x, struct auth_op *op)
{
    admin_key_audit(x, op, "key.rotate");
    admin_key_event(x, op, "key.rotated");
    admin_key_answer(x, op, 200);
}

static void admin_create_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_create(db, &op->req, admin_now_ms(), &op->key, op->secret, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void admin_get_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_get(db, op->id, &op->key, &op->err);
}

static void admin_revoke_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_revoke(db, op->id, admin_now_ms(), &op->key, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void admin_rotate_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_rotate(db, op->id, op->grace_ms, admin_now_ms(), &op->key, op->secret, &op->err);
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void admin_update_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_update(db, op->id, &op->patch.u, &op->key, &op->err);
    /* In force on this gateway when the answer is sent, as a revocation is;
     * the others see the store's version move on their next tick. */
    if (op->rc == KS_OK)
        auth_rebuild(op->ctx, db);
}

static void admin_list_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_list(db, &op->list, &op->n_list, &op->err);
}

static void admin_list_done(struct exchange *x, struct auth_op *op)
{
    if (op->rc != KS_OK) {
        admin_store_error(x, op);
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < op->n_list; i++)
        json_array_append_new(arr, ks_key_json(&op->list[i]));
    exchange_respond_json(x, 200, json_pack("{s:o, s:i}", "keys", arr, "count", op->n_list));
}

/* Field <name> of <doc> as an owned string kept by <op>; "" for absent. */
static const char *admin_take_str(struct auth_op *op, int slot, const json_t *v)
{
    op->strs[slot] = sl_strdup(json_string_value(v));
    return op->strs[slot];
}

/* A JSON list of names, or one string with commas, into "a b c" (<sep>
 * joins them); NULL after setting *<why>. */
static char *admin_join(const json_t *v, const char *sep, const char **why)
{
    struct buf b = {0};
    if (json_is_string(v)) {
        buf_append_str(&b, json_string_value(v));
    } else if (json_is_array(v)) {
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(it)) {
                *why = "lists must hold strings";
                buf_release(&b);
                return NULL;
            }
            buf_appendf(&b, "%s%s", i ? sep : "", json_string_value(it));
        }
    } else {
        *why = "scopes and limits are a list of strings";
        return NULL;
    }
    buf_append(&b, "", 1);
    return b.data;
}

/* "signing": true asks for a signing secret (SPEC 7.2), sealed for the
 * key's id, which is drawn here for that. NULL when good. */
static const char *admin_check_signing(struct exchange *x, const json_t *v, struct auth_op *op)
{
    if (!v || json_is_false(v))
        return NULL;
    if (!json_is_true(v))
        return "signing is true or false";
    const struct cfg_secret32 *key = &x->cfg->store.encryption_key;
    if (!key->set)
        return "signing needs store.encryption_key in the gateway's config (the signing secret is "
               "stored encrypted under it)";
    if (apikey_new_id(op->signing_id) < 0 ||
        ks_signing_new(key->bytes, op->signing_id, op->signing, op->sealed) < 0)
        return "the random number generator failed";
    op->req.id = op->signing_id;
    op->req.signing = op->sealed;
    return NULL;
}

/* Checks a create request against the running config: the tier exists,
 * per-key limits parse, scopes are names. NULL when good. */
static const char *admin_check_create(struct exchange *x, json_t *doc, struct auth_op *op)
{
    static const char *const known[] = {"tier",   "name",    "owner",         "scopes",
                                        "limits", "expires", "quota_monthly", "quota_daily",
                                        "env",    "signing", "allow_ips"};
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || strcmp(k, known[i]) == 0;
        if (!ok)
            return "unknown field (use tier, name, owner, scopes, limits, expires, quota_monthly, "
                   "quota_daily, env, signing, allow_ips)";
    }
    const char *tier = json_string_value(json_object_get(doc, "tier"));
    if (!tier)
        return "tier is required";
    const struct cfg_tier *t = cfg_find_tier(x->cfg, tier);
    if (!t || strcmp(tier, "anonymous") == 0)
        return "unknown tier (keys take a tier of the config's tiers, not anonymous)";
    op->req.tier = admin_take_str(op, 0, json_object_get(doc, "tier"));
    const char *names[] = {"name", "owner", "env"};
    for (int i = 0; i < 3; i++) {
        json_t *s = json_object_get(doc, names[i]);
        if (!s)
            continue;
        if (!json_is_string(s) || json_string_length(s) >= KS_NAME_MAX)
            return "name, owner and env are strings of at most 128 bytes";
        const char *val = admin_take_str(op, 1 + i, s);
        if (i == 0)
            op->req.name = val;
        else if (i == 1)
            op->req.owner = val;
        else if (!apikey_env_ok(val))
            return "env is 1 to 16 lower-case letters or digits";
        else
            op->req.env = val;
    }
    const char *why = NULL;
    json_t *sc = json_object_get(doc, "scopes");
    if (sc) {
        op->strs[4] = admin_join(sc, " ", &why);
        if (!op->strs[4])
            return why;
        for (char *p = op->strs[4]; *p; p++)
            if (*p == ',')
                *p = ' ';
        if (strlen(op->strs[4]) >= KS_SCOPES_MAX)
            return "too many scopes";
        op->req.scopes = op->strs[4];
    }
    json_t *li = json_object_get(doc, "limits");
    if (li) {
        op->strs[5] = admin_join(li, ", ", &why);
        if (!op->strs[5])
            return why;
        if (strlen(op->strs[5]) >= KS_LIMITS_MAX)
            return "too many limits";
        struct limit parsed[SL_MAX_LIMITS_PER_LIST];
        if (lim_parse_list(op->strs[5], parsed, SL_MAX_LIMITS_PER_LIST, &why) < 0)
            return "a limit does not parse, or there are more than 16 (write them as in the "
                   "config: \"100/h\")";
        op->req.limits = op->strs[5];
    }
    json_t *ips = json_object_get(doc, "allow_ips");
    if (ips) {
        char ips_why[160];
        if (ks_allow_ips_from_json(ips, op->allow_ips, ips_why, sizeof ips_why) < 0)
            return "allow_ips is a list of at most 16 networks such as [\"10.0.0.0/8\", "
                   "\"2001:db8::/32\"]";
        op->req.allow_ips = op->allow_ips;
    }
    json_t *ex = json_object_get(doc, "expires");
    op->req.quota_monthly = op->req.quota_daily = -1;
    if (ex) {
        int64_t ms;
        if (!json_is_string(ex) || cfg_parse_duration_ms(json_string_value(ex), &ms) < 0 || ms <= 0)
            return "expires is a duration from now, like \"30d\"";
        op->req.expires_ms = admin_now_ms() + ms;
    }
    /* A key's own quotas replace its tier's (SPEC 6.1); null: the tier's. */
    const char *quotas[] = {"quota_monthly", "quota_daily"};
    int64_t *qdst[] = {&op->req.quota_monthly, &op->req.quota_daily};
    for (int i = 0; i < 2; i++) {
        json_t *q = json_object_get(doc, quotas[i]);
        if (!q || json_is_null(q))
            continue;
        if (!json_is_integer(q) || json_integer_value(q) < 1 ||
            !ks_quota_ok((int64_t)json_integer_value(q)))
            return "quota_monthly and quota_daily are whole numbers of requests from 1 to 2^53, "
                   "or null for the tier's";
        *qdst[i] = (int64_t)json_integer_value(q);
    }
    return admin_check_signing(x, json_object_get(doc, "signing"), op);
}

static void admin_keys_create(struct exchange *x, const struct sl_admin_call *call)
{
    json_error_t jerr;
    json_t *doc = json_loadb(call->body, call->body_len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        exchange_respond_error(x, 400,
                               "the body must be a JSON object such as {\"tier\": \"pro\"}");
        return;
    }
    struct auth_op *op = auth_op_new(x, admin_create_run, admin_created_done);
    const char *why = admin_check_create(x, doc, op);
    json_decref(doc);
    if (why) {
        exchange_respond_error(x, 400, why);
        auth_op_cancel(op);
        return;
    }
    auth_op_submit(op);
}

static void admin_keys_rotate(struct exchange *x, const struct sl_admin_call *call)
{
    if (strlen(call->id) >= APIKEY_ID_MAX) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    struct auth_op *op = auth_op_new(x, admin_rotate_run, admin_rotated_done);
    str_copy(op->id, sizeof(op->id), call->id);
    op->grace_ms = 0;
    if (call->body_len) {
        json_error_t jerr;
        json_t *doc = json_loadb(call->body, call->body_len, 0, &jerr);
        json_t *g = json_object_get(doc, "grace");
        int64_t ms = 0;
        bool ok =
            json_is_object(doc) &&
            (!g || (json_is_string(g) && cfg_parse_duration_ms(json_string_value(g), &ms) == 0));
        json_decref(doc);
        if (!ok) {
            exchange_respond_error(x, 400, "the body may be {\"grace\": \"1h\"}");
            auth_op_cancel(op);
            return;
        }
        op->grace_ms = ms;
    }
    auth_op_submit(op);
}

static void admin_keys_list(struct exchange *x, const struct sl_admin_call *call)
{
    auth_op_submit(auth_op_new(x, admin_list_run, admin_list_done));
}

/* GET or DELETE /keys/{id}. */
static void admin_keys_one(struct exchange *x, auth_run_fn run, auth_done_fn done, const char *id)
{
    if (strlen(id) >= APIKEY_ID_MAX) {
        exchange_respond_error(x, 404, "no such key");
        return;
    }
    struct auth_op *op = auth_op_new(x, run, done);
    str_copy(op->id, sizeof(op->id), id);
    auth_op_submit(op);
}

static void admin_keys_get(struct exchange *x, const struct sl_admin_call *call)
{
    admin_keys_one(x, admin_get_run, admin_key_done, call->id);
}

static void admin_keys_revoke(struct exchange *x, const struct sl_admin_call *call)
{
    admin_keys_one(x, admin_revoke_run, admin_revoked_done, call->id);
}

/* PATCH /keys/{id}: changes the fields the body names (keypatch.h). An
 * unknown or revoked key is a 404, after the body was found good. */
static void admin_keys_update(struct exchange *x, const struct sl_admin_call *call)
{
    json_error_t jerr;
    json_t *doc = call->body_len ? json_loadb(call->body, call->body_len, 0, &jerr) : NULL;
    struct auth_op *op = auth_op_new(x, admin_update_run, admin_updated_done);
    const char *why = keypatch_parse(x->cfg, doc, &op->patch);
    json_decref(doc);
    if (why) {
        exchange_respond_error(x, 400, why); /* <why> may be op's: answer first */
        auth_op_cancel(op);
        return;
    }
    if (strlen(call->id) >= APIKEY_ID_MAX) {
        exchange_respond_error(x, 404, "no such key");
        auth_op_cancel(op);
        return;
    }
    str_copy(op->id, sizeof(op->id), call->id);
    auth_op_submit(op);
}

/* Key requests are small JSON documents. */
#define ADMIN_KEYS_MAX_BODY (64u << 10)

const struct sl_admin_route auth_admin_routes[] = {
    {HTTP_GET, "/keys", admin_keys_list, 0},
    {HTTP_POST, "/keys", admin_keys_create, ADMIN_KEYS_MAX_BODY},
    {HTTP_GET, "/keys/{id}", admin_keys_get, 0},
    {HTTP_PATCH, "/keys/{id}", admin_keys_update, ADMIN_KEYS_MAX_BODY},
    {HTTP_DELETE, "/keys/{id}", admin_keys_revoke, 0},
    {HTTP_POST, "/keys/{id}/rotate", admin_keys_rotate, ADMIN_KEYS_MAX_BODY},
    {0, NULL, NULL, 0},
};
