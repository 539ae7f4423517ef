#ifndef SLUICE_FLEET_H
#define SLUICE_FLEET_H
/* The fleet module: a gateway as one member of a fleet sharing Redis (SPEC
 * 3.6, 4.4): one Redis connection per worker (requests of a worker
 * pipeline on it), a heartbeat that tells every member how many gateways
 * are alive (so that each enforces its share of a limit while Redis is
 * away), and the events channel on which modules publish and receive their
 * event types (sl_module.events). Absent with the memory backend:
 * fleet_of() is NULL. */

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "pipeline/gateway.h"
#include "store/redis.h"

struct fleet;

/* The fleet of <gw>; NULL with the memory backend. */
struct fleet *fleet_of(const struct gateway *gw);
/* Worker <w>'s Redis connection (NULL with the memory backend, and after
 * the worker stopped). Loop-thread only. */
struct rds *fleet_redis(const struct worker *w);

/* Live gateways as last seen in Redis (>= 1; kept while Redis is away). */
unsigned fleet_size(const struct fleet *f);
/* The prefix of every key and of the events channel ("sluice:"). */
const char *fleet_prefix(const struct fleet *f);

/* Send <event> (an object with a "type" of some module's event types; this
 * gateway's id is added as "from") to every other gateway, from worker
 * <w>'s connection; false when Redis cannot be reached now. */
bool fleet_publish(struct fleet *f, struct worker *w, json_t *event);

#endif
