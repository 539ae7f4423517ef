/* The store's writer thread (see writer.h).
 *
 * One mutex guards a FIFO of operations and three flags; a condition
 * variable (on CLOCK_MONOTONIC, so a wall-clock step neither stalls nor
 * races the ticks) wakes the thread for work, a kick or the stop. The
 * thread takes the whole queue at once, runs it without the lock (workers
 * only ever wait for the lock to append), then ticks.
 *
 * An operation with a completion carries a uv_async_t initialised by
 * dbw_submit on the submitter's loop (uv_async_init is not thread-safe, so
 * it must be that thread). After <run>, the writer calls uv_async_send and
 * never touches the operation again: the loop's callback calls <done>, then
 * uv_close, whose callback frees the operation. libuv (>= 1.43) makes the
 * close wait for a uv_async_send still in flight on another thread, so the
 * free cannot overtake the send. */

#include "store/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "util/mem.h"

struct dbw_op {
    struct dbw_op *next;
    dbw_run_fn run;
    dbw_done_fn done;
    void *arg;
    bool has_async;
    atomic_bool ran;  /* set (release) by the writer after <run>, read (acquire) by the loop */
    uv_async_t async; /* on the submitter's loop when has_async */
};

struct dbw {
    struct ks_db *db;
    int tick_ms;
    dbw_tick_fn tick;
    void *tick_arg;
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct dbw_op *head, *tail;
    bool kicked;
    bool stopping;
};

static int64_t dbw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dbw_do_tick(struct dbw *w)
{
    if (w->tick)
        w->tick(w->db, w->tick_arg);
}

/* Runs the operations of <op> (a detached list) in order. */
static void dbw_run_batch(struct dbw *w, struct dbw_op *op)
{
    while (op) {
        struct dbw_op *next = op->next;
        op->run(w->db, op->arg);
        if (op->has_async) {
            /* uv_async_send orders everything <run> wrote before <done>
             * (libuv's atomics), but from inside libuv, where a thread
             * sanitizer cannot see it: this pair says it again, visibly. */
            atomic_store_explicit(&op->ran, true, memory_order_release);
            uv_async_send(&op->async); /* <op> belongs to its loop from here */
        } else {
            free(op);
        }
        op = next;
    }
}

static void *dbw_main(void *p)
{
    struct dbw *w = p;
    int64_t next_tick = dbw_now_ms() + w->tick_ms;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->kicked && !w->stopping) {
            if (!w->tick) {
                pthread_cond_wait(&w->cv, &w->mu);
                continue;
            }
            struct timespec ts = {.tv_sec = next_tick / 1000,
                                  .tv_nsec = (long)(next_tick % 1000) * 1000000};
            if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
                break;
        }
        struct dbw_op *batch = w->head;
        w->head = w->tail = NULL;
        bool stopping = w->stopping;
        w->kicked = false;
        pthread_mutex_unlock(&w->mu);

        dbw_run_batch(w, batch);
        /* After a batch, on a kick, and when the tick is due. Also once on
         * the way out, so batched writes a tick flushes are not lost. */
        int64_t now = dbw_now_ms();
        dbw_do_tick(w);
        next_tick = now + w->tick_ms;

        pthread_mutex_lock(&w->mu);
        if (stopping && !w->head)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct dbw *dbw_start(struct ks_db *db, int tick_ms, dbw_tick_fn tick, void *tick_arg)
{
    struct dbw *w = sl_calloc(1, sizeof(*w));
    w->db = db;
    w->tick_ms = tick_ms > 0 ? tick_ms : 1;
    w->tick = tick;
    w->tick_arg = tick_arg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, dbw_main, w) != 0)
        sl_fatal("sluice: cannot start the store writer thread\n");
    return w;
}

static void dbw_enqueue(struct dbw *w, struct dbw_op *op)
{
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = op;
    else
        w->head = op;
    w->tail = op;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void dbw_op_free(uv_handle_t *h)
{
    free(h->data);
}

static void dbw_async_cb(uv_async_t *a)
{
    struct dbw_op *op = a->data;
    if (!atomic_load_explicit(&op->ran, memory_order_acquire))
        return; /* cannot happen: libuv calls us after the send */
    if (op->done)
        op->done(op->arg);
    uv_close((uv_handle_t *)&op->async, dbw_op_free);
}

struct dbw_op *dbw_submit(struct dbw *w, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                          void *arg)
{
    struct dbw_op *op = sl_calloc(1, sizeof(*op));
    op->run = run;
    op->done = done;
    op->arg = arg;
    op->has_async = true;
    if (uv_async_init(loop, &op->async, dbw_async_cb) != 0)
        sl_fatal("sluice: uv_async_init failed\n"); /* only without file descriptors */
    op->async.data = op;
    dbw_enqueue(w, op);
    return op;
}

void dbw_post(struct dbw *w, dbw_run_fn run, void *arg)
{
    struct dbw_op *op = sl_calloc(1, sizeof(*op));
    op->run = run;
    op->arg = arg;
    dbw_enqueue(w, op);
}

void dbw_kick(struct dbw *w)
{
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void dbw_stop(struct dbw *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
