/* API keys and refresh tokens in SQLite (see keystore.h for the semantics;
 * the schema is in store/db.c): the key store backend of store.backend
 * memory, reached through ks_sqlite_ops.
 *
 * Every call prepares its statements, binds, steps and finalizes: these run
 * on the CLI and on the writer thread, a few times per second at most, so a
 * statement cache would only add state. Calls that change several rows run
 * in one BEGIN IMMEDIATE transaction: a reader (another process's writer
 * reloading its keyring) sees all of a rotation or none of it. */

#include <stdarg.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/keystore_backend.h"
#include "store/db.h"
#include "util/mem.h"
#include "util/str.h"

#define KSS_KEY_COLS                                                                               \
    "id, name, owner, tier, scopes, limits, prefix, quota_monthly, quota_daily, expires_ms, "      \
    "created_ms, last_used_ms, revoked_ms, rotated_until_ms, state, signing, allow_ips"
#define KSS_KEY_NCOLS 17
#define KSS_REFRESH_LEAD "rt"
#define KSS_FAMILY_MAX 33 /* 16 bytes of the first token's hash in hex */

/* ---- errors and statements --------------------------------------------- */

static enum ks_result kss_err(sqlite3 *db, char **err, const char *what)
{
    ks_set_err(err, "%s: %s", what, sqlite3_errmsg(db));
    return KS_ERROR;
}

/* Prepares <sql> and binds the arguments described by <types>: 't' a C
 * string (NULL binds NULL), 'i' an int64_t, 'q' an int64_t where negative
 * binds NULL, 'h' a hash of APIKEY_HASH_LEN bytes. NULL on failure (the
 * error is sqlite3_errmsg). */
static sqlite3_stmt *kss_prepare(sqlite3 *db, const char *sql, const char *types, ...)
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
static int kss_exec(sqlite3_stmt *st)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void kss_col_text(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    str_copy(out, cap, s ? (const char *)s : "");
}

static int64_t kss_col_quota(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, col);
}

/* The KSS_KEY_COLS of the current row of <st> into <k>. */
static void kss_read_key(sqlite3_stmt *st, struct ks_key *k)
{
    memset(k, 0, sizeof(*k));
    kss_col_text(st, 0, k->id, sizeof(k->id));
    kss_col_text(st, 1, k->name, sizeof(k->name));
    kss_col_text(st, 2, k->owner, sizeof(k->owner));
    kss_col_text(st, 3, k->tier, sizeof(k->tier));
    kss_col_text(st, 4, k->scopes, sizeof(k->scopes));
    kss_col_text(st, 5, k->limits, sizeof(k->limits));
    kss_col_text(st, 6, k->prefix, sizeof(k->prefix));
    k->quota_monthly = kss_col_quota(st, 7);
    k->quota_daily = kss_col_quota(st, 8);
    k->expires_ms = sqlite3_column_int64(st, 9);
    k->created_ms = sqlite3_column_int64(st, 10);
    k->last_used_ms = sqlite3_column_int64(st, 11);
    k->revoked_ms = sqlite3_column_int64(st, 12);
    k->rotated_until_ms = sqlite3_column_int64(st, 13);
    const unsigned char *state = sqlite3_column_text(st, 14);
    k->state = state && strcmp((const char *)state, "revoked") == 0 ? KS_REVOKED : KS_ACTIVE;
    kss_col_text(st, 15, k->signing, sizeof(k->signing));
    kss_col_text(st, 16, k->allow_ips, sizeof(k->allow_ips));
}

/* ---- keys --------------------------------------------------------------- */

