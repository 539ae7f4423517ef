/* The bans of a gateway (abuse/runtime.h). */
#include "abuse/runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/mem.h"

/* Compare-and-set rounds before a ban gives up: each lost round means
 * another gateway changed the same identity's record in between. */
#define ABUSE_CAS_TRIES 4

struct abuse_snap {
    int refs; /* atomic */
    struct siphash_key key;
    struct abuse_ban *bans; /* the active ones when it was made */
    int n;
    int32_t *index; /* open addressing: positions in <bans>, -1 empty */
    unsigned mask;
};

struct abuse_runtime {
    /* The thread's own: only code running on <thread> touches them. */
    struct abuse_store *store;
    struct abuse_ban *recs;
    int n;
    uint64_t seen_ver;
    int64_t reloaded_ms, swept_ms;
    struct dbw *thread;
    int64_t forget_ms; /* atomic: set on reload */
    struct siphash_key key;
    /* What workers read: <cur> under <snap_lock>, held only to swap or
     * take a reference, never across I/O. */
    pthread_mutex_t snap_lock;
    struct abuse_snap *cur;
    uint64_t gen; /* atomic: bumped with every publish */
};

static int64_t abuse_now_ms(void)
{
    return clock_wall_us() / 1000;
}

/* ---- snapshots ----------------------------------------------------------- */

void abuse_snap_unref(struct abuse_snap *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(s->bans);
    free(s->index);
    free(s);
}

const struct abuse_ban *abuse_snap_find(const struct abuse_snap *s, const char *identity,
                                        int64_t now_ms)
{
    if (!s || s->n == 0)
        return NULL;
    uint64_t h = siphash24(&s->key, identity, strlen(identity));
    for (unsigned i = (unsigned)h & s->mask;; i = (i + 1) & s->mask) {
        int32_t p = s->index[i];
        if (p < 0)
            return NULL;
        if (strcmp(s->bans[p].identity, identity) == 0)
            return abuse_ban_active(&s->bans[p], now_ms) ? &s->bans[p] : NULL;
    }
}

bool abuse_snap_empty(const struct abuse_snap *s)
{
    return !s || s->n == 0;
}

int abuse_snap_active(const struct abuse_snap *s, int64_t now_ms)
{
    int n = 0;
    for (int i = 0; s && i < s->n; i++)
        n += abuse_ban_active(&s->bans[i], now_ms);
    return n;
}

/* A new snapshot of the records active at <now_ms> made current. */
static void abuse_rt_publish(struct abuse_runtime *rt, int64_t now_ms)
{
    struct abuse_snap *s = sl_calloc(1, sizeof *s);
    s->refs = 1;
    s->key = rt->key;
    s->bans = sl_malloc((size_t)(rt->n ? rt->n : 1) * sizeof *s->bans);
    for (int i = 0; i < rt->n; i++)
        if (abuse_ban_active(&rt->recs[i], now_ms))
            s->bans[s->n++] = rt->recs[i];
    unsigned size = 16;
    while (size < 2u * (unsigned)s->n)
        size *= 2;
    s->mask = size - 1;
    s->index = sl_malloc(size * sizeof *s->index);
    memset(s->index, 0xff, size * sizeof *s->index);
    for (int p = 0; p < s->n; p++) {
        const char *id = s->bans[p].identity;
        unsigned i = (unsigned)siphash24(&s->key, id, strlen(id)) & s->mask;
        while (s->index[i] >= 0)
            i = (i + 1) & s->mask;
        s->index[i] = p;
    }
    pthread_mutex_lock(&rt->snap_lock);
    struct abuse_snap *old = rt->cur;
    rt->cur = s;
    __atomic_add_fetch(&rt->gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&rt->snap_lock);
    abuse_snap_unref(old);
}

void abuse_rt_sync(struct abuse_runtime *rt, struct abuse_snap **snap, uint64_t *gen)
{
    uint64_t g = __atomic_load_n(&rt->gen, __ATOMIC_ACQUIRE);
    if (g == *gen && *snap)
        return;
    pthread_mutex_lock(&rt->snap_lock);
    struct abuse_snap *s = rt->cur;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    *gen = __atomic_load_n(&rt->gen, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&rt->snap_lock);
    abuse_snap_unref(*snap);
    *snap = s;
}

