#ifndef SLUICE_AUDIT_CONF_H
#define SLUICE_AUDIT_CONF_H
/* The `audit` section (SPEC 7.5; docs/configuration.md). Absent: no audit
 * log. */
#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"

struct audit_conf {
    char *path; /* relative to the config file; NULL: the section is absent */
    int64_t max_size;
    int keep;
    bool requests;           /* one line per request too */
    struct cfg_secret32 key; /* audit.key, else store.encryption_key (copied in) */
};

extern const struct cfg_module audit_cfg_module;

/* The audit section of <c>; path NULL when there is none. */
const struct audit_conf *audit_conf(const struct config *c);

#endif