static enum ks_result kss_get(struct ks_db *ks, const char *id, struct ks_key *out, char **err)
{
    sqlite3 *db = ks->sql;
    sqlite3_stmt *st = kss_prepare(db, "SELECT " KSS_KEY_COLS " FROM keys WHERE id = ?", "t", id);
    if (!st)
        return kss_err(db, err, "reading a key");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        kss_read_key(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return KS_OK;
    if (rc == SQLITE_DONE)
        return KS_NOT_FOUND;
    return kss_err(db, err, "reading a key");
}

static enum ks_result kss_list(struct ks_db *ks, struct ks_key **out, int *n, char **err)
{
    sqlite3 *db = ks->sql;
    *out = NULL;
    *n = 0;
    /* rowid breaks ties between keys created in the same millisecond. */
    sqlite3_stmt *st = kss_prepare(
        db, "SELECT " KSS_KEY_COLS " FROM keys ORDER BY created_ms DESC, rowid DESC", "");
    if (!st)
        return kss_err(db, err, "listing keys");
    struct ks_key *keys = NULL;
    int count = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            keys = sl_realloc(keys, (size_t)cap * sizeof(*keys));
        }
        kss_read_key(st, &keys[count++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(keys);
        return kss_err(db, err, "listing keys");
    }
    *out = keys;
    *n = count;
    return KS_OK;
}

/* Inserts secret <secret> of key <id>, valid until <valid_until_ms>. */
static int kss_insert_secret(sqlite3 *db, const char *id, const char *secret, int64_t now_ms)
{
    uint8_t hash[APIKEY_HASH_LEN];
    char prefix[APIKEY_PREFIX_MAX];
    apikey_hash(secret, strlen(secret), hash);
    apikey_visible_prefix(secret, prefix);
    return kss_exec(kss_prepare(db,
                                "INSERT INTO key_secrets (hash, key_id, prefix, created_ms, "
                                "valid_until_ms) VALUES (?, ?, ?, ?, 0)",
                                "htti", hash, id, prefix, now_ms));
}

static enum ks_result kss_create(struct ks_db *ks, const struct ks_new *req, int64_t now_ms,
                                 struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    sqlite3 *db = ks->sql;
    secret[0] = '\0';
    const char *env;
    if (!ks_check_new(req, &env, err))
        return KS_ERROR;
    char id[APIKEY_ID_MAX];
    if (ks_new_id(req, id) < 0 || apikey_generate(env, secret) < 0) {
        secret[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(secret, prefix);

    if (db_begin(db) < 0)
        goto fail;
    if (kss_exec(kss_prepare(
            db,
            "INSERT INTO keys (id, name, owner, tier, scopes, limits, prefix, "
            "quota_monthly, quota_daily, expires_ms, created_ms, signing, "
            "allow_ips) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "tttttttqqiitt", id, req->name ? req->name : "", req->owner ? req->owner : "",
            req->tier, req->scopes ? req->scopes : "", req->limits ? req->limits : "", prefix,
            req->quota_monthly, req->quota_daily,
            req->expires_ms > 0 ? req->expires_ms : (int64_t)0, now_ms,
            req->signing ? req->signing : "", req->allow_ips ? req->allow_ips : "")) < 0 ||
        kss_insert_secret(db, id, secret, now_ms) < 0)
        goto fail;
    enum ks_result r = kss_get(ks, id, out, err);
    if (r != KS_OK || db_commit(db) < 0)
        goto fail;
    return KS_OK;
fail:
    kss_err(db, err, "creating a key");
    db_rollback(db);
    OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
    secret[0] = '\0';
    return KS_ERROR;
}

static enum ks_result kss_rotate(struct ks_db *ks, const char *id, int64_t grace_ms, int64_t now_ms,
                                 struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    sqlite3 *db = ks->sql;
    secret[0] = '\0';
    if (grace_ms < 0)
        grace_ms = 0;
    if (db_begin(db) < 0)
        return kss_err(db, err, "rotating a key");
    struct ks_key k;
    enum ks_result r = kss_get(ks, id, &k, err);
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
        ok =
            kss_exec(kss_prepare(db,
                                 "DELETE FROM key_secrets WHERE key_id = ? AND valid_until_ms <> 0 "
                                 "AND valid_until_ms <= ?",
                                 "ti", id, now_ms)) == 0 &&
            kss_exec(kss_prepare(db,
                                 "UPDATE key_secrets SET valid_until_ms = ?1 WHERE key_id = ?2 "
                                 "AND (valid_until_ms = 0 OR valid_until_ms > ?1)",
                                 "it", until, id)) == 0;
    } else {
        ok = kss_exec(kss_prepare(db, "DELETE FROM key_secrets WHERE key_id = ?", "t", id)) == 0;
    }
    ok = ok && kss_insert_secret(db, id, secret, now_ms) == 0 &&
         kss_exec(kss_prepare(db, "UPDATE keys SET prefix = ?, rotated_until_ms = ? WHERE id = ?",
                              "tit", prefix, until, id)) == 0;
    if (!ok || kss_get(ks, id, out, err) != KS_OK || db_commit(db) < 0) {
        kss_err(db, err, "rotating a key");
        db_rollback(db);
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
        return KS_ERROR;
    }
    return KS_OK;
}

static enum ks_result kss_revoke(struct ks_db *ks, const char *id, int64_t now_ms,
                                 struct ks_key *out, char **err)
{
    sqlite3 *db = ks->sql;
    if (db_begin(db) < 0)
        return kss_err(db, err, "revoking a key");
    enum ks_result r = kss_get(ks, id, out, err);
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
    if (kss_exec(
            kss_prepare(db,
                        "UPDATE keys SET state = 'revoked', revoked_ms = ?, rotated_until_ms = 0 "
                        "WHERE id = ?",
                        "it", now_ms, id)) < 0 ||
        kss_exec(kss_prepare(db, "DELETE FROM key_secrets WHERE key_id = ?", "t", id)) < 0 ||
        kss_exec(kss_prepare(db, "UPDATE refresh_tokens SET revoked = 1 WHERE key_id = ?", "t",
                             id)) < 0 ||
        kss_get(ks, id, out, err) != KS_OK || db_commit(db) < 0) {
        kss_err(db, err, "revoking a key");
        db_rollback(db);
        return KS_ERROR;
    }
    return KS_OK;
}

static enum ks_result kss_update(struct ks_db *ks, const char *id, const struct ks_update *u,
                                 struct ks_key *out, char **err)
{
    sqlite3 *db = ks->sql;
    if (!ks_check_update(u, err))
        return KS_ERROR;
    /* Read, change in C, write back whole: inside BEGIN IMMEDIATE no other
     * writer comes between, and the fields left alone keep their values. */
    if (db_begin(db) < 0)
        return kss_err(db, err, "updating a key");
    struct ks_key k;
    enum ks_result r = kss_get(ks, id, &k, err);
    if (r != KS_OK || k.state != KS_ACTIVE) {
        db_rollback(db);
        return r == KS_ERROR ? KS_ERROR : KS_NOT_FOUND;
    }
    ks_apply_update(&k, u);
    if (kss_exec(kss_prepare(db,
                             "UPDATE keys SET name = ?, owner = ?, tier = ?, scopes = ?, "
                             "limits = ?, quota_monthly = ?, quota_daily = ?, signing = ?, "
                             "allow_ips = ? WHERE id = ?",
                             "tttttqqttt", k.name, k.owner, k.tier, k.scopes, k.limits,
                             k.quota_monthly, k.quota_daily, k.signing, k.allow_ips, id)) < 0 ||
        kss_get(ks, id, out, err) != KS_OK || db_commit(db) < 0) {
        kss_err(db, err, "updating a key");
        db_rollback(db);
        return KS_ERROR;
    }
    return KS_OK;
}

static void kss_touch(sqlite3 *db, const char *id, int64_t when_ms)
{
    /* Best effort: a lost last-used time is not worth an error path. */
    kss_exec(kss_prepare(db,
                         "UPDATE keys SET last_used_ms = ?1 WHERE id = ?2 AND last_used_ms < ?1",
                         "it", when_ms, id));
}

static enum ks_result kss_each_active(struct ks_db *ks, int64_t now_ms, ks_each_fn fn, void *arg,
                                      char **err)
{
    sqlite3 *db = ks->sql;
    /* One statement: one consistent snapshot of keys and secrets. */
    sqlite3_stmt *st = kss_prepare(
        db,
        "SELECT k.id, k.name, k.owner, k.tier, k.scopes, k.limits, k.prefix, k.quota_monthly, "
        "k.quota_daily, k.expires_ms, k.created_ms, k.last_used_ms, k.revoked_ms, "
        "k.rotated_until_ms, k.state, k.signing, k.allow_ips, s.hash, s.valid_until_ms "
        "FROM keys k JOIN key_secrets s ON s.key_id = k.id "
        "WHERE k.state = 'active' AND (k.expires_ms = 0 OR k.expires_ms > ?1) "
        "AND (s.valid_until_ms = 0 OR s.valid_until_ms > ?1) ORDER BY k.id",
        "i", now_ms);
    if (!st)
        return kss_err(db, err, "reading active keys");
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
            kss_read_key(st, &k);
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            secrets = sl_realloc(secrets, (size_t)cap * sizeof(*secrets));
        }
        const void *hash = sqlite3_column_blob(st, KSS_KEY_NCOLS);
        if (!hash || sqlite3_column_bytes(st, KSS_KEY_NCOLS) != APIKEY_HASH_LEN)
            continue; /* the schema's CHECK rules this out */
        memcpy(secrets[n].hash, hash, APIKEY_HASH_LEN);
        secrets[n].valid_until_ms = sqlite3_column_int64(st, KSS_KEY_NCOLS + 1);
        n++;
    }
    if (rc == SQLITE_DONE && n > 0)
        fn(&k, secrets, n, arg);
    sqlite3_finalize(st);
    free(secrets);
    if (rc != SQLITE_DONE)
        return kss_err(db, err, "reading active keys");
    return KS_OK;
}

