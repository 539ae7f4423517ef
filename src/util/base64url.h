#ifndef SLUICE_BASE64URL_H
#define SLUICE_BASE64URL_H
/* base64url (RFC 4648 section 5): base64 with the URL- and filename-safe
 * alphabet ('-' and '_' for '+' and '/'), as JOSE (JWT, JWKS) uses it.
 * Plain base64 is not accepted: a token that decodes under two alphabets
 * would have two spellings. */
#include <stdbool.h>
#include <stddef.h>

/* Flags of b64url_decode. */
enum b64url_flags {
    /* Refuse '=' padding, as JWS does (RFC 7515 section 2): one spelling
     * per value, so the signed bytes are the only spelling. */
    B64URL_NO_PAD = 1u << 0,
};

/* Characters the encoding of <n> bytes takes, without the NUL: with <pad>,
 * the next multiple of 4. */
static inline size_t b64url_encoded_len(size_t n, bool pad)
{
    return pad ? (n + 2) / 3 * 4 : n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* The most bytes that <len> characters can decode to (padding counted as
 * characters): the size of b64url_decode's output buffer. */
static inline size_t b64url_decoded_max(size_t len)
{
    return len / 4 * 3 + len % 4 * 3 / 4;
}

/* Writes the base64url of <in>/<n> to <out>, NUL-terminated, padded with
 * '=' to a multiple of 4 characters when <pad>. <cap> must be at least
 * b64url_encoded_len(n, pad) + 1; if it is not, nothing is encoded, <out>
 * is left empty (when <cap> > 0) and 0 is returned. Returns the length
 * written. */
size_t b64url_encode(const void *in, size_t n, bool pad, char *out, size_t cap);

/* Decodes <s>/<len> into <out> (<cap> bytes; b64url_decoded_max(len) is
 * always enough) and sets *<out_len>. Returns 0, or -1 when <s> is not
 * base64url: a character outside the alphabet ('+' and '/' included), a
 * length no encoding has (4k+1 characters; padded but not a multiple of 4;
 * more padding than the last group needs), '=' other than at the end,
 * non-zero bits after the last byte (each byte string has exactly one
 * encoding), or more bytes than <cap>. Padding is optional unless <flags>
 * has B64URL_NO_PAD. On -1, <out> may hold part of the bytes. */
int b64url_decode(const char *s, size_t len, unsigned flags, unsigned char *out, size_t cap,
                  size_t *out_len);

#endif
