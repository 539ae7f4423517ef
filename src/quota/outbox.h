#ifndef SLUICE_QUOTA_OUTBOX_H
#define SLUICE_QUOTA_OUTBOX_H
/* The persisted outbox of alert webhooks (SPEC 6.3): an alert is written
 * here before anyone tries to send it, so a restart or a receiver that is
 * down loses nothing; delivery (off the request path) takes the entries
 * that are due, and marks each delivered (gone) or failed (retried with
 * exponential backoff: 1 s, 2 s, 4 s ... at most an hour apart, and given
 * up 24 hours after the alert was raised). The alert's id is the primary
 * key, so raising one twice (two gateways, a retry) stores it once, and a
 * receiver that sees it twice can tell.
 *
 * Functions run SQL on <db> (store/db.h) synchronously: the caller is the
 * delivery thread or the writer thread, never a worker's loop. Times are
 * UTC seconds, passed in (tests inject them). */

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#define QUOTA_OUTBOX_GIVE_UP_S (24 * 3600)
#define QUOTA_OUTBOX_MAX_DELAY_S 3600

struct quota_outbox_item {
    char *id, *body; /* malloc'd; quota_outbox_item_free */
    int attempts;    /* failed so far */
    int64_t created;
};

/* Creates the table if missing. 0, or -1 with *<err> (malloc'd). */
int quota_outbox_init(sqlite3 *db, char **err);
/* Stores the alert <id> with <body> raised at <now>, due at once. 1 when
 * stored, 0 when <id> was there already, -1 on a database error. */
int quota_outbox_add(sqlite3 *db, const char *id, const char *body, int64_t now);
/* The entry due first at <now> (next attempt at or before <now>): 1 and
 * <out> filled, 0 when none is due, -1 on a database error. */
int quota_outbox_next_due(sqlite3 *db, int64_t now, struct quota_outbox_item *out);
/* When the next entry is due (INT64_MAX: the outbox is empty). */
int64_t quota_outbox_next_time(sqlite3 *db);
/* <id> was delivered: removed. */
int quota_outbox_delivered(sqlite3 *db, const char *id);
/* Sending <id> failed at <now>: retried later (returns 0), or given up
 * and removed when its 24 hours have passed (returns 1); -1 on error. */
int quota_outbox_failed(sqlite3 *db, const char *id, int64_t now);
/* The wait before attempt <attempts> + 1 after <attempts> failures. */
int64_t quota_outbox_backoff(int attempts);
void quota_outbox_item_free(struct quota_outbox_item *it);

#endif
