/* Calendar periods of quotas (src/quota/period.c): days and months in UTC
 * and in zones with DST changes, a day of 23 and of 25 hours, a midnight
 * the clocks skip (America/Santiago), a half-hour zone, the month anchored
 * on a reset day across a year end, leap days; TZif files refused when
 * malformed, zone names refused when they could leave the zone directory.
 * The expected instants were computed with Python's zoneinfo from the same
 * tzdata. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quota/period.h"

static struct quota_zone *zone(const char *name)
{
    char *err = NULL;
    struct quota_zone *z = quota_zone_load(name, &err);
    if (!z)
        fail_msg("%s", err);
    return z;
}

static void expect_period(const char *name, enum quota_span span, int reset_day, int64_t t,
                          int64_t start, int64_t end)
{
    struct quota_zone *z = zone(name);
    struct quota_period p = quota_period_at(z, span, reset_day, t);
    if (p.start != start || p.end != end)
        fail_msg("%s span %d reset %d at %lld: [%lld, %lld), want [%lld, %lld)", name, (int)span,
                 reset_day, (long long)t, (long long)p.start, (long long)p.end, (long long)start,
                 (long long)end);
    /* the period holds its instant; its start is in it and its end is not */
    assert_true(p.start <= t && t < p.end);
    struct quota_period at_start = quota_period_at(z, span, reset_day, p.start);
    assert_int_equal(at_start.start, p.start);
    struct quota_period at_end = quota_period_at(z, span, reset_day, p.end);
    assert_int_equal(at_end.start, p.end);
    assert_int_equal(quota_period_at(z, span, reset_day, p.end - 1).start, p.start);
    quota_zone_free(z);
}

static void test_utc(void **state)
{
    /* 2026-12-05T08:59:00Z */
    expect_period("UTC", QUOTA_DAILY, 1, 1796461140, 1796428800, 1796515200);
    expect_period("UTC", QUOTA_MONTHLY, 1, 1796461140, 1796083200, 1798761600);
    /* reset on the 15th: from 2026-11-15 to 2026-12-15 */
    expect_period("UTC", QUOTA_MONTHLY, 15, 1796461140, 1794700800, 1797292800);
    /* 2026-12-20: the period that crosses the year end, to 2027-01-15 */
    expect_period("UTC", QUOTA_MONTHLY, 15, 1797292800 + 5 * 86400, 1797292800, 1799971200);
    /* 2028-02-29T12:00Z: a leap day, and its month */
    expect_period("UTC", QUOTA_DAILY, 1, 1835438400, 1835395200, 1835481600);
    expect_period("UTC", QUOTA_MONTHLY, 1, 1835438400, 1832976000, 1835481600);
    /* before 1970 */
    expect_period("UTC", QUOTA_DAILY, 1, -1, -86400, 0);
}

static void test_dst_days(void **state)
{
    /* Paris, 2026-03-29: 23 hours; its month starts 2026-02-28T23:00Z */
    expect_period("Europe/Paris", QUOTA_DAILY, 1, 1774785600, 1774738800, 1774821600);
    expect_period("Europe/Paris", QUOTA_MONTHLY, 1, 1774785600, 1772319600, 1774994400);
    expect_period("Europe/Paris", QUOTA_MONTHLY, 15, 1774785600, 1773529200, 1776204000);
    /* New York, 2026-11-01: 25 hours */
    expect_period("America/New_York", QUOTA_DAILY, 1, 1793534400, 1793505600, 1793595600);
    expect_period("America/New_York", QUOTA_MONTHLY, 15, 1793534400, 1792036800, 1794718800);
    /* Santiago skips midnight on 2026-09-06: the day starts at 01:00 local */
    expect_period("America/Santiago", QUOTA_DAILY, 1, 1788696000, 1788667200, 1788750000);
    expect_period("America/Santiago", QUOTA_MONTHLY, 15, 1788696000, 1786766400, 1789441200);
    /* and repeats an hour on 2026-04-05 */
    expect_period("America/Santiago", QUOTA_DAILY, 1, 1775390400, 1775361600, 1775448000);
    /* half-hour offsets, and Lord Howe's half-hour DST */
    expect_period("Asia/Kolkata", QUOTA_DAILY, 1, 1769889600, 1769884200, 1769970600);
    expect_period("Asia/Kolkata", QUOTA_MONTHLY, 1, 1769889600, 1769884200, 1772303400);
    expect_period("Australia/Lord_Howe", QUOTA_DAILY, 1, 1791115200, 1791034200, 1791118800);
    expect_period("Australia/Lord_Howe", QUOTA_MONTHLY, 1, 1791115200, 1790775000, 1793451600);
}

static void test_offsets(void **state)
{
    struct quota_zone *z = zone("Europe/Paris");
    assert_int_equal(quota_zone_offset(z, 1796461140), 3600);   /* December: CET */
    assert_int_equal(quota_zone_offset(z, 1774785600), 7200);   /* after 2026-03-29 01:00Z */
    assert_int_equal(quota_zone_offset(z, 1774745999), 3600);   /* one second before */
    assert_int_equal(quota_zone_offset(z, 1774746000), 7200);   /* the transition */
    assert_int_equal(quota_zone_offset(z, -5000000000LL), 561); /* LMT, before any transition */
    quota_zone_free(z);
}

static void expect_refused(const char *name, const char *why)
{
    char *err = NULL;
    assert_null(quota_zone_load(name, &err));
    assert_non_null(err);
    if (!strstr(err, why))
        fail_msg("%s: %s (want \"%s\")", name, err, why);
    free(err);
}

static void test_bad_names(void **state)
{
    expect_refused("../../etc/passwd", "not a time zone name");
    expect_refused("/etc/passwd", "not a time zone name");
    expect_refused("Europe/../../etc/passwd", "not a time zone name");
    expect_refused("Europe/Paris ", "not a time zone name");
    expect_refused("", "not a time zone name");
    expect_refused("Mars/Olympus_Mons", "unknown time zone");
    expect_refused("Europe", "Europe"); /* a directory: not readable as a file */
}

static void expect_parse_refused(const unsigned char *data, size_t len)
{
    char *err = NULL;
    assert_null(quota_zone_parse(data, len, &err));
    assert_non_null(err);
    free(err);
}

static void test_bad_files(void **state)
{
    expect_parse_refused((const unsigned char *)"", 0);
    expect_parse_refused((const unsigned char *)"TZif2", 5);
    unsigned char buf[4096];
    FILE *f = fopen("/usr/share/zoneinfo/Europe/Paris", "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    char *err = NULL;
    struct quota_zone *z = quota_zone_parse(buf, n, &err);
    assert_non_null(z);
    quota_zone_free(z);
    /* every truncation of a good file is refused or read without reading past it */
    for (size_t cut = 0; cut < n; cut += 7) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        err = NULL;
        z = quota_zone_parse(copy, cut, &err);
        quota_zone_free(z);
        free(err);
        free(copy);
    }
    /* a time count that does not fit the file */
    unsigned char bad[64] = "TZif";
    bad[35] = 0xff; /* timecnt */
    bad[39] = 1;    /* typecnt */
    expect_parse_refused(bad, sizeof(bad));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc),       cmocka_unit_test(test_dst_days),
        cmocka_unit_test(test_offsets),   cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
