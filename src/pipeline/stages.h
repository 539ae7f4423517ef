#ifndef SLUICE_STAGES_H
#define SLUICE_STAGES_H
#include "pipeline/exchange.h"

/* GET /_sluice/health on the main listener: the gateway's own liveness,
 * answered before any other stage so it is never limited. */
enum stage_result stage_health(struct exchange *x);
/* Finds the route (first match in file order); 404 when none matches. */
enum stage_result stage_route(struct exchange *x);

/* Resolves the client address (trusted proxies) and the default identity:
 * the address, tier "anonymous". */
enum stage_result stage_client_ip(struct exchange *x);

#endif
