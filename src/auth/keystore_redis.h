#ifndef SLUICE_KEYSTORE_REDIS_H
#define SLUICE_KEYSTORE_REDIS_H
/* The key store on Redis (store.backend: redis): the same records and
 * semantics as the SQLite store of keystore_sqlite.c, so a fleet on several
 * machines shares its API keys. The rest of sluice reaches it only through
 * keystore.h's ks_* functions and ks_redis_ops (keystore_backend.h), which
 * hold the connection and call the ksr_* functions below; these take a
 * connection and a prefix so that their unit tests can call them directly.
 * Synchronous hiredis on the caller's connection (the CLI's, or the
 * gateway's key thread's).
 *
 * Layout, under <prefix> (store.redis.prefix):
 *   <prefix>key:<id>            hash: the ks_key fields, and seq (the version
 *                                its creation made: orders keys created in
 *                                the same millisecond)
 *   <prefix>keys                sorted set: key ids by created_ms (newest first = ZREVRANGE)
 *   <prefix>secret:<hex sha256> hash: key_id, valid_until_ms (0: as long as the key), prefix
 *   <prefix>keysecrets:<id>     set: the hex hashes of the key's secrets
 *   <prefix>refresh:<hex sha256> hash: family, key_id, created_ms, expires_ms, spent_ms, revoked
 *                                (PEXPIREAT its expiry)
 *   <prefix>family:<family>     set: hex hashes of the family's tokens
 *   <prefix>keys:epoch          string: a random value set (SET NX) when the store is
 *                                first used; gone or another after Redis lost its data
 *   <prefix>keys:version        integer, INCR'd by every change of a key (create,
 *                                rotate, revoke, update; not last-use times or refresh
 *                                tokens, which no keyring holds); readers poll it
 * Every such change is also PUBLISHed on <prefix>events as
 *   {"type": "keys", "id": "<key id>", "change": "created|rotated|revoked|updated|imported"}.
 * Multi-step changes run as one Lua script (EVAL) so they are atomic. */

#include <hiredis/hiredis.h>

#include "auth/keystore.h"

enum ks_result ksr_create(redisContext *rc, const char *prefix, const struct ks_new *req,
                          int64_t now_ms, struct ks_key *out, char secret[APIKEY_SECRET_MAX],
                          char **err);
enum ks_result ksr_get(redisContext *rc, const char *prefix, const char *id, struct ks_key *out,
                       char **err);
enum ks_result ksr_list(redisContext *rc, const char *prefix, struct ks_key **out, int *n,
                        char **err);
enum ks_result ksr_rotate(redisContext *rc, const char *prefix, const char *id, int64_t grace_ms,
                          int64_t now_ms, struct ks_key *out, char secret[APIKEY_SECRET_MAX],
                          char **err);
enum ks_result ksr_revoke(redisContext *rc, const char *prefix, const char *id, int64_t now_ms,
                          struct ks_key *out, char **err);
enum ks_result ksr_update(redisContext *rc, const char *prefix, const char *id,
                          const struct ks_update *u, struct ks_key *out, char **err);
void ksr_touch(redisContext *rc, const char *prefix, const char *id, int64_t when_ms);
/* ksr_touch for <n> keys at once (one EVAL per 512), for the keyring's
 * flush of last-use times. */
void ksr_touch_many(redisContext *rc, const char *prefix, const char *const *ids,
                    const int64_t *when_ms, int n);
enum ks_result ksr_each_active(redisContext *rc, const char *prefix, int64_t now_ms, ks_each_fn fn,
                               void *arg, char **err);
enum ks_result ksr_refresh_issue(redisContext *rc, const char *prefix, const char *key_id,
                                 const char *family, int64_t ttl_ms, int64_t now_ms,
                                 char token[KS_REFRESH_MAX], char **err);
enum ks_spend ksr_refresh_spend(redisContext *rc, const char *prefix, const char *token,
                                int64_t ttl_ms, int64_t now_ms, struct ks_key *key,
                                char next[KS_REFRESH_MAX], char **err);
/* ks_put on Redis: compares with the key as stored, then writes it whole
 * in one script. */
enum ks_result ksr_put(redisContext *rc, const char *prefix, const struct ks_key *k,
                       const struct ks_secret *secrets, int n, bool force, char **err);
/* <prefix>keys:epoch, set to a random value first when absent (ks_epoch). */
enum ks_result ksr_epoch(redisContext *rc, const char *prefix, char out[KS_EPOCH_MAX], char **err);
enum ks_result ksr_set_epoch(redisContext *rc, const char *prefix, const char *epoch, char **err);
/* A warning when Redis persists nothing (no AOF, no RDB save points) and
 * holds keys under <prefix> (malloc'd), else NULL; NULL too when CONFIG is
 * refused. <conf> names the server in the message. */
char *ksr_advice(redisContext *rc, const char *prefix, const struct rds_config *conf);
/* The value of <prefix>keys:version (0 when absent), or -1 when Redis cannot
 * be read. */
int64_t ksr_version(redisContext *rc, const char *prefix);

#endif
