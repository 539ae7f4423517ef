/* Bans in SQLite (abuse/store.h): table abuse_bans in <data_dir>/sluice.db,
 * created when missing (the module's own table; the core schema does not
 * know it). One gateway writes a data_dir, so a record read is the record
 * written: put does not compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse/store.h"
#include "store/db.h"
#include "util/mem.h"
#include "util/str.h"

struct abuse_sqlite {
    struct abuse_store base;
    sqlite3 *db;
    uint64_t ver; /* only this gateway writes */
};

static const char abuse_sql_create[] =
    "CREATE TABLE IF NOT EXISTS abuse_bans ("
    " identity TEXT PRIMARY KEY, reason TEXT NOT NULL DEFAULT '', source TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, until_ms INTEGER NOT NULL, count INTEGER NOT NULL)";

static struct abuse_sqlite *abuse_sql_of(struct abuse_store *s)
{
    return (struct abuse_sqlite *)s;
}

static int abuse_sql_fail(struct abuse_sqlite *q, sqlite3_stmt *st, char *why, size_t cap)
{
    snprintf(why, cap, "ban store: %s", sqlite3_errmsg(q->db));
    sqlite3_finalize(st);
    return -1;
}

/* Row <st> (identity, reason, source, created_ms, until_ms, count) into
 * <b>; false when it is not a ban. */
static bool abuse_sql_row(sqlite3_stmt *st, struct abuse_ban *b)
{
    memset(b, 0, sizeof *b);
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const char *reason = (const char *)sqlite3_column_text(st, 1);
    const char *src = (const char *)sqlite3_column_text(st, 2);
    if (!id || !src || strlen(id) >= sizeof b->identity || !abuse_source_parse(src, &b->source))
        return false;
    str_copy(b->identity, sizeof b->identity, id);
    str_copy(b->reason, sizeof b->reason, reason ? reason : "");
    b->created_ms = sqlite3_column_int64(st, 3);
    b->until_ms = sqlite3_column_int64(st, 4);
    b->count = sqlite3_column_int64(st, 5);
    return true;
}

#define ABUSE_SQL_COLS "identity, reason, source, created_ms, until_ms, count"

static int abuse_sql_load(struct abuse_store *s, struct abuse_ban **out, int *n, char *why,
                          size_t cap)
{
    struct abuse_sqlite *q = abuse_sql_of(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT " ABUSE_SQL_COLS " FROM abuse_bans", -1, &st, NULL) !=
        SQLITE_OK)
        return abuse_sql_fail(q, st, why, cap);
    int len = 0, alloc = 16;
    struct abuse_ban *v = sl_malloc((size_t)alloc * sizeof *v);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == alloc) {
            alloc *= 2;
            v = sl_realloc(v, (size_t)alloc * sizeof *v);
        }
        if (abuse_sql_row(st, &v[len]))
            len++;
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return abuse_sql_fail(q, st, why, cap);
    }
    sqlite3_finalize(st);
    *out = v;
    *n = len;
    return 0;
}

static int abuse_sql_get(struct abuse_store *s, const char *identity, struct abuse_ban *b,
                         char *why, size_t cap)
{
    struct abuse_sqlite *q = abuse_sql_of(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT " ABUSE_SQL_COLS " FROM abuse_bans WHERE identity = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return abuse_sql_fail(q, st, why, cap);
    sqlite3_bind_text(st, 1, identity, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return abuse_sql_fail(q, st, why, cap);
    int found = rc == SQLITE_ROW && abuse_sql_row(st, b);
    sqlite3_finalize(st);
    return found;
}

static int abuse_sql_put(struct abuse_store *s, const struct abuse_ban *b,
                         const struct abuse_ban *expected, char *why, size_t cap)
{
    (void)expected;
    struct abuse_sqlite *q = abuse_sql_of(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "INSERT OR REPLACE INTO abuse_bans (" ABUSE_SQL_COLS
                           ") VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return abuse_sql_fail(q, st, why, cap);
    sqlite3_bind_text(st, 1, b->identity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, abuse_source_name(b->source), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, b->created_ms);
    sqlite3_bind_int64(st, 5, b->until_ms);
    sqlite3_bind_int64(st, 6, b->count);
    if (sqlite3_step(st) != SQLITE_DONE)
        return abuse_sql_fail(q, st, why, cap);
    sqlite3_finalize(st);
    q->ver++;
    return 1;
}

static int abuse_sql_del(struct abuse_store *s, const struct abuse_ban *expected, char *why,
                         size_t cap)
{
    struct abuse_sqlite *q = abuse_sql_of(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "DELETE FROM abuse_bans WHERE identity = ? AND until_ms = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return abuse_sql_fail(q, st, why, cap);
    sqlite3_bind_text(st, 1, expected->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, expected->until_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return abuse_sql_fail(q, st, why, cap);
    sqlite3_finalize(st);
    q->ver++;
    return sqlite3_changes(q->db) > 0;
}

static int abuse_sql_version(struct abuse_store *s, uint64_t *v)
{
    *v = abuse_sql_of(s)->ver;
    return 0;
}

static void abuse_sql_close(struct abuse_store *s)
{
    struct abuse_sqlite *q = abuse_sql_of(s);
    if (q->db)
        db_close(q->db);
    free(q);
}

static const struct abuse_store_ops abuse_sqlite_ops = {
    abuse_sql_load, abuse_sql_get, abuse_sql_put, abuse_sql_del, abuse_sql_version, abuse_sql_close,
};

struct abuse_store *abuse_store_sqlite_open(const struct config *c, char **err)
{
    struct abuse_sqlite *q = sl_calloc(1, sizeof *q);
    q->base.ops = &abuse_sqlite_ops;
    q->db = db_open(c->store.data_dir, err);
    if (!q->db) {
        free(q);
        return NULL;
    }
    char *msg = NULL;
    if (sqlite3_exec(q->db, abuse_sql_create, NULL, NULL, &msg) != SQLITE_OK) {
        if (asprintf(err, "abuse: %s", msg ? msg : "cannot create the table") < 0)
            *err = NULL;
        sqlite3_free(msg);
        abuse_sql_close(&q->base);
        return NULL;
    }
    return &q->base;
}
