#ifndef SLUICE_PROXY_HEADERS_H
#define SLUICE_PROXY_HEADERS_H
/* Header control and path rewriting for what goes to and comes from an
 * upstream (proxy/conf.h): the per-upstream rules, then the route's, which
 * win for a header both set. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/exchange.h"
#include "proxy/conf.h"
#include "util/buf.h"

/* The identity headers sluice sets for the app; never taken from a client. */
bool px_is_identity_header(const char *name, size_t len);

/* Does a rule of <a> or <b> (either may be NULL) remove or set header
 * <name>? Such a header of the other side is not passed on. */
bool px_rules_replace(const struct px_rules *a, const struct px_rules *b, const char *name,
                      size_t len);

/* The value of <set> for <x>, into <out> (appended). */
void px_rules_value(const struct px_set *set, const struct exchange *x, struct buf *out);

/* Append "Name: value\r\n" for every header <r> sets and <over> (may be
 * NULL) does not also set. */
void px_rules_append_head(struct buf *b, const struct px_rules *r, const struct px_rules *over,
                          const struct exchange *x);

/* The same into a header list (a response head), in <x>'s arena. */
void px_rules_add_headers(struct sl_headers *h, const struct px_rules *r,
                          const struct px_rules *over, struct exchange *x);

/* The request target the upstream is sent: <x>'s, with the route's prefix
 * stripped or rewritten (the query kept). Returns <x>'s own target when the
 * route changes nothing; otherwise a string in <x>'s arena. */
const char *px_target(struct exchange *x, size_t *len);

#endif
