/* The operations of a GraphQL HTTP request (graphql/request.h): POST JSON
 * bodies, batches, GET query strings, the watch bits and the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "graphql/request.c" /* the static gqlr_plain_run too */
#include "util/arena.h"
#include "util/buf.h"
#include "util/limits.h"

static const char *const watch_names[] = {"tokenAuth", "createErrand", "Login"};
static const struct gqlr_watch watch = {watch_names, 3};

static struct arena *arena;

static int setup(void **state)
{
    arena = arena_new(4096);
    return 0;
}

static int teardown(void **state)
{
    arena_free(arena);
    return 0;
}

static struct gqlr_request json_ok(const char *body)
{
    struct gqlr_request r;
    struct gqlr_error err;
    if (gqlr_from_json(body, strlen(body), &watch, arena, &r, &err) != 0)
        fail_msg("%s: %s", body, err.message);
    return r;
}

static void json_fails(const char *body, const char *want)
{
    struct gqlr_request r;
    struct gqlr_error err;
    assert_int_equal(gqlr_from_json(body, strlen(body), &watch, arena, &r, &err), -1);
    assert_int_equal(r.n_ops, 0);
    if (!strstr(err.message, want))
        fail_msg("%s: got \"%s\", want \"%s\"", body, err.message, want);
}

static struct gqlr_request query_ok(const char *qs)
{
    struct gqlr_request r;
    struct gqlr_error err;
    if (gqlr_from_query(qs, strlen(qs), &watch, arena, &r, &err) != 0)
        fail_msg("%s: %s", qs, err.message);
    return r;
}

static void query_fails(const char *qs, const char *want)
{
    struct gqlr_request r;
    struct gqlr_error err;
    assert_int_equal(gqlr_from_query(qs, strlen(qs), &watch, arena, &r, &err), -1);
    if (!strstr(err.message, want))
        fail_msg("%s: got \"%s\", want \"%s\"", qs, err.message, want);
}

static void test_single(void **state)
{
    struct gqlr_request r = json_ok(
        "{\"query\": \"mutation Login($u: String!) { tokenAuth(username: $u) { token } }\", "
        "\"operationName\": \"Login\", \"variables\": {\"u\": \"ann\"}, \"extensions\": {}}");
    assert_int_equal(r.n_ops, 1);
    assert_int_equal(r.ops[0].type, GQLP_MUTATION);
    assert_string_equal(r.ops[0].type_name, "mutation");
    assert_string_equal(r.ops[0].name, "Login");
    assert_string_equal(r.ops[0].field, "tokenAuth");
    /* Its root field and its own name: both configured names match. */
    assert_int_equal(r.ops[0].watched, 1u | 4u);
    assert_int_equal(r.ops[0].depth, 2);
    assert_int_equal(r.ops[0].cost, 1);
    assert_int_equal(r.cost, 1);

    r = json_ok("{\"query\": \"{ me { id } }\", \"operationName\": null, \"variables\": null}");
    assert_string_equal(r.ops[0].type_name, "query");
    assert_string_equal(r.ops[0].name, "");
    assert_int_equal(r.ops[0].watched, 0);

    /* operationName picks among several; the variables give first/last. */
    r = json_ok("{\"query\": \"query A { a } query B($n: Int) { users(first: $n) { id } }\", "
                "\"operationName\": \"B\", \"variables\": {\"n\": 25}}");
    assert_string_equal(r.ops[0].name, "B");
    assert_int_equal(r.cost, 25);
}

static void test_batch(void **state)
{
    struct gqlr_request r =
        json_ok("[{\"query\": \"{ a { b } }\"}, {\"query\": \"mutation { createErrand { id } }\"}, "
                "{\"query\": \"query($n: Int = 4) { u(last: $n) { id } }\"}]");
    assert_int_equal(r.n_ops, 3);
    assert_int_equal(r.ops[0].type, GQLP_QUERY);
    assert_int_equal(r.ops[1].type, GQLP_MUTATION);
    assert_int_equal(r.ops[1].watched, 2);
    assert_int_equal(r.cost, 1 + 1 + 4);

    struct buf b = {0};
    buf_append_str(&b, "[");
    for (int i = 0; i < SL_MAX_GQL_BATCH; i++)
        buf_append_str(&b, i ? ", {\"query\": \"{ a }\"}" : "{\"query\": \"{ a }\"}");
    buf_append_str(&b, "]");
    buf_append(&b, "", 1);
    assert_int_equal(json_ok(b.data).n_ops, SL_MAX_GQL_BATCH);
    b.len -= 2;
    buf_append_str(&b, ", {\"query\": \"{ a }\"}]");
    buf_append(&b, "", 1);
    json_fails(b.data, "A batch of more than 16 operations");
    buf_release(&b);

    json_fails("[]", "An empty batch");
    json_fails("[{\"query\": \"{ a }\"}, 7]",
               "Operation 1 of the batch: A GraphQL request must be");
    json_fails("[{\"query\": \"{ a }\"}, {\"query\": \"{ b \"}]",
               "Operation 1 of the batch: Syntax Error");
}

