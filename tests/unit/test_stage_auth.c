/* The authentication and authorization stages (SPEC 5) run in the real
 * pipeline of a gateway without sockets (fake_gateway.h): 401 without
 * credentials on a route that requires them, 401 for API keys that are
 * malformed or unknown (after asking the store), keys created by another
 * process while the gateway runs, HS256 JWTs signed here by hand with
 * their tier, scopes and exempt roles, 403 for a missing scope, and bearer
 * tokens left to the upstream when no JWT is configured. */

#include "fake_gateway.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include "auth/apikey.h"
#include "auth/keystore.h"

#define SECRET "0123456789abcdef0123456789abcdef-test"
#define OTHER_SECRET "fedcba9876543210fedcba9876543210-test"

#define CONFIG                                                                                     \
    "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"                                             \
    "identity:\n"                                                                                  \
    "  jwt:\n"                                                                                     \
    "    secret: \"" SECRET "\"\n"                                                                 \
    "    exempt_roles: [staff]\n"                                                                  \
    "tiers:\n"                                                                                     \
    "  anonymous: {limits: [\"100/min\"]}\n"                                                       \
    "  pro: {limits: [\"5/min\"]}\n"                                                               \
    "  vip: {exempt: true}\n"                                                                      \
    "routes:\n"                                                                                    \
    "  - prefix: /account/\n"                                                                      \
    "    auth: required\n"                                                                         \
    "  - prefix: /write/\n"                                                                        \
    "    scopes: [write]\n"                                                                        \
    "  - prefix: /limited/\n"                                                                      \
    "    limits: {\"*\": [\"1/min\"]}\n"                                                           \
    "  - prefix: /\n"

/* ---- tokens ------------------------------------------------------------------- */

static char *b64url(const unsigned char *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    assert_non_null(out);
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i >= 1) {
        uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = a[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

/* An HS256 JWT of <payload> (JSON) signed with <secret>, as
 * "Bearer <token>" into <out>. */
static void bearer(char *out, size_t cap, const char *payload, const char *secret)
{
    static const char head[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h = b64url((const unsigned char *)head, strlen(head));
    char *p = b64url((const unsigned char *)payload, strlen(payload));
    char input[2048];
    int n = snprintf(input, sizeof(input), "%s.%s", h, p);
    assert_true(n > 0 && (size_t)n < sizeof(input));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)input,
                         (size_t)n, mac, &mac_len));
    char *s = b64url(mac, mac_len);
    n = snprintf(out, cap, "Bearer %s.%s", input, s);
    assert_true(n > 0 && (size_t)n < cap);
    free(h);
    free(p);
    free(s);
}

/* A token for <sub> with the claims <extra> ("" or ", \"tier\": \"pro\""),
 * valid for ten minutes. */
static void token(char *out, size_t cap, const char *sub, const char *extra, const char *secret)
{
    char payload[1024];
    snprintf(payload, sizeof(payload), "{\"sub\": \"%s\", \"exp\": %lld%s}", sub,
             (long long)time(NULL) + 600, extra);
    bearer(out, cap, payload, secret);
}

/* ---- helpers -------------------------------------------------------------------- */

static void assert_passed(const struct fake_resp *r)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "hello from upstream\n");
}

/* <r> is a 401 or 403 of the auth stages: WWW-Authenticate <challenge>,
 * the JSON error body with <message>; the upstream never saw it. */
static void assert_refused(const struct fake_resp *r, int status, const char *challenge,
                           const char *message)
{
    assert_int_equal(r->status, status);
    assert_int_equal(r->ends, 1);
    assert_string_equal(fake_header(r, "WWW-Authenticate"), challenge);
    assert_string_equal(fake_header(r, "Content-Type"), "application/json");
    char want[512];
    snprintf(want, sizeof(want), "{\"error\": \"%s\", \"message\": \"%s\"}\n",
             status == 401 ? "Unauthorized" : "Forbidden", message);
    assert_string_equal(r->body, want);
}

#define INVALID "Bearer realm=\"sluice\", error=\"invalid_token\""
#define UNKNOWN_KEY "unknown, expired or revoked API key"

/* ---- tests ---------------------------------------------------------------------- */

static void test_auth_required_without_credentials(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = fake_request(fx, "GET", "/account/me", NULL);
    assert_refused(r, 401, "Bearer realm=\"sluice\"",
                   "this route requires an API key (X-API-Key) or a bearer token");
    assert_int_equal(fx->up.calls, 0);
    /* A route that does not require it lets the anonymous client through. */
    r = fake_request(fx, "GET", "/public", NULL);
    assert_passed(r);
    assert_int_equal(r->identity.kind, ID_IP);
    assert_string_equal(r->identity.tier, "anonymous");
}

