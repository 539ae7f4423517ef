/* Abuse bans on Redis (abuse/store_redis.c, abuse/count_redis.c), against
 * a real redis-server started for the group on a free loopback port: the
 * ban store's round trip and its compare-and-set (two gateways changing one
 * identity's record at once), and the violation scripts (the count, the
 * crossing that forgets the count, the bounded index, the top list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_support.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abuse/count_redis.c" /* the scripts */
#include "abuse/store.h"

#define P "ab:"
#define H INT64_C(3600000)
#define D (24 * H)

struct fixture {
    pid_t pid;
    int port;
    redisContext *rc;
};

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
    redisReply *r = redisCommand(f->rc, "FLUSHALL");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static struct abuse_store *open_store(struct fixture *f, struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->store.backend = CFG_BACKEND_REDIS;
    snprintf(cfg->store.redis.conn.host, sizeof cfg->store.redis.conn.host, "127.0.0.1");
    cfg->store.redis.conn.port = f->port;
    cfg->store.redis.prefix = P;
    char *err = NULL;
    struct abuse_store *s = abuse_store_open(cfg, &err);
    assert_non_null(s);
    return s;
}

static void test_store_round_trip_and_cas(void **state)
{
    struct fixture *f = *state;
    struct config cfg;
    struct abuse_store *a = open_store(f, &cfg), *b = open_store(f, &cfg);
    char why[256];
    struct abuse_policy p = {2 * H, 2, 7 * D, 7 * D};
    int64_t now = INT64_C(1700000000000);
    struct abuse_ban first, got, b_view, second, other;
    uint64_t v0, v1;
    assert_int_equal(a->ops->version(a, &v0), 0);
    assert_true(abuse_ban_next(NULL, &p, ABUSE_SRC_AUTO, "ip:198.51.100.7", "11 violations", 0, now,
                               &first));
    assert_int_equal(a->ops->put(a, &first, NULL, why, sizeof why), 1);
    assert_int_equal(a->ops->version(a, &v1), 0);
    assert_true(v1 > v0);
    /* Gateway B reads it back as it was written. */
    assert_int_equal(b->ops->get(b, "ip:198.51.100.7", &b_view, why, sizeof why), 1);
    assert_memory_equal(&b_view, &first, sizeof first);
    /* Both decide on a next ban of the record they read; one write wins. */
    assert_true(abuse_ban_next(&b_view, &p, ABUSE_SRC_MANUAL, "ip:198.51.100.7", "b", H, now + 1000,
                               &other));
    assert_true(abuse_ban_next(&first, &p, ABUSE_SRC_MANUAL, "ip:198.51.100.7", "a", H, now + 2000,
                               &second));
    assert_int_equal(b->ops->put(b, &other, &b_view, why, sizeof why), 1);
    assert_int_equal(a->ops->put(a, &second, &first, why, sizeof why), 0); /* read again */
    assert_int_equal(a->ops->put(a, &second, NULL, why, sizeof why), 0);   /* it exists */
    assert_int_equal(a->ops->get(a, "ip:198.51.100.7", &got, why, sizeof why), 1);
    assert_memory_equal(&got, &other, sizeof other);
    assert_int_equal(got.count, 2);

    struct abuse_ban *all;
    int n;
    struct abuse_ban sub;
    assert_true(abuse_ban_next(NULL, &p, ABUSE_SRC_MANUAL, "sub:weird \"name\"", "", H, now, &sub));
    assert_int_equal(a->ops->put(a, &sub, NULL, why, sizeof why), 1);
    assert_int_equal(b->ops->load(b, &all, &n, why, sizeof why), 0);
    assert_int_equal(n, 2);
    free(all);
    /* A delete of a record that changed meanwhile does nothing. */
    assert_int_equal(a->ops->del(a, &first, why, sizeof why), 0);
    assert_int_equal(a->ops->del(a, &other, why, sizeof why), 1);
    assert_int_equal(b->ops->get(b, "ip:198.51.100.7", &got, why, sizeof why), 0);
    a->ops->close(a);
    b->ops->close(b);
}

static void test_store_redis_away(void **state)
{
    (void)state;
    struct config cfg = {0};
    cfg.store.backend = CFG_BACKEND_REDIS;
    snprintf(cfg.store.redis.conn.host, sizeof cfg.store.redis.conn.host, "127.0.0.1");
    cfg.store.redis.conn.port = test_free_port();
    char *err = NULL, why[256];
    struct abuse_store *s = abuse_store_open(&cfg, &err); /* lazily connected */
    assert_non_null(s);
    struct abuse_ban *all;
    int n;
    assert_int_equal(s->ops->load(s, &all, &n, why, sizeof why), -1);
    assert_non_null(strstr(why, "redis"));
    uint64_t v;
    assert_int_equal(s->ops->version(s, &v), -1);
    s->ops->close(s);
}

