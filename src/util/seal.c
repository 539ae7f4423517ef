/* Sealed secrets (util/seal.h): AES-256-GCM through OpenSSL's EVP. */
#include "util/seal.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/str.h"

#define SEAL_TAG "v1:"

static void seal_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One AES-256-GCM pass over <in>/<len> into <out> with <nonce> and <label>
 * as additional data: encrypting writes <tag>, decrypting checks it. */
static int seal_gcm(bool encrypt, const uint8_t key[SEAL_KEY_LEN], const uint8_t *nonce,
                    const char *label, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) &&
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) &&
                    EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) &&
                    EVP_CipherUpdate(ctx, NULL, &n, (const uint8_t *)label, (int)strlen(label)) &&
                    EVP_CipherUpdate(ctx, out, &n, in, (int)len);
    if (ok && !encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag);
    /* Decrypting, the final step is where the tag is compared. */
    ok = ok && EVP_CipherFinal_ex(ctx, out + n, &n);
    if (ok && encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int seal_text(const uint8_t key[SEAL_KEY_LEN], const char *label, const uint8_t *plain, size_t len,
              char out[SEAL_TEXT_MAX])
{
    out[0] = '\0';
    if (len > SEAL_PLAIN_MAX)
        return -1;
    uint8_t box[SEAL_NONCE_LEN + SEAL_PLAIN_MAX + SEAL_TAG_LEN];
    uint8_t *nonce = box, *ct = box + SEAL_NONCE_LEN, *tag = ct + len;
    if (RAND_bytes(nonce, SEAL_NONCE_LEN) != 1 ||
        seal_gcm(true, key, nonce, label, plain, len, ct, tag) < 0) {
        OPENSSL_cleanse(box, sizeof(box));
        return -1;
    }
    memcpy(out, SEAL_TAG, 3);
    seal_hex(box, SEAL_NONCE_LEN + len + SEAL_TAG_LEN, out + 3);
    return 0;
}

int seal_open(const uint8_t key[SEAL_KEY_LEN], const char *label, const char *text, uint8_t *plain,
              size_t cap, size_t *len)
{
    *len = 0;
    size_t tl = strlen(text);
    if (tl < 3 || memcmp(text, SEAL_TAG, 3) != 0 || (tl - 3) % 2)
        return -1;
    size_t n = (tl - 3) / 2;
    uint8_t box[SEAL_NONCE_LEN + SEAL_PLAIN_MAX + SEAL_TAG_LEN];
    if (n < SEAL_NONCE_LEN + SEAL_TAG_LEN || n > sizeof(box) ||
        str_unhex(text + 3, 2 * n, box, n) < 0)
        return -1;
    size_t plen = n - SEAL_NONCE_LEN - SEAL_TAG_LEN;
    if (plen > cap)
        return -1;
    uint8_t *ct = box + SEAL_NONCE_LEN, *tag = ct + plen;
    if (seal_gcm(false, key, box, label, ct, plen, plain, tag) < 0) {
        OPENSSL_cleanse(plain, plen);
        return -1;
    }
    *len = plen;
    return 0;
}
