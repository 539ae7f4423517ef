/* Key changes checked against the config (see keypatch.h). */
#include "auth/keypatch.h"

#include <stdio.h>
#include <string.h>

#include "limit/limit.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/str.h"
#include "util/limits.h"

bool keypatch_tier_ok(const struct config *c, const char *tier, char *why, size_t cap)
{
    if (cfg_find_tier(c, tier) && strcmp(tier, "anonymous") != 0)
        return true;
    struct buf names = {0};
    for (int i = 0; i < c->n_tiers; i++)
        if (strcmp(c->tiers[i].name, "anonymous") != 0)
            buf_appendf(&names, "%s%s", names.len ? ", " : "", c->tiers[i].name);
    buf_append(&names, "", 1);
    if (strcmp(tier, "anonymous") == 0)
        snprintf(why, cap, "tier 'anonymous' is for clients without a key (a key takes one of: %s)",
                 names.len > 1 ? names.data : "none: the config has no other tier");
    else
        snprintf(why, cap, "unknown tier '%.64s' (a key takes one of the config's tiers: %s)", tier,
                 names.len > 1 ? names.data : "none: the config has no tier but anonymous");
    buf_release(&names);
    return false;
}

static const char keypatch_fields[] =
    "tier, name, owner, scopes, limits, quota_daily, quota_monthly, allow_ips";

/* The strings of <v>, a list of strings or one string, joined by <sep>
 * into a new string; NULL (with *<why>) for anything else. */
static char *keypatch_join(const json_t *v, const char *sep, const char *field, char *why,
                           size_t cap)
{
    struct buf b = {0};
    if (json_is_string(v)) {
        buf_append(&b, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(it)) {
                snprintf(why, cap, "%s is a list of strings (or one comma-separated string)",
                         field);
                buf_release(&b);
                return NULL;
            }
            buf_appendf(&b, "%s", i ? sep : "");
            buf_append(&b, json_string_value(it), json_string_length(it));
        }
    } else {
        snprintf(why, cap, "%s is a list of strings (or one comma-separated string), or null",
                 field);
        return NULL;
    }
    buf_append(&b, "", 1);
    if (strlen(b.data) != b.len - 1) { /* a NUL inside a JSON string */
        snprintf(why, cap, "%s holds a NUL character", field);
        buf_release(&b);
        return NULL;
    }
    return b.data;
}

/* Scopes separated by commas or blanks, rewritten in place as the store
 * keeps them ("a b c"); false for a control character or a quote. */
static bool keypatch_scopes(char *s)
{
    char *out = s;
    for (const char *p = s; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ", \t");
        if (len == 0)
            break;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '"')
                return false;
        if (out != s)
            *out++ = ' ';
        memmove(out, p, len);
        out += len;
        p += len;
    }
    *out = '\0';
    return true;
}

/* Limits as written ("100/h, 10/s") checked and rewritten as the store
 * keeps them: each limit's normalised text, joined by ", ". */
static const char *keypatch_limits(char **s, char *why, size_t cap)
{
    struct limit parsed[SL_MAX_LIMITS_PER_LIST];
    const char *lwhy = NULL;
    int n = lim_parse_list(*s, parsed, SL_MAX_LIMITS_PER_LIST, &lwhy);
    if (n < 0) {
        snprintf(why, cap,
                 "limits: %s (at most %d, written as in the config file: [\"100/h\", \"10/s\"])",
                 lwhy ? lwhy : "a limit does not parse", SL_MAX_LIMITS_PER_LIST);
        return why;
    }
    struct buf b = {0};
    for (int i = 0; i < n; i++)
        buf_appendf(&b, "%s%s", i ? ", " : "", parsed[i].text);
    buf_append(&b, "", 1);
    free(*s);
    *s = b.data;
    return NULL;
}

/* A quota field: an integer 1..KS_QUOTA_MAX, or null (-1: the tier's). */
static const char *keypatch_quota(const json_t *v, const char *field, int64_t *out, char *why,
                                  size_t cap)
{
    if (json_is_null(v)) {
        *out = -1;
        return NULL;
    }
    if (!json_is_integer(v) || !ks_quota_ok((int64_t)json_integer_value(v)) ||
        json_integer_value(v) < 1) {
        snprintf(why, cap,
                 "%s is a whole number of requests from 1 to 2^53 (9007199254740992), or null "
                 "for the tier's",
                 field);
        return why;
    }
    *out = (int64_t)json_integer_value(v);
    return NULL;
}

