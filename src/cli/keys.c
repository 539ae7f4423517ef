/* sluice keys: create, list, show, update, rotate and revoke API keys (SPEC 1,
 * 5.1, 6.2);
 * export and import them (records and secret hashes), e.g. to re-seed a
 * Redis that lost its data from the snapshot a gateway keeps.
 *
 * The CLI opens the store the gateways use (store.data_dir of the config
 * file) with its own connection and changes it in transactions; running
 * gateways notice the commit on their next writer tick (PRAGMA
 * data_version), so nothing has to be signalled. Input is validated here,
 * against the config (the tier exists, limits parse), before the store is
 * touched: a usage error never leaves half a key behind. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/crypto.h>

#include "audit/audit.h"
#include "auth/keypatch.h"
#include "auth/keysnap.h"
#include "auth/keystore.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "limit/limit.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/limits.h"
#include "util/str.h"

static const char keys_usage[] =
    "usage: sluice keys create -c FILE --tier T [--name N] [--owner O] [--scopes a,b]\n"
    "                          [--expires 30d] [--limit 100/h ...] [--env live|test]\n"
    "                          [--quota-daily N] [--quota-monthly N] [--signing] [--json]\n"
    "       sluice keys list -c FILE [--json]\n"
    "       sluice keys show ID -c FILE [--json]\n"
    "       sluice keys update ID -c FILE [--tier T] [--quota-daily N|none]\n"
    "                          [--quota-monthly N|none] [--name N] [--owner O]\n"
    "                          [--scopes a,b] [--limit 100/h ...|none]\n"
    "                          [--signing|--no-signing] [--json]\n"
    "       sluice keys rotate ID -c FILE [--grace 1h] [--json]\n"
    "       sluice keys revoke ID -c FILE [--json]\n"
    "       sluice keys export -c FILE [--out F] [--from auto|store|snapshot]\n"
    "       sluice keys import -c FILE F [--force]\n"
    "       sluice keys <subcommand> --help\n"
    "  Keys live in the store of FILE: SQLite under store.data_dir, or Redis\n"
    "  with store.backend: redis. Running gateways see changes within a second.\n"
    "  export and import copy the active keys (records and secret hashes, never\n"
    "  secrets), e.g. to re-seed a Redis that lost its data.\n";

static const char keys_create_usage[] =
    "usage: sluice keys create -c FILE --tier T [options]\n"
    "  Creates an API key and prints its secret, once: only its SHA-256 is stored.\n"
    "  --tier T            a tier of FILE (required; not 'anonymous')\n"
    "  --name N, --owner O free text (up to 128 bytes each)\n"
    "  --scopes a,b        scopes the key grants (comma-separated)\n"
    "  --expires 30d       lifetime (ms, s, m, h, d); default: never expires\n"
    "  --limit 100/h       a limit replacing the tier's (repeatable; SPEC 3.1 syntax)\n"
    "  --quota-monthly N, --quota-daily N\n"
    "                      the key's own quotas (requests per month, per day),\n"
    "                      replacing its tier's; default: the tier's\n"
    "  --env live|test     the secret's environment tag (sk_<env>_...); default live\n"
    "  --signing           also a signing secret for request signing (SPEC 7.2), shown\n"
    "                      once as 64 hex digits; needs store.encryption_key in FILE\n"
    "  --allow-ips CIDR,.. the networks the key may be used from (at most 16;\n"
    "                      e.g. 10.0.0.0/8,2001:db8::/32); default: anywhere\n"
    "  --json              print {\"key\": {...}, \"secret\": \"sk_...\"} (and\n"
    "                      \"signing_secret\" with --signing)\n";

static const char keys_list_usage[] = "usage: sluice keys list -c FILE [--json]\n"
                                      "  Lists every key, newest first (secrets are never "
                                      "shown again).\n";

static const char keys_show_usage[] = "usage: sluice keys show ID -c FILE [--json]\n"
                                      "  Prints key ID.\n";

static const char keys_update_usage[] =
    "usage: sluice keys update ID -c FILE [options]\n"
    "  Changes key ID. Running gateways apply the change from their next look at\n"
    "  the store (every 200 ms): the next requests get the new tier, limits and\n"
    "  quotas. Fields not given stay as they are. A revoked key cannot change.\n"
    "  --tier T            a tier of FILE (not 'anonymous')\n"
    "  --quota-daily N     the key's own daily quota (1 to 2^53 requests), or\n"
    "                      'none': the tier's quota applies again\n"
    "  --quota-monthly N   the same, per month\n"
    "  --name N, --owner O free text (up to 128 bytes each; '' clears)\n"
    "  --scopes a,b        the scopes, replacing the key's ('' clears)\n"
    "  --limit 100/h       replaces the key's limits (repeatable); '--limit none'\n"
    "                      drops them: the tier's limits apply again\n"
    "  --signing           a new signing secret, shown once (the old one stops now)\n"
    "  --no-signing        the key cannot sign any more\n"
    "  --allow-ips CIDR,.. the networks the key may be used from, replacing the\n"
    "                      key's; '--allow-ips none': from anywhere again\n"
    "  --json              print the key as 'keys show --json' does (and\n"
    "                      {\"key\": {...}, \"signing_secret\": \"...\"} with --signing)\n";

static const char keys_rotate_usage[] =
    "usage: sluice keys rotate ID -c FILE [--grace 1h] [--json]\n"
    "  Issues a new secret for key ID and prints it, once. The current secret\n"
    "  stays valid for --grace (default 0: it stops working now).\n"
    "  --json              print {\"key\": {...}, \"secret\": \"sk_...\"}\n";

static const char keys_revoke_usage[] =
    "usage: sluice keys revoke ID -c FILE [--json]\n"
    "  Revokes key ID, its secrets and its refresh tokens, on every gateway\n"
    "  within a second. Revoking a revoked key is not an error.\n";

static const char keys_export_usage[] =
    "usage: sluice keys export -c FILE [--out F] [--from auto|store|snapshot]\n"
    "  Writes the active keys (records and SHA-256 of their valid secrets, never a\n"
    "  secret) as JSON lines, the format of <data_dir>/keyring.snapshot.\n"
    "  --out F        write to F (mode 0600, replaced atomically); default: stdout\n"
    "  --from store   read the key store\n"
    "  --from snapshot  read the snapshot a gateway keeps in store.data_dir\n"
    "  --from auto    (default) the store, unless it cannot be reached, or it lost\n"
    "                 its data (its epoch is not the snapshot's, or it holds no key\n"
    "                 and the snapshot does): then the snapshot\n"
    "  Exit 1 when the source cannot be read.\n";

static const char keys_import_usage[] =
    "usage: sluice keys import -c FILE F [--force]\n"
    "  Writes the keys of F (from sluice keys export, or a keyring.snapshot) into\n"
    "  the store of FILE, with their ids, times and secret hashes: their secrets\n"
    "  work again. A key already there with the same data is left alone; one with\n"
    "  other data is refused (exit 1) unless --force, which replaces it. When the\n"
    "  store held no key (or with --force), its epoch is set to F's, so gateways\n"
    "  that kept their keys through a data loss read the store again.\n";

/* What the command line said; which fields a subcommand accepts is in its
 * row of keys_cmds. */
