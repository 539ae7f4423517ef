/* Abuse bans (SPEC 7.3): the sliding violation counts (counting, the
 * window sliding, the bound on identities) with an injected clock; the
 * length of repeat bans (escalation and its cap); identities and POST
 * /bans bodies; the ban store on SQLite, directly and through the
 * runtime's thread (round trip, reopen); and the stages in the real
 * pipeline (fake_gateway.h): more than `violations` 429s ban, exactly
 * `violations` do not, and a banned identity gets the 403 of SPEC 7.3. */

#include "fake_gateway.h"

#include <jansson.h>
#include <time.h>

#include "abuse/ban.h"
#include "abuse/runtime.h"
#include "abuse/store.h"
#include "abuse/tracker.h"
#include "util/clock.h"

#define UPSTREAM "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"
#define T0 INT64_C(1700000000000) /* ms; a multiple of a second */
#define H INT64_C(3600000)
#define D (24 * H)

/* ---- the tracker ------------------------------------------------------------ */

static void test_tracker_counts(void **state)
{
    (void)state;
    struct abuse_tracker *t = abuse_tracker_new(100, 60000);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(abuse_tracker_record(t, "ip:198.51.100.7", T0 + i), i);
    assert_int_equal(abuse_tracker_record(t, "key:key_1", T0 + 10), 1);
    assert_int_equal(abuse_tracker_count(t, "ip:198.51.100.7", 60000, T0 + 20), 5);
    assert_int_equal(abuse_tracker_count(t, "ip:203.0.113.1", 60000, T0 + 20), 0);
    assert_int_equal(abuse_tracker_size(t), 2);

    struct abuse_violator top[4];
    assert_int_equal(abuse_tracker_top(t, 60000, T0 + 20, top, 4), 2);
    assert_string_equal(top[0].identity, "ip:198.51.100.7");
    assert_int_equal(top[0].count, 5);
    assert_int_equal(top[0].last_ms, T0 + 5);
    assert_string_equal(top[1].identity, "key:key_1");
    assert_int_equal(top[1].count, 1);
    /* top=1: only the first. */
    assert_int_equal(abuse_tracker_top(t, 60000, T0 + 20, top, 1), 1);
    assert_string_equal(top[0].identity, "ip:198.51.100.7");

    /* A ban starts the count again. */
    abuse_tracker_reset(t, "ip:198.51.100.7");
    assert_int_equal(abuse_tracker_count(t, "ip:198.51.100.7", 60000, T0 + 30), 0);
    assert_int_equal(abuse_tracker_record(t, "ip:198.51.100.7", T0 + 40), 1);
    abuse_tracker_free(t);
}

/* A window of 60 s is 60 slots of a second: a violation counts for the
 * window (less at most one slot), never longer. */
static void test_tracker_window_slides(void **state)
{
    (void)state;
    struct abuse_tracker *t = abuse_tracker_new(10, 60000);
    const char *id = "sub:alice";
    for (int i = 0; i < 5; i++)
        abuse_tracker_record(t, id, T0 + 500);
    for (int i = 0; i < 5; i++)
        abuse_tracker_record(t, id, T0 + 30000);
    assert_int_equal(abuse_tracker_count(t, id, 60000, T0 + 59000), 10);
    /* A shorter window looks at its own slots only. */
    assert_int_equal(abuse_tracker_count(t, id, 30000, T0 + 59000), 5);
    assert_int_equal(abuse_tracker_count(t, id, 10000, T0 + 59000), 0);
    /* 60 s later the first five have left the window. */
    assert_int_equal(abuse_tracker_record(t, id, T0 + 60000), 6);
    assert_int_equal(abuse_tracker_count(t, id, 60000, T0 + 89999), 6);
    assert_int_equal(abuse_tracker_count(t, id, 60000, T0 + 90000), 1);
    /* Long quiet: the ring is cleared as it moves on, not summed stale. */
    assert_int_equal(abuse_tracker_record(t, id, T0 + 10 * 60000), 1);
    assert_int_equal(abuse_tracker_count(t, id, 60000, T0 + 10 * 60000 + 59000), 1);
    assert_int_equal(abuse_tracker_count(t, id, 60000, T0 + 11 * 60000), 0);
    struct abuse_violator top[2];
    assert_int_equal(abuse_tracker_top(t, 60000, T0 + 11 * 60000, top, 2), 0);
    /* A clock step back counts in the newest slot. */
    assert_int_equal(abuse_tracker_record(t, id, T0 + 10 * 60000 - 5000), 2);
    abuse_tracker_free(t);
}

