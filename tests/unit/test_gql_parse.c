/* The bounded GraphQL parser and its operation analysis (graphql/parse.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "graphql/parse.h"
#include "util/arena.h"

/* Parse <src> with <lim>; 0 or -1, the error in <err>. */
static int parse_with(const char *src, const struct gqlp_limits *lim, struct gqlp_error *err)
{
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    int rc = gqlp_parse(&doc, src, strlen(src), lim, a, err);
    arena_free(a);
    return rc;
}

static void parses(const char *src)
{
    struct gqlp_error err;
    if (parse_with(src, NULL, &err) != 0)
        fail_msg("%s: %s", src, err.message);
}

/* <src> fails with an error message containing <want>. */
static void fails(const char *src, const char *want)
{
    struct gqlp_error err;
    assert_int_equal(parse_with(src, NULL, &err), -1);
    if (!strstr(err.message, want))
        fail_msg("%s: got \"%s\", want \"%s\"", src, err.message, want);
}

/* Parse and analyse; -1 with the error of either step. */
static int analyze(const char *src, const char *op_name, const char *vars_json,
                   struct gqlp_op_info *info, struct gqlp_error *err)
{
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
    int rc = gqlp_parse(&doc, src, strlen(src), NULL, a, err);
    if (rc == 0)
        rc = gqlp_analyze(&doc, op_name, vars, info, err);
    /* Names point into the arena: check them against copies in the test. */
    static char names[GQLP_MAX_ROOT_NAMES][64], name[64];
    if (rc == 0) {
        for (unsigned i = 0; i < info->n_root_names; i++) {
            snprintf(names[i], sizeof(names[i]), "%s", info->root_names[i]);
            info->root_names[i] = names[i];
        }
        snprintf(name, sizeof(name), "%s", info->name);
        info->name = name;
    }
    json_decref(vars);
    arena_free(a);
    return rc;
}

static struct gqlp_op_info numbers(const char *src, const char *op_name, const char *vars)
{
    struct gqlp_op_info info;
    struct gqlp_error err;
    if (analyze(src, op_name, vars, &info, &err) != 0)
        fail_msg("%s: %s", src, err.message);
    return info;
}

static void expect_numbers(const char *src, const char *vars, unsigned depth, unsigned aliases,
                           unsigned roots, unsigned cost)
{
    struct gqlp_op_info i = numbers(src, NULL, vars);
    if (i.depth != depth || i.aliases != aliases || i.root_fields != roots || i.cost != cost)
        fail_msg("%s: depth %u aliases %u roots %u cost %u; want %u %u %u %u", src, i.depth,
                 i.aliases, i.root_fields, i.cost, depth, aliases, roots, cost);
}

static void test_operations(void **state)
{
    parses("{ a }");
    parses("query { a }");
    parses("query Q { a }");
    parses("mutation M { a }");
    parses("subscription S { a }");
    parses("query Q($a: Int, $b: [String!]! = [\"x\"], $c: In = {x: 1, y: [1 2]} @d) { a }");
    parses("query Q($id: ID! = 4 @deprecated(reason: \"x\")) @live { a(id: $id) }");
    parses("query Q($l: [[Int!]]!) { a }");
    struct gqlp_op_info i = numbers("mutation Create { createErrand { id } }", NULL, NULL);
    assert_int_equal(i.type, GQLP_MUTATION);
    assert_string_equal(i.type_name, "mutation");
    assert_string_equal(i.name, "Create");
    i = numbers("{ me }", NULL, NULL);
    assert_string_equal(i.type_name, "query");
    assert_string_equal(i.name, "");
    i = numbers("subscription { ticks }", NULL, NULL);
    assert_int_equal(i.type, GQLP_SUBSCRIPTION);
}

