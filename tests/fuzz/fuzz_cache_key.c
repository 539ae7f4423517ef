/* libFuzzer harness: what a cache key is built from (cache/stage.c's
 * cache_build_primary and cache_build_key are static and need an exchange;
 * these are the parsers they call): path normalisation (util/url.h), query
 * sorting, Vary names, plus the header parsers of cache/rules.h that read
 * client and upstream values (Cache-Control, Age, HTTP dates, If-None-Match).
 *
 * Input: lines "target\nvary\ncache-control\ndate\nif-none-match\netag";
 * missing lines are empty. Invariants: a normalised path is normalised
 * (idempotent), starts with '/', has no empty, "." or ".." segment and is
 * no longer than the input + 1; a sorted query sorts to itself, keeps its
 * length and its parameters; Vary names are lower-case and idempotent; a
 * parsed date formats and parses back to itself; the primary key builder
 * (cache_key_primary, the fields the stage joins) is injective. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "cache/rules.h"
#include "util/buf.h"
#include "util/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_FIELDS 6

/* Field <i> of the input as its own allocation of exactly its length (ASan
 * sees any read past it). */
static char *field_copy(const char *p, size_t len)
{
    char *c = malloc(len ? len : 1);
    memcpy(c, p, len);
    return c;
}

static void check_path(const char *in, size_t len)
{
    char *out = malloc(len + 2), *again = malloc(len + 2);
    size_t olen = 0, alen = 0;
    if (url_normalize_path(in, len, out, &olen) == 0) {
        if (olen > len + 1 || out[olen] != '\0' || out[0] != '/')
            FUZZ_ABORT();
        if (url_normalize_path(out, olen, again, &alen) != 0 || alen != olen ||
            memcmp(out, again, olen) != 0)
            FUZZ_ABORT();
        for (size_t i = 1; i < olen; i++)
            if (out[i] == '/' && out[i - 1] == '/')
                FUZZ_ABORT();
        /* no "." or ".." segment left (%2e spellings are checked by idempotence) */
        for (size_t i = 0; i < olen; i++) {
            if (out[i] != '/')
                continue;
            size_t j = i + 1, n = 0;
            while (j < olen && out[j] != '/')
                j++, n++;
            if ((n == 1 && out[i + 1] == '.') || (n == 2 && out[i + 1] == '.' && out[i + 2] == '.'))
                FUZZ_ABORT();
        }
    } else if (len > 0 && in[0] == '/' && memmem(in, len, "..", 2) == NULL &&
               memmem(in, len, "%2", 2) == NULL) {
        FUZZ_ABORT(); /* only climbing above the root fails a path that starts with '/' */
    }
    free(out);
    free(again);
}

/* Number of non-empty '&'-separated parameters of <q>/<len>. */
static size_t count_params(const char *q, size_t len)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++)
        if (i == len || q[i] == '&') {
            n += i > start;
            start = i + 1;
        }
    return n;
}

static size_t non_amp_bytes(const char *q, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += q[i] != '&';
    return n;
}

static void check_query(const char *q, size_t len)
{
    struct buf once = {0}, twice = {0};
    cache_query_normalize(q, len, &once);
    if (once.len > len || count_params(once.data, once.len) != count_params(q, len) ||
        non_amp_bytes(once.data, once.len) != non_amp_bytes(q, len))
        FUZZ_ABORT();
    cache_query_normalize(once.data ? once.data : "", once.len, &twice);
    if (twice.len != once.len || (once.len && memcmp(once.data, twice.data, once.len) != 0))
        FUZZ_ABORT();
    buf_release(&once);
    buf_release(&twice);
}

static void check_vary(const char *v, size_t len)
{
    struct buf once = {0}, twice = {0};
    if (cache_vary_names(v, len, &once)) {
        for (size_t i = 0; i < once.len; i++)
            if (once.data[i] >= 'A' && once.data[i] <= 'Z')
                FUZZ_ABORT();
        if (!cache_vary_names(once.data ? once.data : "", once.len, &twice) ||
            twice.len != once.len || (once.len && memcmp(once.data, twice.data, once.len) != 0))
            FUZZ_ABORT();
    } else if (once.len != 0) {
        FUZZ_ABORT(); /* on false <out> is untouched */
    }
    buf_release(&once);
    buf_release(&twice);
}

