#include "guard/violations.h"

#include <pthread.h>

#include "util/mem.h"
#include "util/siphash.h"

/* Entries compared when one must go: enough to find an old one almost always. */
#define VIOL_EVICT_SAMPLE 5

struct viol_node {
    struct viol_node *next;
    uint64_t hash;
    struct viol_view v;
};

struct viol_table {
    pthread_mutex_t lock;
    struct viol_node **buckets;
    unsigned n_buckets; /* power of two */
    unsigned size, capacity;
    struct siphash_key key; /* random per process: clients cannot aim at one bucket */
    uint64_t rng;
};

static uint64_t viol_hash(const struct viol_table *t, const char *s)
{
    return siphash24(&t->key, s, strlen(s));
}

struct viol_table *viol_new(unsigned capacity)
{
    struct viol_table *t = sl_calloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->capacity = capacity ? capacity : 1;
    t->n_buckets = 16;
    while (t->n_buckets < t->capacity)
        t->n_buckets *= 2;
    t->buckets = sl_calloc(t->n_buckets, sizeof(*t->buckets));
    siphash_key_random(&t->key);
    t->rng = t->key.k0 | 1;
    return t;
}

void viol_free(struct viol_table *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->n_buckets; i++) {
        struct viol_node *n = t->buckets[i];
        while (n) {
            struct viol_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct viol_node *viol_find(struct viol_table *t, const char *identity, uint64_t h)
{
    for (struct viol_node *n = t->buckets[h & (t->n_buckets - 1)]; n; n = n->next)
        if (n->hash == h && strcmp(n->v.identity, identity) == 0)
            return n;
    return NULL;
}

static uint64_t viol_rand(struct viol_table *t)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return t->rng;
}

/* Drops the least recently seen of a few entries picked at random. */
static void viol_evict_one(struct viol_table *t)
{
    struct viol_node **victim = NULL;
    int seen = 0;
    for (unsigned tries = 0; seen < VIOL_EVICT_SAMPLE && tries < 4 * t->n_buckets; tries++) {
        struct viol_node **p = &t->buckets[viol_rand(t) & (t->n_buckets - 1)];
        for (; *p; p = &(*p)->next) {
            seen++;
            if (!victim || (*p)->v.last_us < (*victim)->v.last_us)
                victim = p;
        }
    }
    if (!victim)
        return;
    struct viol_node *n = *victim;
    *victim = n->next;
    free(n);
    t->size--;
}

void viol_record(struct viol_table *t, const char *identity, const char *route, int64_t now_us)
{
    uint64_t h = viol_hash(t, identity);
    pthread_mutex_lock(&t->lock);
    struct viol_node *n = viol_find(t, identity, h);
    if (!n) {
        if (t->size >= t->capacity)
            viol_evict_one(t);
        n = sl_calloc(1, sizeof(*n));
        n->hash = h;
        snprintf(n->v.identity, sizeof(n->v.identity), "%s", identity);
        n->v.first_us = now_us;
        struct viol_node **b = &t->buckets[h & (t->n_buckets - 1)];
        n->next = *b;
        *b = n;
        t->size++;
    }
    n->v.count++;
    n->v.last_us = now_us;
    snprintf(n->v.route, sizeof(n->v.route), "%s", route);
    pthread_mutex_unlock(&t->lock);
}

int viol_get(struct viol_table *t, const char *identity, struct viol_view *out)
{
    uint64_t h = viol_hash(t, identity);
    pthread_mutex_lock(&t->lock);
    struct viol_node *n = viol_find(t, identity, h);
    if (n)
        *out = n->v;
    pthread_mutex_unlock(&t->lock);
    return n ? 0 : -1;
}

int viol_top(struct viol_table *t, struct viol_view *out, int n)
{
    int k = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < t->n_buckets; i++) {
        for (struct viol_node *e = t->buckets[i]; e; e = e->next) {
            /* insertion into the sorted top-n */
            int pos = k < n ? k++ : n;
            while (pos > 0 && out[pos - 1].count < e->v.count) {
                if (pos < n)
                    out[pos] = out[pos - 1];
                pos--;
            }
            if (pos < n)
                out[pos] = e->v;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return k;
}

unsigned viol_size(struct viol_table *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = t->size;
    pthread_mutex_unlock(&t->lock);
    return n;
}
