/* The proxy module's config rows (proxy/conf.h). */
#include "proxy/conf.h"

#include <string.h>
#include <strings.h>

#include "conf/walker.h"

/* Headers per `set` or `remove` list: a handful in practice. */
#define PX_CFG_MAX_HEADERS 32

static const struct {
    const char *name;
    enum px_var var;
} px_cfg_vars[] = {
    {"client_ip", PX_VAR_CLIENT_IP}, {"request_id", PX_VAR_REQUEST_ID},
    {"identity", PX_VAR_IDENTITY},   {"key_id", PX_VAR_KEY_ID},
    {"tier", PX_VAR_TIER},
};

/* Framing and hop-by-hop headers are the gateway's to write: a rule that
 * set or removed one could make the upstream read the request another way. */
static bool px_cfg_reserved(const char *name)
{
    static const char *const reserved[] = {"content-length", "transfer-encoding",
                                           "connection",     "keep-alive",
                                           "upgrade",        "te",
                                           "trailer",        "host",
                                           "expect"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return true;
    return false;
}

static bool px_cfg_header_name_ok(const char *s)
{
    return cfg_chars_ok(s, "-_!#$%&'*+.^`|~");
}

/* "v=$client_ip; id=$request_id" into parts; false after reporting. */
static bool px_cfg_template(struct cfg_ctx *cx, const char *s, int line, struct px_set *out)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            cfg_kerror(cx, line, "a header value cannot hold a line break");
            return false;
        }
    }
    out->parts = cfg_alloc(cx, (len + 1) * sizeof(*out->parts));
    size_t lit = 0;
    for (size_t i = 0; i <= len; i++) {
        bool var = i < len && s[i] == '$' && i + 1 < len &&
                   ((s[i + 1] >= 'a' && s[i + 1] <= 'z') || s[i + 1] == '_');
        if (i < len && !var)
            continue;
        if (i > lit)
            out->parts[out->n_parts++] = (struct px_part){PX_VAR_NONE, s + lit, i - lit};
        if (i == len)
            break;
        size_t end = i + 1;
        while (end < len && ((s[end] >= 'a' && s[end] <= 'z') || s[end] == '_'))
            end++;
        enum px_var v = PX_VAR_NONE;
        for (size_t k = 0; k < sizeof(px_cfg_vars) / sizeof(px_cfg_vars[0]); k++)
            if (strlen(px_cfg_vars[k].name) == end - i - 1 &&
                memcmp(px_cfg_vars[k].name, s + i + 1, end - i - 1) == 0)
                v = px_cfg_vars[k].var;
        if (v == PX_VAR_NONE) {
            cfg_kerror(cx, line,
                       "unknown variable '$%.*s' (use $client_ip, $request_id, $identity, "
                       "$key_id, $tier)",
                       (int)(end - i - 1), s + i + 1);
            return false;
        }
        out->parts[out->n_parts++] = (struct px_part){v, NULL, 0};
        lit = end;
        i = end - 1;
    }
    return true;
}

/* `set: {Name: value, ...}` into the rules at <base>. */
static void px_cfg_set_set(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    struct px_rules *r = base;
    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE, "a mapping of header names to values",
                            "headers", PX_CFG_MAX_HEADERS);
    if (count <= 0)
        return;
    r->set = cfg_alloc(cx, (size_t)count * sizeof(*r->set));
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "header", &len);
        if (!name)
            continue;
        if (!px_cfg_header_name_ok(name) || px_cfg_reserved(name)) {
            cfg_kerror(cx, cfg_line(key),
                       "'%.*s' cannot be set (a header name, not one of the "
                       "framing headers the gateway writes)",
                       CFG_QUOTE_MAX, name);
            continue;
        }
        size_t old = cfg_path_key(cx, name);
        yaml_node_t *v = yaml_document_get_node(cx->doc, p->value);
        char *value = cfg_scalar(cx, k, v);
        struct px_set *set = &r->set[r->n_set];
        set->name = cfg_strdup(cx, name);
        set->name_len = len;
        if (value && px_cfg_template(cx, value, cfg_line(v), set))
            r->n_set++;
        cfg_path_pop(cx, old);
    }
}

static int px_cfg_remove_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                              int i, void *base)
{
    if (px_cfg_header_name_ok(s) && !px_cfg_reserved(s))
        return cfg_push_name(cx, k, s, line, base);
    cfg_kerror(cx, line, "'%.*s' cannot be removed (a header name, not a framing header)",
               CFG_QUOTE_MAX, s);
    return -1;
}

static void px_cfg_set_remove(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    cfg_set_names_with(cx, k, node, base, px_cfg_remove_item);
}

static const struct cfg_key px_cfg_rules_keys[] = {
    CFG_CUSTOM("set", px_cfg_set_set),
    CFG_LIST("remove", px_cfg_set_remove, struct px_rules, remove, n_remove, 0, PX_CFG_MAX_HEADERS,
             NULL, 0),
    CFG_END,
};
static const struct cfg_section px_cfg_rules_section = {px_cfg_rules_keys, NULL};

/* ---- routes ---------------------------------------------------------------------- */

/* `rewrite: {prefix: /v2/}`. */
struct px_cfg_rewrite {
    char *prefix;
};

