/* The limiter's memory store (see mem_store.h for the contract).
 *
 * Layout, chosen for bounded memory per tracked identity (goal: <= 128
 * bytes at 1M identities) and for as few cache misses per decision as
 * possible (goal: < 200 ns with 1M identities, when one miss to DRAM
 * costs 80-300 ns, the more under virtualisation):
 * - the store is 2^k shards, each behind its own lock; a key's shard comes
 *   from the high 32 bits of its SipHash, its bucket from the low 32, so the
 *   two choices are independent;
 * - a shard is one slab array of fixed-size 96-byte slots addressed by
 *   uint32 indices (no pointer, no malloc per entry). A chained hash table,
 *   an LRU list and a free list all run through those indices;
 * - the table has one bucket per slot, and bucket b's head index is stored
 *   in slot b itself. A new key is placed in its bucket's own slot (its
 *   "home") when it can be, so for most keys (1 - 1/e of them in a full
 *   shard) the one cache miss that fetches the bucket head also fetches
 *   the entry. A separate bucket array
 *   would cost a second, dependent miss on every lookup. The home slot is
 *   prefetched before the lock is taken, so the miss also overlaps the
 *   locking and, for a request with several limits, the other misses;
 * - keys up to LIM_KEY_INLINE bytes live in the entry; longer ones are
 *   replaced by a 128-bit digest (the table hash and a second SipHash under
 *   another key), so a client cannot make an entry bigger by sending a
 *   longer identity;
 * - the slab grows by doubling up to the shard's share of max_entries
 *   (growth re-places every entry, home slots first); when full, an expired
 *   entry among the last LIM_EVICT_SCAN of the LRU list is recycled, else
 *   the least recently used one.
 *
 * Each entry records the time its state stops mattering (lim_expiry at its
 * last update), so expiry, sweeping and eviction need no struct limit.
 *
 * Locking: see lim_lock_init. */

#include "limit/mem_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/mem.h"
#include "util/lock.h"
#include "util/siphash.h"

#define LIM_NIL UINT32_MAX
/* Inline key bytes: what is left of a 96-byte slot after the fields below.
 * Typical keys ("r:/api/market/:100/h|ip:10.1.2.3", 32 bytes; with an API
 * key id or an IPv6 /64 instead of the IPv4 address) fit. */
#define LIM_KEY_INLINE 47
#define LIM_KEY_DIGEST 0xff /* key_len of an entry keyed by the 128-bit digest */
#define LIM_KEY_FREE 0xfe   /* key_len of a free slot */
/* How far from the LRU tail a full shard looks for an expired entry before
 * evicting a live one: a bounded cost per insertion. */
#define LIM_EVICT_SCAN 8
#define LIM_MIN_SHARDS 16    /* 4 per core, but at least this many */
#define LIM_MAX_SHARDS 4096  /* more would only cost memory */
#define LIM_FIRST_SLAB 64    /* slots a shard starts with */
#define LIM_SWEEP_CHUNK 1024 /* slots examined per lock hold while sweeping */
#define LIM_OPS_ON_STACK 16  /* ops of one request handled without malloc */

/* One slot. <head> belongs to the slot (bucket <index>'s first entry); all
 * other fields belong to the entry stored in the slot, if any. */
struct lim_slot {
    uint64_t hash;  /* SipHash of the key under key_hash */
    int64_t expiry; /* lim_expiry at the last update; <= now reads as fresh */
    struct lim_state st;
    uint32_t head;  /* first entry of the bucket numbered like this slot */
    uint32_t chain; /* next entry in the same bucket */
    /* The LRU list (towards newer, towards older); for a free slot, the
     * free list (doubly linked: a slot wanted as a home leaves it in O(1)). */
    uint32_t prev, next;
    uint8_t key_len;          /* 0..LIM_KEY_INLINE, LIM_KEY_DIGEST or LIM_KEY_FREE */
    char key[LIM_KEY_INLINE]; /* the key; for LIM_KEY_DIGEST, the second hash */
};
_Static_assert(sizeof(struct lim_slot) == 96, "a slot must stay 96 bytes");

