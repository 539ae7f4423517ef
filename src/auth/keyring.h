#ifndef SLUICE_KEYRING_H
#define SLUICE_KEYRING_H
/* The gateway's in-memory view of the API keys (ARCHITECTURE.md: "reads
 * needed on the hot path are cached in memory and invalidated on change"):
 * an immutable, reference-counted snapshot built from the store by the
 * writer thread, found by the SHA-256 of a presented secret (or by key id,
 * for access tokens the gateway issued). A request costs one hash of the
 * secret and a table probe; no disk, no lock. */

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/apikey.h"
#include "auth/keystore.h"
#include "limit/limit.h"
#include "util/limits.h"

struct keyring_key {
    char id[APIKEY_ID_MAX];
    char tier[KS_TIER_MAX];
    char scopes[KS_SCOPES_MAX];
    char prefix[APIKEY_PREFIX_MAX];
    char owner[KS_NAME_MAX];                     /* for quota alerts and usage reports */
    struct limit limits[SL_MAX_LIMITS_PER_LIST]; /* per-key overrides; n_limits 0: the tier's */
    int n_limits;
    int64_t quota_daily, quota_monthly; /* per-key quotas; -1: the tier's */
    int64_t expires_ms;                 /* 0: never */
    char signing[KS_SIGNING_MAX];       /* sealed signing secret (util/seal.h); "": none */
    /* The networks the key may be used from (SPEC 7.1); n_allow_ips 0: any. */
    struct cfg_cidr allow_ips[KS_ALLOW_IPS_N];
    int n_allow_ips;
    /* The one mutable field: written (relaxed, at most once a second) by
     * workers, read by the writer thread's batched flush. */
    int64_t last_used_ms;
    int64_t flushed_ms;
};

struct keyring;

/* A snapshot of the keys active at <now_ms>. <prev> (may be NULL) passes on
 * last-use times not yet flushed. <default_algo> resolves limits that name
 * no algorithm. NULL with *<err> (malloc'd) when the store cannot be read. */
struct keyring *keyring_build(struct ks_db *db, int64_t now_ms, const struct keyring *prev,
                              enum lim_algorithm default_algo, char **err);
/* The same from a keysnap <s> (keysnap.h) instead of the store: the keys a
 * gateway serves while its store is away or has lost its data. */
struct keysnap;
struct keyring *keyring_from_snap(const struct keysnap *s, int64_t now_ms,
                                  const struct keyring *prev, enum lim_algorithm default_algo);
/* An empty snapshot (no store yet, tests). */
struct keyring *keyring_empty(void);
void keyring_ref(struct keyring *kr);
void keyring_unref(struct keyring *kr);
int keyring_size(const struct keyring *kr);

/* The key whose valid secret has SHA-256 <hash>, at <now_ms>; NULL when
 * none (unknown, revoked, expired, or past its rotation grace). */
struct keyring_key *keyring_find_secret(const struct keyring *kr,
                                        const uint8_t hash[APIKEY_HASH_LEN], int64_t now_ms);
/* The active, unexpired key with id <id>, or NULL. */
struct keyring_key *keyring_find_id(const struct keyring *kr, const char *id, int64_t now_ms);

/* Note a use of <k> at <now_ms> (cheap: skips when already within a second). */
void keyring_touch(struct keyring_key *k, int64_t now_ms);
/* Writes the last-use times that moved since the last flush, in one
 * transaction (writer thread). */
void keyring_flush_last_used(struct keyring *kr, struct ks_db *db);

/* The current snapshot, shared by workers. Publishing is rare (a key
 * changed); reading is per request, so readers compare a generation number
 * and only lock when it moved. */
struct keyring_holder {
    pthread_mutex_t lock;
    struct keyring *cur;
    uint64_t gen; /* atomic */
};

void keyring_holder_init(struct keyring_holder *h, struct keyring *first);
void keyring_holder_release(struct keyring_holder *h);
/* Make <kr> current (the holder takes the caller's reference). */
void keyring_publish(struct keyring_holder *h, struct keyring *kr);
/* A new reference to the current snapshot. */
struct keyring *keyring_current(struct keyring_holder *h);
/* Refresh a reader's cached snapshot *<kr> (generation *<gen>) when a newer
 * one was published; the fast path is one atomic load. */
void keyring_sync(struct keyring_holder *h, struct keyring **kr, uint64_t *gen);

#endif
