/* The core module: the gateway's own health endpoint and routing. */
#include <llhttp.h>

#include "pipeline/module.h"

#define HEALTH_PATH "/_sluice/health"

/* GET /_sluice/health on the main listener: the gateway's own liveness,
 * answered before any other stage so it is never limited. */
static enum stage_result core_stage_health(struct exchange *x)
{
    if (x->path_len != sizeof(HEALTH_PATH) - 1 || memcmp(x->path, HEALTH_PATH, x->path_len) != 0)
        return STAGE_NEXT;
    static const char body[] = "{\"status\":\"ok\"}\n";
    exchange_respond(x, 200, "application/json", body, sizeof(body) - 1);
    return STAGE_DONE;
}

/* Finds the route (first match in file order); 404 when none matches. */
static enum stage_result core_stage_route(struct exchange *x)
{
    x->route = cfg_match_route(x->cfg, x->path, x->path_len, x->method);
    if (x->route)
        return STAGE_NEXT;
    exchange_respond_error(x, 404, "no route matches this request");
    return STAGE_DONE;
}

static const struct sl_stage core_stages[] = {
    {SL_PHASE_EARLY, false, core_stage_health},
    {SL_PHASE_ROUTE, false, core_stage_route},
};

const struct sl_module core_module = {
    .name = "core",
    .stages = core_stages,
    .n_stages = 2,
};