/* Aligned to a cache line so that two threads locking neighbouring shards do
 * not share one. */
struct lim_shard {
    _Alignas(64) pthread_mutex_t lock;
    /* <slab> and <cap> are also read without the lock, atomically, only to
     * prefetch (lim_prefetch); they change only under the lock. */
    struct lim_slot *slab;
    uint32_t cap;   /* slots (and buckets) */
    uint32_t max;   /* this shard's share of max_entries */
    uint32_t count; /* live entries */
    uint32_t free_head;
    uint32_t lru_head, lru_tail; /* most, least recently used */
    uint64_t evictions;
};

struct lim_store {
    struct lim_shard *shards; /* aligned inside shards_mem */
    void *shards_mem;
    unsigned n_shards;
    struct siphash_key key_hash;   /* the table hash; first half of long-key digests */
    struct siphash_key key_digest; /* second half of long-key digests */
    atomic_uint sweep_cursor;
};

/* What lim_store_apply knows about one op while the shards are locked. */
struct lim_prep {
    uint64_t hash;
    uint64_t digest; /* second hash; only for keys longer than LIM_KEY_INLINE */
    uint32_t shard;
    uint32_t entry; /* slot of the entry found or created, or LIM_NIL */
    int first;      /* index of the first op with the same key (the one holding <st>) */
    int64_t expiry;
    struct lim_state st; /* working copy, written back only if all ops pass */
};

static unsigned lim_pow2_at_least(unsigned x)
{
    unsigned p = 1;
    while (p < x && p < (1u << 31))
        p <<= 1;
    return p;
}

/* The bucket (and home slot) of <hash> among <cap>: the low 32 bits scaled
 * to [0, cap) by a multiply (Lemire's fastrange), so <cap> need not be a
 * power of two and the slab can stop growing at exactly the shard's share. */
static inline uint32_t lim_bucket(uint64_t hash, uint32_t cap)
{
    return (uint32_t)(((uint64_t)(uint32_t)hash * cap) >> 32);
}

/* Asks for transparent huge pages under a big slab (where THP is in
 * "madvise" mode, as on Debian): lookups land on random slots, so with 4 KiB
 * pages nearly every one also misses the TLB, and a page walk under
 * virtualisation costs about as much as the cache miss itself. Advice only:
 * failure changes nothing. */
static void lim_hint_huge_pages(void *p, size_t len)
{
    const uintptr_t page = 4096;
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)p + len) & ~(page - 1);
    if (to > from + (2u << 20))
        (void)madvise((void *)from, to - from, MADV_HUGEPAGE);
}

/* ---- lists: LRU and free ---------------------------------------------- */

static void lim_lru_unlink(struct lim_shard *sh, uint32_t i)
{
    struct lim_slot *e = &sh->slab[i];
    if (e->prev != LIM_NIL)
        sh->slab[e->prev].next = e->next;
    else
        sh->lru_head = e->next;
    if (e->next != LIM_NIL)
        sh->slab[e->next].prev = e->prev;
    else
        sh->lru_tail = e->prev;
}

static void lim_lru_push_head(struct lim_shard *sh, uint32_t i)
{
    struct lim_slot *e = &sh->slab[i];
    e->prev = LIM_NIL;
    e->next = sh->lru_head;
    if (sh->lru_head != LIM_NIL)
        sh->slab[sh->lru_head].prev = i;
    else
        sh->lru_tail = i;
    sh->lru_head = i;
}

static void lim_free_push(struct lim_shard *sh, uint32_t i)
{
    struct lim_slot *e = &sh->slab[i];
    e->key_len = LIM_KEY_FREE;
    e->prev = LIM_NIL;
    e->next = sh->free_head;
    if (sh->free_head != LIM_NIL)
        sh->slab[sh->free_head].prev = i;
    sh->free_head = i;
}

