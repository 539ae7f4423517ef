/* The differential test of the limiter's two homes (ARCHITECTURE.md "one
 * algorithm, two homes"): the same seeded random sequence of requests
 * (identity, cost, time) goes through the memory store (lim_store_apply,
 * the production path over algo.c) and through src/limit/lua/apply.lua on a
 * real redis-server (EVALSHA with the arguments lim_lua_build makes, the
 * reply read by lim_lua_parse), and every decision must be the same, field
 * by field: for each algorithm alone, for requests with several limits
 * (all or nothing), for keys shared by two limits, and for concurrency with
 * releases. Then what only the Redis home has: leases that expire, a TTL on
 * every key, Redis TIME as the clock.
 *
 * A redis-server is started on a free loopback port for the whole group and
 * stopped in the group teardown, which cmocka runs even when a test fails;
 * should this process die instead, the server gets SIGKILL
 * (PR_SET_PDEATHSIG). LUA_TWIN_SEED=<n> replays other sequences. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#include <hiredis/hiredis.h>

#include "limit/redis_script.h"
#include "quota/store.h"

#define SEC INT64_C(1000000)
#define MINUTE (60 * SEC)
#define HOUR (3600 * SEC)
#define DAY (86400 * SEC)
#define T0 (INT64_C(19675) * DAY)   /* 2023-11-14, a day boundary */
#define STEPS 2500                  /* requests per differential case */
#define LEASE_TTL_LONG (1000 * DAY) /* outlives every sequence: no lease expires */
#define PREFIX "sluice:"
#define KEYBUF 4096

static struct {
    pid_t pid;
    int port;
    redisContext *rc;
    char sha_apply[41], sha_release[41];
    uint64_t seed;
    uint64_t compared; /* decisions compared, over all cases */
    /* Redis expires keys by its real clock from TTLs computed on the test's
     * simulated clock: a stalled machine could drop a key the C store still
     * holds. In the random sequences every key written is given a day more
     * (PEXPIRE); that changes no decision, as a state past its expiry
     * already behaves as a fresh one on both sides. */
    bool pin_keys;
} tw;

/* ---- the redis-server -------------------------------------------------- */

static void stop_server(void)
{
    if (tw.rc) {
        redisFree(tw.rc);
        tw.rc = NULL;
    }
    if (tw.pid <= 0)
        return;
    kill(tw.pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(tw.pid, NULL, WNOHANG) == tw.pid) {
            tw.pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(tw.pid, SIGKILL);
    waitpid(tw.pid, NULL, 0);
    tw.pid = 0;
}

/* Starts redis-server on <port> and waits until it answers PING; false if
 * it exits or stays silent for 10 s. */
static bool start_server(int port)
{
    static const char *const extra[] = {"--daemonize", "no", NULL};
    pid_t pid = test_redis_spawn(port, extra);
    if (pid < 0)
        return false;
    tw.pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            tw.pid = 0;
            return false;
        }
        struct timeval tv = {.tv_sec = 1};
        redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (rc && !rc->err) {
            redisReply *r = redisCommand(rc, "PING");
            bool up = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r)
                freeReplyObject(r);
            if (up) {
                tw.rc = rc;
                tw.port = port;
                return true;
            }
        }
        if (rc)
            redisFree(rc);
        usleep(10000);
    }
    stop_server();
    return false;
}

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(tw.rc, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("redis: %s", tw.rc->errstr);
    return r;
}

static void script_load(const char *body, char *sha)
{
    redisReply *r = cmd("SCRIPT LOAD %s", body);
    if (r->type != REDIS_REPLY_STRING || r->len != 40)
        fail_msg("SCRIPT LOAD: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    memcpy(sha, r->str, 41);
    freeReplyObject(r);
}

static int group_setup(void **state)
{
    const char *seed = getenv("LUA_TWIN_SEED");
    tw.seed = seed ? strtoull(seed, NULL, 10) : 20240611;
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = test_free_port();
        if (port > 0 && start_server(port)) {
            script_load(lim_lua_apply, tw.sha_apply);
            script_load(lim_lua_release, tw.sha_release);
            return 0;
        }
    }
    print_error("could not start redis-server (is it installed and on PATH?)\n");
    return -1;
}

static int group_teardown(void **state)
{
    stop_server();
    print_message("lua twin: %" PRIu64 " decisions compared (seed %" PRIu64 ")\n", tw.compared,
                  tw.seed);
    return 0;
}

static int flush(void **state)
{
    freeReplyObject(cmd("FLUSHALL"));
    return 0;
}

/* ---- calls ------------------------------------------------------------- */

/* EVALSHA <sha> with <call>'s keys and arguments. */
static redisReply *evalsha(const char *sha, const struct lim_lua_call *call)
{
    const char *argv[3 + LIM_LUA_MAX_ARGS];
    size_t lens[3 + LIM_LUA_MAX_ARGS];
    char nkeys[16];
    snprintf(nkeys, sizeof(nkeys), "%d", call->nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nkeys;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < call->nargs; i++) {
        argv[3 + i] = call->args[i];
        lens[3 + i] = call->lens[i];
    }
    redisReply *r = redisCommandArgv(tw.rc, 3 + call->nargs, argv, lens);
    if (!r)
        fail_msg("redis: %s", tw.rc->errstr);
    return r;
}

