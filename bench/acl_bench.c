/* Microbenchmark of one access-list lookup (SPEC 7.1): the prefix trie of
 * access/trie.h with 100 and 100,000 networks, IPv4 and IPv6, probed with
 * random addresses, mostly outside the list (the common case: a deny list
 * and a client not on it). Not a test: run it by hand.
 *   build/acl_bench */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "access/trie.h"

#define PROBES 4000000
#define N_ADDR 4096

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void random_addr(int family, uint8_t addr[16])
{
    uint64_t a = rnd(), b = rnd();
    memset(addr, 0, 16);
    memcpy(addr, &a, family == AF_INET ? 4 : 8);
    if (family == AF_INET6)
        memcpy(addr + 8, &b, 8);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void run(int family, int n)
{
    struct acl_trie *t = acl_trie_new();
    for (int i = 0; i < n; i++) {
        struct cfg_cidr c = {.family = family};
        random_addr(family, c.addr);
        /* /24../32 and /48../128: deny lists are mostly hosts and small nets. */
        c.bits = (uint8_t)(family == AF_INET ? 24 + rnd() % 9 : 48 + rnd() % 81);
        if (!t || acl_trie_add(t, &c, ACL_FOREVER) < 0) {
            fprintf(stderr, "acl_bench: out of memory\n");
            exit(1);
        }
    }
    static uint8_t addrs[N_ADDR][16];
    for (int i = 0; i < N_ADDR; i++)
        random_addr(family, addrs[i]);
    int hits = 0;
    double t0 = now_ns();
    for (int i = 0; i < PROBES; i++)
        hits += acl_trie_match(t, family, addrs[i % N_ADDR], 1);
    double ns = (now_ns() - t0) / PROBES;
    printf("%s %6d networks: %5.1f ns/lookup (%d hits of %d)\n",
           family == AF_INET ? "IPv4" : "IPv6", n, ns, hits, PROBES);
    acl_trie_free(t);
}

int main(void)
{
    run(AF_INET, 100);
    run(AF_INET, 100000);
    run(AF_INET6, 100);
    run(AF_INET6, 100000);
    return 0;
}