static void test_cost_saturates(void **state)
{
    struct gqlr_request r = json_ok("[{\"query\": \"{ a(first: 900000000) { id } }\"}, "
                                    "{\"query\": \"{ a(first: 900000000) { id } }\"}]");
    assert_int_equal(r.ops[0].cost, 900000000);
    assert_int_equal(r.cost, GQLP_SATURATED);
}

static void test_json_errors(void **state)
{
    json_fails("", "not JSON");
    json_fails("{\"query\": \"{ a }\"", "not JSON");
    json_fails("\"{ a }\"", "A GraphQL request must be a JSON object");
    json_fails("{}", "Must provide query string");
    json_fails("{\"query\": 7}", "Must provide query string");
    json_fails("{\"query\": \"{ a }\", \"operationName\": 7}", "operationName must be a string");
    json_fails("{\"query\": \"{ a }\", \"variables\": [1]}", "variables must be an object");
    /* One key, one meaning: the upstream might take the other. */
    json_fails("{\"query\": \"{ a }\", \"query\": \"mutation { tokenAuth }\"}",
               "'query' is given twice");
    json_fails("{\"query\": \"{ a }\", \"\\u0071uery\": \"mutation { tokenAuth }\"}",
               "'query' is given twice");
    json_fails("{\"variables\": {}, \"query\": \"{ a }\", \"variables\": null}",
               "'variables' is given twice");
    json_fails("{\"query\": \"{ a }\", \"operationName\": \"X\"}", "Unknown operation named");
    json_fails("{\"query\": \"fragment F on T { a }\"}", "no operation");
    json_fails("{\"query\": \"type T { a: Int }\"}", "");

    /* The body bound, before any parsing. */
    static char big[GQLP_DEFAULT_MAX_BYTES + 2];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    json_fails(big, "larger than 65536 bytes");
}

/* The scanner is strict JSON, as jansson: what it accepts, jansson reads
 * the same (fuzz_graphql checks that on random input too). */
static void test_json_strict(void **state)
{
    struct gqlr_request r = json_ok(
        " \r\n\t{\"x\": [1, -0.5e+3, 0, 2E-2, true, false, null, {\"\": []}], "
        "\"query\": \"{ a(s: \\\"caf\\u00e9 \\ud83d\\ude00 \xc3\xa9\\\") }\", \"operationName\": "
        "null, "
        "\"variables\": null, \"extensions\": {\"a\": \"\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}} \n");
    assert_int_equal(r.n_ops, 1);
    assert_string_equal(r.ops[0].field, "a");
    /* An escaped name is the name. */
    r = json_ok("{\"\\u0071uery\": \"\\u007b \\u0061 }\"}");
    assert_string_equal(r.ops[0].field, "a");
    /* A long query whose escaped quotes make it longer than the first guess. */
    r = json_ok("{\"query\": \"{ a(s: "
                "\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\") }\"}");
    assert_string_equal(r.ops[0].field, "a");

    json_fails("{\"query\": \"{ a }\"} x", "end of data expected at byte 19");
    json_fails("{\"query\": \"{ a }\"}{}", "end of data expected");
    json_fails("{\"query\": \"{ a }\",}", "a string key expected");
    json_fails("{\"query\" \"{ a }\"}", "':' expected");
    json_fails("{\"query\": \"{ a }\" \"x\": 1}", "',' or '}' expected");
    json_fails("{'query': \"{ a }\"}", "a string key expected");
    json_fails("{\"query\": \"{ a }\", \"x\": 01}", "',' or '}' expected");
    json_fails("{\"query\": \"{ a }\", \"x\": 1.}", "invalid number");
    json_fails("{\"query\": \"{ a }\", \"x\": -}", "invalid value");
    json_fails("{\"query\": \"{ a }\", \"x\": 1e}", "invalid number");
    json_fails("{\"query\": \"{ a }\", \"x\": tru}", "invalid value");
    json_fails("{\"query\": \"{ a }\", \"x\": NaN}", "invalid value");
    json_fails("{\"query\": \"{ a }\", \"x\": [1,]}", "invalid value");
    json_fails("{\"query\": \"{ a\tb }\"}", "a control character in a string");
    json_fails("{\"query\": \"{ a \\x }\"}", "invalid escape");
    json_fails("{\"query\": \"{ a \\u00g0 }\"}", "invalid \\u escape");
    json_fails("{\"query\": \"{ a \\u0000 }\"}", "\\u0000 in a string");
    json_fails("{\"query\": \"{ a \\ud83d }\"}", "a lone high surrogate");
    json_fails("{\"query\": \"{ a \\ude00 }\"}", "a lone low surrogate");
    json_fails("{\"query\": \"{ a \xc3 }\"}", "invalid UTF-8");
    json_fails("{\"query\": \"{ a \xc0\xaf }\"}", "invalid UTF-8");         /* overlong */
    json_fails("{\"query\": \"{ a \xed\xa0\x80 }\"}", "invalid UTF-8");     /* a surrogate */
    json_fails("{\"query\": \"{ a \xf4\x90\x80\x80 }\"}", "invalid UTF-8"); /* > U+10FFFF */
    json_fails("{\"query\": \"{ a }", "unterminated string");
    json_fails("{\"query\": \"{ a }\"", "',' or '}' expected");

    /* A NUL byte after a number or a literal: jansson 2.14 skips it (it
     * takes the NUL it pushes back for an empty buffer), which RFC 8259
     * does not allow; refused. */
    static const char nul_num[] = "{\"query\": \"{ a }\", \"x\": 1\0}";
    static const char nul_lit[] = "{\"query\": \"{ a }\", \"x\": [true\0]}";
    struct gqlr_error err;
    assert_int_equal(gqlr_from_json(nul_num, sizeof(nul_num) - 1, &watch, arena, &r, &err), -1);
    assert_non_null(strstr(err.message, "',' or '}' expected at byte 25"));
    assert_int_equal(gqlr_from_json(nul_lit, sizeof(nul_lit) - 1, &watch, arena, &r, &err), -1);
    assert_non_null(strstr(err.message, "',' or ']' expected at byte 29"));

    struct buf b = {0};
    buf_append_str(&b, "{\"query\": \"{ a }\", \"x\": ");
    for (int i = 0; i < 64; i++)
        buf_append_str(&b, "[");
    buf_append(&b, "", 1);
    json_fails(b.data, "nested too deep");
    buf_release(&b);
}

