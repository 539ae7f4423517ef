/* The bounded queue of audit lines (audit/queue.h): a ring under a mutex. */
#include "audit/queue.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "util/mem.h"

struct audit_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct audit_item *ring;
    size_t cap, head, n;
    bool closed;
    uint64_t dropped; /* atomic reads */
};

struct audit_queue *audit_queue_new(size_t cap)
{
    struct audit_queue *q = sl_calloc(1, sizeof(*q));
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &attr);
    pthread_condattr_destroy(&attr);
    q->ring = sl_calloc(cap, sizeof(*q->ring));
    q->cap = cap;
    return q;
}

void audit_queue_free(struct audit_queue *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++)
        free(q->ring[(q->head + i) % q->cap].head);
    free(q->ring);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

bool audit_queue_push(struct audit_queue *q, const char *head, size_t len)
{
    /* The copy is made outside the lock: the lock only guards the ring. */
    char *copy = sl_malloc(len + 1);
    memcpy(copy, head, len);
    copy[len] = '\0';
    pthread_mutex_lock(&q->mu);
    bool ok = !q->closed && q->n < q->cap;
    if (ok) {
        q->ring[(q->head + q->n) % q->cap] = (struct audit_item){copy, len};
        q->n++;
        pthread_cond_signal(&q->cv);
    } else {
        __atomic_add_fetch(&q->dropped, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&q->mu);
    if (!ok)
        free(copy);
    return ok;
}

static void audit_deadline(struct timespec *ts, int wait_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += wait_ms / 1000;
    ts->tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

size_t audit_queue_take(struct audit_queue *q, struct audit_item *out, size_t max, int wait_ms)
{
    struct timespec until;
    audit_deadline(&until, wait_ms);
    pthread_mutex_lock(&q->mu);
    while (q->n == 0 && !q->closed && wait_ms > 0)
        if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT)
            break;
    size_t got = 0;
    while (got < max && q->n > 0) {
        out[got++] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
    }
    pthread_mutex_unlock(&q->mu);
    return got;
}

void audit_queue_close(struct audit_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

bool audit_queue_closed(struct audit_queue *q)
{
    pthread_mutex_lock(&q->mu);
    bool closed = q->closed;
    pthread_mutex_unlock(&q->mu);
    return closed;
}

uint64_t audit_queue_dropped(struct audit_queue *q)
{
    return __atomic_load_n(&q->dropped, __ATOMIC_RELAXED);
}
