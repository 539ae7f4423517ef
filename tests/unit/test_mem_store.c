/* Unit tests of src/limit/mem_store.c: all-or-nothing over several limits,
 * repeated keys, long keys, the memory bound under 2x max_entries
 * identities, expiry (lazy, by eviction preference, by sweep), concurrency
 * release, and exactness under two threads. Injected clock throughout. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>
#include <unistd.h>

/* The store's source itself, so that the tests can check its internal
 * invariants (as h2o's t/00unit does); its public functions then come from
 * here rather than from sluice_core. */
#include "limit/mem_store.c"

#define SEC INT64_C(1000000)
#define MINUTE (60 * SEC)
#define HOUR (3600 * SEC)
#define T0 (INT64_C(19675) * 86400 * SEC) /* a day boundary: windows align here */

static struct limit mk(enum lim_algorithm a, uint64_t count, int64_t window_us)
{
    struct limit l;
    memset(&l, 0, sizeof(l));
    l.algorithm = a;
    l.count = count;
    l.window_us = window_us;
    return l;
}

static struct lim_op op(const struct limit *l, const char *key)
{
    struct lim_op o;
    memset(&o, 0, sizeof(o));
    o.limit = l;
    o.key = key;
    o.key_len = strlen(key);
    return o;
}

/* One request with a single op; returns its decision. */
static struct lim_decision one(struct lim_store *st, const struct limit *l, const char *key,
                               int64_t now)
{
    struct lim_op o = op(l, key);
    bool ok = lim_store_apply(st, &o, 1, now, 1);
    assert_int_equal(ok, o.decision.allowed);
    return o.decision;
}

static uint64_t entries(struct lim_store *st)
{
    struct lim_store_stats s;
    lim_store_stats(st, &s);
    return s.entries;
}

/* ---- invariants ------------------------------------------------------- */

/* Every structure of every shard agrees with every other: each live entry
 * is in exactly its own bucket's chain and once in the LRU list; each free
 * slot once in the free list; counts and bounds hold. Returns the number of
 * entries sitting in their home slot, for the placement test. */
static uint64_t check_store(struct lim_store *st)
{
    uint64_t at_home = 0, total = 0;
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct lim_shard *sh = &st->shards[s];
        uint32_t live = 0, chained = 0, in_lru = 0, in_free = 0;
        assert_true(sh->cap >= 1 && sh->cap <= sh->max);
        for (uint32_t i = 0; i < sh->cap; i++) {
            if (sh->slab[i].key_len == LIM_KEY_FREE)
                continue;
            live++;
            assert_int_equal((uint32_t)(sh->slab[i].hash >> 32) & (st->n_shards - 1), s);
            at_home += lim_bucket(sh->slab[i].hash, sh->cap) == i;
        }
        assert_int_equal(live, sh->count);
        assert_true(sh->count <= sh->max);
        for (uint32_t b = 0; b < sh->cap; b++) {
            uint32_t steps = 0;
            for (uint32_t i = sh->slab[b].head; i != LIM_NIL; i = sh->slab[i].chain) {
                assert_true(i < sh->cap);
                assert_true(sh->slab[i].key_len != LIM_KEY_FREE);
                assert_int_equal(lim_bucket(sh->slab[i].hash, sh->cap), b);
                assert_true(++steps <= sh->count);
                chained++;
            }
        }
        assert_int_equal(chained, sh->count);
        uint32_t prev = LIM_NIL;
        for (uint32_t i = sh->lru_head; i != LIM_NIL; prev = i, i = sh->slab[i].next) {
            assert_true(i < sh->cap);
            assert_true(sh->slab[i].key_len != LIM_KEY_FREE);
            assert_int_equal(sh->slab[i].prev, prev);
            assert_true(++in_lru <= sh->count);
        }
        assert_int_equal(in_lru, sh->count);
        assert_int_equal(sh->lru_tail, prev);
        prev = LIM_NIL;
        for (uint32_t i = sh->free_head; i != LIM_NIL; prev = i, i = sh->slab[i].next) {
            assert_true(i < sh->cap);
            assert_int_equal(sh->slab[i].key_len, LIM_KEY_FREE);
            assert_int_equal(sh->slab[i].prev, prev);
            assert_true(++in_free <= sh->cap - sh->count);
        }
        assert_int_equal(in_free, sh->cap - sh->count);
        total += sh->count;
    }
    struct lim_store_stats stats;
    lim_store_stats(st, &stats);
    assert_int_equal(stats.entries, total);
    return at_home;
}

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1Dull;
}

