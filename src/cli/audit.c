/* sluice audit verify FILE... [-c FILE | --key HEX]: checks an audit log's
 * chain (audit/verify.h). */
#include "audit/conf.h"
#include "audit/verify.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "conf/walker.h"
#include "util/str.h"

static const char audit_usage[] =
    "usage: sluice audit verify FILE... [-c CONFIG | --key HEX]\n"
    "  Checks the chain of audit FILEs, oldest first (audit.log.2 audit.log.1 audit.log),\n"
    "  with the key of CONFIG (audit.key, else store.encryption_key) or --key (64 hex digits);\n"
    "  without either, from $SLUICE_AUDIT_KEY, else $SLUICE_ENCRYPTION_KEY (hex or base64).\n"
    "  Prints \"ok: N lines\" and exits 0, or names the first bad line (FILE:LINE: why) and\n"
    "  exits 1; exits 2 on a usage or config error or a file that cannot be read.\n";

/* The key from <config_path>: audit.key, else store.encryption_key. */
static int audit_key_from_config(const char *config_path, unsigned char key[32])
{
    struct config *c = cli_load_config(config_path);
    if (!c)
        return 2;
    const struct audit_conf *ac = audit_conf(c);
    const struct cfg_secret32 *k = ac->path ? &ac->key : &c->store.encryption_key;
    int rc = 0;
    if (k->set)
        memcpy(key, k->bytes, 32);
    else
        rc = cli_fail(2, "audit", NULL, "%s has neither audit.key nor store.encryption_key",
                      config_path);
    cfg_unref(c);
    return rc;
}

/* `sluice audit verify FILE` as SPEC 1 writes it: the key from the
 * environment the gateway's config reads it from. */
static int audit_key_from_env(unsigned char key[32])
{
    const char *names[] = {"SLUICE_AUDIT_KEY", "SLUICE_ENCRYPTION_KEY"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        if (!v || !*v)
            continue;
        if (cfg_parse_secret32(v, key) < 0)
            return cli_fail(2, "audit", NULL, "%s: not 32 bytes as 64 hex digits or base64",
                            names[i]);
        return 0;
    }
    return cli_fail(2, "audit", audit_usage,
                    "no key: give -c CONFIG or --key HEX, or set SLUICE_AUDIT_KEY or "
                    "SLUICE_ENCRYPTION_KEY");
}

static int audit_verify_cmd(int argc, char **argv)
{
    const char *config = NULL, *hex = NULL;
    const char **files = calloc((size_t)argc + 1, sizeof(*files));
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            free(files);
            fputs(audit_usage, stdout);
            return 0;
        }
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            hex = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return free(files), cli_fail(2, "audit", audit_usage, "unknown option '%s'", argv[i]);
        else
            files[n++] = argv[i];
    }
    int rc = 0;
    unsigned char key[32];
    if (n == 0)
        rc = cli_fail(2, "audit", audit_usage, "verify needs at least one FILE");
    else if (config && hex)
        rc = cli_fail(2, "audit", audit_usage, "give the key once: -c CONFIG or --key HEX");
    else if (hex && str_unhex(hex, strlen(hex), key, 32) < 0)
        rc = cli_fail(2, "audit", NULL, "--key takes 64 hex digits");
    else if (config)
        rc = audit_key_from_config(config, key);
    else if (!hex)
        rc = audit_key_from_env(key);
    if (rc == 0) {
        struct buf msg = {0};
        rc = (int)audit_verify(files, n, key, &msg);
        buf_append(&msg, "", 1);
        fprintf(rc == 0 ? stdout : stderr, "%s\n", msg.data);
        buf_release(&msg);
    }
    free(files);
    return rc;
}

int cli_audit(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return audit_verify_cmd(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(audit_usage, stdout);
        return 0;
    }
    return cli_fail(2, "audit", audit_usage, "expected: verify FILE...");
}
