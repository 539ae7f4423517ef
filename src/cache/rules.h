#ifndef SLUICE_CACHE_RULES_H
#define SLUICE_CACHE_RULES_H
/* What may be cached and for how long (SPEC 4.1-4.3): pure functions over
 * header values, with time passed in, so every rule is unit-tested. The
 * cache stage (a later change) applies them to exchanges. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Cache-Control directives of a request or response. Durations in seconds,
 * -1 when absent. */
struct cache_control {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate, no_transform;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
};

void cache_cc_init(struct cache_control *cc);
/* Parse one Cache-Control header value <v>/<len> into <cc>, adding to what
 * earlier headers set (a response may carry several). Unknown directives
 * are ignored; a malformed delta-seconds makes the directive count as
 * present with value 0 for max-age/s-maxage (RFC 9111 4.2.1: treat as stale)
 * and as absent for the stale-* extensions. */
void cache_cc_parse(struct cache_control *cc, const char *v, size_t len);

/* Statuses a shared cache may store by default here: 200 203 204 300 301 404 410. */
bool cache_status_cacheable(int status);

enum cache_verdict {
    CACHE_STORE = 0,
    CACHE_SKIP_METHOD, /* not GET (HEAD is answered from a cached GET) */
    CACHE_SKIP_STATUS,
    CACHE_SKIP_NO_STORE, /* no-store */
    CACHE_SKIP_NO_CACHE, /* no-cache: must be revalidated before each reuse */
    CACHE_SKIP_PRIVATE,  /* private, and the key does not include the identity */
    CACHE_SKIP_SET_COOKIE,
    CACHE_SKIP_VARY_STAR, /* Vary: * */
    CACHE_SKIP_ZERO_TTL,  /* nothing to keep: ttl 0 and no stale window */
};

/* Freshness of a response under a route's <route_ttl_ms>: with <respect_origin>,
 * s-maxage, else max-age, overrides the route ttl (in ms). */
int64_t cache_ttl_ms(const struct cache_control *cc, int64_t route_ttl_ms, bool respect_origin);

/* An Age header value (delta-seconds, RFC 9111 5.1) in seconds; 0 when
 * malformed (as if absent), clamped to a year. */
int64_t cache_parse_age(const char *v, size_t len);

/* How long a response that arrived already <age_s> old stays fresh: an
 * origin lifetime (with <respect_origin>) loses the time the response spent
 * in caches before us (RFC 9111 4.2.3), never below 0; the route's ttl is our
 * own policy and counts from when we store it. */
int64_t cache_fresh_ms(const struct cache_control *cc, int64_t route_ttl_ms, bool respect_origin,
                       int64_t age_s);

/* May a response be stored? Checked in this order: method, status, no-store,
 * no-cache, Vary *, private, Set-Cookie, ttl. <method> is llhttp's; <key_has_identity> says
 * whether the key includes the caller's identity (then private may be
 * stored). <ttl_ms> from cache_ttl_ms; <stale_ms> the route's longest stale
 * window. */
enum cache_verdict cache_storable(int method, int status, const struct cache_control *cc,
                                  bool has_set_cookie, bool vary_star, bool key_has_identity,
                                  int64_t ttl_ms, int64_t stale_ms);
const char *cache_verdict_name(enum cache_verdict v);

/* The deadlines of a response stored at <now_us> that is fresh for <ttl_ms>,
 * then may be served stale for <swr_ms> while being refreshed, or for
 * <sie_ms> when the upstream fails (both counted from the end of freshness). */
struct cache_times {
    int64_t stored_us, fresh_until_us, swr_until_us, sie_until_us;
};
void cache_times_at(int64_t now_us, int64_t ttl_ms, int64_t swr_ms, int64_t sie_ms,
                    struct cache_times *t);

enum cache_freshness {
    CACHE_FRESH,      /* serve it */
    CACHE_REVALIDATE, /* serve it stale and refresh it in the background */
    CACHE_IF_ERROR,   /* fetch again; serve it only if the upstream fails */
    CACHE_EXPIRED,    /* of no use */
};
/* Where an entry with times <t> stands at <now_us>. */
enum cache_freshness cache_freshness_at(const struct cache_times *t, int64_t now_us);

/* May an entry with times <t> stand in for a failed upstream at <now_us>?
 * (Its stale-if-error window is separate from the revalidate window.) */