static int64_t rng_range(uint64_t *x, int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rng_next(x) % (uint64_t)(hi - lo + 1));
}

/* ---- all or nothing --------------------------------------------------- */

/* SPEC 3.3: "2/min" + "10/h"; a request rejected by one limit consumes from
 * neither. */
static void test_multi_limit_all_or_nothing(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit per_min = mk(LIM_FIXED_WINDOW, 2, MINUTE);
    struct limit per_hour = mk(LIM_FIXED_WINDOW, 10, HOUR);
    int passed = 0;

    for (int m = 0; m < 5; m++) {
        for (int i = 0; i < 3; i++) {
            struct lim_op ops[2] = {op(&per_min, "r:/e:2/min|ip:1"),
                                    op(&per_hour, "r:/e:10/h|ip:1")};
            bool ok = lim_store_apply(st, ops, 2, T0 + m * MINUTE + (i + 1) * SEC, 1);
            if (i < 2) {
                assert_true(ok);
                passed++;
                assert_int_equal(ops[1].decision.remaining, (uint64_t)(10 - passed));
            } else {
                /* Rejected by the first; the second alone would have passed
                 * (until the 10th request, when it is spent too). */
                assert_false(ok);
                assert_false(ops[0].decision.allowed);
                assert_int_equal(ops[1].decision.allowed, passed < 10);
            }
        }
    }
    /* Exactly 10 passed in 5 minutes: the 5 rejected third requests took
     * nothing from the hourly counter. Now the hourly one rejects... */
    for (int i = 0; i < 3; i++) {
        struct lim_op ops[2] = {op(&per_min, "r:/e:2/min|ip:1"), op(&per_hour, "r:/e:10/h|ip:1")};
        assert_false(lim_store_apply(st, ops, 2, T0 + 5 * MINUTE + SEC, 1));
        assert_true(ops[0].decision.allowed);
        assert_false(ops[1].decision.allowed);
        assert_int_equal(ops[1].decision.retry_after_us, HOUR - 5 * MINUTE - SEC);
    }
    /* ...and took nothing from the per-minute one either. */
    assert_int_equal(one(st, &per_min, "r:/e:2/min|ip:1", T0 + 5 * MINUTE + 2 * SEC).remaining, 1);
    assert_int_equal(one(st, &per_min, "r:/e:2/min|ip:1", T0 + 5 * MINUTE + 2 * SEC).remaining, 0);
    /* A new hour: both allow again. */
    struct lim_op ops[2] = {op(&per_min, "r:/e:2/min|ip:1"), op(&per_hour, "r:/e:10/h|ip:1")};
    assert_true(lim_store_apply(st, ops, 2, T0 + HOUR, 1));
    lim_store_free(st);
}

/* A denied request must not create the entries of the limits that passed. */
static void test_denied_request_creates_nothing(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit one_per_min = mk(LIM_FIXED_WINDOW, 1, MINUTE);
    struct limit big = mk(LIM_SLIDING_WINDOW, 100, HOUR);
    assert_true(one(st, &one_per_min, "tight", T0).allowed);
    assert_int_equal(entries(st), 1);
    struct lim_op ops[2] = {op(&big, "new-key"), op(&one_per_min, "tight")};
    assert_false(lim_store_apply(st, ops, 2, T0 + SEC, 1));
    assert_true(ops[0].decision.allowed);
    assert_int_equal(entries(st), 1);
    /* The new key is still untouched. */
    assert_int_equal(one(st, &big, "new-key", T0 + SEC).remaining, 99);
    lim_store_free(st);
}

