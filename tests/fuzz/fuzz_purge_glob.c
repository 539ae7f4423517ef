/* libFuzzer harness: the purge glob (cache_glob_match, used by
 * cache_store_purge_pattern). Input: "<pattern>\n<subject>" (no newline: the
 * whole input is the pattern, matched against itself). Checks the matcher
 * against a dynamic-programming reference (O(pattern * subject), so a slow
 * matcher shows up as a timeout, a wrong one as a crash), then purges a
 * small store by the same pattern and checks the count against the
 * reference. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "cache/rules.h"
#include "cache/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds the reference's table; longer inputs are cut (the matcher itself
 * has no such limit). */
#define GLOB_MAX 1024

/* Does <p>/<plen> match <s>/<slen>? '*' any run, '?' one byte. */
static bool glob_reference(const char *p, size_t plen, const char *s, size_t slen)
{
    /* row[j]: does p[0..i) match s[0..j)? */
    bool *prev = calloc(slen + 1, sizeof(bool)), *row = calloc(slen + 1, sizeof(bool));
    prev[0] = true;
    for (size_t i = 1; i <= plen; i++) {
        char c = p[i - 1];
        row[0] = c == '*' && prev[0];
        for (size_t j = 1; j <= slen; j++)
            row[j] = c == '*' ? prev[j] || row[j - 1] : prev[j - 1] && (c == '?' || c == s[j - 1]);
        bool *t = prev;
        prev = row;
        row = t;
    }
    bool m = prev[slen];
    free(prev);
    free(row);
    return m;
}

static const char *const store_urls[] = {
    "example.com/",
    "example.com/a/b?x=1",
    "example.com/a/c",
    "api.test/v1/items?id=7&z=",
    "api.test/v1/*?",
    "x/",
    "",
};
#define N_URLS (sizeof(store_urls) / sizeof(store_urls[0]))

static struct cache_store *store_with_urls(void)
{
    struct cache_store *st = cache_store_new(1 << 20, 1);
    for (size_t i = 0; i < N_URLS; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "G|%zu", i);
        const char *u = store_urls[i];
        struct cache_entry *e =
            cache_entry_new(key, (size_t)n, u, strlen(u), 200, "", 0, "ok", 2, NULL, -1, NULL, 0);
        if (!cache_store_put(st, e))
            FUZZ_ABORT();
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t ppart = nl ? (size_t)(nl - in) : size;
    const char *subj = nl ? nl + 1 : in;
    size_t slen = nl ? size - ppart - 1 : ppart;
    /* The matcher takes a NUL-terminated pattern: it ends at the first NUL. */
    const char *nul = memchr(in, '\0', ppart);
    size_t plen = nul ? (size_t)(nul - in) : ppart;
    if (plen > GLOB_MAX)
        plen = GLOB_MAX;
    if (slen > GLOB_MAX)
        slen = GLOB_MAX;
    char *pattern = malloc(plen + 1);
    memcpy(pattern, in, plen);
    pattern[plen] = '\0';
    char *subject = malloc(slen ? slen : 1); /* exactly <slen> bytes: no NUL to lean on */
    memcpy(subject, subj, slen);

    if (cache_glob_match(pattern, subject, slen) != glob_reference(pattern, plen, subject, slen))
        FUZZ_ABORT();

    struct cache_store *st = store_with_urls();
    uint64_t want = 0;
    for (size_t i = 0; i < N_URLS; i++)
        want += glob_reference(pattern, plen, store_urls[i], strlen(store_urls[i]));
    if (cache_store_purge_pattern(st, pattern) != want)
        FUZZ_ABORT();
    struct cache_store_stats stats;
    cache_store_stats(st, &stats);
    if (stats.entries != N_URLS - want)
        FUZZ_ABORT();
    cache_store_free(st);
    free(pattern);
    free(subject);
    return 0;
}
