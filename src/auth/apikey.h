#ifndef SLUICE_APIKEY_H
#define SLUICE_APIKEY_H
/* API key secrets (SPEC 5.1): "sk_<env>_" + 32 random bytes in base62 (43
 * characters), from OpenSSL's RNG. Only their SHA-256 is ever stored: keys
 * are high-entropy, so a slow hash would buy nothing and cost latency. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APIKEY_ENV_MAX 16 /* "live", "test": [a-z0-9], 1..16 */
#define APIKEY_B62_LEN 43 /* 32 bytes in base62 */
#define APIKEY_SECRET_MAX (3 + APIKEY_ENV_MAX + 1 + APIKEY_B62_LEN + 1)
#define APIKEY_PREFIX_MAX (3 + APIKEY_ENV_MAX + 1 + 4 + 1) /* "sk_live_ab12" */
#define APIKEY_ID_MAX 24                                   /* "key_" + 16 hex + NUL */
#define APIKEY_HASH_LEN 32

/* Is <env> a usable environment name? */
bool apikey_env_ok(const char *env);
/* A new secret for <env> into <out> (APIKEY_SECRET_MAX). 0, or -1 when the
 * RNG fails (never silently weak). */
int apikey_generate(const char *env, char out[APIKEY_SECRET_MAX]);
/* Another high-entropy token of the same shape with another lead ("rt" for
 * refresh tokens: "rt_<43 base62>"). 0 or -1. */
int apikey_generate_token(const char *lead, char *out, size_t cap);
/* Does <s> have the shape apikey_generate_token gives with <lead>
 * ("<lead>_" and 43 base62 digits)? */
bool apikey_token_shape_ok(const char *lead, const char *s);
/* A new key id, "key_" + 16 hex digits, into <out>. 0 or -1. */
int apikey_new_id(char out[APIKEY_ID_MAX]);
/* Does <s>/<len> have the shape of a secret (any env)? Cheap; says nothing
 * of whether it exists. */
bool apikey_shape_ok(const char *s, size_t len);
/* SHA-256 of <s>/<len>. */
void apikey_hash(const char *s, size_t len, uint8_t out[APIKEY_HASH_LEN]);
/* The same with <md>, SHA-256 fetched once by the caller (EVP_MD_fetch):
 * OpenSSL 3 otherwise looks the algorithm up on every call, which costs more
 * than hashing a key. */
struct evp_md_st;
void apikey_hash_md(const struct evp_md_st *md, const char *s, size_t len,
                    uint8_t out[APIKEY_HASH_LEN]);
/* <hash> in lower-case hex into <out> (2 * APIKEY_HASH_LEN + 1 bytes). */
#define APIKEY_HEX_MAX (2 * APIKEY_HASH_LEN + 1)
void apikey_hex(const uint8_t hash[APIKEY_HASH_LEN], char out[APIKEY_HEX_MAX]);
/* The hash whose hex is <s>/<len> into <out>; false when <s> is not 64 hex
 * digits. */
bool apikey_unhex(const char *s, size_t len, uint8_t out[APIKEY_HASH_LEN]);
/* The visible prefix of secret <s> ("sk_live_ab12") into <out>. */
void apikey_visible_prefix(const char *s, char out[APIKEY_PREFIX_MAX]);
/* base62 of <n> bytes into <out> (big-endian digits, fixed length
 * ceil(n*8/log2(62)), zero-padded); returns the digits written. <cap> must
 * exceed it. Exposed for tests. */
size_t apikey_base62(const uint8_t *in, size_t n, char *out, size_t cap);

#endif