static void lim_free_unlink(struct lim_shard *sh, uint32_t i)
{
    struct lim_slot *e = &sh->slab[i];
    if (e->prev != LIM_NIL)
        sh->slab[e->prev].next = e->next;
    else
        sh->free_head = e->next;
    if (e->next != LIM_NIL)
        sh->slab[e->next].prev = e->prev;
}

/* ---- the table --------------------------------------------------------- */

/* The link (a bucket head or a chain field) that points at entry <i>. */
static uint32_t *lim_link_to(struct lim_shard *sh, uint32_t i)
{
    uint32_t *link = &sh->slab[lim_bucket(sh->slab[i].hash, sh->cap)].head;
    while (*link != i)
        link = &sh->slab[*link].chain;
    return link;
}

static void lim_bucket_insert(struct lim_shard *sh, uint32_t i)
{
    uint32_t *head = &sh->slab[lim_bucket(sh->slab[i].hash, sh->cap)].head;
    sh->slab[i].chain = *head;
    *head = i;
}

/* Takes entry <i> out of the table and the LRU list onto the free list. */
static void lim_entry_drop(struct lim_shard *sh, uint32_t i)
{
    uint32_t *link = lim_link_to(sh, i);
    *link = sh->slab[i].chain;
    lim_lru_unlink(sh, i);
    lim_free_push(sh, i);
    sh->count--;
}

static bool lim_entry_is(const struct lim_slot *e, const struct lim_op *op,
                         const struct lim_prep *pp)
{
    if (e->hash != pp->hash)
        return false;
    if (op->key_len > LIM_KEY_INLINE)
        return e->key_len == LIM_KEY_DIGEST && memcmp(e->key, &pp->digest, 8) == 0;
    return e->key_len == op->key_len && memcmp(e->key, op->key, op->key_len) == 0;
}

static uint32_t lim_find(const struct lim_shard *sh, const struct lim_op *op,
                         const struct lim_prep *pp)
{
    uint32_t i = sh->slab[lim_bucket(pp->hash, sh->cap)].head;
    while (i != LIM_NIL && !lim_entry_is(&sh->slab[i], op, pp))
        i = sh->slab[i].chain;
    return i;
}

/* Moves the entry in slot <from> to the free slot <to> (off the free list),
 * relinking its bucket chain and LRU neighbours. The slots' own bucket heads
 * stay where they are. */
static void lim_entry_move(struct lim_shard *sh, uint32_t from, uint32_t to)
{
    struct lim_slot *e = &sh->slab[from];
    *lim_link_to(sh, from) = to;
    if (e->prev != LIM_NIL)
        sh->slab[e->prev].next = to;
    else
        sh->lru_head = to;
    if (e->next != LIM_NIL)
        sh->slab[e->next].prev = to;
    else
        sh->lru_tail = to;
    uint32_t head = sh->slab[to].head;
    sh->slab[to] = *e;
    sh->slab[to].head = head;
}

/* Grows the slab of <sh> to <cap> slots. Every home changes with the size,
 * so the entries are placed again: in their home slot first, the rest in
 * the free slots left; LRU order is kept. */
