/* The signature headers and the canonical string (signing/sig.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "signing/sig.h"
#include "util/mem.h"
#include "util/str.h"

const char sig_empty_body_hex[65] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void sig_hex(const uint8_t *digest, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* <s>/<*len> without leading and trailing blanks. */
static const char *sig_trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return s;
}

/* "v1=" and 64 hex digits (either case) into <mac>. */
static bool sig_parse_mac(const char *s, size_t len, uint8_t mac[SIG_MAC_LEN])
{
    if (len != 3 + 2 * SIG_MAC_LEN || memcmp(s, "v1=", 3) != 0)
        return false;
    return str_unhex(s + 3, len - 3, mac, SIG_MAC_LEN) == 0;
}

static bool sig_parse_ts(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > SIG_TIMESTAMP_DIGITS)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Printable ASCII without blanks, so that it is one token in a Redis key
 * and in a log line. */
static bool sig_token_ok(const char *s, size_t len, size_t min, size_t max)
{
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

enum sig_parse_result sig_parse(const char *key, size_t key_len, const char *ts, size_t ts_len,
                                const char *nonce, size_t nonce_len, const char *sig,
                                size_t sig_len, struct sig_headers *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (!sig)
        return SIG_PARSE_MISSING;
    sig = sig_trim(sig, &sig_len);
    if (!sig_parse_mac(sig, sig_len, out->mac)) {
        *why = "X-Sluice-Signature is not v1=<64 hex digits>";
        return SIG_PARSE_MALFORMED;
    }
    if (!key || !ts || !nonce) {
        *why = !key  ? "X-Sluice-Key is missing"
               : !ts ? "X-Sluice-Timestamp is missing"
                     : "X-Sluice-Nonce is missing";
        return SIG_PARSE_MALFORMED;
    }
    key = sig_trim(key, &key_len);
    ts = sig_trim(ts, &ts_len);
    nonce = sig_trim(nonce, &nonce_len);
    if (!sig_token_ok(key, key_len, 1, SIG_KEY_ID_MAX)) {
        *why = "X-Sluice-Key is not a key id";
        return SIG_PARSE_MALFORMED;
    }
    if (!sig_parse_ts(ts, ts_len, &out->ts)) {
        *why = "X-Sluice-Timestamp is not Unix seconds";
        return SIG_PARSE_MALFORMED;
    }
    if (!sig_token_ok(nonce, nonce_len, SIG_NONCE_MIN, SIG_NONCE_MAX)) {
        *why = "X-Sluice-Nonce is not 8 to 128 printable characters without blanks";
        return SIG_PARSE_MALFORMED;
    }
    out->key_id = key;
    out->key_id_len = key_len;
    out->timestamp = ts;
    out->timestamp_len = ts_len;
    out->nonce = nonce;
    out->nonce_len = nonce_len;
    return SIG_PARSE_OK;
}

struct sig_part {
    const char *s;
    size_t len;
};

/* Bytewise, a prefix first: as memcmp-based sorts (and Python's sorted()
 * on ASCII or UTF-8 text) order them. */
static int sig_part_cmp(const void *a, const void *b)
{
    const struct sig_part *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

void sig_sorted_query(const char *query, size_t len, struct buf *out)
{
    if (!query || len == 0)
        return;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += query[i] == '&';
    struct sig_part *parts = sl_malloc(n * sizeof(*parts));
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && query[i] != '&')
            continue;
        parts[k].s = query + start;
        parts[k].len = i - start;
        k++;
        start = i + 1;
    }
    qsort(parts, n, sizeof(*parts), sig_part_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append(out, "&", 1);
        buf_append(out, parts[i].s, parts[i].len);
    }
    free(parts);
}

void sig_canonical(struct buf *out, const char *method, const char *path, size_t path_len,
                   const char *query, size_t query_len, const struct sig_headers *h,
                   const char body_hex[65])
{
    buf_append_str(out, method);
    buf_append(out, "\n", 1);
    buf_append(out, path, path_len);
    buf_append(out, "\n", 1);
    sig_sorted_query(query, query_len, out);
    buf_append(out, "\n", 1);
    buf_append(out, h->timestamp, h->timestamp_len);
    buf_append(out, "\n", 1);
    buf_append(out, h->nonce, h->nonce_len);
    buf_append(out, "\n", 1);
    buf_append(out, body_hex, 64);
}

bool sig_mac_ok(const uint8_t secret[SIG_SECRET_LEN], const char *canonical, size_t len,
                const uint8_t mac[SIG_MAC_LEN])
{
    uint8_t want[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), secret, SIG_SECRET_LEN, (const unsigned char *)canonical, len, want,
              &n) ||
        n != SIG_MAC_LEN)
        return false;
    return CRYPTO_memcmp(want, mac, SIG_MAC_LEN) == 0;
}
