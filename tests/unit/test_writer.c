/* Unit tests of src/store/writer.c with a real libuv loop and a real
 * SQLite file: 100 submitted operations run in order on the writer thread
 * and complete on the loop thread; posts; the tick's changed_elsewhere
 * (true only after another connection commits); kicks; a stop with work
 * still queued; and a leak-free loop close after each test. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/keystore.h"
#include "store/db.h"
#include "store/writer.h"

#define N_OPS 100
#define WAIT_BOUND_MS 5000 /* a generous bound on any condition below */

struct fixture {
    char dir[64];
    struct ks_db ks; /* the writer's connection, one writer per test */
    uv_loop_t loop;
    uv_thread_t loop_thread;
};

static sqlite3 *open_db(const struct fixture *f)
{
    char *err = NULL;
    sqlite3 *db = db_open(f->dir, &err);
    if (!db)
        fprintf(stderr, "%s\n", err);
    assert_non_null(db);
    return db;
}

/* The writer's connection, with ks_changed's mark set: from here on it
 * reports only what other connections commit. */
static struct ks_db *open_ks(struct fixture *f)
{
    f->ks.sql = open_db(f);
    ks_changed(&f->ks);
    return &f->ks;
}

/* The writer leaves its connection to its owner. */
static void stop_writer(struct fixture *f, struct dbw *w)
{
    dbw_stop(w);
    ks_close(&f->ks);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-dbw-XXXXXX");
    if (!mkdtemp(f->dir) || uv_loop_init(&f->loop) != 0)
        return -1;
    f->loop_thread = uv_thread_self();
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
    /* As libuv's MAKE_VALGRIND_HAPPY: nothing of ours may be left open; the
     * walk is for a failed test's leftovers. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_walk(&f->loop, close_walk, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    test_rm_rf(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs <loop> until <cond>(<arg>) holds; false after WAIT_BOUND_MS. */
static bool run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg)
{
    int64_t end = now_ms() + WAIT_BOUND_MS;
    while (!cond(arg)) {
        if (now_ms() > end)
            return false;
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    return true;
}

/* ---- submit ------------------------------------------------------------- */

struct counts {
    struct fixture *f;
    pthread_t writer_thread;
    int run_order[N_OPS]; /* written by the writer thread only */
    atomic_int runs;
    int done;              /* loop thread only */
    bool ran_first[N_OPS]; /* each done saw its own run already */
    bool wrong_thread;
};

struct op_arg {
    struct counts *c;
    int i;
};

static void op_run(struct ks_db *ks, void *p)
{
    sqlite3 *db = ks->sql;
    struct op_arg *a = p;
    char sql[96];
    snprintf(sql, sizeof(sql), "INSERT INTO t (i) VALUES (%d)", a->i);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        abort(); /* not a cmocka assert: this is the writer thread */
    int n = atomic_load(&a->c->runs);
    a->c->run_order[n] = a->i;
    if (n == 0)
        a->c->writer_thread = pthread_self();
    atomic_store(&a->c->runs, n + 1);
}

static void op_done(void *p)
{
    struct op_arg *a = p;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &a->c->f->loop_thread))
        a->c->wrong_thread = true;
    a->c->ran_first[a->i] = atomic_load(&a->c->runs) > 0;
    a->c->done++;
}

static void create_t(struct ks_db *ks, void *arg)
{
    sqlite3 *db = ks->sql;
    (void)arg;
    if (sqlite3_exec(db, "CREATE TABLE t (i INTEGER)", NULL, NULL, NULL) != SQLITE_OK)
        abort(); /* the writer thread */
}

static void test_submit_order(void **state)
{
    struct fixture *f = *state;
    struct dbw *w = dbw_start(open_ks(f), 1000, NULL, NULL);
    dbw_post(w, create_t, NULL);

    struct counts *c = calloc(1, sizeof(*c));
    c->f = f;
    struct op_arg args[N_OPS];
    for (int i = 0; i < N_OPS; i++) {
        args[i] = (struct op_arg){c, i};
        assert_non_null(dbw_submit(w, &f->loop, op_run, op_done, &args[i]));
    }
    /* The pending asyncs keep the loop alive: UV_RUN_DEFAULT returns once
     * every done has run and every op's handle is closed. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->done, N_OPS);
    assert_int_equal(atomic_load(&c->runs), N_OPS);
    assert_false(c->wrong_thread);
    assert_false(pthread_equal(c->writer_thread, pthread_self()));
    for (int i = 0; i < N_OPS; i++) {
        assert_int_equal(c->run_order[i], i);
        assert_true(c->ran_first[i]);
    }
    stop_writer(f, w);

    /* They all committed, in order. */
    sqlite3 *db = open_db(f);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT i FROM t ORDER BY rowid", -1, &st, NULL),
                     SQLITE_OK);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(sqlite3_column_int(st, 0), n++);
    assert_int_equal(n, N_OPS);
    sqlite3_finalize(st);
    db_close(db);
    free(c);
}

/* Operations from a second thread with its own loop, interleaved with the
 * first's: each loop gets its own completions. */
struct other_loop {
    struct dbw *w;
    struct counts c;
    struct op_arg args[N_OPS];
    struct fixture f;
};

static void other_main(void *p)
{
    struct other_loop *o = p;
    if (uv_loop_init(&o->f.loop) != 0)
        abort(); /* cmocka asserts belong to the main thread */
    o->f.loop_thread = uv_thread_self();
    o->c.f = &o->f;
    for (int i = 0; i < N_OPS; i++) {
        o->args[i] = (struct op_arg){&o->c, i};
        dbw_submit(o->w, &o->f.loop, op_run, op_done, &o->args[i]);
    }
    uv_run(&o->f.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&o->f.loop) != 0)
        abort();
}

