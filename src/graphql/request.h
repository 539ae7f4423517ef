#ifndef SLUICE_GQL_REQUEST_H
#define SLUICE_GQL_REQUEST_H
/* The operations of one GraphQL HTTP request (SPEC 7.4), read with the
 * bounded parser (graphql/parse.h): a POST body `{"query": ...,
 * "operationName": ..., "variables": {...}}` or a batch, a JSON array of
 * such objects (each entry is one operation), or a GET query string
 * `query=...&operationName=...&variables=...`. Pure: no exchange, no I/O,
 * so unit tests and the fuzz harness call it directly.
 *
 * Bounds, all reported as errors: the body or query string (at most
 * GQLP_DEFAULT_MAX_BYTES), a batch of at most SL_MAX_GQL_BATCH entries,
 * JSON nested at most 64 deep, and each document the parser's limits
 * (gqlp_default_limits). The JSON is strict (RFC 8259) and query,
 * operationName and variables may each appear once (request.c says why). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graphql/parse.h"

struct arena;

/* One operation of the request. Strings are in the arena. */
struct gqlr_op {
    enum gqlp_op_type type;
    const char *type_name; /* "query", "mutation", "subscription" (static) */
    const char *name;      /* the operation's name, "" when anonymous */
    const char *field;     /* its first root field, "" when none */
    uint32_t depth, aliases, root_fields, cost;
    /* Bit i: watch[i] is the operation's name or one of its root fields. */
    uint32_t watched;
};

struct gqlr_request {
    struct gqlr_op *ops; /* in request order; in the arena */
    size_t n_ops;
    uint32_t cost; /* the sum of the operations' costs, saturated at GQLP_SATURATED */
};

/* Why a request could not be read: the parser's message, or what is wrong
 * with the JSON around it; printable text for an error body. */
struct gqlr_error {
    char message[256];
};

/* What to look for while reading: names of operation limits (at most
 * GQLP_MAX_WATCH; more are ignored). */
struct gqlr_watch {
    const char *const *names;
    unsigned n;
};

/* Read the JSON body <body>/<len> into <out>, allocating from <a>; <watch>
 * may be NULL. 0, or -1 with <err> set (nothing in <out> to use). */
int gqlr_from_json(const char *body, size_t len, const struct gqlr_watch *watch, struct arena *a,
                   struct gqlr_request *out, struct gqlr_error *err);

/* Read the query string <query>/<len> (after '?', percent-encoded as a form:
 * '+' is a space) into <out>, as gqlr_from_json. Parameters other than
 * query, operationName and variables are ignored; a repeated one is an
 * error (two readers could pick different ones). */
int gqlr_from_query(const char *query, size_t len, const struct gqlr_watch *watch, struct arena *a,
                    struct gqlr_request *out, struct gqlr_error *err);

/* Does query string <query>/<len> carry a GraphQL parameter (query,
 * operationName, variables)? Some servers read them on a POST too, so a
 * POST that has them could run what the gateway did not read. Scratch
 * memory from <a>. */
bool gqlr_query_has_params(const char *query, size_t len, struct arena *a);

#endif
