/* The cache stage (SPEC 4.1-4.3) and the purge function (4.4). */
#include "cache/cache.h"
#include "cache/conf.h"

#include <llhttp.h>
#include <pthread.h>
#include <unistd.h>

#include "auth/conf.h"
#include "cache/rules.h"
#include "cache/store.h"
#include "modules.h"
#include "obs/metrics.h"
#include "proxy/proxy.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/lock.h"
#include "util/mem.h"
#include "util/siphash.h"
#include "util/str.h"

/* How often a coalesced miss looks whether the fill it waits for is done. */
#define CACHE_WAIT_TICK_MS 5
#define CACHE_FILL_BUCKETS 256
#define CACHE_MAX_VARY 512

/* A miss being fetched from the upstream: concurrent misses for the same key
 * wait for it instead of asking the upstream too (nginx's proxy_cache_lock). */
struct cache_fill {
    struct cache_fill *next;
    char *key;
};

struct cache {
    struct cache_store *store;
    struct siphash_key cred_key[2]; /* digests of credentials in keys */
    pthread_mutex_t lock;           /* guards fills */
    struct cache_fill *fills[CACHE_FILL_BUCKETS];
};

struct cache_wait;

/* One exchange's dealings with the cache; lives in the exchange's arena. */
struct cache_state {
    struct exchange *x;
    struct cache *cache;
    const struct cache_route_conf *rc;
    char *primary; /* the key without Vary values */
    size_t primary_len;
    char *key;
    size_t key_len;
    char *url; /* path?sorted-query, what purges match */
    size_t url_len;
    bool credentials; /* the key holds a digest of the caller's credentials */
    bool filling;     /* this exchange registered the fill of <fill_key> */
    char *fill_key;   /* <key> when registered: the response's Vary may change <key> */
    size_t fill_key_len;
    struct cache_entry *stale; /* kept for stale-if-error */
    struct cache_wait *wait;
    int64_t wait_until_us;

    /* capture */
    struct response_filter filter;
    bool capturing;
    int status;
    struct buf head, body;
    struct cache_control cc;
    char vary[CACHE_MAX_VARY];
    char *etag;
    int64_t last_modified;
    int64_t age_s; /* the upstream's Age: time spent in caches before us */
    const char *tags[SL_MAX_CACHE_TAGS * 2];
    int n_tags;
};

struct cache_wait {
    uv_timer_t timer;
    struct cache_state *cs; /* NULL once the exchange is gone */
};

static enum stage_result cache_lookup(struct cache_state *cs, bool after_wait);
static void cache_count(struct exchange *x, enum cache_result r);

/* ---- the process-wide cache ------------------------------------------------------ */