static void test_same_key_twice(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit l = mk(LIM_FIXED_WINDOW, 5, MINUTE);
    struct lim_op ops[2];
    for (int i = 0; i < 2; i++) {
        ops[0] = op(&l, "k");
        ops[1] = op(&l, "k");
        assert_true(lim_store_apply(st, ops, 2, T0, 1));
        assert_int_equal(ops[0].decision.remaining, 5 - (2 * i + 1));
        assert_int_equal(ops[1].decision.remaining, 5 - (2 * i + 2));
    }
    /* 4 used: the first op would fit, the second not: nothing is taken. */
    ops[0] = op(&l, "k");
    ops[1] = op(&l, "k");
    assert_false(lim_store_apply(st, ops, 2, T0, 1));
    assert_true(ops[0].decision.allowed);
    assert_false(ops[1].decision.allowed);
    assert_int_equal(entries(st), 1);
    assert_int_equal(one(st, &l, "k", T0).remaining, 0);
    assert_false(one(st, &l, "k", T0).allowed);
    lim_store_free(st);
}

/* More ops than fit on the stack, with repeats and several shards. */
static void test_many_ops_in_one_request(void **state)
{
    struct lim_store *st = lim_store_new(1000, 4);
    struct limit l = mk(LIM_FIXED_WINDOW, 3, MINUTE);
    char keys[40][16];
    struct lim_op ops[40];
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i % 20);
        ops[i] = op(&l, keys[i]);
    }
    assert_true(lim_store_apply(st, ops, 40, T0, 1));
    assert_int_equal(entries(st), 20);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ops[i].decision.remaining, i < 20 ? 2 : 1);
    assert_false(lim_store_apply(st, ops, 40, T0, 1)); /* would need 4 of 3 */
    assert_int_equal(one(st, &l, "k7", T0).remaining, 0);
    lim_store_free(st);
}

/* ---- keys ------------------------------------------------------------- */

static void test_long_keys_digest(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit l = mk(LIM_FIXED_WINDOW, 3, MINUTE);
    char a[300], b[300];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(a));
    b[sizeof(b) - 2] = 'y'; /* differs only in its last byte */

    assert_int_equal(one(st, &l, a, T0).remaining, 2);
    assert_int_equal(one(st, &l, a, T0).remaining, 1);
    assert_int_equal(one(st, &l, b, T0).remaining, 2);
    assert_int_equal(entries(st), 2);

    /* Around the inline limit: keys of 50..53 bytes sharing a prefix, and a
     * key that is a prefix of another, are all distinct counters. */
    for (size_t len = 50; len <= 53; len++) {
        struct lim_op o = op(&l, a);
        o.key_len = len;
        assert_true(lim_store_apply(st, &o, 1, T0, 1));
        assert_int_equal(o.decision.remaining, 2);
        assert_true(lim_store_apply(st, &o, 1, T0, 1));
        assert_int_equal(o.decision.remaining, 1);
    }
    struct lim_op empty = op(&l, "");
    assert_true(lim_store_apply(st, &empty, 1, T0, 1));
    assert_int_equal(empty.decision.remaining, 2);
    assert_int_equal(entries(st), 7);
    assert_int_equal(one(st, &l, a, T0).remaining, 0);
    lim_store_free(st);
}

/* ---- memory bound and eviction ---------------------------------------- */

static void test_eviction_bounds_memory(void **state)
{
    const uint64_t max = 10000;
    struct lim_store *st = lim_store_new(max, 0);
    struct limit l = mk(LIM_SLIDING_WINDOW, 100, HOUR);
    struct lim_store_stats s;
    char key[64];
    uint64_t bytes_at_max = 0;

    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "r:/api/market/:100/h|ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255,
                 i & 255);
        assert_true(one(st, &l, key, T0 + i).allowed);
        if (i == (int)max - 1) {
            lim_store_stats(st, &s);
            bytes_at_max = s.bytes;
        }
    }
    lim_store_stats(st, &s);
    assert_true(s.entries <= max);
    assert_true(s.entries >= max * 9 / 10); /* every shard fills up */
    assert_true(s.evictions >= 20000 - max);
    assert_int_equal(s.entries + s.evictions, 20000);
    /* No growth past the bound, and within the per-identity budget. */
    assert_true(s.bytes <= bytes_at_max);
    assert_true(s.bytes <= 128 * max + 16384);
    /* The most recent identity kept its counter; the oldest was evicted. */
    snprintf(key, sizeof(key), "r:/api/market/:100/h|ip:10.%d.%d.%d", 0, 78, 31); /* 19999 */
    assert_int_equal(one(st, &l, key, T0 + 20000).remaining, 98);
    assert_int_equal(one(st, &l, "r:/api/market/:100/h|ip:10.0.0.0", T0 + 20000).remaining, 99);
    lim_store_free(st);
}