/* An attacker with many addresses cannot grow the table: past its
 * capacity the identity whose last violation is the oldest goes. */
static void test_tracker_bound(void **state)
{
    (void)state;
    struct abuse_tracker *t = abuse_tracker_new(100, D);
    char id[64];
    abuse_tracker_record(t, "ip:192.0.2.1", T0);
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        abuse_tracker_record(t, id, T0 + i);
        if (i % 50 == 0) /* a steady violator stays */
            abuse_tracker_record(t, "ip:192.0.2.1", T0 + i);
        assert_true(abuse_tracker_size(t) <= 100);
    }
    assert_int_equal(abuse_tracker_size(t), 100);
    assert_int_equal(abuse_tracker_count(t, "ip:192.0.2.1", D, T0 + 20000), 201);
    assert_int_equal(abuse_tracker_count(t, "ip:10.0.0.0", D, T0 + 20000), 0);   /* evicted */
    assert_int_equal(abuse_tracker_count(t, "ip:10.0.39.15", D, T0 + 20000), 1); /* the last */
    struct abuse_violator top[1];
    assert_int_equal(abuse_tracker_top(t, D, T0 + 20000, top, 1), 1);
    assert_string_equal(top[0].identity, "ip:192.0.2.1");
    abuse_tracker_free(t);
}

/* ---- bans ---------------------------------------------------------------------- */

static void test_escalation_and_cap(void **state)
{
    (void)state;
    struct abuse_policy p = {2 * H, 2, 7 * D, 7 * D};
    assert_int_equal(abuse_ban_length(&p, 1), 2 * H);
    assert_int_equal(abuse_ban_length(&p, 2), 4 * H);
    assert_int_equal(abuse_ban_length(&p, 3), 8 * H);
    assert_int_equal(abuse_ban_length(&p, 7), 128 * H);
    assert_int_equal(abuse_ban_length(&p, 8), 7 * D); /* 256 h, capped */
    assert_int_equal(abuse_ban_length(&p, 1000000), 7 * D);
    struct abuse_policy flat = {H, 1, 7 * D, 7 * D};
    assert_int_equal(abuse_ban_length(&flat, 50), H);
    struct abuse_policy huge = {H, 1000, 365 * D, 365 * D};
    assert_int_equal(abuse_ban_length(&huge, 3), 365 * D); /* no overflow on the way */

    struct abuse_ban first, second, again, manual, fresh;
    assert_true(abuse_ban_next(NULL, &p, ABUSE_SRC_AUTO, "ip:198.51.100.7", "11 violations", 0, T0,
                               &first));
    assert_int_equal(first.count, 1);
    assert_int_equal(first.until_ms - first.created_ms, 2 * H);
    assert_string_equal(first.reason, "11 violations");
    /* Still banned: an automatic ban changes nothing. */
    assert_false(
        abuse_ban_next(&first, &p, ABUSE_SRC_AUTO, "ip:198.51.100.7", "", 0, T0 + H, &again));
    /* After it ended: the repeat is twice as long. */
    assert_true(
        abuse_ban_next(&first, &p, ABUSE_SRC_AUTO, "ip:198.51.100.7", "", 0, T0 + 3 * H, &second));
    assert_int_equal(second.count, 2);
    assert_int_equal(second.until_ms, T0 + 3 * H + 4 * H);
    /* A manual ban replaces an active one, with its own length. */
    assert_true(abuse_ban_next(&second, &p, ABUSE_SRC_MANUAL, "ip:198.51.100.7", "by hand",
                               30 * 60000, T0 + 4 * H, &manual));
    assert_int_equal(manual.count, 3);
    assert_int_equal(manual.until_ms, T0 + 4 * H + 30 * 60000);
    assert_int_equal(manual.source, ABUSE_SRC_MANUAL);
    /* max_ban after the last ban ended, it is forgiven. */
    assert_true(abuse_ban_next(&second, &p, ABUSE_SRC_AUTO, "ip:198.51.100.7", "", 0,
                               second.until_ms + 7 * D, &fresh));
    assert_int_equal(fresh.count, 1);
    assert_int_equal(fresh.until_ms - fresh.created_ms, 2 * H);
}

