/* The in-memory keyring: two open-addressing tables over one array of keys,
 * one by secret hash, one by key id. Built whole on every change; keys are
 * few and change rarely, and a whole build has no partial state to get
 * wrong. */
#include "auth/keyring.h"

#include <string.h>
#include <sys/socket.h>

#include "auth/keysnap.h"
#include "util/mem.h"
#include "util/str.h"

struct keyring_slot {
    uint8_t hash[APIKEY_HASH_LEN];
    int64_t valid_until_ms; /* 0: as long as the key */
    int key;                /* index into keys; -1: empty */
};

struct keyring {
    int refs; /* atomic */
    struct keyring_key *keys;
    int n_keys, cap_keys;
    struct keyring_slot *secrets; /* power-of-two size, at most half full */
    size_t secrets_mask;
    int *by_id; /* key indexes; -1: empty; same sizing */
    size_t id_mask;
};

/* SHA-256 outputs are uniform: their first bytes are the hash. */
static size_t keyring_hash_slot(const uint8_t *hash)
{
    uint64_t v;
    memcpy(&v, hash, sizeof(v));
    return (size_t)v;
}

/* FNV-1a: ids are ours ("key_" + random hex), not attacker-chosen. */
static size_t keyring_id_slot(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ull;
    return (size_t)h;
}

static size_t keyring_table_size(size_t n)
{
    size_t size = 16;
    while (size < n * 2)
        size *= 2;
    return size;
}

struct keyring *keyring_empty(void)
{
    struct keyring *kr = sl_calloc(1, sizeof(*kr));
    kr->refs = 1;
    kr->secrets_mask = kr->id_mask = 15;
    kr->secrets = sl_calloc(16, sizeof(*kr->secrets));
    kr->by_id = sl_malloc(16 * sizeof(*kr->by_id));
    for (int i = 0; i < 16; i++) {
        kr->secrets[i].key = -1;
        kr->by_id[i] = -1;
    }
    return kr;
}

struct keyring_build {
    struct keyring *kr;
    struct ks_secret *secrets; /* flattened, with their key's index */
    int *secret_key;
    int n_secrets, cap_secrets;
    const struct keyring *prev;
    int64_t now_ms;
    enum lim_algorithm default_algo;
};

/* Per-key limits as the store keeps them, "100/h, 10/s"; a string that no
 * longer parses (written by an older version) leaves the tier's limits. */
static void keyring_parse_limits(struct keyring_key *k, const char *text,
                                 enum lim_algorithm default_algo)
{
    const char *why;
    int n = lim_parse_list(text, k->limits, SL_MAX_LIMITS_PER_LIST, &why);
    k->n_limits = n < 0 ? 0 : n;
    for (int i = 0; i < k->n_limits; i++)
        if (k->limits[i].algorithm == LIM_DEFAULT)
            k->limits[i].algorithm = default_algo;
}

/* A key's allow_ips as the store keeps them; a text that does not parse
 * (the stores check it on the way in) admits no address rather than all:
 * the key was meant to be restricted. */
static void keyring_parse_allow_ips(struct keyring_key *k, const char *text)
{
    char why[160];
    k->n_allow_ips = ks_allow_ips_parse(text, k->allow_ips, why, sizeof why);
    if (k->n_allow_ips < 0) {
        memset(&k->allow_ips[0], 0, sizeof k->allow_ips[0]);
        k->allow_ips[0].family = AF_UNSPEC;
        k->n_allow_ips = 1;
    }
}