/* max_entries smaller than the shard count still holds exactly. */
static void test_tiny_store(void **state)
{
    struct lim_store *st = lim_store_new(3, 64);
    struct limit l = mk(LIM_FIXED_WINDOW, 5, HOUR);
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "id%d", i);
        assert_true(one(st, &l, key, T0).allowed);
        assert_true(entries(st) <= 3);
    }
    /* A request with more keys than the store can hold is decided in full
     * (the extra counters are simply not kept). */
    struct lim_op ops[5] = {op(&l, "a"), op(&l, "b"), op(&l, "c"), op(&l, "d"), op(&l, "e")};
    assert_true(lim_store_apply(st, ops, 5, T0, 1));
    assert_true(entries(st) <= 3);
    lim_store_free(st);
}

static void test_eviction_prefers_expired(void **state)
{
    /* One shard of 4 entries, so the LRU order is fully known. */
    struct lim_store *st = lim_store_new(4, 1);
    struct limit minute = mk(LIM_FIXED_WINDOW, 10, MINUTE);
    struct limit hour = mk(LIM_FIXED_WINDOW, 10, HOUR);
    struct lim_store_stats s;

    one(st, &hour, "B", T0);   /* LRU tail, live for an hour */
    one(st, &minute, "A", T0); /* expires at T0 + 1 min */
    one(st, &hour, "C", T0);
    one(st, &hour, "D", T0);
    assert_int_equal(entries(st), 4);

    /* Full: E replaces the expired A, not the older but live B. */
    one(st, &hour, "E", T0 + 2 * MINUTE);
    lim_store_stats(st, &s);
    assert_int_equal(s.entries, 4);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(one(st, &hour, "B", T0 + 2 * MINUTE).remaining, 8);

    /* Nothing expired: F evicts the least recently used, now C. */
    one(st, &hour, "F", T0 + 2 * MINUTE);
    lim_store_stats(st, &s);
    assert_int_equal(s.evictions, 1);
    assert_int_equal(one(st, &hour, "D", T0 + 2 * MINUTE).remaining, 8);
    assert_int_equal(one(st, &hour, "C", T0 + 2 * MINUTE).remaining, 9); /* fresh again */
    lim_store_free(st);
}

/* An entry past its expiry reads as a fresh state before any sweep. */
static void test_lazy_expiry(void **state)
{
    struct lim_store *st = lim_store_new(100, 1);
    struct limit gcra = mk(LIM_TOKEN_BUCKET, 2, MINUTE);
    assert_true(one(st, &gcra, "g", T0).allowed);
    assert_true(one(st, &gcra, "g", T0).allowed);
    assert_false(one(st, &gcra, "g", T0).allowed);
    struct lim_decision d = one(st, &gcra, "g", T0 + MINUTE);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(entries(st), 1);
    lim_store_free(st);
}

