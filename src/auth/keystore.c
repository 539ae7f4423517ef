/* API keys and refresh tokens in SQLite (see keystore.h; the schema is in
 * store/db.c), and the ks_* entry points that send each call to SQLite or,
 * with store.backend: redis, to keystore_redis.c.
 *
 * Every call prepares its statements, binds, steps and finalizes: these run
 * on the CLI and on the writer thread, a few times per second at most, so a
 * statement cache would only add state. Calls that change several rows run
 * in one BEGIN IMMEDIATE transaction: a reader (another process's writer
 * reloading its keyring) sees all of a rotation or none of it. */

#include "auth/keystore.h"

#include <stdarg.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/keystore_redis.h"
#include "conf/conf.h"
#include "store/db.h"
#include "util/mem.h"
#include "util/str.h"

#define KS_KEY_COLS                                                                                \
    "id, name, owner, tier, scopes, limits, prefix, quota_monthly, quota_daily, expires_ms, "      \
    "created_ms, last_used_ms, revoked_ms, rotated_until_ms, state"
#define KS_KEY_NCOLS 15
#define KS_REFRESH_LEAD "rt"
#define KS_FAMILY_MAX 33 /* 16 bytes of the first token's hash in hex */

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

static enum ks_result ks_db_err(sqlite3 *db, char **err, const char *what)
{
    ks_set_err(err, "%s: %s", what, sqlite3_errmsg(db));
    return KS_ERROR;
}

/* ---- statements --------------------------------------------------------- */

/* Prepares <sql> and binds the arguments described by <types>: 't' a C
 * string (NULL binds NULL), 'i' an int64_t, 'q' an int64_t where negative
 * binds NULL, 'h' a hash of APIKEY_HASH_LEN bytes. NULL on failure (the
 * error is sqlite3_errmsg). */
