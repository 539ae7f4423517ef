/* Bans (abuse/ban.h). */
#include "abuse/ban.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "guard/client_ip.h"
#include "util/str.h"

#define ABUSE_KEY_ID_MAX 64 /* key ids are "key_" + 16 hex digits; room to spare */

int64_t abuse_ban_length(const struct abuse_policy *p, int64_t count)
{
    int64_t len = p->ban_ms;
    /* Stops at the cap, so the product never overflows. */
    for (int64_t i = 1; i < count && len < p->max_ban_ms; i++)
        len = len > p->max_ban_ms / p->escalate ? p->max_ban_ms : len * p->escalate;
    return len < p->max_ban_ms ? len : p->max_ban_ms;
}

bool abuse_ban_next(const struct abuse_ban *prev, const struct abuse_policy *p,
                    enum abuse_source src, const char *identity, const char *reason,
                    int64_t duration_ms, int64_t now_ms, struct abuse_ban *out)
{
    if (src == ABUSE_SRC_AUTO && prev && abuse_ban_active(prev, now_ms))
        return false;
    memset(out, 0, sizeof *out);
    str_copy(out->identity, sizeof out->identity, identity);
    str_copy(out->reason, sizeof out->reason, reason ? reason : "");
    out->source = src;
    out->count = (prev && abuse_ban_remembered(prev, p, now_ms) ? prev->count : 0) + 1;
    out->created_ms = now_ms;
    out->until_ms =
        now_ms + (src == ABUSE_SRC_AUTO ? abuse_ban_length(p, out->count) : duration_ms);
    return true;
}

/* ---- identities ---------------------------------------------------------- */

