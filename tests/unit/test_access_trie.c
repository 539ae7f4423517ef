/* The access module's prefix trie and decision rule (SPEC 7.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "access/decide.h"
#include "access/entry.h"
#include "access/trie.h"

#define NOW 1700000000000ll

static struct acl_trie *trie_of(const char *const *cidrs)
{
    struct acl_trie *t = acl_trie_new();
    assert_non_null(t);
    for (; *cidrs; cidrs++) {
        struct cfg_cidr c;
        assert_int_equal(cfg_parse_cidr(*cidrs, &c), 0);
        assert_int_equal(acl_trie_add(t, &c, ACL_FOREVER), 0);
    }
    return t;
}

static bool in(const struct acl_trie *t, const char *ip)
{
    int family;
    uint8_t addr[16];
    assert_true(acl_parse_addr(ip, &family, addr));
    return acl_trie_match(t, family, addr, NOW);
}

static void test_v4(void **state)
{
    (void)state;
    struct acl_trie *t = trie_of((const char *const[]){"10.0.0.0/8", "192.0.2.7", NULL});
    assert_true(in(t, "10.0.0.0"));
    assert_true(in(t, "10.255.255.255"));
    assert_false(in(t, "11.0.0.0"));
    assert_false(in(t, "9.255.255.255"));
    assert_true(in(t, "192.0.2.7")); /* no prefix: /32 */
    assert_false(in(t, "192.0.2.6"));
    assert_false(in(t, "192.0.2.8"));
    assert_false(in(t, "::a00:1")); /* a v6 address is not in a v4 network */
    assert_int_equal(acl_trie_count(t), 2);
    acl_trie_free(t);
}

