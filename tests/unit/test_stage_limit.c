/* The limit stage (SPEC 3.2-3.5) run in the real pipeline of a gateway
 * without sockets (fake_gateway.h): what the client sees on the requests a
 * limit lets through and on the one it refuses, rejection styles, routes
 * and tiers that are not limited, a tier's limit counted across routes,
 * and the finish hook that records the violation. Limits are per minute on
 * the real clock: the tests run in milliseconds. */

#include "fake_gateway.h"

#include <time.h>

#include "limit/backend.h"

#define UPSTREAM "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"

/* <r> passed the limits: the fake upstream answered it. */
static void assert_passed(const struct fake_resp *r)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "hello from upstream\n");
}

/* <r> is a 429 of the limit stage with a Retry-After within [1, <max>]:
 * returns the Retry-After. (The default algorithm, sliding_window, may ask
 * for up to two windows.) */
static long long assert_limited(const struct fake_resp *r, long long max)
{
    assert_int_equal(r->status, 429);
    assert_int_equal(r->ends, 1);
    assert_string_equal(fake_header(r, "Content-Type"), "application/json");
    long long retry = fake_header_ll(r, "Retry-After");
    if (retry < 1 || retry > max)
        fail_msg("Retry-After %lld not in [1, %lld]", retry, max);
    return retry;
}

static void test_limit_two_per_minute(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"2/min\"]}\n");
    long long now = (long long)time(NULL);
    for (int i = 0; i < 2; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
        assert_passed(r);
        assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 2);
        assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 1 - i);
        long long reset = fake_header_ll(r, "X-RateLimit-Reset");
        assert_true(reset >= now && reset <= now + 121);
        assert_int_equal(fake_header_count(r, "Retry-After"), 0);
        assert_int_equal(fx->up.last_identity.kind, ID_IP);
        assert_string_equal(fx->up.last_identity.tier, "anonymous");
    }
    assert_int_equal(fx->up.calls, 2);

    struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
    long long retry = assert_limited(r, 120);
    assert_int_equal(fx->up.calls, 2); /* the upstream never saw it */
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 2);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 0);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"error\": \"Rate limit exceeded\", \"message\": \"Maximum 2 requests per minute "
             "allowed\", \"retry_after\": %lld}\n",
             retry);
    assert_string_equal(r->body, want);
    assert_int_equal(r->content_length, (int64_t)strlen(want));

    /* Another client has counters of its own. */
    snprintf(fx->peer_ip, sizeof(fx->peer_ip), "198.51.100.1");
    assert_passed(fake_request(fx, "GET", "/a", NULL));
}

static void test_limit_rejection_drf(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "routes:\n"
                                                       "  - path: /leads\n"
                                                       "    limits: {anonymous: [\"1/min\"]}\n"
                                                       "    rejection: drf\n");
    assert_passed(fake_request(fx, "POST", "/leads", NULL));
    struct fake_resp *r = fake_request(fx, "POST", "/leads", NULL);
    long long retry = assert_limited(r, 120);
    char want[160];
    snprintf(want, sizeof(want),
             "{\"detail\": \"Request was throttled. Expected available in %lld %s.\"}\n", retry,
             retry == 1 ? "second" : "seconds");
    assert_string_equal(r->body, want);
}

/* A route with "limits: off" is never limited, not even by the tier's
 * limits, which do apply on the route next to it. */
static void test_limit_route_off(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "tiers:\n"
                                                       "  anonymous: {limits: [\"1/min\"]}\n"
                                                       "routes:\n"
                                                       "  - prefix: /static/\n"
                                                       "    limits: off\n"
                                                       "  - prefix: /\n");
    for (int i = 0; i < 5; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/static/app.js", NULL);
        assert_passed(r);
        assert_int_equal(fake_header_count(r, "X-RateLimit-Limit"), 0);
    }
    assert_passed(fake_request(fx, "GET", "/api", NULL));
    assert_limited(fake_request(fx, "GET", "/api", NULL), 120);
}

/* An exempt tier is never limited, by its own limits or the route's. */
static void test_limit_exempt_tier(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "tiers:\n"
                                                       "  anonymous: {exempt: true, limits: "
                                                       "[\"1/min\"]}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"1/min\"]}\n");
    for (int i = 0; i < 4; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
        assert_passed(r);
        assert_int_equal(fake_header_count(r, "X-RateLimit-Remaining"), 0);
        assert_true(r->identity.exempt);
    }
    assert_int_equal(fx->up.calls, 4);
}

