/* The limit module's config rows (limit/conf.h). */
#include "limit/conf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf/walker.h"
#include "obs/metrics.h"
#include "util/arena.h"

static int lim_cfg_limit_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                              int i, void *base)
{
    struct limit *l = *(struct limit **)((char *)base + k->off) + i;
    const char *why;
    if (lim_parse(s, l, &why) == 0)
        return 0;
    cfg_kerror(cx, line, "bad limit '%.*s': %s", CFG_QUOTE_MAX, s, why);
    return -1;
}

/* A list of limit strings into a struct limit array of its own size (the
 * field at k->off), counted by the int at k->n_off. */
static void lim_cfg_set_limit_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                   void *base)
{
    struct limit **dst = (struct limit **)((char *)base + k->off);
    *dst = cfg_alloc(cx, cfg_list_cap(k, node) * sizeof **dst);
    int n = cfg_each(cx, k, node, base, lim_cfg_limit_item);
    *(int *)((char *)base + k->n_off) = n < 0 ? 0 : n;
}

static int lim_cfg_header_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                               int i, void *base)
{
    struct lim_conf *lim = base;
    if (strcmp(s, "x-ratelimit") == 0) {
        lim->header_xratelimit = true;
        return 0;
    }
    if (strcmp(s, "ietf") == 0) {
        lim->header_ietf = true;
        return 0;
    }
    cfg_kerror(cx, line, "unknown value '%.*s' (use x-ratelimit, ietf)", CFG_QUOTE_MAX, s);
    return -1;
}

static void lim_cfg_set_headers(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                void *base)
{
    cfg_each(cx, k, node, base, lim_cfg_header_item);
}

/* limits.algorithm, by the names algo.c knows. "concurrency" is one, but
 * of its own limits only: a default cannot turn "100/h" into a number of
 * requests in flight. */
static void lim_cfg_set_algorithm(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                  void *base)
{
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    int a = lim_algorithm_from_name(s);
    if (a == LIM_CONCURRENCY)
        cfg_kerror(cx, cfg_line(node),
                   "concurrency cannot be a default (write 'concurrency N' as a limit of its own)");
    else if (a < 0)
        cfg_kerror(cx, cfg_line(node),
                   "unknown algorithm '%.*s' (use fixed_window, sliding_window, token_bucket)",
                   CFG_QUOTE_MAX, s);
    else
        cfg_store_int(k, base, a);
}

static const struct cfg_key lim_cfg_keys[] = {
    CFG_ROW("algorithm", lim_cfg_set_algorithm, struct lim_conf, algorithm, 0, 0, "sliding_window",
            0),
    /* No count: each item sets its own flag; [] sends no headers. */
    CFG_ROW("headers", lim_cfg_set_headers, struct lim_conf, header_xratelimit, 0, 2, "x-ratelimit",
            0),
    CFG_BOOL("enabled", struct lim_conf, enabled, "true"),
    /* An entry is one counter of one identity, at most ~128 bytes: the
     * default holds a million in ~128 MB; past 1e9 (~128 GB) no single host
     * could keep them, and below 1000 a busy minute would evict live ones. */
    CFG_INT("max_entries", struct lim_conf, max_entries, 1000, 1000000000, "1000000", CFG_RESTART),
    CFG_END,
};

int lim_route_scope(char *out, size_t cap, const struct cfg_route *r, const char *tier)
{
    int n = snprintf(out, cap, "r:%c%s:%s", r->match == CFG_MATCH_EXACT ? '=' : '^', r->path, tier);
    return n < 0 ? 0 : (size_t)n >= cap ? (int)cap - 1 : n;
}

int lim_decision_labels(char *out, size_t cap, const struct cfg_route *r, bool allowed)
{
    char name[96];
    metrics_label_escape(name, sizeof(name), r->path);
    int n =
        snprintf(out, cap, "route=\"%s\",outcome=\"%s\"", name, allowed ? "allowed" : "rejected");
    return n < 0 ? 0 : (size_t)n >= cap ? (int)cap - 1 : n;
}

/* Counter keys start with their scope (policy.c): made once here, so a
 * request copies bytes instead of formatting them. */
static void lim_cfg_tier_scope(struct cfg_ctx *cx, struct lim_tier_conf *t, const char *tier)
{
    if (!tier)
        return;
    size_t n = strlen(tier);
    t->scope = cfg_alloc(cx, n + 3);
    memcpy(t->scope, "t:", 2);
    memcpy(t->scope + 2, tier, n + 1);
    t->scope_len = n + 2;
}

static void lim_cfg_route_scope(struct cfg_ctx *cx, const struct cfg_route *route,
                                struct lim_route_limits *rl)
{
    if (!route->path || !rl->tier)
        return; /* an error was reported: the config is not used */
    size_t cap = strlen(route->path) + strlen(rl->tier) + 5;
    rl->scope = cfg_alloc(cx, cap);
    rl->scope_len = (size_t)lim_route_scope(rl->scope, cap, route, rl->tier);
}

static void lim_cfg_decision_labels(struct cfg_ctx *cx, const struct cfg_route *route,
                                    struct lim_route_conf *r)
{
    if (!route->path)
        return; /* an error was reported: the config is not used */
    for (int i = 0; i < 2; i++) {
        char labels[192];
        lim_decision_labels(labels, sizeof(labels), route, i == 0);
        r->decision_labels[i] = cfg_strdup(cx, labels);
    }
}

/* Resolves what depends on sections read in any order: a limit naming no
 * algorithm takes limits.algorithm. */
