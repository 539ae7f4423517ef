/* Microbenchmark of one rate-limit decision on the memory store (issue 3):
 * lim_store_apply with one sliding_window 100/h op under realistic keys,
 * 1 and 2 threads x 1 and 1,000,000 identities, and the memory held per
 * tracked identity after 1,000,000 have been inserted.
 * Goals: < 200 ns per decision single-threaded with 1M identities;
 * <= 128 bytes per identity. Build with -DCMAKE_BUILD_TYPE=Release.
 *
 * usage: limit_bench [decisions per thread per run, default 4000000] */

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limit/mem_store.h"

#define N_IDENTITIES 1000000
#define KEY_STRIDE 48 /* bytes per pre-generated key, NUL included */

struct keyset {
    char *bytes; /* N_IDENTITIES keys of up to KEY_STRIDE - 1 bytes */
    uint8_t *len;
};

struct run {
    struct lim_store *st;
    const struct limit *l;
    const struct keyset *keys;
    uint32_t n_ids;
    uint64_t n_ops;
    uint64_t seed;
    pthread_barrier_t *start;
    int64_t now0;
    int early; /* prefetch the slot of the next call's key before this decision */
    /* out */
    double ns;     /* wall time */
    double cpu_ns; /* this thread's CPU time: excludes time preempted by others */
    uint64_t allowed;
};

static double mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* "r:/api/market/:100/h|ip:10.a.b.c" for identity <i>, as the limit stage
 * builds them (route, limit, client address). */
static void keys_make(struct keyset *k)
{
    k->bytes = malloc((size_t)N_IDENTITIES * KEY_STRIDE);
    k->len = malloc(N_IDENTITIES);
    if (!k->bytes || !k->len) {
        fputs("limit_bench: out of memory\n", stderr);
        exit(1);
    }
    for (uint32_t i = 0; i < N_IDENTITIES; i++) {
        int n = snprintf(k->bytes + (size_t)i * KEY_STRIDE, KEY_STRIDE,
                         "r:/api/market/:100/h|ip:10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255,
                         i & 255);
        k->len[i] = (uint8_t)n;
    }
}

/* The identity of each call comes from a PRNG; the key bytes are
 * prefetched LOOKAHEAD calls ahead, because in the gateway the key was just
 * built in the request's arena and is in cache: a miss on the bench's own
 * 48 MB key array is not part of a decision's cost. */
#define LOOKAHEAD 8

static void *run_thread(void *arg)
{
    struct run *r = arg;
    uint64_t seed = r->seed, allowed = 0;
    uint32_t ring[LOOKAHEAD];
    struct lim_op op = {.limit = r->l};

    for (int k = 0; k < LOOKAHEAD; k++)
        ring[k] = r->n_ids == 1 ? 0 : (uint32_t)(xorshift(&seed) % r->n_ids);
    pthread_barrier_wait(r->start);
    double t0 = mono_ns(), c0 = thread_cpu_ns();
    for (uint64_t i = 0; i < r->n_ops; i++) {
        uint32_t id = ring[i % LOOKAHEAD];
        uint32_t ahead = r->n_ids == 1 ? 0 : (uint32_t)(xorshift(&seed) % r->n_ids);
        ring[i % LOOKAHEAD] = ahead;
        __builtin_prefetch(r->keys->bytes + (size_t)ahead * KEY_STRIDE);
        __builtin_prefetch(&r->keys->len[ahead]);
        if (r->early) {
            /* The next call's key, known one decision early: what
             * prefetching in the gateway as soon as the identity is known
             * (several stages before the limit stage) would give. */
            uint32_t next = ring[(i + 1) % LOOKAHEAD];
            struct lim_op ahead_op = {.limit = r->l,
                                      .key = r->keys->bytes + (size_t)next * KEY_STRIDE,
                                      .key_len = r->keys->len[next]};
            lim_store_prefetch(r->st, &ahead_op);
        }
        op.key = r->keys->bytes + (size_t)id * KEY_STRIDE;
        op.key_len = r->keys->len[id];
        /* An injected clock, 1 us per decision: the gateway reads the clock
         * once per request anyway, and this keeps the windows turning. */
        allowed += lim_store_apply(r->st, &op, 1, r->now0 + (int64_t)i, 1);
    }
    r->ns = mono_ns() - t0;
    r->cpu_ns = thread_cpu_ns() - c0;
    r->allowed = allowed;
    return NULL;
}

