#include "admin/admin.h"

#include <llhttp.h>

#include "net/worker.h"
#include "obs/metrics.h"
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

enum stage_result admin_stage_dispatch(struct exchange *x)
{
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
