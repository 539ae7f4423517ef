#include "util/mem.h"

#include <unistd.h>

void sl_fatal(const char *msg)
{
    if (write(2, msg, strlen(msg)) < 0) {
        /* nothing more to do: we are aborting */
    }
    abort();
}

static void sl_oom(size_t n)
{
    char msg[80];
    snprintf(msg, sizeof(msg), "sluice: out of memory allocating %zu bytes\n", n);
    sl_fatal(msg);
}

void *sl_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sl_oom(n);
    return p;
}

void *sl_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sl_oom(n * size);
    return p;
}

void *sl_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        sl_oom(n);
    return q;
}

char *sl_strdup(const char *s)
{
    return sl_strndup(s, strlen(s));
}

char *sl_strndup(const char *s, size_t n)
{
    char *p = sl_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sl_vstrdupf(const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = sl_malloc(n < 0 ? 1 : (size_t)n + 1);
    if (n < 0)
        s[0] = '\0';
    else
        vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    return s;
}
