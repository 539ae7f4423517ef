#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H
#include "pipeline/exchange.h"

/* The limit stage: applies the tier's and the route's limits for the
 * exchange's identity in one all-or-nothing decision; adds the rate-limit
 * headers to the response; answers 429 when a limit is exceeded. */
enum stage_result lim_stage(struct exchange *x);

#endif
