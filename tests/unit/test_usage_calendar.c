/* Periods and report times of usage (src/usage/calendar.c): hours, days
 * and months in UTC across a leap day and a year end; times as Unix
 * seconds, dates (a to= date covers its whole day), RFC 3339 with offsets
 * and fractions; malformed and impossible ones refused; and formatting
 * back. The instants were computed with Python's calendar.timegm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "usage/calendar.h"

#define MAY1_13H INT64_C(1714568400) /* 2024-05-01T13:00:00Z */
#define FEB29 INT64_C(1709164800)    /* 2024-02-29T00:00:00Z */
#define MAR1 INT64_C(1709251200)     /* 2024-03-01T00:00:00Z */
#define JAN1_2025 INT64_C(1735689600)

static int64_t parse(const char *s, bool end)
{
    int64_t t = -42;
    if (usage_time_parse(s, end, &t) != 0)
        fail_msg("'%s' did not parse", s);
    return t;
}

static void assert_bad(const char *s)
{
    int64_t t = -42;
    if (usage_time_parse(s, false, &t) == 0)
        fail_msg("'%s' parsed as %lld", s, (long long)t);
    assert_int_equal(t, -42);
}

static void test_periods(void **state)
{
    int64_t t = MAY1_13H + 1234;
    assert_int_equal(usage_period_start(USAGE_HOUR, t), MAY1_13H);
    assert_int_equal(usage_period_next(USAGE_HOUR, MAY1_13H), MAY1_13H + 3600);
    assert_int_equal(usage_period_start(USAGE_DAY, t), MAY1_13H - 13 * 3600);
    assert_int_equal(usage_period_start(USAGE_MONTH, t), MAY1_13H - 13 * 3600);
    /* February of a leap year has 29 days; March starts after them. */
    assert_int_equal(usage_period_start(USAGE_MONTH, FEB29 + 86399), FEB29 - 28 * 86400);
    assert_int_equal(usage_period_next(USAGE_MONTH, FEB29 - 28 * 86400), MAR1);
    assert_int_equal(usage_period_next(USAGE_DAY, FEB29), MAR1);
    /* December rolls into the next year. */
    assert_int_equal(usage_period_start(USAGE_MONTH, JAN1_2025 - 1), JAN1_2025 - 31 * 86400);
    assert_int_equal(usage_period_next(USAGE_MONTH, JAN1_2025 - 31 * 86400), JAN1_2025);
    assert_int_equal(usage_period_start(USAGE_DAY, 0), 0);
    assert_int_equal(usage_period_start(USAGE_HOUR, -1), -3600); /* floor, not truncation */
    assert_int_equal(usage_gran_parse("hour"), USAGE_HOUR);
    assert_int_equal(usage_gran_parse("month"), USAGE_MONTH);
    assert_int_equal(usage_gran_parse("week"), -1);
    assert_string_equal(usage_gran_name(USAGE_DAY), "day");
    for (int64_t d = -1000; d < 200000; d += 37) {
        int64_t y;
        int m, dd;
        civil_from_days(d, &y, &m, &dd);
        assert_int_equal(civil_days_from(y, m, dd), d);
    }
}

static void test_parse(void **state)
{
    assert_int_equal(parse("1714568400", false), MAY1_13H);
    assert_int_equal(parse("0", false), 0);
    assert_int_equal(parse("2024-05-01T13:00:00Z", false), MAY1_13H);
    assert_int_equal(parse("2024-05-01t13:00:00z", false), MAY1_13H);
    assert_int_equal(parse("2024-05-01 13:00:00Z", false), MAY1_13H);
    assert_int_equal(parse("2024-05-01T13:00:00.999Z", false), MAY1_13H);
    assert_int_equal(parse("2024-05-01T15:00:00+02:00", false), MAY1_13H);
    assert_int_equal(parse("2024-05-01T07:30:00-05:30", false), MAY1_13H);
    /* A '+' in a URL query decodes to a space. */
    assert_int_equal(parse("2024-05-01T15:00:00 02:00", false), MAY1_13H);
    /* A date: its midnight; as the end of a range, the midnight after. */
    assert_int_equal(parse("2024-05-01", false), MAY1_13H - 13 * 3600);
    assert_int_equal(parse("2024-05-01", true), MAY1_13H + 11 * 3600);
    assert_int_equal(parse("2024-02-29", false), FEB29);
    assert_int_equal(parse("2024-02-29", true), MAR1);
    /* An end that is an instant stays an instant. */
    assert_int_equal(parse("2024-05-01T13:00:00Z", true), MAY1_13H);
    assert_int_equal(parse("9999-12-31T23:59:59Z", false), INT64_C(253402300799));
    assert_int_equal(parse("2024-05-01T23:59:60Z", false), MAY1_13H + 11 * 3600); /* leap s */

    const char *bad[] = {
        "",
        "yesterday",
        "2024-5-1",
        "2024-05-01T",
        "2024-05-01T13:00Z",
        "2024-05-01T13:00:00",
        "2024-05-01T24:00:00Z",
        "2024-05-01T13:60:00Z",
        "2024-05-01T13:00:00+2:00",
        "2024-05-01T13:00:00+24:00",
        "2024-05-01T13:00:00.Z",
        "2024-05-01T13:00:00Zjunk",
        "2024-13-01",
        "2024-00-10",
        "2023-02-29",
        "2024-04-31",
        "1969-12-31",
        "1970-01-01T00:00:00+01:00", /* before the epoch */
        "-5",
        "1714568400.5",
        "1234567890123",
        "999999999999", /* past year 9999 */
        "2024-05-01x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad(bad[i]);
}

static void test_format(void **state)
{
    char out[USAGE_TIME_MAX];
    usage_time_format(MAY1_13H, out);
    assert_string_equal(out, "2024-05-01T13:00:00Z");
    usage_time_format(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    usage_time_format(JAN1_2025 - 1, out);
    assert_string_equal(out, "2024-12-31T23:59:59Z");
    usage_time_format(INT64_C(253402300799), out);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    /* The end of the last day a time may name: written whole, not cut to
     * "10000-01-01T00:00:00" (a report's "to" for to=9999-12-31). */
    assert_int_equal(parse("9999-12-31", true), INT64_C(253402300800));
    usage_time_format(INT64_C(253402300800), out);
    assert_string_equal(out, "10000-01-01T00:00:00Z");
    /* What is written parses back to itself. */
    for (int64_t t = 0; t < INT64_C(4000000000); t += 7777777) {
        usage_time_format(t, out);
        assert_int_equal(parse(out, false), t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
