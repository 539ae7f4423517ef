/* Unit tests of src/auth/keystore_redis.c against a real redis-server (one
 * for the group, on a free loopback port, killed in the group teardown and
 * with the test process; FLUSHALL before each test): the semantics of the
 * SQLite tests (create/get/list, rotation with grace, revocation, updates, expiry,
 * refresh tokens with reuse revoking the family, touch), the secret never
 * reaching Redis, every key under the documented names, TTLs on refresh
 * tokens, the version and the events of every key change, ks_open on Redis
 * (reconnecting), and errors.
 *
 * Times are injected, but T0 is the wall clock at the start: Redis expires
 * refresh tokens (PEXPIREAT) by its own clock, so an instant in the past
 * would drop them at once. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "keystore_support.h"
#include "redis_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "auth/keystore_redis.h"

#define HOUR 3600000LL
#define DAY (24 * HOUR)
#define P "sl:" /* the store prefix */

static int64_t T0;

struct fixture {
    pid_t pid;
    int port;
    redisContext *rc;
};

/* ---- redis-server ------------------------------------------------------- */

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->rc = test_redis_start(&f->port, &f->pid);
    if (!f->rc) {
        free(f);
        return -1;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    T0 = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    redisFree(f->rc);
    test_redis_kill(f->pid);
    free(f);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = *state;
    if (!f->rc || f->rc->err) { /* a test broke it: a new one */
        redisFree(f->rc);
        f->rc = test_redis_connect(f->port);
    }
    redisReply *r = f->rc ? redisCommand(f->rc, "FLUSHALL") : NULL;
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* ---- helpers ------------------------------------------------------------ */

static redisReply *cmd(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static long long cmd_int(redisContext *rc, const char *fmt, const char *arg)
{
    redisReply *r = cmd(rc, fmt, arg);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void create(redisContext *rc, const struct ks_new *req, int64_t now, struct ks_key *k,
                   char secret[APIKEY_SECRET_MAX])
{
    char *err = NULL;
    enum ks_result r = ksr_create(rc, P, req, now, k, secret, &err);
    if (r != KS_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, KS_OK);
    assert_null(err);
}

static struct seen active_at(redisContext *rc, int64_t now)
{
    struct seen seen = {0};
    char *err = NULL;
    assert_int_equal(ksr_each_active(rc, P, now, collect, &seen, &err), KS_OK);
    assert_null(err);
    return seen;
}

static bool mem_has(const char *data, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(data + i, needle, nl) == 0)
            return true;
    return false;
}

/* Every key name under any prefix (KEYS: the test database is tiny). */
static redisReply *all_keys(redisContext *rc)
{
    redisReply *r = cmd(rc, "KEYS *");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    return r;
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
    create(f->rc, &req, T0, &k, secret);
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
    assert_int_equal(k.revoked_ms, 0);
    assert_int_equal(k.rotated_until_ms, 0);
    assert_int_equal(k.state, KS_ACTIVE);
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(secret, prefix);
    assert_string_equal(k.prefix, prefix);

    struct ks_key got;
    char *err = NULL;
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_memory_equal(&got, &k, sizeof(k));
    assert_int_equal(ksr_get(f->rc, P, "key_0000000000000000", &got, &err), KS_NOT_FOUND);
    assert_null(err);

    /* Every field round-trips, the extremes too. */
    struct ks_key k2;
    char s2[APIKEY_SECRET_MAX];
    struct ks_new req2 = new_req("free");
    req2.name = "na\"me\nwith \xc3\xa9 bytes";
    req2.owner = NULL;
    req2.quota_monthly = 0;
    req2.quota_daily = INT64_MAX;
    req2.expires_ms = T0 + 7 * DAY;
    create(f->rc, &req2, T0 + 1, &k2, s2);
    assert_string_not_equal(k.id, k2.id);
    assert_string_not_equal(secret, s2);
    assert_memory_equal(s2, "sk_live_", 8);
    assert_string_equal(k2.owner, "");
    assert_int_equal(k2.quota_monthly, 0);
    assert_true(k2.quota_daily == INT64_MAX);
    assert_int_equal(k2.expires_ms, T0 + 7 * DAY);
    assert_int_equal(ksr_get(f->rc, P, k2.id, &got, &err), KS_OK);
    assert_memory_equal(&got, &k2, sizeof(k2));
    assert_string_equal(got.name, "na\"me\nwith \xc3\xa9 bytes");

    /* A third in the same millisecond as the second: still newest first. */
    struct ks_key k3;
    char s3[APIKEY_SECRET_MAX];
    create(f->rc, &req2, T0 + 1, &k3, s3);

    struct ks_key *all;
    int n;
    assert_int_equal(ksr_list(f->rc, P, &all, &n, &err), KS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(all[0].id, k3.id);
    assert_string_equal(all[1].id, k2.id);
    assert_string_equal(all[2].id, k.id);
    assert_memory_equal(&all[2], &k, sizeof(k));
    free(all);

    struct seen seen = active_at(f->rc, T0 + 2);
    assert_int_equal(seen.keys, 3);
    assert_true(seen_has(&seen, secret));
    assert_true(seen_has(&seen, s2));
    for (int i = 0; i < seen.secrets; i++)
        assert_int_equal(seen.until[i], 0);

    /* Refused: no tier, bad env, oversize name. Nothing is written. */
    struct ks_new bad = new_req(NULL);
    assert_int_equal(ksr_create(f->rc, P, &bad, T0, &got, s2, &err), KS_ERROR);
    assert_non_null(err);
    assert_string_equal(s2, "");
    free(err);
    err = NULL;
    bad = new_req("pro");
    bad.env = "LIVE";
    assert_int_equal(ksr_create(f->rc, P, &bad, T0, &got, s2, &err), KS_ERROR);
    free(err);
    err = NULL;
    char big[KS_NAME_MAX + 1];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bad = new_req("pro");
    bad.name = big;
    assert_int_equal(ksr_create(f->rc, P, &bad, T0, &got, s2, &err), KS_ERROR);
    free(err);
    err = NULL;
    assert_int_equal(ksr_list(f->rc, P, &all, &n, &err), KS_OK);
    assert_int_equal(n, 3);
    free(all);

    /* Another prefix is another store. */
    assert_int_equal(ksr_list(f->rc, "other:", &all, &n, &err), KS_OK);
    assert_int_equal(n, 0);
    free(all);
    assert_int_equal(ksr_get(f->rc, "other:", k.id, &got, &err), KS_NOT_FOUND);
}

/* ---- nothing secret in Redis, names as documented ----------------------- */

static bool name_documented(const char *name)
{
    static const char *const shapes[] = {
        "key:", "secret:", "keysecrets:", "refresh:", "family:", NULL};
    if (strncmp(name, P, strlen(P)) != 0)
        return false;
    name += strlen(P);
    if (strcmp(name, "keys") == 0 || strcmp(name, "keys:version") == 0)
        return true;
    for (int i = 0; shapes[i]; i++) {
        size_t n = strlen(shapes[i]);
        if (strncmp(name, shapes[i], n) == 0 && name[n])
            return true;
    }
    return false;
}

static void test_secret_not_in_redis(void **state)
{
    struct fixture *f = *state;
    /* The rate limiter's keys share the prefix and must survive. */
    freeReplyObject(cmd(f->rc, "SET " P "r:x:{key_1} 5"));
    freeReplyObject(cmd(f->rc, "HSET " P "gateways g1 1"));

    struct ks_new req = new_req("pro");
    struct ks_key k;
    char secret[APIKEY_SECRET_MAX], rotated[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, secret);
    char *err = NULL;
    assert_int_equal(ksr_rotate(f->rc, P, k.id, HOUR, T0 + 1, &k, rotated, &err), KS_OK);
    char rt[KS_REFRESH_MAX], rt2[KS_REFRESH_MAX];
    struct ks_key got;
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, DAY, T0, rt, &err), KS_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt, DAY, T0 + 2, &got, rt2, &err), KS_SPENT_OK);
    ksr_touch(f->rc, P, k.id, T0 + 3);
    assert_int_equal(ksr_revoke(f->rc, P, "key_nope", T0, &got, &err), KS_NOT_FOUND);

    const char *secrets[] = {secret, rotated, rt, rt2};
    redisReply *keys = all_keys(f->rc);
    bool saw_prefix = false;
    int ours = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *name = keys->element[i];
        if (strcmp(name->str, P "r:x:{key_1}") == 0 || strcmp(name->str, P "gateways") == 0)
            continue;
        ours++;
        if (!name_documented(name->str))
            fail_msg("undocumented key %s", name->str);
        /* The serialized value... */
        redisReply *dump = cmd(f->rc, "DUMP %b", name->str, name->len);
        assert_int_equal(dump->type, REDIS_REPLY_STRING);
        /* ...and the logical one (DUMP may compress). */
        redisReply *type = cmd(f->rc, "TYPE %b", name->str, name->len);
        const char *t = type->str;
        redisReply *val = strcmp(t, "string") == 0 ? cmd(f->rc, "GET %b", name->str, name->len)
                          : strcmp(t, "hash") == 0 ? cmd(f->rc, "HGETALL %b", name->str, name->len)
                          : strcmp(t, "set") == 0
                              ? cmd(f->rc, "SMEMBERS %b", name->str, name->len)
                              : cmd(f->rc, "ZRANGE %b 0 -1 WITHSCORES", name->str, name->len);
        for (int s = 0; s < 4; s++) {
            const char *b62 = strrchr(secrets[s], '_') + 1;
            assert_false(mem_has(name->str, name->len, secrets[s]));
            assert_false(mem_has(name->str, name->len, b62));
            assert_false(mem_has(dump->str, dump->len, secrets[s]));
            assert_false(mem_has(dump->str, dump->len, b62));
            if (val->type == REDIS_REPLY_STRING) {
                assert_false(mem_has(val->str, val->len, b62));
            } else {
                assert_int_equal(val->type, REDIS_REPLY_ARRAY);
                for (size_t j = 0; j < val->elements; j++) {
                    const redisReply *e = val->element[j];
                    assert_false(mem_has(e->str, e->len, b62));
                    saw_prefix |= mem_has(e->str, e->len, k.prefix);
                }
            }
        }
        freeReplyObject(val);
        freeReplyObject(type);
        freeReplyObject(dump);
    }
    freeReplyObject(keys);
    /* key, keys, 2 secrets, keysecrets, version, 2 refresh, family */
    assert_int_equal(ours, 9);
    assert_true(saw_prefix); /* the search does find what is there */

    /* Revocation cleans the secrets up; the limiter's keys are untouched. */
    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 4, &got, &err), KS_OK);
    assert_int_equal(cmd_int(f->rc, "EXISTS " P "keysecrets:%s", k.id), 0);
    keys = cmd(f->rc, "KEYS " P "secret:*");
    assert_int_equal(keys->elements, 0);
    freeReplyObject(keys);
    assert_int_equal(cmd_int(f->rc, "EXISTS %s", P "r:x:{key_1}"), 1);
    assert_int_equal(cmd_int(f->rc, "EXISTS %s", P "gateways"), 1);
}

