/* Unit tests of src/auth/jwt_verify.c: tokens of each algorithm, signed both
 * by libjwt and by OpenSSL directly (ES256 interop: JOSE's raw r||s, not
 * DER), the attacks a verifier must refuse (alg none, HS/RS confusion, a kid
 * of the wrong key type), the registered claims at a fixed clock, the
 * identity claims, JWKS loading errors and the gateway's own tokens. Keys
 * are generated once per run; the clock is always NOW, never the real one. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/jwt_verify.h"

#define NOW INT64_C(1700000000)
#define SECRET "0123456789abcdef0123456789abcdef-test"
#define OTHER_SECRET "fedcba9876543210fedcba9876543210-test"
#define ISS "https://issuer.test"
#define AUD "api"
#define HS_HEAD "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Keys and files made once for the whole run. */
static struct {
    char dir[64];
    EVP_PKEY *rsa, *rsa2, *ec;
    char *rsa_priv_pem, *rsa_pub_pem, *ec_priv_pem;
    char *jwks;                        /* rsa1 (rsa), ec1 (ec) and keys to skip */
    char *jwks_two;                    /* rsa1 (rsa), rsa2 (rsa2), no kid on rsa2 */
    char *jwks_one;                    /* rsa (no kid) only */
    char *jwks_skip;                   /* only keys this module cannot use */
    char *jwk_rsa, *jwk_rsa2, *jwk_ec; /* the JSON of each key, with kid */
} fx;

static const char *const exempt[] = {"admin", "ops"};

/* ---- encoding and signing helpers --------------------------------------- */

static char *b64url(const unsigned char *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0, i = 0;
    assert_non_null(out);
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

static char *b64s(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

/* base64url(header) "." base64url(payload) */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64s(header), *p = b64s(payload);
    char *s = fmt("%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

static char *append_sig(char *input, const unsigned char *sig, size_t n)
{
    char *b = b64url(sig, n);
    char *t = fmt("%s.%s", input, b);
    free(b);
    free(input);
    return t;
}

static char *tok_hmac(const char *header, const char *payload, const char *key, size_t keylen)
{
    char *in = signing_input(header, payload);
    unsigned char mac[32];
    unsigned int maclen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)in, strlen(in), mac, &maclen));
    return append_sig(in, mac, maclen);
}

static char *tok_hs(const char *payload)
{
    return tok_hmac(HS_HEAD, payload, SECRET, strlen(SECRET));
}

/* JOSE ES256 signature (r||s, 32 bytes each) from OpenSSL's DER one. */
static size_t der_to_raw(const unsigned char *der, size_t n, unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    const BIGNUM *r, *s;
    assert_non_null(es);
    ECDSA_SIG_get0(es, &r, &s);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

/* A token signed by OpenSSL with <pkey> (RS256, or ES256 as raw r||s, or
 * as DER when <der>). */
static char *tok_pkey(const char *header, const char *payload, EVP_PKEY *pkey, bool der)
{
    char *in = signing_input(header, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = 0;
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_equal(EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)in, strlen(in)), 1);
    unsigned char *sig = malloc(n);
    assert_int_equal(EVP_DigestSign(ctx, sig, &n, (const unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(ctx);
    char *t;
    if (EVP_PKEY_is_a(pkey, "EC") && !der) {
        unsigned char raw[64];
        t = append_sig(in, raw, der_to_raw(sig, n, raw));
    } else {
        t = append_sig(in, sig, n);
    }
    free(sig);
    return t;
}

/* A token signed by libjwt: <alg> with the private PEM <pem>, <kid> in the
 * header (NULL: none), <grants> a JSON object. Returned malloc'd. */
static char *tok_libjwt(jwt_alg_t alg, const char *pem, const char *kid, const char *grants)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, grants), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)pem, (int)strlen(pem)), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

/* The signature part of <token>, decoded by OpenSSL's base64 (after
 * mapping base64url), into <out>; its length. */
static size_t sig_bytes(const char *token, unsigned char *out, size_t cap)
{
    const char *s = strrchr(token, '.') + 1;
    size_t n = strlen(s);
    char *b = calloc(1, n + 4);
    for (size_t i = 0; i < n; i++)
        b[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (n % 4)
        b[n++] = '=';
    unsigned char *tmp = malloc(n);
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)b, (int)n);
    assert_true(len > 0);
    len -= (b[n - 1] == '=') + (b[n - 2] == '=');
    assert_true((size_t)len <= cap);
    memcpy(out, tmp, (size_t)len);
    free(tmp);
    free(b);
    return (size_t)len;
}

/* <token> with its signature replaced by <sig>/<n>. */
static char *with_sig(const char *token, const unsigned char *sig, size_t n)
{
    const char *dot = strrchr(token, '.');
    return append_sig(fmt("%.*s", (int)(dot - token), token), sig, n);
}

/* The DER signature of <in> by <pkey> (SHA-256; RSA padding <pad>, 0: the
 * default) into <out>; its length. */
static size_t sign_der(EVP_PKEY *pkey, int pad, const char *in, unsigned char *out, size_t cap)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t n = cap;
    assert_int_equal(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, pkey), 1);
    if (pad)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, pad), 1);
    assert_int_equal(EVP_DigestSign(ctx, out, &n, (const unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(ctx);
    return n;
}

/* ---- keys and files ------------------------------------------------------ */

static char *pem_of(EVP_PKEY *k, bool priv)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    if (priv)
        assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static char *bn_param_b64(EVP_PKEY *k, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)n);
    assert_int_equal(BN_bn2binpad(bn, buf, n), n);
    char *s = b64url(buf, (size_t)n);
    free(buf);
    BN_free(bn);
    return s;
}

static char *jwk_rsa(EVP_PKEY *k, const char *kid)
{
    char *n = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
    char *e = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    char *kidm = kid ? fmt("\"kid\":\"%s\",", kid) : strdup("");
    char *s = fmt("{\"kty\":\"RSA\",%s\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"}",
                  kidm, n, e);
    free(kidm);
    free(n);
    free(e);
    return s;
}

static char *jwk_ec(EVP_PKEY *k, const char *kid)
{
    char *x = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    char *y = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    char *s = fmt("{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
                  kid, x, y);
    free(x);
    free(y);
    return s;
}