/* The same configuration without exempt: the control of the test above. */
static void test_limit_tier_not_exempt(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "tiers:\n"
                                                       "  anonymous: {limits: [\"5/min\"]}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"1/min\"]}\n");
    struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
    assert_passed(r);
    assert_false(r->identity.exempt);
    /* The most restrictive limit is the one shown. */
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 1);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 0);
    r = fake_request(fx, "GET", "/a", NULL);
    assert_limited(r, 120);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 1);
}

/* A tier's limits are one counter across every route. */
static void test_limit_tier_shared_across_routes(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "tiers:\n"
                                                       "  anonymous: {limits: [\"3/min\"]}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "  - path: /b\n");
    const char *paths[] = {"/a", "/b", "/a"};
    for (int i = 0; i < 3; i++) {
        struct fake_resp *r = fake_request(fx, "GET", paths[i], NULL);
        assert_passed(r);
        assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 3);
        assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 2 - i);
    }
    assert_limited(fake_request(fx, "GET", "/b", NULL), 120);
    assert_int_equal(fx->up.calls, 3);
}

/* A route's cost counts against every limit: 3/min at cost 2 lets one
 * request through; the refused one consumes nothing, not even from the
 * tier's limit that would have let it pass (all or nothing). */
static void test_limit_route_cost(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "tiers:\n"
                                                       "  anonymous: {limits: [\"10/min\"]}\n"
                                                       "routes:\n"
                                                       "  - path: /report\n"
                                                       "    cost: 2\n"
                                                       "    limits: {anonymous: [\"3/min\"]}\n"
                                                       "  - path: /other\n");
    struct fake_resp *r = fake_request(fx, "GET", "/report", NULL);
    assert_passed(r);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 3);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 1);
    assert_limited(fake_request(fx, "GET", "/report", NULL), 120);
    r = fake_request(fx, "GET", "/other", NULL);
    assert_passed(r);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 10);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 10 - 2 - 1);
}

/* With headers: [ietf], one list item per applying limit. */
static void test_limit_ietf_headers(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "limits: {headers: [ietf]}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"2/min\", "
                                                       "\"10/hour\"]}\n");
    struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
    assert_passed(r);
    assert_int_equal(fake_header_count(r, "X-RateLimit-Limit"), 0);
    const char *policy = fake_header(r, "RateLimit-Policy");
    const char *state_h = fake_header(r, "RateLimit");
    assert_non_null(policy);
    assert_non_null(state_h);
    assert_non_null(strstr(policy, ";q=2;w=60"));
    assert_non_null(strstr(policy, ";q=10;w=3600"));
    assert_non_null(strstr(state_h, ";r=1;t="));
    assert_non_null(strstr(state_h, ";r=9;t="));
    assert_non_null(strchr(policy, ','));
}

/* Two applying limits of one name are named after their sources. */
static void test_limit_ietf_names_tell_sources_apart(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "limits: {headers: [ietf]}\n"
                                                       "tiers: {anonymous: {limits: [\"50/h\"]}}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"2/min\", "
                                                       "\"10/hour\"]}\n");
    struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
    assert_passed(r);
    assert_string_equal(fake_header(r, "RateLimit-Policy"),
                        "\"anonymous-hourly\";q=50;w=3600, \"per-minute\";q=2;w=60, "
                        "\"route-hourly\";q=10;w=3600");
}

/* limits.enabled: false turns every limit off. */
static void test_limit_disabled(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "limits: {enabled: false}\n"
                                                       "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"1/min\"]}\n");
    for (int i = 0; i < 3; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
        assert_passed(r);
        assert_int_equal(fake_header_count(r, "X-RateLimit-Limit"), 0);
    }
}

#define T(f) cmocka_unit_test_teardown(f, fake_gw_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_limit_two_per_minute),
        T(test_limit_rejection_drf),
        T(test_limit_route_off),
        T(test_limit_exempt_tier),
        T(test_limit_tier_not_exempt),
        T(test_limit_tier_shared_across_routes),
        T(test_limit_route_cost),
        T(test_limit_ietf_headers),
        T(test_limit_ietf_names_tell_sources_apart),
        T(test_limit_disabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
