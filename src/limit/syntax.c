/* The limit syntax of SPEC 3.1: "100/h", "100/5m", "10/s burst 100",
 * "20/m algorithm token_bucket", "concurrency 20". A pure function of its
 * input, so the config loader reports a bad limit with its file and line and
 * unit tests call it directly. */

#include <stdint.h>
#include <string.h>

#include "limit/limit.h"

/* Bounds of SPEC 3.1. Counts and bursts fit the 32-bit counters of
 * struct lim_state; a window longer than a year is a quota, not a rate. */
#define LIM_MAX_COUNT UINT32_MAX
#define LIM_MAX_CONCURRENCY 1000000
#define LIM_MAX_WINDOW_S (365 * 86400)
/* The "too long" message below names struct limit's bound. */
_Static_assert(sizeof(((struct limit *)0)->text) == 48, "update the 'limit too long' message");

/* Every spelling of a unit, with its length in seconds and the letter the
 * policy name uses for it. */
static const struct {
    const char *name;
    int64_t seconds;
    char letter;
} lim_units[] = {
    {"s", 1, 's'},     {"sec", 1, 's'},     {"second", 1, 's'},   {"seconds", 1, 's'},
    {"m", 60, 'm'},    {"min", 60, 'm'},    {"minute", 60, 'm'},  {"minutes", 60, 'm'},
    {"h", 3600, 'h'},  {"hr", 3600, 'h'},   {"hour", 3600, 'h'},  {"hours", 3600, 'h'},
    {"d", 86400, 'd'}, {"day", 86400, 'd'}, {"days", 86400, 'd'},
};

/* A token of the text: a run of non-blank bytes. */
struct lim_tok {
    const char *p;
    size_t len;
};

static bool lim_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The next token at *<s>, advancing past it; false at the end. */
static bool lim_next(const char **s, struct lim_tok *t)
{
    const char *p = *s;
    while (lim_blank(*p))
        p++;
    if (!*p)
        return false;
    t->p = p;
    while (*p && !lim_blank(*p))
        p++;
    t->len = (size_t)(p - t->p);
    *s = p;
    return true;
}

static bool lim_tok_is(const struct lim_tok *t, const char *word)
{
    return t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* Decimal digits only: no sign, no spaces, no hex, as in the config's other
 * numbers. 0 when <p>/<len> is a number in 1..<max>; -1 when it is no
 * number; -2 when it is one but out of range (overflow included, which is
 * why digits keep being read past <max>). */
static int lim_number(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    bool over = false;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (n > (max - d) / 10)
            over = true;
        else
            n = n * 10 + d;
    }
    if (over || n < 1)
        return -2;
    *out = n;
    return 0;
}

/* The algorithm named by <t>, by algo.c's names; -1 when unknown. The
 * caller refuses "concurrency", which has a form of its own. */
static int lim_algorithm_option(const struct lim_tok *t, enum lim_algorithm *out)
{
    char name[32]; /* longer than any algorithm's name */

    if (t->len >= sizeof name)
        return -1;
    memcpy(name, t->p, t->len);
    name[t->len] = '\0';
    int a = lim_algorithm_from_name(name);
    if (a < 0)
        return -1;
    *out = (enum lim_algorithm)a;
    return 0;
}

/* "N/[M]UNIT" into <l>: count, window and policy name. */
static int lim_parse_rate(const struct lim_tok *t, struct limit *l, const char **why)
{
    const char *slash = memchr(t->p, '/', t->len);
    const char *end = t->p + t->len;
    uint64_t count, mult = 1;

    if (!slash) {
        *why = lim_number(t->p, t->len, UINT64_MAX, &count) != -1
                   ? "missing '/UNIT' after the count (e.g. 100/h)"
                   : "expected N/UNIT (e.g. 100/h) or 'concurrency N'";
        return -1;
    }
    if (slash == t->p) {
        *why = "missing count before '/' (e.g. 100/h)";
        return -1;
    }
    if (lim_number(t->p, (size_t)(slash - t->p), LIM_MAX_COUNT, &count) < 0) {
        *why = "the count must be a whole number from 1 to 4294967295";
        return -1;
    }

    const char *m = slash + 1, *u = m;
    while (u < end && *u >= '0' && *u <= '9')
        u++;
    if (u == end) {
        *why = m == end ? "missing unit after '/' (use s, m, h or d, e.g. 100/h)"
                        : "missing unit after the window's multiplier (e.g. 100/5m)";
        return -1;
    }
    bool has_mult = u > m;
    if (has_mult && lim_number(m, (size_t)(u - m), LIM_MAX_WINDOW_S, &mult) < 0) {
        *why = "the window must be from 1s to 365d";
        return -1;
    }
    size_t unit = 0, n_units = sizeof lim_units / sizeof lim_units[0];
    for (; unit < n_units; unit++)
        if (strlen(lim_units[unit].name) == (size_t)(end - u) &&
            memcmp(lim_units[unit].name, u, (size_t)(end - u)) == 0)
            break;
    if (unit == n_units) {
        *why = "unknown unit (use s, m, h or d, or sec, min, hr, day, second(s), minute(s), "
               "hour(s), day(s))";
        return -1;
    }
    /* mult <= LIM_MAX_WINDOW_S, so the product cannot overflow. */
    int64_t window_s = (int64_t)mult * lim_units[unit].seconds;
    if (window_s > LIM_MAX_WINDOW_S) {
        *why = "the window must be from 1s to 365d";
        return -1;
    }

    l->count = count;
    l->window_us = window_s * 1000000;
    /* The names of the IETF draft's examples for the common windows; any
     * other window is named after its length, as written. */
    switch (window_s) {
    case 1:
        snprintf(l->name, sizeof l->name, "per-second");
        break;
    case 60:
        snprintf(l->name, sizeof l->name, "per-minute");
        break;
    case 3600:
        snprintf(l->name, sizeof l->name, "hourly");
        break;
    case 86400:
        snprintf(l->name, sizeof l->name, "daily");
        break;
    default:
        snprintf(l->name, sizeof l->name, "per-%llu%c", (unsigned long long)mult,
                 lim_units[unit].letter);
        break;
    }
    return 0;
}

