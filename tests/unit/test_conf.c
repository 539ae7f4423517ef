/* Unit tests of src/conf: the value parsers, loading, defaults, route
 * matching, and the exact FILE:LINE: of each kind of error. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "abuse/conf.h"
#include "auth/jwt_verify.h"
#include "auth/conf.h"
#include "cache/conf.h"
#include "conf/conf.h"
#include "graphql/conf.h"
#include "limit/conf.h"
#include "proxy/conf.h"
#include "util/buf.h"

/* ---- helpers ---------------------------------------------------------- */

struct fake_env {
    const char *name, *value;
};

static const struct fake_env test_env[] = {
    {"A", "alpha"},      {"B", "beta"},    {"EMPTY", ""},
    {"TOKEN", "s3cret"}, {"PORT", "8181"}, {NULL, NULL},
};

static const char *fake_getenv(const char *name, void *ctx)
{
    const struct fake_env *e = ctx;
    for (; e->name; e++)
        if (strcmp(e->name, name) == 0)
            return e->value;
    return NULL;
}

static struct config *load(const char *yaml, char **err)
{
    return cfg_load_string(yaml, strlen(yaml), "t.yaml", fake_getenv, (void *)test_env, err);
}

/* Loads <yaml>, which must fail, and returns the error text (caller frees). */
static char *load_err(const char *yaml)
{
    char *err = NULL;
    struct config *c = load(yaml, &err);
    if (c) {
        cfg_unref(c);
        fail_msg("config unexpectedly valid:\n%s", yaml);
    }
    assert_non_null(err);
    return err;
}

static void assert_load_err(const char *yaml, const char *want)
{
    char *err = load_err(yaml);
    assert_string_equal(err, want);
    free(err);
}

static struct config *load_ok(const char *yaml)
{
    char *err = NULL;
    struct config *c = load(yaml, &err);
    if (!c)
        fail_msg("config rejected: %s", err);
    assert_null(err);
    return c;
}

static int port_of(const struct cfg_addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

#define UPSTREAM "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"

/* ---- durations and sizes --------------------------------------------- */

static void test_duration_units(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"500ms", 500},
        {"0ms", 0},
        {"30s", 30000},
        {"5m", 300000},
        {"2h", 7200000},
        {"7d", 604800000},
        {"0s", 0},
        {"1ms", 1},
        {"9223372036854775807ms", INT64_MAX},
        {"106751991167d", 106751991167LL * 86400000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(cfg_parse_duration_ms(ok[i].s, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
}

static void test_duration_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "10",
        "10x",
        "s",
        " 5s",
        "5s ",
        "-5s",
        "+5s",
        "5 s",
        "5S",
        "5Ms",
        "1h30m",
        "5sec",
        "ms",
        "1.5s",
        "0x10s",
        "9223372036854775808ms",
        "106751991168d",
        "99999999999999999999s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 12345;
        if (cfg_parse_duration_ms(bad[i], &ms) != -1)
            fail_msg("duration '%s' accepted", bad[i]);
        assert_int_equal(ms, 12345);
    }
}

static void test_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t n;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"16k", 16384},
        {"16K", 16384},
        {"10m", 10485760},
        {"10M", 10485760},
        {"1g", 1073741824},
        {"1G", 1073741824},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183g", 17179869183ull << 30},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t n = 1;
        assert_int_equal(cfg_parse_size(ok[i].s, &n), 0);
        assert_int_equal(n, ok[i].n);
    }
    static const char *const bad[] = {
        "",
        "k",
        "16kb",
        "16 k",
        " 16k",
        "-1",
        "+1",
        "1t",
        "1.5m",
        "16kk",
        "18446744073709551616",
        "17179869184g",
        "0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t n = 7;
        if (cfg_parse_size(bad[i], &n) != -1)
            fail_msg("size '%s' accepted", bad[i]);
        assert_int_equal(n, 7);
    }
}

/* ---- networks and addresses ------------------------------------------ */

static void test_cidr_v4(void **state)
{
    struct cfg_cidr n;
    static const uint8_t lo[4] = {127, 0, 0, 1}, ten[4] = {10, 0, 0, 0}, mid[4] = {192, 168, 0, 0};

    assert_int_equal(cfg_parse_cidr("127.0.0.1/32", &n), 0);
    assert_int_equal(n.family, AF_INET);
    assert_int_equal(n.bits, 32);
    assert_memory_equal(n.addr, lo, 4);

    assert_int_equal(cfg_parse_cidr("10.0.0.0/8", &n), 0);
    assert_int_equal(n.bits, 8);
    assert_memory_equal(n.addr, ten, 4);

    /* Host bits are cleared, so matching can compare masked addresses. */
    assert_int_equal(cfg_parse_cidr("10.1.2.3/8", &n), 0);
    assert_memory_equal(n.addr, ten, 4);
    assert_int_equal(cfg_parse_cidr("192.168.1.255/23", &n), 0);
    assert_memory_equal(n.addr, mid, 4);

    /* No prefix: one host. */
    assert_int_equal(cfg_parse_cidr("127.0.0.1", &n), 0);
    assert_int_equal(n.bits, 32);
    assert_memory_equal(n.addr, lo, 4);

    assert_int_equal(cfg_parse_cidr("0.0.0.0/0", &n), 0);
    assert_int_equal(n.bits, 0);
}

static void test_cidr_v6(void **state)
{
    struct cfg_cidr n;
    uint8_t want[16] = {0};

    assert_int_equal(cfg_parse_cidr("::1", &n), 0);
    assert_int_equal(n.family, AF_INET6);
    assert_int_equal(n.bits, 128);
    want[15] = 1;
    assert_memory_equal(n.addr, want, 16);

    assert_int_equal(cfg_parse_cidr("2001:db8:ffff::1/36", &n), 0);
    assert_int_equal(n.family, AF_INET6);
    assert_int_equal(n.bits, 36);
    memset(want, 0, sizeof want);
    want[0] = 0x20, want[1] = 0x01, want[2] = 0x0d, want[3] = 0xb8, want[4] = 0xf0;
    assert_memory_equal(n.addr, want, 16);
}

static void test_cidr_bad(void **state)
{
    static const char *const bad[] = {
        "",           "/8",        "10.0.0.0/",    "10.0.0.0/33",  "::/129",
        "10.0.0/8",   "abc",       "10.0.0.0/8x",  "10.0.0.0/-1",  "2001:db8::/+32",
        "10.0.0.256", " 10.0.0.1", "10.0.0.0/8/8", "fe80::1%eth0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg_cidr n;
        if (cfg_parse_cidr(bad[i], &n) != -1)
            fail_msg("cidr '%s' accepted", bad[i]);
    }
}

static void test_addr(void **state)
{
    struct cfg_addr a;
    const char *why = NULL;

    assert_int_equal(cfg_parse_addr("127.0.0.1:8080", &a, &why), 0);
    assert_int_equal(a.sa.ss_family, AF_INET);
    assert_int_equal(a.sa_len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&a), 8080);
    assert_int_equal(((struct sockaddr_in *)&a.sa)->sin_addr.s_addr, htonl(0x7f000001));
    assert_string_equal(a.text, "127.0.0.1:8080");

    assert_int_equal(cfg_parse_addr("[::1]:9090", &a, &why), 0);
    assert_int_equal(a.sa.ss_family, AF_INET6);
    assert_int_equal(a.sa_len, sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&a), 9090);
    assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&a.sa)->sin6_addr));
    assert_string_equal(a.text, "[::1]:9090");

    assert_int_equal(cfg_parse_addr("0.0.0.0:65535", &a, &why), 0);
    assert_int_equal(port_of(&a), 65535);
}

static void test_addr_bad(void **state)
{
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"127.0.0.1:0", "bad port"},    {"127.0.0.1:65536", "bad port"},
        {"127.0.0.1:http", "bad port"}, {"127.0.0.1:", "bad port"},
        {"127.0.0.1:+80", "bad port"},  {"127.0.0.1", "missing port"},
        {"::1:80", "brackets"},         {"[::1]80", "missing port"},
        {"[::1", "missing ']'"},        {"[127.0.0.1]:80", "bad IPv6 address"},
        {":80", "missing host"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg_addr a;
        const char *why = NULL;
        if (cfg_parse_addr(bad[i].s, &a, &why) != -1)
            fail_msg("address '%s' accepted", bad[i].s);
        assert_non_null(why);
        if (!strstr(why, bad[i].why))
            fail_msg("'%s': reason '%s' lacks '%s'", bad[i].s, why, bad[i].why);
    }

    char longname[200];
    memset(longname, 'a', sizeof longname - 4);
    memcpy(longname + sizeof longname - 4, ":80", 4);
    struct cfg_addr a;
    const char *why = NULL;
    assert_int_equal(cfg_parse_addr(longname, &a, &why), -1);
    assert_string_equal(why, "address too long");
}

/* ---- environment ------------------------------------------------------ */

static void assert_expands(const char *in, const char *want)
{
    const char *why = NULL;
    char *out = cfg_expand_env(in, fake_getenv, (void *)test_env, &why);
    if (!out)
        fail_msg("'%s' did not expand: %s", in, why);
    assert_string_equal(out, want);
    free(out);
}

static void assert_expand_fails(const char *in)
{
    const char *why = NULL;
    char *out = cfg_expand_env(in, fake_getenv, (void *)test_env, &why);
    if (out)
        fail_msg("'%s' expanded to '%s'", in, out);
    assert_non_null(why);
}

static void test_env_expand(void **state)
{
    assert_expands("${A}", "alpha");
    assert_expands("x${A}y${B}z", "xalphaybetaz");
    assert_expands("${NOPE:-dflt}", "dflt");
    assert_expands("${A:-dflt}", "alpha");
    assert_expands("${NOPE:-}", "");
    assert_expands("${EMPTY:-d}", "d"); /* as in the shell: empty counts as unset for :- */
    assert_expands("${EMPTY}", "");
    assert_expands("pre-${NOPE:-a b:c}-post", "pre-a b:c-post");
    assert_expands("${A}${B}", "alphabeta");
    assert_expands("", "");
    assert_expands("plain", "plain");
    /* "$" not followed by "{" is kept, "$$" included. */
    assert_expands("$x $$ cost $5 $", "$x $$ cost $5 $");
    assert_expands("$A", "$A");
    /* An expanded value is not expanded again. */
    assert_expands("${NOPE:-${A}", "${A");
}

static void test_env_errors(void **state)
{
    assert_expand_fails("${NOPE}");
    assert_expand_fails("a ${A} ${NOPE} b");
    assert_expand_fails("${");
    assert_expand_fails("${A");
    assert_expand_fails("${A:-x");
    assert_expand_fails("${}");
    assert_expand_fails("${1A}");
    assert_expand_fails("${A B}");
    assert_expand_fails("${A-x}");
}

static void test_env_process(void **state)
{
    /* NULL getenv_fn reads the process environment. */
    const char *why = NULL;
    assert_int_equal(setenv("SLUICE_TEST_CONF_VAR", "from-env", 1), 0);
    char *out = cfg_expand_env("<${SLUICE_TEST_CONF_VAR}>", NULL, NULL, &why);
    assert_non_null(out);
    assert_string_equal(out, "<from-env>");
    free(out);
    unsetenv("SLUICE_TEST_CONF_VAR");
    assert_null(cfg_expand_env("${SLUICE_TEST_CONF_VAR}", NULL, NULL, &why));
}

/* ---- whole configs ---------------------------------------------------- */

