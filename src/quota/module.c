/* The quota module (SPEC 6): for now its configuration only. Counting,
 * headers, alerts and usage are to come (issue 12); until then a config
 * with quotas is accepted on this branch only. */
#include "quota/conf.h"

const struct sl_module quota_module = {
    .name = "quota",
    .conf = &quota_cfg_module,
};
