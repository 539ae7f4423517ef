/* Usage rows in Redis (usage/store.h): the fleet's store. Every gateway adds
 * its increments; reports read the sums, so fleet totals are exact once
 * each gateway has flushed. Layout, under the configured prefix P:
 *
 *   P usage:<g>:<period>:<member>   a hash per row: counter fields "n",
 *                                   "s1".."s5", "rl", "rq", "rb", "bi", "bo",
 *                                   "u", "c", "h0".."h33" (only those ever
 *                                   non-zero) and "kid" (the key id, if any)
 *   P usage:idx:<g>:<period>        a set of the rows' members in a period
 *
 * <g> is h, d or m; <period> the period's start in Unix seconds (UTC);
 * <member> "<length of identity>:<identity><route>", which splits back
 * without ambiguity whatever the identity holds. Hourly and daily keys
 * expire (EXPIREAT) their retention after their period ends; monthly keys
 * are kept.
 *
 * A write is one pipeline: MULTI, HINCRBY per non-zero counter of each
 * row's three hashes, HSET of kid, SADD to the indexes, EXPIREAT, EXEC.
 * Redis applies all of it or none of it, unless the connection is lost
 * after EXEC left us: then nobody knows, and the write is not retried, so
 * a row is never counted twice. (A PING first makes sure the connection,
 * idle since the last write, still stands: a Redis restarted meanwhile is
 * found before anything is sent, and the rows wait for it.) A report reads the indexes of its
 * periods (SMEMBERS, pipelined) and then the rows (HGETALL, pipelined in batches).
 *
 * The connection is synchronous (the usage thread's and the CLI's own),
 * made lazily and again after it broke, at most once a second while Redis
 * is away; meanwhile writes are kept for later (USAGE_WRITE_RETRY) and
 * reports fail at once. Redis Cluster is not supported here: a MULTI spans
 * keys of many slots. */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "usage/store_backend.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/str.h"

/* Writes can be large (every row of a second): more than a command's
 * usual 50 ms. */
#define USAGE_REDIS_TIMEOUT_MS 5000
#define USAGE_REDIS_RETRY_MS 1000
/* Rows read per pipelined batch of a report. */
#define USAGE_REDIS_BATCH 1000

static const char usage_redis_gran[USAGE_GRAN_N] = {'h', 'd', 'm'};

struct usage_redis {
    struct usage_store base;
    redisContext *rc; /* NULL: down */
    struct rds_config conf;
    char prefix[80];
    int64_t retry_at_ms;
    char why[300];
};

static int64_t usage_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The live connection, made again when it broke; NULL (with why[]) while
 * Redis cannot be reached. */
static redisContext *usage_redis_live(struct usage_redis *u)
{
    if (u->rc && u->rc->err) {
        snprintf(u->why, sizeof(u->why), "%s", u->rc->errstr);
        redisFree(u->rc);
        u->rc = NULL;
        u->retry_at_ms = 0; /* it was up: try again at once */
    }
    if (u->rc || usage_mono_ms() < u->retry_at_ms)
        return u->rc;
    char *why = NULL;
    u->rc = rds_connect_sync(&u->conf, USAGE_REDIS_TIMEOUT_MS, &why);
    if (!u->rc) {
        str_copy(u->why, sizeof(u->why), why ? why : "redis: cannot connect");
        u->retry_at_ms = usage_mono_ms() + USAGE_REDIS_RETRY_MS;
    }
    free(why);
    return u->rc;
}

/* The connection failed under a call: drop it. */
static void usage_redis_broken(struct usage_redis *u)
{
    snprintf(u->why, sizeof(u->why), "%s", u->rc->err ? u->rc->errstr : "protocol error");
    redisFree(u->rc);
    u->rc = NULL;
}

static struct usage_store *usage_redis_open(const struct usage_store_opts *o, char **err)
{
    struct usage_redis *u = sl_calloc(1, sizeof(*u));
    u->conf = o->conn;
    str_copy(u->prefix, sizeof(u->prefix), o->redis_prefix ? o->redis_prefix : "");
    return &u->base;
}

static void usage_redis_close(struct usage_store *s)
{
    struct usage_redis *u = (struct usage_redis *)s;
    if (u->rc)
        redisFree(u->rc);
    free(u);
}

/* "<len>:<identity><route>" */
static void usage_redis_member(struct buf *b, const char *identity, const char *route)
{
    buf_appendf(b, "%zu:%s%s", strlen(identity), identity, route);
}

