/* The auth module's config rows (auth/conf.h). */
#include "auth/conf.h"

#include <string.h>
#include <strings.h>

#include "auth/jwt_verify.h"
#include "conf/walker.h"

static int auth_cfg_scope_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                               int i, void *base)
{
    if (cfg_chars_ok(s, "_-.:/"))
        return cfg_push_name(cx, k, s, line, base);
    cfg_kerror(cx, line, "bad name '%.*s' (letters, digits, '_', '-', '.', ':', '/'; at most %d)",
               CFG_QUOTE_MAX, s, CFG_WORD_MAX);
    return -1;
}

static int auth_cfg_header_name_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s,
                                     int line, int i, void *base)
{
    if (strcasecmp(s, "authorization") == 0) {
        cfg_kerror(cx, line, "Authorization is always read (Bearer sk_...); list other headers");
        return -1;
    }
    if (cfg_chars_ok(s, "-_"))
        return cfg_push_name(cx, k, s, line, base);
    cfg_kerror(cx, line, "bad header name '%.*s'", CFG_QUOTE_MAX, s);
    return -1;
}

static void auth_cfg_set_scopes(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                void *base)
{
    cfg_set_names_with(cx, k, node, base, auth_cfg_scope_item);
}

static void auth_cfg_set_header_names(struct cfg_ctx *cx, const struct cfg_key *k,
                                      yaml_node_t *node, void *base)
{
    cfg_set_names_with(cx, k, node, base, auth_cfg_header_name_item);
}

static int auth_cfg_alg_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                             int i, void *base)
{
    unsigned bit = jwtv_alg_from_name(s);
    if (!bit) {
        cfg_kerror(cx, line, "unknown algorithm '%.*s' (use HS256, RS256, ES256)", CFG_QUOTE_MAX,
                   s);
        return -1;
    }
    *(unsigned *)((char *)base + k->off) |= bit;
    return 0;
}

static void auth_cfg_set_algs(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    cfg_each(cx, k, node, base, auth_cfg_alg_item);
}

static void auth_cfg_set_roles(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                               void *base)
{
    cfg_set_names_with(cx, k, node, base, auth_cfg_scope_item);
}

static void auth_cfg_free_verifier(void *v)
{
    jwtv_free(v);
}

/* The verifier is built here, so a bad JWKS file fails `sluice check` and a
 * reload as any other config error does, and lives as long as the snapshot. */
static void auth_cfg_check_jwt(struct cfg_ctx *cx, void *base, int line)
{
    struct auth_jwt_conf *j = base;
    struct config *c = cx->c;
    j->enabled = true;
    if (cx->n_errs)
        return;
    if ((j->algorithms & JWTV_HS256) && !j->secret) {
        cfg_error(cx, line, "identity.jwt: HS256 needs 'secret'");
        return;
    }
    if ((j->algorithms & (JWTV_RS256 | JWTV_ES256)) && !j->jwks_file) {
        cfg_error(cx, line, "identity.jwt: RS256 and ES256 need 'jwks_file'");
        return;
    }
    if (j->secret && !(j->algorithms & JWTV_HS256)) {
        cfg_error(cx, line, "identity.jwt: 'secret' is only used by HS256; add it to algorithms");
        return;
    }
    if (j->secret && strlen(j->secret) < 32) {
        cfg_error(cx, line,
                  "identity.jwt.secret: at least 32 characters (an HS256 key is a password "
                  "anyone with a token can try offline)");
        return;
    }
    if (j->default_tier && !cfg_find_tier(c, j->default_tier)) {
        cfg_error(cx, line, "identity.jwt.default_tier: unknown tier '%.*s'", CFG_QUOTE_MAX,
                  j->default_tier);
        return;
    }
    struct jwtv_config vc = {
        .algorithms = j->algorithms,
        .secret = j->secret,
        .jwks_file = j->jwks_file,
        .issuer = j->issuer,
        .audience = j->audience,
        .tier_claim = j->tier_claim,
        .scope_claim = j->scope_claim,
        .exempt_roles = (const char *const *)j->exempt_roles,
        .n_exempt_roles = j->n_exempt_roles,
        .leeway_s = j->leeway_ms / 1000,
        .require_exp = j->require_exp,
    };
    char *err = NULL;
    j->verifier = jwtv_new(&vc, &err);
    if (j->verifier)
        cfg_on_free(cx, auth_cfg_free_verifier, j->verifier);
    if (!j->verifier) {
        cfg_error(cx, line, "identity.jwt: %s", err ? err : "cannot build the verifier");
        free(err);
    }
}

