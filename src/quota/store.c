/* The quota counts of this node (see store.h for the contract).
 *
 * A quota entry lives for a month and is touched at most once per request
 * of its identity, so the layout is plain: shards of chained hash tables
 * with one malloc'd entry each (about 100 bytes with its key), keyed by
 * SipHash under a random per-process key (no hash flooding). */
#include "quota/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/lock.h"
#include "util/mem.h"
#include "util/siphash.h"

#define QS_SHARDS 64 /* a power of two */
#define QS_MIN_BUCKETS 16

struct qs_entry {
    struct qs_entry *next;
    struct qs_entry *next_dirty; /* the shard's dirty list, while <dirty> */
    uint64_t hash;
    struct quota_usage usage;
    bool dirty;
    uint8_t len;
    char identity[];
};

struct qs_shard {
    pthread_mutex_t lock;
    struct qs_entry **buckets;
    uint32_t n_buckets, n_entries;
    /* entries changed since the last write-behind: the writer visits
     * these, not the whole table */
    struct qs_entry *dirty;
};

struct quota_store {
    struct siphash_key key;
    uint64_t max_entries;
    _Atomic uint64_t entries, untracked;
    struct qs_shard shards[QS_SHARDS];
};

struct quota_store *quota_store_new(uint64_t max_entries)
{
    struct quota_store *st = sl_calloc(1, sizeof(*st));
    siphash_key_random(&st->key);
    st->max_entries = max_entries ? max_entries : 1;
    for (int i = 0; i < QS_SHARDS; i++) {
        struct qs_shard *sh = &st->shards[i];
        sl_mutex_init_adaptive(&sh->lock);
        sh->n_buckets = QS_MIN_BUCKETS;
        sh->buckets = sl_calloc(sh->n_buckets, sizeof(*sh->buckets));
    }
    return st;
}