const char *keypatch_parse(const struct config *c, const json_t *doc, struct keypatch *p)
{
    memset(p, 0, sizeof(*p));
    char *why = p->why;
    size_t cap = sizeof(p->why);
    if (!json_is_object(doc) || json_object_size(doc) == 0) {
        snprintf(why, cap, "the body must be a JSON object with at least one of %s",
                 keypatch_fields);
        return why;
    }
    /* Fields in the order of the store's ks_update; strs[] follows it. */
    static const char *const strings[] = {"name", "owner", "tier", "scopes", "limits"};
    const char **dst[] = {&p->u.name, &p->u.owner, &p->u.tier, &p->u.scopes, &p->u.limits};
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)doc, k, v)
    {
        if (strcmp(k, "quota_daily") == 0 || strcmp(k, "quota_monthly") == 0) {
            bool daily = k[6] == 'd';
            if (keypatch_quota(v, k, daily ? &p->u.quota_daily : &p->u.quota_monthly, why, cap))
                return why;
            *(daily ? &p->u.set_quota_daily : &p->u.set_quota_monthly) = true;
            continue;
        }
        if (strcmp(k, "allow_ips") == 0) {
            if (ks_allow_ips_from_json(v, p->allow_ips, why, cap) < 0)
                return why;
            p->u.allow_ips = p->allow_ips;
            continue;
        }
        size_t i = 0;
        while (i < sizeof(strings) / sizeof(strings[0]) && strcmp(k, strings[i]) != 0)
            i++;
        if (i == sizeof(strings) / sizeof(strings[0])) {
            snprintf(why, cap, "unknown field '%.64s' (a key's fields that change: %s)", k,
                     keypatch_fields);
            return why;
        }
        if (json_is_null(v)) {
            if (strcmp(k, "tier") == 0) {
                snprintf(why, cap, "tier cannot be removed: a key always has one");
                return why;
            }
            p->strs[i] = sl_strdup(""); /* cleared */
        } else if (i < 3) {             /* name, owner, tier: strings */
            if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(why, cap, "%s is a string%s", k, i < 2 ? " or null" : "");
                return why;
            }
            p->strs[i] = sl_strdup(json_string_value(v));
        } else {
            p->strs[i] = keypatch_join(v, i == 3 ? "," : ", ", k, why, cap);
            if (!p->strs[i])
                return why;
        }
        *dst[i] = p->strs[i];
    }
    if (p->u.name && strlen(p->u.name) >= KS_NAME_MAX) {
        snprintf(why, cap, "name is longer than %d bytes", KS_NAME_MAX - 1);
        return why;
    }
    if (p->u.owner && strlen(p->u.owner) >= KS_NAME_MAX) {
        snprintf(why, cap, "owner is longer than %d bytes", KS_NAME_MAX - 1);
        return why;
    }
    if (p->u.tier && !keypatch_tier_ok(c, p->u.tier, why, cap))
        return why;
    if (p->u.scopes) {
        if (!keypatch_scopes(p->strs[3])) {
            snprintf(why, cap, "scopes are names without blanks, quotes or control characters");
            return why;
        }
        if (strlen(p->strs[3]) >= KS_SCOPES_MAX) {
            snprintf(why, cap, "scopes are longer than %d bytes together", KS_SCOPES_MAX - 1);
            return why;
        }
    }
    if (p->u.limits) {
        if (keypatch_limits(&p->strs[4], why, cap))
            return why;
        p->u.limits = p->strs[4];
        if (strlen(p->u.limits) >= KS_LIMITS_MAX) {
            snprintf(why, cap, "limits are longer than %d bytes together", KS_LIMITS_MAX - 1);
            return why;
        }
    }
    return NULL;
}

void keypatch_release(struct keypatch *p)
{
    for (size_t i = 0; i < sizeof(p->strs) / sizeof(p->strs[0]); i++) {
        free(p->strs[i]);
        p->strs[i] = NULL;
    }
}
