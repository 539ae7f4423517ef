/* libFuzzer harness: the bounded GraphQL parser and its analysis
 * (graphql/parse.h). The first byte picks the limits (the defaults, or
 * small ones so the bounds themselves are hit), the rest is the document.
 * Parsing must stay inside its limits and analysis must give numbers that
 * respect their caps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "graphql/parse.h"
#include "util/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct gqlp_limits variants[] = {
    {GQLP_DEFAULT_MAX_BYTES, GQLP_DEFAULT_MAX_TOKENS, GQLP_DEFAULT_MAX_DEPTH},
    {GQLP_DEFAULT_MAX_BYTES, 40, GQLP_DEFAULT_MAX_DEPTH},
    {GQLP_DEFAULT_MAX_BYTES, GQLP_DEFAULT_MAX_TOKENS, 4},
    {64, GQLP_DEFAULT_MAX_TOKENS, GQLP_DEFAULT_MAX_DEPTH},
};

static void check_error(const struct gqlp_error *err)
{
    if (!memchr(err->message, '\0', sizeof(err->message)) || err->message[0] == '\0')
        FUZZ_ABORT();
    for (const char *c = err->message; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            FUZZ_ABORT();
}

static void check_info(const struct gqlp_op_info *info)
{
    if (info->depth < 1 || info->root_fields < 1 || info->n_root_names < 1)
        FUZZ_ABORT();
    if (info->n_root_names > GQLP_MAX_ROOT_NAMES || info->n_root_names > info->root_fields)
        FUZZ_ABORT();
    if (info->depth > GQLP_SATURATED || info->aliases > GQLP_SATURATED ||
        info->root_fields > GQLP_SATURATED || info->cost > GQLP_SATURATED)
        FUZZ_ABORT();
    if (strcmp(info->type_name, "query") != 0 && strcmp(info->type_name, "mutation") != 0 &&
        strcmp(info->type_name, "subscription") != 0)
        FUZZ_ABORT();
    for (unsigned i = 0; i < info->n_root_names; i++)
        if (!info->root_names[i][0])
            FUZZ_ABORT();
    (void)strlen(info->name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct gqlp_limits *lim = &variants[data[0] % (sizeof(variants) / sizeof(variants[0]))];
    size--;
    /* A copy of exactly <size> bytes, so ASan sees any read past the end. */
    char *src = malloc(size ? size : 1);
    memcpy(src, data + 1, size);
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    struct gqlp_error err;
    if (gqlp_parse(&doc, src, size, lim, a, &err) != 0) {
        check_error(&err);
    } else {
        if (doc.n_tokens > lim->max_tokens || size > lim->max_bytes)
            FUZZ_ABORT();
        struct gqlp_op_info info;
        /* Each of the first operations by name, then none named; every
         * other run with variables ($n, and a $first too large on purpose). */
        json_t *vars = json_pack("{s:i, s:i}", "n", 7, "first", 1000000);
        for (size_t i = 0; i < doc.n_ops + 1 && i < 8; i++) {
            const char *name = gqlp_operation_name(&doc, i);
            if ((i < doc.n_ops) != (name != NULL))
                FUZZ_ABORT();
            if (gqlp_analyze(&doc, name, i % 2 ? vars : NULL, &info, &err) == 0) {
                check_info(&info);
                if (name && name[0] && strcmp(info.name, name) != 0)
                    FUZZ_ABORT();
            } else {
                check_error(&err);
            }
        }
        json_decref(vars);
    }
    arena_free(a);
    free(src);
    return 0;
}
