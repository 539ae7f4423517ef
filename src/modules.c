/* The module list the core walks (pipeline/module.h); its order and
 * contents are src/modules.h's. */
#include "modules.h"

_Static_assert(SL_N_MODULES <= SL_MAX_MODULES, "raise SL_MAX_MODULES in util/limits.h");

static const struct sl_module *const sl_modules[] = {
#define SL_MODULE_PTR(name) &name##_module,
    SL_MODULES(SL_MODULE_PTR)
#undef SL_MODULE_PTR
};

const struct sl_module *const *sl_module_list(int *n)
{
    *n = SL_N_MODULES;
    return sl_modules;
}

int cfg_module_count(void)
{
    return SL_N_MODULES;
}

const struct cfg_module *cfg_module_at(int i)
{
    return sl_modules[i]->conf;
}
