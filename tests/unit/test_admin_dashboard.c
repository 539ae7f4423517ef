/* The dashboard's embedded files (src/admin/dashboard.c) through the real
 * admin pipeline on the fake gateway: the page and its assets without the
 * token, their headers (CSP, type, ETag, Cache-Control), 304 on a matching
 * If-None-Match, HEAD, 404 under /assets/, and everything else still behind
 * the token. */
#include "fake_gateway.h"

#include "admin/dashboard.h"

#define TOKEN "dashboard-test-token-0123456789"
#define CONFIG                                                                                     \
    "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"                                         \
    "admin: {listen: \"127.0.0.1:9\", token: \"" TOKEN "\"}\n"

/* <method> <path> on the admin pipeline, with header <name>: <value> (or none). */
static struct fake_resp *admin_call(struct fake_gw *fx, const char *method, const char *path,
                                    const char *name, const char *value)
{
    struct fake_resp *r =
        name ? fake_start(fx, method, path, name, value, NULL) : fake_start(fx, method, path, NULL);
    r->x->admin = true;
    r->x->stages = fx->gw.pipelines[1].stages;
    r->x->n_stages = fx->gw.pipelines[1].n_stages;
    exchange_run(r->x);
    return r;
}

static void test_table(void **state)
{
    assert_true(dash_n_assets >= 4);
    for (int i = 0; i < dash_n_assets; i++) {
        const struct dash_asset *a = &dash_assets[i];
        assert_true(a->path[0] == '/');
        assert_true(a->len > 0);
        assert_int_equal(strlen(a->etag), 18); /* "<16 hex digits>" */
        assert_ptr_equal(dash_asset_find(a->path), a);
    }
    const struct dash_asset *page = dash_asset_find("/");
    assert_non_null(page);
    assert_string_equal(page->path, "/index.html");
    assert_string_equal(page->content_type, "text/html; charset=utf-8");
    assert_non_null(dash_asset_find("/assets/js/app.js"));
    assert_non_null(dash_asset_find("/assets/vendor/chart.min.js"));
    assert_null(dash_asset_find("/assets/"));
    assert_null(dash_asset_find("/keys"));
    assert_null(dash_asset_find(""));
}

static void test_page_without_token(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = admin_call(fx, "GET", "/", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(fake_header(r, "Content-Type"), "text/html; charset=utf-8");
    assert_string_equal(fake_header(r, "Content-Security-Policy"), "default-src 'self'");
    assert_string_equal(fake_header(r, "Cache-Control"), "no-cache");
    assert_string_equal(fake_header(r, "X-Content-Type-Options"), "nosniff");
    const struct dash_asset *page = dash_asset_find("/index.html");
    assert_string_equal(fake_header(r, "ETag"), page->etag);
    assert_int_equal(r->content_length, (int64_t)page->len);
    assert_non_null(strstr(r->body, "/assets/js/app.js"));

    r = admin_call(fx, "GET", "/assets/js/app.js", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(fake_header(r, "Content-Type"), "text/javascript; charset=utf-8");
}

static void test_not_modified_and_head(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    const struct dash_asset *css = dash_asset_find("/assets/css/app.css");
    assert_non_null(css);
    char list[64];
    snprintf(list, sizeof(list), "\"nope\", W/%s", css->etag);
    struct fake_resp *r = admin_call(fx, "GET", "/assets/css/app.css", "If-None-Match", list);
    assert_int_equal(r->status, 304);
    assert_true(r->no_body);
    assert_null(fake_header(r, "Content-Type"));
    r = admin_call(fx, "GET", "/assets/css/app.css", "If-None-Match", "\"nope\"");
    assert_int_equal(r->status, 200);
    r = admin_call(fx, "HEAD", "/index.html", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_true(r->no_body);
    assert_int_equal(r->body_calls, 0);
}

static void test_everything_else_needs_token(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = admin_call(fx, "GET", "/assets/nope.js", NULL, NULL);
    assert_int_equal(r->status, 404);
    r = admin_call(fx, "GET", "/health", NULL, NULL);
    assert_int_equal(r->status, 401);
    r = admin_call(fx, "POST", "/index.html", NULL, NULL);
    assert_int_equal(r->status, 401);
    r = admin_call(fx, "GET", "/index.html/", NULL, NULL);
    assert_int_equal(r->status, 401);
    r = admin_call(fx, "GET", "/health", "Authorization", "Bearer " TOKEN);
    assert_int_equal(r->status, 200);
}

int main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, fake_gw_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        T(test_page_without_token),
        T(test_not_modified_and_head),
        T(test_everything_else_needs_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
