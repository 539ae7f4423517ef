/* Usage rows in SQLite (usage/store.h): the store of store.backend memory,
 * in the gateway's database (store/db.h), tables usage_hour, usage_day and
 * usage_month of the same shape:
 *
 *   period INTEGER  -- start of the hour, day or month (UTC), Unix seconds
 *   identity TEXT, route TEXT, key_id TEXT ('' none)
 *   requests, status_1xx .. status_5xx, rejected_limit, rejected_quota,
 *   rejected_ban, bytes_in, bytes_out, units, cost_nano, lat_0 .. lat_33
 *   PRIMARY KEY (period, identity, route)
 *
 * The tables are created if missing when the store opens (as the quota
 * module's outbox is), not by a migration step: a module's tables are its
 * own. A write is one transaction of upserts that add, three per row; the
 * statements are prepared once per connection. */
#include <string.h>

#include <sqlite3.h>

#include "store/db.h"
#include "usage/store_backend.h"
#include "util/buf.h"
#include "util/mem.h"

static const char *const usage_sql_tables[USAGE_GRAN_N] = {"usage_hour", "usage_day",
                                                           "usage_month"};

struct usage_sqlite {
    struct usage_store base;
    sqlite3 *db;
    sqlite3_stmt *upsert[USAGE_GRAN_N];
};

/* The counters' column list: ", requests, status_1xx, ...". */
static void usage_sql_columns(struct buf *b, const char *lead)
{
    for (int f = 0; f < USAGE_F_N; f++)
        buf_appendf(b, "%s%s", lead, usage_field_column(f));
}

