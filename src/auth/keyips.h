#ifndef SLUICE_KEYIPS_H
#define SLUICE_KEYIPS_H
/* A key's allow_ips (SPEC 7.1: `keys create --allow-ips CIDR,...`): the
 * networks a key may be used from. The store keeps them as one text,
 * "10.0.0.0/8,2001:db8::/32" ("": from anywhere); the keyring holds them
 * parsed. A key's list is short by design (a few offices or NATs), so it
 * is bounded here and checked directly; the lists that can be long (config
 * and run-time access lists) are prefix tries (access/trie.h). Pure. */

#include <jansson.h>
#include <stddef.h>

#include "conf/conf.h"

#define KS_ALLOW_IPS_N 16 /* networks per key */
/* The text with its NUL: 16 networks of at most 43 bytes ("ffff:...:ffff/128")
 * and their commas. */
#define KS_ALLOW_IPS_MAX 720

/* Parses the stored text <s> into <out>; the number of networks, or -1 with
 * <why> (at most <cap> bytes) when <s> is not a list of at most
 * KS_ALLOW_IPS_N CIDRs separated by commas (spaces around them allowed). */
int ks_allow_ips_parse(const char *s, struct cfg_cidr out[KS_ALLOW_IPS_N], char *why, size_t cap);
/* Checks the <n> CIDRs <v> and joins them into <out> as the store keeps
 * them; 0, or -1 with <why>. <n> 0 gives "" (no restriction). */
int ks_allow_ips_join(const char *const *v, int n, char out[KS_ALLOW_IPS_MAX], char *why,
                      size_t cap);
/* The allow_ips of a POST /keys or PATCH /keys/{id} body, <v>: a list of
 * CIDR strings, one comma-separated string, or null or [] (anywhere), into
 * <out>; 0, or -1 with <why>. */
int ks_allow_ips_from_json(const json_t *v, char out[KS_ALLOW_IPS_MAX], char *why, size_t cap);

#endif
