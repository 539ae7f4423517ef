/* The key store's common part (see keystore.h): the checks of a new key,
 * the JSON of a key, errors, and the ks_* entry points, which send each
 * call to the backend the store was opened on through its struct ks_ops
 * (keystore_backend.h): SQLite (keystore_sqlite.c) or Redis
 * (keystore_redis.c). */

#include "auth/keystore.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/keystore_backend.h"
#include "util/mem.h"
#include "util/seal.h"
#include "util/str.h"

/* ---- errors ------------------------------------------------------------- */

void ks_set_err(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    free(*err);
    va_list ap;
    va_start(ap, fmt);
    char *s = sl_vstrdupf(fmt, ap);
    va_end(ap);
    for (char *p = s; *p; p++) /* one line, whatever SQLite or Redis said */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    *err = s;
}

/* ---- new keys ----------------------------------------------------------- */

/* Is <s> (NULL: not given) a key's allow_ips as the store keeps them? */
static bool ks_allow_ips_ok(const char *s, char **err)
{
    struct cfg_cidr nets[KS_ALLOW_IPS_N];
    char why[160];
    if (!s || (strlen(s) < KS_ALLOW_IPS_MAX && ks_allow_ips_parse(s, nets, why, sizeof why) >= 0))
        return true;
    ks_set_err(err, "%s", strlen(s) < KS_ALLOW_IPS_MAX ? why : "allow_ips: too long");
    return false;
}

/* Checks a field of a new key against its column's bound. */
static bool ks_fits(const char *s, size_t cap, const char *what, char **err)
{
    if (s && strlen(s) >= cap) {
        ks_set_err(err, "%s longer than %zu bytes", what, cap - 1);
        return false;
    }
    return true;
}

/* A preset id (a signing key's, see ks_new) has the shape apikey_new_id
 * gives: "key_" and 16 hex digits. NULL: one will be drawn. */
static bool ks_id_ok(const char *id, char **err)
{
    if (!id)
        return true;
    bool ok = strlen(id) == 4 + 16 && memcmp(id, "key_", 4) == 0;
    for (size_t i = 4; ok && id[i]; i++)
        ok = str_hex_digit(id[i]) >= 0;
    if (!ok)
        ks_set_err(err, "bad key id");
    return ok;
}

int ks_new_id(const struct ks_new *req, char id[APIKEY_ID_MAX])
{
    if (!req->id)
        return apikey_new_id(id);
    str_copy(id, APIKEY_ID_MAX, req->id);
    return 0;
}

int ks_signing_new(const uint8_t enc_key[32], const char *id, char hex[KS_SIGNING_HEX_MAX],
                   char sealed[KS_SIGNING_MAX])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t raw[32];
    int rc =
        RAND_bytes(raw, sizeof(raw)) == 1 ? seal_text(enc_key, id, raw, sizeof(raw), sealed) : -1;
    for (size_t i = 0; i < sizeof(raw); i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[64] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc < 0) {
        OPENSSL_cleanse(hex, KS_SIGNING_HEX_MAX);
        hex[0] = sealed[0] = '\0';
    }
    return rc;
}

bool ks_check_new(const struct ks_new *req, const char **env, char **err)
{
    *env = req->env ? req->env : "live";
    if (!req->tier || !req->tier[0]) {
        ks_set_err(err, "a key needs a tier");
        return false;
    }
    if (!apikey_env_ok(*env)) {
        ks_set_err(err, "bad environment '%s' (1 to %d of a-z, 0-9)", *env, APIKEY_ENV_MAX);
        return false;
    }
    return ks_fits(req->name, KS_NAME_MAX, "name", err) &&
           ks_fits(req->owner, KS_NAME_MAX, "owner", err) &&
           ks_fits(req->tier, KS_TIER_MAX, "tier", err) &&
           ks_fits(req->scopes, KS_SCOPES_MAX, "scopes", err) &&
           ks_fits(req->limits, KS_LIMITS_MAX, "limits", err) &&
           ks_fits(req->signing, KS_SIGNING_MAX, "signing", err) && ks_id_ok(req->id, err) &&
           ks_allow_ips_ok(req->allow_ips, err);
}

/* ---- updates ------------------------------------------------------------ */

bool ks_quota_ok(int64_t v)
{
    return v == -1 || (v >= 1 && v <= KS_QUOTA_MAX);
}

bool ks_update_empty(const struct ks_update *u)
{
    return !u->name && !u->owner && !u->tier && !u->scopes && !u->limits && !u->set_quota_monthly &&
           !u->set_quota_daily && !u->signing && !u->allow_ips;
}

