/* Authentication, authorization and the token endpoints (SPEC 5). */
#include "auth/auth.h"
#include "auth/conf.h"

#include <jansson.h>
#include <llhttp.h>

#include "auth/jwt_verify.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/str.h"

/* The longest credential read from a header: a JWT with many claims fits;
 * anything longer is refused, not hashed or parsed. */
#define AUTH_MAX_CREDENTIAL 8192

static void auth_count(struct exchange *x, enum auth_result r)
{
    metrics_counter_add(&auth_worker_of(x->worker)->results[r], 1);
}

static void auth_fail(struct exchange *x, int status, const char *challenge, const char *message)
{
    exchange_add_header(x, "WWW-Authenticate", challenge);
    exchange_respond_error(x, status, message);
}

static void auth_invalid(struct exchange *x, const char *message)
{
    auth_count(x, AUTH_RESULT_INVALID);
    auth_fail(x, 401, "Bearer realm=\"sluice\", error=\"invalid_token\"", message);
}

/* Trimmed value of <h>. */
static const char *auth_trim(const struct sl_header *h, size_t *len)
{
    const char *v = h->value;
    size_t n = h->value_len;
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *len = n;
    return v;
}

static const char *auth_copy(struct exchange *x, const char *s)
{
    return arena_strndup(x->arena, s, strlen(s));
}

/* The identity of key <k>: its tier (exempt when the tier is), scopes and
 * per-key limits, copied into the exchange (the keyring may be replaced
 * while the exchange runs). */
void auth_set_key_identity(struct exchange *x, const struct keyring_key *k, enum identity_kind kind)
{
    struct identity *id = &x->identity;
    auth_count(x, kind == ID_JWT ? AUTH_RESULT_JWT : AUTH_RESULT_API_KEY);
    id->kind = kind;
    memcpy(id->id, "key:", 4);
    str_copy(id->id + 4, sizeof(id->id) - 4, k->id);
    id->tier = auth_copy(x, k->tier);
    const struct cfg_tier *t = cfg_find_tier(x->cfg, k->tier);
    id->exempt = t && t->exempt;
    id->key_id = auth_copy(x, k->id);
    id->label = auth_copy(x, k->prefix);
    id->owner = k->owner[0] ? auth_copy(x, k->owner) : NULL;
    id->scopes = auth_copy(x, k->scopes);
    id->quota_daily = k->quota_daily;
    id->quota_monthly = k->quota_monthly;
    if (k->n_limits) {
        struct limit *l = arena_alloc(x->arena, sizeof(*l) * (size_t)k->n_limits);
        memcpy(l, k->limits, sizeof(*l) * (size_t)k->n_limits);
        id->limits = l;
        id->n_limits = k->n_limits;
    }
    if (k->n_allow_ips) {
        struct cfg_cidr *v = arena_alloc(x->arena, sizeof(*v) * (size_t)k->n_allow_ips);
        memcpy(v, k->allow_ips, sizeof(*v) * (size_t)k->n_allow_ips);
        id->allow_ips = v;
        id->n_allow_ips = k->n_allow_ips;
    }
}

struct keyring *auth_keyring(struct worker *w)
{
    struct auth_worker *aw = auth_worker_of(w);
    keyring_sync(&auth_ctx_of(w->gw)->keys, &aw->keyring, &aw->keyring_gen);
    return aw->keyring;
}

#define AUTH_UNKNOWN_KEY "unknown, expired or revoked API key"

/* A key the keyring does not know may have been created a moment ago by
 * another process (the CLI): before a 401, the store is asked whether it
 * changed. One question per worker is in flight at a time; requests that
 * miss meanwhile wait for its answer with the first. */
struct auth_waiter {
    LIST_ENTRY(auth_waiter) link;
    struct exchange *x;
    uint8_t hash[APIKEY_HASH_LEN];
    bool linked;
};

static void auth_waiter_unlink(struct worker *w, struct auth_waiter *wt)
{
    LIST_REMOVE(wt, link);
    wt->linked = false;
}

