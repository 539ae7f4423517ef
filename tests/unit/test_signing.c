/* Request signing's pure parts (src/signing/sig.h, src/util/seal.h): the
 * header parser, the canonical string (query sorting, empty body), the MAC
 * comparison, sealing and opening a secret (tampering, another key id as
 * AAD, another key), and the replay cache under an injected clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "signing/sig.h"
#include "util/buf.h"
#include "util/limits.h"
#include "util/seal.h"

#define MAC_HEX "v1=00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
#define S(x) x, strlen(x)

static enum sig_parse_result parse(const char *key, const char *ts, const char *nonce,
                                   const char *sig, struct sig_headers *h, const char **why)
{
    return sig_parse(key, key ? strlen(key) : 0, ts, ts ? strlen(ts) : 0, nonce,
                     nonce ? strlen(nonce) : 0, sig, sig ? strlen(sig) : 0, h, why);
}

static void test_parse_good(void **state)
{
    struct sig_headers h;
    const char *why;
    assert_int_equal(parse(" key_0123456789abcdef ", "1700000000 ", "n0nce-123", MAC_HEX, &h, &why),
                     SIG_PARSE_OK);
    assert_int_equal(h.key_id_len, 20);
    assert_memory_equal(h.key_id, "key_0123456789abcdef", 20);
    assert_int_equal(h.ts, 1700000000);
    assert_int_equal(h.timestamp_len, 10);
    assert_int_equal(h.nonce_len, 9);
    assert_int_equal(h.mac[0], 0x00);
    assert_int_equal(h.mac[31], 0xff); /* upper-case hex accepted */
}

static void test_parse_bad(void **state)
{
    struct sig_headers h;
    const char *why;
    assert_int_equal(parse("k", "1", "nonce-123", NULL, &h, &why), SIG_PARSE_MISSING);
    static const struct {
        const char *key, *ts, *nonce, *sig, *why;
    } cases[] = {
        {"k", "1", "nonce-123", "v1=abc", "X-Sluice-Signature"},
        {"k", "1", "nonce-123",
         "v2=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
         "X-Sluice-Signature"},
        {"k", "1", "nonce-123",
         "v1=0011223344556677889Xaabbccddeeff00112233445566778899aabbccddeeff",
         "X-Sluice-Signature"},
        {NULL, "1", "nonce-123", MAC_HEX, "X-Sluice-Key is missing"},
        {"k", NULL, "nonce-123", MAC_HEX, "X-Sluice-Timestamp is missing"},
        {"k", "1", NULL, MAC_HEX, "X-Sluice-Nonce is missing"},
        {"", "1", "nonce-123", MAC_HEX, "X-Sluice-Key"},
        {"a b", "1", "nonce-123", MAC_HEX, "X-Sluice-Key"},
        {"k", "-1", "nonce-123", MAC_HEX, "X-Sluice-Timestamp"},
        {"k", "1.5", "nonce-123", MAC_HEX, "X-Sluice-Timestamp"},
        {"k", "1234567890123", "nonce-123", MAC_HEX, "X-Sluice-Timestamp"},
        {"k", "", "nonce-123", MAC_HEX, "X-Sluice-Timestamp"},
        {"k", "1", "short", MAC_HEX, "X-Sluice-Nonce"},
        {"k", "1", "with space", MAC_HEX, "X-Sluice-Nonce"},
        {"k", "1", "nonce\x01x123", MAC_HEX, "X-Sluice-Nonce"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].key, cases[i].ts, cases[i].nonce, cases[i].sig, &h, &why),
                         SIG_PARSE_MALFORMED);
        assert_non_null(strstr(why, cases[i].why));
    }
    char nonce[SIG_NONCE_MAX + 2];
    memset(nonce, 'n', sizeof(nonce) - 1);
    nonce[SIG_NONCE_MAX + 1] = '\0';
    assert_int_equal(parse("k", "1", nonce, MAC_HEX, &h, &why), SIG_PARSE_MALFORMED);
    nonce[SIG_NONCE_MAX] = '\0';
    assert_int_equal(parse("k", "1", nonce, MAC_HEX, &h, &why), SIG_PARSE_OK);
}