static void lim_shard_resize(struct lim_shard *sh, uint32_t cap)
{
    struct lim_slot *old = sh->slab;
    uint32_t old_cap = sh->cap;
    struct lim_slot *nw = sl_malloc((size_t)cap * sizeof(*nw));
    lim_hint_huge_pages(nw, (size_t)cap * sizeof(*nw));
    uint32_t *where = sl_malloc((size_t)(old_cap ? old_cap : 1) * sizeof(*where));

    for (uint32_t s = 0; s < cap; s++) {
        nw[s].head = LIM_NIL;
        nw[s].key_len = LIM_KEY_FREE;
    }
    for (uint32_t i = 0; i < old_cap; i++) {
        where[i] = LIM_NIL;
        if (old[i].key_len == LIM_KEY_FREE)
            continue;
        uint32_t b = lim_bucket(old[i].hash, cap);
        if (nw[b].key_len == LIM_KEY_FREE) {
            nw[b] = old[i];
            nw[b].head = LIM_NIL;
            where[i] = b;
        }
    }
    uint32_t cursor = 0;
    for (uint32_t i = 0; i < old_cap; i++) {
        if (old[i].key_len == LIM_KEY_FREE || where[i] != LIM_NIL)
            continue;
        while (nw[cursor].key_len != LIM_KEY_FREE)
            cursor++;
        nw[cursor] = old[i];
        nw[cursor].head = LIM_NIL;
        where[i] = cursor;
    }

    __atomic_store_n(&sh->slab, nw, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->cap, cap, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < old_cap; i++) {
        if (old[i].key_len == LIM_KEY_FREE)
            continue;
        struct lim_slot *e = &nw[where[i]];
        e->prev = e->prev == LIM_NIL ? LIM_NIL : where[e->prev];
        e->next = e->next == LIM_NIL ? LIM_NIL : where[e->next];
        lim_bucket_insert(sh, where[i]);
    }
    if (sh->lru_head != LIM_NIL) {
        sh->lru_head = where[sh->lru_head];
        sh->lru_tail = where[sh->lru_tail];
    }
    sh->free_head = LIM_NIL;
    for (uint32_t s = cap; s-- > 0;)
        if (nw[s].key_len == LIM_KEY_FREE)
            lim_free_push(sh, s);
    free(old);
    free(where);
}

/* Makes room for <more> new entries in <sh> if the shard may still grow. */
static void lim_shard_reserve(struct lim_shard *sh, uint32_t more)
{
    if (sh->count + (uint64_t)more <= sh->cap || sh->cap == sh->max)
        return;
    uint64_t cap = sh->cap;
    while (cap < sh->count + (uint64_t)more)
        cap *= 2;
    lim_shard_resize(sh, cap > sh->max ? sh->max : (uint32_t)cap);
}

/* Is slot <i> of shard <shard> one that the request <pp>/<n> writes? */
static bool lim_is_pinned(uint32_t i, uint32_t shard, const struct lim_prep *pp, int n)
{
    for (int k = 0; k < n; k++)
        if (pp[k].shard == shard && pp[k].entry == i)
            return true;
    return false;
}

/* A slot of shard <sh> (number <shard>) at <now> for a new entry whose home
 * is <home>: the home if free, else a free slot, else a recycled one (an
 * expired entry near the LRU tail first, else the LRU tail itself). An entry
 * squatting the home (its own home is elsewhere) moves out to that slot.
 * The entries of the request <pp>/<n> being written stay where they are.
 * LIM_NIL only when every entry of the shard is one of those. */
static uint32_t lim_slot_take(struct lim_shard *sh, uint32_t shard, uint32_t home, int64_t now,
                              const struct lim_prep *pp, int n)
{
    uint32_t f = LIM_NIL;
    if (sh->count < sh->max && sh->slab[home].key_len == LIM_KEY_FREE) {
        lim_free_unlink(sh, home);
        sh->count++;
        return home;
    }
    if (sh->count < sh->max && sh->free_head != LIM_NIL) {
        f = sh->free_head;
    } else {
        uint32_t i = sh->lru_tail;
        for (int k = 0; k < LIM_EVICT_SCAN && i != LIM_NIL; k++, i = sh->slab[i].prev) {
            if (sh->slab[i].expiry <= now && !lim_is_pinned(i, shard, pp, n)) {
                f = i;
                break;
            }
        }
        if (f == LIM_NIL) {
            for (i = sh->lru_tail; i != LIM_NIL; i = sh->slab[i].prev) {
                if (!lim_is_pinned(i, shard, pp, n)) {
                    f = i;
                    sh->evictions++;
                    break;
                }
            }
        }
        if (f == LIM_NIL)
            return LIM_NIL;
        lim_entry_drop(sh, f);
    }
    lim_free_unlink(sh, f);
    sh->count++;
    if (f == home)
        return home;
    struct lim_slot *occupant = &sh->slab[home];
    if (occupant->key_len != LIM_KEY_FREE && lim_bucket(occupant->hash, sh->cap) != home &&
        !lim_is_pinned(home, shard, pp, n)) {
        lim_entry_move(sh, home, f);
        return home;
    }
    return f;
}

