/* Usage reports (usage/report.h). */
#include "usage/report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>

#include "usage/csv.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/str.h"

/* ---- parameters ------------------------------------------------------------------- */

enum usage_param {
    USAGE_P_KEY,
    USAGE_P_IDENTITY,
    USAGE_P_ROUTE,
    USAGE_P_FROM,
    USAGE_P_TO,
    USAGE_P_GRANULARITY,
    USAGE_P_FORMAT,
    USAGE_P_BY,
    USAGE_P_PERIOD,
    USAGE_P_N,
    USAGE_P_AT,
    USAGE_P_COUNT
};

static const struct {
    const char *name;
    bool report, top; /* accepted by /usage, by /usage/top */
} usage_params[USAGE_P_COUNT] = {
    {"key", true, false},   {"identity", true, false}, {"route", true, false},
    {"from", true, false},  {"to", true, false},       {"granularity", true, false},
    {"format", true, true}, {"by", false, true},       {"period", false, true},
    {"n", false, true},     {"at", false, true},
};

static char *usage_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *usage_why(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sl_vstrdupf(fmt, ap);
    va_end(ap);
    return s;
}

static const char usage_time_help[] =
    "use RFC 3339 such as 2024-05-01T13:00:00Z, a date such as 2024-05-01, or Unix seconds";

void usage_report_init(struct usage_report *r, bool top)
{
    memset(r, 0, sizeof(*r));
    r->top = top;
    r->gran = USAGE_DAY;
    r->from = r->to = -1;
    r->by = USAGE_BY_REQUESTS;
    r->period = USAGE_DAY;
    r->n = 10;
    r->at = -1;
}

void usage_report_release(struct usage_report *r)
{
    free(r->identity);
    free(r->key_id);
    free(r->route);
    r->identity = r->key_id = r->route = NULL;
    for (int i = 0; i < r->n_keys; i++)
        free(r->keys[i]);
    free(r->keys);
    r->keys = NULL;
    r->n_keys = 0;
    r->key_set = false;
}

void usage_report_add_key(struct usage_report *r, const char *id)
{
    r->key_set = true;
    r->keys = sl_realloc(r->keys, sizeof(*r->keys) * (size_t)(r->n_keys + 1));
    r->keys[r->n_keys++] = sl_strdup(id);
}

static void usage_accepted(struct buf *b, bool top)
{
    int n = 0;
    for (int p = 0; p < USAGE_P_COUNT; p++)
        if (top ? usage_params[p].top : usage_params[p].report)
            buf_appendf(b, "%s%s", n++ ? ", " : "", usage_params[p].name);
}