static char *sorted(const char *q, struct buf *b)
{
    b->len = 0;
    sig_sorted_query(q, q ? strlen(q) : 0, b);
    buf_append(b, "", 1);
    return b->data;
}

static void test_sorted_query(void **state)
{
    struct buf b = {0};
    assert_string_equal(sorted(NULL, &b), "");
    assert_string_equal(sorted("", &b), "");
    assert_string_equal(sorted("b=2&a=1", &b), "a=1&b=2");
    /* Raw pairs, bytewise: 'B' < 'a', a prefix first, duplicates kept, no decoding. */
    assert_string_equal(sorted("a=2&a=1&B=x&a", &b), "B=x&a&a=1&a=2");
    assert_string_equal(sorted("q=a%20b&p=%7E", &b), "p=%7E&q=a%20b");
    /* Empty parts stay (as '&'.join(sorted(q.split('&'))) keeps them). */
    assert_string_equal(sorted("b&&a", &b), "&a&b");
    buf_release(&b);
}

static void test_canonical(void **state)
{
    struct sig_headers h;
    const char *why;
    assert_int_equal(parse("key_1", "1700000000", "abcdefgh", MAC_HEX, &h, &why), SIG_PARSE_OK);
    struct buf b = {0};
    sig_canonical(&b, "GET", S("/v1/a%2Fb"), S("z=1&a=2"), &h, sig_empty_body_hex);
    buf_append(&b, "", 1);
    assert_string_equal(b.data, "GET\n/v1/a%2Fb\na=2&z=1\n1700000000\nabcdefgh\n"
                                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    b.len = 0;
    sig_canonical(&b, "POST", S("/"), NULL, 0, &h, sig_empty_body_hex);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.data, "POST\n/\n\n1700000000\n"));
    buf_release(&b);

    /* The empty-body digest is SHA-256(""). */
    uint8_t d[32];
    unsigned int n = 0;
    EVP_Digest("", 0, d, &n, EVP_sha256(), NULL);
    char hex[65];
    sig_hex(d, 32, hex);
    assert_string_equal(hex, sig_empty_body_hex);
}

static void test_mac(void **state)
{
    uint8_t secret[SIG_SECRET_LEN], mac[SIG_MAC_LEN];
    for (int i = 0; i < SIG_SECRET_LEN; i++)
        secret[i] = (uint8_t)i;
    const char *msg = "GET\n/\n\n1\nabcdefgh\n"
                      "e3b0";
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, sizeof(secret), (const uint8_t *)msg, strlen(msg), mac, &n);
    assert_true(sig_mac_ok(secret, msg, strlen(msg), mac));
    mac[31] ^= 1;
    assert_false(sig_mac_ok(secret, msg, strlen(msg), mac));
    mac[31] ^= 1;
    secret[0] ^= 1;
    assert_false(sig_mac_ok(secret, msg, strlen(msg), mac));
}