static void assert_identity(const char *in, int prefix, const char *want)
{
    char out[ABUSE_ID_MAX];
    const char *bad = abuse_identity_parse(in, strlen(in), prefix, out);
    if (bad)
        fail_msg("%s: %s", in, bad);
    assert_string_equal(out, want);
}

static void assert_bad_identity(const char *in)
{
    char out[ABUSE_ID_MAX];
    if (!abuse_identity_parse(in, strlen(in), 64, out))
        fail_msg("%s was accepted as %s", in, out);
}

static void test_identities(void **state)
{
    (void)state;
    assert_identity("ip:198.51.100.7", 64, "ip:198.51.100.7");
    assert_identity("ip:2001:db8:1:2::5", 64, "ip:2001:db8:1:2::/64");
    assert_identity("ip:2001:db8:1:2::/64", 64, "ip:2001:db8:1:2::/64");
    assert_identity("ip:2001:db8:1:2:3::9", 48, "ip:2001:db8:1::/48");
    assert_identity("ip:::ffff:198.51.100.7", 64, "ip:198.51.100.7");
    assert_identity("key:key_0123456789abcdef", 64, "key:key_0123456789abcdef");
    assert_identity("sub:alice@example.com", 64, "sub:alice@example.com");
    assert_bad_identity("");
    assert_bad_identity("ip:");
    assert_bad_identity("ip:banana");
    assert_bad_identity("ip:198.51.100.7/32");
    assert_bad_identity("ip:198.51.100.300");
    assert_bad_identity("ip:2001:db8::/48");
    assert_bad_identity("key:");
    assert_bad_identity("key:a b");
    assert_bad_identity("sub:");
    assert_bad_identity("sub:a\tb");
    assert_bad_identity("user:alice");
    assert_bad_identity("198.51.100.7");
    char longid[200];
    memset(longid, 'a', sizeof longid);
    memcpy(longid, "sub:", 4);
    longid[96] = '\0';
    assert_bad_identity(longid);
    longid[95] = '\0';
    assert_identity(longid, 64, longid);

    char dec[64];
    assert_int_equal(abuse_pct_decode("ip%3A2001%3adb8%3A%3A%2F64", dec, sizeof dec), 16);
    assert_string_equal(dec, "ip:2001:db8::/64");
    assert_int_equal(abuse_pct_decode("a%2", dec, sizeof dec), -1);
    assert_int_equal(abuse_pct_decode("a%00b", dec, sizeof dec), -1);
    assert_int_equal(abuse_pct_decode("a%zz", dec, sizeof dec), -1);
}

static void assert_bad_body(const char *body, const char *word)
{
    struct abuse_ban_req r;
    const char *bad = abuse_ban_req_parse(body, strlen(body), 64, &r);
    if (!bad)
        fail_msg("%s was accepted", body);
    if (!strstr(bad, word))
        fail_msg("%s: '%s' does not say %s", body, bad, word);
}

