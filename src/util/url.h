#ifndef SLUICE_URL_H
#define SLUICE_URL_H
#include <stddef.h>

/* Normalise the path <in>/<len> for routing: remove dot-segments (RFC 3986
 * 5.2.4, also written as %2e) and merge repeated slashes, so that no path
 * can match one route while the upstream resolves it into another. Other
 * percent-escapes are kept as sent. Writes at most <len> + 1 bytes, NUL
 * terminated, to <out> and its length to *<out_len>. Returns 0, or -1 when
 * the path climbs above the root or does not start with '/'. */
int url_normalize_path(const char *in, size_t len, char *out, size_t *out_len);

#endif
