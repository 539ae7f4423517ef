#include "util/str.h"

#include <ctype.h>

static const char *str_trim(const char *s, size_t len, size_t *out_len)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    *out_len = len;
    return s;
}

bool str_list_has(const char *list, size_t len, const char *token)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || list[i] == ',') {
            size_t tlen;
            const char *t = str_trim(list + start, i - start, &tlen);
            if (str_ieq(t, tlen, token))
                return true;
            start = i + 1;
        }
    }
    return false;
}

const char *str_list_last(const char *list, size_t len, size_t *out_len)
{
    size_t i = len;
    while (i > 0 && list[i - 1] != ',')
        i--;
    return str_trim(list + i, len - i, out_len);
}

bool str_ct_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Compare over the longer length so timing does not reveal where they differ. */
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        unsigned char y = i < blen ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

size_t str_copy(char *dst, size_t cap, const char *src)
{
    if (cap == 0)
        return 0;
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

size_t str_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

int str_unhex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = str_hex_digit(s[2 * i]), lo = str_hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
