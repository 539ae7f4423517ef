#ifndef SLUICE_PROXY_CONF_H
#define SLUICE_PROXY_CONF_H
/* The proxy module's configuration (SPEC 2, issue 17): per route
 * `strip_prefix`, `rewrite`, `request_buffering`, `request_headers`,
 * `response_headers`, `identity_headers`; per upstream `host`,
 * `request_headers`, `response_headers`. */

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "modules.h"
#include "proxy/health.h"

/* What a header value may name, filled in per request. */
enum px_var {
    PX_VAR_NONE, /* a literal part */
    PX_VAR_CLIENT_IP,
    PX_VAR_REQUEST_ID,
    PX_VAR_IDENTITY,
    PX_VAR_KEY_ID,
    PX_VAR_TIER,
};

/* One part of a header value template: literal text or a variable. */
struct px_part {
    enum px_var var;
    const char *text; /* literal parts */
    size_t len;
};

/* `set: {Name: "value $client_ip"}`: one header and its template. */
struct px_set {
    const char *name;
    size_t name_len;
    struct px_part *parts;
    int n_parts;
};

/* `request_headers` or `response_headers`: headers to set (replacing what
 * was there) and to remove. */
struct px_rules {
    struct px_set *set;
    int n_set;
    char **remove;
    int n_remove;
};

struct px_route_conf {
    bool strip_prefix;            /* the route's prefix is removed from the path sent upstream */
    char *rewrite_prefix;         /* the route's prefix is replaced by this; NULL: none */
    enum cfg_buffering buffering; /* resolved: the server's when the route has none */
    struct px_rules req;          /* request_headers */
    struct px_rules resp;         /* response_headers */
    bool identity_headers;        /* X-Sluice-Identity/-Key-Id/-Tier/-Scopes to the app */
};

/* The Host an upstream is sent. */
enum px_host_mode {
    PX_HOST_CLIENT,   /* the client's (default) */
    PX_HOST_UPSTREAM, /* the server's address as written in `servers` */
    PX_HOST_NAME,     /* a fixed name */
};

struct px_upstream_conf {
    enum px_host_mode host;
    char *host_name; /* PX_HOST_NAME */
    struct px_rules req, resp;
    struct px_health_conf health;
};

static inline const struct px_route_conf *px_route_conf(const struct cfg_route *r)
{
    return r->mod[MOD_proxy];
}
static inline const struct px_upstream_conf *px_upstream_conf(const struct cfg_upstream *u)
{
    return u->mod[MOD_proxy];
}

extern const struct cfg_module px_cfg_module;

#endif
