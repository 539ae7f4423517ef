#include "pipeline/pipeline.h"

#include <stdio.h>
#include <stdlib.h>

#include "pipeline/module.h"

/* Append every stage of phase <phase> on the <admin> listener, in module
 * order. */
static void pipeline_add_phase(struct pipeline *p, int phase, bool admin)
{
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++) {
        for (int s = 0; s < mods[m]->n_stages; s++) {
            const struct sl_stage *st = &mods[m]->stages[s];
            if (st->phase != phase || st->admin != admin)
                continue;
            if (p->n_stages == SL_MAX_STAGES) {
                /* A build-time mistake, found by the first test run. */
                fprintf(stderr, "sluice: more than %d stages: raise SL_MAX_STAGES\n",
                        SL_MAX_STAGES);
                abort();
            }
            p->stages[p->n_stages++] = st->fn;
        }
    }
}

void pipeline_build(struct pipeline *public, struct pipeline *admin)
{
    public->n_stages = 0;
    admin->n_stages = 0;
    for (int ph = 0; ph < SL_PHASE_N; ph++)
        pipeline_add_phase(public, ph, false);
    for (int ph = 0; ph < SL_ADMIN_PHASE_N; ph++)
        pipeline_add_phase(admin, ph, true);
}

void pipeline_finish(struct exchange *x)
{
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++)
        if (mods[m]->finish)
            mods[m]->finish(x);
}
