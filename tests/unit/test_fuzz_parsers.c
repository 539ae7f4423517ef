/* Seeded random and mutated inputs into every parser that reads what
 * clients, upstreams or operators write: no crash (ASan/UBSan in make test),
 * and the invariants each parser promises. Bounded: a few seconds at most. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/rules.h"
#include "conf/conf.h"
#include "guard/client_ip.h"
#include "limit/limit.h"
#include "util/buf.h"
#include "util/url.h"

#define ROUNDS 100000

static uint64_t rng_state = 0x5eed5eed2026ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bytes biased towards the characters parsers care about. */
static size_t random_input(char *out, size_t cap, const char *alphabet)
{
    size_t n = rnd() % cap;
    size_t alen = strlen(alphabet);
    for (size_t i = 0; i < n; i++)
        out[i] = (rnd() % 8) ? alphabet[rnd() % alen] : (char)(rnd() % 256);
    return n;
}

/* <seed> with a few bytes flipped, inserted or deleted. */
static size_t mutate(const char *seed, char *out, size_t cap, const char *alphabet)
{
    size_t n = strlen(seed);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, seed, n);
    size_t alen = strlen(alphabet);
    for (int k = (int)(rnd() % 4) + 1; k > 0; k--) {
        size_t pos = n ? rnd() % n : 0;
        switch (rnd() % 3) {
        case 0:
            if (n)
                out[pos] = alphabet[rnd() % alen];
            break;
        case 1:
            if (n + 1 < cap) {
                memmove(out + pos + 1, out + pos, n - pos);
                out[pos] = alphabet[rnd() % alen];
                n++;
            }
            break;
        default:
            if (n) {
                memmove(out + pos, out + pos + 1, n - pos - 1);
                n--;
            }
            break;
        }
    }
    return n;
}

static void test_url_normalize(void **state)
{
    char in[128], out[140];
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = random_input(in, sizeof(in), "/./../%2e%2E.a/");
        if (r % 2 && n)
            in[0] = '/';
        if (memchr(in, '\0', n))
            continue; /* llhttp refuses NUL in a request target before we see it */
        size_t olen = 0;
        if (url_normalize_path(in, n, out, &olen) != 0)
            continue;
        assert_true(olen <= n + 1);
        assert_int_equal(out[0], '/');
        assert_int_equal(strlen(out), olen);
        assert_null(strstr(out, "//"));
        assert_null(strstr(out, "/./"));
        assert_null(strstr(out, "/../"));
        /* normalising twice changes nothing */
        char again[140];
        size_t alen = 0;
        assert_int_equal(url_normalize_path(out, olen, again, &alen), 0);
        assert_string_equal(again, out);
    }
}

static void test_limit_syntax(void **state)
{
    static const char *seeds[] = {"100/h", "10/s burst 100", "100/5m", "concurrency 20",
                                  "20/m algorithm token_bucket"};
    char in[64];
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = mutate(seeds[r % 5], in, sizeof(in) - 1, "0123456789/ hmsdburstalgo_");
        in[n] = '\0';
        struct limit l;
        const char *why = NULL;
        if (lim_parse(in, &l, &why) != 0) {
            assert_non_null(why);
            continue;
        }
        assert_true(l.count >= 1);
        assert_true(l.algorithm == LIM_CONCURRENCY ? l.window_us == 0 : l.window_us >= 1000000);
        assert_true(strlen(l.text) < sizeof(l.text));
        assert_true(strlen(l.name) > 0);
    }
}

static void test_cache_rules(void **state)
{
    static const char *seeds[] = {"public, max-age=60, s-maxage=\"10\", stale-if-error=5",
                                  "W/\"a\", \"b\", *", "Sun, 06 Nov 1994 08:49:37 GMT",
                                  "b=2&a=1&&a=0&c", "Accept-Encoding, accept-language"};
    char in[96];
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = mutate(seeds[r % 5], in, sizeof(in) - 1, "=,;\" \t*W/abcmaxgeps0123456789");
        in[n] = '\0';
        struct cache_control cc;
        cache_cc_init(&cc);
        cache_cc_parse(&cc, in, n);
        assert_true(cc.max_age >= -1 && cc.max_age <= 31536000);
        assert_true(cc.s_maxage >= -1 && cc.s_maxage <= 31536000);
        assert_true(cache_ttl_ms(&cc, 1000, true) >= 0);
        cache_etag_matches(in, n, "\"b\"", 3);
        int64_t t = cache_http_date(in, n);
        assert_true(t >= -1);
        struct buf q = {0};
        cache_query_normalize(in, n, &q);
        assert_true(q.len <= n);
        buf_release(&q);
        struct buf v = {0};
        cache_vary_names(in, n, &v);
        buf_release(&v);
        assert_true(cache_glob_match("*", in, n));
        assert_true(cache_glob_match(in, in, n) || memchr(in, '*', n) || memchr(in, '?', n) ||
                    memchr(in, '\0', n));
    }
}

static void test_client_ip(void **state)
{
    struct cfg_server srv = {0};
    assert_int_equal(cfg_parse_cidr("127.0.0.0/8", &srv.trusted_proxies[0]), 0);
    assert_int_equal(cfg_parse_cidr("::1", &srv.trusted_proxies[1]), 0);
    srv.n_trusted_proxies = 2;
    char value[96], out[64], id[96];
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = mutate("6.6.6.6, [2001:db8::1]:443, 127.0.0.1", value, sizeof(value) - 1,
                          "0123456789.:,[] abcdef");
        value[n] = '\0';
        struct sl_header h = {"X-Forwarded-For", value, 15, n};
        struct sl_headers hs = {&h, 1, 1};
        cip_resolve(&srv, "127.0.0.1", &hs, out, sizeof(out));
        assert_true(strlen(out) < sizeof(out));
        cip_identity(out, 64, id, sizeof(id));
        assert_memory_equal(id, "ip:", 3);
    }
}

static const char *no_env(const char *name, void *ctx)
{
    return NULL;
}

static void test_config_loader(void **state)
{
    /* Addresses stay intact: a mutated one becomes a host name, and a unit
     * test must not wait on DNS. Everything after them is mutated. */
    static const char fixed[] = "server:\n  listen: [\"127.0.0.1:8080\"]\n"
                                "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n";
    static const char seed[] = "routes:\n  - prefix: /api/\n    limits: {anonymous: [\"2/min\"]}\n"
                               "    cache: {ttl: 30s, tags: [a]}\n"
                               "tiers:\n  free: {limits: [\"10/s burst 5\"]}\n";
    char in[sizeof(fixed) + sizeof(seed) + 16];
    memcpy(in, fixed, sizeof(fixed) - 1);
    for (int r = 0; r < ROUNDS / 20; r++) {
        size_t n =
            sizeof(fixed) - 1 +
            mutate(seed, in + sizeof(fixed) - 1, sizeof(seed) + 15, ":-[]{},\" \n10samh/${}");
        in[n] = '\0';
        char *err = NULL;
        struct config *c = cfg_load_string(in, n, "fuzz.yaml", no_env, NULL, &err);
        if (c) {
            assert_null(err);
            assert_true(c->n_upstreams >= 1);
            assert_true(c->n_routes >= 1);
            cfg_unref(c);
        } else {
            /* every error names the file */
            assert_non_null(err);
            assert_memory_equal(err, "fuzz.yaml", 9);
            free(err);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_normalize), cmocka_unit_test(test_limit_syntax),
        cmocka_unit_test(test_cache_rules),   cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_config_loader),
    };
    return cmocka_run_group_tests_name("fuzz_parsers", tests, NULL, NULL);
}
