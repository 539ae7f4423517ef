#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H
/* Forwarding to upstream servers over per-worker keep-alive pools, with
 * request and response bodies streamed in both directions. */

#include "pipeline/exchange.h"

/* The terminal stage: sends <x> to its route's upstream and streams the
 * answer back. Always STAGE_WAIT. */
enum stage_result px_stage(struct exchange *x);

#endif