/* The secrets of key <id> (valid or not) into *<out> (malloc'd), *<n>. */
static int kss_secrets_of(sqlite3 *db, const char *id, struct ks_secret **out, int *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st =
        kss_prepare(db, "SELECT hash, valid_until_ms FROM key_secrets WHERE key_id = ?", "t", id);
    if (!st)
        return -1;
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            *out = sl_realloc(*out, (size_t)cap * sizeof(**out));
        }
        const void *hash = sqlite3_column_blob(st, 0);
        if (!hash || sqlite3_column_bytes(st, 0) != APIKEY_HASH_LEN)
            continue;
        memcpy((*out)[*n].hash, hash, APIKEY_HASH_LEN);
        (*out)[*n].valid_until_ms = sqlite3_column_int64(st, 1);
        (*n)++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static enum ks_result kss_put(struct ks_db *ks, const struct ks_key *k,
                              const struct ks_secret *secrets, int n, bool force, char **err)
{
    sqlite3 *db = ks->sql;
    if (db_begin(db) < 0)
        return kss_err(db, err, "importing a key");
    struct ks_key cur;
    char *why = NULL;
    enum ks_result r = kss_get(ks, k->id, &cur, &why);
    free(why);
    if (r == KS_ERROR)
        goto fail;
    if (r == KS_OK) {
        struct ks_secret *have;
        int n_have;
        if (kss_secrets_of(db, k->id, &have, &n_have) < 0) {
            free(have);
            goto fail;
        }
        bool same = ks_same_key(&cur, k) && ks_same_secrets(have, n_have, secrets, n);
        free(have);
        if (same || !force) {
            db_rollback(db);
            if (same)
                return KS_OK;
            ks_set_err(err, "key %s exists with other data (--force replaces it)", k->id);
            return KS_CONFLICT;
        }
        /* Replaced whole: its secrets go with it (ON DELETE CASCADE); its
         * refresh tokens too, which is what a forced import should mean. */
        if (kss_exec(kss_prepare(db, "DELETE FROM keys WHERE id = ?", "t", k->id)) < 0)
            goto fail;
    }
    if (kss_exec(kss_prepare(db,
                             "INSERT INTO keys (" KSS_KEY_COLS ") "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             "tttttttqqiiiiittt", k->id, k->name, k->owner, k->tier, k->scopes,
                             k->limits, k->prefix, k->quota_monthly, k->quota_daily, k->expires_ms,
                             k->created_ms, k->last_used_ms, k->revoked_ms, k->rotated_until_ms,
                             k->state == KS_REVOKED ? "revoked" : "active", k->signing,
                             k->allow_ips)) < 0)
        goto fail;
    for (int i = 0; i < n; i++)
        if (kss_exec(kss_prepare(db,
                                 "INSERT INTO key_secrets (hash, key_id, prefix, created_ms, "
                                 "valid_until_ms) VALUES (?, ?, ?, ?, ?)",
                                 "httii", secrets[i].hash, k->id, k->prefix, k->created_ms,
                                 secrets[i].valid_until_ms)) < 0)
            goto fail;
    if (db_commit(db) < 0)
        goto fail;
    return KS_OK;
fail:
    kss_err(db, err, "importing a key");
    db_rollback(db);
    return KS_ERROR;
}

