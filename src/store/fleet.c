/* The fleet: per-worker Redis connections, the heartbeat that counts live
 * gateways, and the events channel. */
#include "store/fleet.h"

#include <jansson.h>
#include <pthread.h>
#include <openssl/rand.h>

#include "limit/redis_script.h"
#include "net/worker.h"
#include "util/mem.h"
#include "util/str.h"

/* Each gateway renews its membership this often; a member not renewed for
 * FLEET_MEMBER_TTL_MS is gone. Three beats of slack ride out a slow Redis. */
#define FLEET_HEARTBEAT_MS 1000
#define FLEET_MEMBER_TTL_MS 3000

/* Adds this gateway to the members (scored by expiry, on Redis's clock),
 * drops the expired, and returns how many are left. */
static const char fleet_heartbeat_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

struct fleet {
    struct gateway *gw;
    struct rds_config conn;
    char prefix[80];
    char members_key[96];
    char channel[96];
    char id[33]; /* this gateway, in the heartbeat and in the events it sends */
    struct rds_script apply, release, heartbeat;
    unsigned size;   /* atomic */
    int workers_up;  /* atomic */
    int logged_up;   /* atomic: the state last logged, -1 none yet */
    uint64_t events; /* atomic */
    struct rds *sub; /* on worker 0's loop */
    uv_timer_t beat; /* on worker 0's loop */
    struct worker *beat_worker;
    bool beat_pending;
    /* Guards the workers' connection pointers against a metrics scrape on
     * another thread while a worker closes its connection. */
    pthread_mutex_t lock;
    struct rds_stats closed; /* counters of connections already closed */
};

struct fleet *fleet_new(struct gateway *gw, const struct config *c)
{
    if (c->store.backend != CFG_BACKEND_REDIS)
        return NULL;
    struct fleet *f = sl_calloc(1, sizeof(*f));
    f->gw = gw;
    f->conn = c->store.redis.conn;
    str_copy(f->prefix, sizeof(f->prefix), c->store.redis.prefix);
    snprintf(f->members_key, sizeof(f->members_key), "%sgateways", f->prefix);
    snprintf(f->channel, sizeof(f->channel), "%sevents", f->prefix);
    uint8_t raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        sl_fatal("sluice: no randomness for the gateway id\n");
    for (int i = 0; i < 16; i++)
        snprintf(f->id + 2 * i, 3, "%02x", raw[i]);
    rds_script_init(&f->apply, lim_lua_apply);
    rds_script_init(&f->release, lim_lua_release);
    rds_script_init(&f->heartbeat, fleet_heartbeat_lua);
    f->size = 1;
    f->logged_up = -1;
    pthread_mutex_init(&f->lock, NULL);
    return f;
}

