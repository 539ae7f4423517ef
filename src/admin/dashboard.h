#ifndef SLUICE_ADMIN_DASHBOARD_H
#define SLUICE_ADMIN_DASHBOARD_H
/* The admin dashboard (SPEC 8, docs/dashboard.md): the page and its static
 * assets, embedded in the binary at build time (tools/dash_embed.c writes
 * the table below from dashboard/ and the chart library), served on the
 * admin listener without the token: they hold no data; every call the page
 * makes carries the token like any other client's. */
#include <stddef.h>

#include "pipeline/exchange.h"

/* One embedded file: its URL path ("/index.html", "/assets/js/app.js"),
 * its Content-Type, its ETag (quoted) and its bytes. */
struct dash_asset {
    const char *path;
    const char *content_type;
    const char *etag;
    const unsigned char *data;
    size_t len;
};

/* The generated table (build/gen/dash_assets.c). */
extern const struct dash_asset dash_assets[];
extern const int dash_n_assets;

/* The asset served at <path> ("/" is "/index.html"), or NULL. */
const struct dash_asset *dash_asset_find(const char *path);

/* The admin stage that runs before the token check: answers GET and HEAD of
 * the dashboard's paths ("/", "/index.html", "/assets/...": 404 for an
 * unknown asset), and lets everything else go on to the token check. */
enum stage_result dash_stage(struct exchange *x);

#endif