static void auth_waiter_gone(struct exchange *x, void *arg)
{
    struct auth_waiter *wt = arg;
    if (wt->linked)
        auth_waiter_unlink(x->worker, wt);
}

static void auth_recheck_run(struct ks_db *db, void *arg)
{
    auth_refresh(auth_ctx_of(((struct worker *)arg)->gw), db);
}

static void auth_recheck_done(void *arg)
{
    struct worker *w = arg;
    struct auth_worker *aw = auth_worker_of(w);
    aw->key_recheck = false;
    int64_t now = clock_wall_us() / 1000;
    struct auth_waiter *wt;
    while ((wt = LIST_FIRST(&aw->key_waiters))) {
        auth_waiter_unlink(w, wt);
        struct exchange *x = wt->x;
        struct keyring_key *k = keyring_find_secret(auth_keyring(w), wt->hash, now);
        if (!k) {
            auth_invalid(x, AUTH_UNKNOWN_KEY);
            continue;
        }
        keyring_touch(k, now);
        auth_set_key_identity(x, k, ID_API_KEY);
        exchange_resume(x);
    }
}

static enum stage_result auth_wait_for_store(struct exchange *x, const uint8_t *hash)
{
    struct worker *w = x->worker;
    struct auth_worker *aw = auth_worker_of(w);
    struct auth_waiter *wt = arena_calloc(x->arena, sizeof(*wt));
    wt->x = x;
    memcpy(wt->hash, hash, APIKEY_HASH_LEN);
    LIST_INSERT_HEAD(&aw->key_waiters, wt, link);
    wt->linked = true;
    exchange_on_end(x, auth_waiter_gone, wt);
    if (!aw->key_recheck) {
        aw->key_recheck = true;
        dbw_submit(auth_ctx_of(w->gw)->writer, &w->loop, auth_recheck_run, auth_recheck_done, w);
    }
    return STAGE_WAIT;
}

static enum stage_result auth_api_key(struct exchange *x, const char *s, size_t len)
{
    if (!apikey_shape_ok(s, len)) {
        auth_invalid(x, AUTH_UNKNOWN_KEY);
        return STAGE_DONE;
    }
    int64_t now = clock_wall_us() / 1000;
    uint8_t hash[APIKEY_HASH_LEN];
    apikey_hash_md(auth_ctx_of(x->worker->gw)->sha256, s, len, hash);
    struct keyring_key *k = keyring_find_secret(auth_keyring(x->worker), hash, now);
    if (!k)
        return auth_wait_for_store(x, hash);
    keyring_touch(k, now);
    auth_set_key_identity(x, k, ID_API_KEY);
    return STAGE_NEXT;
}