struct cache *cache_new(uint64_t max_bytes, uint64_t max_object_size)
{
    struct cache *c = sl_calloc(1, sizeof(*c));
    /* Each shard holds max_bytes / shards: keep that at least twice the
     * largest object (with bookkeeping), or such objects would never be
     * stored. Up to four shards per core otherwise. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t shards = 1, want = (uint64_t)(cores > 0 ? cores : 1) * 4;
    while (shards * 2 <= want && max_bytes / (shards * 2) >= 2 * max_object_size)
        shards *= 2;
    c->store = cache_store_new(max_bytes, (unsigned)shards);
    siphash_key_random(&c->cred_key[0]);
    siphash_key_random(&c->cred_key[1]);
    sl_mutex_init_adaptive(&c->lock);
    return c;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < CACHE_FILL_BUCKETS; i++) {
        struct cache_fill *f = c->fills[i];
        while (f) {
            struct cache_fill *next = f->next;
            free(f->key);
            free(f);
            f = next;
        }
    }
    cache_store_free(c->store);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
    struct cache_store_stats s;
    cache_store_stats(c->store, &s);
    out->entries = s.entries;
    out->bytes = s.bytes;
    out->evictions = s.evictions;
}

static struct cache_fill **cache_fill_slot(struct cache *c, const char *key, size_t len)
{
    unsigned b = (unsigned)siphash24(&c->cred_key[0], key, len) % CACHE_FILL_BUCKETS;
    struct cache_fill **p = &c->fills[b];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

/* Registers a fill of <key>; false when one is already running. */
static bool cache_fill_begin(struct cache *c, const char *key, size_t len)
{
    pthread_mutex_lock(&c->lock);
    struct cache_fill **p = cache_fill_slot(c, key, len);
    bool mine = *p == NULL;
    if (mine) {
        struct cache_fill *f = sl_calloc(1, sizeof(*f));
        f->key = sl_strndup(key, len);
        *p = f;
    }
    pthread_mutex_unlock(&c->lock);
    return mine;
}

static void cache_fill_end(struct cache *c, const char *key, size_t len)
{
    pthread_mutex_lock(&c->lock);
    struct cache_fill **p = cache_fill_slot(c, key, len);
    struct cache_fill *f = *p;
    if (f)
        *p = f->next;
    pthread_mutex_unlock(&c->lock);
    if (f) {
        free(f->key);
        free(f);
    }
}

static bool cache_fill_running(struct cache *c, const char *key, size_t len)
{
    pthread_mutex_lock(&c->lock);
    bool running = *cache_fill_slot(c, key, len) != NULL;
    pthread_mutex_unlock(&c->lock);
    return running;
}

/* ---- keys --------------------------------------------------------------------- */

/* Can <h> carry a credential? Authorization and Cookie, X-API-Key (the
 * default key header, which applications also use for keys of their own),
 * and every header <ac> (identity.api_key_headers) reads keys from. */
static bool cache_is_credential(const struct auth_conf *ac, const struct sl_header *h)
{
    if (str_ieq(h->name, h->name_len, "authorization") || str_ieq(h->name, h->name_len, "cookie") ||
        str_ieq(h->name, h->name_len, "x-api-key"))
        return true;
    for (int i = 0; ac && i < ac->n_api_key_headers; i++)
        if (str_ieq(h->name, h->name_len, ac->api_key_headers[i]))
            return true;
    return false;
}

/* A 128-bit keyed digest of the request's credentials, or false when it
 * carries none: responses to one caller are never served to another. Every
 * header that can carry a credential goes in, length-prefixed, with its name
 * lower-cased, in request order. */
static bool cache_credentials_digest(struct cache *c, const struct exchange *x, char out[33])
{
    const struct auth_conf *ac = auth_conf(x->cfg);
    struct buf b = {0};
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *h = &x->req_headers.v[i];
        if (!cache_is_credential(ac, h))
            continue;
        cache_key_field(&b, 'n', h->name, h->name_len);
        for (size_t j = b.len - h->name_len; j < b.len; j++) /* names are case-insensitive */
            b.data[j] = (char)(b.data[j] >= 'A' && b.data[j] <= 'Z' ? b.data[j] + 32 : b.data[j]);
        cache_key_field(&b, 'v', h->value, h->value_len);
    }
    if (!b.len)
        return false;
    uint64_t d0 = siphash24(&c->cred_key[0], b.data, b.len);
    uint64_t d1 = siphash24(&c->cred_key[1], b.data, b.len);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)d0, (unsigned long long)d1);
    buf_release(&b);
    return true;
}

/* The url purges match: path, and the query with its parameters sorted. */
static void cache_url(const char *path, size_t path_len, const char *query, size_t query_len,
                      struct buf *out)
{
    buf_append(out, path, path_len);
    if (query && query_len) {
        struct buf q = {0};
        cache_query_normalize(query, query_len, &q);
        if (q.len) {
            buf_append(out, "?", 1);
            buf_append(out, q.data, q.len);
        }
        buf_release(&q);
    }
}

/* The primary key (cache_key_primary): method class, host, url and the
 * credentials digest; then, in request order, every header frameworks read
 * as the method, host or URL (cache_is_override_header), so that a request
 * with "X-Original-URL: /admin" fills and reads an entry of its own. */
