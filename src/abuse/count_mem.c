/* Violations counted in this gateway's memory (abuse/count.h). */
#include <stdlib.h>

#include "abuse/count.h"
#include "util/clock.h"
#include "util/mem.h"

int64_t abuse_count_local(struct abuse_tracker *t, const char *identity, int64_t threshold,
                          int64_t now_ms, bool *crossed)
{
    int64_t n = abuse_tracker_record(t, identity, now_ms);
    *crossed = threshold > 0 && n > threshold;
    if (*crossed)
        abuse_tracker_reset(t, identity);
    return n;
}

static void abuse_mem_record(struct abuse_counter *c, struct worker *w, const char *identity,
                             int64_t threshold, abuse_count_fn done, void *arg)
{
    (void)w;
    bool crossed;
    int64_t n = abuse_count_local(c->local, identity, threshold, clock_wall_us() / 1000, &crossed);
    done(arg, n, crossed);
}

static void abuse_mem_top(struct abuse_counter *c, struct worker *w, int64_t window_ms, int n,
                          abuse_top_fn done, void *arg)
{
    (void)w;
    struct abuse_violator *v = sl_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    int got = abuse_tracker_top(c->local, window_ms, clock_wall_us() / 1000, v, n);
    done(arg, v, got, NULL);
    free(v);
}

static void abuse_mem_free(struct abuse_counter *c)
{
    abuse_tracker_free(c->local);
    free(c);
}

static const struct abuse_counter_ops abuse_mem_ops = {abuse_mem_record, abuse_mem_top,
                                                       abuse_mem_free};

struct abuse_counter *abuse_counter_mem_new(unsigned capacity, int64_t window_ms)
{
    struct abuse_counter *c = sl_calloc(1, sizeof *c);
    c->ops = &abuse_mem_ops;
    c->local = abuse_tracker_new(capacity, window_ms);
    return c;
}
