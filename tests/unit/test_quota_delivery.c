/* The alert thread (src/quota/delivery.c) with a real SQLite file in a
 * temporary directory and a real HTTP receiver on loopback
 * (http_receiver.h): each alert logged, POSTed once with a signature the
 * receiver can verify, retried when the receiver was down (the clock is
 * injected: moving it makes the retry due), kept across a stop and a start,
 * stored once however often it is raised, given up after 24 hours, and a
 * stop that does not wait for a receiver that never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "http_receiver.h"
#include "quota/alert.h"
#include "quota/delivery.h"
#include "quota/outbox.h"
#include "store/db.h"
#include "support.h"
#include "util/clock.h"

#define T0 INT64_C(1796461140)
#define SECRET "whsec_0123456789abcdef"

struct fixture {
    char dir[64];
    char url[128];
    bool webhook;
    int64_t now; /* atomic: read by the thread */
    FILE *log;
    struct quota_delivery *d;
};

static bool target(void *arg, char **url, char **secret)
{
    struct fixture *f = arg;
    if (!f->webhook)
        return false;
    *url = strdup(f->url);
    *secret = strdup(SECRET);
    return true;
}

static int64_t fake_now(void *arg)
{
    struct fixture *f = arg;
    return __atomic_load_n(&f->now, __ATOMIC_RELAXED);
}

static void set_now(struct fixture *f, int64_t t)
{
    __atomic_store_n(&f->now, t, __ATOMIC_RELAXED);
    quota_delivery_kick(f->d);
}

static void start(struct fixture *f)
{
    struct quota_delivery_opts o = {
        .data_dir = f->dir,
        .target = target,
        .target_arg = f,
        .now = fake_now,
        .now_arg = f,
        .log = f->log,
    };
    char *err = NULL;
    f->d = quota_delivery_start(&o, &err);
    if (!f->d)
        fail_msg("%s", err);
}

static void stop(struct fixture *f)
{
    if (f->d)
        quota_delivery_stop(f->d);
    f->d = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-delivery-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->now = T0;
    f->webhook = true;
    f->log = tmpfile();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stop(f);
    fclose(f->log);
    test_rm_rf(f->dir);
    free(f);
    return 0;
}

static void point_at(struct fixture *f, int port)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/alerts", port);
}

/* Waits up to 5 s for <field> of the stats to reach <n>; its value. */
#define WAIT_STAT(f, field, n)                                                                     \
    ({                                                                                             \
        struct quota_delivery_stats s_;                                                            \
        for (int i_ = 0; i_ < 1000; i_++) {                                                        \
            quota_delivery_stats((f)->d, &s_);                                                     \
            if (s_.field >= (uint64_t)(n))                                                         \
                break;                                                                             \
            struct timespec ts_ = {0, 5000000};                                                    \
            nanosleep(&ts_, NULL);                                                                 \
        }                                                                                          \
        s_.field;                                                                                  \
    })

static void raise_one(struct fixture *f, int threshold, char *id_out)
{
    struct quota_alert a = {
        .identity = "key:k_demo",
        .key_id = "k_demo",
        .owner = "alice",
        .quota = QUOTA_MONTHLY,
        .threshold = threshold,
        .used = threshold * 1000,
        .limit = 100000,
        .period_start = 1793577600,
        .period_end = 1796256000,
    };
    char id[QUOTA_ALERT_ID_LEN + 1];
    quota_alert_id(&a, id);
    struct buf b = {0};
    quota_alert_body(&a, id, &b);
    quota_delivery_push(f->d, id, b.data, b.len);
    buf_release(&b);
    if (id_out)
        memcpy(id_out, id, sizeof(id));
}

/* What a receiver does: recompute HMAC-SHA256(secret, "<t>." + body) from
 * the raw body and compare. */
static void verify_signature(struct receiver *r, int i, int64_t want_t)
{
    char sig[256];
    rcv_header(r, i, "X-Sluice-Signature", sig, sizeof(sig));
    long long t = 0;
    char v1[65] = "";
    assert_int_equal(sscanf(sig, "t=%lld,v1=%64[0-9a-f]", &t, v1), 2);
    assert_int_equal(t, want_t);
    char msg[20000];
    int n = snprintf(msg, sizeof(msg), "%lld.%s", t, r->reqs[i].body);
    unsigned char mac[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)msg, (size_t)n, mac, &len);
    char hex[65];
    for (int j = 0; j < 32; j++)
        snprintf(hex + 2 * j, 3, "%02x", mac[j]);
    assert_string_equal(v1, hex);
}

static sqlite3 *open_db(struct fixture *f)
{
    char *err = NULL;
    sqlite3 *db = db_open(f->dir, &err);
    if (!db)
        fail_msg("%s", err);
    return db;
}