void quota_store_free(struct quota_store *st)
{
    if (!st)
        return;
    for (int i = 0; i < QS_SHARDS; i++) {
        struct qs_shard *sh = &st->shards[i];
        for (uint32_t b = 0; b < sh->n_buckets; b++) {
            struct qs_entry *e = sh->buckets[b], *next;
            for (; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(st);
}

static size_t qs_len(const char *identity)
{
    return strnlen(identity, QUOTA_IDENTITY_MAX - 1);
}

static struct qs_shard *qs_shard_of(struct quota_store *st, uint64_t hash)
{
    return &st->shards[(hash >> 32) & (QS_SHARDS - 1)];
}

static struct qs_entry **qs_slot(struct qs_shard *sh, uint64_t hash, const char *identity,
                                 size_t len)
{
    struct qs_entry **p = &sh->buckets[hash & (sh->n_buckets - 1)];
    for (; *p; p = &(*p)->next) {
        struct qs_entry *e = *p;
        if (e->hash == hash && e->len == len && memcmp(e->identity, identity, len) == 0)
            return p;
    }
    return p;
}

static void qs_mark_dirty(struct qs_shard *sh, struct qs_entry *e)
{
    if (e->dirty)
        return;
    e->dirty = true;
    e->next_dirty = sh->dirty;
    sh->dirty = e;
}

static void qs_grow(struct qs_shard *sh)
{
    uint32_t n = sh->n_buckets * 2;
    struct qs_entry **b = sl_calloc(n, sizeof(*b));
    for (uint32_t i = 0; i < sh->n_buckets; i++) {
        struct qs_entry *e = sh->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            struct qs_entry **head = &b[e->hash & (n - 1)];
            e->next = *head;
            *head = e;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->n_buckets = n;
}

/* A new entry at <slot> (the end of its chain), or NULL when the store is
 * full. Under the shard's lock. */
static struct qs_entry *qs_insert(struct quota_store *st, struct qs_shard *sh,
                                  struct qs_entry **slot, uint64_t hash, const char *identity,
                                  size_t len)
{
    if (atomic_fetch_add(&st->entries, 1) >= st->max_entries) {
        atomic_fetch_sub(&st->entries, 1);
        return NULL;
    }
    struct qs_entry *e = sl_calloc(1, sizeof(*e) + len + 1);
    e->hash = hash;
    e->len = (uint8_t)len;
    memcpy(e->identity, identity, len);
    *slot = e;
    if (++sh->n_entries > sh->n_buckets)
        qs_grow(sh);
    return e;
}

bool quota_store_decide(struct quota_store *st, struct quota_req *q, bool (*also)(void *arg),
                        void *arg)
{
    size_t len = qs_len(q->identity);
    uint64_t hash = siphash24(&st->key, q->identity, len);
    struct qs_shard *sh = qs_shard_of(st, hash);
    pthread_mutex_lock(&sh->lock);
    struct qs_entry **slot = qs_slot(sh, hash, q->identity, len);
    struct quota_usage u = *slot ? (*slot)->usage : (struct quota_usage){0};
    q->decided = true;
    q->decision =
        quota_decide(&u, &q->limits, &q->day, &q->month, q->cost, q->thresholds, q->n_thresholds);
    q->usage = u;
    if (!q->decision.allowed) {
        pthread_mutex_unlock(&sh->lock);
        return false;
    }
    if (also && !also(arg)) {
        /* refused by the limits: the quota was not charged */
        q->decided = false;
        pthread_mutex_unlock(&sh->lock);
        return false;
    }
    struct qs_entry *e = *slot ? *slot : qs_insert(st, sh, slot, hash, q->identity, len);
    if (e) {
        e->usage = u;
        qs_mark_dirty(sh, e);
    } else {
        atomic_fetch_add(&st->untracked, 1);
    }
    pthread_mutex_unlock(&sh->lock);
    return true;
}

void quota_store_put(struct quota_store *st, const char *identity, const struct quota_usage *u)
{
    size_t len = qs_len(identity);
    uint64_t hash = siphash24(&st->key, identity, len);
    struct qs_shard *sh = qs_shard_of(st, hash);
    pthread_mutex_lock(&sh->lock);
    struct qs_entry **slot = qs_slot(sh, hash, identity, len);
    struct qs_entry *e = *slot ? *slot : qs_insert(st, sh, slot, hash, identity, len);
    if (e)
        e->usage = *u;
    pthread_mutex_unlock(&sh->lock);
}

bool quota_store_get(struct quota_store *st, const char *identity, struct quota_usage *out)
{
    size_t len = qs_len(identity);
    uint64_t hash = siphash24(&st->key, identity, len);
    struct qs_shard *sh = qs_shard_of(st, hash);
    pthread_mutex_lock(&sh->lock);
    struct qs_entry **slot = qs_slot(sh, hash, identity, len);
    bool found = *slot != NULL;
    if (found)
        *out = (*slot)->usage;
    pthread_mutex_unlock(&sh->lock);
    return found;
}

struct quota_row *quota_store_take_dirty(struct quota_store *st, size_t *n)
{
    struct quota_row *rows = NULL;
    size_t used = 0, cap = 0;
    for (int i = 0; i < QS_SHARDS; i++) {
        struct qs_shard *sh = &st->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (struct qs_entry *e = sh->dirty; e; e = e->next_dirty) {
            if (used == cap) {
                cap = cap ? cap * 2 : 64;
                rows = sl_realloc(rows, cap * sizeof(*rows));
            }
            memcpy(rows[used].identity, e->identity, e->len);
            rows[used].identity[e->len] = '\0';
            rows[used].usage = e->usage;
            used++;
            e->dirty = false;
        }
        sh->dirty = NULL;
        pthread_mutex_unlock(&sh->lock);
    }
    *n = used;
    return rows;
}

void quota_store_remark(struct quota_store *st, const struct quota_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = qs_len(rows[i].identity);
        uint64_t hash = siphash24(&st->key, rows[i].identity, len);
        struct qs_shard *sh = qs_shard_of(st, hash);
        pthread_mutex_lock(&sh->lock);
        struct qs_entry *e = *qs_slot(sh, hash, rows[i].identity, len);
        if (e)
            qs_mark_dirty(sh, e);
        pthread_mutex_unlock(&sh->lock);
    }
}

uint64_t quota_store_sweep(struct quota_store *st, int64_t day_start, int64_t month_start)
{
    uint64_t dropped = 0;
    for (int i = 0; i < QS_SHARDS; i++) {
        struct qs_shard *sh = &st->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (uint32_t b = 0; b < sh->n_buckets; b++) {
            struct qs_entry **p = &sh->buckets[b];
            while (*p) {
                struct qs_entry *e = *p;
                if (!e->dirty && e->usage.day_start < day_start &&
                    e->usage.month_start < month_start) {
                    *p = e->next;
                    free(e);
                    sh->n_entries--;
                    dropped++;
                } else {
                    p = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    atomic_fetch_sub(&st->entries, dropped);
    return dropped;
}

void quota_store_stats(struct quota_store *st, struct quota_store_stats *out)
{
    uint64_t bytes = sizeof(*st);
    uint64_t entries = 0;
    for (int i = 0; i < QS_SHARDS; i++) {
        struct qs_shard *sh = &st->shards[i];
        pthread_mutex_lock(&sh->lock);
        bytes += (uint64_t)sh->n_buckets * sizeof(*sh->buckets);
        entries += sh->n_entries;
        pthread_mutex_unlock(&sh->lock);
    }
    /* an entry and its key, rounded up to malloc's 16-byte chunks with
     * their 8-byte header */
    bytes += entries * ((sizeof(struct qs_entry) + 24 + 8 + 15) / 16 * 16);
    out->entries = entries;
    out->bytes = bytes;
    out->untracked = atomic_load(&st->untracked);
}
