#ifndef SLUICE_ACCESS_TRIE_H
#define SLUICE_ACCESS_TRIE_H
/* A binary prefix trie of IPv4 and IPv6 networks (SPEC 7.1): "is this
 * address inside any of these CIDRs" in at most 32 or 128 steps, whatever
 * the number of networks, never a scan (a long list also has a table of its
 * first 16 bits that skips the top of the walk; trie.c). Built once, then
 * read-only: a built trie can be shared between threads without a lock.
 * IPv4-mapped IPv6 (::ffff:a.b.c.d, and networks of that form from /96 on)
 * counts as IPv4, as the client address does (guard/client_ip.c). Pure. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct acl_trie;

struct acl_trie *acl_trie_new(void);
void acl_trie_free(struct acl_trie *t);
/* Adds <net> until wall time <until_ms> (ACL_FOREVER: for good); 0, or -1
 * when out of memory. */
#define ACL_FOREVER INT64_MAX
int acl_trie_add(struct acl_trie *t, const struct cfg_cidr *net, int64_t until_ms);
/* Is <addr> (<family> AF_INET: 4 bytes used; AF_INET6: 16) inside a network
 * of <t> that has not expired at <now_ms>? A NULL trie holds nothing.
 * Expiry is checked here, so an expired network never matches, however
 * late it is swept away. */
bool acl_trie_match(const struct acl_trie *t, int family, const uint8_t addr[16], int64_t now_ms);
/* How many networks were added (a repeat counts). */
size_t acl_trie_count(const struct acl_trie *t);

/* Parses the text address <ip> ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"
 * is AF_INET) into <family> and <addr>; false when it is not an address. */
bool acl_parse_addr(const char *ip, int *family, uint8_t addr[16]);

#endif