struct keys_args {
    const char *config;
    const char *id;
    bool json;
    const char *tier, *name, *owner, *scopes, *expires, *quota_monthly, *quota_daily, *env;
    const char *grace;
    const char *out, *from;
    const char *allow_ips;
    bool force;
    int signing; /* --signing 1, --no-signing -1 */
    const char *limits[SL_MAX_LIMITS_PER_LIST];
    int n_limits;
};

enum keys_opt_kind { KEYS_OPT_STRING, KEYS_OPT_LIMIT };

/* Options of the subcommands: one row per option and subcommand, the field
 * it fills. */
struct keys_opt {
    const char *name;
    size_t off;
    enum keys_opt_kind kind;
    const char *cmd; /* the subcommand that takes it */
};

#define KEYS_OPT(n, field, cmd)                                                                    \
    {                                                                                              \
        n, offsetof(struct keys_args, field), KEYS_OPT_STRING, cmd                                 \
    }
static const struct keys_opt keys_opts[] = {
    KEYS_OPT("--tier", tier, "create"),
    KEYS_OPT("--name", name, "create"),
    KEYS_OPT("--owner", owner, "create"),
    KEYS_OPT("--scopes", scopes, "create"),
    KEYS_OPT("--expires", expires, "create"),
    KEYS_OPT("--quota-monthly", quota_monthly, "create"),
    KEYS_OPT("--quota-daily", quota_daily, "create"),
    KEYS_OPT("--env", env, "create"),
    {"--limit", 0, KEYS_OPT_LIMIT, "create"},
    KEYS_OPT("--tier", tier, "update"),
    KEYS_OPT("--name", name, "update"),
    KEYS_OPT("--owner", owner, "update"),
    KEYS_OPT("--scopes", scopes, "update"),
    KEYS_OPT("--quota-monthly", quota_monthly, "update"),
    KEYS_OPT("--quota-daily", quota_daily, "update"),
    {"--limit", 0, KEYS_OPT_LIMIT, "update"},
    KEYS_OPT("--allow-ips", allow_ips, "create"),
    KEYS_OPT("--allow-ips", allow_ips, "update"),
    KEYS_OPT("--grace", grace, "rotate"),
    KEYS_OPT("--out", out, "export"),
    KEYS_OPT("--from", from, "export"),
};

struct keys_cmd;
typedef int (*keys_run_fn)(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                           struct ks_db *db);

struct keys_cmd {
    const char *name;
    const char *usage;
    bool takes_id; /* a positional argument: the key id (the file, for import) */
    keys_run_fn run;
};

/* ---- output -------------------------------------------------------------- */

/* <ms> since the epoch as ISO 8601 UTC into <out>, or <none> for 0. */
static const char *keys_time(int64_t ms, char out[32], const char *none)
{
    if (ms <= 0)
        return none;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return none;
    return out;
}

static void keys_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

