/* Audit lines: format, seal, parse (audit/line.h). Pure: no clock, no I/O. */
#include "audit/line.h"

#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/json.h"
#include "util/str.h"

static const char audit_mac_key[] = ",\"mac\":\"";

void audit_chain_init(struct audit_chain *c)
{
    memset(c->mac, '0', AUDIT_MAC_HEX);
    c->mac[AUDIT_MAC_HEX] = '\0';
    c->seq = 0;
}

void audit_time(int64_t wall_us, char out[32])
{
    time_t sec = (time_t)(wall_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(wall_us / 1000 % 1000));
}

static void audit_member(struct buf *b, const char *name, const char *value, bool first)
{
    buf_append_str(b, first ? "{\"" : ",\"");
    buf_append_str(b, name);
    buf_append_str(b, "\":\"");
    if (value) {
        size_t len = strlen(value);
        json_str_append_n(b, value, len > AUDIT_FIELD_MAX ? AUDIT_FIELD_MAX : len);
    }
    buf_append(b, "\"", 1);
}

void audit_line_head(struct buf *b, int64_t wall_us, const char *actor, const char *action,
                     const char *target, const char *result, const char *client)
{
    char t[32];
    audit_time(wall_us, t);
    audit_member(b, "time", t, true);
    audit_member(b, "actor", actor, false);
    audit_member(b, "action", action, false);
    audit_member(b, "target", target, false);
    audit_member(b, "result", result, false);
    audit_member(b, "client", client, false);
}

void audit_line_open_head(struct buf *b, int64_t wall_us, const char *file,
                          const struct audit_chain *c)
{
    audit_line_head(b, wall_us, "sluice", AUDIT_OPEN_ACTION, file, "ok", "local");
    buf_appendf(b, ",\"prev\":\"%s\"", c->mac);
}

/* hex(HMAC-SHA256(<key>, <prev> || <body>)) into <out>. */
static void audit_mac(const unsigned char key[32], const char *prev, const char *body, size_t len,
                      char out[AUDIT_MAC_HEX + 1])
{
    struct buf msg = {0};
    buf_append(&msg, prev, AUDIT_MAC_HEX);
    buf_append(&msg, body, len);
    unsigned char md[32];
    unsigned int md_len = 0;
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg.data, msg.len, md, &md_len);
    buf_release(&msg);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[AUDIT_MAC_HEX] = '\0';
}

void audit_line_seal(struct buf *out, const char *head, size_t len, struct audit_chain *c,
                     const unsigned char key[32])
{
    size_t start = out->len;
    buf_append(out, head, len);
    buf_appendf(out, ",\"seq\":%llu}", (unsigned long long)(c->seq + 1));
    char mac[AUDIT_MAC_HEX + 1];
    audit_mac(key, c->mac, out->data + start, out->len - start, mac);
    out->len--; /* the brace goes after the mac */
    buf_append_str(out, audit_mac_key);
    buf_append(out, mac, AUDIT_MAC_HEX);
    buf_append_str(out, "\"}\n");
    memcpy(c->mac, mac, sizeof(mac));
    c->seq++;
}

static bool audit_is_mac(const char *s, size_t len)
{
    if (len != AUDIT_MAC_HEX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The mac suffix of <line>/<len>: where it starts, or NULL. */
static const char *audit_mac_suffix(const char *line, size_t len)
{
    if (len < AUDIT_MAC_SUFFIX_LEN + 2)
        return NULL;
    const char *suf = line + len - AUDIT_MAC_SUFFIX_LEN;
    if (memcmp(suf, audit_mac_key, 8) != 0 || !audit_is_mac(suf + 8, AUDIT_MAC_HEX) ||
        memcmp(suf + 8 + AUDIT_MAC_HEX, "\"}", 2) != 0)
        return NULL;
    return suf;
}

static const char *audit_line_fields(json_t *doc, struct audit_line *out)
{
    static const char *const names[] = {"time", "actor", "action", "target", "result", "client"};
    if (!json_is_object(doc))
        return "not a JSON object";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!json_is_string(json_object_get(doc, names[i])))
            return "a field (time, actor, action, target, result, client) is missing";
    json_t *seq = json_object_get(doc, "seq");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        return "no seq";
    out->seq = (uint64_t)json_integer_value(seq);
    if (strcmp(json_string_value(json_object_get(doc, "action")), AUDIT_OPEN_ACTION) != 0)
        return NULL;
    json_t *prev = json_object_get(doc, "prev");
    if (!json_is_string(prev) || !audit_is_mac(json_string_value(prev), json_string_length(prev)))
        return "an audit.open line without prev";
    out->opens = true;
    memcpy(out->prev, json_string_value(prev), AUDIT_MAC_HEX + 1);
    return NULL;
}

const char *audit_line_parse(const char *line, size_t len, struct audit_line *out)
{
    memset(out, 0, sizeof(*out));
    if (len > AUDIT_LINE_MAX)
        return "longer than any audit line";
    const char *suf = audit_mac_suffix(line, len);
    if (!suf)
        return "no mac at its end";
    memcpy(out->mac, suf + 8, AUDIT_MAC_HEX);
    struct buf body = {0};
    buf_append(&body, line, (size_t)(suf - line));
    buf_append(&body, "}", 1);
    json_error_t jerr;
    json_t *doc = json_loadb(body.data, body.len, JSON_REJECT_DUPLICATES, &jerr);
    buf_release(&body);
    const char *why = doc ? audit_line_fields(doc, out) : "not JSON";
    json_decref(doc);
    return why;
}

bool audit_line_mac_ok(const char *line, size_t len, const char *prev_mac,
                       const unsigned char key[32])
{
    const char *suf = audit_mac_suffix(line, len);
    if (!suf)
        return false;
    struct buf body = {0};
    buf_append(&body, line, (size_t)(suf - line));
    buf_append(&body, "}", 1);
    char mac[AUDIT_MAC_HEX + 1];
    audit_mac(key, prev_mac, body.data, body.len, mac);
    buf_release(&body);
    return CRYPTO_memcmp(mac, suf + 8, AUDIT_MAC_HEX) == 0;
}
