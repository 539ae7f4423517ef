/* base64url (src/util/base64url.c): the RFC 4648 test vectors, the url
 * alphabet, what the decoder refuses, and round trips of random bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/base64url.h"

/* RFC 4648 section 10, padded and unpadded. */
static const struct {
    const char *plain, *padded, *bare;
} vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

#define N_VECTORS (sizeof(vectors) / sizeof(vectors[0]))

/* Decodes the C string <s> with <flags>: 0 and the bytes in <out>, their count in *<n>; or -1. */
static int decode(const char *s, unsigned flags, unsigned char *out, size_t cap, size_t *n)
{
    return b64url_decode(s, strlen(s), flags, out, cap, n);
}

static void expect_refused(const char *s, unsigned flags)
{
    unsigned char out[64];
    size_t n = 12345;
    assert_int_equal(decode(s, flags, out, sizeof(out), &n), -1);
    assert_int_equal(n, 12345); /* untouched on failure */
}

static void test_rfc4648_encode(void **state)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const char *p = vectors[i].plain;
        char out[16];
        memset(out, 'x', sizeof(out));
        assert_int_equal(b64url_encode(p, strlen(p), true, out, sizeof(out)),
                         strlen(vectors[i].padded));
        assert_string_equal(out, vectors[i].padded);
        assert_int_equal(b64url_encoded_len(strlen(p), true), strlen(vectors[i].padded));
        assert_int_equal(b64url_encode(p, strlen(p), false, out, sizeof(out)),
                         strlen(vectors[i].bare));
        assert_string_equal(out, vectors[i].bare);
        assert_int_equal(b64url_encoded_len(strlen(p), false), strlen(vectors[i].bare));
    }
}

static void test_rfc4648_decode(void **state)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const char *p = vectors[i].plain;
        unsigned char out[16];
        size_t n;
        /* padding optional by default */
        assert_int_equal(decode(vectors[i].padded, 0, out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(out, p, n);
        assert_int_equal(decode(vectors[i].bare, 0, out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(out, p, n);
        assert_true(b64url_decoded_max(strlen(vectors[i].bare)) >= n);
        assert_true(b64url_decoded_max(strlen(vectors[i].padded)) >= n);
        /* B64URL_NO_PAD: only the bare form */
        assert_int_equal(decode(vectors[i].bare, B64URL_NO_PAD, out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(p));
        if (strcmp(vectors[i].bare, vectors[i].padded) != 0)
            expect_refused(vectors[i].padded, B64URL_NO_PAD);
    }
}

static void test_url_alphabet(void **state)
{
    /* 0xfb 0xff 0xbf is "+/+/" in plain base64 */
    static const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0xfb, 0xef};
    char out[16];
    assert_int_equal(b64url_encode(bytes, 3, false, out, sizeof(out)), 4);
    assert_string_equal(out, "-_-_");
    assert_int_equal(b64url_encode(bytes, 5, true, out, sizeof(out)), 8);
    assert_string_equal(out, "-_-_--8=");
    unsigned char back[8];
    size_t n;
    assert_int_equal(decode("-_-_--8", 0, back, sizeof(back), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(back, bytes, 5);

    /* every character of the alphabet, once, in order: 48 bytes */
    static const char all[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[48];
    char again[65];
    assert_int_equal(decode(all, B64URL_NO_PAD, raw, sizeof(raw), &n), 0);
    assert_int_equal(n, 48);
    assert_int_equal(b64url_encode(raw, n, false, again, sizeof(again)), 64);
    assert_string_equal(again, all);
}

static void test_refuses_plain_base64_and_other_bytes(void **state)
{
    expect_refused("+/8=", 0);
    expect_refused("-+8", 0);
    expect_refused("ab/d", 0);
    expect_refused("Zm9v Yg", 0);
    expect_refused("Zm9v\nYg", 0);
    expect_refused("Zm9v.g", 0);
    /* a NUL inside the given length */
    unsigned char out[8];
    size_t n;
    assert_int_equal(b64url_decode("Zm\0v", 4, 0, out, sizeof(out), &n), -1);
    /* a byte with the top bit set (Latin-1 'e' acute) */
    expect_refused("Zm9\xe9", 0);
}

static void test_refuses_bad_lengths_and_padding(void **state)
{
    expect_refused("Z", 0);        /* 4k+1: 6 bits cannot end a byte */
    expect_refused("Zm9vY", 0);    /* idem */
    expect_refused("Z===", 0);     /* idem, padded */
    expect_refused("Zg=", 0);      /* padded, but not to a multiple of 4 */
    expect_refused("Zm8==", 0);    /* idem */
    expect_refused("Zm8A=", 0);    /* idem */
    expect_refused("Zg===", 0);    /* more padding than the group needs */
    expect_refused("Zm8=====", 0); /* idem */
    expect_refused("Zm9v====", 0); /* a whole group of padding */
    expect_refused("====", 0);
    expect_refused("=", 0);
    expect_refused("Zg==Zg==", 0); /* padding in the middle */
    expect_refused("Z=g=", 0);
    expect_refused("=Zg", 0);
    /* non-zero bits after the last byte: a second spelling of "f" */
    expect_refused("Zh", 0);
    expect_refused("Zh==", 0);
    expect_refused("Zm9", 0); /* "fo" is Zm8 */
    /* the output bound */
    unsigned char out[8];
    size_t n;
    assert_int_equal(decode("Zm9vYmFy", 0, out, 5, &n), -1);
    assert_int_equal(decode("Zm9vYmFy", 0, out, 6, &n), 0);
    assert_int_equal(n, 6);
}

static void test_encode_needs_room(void **state)
{
    char out[8];
    memset(out, 'x', sizeof(out));
    /* "foob" takes 8 characters padded, plus the NUL */
    assert_int_equal(b64url_encode("foob", 4, true, out, 8), 0);
    assert_string_equal(out, "");
    assert_int_equal(b64url_encode("foob", 4, false, out, 7), 6);
    assert_string_equal(out, "Zm9vYg");
    assert_int_equal(b64url_encode("foob", 4, false, out, 6), 0);
    assert_int_equal(b64url_encode("", 0, true, out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(b64url_encode("", 0, true, NULL, 0), 0);
}

/* xorshift64*: reproducible bytes without depending on the machine's RNG. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static void test_round_trip_random_bytes(void **state)
{
    uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
    unsigned char in[300], back[300];
    char text[405];
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(rng_next(&seed) % sizeof(in));
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)rng_next(&seed);
        bool pad = round & 1;
        size_t tlen = b64url_encode(in, len, pad, text, sizeof(text));
        assert_int_equal(tlen, b64url_encoded_len(len, pad));
        assert_int_equal(strlen(text), tlen);
        assert_null(strpbrk(text, "+/"));
        if (!pad)
            assert_null(strchr(text, '='));
        size_t n = 0;
        assert_true(b64url_decoded_max(tlen) <= sizeof(back));
        assert_int_equal(
            b64url_decode(text, tlen, pad ? 0 : B64URL_NO_PAD, back, b64url_decoded_max(tlen), &n),
            0);
        assert_int_equal(n, len);
        if (len)
            assert_memory_equal(back, in, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode),
        cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_refuses_plain_base64_and_other_bytes),
        cmocka_unit_test(test_refuses_bad_lengths_and_padding),
        cmocka_unit_test(test_encode_needs_room),
        cmocka_unit_test(test_round_trip_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
