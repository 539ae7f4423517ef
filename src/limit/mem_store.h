#ifndef SLUICE_MEM_STORE_H
#define SLUICE_MEM_STORE_H
/* The limiter's memory store: a hash table in shards (a power of two), each
 * with its own lock; keys hashed with SipHash under a random per-process key
 * (no hash flooding); entries expire lazily, by a periodic sweep, and when
 * the store is full the least recently used go first. Memory is bounded by
 * <max_entries> whatever the clients send. Thread-safe. */

#include <stddef.h>
#include <stdint.h>

#include "limit/limit.h"

struct lim_store;

/* One counter of a request: the limit and the key it is counted under
 * (e.g. "r:/api/:100/h|ip:203.0.113.7"). Keys of any length are accepted;
 * long ones are stored as a 128-bit digest. */
struct lim_op {
    const struct limit *limit;
    const char *key;
    size_t key_len;
    struct lim_decision decision; /* out */
};

/* <max_entries> >= 1; <n_shards> a power of two (0: chosen from the cores). */
struct lim_store *lim_store_new(uint64_t max_entries, unsigned n_shards);
void lim_store_free(struct lim_store *st);

/* Decide <n> ops of one request at <now_us> with weight <cost>, all or
 * nothing: every op gets its decision; the states change only when all
 * are allowed. Returns true when allowed. Shards are locked in ascending
 * order, so concurrent calls cannot deadlock. */
bool lim_store_apply(struct lim_store *st, struct lim_op *ops, int n, int64_t now_us,
                     uint32_t cost);

/* Starts loading the home slot of <op>'s key into the cache, without a lock
 * (it may race a growth of the table: a prefetch never faults). For a
 * caller that knows a key some work before it decides it; lim_store_apply
 * prefetches each key itself, just before it takes the locks. */
void lim_store_prefetch(const struct lim_store *st, const struct lim_op *op);

/* Give back concurrency slots of an allowed request (same ops, same cost). */
void lim_store_release(struct lim_store *st, struct lim_op *ops, int n, uint32_t cost);

/* Drop expired entries from up to <max_shards> shards, continuing where the
 * previous call stopped. Returns the number dropped. */
uint64_t lim_store_sweep(struct lim_store *st, int64_t now_us, unsigned max_shards);

struct lim_store_stats {
    uint64_t entries;
    uint64_t evictions; /* live entries dropped because the store was full */
    uint64_t bytes;     /* memory held by the table (entries, buckets) */
};
void lim_store_stats(struct lim_store *st, struct lim_store_stats *out);

#endif
