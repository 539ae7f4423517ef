#ifndef SLUICE_USAGE_REPORT_H
#define SLUICE_USAGE_REPORT_H
/* Usage reports (SPEC 6.4, 8): what `GET /usage`, `GET /usage/top` and
 * `sluice usage` ask, read from the store and rendered as JSON or CSV,
 * the same text for the API and the CLI. The parameters are checked here
 * once, with messages that say what is accepted (a 400, or exit 2).
 *
 *   /usage      key, identity, route, from, to, granularity (hour|day|month,
 *               default day), format (json|csv)
 *   /usage/top  by (requests|rejections|cost, default requests), period
 *               (day|month, default day), n (1..1000, default 10), at (a
 *               time in the period wanted, default now)
 *
 * Rows are those whose period overlaps [from, to); by default to is the
 * end of the current period and from 24 hours, 30 days or 12 months
 * before it (the current period included). */

#include <stdbool.h>
#include <stdint.h>

#include "usage/store.h"
#include "util/buf.h"

/* A report holds at most this many rows: past it the caller is asked to
 * narrow it (a month of hourly rows of 10,000 keys is millions). */
#define USAGE_REPORT_MAX_ROWS 100000
#define USAGE_TOP_MAX 1000
/* Identities /usage/top ranks in one period; more fold into "other". */
#define USAGE_TOP_MAX_IDENTITIES 1000000
/* The longest value of a parameter (identities are at most 95 bytes). */
#define USAGE_PARAM_MAX 512

enum usage_top_by { USAGE_BY_REQUESTS, USAGE_BY_REJECTIONS, USAGE_BY_COST };

struct usage_report {
    bool top; /* /usage/top */
    /* /usage */
    enum usage_gran gran;
    int64_t from, to;                /* -1: the default */
    char *identity, *key_id, *route; /* malloc'd; NULL: any */
    /* Only rows of these keys (GET /developer/usage: the caller's keys);
     * malloc'd, each and the array. <key_set> false: any key. */
    bool key_set;
    char **keys;
    int n_keys;
    bool csv;
    /* /usage/top */
    enum usage_top_by by;
    enum usage_gran period;
    int n;
    int64_t at; /* -1: now */
    /* The parameters set so far (bit per parameter): a repeated one is an
     * error rather than a guess at which was meant. */
    unsigned seen;
};

/* A report with the defaults; <top> for /usage/top. */
void usage_report_init(struct usage_report *r, bool top);
void usage_report_release(struct usage_report *r);

/* Sets parameter <name> to <value>. 0, or -1 with *<why> (malloc'd) saying
 * what is accepted. */
int usage_report_set(struct usage_report *r, const char *name, const char *value, char **why);
/* Every parameter of the URL query <query>/<len> (percent-decoded, '+' a
 * space). 0, or -1 with *<why>. */
int usage_report_parse_query(struct usage_report *r, const char *query, size_t len, char **why);
/* Restricts <r> to rows of key <id> among others (copied). A set may be
 * empty (key_set true, no keys): then no row is of it. */
void usage_report_add_key(struct usage_report *r, const char *id);
/* Fills the defaults that depend on <now> and checks the range. 0, or -1
 * with *<why>. */
int usage_report_resolve(struct usage_report *r, int64_t now, char **why);

/* Runs <r> (resolved) against <s> and renders it into <out>: 200, 400 (too
 * many rows; *<err> says how to narrow it) or 503 (the store failed,
 * *<err>). <content_type> is set for a 200. */
int usage_report_run(struct usage_store *s, const struct usage_report *r, struct buf *out,
                     const char **content_type, char **err);

/* Renderers, for the report and the tests. */
/* The cost of <nano> billionths as a decimal number without trailing
 * zeros ("0", "0.0015", "12.5"). */
void usage_format_cost(struct buf *b, uint64_t nano);
/* "requests": N, "status": {...}, ... "cost": X of <c> (no braces). */
void usage_json_counts(struct buf *b, const struct usage_counts *c);
/* The CSV header and one row. */
void usage_csv_header(struct buf *b);
void usage_csv_row(struct buf *b, const struct usage_row *row);

#endif