/* Splits member <m>/<len> into its identity and route (pointing into <m>);
 * -1 when it is not one of ours. */
static int usage_redis_split(const char *m, size_t len, const char **id, size_t *id_len,
                             const char **route, size_t *route_len)
{
    size_t n = 0, i = 0;
    while (i < len && i < 4 && m[i] >= '0' && m[i] <= '9')
        n = n * 10 + (size_t)(m[i++] - '0');
    if (i == 0 || i >= len || m[i] != ':' || len - i - 1 < n)
        return -1;
    *id = m + i + 1;
    *id_len = n;
    *route = *id + n;
    *route_len = len - i - 1 - n;
    return 0;
}

static void usage_redis_key(struct buf *b, const char *prefix, enum usage_gran g, int64_t period,
                            const char *identity, const char *route)
{
    buf_appendf(b, "%susage:%c:%" PRId64 ":", prefix, usage_redis_gran[g], period);
    usage_redis_member(b, identity, route);
}

/* A command of <argc> strings: appended to <rc>'s output buffer. */
static void usage_redis_append(redisContext *rc, int argc, const char **argv, const size_t *lens,
                               int *n)
{
    redisAppendCommandArgv(rc, argc, argv, lens);
    (*n)++;
}

static void usage_redis_cmd3(redisContext *rc, const char *a, const char *b, size_t blen,
                             const char *c, int *n)
{
    const char *argv[3] = {a, b, c};
    size_t lens[3] = {strlen(a), blen, strlen(c)};
    usage_redis_append(rc, 3, argv, lens, n);
}

/* The expiry of a row of granularity <g> starting at <period>: its
 * retention after the period ends; 0 for monthly rows (kept). */
static int64_t usage_redis_expiry(enum usage_gran g, int64_t period,
                                  const struct usage_retention *r)
{
    if (g == USAGE_MONTH)
        return 0;
    return usage_period_next(g, period) + (g == USAGE_HOUR ? r->hourly_s : r->daily_s);
}

static enum usage_write_result usage_redis_write(struct usage_store *s, const struct usage_table *t,
                                                 const struct usage_retention *r, char **err)
{
    struct usage_redis *u = (struct usage_redis *)s;
    redisContext *rc = usage_redis_live(u);
    /* A connection idle since the last flush may have died with a Redis
     * that restarted meanwhile: a PING finds out before the transaction,
     * whose loss could not be told from its success. */
    redisReply *ping = rc ? redisCommand(rc, "PING") : NULL;
    if (rc && !ping) {
        usage_redis_broken(u);
        rc = usage_redis_live(u);
        ping = rc ? redisCommand(rc, "PING") : NULL;
        if (rc && !ping)
            usage_redis_broken(u);
    }
    freeReplyObject(ping);
    if (!ping) {
        usage_set_err(err, "usage: redis cannot be reached: %s", u->why);
        return USAGE_WRITE_RETRY;
    }
    int n = 0;
    const char *multi[1] = {"MULTI"};
    usage_redis_append(rc, 1, multi, NULL, &n);
    struct buf key = {0}, idx = {0}, member = {0};
    char num[24], when[24];
    for (const struct usage_row *row = usage_table_first(t); row; row = row->next) {
        member.len = 0;
        usage_redis_member(&member, row->identity, row->route);
        for (int g = 0; g < USAGE_GRAN_N; g++) {
            int64_t period = usage_period_start(g, row->period);
            key.len = 0;
            usage_redis_key(&key, u->prefix, g, period, row->identity, row->route);
            for (int f = 0; f < USAGE_F_N; f++) {
                if (!row->c.v[f])
                    continue;
                snprintf(num, sizeof(num), "%" PRIu64, row->c.v[f]);
                const char *field = usage_field_redis(f);
                const char *argv[4] = {"HINCRBY", key.data, field, num};
                size_t lens[4] = {7, key.len, strlen(field), strlen(num)};
                usage_redis_append(rc, 4, argv, lens, &n);
            }
            if (row->key_id[0]) {
                const char *argv[4] = {"HSET", key.data, "kid", row->key_id};
                size_t lens[4] = {4, key.len, 3, strlen(row->key_id)};
                usage_redis_append(rc, 4, argv, lens, &n);
            }
            idx.len = 0;
            buf_appendf(&idx, "%susage:idx:%c:%" PRId64, u->prefix, usage_redis_gran[g], period);
            const char *sadd[3] = {"SADD", idx.data, member.data};
            size_t sadd_lens[3] = {4, idx.len, member.len};
            usage_redis_append(rc, 3, sadd, sadd_lens, &n);
            int64_t exp = usage_redis_expiry(g, period, r);
            if (exp) {
                snprintf(when, sizeof(when), "%" PRId64, exp);
                usage_redis_cmd3(rc, "EXPIREAT", key.data, key.len, when, &n);
                usage_redis_cmd3(rc, "EXPIREAT", idx.data, idx.len, when, &n);
            }
        }
    }
    buf_release(&key);
    buf_release(&idx);
    buf_release(&member);
    const char *exec[1] = {"EXEC"};
    usage_redis_append(rc, 1, exec, NULL, &n);

    /* Send it all first: a failure before the last byte left means Redis
     * never saw EXEC and dropped the transaction with the connection. */
    int done = 0;
    while (!done)
        if (redisBufferWrite(rc, &done) != REDIS_OK) {
            usage_set_err(err, "usage: redis: sending the flush: %s", rc->errstr);
            usage_redis_broken(u);
            return USAGE_WRITE_RETRY;
        }
    enum usage_write_result res = USAGE_WRITE_OK;
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(rc, (void **)&rep) != REDIS_OK) {
            usage_set_err(err, "usage: redis: the flush's answer was lost (%s); not retried",
                          rc->errstr);
            usage_redis_broken(u);
            return USAGE_WRITE_LOST;
        }
        if (i == n - 1 && rep->type != REDIS_REPLY_ARRAY) {
            /* EXEC answered nil or an error: the transaction was discarded
             * (a command Redis refused to queue). */
            usage_set_err(err, "usage: redis: the flush was refused: %s",
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "EXECABORT");
            res = USAGE_WRITE_RETRY;
        } else if (i == n - 1) {
            for (size_t e = 0; e < rep->elements; e++)
                if (rep->element[e]->type == REDIS_REPLY_ERROR && res == USAGE_WRITE_OK) {
                    /* A key of ours of another type: that command failed,
                     * the rest applied. */
                    usage_set_err(err, "usage: redis: part of the flush failed: %s",
                                  rep->element[e]->str);
                    res = USAGE_WRITE_LOST;
                }
        }
        freeReplyObject(rep);
    }
    return res;
}

