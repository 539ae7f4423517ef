#ifndef SLUICE_JWT_VERIFY_H
#define SLUICE_JWT_VERIFY_H
/* JWT verification (SPEC 5.2), and the HS256 access tokens the gateway
 * issues itself (POST /auth/token, signed with libjwt). The algorithm is
 * decided from the configuration and the key the token names, never from
 * the token alone: `alg: none` and HS/RS confusion (an RSA public key used
 * as an HMAC secret) can never reach a signature check. Signatures are
 * checked with OpenSSL against keys built once, when the config loads
 * (libjwt 1.10 would parse a PEM key per token: ~15x slower for RS256). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jwtv_alg {
    JWTV_HS256 = 1 << 0,
    JWTV_RS256 = 1 << 1,
    JWTV_ES256 = 1 << 2,
};

/* "HS256" -> JWTV_HS256 ...; 0 for any other name. */
unsigned jwtv_alg_from_name(const char *name);

/* What a verifier accepts. Strings are borrowed for the duration of
 * jwtv_new only; the verifier copies what it keeps. */
struct jwtv_config {
    unsigned algorithms;     /* JWTV_* bits */
    const char *secret;      /* HS256 key, NULL: no HS256 */
    const char *jwks_file;   /* RS256/ES256 keys, NULL: none */
    const char *issuer;      /* NULL: `iss` not checked */
    const char *audience;    /* NULL: `aud` not checked */
    const char *tier_claim;  /* NULL: "tier" */
    const char *scope_claim; /* NULL: "scope" */
    const char *const *exempt_roles;
    int n_exempt_roles;
    int64_t leeway_s; /* exp/nbf tolerance */
    bool require_exp; /* a token without `exp` is refused (JWTV_NO_EXPIRY) */
};

struct jwtv;

/* A verifier for <c>, with the JWKS file read and its RSA and EC keys
 * converted now (not per request). NULL with *<err> (malloc'd, one line, no
 * file:line prefix) when the file is unreadable, not JWKS, holds a key this
 * module cannot use, or <c> accepts no algorithm it has a key for. */
struct jwtv *jwtv_new(const struct jwtv_config *c, char **err);
void jwtv_free(struct jwtv *v);

/* Bounds of what a verified token may carry into an identity. */
#define JWTV_MAX_SUB 128
#define JWTV_MAX_TIER 65
#define JWTV_MAX_SCOPES 512
#define JWTV_MAX_KEY_ID 40

struct jwtv_claims {
    char sub[JWTV_MAX_SUB];       /* `sub`; required */
    char tier[JWTV_MAX_TIER];     /* the tier claim, "" when absent */
    char scopes[JWTV_MAX_SCOPES]; /* the scope claim as one space-separated string
                                     (an array claim is joined), "" when absent */
    char key_id[JWTV_MAX_KEY_ID]; /* `key_id`: set in tokens /auth/token issued, else "" */
    bool exempt;                  /* `roles` (array or string) or `role` names an exempt role */
    int64_t exp;                  /* seconds since the epoch; 0 when absent */
};

enum jwtv_result {
    JWTV_OK = 0,
    JWTV_MALFORMED,   /* not three base64url parts of JSON */
    JWTV_BAD_ALG,     /* `none`, not configured, or not the algorithm of the key */
    JWTV_UNKNOWN_KID, /* RS256/ES256 with a kid the JWKS file does not have */
    JWTV_BAD_SIGNATURE,
    JWTV_EXPIRED,       /* exp + leeway <= now */
    JWTV_NOT_YET_VALID, /* nbf - leeway > now */
    JWTV_BAD_ISSUER,
    JWTV_BAD_AUDIENCE,
    JWTV_NO_SUBJECT,
    JWTV_NO_EXPIRY, /* no `exp` while require_exp is set */
};

/* A short phrase for <r>, for 401 bodies and logs ("token expired"). */
const char *jwtv_result_text(enum jwtv_result r);

/* Verify <token>/<len> at <now_s> (seconds since the epoch, injected for
 * tests) and fill <out>. Thread-safe: workers share one verifier. */
enum jwtv_result jwtv_verify(const struct jwtv *v, const char *token, size_t len, int64_t now_s,
                             struct jwtv_claims *out);

/* An HS256 access token signed with <secret>: iss (<issuer>, NULL: "sluice"),
 * aud (<audience>, NULL: none), sub and key_id (<key_id>), tier, scope
 * (space-separated, "" omitted), iat <now_s>, exp <now_s> + <ttl_s>, a random
 * jti. Malloc'd; the caller frees it. */
char *jwtv_issue(const char *secret, const char *issuer, const char *audience, const char *key_id,
                 const char *tier, const char *scopes, int64_t now_s, int64_t ttl_s);

#endif
