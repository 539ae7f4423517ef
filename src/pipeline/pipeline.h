#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H
/* The stage arrays of the two listeners, built once from the modules'
 * stages (pipeline/module.h) in phase order. A capability is added as a
 * stage of its module, never as a special case inside another stage. */
#include <stdbool.h>

#include "pipeline/exchange.h"

struct pipeline {
    stage_fn stages[SL_MAX_STAGES];
    int n_stages;
};

/* Build <public> and <admin> from the module list. */
void pipeline_build(struct pipeline *public, struct pipeline *admin);

/* Every module's finish hook for <x>, after its response (not for admin
 * calls or detached exchanges). */
void pipeline_finish(struct exchange *x);

#endif
