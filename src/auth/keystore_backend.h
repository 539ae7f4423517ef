#ifndef SLUICE_KEYSTORE_BACKEND_H
#define SLUICE_KEYSTORE_BACKEND_H
/* Private to src/auth/keystore*.c: what a key store backend provides
 * (keystore_sqlite.c, keystore_redis.c) and what keystore.c shares with
 * them. keystore.c's ks_* functions call through db->ops; each entry has
 * the semantics of its ks_* function in keystore.h. */

#include "auth/keystore.h"

struct ks_ops {
    /* The store lives on a server that can be away or lose its data. */
    bool remote;
    /* Fills the backend's state in <db> (ops and version are keystore.c's). */
    int (*open)(struct ks_db *db, const struct ks_open_opts *o, char **err);
    void (*close)(struct ks_db *db);
    /* A number that moves whenever anyone changes the records, or -1 when
     * it cannot be read (ks_changed compares it with its last mark). */
    int64_t (*version)(struct ks_db *db);
    enum ks_result (*create)(struct ks_db *db, const struct ks_new *req, int64_t now_ms,
                             struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err);
    enum ks_result (*get)(struct ks_db *db, const char *id, struct ks_key *out, char **err);
    enum ks_result (*list)(struct ks_db *db, struct ks_key **out, int *n, char **err);
    enum ks_result (*rotate)(struct ks_db *db, const char *id, int64_t grace_ms, int64_t now_ms,
                             struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err);
    enum ks_result (*revoke)(struct ks_db *db, const char *id, int64_t now_ms, struct ks_key *out,
                             char **err);
    enum ks_result (*update)(struct ks_db *db, const char *id, const struct ks_update *u,
                             struct ks_key *out, char **err);
    void (*touch_many)(struct ks_db *db, const char *const *ids, const int64_t *when, int n);
    enum ks_result (*each_active)(struct ks_db *db, int64_t now_ms, ks_each_fn fn, void *arg,
                                  char **err);
    enum ks_result (*refresh_issue)(struct ks_db *db, const char *key_id, const char *family,
                                    int64_t ttl_ms, int64_t now_ms, char token[KS_REFRESH_MAX],
                                    char **err);
    enum ks_spend (*refresh_spend)(struct ks_db *db, const char *token, int64_t ttl_ms,
                                   int64_t now_ms, struct ks_key *key, char next[KS_REFRESH_MAX],
                                   char **err);
    enum ks_result (*put)(struct ks_db *db, const struct ks_key *k, const struct ks_secret *secrets,
                          int n, bool force, char **err);
    /* NULL: the store has no epoch ("", and setting it does nothing). */
    enum ks_result (*epoch)(struct ks_db *db, char out[KS_EPOCH_MAX], char **err);
    enum ks_result (*set_epoch)(struct ks_db *db, const char *epoch, char **err);
    /* NULL: nothing to say. */
    char *(*advice)(struct ks_db *db);
};

extern const struct ks_ops ks_sqlite_ops; /* keystore_sqlite.c */
extern const struct ks_ops ks_redis_ops;  /* keystore_redis.c */

/* A one-line error into *<err> (malloc'd, replacing what it held; <err>
 * may be NULL). */
void ks_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The checks of a create request, the same on every backend (its
 * environment into *<env>). */
bool ks_check_new(const struct ks_new *req, const char **env, char **err);
/* The id of a new key: <req>'s preset one (a signing key's), or a new
 * random one. 0, or -1 (the random generator failed). */
int ks_new_id(const struct ks_new *req, char id[APIKEY_ID_MAX]);
/* The checks of an update, the same on every backend. */
bool ks_check_update(const struct ks_update *u, char **err);
/* Applies <u> to the record <k> (checked by ks_check_update). */
void ks_apply_update(struct ks_key *k, const struct ks_update *u);

#endif
