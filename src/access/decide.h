#ifndef SLUICE_ACCESS_DECIDE_H
#define SLUICE_ACCESS_DECIDE_H
/* Whether the access lists admit a client address (SPEC 7.1), from the
 * three places lists come from: the config's top level, the request's
 * route, and the run-time entries. Pure.
 *
 * The rule: a deny entry anywhere (top, route, run time) refuses. Then the
 * allow list that applies: the route's when it has one; otherwise the top
 * level's together with the run-time allow entries, when either has any.
 * No allow list applies: admitted. */

#include <stdbool.h>
#include <stdint.h>

#include "access/conf.h"
#include "access/runtime.h"

/* Who refused: the label of sluice_access_denied_total. */
enum acl_source { ACL_SRC_CONFIG, ACL_SRC_RUNTIME, ACL_SRC_KEY, ACL_SRC_N };

/* ACL_SRC_N when <family>/<addr> is admitted at <now_ms>, else the source
 * that refused it (<now_ms> may be 0 when <rt> holds nothing: the config's
 * networks never expire). <top>, <route>, <rt> may be NULL. <addr_ok> false (the
 * client address is not an IP address) is refused by any allow list. */
int acl_decide(const struct acl_conf *top, const struct acl_conf *route, const struct acl_snap *rt,
               bool addr_ok, int family, const uint8_t addr[16], int64_t now_ms);

/* Does an API key's allow_ips <nets> (<n> of them; 0: no restriction)
 * admit <family>/<addr>? A key's list is at most KS_ALLOW_IPS_N networks
 * (auth/keyips.h), so it is checked network by network: a bounded cost,
 * like the trie's 32 or 128 steps. <addr_ok> false is refused by any list. */
bool acl_key_admits(const struct cfg_cidr *nets, int n, bool addr_ok, int family,
                    const uint8_t addr[16]);

#endif
