/* The response cache's store (see store.h for the contract).
 *
 * Layout:
 * - the store is 2^k shards, each behind its own lock; a key's shard comes
 *   from the high 32 bits of its SipHash (random key per store: no hash
 *   flooding), its bucket from the low bits, so the two are independent;
 * - a shard holds two tables of the same kind (struct cache_table): the
 *   entries, and the Vary index. A table is a chained hash table that
 *   doubles when it holds more nodes than buckets, a doubly linked LRU list
 *   and a byte count against the table's budget;
 * - an entry is one allocation: the public struct, the table node, the tag
 *   array and every string behind it. So cache_entry_size is exact (plus a
 *   fixed overhead for malloc and the bucket array), and an entry costs one
 *   malloc and one free. The node is embedded, so an entry is stored at
 *   most once, in one store (a second put aborts: that is a bug);
 * - an entry's budget is its shard's share of max_bytes, so the shares add
 *   up to at most max_bytes however keys fall. An entry bigger than the
 *   share is refused;
 * - the store holds one reference per stored entry. Removing an entry from
 *   the table (purge, replacement, eviction) drops that reference after the
 *   lock is released: a reader that took its own reference with get keeps
 *   the entry alive while it writes it to a socket, and freeing a big body
 *   (munmap) never happens under a shard lock. Memory held that way by
 *   readers is on top of max_bytes, for as long as the reads last.
 *
 * The Vary index is bounded in bytes, not in count, since primary keys vary
 * in length: each shard may hold Vary records worth 1/16 of its entry share
 * (at least CACHE_VARY_MIN_BYTES), the least recently used going first. A
 * record is tiny next to a response, and one lost costs one miss (the next
 * response sets it again). Its bytes are not part of stats.bytes. */

#include "cache/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <sys/random.h>
#include <unistd.h>

#include "cache/rules.h"
#include "util/mem.h"
#include "util/lock.h"
#include "util/siphash.h"

/* Bytes charged per entry beyond its allocation: malloc's header and
 * rounding (16-32) and its share of the bucket array (one pointer at load
 * 1, two right after a doubling). */
#define CACHE_ENTRY_OVERHEAD 48
#define CACHE_VARY_OVERHEAD 48
#define CACHE_VARY_MIN_BYTES 4096 /* Vary budget of a shard, whatever the share */
#define CACHE_FIRST_BUCKETS 16    /* buckets of a new table */
#define CACHE_MIN_SHARDS 4
#define CACHE_MAX_SHARDS 256 /* more would only thin the shares */
/* With shards chosen from the cores, fewer shards rather than shares under
 * this: an object bigger than its shard's share cannot be stored, and the
 * default max object size is 8 MiB. */
#define CACHE_MIN_SHARE (16u << 20)

#define cache_container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* A node of a table: an entry or a Vary record. */
struct cache_node {
    struct cache_node *chain;         /* next in the bucket; on a removed node, next removed */
    struct cache_node *newer, *older; /* LRU list */
    uint64_t hash;
    const char *key;
    size_t key_len;
    size_t size; /* bytes charged to the table */
};

struct cache_table {
    struct cache_node **buckets;
    size_t mask; /* buckets - 1, a power of two minus one */
    size_t count;
    uint64_t bytes, max_bytes;
    struct cache_node *newest, *oldest;
};

/* An entry as allocated: the public part first, so a struct cache_entry *
 * is also a struct cache_item *. */
struct cache_item {
    struct cache_entry e;
    struct cache_node node;
    int stored; /* atomic: set by the first put */
};

struct cache_vary {
    struct cache_node node;
    char *names;
    size_t names_len;
};

/* Aligned to a cache line so that two threads locking neighbouring shards do
 * not share one. */
struct cache_shard {
    alignas(64) pthread_mutex_t lock;
    struct cache_table entries;
    struct cache_table vary;
    uint64_t evictions;
};

struct cache_store {
    struct cache_shard *shards;
    unsigned n_shards;
    uint64_t share; /* each shard's entry budget */
    struct siphash_key key;
};

typedef bool (*cache_match_fn)(const struct cache_entry *e, const void *arg, size_t len);

/* <a> + <b>, aborting on overflow: lengths come from upstream responses. */
static size_t cache_add(size_t a, size_t b)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        sl_fatal("sluice: cache entry size overflows\n");
    return r;
}

/* ---- entries ------------------------------------------------------------ */

/* Copies <len> bytes of <s> to <*at> with a NUL after them (so that every
 * field is also a C string) and advances <*at>. */