/* ---- refresh tokens ----------------------------------------------------- */

/* A new token for <key_id> in <family> (NULL: a new family, named after
 * the token's hash) into <token>; no transaction of its own. 0 or -1 (an
 * RNG failure sets *<err>; otherwise see sqlite3_errmsg). */
static int kss_refresh_insert(sqlite3 *db, const char *key_id, const char *family, int64_t ttl_ms,
                              int64_t now_ms, char token[KS_REFRESH_MAX], char **err)
{
    if (apikey_generate_token(KSS_REFRESH_LEAD, token, KS_REFRESH_MAX) < 0) {
        ks_set_err(err, "the random number generator failed");
        return -1;
    }
    uint8_t hash[APIKEY_HASH_LEN];
    apikey_hash(token, strlen(token), hash);
    char fam[KSS_FAMILY_MAX];
    if (!family) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < (KSS_FAMILY_MAX - 1) / 2; i++) {
            fam[2 * i] = hex[hash[i] >> 4];
            fam[2 * i + 1] = hex[hash[i] & 15];
        }
        fam[KSS_FAMILY_MAX - 1] = '\0';
        family = fam;
    }
    return kss_exec(kss_prepare(db,
                                "INSERT INTO refresh_tokens (hash, family, key_id, created_ms, "
                                "expires_ms) VALUES (?, ?, ?, ?, ?)",
                                "httii", hash, family, key_id, now_ms, now_ms + ttl_ms));
}

