#ifndef SLUICE_AUDIT_LINE_H
#define SLUICE_AUDIT_LINE_H
/* One audit line (SPEC 7.5), as written and as read back by `sluice audit
 * verify`. A line is a JSON object on one line, members in this order:
 *
 *   {"time":"2026-12-05T18:30:00.123Z","actor":"...","action":"...",
 *    "target":"...","result":"...","client":"...",<extra members>,
 *    "seq":N,"mac":"<64 hex digits>"}
 *
 * <mac> = hex(HMAC-SHA256(key, <previous line's mac, 64 hex digits> ||
 * <the line without ,"mac":"..." : the same bytes up to and including
 * "seq":N, then "}">)). The first line of a chain follows 64 zeros. Every
 * file starts with an "audit.open" line whose "prev" member names the mac
 * it follows (the last mac of the file rotated before it), so a file can
 * be checked alone. <seq> counts lines from 1 across files: a jump is a
 * missing line, a step back a reordered one. docs/protection.md has the
 * whole rule in ten lines of Python. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define AUDIT_MAC_HEX 64
/* Any one string field is cut at this many bytes before escaping (a
 * request path); escaped, a byte takes at most 6 (\u00XX). */
#define AUDIT_FIELD_MAX 1024
/* Extra members of one line past this are left out (audit_admin says so
 * in the line): callers pass a few short fields. */
#define AUDIT_EXTRA_MAX 16384
/* A line longer than this is not one of ours: six fields of
 * AUDIT_FIELD_MAX escaped, the extras, seq and mac stay well below. */
#define AUDIT_LINE_MAX 65536
/* ,"mac":" + 64 hex + "} */
#define AUDIT_MAC_SUFFIX_LEN (8 + AUDIT_MAC_HEX + 2)
#define AUDIT_OPEN_ACTION "audit.open"

/* Where a chain stands: the last line's mac and seq (seq 0, mac of zeros:
 * nothing written yet). */
struct audit_chain {
    char mac[AUDIT_MAC_HEX + 1];
    uint64_t seq;
};

/* The start of every chain. */
void audit_chain_init(struct audit_chain *c);

/* <wall_us> as RFC 3339 UTC with milliseconds into <out> (>= 25 bytes). */
void audit_time(int64_t wall_us, char out[32]);

/* Appends the head of a line to <b>: {"time":...,"client":"..." with no
 * closing brace, each field JSON-escaped and cut at AUDIT_FIELD_MAX; NULL
 * fields are written as "". Extra members (,"k":v) may follow. */
void audit_line_head(struct buf *b, int64_t wall_us, const char *actor, const char *action,
                     const char *target, const char *result, const char *client);

/* Seals the head <head>/<len> as the line after <c> under <key>: appends
 * <head>,"seq":N,"mac":"..."}\n to <out> and moves <c> on to it. */
void audit_line_seal(struct buf *out, const char *head, size_t len, struct audit_chain *c,
                     const unsigned char key[32]);

/* The head of the line that opens a file continuing chain <c>. */
void audit_line_open_head(struct buf *b, int64_t wall_us, const char *file,
                          const struct audit_chain *c);

/* A line as read back. */
struct audit_line {
    uint64_t seq;
    char mac[AUDIT_MAC_HEX + 1];
    bool opens;                   /* an audit.open line... */
    char prev[AUDIT_MAC_HEX + 1]; /* ...and the mac it follows */
};

/* Parses <line>/<len> (no newline) into <out>; NULL, or why it is not an
 * audit line. The mac is not checked here. */
const char *audit_line_parse(const char *line, size_t len, struct audit_line *out);

/* Does the mac of <line>/<len> (parsed already) match with <prev_mac>? */
bool audit_line_mac_ok(const char *line, size_t len, const char *prev_mac,
                       const unsigned char key[32]);

#endif
