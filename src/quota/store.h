#ifndef SLUICE_QUOTA_STORE_H
#define SLUICE_QUOTA_STORE_H
/* The quota counts of this node (SPEC 6.2, embedded store; also the Redis
 * store's on_failure: local): identity -> struct quota_usage, in shards
 * behind their own locks. Unlike rate-limit counters these are never
 * evicted while their period lasts (a lost count is a free month): the
 * store holds at most <max_entries> identities, and one past that is
 * admitted uncounted (quota_store_stats' untracked) until the sweep drops
 * identities whose periods have all ended. Entries changed since the last
 * write-behind are marked dirty; quota_store_take_dirty hands them to the
 * writer. Thread-safe. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quota/decide.h"

#define QUOTA_IDENTITY_MAX 96 /* as struct identity's id */

struct quota_store;

/* One request's quota: what quota_request() builds, and the decision. */
struct quota_req {
    char identity[QUOTA_IDENTITY_MAX];
    struct quota_limits limits;
    struct quota_period day, month;
    int64_t cost;
    const int *thresholds;
    int n_thresholds;
    /* Out. <decided> false: the rest of the request (its rate limits) was
     * refused first, and the quota was neither asked nor charged. */
    bool decided;
    struct quota_decision decision;
    struct quota_usage usage; /* the counts after the decision */
};

/* One identity's counts, as written behind and loaded back. */
struct quota_row {
    char identity[QUOTA_IDENTITY_MAX];
    struct quota_usage usage;
};

struct quota_store *quota_store_new(uint64_t max_entries);
void quota_store_free(struct quota_store *st);

/* Decides <q> under its identity's lock. When the quota admits it,
 * <also>(<arg>) runs under that same lock and says whether the rest of the
 * request passed (the rate limits: lim_store_apply); only then is the
 * quota charged. So a request refused by either consumes neither, and
 * concurrent requests see each other's charges. <also> may be NULL (no
 * limits). Returns whether the request is admitted. */
bool quota_store_decide(struct quota_store *st, struct quota_req *q, bool (*also)(void *arg),
                        void *arg);

/* Sets <identity>'s counts (loading what was written behind). */
void quota_store_put(struct quota_store *st, const char *identity, const struct quota_usage *u);
/* <identity>'s counts into <out>: false when it has none. */
bool quota_store_get(struct quota_store *st, const char *identity, struct quota_usage *out);

/* The entries changed since the previous call, unmarked: a malloc'd array
 * (NULL when none) of *<n> rows, for the caller to write and free. */
struct quota_row *quota_store_take_dirty(struct quota_store *st, size_t *n);
/* Marks <rows> dirty again (their write failed), unless changed since. */
void quota_store_remark(struct quota_store *st, const struct quota_row *rows, size_t n);

/* Drops identities whose day began before <day_start> and month before
 * <month_start> (their counts are zero now) and that are not dirty. */
uint64_t quota_store_sweep(struct quota_store *st, int64_t day_start, int64_t month_start);

struct quota_store_stats {
    uint64_t entries;
    uint64_t bytes;     /* memory held by entries and tables */
    uint64_t untracked; /* requests admitted uncounted: the store was full */
};
void quota_store_stats(struct quota_store *st, struct quota_store_stats *out);

#endif