static void cache_build_primary(struct cache_state *cs)
{
    struct exchange *x = cs->x;
    struct buf url = {0};
    cache_url(x->path, x->path_len, x->query, x->query_len, &url);
    cs->url = arena_strndup(x->arena, url.data ? url.data : "", url.len);
    cs->url_len = url.len;
    char digest[33];
    cs->credentials = !cs->rc->shared && cache_credentials_digest(cs->cache, x, digest);
    struct buf k = {0};
    cache_key_primary(&k, x->host, x->host_len, cs->url, cs->url_len,
                      cs->credentials ? digest : NULL);
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *h = &x->req_headers.v[i];
        if (!cache_is_override_header(h->name, h->name_len))
            continue;
        cache_key_field(&k, 'o', h->name, h->name_len); /* 'n' starts the Vary fields */
        cache_key_field(&k, 'v', h->value, h->value_len);
    }
    cs->primary = arena_strndup(x->arena, k.data, k.len);
    cs->primary_len = k.len;
    buf_release(&k);
    buf_release(&url);
}

/* The full key: the primary key plus the request's values of the headers
 * named by <vary> (lower-case, comma-separated). */
static void cache_build_key(struct cache_state *cs, const char *vary)
{
    struct exchange *x = cs->x;
    struct buf k = {0};
    buf_append(&k, cs->primary, cs->primary_len);
    const char *p = vary ? vary : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)n, p);
        const struct sl_header *h = exchange_req_header(x, name);
        cache_key_vary(&k, p, n, h ? h->value : NULL, h ? h->value_len : 0);
        p += n + (p[n] == ',');
    }
    cs->key = arena_strndup(x->arena, k.data, k.len);
    cs->key_len = k.len;
    buf_release(&k);
}

/* ---- serving an entry --------------------------------------------------------------- */

static void cache_parse_head(struct exchange *x, const struct cache_entry *e, struct sl_headers *h)
{
    const char *p = e->head, *end = e->head + e->head_len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol)
            break;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            sl_headers_add(x->arena, h, p, (size_t)(colon - p), v, (size_t)(eol - v));
        }
        p = eol + 2;
    }
}

/* Would a conditional request be answered 304 by <e>? */
static bool cache_not_modified(const struct exchange *x, const struct cache_entry *e)
{
    const struct sl_header *inm = exchange_req_header(x, "if-none-match");
    if (inm)
        return e->etag && cache_etag_matches(inm->value, inm->value_len, e->etag, strlen(e->etag));
    const struct sl_header *ims = exchange_req_header(x, "if-modified-since");
    if (!ims || e->last_modified < 0)
        return false;
    int64_t t = cache_http_date(ims->value, ims->value_len);
    return t >= 0 && e->last_modified <= t;
}

static void cache_serve(struct cache_state *cs, struct cache_entry *e, const char *label,
                        bool fresh)
{
    struct exchange *x = cs->x;
    int64_t now = clock_wall_us();
    char age[24];
    str_u64(age, (uint64_t)cache_age_s(&e->times, now));
    exchange_set_header(x, "X-Cache", label); /* a miss turned stale says so once */
    exchange_set_header(x, "Age", age);
    struct sl_headers h = {0};
    cache_parse_head(x, e, &h);
    if (fresh && cache_not_modified(x, e)) {
        exchange_send_head(x, 304, &h, -1, true);
        exchange_send_end(x);
        return;
    }
    bool no_body = x->method == HTTP_HEAD || e->status == 204 || e->status == 304;
    exchange_send_head(x, e->status, &h, (int64_t)e->body_len, no_body);
    exchange_send_body(x, e->body, e->body_len);
    exchange_send_end(x);
}

/* ---- capture --------------------------------------------------------------------- */

