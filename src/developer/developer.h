#ifndef SLUICE_DEVELOPER_H
#define SLUICE_DEVELOPER_H
/* Developer self-service (SPEC 8; docs/developer.md): on the main
 * listener, under DEV_PREFIX, a developer signed in with a JWT lists,
 * creates, rotates and revokes the API keys it owns (owner == the JWT's
 * `sub`) and reads their usage; GET /developer/ serves a small page that
 * does the same from a browser.
 *
 * The endpoints are a built-in route (developer/conf.c): the request runs
 * the public pipeline as any other (client address, access lists, the
 * JWT checked by the auth stage, tier limits), then this module's stage
 * answers it in the content phase, before the cache and the proxy. Key
 * operations run on the key store's writer thread (auth/auth.h), which
 * checks ownership and the per-owner cap in the same step as the change:
 * one thread, so nothing slips in between. */

#include "developer/body.h"
#include "developer/conf.h"

/* The page and its script (developer/page.c): static text, no data. */
extern const char dev_page_html[];
extern const char dev_page_js[];

#endif