/* Inserts identities [0, n) once each; returns ns per insertion. */
static double fill(struct lim_store *st, const struct limit *l, const struct keyset *keys,
                   uint32_t n, int64_t now)
{
    struct lim_op op = {.limit = l};
    double t0 = mono_ns();
    for (uint32_t i = 0; i < n; i++) {
        op.key = keys->bytes + (size_t)i * KEY_STRIDE;
        op.key_len = keys->len[i];
        lim_store_apply(st, &op, 1, now, 1);
    }
    return (mono_ns() - t0) / n;
}

static void scenario(const struct limit *l, const struct keyset *keys, int threads, uint32_t n_ids,
                     uint64_t n_ops, int64_t now0, int early)
{
    struct lim_store *st = lim_store_new(N_IDENTITIES, 0);
    fill(st, l, keys, n_ids, now0 - 1);

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    struct run r[2];
    pthread_t tid[2];
    for (int t = 0; t < threads; t++) {
        r[t] = (struct run){.st = st,
                            .l = l,
                            .keys = keys,
                            .n_ids = n_ids,
                            .n_ops = n_ops,
                            .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1),
                            .start = &start,
                            .now0 = now0,
                            .early = early};
        pthread_create(&tid[t], NULL, run_thread, &r[t]);
    }
    double worst = 0, cpu = 0;
    uint64_t allowed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (r[t].ns > worst)
            worst = r[t].ns;
        cpu += r[t].cpu_ns;
        allowed += r[t].allowed;
    }
    pthread_barrier_destroy(&start);

    uint64_t total = n_ops * (uint64_t)threads;
    printf("%7d  %10" PRIu32 "  %5s  %11.1f  %10.1f  %12.2f  %7.1f%%\n", threads, n_ids,
           early ? "yes" : "no", worst / (double)n_ops, cpu / (double)total,
           (double)total / worst * 1e3, 100.0 * (double)allowed / (double)total);
    lim_store_free(st);
}

int main(int argc, char **argv)
{
    uint64_t n_ops = 4000000;
    if (argc > 1) {
        char *end;
        n_ops = strtoull(argv[1], &end, 10);
        if (*end || n_ops == 0) {
            fprintf(stderr, "usage: %s [decisions per thread per run]\n", argv[0]);
            return 2;
        }
    }

    struct limit l;
    memset(&l, 0, sizeof(l));
    l.algorithm = LIM_SLIDING_WINDOW;
    l.count = 100;
    l.window_us = 3600 * INT64_C(1000000);
    snprintf(l.text, sizeof(l.text), "100/h");

    struct keyset keys;
    keys_make(&keys);
    /* A wall-clock-like start, so that window arithmetic is realistic. */
    const int64_t now0 = INT64_C(1700000000) * 1000000;

    printf("lim_store_apply, one sliding_window 100/h op, keys like \"%.*s\"\n", keys.len[0],
           keys.bytes);
    printf("%" PRIu64 " decisions per thread per run; random identity per call\n\n", n_ops);
    printf("threads  identities  early  ns/dec wall  ns/dec cpu  Mdec/s (all)  allowed\n");
    scenario(&l, &keys, 1, 1, n_ops, now0, 0);
    scenario(&l, &keys, 1, N_IDENTITIES, n_ops, now0, 0);
    scenario(&l, &keys, 2, 1, n_ops, now0, 0);
    scenario(&l, &keys, 2, N_IDENTITIES, n_ops, now0, 0);
    /* Issue 16: the slot prefetched one decision early (see run_thread). */
    scenario(&l, &keys, 1, N_IDENTITIES, n_ops, now0, 1);
    scenario(&l, &keys, 1, N_IDENTITIES, n_ops, now0, 0);
    scenario(&l, &keys, 1, N_IDENTITIES, n_ops, now0, 1);
    printf("wall: the slowest thread's elapsed time / its decisions; cpu: the threads'\n"
           "CPU time / their decisions (excludes time other processes held the core);\n"
           "early: the next decision's slot prefetched before this one (hashing its key\n"
           "once more), as a prefetch at the identity stage would\n\n");

    /* Memory: 1,000,000 distinct identities into a store bounded at
     * 1,000,000 (the default limits.max_entries). */
    struct lim_store *st = lim_store_new(N_IDENTITIES, 0);
    double ins = fill(st, &l, &keys, N_IDENTITIES, now0);
    struct lim_store_stats s;
    lim_store_stats(st, &s);
    printf("insert 1,000,000 identities: %.1f ns each\n", ins);
    printf("entries %" PRIu64 ", evictions %" PRIu64 ", bytes %" PRIu64 "\n", s.entries,
           s.evictions, s.bytes);
    printf("bytes per tracked identity: %.1f (per identity inserted: %.1f)\n",
           (double)s.bytes / (double)s.entries, (double)s.bytes / N_IDENTITIES);
    lim_store_free(st);

    free(keys.bytes);
    free(keys.len);
    return 0;
}
