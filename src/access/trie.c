/* The prefix trie of access/trie.h. Nodes live in one growing array and
 * point at their children by index, so a trie of 100,000 networks is a few
 * large allocations, not millions of small ones, and freeing it is cheap. */
#include "access/trie.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* Node 0 is the IPv4 root, node 1 the IPv6 root; a child index of 0 means
 * "none" (no node points back at a root). */
struct acl_node {
    uint32_t child[2];
    /* A network ends here, and everything below matches until then (the
     * latest expiry of the networks ending here); 0: none ends here. */
    int64_t until_ms;
};

/* A long IPv4 list also gets a direct table of its first 16 bits: one
 * look-up there replaces the 16 top levels of the walk, which for a list of
 * many thousand networks are 16 cache misses. Slot v holds the latest
 * expiry of the networks of /0../15 that hold v's addresses, and the node
 * at depth 16 on v's path (0: none). Short lists do without: 1 MB each. */
#define ACL_DIR_BITS 16
#define ACL_DIR_MIN 4096 /* IPv4 networks from which a trie has the table */
struct acl_dir_slot {
    int64_t until_ms;
    uint32_t node;
};

struct acl_trie {
    struct acl_node *nodes;
    uint32_t n, cap;
    size_t count;
    size_t count_v4;
    struct acl_dir_slot *dir; /* NULL: fewer than ACL_DIR_MIN IPv4 networks */
};

static const uint8_t acl_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct acl_trie *acl_trie_new(void)
{
    struct acl_trie *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cap = 64;
    t->nodes = calloc(t->cap, sizeof *t->nodes);
    if (!t->nodes) {
        free(t);
        return NULL;
    }
    t->n = 2;
    return t;
}

void acl_trie_free(struct acl_trie *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->dir);
    free(t);
}

size_t acl_trie_count(const struct acl_trie *t)
{
    return t ? t->count : 0;
}

/* A new empty node's index, or 0 when out of memory. */
static uint32_t acl_node_new(struct acl_trie *t)
{
    if (t->n == t->cap) {
        if (t->cap > UINT32_MAX / 2)
            return 0;
        struct acl_node *v = realloc(t->nodes, (size_t)t->cap * 2 * sizeof *v);
        if (!v)
            return 0;
        memset(v + t->cap, 0, (size_t)t->cap * sizeof *v);
        t->nodes = v;
        t->cap *= 2;
    }
    return t->n++;
}

static int acl_bit(const uint8_t *addr, unsigned i)
{
    return (addr[i / 8] >> (7 - i % 8)) & 1;
}

/* The node at depth 16 on the path of <v> (its first 16 bits) from the
 * IPv4 root, and the latest expiry of the nodes above it, into <d>. */
static void acl_dir_fill(const struct acl_trie *t, uint32_t v, struct acl_dir_slot *d)
{
    uint32_t at = 0;
    d->until_ms = 0;
    d->node = 0;
    for (unsigned i = 0; i < ACL_DIR_BITS; i++) {
        if (t->nodes[at].until_ms > d->until_ms)
            d->until_ms = t->nodes[at].until_ms;
        at = t->nodes[at].child[(v >> (ACL_DIR_BITS - 1 - i)) & 1];
        if (!at)
            return;
    }
    d->node = at;
}

/* Builds the table from the IPv4 trie; without memory the trie goes on
 * without it (it only saves time). */
static void acl_dir_build(struct acl_trie *t)
{
    t->dir = malloc(((size_t)1 << ACL_DIR_BITS) * sizeof *t->dir);
    for (uint32_t v = 0; t->dir && v < (1u << ACL_DIR_BITS); v++)
        acl_dir_fill(t, v, &t->dir[v]);
}

/* The table after IPv4 network <addr>/<bits> (until <until_ms>) was added
 * to the trie. */
static void acl_dir_update(struct acl_trie *t, const uint8_t *addr, unsigned bits, int64_t until_ms)
{
    uint32_t v = (uint32_t)addr[0] << 8 | addr[1];
    if (bits >= ACL_DIR_BITS) {
        if (!t->dir[v].node)
            acl_dir_fill(t, v, &t->dir[v]);
        return;
    }
    uint32_t span = 1u << (ACL_DIR_BITS - bits);
    v &= ~(span - 1);
    for (uint32_t i = 0; i < span; i++)
        if (until_ms > t->dir[v + i].until_ms)
            t->dir[v + i].until_ms = until_ms;
}

int acl_trie_add(struct acl_trie *t, const struct cfg_cidr *net, int64_t until_ms)
{
    const uint8_t *addr = net->addr;
    unsigned bits = net->bits;
    uint32_t at = net->family == AF_INET ? 0 : 1;
    if (net->family == AF_INET6 && bits >= 96 && memcmp(addr, acl_mapped_prefix, 12) == 0) {
        addr += 12;
        bits -= 96;
        at = 0;
    }
    bool root_v4 = at == 0;
    /* The walk goes on below a network that ends higher up: that one may
     * expire before this one. */
    for (unsigned i = 0; i < bits; i++) {
        int b = acl_bit(addr, i);
        if (!t->nodes[at].child[b]) {
            uint32_t c = acl_node_new(t);
            if (!c)
                return -1;
            t->nodes[at].child[b] = c;
        }
        at = t->nodes[at].child[b];
    }
    if (until_ms > t->nodes[at].until_ms)
        t->nodes[at].until_ms = until_ms;
    t->count++;
    if (root_v4) {
        t->count_v4++;
        if (t->dir)
            acl_dir_update(t, addr, bits, until_ms);
        else if (t->count_v4 >= ACL_DIR_MIN)
            acl_dir_build(t);
    }
    return 0;
}

bool acl_trie_match(const struct acl_trie *t, int family, const uint8_t addr[16], int64_t now_ms)
{
    if (!t || t->count == 0)
        return false;
    unsigned bits = family == AF_INET ? 32 : 128, i = 0;
    uint32_t at = family == AF_INET ? 0 : 1;
    if (family == AF_INET && t->dir) {
        const struct acl_dir_slot *d = &t->dir[(uint32_t)addr[0] << 8 | addr[1]];
        if (d->until_ms > now_ms)
            return true;
        at = d->node;
        if (!at)
            return false;
        i = ACL_DIR_BITS;
    }
    for (;; i++) {
        if (t->nodes[at].until_ms > now_ms)
            return true;
        if (i == bits)
            return false;
        at = t->nodes[at].child[acl_bit(addr, i)];
        if (!at)
            return false;
    }
}

bool acl_parse_addr(const char *ip, int *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, ip, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, ip, addr) != 1)
        return false;
    if (memcmp(addr, acl_mapped_prefix, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
        return true;
    }
    *family = AF_INET6;
    return true;
}