static void keyring_add(const struct ks_key *rec, const struct ks_secret *secrets, int n, void *arg)
{
    struct keyring_build *b = arg;
    struct keyring *kr = b->kr;
    if (kr->n_keys == kr->cap_keys) {
        kr->cap_keys = kr->cap_keys ? kr->cap_keys * 2 : 16;
        kr->keys = sl_realloc(kr->keys, (size_t)kr->cap_keys * sizeof(*kr->keys));
    }
    struct keyring_key *k = &kr->keys[kr->n_keys];
    memset(k, 0, sizeof(*k));
    str_copy(k->id, sizeof(k->id), rec->id);
    str_copy(k->tier, sizeof(k->tier), rec->tier);
    str_copy(k->scopes, sizeof(k->scopes), rec->scopes);
    str_copy(k->prefix, sizeof(k->prefix), rec->prefix);
    str_copy(k->owner, sizeof(k->owner), rec->owner);
    keyring_parse_limits(k, rec->limits, b->default_algo);
    keyring_parse_allow_ips(k, rec->allow_ips);
    k->quota_daily = rec->quota_daily;
    k->quota_monthly = rec->quota_monthly;
    k->expires_ms = rec->expires_ms;
    str_copy(k->signing, sizeof(k->signing), rec->signing);
    k->last_used_ms = k->flushed_ms = rec->last_used_ms;
    if (b->prev) {
        const struct keyring_key *old = keyring_find_id(b->prev, rec->id, b->now_ms);
        if (old) {
            int64_t seen = __atomic_load_n(&old->last_used_ms, __ATOMIC_RELAXED);
            if (seen > k->last_used_ms)
                k->last_used_ms = seen;
        }
    }
    for (int i = 0; i < n; i++) {
        if (b->n_secrets == b->cap_secrets) {
            b->cap_secrets = b->cap_secrets ? b->cap_secrets * 2 : 16;
            b->secrets = sl_realloc(b->secrets, (size_t)b->cap_secrets * sizeof(*b->secrets));
            b->secret_key =
                sl_realloc(b->secret_key, (size_t)b->cap_secrets * sizeof(*b->secret_key));
        }
        b->secrets[b->n_secrets] = secrets[i];
        b->secret_key[b->n_secrets++] = kr->n_keys;
    }
    kr->n_keys++;
}

static void keyring_index(struct keyring *kr, const struct keyring_build *b)
{
    size_t ssize = keyring_table_size((size_t)b->n_secrets);
    size_t isize = keyring_table_size((size_t)kr->n_keys);
    free(kr->secrets);
    free(kr->by_id);
    kr->secrets = sl_calloc(ssize, sizeof(*kr->secrets));
    kr->by_id = sl_malloc(isize * sizeof(*kr->by_id));
    kr->secrets_mask = ssize - 1;
    kr->id_mask = isize - 1;
    for (size_t i = 0; i < ssize; i++)
        kr->secrets[i].key = -1;
    for (size_t i = 0; i < isize; i++)
        kr->by_id[i] = -1;
    for (int i = 0; i < b->n_secrets; i++) {
        size_t at = keyring_hash_slot(b->secrets[i].hash) & kr->secrets_mask;
        while (kr->secrets[at].key >= 0)
            at = (at + 1) & kr->secrets_mask;
        memcpy(kr->secrets[at].hash, b->secrets[i].hash, APIKEY_HASH_LEN);
        kr->secrets[at].valid_until_ms = b->secrets[i].valid_until_ms;
        kr->secrets[at].key = b->secret_key[i];
    }
    for (int i = 0; i < kr->n_keys; i++) {
        size_t at = keyring_id_slot(kr->keys[i].id) & kr->id_mask;
        while (kr->by_id[at] >= 0)
            at = (at + 1) & kr->id_mask;
        kr->by_id[at] = i;
    }
}

struct keyring *keyring_build(struct ks_db *db, int64_t now_ms, const struct keyring *prev,
                              enum lim_algorithm default_algo, char **err)
{
    struct keyring *kr = keyring_empty();
    struct keyring_build b = {
        .kr = kr, .prev = prev, .now_ms = now_ms, .default_algo = default_algo};
    enum ks_result rc = ks_each_active(db, now_ms, keyring_add, &b, err);
    if (rc == KS_OK)
        keyring_index(kr, &b);
    free(b.secrets);
    free(b.secret_key);
    if (rc != KS_OK) {
        keyring_unref(kr);
        return NULL;
    }
    return kr;
}

struct keyring *keyring_from_snap(const struct keysnap *s, int64_t now_ms,
                                  const struct keyring *prev, enum lim_algorithm default_algo)
{
    struct keyring *kr = keyring_empty();
    struct keyring_build b = {
        .kr = kr, .prev = prev, .now_ms = now_ms, .default_algo = default_algo};
    keysnap_each(s, now_ms, keyring_add, &b);
    keyring_index(kr, &b);
    free(b.secrets);
    free(b.secret_key);
    return kr;
}

void keyring_ref(struct keyring *kr)
{
    __atomic_add_fetch(&kr->refs, 1, __ATOMIC_RELAXED);
}