static void test_fields_and_values(void **state)
{
    parses("{ alias: field(a: $v, b: 1, c: -1.5e3, d: \"s\", e: \"\"\"block\"\"\", f: true, "
           "g: false, h: null, i: ENUM, j: [1, [2], {k: $v}], l: {m: {n: [null]}}) }");
    parses("{ a(x: 0) b(x: -0) c(x: 1.0) d(x: 1e10) e(x: 1E-3) f(x: 0.5E+2) }");
    parses("{ a @skip(if: $no) @include(if: true) { b @x } }");
    parses("{ a(o: {}) b(l: []) }");
    fails("{ a(x: 01) }", "Invalid number");
    fails("{ a(x: 1.) }", "Invalid number");
    fails("{ a(x: 1a) }", "Invalid number");
    fails("{ a(x: .5) }", "Unexpected");
    fails("{ a() }", "Expected Name, found \")\"");
    fails("query Q($a: Int = $b) { a }", "constant");
    fails("{ a(x: ) }", "Expected a value");
}

static void test_fragments(void **state)
{
    parses("query { ...F ... on T { a } ... @include(if: true) { b } ... { c } } "
           "fragment F on T @d { x ...G } fragment G on U { y }");
    fails("{ ...on T }", "Expected \"{\", found \"}\"");
    fails("{ ...on }", "Expected Name, found \"}\"");
    fails("fragment on on T { a } { a }", "fragment name");
    fails("fragment F T { a } { ...F }", "Expected \"on\"");
    fails("{ ...Missing }", "Unknown fragment \"Missing\" at 1:3");
    fails("{ ...A } fragment A on T { ...B } fragment B on T { ...A }", "Cannot spread fragment");
    fails("{ ...A } fragment A on T { a ...A }", "Cannot spread fragment \"A\" within itself");
    fails("{ a } fragment A on T { x } fragment A on T { y }", "only one fragment named \"A\"");
}

static void test_lexical(void **state)
{
    parses("\xEF\xBB\xBF{ a }");
    parses("# comment\n{ a, b,, c # trailing\r\n d\r e }");
    parses("{ a(s: \"caf\xC3\xA9 \\u00e9 \\\" \\\\ \\/ \\b \\f \\n \\r \\t\") }");
    parses("{ a(s: \"\"\"\n    indented\n      more\n    \\\"\"\" escaped \"\" quotes\n\"\"\") }");
    parses("{ a(s: \"\"\"\"\"\") b(s: \"\") }");
    fails("{ a(s: \"open) }", "Unterminated string");
    fails("{ a(s: \"line\nbreak\") }", "Unterminated string at 1:13");
    fails("{ a(s: \"\"\"open) }", "Unterminated string");
    fails("{ a(s: \"\\x\") }", "Invalid character escape sequence at 1:9");
    fails("{ a(s: \"\\u12G4\") }", "Invalid Unicode escape");
    fails("{ a(s: \"\\u12", "Invalid Unicode escape");
    fails("{ a(s: \"\x01\") }", "Invalid character within String");
    fails("{ a ?", "Unexpected character \"?\"");
    /* Quoted text in a message is printable ASCII: control bytes and UTF-8
     * (maybe cut mid-character) become '?'. */
    fails("{ a(x: 1) \"caf\xC3\xA9\ttab\" }", "Expected Name, found String \"caf???tab\" at 1:11");
    fails("{ a \"\"\"block\nstring\"\"\" }", "found BlockString \"\"\"block?string\"\"\" at 1:5");
    fails("{ a .. }", "Unexpected \".\"");
    fails("{ a\n  b\n    }}", "Expected a definition, found \"}\" at 3:6");
}

static void test_syntax_errors(void **state)
{
    fails("", "Expected a definition, found <EOF> at 1:1");
    fails("   # only a comment", "found <EOF>");
    fails("{", "Expected Name, found <EOF>");
    fails("{ }", "Expected Name, found \"}\" at 1:3");
    fails("query {\n  a {\n    }\n}", "Syntax Error: Expected Name, found \"}\" at 3:5");
    fails("query Q(a: Int) { a }", "Expected \"$\"");
    fails("query Q($a Int) { a }", "Expected \":\"");
    fails("query Q($a: ) { a }", "Expected Name");
    fails("{ a(b: [1 }", "Expected a value");
    fails("{ a(b: {c 1}) }", "Expected \":\"");
    fails("{ a } }", "Expected a definition");
    fails("foo { a }", "Expected a definition, found Name \"foo\"");
}

