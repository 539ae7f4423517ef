/* GET /events (src/admin/events.c) through the real admin pipeline on the
 * fake gateway: the stream's head, an alert raised on another thread
 * arriving as an SSE event, multi-line data, pings, the token, a full
 * queue, a client that stops reading (cut off), and a client that leaves
 * (its stream freed, the ping timer stopped). The .c is included to reach
 * the worker's state. */
#include "fake_gateway.h"

#include "admin/events.c"
#include "quota/alert.h"

#define TOKEN "events-test-token-0123456789"
#define CONFIG                                                                                     \
    "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"                                         \
    "admin: {listen: \"127.0.0.1:9\", token: \"" TOKEN "\"}\n"

static struct fake_resp *open_stream(struct fake_gw *fx, const char *token)
{
    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", token ? token : "");
    struct fake_resp *r = token ? fake_start(fx, "GET", "/events", "Authorization", auth, NULL)
                                : fake_start(fx, "GET", "/events", NULL);
    r->x->admin = true;
    r->x->stages = fx->gw.pipelines[1].stages;
    r->x->n_stages = fx->gw.pipelines[1].n_stages;
    exchange_run(r->x);
    return r;
}

static struct events_worker *ew_of(struct fake_gw *fx)
{
    return fx->w.ctx[MOD_admin];
}

/* Steps the loop until <r>'s body contains <want> (bounded). */
static void wait_body(struct fake_gw *fx, struct fake_resp *r, const char *want)
{
    for (int i = 0; i < FAKE_WAIT_STEPS && !(r->body && strstr(r->body, want)); i++)
        fake_gw_step(fx, 1);
    if (!r->body || !strstr(r->body, want))
        fail_msg("the stream did not get '%s'; it has:\n%s", want, r->body ? r->body : "");
}

static const struct quota_alert ALERT = {
    .identity = "key:k_demo",
    .key_id = "k_demo",
    .owner = "alice",
    .quota = QUOTA_DAILY,
    .threshold = 95,
    .used = 950,
    .limit = 1000,
    .period_start = 1796428800,
    .period_end = 1796515200,
};

static void *raise_elsewhere(void *arg)
{
    quota_alert_raise(arg, &ALERT);
    return NULL;
}

static void test_stream_and_alert(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = open_stream(fx, TOKEN);
    assert_int_equal(r->status, 200);
    assert_string_equal(fake_header(r, "Content-Type"), "text/event-stream");
    assert_string_equal(fake_header(r, "Cache-Control"), "no-store");
    assert_int_equal(r->content_length, -1);
    assert_string_equal(r->body, ": connected\n\n");
    assert_int_equal(r->ends, 0);
    assert_true(r->x->stream);
    assert_int_equal(ew_of(fx)->n_clients, 1);
    assert_true(uv_is_active((uv_handle_t *)&ew_of(fx)->ping));

    /* Raised on another thread (as the request path of another worker). */
    pthread_t t;
    pthread_create(&t, NULL, raise_elsewhere, &fx->gw);
    pthread_join(t, NULL);
    wait_body(fx, r, "\n\nevent: quota.threshold");
    char id[QUOTA_ALERT_ID_LEN + 1];
    quota_alert_id(&ALERT, id);
    struct buf want = {0};
    buf_append_str(&want, ": connected\n\nevent: quota.threshold\ndata: ");
    quota_alert_body(&ALERT, id, &want);
    buf_append(&want, "\n\n", 3);
    assert_string_equal(r->body, want.data);
    buf_release(&want);
    assert_int_equal(ew_of(fx)->counts[EV_SENT], 1);

    struct buf m = {0};
    events_metrics(&fx->gw, &m);
    buf_append(&m, "", 1);
    assert_non_null(strstr(m.data, "sluice_event_streams 1\n"));
    assert_non_null(strstr(m.data, "sluice_events_total{result=\"sent\"} 1\n"));
    buf_release(&m);
}

static void test_needs_token(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = open_stream(fx, NULL);
    assert_int_equal(r->status, 401);
    assert_int_equal(r->ends, 1);
    r = open_stream(fx, "wrong");
    assert_int_equal(r->status, 401);
    assert_int_equal(ew_of(fx)->n_clients, 0);
}

