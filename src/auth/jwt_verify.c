/* JWT verification (SPEC 5.2) and the gateway's own HS256 access tokens.
 *
 * Every decision about the algorithm and the key is made from the
 * configuration, on a header parsed by this module, never from what the
 * token claims alone: `alg` must be one the configuration accepts (never
 * `none`), HS256 is checked against the secret only, RS256 and ES256 only
 * against a JWKS key of the matching type. An RSA public key can thus never
 * be used as an HMAC secret (HS/RS confusion).
 *
 * The signatures are checked here with OpenSSL, over the signing input
 * "<b64 header>.<b64 payload>" exactly as it arrived: HS256 as HMAC-SHA-256
 * compared in constant time, RS256 as RSASSA-PKCS1-v1_5 with SHA-256, ES256
 * as ECDSA P-256 with SHA-256. The JWKS keys are OpenSSL objects built once,
 * in jwtv_new: libjwt 1.10 (which still signs the gateway's own tokens, in
 * jwtv_issue) would re-parse a PEM key on every verification, which cost
 * about 300 us a token.
 *
 * ES256 signatures are JOSE's raw r||s (exactly 64 bytes; RFC 7518 3.4),
 * which are re-encoded as the DER that OpenSSL verifies. A DER signature as
 * sent by broken signers, or any other length, is refused.
 *
 * The claims are read from the payload this module parsed itself (the very
 * bytes whose signature was checked), with jansson rejecting duplicate
 * names.
 *
 * Header members that point at keys (jku, jwk, x5u, x5c) are ignored: keys
 * come from the configuration only.
 *
 * A verifier is immutable once built: workers share it without locks. Its
 * EVP_PKEYs are only read (OpenSSL 3 allows that from many threads); each
 * verification creates its own EVP_MD_CTX and jansson objects. */

#include "auth/jwt_verify.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdarg.h>

#include "util/base64url.h"
#include "util/mem.h"
#include "util/str.h"

/* A JWKS file is a handful of keys; a megabyte is a wrong path. */
#define JWTV_MAX_JWKS_BYTES (1u << 20)
/* Keys are found by kid linearly, per request. */
#define JWTV_MAX_JWKS_KEYS 64
/* A kid is an opaque label; longer ones are not labels. */
#define JWTV_MAX_KID 256
/* The default limit on request header bytes: a longer token could not have
 * arrived anyway. */
#define JWTV_MAX_TOKEN (16u << 10)
/* RSA keys below 2048 bits are breakable (NIST SP 800-131A); above 8192
 * bits each verification grows costly for no security anyone needs. An
 * exponent longer than 8 bytes is never used and slows verification. */
#define JWTV_RSA_MIN_BITS 2048
#define JWTV_RSA_MAX_BITS 8192
#define JWTV_RSA_MAX_E_BYTES 8
/* P-256 coordinates are 32 bytes each, and so are the r and s of an ES256
 * signature. */
#define JWTV_P256_COORD 32
/* An HS256 signature is one SHA-256 HMAC. */
#define JWTV_HS256_LEN 32
/* conf allows 5 minutes; a day keeps "now +/- leeway" far from overflow. */
#define JWTV_MAX_LEEWAY_S 86400
/* Error messages: one line, paths and kids cut to keep them so. */
#define JWTV_ERR_MAX 512
#define JWTV_QUOTE_MAX 200

/* One public key of the JWKS file, built once and only read afterwards. */
struct jwtv_key {
    char *kid;      /* NULL: the key has none */
    unsigned alg;   /* JWTV_RS256 (RSA) or JWTV_ES256 (EC P-256) */
    EVP_PKEY *pkey; /* public key, checked by EVP_PKEY_public_check */
};

struct jwtv {
    unsigned algorithms; /* the configured ones that have a key */
    char *secret;        /* HS256; NULL without */
    size_t secret_len;
    struct jwtv_key *keys;
    int n_keys;
    char *issuer;   /* NULL: not checked */
    char *audience; /* NULL: not checked */
    char *tier_claim;
    char *scope_claim;
    char **exempt_roles;
    int n_exempt_roles;
    int64_t leeway_s;
    bool require_exp;
};