static char *write_file(const char *name, const char *content)
{
    char *path = fmt("%s/%s", fx.dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    return path;
}

static char *write_jwks(const char *name, const char *keys)
{
    char *doc = fmt("{\"keys\":[%s]}", keys);
    char *path = write_file(name, doc);
    free(doc);
    return path;
}

/* Keys a verifier must pass over: encryption, symmetric, another curve. */
#define SKIPPED_KEYS                                                                               \
    "{\"kty\":\"oct\",\"kid\":\"sym\",\"k\":\"c2VjcmV0\"},"                                        \
    "{\"kty\":\"OKP\",\"kid\":\"ed\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"},"                         \
    "{\"kty\":\"EC\",\"kid\":\"p384\",\"crv\":\"P-384\",\"x\":\"AAAA\",\"y\":\"AAAA\"}"

static int setup(void **state)
{
    snprintf(fx.dir, sizeof fx.dir, "/tmp/sluice-jwt-XXXXXX");
    if (!mkdtemp(fx.dir))
        return -1;
    fx.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    fx.rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    fx.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!fx.rsa || !fx.rsa2 || !fx.ec)
        return -1;
    fx.rsa_priv_pem = pem_of(fx.rsa, true);
    fx.rsa_pub_pem = pem_of(fx.rsa, false);
    fx.ec_priv_pem = pem_of(fx.ec, true);
    fx.jwk_rsa = jwk_rsa(fx.rsa, "rsa1");
    fx.jwk_rsa2 = jwk_rsa(fx.rsa2, "rsa2");
    fx.jwk_ec = jwk_ec(fx.ec, "ec1");

    /* The same RSA key, once more, marked for encryption: skipped. */
    char *enc = jwk_rsa(fx.rsa2, "enc1");
    char *p = strstr(enc, "\"sig\"");
    memcpy(p, "\"enc\"", 5);
    char *keys = fmt("%s,%s,%s,%s", SKIPPED_KEYS, enc, fx.jwk_rsa, fx.jwk_ec);
    fx.jwks = write_jwks("jwks.json", keys);
    free(keys);
    keys = fmt("%s,%s", fx.jwk_rsa, fx.jwk_rsa2);
    fx.jwks_two = write_jwks("two.json", keys);
    free(keys);
    char *nokid = jwk_rsa(fx.rsa, NULL);
    fx.jwks_one = write_jwks("one.json", nokid);
    free(nokid);
    keys = fmt("%s,%s", SKIPPED_KEYS, enc);
    fx.jwks_skip = write_jwks("skip.json", keys);
    free(keys);
    free(enc);
    return 0;
}

static int teardown(void **state)
{
    char *files[] = {fx.jwks, fx.jwks_two, fx.jwks_one, fx.jwks_skip};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        unlink(files[i]);
        free(files[i]);
    }
    char *bad = fmt("%s/bad.json", fx.dir); /* left by a failed jwks_fails */
    unlink(bad);
    free(bad);
    rmdir(fx.dir);
    EVP_PKEY_free(fx.rsa);
    EVP_PKEY_free(fx.rsa2);
    EVP_PKEY_free(fx.ec);
    free(fx.rsa_priv_pem);
    free(fx.rsa_pub_pem);
    free(fx.ec_priv_pem);
    free(fx.jwk_rsa);
    free(fx.jwk_rsa2);
    free(fx.jwk_ec);
    return 0;
}

/* ---- verifiers ------------------------------------------------------------ */

static struct jwtv_config base_config(void)
{
    struct jwtv_config c = {
        .algorithms = JWTV_HS256 | JWTV_RS256 | JWTV_ES256,
        .secret = SECRET,
        .jwks_file = fx.jwks,
        .issuer = ISS,
        .audience = AUD,
        .exempt_roles = exempt,
        .n_exempt_roles = 2,
        .leeway_s = 30,
    };
    return c;
}

static struct jwtv *must_new(const struct jwtv_config *c)
{
    char *err = NULL;
    struct jwtv *v = jwtv_new(c, &err);
    if (!v)
        fail_msg("jwtv_new: %s", err ? err : "(no message)");
    assert_null(err);
    return v;
}

/* jwtv_new fails, with one line that contains <want>. */
static void new_fails(const struct jwtv_config *c, const char *want)
{
    char *err = NULL;
    struct jwtv *v = jwtv_new(c, &err);
    assert_null(v);
    assert_non_null(err);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    assert_null(strchr(err, '\n'));
    free(err);
}

static enum jwtv_result verify_at(const struct jwtv *v, const char *t, int64_t now,
                                  struct jwtv_claims *out)
{
    return jwtv_verify(v, t, strlen(t), now, out);
}

/* Verify <t> (freed) at NOW; the result. */
static enum jwtv_result check(const struct jwtv *v, char *t)
{
    struct jwtv_claims cl;
    enum jwtv_result r = verify_at(v, t, NOW, &cl);
    if (r != JWTV_OK)
        assert_string_equal(cl.sub, ""); /* nothing leaks from a refusal */
    free(t);
    return r;
}

/* Standard claims, with <extra> (",\"k\":v..." or "") before the brace. */
static char *claims(const char *extra)
{
    return fmt("{\"sub\":\"user-1\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld%s}",
               (long long)(NOW + 600), extra);
}

/* ---- names ---------------------------------------------------------------- */

static void test_names(void **state)
{
    assert_int_equal(jwtv_alg_from_name("HS256"), JWTV_HS256);
    assert_int_equal(jwtv_alg_from_name("RS256"), JWTV_RS256);
    assert_int_equal(jwtv_alg_from_name("ES256"), JWTV_ES256);
    assert_int_equal(jwtv_alg_from_name("none"), 0);
    assert_int_equal(jwtv_alg_from_name("hs256"), 0);
    assert_int_equal(jwtv_alg_from_name("HS512"), 0);
    assert_string_equal(jwtv_result_text(JWTV_EXPIRED), "token expired");
    assert_string_equal(jwtv_result_text(JWTV_BAD_SIGNATURE), "bad signature");
    for (int r = JWTV_OK; r <= JWTV_NO_SUBJECT; r++) {
        const char *s = jwtv_result_text((enum jwtv_result)r);
        assert_true(strlen(s) > 0 && strlen(s) < 40);
        for (int q = JWTV_OK; q < r; q++)
            assert_string_not_equal(s, jwtv_result_text((enum jwtv_result)q));
    }
}

/* ---- valid tokens ----------------------------------------------------------- */

static void test_hs256_valid(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims(",\"tier\":\"gold\",\"scope\":\"read write\",\"key_id\":\"key_1\"");
    char *t = tok_hs(p);
    struct jwtv_claims cl;
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.sub, "user-1");
    assert_string_equal(cl.tier, "gold");
    assert_string_equal(cl.scopes, "read write");
    assert_string_equal(cl.key_id, "key_1");
    assert_false(cl.exempt);
    assert_int_equal(cl.exp, NOW + 600);
    /* libjwt signs the same way. */
    char *t2 = tok_libjwt(JWT_ALG_HS256, SECRET, NULL, p);
    assert_int_equal(verify_at(v, t2, NOW, &cl), JWTV_OK);
    free(t2);
    free(t);
    free(p);
    jwtv_free(v);
}