/* The key as aligned "field: value" lines. */
static void keys_print_key(const struct ks_key *k)
{
    char t1[32], quota[64];
    printf("id:            %s\n", k->id);
    printf("name:          %s\n", k->name[0] ? k->name : "-");
    printf("owner:         %s\n", k->owner[0] ? k->owner : "-");
    printf("tier:          %s\n", k->tier);
    printf("state:         %s\n", k->state == KS_REVOKED ? "revoked" : "active");
    printf("prefix:        %s\n", k->prefix);
    printf("scopes:        %s\n", k->scopes[0] ? k->scopes : "-");
    printf("limits:        %s\n", k->limits[0] ? k->limits : "(the tier's)");
    printf("signing:       %s\n", k->signing[0] ? "yes" : "no");
    printf("allow ips:     %s\n", k->allow_ips[0] ? k->allow_ips : "(anywhere)");
    if (k->quota_monthly < 0 && k->quota_daily < 0) {
        str_copy(quota, sizeof(quota), "-");
    } else {
        char m[24] = "none", d[24] = "none";
        if (k->quota_monthly >= 0)
            str_u64(m, (uint64_t)k->quota_monthly);
        if (k->quota_daily >= 0)
            str_u64(d, (uint64_t)k->quota_daily);
        snprintf(quota, sizeof(quota), "monthly %s, daily %s", m, d);
    }
    printf("quota:         %s\n", quota);
    printf("expires:       %s\n", keys_time(k->expires_ms, t1, "never"));
    printf("created:       %s\n", keys_time(k->created_ms, t1, "-"));
    printf("last used:     %s\n", keys_time(k->last_used_ms, t1, "never"));
    if (k->rotated_until_ms > 0)
        printf("rotated until: %s\n", keys_time(k->rotated_until_ms, t1, "-"));
    if (k->state == KS_REVOKED)
        printf("revoked:       %s\n", keys_time(k->revoked_ms, t1, "-"));
}

/* create and rotate: the key and its new secret, shown this once; with
 * <signing> (may be NULL), its new signing secret too. */
static void keys_print_secret(const struct keys_args *a, const struct ks_key *k, const char *secret,
                              const char *signing)
{
    if (a->json) {
        json_t *j = json_object();
        json_object_set_new(j, "key", ks_key_json(k));
        if (secret)
            json_object_set_new(j, "secret", json_string(secret));
        if (signing)
            json_object_set_new(j, "signing_secret", json_string(signing));
        keys_print_json(j);
    } else {
        keys_print_key(k);
        if (secret)
            printf("secret:        %s\n", secret);
        if (signing)
            printf("signing secret: %s\n", signing);
        puts(signing ? "These secrets are shown only once: store them now (sluice keeps the "
                       "signing secret encrypted and only a hash of the other)."
                     : "This secret is shown only once: store it now (sluice keeps only its "
                       "hash).");
    }
    fflush(stdout);
}

/* --signing: a new signing secret for key <id>, sealed under the config's
 * store.encryption_key; 0, or an exit code after saying why. */
static int keys_signing(const struct config *c, const char *verb, const char *id,
                        char hex[KS_SIGNING_HEX_MAX], char sealed[KS_SIGNING_MAX])
{
    if (!c->store.encryption_key.set)
        return cli_fail(2, verb, NULL,
                        "--signing needs store.encryption_key in the config (the signing secret "
                        "is stored encrypted under it)");
    if (ks_signing_new(c->store.encryption_key.bytes, id, hex, sealed) < 0)
        return cli_fail(1, verb, NULL, "the random number generator failed");
    return 0;
}

/* ---- validation ---------------------------------------------------------- */

/* "a,b" (commas or blanks) into "a b" in <out>; -1 on an empty list, a
 * control character, or overflow. */
static int keys_scopes(const char *in, char out[KS_SCOPES_MAX])
{
    size_t n = 0;
    for (const char *p = in; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ", \t");
        if (len == 0)
            break;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x21 || p[i] == 0x7f || p[i] == '"')
                return -1;
        if (n + (n ? 1 : 0) + len >= KS_SCOPES_MAX)
            return -1;
        if (n)
            out[n++] = ' ';
        memcpy(out + n, p, len);
        n += len;
        p += len;
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

/* A quota option's value <s>: a whole number 1..KS_QUOTA_MAX, or "none"
 * (-1) when <none_ok>. */
static int keys_quota(const char *s, bool none_ok, int64_t *out)
{
    if (none_ok && strcmp(s, "none") == 0) {
        *out = -1;
        return 0;
    }
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 1 || !ks_quota_ok(v))
        return -1;
    *out = v;
    return 0;
}

/* The --allow-ips value <arg> ("10.0.0.0/8,2001:db8::/32"; "none": no
 * restriction) as the store keeps it into <out>; 0, or an exit code after
 * saying why (<verb> names the command). */
static int keys_allow_ips(const char *arg, const char *verb, char out[KS_ALLOW_IPS_MAX])
{
    out[0] = '\0';
    if (strcmp(arg, "none") == 0)
        return 0;
    char copy[KS_ALLOW_IPS_MAX * 2], why[160];
    const char *items[KS_ALLOW_IPS_N + 1];
    int n = 0;
    if (strlen(arg) >= sizeof(copy))
        return cli_fail(2, verb, NULL, "--allow-ips is too long (at most %d networks)",
                        KS_ALLOW_IPS_N);
    str_copy(copy, sizeof(copy), arg);
    for (char *p = copy; p && n <= KS_ALLOW_IPS_N;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        items[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    if (ks_allow_ips_join(items, n, out, why, sizeof(why)) < 0)
        return cli_fail(2, verb, NULL, "bad --allow-ips '%s': %s", arg, why);
    return 0;
}

/* The --limit values of <a> as the store keeps them ("100/h, 10/s") into
 * <out>; 0, or an exit code after saying why (<verb> names the command). */
static int keys_limits(const struct keys_args *a, const char *verb, char out[KS_LIMITS_MAX])
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < a->n_limits; i++) {
        struct limit l;
        const char *why;
        if (lim_parse(a->limits[i], &l, &why) < 0)
            return cli_fail(2, verb, NULL, "bad --limit '%s': %s", a->limits[i], why);
        if (strchr(l.text, ','))
            return cli_fail(2, verb, NULL, "bad --limit '%s': one limit per --limit", a->limits[i]);
        size_t len = strlen(l.text);
        if (n + (n ? 2 : 0) + len >= KS_LIMITS_MAX)
            return cli_fail(2, verb, NULL, "the --limit values are too long together");
        if (n) {
            memcpy(out + n, ", ", 2);
            n += 2;
        }
        memcpy(out + n, l.text, len + 1);
        n += len;
    }
    return 0;
}