/* ---- public ----------------------------------------------------------- */

struct lim_store *lim_store_new(uint64_t max_entries, unsigned n_shards)
{
    struct lim_store *st = sl_calloc(1, sizeof(*st));
    if (max_entries < 1)
        max_entries = 1;

    if (n_shards == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores < 1)
            cores = 1;
        n_shards = cores > LIM_MAX_SHARDS / 4 ? LIM_MAX_SHARDS : 4 * (unsigned)cores;
        if (n_shards < LIM_MIN_SHARDS)
            n_shards = LIM_MIN_SHARDS;
    }
    if (n_shards > LIM_MAX_SHARDS)
        n_shards = LIM_MAX_SHARDS;
    n_shards = lim_pow2_at_least(n_shards);
    /* Every shard gets at least one entry and the shares add up to exactly
     * max_entries, so the bound holds however keys fall. */
    while (n_shards > max_entries)
        n_shards >>= 1;
    st->n_shards = n_shards;

    st->shards_mem = sl_malloc(n_shards * sizeof(struct lim_shard) + 63);
    st->shards = (struct lim_shard *)(((uintptr_t)st->shards_mem + 63) & ~(uintptr_t)63);
    for (unsigned s = 0; s < n_shards; s++) {
        struct lim_shard *sh = &st->shards[s];
        memset(sh, 0, sizeof(*sh));
        sl_mutex_init_adaptive(&sh->lock);
        uint64_t share = max_entries / n_shards + (s < max_entries % n_shards);
        sh->max = share > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)share;
        sh->lru_head = sh->lru_tail = LIM_NIL;
        lim_shard_resize(sh, sh->max < LIM_FIRST_SLAB ? sh->max : LIM_FIRST_SLAB);
    }

    siphash_key_random(&st->key_hash);
    siphash_key_random(&st->key_digest);
    atomic_init(&st->sweep_cursor, 0);
    return st;
}

void lim_store_free(struct lim_store *st)
{
    if (!st)
        return;
    for (unsigned s = 0; s < st->n_shards; s++) {
        pthread_mutex_destroy(&st->shards[s].lock);
        free(st->shards[s].slab);
    }
    free(st->shards_mem);
    free(st);
}

static void lim_prepare(const struct lim_store *st, const struct lim_op *op, struct lim_prep *pp)
{
    pp->hash = siphash24(&st->key_hash, op->key, op->key_len);
    pp->digest =
        op->key_len > LIM_KEY_INLINE ? siphash24(&st->key_digest, op->key, op->key_len) : 0;
    pp->shard = (uint32_t)(pp->hash >> 32) & (st->n_shards - 1);
    pp->entry = LIM_NIL;
}

/* Starts fetching the home slot of <pp> before its shard is locked: the
 * miss then overlaps the locking and the other ops' misses. <slab> and <cap>
 * may be changing under another thread; a stale address is harmless (a
 * prefetch never faults, and nothing is read through it). */
static void lim_prefetch(const struct lim_store *st, const struct lim_prep *pp)
{
    const struct lim_shard *sh = &st->shards[pp->shard];
    const struct lim_slot *slab = __atomic_load_n(&sh->slab, __ATOMIC_RELAXED);
    uint32_t cap = __atomic_load_n(&sh->cap, __ATOMIC_RELAXED);
    __builtin_prefetch(&slab[lim_bucket(pp->hash, cap)], 1);
}

static bool lim_same_key(const struct lim_op *a, const struct lim_prep *pa, const struct lim_op *b,
                         const struct lim_prep *pb)
{
    return pa->hash == pb->hash && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0;
}

/* Writes the state of the first op <i> of a key back into its entry, or a
 * new one. */