/* ---- rotate, revoke, expire --------------------------------------------- */

static void test_rotate(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    req.env = "test";
    struct ks_key k, r;
    char s1[APIKEY_SECRET_MAX], s2[APIKEY_SECRET_MAX], s3[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s1);
    char *err = NULL;

    /* Rotate at T0+10 with an hour of grace: both until T0+10+1h. */
    assert_int_equal(ksr_rotate(f->rc, P, k.id, HOUR, T0 + 10, &r, s2, &err), KS_OK);
    assert_true(apikey_shape_ok(s2, strlen(s2)));
    assert_memory_equal(s2, "sk_test_", 8); /* the env is kept */
    assert_string_not_equal(s1, s2);
    assert_int_equal(r.rotated_until_ms, T0 + 10 + HOUR);
    char prefix[APIKEY_PREFIX_MAX];
    apikey_visible_prefix(s2, prefix);
    assert_string_equal(r.prefix, prefix);
    struct ks_key got;
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_memory_equal(&got, &r, sizeof(r));

    struct seen seen = active_at(f->rc, T0 + 20);
    assert_int_equal(seen.keys, 1);
    assert_int_equal(seen.secrets, 2);
    assert_true(seen_has(&seen, s1));
    assert_true(seen_has(&seen, s2));
    for (int i = 0; i < 2; i++)
        assert_true(seen.until[i] == 0 || seen.until[i] == T0 + 10 + HOUR);
    seen = active_at(f->rc, T0 + 10 + HOUR - 1);
    assert_int_equal(seen.secrets, 2);
    seen = active_at(f->rc, T0 + 10 + HOUR);
    assert_int_equal(seen.secrets, 1);
    assert_true(seen_has(&seen, s2));
    assert_false(seen_has(&seen, s1));

    /* The old secret has a TTL, the new one none. */
    char hex[2 * APIKEY_HASH_LEN + 1];
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash(s1, strlen(s1), h);
    for (int i = 0; i < APIKEY_HASH_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    assert_true(cmd_int(f->rc, "PTTL " P "secret:%s", hex) > 0);
    apikey_hash(s2, strlen(s2), h);
    for (int i = 0; i < APIKEY_HASH_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    assert_int_equal(cmd_int(f->rc, "PTTL " P "secret:%s", hex), -1);

    /* Rotate again during the grace with a longer one: s1 cannot outlive
     * its first grace; s2 gets the new one. Then without grace: only s3. */
    assert_int_equal(ksr_rotate(f->rc, P, k.id, 2 * HOUR, T0 + 20, &r, s3, &err), KS_OK);
    seen = active_at(f->rc, T0 + 30);
    assert_int_equal(seen.secrets, 3);
    seen = active_at(f->rc, T0 + 10 + HOUR);
    assert_int_equal(seen.secrets, 2);
    assert_true(seen_has(&seen, s2) && seen_has(&seen, s3));
    seen = active_at(f->rc, T0 + 20 + 2 * HOUR);
    assert_int_equal(seen.secrets, 1);
    assert_true(seen_has(&seen, s3));

    /* A rotation after the first grace drops s1 for good. */
    char s4[APIKEY_SECRET_MAX];
    assert_int_equal(ksr_rotate(f->rc, P, k.id, HOUR, T0 + 11 + HOUR, &r, s4, &err), KS_OK);
    assert_int_equal(cmd_int(f->rc, "SCARD " P "keysecrets:%s", k.id), 3);
    seen = active_at(f->rc, T0 + 12 + HOUR);
    assert_int_equal(seen.secrets, 3);
    assert_false(seen_has(&seen, s1));

    assert_int_equal(ksr_rotate(f->rc, P, k.id, 0, T0 + 40 + HOUR, &r, s1, &err), KS_OK);
    assert_int_equal(r.rotated_until_ms, 0);
    seen = active_at(f->rc, T0 + 41 + HOUR);
    assert_int_equal(seen.secrets, 1);
    assert_true(seen_has(&seen, s1)); /* s1 now holds the newest */
    assert_false(seen_has(&seen, s3));
    assert_int_equal(cmd_int(f->rc, "SCARD " P "keysecrets:%s", k.id), 1);

    assert_int_equal(ksr_rotate(f->rc, P, "key_nope", 0, T0, &r, s2, &err), KS_NOT_FOUND);
    assert_string_equal(s2, "");
    assert_null(err);
}

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, r, other;
    char s1[APIKEY_SECRET_MAX], s2[APIKEY_SECRET_MAX], so[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s1);
    create(f->rc, &req, T0, &other, so);
    char *err = NULL;
    assert_int_equal(ksr_rotate(f->rc, P, k.id, HOUR, T0 + 1, &r, s2, &err), KS_OK);
    char rt[KS_REFRESH_MAX], spent[KS_REFRESH_MAX], next[KS_REFRESH_MAX];
    struct ks_key got;
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, DAY, T0 + 1, spent, &err), KS_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, spent, DAY, T0 + 2, &got, rt, &err), KS_SPENT_OK);

    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 5, &r, &err), KS_OK);
    assert_int_equal(r.state, KS_REVOKED);
    assert_int_equal(r.revoked_ms, T0 + 5);
    assert_int_equal(r.rotated_until_ms, 0);
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_memory_equal(&got, &r, sizeof(r));
    struct seen seen = active_at(f->rc, T0 + 6);
    assert_int_equal(seen.keys, 1); /* only the other key */
    assert_false(seen_has(&seen, s1));
    assert_false(seen_has(&seen, s2));
    assert_true(seen_has(&seen, so));

    /* Its refresh tokens are dead: the live one is invalid, and a replay
     * of the spent one is too (revoked before reused, as in SQLite). */
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt, DAY, T0 + 6, &got, next, &err),
                     KS_SPENT_INVALID);
    assert_null(err);
    assert_string_equal(next, "");
    assert_int_equal(ksr_refresh_spend(f->rc, P, spent, DAY, T0 + 6, &got, next, &err),
                     KS_SPENT_INVALID);

    /* Idempotent; keeps the first revocation time; no new version. Not
     * rotatable. */
    int64_t v = ksr_version(f->rc, P);
    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 9, &r, &err), KS_OK);
    assert_int_equal(r.revoked_ms, T0 + 5);
    assert_int_equal(ksr_version(f->rc, P), v);
    assert_int_equal(ksr_rotate(f->rc, P, k.id, 0, T0 + 9, &r, s2, &err), KS_NOT_FOUND);
    assert_string_equal(s2, "");
    assert_int_equal(ksr_revoke(f->rc, P, "key_nope", T0, &r, &err), KS_NOT_FOUND);
    assert_null(err);
}