static const char full_yaml[] =
    "server:\n"                                                                   /* 1 */
    "  listen: [\"127.0.0.1:8081\", \"[::1]:8082\"]\n"                            /* 2 */
    "  workers: 3\n"                                                              /* 3 */
    "  max_connections: 500\n"                                                    /* 4 */
    "  timeouts: {header: 5s, idle: 2m, upstream_read: 1500ms}\n"                 /* 5 */
    "  max_header_bytes: 32k\n"                                                   /* 6 */
    "  max_body_bytes: 1g\n"                                                      /* 7 */
    "  access_log: off\n"                                                         /* 8 */
    "  trusted_proxies: [\"127.0.0.1/32\", 10.0.0.0/8, \"2001:db8::/32\"]\n"      /* 9 */
    "  ipv6_prefix: 56\n"                                                         /* 10 */
    "admin:\n"                                                                    /* 11 */
    "  listen: \"127.0.0.1:9090\"\n"                                              /* 12 */
    "  token: \"${TOKEN}\"\n"                                                     /* 13 */
    "upstreams:\n"                                                                /* 14 */
    "  app: {servers: [\"127.0.0.1:8000\", \"127.0.0.1:8001\"], keepalive: 64}\n" /* 15 */
    "  auth:\n"                                                                   /* 16 */
    "    servers: \"127.0.0.1:${PORT}\"\n"                                        /* 17 */
    "routes:\n"                                                                   /* 18 */
    "  - path: /api/market/overview\n"                                            /* 19 */
    "    upstream: auth\n"                                                        /* 20 */
    "  - prefix: /api/\n"                                                         /* 21 */
    "    methods: [GET, POST, M-SEARCH]\n"                                        /* 22 */
    "  - prefix: /\n"                                                             /* 23 */
    "    upstream: app\n";                                                        /* 24 */

static void test_full_config(void **state)
{
    struct config *c = load_ok(full_yaml);
    const struct cfg_server *s = &c->server;

    assert_int_equal(c->refs, 1);
    assert_string_equal(c->path, "t.yaml");
    assert_int_equal(s->n_listen, 2);
    assert_string_equal(s->listen[0].text, "127.0.0.1:8081");
    assert_int_equal(port_of(&s->listen[0]), 8081);
    assert_int_equal(s->listen[1].sa.ss_family, AF_INET6);
    assert_int_equal(port_of(&s->listen[1]), 8082);
    assert_int_equal(s->workers, 3);
    assert_int_equal(s->max_connections, 500);
    assert_int_equal(s->timeouts.header_ms, 5000);
    assert_int_equal(s->timeouts.idle_ms, 120000);
    assert_int_equal(s->timeouts.upstream_connect_ms, 2000); /* default */
    assert_int_equal(s->timeouts.upstream_read_ms, 1500);
    assert_int_equal(s->timeouts.drain_ms, 30000); /* default */
    assert_int_equal(s->max_header_bytes, 32768);
    assert_int_equal(s->max_body_bytes, 1ull << 30);
    assert_false(s->access_log);
    assert_int_equal(s->n_trusted_proxies, 3);
    assert_int_equal(s->trusted_proxies[1].family, AF_INET);
    assert_int_equal(s->trusted_proxies[1].bits, 8);
    assert_int_equal(s->trusted_proxies[2].family, AF_INET6);
    assert_int_equal(s->trusted_proxies[2].bits, 32);
    assert_int_equal(s->ipv6_prefix, 56);

    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.listen.text, "127.0.0.1:9090");
    assert_string_equal(c->admin.token, "s3cret");

    assert_int_equal(c->n_upstreams, 2);
    assert_string_equal(c->upstreams[0].name, "app");
    assert_int_equal(c->upstreams[0].n_servers, 2);
    assert_int_equal(port_of(&c->upstreams[0].servers[1]), 8001);
    assert_int_equal(c->upstreams[0].keepalive, 64);
    assert_string_equal(c->upstreams[1].name, "auth");
    assert_int_equal(c->upstreams[1].n_servers, 1);
    assert_string_equal(c->upstreams[1].servers[0].text, "127.0.0.1:8181");
    assert_int_equal(c->upstreams[1].keepalive, 32); /* default */

    assert_int_equal(c->n_routes, 3);
    assert_int_equal(c->routes[0].match, CFG_MATCH_EXACT);
    assert_string_equal(c->routes[0].path, "/api/market/overview");
    assert_int_equal(c->routes[0].path_len, strlen("/api/market/overview"));
    assert_int_equal(c->routes[0].upstream, 1);
    assert_int_equal(c->routes[0].methods, 0);
    assert_int_equal(c->routes[0].line, 19);
    assert_int_equal(c->routes[1].match, CFG_MATCH_PREFIX);
    assert_string_equal(c->routes[1].path, "/api/");
    assert_int_equal(c->routes[1].upstream, 0); /* absent: the first upstream */
    assert_int_equal(c->routes[1].methods,
                     (1ull << HTTP_GET) | (1ull << HTTP_POST) | (1ull << HTTP_MSEARCH));
    assert_int_equal(c->routes[1].line, 21);
    assert_int_equal(c->routes[2].upstream, 0);

    cfg_ref(c);
    assert_int_equal(c->refs, 2);
    cfg_unref(c);
    assert_int_equal(c->refs, 1);
    cfg_unref(c); /* ASan reports a leak if this one does not free */
}

static void test_defaults_and_implicit_route(void **state)
{
    struct config *c = load_ok(UPSTREAM);
    const struct cfg_server *s = &c->server;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    assert_int_equal(s->n_listen, 1);
    assert_string_equal(s->listen[0].text, "0.0.0.0:8080");
    assert_int_equal(s->listen[0].sa.ss_family, AF_INET);
    assert_int_equal(port_of(&s->listen[0]), 8080);
    assert_int_equal(s->workers, cores < 1 ? 1 : cores > SL_MAX_WORKERS ? SL_MAX_WORKERS : cores);
    assert_int_equal(s->max_connections, 10000);
    assert_int_equal(s->timeouts.header_ms, 10000);
    assert_int_equal(s->timeouts.idle_ms, 60000);
    assert_int_equal(s->timeouts.upstream_connect_ms, 2000);
    assert_int_equal(s->timeouts.upstream_read_ms, 30000);
    assert_int_equal(s->timeouts.drain_ms, SL_DRAIN_TIMEOUT_MS);
    assert_int_equal(s->max_header_bytes, SL_DEFAULT_MAX_HEADER_BYTES);
    assert_int_equal(s->max_body_bytes, SL_DEFAULT_MAX_BODY_BYTES);
    assert_true(s->access_log);
    assert_int_equal(s->n_trusted_proxies, 0);
    assert_int_equal(s->ipv6_prefix, 64);
    assert_false(c->admin.enabled);
    assert_null(c->admin.token);
    assert_int_equal(c->upstreams[0].keepalive, 32);

    assert_int_equal(c->n_routes, 1);
    assert_int_equal(c->routes[0].match, CFG_MATCH_PREFIX);
    assert_string_equal(c->routes[0].path, "/");
    assert_int_equal(c->routes[0].path_len, 1);
    assert_int_equal(c->routes[0].methods, 0);
    assert_int_equal(c->routes[0].upstream, 0);
    assert_int_equal(c->routes[0].line, 0);
    assert_ptr_equal(cfg_match_route(c, "/anything", 9, HTTP_DELETE), &c->routes[0]);
    cfg_unref(c);

    /* "routes:" present but empty gets the implicit route too. */
    c = load_ok(UPSTREAM "routes: []\n");
    assert_int_equal(c->n_routes, 1);
    assert_string_equal(c->routes[0].path, "/");
    cfg_unref(c);
    c = load_ok(UPSTREAM "routes:\n");
    assert_int_equal(c->n_routes, 1);
    cfg_unref(c);
}

static void test_scalar_forms(void **state)
{
    struct config *c = load_ok("server:\n"
                               "  listen: 127.0.0.1:7000\n"
                               "  workers: auto\n"
                               "  access_log: Yes\n"
                               "  trusted_proxies: \"::1\"\n" UPSTREAM "routes:\n"
                               "  - prefix: /x\n"
                               "    methods: PUT\n");
    assert_int_equal(c->server.n_listen, 1);
    assert_int_equal(port_of(&c->server.listen[0]), 7000);
    assert_true(c->server.workers >= 1);
    assert_true(c->server.access_log);
    assert_int_equal(c->server.n_trusted_proxies, 1);
    assert_int_equal(c->server.trusted_proxies[0].bits, 128);
    assert_int_equal(c->routes[0].methods, 1ull << HTTP_PUT);
    cfg_unref(c);
}

static void test_match_route(void **state)
{
    struct config *c = load_ok("upstreams:\n"
                               "  a: {servers: [\"127.0.0.1:8000\"]}\n"
                               "  b: {servers: [\"127.0.0.1:8001\"]}\n"
                               "routes:\n"
                               "  - path: /exact\n"
                               "    methods: [GET]\n"
                               "  - prefix: /api/\n"
                               "    methods: [POST]\n"
                               "    upstream: b\n"
                               "  - prefix: /api/\n"
                               "  - path: /exact\n");
    const struct cfg_route *r = c->routes;
    assert_int_equal(c->n_routes, 4);

    assert_ptr_equal(cfg_match_route(c, "/exact", 6, HTTP_GET), &r[0]);
    /* Same path, other method: falls through to the later, any-method route. */
    assert_ptr_equal(cfg_match_route(c, "/exact", 6, HTTP_POST), &r[3]);
    /* The length, not a NUL, ends the path. */
    assert_ptr_equal(cfg_match_route(c, "/exact?q=1", 6, HTTP_GET), &r[0]);
    assert_null(cfg_match_route(c, "/exactly", 8, HTTP_GET));
    assert_null(cfg_match_route(c, "/exact/x", 8, HTTP_GET));
    assert_null(cfg_match_route(c, "/exac", 5, HTTP_GET));

    /* First match wins, in file order. */
    assert_ptr_equal(cfg_match_route(c, "/api/x", 6, HTTP_POST), &r[1]);
    assert_int_equal(cfg_match_route(c, "/api/x", 6, HTTP_POST)->upstream, 1);
    assert_ptr_equal(cfg_match_route(c, "/api/x", 6, HTTP_GET), &r[2]);
    assert_int_equal(cfg_match_route(c, "/api/x", 6, HTTP_GET)->upstream, 0);
    assert_ptr_equal(cfg_match_route(c, "/api/", 5, HTTP_POST), &r[1]);
    assert_null(cfg_match_route(c, "/api", 4, HTTP_GET));
    assert_null(cfg_match_route(c, "/", 1, HTTP_GET));

    /* A method outside the bitmask only matches routes for every method. */
    assert_ptr_equal(cfg_match_route(c, "/api/x", 6, 99), &r[2]);
    assert_ptr_equal(cfg_match_route(c, "/api/x", 6, -1), &r[2]);
    cfg_unref(c);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/sluice_test_conf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, UPSTREAM, strlen(UPSTREAM)), (ssize_t)strlen(UPSTREAM));
    close(fd);

    char *err = NULL;
    struct config *c = cfg_load(path, &err);
    assert_non_null(c);
    assert_null(err);
    assert_string_equal(c->path, path);
    assert_int_equal(c->n_upstreams, 1);
    cfg_unref(c);
    unlink(path);

    assert_null(cfg_load(path, &err));
    char want[128];
    snprintf(want, sizeof want, "%s: cannot read: No such file or directory", path);
    assert_string_equal(err, want);
    free(err);

    assert_null(cfg_load("/tmp", &err));
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
    free(err);
}