static void check_date(const char *s, size_t len)
{
    int64_t t = cache_http_date(s, len);
    if (t < -1)
        FUZZ_ABORT();
    if (t >= 0) {
        char out[64];
        cache_format_http_date(t, out);
        if (cache_http_date(out, strlen(out)) != t)
            FUZZ_ABORT();
    }
    int64_t age = cache_parse_age(s, len);
    if (age < 0 || age > 366 * 86400)
        FUZZ_ABORT();
}

static int ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Equal ignoring ASCII case, NUL bytes included (strncasecmp stops there). */
static bool same_host(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    return true;
}

/* The key of (<host>, <url>, <digest>) as cache/stage.c builds it. */
static void key_of(struct buf *out, const char *host, size_t hlen, const char *url, size_t ulen,
                   const char *digest)
{
    out->len = 0;
    cache_key_primary(out, host, hlen, url, ulen, digest);
}

/* Keys cannot collide: two (host, url, digest) triples, from fields 1-2
 * and 3-4 with the digest of field 5 (none when empty), give one key only
 * when the hosts are equal ignoring case and the urls are equal; moving
 * the url's first byte into the host always changes the key. And
 * cache_is_override_header reads any name. */
static void check_keys(char *const *f, const size_t *flen)
{
    char *digest = NULL;
    if (flen[5]) {
        digest = malloc(flen[5] + 1);
        memcpy(digest, f[5], flen[5]);
        digest[flen[5]] = '\0';
    }
    struct buf a = {0}, b = {0};
    key_of(&a, f[1], flen[1], f[2], flen[2], digest);
    key_of(&b, f[3], flen[3], f[4], flen[4], digest);
    bool equal_in = same_host(f[1], flen[1], f[3], flen[3]) && flen[2] == flen[4] &&
                    (flen[2] == 0 || memcmp(f[2], f[4], flen[2]) == 0);
    bool equal_key = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
    if (equal_in != equal_key)
        FUZZ_ABORT();
    if (flen[2] > 0) {
        char *host = malloc(flen[1] + 1);
        memcpy(host, f[1], flen[1]);
        host[flen[1]] = f[2][0];
        key_of(&b, host, flen[1] + 1, f[2] + 1, flen[2] - 1, digest);
        if (a.len == b.len && memcmp(a.data, b.data, a.len) == 0)
            FUZZ_ABORT();
        free(host);
    }
    (void)cache_is_override_header(f[0], flen[0]);
    buf_release(&a);
    buf_release(&b);
    free(digest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *f[N_FIELDS];
    size_t flen[N_FIELDS];
    size_t at = 0;
    for (int i = 0; i < N_FIELDS; i++) {
        const char *nl = at < size ? memchr(in + at, '\n', size - at) : NULL;
        size_t end = i == N_FIELDS - 1 || !nl ? size : (size_t)(nl - in);
        if (at > size)
            at = size;
        if (end < at)
            end = at;
        f[i] = field_copy(in + at, end - at);
        flen[i] = end - at;
        at = end + 1;
    }

    /* target: path and query, as conn.c splits them */
    const char *q = memchr(f[0], '?', flen[0]);
    size_t plen = q ? (size_t)(q - f[0]) : flen[0];
    check_path(f[0], plen);
    if (q)
        check_query(q + 1, flen[0] - plen - 1);
    check_query(f[0], flen[0]);
    check_vary(f[1], flen[1]);

    struct cache_control cc;
    cache_cc_init(&cc);
    cache_cc_parse(&cc, f[2], flen[2]);
    int64_t ttl = cache_ttl_ms(&cc, 60000, true);
    int64_t fresh = cache_fresh_ms(&cc, 60000, true, cache_parse_age(f[3], flen[3]));
    if (fresh < 0 || fresh > (ttl > 60000 ? ttl : 60000))
        FUZZ_ABORT();
    (void)cache_storable(1, 200, &cc, false, false, false, ttl, 0);

    check_date(f[3], flen[3]);
    (void)cache_etag_matches(f[4], flen[4], f[5], flen[5]);
    check_keys(f, flen);

    for (int i = 0; i < N_FIELDS; i++)
        free(f[i]);
    return 0;
}
