#ifndef SLUICE_QUOTA_PERSIST_H
#define SLUICE_QUOTA_PERSIST_H
/* The embedded store's quota write-behind (SPEC 6.2): the counts live in
 * memory (quota/store.h) and a thread of their own writes the changed ones
 * to SQLite every QUOTA_PERSIST_INTERVAL_MS, in one transaction, so kill -9
 * loses at most that much; quota_persist_stop writes the rest (SIGTERM
 * loses nothing); quota_persist_start loads what an earlier run wrote (a
 * restart resumes). The same thread drops identities whose periods have
 * all ended, from memory and from the table. */

#include <stdint.h>

#include "quota/store.h"

#define QUOTA_PERSIST_INTERVAL_MS 250
#define QUOTA_SWEEP_INTERVAL_MS 60000

struct gateway;
struct quota_persist;

/* Opens <data_dir>'s database with a connection of its own, creates the
 * table if missing, loads it into <st> and starts the thread; <gw> gives
 * the calendar for the sweep. NULL with *<err> (malloc'd). */
struct quota_persist *quota_persist_start(struct gateway *gw, struct quota_store *st,
                                          const char *data_dir, char **err);
/* Stops the thread after a last write, and closes the connection. */
void quota_persist_stop(struct quota_persist *p);

/* One write-behind pass (the thread's; exposed for tests): 0, or -1 when
 * the write failed (the rows stay dirty for the next pass). */
int quota_persist_flush(struct quota_persist *p);

#endif
