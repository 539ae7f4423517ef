/* Path normalisation for routing; Host validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "util/url.h"

static void expect(const char *in, const char *want)
{
    char out[256];
    size_t n = 0;
    int rc = url_normalize_path(in, strlen(in), out, &n);
    if (!want) {
        assert_int_equal(rc, -1);
        return;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_plain_paths_unchanged(void **state)
{
    expect("/", "/");
    expect("/a", "/a");
    expect("/a/b/", "/a/b/");
    expect("/a%2Fb/%7Euser;p=1", "/a%2Fb/%7Euser;p=1");
    expect("/files/..hidden/.x", "/files/..hidden/.x");
}

static void test_dot_segments(void **state)
{
    expect("/a/./b", "/a/b");
    expect("/a/b/../c", "/a/c");
    expect("/public/../private", "/private");
    expect("/a/b/..", "/a/");
    expect("/a/b/.", "/a/b/");
    expect("/a/..", "/");
}

static void test_encoded_dots(void **state)
{
    expect("/public/%2e%2e/private", "/private");
    expect("/public/%2E%2e/private", "/private");
    expect("/public/.%2e/private", "/private");
    expect("/a/%2e/b", "/a/b");
    expect("/a/%2e%2e%2e/b", "/a/%2e%2e%2e/b");
}

static void test_merged_slashes(void **state)
{
    expect("//a///b", "/a/b");
    expect("/a//", "/a/");
}

static void test_escapes_above_root_rejected(void **state)
{
    expect("/..", NULL);
    expect("/a/../..", NULL);
    expect("/%2e%2e/etc/passwd", NULL);
    expect("relative", NULL);
    expect("", NULL);
}

static bool host_ok(const char *h)
{
    return url_host_valid(h, strlen(h));
}

static void test_host_valid(void **state)
{
    assert_true(host_ok("example.com"));
    assert_true(host_ok("Example.COM:8080"));
    assert_true(host_ok("127.0.0.1"));
    assert_true(host_ok("127.0.0.1:80"));
    assert_true(host_ok("a"));
    assert_true(host_ok("my_host-1.internal~x"));
    assert_true(host_ok("%41bc.example"));
    assert_true(host_ok("a!$&'()*+,;=b"));
    assert_true(host_ok("[::1]"));
    assert_true(host_ok("[::1]:8443"));
    assert_true(host_ok("[2001:db8::7]"));
    assert_true(host_ok("[::ffff:192.0.2.1]"));
    assert_true(host_ok("[v1.fe80::a+en1]"));
    assert_true(host_ok(""));             /* RFC 9110 7.2: a target without an authority */
    assert_true(host_ok("example.com:")); /* port = *DIGIT */
}

static void test_host_invalid(void **state)
{
    /* issue 11: '|' joined the fields of cache keys */
    assert_false(host_ok("a|/cached/p1"));
    assert_false(host_ok("a/b"));
    assert_false(host_ok("a b"));
    assert_false(host_ok("a\tb"));
    assert_false(host_ok("user@example.com"));
    assert_false(host_ok("example.com:80:80"));
    assert_false(host_ok("example.com:8x"));
    assert_false(host_ok("a?b"));
    assert_false(host_ok("a#b"));
    assert_false(host_ok("a\\b"));
    assert_false(host_ok("%4"));
    assert_false(host_ok("%zz.example"));
    assert_false(host_ok("[::1"));
    assert_false(host_ok("[::1]x"));
    assert_false(host_ok("[::1]:x"));
    assert_false(host_ok("[]"));
    assert_false(host_ok("[not-ipv6]"));
    assert_false(host_ok("[v.x]"));
    assert_false(host_ok("[v1.]"));
    assert_false(host_ok("[::1|x]"));
    assert_false(host_ok("\x80host"));
    assert_false(url_host_valid("a\0b", 3));
    /* the length counts, not the NUL */
    assert_true(url_host_valid("example.com|junk", 11));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths_unchanged),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_encoded_dots),
        cmocka_unit_test(test_merged_slashes),
        cmocka_unit_test(test_escapes_above_root_rejected),
        cmocka_unit_test(test_host_valid),
        cmocka_unit_test(test_host_invalid),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