static void test_v6(void **state)
{
    (void)state;
    struct acl_trie *t = trie_of((const char *const[]){"2001:db8::/32", "::1/128", NULL});
    assert_true(in(t, "2001:db8::1"));
    assert_true(in(t, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(in(t, "2001:db9::"));
    assert_true(in(t, "::1"));
    assert_false(in(t, "::2"));
    assert_false(in(t, "0.0.0.1"));
    acl_trie_free(t);
}

static void test_zero_prefix(void **state)
{
    (void)state;
    struct acl_trie *t = trie_of((const char *const[]){"0.0.0.0/0", NULL});
    assert_true(in(t, "1.2.3.4"));
    assert_true(in(t, "255.255.255.255"));
    assert_false(in(t, "2001:db8::1")); /* /0 of v4 only */
    acl_trie_free(t);
    t = trie_of((const char *const[]){"::/0", NULL});
    assert_true(in(t, "2001:db8::1"));
    assert_false(in(t, "1.2.3.4"));
    acl_trie_free(t);
}

static void test_overlapping(void **state)
{
    (void)state;
    /* The broad network added after a narrow one, and the reverse. */
    struct acl_trie *t =
        trie_of((const char *const[]){"10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", NULL});
    assert_true(in(t, "10.1.2.3"));
    assert_true(in(t, "10.200.0.1"));
    assert_false(in(t, "11.1.2.3"));
    acl_trie_free(t);
}

static void test_v4_mapped(void **state)
{
    (void)state;
    struct acl_trie *t =
        trie_of((const char *const[]){"192.0.2.0/24", "::ffff:198.51.100.0/120", NULL});
    assert_true(in(t, "::ffff:192.0.2.1"));
    assert_true(in(t, "198.51.100.9")); /* a mapped network counts as v4 */
    assert_false(in(t, "::ffff:198.51.101.9"));
    acl_trie_free(t);
}

static void test_expiry(void **state)
{
    (void)state;
    struct acl_trie *t = acl_trie_new();
    struct cfg_cidr wide, narrow;
    assert_int_equal(cfg_parse_cidr("10.0.0.0/8", &wide), 0);
    assert_int_equal(cfg_parse_cidr("10.1.0.0/16", &narrow), 0);
    assert_int_equal(acl_trie_add(t, &wide, NOW + 1000), 0);
    assert_int_equal(acl_trie_add(t, &narrow, NOW + 5000), 0);
    int family;
    uint8_t a[16], b[16];
    acl_parse_addr("10.1.2.3", &family, a);
    acl_parse_addr("10.2.2.3", &family, b);
    assert_true(acl_trie_match(t, AF_INET, b, NOW));
    assert_false(acl_trie_match(t, AF_INET, b, NOW + 1000)); /* expired: never matches */
    assert_true(acl_trie_match(t, AF_INET, a, NOW + 1000));  /* the narrow one lives on */
    assert_false(acl_trie_match(t, AF_INET, a, NOW + 5000));
    acl_trie_free(t);
}

/* A long IPv4 list gets a table of its first 16 bits (trie.c): networks
 * added before and after it exists, shorter and longer than /16, keep
 * their own expiry. */
static void test_dir_expiry(void **state)
{
    (void)state;
    struct acl_trie *t = acl_trie_new();
    struct cfg_cidr c;
    assert_int_equal(cfg_parse_cidr("10.0.0.0/8", &c), 0);
    assert_int_equal(acl_trie_add(t, &c, NOW + 1000), 0);
    assert_int_equal(cfg_parse_cidr("10.1.0.0/16", &c), 0);
    assert_int_equal(acl_trie_add(t, &c, NOW + 5000), 0);
    for (int i = 0; i < 5000; i++) { /* past ACL_DIR_MIN: the table is built */
        c = (struct cfg_cidr){.family = AF_INET, .bits = 32};
        c.addr[0] = 192;
        c.addr[1] = 168;
        c.addr[2] = (uint8_t)(i / 256);
        c.addr[3] = (uint8_t)i;
        assert_int_equal(acl_trie_add(t, &c, ACL_FOREVER), 0);
    }
    assert_int_equal(cfg_parse_cidr("10.2.0.0/15", &c), 0);
    assert_int_equal(acl_trie_add(t, &c, NOW + 3000), 0);
    assert_int_equal(cfg_parse_cidr("10.9.3.0/24", &c), 0);
    assert_int_equal(acl_trie_add(t, &c, NOW + 2000), 0);
    assert_int_equal(cfg_parse_cidr("::ffff:172.16.0.0/108", &c), 0); /* 172.16.0.0/12 */
    assert_int_equal(acl_trie_add(t, &c, NOW + 2000), 0);
    struct {
        const char *ip;
        int64_t until; /* matches before this, not from it; 0: never */
    } cases[] = {
        {"10.200.0.1", NOW + 1000}, {"10.1.2.3", NOW + 5000},   {"10.3.255.1", NOW + 3000},
        {"10.9.3.7", NOW + 2000},   {"10.9.4.7", NOW + 1000},   {"192.168.19.135", ACL_FOREVER},
        {"192.168.20.1", 0},        {"172.31.1.1", NOW + 2000}, {"11.0.0.1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int family;
        uint8_t a[16];
        assert_true(acl_parse_addr(cases[i].ip, &family, a));
        assert_int_equal(acl_trie_match(t, family, a, NOW - 1), cases[i].until > NOW - 1);
        if (cases[i].until != ACL_FOREVER && cases[i].until > 0) {
            assert_true(acl_trie_match(t, family, a, cases[i].until - 1));
            assert_false(acl_trie_match(t, family, a, cases[i].until));
        }
    }
    acl_trie_free(t);
}

/* The reference: a scan of every network. */
static bool brute(const struct cfg_cidr *v, int n, int family, const uint8_t addr[16])
{
    for (int i = 0; i < n; i++) {
        if (v[i].family != family)
            continue;
        int full = v[i].bits / 8, rest = v[i].bits % 8;
        if (memcmp(addr, v[i].addr, (size_t)full) != 0)
            continue;
        if (rest && (addr[full] & (0xff << (8 - rest)) & 0xff) != v[i].addr[full])
            continue;
        return true;
    }
    return false;
}

static void random_addr(int family, uint8_t addr[16], const struct cfg_cidr *near)
{
    memset(addr, 0, 16);
    int len = family == AF_INET ? 4 : 16;
    for (int i = 0; i < len; i++)
        addr[i] = (uint8_t)rand();
    /* Half the time near a listed network, so that matches are common. */
    if (near && rand() % 2)
        memcpy(addr, near->addr, (size_t)(near->bits / 8));
}

static void test_100k_against_scan(void **state)
{
    (void)state;
    srand(1234);
    enum { N = 100000, PROBES = 5000 };
    struct cfg_cidr *v = calloc(N, sizeof *v);
    struct acl_trie *t = acl_trie_new();
    for (int i = 0; i < N; i++) {
        int family = i % 4 == 0 ? AF_INET6 : AF_INET;
        random_addr(family, v[i].addr, NULL);
        v[i].family = family;
        /* Mostly long prefixes, as real deny lists are, a few short ones. */
        int max = family == AF_INET ? 32 : 128;
        v[i].bits = (uint8_t)(rand() % 50 == 0 ? 8 + rand() % 9 : max - rand() % 9);
        for (int b = v[i].bits; b < max; b++)
            v[i].addr[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
        assert_int_equal(acl_trie_add(t, &v[i], ACL_FOREVER), 0);
    }
    int hits = 0;
    for (int i = 0; i < PROBES; i++) {
        int family = rand() % 4 == 0 ? AF_INET6 : AF_INET;
        uint8_t addr[16];
        const struct cfg_cidr *near = &v[rand() % N];
        random_addr(family, addr, near->family == family ? near : NULL);
        bool want = brute(v, N, family, addr);
        assert_int_equal(acl_trie_match(t, family, addr, NOW), want);
        hits += want;
    }
    assert_true(hits > PROBES / 10); /* the test exercised both answers */
    assert_true(hits < PROBES);
    acl_trie_free(t);
    free(v);
}

static void test_parse_addr(void **state)
{
    (void)state;
    int family;
    uint8_t addr[16];
    assert_false(acl_parse_addr("", &family, addr));
    assert_false(acl_parse_addr("10.0.0.256", &family, addr));
    assert_false(acl_parse_addr("unix:", &family, addr));
    assert_true(acl_parse_addr("::ffff:1.2.3.4", &family, addr));
    assert_int_equal(family, AF_INET);
    assert_int_equal(addr[0], 1);
}

/* ---- the decision rule ---- */

static struct acl_conf conf_of(const char *const *allow, const char *const *deny)
{
    struct acl_conf c = {0};
    if (allow && *allow)
        c.allow_trie = trie_of(allow);
    if (deny && *deny)
        c.deny_trie = trie_of(deny);
    return c;
}

static int decide(const struct acl_conf *top, const struct acl_conf *route,
                  const struct acl_snap *rt, const char *ip)
{
    int family;
    uint8_t addr[16];
    bool ok = acl_parse_addr(ip, &family, addr);
    return acl_decide(top, route, rt, ok, family, addr, NOW);
}

static void test_decide(void **state)
{
    (void)state;
    struct acl_conf top = conf_of((const char *const[]){"10.0.0.0/8", NULL},
                                  (const char *const[]){"10.9.0.0/16", NULL});
    struct acl_conf route = conf_of((const char *const[]){"192.0.2.0/24", NULL}, NULL);
    struct acl_conf route_deny = conf_of(NULL, (const char *const[]){"10.1.0.0/16", NULL});
    struct acl_snap rt = {.refs = 1,
                          .deny = trie_of((const char *const[]){"10.2.0.0/16", NULL}),
                          .allow = trie_of((const char *const[]){"172.16.0.0/12", NULL}),
                          .allow_until_ms = ACL_FOREVER};

    assert_int_equal(decide(NULL, NULL, NULL, "1.2.3.4"), ACL_SRC_N); /* no lists */
    assert_int_equal(decide(&top, NULL, NULL, "10.1.1.1"), ACL_SRC_N);
    assert_int_equal(decide(&top, NULL, NULL, "10.9.1.1"), ACL_SRC_CONFIG); /* deny wins */
    assert_int_equal(decide(&top, NULL, NULL, "11.1.1.1"), ACL_SRC_CONFIG); /* not allowed */
    /* The route's allow list replaces the top's; the top's deny still counts. */
    assert_int_equal(decide(&top, &route, NULL, "192.0.2.1"), ACL_SRC_N);
    assert_int_equal(decide(&top, &route, NULL, "10.1.1.1"), ACL_SRC_CONFIG);
    assert_int_equal(decide(&top, &route_deny, NULL, "10.1.1.1"), ACL_SRC_CONFIG);
    assert_int_equal(decide(&top, &route_deny, NULL, "10.3.1.1"), ACL_SRC_N);
    /* Run-time deny wins; run-time allow adds to the top's allow list. */
    assert_int_equal(decide(&top, NULL, &rt, "10.2.1.1"), ACL_SRC_RUNTIME);
    assert_int_equal(decide(&top, NULL, &rt, "172.16.5.5"), ACL_SRC_N);
    assert_int_equal(decide(NULL, NULL, &rt, "10.1.1.1"), ACL_SRC_RUNTIME);
    /* An expired run-time allow list no longer applies. */
    rt.allow_until_ms = NOW;
    assert_int_equal(decide(NULL, NULL, &rt, "10.1.1.1"), ACL_SRC_N);
    /* A client address that is not an IP: refused only where an allow list applies. */
    assert_int_equal(decide(NULL, &route_deny, NULL, "unix"), ACL_SRC_N);
    assert_int_equal(decide(&top, NULL, NULL, "unix"), ACL_SRC_CONFIG);

    acl_trie_free(top.allow_trie);
    acl_trie_free(top.deny_trie);
    acl_trie_free(route.allow_trie);
    acl_trie_free(route_deny.deny_trie);
    acl_trie_free(rt.allow);
    acl_trie_free(rt.deny);
}

/* ---- POST /access bodies ---- */

static const char *parse(const char *body, struct acl_entry *e)
{
    return acl_entry_parse(body, strlen(body), NOW, e);
}

static void test_entry_parse(void **state)
{
    (void)state;
    struct acl_entry e;
    assert_null(parse("{\"list\": \"deny\", \"cidr\": \"203.0.113.0/24\", \"ttl\": \"1h\", "
                      "\"note\": \"scraper\"}",
                      &e));
    assert_int_equal(e.list, ACL_DENY);
    assert_string_equal(e.cidr, "203.0.113.0/24");
    assert_string_equal(e.note, "scraper");
    assert_int_equal(e.expires_ms, NOW + 3600000);
    assert_null(parse("{\"list\": \"allow\", \"cidr\": \"::1\"}", &e));
    assert_int_equal(e.expires_ms, 0);
    assert_non_null(parse("{\"list\": \"deny\"}", &e));
    assert_non_null(parse("{\"list\": \"deny\", \"cidr\": \"1.2.3.4/33\"}", &e));
    assert_non_null(parse("{\"list\": \"deny\", \"cidr\": \"1.2.3.4\", \"ttl\": 5}", &e));
    assert_non_null(parse("{\"list\": \"deny\", \"cidr\": \"1.2.3.4\", \"ttl\": \"-1s\"}", &e));
    assert_non_null(
        parse("{\"list\": \"deny\", \"cidr\": \"1.2.3.4\", \"note\": \"a\\u0000b\"}", &e));
    assert_non_null(parse("{\"list\": \"deny\", \"list\": \"allow\", \"cidr\": \"1.2.3.4\"}", &e));
    assert_non_null(parse("[]", &e));
    assert_non_null(parse("", &e));
    /* A misspelt field is an error, not an entry without it. */
    assert_string_equal(parse("{\"list\": \"deny\", \"cidr\": \"1.2.3.4\", \"tll\": \"1h\"}", &e),
                        "unknown field (an entry has list, cidr, ttl and note)");
}

/* A key's allow_ips (SPEC 7.1): checked network by network, with the same
 * reading of IPv4-mapped networks as the trie. */
static bool key_admits(const char *const *cidrs, const char *ip)
{
    struct cfg_cidr nets[8];
    int n = 0;
    for (; *cidrs; cidrs++)
        assert_int_equal(cfg_parse_cidr(*cidrs, &nets[n++]), 0);
    int family;
    uint8_t addr[16];
    bool ok = acl_parse_addr(ip, &family, addr);
    return acl_key_admits(nets, n, ok, family, addr);
}

static void test_key_admits(void **state)
{
    (void)state;
    const char *const list[] = {
        "10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "198.51.100.0/23", "::ffff:203.0.113.0/120",
        NULL};
    assert_true(key_admits(list, "10.255.0.1"));
    assert_false(key_admits(list, "11.0.0.1"));
    assert_true(key_admits(list, "192.0.2.7"));
    assert_false(key_admits(list, "192.0.2.8"));
    assert_true(key_admits(list, "2001:db8:ffff::1"));
    assert_false(key_admits(list, "2001:db9::1"));
    /* /23: the second byte of the boundary counts. */
    assert_true(key_admits(list, "198.51.101.255"));
    assert_false(key_admits(list, "198.51.102.0"));
    /* A mapped network holds IPv4 clients; a mapped client is IPv4. */
    assert_true(key_admits(list, "203.0.113.9"));
    assert_true(key_admits(list, "::ffff:10.1.2.3"));
    assert_false(key_admits(list, "::ffff:11.1.2.3"));
    /* No list: anywhere. A client address that is not an IP: refused. */
    assert_true(key_admits((const char *const[]){NULL}, "203.0.113.1"));
    assert_false(acl_key_admits((struct cfg_cidr[]){{.family = AF_INET, .bits = 0}}, 1, false,
                                AF_INET, (uint8_t[16]){0}));
    assert_true(key_admits((const char *const[]){"0.0.0.0/0", NULL}, "203.0.113.1"));
    assert_false(key_admits((const char *const[]){"0.0.0.0/0", NULL}, "2001:db8::1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),          cmocka_unit_test(test_v6),
        cmocka_unit_test(test_zero_prefix), cmocka_unit_test(test_overlapping),
        cmocka_unit_test(test_v4_mapped),   cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_dir_expiry),  cmocka_unit_test(test_100k_against_scan),
        cmocka_unit_test(test_parse_addr),  cmocka_unit_test(test_decide),
        cmocka_unit_test(test_entry_parse), cmocka_unit_test(test_key_admits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