static int usage_sql_create(sqlite3 *db, char **err)
{
    struct buf b = {0};
    for (int g = 0; g < USAGE_GRAN_N; g++) {
        buf_appendf(
            &b,
            "CREATE TABLE IF NOT EXISTS %s (period INTEGER NOT NULL, identity TEXT NOT NULL, "
            "route TEXT NOT NULL, key_id TEXT NOT NULL DEFAULT ''",
            usage_sql_tables[g]);
        for (int f = 0; f < USAGE_F_N; f++)
            buf_appendf(&b, ", %s INTEGER NOT NULL DEFAULT 0", usage_field_column(f));
        /* Reports by key (the usual question) read an index, not the range. */
        buf_appendf(
            &b,
            ", PRIMARY KEY (period, identity, route)) WITHOUT ROWID;"
            "CREATE INDEX IF NOT EXISTS %s_by_key ON %s (key_id, period) WHERE key_id != '';",
            usage_sql_tables[g], usage_sql_tables[g]);
    }
    buf_append(&b, "", 1);
    char *msg = NULL;
    int rc = sqlite3_exec(db, b.data, NULL, NULL, &msg);
    buf_release(&b);
    if (rc != SQLITE_OK) {
        usage_set_err(err, "creating the usage tables: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* INSERT ... ON CONFLICT DO UPDATE adding every counter: ?1 period, ?2
 * identity, ?3 route, ?4 key_id, then the counters. A row that had no key
 * takes the first one written. */
static sqlite3_stmt *usage_sql_upsert(sqlite3 *db, enum usage_gran g)
{
    struct buf b = {0};
    buf_appendf(&b, "INSERT INTO %s (period, identity, route, key_id", usage_sql_tables[g]);
    usage_sql_columns(&b, ", ");
    buf_append_str(&b, ") VALUES (?, ?, ?, ?");
    for (int f = 0; f < USAGE_F_N; f++)
        buf_append_str(&b, ", ?");
    buf_append_str(&b, ") ON CONFLICT (period, identity, route) DO UPDATE SET "
                       "key_id = CASE WHEN key_id = '' THEN excluded.key_id ELSE key_id END");
    for (int f = 0; f < USAGE_F_N; f++)
        buf_appendf(&b, ", %s = %s + excluded.%s", usage_field_column(f), usage_field_column(f),
                    usage_field_column(f));
    buf_append(&b, "", 1);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, b.data, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        st = NULL;
    buf_release(&b);
    return st;
}

static void usage_sqlite_close(struct usage_store *s)
{
    struct usage_sqlite *u = (struct usage_sqlite *)s;
    for (int g = 0; g < USAGE_GRAN_N; g++)
        sqlite3_finalize(u->upsert[g]);
    db_close(u->db);
    free(u);
}

static struct usage_store *usage_sqlite_open(const struct usage_store_opts *o, char **err)
{
    sqlite3 *db = db_open(o->data_dir, err);
    if (!db)
        return NULL;
    struct usage_sqlite *u = sl_calloc(1, sizeof(*u));
    u->db = db;
    /* This connection writes four times a second: NORMAL syncs the WAL at
     * checkpoints rather than at every commit. A commit still survives
     * kill -9 of the gateway (the WAL is in the OS's hands); only a power
     * loss can take the last commits, i.e. the last seconds of usage. The
     * key store's connection keeps FULL. */
    if (sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        usage_sql_create(db, err) < 0) {
        if (!*err)
            usage_set_err(err, "usage: %s", sqlite3_errmsg(db));
        usage_sqlite_close(&u->base);
        return NULL;
    }
    for (int g = 0; g < USAGE_GRAN_N; g++) {
        u->upsert[g] = usage_sql_upsert(db, g);
        if (!u->upsert[g]) {
            usage_set_err(err, "usage: preparing the upsert: %s", sqlite3_errmsg(db));
            usage_sqlite_close(&u->base);
            return NULL;
        }
    }
    return &u->base;
}

static int usage_sqlite_upsert_row(sqlite3_stmt *st, int64_t period, const struct usage_row *r)
{
    sqlite3_reset(st);
    int rc = sqlite3_bind_int64(st, 1, period);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, r->identity, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, r->route, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, r->key_id, -1, SQLITE_STATIC);
    for (int f = 0; f < USAGE_F_N && rc == SQLITE_OK; f++)
        rc = sqlite3_bind_int64(st, 5 + f, (int64_t)r->c.v[f]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* the strings were SQLITE_STATIC */
    return rc == SQLITE_OK ? 0 : -1;
}

static enum usage_write_result usage_sqlite_write(struct usage_store *s,
                                                  const struct usage_table *t,
                                                  const struct usage_retention *r, char **err)
{
    struct usage_sqlite *u = (struct usage_sqlite *)s;
    if (db_begin(u->db) < 0) {
        usage_set_err(err, "usage: BEGIN: %s", sqlite3_errmsg(u->db));
        return USAGE_WRITE_RETRY;
    }
    for (const struct usage_row *row = usage_table_first(t); row; row = row->next) {
        for (int g = 0; g < USAGE_GRAN_N; g++) {
            if (usage_sqlite_upsert_row(u->upsert[g], usage_period_start(g, row->period), row) <
                0) {
                usage_set_err(err, "usage: writing a row: %s", sqlite3_errmsg(u->db));
                db_rollback(u->db);
                return USAGE_WRITE_RETRY;
            }
        }
    }
    if (db_commit(u->db) < 0) {
        usage_set_err(err, "usage: COMMIT: %s", sqlite3_errmsg(u->db));
        db_rollback(u->db);
        return USAGE_WRITE_RETRY;
    }
    return USAGE_WRITE_OK;
}

static int64_t usage_sqlite_prune(struct usage_store *s, int64_t now,
                                  const struct usage_retention *r, char **err)
{
    struct usage_sqlite *u = (struct usage_sqlite *)s;
    /* A row goes once its period ended more than the retention ago. */
    int64_t cutoff[2] = {now - r->hourly_s - 3600, now - r->daily_s - 86400};
    int64_t deleted = 0;
    for (int g = 0; g < 2; g++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE period <= ?", usage_sql_tables[g]);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(u->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 1, cutoff[g]);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            usage_set_err(err, "usage: pruning %s: %s", usage_sql_tables[g], sqlite3_errmsg(u->db));
            return -1;
        }
        deleted += sqlite3_changes(u->db);
    }
    return deleted;
}

static int usage_sqlite_query(struct usage_store *s, const struct usage_query *q, usage_row_fn fn,
                              void *arg, char **err)
{
    struct usage_sqlite *u = (struct usage_sqlite *)s;
    struct buf b = {0};
    buf_append_str(&b, "SELECT period, identity, route, key_id");
    usage_sql_columns(&b, ", ");
    buf_appendf(&b, " FROM %s WHERE period >= ?1 AND period < ?2", usage_sql_tables[q->gran]);
    if (q->identity)
        buf_append_str(&b, " AND identity = ?3");
    if (q->key_id)
        buf_append_str(&b, " AND key_id = ?4");
    if (q->route)
        buf_append_str(&b, " AND route = ?5");
    buf_append_str(&b, " ORDER BY period, identity, route");
    buf_append(&b, "", 1);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(u->db, b.data, -1, &st, NULL);
    buf_release(&b);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, usage_period_start(q->gran, q->from));
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, q->to);
    if (rc == SQLITE_OK && q->identity)
        rc = sqlite3_bind_text(st, 3, q->identity, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && q->key_id)
        rc = sqlite3_bind_text(st, 4, q->key_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && q->route)
        rc = sqlite3_bind_text(st, 5, q->route, -1, SQLITE_STATIC);
    int out = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct usage_row row = {
            .period = sqlite3_column_int64(st, 0),
            .identity = (const char *)sqlite3_column_text(st, 1),
            .route = (const char *)sqlite3_column_text(st, 2),
            .key_id = (const char *)sqlite3_column_text(st, 3),
        };
        for (int f = 0; f < USAGE_F_N; f++)
            row.c.v[f] = (uint64_t)sqlite3_column_int64(st, 4 + f);
        if (fn(arg, &row) != 0) {
            out = 1;
            rc = SQLITE_DONE;
            break;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        usage_set_err(err, "usage: reading %s: %s", usage_sql_tables[q->gran],
                      sqlite3_errmsg(u->db));
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

const struct usage_store_ops usage_sqlite_ops = {
    .open = usage_sqlite_open,
    .close = usage_sqlite_close,
    .write = usage_sqlite_write,
    .prune = usage_sqlite_prune,
    .query = usage_sqlite_query,
};
