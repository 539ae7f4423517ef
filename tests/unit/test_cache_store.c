/* Unit tests of src/cache/store.c: round trip, replacement, readers'
 * references outliving purges, replacements and evictions (under ASan, a
 * use after free would abort), LRU order, the byte budget under 10x
 * max_bytes of distinct objects, oversize entries, every purge kind, the
 * Vary index and its bound, and two threads mixing puts, gets and purges
 * followed by a check of the tables' invariants. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The store's source itself, so that the tests can check its internal
 * invariants (as h2o's t/00unit does); its public functions then come from
 * here rather than from sluice_core. */
#include "cache/store.c"

/* ---- helpers ------------------------------------------------------------ */

/* An entry under <key> whose url is <url> and whose body is the key followed
 * by <pad> bytes of 'x', so a reader can tell whose body it holds. */
static struct cache_entry *mk(const char *key, const char *url, size_t pad, const char *const *tags,
                              int n_tags)
{
    size_t klen = strlen(key);
    char *body = malloc(klen + pad + 1);
    memcpy(body, key, klen);
    memset(body + klen, 'x', pad);
    struct cache_entry *e =
        cache_entry_new(key, klen, url, strlen(url), 200, "Content-Type: text/plain\r\n", 26, body,
                        klen + pad, "\"v1\"", 784111777, tags, n_tags);
    free(body);
    return e;
}

static bool body_is_for(const struct cache_entry *e, const char *key)
{
    size_t klen = strlen(key);
    if (e->key_len != klen || memcmp(e->key, key, klen) != 0 || e->body_len < klen ||
        memcmp(e->body, key, klen) != 0)
        return false;
    for (size_t i = klen; i < e->body_len; i++)
        if (e->body[i] != 'x')
            return false;
    return true;
}

static bool present(struct cache_store *st, const char *key)
{
    struct cache_entry *e = cache_store_get(st, key, strlen(key));
    if (!e)
        return false;
    cache_entry_unref(e);
    return true;
}

static struct cache_store_stats stats(struct cache_store *st)
{
    struct cache_store_stats s;
    cache_store_stats(st, &s);
    return s;
}

/* The invariants of one table: every node in its bucket, the chains and the
 * LRU list holding the same nodes, count and bytes their sums, within the
 * budget. Returns the count. */
static uint64_t check_table(const struct cache_table *t, uint64_t *bytes)
{
    uint64_t in_buckets = 0, sum = 0;
    for (size_t b = 0; b <= t->mask; b++) {
        for (struct cache_node *n = t->buckets[b]; n; n = n->chain) {
            assert_int_equal(n->hash & t->mask, b);
            in_buckets++;
            sum += n->size;
        }
    }
    uint64_t in_lru = 0;
    const struct cache_node *newer = NULL;
    for (struct cache_node *n = t->newest; n; n = n->older) {
        assert_ptr_equal(n->newer, newer);
        assert_ptr_equal(cache_table_find(t, n->hash, n->key, n->key_len), n);
        newer = n;
        in_lru++;
    }
    assert_ptr_equal(t->oldest, newer);
    assert_int_equal(in_buckets, t->count);
    assert_int_equal(in_lru, t->count);
    assert_int_equal(sum, t->bytes);
    assert_true(t->bytes <= t->max_bytes);
    *bytes = sum;
    return in_buckets;
}

/* Every shard's invariants; with no reader holding any entry, each stored
 * entry holds exactly the store's reference. The stats must equal the sums. */
static void check_store(struct cache_store *st)
{
    uint64_t entries = 0, bytes = 0;
    for (unsigned s = 0; s < st->n_shards; s++) {
        struct cache_shard *sh = &st->shards[s];
        uint64_t b, vb;
        entries += check_table(&sh->entries, &b);
        bytes += b;
        for (struct cache_node *n = sh->entries.newest; n; n = n->older)
            assert_int_equal(cache_item_of(n)->e.refs, 1);
        check_table(&sh->vary, &vb);
    }
    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, entries);
    assert_int_equal(s.bytes, bytes);
}

