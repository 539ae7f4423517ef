#include "cache/rules.h"

#include <llhttp.h>
#include <strings.h>
#include <time.h>

#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* Durations from the origin clamp to a year: longer would outlive any
 * sensible purge policy, and it keeps "seconds * 1000" far from overflow. */
#define CACHE_MAX_DELTA_S INT64_C(31536000)

/* 9999-12-31 23:59:59 UTC: the last instant with a four-digit year, so a
 * formatted date always fits the 30 bytes the caller provides. */
#define CACHE_MAX_DATE_S INT64_C(253402300799)

static bool cache_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static size_t cache_skip_ows(const char *v, size_t len, size_t i)
{
    while (i < len && cache_is_ows(v[i]))
        i++;
    return i;
}

static const char *cache_trim(const char *s, size_t len, size_t *out_len)
{
    while (len && cache_is_ows(*s)) {
        s++;
        len--;
    }
    while (len && cache_is_ows(s[len - 1]))
        len--;
    *out_len = len;
    return s;
}

/* ASCII only: header names and directive names are tokens, and the result
 * must not depend on the process locale. */
static unsigned char cache_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

void cache_cc_init(struct cache_control *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->max_age = -1;
    cc->s_maxage = -1;
    cc->stale_while_revalidate = -1;
    cc->stale_if_error = -1;
}

/* One directive of a Cache-Control value as written: <val> is the content
 * of a quoted-string without its quotes. <clean> is false when anything but
 * whitespace followed the directive before the next comma. */
struct cache_cc_dir {
    const char *name, *val;
    size_t name_len, val_len;
    bool has_val, clean;
};

/* Reads the directive starting at <i> of <v>/<len> into <d>; returns the
 * index after its terminating comma (or <len>). Commas inside a quoted value
 * (no-cache="a, b") do not end it; an unterminated quote ends at the next
 * comma instead of swallowing the rest, so a stray '"' cannot hide a later
 * no-store or private. */
static size_t cache_cc_next(const char *v, size_t len, size_t i, struct cache_cc_dir *d)
{
    size_t start = i;

    memset(d, 0, sizeof *d);
    d->clean = true;
    while (i < len && v[i] != ',' && v[i] != '=' && !cache_is_ows(v[i]))
        i++;
    d->name = v + start;
    d->name_len = i - start;
    i = cache_skip_ows(v, len, i);
    if (i < len && v[i] == '=') {
        d->has_val = true;
        i = cache_skip_ows(v, len, i + 1);
        if (i < len && v[i] == '"') {
            size_t open = i++;
            d->val = v + i;
            while (i < len && v[i] != '"')
                i += (v[i] == '\\' && i + 1 < len) ? 2 : 1;
            if (i < len) {
                d->val_len = (size_t)(v + i - d->val);
                i++;
            } else {
                d->val_len = 0;
                d->clean = false;
                i = open + 1;
            }
        } else {
            start = i;
            while (i < len && v[i] != ',' && !cache_is_ows(v[i]))
                i++;
            d->val = v + start;
            d->val_len = i - start;
        }
        i = cache_skip_ows(v, len, i);
    }
    while (i < len && v[i] != ',') {
        d->clean = false;
        i++;
    }
    return i < len ? i + 1 : len;
}

/* delta-seconds (RFC 9111 1.2.2) of directive <d>: digits only, clamped to
 * a year. Returns -1 when missing or malformed. */
static int64_t cache_delta_seconds(const struct cache_cc_dir *d)
{
    int64_t n = 0;

    if (!d->has_val || !d->clean || d->val_len == 0)
        return -1;
    for (size_t i = 0; i < d->val_len; i++) {
        char c = d->val[i];
        if (c < '0' || c > '9')
            return -1;
        /* Stop accumulating once past the clamp: no overflow for any length. */
        if (n < CACHE_MAX_DELTA_S)
            n = n * 10 + (c - '0');
    }
    return n > CACHE_MAX_DELTA_S ? CACHE_MAX_DELTA_S : n;
}

/* The directives we act on, one row each. Flags are set by any form of the
 * directive: qualified ones (no-cache="Set-Cookie", private="X") count as
 * the whole directive, since storing less than asked is always safe.
 * Durations keep their first occurrence (RFC 9111 4.2.1); a malformed
 * max-age or s-maxage still occupies its slot, as 0, so the response is
 * stale, while a malformed stale-* extension grants nothing and is skipped,
 * leaving the slot to a later valid one. */