static void test_rs256_valid(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims(",\"tier\":\"silver\",\"scope\":[\"a\",\"b\"]");
    struct jwtv_claims cl;
    char *t = tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.sub, "user-1");
    assert_string_equal(cl.tier, "silver");
    assert_string_equal(cl.scopes, "a b");
    assert_string_equal(cl.key_id, "");
    free(t);
    t = tok_pkey("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, fx.rsa, false);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    free(t);
    free(p);
    jwtv_free(v);
}

static void test_es256_libjwt(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims(",\"tier\":\"bronze\"");
    struct jwtv_claims cl;
    char *t = tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "ec1", p);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.tier, "bronze");

    /* libjwt's signature is JOSE's raw r||s, which OpenSSL (after the
     * conversion to DER) accepts. */
    unsigned char raw[128];
    assert_int_equal(sig_bytes(t, raw, sizeof raw), 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)),
                     1);
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);
    const char *in = t;
    size_t in_len = (size_t)(strrchr(t, '.') - t);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, fx.ec), 1);
    assert_int_equal(EVP_DigestVerify(ctx, der, (size_t)der_len, (const unsigned char *)in, in_len),
                     1);
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(t);
    free(p);
    jwtv_free(v);
}

/* Signatures made by OpenSSL and converted to r||s verify, whatever the
 * lengths of r and s (one in 128 has a leading zero byte, hence many). A
 * DER signature, as some broken signers send, does not. */
static void test_es256_openssl_interop(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    for (int i = 0; i < 200; i++) {
        char extra[40];
        snprintf(extra, sizeof extra, ",\"n\":%d", i);
        char *p = claims(extra);
        char *t = tok_pkey("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"ec1\"}", p, fx.ec, false);
        assert_int_equal(check(v, t), JWTV_OK);
        if (i < 5) {
            t = tok_pkey("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p, fx.ec, true);
            assert_int_equal(check(v, t), JWTV_BAD_SIGNATURE);
        }
        free(p);
    }
    jwtv_free(v);
}

/* Without a kid, a single key of the type is used; with two it is
 * ambiguous. */
static void test_kid_optional_with_one_key(void **state)
{
    struct jwtv_config c = base_config();
    c.algorithms = JWTV_RS256;
    c.secret = NULL;
    c.jwks_file = fx.jwks_one;
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, NULL, p)), JWTV_OK);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p)),
                     JWTV_UNKNOWN_KID);
    jwtv_free(v);

    c.jwks_file = fx.jwks_two;
    v = must_new(&c);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, NULL, p)),
                     JWTV_UNKNOWN_KID);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p)), JWTV_OK);
    jwtv_free(v);
    free(p);
}

/* ---- time ------------------------------------------------------------------ */

static char *with_times(const char *exp_nbf)
{
    return fmt("{\"sub\":\"u\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"%s}", exp_nbf);
}

static enum jwtv_result at_time(const struct jwtv *v, const char *fmt_times, int64_t t_claim)
{
    char *times = fmt(fmt_times, (long long)t_claim);
    char *p = with_times(times);
    enum jwtv_result r = check(v, tok_hs(p));
    free(p);
    free(times);
    return r;
}

static void test_expired_and_leeway(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW + 1), JWTV_OK);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 10), JWTV_OK); /* within 30 s */
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 29), JWTV_OK); /* last second */
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 30), JWTV_EXPIRED);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 31), JWTV_EXPIRED);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 86400), JWTV_EXPIRED);
    assert_int_equal(at_time(v, ",\"exp\":%lld.5", NOW - 30), JWTV_OK); /* exp + 30 > now */
    assert_int_equal(at_time(v, ",\"exp\":\"%lld\"", NOW + 60), JWTV_MALFORMED);
    jwtv_free(v);

    c.leeway_s = 0;
    v = must_new(&c);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW + 1), JWTV_OK);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW), JWTV_EXPIRED);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW - 10), JWTV_EXPIRED);
    jwtv_free(v);
}

/* require_exp (identity.jwt.require_exp, on by default): a token that
 * never expires is refused; off, it is accepted as before. */
static void test_require_exp(void **state)
{
    struct jwtv_config c = base_config();
    c.require_exp = true;
    struct jwtv *v = must_new(&c);
    char *p = with_times("");
    assert_int_equal(check(v, tok_hs(p)), JWTV_NO_EXPIRY);
    assert_int_equal(at_time(v, ",\"exp\":%lld", NOW + 60), JWTV_OK);
    assert_string_equal(jwtv_result_text(JWTV_NO_EXPIRY), "token has no expiry (exp)");
    jwtv_free(v);
    c.require_exp = false;
    v = must_new(&c);
    assert_int_equal(check(v, tok_hs(p)), JWTV_OK);
    jwtv_free(v);
    free(p);
}

static void test_not_before_and_leeway(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW), JWTV_OK);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW + 10), JWTV_OK); /* within 30 s */
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW + 30), JWTV_OK);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW + 31), JWTV_NOT_YET_VALID);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW + 3600), JWTV_NOT_YET_VALID);
    jwtv_free(v);

    c.leeway_s = 0;
    v = must_new(&c);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW), JWTV_OK);
    assert_int_equal(at_time(v, ",\"nbf\":%lld", NOW + 1), JWTV_NOT_YET_VALID);
    jwtv_free(v);
}

/* ---- signatures ------------------------------------------------------------ */

