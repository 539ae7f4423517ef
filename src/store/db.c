/* The embedded SQLite store: opening, pragmas and migrations (see db.h).
 *
 * Migrations are an append-only array: step i takes the schema from version
 * i to i + 1, and PRAGMA user_version records where a file is. A step is
 * never edited once released; a later issue (quotas, usage, bans, audit)
 * adds its tables as a new step. All missing steps run in one IMMEDIATE
 * transaction that re-reads user_version first, so two processes opening a
 * new file at once migrate it once (the second waits on the lock, then
 * finds nothing to do), and a crash half-way leaves the old version. */

#include "store/db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "util/mem.h"

#define DB_FILE "sluice.db"
/* A writer holds the lock for a few ms at most; 5 s covers a slow disk's
 * fsync and a checkpoint without failing a CLI command. */
#define DB_BUSY_TIMEOUT_MS 5000
#define DB_PATH_MAX 4096

/* Version 1 (issue 5, SPEC 5.1/5.2): API keys, their secrets' hashes and
 * refresh tokens. Times are ms since the epoch, 0 for "none"; quotas NULL
 * for "none". A key's secrets are rows of key_secrets, so rotation with a
 * grace period is one more row, not a second column. */
static const char db_v1[] =
    "CREATE TABLE keys ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  tier TEXT NOT NULL,"
    "  scopes TEXT NOT NULL DEFAULT ''," /* space-separated */
    "  limits TEXT NOT NULL DEFAULT ''," /* limit strings joined with ', ' */
    "  prefix TEXT NOT NULL,"            /* of the newest secret */
    "  quota_monthly INTEGER,"
    "  quota_daily INTEGER,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  last_used_ms INTEGER NOT NULL DEFAULT 0,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0,"
    "  rotated_until_ms INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked'))"
    ");"
    "CREATE INDEX keys_by_created ON keys (created_ms);"
    "CREATE TABLE key_secrets ("
    "  hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    "  key_id TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,"
    "  prefix TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  valid_until_ms INTEGER NOT NULL DEFAULT 0" /* 0: as long as the key */
    ") WITHOUT ROWID;"
    "CREATE INDEX key_secrets_by_key ON key_secrets (key_id);"
    "CREATE TABLE refresh_tokens ("
    "  hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    "  family TEXT NOT NULL,"
    "  key_id TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  spent_ms INTEGER NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);"
    "CREATE INDEX refresh_tokens_by_key ON refresh_tokens (key_id);"
    "CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_ms);";

/* Version 2 (issue 13, SPEC 7.2): a key's signing secret, sealed under
 * store.encryption_key (util/seal.h); '' for a key that cannot sign. */
static const char db_v2[] = "ALTER TABLE keys ADD COLUMN signing TEXT NOT NULL DEFAULT '';";

/* Version 3 (issue 13, SPEC 7.1): a key's allow_ips, the networks it may be
 * used from, "10.0.0.0/8,2001:db8::/32" (auth/keyips.h); '' for anywhere. */
static const char db_v3[] = "ALTER TABLE keys ADD COLUMN allow_ips TEXT NOT NULL DEFAULT '';";

static const char *const db_migrations[] = {
    db_v1,
    db_v2,
    db_v3,
};

#define DB_VERSION ((int)(sizeof(db_migrations) / sizeof(db_migrations[0])))

int db_schema_version(void)
{
    return DB_VERSION;
}

static char *db_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *db_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sl_vstrdupf(fmt, ap);
    va_end(ap);
    return s;
}

/* See db.h. */
int db_mkdirs(const char *dir)
{
    char path[DB_PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -1;
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static int db_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : -1;
}

/* Applies the steps <path>'s file lacks; 0, or -1 with *<err>. */
static int db_migrate(sqlite3 *db, const char *path, char **err)
{
    int version = 0;
    if (db_user_version(db, &version) < 0)
        goto fail;
    if (version == DB_VERSION)
        return 0;
    if (db_begin(db) < 0)
        goto fail;
    if (db_user_version(db, &version) < 0)
        goto fail_tx;
    if (version > DB_VERSION) {
        db_rollback(db);
        *err = db_msg("%s: schema version %d is newer than this sluice knows (%d); "
                      "upgrade sluice",
                      path, version, DB_VERSION);
        return -1;
    }
    for (int v = version; v < DB_VERSION; v++)
        if (sqlite3_exec(db, db_migrations[v], NULL, NULL, NULL) != SQLITE_OK)
            goto fail_tx;
    char set[64];
    snprintf(set, sizeof(set), "PRAGMA user_version = %d", DB_VERSION);
    if (sqlite3_exec(db, set, NULL, NULL, NULL) != SQLITE_OK)
        goto fail_tx;
    if (db_commit(db) < 0)
        goto fail_tx;
    return 0;
fail_tx:
    *err =
        db_msg("%s: migrating the schema to version %d: %s", path, DB_VERSION, sqlite3_errmsg(db));
    db_rollback(db);
    return -1;
fail:
    *err = db_msg("%s: reading the schema version: %s", path, sqlite3_errmsg(db));
    return -1;
}

/* Sets the connection's pragmas; 0 or -1 (sqlite3_errmsg). */
static int db_configure(sqlite3 *db)
{
    /* The busy timeout first: switching to WAL needs a lock another
     * process may hold. */
    if (sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    /* The answer is the mode in force: a file system without shared memory
     * support would leave "delete", and the gateway's concurrent readers
     * need WAL. */
    bool wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return -1;
    /* FULL: a commit is fsynced with the WAL, so a key's creation or
     * revocation survives power loss, not only kill -9. Writes are rare
     * (keys, batched usage), so the fsync per commit costs nothing that
     * matters. */
    return sqlite3_exec(db,
                        "PRAGMA synchronous = FULL;"
                        "PRAGMA foreign_keys = ON;",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

sqlite3 *db_open(const char *data_dir, char **err)
{
    *err = NULL;
    if (db_mkdirs(data_dir) < 0) {
        *err = db_msg("%s: cannot create the data directory: %s", data_dir, strerror(errno));
        return NULL;
    }
    char path[DB_PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, DB_FILE) >= sizeof(path)) {
        *err = db_msg("%s: path too long", data_dir);
        return NULL;
    }
    struct stat st;
    bool existed = stat(path, &st) == 0;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        *err = db_msg("%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    /* A new file is for us alone, like its directory (which may have
     * existed with a wider mode); SQLite gives the -wal and -shm files the
     * mode of the database file. */
    if (!existed && chmod(path, 0600) < 0) {
        *err = db_msg("%s: chmod: %s", path, strerror(errno));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db, 1);
    if (db_configure(db) < 0) {
        *err = db_msg("%s: cannot configure the database (WAL mode): %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    if (db_migrate(db, path, err) < 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

void db_close(sqlite3 *db)
{
    /* sqlite3_close (not _v2): a statement left unfinalized is a bug, and
     * SQLITE_BUSY here says so instead of leaking the connection quietly. */
    if (db && sqlite3_close(db) != SQLITE_OK)
        fprintf(stderr, "sluice: closing the database: %s\n", sqlite3_errmsg(db));
}

int db_begin(sqlite3 *db)
{
    return sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int db_commit(sqlite3 *db)
{
    return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

void db_rollback(sqlite3 *db)
{
    /* Harmless when SQLite already rolled back (some errors do). */
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}
