/* The limit stage: which limits apply to a request (SPEC 3.2-3.4), one
 * all-or-nothing decision in the store, and what the client is told (3.5). */
#include <string.h>

#include "fleet/fleet.h"
#include "limit/backend.h"
#include "limit/conf.h"
#include "limit/extra.h"
#include "limit/redis_script.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/str.h"

/* The route's limits for <id>: its tier's entry, else "*" for any identified
 * client; anonymous clients get only an "anonymous" entry. */
static const struct lim_route_limits *lim_route_limits(const struct cfg_route *route,
                                                       const struct identity *id)
{
    const struct lim_route_conf *r = lim_route_conf(route);
    const struct lim_route_limits *any = NULL;
    for (int i = 0; i < r->n_limits; i++) {
        if (strcmp(r->limits[i].tier, id->tier) == 0)
            return &r->limits[i];
        if (strcmp(r->limits[i].tier, "*") == 0)
            any = &r->limits[i];
    }
    return id->kind == ID_IP ? NULL : any;
}

/* The extra counters a stage asked for (limit/extra.h); NULL: none. */
static const struct lim_extras *lim_extras_of(const struct exchange *x)
{
    return x->ctx[MOD_limit];
}

void lim_set_extras(struct exchange *x, const struct lim_extras *e)
{
    x->ctx[MOD_limit] = (void *)e;
}

/* Room for the ops of <x>: its tier's and route's lists, and its extras
 * (so a plain route allocates what it always did). */
static int lim_ops_cap(const struct exchange *x)
{
    const struct lim_extras *e = lim_extras_of(x);
    int cap = 2 * SL_MAX_LIMITS_PER_LIST;
    for (int i = 0; e && i < e->n; i++)
        cap += (int)e->v[i].times;
    return cap < SL_MAX_LIMIT_OPS ? cap : SL_MAX_LIMIT_OPS;
}

/* Adds the counter of limit <l> in <scope> for <x>'s identity. Keys name
 * the scope and the limit as written, so counters survive a reload that
 * leaves them unchanged. The callers keep <n> within lim_ops_cap(). */
static void lim_add_op(struct exchange *x, struct lim_op *ops, int *n, const char *scope,
                       size_t scope_len, const struct limit *l)
{
    if (*n >= lim_ops_cap(x))
        return;
    /* "<scope>:<limit>|<identity>", copied piece by piece: this runs for
     * every limited request. */
    size_t text_len = strlen(l->text), id_len = strlen(x->identity.id);
    size_t len = scope_len + 1 + text_len + 1 + id_len;
    char *k = arena_alloc(x->arena, len + 1), *p = k;
    memcpy(p, scope, scope_len);
    p += scope_len;
    *p++ = ':';
    memcpy(p, l->text, text_len);
    p += text_len;
    *p++ = '|';
    memcpy(p, x->identity.id, id_len + 1);
    ops[*n].limit = l;
    ops[*n].key = k;
    ops[*n].key_len = len;
    (*n)++;
}

/* The extras' counters, each as many times as it counts: the stores
 * already decide a key that repeats on one working copy of its state, all
 * or nothing, so a batch of three mutations takes three from "50/h". */
static void lim_collect_extras(struct exchange *x, struct lim_op *ops, int *n)
{
    const struct lim_extras *e = lim_extras_of(x);
    for (int i = 0; e && i < e->n; i++) {
        const struct lim_extra *ex = &e->v[i];
        const struct limit *l = ex->limit;
        if (l->algorithm == LIM_DEFAULT) {
            struct limit *r = arena_alloc(x->arena, sizeof(*r));
            *r = *l;
            r->algorithm = lim_conf(x->cfg)->algorithm;
            l = r;
        }
        /* The same key each time: built once, copied. */
        int first = *n;
        lim_add_op(x, ops, n, ex->scope, strlen(ex->scope), l);
        for (unsigned t = 1; t<ex->times && * n> first && *n < lim_ops_cap(x); t++)
            ops[(*n)++] = ops[first];
    }
}