static void test_seal_round_trip_and_tamper(void **state)
{
    uint8_t key[SEAL_KEY_LEN], other[SEAL_KEY_LEN], plain[32], out[32];
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)(i * 7);
        other[i] = (uint8_t)(i * 7 + 1);
        plain[i] = (uint8_t)(255 - i);
    }
    char text[SEAL_TEXT_MAX], again[SEAL_TEXT_MAX];
    size_t n = 0;
    assert_int_equal(seal_text(key, "key_a", plain, 32, text), 0);
    assert_int_equal(strlen(text), SEAL_TEXT_MAX - 1);
    assert_memory_equal(text, "v1:", 3);
    assert_int_equal(seal_open(key, "key_a", text, out, sizeof(out), &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(out, plain, 32);
    /* A fresh nonce each time: the same secret never seals to the same text. */
    assert_int_equal(seal_text(key, "key_a", plain, 32, again), 0);
    assert_string_not_equal(text, again);

    /* Another key id (the AAD), another encryption key: no. */
    assert_int_equal(seal_open(key, "key_b", text, out, sizeof(out), &n), -1);
    assert_int_equal(seal_open(other, "key_a", text, out, sizeof(out), &n), -1);
    /* Every hex digit changed in turn (nonce, ciphertext, tag): no. */
    for (size_t i = 3; i < strlen(text); i++) {
        char t[SEAL_TEXT_MAX];
        memcpy(t, text, sizeof(t));
        t[i] = t[i] == '0' ? '1' : '0';
        assert_int_equal(seal_open(key, "key_a", t, out, sizeof(out), &n), -1);
    }
    /* Malformed: no tag, truncated, odd, not hex, too small a buffer. */
    assert_int_equal(seal_open(key, "key_a", "", out, sizeof(out), &n), -1);
    assert_int_equal(seal_open(key, "key_a", text + 3, out, sizeof(out), &n), -1);
    char t[SEAL_TEXT_MAX];
    memcpy(t, text, sizeof(t));
    t[strlen(t) - 1] = '\0';
    assert_int_equal(seal_open(key, "key_a", t, out, sizeof(out), &n), -1);
    t[40] = 'g';
    assert_int_equal(seal_open(key, "key_a", t, out, sizeof(out), &n), -1);
    assert_int_equal(seal_open(key, "key_a", text, out, 16, &n), -1);
    assert_int_equal(seal_text(key, "key_a", plain, SEAL_PLAIN_MAX + 1, t), -1);
}

#define SEC INT64_C(1000000)

static enum sig_replay_result check(struct sig_replay *r, const char *key, const char *nonce,
                                    int64_t now_us)
{
    return sig_replay_check(r, S(key), S(nonce), now_us, 600 * SEC);
}

static void test_replay_expiry(void **state)
{
    struct sig_replay *r = sig_replay_new();
    int64_t t0 = 1000 * SEC;
    assert_int_equal(check(r, "key_a", "nonce-0001", t0), SIG_REPLAY_NEW);
    assert_int_equal(check(r, "key_a", "nonce-0001", t0 + 1), SIG_REPLAY_SEEN);
    /* Per key: another key may use the same nonce. */
    assert_int_equal(check(r, "key_b", "nonce-0001", t0 + 2), SIG_REPLAY_NEW);
    /* Still remembered a whole window later (it moved to the previous generation). */
    assert_int_equal(check(r, "key_c", "nonce-0002", t0 + 600 * SEC), SIG_REPLAY_NEW);
    assert_int_equal(check(r, "key_a", "nonce-0001", t0 + 600 * SEC + 1), SIG_REPLAY_SEEN);
    assert_int_equal(check(r, "key_c", "nonce-0002", t0 + 1100 * SEC), SIG_REPLAY_SEEN);
    /* Two windows on, both generations have aged out: forgotten. */
    assert_int_equal(check(r, "key_a", "nonce-0001", t0 + 2400 * SEC), SIG_REPLAY_NEW);
    sig_replay_free(r);
}

static void test_replay_bounded_per_key(void **state)
{
    struct sig_replay *r = sig_replay_new();
    char nonce[32];
    unsigned news = 0;
    enum sig_replay_result res = SIG_REPLAY_NEW;
    for (unsigned i = 0; i < 2 * SIG_REPLAY_PER_KEY && res == SIG_REPLAY_NEW; i++) {
        snprintf(nonce, sizeof(nonce), "nonce-%08u", i);
        res = check(r, "key_busy", nonce, 5 * SEC);
        news += res == SIG_REPLAY_NEW;
    }
    /* Refused, not forgotten: full once one shard holds its share of this key. */
    assert_int_equal(res, SIG_REPLAY_FULL);
    assert_true(news <= SIG_REPLAY_PER_KEY);
    assert_true(news >= SIG_REPLAY_PER_KEY / 4);
    /* What it holds is still refused as a replay; other keys go on. */
    assert_int_equal(check(r, "key_busy", "nonce-00000000", 5 * SEC), SIG_REPLAY_SEEN);
    assert_int_equal(check(r, "key_other", "nonce-00000000", 5 * SEC), SIG_REPLAY_NEW);
    /* Once the window has passed twice, the key has room again. */
    assert_int_equal(check(r, "key_busy", "nonce-new-one", 5 * SEC + 1300 * SEC), SIG_REPLAY_NEW);
    sig_replay_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),    cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_sorted_query),  cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_mac),           cmocka_unit_test(test_seal_round_trip_and_tamper),
        cmocka_unit_test(test_replay_expiry), cmocka_unit_test(test_replay_bounded_per_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
