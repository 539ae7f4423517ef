#include "util/url.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Is <s>/<len> "." or ".." once %2e is read as a dot? Returns 1, 2, or 0. */
static int url_dot_segment(const char *s, size_t len)
{
    int dots = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '.') {
            i++;
        } else if (len - i >= 3 && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 0x20) == 'e') {
            i += 3;
        } else {
            return 0;
        }
        if (++dots > 2)
            return 0;
    }
    return dots;
}

int url_normalize_path(const char *in, size_t len, char *out, size_t *out_len)
{
    if (len == 0 || in[0] != '/')
        return -1;
    size_t o = 0;
    size_t i = 0;
    bool trailing_slash = false;
    while (i < len) {
        while (i < len && in[i] == '/')
            i++;
        size_t start = i;
        while (i < len && in[i] != '/')
            i++;
        size_t seg = i - start;
        trailing_slash = i < len || seg == 0;
        if (seg == 0)
            break;
        int dots = url_dot_segment(in + start, seg);
        if (dots == 1) {
            trailing_slash = true;
            continue;
        }
        if (dots == 2) {
            if (o == 0)
                return -1; /* above the root */
            while (o > 0 && out[o - 1] != '/')
                o--;
            o--; /* the slash before the dropped segment */
            trailing_slash = true;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, in + start, seg);
        o += seg;
    }
    if (o == 0 || trailing_slash)
        out[o++] = '/';
    out[o] = '\0';
    *out_len = o;
    return 0;
}

static bool url_is_hex(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static bool url_is_unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool url_is_sub_delim(char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* reg-name = *( unreserved / pct-encoded / sub-delims ) */
static bool url_reg_name_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3 || !url_is_hex(s[i + 1]) || !url_is_hex(s[i + 2]))
                return false;
            i += 2;
        } else if (!url_is_unreserved(s[i]) && !url_is_sub_delim(s[i])) {
            return false;
        }
    }
    return true;
}

/* The inside of "[...]": IPv6address, or IPvFuture = "v" 1*HEXDIG "."
 * 1*( unreserved / sub-delims / ":" ). */
static bool url_ip_literal_valid(const char *s, size_t len)
{
    if (len > 0 && (s[0] | 0x20) == 'v') {
        size_t i = 1;
        while (i < len && url_is_hex(s[i]))
            i++;
        if (i == 1 || i >= len || s[i] != '.' || i + 1 == len)
            return false;
        for (i++; i < len; i++)
            if (!url_is_unreserved(s[i]) && !url_is_sub_delim(s[i]) && s[i] != ':')
                return false;
        return true;
    }
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    if (len == 0 || len >= sizeof(addr))
        return false;
    memcpy(addr, s, len);
    addr[len] = '\0';
    return inet_pton(AF_INET6, addr, bin) == 1;
}

bool url_host_valid(const char *s, size_t len)
{
    size_t host_len = len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || !url_ip_literal_valid(s + 1, (size_t)(close - s) - 1))
            return false;
        host_len = (size_t)(close - s) + 1;
        if (host_len < len && s[host_len] != ':')
            return false;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon)
            host_len = (size_t)(colon - s);
        if (!url_reg_name_valid(s, host_len))
            return false;
    }
    if (host_len == len)
        return true;
    for (size_t i = host_len + 1; i < len; i++) /* the port: *DIGIT */
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}
