#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H
/* Forwarding to upstream servers over per-worker keep-alive pools, with
 * request and response bodies streamed in both directions. */

#include "net/worker.h"
#include "pipeline/exchange.h"

/* The terminal stage: sends <x> to its route's upstream and streams the
 * answer back. Always STAGE_WAIT. */
enum stage_result px_stage(struct exchange *x);

/* Pools for every server of every upstream of <h>'s config. */
void px_pools_init(struct wcfg *h);
/* Close the idle connections of <h>'s pools and free them. Only when no
 * exchange uses <h> any more. */
void px_pools_release(struct wcfg *h);

#endif
