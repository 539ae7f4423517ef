/* The run-time access lists (access/runtime.h). */
#include "access/runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/store.h"
#include "util/clock.h"
#include "util/mem.h"

struct acl_runtime {
    /* The thread's own: only code running on <thread> touches them. */
    struct acl_store *store;
    struct acl_entry *entries;
    int n;
    uint64_t seen_ver;
    int64_t reloaded_ms;
    struct dbw *thread;
    /* What workers read: <cur> under <snap_lock>, held only to swap or
     * take a reference, never across I/O. */
    pthread_mutex_t snap_lock;
    struct acl_snap *cur;
    uint64_t gen; /* atomic: bumped with every publish */
};

static int64_t acl_now_ms(void)
{
    return clock_wall_us() / 1000;
}

void acl_snap_unref(struct acl_snap *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    acl_trie_free(s->allow);
    acl_trie_free(s->deny);
    free(s);
}

/* The entries' networks into <*t>, created on the first one; false when out
 * of memory. */
static bool acl_snap_add(struct acl_trie **t, const struct acl_entry *e)
{
    if (!*t && !(*t = acl_trie_new()))
        return false;
    return acl_trie_add(*t, &e->net, e->expires_ms ? e->expires_ms : ACL_FOREVER) == 0;
}

/* A new snapshot of rt->entries made current. Out of memory
 * keeps the old one. */
static void acl_rt_publish(struct acl_runtime *rt)
{
    struct acl_snap *s = sl_calloc(1, sizeof *s);
    s->refs = 1;
    for (int i = 0; i < rt->n; i++) {
        struct acl_entry *e = &rt->entries[i];
        int64_t until = e->expires_ms ? e->expires_ms : ACL_FOREVER;
        if (e->list == ACL_ALLOW && until > s->allow_until_ms)
            s->allow_until_ms = until;
        if (!acl_snap_add(e->list == ACL_ALLOW ? &s->allow : &s->deny, e)) {
            s->refs = 1;
            acl_snap_unref(s);
            return;
        }
    }
    pthread_mutex_lock(&rt->snap_lock);
    struct acl_snap *old = rt->cur;
    rt->cur = s;
    __atomic_add_fetch(&rt->gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&rt->snap_lock);
    acl_snap_unref(old);
}

/* Replaces the entries with the store's; false when it cannot
 * be read (the old entries stay). */
static bool acl_rt_reload(struct acl_runtime *rt, char *why, size_t cap)
{
    struct acl_entry *v;
    int n;
    if (acl_store_load(rt->store, &v, &n, why, cap) < 0)
        return false;
    free(rt->entries);
    rt->entries = v;
    rt->n = n;
    rt->reloaded_ms = acl_now_ms();
    acl_rt_publish(rt);
    return true;
}

void acl_rt_sync(struct acl_runtime *rt, struct acl_snap **snap, uint64_t *gen)
{
    uint64_t g = __atomic_load_n(&rt->gen, __ATOMIC_ACQUIRE);
    if (g == *gen && *snap)
        return;
    pthread_mutex_lock(&rt->snap_lock);
    struct acl_snap *s = rt->cur;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    *gen = __atomic_load_n(&rt->gen, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&rt->snap_lock);
    acl_snap_unref(*snap);
    *snap = s;
}

void acl_rt_submit(struct acl_runtime *rt, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                   void *arg)
{
    dbw_submit(rt->thread, loop, run, done, arg);
}

int acl_rt_add(struct acl_runtime *rt, struct acl_entry *e, char *why, size_t cap)
{
    if (rt->n >= ACL_RT_MAX) {
        snprintf(why, cap,
                 "there are %d run-time entries already, the most there may be: remove "
                 "some first (DELETE /access/{id}), or move long lists to the config file",
                 ACL_RT_MAX);
        return ACL_RT_FULL;
    }
    int rc = acl_store_add(rt->store, e, why, cap);
    if (rc == 0) {
        rt->entries = sl_realloc(rt->entries, (size_t)(rt->n + 1) * sizeof *rt->entries);
        rt->entries[rt->n++] = *e;
        acl_rt_publish(rt);
    }
    return rc;
}

