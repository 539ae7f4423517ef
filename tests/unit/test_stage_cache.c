/* The cache stage (SPEC 4.1-4.4) run in the real pipeline of a gateway
 * without sockets (fake_gateway.h), in front of a fake upstream that counts
 * its calls: a miss reaches the upstream and is stored, a hit is served from
 * the store without it, what is never stored (other methods, no-store,
 * private, Set-Cookie, bodies over max_object_size), keys (sorted query,
 * credentials), conditional requests, purge by an upstream's tag, and
 * concurrent misses coalesced into one upstream call. */

#include "fake_gateway.h"

#include "cache/cache.h"

#define CONFIG                                                                                     \
    "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"                                             \
    "cache: {max_memory: 16m, max_object_size: 1k}\n"                                              \
    "routes:\n"                                                                                    \
    "  - prefix: /shared/\n"                                                                       \
    "    cache: {ttl: 60s, shared: true}\n"                                                        \
    "  - prefix: /c/\n"                                                                            \
    "    cache: {ttl: 60s}\n"                                                                      \
    "  - prefix: /\n"

#define BODY "{\"quotes\": [1, 2, 3], \"source\": \"upstream\"}\n"

static void assert_x_cache(const struct fake_resp *r, const char *want)
{
    const char *v = fake_header(r, "X-Cache");
    if (!v || strcmp(v, want) != 0)
        fail_msg("X-Cache: %s, wanted %s", v ? v : "(none)", want);
    assert_int_equal(fake_header_count(r, "X-Cache"), 1);
}

/* <r> was served from the cache: the body the upstream sent, Age 0 or 1. */
static void assert_hit(const struct fake_resp *r, const char *body)
{
    assert_int_equal(r->ends, 1);
    assert_x_cache(r, "HIT");
    long long age = fake_header_ll(r, "Age");
    assert_true(age >= 0 && age <= 1);
    assert_string_equal(r->body, body);
    assert_int_equal(r->content_length, (int64_t)strlen(body));
}

static struct fake_gw *start(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    fx->up.body = BODY;
    fx->up.headers[0] = "Content-Type";
    fx->up.headers[1] = "application/json";
    return fx;
}

static void test_cache_miss_then_hit(void **state)
{
    struct fake_gw *fx = start(state);
    struct fake_resp *r = fake_request(fx, "GET", "/c/quotes", NULL);
    assert_int_equal(r->status, 200);
    assert_x_cache(r, "MISS");
    assert_string_equal(r->body, BODY);
    assert_int_equal(fake_header_count(r, "Age"), 0);
    assert_int_equal(fx->up.calls, 1);

    for (int i = 0; i < 2; i++) {
        r = fake_request(fx, "GET", "/c/quotes", NULL);
        assert_int_equal(r->status, 200);
        assert_hit(r, BODY);
        assert_string_equal(fake_header(r, "Content-Type"), "application/json");
    }
    assert_int_equal(fx->up.calls, 1);

    /* HEAD shares GET's entry: the head without the body. */
    r = fake_request(fx, "HEAD", "/c/quotes", NULL);
    assert_x_cache(r, "HIT");
    assert_true(r->no_body);
    assert_int_equal(r->body_len, 0);
    assert_int_equal(r->content_length, (int64_t)strlen(BODY));
    assert_int_equal(fx->up.calls, 1);

    /* Another path is another entry; a route without cache is not cached. */
    assert_x_cache(fake_request(fx, "GET", "/c/other", NULL), "MISS");
    r = fake_request(fx, "GET", "/plain", NULL);
    assert_int_equal(fake_header_count(r, "X-Cache"), 0);
    r = fake_request(fx, "GET", "/plain", NULL);
    assert_int_equal(fake_header_count(r, "X-Cache"), 0);
    assert_int_equal(fx->up.calls, 4);
}

