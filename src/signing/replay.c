/* The in-memory replay cache of request signing (signing/sig.h): sharded by
 * the hash of (key, nonce) so that workers rarely meet on a lock; each shard
 * keeps two generations of open-addressed tables that grow by doubling up
 * to their bound and are dropped whole when they age out. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "signing/sig.h"
#include "util/limits.h"
#include "util/mem.h"
#include "util/siphash.h"

#define SIG_SHARDS 16
#define SIG_SLOTS_FIRST 256
/* Per shard and generation: at half load, SIG_REPLAY_MAX nonces over all shards. */
#define SIG_NONCE_SLOTS_MAX (2 * SIG_REPLAY_MAX / SIG_SHARDS)
#define SIG_PER_KEY_SHARD (SIG_REPLAY_PER_KEY / SIG_SHARDS)
/* A key's nonces spread over every shard: each shard may meet every key. */
#define SIG_KEY_SLOTS_MAX (2 * SIG_REPLAY_KEYS)

/* A set of 64-bit hashes (0: an empty slot). */
struct sig_set {
    uint64_t *slots;
    uint32_t cap, n;
};

/* Nonces remembered per key, by the key's hash. */
struct sig_key_count {
    uint64_t key; /* 0: empty */
    uint32_t n;
};
struct sig_keys {
    struct sig_key_count *slots;
    uint32_t cap, n;
};

struct sig_gen {
    struct sig_set nonces;
    struct sig_keys keys;
};

struct sig_shard {
    pthread_mutex_t lock;
    struct sig_gen gen[2];
    int cur;           /* gen[cur] takes new nonces; the other is the previous */
    int64_t start_us;  /* when gen[cur] began; 0: not yet */
    int64_t window_us; /* the longest window asked for */
};

struct sig_replay {
    struct siphash_key hk;
    struct sig_shard shards[SIG_SHARDS];
};

struct sig_replay *sig_replay_new(void)
{
    struct sig_replay *r = sl_calloc(1, sizeof(*r));
    siphash_key_random(&r->hk);
    for (int i = 0; i < SIG_SHARDS; i++)
        pthread_mutex_init(&r->shards[i].lock, NULL);
    return r;
}

static void sig_gen_clear(struct sig_gen *g)
{
    free(g->nonces.slots);
    free(g->keys.slots);
    memset(g, 0, sizeof(*g));
}

void sig_replay_free(struct sig_replay *r)
{
    if (!r)
        return;
    for (int i = 0; i < SIG_SHARDS; i++) {
        sig_gen_clear(&r->shards[i].gen[0]);
        sig_gen_clear(&r->shards[i].gen[1]);
        pthread_mutex_destroy(&r->shards[i].lock);
    }
    free(r);
}

static bool sig_set_has(const struct sig_set *s, uint64_t h)
{
    if (!s->cap)
        return false;
    for (uint32_t i = (uint32_t)h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == h)
            return true;
        if (!s->slots[i])
            return false;
    }
}

static void sig_set_put(struct sig_set *s, uint64_t h)
{
    uint32_t i = (uint32_t)h & (s->cap - 1);
    while (s->slots[i])
        i = (i + 1) & (s->cap - 1);
    s->slots[i] = h;
    s->n++;
}

/* Room for one more at half load, growing up to <max> slots; false: full. */
static bool sig_set_room(struct sig_set *s, uint32_t max)
{
    if ((s->n + 1) * 2 <= s->cap)
        return true;
    uint32_t cap = s->cap ? s->cap * 2 : SIG_SLOTS_FIRST;
    if (cap > max)
        return false;
    struct sig_set grown = {sl_calloc(cap, sizeof(uint64_t)), cap, 0};
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            sig_set_put(&grown, s->slots[i]);
    free(s->slots);
    *s = grown;
    return true;
}