bool ks_check_update(const struct ks_update *u, char **err)
{
    if (u->tier && !u->tier[0]) {
        ks_set_err(err, "a key needs a tier");
        return false;
    }
    if ((u->set_quota_monthly && !ks_quota_ok(u->quota_monthly)) ||
        (u->set_quota_daily && !ks_quota_ok(u->quota_daily))) {
        ks_set_err(err, "a quota is a number of requests from 1 to 2^53, or none");
        return false;
    }
    return ks_fits(u->name, KS_NAME_MAX, "name", err) &&
           ks_fits(u->owner, KS_NAME_MAX, "owner", err) &&
           ks_fits(u->tier, KS_TIER_MAX, "tier", err) &&
           ks_fits(u->scopes, KS_SCOPES_MAX, "scopes", err) &&
           ks_fits(u->limits, KS_LIMITS_MAX, "limits", err) &&
           ks_fits(u->signing, KS_SIGNING_MAX, "signing", err) &&
           ks_allow_ips_ok(u->allow_ips, err);
}

void ks_apply_update(struct ks_key *k, const struct ks_update *u)
{
    if (u->name)
        str_copy(k->name, sizeof(k->name), u->name);
    if (u->owner)
        str_copy(k->owner, sizeof(k->owner), u->owner);
    if (u->tier)
        str_copy(k->tier, sizeof(k->tier), u->tier);
    if (u->scopes)
        str_copy(k->scopes, sizeof(k->scopes), u->scopes);
    if (u->limits)
        str_copy(k->limits, sizeof(k->limits), u->limits);
    if (u->set_quota_monthly)
        k->quota_monthly = u->quota_monthly;
    if (u->set_quota_daily)
        k->quota_daily = u->quota_daily;
    if (u->signing)
        str_copy(k->signing, sizeof(k->signing), u->signing);
    if (u->allow_ips)
        str_copy(k->allow_ips, sizeof(k->allow_ips), u->allow_ips);
}

/* ---- JSON --------------------------------------------------------------- */

/* <ms> since the epoch as "2024-05-01T12:00:00Z", or null for 0. */
static json_t *ks_time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char s[32];
    if (!gmtime_r(&t, &tm) || strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(s);
}

/* The pieces of <s> between separators <sep> as an array of strings
 * (empty pieces skipped). */
static json_t *ks_split_json(const char *s, const char *sep)
{
    json_t *a = json_array();
    size_t seplen = strlen(sep);
    while (*s) {
        const char *end = strstr(s, sep);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len > 0)
            json_array_append_new(a, json_stringn(s, len));
        s += len;
        if (end)
            s += seplen;
    }
    return a;
}

static json_t *ks_str_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *ks_quota_json(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

json_t *ks_key_json(const struct ks_key *k)
{
    json_t *quota = json_object();
    json_object_set_new(quota, "monthly", ks_quota_json(k->quota_monthly));
    json_object_set_new(quota, "daily", ks_quota_json(k->quota_daily));

    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(k->id));
    json_object_set_new(o, "name", ks_str_or_null(k->name));
    json_object_set_new(o, "owner", ks_str_or_null(k->owner));
    json_object_set_new(o, "tier", json_string(k->tier));
    json_object_set_new(o, "scopes", ks_split_json(k->scopes, " "));
    json_object_set_new(o, "limits", ks_split_json(k->limits, ", "));
    json_object_set_new(o, "prefix", json_string(k->prefix));
    json_object_set_new(o, "quota", quota);
    json_object_set_new(o, "expires_at", ks_time_json(k->expires_ms));
    json_object_set_new(o, "created_at", ks_time_json(k->created_ms));
    json_object_set_new(o, "last_used_at", ks_time_json(k->last_used_ms));
    json_object_set_new(o, "state", json_string(k->state == KS_REVOKED ? "revoked" : "active"));
    json_object_set_new(o, "rotated_until", ks_time_json(k->rotated_until_ms));
    json_object_set_new(o, "revoked_at", ks_time_json(k->revoked_ms));
    json_object_set_new(o, "signing", json_boolean(k->signing[0] != '\0'));
    json_object_set_new(o, "allow_ips", ks_split_json(k->allow_ips, ","));
    return o;
}

/* ---- dispatch ----------------------------------------------------------- */

static const struct ks_ops *const ks_backends[] = {
    [KS_SQLITE] = &ks_sqlite_ops,
    [KS_REDIS] = &ks_redis_ops,
};

/* The backend of <db>. A struct ks_db that was never ks_open'd but holds a
 * db_open connection in <sql> (some tests wrap theirs so) is SQLite's. */
static const struct ks_ops *ks_ops_of(const struct ks_db *db)
{
    return db->ops ? db->ops : &ks_sqlite_ops;
}

int ks_open(struct ks_db *db, const struct ks_open_opts *o, char **err)
{
    memset(db, 0, sizeof(*db));
    db->version = -2;
    if ((size_t)o->backend >= sizeof(ks_backends) / sizeof(ks_backends[0])) {
        ks_set_err(err, "no key store backend %d", (int)o->backend);
        return -1;
    }
    const struct ks_ops *ops = ks_backends[o->backend];
    if (ops->open(db, o, err) < 0)
        return -1;
    db->ops = ops;
    return 0;
}

void ks_close(struct ks_db *db)
{
    ks_ops_of(db)->close(db);
}

bool ks_changed(struct ks_db *db)
{
    int64_t v = ks_ops_of(db)->version(db);
    bool changed = v < 0 || v != db->version;
    db->version = v;
    return changed;
}