static void test_expiry(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    req.expires_ms = T0 + DAY;
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s);
    assert_int_equal(k.expires_ms, T0 + DAY);
    assert_int_equal(active_at(f->rc, T0 + DAY - 1).keys, 1);
    assert_int_equal(active_at(f->rc, T0 + DAY).keys, 0);

    /* A refresh token outliving the key is worthless after it. */
    char *err = NULL;
    char rt[KS_REFRESH_MAX], next[KS_REFRESH_MAX];
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, 2 * DAY, T0, rt, &err), KS_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt, DAY, T0 + DAY, &got, next, &err),
                     KS_SPENT_INVALID);
    assert_null(err);
    /* ...but fine before (and the expired key is still listed). */
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt, DAY, T0 + DAY - 1, &got, next, &err),
                     KS_SPENT_OK);
    struct ks_key *all;
    int n;
    assert_int_equal(ksr_list(f->rc, P, &all, &n, &err), KS_OK);
    assert_int_equal(n, 1);
    free(all);
}

/* ---- refresh tokens ----------------------------------------------------- */

static void test_refresh(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s);
    char *err = NULL;
    char rt1[KS_REFRESH_MAX], rt2[KS_REFRESH_MAX], rt3[KS_REFRESH_MAX], other[KS_REFRESH_MAX];
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, HOUR, T0, rt1, &err), KS_OK);
    assert_int_equal(strlen(rt1), 3 + APIKEY_B62_LEN);
    assert_memory_equal(rt1, "rt_", 3);
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, HOUR, T0, other, &err), KS_OK);

    /* Spend: the key comes back with a successor. */
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt1, HOUR, T0 + 10, &got, rt2, &err), KS_SPENT_OK);
    assert_memory_equal(&got, &k, sizeof(k));
    assert_memory_equal(rt2, "rt_", 3);
    assert_string_not_equal(rt1, rt2);

    /* The successor is spendable once... */
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt2, HOUR, T0 + 20, &got, rt3, &err), KS_SPENT_OK);
    /* ...and a replay of rt1 revokes the family: rt3 dies with it. */
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt1, HOUR, T0 + 30, &got, rt2, &err),
                     KS_SPENT_REUSED);
    assert_string_equal(rt2, "");
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt3, HOUR, T0 + 31, &got, rt2, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt1, HOUR, T0 + 32, &got, rt2, &err),
                     KS_SPENT_INVALID); /* revoked now: nothing more to revoke */

    /* Another family is untouched; expiry; garbage. */
    assert_int_equal(ksr_refresh_spend(f->rc, P, other, HOUR, T0 + HOUR, &got, rt2, &err),
                     KS_SPENT_INVALID); /* expired at T0 + HOUR */
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, NULL, HOUR, T0, other, &err), KS_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, other, HOUR, T0 + HOUR - 1, &got, rt2, &err),
                     KS_SPENT_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, "rt_nope", HOUR, T0, &got, rt3, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ksr_refresh_spend(f->rc, P, "rt_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
                                       HOUR, T0, &got, rt3, &err),
                     KS_SPENT_INVALID);
    assert_int_equal(ksr_refresh_spend(f->rc, P, s, HOUR, T0, &got, rt3, &err), KS_SPENT_INVALID);
    assert_null(err);

    /* Issuing into a given family; for a key that does not exist. */
    assert_int_equal(ksr_refresh_issue(f->rc, P, k.id, "fam1", HOUR, T0, rt3, &err), KS_OK);
    assert_int_equal(cmd_int(f->rc, "SCARD %s", P "family:fam1"), 1);
    assert_int_equal(ksr_refresh_issue(f->rc, P, "key_nope", NULL, HOUR, T0, rt3, &err), KS_ERROR);
    assert_non_null(err);
    assert_non_null(strstr(err, "redis: "));
    assert_null(strchr(err, '\n'));
    assert_string_equal(rt3, "");
    free(err);
    err = NULL;

    /* Every refresh token and family has a TTL (memory stays bounded),
     * about its expiry plus the margin. */
    redisReply *keys = cmd(f->rc, "KEYS " P "*");
    int tokens = 0, families = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        const char *name = keys->element[i]->str;
        bool tok = strncmp(name, P "refresh:", strlen(P "refresh:")) == 0;
        bool fam = strncmp(name, P "family:", strlen(P "family:")) == 0;
        if (!tok && !fam)
            continue;
        tokens += tok;
        families += fam;
        long long pttl = cmd_int(f->rc, "PTTL %s", name);
        assert_true(pttl > 0);
        assert_true(pttl <= 3 * HOUR + 1000); /* the last successor: T0 + 2h + margin */
    }
    freeReplyObject(keys);
    assert_int_equal(tokens, 7);   /* rt1..rt3, both "other"s, a successor, fam1's */
    assert_int_equal(families, 4); /* rt1's, the two "other"s, fam1 */
}