static void test_too_large(void **state)
{
    size_t len = SL_MAX_CONFIG_BYTES + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, '#', len);
    char *err = NULL;
    assert_null(cfg_load_string(big, len, "big.yaml", NULL, NULL, &err));
    assert_string_equal(err, "big.yaml: too large (the limit is 4194304 bytes)");
    free(err);

    char path[] = "/tmp/sluice_test_conf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, big, len), (ssize_t)len);
    close(fd);
    free(big);
    assert_null(cfg_load(path, &err));
    char want[128];
    snprintf(want, sizeof want, "%s: too large (the limit is 4194304 bytes)", path);
    assert_string_equal(err, want);
    free(err);
    unlink(path);
}

/* ---- errors: exact FILE:LINE: message ------------------------------- */

static void test_err_unknown_key(void **state)
{
    assert_load_err("server:\n"
                    "  listen: \"127.0.0.1:8080\"\n"
                    "  foo: 1\n" UPSTREAM,
                    "t.yaml:3: unknown key 'server.foo'");
    assert_load_err(UPSTREAM "colour: blue\n", "t.yaml:3: unknown key 'colour'");
    assert_load_err("upstreams:\n"
                    "  app: {servers: [\"127.0.0.1:8000\"], weight: 2}\n",
                    "t.yaml:2: unknown key 'upstreams.app.weight'");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    pth: /x\n",
                    "t.yaml:5: unknown key 'routes[0].pth'");
}

static void test_err_bad_duration(void **state)
{
    assert_load_err("server:\n"
                    "  timeouts:\n"
                    "    header: abc\n" UPSTREAM,
                    "t.yaml:3: server.timeouts.header: bad duration 'abc' (use 500ms, 30s, 5m, "
                    "2h, 7d)");
    assert_load_err("server:\n"
                    "  timeouts: {idle: 10}\n" UPSTREAM,
                    "t.yaml:2: server.timeouts.idle: bad duration '10' (use 500ms, 30s, 5m, 2h, "
                    "7d)");
    assert_load_err("server:\n"
                    "  timeouts: {header: 0s}\n" UPSTREAM,
                    "t.yaml:2: server.timeouts.header: 0s is out of range (1ms..1d)");
}

static void test_err_bad_values(void **state)
{
    assert_load_err("server:\n"
                    "  max_header_bytes: 16kb\n" UPSTREAM,
                    "t.yaml:2: server.max_header_bytes: bad size '16kb' (use 512, 16k, 10m, 1g)");
    assert_load_err("server:\n"
                    "  max_header_bytes: 2m\n" UPSTREAM,
                    "t.yaml:2: server.max_header_bytes: 2m is out of range (1k..1m)");
    assert_load_err("server:\n"
                    "  max_connections: 0\n" UPSTREAM,
                    "t.yaml:2: server.max_connections: 0 is out of range (1..10000000)");
    assert_load_err("server:\n"
                    "  workers: many\n" UPSTREAM,
                    "t.yaml:2: server.workers: 'many' is not a whole number or auto");
    assert_load_err("server:\n"
                    "  access_log: maybe\n" UPSTREAM,
                    "t.yaml:2: server.access_log: 'maybe' is not a boolean (use true or false)");
    assert_load_err("server:\n"
                    "  trusted_proxies: [10.0.0.0/8, 10.0.0.0/40]\n" UPSTREAM,
                    "t.yaml:2: server.trusted_proxies[1]: bad CIDR '10.0.0.0/40' (use "
                    "10.0.0.0/8, 2001:db8::/32 or one address)");
    assert_load_err("server:\n"
                    "  listen:\n"
                    "    - 127.0.0.1:80\n"
                    "    - \"::1:80\"\n" UPSTREAM,
                    "t.yaml:4: server.listen[1]: bad address '::1:80': an IPv6 address needs "
                    "brackets (use [::1]:8080)");
    assert_load_err("server:\n"
                    "  listen: []\n" UPSTREAM,
                    "t.yaml:2: server.listen: needs at least 1 entry");
    assert_load_err("server:\n"
                    "  workers:\n" UPSTREAM,
                    "t.yaml:2: server.workers: missing value");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    methods: [GET, get]\n",
                    "t.yaml:5: routes[0].methods[1]: unknown method 'get' (methods are upper "
                    "case: GET, POST, ...)");
}

static void test_err_bad_type(void **state)
{
    assert_load_err("server: [1, 2]\n" UPSTREAM,
                    "t.yaml:1: server: expected a mapping, got a list");
    assert_load_err("server:\n"
                    "  max_connections: {a: 1}\n" UPSTREAM,
                    "t.yaml:2: server.max_connections: expected a single value, got a mapping");
    assert_load_err("server:\n"
                    "  listen: {a: 1}\n" UPSTREAM,
                    "t.yaml:2: server.listen: expected a list, got a mapping");
    assert_load_err("upstreams: [app]\n",
                    "t.yaml:1: upstreams: expected a mapping of names to {servers: [...]}, got a "
                    "list");
    assert_load_err(UPSTREAM "routes: {prefix: /}\n",
                    "t.yaml:3: routes: expected a list of routes (- prefix: /api/), got a mapping");
    assert_load_err("- a\n- b\n", "t.yaml:1: top level: expected a mapping, got a list");
}

static void test_err_routes(void **state)
{
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /api/\n"
                             "    upstream: nope\n",
                    "t.yaml:5: routes[0].upstream: unknown upstream 'nope'");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - methods: [GET]\n",
                    "t.yaml:4: routes[0]: a route needs 'path' (exact match) or 'prefix'");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - path: /a\n"
                             "    prefix: /b\n",
                    "t.yaml:5: routes[0].prefix: a route has either 'path' (exact) or 'prefix', "
                    "not both");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: api/\n",
                    "t.yaml:4: routes[0].prefix: bad path 'api/' (must start with '/'; no "
                    "spaces, '?' or '#')");
    assert_load_err("upstreams:\n"
                    "  app: {keepalive: 2}\n",
                    "t.yaml:2: upstreams.app.servers: required");
    assert_load_err("upstreams:\n"
                    "  app: {servers: [\"127.0.0.1:1\"]}\n"
                    "  app: {servers: [\"127.0.0.1:2\"]}\n",
                    "t.yaml:3: upstreams: duplicate upstream 'app'");
}