/* apply.lua for <ops>/<n>: fills their decisions, returns the verdict and
 * the script's clock in *<now_out>. */
static bool lua_apply(struct lim_op *ops, int n, uint32_t cost, int64_t now, const char *lease,
                      int64_t lease_ttl, int64_t *now_out)
{
    static struct lim_lua_call call;
    char keybuf[KEYBUF];
    assert_int_equal(lim_lua_build(&call, PREFIX, ops, n, cost, NULL, now, lease, lease_ttl, keybuf,
                                   sizeof(keybuf)),
                     0);
    assert_int_equal(call.nkeys, n);
    assert_int_equal(call.nargs, n + 4 + 4 * n);
    redisReply *r = evalsha(tw.sha_apply, &call);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("apply.lua: %s", r->str);
    for (int i = 0; tw.pin_keys && i < call.nkeys; i++)
        freeReplyObject(redisCommand(tw.rc, "PEXPIRE %b %lld", call.args[i], call.lens[i],
                                     (long long)(DAY / 1000)));
    bool ok;
    bool allowed = lim_lua_parse(r, ops, n, NULL, &ok);
    assert_true(ok);
    if (now_out)
        *now_out = r->element[1]->integer;
    else
        assert_int_equal(r->element[1]->integer, now);
    freeReplyObject(r);
    return allowed;
}

/* release.lua for <ops>/<n>; returns the slots given back. */
static long long lua_release(struct lim_op *ops, int n, uint32_t cost, const char *lease)
{
    static struct lim_lua_call call;
    char keybuf[KEYBUF];
    assert_int_equal(
        lim_lua_build_release(&call, PREFIX, ops, n, cost, lease, keybuf, sizeof(keybuf)), 0);
    if (call.nkeys == 0)
        return 0;
    redisReply *r = evalsha(tw.sha_release, &call);
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("release.lua: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
    long long removed = r->integer;
    freeReplyObject(r);
    return removed;
}

/* Every key in Redis has a TTL: memory is bounded. Returns how many. */
static size_t check_all_keys_expire(void)
{
    redisReply *keys = cmd("KEYS *");
    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *t = cmd("PTTL %b", keys->element[i]->str, keys->element[i]->len);
        if (t->type != REDIS_REPLY_INTEGER || t->integer <= 0)
            fail_msg("key %s has no TTL (PTTL %lld)", keys->element[i]->str, t->integer);
        freeReplyObject(t);
    }
    size_t n = keys->elements;
    freeReplyObject(keys);
    return n;
}

/* ---- sequences ----------------------------------------------------------- */

/* xorshift64*: the same sequence on every platform, for a given seed. */
static uint64_t rnd_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static uint64_t rnd(uint64_t *s, uint64_t below)
{
    return below ? rnd_next(s) % below : 0;
}

static struct limit parsed(const char *text, enum lim_algorithm a)
{
    struct limit l;
    const char *why = NULL;
    if (lim_parse(text, &l, &why) < 0)
        fail_msg("lim_parse(\"%s\"): %s", text, why);
    if (l.algorithm == LIM_DEFAULT)
        l.algorithm = a;
    return l;
}

/* A limit lim_parse would not produce, to run algo.c's guards. */
static struct limit raw(enum lim_algorithm a, uint64_t count, int64_t window_us, uint64_t burst,
                        const char *text)
{
    struct limit l;
    memset(&l, 0, sizeof(l));
    l.algorithm = a;
    l.count = count;
    l.window_us = window_us;
    l.burst = burst;
    snprintf(l.text, sizeof(l.text), "%s", text);
    return l;
}

#define MAX_CASE_LIMITS 4

struct twin_case {
    const char *name;
    int n;
    struct limit limits[MAX_CASE_LIMITS];
    const char *scopes[MAX_CASE_LIMITS]; /* policy.c's scope of each limit */
};

static const char *const identities[] = {"key:key_abc", "key:key_def", "ip:203.0.113.7",
                                         "ip:2001:db8:1:2::/64"};
#define N_IDENTITIES 4

/* The ops of one request of <c> for identity <id>, keys built as policy.c's
 * lim_collect does: "<scope>:<limit text>|<identity>". */
static void make_ops(const struct twin_case *c, int id, struct lim_op *ops, char keys[][128])
{
    for (int i = 0; i < c->n; i++) {
        snprintf(keys[i], 128, "%s:%s|%s", c->scopes[i], c->limits[i].text, identities[id]);
        memset(&ops[i], 0, sizeof(ops[i]));
        ops[i].limit = &c->limits[i];
        ops[i].key = keys[i];
        ops[i].key_len = strlen(keys[i]);
    }
}

static void print_decision(const char *who, const struct lim_decision *d)
{
    print_error("  %-6s allowed=%d limit=%" PRIu64 " remaining=%" PRIu64 " reset_us=%" PRId64
                " retry_after_us=%" PRId64 "\n",
                who, d->allowed, d->limit, d->remaining, d->reset_us, d->retry_after_us);
}

