/* libFuzzer harness: JWT parsing and verification (auth/jwt_verify.h) with
 * an HS256 verifier that checks issuer, audience and exempt roles.
 *
 * The first input byte picks what the rest is:
 *   even: a token, verified as it arrived (almost always a bad signature:
 *         this reaches splitting, base64url and the header's checks);
 *   odd:  "<header JSON>\n<payload JSON>", which the harness encodes and
 *         signs with the verifier's secret, so that the claims checks
 *         (exp/nbf/iss/aud/sub, tier, scope, roles) see fuzzed JSON too.
 * RS256/ES256 are not covered (they need a JWKS file and private keys). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "auth/jwt_verify.h"
#include "util/base64url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret-0123456789abcdef0123456789"
#define NOW_S INT64_C(1700000000)

static struct jwtv *verifier(void)
{
    static struct jwtv *v;
    if (!v) {
        static const char *const roles[] = {"staff", "ops"};
        struct jwtv_config c = {
            .algorithms = JWTV_HS256,
            .secret = SECRET,
            .issuer = "https://issuer.example",
            .audience = "sluice",
            .exempt_roles = roles,
            .n_exempt_roles = 2,
            .leeway_s = 30,
        };
        char *err = NULL;
        v = jwtv_new(&c, &err);
        if (!v)
            FUZZ_ABORT();
    }
    return v;
}

static void check_claims(const struct jwtv_claims *cl)
{
    if (!memchr(cl->sub, '\0', sizeof(cl->sub)) || !memchr(cl->tier, '\0', sizeof(cl->tier)) ||
        !memchr(cl->scopes, '\0', sizeof(cl->scopes)) ||
        !memchr(cl->key_id, '\0', sizeof(cl->key_id)) || cl->sub[0] == '\0')
        FUZZ_ABORT();
    if (cl->exp != 0 && cl->exp + 30 <= NOW_S)
        FUZZ_ABORT(); /* an expired token was accepted */
}

static void verify(const char *token, size_t len)
{
    struct jwtv_claims cl;
    memset(&cl, 0x55, sizeof(cl));
    enum jwtv_result r = jwtv_verify(verifier(), token, len, NOW_S, &cl);
    if (!jwtv_result_text(r))
        FUZZ_ABORT();
    if (r == JWTV_OK)
        check_claims(&cl);
}

/* "<b64 head>.<b64 payload>.<b64 HMAC>" of <head>/<hlen> and <pay>/<plen>. */
static char *sign(const char *head, size_t hlen, const char *pay, size_t plen, size_t *out_len)
{
    size_t cap = b64url_encoded_len(hlen, false) + b64url_encoded_len(plen, false) +
                 b64url_encoded_len(32, false) + 4;
    char *t = malloc(cap);
    size_t n = b64url_encode(head, hlen, false, t, cap);
    t[n++] = '.';
    n += b64url_encode(pay, plen, false, t + n, cap - n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (!HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)t, n, mac,
              &mac_len))
        FUZZ_ABORT();
    t[n++] = '.';
    n += b64url_encode(mac, mac_len, false, t + n, cap - n);
    *out_len = n;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] % 2 == 0) {
        char *token = malloc(len ? len : 1); /* exactly <len> bytes */
        memcpy(token, in, len);
        verify(token, len);
        free(token);
        return 0;
    }
    const char *nl = memchr(in, '\n', len);
    size_t hlen = nl ? (size_t)(nl - in) : len;
    const char *pay = nl ? nl + 1 : "";
    size_t plen = nl ? len - hlen - 1 : 0;
    size_t tlen;
    char *token = sign(in, hlen, pay, plen, &tlen);
    verify(token, tlen);
    free(token);
    return 0;
}