static void test_ban_request(void **state)
{
    (void)state;
    struct abuse_ban_req r;
    const char *ok = "{\"identity\": \"ip:198.51.100.7\", \"duration\": \"1h\", \"reason\": \"x\"}";
    assert_null(abuse_ban_req_parse(ok, strlen(ok), 64, &r));
    assert_string_equal(r.identity, "ip:198.51.100.7");
    assert_int_equal(r.duration_ms, H);
    assert_string_equal(r.reason, "x");
    const char *no_reason = "{\"identity\": \"sub:bob\", \"duration\": \"90s\"}";
    assert_null(abuse_ban_req_parse(no_reason, strlen(no_reason), 64, &r));
    assert_string_equal(r.reason, "");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"duration\": \"1h\", \"for\": 1}",
                    "unknown field");
    assert_bad_body("{\"identity\": \"ip:nope\", \"duration\": \"1h\"}", "ip:");
    assert_bad_body("{\"identity\": 7, \"duration\": \"1h\"}", "identity");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\"}", "duration");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"duration\": \"soon\"}", "duration");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"duration\": \"0s\"}", "duration");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"duration\": \"400d\"}", "duration");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"duration\": \"1h\", \"reason\": 5}",
                    "reason");
    assert_bad_body("[1]", "object");
    assert_bad_body("{not json", "JSON");
    assert_bad_body("{\"identity\": \"ip:1.2.3.4\", \"identity\": \"ip:1.2.3.5\", "
                    "\"duration\": \"1h\"}",
                    "JSON");
}

static void test_ban_forms(void **state)
{
    (void)state;
    struct abuse_ban b = {
        .source = ABUSE_SRC_MANUAL, .created_ms = T0, .until_ms = T0 + H + 1, .count = 3};
    strcpy(b.identity, "ip:198.51.100.7");
    strcpy(b.reason, "scraping \"quoted\" \xc3\xa9");
    char *s = abuse_ban_encode(&b);
    struct abuse_ban back;
    assert_true(abuse_ban_decode(b.identity, s, strlen(s), &back));
    assert_memory_equal(&back, &b, sizeof b);
    char *again = abuse_ban_encode(&back);
    assert_string_equal(s, again); /* the same bytes: Redis compares them */
    free(s);
    free(again);
    assert_false(abuse_ban_decode("ip:1.2.3.4", "{\"c\":1}", 7, &back));

    json_t *j = abuse_ban_json(&b, T0 + 1000);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text,
                        "{\"count\":3,\"created\":1700000000,\"identity\":\"ip:198.51.100.7\","
                        "\"reason\":\"scraping \\\"quoted\\\" \xc3\xa9\",\"retry_after\":3600,"
                        "\"source\":\"manual\",\"until\":1700003601}");
    free(text);
    json_decref(j);
    assert_int_equal(abuse_ban_retry_after(&b, T0 + H), 1);
    assert_int_equal(abuse_ban_retry_after(&b, T0 + 2 * H), 1);
}

/* ---- the store on SQLite --------------------------------------------------------- */

struct store_fixture {
    char dir[64];
    struct config cfg;
};

static void store_fixture_init(struct store_fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sluice-abuse-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.store.backend = CFG_BACKEND_MEMORY;
    f->cfg.store.data_dir = f->dir;
}

