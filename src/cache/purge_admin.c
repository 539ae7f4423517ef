/* POST /cache/purge and purges from other gateways of a fleet.
 *
 * A purge scans the whole store, which takes milliseconds per 100,000
 * entries: it runs on libuv's thread pool, so the worker's loop keeps
 * serving while it does.
 *
 * In a fleet, the event carries an id; each gateway that applies it adds
 * its count and itself to the Redis hash <prefix>purge:<id>, and the
 * gateway that received the request reads that hash until every other
 * live gateway has reported, or CACHE_TALLY_MS has passed, so that the
 * answer counts the whole fleet's entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>
#include <llhttp.h>

#include "audit/audit.h"
#include "cache/cache.h"
#include "cache/rules.h"
#include "fleet/fleet.h"
#include "modules.h"
#include "util/mem.h"

#define CACHE_TALLY_MS 1000     /* how long the answer waits for the other gateways */
#define CACHE_TALLY_POLL_MS 20  /* between two reads of the tally */
#define CACHE_TALLY_TTL "60000" /* ms a tally stays in Redis */
#define CACHE_PURGE_ID_LEN 16   /* hex digits */

struct cache_purge_job {
    uv_work_t work;
    struct cache *cache;
    enum cache_purge_kind kind;
    char *arg;
    uint64_t purged;
    struct worker *w;   /* whose loop and Redis connection the job uses */
    struct exchange *x; /* the admin request waiting for the count; NULL once it ended */
    int refs;           /* the pool's, the exchange's, the timer's, a Redis reply's */
    char id[CACHE_PURGE_ID_LEN + 1]; /* the fleet event's; "" without a fleet */
    bool fleet, sent;                /* a fleet gateway; the event went out */
    bool report;                     /* received from another gateway: add to its tally */
    /* the tally of the other gateways, while the answer waits for it */
    uv_timer_t timer;
    bool timer_on, reading;
    uint64_t deadline, others_purged;
    unsigned others, expected;
};

static void cache_purge_job_unref(struct cache_purge_job *j)
{
    if (--j->refs > 0)
        return;
    free(j->arg);
    free(j);
}

static void cache_purge_job_run(uv_work_t *req)
{
    struct cache_purge_job *j = req->data;
    j->purged = cache_purge(j->cache, j->kind, j->arg);
}

static void cache_purge_respond(struct cache_purge_job *j)
{
    char out[128];
    int olen =
        j->fleet
            ? snprintf(out, sizeof(out), "{\"purged\": %llu, \"fleet\": %s, \"gateways\": %u}\n",
                       (unsigned long long)(j->purged + j->others_purged),
                       j->sent ? "true" : "false", 1 + j->others)
            : snprintf(out, sizeof(out), "{\"purged\": %llu}\n", (unsigned long long)j->purged);
    exchange_respond(j->x, 200, "application/json", out, (size_t)olen);
}

static void cache_tally_key(const struct cache_purge_job *j, char *out, size_t size)
{
    snprintf(out, size, "%spurge:%s", fleet_prefix(fleet_of(j->w->gw)), j->id);
}

/* ---- the other gateways' tally ----------------------------------------------------- */

static void cache_tally_closed(uv_handle_t *h)
{
    cache_purge_job_unref(h->data);
}

static void cache_tally_stop(struct cache_purge_job *j)
{
    if (!j->timer_on)
        return;
    j->timer_on = false;
    uv_close((uv_handle_t *)&j->timer, cache_tally_closed);
}

static void cache_tally_finish(struct cache_purge_job *j)
{
    if (j->x)
        cache_purge_respond(j);
    cache_tally_stop(j);
}

static uint64_t cache_reply_u64(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
}

static void cache_tally_read(void *arg, enum rds_status st, const redisReply *reply)
{
    struct cache_purge_job *j = arg;
    j->reading = false;
    if (st == RDS_OK && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        j->others_purged = cache_reply_u64(reply->element[0]);
        j->others = (unsigned)cache_reply_u64(reply->element[1]);
    }
    if (j->timer_on && (!j->x || j->others >= j->expected))
        cache_tally_finish(j);
    cache_purge_job_unref(j);
}

