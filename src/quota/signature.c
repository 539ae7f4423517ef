/* Alert webhook signatures: HMAC-SHA256 over "<t>." + body. */
#include "quota/signature.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/mem.h"

void quota_signature(const char *secret, size_t secret_len, int64_t t, const char *body, size_t len,
                     char out[QUOTA_SIGNATURE_MAX])
{
    char stamp[24];
    int slen = snprintf(stamp, sizeof(stamp), "%lld.", (long long)t);
    unsigned char *signed_part = sl_malloc((size_t)slen + len + 1);
    memcpy(signed_part, stamp, (size_t)slen);
    memcpy(signed_part + slen, body, len);
    unsigned char mac[32];
    unsigned mac_len = 0;
    /* An empty secret still signs (HMAC takes any key); config refuses one. */
    static const char no_key = 0;
    if (!HMAC(EVP_sha256(), secret_len ? secret : &no_key, (int)secret_len, signed_part,
              (size_t)slen + len, mac, &mac_len) ||
        mac_len != sizeof(mac))
        sl_fatal("sluice: HMAC-SHA256 failed\n"); /* OpenSSL out of memory */
    free(signed_part);
    int n = snprintf(out, QUOTA_SIGNATURE_MAX, "t=%lld,v1=", (long long)t);
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(out + n + 2 * i, 3, "%02x", mac[i]);
}
