/* Unit tests of src/store/db.c and src/auth/keystore{,_sqlite}.c, on a real SQLite
 * file in a fresh temporary directory: opening and migrating (idempotent,
 * user_version), ks_open, create/get/list, the secret never reaching the disk,
 * rotation with and without grace, revocation, updates, expiry, refresh tokens
 * (issue, spend, reuse revoking the family), touch and the JSON shape.
 * Times are injected: T0 is an arbitrary wall-clock instant. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "keystore_support.h"
#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keystore.h"
#include "store/db.h"
#include "util/seal.h"

#define T0 1700000000000LL /* 2023-11-14T22:13:20Z */
#define HOUR 3600000LL
#define DAY (24 * HOUR)

struct fixture {
    char dir[64];
    char data[96]; /* <dir>/data: db_open must create it */
    sqlite3 *db;
    struct ks_db ks; /* the same connection, as the ks_* functions take it */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-ks-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data/sub", f->dir);
    char *err = NULL;
    f->db = db_open(f->data, &err);
    f->ks.sql = f->db;
    if (!f->db) {
        fprintf(stderr, "%s\n", err);
        free(err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(f->db);
    test_rm_rf(f->dir);
    free(f);
    return 0;
}

static void create(struct ks_db *db, const struct ks_new *req, int64_t now, struct ks_key *k,
                   char secret[APIKEY_SECRET_MAX])
{
    char *err = NULL;
    enum ks_result r = ks_create(db, req, now, k, secret, &err);
    if (r != KS_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, KS_OK);
    assert_null(err);
}

static struct seen active_at(struct ks_db *db, int64_t now)
{
    struct seen seen = {0};
    char *err = NULL;
    assert_int_equal(ks_each_active(db, now, collect, &seen, &err), KS_OK);
    return seen;
}

/* ---- open and migrate --------------------------------------------------- */

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_open_migrate(void **state)
{
    struct fixture *f = *state;
    assert_true(db_schema_version() >= 1);
    assert_int_equal(user_version(f->db), db_schema_version());
    struct stat st;
    assert_int_equal(stat(f->data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char file[160];
    snprintf(file, sizeof(file), "%s/sluice.db", f->data);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(f->db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);

    /* A key, then reopen: same version, key still there (migrations not
     * re-run, nothing dropped). */
    struct ks_new req = new_req("free");
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    db_close(f->db);
    char *err = NULL;
    f->db = db_open(f->data, &err);
    f->ks.sql = f->db;
    assert_non_null(f->db);
    assert_int_equal(user_version(f->db), db_schema_version());
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);

    /* Two connections at once (gateway writer + CLI). */
    sqlite3 *db2 = db_open(f->data, &err);
    assert_non_null(db2);
    struct ks_db ks2 = {.sql = db2};
    assert_int_equal(ks_get(&ks2, k.id, &got, &err), KS_OK);
    db_close(db2);

    /* A file from a newer sluice is refused, not downgraded. */
    assert_int_equal(sqlite3_exec(f->db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    db2 = db_open(f->data, &err);
    assert_null(db2);
    assert_non_null(err);
    assert_non_null(strstr(err, "999"));
    assert_null(strchr(err, '\n'));
    free(err);
    err = NULL;
    char set[48];
    snprintf(set, sizeof(set), "PRAGMA user_version = %d", db_schema_version());
    assert_int_equal(sqlite3_exec(f->db, set, NULL, NULL, NULL), SQLITE_OK);

    /* A data dir that cannot be created. */
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/sluice.db/x", f->data);
    assert_null(db_open(bad, &err));
    assert_non_null(err);
    free(err);
}

/* ks_open on KS_SQLITE opts: a connection of its own on the data dir,
 * seeing (ks_changed) and sharing what the fixture's connection commits. */

/* A file of schema version 1 (before signing secrets) gains the column on
 * open, its keys intact and unable to sign; a signing key's sealed secret
 * then round-trips through create (preset id), get and update. */
static void test_migrate_signing(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("free");
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX], *err = NULL;
    create(&f->ks, &req, T0, &k, secret);
    assert_int_equal(sqlite3_exec(f->db,
                                  "ALTER TABLE keys DROP COLUMN signing;"
                                  "ALTER TABLE keys DROP COLUMN allow_ips; PRAGMA user_version = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    db_close(f->db);
    f->db = db_open(f->data, &err);
    f->ks.sql = f->db;
    assert_non_null(f->db);
    assert_int_equal(user_version(f->db), db_schema_version());
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_string_equal(got.signing, "");

    uint8_t enc[32] = {1, 2, 3}, plain[32];
    char id[APIKEY_ID_MAX], hex[KS_SIGNING_HEX_MAX], sealed[KS_SIGNING_MAX];
    assert_int_equal(apikey_new_id(id), 0);
    assert_int_equal(ks_signing_new(enc, id, hex, sealed), 0);
    assert_int_equal(strlen(hex), 64);
    req.id = id;
    req.signing = sealed;
    create(&f->ks, &req, T0, &k, secret);
    assert_string_equal(k.id, id);
    assert_string_equal(k.signing, sealed);
    size_t n = 0;
    assert_int_equal(seal_open(enc, id, k.signing, plain, sizeof(plain), &n), 0);
    assert_int_equal(n, 32);
    char again[65];
    for (int i = 0; i < 32; i++)
        snprintf(again + 2 * i, 3, "%02x", plain[i]);
    assert_string_equal(again, hex);
    /* The same id again is refused by the store, not overwritten. */
    assert_int_not_equal(ks_create(&f->ks, &req, T0, &got, secret, &err), KS_OK);
    free(err);
    err = NULL;
    /* A malformed preset id is refused. */
    req.id = "key_nothex!";
    assert_int_equal(ks_create(&f->ks, &req, T0, &got, secret, &err), KS_ERROR);
    free(err);
    err = NULL;

    struct ks_update u = {.signing = ""};
    assert_false(ks_update_empty(&u));
    assert_int_equal(ks_update(&f->ks, id, &u, &got, &err), KS_OK);
    assert_string_equal(got.signing, "");
}
static void test_open_opts(void **state)
{
    struct fixture *f = *state;
    struct ks_open_opts o = {.backend = KS_SQLITE, .data_dir = f->data};
    struct ks_db ks;
    char *err = NULL;
    assert_int_equal(ks_open(&ks, &o, &err), 0);
    assert_null(err);
    assert_true(ks_changed(&ks)); /* the first call */
    assert_false(ks_changed(&ks));
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    assert_true(ks_changed(&ks));
    assert_int_equal(ks_get(&ks, k.id, &got, &err), KS_OK);
    assert_string_equal(got.id, k.id);
    create(&ks, &req, T0 + 1, &k, secret);
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    ks_close(&ks);
    ks_close(&ks); /* idempotent */

    /* A data dir that cannot be created; a backend that does not exist. */
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/sluice.db/x", f->data);
    o.data_dir = bad;
    assert_int_equal(ks_open(&ks, &o, &err), -1);
    assert_non_null(err);
    free(err);
    err = NULL;
    o.backend = (enum ks_backend)7;
    assert_int_equal(ks_open(&ks, &o, &err), -1);
    assert_non_null(err);
    free(err);
}

/* ---- create, get, list -------------------------------------------------- */

static void test_create_get_list(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    req.scopes = "read write";
    req.limits = "100/h, 10/s burst 20";
    req.quota_monthly = 100000;
    req.env = "test";
    struct ks_key k;
    char secret[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    assert_true(apikey_shape_ok(secret, strlen(secret)));
    assert_memory_equal(secret, "sk_test_", 8);
    assert_memory_equal(k.id, "key_", 4);
    assert_string_equal(k.tier, "pro");
    assert_string_equal(k.name, "ci");
    assert_string_equal(k.owner, "ops");
    assert_string_equal(k.scopes, "read write");
    assert_string_equal(k.limits, "100/h, 10/s burst 20");
    assert_int_equal(k.quota_monthly, 100000);
    assert_int_equal(k.quota_daily, -1);
    assert_int_equal(k.created_ms, T0);
    assert_int_equal(k.expires_ms, 0);
    assert_int_equal(k.last_used_ms, 0);
    assert_int_equal(k.state, KS_ACTIVE);
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(secret, prefix);
    assert_string_equal(k.prefix, prefix);

    struct ks_key got;
    char *err = NULL;
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_memory_equal(&got, &k, sizeof(k));
    assert_int_equal(ks_get(&f->ks, "key_0000000000000000", &got, &err), KS_NOT_FOUND);
    assert_null(err);

    struct ks_key k2;
    char s2[APIKEY_SECRET_MAX];
    struct ks_new req2 = new_req("free");
    create(&f->ks, &req2, T0 + 1, &k2, s2);
    assert_string_not_equal(k.id, k2.id);
    assert_string_not_equal(secret, s2);

    struct ks_key *all;
    int n;
    assert_int_equal(ks_list(&f->ks, &all, &n, &err), KS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].id, k2.id); /* newest first */
    assert_string_equal(all[1].id, k.id);
    free(all);

    struct seen seen = active_at(&f->ks, T0 + 2);
    assert_int_equal(seen.keys, 2);
    assert_true(seen_has(&seen, secret));
    assert_true(seen_has(&seen, s2));

    /* Refused: no tier, bad env, oversize name. Nothing is written. */
    struct ks_new bad = new_req(NULL);
    assert_int_equal(ks_create(&f->ks, &bad, T0, &got, s2, &err), KS_ERROR);
    assert_non_null(err);
    free(err);
    err = NULL;
    bad = new_req("pro");
    bad.env = "LIVE";
    assert_int_equal(ks_create(&f->ks, &bad, T0, &got, s2, &err), KS_ERROR);
    free(err);
    err = NULL;
    char big[KS_NAME_MAX + 1];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bad = new_req("pro");
    bad.name = big;
    assert_int_equal(ks_create(&f->ks, &bad, T0, &got, s2, &err), KS_ERROR);
    free(err);
    err = NULL;
    assert_int_equal(ks_list(&f->ks, &all, &n, &err), KS_OK);
    assert_int_equal(n, 2);
    free(all);
}

/* Does <needle> occur anywhere in the file at <path>? */
static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t cap = 1 << 16, len = 0;
    char *data = malloc(cap);
    size_t n;
    while ((n = fread(data + len, 1, cap - len, fp)) > 0) {
        len += n;
        if (len == cap)
            data = realloc(data, cap *= 2);
    }
    fclose(fp);
    size_t nl = strlen(needle);
    bool found = false;
    for (size_t i = 0; !found && i + nl <= len; i++)
        found = memcmp(data + i, needle, nl) == 0;
    free(data);
    return found;
}

static void test_secret_not_on_disk(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k;
    char secret[APIKEY_SECRET_MAX], rotated[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    char *err = NULL;
    assert_int_equal(ks_rotate(&f->ks, k.id, HOUR, T0 + 1, &k, rotated, &err), KS_OK);
    char rt[KS_REFRESH_MAX];
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, DAY, T0, rt, &err), KS_OK);

    /* Every file: sluice.db, -wal, -shm (WAL mode keeps recent pages in
     * the -wal until a checkpoint, so it must be searched too). */
    DIR *d = opendir(f->data);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    bool saw_wal = false;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", f->data, e->d_name);
        files++;
        saw_wal |= strstr(e->d_name, "-wal") != NULL;
        const char *secrets[] = {secret, rotated, rt};
        for (int i = 0; i < 3; i++) {
            assert_false(file_contains(p, secrets[i]));
            /* the random part alone, too */
            assert_false(file_contains(p, strrchr(secrets[i], '_') + 1));
        }
        /* ...while the prefix is there: the search does find what is. */
        if (strcmp(e->d_name, "sluice.db-wal") == 0)
            assert_true(file_contains(p, k.prefix));
    }
    closedir(d);
    assert_true(files >= 2);
    assert_true(saw_wal);
}

/* ---- rotate, revoke, expire --------------------------------------------- */

static void test_rotate(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, r;
    char s1[APIKEY_SECRET_MAX], s2[APIKEY_SECRET_MAX], s3[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, s1);
    char *err = NULL;

    /* Rotate at T0+10 with an hour of grace: both until T0+10+1h. */
    assert_int_equal(ks_rotate(&f->ks, k.id, HOUR, T0 + 10, &r, s2, &err), KS_OK);
    assert_true(apikey_shape_ok(s2, strlen(s2)));
    assert_string_not_equal(s1, s2);
    assert_int_equal(r.rotated_until_ms, T0 + 10 + HOUR);
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(s2, prefix);
    assert_string_equal(r.prefix, prefix);

    struct seen seen = active_at(&f->ks, T0 + 20);
    assert_int_equal(seen.keys, 1);
    assert_int_equal(seen.secrets, 2);
    assert_true(seen_has(&seen, s1));
    assert_true(seen_has(&seen, s2));
    for (int i = 0; i < 2; i++)
        assert_true(seen.until[i] == 0 || seen.until[i] == T0 + 10 + HOUR);
    seen = active_at(&f->ks, T0 + 10 + HOUR - 1);
    assert_int_equal(seen.secrets, 2);
    seen = active_at(&f->ks, T0 + 10 + HOUR);
    assert_int_equal(seen.secrets, 1);
    assert_true(seen_has(&seen, s2));
    assert_false(seen_has(&seen, s1));

    /* Rotate again during the grace with a longer one: s1 cannot outlive
     * its first grace; s2 gets the new one. Then without grace: only s3. */
    assert_int_equal(ks_rotate(&f->ks, k.id, 2 * HOUR, T0 + 20, &r, s3, &err), KS_OK);
    seen = active_at(&f->ks, T0 + 30);
    assert_int_equal(seen.secrets, 3);
    seen = active_at(&f->ks, T0 + 10 + HOUR);
    assert_int_equal(seen.secrets, 2);
    assert_true(seen_has(&seen, s2) && seen_has(&seen, s3));
    assert_int_equal(ks_rotate(&f->ks, k.id, 0, T0 + 40, &r, s1, &err), KS_OK);
    assert_int_equal(r.rotated_until_ms, 0);
    seen = active_at(&f->ks, T0 + 41);
    assert_int_equal(seen.secrets, 1);
    assert_true(seen_has(&seen, s1)); /* s1 now holds the newest */
    assert_false(seen_has(&seen, s3));

    assert_int_equal(ks_rotate(&f->ks, "key_nope", 0, T0, &r, s2, &err), KS_NOT_FOUND);
    assert_string_equal(s2, "");
}

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, r, other;
    char s1[APIKEY_SECRET_MAX], s2[APIKEY_SECRET_MAX], so[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, s1);
    create(&f->ks, &req, T0, &other, so);
    char *err = NULL;
    assert_int_equal(ks_rotate(&f->ks, k.id, HOUR, T0 + 1, &r, s2, &err), KS_OK);
    char rt[KS_REFRESH_MAX], next[KS_REFRESH_MAX];
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, DAY, T0 + 1, rt, &err), KS_OK);

