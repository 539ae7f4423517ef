/* libFuzzer harness: the query of GET /usage and GET /usage/top
 * (usage_report_parse_query, usage_report_resolve: usage/report.h) and the
 * times and granularities it reads (usage_time_parse, usage_gran_parse:
 * usage/calendar.h).
 *
 * Input: six bytes of set-up, then the query:
 *   [0] bit 0: /usage/top rather than /usage;
 *   [1..5] big-endian "now", modulo the last second of 9999.
 *
 * Checked:
 *   - the query against a reference that splits and decodes it on its own:
 *     accepted exactly when every parameter is known to the endpoint, given
 *     once, and has a valid value of 1..USAGE_PARAM_MAX bytes; then the
 *     report holds those values; refused with a message otherwise;
 *   - resolving: /usage refuses exactly when from >= to or the range has
 *     more than USAGE_QUERY_MAX_PERIODS periods (counted by walking them),
 *     its from and to formatted in full; /usage/top has a time and an n;
 *   - the whole input as one time (both as a start and an end): within
 *     1970..9999 (an end date: up to the midnight after 9999-12-31), and
 *     formatted, it parses back to itself;
 *   - the whole input as a granularity: its own name.
 * UBSan is on: an overflow on a huge year or offset is a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "usage/calendar.h"
#include "usage/report.h"
#include "usage/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 9999-12-31T23:59:59Z */
#define TIME_LAST INT64_C(253402300799)

/* ---- the reference reading of a query --------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* <s>/<len> decoded ('+' a space, %XY a byte, %00 refused) into a malloc'd
 * C string (so it ends at a raw NUL), or NULL. */
static char *decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0 ||
                (s[i + 1] == '0' && s[i + 2] == '0')) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static const char *const report_params[] = {"key", "identity",    "route", "from",
                                            "to",  "granularity", "format"};
static const char *const top_params[] = {"format", "by", "period", "n", "at"};

static int param_index(bool top, const char *name)
{
    const char *const *names = top ? top_params : report_params;
    int n = top ? 5 : 7;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

/* "1".."1000": digits only (leading zeros allowed). */
static int top_n(const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || strspn(v, "0123456789") != len)
        return -1;
    long n = 0;
    for (size_t i = 0; i < len && n <= USAGE_TOP_MAX; i++)
        n = n * 10 + (v[i] - '0');
    return n >= 1 && n <= USAGE_TOP_MAX ? (int)n : -1;
}

/* Is <value> good for <name>? The times and granularities by the parsers
 * under test, which are checked on their own below. */
static bool value_ok(bool top, const char *name, const char *value)
{
    size_t len = strlen(value);
    if (len == 0 || len > USAGE_PARAM_MAX)
        return false;
    int64_t t;
    if (!strcmp(name, "from") || !strcmp(name, "to") || !strcmp(name, "at"))
        return usage_time_parse(value, !strcmp(name, "to"), &t) == 0;
    if (!strcmp(name, "granularity"))
        return usage_gran_parse(value) >= 0;
    if (!strcmp(name, "format"))
        return !strcmp(value, "json") || (!top && !strcmp(value, "csv"));
    if (!strcmp(name, "by"))
        return !strcmp(value, "requests") || !strcmp(value, "rejections") || !strcmp(value, "cost");
    if (!strcmp(name, "period"))
        return !strcmp(value, "day") || !strcmp(value, "month");
    if (!strcmp(name, "n"))
        return top_n(value) > 0;
    return true; /* key, identity, route: any bytes */
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Walks the query <q>/<len>: with <r> NULL, says whether it is good;
 * with <r>, checks that <r> holds what it says. */
static bool reference(bool top, const char *q, size_t len, const struct usage_report *r)
{
    unsigned seen = 0;
    bool ok = true;
    const char *p = q, *end = q + len;
    while (ok && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop > p) {
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            const char *vs = eq ? eq + 1 : stop;
            char *name = decode(p, (size_t)((eq ? eq : stop) - p));
            char *value = decode(vs, (size_t)(stop - vs));
            int i = name ? param_index(top, name) : -1;
            if (!name || !value || i < 0 || (seen & (1u << i)) || !value_ok(top, name, value)) {
                ok = false;
            } else if (r) {
                seen |= 1u << i;
                int64_t t = -1;
                if (!strcmp(name, "from") || !strcmp(name, "to") || !strcmp(name, "at"))
                    usage_time_parse(value, !strcmp(name, "to"), &t);
                if ((!strcmp(name, "key") && !str_eq(r->key_id, value)) ||
                    (!strcmp(name, "identity") && !str_eq(r->identity, value)) ||
                    (!strcmp(name, "route") && !str_eq(r->route, value)) ||
                    (!strcmp(name, "from") && r->from != t) ||
                    (!strcmp(name, "to") && r->to != t) || (!strcmp(name, "at") && r->at != t) ||
                    (!strcmp(name, "granularity") && (int)r->gran != usage_gran_parse(value)) ||
                    (!strcmp(name, "format") && r->csv != !strcmp(value, "csv")) ||
                    (!strcmp(name, "period") && (int)r->period != usage_gran_parse(value)) ||
                    (!strcmp(name, "n") && r->n != top_n(value)) ||
                    (!strcmp(name, "by") &&
                     (int)r->by != (!strcmp(value, "requests")     ? USAGE_BY_REQUESTS
                                    : !strcmp(value, "rejections") ? USAGE_BY_REJECTIONS
                                                                   : USAGE_BY_COST)))
                    FUZZ_ABORT();
            } else {
                seen |= 1u << i;
            }
            free(name);
            free(value);
        }
        p = stop + 1;
    }
    return ok;
}

