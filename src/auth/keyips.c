/* A key's allow_ips (auth/keyips.h). */
#include "auth/keyips.h"

#include <stdio.h>
#include <string.h>

/* The longest CIDR text: a full IPv6 address and "/128". */
#define KS_CIDR_TEXT_MAX 44

static bool ks_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* <*s>/<*len> without the spaces around it. */
static void ks_trim(const char **s, size_t *len)
{
    while (*len && ks_is_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && ks_is_space((*s)[*len - 1]))
        (*len)--;
}

/* One CIDR <s>/<len> (trimmed) into <out>; false when it is not one. */
static bool ks_cidr_parse(const char *s, size_t len, struct cfg_cidr *out)
{
    char text[KS_CIDR_TEXT_MAX + 1];
    if (len == 0 || len >= sizeof text)
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    return cfg_parse_cidr(text, out) == 0;
}

int ks_allow_ips_parse(const char *s, struct cfg_cidr out[KS_ALLOW_IPS_N], char *why, size_t cap)
{
    int n = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == KS_ALLOW_IPS_N) {
            snprintf(why, cap, "allow_ips: at most %d networks", KS_ALLOW_IPS_N);
            return -1;
        }
        const char *item = s;
        size_t item_len = len;
        ks_trim(&item, &item_len);
        if (!ks_cidr_parse(item, item_len, &out[n])) {
            snprintf(why, cap,
                     "allow_ips: bad CIDR '%.*s' (use 10.0.0.0/8, 2001:db8::/32 or one address)",
                     (int)(item_len > 64 ? 64 : item_len), item);
            return -1;
        }
        n++;
        s += len;
        if (comma)
            s++;
    }
    return n;
}

int ks_allow_ips_join(const char *const *v, int n, char out[KS_ALLOW_IPS_MAX], char *why,
                      size_t cap)
{
    out[0] = '\0';
    if (n > KS_ALLOW_IPS_N) {
        snprintf(why, cap, "allow_ips: at most %d networks", KS_ALLOW_IPS_N);
        return -1;
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        struct cfg_cidr net;
        const char *item = v[i];
        size_t len = strlen(item);
        ks_trim(&item, &len);
        /* A comma inside one item would read back as two. */
        if (memchr(item, ',', len) || !ks_cidr_parse(item, len, &net)) {
            snprintf(why, cap,
                     "allow_ips: bad CIDR '%.64s' (use 10.0.0.0/8, 2001:db8::/32 or one address)",
                     v[i]);
            return -1;
        }
        /* At most KS_CIDR_TEXT_MAX bytes and a comma per item: it fits. */
        at += (size_t)snprintf(out + at, KS_ALLOW_IPS_MAX - at, "%s%.*s", i ? "," : "", (int)len,
                               item);
    }
    return 0;
}

int ks_allow_ips_from_json(const json_t *v, char out[KS_ALLOW_IPS_MAX], char *why, size_t cap)
{
    out[0] = '\0';
    if (json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        struct cfg_cidr nets[KS_ALLOW_IPS_N];
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v) || json_string_length(v) >= KS_ALLOW_IPS_MAX) {
            snprintf(why, cap, "allow_ips: at most %d networks", KS_ALLOW_IPS_N);
            return -1;
        }
        /* Parsed for the check, then joined again without the spaces. */
        const char *items[KS_ALLOW_IPS_N];
        char copy[KS_ALLOW_IPS_MAX];
        if (ks_allow_ips_parse(s, nets, why, cap) < 0)
            return -1;
        memcpy(copy, s, json_string_length(v) + 1);
        int n = 0;
        for (char *p = copy; p && *p;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            items[n++] = p;
            p = comma ? comma + 1 : NULL;
        }
        return ks_allow_ips_join(items, n, out, why, cap);
    }
    if (!json_is_array(v) || json_array_size(v) > KS_ALLOW_IPS_N) {
        snprintf(why, cap, "allow_ips is a list of at most %d networks such as [\"10.0.0.0/8\"]",
                 KS_ALLOW_IPS_N);
        return -1;
    }
    const char *items[KS_ALLOW_IPS_N];
    int n = 0;
    size_t i;
    const json_t *it;
    json_array_foreach(v, i, it)
    {
        if (!json_is_string(it) || strlen(json_string_value(it)) != json_string_length(it)) {
            snprintf(why, cap, "allow_ips holds strings such as \"10.0.0.0/8\"");
            return -1;
        }
        items[n++] = json_string_value(it);
    }
    return ks_allow_ips_join(items, n, out, why, cap);
}
