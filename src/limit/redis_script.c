/* Arguments for and replies from the limiter's Lua scripts (see
 * redis_script.h; the scripts are src/limit/lua/apply.lua and release.lua,
 * embedded by CMakeLists.txt into gen/lim_lua.c).
 *
 * Keys: an op key is "<scope>:<limit>|<identity>" (policy.c). In Redis it
 * becomes "<prefix><scope>:<limit>:{<identity>}": the identity is the hash
 * tag, so all counters of one request (tier and route scopes alike) live on
 * one Cluster slot and one script call may touch them all. Redis takes the
 * tag from the first '{' of a key, so a '{' in the scope part (a route path
 * may hold one) is written "%7B", and '%' is written "%25" to keep the
 * mapping one to one. The prefix is written as is: an operator who puts a
 * tag in it ("{sluice}:") pins every key to one slot, which stays
 * consistent. */

#include "limit/redis_script.h"
#include "quota/quota.h"

#include <inttypes.h>

/* Room left in <call>'s number buffer is checked against this: an int64 or
 * uint64 in decimal, with its sign and the terminating NUL. */
#define LIM_LUA_NUM_MAX 22

static void lim_lua_arg(struct lim_lua_call *call, const char *s, size_t len)
{
    call->args[call->nargs] = s;
    call->lens[call->nargs] = len;
    call->nargs++;
}

static void lim_lua_i64(struct lim_lua_call *call, int64_t v)
{
    char *p = call->buf + call->used;
    int len = snprintf(p, LIM_LUA_NUM_MAX, "%" PRId64, v);
    call->used += (size_t)len + 1;
    lim_lua_arg(call, p, (size_t)len);
}

static void lim_lua_u64(struct lim_lua_call *call, uint64_t v)
{
    char *p = call->buf + call->used;
    int len = snprintf(p, LIM_LUA_NUM_MAX, "%" PRIu64, v);
    call->used += (size_t)len + 1;
    lim_lua_arg(call, p, (size_t)len);
}

/* Appends the Redis key of <op> to <keybuf> at *<used> and to <call>'s
 * keys. -1 when it does not fit in <keycap>. */
static int lim_lua_key(struct lim_lua_call *call, const char *prefix, const struct lim_op *op,
                       char *keybuf, size_t keycap, size_t *used)
{
    const char *bar = memrchr(op->key, '|', op->key_len);
    size_t scope_len = bar ? (size_t)(bar - op->key) : 0;
    const char *id = bar ? bar + 1 : op->key;
    size_t id_len = op->key_len - (size_t)(id - op->key);
    size_t prefix_len = strlen(prefix);
    char *start = keybuf + *used;
    size_t at = *used;

    if (keycap - at < prefix_len)
        return -1;
    memcpy(keybuf + at, prefix, prefix_len);
    at += prefix_len;
    for (size_t i = 0; i < scope_len; i++) {
        char c = op->key[i];
        const char *esc = c == '{' ? "%7B" : c == '%' ? "%25" : NULL;
        size_t len = esc ? 3 : 1;
        if (keycap - at < len)
            return -1;
        if (esc)
            memcpy(keybuf + at, esc, 3);
        else
            keybuf[at] = c;
        at += len;
    }
    /* ":{" after a scope, "{" alone for a key with no scope; then "}". */
    size_t open = scope_len ? 2 : 1;
    if (keycap - at < open + id_len + 1)
        return -1;
    memcpy(keybuf + at, scope_len ? ":{" : "{", open);
    at += open;
    memcpy(keybuf + at, id, id_len);
    at += id_len;
    keybuf[at++] = '}';

    lim_lua_arg(call, start, at - *used);
    *used = at;
    return 0;
}

static void lim_lua_reset(struct lim_lua_call *call)
{
    call->nkeys = 0;
    call->nargs = 0;
    call->used = 0;
}

/* The quota's key: a pseudo op "q|<identity>", so it gets the identity's
 * hash tag (the same Cluster slot as the request's counters). */
static int lim_lua_quota_key(struct lim_lua_call *call, const char *prefix,
                             const struct quota_req *q, char *keybuf, size_t keycap, size_t *used)
{
    char key[2 + QUOTA_IDENTITY_MAX];
    int len = snprintf(key, sizeof(key), "q|%s", q->identity);
    struct lim_op op = {.key = key, .key_len = (size_t)len};
    return lim_lua_key(call, prefix, &op, keybuf, keycap, used);
}