/* The eight-bytes-at-a-time run agrees with the byte-wise rule for every
 * byte value at every position. */
static void test_plain_run(void **state)
{
    for (int pos = 0; pos < 8; pos++) {
        for (int c = 0; c < 256; c++) {
            char buf[11] = "abcdefghij";
            buf[pos] = (char)c;
            bool plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
            const char *end = gqlr_plain_run(buf, buf + 10);
            assert_int_equal(end - buf, plain ? 10 : pos);
        }
    }
}

static void test_get(void **state)
{
    struct gqlr_request r =
        query_ok("query=query+Login%28%24n%3A+Int%29+%7B+tokenAuth%28first%3A+%24n%29+%7B+t+%7D+%7D"
                 "&operationName=Login&variables=%7B%22n%22%3A+6%7D&other=1");
    assert_int_equal(r.n_ops, 1);
    assert_string_equal(r.ops[0].name, "Login");
    assert_int_equal(r.ops[0].watched, 1u | 4u);
    assert_int_equal(r.cost, 6);
    r = query_ok("x=%zz&query={a{b}}&operationName=");
    assert_int_equal(r.ops[0].depth, 2);
    /* A '%' without two hex digits stays as it is: here it makes a bad document. */
    query_fails("query=%7B+a+%", "Unexpected character \"%\"");
    query_fails("", "Must provide query string");
    query_fails("operationName=A", "Must provide query string");
    query_fails("query={a}&query={b}", "The parameter query is given twice");
    /* A NUL jansson alone would drop: refused, as in a body. */
    query_fails("query={a}&variables=%7B%22first%22%3A1%00%7D", "variables must be a JSON object");
    query_fails("query={a}&variables=%7B%22x%22%3Atrue%00%7D", "variables must be a JSON object");
    query_ok("query={a}&variables=%7B%22first%22%3A1%7D");
    query_fails("query={a}&%71uery={b}", "The parameter query is given twice");
    query_fails("query={a}&variables=[1]", "variables must be a JSON object");
    query_fails("query={a}&variables={", "variables must be a JSON object");
    query_fails("query={a}&operationName=B", "Unknown operation named");

    assert_true(gqlr_query_has_params("query={a}", 9, arena));
    assert_true(gqlr_query_has_params("x=1&%6fperationName=A", 21, arena));
    assert_true(gqlr_query_has_params("variables", 9, arena));
    assert_true(gqlr_query_has_params("x=1&x=2&query=1&query=2", 23, arena));
    assert_false(gqlr_query_has_params("x=1&queries=2&query_=3", 22, arena));
    assert_false(gqlr_query_has_params("", 0, arena));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost_saturates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
