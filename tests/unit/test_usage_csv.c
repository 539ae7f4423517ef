/* The CSV writer of usage reports (src/usage/csv.c), RFC 4180: plain
 * fields as they are, fields with a comma, a double quote, CR or LF
 * quoted with inner quotes doubled, CRLF after each record; and a report's
 * header and row as the CSV export writes them (cost as an exact decimal,
 * empty latencies for a row without any). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "usage/csv.h"
#include "usage/report.h"

static char *record(const char *const *fields, int n)
{
    struct buf b = {0};
    for (int i = 0; i < n; i++)
        usage_csv_str(&b, fields[i], i == 0);
    usage_csv_end(&b);
    buf_append(&b, "", 1);
    return b.data;
}

static void test_quoting(void **state)
{
    const char *plain[] = {"a", "", "key:abc", "/v1/", "sub:a b", "x'y"};
    char *s = record(plain, 6);
    assert_string_equal(s, "a,,key:abc,/v1/,sub:a b,x'y\r\n");
    free(s);
    const char *tricky[] = {"a,b", "say \"hi\"", "cr\rhere", "lf\nhere", "\"", ",", "crlf\r\n"};
    s = record(tricky, 7);
    assert_string_equal(s, "\"a,b\",\"say \"\"hi\"\"\",\"cr\rhere\",\"lf\nhere\",\"\"\"\",\",\","
                           "\"crlf\r\n\"\r\n");
    free(s);
    /* Bytes, not C strings: a NUL inside a field is written as it is. */
    struct buf b = {0};
    usage_csv_field(&b, "a\0b", 3, true);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 3);
    buf_release(&b);
}

static void test_cost(void **state)
{
    const struct {
        uint64_t nano;
        const char *text;
    } cases[] = {
        {0, "0"},
        {1, "0.000000001"},
        {1500000, "0.0015"},
        {1000000000, "1"},
        {12500000000, "12.5"},
        {UINT64_C(18446744073709551615), "18446744073.709551615"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = {0};
        usage_format_cost(&b, cases[i].nano);
        buf_append(&b, "", 1);
        assert_string_equal(b.data, cases[i].text);
        buf_release(&b);
    }
}

static void test_report_row(void **state)
{
    struct buf b = {0};
    usage_csv_header(&b);
    struct usage_row row = {
        .period = 1714568400, .identity = "sub:Doe, \"J\"", .route = "/v1/", .key_id = ""};
    row.c.v[USAGE_F_REQUESTS] = 3;
    row.c.v[USAGE_F_S2XX] = 2;
    row.c.v[USAGE_F_S4XX] = 1;
    row.c.v[USAGE_F_REFUSED_LIMIT] = 1;
    row.c.v[USAGE_F_BYTES_OUT] = 99;
    row.c.v[USAGE_F_UNITS] = 2;
    row.c.v[USAGE_F_COST_NANO] = 5000000;
    usage_csv_row(&b, &row);
    row.c.v[USAGE_F_LAT0 + 2] = 2; /* two samples in [1.414, 2) ms */
    row.identity = "ip:10.0.0.1";
    usage_csv_row(&b, &row);
    buf_append(&b, "", 1);
    assert_string_equal(
        b.data,
        "period_start,identity,key_id,route,requests,status_1xx,status_2xx,status_3xx,"
        "status_4xx,status_5xx,rejected_limit,rejected_quota,rejected_ban,bytes_in,bytes_out,"
        "latency_p50_ms,latency_p95_ms,latency_p99_ms,units,cost\r\n"
        "2024-05-01T13:00:00Z,\"sub:Doe, \"\"J\"\"\",,/v1/,3,0,2,0,1,0,1,0,0,0,99,,,,2,0.005\r\n"
        "2024-05-01T13:00:00Z,ip:10.0.0.1,,/v1/,3,0,2,0,1,0,1,0,0,0,99,1.707,1.971,1.994,2,"
        "0.005\r\n");
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_report_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
