/* A key's allow_ips as the CLI, the admin API and the stores read and
 * write it (auth/keyips.h, SPEC 7.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "auth/keyips.h"

static void test_parse(void **state)
{
    (void)state;
    struct cfg_cidr v[KS_ALLOW_IPS_N];
    char why[160];
    assert_int_equal(ks_allow_ips_parse("", v, why, sizeof why), 0);
    assert_int_equal(ks_allow_ips_parse("10.0.0.0/8, 2001:db8::/32 ,192.0.2.7", v, why, sizeof why),
                     3);
    assert_int_equal(v[0].family, AF_INET);
    assert_int_equal(v[0].bits, 8);
    assert_int_equal(v[1].family, AF_INET6);
    assert_int_equal(v[1].bits, 32);
    assert_int_equal(v[2].bits, 32);
    /* A trailing comma ends the list; an empty item inside it is an error. */
    assert_int_equal(ks_allow_ips_parse("10.0.0.0/8,", v, why, sizeof why), 1);
    assert_int_equal(ks_allow_ips_parse("10.0.0.0/8,,192.0.2.7", v, why, sizeof why), -1);
    assert_int_equal(ks_allow_ips_parse("10.0.0.0/33", v, why, sizeof why), -1);
    assert_non_null(strstr(why, "'10.0.0.0/33'"));
    assert_int_equal(ks_allow_ips_parse("example.com", v, why, sizeof why), -1);
    /* Seventeen networks: one too many. */
    char many[KS_ALLOW_IPS_MAX * 2] = "";
    for (int i = 0; i < KS_ALLOW_IPS_N + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s10.0.%d.0/24", i ? "," : "",
                 i);
    assert_int_equal(ks_allow_ips_parse(many, v, why, sizeof why), -1);
    assert_non_null(strstr(why, "at most 16"));
}

static void test_join(void **state)
{
    (void)state;
    char out[KS_ALLOW_IPS_MAX], why[160];
    const char *items[] = {" 10.0.0.0/8 ", "2001:db8::/32"};
    assert_int_equal(ks_allow_ips_join(items, 2, out, why, sizeof why), 0);
    assert_string_equal(out, "10.0.0.0/8,2001:db8::/32");
    assert_int_equal(ks_allow_ips_join(items, 0, out, why, sizeof why), 0);
    assert_string_equal(out, "");
    const char *bad[] = {"10.0.0.0/8,192.0.2.1"};
    assert_int_equal(ks_allow_ips_join(bad, 1, out, why, sizeof why), -1);
    /* The longest text there is fits: 16 full-length IPv6 networks. */
    const char *full[KS_ALLOW_IPS_N];
    for (int i = 0; i < KS_ALLOW_IPS_N; i++)
        full[i] = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128";
    assert_int_equal(ks_allow_ips_join(full, KS_ALLOW_IPS_N, out, why, sizeof why), 0);
    assert_int_equal(strlen(out), 16 * 43 + 15);
    struct cfg_cidr v[KS_ALLOW_IPS_N];
    assert_int_equal(ks_allow_ips_parse(out, v, why, sizeof why), KS_ALLOW_IPS_N);
}

static int from_json(const char *text, char out[KS_ALLOW_IPS_MAX])
{
    char why[160];
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(v);
    int rc = ks_allow_ips_from_json(v, out, why, sizeof why);
    json_decref(v);
    return rc;
}

static void test_from_json(void **state)
{
    (void)state;
    char out[KS_ALLOW_IPS_MAX];
    assert_int_equal(from_json("[\"10.0.0.0/8\", \"::1\"]", out), 0);
    assert_string_equal(out, "10.0.0.0/8,::1");
    assert_int_equal(from_json("\"10.0.0.0/8, ::1\"", out), 0);
    assert_string_equal(out, "10.0.0.0/8,::1");
    assert_int_equal(from_json("null", out), 0);
    assert_string_equal(out, "");
    assert_int_equal(from_json("[]", out), 0);
    assert_string_equal(out, "");
    assert_int_equal(from_json("[\"10.0.0.0/8\", 7]", out), -1);
    assert_int_equal(from_json("[\"10.0.0.0/8,192.0.2.1\"]", out), -1);
    assert_int_equal(from_json("{\"cidr\": \"10.0.0.0/8\"}", out), -1);
    assert_int_equal(from_json("\"bad\"", out), -1);
    assert_int_equal(from_json("[\"10.0.0.0\\u0000/8\"]", out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_from_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