/* ---- touch -------------------------------------------------------------- */

static void test_touch(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, k2, got;
    char s[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s);
    create(f->rc, &req, T0, &k2, s);
    char *err = NULL;
    ksr_touch(f->rc, P, k.id, T0 + 100);
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 100);
    ksr_touch(f->rc, P, k.id, T0 + 50); /* never backwards */
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 100);
    ksr_touch(f->rc, P, "key_nope", T0); /* harmless, creates nothing */
    assert_int_equal(cmd_int(f->rc, "EXISTS %s", P "key:key_nope"), 0);

    const char *ids[] = {k.id, k2.id, "key_nope"};
    int64_t when[] = {T0 + 200, T0 + 300, T0};
    ksr_touch_many(f->rc, P, ids, when, 3);
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 200);
    assert_int_equal(ksr_get(f->rc, P, k2.id, &got, &err), KS_OK);
    assert_int_equal(got.last_used_ms, T0 + 300);
    assert_int_equal(cmd_int(f->rc, "EXISTS %s", P "key:key_nope"), 0);
    assert_null(err);
}

/* ---- version and events ------------------------------------------------- */

/* The next message on subscribed connection <sub>: its JSON's "change"
 * and "id" are checked. */
static void expect_event(redisContext *sub, const char *id, const char *change)
{
    redisReply *m = NULL;
    assert_int_equal(redisGetReply(sub, (void **)&m), REDIS_OK);
    assert_non_null(m);
    assert_int_equal(m->type, REDIS_REPLY_ARRAY);
    assert_int_equal(m->elements, 3);
    assert_string_equal(m->element[0]->str, "message");
    assert_string_equal(m->element[1]->str, P "events");
    json_error_t jerr;
    json_t *doc = json_loadb(m->element[2]->str, m->element[2]->len, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "keys");
    assert_string_equal(json_string_value(json_object_get(doc, "id")), id);
    assert_string_equal(json_string_value(json_object_get(doc, "change")), change);
    json_decref(doc);
    freeReplyObject(m);
}