/* ---- subcommands --------------------------------------------------------- */

static int64_t keys_now_ms(void)
{
    return clock_wall_us() / 1000;
}

/* The audit line of a key change made here (audit/audit.h): actor
 * cli:<user>. The change is made already, so a log that cannot be written
 * is a warning, not a failure. */
static void keys_audit(const struct config *c, const char *verb, const char *action,
                       const char *target, const char *result, const char *extra)
{
    struct audit_event ev = {.action = action, .target = target, .result = result, .extra = extra};
    char *err = NULL;
    if (audit_cli(c, &ev, &err) < 0) {
        fprintf(stderr, "sluice %s: warning: %s (the audit log misses this change)\n", verb, err);
        free(err);
    }
}

static int keys_create(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    const char *v = "keys create";
    if (!a->tier)
        return cli_fail(2, v, cmd->usage, "--tier is required");
    char why[KEYPATCH_WHY_MAX];
    if (!keypatch_tier_ok(c, a->tier, why, sizeof(why)))
        return cli_fail(2, v, NULL, "%s", why);
    if (a->name && strlen(a->name) >= KS_NAME_MAX)
        return cli_fail(2, v, NULL, "--name is longer than %d bytes", KS_NAME_MAX - 1);
    if (a->owner && strlen(a->owner) >= KS_NAME_MAX)
        return cli_fail(2, v, NULL, "--owner is longer than %d bytes", KS_NAME_MAX - 1);
    if (a->env && !apikey_env_ok(a->env))
        return cli_fail(2, v, NULL, "bad --env '%s' (1 to %d of a-z, 0-9; e.g. live, test)", a->env,
                        APIKEY_ENV_MAX);
    char scopes[KS_SCOPES_MAX] = "";
    if (a->scopes && keys_scopes(a->scopes, scopes) < 0)
        return cli_fail(2, v, NULL, "bad --scopes '%s' (comma-separated names, %d bytes at most)",
                        a->scopes, KS_SCOPES_MAX - 1);

    char limits[KS_LIMITS_MAX];
    int rc = keys_limits(a, v, limits);
    if (rc)
        return rc;
    char allow_ips[KS_ALLOW_IPS_MAX] = "";
    rc = a->allow_ips ? keys_allow_ips(a->allow_ips, v, allow_ips) : 0;
    if (rc)
        return rc;

    struct ks_new req = {
        .env = a->env,
        .name = a->name,
        .owner = a->owner,
        .tier = a->tier,
        .scopes = scopes,
        .limits = limits,
        .allow_ips = allow_ips,
        .quota_monthly = -1,
        .quota_daily = -1,
    };
    if (a->quota_monthly && keys_quota(a->quota_monthly, false, &req.quota_monthly) < 0)
        return cli_fail(2, v, NULL, "bad --quota-monthly '%s' (requests, 1 to 2^53)",
                        a->quota_monthly);
    if (a->quota_daily && keys_quota(a->quota_daily, false, &req.quota_daily) < 0)
        return cli_fail(2, v, NULL, "bad --quota-daily '%s' (requests, 1 to 2^53)", a->quota_daily);
    int64_t now = keys_now_ms();
    if (a->expires) {
        int64_t ms;
        if (cfg_parse_duration_ms(a->expires, &ms) < 0 || ms <= 0)
            return cli_fail(2, v, NULL, "bad --expires '%s' (a duration: 30d, 12h, ...)",
                            a->expires);
        req.expires_ms = now + ms;
    }
    if (a->signing && !c->store.encryption_key.set)
        return keys_signing(c, v, NULL, NULL, NULL);
    if (!db)
        return -1; /* validation only: the caller opens the store next */

    /* The signing secret is sealed for the key's id: the id is drawn here. */
    char id[APIKEY_ID_MAX], signing[KS_SIGNING_HEX_MAX] = "", sealed[KS_SIGNING_MAX];
    if (a->signing) {
        if (apikey_new_id(id) < 0)
            return cli_fail(1, v, NULL, "the random number generator failed");
        if ((rc = keys_signing(c, v, id, signing, sealed)) != 0)
            return rc;
        req.id = id;
        req.signing = sealed;
    }
    struct ks_key k;
    char secret[APIKEY_SECRET_MAX], *err = NULL;
    if (ks_create(db, &req, now, &k, secret, &err) != KS_OK) {
        OPENSSL_cleanse(signing, sizeof(signing));
        keys_audit(c, v, "key.create", "", err ? err : "cannot create the key", NULL);
        cli_fail(1, v, NULL, "%s", err ? err : "cannot create the key");
        free(err);
        return 1;
    }
    struct buf extra = {0};
    buf_append_str(&extra, ",\"tier\":\"");
    json_str_append(&extra, k.tier);
    buf_append(&extra, "\"", 2);
    keys_audit(c, v, "key.create", k.id, "ok", extra.data);
    buf_release(&extra);
    keys_print_secret(a, &k, secret, a->signing ? signing : NULL);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(signing, sizeof(signing));
    return 0;
}

