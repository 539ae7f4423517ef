#ifndef SLUICE_AUDIT_H
#define SLUICE_AUDIT_H
/* The audit log (SPEC 7.5; docs/protection.md, "Audit log"): one chained
 * JSON line per admin action, from the admin API, the command line and the
 * gateway itself. A module that changes something an operator must be able
 * to account for (keys, bans, access lists, purges, reloads) calls one of
 * the functions below with explicit fields: never a request body, never a
 * secret (API key secrets, signing secrets, the admin token, JWTs). Each
 * does nothing when the config has no `audit` section. */
#include "conf/conf.h"
#include "pipeline/exchange.h"
#include "pipeline/gateway.h"

/* One admin action. Strings are copied; NULL is written as "". */
struct audit_event {
    const char *actor;  /* "admin-api", "cli:alice", "gateway" */
    const char *action; /* "key.create", "ban.add", "access.delete", "cache.purge" */
    const char *target; /* what it acted on: a key id, an identity, "prefix:/api/" */
    const char *result; /* "ok", or what went wrong: "404 Not Found" */
    const char *client; /* the caller's address; "local" for the command line */
    /* More members, already JSON: ,"tier":"pro" (leading comma), or NULL.
     * Build them with json_str_append (util/json.h). */
    const char *extra;
};

/* Queues <ev> for the audit thread of <gw>. Never blocks on the disk: a
 * full queue drops the line and counts it (sluice_audit_dropped_total).
 * Safe from any thread. */
void audit_admin(struct gateway *gw, const struct audit_event *ev);

/* audit_admin for a call on the admin API <x> that answered (or will
 * answer) <status>: actor "admin-api", client the caller's address,
 * result "ok" for 1xx-3xx, else "<status> <reason>". */
void audit_admin_call(struct exchange *x, const char *action, const char *target, int status,
                      const char *extra);
/* The same for another actor of an API (e.g. "developer:<sub>"). */
void audit_call(struct exchange *x, const char *actor, const char *action, const char *target,
                int status, const char *extra);

/* For the command line: appends <ev> to the audit log of <cfg> now,
 * under the file's lock (safe next to a running gateway). <ev>'s actor
 * and client may be NULL: "cli:<user>" and "local". 0, or -1 with *<err>
 * malloc'd. */
int audit_cli(const struct config *cfg, const struct audit_event *ev, char **err);

#endif
