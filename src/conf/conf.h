#ifndef SLUICE_CONF_H
#define SLUICE_CONF_H
/* The configuration: YAML file -> immutable, reference-counted struct config.
 * A loaded config is never modified; a reload builds a new one and swaps it
 * (see net/worker.c), and in-flight exchanges finish on the one they began with.
 * The core sections are here; modules' sections are in their own folders
 * and reach the core through struct cfg_module. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "store/redis.h"
#include "util/limits.h"

struct arena;

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

/* How a request body reaches the upstream: server.request_buffering, which
 * a route's own request_buffering (the proxy's route rows) replaces. */
enum cfg_buffering {
    CFG_BUFFER_SERVER, /* in a route: none of its own, the server's applies */
    CFG_BUFFER_AUTO,   /* a chunked body is read whole and sent with Content-Length */
    CFG_BUFFER_ON,     /* every body is read whole first */
    CFG_BUFFER_OFF,    /* streamed as it arrives, chunked as it came */
};

struct cfg_server {
    struct cfg_addr listen[SL_MAX_LISTEN];
    int n_listen;
    int workers; /* resolved: "auto" becomes the number of online cores */
    int max_connections;
    struct cfg_timeouts timeouts;
    uint64_t max_header_bytes;
    uint64_t max_body_bytes;
    uint64_t request_buffer_memory;       /* a buffered body past this goes to a temp file */
    enum cfg_buffering request_buffering; /* routes' default; never CFG_BUFFER_SERVER */
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

/* An upstream's `queue`: requests waiting for a connection to a server. */
struct cfg_queue {
    int max;            /* waiting at once, all workers; default 10000; 0: none */
    int64_t timeout_ms; /* longest wait before 503; default 10s */
};

struct cfg_upstream {
    char *name;
    struct cfg_addr servers[SL_MAX_UPSTREAM_SERVERS];
    int n_servers;
    int keepalive;       /* idle connections kept per server per worker */
    int max_connections; /* open connections per server, all workers together; default 256 */
    struct cfg_queue queue;
    int retries; /* another try for an idempotent request whose upstream failed; default 0 */
    void *mod[SL_MAX_MODULES]; /* each module's rows of this upstream (NULL: none) */
};

enum cfg_match { CFG_MATCH_EXACT, CFG_MATCH_PREFIX };

/* The body style of a route's refusals (SPEC 3.5): rate limits, quotas and
 * GraphQL checks all answer in it. */
enum cfg_rejection { CFG_REJECT_JSON, CFG_REJECT_DRF, CFG_REJECT_GRAPHQL };

/* A tier (SPEC 2 `tiers`): the core reads its name and exempt; modules add
 * rows of their own (limits, quota...) in mod[]. */
struct cfg_tier {
    char *name;
    bool exempt; /* no limits at all */
    int line;
    void *mod[SL_MAX_MODULES]; /* each module's rows of this tier (NULL: none) */
};

struct cfg_route {
    enum cfg_match match;
    char *path; /* the exact path, or the prefix */
    size_t path_len;
    uint64_t methods; /* bit (1 << llhttp_method_t); 0 = every method */
    int upstream;     /* index into config.upstreams */
    int line;         /* where the route starts in the file, for messages; 0: the gateway's own */
    enum cfg_rejection rejection;
    uint32_t cost;             /* weight of one request; default 1 */
    void *mod[SL_MAX_MODULES]; /* each module's rows of this route (NULL: none) */
};

/* A route the gateway adds itself (a module's endpoint, such as
 * /auth/token), matched before the file's routes on an exact path, or on
 * a path prefix (<prefix>: the developer endpoints under /developer/). */
struct cfg_builtin_route {
    const char *path;
    const struct cfg_route *route;
    bool prefix;
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
/* A 32-byte key (AES-256, HMAC-SHA256) read by cfg_set_secret32. */
struct cfg_secret32 {
    bool set;
    unsigned char bytes[32];
};

struct cfg_store {
    enum cfg_backend backend;
    char *data_dir; /* SQLite files; default ./var */
    struct cfg_redis redis;
    /* Encrypts stored secrets (signing secrets) and keys the audit chain
     * unless audit.key is given. */
    struct cfg_secret32 encryption_key;
};

struct config {
    int refs;            /* atomic; see cfg_ref/cfg_unref */
    char *path;          /* the file it was loaded from */
    struct arena *arena; /* everything below; freed (with its cleanup hooks) with the config */
    struct cfg_server server;
    struct cfg_admin admin;
    struct cfg_upstream *upstreams;
    int n_upstreams;
    struct cfg_route *routes;
    int n_routes;
    struct cfg_tier *tiers;
    int n_tiers;
    struct cfg_store store;
    struct cfg_builtin_route builtin_routes[SL_MAX_BUILTIN_ROUTES];
    int n_builtin_routes;
    void *mod[SL_MAX_MODULES]; /* each module's top-level sections (NULL: none) */
};

/* What a module reads from the config file: rows of its own at the top
 * level (<top>, into config.mod[]), in every route (<route>, into
 * cfg_route.mod[]), in every tier (<tier>, into cfg_tier.mod[]) and in every
 * upstream (<upstream>, into cfg_upstream.mod[]), each
 * filling a struct of the given size in the config's arena (conf/walker.h).
 * A section's check runs after its rows; the top-level check runs after
 * every route and tier was read. */
struct cfg_section;
struct cfg_module {
    const struct cfg_section *top;
    size_t top_size;
    const struct cfg_section *route;
    size_t route_size;
    const struct cfg_section *tier;
    size_t tier_size;
    const struct cfg_section *upstream;
    size_t upstream_size;
};

/* The modules' config parts by module id (NULL for a module with none):
 * src/modules.c. */
int cfg_module_count(void);
const struct cfg_module *cfg_module_at(int i);

/* The tier called <name>, or NULL. */
const struct cfg_tier *cfg_find_tier(const struct config *c, const char *name);

/* Looks up an environment variable; returns NULL when unset. Injected so unit
 * tests do not depend on the process environment. */
typedef const char *(*cfg_getenv_fn)(const char *name, void *ctx);

/* Add the route <r> (in <c>'s arena) for requests to exactly <path>,
 * matched before the file's routes; false when the table is full. */
bool cfg_add_builtin_route(struct config *c, const char *path, const struct cfg_route *r);
/* The same for every path that starts with <prefix>. */
bool cfg_add_builtin_prefix(struct config *c, const char *prefix, const struct cfg_route *r);

struct buf;
/* The keys whose values differ between <old> and <cfg> but take effect
 * only on a restart (rows flagged CFG_RESTART, the core's and every
 * module's): one line each, "server.listen changes only on restart",
 * appended to <out>. */
void cfg_restart_changes(const struct config *old, const struct config *cfg, struct buf *out);

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
