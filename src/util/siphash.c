/* SipHash-2-4, written from section 2 of the paper: the state is four 64-bit
 * words initialised from the key and four constants ("somepseudorandomly
 * generatedbytes"); each 8-byte little-endian message word is absorbed with
 * two SipRounds (c = 2), the last word carries the length modulo 256 in its
 * top byte, and finalisation runs four SipRounds (d = 4). */

#include "util/siphash.h"

#include <errno.h>
#include <sys/random.h>

#include "util/mem.h"

#include <endian.h>

static inline uint64_t sip_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* Little-endian load regardless of host order and alignment. */
static inline uint64_t sip_load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = sip_rotl(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = sip_rotl(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = sip_rotl(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = sip_rotl(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = sip_rotl(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = sip_rotl(v2, 32);                                                                     \
    } while (0)

void siphash_key_from_bytes(struct siphash_key *k, const uint8_t bytes[16])
{
    k->k0 = sip_load64(bytes);
    k->k1 = sip_load64(bytes + 8);
}

uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t v0 = k->k0 ^ 0x736f6d6570736575ull;
    uint64_t v1 = k->k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k->k0 ^ 0x6c7967656e657261ull;
    uint64_t v3 = k->k1 ^ 0x7465646279746573ull;
    const uint8_t *end = in + (len & ~(size_t)7);

    for (; in != end; in += 8) {
        uint64_t m = sip_load64(in);
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }

    /* The final word: the 0..7 remaining bytes, zero padding, and the total
     * length modulo 256 in the most significant byte. */
    uint64_t b = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;

    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

void siphash_key_random(struct siphash_key *k)
{
    uint8_t bytes[16];
    size_t got = 0;
    while (got < sizeof(bytes)) {
        ssize_t r = getrandom(bytes + got, sizeof(bytes) - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            sl_fatal("sluice: getrandom failed: no secret key for a hash table\n");
        got += (size_t)r;
    }
    siphash_key_from_bytes(k, bytes);
}