unsigned jwtv_alg_from_name(const char *name)
{
    if (!name)
        return 0;
    if (strcmp(name, "HS256") == 0)
        return JWTV_HS256;
    if (strcmp(name, "RS256") == 0)
        return JWTV_RS256;
    if (strcmp(name, "ES256") == 0)
        return JWTV_ES256;
    return 0;
}

const char *jwtv_result_text(enum jwtv_result r)
{
    switch (r) {
    case JWTV_OK:
        return "ok";
    case JWTV_MALFORMED:
        return "malformed token";
    case JWTV_BAD_ALG:
        return "algorithm not allowed";
    case JWTV_UNKNOWN_KID:
        return "unknown key id";
    case JWTV_BAD_SIGNATURE:
        return "bad signature";
    case JWTV_EXPIRED:
        return "token expired";
    case JWTV_NOT_YET_VALID:
        return "token not yet valid";
    case JWTV_BAD_ISSUER:
        return "wrong issuer";
    case JWTV_BAD_AUDIENCE:
        return "wrong audience";
    case JWTV_NO_SUBJECT:
        return "no subject";
    case JWTV_NO_EXPIRY:
        return "token has no expiry (exp)";
    }
    return "invalid token";
}

/* ---- helpers ---------------------------------------------------------- */

/* Values copied into an identity end up in logs, store keys and headers:
 * no control characters. */
static bool jwtv_clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Strict base64url without padding (RFC 7515 section 2) of <s>/<len>: a
 * malloc'd buffer (one spare byte) and its length in *<out_len>, NULL when
 * <s> holds anything else, including non-zero bits after the last byte. */
