/* Usage rows from the request to the report (src/usage/table.c, store_*.c,
 * report.c), with the clock injected: exchanges recorded into their hour's
 * row, a table past max_rows folding new identities into "other" with
 * totals still exact, tables merged; rows written to SQLite, where a day is
 * the sum of its hours and a month of its days (latency buckets included),
 * writing again adds, a row keeps the first key id, rows survive a reopen,
 * and pruning drops hourly and daily rows exactly when their retention
 * after the period's end has passed. Reports: parameters and their
 * messages, defaults from an injected now, JSON totals and /usage/top
 * order. Then the same rows written to a real redis-server, whose reports
 * must be byte for byte those of SQLite (and whose keys expire per the
 * retention, monthly ones never). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jansson.h>

#include "pipeline/exchange.h"
#include "support.h"
#include "usage/conf.h"
#include "usage/report.h"
#include "usage/store.h"

/* Far enough ahead that Redis's EXPIREAT of these rows is in the future. */
#define H0 INT64_C(2211660000)    /* 2040-01-31T22:00:00Z */
#define FEB1 INT64_C(2211667200)  /* 2040-02-01T00:00:00Z */
#define JAN31 INT64_C(2211580800) /* 2040-01-31T00:00:00Z */
#define JAN1 INT64_C(2208988800)  /* 2040-01-01T00:00:00Z */
#define PRO_PRICE 2500000         /* 2.5 per 1000 units, in millionths */

static struct siphash_key hkey = {1, 2};

static struct usage_event ev(int64_t now, const char *identity, const char *key_id,
                             const char *route, int status)
{
    return (struct usage_event){.now = now,
                                .identity = identity,
                                .key_id = key_id,
                                .route = route,
                                .status = status,
                                .cost = 1};
}

/* The traffic of these tests: key a on /v1/ over three hours (the last one
 * in February), an anonymous client on /v2/. */
static struct usage_table *traffic(void)
{
    struct usage_table *t = usage_table_new(1000, &hkey);
    struct usage_event e = ev(H0 + 10, "key:a", "a", "/v1/", 200);
    e.bytes_out = 100;
    e.latency_us = 1500;
    e.cost = 2;
    e.price_micro = PRO_PRICE;
    assert_false(usage_record(t, &e));
    e = ev(H0 + 1800, "key:a", "a", "/v1/", 429);
    e.refused_by = SL_REFUSED_LIMIT;
    e.bytes_out = 50;
    e.latency_us = 200;
    e.cost = 2;
    e.price_micro = PRO_PRICE;
    usage_record(t, &e); /* refused: no units, no cost */
    e = ev(H0 + 3605, "key:a", "a", "/v1/", 200);
    e.bytes_in = 10;
    e.latency_us = 100000;
    e.cost = 2;
    e.price_micro = PRO_PRICE;
    usage_record(t, &e);
    e = ev(FEB1 + 60, "key:a", "a", "/v1/", 503);
    e.latency_us = 30000;
    usage_record(t, &e);
    e = ev(H0 + 20, "ip:192.0.2.1", NULL, "/v2/", 204);
    e.latency_us = 700;
    usage_record(t, &e);
    return t;
}

static struct usage_row *find(struct usage_table *t, int64_t period, const char *identity,
                              const char *route)
{
    for (struct usage_row *r = usage_table_first(t); r; r = r->next)
        if (r->period == period && strcmp(r->identity, identity) == 0 &&
            strcmp(r->route, route) == 0)
            return r;
    fail_msg("no row %lld %s %s", (long long)period, identity, route);
    return NULL;
}

