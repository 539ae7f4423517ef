/* The core's config sections (SPEC 2): server, admin, upstreams, tiers,
 * routes and store, and the top level that modules extend with sections of
 * their own (struct cfg_module). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/walker.h"
#include "util/arena.h"
#include "util/buf.h"

static const struct cfg_key cfg_queue_keys[] = {
    /* 0: no queue, a request finding every connection busy gets 503 at once. */
    CFG_INT("max", struct cfg_queue, max, 0, 10000000, "10000", 0),
    CFG_DURATION("timeout", struct cfg_queue, timeout_ms, 1, 3600000, "10s"),
    CFG_END,
};
static const struct cfg_section cfg_queue_section = {cfg_queue_keys, NULL};

static const struct cfg_key cfg_upstream_keys[] = {
    CFG_LIST("servers", cfg_set_addr_list, struct cfg_upstream, servers, n_servers, 1,
             SL_MAX_UPSTREAM_SERVERS, NULL, CFG_REQUIRED),
    CFG_INT("keepalive", struct cfg_upstream, keepalive, 0, 10000, "32", 0),
    /* What a small app server accepts (nginx's worker_connections is 1024,
     * gunicorn's backlog 2048): past it, requests wait in the queue. */
    CFG_INT("max_connections", struct cfg_upstream, max_connections, 1, 1000000, "256", 0),
    CFG_SECTION("queue", struct cfg_upstream, queue, &cfg_queue_section, 0),
    /* More than a few tries only multiplies the load on a failing app. */
    CFG_INT("retries", struct cfg_upstream, retries, 0, 5, "0", 0),
    CFG_END,
};
static const struct cfg_section cfg_upstream_section = {cfg_upstream_keys, NULL};

static void cfg_set_upstreams(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    struct config *c = base;

    if (cfg_is_null(node))
        return; /* the top-level check reports that none is defined */
    cx->upstreams_given = node->type != YAML_MAPPING_NODE ||
                          node->data.mapping.pairs.top > node->data.mapping.pairs.start;
    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE, "a mapping of names to {servers: [...]}",
                            "upstreams", SL_MAX_UPSTREAMS);
    if (count <= 0)
        return;
    c->upstreams = cfg_alloc(cx, (size_t)count * sizeof *c->upstreams);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "upstream", &len);
        if (!name)
            continue;
        if (!cfg_good_name(name, len) || memchr(name, '\0', len)) {
            cfg_kerror(cx, cfg_line(key),
                       "bad upstream name '%.*s' (letters, digits, '_', '-', '.'; at most %d)",
                       CFG_QUOTE_MAX, name, CFG_NAME_MAX);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < c->n_upstreams; i++)
            dup = dup || strcmp(c->upstreams[i].name, name) == 0;
        if (dup) {
            cfg_kerror(cx, cfg_line(key), "duplicate upstream '%s'", name);
            continue;
        }
        struct cfg_upstream *u = &c->upstreams[c->n_upstreams++];
        u->name = arena_strndup(c->arena, name, len);
        size_t old = cfg_path_key(cx, name);
        struct cfg_part parts[SL_MAX_MODULES + 1];
        int n = cfg_module_parts(cx, CFG_KIND_UPSTREAM, &cfg_upstream_section, u, u->mod, parts);
        cfg_walk_parts(cx, parts, n, yaml_document_get_node(cx->doc, p->value), cfg_line(key));
        cfg_path_pop(cx, old);
    }
}

/* ---- tiers -------------------------------------------------------------- */

static const struct cfg_key cfg_tier_keys[] = {
    /* Exempt wins over limits, which are still checked: a tier made exempt
     * for an incident keeps its limits, valid, for when it is not. */
    CFG_BOOL("exempt", struct cfg_tier, exempt, "false"),
    CFG_END,
};
static const struct cfg_section cfg_tier_section = {cfg_tier_keys, NULL};