/* Headers that describe this delivery, not the stored response. */
static bool cache_header_not_stored(const struct sl_header *h)
{
    return str_ieq(h->name, h->name_len, "age") || str_ieq(h->name, h->name_len, "x-cache") ||
           str_ieq(h->name, h->name_len, "set-cookie");
}

static void cache_add_tags(struct cache_state *cs, const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && cs->n_tags < (int)(sizeof(cs->tags) / sizeof(cs->tags[0]))) {
        while (i < len && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i > start)
            cs->tags[cs->n_tags++] = arena_strndup(cs->x->arena, v + start, i - start);
    }
}

/* The upstream's response head: serve stale instead of an error when
 * allowed, else decide whether to keep a copy. */
static bool cache_tap_head(struct exchange *x, void *arg, int status, const struct sl_headers *h,
                           int64_t content_length, bool no_body)
{
    struct cache_state *cs = arg;
    int64_t now = clock_wall_us();
    if (status >= 500 && cs->stale && cache_usable_on_error(&cs->stale->times, now)) {
        exchange_remove_filter(x, &cs->filter);
        cache_count(x, CACHE_RESULT_STALE);
        cache_serve(cs, cs->stale, "STALE", false);
        return true;
    }
    if (x->method != HTTP_GET)
        return false; /* a HEAD answer has no body to keep */
    cache_cc_init(&cs->cc);
    bool set_cookie = false, vary_star = false;
    struct buf vary = {0};
    for (int i = 0; i < cs->rc->n_tags; i++)
        cs->tags[cs->n_tags++] = cs->rc->tags[i];
    for (int i = 0; h && i < h->n; i++) {
        const struct sl_header *f = &h->v[i];
        if (str_ieq(f->name, f->name_len, "cache-control"))
            cache_cc_parse(&cs->cc, f->value, f->value_len);
        else if (str_ieq(f->name, f->name_len, "set-cookie"))
            set_cookie = true;
        else if (str_ieq(f->name, f->name_len, "vary"))
            vary_star |= !cache_vary_names(f->value, f->value_len, &vary);
        else if (str_ieq(f->name, f->name_len, "etag"))
            cs->etag = arena_strndup(x->arena, f->value, f->value_len);
        else if (str_ieq(f->name, f->name_len, "last-modified"))
            cs->last_modified = cache_http_date(f->value, f->value_len);
        else if (str_ieq(f->name, f->name_len, "age"))
            cs->age_s = cache_parse_age(f->value, f->value_len);
        else if (str_ieq(f->name, f->name_len, "cache-tag") ||
                 str_ieq(f->name, f->name_len, "surrogate-key"))
            cache_add_tags(cs, f->value, f->value_len);
    }
    /* Several Vary headers were joined above; normalise the whole list once. */
    struct buf names = {0};
    if (!vary_star && vary.len)
        cache_vary_names(vary.data, vary.len, &names);
    snprintf(cs->vary, sizeof(cs->vary), "%.*s", (int)names.len, names.data ? names.data : "");
    buf_release(&names);
    buf_release(&vary);
    const struct cache_route_conf *rc = cs->rc;
    int64_t ttl = cache_fresh_ms(&cs->cc, rc->ttl_ms, rc->respect_origin, cs->age_s);
    int64_t stale = rc->stale_while_revalidate_ms > rc->stale_if_error_ms
                        ? rc->stale_while_revalidate_ms
                        : rc->stale_if_error_ms;
    enum cache_verdict v = cache_storable(x->method, status, &cs->cc, set_cookie, vary_star,
                                          cs->credentials, ttl, stale);
    uint64_t max = cache_conf(x->cfg)->max_object_size;
    if (v != CACHE_STORE || (content_length >= 0 && (uint64_t)content_length > max))
        return false;
    cs->capturing = true;
    cs->status = status;
    for (int i = 0; h && i < h->n; i++) {
        const struct sl_header *f = &h->v[i];
        if (cache_header_not_stored(f))
            continue;
        buf_append(&cs->head, f->name, f->name_len);
        buf_append(&cs->head, ": ", 2);
        buf_append(&cs->head, f->value, f->value_len);
        buf_append(&cs->head, "\r\n", 2);
    }
    return false;
}

