/* libFuzzer harness: the request bodies of the developer endpoints
 * (developer/body.h), which anyone holding a valid JWT may send, and the
 * rules that hold a create request to the caller's tier.
 *
 * Input: one byte of set-up, then the body:
 *   [0] bit 0: a rotate body rather than a create body;
 *       bits 1-2: the caller's tier claim ("", "free", "pro", "staff").
 *
 * Checked:
 *   - create: accepted exactly when the body is a JSON object whose
 *     members are among name, tier and quotas (checked by a reference
 *     reading with jansson); then the name is 1..128 bytes without
 *     control characters, the tier fits, the quotas are -1 or 1..2^53;
 *     refused with a message otherwise;
 *   - the rules: 0, 400 or 403 only; when 0, the tier is a tier of the
 *     config ranked no higher than the caller's, not exempt unless the
 *     caller's is, and each quota the key ends up with is no more than the
 *     caller's (where the caller has one);
 *   - rotate: a grace of 0..DEV_MAX_GRACE_MS, or refused with a message. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "conf/conf.h"
#include "developer/developer.h"
#include "quota/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_yaml[] =
    "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"
    "tiers:\n"
    "  free: {limits: [\"100/h\"], quota: {daily: 1000}}\n"
    "  pro: {limits: [\"1000/h\"], quota: {daily: 100000, monthly: 1000000}}\n"
    "  enterprise: {limits: [\"10000/h\"]}\n"
    "  staff: {exempt: true}\n"
    "identity:\n  jwt: {secret: \"0123456789abcdef0123456789abcdef\"}\n"
    "developer: {enabled: true}\n";

static const struct config *config(void)
{
    static struct config *c;
    if (!c) {
        char *err = NULL;
        c = cfg_load_string(config_yaml, strlen(config_yaml), "fuzz.yaml", NULL, NULL, &err);
        if (!c)
            FUZZ_ABORT();
    }
    return c;
}

/* Is the body a JSON object with only known members? (Necessary for
 * acceptance, not sufficient.) */
static bool shape_ok(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    bool ok = json_is_object(doc);
    const char *k;
    json_t *v;
    if (ok)
        json_object_foreach(doc, k, v) ok =
            ok && (!strcmp(k, "name") || !strcmp(k, "tier") || !strcmp(k, "quotas"));
    json_decref(doc);
    return ok;
}

static bool quota_ok(int64_t q)
{
    return q == -1 || (q >= 1 && q <= KS_QUOTA_MAX);
}

static int64_t tier_quota(const struct cfg_tier *t, bool daily)
{
    const struct quota_tier_conf *q = quota_tier_conf(t);
    return !q ? 0 : daily ? q->daily : q->monthly;
}

static void check_rules(const struct config *c, const char *claim, struct dev_create *r)
{
    const struct cfg_tier *own = dev_caller_tier(c, claim);
    char why[256];
    int st = dev_apply_rules(c, own, r, why, sizeof(why));
    if (st != 0 && st != 400 && st != 403)
        FUZZ_ABORT();
    if (st != 0) {
        if (!why[0])
            FUZZ_ABORT();
        return;
    }
    if (!own)
        FUZZ_ABORT();
    const struct cfg_tier *t = cfg_find_tier(c, r->tier);
    if (!t || t - c->tiers > own - c->tiers || (t->exempt && !own->exempt))
        FUZZ_ABORT();
    for (int daily = 0; daily < 2; daily++) {
        int64_t mine = tier_quota(own, daily);
        int64_t q = daily ? r->quota_daily : r->quota_monthly;
        int64_t eff = q >= 0 ? q : tier_quota(t, daily);
        if (mine > 0 && (eff <= 0 || eff > mine))
            FUZZ_ABORT();
    }
}

static void check_create(const char *body, size_t len, const char *claim)
{
    struct dev_create r;
    const char *why = NULL;
    int rc = dev_parse_create(body, len, &r, &why);
    if (rc != 0) {
        if (!why || !why[0])
            FUZZ_ABORT();
        return;
    }
    if (!shape_ok(body, len))
        FUZZ_ABORT();
    size_t n = strlen(r.name);
    if (n == 0 || n >= KS_NAME_MAX || strlen(r.tier) >= KS_TIER_MAX)
        FUZZ_ABORT();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)r.name[i] < 0x20 || r.name[i] == 0x7f)
            FUZZ_ABORT();
    if (!quota_ok(r.quota_daily) || !quota_ok(r.quota_monthly))
        FUZZ_ABORT();
    check_rules(config(), claim, &r);
}

static void check_rotate(const char *body, size_t len)
{
    int64_t g = -42;
    const char *why = NULL;
    if (dev_parse_rotate(body, len, &g, &why) != 0) {
        if (!why || !why[0])
            FUZZ_ABORT();
        return;
    }
    if (g < 0 || g > DEV_MAX_GRACE_MS)
        FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const claims[] = {"", "free", "pro", "staff"};
    const char *claim = claims[(data[0] >> 1) & 3];
    /* The body, exactly <len> bytes (no NUL after it to lean on). */
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 1, len);
    if (data[0] & 1)
        check_rotate(body, len);
    else
        check_create(body, len, claim);
    free(body);
    return 0;
}
