/* The RFC 4180 writer of usage reports (usage/csv.h). */
#include "usage/csv.h"

#include <string.h>

void usage_csv_field(struct buf *b, const char *s, size_t len, bool first)
{
    if (!first)
        buf_append(b, ",", 1);
    bool quote = false;
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        buf_append(b, s, len);
        return;
    }
    buf_append(b, "\"", 1);
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) {
            buf_append(b, p, (size_t)(end - p));
            break;
        }
        buf_append(b, p, (size_t)(q - p) + 1);
        buf_append(b, "\"", 1); /* the quote, doubled */
        p = q + 1;
    }
    buf_append(b, "\"", 1);
}

void usage_csv_str(struct buf *b, const char *s, bool first)
{
    usage_csv_field(b, s, strlen(s), first);
}

void usage_csv_end(struct buf *b)
{
    buf_append(b, "\r\n", 2);
}