static bool same_decision(const struct lim_decision *a, const struct lim_decision *b)
{
    return a->allowed == b->allowed && a->limit == b->limit && a->remaining == b->remaining &&
           a->reset_us == b->reset_us && a->retry_after_us == b->retry_after_us;
}

/* An allowed request holding concurrency slots, not yet released. */
struct twin_held {
    int id;
    uint32_t cost;
    char lease[32];
};

/* Runs <c> for STEPS requests from <seed> through both homes and compares
 * every decision. */
static void run_case(const struct twin_case *c, uint64_t seed)
{
    struct lim_store *st = lim_store_new(1u << 16, 0);
    tw.pin_keys = true;
    uint64_t rs = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
    /* Time moves in steps of the tightest limit's interval between requests
     * (<unit>), so that requests contend, with now and then a step past a
     * window and, more rarely, past the longest one. */
    int64_t unit = INT64_MAX, min_w = INT64_MAX, max_w = 0, unit_count = 10;
    bool conc = false;
    for (int i = 0; i < c->n; i++) {
        if (c->limits[i].algorithm == LIM_CONCURRENCY) {
            conc = true;
            continue;
        }
        int64_t w = c->limits[i].window_us < 1000 ? 1000 : c->limits[i].window_us;
        int64_t u = c->limits[i].count ? w / (int64_t)c->limits[i].count : w;
        if (u < unit) {
            unit = u < 1 ? 1 : u;
            unit_count = (int64_t)c->limits[i].count;
        }
        min_w = w < min_w ? w : min_w;
        max_w = w > max_w ? w : max_w;
    }
    if (max_w == 0)
        unit = min_w = max_w = SEC; /* concurrency only: time barely matters */
    /* The identities share the traffic; each should see its limit reached. */
    int n_ids = c->n > 1 ? 3 : N_IDENTITIES;
    unit = unit / n_ids < 1 ? 1 : unit / n_ids;
    /* Long steps (per million): past the shortest window about once per
     * <count> requests of an identity, rarer for large counts (else they
     * would never be reached); past the longest one as much rarer again as
     * it is longer. */
    int64_t win_ppm = 2400000 / (unit_count * n_ids + 1);
    win_ppm = win_ppm > 60000 ? 60000 : win_ppm < 1000 ? 1000 : win_ppm;
    int64_t jump_ppm = win_ppm * 2 / 3 * min_w / max_w;

    static struct twin_held held[STEPS];
    int n_held = 0;
    uint64_t allowed_n = 0, denied_n = 0, released = 0;
    int64_t now = T0 + (int64_t)rnd(&rs, (uint64_t)DAY);
    char keys_c[MAX_CASE_LIMITS][128], keys_l[MAX_CASE_LIMITS][128];
    struct lim_op ops_c[MAX_CASE_LIMITS], ops_l[MAX_CASE_LIMITS];

    for (int step = 0; step < STEPS; step++) {
        /* Responses end in any order: give back some held slots. */
        while (conc && n_held > 0 && rnd(&rs, 100) < 45) {
            int k = (int)rnd(&rs, (uint64_t)n_held);
            struct twin_held h = held[k];
            held[k] = held[--n_held];
            make_ops(c, h.id, ops_c, keys_c);
            make_ops(c, h.id, ops_l, keys_l);
            lim_store_release(st, ops_c, c->n, h.cost);
            long long got = lua_release(ops_l, c->n, h.cost, h.lease);
            long long want = 0;
            for (int i = 0; i < c->n; i++)
                want += c->limits[i].algorithm == LIM_CONCURRENCY ? h.cost : 0;
            if (got != want)
                fail_msg("case %s seed %" PRIu64 " step %d: release.lua gave back %lld, not %lld",
                         c->name, seed, step, got, want);
            released++;
        }

        int64_t r = (int64_t)rnd(&rs, 1000000), dt;
        if (r < win_ppm)
            dt = (int64_t)rnd(&rs, (uint64_t)(2 * min_w + 1));
        else if (r < win_ppm + jump_ppm)
            dt = max_w + (int64_t)rnd(&rs, (uint64_t)(2 * max_w + 1));
        else if ((r = (int64_t)rnd(&rs, 100)) < 28)
            dt = 0;
        else if (r < 72)
            dt = (int64_t)rnd(&rs, (uint64_t)(unit + 1));
        else
            dt = (int64_t)rnd(&rs, (uint64_t)(4 * unit + 1));
        now += dt;
        int id = (int)rnd(&rs, (uint64_t)n_ids);
        uint32_t cost = 1 + (uint32_t)rnd(&rs, 3);
        char lease[32];
        snprintf(lease, sizeof(lease), "%s-%d", c->name, step);

        make_ops(c, id, ops_c, keys_c);
        make_ops(c, id, ops_l, keys_l);
        bool ok_c = lim_store_apply(st, ops_c, c->n, now, cost);
        bool ok_l = lua_apply(ops_l, c->n, cost, now, conc ? lease : "", LEASE_TTL_LONG, NULL);
        tw.compared += (uint64_t)c->n;

        bool same = ok_c == ok_l;
        for (int i = 0; i < c->n; i++)
            same = same && same_decision(&ops_c[i].decision, &ops_l[i].decision);
        if (!same) {
            print_error("case %s seed %" PRIu64 " step %d: identity %s cost %u now %" PRId64
                        " (T0%+" PRId64 "): C %s, Lua %s\n",
                        c->name, seed, step, identities[id], cost, now, now - T0,
                        ok_c ? "allowed" : "denied", ok_l ? "allowed" : "denied");
            for (int i = 0; i < c->n; i++) {
                print_error(" limit %d \"%s\" (%s, count %" PRIu64 ", window %" PRId64
                            " us, burst %" PRIu64 ") key %s\n",
                            i, c->limits[i].text, lim_algorithm_name(c->limits[i].algorithm),
                            c->limits[i].count, c->limits[i].window_us, c->limits[i].burst,
                            keys_c[i]);
                print_decision("C", &ops_c[i].decision);
                print_decision("Lua", &ops_l[i].decision);
            }
            fail_msg("the Lua twin differs from algo.c (case %s, seed %" PRIu64 ", step %d)",
                     c->name, seed, step);
        }

        if (ok_c) {
            allowed_n++;
            if (conc) {
                held[n_held].id = id;
                held[n_held].cost = cost;
                memcpy(held[n_held].lease, lease, sizeof(lease));
                n_held++;
            }
        } else {
            denied_n++;
        }
    }

    print_message("  %-22s %d steps: %" PRIu64 " allowed, %" PRIu64 " denied, %" PRIu64
                  " released, %zu keys in Redis\n",
                  c->name, STEPS, allowed_n, denied_n, released, check_all_keys_expire());
    /* A sequence that never denies (or never allows) would compare little. */
    assert_true(allowed_n >= STEPS / 40);
    assert_true(denied_n >= STEPS / 40);
    tw.pin_keys = false;
    lim_store_free(st);
}

