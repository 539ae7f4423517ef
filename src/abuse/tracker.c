/* Sliding violation counts (abuse/tracker.h). */
#include "abuse/tracker.h"

#include <pthread.h>
#include <string.h>

#include "util/mem.h"
#include "util/siphash.h"
#include "util/str.h"

struct abuse_track {
    struct abuse_track *next;          /* hash chain */
    struct abuse_track *newer, *older; /* recency list: evict from the oldest end */
    uint64_t hash;
    int64_t head; /* the absolute slot of the latest violation */
    int64_t last_ms;
    uint16_t slots[ABUSE_SLOTS]; /* ring, by absolute slot % ABUSE_SLOTS; saturating */
    char identity[96];
};

struct abuse_tracker {
    pthread_mutex_t lock;
    struct abuse_track **buckets;
    unsigned n_buckets; /* power of two */
    unsigned size, capacity;
    int64_t window_ms, slot_ms;
    struct abuse_track *newest, *oldest;
    struct siphash_key key; /* random per process: clients cannot aim at one bucket */
};

struct abuse_tracker *abuse_tracker_new(unsigned capacity, int64_t window_ms)
{
    struct abuse_tracker *t = sl_calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->capacity = capacity ? capacity : 1;
    t->n_buckets = 16;
    while (t->n_buckets < t->capacity)
        t->n_buckets *= 2;
    t->buckets = sl_calloc(t->n_buckets, sizeof *t->buckets);
    t->window_ms = window_ms;
    t->slot_ms = window_ms / ABUSE_SLOTS > 0 ? window_ms / ABUSE_SLOTS : 1;
    siphash_key_random(&t->key);
    return t;
}

