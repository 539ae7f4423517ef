#ifndef SLUICE_QUOTA_PERIOD_H
#define SLUICE_QUOTA_PERIOD_H
/* Calendar periods of quotas (SPEC 6.1): the day and the month that hold
 * an instant, in a time zone (`quotas.timezone`), the month starting on
 * `quotas.monthly_reset_day` (1..28).
 *
 * A zone is read once from its TZif file (RFC 8536) under TZDIR or
 * /usr/share/zoneinfo, so that asking for an offset needs no process-wide
 * state (localtime_r reads the TZ environment: one zone per process, and
 * not thread-safe to change). Offsets after the file's last transition
 * are the last transition's; Debian's files list transitions up to 2037.
 *
 * Times are UTC seconds since the epoch; a period is [start, end). A day
 * starts at local midnight, or at the first instant after it when the
 * clocks skip midnight (America/Santiago in September); when midnight
 * happens twice, at the first. */

#include <stddef.h>
#include <stdint.h>

struct quota_zone;

/* The zone <name> ("UTC", "Europe/Paris"), or NULL and a message in *<err>
 * (malloc'd): a name that is not a relative path of letters, digits and
 * "/_+-", a zone with no file, or a file that is not TZif. "UTC" needs no
 * file. */
struct quota_zone *quota_zone_load(const char *name, char **err);
/* The zone of the TZif bytes <data>/<len> (no file involved). */
struct quota_zone *quota_zone_parse(const unsigned char *data, size_t len, char **err);
void quota_zone_free(struct quota_zone *z);

/* Seconds east of UTC in <z> at instant <t>. */
int32_t quota_zone_offset(const struct quota_zone *z, int64_t t);

enum quota_span { QUOTA_DAILY, QUOTA_MONTHLY };

struct quota_period {
    int64_t start, end;
};

/* The <span> holding <t> in <z>; months start on day <reset_day> (1..28). */
struct quota_period quota_period_at(const struct quota_zone *z, enum quota_span span, int reset_day,
                                    int64_t t);

#endif