static void test_bad_signature(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");

    /* A payload changed after signing. */
    char *t = tok_hs(p);
    char *forged_p = b64s("{\"sub\":\"admin\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"}");
    char *dot1 = strchr(t, '.'), *dot2 = strrchr(t, '.');
    char *tampered = fmt("%.*s.%s%s", (int)(dot1 - t), t, forged_p, dot2);
    assert_int_equal(check(v, tampered), JWTV_BAD_SIGNATURE);
    free(forged_p);
    /* The signature cut short (by 3 characters: 30 whole bytes), or a
     * byte of it changed. */
    char *cut = fmt("%.*s", (int)strlen(t) - 3, t);
    assert_int_equal(check(v, cut), JWTV_BAD_SIGNATURE);
    char *flipped = strdup(t);
    char *last = flipped + strlen(flipped) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(check(v, flipped), JWTV_BAD_SIGNATURE);
    free(t);
    /* An empty signature. */
    char *in = signing_input(HS_HEAD, p);
    assert_int_equal(check(v, fmt("%s.", in)), JWTV_BAD_SIGNATURE);
    free(in);

    /* Another secret; another RSA key under our kid; another EC key. */
    assert_int_equal(check(v, tok_hmac(HS_HEAD, p, OTHER_SECRET, strlen(OTHER_SECRET))),
                     JWTV_BAD_SIGNATURE);
    assert_int_equal(check(v, tok_pkey("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, fx.rsa2, false)),
                     JWTV_BAD_SIGNATURE);
    EVP_PKEY *ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_int_equal(check(v, tok_pkey("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p, ec2, false)),
                     JWTV_BAD_SIGNATURE);
    EVP_PKEY_free(ec2);
    free(p);
    jwtv_free(v);
}

/* The signature bytes themselves: one byte changed, lengths that are not
 * the algorithm's, other encodings, other paddings. */
static void test_signature_bytes(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    unsigned char sig[600];

    /* RS256: the last byte changed, one byte less or more, PSS padding. */
    char *t = tok_pkey("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, fx.rsa, false);
    size_t n = sig_bytes(t, sig, sizeof sig);
    assert_int_equal(n, 256);
    assert_int_equal(check(v, with_sig(t, sig, n)), JWTV_OK);
    sig[n - 1] ^= 0x01;
    assert_int_equal(check(v, with_sig(t, sig, n)), JWTV_BAD_SIGNATURE);
    sig[n - 1] ^= 0x01;
    assert_int_equal(check(v, with_sig(t, sig, n - 1)), JWTV_BAD_SIGNATURE);
    sig[n] = 0;
    assert_int_equal(check(v, with_sig(t, sig, n + 1)), JWTV_BAD_SIGNATURE);
    free(t);
    char *in = signing_input("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p);
    n = sign_der(fx.rsa, RSA_PKCS1_PSS_PADDING, in, sig, sizeof sig);
    assert_int_equal(n, 256);
    assert_int_equal(check(v, append_sig(in, sig, n)), JWTV_BAD_SIGNATURE);

    /* ES256: exactly 64 bytes of r||s. */
    t = tok_pkey("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p, fx.ec, false);
    n = sig_bytes(t, sig, sizeof sig);
    assert_int_equal(n, 64);
    assert_int_equal(check(v, with_sig(t, sig, 64)), JWTV_OK);
    sig[63] ^= 0x01; /* the last byte of s */
    assert_int_equal(check(v, with_sig(t, sig, 64)), JWTV_BAD_SIGNATURE);
    sig[63] ^= 0x01;
    sig[0] ^= 0x80; /* the top bit of r */
    assert_int_equal(check(v, with_sig(t, sig, 64)), JWTV_BAD_SIGNATURE);
    sig[0] ^= 0x80;
    /* 63 bytes: truncated, or the first byte dropped. */
    assert_int_equal(check(v, with_sig(t, sig, 63)), JWTV_BAD_SIGNATURE);
    assert_int_equal(check(v, with_sig(t, sig + 1, 63)), JWTV_BAD_SIGNATURE);
    /* 65 bytes: a zero byte after, or before (a 33-byte r). */
    unsigned char longer[65];
    memcpy(longer, sig, 64);
    longer[64] = 0;
    assert_int_equal(check(v, with_sig(t, longer, 65)), JWTV_BAD_SIGNATURE);
    longer[0] = 0;
    memcpy(longer + 1, sig, 64);
    assert_int_equal(check(v, with_sig(t, longer, 65)), JWTV_BAD_SIGNATURE);
    /* r and s swapped; r or s zero; both all ones (above the group order). */
    unsigned char other[64];
    memcpy(other, sig + 32, 32);
    memcpy(other + 32, sig, 32);
    assert_int_equal(check(v, with_sig(t, other, 64)), JWTV_BAD_SIGNATURE);
    memcpy(other, sig, 64);
    memset(other, 0, 32);
    assert_int_equal(check(v, with_sig(t, other, 64)), JWTV_BAD_SIGNATURE);
    memcpy(other, sig, 64);
    memset(other + 32, 0, 32);
    assert_int_equal(check(v, with_sig(t, other, 64)), JWTV_BAD_SIGNATURE);
    memset(other, 0xff, 64);
    assert_int_equal(check(v, with_sig(t, other, 64)), JWTV_BAD_SIGNATURE);
    free(t);
    /* The DER signature of the very same input, as OpenSSL makes it. */
    in = signing_input("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p);
    n = sign_der(fx.ec, 0, in, sig, sizeof sig);
    assert_true(n >= 8 && n <= 72 && sig[0] == 0x30);
    assert_int_equal(check(v, append_sig(in, sig, n)), JWTV_BAD_SIGNATURE);
    /* ... and an RSA signature under an EC kid. */
    in = signing_input("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p);
    n = sign_der(fx.rsa, 0, in, sig, sizeof sig);
    assert_int_equal(check(v, append_sig(in, sig, n)), JWTV_BAD_SIGNATURE);

    /* HS256: the MAC with a byte more, and with its last byte changed. */
    t = tok_hs(p);
    n = sig_bytes(t, sig, sizeof sig);
    assert_int_equal(n, 32);
    sig[32] = 0;
    assert_int_equal(check(v, with_sig(t, sig, 33)), JWTV_BAD_SIGNATURE);
    sig[31] ^= 0x01;
    assert_int_equal(check(v, with_sig(t, sig, 32)), JWTV_BAD_SIGNATURE);
    free(t);
    free(p);
    jwtv_free(v);
}

/* ES256 signatures whose r or s has leading zero bytes (BN_bn2binpad pads
 * them to 32): their DER integers are shorter. Signs until it has both
 * kinds, which takes about 128 signatures each. */
static void test_es256_short_r_s(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    char *in = signing_input("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p);
    bool short_r = false, short_s = false;
    for (int i = 0; i < 20000 && !(short_r && short_s); i++) {
        unsigned char der[80], raw[64];
        size_t n = sign_der(fx.ec, 0, in, der, sizeof der);
        der_to_raw(der, n, raw);
        if (raw[0] == 0 || raw[32] == 0) {
            short_r |= raw[0] == 0;
            short_s |= raw[32] == 0;
            assert_int_equal(check(v, append_sig(strdup(in), raw, 64)), JWTV_OK);
        }
    }
    assert_true(short_r && short_s);
    free(in);
    free(p);
    jwtv_free(v);
}

static void test_alg_none(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    const char *heads[] = {"{\"alg\":\"none\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}",
                           "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}"};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        char *in = signing_input(heads[i], p);
        assert_int_equal(check(v, fmt("%s.", in)), JWTV_BAD_ALG);
        assert_int_equal(check(v, strdup(in)), JWTV_BAD_ALG);
        /* ... and with some signature, in case anyone checks the length. */
        assert_int_equal(check(v, fmt("%s.c2ln", in)), JWTV_BAD_ALG);
        free(in);
    }
    /* libjwt itself, given no key, takes an unsigned token: the danger. */
    char *in = signing_input(heads[0], p);
    char *unsigned_tok = fmt("%s.", in);
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, unsigned_tok, NULL, 0), 0);
    jwt_free(j);
    free(unsigned_tok);
    free(in);

    /* Other algorithms and shapes of `alg`. */
    const char *others[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"PS256\"}",
                            "{\"typ\":\"JWT\"}",   "{\"alg\":256}",       "{\"alg\":null}"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        assert_int_equal(check(v, tok_hmac(others[i], p, SECRET, strlen(SECRET))), JWTV_BAD_ALG);
    jwtv_free(v);

    /* A configured algorithm only: HS256 alone refuses a valid RS256. */
    c.algorithms = JWTV_HS256;
    c.jwks_file = NULL;
    v = must_new(&c);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p)), JWTV_BAD_ALG);
    assert_int_equal(check(v, tok_hs(p)), JWTV_OK);
    jwtv_free(v);
    free(p);
}

/* HS256 "signed" with the RSA public key's PEM as the HMAC secret: bare
 * libjwt, handed the PEM the header asks for, accepts it (so the token is a
 * real attack); the verifier never does. */
static void test_hs_rs_confusion(void **state)
{
    char *p = claims("");
    const char *pem = fx.rsa_pub_pem;
    const char *heads[] = {HS_HEAD, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"rsa1\"}"};
    jwt_t *j = NULL;
    char *t0 = tok_hmac(heads[0], p, pem, strlen(pem));
    assert_int_equal(jwt_decode(&j, t0, (const unsigned char *)pem, (int)strlen(pem)), 0);
    jwt_free(j);
    free(t0);

    /* HS256 not configured. */
    struct jwtv_config c = base_config();
    c.algorithms = JWTV_RS256 | JWTV_ES256;
    c.secret = NULL;
    struct jwtv *v = must_new(&c);
    for (int i = 0; i < 2; i++)
        assert_int_equal(check(v, tok_hmac(heads[i], p, pem, strlen(pem))), JWTV_BAD_ALG);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p)), JWTV_OK);
    jwtv_free(v);

    /* HS256 configured, with its own secret: the PEM is never the key. */
    c = base_config();
    v = must_new(&c);
    for (int i = 0; i < 2; i++)
        assert_int_equal(check(v, tok_hmac(heads[i], p, pem, strlen(pem))), JWTV_BAD_SIGNATURE);
    /* Nor is the PEM the secret of an RS256 header (libjwt would refuse
     * anyway: an HMAC is no RSA signature). */
    assert_int_equal(
        check(v, tok_hmac("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, pem, strlen(pem))),
        JWTV_BAD_SIGNATURE);
    jwtv_free(v);
    free(p);
}

/* A kid names a key of the other type: the algorithm is not the key's. */
static void test_kid_of_wrong_key_type(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "ec1", p)), JWTV_BAD_ALG);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "rsa1", p)), JWTV_BAD_ALG);
    /* The right kid passes, so the refusals are about the type. */
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "ec1", p)), JWTV_OK);
    jwtv_free(v);

    /* ES256 configured without an EC key: refused as an algorithm. */
    c.algorithms = JWTV_RS256 | JWTV_ES256;
    c.secret = NULL;
    c.jwks_file = fx.jwks_two;
    v = must_new(&c);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "ec1", p)), JWTV_BAD_ALG);
    jwtv_free(v);
    free(p);
}