static void test_version_events(void **state)
{
    struct fixture *f = *state;
    redisContext *sub = test_redis_connect(f->port);
    assert_non_null(sub);
    redisReply *r = cmd(sub, "SUBSCRIBE %s", P "events");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    assert_int_equal(ksr_version(f->rc, P), 0);
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    char *err = NULL;
    create(f->rc, &req, T0, &k, s);
    assert_int_equal(ksr_version(f->rc, P), 1);
    expect_event(sub, k.id, "created");
    assert_int_equal(ksr_rotate(f->rc, P, k.id, HOUR, T0 + 1, &got, s, &err), KS_OK);
    assert_int_equal(ksr_version(f->rc, P), 2);
    expect_event(sub, k.id, "rotated");
    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 2, &got, &err), KS_OK);
    assert_int_equal(ksr_version(f->rc, P), 3);
    expect_event(sub, k.id, "revoked");

    /* Failures change nothing: no version, no event. */
    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 3, &got, &err), KS_OK);
    assert_int_equal(ksr_rotate(f->rc, P, k.id, 0, T0 + 3, &got, s, &err), KS_NOT_FOUND);
    assert_int_equal(ksr_revoke(f->rc, P, "key_nope", T0 + 3, &got, &err), KS_NOT_FOUND);
    assert_int_equal(ksr_version(f->rc, P), 3);
    /* Nor do last-use times and refresh tokens (no keyring changes). */
    struct ks_key k2;
    create(f->rc, &req, T0 + 4, &k2, s);
    expect_event(sub, k2.id, "created");
    ksr_touch(f->rc, P, k2.id, T0 + 5);
    char rt[KS_REFRESH_MAX], next[KS_REFRESH_MAX];
    assert_int_equal(ksr_refresh_issue(f->rc, P, k2.id, NULL, HOUR, T0, rt, &err), KS_OK);
    assert_int_equal(ksr_refresh_spend(f->rc, P, rt, HOUR, T0 + 6, &got, next, &err), KS_SPENT_OK);
    assert_int_equal(ksr_version(f->rc, P), 4);
    /* The next event is the next key change's: nothing was sent between. */
    assert_int_equal(ksr_revoke(f->rc, P, k2.id, T0 + 7, &got, &err), KS_OK);
    expect_event(sub, k2.id, "revoked");
    assert_null(err);
    redisFree(sub);

    /* A version that is not a number reads as -1. */
    freeReplyObject(cmd(f->rc, "SET %s x", P "keys:version"));
    assert_int_equal(ksr_version(f->rc, P), -1);
}

