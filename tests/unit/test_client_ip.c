/* Client address and identity resolution (SPEC 3.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "guard/client_ip.h"

struct fixture {
    struct cfg_server srv;
    struct sl_headers h;
    struct sl_header v[8];
};

static void trust(struct fixture *f, const char *cidr)
{
    assert_int_equal(cfg_parse_cidr(cidr, &f->srv.trusted_proxies[f->srv.n_trusted_proxies]), 0);
    f->srv.n_trusted_proxies++;
}

static void xff(struct fixture *f, const char *value)
{
    struct sl_header *e = &f->v[f->h.n++];
    e->name = "X-Forwarded-For";
    e->name_len = 15;
    e->value = value;
    e->value_len = strlen(value);
    f->h.v = f->v;
}

static const char *resolve(struct fixture *f, const char *peer)
{
    static char out[64];
    cip_resolve(&f->srv, peer, &f->h, out, sizeof(out));
    return out;
}

static void test_untrusted_peer_ignores_xff(void **state)
{
    struct fixture f = {0};
    trust(&f, "10.0.0.0/8");
    xff(&f, "1.2.3.4");
    assert_string_equal(resolve(&f, "198.51.100.9"), "198.51.100.9");
}

static void test_no_trusted_proxies_ignores_xff(void **state)
{
    struct fixture f = {0};
    xff(&f, "1.2.3.4");
    assert_string_equal(resolve(&f, "127.0.0.1"), "127.0.0.1");
}

static void test_trusted_peer_takes_rightmost_untrusted(void **state)
{
    struct fixture f = {0};
    trust(&f, "127.0.0.1/32");
    trust(&f, "10.0.0.0/8");
    /* the client forged the first entry; 203.0.113.5 is what our proxy saw */
    xff(&f, "6.6.6.6, 203.0.113.5, 10.1.1.1");
    assert_string_equal(resolve(&f, "127.0.0.1"), "203.0.113.5");
}

static void test_several_xff_headers_are_one_list(void **state)
{
    struct fixture f = {0};
    trust(&f, "127.0.0.1/32");
    trust(&f, "10.0.0.0/8");
    xff(&f, "6.6.6.6, 203.0.113.5");
    xff(&f, "10.2.2.2");
    assert_string_equal(resolve(&f, "127.0.0.1"), "203.0.113.5");
}

static void test_all_trusted_gives_leftmost(void **state)
{
    struct fixture f = {0};
    trust(&f, "10.0.0.0/8");
    xff(&f, "10.9.9.9, 10.1.1.1");
    assert_string_equal(resolve(&f, "10.0.0.1"), "10.9.9.9");
}

static void test_garbage_element_stops_at_last_good_hop(void **state)
{
    struct fixture f = {0};
    trust(&f, "10.0.0.0/8");
    xff(&f, "203.0.113.5, not-an-ip, 10.1.1.1");
    assert_string_equal(resolve(&f, "10.0.0.1"), "10.1.1.1");
}

static void test_ports_and_brackets(void **state)
{
    struct fixture f = {0};
    trust(&f, "10.0.0.0/8");
    xff(&f, "[2001:db8::7]:443");
    assert_string_equal(resolve(&f, "10.0.0.1"), "2001:db8::7");
    struct fixture g = {0};
    trust(&g, "10.0.0.0/8");
    xff(&g, "198.51.100.7:8080");
    assert_string_equal(resolve(&g, "10.0.0.1"), "198.51.100.7");
}

static void test_v6_trusted_proxy(void **state)
{
    struct fixture f = {0};
    trust(&f, "fd00::/8");
    xff(&f, "198.51.100.7");
    assert_string_equal(resolve(&f, "fd12::1"), "198.51.100.7");
}

static void test_identity_v4_and_mapped(void **state)
{
    char out[64];
    cip_identity("203.0.113.7", 64, out, sizeof(out));
    assert_string_equal(out, "ip:203.0.113.7");
    cip_identity("::ffff:203.0.113.7", 64, out, sizeof(out));
    assert_string_equal(out, "ip:203.0.113.7");
}

static void test_identity_v6_folds_to_prefix(void **state)
{
    char a[64], b[64];
    cip_identity("2001:db8:1:2:aaaa::1", 64, a, sizeof(a));
    cip_identity("2001:db8:1:2:bbbb::99", 64, b, sizeof(b));
    assert_string_equal(a, "ip:2001:db8:1:2::/64");
    assert_string_equal(a, b);
    cip_identity("2001:db8:1:2:aaaa::1", 56, a, sizeof(a));
    assert_string_equal(a, "ip:2001:db8:1::/56");
    cip_identity("2001:db8:1:2:aaaa::1", 128, a, sizeof(a));
    assert_string_equal(a, "ip:2001:db8:1:2:aaaa::1/128");
    cip_identity("2001:db8::1", 61, a, sizeof(a));
    assert_string_equal(a, "ip:2001:db8::/61");
}

static void test_in_cidrs(void **state)
{
    struct fixture f = {0};
    trust(&f, "192.168.0.0/23");
    assert_true(cip_in_cidrs("192.168.1.200", f.srv.trusted_proxies, 1));
    assert_false(cip_in_cidrs("192.168.2.1", f.srv.trusted_proxies, 1));
    assert_false(cip_in_cidrs("::1", f.srv.trusted_proxies, 1));
    assert_false(cip_in_cidrs("garbage", f.srv.trusted_proxies, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrusted_peer_ignores_xff),
        cmocka_unit_test(test_no_trusted_proxies_ignores_xff),
        cmocka_unit_test(test_trusted_peer_takes_rightmost_untrusted),
        cmocka_unit_test(test_several_xff_headers_are_one_list),
        cmocka_unit_test(test_all_trusted_gives_leftmost),
        cmocka_unit_test(test_garbage_element_stops_at_last_good_hop),
        cmocka_unit_test(test_ports_and_brackets),
        cmocka_unit_test(test_v6_trusted_proxy),
        cmocka_unit_test(test_identity_v4_and_mapped),
        cmocka_unit_test(test_identity_v6_folds_to_prefix),
        cmocka_unit_test(test_in_cidrs),
    };
    return cmocka_run_group_tests_name("client_ip", tests, NULL, NULL);
}