static void cfg_set_tiers(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                          void *base)
{
    struct config *c = base;

    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE,
                            "a mapping of tier names to {limits: [...]}", "tiers", SL_MAX_TIERS);
    if (count <= 0)
        return;
    c->tiers = cfg_alloc(cx, (size_t)count * sizeof *c->tiers);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "tier", &len);
        if (!name)
            continue;
        /* Tier names come back in JWT claims and key records, are compared
         * as they are, and show up in metric labels. */
        if (!cfg_good_name(name, len) || memchr(name, '\0', len)) {
            cfg_kerror(cx, cfg_line(key),
                       "bad tier name '%.*s' (letters, digits, '_', '-', '.'; at most %d)",
                       CFG_QUOTE_MAX, name, CFG_NAME_MAX);
            continue;
        }
        if (cfg_find_tier(c, name)) {
            cfg_kerror(cx, cfg_line(key), "duplicate tier '%s'", name);
            continue;
        }
        struct cfg_tier *t = &c->tiers[c->n_tiers++];
        t->name = arena_strndup(c->arena, name, len);
        t->line = cfg_line(key);
        size_t old = cfg_path_key(cx, name);
        struct cfg_part parts[SL_MAX_MODULES + 1];
        int n = cfg_module_parts(cx, CFG_KIND_TIER, &cfg_tier_section, t, t->mod, parts);
        cfg_walk_parts(cx, parts, n, yaml_document_get_node(cx->doc, p->value), t->line);
        cfg_path_pop(cx, old);
    }
}

const struct cfg_tier *cfg_find_tier(const struct config *c, const char *name)
{
    for (int i = 0; i < c->n_tiers; i++)
        if (strcmp(c->tiers[i].name, name) == 0)
            return &c->tiers[i];
    return NULL;
}

/* ---- routes ------------------------------------------------------------- */

static const struct cfg_word cfg_rejection_words[] = {
    {"json", CFG_REJECT_JSON},
    {"drf", CFG_REJECT_DRF},
    {"graphql", CFG_REJECT_GRAPHQL},
    {NULL, 0},
};

static void cfg_route_path(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base, enum cfg_match match)
{
    struct cfg_route *r = base;
    if (cx->route_has_path) {
        cfg_kerror(cx, cx->key_line, "a route has either 'path' (exact) or 'prefix', not both");
        return;
    }
    cx->route_has_path = true;
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    /* Compared with the raw request target's path: a space, '?' or '#' could
     * never be part of one. */
    bool ok = s[0] == '/';
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && *p != 0x7f && *p != '?' && *p != '#';
    if (!ok) {
        cfg_kerror(cx, cfg_line(node),
                   "bad path '%.*s' (must start with '/'; no spaces, '?' or '#')", CFG_QUOTE_MAX,
                   s);
        return;
    }
    r->match = match;
    r->path = s;
    r->path_len = strlen(s);
}

static void cfg_set_path(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    cfg_route_path(cx, k, node, base, CFG_MATCH_EXACT);
}

static void cfg_set_prefix(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    cfg_route_path(cx, k, node, base, CFG_MATCH_PREFIX);
}

static void cfg_set_upstream_ref(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                 void *base)
{
    struct cfg_route *r = base;
    struct config *c = cx->c;
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    for (int i = 0; i < c->n_upstreams; i++) {
        if (strcmp(c->upstreams[i].name, s) == 0) {
            r->upstream = i;
            return;
        }
    }
    cfg_kerror(cx, cfg_line(node), "unknown upstream '%.*s'", CFG_QUOTE_MAX, s);
}

static void cfg_check_route(struct cfg_ctx *cx, void *base, int line)
{
    if (!cx->route_has_path)
        cfg_kerror(cx, line, "a route needs 'path' (exact match) or 'prefix'");
}

static const struct cfg_key cfg_route_keys[] = {
    CFG_CUSTOM("path", cfg_set_path),
    CFG_CUSTOM("prefix", cfg_set_prefix),
    /* No count: the item bits are ORed into one mask. */
    CFG_ROW("methods", cfg_set_methods, struct cfg_route, methods, 1, SL_MAX_METHODS, NULL, 0),
    /* Absent: 0, the first upstream in the file. */
    CFG_CUSTOM("upstream", cfg_set_upstream_ref),
    CFG_WORD("rejection", struct cfg_route, rejection, cfg_rejection_words, "json"),
    CFG_INT("cost", struct cfg_route, cost, 1, 1000000, "1", 0),
    CFG_END,
};
static const struct cfg_section cfg_route_section = {cfg_route_keys, cfg_check_route};