static void test_sweep_drops_expired(void **state)
{
    struct lim_store *st = lim_store_new(100000, 4);
    struct limit minute = mk(LIM_FIXED_WINDOW, 10, MINUTE);
    struct limit hour = mk(LIM_FIXED_WINDOW, 10, HOUR);
    char key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        one(st, &minute, key, T0);
        snprintf(key, sizeof(key), "h%d", i);
        one(st, &hour, key, T0);
    }
    assert_int_equal(entries(st), 6000);
    assert_int_equal(lim_store_sweep(st, T0 + 30 * SEC, 4), 0);
    /* Round robin: four calls of one shard each cover the store. */
    uint64_t dropped = 0;
    for (int i = 0; i < 4; i++)
        dropped += lim_store_sweep(st, T0 + MINUTE, 1);
    assert_int_equal(dropped, 3000);
    assert_int_equal(entries(st), 3000);
    /* The survivors are intact, and freed slots are reused. */
    assert_int_equal(one(st, &hour, "h1234", T0 + MINUTE).remaining, 8);
    assert_int_equal(one(st, &minute, "m1234", T0 + MINUTE).remaining, 9);
    assert_int_equal(entries(st), 3001);
    assert_int_equal(lim_store_sweep(st, T0 + HOUR, 100), 3001);
    assert_int_equal(entries(st), 0);
    lim_store_free(st);
}

/* ---- concurrency ------------------------------------------------------ */

static void test_concurrency_release_through_store(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit conc = mk(LIM_CONCURRENCY, 2, 0);
    struct limit rate = mk(LIM_FIXED_WINDOW, 100, MINUTE);
    struct lim_op ops[2];

    for (int i = 0; i < 2; i++) {
        ops[0] = op(&rate, "rate|ip:1");
        ops[1] = op(&conc, "conc|ip:1");
        assert_true(lim_store_apply(st, ops, 2, T0, 1));
    }
    ops[0] = op(&rate, "rate|ip:1");
    ops[1] = op(&conc, "conc|ip:1");
    assert_false(lim_store_apply(st, ops, 2, T0, 1));
    assert_int_equal(ops[1].decision.retry_after_us, SEC);

    /* One response ends: its slot comes back; the rate counter does not. */
    lim_store_release(st, ops, 2, 1);
    ops[0] = op(&rate, "rate|ip:1");
    ops[1] = op(&conc, "conc|ip:1");
    assert_true(lim_store_apply(st, ops, 2, T0, 1));
    assert_int_equal(ops[0].decision.remaining, 97);
    assert_int_equal(ops[1].decision.remaining, 0);

    /* Never below zero; unknown keys are ignored. */
    for (int i = 0; i < 5; i++)
        lim_store_release(st, ops, 2, 1);
    struct lim_op ghost = op(&conc, "never-seen");
    lim_store_release(st, &ghost, 1, 1);
    assert_int_equal(entries(st), 2);
    assert_int_equal(one(st, &conc, "conc|ip:1", T0).remaining, 1);
    assert_int_equal(one(st, &conc, "conc|ip:1", T0).remaining, 0);
    /* Held slots never expire; released ones are swept. */
    assert_int_equal(lim_store_sweep(st, T0 + 1000 * HOUR, 1000), 1); /* only the rate entry */
    ops[0] = op(&conc, "conc|ip:1");
    lim_store_release(st, ops, 1, 2);
    assert_int_equal(lim_store_sweep(st, T0, 1000), 1);
    assert_int_equal(entries(st), 0);
    lim_store_free(st);
}

/* ---- against a model -------------------------------------------------- */

#define MODEL_KEYS 3000

struct model {
    char key[MODEL_KEYS][80];
    size_t len[MODEL_KEYS];
    const struct limit *limit[MODEL_KEYS];
    struct lim_state st[MODEL_KEYS];
    int64_t expiry[MODEL_KEYS]; /* 0: no state */
};

static void model_init(struct model *m, const struct limit *limits, int n_limits, uint64_t *seed)
{
    memset(m, 0, sizeof(*m));
    for (int k = 0; k < MODEL_KEYS; k++) {
        /* Short keys, keys around the inline limit, and long (digest) keys. */
        int shape = (int)rng_range(seed, 0, 9);
        int n = snprintf(m->key[k], sizeof(m->key[k]), "r:/api/:%d|ip:10.0.%d.%d", k % n_limits,
                         k / 256, k % 256);
        if (shape >= 7) {
            size_t want = shape == 7 ? LIM_KEY_INLINE : (shape == 8 ? LIM_KEY_INLINE + 1 : 79);
            while ((size_t)n < want)
                m->key[k][n++] = (char)('a' + k % 26);
            m->key[k][want] = '\0';
            n = (int)want;
        }
        m->len[k] = (size_t)n;
        m->limit[k] = &limits[k % n_limits];
    }
}

