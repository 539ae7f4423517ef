/* libFuzzer harness: a GraphQL HTTP request into its operations
 * (graphql/request.h), the reader the graphql stage runs on every request
 * of a GraphQL route. The first byte picks the reader (a POST body, or a
 * GET query string) and a watch list; the rest is the input. What comes
 * out must respect the bounds: at most SL_MAX_GQL_BATCH operations, watch
 * bits only for names that exist, a cost that is the saturated sum, and a
 * message on error.
 *
 * The body's JSON scanner is checked against jansson (differential): what
 * the scanner accepts, jansson accepts (but for numbers too large for
 * jansson's types, which other parsers take), with the same query and
 * operationName text; what jansson accepts (duplicate keys refused) the
 * scanner accepts unless it nests past GQLR_MAX_JSON_DEPTH (jansson reads
 * the input with its NUL bytes made 0x01: differential() says why). The .c
 * is included to reach the scanner's static functions. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "graphql/request.c"
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

/* The string member <key> of jansson object <o> equals <s>/<len> (NULL:
 * absent or null). */
static void same_string(json_t *o, const char *key, const char *s, size_t len)
{
    json_t *v = json_object_get(o, key);
    if (!s) {
        if (v && !json_is_null(v) && json_is_string(v))
            FUZZ_ABORT();
        return;
    }
    if (!json_is_string(v) || json_string_length(v) != len || memcmp(json_string_value(v), s, len))
        FUZZ_ABORT();
}

static void differential(const char *in, size_t size, struct arena *a)
{
    struct gqlr_error err;
    struct gqlr_scan s = {in, in, in + size, 0, &err};
    struct gqlr_entry *entries = arena_alloc(a, SL_MAX_GQL_BATCH * sizeof(*entries));
    int n = 1;
    gqlr_ws(&s);
    bool batch = s.p < s.end && *s.p == '[';
    if (batch)
        n = gqlr_batch(&s, a, entries);
    else if (gqlr_object(&s, a, &entries[0]) < 0)
        n = -1;
    if (n >= 0) {
        gqlr_ws(&s);
        if (s.p != s.end)
            n = gqlr_bad(&s, "end of data expected"); /* as gqlr_from_json: err is read below */
    }
    /* jansson 2.14 loses a NUL byte it pushes back: its stream buffer
     * takes a NUL for "empty", so the NUL it reads one byte too far and
     * ungets (right after a number or a true/false/null) is never read
     * again, and {"a":1<NUL>} loads as {"a":1}. RFC 8259 allows no NUL outside a
     * string (nor a raw one inside), and the scanner refuses it, as it
     * should: a body it refuses goes nowhere. So jansson reads a copy with
     * each NUL made 0x01, another control byte, which both parsers refuse
     * wherever a NUL is refused (the scanner treats the two alike). */
    char *jin = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        jin[i] = in[i] ? in[i] : '\x01';
    json_error_t je;
    json_t *j = json_loadb(jin, size, JSON_DECODE_ANY, &je);
    json_t *strict = json_loadb(jin, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (n >= 0) {
        if (!j) {
            /* jansson's integers are 64-bit and its reals finite. */
            json_t *any = json_loadb(jin, size, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
            if (!any && !strstr(je.text, "overflow") && !strstr(je.text, "too big"))
                FUZZ_ABORT();
            json_decref(any);
        } else {
            for (int i = 0; i < n; i++) {
                json_t *o = batch ? json_array_get(j, (size_t)i) : j;
                if (!json_is_object(o))
                    FUZZ_ABORT();
                same_string(o, "query", entries[i].query, entries[i].query_len);
                same_string(o, "operationName", entries[i].name,
                            entries[i].name ? strlen(entries[i].name) : 0);
            }
        }
    } else if (strict && strstr(err.message, "not JSON") &&
               !strstr(err.message, "nested too deep") && !strstr(err.message, "given twice")) {
        FUZZ_ABORT();
    }
    json_decref(j);
    json_decref(strict);
    free(jin);
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
    if (!get)
        differential(in, size, a);
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