/* A route's graphql (SPEC 7.4): each bad value at its line, exit 2. */
static void test_err_graphql(void **state)
{
    static const struct {
        const char *graphql, *want;
    } cases[] = {
        {"off", "routes[0].graphql: expected a mapping, got a single value"},
        {"{query: \"300/x\"}",
         "routes[0].graphql.query: bad limit '300/x': unknown unit (use s, m, h or d, or sec, "
         "min, hr, day, second(s), minute(s), hour(s), day(s))"},
        {"{mutation: \"concurrency 5\"}",
         "routes[0].graphql.mutation: 'concurrency 5': a GraphQL limit counts operations over "
         "time, not requests in flight (put concurrency in the route's limits)"},
        {"{operations: {1bad: \"1/m\"}}",
         "routes[0].graphql.operations: '1bad' is not a GraphQL name (letters, digits and _, not "
         "starting with a digit, at most 64)"},
        {"{operations: {a: \"1/m\", a: \"2/m\"}}",
         "routes[0].graphql.operations: duplicate operation 'a'"},
        {"{operations: [a]}", "routes[0].graphql.operations: expected a mapping of operation "
                              "names to limits, got a list"},
        {"{operations: {a: \"1/q\"}}",
         "routes[0].graphql.operations.a: bad limit '1/q': unknown unit (use s, m, h or d, or "
         "sec, min, hr, day, second(s), minute(s), hour(s), day(s))"},
        {"{max_depth: 0}", "routes[0].graphql.max_depth: 0 is out of range (1..1000000000)"},
        {"{max_cost: lots}", "routes[0].graphql.max_cost: 'lots' is not a whole number"},
        {"{maxdepth: 3}", "unknown key 'routes[0].graphql.maxdepth'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256], want[512];
        snprintf(yaml, sizeof yaml, UPSTREAM "routes:\n  - prefix: /\n    graphql: %s\n",
                 cases[i].graphql);
        snprintf(want, sizeof want, "t.yaml:5: %s", cases[i].want);
        assert_load_err(yaml, want);
    }
    /* More operations than the watch list holds. */
    struct buf b = {0};
    buf_append_str(&b, UPSTREAM "routes:\n  - prefix: /\n    graphql:\n      operations:\n");
    for (int i = 0; i < SL_MAX_GQL_OPERATION_LIMITS + 1; i++)
        buf_appendf(&b, "        op%d: 1/m\n", i);
    buf_append(&b, "", 1);
    assert_load_err(b.data, "t.yaml:6: routes[0].graphql.operations: too many operations (33; at "
                            "most 32)");
    buf_release(&b);
}

/* Seed 001's route as written, with the caps. */
static void test_graphql_conf(void **state)
{
    struct config *c = load_ok(UPSTREAM "routes:\n"
                                        "  - path: /graphql/\n"
                                        "    graphql: {query: \"300/h\", mutation: \"50/h\", "
                                        "operations: {tokenAuth: \"20/m\", createErrand: "
                                        "\"20/h\"}, max_depth: 10, max_aliases: 30, "
                                        "max_root_fields: 20, max_cost: 1000}\n"
                                        "    rejection: graphql\n"
                                        "  - prefix: /\n");
    const struct gql_route_conf *g = gql_route_conf(&c->routes[0]);
    assert_true(g->on);
    assert_non_null(g->types[GQLP_QUERY]);
    assert_int_equal(g->types[GQLP_QUERY]->count, 300);
    assert_int_equal(g->types[GQLP_MUTATION]->window_us, 3600000000LL);
    assert_null(g->types[GQLP_SUBSCRIPTION]);
    assert_int_equal(g->n_ops, 2);
    assert_string_equal(g->ops[0].name, "tokenAuth");
    assert_int_equal(g->ops[0].limit.window_us, 60000000LL);
    assert_string_equal(g->ops[1].name, "createErrand");
    assert_int_equal(g->watch.n, 2);
    assert_string_equal(g->watch.names[1], "createErrand");
    assert_int_equal(g->max_depth, 10);
    assert_int_equal(g->max_aliases, 30);
    assert_int_equal(g->max_root_fields, 20);
    assert_int_equal(g->max_cost, 1000);
    assert_int_equal(c->routes[0].rejection, CFG_REJECT_GRAPHQL);
    /* Another route is not a GraphQL route. */
    assert_false(gql_route_conf(&c->routes[1])->on);
    assert_int_equal(gql_route_conf(&c->routes[1])->max_depth, 0);
    cfg_unref(c);
}

/* abuse (SPEC 7.3): defaults, bounds and the rule across keys. */
static void test_abuse(void **state)
{
    (void)state;
    struct config *c = load_ok(UPSTREAM);
    assert_false(abuse_conf(c)->enabled);
    cfg_unref(c);
    c = load_ok("abuse: {violations: 10, window: 24h, ban: 2h}\n" UPSTREAM);
    const struct abuse_conf *a = abuse_conf(c);
    assert_true(a->enabled);
    assert_int_equal(a->violations, 10);
    assert_int_equal(a->window_ms, 86400000);
    assert_int_equal(a->ban_ms, 7200000);
    assert_int_equal(a->escalate, 2);
    assert_int_equal(a->max_ban_ms, 7 * 86400000ll);
    cfg_unref(c);
    c = load_ok("abuse:\n" UPSTREAM);
    assert_true(abuse_conf(c)->enabled);
    assert_int_equal(abuse_conf(c)->violations, 10);
    cfg_unref(c);
    assert_load_err("abuse: {violations: 0}\n" UPSTREAM,
                    "t.yaml:1: abuse.violations: 0 is out of range (1..1000000)");
    assert_load_err("abuse:\n  window: 30s\n" UPSTREAM,
                    "t.yaml:2: abuse.window: 30s is out of range (1m..30d)");
    assert_load_err("abuse:\n  ban: soon\n" UPSTREAM,
                    "t.yaml:2: abuse.ban: bad duration 'soon' (use 500ms, 30s, 5m, 2h, 7d)");
    assert_load_err("abuse: {ban: 2d, max_ban: 1d}\n" UPSTREAM,
                    "t.yaml:1: abuse: max_ban (1d) is shorter than ban (2d)");
    assert_load_err("abuse: {escalate: 0}\n" UPSTREAM,
                    "t.yaml:1: abuse.escalate: 0 is out of range (1..1000)");
    assert_load_err("abuse: {violation: 3}\n" UPSTREAM, "t.yaml:1: unknown key 'abuse.violation'");
}

/* access (SPEC 7.1): bad networks are reported at their item. */
static void test_err_access(void **state)
{
    (void)state;
    assert_load_err("access:\n  deny: [10.0.0.0/8, 10.0.0.0/33]\n" UPSTREAM,
                    "t.yaml:2: access.deny[1]: bad CIDR '10.0.0.0/33' (use 10.0.0.0/8, "
                    "2001:db8::/32 or one address)");
    assert_load_err(UPSTREAM "routes:\n  - prefix: /\n    access:\n      allow:\n"
                             "        - 2001:db8::/32\n        - 2001:db8::/129\n",
                    "t.yaml:8: routes[0].access.allow[1]: bad CIDR '2001:db8::/129' (use "
                    "10.0.0.0/8, 2001:db8::/32 or one address)");
    assert_load_err("access: {deny: 7.7.7.7/8x}\n" UPSTREAM,
                    "t.yaml:1: access.deny: bad CIDR '7.7.7.7/8x' (use 10.0.0.0/8, "
                    "2001:db8::/32 or one address)");
    assert_load_err("access: {block: [10.0.0.0/8]}\n" UPSTREAM,
                    "t.yaml:1: unknown key 'access.block'");
    struct config *c = load_ok("access: {deny: 10.0.0.0/8, allow: []}\n" UPSTREAM);
    cfg_unref(c);
}

/* ---- store and identity ----------------------------------------------- */

static void test_identity_config(void **state)
{
    struct config *c = load_ok(UPSTREAM "tiers:\n"
                                        "  free: {limits: [\"10/s\"]}\n"
                                        "store: {data_dir: state}\n"
                                        "identity:\n"
                                        "  api_key_headers: [X-API-Key, X-Token]\n"
                                        "  jwt:\n"
                                        "    algorithms: [HS256]\n"
                                        "    secret: 0123456789abcdef0123456789abcdef\n"
                                        "    issuer: https://id.example\n"
                                        "    exempt_roles: [staff, ops]\n"
                                        "    default_tier: free\n"
                                        "    access_ttl: 5m\n"
                                        "routes:\n"
                                        "  - prefix: /orders\n"
                                        "    scopes: [orders:read, orders/write]\n"
                                        "  - prefix: /me\n"
                                        "    auth: required\n"
                                        "  - prefix: /\n");
    /* Relative to the config file's directory; "t.yaml" has none. */
    assert_string_equal(c->store.data_dir, "state");
    assert_int_equal(c->store.backend, CFG_BACKEND_MEMORY);
    assert_int_equal(auth_conf(c)->n_api_key_headers, 2);
    assert_string_equal(auth_conf(c)->api_key_headers[1], "X-Token");
    const struct auth_jwt_conf *j = &auth_conf(c)->jwt;
    assert_true(j->enabled);
    assert_non_null(j->verifier);
    assert_int_equal(j->algorithms, JWTV_HS256);
    assert_string_equal(j->tier_claim, "tier");
    assert_string_equal(j->scope_claim, "scope");
    assert_int_equal(j->n_exempt_roles, 2);
    assert_int_equal(j->leeway_ms, 30000);
    assert_int_equal(j->access_ttl_ms, 300000);
    assert_int_equal(j->refresh_ttl_ms, 30ll * 86400000);
    assert_true(j->require_exp); /* on unless the config turns it off */
    assert_int_equal(auth_route_conf(&c->routes[0])->auth, AUTH_REQUIRED);
    assert_int_equal(auth_route_conf(&c->routes[0])->n_scopes, 2);
    assert_string_equal(auth_route_conf(&c->routes[0])->scopes[1], "orders/write");
    assert_int_equal(auth_route_conf(&c->routes[1])->auth, AUTH_REQUIRED);
    assert_int_equal(auth_route_conf(&c->routes[2])->auth, AUTH_OPTIONAL);
    /* The token endpoints exist because there is a secret, before routes. */
    const struct cfg_route *r = cfg_match_route(c, "/auth/token", 11, 3 /* HTTP_POST */);
    assert_non_null(r);
    assert_true(auth_route_conf(r)->token_endpoint);
    r = cfg_match_route(c, "/auth/tokens", 12, 3);
    assert_false(auth_route_conf(r)->token_endpoint);
    cfg_unref(c);
    c = load_ok(UPSTREAM "identity:\n"
                         "  jwt: {secret: 0123456789abcdef0123456789abcdef, require_exp: false}\n");
    assert_false(auth_conf(c)->jwt.require_exp);
    cfg_unref(c);

    c = load_ok(UPSTREAM);
    assert_string_equal(c->store.data_dir, "./var");
    assert_int_equal(auth_conf(c)->n_api_key_headers, 1);
    assert_string_equal(auth_conf(c)->api_key_headers[0], "X-API-Key");
    assert_false(auth_conf(c)->jwt.enabled);
    assert_null(auth_conf(c)->jwt.verifier);
    assert_false(auth_route_conf(cfg_match_route(c, "/auth/token", 11, 3))->token_endpoint);
    cfg_unref(c);

    /* Relative paths follow the config file. */
    char *err = NULL;
    static const char y[] = UPSTREAM "store: {data_dir: var}\n";
    c = cfg_load_string(y, strlen(y), "/etc/sluice/sluice.yaml", NULL, NULL, &err);
    assert_non_null(c);
    assert_string_equal(c->store.data_dir, "/etc/sluice/var");
    cfg_unref(c);
}

static void test_redis_config(void **state)
{
    struct config *c = load_ok(UPSTREAM "store:\n"
                                        "  backend: redis\n"
                                        "  redis:\n"
                                        "    url: redis://:pw@10.0.0.5:6380/2\n"
                                        "    timeout: 20ms\n"
                                        "    on_failure: deny\n"
                                        "    prefix: \"api:\"\n");
    const struct cfg_redis *r = &c->store.redis;
    assert_int_equal(c->store.backend, CFG_BACKEND_REDIS);
    assert_string_equal(r->conn.host, "10.0.0.5");
    assert_int_equal(r->conn.port, 6380);
    assert_int_equal(r->conn.db, 2);
    assert_string_equal(r->conn.password, "pw");
    assert_int_equal(r->conn.timeout_ms, 20);
    assert_int_equal(r->on_failure, CFG_FAIL_DENY);
    assert_string_equal(r->prefix, "api:");
    assert_int_equal(r->lease_ms, 120000);
    cfg_unref(c);

    c = load_ok(UPSTREAM "store: {backend: redis}\n");
    r = &c->store.redis;
    assert_string_equal(r->conn.host, "127.0.0.1");
    assert_int_equal(r->conn.port, 6379);
    assert_int_equal(r->timeout_ms, 50);
    assert_int_equal(r->on_failure, CFG_FAIL_LOCAL);
    assert_string_equal(r->prefix, "sluice:");
    cfg_unref(c);

    char *err = load_err(UPSTREAM "store:\n"
                                  "  redis: {url: \"http://x\"}\n");
    assert_non_null(strstr(err, "t.yaml:4: store.redis.url: "));
    free(err);
    assert_load_err(UPSTREAM "store:\n"
                             "  redis: {on_failure: ignore}\n",
                    "t.yaml:4: store.redis.on_failure: unknown value 'ignore' (use local, allow, "
                    "deny)");
    assert_load_err(UPSTREAM "store:\n"
                             "  redis: {prefix: \"a {b}\"}\n",
                    "t.yaml:4: store.redis.prefix: printable, no spaces or braces, at most 64 "
                    "characters");
}

static void test_encryption_key(void **state)
{
    (void)state;
    struct config *c = load_ok(UPSTREAM "store: {encryption_key: \"\"}\n");
    assert_false(c->store.encryption_key.set);
    cfg_unref(c);

    c = load_ok(UPSTREAM "store:\n  encryption_key: "
                         "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F\n");
    assert_true(c->store.encryption_key.set);
    assert_int_equal(c->store.encryption_key.bytes[0], 0);
    assert_int_equal(c->store.encryption_key.bytes[31], 0x1f);
    cfg_unref(c);

    /* `openssl rand -base64 32`: the standard alphabet, padded. */
    c = load_ok(UPSTREAM
                "store: {encryption_key: \"+/////////////////////////////////////////8=\"}\n");
    assert_true(c->store.encryption_key.set);
    assert_int_equal(c->store.encryption_key.bytes[0], 0xfb);
    assert_int_equal(c->store.encryption_key.bytes[31], 0xff);
    cfg_unref(c);

    assert_load_err(UPSTREAM "store: {encryption_key: c2hvcnQ=}\n",
                    "t.yaml:3: store.encryption_key: must be 32 bytes as 64 hex digits or base64 "
                    "(got 8 characters), e.g. from `openssl rand -base64 32`");
    /* 63 hex digits: neither spelling, and the value is not echoed. */
    char *err =
        load_err(UPSTREAM "store: {encryption_key: "
                          "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1}\n");
    assert_non_null(strstr(err, "(got 63 characters)"));
    assert_null(strstr(err, "0001020304"));
    free(err);
}

static void test_err_identity(void **state)
{
    assert_load_err(UPSTREAM "identity:\n"
                             "  jwt: {algorithms: [HS256]}\n",
                    "t.yaml:4: identity.jwt: HS256 needs 'secret'");
    assert_load_err(UPSTREAM
                    "identity:\n"
                    "  jwt: {algorithms: [none], secret: 0123456789abcdef0123456789abcdef}\n",
                    "t.yaml:4: identity.jwt.algorithms[0]: unknown algorithm 'none' (use HS256, "
                    "RS256, ES256)");
    assert_load_err(UPSTREAM "identity:\n"
                             "  jwt: {algorithms: [RS256]}\n",
                    "t.yaml:4: identity.jwt: RS256 and ES256 need 'jwks_file'");
    assert_load_err(UPSTREAM "identity:\n"
                             "  jwt: {secret: short}\n",
                    "t.yaml:4: identity.jwt.secret: at least 32 characters (an HS256 key is a "
                    "password anyone with a token can try offline)");
    assert_load_err(UPSTREAM
                    "identity:\n"
                    "  jwt: {secret: 0123456789abcdef0123456789abcdef, default_tier: gold}\n",
                    "t.yaml:4: identity.jwt.default_tier: unknown tier 'gold'");
    char *err =
        load_err(UPSTREAM "identity:\n"
                          "  jwt: {algorithms: [RS256], jwks_file: /nonexistent/jwks.json}\n");
    assert_non_null(strstr(err, "t.yaml:4: identity.jwt: "));
    assert_non_null(strstr(err, "/nonexistent/jwks.json"));
    free(err);
    assert_load_err(UPSTREAM "identity:\n"
                             "  api_key_headers: [Authorization]\n",
                    "t.yaml:4: identity.api_key_headers[0]: Authorization is always read (Bearer "
                    "sk_...); list other headers");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    auth: sometimes\n",
                    "t.yaml:5: routes[0].auth: unknown value 'sometimes' (use optional, required)");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    scopes: [\"has space\"]\n",
                    "t.yaml:5: routes[0].scopes[0]: bad name 'has space' (letters, digits, '_', "
                    "'-', '.', ':', '/'; at most 64)");
    assert_load_err(UPSTREAM "store: {backend: disk}\n",
                    "t.yaml:3: store.backend: unknown value 'disk' (use memory, redis)");
}

