/* The embedded store's quota write-behind (see persist.h). */
#include "quota/persist.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "conf/conf.h"
#include "pipeline/gateway.h"
#include "quota/conf.h"
#include "store/db.h"
#include "util/clock.h"
#include "util/mem.h"

struct quota_persist {
    struct gateway *gw;
    struct quota_store *store;
    sqlite3 *db;
    sqlite3_stmt *upsert, *prune;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    int64_t last_sweep_ms;
};

static const char quota_persist_schema[] =
    "CREATE TABLE IF NOT EXISTS quota_usage ("
    " identity TEXT PRIMARY KEY,"
    " day_start INTEGER NOT NULL, day_used INTEGER NOT NULL,"
    " month_start INTEGER NOT NULL, month_used INTEGER NOT NULL)";

static char *quota_persist_error(sqlite3 *db, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "quota store: %s: %s", what, sqlite3_errmsg(db));
    return sl_strdup(msg);
}

static int quota_persist_load(struct quota_persist *p, char **err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT identity, day_start, day_used, month_start, month_used "
                           "FROM quota_usage",
                           -1, &st, NULL) != SQLITE_OK) {
        *err = quota_persist_error(p->db, "reading the counts");
        return -1;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        struct quota_usage u = {
            .day_start = sqlite3_column_int64(st, 1),
            .day_used = sqlite3_column_int64(st, 2),
            .month_start = sqlite3_column_int64(st, 3),
            .month_used = sqlite3_column_int64(st, 4),
        };
        if (id)
            quota_store_put(p->store, id, &u);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        *err = quota_persist_error(p->db, "reading the counts");
        return -1;
    }
    return 0;
}

static int quota_persist_write(struct quota_persist *p, const struct quota_row *rows, size_t n)
{
    if (db_begin(p->db) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s = p->upsert;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, rows[i].identity, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, rows[i].usage.day_start);
        sqlite3_bind_int64(s, 3, rows[i].usage.day_used);
        sqlite3_bind_int64(s, 4, rows[i].usage.month_start);
        sqlite3_bind_int64(s, 5, rows[i].usage.month_used);
        if (sqlite3_step(s) != SQLITE_DONE) {
            sqlite3_reset(s);
            db_rollback(p->db);
            return -1;
        }
    }
    sqlite3_reset(p->upsert);
    if (db_commit(p->db) < 0) {
        db_rollback(p->db);
        return -1;
    }
    return 0;
}

int quota_persist_flush(struct quota_persist *p)
{
    size_t n;
    struct quota_row *rows = quota_store_take_dirty(p->store, &n);
    if (!rows)
        return 0;
    int rc = quota_persist_write(p, rows, n);
    if (rc < 0) {
        fprintf(stderr, "sluice: quota store: writing %zu counts failed (%s); retrying\n", n,
                sqlite3_errmsg(p->db));
        quota_store_remark(p->store, rows, n);
    }
    free(rows);
    return rc;
}

/* Drops identities whose day and month have both ended: their counts are
 * zero now, in memory and in the table. */
static void quota_persist_sweep(struct quota_persist *p)
{
    struct gateway *gw = p->gw;
    pthread_mutex_lock(&gw->lock);
    struct config *cfg = gw->cfg;
    cfg_ref(cfg);
    pthread_mutex_unlock(&gw->lock);
    const struct quota_conf *qc = quota_conf(cfg);
    int64_t now = clock_wall_us() / 1000000;
    struct quota_period day = quota_period_at(qc->zone, QUOTA_DAILY, qc->monthly_reset_day, now);
    struct quota_period month =
        quota_period_at(qc->zone, QUOTA_MONTHLY, qc->monthly_reset_day, now);
    cfg_unref(cfg);
    quota_store_sweep(p->store, day.start, month.start);
    sqlite3_reset(p->prune);
    sqlite3_bind_int64(p->prune, 1, day.start);
    sqlite3_bind_int64(p->prune, 2, month.start);
    sqlite3_step(p->prune);
    sqlite3_reset(p->prune);
}

static void *quota_persist_main(void *arg)
{
    struct quota_persist *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += QUOTA_PERSIST_INTERVAL_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        int rc = 0;
        while (!p->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&p->wake, &p->lock, &until);
        pthread_mutex_unlock(&p->lock);
        quota_persist_flush(p);
        int64_t now_ms = clock_mono_us() / 1000;
        if (now_ms - p->last_sweep_ms >= QUOTA_SWEEP_INTERVAL_MS) {
            p->last_sweep_ms = now_ms;
            quota_persist_sweep(p);
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void quota_persist_close(struct quota_persist *p)
{
    sqlite3_finalize(p->upsert);
    sqlite3_finalize(p->prune);
    db_close(p->db);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int quota_persist_prepare(struct quota_persist *p, char **err)
{
    if (sqlite3_exec(p->db, quota_persist_schema, NULL, NULL, NULL) != SQLITE_OK) {
        *err = quota_persist_error(p->db, "creating the table");
        return -1;
    }
    if (sqlite3_prepare_v2(p->db,
                           "INSERT INTO quota_usage (identity, day_start, day_used, month_start, "
                           "month_used) VALUES (?, ?, ?, ?, ?) ON CONFLICT(identity) DO UPDATE "
                           "SET day_start = excluded.day_start, day_used = excluded.day_used, "
                           "month_start = excluded.month_start, month_used = excluded.month_used",
                           -1, &p->upsert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(p->db, "DELETE FROM quota_usage WHERE day_start < ? AND month_start < ?",
                           -1, &p->prune, NULL) != SQLITE_OK) {
        *err = quota_persist_error(p->db, "preparing");
        return -1;
    }
    return 0;
}

struct quota_persist *quota_persist_start(struct gateway *gw, struct quota_store *st,
                                          const char *data_dir, char **err)
{
    struct quota_persist *p = sl_calloc(1, sizeof(*p));
    p->gw = gw;
    p->store = st;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->last_sweep_ms = clock_mono_us() / 1000;
    p->db = db_open(data_dir, err);
    if (!p->db || quota_persist_prepare(p, err) < 0 || quota_persist_load(p, err) < 0) {
        quota_persist_close(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, quota_persist_main, p) != 0) {
        *err = sl_strdup("quota store: cannot start its thread");
        quota_persist_close(p);
        return NULL;
    }
    return p;
}

void quota_persist_stop(struct quota_persist *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    quota_persist_flush(p);
    quota_persist_close(p);
}