static const struct cache_cc_row {
    const char *name;
    size_t off;
    bool is_delta, malformed_is_zero;
} cache_cc_rows[] = {
    {"no-store", offsetof(struct cache_control, no_store), false, false},
    {"no-cache", offsetof(struct cache_control, no_cache), false, false},
    {"private", offsetof(struct cache_control, private_), false, false},
    {"public", offsetof(struct cache_control, public_), false, false},
    {"must-revalidate", offsetof(struct cache_control, must_revalidate), false, false},
    {"proxy-revalidate", offsetof(struct cache_control, proxy_revalidate), false, false},
    {"no-transform", offsetof(struct cache_control, no_transform), false, false},
    {"max-age", offsetof(struct cache_control, max_age), true, true},
    {"s-maxage", offsetof(struct cache_control, s_maxage), true, true},
    {"stale-while-revalidate", offsetof(struct cache_control, stale_while_revalidate), true, false},
    {"stale-if-error", offsetof(struct cache_control, stale_if_error), true, false},
};

static void cache_cc_apply(struct cache_control *cc, const struct cache_cc_dir *d)
{
    for (size_t k = 0; k < sizeof cache_cc_rows / sizeof cache_cc_rows[0]; k++) {
        const struct cache_cc_row *r = &cache_cc_rows[k];
        if (!str_ieq(d->name, d->name_len, r->name))
            continue;
        if (!r->is_delta) {
            *(bool *)((char *)cc + r->off) = true;
            return;
        }
        int64_t *slot = (int64_t *)((char *)cc + r->off);
        if (*slot >= 0)
            return;
        int64_t s = cache_delta_seconds(d);
        *slot = (s < 0 && r->malformed_is_zero) ? 0 : s;
        return;
    }
}

void cache_cc_parse(struct cache_control *cc, const char *v, size_t len)
{
    size_t i = 0;

    while (i < len) {
        struct cache_cc_dir d;
        i = cache_skip_ows(v, len, i);
        i = cache_cc_next(v, len, i, &d);
        if (d.name_len > 0)
            cache_cc_apply(cc, &d);
    }
}

bool cache_status_cacheable(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 404:
    case 410:
        return true;
    default:
        return false;
    }
}

int64_t cache_ttl_ms(const struct cache_control *cc, int64_t route_ttl_ms, bool respect_origin)
{
    int64_t s = -1;

    if (!respect_origin)
        return route_ttl_ms;
    /* s-maxage is addressed to shared caches, which we are. */
    if (cc->s_maxage >= 0)
        s = cc->s_maxage;
    else if (cc->max_age >= 0)
        s = cc->max_age;
    if (s < 0)
        return route_ttl_ms;
    /* A caller-built <cc> may exceed the parser's clamp; keep the product sane. */
    return (s > CACHE_MAX_DELTA_S ? CACHE_MAX_DELTA_S : s) * 1000;
}

int64_t cache_parse_age(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    int64_t n = 0;
    size_t start = i;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++)
        if (n < CACHE_MAX_DELTA_S)
            n = n * 10 + (v[i] - '0');
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (i == start || i != len)
        return 0;
    return n > CACHE_MAX_DELTA_S ? CACHE_MAX_DELTA_S : n;
}

int64_t cache_fresh_ms(const struct cache_control *cc, int64_t route_ttl_ms, bool respect_origin,
                       int64_t age_s)
{
    bool origin = respect_origin && (cc->s_maxage >= 0 || cc->max_age >= 0);
    int64_t ttl = cache_ttl_ms(cc, route_ttl_ms, respect_origin);
    if (!origin || age_s <= 0)
        return ttl;
    return ttl > age_s * 1000 ? ttl - age_s * 1000 : 0;
}

enum cache_verdict cache_storable(int method, int status, const struct cache_control *cc,
                                  bool has_set_cookie, bool vary_star, bool key_has_identity,
                                  int64_t ttl_ms, int64_t stale_ms)
{
    if (method != HTTP_GET)
        return CACHE_SKIP_METHOD;
    if (!cache_status_cacheable(status))
        return CACHE_SKIP_STATUS;
    if (cc->no_store)
        return CACHE_SKIP_NO_STORE;
    /* no-cache allows storing only to revalidate before every reuse
     * (RFC 9111 5.2.2.4); without revalidation, keeping it buys nothing. */
    if (cc->no_cache)
        return CACHE_SKIP_NO_CACHE;
    if (vary_star)
        return CACHE_SKIP_VARY_STAR;
    if (cc->private_ && !key_has_identity)
        return CACHE_SKIP_PRIVATE;
    /* A cookie set for one client must never be replayed to another. */
    if (has_set_cookie)
        return CACHE_SKIP_SET_COOKIE;
    if (ttl_ms <= 0 && stale_ms <= 0)
        return CACHE_SKIP_ZERO_TTL;
    return CACHE_STORE;
}

