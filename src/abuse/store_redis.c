/* Bans in Redis (abuse/store.h), under the configured prefix P:
 *   P bans       hash: identity -> the ban's stored form (abuse_ban_encode)
 *   P bans:ver   bumped (INCR) with every change; gateways poll it
 * A change and its version bump are one script, and a write applies only
 * over the record its caller read (compare and set), so two gateways
 * banning one identity at once make one ban, escalated once. */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse/store.h"
#include "store/redis.h"
#include "util/mem.h"

#define ABUSE_REDIS_TIMEOUT_MS 1000

struct abuse_redis {
    struct abuse_store base;
    redisContext *rc; /* NULL while down */
    struct rds_config conf;
    char key[140], ver[150];
};

static struct abuse_redis *abuse_rds_of(struct abuse_store *s)
{
    return (struct abuse_redis *)s;
}

/* KEYS: the hash, the version. ARGV: identity, the record expected ("":
 * none), the new one. */
static const char abuse_lua_put[] = "local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''\n"
                                    "if cur ~= ARGV[2] then return 0 end\n"
                                    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
                                    "redis.call('INCR', KEYS[2])\n"
                                    "return 1\n";
/* KEYS: the hash, the version. ARGV: identity, the record expected. */
static const char abuse_lua_del[] = "local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''\n"
                                    "if cur ~= ARGV[2] then return 0 end\n"
                                    "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                    "redis.call('INCR', KEYS[2])\n"
                                    "return 1\n";

/* The live connection, made again after it broke; NULL with <why>. */
static redisContext *abuse_rds_live(struct abuse_redis *r, char *why, size_t cap)
{
    if (r->rc && r->rc->err) {
        redisFree(r->rc);
        r->rc = NULL;
    }
    if (r->rc)
        return r->rc;
    char *err = NULL;
    r->rc = rds_connect_sync(&r->conf, ABUSE_REDIS_TIMEOUT_MS, &err);
    if (!r->rc)
        snprintf(why, cap, "%s", err ? err : "redis: cannot connect");
    free(err);
    return r->rc;
}

/* The reply of a command on the live connection; NULL with <why>. */
static redisReply *abuse_rds_call(struct abuse_redis *r, char *why, size_t cap, const char *fmt,
                                  ...)
{
    redisContext *rc = abuse_rds_live(r, why, cap);
    if (!rc)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!rep) {
        snprintf(why, cap, "redis: %s", rc->errstr);
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, cap, "redis: %.*s", (int)rep->len, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static int abuse_rds_load(struct abuse_store *s, struct abuse_ban **out, int *n, char *why,
                          size_t cap)
{
    struct abuse_redis *r = abuse_rds_of(s);
    redisReply *rep = abuse_rds_call(r, why, cap, "HGETALL %s", r->key);
    if (!rep)
        return -1;
    size_t pairs = rep->type == REDIS_REPLY_ARRAY ? rep->elements / 2 : 0;
    struct abuse_ban *v = sl_malloc((pairs ? pairs : 1) * sizeof *v);
    int len = 0;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *k = rep->element[2 * i], *val = rep->element[2 * i + 1];
        if (k->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING &&
            abuse_ban_decode(k->str, val->str, val->len, &v[len]))
            len++;
    }
    freeReplyObject(rep);
    *out = v;
    *n = len;
    return 0;
}

static int abuse_rds_get(struct abuse_store *s, const char *identity, struct abuse_ban *b,
                         char *why, size_t cap)
{
    struct abuse_redis *r = abuse_rds_of(s);
    redisReply *rep = abuse_rds_call(r, why, cap, "HGET %s %s", r->key, identity);
    if (!rep)
        return -1;
    int found =
        rep->type == REDIS_REPLY_STRING && abuse_ban_decode(identity, rep->str, rep->len, b);
    freeReplyObject(rep);
    return found;
}

/* Runs <script> over <identity> with the stored forms of <expected> (NULL:
 * none) and <b> (NULL: none). */
static int abuse_rds_cas(struct abuse_redis *r, const char *script, const char *identity,
                         const struct abuse_ban *expected, const struct abuse_ban *b, char *why,
                         size_t cap)
{
    char *old = expected ? abuse_ban_encode(expected) : NULL;
    char *new = b ? abuse_ban_encode(b) : NULL;
    redisReply *rep = b ? abuse_rds_call(r, why, cap, "EVAL %s 2 %s %s %s %s %s", script, r->key,
                                         r->ver, identity, old ? old : "", new ? new : "")
                        : abuse_rds_call(r, why, cap, "EVAL %s 2 %s %s %s %s", script, r->key,
                                         r->ver, identity, old ? old : "");
    free(old);
    free(new);
    if (!rep)
        return -1;
    int rc = rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer : -1;
    freeReplyObject(rep);
    if (rc < 0)
        snprintf(why, cap, "redis: unexpected reply to a ban write");
    return rc;
}

static int abuse_rds_put(struct abuse_store *s, const struct abuse_ban *b,
                         const struct abuse_ban *expected, char *why, size_t cap)
{
    return abuse_rds_cas(abuse_rds_of(s), abuse_lua_put, b->identity, expected, b, why, cap);
}

static int abuse_rds_del(struct abuse_store *s, const struct abuse_ban *expected, char *why,
                         size_t cap)
{
    return abuse_rds_cas(abuse_rds_of(s), abuse_lua_del, expected->identity, expected, NULL, why,
                         cap);
}

static int abuse_rds_version(struct abuse_store *s, uint64_t *v)
{
    struct abuse_redis *r = abuse_rds_of(s);
    char why[200];
    redisReply *rep = abuse_rds_call(r, why, sizeof why, "GET %s", r->ver);
    if (!rep)
        return -1;
    *v = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return 0;
}

static void abuse_rds_close(struct abuse_store *s)
{
    struct abuse_redis *r = abuse_rds_of(s);
    if (r->rc)
        redisFree(r->rc);
    free(r);
}

static const struct abuse_store_ops abuse_redis_ops = {
    abuse_rds_load, abuse_rds_get, abuse_rds_put, abuse_rds_del, abuse_rds_version, abuse_rds_close,
};

struct abuse_store *abuse_store_redis_open(const struct config *c, char **err)
{
    (void)err;
    struct abuse_redis *r = sl_calloc(1, sizeof *r);
    r->base.ops = &abuse_redis_ops;
    r->conf = c->store.redis.conn;
    const char *p = c->store.redis.prefix ? c->store.redis.prefix : "sluice:";
    snprintf(r->key, sizeof r->key, "%sbans", p);
    snprintf(r->ver, sizeof r->ver, "%s:ver", r->key);
    return &r->base;
}