bool cache_usable_on_error(const struct cache_times *t, int64_t now_us);

/* Age in whole seconds at <now_us> (never negative). */
int64_t cache_age_s(const struct cache_times *t, int64_t now_us);

/* The query string <q>/<len> (without '?') with its parameters sorted by
 * name, appended to <out>; so "b=2&a=1" and "a=1&b=2" give one key. Names
 * are compared as the most lenient framework reads them (percent-decoded,
 * '+' as a space, ignoring ASCII case), and names equal that way keep their
 * order, as values of a repeated name do: "a=1&%61=2" and "%61=2&a=1" are
 * two keys. Empty parameters ("&&") dropped. Parameters are written as sent
 * (no decoding). A query with a ';' is appended as sent, since some
 * frameworks split parameters on ';' too. */
void cache_query_normalize(const char *q, size_t len, struct buf *out);

/* Vary: the header names of <v>/<len> lower-cased, deduplicated, sorted and
 * comma-joined, appended to <out>. Returns false for "*" (uncacheable). */
bool cache_vary_names(const char *v, size_t len, struct buf *out);

/* If-None-Match <inm>/<len> against the stored <etag>: weak comparison
 * (RFC 9110 13.1.2), "*" matches any. */
bool cache_etag_matches(const char *inm, size_t len, const char *etag, size_t etag_len);

/* An HTTP-date (IMF-fixdate; also RFC 850 and asctime forms) -> Unix
 * seconds, or -1. */
int64_t cache_http_date(const char *s, size_t len);
/* <t> Unix seconds as IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into
 * <out> (>= 30 bytes). */
void cache_format_http_date(int64_t t, char *out);

/* Cache keys are sequences of typed fields, each written "<tag><len>:<bytes>"
 * (<len> in decimal), so that no byte a client controls (a '|' in a Host, a
 * newline in a Vary value) can make two different requests spell one key:
 * the encoding of a sequence of fields is unique. Appends one field of
 * <tag> with the bytes <p>/<len> to <out>. */
void cache_key_field(struct buf *out, char tag, const char *p, size_t len);

/* Appends to <out> the primary key of a request (the key without Vary
 * values): the method class ("G": HEAD shares GET's entries), <host>/<host_len>
 * lower-cased (host names are case-insensitive; NULL for none), <url>/<url_len>
 * (path?sorted-query), and <digest> of the caller's credentials (NUL-terminated;
 * NULL when the request carries none or the route is shared). */
void cache_key_primary(struct buf *out, const char *host, size_t host_len, const char *url,
                       size_t url_len, const char *digest);

/* Is <name>/<len> a request header that frameworks read as the request's
 * method, host, scheme, path prefix or URL (X-Original-URL, X-Host,
 * Forwarded, X-HTTP-Method-Override...)? The upstream may answer another
 * resource for it, so its value is part of the key, like a Vary the
 * upstream did not send. Case-insensitive, with '_' read as '-' (WSGI
 * servers do). */
bool cache_is_override_header(const char *name, size_t len);

/* Appends to <out> the request's value <value>/<value_len> of the header
 * <name>/<name_len> that the upstream's Vary names; <value> NULL when the
 * request has no such header (which differs from an empty value). */
void cache_key_vary(struct buf *out, const char *name, size_t name_len, const char *value,
                    size_t value_len);

/* Purge globs: '*' any run of bytes, '?' one byte, no classes, no escapes.
 * A glob is compiled once and tested against every entry's url in
 * O(len * words) time, words = ceil((pattern bytes + 1) / 64), with no
 * backtracking: at most 17 machine words per url byte under the bound below,
 * whatever the pattern and the url. */
#define CACHE_MAX_GLOB 1024 /* bytes of a purge pattern: bounds the work per url byte */

struct cache_glob;
/* The compiled <pattern> (NUL-terminated), or NULL when it is longer than
 * CACHE_MAX_GLOB. Free with cache_glob_free. */
struct cache_glob *cache_glob_new(const char *pattern);
void cache_glob_free(struct cache_glob *g);
/* Does <g> match all of <s>/<len>? */
bool cache_glob_test(const struct cache_glob *g, const char *s, size_t len);
/* One-off cache_glob_new + cache_glob_test; false for a pattern over the bound. */
bool cache_glob_match(const char *pattern, const char *s, size_t len);

#endif
