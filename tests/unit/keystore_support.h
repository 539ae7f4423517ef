#ifndef SLUICE_TEST_KEYSTORE_SUPPORT_H
#define SLUICE_TEST_KEYSTORE_SUPPORT_H
/* What the tests of the two key stores (SQLite, Redis) share: a create
 * request, and what ks_each_active hands out, collected. */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "auth/keystore.h"

static inline struct ks_new new_req(const char *tier)
{
    return (struct ks_new){
        .tier = tier, .quota_monthly = -1, .quota_daily = -1, .name = "ci", .owner = "ops"};
}

struct seen {
    int keys;
    int secrets;
    char id[8][APIKEY_ID_MAX];
    uint8_t hash[8][APIKEY_HASH_LEN];
    int64_t until[8];
};

/* A ks_each_fn filling a struct seen. */
static inline void collect(const struct ks_key *k, const struct ks_secret *s, int n, void *arg)
{
    struct seen *seen = arg;
    seen->keys++;
    for (int i = 0; i < n && seen->secrets < 8; i++) {
        snprintf(seen->id[seen->secrets], APIKEY_ID_MAX, "%s", k->id);
        memcpy(seen->hash[seen->secrets], s[i].hash, APIKEY_HASH_LEN);
        seen->until[seen->secrets] = s[i].valid_until_ms;
        seen->secrets++;
    }
}

/* Was the secret <secret> among those seen? */
static inline bool seen_has(const struct seen *s, const char *secret)
{
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash(secret, strlen(secret), h);
    for (int i = 0; i < s->secrets; i++)
        if (memcmp(s->hash[i], h, APIKEY_HASH_LEN) == 0)
            return true;
    return false;
}

#endif