/* ---- records ----------------------------------------------------------------- */

/* Replaces the records with the store's; false when it cannot be read
 * (the old records stay). */
static bool abuse_rt_reload(struct abuse_runtime *rt, char *why, size_t cap)
{
    struct abuse_ban *v;
    int n;
    if (rt->store->ops->load(rt->store, &v, &n, why, cap) < 0)
        return false;
    free(rt->recs);
    rt->recs = v;
    rt->n = n;
    rt->reloaded_ms = abuse_now_ms();
    abuse_rt_publish(rt, rt->reloaded_ms);
    return true;
}

static int abuse_rt_find(const struct abuse_runtime *rt, const char *identity)
{
    for (int i = 0; i < rt->n; i++)
        if (strcmp(rt->recs[i].identity, identity) == 0)
            return i;
    return -1;
}

/* <b> in place of the record of its identity, or added. */
static void abuse_rt_keep(struct abuse_runtime *rt, const struct abuse_ban *b)
{
    int i = abuse_rt_find(rt, b->identity);
    if (i < 0) {
        rt->recs = sl_realloc(rt->recs, (size_t)(rt->n + 1) * sizeof *rt->recs);
        i = rt->n++;
    }
    rt->recs[i] = *b;
}

static void abuse_rt_forget(struct abuse_runtime *rt, const char *identity)
{
    int i = abuse_rt_find(rt, identity);
    if (i >= 0)
        rt->recs[i] = rt->recs[--rt->n];
}

int abuse_rt_ban(struct abuse_runtime *rt, enum abuse_source src, const char *identity,
                 const char *reason, int64_t duration_ms, const struct abuse_policy *p,
                 int64_t now_ms, struct abuse_ban *out, char *why, size_t cap)
{
    const struct abuse_store_ops *ops = rt->store->ops;
    for (int tries = 0; tries < ABUSE_CAS_TRIES; tries++) {
        struct abuse_ban prev;
        int found = ops->get(rt->store, identity, &prev, why, cap);
        if (found < 0)
            return -1;
        if (!found && rt->n >= ABUSE_RT_MAX) {
            snprintf(why, cap,
                     "there are %d ban records already, the most there may be: wait for old "
                     "ones to be forgotten, or use an access list",
                     ABUSE_RT_MAX);
            return ABUSE_RT_FULL;
        }
        if (!abuse_ban_next(found ? &prev : NULL, p, src, identity, reason, duration_ms, now_ms,
                            out)) {
            *out = prev;
            return 0;
        }
        int rc = ops->put(rt->store, out, found ? &prev : NULL, why, cap);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            abuse_rt_keep(rt, out);
            abuse_rt_publish(rt, now_ms);
            return 1;
        }
    }
    snprintf(why, cap, "the ban of %s kept changing under this gateway: try again", identity);
    return -1;
}

int abuse_rt_unban(struct abuse_runtime *rt, const char *identity, int64_t now_ms,
                   struct abuse_ban *out, char *why, size_t cap)
{
    const struct abuse_store_ops *ops = rt->store->ops;
    for (int tries = 0; tries < ABUSE_CAS_TRIES; tries++) {
        struct abuse_ban prev;
        int found = ops->get(rt->store, identity, &prev, why, cap);
        if (found < 0)
            return -1;
        if (!found || !abuse_ban_active(&prev, now_ms)) {
            /* Another gateway may have ended it already: what this one
             * holds goes too. */
            if (found)
                abuse_rt_keep(rt, &prev);
            abuse_rt_publish(rt, now_ms);
            return 0;
        }
        *out = prev;
        out->until_ms = now_ms;
        int rc = ops->put(rt->store, out, &prev, why, cap);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            abuse_rt_keep(rt, out);
            abuse_rt_publish(rt, now_ms);
            return 1;
        }
    }
    snprintf(why, cap, "the ban of %s kept changing under this gateway: try again", identity);
    return -1;
}

static int abuse_newest_first(const void *a, const void *b)
{
    const struct abuse_ban *x = a, *y = b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? 1 : -1;
    return strcmp(x->identity, y->identity);
}

