#ifndef SLUICE_QUOTA_SIGNATURE_H
#define SLUICE_QUOTA_SIGNATURE_H
/* The signature of an alert webhook (SPEC 6.3), as Stripe signs its
 * events: X-Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
 * "<t>." + body)>. A receiver recomputes it from the raw body and refuses
 * a stale <t>, so a captured request cannot be replayed later. */

#include <stddef.h>
#include <stdint.h>

/* "t=...,v1=" and 64 hex digits, NUL included. */
#define QUOTA_SIGNATURE_MAX (2 + 20 + 4 + 64 + 1)

/* Writes the header value for <body>/<len> sent at <t> into <out>
 * (QUOTA_SIGNATURE_MAX bytes). */
void quota_signature(const char *secret, size_t secret_len, int64_t t, const char *body, size_t len,
                     char out[QUOTA_SIGNATURE_MAX]);

#endif
