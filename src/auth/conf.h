#ifndef SLUICE_AUTH_CONF_H
#define SLUICE_AUTH_CONF_H
/* The auth module's configuration (SPEC 5): the top-level `identity`
 * section and each route's `auth` and `scopes`. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "modules.h"

struct jwtv;
/* identity.jwt (SPEC 5.2). */
struct auth_jwt_conf {
    bool enabled;        /* the section is present */
    unsigned algorithms; /* bits of enum jwtv_alg (auth/jwt_verify.h) */
    char *secret;        /* HS256 key; also signs the tokens of /auth/token */
    char *jwks_file;     /* RS256/ES256 public keys by kid */
    char *issuer;        /* required `iss` when set */
    char *audience;      /* required in `aud` when set */
    char *tier_claim;    /* default "tier" */
    char *scope_claim;   /* default "scope" */
    char **exempt_roles; /* a token whose roles/role claim has one is exempt */
    int n_exempt_roles;
    char *default_tier;     /* tier of a token without a known tier claim; NULL: none */
    int64_t leeway_ms;      /* exp/nbf tolerance; default 30s */
    bool require_exp;       /* refuse tokens without `exp`; default true */
    int64_t access_ttl_ms;  /* lifetime of access tokens /auth/token issues; default 15m */
    int64_t refresh_ttl_ms; /* lifetime of refresh tokens; default 30d */
    struct jwtv *verifier;  /* built when the config loads (keys read from jwks_file) */
};

/* The `identity` section (SPEC 5). */
struct auth_conf {
    char **api_key_headers; /* default ["X-API-Key"]; Authorization: Bearer sk_... always */
    int n_api_key_headers;
    struct auth_jwt_conf jwt;
};

/* A route's `auth` (SPEC 5.3): optional lets anonymous clients through
 * (credentials, when sent, must still be valid). */
enum auth_mode { AUTH_OPTIONAL, AUTH_REQUIRED };

struct auth_route_conf {
    enum auth_mode auth;
    char **scopes; /* every one is required; implies auth: required */
    int n_scopes;
    bool token_endpoint; /* the built-in POST /auth/token and /auth/refresh (SPEC 5.2) */
};

static inline const struct auth_conf *auth_conf(const struct config *c)
{
    return c->mod[MOD_auth];
}
static inline const struct auth_route_conf *auth_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_auth];
}

extern const struct cfg_module auth_cfg_module;

#endif