const char *cache_verdict_name(enum cache_verdict v)
{
    switch (v) {
    case CACHE_STORE:
        return "store";
    case CACHE_SKIP_METHOD:
        return "method";
    case CACHE_SKIP_STATUS:
        return "status";
    case CACHE_SKIP_NO_STORE:
        return "no-store";
    case CACHE_SKIP_NO_CACHE:
        return "no-cache";
    case CACHE_SKIP_PRIVATE:
        return "private";
    case CACHE_SKIP_SET_COOKIE:
        return "set-cookie";
    case CACHE_SKIP_VARY_STAR:
        return "vary-star";
    case CACHE_SKIP_ZERO_TTL:
        return "zero-ttl";
    }
    return "unknown";
}

/* A slice of an input list; <key_len> is the part sorted on first. */
struct cache_slice {
    const char *p;
    size_t len, key_len, idx;
};

/* The byte of name <s>/<len> at *<i>, advancing *<i>, as the most lenient
 * framework reads it: "%XX" decoded, '+' a space, ASCII letters in lower
 * case (ASP.NET's query names ignore case). */
static int cache_name_byte(const char *s, size_t len, size_t *i)
{
    unsigned char c = (unsigned char)s[(*i)++];
    if (c == '%' && len - *i >= 2 && str_hex_digit(s[*i]) >= 0 && str_hex_digit(s[*i + 1]) >= 0) {
        c = (unsigned char)(str_hex_digit(s[*i]) * 16 + str_hex_digit(s[*i + 1]));
        *i += 2;
    } else if (c == '+') {
        c = ' ';
    }
    return cache_lower(c);
}

/* By name as a framework may read it (cache_name_byte), then input position
 * (qsort is not stable): values of a repeated name keep their order, since
 * frameworks read "a=2&a=1" and "a=1&a=2" as different requests (Django,
 * PHP and Rails take the last), and so do "a=2&%61=1" and "%61=1&a=2". */
static int cache_param_cmp(const void *va, const void *vb)
{
    const struct cache_slice *a = va, *b = vb;
    size_t i = 0, j = 0;
    while (i < a->key_len && j < b->key_len) {
        int c = cache_name_byte(a->p, a->key_len, &i) - cache_name_byte(b->p, b->key_len, &j);
        if (c != 0)
            return c;
    }
    if (i < a->key_len || j < b->key_len)
        return i < a->key_len ? 1 : -1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

void cache_query_normalize(const char *q, size_t len, struct buf *out)
{
    size_t n = 1, count = 0, start = 0;
    struct cache_slice *ps;

    if (len == 0)
        return;
    /* Rack 2, Go before 1.17 and Python before 3.9.2 also split on ';':
     * "b=1&a=1;b=2" and "a=1;b=2&b=1" differ there, so such a query is
     * kept as sent. */
    if (memchr(q, ';', len)) {
        buf_append(out, q, len);
        return;
    }
    for (size_t i = 0; i < len; i++)
        n += q[i] == '&';
    ps = sl_malloc(n * sizeof *ps);
    for (size_t i = 0; i <= len; i++) {
        if (i < len && q[i] != '&')
            continue;
        if (i > start) {
            const char *eq = memchr(q + start, '=', i - start);
            struct cache_slice *s = &ps[count];
            s->p = q + start;
            s->len = i - start;
            s->key_len = eq ? (size_t)(eq - s->p) : s->len;
            s->idx = count++;
        }
        start = i + 1;
    }
    qsort(ps, count, sizeof *ps, cache_param_cmp);
    buf_reserve(out, len);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            buf_append(out, "&", 1);
        buf_append(out, ps[i].p, ps[i].len);
    }
    free(ps);
}

static int cache_icase_cmp(const void *va, const void *vb)
{
    const struct cache_slice *a = va, *b = vb;
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        int c = cache_lower((unsigned char)a->p[i]) - cache_lower((unsigned char)b->p[i]);
        if (c != 0)
            return c;
    }
    return (a->len > b->len) - (a->len < b->len);
}