static sqlite3_stmt *ks_prepare(sqlite3 *db, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    va_list ap;
    va_start(ap, types);
    int rc = SQLITE_OK;
    for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
        if (types[i] == 't') {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
        } else if (types[i] == 'i') {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else if (types[i] == 'q') {
            int64_t v = va_arg(ap, int64_t);
            rc = v < 0 ? sqlite3_bind_null(st, i + 1) : sqlite3_bind_int64(st, i + 1, v);
        } else {
            rc = sqlite3_bind_blob(st, i + 1, va_arg(ap, const uint8_t *), APIKEY_HASH_LEN,
                                   SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Runs a statement that returns no rows; 0 or -1. Finalizes <st> (NULL:
 * its preparation failed). */
static int ks_exec(sqlite3_stmt *st)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void ks_col_text(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    str_copy(out, cap, s ? (const char *)s : "");
}

static int64_t ks_col_quota(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, col);
}

/* The KS_KEY_COLS of the current row of <st> into <k>. */
static void ks_read_key(sqlite3_stmt *st, struct ks_key *k)
{
    memset(k, 0, sizeof(*k));
    ks_col_text(st, 0, k->id, sizeof(k->id));
    ks_col_text(st, 1, k->name, sizeof(k->name));
    ks_col_text(st, 2, k->owner, sizeof(k->owner));
    ks_col_text(st, 3, k->tier, sizeof(k->tier));
    ks_col_text(st, 4, k->scopes, sizeof(k->scopes));
    ks_col_text(st, 5, k->limits, sizeof(k->limits));
    ks_col_text(st, 6, k->prefix, sizeof(k->prefix));
    k->quota_monthly = ks_col_quota(st, 7);
    k->quota_daily = ks_col_quota(st, 8);
    k->expires_ms = sqlite3_column_int64(st, 9);
    k->created_ms = sqlite3_column_int64(st, 10);
    k->last_used_ms = sqlite3_column_int64(st, 11);
    k->revoked_ms = sqlite3_column_int64(st, 12);
    k->rotated_until_ms = sqlite3_column_int64(st, 13);
    const unsigned char *state = sqlite3_column_text(st, 14);
    k->state = state && strcmp((const char *)state, "revoked") == 0 ? KS_REVOKED : KS_ACTIVE;
}

/* ---- keys --------------------------------------------------------------- */

static enum ks_result kss_get(sqlite3 *db, const char *id, struct ks_key *out, char **err)
{
    sqlite3_stmt *st = ks_prepare(db, "SELECT " KS_KEY_COLS " FROM keys WHERE id = ?", "t", id);
    if (!st)
        return ks_db_err(db, err, "reading a key");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ks_read_key(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return KS_OK;
    if (rc == SQLITE_DONE)
        return KS_NOT_FOUND;
    return ks_db_err(db, err, "reading a key");
}

static enum ks_result kss_list(sqlite3 *db, struct ks_key **out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    /* rowid breaks ties between keys created in the same millisecond. */
    sqlite3_stmt *st =
        ks_prepare(db, "SELECT " KS_KEY_COLS " FROM keys ORDER BY created_ms DESC, rowid DESC", "");
    if (!st)
        return ks_db_err(db, err, "listing keys");
    struct ks_key *keys = NULL;
    int count = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            keys = sl_realloc(keys, (size_t)cap * sizeof(*keys));
        }
        ks_read_key(st, &keys[count++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(keys);
        return ks_db_err(db, err, "listing keys");
    }
    *out = keys;
    *n = count;
    return KS_OK;
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

/* Inserts secret <secret> of key <id>, valid until <valid_until_ms>. */
static int ks_insert_secret(sqlite3 *db, const char *id, const char *secret, int64_t now_ms)
{
    uint8_t hash[APIKEY_HASH_LEN];
    char prefix[APIKEY_PREFIX_MAX];
    apikey_hash(secret, strlen(secret), hash);
    apikey_visible_prefix(secret, prefix);
    return ks_exec(ks_prepare(db,
                              "INSERT INTO key_secrets (hash, key_id, prefix, created_ms, "
                              "valid_until_ms) VALUES (?, ?, ?, ?, 0)",
                              "htti", hash, id, prefix, now_ms));
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
           ks_fits(req->limits, KS_LIMITS_MAX, "limits", err);
}

static enum ks_result kss_create(sqlite3 *db, const struct ks_new *req, int64_t now_ms,
                                 struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    secret[0] = '\0';
    const char *env;
    if (!ks_check_new(req, &env, err))
        return KS_ERROR;
    char id[APIKEY_ID_MAX];
    if (apikey_new_id(id) < 0 || apikey_generate(env, secret) < 0) {
        secret[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(secret, prefix);

    if (db_begin(db) < 0)
        goto fail;
    if (ks_exec(ks_prepare(db,
                           "INSERT INTO keys (id, name, owner, tier, scopes, limits, prefix, "
                           "quota_monthly, quota_daily, expires_ms, created_ms) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           "tttttttqqii", id, req->name ? req->name : "",
                           req->owner ? req->owner : "", req->tier, req->scopes ? req->scopes : "",
                           req->limits ? req->limits : "", prefix, req->quota_monthly,
                           req->quota_daily, req->expires_ms > 0 ? req->expires_ms : (int64_t)0,
                           now_ms)) < 0 ||
        ks_insert_secret(db, id, secret, now_ms) < 0)
        goto fail;
    enum ks_result r = kss_get(db, id, out, err);
    if (r != KS_OK || db_commit(db) < 0)
        goto fail;
    return KS_OK;
fail:
    ks_db_err(db, err, "creating a key");
    db_rollback(db);
    OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
    secret[0] = '\0';
    return KS_ERROR;
}

static enum ks_result kss_rotate(sqlite3 *db, const char *id, int64_t grace_ms, int64_t now_ms,
                                 struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    secret[0] = '\0';
    if (grace_ms < 0)
        grace_ms = 0;
    if (db_begin(db) < 0)
        return ks_db_err(db, err, "rotating a key");
    struct ks_key k;
    enum ks_result r = kss_get(db, id, &k, err);
    if (r != KS_OK || k.state != KS_ACTIVE) {
        db_rollback(db);
        return r == KS_ERROR ? KS_ERROR : KS_NOT_FOUND;
    }
    /* The new secret keeps the env of the key's current one. */
    char env[APIKEY_ENV_MAX + 1] = "live";
    const char *us = strchr(k.prefix + 3, '_');
    if (strncmp(k.prefix, "sk_", 3) == 0 && us && (size_t)(us - k.prefix - 3) <= APIKEY_ENV_MAX) {
        memcpy(env, k.prefix + 3, (size_t)(us - k.prefix - 3));
        env[us - k.prefix - 3] = '\0';
    }
    if (apikey_generate(env, secret) < 0) {
        db_rollback(db);
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(secret, prefix);
    int64_t until = grace_ms > 0 ? now_ms + grace_ms : 0;
    int ok;
    if (grace_ms > 0) {
        /* The current secrets end with the grace period, and one still in
         * the grace of an earlier rotation ends no later than that; what
         * has ended already goes. */
        ok = ks_exec(ks_prepare(db,
                                "DELETE FROM key_secrets WHERE key_id = ? AND valid_until_ms <> 0 "
                                "AND valid_until_ms <= ?",
                                "ti", id, now_ms)) == 0 &&
             ks_exec(ks_prepare(db,
                                "UPDATE key_secrets SET valid_until_ms = ?1 WHERE key_id = ?2 "
                                "AND (valid_until_ms = 0 OR valid_until_ms > ?1)",
                                "it", until, id)) == 0;
    } else {
        ok = ks_exec(ks_prepare(db, "DELETE FROM key_secrets WHERE key_id = ?", "t", id)) == 0;
    }
    ok = ok && ks_insert_secret(db, id, secret, now_ms) == 0 &&
         ks_exec(ks_prepare(db, "UPDATE keys SET prefix = ?, rotated_until_ms = ? WHERE id = ?",
                            "tit", prefix, until, id)) == 0;
    if (!ok || kss_get(db, id, out, err) != KS_OK || db_commit(db) < 0) {
        ks_db_err(db, err, "rotating a key");
        db_rollback(db);
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
        return KS_ERROR;
    }
    return KS_OK;
}

static enum ks_result kss_revoke(sqlite3 *db, const char *id, int64_t now_ms, struct ks_key *out,
                                 char **err)
{
    if (db_begin(db) < 0)
        return ks_db_err(db, err, "revoking a key");
    enum ks_result r = kss_get(db, id, out, err);
    if (r != KS_OK) {
        db_rollback(db);
        return r;
    }
    if (out->state == KS_REVOKED) {
        db_rollback(db);
        return KS_OK;
    }
    /* The secrets go (a revoked key's hash then matches nothing, on every
     * path), the refresh tokens stay, revoked, so that a replay is told
     * apart from garbage in the logs. */
    if (ks_exec(
            ks_prepare(db,
                       "UPDATE keys SET state = 'revoked', revoked_ms = ?, rotated_until_ms = 0 "
                       "WHERE id = ?",
                       "it", now_ms, id)) < 0 ||
        ks_exec(ks_prepare(db, "DELETE FROM key_secrets WHERE key_id = ?", "t", id)) < 0 ||
        ks_exec(ks_prepare(db, "UPDATE refresh_tokens SET revoked = 1 WHERE key_id = ?", "t", id)) <
            0 ||
        kss_get(db, id, out, err) != KS_OK || db_commit(db) < 0) {
        ks_db_err(db, err, "revoking a key");
        db_rollback(db);
        return KS_ERROR;
    }
    return KS_OK;
}

static void kss_touch(sqlite3 *db, const char *id, int64_t when_ms)
{
    /* Best effort: a lost last-used time is not worth an error path. */
    ks_exec(ks_prepare(db, "UPDATE keys SET last_used_ms = ?1 WHERE id = ?2 AND last_used_ms < ?1",
                       "it", when_ms, id));
}

static enum ks_result kss_each_active(sqlite3 *db, int64_t now_ms, ks_each_fn fn, void *arg,
                                      char **err)
{
    /* One statement: one consistent snapshot of keys and secrets. */
    sqlite3_stmt *st = ks_prepare(
        db,
        "SELECT k.id, k.name, k.owner, k.tier, k.scopes, k.limits, k.prefix, k.quota_monthly, "
        "k.quota_daily, k.expires_ms, k.created_ms, k.last_used_ms, k.revoked_ms, "
        "k.rotated_until_ms, k.state, s.hash, s.valid_until_ms "
        "FROM keys k JOIN key_secrets s ON s.key_id = k.id "
        "WHERE k.state = 'active' AND (k.expires_ms = 0 OR k.expires_ms > ?1) "
        "AND (s.valid_until_ms = 0 OR s.valid_until_ms > ?1) ORDER BY k.id",
        "i", now_ms);
    if (!st)
        return ks_db_err(db, err, "reading active keys");
    struct ks_key k;
    struct ks_secret *secrets = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        if (n > 0 && strcmp(k.id, id ? (const char *)id : "") != 0) {
            fn(&k, secrets, n, arg);
            n = 0;
        }
        if (n == 0)
            ks_read_key(st, &k);
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            secrets = sl_realloc(secrets, (size_t)cap * sizeof(*secrets));
        }
        const void *hash = sqlite3_column_blob(st, KS_KEY_NCOLS);
        if (!hash || sqlite3_column_bytes(st, KS_KEY_NCOLS) != APIKEY_HASH_LEN)
            continue; /* the schema's CHECK rules this out */
        memcpy(secrets[n].hash, hash, APIKEY_HASH_LEN);
        secrets[n].valid_until_ms = sqlite3_column_int64(st, KS_KEY_NCOLS + 1);
        n++;
    }
    if (rc == SQLITE_DONE && n > 0)
        fn(&k, secrets, n, arg);
    sqlite3_finalize(st);
    free(secrets);
    if (rc != SQLITE_DONE)
        return ks_db_err(db, err, "reading active keys");
    return KS_OK;
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
    return o;
}

/* ---- refresh tokens ----------------------------------------------------- */

/* A new token for <key_id> in <family> (NULL: a new family, named after
 * the token's hash) into <token>; no transaction of its own. 0 or -1 (an
 * RNG failure sets *<err>; otherwise see sqlite3_errmsg). */
static int ks_refresh_insert(sqlite3 *db, const char *key_id, const char *family, int64_t ttl_ms,
                             int64_t now_ms, char token[KS_REFRESH_MAX], char **err)
{
    if (apikey_generate_token(KS_REFRESH_LEAD, token, KS_REFRESH_MAX) < 0) {
        ks_set_err(err, "the random number generator failed");
        return -1;
    }
    uint8_t hash[APIKEY_HASH_LEN];
    apikey_hash(token, strlen(token), hash);
    char fam[KS_FAMILY_MAX];
    if (!family) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < (KS_FAMILY_MAX - 1) / 2; i++) {
            fam[2 * i] = hex[hash[i] >> 4];
            fam[2 * i + 1] = hex[hash[i] & 15];
        }
        fam[KS_FAMILY_MAX - 1] = '\0';
        family = fam;
    }
    return ks_exec(ks_prepare(db,
                              "INSERT INTO refresh_tokens (hash, family, key_id, created_ms, "
                              "expires_ms) VALUES (?, ?, ?, ?, ?)",
                              "httii", hash, family, key_id, now_ms, now_ms + ttl_ms));
}

static enum ks_result kss_refresh_issue(sqlite3 *db, const char *key_id, const char *family,
                                        int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                        char **err)
{
    token[0] = '\0';
    if (db_begin(db) < 0)
        return ks_db_err(db, err, "issuing a refresh token");
    /* Expired tokens are worthless, spent or not: pruning them here keeps
     * the table the size of the live ones (the index makes it cheap). */
    if (ks_exec(ks_prepare(db, "DELETE FROM refresh_tokens WHERE expires_ms <= ?", "i", now_ms)) <
        0)
        goto fail;
    if (ks_refresh_insert(db, key_id, family, ttl_ms, now_ms, token, err) < 0) {
        if (token[0])
            goto fail;
        db_rollback(db); /* RNG failure, *err set */
        return KS_ERROR;
    }
    if (db_commit(db) < 0)
        goto fail;
    return KS_OK;
fail:
    ks_db_err(db, err, "issuing a refresh token");
    db_rollback(db);
    token[0] = '\0';
    return KS_ERROR;
}

static enum ks_spend kss_refresh_spend(sqlite3 *db, const char *token, int64_t ttl_ms,
                                       int64_t now_ms, struct ks_key *key,
                                       char next[KS_REFRESH_MAX], char **err)
{
    next[0] = '\0';
    if (!apikey_token_shape_ok(KS_REFRESH_LEAD, token))
        return KS_SPENT_INVALID;
    uint8_t hash[APIKEY_HASH_LEN];
    apikey_hash(token, strlen(token), hash);
    if (db_begin(db) < 0) {
        ks_db_err(db, err, "spending a refresh token");
        return KS_SPENT_INVALID;
    }
    sqlite3_stmt *st = ks_prepare(db,
                                  "SELECT family, key_id, expires_ms, spent_ms, revoked "
                                  "FROM refresh_tokens WHERE hash = ?",
                                  "h", hash);
    if (!st)
        goto fail;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            goto fail;
        db_rollback(db);
        return KS_SPENT_INVALID;
    }
    char family[KS_FAMILY_MAX + 32], key_id[APIKEY_ID_MAX];
    ks_col_text(st, 0, family, sizeof(family));
    ks_col_text(st, 1, key_id, sizeof(key_id));
    int64_t expires_ms = sqlite3_column_int64(st, 2);
    int64_t spent_ms = sqlite3_column_int64(st, 3);
    bool revoked = sqlite3_column_int(st, 4) != 0;
    sqlite3_finalize(st);

    if (revoked) {
        db_rollback(db);
        return KS_SPENT_INVALID;
    }
    if (spent_ms != 0) {
        /* A replay: the token leaked, or its holder is confused. Either way
         * no one in the chain can be trusted, the successor included (RFC
         * 6819 5.2.2.3 / OAuth 2.0 Security BCP 4.14). Committed, so the
         * caller's 401 does not undo it. */
        if (ks_exec(ks_prepare(db, "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", "t",
                               family)) < 0 ||
            db_commit(db) < 0)
            goto fail;
        return KS_SPENT_REUSED;
    }
    struct ks_key k;
    enum ks_result r = kss_get(db, key_id, &k, err);
    if (r == KS_ERROR)
        goto fail_err_set;
    if (expires_ms <= now_ms || r == KS_NOT_FOUND || k.state != KS_ACTIVE ||
        (k.expires_ms != 0 && k.expires_ms <= now_ms)) {
        db_rollback(db);
        return KS_SPENT_INVALID;
    }
    if (ks_exec(ks_prepare(db, "UPDATE refresh_tokens SET spent_ms = ? WHERE hash = ?", "ih",
                           now_ms, hash)) < 0)
        goto fail;
    if (ks_refresh_insert(db, key_id, family, ttl_ms, now_ms, next, err) < 0) {
        if (next[0])
            goto fail;
        goto fail_err_set;
    }
    if (db_commit(db) < 0)
        goto fail;
    *key = k;
    return KS_SPENT_OK;
fail:
    ks_db_err(db, err, "spending a refresh token");
fail_err_set:
    db_rollback(db);
    next[0] = '\0';
    return KS_SPENT_INVALID;
}

/* ---- the store, SQLite or Redis ------------------------------------------------ */

static int ks_redis_connect(struct ks_db *db, char **err)
{
    /* Key operations run off the request path, but a request with a key
     * the keyring does not know waits for the key thread's next look: half
     * a second bounds that wait when Redis is away. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
    db->redis = redisConnectWithTimeout(db->conn.host, db->conn.port, tv);
    if (!db->redis || db->redis->err) {
        ks_set_err(err, "redis %s:%d: %s", db->conn.host, db->conn.port,
                   db->redis ? db->redis->errstr : "out of memory");
        if (db->redis)
            redisFree(db->redis);
        db->redis = NULL;
        return -1;
    }
    redisSetTimeout(db->redis, tv);
    redisReply *r = NULL;
    bool ok = true;
    if (db->conn.password[0]) {
        r = db->conn.user[0]
                ? redisCommand(db->redis, "AUTH %s %s", db->conn.user, db->conn.password)
                : redisCommand(db->redis, "AUTH %s", db->conn.password);
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (!ok)
            ks_set_err(err, "redis %s:%d: AUTH: %s", db->conn.host, db->conn.port,
                       r ? r->str : db->redis->errstr);
        freeReplyObject(r);
    }
    if (ok && db->conn.db) {
        r = redisCommand(db->redis, "SELECT %d", db->conn.db);
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (!ok)
            ks_set_err(err, "redis %s:%d: SELECT: %s", db->conn.host, db->conn.port,
                       r ? r->str : db->redis->errstr);
        freeReplyObject(r);
    }
    if (!ok) {
        redisFree(db->redis);
        db->redis = NULL;
        return -1;
    }
    return 0;
}

int ks_open(struct ks_db *db, const struct config *c, char **err)
{
    memset(db, 0, sizeof(*db));
    db->version = -2;
    if (c->store.backend == CFG_BACKEND_REDIS) {
        db->conn = c->store.redis.conn;
        str_copy(db->prefix, sizeof(db->prefix), c->store.redis.prefix);
        return ks_redis_connect(db, err);
    }
    db->sql = db_open(c->store.data_dir, err);
    return db->sql ? 0 : -1;
}

void ks_close(struct ks_db *db)
{
    if (db->sql)
        db_close(db->sql);
    if (db->redis)
        redisFree(db->redis);
    db->sql = NULL;
    db->redis = NULL;
}

static bool ks_is_redis(const struct ks_db *db)
{
    return !db->sql;
}

/* A Redis connection that broke (Redis restarted) is made again before the
 * next call; NULL when it still cannot be. */
static redisContext *ks_redis(struct ks_db *db)
{
    if (db->redis && db->redis->err) {
        redisFree(db->redis);
        db->redis = NULL;
    }
    if (!db->redis) {
        /* While Redis is away, try again at most once a second: every
         * caller in between fails at once instead of waiting to connect. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (now < db->retry_at_ms)
            return NULL;
        char *err = NULL;
        if (ks_redis_connect(db, &err) < 0) {
            free(err);
            db->retry_at_ms = now + 1000;
            return NULL;
        }
    }
    return db->redis;
}

static enum ks_result ks_redis_down(struct ks_db *db, char **err)
{
    ks_set_err(err, "redis %s:%d cannot be reached", db->conn.host, db->conn.port);
    return KS_ERROR;
}

bool ks_changed(struct ks_db *db)
{
    int64_t v = -1;
    if (!ks_is_redis(db)) {
        /* Moves when another connection commits. */
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db->sql, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    } else {
        redisContext *rc = ks_redis(db);
        v = rc ? ksr_version(rc, db->prefix) : -1;
    }
    bool changed = v < 0 || v != db->version;
    db->version = v;
    return changed;
}

/* The live Redis connection of <db> into <rc>, or return a store error. */
#define KS_REDIS(db, rc, err)                                                                      \
    redisContext *rc = ks_redis(db);                                                               \
    if (!rc)                                                                                       \
        return ks_redis_down(db, err);

enum ks_result ks_create(struct ks_db *db, const struct ks_new *req, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    if (!ks_is_redis(db))
        return kss_create(db->sql, req, now_ms, out, secret, err);
    KS_REDIS(db, rc, err)
    return ksr_create(rc, db->prefix, req, now_ms, out, secret, err);
}

enum ks_result ks_get(struct ks_db *db, const char *id, struct ks_key *out, char **err)
{
    if (!ks_is_redis(db))
        return kss_get(db->sql, id, out, err);
    KS_REDIS(db, rc, err)
    return ksr_get(rc, db->prefix, id, out, err);
}

enum ks_result ks_list(struct ks_db *db, struct ks_key **out, int *n, char **err)
{
    if (!ks_is_redis(db))
        return kss_list(db->sql, out, n, err);
    KS_REDIS(db, rc, err)
    return ksr_list(rc, db->prefix, out, n, err);
}

enum ks_result ks_rotate(struct ks_db *db, const char *id, int64_t grace_ms, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    if (!ks_is_redis(db))
        return kss_rotate(db->sql, id, grace_ms, now_ms, out, secret, err);
    KS_REDIS(db, rc, err)
    return ksr_rotate(rc, db->prefix, id, grace_ms, now_ms, out, secret, err);
}

enum ks_result ks_revoke(struct ks_db *db, const char *id, int64_t now_ms, struct ks_key *out,
                         char **err)
{
    if (!ks_is_redis(db))
        return kss_revoke(db->sql, id, now_ms, out, err);
    KS_REDIS(db, rc, err)
    return ksr_revoke(rc, db->prefix, id, now_ms, out, err);
}

void ks_touch(struct ks_db *db, const char *id, int64_t when_ms)
{
    ks_touch_many(db, &id, &when_ms, 1);
}

void ks_touch_many(struct ks_db *db, const char *const *ids, const int64_t *when, int n)
{
    if (ks_is_redis(db)) {
        redisContext *rc = ks_redis(db);
        if (rc)
            ksr_touch_many(rc, db->prefix, ids, when, n);
        return;
    }
    /* Last-use times are informative: a failed batch is dropped, not retried. */
    if (db_begin(db->sql) < 0)
        return;
    for (int i = 0; i < n; i++)
        kss_touch(db->sql, ids[i], when[i]);
    if (db_commit(db->sql) < 0)
        db_rollback(db->sql);
}

enum ks_result ks_each_active(struct ks_db *db, int64_t now_ms, ks_each_fn fn, void *arg,
                              char **err)
{
    if (!ks_is_redis(db))
        return kss_each_active(db->sql, now_ms, fn, arg, err);
    KS_REDIS(db, rc, err)
    return ksr_each_active(rc, db->prefix, now_ms, fn, arg, err);
}

enum ks_result ks_refresh_issue(struct ks_db *db, const char *key_id, const char *family,
                                int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                char **err)
{
    if (!ks_is_redis(db))
        return kss_refresh_issue(db->sql, key_id, family, ttl_ms, now_ms, token, err);
    KS_REDIS(db, rc, err)
    return ksr_refresh_issue(rc, db->prefix, key_id, family, ttl_ms, now_ms, token, err);
}

enum ks_spend ks_refresh_spend(struct ks_db *db, const char *token, int64_t ttl_ms, int64_t now_ms,
                               struct ks_key *key, char next[KS_REFRESH_MAX], char **err)
{
    if (!ks_is_redis(db))
        return kss_refresh_spend(db->sql, token, ttl_ms, now_ms, key, next, err);
    redisContext *rc = ks_redis(db);
    if (!rc) {
        ks_redis_down(db, err);
        return KS_SPENT_INVALID;
    }
    return ksr_refresh_spend(rc, db->prefix, token, ttl_ms, now_ms, key, next, err);
}
