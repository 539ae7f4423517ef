/* The alert outbox (src/quota/outbox.c) on a real SQLite file: an alert
 * stored once however often it is raised, taken when due in order,
 * retried with a doubling delay capped at an hour, given up after 24
 * hours, removed when delivered, and still there after the database is
 * closed and opened again (what a restart does). Times are injected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quota/outbox.h"
#include "store/db.h"
#include "support.h"

#define T0 INT64_C(1796461140)

static sqlite3 *open_outbox(const char *dir)
{
    char *err = NULL;
    sqlite3 *db = db_open(dir, &err);
    if (!db)
        fail_msg("%s", err);
    if (quota_outbox_init(db, &err) != 0)
        fail_msg("%s", err);
    return db;
}

static char *take(sqlite3 *db, int64_t now)
{
    struct quota_outbox_item it = {0};
    int rc = quota_outbox_next_due(db, now, &it);
    assert_true(rc >= 0);
    if (rc == 0)
        return NULL;
    free(it.body);
    return it.id;
}

static void test_backoff(void **state)
{
    assert_int_equal(quota_outbox_backoff(1), 1);
    assert_int_equal(quota_outbox_backoff(2), 2);
    assert_int_equal(quota_outbox_backoff(3), 4);
    assert_int_equal(quota_outbox_backoff(12), 2048);
    assert_int_equal(quota_outbox_backoff(13), 3600);
    assert_int_equal(quota_outbox_backoff(1000), 3600);
    assert_int_equal(quota_outbox_backoff(0), 1);
}

static void test_lifecycle(void **state)
{
    char dir[] = "/tmp/sluice-outbox-XXXXXX";
    assert_non_null(mkdtemp(dir));
    sqlite3 *db = open_outbox(dir);
    assert_int_equal(quota_outbox_next_time(db), INT64_MAX);
    assert_int_equal(quota_outbox_add(db, "a1", "{\"threshold\": 80}", T0), 1);
    assert_int_equal(quota_outbox_add(db, "a1", "{\"threshold\": 80}", T0 + 1), 0); /* once */
    assert_int_equal(quota_outbox_add(db, "b2", "{\"threshold\": 95}", T0 + 5), 1);
    assert_null(take(db, T0 - 1));
    char *id = take(db, T0 + 10);
    assert_string_equal(id, "a1"); /* the one due first */
    free(id);

    /* a1 fails: due again after 1 s, then 2 s; b2 goes first meanwhile */
    assert_int_equal(quota_outbox_failed(db, "a1", T0 + 10), 0);
    assert_int_equal(quota_outbox_next_time(db), T0 + 5);
    id = take(db, T0 + 10);
    assert_string_equal(id, "b2");
    free(id);
    assert_int_equal(quota_outbox_delivered(db, "b2"), 0);
    assert_null(take(db, T0 + 10));
    id = take(db, T0 + 11);
    assert_string_equal(id, "a1");
    free(id);
    assert_int_equal(quota_outbox_failed(db, "a1", T0 + 11), 0);
    assert_null(take(db, T0 + 12));
    assert_int_equal(quota_outbox_next_time(db), T0 + 13);
    struct quota_outbox_item it = {0};
    assert_int_equal(quota_outbox_next_due(db, T0 + 13, &it), 1);
    assert_int_equal(it.attempts, 2);
    assert_int_equal(it.created, T0);
    assert_string_equal(it.body, "{\"threshold\": 80}");
    quota_outbox_item_free(&it);

    /* a restart keeps it */
    db_close(db);
    db = open_outbox(dir);
    id = take(db, T0 + 13);
    assert_string_equal(id, "a1");
    free(id);

    /* failing 24 hours after it was raised gives it up */
    assert_int_equal(quota_outbox_failed(db, "a1", T0 + QUOTA_OUTBOX_GIVE_UP_S - 1), 0);
    assert_int_equal(quota_outbox_failed(db, "a1", T0 + QUOTA_OUTBOX_GIVE_UP_S), 1);
    assert_null(take(db, T0 + 2 * QUOTA_OUTBOX_GIVE_UP_S));
    assert_int_equal(quota_outbox_next_time(db), INT64_MAX);
    /* a failure reported for an entry that is gone changes nothing */
    assert_int_equal(quota_outbox_failed(db, "a1", T0 + 1), 0);
    assert_null(take(db, INT64_MAX));
    db_close(db);
    test_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
