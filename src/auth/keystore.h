#ifndef SLUICE_KEYSTORE_H
#define SLUICE_KEYSTORE_H
/* API key records and refresh tokens in the key store (SPEC 5.1, 5.2),
 * SQLite or Redis. Functions take a connection and run synchronously: the
 * CLI calls them on its own connection, the gateway on its writer thread.
 * Secrets never reach the store, only their SHA-256; a key may have several
 * valid secrets (the new one and, during a rotation's grace, the old). */

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/apikey.h"
#include "auth/keyips.h"
#include "store/redis.h"
#include "util/limits.h"

#define KS_NAME_MAX 129
#define KS_TIER_MAX 65
#define KS_SCOPES_MAX 512     /* space-separated */
#define KS_LIMITS_MAX 800     /* limit strings joined with ", " */
#define KS_SIGNING_MAX 128    /* a sealed signing secret (util/seal.h: 123 characters) */
#define KS_SIGNING_HEX_MAX 65 /* a signing secret as shown once: 64 hex digits */

enum ks_state { KS_ACTIVE, KS_REVOKED };

struct ks_key {
    char id[APIKEY_ID_MAX];
    char name[KS_NAME_MAX];
    char owner[KS_NAME_MAX];
    char tier[KS_TIER_MAX];
    char scopes[KS_SCOPES_MAX];
    char limits[KS_LIMITS_MAX];     /* per-key overrides of the tier's limits; "" none */
    char prefix[APIKEY_PREFIX_MAX]; /* of the newest secret */
    int64_t quota_monthly;          /* -1: none, the tier's applies (SPEC 6.1) */
    int64_t quota_daily;            /* -1: none, the tier's applies */
    int64_t expires_ms;             /* 0: never; wall clock, ms since the epoch */
    int64_t created_ms;
    int64_t last_used_ms;     /* 0: never */
    int64_t revoked_ms;       /* 0: not revoked */
    int64_t rotated_until_ms; /* an older secret stays valid until then; 0: none */
    enum ks_state state;
    /* The signing secret (SPEC 7.2), sealed under store.encryption_key with
     * the id bound (util/seal.h); "": the key cannot sign. Never shown. */
    char signing[KS_SIGNING_MAX];
    char allow_ips[KS_ALLOW_IPS_MAX]; /* auth/keyips.h; "": from anywhere (SPEC 7.1) */
};

/* What `keys create` and POST /keys ask for; validated by the caller
 * (tier exists, limits parse). Strings may be NULL for "none". */
struct ks_new {
    const char *env; /* NULL: "live" */
    const char *name, *owner, *tier, *scopes, *limits;
    int64_t quota_monthly, quota_daily; /* -1: none */
    int64_t expires_ms;                 /* 0: never */
    /* A signing key: the id its secret was sealed for (ks_signing_new) and
     * the sealed secret. NULL: a new random id, no signing secret. */
    const char *id, *signing;
    const char *allow_ips; /* checked by ks_allow_ips_join; NULL or "": anywhere */
};

/* A new signing secret for key <id>: 32 random bytes, into <hex> as the
 * 64 hex digits shown once, and sealed under <enc_key> for <id> into
 * <sealed>. 0, or -1 (the random generator failed). */
int ks_signing_new(const uint8_t enc_key[32], const char *id, char hex[KS_SIGNING_HEX_MAX],
                   char sealed[KS_SIGNING_MAX]);

/* The largest quota a key may have: 2^53, the largest integer a JSON
 * number (a double to most parsers) holds exactly. */
#define KS_QUOTA_MAX (1LL << 53)
/* Is <v> a key's quota: -1 (none) or 1..KS_QUOTA_MAX? */
bool ks_quota_ok(int64_t v);

/* What `keys update` and PATCH /keys/{id} change (SPEC 6.2). A NULL string
 * or a false set_* leaves its field as it is; "" clears the name, the
 * owner, the scopes, or the limits (the tier's apply again). Validated by
 * the caller against the config (the tier exists, limits parse); the store
 * checks lengths and quotas (ks_quota_ok) again. */
