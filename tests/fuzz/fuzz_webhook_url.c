/* libFuzzer harness: the alert webhook's URL from the config
 * (quota_url_parse, quota/webhook.h). Input: the URL (up to its first NUL).
 *
 * A refused URL has a reason. An accepted one has the scheme it starts
 * with, a host of 1..QUOTA_URL_HOST_MAX allowed characters (or an IPv6
 * literal), a port 1..65535 (80 or 443 when none is named), a target of
 * visible ASCII starting with '/'; and the URL put back together from
 * those parts parses to the same parts. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "quota/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static void check_parts(const struct quota_url *u)
{
    size_t hlen = strnlen(u->host, sizeof(u->host));
    if (hlen == 0 || hlen > QUOTA_URL_HOST_MAX)
        FUZZ_ABORT();
    unsigned char addr[16];
    if (u->ipv6) {
        if (inet_pton(AF_INET6, u->host, addr) != 1)
            FUZZ_ABORT();
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!host_char(u->host[i]))
                FUZZ_ABORT();
    }
    if (u->port < 1 || u->port > 65535)
        FUZZ_ABORT();
    if (!u->port_given && u->port != (u->tls ? 443 : 80))
        FUZZ_ABORT();
    size_t tlen = strnlen(u->target, sizeof(u->target));
    if (tlen == 0 || tlen > QUOTA_URL_TARGET_MAX || u->target[0] != '/')
        FUZZ_ABORT();
    for (size_t i = 0; i < tlen; i++)
        if (u->target[i] <= 0x20 || u->target[i] >= 0x7f || u->target[i] == '#')
            FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    struct quota_url *u = malloc(sizeof(*u)), *again = malloc(sizeof(*again));
    const char *why = NULL;
    if (quota_url_parse(s, u, &why) != 0) {
        if (!why || !why[0])
            FUZZ_ABORT();
    } else {
        if (u->tls ? strncasecmp(s, "https://", 8) != 0 : strncasecmp(s, "http://", 7) != 0)
            FUZZ_ABORT();
        check_parts(u);
        /* Put back together, it reads the same. */
        size_t cap = 32 + sizeof(u->host) + sizeof(u->target);
        char *canon = malloc(cap);
        snprintf(canon, cap, "%s://%s%s%s", u->tls ? "https" : "http", u->ipv6 ? "[" : "", u->host,
                 u->ipv6 ? "]" : "");
        if (u->port_given)
            snprintf(canon + strlen(canon), cap - strlen(canon), ":%d", u->port);
        snprintf(canon + strlen(canon), cap - strlen(canon), "%s", u->target);
        why = NULL;
        if (quota_url_parse(canon, again, &why) != 0)
            FUZZ_ABORT();
        if (again->tls != u->tls || again->ipv6 != u->ipv6 || strcmp(again->host, u->host) != 0 ||
            again->port != u->port || again->port_given != u->port_given ||
            strcmp(again->target, u->target) != 0)
            FUZZ_ABORT();
        free(canon);
    }
    free(u);
    free(again);
    free(s);
    return 0;
}
