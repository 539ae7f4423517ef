/* The run-time access lists (access/runtime.h) on the SQLite store: admin
 * calls on the runtime's thread answered on a loop, the snapshot workers
 * read, expiry (an expired entry never matches, and the thread sweeps it
 * from the store), persistence across a reopen, and the bound on entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <arpa/inet.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "access/decide.h"
#include "access/runtime.h"
#include "store/db.h"
#include "util/clock.h"

struct fixture {
    char dir[64];
    struct config cfg;
    struct acl_runtime *rt;
    uv_loop_t loop;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sluice-acl-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->cfg.store.backend = CFG_BACKEND_MEMORY;
    f->cfg.store.data_dir = f->dir;
    char *err = NULL;
    f->rt = acl_rt_open(&f->cfg, &err);
    if (!f->rt) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    uv_loop_init(&f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    acl_rt_close(f->rt);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the ops' handles close */
    uv_loop_close(&f->loop);
    test_rm_rf(f->dir);
    free(f);
    return 0;
}

/* One call on the runtime's thread, waited for on the test's loop. */
struct call {
    struct acl_runtime *rt;
    enum { ADD, DELETE, LIST } what;
    struct acl_entry e;
    int64_t id;
    int rc;
    json_t *list;
    char why[256];
    bool done;
};

static void call_run(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct call *c = arg;
    if (c->what == ADD)
        c->rc = acl_rt_add(c->rt, &c->e, c->why, sizeof c->why);
    else if (c->what == DELETE)
        c->rc = acl_rt_delete(c->rt, c->id, c->why, sizeof c->why);
    else
        c->list = acl_rt_list(c->rt, clock_wall_us() / 1000);
}

static void call_done(void *arg)
{
    ((struct call *)arg)->done = true;
}

static void call(struct fixture *f, struct call *c)
{
    c->rt = f->rt;
    acl_rt_submit(f->rt, &f->loop, call_run, call_done, c);
    while (!c->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static int64_t add(struct fixture *f, enum acl_list list, const char *cidr, int64_t expires_ms)
{
    struct call c = {.what = ADD};
    int64_t now = clock_wall_us() / 1000;
    assert_true(
        acl_entry_set(&c.e, 0, list == ACL_ALLOW ? "allow" : "deny", cidr, "t", now, expires_ms));
    call(f, &c);
    assert_int_equal(c.rc, 0);
    assert_true(c.e.id > 0);
    return c.e.id;
}

static bool snap_has(const struct acl_trie *t, const char *ip)
{
    int family;
    uint8_t addr[16];
    assert_true(acl_parse_addr(ip, &family, addr));
    return acl_trie_match(t, family, addr, clock_wall_us() / 1000);
}

static size_t stored_rows(const char *dir)
{
    char *err = NULL;
    sqlite3 *db = db_open(dir, &err);
    assert_non_null(db);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM access_entries", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    size_t n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    db_close(db);
    return n;
}

static void test_add_list_delete_expire_reopen(void **state)
{
    struct fixture *f = *state;
    struct acl_snap *snap = NULL;
    uint64_t gen = 0;
    acl_rt_sync(f->rt, &snap, &gen);
    assert_null(snap->deny);
    uint64_t gen0 = gen;

    int64_t now = clock_wall_us() / 1000;
    int64_t deny = add(f, ACL_DENY, "203.0.113.0/24", 0);
    add(f, ACL_ALLOW, "10.0.0.0/8", now - 1000); /* expired already */
    int64_t v6 = add(f, ACL_DENY, "2001:db8::/32", now + 3600000);

    acl_rt_sync(f->rt, &snap, &gen);
    assert_true(gen != gen0);
    assert_true(snap_has(snap->deny, "203.0.113.7"));
    assert_true(snap_has(snap->deny, "2001:db8::1"));
    /* The expired allow entry matches nothing, and the run-time allow list
     * counts as empty: everybody else gets in. */
    assert_false(snap_has(snap->allow, "10.1.1.1"));
    int family;
    uint8_t addr[16];
    assert_true(acl_parse_addr("11.1.1.1", &family, addr));
    assert_int_equal(acl_decide(NULL, NULL, snap, true, family, addr, now), ACL_SRC_N);

    struct call list = {.what = LIST};
    call(f, &list);
    assert_int_equal(json_array_size(list.list), 2);
    json_decref(list.list);
    /* The thread ticks after every batch: the expired row is gone. */
    assert_int_equal(stored_rows(f->dir), 2);

    struct call del = {.what = DELETE, .id = v6};
    call(f, &del);
    assert_int_equal(del.rc, 1);
    del = (struct call){.what = DELETE, .id = v6};
    call(f, &del);
    assert_int_equal(del.rc, 0);
    acl_rt_sync(f->rt, &snap, &gen);
    assert_false(snap_has(snap->deny, "2001:db8::1"));
    acl_snap_unref(snap);

    /* What is stored comes back on a reopen (a restart). */
    acl_rt_close(f->rt);
    char *err = NULL;
    f->rt = acl_rt_open(&f->cfg, &err);
    assert_non_null(f->rt);
    snap = NULL;
    gen = 0;
    acl_rt_sync(f->rt, &snap, &gen);
    assert_true(snap_has(snap->deny, "203.0.113.9"));
    assert_false(snap_has(snap->deny, "2001:db8::1"));
    acl_snap_unref(snap);
    struct call again = {.what = LIST};
    call(f, &again);
    assert_int_equal(json_array_size(again.list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(again.list, 0), "id")),
                     deny);
    json_decref(again.list);
}

/* The bound: the 100,001st entry is refused, and nothing is stored. */
static void test_bound(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    sqlite3 *db = db_open(f->dir, &err);
    assert_non_null(db);
    /* Filled by hand in one transaction: 100,000 POSTs would take a while. */
    assert_int_equal(sqlite3_exec(db,
                                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                  "WHERE i < 100000) INSERT INTO access_entries (list, cidr, "
                                  "note, created_ms, expires_ms) SELECT 'deny', '10.' || (i / "
                                  "65536) || '.' || (i / 256 % 256) || '.' || (i % 256), '', 1, 0 "
                                  "FROM n",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    db_close(db);
    acl_rt_close(f->rt);
    f->rt = acl_rt_open(&f->cfg, &err);
    assert_non_null(f->rt);
    struct call c = {.what = ADD};
    assert_true(acl_entry_set(&c.e, 0, "deny", "192.0.2.1", "", 1, 0));
    call(f, &c);
    assert_int_equal(c.rc, ACL_RT_FULL);
    assert_non_null(strstr(c.why, "100000"));
    assert_int_equal(stored_rows(f->dir), 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_list_delete_expire_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