    assert_int_equal(ks_revoke(&f->ks, k.id, T0 + 5, &r, &err), KS_OK);
    assert_int_equal(r.state, KS_REVOKED);
    assert_int_equal(r.revoked_ms, T0 + 5);
    struct seen seen = active_at(&f->ks, T0 + 6);
    assert_int_equal(seen.keys, 1); /* only the other key */
    assert_false(seen_has(&seen, s1));
    assert_false(seen_has(&seen, s2));
    assert_true(seen_has(&seen, so));

    struct ks_key got;
    assert_int_equal(ks_refresh_spend(&f->ks, rt, DAY, T0 + 6, &got, next, &err), KS_SPENT_INVALID);
    assert_null(err);
    assert_string_equal(next, "");

    /* Idempotent; keeps the first revocation time. Not rotatable. */
    assert_int_equal(ks_revoke(&f->ks, k.id, T0 + 9, &r, &err), KS_OK);
    assert_int_equal(r.revoked_ms, T0 + 5);
    assert_int_equal(ks_rotate(&f->ks, k.id, 0, T0 + 9, &r, s2, &err), KS_NOT_FOUND);
    assert_int_equal(ks_revoke(&f->ks, "key_nope", T0, &r, &err), KS_NOT_FOUND);
    assert_null(err);
}

