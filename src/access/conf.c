/* The access module's config rows (access/conf.h). */
#include "access/conf.h"

#include "conf/walker.h"

static int acl_cfg_cidr_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                             int i, void *base)
{
    struct cfg_cidr *v = *(struct cfg_cidr **)((char *)base + k->off);
    if (cfg_parse_cidr(s, &v[i]) == 0)
        return 0;
    cfg_kerror(cx, line, "bad CIDR '%.*s' (use 10.0.0.0/8, 2001:db8::/32 or one address)",
               CFG_QUOTE_MAX, s);
    return -1;
}

/* A list of CIDRs into an array of its own size (a deny list may hold
 * thousands of networks; a fixed array would bloat every route). */
static void acl_cfg_set_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                             void *base)
{
    struct cfg_cidr **dst = (struct cfg_cidr **)((char *)base + k->off);
    *dst = cfg_alloc(cx, cfg_list_cap(k, node) * sizeof **dst);
    int n = cfg_each(cx, k, node, base, acl_cfg_cidr_item);
    *(int *)((char *)base + k->n_off) = n < 0 ? 0 : n;
}

static void acl_cfg_free_trie(void *arg)
{
    acl_trie_free(arg);
}

/* The trie of <n> networks <v>, owned by the config; NULL when <n> is 0. */
static struct acl_trie *acl_cfg_trie(struct cfg_ctx *cx, const struct cfg_cidr *v, int n, int line)
{
    if (n == 0)
        return NULL;
    struct acl_trie *t = acl_trie_new();
    if (t)
        cfg_on_free(cx, acl_cfg_free_trie, t);
    for (int i = 0; t && i < n; i++)
        if (acl_trie_add(t, &v[i], ACL_FOREVER) < 0)
            t = NULL;
    if (!t)
        cfg_error(cx, line, "access: out of memory building the list");
    return t;
}

static void acl_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct acl_conf *a = base;
    a->allow_trie = acl_cfg_trie(cx, a->allow, a->n_allow, line);
    a->deny_trie = acl_cfg_trie(cx, a->deny, a->n_deny, line);
}

static const struct cfg_key acl_cfg_keys[] = {
    CFG_LIST("allow", acl_cfg_set_list, struct acl_conf, allow, n_allow, 0, ACL_MAX_LIST, NULL, 0),
    CFG_LIST("deny", acl_cfg_set_list, struct acl_conf, deny, n_deny, 0, ACL_MAX_LIST, NULL, 0),
    CFG_END,
};
static const struct cfg_section acl_cfg_section = {acl_cfg_keys, acl_cfg_check};

/* The top level and a route hold the same section; its struct is the first
 * member, so mod[MOD_access] points at a struct acl_conf either way. */
struct acl_cfg_part {
    struct acl_conf access;
};
static const struct cfg_key acl_cfg_part_keys[] = {
    CFG_SECTION("access", struct acl_cfg_part, access, &acl_cfg_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section acl_cfg_part_section = {acl_cfg_part_keys, NULL};

const struct cfg_module acl_cfg_module = {
    .top = &acl_cfg_part_section,
    .top_size = sizeof(struct acl_cfg_part),
    .route = &acl_cfg_part_section,
    .route_size = sizeof(struct acl_cfg_part),
};