static void test_data_lines_and_ping(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = open_stream(fx, TOKEN);
    static const char json[] = "{\n\"a\": 1,\r\n\"b\": 2\r}";
    events_publish(&fx->gw, "bad type", "{}", 2); /* not a type: nothing */
    events_publish(&fx->gw, "key.created", json, sizeof(json) - 1);
    wait_body(fx, r, "event: key.created");
    assert_string_equal(r->body, ": connected\n\n"
                                 "event: key.created\ndata: {\ndata: \"a\": 1,\ndata: \"b\": "
                                 "2\ndata: }\n\n");
    events_on_ping(&ew_of(fx)->ping);
    assert_non_null(strstr(r->body, "}\n\n: ping\n\n"));
    assert_int_equal(ew_of(fx)->counts[EV_SENT], 1); /* a ping is not an event */
}

static void test_nobody_listens(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    events_publish(&fx->gw, "key.created", "{}", 2);
    assert_null(ew_of(fx)->head);
    assert_false(uv_is_active((uv_handle_t *)&ew_of(fx)->ping));
}

static void test_full_queue_drops(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = open_stream(fx, TOKEN);
    for (int i = 0; i < SL_EVENTS_QUEUE_MAX + 5; i++)
        events_publish(&fx->gw, "t", "{}", 2);
    assert_int_equal(ew_of(fx)->counts[EV_DROPPED], 5);
    wait_body(fx, r, "event: t");
    int n = 0;
    for (const char *p = r->body; (p = strstr(p, "event: t\n")); p++)
        n++;
    assert_int_equal(n, SL_EVENTS_QUEUE_MAX);
    /* Larger than an event may be: dropped too. */
    char *big = calloc(1, SL_EVENTS_MAX_BYTES + 2);
    memset(big, 'x', SL_EVENTS_MAX_BYTES + 1);
    events_publish(&fx->gw, "t", big, SL_EVENTS_MAX_BYTES + 1);
    free(big);
    assert_int_equal(ew_of(fx)->counts[EV_DROPPED], 6);
}

/* A sink whose client has stopped reading: its output only grows. The
 * abort frees the exchange at once, as the connection does. */
static size_t slow_pending;
static size_t slow_sink_pending(const struct exchange *x)
{
    return slow_pending;
}
static void slow_sink_abort(struct exchange *x)
{
    struct fake_resp *r = fake_resp_of(x);
    r->aborts++;
    r->x = NULL;
    exchange_free(x);
}

static void test_slow_client_cut(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct exchange_sink slow = fake_sink;
    slow.pending = slow_sink_pending;
    slow.abort = slow_sink_abort;
    struct fake_resp *fast = open_stream(fx, TOKEN);
    struct fake_resp *r = open_stream(fx, TOKEN);
    r->x->sink = &slow;
    assert_int_equal(ew_of(fx)->n_clients, 2);
    slow_pending = SL_EVENTS_CLIENT_MAX_PENDING - 100; /* still room for a small event */
    events_publish(&fx->gw, "t", "{\"n\": 1}", 8);
    wait_body(fx, r, "event: t");
    slow_pending = SL_EVENTS_CLIENT_MAX_PENDING - 10;
    events_publish(&fx->gw, "t", "{\"n\": 2}", 8);
    wait_body(fx, fast, "{\"n\": 2}");
    assert_int_equal(r->aborts, 1);
    assert_null(r->x);
    assert_null(strstr(r->body, "{\"n\": 2}"));
    assert_int_equal(ew_of(fx)->n_clients, 1);
    assert_int_equal(ew_of(fx)->counts[EV_CUT], 1);
    assert_true(uv_is_active((uv_handle_t *)&ew_of(fx)->ping));
}

static void test_client_gone(void **state)
{
    struct fake_gw *fx = fake_gw_start(state, CONFIG);
    struct fake_resp *r = open_stream(fx, TOKEN);
    fake_done(r); /* the connection closed */
    assert_int_equal(ew_of(fx)->n_clients, 0);
    assert_null(ew_of(fx)->clients);
    assert_false(uv_is_active((uv_handle_t *)&ew_of(fx)->ping));
    events_publish(&fx->gw, "t", "{}", 2);
    assert_null(ew_of(fx)->head);
    /* A stream still open when the gateway stops is freed with it. */
    open_stream(fx, TOKEN);
    assert_int_equal(ew_of(fx)->n_clients, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, fake_gw_teardown)
    const struct CMUnitTest tests[] = {
        T(test_stream_and_alert), T(test_needs_token),      T(test_data_lines_and_ping),
        T(test_nobody_listens),   T(test_full_queue_drops), T(test_slow_client_cut),
        T(test_client_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
