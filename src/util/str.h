#ifndef SLUICE_STR_H
#define SLUICE_STR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Case-insensitive ASCII equality of <a>/<alen> with the C string <b>.
 * Inline so that the length of a constant <b> is known at compile time and
 * most headers are dismissed by their length alone. */
static inline bool str_ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}
/* Does the comma-separated token list <list>/<len> contain <token> (case-insensitive)? */
bool str_list_has(const char *list, size_t len, const char *token);
/* The last comma-separated token of <list>/<len>, trimmed; sets *<out_len>. */
const char *str_list_last(const char *list, size_t len, size_t *out_len);
/* Copy the C string <src> into <dst> of <cap> bytes, cutting it if need be;
 * always NUL-terminated. Returns the length copied. (snprintf("%s") costs a
 * format parse per call, and this runs for every request.) */
size_t str_copy(char *dst, size_t cap, const char *src);
/* The decimal digits of <v> into <out> (>= 21 bytes), NUL-terminated;
 * returns their count. */
size_t str_u64(char *out, uint64_t v);
/* <n> bytes from the hex digits (either case) at <s>/<len>, which must be
 * exactly 2n of them, into <out>; 0, or -1 (then <out> may hold part). */
int str_unhex(const char *s, size_t len, uint8_t *out, size_t n);
/* The value of hex digit <c> (either case), or -1. */
static inline int str_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
/* Constant-time equality, for secrets. */
bool str_ct_eq(const char *a, size_t alen, const char *b, size_t blen);

#endif
