/* The graphql module: on a GraphQL route, reads the start of the request
 * body to learn the operation (SPEC 7.4) before the limits decide, then
 * hands the body on untouched. */
#include "conf/walker.h"
#include "guard/graphql.h"
#include "modules.h"
#include "util/buf.h"

/* A GraphQL body is read (up to this much) to name the operation; the
 * query comes first in practice, and the rest still streams. */
#define GQL_PEEK (64u << 10)

/* x->ctx[MOD_graphql]: the body read so far, then the operation found. */
struct gql_exchange {
    struct buf data;
    struct gql_op op;
    bool found;
};

const struct gql_op *gql_exchange_op(const struct exchange *x)
{
    const struct gql_exchange *g = x->ctx[MOD_graphql];
    return g && g->found ? &g->op : NULL;
}

static void gql_body_release(struct exchange *x, void *arg)
{
    struct gql_exchange *g = arg;
    buf_release(&g->data);
}

static void gql_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct gql_exchange *g = x->ctx[MOD_graphql];
    buf_append(&g->data, data, len);
    if (!end && g->data.len < GQL_PEEK)
        return;
    g->found = gql_inspect_json(g->data.data ? g->data.data : "", g->data.len, &g->op);
    /* Everything read goes back to the queue for the proxy, unchanged. */
    exchange_requeue_body(x, g->data.data, g->data.len);
    buf_release(&g->data);
    exchange_resume(x);
}

static enum stage_result gql_stage(struct exchange *x)
{
    bool has_body = x->content_length > 0 || x->chunked;
    if (x->route->rejection != CFG_REJECT_GRAPHQL || !has_body)
        return STAGE_NEXT;
    struct gql_exchange *g = arena_calloc(x->arena, sizeof(*g));
    x->ctx[MOD_graphql] = g;
    exchange_on_end(x, gql_body_release, g);
    exchange_set_body_sink(x, gql_body_sink);
    return STAGE_WAIT;
}

static const struct sl_stage gql_stages[] = {
    {SL_PHASE_INSPECT, false, gql_stage},
};

/* A route's `graphql` (SPEC 7.4): operation limits and document caps are
 * still to come; an error until then, never silently ignored. */
static const struct cfg_key gql_cfg_route_keys[] = {
    CFG_UNSUPPORTED("graphql"),
    CFG_END,
};
static const struct cfg_section gql_cfg_route_section = {gql_cfg_route_keys, NULL};
static const struct cfg_module gql_cfg_module = {
    .route = &gql_cfg_route_section,
    .route_size = 1,
};

const struct sl_module graphql_module = {
    .name = "graphql",
    .conf = &gql_cfg_module,
    .stages = gql_stages,
    .n_stages = 1,
};