static char *cache_copy(char **at, const char *s, size_t len)
{
    char *d = *at;
    if (len)
        memcpy(d, s, len);
    d[len] = '\0';
    *at = d + len + 1;
    return d;
}

struct cache_entry *cache_entry_new(const char *key, size_t key_len, const char *url,
                                    size_t url_len, int status, const char *head, size_t head_len,
                                    const char *body, size_t body_len, const char *etag,
                                    int64_t last_modified, const char *const *tags, int n_tags)
{
    size_t etag_len = etag ? strlen(etag) : 0;
    if (n_tags < 0 || (n_tags > 0 && !tags))
        n_tags = 0;

    /* Layout: item, tag pointers, then the strings, each NUL-terminated. */
    size_t n = cache_add(sizeof(struct cache_item), (size_t)n_tags * sizeof(char *));
    n = cache_add(n, cache_add(key_len, 1));
    n = cache_add(n, cache_add(url_len, 1));
    n = cache_add(n, cache_add(head_len, 1));
    n = cache_add(n, cache_add(body_len, 1));
    if (etag)
        n = cache_add(n, etag_len + 1);
    for (int i = 0; i < n_tags; i++)
        n = cache_add(n, strlen(tags[i]) + 1);

    struct cache_item *it = sl_malloc(n);
    memset(it, 0, sizeof(*it));
    struct cache_entry *e = &it->e;
    char **tag_array = (char **)(it + 1);
    char *at = (char *)(tag_array + n_tags);

    e->refs = 1;
    e->key = cache_copy(&at, key, key_len);
    e->key_len = key_len;
    e->url = cache_copy(&at, url, url_len);
    e->url_len = url_len;
    e->status = status;
    e->head = cache_copy(&at, head, head_len);
    e->head_len = head_len;
    e->body = cache_copy(&at, body, body_len);
    e->body_len = body_len;
    e->etag = etag ? cache_copy(&at, etag, etag_len) : NULL;
    e->last_modified = last_modified;
    for (int i = 0; i < n_tags; i++)
        tag_array[i] = cache_copy(&at, tags[i], strlen(tags[i]));
    e->tags = n_tags ? tag_array : NULL;
    e->n_tags = n_tags;

    it->node.key = e->key;
    it->node.key_len = key_len;
    it->node.size = cache_add(n, CACHE_ENTRY_OVERHEAD);
    return e;
}

void cache_entry_ref(struct cache_entry *e)
{
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
}

/* Release on the decrement, so that every holder's reads happen before the
 * last one frees; acquire for that last one. */
void cache_entry_unref(struct cache_entry *e)
{
    if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e); /* the item starts with the entry: one allocation */
}

size_t cache_entry_size(const struct cache_entry *e)
{
    return ((const struct cache_item *)e)->node.size;
}

static struct cache_item *cache_item_of(struct cache_node *n)
{
    return cache_container_of(n, struct cache_item, node);
}

static struct cache_vary *cache_vary_of(struct cache_node *n)
{
    return cache_container_of(n, struct cache_vary, node);
}

/* ---- tables ------------------------------------------------------------- */

static void cache_table_init(struct cache_table *t, uint64_t max_bytes)
{
    memset(t, 0, sizeof(*t));
    t->buckets = sl_calloc(CACHE_FIRST_BUCKETS, sizeof(*t->buckets));
    t->mask = CACHE_FIRST_BUCKETS - 1;
    t->max_bytes = max_bytes;
}

static struct cache_node *cache_table_find(const struct cache_table *t, uint64_t hash,
                                           const char *key, size_t len)
{
    struct cache_node *n = t->buckets[hash & t->mask];
    while (n && !(n->hash == hash && n->key_len == len && memcmp(n->key, key, len) == 0))
        n = n->chain;
    return n;
}

static void cache_lru_unlink(struct cache_table *t, struct cache_node *n)
{
    if (n->newer)
        n->newer->older = n->older;
    else
        t->newest = n->older;
    if (n->older)
        n->older->newer = n->newer;
    else
        t->oldest = n->newer;
}

static void cache_lru_push(struct cache_table *t, struct cache_node *n)
{
    n->newer = NULL;
    n->older = t->newest;
    if (t->newest)
        t->newest->newer = n;
    else
        t->oldest = n;
    t->newest = n;
}

static void cache_table_touch(struct cache_table *t, struct cache_node *n)
{
    if (t->newest == n)
        return;
    cache_lru_unlink(t, n);
    cache_lru_push(t, n);
}