static enum ks_result kss_refresh_issue(struct ks_db *ks, const char *key_id, const char *family,
                                        int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                        char **err)
{
    sqlite3 *db = ks->sql;
    token[0] = '\0';
    if (db_begin(db) < 0)
        return kss_err(db, err, "issuing a refresh token");
    /* Expired tokens are worthless, spent or not: pruning them here keeps
     * the table the size of the live ones (the index makes it cheap). */
    if (kss_exec(kss_prepare(db, "DELETE FROM refresh_tokens WHERE expires_ms <= ?", "i", now_ms)) <
        0)
        goto fail;
    if (kss_refresh_insert(db, key_id, family, ttl_ms, now_ms, token, err) < 0) {
        if (token[0])
            goto fail;
        db_rollback(db); /* RNG failure, *err set */
        return KS_ERROR;
    }
    if (db_commit(db) < 0)
        goto fail;
    return KS_OK;
fail:
    kss_err(db, err, "issuing a refresh token");
    db_rollback(db);
    token[0] = '\0';
    return KS_ERROR;
}

static enum ks_spend kss_refresh_spend(struct ks_db *ks, const char *token, int64_t ttl_ms,
                                       int64_t now_ms, struct ks_key *key,
                                       char next[KS_REFRESH_MAX], char **err)
{
    sqlite3 *db = ks->sql;
    next[0] = '\0';
    if (!apikey_token_shape_ok(KSS_REFRESH_LEAD, token))
        return KS_SPENT_INVALID;
    uint8_t hash[APIKEY_HASH_LEN];
    apikey_hash(token, strlen(token), hash);
    if (db_begin(db) < 0) {
        kss_err(db, err, "spending a refresh token");
        return KS_SPENT_INVALID;
    }
    sqlite3_stmt *st = kss_prepare(db,
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
    char family[KSS_FAMILY_MAX + 32], key_id[APIKEY_ID_MAX];
    kss_col_text(st, 0, family, sizeof(family));
    kss_col_text(st, 1, key_id, sizeof(key_id));
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
        if (kss_exec(kss_prepare(db, "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", "t",
                                 family)) < 0 ||
            db_commit(db) < 0)
            goto fail;
        return KS_SPENT_REUSED;
    }
    struct ks_key k;
    enum ks_result r = kss_get(ks, key_id, &k, err);
    if (r == KS_ERROR)
        goto fail_err_set;
    if (expires_ms <= now_ms || r == KS_NOT_FOUND || k.state != KS_ACTIVE ||
        (k.expires_ms != 0 && k.expires_ms <= now_ms)) {
        db_rollback(db);
        return KS_SPENT_INVALID;
    }
    if (kss_exec(kss_prepare(db, "UPDATE refresh_tokens SET spent_ms = ? WHERE hash = ?", "ih",
                             now_ms, hash)) < 0)
        goto fail;
    if (kss_refresh_insert(db, key_id, family, ttl_ms, now_ms, next, err) < 0) {
        if (next[0])
            goto fail;
        goto fail_err_set;
    }
    if (db_commit(db) < 0)
        goto fail;
    *key = k;
    return KS_SPENT_OK;
fail:
    kss_err(db, err, "spending a refresh token");
fail_err_set:
    db_rollback(db);
    next[0] = '\0';
    return KS_SPENT_INVALID;
}

