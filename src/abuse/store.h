#ifndef SLUICE_ABUSE_STORE_H
#define SLUICE_ABUSE_STORE_H
/* Where bans are kept (SPEC 7.3: fleet-wide, surviving restarts): with
 * store.backend memory, a table of its own in <data_dir>/sluice.db; with
 * redis, a hash the fleet shares and a version other gateways poll. One
 * record per identity, kept after its ban ended for as long as it counts
 * as a past ban (escalation). One blocking connection: the caller
 * (abuse/runtime.c, on its own thread) serialises the calls. One file per
 * backend (store_sqlite.c, store_redis.c) filling struct abuse_store_ops. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abuse/ban.h"
#include "conf/conf.h"

struct abuse_store;

struct abuse_store_ops {
    /* Every record, ended ones included: *<out> (malloc'd) and *<n>. 0, or -1
     * with <why>. */
    int (*load)(struct abuse_store *s, struct abuse_ban **out, int *n, char *why, size_t cap);
    /* The record of <identity> into <b>: 1, 0 none, -1 with <why>. */
    int (*get)(struct abuse_store *s, const char *identity, struct abuse_ban *b, char *why,
               size_t cap);
    /* Writes <b> over <expected> (NULL: there was no record), and tells the
     * fleet: 1, 0 when the record is no longer <expected> (another gateway
     * changed it: read again), -1 with <why>. */
    int (*put)(struct abuse_store *s, const struct abuse_ban *b, const struct abuse_ban *expected,
               char *why, size_t cap);
    /* Removes the record <expected> (as loaded): 1, 0 it changed or is gone,
     * -1 with <why>. */
    int (*del)(struct abuse_store *s, const struct abuse_ban *expected, char *why, size_t cap);
    /* A number that moves whenever any gateway changed a record. 0 or -1. */
    int (*version)(struct abuse_store *s, uint64_t *v);
    void (*close)(struct abuse_store *s);
};

struct abuse_store {
    const struct abuse_store_ops *ops;
};

/* The store <c> names; NULL with *<err> (malloc'd). Redis is connected
 * lazily, so a fleet starts while Redis is away. */
struct abuse_store *abuse_store_open(const struct config *c, char **err);
struct abuse_store *abuse_store_sqlite_open(const struct config *c, char **err);
struct abuse_store *abuse_store_redis_open(const struct config *c, char **err);

#endif