static void cache_tally_poll(uv_timer_t *t)
{
    struct cache_purge_job *j = t->data;
    if (!j->x || uv_now(t->loop) >= j->deadline) {
        cache_tally_finish(j); /* with the tally read so far */
        return;
    }
    struct rds *r = fleet_redis(j->w);
    if (j->reading || !r)
        return;
    char key[160];
    cache_tally_key(j, key, sizeof(key));
    const char *argv[] = {"HMGET", key, "n", "gateways"};
    size_t lens[] = {5, strlen(key), 1, 8};
    j->reading = true;
    j->refs++;
    rds_command(r, 4, argv, lens, cache_tally_read, j);
}

/* Wait for the others' counts before answering: every other live gateway
 * is expected to report. */
static void cache_tally_start(struct cache_purge_job *j)
{
    j->expected = fleet_size(fleet_of(j->w->gw)) - 1;
    j->deadline = uv_now(&j->w->loop) + CACHE_TALLY_MS;
    uv_timer_init(&j->w->loop, &j->timer);
    j->timer.data = j;
    j->timer_on = true;
    j->refs++;
    uv_timer_start(&j->timer, cache_tally_poll, 0, CACHE_TALLY_POLL_MS);
}

static void cache_tally_added(void *arg, enum rds_status st, const redisReply *reply) {}

/* Add this gateway's count to the tally of the gateway that asked. One
 * connection applies commands in order: a reader that sees the gateway
 * counted also sees its entries. */
static void cache_tally_add(struct cache_purge_job *j)
{
    struct rds *r = fleet_redis(j->w);
    if (!r)
        return;
    char key[160], n[24];
    cache_tally_key(j, key, sizeof(key));
    snprintf(n, sizeof(n), "%llu", (unsigned long long)j->purged);
    const char *add_n[] = {"HINCRBY", key, "n", n};
    const char *add_gw[] = {"HINCRBY", key, "gateways", "1"};
    const char *expire[] = {"PEXPIRE", key, CACHE_TALLY_TTL};
    size_t klen = strlen(key);
    size_t lens_n[] = {7, klen, 1, strlen(n)}, lens_gw[] = {7, klen, 8, 1},
           lens_exp[] = {7, klen, strlen(CACHE_TALLY_TTL)};
    rds_command(r, 4, add_n, lens_n, cache_tally_added, NULL);
    rds_command(r, 4, add_gw, lens_gw, cache_tally_added, NULL);
    rds_command(r, 3, expire, lens_exp, cache_tally_added, NULL);
}

/* ---- jobs ------------------------------------------------------------------------- */

static void cache_purge_job_done(uv_work_t *req, int status)
{
    struct cache_purge_job *j = req->data;
    if (j->report)
        cache_tally_add(j);
    else if (j->x && j->fleet && j->sent && fleet_size(fleet_of(j->w->gw)) > 1)
        cache_tally_start(j);
    else if (j->x)
        cache_purge_respond(j);
    cache_purge_job_unref(j);
}

static void cache_purge_exchange_ended(struct exchange *x, void *arg)
{
    struct cache_purge_job *j = arg;
    j->x = NULL;
    cache_purge_job_unref(j);
}

static struct cache_purge_job *cache_purge_job_new(struct worker *w, enum cache_purge_kind kind,
                                                   const char *arg)
{
    struct cache_purge_job *j = sl_calloc(1, sizeof(*j));
    j->work.data = j;
    j->cache = w->gw->ctx[MOD_cache];
    j->w = w;
    j->kind = kind;
    j->arg = sl_strdup(arg);
    j->refs = 1;
    return j;
}

/* Runs <j> on the pool of its worker's loop; where the pool cannot take
 * it, here. */
static void cache_purge_job_start(struct cache_purge_job *j)
{
    if (uv_queue_work(&j->w->loop, &j->work, cache_purge_job_run, cache_purge_job_done) != 0) {
        cache_purge_job_run(&j->work);
        cache_purge_job_done(&j->work, 0);
    }
}