static int keys_list(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                     struct ks_db *db)
{
    if (!db)
        return -1;
    struct ks_key *keys;
    int n;
    char *err = NULL;
    if (ks_list(db, &keys, &n, &err) != KS_OK) {
        cli_fail(1, "keys list", NULL, "%s", err);
        free(err);
        return 1;
    }
    if (a->json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, ks_key_json(&keys[i]));
        json_t *j = json_object();
        json_object_set_new(j, "keys", arr);
        keys_print_json(j);
    } else if (n == 0) {
        puts("no keys");
    } else {
        int wp = 6, wt = 4, wn = 4;
        for (int i = 0; i < n; i++) {
            int lp = (int)strlen(keys[i].prefix), lt = (int)strlen(keys[i].tier),
                ln = (int)strlen(keys[i].name);
            wp = lp > wp ? lp : wp;
            wt = lt > wt ? lt : wt;
            wn = ln > wn ? ln : wn;
        }
        printf("%-20s  %-*s  %-*s  %-7s  %-*s  %s\n", "ID", wp, "PREFIX", wt, "TIER", "STATE", wn,
               "NAME", "LAST USED");
        for (int i = 0; i < n; i++) {
            const struct ks_key *k = &keys[i];
            char t[32];
            printf("%-20s  %-*s  %-*s  %-7s  %-*s  %s\n", k->id, wp, k->prefix, wt, k->tier,
                   k->state == KS_REVOKED ? "revoked" : "active", wn, k->name[0] ? k->name : "-",
                   keys_time(k->last_used_ms, t, "never"));
        }
    }
    free(keys);
    return 0;
}

static int keys_show(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                     struct ks_db *db)
{
    if (!db)
        return -1;
    struct ks_key k;
    char *err = NULL;
    enum ks_result r = ks_get(db, a->id, &k, &err);
    if (r == KS_NOT_FOUND)
        return cli_fail(1, "keys show", NULL, "no key '%s'", a->id);
    if (r != KS_OK) {
        cli_fail(1, "keys show", NULL, "%s", err);
        free(err);
        return 1;
    }
    if (a->json)
        keys_print_json(ks_key_json(&k));
    else
        keys_print_key(&k);
    return 0;
}

static int keys_update(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    const char *v = "keys update";
    struct ks_update u = {
        .tier = a->tier,
        .name = a->name,
        .owner = a->owner,
    };
    char why[KEYPATCH_WHY_MAX];
    if (a->tier && !keypatch_tier_ok(c, a->tier, why, sizeof(why)))
        return cli_fail(2, v, NULL, "%s", why);
    if (a->name && strlen(a->name) >= KS_NAME_MAX)
        return cli_fail(2, v, NULL, "--name is longer than %d bytes", KS_NAME_MAX - 1);
    if (a->owner && strlen(a->owner) >= KS_NAME_MAX)
        return cli_fail(2, v, NULL, "--owner is longer than %d bytes", KS_NAME_MAX - 1);
    char scopes[KS_SCOPES_MAX] = "";
    if (a->scopes && a->scopes[0] && keys_scopes(a->scopes, scopes) < 0)
        return cli_fail(2, v, NULL,
                        "bad --scopes '%s' (comma-separated names, %d bytes at most; '' clears)",
                        a->scopes, KS_SCOPES_MAX - 1);
    if (a->scopes)
        u.scopes = scopes;
    char limits[KS_LIMITS_MAX] = "";
    bool no_limits = a->n_limits == 1 && strcmp(a->limits[0], "none") == 0;
    if (a->n_limits && !no_limits) {
        int rc = keys_limits(a, v, limits);
        if (rc)
            return rc;
    }
    if (a->n_limits)
        u.limits = limits;
    char allow_ips[KS_ALLOW_IPS_MAX];
    if (a->allow_ips) {
        int rc = keys_allow_ips(a->allow_ips, v, allow_ips);
        if (rc)
            return rc;
        u.allow_ips = allow_ips;
    }
    if (a->quota_monthly) {
        if (keys_quota(a->quota_monthly, true, &u.quota_monthly) < 0)
            return cli_fail(2, v, NULL,
                            "bad --quota-monthly '%s' (requests, 1 to 2^53, or none for the "
                            "tier's)",
                            a->quota_monthly);
        u.set_quota_monthly = true;
    }
    if (a->quota_daily) {
        if (keys_quota(a->quota_daily, true, &u.quota_daily) < 0)
            return cli_fail(2, v, NULL,
                            "bad --quota-daily '%s' (requests, 1 to 2^53, or none for the "
                            "tier's)",
                            a->quota_daily);
        u.set_quota_daily = true;
    }
    if (a->signing < 0)
        u.signing = "";
    if (a->signing > 0 && !c->store.encryption_key.set)
        return keys_signing(c, v, NULL, NULL, NULL);
    if (ks_update_empty(&u) && !a->signing)
        return cli_fail(2, v, cmd->usage, "nothing to change: give at least one option");
    if (!db)
        return -1;

    char signing[KS_SIGNING_HEX_MAX] = "", sealed[KS_SIGNING_MAX];
    int rc;
    if (a->signing > 0) {
        if ((rc = keys_signing(c, v, a->id, signing, sealed)) != 0)
            return rc;
        u.signing = sealed;
    }
    struct ks_key k;
    char *err = NULL;
    enum ks_result r = ks_update(db, a->id, &u, &k, &err);
    if (r != KS_OK)
        OPENSSL_cleanse(signing, sizeof(signing));
    keys_audit(c, v, "key.update", a->id,
               r == KS_OK          ? "ok"
               : r == KS_NOT_FOUND ? "no such key"
               : err               ? err
                                   : "failed",
               NULL);
    if (r == KS_NOT_FOUND) {
        /* Unknown, or revoked: say which. */
        if (ks_get(db, a->id, &k, NULL) == KS_OK)
            return cli_fail(1, v, NULL, "key '%s' is revoked: a revoked key cannot change", a->id);
        return cli_fail(1, v, NULL, "no key '%s'", a->id);
    }
    if (r != KS_OK) {
        cli_fail(1, v, NULL, "%s", err ? err : "cannot update the key");
        free(err);
        return 1;
    }
    if (a->signing > 0) {
        keys_print_secret(a, &k, NULL, signing);
        OPENSSL_cleanse(signing, sizeof(signing));
    } else if (a->json) {
        keys_print_json(ks_key_json(&k));
    } else {
        keys_print_key(&k);
    }
    return 0;
}