/* ---- tests -------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct cache_store *st = cache_store_new(1 << 20, 4);
    const char *tags[] = {"users", "api"};
    struct cache_entry *e = mk("GET|example.com/a", "example.com/a", 100, tags, 2);
    size_t size = cache_entry_size(e);
    /* Everything allocated is charged, plus bookkeeping. */
    assert_true(size > sizeof(struct cache_entry) + e->key_len + e->url_len + e->head_len +
                           e->body_len + strlen(e->etag) + 2 * sizeof(char *) + 9);
    assert_true(cache_store_put(st, e));
    assert_null(cache_store_get(st, "GET|example.com/b", 17));

    struct cache_entry *g = cache_store_get(st, "GET|example.com/a", 17);
    assert_ptr_equal(g, e);
    assert_int_equal(g->refs, 2);
    assert_true(body_is_for(g, "GET|example.com/a"));
    assert_int_equal(g->status, 200);
    assert_string_equal(g->url, "example.com/a");
    assert_string_equal(g->head, "Content-Type: text/plain\r\n");
    assert_string_equal(g->etag, "\"v1\"");
    assert_int_equal(g->last_modified, 784111777);
    assert_int_equal(g->n_tags, 2);
    assert_string_equal(g->tags[0], "users");
    assert_string_equal(g->tags[1], "api");
    cache_entry_unref(g);

    /* No etag, no tags. */
    struct cache_entry *n =
        cache_entry_new("k", 1, "u", 1, 204, NULL, 0, NULL, 0, NULL, -1, NULL, 0);
    assert_null(n->etag);
    assert_null(n->tags);
    assert_int_equal(n->body_len, 0);
    assert_true(cache_store_put(st, n));

    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, 2);
    assert_int_equal(s.bytes, size + cache_entry_size(n));
    assert_int_equal(s.evictions, 0);
    check_store(st);
    cache_store_free(st);
}

static void test_replacement(void **state)
{
    struct cache_store *st = cache_store_new(1 << 20, 2);
    assert_true(cache_store_put(st, mk("k", "example.com/k", 10, NULL, 0)));
    struct cache_entry *v2 = mk("k", "example.com/k2", 500, NULL, 0);
    assert_true(cache_store_put(st, v2));
    struct cache_entry *g = cache_store_get(st, "k", 1);
    assert_ptr_equal(g, v2);
    assert_string_equal(g->url, "example.com/k2");
    cache_entry_unref(g);
    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.bytes, cache_entry_size(v2));
    assert_int_equal(s.evictions, 0); /* a replacement is not an eviction */
    check_store(st);
    cache_store_free(st);
}

/* A reader's reference keeps its entry readable after the store lets go of
 * it, in each of the three ways the store does. ASan turns a premature free
 * into an abort here. */
static void test_reader_survives(void **state)
{
    struct cache_entry *e1 = mk("a", "example.com/a", 1000, NULL, 0);
    size_t size = cache_entry_size(e1);
    struct cache_store *st = cache_store_new(3 * size, 1);
    assert_true(cache_store_put(st, e1));

    /* Purge. */
    struct cache_entry *r = cache_store_get(st, "a", 1);
    assert_int_equal(cache_store_purge_url(st, "example.com/a", 13), 1);
    assert_false(present(st, "a"));
    assert_int_equal(r->refs, 1);
    assert_true(body_is_for(r, "a"));
    cache_entry_unref(r);

    /* Replacement. */
    assert_true(cache_store_put(st, mk("a", "example.com/a", 1000, NULL, 0)));
    r = cache_store_get(st, "a", 1);
    assert_true(cache_store_put(st, mk("a", "example.com/a2", 1000, NULL, 0)));
    assert_int_equal(r->refs, 1);
    assert_true(body_is_for(r, "a"));
    assert_string_equal(r->url, "example.com/a");
    cache_entry_unref(r);

    /* Eviction: three more entries of the same size push "a" out. */
    r = cache_store_get(st, "a", 1);
    assert_true(cache_store_put(st, mk("b", "example.com/b", 1000, NULL, 0)));
    assert_true(cache_store_put(st, mk("c", "example.com/c", 1000, NULL, 0)));
    assert_true(cache_store_put(st, mk("d", "example.com/d", 1000, NULL, 0)));
    assert_false(present(st, "a"));
    assert_int_equal(stats(st).evictions, 1);
    assert_int_equal(r->refs, 1);
    assert_true(body_is_for(r, "a"));
    cache_entry_unref(r);

    /* Store freed first: the reader still holds a valid entry. */
    r = cache_store_get(st, "d", 1);
    cache_store_free(st);
    assert_int_equal(r->refs, 1);
    assert_true(body_is_for(r, "d"));
    cache_entry_unref(r);
}