/* ksr_update: only the fields named are written (a last-use time written
 * meanwhile stays), in one script that bumps the version and publishes
 * "updated"; an unknown or revoked key, or a refused value, changes nothing
 * and says nothing. */
static void test_update(void **state)
{
    struct fixture *f = *state;
    redisContext *sub = test_redis_connect(f->port);
    assert_non_null(sub);
    redisReply *r = cmd(sub, "SUBSCRIBE %s", P "events");
    freeReplyObject(r);

    struct ks_new req = new_req("free");
    req.scopes = "read";
    req.limits = "10/min";
    req.quota_monthly = 1000;
    struct ks_key k, got, again;
    char s[APIKEY_SECRET_MAX];
    char *err = NULL;
    create(f->rc, &req, T0, &k, s);
    expect_event(sub, k.id, "created");
    ksr_touch(f->rc, P, k.id, T0 + 3);
    int64_t v = ksr_version(f->rc, P);

    struct ks_update u = {.tier = "pro", .set_quota_daily = true, .quota_daily = 50};
    assert_int_equal(ksr_update(f->rc, P, k.id, &u, &got, &err), KS_OK);
    assert_null(err);
    assert_int_equal(ksr_version(f->rc, P), v + 1);
    expect_event(sub, k.id, "updated");
    assert_string_equal(got.tier, "pro");
    assert_int_equal(got.quota_daily, 50);
    assert_int_equal(got.quota_monthly, 1000);
    assert_string_equal(got.name, "ci");
    assert_string_equal(got.scopes, "read");
    assert_string_equal(got.limits, "10/min");
    assert_string_equal(got.prefix, k.prefix);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.last_used_ms, T0 + 3);
    assert_int_equal(ksr_get(f->rc, P, k.id, &again, &err), KS_OK);
    assert_memory_equal(&again, &got, sizeof(got));
    struct seen seen = active_at(f->rc, T0 + 4);
    assert_int_equal(seen.keys, 1);
    assert_true(seen_has(&seen, s));

    /* Clearing: "" and -1 (none: the tier's); stored as create stores them. */
    u = (struct ks_update){
        .owner = "", .limits = "", .set_quota_monthly = true, .quota_monthly = -1};
    assert_int_equal(ksr_update(f->rc, P, k.id, &u, &got, &err), KS_OK);
    expect_event(sub, k.id, "updated");
    assert_string_equal(got.owner, "");
    assert_string_equal(got.limits, "");
    assert_int_equal(got.quota_monthly, -1);
    assert_int_equal(got.quota_daily, 50);
    char kk[64];
    snprintf(kk, sizeof(kk), P "key:%s", k.id);
    r = cmd(f->rc, "HGET %s quota_monthly", kk);
    assert_string_equal(r->str, "-1");
    freeReplyObject(r);
    u = (struct ks_update){.set_quota_daily = true, .quota_daily = KS_QUOTA_MAX};
    assert_int_equal(ksr_update(f->rc, P, k.id, &u, &got, &err), KS_OK);
    expect_event(sub, k.id, "updated");
    assert_true(got.quota_daily == KS_QUOTA_MAX);

    /* Nothing happens for a refused value, an unknown or a revoked key. */
    v = ksr_version(f->rc, P);
    struct ks_update bad[] = {
        {.tier = ""},
        {.set_quota_daily = true, .quota_daily = 0},
        {.set_quota_monthly = true, .quota_monthly = KS_QUOTA_MAX + 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ksr_update(f->rc, P, k.id, &bad[i], &again, &err), KS_ERROR);
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    u = (struct ks_update){.tier = "free"};
    assert_int_equal(ksr_update(f->rc, P, "key_nope", &u, &again, &err), KS_NOT_FOUND);
    assert_int_equal(ksr_version(f->rc, P), v);
    assert_int_equal(ksr_revoke(f->rc, P, k.id, T0 + 5, &got, &err), KS_OK);
    expect_event(sub, k.id, "revoked");
    assert_int_equal(ksr_update(f->rc, P, k.id, &u, &again, &err), KS_NOT_FOUND);
    assert_null(err);
    assert_int_equal(ksr_version(f->rc, P), v + 1);
    assert_int_equal(ksr_get(f->rc, P, k.id, &again, &err), KS_OK);
    assert_string_equal(again.tier, "pro");
    /* The next event is the next change's: the refusals sent none. */
    struct ks_key k2;
    create(f->rc, &req, T0 + 6, &k2, s);
    expect_event(sub, k2.id, "created");
    redisFree(sub);

    /* Through ks_open's ops, as the CLI and the gateway call it. */
    struct ks_open_opts o = {
        .backend = KS_REDIS, .redis = {.host = "127.0.0.1", .port = f->port}, .redis_prefix = P};
    struct ks_db db;
    assert_int_equal(ks_open(&db, &o, &err), 0);
    ks_changed(&db);
    u = (struct ks_update){.name = "renamed"};
    assert_int_equal(ks_update(&db, k2.id, &u, &got, &err), KS_OK);
    assert_string_equal(got.name, "renamed");
    assert_true(ks_changed(&db));
    ks_close(&db);
}