/* ks_update: only the fields named change, at once; a revoked or unknown
 * key is not found; another connection (a gateway's writer, while the CLI
 * updates) sees the store change; bad values are refused before a write. */
static void test_update(void **state)
{
    struct fixture *f = *state;
    struct ks_open_opts o = {.backend = KS_SQLITE, .data_dir = f->data};
    struct ks_db gw; /* the gateway's connection */
    char *err = NULL;
    assert_int_equal(ks_open(&gw, &o, &err), 0);
    struct ks_new req = new_req("free");
    req.scopes = "read";
    req.limits = "10/min";
    req.quota_monthly = 1000;
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    ks_touch(&f->ks, k.id, T0 + 3);
    ks_changed(&gw);
    assert_false(ks_changed(&gw));

    struct ks_update u = {.tier = "pro", .set_quota_daily = true, .quota_daily = 50};
    assert_false(ks_update_empty(&u));
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_OK);
    assert_null(err);
    assert_true(ks_changed(&gw)); /* the writer's next tick rebuilds its keyring */
    assert_string_equal(got.tier, "pro");
    assert_int_equal(got.quota_daily, 50);
    /* The rest as it was, last use included. */
    assert_int_equal(got.quota_monthly, 1000);
    assert_string_equal(got.name, "ci");
    assert_string_equal(got.owner, "ops");
    assert_string_equal(got.scopes, "read");
    assert_string_equal(got.limits, "10/min");
    assert_string_equal(got.prefix, k.prefix);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.last_used_ms, T0 + 3);
    struct ks_key again;
    assert_int_equal(ks_get(&gw, k.id, &again, &err), KS_OK);
    assert_memory_equal(&again, &got, sizeof(got));
    /* The keyring's source: the new tier, the same secret. */
    struct seen seen = {0};
    assert_int_equal(ks_each_active(&gw, T0 + 4, collect, &seen, &err), KS_OK);
    assert_int_equal(seen.keys, 1);
    assert_true(seen_has(&seen, secret));

    /* Clearing: "" and -1 (none: the tier's). */
    u = (struct ks_update){
        .name = "", .scopes = "", .limits = "", .set_quota_monthly = true, .quota_monthly = -1};
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_OK);
    assert_string_equal(got.name, "");
    assert_string_equal(got.scopes, "");
    assert_string_equal(got.limits, "");
    assert_int_equal(got.quota_monthly, -1);
    assert_int_equal(got.quota_daily, 50);
    assert_string_equal(got.tier, "pro");

    /* Refused before any write: no tier, a quota out of range, a long name. */
    struct ks_update bad[] = {
        {.tier = ""},
        {.set_quota_daily = true, .quota_daily = 0},
        {.set_quota_monthly = true, .quota_monthly = KS_QUOTA_MAX + 1},
        {.set_quota_monthly = true, .quota_monthly = -2},
    };
    ks_changed(&gw);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ks_update(&f->ks, k.id, &bad[i], &again, &err), KS_ERROR);
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    char big[KS_NAME_MAX + 1];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    u = (struct ks_update){.owner = big};
    assert_int_equal(ks_update(&f->ks, k.id, &u, &again, &err), KS_ERROR);
    free(err);
    err = NULL;
    assert_false(ks_changed(&gw));
    u = (struct ks_update){.set_quota_daily = true, .quota_daily = KS_QUOTA_MAX};
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_OK);
    assert_true(got.quota_daily == KS_QUOTA_MAX);

    /* Unknown and revoked keys are not found, and stay as they are. */
    u = (struct ks_update){.tier = "free"};
    assert_int_equal(ks_update(&f->ks, "key_0000000000000000", &u, &again, &err), KS_NOT_FOUND);
    assert_int_equal(ks_revoke(&f->ks, k.id, T0 + 5, &got, &err), KS_OK);
    assert_int_equal(ks_update(&f->ks, k.id, &u, &again, &err), KS_NOT_FOUND);
    assert_null(err);
    assert_int_equal(ks_get(&f->ks, k.id, &again, &err), KS_OK);
    assert_string_equal(again.tier, "pro");
    assert_int_equal(again.state, KS_REVOKED);
    assert_true(ks_update_empty(&(struct ks_update){0}));
    ks_close(&gw);
}