static int outbox_size(struct fixture *f)
{
    sqlite3 *db = open_db(f);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM alert_outbox", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    db_close(db);
    return n;
}

static char *log_text(struct fixture *f)
{
    static char text[16384];
    fflush(f->log);
    rewind(f->log);
    size_t n = fread(text, 1, sizeof(text) - 1, f->log);
    text[n] = '\0';
    return text;
}

static void test_delivered_signed(void **state)
{
    struct fixture *f = *state;
    struct receiver *r = rcv_start(0, 200);
    point_at(f, r->port);
    start(f);
    char id[QUOTA_ALERT_ID_LEN + 1];
    raise_one(f, 80, id);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    assert_int_equal(rcv_count(r), 1);
    assert_true(strncmp(r->reqs[0].head, "POST /alerts HTTP/1.1\r\n", 23) == 0);
    char v[128];
    rcv_header(r, 0, "Content-Type", v, sizeof(v));
    assert_string_equal(v, "application/json");
    verify_signature(r, 0, T0);
    assert_non_null(strstr(r->reqs[0].body, "\"threshold\": 80"));
    char want_id[64];
    snprintf(want_id, sizeof(want_id), "\"id\": \"%s\"}", id);
    assert_non_null(strstr(r->reqs[0].body, want_id));
    /* The log line is the body. */
    char line[20000];
    snprintf(line, sizeof(line), "sluice: alert: %s\n", r->reqs[0].body);
    assert_non_null(strstr(log_text(f), line));
    stop(f);
    assert_int_equal(outbox_size(f), 0);
    rcv_stop(r);
}

static void test_retry_after_receiver_was_down(void **state)
{
    struct fixture *f = *state;
    int port = test_free_port();
    point_at(f, port);
    start(f);
    raise_one(f, 95, NULL);
    assert_int_equal(WAIT_STAT(f, failed, 1), 1);
    assert_non_null(strstr(log_text(f), "webhook attempt 1 failed: connect: Connection refused "
                                        "(next in 1 s)"));
    /* Up now; nothing happens until the retry is due. */
    struct receiver *r = rcv_start(port, 200);
    assert_non_null(r);
    quota_delivery_kick(f->d);
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    assert_int_equal(rcv_count(r), 0);
    set_now(f, T0 + 1);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    assert_int_equal(rcv_count(r), 1);
    verify_signature(r, 0, T0 + 1);
    struct quota_delivery_stats s;
    quota_delivery_stats(f->d, &s);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.stored, 1);
    rcv_stop(r);
}

static void test_backoff_then_server_error(void **state)
{
    struct fixture *f = *state;
    struct receiver *r = rcv_start(0, 500);
    point_at(f, r->port);
    start(f);
    raise_one(f, 80, NULL);
    assert_int_equal(WAIT_STAT(f, failed, 1), 1);
    set_now(f, T0 + 1); /* attempt 2 */
    assert_int_equal(WAIT_STAT(f, failed, 2), 2);
    set_now(f, T0 + 2); /* not yet: attempt 3 waits 2 s after attempt 2 */
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    assert_int_equal(rcv_count(r), 2);
    rcv_set_status(r, 201);
    set_now(f, T0 + 3);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    assert_int_equal(rcv_count(r), 3);
    assert_non_null(
        strstr(log_text(f), "attempt 2 failed: the webhook answered 500 (next in 2 s)"));
    rcv_stop(r);
}

static void test_kept_across_restart(void **state)
{
    struct fixture *f = *state;
    int port = test_free_port();
    point_at(f, port);
    start(f);
    char id[QUOTA_ALERT_ID_LEN + 1];
    raise_one(f, 100, id);
    assert_int_equal(WAIT_STAT(f, failed, 1), 1);
    stop(f);
    assert_int_equal(outbox_size(f), 1);

    /* The next start (same data_dir) sends it, once it is due. */
    struct receiver *r = rcv_start(port, 200);
    assert_non_null(r);
    f->now = T0 + 5;
    start(f);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    assert_int_equal(rcv_count(r), 1);
    assert_non_null(strstr(r->reqs[0].body, id));
    verify_signature(r, 0, T0 + 5);
    stop(f);
    assert_int_equal(outbox_size(f), 0);
    rcv_stop(r);
}

/* A stop writes what is queued to the outbox before the thread ends. */
static void test_stop_keeps_the_queue(void **state)
{
    struct fixture *f = *state;
    point_at(f, test_free_port());
    start(f);
    for (int t = 1; t <= 5; t++)
        raise_one(f, t, NULL);
    stop(f);
    assert_int_equal(outbox_size(f), 5);
}

