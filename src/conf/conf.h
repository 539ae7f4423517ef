#ifndef SLUICE_CONF_H
#define SLUICE_CONF_H
/* The configuration: YAML file -> immutable, reference-counted struct config.
 * A loaded config is never modified; a reload builds a new one and swaps it
 * (see gateway.c), and in-flight exchanges finish on the one they began with. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "limit/limit.h"
#include "store/redis.h"
#include "util/limits.h"

/* A resolved socket address, with the text the user wrote (for logs). */
struct cfg_addr {
    struct sockaddr_storage sa;
    socklen_t sa_len;
    char text[128];
};

/* An IPv4 or IPv6 network: <family> AF_INET/AF_INET6, <addr> in network order
 * (4 or 16 bytes used), <bits> prefix length. */
struct cfg_cidr {
    int family;
    uint8_t addr[16];
    uint8_t bits;
};

struct cfg_timeouts {
    int64_t header_ms; /* first byte of a request to end of its headers; 408 */
    int64_t idle_ms;   /* keep-alive connection with nothing to do; also client body stalls */
    int64_t upstream_connect_ms; /* TCP connect to an upstream server; 504 */
    int64_t upstream_read_ms;    /* between two reads from the upstream; 504 */
    int64_t drain_ms;            /* SIGTERM: longest wait for in-flight requests */
};

struct cfg_server {
    struct cfg_addr listen[SL_MAX_LISTEN];
    int n_listen;
    int workers; /* resolved: "auto" becomes the number of online cores */
    int max_connections;
    struct cfg_timeouts timeouts;
    uint64_t max_header_bytes;
    uint64_t max_body_bytes;
    bool access_log;
    struct cfg_cidr trusted_proxies[SL_MAX_TRUSTED_PROXIES];
    int n_trusted_proxies;
    int ipv6_prefix; /* 1..128 */
};

struct cfg_admin {
    bool enabled; /* admin.listen given */
    struct cfg_addr listen;
    char *token; /* never empty when enabled */
};

struct cfg_upstream {
    char *name;
    struct cfg_addr servers[SL_MAX_UPSTREAM_SERVERS];
    int n_servers;
    int keepalive; /* idle connections kept per server per worker */
};

enum cfg_match { CFG_MATCH_EXACT, CFG_MATCH_PREFIX };

/* The 429 body style of a route (SPEC 3.5). */
enum cfg_rejection { CFG_REJECT_JSON, CFG_REJECT_DRF, CFG_REJECT_GRAPHQL };

/* A route's limits for one tier ("anonymous", a tier of `tiers`, or "*" for
 * any identified tier without an entry of its own). */
struct cfg_route_limits {
    char *tier;
    struct limit *limits;
    int n_limits;
};

struct cfg_tier {
    char *name;
    struct limit *limits; /* the tier's own limits: counted across all routes */
    int n_limits;
    bool exempt;
    int line;
};

/* A route's `cache` (SPEC 4). */
struct cfg_route_cache {
    bool enabled;   /* the route has a cache section */
    int64_t ttl_ms; /* freshness when the origin says nothing (or respect_origin is off) */
    char **tags;    /* purge tags of every entry of the route */
    int n_tags;
    int64_t stale_while_revalidate_ms; /* 0: off */
    int64_t stale_if_error_ms;         /* 0: off */
    bool shared;                       /* one entry for every caller, even with credentials */
    bool respect_origin;               /* s-maxage / max-age override ttl; default true */
};

/* The top-level `cache` section: the store. */
struct cfg_cache {
    uint64_t max_memory;      /* default 256m */
    uint64_t max_object_size; /* default 8m; larger bodies stream through uncached */
};

/* The `limits` section: defaults for every limit. */
struct cfg_limits {
    enum lim_algorithm algorithm; /* default for limits that name none; sliding_window */
    bool header_xratelimit;       /* headers: [x-ratelimit] (default) */
    bool header_ietf;             /* headers: [ietf] */
    bool enabled;                 /* false: no limiting anywhere */
    uint64_t max_entries;         /* counters kept in memory; default 1,000,000 */
};

/* A route's `auth` (SPEC 5.3): optional lets anonymous clients through
 * (credentials, when sent, must still be valid). */
enum cfg_auth { CFG_AUTH_OPTIONAL, CFG_AUTH_REQUIRED };

struct cfg_route {
    enum cfg_match match;
    char *path; /* the exact path, or the prefix */
    size_t path_len;
    uint64_t methods; /* bit (1 << llhttp_method_t); 0 = every method */
    int upstream;     /* index into config.upstreams */
    int line;         /* where the route starts in the file, for messages */
    bool limits_off;  /* `limits: off`: never limited */
    struct cfg_route_limits *limits;
    int n_limits;
    enum cfg_rejection rejection;
    uint32_t cost; /* weight of one request; default 1 */
    struct cfg_route_cache cache;
    enum cfg_auth auth;
    char **scopes; /* every one is required; implies auth: required */
    int n_scopes;
    bool token_endpoint; /* the built-in POST /auth/token and /auth/refresh (SPEC 5.2) */
};