static void px_cfg_check_rewrite(struct cfg_ctx *cx, void *base, int line)
{
    struct px_cfg_rewrite *rw = base;
    if (rw->prefix && rw->prefix[0] != '/')
        cfg_kerror(cx, line, "prefix must start with '/'");
}

static const struct cfg_key px_cfg_rewrite_keys[] = {
    CFG_STRING("prefix", struct px_cfg_rewrite, prefix, CFG_REQUIRED | CFG_NONEMPTY),
    CFG_END,
};
static const struct cfg_section px_cfg_rewrite_section = {px_cfg_rewrite_keys,
                                                          px_cfg_check_rewrite};

/* The route rows, read into this struct; its first member is what
 * px_route_conf() returns. */
struct px_cfg_route {
    struct px_route_conf conf;
    struct px_cfg_rewrite rewrite;
};

static void px_cfg_check_route(struct cfg_ctx *cx, void *base, int line)
{
    struct px_cfg_route *r = base;
    if (r->conf.buffering == CFG_BUFFER_SERVER)
        r->conf.buffering = cx->c->server.request_buffering;
    r->conf.rewrite_prefix = r->rewrite.prefix;
    if (!r->conf.strip_prefix && !r->conf.rewrite_prefix)
        return;
    if (r->conf.strip_prefix && r->conf.rewrite_prefix)
        cfg_kerror(cx, line, "a route has either strip_prefix or rewrite, not both");
    else if (cx->route && cx->route->match != CFG_MATCH_PREFIX)
        cfg_kerror(cx, line, "strip_prefix and rewrite need a 'prefix' route");
}

static const struct cfg_key px_cfg_route_keys[] = {
    CFG_BOOL("strip_prefix", struct px_cfg_route, conf.strip_prefix, "false"),
    CFG_SECTION("rewrite", struct px_cfg_route, rewrite, &px_cfg_rewrite_section, CFG_IF_PRESENT),
    /* Absent: server.request_buffering, filled in by px_cfg_check_route. */
    CFG_WORD("request_buffering", struct px_cfg_route, conf.buffering, cfg_buffering_words, NULL),
    CFG_SECTION("request_headers", struct px_cfg_route, conf.req, &px_cfg_rules_section,
                CFG_IF_PRESENT),
    CFG_SECTION("response_headers", struct px_cfg_route, conf.resp, &px_cfg_rules_section,
                CFG_IF_PRESENT),
    CFG_BOOL("identity_headers", struct px_cfg_route, conf.identity_headers, "false"),
    CFG_END,
};
static const struct cfg_section px_cfg_route_section = {px_cfg_route_keys, px_cfg_check_route};

/* ---- upstreams ---------------------------------------------------------------------- */

/* `host: client | upstream | "name"`. */
static void px_cfg_set_host(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                            void *base)
{
    struct px_upstream_conf *u = base;
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    if (strcmp(s, "client") == 0) {
        u->host = PX_HOST_CLIENT;
    } else if (strcmp(s, "upstream") == 0) {
        u->host = PX_HOST_UPSTREAM;
    } else if (s[0] && strcspn(s, " \t\r\n/\\?#@") == strlen(s)) {
        u->host = PX_HOST_NAME;
        u->host_name = s;
    } else {
        cfg_kerror(cx, cfg_line(node), "'%.*s' is not client, upstream or a host name",
                   CFG_QUOTE_MAX, s);
    }
}

static void px_cfg_check_health(struct cfg_ctx *cx, void *base, int line)
{
    struct px_health_conf *h = base;
    h->enabled = true;
    if (h->path && h->path[0] != '/')
        cfg_kerror(cx, line, "path must start with '/'");
    if (h->timeout_ms >= h->interval_ms)
        cfg_kerror(cx, line, "timeout must be shorter than interval");
}

static const struct cfg_key px_cfg_health_keys[] = {
    /* Absent: passive only (requests that fail take a server out for
     * `interval`). */
    CFG_STRING("path", struct px_health_conf, path, CFG_NONEMPTY),
    CFG_DURATION("interval", struct px_health_conf, interval_ms, 100, CFG_DAY_MS, "5s"),
    CFG_DURATION("timeout", struct px_health_conf, timeout_ms, 10, 60000, "1s"),
    CFG_INT("unhealthy", struct px_health_conf, unhealthy, 1, 100, "3", 0),
    CFG_INT("healthy", struct px_health_conf, healthy, 1, 100, "2", 0),
    CFG_END,
};
static const struct cfg_section px_cfg_health_section = {px_cfg_health_keys, px_cfg_check_health};

static const struct cfg_key px_cfg_upstream_keys[] = {
    {"host", px_cfg_set_host, 0, 0, 0, 0, "client", 0, NULL, 0, NULL},
    CFG_SECTION("request_headers", struct px_upstream_conf, req, &px_cfg_rules_section,
                CFG_IF_PRESENT),
    CFG_SECTION("response_headers", struct px_upstream_conf, resp, &px_cfg_rules_section,
                CFG_IF_PRESENT),
    CFG_SECTION("health", struct px_upstream_conf, health, &px_cfg_health_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section px_cfg_upstream_section = {px_cfg_upstream_keys, NULL};

const struct cfg_module px_cfg_module = {
    .route = &px_cfg_route_section,
    .route_size = sizeof(struct px_cfg_route),
    .upstream = &px_cfg_upstream_section,
    .upstream_size = sizeof(struct px_upstream_conf),
};