static const char *abuse_ip_parse(const char *a, size_t len, int ipv6_prefix, char *out)
{
    char text[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof text)
        return "an ip: identity is an address: ip:198.51.100.7 or ip:2001:db8:1:2::/64";
    memcpy(text, a, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash++ = '\0';
    uint8_t bin[16];
    if (inet_pton(AF_INET, text, bin) == 1) {
        if (slash)
            return "an IPv4 identity is one address, without a /prefix";
    } else if (inet_pton(AF_INET6, text, bin) == 1) {
        char want[8];
        snprintf(want, sizeof want, "%d", ipv6_prefix);
        /* A shorter network would ban more than one identity, a longer one
         * nothing the gateway ever counts. */
        if (slash && strcmp(slash, want) != 0)
            return "an IPv6 identity is the client's network of server.ipv6_prefix bits "
                   "(ip:2001:db8:1:2::/64), or one address in it";
    } else {
        return "an ip: identity is an address: ip:198.51.100.7 or ip:2001:db8:1:2::/64";
    }
    cip_identity(text, ipv6_prefix, out, ABUSE_ID_MAX);
    return NULL;
}

static bool abuse_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

const char *abuse_identity_parse(const char *s, size_t len, int ipv6_prefix, char *out)
{
    if (len >= ABUSE_ID_MAX)
        return "identity is too long (at most 95 bytes)";
    if (len > 3 && memcmp(s, "ip:", 3) == 0)
        return abuse_ip_parse(s + 3, len - 3, ipv6_prefix, out);
    if (len > 4 && memcmp(s, "key:", 4) == 0) {
        if (len - 4 > ABUSE_KEY_ID_MAX)
            return "a key: identity is a key id (key:key_0123456789abcdef)";
        for (size_t i = 4; i < len; i++)
            if (!abuse_key_char((unsigned char)s[i]))
                return "a key: identity is a key id (key:key_0123456789abcdef)";
    } else if (len > 4 && memcmp(s, "sub:", 4) == 0) {
        for (size_t i = 4; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return "a sub: identity is a JWT subject without control characters";
    } else {
        return "identity must be ip:<address>, key:<key id> or sub:<JWT subject>";
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return NULL;
}

int abuse_pct_decode(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = str_hex_digit(p[1]), lo = hi < 0 ? -1 : str_hex_digit(p[2]);
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            p += 2;
        }
        if (c == 0 || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return (int)n;
}

/* ---- POST /bans ----------------------------------------------------------- */

static const char *abuse_req_fields(json_t *doc, int ipv6_prefix, struct abuse_ban_req *r)
{
    if (!json_is_object(doc))
        return "the body must be a JSON object such as {\"identity\": \"ip:198.51.100.7\", "
               "\"duration\": \"1h\", \"reason\": \"...\"}";
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        if (strcmp(k, "identity") != 0 && strcmp(k, "duration") != 0 && strcmp(k, "reason") != 0)
            return "unknown field (a ban has identity, duration and reason)";
    }
    json_t *id = json_object_get(doc, "identity"), *dur = json_object_get(doc, "duration");
    json_t *reason = json_object_get(doc, "reason");
    if (!json_is_string(id))
        return "identity must be a string such as \"ip:198.51.100.7\"";
    const char *bad = abuse_identity_parse(json_string_value(id), json_string_length(id),
                                           ipv6_prefix, r->identity);
    if (bad)
        return bad;
    if (!json_is_string(dur) ||
        cfg_parse_duration_ms(json_string_value(dur), &r->duration_ms) < 0 ||
        r->duration_ms < 1000 || r->duration_ms > ABUSE_MANUAL_MAX_MS)
        return "duration must be a duration such as 30s, 15m, 1h or 7d (1s to 365d)";
    if (reason && !json_is_null(reason)) {
        if (!json_is_string(reason) || json_string_length(reason) >= sizeof r->reason ||
            memchr(json_string_value(reason), '\0', json_string_length(reason)))
            return "reason must be a string of at most 255 bytes";
        str_copy(r->reason, sizeof r->reason, json_string_value(reason));
    }
    return NULL;
}

const char *abuse_ban_req_parse(const char *body, size_t len, int ipv6_prefix,
                                struct abuse_ban_req *r)
{
    memset(r, 0, sizeof *r);
    if (len > ABUSE_BODY_MAX)
        return "the body is too large";
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *why = doc ? abuse_req_fields(doc, ipv6_prefix, r) : "the body is not valid JSON";
    json_decref(doc);
    return why;
}

/* ---- forms ------------------------------------------------------------------ */

const char *abuse_source_name(enum abuse_source s)
{
    return s == ABUSE_SRC_MANUAL ? "manual" : "auto";
}

bool abuse_source_parse(const char *s, enum abuse_source *out)
{
    if (strcmp(s, "auto") == 0)
        *out = ABUSE_SRC_AUTO;
    else if (strcmp(s, "manual") == 0)
        *out = ABUSE_SRC_MANUAL;
    else
        return false;
    return true;
}

int64_t abuse_ban_retry_after(const struct abuse_ban *b, int64_t now_ms)
{
    int64_t s = (b->until_ms - now_ms + 999) / 1000;
    return s < 1 ? 1 : s;
}

json_t *abuse_json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char copy[ABUSE_REASON_MAX];
    size_t n = str_copy(copy, sizeof copy, s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    return json_string(copy);
}

json_t *abuse_ban_json(const struct abuse_ban *b, int64_t now_ms)
{
    int64_t left = b->until_ms > now_ms ? abuse_ban_retry_after(b, now_ms) : 0;
    return json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:I}", "identity",
                     abuse_json_text(b->identity), "reason", abuse_json_text(b->reason), "source",
                     abuse_source_name(b->source), "created", (json_int_t)(b->created_ms / 1000),
                     "until", (json_int_t)((b->until_ms + 999) / 1000), "retry_after",
                     (json_int_t)left, "count", (json_int_t)b->count);
}

char *abuse_ban_encode(const struct abuse_ban *b)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:s, s:s}", "c", (json_int_t)b->created_ms, "u",
                          (json_int_t)b->until_ms, "n", (json_int_t)b->count, "s",
                          abuse_source_name(b->source), "r", b->reason);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

bool abuse_ban_decode(const char *identity, const char *s, size_t len, struct abuse_ban *b)
{
    memset(b, 0, sizeof *b);
    if (strlen(identity) >= sizeof b->identity)
        return false;
    json_t *o = json_loadb(s, len, 0, NULL);
    json_int_t c, u, n;
    const char *src, *reason;
    bool ok = o &&
              json_unpack(o, "{s:I, s:I, s:I, s:s, s:s}", "c", &c, "u", &u, "n", &n, "s", &src, "r",
                          &reason) == 0 &&
              abuse_source_parse(src, &b->source);
    if (ok) {
        str_copy(b->identity, sizeof b->identity, identity);
        str_copy(b->reason, sizeof b->reason, reason);
        b->created_ms = c;
        b->until_ms = u;
        b->count = n;
    }
    json_decref(o);
    return ok;
}
