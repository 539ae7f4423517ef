#include "admin/admin.h"

#include <jansson.h>
#include <llhttp.h>

#include "cache/cache.h"

#include "net/worker.h"
#include "obs/metrics.h"
#include "store/fleet.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/str.h"

enum stage_result admin_stage_auth(struct exchange *x)
{
    const struct sl_header *h = exchange_req_header(x, "authorization");
    const char *token = x->cfg->admin.token;
    if (h && h->value_len > 7 && str_ieq(h->value, 7, "bearer ") &&
        str_ct_eq(h->value + 7, h->value_len - 7, token, strlen(token)))
        return STAGE_NEXT;
    exchange_add_header(x, "WWW-Authenticate", "Bearer realm=\"sluice-admin\"");
    exchange_respond_error(x, 401, "a valid admin token is required (Authorization: Bearer ...)");
    return STAGE_DONE;
}

static bool admin_is(const struct exchange *x, int method, const char *path)
{
    return x->method == method && strcmp(x->path, path) == 0;
}

static void admin_health(struct exchange *x)
{
    struct gateway *gw = x->worker->gw;
    struct buf b = {0};
    buf_appendf(&b,
                "{\"status\": \"ok\", \"version\": \"%s\", \"workers\": %d, "
                "\"connections\": %d, \"uptime_seconds\": %lld}\n",
                SLUICE_VERSION, gw->n_workers, __atomic_load_n(&gw->n_conns, __ATOMIC_RELAXED),
                (long long)((clock_wall_us() - gw->started_wall_us) / 1000000));
    exchange_respond(x, 200, "application/json", b.data, b.len);
    buf_release(&b);
}

static void admin_metrics(struct exchange *x)
{
    struct buf b = {0};
    metrics_render(x->worker->gw, &b);
    exchange_respond(x, 200, "text/plain; version=0.0.4", b.data, b.len);
    buf_release(&b);
}

/* Reloads on this worker's thread: an admin call is rare and the caller
 * wants the verdict in the answer. */
static void admin_reload(struct exchange *x)
{
    char *err = NULL;
    if (gw_reload(x->worker->gw, &err) == 0) {
        static const char ok[] = "{\"reloaded\": true}\n";
        exchange_respond(x, 200, "application/json", ok, sizeof(ok) - 1);
        return;
    }
    exchange_respond_error(x, 400, err);
    free(err);
}

/* Admin request bodies are small JSON documents. */
#define ADMIN_MAX_BODY (64u << 10)

enum stage_result admin_read_body(struct exchange *x,
                                  void (*done)(struct exchange *x, const char *body, size_t len))
{
    return exchange_read_body(x, ADMIN_MAX_BODY, done);
}

static void admin_purge_body(struct exchange *x, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    const char *why = NULL;
    int found = -1;
    if (!doc || !json_is_object(doc) || json_object_size(doc) != 1) {
        why = "the body must be one JSON object with one of key, prefix, pattern, tag, all";
    } else {
        found = cache_purge_kind_from_name(json_object_iter_key(json_object_iter(doc)));
        if (found < 0)
            why = "unknown field: use key, prefix, pattern, tag or all";
    }
    const char *arg = "";
    if (!why) {
        json_t *v = json_object_iter_value(json_object_iter(doc));
        if (found == CACHE_PURGE_ALL && !json_is_true(v))
            why = "all must be true";
        else if (found != CACHE_PURGE_ALL && (!json_is_string(v) || json_string_length(v) == 0))
            why = "the value must be a non-empty string";
        else if (json_is_string(v))
            arg = json_string_value(v);
    }
    if (why) {
        json_decref(doc);
        exchange_respond_error(x, 400, why);
        return;
    }
    struct gateway *gw = x->worker->gw;
    enum cache_purge_kind kind = (enum cache_purge_kind)found;
    uint64_t n = cache_purge(gw->cache, kind, arg);
    /* With Redis, every other gateway purges too (SPEC 4.4). */
    bool sent = gw->fleet && fleet_publish_purge(gw->fleet, x->worker, kind, arg);
    json_decref(doc);
    char out[96];
    int olen = gw->fleet
                   ? snprintf(out, sizeof(out), "{\"purged\": %llu, \"fleet\": %s}\n",
                              (unsigned long long)n, sent ? "true" : "false")
                   : snprintf(out, sizeof(out), "{\"purged\": %llu}\n", (unsigned long long)n);
    exchange_respond(x, 200, "application/json", out, (size_t)olen);
}

enum stage_result admin_stage_dispatch(struct exchange *x)
{
    enum stage_result r = admin_keys(x);
    if (r != STAGE_NEXT)
        return r;
    if (admin_is(x, HTTP_POST, "/cache/purge"))
        return admin_read_body(x, admin_purge_body);
    if (admin_is(x, HTTP_GET, "/health"))
        admin_health(x);
    else if (admin_is(x, HTTP_GET, "/metrics"))
        admin_metrics(x);
    else if (admin_is(x, HTTP_POST, "/reload"))
        admin_reload(x);
    else
        exchange_respond_error(x, 404, "no such admin endpoint");
    return STAGE_DONE;
}