static void test_lru_order(void **state)
{
    struct cache_entry *a = mk("a", "example.com/a", 100, NULL, 0);
    size_t size = cache_entry_size(a);
    struct cache_store *st = cache_store_new(3 * size + size / 2, 1);
    assert_true(cache_store_put(st, a));
    assert_true(cache_store_put(st, mk("b", "example.com/b", 100, NULL, 0)));
    assert_true(cache_store_put(st, mk("c", "example.com/c", 100, NULL, 0)));
    assert_true(present(st, "a")); /* a is now the most recently used: b goes first */
    assert_true(cache_store_put(st, mk("d", "example.com/d", 100, NULL, 0)));
    assert_false(present(st, "b"));
    assert_true(present(st, "c")); /* c refreshed: a is the oldest now */
    assert_true(cache_store_put(st, mk("e", "example.com/e", 100, NULL, 0)));
    assert_false(present(st, "a"));
    assert_true(present(st, "c"));
    assert_true(present(st, "d"));
    assert_true(present(st, "e"));
    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, 3);
    assert_int_equal(s.evictions, 2);
    check_store(st);
    cache_store_free(st);
}

static void test_byte_budget(void **state)
{
    const uint64_t max = 64 << 10;
    struct cache_store *st = cache_store_new(max, 4);
    unsigned seed = 7;
    uint64_t offered = 0, stored = 0;
    char key[32];
    for (int i = 0; offered < 10 * max; i++) {
        snprintf(key, sizeof(key), "GET|k%d", i);
        struct cache_entry *e = mk(key, key + 4, (size_t)(rand_r(&seed) % 3000), NULL, 0);
        offered += cache_entry_size(e);
        stored += cache_store_put(st, e);
        struct cache_store_stats s = stats(st);
        assert_true(s.bytes <= max);
    }
    struct cache_store_stats s = stats(st);
    assert_true(s.bytes <= max);
    assert_true(s.bytes > max / 2); /* the budget is used, not just respected */
    assert_true(s.evictions > 0);
    /* Distinct keys, no purge: every stored entry is either there or evicted. */
    assert_int_equal(s.entries + s.evictions, stored);
    check_store(st);
    cache_store_free(st);
}

static void test_oversize(void **state)
{
    struct cache_store *st = cache_store_new(8192, 2); /* share: 4096 per shard */
    assert_false(cache_store_put(st, mk("big", "example.com/big", 4096, NULL, 0)));
    assert_false(present(st, "big"));
    assert_int_equal(stats(st).entries, 0);
    assert_true(cache_store_put(st, mk("small", "example.com/small", 1000, NULL, 0)));
    /* An oversize replacement leaves the old entry in place. */
    assert_false(cache_store_put(st, mk("small", "example.com/small", 5000, NULL, 0)));
    assert_true(present(st, "small"));
    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.evictions, 0);
    check_store(st);
    cache_store_free(st);
}

