/* libFuzzer harness: a GraphQL HTTP request into its operations
 * (graphql/request.h), the reader the graphql stage runs on every request
 * of a GraphQL route. The first byte picks the reader (a POST body, or a
 * GET query string) and a watch list; the rest is the input. What comes
 * out must respect the bounds: at most SL_MAX_GQL_BATCH operations, watch
 * bits only for names that exist, a cost that is the saturated sum, and a
 * printable message on error. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "graphql/request.h"
#include "util/arena.h"
#include "util/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"tokenAuth", "createErrand", "me", "a", "Q"};

static void check(const struct gqlr_request *r, unsigned n_watch)
{
    if (r->n_ops < 1 || r->n_ops > SL_MAX_GQL_BATCH)
        FUZZ_ABORT();
    uint64_t sum = 0;
    for (size_t i = 0; i < r->n_ops; i++) {
        const struct gqlr_op *o = &r->ops[i];
        if (n_watch < 32 && (o->watched >> n_watch) != 0)
            FUZZ_ABORT();
        if (strcmp(o->type_name, "query") != 0 && strcmp(o->type_name, "mutation") != 0 &&
            strcmp(o->type_name, "subscription") != 0)
            FUZZ_ABORT();
        if (o->depth < 1 || o->root_fields < 1 || !o->field[0])
            FUZZ_ABORT();
        (void)strlen(o->name);
        sum += o->cost;
    }
    if (r->cost != (sum > GQLP_SATURATED ? GQLP_SATURATED : sum))
        FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool get = data[0] & 1;
    unsigned n_watch = (data[0] >> 1) % (sizeof(names) / sizeof(names[0]) + 1);
    size--;
    /* A copy of exactly <size> bytes, so ASan sees any read past the end. */
    char *in = malloc(size ? size : 1);
    memcpy(in, data + 1, size);
    struct arena *a = arena_new(4096);
    struct gqlr_watch watch = {names, n_watch};
    struct gqlr_request r;
    struct gqlr_error err;
    memset(&err, 0x55, sizeof(err));
    int rc = get ? gqlr_from_query(in, size, &watch, a, &r, &err)
                 : gqlr_from_json(in, size, &watch, a, &r, &err);
    if (rc == 0) {
        check(&r, n_watch);
    } else {
        if (rc != -1 || !memchr(err.message, '\0', sizeof(err.message)) || !err.message[0])
            FUZZ_ABORT();
    }
    arena_free(a);
    free(in);
    return 0;
}