static int keys_rotate(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    int64_t grace = 0;
    if (a->grace && cfg_parse_duration_ms(a->grace, &grace) < 0)
        return cli_fail(2, "keys rotate", NULL, "bad --grace '%s' (a duration: 1h, 30m, ...)",
                        a->grace);
    if (!db)
        return -1;
    struct ks_key k;
    char secret[APIKEY_SECRET_MAX], *err = NULL;
    enum ks_result r = ks_rotate(db, a->id, grace, keys_now_ms(), &k, secret, &err);
    char extra[48];
    snprintf(extra, sizeof(extra), ",\"grace_ms\":%lld", (long long)grace);
    keys_audit(c, "keys rotate", "key.rotate", a->id,
               r == KS_OK          ? "ok"
               : r == KS_NOT_FOUND ? "no such key"
               : err               ? err
                                   : "failed",
               extra);
    if (r == KS_NOT_FOUND)
        return cli_fail(1, "keys rotate", NULL, "no active key '%s'", a->id);
    if (r != KS_OK) {
        cli_fail(1, "keys rotate", NULL, "%s", err);
        free(err);
        return 1;
    }
    keys_print_secret(a, &k, secret, NULL);
    OPENSSL_cleanse(secret, sizeof(secret));
    return 0;
}

static int keys_revoke(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    if (!db)
        return -1;
    struct ks_key k;
    char *err = NULL;
    enum ks_result r = ks_revoke(db, a->id, keys_now_ms(), &k, &err);
    keys_audit(c, "keys revoke", "key.revoke", a->id,
               r == KS_OK          ? "ok"
               : r == KS_NOT_FOUND ? "no such key"
               : err               ? err
                                   : "failed",
               NULL);
    if (r == KS_NOT_FOUND)
        return cli_fail(1, "keys revoke", NULL, "no key '%s'", a->id);
    if (r != KS_OK) {
        cli_fail(1, "keys revoke", NULL, "%s", err);
        free(err);
        return 1;
    }
    if (a->json) {
        keys_print_json(ks_key_json(&k));
    } else {
        char t[32];
        printf("revoked %s (%s) at %s\n", k.id, k.prefix, keys_time(k.revoked_ms, t, "-"));
    }
    return 0;
}

/* ---- export and import --------------------------------------------------- */

enum keys_from { KEYS_FROM_AUTO, KEYS_FROM_STORE, KEYS_FROM_SNAPSHOT };

/* The active keys of the store <db> into *<out>, with its epoch. */
static enum ks_result keys_read_store(struct ks_db *db, struct keysnap **out, char **err)
{
    char epoch[KS_EPOCH_MAX];
    enum ks_result r = ks_epoch(db, epoch, err);
    struct keysnap *s = keysnap_new();
    if (r == KS_OK)
        r = ks_each_active(db, keys_now_ms(), keysnap_add, s, err);
    if (r != KS_OK) {
        keysnap_free(s);
        return r;
    }
    keysnap_set_epoch(s, epoch);
    *out = s;
    return KS_OK;
}

