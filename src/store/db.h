#ifndef SLUICE_DB_H
#define SLUICE_DB_H
/* The embedded store: one SQLite file, <data_dir>/sluice.db, in WAL mode,
 * with a schema versioned by PRAGMA user_version and migrated forward on
 * open. Gateways write through one background thread each (store/writer.h);
 * the CLI opens its own connection. WAL lets both work at once, and a
 * commit survives kill -9 of either. */

#include <sqlite3.h>

/* Opens (creating <data_dir> with mode 0700 and the file when missing) and
 * migrates the database. NULL with *<err> (malloc'd, one line naming the
 * path) on failure. */
sqlite3 *db_open(const char *data_dir, char **err);
/* mkdir -p <dir> with mode 0700 for what it creates (the store holds key
 * hashes and usage: not for other users; the keyring snapshot and buffered
 * request bodies live there too). Existing directories keep their mode. 0 or -1 with errno. */
int db_mkdirs(const char *dir);
void db_close(sqlite3 *db);

/* The schema version db_open migrates to. */
int db_schema_version(void);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK; 0 or -1 (the error is sqlite3_errmsg). */
int db_begin(sqlite3 *db);
int db_commit(sqlite3 *db);
void db_rollback(sqlite3 *db);

#endif
