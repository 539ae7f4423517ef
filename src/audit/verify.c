/* Checking audit files (audit/verify.h). */
#include "audit/verify.h"

#include <errno.h>

#include "audit/line.h"

struct audit_verifier {
    const unsigned char *key;
    bool started; /* <chain> holds where the chain stands */
    struct audit_chain chain;
    unsigned long long lines;
};

/* Checks line <n> of <path>, <line>/<len> without its newline. NULL, or
 * why it does not check (in <why>, <cap> bytes). */
static const char *audit_verify_line(struct audit_verifier *v, const char *line, size_t len,
                                     char *why, size_t cap)
{
    struct audit_line l;
    const char *bad = audit_line_parse(line, len, &l);
    if (bad) {
        snprintf(why, cap, "not an audit line (%s): edited or damaged", bad);
        return why;
    }
    if (l.opens) {
        if (v->started && strcmp(l.prev, v->chain.mac) != 0)
            return "chain break: this file does not follow the line before it (a file or the "
                   "lines after it missing, or files given out of order: oldest first)";
        if (!v->started) {
            memcpy(v->chain.mac, l.prev, sizeof(v->chain.mac));
            v->chain.seq = l.seq - 1;
            v->started = true;
        }
    } else if (!v->started) {
        return "the chain's start is missing (a file begins with an audit.open line): lines "
               "deleted before this one";
    }
    if (l.seq > v->chain.seq + 1) {
        snprintf(why, cap, "%llu line(s) missing before this one (seq %llu follows %llu)",
                 (unsigned long long)(l.seq - v->chain.seq - 1), (unsigned long long)l.seq,
                 (unsigned long long)v->chain.seq);
        return why;
    }
    if (l.seq <= v->chain.seq) {
        snprintf(why, cap, "out of order (seq %llu after %llu): lines moved or repeated",
                 (unsigned long long)l.seq, (unsigned long long)v->chain.seq);
        return why;
    }
    if (!audit_line_mac_ok(line, len, v->chain.mac, v->key))
        return "edited: its mac does not match its content (or the key is not the log's)";
    memcpy(v->chain.mac, l.mac, sizeof(v->chain.mac));
    v->chain.seq = l.seq;
    return NULL;
}

static enum audit_verdict audit_verify_file(struct audit_verifier *v, const char *path,
                                            struct buf *msg)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        buf_appendf(msg, "%s: %s", path, strerror(errno));
        return AUDIT_UNREADABLE;
    }
    enum audit_verdict res = AUDIT_INTACT;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long long n = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        n++;
        v->lines++;
        if (line[got - 1] != '\n') {
            buf_appendf(msg, "%s:%llu: truncated: the last line has no newline (cut short)", path,
                        n);
            res = AUDIT_TAMPERED;
            break;
        }
        char why[256];
        const char *bad = audit_verify_line(v, line, (size_t)got - 1, why, sizeof(why));
        if (bad) {
            buf_appendf(msg, "%s:%llu: %s", path, n, bad);
            res = AUDIT_TAMPERED;
            break;
        }
    }
    if (res == AUDIT_INTACT && ferror(f)) {
        buf_appendf(msg, "%s: %s", path, strerror(errno));
        res = AUDIT_UNREADABLE;
    }
    free(line);
    fclose(f);
    return res;
}

enum audit_verdict audit_verify(const char *const *paths, int n, const unsigned char key[32],
                                struct buf *msg)
{
    struct audit_verifier v = {.key = key};
    audit_chain_init(&v.chain);
    for (int i = 0; i < n; i++) {
        enum audit_verdict res = audit_verify_file(&v, paths[i], msg);
        if (res != AUDIT_INTACT)
            return res;
    }
    buf_appendf(msg, "ok: %llu lines", v.lines);
    return AUDIT_INTACT;
}