/* One request of <n> ops on <keys> against the model; fills <want>. */
static bool model_apply(struct model *m, const int *keys, int n, int64_t now, uint32_t cost,
                        struct lim_decision *want)
{
    struct lim_state copy[8];
    bool allowed = true;
    for (int i = 0; i < n; i++) {
        int k = keys[i], first = i;
        for (int j = 0; j < i; j++)
            if (keys[j] == k) {
                first = j;
                break;
            }
        if (first == i)
            copy[i] = m->expiry[k] > now ? m->st[k] : (struct lim_state){0};
        want[i] = lim_apply(m->limit[k], &copy[first], now, cost);
        allowed = allowed && want[i].allowed;
        if (first != i)
            copy[i] = copy[first];
    }
    if (!allowed)
        return false;
    for (int i = 0; i < n; i++) {
        int k = keys[i];
        int first = i;
        for (int j = 0; j < i; j++)
            if (keys[j] == k) {
                first = j;
                break;
            }
        if (first != i)
            continue;
        /* The final copy of the key: the one of its last op. */
        int last = i;
        for (int j = i + 1; j < n; j++)
            if (keys[j] == k)
                last = j;
        m->st[k] = copy[last];
        int64_t x = INT64_MIN;
        for (int j = i; j < n; j++)
            if (keys[j] == k && lim_expiry(m->limit[k], &m->st[k]) > x)
                x = lim_expiry(m->limit[k], &m->st[k]);
        m->expiry[k] = x;
    }
    return true;
}

static void assert_same_decision(const struct lim_decision *a, const struct lim_decision *b,
                                 int iter)
{
    if (a->allowed != b->allowed || a->limit != b->limit || a->remaining != b->remaining ||
        a->reset_us != b->reset_us || a->retry_after_us != b->retry_after_us)
        fail_msg("iter %d: store and model disagree (allowed %d/%d remaining %llu/%llu)", iter,
                 a->allowed, b->allowed, (unsigned long long)a->remaining,
                 (unsigned long long)b->remaining);
}

/* Random requests (1-4 ops, repeats, every algorithm, short/boundary/long
 * keys, cost 1-3), releases and sweeps, with room for every key: the store
 * must decide exactly as plain lim_apply on an array of states, while
 * growing, placing and moving entries underneath. */
static void test_store_matches_model(void **state)
{
    struct limit limits[] = {
        mk(LIM_FIXED_WINDOW, 5, 10 * SEC), mk(LIM_SLIDING_WINDOW, 7, 20 * SEC),
        mk(LIM_TOKEN_BUCKET, 4, 10 * SEC), mk(LIM_CONCURRENCY, 3, 0),
        mk(LIM_SLIDING_WINDOW, 100, HOUR),
    };
    const int n_limits = (int)(sizeof(limits) / sizeof(limits[0]));
    uint64_t seed = 0xabcdef12345ull;
    struct model *m = malloc(sizeof(*m));
    assert_non_null(m);
    model_init(m, limits, n_limits, &seed);
    struct lim_store *st = lim_store_new(MODEL_KEYS, 8);
    int64_t now = T0;
    int allowed = 0;

    for (int iter = 0; iter < 60000; iter++) {
        now += rng_range(&seed, 0, 3) ? rng_range(&seed, 0, 50000) : rng_range(&seed, 0, 30 * SEC);
        /* The active keys drift, so that entries expire, get swept, come back. */
        int base = (int)((iter / 20000) * 700);
        int keys[4];
        struct lim_op ops[4];
        struct lim_decision want[4];
        int n = (int)rng_range(&seed, 1, 4);
        for (int i = 0; i < n; i++) {
            keys[i] = i > 0 && rng_range(&seed, 0, 7) == 0
                          ? keys[0]
                          : base + (int)rng_range(&seed, 0, rng_range(&seed, 0, 1) ? 30 : 1500);
            ops[i].limit = m->limit[keys[i]];
            ops[i].key = m->key[keys[i]];
            ops[i].key_len = m->len[keys[i]];
        }
        uint32_t cost = (uint32_t)rng_range(&seed, 1, 3);
        bool got = lim_store_apply(st, ops, n, now, cost);
        bool exp = model_apply(m, keys, n, now, cost, want);
        if (got != exp)
            fail_msg("iter %d: store %d, model %d", iter, got, exp);
        for (int i = 0; i < n; i++)
            assert_same_decision(&ops[i].decision, &want[i], iter);
        allowed += got;

        if (got && rng_range(&seed, 0, 1)) {
            lim_store_release(st, ops, n, cost);
            for (int i = 0; i < n; i++) {
                int k = keys[i];
                if (m->limit[k]->algorithm != LIM_CONCURRENCY || m->expiry[k] == 0)
                    continue;
                lim_release(m->limit[k], &m->st[k], cost);
                m->expiry[k] = lim_expiry(m->limit[k], &m->st[k]);
            }
        }
        if (iter % 997 == 0) {
            unsigned shards = (unsigned)rng_range(&seed, 1, 10);
            lim_store_sweep(st, now, shards);
            if (shards >= 8) {
                uint64_t live = 0;
                for (int k = 0; k < MODEL_KEYS; k++)
                    live += m->expiry[k] > now;
                assert_int_equal(entries(st), live);
            }
            check_store(st);
        }
    }
    assert_true(allowed > 20000);
    check_store(st);
    lim_store_free(st);
    free(m);
}