int usage_report_set(struct usage_report *r, const char *name, const char *value, char **why)
{
    int p = 0;
    while (p < USAGE_P_COUNT && strcmp(usage_params[p].name, name) != 0)
        p++;
    if (p == USAGE_P_COUNT || !(r->top ? usage_params[p].top : usage_params[p].report)) {
        struct buf b = {0};
        usage_accepted(&b, r->top);
        buf_append(&b, "", 1);
        *why = usage_why("unknown parameter '%.64s' (use %s)", name, b.data);
        buf_release(&b);
        return -1;
    }
    if (r->seen & (1u << p)) {
        *why = usage_why("%s is given twice", name);
        return -1;
    }
    r->seen |= 1u << p;
    size_t len = strlen(value);
    if (len == 0 || len > USAGE_PARAM_MAX) {
        *why = usage_why("%s: give a value of 1 to %d bytes", name, USAGE_PARAM_MAX);
        return -1;
    }
    switch (p) {
    case USAGE_P_KEY:
        r->key_id = sl_strdup(value);
        return 0;
    case USAGE_P_IDENTITY:
        r->identity = sl_strdup(value);
        return 0;
    case USAGE_P_ROUTE:
        r->route = sl_strdup(value);
        return 0;
    case USAGE_P_FROM:
    case USAGE_P_TO:
    case USAGE_P_AT: {
        int64_t *out = p == USAGE_P_FROM ? &r->from : p == USAGE_P_TO ? &r->to : &r->at;
        if (usage_time_parse(value, p == USAGE_P_TO, out) < 0) {
            *why = usage_why("%s: '%.64s' is not a time (%s)", name, value, usage_time_help);
            return -1;
        }
        return 0;
    }
    case USAGE_P_GRANULARITY: {
        int g = usage_gran_parse(value);
        if (g < 0) {
            *why = usage_why("granularity: '%.64s' is not hour, day or month", value);
            return -1;
        }
        r->gran = g;
        return 0;
    }
    case USAGE_P_FORMAT:
        if (strcmp(value, "json") == 0 || (!r->top && strcmp(value, "csv") == 0)) {
            r->csv = strcmp(value, "csv") == 0;
            return 0;
        }
        *why = usage_why("format: '%.64s' is not %s", value, r->top ? "json" : "json or csv");
        return -1;
    case USAGE_P_BY:
        if (strcmp(value, "requests") == 0)
            r->by = USAGE_BY_REQUESTS;
        else if (strcmp(value, "rejections") == 0)
            r->by = USAGE_BY_REJECTIONS;
        else if (strcmp(value, "cost") == 0)
            r->by = USAGE_BY_COST;
        else {
            *why = usage_why("by: '%.64s' is not requests, rejections or cost", value);
            return -1;
        }
        return 0;
    case USAGE_P_PERIOD:
        if (strcmp(value, "day") == 0 || strcmp(value, "month") == 0) {
            r->period = usage_gran_parse(value);
            return 0;
        }
        *why = usage_why("period: '%.64s' is not day or month", value);
        return -1;
    default: { /* USAGE_P_N: digits only (strtol would take a sign or leading white space) */
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || *end || strspn(value, "0123456789") != len || v < 1 || v > USAGE_TOP_MAX) {
            *why = usage_why("n: '%.64s' is not a whole number from 1 to %d", value, USAGE_TOP_MAX);
            return -1;
        }
        r->n = (int)v;
        return 0;
    }
    }
}

/* <s>/<len> percent-decoded ('+' is a space, as forms send it) into a
 * malloc'd string; NULL when an escape is broken or decodes to NUL. */
static char *usage_unescape(const char *s, size_t len)
{
    char *out = sl_malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? str_hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < len ? str_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

int usage_report_parse_query(struct usage_report *r, const char *query, size_t len, char **why)
{
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop > p) {
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            const char *vs = eq ? eq + 1 : stop;
            char *name = usage_unescape(p, (size_t)((eq ? eq : stop) - p));
            char *value = usage_unescape(vs, (size_t)(stop - vs));
            int rc = -1;
            if (!name || !value)
                *why = usage_why("the query has a broken %%-escape");
            else
                rc = usage_report_set(r, name, value, why);
            free(name);
            free(value);
            if (rc < 0)
                return -1;
        }
        p = stop + 1;
    }
    return 0;
}

/* The start of the period <n> periods of <g> before the one at <start>. */
static int64_t usage_periods_back(enum usage_gran g, int64_t start, int n)
{
    if (g == USAGE_HOUR)
        return start - (int64_t)n * 3600;
    if (g == USAGE_DAY)
        return start - (int64_t)n * 86400;
    int64_t y;
    int m, d;
    civil_from_days(start / 86400, &y, &m, &d);
    int64_t months = y * 12 + (m - 1) - n;
    return civil_days_from(months / 12, (int)(months % 12) + 1, 1) * 86400;
}

/* How many periods of <g> overlap [<from>, <to>). */
static int64_t usage_periods_between(enum usage_gran g, int64_t from, int64_t to)
{
    int64_t start = usage_period_start(g, from), last = usage_period_start(g, to - 1);
    if (g != USAGE_MONTH)
        return (last - start) / (g == USAGE_HOUR ? 3600 : 86400) + 1;
    int64_t y1, y2;
    int m1, m2, d;
    civil_from_days(start / 86400, &y1, &m1, &d);
    civil_from_days(last / 86400, &y2, &m2, &d);
    return (y2 * 12 + m2) - (y1 * 12 + m1) + 1;
}

