/* Header control and path rewriting (proxy/headers.h). */
#include "proxy/headers.h"

#include <string.h>
#include <strings.h>

#include "util/str.h"

bool px_is_identity_header(const char *name, size_t len)
{
    return len > 9 && strncasecmp(name, "x-sluice-", 9) == 0 &&
           (str_ieq(name + 9, len - 9, "identity") || str_ieq(name + 9, len - 9, "key-id") ||
            str_ieq(name + 9, len - 9, "tier") || str_ieq(name + 9, len - 9, "scopes"));
}

static bool px_rules_has(const struct px_rules *r, const char *name, size_t len)
{
    if (!r)
        return false;
    for (int i = 0; i < r->n_remove; i++)
        if (str_ieq(name, len, r->remove[i]))
            return true;
    for (int i = 0; i < r->n_set; i++)
        if (r->set[i].name_len == len && strncasecmp(r->set[i].name, name, len) == 0)
            return true;
    return false;
}

bool px_rules_replace(const struct px_rules *a, const struct px_rules *b, const char *name,
                      size_t len)
{
    return px_rules_has(a, name, len) || px_rules_has(b, name, len);
}

static void px_append_nz(struct buf *out, const char *s)
{
    if (s)
        buf_append_str(out, s);
}

void px_rules_value(const struct px_set *set, const struct exchange *x, struct buf *out)
{
    for (int i = 0; i < set->n_parts; i++) {
        const struct px_part *p = &set->parts[i];
        switch (p->var) {
        case PX_VAR_NONE:
            buf_append(out, p->text, p->len);
            break;
        case PX_VAR_CLIENT_IP:
            px_append_nz(out, x->client_ip);
            break;
        case PX_VAR_REQUEST_ID:
            px_append_nz(out, x->request_id);
            break;
        case PX_VAR_IDENTITY:
            px_append_nz(out, x->identity.id);
            break;
        case PX_VAR_KEY_ID:
            px_append_nz(out, x->identity.key_id);
            break;
        case PX_VAR_TIER:
            px_append_nz(out, x->identity.tier);
            break;
        }
    }
}

static bool px_rules_sets(const struct px_rules *r, const char *name, size_t len)
{
    for (int i = 0; r && i < r->n_set; i++)
        if (r->set[i].name_len == len && strncasecmp(r->set[i].name, name, len) == 0)
            return true;
    return false;
}

void px_rules_append_head(struct buf *b, const struct px_rules *r, const struct px_rules *over,
                          const struct exchange *x)
{
    for (int i = 0; r && i < r->n_set; i++) {
        const struct px_set *s = &r->set[i];
        if (px_rules_sets(over, s->name, s->name_len))
            continue;
        buf_append(b, s->name, s->name_len);
        buf_append(b, ": ", 2);
        px_rules_value(s, x, b);
        buf_append(b, "\r\n", 2);
    }
}

void px_rules_add_headers(struct sl_headers *h, const struct px_rules *r,
                          const struct px_rules *over, struct exchange *x)
{
    struct buf v = {0};
    for (int i = 0; r && i < r->n_set; i++) {
        const struct px_set *s = &r->set[i];
        if (px_rules_sets(over, s->name, s->name_len))
            continue;
        v.len = 0;
        px_rules_value(s, x, &v);
        sl_headers_add(x->arena, h, s->name, s->name_len, v.data ? v.data : "", v.len);
    }
    buf_release(&v);
}

const char *px_target(struct exchange *x, size_t *len)
{
    const struct cfg_route *r = x->route;
    const struct px_route_conf *rc = px_route_conf(r);
    *len = x->target_len;
    if (!rc || (!rc->strip_prefix && !rc->rewrite_prefix) || r->match != CFG_MATCH_PREFIX ||
        x->path_len < r->path_len)
        return x->target;
    /* The rest of the path after the route's prefix, then the query. */
    const char *rest = x->target + r->path_len;
    size_t rest_len = x->target_len - r->path_len;
    const char *with = rc->rewrite_prefix ? rc->rewrite_prefix : "/";
    size_t with_len = strlen(with);
    /* One slash where the two meet: "/v2/" + "/users" or "/v2" + "users". */
    bool with_slash = with_len && with[with_len - 1] == '/';
    if (with_slash && rest_len && rest[0] == '/') {
        rest++;
        rest_len--;
    }
    struct buf b = {0};
    buf_append(&b, with, with_len);
    if (!with_slash && rest_len && rest[0] != '/' && rest[0] != '?')
        buf_append(&b, "/", 1);
    buf_append(&b, rest, rest_len);
    char *out = arena_strndup(x->arena, b.data, b.len);
    *len = b.len;
    buf_release(&b);
    return out;
}