static void cache_tap_body(struct exchange *x, void *arg, const char *data, size_t len)
{
    struct cache_state *cs = arg;
    if (!cs->capturing)
        return;
    if (cs->body.len + len > cache_conf(x->cfg)->max_object_size) {
        cs->capturing = false; /* too big: it streams through uncached */
        buf_release(&cs->body);
        return;
    }
    buf_append(&cs->body, data, len);
}

static void cache_tap_end(struct exchange *x, void *arg)
{
    struct cache_state *cs = arg;
    if (!cs->capturing)
        return;
    cs->capturing = false;
    /* The upstream's Vary decides the key this response goes under. */
    cache_store_set_vary(cs->cache->store, cs->primary, cs->primary_len, cs->vary);
    cache_build_key(cs, cs->vary);
    const struct cache_route_conf *rc = cs->rc;
    int64_t now = clock_wall_us();
    int64_t ttl = cache_fresh_ms(&cs->cc, rc->ttl_ms, rc->respect_origin, cs->age_s);
    struct cache_entry *e = cache_entry_new(cs->key, cs->key_len, cs->url, cs->url_len, cs->status,
                                            cs->head.data ? cs->head.data : "", cs->head.len,
                                            cs->body.data ? cs->body.data : "", cs->body.len,
                                            cs->etag, cs->last_modified, cs->tags, cs->n_tags);
    cache_times_at(now, ttl, rc->stale_while_revalidate_ms, rc->stale_if_error_ms, &e->times);
    e->times.stored_us -= cs->age_s * 1000000; /* the Age we send includes the upstream's */
    cache_store_put(cs->cache->store, e);
    buf_release(&cs->head);
    buf_release(&cs->body);
}

/* ---- the exchange's end --------------------------------------------------------------- */

static void cache_on_wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void cache_stop_waiting(struct cache_state *cs)
{
    if (!cs->wait)
        return;
    cs->wait->cs = NULL;
    uv_timer_stop(&cs->wait->timer);
    cs->wait->timer.data = cs->wait;
    uv_close((uv_handle_t *)&cs->wait->timer, cache_on_wait_closed);
    cs->wait = NULL;
}

static void cache_on_end(struct exchange *x, void *arg)
{
    struct cache_state *cs = arg;
    cache_stop_waiting(cs);
    if (cs->filling)
        cache_fill_end(cs->cache, cs->fill_key, cs->fill_key_len);
    cs->filling = false;
    if (cs->stale)
        cache_entry_unref(cs->stale);
    cs->stale = NULL;
    buf_release(&cs->head);
    buf_release(&cs->body);
}

/* ---- misses, waits, refreshes -------------------------------------------------------- */

static void cache_capture(struct cache_state *cs)
{
    cs->filter.head = cache_tap_head;
    cs->filter.body = cache_tap_body;
    cs->filter.end = cache_tap_end;
    cs->filter.arg = cs;
    exchange_add_filter(cs->x, &cs->filter);
}

static void cache_on_wait_tick(uv_timer_t *t)
{
    struct cache_wait *w = t->data;
    struct cache_state *cs = w->cs;
    if (!cs)
        return;
    if (cache_fill_running(cs->cache, cs->key, cs->key_len) && clock_wall_us() < cs->wait_until_us)
        return;
    cache_stop_waiting(cs);
    if (cache_lookup(cs, true) == STAGE_NEXT)
        exchange_resume(cs->x);
}

static void cache_wait_for_fill(struct cache_state *cs)
{
    struct cache_wait *w = sl_calloc(1, sizeof(*w));
    w->cs = cs;
    uv_timer_init(&cs->x->worker->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, cache_on_wait_tick, CACHE_WAIT_TICK_MS, CACHE_WAIT_TICK_MS);
    cs->wait = w;
    cs->wait_until_us = clock_wall_us() + cs->x->cfg->server.timeouts.upstream_read_ms * 1000;
}

