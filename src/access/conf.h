#ifndef SLUICE_ACCESS_CONF_H
#define SLUICE_ACCESS_CONF_H
/* The access module's configuration (SPEC 7.1): `access: {allow, deny}` at
 * the top level and in each route. Each list is also built into a prefix
 * trie when the config is read, owned by the config. */

#include "access/trie.h"
#include "conf/conf.h"
#include "modules.h"

/* The most networks one list may hold: a trie of a million /32s is ~300 MB,
 * so the bound stops a typo'd generator, not a real deny list. */
#define ACL_MAX_LIST 1000000

struct acl_conf {
    struct cfg_cidr *allow, *deny;
    int n_allow, n_deny;
    struct acl_trie *allow_trie, *deny_trie; /* NULL: the list is empty */
};

/* The top-level lists, or NULL when there are none. */
static inline const struct acl_conf *acl_conf(const struct config *c)
{
    return c->mod[MOD_access];
}
/* A route's lists, or NULL. */
static inline const struct acl_conf *acl_route_conf(const struct cfg_route *r)
{
    return r ? r->mod[MOD_access] : NULL;
}

extern const struct cfg_module acl_cfg_module;

#endif
