/* The cache module's config rows (cache/conf.h). */
#include "cache/conf.h"

#include <string.h>

#include "conf/walker.h"

/* Tags travel in Cache-Tag headers and purge requests, and are compared as
 * they are: the characters of a name, plus ':' for "kind:id" tags. */
#define CACHE_CFG_TAG_MAX 64

static int cache_cfg_tag_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                              int i, void *base)
{
    struct cache_route_conf *rc = base;
    size_t len = strlen(s);
    bool ok = len > 0 && len <= CACHE_CFG_TAG_MAX;
    for (size_t j = 0; ok && j < len; j++)
        ok = (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
             (s[j] >= '0' && s[j] <= '9') || s[j] == '_' || s[j] == '-' || s[j] == '.' ||
             s[j] == ':';
    if (!ok) {
        cfg_kerror(cx, line, "bad tag '%.*s' (letters, digits, '_', '-', '.', ':'; at most %d)",
                   CFG_QUOTE_MAX, s, CACHE_CFG_TAG_MAX);
        return -1;
    }
    for (int j = 0; j < rc->n_tags; j++) {
        if (strcmp(rc->tags[j], s) == 0) {
            cfg_kerror(cx, line, "duplicate tag '%s'", s);
            return -1;
        }
    }
    rc->tags[rc->n_tags++] = cfg_strdup(cx, s);
    return 0;
}

/* A list of tags into an array of its own size; n_tags counts the tags
 * stored (cfg_tag_item), not cfg_each's result. */
static void cache_cfg_set_tag_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                   void *base)
{
    struct cache_route_conf *rc = base;
    rc->tags = cfg_alloc(cx, cfg_list_cap(k, node) * sizeof *rc->tags);
    cfg_each(cx, k, node, base, cache_cfg_tag_item);
}

static void cache_cfg_check_route(struct cfg_ctx *cx, void *base, int line)
{
    struct cache_route_conf *rc = base;
    /* Only reached when the section is given as a mapping: off never walks
     * it. */
    rc->enabled = true;
}

static const struct cfg_key cache_cfg_route_cache_keys[] = {
    /* Required: no default lifetime fits every API. 0 keeps nothing on its
     * own, leaving the origin's max-age / s-maxage and the stale windows. */
    CFG_ROW("ttl", cfg_set_duration, struct cache_route_conf, ttl_ms, 0, CFG_YEAR_MS, NULL,
            CFG_REQUIRED),
    CFG_LIST("tags", cache_cfg_set_tag_list, struct cache_route_conf, tags, n_tags, 0,
             SL_MAX_CACHE_TAGS, NULL, 0),
    CFG_DURATION("stale_while_revalidate", struct cache_route_conf, stale_while_revalidate_ms, 0,
                 CFG_YEAR_MS, "0s"),
    CFG_DURATION("stale_if_error", struct cache_route_conf, stale_if_error_ms, 0, CFG_YEAR_MS,
                 "0s"),
    /* Off by default: a response to a caller with credentials is theirs. */
    CFG_BOOL("shared", struct cache_route_conf, shared, "false"),
    CFG_BOOL("respect_origin", struct cache_route_conf, respect_origin, "true"),
    CFG_END,
};
static const struct cfg_section cache_cfg_route_cache_section = {cache_cfg_route_cache_keys,
                                                                 cache_cfg_check_route};

/* What the module reads in a route: `cache`. Its first member is what
 * cache_route_conf() returns. */
struct cache_cfg_route {
    struct cache_route_conf cache;
};

static const struct cfg_key cache_cfg_route_keys[] = {
    /* Absent or off: not cached. */
    CFG_SECTION_OR_OFF("cache", struct cache_cfg_route, cache, &cache_cfg_route_cache_section),
    CFG_END,
};
static const struct cfg_section cache_cfg_route_section = {cache_cfg_route_keys, NULL};

/* An object larger than one store shard's share of max_memory could never be
 * stored, so a body of that size would never be cached whatever the headers
 * say; max_memory / 16 keeps max_object_size within a share for up to 16
 * shards (see cache_store_new). */
#define CFG_CACHE_SHARD_DIVISOR 16

static void cache_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct cache_conf *cc = base;
    /* 0 is below both bounds: a key that was bad, already reported. */
    if (cc->max_memory == 0 || cc->max_object_size == 0)
        return;
    if (cc->max_object_size > cc->max_memory / CFG_CACHE_SHARD_DIVISOR) {
        char obj[32], mem[32], most[32];
        cfg_fmt_size(obj, sizeof obj, cc->max_object_size);
        cfg_fmt_size(mem, sizeof mem, cc->max_memory);
        cfg_fmt_size(most, sizeof most, cc->max_memory / CFG_CACHE_SHARD_DIVISOR);
        cfg_kerror(cx, line,
                   "max_object_size %s is larger than max_memory / %d (%s with max_memory %s), "
                   "so an object would not fit a store shard",
                   obj, CFG_CACHE_SHARD_DIVISOR, most, mem);
    }
}

static const struct cfg_key cache_cfg_keys[] = {
    /* Below 1m a cache holds too little to be worth a lookup; past 64g it is
     * not a gateway's memory any more. */
    /* The store is sized at start. */
    CFG_ROW("max_memory", cfg_set_size, struct cache_conf, max_memory, 1ll << 20, 64ll << 30,
            "256m", CFG_RESTART),
    CFG_SIZE("max_object_size", struct cache_conf, max_object_size, 1ll << 10, 1ll << 30, "8m"),
    CFG_END,
};
static const struct cfg_section cache_cfg_section = {cache_cfg_keys, cache_cfg_check};

/* The top level: `cache`, first member (cache_conf()). */
struct cache_cfg_top {
    struct cache_conf cache;
};

static const struct cfg_key cache_cfg_top_keys[] = {
    /* Always read, so the store's budget has its defaults without one. */
    CFG_SECTION("cache", struct cache_cfg_top, cache, &cache_cfg_section, 0),
    CFG_END,
};
static const struct cfg_section cache_cfg_top_section = {cache_cfg_top_keys, NULL};

const struct cfg_module cache_cfg_module = {
    .top = &cache_cfg_top_section,
    .top_size = sizeof(struct cache_cfg_top),
    .route = &cache_cfg_route_section,
    .route_size = sizeof(struct cache_cfg_route),
};