/* ---- caching -------------------------------------------------------- */

static const char cache_yaml[] = "cache:\n"                                          /* 1 */
                                 "  max_memory: 1g\n"                                /* 2 */
                                 "  max_object_size: 64m\n"                          /* 3 */
                                 "upstreams:\n"                                      /* 4 */
                                 "  app: {servers: [\"127.0.0.1:8000\"]}\n"          /* 5 */
                                 "routes:\n"                                         /* 6 */
                                 "  - prefix: /api/\n"                               /* 7 */
                                 "    cache:\n"                                      /* 8 */
                                 "      ttl: 300s\n"                                 /* 9 */
                                 "      tags: [market, prices, \"v2:quote.x-1_\"]\n" /* 10 */
                                 "      stale_while_revalidate: 30s\n"               /* 11 */
                                 "      stale_if_error: 10m\n"                       /* 12 */
                                 "      shared: true\n"                              /* 13 */
                                 "      respect_origin: false\n"                     /* 14 */
                                 "  - prefix: /one/\n"                               /* 15 */
                                 "    cache: {ttl: 0s, tags: solo}\n"                /* 16 */
                                 "  - prefix: /off/\n"                               /* 17 */
                                 "    cache: off\n"                                  /* 18 */
                                 "  - prefix: /false/\n"                             /* 19 */
                                 "    cache: false\n"                                /* 20 */
                                 "  - prefix: /\n";                                  /* 21 */

static void test_cache_config(void **state)
{
    struct config *c = load_ok(cache_yaml);

    assert_int_equal(cache_conf(c)->max_memory, 1ull << 30);
    assert_int_equal(cache_conf(c)->max_object_size, 64ull << 20);
    assert_int_equal(c->n_routes, 5);

    const struct cache_route_conf *rc = cache_route_conf(&c->routes[0]);
    assert_true(rc->enabled);
    assert_int_equal(rc->ttl_ms, 300000);
    assert_int_equal(rc->n_tags, 3);
    assert_string_equal(rc->tags[0], "market");
    assert_string_equal(rc->tags[1], "prices");
    assert_string_equal(rc->tags[2], "v2:quote.x-1_");
    assert_int_equal(rc->stale_while_revalidate_ms, 30000);
    assert_int_equal(rc->stale_if_error_ms, 600000);
    assert_true(rc->shared);
    assert_false(rc->respect_origin);

    /* Defaults inside a cache section; ttl 0 is allowed; a single tag. */
    rc = cache_route_conf(&c->routes[1]);
    assert_true(rc->enabled);
    assert_int_equal(rc->ttl_ms, 0);
    assert_int_equal(rc->n_tags, 1);
    assert_string_equal(rc->tags[0], "solo");
    assert_int_equal(rc->stale_while_revalidate_ms, 0);
    assert_int_equal(rc->stale_if_error_ms, 0);
    assert_false(rc->shared);
    assert_true(rc->respect_origin);

    /* off / false: not cached, no error. */
    for (int i = 2; i <= 3; i++) {
        assert_false(cache_route_conf(&c->routes[i])->enabled);
        assert_int_equal(cache_route_conf(&c->routes[i])->n_tags, 0);
        assert_null(cache_route_conf(&c->routes[i])->tags);
    }
    /* No cache key at all. */
    assert_false(cache_route_conf(&c->routes[4])->enabled);
    assert_null(cache_route_conf(&c->routes[4])->tags);
    cfg_unref(c); /* ASan reports the tags if they leak */
}

static void test_cache_defaults(void **state)
{
    /* Top-level cache absent; the implicit route is not cached. */
    struct config *c = load_ok(UPSTREAM);
    assert_int_equal(cache_conf(c)->max_memory, 256ull << 20);
    assert_int_equal(cache_conf(c)->max_object_size, 8ull << 20);
    assert_int_equal(c->n_routes, 1);
    assert_false(cache_route_conf(&c->routes[0])->enabled);
    assert_int_equal(cache_route_conf(&c->routes[0])->n_tags, 0);
    cfg_unref(c);

    /* Top-level cache empty, or giving one key; a route without cache. */
    c = load_ok("cache:\n" UPSTREAM "routes:\n  - prefix: /\n");
    assert_int_equal(cache_conf(c)->max_memory, 256ull << 20);
    assert_int_equal(cache_conf(c)->max_object_size, 8ull << 20);
    assert_false(cache_route_conf(&c->routes[0])->enabled);
    cfg_unref(c);
    c = load_ok("cache: {max_memory: 2g}\n" UPSTREAM);
    assert_int_equal(cache_conf(c)->max_memory, 2ull << 30);
    assert_int_equal(cache_conf(c)->max_object_size, 8ull << 20);
    cfg_unref(c);

    /* Bounds, and max_object_size exactly max_memory / 16. */
    c = load_ok("cache: {max_memory: 1m, max_object_size: 64k}\n" UPSTREAM);
    assert_int_equal(cache_conf(c)->max_memory, 1u << 20);
    assert_int_equal(cache_conf(c)->max_object_size, 64u << 10);
    cfg_unref(c);
    c = load_ok("cache: {max_memory: 64g, max_object_size: 1g}\n" UPSTREAM);
    assert_int_equal(cache_conf(c)->max_memory, 64ull << 30);
    assert_int_equal(cache_conf(c)->max_object_size, 1ull << 30);
    cfg_unref(c);

    /* Upper bounds of the durations; 16 tags. */
    c = load_ok(UPSTREAM "routes:\n"
                         "  - prefix: /\n"
                         "    cache:\n"
                         "      ttl: 365d\n"
                         "      stale_while_revalidate: 365d\n"
                         "      stale_if_error: 365d\n"
                         "      tags: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p]\n");
    assert_int_equal(cache_route_conf(&c->routes[0])->ttl_ms, 365ll * 86400000);
    assert_int_equal(cache_route_conf(&c->routes[0])->stale_while_revalidate_ms, 365ll * 86400000);
    assert_int_equal(cache_route_conf(&c->routes[0])->stale_if_error_ms, 365ll * 86400000);
    assert_int_equal(cache_route_conf(&c->routes[0])->n_tags, SL_MAX_CACHE_TAGS);
    assert_string_equal(cache_route_conf(&c->routes[0])->tags[15], "p");
    cfg_unref(c);
}

#define ROUTE "routes:\n  - prefix: /\n" /* lines 3-4 after UPSTREAM */

static void test_err_cache(void **state)
{
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      tags: [a]\n",
                    "t.yaml:5: routes[0].cache.ttl: required");
    assert_load_err(UPSTREAM ROUTE "    cache: {tags: [a]}\n",
                    "t.yaml:5: routes[0].cache.ttl: required");
    assert_load_err(UPSTREAM ROUTE "    cache:\n", "t.yaml:5: routes[0].cache.ttl: required");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 300\n",
                    "t.yaml:6: routes[0].cache.ttl: bad duration '300' (use 500ms, 30s, 5m, 2h, "
                    "7d)");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 366d\n",
                    "t.yaml:6: routes[0].cache.ttl: 366d is out of range (0ms..365d)");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 1s\n"
                                   "      stale_while_revalidate: 30 s\n"
                                   "      stale_if_error: -1s\n",
                    "t.yaml:7: routes[0].cache.stale_while_revalidate: bad duration '30 s' (use "
                    "500ms, 30s, 5m, 2h, 7d)\n"
                    "t.yaml:8: routes[0].cache.stale_if_error: bad duration '-1s' (use 500ms, "
                    "30s, 5m, 2h, 7d)");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 1s\n"
                                   "      tags:\n"
                                   "        - ok\n"
                                   "        - \"not ok\"\n",
                    "t.yaml:9: routes[0].cache.tags[1]: bad tag 'not ok' (letters, digits, '_', "
                    "'-', '.', ':'; at most 64)");
    assert_load_err(UPSTREAM ROUTE "    cache: {ttl: 1s, tags: \"\"}\n",
                    "t.yaml:5: routes[0].cache.tags: bad tag '' (letters, digits, '_', '-', '.', "
                    "':'; at most 64)");
    assert_load_err(UPSTREAM ROUTE
                    "    cache: {ttl: 1s, tags: "
                    "[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]}\n",
                    "t.yaml:5: routes[0].cache.tags[0]: bad tag "
                    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' (letters, "
                    "digits, '_', '-', '.', ':'; at most 64)");
    assert_load_err(UPSTREAM ROUTE "    cache: {ttl: 1s, tags: [a, b, a]}\n",
                    "t.yaml:5: routes[0].cache.tags[2]: duplicate tag 'a'");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 1s\n"
                                   "      tags: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, "
                                   "q]\n",
                    "t.yaml:7: routes[0].cache.tags: too many entries (17; at most 16)");
    assert_load_err(UPSTREAM ROUTE "    cache:\n"
                                   "      ttl: 1s\n"
                                   "      max_age: 5s\n",
                    "t.yaml:7: unknown key 'routes[0].cache.max_age'");
    assert_load_err(UPSTREAM ROUTE "    cache: on\n",
                    "t.yaml:5: routes[0].cache: 'on' is not off (use off, or a mapping such as "
                    "{ttl: ...})");
    assert_load_err(UPSTREAM ROUTE "    cache: [ttl]\n",
                    "t.yaml:5: routes[0].cache: expected a mapping, got a list");
    assert_load_err(UPSTREAM ROUTE "    cache: {ttl: 1s, shared: maybe}\n",
                    "t.yaml:5: routes[0].cache.shared: 'maybe' is not a boolean (use true or "
                    "false)");

    assert_load_err(UPSTREAM "cache:\n"
                             "  max_memory: 32m\n"
                             "  max_object_size: 4m\n",
                    "t.yaml:3: cache: max_object_size 4m is larger than max_memory / 16 (2m with "
                    "max_memory 32m), so an object would not fit a store shard");
    /* The default max_object_size (8m) against a small max_memory. */
    assert_load_err(UPSTREAM "cache: {max_memory: 64m}\n",
                    "t.yaml:3: cache: max_object_size 8m is larger than max_memory / 16 (4m with "
                    "max_memory 64m), so an object would not fit a store shard");
    assert_load_err(UPSTREAM "cache:\n"
                             "  max_memory: 65g\n"
                             "  max_object_size: 512\n",
                    "t.yaml:4: cache.max_memory: 65g is out of range (1m..64g)\n"
                    "t.yaml:5: cache.max_object_size: 512 is out of range (1k..1g)");
    assert_load_err(UPSTREAM "cache:\n"
                             "  max_memory: lots\n"
                             "  ttl: 5s\n",
                    "t.yaml:4: cache.max_memory: bad size 'lots' (use 512, 16k, 10m, 1g)\n"
                    "t.yaml:5: unknown key 'cache.ttl'");
}
#undef ROUTE

/* ---- tiers and rate limits ------------------------------------------ */

