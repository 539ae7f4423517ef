#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H
/* The stage arrays, in the order of ARCHITECTURE.md. A capability is added
 * as a stage here, never as a special case inside another stage. */
#include <stdbool.h>

#include "pipeline/exchange.h"

/* The stages of the public listener (<admin> false) or the admin listener. */
const stage_fn *pipeline_stages(bool admin, int *n);

#endif