static int lim_collect(struct exchange *x, struct lim_op *ops)
{
    int n = 0;
    const struct cfg_tier *tier = cfg_find_tier(x->cfg, x->identity.tier);
    if (x->identity.n_limits) {
        /* A key's own limits replace its tier's (SPEC 5.1 overrides). */
        char scope[320];
        int len = snprintf(scope, sizeof(scope), "k:%s", x->identity.key_id);
        for (int i = 0; i < x->identity.n_limits; i++)
            lim_add_op(x, ops, &n, scope, (size_t)len, &x->identity.limits[i]);
    } else if (tier) {
        const struct lim_tier_conf *tl = lim_tier_conf(tier);
        for (int i = 0; i < tl->n_limits; i++)
            lim_add_op(x, ops, &n, tl->scope, tl->scope_len, &tl->limits[i]);
    }
    const struct lim_route_limits *rl = lim_route_limits(x->route, &x->identity);
    if (rl && rl->scope) {
        for (int i = 0; i < rl->n_limits; i++)
            lim_add_op(x, ops, &n, rl->scope, rl->scope_len, &rl->limits[i]);
    } else if (rl) {
        char scope[320];
        int len = lim_route_scope(scope, sizeof(scope), x->route, rl->tier);
        for (int i = 0; i < rl->n_limits; i++)
            lim_add_op(x, ops, &n, scope, (size_t)len, &rl->limits[i]);
    }
    lim_collect_extras(x, ops, &n);
    return n;
}

/* A denied request consumed nothing: limits that would have let it through
 * still have what they had before it. */
static void lim_uncount(struct lim_op *ops, int n, uint32_t cost)
{
    for (int i = 0; i < n; i++) {
        struct lim_decision *d = &ops[i].decision;
        if (d->allowed)
            d->remaining = d->remaining + cost > d->limit ? d->limit : d->remaining + cost;
    }
}

/* The limit the client is told about: when denied, the one that keeps it
 * out longest; otherwise the one closest to running out. */
static const struct lim_op *lim_most_restrictive(const struct lim_op *ops, int n, bool allowed)
{
    const struct lim_op *best = &ops[0];
    for (int i = 1; i < n; i++) {
        const struct lim_decision *d = &ops[i].decision, *b = &best->decision;
        if (!allowed) {
            if (!d->allowed && (b->allowed || d->retry_after_us > b->retry_after_us))
                best = &ops[i];
        } else if (d->remaining < b->remaining ||
                   (d->remaining == b->remaining && d->reset_us > b->reset_us)) {
            best = &ops[i];
        }
    }
    return best;
}

static int64_t lim_ceil_s(int64_t us)
{
    return us <= 0 ? 0 : (us + 999999) / 1000000;
}

static void lim_add_u64_header(struct exchange *x, const char *name, uint64_t v)
{
    char tmp[24];
    str_u64(tmp, v);
    exchange_add_header(x, name, tmp);
}

/* RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers):
 * one list item per applying limit, named after it; names made unique. */
/* Where op <o>'s limit comes from, to tell apart two limits of one name
 * ("hourly" of the tier and of the route): the tier's name, "key" for a
 * key's own limits, "route". Scopes are lim_collect's: "t:", "k:", "r:". */
static const char *lim_source(const struct exchange *x, const struct lim_op *o)
{
    switch (o->key[0]) {
    case 't':
        return x->identity.tier;
    case 'k':
        return "key";
    case 'g':
        return "graphql";
    default:
        return "route";
    }
}

/* IETF names: a limit's own name, unless another applying limit has the
 * same one; then each of them is named after its source ("free-hourly",
 * "route-hourly"), so a client can tell which is which. */
static void lim_ietf_name(const struct exchange *x, const struct lim_op *ops, int n, int i,
                          char *out, size_t len)
{
    const struct limit *l = ops[i].limit;
    bool clash = false;
    for (int j = 0; j < n && !clash; j++)
        clash = j != i && strcmp(ops[j].limit->name, l->name) == 0 &&
                strcmp(ops[j].key, ops[i].key) != 0;
    if (clash)
        snprintf(out, len, "%s-%s", lim_source(x, &ops[i]), l->name);
    else
        snprintf(out, len, "%s", l->name);
}

/* Is op <i> one to show? A key counted several times (the operations of a
 * batch) is shown once: by its last op when the request passed (what is
 * left after all of them), by its first when it was refused (what the
 * uncounted request had). */
static bool lim_shown_once(const struct lim_op *ops, int n, int i, bool allowed)
{
    int from = allowed ? i + 1 : 0, to = allowed ? n : i;
    for (int j = from; j < to; j++)
        if (ops[j].key_len == ops[i].key_len && memcmp(ops[j].key, ops[i].key, ops[i].key_len) == 0)
            return false;
    return true;
}

