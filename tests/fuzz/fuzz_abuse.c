/* libFuzzer harness: the body of POST /bans (abuse_ban_req_parse,
 * abuse/ban.h), the identity parser behind it and DELETE /bans/{identity}
 * (abuse_identity_parse, abuse_pct_decode), and the stored form of a ban.
 *
 * Input: the body as sent; its first byte also picks server.ipv6_prefix.
 *
 * Checked:
 *   - an accepted body gives a NUL-terminated identity that parses again
 *     to itself (canonical), a duration within 1s..365d and a
 *     NUL-terminated reason; the ban made of it (abuse_ban_next) encodes,
 *     decodes to the same ban and encodes to the same bytes (the Redis
 *     store compares them), and its JSON form builds;
 *   - the whole input as an identity: when accepted, canonical as above,
 *     and a ban of it shows as JSON whatever bytes it holds;
 *   - the whole input as a URL path segment: when it decodes, the result
 *     is no longer than the input and holds no NUL. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "abuse/ban.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW INT64_C(1700000000000)

static void check_canonical(const char *id, int prefix)
{
    size_t len = strnlen(id, ABUSE_ID_MAX);
    if (len == 0 || len == ABUSE_ID_MAX)
        FUZZ_ABORT();
    char again[ABUSE_ID_MAX];
    if (abuse_identity_parse(id, len, prefix, again) || strcmp(again, id) != 0)
        FUZZ_ABORT();
    /* Whatever bytes it holds, GET /bans and the events can show it. */
    struct abuse_policy p = {7200000, 2, 7 * 86400000ll, 7 * 86400000ll};
    struct abuse_ban b;
    if (!abuse_ban_next(NULL, &p, ABUSE_SRC_AUTO, id, "", 0, NOW, &b))
        FUZZ_ABORT();
    json_t *j = abuse_ban_json(&b, NOW);
    if (!j)
        FUZZ_ABORT();
    json_decref(j);
}

static void check_ban(const struct abuse_ban_req *r, int prefix)
{
    check_canonical(r->identity, prefix);
    if (r->duration_ms < 1000 || r->duration_ms > ABUSE_MANUAL_MAX_MS)
        FUZZ_ABORT();
    if (strnlen(r->reason, sizeof r->reason) == sizeof r->reason)
        FUZZ_ABORT();
    struct abuse_policy p = {7200000, 2, 7 * 86400000ll, 7 * 86400000ll};
    struct abuse_ban b, back;
    if (!abuse_ban_next(NULL, &p, ABUSE_SRC_MANUAL, r->identity, r->reason, r->duration_ms, NOW,
                        &b))
        FUZZ_ABORT();
    char *s = abuse_ban_encode(&b);
    if (!s || !abuse_ban_decode(b.identity, s, strlen(s), &back) ||
        memcmp(&back, &b, sizeof b) != 0)
        FUZZ_ABORT();
    char *again = abuse_ban_encode(&back);
    if (!again || strcmp(s, again) != 0)
        FUZZ_ABORT();
    free(s);
    free(again);
    json_t *j = abuse_ban_json(&b, NOW);
    if (!j)
        FUZZ_ABORT();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int prefix = size ? 1 + data[0] % 128 : 64;
    struct abuse_ban_req r;
    if (!abuse_ban_req_parse((const char *)data, size, prefix, &r))
        check_ban(&r, prefix);

    char id[ABUSE_ID_MAX];
    if (!abuse_identity_parse((const char *)data, size, prefix, id))
        check_canonical(id, prefix);

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char out[512];
    int n = abuse_pct_decode(s, out, sizeof out);
    if (n >= 0 && ((size_t)n > strlen(s) || strlen(out) != (size_t)n))
        FUZZ_ABORT();
    free(s);
    return 0;
}