/* Doubles the buckets of <t>: the chains stay short whatever the count,
 * without knowing in advance how many entries the byte budget will hold. */
static void cache_table_grow(struct cache_table *t)
{
    size_t n_old = t->mask + 1;
    struct cache_node **old = t->buckets;
    t->buckets = sl_calloc(2 * n_old, sizeof(*t->buckets));
    t->mask = 2 * n_old - 1;
    for (size_t b = 0; b < n_old; b++) {
        struct cache_node *n = old[b];
        while (n) {
            struct cache_node *next = n->chain;
            struct cache_node **head = &t->buckets[n->hash & t->mask];
            n->chain = *head;
            *head = n;
            n = next;
        }
    }
    free(old);
}

/* Adds <n> (with no equal key in <t>) as the most recently used. */
static void cache_table_insert(struct cache_table *t, struct cache_node *n)
{
    struct cache_node **head = &t->buckets[n->hash & t->mask];
    n->chain = *head;
    *head = n;
    cache_lru_push(t, n);
    t->count++;
    t->bytes += n->size;
    if (t->count > t->mask + 1)
        cache_table_grow(t);
}

/* Takes <n> out of <t> and pushes it on the list <*dead>, whose owner
 * releases it once the shard is unlocked. */
static void cache_table_remove(struct cache_table *t, struct cache_node *n,
                               struct cache_node **dead)
{
    struct cache_node **link = &t->buckets[n->hash & t->mask];
    while (*link != n)
        link = &(*link)->chain;
    *link = n->chain;
    cache_lru_unlink(t, n);
    t->count--;
    t->bytes -= n->size;
    n->chain = *dead;
    *dead = n;
}

/* Removes least recently used nodes until <t> is within its budget, but
 * never <keep> (a node that fits the budget alone). Returns how many. */
static uint64_t cache_table_trim(struct cache_table *t, const struct cache_node *keep,
                                 struct cache_node **dead)
{
    uint64_t removed = 0;
    while (t->bytes > t->max_bytes && t->oldest && t->oldest != keep) {
        cache_table_remove(t, t->oldest, dead);
        removed++;
    }
    return removed;
}

static void cache_release_entries(struct cache_node *dead)
{
    while (dead) {
        struct cache_node *next = dead->chain;
        cache_entry_unref(&cache_item_of(dead)->e);
        dead = next;
    }
}

static void cache_release_vary(struct cache_node *dead)
{
    while (dead) {
        struct cache_node *next = dead->chain;
        free(cache_vary_of(dead));
        dead = next;
    }
}

/* ---- the store ---------------------------------------------------------- */

static unsigned cache_pow2_at_least(unsigned x)
{
    unsigned p = 1;
    while (p < x && p < (1u << 31))
        p <<= 1;
    return p;
}

struct cache_store *cache_store_new(uint64_t max_bytes, unsigned n_shards)
{
    struct cache_store *st = sl_calloc(1, sizeof(*st));
    if (n_shards == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores < 1)
            cores = 1;
        n_shards = cores > CACHE_MAX_SHARDS / 4 ? CACHE_MAX_SHARDS : 4 * (unsigned)cores;
        if (n_shards < CACHE_MIN_SHARDS)
            n_shards = CACHE_MIN_SHARDS;
        n_shards = cache_pow2_at_least(n_shards);
        while (n_shards > 1 && max_bytes / n_shards < CACHE_MIN_SHARE)
            n_shards >>= 1;
    }
    if (n_shards > CACHE_MAX_SHARDS)
        n_shards = CACHE_MAX_SHARDS;
    n_shards = cache_pow2_at_least(n_shards);
    st->n_shards = n_shards;
    st->share = max_bytes / n_shards;

    uint64_t vary_bytes = st->share / 16;
    if (vary_bytes < CACHE_VARY_MIN_BYTES)
        vary_bytes = CACHE_VARY_MIN_BYTES;
    /* aligned_alloc: the shards' alignment is above malloc's. */
    size_t bytes = n_shards * sizeof(struct cache_shard);
    st->shards = aligned_alloc(alignof(struct cache_shard), bytes);
    if (!st->shards)
        sl_fatal("sluice: out of memory allocating the cache's shards\n");
    for (unsigned s = 0; s < n_shards; s++) {
        struct cache_shard *sh = &st->shards[s];
        memset(sh, 0, sizeof(*sh));
        sl_mutex_init_adaptive(&sh->lock);
        cache_table_init(&sh->entries, st->share);
        cache_table_init(&sh->vary, vary_bytes);
    }
    siphash_key_random(&st->key);
    return st;
}

