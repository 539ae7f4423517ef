/* The graphql module (SPEC 7.4): on a GraphQL route, reads the request's
 * operations with the bounded parser (graphql/request.h) before the limits
 * decide, refuses documents past the route's depth, alias, root-field and
 * cost caps, tells the limit stage which type and operation counters the
 * request counts against (limit/extra.h), adds X-GraphQL-Cost, and hands
 * the body on to the upstream byte for byte.
 *
 * A route is a GraphQL route when it has `graphql:` (strict: what cannot
 * be read is refused, since it could not be counted or checked) or only
 * `rejection: graphql` (lenient: the operation is read, if it can be, just
 * to name it in a 429; the body up to 64 KiB is looked at, the rest
 * streams). */
#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "conf/walker.h"
#include "graphql/conf.h"
#include "graphql/request.h"
#include "limit/extra.h"
#include "modules.h"
#include "util/buf.h"
#include "util/json.h"

/* The documents are parsed in a per-worker scratch arena (w->ctx[MOD_graphql]),
 * emptied after each request, not in the exchange's: a 2 KB query's tree
 * is tens of KB, and growing and freeing that much on every request cost
 * more than the parse (heap growth and trimming, page faults). What the
 * later stages need (gqlr_op, a few names) is copied to the exchange. Its
 * block is kept up to this size. */
#define GQL_SCRATCH_FIRST (32u << 10)
#define GQL_SCRATCH_KEEP (512u << 10)

/* x->ctx[MOD_graphql]: the body read so far. */
struct gql_exchange {
    struct buf data;
    bool too_big; /* strict: more than GQLP_DEFAULT_MAX_BYTES came */
};

static void gql_body_release(struct exchange *x, void *arg)
{
    struct gql_exchange *g = arg;
    buf_release(&g->data);
}

/* 400 {"errors": [{"message": <message>, "extensions": {"code": <code>[,
 * "limit": <limit>, "actual": <actual>]}}]}, the shape GraphQL servers use
 * for validation errors; <limit> 0: no limit and actual. */
static void gql_refuse(struct exchange *x, const char *code, const char *message, uint32_t limit,
                       uint32_t actual)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"errors\": [{\"message\": \"");
    json_str_append(&b, message);
    buf_appendf(&b, "\", \"extensions\": {\"code\": \"%s\"", code);
    if (limit)
        buf_appendf(&b, ", \"limit\": %u, \"actual\": %u", limit, actual);
    buf_append_str(&b, "}}]}\n");
    exchange_respond(x, 400, "application/json", b.data, b.len);
    buf_release(&b);
}

/* The first cap an operation of <r> goes past, in request order, then in
 * the order of SPEC 7.4 (depth, aliases, root fields, cost): that one is
 * reported. True when the request was refused. */
static bool gql_check_caps(struct exchange *x, const struct gql_route_conf *gc,
                           const struct gqlr_request *r)
{
    for (size_t i = 0; i < r->n_ops; i++) {
        const struct gqlr_op *o = &r->ops[i];
        const struct {
            uint32_t cap, actual;
            const char *code, *what;
        } caps[] = {
            {gc->max_depth, o->depth, "MAX_DEPTH_EXCEEDED", "depth"},
            {gc->max_aliases, o->aliases, "MAX_ALIASES_EXCEEDED", "aliases"},
            {gc->max_root_fields, o->root_fields, "MAX_ROOT_FIELDS_EXCEEDED", "root fields"},
            {gc->max_cost, o->cost, "MAX_COST_EXCEEDED", "cost"},
        };
        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            if (!caps[c].cap || caps[c].actual <= caps[c].cap)
                continue;
            char msg[160];
            snprintf(msg, sizeof(msg), "The %s%s%s has %s %u; at most %u is allowed", o->type_name,
                     o->name[0] ? " " : "", o->name, caps[c].what, caps[c].actual, caps[c].cap);
            gql_refuse(x, caps[c].code, msg, caps[c].cap, caps[c].actual);
            return true;
        }
    }
    return false;
}

/* The counters <r> counts against: per type, the operations of that type;
 * per configured operation, those that match it. Only configured limits
 * make counters: a client's names pick among them, never add one. False
 * (after answering 400) when they would count more than SL_MAX_GQL_COUNTS
 * times. */