/* `limits` comes last in the file, after the tiers and routes whose limits
 * take its algorithm: defaults are resolved once everything is read. */
static const char limits_yaml[] =
    "upstreams:\n"                                                             /* 1 */
    "  app: {servers: [\"127.0.0.1:8000\"]}\n"                                 /* 2 */
    "routes:\n"                                                                /* 3 */
    "  - path: /public/leads/\n"                                               /* 4 */
    "    methods: [POST]\n"                                                    /* 5 */
    "    limits: {anonymous: [\"2/min\", \"10/hour\"], \"*\": \"1000/h\"}\n"   /* 6 */
    "    rejection: drf\n"                                                     /* 7 */
    "    cost: 3\n"                                                            /* 8 */
    "  - prefix: /static/\n"                                                   /* 9 */
    "    limits: off\n"                                                        /* 10 */
    "  - prefix: /graphql/\n"                                                  /* 11 */
    "    rejection: graphql\n"                                                 /* 12 */
    "    limits:\n"                                                            /* 13 */
    "      free: [\"10/s burst 20\", \"concurrency 5\"]\n"                     /* 14 */
    "      staff: []\n"                                                        /* 15 */
    "  - prefix: /\n"                                                          /* 16 */
    "tiers:\n"                                                                 /* 17 */
    "  anonymous: {limits: [\"100/h\"]}\n"                                     /* 18 */
    "  free:      {limits: [\"1000/h\", \"100/5m algorithm token_bucket\"]}\n" /* 19 */
    "  staff:     {exempt: true, limits: [\"1/s\"]}\n"                         /* 20 */
    "  premium:\n"                                                             /* 21 */
    "limits:\n"                                                                /* 22 */
    "  algorithm: fixed_window\n"                                              /* 23 */
    "  headers: [x-ratelimit, ietf]\n"                                         /* 24 */
    "  enabled: ${RATE_LIMIT_ENABLED:-true}\n"                                 /* 25 */
    "  max_entries: 5000\n";                                                   /* 26 */

static void assert_limit(const struct limit *l, const char *text, enum lim_algorithm algorithm,
                         uint64_t count, int64_t window_s, uint64_t burst, const char *name)
{
    assert_string_equal(l->text, text);
    assert_int_equal(l->algorithm, algorithm);
    assert_int_equal(l->count, count);
    assert_int_equal(l->window_us, window_s * 1000000);
    assert_int_equal(l->burst, burst);
    assert_string_equal(l->name, name);
}

static void test_rate_limit_config(void **state)
{
    struct config *c = load_ok(limits_yaml);

    assert_int_equal(lim_conf(c)->algorithm, LIM_FIXED_WINDOW);
    assert_true(lim_conf(c)->header_xratelimit);
    assert_true(lim_conf(c)->header_ietf);
    assert_true(lim_conf(c)->enabled);
    assert_int_equal(lim_conf(c)->max_entries, 5000);

    assert_int_equal(c->n_tiers, 4);
    const struct cfg_tier *t = c->tiers;
    assert_string_equal(t[0].name, "anonymous");
    assert_int_equal(t[0].line, 18);
    assert_false(t[0].exempt);
    assert_int_equal(lim_tier_conf(&t[0])->n_limits, 1);
    /* No algorithm written: limits.algorithm, read after it in the file. */
    assert_limit(&lim_tier_conf(&t[0])->limits[0], "100/h", LIM_FIXED_WINDOW, 100, 3600, 0,
                 "hourly");
    assert_string_equal(t[1].name, "free");
    assert_int_equal(lim_tier_conf(&t[1])->n_limits, 2);
    assert_limit(&lim_tier_conf(&t[1])->limits[0], "1000/h", LIM_FIXED_WINDOW, 1000, 3600, 0,
                 "hourly");
    assert_limit(&lim_tier_conf(&t[1])->limits[1], "100/5m algorithm token_bucket",
                 LIM_TOKEN_BUCKET, 100, 300, 0, "per-5m");
    /* Exempt with limits: accepted, the limits are kept but never applied. */
    assert_string_equal(t[2].name, "staff");
    assert_true(t[2].exempt);
    assert_int_equal(lim_tier_conf(&t[2])->n_limits, 1);
    assert_string_equal(t[3].name, "premium");
    assert_int_equal(t[3].line, 21);
    assert_false(t[3].exempt);
    assert_int_equal(lim_tier_conf(&t[3])->n_limits, 0);

    assert_ptr_equal(cfg_find_tier(c, "free"), &t[1]);
    assert_ptr_equal(cfg_find_tier(c, "premium"), &t[3]);
    assert_null(cfg_find_tier(c, "gold"));
    assert_null(cfg_find_tier(c, "*"));
    assert_null(cfg_find_tier(c, "Free"));

    assert_int_equal(c->n_routes, 4);
    const struct cfg_route *r = c->routes;
    assert_false(lim_route_conf(&r[0])->limits_off);
    assert_int_equal(r[0].rejection, CFG_REJECT_DRF);
    assert_int_equal(r[0].cost, 3);
    assert_int_equal(lim_route_conf(&r[0])->n_limits, 2);
    assert_string_equal(lim_route_conf(&r[0])->limits[0].tier, "anonymous");
    assert_int_equal(lim_route_conf(&r[0])->limits[0].n_limits, 2);
    assert_limit(&lim_route_conf(&r[0])->limits[0].limits[0], "2/min", LIM_FIXED_WINDOW, 2, 60, 0,
                 "per-minute");
    assert_limit(&lim_route_conf(&r[0])->limits[0].limits[1], "10/hour", LIM_FIXED_WINDOW, 10, 3600,
                 0, "hourly");
    /* A single string is a list of one. */
    assert_string_equal(lim_route_conf(&r[0])->limits[1].tier, "*");
    assert_int_equal(lim_route_conf(&r[0])->limits[1].n_limits, 1);
    assert_limit(&lim_route_conf(&r[0])->limits[1].limits[0], "1000/h", LIM_FIXED_WINDOW, 1000,
                 3600, 0, "hourly");

    assert_true(lim_route_conf(&r[1])->limits_off);
    assert_int_equal(lim_route_conf(&r[1])->n_limits, 0);
    assert_int_equal(r[1].rejection, CFG_REJECT_JSON);
    assert_int_equal(r[1].cost, 1);

    assert_false(lim_route_conf(&r[2])->limits_off);
    assert_int_equal(r[2].rejection, CFG_REJECT_GRAPHQL);
    assert_int_equal(lim_route_conf(&r[2])->n_limits, 2);
    assert_string_equal(lim_route_conf(&r[2])->limits[0].tier, "free");
    assert_int_equal(lim_route_conf(&r[2])->limits[0].n_limits, 2);
    assert_limit(&lim_route_conf(&r[2])->limits[0].limits[0], "10/s burst 20", LIM_TOKEN_BUCKET, 10,
                 1, 20, "per-second");
    assert_limit(&lim_route_conf(&r[2])->limits[0].limits[1], "concurrency 5", LIM_CONCURRENCY, 5,
                 0, 0, "concurrency");
    /* An empty list: this tier has no route limits here. */
    assert_string_equal(lim_route_conf(&r[2])->limits[1].tier, "staff");
    assert_int_equal(lim_route_conf(&r[2])->limits[1].n_limits, 0);

    assert_false(lim_route_conf(&r[3])->limits_off);
    assert_int_equal(lim_route_conf(&r[3])->n_limits, 0);
    assert_null(lim_route_conf(&r[3])->limits);
    assert_int_equal(r[3].rejection, CFG_REJECT_JSON);
    assert_int_equal(r[3].cost, 1);
    cfg_unref(c); /* ASan: everything above is owned by the config */
}

static void test_rate_limit_defaults(void **state)
{
    struct config *c = load_ok(UPSTREAM);
    assert_int_equal(c->n_tiers, 0);
    assert_null(c->tiers);
    assert_null(cfg_find_tier(c, "anonymous"));
    assert_int_equal(lim_conf(c)->algorithm, LIM_SLIDING_WINDOW);
    assert_true(lim_conf(c)->header_xratelimit);
    assert_false(lim_conf(c)->header_ietf);
    assert_true(lim_conf(c)->enabled);
    assert_int_equal(lim_conf(c)->max_entries, 1000000);
    /* The implicit route has the defaults of a written one. */
    assert_false(lim_route_conf(&c->routes[0])->limits_off);
    assert_int_equal(lim_route_conf(&c->routes[0])->n_limits, 0);
    assert_int_equal(c->routes[0].rejection, CFG_REJECT_JSON);
    assert_int_equal(c->routes[0].cost, 1);
    cfg_unref(c);

    /* No limits.algorithm: sliding_window, for tier and route limits alike;
     * a limit naming its algorithm keeps it. */
    c = load_ok(UPSTREAM "tiers:\n"
                         "  free: {limits: \"5/s\"}\n"
                         "routes:\n"
                         "  - prefix: /\n"
                         "    limits: {free: [\"1/s\", \"2/s algorithm fixed_window\"]}\n");
    assert_int_equal(lim_tier_conf(&c->tiers[0])->n_limits, 1);
    assert_int_equal(lim_tier_conf(&c->tiers[0])->limits[0].algorithm, LIM_SLIDING_WINDOW);
    assert_int_equal(c->routes[0].cost, 1);
    assert_int_equal(c->routes[0].rejection, CFG_REJECT_JSON);
    assert_int_equal(lim_route_conf(&c->routes[0])->limits[0].limits[0].algorithm,
                     LIM_SLIDING_WINDOW);
    assert_int_equal(lim_route_conf(&c->routes[0])->limits[0].limits[1].algorithm,
                     LIM_FIXED_WINDOW);
    cfg_unref(c);

    /* limits.algorithm given, before the limits this time. */
    c = load_ok(UPSTREAM "limits: {algorithm: token_bucket}\n"
                         "tiers: {free: {limits: [\"5/s\", \"6/s algorithm sliding_window\"]}}\n");
    assert_int_equal(lim_tier_conf(&c->tiers[0])->limits[0].algorithm, LIM_TOKEN_BUCKET);
    assert_int_equal(lim_tier_conf(&c->tiers[0])->limits[0].burst, 0);
    assert_int_equal(lim_tier_conf(&c->tiers[0])->limits[1].algorithm, LIM_SLIDING_WINDOW);
    cfg_unref(c);

    /* headers: an empty list sends none; one value is a list of one. */
    c = load_ok(UPSTREAM "limits: {headers: []}\n");
    assert_false(lim_conf(c)->header_xratelimit);
    assert_false(lim_conf(c)->header_ietf);
    cfg_unref(c);
    c = load_ok(UPSTREAM "limits: {headers: ietf, enabled: off}\n");
    assert_false(lim_conf(c)->header_xratelimit);
    assert_true(lim_conf(c)->header_ietf);
    assert_false(lim_conf(c)->enabled);
    cfg_unref(c);
    /* Empty sections and values: defaults, no tiers, no route limits. */
    c = load_ok(UPSTREAM "limits:\n"
                         "tiers:\n"
                         "routes:\n"
                         "  - prefix: /\n"
                         "    limits:\n");
    assert_int_equal(lim_conf(c)->algorithm, LIM_SLIDING_WINDOW);
    assert_true(lim_conf(c)->header_xratelimit);
    assert_int_equal(c->n_tiers, 0);
    assert_false(lim_route_conf(&c->routes[0])->limits_off);
    assert_int_equal(lim_route_conf(&c->routes[0])->n_limits, 0);
    cfg_unref(c);
    /* The other words for off; bounds of cost and max_entries. */
    c = load_ok(UPSTREAM "limits: {max_entries: 1000}\n"
                         "routes:\n"
                         "  - {prefix: /a, limits: false, cost: 1000000}\n"
                         "  - {prefix: /b, limits: \"no\"}\n");
    assert_int_equal(lim_conf(c)->max_entries, 1000);
    assert_true(lim_route_conf(&c->routes[0])->limits_off);
    assert_int_equal(c->routes[0].cost, 1000000);
    assert_true(lim_route_conf(&c->routes[1])->limits_off);
    cfg_unref(c);
    c = load_ok(UPSTREAM "limits: {max_entries: 1000000000}\n");
    assert_int_equal(lim_conf(c)->max_entries, 1000000000);
    cfg_unref(c);
}