/* Reads route <node> (NULL: a route of defaults) into <r>: the core's rows
 * and every module's. */
static void cfg_read_route(struct cfg_ctx *cx, struct cfg_route *r, yaml_node_t *node)
{
    struct cfg_part parts[SL_MAX_MODULES + 1];
    int n = cfg_module_parts(cx, CFG_KIND_ROUTE, &cfg_route_section, r, r->mod, parts);
    cx->route = r;
    cfg_walk_parts(cx, parts, n, node, r->line);
    cx->route = NULL;
}

static void cfg_set_routes(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    struct config *c = base;

    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_SEQUENCE_NODE, "a list of routes (- prefix: /api/)",
                            "routes", SL_MAX_ROUTES);
    if (count <= 0)
        return; /* none: the top-level check adds the implicit route */
    c->routes = cfg_alloc(cx, (size_t)count * sizeof *c->routes);
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(cx->doc, *it);
        struct cfg_route *r = &c->routes[c->n_routes];
        r->line = cfg_line(item);
        size_t old = cfg_path_index(cx, c->n_routes++);
        cx->route_has_path = false;
        cfg_read_route(cx, r, item);
        cfg_path_pop(cx, old);
    }
}

void cfg_route_defaults(struct cfg_ctx *cx, struct cfg_route *r)
{
    bool had_path = cx->route_has_path;
    cx->route_has_path = true; /* the caller gives it one */
    cfg_read_route(cx, r, NULL);
    cx->route_has_path = had_path;
}

/* ---- store -------------------------------------------------------------- */

static const struct cfg_word cfg_backend_words[] = {
    {"memory", CFG_BACKEND_MEMORY},
    {"redis", CFG_BACKEND_REDIS},
    {NULL, 0},
};

static const struct cfg_word cfg_on_failure_words[] = {
    {"local", CFG_FAIL_LOCAL},
    {"allow", CFG_FAIL_ALLOW},
    {"deny", CFG_FAIL_DENY},
    {NULL, 0},
};

const struct cfg_word cfg_buffering_words[] = {
    {"auto", CFG_BUFFER_AUTO},
    {"on", CFG_BUFFER_ON},
    {"off", CFG_BUFFER_OFF},
    {NULL, 0},
};

/* Longest key prefix: keys carry it, and a long one only costs memory. */
#define CFG_REDIS_PREFIX_MAX 64