static void test_expiry(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    req.expires_ms = T0 + DAY;
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, s);
    assert_int_equal(k.expires_ms, T0 + DAY);
    assert_int_equal(active_at(&f->ks, T0 + DAY - 1).keys, 1);
    assert_int_equal(active_at(&f->ks, T0 + DAY).keys, 0);

    /* A refresh token outliving the key is worthless after it. */
    char *err = NULL;
    char rt[KS_REFRESH_MAX], next[KS_REFRESH_MAX];
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, 2 * DAY, T0, rt, &err), KS_OK);
    assert_int_equal(ks_refresh_spend(&f->ks, rt, DAY, T0 + DAY, &got, next, &err),
                     KS_SPENT_INVALID);
}

/* ---- refresh tokens ----------------------------------------------------- */

static void test_refresh(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, s);
    char *err = NULL;
    char rt1[KS_REFRESH_MAX], rt2[KS_REFRESH_MAX], rt3[KS_REFRESH_MAX], other[KS_REFRESH_MAX];
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, HOUR, T0, rt1, &err), KS_OK);
    assert_int_equal(strlen(rt1), 3 + APIKEY_B62_LEN);
    assert_memory_equal(rt1, "rt_", 3);
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, HOUR, T0, other, &err), KS_OK);

    /* Spend: the key comes back with a successor. */
    assert_int_equal(ks_refresh_spend(&f->ks, rt1, HOUR, T0 + 10, &got, rt2, &err), KS_SPENT_OK);
    assert_string_equal(got.id, k.id);
    assert_memory_equal(rt2, "rt_", 3);
    assert_string_not_equal(rt1, rt2);

    /* The successor is spendable once... */
    assert_int_equal(ks_refresh_spend(&f->ks, rt2, HOUR, T0 + 20, &got, rt3, &err), KS_SPENT_OK);
    /* ...and a replay of rt1 revokes the family: rt3 dies with it. */
    assert_int_equal(ks_refresh_spend(&f->ks, rt1, HOUR, T0 + 30, &got, rt2, &err),
                     KS_SPENT_REUSED);
    assert_string_equal(rt2, "");
    assert_int_equal(ks_refresh_spend(&f->ks, rt3, HOUR, T0 + 31, &got, rt2, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ks_refresh_spend(&f->ks, rt1, HOUR, T0 + 32, &got, rt2, &err),
                     KS_SPENT_INVALID); /* revoked now: nothing more to revoke */

    /* Another family is untouched; expiry; garbage. */
    assert_int_equal(ks_refresh_spend(&f->ks, other, HOUR, T0 + HOUR, &got, rt2, &err),
                     KS_SPENT_INVALID); /* expired at T0 + HOUR */
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, HOUR, T0, other, &err), KS_OK);
    assert_int_equal(ks_refresh_spend(&f->ks, other, HOUR, T0 + HOUR - 1, &got, rt2, &err),
                     KS_SPENT_OK);
    assert_int_equal(ks_refresh_spend(&f->ks, "rt_nope", HOUR, T0, &got, rt3, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ks_refresh_spend(&f->ks, "rt_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
                                      HOUR, T0, &got, rt3, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ks_refresh_spend(&f->ks, s, HOUR, T0, &got, rt3, &err), KS_SPENT_INVALID);
    assert_null(err);

    /* Issuing prunes expired rows. */
    sqlite3_stmt *st;
    assert_int_equal(ks_refresh_issue(&f->ks, k.id, NULL, HOUR, T0 + 10 * HOUR, rt3, &err), KS_OK);
    assert_int_equal(
        sqlite3_prepare_v2(f->db, "SELECT count(*) FROM refresh_tokens", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
}

/* ---- touch and JSON ----------------------------------------------------- */

static void test_touch(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, s);
    char *err = NULL;
    ks_touch(&f->ks, k.id, T0 + 100);
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 100);
    ks_touch(&f->ks, k.id, T0 + 50); /* never backwards */
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 100);
    ks_touch(&f->ks, "key_nope", T0); /* harmless */
}