/* ---- ks_open ------------------------------------------------------------ */

/* ks_open on KS_REDIS opts: the store the ksr_* calls see under the same
 * prefix, ks_changed following its version; a connection lost under it is
 * made again on the next call; no server fails the open. */
static void test_open_opts(void **state)
{
    struct fixture *f = *state;
    struct ks_open_opts o = {.backend = KS_REDIS, .redis_prefix = P};
    snprintf(o.redis.host, sizeof(o.redis.host), "127.0.0.1");
    o.redis.port = f->port;
    struct ks_db ks;
    char *err = NULL;
    assert_int_equal(ks_open(&ks, &o, &err), 0);
    assert_null(err);
    assert_true(ks_changed(&ks)); /* the first call */
    assert_false(ks_changed(&ks));
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX];
    create(f->rc, &req, T0, &k, s);
    assert_true(ks_changed(&ks));
    assert_false(ks_changed(&ks));
    assert_int_equal(ks_get(&ks, k.id, &got, &err), KS_OK);
    assert_string_equal(got.id, k.id);
    assert_int_equal(ks_create(&ks, &req, T0 + 1, &got, s, &err), KS_OK);
    assert_int_equal(ksr_get(f->rc, P, got.id, &k, &err), KS_OK);
    assert_null(err);

    /* Every connection but the fixture's killed: one call fails, the next
     * reconnects. */
    freeReplyObject(cmd(f->rc, "CLIENT KILL TYPE normal SKIPME yes"));
    assert_int_equal(ks_get(&ks, k.id, &got, &err), KS_UNAVAILABLE); /* broke under the call */
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_int_equal(ks_get(&ks, k.id, &got, &err), KS_OK);
    assert_null(err);
    ks_close(&ks);
    ks_close(&ks); /* idempotent */

    /* No server: the open succeeds (a gateway must start while Redis is
     * away), and calls say the store cannot be reached, with why. */
    o.redis.port = test_free_port();
    assert_int_equal(ks_open(&ks, &o, &err), 0);
    assert_null(err);
    assert_int_equal(ks_get(&ks, k.id, &got, &err), KS_UNAVAILABLE);
    char want[96];
    snprintf(want, sizeof(want),
             "the key store (redis 127.0.0.1:%d) cannot be reached: ", o.redis.port);
    assert_non_null(err);
    assert_memory_equal(err, want, strlen(want));
    free(err);
    err = NULL;
    char epoch[KS_EPOCH_MAX];
    assert_int_equal(ks_epoch(&ks, epoch, &err), KS_UNAVAILABLE);
    free(err);
    err = NULL;
    assert_int_equal(ks_create(&ks, &req, T0, &got, s, &err), KS_UNAVAILABLE);
    assert_string_equal(s, "");
    free(err);
    err = NULL;
    assert_true(ks_changed(&ks)); /* an error says "changed": a reload is cheap */
    assert_null(ks_advice(&ks));
    ks_close(&ks);
}

/* ---- import and epoch --------------------------------------------------- */

