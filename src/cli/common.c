/* What the sub-commands share. */
#include <stdarg.h>

#include "cli/cli.h"
#include "conf/conf.h"

int cli_fail(int code, const char *verb, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sluice %s: ", verb);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (usage)
        fputs(usage, stderr);
    return code;
}

struct config *cli_load_config(const char *file)
{
    char *err = NULL;
    struct config *c = cfg_load(file, &err);
    if (!c) {
        fprintf(stderr, "%s\n", err);
        free(err);
    }
    return c;
}
