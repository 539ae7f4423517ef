/* The developer module's config rows (developer/conf.h). */
#include "developer/conf.h"

#include "auth/conf.h"
#include "conf/walker.h"

static const struct cfg_key dev_cfg_keys[] = {
    CFG_BOOL("enabled", struct dev_conf, enabled, "false"),
    /* A developer is one person or team: past a few dozen keys it is a
     * script minting them, which is what the cap is for. */
    CFG_INT("max_keys", struct dev_conf, max_keys, 1, 1000, "20", 0),
    CFG_END,
};

/* Enabled: identity.jwt must be there (the endpoints know a developer by
 * a JWT and nothing else), then the route under DEV_PREFIX. */
static void dev_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct dev_conf *d = base;
    if (!d->enabled)
        return;
    if (!auth_conf(cx->c)->jwt.enabled) {
        cfg_error(cx, line, "developer.enabled needs identity.jwt: developers sign in with a JWT");
        return;
    }
    struct cfg_route *r = cfg_alloc(cx, sizeof *r);
    cfg_route_defaults(cx, r);
    r->match = CFG_MATCH_PREFIX;
    r->path = cfg_strdup(cx, DEV_PREFIX);
    r->path_len = DEV_PREFIX_LEN;
    if (!cfg_add_builtin_prefix(cx->c, r->path, r)) {
        cfg_error(cx, line, "too many built-in routes (raise SL_MAX_BUILTIN_ROUTES)");
        return;
    }
    d->route = r;
}
static const struct cfg_section dev_cfg_section = {dev_cfg_keys, dev_cfg_check};

/* The top level; its first member is what dev_conf() returns. */
struct dev_cfg_top {
    struct dev_conf developer;
};
static const struct cfg_key dev_cfg_top_keys[] = {
    /* Read even when absent: the defaults say off. */
    CFG_SECTION("developer", struct dev_cfg_top, developer, &dev_cfg_section, 0),
    CFG_END,
};
static const struct cfg_section dev_cfg_top_section = {dev_cfg_top_keys, NULL};

const struct cfg_module dev_cfg_module = {
    .top = &dev_cfg_top_section,
    .top_size = sizeof(struct dev_cfg_top),
};
