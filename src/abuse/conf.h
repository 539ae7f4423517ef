#ifndef SLUICE_ABUSE_CONF_H
#define SLUICE_ABUSE_CONF_H
/* The abuse module's configuration (SPEC 7.3): `abuse: {violations: 10,
 * window: 24h, ban: 2h, escalate: 2, max_ban: 7d}`. Without the section
 * nothing is banned automatically; violations are still counted (over the
 * default window) and bans made through the admin API still apply. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

/* The window when the config has no `abuse` section: what GET /violations
 * looks back over by default. */
#define ABUSE_DEFAULT_WINDOW_MS (86400000ll)
/* How long the ban history of an identity is kept after its last ban ended
 * when the config says nothing (max_ban's default). */
#define ABUSE_DEFAULT_MAX_BAN_MS (7ll * 86400000)

struct abuse_conf {
    bool enabled;       /* the section is present: bans are made automatically */
    int violations;     /* more than this many within <window_ms>: a ban */
    int64_t window_ms;  /* sliding */
    int64_t ban_ms;     /* the first ban's length */
    int escalate;       /* each repeat ban is this many times longer... */
    int64_t max_ban_ms; /* ...up to this */
};

/* The section; never NULL (zeroed, enabled false, when absent). */
static inline const struct abuse_conf *abuse_conf(const struct config *c)
{
    return c->mod[MOD_abuse];
}

/* The window violations are counted over. */
static inline int64_t abuse_window_ms(const struct abuse_conf *a)
{
    return a && a->enabled ? a->window_ms : ABUSE_DEFAULT_WINDOW_MS;
}

extern const struct cfg_module abuse_cfg_module;

#endif