static int keys_export(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    const char *v = "keys export";
    enum keys_from from = KEYS_FROM_AUTO;
    if (a->from && strcmp(a->from, "store") == 0)
        from = KEYS_FROM_STORE;
    else if (a->from && strcmp(a->from, "snapshot") == 0)
        from = KEYS_FROM_SNAPSHOT;
    else if (a->from && strcmp(a->from, "auto") != 0)
        return cli_fail(2, v, cmd->usage, "bad --from '%s' (auto, store or snapshot)", a->from);
    char path[4096];
    if (keysnap_path(c->store.data_dir, path, sizeof(path)) < 0)
        return cli_fail(2, v, NULL, "store.data_dir is too long");
    if (!db)
        return -1;

    char *err = NULL, *store_err = NULL;
    struct keysnap *store = NULL, *file = NULL;
    enum ks_result sr = KS_ERROR;
    if (from != KEYS_FROM_SNAPSHOT)
        sr = keys_read_store(db, &store, &store_err);
    int fr = 1, rc = 1;
    if (from != KEYS_FROM_STORE)
        fr = keysnap_read(path, &file, &err);
    bool want_file =
        from == KEYS_FROM_SNAPSHOT ||
        (from == KEYS_FROM_AUTO &&
         (sr != KS_OK ||
          (file && keysnap_count(file) > 0 &&
           (ks_epoch_check(keysnap_epoch(file), keysnap_epoch(store)) == KS_EPOCH_LOST ||
            keysnap_count(store) == 0))));
    const struct keysnap *use = want_file ? file : store;
    const char *source = want_file ? path : "the key store";
    if (!use) {
        if (!want_file)
            cli_fail(1, v, NULL, "%s", store_err ? store_err : "cannot read the key store");
        else if (fr == 1)
            cli_fail(1, v, NULL,
                     "%s%s%s: no such file (a gateway writes it once it has read the store)",
                     store_err ? store_err : "", store_err ? "; " : "", path);
        else
            cli_fail(1, v, NULL, "%s%s%s", store_err ? store_err : "", store_err ? "; " : "",
                     err ? err : path);
        goto out;
    }
    int64_t now = keys_now_ms();
    if (a->out) {
        free(err);
        err = NULL;
        if (keysnap_write(use, a->out, now, &err) < 0) {
            cli_fail(1, v, NULL, "%s", err);
            goto out;
        }
    } else if (keysnap_dump(use, stdout, now) < 0) {
        cli_fail(1, v, NULL, "cannot write to stdout");
        goto out;
    }
    fprintf(stderr, "sluice keys export: %d key(s) from %s (epoch %s)%s%s\n", keysnap_count(use),
            source, keysnap_epoch(use)[0] ? keysnap_epoch(use) : "none", a->out ? " to " : "",
            a->out ? a->out : "");
    rc = 0;
out:
    free(err);
    free(store_err);
    keysnap_free(store);
    keysnap_free(file);
    return rc;
}

struct keys_importing {
    struct ks_db *db;
    const struct config *c;
    bool force;
    int written, conflicts, failed;
    enum ks_result last; /* of the last failure */
};

static void keys_import_one(const struct ks_key *k, const struct ks_secret *secrets, int n,
                            void *arg)
{
    struct keys_importing *im = arg;
    if (im->failed && im->last == KS_UNAVAILABLE)
        return; /* the store went away: one message is enough */
    if (!cfg_find_tier(im->c, k->tier))
        fprintf(stderr,
                "sluice keys import: warning: key %s has tier '%s', which the config "
                "does not define\n",
                k->id, k->tier);
    char *err = NULL;
    enum ks_result r = ks_put(im->db, k, secrets, n, im->force, &err);
    if (r == KS_OK) {
        im->written++;
    } else if (r == KS_CONFLICT) {
        im->conflicts++;
        fprintf(stderr, "sluice keys import: %s\n", err);
    } else {
        im->failed++;
        im->last = r;
        fprintf(stderr, "sluice keys import: %s: %s\n", k->id, err ? err : "failed");
    }
    free(err);
}

static int keys_import(const struct keys_cmd *cmd, struct keys_args *a, const struct config *c,
                       struct ks_db *db)
{
    const char *v = "keys import";
    if (!db)
        return -1;
    struct keysnap *snap = NULL;
    char *err = NULL;
    int fr = keysnap_read(a->id, &snap, &err);
    if (fr != 0) {
        cli_fail(1, v, NULL, "%s", fr == 1 ? "no such file" : err);
        free(err);
        return 1;
    }
    /* The epoch follows the keys only into a store that held none (a
     * re-seed): a store in use keeps its own, or every gateway reading it
     * would take it for a store that lost its data. */
    struct ks_key *all = NULL;
    int n_before = 0;
    enum ks_result r = ks_list(db, &all, &n_before, &err);
    free(all);
    if (r != KS_OK) {
        cli_fail(1, v, NULL, "%s", err);
        free(err);
        keysnap_free(snap);
        return 1;
    }
    struct keys_importing im = {.db = db, .c = c, .force = a->force};
    keysnap_each(snap, keys_now_ms(), keys_import_one, &im);
    bool epoch_set = false;
    const char *epoch = keysnap_epoch(snap);
    if (!im.failed && !im.conflicts && epoch[0] && (n_before == 0 || a->force)) {
        if (ks_set_epoch(db, epoch, &err) != KS_OK) {
            fprintf(stderr, "sluice keys import: cannot set the epoch: %s\n", err);
            free(err);
            err = NULL;
            im.failed++;
        } else {
            epoch_set = true;
        }
    }
    printf("imported %d key(s) of %d", im.written, keysnap_count(snap));
    if (im.conflicts)
        printf(", %d refused (other data; --force replaces)", im.conflicts);
    if (im.failed)
        printf(", %d failed", im.failed);
    if (epoch_set)
        printf("; the store's epoch is now %s", epoch);
    else if (epoch[0] && !im.failed && !im.conflicts)
        printf("; the store held keys before: its epoch kept (--force sets it to %s, which "
               "gateways that kept their keys through a data loss wait for)",
               epoch);
    printf("\n");
    keysnap_free(snap);
    return im.conflicts || im.failed ? 1 : 0;
}