static void count_run(struct ks_db *ks, void *p)
{
    sqlite3 *db = ks->sql;
    (void)db;
    atomic_fetch_add((atomic_int *)p, 1);
}

static void test_two_loops_and_post(void **state)
{
    struct fixture *f = *state;
    struct dbw *w = dbw_start(open_ks(f), 1000, NULL, NULL);
    dbw_post(w, create_t, NULL);
    struct other_loop *o = calloc(1, sizeof(*o));
    o->w = w;
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, other_main, o), 0);

    atomic_int posted = 0;
    for (int i = 0; i < N_OPS; i++)
        dbw_post(w, count_run, &posted);
    assert_int_equal(uv_thread_join(&th), 0);
    assert_int_equal(o->c.done, N_OPS);
    assert_false(o->c.wrong_thread);
    stop_writer(f, w); /* runs whatever posts are left */
    assert_int_equal(atomic_load(&posted), N_OPS);
    free(o);
}

/* ---- ticks -------------------------------------------------------------- */

struct ticks {
    pthread_mutex_t mu;
    int total, changed;
    bool last_changed;
};

static void on_tick(struct ks_db *ks, void *arg)
{
    /* What the gateway's tick asks: did another connection commit? */
    bool changed_elsewhere = ks_changed(ks);
    struct ticks *t = arg;
    pthread_mutex_lock(&t->mu);
    t->total++;
    t->changed += changed_elsewhere;
    t->last_changed = changed_elsewhere;
    pthread_mutex_unlock(&t->mu);
}

static struct ticks snap(struct ticks *t)
{
    pthread_mutex_lock(&t->mu);
    struct ticks s = *t;
    pthread_mutex_unlock(&t->mu);
    return s;
}

struct tick_wait {
    struct ticks *t;
    int total_at_least;
    int changed_at_least;
};

static bool ticks_reached(void *p)
{
    struct tick_wait *tw = p;
    struct ticks s = snap(tw->t);
    return s.total >= tw->total_at_least && s.changed >= tw->changed_at_least;
}

static void test_tick_changed_elsewhere(void **state)
{
    struct fixture *f = *state;
    struct ticks t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct dbw *w = dbw_start(open_ks(f), 5, on_tick, &t);

    /* Idle ticks: nothing changed. */
    struct tick_wait tw = {&t, 3, 0};
    assert_true(run_until(&f->loop, ticks_reached, &tw));
    assert_int_equal(snap(&t).changed, 0);

    /* The writer's own commits are not "elsewhere". */
    dbw_post(w, create_t, NULL);
    struct counts c = {.f = f};
    struct op_arg a = {&c, 0};
    dbw_submit(w, &f->loop, op_run, op_done, &a);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    tw.total_at_least = snap(&t).total + 2;
    assert_true(run_until(&f->loop, ticks_reached, &tw));
    assert_int_equal(snap(&t).changed, 0);

    /* Another connection (the CLI) commits: one tick says so, later ones
     * do not. */
    sqlite3 *cli = open_db(f);
    assert_int_equal(sqlite3_exec(cli, "INSERT INTO t (i) VALUES (7)", NULL, NULL, NULL),
                     SQLITE_OK);
    tw.changed_at_least = 1;
    assert_true(run_until(&f->loop, ticks_reached, &tw));
    tw.total_at_least = snap(&t).total + 2;
    assert_true(run_until(&f->loop, ticks_reached, &tw));
    struct ticks s = snap(&t);
    assert_int_equal(s.changed, 1);
    assert_false(s.last_changed);

    db_close(cli);
    stop_writer(f, w);
    pthread_mutex_destroy(&t.mu);
}

/* A kick ticks at once, long before a slow tick_ms would. */
static void test_kick(void **state)
{
    struct fixture *f = *state;
    struct ticks t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct dbw *w = dbw_start(open_ks(f), 60000, on_tick, &t);
    for (int k = 1; k <= 3; k++) {
        dbw_kick(w);
        struct tick_wait tw = {&t, k, 0};
        assert_true(run_until(&f->loop, ticks_reached, &tw));
    }
    stop_writer(f, w);
    assert_int_equal(snap(&t).total, 4); /* three kicks and the last tick of the stop */
    pthread_mutex_destroy(&t.mu);
}

/* ---- stop --------------------------------------------------------------- */

static void slow_run(struct ks_db *ks, void *p)
{
    sqlite3 *db = ks->sql;
    (void)db;
    usleep(1000);
    atomic_fetch_add((atomic_int *)p, 1);
}

static void count_done(void *p)
{
    (void)p;
}

static void test_stop_runs_queue(void **state)
{
    struct fixture *f = *state;
    struct ticks t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct dbw *w = dbw_start(open_ks(f), 60000, on_tick, &t);
    atomic_int ran = 0;
    for (int i = 0; i < 10; i++)
        dbw_submit(w, &f->loop, slow_run, count_done, &ran);
    for (int i = 0; i < 10; i++)
        dbw_post(w, slow_run, &ran);
    /* Stop at once: the queue still runs, then the loop collects the
     * completions (the contract: the loop outlives its operations). */
    stop_writer(f, w);
    assert_int_equal(atomic_load(&ran), 20);
    assert_true(snap(&t).total >= 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_mutex_destroy(&t.mu);

    /* A writer stopped without ever working. */
    stop_writer(f, dbw_start(open_ks(f), 10, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_loops_and_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_changed_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_runs_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