static void lim_write_back(struct lim_shard *sh, const struct lim_op *ops, struct lim_prep *pp,
                           int n, int i, int64_t now)
{
    uint32_t e = pp[i].entry;
    if (e == LIM_NIL) {
        /* A state that already carries nothing is not worth a slot. */
        if (pp[i].expiry <= now)
            return;
        e = lim_slot_take(sh, pp[i].shard, lim_bucket(pp[i].hash, sh->cap), now, pp, n);
        if (e == LIM_NIL)
            return;
        struct lim_slot *ne = &sh->slab[e];
        ne->hash = pp[i].hash;
        if (ops[i].key_len > LIM_KEY_INLINE) {
            ne->key_len = LIM_KEY_DIGEST;
            memcpy(ne->key, &pp[i].digest, 8);
        } else {
            ne->key_len = (uint8_t)ops[i].key_len;
            memcpy(ne->key, ops[i].key, ops[i].key_len);
        }
        lim_bucket_insert(sh, e);
        lim_lru_push_head(sh, e);
        pp[i].entry = e;
    } else if (sh->lru_head != e) {
        lim_lru_unlink(sh, e);
        lim_lru_push_head(sh, e);
    }
    sh->slab[e].st = pp[i].st;
    sh->slab[e].expiry = pp[i].expiry;
}

void lim_store_prefetch(const struct lim_store *st, const struct lim_op *op)
{
    struct lim_prep pp;
    lim_prepare(st, op, &pp);
    lim_prefetch(st, &pp);
}

bool lim_store_apply(struct lim_store *st, struct lim_op *ops, int n, int64_t now_us, uint32_t cost)
{
    if (n <= 0)
        return true;
    struct lim_prep prep_stack[LIM_OPS_ON_STACK];
    uint32_t locked_stack[LIM_OPS_ON_STACK];
    struct lim_prep *pp = prep_stack;
    uint32_t *locked = locked_stack;
    if (n > LIM_OPS_ON_STACK) {
        pp = sl_malloc((size_t)n * sizeof(*pp));
        locked = sl_malloc((size_t)n * sizeof(*locked));
    }

    /* Hash outside the locks; note repeated keys and the shards to lock,
     * sorted and unique (insertion sort: n is a handful). */
    int n_locked = 0;
    for (int i = 0; i < n; i++) {
        lim_prepare(st, &ops[i], &pp[i]);
        pp[i].first = i;
        for (int j = 0; j < i; j++) {
            if (pp[j].first == j && lim_same_key(&ops[i], &pp[i], &ops[j], &pp[j])) {
                pp[i].first = j;
                break;
            }
        }
        if (pp[i].first == i)
            lim_prefetch(st, &pp[i]);
        int k = n_locked;
        while (k > 0 && locked[k - 1] > pp[i].shard)
            k--;
        if (k > 0 && locked[k - 1] == pp[i].shard)
            continue;
        memmove(&locked[k + 1], &locked[k], (size_t)(n_locked - k) * sizeof(*locked));
        locked[k] = pp[i].shard;
        n_locked++;
    }
    for (int k = 0; k < n_locked; k++) {
        struct lim_shard *sh = &st->shards[locked[k]];
        pthread_mutex_lock(&sh->lock);
        /* Grow now, while no slot index is held: growth moves entries. */
        uint32_t keys_here = 0;
        for (int i = 0; i < n; i++)
            keys_here += pp[i].first == i && pp[i].shard == locked[k];
        lim_shard_reserve(sh, keys_here);
    }

    for (int i = 0; i < n; i++) {
        if (pp[i].first != i)
            continue;
        struct lim_shard *sh = &st->shards[pp[i].shard];
        pp[i].entry = lim_find(sh, &ops[i], &pp[i]);
        /* Lazy expiry: an expired entry is a fresh state (and its slot is
         * reused if the request passes). */
        if (pp[i].entry != LIM_NIL && sh->slab[pp[i].entry].expiry > now_us)
            pp[i].st = sh->slab[pp[i].entry].st;
        else
            pp[i].st = (struct lim_state){0};
    }

    bool allowed = true;
    for (int i = 0; i < n; i++) {
        ops[i].decision = lim_apply(ops[i].limit, &pp[pp[i].first].st, now_us, cost);
        allowed = allowed && ops[i].decision.allowed;
    }

    if (allowed) {
        for (int i = 0; i < n; i++) {
            int f = pp[i].first;
            int64_t x = lim_expiry(ops[i].limit, &pp[f].st);
            if (f == i || x > pp[f].expiry)
                pp[f].expiry = x;
        }
        /* Existing entries first: creating one may recycle or move a slot,
         * which must not be one this request is about to write. */
        for (int i = 0; i < n; i++)
            if (pp[i].first == i && pp[i].entry != LIM_NIL)
                lim_write_back(&st->shards[pp[i].shard], ops, pp, n, i, now_us);
        for (int i = 0; i < n; i++)
            if (pp[i].first == i && pp[i].entry == LIM_NIL)
                lim_write_back(&st->shards[pp[i].shard], ops, pp, n, i, now_us);
    }

    for (int k = n_locked - 1; k >= 0; k--)
        pthread_mutex_unlock(&st->shards[locked[k]].lock);
    if (pp != prep_stack) {
        free(pp);
        free(locked);
    }
    return allowed;
}

