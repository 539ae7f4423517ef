#ifndef SLUICE_CIVIL_H
#define SLUICE_CIVIL_H
/* Proleptic Gregorian dates as days since 1970-01-01, and back (Howard
 * Hinnant's days_from_civil and civil_from_days,
 * http://howardhinnant.github.io/date_algorithms.html): exact for every
 * date, no tables, no libc time zone state. Quota periods and usage
 * periods both count in them. */

#include <stdint.h>

int64_t civil_days_from(int64_t y, int m, int d);
void civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* a / b rounded toward minus infinity (b > 0): instants before 1970 still
 * fall in their own day. */
static inline int64_t civil_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

#endif
