/* The fleet: per-worker Redis connections, the heartbeat that counts live
 * gateways, and the events channel. */
#include "fleet/fleet.h"

#include <pthread.h>
#include <openssl/rand.h>

#include "modules.h"
#include "obs/metrics.h"
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
    struct rds_script heartbeat;
    unsigned size;  /* atomic */
    int workers_up; /* atomic */
    /* Per worker (its loop thread only): was it last told up? A connection
     * that never came up is told "down" first; that must not count as a
     * worker going down, or workers_up never reaches the workers again. */
    bool worker_told_up[SL_MAX_WORKERS];
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

struct fleet *fleet_of(const struct gateway *gw)
{
    return gw->ctx[MOD_fleet];
}

struct rds *fleet_redis(const struct worker *w)
{
    return w->ctx[MOD_fleet];
}

static int fleet_init_process(struct gateway *gw, char **err)
{
    const struct config *c = gw->cfg;
    if (c->store.backend != CFG_BACKEND_REDIS)
        return 0;
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
    rds_script_init(&f->heartbeat, fleet_heartbeat_lua);
    f->size = 1;
    f->logged_up = -1;
    pthread_mutex_init(&f->lock, NULL);
    gw->ctx[MOD_fleet] = f;
    return 0;
}

static void fleet_dispose_process(struct gateway *gw)
{
    struct fleet *f = fleet_of(gw);
    if (!f)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f);
    gw->ctx[MOD_fleet] = NULL;
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
    struct fleet *f = fleet_of(w->gw);
    bool *was_up = &f->worker_told_up[w->id];
    int delta = up == *was_up ? 0 : up ? 1 : -1;
    *was_up = up;
    int n = __atomic_add_fetch(&f->workers_up, delta, __ATOMIC_RELAXED);
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
    struct rds *r = fleet_redis(w);
    if (f->beat_pending || !r)
        return;
    char ttl[24];
    str_u64(ttl, FLEET_MEMBER_TTL_MS);
    const char *args[] = {f->members_key, f->id, ttl};
    size_t lens[] = {strlen(args[0]), strlen(args[1]), strlen(args[2])};
    f->beat_pending = true;
    rds_eval(r, &f->heartbeat, 1, 3, args, lens, fleet_on_beat_reply, f);
}

/* ---- events --------------------------------------------------------------------- */

/* The module whose event types include <type>, and that type. */
static const struct sl_event_type *fleet_event_type(const char *type)
{
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++)
        for (const struct sl_event_type *t = mods[m]->events; t && t->type; t++)
            if (strcmp(t->type, type) == 0)
                return t;
    return NULL;
}

static void fleet_on_event(void *arg, const char *payload, size_t len)
{
    struct fleet *f = arg;
    json_error_t jerr;
    json_t *doc = json_loadb(payload, len, 0, &jerr);
    const char *type = json_string_value(json_object_get(doc, "type"));
    const char *from = json_string_value(json_object_get(doc, "from"));
    /* Our own events were applied before they were sent. */
    const struct sl_event_type *t =
        type && (!from || strcmp(from, f->id)) ? fleet_event_type(type) : NULL;
    if (t) {
        t->apply(f->beat_worker, doc);
        __atomic_add_fetch(&f->events, 1, __ATOMIC_RELAXED);
    }
    json_decref(doc);
}

static void fleet_on_sub_state(void *arg, bool up, const char *why)
{
    /* The subscriber's state is the connections' too; nothing to add. */
}

/* An event that does not reach Redis stays local; the caller says whether
 * it was sent, not whether others applied it. */
static void fleet_ignore_reply(void *arg, enum rds_status st, const redisReply *reply) {}

bool fleet_publish(struct fleet *f, struct worker *w, json_t *event)
{
    struct rds *r = fleet_redis(w);
    if (!r || !rds_is_up(r))
        return false;
    json_object_set_new(event, "from", json_string(f->id));
    char *msg = json_dumps(event, JSON_COMPACT);
    const char *args[] = {"PUBLISH", f->channel, msg};
    size_t lens[] = {7, strlen(f->channel), strlen(msg)};
    rds_command(r, 3, args, lens, fleet_ignore_reply, NULL);
    free(msg);
    return true;
}

/* ---- per worker ----------------------------------------------------------------- */

static void fleet_start_worker(struct worker *w)
{
    struct fleet *f = fleet_of(w->gw);
    if (!f)
        return;
    struct rds *r = rds_new(&w->loop, &f->conn, fleet_on_state, w);
    pthread_mutex_lock(&f->lock);
    w->ctx[MOD_fleet] = r;
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

static void fleet_stop_worker(struct worker *w)
{
    struct fleet *f = fleet_of(w->gw);
    if (!f)
        return;
    if (fleet_redis(w)) {
        pthread_mutex_lock(&f->lock);
        struct rds *r = fleet_redis(w);
        fleet_add_stats(&f->closed, r);
        w->ctx[MOD_fleet] = NULL;
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

static void fleet_metrics(struct gateway *gw, struct buf *out)
{
    struct fleet *f = fleet_of(gw);
    if (!f)
        return;
    int workers_up = __atomic_load_n(&f->workers_up, __ATOMIC_RELAXED);
    struct rds_stats sum;
    pthread_mutex_lock(&f->lock);
    sum = f->closed;
    for (int i = 0; i < gw->n_workers; i++)
        if (fleet_redis(&gw->workers[i]))
            fleet_add_stats(&sum, fleet_redis(&gw->workers[i]));
    pthread_mutex_unlock(&f->lock);
    metrics_render_single(out, "sluice_redis_up", "gauge",
                          "1 when every worker is connected to Redis, else 0.",
                          workers_up == gw->n_workers);
    metrics_render_single(out, "sluice_redis_connected_workers", "gauge",
                          "Workers whose Redis connection is up.", (unsigned long long)workers_up);
    metrics_render_single(out, "sluice_fleet_gateways", "gauge",
                          "Live gateways sharing this Redis, as last seen (the local share "
                          "divides by it).",
                          fleet_size(f));
    metrics_render_single(out, "sluice_redis_commands_total", "counter", "Commands sent to Redis.",
                          sum.commands);
    metrics_render_single(out, "sluice_redis_timeouts_total", "counter",
                          "Redis commands not answered within store.redis.timeout.", sum.timeouts);
    metrics_render_single(out, "sluice_redis_reconnects_total", "counter",
                          "Redis connections re-established.", sum.reconnects);
    metrics_render_single(out, "sluice_fleet_events_total", "counter",
                          "Events (purges, key changes) received from other gateways.",
                          __atomic_load_n(&f->events, __ATOMIC_RELAXED));
}

/* Redis is "up" for the stats tick as for sluice_redis_up: every worker
 * connected. */
static void fleet_stats(struct gateway *gw, struct sl_stats *out)
{
    struct fleet *f = fleet_of(gw);
    if (!f)
        return;
    out->redis = __atomic_load_n(&f->workers_up, __ATOMIC_RELAXED) == gw->n_workers;
    out->fleet = fleet_size(f);
}

const struct sl_module fleet_module = {
    .name = "fleet",
    .init_process = fleet_init_process,
    .dispose_process = fleet_dispose_process,
    .start_worker = fleet_start_worker,
    .stop_worker = fleet_stop_worker,
    .metrics = fleet_metrics,
    .stats = fleet_stats,
};
