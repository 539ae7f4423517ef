/* Unit tests of src/auth/apikey.c: the secret's format and length, base62
 * of known vectors, uniqueness, SHA-256 of a known vector, the visible
 * prefix, ids, and the shape check. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"

static bool all_b62(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}

static void test_base62_vectors(void **state)
{
    (void)state;
    char out[64];
    uint8_t zero[32] = {0}, ones[32], seq[32];
    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        seq[i] = (uint8_t)i;

    assert_int_equal(apikey_base62(zero, 32, out, sizeof(out)), APIKEY_B62_LEN);
    assert_string_equal(out, "0000000000000000000000000000000000000000000");
    /* 2^256 - 1 and 0x00 01 .. 1f, computed with Python's integers. */
    assert_int_equal(apikey_base62(ones, 32, out, sizeof(out)), APIKEY_B62_LEN);
    assert_string_equal(out, "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1");
    assert_int_equal(apikey_base62(seq, 32, out, sizeof(out)), APIKEY_B62_LEN);
    assert_string_equal(out, "003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf");

    /* Widths: 1 byte -> 2 digits (255 = 4*62 + 7), 2 bytes -> 3. */
    assert_int_equal(apikey_base62((const uint8_t[]){0xff}, 1, out, sizeof(out)), 2);
    assert_string_equal(out, "47");
    assert_int_equal(apikey_base62((const uint8_t[]){0x01}, 1, out, sizeof(out)), 2);
    assert_string_equal(out, "01");
    assert_int_equal(apikey_base62((const uint8_t[]){0x00, 62}, 2, out, sizeof(out)), 3);
    assert_string_equal(out, "010");

    /* <cap> must exceed the width. */
    assert_int_equal(apikey_base62(zero, 32, out, APIKEY_B62_LEN), 0);
    assert_string_equal(out, "");
    assert_int_equal(apikey_base62(zero, 32, out, APIKEY_B62_LEN + 1), APIKEY_B62_LEN);
}

static void test_generate_format(void **state)
{
    (void)state;
    char s[APIKEY_SECRET_MAX];
    assert_int_equal(apikey_generate("live", s), 0);
    assert_int_equal(strlen(s), 8 + APIKEY_B62_LEN);
    assert_memory_equal(s, "sk_live_", 8);
    assert_true(all_b62(s + 8, APIKEY_B62_LEN));
    assert_true(apikey_shape_ok(s, strlen(s)));

    assert_int_equal(apikey_generate("test", s), 0);
    assert_memory_equal(s, "sk_test_", 8);
    assert_int_equal(apikey_generate("abcdefghijklmnop", s), 0); /* 16: the longest env */
    assert_int_equal(strlen(s), APIKEY_SECRET_MAX - 1);
    assert_true(apikey_shape_ok(s, strlen(s)));

    assert_int_equal(apikey_generate("", s), -1);
    assert_int_equal(apikey_generate("Live", s), -1);
    assert_int_equal(apikey_generate("li_ve", s), -1);
    assert_int_equal(apikey_generate("abcdefghijklmnopq", s), -1);
    assert_false(apikey_env_ok(NULL));
    assert_true(apikey_env_ok("prod2"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_generate_unique(void **state)
{
    (void)state;
    enum { N = 1000 };
    char(*s)[APIKEY_SECRET_MAX] = calloc(N, sizeof(*s));
    for (int i = 0; i < N; i++)
        assert_int_equal(apikey_generate("live", s[i]), 0);
    qsort(s, N, sizeof(*s), cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(s[i - 1], s[i]);
    /* Leading digits of the 43 are not stuck at zero: the top digit is
     * 0..'y' (2^256 < 62^43), the second is uniform; over 1000 keys the
     * second digit takes many values. */
    int seen[128] = {0}, distinct = 0;
    for (int i = 0; i < N; i++)
        if (!seen[(unsigned char)s[i][9]]++)
            distinct++;
    assert_true(distinct > 40);
    free(s);
}

static void test_tokens_and_ids(void **state)
{
    (void)state;
    char t[64];
    assert_int_equal(apikey_generate_token("rt", t, sizeof(t)), 0);
    assert_int_equal(strlen(t), 3 + APIKEY_B62_LEN);
    assert_memory_equal(t, "rt_", 3);
    assert_true(all_b62(t + 3, APIKEY_B62_LEN));
    assert_false(apikey_shape_ok(t, strlen(t)));                              /* not an API key */
    assert_int_equal(apikey_generate_token("rt", t, 3 + APIKEY_B62_LEN), -1); /* no room for NUL */

    char id[APIKEY_ID_MAX], id2[APIKEY_ID_MAX];
    assert_int_equal(apikey_new_id(id), 0);
    assert_int_equal(apikey_new_id(id2), 0);
    assert_int_equal(strlen(id), 20);
    assert_memory_equal(id, "key_", 4);
    for (int i = 4; i < 20; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
    assert_string_not_equal(id, id2);
}

static void test_hash_vector(void **state)
{
    (void)state;
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    static const uint8_t empty[32] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                      0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                      0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                      0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash("abc", 3, h);
    assert_memory_equal(h, abc, 32);
    apikey_hash("abcdef", 3, h); /* only <len> bytes count */
    assert_memory_equal(h, abc, 32);
    apikey_hash("", 0, h);
    assert_memory_equal(h, empty, 32);
}

static void test_visible_prefix(void **state)
{
    (void)state;
    char p[APIKEY_PREFIX_MAX];
    apikey_visible_prefix("sk_live_ab12CDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq", p);
    assert_string_equal(p, "sk_live_ab12");
    apikey_visible_prefix("sk_test_0000000000000000000000000000000000000000000", p);
    assert_string_equal(p, "sk_test_0000");

    char s[APIKEY_SECRET_MAX];
    assert_int_equal(apikey_generate("abcdefghijklmnop", s), 0);
    apikey_visible_prefix(s, p);
    assert_int_equal(strlen(p), APIKEY_PREFIX_MAX - 1);
    assert_memory_equal(p, s, APIKEY_PREFIX_MAX - 1);

    apikey_visible_prefix("sk_x", p); /* short garbage: cut, never overrun */
    assert_string_equal(p, "sk_x");
}

static void test_shape(void **state)
{
    (void)state;
    const char *good = "sk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";
    assert_int_equal(strlen(good), 8 + 43);
    assert_true(apikey_shape_ok(good, strlen(good)));
    assert_true(apikey_shape_ok("sk_t_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg", 48));

    const char *bad[] = {
        "",
        "sk_live_",
        "sk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",   /* 42 digits */
        "sk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh", /* 44 digits, env "live_0" bad */
        "sk__0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",      /* empty env */
        "sk_Live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",  /* upper-case env */
        "pk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
        "sk_live-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
        "sk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcde-g",
        "sk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcde g",
        "sk_abcdefghijklmnopq_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg", /* env of 17 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(apikey_shape_ok(bad[i], strlen(bad[i])));
    /* Length is what the caller says, not strlen. */
    assert_false(apikey_shape_ok(good, strlen(good) - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base62_vectors),  cmocka_unit_test(test_generate_format),
        cmocka_unit_test(test_generate_unique), cmocka_unit_test(test_tokens_and_ids),
        cmocka_unit_test(test_hash_vector),     cmocka_unit_test(test_visible_prefix),
        cmocka_unit_test(test_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
