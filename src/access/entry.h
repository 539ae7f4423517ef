#ifndef SLUICE_ACCESS_ENTRY_H
#define SLUICE_ACCESS_ENTRY_H
/* A run-time access-list entry (SPEC 7.1: POST /access): what the admin
 * API reads, the store keeps and GET /access shows. Pure. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "conf/conf.h"

#define ACL_NOTE_MAX 256  /* bytes of a note, with its NUL */
#define ACL_CIDR_TEXT 64  /* "2001:db8::/32" as given, with its NUL */
#define ACL_BODY_MAX 4096 /* a POST /access body */
/* The longest TTL: ten years; longer is "no ttl". */
#define ACL_TTL_MAX_MS (3650ll * 86400000)

enum acl_list { ACL_ALLOW, ACL_DENY };

struct acl_entry {
    int64_t id; /* assigned by the store */
    enum acl_list list;
    char cidr[ACL_CIDR_TEXT]; /* as given */
    struct cfg_cidr net;      /* parsed */
    char note[ACL_NOTE_MAX];
    int64_t created_ms; /* wall clock */
    int64_t expires_ms; /* wall clock; 0: never */
};

/* Reads a POST /access body <body>/<len> at wall time <now_ms> into <e> (id
 * 0). NULL, or why not (a static string for a 400). */
const char *acl_entry_parse(const char *body, size_t len, int64_t now_ms, struct acl_entry *e);
/* Fills <e> from stored fields; false when they do not make an entry. */
bool acl_entry_set(struct acl_entry *e, int64_t id, const char *list, const char *cidr,
                   const char *note, int64_t created_ms, int64_t expires_ms);
/* "allow" or "deny". */
const char *acl_list_name(enum acl_list l);
/* The entry as GET /access shows it: {"id", "list", "cidr", "note",
 * "created", "expires"} (times as Unix seconds; expires null: never). */
json_t *acl_entry_json(const struct acl_entry *e);
/* Has <e> expired at <now_ms>? */
static inline bool acl_entry_expired(const struct acl_entry *e, int64_t now_ms)
{
    return e->expires_ms && e->expires_ms <= now_ms;
}

#endif
