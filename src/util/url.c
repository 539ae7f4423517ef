#include "util/url.h"

#include <stdbool.h>
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