static void test_unknown_kid(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "nope", p)),
                     JWTV_UNKNOWN_KID);
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "rsa1x", p)),
                     JWTV_UNKNOWN_KID);
    /* Skipped keys are not there: the encryption key's kid is unknown. */
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "enc1", p)),
                     JWTV_UNKNOWN_KID);
    /* No kid with several keys: the main file has one RSA key, so it is
     * used; a kid that is not a string is malformed. */
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, NULL, p)), JWTV_OK);
    assert_int_equal(check(v, tok_pkey("{\"alg\":\"RS256\",\"kid\":[\"rsa1\"]}", p, fx.rsa, false)),
                     JWTV_MALFORMED);
    jwtv_free(v);
    free(p);
}

/* ---- registered claims ------------------------------------------------------- */

static enum jwtv_result with_payload(const struct jwtv *v, const char *payload)
{
    return check(v, tok_hs(payload));
}

static void test_issuer(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\",\"iss\":\"" ISS "\"}"),
                     JWTV_OK);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\",\"iss\":\"https://evil\"}"),
                     JWTV_BAD_ISSUER);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\",\"iss\":\"" ISS "/\"}"),
                     JWTV_BAD_ISSUER);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\"}"), JWTV_BAD_ISSUER);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\",\"iss\":[\"" ISS "\"]}"),
                     JWTV_BAD_ISSUER);
    jwtv_free(v);
    /* Not configured: not checked. */
    c.issuer = NULL;
    v = must_new(&c);
    assert_int_equal(with_payload(v, "{\"sub\":\"u\",\"aud\":\"api\",\"iss\":\"https://evil\"}"),
                     JWTV_OK);
    jwtv_free(v);
}

static void test_audience(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
#define P(aud) "{\"sub\":\"u\",\"iss\":\"" ISS "\"" aud "}"
    assert_int_equal(with_payload(v, P(",\"aud\":\"api\"")), JWTV_OK);
    assert_int_equal(with_payload(v, P(",\"aud\":\"other\"")), JWTV_BAD_AUDIENCE);
    assert_int_equal(with_payload(v, P(",\"aud\":\"API\"")), JWTV_BAD_AUDIENCE);
    assert_int_equal(with_payload(v, P(",\"aud\":[\"x\",\"api\"]")), JWTV_OK);
    assert_int_equal(with_payload(v, P(",\"aud\":[\"x\",\"y\",1]")), JWTV_BAD_AUDIENCE);
    assert_int_equal(with_payload(v, P(",\"aud\":[]")), JWTV_BAD_AUDIENCE);
    assert_int_equal(with_payload(v, P("")), JWTV_BAD_AUDIENCE);
    jwtv_free(v);
    c.audience = NULL;
    v = must_new(&c);
    assert_int_equal(with_payload(v, P(",\"aud\":\"other\"")), JWTV_OK);
#undef P
    jwtv_free(v);
}

static void test_subject(void **state)
{
    struct jwtv_config c = base_config();
    c.issuer = NULL;
    c.audience = NULL;
    struct jwtv *v = must_new(&c);
    assert_int_equal(with_payload(v, "{\"exp\":1800000000}"), JWTV_NO_SUBJECT);
    assert_int_equal(with_payload(v, "{\"sub\":\"\"}"), JWTV_NO_SUBJECT);
    assert_int_equal(with_payload(v, "{\"sub\":42}"), JWTV_NO_SUBJECT);
    assert_int_equal(with_payload(v, "{\"sub\":\"a\\nb\"}"), JWTV_NO_SUBJECT);
    char longest[JWTV_MAX_SUB], too_long[JWTV_MAX_SUB + 1];
    memset(longest, 's', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 's', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    char *p = fmt("{\"sub\":\"%s\"}", longest);
    struct jwtv_claims cl;
    char *t = tok_hs(p);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.sub, longest);
    assert_int_equal(cl.exp, 0);
    free(t);
    free(p);
    p = fmt("{\"sub\":\"%s\"}", too_long);
    assert_int_equal(with_payload(v, p), JWTV_NO_SUBJECT);
    free(p);
    jwtv_free(v);
}