/* Full shards under churn: every structure stays consistent, the bound
 * holds, and a request is still all or nothing. */
static void test_store_invariants_under_eviction(void **state)
{
    struct limit limits[] = {mk(LIM_FIXED_WINDOW, 3, MINUTE), mk(LIM_SLIDING_WINDOW, 5, HOUR),
                             mk(LIM_TOKEN_BUCKET, 2, 10 * SEC), mk(LIM_CONCURRENCY, 2, 0)};
    uint64_t seed = 99;
    struct model *m = malloc(sizeof(*m));
    assert_non_null(m);
    model_init(m, limits, 4, &seed);
    struct lim_store *st = lim_store_new(200, 4);
    int64_t now = T0;
    for (int iter = 0; iter < 50000; iter++) {
        now += rng_range(&seed, 0, 200000);
        struct lim_op ops[4];
        int n = (int)rng_range(&seed, 1, 4);
        for (int i = 0; i < n; i++) {
            int k = (int)rng_range(&seed, 0, rng_range(&seed, 0, 3) ? 250 : MODEL_KEYS - 1);
            ops[i].limit = m->limit[k];
            ops[i].key = m->key[k];
            ops[i].key_len = m->len[k];
        }
        bool ok = lim_store_apply(st, ops, n, now, 1);
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && ops[i].decision.allowed;
        assert_int_equal(ok, all);
        if (ok && rng_range(&seed, 0, 2) == 0)
            lim_store_release(st, ops, n, 1);
        if (iter % 500 == 0) {
            check_store(st);
            assert_true(entries(st) <= 200);
        }
        if (iter % 5000 == 0)
            lim_store_sweep(st, now, 2);
    }
    check_store(st);
    struct lim_store_stats s;
    lim_store_stats(st, &s);
    assert_true(s.evictions > 1000);
    assert_true(s.bytes <= 200 * sizeof(struct lim_slot) + 4 * sizeof(struct lim_shard) + 64 +
                               sizeof(struct lim_store));
    lim_store_free(st);
    free(m);
}

/* With one shard filled to its share, most keys sit in their home slot,
 * which is what makes a lookup one cache miss. */
static void test_most_entries_at_home(void **state)
{
    const uint32_t n = 50000;
    struct lim_store *st = lim_store_new(n, 1);
    struct limit l = mk(LIM_SLIDING_WINDOW, 100, HOUR);
    char key[48];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "r:/api/market/:100/h|ip:10.%u.%u.%u", i >> 16, (i >> 8) & 255,
                 i & 255);
        one(st, &l, key, T0);
    }
    uint64_t at_home = check_store(st);
    /* A full table of random homes leaves 1 - 1/e of them claimed. */
    assert_true(at_home > n * 60 / 100);
    lim_store_free(st);
}

