/* The graphql module's route rows (graphql/conf.h). */
#include "graphql/conf.h"

#include <string.h>

#include "conf/walker.h"
#include "signing/conf.h"
#include "util/arena.h"
#include "util/buf.h"

/* One limit string into <l>. GraphQL limits count operations over time; a
 * concurrency limit (requests in flight) would have to be held per
 * operation of a batch, which no store does, so it is refused. */
static bool gql_cfg_limit(struct cfg_ctx *cx, const char *s, int line, struct limit *l)
{
    const char *why;
    if (lim_parse(s, l, &why) < 0) {
        cfg_kerror(cx, line, "bad limit '%.*s': %s", CFG_QUOTE_MAX, s, why);
        return false;
    }
    if (l->algorithm == LIM_CONCURRENCY) {
        cfg_kerror(cx, line,
                   "'%.*s': a GraphQL limit counts operations over time, not requests "
                   "in flight (put concurrency in the route's limits)",
                   CFG_QUOTE_MAX, s);
        return false;
    }
    return true;
}

/* `query: "300/h"` and the like: one limit into a struct limit * field. */
static void gql_cfg_set_limit(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    struct limit *l = cfg_alloc(cx, sizeof(*l));
    if (gql_cfg_limit(cx, s, cfg_line(node), l))
        *(struct limit **)((char *)base + k->off) = l;
}

/* A GraphQL Name (spec 2.1.9), bounded: what an operation or field can be
 * called, so anything else could never match. */
static bool gql_cfg_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > SL_MAX_GQL_NAME || memchr(s, '\0', len))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool letter = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* `operations: {tokenAuth: "20/m", ...}`. */
static void gql_cfg_set_operations(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                   void *base)
{
    struct gql_route_conf *gc = base;
    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE, "a mapping of operation names to limits",
                            "operations", SL_MAX_GQL_OPERATION_LIMITS);
    if (count <= 0)
        return;
    gc->ops = cfg_alloc(cx, (size_t)count * sizeof(*gc->ops));
    const char **names = cfg_alloc(cx, (size_t)count * sizeof(*names));
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "operation", &len);
        if (!name)
            continue;
        if (!gql_cfg_name_ok(name, len)) {
            cfg_kerror(cx, cfg_line(key),
                       "'%.*s' is not a GraphQL name (letters, digits and _, not starting with a "
                       "digit, at most %d)",
                       CFG_QUOTE_MAX, name, SL_MAX_GQL_NAME);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < gc->n_ops && !dup; i++)
            dup = strlen(gc->ops[i].name) == len && memcmp(gc->ops[i].name, name, len) == 0;
        if (dup) {
            cfg_kerror(cx, cfg_line(key), "duplicate operation '%.*s'", (int)len, name);
            continue;
        }
        struct gql_op_limit *o = &gc->ops[gc->n_ops];
        o->name = arena_strndup(cx->c->arena, name, len);
        size_t old = cfg_path_key(cx, o->name);
        char *s = cfg_scalar(cx, k, yaml_document_get_node(cx->doc, p->value));
        bool ok = s && gql_cfg_limit(cx, s, cfg_line(key), &o->limit);
        cfg_path_pop(cx, old);
        if (ok)
            names[gc->n_ops++] = o->name;
    }
    gc->watch.names = names;
    gc->watch.n = (unsigned)gc->n_ops;
}

/* Caps: 0 is "none" only by leaving the key out; the largest is where the
 * analysis saturates. */
#define GQL_CAP_MAX 1000000000
static const struct cfg_key gql_cfg_keys[] = {
    CFG_ROW("query", gql_cfg_set_limit, struct gql_route_conf, types[GQLP_QUERY], 0, 0, NULL, 0),
    CFG_ROW("mutation", gql_cfg_set_limit, struct gql_route_conf, types[GQLP_MUTATION], 0, 0, NULL,
            0),
    CFG_ROW("subscription", gql_cfg_set_limit, struct gql_route_conf, types[GQLP_SUBSCRIPTION], 0,
            0, NULL, 0),
    CFG_CUSTOM("operations", gql_cfg_set_operations),
    CFG_INT("max_depth", struct gql_route_conf, max_depth, 1, GQL_CAP_MAX, NULL, 0),
    CFG_INT("max_aliases", struct gql_route_conf, max_aliases, 1, GQL_CAP_MAX, NULL, 0),
    CFG_INT("max_root_fields", struct gql_route_conf, max_root_fields, 1, GQL_CAP_MAX, NULL, 0),
    CFG_INT("max_cost", struct gql_route_conf, max_cost, 1, GQL_CAP_MAX, NULL, 0),
    CFG_END,
};
/* Present, so on (an absent section is not walked). The body is read here
 * before the limits; a signing route reads it whole for the proxy
 * (px_body_read_tapped), and the two do not combine: refused, as signing
 * refuses `rejection: graphql` (its rows are read before these). */
static void gql_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    static const char *const types[3] = {"query", "mutation", "subscription"};
    struct gql_route_conf *gc = base;
    gc->on = true;
    if (!cx->route)
        return;
    if (sig_route_conf(cx->route)->enabled)
        cfg_kerror(cx, line, "a GraphQL route cannot be a signing route (not supported yet)");
    /* Counter scopes name the route as the limit module does ('=' exact,
     * '^' prefix, then the path; read before the modules' rows), so they
     * survive a reload that leaves the route as it is. */
    char match = cx->route->match == CFG_MATCH_EXACT ? '=' : '^';
    const char *path = cx->route->path ? cx->route->path : "";
    struct buf b = {0};
    for (int t = 0; t < 3; t++) {
        b.len = 0;
        buf_appendf(&b, "g:%c%s:type:%s", match, path, types[t]);
        gc->type_scopes[t] = arena_strndup(cx->c->arena, b.data, b.len);
    }
    for (int i = 0; i < gc->n_ops; i++) {
        b.len = 0;
        buf_appendf(&b, "g:%c%s:op:%s", match, path, gc->ops[i].name);
        gc->ops[i].scope = arena_strndup(cx->c->arena, b.data, b.len);
    }
    buf_release(&b);
}

static const struct cfg_section gql_cfg_section = {gql_cfg_keys, gql_cfg_check};

static const struct cfg_key gql_cfg_route_keys[] = {
    CFG_SECTION("graphql", struct gql_route_cfg, graphql, &gql_cfg_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section gql_cfg_route_section = {gql_cfg_route_keys, NULL};

const struct cfg_module gql_cfg_module = {
    .route = &gql_cfg_route_section,
    .route_size = sizeof(struct gql_route_cfg),
};
