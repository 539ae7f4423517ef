#include "pipeline/gateway.h"

#include "pipeline/module.h"
#include "util/mem.h"

/* ---- config holds -------------------------------------------------------------- */

struct wcfg *wcfg_new(struct worker *w, struct config *cfg)
{
    struct wcfg *h = sl_calloc(1, sizeof(*h));
    h->cfg = cfg; /* takes the caller's reference */
    h->worker = w;
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = 0; m < n; m++)
        if (mods[m]->init_snapshot)
            mods[m]->init_snapshot(h);
    return h;
}

static void wcfg_free(struct wcfg *h)
{
    int n;
    const struct sl_module *const *mods = sl_module_list(&n);
    for (int m = n - 1; m >= 0; m--)
        if (mods[m]->release_snapshot)
            mods[m]->release_snapshot(h);
    cfg_unref(h->cfg);
    free(h);
}

struct wcfg *wcfg_acquire(struct worker *w)
{
    w->cur->users++;
    return w->cur;
}

void wcfg_release(struct wcfg *h)
{
    if (--h->users == 0 && h->retired)
        wcfg_free(h);
}

void wcfg_retire(struct wcfg *h)
{
    h->retired = true;
    if (h->users == 0)
        wcfg_free(h);
}

/* ---- request ids -------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void worker_request_id(struct worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {splitmix64(&w->rid_state), splitmix64(&w->rid_state)};
    for (int i = 0; i < 32; i++)
        out[i] = hex[(v[i / 16] >> (60 - 4 * (i % 16))) & 0xf];
    out[32] = '\0';
}

/* ---- handles -------------------------------------------------------------------- */

static void worker_on_handle_closed(uv_handle_t *h)
{
    struct worker *w = h->data;
    w->open_handles--;
}

void worker_close_handle(struct worker *w, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    h->data = w;
    w->open_handles++;
    uv_close(h, worker_on_handle_closed);
}
