#ifndef SLUICE_USAGE_STORE_H
#define SLUICE_USAGE_STORE_H
/* Where usage rows are kept (SPEC 6.4): SQLite (store.backend memory: the
 * gateway's database file under data_dir) or Redis (store.backend redis:
 * the fleet's totals). Each backend keeps three tables of rows, hourly,
 * daily and monthly, and every write adds a row's counters to all three
 * (upserts that add), so a day is the exact sum of its hours and a month
 * of its days, latency buckets included. Calls are synchronous: the usage
 * thread and the CLI call them, never a worker's loop. One thread at a
 * time per store. Backends: store_sqlite.c, store_redis.c (ops tables,
 * usage/store_backend.h). */

#include <stdbool.h>
#include <stdint.h>

#include "store/redis.h"
#include "usage/calendar.h"
#include "usage/table.h"

struct usage_store_opts {
    bool redis;
    const char *data_dir;     /* SQLite: db_open's directory */
    struct rds_config conn;   /* Redis: where */
    const char *redis_prefix; /* Redis: of every key ("sluice:") */
};

/* How long rows are kept, in seconds after their period ends (monthly rows
 * are kept). */
struct usage_retention {
    int64_t hourly_s, daily_s;
};

struct usage_store;

/* Opens the store <o> describes (SQLite: the file and its tables). A Redis
 * store opens while Redis is away and connects when first used. NULL with
 * *<err> (malloc'd). */
struct usage_store *usage_store_open(const struct usage_store_opts *o, char **err);
void usage_store_close(struct usage_store *s);

enum usage_write_result {
    USAGE_WRITE_OK,
    USAGE_WRITE_RETRY, /* nothing was written: write the rows again later */
    USAGE_WRITE_LOST,  /* the store may or may not have applied them (Redis went away
                        * after the transaction was sent): not retried, so never
                        * counted twice */
};
/* Adds the rows of <t> (hourly rows) to the hourly, daily and monthly
 * tables, all or nothing; rows expire per <r> where the store expires
 * them itself (Redis). *<err> (malloc'd) unless OK. */
enum usage_write_result usage_store_write(struct usage_store *s, const struct usage_table *t,
                                          const struct usage_retention *r, char **err);

/* Deletes rows past their retention <r> at <now> (SQLite; Redis expires
 * its own). Rows deleted, or -1 with *<err>. */
int64_t usage_store_prune(struct usage_store *s, int64_t now, const struct usage_retention *r,
                          char **err);

/* What a report asks for: the rows of granularity <gran> whose period
 * overlaps [<from>, <to>), optionally of one identity, key and route. */
struct usage_query {
    enum usage_gran gran;
    int64_t from, to;
    const char *identity, *key_id, *route; /* NULL: any */
};

/* Receives each row of a query (valid during the call); nonzero stops the
 * query. */
typedef int (*usage_row_fn)(void *arg, const struct usage_row *row);

/* Calls <fn> for each row of <q>. 0 when done, 1 when <fn> stopped it, -1
 * with *<err> on a store error. */
int usage_store_query(struct usage_store *s, const struct usage_query *q, usage_row_fn fn,
                      void *arg, char **err);

/* The bound of a Redis query's periods (hourly rows over 400 days are 9600). */
#define USAGE_QUERY_MAX_PERIODS 20000

#endif