int usage_report_resolve(struct usage_report *r, int64_t now, char **why)
{
    if (r->top) {
        if (r->at < 0)
            r->at = now;
        return 0;
    }
    /* The current period and the ones before it: a day of hours, a month
     * of days, a year of months. */
    static const int usage_default_periods[USAGE_GRAN_N] = {24, 30, 12};
    if (r->to < 0)
        r->to = usage_period_next(r->gran, usage_period_start(r->gran, now));
    if (r->from < 0)
        r->from = usage_periods_back(r->gran, usage_period_start(r->gran, r->to - 1),
                                     usage_default_periods[r->gran] - 1);
    if (r->from >= r->to) {
        *why = usage_why("from must be before to");
        return -1;
    }
    if (usage_periods_between(r->gran, r->from, r->to) > USAGE_QUERY_MAX_PERIODS) {
        *why = usage_why("from..to spans more than %d %ss: use a coarser granularity",
                         USAGE_QUERY_MAX_PERIODS, usage_gran_name(r->gran));
        return -1;
    }
    return 0;
}

/* ---- rendering -------------------------------------------------------------------- */

void usage_format_cost(struct buf *b, uint64_t nano)
{
    char frac[16];
    snprintf(frac, sizeof(frac), "%09" PRIu64, nano % 1000000000);
    int n = 9;
    while (n > 0 && frac[n - 1] == '0')
        n--;
    buf_appendf(b, "%" PRIu64, nano / 1000000000);
    if (n > 0)
        buf_appendf(b, ".%.*s", n, frac);
}

static const double usage_quantiles[3] = {0.5, 0.95, 0.99};
static const char *const usage_quantile_names[3] = {"p50", "p95", "p99"};

/* A latency in ms as the reports write it: three decimals (a microsecond),
 * "" when there is none. */
static void usage_format_ms(struct buf *b, double ms, const char *none)
{
    if (ms < 0)
        buf_append_str(b, none);
    else
        buf_appendf(b, "%.3f", ms);
}

void usage_json_counts(struct buf *b, const struct usage_counts *c)
{
    const uint64_t *v = c->v;
    buf_appendf(b,
                "\"requests\": %" PRIu64 ", \"status\": {\"1xx\": %" PRIu64 ", \"2xx\": %" PRIu64
                ", \"3xx\": %" PRIu64 ", \"4xx\": %" PRIu64 ", \"5xx\": %" PRIu64 "}, "
                "\"rejections\": {\"limit\": %" PRIu64 ", \"quota\": %" PRIu64 ", \"ban\": %" PRIu64
                "}, \"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64 ", \"latency_ms\": {",
                v[USAGE_F_REQUESTS], v[USAGE_F_S1XX], v[USAGE_F_S2XX], v[USAGE_F_S3XX],
                v[USAGE_F_S4XX], v[USAGE_F_S5XX], v[USAGE_F_REFUSED_LIMIT],
                v[USAGE_F_REFUSED_QUOTA], v[USAGE_F_REFUSED_BAN], v[USAGE_F_BYTES_IN],
                v[USAGE_F_BYTES_OUT]);
    for (int q = 0; q < 3; q++) {
        buf_appendf(b, "%s\"%s\": ", q ? ", " : "", usage_quantile_names[q]);
        usage_format_ms(b, usage_hist_quantile_ms(v + USAGE_F_LAT0, usage_quantiles[q]), "null");
    }
    buf_appendf(b, "}, \"units\": %" PRIu64 ", \"cost\": ", v[USAGE_F_UNITS]);
    usage_format_cost(b, v[USAGE_F_COST_NANO]);
}

static void usage_json_str_or_null(struct buf *b, const char *s)
{
    if (!s || !*s) {
        buf_append_str(b, "null");
        return;
    }
    buf_append(b, "\"", 1);
    json_str_append(b, s);
    buf_append(b, "\"", 1);
}

static void usage_json_row(struct buf *b, const struct usage_row *row)
{
    char when[USAGE_TIME_MAX];
    usage_time_format(row->period, when);
    buf_appendf(b, "{\"period_start\": \"%s\", \"identity\": ", when);
    usage_json_str_or_null(b, row->identity);
    buf_append_str(b, ", \"key_id\": ");
    usage_json_str_or_null(b, row->key_id);
    buf_append_str(b, ", \"route\": ");
    usage_json_str_or_null(b, row->route);
    buf_append_str(b, ", ");
    usage_json_counts(b, &row->c);
    buf_append(b, "}", 1);
}