/* stale-while-revalidate: fetch the entry again with a request of our own
 * while the client is answered from the stale copy. */
static void cache_refresh(struct cache_state *cs)
{
    static const stage_fn refresh_stages[] = {px_stage};
    struct exchange *x = cs->x;
    struct exchange *r = exchange_new_detached(x->worker, refresh_stages, 1);
    if (r->cfg != x->cfg) { /* a reload came between: the route may be gone */
        cache_fill_end(cs->cache, cs->key, cs->key_len);
        exchange_free(r);
        return;
    }
    r->method = HTTP_GET;
    r->method_name = "GET";
    r->http_minor = 1;
    r->target = arena_strndup(r->arena, x->target, x->target_len);
    r->target_len = x->target_len;
    r->path = arena_strndup(r->arena, x->path, x->path_len);
    r->path_len = x->path_len;
    r->host = x->host ? arena_strndup(r->arena, x->host, x->host_len) : NULL;
    r->host_len = x->host_len;
    for (int i = 0; i < x->req_headers.n; i++) {
        const struct sl_header *h = &x->req_headers.v[i];
        if (str_ieq(h->name, h->name_len, "if-none-match") ||
            str_ieq(h->name, h->name_len, "if-modified-since") ||
            str_ieq(h->name, h->name_len, "cache-control"))
            continue; /* we want the whole response, fresh */
        sl_headers_add(r->arena, &r->req_headers, h->name, h->name_len, h->value, h->value_len);
    }
    str_copy(r->peer_ip, sizeof(r->peer_ip), x->peer_ip);
    str_copy(r->client_ip, sizeof(r->client_ip), x->client_ip);
    worker_request_id(x->worker, r->request_id);
    r->identity = x->identity;
    r->route = x->route;
    struct cache_state *rs = arena_calloc(r->arena, sizeof(*rs));
    *rs = (struct cache_state){.x = r, .cache = cs->cache, .rc = cs->rc, .filling = true};
    rs->primary = arena_strndup(r->arena, cs->primary, cs->primary_len);
    rs->primary_len = cs->primary_len;
    rs->key = arena_strndup(r->arena, cs->key, cs->key_len);
    rs->key_len = cs->key_len;
    rs->fill_key = rs->key;
    rs->fill_key_len = rs->key_len;
    rs->url = arena_strndup(r->arena, cs->url, cs->url_len);
    rs->url_len = cs->url_len;
    rs->credentials = cs->credentials;
    rs->last_modified = -1;
    exchange_on_end(r, cache_on_end, rs);
    cache_capture(rs);
    exchange_run(r);
}

/* Look the key up and answer, wait, or send the request on (STAGE_NEXT).
 * <after_wait>: a coalesced miss whose fill ended; it does not queue again. */
static enum stage_result cache_lookup(struct cache_state *cs, bool after_wait)
{
    struct exchange *x = cs->x;
    char vary[CACHE_MAX_VARY];
    if (!cache_store_get_vary(cs->cache->store, cs->primary, cs->primary_len, vary, sizeof(vary)))
        vary[0] = '\0';
    cache_build_key(cs, vary);
    struct cache_control req = {0};
    cache_cc_init(&req);
    const struct sl_header *h = exchange_req_header(x, "cache-control");
    if (h)
        cache_cc_parse(&req, h->value, h->value_len);
    h = exchange_req_header(x, "pragma");
    bool revalidate = req.no_cache || (h && str_ieq(h->value, h->value_len, "no-cache"));