static void run_cases(const struct twin_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i], tw.seed + i);
}

/* ---- the differential tests -------------------------------------------- */

static void test_twin_fixed_window(void **state)
{
    const struct twin_case cases[] = {
        {"fixed 5/10s", 1, {parsed("5/10s", LIM_FIXED_WINDOW)}, {"t:pro"}},
        {"fixed 2/min", 1, {parsed("2/min algorithm fixed_window", LIM_DEFAULT)}, {"r:^/api/:pro"}},
        {"fixed 100/h", 1, {parsed("100/h", LIM_FIXED_WINDOW)}, {"t:pro"}},
        {"fixed odd window", 1, {raw(LIM_FIXED_WINDOW, 7, 1234567, 0, "7/1234567us")}, {"t:x"}},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_twin_sliding_window(void **state)
{
    const struct twin_case cases[] = {
        {"sliding 10/min", 1, {parsed("10/min", LIM_SLIDING_WINDOW)}, {"t:pro"}},
        {"sliding 7/90s", 1, {parsed("7/90s algorithm sliding_window", LIM_DEFAULT)}, {"t:pro"}},
        {"sliding default 3/s", 1, {parsed("3/s", LIM_DEFAULT)}, {"k:key_1"}},
        /* Large counts: the previous window's weight then moves the
         * estimate across whole requests often, so that an off-by-one in
         * the per-mille arithmetic shows. */
        {"sliding 100/min", 1, {parsed("100/min", LIM_SLIDING_WINDOW)}, {"t:pro"}},
        {"sliding 120/7s", 1, {parsed("120/7s", LIM_SLIDING_WINDOW)}, {"t:pro"}},
        /* Windows not a whole number of milliseconds, and the 1 ms floor. */
        {"sliding odd window", 1, {raw(LIM_SLIDING_WINDOW, 9, 2345678, 0, "9/2345678us")}, {"t:x"}},
        {"sliding tiny window", 1, {raw(LIM_SLIDING_WINDOW, 4, 200, 0, "4/200us")}, {"t:x"}},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_twin_token_bucket(void **state)
{
    const struct twin_case cases[] = {
        {"token 5/s burst 10", 1, {parsed("5/s burst 10", LIM_DEFAULT)}, {"t:pro"}},
        {"token 3/min", 1, {parsed("3/min algorithm token_bucket", LIM_DEFAULT)}, {"t:pro"}},
        {"token 7/13s burst 2", 1, {parsed("7/13s burst 2", LIM_DEFAULT)}, {"t:free"}},
        /* More requests than microseconds: the interval's 1 us floor. */
        {"token 100/min burst 30", 1, {parsed("100/min burst 30", LIM_DEFAULT)}, {"t:pro"}},
        {"token guard", 1, {raw(LIM_TOKEN_BUCKET, 5000, 1000, 3, "5000/1ms")}, {"t:x"}},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_twin_concurrency(void **state)
{
    const struct twin_case cases[] = {
        {"concurrency 4", 1, {parsed("concurrency 4", LIM_DEFAULT)}, {"t:pro"}},
        {"concurrency 2", 1, {parsed("concurrency 2", LIM_DEFAULT)}, {"r:=/upload:pro"}},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_twin_multi_limit(void **state)
{
    const struct twin_case cases[] = {
        {"2/min + 10/hour",
         2,
         {parsed("2/min", LIM_SLIDING_WINDOW), parsed("10/hour", LIM_SLIDING_WINDOW)},
         {"t:pro", "t:pro"}},
        {"100/min + 1000/h",
         2,
         {parsed("100/min", LIM_SLIDING_WINDOW), parsed("1000/h", LIM_SLIDING_WINDOW)},
         {"t:pro", "r:^/api/:pro"}},
        {"token burst + fixed",
         2,
         {parsed("5/s burst 8", LIM_DEFAULT), parsed("20/min", LIM_FIXED_WINDOW)},
         {"t:pro", "r:^/api/:pro"}},
        {"concurrency + sliding",
         2,
         {parsed("concurrency 3", LIM_DEFAULT), parsed("10/min", LIM_SLIDING_WINDOW)},
         {"t:pro", "t:pro"}},
        {"all four",
         4,
         {parsed("3/s", LIM_FIXED_WINDOW), parsed("30/min algorithm token_bucket", LIM_DEFAULT),
          parsed("100/h", LIM_SLIDING_WINDOW), parsed("concurrency 5", LIM_DEFAULT)},
         {"t:pro", "t:pro", "r:^/api/{v}/:pro", "r:^/api/{v}/:pro"}},
        /* Two limits counted under one key (a list naming a limit twice):
         * they share one state, in the memory store as in Redis. */
        {"shared key fixed",
         2,
         {parsed("5/10s", LIM_FIXED_WINDOW), parsed("5/10s", LIM_FIXED_WINDOW)},
         {"t:pro", "t:pro"}},
        {"shared key concurrency",
         3,
         {parsed("concurrency 6", LIM_DEFAULT), parsed("concurrency 6", LIM_DEFAULT),
          parsed("4/s burst 6", LIM_DEFAULT)},
         {"t:pro", "t:pro", "t:pro"}},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- what only the Redis home has ---------------------------------------- */

static struct lim_op one_op(const struct limit *l, const char *key)
{
    struct lim_op o;
    memset(&o, 0, sizeof(o));
    o.limit = l;
    o.key = key;
    o.key_len = strlen(key);
    return o;
}

static long long pttl(const char *key)
{
    redisReply *r = cmd("PTTL %s", key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* ---- quotas: quota_store_decide (with lim_store_apply under its lock) and
 * the script's quota part decide alike ------------------------------------ */

struct twin_limits {
    struct lim_store *st;
    struct lim_op *ops;
    int n;
    int64_t now;
    uint32_t cost;
};

static bool twin_apply_limits(void *arg)
{
    struct twin_limits *t = arg;
    return lim_store_apply(t->st, t->ops, t->n, t->now, t->cost);
}

static void test_twin_quota(void **state)
{
    static const int thresholds[] = {50, 80, 100};
    uint64_t seed = tw.seed;
    struct lim_store *mem = lim_store_new(4096, 0);
    struct quota_store *qs = quota_store_new(1000);
    struct quota_zone *utc = quota_zone_load("UTC", NULL);
    struct limit l = parsed("3/10min", LIM_FIXED_WINDOW);
    const char *ids[] = {"key:a", "key:b", "ip:203.0.113.9"};
    /* from two days before a month's end, across the day and month
     * boundaries; the month resets on the 1st */
    int64_t now = INT64_C(1706616000) * SEC; /* 2024-01-30 12:00 UTC */
    int crossings = 0, refused_quota = 0, refused_limit = 0;
    for (int step = 0; step < STEPS; step++) {
        now += (int64_t)rnd(&seed, 120) * SEC;
        const char *id = ids[rnd(&seed, 3)];
        uint32_t cost = 1 + (uint32_t)rnd(&seed, 3);
        struct quota_req qm = {0}, qr;
        snprintf(qm.identity, sizeof(qm.identity), "%s", id);
        qm.limits = (struct quota_limits){.daily = 60, .monthly = 150};
        qm.day = quota_period_at(utc, QUOTA_DAILY, 1, now / SEC);
        qm.month = quota_period_at(utc, QUOTA_MONTHLY, 1, now / SEC);
        qm.cost = cost;
        qm.thresholds = thresholds;
        qm.n_thresholds = 3;
        qr = qm;
        char key[64];
        snprintf(key, sizeof(key), "t:pro:%s|%s", l.text, id);
        struct lim_op om = one_op(&l, key), or = one_op(&l, key);
        struct twin_limits call = {mem, &om, 1, now, cost};
        bool a_mem = quota_store_decide(qs, &qm, twin_apply_limits, &call);

        static struct lim_lua_call lc;
        char keybuf[KEYBUF];
        assert_int_equal(
            lim_lua_build(&lc, PREFIX, & or, 1, cost, &qr, now, "", 0, keybuf, sizeof(keybuf)), 0);
        assert_int_equal(lc.nkeys, 2);
        redisReply *r = evalsha(tw.sha_apply, &lc);
        if (r->type == REDIS_REPLY_ERROR)
            fail_msg("apply.lua: %s", r->str);
        bool ok;
        bool a_lua = lim_lua_parse(r, & or, 1, &qr, &ok);
        freeReplyObject(r);
        assert_true(ok);
        if (a_mem != a_lua || qm.decided != qr.decided)
            fail_msg("step %d (%s, cost %u): memory %d/%d, lua %d/%d", step, id, cost, a_mem,
                     qm.decided, a_lua, qr.decided);
        if (qm.decided) {
            const struct quota_decision *dm = &qm.decision, *dr = &qr.decision;
            if (dm->allowed != dr->allowed || dm->which != dr->which || dm->used != dr->used)
                fail_msg("step %d %s cost %u: memory allowed %d which %d used %lld (%lld/%lld), "
                         "lua %d %d %lld (%lld/%lld)",
                         step, id, cost, dm->allowed, dm->which, (long long)dm->used,
                         (long long)qm.usage.day_used, (long long)qm.usage.month_used, dr->allowed,
                         dr->which, (long long)dr->used, (long long)qr.usage.day_used,
                         (long long)qr.usage.month_used);
            assert_int_equal(dm->used, dr->used);
            assert_int_equal(dm->remaining, dr->remaining);
            assert_int_equal(dm->reset, dr->reset);
            assert_int_equal(dm->crossed_daily, dr->crossed_daily);
            assert_int_equal(dm->crossed_monthly, dr->crossed_monthly);
            crossings += __builtin_popcount(dm->crossed_daily | dm->crossed_monthly);
            refused_quota += !dm->allowed;
        } else {
            refused_limit++;
        }
        tw.compared++;
    }
    /* the sequence exercised every outcome, and crossed into February */
    assert_true(now / SEC > 1706745600);
    assert_true(crossings > 10);
    assert_true(refused_quota > 10);
    assert_true(refused_limit > 0);
    quota_zone_free(utc);
    quota_store_free(qs);
    lim_store_free(mem);
}

/* A gateway that dies holding slots loses them when the lease runs out. */
static void test_lease_expires(void **state)
{
    struct limit l = parsed("concurrency 2", LIM_DEFAULT);
    struct lim_op o = one_op(&l, "t:pro:concurrency 2|key:key_abc");
    const char *key = PREFIX "t:pro:concurrency 2:{key:key_abc}";
    const int64_t ttl = 10 * SEC;

    assert_true(lua_apply(&o, 1, 2, T0, "a", ttl, NULL));
    assert_int_equal(o.decision.remaining, 0);
    long long t = pttl(key);
    assert_true(t > 0 && t <= 10000 + 1000);
    assert_false(lua_apply(&o, 1, 1, T0 + 9 * SEC, "b", ttl, NULL));
    assert_false(lua_apply(&o, 1, 1, T0 + ttl - 1, "b", ttl, NULL));
    /* Lease "a" is over: both slots are free again. */
    assert_true(lua_apply(&o, 1, 2, T0 + ttl, "c", ttl, NULL));
    assert_int_equal(o.decision.remaining, 0);
    assert_int_equal(lua_release(&o, 1, 2, "a"), 0); /* expired: nothing to give back */
    assert_int_equal(lua_release(&o, 1, 2, "c"), 2);
    assert_int_equal(lua_release(&o, 1, 2, "c"), 0); /* released once only */
    /* No lease left: the key is gone with them. */
    assert_int_equal(pttl(key), -2);
}

/* Every key the script writes, for every algorithm, has a TTL that covers
 * its state's lifetime and no more than a second beyond. */
static void test_every_key_has_ttl(void **state)
{
    struct limit ls[4] = {parsed("5/10s", LIM_FIXED_WINDOW), parsed("5/10s", LIM_SLIDING_WINDOW),
                          parsed("5/10s burst 5", LIM_DEFAULT),
                          parsed("concurrency 5", LIM_DEFAULT)};
    struct lim_op ops[4] = {one_op(&ls[0], "t:a:5/10s|id"), one_op(&ls[1], "t:b:5/10s|id"),
                            one_op(&ls[2], "t:c:5/10s burst 5|id"),
                            one_op(&ls[3], "t:d:concurrency 5|id")};
    const int64_t now = T0 + 3 * SEC + 250;
    assert_true(lua_apply(ops, 4, 1, now, "L", 30 * SEC, NULL));
    assert_int_equal(check_all_keys_expire(), 4);
    /* fixed: the window ends 7 s - 250 us on; sliding: a window later;
     * token bucket: its TAT, 2 s on; the lease: 30 s. Plus the slack. */
    long long fx = pttl(PREFIX "t:a:5/10s:{id}"), sw = pttl(PREFIX "t:b:5/10s:{id}");
    long long tb = pttl(PREFIX "t:c:5/10s burst 5:{id}"),
              cc = pttl(PREFIX "t:d:concurrency 5:{id}");
    assert_true(fx > 7000 && fx <= 8000);
    assert_true(sw > 17000 && sw <= 18000);
    assert_true(tb > 2000 && tb <= 3000);
    assert_true(cc > 30000 && cc <= 31000);
    /* A denied request writes nothing. */
    freeReplyObject(cmd("FLUSHALL"));
    struct limit zero = raw(LIM_TOKEN_BUCKET, 0, SEC, 0, "0/s");
    struct lim_op z = one_op(&zero, "t:z:0/s|id");
    assert_false(lua_apply(&z, 1, 1, now, "", 0, NULL));
    assert_int_equal(check_all_keys_expire(), 0);
}

static int64_t redis_time(void)
{
    redisReply *r = cmd("TIME");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int64_t t = strtoll(r->element[0]->str, NULL, 10) * SEC + strtoll(r->element[1]->str, NULL, 10);
    freeReplyObject(r);
    return t;
}

/* With no time argument the script reads Redis TIME; decisions are those
 * of the memory store at that time. */
static void test_redis_time(void **state)
{
    struct limit ls[3] = {parsed("20/s", LIM_FIXED_WINDOW), parsed("30/s", LIM_SLIDING_WINDOW),
                          parsed("50/s burst 10", LIM_DEFAULT)};
    struct lim_store *st = lim_store_new(1024, 0);
    int64_t last = 0;
    uint64_t denied = 0;
    for (int step = 0; step < 300; step++) {
        struct lim_op ops_c[3], ops_l[3];
        for (int i = 0; i < 3; i++) {
            ops_c[i] = one_op(&ls[i], i == 0   ? "t:p:20/s|id"
                                      : i == 1 ? "t:p:30/s|id"
                                               : "t:p:50|id");
            ops_l[i] = ops_c[i];
        }
        int64_t before = redis_time();
        int64_t now;
        bool ok_l = lua_apply(ops_l, 3, 1, -1, "", 0, &now);
        int64_t after = redis_time();
        assert_true(before <= now && now <= after);
        assert_true(now >= last);
        last = now;
        bool ok_c = lim_store_apply(st, ops_c, 3, now, 1);
        assert_int_equal(ok_c, ok_l);
        for (int i = 0; i < 3; i++)
            assert_true(same_decision(&ops_c[i].decision, &ops_l[i].decision));
        denied += !ok_c;
        tw.compared += 3;
        if (step % 50 == 49)
            usleep(100000);
    }
    assert_true(denied > 0);
    check_all_keys_expire();
    lim_store_free(st);
}

/* ---- arguments and replies ----------------------------------------------- */

static void test_build_keys(void **state)
{
    static struct lim_lua_call call;
    char keybuf[256];
    struct limit a = parsed("100/h", LIM_SLIDING_WINDOW), b = parsed("concurrency 3", LIM_DEFAULT);
    struct lim_op ops[3] = {one_op(&a, "t:pro:100/h|key:key_abc"),
                            one_op(&b, "r:^/api/{v}/%x:pro:concurrency 3|ip:10.0.0.1"),
                            one_op(&a, "nobar")};
    assert_int_equal(lim_lua_build(&call, "sluice:", ops, 3, 2, NULL, 1234, "lease-1", 5 * SEC,
                                   keybuf, sizeof(keybuf)),
                     0);
    assert_int_equal(call.nkeys, 3);
    assert_int_equal(call.nargs, 3 + 4 + 12);
#define ARG_IS(i, s)                                                                               \
    do {                                                                                           \
        assert_int_equal(call.lens[i], strlen(s));                                                 \
        assert_memory_equal(call.args[i], s, strlen(s));                                           \
    } while (0)
    ARG_IS(0, "sluice:t:pro:100/h:{key:key_abc}");
    ARG_IS(1, "sluice:r:^/api/%7Bv}/%25x:pro:concurrency 3:{ip:10.0.0.1}");
    ARG_IS(2, "sluice:{nobar}");
    ARG_IS(3, "1234");
    ARG_IS(4, "2");
    ARG_IS(5, "lease-1");
    ARG_IS(6, "5000000");
    ARG_IS(7, "2"); /* LIM_SLIDING_WINDOW */
    ARG_IS(8, "100");
    ARG_IS(9, "3600000000");
    ARG_IS(10, "0");
    ARG_IS(11, "4"); /* LIM_CONCURRENCY */
    ARG_IS(12, "3");

    assert_int_equal(lim_lua_build(&call, "sluice:", ops, 1, 1, NULL, -1, NULL, 0, keybuf, 256), 0);
    ARG_IS(1, ""); /* Redis TIME */
    ARG_IS(3, "");
    /* Too small a key buffer, by one byte and by more. */
    size_t need = strlen("sluice:t:pro:100/h:{key:key_abc}");
    assert_int_equal(lim_lua_build(&call, "sluice:", ops, 1, 1, NULL, 0, "", 0, keybuf, need), 0);
    assert_int_equal(lim_lua_build(&call, "sluice:", ops, 1, 1, NULL, 0, "", 0, keybuf, need - 1),
                     -1);
    assert_int_equal(lim_lua_build(&call, "sluice:", ops, 2, 1, NULL, 0, "", 0, keybuf, 10), -1);

    /* Release: the concurrency ops only. */
    assert_int_equal(lim_lua_build_release(&call, "p:", ops, 3, 7, "L", keybuf, sizeof(keybuf)), 0);
    assert_int_equal(call.nkeys, 1);
    assert_int_equal(call.nargs, 3);
    ARG_IS(0, "p:r:^/api/%7Bv}/%25x:pro:concurrency 3:{ip:10.0.0.1}");
    ARG_IS(1, "L");
    ARG_IS(2, "7");
    assert_int_equal(lim_lua_build_release(&call, "p:", ops, 1, 7, "L", keybuf, sizeof(keybuf)), 0);
    assert_int_equal(call.nkeys, 0);
#undef ARG_IS
}

static void test_parse_rejects(void **state)
{
    struct limit l = parsed("10/s", LIM_FIXED_WINDOW);
    struct lim_op ops[2] = {one_op(&l, "t:a:10/s|x"), one_op(&l, "t:b:10/s|x")};
    bool ok = true;
    redisReply *r;

    /* Error replies, wrong shapes, values algo.c never gives. */
    const char *bodies[] = {
        "return redis.error_reply('boom')",
        "return {1, 5, 1, 10, 9, 0, 0}",                   /* wrong length */
        "return {1, 5, 1, 10, 9, 0, 0, 1, 10, '9', 0, 0}", /* a string element */
        "return {2, 5, 1, 10, 9, 0, 0, 1, 10, 9, 0, 0}",   /* allowed 2 */
        "return {1, 5, 1, 10, 9, 0, 0, 0, 10, 0, 0, 5}",   /* verdict not the AND */
        "return {0, 5, 1, 10, 9, 0, 0, 0, 10, 3, 0, 5}",   /* remaining while denied */
        "return {1, 5, 1, 10, 9, -1, 0, 1, 10, 9, 0, 0}",  /* negative reset */
        "return {1, 5, 1, 10, 9, 0, 4, 1, 10, 9, 0, 0}",   /* a wait while allowed */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        r = cmd("EVAL %s 0", bodies[i]);
        ops[0].decision.limit = 77;
        ok = true;
        assert_false(lim_lua_parse(r, ops, 2, NULL, &ok));
        assert_false(ok);
        assert_int_equal(ops[0].decision.limit, 77); /* untouched */
        freeReplyObject(r);
    }
    assert_false(lim_lua_parse(NULL, ops, 2, NULL, &ok));
    assert_false(ok);

    /* A good one. */
    r = cmd("EVAL %s 0", "return {0, 5, 1, 10, 9, 7, 0, 0, 10, 0, 0, 5}");
    assert_false(lim_lua_parse(r, ops, 2, NULL, &ok));
    assert_true(ok);
    assert_true(ops[0].decision.allowed);
    assert_int_equal(ops[0].decision.remaining, 9);
    assert_int_equal(ops[0].decision.reset_us, 7);
    assert_false(ops[1].decision.allowed);
    assert_int_equal(ops[1].decision.retry_after_us, 5);
    freeReplyObject(r);

    /* Bad arguments are an error reply, not a decision. */
    static struct lim_lua_call call;
    char keybuf[256];
    assert_int_equal(
        lim_lua_build(&call, PREFIX, ops, 2, 1, NULL, T0, "", 0, keybuf, sizeof(keybuf)), 0);
    call.nargs--;
    r = evalsha(tw.sha_apply, &call);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    /* A flushed script cache answers NOSCRIPT (the caller then loads it
     * again, as store/redis.c's rds_eval does); the SHA stays the same. */
    freeReplyObject(cmd("SCRIPT FLUSH"));
    call.nargs++;
    r = evalsha(tw.sha_apply, &call);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_memory_equal(r->str, "NOSCRIPT", 8);
    assert_false(lim_lua_parse(r, ops, 2, NULL, &ok));
    assert_false(ok);
    freeReplyObject(r);
    char sha[41];
    script_load(lim_lua_apply, sha);
    assert_string_equal(sha, tw.sha_apply);
    script_load(lim_lua_release, sha);
    assert_string_equal(sha, tw.sha_release);
    assert_true(lua_apply(ops, 2, 1, T0, "", 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_build_keys, flush),
        cmocka_unit_test_setup(test_twin_fixed_window, flush),
        cmocka_unit_test_setup(test_twin_sliding_window, flush),
        cmocka_unit_test_setup(test_twin_token_bucket, flush),
        cmocka_unit_test_setup(test_twin_concurrency, flush),
        cmocka_unit_test_setup(test_twin_multi_limit, flush),
        cmocka_unit_test_setup(test_twin_quota, flush),
        cmocka_unit_test_setup(test_lease_expires, flush),
        cmocka_unit_test_setup(test_every_key_has_ttl, flush),
        cmocka_unit_test_setup(test_redis_time, flush),
        cmocka_unit_test_setup(test_parse_rejects, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
