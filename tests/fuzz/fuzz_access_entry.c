/* libFuzzer harness: the body of POST /access (acl_entry_parse,
 * access/entry.h) and the CIDR parser it uses (cfg_parse_cidr), into the
 * prefix trie (access/trie.h).
 *
 * Input: the body as sent.
 *
 * Checked:
 *   - an accepted body gives an entry whose cidr text parses back to the
 *     same network, whose note is NUL-terminated within bounds, and whose
 *     expiry is after its creation (or never);
 *   - the entry's network, added to a trie, matches its own address and
 *     nothing of the other family; its JSON form builds;
 *   - the whole input as a CIDR string: when it parses, the same;
 *   - the whole input as a key's allow_ips, the stored text (ks_allow_ips_parse)
 *     and a JSON value of POST/PATCH /keys (ks_allow_ips_from_json): at
 *     most KS_ALLOW_IPS_N networks, each as above, and what from_json
 *     stores parses back to as many networks. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "access/entry.h"
#include "access/trie.h"
#include "auth/keyips.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW INT64_C(1700000000000)

static void check_net(const struct cfg_cidr *net)
{
    if (net->family != AF_INET && net->family != AF_INET6)
        FUZZ_ABORT();
    if (net->bits > (net->family == AF_INET ? 32 : 128))
        FUZZ_ABORT();
    struct acl_trie *t = acl_trie_new();
    if (!t || acl_trie_add(t, net, ACL_FOREVER) < 0)
        FUZZ_ABORT();
    uint8_t addr[16];
    memcpy(addr, net->addr, 16);
    int family = net->family;
    /* A mapped network is v4: look it up as the gateway would. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && net->bits >= 96 && memcmp(addr, mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        family = AF_INET;
    }
    if (!acl_trie_match(t, family, addr, NOW))
        FUZZ_ABORT();
    if (acl_trie_match(t, family == AF_INET ? AF_INET6 : AF_INET, addr, NOW))
        FUZZ_ABORT();
    acl_trie_free(t);
}

static void check_allow_ips(const char *text, const uint8_t *data, size_t size)
{
    struct cfg_cidr nets[KS_ALLOW_IPS_N];
    char why[160], out[KS_ALLOW_IPS_MAX];
    int n = ks_allow_ips_parse(text, nets, why, sizeof why);
    if (n > KS_ALLOW_IPS_N)
        FUZZ_ABORT();
    for (int i = 0; i < n; i++)
        check_net(&nets[i]);
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (v && ks_allow_ips_from_json(v, out, why, sizeof why) == 0) {
        if (strnlen(out, sizeof out) == sizeof out)
            FUZZ_ABORT();
        int again = ks_allow_ips_parse(out, nets, why, sizeof why);
        size_t items = out[0] ? 1 : 0;
        for (const char *p = out; *p; p++)
            items += *p == ',';
        if (again < 0 || (size_t)again != items)
            FUZZ_ABORT();
    }
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acl_entry e;
    if (!acl_entry_parse((const char *)data, size, NOW, &e)) {
        struct cfg_cidr again;
        if (cfg_parse_cidr(e.cidr, &again) < 0 || memcmp(&again, &e.net, sizeof again) != 0)
            FUZZ_ABORT();
        if (strnlen(e.note, sizeof e.note) == sizeof e.note)
            FUZZ_ABORT();
        if (e.expires_ms && e.expires_ms <= e.created_ms)
            FUZZ_ABORT();
        check_net(&e.net);
        json_t *j = acl_entry_json(&e);
        if (!j)
            FUZZ_ABORT();
        json_decref(j);
    }
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct cfg_cidr net;
    if (cfg_parse_cidr(s, &net) == 0)
        check_net(&net);
    check_allow_ips(s, data, size);
    free(s);
    return 0;
}