/* ---- checks --------------------------------------------------------------------------- */

/* Periods of <g> that overlap [from, to), counted one by one up to <cap> + 1. */
static int64_t walk_periods(enum usage_gran g, int64_t from, int64_t to, int64_t cap)
{
    int64_t n = 0;
    for (int64_t t = usage_period_start(g, from); t < to && n <= cap; t = usage_period_next(g, t))
        n++;
    return n;
}

/* <t> formatted in full ("...Z", not cut), and back, when it is a time of
 * 1970..9999. */
static void check_format(int64_t t)
{
    char s[USAGE_TIME_MAX];
    usage_time_format(t, s);
    size_t n = strlen(s);
    if (n < 20 || s[n - 1] != 'Z')
        FUZZ_ABORT();
    int64_t back = -1;
    if (t >= 0 && t <= TIME_LAST && (usage_time_parse(s, false, &back) != 0 || back != t))
        FUZZ_ABORT();
}

static void check_time(const char *s)
{
    for (int end = 0; end < 2; end++) {
        int64_t t = -42;
        if (usage_time_parse(s, end, &t) != 0) {
            if (t != -42)
                FUZZ_ABORT(); /* refused, but written */
            continue;
        }
        if (t < 0 || t > TIME_LAST + end)
            FUZZ_ABORT();
        check_format(t);
    }
    int g = usage_gran_parse(s);
    if (g >= USAGE_GRAN_N || (g >= 0 && strcmp(usage_gran_name(g), s) != 0))
        FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    bool top = data[0] & 1;
    int64_t now = 0;
    for (int i = 1; i < 6; i++)
        now = now << 8 | data[i];
    now %= TIME_LAST + 1;
    const char *q = (const char *)data + 6;
    size_t len = size - 6;

    char *s = malloc(len + 1);
    memcpy(s, q, len);
    s[len] = '\0';
    check_time(s);
    free(s);

    /* The query, exactly <len> bytes (no NUL after it to lean on). */
    char *query = malloc(len ? len : 1);
    memcpy(query, q, len);
    struct usage_report r;
    usage_report_init(&r, top);
    char *why = NULL;
    int rc = usage_report_parse_query(&r, query, len, &why);
    if ((rc == 0) != reference(top, query, len, NULL))
        FUZZ_ABORT();
    if (rc != 0) {
        if (!why || !why[0])
            FUZZ_ABORT();
        free(why);
    } else {
        if (why)
            FUZZ_ABORT();
        reference(top, query, len, &r);
        bool from_given = r.from >= 0, to_given = r.to >= 0;
        rc = usage_report_resolve(&r, now, &why);
        if (top) {
            if (rc != 0 || r.at < 0 || r.at > TIME_LAST || r.n < 1 || r.n > USAGE_TOP_MAX ||
                (r.period != USAGE_DAY && r.period != USAGE_MONTH))
                FUZZ_ABORT();
            if (usage_period_start(r.period, r.at) > r.at ||
                usage_period_next(r.period, usage_period_start(r.period, r.at)) <= r.at)
                FUZZ_ABORT();
        } else {
            if (r.to < 0 || r.to > TIME_LAST + 1 || (from_given && r.from < 0))
                FUZZ_ABORT();
            if (!to_given && (r.to <= now || usage_period_start(r.gran, r.to) != r.to))
                FUZZ_ABORT(); /* the default end: that of the current period */
            int64_t periods =
                r.from < r.to ? walk_periods(r.gran, r.from, r.to, USAGE_QUERY_MAX_PERIODS) : 0;
            bool bad = r.from >= r.to || periods > USAGE_QUERY_MAX_PERIODS;
            if ((rc != 0) != bad)
                FUZZ_ABORT();
            if (rc != 0) {
                if (!why || !why[0])
                    FUZZ_ABORT();
                free(why);
            } else {
                check_format(r.from);
                check_format(r.to);
            }
        }
    }
    usage_report_release(&r);
    free(query);
    return 0;
}