/* ---- malformed ---------------------------------------------------------------- */

static void test_malformed(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    char *good = tok_hs(p);
    struct jwtv_claims cl;
    assert_int_equal(verify_at(v, good, NOW, &cl), JWTV_OK);
    char *h = b64s(HS_HEAD), *pb = b64s(p);
    const char *dot2 = strrchr(good, '.');

    assert_int_equal(jwtv_verify(v, "", 0, NOW, &cl), JWTV_MALFORMED);
    assert_int_equal(check(v, strdup("garbage")), JWTV_MALFORMED);
    assert_int_equal(check(v, strdup("a.b.c")), JWTV_MALFORMED);
    assert_int_equal(check(v, fmt("%s.%s", h, pb)), JWTV_MALFORMED);          /* 2 parts */
    assert_int_equal(check(v, fmt("%s.x", good)), JWTV_MALFORMED);            /* 4 parts */
    assert_int_equal(check(v, fmt("%s..%s", h, dot2 + 1)), JWTV_MALFORMED);   /* no payload */
    assert_int_equal(check(v, fmt("!!%s", good)), JWTV_MALFORMED);            /* bad base64 */
    assert_int_equal(check(v, fmt("%s=", good)), JWTV_MALFORMED);             /* padding */
    assert_int_equal(check(v, fmt("%s.%s+%s", h, pb, dot2)), JWTV_MALFORMED); /* base64, not url */
    assert_int_equal(check(v, fmt("%s.%s.a", h, pb)), JWTV_MALFORMED);        /* 1 char: no byte */
    /* Headers and payloads that are not JSON objects. */
    assert_int_equal(check(v, tok_hmac("hello", p, SECRET, strlen(SECRET))), JWTV_MALFORMED);
    assert_int_equal(check(v, tok_hmac("[\"HS256\"]", p, SECRET, strlen(SECRET))), JWTV_MALFORMED);
    assert_int_equal(check(v, tok_hmac("{\"alg\":\"HS256\"", p, SECRET, strlen(SECRET))),
                     JWTV_MALFORMED);
    assert_int_equal(check(v, tok_hs("not json")), JWTV_MALFORMED);
    assert_int_equal(check(v, tok_hs("\"sub\"")), JWTV_MALFORMED);
    /* Duplicate names: libjwt would believe the last one. */
    assert_int_equal(
        check(v, tok_hmac("{\"alg\":\"HS256\",\"alg\":\"none\"}", p, SECRET, strlen(SECRET))),
        JWTV_MALFORMED);
    assert_int_equal(
        check(v, tok_hs("{\"sub\":\"u\",\"sub\":\"admin\",\"iss\":\"" ISS "\",\"aud\":\"api\"}")),
        JWTV_MALFORMED);
    /* A typ libjwt 1.10 refuses, and an extension we do not implement. */
    assert_int_equal(
        check(v, tok_hmac("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", p, SECRET, strlen(SECRET))),
        JWTV_MALFORMED);
    assert_int_equal(check(v, tok_hmac("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", p,
                                       SECRET, strlen(SECRET))),
                     JWTV_MALFORMED);
    assert_int_equal(
        check(v, tok_hmac("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", p, SECRET, strlen(SECRET))),
        JWTV_OK);
    /* Base64url must be canonical: the unused low bits of the last
     * character zero (else one signature has several spellings). */
    char *odd = strdup(good);
    char *lastc = odd + strlen(odd) - 1; /* 32 bytes: 43 chars, 2 unused bits */
    assert_true(strchr("AEIMQUYcgkosw048", *lastc) != NULL);
    *lastc = (char)(*lastc + 1); /* A->B, E->F ... 8->9: same bytes, a low bit set */
    assert_int_equal(check(v, odd), JWTV_MALFORMED);
    /* A NUL inside, and a token longer than any request header. */
    assert_int_equal(jwtv_verify(v, good, strlen(good) + 1, NOW, &cl), JWTV_MALFORMED);
    size_t big_len = 20000;
    char *big = malloc(big_len);
    memset(big, 'A', big_len);
    memcpy(big, good, strlen(good));
    assert_int_equal(jwtv_verify(v, big, big_len, NOW, &cl), JWTV_MALFORMED);
    free(big);
    /* The length given is what counts, not a NUL. */
    char *longer = fmt("%s.more", good);
    assert_int_equal(jwtv_verify(v, longer, strlen(good), NOW, &cl), JWTV_OK);
    assert_int_equal(jwtv_verify(v, longer, strlen(longer), NOW, &cl), JWTV_MALFORMED);
    free(longer);
    free(h);
    free(pb);
    free(good);
    free(p);
    jwtv_free(v);
}

/* ---- identity claims -------------------------------------------------------- */

static void claims_of(const struct jwtv *v, const char *extra, struct jwtv_claims *cl)
{
    char *p = claims(extra);
    char *t = tok_hs(p);
    assert_int_equal(verify_at(v, t, NOW, cl), JWTV_OK);
    free(t);
    free(p);
}

