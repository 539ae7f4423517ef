/* API key secrets, ids and their hashes (see apikey.h).
 *
 * A secret is "sk_" <env> "_" and the 32 random bytes written as one
 * big-endian base62 number of fixed width (43 digits, zero-padded): a fixed
 * width makes the shape check exact, and base62 keeps the secret one "word"
 * for double-click selection and free of URL-special characters. */

#include "auth/apikey.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/mem.h"
#include "util/str.h"

#define APIKEY_RAND_BYTES 32
#define APIKEY_LEAD "sk_"
#define APIKEY_LEAD_LEN 3
#define APIKEY_PREFIX_DIGITS 4 /* base62 digits shown after the env in a prefix */
#define APIKEY_ID_RAND 8       /* bytes of an id: 16 hex digits */
#define APIKEY_B62_STACK 64    /* input bytes base62 converts without a heap copy */

static const char apikey_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool apikey_is_b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool apikey_is_env_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool apikey_env_ok(const char *env)
{
    if (!env)
        return false;
    size_t n = 0;
    for (; env[n]; n++)
        if (n >= APIKEY_ENV_MAX || !apikey_is_env_char(env[n]))
            return false;
    return n > 0;
}

/* The fixed width of <n> bytes in base62: the least k with 62^k > 256^n,
 * that is ceil(8n / log2 62). 8n / log2 62 is never an integer (62^k is
 * never a power of two), so the floating point rounding cannot land on the
 * wrong side for any practical <n>. */
static size_t apikey_b62_width(size_t n)
{
    double d = (double)n * 8.0 / 5.954196310386876; /* log2(62) */
    size_t k = (size_t)d;
    return (double)k < d ? k + 1 : k;
}

size_t apikey_base62(const uint8_t *in, size_t n, char *out, size_t cap)
{
    size_t width = apikey_b62_width(n);
    if (cap <= width) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    /* Schoolbook division of the big-endian number by 62, one digit per
     * pass, least significant digit first. */
    uint8_t stack[APIKEY_B62_STACK];
    uint8_t *num = n <= sizeof(stack) ? stack : sl_malloc(n);
    memcpy(num, in, n);
    for (size_t d = width; d-- > 0;) {
        unsigned rem = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned cur = (rem << 8) | num[i];
            num[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[d] = apikey_alphabet[rem];
    }
    out[width] = '\0';
    OPENSSL_cleanse(num, n); /* the digits of a secret */
    if (num != stack)
        free(num);
    return width;
}

/* <lead> "_" <43 base62 digits of 32 random bytes> into <out>/<cap>. */
static int apikey_random_token(const char *lead, size_t lead_len, char *out, size_t cap)
{
    if (cap < lead_len + 1 + APIKEY_B62_LEN + 1)
        return -1;
    uint8_t raw[APIKEY_RAND_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, lead, lead_len);
    out[lead_len] = '_';
    apikey_base62(raw, sizeof(raw), out + lead_len + 1, cap - lead_len - 1);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

int apikey_generate(const char *env, char out[APIKEY_SECRET_MAX])
{
    if (!apikey_env_ok(env)) {
        out[0] = '\0';
        return -1;
    }
    char lead[APIKEY_LEAD_LEN + APIKEY_ENV_MAX + 1];
    size_t n = str_copy(lead, sizeof(lead), APIKEY_LEAD);
    n += str_copy(lead + n, sizeof(lead) - n, env);
    return apikey_random_token(lead, n, out, APIKEY_SECRET_MAX);
}

int apikey_generate_token(const char *lead, char *out, size_t cap)
{
    if (!apikey_env_ok(lead)) {
        if (cap > 0)
            out[0] = '\0';
        return -1;
    }
    return apikey_random_token(lead, strlen(lead), out, cap);
}

int apikey_new_id(char out[APIKEY_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[APIKEY_ID_RAND];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, "key_", 4);
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[4 + 2 * i] = hex[raw[i] >> 4];
        out[4 + 2 * i + 1] = hex[raw[i] & 15];
    }
    out[4 + 2 * sizeof(raw)] = '\0';
    return 0;
}

bool apikey_shape_ok(const char *s, size_t len)
{
    if (len < APIKEY_LEAD_LEN + 2 + APIKEY_B62_LEN || len > APIKEY_SECRET_MAX - 1 ||
        memcmp(s, APIKEY_LEAD, APIKEY_LEAD_LEN) != 0)
        return false;
    size_t env_len = len - APIKEY_LEAD_LEN - 1 - APIKEY_B62_LEN;
    for (size_t i = 0; i < env_len; i++)
        if (!apikey_is_env_char(s[APIKEY_LEAD_LEN + i]))
            return false;
    if (s[APIKEY_LEAD_LEN + env_len] != '_')
        return false;
    for (size_t i = len - APIKEY_B62_LEN; i < len; i++)
        if (!apikey_is_b62(s[i]))
            return false;
    return true;
}

void apikey_hash_md(const EVP_MD *md, const char *s, size_t len, uint8_t out[APIKEY_HASH_LEN])
{
    unsigned int n = 0;
    /* Fails only without memory or a working default provider: nothing to
     * fall back on, and a wrong hash would be worse than stopping. */
    if (EVP_Digest(s, len, out, &n, md, NULL) != 1 || n != APIKEY_HASH_LEN)
        sl_fatal("sluice: SHA-256 unavailable from OpenSSL\n");
}

void apikey_hash(const char *s, size_t len, uint8_t out[APIKEY_HASH_LEN])
{
    apikey_hash_md(EVP_sha256(), s, len, out);
}

void apikey_visible_prefix(const char *s, char out[APIKEY_PREFIX_MAX])
{
    /* Up to and including the '_' after the env, then 4 digits; a string of
     * another shape is cut at the same bound rather than rejected. */
    const char *env_end = strchr(s + (strncmp(s, APIKEY_LEAD, APIKEY_LEAD_LEN) == 0 ? 3 : 0), '_');
    size_t n = env_end ? (size_t)(env_end - s) + 1 + APIKEY_PREFIX_DIGITS : strlen(s);
    size_t len = strnlen(s, n);
    if (len > APIKEY_PREFIX_MAX - 1)
        len = APIKEY_PREFIX_MAX - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

bool apikey_token_shape_ok(const char *lead, const char *s)
{
    size_t lead_len = strlen(lead);
    if (strncmp(s, lead, lead_len) != 0 || s[lead_len] != '_' ||
        strlen(s) != lead_len + 1 + APIKEY_B62_LEN)
        return false;
    for (const char *p = s + lead_len + 1; *p; p++)
        if (!apikey_is_b62(*p))
            return false;
    return true;
}

void apikey_hex(const uint8_t hash[APIKEY_HASH_LEN], char out[APIKEY_HEX_MAX])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < APIKEY_HASH_LEN; i++) {
        out[2 * i] = hex[hash[i] >> 4];
        out[2 * i + 1] = hex[hash[i] & 15];
    }
    out[2 * APIKEY_HASH_LEN] = '\0';
}

bool apikey_unhex(const char *s, size_t len, uint8_t out[APIKEY_HASH_LEN])
{
    return str_unhex(s, len, out, APIKEY_HASH_LEN) == 0;
}
