#ifndef SLUICE_ABUSE_RUNTIME_H
#define SLUICE_ABUSE_RUNTIME_H
/* The bans of a gateway (SPEC 7.3): the records of the store
 * (abuse/store.h), and an immutable snapshot of the active ones, a hash
 * table that workers read without a lock. A change builds a new snapshot
 * and publishes it with a new generation number; a worker compares the
 * number per request and takes the new snapshot (a reference) only when
 * it moved; the last reference frees the old one (as access/runtime.h).
 *
 * The store and the records belong to a thread of their own
 * (store/writer.h): workers never wait for disk or Redis. Bans are made on
 * it (abuse_rt_submit, abuse_rt_post). Between them, every ABUSE_POLL_MS,
 * the thread asks the store for its version and reloads the records when
 * it moved (a ban made on one gateway reaches the fleet in well under a
 * second), reloads anyway every ABUSE_RELOAD_MS, and removes the records
 * no longer remembered every ABUSE_SWEEP_MS. A ban that ended never
 * matches meanwhile: workers compare its end with the clock. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "abuse/ban.h"
#include "abuse/store.h"
#include "conf/conf.h"
#include "store/writer.h"
#include "util/siphash.h"

#define ABUSE_POLL_MS 200
#define ABUSE_RELOAD_MS 10000
#define ABUSE_SWEEP_MS 10000

/* The most ban records (active or remembered) a gateway holds: each costs
 * ~400 bytes and a row. Automatic bans come from identities over the
 * threshold, so this bounds what an attacker with many addresses can make
 * the fleet hold; past it, new bans wait until old records are forgotten. */
#define ABUSE_RT_MAX 100000
#define ABUSE_RT_FULL (-2)

struct abuse_snap;

/* The active ban of <identity> in <s> at <now_ms>, or NULL. */
const struct abuse_ban *abuse_snap_find(const struct abuse_snap *s, const char *identity,
                                        int64_t now_ms);
/* Has <s> no ban at all (the common case: nothing to look up)? */
bool abuse_snap_empty(const struct abuse_snap *s);
/* How many bans of <s> are active at <now_ms>. */
int abuse_snap_active(const struct abuse_snap *s, int64_t now_ms);
void abuse_snap_unref(struct abuse_snap *s);

struct abuse_runtime;

/* Opens the store <c> names, loads it (blocking: at start-up, before any
 * request) and starts the thread; NULL with *<err> (malloc'd). Redis being
 * away is not an error: there are no bans until it is back. <forget_ms>:
 * how long an ended ban counts as a past one. */
struct abuse_runtime *abuse_rt_open(const struct config *c, int64_t forget_ms, char **err);
void abuse_rt_close(struct abuse_runtime *rt);
void abuse_rt_set_forget(struct abuse_runtime *rt, int64_t forget_ms);

/* Refreshes a reader's snapshot *<snap> (generation *<gen>; both 0/NULL at
 * first) when a newer one was published: one atomic load when not. */
void abuse_rt_sync(struct abuse_runtime *rt, struct abuse_snap **snap, uint64_t *gen);

/* Runs <run>(NULL, <arg>) on the runtime's thread, then <done>(<arg>) on
 * <loop> (the calling thread's); abuse_rt_post without a <done> (from a
 * worker's finish hook). The calls below are for <run> only. */
void abuse_rt_submit(struct abuse_runtime *rt, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                     void *arg);
void abuse_rt_post(struct abuse_runtime *rt, dbw_run_fn run, void *arg);

/* Bans <identity> at <now_ms> (abuse_ban_next: automatic by <p>, or manual
 * for <duration_ms>), stores and applies it, into <out>: 1 made, 0 nothing
 * to do (an automatic ban of an identity already banned), -1 with <why>
 * (the store failed), ABUSE_RT_FULL with <why>. */
int abuse_rt_ban(struct abuse_runtime *rt, enum abuse_source src, const char *identity,
                 const char *reason, int64_t duration_ms, const struct abuse_policy *p,
                 int64_t now_ms, struct abuse_ban *out, char *why, size_t cap);
/* Ends the ban of <identity> at <now_ms> (its record stays: a later ban is
 * a repeat), the ended ban into <out>: 1, 0 when it is not banned, -1 with
 * <why>. */
int abuse_rt_unban(struct abuse_runtime *rt, const char *identity, int64_t now_ms,
                   struct abuse_ban *out, char *why, size_t cap);
/* The bans active at <now_ms>, newest first, as a JSON array (new reference). */
json_t *abuse_rt_list(struct abuse_runtime *rt, int64_t now_ms);

#endif
