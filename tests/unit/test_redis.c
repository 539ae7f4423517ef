/* Unit tests of src/store/redis.c against real redis-server processes (one
 * per test, on a free port, killed in the teardown) on a real libuv loop:
 * URL parsing; up callback; 1,000 pipelined commands answered in order;
 * EVALSHA with the NOSCRIPT fallback; AUTH (user and password, SELECT, a
 * wrong password), and the same for the synchronous rds_connect_sync; a
 * command timeout and the reconnect after it; a killed
 * and restarted Redis; the subscriber across a restart; rds_close with
 * commands pending, from inside callbacks and while down. Every test ends
 * with a leak-free loop close (checked in the teardown). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/redis.h"

#define WAIT_BOUND_MS 3000 /* a generous bound on any condition below */
#define PASSWORD "s3cret:@/%"

struct server {
    pid_t pid;
    int port;
    const char *password; /* NULL: none */
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking on an idle connection */
    struct server srv;
    struct server srv2;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Runs the loop until <cond> holds or <ms> passed. */
#define RUN_UNTIL(f, cond, ms)                                                                     \
    do {                                                                                           \
        uint64_t until_ = now_ms() + (ms);                                                         \
        while (!(cond) && now_ms() < until_)                                                       \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
    } while (0)

/* ---- redis-server processes ---- */

/* A synchronous connection (authenticated if need be), or NULL. */
static redisContext *sync_connect(const struct server *s)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    if (s->password) {
        redisReply *rep = redisCommand(c, "AUTH %s", s->password);
        freeReplyObject(rep);
    }
    return c;
}

static void server_start(struct server *s)
{
    const char *extra[] = {"--enable-debug-command", "local", NULL, NULL, NULL};
    if (s->password) {
        extra[2] = "--requirepass";
        extra[3] = s->password;
    }
    pid_t pid = test_redis_spawn(s->port, extra);
    assert_true(pid > 0);
    s->pid = pid;
    /* Up once it answers (NOAUTH counts as an answer). */
    for (int i = 0; i < 500; i++) {
        redisContext *c = sync_connect(s);
        redisReply *rep = c ? redisCommand(c, "PING") : NULL;
        bool ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        redisFree(c);
        if (ok)
            return;
        sleep_ms(10);
    }
    fail_msg("redis-server on port %d did not start", s->port);
}

static void server_kill(struct server *s)
{
    test_redis_kill(s->pid);
    s->pid = 0;
}

/* Runs <cmd> on a synchronous connection; the integer reply, or -1. */
static long long sync_int(const struct server *s, const char *cmd, const char *a1, const char *a2)
{
    redisContext *c = sync_connect(s);
    assert_non_null(c);
    const char *argv[] = {cmd, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

/* ---- fixture ---- */

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || uv_loop_init(&f->loop) != 0)
        return -1;
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 5, 5);
    f->srv.port = test_free_port();
    server_start(&f->srv);
    *state = f;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    server_kill(&f->srv);
    server_kill(&f->srv2);
    /* Every test closed what it opened: once the tick is closed, the loop
     * must have nothing left. The bound and the walk are for a failed
     * test's leftovers. */
    uv_close((uv_handle_t *)&f->tick, NULL);
    uint64_t until = now_ms() + 2000;
    while (uv_loop_alive(&f->loop) && now_ms() < until)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    bool clean = !uv_loop_alive(&f->loop);
    if (!clean) {
        uv_walk(&f->loop, close_walk, NULL);
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    int rc = uv_loop_close(&f->loop);
    free(f);
    return clean && rc == 0 ? 0 : -1;
}

/* ---- callbacks ---- */

struct watch {
    int ups, downs;
    char why[160];
};

static void on_state(void *arg, bool up, const char *why)
{
    struct watch *w = arg;
    if (up)
        w->ups++;
    else
        w->downs++;
    snprintf(w->why, sizeof(w->why), "%s", why);
}

struct answer {
    int n;
    enum rds_status st;
    int type;
    long long integer;
    char str[64]; /* the reply's string, NUL-terminated */
    size_t len;
    uint64_t at; /* ms */
};