static void test_store_sqlite_round_trip(void **state)
{
    (void)state;
    struct store_fixture f;
    store_fixture_init(&f);
    char *err = NULL, why[256];
    struct abuse_store *s = abuse_store_open(&f.cfg, &err);
    assert_non_null(s);
    struct abuse_policy p = {2 * H, 2, 7 * D, 7 * D};
    struct abuse_ban b, got;
    assert_true(abuse_ban_next(NULL, &p, ABUSE_SRC_AUTO, "key:key_1", "11 violations", 0, T0, &b));
    assert_int_equal(s->ops->get(s, "key:key_1", &got, why, sizeof why), 0);
    assert_int_equal(s->ops->put(s, &b, NULL, why, sizeof why), 1);
    assert_int_equal(s->ops->get(s, "key:key_1", &got, why, sizeof why), 1);
    assert_memory_equal(&got, &b, sizeof b);
    uint64_t v1, v2;
    assert_int_equal(s->ops->version(s, &v1), 0);
    struct abuse_ban manual;
    assert_true(abuse_ban_next(NULL, &p, ABUSE_SRC_MANUAL, "sub:eve", "", H, T0, &manual));
    assert_int_equal(s->ops->put(s, &manual, NULL, why, sizeof why), 1);
    assert_int_equal(s->ops->version(s, &v2), 0);
    assert_true(v2 != v1);
    s->ops->close(s);

    /* Reopened: both are there. */
    s = abuse_store_open(&f.cfg, &err);
    assert_non_null(s);
    struct abuse_ban *all;
    int n;
    assert_int_equal(s->ops->load(s, &all, &n, why, sizeof why), 0);
    assert_int_equal(n, 2);
    int k = strcmp(all[0].identity, "key:key_1") == 0 ? 0 : 1;
    assert_memory_equal(&all[k], &b, sizeof b);
    assert_memory_equal(&all[1 - k], &manual, sizeof manual);
    free(all);
    assert_int_equal(s->ops->del(s, &b, why, sizeof why), 1);
    assert_int_equal(s->ops->del(s, &b, why, sizeof why), 0);
    assert_int_equal(s->ops->get(s, "key:key_1", &got, why, sizeof why), 0);
    s->ops->close(s);
    test_rm_rf(f.dir);
}

/* One call on the runtime's thread, waited for on the test's loop. */
struct rt_call {
    struct abuse_runtime *rt;
    enum abuse_source src;
    bool unban;
    const char *identity;
    int64_t duration_ms, now_ms;
    struct abuse_policy p;
    struct abuse_ban out;
    int rc;
    char why[256];
    bool done;
};

static void rt_call_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct rt_call *c = arg;
    if (c->unban)
        c->rc = abuse_rt_unban(c->rt, c->identity, c->now_ms, &c->out, c->why, sizeof c->why);
    else
        c->rc = abuse_rt_ban(c->rt, c->src, c->identity, "r", c->duration_ms, &c->p, c->now_ms,
                             &c->out, c->why, sizeof c->why);
}

static void rt_call_done(void *arg)
{
    ((struct rt_call *)arg)->done = true;
}

static int rt_call(uv_loop_t *loop, struct rt_call *c)
{
    abuse_rt_submit(c->rt, loop, rt_call_run, rt_call_done, c);
    while (!c->done)
        uv_run(loop, UV_RUN_ONCE);
    return c->rc;
}