void fleet_free(struct fleet *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

unsigned fleet_size(const struct fleet *f)
{
    unsigned n = __atomic_load_n(&f->size, __ATOMIC_RELAXED);
    return n ? n : 1;
}

const char *fleet_prefix(const struct fleet *f)
{
    return f->prefix;
}

const struct rds_script *fleet_apply_script(const struct fleet *f)
{
    return &f->apply;
}

const struct rds_script *fleet_release_script(const struct fleet *f)
{
    return &f->release;
}

/* ---- connection state ---------------------------------------------------------- */

/* Logged once per change of the whole process's state, not per worker:
 * "up" when every worker is connected, "down" when none is. */
static void fleet_log_state(struct fleet *f, int up, int workers, const char *why)
{
    int want = up == workers ? 1 : up == 0 ? 0 : -2;
    if (want < 0)
        return;
    int was = __atomic_exchange_n(&f->logged_up, want, __ATOMIC_RELAXED);
    if (was == want)
        return;
    if (want)
        fprintf(stderr, "sluice: redis %s:%d reachable: limits are shared by the fleet\n",
                f->conn.host, f->conn.port);
    else
        fprintf(stderr, "sluice: redis %s:%d unreachable (%s): limiting falls back to on_failure\n",
                f->conn.host, f->conn.port, why ? why : "?");
}

static void fleet_on_state(void *arg, bool up, const char *why)
{
    struct worker *w = arg;
    struct fleet *f = w->gw->fleet;
    int n = __atomic_add_fetch(&f->workers_up, up ? 1 : -1, __ATOMIC_RELAXED);
    fleet_log_state(f, n, w->gw->n_workers, why);
}

/* ---- heartbeat ------------------------------------------------------------------ */

static void fleet_on_beat_reply(void *arg, enum rds_status st, const redisReply *reply)
{
    struct fleet *f = arg;
    f->beat_pending = false;
    /* Kept as it was when Redis does not answer: the share stays what the
     * fleet was when it was last seen. */
    if (st == RDS_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        __atomic_store_n(&f->size, (unsigned)reply->integer, __ATOMIC_RELAXED);
}

static void fleet_beat(uv_timer_t *t)
{
    struct fleet *f = t->data;
    struct worker *w = f->beat_worker;
    if (f->beat_pending || !w->redis)
        return;
    char ttl[24];
    str_u64(ttl, FLEET_MEMBER_TTL_MS);
    const char *args[] = {f->members_key, f->id, ttl};
    size_t lens[] = {strlen(args[0]), strlen(args[1]), strlen(args[2])};
    f->beat_pending = true;
    rds_eval(w->redis, &f->heartbeat, 1, 3, args, lens, fleet_on_beat_reply, f);
}

/* ---- events --------------------------------------------------------------------- */

static void fleet_on_event(void *arg, const char *payload, size_t len)
{
    struct fleet *f = arg;
    json_error_t jerr;
    json_t *doc = json_loadb(payload, len, 0, &jerr);
    const char *type = json_string_value(json_object_get(doc, "type"));
    const char *from = json_string_value(json_object_get(doc, "from"));
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const char *parg = json_string_value(json_object_get(doc, "arg"));
    /* Our own purges were applied before they were sent. */
    if (type && strcmp(type, "purge") == 0 && kind && parg && (!from || strcmp(from, f->id))) {
        int k = cache_purge_kind_from_name(kind);
        if (k >= 0) {
            cache_purge(f->gw->cache, (enum cache_purge_kind)k, parg);
            __atomic_add_fetch(&f->events, 1, __ATOMIC_RELAXED);
        }
    }
    json_decref(doc);
}

static void fleet_on_sub_state(void *arg, bool up, const char *why)
{
    /* The subscriber's state is the connections' too; nothing to add. */
}

/* A purge that does not reach Redis stays local; the admin answer says
 * whether it was sent, not whether others applied it. */
static void fleet_ignore_reply(void *arg, enum rds_status st, const redisReply *reply) {}

bool fleet_publish_purge(struct fleet *f, struct worker *w, enum cache_purge_kind kind,
                         const char *arg)
{
    if (!w->redis || !rds_is_up(w->redis))
        return false;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "type", "purge", "kind",
                            cache_purge_kind_name(kind), "arg", arg ? arg : "", "from", f->id);
    char *msg = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    const char *args[] = {"PUBLISH", f->channel, msg};
    size_t lens[] = {7, strlen(f->channel), strlen(msg)};
    rds_command(w->redis, 3, args, lens, fleet_ignore_reply, NULL);
    free(msg);
    return true;
}

/* ---- per worker ----------------------------------------------------------------- */

void fleet_worker_start(struct fleet *f, struct worker *w)
{
    struct rds *r = rds_new(&w->loop, &f->conn, fleet_on_state, w);
    pthread_mutex_lock(&f->lock);
    w->redis = r;
    pthread_mutex_unlock(&f->lock);
    if (w->id != 0)
        return;
    f->sub = rds_subscribe(&w->loop, &f->conn, f->channel, fleet_on_event, fleet_on_sub_state, f);
    f->beat_worker = w;
    uv_timer_init(&w->loop, &f->beat);
    f->beat.data = f;
    /* The first beat soon, so the fleet's size is known before an outage. */
    uv_timer_start(&f->beat, fleet_beat, 100, FLEET_HEARTBEAT_MS);
}

static void fleet_on_closed(void *arg)
{
    struct worker *w = arg;
    w->open_handles--;
}

static void fleet_on_beat_closed(uv_handle_t *h)
{
    struct fleet *f = h->data;
    f->beat_worker->open_handles--;
}

static void fleet_add_stats(struct rds_stats *to, const struct rds *r)
{
    struct rds_stats s;
    rds_get_stats(r, &s);
    to->commands += s.commands;
    to->timeouts += s.timeouts;
    to->reconnects += s.reconnects;
}

void fleet_worker_stop(struct fleet *f, struct worker *w)
{
    if (w->redis) {
        pthread_mutex_lock(&f->lock);
        struct rds *r = w->redis;
        fleet_add_stats(&f->closed, r);
        w->redis = NULL;
        pthread_mutex_unlock(&f->lock);
        w->open_handles++;
        rds_close(r, fleet_on_closed, w);
    }
    if (w->id != 0)
        return;
    if (f->sub) {
        w->open_handles++;
        rds_close(f->sub, fleet_on_closed, w);
        f->sub = NULL;
    }
    w->open_handles++;
    uv_close((uv_handle_t *)&f->beat, fleet_on_beat_closed);
}

void fleet_get_stats(struct fleet *f, struct fleet_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->size = fleet_size(f);
    out->workers = f->gw->n_workers;
    out->workers_up = __atomic_load_n(&f->workers_up, __ATOMIC_RELAXED);
    out->events_received = __atomic_load_n(&f->events, __ATOMIC_RELAXED);
    struct rds_stats sum;
    pthread_mutex_lock(&f->lock);
    sum = f->closed;
    for (int i = 0; i < f->gw->n_workers; i++)
        if (f->gw->workers[i].redis)
            fleet_add_stats(&sum, f->gw->workers[i].redis);
    pthread_mutex_unlock(&f->lock);
    out->commands = sum.commands;
    out->timeouts = sum.timeouts;
    out->reconnects = sum.reconnects;
}
