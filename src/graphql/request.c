/* The operations of a GraphQL HTTP request (graphql/request.h). */
#include "graphql/request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "util/arena.h"
#include "util/limits.h"

__attribute__((format(printf, 2, 3))) static int gqlr_fail(struct gqlr_error *err,
                                                            const char *fmt, ...)
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

/* One entry of a body: {"query": "...", "operationName": "..."|null,
 * "variables": {...}|null}. Other members (extensions) are ignored. */
static int gqlr_entry(const json_t *o, const struct gqlr_watch *watch, struct arena *a,
                      struct gqlr_op *out, struct gqlr_error *err)
{
    if (!json_is_object(o))
        return gqlr_fail(err, "A GraphQL request must be a JSON object");
    const json_t *q = json_object_get(o, "query");
    if (!json_is_string(q))
        return gqlr_fail(err, "Must provide query string");
    const json_t *name = json_object_get(o, "operationName");
    if (name && !json_is_null(name) && !json_is_string(name))
        return gqlr_fail(err, "operationName must be a string");
    const json_t *vars = json_object_get(o, "variables");
    if (vars && !json_is_null(vars) && !json_is_object(vars))
        return gqlr_fail(err, "variables must be an object");
    return gqlr_one(json_string_value(q), json_string_length(q),
                    json_is_string(name) ? json_string_value(name) : NULL, vars, watch, a, out,
                    err);
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
        return gqlr_fail(err, "The request body is larger than %u bytes",
                         GQLP_DEFAULT_MAX_BYTES);
    json_error_t je;
    /* JSON_REJECT_DUPLICATES: {"query": A, "query": B} must not mean A to
     * the gateway and B to the upstream. */
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!doc)
        return gqlr_fail(err, "The request body is not JSON: %.120s", je.text);
    int rc = 0;
    if (json_is_array(doc)) {
        size_t n = json_array_size(doc);
        if (n == 0)
            rc = gqlr_fail(err, "An empty batch");
        else if (n > SL_MAX_GQL_BATCH)
            rc = gqlr_fail(err, "A batch of %zu operations; at most %d", n, SL_MAX_GQL_BATCH);
        out->ops = rc ? NULL : arena_calloc(a, n * sizeof(*out->ops));
        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = gqlr_entry(json_array_get(doc, i), watch, a, &out->ops[i], err);
            if (rc < 0) {
                char inner[sizeof(err->message)];
                memcpy(inner, err->message, sizeof(inner));
                gqlr_fail(err, "Operation %zu of the batch: %.200s", i, inner);
            }
        }
        out->n_ops = rc ? 0 : n;
    } else {
        out->ops = arena_calloc(a, sizeof(*out->ops));
        rc = gqlr_entry(doc, watch, a, out->ops, err);
        out->n_ops = rc ? 0 : 1;
    }
    json_decref(doc);
    if (rc == 0)
        gqlr_total(out);
    return rc;
}

static int gqlr_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
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
        } else if (s[i] == '%' && i + 2 < len && (hi = gqlr_hex(s[i + 1])) >= 0 &&
                   (lo = gqlr_hex(s[i + 2])) >= 0) {
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

int gqlr_from_query(const char *query, size_t len, const struct gqlr_watch *watch, struct arena *a,
                    struct gqlr_request *out, struct gqlr_error *err)
{
    static const char *const keys[3] = {"query", "operationName", "variables"};
    memset(out, 0, sizeof(*out));
    if (len > GQLP_DEFAULT_MAX_BYTES)
        return gqlr_fail(err, "The query string is longer than %u bytes", GQLP_DEFAULT_MAX_BYTES);
    struct gqlr_params p = {{NULL, NULL, NULL}, {0, 0, 0}};
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
            if (p.v[j])
                return gqlr_fail(err, "The parameter %s is given twice", keys[j]);
            const char *val = eq ? eq + 1 : query + end;
            p.v[j] = gqlr_unescape(a, val, (size_t)(query + end - val), &p.len[j]);
        }
        i = end + 1;
    }
    if (!p.v[0])
        return gqlr_fail(err, "Must provide query string");
    json_t *vars = NULL;
    if (p.v[2] && p.len[2]) {
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