static void lim_ietf_headers(struct exchange *x, const struct lim_op *ops, int n, bool allowed,
                             const struct quota_req *q)
{
    struct buf policy = {0}, state = {0};
    for (int i = 0; i < n; i++) {
        if (!lim_shown_once(ops, n, i, allowed))
            continue;
        const struct limit *l = ops[i].limit;
        const struct lim_decision *d = &ops[i].decision;
        char name[128];
        lim_ietf_name(x, ops, n, i, name, sizeof(name));
        const char *sep = policy.len ? ", " : "";
        buf_appendf(&policy, "%s\"%s\";q=%llu", sep, name, (unsigned long long)d->limit);
        if (l->algorithm != LIM_CONCURRENCY)
            buf_appendf(&policy, ";w=%lld", (long long)(l->window_us / 1000000));
        int64_t t = d->allowed ? d->reset_us : d->retry_after_us;
        buf_appendf(&state, "%s\"%s\";r=%llu;t=%lld", sep, name, (unsigned long long)d->remaining,
                    (long long)lim_ceil_s(t));
    }
    if (q)
        quota_ietf_items(q, &policy, &state);
    if (policy.len == 0) {
        buf_release(&policy);
        buf_release(&state);
        return;
    }
    buf_append(&policy, "", 1);
    buf_append(&state, "", 1);
    exchange_add_header(x, "RateLimit-Policy", policy.data);
    exchange_add_header(x, "RateLimit", state.data);
    buf_release(&policy);
    buf_release(&state);
}

static void lim_headers(struct exchange *x, const struct lim_op *ops, int n, bool allowed,
                        const struct lim_op *shown, int64_t now_us, const struct quota_req *q)
{
    const struct lim_conf *cl = lim_conf(x->cfg);
    if (cl->header_xratelimit && shown) {
        lim_add_u64_header(x, "X-RateLimit-Limit", shown->decision.limit);
        lim_add_u64_header(x, "X-RateLimit-Remaining", shown->decision.remaining);
        lim_add_u64_header(x, "X-RateLimit-Reset",
                           (uint64_t)lim_ceil_s(now_us + shown->decision.reset_us));
    }
    if (cl->header_ietf)
        lim_ietf_headers(x, ops, n, allowed, q);
}

