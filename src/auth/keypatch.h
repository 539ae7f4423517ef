#ifndef SLUICE_KEYPATCH_H
#define SLUICE_KEYPATCH_H
/* The checks of a key change against the running config (SPEC 6.2): the
 * tier a key may take, and the body of PATCH /keys/{id} read into a struct
 * ks_update. Pure: no store, no exchange, so that unit tests reach every
 * case; `sluice keys` and the admin API share them. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth/keystore.h"
#include "conf/conf.h"

/* Room for a message, the tiers it names included. */
#define KEYPATCH_WHY_MAX 512

/* Can a key take tier <tier> in config <c>: one of its tiers, and not
 * anonymous? When not, a message naming the tiers a key can take into <why>
 * (<cap> bytes). */
bool keypatch_tier_ok(const struct config *c, const char *tier, char *why, size_t cap);

/* A PATCH /keys/{id} body read: <u> as ks_update takes it, its strings
 * owned by the struct (keypatch_release frees them). */
struct keypatch {
    struct ks_update u;
    char *strs[5]; /* behind u's name, owner, tier, scopes, limits */
    char why[KEYPATCH_WHY_MAX];
    char allow_ips[KS_ALLOW_IPS_MAX]; /* behind u.allow_ips */
};

/* Reads <doc> (any JSON value) as a PATCH body against config <c> into
 * <p> (zeroed here): an object with at least one of tier, name, owner,
 * scopes, limits, quota_daily, quota_monthly, allow_ips. null clears a field (a quota:
 * the tier's applies again; tier cannot be cleared). scopes and limits are a
 * list of strings or one comma-separated string (allow_ips too: CIDRs). NULL when good, else the
 * reason for a 400 (in <p>, or static). */
const char *keypatch_parse(const struct config *c, const json_t *doc, struct keypatch *p);
/* Frees the strings <p> owns (it may be parsed again after). */
void keypatch_release(struct keypatch *p);

#endif
