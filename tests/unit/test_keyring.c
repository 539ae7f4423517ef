/* Unit tests of src/auth/keyring.c on a real SQLite store: what a snapshot
 * holds at a given time (active, expired, rotated within and past grace,
 * revoked), lookups by secret hash and by id, per-key limits, last-use
 * times carried across rebuilds and flushed in one batch, and the holder
 * readers sync from. Times are injected. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/keyring.h"
#include "store/db.h"

#define T0 1700000000000LL
#define MINUTE 60000LL

struct fixture {
    char dir[64];
    sqlite3 *db;
    struct ks_db ks; /* the same connection, as keystore and keyring take it */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-kr-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char *err = NULL;
    f->db = db_open(f->dir, &err);
    f->ks.sql = f->db;
    if (!f->db) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    db_close(f->db);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void hash_of(const char *secret, uint8_t out[APIKEY_HASH_LEN])
{
    apikey_hash(secret, strlen(secret), out);
}

static struct keyring *build(struct fixture *f, int64_t now, const struct keyring *prev)
{
    char *err = NULL;
    struct keyring *kr = keyring_build(&f->ks, now, prev, LIM_SLIDING_WINDOW, &err);
    if (!kr)
        fail_msg("keyring_build: %s", err);
    return kr;
}

static void create(struct fixture *f, const char *tier, const char *limits, int64_t expires,
                   struct ks_key *k, char secret[APIKEY_SECRET_MAX])
{
    struct ks_new req = {.tier = tier,
                         .limits = limits,
                         .scopes = "a b",
                         .expires_ms = expires,
                         .quota_monthly = -1,
                         .quota_daily = -1};
    char *err = NULL;
    assert_int_equal(ks_create(&f->ks, &req, T0, k, secret, &err), KS_OK);
}

static void test_lookup_by_secret_and_id(void **state)
{
    struct fixture *f = *state;
    struct ks_key a, b;
    char sa[APIKEY_SECRET_MAX], sb[APIKEY_SECRET_MAX];
    create(f, "pro", "", 0, &a, sa);
    create(f, "free", "100/h, 10/s algorithm token_bucket", 0, &b, sb);
    struct keyring *kr = build(f, T0, NULL);
    assert_int_equal(keyring_size(kr), 2);

    uint8_t h[APIKEY_HASH_LEN];
    hash_of(sa, h);
    struct keyring_key *k = keyring_find_secret(kr, h, T0);
    assert_non_null(k);
    assert_string_equal(k->id, a.id);
    assert_string_equal(k->tier, "pro");
    assert_string_equal(k->scopes, "a b");
    assert_int_equal(k->n_limits, 0);

    hash_of(sb, h);
    k = keyring_find_secret(kr, h, T0);
    assert_non_null(k);
    assert_string_equal(k->id, b.id);
    assert_int_equal(k->n_limits, 2);
    assert_int_equal(k->limits[0].count, 100);
    /* A limit naming no algorithm takes the default given to the build. */
    assert_int_equal(k->limits[0].algorithm, LIM_SLIDING_WINDOW);
    assert_int_equal(k->limits[1].algorithm, LIM_TOKEN_BUCKET);

    hash_of(sa, h);
    assert_ptr_equal(keyring_find_id(kr, a.id, T0), keyring_find_secret(kr, h, T0));
    assert_null(keyring_find_id(kr, "key_0000000000000000", T0));
    /* One byte off the hash: not found. */
    h[31] ^= 1;
    assert_null(keyring_find_secret(kr, h, T0));
    keyring_unref(kr);
}

