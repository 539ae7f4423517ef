#include "pipeline/pipeline.h"

#include "admin/admin.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "limit/policy.h"
#include "pipeline/stages.h"
#include "proxy/proxy.h"

/* One stage per line, in pipeline order (ARCHITECTURE.md). */
// clang-format off
static const stage_fn public_stages[] = {
    stage_health,
    stage_route,
    stage_client_ip,
    auth_stage_authn,
    auth_stage_authz,
    lim_stage,
    auth_stage_tokens,
    cache_stage,
    px_stage,
};
// clang-format on

static const stage_fn admin_stages[] = {
    admin_stage_auth,
    admin_stage_dispatch,
};

const stage_fn *pipeline_stages(bool admin, int *n)
{
    if (admin) {
        *n = (int)(sizeof(admin_stages) / sizeof(admin_stages[0]));
        return admin_stages;
    }
    *n = (int)(sizeof(public_stages) / sizeof(public_stages[0]));
    return public_stages;
}
