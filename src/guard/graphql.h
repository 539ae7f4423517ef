#ifndef SLUICE_GRAPHQL_H
#define SLUICE_GRAPHQL_H
/* What a GraphQL request asks for (SPEC 7): the operation type and its
 * first top-level field, read from the request document without a full
 * parser. Used to name the operation in 429 bodies (SPEC 3.5). */
#include <stdbool.h>
#include <stddef.h>

struct gql_op {
    char type[16];  /* "query", "mutation" or "subscription" */
    char field[64]; /* the first top-level field, e.g. "createErrand" */
};

/* Inspect the GraphQL document <doc>/<len> (the "query" string). True when
 * a type and a top-level field were found. */
bool gql_inspect_document(const char *doc, size_t len, struct gql_op *op);

/* Inspect a JSON request body {"query": "...", ...}. True on success. */
bool gql_inspect_json(const char *body, size_t len, struct gql_op *op);

struct exchange;
/* The operation of <x>, read by the graphql stage; NULL when <x> is not a
 * GraphQL request or none was found. */
const struct gql_op *gql_exchange_op(const struct exchange *x);

#endif