static const char *const usage_csv_columns[] = {
    "period_start",   "identity",       "key_id",         "route",      "requests",
    "status_1xx",     "status_2xx",     "status_3xx",     "status_4xx", "status_5xx",
    "rejected_limit", "rejected_quota", "rejected_ban",   "bytes_in",   "bytes_out",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "units",      "cost",
};

void usage_csv_header(struct buf *b)
{
    for (size_t i = 0; i < sizeof(usage_csv_columns) / sizeof(usage_csv_columns[0]); i++)
        usage_csv_str(b, usage_csv_columns[i], i == 0);
    usage_csv_end(b);
}

void usage_csv_row(struct buf *b, const struct usage_row *row)
{
    char when[USAGE_TIME_MAX], num[24];
    usage_time_format(row->period, when);
    usage_csv_str(b, when, true);
    usage_csv_str(b, row->identity, false);
    usage_csv_str(b, row->key_id, false);
    usage_csv_str(b, row->route, false);
    for (int f = USAGE_F_REQUESTS; f <= USAGE_F_BYTES_OUT; f++) {
        snprintf(num, sizeof(num), "%" PRIu64, row->c.v[f]);
        usage_csv_str(b, num, false);
    }
    struct buf t = {0};
    for (int q = 0; q < 3; q++) {
        t.len = 0;
        usage_format_ms(&t, usage_hist_quantile_ms(row->c.v + USAGE_F_LAT0, usage_quantiles[q]),
                        "");
        usage_csv_field(b, t.data ? t.data : "", t.len, false);
    }
    snprintf(num, sizeof(num), "%" PRIu64, row->c.v[USAGE_F_UNITS]);
    usage_csv_str(b, num, false);
    t.len = 0;
    usage_format_cost(&t, row->c.v[USAGE_F_COST_NANO]);
    usage_csv_field(b, t.data, t.len, false);
    buf_release(&t);
    usage_csv_end(b);
}

/* ---- running ---------------------------------------------------------------------- */

static void usage_random_key(struct siphash_key *k)
{
    if (getrandom(k, sizeof(*k), 0) != (ssize_t)sizeof(*k))
        siphash_key_random(k);
}

struct usage_collect {
    struct usage_table *t;
    bool top;
    int64_t period;
    const struct usage_report *r;
};

/* Is <row> of a key of the report's key set (when it has one)? A linear
 * look: a developer holds at most developer.max_keys keys. */
static bool usage_in_key_set(const struct usage_report *r, const struct usage_row *row)
{
    if (!r->key_set)
        return true;
    for (int i = 0; row->key_id && i < r->n_keys; i++)
        if (strcmp(r->keys[i], row->key_id) == 0)
            return true;
    return false;
}

static int usage_collect_row(void *arg, const struct usage_row *row)
{
    struct usage_collect *c = arg;
    bool folded = false;
    if (!usage_in_key_set(c->r, row))
        return 0;
    if (!c->top && usage_table_size(c->t) >= USAGE_REPORT_MAX_ROWS)
        return 1;
    struct usage_row *to =
        c->top
            ? usage_table_row(c->t, c->period, row->identity, "", row->key_id, &folded)
            : usage_table_row(c->t, row->period, row->identity, row->route, row->key_id, &folded);
    usage_counts_add(&to->c, &row->c);
    return 0;
}

static int usage_report_rows(const struct usage_report *r, struct usage_row **rows, size_t n,
                             struct buf *out)
{
    char from[USAGE_TIME_MAX], to[USAGE_TIME_MAX];
    usage_time_format(r->from, from);
    usage_time_format(r->to, to);
    buf_appendf(out,
                "{\"granularity\": \"%s\", \"from\": \"%s\", \"to\": \"%s\", \"count\": %zu, "
                "\"rows\": [",
                usage_gran_name(r->gran), from, to, n);
    struct usage_counts total = {0};
    for (size_t i = 0; i < n; i++) {
        buf_append_str(out, i ? ",\n  " : "\n  ");
        usage_json_row(out, rows[i]);
        usage_counts_add(&total, &rows[i]->c);
    }
    buf_append_str(out, n ? "\n], \"totals\": {" : "], \"totals\": {");
    usage_json_counts(out, &total);
    buf_append_str(out, "}}\n");
    return 0;
}