enum ks_result ks_create(struct ks_db *db, const struct ks_new *req, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    secret[0] = '\0'; /* no stale secret when the backend fails before making one */
    return ks_ops_of(db)->create(db, req, now_ms, out, secret, err);
}

enum ks_result ks_get(struct ks_db *db, const char *id, struct ks_key *out, char **err)
{
    return ks_ops_of(db)->get(db, id, out, err);
}

enum ks_result ks_list(struct ks_db *db, struct ks_key **out, int *n, char **err)
{
    return ks_ops_of(db)->list(db, out, n, err);
}

enum ks_result ks_rotate(struct ks_db *db, const char *id, int64_t grace_ms, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    secret[0] = '\0';
    return ks_ops_of(db)->rotate(db, id, grace_ms, now_ms, out, secret, err);
}

enum ks_result ks_revoke(struct ks_db *db, const char *id, int64_t now_ms, struct ks_key *out,
                         char **err)
{
    return ks_ops_of(db)->revoke(db, id, now_ms, out, err);
}

enum ks_result ks_update(struct ks_db *db, const char *id, const struct ks_update *u,
                         struct ks_key *out, char **err)
{
    return ks_ops_of(db)->update(db, id, u, out, err);
}

void ks_touch(struct ks_db *db, const char *id, int64_t when_ms)
{
    ks_touch_many(db, &id, &when_ms, 1);
}

void ks_touch_many(struct ks_db *db, const char *const *ids, const int64_t *when, int n)
{
    ks_ops_of(db)->touch_many(db, ids, when, n);
}

enum ks_result ks_each_active(struct ks_db *db, int64_t now_ms, ks_each_fn fn, void *arg,
                              char **err)
{
    return ks_ops_of(db)->each_active(db, now_ms, fn, arg, err);
}

enum ks_result ks_refresh_issue(struct ks_db *db, const char *key_id, const char *family,
                                int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                char **err)
{
    return ks_ops_of(db)->refresh_issue(db, key_id, family, ttl_ms, now_ms, token, err);
}

enum ks_spend ks_refresh_spend(struct ks_db *db, const char *token, int64_t ttl_ms, int64_t now_ms,
                               struct ks_key *key, char next[KS_REFRESH_MAX], char **err)
{
    return ks_ops_of(db)->refresh_spend(db, token, ttl_ms, now_ms, key, next, err);
}

enum ks_result ks_put(struct ks_db *db, const struct ks_key *k, const struct ks_secret *secrets,
                      int n, bool force, char **err)
{
    return ks_ops_of(db)->put(db, k, secrets, n, force, err);
}

bool ks_same_key(const struct ks_key *a, const struct ks_key *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->owner, b->owner) == 0 && strcmp(a->tier, b->tier) == 0 &&
           strcmp(a->scopes, b->scopes) == 0 && strcmp(a->limits, b->limits) == 0 &&
           strcmp(a->prefix, b->prefix) == 0 && a->quota_monthly == b->quota_monthly &&
           a->quota_daily == b->quota_daily && a->expires_ms == b->expires_ms &&
           a->created_ms == b->created_ms && a->revoked_ms == b->revoked_ms &&
           a->rotated_until_ms == b->rotated_until_ms && a->state == b->state &&
           strcmp(a->signing, b->signing) == 0 && strcmp(a->allow_ips, b->allow_ips) == 0;
}

bool ks_same_secrets(const struct ks_secret *a, int na, const struct ks_secret *b, int nb)
{
    if (na != nb)
        return false;
    /* Hashes are unique within a key: each of <a> found in <b> is a match. */
    for (int i = 0; i < na; i++) {
        bool found = false;
        for (int j = 0; j < nb && !found; j++)
            found = memcmp(a[i].hash, b[j].hash, APIKEY_HASH_LEN) == 0 &&
                    a[i].valid_until_ms == b[j].valid_until_ms;
        if (!found)
            return false;
    }
    return true;
}

enum ks_result ks_epoch(struct ks_db *db, char out[KS_EPOCH_MAX], char **err)
{
    out[0] = '\0';
    const struct ks_ops *ops = ks_ops_of(db);
    return ops->epoch ? ops->epoch(db, out, err) : KS_OK;
}

enum ks_result ks_set_epoch(struct ks_db *db, const char *epoch, char **err)
{
    const struct ks_ops *ops = ks_ops_of(db);
    return ops->set_epoch ? ops->set_epoch(db, epoch, err) : KS_OK;
}

enum ks_epoch_state ks_epoch_check(const char *known, const char *now)
{
    if (!known[0])
        return KS_EPOCH_NEW;
    return strcmp(known, now) == 0 ? KS_EPOCH_SAME : KS_EPOCH_LOST;
}

bool ks_is_remote(const struct ks_db *db)
{
    return ks_ops_of(db)->remote;
}

char *ks_advice(struct ks_db *db)
{
    const struct ks_ops *ops = ks_ops_of(db);
    return ops->advice ? ops->advice(db) : NULL;
}
