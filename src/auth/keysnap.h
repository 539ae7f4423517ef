#ifndef SLUICE_KEYSNAP_H
#define SLUICE_KEYSNAP_H
/* A copy of the API keys a keyring is built from, in memory and on disk:
 * what a gateway on a remote key store (Redis) serves from while the store
 * is away or has lost its data, and what `sluice keys export` writes and
 * `sluice keys import` reads.
 *
 * It holds the records of the active keys and the SHA-256 of their valid
 * secrets with each one's end of validity; never a secret. On disk it is
 * JSON lines, mode 0600, replaced atomically (a temporary file renamed):
 *   {"format": "sluice-keyring", "version": 1, "written_ms": ..., "epoch": "...", "keys": N}
 *   {"key": {"id": ..., "tier": ..., ..., "state": "active"},
 *    "secrets": [{"sha256": "<hex>", "valid_until_ms": 0}, ...]}     one line per key
 * The epoch is the store's (keystore.h) when the keys were read: "" when
 * unknown. */

#include <stdint.h>
#include <stdio.h>

#include "auth/keystore.h"

#define KEYSNAP_FILE "keyring.snapshot"
/* Bounds of a file we read: a line holds one key (a few KiB); the keyring
 * is rebuilt whole on every change, so it is built for thousands of keys,
 * not millions. */
#define KEYSNAP_LINE_MAX (256 * 1024)
#define KEYSNAP_KEYS_MAX 100000
#define KEYSNAP_SECRETS_MAX 64 /* per key: the current one and rotations in grace */

struct keysnap;

struct keysnap *keysnap_new(void);
void keysnap_free(struct keysnap *s);
/* A ks_each_fn: copies key <k> and its <n> secrets into the keysnap <arg>. */
void keysnap_add(const struct ks_key *k, const struct ks_secret *secrets, int n, void *arg);
int keysnap_count(const struct keysnap *s);
const char *keysnap_epoch(const struct keysnap *s);
void keysnap_set_epoch(struct keysnap *s, const char *epoch);
/* When the file was written (ms since the epoch); 0 for one built here. */
int64_t keysnap_written_ms(const struct keysnap *s);
/* Calls <fn> for each key of <s> still active at <now_ms>, with its
 * secrets still valid then (a key left with none is skipped), as
 * ks_each_active does on a store. */
void keysnap_each(const struct keysnap *s, int64_t now_ms, ks_each_fn fn, void *arg);
/* Adds to <into> the keys of <from> whose id it lacks (quadratic: see
 * KEYSNAP_KEYS_MAX). */
void keysnap_merge(struct keysnap *into, const struct keysnap *from);

/* "<data_dir>/keyring.snapshot" into <out>; -1 when it does not fit. */
int keysnap_path(const char *data_dir, char *out, size_t cap);
/* Writes <s> to <path> (mode 0600; a temporary file in the same directory,
 * fsync'd, then renamed over it), creating its directory (0700) when
 * missing. 0, or -1 with *<err> (malloc'd). */
int keysnap_write(const struct keysnap *s, const char *path, int64_t now_ms, char **err);
/* The same JSON lines to <f> (export to stdout). 0 or -1 (a write error). */
int keysnap_dump(const struct keysnap *s, FILE *f, int64_t now_ms);
/* Reads the file at <path>: 0 with *<out> (free it), 1 when there is no
 * such file, -1 with *<err> (malloc'd: the line and what is wrong). */
int keysnap_read(const char *path, struct keysnap **out, char **err);

#endif
