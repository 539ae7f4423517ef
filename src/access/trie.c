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

/* A long list also gets, per family, a direct table of the first 16 bits:
 * one look-up there replaces the 16 top levels of the walk, which for a
 * list of many thousand networks are 16 cache misses. Slot v holds the
 * latest expiry of the networks of /0../15 that hold v's addresses, and the
 * node at depth 16 on v's path (0: none). Short lists do without: 1 MB
 * each. */
#define ACL_DIR_BITS 16
#define ACL_DIR_MIN 4096 /* networks of a family from which it has the table */
struct acl_dir_slot {
    int64_t until_ms;
    uint32_t node;
};

struct acl_trie {
    struct acl_node *nodes;
    uint32_t n, cap;
    size_t count;
    /* By root: [0] IPv4, [1] IPv6. */
    size_t count_of[2];
    struct acl_dir_slot *dir[2]; /* NULL: fewer than ACL_DIR_MIN networks */
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
    free(t->dir[0]);
    free(t->dir[1]);
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

/* The node at depth 16 on the path of <v> (its first 16 bits) from root
 * <root>, and the latest expiry of the nodes above it, into <d>. */
static void acl_dir_fill(const struct acl_trie *t, uint32_t root, uint32_t v,
                         struct acl_dir_slot *d)
{
    uint32_t at = root;
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

/* Builds the table of root <root>; without memory the trie goes on
 * without it (it only saves time). */
static void acl_dir_build(struct acl_trie *t, uint32_t root)
{
    struct acl_dir_slot *dir = malloc(((size_t)1 << ACL_DIR_BITS) * sizeof *dir);
    for (uint32_t v = 0; dir && v < (1u << ACL_DIR_BITS); v++)
        acl_dir_fill(t, root, v, &dir[v]);
    t->dir[root] = dir;
}

/* The table of root <root> after network <addr>/<bits> (until <until_ms>)
 * was added under it. */
static void acl_dir_update(struct acl_trie *t, uint32_t root, const uint8_t *addr, unsigned bits,
                           int64_t until_ms)
{
    struct acl_dir_slot *dir = t->dir[root];
    uint32_t v = (uint32_t)addr[0] << 8 | addr[1];
    if (bits >= ACL_DIR_BITS) {
        if (!dir[v].node)
            acl_dir_fill(t, root, v, &dir[v]);
        return;
    }
    uint32_t span = 1u << (ACL_DIR_BITS - bits);
    v &= ~(span - 1);
    for (uint32_t i = 0; i < span; i++)
        if (until_ms > dir[v + i].until_ms)
            dir[v + i].until_ms = until_ms;
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
    uint32_t root = at;
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
    t->count_of[root]++;
    if (t->dir[root])
        acl_dir_update(t, root, addr, bits, until_ms);
    else if (t->count_of[root] >= ACL_DIR_MIN)
        acl_dir_build(t, root);
    return 0;
}

bool acl_trie_match(const struct acl_trie *t, int family, const uint8_t addr[16], int64_t now_ms)
{
    if (!t || t->count == 0)
        return false;
    unsigned bits = family == AF_INET ? 32 : 128, i = 0;
    uint32_t at = family == AF_INET ? 0 : 1;
    if (t->dir[at]) {
        const struct acl_dir_slot *d = &t->dir[at][(uint32_t)addr[0] << 8 | addr[1]];
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
