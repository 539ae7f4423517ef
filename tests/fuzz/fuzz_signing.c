/* libFuzzer harness: request signing's parsers (signing/sig.h) and the
 * sealed-secret reader (util/seal.h), all fed by what clients send or what
 * a store holds.
 *
 * The input is split on '\n' into: X-Sluice-Key, X-Sluice-Timestamp,
 * X-Sluice-Nonce, X-Sluice-Signature, the path, the query and a sealed
 * text; a missing field is an absent header. Invariants: a parsed request
 * has fields within their bounds; its canonical string is the six parts
 * joined (a sorted query has the query's length); the MAC check agrees with
 * HMAC over that string; a text that opens was sealed by this harness. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "signing/sig.h"
#include "util/buf.h"
#include "util/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_FIELDS 7

static void fuzz_check_canonical(const struct sig_headers *h, const char *path, size_t path_len,
                                 const char *query, size_t query_len)
{
    if (h->key_id_len < 1 || h->key_id_len > SIG_KEY_ID_MAX || h->nonce_len < SIG_NONCE_MIN ||
        h->nonce_len > SIG_NONCE_MAX || h->timestamp_len < 1 ||
        h->timestamp_len > SIG_TIMESTAMP_DIGITS || h->ts < 0)
        FUZZ_ABORT();
    struct buf b = {0};
    sig_canonical(&b, "POST", path, path_len, query, query_len, h, sig_empty_body_hex);
    size_t want =
        4 + 1 + path_len + 1 + query_len + 1 + h->timestamp_len + 1 + h->nonce_len + 1 + 64;
    if (b.len != want)
        FUZZ_ABORT();
    uint8_t secret[SIG_SECRET_LEN] = {1, 2, 3}, mac[SIG_MAC_LEN];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, sizeof(secret), (const uint8_t *)b.data, b.len, mac, &n);
    if (!sig_mac_ok(secret, b.data, b.len, mac) ||
        (h->mac[0] != mac[0] && sig_mac_ok(secret, b.data, b.len, h->mac)))
        FUZZ_ABORT();
    buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f[N_FIELDS] = {0};
    size_t len[N_FIELDS] = {0};
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t at = 0;
    for (int i = 0; i < N_FIELDS && at <= size; i++) {
        const char *nl = memchr(copy + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - copy) : size;
        f[i] = copy + at;
        len[i] = end - at;
        copy[end] = '\0';
        at = end + 1;
        if (!nl)
            break;
    }
    struct sig_headers h;
    const char *why = NULL;
    enum sig_parse_result r =
        sig_parse(f[0], len[0], f[1], len[1], f[2], len[2], f[3], len[3], &h, &why);
    if (r == SIG_PARSE_MALFORMED && !why)
        FUZZ_ABORT();
    if (r == SIG_PARSE_OK)
        fuzz_check_canonical(&h, f[4] ? f[4] : "", len[4], f[5], len[5]);

    static const uint8_t key[SEAL_KEY_LEN] = {9, 8, 7};
    uint8_t plain[SEAL_PLAIN_MAX];
    size_t n = 0;
    if (f[6] && seal_open(key, "key_fuzz", f[6], plain, sizeof(plain), &n) == 0)
        FUZZ_ABORT(); /* a forged tag opened */
    free(copy);
    return 0;
}