static const struct fake_env limits_off_env[] = {
    {"RATE_LIMIT_ENABLED", "false"},
    {NULL, NULL},
};

static void test_rate_limit_enabled_env(void **state)
{
    char *err = NULL;
    struct config *c = cfg_load_string(limits_yaml, strlen(limits_yaml), "t.yaml", fake_getenv,
                                       (void *)limits_off_env, &err);
    if (!c)
        fail_msg("config rejected: %s", err);
    assert_false(lim_conf(c)->enabled);
    cfg_unref(c);

    /* Unset: the default after ":-". */
    c = load_ok(limits_yaml);
    assert_true(lim_conf(c)->enabled);
    cfg_unref(c);

    /* 0 and 1, as environment variables often say. */
    static const struct fake_env zero[] = {{"RATE_LIMIT_ENABLED", "0"}, {NULL, NULL}};
    static const struct fake_env one[] = {{"RATE_LIMIT_ENABLED", "1"}, {NULL, NULL}};
    c = cfg_load_string(limits_yaml, strlen(limits_yaml), "t.yaml", fake_getenv, (void *)zero,
                        &err);
    assert_non_null(c);
    assert_false(lim_conf(c)->enabled);
    cfg_unref(c);
    c = cfg_load_string(limits_yaml, strlen(limits_yaml), "t.yaml", fake_getenv, (void *)one, &err);
    assert_non_null(c);
    assert_true(lim_conf(c)->enabled);
    cfg_unref(c);
}

static void test_err_rate_limits(void **state)
{
    assert_load_err(UPSTREAM "tiers:\n"
                             "  free: {limits: [\"1000/h\"]}\n"
                             "routes:\n"
                             "  - prefix: /a/\n"
                             "  - prefix: /b/\n"
                             "  - prefix: /c/\n"
                             "    limits:\n"
                             "      free: [\"1/s\"]\n"
                             "      gold: [\"10/s\"]\n",
                    "t.yaml:11: routes[2].limits: unknown tier 'gold'");
    assert_load_err(UPSTREAM "tiers:\n"
                             "  anonymous: {limits: [\"100/h\"]}\n"
                             "  free: {limits: [\"100/x\"]}\n",
                    "t.yaml:5: tiers.free.limits[0]: bad limit '100/x': unknown unit (use s, m, "
                    "h or d, or sec, min, hr, day, second(s), minute(s), hour(s), day(s))");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits:\n"
                             "      anonymous:\n"
                             "        - 2/min\n"
                             "        - 10/s burst 0\n",
                    "t.yaml:8: routes[0].limits.anonymous[1]: bad limit '10/s burst 0': the "
                    "burst must be a whole number from 1 to 4294967295");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    rejection: xml\n",
                    "t.yaml:5: routes[0].rejection: unknown value 'xml' (use json, drf, graphql)");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    cost: 0\n",
                    "t.yaml:5: routes[0].cost: 0 is out of range (1..1000000)");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    cost: 1000001\n",
                    "t.yaml:5: routes[0].cost: 1000001 is out of range (1..1000000)");
    assert_load_err(UPSTREAM "limits:\n"
                             "  algorithm: concurrency\n",
                    "t.yaml:4: limits.algorithm: concurrency cannot be a default (write "
                    "'concurrency N' as a limit of its own)");
    assert_load_err(UPSTREAM "limits:\n"
                             "  algorithm: leaky_bucket\n",
                    "t.yaml:4: limits.algorithm: unknown algorithm 'leaky_bucket' (use "
                    "fixed_window, sliding_window, token_bucket)");
    /* "default" is algo.c's name for LIM_DEFAULT, not a word users write. */
    assert_load_err(UPSTREAM "limits: {algorithm: default}\n",
                    "t.yaml:3: limits.algorithm: unknown algorithm 'default' (use fixed_window, "
                    "sliding_window, token_bucket)");
    assert_load_err(UPSTREAM "tiers:\n"
                             "  free:\n"
                             "    limits: [\"1000/h\"]\n"
                             "    quota: {monthly: 100000}\n"
                             "    price_per_1k: -1\n",
                    "t.yaml:7: tiers.free.price_per_1k: '-1' is not a price (a number from 0 to "
                    "1000 with at most 6 decimals, such as 0.5)");
}

static void test_err_rate_limit_shapes(void **state)
{
    assert_load_err(UPSTREAM "tiers: [free]\n",
                    "t.yaml:3: tiers: expected a mapping of tier names to {limits: [...]}, got a "
                    "list");
    assert_load_err(UPSTREAM "tiers:\n"
                             "  \"free tier\": {limits: [\"1/s\"]}\n"
                             "  \"*\": {limits: [\"1/s\"]}\n",
                    "t.yaml:4: tiers: bad tier name 'free tier' (letters, digits, '_', '-', '.'; "
                    "at most 64)\n"
                    "t.yaml:5: tiers: bad tier name '*' (letters, digits, '_', '-', '.'; at most "
                    "64)");
    assert_load_err(UPSTREAM "tiers:\n"
                             "  free: {}\n"
                             "  free: {exempt: true}\n",
                    "t.yaml:5: tiers: duplicate tier 'free'");
    assert_load_err(UPSTREAM "tiers:\n"
                             "  free: {exempt: maybe, colour: red}\n",
                    "t.yaml:4: unknown key 'tiers.free.colour'\n"
                    "t.yaml:4: tiers.free.exempt: 'maybe' is not a boolean (use true or false)");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits: on\n",
                    "t.yaml:5: routes[0].limits: 'on' is not off (use off, or a mapping of tiers "
                    "to limits: {anonymous: [\"100/h\"]})");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits: [\"100/h\"]\n",
                    "t.yaml:5: routes[0].limits: expected off or a mapping of tiers to limits, "
                    "got a list");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits: {anonymous: \"1/s\", anonymous: \"2/s\"}\n",
                    "t.yaml:5: routes[0].limits: duplicate tier 'anonymous'");
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits: {anonymous: {a: 1}}\n",
                    "t.yaml:5: routes[0].limits.anonymous: expected a list, got a mapping");
    assert_load_err(UPSTREAM "limits:\n"
                             "  headers: [x-ratelimit, draft]\n"
                             "  max_entries: 999\n"
                             "  enabled: sometimes\n",
                    "t.yaml:4: limits.headers[1]: unknown value 'draft' (use x-ratelimit, ietf)\n"
                    "t.yaml:5: limits.max_entries: 999 is out of range (1000..1000000000)\n"
                    "t.yaml:6: limits.enabled: 'sometimes' is not a boolean (use true or false)");
    assert_load_err(UPSTREAM "limits: [sliding_window]\n",
                    "t.yaml:3: limits: expected a mapping, got a list");

    /* Bounds: 16 limits in a list, 64 tiers. */
    char yaml[8192] = UPSTREAM "tiers:\n  free:\n    limits:\n";
    for (int i = 0; i < SL_MAX_LIMITS_PER_LIST; i++) {
        size_t len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len, "      - %d/h\n", i + 1);
    }
    struct config *c = load_ok(yaml);
    assert_int_equal(lim_tier_conf(&c->tiers[0])->n_limits, SL_MAX_LIMITS_PER_LIST);
    assert_int_equal(lim_tier_conf(&c->tiers[0])->limits[SL_MAX_LIMITS_PER_LIST - 1].count,
                     SL_MAX_LIMITS_PER_LIST);
    cfg_unref(c);
    size_t len = strlen(yaml);
    snprintf(yaml + len, sizeof yaml - len, "      - 99/h\n");
    assert_load_err(yaml, "t.yaml:5: tiers.free.limits: too many entries (17; at most 16)");

    snprintf(yaml, sizeof yaml, UPSTREAM "tiers:\n");
    for (int i = 0; i < SL_MAX_TIERS; i++) {
        len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len, "  t%d: {limits: \"1/s\"}\n", i);
    }
    c = load_ok(yaml);
    assert_int_equal(c->n_tiers, SL_MAX_TIERS);
    assert_string_equal(cfg_find_tier(c, "t63")->name, "t63");
    cfg_unref(c);
    len = strlen(yaml);
    snprintf(yaml + len, sizeof yaml - len, "  t%d: {}\n", SL_MAX_TIERS);
    assert_load_err(yaml, "t.yaml:3: tiers: too many tiers (65; at most 64)");

    /* A bad tier definition does not hide the route's other errors. */
    assert_load_err(UPSTREAM "routes:\n"
                             "  - prefix: /\n"
                             "    limits: {\"*\": [\"0/h\"]}\n"
                             "    cost: x\n",
                    "t.yaml:5: routes[0].limits.*[0]: bad limit '0/h': the count must be a whole "
                    "number from 1 to 4294967295\n"
                    "t.yaml:6: routes[0].cost: 'x' is not a whole number");
}

static void test_err_admin(void **state)
{
    assert_load_err("admin:\n"
                    "  listen: \"127.0.0.1:9090\"\n" UPSTREAM,
                    "t.yaml:1: admin.token: required");
    assert_load_err("admin:\n"
                    "  listen: \"127.0.0.1:9090\"\n"
                    "  token: \"\"\n" UPSTREAM,
                    "t.yaml:3: admin.token: must not be empty");
    /* Set but empty: still empty. */
    assert_load_err("admin:\n"
                    "  listen: \"127.0.0.1:9090\"\n"
                    "  token: \"${EMPTY}\"\n" UPSTREAM,
                    "t.yaml:3: admin.token: must not be empty");
    assert_load_err("admin:\n"
                    "  token: abc\n" UPSTREAM,
                    "t.yaml:1: admin.listen: required");
    assert_load_err("admin:\n" UPSTREAM,
                    "t.yaml:1: admin.listen: required\nt.yaml:1: admin.token: required");
}

static void test_err_env(void **state)
{
    assert_load_err("admin:\n"
                    "  listen: \"127.0.0.1:9090\"\n"
                    "  token: \"${SLUICE_ADMIN_TOKEN}\"\n" UPSTREAM,
                    "t.yaml:3: admin.token: environment variable 'SLUICE_ADMIN_TOKEN' is not set "
                    "(give a default with ${SLUICE_ADMIN_TOKEN:-value})");
    /* The variable named is the unset one, not the ones around it. */
    assert_load_err("upstreams:\n"
                    "  app: {servers: [\"${A:-x}${NOPE:-127.0.0.1}:${MISSING}\"]}\n",
                    "t.yaml:2: upstreams.app.servers[0]: environment variable 'MISSING' is not "
                    "set (give a default with ${MISSING:-value})");
    assert_load_err("server:\n"
                    "  workers: \"${A\"\n" UPSTREAM,
                    "t.yaml:2: server.workers: missing '}' after '${' in '${A'");
    /* Expansion happens before parsing the value. */
    struct config *c = load_ok("server:\n  max_connections: ${NOPE:-77}\n" UPSTREAM);
    assert_int_equal(c->server.max_connections, 77);
    cfg_unref(c);
}