static void test_record(void **state)
{
    struct usage_table *t = traffic();
    assert_int_equal(usage_table_size(t), 4);
    struct usage_row *r = find(t, H0, "key:a", "/v1/");
    assert_string_equal(r->key_id, "a");
    uint64_t *v = r->c.v;
    assert_int_equal(v[USAGE_F_REQUESTS], 2);
    assert_int_equal(v[USAGE_F_S2XX], 1);
    assert_int_equal(v[USAGE_F_S4XX], 1);
    assert_int_equal(v[USAGE_F_REFUSED_LIMIT], 1);
    assert_int_equal(v[USAGE_F_BYTES_OUT], 150);
    assert_int_equal(v[USAGE_F_UNITS], 2);
    assert_int_equal(v[USAGE_F_COST_NANO], 2 * PRO_PRICE); /* 2 units x 0.0025 = 0.005 */
    assert_int_equal(v[USAGE_F_LAT0 + 0], 1);              /* 0.2 ms */
    assert_int_equal(v[USAGE_F_LAT0 + 2], 1);              /* 1.5 ms */
    r = find(t, H0 + 3600, "key:a", "/v1/");
    assert_int_equal(r->c.v[USAGE_F_BYTES_IN], 10);
    assert_int_equal(r->c.v[USAGE_F_LAT0 + 14], 1);
    r = find(t, FEB1, "key:a", "/v1/");
    assert_int_equal(r->c.v[USAGE_F_S5XX], 1);
    r = find(t, H0, "ip:192.0.2.1", "/v2/");
    assert_string_equal(r->key_id, "");
    assert_int_equal(r->c.v[USAGE_F_COST_NANO], 0);
    /* A key id seen later fills a row that had none. */
    struct usage_event e = ev(H0 + 30, "ip:192.0.2.1", "k2", "/v2/", 200);
    usage_record(t, &e);
    assert_string_equal(r->key_id, "k2");
    usage_table_free(t);
}

static uint64_t total_requests(struct usage_table *t)
{
    uint64_t n = 0;
    for (struct usage_row *r = usage_table_first(t); r; r = r->next)
        n += r->c.v[USAGE_F_REQUESTS];
    return n;
}

static void test_fold_and_merge(void **state)
{
    struct usage_table *t = usage_table_new(3, &hkey);
    char id[32];
    int folded = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "ip:10.0.0.%d", i % 5);
        struct usage_event e = ev(H0 + i, id, NULL, i % 2 ? "/a" : "/b", 200);
        folded += usage_record(t, &e);
    }
    /* Rows for (.0,/b) (.1,/a) (.2,/b); then .3 and .4 fold, per route,
     * and the first five's second round: .0 /a and .2 /a fold, .1 /b folds. */
    assert_int_equal(total_requests(t), 10);
    struct usage_row *oa = find(t, H0, USAGE_OTHER, "/a");
    struct usage_row *ob = find(t, H0, USAGE_OTHER, "/b");
    assert_int_equal(oa->c.v[USAGE_F_REQUESTS] + ob->c.v[USAGE_F_REQUESTS], (uint64_t)folded);
    assert_int_equal(folded, 7);
    assert_int_equal(usage_table_size(t), 5); /* 3 + the two "other" rows */

    /* Merging adds rows and counters; a merge past its own bound folds. */
    struct usage_table *into = usage_table_new(4, &hkey);
    struct usage_table *tr = traffic();
    assert_int_equal(usage_table_merge(into, tr), 0);
    assert_int_equal(usage_table_merge(into, tr), 0);
    assert_int_equal(find(into, H0, "key:a", "/v1/")->c.v[USAGE_F_REQUESTS], 4);
    /* The three rows of t that are not "other" yet: one request each. */
    assert_int_equal(usage_table_merge(into, t), 3);
    assert_int_equal(total_requests(into), 2 * total_requests(tr) + 10);
    assert_true(usage_table_bytes(into) > usage_table_size(into) * sizeof(struct usage_row));
    /* Sorted by period, identity, route. */
    struct usage_row **s = usage_table_sorted(into);
    for (size_t i = 1; i < usage_table_size(into); i++)
        assert_true(
            s[i - 1]->period < s[i]->period ||
            (s[i - 1]->period == s[i]->period && strcmp(s[i - 1]->identity, s[i]->identity) <= 0));
    free(s);
    usage_table_free(into);
    usage_table_free(tr);
    usage_table_free(t);
}

