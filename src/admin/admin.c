/* The admin module (SPEC 8): the dashboard's files (admin/dashboard.c,
 * the only paths served without the token), the token check, the router over every
 * module's admin routes (404, 405 with Allow, body limits and JSON errors
 * handled here once), and the gateway's own endpoints: /health, /metrics,
 * /reload, /events (admin/events.c). */
#include "admin/admin.h"

#include <llhttp.h>

#include "admin/dashboard.h"
#include "admin/events.h"
#include "audit/audit.h"
#include "modules.h"
#include "net/worker.h"
#include "obs/metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/str.h"

/* The longest {id} of an admin path (key ids, CIDR ids, identities: 95
 * bytes, up to three times that URL-encoded). */
#define ADMIN_MAX_ID 320

static enum stage_result admin_stage_auth(struct exchange *x)
{
    const struct sl_header *h = exchange_req_header(x, "authorization");
    const char *token = x->cfg->admin.token;
    if (h && h->value_len > 7 && str_ieq(h->value, 7, "bearer ") &&
        str_ct_eq(h->value + 7, h->value_len - 7, token, strlen(token)))
        return STAGE_NEXT;
    /* Who knocked, never what they sent as a token. */
    audit_admin_call(x, "admin.auth", x->path, 401, NULL);
    exchange_add_header(x, "WWW-Authenticate", "Bearer realm=\"sluice-admin\"");
    exchange_respond_error(x, 401, "a valid admin token is required (Authorization: Bearer ...)");
    return STAGE_DONE;
}

/* ---- routing ------------------------------------------------------------------- */

/* Does <path> match <pattern>? Literal segments compare exactly; "{id}"
 * takes one non-empty segment into <id>. */
static bool admin_pattern_match(const char *pattern, const char *path, char *id, size_t id_cap)
{
    while (*pattern && *path) {
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= id_cap)
                return false;
            memcpy(id, path, n);
            id[n] = '\0';
            path += n;
            pattern += 4;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

static void admin_allow_add(char *allow, int method)
{
    const char *name = llhttp_method_name((llhttp_method_t)method);
    if (strstr(allow, name))
        return;
    size_t len = strlen(allow);
    snprintf(allow + len, 64 - len, "%s%s", len ? ", " : "", name);
}

const struct sl_admin_route *admin_route_find(const struct sl_admin_route *const *routes,
                                              int n_routes, int method, const char *path, char *id,
                                              size_t id_cap, char *allow)
{
    allow[0] = '\0';
    for (int t = 0; t < n_routes; t++) {
        for (const struct sl_admin_route *r = routes[t]; r->pattern; r++) {
            if (!admin_pattern_match(r->pattern, path, id, id_cap))
                continue;
            if (r->method == method)
                return r;
            admin_allow_add(allow, r->method);
        }
    }
    return NULL;
}

/* x->ctx[MOD_admin]: the route a request's body is read for. */
struct admin_pending {
    const struct sl_admin_route *route;
    char id[ADMIN_MAX_ID];
};

static void admin_body_read(struct exchange *x, const char *body, size_t len)
{
    struct admin_pending *p = x->ctx[MOD_admin];
    struct sl_admin_call call = {p->id[0] ? p->id : NULL, body, len};
    p->route->handler(x, &call);
}

static enum stage_result admin_stage_dispatch(struct exchange *x)
{
    const struct sl_admin_route *tables[SL_MAX_MODULES];
    int n_tables = 0, n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++)
        if (mods[m]->admin_routes)
            tables[n_tables++] = mods[m]->admin_routes;

    struct admin_pending *p = arena_calloc(x->arena, sizeof(*p));
    char allow[64];
    p->route = admin_route_find(tables, n_tables, x->method, x->path, p->id, sizeof(p->id), allow);
    if (!p->route && allow[0]) {
        exchange_add_header(x, "Allow", allow);
        char msg[96];
        snprintf(msg, sizeof(msg), "use %s", allow);
        exchange_respond_error(x, 405, msg);
        return STAGE_DONE;
    }
    if (!p->route) {
        exchange_respond_error(x, 404, "no such admin endpoint");
        return STAGE_DONE;
    }
    if (!p->route->max_body && (x->content_length > 0 || x->chunked)) {
        exchange_respond_error(x, 413, "this endpoint takes no request body");
        return STAGE_DONE;
    }
    if (p->route->max_body) {
        x->ctx[MOD_admin] = p;
        return exchange_read_body(x, p->route->max_body, admin_body_read);
    }
    struct sl_admin_call call = {p->id[0] ? p->id : NULL, "", 0};
    p->route->handler(x, &call);
    return STAGE_WAIT;
}

/* ---- the gateway's own endpoints ---------------------------------------------- */

static void admin_health(struct exchange *x, const struct sl_admin_call *call)
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

static void admin_metrics(struct exchange *x, const struct sl_admin_call *call)
{
    struct buf b = {0};
    metrics_render(x->worker->gw, &b);
    exchange_respond(x, 200, "text/plain; version=0.0.4", b.data, b.len);
    buf_release(&b);
}

/* Reloads on this worker's thread: an admin call is rare and the caller
 * wants the verdict in the answer. */
static void admin_reload(struct exchange *x, const struct sl_admin_call *call)
{
    char *err = NULL;
    if (gw_reload(x->worker->gw, &err) == 0) {
        static const char ok[] = "{\"reloaded\": true}\n";
        audit_admin_call(x, "reload", x->worker->gw->config_path, 200, NULL);
        exchange_respond(x, 200, "application/json", ok, sizeof(ok) - 1);
        return;
    }
    audit_admin_call(x, "reload", x->worker->gw->config_path, 400, NULL);
    exchange_respond_error(x, 400, err);
    free(err);
}

static const struct sl_admin_route admin_routes[] = {
    {HTTP_GET, "/health", admin_health, 0},
    {HTTP_GET, "/metrics", admin_metrics, 0},
    {HTTP_POST, "/reload", admin_reload, 0},
    {HTTP_GET, "/events", events_admin_stream, 0},
    {0, NULL, NULL, 0},
};

/* The dashboard's files come first: they are served without the token. */
static const struct sl_stage admin_stages[] = {
    {SL_ADMIN_PHASE_AUTH, true, dash_stage},
    {SL_ADMIN_PHASE_AUTH, true, admin_stage_auth},
    {SL_ADMIN_PHASE_DISPATCH, true, admin_stage_dispatch},
};

const struct sl_module admin_module = {
    .name = "admin",
    .init_worker = events_init_worker,
    .stop_worker = events_stop_worker,
    .dispose_worker = events_dispose_worker,
    .stages = admin_stages,
    .n_stages = 3,
    .admin_routes = admin_routes,
    .metrics = events_metrics,
};