/* Entries still held by readers outlive the store: they only drop its
 * reference here. */
void cache_store_free(struct cache_store *st)
{
    if (!st)
        return;
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct cache_shard *sh = &st->shards[s];
        struct cache_node *dead = NULL;
        while (sh->entries.oldest)
            cache_table_remove(&sh->entries, sh->entries.oldest, &dead);
        cache_release_entries(dead);
        dead = NULL;
        while (sh->vary.oldest)
            cache_table_remove(&sh->vary, sh->vary.oldest, &dead);
        cache_release_vary(dead);
        free(sh->entries.buckets);
        free(sh->vary.buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(st->shards);
    free(st);
}

static struct cache_shard *cache_store_shard(struct cache_store *st, uint64_t hash)
{
    return &st->shards[(uint32_t)(hash >> 32) & (st->n_shards - 1)];
}

struct cache_entry *cache_store_get(struct cache_store *st, const char *key, size_t len)
{
    uint64_t hash = siphash24(&st->key, key, len);
    struct cache_shard *sh = cache_store_shard(st, hash);
    struct cache_entry *e = NULL;
    pthread_mutex_lock(&sh->lock);
    struct cache_node *n = cache_table_find(&sh->entries, hash, key, len);
    if (n) {
        cache_table_touch(&sh->entries, n);
        e = &cache_item_of(n)->e;
        cache_entry_ref(e);
    }
    pthread_mutex_unlock(&sh->lock);
    return e;
}

bool cache_store_put(struct cache_store *st, struct cache_entry *e)
{
    struct cache_item *it = (struct cache_item *)e;
    if (__atomic_exchange_n(&it->stored, 1, __ATOMIC_RELAXED))
        sl_fatal("sluice: a cache entry was put twice\n");
    if (it->node.size > st->share) {
        cache_entry_unref(e);
        return false;
    }
    it->node.hash = siphash24(&st->key, e->key, e->key_len);
    struct cache_shard *sh = cache_store_shard(st, it->node.hash);
    struct cache_node *dead = NULL;

    pthread_mutex_lock(&sh->lock);
    struct cache_node *old = cache_table_find(&sh->entries, it->node.hash, e->key, e->key_len);
    if (old)
        cache_table_remove(&sh->entries, old, &dead);
    cache_table_insert(&sh->entries, &it->node);
    sh->evictions += cache_table_trim(&sh->entries, &it->node, &dead);
    pthread_mutex_unlock(&sh->lock);

    cache_release_entries(dead);
    return true;
}

/* Buckets of a shard scanned per hold of its lock during a purge: about as
 * many entries (a table has no more nodes than buckets), so a request of
 * another worker never waits for more than a fraction of a millisecond. */
#define CACHE_PURGE_SLICE 1024

/* Removes the entries of <t> that <match> accepts, in buckets [*b, *b +
 * CACHE_PURGE_SLICE); advances *b. Returns how many. */
static uint64_t cache_table_purge_slice(struct cache_table *t, size_t *b, cache_match_fn match,
                                        const void *arg, size_t len, struct cache_node **dead)
{
    uint64_t removed = 0;
    for (size_t end = *b + CACHE_PURGE_SLICE; *b < end && *b <= t->mask; (*b)++) {
        struct cache_node *n = t->buckets[*b];
        while (n) {
            struct cache_node *next = n->chain; /* removal reuses chain */
            if (match(&cache_item_of(n)->e, arg, len)) {
                cache_table_remove(t, n, dead);
                removed++;
            }
            n = next;
        }
    }
    return removed;
}

/* Removes from every shard the entries <match> accepts with <arg>/<len>,
 * a slice of buckets per hold of the shard's lock. Between two slices the
 * table may double: a node in bucket b moves to b or b + the old size, so
 * every node present when the purge started is still met at or after the
 * index reached (some are met twice, which is harmless). An entry put
 * while the purge runs may survive it. */
static uint64_t cache_store_purge_if(struct cache_store *st, cache_match_fn match, const void *arg,
                                     size_t len)
{
    uint64_t removed = 0;
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct cache_shard *sh = &st->shards[s];
        for (size_t b = 0;;) {
            struct cache_node *dead = NULL;
            pthread_mutex_lock(&sh->lock);
            bool more = b <= sh->entries.mask;
            if (more)
                removed += cache_table_purge_slice(&sh->entries, &b, match, arg, len, &dead);
            pthread_mutex_unlock(&sh->lock);
            cache_release_entries(dead);
            if (!more)
                break;
        }
    }
    return removed;
}