static uint64_t usage_top_metric(const struct usage_row *row, enum usage_top_by by)
{
    const uint64_t *v = row->c.v;
    if (by == USAGE_BY_REJECTIONS)
        return v[USAGE_F_REFUSED_LIMIT] + v[USAGE_F_REFUSED_QUOTA] + v[USAGE_F_REFUSED_BAN];
    return by == USAGE_BY_COST ? v[USAGE_F_COST_NANO] : v[USAGE_F_REQUESTS];
}

/* Largest first by *<by>; ties by identity, so the order is the same
 * every time. */
static int usage_top_cmp(const void *a, const void *b, void *by)
{
    const struct usage_row *x = *(const struct usage_row *const *)a;
    const struct usage_row *y = *(const struct usage_row *const *)b;
    enum usage_top_by metric = *(const enum usage_top_by *)by;
    uint64_t mx = usage_top_metric(x, metric), my = usage_top_metric(y, metric);
    if (mx != my)
        return mx > my ? -1 : 1;
    return strcmp(x->identity, y->identity);
}

static const char *const usage_by_names[] = {"requests", "rejections", "cost"};

static void usage_report_top(const struct usage_report *r, struct usage_row **rows, size_t n,
                             int64_t start, struct buf *out)
{
    enum usage_top_by by = r->by;
    qsort_r(rows, n, sizeof(*rows), usage_top_cmp, &by);
    char when[USAGE_TIME_MAX];
    usage_time_format(start, when);
    size_t shown = n < (size_t)r->n ? n : (size_t)r->n;
    buf_appendf(out,
                "{\"by\": \"%s\", \"period\": \"%s\", \"period_start\": \"%s\", \"n\": %d, "
                "\"rows\": [",
                usage_by_names[r->by], usage_gran_name(r->period), when, r->n);
    for (size_t i = 0; i < shown; i++) {
        buf_appendf(out, "%s{\"rank\": %zu, \"identity\": ", i ? ",\n  " : "\n  ", i + 1);
        usage_json_str_or_null(out, rows[i]->identity);
        buf_append_str(out, ", \"key_id\": ");
        usage_json_str_or_null(out, rows[i]->key_id);
        buf_append_str(out, ", ");
        usage_json_counts(out, &rows[i]->c);
        buf_append(out, "}", 1);
    }
    buf_append_str(out, shown ? "\n]}\n" : "]}\n");
}

int usage_report_run(struct usage_store *s, const struct usage_report *r, struct buf *out,
                     const char **content_type, char **err)
{
    struct siphash_key key;
    usage_random_key(&key);
    struct usage_collect c = {.top = r->top, .r = r};
    struct usage_query q = {.gran = r->gran,
                            .from = r->from,
                            .to = r->to,
                            .identity = r->identity,
                            .key_id = r->key_id,
                            .route = r->route};
    if (r->top) {
        c.period = usage_period_start(r->period, r->at);
        q = (struct usage_query){
            .gran = r->period, .from = c.period, .to = usage_period_next(r->period, c.period)};
    }
    c.t = usage_table_new(r->top ? USAGE_TOP_MAX_IDENTITIES : USAGE_REPORT_MAX_ROWS, &key);
    int rc = usage_store_query(s, &q, usage_collect_row, &c, err);
    if (rc != 0) {
        usage_table_free(c.t);
        if (rc < 0)
            return 503;
        free(*err);
        *err = usage_why("the report would hold more than %d rows: narrow it with key, identity, "
                         "route, from and to, or a coarser granularity",
                         USAGE_REPORT_MAX_ROWS);
        return 400;
    }
    struct usage_row **rows = usage_table_sorted(c.t);
    size_t n = usage_table_size(c.t);
    if (r->top) {
        usage_report_top(r, rows, n, c.period, out);
        *content_type = "application/json";
    } else if (r->csv) {
        usage_csv_header(out);
        for (size_t i = 0; i < n; i++)
            usage_csv_row(out, rows[i]);
        *content_type = "text/csv; charset=utf-8";
    } else {
        usage_report_rows(r, rows, n, out);
        *content_type = "application/json";
    }
    free(rows);
    usage_table_free(c.t);
    return 200;
}
