#ifndef SLUICE_WRITER_H
#define SLUICE_WRITER_H
/* The one thread of a gateway that touches the disk (ARCHITECTURE.md):
 * it owns the gateway's SQLite connection, runs the operations workers
 * queue, and between them calls a tick (every <tick_ms>) that notices
 * changes other processes made (the CLI) and flushes batched writes.
 * Workers never block on it: an operation's result comes back to the
 * submitting loop through a uv_async. */

#include <stdbool.h>
#include <sqlite3.h>
#include <uv.h>

struct dbw;
struct dbw_op;

/* Runs on the writer thread with its connection. */
typedef void (*dbw_run_fn)(sqlite3 *db, void *arg);
/* Runs on the loop that submitted the operation, after <run>. */
typedef void (*dbw_done_fn)(void *arg);
/* Runs on the writer thread after each batch of operations and at least
 * every tick_ms; <changed_elsewhere> is true when another connection
 * committed since the last tick (PRAGMA data_version). */
typedef void (*dbw_tick_fn)(sqlite3 *db, bool changed_elsewhere, void *arg);

/* Starts the thread with connection <db> (taken over: closed by dbw_stop).
 * <tick> may be NULL. */
struct dbw *dbw_start(sqlite3 *db, int tick_ms, dbw_tick_fn tick, void *tick_arg);

/* Queue <run>(<db>, <arg>) on the writer; then <done>(<arg>) on <loop>
 * (which must be the calling thread's loop). <done> may be NULL. Returns
 * the operation, which stays valid until <done> has run. */
struct dbw_op *dbw_submit(struct dbw *w, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                          void *arg);
/* Queue <run> without a completion (fire and forget, e.g. from the writer's
 * own clients that have no loop). */
void dbw_post(struct dbw *w, dbw_run_fn run, void *arg);

/* On the writer thread only (inside a run function): has another connection
 * committed since the last check? The answer is consumed: the next tick
 * does not report the same change again. */
bool dbw_poll_changes(struct dbw *w);

/* Ask for a tick soon (after the current batch). */
void dbw_kick(struct dbw *w);

/* Runs what is queued, ticks a last time, joins the thread and closes the
 * connection. Call it once every loop has stopped submitting (nothing may
 * call dbw_submit/post/kick on <w> during or after it). Operations already
 * submitted still signal their loops: each submitting loop must then run
 * (e.g. uv_run until its handles are closed) so that their done callbacks
 * run and their memory is freed; an operation's pending uv_async keeps its
 * loop alive until then. */
void dbw_stop(struct dbw *w);

#endif
