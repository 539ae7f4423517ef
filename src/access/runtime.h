#ifndef SLUICE_ACCESS_RUNTIME_H
#define SLUICE_ACCESS_RUNTIME_H
/* The run-time access lists (SPEC 7.1: POST/DELETE /access): the entries
 * of the store (access/store.h) and an immutable snapshot of them as two
 * tries that workers read without a lock. A change builds a new snapshot
 * and publishes it with a new generation number; a worker compares the
 * number per request and takes the new snapshot (a reference) only when it
 * moved; the last reference frees the old one (keyring.h does the same).
 *
 * The store and the entries belong to a thread of their own (store/writer.h:
 * workers never wait for disk or Redis). Admin calls run there
 * (acl_rt_submit) and answer on their worker's loop. Between them, every
 * ACL_POLL_MS, the thread asks Redis for the entries' version and reloads
 * them when it moved (so a change on one gateway reaches the fleet in well
 * under a second), reloads anyway every ACL_RELOAD_MS, and removes expired
 * entries from the store. An expired entry never matches meanwhile: the
 * trie keeps each network's expiry. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "access/entry.h"
#include "access/trie.h"
#include "conf/conf.h"
#include "store/writer.h"

#define ACL_POLL_MS 200
#define ACL_RELOAD_MS 10000

struct acl_snap {
    int refs;                      /* atomic */
    struct acl_trie *allow, *deny; /* NULL: that list is empty */
    /* The latest expiry of the allow entries: past it the run-time allow
     * list is empty, though not yet swept. */
    int64_t allow_until_ms;
};

void acl_snap_unref(struct acl_snap *s);

struct acl_runtime;

/* Opens the store <c> names, loads it (blocking: at start-up, before any
 * request) and starts the thread; NULL with *<err> (malloc'd). Redis being away is not an error:
 * the lists start empty and fill when it is back. */
struct acl_runtime *acl_rt_open(const struct config *c, char **err);
void acl_rt_close(struct acl_runtime *rt);

/* Refreshes a reader's snapshot *<snap> (generation *<gen>; both 0/NULL at
 * first) when a newer one was published: one atomic load when not. */
void acl_rt_sync(struct acl_runtime *rt, struct acl_snap **snap, uint64_t *gen);

/* Runs <run>(NULL, <arg>) on the runtime's thread, then <done>(<arg>) on
 * <loop> (the calling thread's). The three calls below are for <run> only. */
void acl_rt_submit(struct acl_runtime *rt, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                   void *arg);

/* The most run-time entries: a bound on what the admin API can make the
 * gateways hold (each costs ~20 trie nodes and a row), far above a real
 * deny list kept by hand or by a script. */
#define ACL_RT_MAX 100000
#define ACL_RT_FULL (-2)

/* Stores <e> (its id set) and applies it; 0, -1 with <why> (the store
 * failed), or ACL_RT_FULL with <why> when ACL_RT_MAX entries exist. */
int acl_rt_add(struct acl_runtime *rt, struct acl_entry *e, char *why, size_t cap);
/* Removes entry <id>: 1, 0 when there is none, -1 with <why>. */
int acl_rt_delete(struct acl_runtime *rt, int64_t id, char *why, size_t cap);
/* The entries not expired at <now_ms>, as a JSON array (new reference). */
json_t *acl_rt_list(struct acl_runtime *rt, int64_t now_ms);

#endif