bool cache_vary_names(const char *v, size_t len, struct buf *out)
{
    size_t n = 1, count = 0, start = 0;
    struct cache_slice *ns;

    for (size_t i = 0; i < len; i++)
        n += v[i] == ',';
    ns = sl_malloc(n * sizeof *ns);
    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != ',')
            continue;
        size_t tl;
        const char *t = cache_trim(v + start, i - start, &tl);
        start = i + 1;
        if (tl == 0)
            continue;
        /* Checked before anything is appended: on false <out> is untouched. */
        if (tl == 1 && t[0] == '*') {
            free(ns);
            return false;
        }
        ns[count] = (struct cache_slice){.p = t, .len = tl, .key_len = tl, .idx = count};
        count++;
    }
    qsort(ns, count, sizeof *ns, cache_icase_cmp);
    size_t written = 0;
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && cache_icase_cmp(&ns[i - 1], &ns[i]) == 0)
            continue;
        if (written++ > 0)
            buf_append(out, ",", 1);
        buf_reserve(out, ns[i].len);
        for (size_t j = 0; j < ns[i].len; j++)
            out->data[out->len++] = (char)cache_lower((unsigned char)ns[i].p[j]);
    }
    free(ns);
    return true;
}

/* Weak comparison (RFC 9110 8.8.3.2) ignores the W/ prefix on both sides. */
static const char *cache_etag_strip_weak(const char *s, size_t *len)
{
    if (*len >= 2 && s[0] == 'W' && s[1] == '/') {
        *len -= 2;
        return s + 2;
    }
    return s;
}

bool cache_etag_matches(const char *inm, size_t len, const char *etag, size_t etag_len)
{
    size_t el, i = 0;
    const char *e = cache_trim(etag, etag_len, &el);

    e = cache_etag_strip_weak(e, &el);
    while (i < len) {
        while (i < len && (cache_is_ows(inm[i]) || inm[i] == ','))
            i++;
        if (i >= len)
            break;
        size_t start = i, tl;
        const char *t;
        if (inm[i] == '"' ||
            (len - i >= 3 && inm[i] == 'W' && inm[i + 1] == '/' && inm[i + 2] == '"')) {
            /* A quoted opaque-tag may contain commas; it ends at the next quote. */
            i += inm[i] == '"' ? 1 : 3;
            const char *close = memchr(inm + i, '"', len - i);
            if (!close)
                return false;
            i = (size_t)(close - inm) + 1;
            tl = i - start;
            t = inm + start;
        } else {
            /* "*" or an unquoted tag from a sloppy client: up to the comma. */
            while (i < len && inm[i] != ',')
                i++;
            t = cache_trim(inm + start, i - start, &tl);
            if (tl == 1 && t[0] == '*')
                return true;
        }
        t = cache_etag_strip_weak(t, &tl);
        if (tl > 0 && tl == el && memcmp(t, e, tl) == 0)
            return true;
        while (i < len && inm[i] != ',')
            i++;
    }
    return false;
}