static void lim_cfg_resolve(struct cfg_ctx *cx, void *base, int line)
{
    struct config *c = cx->c;
    const struct lim_conf *lc = lim_conf(c);
    for (int i = 0; i < c->n_tiers; i++) {
        struct lim_tier_conf *t = c->tiers[i].mod[MOD_limit];
        for (int j = 0; j < t->n_limits; j++)
            if (t->limits[j].algorithm == LIM_DEFAULT)
                t->limits[j].algorithm = lc->algorithm;
        lim_cfg_tier_scope(cx, t, c->tiers[i].name);
    }
    for (int i = 0; i < c->n_routes; i++) {
        struct lim_route_conf *r = c->routes[i].mod[MOD_limit];
        for (int j = 0; j < r->n_limits; j++) {
            for (int m = 0; m < r->limits[j].n_limits; m++)
                if (r->limits[j].limits[m].algorithm == LIM_DEFAULT)
                    r->limits[j].limits[m].algorithm = lc->algorithm;
            lim_cfg_route_scope(cx, &c->routes[i], &r->limits[j]);
        }
        lim_cfg_decision_labels(cx, &c->routes[i], r);
    }
}
static const struct cfg_section lim_cfg_section = {lim_cfg_keys, NULL};

/* What the module reads at the top level: the `limits` section. Its first
 * member is what lim_conf() returns. */
struct lim_cfg_top {
    struct lim_conf limits;
};

/* A route's limits for one tier; the row is only used for reading. */
static const struct cfg_key lim_cfg_route_tier_limits =
    CFG_LIST("limits", lim_cfg_set_limit_list, struct lim_route_limits, limits, n_limits, 0,
             SL_MAX_LIMITS_PER_LIST, NULL, 0);

/* `limits: {TIER: [LIMIT...], ...}` or `limits: off`. */
static void lim_cfg_set_route_limits(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                     void *base)
{
    struct lim_route_conf *r = base;
    struct config *c = cx->c;

    if (cfg_is_null(node))
        return;
    if (node->type == YAML_SCALAR_NODE) {
        char *s = cfg_scalar(cx, k, node);
        if (!s)
            return;
        /* The words that read as false elsewhere; "on" has no meaning here. */
        if (strcasecmp(s, "off") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0)
            r->limits_off = true;
        else
            cfg_kerror(cx, cfg_line(node),
                       "'%.*s' is not off (use off, or a mapping of tiers to limits: "
                       "{anonymous: [\"100/h\"]})",
                       CFG_QUOTE_MAX, s);
        return;
    }
    if (node->type != YAML_MAPPING_NODE) {
        cfg_type_error(cx, node, "off or a mapping of tiers to limits");
        return;
    }
    ptrdiff_t count = node->data.mapping.pairs.top - node->data.mapping.pairs.start;
    if (count == 0)
        return;
    /* No bound of its own: accepted keys are distinct tiers, anonymous or
     * "*", which SL_MAX_TIERS bounds; the array, as long as the mapping,
     * is bounded by the file's size. */
    r->limits = cfg_alloc(cx, (size_t)count * sizeof *r->limits);
    int key_line = cx->key_line;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "tier", &len);
        if (!name)
            continue;
        if (memchr(name, '\0', len) ||
            (strcmp(name, "anonymous") != 0 && strcmp(name, "*") != 0 && !cfg_find_tier(c, name))) {
            cfg_kerror(cx, cfg_line(key), "unknown tier '%.*s'", CFG_QUOTE_MAX, name);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < r->n_limits; i++)
            dup = dup || strcmp(r->limits[i].tier, name) == 0;
        if (dup) {
            cfg_kerror(cx, cfg_line(key), "duplicate tier '%s'", name);
            continue;
        }
        struct lim_route_limits *rl = &r->limits[r->n_limits++];
        rl->tier = arena_strndup(c->arena, name, len);
        size_t old = cfg_path_key(cx, name);
        cx->key_line = cfg_line(key);
        lim_cfg_set_limit_list(cx, &lim_cfg_route_tier_limits,
                               yaml_document_get_node(cx->doc, p->value), rl);
        cfg_path_pop(cx, old);
    }
    cx->key_line = key_line;
}

/* Tier names are looked up as they are read: tiers come before routes. */
static const struct cfg_key lim_cfg_route_keys[] = {
    CFG_CUSTOM("limits", lim_cfg_set_route_limits),
    CFG_END,
};
static const struct cfg_section lim_cfg_route_section = {lim_cfg_route_keys, NULL};

static const struct cfg_key lim_cfg_tier_keys[] = {
    CFG_LIST("limits", lim_cfg_set_limit_list, struct lim_tier_conf, limits, n_limits, 0,
             SL_MAX_LIMITS_PER_LIST, NULL, 0),
    CFG_END,
};
static const struct cfg_section lim_cfg_tier_section = {lim_cfg_tier_keys, NULL};

static const struct cfg_key lim_cfg_top_keys[] = {
    CFG_SECTION("limits", struct lim_cfg_top, limits, &lim_cfg_section, 0),
    CFG_END,
};
/* Resolved after every route and tier was read (and after the core's
 * check added the implicit route). */
static const struct cfg_section lim_cfg_top_section = {lim_cfg_top_keys, lim_cfg_resolve};

const struct cfg_module lim_cfg_module = {
    .top = &lim_cfg_top_section,
    .top_size = sizeof(struct lim_cfg_top),
    .route = &lim_cfg_route_section,
    .route_size = sizeof(struct lim_route_conf),
    .tier = &lim_cfg_tier_section,
    .tier_size = sizeof(struct lim_tier_conf),
};
