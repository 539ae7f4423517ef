#ifndef SLUICE_URL_H
#define SLUICE_URL_H
#include <stdbool.h>
#include <stddef.h>

/* Normalise the path <in>/<len> for routing: remove dot-segments (RFC 3986
 * 5.2.4, also written as %2e) and merge repeated slashes, so that no path
 * can match one route while the upstream resolves it into another. Other
 * percent-escapes are kept as sent. Writes at most <len> + 1 bytes, NUL
 * terminated, to <out> and its length to *<out_len>. Returns 0, or -1 when
 * the path climbs above the root or does not start with '/'. */
int url_normalize_path(const char *in, size_t len, char *out, size_t *out_len);

/* Is <s>/<len> a valid Host header value, uri-host [ ":" port ] (RFC 9110
 * 7.2, RFC 3986 3.2.2-3.2.3)? uri-host is an IP-literal ("[" IPv6address or
 * IPvFuture "]"), or a reg-name (which covers IPv4 addresses): unreserved
 * characters, sub-delims and percent-escapes; port is digits. An empty value
 * is valid (RFC 9110 7.2: a target URI without an authority). Anything else
 * (whitespace, '/', '|', '@', controls) would let one request name a host
 * the upstream and the cache read differently; such requests get a 400, as
 * with nginx. */
bool url_host_valid(const char *s, size_t len);

#endif