static void test_json(void **state)
{
    (void)state;
    struct ks_key k = {
        .id = "key_0123456789abcdef",
        .name = "ci",
        .tier = "pro",
        .scopes = "read  write",
        .limits = "100/h, 10/s burst 20",
        .prefix = "sk_live_ab12",
        .quota_monthly = 5000,
        .quota_daily = -1,
        .expires_ms = 0,
        .created_ms = T0 + 999,
        .last_used_ms = 0,
        .rotated_until_ms = T0 + HOUR,
        .state = KS_ACTIVE,
        .allow_ips = "10.0.0.0/8,2001:db8::/32",
    };
    json_t *j = ks_key_json(&k);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(
        s, "{\"id\":\"key_0123456789abcdef\",\"name\":\"ci\",\"owner\":null,\"tier\":\"pro\","
           "\"scopes\":[\"read\",\"write\"],\"limits\":[\"100/h\",\"10/s burst 20\"],"
           "\"prefix\":\"sk_live_ab12\",\"quota\":{\"monthly\":5000,\"daily\":null},"
           "\"expires_at\":null,\"created_at\":\"2023-11-14T22:13:20Z\","
           "\"last_used_at\":null,\"state\":\"active\","
           "\"rotated_until\":\"2023-11-14T23:13:20Z\",\"revoked_at\":null,"
           "\"signing\":false,\"allow_ips\":[\"10.0.0.0/8\",\"2001:db8::/32\"]}");
    free(s);
    json_decref(j);

    k.state = KS_REVOKED;
    k.revoked_ms = T0;
    k.scopes[0] = '\0';
    k.limits[0] = '\0';
    j = ks_key_json(&k);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "revoked");
    assert_string_equal(json_string_value(json_object_get(j, "revoked_at")),
                        "2023-11-14T22:13:20Z");
    assert_int_equal(json_array_size(json_object_get(j, "scopes")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "limits")), 0);
    /* never a secret or hash */
    assert_null(json_object_get(j, "secret"));
    assert_null(json_object_get(j, "hash"));
    json_decref(j);
}