static const char *const cache_wkday[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const cache_weekday[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                             "Thursday", "Friday", "Saturday"};
static const char *const cache_month[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* A cursor over a date being parsed; every step fails once <ok> is false,
 * so a parser reads as the grammar and checks once at the end. */
struct cache_date_cur {
    const char *s;
    size_t len, i;
    bool ok;
};

static void cache_date_lit(struct cache_date_cur *c, const char *lit)
{
    size_t n = strlen(lit);
    if (c->ok && c->len - c->i >= n && memcmp(c->s + c->i, lit, n) == 0)
        c->i += n;
    else
        c->ok = false;
}

/* Exactly <n> digits; a leading space stands for a zero when <space_ok>
 * (asctime's day of month, "Nov  6"). */
static int cache_date_num(struct cache_date_cur *c, size_t n, bool space_ok)
{
    int v = 0;
    if (!c->ok || c->len - c->i < n) {
        c->ok = false;
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        char ch = c->s[c->i + k];
        if (ch == ' ' && space_ok && k == 0)
            continue;
        if (ch < '0' || ch > '9') {
            c->ok = false;
            return 0;
        }
        v = v * 10 + (ch - '0');
    }
    c->i += n;
    return v;
}

/* Which of the <n> names <names> is next (case-sensitive, RFC 9110 5.6.7). */
static int cache_date_name(struct cache_date_cur *c, const char *const *names, int n)
{
    for (int k = 0; c->ok && k < n; k++) {
        size_t l = strlen(names[k]);
        if (c->len - c->i >= l && memcmp(c->s + c->i, names[k], l) == 0) {
            c->i += l;
            return k;
        }
    }
    c->ok = false;
    return 0;
}

static void cache_date_time(struct cache_date_cur *c, struct tm *tm)
{
    tm->tm_hour = cache_date_num(c, 2, false);
    cache_date_lit(c, ":");
    tm->tm_min = cache_date_num(c, 2, false);
    cache_date_lit(c, ":");
    tm->tm_sec = cache_date_num(c, 2, false);
}

static bool cache_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* RFC 9110 5.6.7: a two-digit year more than 50 years ahead of <now_year>
 * means the most recent past year with those digits. Taking the year
 * nearest to now in (now-50, now+50] also gives that. */
static int cache_rfc850_year(int yy, int now_year)
{
    int y = now_year - now_year % 100 + yy;
    if (y > now_year + 50)
        y -= 100;
    else if (y <= now_year - 50)
        y += 100;
    return y;
}

int64_t cache_http_date(const char *s, size_t len)
{
    struct cache_date_cur c = {.ok = true};
    struct tm tm = {0};
    int year = 0;

    c.s = cache_trim(s, len, &c.len);
    if (c.len >= 4 && c.s[3] == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        cache_date_name(&c, cache_wkday, 7);
        cache_date_lit(&c, ", ");
        tm.tm_mday = cache_date_num(&c, 2, false);
        cache_date_lit(&c, " ");
        tm.tm_mon = cache_date_name(&c, cache_month, 12);
        cache_date_lit(&c, " ");
        year = cache_date_num(&c, 4, false);
        cache_date_lit(&c, " ");
        cache_date_time(&c, &tm);
        cache_date_lit(&c, " GMT");
    } else if (c.len >= 4 && c.s[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        cache_date_name(&c, cache_wkday, 7);
        cache_date_lit(&c, " ");
        tm.tm_mon = cache_date_name(&c, cache_month, 12);
        cache_date_lit(&c, " ");
        tm.tm_mday = cache_date_num(&c, 2, true);
        cache_date_lit(&c, " ");
        cache_date_time(&c, &tm);
        cache_date_lit(&c, " ");
        year = cache_date_num(&c, 4, false);
    } else {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        cache_date_name(&c, cache_weekday, 7);
        cache_date_lit(&c, ", ");
        tm.tm_mday = cache_date_num(&c, 2, false);
        cache_date_lit(&c, "-");
        tm.tm_mon = cache_date_name(&c, cache_month, 12);
        cache_date_lit(&c, "-");
        int yy = cache_date_num(&c, 2, false);
        cache_date_lit(&c, " ");
        cache_date_time(&c, &tm);
        cache_date_lit(&c, " GMT");
        if (c.ok) {
            /* The one input from outside: the rule is relative to today. */
            time_t now = (time_t)(clock_wall_us() / 1000000);
            struct tm now_tm;
            gmtime_r(&now, &now_tm);
            year = cache_rfc850_year(yy, now_tm.tm_year + 1900);
        }
    }
    if (!c.ok || c.i != c.len)
        return -1;

    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = mdays[tm.tm_mon] + (tm.tm_mon == 1 && cache_leap(year));
    /* Second 60 is a leap second (RFC 9110 5.6.7); timegm carries it over. */
    if (tm.tm_mday < 1 || tm.tm_mday > dim || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year = year - 1900;
    int64_t t = (int64_t)timegm(&tm);
    /* Any instant before the epoch is simply "long ago" to a cache, and -1
     * must stay the error value. */
    return t < 0 ? 0 : t;
}

static char *cache_put2(char *p, int v)
{
    *p++ = (char)('0' + v / 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

void cache_format_http_date(int64_t t, char *out)
{
    struct tm tm;
    time_t tt;
    char *p = out;

    /* Clamped so the year keeps four digits and the output its 29 bytes. */
    tt = (time_t)(t < 0 ? 0 : t > CACHE_MAX_DATE_S ? CACHE_MAX_DATE_S : t);
    gmtime_r(&tt, &tm);
    int year = tm.tm_year + 1900;
    memcpy(p, cache_wkday[tm.tm_wday], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = cache_put2(p, tm.tm_mday);
    *p++ = ' ';
    memcpy(p, cache_month[tm.tm_mon], 3);
    p += 3;
    *p++ = ' ';
    p = cache_put2(p, year / 100);
    p = cache_put2(p, year % 100);
    *p++ = ' ';
    p = cache_put2(p, tm.tm_hour);
    *p++ = ':';
    p = cache_put2(p, tm.tm_min);
    *p++ = ':';
    p = cache_put2(p, tm.tm_sec);
    memcpy(p, " GMT", 5);
}

void cache_key_field(struct buf *out, char tag, const char *p, size_t len)
{
    buf_append(out, &tag, 1);
    buf_append_u64(out, (uint64_t)len);
    buf_append(out, ":", 1);
    buf_append(out, p, len);
}

void cache_key_primary(struct buf *out, const char *host, size_t host_len, const char *url,
                       size_t url_len, const char *digest)
{
    cache_key_field(out, 'm', "G", 1);
    buf_append(out, "h", 1);
    buf_append_u64(out, (uint64_t)host_len);
    buf_append(out, ":", 1);
    buf_reserve(out, host_len);
    for (size_t i = 0; i < host_len; i++)
        out->data[out->len++] = (char)cache_lower((unsigned char)host[i]);
    cache_key_field(out, 'u', url, url_len);
    if (digest)
        cache_key_field(out, 'c', digest, strlen(digest));
}

/* Request headers that frameworks read as the request's method, host,
 * scheme, path prefix or URL: what a key stands for. The gateway writes
 * X-Forwarded-Host, -Proto and -Port itself, so the client's never arrive. */
static const char *const cache_override_headers[] = {
    "forwarded",              /* RFC 7239 host= and proto=: Spring, Rack 3 */
    "x-forwarded-scheme",     /* Rack */
    "x-forwarded-ssl",        /* Rack: "on" is https */
    "front-end-https",        /* Rack, IIS */
    "x-forwarded-prefix",     /* Spring, Werkzeug ProxyFix: links and redirects */
    "x-forwarded-server",     /* apps behind Apache mod_proxy */
    "x-host",                 /* host overrides found by Param Miner */
    "x-original-host",        /* apps behind IIS ARR */
    "x-original-url",         /* Symfony, Zend, IIS: another path is served */
    "x-rewrite-url",          /* Symfony, Zend */
    "x-http-method-override", /* Express method-override, Spring, Rails */
    "x-http-method",          /* OData, Symfony */
    "x-method-override",      /* Symfony */
};

bool cache_is_override_header(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(cache_override_headers) / sizeof(cache_override_headers[0]);
         i++) {
        const char *h = cache_override_headers[i];
        size_t j = 0;
        while (j < len && h[j] &&
               (cache_lower((unsigned char)name[j]) == (unsigned char)h[j] ||
                (name[j] == '_' && h[j] == '-')))
            j++;
        if (j == len && !h[j])
            return true;
    }
    return false;
}

void cache_key_vary(struct buf *out, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    cache_key_field(out, 'n', name, name_len);
    if (value)
        cache_key_field(out, 'v', value, value_len);
    else
        buf_append(out, "-", 1); /* absent: no field of its own can start with '-' */
}

/* The glob runs as a bit-parallel NFA (shift-and, Baeza-Yates and Gonnet;
 * Wu and Manber's agrep): state j means "pattern bytes 0..j-1 matched", one
 * bit each, state m (the pattern's length) accepts. A byte c moves every
 * active state j whose pattern byte is c or '?' to j+1, keeps every active
 * '*' state where it is, and a '*' state also activates the state after it
 * (the star matching nothing). Runs of '*' are merged when compiling, so that
 * closure takes one shift. Each url byte costs a pass over the words of the
 * state set, and nothing is ever revisited: a backtracking matcher costs
 * O(pattern * len) on "*aaaa...ab" against "aaaa...a", which is what made a
 * 5,000-byte pattern hold a worker for seconds. */
struct cache_glob {
    size_t words;   /* 64-bit words of a state set */
    size_t accept;  /* the accepting state: the merged pattern's length */
    uint64_t *star; /* states whose pattern byte is '*' */
    uint64_t *init; /* state 0 and its closure */
    uint64_t *byte; /* [256][words]: states whose pattern byte is that byte or '?' */
};

#define CACHE_GLOB_BIT(set, j) ((set)[(j) / 64] |= UINT64_C(1) << ((j) % 64))

struct cache_glob *cache_glob_new(const char *pattern)
{
    size_t plen = strnlen(pattern, CACHE_MAX_GLOB + 1);
    if (plen > CACHE_MAX_GLOB)
        return NULL;
    struct cache_glob *g = sl_calloc(1, sizeof(*g));
    g->words = plen / 64 + 1; /* room for state plen, the largest possible */
    uint64_t *sets = sl_calloc((2 + 256) * g->words, sizeof(uint64_t));
    g->star = sets;
    g->init = sets + g->words;
    g->byte = sets + 2 * g->words;
    size_t m = 0;
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)pattern[i];
        if (c == '*' && i > 0 && pattern[i - 1] == '*')
            continue;
        if (c == '*') {
            CACHE_GLOB_BIT(g->star, m);
        } else if (c == '?') {
            for (unsigned b = 0; b < 256; b++)
                CACHE_GLOB_BIT(g->byte + b * g->words, m);
        } else {
            CACHE_GLOB_BIT(g->byte + c * g->words, m);
        }
        m++;
    }
    g->accept = m;
    CACHE_GLOB_BIT(g->init, 0);
    if (m > 0 && pattern[0] == '*')
        CACHE_GLOB_BIT(g->init, 1);
    return g;
}

void cache_glob_free(struct cache_glob *g)
{
    if (!g)
        return;
    free(g->star); /* the one allocation of every set */
    free(g);
}

bool cache_glob_test(const struct cache_glob *g, const char *s, size_t len)
{
    uint64_t d[CACHE_MAX_GLOB / 64 + 1];
    size_t words = g->words;
    memcpy(d, g->init, words * sizeof(uint64_t));
    /* Words above <top> are zero, and a byte moves states up by one at
     * most: only words 0..top+1 need a pass. Usually the live states sit in
     * the first word or two, so a long pattern costs more only on urls that
     * keep many of its states alive. */
    size_t top = 0;
    for (size_t i = 0; i < len; i++) {
        const uint64_t *on = g->byte + (unsigned char)s[i] * words;
        uint64_t carry = 0, closure = 0;
        size_t end = top + 2 < words ? top + 2 : words, live = SIZE_MAX;
        for (size_t w = 0; w < end; w++) {
            uint64_t moved = d[w] & on[w];
            uint64_t next = (moved << 1) | carry | (d[w] & g->star[w]);
            carry = moved >> 63;
            uint64_t stars = next & g->star[w];
            next |= (stars << 1) | closure; /* the state after a star is not a star */
            closure = stars >> 63;
            d[w] = next;
            live = next ? w : live;
        }
        if (live == SIZE_MAX)
            return false; /* no state left: nothing can match any more */
        top = live;
    }
    return (d[g->accept / 64] >> (g->accept % 64)) & 1;
}

bool cache_glob_match(const char *pattern, const char *s, size_t len)
{
    struct cache_glob *g = cache_glob_new(pattern);
    bool match = g && cache_glob_test(g, s, len);
    cache_glob_free(g);
    return match;
}

void cache_times_at(int64_t now_us, int64_t ttl_ms, int64_t swr_ms, int64_t sie_ms,
                    struct cache_times *t)
{
    t->stored_us = now_us;
    t->fresh_until_us = now_us + (ttl_ms > 0 ? ttl_ms : 0) * 1000;
    t->swr_until_us = t->fresh_until_us + (swr_ms > 0 ? swr_ms : 0) * 1000;
    t->sie_until_us = t->fresh_until_us + (sie_ms > 0 ? sie_ms : 0) * 1000;
}

enum cache_freshness cache_freshness_at(const struct cache_times *t, int64_t now_us)
{
    if (now_us < t->fresh_until_us)
        return CACHE_FRESH;
    if (now_us < t->swr_until_us)
        return CACHE_REVALIDATE;
    if (now_us < t->sie_until_us)
        return CACHE_IF_ERROR;
    return CACHE_EXPIRED;
}

bool cache_usable_on_error(const struct cache_times *t, int64_t now_us)
{
    return now_us < t->sie_until_us;
}

int64_t cache_age_s(const struct cache_times *t, int64_t now_us)
{
    int64_t a = (now_us - t->stored_us) / 1000000;
    return a > 0 ? a : 0;
}
