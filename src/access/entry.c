/* Run-time access-list entries (access/entry.h). */
#include "access/entry.h"

#include <string.h>

#include "util/str.h"

const char *acl_list_name(enum acl_list l)
{
    return l == ACL_ALLOW ? "allow" : "deny";
}

static bool acl_list_parse(const char *s, enum acl_list *out)
{
    if (strcmp(s, "allow") == 0)
        *out = ACL_ALLOW;
    else if (strcmp(s, "deny") == 0)
        *out = ACL_DENY;
    else
        return false;
    return true;
}

bool acl_entry_set(struct acl_entry *e, int64_t id, const char *list, const char *cidr,
                   const char *note, int64_t created_ms, int64_t expires_ms)
{
    memset(e, 0, sizeof *e);
    if (!acl_list_parse(list, &e->list) || strlen(cidr) >= sizeof e->cidr ||
        cfg_parse_cidr(cidr, &e->net) < 0)
        return false;
    e->id = id;
    str_copy(e->cidr, sizeof e->cidr, cidr);
    str_copy(e->note, sizeof e->note, note ? note : "");
    e->created_ms = created_ms;
    e->expires_ms = expires_ms;
    return true;
}

static const char *acl_parse_fields(json_t *doc, int64_t now_ms, struct acl_entry *e)
{
    if (!json_is_object(doc))
        return "the body must be a JSON object such as {\"list\": \"deny\", \"cidr\": "
               "\"203.0.113.0/24\"}";
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        if (strcmp(k, "list") != 0 && strcmp(k, "cidr") != 0 && strcmp(k, "ttl") != 0 &&
            strcmp(k, "note") != 0)
            return "unknown field (an entry has list, cidr, ttl and note)";
    }
    json_t *list = json_object_get(doc, "list"), *cidr = json_object_get(doc, "cidr");
    json_t *ttl = json_object_get(doc, "ttl"), *note = json_object_get(doc, "note");
    if (!json_is_string(list) || !acl_list_parse(json_string_value(list), &e->list))
        return "list must be \"allow\" or \"deny\"";
    if (!json_is_string(cidr) || json_string_length(cidr) >= sizeof e->cidr ||
        cfg_parse_cidr(json_string_value(cidr), &e->net) < 0)
        return "cidr must be a network such as 203.0.113.0/24 or 2001:db8::/32, or one address";
    str_copy(e->cidr, sizeof e->cidr, json_string_value(cidr));
    if (note && !json_is_null(note)) {
        if (!json_is_string(note) || json_string_length(note) >= sizeof e->note ||
            memchr(json_string_value(note), '\0', json_string_length(note)))
            return "note must be a string of at most 255 bytes";
        str_copy(e->note, sizeof e->note, json_string_value(note));
    }
    e->created_ms = now_ms;
    if (ttl && !json_is_null(ttl)) {
        int64_t ms;
        if (!json_is_string(ttl) || cfg_parse_duration_ms(json_string_value(ttl), &ms) < 0 ||
            ms <= 0 || ms > ACL_TTL_MAX_MS)
            return "ttl must be a duration such as 30s, 15m, 1h or 7d (at most 3650d)";
        e->expires_ms = now_ms + ms;
    }
    return NULL;
}

const char *acl_entry_parse(const char *body, size_t len, int64_t now_ms, struct acl_entry *e)
{
    memset(e, 0, sizeof *e);
    if (len > ACL_BODY_MAX)
        return "the body is too large";
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *why = acl_parse_fields(doc, now_ms, e);
    json_decref(doc);
    return why;
}

json_t *acl_entry_json(const struct acl_entry *e)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:o}", "id", (json_int_t)e->id, "list",
                     acl_list_name(e->list), "cidr", e->cidr, "note", e->note, "created",
                     (json_int_t)(e->created_ms / 1000), "expires",
                     e->expires_ms ? json_integer(e->expires_ms / 1000) : json_null());
}
