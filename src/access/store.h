#ifndef SLUICE_ACCESS_STORE_H
#define SLUICE_ACCESS_STORE_H
/* Where run-time access-list entries are kept (SPEC 7.1: persisted):
 * with store.backend memory, a table of its own in <data_dir>/sluice.db;
 * with redis, a hash the fleet shares. One connection, blocking: the
 * caller (access/runtime.c) serialises calls under its lock. */

#include <stddef.h>
#include <stdint.h>

#include "access/entry.h"
#include "conf/conf.h"

struct acl_store;

/* The store <c> names; NULL with *<err> (malloc'd). Redis is connected
 * lazily, so a fleet starts while Redis is away. */
struct acl_store *acl_store_open(const struct config *c, char **err);
void acl_store_close(struct acl_store *s);

/* Every entry, expired ones included: *<out> (malloc'd) and *<n>. 0, or -1
 * with <why> filled. */
int acl_store_load(struct acl_store *s, struct acl_entry **out, int *n, char *why, size_t cap);
/* Stores <e>, setting e->id. 0 or -1 with <why>. */
int acl_store_add(struct acl_store *s, struct acl_entry *e, char *why, size_t cap);
/* 1 removed, 0 no such entry, -1 with <why>. */
int acl_store_delete(struct acl_store *s, int64_t id, char *why, size_t cap);
/* A number that changes whenever any gateway changed the entries (Redis),
 * so a poll reads the whole list only after a change. 0 or -1. */
int acl_store_version(struct acl_store *s, uint64_t *v);

#endif
