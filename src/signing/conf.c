/* The signing module's config rows (signing/conf.h). */
#include "signing/conf.h"

#include "conf/walker.h"

/* A signed route needs the key that decrypts the signing secrets: said at
 * load, with the route's line, not at the first request. The body is read
 * whole before the upstream sees it, so the GraphQL stage (which peeks at a
 * streaming body) cannot come after on the same route. */
static void sig_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct sig_route_conf *sc = base;
    sc->enabled = true;
    if (!cx->c->store.encryption_key.set)
        cfg_kerror(cx, line,
                   "signing needs store.encryption_key (the keys' signing secrets are stored "
                   "encrypted under it)");
    if (cx->route && cx->route->rejection == CFG_REJECT_GRAPHQL)
        cfg_kerror(cx, line, "a GraphQL route cannot be a signing route (not supported yet)");
}

static const struct cfg_key sig_cfg_keys[] = {
    CFG_BOOL("required", struct sig_route_conf, required, "true"),
    /* At least a second (clocks tick in seconds); at most an hour: a
     * longer window keeps more nonces and lets a captured request live
     * longer. */
    CFG_DURATION("skew", struct sig_route_conf, skew_ms, 1000, 3600000, "300s"),
    CFG_END,
};
static const struct cfg_section sig_cfg_section = {sig_cfg_keys, sig_cfg_check};

struct sig_cfg_route {
    struct sig_route_conf signing;
};

static const struct cfg_key sig_cfg_route_keys[] = {
    CFG_SECTION_OR_OFF("signing", struct sig_cfg_route, signing, &sig_cfg_section),
    CFG_END,
};
static const struct cfg_section sig_cfg_route_section = {sig_cfg_route_keys, NULL};

const struct cfg_module sig_cfg_module = {
    .route = &sig_cfg_route_section,
    .route_size = sizeof(struct sig_cfg_route),
};