static bool gql_count(struct exchange *x, const struct gql_route_conf *gc,
                      const struct gqlr_request *r)
{
    struct lim_extras *e = arena_calloc(x->arena, sizeof(*e));
    struct lim_extra *v = arena_calloc(x->arena, sizeof(*v) * (3 + (size_t)gc->n_ops));
    e->v = v;
    e->type = r->ops[0].type_name;
    e->operation = r->ops[0].field[0] ? r->ops[0].field : NULL;
    unsigned total = 0;
    for (int t = 0; t < 3; t++) {
        if (!gc->types[t])
            continue;
        struct lim_extra ex = {gc->types[t], NULL, 0, NULL, NULL};
        for (size_t i = 0; i < r->n_ops; i++) {
            if ((int)r->ops[i].type != t)
                continue;
            if (!ex.times) {
                ex.type = r->ops[i].type_name;
                ex.operation = r->ops[i].field[0] ? r->ops[i].field : NULL;
            }
            ex.times++;
        }
        if (ex.times) {
            ex.scope = gc->type_scopes[t];
            v[e->n++] = ex;
            total += ex.times;
        }
    }
    for (int k = 0; k < gc->n_ops; k++) {
        struct lim_extra ex = {&gc->ops[k].limit, NULL, 0, NULL, gc->ops[k].name};
        for (size_t i = 0; i < r->n_ops; i++) {
            if (!(r->ops[i].watched & (1u << k)))
                continue;
            if (!ex.times)
                ex.type = r->ops[i].type_name;
            ex.times++;
        }
        if (ex.times) {
            ex.scope = gc->ops[k].scope;
            v[e->n++] = ex;
            total += ex.times;
        }
    }
    if (total > SL_MAX_GQL_COUNTS) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "The request counts %u times against operation limits; at most %d", total,
                 SL_MAX_GQL_COUNTS);
        gql_refuse(x, "GRAPHQL_PARSE_FAILED", msg, 0, 0);
        return false;
    }
    lim_set_extras(x, e);
    return true;
}

static void gql_cost_header(struct exchange *x, uint32_t cost)
{
    char v[16];
    snprintf(v, sizeof(v), "%u", cost);
    exchange_add_header(x, "X-GraphQL-Cost", v);
}

/* What the request's operations mean for it, once read (<rc> 0) or not:
 * STAGE_NEXT to go on, STAGE_DONE when answered. */
static enum stage_result gql_decide(struct exchange *x, int rc, const struct gqlr_request *r,
                                    const struct gqlr_error *err)
{
    const struct gql_route_conf *gc = gql_route_conf(x->route);
    if (!gc->on) {
        /* Lenient: only names for a 429 of the route's limits. */
        if (rc == 0) {
            struct lim_extras *e = arena_calloc(x->arena, sizeof(*e));
            e->type = r->ops[0].type_name;
            e->operation = r->ops[0].field[0] ? r->ops[0].field : NULL;
            lim_set_extras(x, e);
        }
        return STAGE_NEXT;
    }
    if (rc < 0) {
        gql_refuse(x, "GRAPHQL_PARSE_FAILED", err->message, 0, 0);
        return STAGE_DONE;
    }
    gql_cost_header(x, r->cost);
    if (gql_check_caps(x, gc, r) || !gql_count(x, gc, r))
        return STAGE_DONE;
    return STAGE_NEXT;
}

/* Reads the request with <read> (gqlr_from_json or gqlr_from_query) in the
 * worker's scratch arena, then keeps the operations in <x>'s arena. */
static int gql_read(struct exchange *x, const char *in, size_t len,
                    int (*read)(const char *, size_t, const struct gqlr_watch *, struct arena *,
                                struct gqlr_request *, struct gqlr_error *),
                    struct gqlr_request *r, struct gqlr_error *err)
{
    struct arena *scratch = x->worker->ctx[MOD_graphql];
    const struct gql_route_conf *gc = gql_route_conf(x->route);
    int rc = read(in, len, gc->n_ops ? &gc->watch : NULL, scratch, r, err);
    if (rc == 0) {
        struct gqlr_op *ops = arena_alloc(x->arena, r->n_ops * sizeof(*ops));
        for (size_t i = 0; i < r->n_ops; i++) {
            ops[i] = r->ops[i];
            ops[i].name = arena_strndup(x->arena, ops[i].name, strlen(ops[i].name));
            ops[i].field = arena_strndup(x->arena, ops[i].field, strlen(ops[i].field));
        }
        r->ops = ops;
    }
    arena_reset(scratch, GQL_SCRATCH_KEEP);
    return rc;
}