static void cfg_check_redis(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_redis *r = base;
    const char *why;
    if (!r->url || !r->prefix)
        return; /* reported */
    if (rds_parse_url(r->url, &r->conn, &why) < 0)
        cfg_error(cx, line ? line : 1, "store.redis.url: %s in '%.*s'", why, CFG_QUOTE_MAX, r->url);
    r->conn.timeout_ms = r->timeout_ms;
    bool ok = strlen(r->prefix) <= CFG_REDIS_PREFIX_MAX;
    for (const char *p = r->prefix; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '{' && *p != '}';
    if (!ok)
        cfg_error(cx, line ? line : 1,
                  "store.redis.prefix: printable, no spaces or braces, at most %d characters",
                  CFG_REDIS_PREFIX_MAX);
}

static const struct cfg_key cfg_redis_keys[] = {
    CFG_ROW("url", cfg_set_string, struct cfg_redis, url, 0, 0, "redis://127.0.0.1:6379/0",
            CFG_NONEMPTY | CFG_RESTART),
    /* A limit check waits at most this long; past a second it is no longer
     * a limiter but an outage. */
    CFG_ROW("timeout", cfg_set_duration, struct cfg_redis, timeout_ms, 1, 60000, "50ms",
            CFG_RESTART),
    CFG_WORD("on_failure", struct cfg_redis, on_failure, cfg_on_failure_words, "local"),
    CFG_ROW("prefix", cfg_set_string, struct cfg_redis, prefix, 0, 0, "sluice:", CFG_RESTART),
    CFG_DURATION("lease", struct cfg_redis, lease_ms, 1000, CFG_DAY_MS, "2m"),
    CFG_END,
};
static const struct cfg_section cfg_redis_section = {cfg_redis_keys, cfg_check_redis};

static const struct cfg_key cfg_store_keys[] = {
    {"backend", cfg_set_word, offsetof(struct cfg_store, backend), 0, 0, 0, "memory", CFG_RESTART,
     NULL, CFG_FIELD_SIZE(struct cfg_store, backend), cfg_backend_words},
    CFG_ROW("data_dir", cfg_set_path_rel, struct cfg_store, data_dir, 0, 0, "./var",
            CFG_NONEMPTY | CFG_RESTART),
    /* Always read, so the defaults are there for backend: redis. */
    CFG_SECTION("redis", struct cfg_store, redis, &cfg_redis_section, 0),
    CFG_ROW("encryption_key", cfg_set_secret32, struct cfg_store, encryption_key, 0, 0, NULL,
            CFG_RESTART),
    CFG_END,
};
static const struct cfg_section cfg_store_section = {cfg_store_keys, NULL};

/* ---- the top level -------------------------------------------------------- */

static const struct cfg_key cfg_timeout_keys[] = {
    CFG_DURATION("header", struct cfg_timeouts, header_ms, 1, CFG_DAY_MS, "10s"),
    CFG_DURATION("idle", struct cfg_timeouts, idle_ms, 1, CFG_DAY_MS, "60s"),
    CFG_DURATION("upstream_connect", struct cfg_timeouts, upstream_connect_ms, 1, CFG_DAY_MS, "2s"),
    CFG_DURATION("upstream_read", struct cfg_timeouts, upstream_read_ms, 1, CFG_DAY_MS, "30s"),
    /* 0: stop at once, dropping what is in flight. */
    CFG_DURATION("drain", struct cfg_timeouts, drain_ms, 0, CFG_DAY_MS, "30s"),
    CFG_END,
};
static const struct cfg_section cfg_timeout_section = {cfg_timeout_keys, NULL};

static const struct cfg_key cfg_server_keys[] = {
    CFG_LIST("listen", cfg_set_addr_list, struct cfg_server, listen, n_listen, 1, SL_MAX_LISTEN,
             "0.0.0.0:8080", CFG_RESTART),
    CFG_INT("workers", struct cfg_server, workers, 1, SL_MAX_WORKERS, "auto",
            CFG_AUTO | CFG_RESTART),
    CFG_INT("max_connections", struct cfg_server, max_connections, 1, 10000000, "10000", 0),
    CFG_SECTION("timeouts", struct cfg_server, timeouts, &cfg_timeout_section, 0),
    CFG_SIZE("max_header_bytes", struct cfg_server, max_header_bytes, 1 << 10, 1 << 20, "16k"),
    CFG_SIZE("max_body_bytes", struct cfg_server, max_body_bytes, 0, 1ll << 40, "10m"),
    CFG_SIZE("request_buffer_memory", struct cfg_server, request_buffer_memory, 0, 1ll << 30,
             "64k"),
    /* Before routes (the top level reads server first): a route without
     * its own takes this one as it is read. */
    CFG_WORD("request_buffering", struct cfg_server, request_buffering, cfg_buffering_words,
             "auto"),
    CFG_BOOL("access_log", struct cfg_server, access_log, "true"),
    CFG_LIST("trusted_proxies", cfg_set_cidr_list, struct cfg_server, trusted_proxies,
             n_trusted_proxies, 0, SL_MAX_TRUSTED_PROXIES, NULL, 0),
    CFG_INT("ipv6_prefix", struct cfg_server, ipv6_prefix, 1, 128, "64", 0),
    CFG_END,
};
static const struct cfg_section cfg_server_section = {cfg_server_keys, NULL};

static void cfg_check_admin(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_admin *a = base;
    /* Only reached when the section is present (CFG_IF_PRESENT); a missing
     * listen or token was reported as required. */
    a->enabled = true;
}

static const struct cfg_key cfg_admin_keys[] = {
    CFG_ADDR("listen", struct cfg_admin, listen, CFG_REQUIRED | CFG_RESTART),
    /* Required: an admin API open to whoever reaches the port is never a
     * default. */
    CFG_STRING("token", struct cfg_admin, token, CFG_REQUIRED | CFG_NONEMPTY),
    CFG_END,
};
static const struct cfg_section cfg_admin_section = {cfg_admin_keys, cfg_check_admin};

static void cfg_check_top(struct cfg_ctx *cx, void *base, int line)
{
    struct config *c = base;

    if (!cx->upstreams_given)
        cfg_error(cx, line,
                  "upstreams: at least one upstream is required, e.g. "
                  "upstreams: {app: {servers: [\"127.0.0.1:8000\"]}}");
    if (c->n_routes == 0) {
        /* A config that is only an upstream proxies everything to it, with
         * every module's defaults (caching is opt-in per route: responses
         * of an API are not assumed shareable). */
        c->routes = cfg_alloc(cx, sizeof *c->routes);
        struct cfg_route *r = &c->routes[0];
        cfg_route_defaults(cx, r);
        r->match = CFG_MATCH_PREFIX;
        r->path = cfg_strdup(cx, "/");
        r->path_len = 1;
        c->n_routes = 1;
    }
}

/* Upstreams and tiers come before routes: a route's upstream and tier names
 * are looked up as it is read. Modules' top-level sections are read after
 * these rows, and their checks run after this section's. */
static const struct cfg_key cfg_top_keys[] = {
    CFG_SECTION("server", struct config, server, &cfg_server_section, 0),
    CFG_SECTION("admin", struct config, admin, &cfg_admin_section, CFG_IF_PRESENT),
    CFG_CUSTOM("upstreams", cfg_set_upstreams),
    CFG_CUSTOM("tiers", cfg_set_tiers),
    CFG_SECTION("store", struct config, store, &cfg_store_section, 0),
    CFG_CUSTOM("routes", cfg_set_routes),
    CFG_END,
};
static const struct cfg_section cfg_top_section = {cfg_top_keys, cfg_check_top};

void cfg_read_top(struct cfg_ctx *cx, yaml_node_t *root)
{
    struct config *c = cx->c;
    struct cfg_part parts[SL_MAX_MODULES + 1];
    int n = cfg_module_parts(cx, CFG_KIND_TOP, &cfg_top_section, c, c->mod, parts);
    cfg_walk_parts(cx, parts, n, root, cfg_line(root));
}

/* ---- what a reload cannot change -------------------------------------------- */

/* Do the values of row <k> differ between <a> and <b>? */
static bool cfg_row_differs(const struct cfg_key *k, const void *a, const void *b)
{
    const char *va = (const char *)a + k->off, *vb = (const char *)b + k->off;
    if (k->set == cfg_set_string || k->set == cfg_set_path_rel) {
        const char *sa = *(char *const *)va, *sb = *(char *const *)vb;
        return (sa == NULL) != (sb == NULL) || (sa && strcmp(sa, sb) != 0);
    }
    if (k->n_off &&
        *(const int *)((const char *)a + k->n_off) != *(const int *)((const char *)b + k->n_off))
        return true;
    return memcmp(va, vb, k->size) != 0;
}

/* Rows flagged CFG_RESTART in <sec> and its subsections, at <path>. */
static void cfg_restart_rows(const struct cfg_section *sec, const void *a, const void *b,
                             const char *path, struct buf *out)
{
    for (const struct cfg_key *k = sec->keys; k->name; k++) {
        char sub[CFG_PATH_MAX];
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", k->name);
        if (k->sub && k->set != cfg_set_unsupported)
            cfg_restart_rows(k->sub, (const char *)a + k->off, (const char *)b + k->off, sub, out);
        else if ((k->flags & CFG_RESTART) && cfg_row_differs(k, a, b))
            buf_appendf(out, "%s changes only on restart\n", sub);
    }
}

void cfg_restart_changes(const struct config *old, const struct config *cfg, struct buf *out)
{
    cfg_restart_rows(&cfg_top_section, old, cfg, "", out);
    int n = cfg_module_count();
    for (int m = 0; m < n; m++) {
        const struct cfg_module *cm = cfg_module_at(m);
        if (cm && cm->top)
            cfg_restart_rows(cm->top, old->mod[m], cfg->mod[m], "", out);
    }
}
