#ifndef SLUICE_GQL_PARSE_H
#define SLUICE_GQL_PARSE_H
/* A bounded parser of GraphQL executable documents (GraphQL spec, October
 * 2021, section 2) and a static analysis of one operation (SPEC 7.4).
 *
 * gqlp_parse() builds a small syntax tree in the caller's arena. Everything
 * is bounded while parsing, each with its own error: the input length, the
 * number of tokens and the nesting depth (selection sets, list and object
 * values, list types), so neither the C stack nor the arena can grow past
 * what the limits allow (the recursion is as deep as max_depth: keep it in
 * the hundreds). Type-system definitions (schema, type, ...) are
 * rejected. After the syntax, the document's fragments are checked: unique
 * names, no spread of an unknown fragment, no cycle (found by an iterative
 * walk), and they are put in an order where every fragment comes after the
 * fragments it spreads.
 *
 * String values are checked (escapes, terminators) but not decoded: nothing
 * downstream needs their text. Error columns count bytes, not characters.
 *
 * gqlp_analyze() picks an operation as GetOperation (spec 6.1) does: by
 * name when <operation_name> is given, else the only one; an error when the
 * name is unknown or not unique, when none is given and there are several,
 * when an anonymous operation is not alone (spec 5.2.2.1) or when there is no
 * operation at all. Its numbers:
 *
 *   depth      fields nested: a root field has depth 1, a field in its
 *              selection set depth 2, ...; fragment spreads and inline
 *              fragments add no level (their fields count where spread),
 *              so a chain of fragments can go deeper than max_depth.
 *   aliases    fields written with an alias, counted once per time they are
 *              reached: a fragment spread twice counts its aliases twice.
 *   root_fields fields of the operation's own selection set, after
 *              expanding spreads and inline fragments at the root.
 *   cost       without a schema, object fields and lists are told apart by
 *              their shape:
 *                - a field without a selection set is a scalar: 0, unless it
 *                  has a known `first`/`last` (below): then 1 x n;
 *                - a field with a selection set is an object: 1 + the cost
 *                  of its selection set;
 *                - a field with a `first` or `last` argument whose value is
 *                  known is a list of n: (1 + cost of its selection set) x n.
 *                  Known: an Int literal, or a $variable whose value in
 *                  <variables> is an integer, or, when <variables> has no
 *                  such key, whose definition has an Int default (a null or
 *                  a string given for it is not known). Both first and last
 *                  known: the larger. Negative: 0.
 *                - a field with a selection set and a `first`/`last` whose
 *                  value is not known (a variable without a value, a
 *                  non-Int literal) is a connection of unknown size: "else
 *                  10", (1 + cost of its selection set) x 10; without a
 *                  selection set it stays a scalar, 0.
 *              Spreads and inline fragments add the cost of their fields.
 *
 * Fragments are analysed once each, bottom-up in the order gqlp_parse()
 * found, so a document whose fragments double at each level ("billion
 * laughs") costs linear time; every count saturates at GQLP_SATURATED. */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct arena;

/* Every count of gqlp_op_info stops here instead of overflowing. */
#define GQLP_SATURATED 1000000000u
/* How many root field names gqlp_op_info keeps (the count is complete). */
#define GQLP_MAX_ROOT_NAMES 8

#define GQLP_DEFAULT_MAX_BYTES (64u * 1024)
#define GQLP_DEFAULT_MAX_TOKENS 15000u
#define GQLP_DEFAULT_MAX_DEPTH 500u

struct gqlp_limits {
    size_t max_bytes;    /* document length */
    unsigned max_tokens; /* lexical tokens, ignored tokens not counted */
    unsigned max_depth;  /* nesting of selection sets, values and types */
};

/* The SPEC 7.4 limits: 64 KiB, 15,000 tokens, depth 500. */
extern const struct gqlp_limits gqlp_default_limits;

struct gqlp_error {
    /* e.g. "Syntax Error: Expected Name, found \"}\" at 3:5"; printable
     * ASCII only (other bytes of quoted text become '?') */
    char message[192];
    unsigned line, column; /* 1-based; 0 when not about one place */
};

enum gqlp_op_type { GQLP_QUERY, GQLP_MUTATION, GQLP_SUBSCRIPTION };

/* The tree (see graphql/parse.c); opaque except through the functions here. */
struct gqlp_operation;
struct gqlp_fragment;

struct gqlp_doc {
    struct gqlp_operation *ops; /* in document order */
    size_t n_ops;
    struct gqlp_fragment **frags; /* each after the fragments it spreads */
    size_t n_frags;
    unsigned n_tokens; /* tokens read */
};

/* Parse the executable document <src>/<len> into <doc>, allocating from
 * <a> (NULL <lim>: gqlp_default_limits). 0, or -1 with <err> set; on error
 * <doc> is unusable but its memory is still <a>'s to free. */
int gqlp_parse(struct gqlp_doc *doc, const char *src, size_t len, const struct gqlp_limits *lim,
               struct arena *a, struct gqlp_error *err);

/* The name of <doc>'s operation <i> (document order; "" when anonymous,
 * NULL past the last), e.g. to analyse each operation of a document. */
const char *gqlp_operation_name(const struct gqlp_doc *doc, size_t i);

struct gqlp_op_info {
    enum gqlp_op_type type;
    const char *type_name;                       /* "query", "mutation" or "subscription" */
    const char *name;                            /* "" for an anonymous operation; <doc>'s memory */
    const char *root_names[GQLP_MAX_ROOT_NAMES]; /* the first ones, <doc>'s */
    unsigned n_root_names;
    uint32_t root_fields;
    uint32_t depth;
    uint32_t aliases;
    uint32_t cost;
    uint32_t watched; /* gqlp_analyze_watch: bit i set when a root field is named watch[i] */
};

/* Analyse the operation named <operation_name> (NULL or "": the only one)
 * of <doc>, reading `first`/`last` variables from the JSON object
 * <variables> (may be NULL). 0, or -1 with <err> set. */
int gqlp_analyze(const struct gqlp_doc *doc, const char *operation_name, const json_t *variables,
                 struct gqlp_op_info *out, struct gqlp_error *err);

/* How many names gqlp_analyze_watch looks for (the bits of a uint32_t). */
#define GQLP_MAX_WATCH 32u

/* gqlp_analyze, also telling which of the names <watch>/<n_watch> (at most
 * GQLP_MAX_WATCH; more are not looked at) are root fields of the
 * operation, fragments expanded: every root field is compared, not just
 * the GQLP_MAX_ROOT_NAMES kept in root_names, so a watched field cannot
 * hide behind others. Costs one strcmp per root field and name. */
int gqlp_analyze_watch(const struct gqlp_doc *doc, const char *operation_name,
                       const json_t *variables, const char *const *watch, unsigned n_watch,
                       struct gqlp_op_info *out, struct gqlp_error *err);

#endif
