/* Developer request bodies and rules (developer/body.h). */
#include "developer/body.h"

#include <jansson.h>

#include "auth/conf.h"
#include "quota/conf.h"
#include "util/str.h"

/* Is <s> a name a person would give a key: 1..128 bytes, no control
 * characters (names show up in the page, logs and CSV)? */
static bool dev_name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= KS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* A quota member: a whole number 1..KS_QUOTA_MAX, or null (not asked). */
static int dev_quota(const json_t *v, int64_t *out)
{
    if (!v || json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        !ks_quota_ok((int64_t)json_integer_value(v)))
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int dev_parse_quotas(const json_t *q, struct dev_create *out, const char **why)
{
    static const char msg[] = "quotas is {\"daily\": N, \"monthly\": N} with whole numbers of "
                              "requests from 1 to 2^53 (or null for the tier's)";
    if (!q || json_is_null(q))
        return 0;
    if (!json_is_object(q)) {
        *why = msg;
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)q, k, v)
    {
        if (strcmp(k, "daily") != 0 && strcmp(k, "monthly") != 0) {
            *why = msg;
            return -1;
        }
    }
    if (dev_quota(json_object_get(q, "daily"), &out->quota_daily) < 0 ||
        dev_quota(json_object_get(q, "monthly"), &out->quota_monthly) < 0) {
        *why = msg;
        return -1;
    }
    return 0;
}

/* The members of <doc> are among <known> (<n>)? */
static bool dev_known_fields(const json_t *doc, const char *const *known, int n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
    {
        bool ok = false;
        for (int i = 0; i < n && !ok; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static int dev_fill_create(const json_t *doc, struct dev_create *out, const char **why)
{
    static const char *const known[] = {"name", "tier", "quotas"};
    if (!dev_known_fields(doc, known, 3)) {
        *why = "unknown field (a key takes name, tier and quotas)";
        return -1;
    }
    const json_t *name = json_object_get(doc, "name");
    if (!json_is_string(name) || !dev_name_ok(json_string_value(name), json_string_length(name)) ||
        strlen(json_string_value(name)) != json_string_length(name)) {
        *why = "name is required: 1 to 128 bytes of text";
        return -1;
    }
    str_copy(out->name, sizeof(out->name), json_string_value(name));
    const json_t *tier = json_object_get(doc, "tier");
    if (tier && !json_is_null(tier)) {
        if (!json_is_string(tier) || json_string_length(tier) == 0 ||
            json_string_length(tier) >= KS_TIER_MAX ||
            strlen(json_string_value(tier)) != json_string_length(tier)) {
            *why = "tier is the name of a tier of the gateway";
            return -1;
        }
        str_copy(out->tier, sizeof(out->tier), json_string_value(tier));
    }
    return dev_parse_quotas(json_object_get(doc, "quotas"), out, why);
}

int dev_parse_create(const char *body, size_t len, struct dev_create *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->quota_daily = out->quota_monthly = -1;
    if (len > DEV_MAX_BODY) {
        *why = "the body is too large";
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        *why = "the body must be a JSON object such as {\"name\": \"ci\"}";
        return -1;
    }
    int rc = dev_fill_create(doc, out, why);
    json_decref(doc);
    return rc;
}

int dev_parse_rotate(const char *body, size_t len, int64_t *grace_ms, const char **why)
{
    static const char msg[] = "the body may be {\"grace\": \"1h\"} (at most 7d)";
    *grace_ms = 0;
    if (len == 0)
        return 0;
    if (len > DEV_MAX_BODY) {
        *why = "the body is too large";
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    static const char *const known[] = {"grace"};
    const json_t *g = json_object_get(doc, "grace");
    int64_t ms = 0;
    bool ok = json_is_object(doc) && dev_known_fields(doc, known, 1) &&
              (!g || (json_is_string(g) && cfg_parse_duration_ms(json_string_value(g), &ms) == 0 &&
                      ms >= 0 && ms <= DEV_MAX_GRACE_MS));
    json_decref(doc);
    if (!ok) {
        *why = msg;
        return -1;
    }
    *grace_ms = ms;
    return 0;
}

/* ---- rules --------------------------------------------------------------------------- */

const struct cfg_tier *dev_caller_tier(const struct config *c, const char *claim)
{
    const struct cfg_tier *t = claim && claim[0] ? cfg_find_tier(c, claim) : NULL;
    const char *def = auth_conf(c)->jwt.default_tier;
    if (!t && def)
        t = cfg_find_tier(c, def);
    if (t && strcmp(t->name, "anonymous") == 0)
        return NULL;
    return t;
}

/* The rank of <t>: its place under `tiers:`, first lowest. */
static int dev_tier_rank(const struct config *c, const struct cfg_tier *t)
{
    return (int)(t - c->tiers);
}

static int64_t dev_tier_quota(const struct cfg_tier *t, bool daily)
{
    const struct quota_tier_conf *q = quota_tier_conf(t);
    if (!q)
        return 0;
    return daily ? q->daily : q->monthly;
}

/* Holds one span's quota <asked> (-1: none asked) of a key of tier <t> to
 * the caller's tier <own>. 0, or -1 with <why>. */
static int dev_cap_quota(const struct cfg_tier *own, const struct cfg_tier *t, bool daily,
                         int64_t *asked, char *why, size_t why_cap)
{
    int64_t mine = dev_tier_quota(own, daily);
    if (mine <= 0)
        return 0; /* the caller has no quota of this span: nothing to exceed */
    const char *span = daily ? "daily" : "monthly";
    if (*asked > mine) {
        snprintf(why, why_cap, "a %s quota of %lld is above your own (%lld)", span,
                 (long long)*asked, (long long)mine);
        return -1;
    }
    int64_t tiers = dev_tier_quota(t, daily);
    if (*asked < 0 && (tiers <= 0 || tiers > mine))
        *asked = mine;
    return 0;
}

int dev_apply_rules(const struct config *c, const struct cfg_tier *own, struct dev_create *req,
                    char *why, size_t why_cap)
{
    if (!own) {
        snprintf(why, why_cap,
                 "your token names no tier of this gateway, so it cannot create "
                 "keys");
        return 403;
    }
    const struct cfg_tier *t = req->tier[0] ? cfg_find_tier(c, req->tier) : own;
    if (!t || strcmp(t->name, "anonymous") == 0) {
        snprintf(why, why_cap, "no such tier '%.64s'", req->tier);
        return 400;
    }
    if (dev_tier_rank(c, t) > dev_tier_rank(c, own) || (t->exempt && !own->exempt)) {
        snprintf(why, why_cap, "tier '%.64s' is above your own ('%.64s')", t->name, own->name);
        return 403;
    }
    str_copy(req->tier, sizeof(req->tier), t->name);
    if (dev_cap_quota(own, t, true, &req->quota_daily, why, why_cap) < 0 ||
        dev_cap_quota(own, t, false, &req->quota_monthly, why, why_cap) < 0)
        return 403;
    return 0;
}