static void gql_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct gql_exchange *g = x->ctx[MOD_graphql];
    bool strict = gql_route_conf(x->route)->on;
    if (!g->too_big)
        buf_append(&g->data, data, len);
    if (g->data.len > GQLP_DEFAULT_MAX_BYTES) {
        if (!strict) {
            /* Lenient: too long to read; the rest streams. */
            exchange_requeue_body(x, g->data.data, g->data.len);
            buf_release(&g->data);
            exchange_resume(x);
            return;
        }
        g->too_big = true;
        buf_release(&g->data);
    }
    if (!end)
        return;
    if (g->too_big) {
        /* Strict: what is not read could not be counted. Everything was
         * read (and dropped), so the connection stays usable. */
        char msg[96];
        snprintf(msg, sizeof(msg), "The request body is larger than %u bytes",
                 GQLP_DEFAULT_MAX_BYTES);
        gql_refuse(x, "GRAPHQL_PARSE_FAILED", msg, 0, 0);
        return;
    }
    struct gqlr_request r;
    struct gqlr_error err;
    int rc = gql_read(x, g->data.data ? g->data.data : "", g->data.len, gqlr_from_json, &r, &err);
    /* Everything read goes back to the queue for the proxy, unchanged. */
    exchange_requeue_body(x, g->data.data, g->data.len);
    buf_release(&g->data);
    if (gql_decide(x, rc, &r, &err) == STAGE_NEXT)
        exchange_resume(x);
}

static enum stage_result gql_stage(struct exchange *x)
{
    const struct gql_route_conf *gc = gql_route_conf(x->route);
    if (!gc->on && x->route->rejection != CFG_REJECT_GRAPHQL)
        return STAGE_NEXT;
    if (x->method == HTTP_GET) {
        /* Without ?query= a GET is not an operation (an IDE's page, say):
         * nothing to count, it goes through. */
        if (!x->query)
            return STAGE_NEXT;
        struct gqlr_request r;
        struct gqlr_error err;
        int rc = gql_read(x, x->query, x->query_len, gqlr_from_query, &r, &err);
        return gql_decide(x, rc, &r, &err) == STAGE_NEXT ? STAGE_NEXT : STAGE_DONE;
    }
    if (x->method != HTTP_POST)
        return STAGE_NEXT; /* OPTIONS (CORS), HEAD...: no operation */
    /* express-graphql and others also read ?query= on a POST: one request
     * must not carry an operation the gateway counts and another it runs. */
    if (gc->on && x->query && gqlr_query_has_params(x->query, x->query_len, x->arena)) {
        gql_refuse(x, "GRAPHQL_PARSE_FAILED",
                   "A POST must not carry query, operationName or variables in its URL", 0, 0);
        return STAGE_DONE;
    }
    bool has_body = x->content_length > 0 || x->chunked;
    if (!has_body) {
        if (!gc->on)
            return STAGE_NEXT;
        gql_refuse(x, "GRAPHQL_PARSE_FAILED", "Must provide query string", 0, 0);
        return STAGE_DONE;
    }
    struct gql_exchange *g = arena_calloc(x->arena, sizeof(*g));
    /* One allocation for a body of known length (a few reallocs else). */
    if (x->content_length > 0 && x->content_length <= (int64_t)GQLP_DEFAULT_MAX_BYTES)
        buf_reserve(&g->data, (size_t)x->content_length);
    x->ctx[MOD_graphql] = g;
    exchange_on_end(x, gql_body_release, g);
    /* A client waiting on Expect: 100-continue sends nothing until told. */
    exchange_send_continue(x);
    exchange_set_body_sink(x, gql_body_sink);
    return STAGE_WAIT;
}

static const struct sl_stage gql_stages[] = {
    {SL_PHASE_INSPECT, false, gql_stage},
};

static void gql_init_worker(struct worker *w)
{
    w->ctx[MOD_graphql] = arena_new(GQL_SCRATCH_FIRST);
}

static void gql_dispose_worker(struct worker *w)
{
    arena_free(w->ctx[MOD_graphql]);
}

const struct sl_module graphql_module = {
    .name = "graphql",
    .conf = &gql_cfg_module,
    .init_worker = gql_init_worker,
    .dispose_worker = gql_dispose_worker,
    .stages = gql_stages,
    .n_stages = 1,
};
