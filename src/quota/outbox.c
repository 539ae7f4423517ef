/* The alert outbox in SQLite (quota/outbox.h). */
#include "quota/outbox.h"

#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

int quota_outbox_init(sqlite3 *db, char **err)
{
    char *msg = NULL;
    if (sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS alert_outbox ("
                     "  id TEXT PRIMARY KEY,"
                     "  body TEXT NOT NULL,"
                     "  created_s INTEGER NOT NULL,"
                     "  next_s INTEGER NOT NULL,"
                     "  attempts INTEGER NOT NULL DEFAULT 0"
                     ") WITHOUT ROWID;"
                     "CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_s);",
                     NULL, NULL, &msg) != SQLITE_OK) {
        *err = sl_strdup(msg ? msg : "cannot create the alert outbox");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Runs <sql> with its ? bound to <id> then the int64 values <v> (in order);
 * the number of rows changed, or -1. */
static int quota_outbox_exec(sqlite3 *db, const char *sql, const char *id, const int64_t *v, int n)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int at = 1;
    if (id)
        sqlite3_bind_text(st, at++, id, -1, SQLITE_STATIC);
    for (int i = 0; i < n; i++)
        sqlite3_bind_int64(st, at++, v[i]);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -1;
}

int quota_outbox_add(sqlite3 *db, const char *id, const char *body, int64_t now)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO alert_outbox (id, body, created_s, next_s) "
                           "VALUES (?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -1;
}

int quota_outbox_next_due(sqlite3 *db, int64_t now, struct quota_outbox_item *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, body, attempts, created_s FROM alert_outbox "
                           "WHERE next_s <= ? ORDER BY next_s, created_s LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        out->id = sl_strdup((const char *)sqlite3_column_text(st, 0));
        out->body = sl_strdup((const char *)sqlite3_column_text(st, 1));
        out->attempts = sqlite3_column_int(st, 2);
        out->created = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    return found;
}

int64_t quota_outbox_next_time(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t t = INT64_MAX;
    if (sqlite3_prepare_v2(db, "SELECT min(next_s) FROM alert_outbox", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        t = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return t;
}

int quota_outbox_delivered(sqlite3 *db, const char *id)
{
    return quota_outbox_exec(db, "DELETE FROM alert_outbox WHERE id = ?", id, NULL, 0) < 0 ? -1 : 0;
}

int64_t quota_outbox_backoff(int attempts)
{
    if (attempts < 1)
        attempts = 1;
    if (attempts > 12) /* 2^12 s is past the cap already */
        return QUOTA_OUTBOX_MAX_DELAY_S;
    int64_t d = INT64_C(1) << (attempts - 1);
    return d < QUOTA_OUTBOX_MAX_DELAY_S ? d : QUOTA_OUTBOX_MAX_DELAY_S;
}

int quota_outbox_failed(sqlite3 *db, const char *id, int64_t now)
{
    /* Given up once 24 hours have passed since the alert was raised. */
    int64_t give_up[1] = {now - QUOTA_OUTBOX_GIVE_UP_S};
    int gone = quota_outbox_exec(db, "DELETE FROM alert_outbox WHERE id = ? AND created_s <= ?", id,
                                 give_up, 1);
    if (gone != 0)
        return gone < 0 ? -1 : 1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT attempts FROM alert_outbox WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int attempts = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) + 1 : -1;
    sqlite3_finalize(st);
    if (attempts < 0)
        return 0; /* gone meanwhile (delivered by another thread): nothing to retry */
    int64_t v[2] = {attempts, now + quota_outbox_backoff(attempts)};
    return quota_outbox_exec(db, "UPDATE alert_outbox SET attempts = ?2, next_s = ?3 WHERE id = ?1",
                             id, v, 2) < 0
               ? -1
               : 0;
}

void quota_outbox_item_free(struct quota_outbox_item *it)
{
    free(it->id);
    free(it->body);
    it->id = it->body = NULL;
}