struct ks_update {
    const char *name, *owner, *tier, *scopes, *limits;
    bool set_quota_monthly, set_quota_daily;
    int64_t quota_monthly, quota_daily; /* -1: none, the tier's applies */
    const char *signing;   /* a new sealed signing secret (ks_signing_new); "": none any more */
    const char *allow_ips; /* "": from anywhere again */
};
/* Does <u> change nothing at all? */
bool ks_update_empty(const struct ks_update *u);

/* Where the records are: SQLite under a data directory (the memory
 * backend), or Redis (so that a fleet on several machines shares its keys;
 * see keystore_redis.h). Each function below works on either, through the
 * backend's struct ks_ops (keystore_backend.h). One connection, one thread
 * at a time. */
enum ks_backend { KS_SQLITE = 0, KS_REDIS };

/* What ks_open needs, built by the caller (from store.* of its config). */
struct ks_open_opts {
    enum ks_backend backend;
    const char *data_dir;     /* KS_SQLITE: db_open's directory */
    struct rds_config redis;  /* KS_REDIS: where */
    const char *redis_prefix; /* KS_REDIS: of every Redis key ("": none) */
};

struct ks_ops;
struct ksr_conn;
struct ks_db {
    const struct ks_ops *ops; /* NULL: SQLite on <sql> (a db_open connection wrapped by hand) */
    union {                   /* the backend's state */
        sqlite3 *sql;
        struct ksr_conn *redis;
    };
    int64_t version; /* ks_changed's mark */
};

/* Opens the store <o> describes. 0, or -1 with *<err> (malloc'd). A store
 * on a server (Redis) opens even while the server is away: it connects on
 * the first call that needs it, and calls fail with KS_UNAVAILABLE until it
 * answers. */
int ks_open(struct ks_db *db, const struct ks_open_opts *o, char **err);
void ks_close(struct ks_db *db);
/* Has anyone (another process, another gateway) changed the records since
 * the last call? The first call says true. Errors say true too: a reload
 * costs less than a missed revocation. */
bool ks_changed(struct ks_db *db);

/* Outcome of the calls below; <err> details KS_ERROR, KS_UNAVAILABLE and
 * KS_CONFLICT (malloc'd). */
enum ks_result {
    KS_OK = 0,
    KS_NOT_FOUND,
    KS_ERROR,
    KS_UNAVAILABLE, /* the store cannot be reached now (Redis away): try later */
    KS_CONFLICT,    /* ks_put: the key exists with other data */
};

/* Creates a key at <now_ms>: fills <out> and the secret (shown once). */
enum ks_result ks_create(struct ks_db *db, const struct ks_new *req, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err);
enum ks_result ks_get(struct ks_db *db, const char *id, struct ks_key *out, char **err);
/* All keys, newest first; *<out> is malloc'd (free it), *<n> its length. */
enum ks_result ks_list(struct ks_db *db, struct ks_key **out, int *n, char **err);
/* A new secret for key <id>; the current ones stay valid for <grace_ms>
 * (0: they stop now). A revoked key cannot be rotated (KS_NOT_FOUND). */
enum ks_result ks_rotate(struct ks_db *db, const char *id, int64_t grace_ms, int64_t now_ms,
                         struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err);
/* Revokes key <id> and every secret and refresh token of it. Revoking a
 * revoked key is KS_OK (idempotent, as DELETE should be). */
enum ks_result ks_revoke(struct ks_db *db, const char *id, int64_t now_ms, struct ks_key *out,
                         char **err);
/* Changes key <id> as <u> says, all at once (a reader sees the whole change
 * or none of it), and fills <out> with the result. An unknown or revoked key
 * is KS_NOT_FOUND. Gateways see the change the way they see a revocation
 * (ks_changed moves): a tier, limit or quota change applies from their next
 * look at the store. */
enum ks_result ks_update(struct ks_db *db, const char *id, const struct ks_update *u,
                         struct ks_key *out, char **err);
/* Records last use of key <id> at <when_ms> (only moves forward). */
void ks_touch(struct ks_db *db, const char *id, int64_t when_ms);
/* The same for <n> keys at once (one transaction on SQLite). */
void ks_touch_many(struct ks_db *db, const char *const *ids, const int64_t *when, int n);

/* One valid secret of an active key, as the gateway's in-memory keyring
 * holds it. */
