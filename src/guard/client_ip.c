#include "guard/client_ip.h"

#include <arpa/inet.h>

#include "util/str.h"

/* <ip> as family + 16 bytes; IPv4-mapped IPv6 counts as IPv4, so one client
 * has one identity whichever socket family it arrived on. */
static bool cip_parse(const char *ip, int *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, ip, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, ip, addr) != 1)
        return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
        return true;
    }
    *family = AF_INET6;
    return true;
}

static bool cip_match(int family, const uint8_t addr[16], const struct cfg_cidr *c)
{
    if (family != c->family)
        return false;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(addr, c->addr, (size_t)full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (addr[full] & mask) == (c->addr[full] & mask);
}

bool cip_in_cidrs(const char *ip, const struct cfg_cidr *cidrs, int n)
{
    int family;
    uint8_t addr[16];
    if (!cip_parse(ip, &family, addr))
        return false;
    for (int i = 0; i < n; i++)
        if (cip_match(family, addr, &cidrs[i]))
            return true;
    return false;
}

/* Copies the address inside one X-Forwarded-For element <s>/<len>,
 * dropping brackets and a port ("[2001:db8::1]:443", "198.51.100.7:8080"). */
static bool cip_element(const char *s, size_t len, char *out, size_t outlen)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (!end)
            return false;
        len = (size_t)(end - s - 1);
        s++;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)))
            len = (size_t)(colon - s); /* one colon: IPv4 with a port */
    }
    if (len == 0 || len >= outlen)
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    int family;
    uint8_t addr[16];
    return cip_parse(out, &family, addr);
}

/* Walks every X-Forwarded-For value from the right. Returns true and sets
 * <out> to the first address that is not a trusted proxy; false when the
 * chain holds only trusted proxies (then <out> is the leftmost one) or ends in
 * something unparsable (then <out> is the last good hop). */
static bool cip_walk_xff(const struct cfg_server *srv, const struct sl_headers *h, char *out,
                         size_t outlen)
{
    for (int i = h->n - 1; i >= 0; i--) {
        const struct sl_header *f = &h->v[i];
        if (!str_ieq(f->name, f->name_len, "x-forwarded-for"))
            continue;
        size_t end = f->value_len;
        for (size_t j = f->value_len + 1; j-- > 0;) {
            if (j > 0 && f->value[j - 1] != ',')
                continue;
            char addr[64];
            if (!cip_element(f->value + j, end - j, addr, sizeof(addr)))
                return false;
            snprintf(out, outlen, "%s", addr);
            if (!cip_in_cidrs(addr, srv->trusted_proxies, srv->n_trusted_proxies))
                return true;
            end = j ? j - 1 : 0;
        }
    }
    return false;
}

void cip_resolve(const struct cfg_server *srv, const char *peer, const struct sl_headers *h,
                 char *out, size_t outlen)
{
    str_copy(out, outlen, peer);
    if (srv->n_trusted_proxies == 0 ||
        !cip_in_cidrs(peer, srv->trusted_proxies, srv->n_trusted_proxies))
        return;
    cip_walk_xff(srv, h, out, outlen);
}

/* Dotted decimal, as inet_ntop writes it, without its sprintf: every
 * request's identity goes through here. <out> holds 16 bytes. */
static void cip_format_v4(const uint8_t addr[4], char *out)
{
    for (int i = 0; i < 4; i++) {
        out += str_u64(out, addr[i]);
        *out++ = i < 3 ? '.' : '\0';
    }
}

void cip_identity(const char *ip, int ipv6_prefix, char *out, size_t outlen)
{
    int family;
    uint8_t addr[16];
    if (!cip_parse(ip, &family, addr)) {
        snprintf(out, outlen, "ip:%s", ip);
        return;
    }
    char text[INET6_ADDRSTRLEN];
    if (family == AF_INET) {
        cip_format_v4(addr, text);
        if (outlen > 3) {
            memcpy(out, "ip:", 3);
            str_copy(out + 3, outlen - 3, text);
        }
        return;
    }
    int full = ipv6_prefix / 8, rest = ipv6_prefix % 8;
    if (full < 16) {
        if (rest)
            addr[full++] &= (uint8_t)(0xff << (8 - rest));
        memset(addr + full, 0, (size_t)(16 - full));
    }
    inet_ntop(AF_INET6, addr, text, sizeof(text));
    snprintf(out, outlen, "ip:%s/%d", text, ipv6_prefix);
}