void keyring_unref(struct keyring *kr)
{
    if (!kr || __atomic_sub_fetch(&kr->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(kr->keys);
    free(kr->secrets);
    free(kr->by_id);
    free(kr);
}

int keyring_size(const struct keyring *kr)
{
    return kr->n_keys;
}

static bool keyring_live(const struct keyring_key *k, int64_t now_ms)
{
    return k->expires_ms == 0 || k->expires_ms > now_ms;
}

struct keyring_key *keyring_find_secret(const struct keyring *kr,
                                        const uint8_t hash[APIKEY_HASH_LEN], int64_t now_ms)
{
    size_t at = keyring_hash_slot(hash) & kr->secrets_mask;
    for (; kr->secrets[at].key >= 0; at = (at + 1) & kr->secrets_mask) {
        const struct keyring_slot *s = &kr->secrets[at];
        /* Constant time over the 32 bytes: a timing difference would tell
         * how much of a guessed hash matched. */
        if (!str_ct_eq((const char *)s->hash, APIKEY_HASH_LEN, (const char *)hash, APIKEY_HASH_LEN))
            continue;
        struct keyring_key *k = &kr->keys[s->key];
        if ((s->valid_until_ms && s->valid_until_ms <= now_ms) || !keyring_live(k, now_ms))
            return NULL;
        return k;
    }
    return NULL;
}

struct keyring_key *keyring_find_id(const struct keyring *kr, const char *id, int64_t now_ms)
{
    size_t at = keyring_id_slot(id) & kr->id_mask;
    for (; kr->by_id[at] >= 0; at = (at + 1) & kr->id_mask) {
        struct keyring_key *k = &kr->keys[kr->by_id[at]];
        if (strcmp(k->id, id) == 0)
            return keyring_live(k, now_ms) ? k : NULL;
    }
    return NULL;
}

void keyring_touch(struct keyring_key *k, int64_t now_ms)
{
    if (now_ms - __atomic_load_n(&k->last_used_ms, __ATOMIC_RELAXED) >= 1000)
        __atomic_store_n(&k->last_used_ms, now_ms, __ATOMIC_RELAXED);
}

void keyring_flush_last_used(struct keyring *kr, struct ks_db *db)
{
    const char **ids = sl_malloc(sizeof(*ids) * (size_t)(kr->n_keys + 1));
    int64_t *when = sl_malloc(sizeof(*when) * (size_t)(kr->n_keys + 1));
    struct keyring_key **keys = sl_malloc(sizeof(*keys) * (size_t)(kr->n_keys + 1));
    int n = 0;
    for (int i = 0; i < kr->n_keys; i++) {
        struct keyring_key *k = &kr->keys[i];
        int64_t seen = __atomic_load_n(&k->last_used_ms, __ATOMIC_RELAXED);
        if (seen <= k->flushed_ms)
            continue;
        ids[n] = k->id;
        when[n] = seen;
        keys[n++] = k;
    }
    if (n)
        ks_touch_many(db, ids, when, n);
    for (int i = 0; i < n; i++)
        keys[i]->flushed_ms = when[i];
    free(ids);
    free(when);
    free(keys);
}

void keyring_holder_init(struct keyring_holder *h, struct keyring *first)
{
    pthread_mutex_init(&h->lock, NULL);
    h->cur = first;
    h->gen = 1;
}

void keyring_holder_release(struct keyring_holder *h)
{
    keyring_unref(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->lock);
}

void keyring_publish(struct keyring_holder *h, struct keyring *kr)
{
    pthread_mutex_lock(&h->lock);
    struct keyring *old = h->cur;
    h->cur = kr;
    __atomic_add_fetch(&h->gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->lock);
    keyring_unref(old);
}

struct keyring *keyring_current(struct keyring_holder *h)
{
    pthread_mutex_lock(&h->lock);
    struct keyring *kr = h->cur;
    keyring_ref(kr);
    pthread_mutex_unlock(&h->lock);
    return kr;
}

void keyring_sync(struct keyring_holder *h, struct keyring **kr, uint64_t *gen)
{
    uint64_t g = __atomic_load_n(&h->gen, __ATOMIC_ACQUIRE);
    if (g == *gen && *kr)
        return;
    pthread_mutex_lock(&h->lock);
    struct keyring *cur = h->cur;
    keyring_ref(cur);
    *gen = __atomic_load_n(&h->gen, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&h->lock);
    keyring_unref(*kr);
    *kr = cur;
}