/* A key's allow_ips (SPEC 7.1): stored at creation, seen by the gateway's
 * read (ks_each_active), replaced and cleared by an update, checked on the
 * way in, and part of what makes two records the same key. */
static void test_allow_ips(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("free");
    req.allow_ips = "10.0.0.0/8,2001:db8::/32";
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX];
    create(&f->ks, &req, T0, &k, secret);
    assert_string_equal(k.allow_ips, "10.0.0.0/8,2001:db8::/32");
    char *err = NULL;
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_string_equal(got.allow_ips, "10.0.0.0/8,2001:db8::/32");
    assert_true(ks_same_key(&k, &got));
    got.allow_ips[0] = '\0';
    assert_false(ks_same_key(&k, &got));

    struct ks_update u = {.allow_ips = "192.0.2.7"};
    assert_false(ks_update_empty(&u));
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_OK);
    assert_string_equal(got.allow_ips, "192.0.2.7");
    assert_string_equal(got.tier, "free"); /* the rest as it was */
    u.allow_ips = "";
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_OK);
    assert_string_equal(got.allow_ips, "");

    /* Not a list of CIDRs: refused by the store itself. */
    u.allow_ips = "10.0.0.0/33";
    assert_int_equal(ks_update(&f->ks, k.id, &u, &got, &err), KS_ERROR);
    assert_non_null(strstr(err, "10.0.0.0/33"));
    free(err);
    err = NULL;
    req.allow_ips = "nope";
    assert_int_equal(ks_create(&f->ks, &req, T0, &got, secret, &err), KS_ERROR);
    free(err);
}

/* A file made before keys had allow_ips (schema version 2) gains the
 * column, and its keys keep working with none. */
static void test_migrate_allow_ips(void **state)
{
    struct fixture *f = *state;
    struct ks_key k, got;
    char secret[APIKEY_SECRET_MAX], *err = NULL;
    struct ks_new req = new_req("free");
    create(&f->ks, &req, T0, &k, secret);
    /* Back to version 1 by hand: without the column. */
    assert_int_equal(sqlite3_exec(f->db,
                                  "ALTER TABLE keys DROP COLUMN allow_ips;"
                                  "PRAGMA user_version = 2",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    db_close(f->db);
    f->db = db_open(f->data, &err);
    assert_non_null(f->db);
    f->ks.sql = f->db;
    assert_int_equal(user_version(f->db), db_schema_version());
    assert_int_equal(ks_get(&f->ks, k.id, &got, &err), KS_OK);
    assert_string_equal(got.allow_ips, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_signing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_get_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_not_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch, setup, teardown),
        cmocka_unit_test(test_json),
        cmocka_unit_test_setup_teardown(test_allow_ips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_allow_ips, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