void abuse_tracker_free(struct abuse_tracker *t)
{
    if (!t)
        return;
    for (struct abuse_track *e = t->newest, *next; e; e = next) {
        next = e->older;
        free(e);
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int64_t abuse_tracker_window_ms(const struct abuse_tracker *t)
{
    return t->window_ms;
}

static uint64_t abuse_hash(const struct abuse_tracker *t, const char *s)
{
    return siphash24(&t->key, s, strlen(s));
}

static struct abuse_track **abuse_bucket(struct abuse_tracker *t, uint64_t h)
{
    return &t->buckets[h & (t->n_buckets - 1)];
}

static struct abuse_track *abuse_find(struct abuse_tracker *t, const char *identity, uint64_t h)
{
    for (struct abuse_track *e = *abuse_bucket(t, h); e; e = e->next)
        if (e->hash == h && strcmp(e->identity, identity) == 0)
            return e;
    return NULL;
}

static void abuse_unlink_recency(struct abuse_tracker *t, struct abuse_track *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void abuse_push_newest(struct abuse_tracker *t, struct abuse_track *e)
{
    e->older = t->newest;
    e->newer = NULL;
    if (t->newest)
        t->newest->newer = e;
    t->newest = e;
    if (!t->oldest)
        t->oldest = e;
}

static void abuse_evict_oldest(struct abuse_tracker *t)
{
    struct abuse_track *e = t->oldest;
    if (!e)
        return;
    abuse_unlink_recency(t, e);
    for (struct abuse_track **p = abuse_bucket(t, e->hash); *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    free(e);
    t->size--;
}

/* Moves <e>'s ring forward to absolute slot <s>, clearing the slots it
 * passes (at most the whole ring). */
static void abuse_advance(struct abuse_track *e, int64_t s)
{
    if (s <= e->head)
        return;
    int64_t from = s - e->head > ABUSE_SLOTS ? s - ABUSE_SLOTS + 1 : e->head + 1;
    for (int64_t i = from; i <= s; i++)
        e->slots[i % ABUSE_SLOTS] = 0;
    e->head = s;
}

/* <e>'s violations in the <k> slots ending with absolute slot <s>. */
static int64_t abuse_sum(const struct abuse_track *e, int64_t s, int64_t k)
{
    int64_t sum = 0;
    for (int64_t i = s - k + 1; i <= s; i++)
        if (i <= e->head && i > e->head - ABUSE_SLOTS)
            sum += e->slots[i % ABUSE_SLOTS];
    return sum;
}

/* How many slots make <window_ms> (rounded up; at most the ring). */
static int64_t abuse_slots_of(const struct abuse_tracker *t, int64_t window_ms)
{
    int64_t k = (window_ms + t->slot_ms - 1) / t->slot_ms;
    return k < 1 ? 1 : k > ABUSE_SLOTS ? ABUSE_SLOTS : k;
}

int64_t abuse_tracker_record(struct abuse_tracker *t, const char *identity, int64_t now_ms)
{
    uint64_t h = abuse_hash(t, identity);
    int64_t s = now_ms / t->slot_ms;
    pthread_mutex_lock(&t->lock);
    struct abuse_track *e = abuse_find(t, identity, h);
    if (e) {
        abuse_unlink_recency(t, e);
    } else {
        if (t->size >= t->capacity)
            abuse_evict_oldest(t);
        e = sl_calloc(1, sizeof *e);
        e->hash = h;
        e->head = s;
        str_copy(e->identity, sizeof e->identity, identity);
        struct abuse_track **b = abuse_bucket(t, h);
        e->next = *b;
        *b = e;
        t->size++;
    }
    abuse_push_newest(t, e);
    abuse_advance(e, s);
    /* A violation older than the ring's head (a clock step back) counts in
     * the newest slot. */
    uint16_t *slot = &e->slots[e->head % ABUSE_SLOTS];
    if (*slot < UINT16_MAX)
        (*slot)++;
    if (now_ms > e->last_ms)
        e->last_ms = now_ms;
    int64_t n = abuse_sum(e, s > e->head ? s : e->head, ABUSE_SLOTS);
    pthread_mutex_unlock(&t->lock);
    return n;
}

void abuse_tracker_reset(struct abuse_tracker *t, const char *identity)
{
    uint64_t h = abuse_hash(t, identity);
    pthread_mutex_lock(&t->lock);
    struct abuse_track *e = abuse_find(t, identity, h);
    if (e)
        memset(e->slots, 0, sizeof e->slots);
    pthread_mutex_unlock(&t->lock);
}

int64_t abuse_tracker_count(struct abuse_tracker *t, const char *identity, int64_t window_ms,
                            int64_t now_ms)
{
    uint64_t h = abuse_hash(t, identity);
    pthread_mutex_lock(&t->lock);
    struct abuse_track *e = abuse_find(t, identity, h);
    int64_t n = e ? abuse_sum(e, now_ms / t->slot_ms, abuse_slots_of(t, window_ms)) : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* Does <a> go before <b> in the top list? */
static int abuse_before(const struct abuse_violator *a, const struct abuse_violator *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    if (a->last_ms != b->last_ms)
        return a->last_ms > b->last_ms;
    return strcmp(a->identity, b->identity) < 0;
}

int abuse_tracker_top(struct abuse_tracker *t, int64_t window_ms, int64_t now_ms,
                      struct abuse_violator *out, int n)
{
    if (n <= 0)
        return 0;
    int64_t s = now_ms / t->slot_ms, k = abuse_slots_of(t, window_ms);
    int have = 0;
    pthread_mutex_lock(&t->lock);
    for (struct abuse_track *e = t->newest; e; e = e->older) {
        struct abuse_violator v;
        v.count = abuse_sum(e, s, k);
        if (v.count == 0)
            continue;
        v.last_ms = e->last_ms;
        str_copy(v.identity, sizeof v.identity, e->identity);
        /* Insertion into the sorted top <n>. */
        int pos = have < n ? have++ : n;
        while (pos > 0 && abuse_before(&v, &out[pos - 1])) {
            if (pos < n)
                out[pos] = out[pos - 1];
            pos--;
        }
        if (pos < n)
            out[pos] = v;
    }
    pthread_mutex_unlock(&t->lock);
    return have;
}

unsigned abuse_tracker_size(struct abuse_tracker *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = t->size;
    pthread_mutex_unlock(&t->lock);
    return n;
}