static void test_scopes(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    struct jwtv_claims cl;
    claims_of(v, ",\"scope\":\"  read   write  admin \"", &cl);
    assert_string_equal(cl.scopes, "read write admin");
    claims_of(v, ",\"scope\":[\"read\",\"write\",7,\"a b\",\"\"]", &cl);
    assert_string_equal(cl.scopes, "read write a b");
    claims_of(v, ",\"scope\":42", &cl);
    assert_string_equal(cl.scopes, "");
    claims_of(v, "", &cl);
    assert_string_equal(cl.scopes, "");

    /* Too many: whole scopes only, in order, as many as fit. */
    char *many = calloc(1, 4096);
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(many + n, 4096 - n, "%sscope_%03d_xyz", i ? " " : "", i);
    char *extra = fmt(",\"scope\":\"%s\"", many);
    claims_of(v, extra, &cl);
    size_t got = strlen(cl.scopes);
    assert_true(got > JWTV_MAX_SCOPES - 16 && got < JWTV_MAX_SCOPES);
    assert_memory_equal(cl.scopes, many, got);
    assert_true(many[got] == ' '); /* cut between scopes */
    free(extra);
    free(many);

    /* A scope too long to fit is dropped, not cut; later ones still come. */
    char huge[JWTV_MAX_SCOPES + 10];
    memset(huge, 'h', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    extra = fmt(",\"scope\":[\"read\",\"%s\",\"write\"]", huge);
    claims_of(v, extra, &cl);
    assert_string_equal(cl.scopes, "read write");
    free(extra);
    extra = fmt(",\"scope\":\"read %s write\"", huge);
    claims_of(v, extra, &cl);
    assert_string_equal(cl.scopes, "read write");
    free(extra);
    /* A scope with a control character is dropped. */
    claims_of(v, ",\"scope\":\"read a\\tb write\"", &cl);
    assert_string_equal(cl.scopes, "read write");
    jwtv_free(v);

    /* Another claim name. */
    c.scope_claim = "scp";
    v = must_new(&c);
    claims_of(v, ",\"scope\":\"ignored\",\"scp\":[\"x\",\"y\"]", &cl);
    assert_string_equal(cl.scopes, "x y");
    jwtv_free(v);
}

static void test_tier_and_key_id(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    struct jwtv_claims cl;
    char longest[JWTV_MAX_TIER], too_long[JWTV_MAX_TIER + 1];
    memset(longest, 't', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 't', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    char *extra = fmt(",\"tier\":\"%s\"", longest);
    claims_of(v, extra, &cl);
    assert_string_equal(cl.tier, longest);
    free(extra);
    extra = fmt(",\"tier\":\"%s\",\"key_id\":\"k_1\"", too_long);
    claims_of(v, extra, &cl);
    assert_string_equal(cl.tier, "");
    assert_string_equal(cl.key_id, "k_1");
    free(extra);
    claims_of(v, ",\"tier\":5,\"key_id\":[\"k\"]", &cl);
    assert_string_equal(cl.tier, "");
    assert_string_equal(cl.key_id, "");
    jwtv_free(v);

    c.tier_claim = "plan";
    v = must_new(&c);
    claims_of(v, ",\"tier\":\"gold\",\"plan\":\"pro\"", &cl);
    assert_string_equal(cl.tier, "pro");
    jwtv_free(v);
}

static void test_exempt_roles(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    struct jwtv_claims cl;
    claims_of(v, ",\"roles\":[\"user\",\"admin\"]", &cl);
    assert_true(cl.exempt);
    claims_of(v, ",\"roles\":\"ops\"", &cl);
    assert_true(cl.exempt);
    claims_of(v, ",\"roles\":\"user ops\"", &cl);
    assert_true(cl.exempt);
    claims_of(v, ",\"role\":\"admin\"", &cl);
    assert_true(cl.exempt);
    claims_of(v, ",\"roles\":[\"user\",\"administrator\"],\"role\":\"adm\"", &cl);
    assert_false(cl.exempt);
    claims_of(v, ",\"roles\":[\"ADMIN\"]", &cl);
    assert_false(cl.exempt);
    claims_of(v, "", &cl);
    assert_false(cl.exempt);
    jwtv_free(v);
    c.n_exempt_roles = 0;
    c.exempt_roles = NULL;
    v = must_new(&c);
    claims_of(v, ",\"roles\":[\"admin\"]", &cl);
    assert_false(cl.exempt);
    jwtv_free(v);
}

/* ---- issuing ------------------------------------------------------------------ */

static void test_issue_roundtrip(void **state)
{
    struct jwtv_config c = {
        .algorithms = JWTV_HS256,
        .secret = SECRET,
        .issuer = "sluice",
        .audience = "gw",
        .leeway_s = 0,
    };
    struct jwtv *v = must_new(&c);
    struct jwtv_claims cl;
    char *t = jwtv_issue(SECRET, NULL, "gw", "key_abc", "gold", "read write", NOW, 900);
    assert_non_null(t);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.sub, "key_abc");
    assert_string_equal(cl.key_id, "key_abc");
    assert_string_equal(cl.tier, "gold");
    assert_string_equal(cl.scopes, "read write");
    assert_int_equal(cl.exp, NOW + 900);
    assert_int_equal(verify_at(v, t, NOW + 899, &cl), JWTV_OK);
    assert_int_equal(verify_at(v, t, NOW + 900, &cl), JWTV_EXPIRED);

    /* The claims as libjwt reads them: iat and a 32-hex-digit jti, fresh
     * for each token. */
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, t, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    assert_int_equal(jwt_get_grant_int(j, "iat"), NOW);
    assert_string_equal(jwt_get_grant(j, "iss"), "sluice");
    const char *jti = jwt_get_grant(j, "jti");
    assert_non_null(jti);
    assert_int_equal(strlen(jti), 32);
    assert_int_equal(strspn(jti, "0123456789abcdef"), 32);
    char *t2 = jwtv_issue(SECRET, NULL, "gw", "key_abc", "gold", "read write", NOW, 900);
    jwt_t *j2 = NULL;
    assert_int_equal(jwt_decode(&j2, t2, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    assert_string_not_equal(jwt_get_grant(j2, "jti"), jti);
    jwt_free(j2);
    jwt_free(j);
    free(t2);

    /* Another secret does not verify it; other options are omitted. */
    c.secret = OTHER_SECRET;
    struct jwtv *v2 = must_new(&c);
    assert_int_equal(verify_at(v2, t, NOW, &cl), JWTV_BAD_SIGNATURE);
    jwtv_free(v2);
    free(t);
    t = jwtv_issue(SECRET, "me", NULL, "key_x", NULL, "", NOW, 60);
    assert_int_equal(verify_at(v, t, NOW, &cl), JWTV_BAD_ISSUER);
    c.secret = SECRET;
    c.issuer = "me";
    c.audience = NULL;
    v2 = must_new(&c);
    assert_int_equal(verify_at(v2, t, NOW, &cl), JWTV_OK);
    assert_string_equal(cl.tier, "");
    assert_string_equal(cl.scopes, "");
    assert_int_equal(jwt_decode(&j, t, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    assert_null(jwt_get_grant(j, "aud"));
    assert_null(jwt_get_grant(j, "scope"));
    assert_null(jwt_get_grant(j, "tier"));
    jwt_free(j);
    jwtv_free(v2);
    free(t);
    jwtv_free(v);
}

/* ---- JWKS and configuration errors ------------------------------------------ */

static void test_config_errors(void **state)
{
    struct jwtv_config c = base_config();
    c.secret = NULL;
    new_fails(&c, "HS256 needs a secret");
    c = base_config();
    c.algorithms = 0;
    new_fails(&c, "algorithms");
    c = base_config();
    c.jwks_file = NULL;
    new_fails(&c, "need a jwks_file");

    c = base_config();
    char *missing = fmt("%s/absent.json", fx.dir);
    c.jwks_file = missing;
    new_fails(&c, "absent.json: No such file");
    free(missing);

    /* Only keys for something else: nothing for RS256, unless HS256 has
     * its secret. */
    c = base_config();
    c.algorithms = JWTV_RS256 | JWTV_ES256;
    c.secret = NULL;
    c.jwks_file = fx.jwks_skip;
    new_fails(&c, "no key for RS256 or ES256");
    c.algorithms = JWTV_ES256;
    c.jwks_file = fx.jwks_two;
    new_fails(&c, "no key for ES256");
    c = base_config();
    c.jwks_file = fx.jwks_skip;
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    assert_int_equal(check(v, tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p)), JWTV_BAD_ALG);
    assert_int_equal(check(v, tok_hs(p)), JWTV_OK);
    free(p);
    jwtv_free(v);
}

/* A JWKS file with <keys> fails with <want>. */
static void jwks_fails(const char *doc, const char *want)
{
    char *path = write_file("bad.json", doc);
    struct jwtv_config c = base_config();
    c.jwks_file = path;
    new_fails(&c, want);
    unlink(path);
    free(path);
}

static void test_jwks_errors(void **state)
{
    jwks_fails("not json", "bad.json: line 1:");
    jwks_fails("{\"kty\":\"RSA\"}", "not a JWKS");
    jwks_fails("{\"keys\":{}}", "not a JWKS");
    jwks_fails("{\"keys\":[42]}", "key 1: not an object");
    jwks_fails("{\"keys\":[{\"kid\":\"a\"}]}", "key 1 (kid a): no 'kty'");
    jwks_fails("{\"keys\":[{\"kty\":\"RSA\",\"kid\":7}]}", "'kid'");
    jwks_fails("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"x\":\"AA\",\"y\":\"AA\"}]}", "no 'crv'");

    /* A good key, then one with a broken member. */
    char *n_bad = fmt(
        "{\"keys\":[%s,{\"kty\":\"RSA\",\"kid\":\"k1\",\"n\":\"!!\",\"e\":\"AQAB\"}]}", fx.jwk_rsa);
    char *want = fmt("jwks_file %s/bad.json: key 2 (kid k1): bad 'n'", fx.dir);
    jwks_fails(n_bad, want);
    free(want);
    free(n_bad);
    /* A 1024-bit modulus: too weak. */
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(weak);
    char *weak_jwk = jwk_rsa(weak, "w");
    char *weak_doc = fmt("{\"keys\":[%s]}", weak_jwk);
    jwks_fails(weak_doc, "key 1 (kid w): 'n' is not 2048 to 8192 bits");
    free(weak_doc);
    free(weak_jwk);
    EVP_PKEY_free(weak);
    jwks_fails("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"w\",\"e\":\"AQAB\",\"n\":\"AQAB\"}]}",
               "'n' is not 2048");
    jwks_fails("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"w\",\"n\":\"AQAB\"}]}", "bad 'e'");
    /* An even exponent: OpenSSL's public-key check refuses it. */
    char *n_real = bn_param_b64(fx.rsa, OSSL_PKEY_PARAM_RSA_N, 0);
    char *even_e = fmt("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAA\"}]}", n_real);
    jwks_fails(even_e, "key 1: not a valid RSA public key");
    free(even_e);
    free(n_real);
    /* EC: a short coordinate; a point that is not on the curve. */
    jwks_fails("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
               "key 1: bad 'x'");
    char *x = bn_param_b64(fx.ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    char *off = fmt("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":"
                    "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
                    x);
    jwks_fails(off, "key 1 (kid e): not a point of P-256");
    free(off);
    free(x);
    /* The same kid twice. */
    char *dup = fmt("{\"keys\":[%s,%s]}", fx.jwk_rsa, fx.jwk_rsa);
    jwks_fails(dup, "key 2 (kid rsa1): the kid of key 1 again");
    free(dup);

    /* Bounds: 65 keys, and a file over 1 MiB. */
    char *many = calloc(1, 65 * 32 + 32);
    size_t n = (size_t)snprintf(many, 32, "{\"keys\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(many + n, 32, "%s{\"kty\":\"oct\"}", i ? "," : "");
    memcpy(many + n, "]}", 3);
    jwks_fails(many, "65 keys, at most 64");
    free(many);
    size_t big_n = (1u << 20) + 10;
    char *big = malloc(big_n + 1);
    memset(big, ' ', big_n);
    memcpy(big, "{\"keys\":[]}", 11);
    big[big_n] = '\0';
    jwks_fails(big, "larger than 1 MiB");
    free(big);
}

/* ---- threads -------------------------------------------------------------------- */

struct shared {
    const struct jwtv *v;
    char *tokens[3];
    int ok;
};

static void *verify_many(void *arg)
{
    struct shared *s = arg;
    int ok = 0;
    for (int i = 0; i < 150; i++) {
        struct jwtv_claims cl;
        const char *t = s->tokens[i % 3];
        if (jwtv_verify(s->v, t, strlen(t), NOW, &cl) == JWTV_OK && strcmp(cl.sub, "user-1") == 0)
            ok++;
    }
    s->ok = ok;
    return NULL;
}

/* Workers share one verifier: each thread verifies all three kinds. */
static void test_threads_share_a_verifier(void **state)
{
    struct jwtv_config c = base_config();
    struct jwtv *v = must_new(&c);
    char *p = claims("");
    struct shared sh[4];
    pthread_t th[4];
    char *tokens[3] = {tok_hs(p), tok_libjwt(JWT_ALG_RS256, fx.rsa_priv_pem, "rsa1", p),
                       tok_libjwt(JWT_ALG_ES256, fx.ec_priv_pem, "ec1", p)};
    for (int i = 0; i < 4; i++) {
        sh[i] = (struct shared){.v = v, .tokens = {tokens[0], tokens[1], tokens[2]}};
        assert_int_equal(pthread_create(&th[i], NULL, verify_many, &sh[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(sh[i].ok, 150);
    }
    for (int i = 0; i < 3; i++)
        free(tokens[i]);
    free(p);
    jwtv_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hs256_valid),
        cmocka_unit_test(test_rs256_valid),
        cmocka_unit_test(test_es256_libjwt),
        cmocka_unit_test(test_es256_openssl_interop),
        cmocka_unit_test(test_kid_optional_with_one_key),
        cmocka_unit_test(test_expired_and_leeway),
        cmocka_unit_test(test_require_exp),
        cmocka_unit_test(test_not_before_and_leeway),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_signature_bytes),
        cmocka_unit_test(test_es256_short_r_s),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hs_rs_confusion),
        cmocka_unit_test(test_kid_of_wrong_key_type),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_tier_and_key_id),
        cmocka_unit_test(test_exempt_roles),
        cmocka_unit_test(test_issue_roundtrip),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_jwks_errors),
        cmocka_unit_test(test_threads_share_a_verifier),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
