#ifndef SLUICE_ABUSE_TRACKER_H
#define SLUICE_ABUSE_TRACKER_H
/* Violations (each 429 of a limit or a quota, SPEC 7.3) counted per
 * identity over a sliding window, in bounded memory: each identity holds
 * ABUSE_SLOTS counters of window/ABUSE_SLOTS each (so a count covers the
 * last window give or take one slot), and at most <capacity> identities are
 * tracked; a new one past that evicts the one whose last violation is the
 * oldest, so an attacker with many addresses cannot grow the table. A
 * violation is forgotten up to one slot early, never counted late.
 * Thread-safe (one lock: only 429s write it, off the fast path); every
 * time is passed in. */

#include <stdint.h>

#define ABUSE_SLOTS 60

struct abuse_tracker;

struct abuse_violator {
    char identity[96];
    int64_t count;
    int64_t last_ms; /* wall clock of the last violation */
};

/* A table of at most <capacity> identities over windows of <window_ms>. */
struct abuse_tracker *abuse_tracker_new(unsigned capacity, int64_t window_ms);
void abuse_tracker_free(struct abuse_tracker *t);

/* One more violation of <identity> at <now_ms>; returns its count within
 * the window, this one included. */
int64_t abuse_tracker_record(struct abuse_tracker *t, const char *identity, int64_t now_ms);
/* Forgets <identity>'s violations (it was just banned: the next ban needs
 * as many again). */
void abuse_tracker_reset(struct abuse_tracker *t, const char *identity);
/* <identity>'s violations within the last <window_ms> (at most the
 * table's window) at <now_ms>. */
int64_t abuse_tracker_count(struct abuse_tracker *t, const char *identity, int64_t window_ms,
                            int64_t now_ms);
/* The (at most) <n> identities with the most violations within the last
 * <window_ms> at <now_ms>, most first (ties: the latest first), into <out>;
 * how many. Identities with none in that window are left out. */
int abuse_tracker_top(struct abuse_tracker *t, int64_t window_ms, int64_t now_ms,
                      struct abuse_violator *out, int n);
unsigned abuse_tracker_size(struct abuse_tracker *t);
int64_t abuse_tracker_window_ms(const struct abuse_tracker *t);

#endif