static void cache_purge_new_id(char *out)
{
    unsigned char raw[CACHE_PURGE_ID_LEN / 2];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        uint64_t t = uv_hrtime();
        memcpy(raw, &t, sizeof(raw) < sizeof(t) ? sizeof(raw) : sizeof(t));
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* ---- the endpoint and the event ----------------------------------------------------- */

_Static_assert(CACHE_MAX_GLOB == 1024, "the error below names the bound");

/* {"key": "/x?a=1"} and the like: the kind and its argument, or NULL with
 * *<kind> untouched and the reason. */
static const char *cache_purge_request(json_t *doc, enum cache_purge_kind *kind, const char **arg)
{
    if (!doc || !json_is_object(doc) || json_object_size(doc) != 1)
        return "the body must be one JSON object with one of key, prefix, pattern, tag, all";
    int found = cache_purge_kind_from_name(json_object_iter_key(json_object_iter(doc)));
    if (found < 0)
        return "unknown field: use key, prefix, pattern, tag or all";
    json_t *v = json_object_iter_value(json_object_iter(doc));
    if (found == CACHE_PURGE_ALL && !json_is_true(v))
        return "all must be true";
    if (found != CACHE_PURGE_ALL && (!json_is_string(v) || json_string_length(v) == 0))
        return "the value must be a non-empty string";
    if (found == CACHE_PURGE_PATTERN && json_string_length(v) > CACHE_MAX_GLOB)
        return "the pattern is longer than 1024 bytes";
    *kind = (enum cache_purge_kind)found;
    *arg = json_is_string(v) ? json_string_value(v) : "";
    return NULL;
}

void cache_admin_purge(struct exchange *x, const struct sl_admin_call *call)
{
    json_error_t jerr;
    json_t *doc = json_loadb(call->body, call->body_len, 0, &jerr);
    enum cache_purge_kind kind = CACHE_PURGE_ALL;
    const char *arg = "";
    const char *why = cache_purge_request(doc, &kind, &arg);
    if (why) {
        json_decref(doc);
        exchange_respond_error(x, 400, why);
        return;
    }
    /* Audited when accepted: the purge itself cannot fail. */
    char *target = sl_malloc(strlen(arg) + 16);
    snprintf(target, strlen(arg) + 16, "%s%s%s", cache_purge_kind_name(kind), arg[0] ? ":" : "",
             arg);
    audit_admin_call(x, "cache.purge", target, 200, NULL);
    free(target);
    struct cache_purge_job *j = cache_purge_job_new(x->worker, kind, arg);
    json_decref(doc);
    /* With Redis, every other gateway purges too (SPEC 4.4). */
    struct fleet *f = fleet_of(x->worker->gw);
    if (f) {
        cache_purge_new_id(j->id);
        json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "type", "purge", "kind",
                               cache_purge_kind_name(kind), "arg", j->arg, "id", j->id);
        j->fleet = true;
        j->sent = fleet_publish(f, x->worker, ev);
        json_decref(ev);
    }
    j->x = x;
    j->refs++;
    exchange_on_end(x, cache_purge_exchange_ended, j);
    cache_purge_job_start(j);
}

static bool cache_purge_id_ok(const char *id)
{
    if (!id || strlen(id) != CACHE_PURGE_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

void cache_apply_purge_event(struct worker *w, const json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    const char *arg = json_string_value(json_object_get(ev, "arg"));
    const char *id = json_string_value(json_object_get(ev, "id"));
    int k = kind && arg ? cache_purge_kind_from_name(kind) : -1;
    if (k < 0)
        return;
    struct cache_purge_job *j = cache_purge_job_new(w, (enum cache_purge_kind)k, arg);
    if (cache_purge_id_ok(id)) { /* a gateway of an older version sends none */
        memcpy(j->id, id, sizeof(j->id));
        j->report = true;
    }
    cache_purge_job_start(j);
}
