#ifndef SLUICE_USAGE_TABLE_H
#define SLUICE_USAGE_TABLE_H
/* Usage rows in memory (SPEC 6.4): one row per period x identity x route,
 * holding its counters. A worker records each exchange into a table of its
 * own (no lock: one thread), hands the whole table to the usage thread a
 * few times a second and starts a new one; the usage thread merges the
 * tables it receives into one and writes that to the store; reports
 * gather what a store returns in one. Tables are bounded: past <max_rows>
 * rows, a new identity is counted in the row of identity "other" for its
 * period and route (so totals stay exact; only the detail is lost).
 *
 * Rows and their strings live in the table's arena: a table is freed in
 * one go. Open addressing over SipHash with a per-process random key, so
 * clients choosing identities cannot make probes long. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usage/hist.h"
#include "util/siphash.h"

/* The counters of a row, in the order of the stores' columns and fields
 * (usage_field_names). All sum when rows merge. */
enum usage_field {
    USAGE_F_REQUESTS,
    USAGE_F_S1XX, /* responses by status class; a request the client left before any */
    USAGE_F_S2XX, /* response is a 499 (4xx), as nginx logs it */
    USAGE_F_S3XX,
    USAGE_F_S4XX,
    USAGE_F_S5XX,
    USAGE_F_REFUSED_LIMIT, /* refused by a rate limit (429) */
    USAGE_F_REFUSED_QUOTA, /* by a quota (429) */
    USAGE_F_REFUSED_BAN,   /* by a ban (403) */
    USAGE_F_BYTES_IN,      /* request body bytes received */
    USAGE_F_BYTES_OUT,     /* response body bytes sent */
    USAGE_F_UNITS,         /* the route's cost, for requests not refused */
    USAGE_F_COST_NANO,     /* units x price_per_1k / 1000, in billionths */
    USAGE_F_LAT0,          /* USAGE_LAT_N latency buckets (usage/hist.h) */
    USAGE_F_N = USAGE_F_LAT0 + USAGE_LAT_N
};

struct usage_counts {
    uint64_t v[USAGE_F_N];
};

/* The name of counter <f> as a SQLite column ("requests", "lat_0") and as
 * a Redis hash field (short: "n", "h0"; fields are stored per hash). */
const char *usage_field_column(enum usage_field f);
const char *usage_field_redis(enum usage_field f);
/* The counter whose Redis field is <name>, or -1. */
int usage_field_from_redis(const char *name, size_t len);

void usage_counts_add(struct usage_counts *into, const struct usage_counts *c);

/* The identity rows are folded into past a table's bound. */
#define USAGE_OTHER "other"

struct usage_row {
    struct usage_row *next; /* in the order rows were added */
    uint64_t hash;
    int64_t period; /* the start of its period, Unix seconds */
    const char *identity, *route;
    const char *key_id; /* "" when none */
    struct usage_counts c;
};

struct usage_table;

/* A table of at most <max_rows> rows (folding beyond), hashing with <key>
 * (kept by the caller, outliving the table). */
struct usage_table *usage_table_new(size_t max_rows, const struct siphash_key *key);
void usage_table_free(struct usage_table *t);

/* The row of <period>, <identity>, <route>: found, or added (strings
 * copied) with <key_id> (NULL: none; a row found without one takes it). A
 * new row past the bound goes to identity "other" instead, and *<folded>
 * is set (it is left alone otherwise). */
struct usage_row *usage_table_row(struct usage_table *t, int64_t period, const char *identity,
                                  const char *route, const char *key_id, bool *folded);
/* Adds every row of <from> into <into>; returns how many requests went to
 * identity "other" because <into> was full. */
uint64_t usage_table_merge(struct usage_table *into, const struct usage_table *from);

size_t usage_table_size(const struct usage_table *t);
/* Memory the table holds (rows, strings, index), in bytes. */
size_t usage_table_bytes(const struct usage_table *t);
/* The rows in the order they were added (NULL: none). */
struct usage_row *usage_table_first(const struct usage_table *t);
/* The rows sorted by period, identity, route: an array of usage_table_size()
 * pointers (malloc'd; the caller frees it, not the rows). */
struct usage_row **usage_table_sorted(const struct usage_table *t);

/* One exchange, as the finish hook sees it. */
struct usage_event {
    int64_t now;          /* wall clock, Unix seconds */
    const char *identity; /* "key:...", "sub:...", "ip:..." */
    const char *key_id;   /* NULL: none */
    const char *route;
    int status;     /* the response's; 499: the client left first */
    int refused_by; /* enum sl_refusal */
    uint64_t bytes_in, bytes_out;
    int64_t latency_us;
    uint32_t cost;       /* the route's cost */
    int64_t price_micro; /* the tier's price_per_1k in millionths */
};

/* Counts <ev> in its hour's row of <t>; true when it was folded into
 * identity "other". */
bool usage_record(struct usage_table *t, const struct usage_event *ev);

#endif
