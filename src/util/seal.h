#ifndef SLUICE_SEAL_H
#define SLUICE_SEAL_H
/* Secrets the gateway must read back (a key's signing secret), stored
 * sealed with AES-256-GCM under store.encryption_key: a fresh random 96-bit
 * nonce per seal, the 128-bit tag checked on open, and a label (the key id)
 * bound as additional data, so a sealed value copied onto another key's
 * record does not open. The stored text is
 *   "v1:" hex(nonce 12 bytes || ciphertext || tag 16 bytes)
 * so a later format can be told apart. A process opens with the key it was
 * given; nothing here keeps key material. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
/* The largest secret sealed here: a signing secret is 32 bytes. */
#define SEAL_PLAIN_MAX 32
/* The text of a sealed SEAL_PLAIN_MAX-byte secret, with its NUL. */
#define SEAL_TEXT_MAX (3 + 2 * (SEAL_NONCE_LEN + SEAL_PLAIN_MAX + SEAL_TAG_LEN) + 1)

/* Seals <plain>/<len> (at most SEAL_PLAIN_MAX bytes) under <key> bound to
 * <label> into <out> (SEAL_TEXT_MAX). 0, or -1 (the random generator or the
 * cipher failed; <out> is then ""). */
int seal_text(const uint8_t key[SEAL_KEY_LEN], const char *label, const uint8_t *plain, size_t len,
              char out[SEAL_TEXT_MAX]);

/* Opens <text> sealed under <key> for <label> into <plain> (<cap> bytes)
 * and sets *<len>. 0, or -1 when <text> is malformed, was sealed under
 * another key or for another label, or was changed: the tag does not
 * verify, and nothing of <plain> is to be used. */
int seal_open(const uint8_t key[SEAL_KEY_LEN], const char *label, const char *text, uint8_t *plain,
              size_t cap, size_t *len);

#endif
