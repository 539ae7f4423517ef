/* sluice usage: a usage report (SPEC 1, 6.4) read from the store of a
 * config file, the same one its gateways write (SQLite under data_dir, or
 * Redis), with its own connection. The output is the admin API's GET
 * /usage body, JSON or (--csv) CSV, byte for byte: both are
 * usage/report.c's. What is counted reaches the store within a second of
 * the response; rows still in a running gateway's memory are not in it. */
#include <errno.h>
#include <stdbool.h>

#include "auth/keystore.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "usage/report.h"
#include "util/clock.h"

static const char usage_usage[] =
    "usage: sluice usage -c FILE [--key ID] [--identity ID] [--route R] [--from T] [--to T]\n"
    "                    [--granularity hour|day|month] [--csv]\n"
    "  Prints usage rows per identity, route and period (UTC) from the store of\n"
    "  FILE, as GET /usage on the admin API does: JSON, or CSV with --csv.\n"
    "  --key ID          rows of API key ID (exit 1 when there is no such key)\n"
    "  --identity ID     rows of one identity: key:ID, sub:SUBJECT, ip:ADDRESS\n"
    "  --route R         rows of one route (its path or prefix as in FILE)\n"
    "  --from T, --to T  periods overlapping [from, to): RFC 3339\n"
    "                    (2024-05-01T13:00:00Z), a date (2024-05-01; as --to, the\n"
    "                    whole day) or Unix seconds; default: the last 24 hours,\n"
    "                    30 days or 12 months, the current one included\n"
    "  --granularity G   hour, day (default) or month\n"
    "  --csv             RFC 4180 CSV instead of JSON\n";

/* Options that take a value, and the report parameter each sets. */
static const struct {
    const char *opt, *param;
} usage_opts[] = {
    {"--key", "key"}, {"--identity", "identity"},       {"--route", "route"}, {"--from", "from"},
    {"--to", "to"},   {"--granularity", "granularity"},
};

/* Is key <id> in the key store of <c>? 0 yes, 1 no (said), or 1 after a
 * store failure (said). */
static int usage_cli_key_exists(const struct config *c, const char *id)
{
    struct ks_open_opts ko = {
        .backend = c->store.backend == CFG_BACKEND_REDIS ? KS_REDIS : KS_SQLITE,
        .data_dir = c->store.data_dir,
        .redis = c->store.redis.conn,
        .redis_prefix = c->store.redis.prefix,
    };
    struct ks_db db;
    char *err = NULL;
    if (ks_open(&db, &ko, &err) < 0) {
        cli_fail(1, "usage", NULL, "%s", err);
        free(err);
        return 1;
    }
    struct ks_key k;
    enum ks_result rc = ks_get(&db, id, &k, &err);
    ks_close(&db);
    if (rc == KS_OK)
        return 0;
    if (rc == KS_NOT_FOUND)
        cli_fail(1, "usage", NULL, "no key '%s'", id);
    else
        cli_fail(1, "usage", NULL, "%s", err ? err : "the key store failed");
    free(err);
    return 1;
}

int cli_usage(int argc, char **argv)
{
    struct usage_report r;
    usage_report_init(&r, false);
    const char *config = NULL;
    int rc = 2;
    char *why = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage_usage, stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(arg, "--csv") == 0) {
            if (usage_report_set(&r, "format", "csv", &why) < 0)
                goto bad;
            continue;
        }
        bool is_config = strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0;
        const char *param = NULL;
        for (size_t o = 0; o < sizeof(usage_opts) / sizeof(usage_opts[0]); o++)
            if (strcmp(arg, usage_opts[o].opt) == 0)
                param = usage_opts[o].param;
        if (!is_config && !param) {
            cli_fail(2, "usage", usage_usage, "unknown option '%s'", arg);
            goto out;
        }
        if (i + 1 >= argc) {
            cli_fail(2, "usage", usage_usage, "%s needs a value", arg);
            goto out;
        }
        if (is_config)
            config = argv[++i];
        else if (usage_report_set(&r, param, argv[++i], &why) < 0)
            goto bad;
    }
    if (!config) {
        cli_fail(2, "usage", usage_usage, "-c FILE is required");
        goto out;
    }
    if (usage_report_resolve(&r, clock_wall_us() / 1000000, &why) < 0)
        goto bad;

    struct config *c = cli_load_config(config);
    if (!c)
        goto out;
    rc = 1;
    if (r.key_id && usage_cli_key_exists(c, r.key_id) != 0) {
        cfg_unref(c);
        goto out;
    }
    struct usage_store_opts o = {
        .redis = c->store.backend == CFG_BACKEND_REDIS,
        .data_dir = c->store.data_dir,
        .conn = c->store.redis.conn,
        .redis_prefix = c->store.redis.prefix,
    };
    char *err = NULL;
    struct usage_store *s = usage_store_open(&o, &err);
    cfg_unref(c);
    if (!s) {
        cli_fail(1, "usage", NULL, "%s", err);
        free(err);
        goto out;
    }
    struct buf body = {0};
    const char *ctype = NULL;
    int status = usage_report_run(s, &r, &body, &ctype, &err);
    usage_store_close(s);
    if (status == 200) {
        fwrite(body.data, 1, body.len, stdout);
        rc = fflush(stdout) == 0 ? 0 : 1;
    } else {
        rc = cli_fail(status == 400 ? 2 : 1, "usage", NULL, "%s", err ? err : "the store failed");
    }
    free(err);
    buf_release(&body);
    goto out;
bad:
    cli_fail(2, "usage", usage_usage, "%s", why);
out:
    free(why);
    usage_report_release(&r);
    return rc;
}
