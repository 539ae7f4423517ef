#ifndef SLUICE_USAGE_CALENDAR_H
#define SLUICE_USAGE_CALENDAR_H
/* Hours, days and months of usage (SPEC 6.4), in UTC; and the times a
 * report accepts. Pure functions over Unix seconds: callers pass the
 * time in, tests inject it. */

#include <stdbool.h>
#include <stdint.h>

#include "util/civil.h"

enum usage_gran { USAGE_HOUR, USAGE_DAY, USAGE_MONTH, USAGE_GRAN_N };

/* "hour", "day", "month". */
const char *usage_gran_name(enum usage_gran g);
/* The granularity named <s>, or -1. */
int usage_gran_parse(const char *s);

/* The start of the period of granularity <g> that holds <t>, and the start
 * of the period after the one starting at <start>. */
int64_t usage_period_start(enum usage_gran g, int64_t t);
int64_t usage_period_next(enum usage_gran g, int64_t start);

/* The times a report takes (from=, to=, --from, --to), each read as UTC
 * unless it says otherwise:
 *   - Unix seconds: "1714521600" (1 to 12 digits);
 *   - a date, "2024-05-01": its midnight, or, when <end> (a to=), the
 *     midnight after it, so that to=2024-05-31 covers the whole of May 31;
 *   - an RFC 3339 date-time, "2024-05-01T13:00:00Z", with "t" or a space
 *     for "T", optional fractions (dropped), "Z", "z" or an offset
 *     "+02:00" / "-05:30" (a space in place of "+": a "+" in a URL query
 *     reads as a space unless written %2B).
 * Years 1970 to 9999. 0 and *<out>, or -1. */
int usage_time_parse(const char *s, bool end, int64_t *out);

/* "2024-05-01T13:00:00Z" (20 characters and a NUL); 21 for the end of
 * 9999-12-31, "10000-01-01T00:00:00Z", which to=9999-12-31 reads as. */
#define USAGE_TIME_MAX 22
void usage_time_format(int64_t t, char out[USAGE_TIME_MAX]);

#endif