/* Credentials that are sent must be valid, even where none are required. */
static void test_auth_malformed_api_key(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    assert_refused(fake_request(fx, "GET", "/public", "X-API-Key", "nope", NULL), 401, INVALID,
                   UNKNOWN_KEY);
    assert_refused(
        fake_request(fx, "GET", "/public", "Authorization", "Bearer sk_live_short", NULL), 401,
        INVALID, UNKNOWN_KEY);
    assert_refused(fake_request(fx, "GET", "/public", "Authorization", "Bearer ", NULL), 401,
                   INVALID, "empty or oversized bearer credential");
    assert_int_equal(fx->up.calls, 0);
}

/* A key of the right shape that nobody created: the stage asks the store
 * (it might be a minute old) and answers 401 when the store says no. */
static void test_auth_unknown_api_key(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    char secret[APIKEY_SECRET_MAX];
    assert_int_equal(apikey_generate("live", secret), 0);
    struct fake_resp *r = fake_start(fx, "GET", "/account/me", "X-API-Key", secret, NULL);
    exchange_run(r->x);
    assert_int_equal(r->heads, 0); /* waiting for the store */
    fake_wait(r);
    assert_refused(r, 401, INVALID, UNKNOWN_KEY);
    assert_int_equal(fx->up.calls, 0);
}

/* A key created by another process (the CLI) after the gateway started:
 * the first request finds it through the store, later ones in memory. The
 * key's tier, not "anonymous", is what the limits count. */
static void test_auth_api_key_created_while_running(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct ks_db db;
    struct ks_open_opts o = {.backend = KS_SQLITE, .data_dir = fx->data_dir};
    char *err = NULL;
    assert_int_equal(ks_open(&db, &o, &err), 0);
    struct ks_new req = {.name = "ci",
                         .owner = "ops",
                         .tier = "pro",
                         .scopes = "read write",
                         .quota_monthly = -1,
                         .quota_daily = -1};
    struct ks_key key;
    char secret[APIKEY_SECRET_MAX];
    assert_int_equal(ks_create(&db, &req, (int64_t)time(NULL) * 1000, &key, secret, &err), KS_OK);
    ks_close(&db);

    struct fake_resp *r = fake_request(fx, "GET", "/write/x", "X-API-Key", secret, NULL);
    assert_passed(r);
    const struct fake_identity *id = &r->identity;
    assert_int_equal(id->kind, ID_API_KEY);
    assert_string_equal(id->tier, "pro");
    assert_false(id->exempt);
    assert_string_equal(id->key_id, key.id);
    assert_string_equal(id->scopes, "read write");
    assert_string_equal(id->label, key.prefix);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 5);
    assert_int_equal(fx->up.last_identity.kind, ID_API_KEY);

    /* Known now: answered without waiting; Authorization: Bearer works too. */
    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", secret);
    r = fake_start(fx, "GET", "/account/me", "Authorization", auth, NULL);
    exchange_run(r->x);
    assert_int_equal(r->ends, 1);
    assert_passed(r);
    fake_done(r);
    assert_string_equal(r->identity.key_id, key.id);
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Remaining"), 3);
}

static void test_auth_jwt_identity(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    char auth[2048];
    token(auth, sizeof(auth), "alice", ", \"tier\": \"pro\", \"scope\": \"read write\"", SECRET);
    struct fake_resp *r = fake_request(fx, "POST", "/write/doc", "Authorization", auth, NULL);
    assert_passed(r);
    const struct fake_identity *id = &r->identity;
    assert_int_equal(id->kind, ID_JWT);
    assert_string_equal(id->id, "sub:alice");
    assert_string_equal(id->tier, "pro");
    assert_false(id->exempt);
    assert_string_equal(id->scopes, "read write");
    assert_string_equal(id->label, "alice");
    assert_string_equal(id->key_id, "");
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 5);
    assert_string_equal(fx->up.last_identity.id, "sub:alice");

    /* A tier the config does not know: identified, only "*" limits apply. */
    token(auth, sizeof(auth), "bob", ", \"tier\": \"gold\"", SECRET);
    r = fake_request(fx, "GET", "/limited/x", "Authorization", auth, NULL);
    assert_passed(r);
    assert_string_equal(r->identity.tier, "");
    assert_int_equal(fake_header_ll(r, "X-RateLimit-Limit"), 1);
}