    int64_t now = clock_wall_us();
    struct cache_entry *e = cache_store_get(cs->cache->store, cs->key, cs->key_len);
    enum cache_freshness f = e ? cache_freshness_at(&e->times, now) : CACHE_EXPIRED;
    if (f == CACHE_FRESH && !revalidate) {
        cache_count(x, CACHE_RESULT_HIT);
        cache_serve(cs, e, "HIT", true);
        cache_entry_unref(e);
        return STAGE_DONE;
    }
    if (f == CACHE_REVALIDATE && !revalidate) {
        cache_count(x, CACHE_RESULT_STALE);
        if (cache_fill_begin(cs->cache, cs->key, cs->key_len))
            cache_refresh(cs);
        cache_serve(cs, e, "STALE", false);
        cache_entry_unref(e);
        return STAGE_DONE;
    }
    /* Anything still within its stale-if-error window is kept for when the
     * upstream fails; released when the exchange ends. */
    if (e && cache_usable_on_error(&e->times, now) && !cs->stale)
        cs->stale = e;
    else if (e)
        cache_entry_unref(e);

    if (!after_wait && !cache_fill_begin(cs->cache, cs->key, cs->key_len)) {
        cache_wait_for_fill(cs);
        return STAGE_WAIT;
    }
    cs->filling = !after_wait;
    cs->fill_key = cs->key;
    cs->fill_key_len = cs->key_len;
    cache_count(x, CACHE_RESULT_MISS);
    exchange_set_header(x, "X-Cache", "MISS");
    cache_capture(cs);
    return STAGE_NEXT;
}

static void cache_count(struct exchange *x, enum cache_result r)
{
    uint64_t *results = x->worker->ctx[MOD_cache];
    metrics_counter_add(&results[r], 1);
}

enum stage_result cache_stage(struct exchange *x)
{
    const struct cache_route_conf *rc = cache_route_conf(x->route);
    if (!rc->enabled)
        return STAGE_NEXT;
    if (x->method != HTTP_GET && x->method != HTTP_HEAD) {
        cache_count(x, CACHE_RESULT_BYPASS);
        exchange_set_header(x, "X-Cache", "BYPASS");
        return STAGE_NEXT;
    }
    struct cache_state *cs = arena_calloc(x->arena, sizeof(*cs));
    cs->x = x;
    cs->cache = x->worker->gw->ctx[MOD_cache];
    cs->rc = rc;
    cs->last_modified = -1;
    exchange_on_end(x, cache_on_end, cs);
    cache_build_primary(cs);
    return cache_lookup(cs, false);
}

/* ---- purging --------------------------------------------------------------------------- */

uint64_t cache_purge(struct cache *c, enum cache_purge_kind kind, const char *arg)
{
    switch (kind) {
    case CACHE_PURGE_KEY: {
        const char *q = strchr(arg, '?');
        size_t plen = q ? (size_t)(q - arg) : strlen(arg);
        struct buf url = {0};
        cache_url(arg, plen, q ? q + 1 : NULL, q ? strlen(q + 1) : 0, &url);
        uint64_t n = cache_store_purge_url(c->store, url.data ? url.data : "", url.len);
        buf_release(&url);
        return n;
    }
    case CACHE_PURGE_PREFIX:
        return cache_store_purge_prefix(c->store, arg, strlen(arg));
    case CACHE_PURGE_PATTERN:
        return cache_store_purge_pattern(c->store, arg);
    case CACHE_PURGE_TAG:
        return cache_store_purge_tag(c->store, arg);
    case CACHE_PURGE_ALL:
        return cache_store_purge_all(c->store);
    }
    return 0;
}

static const char *const cache_purge_kinds[] = {
    [CACHE_PURGE_KEY] = "key", [CACHE_PURGE_PREFIX] = "prefix", [CACHE_PURGE_PATTERN] = "pattern",
    [CACHE_PURGE_TAG] = "tag", [CACHE_PURGE_ALL] = "all",
};

const char *cache_purge_kind_name(enum cache_purge_kind kind)
{
    return cache_purge_kinds[kind];
}

int cache_purge_kind_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(cache_purge_kinds) / sizeof(cache_purge_kinds[0]); i++)
        if (strcmp(cache_purge_kinds[i], name) == 0)
            return (int)i;
    return -1;
}
