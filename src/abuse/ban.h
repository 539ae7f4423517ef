#ifndef SLUICE_ABUSE_BAN_H
#define SLUICE_ABUSE_BAN_H
/* A ban (SPEC 7.3): who, why, until when, and how many times this identity
 * has been banned (each repeat of an automatic ban is longer). What the
 * store keeps, GET /bans shows and POST /bans reads. Pure: every time is
 * passed in. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ABUSE_ID_MAX 96      /* an identity with its NUL: struct identity's id */
#define ABUSE_REASON_MAX 256 /* bytes of a reason, with its NUL */
#define ABUSE_BODY_MAX 4096  /* a POST /bans body */
/* The longest manual ban: a year ("temporarily"); longer is an access list. */
#define ABUSE_MANUAL_MAX_MS (365ll * 86400000)

enum abuse_source { ABUSE_SRC_AUTO, ABUSE_SRC_MANUAL, ABUSE_SRC_N };

struct abuse_ban {
    char identity[ABUSE_ID_MAX];
    char reason[ABUSE_REASON_MAX];
    enum abuse_source source;
    int64_t created_ms, until_ms; /* wall clock; the ban holds while now < until */
    int64_t count;                /* bans of this identity so far, this one included */
};

/* What the automatic bans follow (abuse/conf.h), and how long a past ban
 * counts as a repeat: <forget_ms> after it ended. */
struct abuse_policy {
    int64_t ban_ms;
    int escalate;
    int64_t max_ban_ms;
    int64_t forget_ms;
};

/* How long ban number <count> (1: the first) of an identity lasts: ban_ms
 * times escalate^(count - 1), at most max_ban_ms. */
int64_t abuse_ban_length(const struct abuse_policy *p, int64_t count);

static inline bool abuse_ban_active(const struct abuse_ban *b, int64_t now_ms)
{
    return b->until_ms > now_ms;
}

/* Does <b> still count as a past ban of its identity at <now_ms>? */
static inline bool abuse_ban_remembered(const struct abuse_ban *b, const struct abuse_policy *p,
                                        int64_t now_ms)
{
    return b->until_ms + p->forget_ms > now_ms;
}

/* The ban that follows <prev> (the identity's record, NULL when none) at
 * <now_ms>, into <out>: automatic (<duration_ms> 0: the policy's length for
 * its count) or manual (<duration_ms>). false when nothing changes: an
 * automatic ban of an identity already banned. */
bool abuse_ban_next(const struct abuse_ban *prev, const struct abuse_policy *p,
                    enum abuse_source src, const char *identity, const char *reason,
                    int64_t duration_ms, int64_t now_ms, struct abuse_ban *out);

/* Reads the identity <s>/<len> (as POST /bans and DELETE /bans/{identity}
 * take it) into its canonical form in <out> (ABUSE_ID_MAX bytes), the one
 * the gateway counts under: "ip:" and an address (IPv6 folded to
 * <ipv6_prefix> bits, "ip:2001:db8:1:2::/64"), "key:" and a key id, or
 * "sub:" and a JWT subject. NULL, or why not (a static string). */
const char *abuse_identity_parse(const char *s, size_t len, int ipv6_prefix, char *out);

/* A POST /bans body: {"identity": ..., "duration": "1h", "reason": ...}. */
struct abuse_ban_req {
    char identity[ABUSE_ID_MAX];
    char reason[ABUSE_REASON_MAX];
    int64_t duration_ms;
};

/* Reads <body>/<len> into <r>. NULL, or why not (a static string for a 400). */
const char *abuse_ban_req_parse(const char *body, size_t len, int ipv6_prefix,
                                struct abuse_ban_req *r);

/* Percent-decodes <in> (a path segment) into <out> of <cap> bytes, NUL
 * terminated; its length, or -1 (a bad escape, a NUL, too long). */
int abuse_pct_decode(const char *in, char *out, size_t cap);

const char *abuse_source_name(enum abuse_source s);
/* "auto" or "manual" into *<out>; false otherwise. */
bool abuse_source_parse(const char *s, enum abuse_source *out);

/* The ban as GET /bans shows it at <now_ms>: {"identity", "reason",
 * "source", "created", "until", "retry_after", "count"} (Unix seconds). */
json_t *abuse_ban_json(const struct abuse_ban *b, int64_t now_ms);
/* <s> (an identity or a reason) as a JSON string (new reference). A JWT
 * subject cut to fit an identity may end in half a UTF-8 sequence: bytes
 * that are not ASCII become '?' then, rather than nothing shown. */
json_t *abuse_json_text(const char *s);
/* The seconds a client banned by <b> is told to wait at <now_ms> (>= 1). */
int64_t abuse_ban_retry_after(const struct abuse_ban *b, int64_t now_ms);

/* The stored form of <b> (a compact JSON text, malloc'd): the same bytes
 * for the same ban, so a store can compare it. */
char *abuse_ban_encode(const struct abuse_ban *b);
/* The stored form <s> of <identity>'s ban into <b>; false when malformed. */
bool abuse_ban_decode(const char *identity, const char *s, size_t len, struct abuse_ban *b);

#endif
