/* The value parsers of the configuration: durations, sizes, CIDRs, socket
 * addresses and ${VAR} expansion. Pure functions of their input (addresses
 * aside, which ask the resolver), so unit tests call them directly. */

#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "util/mem.h"

/* The longest ${NAME} we look up: real variable names are short, and a bound
 * lets the name live on the stack. */
#define CFG_ENV_NAME_MAX 128

/* Reads the decimal digits at the start of <s> into <out>, and where they end
 * into <end>. strtoull is not used because it accepts leading spaces, a sign
 * and wraps negatives around, all of which are mistakes in a config value.
 * 0, or -1 when there is no digit or the value overflows. */
static int cfg_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t n = 0;
    const char *p = s;

    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    if (p == s)
        return -1;
    *out = n;
    *end = p;
    return 0;
}

int cfg_parse_duration_ms(const char *s, int64_t *out_ms)
{
    /* "m" is minutes, as in nginx and Go; "ms" must be tried as a whole
     * suffix, which the exact compare below does. */
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
    };
    uint64_t n;
    const char *end;

    if (cfg_digits(s, &n, &end) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (n > (uint64_t)(INT64_MAX / units[i].ms))
            return -1;
        *out_ms = (int64_t)n * units[i].ms;
        return 0;
    }
    return -1;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *end;
    unsigned shift;

    if (cfg_digits(s, &n, &end) < 0)
        return -1;
    switch (end[0]) {
    case '\0':
        shift = 0;
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (shift && end[1] != '\0')
        return -1;
    if (n > (UINT64_MAX >> shift))
        return -1;
    *out = n << shift;
    return 0;
}

int cfg_parse_cidr(const char *s, struct cfg_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max_bits;

    if (hlen == 0 || hlen >= sizeof host)
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';

    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max_bits = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max_bits = 128;
    } else {
        return -1;
    }

    uint64_t bits = max_bits;
    if (slash) {
        const char *end;
        if (cfg_digits(slash + 1, &bits, &end) < 0 || *end != '\0' || bits > max_bits)
            return -1;
    }
    out->bits = (uint8_t)bits;

    /* "10.1.2.3/8" means 10.0.0.0/8: clearing the host bits here lets a
     * matcher compare the masked client address with <addr> directly. */
    for (unsigned i = (unsigned)bits / 8; i < max_bits / 8; i++)
        out->addr[i] &= i == bits / 8 ? (uint8_t)(0xff00u >> (bits % 8)) : 0;
    return 0;
}

int cfg_parse_addr(const char *s, struct cfg_addr *out, const char **why)
{
    char host[sizeof out->text];
    const char *host_start, *port;
    size_t hlen, len = strlen(s);
    struct addrinfo hints, *res;

    if (len >= sizeof out->text) {
        *why = "address too long";
        return -1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) {
            *why = "missing ']' after an IPv6 address (use [::1]:8080)";
            return -1;
        }
        if (close[1] != ':') {
            *why = "missing port (use [::1]:8080)";
            return -1;
        }
        host_start = s + 1;
        hlen = (size_t)(close - host_start);
        port = close + 2;
        /* Brackets hold an address, never a name. */
        hints.ai_family = AF_INET6;
        hints.ai_flags |= AI_NUMERICHOST;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing port (use host:port)";
            return -1;
        }
        if (memchr(s, ':', (size_t)(colon - s))) {
            *why = "an IPv6 address needs brackets (use [::1]:8080)";
            return -1;
        }
        host_start = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        hints.ai_family = AF_UNSPEC;
    }
    if (hlen == 0) {
        *why = "missing host (use 0.0.0.0:PORT for every IPv4 address)";
        return -1;
    }

    uint64_t pn;
    const char *end;
    if (cfg_digits(port, &pn, &end) < 0 || *end != '\0' || pn < 1 || pn > 65535) {
        *why = "bad port (use 1-65535)";
        return -1;
    }
    memcpy(host, host_start, hlen);
    host[hlen] = '\0';

    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        *why = (hints.ai_flags & AI_NUMERICHOST) ? "bad IPv6 address" : gai_strerror(rc);
        return -1;
    }
    /* The first answer, as the resolver orders them (RFC 6724): binding or
     * connecting to every answer is a different feature. */
    memset(out, 0, sizeof *out);
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->sa_len = res->ai_addrlen;
    memcpy(out->text, s, len + 1);
    freeaddrinfo(res);
    return 0;
}

struct cfg_str {
    char *p;
    size_t len, cap;
};

static void cfg_str_add(struct cfg_str *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = sl_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static const char *cfg_process_getenv(const char *name, void *ctx)
{
    return getenv(name);
}

static int cfg_env_name_char(char c, int first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
}

/* One pass over <s>: with <b> NULL it only checks the syntax; with <b> it
 * looks variables up and appends the result. The loader relies on the split:
 * because the syntax is checked before any lookup, a failed expansion that
 * made lookups failed on the last one, so it can name the variable. */
static int cfg_env_pass(const char *s, cfg_getenv_fn getenv_fn, void *ctx, struct cfg_str *b,
                        const char **why)
{
    const char *p = s;

    while (*p) {
        if (p[0] != '$' || p[1] != '{') {
            const char *next = strchr(p + 1, '$');
            size_t n = next ? (size_t)(next - p) : strlen(p);
            if (b)
                cfg_str_add(b, p, n);
            p += n;
            continue;
        }
        const char *name = p + 2, *q = name;
        while (cfg_env_name_char(*q, q == name))
            q++;
        size_t nlen = (size_t)(q - name);
        const char *def = NULL, *close;
        if (nlen == 0 || nlen >= CFG_ENV_NAME_MAX) {
            *why = "bad variable name after '${' (use letters, digits and '_')";
            return -1;
        }
        if (q[0] == '}') {
            close = q;
        } else if (q[0] == ':' && q[1] == '-') {
            def = q + 2;
            close = strchr(def, '}');
            if (!close) {
                *why = "missing '}' after '${'";
                return -1;
            }
        } else if (q[0] == '\0') {
            *why = "missing '}' after '${'";
            return -1;
        } else {
            *why = "bad variable reference (use ${NAME} or ${NAME:-default})";
            return -1;
        }
        if (b) {
            char key[CFG_ENV_NAME_MAX];
            memcpy(key, name, nlen);
            key[nlen] = '\0';
            const char *v = getenv_fn(key, ctx);
            /* As in the shell, ":-" also replaces a variable that is set
             * but empty. */
            if (v && (*v || !def)) {
                cfg_str_add(b, v, strlen(v));
            } else if (def) {
                cfg_str_add(b, def, (size_t)(close - def));
            } else {
                *why = "environment variable is not set and has no default";
                return -1;
            }
        }
        p = close + 1;
    }
    return 0;
}

char *cfg_expand_env(const char *s, cfg_getenv_fn getenv_fn, void *ctx, const char **why)
{
    struct cfg_str b = {0};

    if (cfg_env_pass(s, getenv_fn, ctx, NULL, why) < 0)
        return NULL;
    if (cfg_env_pass(s, getenv_fn ? getenv_fn : cfg_process_getenv, ctx, &b, why) < 0) {
        free(b.p);
        return NULL;
    }
    if (!b.p)
        cfg_str_add(&b, "", 0);
    return b.p;
}