/* The counter of key <h>; with <add>, made when missing (NULL: no room). */
static struct sig_key_count *sig_keys_find(struct sig_keys *k, uint64_t h, bool add)
{
    if (k->cap) {
        for (uint32_t i = (uint32_t)h & (k->cap - 1);; i = (i + 1) & (k->cap - 1)) {
            if (k->slots[i].key == h)
                return &k->slots[i];
            if (!k->slots[i].key)
                break;
        }
    }
    if (!add)
        return NULL;
    if ((k->n + 1) * 2 > k->cap) {
        uint32_t cap = k->cap ? k->cap * 2 : SIG_SLOTS_FIRST;
        if (cap > SIG_KEY_SLOTS_MAX)
            return NULL;
        struct sig_keys grown = {sl_calloc(cap, sizeof(*grown.slots)), cap, k->n};
        for (uint32_t i = 0; i < k->cap; i++) {
            if (!k->slots[i].key)
                continue;
            uint32_t j = (uint32_t)k->slots[i].key & (cap - 1);
            while (grown.slots[j].key)
                j = (j + 1) & (cap - 1);
            grown.slots[j] = k->slots[i];
        }
        free(k->slots);
        *k = grown;
    }
    uint32_t i = (uint32_t)h & (k->cap - 1);
    while (k->slots[i].key)
        i = (i + 1) & (k->cap - 1);
    k->slots[i].key = h;
    k->n++;
    return &k->slots[i];
}

static uint32_t sig_keys_count(struct sig_keys *k, uint64_t h)
{
    const struct sig_key_count *c = sig_keys_find(k, h, false);
    return c ? c->n : 0;
}

/* Ages shard <s> to <now_us>: a generation older than the window is
 * dropped, so each nonce is kept at least one window after it was seen. */
static void sig_shard_age(struct sig_shard *s, int64_t now_us, int64_t window_us)
{
    if (window_us > s->window_us)
        s->window_us = window_us;
    if (!s->start_us) {
        s->start_us = now_us;
        return;
    }
    int64_t age = now_us - s->start_us;
    if (age < s->window_us)
        return;
    int prev = 1 - s->cur;
    sig_gen_clear(&s->gen[prev]);
    if (age >= 2 * s->window_us)
        sig_gen_clear(&s->gen[s->cur]); /* nothing in it is young enough to keep */
    else
        s->cur = prev; /* the current becomes the previous; the emptied one takes new nonces */
    s->start_us = now_us;
}

static uint64_t sig_nonzero(uint64_t h)
{
    return h ? h : 1;
}

enum sig_replay_result sig_replay_check(struct sig_replay *r, const char *key_id, size_t key_len,
                                        const char *nonce, size_t nonce_len, int64_t now_us,
                                        int64_t window_us)
{
    char buf[SIG_KEY_ID_MAX + 1 + SIG_NONCE_MAX];
    if (key_len > SIG_KEY_ID_MAX || nonce_len > SIG_NONCE_MAX)
        return SIG_REPLAY_FULL; /* sig_parse rules these out */
    memcpy(buf, key_id, key_len);
    buf[key_len] = '\0';
    memcpy(buf + key_len + 1, nonce, nonce_len);
    uint64_t h = sig_nonzero(siphash24(&r->hk, buf, key_len + 1 + nonce_len));
    uint64_t kh = sig_nonzero(siphash24(&r->hk, buf, key_len)); /* no NUL: another domain */
    struct sig_shard *s = &r->shards[(h >> 56) % SIG_SHARDS];

    pthread_mutex_lock(&s->lock);
    sig_shard_age(s, now_us, window_us);
    struct sig_gen *cur = &s->gen[s->cur], *prev = &s->gen[1 - s->cur];
    enum sig_replay_result res = SIG_REPLAY_NEW;
    if (sig_set_has(&cur->nonces, h) || sig_set_has(&prev->nonces, h)) {
        res = SIG_REPLAY_SEEN;
    } else if (sig_keys_count(&cur->keys, kh) + sig_keys_count(&prev->keys, kh) >=
               SIG_PER_KEY_SHARD) {
        res = SIG_REPLAY_FULL;
    } else {
        struct sig_key_count *kc = sig_keys_find(&cur->keys, kh, true);
        if (!kc || !sig_set_room(&cur->nonces, SIG_NONCE_SLOTS_MAX)) {
            res = SIG_REPLAY_FULL;
        } else {
            sig_set_put(&cur->nonces, h);
            kc->n++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return res;
}