/* EVAL of the record script for <id>: {count, crossed}. */
static void record(struct fixture *f, const char *id, int64_t slot_ms, unsigned cap,
                   int64_t threshold, int64_t *count, bool *crossed)
{
    char key[160], slot[24], capacity[16], th[24];
    snprintf(key, sizeof key, P "abuse:v:%s", id);
    snprintf(slot, sizeof slot, "%lld", (long long)slot_ms);
    snprintf(capacity, sizeof capacity, "%u", cap);
    snprintf(th, sizeof th, "%lld", (long long)threshold);
    redisReply *r = redisCommand(f->rc, "EVAL %s 3 %s %s %s %s %s %s %s %s %s", abuse_lua_record,
                                 key, P "abuse:violators", P "abuse:counts", id, slot, "60",
                                 capacity, th, P "abuse:v:");
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    *count = r->element[0]->integer;
    *crossed = r->element[1]->integer != 0;
    freeReplyObject(r);
}

static long long zcard(struct fixture *f, const char *key)
{
    redisReply *r = redisCommand(f->rc, "ZCARD %s", key);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void test_count_scripts(void **state)
{
    struct fixture *f = *state;
    int64_t n;
    bool crossed;
    for (int i = 1; i <= 3; i++) {
        record(f, "ip:198.51.100.7", 60000, 100, 3, &n, &crossed);
        assert_int_equal(n, i);
        assert_false(crossed); /* three is not more than three */
    }
    record(f, "ip:198.51.100.7", 60000, 100, 3, &n, &crossed);
    assert_int_equal(n, 4);
    assert_true(crossed);
    /* The crossing forgot the count: the next ban needs as many again. */
    redisReply *r = redisCommand(f->rc, "EXISTS " P "abuse:v:ip:198.51.100.7");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    record(f, "ip:198.51.100.7", 60000, 100, 3, &n, &crossed);
    assert_int_equal(n, 1);
    /* The hash expires a window after the last violation. */
    r = redisCommand(f->rc, "PTTL " P "abuse:v:ip:198.51.100.7");
    assert_true(r->integer > 3500000 && r->integer <= 3600000);
    freeReplyObject(r);

    /* Threshold 0: never crossed. */
    for (int i = 0; i < 5; i++)
        record(f, "sub:alice", 60000, 100, 0, &n, &crossed);
    assert_int_equal(n, 5);
    assert_false(crossed);
    for (int i = 0; i < 2; i++)
        record(f, "key:key_1", 60000, 100, 0, &n, &crossed);

    /* The top list: most first, cut at n. */
    r = redisCommand(f->rc, "EVAL %s 1 %s %s %s %s %s", abuse_lua_top, P "abuse:counts",
                     P "abuse:v:", "60000", "60", "10");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->element[0]->str, "sub:alice");
    assert_int_equal(r->element[0]->element[1]->integer, 5);
    assert_true(r->element[0]->element[2]->integer > 1700000000000);
    assert_string_equal(r->element[1]->element[0]->str, "key:key_1");
    assert_int_equal(r->element[1]->element[1]->integer, 2);
    assert_string_equal(r->element[2]->element[0]->str, "ip:198.51.100.7");
    assert_int_equal(r->element[2]->element[1]->integer, 1);
    freeReplyObject(r);
    r = redisCommand(f->rc, "EVAL %s 1 %s %s %s %s %s", abuse_lua_top, P "abuse:counts",
                     P "abuse:v:", "60000", "60", "1");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->element[0]->str, "sub:alice");
    freeReplyObject(r);

    /* The index holds at most its capacity: the least recent leave it,
     * their hashes with them. */
    char id[32];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "ip:10.0.0.%d", i);
        record(f, id, 60000, 10, 0, &n, &crossed);
        test_sleep_ms(2);
    }
    assert_int_equal(zcard(f, P "abuse:violators"), 10);
    assert_int_equal(zcard(f, P "abuse:counts"), 10);
    r = redisCommand(f->rc, "EXISTS " P "abuse:v:sub:alice " P "abuse:v:ip:10.0.0.0");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = redisCommand(f->rc, "EXISTS " P "abuse:v:ip:10.0.0.19");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_store_round_trip_and_cas, setup),
        cmocka_unit_test_setup(test_store_redis_away, setup),
        cmocka_unit_test_setup(test_count_scripts, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