/* "hour", "5 minutes": the window of <l> in words. */
static void lim_window_words(const struct limit *l, char *out, size_t len)
{
    static const struct {
        int64_t us;
        const char *one, *many;
    } units[] = {{86400000000LL, "day", "days"},
                 {3600000000LL, "hour", "hours"},
                 {60000000LL, "minute", "minutes"},
                 {1000000LL, "second", "seconds"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (l->window_us % units[i].us)
            continue;
        int64_t k = l->window_us / units[i].us;
        if (k == 1)
            snprintf(out, len, "%s", units[i].one);
        else
            snprintf(out, len, "%lld %s", (long long)k, units[i].many);
        return;
    }
    snprintf(out, len, "%lld seconds", (long long)lim_ceil_s(l->window_us));
}

/* What a GraphQL 429 names (SPEC 3.5): the operation the refusing counter
 * counted when it is an extra's, else what the extras name for the whole
 * request. Names are GraphQL Names (letters, digits, '_'), so they need no
 * JSON escaping. */
static void lim_named(const struct exchange *x, const struct lim_op *shown, const char **type,
                      const char **operation)
{
    const struct lim_extras *e = lim_extras_of(x);
    if (!e)
        return;
    *type = e->type;
    *operation = e->operation;
    for (int i = 0; i < e->n; i++) {
        size_t len = strlen(e->v[i].scope);
        if (shown->key_len > len && memcmp(shown->key, e->v[i].scope, len) == 0 &&
            shown->key[len] == ':') {
            *type = e->v[i].type;
            *operation = e->v[i].operation;
            return;
        }
    }
}

/* The 429 body in the route's style (SPEC 3.5). */
static void lim_reject_body(struct exchange *x, const struct lim_op *shown, int64_t retry_s,
                            int64_t now_us, struct buf *b)
{
    const struct limit *l = shown->limit;
    char window[48];
    lim_window_words(l, window, sizeof(window));
    const char *type = NULL, *operation = NULL;
    lim_named(x, shown, &type, &operation);
    switch (x->route->rejection) {
    case CFG_REJECT_DRF:
        buf_appendf(b, "{\"detail\": \"Request was throttled. Expected available in %lld %s.\"}\n",
                    (long long)retry_s, retry_s == 1 ? "second" : "seconds");
        break;
    case CFG_REJECT_GRAPHQL:
        buf_append_str(b, "{\"errors\": [{\"message\": \"Rate limit exceeded");
        if (type && operation)
            buf_appendf(b, " for %s '%s'", type, operation);
        buf_appendf(b,
                    ". Limit: %llu requests per %llds. Try again after %lld seconds.\", "
                    "\"extensions\": {\"code\": \"RATE_LIMIT_EXCEEDED\", ",
                    (unsigned long long)shown->decision.limit, (long long)lim_ceil_s(l->window_us),
                    (long long)retry_s);
        if (type && operation)
            buf_appendf(b, "\"operation\": \"%s\", \"type\": \"%s\", ", operation, type);
        buf_appendf(b, "\"resetAt\": %lld}}]}\n", (long long)lim_ceil_s(now_us) + retry_s);
        break;
    default:
        if (l->algorithm == LIM_CONCURRENCY)
            buf_appendf(b,
                        "{\"error\": \"Rate limit exceeded\", \"message\": \"Maximum %llu "
                        "concurrent requests allowed\", \"retry_after\": %lld}\n",
                        (unsigned long long)l->count, (long long)retry_s);
        else
            buf_appendf(b,
                        "{\"error\": \"Rate limit exceeded\", \"message\": \"Maximum %llu "
                        "requests per %s allowed\", \"retry_after\": %lld}\n",
                        (unsigned long long)l->count, window, (long long)retry_s);
        break;
    }
}

static void lim_count_decision(struct exchange *x, bool allowed)
{
    const char *labels = lim_route_conf(x->route)->decision_labels[allowed ? 0 : 1];
    char made[192];
    if (!labels) {
        /* A route a module added outside `routes` (/auth/): not resolved
         * with the others, so its labels are made here. */
        lim_decision_labels(made, sizeof(made), x->route, allowed);
        labels = made;
    }
    metrics_family_add(lim_worker_of(x->worker)->decisions, labels, 1);
}

static void lim_reject(struct exchange *x, const struct lim_op *shown, int64_t now_us)
{
    int64_t retry_s = lim_ceil_s(shown->decision.retry_after_us);
    if (retry_s < 1)
        retry_s = 1;
    lim_add_u64_header(x, "Retry-After", (uint64_t)retry_s);
    struct buf b = {0};
    lim_reject_body(x, shown, retry_s, now_us, &b);
    x->refused_by = SL_REFUSED_LIMIT;
    exchange_respond(x, 429, "application/json", b.data, b.len);
    buf_release(&b);
}

/* What the client is told once the ops have their decisions. */
enum stage_result lim_finish(struct exchange *x, struct lim_op *ops, int n, uint32_t cost,
                             bool allowed, int64_t now_us, struct quota_req *q)
{
    /* Refused by the quota: the limits were not asked (nothing to show). */
    if (q && q->decided && !q->decision.allowed)
        return quota_answer(x, q);
    if (n == 0) {
        lim_headers(x, ops, 0, true, NULL, now_us, q);
        return q ? quota_answer(x, q) : STAGE_NEXT;
    }
    if (!allowed)
        lim_uncount(ops, n, cost);
    const struct lim_op *shown = lim_most_restrictive(ops, n, allowed);
    lim_headers(x, ops, n, allowed, shown, now_us, allowed ? q : NULL);
    lim_count_decision(x, allowed);
    if (!allowed) {
        lim_reject(x, shown, now_us);
        return STAGE_DONE;
    }
    return q ? quota_answer(x, q) : STAGE_NEXT;
}

/* The decision proper, once everything it needs is known. */
static enum stage_result lim_decide(struct exchange *x, bool limits, struct quota_req *q)
{
    struct lim_op *ops = arena_alloc(x->arena, sizeof(*ops) * (size_t)lim_ops_cap(x));
    int n = limits ? lim_collect(x, ops) : 0;
    if (n == 0 && !q)
        return STAGE_NEXT;
    uint32_t cost = x->route->cost ? x->route->cost : 1;
    return lim_gw_of(x->worker->gw)->backend->decide(x, ops, n, cost, q);
}

/* The limit stage: applies the tier's and the route's limits for the
 * exchange's identity, and its quota (SPEC 6), in one all-or-nothing
 * decision; adds the rate-limit and quota headers to the response;
 * answers 429 when a limit or the quota is exceeded. A route with
 * `limits: off` counts no quota either. */
static enum stage_result lim_stage(struct exchange *x)
{
    if (lim_route_conf(x->route)->limits_off || x->identity.exempt)
        return STAGE_NEXT;
    bool limits = lim_conf(x->cfg)->enabled;
    struct quota_req *q = quota_request(x);
    if (!limits && !q)
        return STAGE_NEXT;
    return lim_decide(x, limits, q);
}

/* ---- the module ------------------------------------------------------------------ */

/* Every worker sweeps some shards this often; together they cover the whole
 * store every few seconds. */
#define LIM_SWEEP_INTERVAL_MS 1000
#define LIM_SWEEP_SHARDS_PER_TICK 64

static int lim_init_process(struct gateway *gw, char **err)
{
    struct lim_gw *g = sl_calloc(1, sizeof(*g));
    g->store = lim_store_new(lim_conf(gw->cfg)->max_entries, 0);
    g->backend = fleet_of(gw) ? &lim_redis_backend : &lim_mem_backend;
    rds_script_init(&g->apply, lim_lua_apply);
    rds_script_init(&g->release, lim_lua_release);
    gw->ctx[MOD_limit] = g;
    return 0;
}

static void lim_dispose_process(struct gateway *gw)
{
    struct lim_gw *g = lim_gw_of(gw);
    lim_store_free(g->store);
    free(g);
}

static void lim_on_sweep(uv_timer_t *t)
{
    struct worker *w = t->data;
    lim_store_sweep(lim_gw_of(w->gw)->store, clock_wall_us(), LIM_SWEEP_SHARDS_PER_TICK);
}

static void lim_init_worker(struct worker *w)
{
    struct lim_worker *lw = sl_calloc(1, sizeof(*lw));
    lw->decisions = metrics_family_new(1024, "route=\"other\",outcome=\"other\"");
    w->ctx[MOD_limit] = lw;
}

static void lim_start_worker(struct worker *w)
{
    struct lim_worker *lw = lim_worker_of(w);
    uv_timer_init(&w->loop, &lw->sweep);
    lw->sweep.data = w;
    uv_timer_start(&lw->sweep, lim_on_sweep, LIM_SWEEP_INTERVAL_MS, LIM_SWEEP_INTERVAL_MS);
}

static void lim_stop_worker(struct worker *w)
{
    worker_close_handle(w, (uv_handle_t *)&lim_worker_of(w)->sweep);
}

static void lim_dispose_worker(struct worker *w)
{
    struct lim_worker *lw = lim_worker_of(w);
    metrics_family_free(lw->decisions);
    free(lw);
}

static struct metrics_family *lim_decisions_of(struct worker *w)
{
    return lim_worker_of(w)->decisions;
}

static const uint64_t *lim_fallback_of(struct worker *w)
{
    return lim_worker_of(w)->fallback;
}

static void lim_metrics(struct gateway *gw, struct buf *out)
{
    metrics_render_family(gw, out, "sluice_ratelimit_decisions_total",
                          "Rate-limit decisions, by route and outcome.", lim_decisions_of);
    struct lim_store_stats ls;
    lim_store_stats(lim_gw_of(gw)->store, &ls);
    metrics_render_single(out, "sluice_ratelimit_counters", "gauge",
                          "Rate-limit counters held in memory.", ls.entries);
    metrics_render_single(out, "sluice_ratelimit_counter_bytes", "gauge",
                          "Memory held by rate-limit counters.", ls.bytes);
    metrics_render_single(out, "sluice_ratelimit_evictions_total", "counter",
                          "Live counters dropped because the store was full.", ls.evictions);
    if (!fleet_of(gw))
        return;
    static const char *const modes[LIM_FALLBACK_N] = {"local", "allow", "deny"};
    metrics_render_fixed(gw, out, "sluice_ratelimit_fallback_total",
                         "Decisions Redis could not make, by what store.redis.on_failure did "
                         "instead.",
                         "mode", modes, LIM_FALLBACK_N, lim_fallback_of);
}

static const struct sl_stage lim_stages[] = {
    {SL_PHASE_LIMIT, false, lim_stage},
};

const struct sl_module limit_module = {
    .name = "limit",
    .conf = &lim_cfg_module,
    .init_process = lim_init_process,
    .dispose_process = lim_dispose_process,
    .init_worker = lim_init_worker,
    .start_worker = lim_start_worker,
    .stop_worker = lim_stop_worker,
    .dispose_worker = lim_dispose_worker,
    .stages = lim_stages,
    .n_stages = 1,
    .metrics = lim_metrics,
};