struct ks_secret {
    uint8_t hash[APIKEY_HASH_LEN];
    int64_t valid_until_ms; /* 0: as long as the key */
};
/* Calls <fn> once per active, unexpired (at <now_ms>) key with its valid
 * secrets. */
typedef void (*ks_each_fn)(const struct ks_key *k, const struct ks_secret *secrets, int n,
                           void *arg);
enum ks_result ks_each_active(struct ks_db *db, int64_t now_ms, ks_each_fn fn, void *arg,
                              char **err);

/* Writes key <k> with its valid secrets <secrets> (<n>) as they are, with
 * the same id, times and hashes (`keys import`: re-seeding a store that
 * lost its data). A key already stored with the same record and secrets is
 * KS_OK (nothing changes); with other data it is KS_CONFLICT, unless
 * <force>, which replaces it. Last-use times are not compared. */
enum ks_result ks_put(struct ks_db *db, const struct ks_key *k, const struct ks_secret *secrets,
                      int n, bool force, char **err);
/* Do two records describe the same key (last use aside)? And the same
 * secrets, in any order? */
bool ks_same_key(const struct ks_key *a, const struct ks_key *b);
bool ks_same_secrets(const struct ks_secret *a, int na, const struct ks_secret *b, int nb);

/* The epoch: a random value a store that can lose its data behind the
 * gateways' back (a Redis restarted without persistence) is marked with
 * when first used. A gateway remembers the epoch its keys came from; when
 * the store's epoch is gone or another, the store lost the keys, and the
 * gateway keeps the ones it knew (see service.c). A store that cannot lose
 * its data alone (SQLite: a file under data_dir) has none: "". */
#define KS_EPOCH_MAX 40
/* The store's epoch into <out>, set to a new random value first when the
 * store has none. KS_OK, or KS_UNAVAILABLE / KS_ERROR. */
enum ks_result ks_epoch(struct ks_db *db, char out[KS_EPOCH_MAX], char **err);
/* Sets the store's epoch to <epoch> (keys import restores the one the keys
 * came from, so that gateways that remember it trust the store again). */
enum ks_result ks_set_epoch(struct ks_db *db, const char *epoch, char **err);

enum ks_epoch_state {
    KS_EPOCH_SAME, /* the store is the one the keys came from */
    KS_EPOCH_NEW,  /* nothing was known: adopt the store's */
    KS_EPOCH_LOST, /* the store's epoch is gone or another: it lost its data */
};
/* What the store's epoch <now> says, to a reader that knew <known> ("":
 * none). Pure. */
enum ks_epoch_state ks_epoch_check(const char *known, const char *now);

/* Does the store live on a server that can be away or lose its data
 * (Redis)? Then a gateway keeps a snapshot of its keyring on disk
 * (keysnap.h). */
bool ks_is_remote(const struct ks_db *db);
/* A warning about how the store is run, for the log (malloc'd), or NULL:
 * e.g. a Redis that keeps API keys but persists nothing. */
char *ks_advice(struct ks_db *db);

/* The key as JSON for the CLI and the admin API (never a secret or hash). */
json_t *ks_key_json(const struct ks_key *k);

/* Refresh tokens: "rt_<43 base62>", stored hashed with a family (the chain
 * of rotations one /auth/token started) and single use. */
#define KS_REFRESH_MAX 64

/* A new refresh token for key <key_id> in <family> (NULL: a new family),
 * valid for <ttl_ms>. */
enum ks_result ks_refresh_issue(struct ks_db *db, const char *key_id, const char *family,
                                int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                char **err);

enum ks_spend {
    KS_SPENT_OK,      /* it was valid: it is now spent, and *<key> is its (active) key */
    KS_SPENT_INVALID, /* unknown, expired, or its key is revoked or expired */
    KS_SPENT_REUSED,  /* already spent: the whole family is now revoked */
};
/* Spends refresh token <token> and, when it was valid, issues its successor
 * in the same family into <next>; all in one transaction. A store failure
 * is KS_SPENT_INVALID with *<err> set (malloc'd); otherwise *<err> is left
 * alone. */
enum ks_spend ks_refresh_spend(struct ks_db *db, const char *token, int64_t ttl_ms, int64_t now_ms,
                               struct ks_key *key, char next[KS_REFRESH_MAX], char **err);

#endif