static enum stage_result auth_jwt(struct exchange *x, const char *s, size_t len)
{
    const struct auth_jwt_conf *cj = &auth_conf(x->cfg)->jwt;
    struct jwtv_claims cl;
    int64_t now_ms = clock_wall_us() / 1000;
    enum jwtv_result r = jwtv_verify(cj->verifier, s, len, now_ms / 1000, &cl);
    if (r != JWTV_OK) {
        char msg[96];
        snprintf(msg, sizeof(msg), "invalid token: %s", jwtv_result_text(r));
        auth_invalid(x, msg);
        return STAGE_DONE;
    }
    if (cl.key_id[0]) {
        /* A token we issued for an API key: the key's current state wins
         * (revoking the key ends its tokens at once; its limits apply). */
        struct keyring_key *k = keyring_find_id(auth_keyring(x->worker), cl.key_id, now_ms);
        if (!k) {
            auth_invalid(x, "the API key behind this token is revoked or expired");
            return STAGE_DONE;
        }
        keyring_touch(k, now_ms);
        auth_set_key_identity(x, k, ID_JWT);
        return STAGE_NEXT;
    }
    struct identity *id = &x->identity;
    auth_count(x, AUTH_RESULT_JWT);
    id->kind = ID_JWT;
    char tmp[sizeof(id->id) + JWTV_MAX_SUB];
    snprintf(tmp, sizeof(tmp), "sub:%s", cl.sub);
    str_copy(id->id, sizeof(id->id), tmp);
    const struct cfg_tier *t = cl.tier[0] ? cfg_find_tier(x->cfg, cl.tier) : NULL;
    if (!t && cj->default_tier)
        t = cfg_find_tier(x->cfg, cj->default_tier);
    /* No known tier: identified, but only the routes' "*" limits apply. */
    id->tier = t ? t->name : "";
    id->exempt = cl.exempt || (t && t->exempt);
    id->scopes = auth_copy(x, cl.scopes);
    /* The sub is the token issuer's text: one log field, so no spaces or
     * quotes. */
    char *label = arena_strndup(x->arena, cl.sub, strlen(cl.sub));
    for (char *p = label; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._:@-|", *p)))
            *p = '_';
    id->label = label;
    return STAGE_NEXT;
}

enum stage_result auth_stage_authn(struct exchange *x)
{
    const struct auth_conf *ci = auth_conf(x->cfg);
    for (int i = 0; i < ci->n_api_key_headers; i++) {
        const struct sl_header *h = exchange_req_header(x, ci->api_key_headers[i]);
        if (!h)
            continue;
        size_t len;
        const char *v = auth_trim(h, &len);
        return auth_api_key(x, v, len > AUTH_MAX_CREDENTIAL ? 0 : len);
    }
    const struct sl_header *h = exchange_req_header(x, "authorization");
    if (!h)
        return STAGE_NEXT;
    size_t len;
    const char *v = auth_trim(h, &len);
    bool bare = str_ieq(v, len, "bearer"); /* "Bearer " with the space trimmed */
    if (!bare && (len < 7 || !str_ieq(v, 7, "bearer "))) {
        /* Basic or another scheme is the upstream's business. */
        return STAGE_NEXT;
    }
    v += bare ? 6 : 7, len -= bare ? 6 : 7;
    while (len && *v == ' ')
        v++, len--;
    if (len == 0 || len > AUTH_MAX_CREDENTIAL) {
        auth_invalid(x, "empty or oversized bearer credential");
        return STAGE_DONE;
    }
    if (len > 3 && memcmp(v, "sk_", 3) == 0)
        return auth_api_key(x, v, len);
    /* Without identity.jwt, other bearer tokens belong to the upstream's own
     * authentication, which the gateway leaves alone. */
    if (!auth_conf(x->cfg)->jwt.verifier)
        return STAGE_NEXT;
    return auth_jwt(x, v, len);
}

/* Does the space-separated list <have> contain <want>? */
static bool auth_has_scope(const char *have, const char *want)
{
    size_t wl = strlen(want);
    for (const char *p = have; p && *p;) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == wl && memcmp(p, want, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

enum stage_result auth_stage_authz(struct exchange *x)
{
    const struct auth_route_conf *r = auth_route_conf(x->route);
    if (r->auth != AUTH_REQUIRED)
        return STAGE_NEXT;
    if (x->identity.kind == ID_IP) {
        auth_count(x, AUTH_RESULT_MISSING);
        auth_fail(x, 401, "Bearer realm=\"sluice\"",
                  "this route requires an API key (X-API-Key) or a bearer token");
        return STAGE_DONE;
    }
    for (int i = 0; i < r->n_scopes; i++) {
        if (auth_has_scope(x->identity.scopes, r->scopes[i]))
            continue;
        auth_count(x, AUTH_RESULT_FORBIDDEN);
        struct buf chal = {0}, msg = {0};
        buf_appendf(&chal, "Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"");
        for (int j = 0; j < r->n_scopes; j++)
            buf_appendf(&chal, "%s%s", j ? " " : "", r->scopes[j]);
        buf_appendf(&chal, "\"%c", '\0');
        buf_appendf(&msg, "missing scope '%s'%c", r->scopes[i], '\0');
        auth_fail(x, 403, chal.data, msg.data);
        buf_release(&chal);
        buf_release(&msg);
        return STAGE_DONE;
    }
    return STAGE_NEXT;
}

/* ---- token endpoints ---------------------------------------------------------- */

static void auth_token_response(struct exchange *x, const char *key_id, const char *tier,
                                const char *scopes, const char *refresh)
{
    const struct auth_jwt_conf *cj = &auth_conf(x->cfg)->jwt;
    int64_t now = clock_wall_us() / 1000000;
    int64_t ttl = cj->access_ttl_ms / 1000;
    char *access = jwtv_issue(cj->secret, cj->issuer, cj->audience, key_id, tier, scopes, now, ttl);
    json_t *doc = json_pack("{s:s, s:s, s:I, s:s, s:I}", "access_token", access, "token_type",
                            "Bearer", "expires_in", (json_int_t)ttl, "refresh_token", refresh,
                            "refresh_expires_in", (json_int_t)(cj->refresh_ttl_ms / 1000));
    char *body = json_dumps(doc, JSON_COMPACT);
    exchange_add_header(x, "Cache-Control", "no-store");
    exchange_respond(x, 200, "application/json", body, strlen(body));
    free(body);
    json_decref(doc);
    free(access);
}

static void auth_issue_run(struct ks_db *db, struct auth_op *op)
{
    op->rc = ks_refresh_issue(db, op->id, NULL, op->ttl_ms, clock_wall_us() / 1000, op->refresh,
                              &op->err);
}

static void auth_issue_done(struct exchange *x, struct auth_op *op)
{
    if (op->rc != KS_OK) {
        exchange_respond_error(x, 500, "the token store failed");
        return;
    }
    auth_token_response(x, x->identity.key_id, x->identity.tier,
                        x->identity.scopes ? x->identity.scopes : "", op->refresh);
}

static void auth_spend_run(struct ks_db *db, struct auth_op *op)
{
    op->spend = ks_refresh_spend(db, op->token, op->ttl_ms, clock_wall_us() / 1000, &op->key,
                                 op->refresh, &op->err);
}

static void auth_spend_done(struct exchange *x, struct auth_op *op)
{
    if (op->spend == KS_SPENT_REUSED) {
        auth_invalid(x, "refresh token already used: every token of its family is now revoked");
        return;
    }
    if (op->spend != KS_SPENT_OK) {
        auth_invalid(x, "unknown, expired or revoked refresh token");
        return;
    }
    auth_token_response(x, op->key.id, op->key.tier, op->key.scopes, op->refresh);
}

/* Refresh request bodies are one small JSON object. */
#define AUTH_MAX_BODY 4096

static void auth_refresh_parse(struct exchange *x, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    const char *tok = json_string_value(json_object_get(doc, "refresh_token"));
    if (!tok || strlen(tok) >= KS_REFRESH_MAX) {
        json_decref(doc);
        exchange_respond_error(x, 400, "the body must be {\"refresh_token\": \"rt_...\"}");
        return;
    }
    struct auth_op *op = auth_op_new(x, auth_spend_run, auth_spend_done);
    str_copy(op->token, sizeof(op->token), tok);
    op->ttl_ms = auth_conf(x->cfg)->jwt.refresh_ttl_ms;
    json_decref(doc);
    auth_op_submit(op);
}

enum stage_result auth_stage_tokens(struct exchange *x)
{
    if (!auth_route_conf(x->route)->token_endpoint)
        return STAGE_NEXT;
    if (x->method != HTTP_POST) {
        exchange_add_header(x, "Allow", "POST");
        exchange_respond_error(x, 405, "use POST");
        return STAGE_DONE;
    }
    if (strcmp(x->path, "/auth/token") == 0) {
        if (x->identity.kind == ID_IP || !x->identity.key_id) {
            auth_fail(
                x, 401, "Bearer realm=\"sluice\"",
                "POST /auth/token needs an API key (X-API-Key or Authorization: Bearer sk_...)");
            return STAGE_DONE;
        }
        struct auth_op *op = auth_op_new(x, auth_issue_run, auth_issue_done);
        str_copy(op->id, sizeof(op->id), x->identity.key_id);
        op->ttl_ms = auth_conf(x->cfg)->jwt.refresh_ttl_ms;
        auth_op_submit(op);
        return STAGE_WAIT;
    }
    return exchange_read_body(x, AUTH_MAX_BODY, auth_refresh_parse);
}
