/* The access decision (access/decide.h). */
#include "access/decide.h"

#include <string.h>
#include <sys/socket.h>

static bool acl_in(const struct acl_trie *t, bool addr_ok, int family, const uint8_t addr[16],
                   int64_t now_ms)
{
    return addr_ok && acl_trie_match(t, family, addr, now_ms);
}

int acl_decide(const struct acl_conf *top, const struct acl_conf *route, const struct acl_snap *rt,
               bool addr_ok, int family, const uint8_t addr[16], int64_t now_ms)
{
    const struct acl_trie *top_deny = top ? top->deny_trie : NULL;
    const struct acl_trie *route_deny = route ? route->deny_trie : NULL;
    if (acl_in(top_deny, addr_ok, family, addr, now_ms) ||
        acl_in(route_deny, addr_ok, family, addr, now_ms))
        return ACL_SRC_CONFIG;
    if (rt && acl_in(rt->deny, addr_ok, family, addr, now_ms))
        return ACL_SRC_RUNTIME;

    if (route && route->allow_trie)
        return acl_in(route->allow_trie, addr_ok, family, addr, now_ms) ? ACL_SRC_N
                                                                        : ACL_SRC_CONFIG;
    const struct acl_trie *top_allow = top ? top->allow_trie : NULL;
    const struct acl_trie *rt_allow = rt && rt->allow_until_ms > now_ms ? rt->allow : NULL;
    if (!top_allow && !rt_allow)
        return ACL_SRC_N;
    if (acl_in(top_allow, addr_ok, family, addr, now_ms) ||
        acl_in(rt_allow, addr_ok, family, addr, now_ms))
        return ACL_SRC_N;
    return top_allow ? ACL_SRC_CONFIG : ACL_SRC_RUNTIME;
}

/* Is <family>/<addr> inside <net>? A network written as IPv4-mapped IPv6
 * (::ffff:10.0.0.0/104) is the IPv4 network it maps, as in the trie. */
static bool acl_net_has(const struct cfg_cidr *net, int family, const uint8_t addr[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const uint8_t *na = net->addr;
    unsigned bits = net->bits;
    int nf = net->family;
    if (nf == AF_INET6 && bits >= 96 && memcmp(na, mapped, 12) == 0) {
        na += 12;
        bits -= 96;
        nf = AF_INET;
    }
    if (nf != family)
        return false;
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(na, addr, whole) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return rest == 0 || ((na[whole] ^ addr[whole]) & mask) == 0;
}

bool acl_key_admits(const struct cfg_cidr *nets, int n, bool addr_ok, int family,
                    const uint8_t addr[16])
{
    if (n == 0)
        return true;
    for (int i = 0; addr_ok && i < n; i++)
        if (acl_net_has(&nets[i], family, addr))
            return true;
    return false;
}
