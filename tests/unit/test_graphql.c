/* GraphQL operation inspection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "guard/graphql.h"

static void expect(const char *doc, const char *type, const char *field)
{
    struct gql_op op;
    bool ok = gql_inspect_document(doc, strlen(doc), &op);
    if (!type) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_string_equal(op.type, type);
    assert_string_equal(op.field, field);
}

static void test_documents(void **state)
{
    expect("{ indices { symbol } }", "query", "indices");
    expect("query { me { id } }", "query", "me");
    expect("query Market($n: Int = 3) @cached(ttl: 5) { overview(n: $n) { x } }", "query",
           "overview");
    expect("mutation CreateErrand($input: ErrandInput!) { createErrand(input: $input) { id } }",
           "mutation", "createErrand");
    expect("mutation { tokenAuth(username: \"a)b\", password: \"x\") { token } }", "mutation",
           "tokenAuth");
    expect("subscription { ticks }", "subscription", "ticks");
    expect("  # a comment\n mutation\n{\n  renamed: createErrand { id } }", "mutation",
           "createErrand");
    expect("fragment F on T { a } query { b }", NULL, NULL);
    expect("", NULL, NULL);
    expect("mutation", NULL, NULL);
    expect("{ }", NULL, NULL);
    expect("hello world", NULL, NULL);
}

static void test_json_bodies(void **state)
{
    struct gql_op op;
    const char *b = "{\"query\": \"mutation { createErrand(x: 1) { id } }\", \"variables\": {}}";
    assert_true(gql_inspect_json(b, strlen(b), &op));
    assert_string_equal(op.type, "mutation");
    assert_string_equal(op.field, "createErrand");
    assert_false(gql_inspect_json("{\"nope\": 1}", 11, &op));
    assert_false(gql_inspect_json("not json", 8, &op));
    assert_false(gql_inspect_json("{\"query\": 5}", 12, &op));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_json_bodies),
    };
    return cmocka_run_group_tests_name("graphql", tests, NULL, NULL);
}