static void test_type_system_rejected(void **state)
{
    const char *docs[] = {"type Query { a: Int }",
                          "schema { query: Q }",
                          "scalar Date",
                          "interface I { a: Int }",
                          "union U = A | B",
                          "enum E { A }",
                          "input I { a: Int }",
                          "directive @d on FIELD",
                          "extend type Q { b: Int }",
                          "\"described\" type Q { a: Int }",
                          "{ a } type Q { a: Int }"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        fails(docs[i], "only executable definitions are accepted");
}

static void test_limits(void **state)
{
    struct gqlp_error err;
    struct gqlp_limits lim = {.max_bytes = 10, .max_tokens = 100, .max_depth = 100};
    assert_int_equal(parse_with("{ a b c d e }", &lim, &err), -1);
    assert_non_null(strstr(err.message, "Document too long: 13 bytes, the limit is 10"));
    assert_int_equal(parse_with("{ a b c }", &lim, &err), 0);

    lim = (struct gqlp_limits){.max_bytes = 1000, .max_tokens = 5, .max_depth = 100};
    assert_int_equal(parse_with("{ a b c }", &lim, &err), 0); /* 5 tokens */
    assert_int_equal(parse_with("{ a b c d }", &lim, &err), -1);
    assert_non_null(strstr(err.message, "Too many tokens: the limit is 5 at 1:11"));

    lim = (struct gqlp_limits){.max_bytes = 1000, .max_tokens = 100, .max_depth = 3};
    assert_int_equal(parse_with("{ a { b { c } } }", &lim, &err), 0);
    assert_int_equal(parse_with("{ a { b { c { d } } } }", &lim, &err), -1);
    assert_non_null(strstr(err.message, "Too deep: nesting exceeds 3"));
    assert_int_equal(parse_with("{ a(x: [[[1]]]) }", &lim, &err), -1);
    assert_int_equal(parse_with("query ($a: [[[[Int]]]]) { a }", &lim, &err), -1);
    assert_non_null(strstr(err.message, "Too deep"));

    /* The defaults: 501 nested lists are too deep, 64 KiB + 1 too long. */
    char deep[2000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{ a(x: ");
    for (int i = 0; i < 501; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    fails(deep, "Too deep: nesting exceeds 500");
    static char big[64 * 1024 + 2];
    memset(big, ' ', sizeof(big) - 1);
    memcpy(big, "{ a }", 5);
    big[sizeof(big) - 1] = '\0';
    fails(big, "Document too long");
    big[sizeof(big) - 2] = '\0';
    parses(big);
    /* 15,001 tokens: too many. */
    static char many[40000];
    n = 0;
    many[n++] = '{';
    for (int i = 0; i < 14999; i++) {
        many[n++] = ' ';
        many[n++] = 'a';
    }
    memcpy(many + n, " }", 3);
    fails(many, "Too many tokens: the limit is 15000");
}

/* The default bounds, at and one past them. */
static void test_limits_exact(void **state)
{
    /* 500 nested selection sets parse, and the analysis (which follows
     * them) gives depth 500; 501 do not parse. */
    static char deep[8192];
    size_t n = 0;
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{f");
    for (int i = 0; i < 500; i++)
        deep[n++] = '}';
    deep[n] = '\0';
    assert_int_equal(numbers(deep, NULL, NULL).depth, 500);
    memmove(deep + 2, deep, n + 1);
    memcpy(deep, "{f", 2);
    memcpy(deep + n + 2, "}", 2);
    fails(deep, "Too deep: nesting exceeds 500 at 1:1001");
    /* 15,000 tokens parse: "{" + 14,998 x "a" + "}". */
    static char many[40000];
    n = 0;
    many[n++] = '{';
    for (int i = 0; i < 14998; i++) {
        many[n++] = ' ';
        many[n++] = 'a';
    }
    memcpy(many + n, " }", 3);
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    struct gqlp_error err;
    assert_int_equal(gqlp_parse(&doc, many, strlen(many), NULL, a, &err), 0);
    assert_int_equal(doc.n_tokens, 15000);
    arena_free(a);
    /* Fragments nest fields past the parser's depth without recursion: a
     * chain of 1,000 fragments, each one field deeper, is depth 1,001. */
    static char chain[1000 * 48];
    n = (size_t)snprintf(chain, sizeof(chain), "{ ...F0 }");
    for (int k = 0; k < 999; k++)
        n += (size_t)snprintf(chain + n, sizeof(chain) - n, " fragment F%d on T { f { ...F%d } }",
                              k, k + 1);
    snprintf(chain + n, sizeof(chain) - n, " fragment F999 on T { f { leaf } }");
    a = arena_new(4096);
    struct gqlp_limits lim = {.max_bytes = sizeof(chain), .max_tokens = 100000, .max_depth = 500};
    struct gqlp_op_info info;
    assert_int_equal(gqlp_parse(&doc, chain, strlen(chain), &lim, a, &err), 0);
    assert_int_equal(gqlp_analyze(&doc, NULL, NULL, &info, &err), 0);
    assert_int_equal(info.depth, 1001);
    assert_int_equal(info.cost, 1000);
    arena_free(a);
}

static void test_depth_alias_roots(void **state)
{
    expect_numbers("{ a }", NULL, 1, 0, 1, 0);
    expect_numbers("{ a b { c } }", NULL, 2, 0, 2, 1);
    expect_numbers("{ x: a y: a { z: b } }", NULL, 2, 3, 2, 1);
    /* Fragments add no level; a fragment spread twice counts twice. */
    expect_numbers("{ a { ...F } b { ...F } } fragment F on T { x: c { d { e } } }", NULL, 4, 2, 2,
                   1 + 2 + 1 + 2);
    /* Inline fragments and spreads at the root expand to root fields. */
    struct gqlp_op_info i =
        numbers("{ a ... on Q { b ...F } ... { c } } fragment F on Q { d e }", NULL, NULL);
    assert_int_equal(i.root_fields, 5);
    assert_int_equal(i.n_root_names, 5);
    assert_string_equal(i.root_names[0], "a");
    assert_string_equal(i.root_names[1], "b");
    assert_string_equal(i.root_names[2], "d");
    assert_string_equal(i.root_names[3], "e");
    assert_string_equal(i.root_names[4], "c");
    assert_int_equal(i.depth, 1);
    /* Only the first GQLP_MAX_ROOT_NAMES names are kept, the count is whole. */
    i = numbers("{ a b c d e f g h i j }", NULL, NULL);
    assert_int_equal(i.root_fields, 10);
    assert_int_equal(i.n_root_names, GQLP_MAX_ROOT_NAMES);
    assert_string_equal(i.root_names[7], "h");
    /* Root names are field names, not aliases. */
    i = numbers("{ mine: me { id } }", NULL, NULL);
    assert_string_equal(i.root_names[0], "me");
    assert_int_equal(i.aliases, 1);
}

static void test_cost(void **state)
{
    /* Object fields 1, scalars 0. */
    expect_numbers("{ me { id name } }", NULL, 2, 0, 1, 1);
    expect_numbers("{ me { id friend { id } } }", NULL, 3, 0, 1, 2);
    /* Lists: (1 + children) x first/last. */
    expect_numbers("{ users(first: 10) { id } }", NULL, 2, 0, 1, 10);
    expect_numbers("{ users(last: 5) { id posts(first: 3) { id } } }", NULL, 3, 0, 1, (1 + 3) * 5);
    expect_numbers("{ users(first: 2, last: 7) { id } }", NULL, 2, 0, 1, 7);
    expect_numbers("{ tags(first: 4) }", NULL, 1, 0, 1, 4); /* a scalar list */
    expect_numbers("{ users(first: -4) { id } }", NULL, 2, 0, 1, 0);
    /* Unknown size: x 10; a scalar with an unknown first stays 0. */
    expect_numbers("{ users(first: $n) { id } }", NULL, 2, 0, 1, 10);
    expect_numbers("{ users(first: \"5\") { id } }", NULL, 2, 0, 1, 10);
    expect_numbers("{ tags(first: $n) }", NULL, 1, 0, 1, 0);
    /* Variables: the value given, else the default. */
    expect_numbers("query ($n: Int = 3) { users(first: $n) { id } }", NULL, 2, 0, 1, 3);
    expect_numbers("query ($n: Int = 3) { users(first: $n) { id } }", "{\"n\": 7}", 2, 0, 1, 7);
    expect_numbers("query ($n: Int) { users(first: $n) { id } }", "{\"n\": 20}", 2, 0, 1, 20);
    expect_numbers("query ($n: Int = 3) { users(first: $n) { id } }", "{\"n\": \"x\"}", 2, 0, 1,
                   10);
    expect_numbers("query ($n: Int = \"x\") { users(first: $n) { id } }", NULL, 2, 0, 1, 10);
    /* Saturates rather than overflows. */
    expect_numbers("{ a(first: 99999999999999999999) { b(first: 100000) { c(first: 100000) { d "
                   "} } } }",
                   NULL, 4, 0, 1, GQLP_SATURATED);
    /* Fragments see the operation's variables. */
    expect_numbers("query ($n: Int) { ...F } fragment F on Q { users(first: $n) { id } }",
                   "{\"n\": 4}", 2, 0, 1, 4);
}

static void test_operation_name(void **state)
{
    const char *two = "query A { a } mutation B { b }";
    struct gqlp_op_info info;
    struct gqlp_error err;
    assert_int_equal(numbers(two, "A", NULL).type, GQLP_QUERY);
    assert_int_equal(numbers(two, "B", NULL).type, GQLP_MUTATION);
    assert_string_equal(numbers(two, "B", NULL).root_names[0], "b");
    assert_int_equal(analyze(two, NULL, NULL, &info, &err), -1);
    assert_non_null(strstr(err.message, "Must provide operation name"));
    assert_int_equal(analyze(two, "", NULL, &info, &err), -1);
    assert_int_equal(analyze(two, "C", NULL, &info, &err), -1);
    assert_string_equal(err.message, "Unknown operation named \"C\"");
    /* One operation: the name is optional but must match when given. */
    assert_string_equal(numbers("query A { a }", NULL, NULL).name, "A");
    assert_int_equal(analyze("query A { a }", "B", NULL, &info, &err), -1);
    assert_int_equal(analyze("{ a } query A { b }", "A", NULL, &info, &err), -1);
    assert_non_null(strstr(err.message, "anonymous operation must be the only"));
    assert_int_equal(analyze("query A { a } query A { b }", "A", NULL, &info, &err), -1);
    assert_non_null(strstr(err.message, "only one operation named"));
    /* The operations' names, in document order. */
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    const char *three = "query A { a } fragment F on T { x } mutation B { b } subscription { c }";
    assert_int_equal(gqlp_parse(&doc, three, strlen(three), NULL, a, &err), 0);
    assert_string_equal(gqlp_operation_name(&doc, 0), "A");
    assert_string_equal(gqlp_operation_name(&doc, 1), "B");
    assert_string_equal(gqlp_operation_name(&doc, 2), "");
    assert_null(gqlp_operation_name(&doc, 3));
    arena_free(a);
    /* Fragments alone are no operation. */
    assert_int_equal(analyze("fragment F on T { a }", NULL, NULL, &info, &err), -1);
    assert_string_equal(err.message, "The document has no operation, only fragments");
}

/* Fragment k spreads k+1 twice, 30 levels: 2^30 leaves if expanded. */
static void test_billion_laughs(void **state)
{
    static char doc[8192];
    size_t n = (size_t)snprintf(doc, sizeof(doc), "{ ...F0 }\n");
    for (int k = 0; k < 30; k++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n,
                              "fragment F%d on T { x%d: a(first: 2) { ...F%d ...F%d } }\n", k, k,
                              k + 1, k + 1);
    n += (size_t)snprintf(doc + n, sizeof(doc) - n, "fragment F30 on T { y: leaf }\n");
    clock_t t0 = clock();
    struct gqlp_op_info i = numbers(doc, NULL, NULL);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 1.0);
    assert_int_equal(i.depth, 31);
    assert_int_equal(i.root_fields, 1);
    assert_int_equal(i.aliases, GQLP_SATURATED); /* 2^31 - 1 without the cap */
    assert_int_equal(i.cost, GQLP_SATURATED);
    /* A chain of 3000 fragments does not recurse on the C stack. */
    static char chain[3000 * 40];
    n = (size_t)snprintf(chain, sizeof(chain), "{ ...F0 }");
    for (int k = 0; k < 2999; k++)
        n += (size_t)snprintf(chain + n, sizeof(chain) - n, " fragment F%d on T { ...F%d }", k,
                              k + 1);
    snprintf(chain + n, sizeof(chain) - n, " fragment F2999 on T { a }");
    struct arena *a = arena_new(4096);
    struct gqlp_doc d;
    struct gqlp_error err;
    struct gqlp_limits lim = {.max_bytes = sizeof(chain), .max_tokens = 100000, .max_depth = 500};
    assert_int_equal(gqlp_parse(&d, chain, strlen(chain), &lim, a, &err), 0);
    assert_int_equal(gqlp_analyze(&d, NULL, NULL, &i, &err), 0);
    assert_int_equal(i.root_fields, 1);
    assert_string_equal(i.root_names[0], "a");
    arena_free(a);
}

static void test_real_world(void **state)
{
    /* GitHub: a repository's issues with labels and comments. */
    const char *github =
        "query RepoIssues($owner: String!, $name: String!, $first: Int = 20, $after: String) {\n"
        "  repository(owner: $owner, name: $name) {\n"
        "    id nameWithOwner\n"
        "    issues(first: $first, after: $after, states: [OPEN], orderBy: {field: CREATED_AT, "
        "direction: DESC}) {\n"
        "      totalCount\n"
        "      pageInfo { hasNextPage endCursor }\n"
        "      edges { cursor node { ...IssueParts } }\n"
        "    }\n"
        "  }\n"
        "  rateLimit { cost remaining resetAt }\n"
        "}\n"
        "fragment IssueParts on Issue {\n"
        "  number title createdAt\n"
        "  author { login ... on User { name } }\n"
        "  labels(first: 5) { nodes { name color } }\n"
        "  comments(last: 3) { nodes { body author { login } } }\n"
        "}\n";
    struct gqlp_op_info i = numbers(github, NULL, "{\"owner\": \"o\", \"name\": \"n\"}");
    assert_string_equal(i.name, "RepoIssues");
    assert_int_equal(i.root_fields, 2);
    assert_string_equal(i.root_names[0], "repository");
    assert_string_equal(i.root_names[1], "rateLimit");
    /* repository > issues > edges > node > comments > nodes > author > login */
    assert_int_equal(i.depth, 8);
    /* IssueParts: author 1 + labels (1+1)x5 + comments (1 + 1 + 1)x3 = 20;
     * issues (1 + pageInfo 1 + edges (1 + node (1 + 20)))x20 = 480;
     * repository 1 + 480; rateLimit 1. */
    assert_int_equal(i.cost, 482);
    i = numbers(github, NULL, "{\"first\": 100}");
    assert_int_equal(i.cost, 1 + (1 + 1 + (1 + 1 + 20)) * 100 + 1);

    /* Shopify: products with variants and a mutation with input objects. */
    const char *shopify =
        "query Products($n: Int!) { shop { name } products(first: $n, query: \"tag:sale\") "
        "{ edges { node { id title handle priceRange { minVariantPrice { amount currencyCode } "
        "} variants(first: 10) { edges { node { id sku price } } } images(first: 1) { edges { "
        "node { url altText } } } } } pageInfo { hasNextPage } } }\n"
        "mutation Add($lines: [CartLineInput!]!) { cartLinesAdd(cartId: \"gid://shopify/Cart/1\", "
        "lines: $lines) { cart { id lines(first: 100) { edges { node { id quantity } } } } "
        "userErrors { field message } } }";
    i = numbers(shopify, "Products", "{\"n\": 50}");
    assert_int_equal(i.root_fields, 2);
    /* node: priceRange 2 + variants (1+1+1)x10 + images (1+1+1)x1 = 35;
     * products (1 + edges (1 + node (1 + 35)) + pageInfo 1) x 50 */
    assert_int_equal(i.cost, 1 + (1 + (1 + 36) + 1) * 50);
    assert_int_equal(i.depth, 7);
    i = numbers(shopify, "Add", NULL);
    assert_int_equal(i.type, GQLP_MUTATION);
    assert_int_equal(i.cost, 1 + 1 + (1 + 1 + 1) * 100 + 1);
    assert_int_equal(numbers(shopify, "Products", NULL).cost, 1 + (1 + (1 + 36) + 1) * 10);

    /* Introspection (the usual GraphiQL query, abridged). */
    parses("query IntrospectionQuery { __schema { queryType { name } mutationType { name } "
           "types { ...FullType } directives { name description locations args { ...InputValue "
           "} } } } fragment FullType on __Type { kind name fields(includeDeprecated: true) { "
           "name args { ...InputValue } type { ...TypeRef } isDeprecated } inputFields { "
           "...InputValue } interfaces { ...TypeRef } enumValues(includeDeprecated: true) { "
           "name } possibleTypes { ...TypeRef } } fragment InputValue on __InputValue { name "
           "type { ...TypeRef } defaultValue } fragment TypeRef on __Type { kind name ofType { "
           "kind name ofType { kind name ofType { kind name } } } }");
}

/* The root fields of <src> among <watch>, as gqlp_analyze_watch's bits. */
static uint32_t watched(const char *src, const char *const *watch, unsigned n)
{
    struct arena *a = arena_new(4096);
    struct gqlp_doc doc;
    struct gqlp_error err;
    struct gqlp_op_info info;
    if (gqlp_parse(&doc, src, strlen(src), NULL, a, &err) != 0 ||
        gqlp_analyze_watch(&doc, NULL, NULL, watch, n, &info, &err) != 0)
        fail_msg("%s: %s", src, err.message);
    arena_free(a);
    return info.watched;
}

static void test_watch(void **state)
{
    static const char *const w[] = {"tokenAuth", "createErrand", "me"};
    assert_int_equal(watched("mutation { tokenAuth { token } }", w, 3), 1);
    /* The field's name, not its alias; an alias named like a watched field is not it. */
    assert_int_equal(watched("mutation { t: tokenAuth { token } }", w, 3), 1);
    assert_int_equal(watched("mutation { tokenAuth: ping }", w, 3), 0);
    /* Through fragments and inline fragments, at the root only. */
    assert_int_equal(
        watched("mutation { ...F } fragment F on M { ... on M { createErrand } }", w, 3), 2);
    assert_int_equal(watched("{ user { me tokenAuth } }", w, 3), 0);
    /* Every root field is compared, not only the GQLP_MAX_ROOT_NAMES kept. */
    assert_int_equal(watched("{ a b c d e f g h i j k me }", w, 3), 4);
    assert_int_equal(watched("{ a b c d e f g h i ...F } fragment F on Q { x me }", w, 3), 4);
    assert_int_equal(watched("{ tokenAuth createErrand me }", w, 3), 7);
    assert_int_equal(watched("{ tokenAuth createErrand me }", w, 0), 0);
    assert_int_equal(watched("{ tokenAuth createErrand me }", NULL, 0), 0);
    /* Names past GQLP_MAX_WATCH are not looked at (the bits of a uint32_t). */
    const char *many[GQLP_MAX_WATCH + 1];
    for (unsigned i = 0; i < GQLP_MAX_WATCH; i++)
        many[i] = "x";
    many[GQLP_MAX_WATCH] = "me";
    assert_int_equal(watched("{ me }", many, GQLP_MAX_WATCH + 1), 0);
    many[GQLP_MAX_WATCH - 1] = "me";
    assert_int_equal(watched("{ me }", many, GQLP_MAX_WATCH + 1), 1u << 31);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operations),
        cmocka_unit_test(test_fields_and_values),
        cmocka_unit_test(test_fragments),
        cmocka_unit_test(test_lexical),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_type_system_rejected),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_exact),
        cmocka_unit_test(test_depth_alias_roots),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_operation_name),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_real_world),
        cmocka_unit_test(test_watch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