static void on_answer(void *arg, enum rds_status st, const redisReply *rep)
{
    struct answer *a = arg;
    a->n++;
    a->st = st;
    a->at = now_ms();
    a->type = rep ? rep->type : 0;
    a->integer = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    a->len = rep && rep->str ? rep->len : 0;
    if (a->len >= sizeof(a->str))
        a->len = sizeof(a->str) - 1;
    if (a->len)
        memcpy(a->str, rep->str, a->len);
    a->str[a->len] = '\0';
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void cmd(struct rds *r, struct answer *a, const char *c0, const char *c1, const char *c2)
{
    const char *argv[] = {c0, c1, c2};
    int argc = c2 ? 3 : c1 ? 2 : 1;
    rds_command(r, argc, argv, NULL, on_answer, a);
}

static struct rds_config config(const struct server *s, int64_t timeout_ms)
{
    struct rds_config c;
    char url[64];
    const char *why = NULL;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    c.timeout_ms = timeout_ms;
    assert_int_equal(rds_parse_url(url, &c, &why), 0);
    return c;
}

static void close_and_wait(struct fixture *f, struct rds *r)
{
    int closed = 0;
    rds_close(r, on_closed, &closed);
    RUN_UNTIL(f, closed, WAIT_BOUND_MS);
    assert_int_equal(closed, 1);
}

/* ---- tests ---- */

static void test_parse_url(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int ok;
        const char *host;
        int port, db;
        const char *user, *password;
    } cases[] = {
        {"redis://host", 1, "host", 6379, 0, "", ""},
        {"redis://host:6380", 1, "host", 6380, 0, "", ""},
        {"redis://host:6380/2", 1, "host", 6380, 2, "", ""},
        {"redis://host/", 1, "host", 6379, 0, "", ""},
        {"REDIS://host/1023", 1, "host", 6379, 1023, "", ""},
        {"redis://:pw@host", 1, "host", 6379, 0, "", "pw"},
        {"redis://user:pw@host:1/3", 1, "host", 1, 3, "user", "pw"},
        {"redis://u:p%40ss%3A%2f@10.0.0.1", 1, "10.0.0.1", 6379, 0, "u", "p@ss:/"},
        {"redis://:a@b@host", 1, "host", 6379, 0, "", "a@b"},
        {"redis://[::1]:6379", 1, "::1", 6379, 0, "", ""},
        {"redis://[fe80::1]/4", 1, "fe80::1", 6379, 4, "", ""},
        {"rediss://host", 0, NULL, 0, 0, NULL, NULL},
        {"http://host", 0, NULL, 0, 0, NULL, NULL},
        {"redis:/host", 0, NULL, 0, 0, NULL, NULL},
        {"redis://", 0, NULL, 0, 0, NULL, NULL},
        {"redis://:6379", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host:", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host:0", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host:65536", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host:12a", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host:-1", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host/1024", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host/x", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host/1/2", 0, NULL, 0, 0, NULL, NULL},
        {"redis://host?db=1", 0, NULL, 0, 0, NULL, NULL},
        {"redis://user@host", 0, NULL, 0, 0, NULL, NULL},
        {"redis://:@host", 0, NULL, 0, 0, NULL, NULL},
        {"redis://:p%4@host", 0, NULL, 0, 0, NULL, NULL},
        {"redis://:p%00@host", 0, NULL, 0, 0, NULL, NULL},
        {"redis://[::1", 0, NULL, 0, 0, NULL, NULL},
        {"redis://[::1]x", 0, NULL, 0, 0, NULL, NULL},
        {"redis://::1:6379", 0, NULL, 0, 0, NULL, NULL},
        {"redis://ho st", 0, NULL, 0, 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rds_config c;
        memset(&c, 0x55, sizeof(c));
        c.timeout_ms = 123;
        const char *why = NULL;
        int rc = rds_parse_url(cases[i].url, &c, &why);
        if (!cases[i].ok) {
            if (rc != -1 || !why)
                fail_msg("%s: accepted", cases[i].url);
            continue;
        }
        if (rc != 0)
            fail_msg("%s: %s", cases[i].url, why);
        assert_string_equal(c.host, cases[i].host);
        assert_int_equal(c.port, cases[i].port);
        assert_int_equal(c.db, cases[i].db);
        assert_string_equal(c.user, cases[i].user);
        assert_string_equal(c.password, cases[i].password);
        assert_int_equal(c.timeout_ms, 123);
    }

    /* Too long fields. */
    char url[1024], big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct rds_config c = {.timeout_ms = 1};
    const char *why = NULL;
    snprintf(url, sizeof(url), "redis://%s", big);
    assert_int_equal(rds_parse_url(url, &c, &why), -1);
    snprintf(url, sizeof(url), "redis://:%s@host", big);
    assert_int_equal(rds_parse_url(url, &c, &why), -1);
    snprintf(url, sizeof(url), "redis://%.200s:pw@host", big);
    assert_int_equal(rds_parse_url(url, &c, &why), -1);
    snprintf(url, sizeof(url), "redis://%.255s", big); /* exactly fits */
    assert_int_equal(rds_parse_url(url, &c, &why), 0);
}

static void test_script_sha(void **state)
{
    (void)state;
    struct rds_script s;
    rds_script_init(&s, "return 1");
    assert_string_equal(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

struct seq {
    int n, bad;
};

static void on_incr(void *arg, enum rds_status st, const redisReply *rep)
{
    struct seq *s = arg;
    s->n++;
    if (st != RDS_OK || !rep || rep->type != REDIS_REPLY_INTEGER || rep->integer != s->n)
        s->bad++;
}

static void test_up_and_pipeline(void **state)
{
    struct fixture *f = *state;
    struct watch w = {0};
    struct rds_config c = config(&f->srv, 1000);
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    assert_false(rds_is_up(r));
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    assert_int_equal(w.ups, 1);
    assert_int_equal(w.downs, 0);
    assert_true(rds_is_up(r));

    struct seq s = {0};
    const char *argv[] = {"INCR", "ctr"};
    const size_t lens[] = {4, 3};
    for (int i = 0; i < 1000; i++)
        rds_command(r, 2, argv, lens, on_incr, &s);
    RUN_UNTIL(f, s.n == 1000, WAIT_BOUND_MS);
    assert_int_equal(s.n, 1000);
    assert_int_equal(s.bad, 0);

    struct rds_stats st;
    rds_get_stats(r, &st);
    assert_int_equal(st.commands, 1000);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(st.reconnects, 0);
    close_and_wait(f, r);
    assert_int_equal(w.downs, 0);
}

static void test_eval_noscript(void **state)
{
    struct fixture *f = *state;
    struct watch w = {0};
    struct rds_config c = config(&f->srv, 1000);
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    assert_true(rds_is_up(r));

    struct rds_script s;
    rds_script_init(&s, "return KEYS[1] .. '=' .. ARGV[1]");
    const char *args[] = {"k\0ey", "v1"};
    const size_t lens[] = {4, 2};
    struct answer a = {0};

    /* A fresh Redis does not know the script: EVALSHA, NOSCRIPT, EVAL. */
    rds_eval(r, &s, 1, 2, args, lens, on_answer, &a);
    RUN_UNTIL(f, a.n == 1, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    assert_int_equal(a.type, REDIS_REPLY_STRING);
    assert_int_equal(a.len, 7);
    assert_memory_equal(a.str, "k\0ey=v1", 7);
    struct rds_stats st;
    rds_get_stats(r, &st);
    assert_int_equal(st.commands, 2);

    /* Now it does: EVALSHA alone. */
    rds_eval(r, &s, 1, 2, (const char *[]){"key", "v2"}, NULL, on_answer, &a);
    RUN_UNTIL(f, a.n == 2, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    assert_string_equal(a.str, "key=v2");
    rds_get_stats(r, &st);
    assert_int_equal(st.commands, 3);

    /* Flushed: the fallback again. */
    cmd(r, &a, "SCRIPT", "FLUSH", NULL);
    RUN_UNTIL(f, a.n == 3, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    rds_eval(r, &s, 1, 2, (const char *[]){"key", "v3"}, NULL, on_answer, &a);
    RUN_UNTIL(f, a.n == 4, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    assert_string_equal(a.str, "key=v3");
    rds_get_stats(r, &st);
    assert_int_equal(st.commands, 6);

    /* A script error is a reply like any other, not retried. */
    struct rds_script bad;
    rds_script_init(&bad, "return redis.call('NOSUCHCOMMAND')");
    rds_eval(r, &bad, 0, 0, NULL, NULL, on_answer, &a);
    RUN_UNTIL(f, a.n == 5, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    assert_int_equal(a.type, REDIS_REPLY_ERROR);
    rds_get_stats(r, &st);
    assert_int_equal(st.commands, 8);
    close_and_wait(f, r);
}

struct inbox {
    int n;
    char last[64];
};

static void on_message(void *arg, const char *payload, size_t len)
{
    struct inbox *in = arg;
    in->n++;
    snprintf(in->last, sizeof(in->last), "%.*s", (int)len, payload);
}

struct sub_watch {
    struct watch w;
    struct inbox in;
};

static void on_sub_message(void *arg, const char *payload, size_t len)
{
    on_message(&((struct sub_watch *)arg)->in, payload, len);
}

static void on_sub_state(void *arg, bool up, const char *why)
{
    on_state(&((struct sub_watch *)arg)->w, up, why);
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    f->srv2.port = test_free_port();
    f->srv2.password = PASSWORD;
    server_start(&f->srv2);
    char url[128];
    const char *why = NULL;

    /* The ACL form with a percent-encoded password, and a db. */
    struct rds_config c = {.timeout_ms = 1000};
    snprintf(url, sizeof(url), "redis://default:s3cret%%3A%%40%%2F%%25@127.0.0.1:%d/2",
             f->srv2.port);
    assert_int_equal(rds_parse_url(url, &c, &why), 0);
    assert_string_equal(c.password, PASSWORD);
    struct watch w = {0};
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    assert_int_equal(w.ups, 1);
    struct answer a = {0};
    cmd(r, &a, "SET", "where", "db2");
    RUN_UNTIL(f, a.n == 1, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    {
        redisContext *sc = sync_connect(&f->srv2);
        assert_non_null(sc);
        freeReplyObject(redisCommand(sc, "SELECT 2"));
        redisReply *rep = redisCommand(sc, "GET where");
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        assert_string_equal(rep->str, "db2");
        freeReplyObject(rep);
        redisFree(sc);
    }
    close_and_wait(f, r);

    /* The password alone. */
    struct rds_config c2 = {.timeout_ms = 1000};
    snprintf(url, sizeof(url), "redis://:s3cret%%3A%%40%%2F%%25@127.0.0.1:%d", f->srv2.port);
    assert_int_equal(rds_parse_url(url, &c2, &why), 0);
    struct watch w2 = {0};
    r = rds_new(&f->loop, &c2, on_state, &w2);
    RUN_UNTIL(f, w2.ups, WAIT_BOUND_MS);
    assert_int_equal(w2.ups, 1);
    cmd(r, &a, "PING", NULL, NULL);
    RUN_UNTIL(f, a.n == 2, WAIT_BOUND_MS);
    assert_int_equal(a.st, RDS_OK);
    assert_string_equal(a.str, "PONG");
    close_and_wait(f, r);

    /* A subscriber authenticates too. */
    struct sub_watch sw = {0};
    r = rds_subscribe(&f->loop, &c, "chan", on_sub_message, on_sub_state, &sw);
    RUN_UNTIL(f, sw.w.ups, WAIT_BOUND_MS);
    assert_int_equal(sw.w.ups, 1);
    assert_int_equal(sync_int(&f->srv2, "PUBLISH", "chan", "authed"), 1);
    RUN_UNTIL(f, sw.in.n, WAIT_BOUND_MS);
    assert_string_equal(sw.in.last, "authed");
    close_and_wait(f, r);

    /* A wrong password: never up, told down once, commands fail at once. */
    struct rds_config c3 = {.timeout_ms = 1000};
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", f->srv2.port);
    assert_int_equal(rds_parse_url(url, &c3, &why), 0);
    struct watch w3 = {0};
    r = rds_new(&f->loop, &c3, on_state, &w3);
    uint64_t until = now_ms() + 400; /* several attempts (50, 100, 200 ms backoff) */
    RUN_UNTIL(f, false, until - now_ms());
    assert_int_equal(w3.ups, 0);
    assert_int_equal(w3.downs, 1);
    assert_non_null(strstr(w3.why, "AUTH"));
    assert_false(rds_is_up(r));
    struct answer d = {0};
    cmd(r, &d, "PING", NULL, NULL);
    assert_int_equal(d.n, 1); /* before rds_command returned */
    assert_int_equal(d.st, RDS_DOWN);
    struct rds_stats st;
    rds_get_stats(r, &st);
    assert_true(st.reconnects >= 2);
    assert_int_equal(st.commands, 0);
    close_and_wait(f, r);

    /* No password where one is required: the first command fails NOAUTH
     * (the connection is up: Redis only says so on a command). */
    struct rds_config c4 = config(&f->srv2, 1000);
    struct watch w4 = {0};
    r = rds_new(&f->loop, &c4, on_state, &w4);
    RUN_UNTIL(f, w4.ups, WAIT_BOUND_MS);
    struct answer e = {0};
    cmd(r, &e, "PING", NULL, NULL);
    RUN_UNTIL(f, e.n == 1, WAIT_BOUND_MS);
    assert_int_equal(e.st, RDS_OK);
    assert_int_equal(e.type, REDIS_REPLY_ERROR);
    close_and_wait(f, r);
}

/* rds_connect_sync: AUTH and SELECT as the config asks; each failure a
 * NULL and a one-line error naming the server and the step. */
static void test_connect_sync(void **state)
{
    struct fixture *f = *state;
    f->srv2.port = test_free_port();
    f->srv2.password = PASSWORD;
    server_start(&f->srv2);
    char *err = NULL;

    /* A db: what is set lands there, not in db 0. */
    struct rds_config c = config(&f->srv, 1000);
    c.db = 3;
    redisContext *rc = rds_connect_sync(&c, 500, &err);
    assert_non_null(rc);
    assert_null(err);
    redisReply *rep = redisCommand(rc, "SET %s %s", "in3", "yes");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    redisFree(rc);
    assert_int_equal(sync_int(&f->srv, "EXISTS", "in3", NULL), 0);

    /* The password (and the ACL user) where one is required. */
    struct rds_config p = config(&f->srv2, 1000);
    snprintf(p.password, sizeof(p.password), "%s", PASSWORD);
    rc = rds_connect_sync(&p, 500, &err);
    assert_non_null(rc);
    rep = redisCommand(rc, "PING");
    assert_non_null(rep);
    assert_string_equal(rep->str, "PONG");
    freeReplyObject(rep);
    redisFree(rc);
    snprintf(p.user, sizeof(p.user), "default");
    rc = rds_connect_sync(&p, 500, &err);
    assert_non_null(rc);
    redisFree(rc);
    assert_null(err);

    /* A wrong password; a db the server does not have; no server. */
    char want[64];
    snprintf(p.password, sizeof(p.password), "wrong");
    assert_null(rds_connect_sync(&p, 500, &err));
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: AUTH: ", f->srv2.port);
    assert_non_null(err);
    assert_memory_equal(err, want, strlen(want));
    free(err);
    err = NULL;
    c.db = 1000;
    assert_null(rds_connect_sync(&c, 500, &err));
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: SELECT: ", f->srv.port);
    assert_non_null(err);
    assert_memory_equal(err, want, strlen(want));
    free(err);
    err = NULL;
    c.db = 0;
    c.port = test_free_port();
    assert_null(rds_connect_sync(&c, 200, &err));
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: ", c.port);
    assert_non_null(err);
    assert_memory_equal(err, want, strlen(want));
    free(err);
    assert_null(rds_connect_sync(&c, 200, NULL)); /* <err> may be NULL */
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    struct watch w = {0};
    struct rds_config c = config(&f->srv, 50);
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    assert_true(rds_is_up(r));

    struct answer slow = {0}, behind = {0};
    uint64_t t0 = now_ms();
    cmd(r, &slow, "DEBUG", "SLEEP", "0.3");
    cmd(r, &behind, "PING", NULL, NULL);
    RUN_UNTIL(f, slow.n && behind.n, WAIT_BOUND_MS);
    assert_int_equal(slow.n, 1);
    assert_int_equal(slow.st, RDS_TIMEOUT);
    assert_true(slow.at - t0 >= 45);
    assert_true(slow.at - t0 < 250);
    assert_int_equal(behind.n, 1);
    assert_int_equal(behind.st, RDS_CLOSED);
    assert_int_equal(w.downs, 1);
    assert_string_equal(w.why, "timeout");
    struct rds_stats st;
    rds_get_stats(r, &st);
    assert_int_equal(st.timeouts, 1);

    /* It reconnects (while Redis sleeps, the kernel accepts); commands work
     * again once Redis is awake. */
    RUN_UNTIL(f, w.ups == 2, WAIT_BOUND_MS);
    assert_int_equal(w.ups, 2);
    struct answer ping = {.st = RDS_DOWN};
    int sent = 0;
    uint64_t until = now_ms() + WAIT_BOUND_MS;
    while (ping.st != RDS_OK && now_ms() < until) {
        if (rds_is_up(r) && ping.n == sent) {
            sent++;
            cmd(r, &ping, "PING", NULL, NULL); /* answered, or timed out */
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(ping.st, RDS_OK);
    assert_string_equal(ping.str, "PONG");
    assert_true(now_ms() - t0 >= 250); /* it did not answer during the sleep */
    rds_get_stats(r, &st);
    assert_true(st.reconnects >= 1);
    close_and_wait(f, r);
}

static void test_kill_restart(void **state)
{
    struct fixture *f = *state;
    struct watch w = {0};
    struct rds_config c = config(&f->srv, 2000);
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    assert_true(rds_is_up(r));

    struct answer a1 = {0}, a2 = {0};
    cmd(r, &a1, "DEBUG", "SLEEP", "2");
    cmd(r, &a2, "INCR", "n", NULL);
    RUN_UNTIL(f, false, 30); /* on the wire */
    assert_int_equal(a1.n + a2.n, 0);
    server_kill(&f->srv);
    uint64_t t0 = now_ms();
    RUN_UNTIL(f, a1.n && a2.n, WAIT_BOUND_MS);
    assert_int_equal(a1.st, RDS_CLOSED);
    assert_int_equal(a2.st, RDS_CLOSED);
    assert_true(a2.at - t0 < 500);
    assert_int_equal(w.downs, 1);
    assert_false(rds_is_up(r));

    struct answer d = {0};
    cmd(r, &d, "INCR", "n", NULL);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.st, RDS_DOWN);
    RUN_UNTIL(f, false, 300); /* failed reconnects: no more down calls */
    assert_int_equal(w.downs, 1);
    assert_int_equal(w.ups, 1);

    server_start(&f->srv);
    uint64_t t1 = now_ms();
    RUN_UNTIL(f, w.ups == 2, WAIT_BOUND_MS + 1000);
    assert_int_equal(w.ups, 2);
    assert_true(now_ms() - t1 < 3000);
    struct answer a3 = {0};
    cmd(r, &a3, "INCR", "n", NULL);
    RUN_UNTIL(f, a3.n, WAIT_BOUND_MS);
    assert_int_equal(a3.st, RDS_OK);
    assert_int_equal(a3.integer, 1);
    struct rds_stats st;
    rds_get_stats(r, &st);
    assert_true(st.reconnects >= 2);
    assert_int_equal(st.timeouts, 0);
    close_and_wait(f, r);
}

static void test_subscribe(void **state)
{
    struct fixture *f = *state;
    struct sub_watch sw = {0};
    struct rds_config c = config(&f->srv, 50);
    struct rds *s = rds_subscribe(&f->loop, &c, "chan", on_sub_message, on_sub_state, &sw);
    RUN_UNTIL(f, sw.w.ups, WAIT_BOUND_MS);
    assert_int_equal(sw.w.ups, 1);
    assert_true(rds_is_up(s));

    /* Quiet for longer than the command timeout: a subscriber has none. */
    RUN_UNTIL(f, false, 120);
    assert_int_equal(sw.w.downs, 0);
    assert_int_equal(sync_int(&f->srv, "PUBLISH", "chan", "hello"), 1);
    assert_int_equal(sync_int(&f->srv, "PUBLISH", "other", "nope"), 0);
    RUN_UNTIL(f, sw.in.n, WAIT_BOUND_MS);
    assert_int_equal(sw.in.n, 1);
    assert_string_equal(sw.in.last, "hello");

    /* It takes no commands. */
    struct answer a = {0};
    cmd(s, &a, "PING", NULL, NULL);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.st, RDS_DOWN);

    server_kill(&f->srv);
    RUN_UNTIL(f, sw.w.downs, WAIT_BOUND_MS);
    assert_int_equal(sw.w.downs, 1);
    server_start(&f->srv);
    RUN_UNTIL(f, sw.w.ups == 2, WAIT_BOUND_MS);
    assert_int_equal(sw.w.ups, 2);
    assert_int_equal(sync_int(&f->srv, "PUBLISH", "chan", "again"), 1);
    RUN_UNTIL(f, sw.in.n == 2, WAIT_BOUND_MS);
    assert_int_equal(sw.in.n, 2);
    assert_string_equal(sw.in.last, "again");
    close_and_wait(f, s);
    assert_int_equal(sw.w.downs, 1);
}

/* Closes the connection it is answered on (from inside hiredis). */
struct closer {
    struct rds *r;
    int answered, closed;
    enum rds_status st;
};

static void on_answer_close(void *arg, enum rds_status st, const redisReply *rep)
{
    struct closer *k = arg;
    k->answered++;
    k->st = st;
    rds_close(k->r, on_closed, &k->closed);
}

static void on_state_close(void *arg, bool up, const char *why)
{
    struct closer *k = arg;
    if (up)
        rds_close(k->r, on_closed, &k->closed);
}

static void test_close_pending(void **state)
{
    struct fixture *f = *state;
    struct watch w = {0};
    struct rds_config c = config(&f->srv, 1000);

    /* Commands on the wire and behind a slow one: all answered RDS_CLOSED
     * by rds_close itself; the close callback comes later, once. */
    struct rds *r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups, WAIT_BOUND_MS);
    struct answer slow = {0};
    struct seq s = {0};
    cmd(r, &slow, "DEBUG", "SLEEP", "0.2");
    const char *argv[] = {"INCR", "x"};
    for (int i = 0; i < 10; i++)
        rds_command(r, 2, argv, NULL, on_incr, &s);
    RUN_UNTIL(f, false, 10);
    int closed = 0;
    rds_close(r, on_closed, &closed);
    assert_int_equal(slow.n, 1);
    assert_int_equal(slow.st, RDS_CLOSED);
    assert_int_equal(s.n, 10);
    assert_int_equal(s.bad, 10);
    assert_int_equal(closed, 0);
    RUN_UNTIL(f, closed, WAIT_BOUND_MS);
    assert_int_equal(closed, 1);
    assert_int_equal(w.downs, 0);

    /* From inside a reply callback, with a command behind it. */
    struct closer k = {0};
    k.r = rds_new(&f->loop, &c, on_state, &w);
    RUN_UNTIL(f, w.ups == 2, WAIT_BOUND_MS);
    struct answer behind = {0};
    rds_command(k.r, 1, (const char *[]){"PING"}, NULL, on_answer_close, &k);
    cmd(k.r, &behind, "PING", NULL, NULL);
    RUN_UNTIL(f, k.closed, WAIT_BOUND_MS);
    assert_int_equal(k.answered, 1);
    assert_int_equal(k.st, RDS_OK);
    assert_int_equal(behind.n, 1);
    assert_true(behind.st == RDS_OK || behind.st == RDS_CLOSED);
    assert_int_equal(k.closed, 1);

    /* From inside the up callback. */
    struct closer k2 = {0};
    k2.r = rds_new(&f->loop, &c, on_state_close, &k2);
    RUN_UNTIL(f, k2.closed, WAIT_BOUND_MS);
    assert_int_equal(k2.closed, 1);

    /* From inside the answers of a timeout (the timer's callback). */
    struct rds_config fast = config(&f->srv, 50);
    struct closer k3 = {0};
    struct watch w3 = {0};
    k3.r = rds_new(&f->loop, &fast, on_state, &w3);
    RUN_UNTIL(f, w3.ups, WAIT_BOUND_MS);
    rds_command(k3.r, 3, (const char *[]){"DEBUG", "SLEEP", "0.2"}, NULL, on_answer_close, &k3);
    RUN_UNTIL(f, k3.closed, WAIT_BOUND_MS);
    assert_int_equal(k3.st, RDS_TIMEOUT);
    assert_int_equal(k3.closed, 1);

    /* While down (nothing listens), and right after rds_new. */
    struct rds_config none = c;
    none.port = test_free_port();
    struct watch w4 = {0};
    r = rds_new(&f->loop, &none, on_state, &w4);
    RUN_UNTIL(f, false, 100);
    assert_int_equal(w4.ups, 0);
    assert_int_equal(w4.downs, 1);
    close_and_wait(f, r);
    r = rds_new(&f->loop, &c, NULL, NULL);
    close_and_wait(f, r);
    struct sub_watch sw = {0};
    r = rds_subscribe(&f->loop, &c, "chan", on_sub_message, on_sub_state, &sw);
    RUN_UNTIL(f, sw.w.ups, WAIT_BOUND_MS);
    close_and_wait(f, r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_script_sha),
        cmocka_unit_test_setup_teardown(test_up_and_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_noscript, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_pending, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
