/* sluice check: validate a config file the way the gateway would load it,
 * so an operator (or a deploy pipeline) can test a change before SIGHUP. */

#include <stdarg.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"

static const char cli_check_usage[] = "usage: sluice check -c FILE\n";

int cli_check(int argc, char **argv)
{
    const char *file = NULL;

    /* By hand rather than getopt: getopt keeps its position in globals, and
     * the tests and main.c may both run a verb in one process. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cli_check_usage, stdout);
            puts("Validate FILE as the gateway would load it, without starting it.\n"
                 "Prints \"FILE: ok\" and exits 0, or prints each error as\n"
                 "FILE:LINE: message and exits 2.");
            return 0;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 == argc)
                return cli_fail(2, "check", cli_check_usage, "%s needs a FILE", a);
            v = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            v = a + 9;
        } else {
            return cli_fail(2, "check", cli_check_usage, "unknown argument '%s'", a);
        }
        if (file)
            return cli_fail(2, "check", cli_check_usage, "more than one config file given");
        file = v;
    }
    if (!file || !file[0])
        return cli_fail(2, "check", cli_check_usage, "no config file given (-c FILE)");

    struct config *c = cli_load_config(file);
    if (!c)
        return 2;
    printf("%s: ok\n", file);
    cfg_unref(c);
    return 0;
}
