#ifndef SLUICE_GQL_CONF_H
#define SLUICE_GQL_CONF_H
/* A route's `graphql` (SPEC 7.4): limits per operation type and per
 * operation, and caps on each operation's depth, aliases, root fields and
 * cost. */
#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "graphql/request.h"
#include "limit/limit.h"
#include "modules.h"

/* `operations: {NAME: LIMIT}`: counts operations named NAME or with a root
 * field NAME. */
struct gql_op_limit {
    char *name;
    struct limit limit;
    char *scope; /* its counters' scope in limit keys: "g:<route>:op:<name>" */
};

struct gql_route_conf {
    bool on;                  /* the route has `graphql:` */
    struct limit *types[3];   /* query, mutation, subscription (enum gqlp_op_type); NULL: none */
    char *type_scopes[3];     /* "g:<route>:type:<type>": built once, not per request */
    struct gql_op_limit *ops; /* at most SL_MAX_GQL_OPERATION_LIMITS */
    int n_ops;
    struct gqlr_watch watch;                                    /* the ops' names, for the reader */
    uint32_t max_depth, max_aliases, max_root_fields, max_cost; /* 0: no cap */
};

/* What the module reads in a route; its first member is gql_route_conf()'s. */
struct gql_route_cfg {
    struct gql_route_conf graphql;
};

static inline const struct gql_route_conf *gql_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_graphql];
}

extern const struct cfg_module gql_cfg_module;

#endif