int lim_lua_build(struct lim_lua_call *call, const char *prefix, const struct lim_op *ops, int n,
                  uint32_t cost, const struct quota_req *q, int64_t now_us, const char *lease,
                  int64_t lease_ttl_us, char *keybuf, size_t keycap)
{
    size_t used = 0;
    lim_lua_reset(call);
    if (n < 0 || n > SL_MAX_LIMIT_OPS)
        return -1;
    for (int i = 0; i < n; i++)
        if (lim_lua_key(call, prefix, &ops[i], keybuf, keycap, &used) < 0)
            return -1;
    if (q && lim_lua_quota_key(call, prefix, q, keybuf, keycap, &used) < 0)
        return -1;
    call->nkeys = n + (q ? 1 : 0);

    if (now_us < 0)
        lim_lua_arg(call, "", 0); /* the script reads Redis TIME */
    else
        lim_lua_i64(call, now_us);
    lim_lua_u64(call, cost);
    lim_lua_arg(call, lease ? lease : "", lease ? strlen(lease) : 0);
    lim_lua_i64(call, lease_ttl_us);
    for (int i = 0; i < n; i++) {
        const struct limit *l = ops[i].limit;
        lim_lua_i64(call, (int64_t)l->algorithm);
        lim_lua_u64(call, l->count);
        lim_lua_i64(call, l->window_us);
        lim_lua_u64(call, l->burst);
    }
    if (q) {
        /* the count lives a day past its month: a gateway a little behind
         * still finds it */
        lim_lua_i64(call, q->limits.daily);
        lim_lua_i64(call, q->limits.monthly);
        lim_lua_i64(call, q->day.start);
        lim_lua_i64(call, q->month.start);
        lim_lua_i64(call, (q->month.end > q->day.end ? q->month.end : q->day.end) + 86400);
    }
    return 0;
}

int lim_lua_build_release(struct lim_lua_call *call, const char *prefix, const struct lim_op *ops,
                          int n, uint32_t cost, const char *lease, char *keybuf, size_t keycap)
{
    size_t used = 0;
    lim_lua_reset(call);
    if (n < 0 || n > SL_MAX_LIMIT_OPS)
        return -1;
    for (int i = 0; i < n; i++) {
        if (ops[i].limit->algorithm != LIM_CONCURRENCY)
            continue;
        if (lim_lua_key(call, prefix, &ops[i], keybuf, keycap, &used) < 0)
            return -1;
        call->nkeys++;
    }
    if (call->nkeys == 0) {
        call->nargs = 0;
        return 0;
    }
    lim_lua_arg(call, lease ? lease : "", lease ? strlen(lease) : 0);
    lim_lua_u64(call, cost);
    return 0;
}

/* A 0/1 integer reply element, into *<out>. */
static bool lim_lua_flag(const redisReply *r, bool *out)
{
    if (r->integer != 0 && r->integer != 1)
        return false;
    *out = r->integer == 1;
    return true;
}

/* The quota's part of a reply: its verdict (1 admitted, 0 refused, -1 not
 * asked) and the counts. */
static bool lim_lua_quota(redisReply *const *e, int *status, struct quota_usage *u)
{
    if (e[0]->integer < -1 || e[0]->integer > 1)
        return false;
    /* what the script can hold exactly (doubles): anything bigger is not
     * its reply, and would overflow the arithmetic after it */
    for (int i = 1; i < 5; i++)
        if (e[i]->integer < 0 || e[i]->integer > (INT64_C(1) << 53))
            return false;
    *status = (int)e[0]->integer;
    *u = (struct quota_usage){e[1]->integer, e[2]->integer, e[3]->integer, e[4]->integer};
    return true;
}

bool lim_lua_parse(const redisReply *reply, struct lim_op *ops, int n, struct quota_req *q,
                   bool *ok)
{
    *ok = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || n < 0 || n > SL_MAX_LIMIT_OPS ||
        reply->elements != 2 + 5 * (size_t)n + (q ? 5 : 0))
        return false;
    for (size_t i = 0; i < reply->elements; i++)
        if (!reply->element[i] || reply->element[i]->type != REDIS_REPLY_INTEGER)
            return false;

    /* Everything is checked before any op is written: a bad reply leaves
     * <ops> as they were. */
    struct lim_decision d[SL_MAX_LIMIT_OPS];
    bool allowed, all = true;
    if (!lim_lua_flag(reply->element[0], &allowed) || reply->element[1]->integer < 0)
        return false;
    for (int i = 0; i < n; i++) {
        redisReply *const *e = &reply->element[2 + 5 * (size_t)i];
        if (!lim_lua_flag(e[0], &d[i].allowed))
            return false;
        if (e[1]->integer < 0 || e[2]->integer < 0 || e[3]->integer < 0 || e[4]->integer < 0)
            return false;
        d[i].limit = (uint64_t)e[1]->integer;
        d[i].remaining = (uint64_t)e[2]->integer;
        d[i].reset_us = e[3]->integer;
        d[i].retry_after_us = e[4]->integer;
        /* What algo.c guarantees: remaining only when allowed, a wait only
         * when denied. */
        if (d[i].allowed ? d[i].retry_after_us != 0 : d[i].remaining != 0)
            return false;
        all = all && d[i].allowed;
    }
    int q_status = 1;
    struct quota_usage q_usage = {0};
    if (q && !lim_lua_quota(&reply->element[2 + 5 * (size_t)n], &q_status, &q_usage))
        return false;
    /* the quota refuses whatever the limits say; it is left uncharged
     * (-1) only when it would allow and a limit refused */
    if ((q && q_status == -1 && all) || (q && q_status == 1 && !all) ||
        allowed != (all && q_status == 1))
        return false;
    for (int i = 0; i < n; i++)
        ops[i].decision = d[i];
    if (q)
        quota_from_remote(q, q_status, &q_usage);
    *ok = true;
    return allowed;
}