static void test_price(void **state)
{
    int64_t m = -1;
    assert_int_equal(usage_parse_price("0", &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(usage_parse_price("2.5", &m), 0);
    assert_int_equal(m, 2500000);
    assert_int_equal(usage_parse_price("0.000001", &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(usage_parse_price("1000", &m), 0);
    assert_int_equal(m, 1000000000);
    const char *bad[] = {"",   "-1",  "1000.000001", "0.0000001", "1.",
                         ".5", "1e3", "abc",         "5 ",        "99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(usage_parse_price(bad[i], &m), -1);
}

/* ---- the SQLite store ----------------------------------------------------------------- */

static const struct usage_retention retention = {7 * 86400, 400 * 86400};

static struct usage_store *open_sqlite(const char *dir)
{
    struct usage_store_opts o = {.data_dir = dir};
    char *err = NULL;
    struct usage_store *s = usage_store_open(&o, &err);
    if (!s)
        fail_msg("%s", err);
    return s;
}

static int collect(void *arg, const struct usage_row *row)
{
    struct usage_table *t = arg;
    bool folded = false;
    usage_counts_add(
        &usage_table_row(t, row->period, row->identity, row->route, row->key_id, &folded)->c,
        &row->c);
    return 0;
}

static struct usage_table *query(struct usage_store *s, enum usage_gran g, int64_t from, int64_t to,
                                 const char *key_id)
{
    struct usage_table *t = usage_table_new(1000, &hkey);
    struct usage_query q = {.gran = g, .from = from, .to = to, .key_id = key_id};
    char *err = NULL;
    if (usage_store_query(s, &q, collect, t, &err) != 0)
        fail_msg("%s", err);
    return t;
}

static void assert_counts_sum(const struct usage_counts *got, const struct usage_counts *a,
                              const struct usage_counts *b, const struct usage_counts *c)
{
    for (int f = 0; f < USAGE_F_N; f++)
        if (got->v[f] != a->v[f] + (b ? b->v[f] : 0) + (c ? c->v[f] : 0))
            fail_msg("field %s: %llu", usage_field_column(f), (unsigned long long)got->v[f]);
}

static void test_sqlite_rollups(void **state)
{
    char dir[] = "/tmp/sluice-usage-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct usage_store *s = open_sqlite(dir);
    struct usage_table *t = traffic();
    char *err = NULL;
    assert_int_equal(usage_store_write(s, t, &retention, &err), USAGE_WRITE_OK);

    struct usage_table *hours = query(s, USAGE_HOUR, JAN1, FEB1 + 86400, NULL);
    assert_int_equal(usage_table_size(hours), 4);
    struct usage_row *h1 = find(hours, H0, "key:a", "/v1/");
    struct usage_row *h2 = find(hours, H0 + 3600, "key:a", "/v1/");
    struct usage_row *h3 = find(hours, FEB1, "key:a", "/v1/");
    assert_counts_sum(&h1->c, &find(t, H0, "key:a", "/v1/")->c, NULL, NULL);
    /* A day is the sum of its hours, a month of its days, bucket by bucket. */
    struct usage_table *days = query(s, USAGE_DAY, JAN1, FEB1 + 86400, NULL);
    assert_int_equal(usage_table_size(days), 3);
    assert_counts_sum(&find(days, JAN31, "key:a", "/v1/")->c, &h1->c, &h2->c, NULL);
    assert_counts_sum(&find(days, FEB1, "key:a", "/v1/")->c, &h3->c, NULL, NULL);
    struct usage_table *months = query(s, USAGE_MONTH, JAN1, FEB1 + 1, NULL);
    assert_int_equal(usage_table_size(months), 3);
    assert_counts_sum(&find(months, JAN1, "key:a", "/v1/")->c, &h1->c, &h2->c, NULL);
    assert_string_equal(find(months, JAN1, "key:a", "/v1/")->key_id, "a");
    /* Periods overlapping [from, to): a from inside a day selects it. */
    struct usage_table *one = query(s, USAGE_DAY, FEB1 + 5, FEB1 + 6, NULL);
    assert_int_equal(usage_table_size(one), 1);
    usage_table_free(one);
    one = query(s, USAGE_HOUR, JAN1, FEB1 + 86400, "a");
    assert_int_equal(usage_table_size(one), 3);
    usage_table_free(one);

    /* Writing again adds (upserts), and a row keeps the first key id. */
    struct usage_table *again = usage_table_new(10, &hkey);
    bool folded = false;
    usage_table_row(again, H0, "key:a", "/v1/", "other-key", &folded)->c.v[USAGE_F_REQUESTS] = 5;
    usage_table_row(again, H0, "ip:192.0.2.1", "/v2/", "late", &folded)->c.v[USAGE_F_UNITS] = 1;
    assert_int_equal(usage_store_write(s, again, &retention, &err), USAGE_WRITE_OK);
    usage_table_free(again);
    usage_store_close(s);

    /* Reopened (a restart): everything is still there. */
    s = open_sqlite(dir);
    struct usage_table *m2 = query(s, USAGE_MONTH, JAN1, FEB1 + 1, NULL);
    struct usage_row *ma = find(m2, JAN1, "key:a", "/v1/");
    assert_int_equal(ma->c.v[USAGE_F_REQUESTS], find(months, JAN1, "key:a", "/v1/")->c.v[0] + 5);
    assert_string_equal(ma->key_id, "a");
    assert_string_equal(find(m2, JAN1, "ip:192.0.2.1", "/v2/")->key_id, "late");
    usage_table_free(m2);

    /* Pruning: an hourly row goes once its hour ended 7 days ago. */
    int64_t end_h2 = H0 + 7200;
    assert_int_equal(usage_store_prune(s, end_h2 + 7 * 86400 - 1, &retention, &err), 2);
    struct usage_table *left = query(s, USAGE_HOUR, JAN1, FEB1 + 86400, NULL);
    assert_int_equal(usage_table_size(left), 2); /* 23:00 and Feb 1 00:00 */
    usage_table_free(left);
    assert_int_equal(usage_store_prune(s, end_h2 + 7 * 86400, &retention, &err), 1);
    left = query(s, USAGE_DAY, JAN1, FEB1 + 86400, NULL);
    assert_int_equal(usage_table_size(left), 3); /* daily rows stay 400 days */
    usage_table_free(left);
    /* Daily rows 400 days after their day; monthly rows are kept. */
    assert_int_equal(usage_store_prune(s, FEB1 + 400 * 86400 - 1, &retention, &err), 1);
    assert_int_equal(usage_store_prune(s, FEB1 + 400 * 86400, &retention, &err), 2);
    assert_int_equal(usage_store_prune(s, FEB1 + 86400 + 400 * 86400, &retention, &err), 1);
    left = query(s, USAGE_MONTH, JAN1, FEB1 + 1, NULL);
    assert_int_equal(usage_table_size(left), 3);
    usage_table_free(left);

    usage_table_free(hours);
    usage_table_free(days);
    usage_table_free(months);
    usage_table_free(t);
    usage_store_close(s);
    test_rm_rf(dir);
}

/* ---- reports -------------------------------------------------------------------------- */

static char *report(struct usage_store *s, const char *query, int64_t now, bool top, int *status)
{
    struct usage_report r;
    usage_report_init(&r, top);
    char *why = NULL;
    if (usage_report_parse_query(&r, query, strlen(query), &why) < 0 ||
        usage_report_resolve(&r, now, &why) < 0) {
        usage_report_release(&r);
        *status = 400;
        return why;
    }
    struct buf b = {0};
    const char *ctype = NULL;
    char *err = NULL;
    *status = usage_report_run(s, &r, &b, &ctype, &err);
    usage_report_release(&r);
    if (*status != 200) {
        buf_release(&b);
        return err;
    }
    buf_append(&b, "", 1);
    return b.data;
}

static void assert_400(struct usage_store *s, const char *query, bool top, const char *says)
{
    int status;
    char *msg = report(s, query, H0, top, &status);
    assert_int_equal(status, 400);
    if (!strstr(msg, says))
        fail_msg("'%s': '%s' does not say '%s'", query, msg, says);
    free(msg);
}

static void test_report_parameters(void **state)
{
    struct usage_report r;
    usage_report_init(&r, false);
    char *why = NULL;
    assert_int_equal(usage_report_resolve(&r, H0 + 100, &why), 0);
    /* Default: days, the current one and the 29 before it. */
    assert_int_equal(r.to, FEB1);
    assert_int_equal(r.from, JAN31 - 29 * 86400);
    usage_report_release(&r);
    usage_report_init(&r, false);
    const char *q = "granularity=month&identity=sub%3AJo+Doe&route=%2Fv1%2F";
    assert_int_equal(usage_report_parse_query(&r, q, strlen(q), &why), 0);
    assert_int_equal(usage_report_resolve(&r, FEB1 + 100, &why), 0);
    assert_string_equal(r.identity, "sub:Jo Doe");
    assert_string_equal(r.route, "/v1/");
    assert_int_equal(r.to, FEB1 + 29 * 86400);                    /* the end of February 2040 */
    assert_int_equal(r.from, JAN1 - 10 * 31 * 86400 + 4 * 86400); /* 2039-03-01 */
    usage_report_release(&r);

    char dir[] = "/tmp/sluice-usage-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct usage_store *s = open_sqlite(dir);
    assert_400(s, "granularity=week", false, "granularity: 'week' is not hour, day or month");
    assert_400(s, "format=xml", false, "json or csv");
    assert_400(s, "from=tomorrow", false,
               "from: 'tomorrow' is not a time (use RFC 3339 such as 2024-05-01T13:00:00Z, a "
               "date such as 2024-05-01, or Unix seconds)");
    assert_400(s, "from=2040-02-02&to=2040-02-01", false, "from must be before to");
    assert_400(s, "granularity=hour&from=0", false, "spans more than 20000 hours");
    assert_400(s, "key=a&key=b", false, "key is given twice");
    assert_400(s, "key=", false, "key: give a value of 1 to 512 bytes");
    assert_400(s, "by=cost", false,
               "unknown parameter 'by' (use key, identity, route, from, to, granularity, format)");
    assert_400(s, "route=%2", false, "broken %-escape");
    assert_400(s, "route=a%00b", false, "broken %-escape");
    assert_400(s, "by=speed", true, "by: 'speed' is not requests, rejections or cost");
    assert_400(s, "period=hour", true, "period: 'hour' is not day or month");
    assert_400(s, "n=1001", true, "n: '1001' is not a whole number from 1 to 1000");
    assert_400(s, "n=-1", true, "from 1 to 1000");
    assert_400(s, "n=+5", true, "from 1 to 1000");
    assert_400(s, "n=%095", true, "from 1 to 1000"); /* "\t5" */
    assert_400(s, "n=%0A5", true, "from 1 to 1000");
    assert_400(s, "format=csv", true, "format: 'csv' is not json");
    assert_400(s, "from=2040-01-01", true, "(use format, by, period, n, at)");
    /* The last day there is: its end is written whole. */
    int status;
    char *body = report(s, "granularity=month&from=9999-12-01&to=9999-12-31", H0, false, &status);
    assert_int_equal(status, 200);
    if (!strstr(body, "\"from\": \"9999-12-01T00:00:00Z\", \"to\": \"10000-01-01T00:00:00Z\""))
        fail_msg("%s", body);
    free(body);
    usage_store_close(s);
    test_rm_rf(dir);
}

/* The reports these tests compare across stores. */
static const char *const report_queries[] = {
    "granularity=hour&from=2040-01-01&to=2040-02-02",
    "granularity=day&from=2040-01-01&to=2040-02-02",
    "granularity=month&from=2040-01-01&to=2040-02-02",
    "granularity=hour&from=2040-01-01&to=2040-02-02&format=csv",
    "granularity=day&from=2040-01-31&to=2040-01-31&key=a",
    "granularity=hour&from=2040-01-31T23:00:00Z&to=2040-02-01T00:00:00Z",
    "granularity=month&from=2040-01-01&to=2040-02-02&identity=ip:192.0.2.1&route=/v2/",
};
static const char *const top_queries[] = {
    "at=2040-01-31",
    "at=2040-01-31&by=cost",
    "at=2040-01-31&by=rejections&n=1",
    "period=month&at=2040-02-01",
};

static void test_report_json(void **state)
{
    char dir[] = "/tmp/sluice-usage-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct usage_store *s = open_sqlite(dir);
    struct usage_table *t = traffic();
    char *err = NULL;
    assert_int_equal(usage_store_write(s, t, &retention, &err), USAGE_WRITE_OK);
    int status;
    char *body = report(s, report_queries[1], H0, false, &status);
    assert_int_equal(status, 200);
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "from")), "2040-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(doc, "to")), "2040-02-03T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 3);
    json_t *rows = json_object_get(doc, "rows");
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "period_start")),
                        "2040-01-31T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(first, "identity")), "ip:192.0.2.1");
    assert_true(json_is_null(json_object_get(first, "key_id")));
    json_t *a = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(a, "key_id")), "a");
    assert_int_equal(json_integer_value(json_object_get(a, "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "rejections"), "limit")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(a, "units")), 4);
    assert_true(strstr(body, "\"cost\": 0.01}") != NULL); /* 4 units at 2.5 per 1000 */
    json_t *tot = json_object_get(doc, "totals");
    assert_int_equal(json_integer_value(json_object_get(tot, "requests")), 5);
    assert_int_equal(json_integer_value(json_object_get(tot, "bytes_out")), 150);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(tot, "status"), "5xx")), 1);
    json_decref(doc);
    free(body);

    /* Top of the day of Jan 31: key a (3 requests) before the anonymous
     * client (1); by rejections with n=1, key a alone. */
    body = report(s, top_queries[0], H0, true, &status);
    doc = json_loads(body, 0, &jerr);
    rows = json_object_get(doc, "rows");
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "identity")),
                        "key:a");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 1), "rank")), 2);
    assert_string_equal(json_string_value(json_object_get(doc, "period_start")),
                        "2040-01-31T00:00:00Z");
    json_decref(doc);
    free(body);
    body = report(s, top_queries[2], H0, true, &status);
    doc = json_loads(body, 0, &jerr);
    assert_int_equal(json_array_size(json_object_get(doc, "rows")), 1);
    json_decref(doc);
    free(body);
    usage_table_free(t);
    usage_store_close(s);
    test_rm_rf(dir);
}

