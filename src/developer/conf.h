#ifndef SLUICE_DEVELOPER_CONF_H
#define SLUICE_DEVELOPER_CONF_H
/* The developer module's configuration (SPEC 8, docs/developer.md): the
 * top-level `developer` section. Off unless asked for: the endpoints live
 * under a fixed prefix of the main listener, which must not take a path
 * an existing upstream serves by surprise. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

/* Every developer endpoint and the page live under this prefix. */
#define DEV_PREFIX "/developer/"
#define DEV_PREFIX_LEN (sizeof(DEV_PREFIX) - 1)

struct dev_conf {
    bool enabled;     /* default false; needs identity.jwt */
    int64_t max_keys; /* active keys one owner may hold; default 20 */
    /* The built-in route of DEV_PREFIX (set when enabled): limited by tier
     * limits as any route, answered by the developer stage, never proxied. */
    const struct cfg_route *route;
};

static inline const struct dev_conf *dev_conf(const struct config *c)
{
    return c->mod[MOD_developer];
}

extern const struct cfg_module dev_cfg_module;

#endif
