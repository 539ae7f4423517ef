#include "util/json.h"

#include <stdbool.h>

/* The length (2 to 4) of the valid UTF-8 sequence that starts with the
 * non-ASCII byte at <s>, <len> bytes available; 0 when it is not one
 * (RFC 3629 section 4: no overlong forms, no surrogates, nothing above
 * U+10FFFF). */
static size_t json_utf8_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* below is overlong */
        else if (c == 0xed)
            hi = 0x9f; /* above are the surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* below is overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above is past U+10FFFF */
    } else {
        return 0; /* a continuation byte, 0xc0, 0xc1 or 0xf5 and up */
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* Is the ASCII byte <c> copied as it is? */
static bool json_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

void json_str_append_n(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* Runs of bytes that need nothing are copied at once. */
        size_t run = i;
        for (;;) {
            size_t n = 0;
            if (run < len && json_plain(p[run]))
                n = 1;
            else if (run < len && p[run] >= 0x80)
                n = json_utf8_len(p + run, len - run);
            if (!n)
                break;
            run += n;
        }
        buf_append(b, p + i, run - i);
        i = run;
        if (i == len)
            break;
        unsigned char c = p[i++];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, sizeof(esc));
        } else if (c < 0x80) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, esc, sizeof(esc));
        } else {
            buf_append(b, "\\ufffd", 6); /* U+FFFD REPLACEMENT CHARACTER */
        }
    }
}

void json_str_append(struct buf *b, const char *s)
{
    json_str_append_n(b, s, strlen(s));
}