/* ---- Redis: the same reports as SQLite -------------------------------------------------- */

static redisContext *redis_wait(int port)
{
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    for (int i = 0; i < 500; i++) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (ok)
            return c;
        redisFree(c);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_redis_matches_sqlite(void **state)
{
    int port = test_free_port();
    pid_t pid = test_redis_spawn(port, NULL);
    assert_true(pid > 0);
    redisContext *rc = redis_wait(port);
    if (!rc) {
        test_redis_kill(pid);
        fail_msg("redis-server did not start on port %d", port);
    }
    char dir[] = "/tmp/sluice-usage-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct usage_store *sql = open_sqlite(dir);
    struct usage_store_opts o = {.redis = true, .redis_prefix = "t:"};
    snprintf(o.conn.host, sizeof(o.conn.host), "127.0.0.1");
    o.conn.port = port;
    char *err = NULL;
    struct usage_store *red = usage_store_open(&o, &err);
    assert_non_null(red);
    /* Written twice, as two gateways (or two flushes) would. */
    struct usage_table *t = traffic();
    for (int i = 0; i < 2; i++) {
        assert_int_equal(usage_store_write(sql, t, &retention, &err), USAGE_WRITE_OK);
        assert_int_equal(usage_store_write(red, t, &retention, &err), USAGE_WRITE_OK);
    }
    for (int top = 0; top < 2; top++) {
        const char *const *qs = top ? top_queries : report_queries;
        size_t n = top ? sizeof(top_queries) / sizeof(top_queries[0])
                       : sizeof(report_queries) / sizeof(report_queries[0]);
        for (size_t i = 0; i < n; i++) {
            int st1, st2;
            char *a = report(sql, qs[i], H0, top, &st1);
            char *b = report(red, qs[i], H0, top, &st2);
            assert_int_equal(st1, 200);
            assert_int_equal(st2, 200);
            if (strcmp(a, b) != 0)
                fail_msg("%s:\nsqlite: %s\nredis:  %s", qs[i], a, b);
            assert_true(strlen(a) > 100);
            free(a);
            free(b);
        }
    }
    /* Hourly and daily keys expire their retention after their period,
     * monthly ones are kept. */
    redisReply *r = redisCommand(rc, "TTL t:usage:h:%lld:5:key:a/v1/", (long long)H0);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    int64_t now = (int64_t)time(NULL);
    assert_true(r->integer > H0 + 3600 + 7 * 86400 - now - 5 &&
                r->integer <= H0 + 3600 + 7 * 86400 - now);
    freeReplyObject(r);
    r = redisCommand(rc, "TTL t:usage:idx:d:%lld", (long long)JAN31);
    assert_true(r->integer > JAN31 + 401 * 86400 - now - 5);
    freeReplyObject(r);
    r = redisCommand(rc, "TTL t:usage:m:%lld:5:key:a/v1/", (long long)JAN1);
    assert_int_equal(r->integer, -1);
    freeReplyObject(r);
    r = redisCommand(rc, "HGET t:usage:m:%lld:5:key:a/v1/ n", (long long)JAN1);
    assert_string_equal(r->str, "6");
    freeReplyObject(r);

    /* Redis away: a write is kept for later (nothing was sent), a report
     * fails at once. */
    test_redis_kill(pid);
    assert_int_equal(usage_store_write(red, t, &retention, &err), USAGE_WRITE_RETRY);
    free(err);
    err = NULL;
    int status;
    char *msg = report(red, report_queries[0], H0, false, &status);
    assert_int_equal(status, 503);
    assert_non_null(strstr(msg, "redis"));
    free(msg);

    usage_table_free(t);
    usage_store_close(red);
    usage_store_close(sql);
    redisFree(rc);
    test_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_fold_and_merge),
        cmocka_unit_test(test_price),
        cmocka_unit_test(test_sqlite_rollups),
        cmocka_unit_test(test_report_parameters),
        cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_redis_matches_sqlite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