/* Drops entry <id> from rt->entries; false when absent. */
static bool acl_rt_forget(struct acl_runtime *rt, int64_t id)
{
    for (int i = 0; i < rt->n; i++) {
        if (rt->entries[i].id == id) {
            rt->entries[i] = rt->entries[--rt->n];
            return true;
        }
    }
    return false;
}

int acl_rt_delete(struct acl_runtime *rt, int64_t id, char *why, size_t cap)
{
    int rc = acl_store_delete(rt->store, id, why, cap);
    /* Another gateway may have removed it from Redis already: what this
     * one holds goes too. */
    if (rc >= 0 && acl_rt_forget(rt, id)) {
        acl_rt_publish(rt);
        rc = 1;
    }
    return rc;
}

static int acl_entry_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct acl_entry *)a)->id, y = ((const struct acl_entry *)b)->id;
    return (x > y) - (x < y);
}

json_t *acl_rt_list(struct acl_runtime *rt, int64_t now_ms)
{
    qsort(rt->entries, (size_t)rt->n, sizeof *rt->entries, acl_entry_cmp);
    json_t *a = json_array();
    for (int i = 0; i < rt->n; i++)
        if (!acl_entry_expired(&rt->entries[i], now_ms))
            json_array_append_new(a, acl_entry_json(&rt->entries[i]));
    return a;
}

/* Removes the expired entries from the store. */
static void acl_rt_sweep(struct acl_runtime *rt, int64_t now_ms)
{
    char why[256];
    bool changed = false;
    for (int i = 0; i < rt->n;) {
        struct acl_entry *e = &rt->entries[i];
        if (!acl_entry_expired(e, now_ms)) {
            i++;
            continue;
        }
        if (acl_store_delete(rt->store, e->id, why, sizeof why) < 0)
            return; /* the store is away: next time */
        acl_rt_forget(rt, e->id);
        changed = true;
    }
    if (changed)
        acl_rt_publish(rt);
}

/* The thread's tick, every ACL_POLL_MS and after each admin call: reload
 * after a change elsewhere or when due, then sweep. */
static void acl_rt_tick(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct acl_runtime *rt = arg;
    char why[256];
    uint64_t ver;
    int64_t now = acl_now_ms();
    if (acl_store_version(rt->store, &ver) < 0)
        return;
    if (ver != rt->seen_ver || now - rt->reloaded_ms >= ACL_RELOAD_MS) {
        if (!acl_rt_reload(rt, why, sizeof why))
            return;
        rt->seen_ver = ver;
    }
    acl_rt_sweep(rt, now);
}

struct acl_runtime *acl_rt_open(const struct config *c, char **err)
{
    struct acl_store *store = acl_store_open(c, err);
    if (!store)
        return NULL;
    struct acl_runtime *rt = sl_calloc(1, sizeof *rt);
    pthread_mutex_init(&rt->snap_lock, NULL);
    rt->store = store;
    /* The version first: a change made while the entries load is then
     * seen by the next poll. */
    acl_store_version(rt->store, &rt->seen_ver);
    char why[256];
    if (!acl_rt_reload(rt, why, sizeof why)) {
        if (c->store.backend != CFG_BACKEND_REDIS) {
            if (asprintf(err, "%s", why) < 0)
                *err = NULL;
            acl_rt_close(rt);
            return NULL;
        }
        acl_rt_publish(rt); /* empty until Redis is back */
    }
    rt->thread = dbw_start(NULL, ACL_POLL_MS, acl_rt_tick, rt);
    return rt;
}

void acl_rt_close(struct acl_runtime *rt)
{
    if (!rt)
        return;
    dbw_stop(rt->thread);
    acl_snap_unref(rt->cur);
    acl_store_close(rt->store);
    free(rt->entries);
    pthread_mutex_destroy(&rt->snap_lock);
    free(rt);
}
