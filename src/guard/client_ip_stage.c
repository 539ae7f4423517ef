/* The client_ip module: the client's address and the default identity. */
#include "guard/client_ip.h"
#include "modules.h"

/* Resolves the client address (trusted proxies) and the default identity:
 * the address, tier "anonymous". */
static enum stage_result cip_stage(struct exchange *x)
{
    const struct cfg_server *srv = &x->cfg->server;
    cip_resolve(srv, x->peer_ip, &x->req_headers, x->client_ip, sizeof(x->client_ip));
    x->identity.kind = ID_IP;
    cip_identity(x->client_ip, srv->ipv6_prefix, x->identity.id, sizeof(x->identity.id));
    x->identity.tier = "anonymous";
    const struct cfg_tier *t = cfg_find_tier(x->cfg, "anonymous");
    x->identity.exempt = t && t->exempt;
    x->identity.quota_daily = x->identity.quota_monthly = -1;
    return STAGE_NEXT;
}

static const struct sl_stage cip_stages[] = {
    {SL_PHASE_CLIENT, false, cip_stage},
};

const struct sl_module client_ip_module = {
    .name = "client_ip",
    .stages = cip_stages,
    .n_stages = 1,
};