/* The options after N/UNIT: "burst B" and "algorithm NAME", each at most
 * once, in either order. */
static int lim_parse_options(const char *s, struct limit *l, const char **why)
{
    struct lim_tok t, v;
    bool has_burst = false, has_algorithm = false;

    while (lim_next(&s, &t)) {
        if (lim_tok_is(&t, "burst")) {
            if (has_burst) {
                *why = "'burst' is given twice";
                return -1;
            }
            has_burst = true;
            if (!lim_next(&s, &v)) {
                *why = "'burst' needs a number (e.g. 10/s burst 100)";
                return -1;
            }
            if (lim_number(v.p, v.len, LIM_MAX_COUNT, &l->burst) < 0) {
                *why = "the burst must be a whole number from 1 to 4294967295";
                return -1;
            }
        } else if (lim_tok_is(&t, "algorithm")) {
            if (has_algorithm) {
                *why = "'algorithm' is given twice";
                return -1;
            }
            has_algorithm = true;
            if (!lim_next(&s, &v)) {
                *why = "'algorithm' needs a name (fixed_window, sliding_window or token_bucket)";
                return -1;
            }
            if (lim_tok_is(&v, "concurrency")) {
                *why = "a concurrency limit is written 'concurrency N', without a window";
                return -1;
            }
            if (lim_algorithm_option(&v, &l->algorithm) < 0) {
                *why = "unknown algorithm (use fixed_window, sliding_window or token_bucket)";
                return -1;
            }
        } else {
            *why = "unexpected text after the limit (options are 'burst B' and 'algorithm NAME')";
            return -1;
        }
    }
    if (has_burst && !has_algorithm)
        l->algorithm = LIM_TOKEN_BUCKET; /* only the token bucket has a burst */
    if (has_burst && l->algorithm != LIM_TOKEN_BUCKET) {
        *why = "'burst' applies to the token_bucket algorithm only";
        return -1;
    }
    return 0;
}

/* "concurrency N" into <l>; <s> is what follows the keyword. */
static int lim_parse_concurrency(const char *s, struct limit *l, const char **why)
{
    struct lim_tok t;

    if (!lim_next(&s, &t)) {
        *why = "'concurrency' needs the number of requests in flight (e.g. concurrency 20)";
        return -1;
    }
    if (lim_number(t.p, t.len, LIM_MAX_CONCURRENCY, &l->count) < 0) {
        *why = "concurrency must be a whole number from 1 to 1000000";
        return -1;
    }
    if (lim_next(&s, &t)) {
        *why = "unexpected text after 'concurrency N' (it takes no options)";
        return -1;
    }
    l->algorithm = LIM_CONCURRENCY;
    snprintf(l->name, sizeof l->name, "concurrency");
    return 0;
}

int lim_parse(const char *text, struct limit *l, const char **why)
{
    struct limit t;
    struct lim_tok tok;
    const char *s = text;
    size_t len = 0;

    memset(&t, 0, sizeof t);
    if (!lim_next(&s, &tok)) {
        *why = "empty limit (use N/UNIT, e.g. 100/h, or concurrency N)";
        return -1;
    }
    int rc = lim_tok_is(&tok, "concurrency") ? lim_parse_concurrency(s, &t, why)
                                             : lim_parse_rate(&tok, &t, why);
    if (rc == 0 && t.algorithm != LIM_CONCURRENCY)
        rc = lim_parse_options(s, &t, why);
    if (rc < 0)
        return -1;

    /* The text identifies the limit in store keys, so one spelling with
     * extra blanks must not make a second counter: blanks are folded to
     * one space. Cutting a longer text would make two limits share a key,
     * hence an error instead. */
    s = text;
    while (lim_next(&s, &tok)) {
        if (len + (len ? 1 : 0) + tok.len >= sizeof t.text) {
            *why = "limit too long (at most 47 characters)";
            return -1;
        }
        if (len)
            t.text[len++] = ' ';
        memcpy(t.text + len, tok.p, tok.len);
        len += tok.len;
    }
    t.text[len] = '\0';
    *l = t;
    return 0;
}

int lim_parse_list(const char *text, struct limit *out, int max, const char **why)
{
    int n = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        char item[sizeof(out->text) * 2];
        if (len >= sizeof(item)) {
            *why = "a limit is too long";
            return -1;
        }
        if (len) {
            if (n == max) {
                *why = "too many limits";
                return -1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            if (lim_parse(item, &out[n], why) < 0)
                return -1;
            n++;
        }
        p = end ? end + 1 : p + len;
    }
    return n;
}