/* The entries the purge tests start from. */
static struct cache_store *purge_fixture(void)
{
    struct cache_store *st = cache_store_new(1 << 20, 4);
    const char *users[] = {"users", "api"};
    const char *orders[] = {"orders", "api"};
    const char *stat[] = {"static"};
    struct {
        const char *key, *url;
        const char *const *tags;
        int n_tags;
    } rows[] = {
        {"GET|example.com/api/users/v1/list", "example.com/api/users/v1/list", users, 2},
        {"GET|example.com/api/users/v1/list|gzip", "example.com/api/users/v1/list", users, 2},
        {"GET|example.com/api/users/v2/list", "example.com/api/users/v2/list", users, 2},
        {"GET|example.com/api/orders/v1", "example.com/api/orders/v1", orders, 2},
        {"GET|example.com/api/orders/v10?a=1", "example.com/api/orders/v10?a=1", orders, 2},
        {"GET|example.com/static/app.css", "example.com/static/app.css", stat, 1},
        {"GET|example.org/api/users/v1", "example.org/api/users/v1", NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_true(
            cache_store_put(st, mk(rows[i].key, rows[i].url, 50, rows[i].tags, rows[i].n_tags)));
    assert_int_equal(stats(st).entries, 7);
    return st;
}

static void test_purges(void **state)
{
    /* Exact url: both variants of one url, nothing else. */
    struct cache_store *st = purge_fixture();
    assert_int_equal(cache_store_purge_url(st, "example.com/api/users/v1/list", 29), 2);
    assert_int_equal(cache_store_purge_url(st, "example.com/api/users/v1/list", 29), 0);
    assert_int_equal(cache_store_purge_url(st, "example.com/api/users/v1", 24), 0);
    assert_int_equal(stats(st).entries, 5);
    check_store(st);
    cache_store_free(st);

    /* Prefix. */
    st = purge_fixture();
    assert_int_equal(cache_store_purge_prefix(st, "example.com/api/", 16), 5);
    assert_false(present(st, "GET|example.com/api/orders/v1"));
    assert_true(present(st, "GET|example.com/static/app.css"));
    assert_true(present(st, "GET|example.org/api/users/v1"));
    assert_int_equal(cache_store_purge_prefix(st, "example.", 8), 2);
    assert_int_equal(stats(st).entries, 0);
    check_store(st);
    cache_store_free(st);

    /* Glob pattern: '*' spans any run, including '/'. */
    st = purge_fixture();
    assert_int_equal(cache_store_purge_pattern(st, "example.com/api/*/v1*"), 4);
    assert_true(present(st, "GET|example.com/api/users/v2/list"));
    assert_true(present(st, "GET|example.com/static/app.css"));
    assert_true(present(st, "GET|example.org/api/users/v1"));
    assert_int_equal(cache_store_purge_pattern(st, "*.css"), 1);
    assert_int_equal(cache_store_purge_pattern(st, "example.?r?/api/users/v?"), 1);
    assert_int_equal(cache_store_purge_pattern(st, "nothing*"), 0);
    assert_int_equal(stats(st).entries, 1);
    check_store(st);
    cache_store_free(st);

    /* Tag: any of an entry's tags, matched exactly. */
    st = purge_fixture();
    assert_int_equal(cache_store_purge_tag(st, "user"), 0);
    assert_int_equal(cache_store_purge_tag(st, "users"), 3);
    assert_int_equal(cache_store_purge_tag(st, "api"), 2);
    assert_int_equal(cache_store_purge_tag(st, "static"), 1);
    assert_int_equal(stats(st).entries, 1);
    check_store(st);
    cache_store_free(st);

    /* All. */
    st = purge_fixture();
    uint64_t before = stats(st).bytes;
    assert_true(before > 0);
    assert_int_equal(cache_store_purge_all(st), 7);
    assert_int_equal(cache_store_purge_all(st), 0);
    struct cache_store_stats s = stats(st);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.evictions, 0); /* purges are not evictions */
    check_store(st);
    cache_store_free(st);
}

static void test_vary(void **state)
{
    struct cache_store *st = cache_store_new(1 << 20, 4);
    char out[64];
    assert_false(cache_store_get_vary(st, "GET|example.com/a", 17, out, sizeof(out)));
    cache_store_set_vary(st, "GET|example.com/a", 17, "accept-encoding,accept-language");
    assert_true(cache_store_get_vary(st, "GET|example.com/a", 17, out, sizeof(out)));
    assert_string_equal(out, "accept-encoding,accept-language");
    /* A buffer too small for the names and their NUL: unknown, not truncated. */
    assert_false(cache_store_get_vary(st, "GET|example.com/a", 17, out, 31));
    assert_true(cache_store_get_vary(st, "GET|example.com/a", 17, out, 32));
    /* The last names seen win; "" means no Vary. */
    cache_store_set_vary(st, "GET|example.com/a", 17, "");
    assert_true(cache_store_get_vary(st, "GET|example.com/a", 17, out, sizeof(out)));
    assert_string_equal(out, "");
    cache_store_set_vary(st, "GET|example.com/b", 17, "accept");
    assert_true(cache_store_get_vary(st, "GET|example.com/b", 17, out, sizeof(out)));
    assert_string_equal(out, "accept");
    assert_true(cache_store_get_vary(st, "GET|example.com/a", 17, out, sizeof(out)));
    assert_string_equal(out, "");
    /* Entries' purges leave the index alone; it is not counted in the stats. */
    assert_int_equal(cache_store_purge_all(st), 0);
    assert_true(cache_store_get_vary(st, "GET|example.com/b", 17, out, sizeof(out)));
    assert_int_equal(stats(st).bytes, 0);
    check_store(st);
    cache_store_free(st);

    /* Bounded: one shard with the minimum Vary budget; the least recently
     * used records go first. */
    st = cache_store_new(1 << 16, 1);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "GET|example.com/%d", i);
        cache_store_set_vary(st, key, strlen(key), "accept-encoding");
        if (i >= 1)
            assert_true(cache_store_get_vary(st, "GET|example.com/0", 17, out, sizeof(out)));
    }
    struct cache_table *vt = &st->shards[0].vary;
    assert_true(vt->bytes <= CACHE_VARY_MIN_BYTES);
    assert_true(vt->count > 10 && vt->count < 1000);
    assert_true(cache_store_get_vary(st, "GET|example.com/0", 17, out, sizeof(out)));
    assert_true(cache_store_get_vary(st, "GET|example.com/999", 19, out, sizeof(out)));
    assert_false(cache_store_get_vary(st, "GET|example.com/1", 17, out, sizeof(out)));
    check_store(st);
    cache_store_free(st);
}