/* What limiting does while Redis cannot be reached (SPEC 3.6). */
enum cfg_on_failure {
    CFG_FAIL_LOCAL, /* decide on this node's memory, with its share of each limit */
    CFG_FAIL_ALLOW, /* let requests through unlimited */
    CFG_FAIL_DENY,  /* answer 503 */
};

/* store.redis. */
struct cfg_redis {
    char *url;              /* default redis://127.0.0.1:6379/0 */
    struct rds_config conn; /* parsed from url, with timeout_ms */
    int64_t timeout_ms;     /* per command; default 50ms */
    enum cfg_on_failure on_failure;
    char *prefix;     /* of every key and of the events channel; default "sluice:" */
    int64_t lease_ms; /* how long a concurrency slot outlives a crashed gateway; 2m */
};

/* The `store` section (SPEC 2). */
enum cfg_backend { CFG_BACKEND_MEMORY, CFG_BACKEND_REDIS };
struct cfg_store {
    enum cfg_backend backend;
    char *data_dir; /* SQLite files; default ./var */
    struct cfg_redis redis;
};

struct jwtv;
/* identity.jwt (SPEC 5.2). */
struct cfg_jwt {
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
    int64_t access_ttl_ms;  /* lifetime of access tokens /auth/token issues; default 15m */
    int64_t refresh_ttl_ms; /* lifetime of refresh tokens; default 30d */
    struct jwtv *verifier;  /* built when the config loads (keys read from jwks_file) */
};

/* The `identity` section (SPEC 5). */
struct cfg_identity {
    char **api_key_headers; /* default ["X-API-Key"]; Authorization: Bearer sk_... always */
    int n_api_key_headers;
    struct cfg_jwt jwt;
};

struct config {
    int refs;   /* atomic; see cfg_ref/cfg_unref */
    char *path; /* the file it was loaded from */
    struct cfg_server server;
    struct cfg_admin admin;
    struct cfg_upstream *upstreams;
    int n_upstreams;
    struct cfg_route *routes;
    int n_routes;
    struct cfg_tier *tiers;
    int n_tiers;
    struct cfg_limits limits;
    struct cfg_cache cache;
    struct cfg_store store;
    struct cfg_identity identity;
    /* POST /auth/token and /auth/refresh, matched before `routes` when
     * identity.jwt.secret is set (token_endpoint is true). */
    struct cfg_route token_route;
};

/* The tier called <name>, or NULL. */
const struct cfg_tier *cfg_find_tier(const struct config *c, const char *name);

/* Looks up an environment variable; returns NULL when unset. Injected so unit
 * tests do not depend on the process environment. */
typedef const char *(*cfg_getenv_fn)(const char *name, void *ctx);

/* Load and validate the file at <path>. Returns a config holding one
 * reference, or NULL with *<err> set to one or more "FILE:LINE: message"
 * lines (malloc'd, the caller frees it). */
struct config *cfg_load(const char *path, char **err);

/* Same as cfg_load for YAML in memory; <name> stands for FILE in messages and
 * <getenv> (NULL: the process environment) expands ${VAR}. */
struct config *cfg_load_string(const char *yaml, size_t len, const char *name,
                               cfg_getenv_fn getenv_fn, void *getenv_ctx, char **err);

void cfg_ref(struct config *c);
/* Drops one reference; the last one frees <c> and everything it owns. */
void cfg_unref(struct config *c);

/* "500ms" "30s" "5m" "2h" "7d" -> milliseconds. 0 on success, -1 on a bad form. */
int cfg_parse_duration_ms(const char *s, int64_t *out_ms);
/* "512" "16k" "10m" "1g" (bytes, binary multiples, either case) -> bytes. 0 or -1. */
int cfg_parse_size(const char *s, uint64_t *out);
/* "127.0.0.1/32" "10.0.0.0/8" "::1" "2001:db8::/32" (no prefix = host). 0 or -1. */
int cfg_parse_cidr(const char *s, struct cfg_cidr *out);
/* "host:port" or "[v6]:port"; host may be a name (resolved now). 0 or -1 with
 * a reason in <why> (static string). */
int cfg_parse_addr(const char *s, struct cfg_addr *out, const char **why);

/* Expand ${NAME} and ${NAME:-default} in <s>. Returns a malloc'd string, or
 * NULL with *<why> set (static string) when a variable is unset and has no
 * default, or the syntax is broken. "$$" is not special; a "$" not followed by
 * "{" is kept as is. */
char *cfg_expand_env(const char *s, cfg_getenv_fn getenv_fn, void *ctx, const char **why);

/* The route for <path> (no query string) and <method>: the first that
 * matches, in file order; NULL when none does. */
const struct cfg_route *cfg_match_route(const struct config *c, const char *path, size_t len,
                                        int method);

#endif
