#include "pipeline/stages.h"

#include <llhttp.h>

#include "guard/client_ip.h"

#define HEALTH_PATH "/_sluice/health"

enum stage_result stage_health(struct exchange *x)
{
    if (x->path_len != sizeof(HEALTH_PATH) - 1 || memcmp(x->path, HEALTH_PATH, x->path_len) != 0)
        return STAGE_NEXT;
    static const char body[] = "{\"status\":\"ok\"}\n";
    exchange_respond(x, 200, "application/json", body, sizeof(body) - 1);
    return STAGE_DONE;
}

enum stage_result stage_route(struct exchange *x)
{
    x->route = cfg_match_route(x->cfg, x->path, x->path_len, x->method);
    if (x->route)
        return STAGE_NEXT;
    exchange_respond_error(x, 404, "no route matches this request");
    return STAGE_DONE;
}

enum stage_result stage_client_ip(struct exchange *x)
{
    const struct cfg_server *srv = &x->cfg->server;
    cip_resolve(srv, x->peer_ip, &x->req_headers, x->client_ip, sizeof(x->client_ip));
    x->identity.kind = ID_IP;
    cip_identity(x->client_ip, srv->ipv6_prefix, x->identity.id, sizeof(x->identity.id));
    x->identity.tier = "anonymous";
    const struct cfg_tier *t = cfg_find_tier(x->cfg, "anonymous");
    x->identity.exempt = t && t->exempt;
    return STAGE_NEXT;
}
