#ifndef SLUICE_WRITER_H
#define SLUICE_WRITER_H
/* The one thread of a gateway that talks to the key store (ARCHITECTURE.md:
 * workers never touch the disk): it owns the gateway's store connection
 * (SQLite, or Redis with store.backend: redis), runs the operations workers
 * queue, and between them calls a tick (every <tick_ms>) that notices
 * changes other processes made (the CLI, other gateways) and flushes
 * batched writes. Workers never block on it: an operation's result comes
 * back to the submitting loop through a uv_async. */

#include <stdbool.h>
#include <uv.h>

struct dbw;
struct dbw_op;
struct ks_db;

/* Runs on the writer thread with its connection. */
typedef void (*dbw_run_fn)(struct ks_db *db, void *arg);
/* Runs on the loop that submitted the operation, after <run>. */
typedef void (*dbw_done_fn)(void *arg);
/* Runs on the writer thread after each batch of operations and at least
 * every tick_ms. */
typedef void (*dbw_tick_fn)(struct ks_db *db, void *arg);

/* Starts the thread with connection <db>, which only the thread uses from
 * now on; it stays the caller's, to close after dbw_stop. <tick> may be
 * NULL. */
struct dbw *dbw_start(struct ks_db *db, int tick_ms, dbw_tick_fn tick, void *tick_arg);

/* Queue <run>(<db>, <arg>) on the writer; then <done>(<arg>) on <loop>
 * (which must be the calling thread's loop). <done> may be NULL. Returns
 * the operation, which stays valid until <done> has run. */
struct dbw_op *dbw_submit(struct dbw *w, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                          void *arg);
/* Queue <run> without a completion (fire and forget, e.g. from the writer's
 * own clients that have no loop). */
void dbw_post(struct dbw *w, dbw_run_fn run, void *arg);

/* Ask for a tick soon (after the current batch). */
void dbw_kick(struct dbw *w);

/* Runs what is queued, ticks a last time and joins the thread. Call it
 * once every loop has stopped submitting (nothing may call
 * dbw_submit/post/kick on <w> during or after it). Operations already
 * submitted still signal their loops: each submitting loop must then run
 * (e.g. uv_run until its handles are closed) so that their done callbacks
 * run and their memory is freed; an operation's pending uv_async keeps its
 * loop alive until then. */
void dbw_stop(struct dbw *w);

#endif