/* A purge scans a shard a slice of buckets per hold of its lock; the table
 * may double between two slices. Every entry there when the purge started
 * must still be met: here the table grows twice after the first slice. */
static void test_purge_slices_survive_growth(void **state)
{
    struct cache_store *st = cache_store_new(256u << 20, 1);
    struct cache_table *t = &st->shards[0].entries;
    char key[48], url[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(url, sizeof(url), "old/%d", i);
        snprintf(key, sizeof(key), "GET|%s", url);
        assert_true(cache_store_put(st, mk(key, url, 10, NULL, 0)));
    }
    size_t buckets_before = t->mask + 1;
    assert_true(buckets_before > CACHE_PURGE_SLICE);

    size_t b = 0;
    struct cache_node *dead = NULL;
    uint64_t removed = cache_table_purge_slice(t, &b, cache_match_prefix, "old/", 4, &dead);
    cache_release_entries(dead);
    assert_int_equal(b, CACHE_PURGE_SLICE);
    for (int i = 0; i < 9000; i++) {
        snprintf(url, sizeof(url), "new/%d", i);
        snprintf(key, sizeof(key), "GET|%s", url);
        assert_true(cache_store_put(st, mk(key, url, 10, NULL, 0)));
    }
    assert_true(t->mask + 1 >= 4 * buckets_before);
    while (b <= t->mask) {
        dead = NULL;
        removed += cache_table_purge_slice(t, &b, cache_match_prefix, "old/", 4, &dead);
        cache_release_entries(dead);
    }
    assert_int_equal(removed, 3000);
    assert_int_equal(stats(st).entries, 9000);
    assert_false(present(st, "GET|old/0"));
    assert_false(present(st, "GET|old/2999"));
    assert_true(present(st, "GET|new/8999"));
    check_store(st);

    /* Through the public function: many slices, every shard. */
    assert_int_equal(cache_store_purge_pattern(st, "new/*9"), 900);
    assert_int_equal(cache_store_purge_prefix(st, "new/", 4), 8100);
    check_store(st);
    cache_store_free(st);
}

/* ---- two threads -------------------------------------------------------- */

#define THREAD_KEYS 200
#define THREAD_ITERS 40000

struct worker {
    struct cache_store *st;
    unsigned seed;
    uint64_t hits;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char key[48], url[32];
    const char *tags[] = {"even", "odd"};
    for (int i = 0; i < THREAD_ITERS; i++) {
        int k = (int)(rand_r(&w->seed) % THREAD_KEYS);
        snprintf(url, sizeof(url), "h/%d/%d", k % 10, k);
        snprintf(key, sizeof(key), "GET|%s", url);
        unsigned op = rand_r(&w->seed) % 100;
        if (op < 50) {
            struct cache_entry *e = cache_store_get(w->st, key, strlen(key));
            if (e) {
                /* Read it after a little while, as a slow socket would. */
                if (op % 8 == 0)
                    sched_yield();
                if (!body_is_for(e, key))
                    abort(); /* cmocka's asserts are not for other threads */
                w->hits++;
                cache_entry_unref(e);
            }
        } else if (op < 92) {
            cache_store_put(w->st,
                            mk(key, url, (size_t)(rand_r(&w->seed) % 2000), &tags[k % 2], 1));
        } else if (op < 95) {
            cache_store_purge_url(w->st, url, strlen(url));
        } else if (op < 97) {
            char prefix[8];
            snprintf(prefix, sizeof(prefix), "h/%d/", k % 10);
            cache_store_purge_prefix(w->st, prefix, strlen(prefix));
        } else if (op < 98) {
            cache_store_purge_pattern(w->st, "h/?/1*");
        } else if (op < 99) {
            cache_store_purge_tag(w->st, tags[k % 2]);
        } else if (i % 7 == 0) {
            cache_store_purge_all(w->st);
        } else {
            cache_store_set_vary(w->st, key, strlen(key), "accept");
        }
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    /* Small enough that evictions happen all the time. */
    struct cache_store *st = cache_store_new(96 << 10, 4);
    struct worker w[2] = {{st, 1, 0}, {st, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(w[0].hits + w[1].hits > 0);
    struct cache_store_stats s = stats(st);
    assert_true(s.evictions > 0);
    assert_true(s.bytes <= 96 << 10);
    check_store(st);
    cache_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_replacement),
        cmocka_unit_test(test_reader_survives),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_purges),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_purge_slices_survive_growth),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
