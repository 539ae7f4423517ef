#ifndef SLUICE_SIG_CONF_H
#define SLUICE_SIG_CONF_H
/* The signing module's config: a route's `signing` section (SPEC 7.2). */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

/* cfg_route.mod[MOD_signing]; zeroed (off) when the route has no section. */
struct sig_route_conf {
    bool enabled;    /* the route has a signing section */
    bool required;   /* default true: unsigned requests get 401 */
    int64_t skew_ms; /* how far X-Sluice-Timestamp may be from the gateway's clock; 300s */
};

extern const struct cfg_module sig_cfg_module;

static inline const struct sig_route_conf *sig_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_signing];
}

#endif