static void test_err_yaml_syntax(void **state)
{
    assert_load_err("server:\n"
                    "  listen: [\"127.0.0.1:8080\"\n"
                    "upstreams: {}\n",
                    "t.yaml:3: YAML syntax error: did not find expected ',' or ']'");
    assert_load_err(UPSTREAM "server:\n"
                             "  a: b\n"
                             " c: d\n",
                    "t.yaml:5: YAML syntax error: did not find expected key");
    /* Bad UTF-8 is reported by the reader, which gives an offset, not a line. */
    assert_load_err(UPSTREAM "# caf\xe9\n", "t.yaml:3: YAML syntax error: incomplete UTF-8 "
                                            "octet sequence");
    assert_load_err(UPSTREAM "---\n" UPSTREAM, "t.yaml:3: only one YAML document is allowed");
}

static void test_err_upstreams_required(void **state)
{
    const char *want = "upstreams: at least one upstream is required, e.g. upstreams: {app: "
                       "{servers: [\"127.0.0.1:8000\"]}}";
    char buf[256];

    snprintf(buf, sizeof buf, "t.yaml: %s", want);
    assert_load_err("", buf);
    assert_load_err("# only a comment\n", buf);
    snprintf(buf, sizeof buf, "t.yaml:1: %s", want);
    assert_load_err("server: {workers: 2}\n", buf);
    assert_load_err("upstreams: {}\n", buf);
}

static void test_err_many(void **state)
{
    /* Errors come out in file order, whatever order the keys are read in. */
    assert_load_err("routes:\n"
                    "  - prefix: /\n"
                    "    upstream: nope\n"
                    "server:\n"
                    "  workers: 0\n"
                    "  bogus: 1\n"
                    "upstreams:\n"
                    "  app: {servers: [\"127.0.0.1:0\"]}\n",
                    "t.yaml:3: routes[0].upstream: unknown upstream 'nope'\n"
                    "t.yaml:5: server.workers: 0 is out of range (1..256)\n"
                    "t.yaml:6: unknown key 'server.bogus'\n"
                    "t.yaml:8: upstreams.app.servers[0]: bad address '127.0.0.1:0': bad port (use "
                    "1-65535)");

    /* Past SL_MAX_CONFIG_ERRORS, one line says the rest was dropped. */
    char yaml[2048] = UPSTREAM;
    for (int i = 0; i < SL_MAX_CONFIG_ERRORS + 5; i++) {
        size_t len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len, "k%d: 1\n", i);
    }
    char *err = load_err(yaml);
    int lines = 1;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, SL_MAX_CONFIG_ERRORS + 1);
    assert_non_null(strstr(err, "t.yaml:3: unknown key 'k0'\n"));
    assert_non_null(strstr(err, "\nt.yaml: too many errors; the first 20 are shown"));
    free(err);

    /* A control character in a value cannot break the one-error-per-line
     * output. */
    assert_load_err("server:\n  workers: \"1\\n2\"\n" UPSTREAM,
                    "t.yaml:2: server.workers: '1?2' is not a whole number or auto");
    assert_load_err("server:\n  workers: \"1\\0\"\n" UPSTREAM,
                    "t.yaml:2: server.workers: value contains a NUL byte");
    assert_load_err("server:\n  access_log: true\n  access_log: false\n" UPSTREAM,
                    "t.yaml:3: duplicate key 'server.access_log'");
}

static void test_deep_nesting(void **state)
{
    /* Aliases and deep nesting must neither blow the stack nor loop: the
     * walk only descends where the tables do. */
    size_t depth = 5000; /* libyaml's time grows with depth squared */
    char *yaml = malloc(depth * 2 + 64);
    assert_non_null(yaml);
    size_t n = 0;
    n += (size_t)snprintf(yaml, 64, "server: ");
    memset(yaml + n, '[', depth);
    n += depth;
    memset(yaml + n, ']', depth);
    n += depth;
    yaml[n] = '\0';
    char *err = load_err(yaml);
    /* Refused before libyaml builds it (test_nesting_bound). */
    assert_string_equal(err, "t.yaml:1: nested deeper than 64 levels");
    free(err);
    free(yaml);

    /* Within the bound, the walk reports the shape it expected. */
    err = load_err("server: [[[[]]]]\n");
    assert_non_null(strstr(err, "t.yaml:1: server: expected a mapping, got a list"));
    free(err);

    struct config *c = load_ok(UPSTREAM "routes:\n  - &r {prefix: /a}\n  - *r\n  - {path: /b}\n");
    assert_int_equal(c->n_routes, 3);
    cfg_unref(c);
}

/* 100k levels of nesting: refused with a line number, in linear time
 * (libyaml alone took 25 s to build such a document). */
static void test_nesting_bound(void **state)
{
    size_t depth = 100000;
    char *yaml = malloc(depth * 2 + 64);
    assert_non_null(yaml);
    size_t n = (size_t)snprintf(yaml, 64, "server:\n  listen: ");
    memset(yaml + n, '[', depth);
    n += depth;
    memset(yaml + n, ']', depth);
    n += depth;
    yaml[n] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *err = load_err(yaml);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(err, "t.yaml:2: nested deeper than 64 levels");
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 2.0);
    free(err);
    free(yaml);
    /* 64 levels are fine as far as nesting goes (the schema has its say). */
    char ok[256] = "x: ";
    n = strlen(ok);
    for (int i = 0; i < 63; i++)
        ok[n++] = '[';
    for (int i = 0; i < 63; i++)
        ok[n++] = ']';
    ok[n] = '\0';
    err = load_err(ok);
    assert_null(strstr(err, "nested deeper"));
    free(err);
}

/* A mapping key that is not a plain name (YAML allows any node as a key). */
static void test_err_key_not_a_name(void **state)
{
    char *err = load_err("upstreams:\n"
                         "  ? [a, b]\n"
                         "  : {servers: [\"127.0.0.1:8000\"]}\n");
    assert_non_null(strstr(err, "t.yaml:2: "));
    assert_non_null(strstr(err, "upstream names must be names, got a list"));
    free(err);
    err = load_err("upstreams:\n"
                   "  app: {servers: [\"127.0.0.1:8000\"]}\n"
                   "tiers:\n"
                   "  ? {x: 1}\n"
                   "  : {limits: [\"1/s\"]}\n");
    assert_non_null(strstr(err, "t.yaml:4: "));
    assert_non_null(strstr(err, "tier names must be names, got a mapping"));
    free(err);
}

/* server.request_buffering is the default of every route without its own,
 * the implicit route included; a route's own wins. */
static void test_request_buffering(void **state)
{
    struct config *c = load_ok(UPSTREAM "routes:\n  - prefix: /a/\n");
    assert_int_equal(c->server.request_buffering, CFG_BUFFER_AUTO);
    assert_int_equal(px_route_conf(&c->routes[0])->buffering, CFG_BUFFER_AUTO);
    cfg_unref(c);

    c = load_ok("server: {request_buffering: on}\n" UPSTREAM "routes:\n"
                "  - prefix: /a/\n"
                "  - prefix: /b/\n"
                "    request_buffering: off\n"
                "  - prefix: /c/\n"
                "    request_buffering: auto\n");
    assert_int_equal(c->server.request_buffering, CFG_BUFFER_ON);
    assert_int_equal(px_route_conf(&c->routes[0])->buffering, CFG_BUFFER_ON);
    assert_int_equal(px_route_conf(&c->routes[1])->buffering, CFG_BUFFER_OFF);
    assert_int_equal(px_route_conf(&c->routes[2])->buffering, CFG_BUFFER_AUTO);
    cfg_unref(c);

    c = load_ok("server: {request_buffering: off}\n" UPSTREAM);
    assert_int_equal(c->n_routes, 1);
    assert_int_equal(px_route_conf(&c->routes[0])->buffering, CFG_BUFFER_OFF);
    cfg_unref(c);

    assert_load_err("server: {request_buffering: always}\n" UPSTREAM,
                    "t.yaml:1: server.request_buffering: unknown value 'always' (use auto, on, "
                    "off)");
    assert_load_err(UPSTREAM "routes:\n  - prefix: /\n    request_buffering: yes\n",
                    "t.yaml:5: routes[0].request_buffering: unknown value 'yes' (use auto, on, "
                    "off)");
}

/* A reload says which changed keys wait for a restart, and only those. */
static void test_restart_changes(void **state)
{
    struct config *a = load_ok("server: {listen: [\"127.0.0.1:8001\"], workers: 2}\n" UPSTREAM
                               "limits: {max_entries: 5000, enabled: true}\n"
                               "cache: {max_memory: 256m}\n"
                               "store: {redis: {prefix: \"a:\"}}\n");
    struct config *same = load_ok("server: {listen: [\"127.0.0.1:8001\"], workers: 2}\n" UPSTREAM
                                  "limits: {max_entries: 5000, enabled: false}\n"
                                  "cache: {max_memory: 256m}\n"
                                  "store: {redis: {prefix: \"a:\"}}\n");
    struct config *b = load_ok("server: {listen: [\"127.0.0.1:8002\"], workers: 3}\n" UPSTREAM
                               "limits: {max_entries: 6000}\n"
                               "cache: {max_memory: 128m}\n"
                               "store: {redis: {prefix: \"b:\"}}\n");
    struct buf out = {0};
    cfg_restart_changes(a, same, &out);
    assert_int_equal(out.len, 0); /* limits.enabled applies at once */
    cfg_restart_changes(a, b, &out);
    buf_append(&out, "", 1);
    assert_string_equal(out.data, "server.listen changes only on restart\n"
                                  "server.workers changes only on restart\n"
                                  "store.redis.prefix changes only on restart\n"
                                  "limits.max_entries changes only on restart\n"
                                  "cache.max_memory changes only on restart\n");
    buf_release(&out);
    cfg_unref(a);
    cfg_unref(same);
    cfg_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v6),
        cmocka_unit_test(test_cidr_bad),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_addr_bad),
        cmocka_unit_test(test_env_expand),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_env_process),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults_and_implicit_route),
        cmocka_unit_test(test_scalar_forms),
        cmocka_unit_test(test_match_route),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_err_bad_duration),
        cmocka_unit_test(test_err_bad_values),
        cmocka_unit_test(test_err_bad_type),
        cmocka_unit_test(test_err_routes),
        cmocka_unit_test(test_abuse),
        cmocka_unit_test(test_err_graphql),
        cmocka_unit_test(test_graphql_conf),
        cmocka_unit_test(test_err_access),
        cmocka_unit_test(test_identity_config),
        cmocka_unit_test(test_err_identity),
        cmocka_unit_test(test_redis_config),
        cmocka_unit_test(test_encryption_key),
        cmocka_unit_test(test_cache_config),
        cmocka_unit_test(test_cache_defaults),
        cmocka_unit_test(test_err_cache),
        cmocka_unit_test(test_err_key_not_a_name),
        cmocka_unit_test(test_rate_limit_config),
        cmocka_unit_test(test_rate_limit_defaults),
        cmocka_unit_test(test_rate_limit_enabled_env),
        cmocka_unit_test(test_err_rate_limits),
        cmocka_unit_test(test_err_rate_limit_shapes),
        cmocka_unit_test(test_err_admin),
        cmocka_unit_test(test_err_env),
        cmocka_unit_test(test_err_yaml_syntax),
        cmocka_unit_test(test_err_upstreams_required),
        cmocka_unit_test(test_err_many),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_request_buffering),
        cmocka_unit_test(test_restart_changes),
        cmocka_unit_test(test_nesting_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
