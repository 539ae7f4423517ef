#include "util/base64url.h"

#include <stdint.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of <c>, or -1 for anything outside the url alphabet. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t b64url_encode(const void *in, size_t n, bool pad, char *out, size_t cap)
{
    /* Past this, b64url_encoded_len would overflow. */
    if (n > SIZE_MAX / 4 * 3 - 3 || cap <= b64url_encoded_len(n, pad)) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i > 0) {
        uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = b64url_alphabet[(v >> 6) & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

int b64url_decode(const char *s, size_t len, unsigned flags, unsigned char *out, size_t cap,
                  size_t *out_len)
{
    /* Padding: only at the end, only to complete the last group of 4, and
     * exactly as much as that group needs (2 after 2 characters, 1 after 3). */
    size_t n_pad = 0;
    while (n_pad < len && s[len - 1 - n_pad] == '=')
        n_pad++;
    size_t n = len - n_pad;
    if (n_pad && ((flags & B64URL_NO_PAD) || len % 4 != 0 || n % 4 == 0 || n_pad != 4 - n % 4))
        return -1;
    if (n % 4 == 1)
        return -1; /* 6 bits cannot end a byte */

    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            if (o == cap)
                return -1;
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The 2 or 4 bits left over are padding of the encoder's own: a
     * non-zero one is a second spelling of the same bytes. */
    if (acc != 0)
        return -1;
    *out_len = o;
    return 0;
}