static int64_t usage_redis_prune(struct usage_store *s, int64_t now,
                                 const struct usage_retention *r, char **err)
{
    return 0; /* keys expire by themselves */
}

/* ---- reports ---------------------------------------------------------------------- */

/* A row to read: its period and member. */
struct usage_redis_want {
    int64_t period;
    char *member;
    size_t len;
};

/* Reads the rows <want>[0..<n>) (HGETALL, one pipeline) and calls <fn> for
 * those of <q>'s key. 0, 1 when <fn> stopped, -1. */
static int usage_redis_read_rows(struct usage_redis *u, redisContext *rc,
                                 const struct usage_query *q, struct usage_redis_want *want, int n,
                                 usage_row_fn fn, void *arg, char **err)
{
    struct buf key = {0};
    for (int i = 0; i < n; i++) {
        key.len = 0;
        buf_appendf(&key, "%susage:%c:%" PRId64 ":", u->prefix, usage_redis_gran[q->gran],
                    want[i].period);
        buf_append(&key, want[i].member, want[i].len);
        const char *argv[2] = {"HGETALL", key.data};
        size_t lens[2] = {7, key.len};
        redisAppendCommandArgv(rc, 2, argv, lens);
    }
    buf_release(&key);
    int out = 0;
    char *identity = NULL, *route = NULL;
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(rc, (void **)&rep) != REDIS_OK) {
            usage_set_err(err, "usage: redis: reading rows: %s", rc->errstr);
            usage_redis_broken(u);
            out = -1;
            break;
        }
        if (out != 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
            freeReplyObject(rep); /* stopped, or expired since the index was read */
            continue;
        }
        const char *id, *rt;
        size_t id_len, rt_len;
        usage_redis_split(want[i].member, want[i].len, &id, &id_len, &rt, &rt_len);
        identity = sl_strndup(id, id_len);
        route = sl_strndup(rt, rt_len);
        struct usage_row row = {.period = want[i].period, .identity = identity, .route = route};
        char *key_id = NULL;
        for (size_t e = 0; e + 1 < rep->elements; e += 2) {
            const redisReply *f = rep->element[e], *v = rep->element[e + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (f->len == 3 && memcmp(f->str, "kid", 3) == 0) {
                free(key_id);
                key_id = sl_strndup(v->str, v->len);
                continue;
            }
            int field = usage_field_from_redis(f->str, f->len);
            if (field >= 0)
                row.c.v[field] = strtoull(v->str, NULL, 10);
        }
        row.key_id = key_id ? key_id : "";
        if (!q->key_id || strcmp(row.key_id, q->key_id) == 0)
            out = fn(arg, &row) != 0 ? 1 : 0;
        free(key_id);
        free(identity);
        free(route);
        freeReplyObject(rep);
    }
    return out;
}

