/* The operations of a GraphQL HTTP request (graphql/request.h). */
#include "graphql/request.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "util/arena.h"
#include "util/limits.h"
#include "util/str.h"

__attribute__((format(printf, 2, 3))) static int gqlr_fail(struct gqlr_error *err, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses and analyses one operation: document <doc>/<len>, the operation
 * named <op_name> (NULL: the only one), <variables> (NULL or an object). */
static int gqlr_one(const char *doc, size_t len, const char *op_name, const json_t *variables,
                    const struct gqlr_watch *watch, struct arena *a, struct gqlr_op *out,
                    struct gqlr_error *err)
{
    struct gqlp_doc d;
    struct gqlp_error pe;
    struct gqlp_op_info info;
    const char *const *names = watch ? watch->names : NULL;
    unsigned n_names = watch ? watch->n : 0;
    if (gqlp_parse(&d, doc, len, NULL, a, &pe) < 0 ||
        gqlp_analyze_watch(&d, op_name, variables, names, n_names, &info, &pe) < 0)
        return gqlr_fail(err, "%s", pe.message);
    out->type = info.type;
    out->type_name = info.type_name;
    out->name = info.name;
    out->field = info.n_root_names ? info.root_names[0] : "";
    out->depth = info.depth;
    out->aliases = info.aliases;
    out->root_fields = info.root_fields;
    out->cost = info.cost;
    out->watched = info.watched;
    /* The operation's own name counts as one of its names (a client may
     * choose it, so it can only add counting, never avoid it). */
    for (unsigned i = 0; i < n_names && i < GQLP_MAX_WATCH; i++)
        if (info.name[0] && strcmp(names[i], info.name) == 0)
            out->watched |= 1u << i;
    return 0;
}

/* ---- the JSON body ----
 *
 * Read by a scanner of its own rather than jansson: jansson reads a 2 KB
 * query a byte at a time through its stream layer, then copies it, which
 * costs more than the rest of a proxied request; this reads it in one
 * pass. It is strict JSON (RFC 8259) as jansson is, so the gateway and the
 * upstream cannot read one body two ways: strings are checked (escapes,
 * control bytes, UTF-8, \u surrogate pairs, no \u0000), numbers and
 * literals follow the grammar, nothing but white space may follow the
 * value, and query, operationName and variables may each appear once
 * (keys compared after unescaping: "\u0071uery" is a query).
 * tests/fuzz/fuzz_graphql.c checks it against jansson. Only the value of
 * variables goes through jansson (the analysis reads it as a json_t). */

/* Nesting of arrays and objects in a body: a GraphQL request nests a few
 * levels (variables are input objects); deeper is an attack on the stack. */
#define GQLR_MAX_JSON_DEPTH 64

struct gqlr_scan {
    const char *start, *p, *end;
    unsigned depth;
    struct gqlr_error *err;
};

static int gqlr_bad(struct gqlr_scan *s, const char *what)
{
    return gqlr_fail(s->err, "The request body is not JSON: %s at byte %zu", what,
                     (size_t)(s->p - s->start));
}

static void gqlr_ws(struct gqlr_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Four hex digits at <p> (the caller checked there are four): the value,
 * or -1. */
static long gqlr_hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = str_hex_digit(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* The length of the valid UTF-8 sequence at <p> (before <end>) starting
 * with a byte >= 0x80, or 0 (Unicode table 3-7: no overlong forms, no
 * surrogates, nothing past U+10FFFF), as jansson checks. */
static size_t gqlr_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static void gqlr_put_utf8(char *d, size_t *n, unsigned long cp)
{
    if (cp < 0x80) {
        d[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        d[(*n)++] = (char)(0xC0 | cp >> 6);
        d[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        d[(*n)++] = (char)(0xE0 | cp >> 12);
        d[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        d[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        d[(*n)++] = (char)(0xF0 | cp >> 18);
        d[(*n)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        d[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        d[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* One escape at s->p (just after its backslash): its code point in *<cp>. */
static int gqlr_escape(struct gqlr_scan *s, unsigned long *cp)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (s->p >= s->end)
        return gqlr_bad(s, "unterminated string");
    char c = *s->p++;
    const char *f = c ? strchr(from, c) : NULL;
    if (f) {
        *cp = (unsigned char)to[f - from];
        return 0;
    }
    if (c != 'u')
        return gqlr_bad(s, "invalid escape");
    long hi = s->end - s->p >= 4 ? gqlr_hex4(s->p) : -1;
    if (hi < 0)
        return gqlr_bad(s, "invalid \\u escape");
    s->p += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return gqlr_bad(s, "invalid Unicode (a lone low surrogate)");
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        bool pair = s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u';
        long lo = pair ? gqlr_hex4(s->p + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return gqlr_bad(s, "invalid Unicode (a lone high surrogate)");
        s->p += 6;
        *cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
        return 0;
    }
    if (hi == 0)
        return gqlr_bad(s, "\\u0000 in a string");
    *cp = (unsigned long)hi;
    return 0;
}

/* Eight bytes at a time (SWAR, as in "Bit Twiddling Hacks": a word has a
 * zero byte when (v - 0x01..) & ~v & 0x80.. is not zero): a query is
 * mostly plain text, and this loop is most of the time spent on a body. */
#define GQLR_ONES 0x0101010101010101ull
#define GQLR_HIGHS 0x8080808080808080ull

static bool gqlr_word_plain(uint64_t v)
{
    uint64_t quote = v ^ (GQLR_ONES * '"'), bslash = v ^ (GQLR_ONES * '\\');
    uint64_t special = ((quote - GQLR_ONES) & ~quote) | ((bslash - GQLR_ONES) & ~bslash) |
                       (v - GQLR_ONES * 0x20) /* a byte < 0x20 borrows into its high bit */ | v;
    return (special & GQLR_HIGHS) == 0;
}

/* The end of the run of plain string bytes (0x20..0x7f but '"' and '\\')
 * from <p>. */
static const char *gqlr_plain_run(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        if (!gqlr_word_plain(v))
            break;
        p += 8;
    }
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' &&
           *p != '\\')
        p++;
    return p;
}

/* The string at s->p (its opening quote), checked; with <out>, decoded
 * into the arena and NUL-terminated (its JSON text bounds its length). */
static int gqlr_string(struct gqlr_scan *s, struct arena *a, const char **out, size_t *out_len)
{
    s->p++;
    char *d = NULL;
    size_t n = 0;
    if (out) {
        /* The text up to the first quote: all of it without escaped quotes. */
        const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
        size_t cap = q ? (size_t)(q - s->p) : (size_t)(s->end - s->p);
        d = arena_alloc(a, cap + 1);
        for (;;) {
            /* The plain run (no escape, quote, control byte or UTF-8): copied at once. */
            const char *run = s->p;
            s->p = gqlr_plain_run(s->p, s->end);
            size_t k = (size_t)(s->p - run);
            if (n + k + 4 > cap) {
                size_t ncap = (n + k + 4) * 2;
                d = arena_realloc(a, d, cap + 1, ncap + 1);
                cap = ncap;
            }
            memcpy(d + n, run, k);
            n += k;
            if (s->p >= s->end || *s->p == '"')
                break;
            unsigned char c = (unsigned char)*s->p;
            if (c == '\\') {
                s->p++;
                unsigned long cp;
                if (gqlr_escape(s, &cp) < 0)
                    return -1;
                gqlr_put_utf8(d, &n, cp);
            } else if (c < 0x20) {
                return gqlr_bad(s, "a control character in a string");
            } else {
                size_t u = gqlr_utf8((const unsigned char *)s->p, (const unsigned char *)s->end);
                if (!u)
                    return gqlr_bad(s, "invalid UTF-8");
                memcpy(d + n, s->p, u);
                n += u;
                s->p += u;
            }
        }
    } else {
        while ((s->p = gqlr_plain_run(s->p, s->end)) < s->end && *s->p != '"') {
            unsigned char c = (unsigned char)*s->p;
            if (c == '\\') {
                s->p++;
                unsigned long cp;
                if (gqlr_escape(s, &cp) < 0)
                    return -1;
            } else if (c < 0x20) {
                return gqlr_bad(s, "a control character in a string");
            } else if (c < 0x80) {
                s->p++;
            } else {
                size_t u = gqlr_utf8((const unsigned char *)s->p, (const unsigned char *)s->end);
                if (!u)
                    return gqlr_bad(s, "invalid UTF-8");
                s->p += u;
            }
        }
    }
    if (s->p >= s->end)
        return gqlr_bad(s, "unterminated string");
    s->p++;
    if (out) {
        d[n] = '\0';
        *out = d;
        *out_len = n;
    }
    return 0;
}

static bool gqlr_digit(const struct gqlr_scan *s)
{
    return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int gqlr_number(struct gqlr_scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (!gqlr_digit(s))
        return gqlr_bad(s, "invalid value");
    if (*s->p++ != '0')
        while (gqlr_digit(s))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!gqlr_digit(s))
            return gqlr_bad(s, "invalid number");
        while (gqlr_digit(s))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!gqlr_digit(s))
            return gqlr_bad(s, "invalid number");
        while (gqlr_digit(s))
            s->p++;
    }
    return 0;
}

static int gqlr_literal(struct gqlr_scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return gqlr_bad(s, "invalid value");
    s->p += n;
    return 0;
}

static int gqlr_value(struct gqlr_scan *s);

/* The members of the array or object at s->p, each checked; <member>
 * (objects, may be NULL) reads a member's value instead of checking it. */
static int gqlr_container(struct gqlr_scan *s,
                          int (*member)(struct gqlr_scan *s, const char *key, size_t len,
                                        void *arg),
                          struct arena *a, void *arg)
{
    char close = *s->p == '[' ? ']' : '}';
    if (++s->depth > GQLR_MAX_JSON_DEPTH)
        return gqlr_bad(s, "nested too deep");
    s->p++;
    gqlr_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        if (close == '}') {
            if (s->p >= s->end || *s->p != '"')
                return gqlr_bad(s, "a string key expected");
            if (gqlr_string(s, member ? a : NULL, member ? &key : NULL, &key_len) < 0)
                return -1;
            gqlr_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return gqlr_bad(s, "':' expected");
            s->p++;
            gqlr_ws(s);
        }
        if ((member ? member(s, key, key_len, arg) : gqlr_value(s)) < 0)
            return -1;
        gqlr_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            gqlr_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        return gqlr_bad(s, close == '}' ? "',' or '}' expected" : "',' or ']' expected");
    }
}

/* Any value at s->p, checked. */
static int gqlr_value(struct gqlr_scan *s)
{
    if (s->p >= s->end)
        return gqlr_bad(s, "a value expected");
    switch (*s->p) {
    case '"':
        return gqlr_string(s, NULL, NULL, NULL);
    case '{':
    case '[':
        return gqlr_container(s, NULL, NULL, NULL);
    case 't':
        return gqlr_literal(s, "true");
    case 'f':
        return gqlr_literal(s, "false");
    case 'n':
        return gqlr_literal(s, "null");
    default:
        return gqlr_number(s);
    }
}

/* What one request object holds that matters. */
struct gqlr_entry {
    struct arena *a;
    const char *query, *name; /* decoded; NULL: absent (or null) */
    size_t query_len;
    const char *vars; /* the variables object's JSON text; NULL: absent or null */
    size_t vars_len;
    bool seen[3]; /* query, operationName, variables: each at most once */
};

/* Reads the value of member <key> of a request object (gqlr_container's
 * <member>): query, operationName, variables; others are checked only. */
static int gqlr_member(struct gqlr_scan *s, const char *key, size_t key_len, void *arg)
{
    static const char *const keys[] = {"query", "operationName", "variables"};
    struct gqlr_entry *e = arg;
    int which = -1;
    for (int i = 0; i < 3 && which < 0; i++)
        if (key_len == strlen(keys[i]) && memcmp(key, keys[i], key_len) == 0)
            which = i;
    if (which < 0)
        return gqlr_value(s);
    if (e->seen[which])
        return gqlr_fail(s->err, "The request body is not JSON: '%s' is given twice", keys[which]);
    e->seen[which] = true;
    bool string = s->p < s->end && *s->p == '"';
    bool null = s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0;
    const char *from = s->p;
    size_t len;
    if (which == 0 && string)
        return gqlr_string(s, e->a, &e->query, &e->query_len);
    if (which == 1 && string)
        return gqlr_string(s, e->a, &e->name, &len);
    if (gqlr_value(s) < 0)
        return -1;
    if (which == 0)
        return gqlr_fail(s->err, "Must provide query string");
    if (null)
        return 0;
    if (which == 1)
        return gqlr_fail(s->err, "operationName must be a string");
    if (*from != '{')
        return gqlr_fail(s->err, "variables must be an object");
    e->vars = from;
    e->vars_len = (size_t)(s->p - from);
    return 0;
}

/* The request object at s->p into <e>. */
static int gqlr_object(struct gqlr_scan *s, struct arena *a, struct gqlr_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->a = a;
    if (s->p < s->end && *s->p == '{')
        return gqlr_container(s, gqlr_member, a, e);
    if (gqlr_value(s) < 0)
        return -1;
    return gqlr_fail(s->err, "A GraphQL request must be a JSON object");
}

/* The operation of <e>, once the whole body is known to be JSON. */
static int gqlr_entry_op(const struct gqlr_entry *e, const struct gqlr_watch *watch,
                         struct arena *a, struct gqlr_op *out, struct gqlr_error *err)
{
    if (!e->query)
        return gqlr_fail(err, "Must provide query string");
    json_t *vars = NULL;
    if (e->vars) {
        json_error_t je;
        vars = json_loadb(e->vars, e->vars_len, JSON_REJECT_DUPLICATES, &je);
        if (!vars)
            return gqlr_fail(err, "variables: %.120s", je.text);
    }
    int rc = gqlr_one(e->query, e->query_len, e->name, vars, watch, a, out, err);
    json_decref(vars);
    return rc;
}

static void gqlr_nest_error(struct gqlr_error *err, size_t i)
{
    char inner[sizeof(err->message)];
    memcpy(inner, err->message, sizeof(inner));
    gqlr_fail(err, "Operation %zu of the batch: %.200s", i, inner);
}

/* A batch at s->p ('['): its objects into <entries> (room for
 * SL_MAX_GQL_BATCH); the count, or -1. */
static int gqlr_batch(struct gqlr_scan *s, struct arena *a, struct gqlr_entry *entries)
{
    int n = 0;
    s->p++;
    s->depth++;
    gqlr_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return gqlr_fail(s->err, "An empty batch");
    }
    for (;;) {
        if (n == SL_MAX_GQL_BATCH)
            return gqlr_fail(s->err, "A batch of more than %d operations", SL_MAX_GQL_BATCH);
        if (gqlr_object(s, a, &entries[n]) < 0) {
            gqlr_nest_error(s->err, (size_t)n);
            return -1;
        }
        n++;
        gqlr_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            gqlr_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return n;
        }
        return gqlr_bad(s, "',' or ']' expected");
    }
}

static uint32_t gqlr_sat_add(uint32_t a, uint32_t b)
{
    uint64_t s = (uint64_t)a + b;
    return s > GQLP_SATURATED ? GQLP_SATURATED : (uint32_t)s;
}

static void gqlr_total(struct gqlr_request *out)
{
    out->cost = 0;
    for (size_t i = 0; i < out->n_ops; i++)
        out->cost = gqlr_sat_add(out->cost, out->ops[i].cost);
}

int gqlr_from_json(const char *body, size_t len, const struct gqlr_watch *watch, struct arena *a,
                   struct gqlr_request *out, struct gqlr_error *err)
{
    memset(out, 0, sizeof(*out));
    if (len > GQLP_DEFAULT_MAX_BYTES)
        return gqlr_fail(err, "The request body is larger than %u bytes", GQLP_DEFAULT_MAX_BYTES);
    struct gqlr_scan s = {body, body, body + len, 0, err};
    struct gqlr_entry one, *entries = &one;
    int n = 1;
    gqlr_ws(&s);
    if (s.p < s.end && *s.p == '[') {
        entries = arena_alloc(a, SL_MAX_GQL_BATCH * sizeof(*entries));
        n = gqlr_batch(&s, a, entries);
    } else if (gqlr_object(&s, a, &one) < 0) {
        n = -1;
    }
    if (n < 0)
        return -1;
    gqlr_ws(&s);
    if (s.p != s.end)
        return gqlr_bad(&s, "end of data expected");
    out->ops = arena_calloc(a, (size_t)n * sizeof(*out->ops));
    for (int i = 0; i < n; i++) {
        if (gqlr_entry_op(&entries[i], watch, a, &out->ops[i], err) < 0) {
            if (entries != &one)
                gqlr_nest_error(err, (size_t)i);
            out->ops = NULL;
            return -1;
        }
    }
    out->n_ops = (size_t)n;
    gqlr_total(out);
    return 0;
}

/* Form-decodes <s>/<len> into the arena: '+' is a space, %XX a byte (a '%'
 * not followed by two hex digits stays as it is, as most servers do). */
static char *gqlr_unescape(struct arena *a, const char *s, size_t len, size_t *out_len)
{
    char *d = arena_alloc(a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            d[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = str_hex_digit(s[i + 1])) >= 0 &&
                   (lo = str_hex_digit(s[i + 2])) >= 0) {
            d[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            d[n++] = s[i];
        }
    }
    d[n] = '\0';
    *out_len = n;
    return d;
}

/* The GET parameters a GraphQL server reads (GraphQL over HTTP, GET). */
struct gqlr_params {
    const char *v[3];
    size_t len[3];
};

/* The GraphQL parameters of query string <query>/<len> into <p>, decoded
 * into <a>; -1 with <err> when one is repeated. */
static int gqlr_params(const char *query, size_t len, struct arena *a, struct gqlr_params *p,
                       struct gqlr_error *err)
{
    static const char *const keys[3] = {"query", "operationName", "variables"};
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < len;) {
        const char *amp = memchr(query + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - query) : len;
        const char *eq = memchr(query + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - query) - i : end - i;
        size_t kdec_len;
        const char *k = gqlr_unescape(a, query + i, klen, &kdec_len);
        for (int j = 0; j < 3; j++) {
            if (kdec_len != strlen(keys[j]) || memcmp(k, keys[j], kdec_len) != 0)
                continue;
            if (p->v[j])
                return gqlr_fail(err, "The parameter %s is given twice", keys[j]);
            const char *val = eq ? eq + 1 : query + end;
            p->v[j] = gqlr_unescape(a, val, (size_t)(query + end - val), &p->len[j]);
        }
        i = end + 1;
    }
    return 0;
}

bool gqlr_query_has_params(const char *query, size_t len, struct arena *a)
{
    struct gqlr_params p;
    struct gqlr_error err;
    return gqlr_params(query, len, a, &p, &err) < 0 || p.v[0] || p.v[1] || p.v[2];
}

int gqlr_from_query(const char *query, size_t len, const struct gqlr_watch *watch, struct arena *a,
                    struct gqlr_request *out, struct gqlr_error *err)
{
    memset(out, 0, sizeof(*out));
    if (len > GQLP_DEFAULT_MAX_BYTES)
        return gqlr_fail(err, "The query string is longer than %u bytes", GQLP_DEFAULT_MAX_BYTES);
    struct gqlr_params p;
    if (gqlr_params(query, len, a, &p, err) < 0)
        return -1;
    if (!p.v[0])
        return gqlr_fail(err, "Must provide query string");
    json_t *vars = NULL;
    if (p.v[2] && p.len[2]) {
        /* jansson 2.14 drops a NUL right after a number or literal
         * ({"first":1%00} loads as {"first":1}); the body's scanner refuses
         * it, and so does this reader. */
        if (memchr(p.v[2], '\0', p.len[2]))
            return gqlr_fail(err, "variables must be a JSON object");
        json_error_t je;
        vars = json_loadb(p.v[2], p.len[2], JSON_REJECT_DUPLICATES, &je);
        if (!vars || !(json_is_object(vars) || json_is_null(vars))) {
            json_decref(vars);
            return gqlr_fail(err, "variables must be a JSON object");
        }
    }
    out->ops = arena_calloc(a, sizeof(*out->ops));
    const char *name = p.v[1] && p.len[1] ? p.v[1] : NULL;
    int rc = gqlr_one(p.v[0], p.len[0], name, vars, watch, a, out->ops, err);
    json_decref(vars);
    if (rc < 0)
        return -1;
    out->n_ops = 1;
    gqlr_total(out);
    return 0;
}
