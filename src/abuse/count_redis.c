/* Violations counted in Redis (abuse/count.h), so the threshold is the
 * fleet's. Redis TIME is the clock. Under the configured prefix P:
 *   P abuse:v:<identity>   hash: absolute slot number (now / slot_ms) ->
 *                          violations in it, "l" -> the last one's ms;
 *                          expires a window after the last violation
 *   P abuse:violators      sorted set: identity -> its last violation (ms),
 *                          the index: quiet identities and, past the
 *                          capacity, the least recent leave it (and their
 *                          hash goes)
 *   P abuse:counts         sorted set: identity -> its count at its last
 *                          violation, an upper bound of its count now: the
 *                          top list reads candidates in that order and
 *                          stops when none left can beat it
 * The scripts name hashes of other identities than their KEYS (the index
 * trim, the top list): a standalone Redis, like the rest of the store's
 * keys outside the limits' counters. While Redis cannot be reached, the
 * gateway counts in its own memory (c->local) as the memory backend does. */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse/count.h"
#include "fleet/fleet.h"
#include "store/redis.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* KEYS: the identity's hash, the index, the counts. ARGV: identity,
 * slot_ms, slots, capacity, threshold (0: none), the hashes' prefix.
 * Returns {count, crossed}. */
static const char abuse_lua_record[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local slot_ms, k = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local s = math.floor(now / slot_ms)\n"
    "redis.call('HINCRBY', KEYS[1], s, 1)\n"
    "redis.call('HSET', KEYS[1], 'l', now)\n"
    "local f = redis.call('HGETALL', KEYS[1])\n"
    "local n = 0\n"
    "for i = 1, #f, 2 do\n"
    "  if f[i] ~= 'l' then\n"
    "    if tonumber(f[i]) <= s - k then redis.call('HDEL', KEYS[1], f[i])\n"
    "    else n = n + tonumber(f[i + 1]) end\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], slot_ms * k)\n"
    "local function forget(id)\n"
    "  redis.call('ZREM', KEYS[2], id)\n"
    "  redis.call('ZREM', KEYS[3], id)\n"
    "  redis.call('DEL', ARGV[6] .. id)\n"
    "end\n"
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - slot_ms * k,\n"
    "                               'LIMIT', 0, 100)) do forget(id) end\n"
    "local th = tonumber(ARGV[5])\n"
    "if th > 0 and n > th then\n"
    "  forget(ARGV[1])\n"
    "  return {n, 1}\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[1])\n"
    "redis.call('ZADD', KEYS[3], n, ARGV[1])\n"
    "local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])\n"
    "if over > 0 then\n"
    "  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do forget(id) end\n"
    "end\n"
    "return {n, 0}\n";

/* KEYS: the counts. ARGV: the hashes' prefix, slot_ms, slots of the window
 * asked (<= the slots kept), n. Returns {identity, count, last, ...}, most
 * first (ties: the latest first). */
static const char abuse_lua_top[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local slot_ms, k, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local s = math.floor(now / slot_ms)\n"
    "local fields = {'l'}\n"
    "for i = s - k + 1, s do fields[#fields + 1] = tostring(i) end\n"
    "local best = {}\n"
    "local function before(a, b)\n"
    "  if a[2] ~= b[2] then return a[2] > b[2] end\n"
    "  if a[3] ~= b[3] then return a[3] > b[3] end\n"
    "  return a[1] < b[1]\n"
    "end\n"
    "local start = 0\n"
    "while true do\n"
    "  local c = redis.call('ZREVRANGE', KEYS[1], start, start + 199, 'WITHSCORES')\n"
    "  if #c == 0 then break end\n"
    "  for i = 1, #c, 2 do\n"
    "    if #best >= n and tonumber(c[i + 1]) <= best[n][2] then return best end\n"
    "    local v = redis.call('HMGET', ARGV[1] .. c[i], unpack(fields))\n"
    "    local sum = 0\n"
    "    for j = 2, #v do sum = sum + (tonumber(v[j]) or 0) end\n"
    "    if sum > 0 then\n"
    "      best[#best + 1] = {c[i], sum, tonumber(v[1]) or 0}\n"
    "      table.sort(best, before)\n"
    "      if #best > n then best[#best] = nil end\n"
    "    end\n"
    "  end\n"
    "  start = start + 200\n"
    "end\n"
    "return best\n";

struct abuse_redis_counter {
    struct abuse_counter base;
    struct rds_script record, top;
    int64_t slot_ms;
    unsigned capacity;
    char hash_prefix[96], index[96], counts[96];
};

static struct abuse_redis_counter *abuse_rc_of(struct abuse_counter *c)
{
    return (struct abuse_redis_counter *)c;
}

/* A call in flight: what to tell whom. */
struct abuse_rc_call {
    struct abuse_redis_counter *rc;
    char identity[96];
    int64_t threshold;
    abuse_count_fn count_done;
    abuse_top_fn top_done;
    void *arg;
    int64_t window_ms;
    int n;
};

static void abuse_rc_recorded(void *arg, enum rds_status st, const redisReply *r)
{
    struct abuse_rc_call *call = arg;
    if (st == RDS_OK && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        call->count_done(call->arg, r->element[0]->integer, r->element[1]->integer != 0);
    } else {
        /* Redis is away or answered nonsense: this gateway's own count. */
        bool crossed;
        int64_t n = abuse_count_local(call->rc->base.local, call->identity, call->threshold,
                                      clock_wall_us() / 1000, &crossed);
        call->count_done(call->arg, n, crossed);
    }
    free(call);
}

static void abuse_rc_record(struct abuse_counter *c, struct worker *w, const char *identity,
                            int64_t threshold, abuse_count_fn done, void *arg)
{
    struct abuse_redis_counter *rc = abuse_rc_of(c);
    struct abuse_rc_call *call = sl_calloc(1, sizeof *call);
    call->rc = rc;
    str_copy(call->identity, sizeof call->identity, identity);
    call->threshold = threshold;
    call->count_done = done;
    call->arg = arg;
    struct rds *redis = fleet_redis(w);
    if (!redis || !rds_is_up(redis)) {
        abuse_rc_recorded(call, RDS_DOWN, NULL);
        return;
    }
    char key[200], slot_ms[24], slots[8], cap[16], th[24];
    snprintf(key, sizeof key, "%s%s", rc->hash_prefix, identity);
    snprintf(slot_ms, sizeof slot_ms, "%" PRId64, rc->slot_ms);
    snprintf(slots, sizeof slots, "%d", ABUSE_SLOTS);
    snprintf(cap, sizeof cap, "%u", rc->capacity);
    snprintf(th, sizeof th, "%" PRId64, threshold);
    const char *args[] = {key,   rc->index, rc->counts, identity,       slot_ms,
                          slots, cap,       th,         rc->hash_prefix};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(args[i]);
    rds_eval(redis, &rc->record, 3, 9, args, lens, abuse_rc_recorded, call);
}

static void abuse_rc_topped(void *arg, enum rds_status st, const redisReply *r)
{
    struct abuse_rc_call *call = arg;
    if (st != RDS_OK || r->type != REDIS_REPLY_ARRAY) {
        call->top_done(call->arg, NULL, 0,
                       st == RDS_OK && r->type == REDIS_REPLY_ERROR ? r->str
                                                                    : "redis cannot be reached");
        free(call);
        return;
    }
    struct abuse_violator *v = sl_calloc(r->elements ? r->elements : 1, sizeof *v);
    int n = 0;
    for (size_t i = 0; i < r->elements && n < call->n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 3 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_INTEGER)
            continue;
        str_copy(v[n].identity, sizeof v[n].identity, e->element[0]->str);
        v[n].count = e->element[1]->integer;
        v[n].last_ms = e->element[2]->integer;
        n++;
    }
    call->top_done(call->arg, v, n, NULL);
    free(v);
    free(call);
}

static void abuse_rc_top(struct abuse_counter *c, struct worker *w, int64_t window_ms, int n,
                         abuse_top_fn done, void *arg)
{
    struct abuse_redis_counter *rc = abuse_rc_of(c);
    struct abuse_rc_call *call = sl_calloc(1, sizeof *call);
    call->rc = rc;
    call->top_done = done;
    call->arg = arg;
    call->n = n;
    struct rds *redis = fleet_redis(w);
    if (!redis || !rds_is_up(redis)) {
        abuse_rc_topped(call, RDS_DOWN, NULL);
        return;
    }
    int64_t k = (window_ms + rc->slot_ms - 1) / rc->slot_ms;
    char slot_ms[24], slots[24], top_n[16];
    snprintf(slot_ms, sizeof slot_ms, "%" PRId64, rc->slot_ms);
    snprintf(slots, sizeof slots, "%" PRId64, k < 1 ? 1 : k > ABUSE_SLOTS ? ABUSE_SLOTS : k);
    snprintf(top_n, sizeof top_n, "%d", n);
    const char *args[] = {rc->counts, rc->hash_prefix, slot_ms, slots, top_n};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(args[i]);
    rds_eval(redis, &rc->top, 1, 5, args, lens, abuse_rc_topped, call);
}

static void abuse_rc_free(struct abuse_counter *c)
{
    abuse_tracker_free(c->local);
    free(abuse_rc_of(c));
}

static const struct abuse_counter_ops abuse_redis_count_ops = {abuse_rc_record, abuse_rc_top,
                                                               abuse_rc_free};

struct abuse_counter *abuse_counter_redis_new(const char *prefix, unsigned capacity,
                                              int64_t window_ms)
{
    struct abuse_redis_counter *rc = sl_calloc(1, sizeof *rc);
    rc->base.ops = &abuse_redis_count_ops;
    rc->base.local = abuse_tracker_new(capacity, window_ms);
    rc->capacity = capacity;
    rc->slot_ms = window_ms / ABUSE_SLOTS > 0 ? window_ms / ABUSE_SLOTS : 1;
    rds_script_init(&rc->record, abuse_lua_record);
    rds_script_init(&rc->top, abuse_lua_top);
    snprintf(rc->hash_prefix, sizeof rc->hash_prefix, "%sabuse:v:", prefix);
    snprintf(rc->index, sizeof rc->index, "%sabuse:violators", prefix);
    snprintf(rc->counts, sizeof rc->counts, "%sabuse:counts", prefix);
    return &rc->base;
}
