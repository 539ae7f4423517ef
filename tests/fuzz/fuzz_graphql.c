/* libFuzzer harness: the GraphQL reader (guard/graphql.h). The input is
 * read both as a GraphQL document and as a JSON request body; what comes
 * out must be NUL-terminated text that fits its fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "guard/graphql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_op(const struct gql_op *op)
{
    if (!memchr(op->type, '\0', sizeof(op->type)) || !memchr(op->field, '\0', sizeof(op->field)))
        FUZZ_ABORT();
    if (strcmp(op->type, "query") != 0 && strcmp(op->type, "mutation") != 0 &&
        strcmp(op->type, "subscription") != 0)
        FUZZ_ABORT();
    if (op->field[0] == '\0')
        FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly <size> bytes, so ASan sees any read past the end. */
    char *doc = malloc(size ? size : 1);
    memcpy(doc, data, size);
    struct gql_op op;
    memset(&op, 0x55, sizeof(op));
    if (gql_inspect_document(doc, size, &op))
        check_op(&op);
    memset(&op, 0x55, sizeof(op));
    if (gql_inspect_json(doc, size, &op))
        check_op(&op);
    free(doc);
    return 0;
}