static bool usage_redis_matches(const struct usage_query *q, const char *m, size_t len)
{
    const char *id, *rt;
    size_t id_len, rt_len;
    if (usage_redis_split(m, len, &id, &id_len, &rt, &rt_len) < 0)
        return false;
    if (q->identity && (strlen(q->identity) != id_len || memcmp(q->identity, id, id_len) != 0))
        return false;
    if (q->route && (strlen(q->route) != rt_len || memcmp(q->route, rt, rt_len) != 0))
        return false;
    return true;
}

static int usage_redis_query(struct usage_store *s, const struct usage_query *q, usage_row_fn fn,
                             void *arg, char **err)
{
    struct usage_redis *u = (struct usage_redis *)s;
    redisContext *rc = usage_redis_live(u);
    if (!rc) {
        usage_set_err(err, "usage: redis cannot be reached: %s", u->why);
        return -1;
    }
    /* The periods, then every index in one pipeline. */
    int n_periods = 0;
    for (int64_t p = usage_period_start(q->gran, q->from); p < q->to;
         p = usage_period_next(q->gran, p)) {
        if (++n_periods > USAGE_QUERY_MAX_PERIODS) {
            usage_set_err(err, "usage: more than %d periods asked for", USAGE_QUERY_MAX_PERIODS);
            return -1;
        }
    }
    int64_t *periods = sl_malloc((size_t)(n_periods ? n_periods : 1) * sizeof(*periods));
    struct buf idx = {0};
    int i = 0;
    for (int64_t p = usage_period_start(q->gran, q->from); p < q->to;
         p = usage_period_next(q->gran, p)) {
        periods[i++] = p;
        idx.len = 0;
        buf_appendf(&idx, "%susage:idx:%c:%" PRId64, u->prefix, usage_redis_gran[q->gran], p);
        const char *argv[2] = {"SMEMBERS", idx.data};
        size_t lens[2] = {8, idx.len};
        redisAppendCommandArgv(rc, 2, argv, lens);
    }
    buf_release(&idx);
    struct usage_redis_want *want = NULL;
    size_t n_want = 0, cap = 0;
    int out = 0;
    for (i = 0; i < n_periods; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(rc, (void **)&rep) != REDIS_OK) {
            usage_set_err(err, "usage: redis: reading the index: %s", rc->errstr);
            usage_redis_broken(u);
            out = -1;
            break;
        }
        for (size_t e = 0; rep->type == REDIS_REPLY_ARRAY && e < rep->elements; e++) {
            const redisReply *m = rep->element[e];
            if (m->type != REDIS_REPLY_STRING || !usage_redis_matches(q, m->str, m->len))
                continue;
            if (n_want == cap) {
                cap = cap ? cap * 2 : 64;
                want = sl_realloc(want, cap * sizeof(*want));
            }
            want[n_want++] =
                (struct usage_redis_want){periods[i], sl_strndup(m->str, m->len), m->len};
        }
        freeReplyObject(rep);
    }
    for (size_t w = 0; out == 0 && w < n_want; w += USAGE_REDIS_BATCH) {
        int n = (int)(n_want - w < USAGE_REDIS_BATCH ? n_want - w : USAGE_REDIS_BATCH);
        out = usage_redis_read_rows(u, rc, q, want + w, n, fn, arg, err);
        if (out < 0)
            break;
    }
    for (size_t w = 0; w < n_want; w++)
        free(want[w].member);
    free(want);
    free(periods);
    return out;
}

const struct usage_store_ops usage_redis_ops = {
    .open = usage_redis_open,
    .close = usage_redis_close,
    .write = usage_redis_write,
    .prune = usage_redis_prune,
    .query = usage_redis_query,
};