void lim_store_release(struct lim_store *st, struct lim_op *ops, int n, uint32_t cost)
{
    for (int i = 0; i < n; i++) {
        /* Only concurrency slots are given back; skip the hashing for the rest. */
        if (ops[i].limit->algorithm != LIM_CONCURRENCY)
            continue;
        struct lim_prep pp;
        lim_prepare(st, &ops[i], &pp);
        struct lim_shard *sh = &st->shards[pp.shard];
        pthread_mutex_lock(&sh->lock);
        uint32_t e = lim_find(sh, &ops[i], &pp);
        /* Not found: evicted under memory pressure; the slots are lost with it. */
        if (e != LIM_NIL) {
            lim_release(ops[i].limit, &sh->slab[e].st, cost);
            sh->slab[e].expiry = lim_expiry(ops[i].limit, &sh->slab[e].st);
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

uint64_t lim_store_sweep(struct lim_store *st, int64_t now_us, unsigned max_shards)
{
    uint64_t dropped = 0;
    if (max_shards > st->n_shards)
        max_shards = st->n_shards;
    for (unsigned k = 0; k < max_shards; k++) {
        unsigned s = atomic_fetch_add_explicit(&st->sweep_cursor, 1, memory_order_relaxed) &
                     (st->n_shards - 1);
        struct lim_shard *sh = &st->shards[s];
        /* In chunks, releasing the lock in between, so that a sweep never
         * holds up requests for long. (Entries may move in between; one
         * missed now is dropped by a later sweep or lazily.) */
        for (uint32_t from = 0;; from += LIM_SWEEP_CHUNK) {
            pthread_mutex_lock(&sh->lock);
            uint32_t to = sh->cap;
            if (from >= to) {
                pthread_mutex_unlock(&sh->lock);
                break;
            }
            if (to - from > LIM_SWEEP_CHUNK)
                to = from + LIM_SWEEP_CHUNK;
            for (uint32_t i = from; i < to; i++) {
                if (sh->slab[i].key_len != LIM_KEY_FREE && sh->slab[i].expiry <= now_us) {
                    lim_entry_drop(sh, i);
                    dropped++;
                }
            }
            pthread_mutex_unlock(&sh->lock);
        }
    }
    return dropped;
}

void lim_store_stats(struct lim_store *st, struct lim_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->bytes = sizeof(*st) + st->n_shards * sizeof(struct lim_shard) + 63;
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct lim_shard *sh = &st->shards[s];
        pthread_mutex_lock(&sh->lock);
        out->entries += sh->count;
        out->evictions += sh->evictions;
        out->bytes += (uint64_t)sh->cap * sizeof(struct lim_slot);
        pthread_mutex_unlock(&sh->lock);
    }
}
