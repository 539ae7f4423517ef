#ifndef SLUICE_DEVELOPER_BODY_H
#define SLUICE_DEVELOPER_BODY_H
/* The request bodies of the developer endpoints (docs/developer.md) and
 * the rules a developer's request is held to. The bodies come from anyone
 * holding a valid JWT: every field is checked here, unknown fields are
 * refused (a typo must not silently create a key without its quota), and
 * the rules only narrow what the caller's own tier allows. Pure: no I/O,
 * no clock; the unit tests and the fuzz harness call these directly. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/keystore.h"
#include "conf/conf.h"

/* A body longer than this is a 413: a name, a tier and two numbers fit in
 * a few hundred bytes. */
#define DEV_MAX_BODY 4096
/* The longest grace a developer may keep an old secret alive for on
 * rotation: long enough to roll a deployment, short enough that a leaked
 * secret does not outlive the leak by weeks. */
#define DEV_MAX_GRACE_MS (7ll * 86400000)

/* POST /developer/keys: {"name": "...", "tier": "...", "quotas": {"daily": N, "monthly": N}}. */
struct dev_create {
    char name[KS_NAME_MAX];
    char tier[KS_TIER_MAX]; /* "": the caller's own */
    /* -1: not asked for (the tier's applies, capped by the caller's). */
    int64_t quota_daily, quota_monthly;
};

/* Parses <body>/<len> into <out>. 0, or -1 with *<why> (static text for a
 * 400). */
int dev_parse_create(const char *body, size_t len, struct dev_create *out, const char **why);
/* POST /developer/keys/{id}/rotate: an empty body, or {"grace": "1h"} up
 * to DEV_MAX_GRACE_MS. 0 with *<grace_ms>, or -1 with *<why>. */
int dev_parse_rotate(const char *body, size_t len, int64_t *grace_ms, const char **why);

/* The caller's tier: the JWT's tier claim <claim> when it names a tier of
 * <c>, else identity.jwt.default_tier; NULL: none (such a caller may list
 * and revoke its keys, not create any). Never "anonymous". */
const struct cfg_tier *dev_caller_tier(const struct config *c, const char *claim);

/* Holds request <req> to what a caller of tier <own> may have, and fills
 * in what it left out: the tier (<own>'s when none is asked for), and a
 * quota of the caller's own where the key would otherwise get more than
 * the caller has. The rules (docs/developer.md, "Rules"):
 *   - tiers are ranked by their order under `tiers:` in the config, first
 *     lowest; a caller may ask for its own tier or one listed before it;
 *     an exempt tier only when its own is exempt; never `anonymous`;
 *   - per span (daily, monthly), where the caller's tier has a quota, a
 *     quota asked for may not exceed it, and a key whose tier has a larger
 *     quota, or none, gets the caller's as its own.
 * 0, or the status to answer (400: no such tier; 403: above the caller's)
 * with the reason in <why> (<why_cap> bytes). */
int dev_apply_rules(const struct config *c, const struct cfg_tier *own, struct dev_create *req,
                    char *why, size_t why_cap);

#endif