static void test_runtime_sqlite(void **state)
{
    (void)state;
    struct store_fixture f;
    store_fixture_init(&f);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *err = NULL;
    struct abuse_runtime *rt = abuse_rt_open(&f.cfg, 7 * D, &err);
    assert_non_null(rt);
    int64_t now = clock_wall_us() / 1000;
    struct abuse_policy p = {2 * H, 2, 7 * D, 7 * D};
    struct rt_call c = {
        .rt = rt, .src = ABUSE_SRC_AUTO, .identity = "ip:198.51.100.7", .p = p, .now_ms = now};
    assert_int_equal(rt_call(&loop, &c), 1);
    assert_int_equal(c.out.count, 1);
    struct rt_call again = c;
    again.done = false;
    assert_int_equal(rt_call(&loop, &again), 0); /* already banned */

    struct abuse_snap *snap = NULL;
    uint64_t gen = 0;
    abuse_rt_sync(rt, &snap, &gen);
    const struct abuse_ban *b = abuse_snap_find(snap, "ip:198.51.100.7", now + 1000);
    assert_non_null(b);
    assert_int_equal(b->until_ms, now + 2 * H);
    assert_null(abuse_snap_find(snap, "ip:198.51.100.8", now));
    assert_null(abuse_snap_find(snap, "ip:198.51.100.7", now + 2 * H));
    assert_int_equal(abuse_snap_active(snap, now), 1);

    /* Unban: the snapshot moves on, the record stays for the next ban. */
    struct rt_call un = {.rt = rt, .unban = true, .identity = "ip:198.51.100.7", .now_ms = now};
    assert_int_equal(rt_call(&loop, &un), 1);
    un.done = false;
    assert_int_equal(rt_call(&loop, &un), 0);
    abuse_rt_sync(rt, &snap, &gen);
    assert_null(abuse_snap_find(snap, "ip:198.51.100.7", now + 1));
    struct rt_call second = c;
    second.done = false;
    second.now_ms = now + 1;
    assert_int_equal(rt_call(&loop, &second), 1);
    assert_int_equal(second.out.count, 2);
    assert_int_equal(second.out.until_ms, now + 1 + 4 * H);
    abuse_snap_unref(snap);
    abuse_rt_close(rt);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* Reopened: the ban holds. */
    rt = abuse_rt_open(&f.cfg, 7 * D, &err);
    assert_non_null(rt);
    snap = NULL;
    gen = 0;
    abuse_rt_sync(rt, &snap, &gen);
    b = abuse_snap_find(snap, "ip:198.51.100.7", now + 2);
    assert_non_null(b);
    assert_int_equal(b->count, 2);
    json_t *list = abuse_rt_list(rt, now + 2);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    abuse_snap_unref(snap);
    abuse_rt_close(rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    test_rm_rf(f.dir);
}

/* ---- the stages ---------------------------------------------------------------------- */

#define ABUSE_CONFIG                                                                               \
    UPSTREAM "abuse: {violations: 2, window: 1h, ban: 2h}\n"                                       \
             "routes:\n"                                                                           \
             "  - path: /a\n"                                                                      \
             "    limits: {anonymous: [\"1/min\"]}\n"

static void test_stage_more_than_n_bans(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, ABUSE_CONFIG);
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 200);
    /* Two violations: exactly `violations`, no ban. */
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 429);
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 429);
    for (int i = 0; i < 40; i++)
        fake_gw_step(fx, 5);
    /* The third is one too many. */
    struct fake_resp *r = fake_request(fx, "GET", "/a", NULL);
    assert_int_equal(r->status, 429);
    for (int i = 0; i < 400; i++) {
        r = fake_request(fx, "GET", "/a", NULL);
        if (r->status == 403)
            break;
        fake_gw_step(fx, 5);
    }
    assert_int_equal(r->status, 403);
    assert_string_equal(r->body, "{\"error\": \"Forbidden\", \"message\": \"temporarily banned\", "
                                 "\"retry_after\": 7200}\n");
    assert_int_equal(fake_header_ll(r, "Retry-After"), 7200);
    assert_int_equal(fx->up.calls, 1);
    /* Another address is not banned. */
    snprintf(fx->peer_ip, sizeof fx->peer_ip, "203.0.113.8");
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 200);
}

static void test_stage_no_abuse_section_no_ban(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, UPSTREAM "routes:\n"
                                                       "  - path: /a\n"
                                                       "    limits: {anonymous: [\"1/min\"]}\n");
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 200);
    for (int i = 0; i < 30; i++)
        assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 429);
    for (int i = 0; i < 60; i++)
        fake_gw_step(fx, 5);
    assert_int_equal(fake_request(fx, "GET", "/a", NULL)->status, 429);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracker_counts),
        cmocka_unit_test(test_tracker_window_slides),
        cmocka_unit_test(test_tracker_bound),
        cmocka_unit_test(test_escalation_and_cap),
        cmocka_unit_test(test_identities),
        cmocka_unit_test(test_ban_request),
        cmocka_unit_test(test_ban_forms),
        cmocka_unit_test(test_store_sqlite_round_trip),
        cmocka_unit_test(test_runtime_sqlite),
        cmocka_unit_test_teardown(test_stage_more_than_n_bans, fake_gw_teardown),
        cmocka_unit_test_teardown(test_stage_no_abuse_section_no_ban, fake_gw_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