static void test_same_alert_stored_once(void **state)
{
    struct fixture *f = *state;
    struct receiver *r = rcv_start(0, RCV_HANG); /* holds the first POST */
    point_at(f, r->port);
    start(f);
    char a[QUOTA_ALERT_ID_LEN + 1], b[QUOTA_ALERT_ID_LEN + 1];
    raise_one(f, 80, a);
    assert_int_equal(rcv_wait(r, 1), 1);
    raise_one(f, 80, b); /* the same alert raised again (a retry, another gateway) */
    assert_string_equal(a, b);
    stop(f); /* cuts the held POST short, then takes the queue */
    struct quota_delivery_stats s = {0};
    assert_int_equal(outbox_size(f), 1);
    /* Logged twice (each raise is a log line), stored once. */
    const char *log = log_text(f), *at = log;
    int lines = 0;
    while ((at = strstr(at, "sluice: alert: ")))
        lines++, at++;
    assert_int_equal(lines, 2);
    rcv_stop(r);

    r = rcv_start(0, 200);
    point_at(f, r->port);
    start(f);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    raise_one(f, 80, NULL); /* delivered already: stored again, as a new raise would be */
    assert_int_equal(WAIT_STAT(f, delivered, 2), 2);
    quota_delivery_stats(f->d, &s);
    assert_int_equal(s.raised, 1);
    assert_int_equal(rcv_count(r), 2);
    /* Both deliveries carry the same id: the receiver's key for "seen". */
    assert_string_equal(r->reqs[0].body, r->reqs[1].body);
    rcv_stop(r);
}

static void test_stop_does_not_wait_for_receiver(void **state)
{
    struct fixture *f = *state;
    struct receiver *r = rcv_start(0, RCV_HANG);
    point_at(f, r->port);
    start(f);
    raise_one(f, 80, NULL);
    assert_int_equal(rcv_wait(r, 1), 1);
    int64_t t0 = clock_mono_us();
    stop(f); /* the POST would wait 10 s for an answer */
    assert_true(clock_mono_us() - t0 < 1000000);
    assert_int_equal(outbox_size(f), 1);
    rcv_stop(r);
}

static void test_given_up_after_a_day(void **state)
{
    struct fixture *f = *state;
    struct receiver *r = rcv_start(0, 503);
    point_at(f, r->port);
    start(f);
    raise_one(f, 80, NULL);
    assert_int_equal(WAIT_STAT(f, failed, 1), 1);
    set_now(f, T0 + QUOTA_OUTBOX_GIVE_UP_S - 1);
    assert_int_equal(WAIT_STAT(f, failed, 2), 2);
    struct quota_delivery_stats s;
    quota_delivery_stats(f->d, &s);
    assert_int_equal(s.given_up, 0);
    set_now(f, T0 + QUOTA_OUTBOX_GIVE_UP_S + 3600);
    assert_int_equal(WAIT_STAT(f, given_up, 1), 1);
    assert_non_null(strstr(log_text(f), "given up after 3 attempts in 24 hours: the webhook "
                                        "answered 503"));
    stop(f);
    assert_int_equal(outbox_size(f), 0);
    rcv_stop(r);
}

/* Without a webhook an alert is a log line only; a webhook added later (a
 * reload) is used from the next round. */
static void test_no_webhook_logs_only(void **state)
{
    struct fixture *f = *state;
    f->webhook = false;
    start(f);
    raise_one(f, 80, NULL);
    assert_int_equal(WAIT_STAT(f, raised, 1), 1);
    assert_non_null(strstr(log_text(f), "sluice: alert: {\"type\": \"quota.threshold\""));
    struct quota_delivery_stats s;
    quota_delivery_stats(f->d, &s);
    assert_int_equal(s.stored, 0);

    struct receiver *r = rcv_start(0, 200);
    point_at(f, r->port);
    f->webhook = true;
    quota_delivery_kick(f->d);
    raise_one(f, 95, NULL);
    assert_int_equal(WAIT_STAT(f, delivered, 1), 1);
    assert_non_null(strstr(r->reqs[0].body, "\"threshold\": 95"));
    rcv_stop(r);
}

static void test_bad_data_dir(void **state)
{
    struct fixture *f = *state;
    char file[128];
    snprintf(file, sizeof(file), "%s/file", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    struct quota_delivery_opts o = {.data_dir = file, .target = target, .target_arg = f};
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:1/");
    char *err = NULL;
    assert_null(quota_delivery_start(&o, &err));
    assert_non_null(strstr(err, "file"));
    free(err);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_delivered_signed),
        T(test_retry_after_receiver_was_down),
        T(test_backoff_then_server_error),
        T(test_kept_across_restart),
        T(test_stop_keeps_the_queue),
        T(test_same_alert_stored_once),
        T(test_stop_does_not_wait_for_receiver),
        T(test_given_up_after_a_day),
        T(test_no_webhook_logs_only),
        T(test_bad_data_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
