#ifndef SLUICE_SIG_H
#define SLUICE_SIG_H
/* Request signing (SPEC 7.2), the pure parts: the four X-Sluice-* headers
 * read and checked, the canonical string built, the HMAC compared, and the
 * in-memory replay cache. No exchange, no clock: the stage (module.c) and
 * the unit tests and fuzz harness call these with what they have.
 *
 * The canonical string a client signs (docs/protection.md):
 *   METHOD "\n" PATH "\n" SORTED_QUERY "\n" TIMESTAMP "\n" NONCE "\n"
 *   hex(SHA-256(body))
 * PATH: the request path as sent, without the query, percent-encoding left
 * as it is (never decoded), before the route's strip_prefix or rewrite.
 * SORTED_QUERY: the raw query (after '?') split on '&', the parts sorted
 * bytewise, joined with '&'; "" without a query. TIMESTAMP and NONCE: the
 * header values as sent. Hex digits are lower case. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define SIG_SECRET_LEN 32
#define SIG_MAC_LEN 32
/* A nonce: 8 (enough randomness to matter) to 128 (a UUID or two fit)
 * printable ASCII characters, no blanks: it becomes part of a Redis key. */
#define SIG_NONCE_MIN 8
#define SIG_NONCE_MAX 128
/* A key id: "key_" and 16 hex digits today; a little room. */
#define SIG_KEY_ID_MAX 64
/* Unix seconds: 12 digits reach the year 33658. */
#define SIG_TIMESTAMP_DIGITS 12

/* What a request's signature headers say, pointing into the header values
 * (not NUL-terminated). */
struct sig_headers {
    const char *key_id, *timestamp, *nonce;
    size_t key_id_len, timestamp_len, nonce_len;
    int64_t ts; /* the timestamp, in seconds */
    uint8_t mac[SIG_MAC_LEN];
};

enum sig_parse_result {
    SIG_PARSE_OK,
    SIG_PARSE_MISSING,   /* no X-Sluice-Signature: the request is not signed */
    SIG_PARSE_MALFORMED, /* signed, but a header is absent or not well-formed */
};

/* Reads the header values (each NULL when absent; trimmed of blanks) into
 * <out>. On SIG_PARSE_MALFORMED, *<why> names the header and what is wrong
 * (static text). */
enum sig_parse_result sig_parse(const char *key, size_t key_len, const char *ts, size_t ts_len,
                                const char *nonce, size_t nonce_len, const char *sig,
                                size_t sig_len, struct sig_headers *out, const char **why);

/* The SORTED_QUERY of <query>/<len> appended to <out>. */
void sig_sorted_query(const char *query, size_t len, struct buf *out);

/* The canonical string of a request into <out> (appended). <body_hex> is the
 * 64 hex digits of the body's SHA-256. */
void sig_canonical(struct buf *out, const char *method, const char *path, size_t path_len,
                   const char *query, size_t query_len, const struct sig_headers *h,
                   const char body_hex[65]);

/* SHA-256 of nothing, in hex: the digest of a request without a body. */
extern const char sig_empty_body_hex[65];
/* <digest> (32 bytes) as 64 lower-case hex digits into <hex>. */
void sig_hex(const uint8_t *digest, size_t n, char *hex);

/* Is <mac> HMAC-SHA256(<secret>, <canonical>)? Compared in constant time. */
bool sig_mac_ok(const uint8_t secret[SIG_SECRET_LEN], const char *canonical, size_t len,
                const uint8_t mac[SIG_MAC_LEN]);

/* ---- the in-memory replay cache ---------------------------------------------- */

/* The nonces seen per key for as long as their timestamp is within the
 * skew (ttl), shared by the workers of one gateway. Bounded: at most
 * SIG_REPLAY_MAX nonces in all and SIG_REPLAY_PER_KEY per key (see
 * util/limits.h); when full it refuses (SIG_REPLAY_FULL) rather than forget
 * a nonce that could then be replayed. Nonces live in two generations of
 * <window> each: a nonce is remembered for at least <window> after it was
 * seen, at most twice that; a generation is dropped whole, so nothing is
 * swept one entry at a time. Entries are 64-bit SipHashes (random key per
 * cache) of key and nonce: a collision refuses a fresh nonce (1 in 2^44 at
 * a full cache), never admits a replay. */
struct sig_replay;

enum sig_replay_result {
    SIG_REPLAY_NEW,  /* first seen: now remembered */
    SIG_REPLAY_SEEN, /* seen before within the window: a replay */
    SIG_REPLAY_FULL, /* the cache, or this key's share of it, is full */
};

struct sig_replay *sig_replay_new(void);
void sig_replay_free(struct sig_replay *r);
/* Has <key_id> used <nonce> before, at <now_us>? <window_us>: how long the
 * nonce must be remembered (twice the route's skew); the cache's window
 * only grows. Thread-safe. */
enum sig_replay_result sig_replay_check(struct sig_replay *r, const char *key_id, size_t key_len,
                                        const char *nonce, size_t nonce_len, int64_t now_us,
                                        int64_t window_us);

#endif