/* Only GET and HEAD are cached; a POST neither uses nor fills an entry. */
static void test_cache_post_bypass(void **state)
{
    struct fake_gw *fx = start(state);
    for (int i = 0; i < 2; i++) {
        struct fake_resp *r = fake_request(fx, "POST", "/c/orders", NULL);
        assert_x_cache(r, "BYPASS");
        assert_string_equal(r->body, BODY);
    }
    assert_int_equal(fx->up.calls, 2);
    assert_x_cache(fake_request(fx, "GET", "/c/orders", NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/orders", NULL), BODY);
    /* And a POST after it still goes to the upstream. */
    assert_x_cache(fake_request(fx, "POST", "/c/orders", NULL), "BYPASS");
    assert_int_equal(fx->up.calls, 4);
}

/* Responses the upstream marks no-store or private, or that set a cookie,
 * are passed on and never stored (SPEC 4.2). */
static void test_cache_not_stored(void **state)
{
    struct fake_gw *fx = start(state);
    static const char *const cases[][2] = {
        {"Cache-Control", "no-store"},
        {"Cache-Control", "private, max-age=600"},
        {"Set-Cookie", "session=1; HttpOnly"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx->up.headers[2] = cases[i][0];
        fx->up.headers[3] = cases[i][1];
        char path[32];
        snprintf(path, sizeof(path), "/c/case%zu", i);
        int before = fx->up.calls;
        for (int k = 0; k < 2; k++) {
            struct fake_resp *r = fake_request(fx, "GET", path, NULL);
            assert_x_cache(r, "MISS");
            assert_string_equal(r->body, BODY);
            assert_string_equal(fake_header(r, cases[i][0]), cases[i][1]);
        }
        if (fx->up.calls != before + 2)
            fail_msg("%s: %s was stored", cases[i][0], cases[i][1]);
    }
    /* The control: without them the same response is stored. */
    fx->up.headers[2] = NULL;
    assert_x_cache(fake_request(fx, "GET", "/c/control", NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/control", NULL), BODY);
}

/* A body over cache.max_object_size streams through uncached. */
static void test_cache_object_too_big(void **state)
{
    struct fake_gw *fx = start(state);
    char big[1500];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fx->up.body = big;
    fx->up.chunks = 3;
    for (int i = 0; i < 2; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/c/big", NULL);
        assert_x_cache(r, "MISS");
        assert_string_equal(r->body, big);
    }
    assert_int_equal(fx->up.calls, 2);
}

/* The cache's response filter sees exactly what the upstream sends: the
 * entry serves back its status, headers in order (and the ETag and
 * Cache-Tag it understood), and the body sent in parts, byte for byte. */
static void test_cache_filter_keeps_what_upstream_sent(void **state)
{
    struct fake_gw *fx = start(state);
    static const char *const sent[] = {
        "Content-Type", "text/plain; charset=utf-8",
        "X-Upstream",   "one",
        "ETag",         "\"v1\"",
        "Cache-Tag",    "news, front",
    };
    for (int i = 0; i < 8; i++)
        fx->up.headers[i] = sent[i];
    fx->up.status = 203;
    fx->up.chunks = 3;
    fx->up.body = "part one; part two; part three\n";

    struct fake_resp *miss = fake_request(fx, "GET", "/c/story", NULL);
    assert_int_equal(miss->status, 203);
    assert_int_equal(miss->body_calls, 3);
    struct fake_resp *hit = fake_request(fx, "GET", "/c/story", NULL);
    assert_int_equal(hit->status, 203);
    assert_x_cache(hit, "HIT");
    assert_string_equal(hit->body, miss->body);
    assert_int_equal(hit->body_len, strlen(fx->up.body));
    for (const struct fake_resp *r = miss; r; r = r == miss ? hit : NULL) {
        assert_true(r->n_headers >= 4);
        for (int i = 0; i < 4; i++) {
            assert_string_equal(r->headers[i].name, sent[2 * i]);
            assert_string_equal(r->headers[i].value, sent[2 * i + 1]);
        }
    }
    assert_int_equal(fx->up.calls, 1);

    /* The ETag it kept answers a conditional request. */
    struct fake_resp *r =
        fake_request(fx, "GET", "/c/story", "If-None-Match", "\"v0\", \"v1\"", NULL);
    assert_int_equal(r->status, 304);
    assert_true(r->no_body);
    assert_int_equal(r->body_len, 0);
    r = fake_request(fx, "GET", "/c/story", "If-None-Match", "\"v2\"", NULL);
    assert_hit(r, fx->up.body);
    assert_int_equal(r->status, 203);
    assert_int_equal(fx->up.calls, 1);

    /* The tags it kept purge it. */
    struct cache *c = fx->gw.ctx[MOD_cache];
    assert_int_equal(cache_purge(c, CACHE_PURGE_TAG, "sports"), 0);
    assert_int_equal(cache_purge(c, CACHE_PURGE_TAG, "front"), 1);
    assert_x_cache(fake_request(fx, "GET", "/c/story", NULL), "MISS");
    assert_int_equal(fx->up.calls, 2);
}

/* Query parameters are sorted in the key; the client's no-cache skips the
 * entry and refreshes it. */
static void test_cache_keys(void **state)
{
    struct fake_gw *fx = start(state);
    assert_x_cache(fake_request(fx, "GET", "/c/q?b=2&a=1", NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/q?a=1&b=2", NULL), BODY);
    assert_x_cache(fake_request(fx, "GET", "/c/q?a=1&b=3", NULL), "MISS");
    assert_x_cache(fake_request(fx, "GET", "/c/q?a=1&b=2", "Cache-Control", "no-cache", NULL),
                   "MISS");
    assert_int_equal(fx->up.calls, 3);
    /* Another host is another entry. */
    assert_x_cache(fake_request(fx, "GET", "/c/q?a=1&b=2", "Host", "other.test", NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/q?a=1&b=2", "Host", "API.test", NULL), BODY);
}

/* A response to a request with credentials is kept for those credentials
 * only, unless the route's cache is shared (SPEC 4.1). */
static void test_cache_credentials(void **state)
{
    struct fake_gw *fx = start(state);
    const char *a = "Basic YWxpY2U6MQ==", *b = "Basic Ym9iOjI=";
    assert_x_cache(fake_request(fx, "GET", "/c/me", "Authorization", a, NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/me", "Authorization", a, NULL), BODY);
    assert_x_cache(fake_request(fx, "GET", "/c/me", "Authorization", b, NULL), "MISS");
    assert_x_cache(fake_request(fx, "GET", "/c/me", NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/c/me", NULL), BODY);
    assert_int_equal(fx->up.calls, 3);

    assert_x_cache(fake_request(fx, "GET", "/shared/x", "Authorization", a, NULL), "MISS");
    assert_hit(fake_request(fx, "GET", "/shared/x", "Authorization", b, NULL), BODY);
    assert_hit(fake_request(fx, "GET", "/shared/x", NULL), BODY);
    assert_int_equal(fx->up.calls, 4);
}

/* Two misses for one key at once: one upstream request; the second waits
 * for it and is served from the entry it filled (SPEC 4.3). */
static void test_cache_coalesced_misses(void **state)
{
    struct fake_gw *fx = start(state);
    fx->up.defer = true;
    struct fake_resp *first = fake_start(fx, "GET", "/c/hot", NULL);
    exchange_run(first->x);
    assert_int_equal(fx->up.calls, 1);
    struct fake_resp *second = fake_start(fx, "GET", "/c/hot", NULL);
    exchange_run(second->x);
    for (int i = 0; i < 20; i++)
        fake_gw_step(fx, 1);
    assert_int_equal(second->heads, 0); /* still waiting */
    assert_int_equal(fx->up.calls, 1);

    fake_upstream_answer(fx);
    assert_x_cache(first, "MISS");
    assert_string_equal(first->body, BODY);
    fake_done(first); /* the fill ends with its exchange */
    fake_wait(second);
    assert_hit(second, BODY);
    assert_int_equal(fx->up.calls, 1);
}

#define T(f) cmocka_unit_test_teardown(f, fake_gw_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_cache_miss_then_hit),
        T(test_cache_post_bypass),
        T(test_cache_not_stored),
        T(test_cache_object_too_big),
        T(test_cache_filter_keeps_what_upstream_sent),
        T(test_cache_keys),
        T(test_cache_credentials),
        T(test_cache_coalesced_misses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
