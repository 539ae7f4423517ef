#ifndef SLUICE_CACHE_STORE_H
#define SLUICE_CACHE_STORE_H
/* The response cache's memory (SPEC 4.4): sharded, each shard with its own
 * lock and LRU list; entries reference-counted, so a reader writing a hit
 * to a slow socket keeps it alive while a purge, a replacement or an
 * eviction removes it from the table; memory bounded by <max_bytes>
 * (entries' bytes as counted by cache_entry_size). Thread-safe. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/rules.h"

/* A stored response. Immutable once put: readers share it without locks. */
struct cache_entry {
    int refs;  /* atomic */
    char *key; /* the full key: method, url, vary values, identity */
    size_t key_len;
    char *url; /* "host/path?sorted-query": what purges by key, prefix and pattern match */
    size_t url_len;
    int status;
    char *head; /* stored response headers, "Name: value\r\n" lines, hop-by-hop removed */
    size_t head_len;
    char *body;
    size_t body_len;
    struct cache_times times; /* stored, fresh until, stale windows (wall clock) */
    char *etag;               /* NULL when none */
    int64_t last_modified;    /* Unix seconds, -1 when none */
    char **tags;              /* route tags + Cache-Tag / Surrogate-Key values */
    int n_tags;
};

/* A new entry holding one reference, with copies of everything given;
 * <tags> may be NULL with <n_tags> 0. */
struct cache_entry *cache_entry_new(const char *key, size_t key_len, const char *url,
                                    size_t url_len, int status, const char *head, size_t head_len,
                                    const char *body, size_t body_len, const char *etag,
                                    int64_t last_modified, const char *const *tags, int n_tags);
void cache_entry_ref(struct cache_entry *e);
/* Drops one reference; the last frees the entry. */
void cache_entry_unref(struct cache_entry *e);
/* Bytes charged to the budget for <e>: its allocations plus bookkeeping. */
size_t cache_entry_size(const struct cache_entry *e);

struct cache_store;

/* <n_shards> a power of two (0: chosen from the cores). */
struct cache_store *cache_store_new(uint64_t max_bytes, unsigned n_shards);
void cache_store_free(struct cache_store *st);

/* The entry under <key>, with a reference for the caller (unref when done),
 * marked most recently used; NULL when absent. Freshness is the caller's
 * business: the store returns stale entries too. */
struct cache_entry *cache_store_get(struct cache_store *st, const char *key, size_t len);
/* Store <e> under e->key, replacing any entry there; takes over the caller's
 * reference (an entry is put once: putting it again is a bug and aborts). Evicts least recently
 * used entries of the shard until the shard is within its share of max_bytes. An entry larger than
 * a shard's share is not stored (dropped). Returns whether it was stored. */
bool cache_store_put(struct cache_store *st, struct cache_entry *e);

/* Purges; each returns how many entries it removed. A glob longer than
 * CACHE_MAX_GLOB removes nothing (callers refuse it first). */
uint64_t cache_store_purge_url(struct cache_store *st, const char *url, size_t len);
uint64_t cache_store_purge_prefix(struct cache_store *st, const char *prefix, size_t len);
uint64_t cache_store_purge_pattern(struct cache_store *st, const char *glob);
uint64_t cache_store_purge_tag(struct cache_store *st, const char *tag);
uint64_t cache_store_purge_all(struct cache_store *st);

/* The Vary header names last seen for the responses of <primary> (a key
 * without vary values), so a lookup can build the full key; "" when none.
 * Bounded like entries (same shards, small). */
void cache_store_set_vary(struct cache_store *st, const char *primary, size_t len,
                          const char *names);
/* Copies the names into <out> (<cap> bytes); false when unknown, or when
 * <cap> cannot hold them (a cut list would build a wrong key). */
bool cache_store_get_vary(struct cache_store *st, const char *primary, size_t len, char *out,
                          size_t cap);

struct cache_store_stats {
    uint64_t entries, bytes, evictions;
};
void cache_store_stats(struct cache_store *st, struct cache_store_stats *out);

#endif
