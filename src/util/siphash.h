#ifndef SLUICE_SIPHASH_H
#define SLUICE_SIPHASH_H
/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): a keyed 64-bit hash. With a secret random key, clients cannot
 * choose inputs that collide in our hash tables (hash flooding). */

#include <stddef.h>
#include <stdint.h>

/* The 128-bit key as the two little-endian words k0, k1 of the paper. */
struct siphash_key {
    uint64_t k0;
    uint64_t k1;
};

/* Key from its 16-byte form (bytes 0..7 are k0, little-endian). */
void siphash_key_from_bytes(struct siphash_key *k, const uint8_t bytes[16]);

/* A fresh secret key from the kernel's RNG. Aborts when there is none:
 * without a secret key a hash table is open to hash flooding. */
void siphash_key_random(struct siphash_key *k);

/* SipHash-2-4 of the <len> bytes at <data> under key <k>. */
uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len);

#endif