/* An exempt role, or a tier that is exempt, is never limited. */
static void test_auth_jwt_exempt(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    char staff[2048], vip[2048], plain[2048];
    token(staff, sizeof(staff), "carol", ", \"roles\": [\"dev\", \"staff\"]", SECRET);
    token(vip, sizeof(vip), "dave", ", \"tier\": \"vip\"", SECRET);
    token(plain, sizeof(plain), "erin", "", SECRET);
    for (int i = 0; i < 3; i++) {
        struct fake_resp *r = fake_request(fx, "GET", "/limited/x", "Authorization", staff, NULL);
        assert_passed(r);
        assert_true(r->identity.exempt);
        assert_int_equal(fake_header_count(r, "X-RateLimit-Limit"), 0);
        r = fake_request(fx, "GET", "/limited/x", "Authorization", vip, NULL);
        assert_passed(r);
        assert_true(r->identity.exempt);
        assert_string_equal(r->identity.tier, "vip");
    }
    /* The control: the same route limits a token that is not exempt. */
    assert_passed(fake_request(fx, "GET", "/limited/x", "Authorization", plain, NULL));
    struct fake_resp *r = fake_request(fx, "GET", "/limited/x", "Authorization", plain, NULL);
    assert_int_equal(r->status, 429);
    assert_false(r->identity.exempt);
}

static void test_auth_jwt_insufficient_scope(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    char auth[2048];
    token(auth, sizeof(auth), "alice", ", \"tier\": \"pro\", \"scope\": \"read writer\"", SECRET);
    struct fake_resp *r = fake_request(fx, "POST", "/write/doc", "Authorization", auth, NULL);
    assert_refused(r, 403, "Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"write\"",
                   "missing scope 'write'");
    assert_int_equal(fx->up.calls, 0);
    /* Identified all the same: the 403 is about the scope, not who. */
    assert_int_equal(r->identity.kind, ID_JWT);
    /* A list claim is as good as a string. */
    token(auth, sizeof(auth), "alice", ", \"scope\": [\"read\", \"write\"]", SECRET);
    assert_passed(fake_request(fx, "POST", "/write/doc", "Authorization", auth, NULL));
}

static void test_auth_jwt_invalid(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    char auth[2048];
    token(auth, sizeof(auth), "mallory", ", \"tier\": \"vip\"", OTHER_SECRET);
    struct fake_resp *r = fake_request(fx, "GET", "/public", "Authorization", auth, NULL);
    assert_int_equal(r->status, 401);
    assert_string_equal(fake_header(r, "WWW-Authenticate"), INVALID);
    assert_non_null(strstr(r->body, "invalid token: "));
    assert_int_equal(r->identity.kind, ID_IP);

    char payload[256];
    snprintf(payload, sizeof(payload), "{\"sub\": \"late\", \"exp\": %lld}",
             (long long)time(NULL) - 3600);
    bearer(auth, sizeof(auth), payload, SECRET);
    r = fake_request(fx, "GET", "/public", "Authorization", auth, NULL);
    assert_int_equal(r->status, 401);
    assert_string_equal(fake_header(r, "WWW-Authenticate"), INVALID);

    r = fake_request(fx, "GET", "/public", "Authorization", "Bearer abc.def", NULL);
    assert_int_equal(r->status, 401);
    assert_int_equal(fx->up.calls, 0);
}

/* Without identity.jwt, bearer tokens that are not API keys, and other
 * schemes, belong to the upstream's own authentication. */
static void test_auth_bearer_left_to_upstream(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"
                                              "routes:\n"
                                              "  - prefix: /\n");
    char auth[2048];
    token(auth, sizeof(auth), "alice", "", SECRET);
    struct fake_resp *r = fake_request(fx, "GET", "/x", "Authorization", auth, NULL);
    assert_passed(r);
    assert_int_equal(r->identity.kind, ID_IP);
    r = fake_request(fx, "GET", "/x", "Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL);
    assert_passed(r);
    assert_int_equal(r->identity.kind, ID_IP);
    assert_int_equal(fx->up.calls, 2);
}

#define T(f) cmocka_unit_test_teardown(f, fake_gw_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_auth_required_without_credentials),
        T(test_auth_malformed_api_key),
        T(test_auth_unknown_api_key),
        T(test_auth_api_key_created_while_running),
        T(test_auth_jwt_identity),
        T(test_auth_jwt_exempt),
        T(test_auth_jwt_insufficient_scope),
        T(test_auth_jwt_invalid),
        T(test_auth_bearer_left_to_upstream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