static void test_put_epoch(void **state)
{
    struct fixture *f = *state;
    struct ks_new req = new_req("pro");
    struct ks_key k, got;
    char s[APIKEY_SECRET_MAX], *err = NULL;
    create(f->rc, &req, T0, &k, s);
    struct seen before = active_at(f->rc, T0);
    assert_int_equal(before.secrets, 1);

    /* the epoch: made once, then stable */
    char e1[KS_EPOCH_MAX], e2[KS_EPOCH_MAX];
    assert_int_equal(ksr_epoch(f->rc, P, e1, &err), KS_OK);
    assert_int_equal(strlen(e1), 32);
    assert_int_equal(ksr_epoch(f->rc, P, e2, &err), KS_OK);
    assert_string_equal(e1, e2);

    /* the same key again: nothing changes; other data: a conflict */
    struct ks_secret sec = {.valid_until_ms = 0};
    memcpy(sec.hash, before.hash[0], APIKEY_HASH_LEN);
    assert_int_equal(ksr_put(f->rc, P, &k, &sec, 1, false, &err), KS_OK);
    struct ks_key other = k;
    snprintf(other.tier, sizeof(other.tier), "free");
    assert_int_equal(ksr_put(f->rc, P, &other, &sec, 1, false, &err), KS_CONFLICT);
    assert_non_null(strstr(err, "exists with other data"));
    free(err);
    err = NULL;

    /* Redis loses everything: the epoch is another; the key comes back
     * whole from a put, and its secret works again */
    freeReplyObject(cmd(f->rc, "FLUSHALL"));
    assert_int_equal(active_at(f->rc, T0).keys, 0);
    assert_int_equal(ksr_epoch(f->rc, P, e2, &err), KS_OK);
    assert_string_not_equal(e1, e2);
    assert_int_equal(ksr_put(f->rc, P, &k, &sec, 1, false, &err), KS_OK);
    assert_null(err);
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_true(ks_same_key(&k, &got));
    struct seen after = active_at(f->rc, T0);
    assert_int_equal(after.keys, 1);
    assert_true(seen_has(&after, s));
    /* forced: replaced with the other data */
    assert_int_equal(ksr_put(f->rc, P, &other, &sec, 1, true, &err), KS_OK);
    assert_int_equal(ksr_get(f->rc, P, k.id, &got, &err), KS_OK);
    assert_string_equal(got.tier, "free");
    /* the old epoch restored */
    assert_int_equal(ksr_set_epoch(f->rc, P, e1, &err), KS_OK);
    assert_int_equal(ksr_epoch(f->rc, P, e2, &err), KS_OK);
    assert_string_equal(e1, e2);
    assert_null(err);
    /* no persistence (the test server's) and keys: advice */
    char *advice = ksr_advice(f->rc, P, &(struct rds_config){.host = "h", .port = 1});
    if (advice) /* CONFIG may be refused by a managed Redis; ours allows it */
        assert_non_null(strstr(advice, "persists nothing"));
    free(advice);
}

/* ---- errors ------------------------------------------------------------- */

static void test_errors(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    struct ks_key *all, got;
    int n;
    char s[APIKEY_SECRET_MAX];
    struct ks_new req = new_req("pro");

    /* The index under a wrong type: an error reply, one line. */
    freeReplyObject(cmd(f->rc, "SET %s x", P "keys"));
    assert_int_equal(ksr_list(f->rc, P, &all, &n, &err), KS_ERROR);
    assert_non_null(err);
    assert_memory_equal(err, "redis: ", 7);
    assert_null(strchr(err, '\n'));
    assert_null(all);
    assert_int_equal(n, 0);
    free(err);
    err = NULL;
    assert_int_equal(ksr_create(f->rc, P, &req, T0, &got, s, &err), KS_ERROR);
    assert_string_equal(s, "");
    assert_non_null(err);
    free(err);
    err = NULL;

    /* No server at all. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    redisContext *dead = redisConnectWithTimeout("127.0.0.1", test_free_port(), tv);
    assert_non_null(dead);
    assert_true(dead->err != 0);
    assert_int_equal(ksr_get(dead, P, "key_x", &got, &err), KS_ERROR);
    assert_non_null(err);
    assert_memory_equal(err, "redis: ", 7);
    free(err);
    err = NULL;
    char rt[KS_REFRESH_MAX];
    assert_int_equal(ksr_refresh_spend(dead, P, "rt_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
                                       HOUR, T0, &got, rt, &err),
                     KS_SPENT_INVALID);
    assert_non_null(err);
    assert_string_equal(rt, "");
    free(err);
    err = NULL;
    assert_int_equal(ksr_version(dead, P), -1);
    ksr_touch(dead, P, "key_x", T0); /* harmless */
    redisFree(dead);
    assert_int_equal(ksr_get(NULL, P, "key_x", &got, &err), KS_ERROR);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_create_get_list, setup),
        cmocka_unit_test_setup(test_secret_not_in_redis, setup),
        cmocka_unit_test_setup(test_rotate, setup),
        cmocka_unit_test_setup(test_revoke, setup),
        cmocka_unit_test_setup(test_expiry, setup),
        cmocka_unit_test_setup(test_refresh, setup),
        cmocka_unit_test_setup(test_touch, setup),
        cmocka_unit_test_setup(test_version_events, setup),
        cmocka_unit_test_setup(test_update, setup),
        cmocka_unit_test_setup(test_open_opts, setup),
        cmocka_unit_test_setup(test_put_epoch, setup),
        cmocka_unit_test_setup(test_errors, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