json_t *abuse_rt_list(struct abuse_runtime *rt, int64_t now_ms)
{
    qsort(rt->recs, (size_t)rt->n, sizeof *rt->recs, abuse_newest_first);
    json_t *a = json_array();
    for (int i = 0; i < rt->n; i++)
        if (abuse_ban_active(&rt->recs[i], now_ms))
            json_array_append_new(a, abuse_ban_json(&rt->recs[i], now_ms));
    return a;
}

/* Removes the records no longer remembered from the store. */
static void abuse_rt_sweep(struct abuse_runtime *rt, int64_t now_ms)
{
    struct abuse_policy p = {.forget_ms = __atomic_load_n(&rt->forget_ms, __ATOMIC_RELAXED)};
    char why[256];
    bool changed = false;
    for (int i = 0; i < rt->n;) {
        struct abuse_ban b = rt->recs[i];
        if (abuse_ban_remembered(&b, &p, now_ms)) {
            i++;
            continue;
        }
        if (rt->store->ops->del(rt->store, &b, why, sizeof why) < 0)
            return; /* the store is away: next time */
        abuse_rt_forget(rt, b.identity);
        changed = true;
    }
    if (changed)
        abuse_rt_publish(rt, now_ms);
}

/* The thread's tick, every ABUSE_POLL_MS and after each batch of calls:
 * reload after a change elsewhere or when due, then sweep when due. */
static void abuse_rt_tick(struct ks_db *unused, void *arg)
{
    (void)unused;
    struct abuse_runtime *rt = arg;
    char why[256];
    uint64_t ver;
    int64_t now = abuse_now_ms();
    if (rt->store->ops->version(rt->store, &ver) < 0)
        return;
    if (ver != rt->seen_ver || now - rt->reloaded_ms >= ABUSE_RELOAD_MS) {
        if (!abuse_rt_reload(rt, why, sizeof why))
            return;
        rt->seen_ver = ver;
    }
    if (now - rt->swept_ms >= ABUSE_SWEEP_MS) {
        rt->swept_ms = now;
        abuse_rt_sweep(rt, now);
    }
}

void abuse_rt_set_forget(struct abuse_runtime *rt, int64_t forget_ms)
{
    __atomic_store_n(&rt->forget_ms, forget_ms, __ATOMIC_RELAXED);
}

struct abuse_runtime *abuse_rt_open(const struct config *c, int64_t forget_ms, char **err)
{
    struct abuse_store *store = abuse_store_open(c, err);
    if (!store)
        return NULL;
    struct abuse_runtime *rt = sl_calloc(1, sizeof *rt);
    pthread_mutex_init(&rt->snap_lock, NULL);
    rt->store = store;
    rt->forget_ms = forget_ms;
    siphash_key_random(&rt->key);
    /* The version first: a change made while the records load is then
     * seen by the next poll. */
    store->ops->version(store, &rt->seen_ver);
    char why[256];
    if (!abuse_rt_reload(rt, why, sizeof why)) {
        if (c->store.backend != CFG_BACKEND_REDIS) {
            if (asprintf(err, "%s", why) < 0)
                *err = NULL;
            abuse_rt_close(rt);
            return NULL;
        }
        abuse_rt_publish(rt, abuse_now_ms()); /* empty until Redis is back */
    }
    rt->thread = dbw_start(NULL, ABUSE_POLL_MS, abuse_rt_tick, rt);
    return rt;
}

void abuse_rt_close(struct abuse_runtime *rt)
{
    if (!rt)
        return;
    if (rt->thread)
        dbw_stop(rt->thread);
    abuse_snap_unref(rt->cur);
    rt->store->ops->close(rt->store);
    free(rt->recs);
    pthread_mutex_destroy(&rt->snap_lock);
    free(rt);
}

void abuse_rt_submit(struct abuse_runtime *rt, uv_loop_t *loop, dbw_run_fn run, dbw_done_fn done,
                     void *arg)
{
    dbw_submit(rt->thread, loop, run, done, arg);
}

void abuse_rt_post(struct abuse_runtime *rt, dbw_run_fn run, void *arg)
{
    dbw_post(rt->thread, run, arg);
}