/* ---- threads ---------------------------------------------------------- */

struct hammer {
    struct lim_store *st;
    const struct limit *l;
    const char *k1, *k2;
    int allowed;
};

static void *hammer_one_key(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 20000; i++)
        if (one(h->st, h->l, h->k1, T0 + SEC + i).allowed)
            h->allowed++;
    return NULL;
}

static void test_two_threads_one_key_exact(void **state)
{
    struct lim_store *st = lim_store_new(1000, 0);
    struct limit l = mk(LIM_FIXED_WINDOW, 1000, HOUR);
    struct hammer h[2] = {{st, &l, "r:/api/:1000/h|ip:1", NULL, 0},
                          {st, &l, "r:/api/:1000/h|ip:1", NULL, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_one_key, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h[0].allowed + h[1].allowed, 1000);
    lim_store_free(st);
}

/* Two threads take the same pairs of keys in opposite order: the ascending
 * shard order must keep them from deadlocking, and both counters stay exact. */
static void *hammer_pairs(void *arg)
{
    struct hammer *h = arg;
    char a[32], b[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(a, sizeof(a), "%s%d", h->k1, i % 64);
        snprintf(b, sizeof(b), "%s%d", h->k2, i % 64);
        struct lim_op ops[2] = {op(h->l, a), op(h->l, b)};
        if (lim_store_apply(h->st, ops, 2, T0 + SEC, 1))
            h->allowed++;
    }
    return NULL;
}

static void test_two_threads_opposite_order(void **state)
{
    struct lim_store *st = lim_store_new(100000, 16);
    struct limit l = mk(LIM_FIXED_WINDOW, 50, HOUR);
    struct hammer h[2] = {{st, &l, "x", "y", 0}, {st, &l, "y", "x", 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_pairs, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* Each of the 64 pairs (x<i>, y<i>) passes exactly 50 times in total. */
    assert_int_equal(h[0].allowed + h[1].allowed, 64 * 50);
    lim_store_free(st);
}

/* Two threads insert distinct keys into the same shards, so that slabs
 * grow (and entries move) while the other thread prefetches and looks up. */
static void *insert_many(void *arg)
{
    struct hammer *h = arg;
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "%s%d", h->k1, i);
        if (one(h->st, h->l, key, T0 + i).allowed)
            h->allowed++;
    }
    return NULL;
}

static void test_two_threads_growing(void **state)
{
    struct lim_store *st = lim_store_new(100000, 4);
    struct limit l = mk(LIM_FIXED_WINDOW, 1, HOUR);
    struct hammer h[2] = {{st, &l, "left-", NULL, 0}, {st, &l, "right-", NULL, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, insert_many, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h[0].allowed + h[1].allowed, 40000);
    assert_int_equal(check_store(st) <= 40000, 1);
    assert_int_equal(entries(st), 40000);
    /* Every key is still found: a second request is over its 1/h. */
    assert_false(one(st, &l, "left-123", T0 + 1).allowed);
    assert_false(one(st, &l, "right-19999", T0 + 1).allowed);
    lim_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_limit_all_or_nothing),
        cmocka_unit_test(test_denied_request_creates_nothing),
        cmocka_unit_test(test_same_key_twice),
        cmocka_unit_test(test_many_ops_in_one_request),
        cmocka_unit_test(test_long_keys_digest),
        cmocka_unit_test(test_eviction_bounds_memory),
        cmocka_unit_test(test_tiny_store),
        cmocka_unit_test(test_eviction_prefers_expired),
        cmocka_unit_test(test_lazy_expiry),
        cmocka_unit_test(test_sweep_drops_expired),
        cmocka_unit_test(test_concurrency_release_through_store),
        cmocka_unit_test(test_store_matches_model),
        cmocka_unit_test(test_store_invariants_under_eviction),
        cmocka_unit_test(test_most_entries_at_home),
        cmocka_unit_test(test_two_threads_one_key_exact),
        cmocka_unit_test(test_two_threads_opposite_order),
        cmocka_unit_test(test_two_threads_growing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