static void test_expiry_rotation_revocation(void **state)
{
    struct fixture *f = *state;
    struct ks_key a, b, c;
    char sa[APIKEY_SECRET_MAX], sb[APIKEY_SECRET_MAX], sc[APIKEY_SECRET_MAX];
    char sa2[APIKEY_SECRET_MAX];
    char *err = NULL;
    create(f, "pro", "", T0 + 10 * MINUTE, &a, sa);
    create(f, "pro", "", 0, &b, sb);
    create(f, "pro", "", 0, &c, sc);
    assert_int_equal(ks_rotate(&f->ks, a.id, 5 * MINUTE, T0, &a, sa2, &err), KS_OK);
    assert_int_equal(ks_revoke(&f->ks, c.id, T0, &c, &err), KS_OK);

    struct keyring *kr = build(f, T0, NULL);
    uint8_t h[APIKEY_HASH_LEN];
    /* During the grace both secrets of a; after it only the new one; past
     * the key's expiry neither, though the snapshot was built before. */
    hash_of(sa, h);
    assert_non_null(keyring_find_secret(kr, h, T0 + 5 * MINUTE - 1));
    assert_null(keyring_find_secret(kr, h, T0 + 5 * MINUTE));
    hash_of(sa2, h);
    assert_non_null(keyring_find_secret(kr, h, T0 + 9 * MINUTE));
    assert_null(keyring_find_secret(kr, h, T0 + 10 * MINUTE));
    assert_null(keyring_find_id(kr, a.id, T0 + 10 * MINUTE));
    hash_of(sb, h);
    assert_non_null(keyring_find_secret(kr, h, T0 + 1000 * MINUTE));
    /* A revoked key is not in the snapshot at all. */
    hash_of(sc, h);
    assert_null(keyring_find_secret(kr, h, T0));
    assert_null(keyring_find_id(kr, c.id, T0));
    assert_int_equal(keyring_size(kr), 2);
    keyring_unref(kr);

    /* Built after the key expired: left out. */
    kr = build(f, T0 + 11 * MINUTE, NULL);
    assert_int_equal(keyring_size(kr), 1);
    keyring_unref(kr);
}

static void test_last_used_carried_and_flushed(void **state)
{
    struct fixture *f = *state;
    struct ks_key a;
    char sa[APIKEY_SECRET_MAX];
    char *err = NULL;
    create(f, "pro", "", 0, &a, sa);
    struct keyring *kr = build(f, T0, NULL);
    struct keyring_key *k = keyring_find_id(kr, a.id, T0);
    keyring_touch(k, T0 + 5000);
    assert_int_equal(k->last_used_ms, T0 + 5000);
    /* Within a second of the last note: not written again. */
    keyring_touch(k, T0 + 5500);
    assert_int_equal(k->last_used_ms, T0 + 5000);

    /* A rebuild before the flush keeps the time. */
    struct keyring *kr2 = build(f, T0 + 6000, kr);
    keyring_unref(kr);
    assert_int_equal(keyring_find_id(kr2, a.id, T0)->last_used_ms, T0 + 5000);

    struct ks_key got;
    assert_int_equal(ks_get(&f->ks, a.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, 0);
    keyring_flush_last_used(kr2, &f->ks);
    assert_int_equal(ks_get(&f->ks, a.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 5000);
    keyring_unref(kr2);
}

static void test_holder_sync(void **state)
{
    struct fixture *f = *state;
    struct keyring_holder h;
    keyring_holder_init(&h, keyring_empty());
    struct keyring *mine = NULL;
    uint64_t gen = 0;
    keyring_sync(&h, &mine, &gen);
    assert_non_null(mine);
    assert_int_equal(keyring_size(mine), 0);
    struct keyring *before = mine;
    keyring_sync(&h, &mine, &gen);
    assert_ptr_equal(mine, before); /* nothing published: the same one */

    struct ks_key a;
    char sa[APIKEY_SECRET_MAX];
    create(f, "pro", "", 0, &a, sa);
    keyring_publish(&h, build(f, T0, NULL));
    keyring_sync(&h, &mine, &gen);
    assert_int_equal(keyring_size(mine), 1);
    /* The reader's old snapshot was released; the new one is shared. */
    struct keyring *cur = keyring_current(&h);
    assert_ptr_equal(cur, mine);
    keyring_unref(cur);
    keyring_unref(mine);
    keyring_holder_release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup_by_secret_and_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_rotation_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used_carried_and_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