/* ---- the connection ------------------------------------------------------ */

static int kss_open(struct ks_db *ks, const struct ks_open_opts *o, char **err)
{
    ks->sql = db_open(o->data_dir, err);
    return ks->sql ? 0 : -1;
}

static void kss_close(struct ks_db *ks)
{
    if (ks->sql)
        db_close(ks->sql);
    ks->sql = NULL;
}

static int64_t kss_version(struct ks_db *ks)
{
    /* Moves when another connection commits. */
    int64_t v = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->sql, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void kss_touch_many(struct ks_db *ks, const char *const *ids, const int64_t *when, int n)
{
    /* Last-use times are informative: a failed batch is dropped, not retried. */
    if (db_begin(ks->sql) < 0)
        return;
    for (int i = 0; i < n; i++)
        kss_touch(ks->sql, ids[i], when[i]);
    if (db_commit(ks->sql) < 0)
        db_rollback(ks->sql);
}

const struct ks_ops ks_sqlite_ops = {
    .open = kss_open,
    .close = kss_close,
    .version = kss_version,
    .create = kss_create,
    .get = kss_get,
    .list = kss_list,
    .rotate = kss_rotate,
    .revoke = kss_revoke,
    .update = kss_update,
    .touch_many = kss_touch_many,
    .each_active = kss_each_active,
    .refresh_issue = kss_refresh_issue,
    .refresh_spend = kss_refresh_spend,
    .put = kss_put,
};
