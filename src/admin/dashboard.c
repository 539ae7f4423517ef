/* The admin dashboard's static files (admin/dashboard.h). */
#include "admin/dashboard.h"

#include <llhttp.h>

/* Where the dashboard's assets live: a prefix no admin endpoint uses. */
#define DASH_ASSET_PREFIX "/assets/"

/* The page runs only what the gateway served it: no inline script or style,
 * no other origin (SPEC 8). The other headers keep it out of frames and
 * keep browsers from guessing types. */
#define DASH_CSP "default-src 'self'"

const struct dash_asset *dash_asset_find(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (int i = 0; i < dash_n_assets; i++)
        if (strcmp(dash_assets[i].path, path) == 0)
            return &dash_assets[i];
    return NULL;
}

/* Does the request's If-None-Match name <etag> (or "*")? */
static bool dash_not_modified(struct exchange *x, const char *etag)
{
    const struct sl_header *h = exchange_req_header(x, "if-none-match");
    if (!h)
        return false;
    size_t elen = strlen(etag);
    for (size_t i = 0; i < h->value_len;) {
        while (i < h->value_len && (h->value[i] == ' ' || h->value[i] == ','))
            i++;
        size_t start = i;
        while (i < h->value_len && h->value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && h->value[end - 1] == ' ')
            end--;
        const char *tag = h->value + start;
        size_t tlen = end - start;
        if (tlen > 2 && tag[0] == 'W' && tag[1] == '/') {
            tag += 2;
            tlen -= 2;
        }
        if ((tlen == 1 && tag[0] == '*') || (tlen == elen && memcmp(tag, etag, elen) == 0))
            return true;
    }
    return false;
}

static void dash_send(struct exchange *x, const struct dash_asset *a)
{
    struct sl_headers h = {0};
    bool fresh = dash_not_modified(x, a->etag);
    if (!fresh)
        sl_headers_add(x->arena, &h, "Content-Type", 12, a->content_type, strlen(a->content_type));
    /* Revalidated on every load (a cheap 304): a new binary's page is never
     * mixed with an old one's cached modules. */
    sl_headers_add(x->arena, &h, "Cache-Control", 13, "no-cache", 8);
    sl_headers_add(x->arena, &h, "ETag", 4, a->etag, strlen(a->etag));
    sl_headers_add(x->arena, &h, "Content-Security-Policy", 23, DASH_CSP, strlen(DASH_CSP));
    sl_headers_add(x->arena, &h, "X-Content-Type-Options", 22, "nosniff", 7);
    sl_headers_add(x->arena, &h, "X-Frame-Options", 15, "DENY", 4);
    sl_headers_add(x->arena, &h, "Referrer-Policy", 15, "no-referrer", 11);
    if (fresh) {
        exchange_send_head(x, 304, &h, 0, true);
        exchange_send_end(x);
        return;
    }
    exchange_send_head(x, 200, &h, (int64_t)a->len, x->method == HTTP_HEAD);
    if (x->method != HTTP_HEAD)
        exchange_send_body(x, (const char *)a->data, a->len);
    exchange_send_end(x);
}

enum stage_result dash_stage(struct exchange *x)
{
    if (x->method != HTTP_GET && x->method != HTTP_HEAD)
        return STAGE_NEXT;
    const struct dash_asset *a = dash_asset_find(x->path);
    if (a) {
        dash_send(x, a);
        return STAGE_DONE;
    }
    /* Not a file of the dashboard, but under its prefix: nothing the token
     * would open either. */
    if (strncmp(x->path, DASH_ASSET_PREFIX, strlen(DASH_ASSET_PREFIX)) == 0) {
        exchange_respond_error(x, 404, "no such dashboard file");
        return STAGE_DONE;
    }
    return STAGE_NEXT;
}
