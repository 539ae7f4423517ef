#ifndef SLUICE_FLEET_H
#define SLUICE_FLEET_H
/* A gateway as one member of a fleet sharing Redis (SPEC 3.6, 4.4): one
 * Redis connection per worker (requests of a worker pipeline on it), a
 * heartbeat that tells every member how many gateways are alive (so that
 * each enforces its share of a limit while Redis is away), and the events
 * channel: purges made on one gateway reach all. Absent (NULL) with the
 * memory backend. */

#include <stdbool.h>
#include <stdint.h>

#include "cache/cache.h"
#include "conf/conf.h"
#include "store/redis.h"

struct gateway;
struct worker;
struct fleet;

/* For <c> (backend redis); NULL for the memory backend. */
struct fleet *fleet_new(struct gateway *gw, const struct config *c);
void fleet_free(struct fleet *f);

/* On worker <w>'s loop thread, before it runs: its connection (and, on
 * worker 0, the subscriber and the heartbeat). */
void fleet_worker_start(struct fleet *f, struct worker *w);
/* On the loop thread, when the worker stops: closes them; the worker's
 * open_handles counts the closes still pending. */
void fleet_worker_stop(struct fleet *f, struct worker *w);

/* Live gateways as last seen in Redis (>= 1; kept while Redis is away). */
unsigned fleet_size(const struct fleet *f);
const char *fleet_prefix(const struct fleet *f);
/* The scripts, loaded once per process. */
const struct rds_script *fleet_apply_script(const struct fleet *f);
const struct rds_script *fleet_release_script(const struct fleet *f);

/* Tell every other gateway to purge (<kind>, <arg>) too; false when Redis
 * cannot be reached now (the purge stays local). */
bool fleet_publish_purge(struct fleet *f, struct worker *w, enum cache_purge_kind kind,
                         const char *arg);

struct fleet_stats {
    unsigned size;
    int workers_up, workers;
    uint64_t commands, timeouts, reconnects, events_received;
};
void fleet_get_stats(struct fleet *f, struct fleet_stats *out);

#endif
