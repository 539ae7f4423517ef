#ifndef SLUICE_UTIL_JSON_H
#define SLUICE_UTIL_JSON_H
/* JSON strings written by hand, for the few cold paths that build a small
 * JSON text without a jansson document (error bodies, the purge request).
 * Named util/json.h, prefix json_str_: jansson's <jansson.h> owns json_*
 * otherwise, and none of its names start with json_str_. */
#include <stddef.h>

#include "util/buf.h"

/* Appends <s>/<len> to <b> as the inside of a JSON string (RFC 8259
 * section 7), without the quotes: '"' and '\' get a backslash, control
 * bytes (NUL included) and DEL become \u00XX, valid UTF-8 is copied as is,
 * and each byte that is not part of valid UTF-8 (a stray continuation
 * byte, an overlong form, a surrogate, a cut sequence) becomes \ufffd, so
 * the result is valid JSON whatever <s> holds. */
void json_str_append_n(struct buf *b, const char *s, size_t len);

/* json_str_append_n of the C string <s>. */
void json_str_append(struct buf *b, const char *s);

#endif