static const struct cfg_key auth_cfg_jwt_keys[] = {
    CFG_ROW("algorithms", auth_cfg_set_algs, struct auth_jwt_conf, algorithms, 1, 3, "HS256", 0),
    CFG_STRING("secret", struct auth_jwt_conf, secret, CFG_NONEMPTY),
    CFG_ROW("jwks_file", cfg_set_path_rel, struct auth_jwt_conf, jwks_file, 0, 0, NULL,
            CFG_NONEMPTY),
    CFG_STRING("issuer", struct auth_jwt_conf, issuer, CFG_NONEMPTY),
    CFG_STRING("audience", struct auth_jwt_conf, audience, CFG_NONEMPTY),
    CFG_ROW("tier_claim", cfg_set_string, struct auth_jwt_conf, tier_claim, 0, 0, "tier",
            CFG_NONEMPTY),
    CFG_ROW("scope_claim", cfg_set_string, struct auth_jwt_conf, scope_claim, 0, 0, "scope",
            CFG_NONEMPTY),
    CFG_LIST("exempt_roles", auth_cfg_set_roles, struct auth_jwt_conf, exempt_roles, n_exempt_roles,
             0, 32, NULL, 0),
    CFG_STRING("default_tier", struct auth_jwt_conf, default_tier, CFG_NONEMPTY),
    /* SPEC 5.2 says 30 s; more than 5 minutes would keep expired tokens alive. */
    CFG_DURATION("leeway", struct auth_jwt_conf, leeway_ms, 0, 300000, "30s"),
    /* A token that never expires cannot be taken back once it leaks; an
     * issuer that mints such tokens must say so (require_exp: false). */
    CFG_BOOL("require_exp", struct auth_jwt_conf, require_exp, "true"),
    CFG_DURATION("access_ttl", struct auth_jwt_conf, access_ttl_ms, 1000, CFG_DAY_MS, "15m"),
    CFG_DURATION("refresh_ttl", struct auth_jwt_conf, refresh_ttl_ms, 60000, 365ll * CFG_DAY_MS,
                 "30d"),
    CFG_END,
};
static const struct cfg_section auth_cfg_jwt_section = {auth_cfg_jwt_keys, auth_cfg_check_jwt};

static const struct cfg_key auth_cfg_identity_keys[] = {
    CFG_LIST("api_key_headers", auth_cfg_set_header_names, struct auth_conf, api_key_headers,
             n_api_key_headers, 0, 8, "X-API-Key", 0),
    CFG_SECTION("jwt", struct auth_conf, jwt, &auth_cfg_jwt_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section auth_cfg_identity_section = {auth_cfg_identity_keys, NULL};

/* The top level: `identity`, first member (auth_conf()). */
struct auth_cfg_top {
    struct auth_conf identity;
};

/* The token endpoints exist when the gateway can sign tokens: one route
 * for both, limited as any route is, by tier limits only; never cached or
 * proxied. */
static void auth_cfg_check_top(struct cfg_ctx *cx, void *base, int line)
{
    const struct auth_conf *a = base;
    if (!a->jwt.secret)
        return;
    struct cfg_route *r = cfg_alloc(cx, sizeof *r);
    cfg_route_defaults(cx, r);
    r->match = CFG_MATCH_PREFIX;
    r->path = cfg_strdup(cx, "/auth/");
    r->path_len = 6;
    ((struct auth_route_conf *)r->mod[MOD_auth])->token_endpoint = true;
    cfg_add_builtin_route(cx->c, "/auth/token", r);
    cfg_add_builtin_route(cx->c, "/auth/refresh", r);
}

static const struct cfg_key auth_cfg_top_keys[] = {
    /* After tiers (the core's rows come first): jwt.default_tier names one. */
    CFG_SECTION("identity", struct auth_cfg_top, identity, &auth_cfg_identity_section, 0),
    CFG_END,
};
static const struct cfg_section auth_cfg_top_section = {auth_cfg_top_keys, auth_cfg_check_top};

static const struct cfg_word auth_cfg_words[] = {
    {"optional", AUTH_OPTIONAL},
    {"required", AUTH_REQUIRED},
    {NULL, 0},
};

static void auth_cfg_check_route(struct cfg_ctx *cx, void *base, int line)
{
    struct auth_route_conf *r = base;
    if (r->n_scopes)
        r->auth = AUTH_REQUIRED;
}

static const struct cfg_key auth_cfg_route_keys[] = {
    CFG_WORD("auth", struct auth_route_conf, auth, auth_cfg_words, "optional"),
    /* Scopes imply auth: required (see auth_cfg_check_route). */
    CFG_LIST("scopes", auth_cfg_set_scopes, struct auth_route_conf, scopes, n_scopes, 0, 16, NULL,
             0),
    CFG_END,
};
static const struct cfg_section auth_cfg_route_section = {auth_cfg_route_keys,
                                                          auth_cfg_check_route};

const struct cfg_module auth_cfg_module = {
    .top = &auth_cfg_top_section,
    .top_size = sizeof(struct auth_cfg_top),
    .route = &auth_cfg_route_section,
    .route_size = sizeof(struct auth_route_conf),
};
