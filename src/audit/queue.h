#ifndef SLUICE_AUDIT_QUEUE_H
#define SLUICE_AUDIT_QUEUE_H
/* The lines on their way from workers (and admin calls) to the audit
 * thread: a bounded queue of line heads. A producer never waits for the
 * disk: push takes one short lock and, when the queue is full, drops the
 * line and counts it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct audit_queue;

/* A queue of at most <cap> lines. */
struct audit_queue *audit_queue_new(size_t cap);
/* Frees the queue and the lines still in it. */
void audit_queue_free(struct audit_queue *q);

/* Queues a copy of <head>/<len>; false (and counted as dropped) when full
 * or closed. */
bool audit_queue_push(struct audit_queue *q, const char *head, size_t len);

/* One queued line; <head> is malloc'd, the taker's to free. */
struct audit_item {
    char *head;
    size_t len;
};
/* Moves up to <max> lines into <out> and returns how many; when there are
 * none, waits up to <wait_ms> for one (0 at once when closed). */
size_t audit_queue_take(struct audit_queue *q, struct audit_item *out, size_t max, int wait_ms);

/* No more pushes; a waiting take returns. */
void audit_queue_close(struct audit_queue *q);
bool audit_queue_closed(struct audit_queue *q);

/* Lines refused because the queue was full or closed. */
uint64_t audit_queue_dropped(struct audit_queue *q);

#endif
