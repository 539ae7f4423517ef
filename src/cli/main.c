/* sluice: command-line dispatch only; each verb lives in src/cli/ or its module. */
#include "cli/cli.h"
#include "net/worker.h"

static const char usage[] =
    "usage: sluice [serve] -c FILE          run the gateway\n"
    "       sluice check -c FILE            validate a config file\n"
    "       sluice purge -c FILE (--key K | --prefix P | --pattern G | --tag T | --all)\n"
    "                                       purge the cache of the running gateway\n"
    "       sluice keys (create|list|show ID|rotate ID|revoke ID) -c FILE [options]\n"
    "                                       manage API keys (sluice keys --help)\n"
    "       sluice usage -c FILE [--key ID] [--identity ID] [--route R] [--from T] [--to T]\n"
    "                    [--granularity hour|day|month] [--csv]\n"
    "                                       usage report (sluice usage --help)\n"
    "       sluice audit verify FILE... (-c FILE | --key HEX)\n"
    "                                       check an audit log's chain (sluice audit --help)\n"
    "       sluice version                  print the version\n"
    "       sluice <verb> --help            help for one verb\n"
    "exit codes: 0 ok, 1 runtime failure, 2 usage or config error\n";

static const char serve_usage[] = "usage: sluice [serve] -c FILE\n"
                                  "  Runs the gateway until SIGTERM/SIGINT (drains, exits 0).\n"
                                  "  SIGHUP reloads FILE; a bad file is rejected, the old one "
                                  "stays.\n";

static int main_serve(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(serve_usage, stdout);
            return 0;
        }
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
            continue;
        }
        fprintf(stderr, "sluice: unexpected argument '%s'\n%s", argv[i], serve_usage);
        return 2;
    }
    if (!path) {
        fprintf(stderr, "sluice: -c FILE is required\n%s", serve_usage);
        return 2;
    }
    return gw_serve(path);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(verb, "version") == 0 || strcmp(verb, "--version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (strcmp(verb, "serve") == 0)
        return main_serve(argc - 2, argv + 2);
    if (strcmp(verb, "check") == 0)
        return cli_check(argc - 1, argv + 1);
    if (verb[0] == '-')
        return main_serve(argc - 1, argv + 1);
    if (strcmp(verb, "purge") == 0)
        return cli_purge(argc - 1, argv + 1);
    if (strcmp(verb, "keys") == 0)
        return cli_keys(argc - 1, argv + 1);
    if (strcmp(verb, "usage") == 0)
        return cli_usage(argc - 1, argv + 1);
    if (strcmp(verb, "audit") == 0)
        return cli_audit(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown verb '%s'\n%s", verb, usage);
    return 2;
}
