/* Alert webhook signatures (src/quota/signature.c) against HMAC-SHA256
 * values computed with Python's hmac module: the Stripe-style header, an
 * empty secret and body, a key longer than the hash's block, a negative
 * time, and that every byte of the body and of the time is signed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quota/signature.h"

static void test_vectors(void **state)
{
    char out[QUOTA_SIGNATURE_MAX];
    const char *body = "{\"type\": \"quota.threshold\"}";
    quota_signature("whsec_test", 10, 1796461140, body, strlen(body), out);
    assert_string_equal(out, "t=1796461140,v1="
                             "324cb12584225533bf7b0f75bd75267c1f615fad1b1ee85df28344cc25d923a6");
    quota_signature("", 0, 0, "", 0, out);
    assert_string_equal(out,
                        "t=0,v1=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3");
    char key[100];
    memset(key, 'k', sizeof(key));
    quota_signature(key, sizeof(key), -1, "body", 4, out);
    assert_string_equal(out,
                        "t=-1,v1=cf088a75329a3bbc95517dfb70ea0a482dfcc6b90c7f75b5bce0e8ab8959ec18");
    /* the longest time fits */
    quota_signature("s", 1, INT64_MIN, "", 0, out);
    assert_int_equal(strlen(out), strlen("t=-9223372036854775808,v1=") + 64);
}

static void test_everything_is_signed(void **state)
{
    char a[QUOTA_SIGNATURE_MAX], b[QUOTA_SIGNATURE_MAX];
    quota_signature("s", 1, 100, "{\"used\": 80}", 12, a);
    quota_signature("s", 1, 100, "{\"used\": 81}", 12, b);
    assert_string_not_equal(a + 6, b + 6);
    quota_signature("s", 1, 101, "{\"used\": 80}", 12, b);
    assert_string_not_equal(strchr(a, ','), strchr(b, ','));
    quota_signature("t", 1, 100, "{\"used\": 80}", 12, b);
    assert_string_not_equal(a, b);
    /* "<t>." then the body: t=1 with body "0x" is not t=10 with body "x" */
    quota_signature("s", 1, 1, "0x", 2, a);
    quota_signature("s", 1, 10, "x", 1, b);
    assert_string_not_equal(strchr(a, ','), strchr(b, ','));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_everything_is_signed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
