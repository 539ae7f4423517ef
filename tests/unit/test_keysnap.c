/* Unit tests of src/auth/keysnap.c: the keyring snapshot a gateway on
 * Redis keeps in its data_dir. A round trip through the file keeps every
 * record and hash; the file is mode 0600 and holds no secret; what is
 * expired at a given time is left out; a damaged file is refused with its
 * line; the keyring built from a snapshot finds the keys; merging keeps the
 * store's version of a key. And the epoch rule (keystore.c), a pure
 * function. Times are injected. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keyring.h"
#include "auth/keysnap.h"

#define T0 1700000000000LL
#define HOUR 3600000LL

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-ksnap-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    /* a data_dir that does not exist yet: the writer creates it */
    snprintf(f->path, sizeof(f->path), "%s/var/%s", f->dir, KEYSNAP_FILE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static struct ks_key key(const char *id, const char *tier, int64_t expires)
{
    struct ks_key k = {.quota_monthly = 1000, .quota_daily = -1, .expires_ms = expires};
    snprintf(k.id, sizeof(k.id), "%s", id);
    snprintf(k.name, sizeof(k.name), "acme \"ci\" \xc3\xa9");
    snprintf(k.owner, sizeof(k.owner), "ops");
    snprintf(k.tier, sizeof(k.tier), "%s", tier);
    snprintf(k.scopes, sizeof(k.scopes), "orders:read orders:write");
    snprintf(k.limits, sizeof(k.limits), "100/h, 10/s");
    snprintf(k.prefix, sizeof(k.prefix), "sk_live_ab12");
    k.created_ms = T0 - HOUR;
    k.last_used_ms = T0 - 5;
    k.rotated_until_ms = T0 + HOUR;
    return k;
}

static struct ks_secret secret_of(const char *secret, int64_t until)
{
    struct ks_secret s = {.valid_until_ms = until};
    apikey_hash(secret, strlen(secret), s.hash);
    return s;
}

#define SECRET_A "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define SECRET_A_OLD "sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define SECRET_B "sk_test_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"

/* Two keys: key_a with its secret and an older one in grace until
 * T0 + HOUR; key_b expiring at T0 + 2 h. */
static struct keysnap *two_keys(void)
{
    struct keysnap *s = keysnap_new();
    struct ks_key a = key("key_00000000000000aa", "pro", 0);
    struct ks_key b = key("key_00000000000000bb", "free", T0 + 2 * HOUR);
    struct ks_secret sa[2] = {secret_of(SECRET_A, 0), secret_of(SECRET_A_OLD, T0 + HOUR)};
    struct ks_secret sb[1] = {secret_of(SECRET_B, 0)};
    keysnap_add(&a, sa, 2, s);
    keysnap_add(&b, sb, 1, s);
    keysnap_set_epoch(s, "0123456789abcdef0123456789abcdef");
    return s;
}

struct collected {
    int n;
    struct ks_key keys[4];
    struct ks_secret secrets[4][4];
    int n_secrets[4];
};

static void collect(const struct ks_key *k, const struct ks_secret *s, int n, void *arg)
{
    struct collected *c = arg;
    assert_true(c->n < 4 && n <= 4);
    c->keys[c->n] = *k;
    memcpy(c->secrets[c->n], s, (size_t)n * sizeof(*s));
    c->n_secrets[c->n++] = n;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct keysnap *s = two_keys();
    char *err = NULL;
    assert_int_equal(keysnap_write(s, f->path, T0, &err), 0);
    assert_null(err);

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = slurp(f->path);
    assert_null(strstr(text, SECRET_A));
    assert_null(strstr(text, SECRET_A_OLD));
    assert_null(strstr(text, "AAAAAAAAAA")); /* not even part of one */
    assert_non_null(strstr(text, "\"format\":\"sluice-keyring\""));

    struct keysnap *back = NULL;
    assert_int_equal(keysnap_read(f->path, &back, &err), 0);
    assert_null(err);
    assert_int_equal(keysnap_count(back), 2);
    assert_string_equal(keysnap_epoch(back), "0123456789abcdef0123456789abcdef");
    assert_int_equal(keysnap_written_ms(back), T0);

    /* everything the store gave, at a time when all of it is valid */
    struct collected want = {0}, got = {0};
    keysnap_each(s, T0, collect, &want);
    keysnap_each(back, T0, collect, &got);
    assert_int_equal(got.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(ks_same_key(&want.keys[i], &got.keys[i]));
        assert_int_equal(got.keys[i].last_used_ms, want.keys[i].last_used_ms);
        assert_true(
            ks_same_secrets(want.secrets[i], want.n_secrets[i], got.secrets[i], got.n_secrets[i]));
    }
    assert_string_equal(got.keys[0].name, "acme \"ci\" \xc3\xa9");
    assert_int_equal(got.keys[0].quota_monthly, 1000);
    assert_int_equal(got.keys[0].quota_daily, -1);
    assert_int_equal(got.n_secrets[0], 2);

    /* a later write replaces the file whole, still 0600, no temporary left */
    assert_int_equal(chmod(f->path, 0644), 0);
    keysnap_set_epoch(s, "");
    assert_int_equal(keysnap_write(s, f->path, T0 + 1, &err), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", f->path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    keysnap_free(back);
    assert_int_equal(keysnap_read(f->path, &back, &err), 0);
    assert_string_equal(keysnap_epoch(back), "");
    keysnap_free(back);
    keysnap_free(s);
}

static void test_expiry_filters(void **state)
{
    struct keysnap *s = two_keys();
    struct collected c = {0};
    /* past key_a's old secret's grace: one secret left */
    keysnap_each(s, T0 + HOUR, collect, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.n_secrets[0], 1);
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash(SECRET_A, strlen(SECRET_A), h);
    assert_memory_equal(c.secrets[0][0].hash, h, APIKEY_HASH_LEN);
    /* past key_b's expiry: key_b is gone */
    memset(&c, 0, sizeof(c));
    keysnap_each(s, T0 + 2 * HOUR, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.keys[0].id, "key_00000000000000aa");
    keysnap_free(s);
}

static void test_keyring_from_snapshot(void **state)
{
    struct keysnap *s = two_keys();
    struct keyring *kr = keyring_from_snap(s, T0, NULL, LIM_SLIDING_WINDOW);
    assert_int_equal(keyring_size(kr), 2);
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash(SECRET_A_OLD, strlen(SECRET_A_OLD), h);
    struct keyring_key *k = keyring_find_secret(kr, h, T0);
    assert_non_null(k);
    assert_string_equal(k->id, "key_00000000000000aa");
    assert_string_equal(k->tier, "pro");
    assert_int_equal(k->n_limits, 2);                   /* "100/h, 10/s" */
    assert_null(keyring_find_secret(kr, h, T0 + HOUR)); /* grace over */
    apikey_hash(SECRET_B, strlen(SECRET_B), h);
    assert_non_null(keyring_find_secret(kr, h, T0));
    assert_non_null(keyring_find_id(kr, "key_00000000000000bb", T0));
    keyring_unref(kr);
    keysnap_free(s);
}

static void test_merge(void **state)
{
    struct keysnap *store = keysnap_new();
    struct ks_key a = key("key_00000000000000aa", "enterprise", 0); /* changed since */
    struct ks_key c = key("key_00000000000000cc", "pro", 0);        /* new */
    struct ks_secret sa = secret_of(SECRET_A, 0), sc = secret_of(SECRET_B, 0);
    keysnap_add(&a, &sa, 1, store);
    keysnap_add(&c, &sc, 1, store);
    struct keysnap *known = two_keys();
    keysnap_merge(store, known);
    assert_int_equal(keysnap_count(store), 3);
    struct collected got = {0};
    keysnap_each(store, T0, collect, &got);
    assert_int_equal(got.n, 3);
    assert_string_equal(got.keys[0].tier, "enterprise"); /* the store's version stays */
    assert_int_equal(got.n_secrets[0], 1);
    assert_string_equal(got.keys[2].id, "key_00000000000000bb");
    keysnap_free(known);
    keysnap_free(store);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_bad_files(void **state)
{
    struct fixture *f = *state;
    struct keysnap *s = NULL;
    char *err = NULL;
    char path[160];
    snprintf(path, sizeof(path), "%s/bad.jsonl", f->dir);
    assert_int_equal(keysnap_read(path, &s, &err), 1); /* no file: not an error */
    assert_null(s);
    assert_null(err);

    static const struct {
        const char *text, *why;
    } cases[] = {
        {"", "empty file"},
        {"{\"format\": \"other\", \"version\": 1}\n", "not a sluice keyring snapshot"},
        {"{\"format\": \"sluice-keyring\", \"version\": 2, \"epoch\": \"\", \"written_ms\": 1}\n",
         "version"},
        {"{\"format\": \"sluice-keyring\", \"version\": 1, \"epoch\": \"\", \"written_ms\": 1}\n"
         "[1]\n",
         ":2: not a JSON object"},
        {"{\"format\": \"sluice-keyring\", \"version\": 1, \"epoch\": \"\", \"written_ms\": 1}\n"
         "{\"key\": {\"id\": \"key_x\"}, \"secrets\": []}\n",
         ":2: a string field"},
        {"{\"format\": \"sluice-keyring\", \"version\": 1, \"epoch\": \"\", \"written_ms\": 1}\n"
         "{\"key\": {\"id\": \"key_x\", \"tier\": \"pro\", \"name\": \"\", \"owner\": \"\", "
         "\"scopes\": \"\", \"limits\": \"\", \"prefix\": \"\", \"state\": \"active\", "
         "\"quota_monthly\": -1, \"quota_daily\": -1, \"expires_ms\": 0, \"created_ms\": 1, "
         "\"last_used_ms\": 0, \"revoked_ms\": 0, \"rotated_until_ms\": 0}, "
         "\"secrets\": [{\"sha256\": \"abc\", \"valid_until_ms\": 0}]}\n",
         ":2: a secret is not"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, cases[i].text);
        assert_int_equal(keysnap_read(path, &s, &err), -1);
        assert_null(s);
        assert_non_null(err);
        if (!strstr(err, cases[i].why))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].why);
        free(err);
        err = NULL;
    }
}

static void test_epoch_check(void **state)
{
    assert_int_equal(ks_epoch_check("", "e1"), KS_EPOCH_NEW);
    assert_int_equal(ks_epoch_check("", ""), KS_EPOCH_NEW); /* SQLite: no epoch */
    assert_int_equal(ks_epoch_check("e1", "e1"), KS_EPOCH_SAME);
    assert_int_equal(ks_epoch_check("e1", "e2"), KS_EPOCH_LOST);
    assert_int_equal(ks_epoch_check("e1", ""), KS_EPOCH_LOST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyring_from_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test(test_epoch_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