static bool cache_match_url(const struct cache_entry *e, const void *url, size_t len)
{
    return e->url_len == len && memcmp(e->url, url, len) == 0;
}

static bool cache_match_prefix(const struct cache_entry *e, const void *prefix, size_t len)
{
    return e->url_len >= len && memcmp(e->url, prefix, len) == 0;
}

static bool cache_match_pattern(const struct cache_entry *e, const void *glob, size_t len)
{
    return cache_glob_test(glob, e->url, e->url_len);
}

static bool cache_match_tag(const struct cache_entry *e, const void *tag, size_t len)
{
    for (int i = 0; i < e->n_tags; i++)
        if (strcmp(e->tags[i], tag) == 0)
            return true;
    return false;
}

static bool cache_match_all(const struct cache_entry *e, const void *arg, size_t len)
{
    return true;
}

uint64_t cache_store_purge_url(struct cache_store *st, const char *url, size_t len)
{
    return cache_store_purge_if(st, cache_match_url, url, len);
}

uint64_t cache_store_purge_prefix(struct cache_store *st, const char *prefix, size_t len)
{
    return cache_store_purge_if(st, cache_match_prefix, prefix, len);
}

uint64_t cache_store_purge_pattern(struct cache_store *st, const char *glob)
{
    struct cache_glob *g = cache_glob_new(glob);
    if (!g)
        return 0;
    uint64_t n = cache_store_purge_if(st, cache_match_pattern, g, 0);
    cache_glob_free(g);
    return n;
}

uint64_t cache_store_purge_tag(struct cache_store *st, const char *tag)
{
    return cache_store_purge_if(st, cache_match_tag, tag, 0);
}

uint64_t cache_store_purge_all(struct cache_store *st)
{
    return cache_store_purge_if(st, cache_match_all, NULL, 0);
}

void cache_store_set_vary(struct cache_store *st, const char *primary, size_t len,
                          const char *names)
{
    size_t names_len = strlen(names);
    size_t n = cache_add(sizeof(struct cache_vary), cache_add(len, 1));
    n = cache_add(n, cache_add(names_len, 1));
    /* Built before the lock is taken: the lock guards only the table. */
    struct cache_vary *v = sl_malloc(n);
    memset(v, 0, sizeof(*v));
    char *at = (char *)(v + 1);
    v->node.key = cache_copy(&at, primary, len);
    v->node.key_len = len;
    v->node.size = cache_add(n, CACHE_VARY_OVERHEAD);
    v->node.hash = siphash24(&st->key, primary, len);
    v->names = cache_copy(&at, names, names_len);
    v->names_len = names_len;

    struct cache_shard *sh = cache_store_shard(st, v->node.hash);
    struct cache_node *dead = NULL;
    pthread_mutex_lock(&sh->lock);
    struct cache_node *old = cache_table_find(&sh->vary, v->node.hash, primary, len);
    if (old)
        cache_table_remove(&sh->vary, old, &dead);
    if (v->node.size <= sh->vary.max_bytes) {
        cache_table_insert(&sh->vary, &v->node);
        cache_table_trim(&sh->vary, &v->node, &dead);
    } else {
        /* Too big for the index: forget the old names too, rather than
         * keep ones the upstream no longer sends. */
        v->node.chain = dead;
        dead = &v->node;
    }
    pthread_mutex_unlock(&sh->lock);
    cache_release_vary(dead);
}

/* Also false when <cap> cannot hold the names and their NUL: a truncated
 * list would build a wrong key. */
bool cache_store_get_vary(struct cache_store *st, const char *primary, size_t len, char *out,
                          size_t cap)
{
    uint64_t hash = siphash24(&st->key, primary, len);
    struct cache_shard *sh = cache_store_shard(st, hash);
    bool found = false;
    pthread_mutex_lock(&sh->lock);
    struct cache_node *n = cache_table_find(&sh->vary, hash, primary, len);
    if (n) {
        struct cache_vary *v = cache_vary_of(n);
        cache_table_touch(&sh->vary, n);
        if (v->names_len < cap) {
            memcpy(out, v->names, v->names_len + 1);
            found = true;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

void cache_store_stats(struct cache_store *st, struct cache_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct cache_shard *sh = &st->shards[s];
        pthread_mutex_lock(&sh->lock);
        out->entries += sh->entries.count;
        out->bytes += sh->entries.bytes;
        out->evictions += sh->evictions;
        pthread_mutex_unlock(&sh->lock);
    }
}