static const struct keys_cmd keys_cmds[] = {
    {"create", keys_create_usage, false, keys_create},
    {"list", keys_list_usage, false, keys_list},
    {"show", keys_show_usage, true, keys_show},
    {"update", keys_update_usage, true, keys_update},
    {"rotate", keys_rotate_usage, true, keys_rotate},
    {"revoke", keys_revoke_usage, true, keys_revoke},
    {"export", keys_export_usage, false, keys_export},
    {"import", keys_import_usage, true, keys_import},
};

/* ---- dispatch ------------------------------------------------------------ */

/* Parses <argv> (after the subcommand) into <a>; 0, or an exit code after
 * printing why (help is 0 too, with *<done> set). */
static int keys_parse(const struct keys_cmd *cmd, int argc, char **argv, struct keys_args *a,
                      bool *done)
{
    const char *verb = "keys";
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(cmd->usage, stdout);
            *done = true;
            return 0;
        }
        if (strcmp(arg, "--json") == 0) {
            a->json = true;
            continue;
        }
        if (strcmp(arg, "--force") == 0 && strcmp(cmd->name, "import") == 0) {
            a->force = true;
            continue;
        }
        bool sign = strcmp(arg, "--signing") == 0, unsign = strcmp(arg, "--no-signing") == 0;
        if ((sign && strcmp(cmd->name, "create") == 0) ||
            ((sign || unsign) && strcmp(cmd->name, "update") == 0)) {
            a->signing = sign ? 1 : -1;
            continue;
        }
        if (arg[0] != '-') {
            if (!cmd->takes_id || a->id)
                return cli_fail(2, verb, cmd->usage, "unexpected argument '%s'", arg);
            a->id = arg;
            continue;
        }
        /* "--opt value" or "--opt=value" */
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        bool is_config = (nlen == 2 && strncmp(arg, "-c", 2) == 0) ||
                         (nlen == 8 && strncmp(arg, "--config", 8) == 0);
        const struct keys_opt *opt = NULL;
        for (size_t k = 0; k < sizeof(keys_opts) / sizeof(keys_opts[0]); k++)
            if (strlen(keys_opts[k].name) == nlen && strncmp(keys_opts[k].name, arg, nlen) == 0 &&
                strcmp(keys_opts[k].cmd, cmd->name) == 0)
                opt = &keys_opts[k];
        if (!is_config && !opt)
            return cli_fail(2, verb, cmd->usage, "unknown option '%.*s' for '%s'", (int)nlen, arg,
                            cmd->name);
        if (!value)
            return cli_fail(2, verb, cmd->usage, "%.*s needs a value", (int)nlen, arg);
        if (!eq)
            i++;
        if (is_config) {
            a->config = value;
        } else if (opt->kind == KEYS_OPT_LIMIT) {
            if (a->n_limits == SL_MAX_LIMITS_PER_LIST)
                return cli_fail(2, verb, NULL, "at most %d --limit", SL_MAX_LIMITS_PER_LIST);
            a->limits[a->n_limits++] = value;
        } else {
            *(const char **)((char *)a + opt->off) = value;
        }
    }
    if (cmd->takes_id && !a->id)
        return cli_fail(2, verb, cmd->usage, "'%s' needs %s", cmd->name,
                        strcmp(cmd->name, "import") == 0 ? "a file" : "a key id");
    if (!a->config)
        return cli_fail(2, verb, cmd->usage, "-c FILE is required");
    return 0;
}

/* The key store the config's store section names. */
static struct ks_open_opts keys_ks_opts(const struct config *c)
{
    return (struct ks_open_opts){
        .backend = c->store.backend == CFG_BACKEND_REDIS ? KS_REDIS : KS_SQLITE,
        .data_dir = c->store.data_dir,
        .redis = c->store.redis.conn,
        .redis_prefix = c->store.redis.prefix,
    };
}

int cli_keys(int argc, char **argv)
{
    if (argc < 2)
        return cli_fail(2, "keys", keys_usage, "a subcommand is required");
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(keys_usage, stdout);
        return 0;
    }
    const struct keys_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(keys_cmds) / sizeof(keys_cmds[0]); i++)
        if (strcmp(keys_cmds[i].name, sub) == 0)
            cmd = &keys_cmds[i];
    if (!cmd)
        return cli_fail(2, "keys", keys_usage, "unknown subcommand '%s'", sub);

    struct keys_args a = {0};
    bool done = false;
    int rc = keys_parse(cmd, argc - 2, argv + 2, &a, &done);
    if (rc != 0 || done)
        return rc;

    struct config *c = cli_load_config(a.config);
    if (!c)
        return 2;
    /* Validate everything first (a NULL store: the subcommand stops after
     * its checks, returning -1 when they pass), then open the store. */
    rc = cmd->run(cmd, &a, c, NULL);
    if (rc >= 0) {
        cfg_unref(c);
        return rc;
    }
    /* The store the gateways use: SQLite under data_dir, or Redis. */
    char *err = NULL;
    struct ks_db db;
    struct ks_open_opts ko = keys_ks_opts(c);
    if (ks_open(&db, &ko, &err) < 0) {
        cli_fail(1, "keys", NULL, "%s", err);
        free(err);
        cfg_unref(c);
        return 1;
    }
    rc = cmd->run(cmd, &a, c, &db);
    ks_close(&db);
    cfg_unref(c);
    return rc;
}
