/* Path normalisation for routing. */
#include <setjmp.h>
#include <stdarg.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_paths_unchanged),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_encoded_dots),
        cmocka_unit_test(test_merged_slashes),
        cmocka_unit_test(test_escapes_above_root_rejected),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