static unsigned char *jwtv_b64_decode(const char *s, size_t len, size_t *out_len)
{
    size_t cap = b64url_decoded_max(len);
    unsigned char *out = sl_malloc(cap + 1);
    if (b64url_decode(s, len, B64URL_NO_PAD, out, cap, out_len) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The JSON object that <s>/<len> encodes in base64url; NULL otherwise.
 * Duplicate names are refused: parsers differ on which one counts (libjwt,
 * for one, keeps the last), so such a token means different things to
 * different readers. */
static json_t *jwtv_b64_json(const char *s, size_t len)
{
    size_t n;
    unsigned char *raw = jwtv_b64_decode(s, len, &n);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- JWKS ------------------------------------------------------------- */

static void jwtv_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jwtv_fail(char **err, const char *fmt, ...)
{
    char msg[JWTV_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    if (err && !*err)
        *err = sl_strdup(msg);
    /* What OpenSSL queued about the failure must not surface later in an
     * unrelated TLS call on this thread. */
    ERR_clear_error();
}

/* Where a key error is: "jwks_file <path>: key <i> (kid <kid>)" into <out>. */
static void jwtv_key_where(char *out, size_t cap, const char *path, int i, const char *kid)
{
    if (kid && jwtv_clean(kid, strlen(kid)))
        snprintf(out, cap, "jwks_file %.*s: key %d (kid %.*s)", JWTV_QUOTE_MAX, path, i + 1,
                 JWTV_QUOTE_MAX, kid);
    else
        snprintf(out, cap, "jwks_file %.*s: key %d", JWTV_QUOTE_MAX, path, i + 1);
}

/* The unsigned big-endian integer of member <name> of <jwk>, base64url. */
static BIGNUM *jwtv_jwk_bn(const json_t *jwk, const char *name, size_t max_bytes)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (!s)
        return NULL;
    size_t n;
    unsigned char *raw = jwtv_b64_decode(s, strlen(s), &n);
    if (!raw)
        return NULL;
    BIGNUM *bn = n && n <= max_bytes ? BN_bin2bn(raw, (int)n, NULL) : NULL;
    free(raw);
    return bn;
}

/* An EVP_PKEY of type <type> ("RSA", "EC") from <params>; NULL unless
 * OpenSSL takes it and its public-key check passes (an EC point on the
 * curve, an odd RSA modulus and exponent...). */
static EVP_PKEY *jwtv_pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
        EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!check || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* RSA key <jwk> as an EVP_PKEY; NULL with the reason in *<why>. */
static EVP_PKEY *jwtv_rsa_key(const json_t *jwk, const char **why)
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = jwtv_jwk_bn(jwk, "n", JWTV_RSA_MAX_BITS / 8 + 1);
    BIGNUM *e = jwtv_jwk_bn(jwk, "e", JWTV_RSA_MAX_E_BYTES);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (!n) {
        *why = "bad 'n'";
        goto out;
    }
    if (!e) {
        *why = "bad 'e'";
        goto out;
    }
    if (BN_num_bits(n) < JWTV_RSA_MIN_BITS || BN_num_bits(n) > JWTV_RSA_MAX_BITS) {
        *why = "'n' is not 2048 to 8192 bits";
        goto out;
    }
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        sl_fatal("sluice: out of memory building an RSA key\n");
    pkey = jwtv_pkey_from("RSA", bld);
    if (!pkey)
        *why = "not a valid RSA public key";
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

/* One P-256 coordinate, exactly 32 bytes, into <out>. */
static bool jwtv_ec_coord(const json_t *jwk, const char *name, unsigned char *out)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (!s)
        return false;
    size_t n;
    unsigned char *raw = jwtv_b64_decode(s, strlen(s), &n);
    if (!raw)
        return false;
    bool ok = n == JWTV_P256_COORD;
    if (ok)
        memcpy(out, raw, n);
    free(raw);
    return ok;
}

/* EC P-256 key <jwk> as an EVP_PKEY; NULL with the reason in *<why>. */
static EVP_PKEY *jwtv_ec_key(const json_t *jwk, const char **why)
{
    unsigned char point[1 + 2 * JWTV_P256_COORD];
    point[0] = 0x04; /* uncompressed: x then y */
    if (!jwtv_ec_coord(jwk, "x", point + 1)) {
        *why = "bad 'x'";
        return NULL;
    }
    if (!jwtv_ec_coord(jwk, "y", point + 1 + JWTV_P256_COORD)) {
        *why = "bad 'y'";
        return NULL;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
        sl_fatal("sluice: out of memory building an EC key\n");
    EVP_PKEY *pkey = jwtv_pkey_from("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (!pkey)
        *why = "not a point of P-256";
    return pkey;
}

/* Key <i> of the JWKS file <path>: appended to <v>'s keys if this module can
 * use it; skipped (true) if it is for something else (encryption, another
 * key type, curve or algorithm); false with *<err> if it is broken. */
static bool jwtv_add_jwk(struct jwtv *v, const char *path, int i, const json_t *jwk, char **err)
{
    char where[JWTV_ERR_MAX];
    const json_t *kid_j = json_is_object(jwk) ? json_object_get(jwk, "kid") : NULL;
    const char *kid = json_string_value(kid_j);
    jwtv_key_where(where, sizeof where, path, i, kid);
    if (!json_is_object(jwk)) {
        jwtv_fail(err, "%s: not an object", where);
        return false;
    }
    if (kid_j && (!kid || !*kid || strlen(kid) > JWTV_MAX_KID || !jwtv_clean(kid, strlen(kid)))) {
        jwtv_fail(err, "%s: 'kid' is not a short printable string", where);
        return false;
    }
    const json_t *kty_j = json_object_get(jwk, "kty");
    const json_t *use_j = json_object_get(jwk, "use");
    const json_t *alg_j = json_object_get(jwk, "alg");
    const char *kty = json_string_value(kty_j);
    const char *use = json_string_value(use_j);
    const char *alg = json_string_value(alg_j);
    if (!kty) {
        jwtv_fail(err, "%s: no 'kty'", where);
        return false;
    }
    if ((use_j && !use) || (alg_j && !alg)) {
        jwtv_fail(err, "%s: 'use' and 'alg' must be strings", where);
        return false;
    }
    if (use && strcmp(use, "sig") != 0)
        return true;

    unsigned type;
    const char *why = NULL;
    EVP_PKEY *pkey;
    if (strcmp(kty, "RSA") == 0) {
        type = JWTV_RS256;
        if (alg && strcmp(alg, "RS256") != 0)
            return true;
        pkey = jwtv_rsa_key(jwk, &why);
    } else if (strcmp(kty, "EC") == 0) {
        type = JWTV_ES256;
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        if (!crv) {
            jwtv_fail(err, "%s: no 'crv'", where);
            return false;
        }
        if (strcmp(crv, "P-256") != 0 || (alg && strcmp(alg, "ES256") != 0))
            return true;
        pkey = jwtv_ec_key(jwk, &why);
    } else {
        return true;
    }
    if (!pkey) {
        jwtv_fail(err, "%s: %s", where, why);
        return false;
    }
    for (int k = 0; kid && k < v->n_keys; k++) {
        if (v->keys[k].kid && strcmp(v->keys[k].kid, kid) == 0) {
            EVP_PKEY_free(pkey);
            jwtv_fail(err, "%s: the kid of key %d again", where, k + 1);
            return false;
        }
    }
    struct jwtv_key *key = &v->keys[v->n_keys++];
    key->kid = kid ? sl_strdup(kid) : NULL;
    key->alg = type;
    key->pkey = pkey;
    return true;
}

/* The whole file <path> into a malloc'd buffer, at most JWTV_MAX_JWKS_BYTES. */
static char *jwtv_read_file(const char *path, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        jwtv_fail(err, "jwks_file %.*s: %s", JWTV_QUOTE_MAX, path, strerror(errno));
        return NULL;
    }
    char *buf = sl_malloc(JWTV_MAX_JWKS_BYTES + 1);
    size_t n = fread(buf, 1, JWTV_MAX_JWKS_BYTES + 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed || n > JWTV_MAX_JWKS_BYTES) {
        jwtv_fail(err, "jwks_file %.*s: %s", JWTV_QUOTE_MAX, path,
                  failed ? "cannot read" : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static bool jwtv_load_jwks(struct jwtv *v, const char *path, char **err)
{
    size_t len;
    char *text = jwtv_read_file(path, &len, err);
    if (!text)
        return false;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    bool ok = false;
    if (!root) {
        jwtv_fail(err, "jwks_file %.*s: line %d: %s", JWTV_QUOTE_MAX, path, je.line, je.text);
        return false;
    }
    const json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        jwtv_fail(err, "jwks_file %.*s: not a JWKS (no 'keys' array)", JWTV_QUOTE_MAX, path);
        goto out;
    }
    size_t n = json_array_size(keys);
    if (n > JWTV_MAX_JWKS_KEYS) {
        jwtv_fail(err, "jwks_file %.*s: %zu keys, at most %d", JWTV_QUOTE_MAX, path, n,
                  JWTV_MAX_JWKS_KEYS);
        goto out;
    }
    v->keys = sl_calloc(n ? n : 1, sizeof *v->keys);
    for (size_t i = 0; i < n; i++)
        if (!jwtv_add_jwk(v, path, (int)i, json_array_get(keys, i), err))
            goto out;
    ok = true;
out:
    json_decref(root);
    return ok;
}

/* ---- verifier ---------------------------------------------------------- */

static char *jwtv_dup_or_null(const char *s)
{
    return s ? sl_strdup(s) : NULL;
}

struct jwtv *jwtv_new(const struct jwtv_config *c, char **err)
{
    if (err)
        *err = NULL;
    struct jwtv *v = sl_calloc(1, sizeof *v);
    unsigned want = c->algorithms;
    if (!want || (want & ~(unsigned)(JWTV_HS256 | JWTV_RS256 | JWTV_ES256))) {
        jwtv_fail(err, "algorithms: HS256, RS256 and/or ES256");
        goto fail;
    }
    if ((want & JWTV_HS256) && (!c->secret || !*c->secret)) {
        jwtv_fail(err, "HS256 needs a secret");
        goto fail;
    }
    if ((want & (JWTV_RS256 | JWTV_ES256)) && !c->jwks_file) {
        jwtv_fail(err, "RS256 and ES256 need a jwks_file");
        goto fail;
    }
    /* A secret HS256 does not accept is not kept: no HMAC key, no HMAC. */
    if (want & JWTV_HS256) {
        v->secret = sl_strdup(c->secret);
        v->secret_len = strlen(c->secret);
        v->algorithms |= JWTV_HS256;
    }
    if (c->jwks_file && !jwtv_load_jwks(v, c->jwks_file, err))
        goto fail;
    for (int k = 0; k < v->n_keys; k++)
        v->algorithms |= v->keys[k].alg & want;
    if (!v->algorithms) {
        jwtv_fail(err, "jwks_file %.*s: no key for %s", JWTV_QUOTE_MAX, c->jwks_file,
                  want == JWTV_RS256   ? "RS256"
                  : want == JWTV_ES256 ? "ES256"
                                       : "RS256 or ES256");
        goto fail;
    }
    v->issuer = jwtv_dup_or_null(c->issuer);
    v->audience = jwtv_dup_or_null(c->audience);
    v->tier_claim = sl_strdup(c->tier_claim ? c->tier_claim : "tier");
    v->scope_claim = sl_strdup(c->scope_claim ? c->scope_claim : "scope");
    if (c->n_exempt_roles > 0) {
        v->exempt_roles = sl_calloc((size_t)c->n_exempt_roles, sizeof *v->exempt_roles);
        for (int i = 0; i < c->n_exempt_roles; i++)
            v->exempt_roles[i] = sl_strdup(c->exempt_roles[i]);
        v->n_exempt_roles = c->n_exempt_roles;
    }
    v->require_exp = c->require_exp;
    v->leeway_s = c->leeway_s < 0                   ? 0
                  : c->leeway_s > JWTV_MAX_LEEWAY_S ? JWTV_MAX_LEEWAY_S
                                                    : c->leeway_s;
    return v;
fail:
    jwtv_free(v);
    return NULL;
}

void jwtv_free(struct jwtv *v)
{
    if (!v)
        return;
    if (v->secret) {
        OPENSSL_cleanse(v->secret, v->secret_len);
        free(v->secret);
    }
    for (int k = 0; k < v->n_keys; k++) {
        free(v->keys[k].kid);
        EVP_PKEY_free(v->keys[k].pkey);
    }
    free(v->keys);
    free(v->issuer);
    free(v->audience);
    free(v->tier_claim);
    free(v->scope_claim);
    for (int i = 0; i < v->n_exempt_roles; i++)
        free(v->exempt_roles[i]);
    free(v->exempt_roles);
    free(v);
}

/* ---- verification ------------------------------------------------------ */

/* The key for a token of algorithm <alg> (a JWTV_* bit <v> accepts) whose
 * header is <head>, into *<key>: NULL for HS256, whose key is the secret. */
static enum jwtv_result jwtv_pick_key(const struct jwtv *v, unsigned alg, const json_t *head,
                                      const struct jwtv_key **key)
{
    *key = NULL;
    if (alg == JWTV_HS256) {
        /* Whatever kid the header names: HS256 is only ever the secret. */
        return JWTV_OK;
    }
    const json_t *kid_j = json_object_get(head, "kid");
    const struct jwtv_key *found = NULL;
    if (kid_j) {
        const char *kid = json_string_value(kid_j);
        if (!kid)
            return JWTV_MALFORMED;
        for (int k = 0; k < v->n_keys && !found; k++)
            if (v->keys[k].kid && strcmp(v->keys[k].kid, kid) == 0)
                found = &v->keys[k];
        if (!found)
            return JWTV_UNKNOWN_KID;
        if (found->alg != alg)
            return JWTV_BAD_ALG;
    } else {
        /* No kid: only unambiguous with a single key of the type. */
        int n = 0;
        for (int k = 0; k < v->n_keys; k++)
            if (v->keys[k].alg == alg) {
                found = &v->keys[k];
                n++;
            }
        if (n != 1)
            return JWTV_UNKNOWN_KID;
    }
    *key = found;
    return JWTV_OK;
}

/* A NumericDate claim <name> of <p> into *<out>: false when present and not
 * a number. A fraction rounds up, which keeps "exp <= now" and "nbf > now"
 * exact for the whole seconds <now> has. */
static bool jwtv_time_claim(const json_t *p, const char *name, bool *present, int64_t *out)
{
    const json_t *j = json_object_get(p, name);
    *present = j != NULL;
    *out = 0;
    if (!j)
        return true;
    if (json_is_integer(j)) {
        *out = (int64_t)json_integer_value(j);
        return true;
    }
    if (!json_is_real(j))
        return false;
    /* Clamped far inside int64_t: "now +/- leeway" is compared to it. */
    double d = ceil(json_real_value(j));
    if (d > 1e18)
        d = 1e18;
    if (d < -1e18)
        d = -1e18;
    *out = (int64_t)d;
    return true;
}

static bool jwtv_audience_ok(const struct jwtv *v, const json_t *aud)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), v->audience) == 0;
    size_t i;
    const json_t *a;
    json_array_foreach(aud, i, a)
    {
        const char *s = json_string_value(a);
        if (s && strcmp(s, v->audience) == 0)
            return true;
    }
    return false;
}

/* Copies the string claim <j> into <out>/<cap> when it fits and is clean;
 * else leaves <out> empty. */
static void jwtv_copy_claim(char *out, size_t cap, const json_t *j)
{
    const char *s = json_string_value(j);
    out[0] = '\0';
    if (s && json_string_length(j) < cap && jwtv_clean(s, json_string_length(j)))
        str_copy(out, cap, s);
}

/* Appends the space-separated scopes of <s> to <out> (<cap> bytes, *<len>
 * used), single-spaced. A scope that does not fit whole, or holds a control
 * character, is dropped rather than cut: a cut scope could name another. */
static void jwtv_add_scopes(char *out, size_t cap, size_t *len, const char *s)
{
    for (;;) {
        while (*s == ' ')
            s++;
        if (!*s)
            return;
        const char *w = s;
        while (*s && *s != ' ')
            s++;
        size_t n = (size_t)(s - w);
        size_t sep = *len ? 1 : 0;
        if (*len + sep + n >= cap || !jwtv_clean(w, n))
            continue;
        if (sep)
            out[(*len)++] = ' ';
        memcpy(out + *len, w, n);
        *len += n;
        out[*len] = '\0';
    }
}

static void jwtv_scopes(char *out, size_t cap, const json_t *j)
{
    size_t len = 0, i;
    const json_t *a;
    out[0] = '\0';
    if (json_is_string(j)) {
        jwtv_add_scopes(out, cap, &len, json_string_value(j));
        return;
    }
    json_array_foreach(j, i, a)
    {
        if (json_is_string(a))
            jwtv_add_scopes(out, cap, &len, json_string_value(a));
    }
}

/* Does the space-separated role list <s> name one of <v>'s exempt roles? */
static bool jwtv_roles_exempt(const struct jwtv *v, const char *s)
{
    for (;;) {
        while (*s == ' ')
            s++;
        if (!*s)
            return false;
        const char *w = s;
        while (*s && *s != ' ')
            s++;
        size_t n = (size_t)(s - w);
        for (int i = 0; i < v->n_exempt_roles; i++)
            if (strlen(v->exempt_roles[i]) == n && memcmp(v->exempt_roles[i], w, n) == 0)
                return true;
    }
}

static bool jwtv_exempt(const struct jwtv *v, const json_t *p)
{
    if (!v->n_exempt_roles)
        return false;
    const json_t *roles = json_object_get(p, "roles");
    const json_t *role = json_object_get(p, "role");
    size_t i;
    const json_t *a;
    if (json_is_string(roles) && jwtv_roles_exempt(v, json_string_value(roles)))
        return true;
    json_array_foreach(roles, i, a)
    {
        if (json_is_string(a) && jwtv_roles_exempt(v, json_string_value(a)))
            return true;
    }
    return json_is_string(role) && jwtv_roles_exempt(v, json_string_value(role));
}

/* The registered claims of the verified payload <p>, then the identity. */
static enum jwtv_result jwtv_claims(const struct jwtv *v, const json_t *p, int64_t now_s,
                                    struct jwtv_claims *out)
{
    bool has_exp, has_nbf;
    int64_t exp, nbf;
    if (!jwtv_time_claim(p, "exp", &has_exp, &exp) || !jwtv_time_claim(p, "nbf", &has_nbf, &nbf))
        return JWTV_MALFORMED;
    /* exp + leeway <= now, and nbf - leeway > now, without overflow. */
    if (!has_exp && v->require_exp)
        return JWTV_NO_EXPIRY;
    if (has_exp && exp <= now_s - v->leeway_s)
        return JWTV_EXPIRED;
    if (has_nbf && nbf > now_s + v->leeway_s)
        return JWTV_NOT_YET_VALID;
    if (v->issuer) {
        const char *iss = json_string_value(json_object_get(p, "iss"));
        if (!iss || strcmp(iss, v->issuer) != 0)
            return JWTV_BAD_ISSUER;
    }
    if (v->audience && !jwtv_audience_ok(v, json_object_get(p, "aud")))
        return JWTV_BAD_AUDIENCE;
    const json_t *sub = json_object_get(p, "sub");
    jwtv_copy_claim(out->sub, sizeof out->sub, sub);
    if (!out->sub[0])
        return JWTV_NO_SUBJECT;
    jwtv_copy_claim(out->tier, sizeof out->tier, json_object_get(p, v->tier_claim));
    jwtv_scopes(out->scopes, sizeof out->scopes, json_object_get(p, v->scope_claim));
    jwtv_copy_claim(out->key_id, sizeof out->key_id, json_object_get(p, "key_id"));
    out->exempt = jwtv_exempt(v, p);
    out->exp = has_exp ? exp : 0;
    return JWTV_OK;
}

/* Is <sig>/<sig_len> the HS256 signature of <in>/<in_len> under <v>'s
 * secret? Compared in constant time: how many leading bytes of a guess are
 * right must not show in the response time. */
static bool jwtv_hs256_ok(const struct jwtv *v, const unsigned char *in, size_t in_len,
                          const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (sig_len != JWTV_HS256_LEN)
        return false;
    if (!HMAC(EVP_sha256(), v->secret, (int)v->secret_len, in, in_len, mac, &mac_len) ||
        mac_len != JWTV_HS256_LEN) {
        ERR_clear_error(); /* see jwtv_fail */
        return false;
    }
    bool ok = CRYPTO_memcmp(mac, sig, JWTV_HS256_LEN) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return ok;
}

/* The DER INTEGER of the 32-byte unsigned big-endian <x> at <out>: minimal,
 * as OpenSSL insists (leading zero bytes dropped, one put back when the top
 * bit is set). Its length, at most 2 + 33. */
static size_t jwtv_der_int(unsigned char *out, const unsigned char *x)
{
    size_t skip = 0;
    while (skip < JWTV_P256_COORD - 1 && x[skip] == 0)
        skip++;
    size_t n = JWTV_P256_COORD - skip;
    size_t pad = (x[skip] & 0x80) ? 1 : 0;
    out[0] = 0x02; /* INTEGER */
    out[1] = (unsigned char)(n + pad);
    out[2] = 0x00;
    memcpy(out + 2 + pad, x + skip, n);
    return 2 + pad + n;
}

/* JOSE's ES256 signature r||s (exactly 64 bytes) as the DER ECDSA-Sig-Value
 * OpenSSL verifies, into <der> (72 bytes); its length, 0 for another length.
 * Both integers fit in 35 bytes, so every length is a short-form one. */
static size_t jwtv_es256_der(const unsigned char *sig, size_t sig_len, unsigned char der[72])
{
    if (sig_len != 2 * JWTV_P256_COORD)
        return 0;
    size_t n = 2;
    n += jwtv_der_int(der + n, sig);
    n += jwtv_der_int(der + n, sig + JWTV_P256_COORD);
    der[0] = 0x30; /* SEQUENCE */
    der[1] = (unsigned char)(n - 2);
    return n;
}

/* Is <sig>/<sig_len> the RS256 or ES256 (<key>'s type) signature of
 * <in>/<in_len> under <key>? The shared EVP_PKEY is only read; the digest
 * context is this call's own. */
static bool jwtv_pkey_ok(const struct jwtv_key *key, const unsigned char *in, size_t in_len,
                         const unsigned char *sig, size_t sig_len)
{
    unsigned char der[72];
    if (key->alg == JWTV_ES256) {
        sig_len = jwtv_es256_der(sig, sig_len, der);
        if (!sig_len)
            return false;
        sig = der;
    } else if (key->alg != JWTV_RS256 || sig_len != (size_t)EVP_PKEY_get_size(key->pkey)) {
        return false; /* an RSA signature is as long as the modulus */
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (!ctx)
        sl_fatal("sluice: out of memory verifying a token\n");
    bool ok =
        EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, key->pkey) == 1 &&
        (key->alg != JWTV_RS256 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
        EVP_DigestVerify(ctx, sig, sig_len, in, in_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        ERR_clear_error(); /* see jwtv_fail */
    return ok;
}

enum jwtv_result jwtv_verify(const struct jwtv *v, const char *token, size_t len, int64_t now_s,
                             struct jwtv_claims *out)
{
    enum jwtv_result r = JWTV_MALFORMED;
    json_t *head = NULL, *payload = NULL;
    unsigned char *sig = NULL;
    memset(out, 0, sizeof *out);
    if (len == 0 || len > JWTV_MAX_TOKEN || memchr(token, '\0', len))
        return JWTV_MALFORMED;
    const char *end = token + len;
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return JWTV_MALFORMED;
    head = jwtv_b64_json(token, (size_t)(dot1 - token));
    if (!head)
        goto out;

    /* The algorithm: exactly one of ours, configured, with a key. */
    r = JWTV_BAD_ALG;
    unsigned alg = jwtv_alg_from_name(json_string_value(json_object_get(head, "alg")));
    if (!(alg & v->algorithms))
        goto out;
    /* No typ but JWT (what libjwt 1.10 accepted, and so this gateway
     * always has); a crit extension is one we do not implement (RFC 7515
     * 4.1.11). */
    r = JWTV_MALFORMED;
    const json_t *typ = json_object_get(head, "typ");
    if ((typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) ||
        json_object_get(head, "crit"))
        goto out;

    const char *p = dot1 + 1;
    const char *dot2 = memchr(p, '.', (size_t)(end - p));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        goto out;
    payload = jwtv_b64_json(p, (size_t)(dot2 - p));
    if (!payload)
        goto out;
    size_t sig_len;
    sig = jwtv_b64_decode(dot2 + 1, (size_t)(end - dot2 - 1), &sig_len);
    if (!sig)
        goto out;
    if (sig_len == 0) {
        r = JWTV_BAD_SIGNATURE;
        goto out;
    }

    const struct jwtv_key *key;
    r = jwtv_pick_key(v, alg, head, &key);
    if (r != JWTV_OK)
        goto out;
    /* The signing input: the header and payload as they arrived. */
    const unsigned char *in = (const unsigned char *)token;
    size_t in_len = (size_t)(dot2 - token);
    if (alg == JWTV_HS256
            ? !jwtv_hs256_ok(v, in, in_len, sig, sig_len)
            : !key || key->alg != alg || !jwtv_pkey_ok(key, in, in_len, sig, sig_len)) {
        r = JWTV_BAD_SIGNATURE;
        goto out;
    }
    r = jwtv_claims(v, payload, now_s, out);
out:
    if (r != JWTV_OK)
        memset(out, 0, sizeof *out);
    free(sig);
    json_decref(head);
    json_decref(payload);
    return r;
}

/* ---- issuing ------------------------------------------------------------ */

char *jwtv_issue(const char *secret, const char *issuer, const char *audience, const char *key_id,
                 const char *tier, const char *scopes, int64_t now_s, int64_t ttl_s)
{
    unsigned char rnd[16];
    char jti[2 * sizeof rnd + 1];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(rnd, (int)sizeof rnd) != 1)
        sl_fatal("sluice: no randomness for a token id\n");
    for (size_t i = 0; i < sizeof rnd; i++) {
        jti[2 * i] = hex[rnd[i] >> 4];
        jti[2 * i + 1] = hex[rnd[i] & 15];
    }
    jti[2 * sizeof rnd] = '\0';

    /* libjwt fails here only without memory (or with a NULL argument or an
     * empty secret, which callers and the config rule out): that aborts.
     * Its error codes are errno values, so OR-ing them keeps "any failed". */
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        sl_fatal("sluice: out of memory signing an access token\n");
    int rc = jwt_add_grant(jwt, "iss", issuer ? issuer : "sluice");
    if (audience)
        rc |= jwt_add_grant(jwt, "aud", audience);
    rc |= jwt_add_grant(jwt, "sub", key_id);
    rc |= jwt_add_grant(jwt, "key_id", key_id);
    if (tier && *tier)
        rc |= jwt_add_grant(jwt, "tier", tier);
    if (scopes && *scopes)
        rc |= jwt_add_grant(jwt, "scope", scopes);
    rc |= jwt_add_grant_int(jwt, "iat", (long)now_s);
    rc |= jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s));
    rc |= jwt_add_grant(jwt, "jti", jti);
    rc |= jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *s = rc ? NULL : jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!s)
        sl_fatal("sluice: out of memory signing an access token\n");
    /* libjwt 1.10 allocates with malloc; the copy keeps the caller's free()
     * right should libjwt's allocator ever become its own. */
    char *token = sl_strdup(s);
    free(s);
    return token;
}
