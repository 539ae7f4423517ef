/* Loading: YAML text -> struct config (the walker over the core's and the
 * modules' sections), errors in file order, reference counting, and route
 * matching. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/walker.h"
#include "util/arena.h"
#include "util/mem.h"

/* Most configs fit in the first block. */
#define CFG_ARENA_FIRST (16u << 10)

/* libyaml reports its own allocation failures; they end the process as
 * sl_malloc's do. */
static void cfg_yaml_oom(void)
{
    fputs("sluice: out of memory parsing YAML\n", stderr);
    abort();
}

/* The errors of <cx> as "FILE:LINE: message" lines, in file order. */
static char *cfg_join_errors(struct cfg_ctx *cx)
{
    size_t total = 1, used = 0;
    struct cfg_err *e = cx->errs;
    int n = cx->n_errs;
    char *out;

    /* Insertion sort: stable, so two errors on one line keep their order. */
    for (int i = 1; i < n; i++) {
        struct cfg_err t = e[i];
        int j = i;
        for (; j > 0 && e[j - 1].line > t.line; j--)
            e[j] = e[j - 1];
        e[j] = t;
    }
    for (int i = 0; i < n; i++)
        total += strlen(cx->file) + strlen(e[i].msg) + 16;
    total += strlen(cx->file) + 64;
    out = sl_calloc(1, total);
    for (int i = 0; i < n; i++) {
        if (e[i].line > 0)
            used += (size_t)snprintf(out + used, total - used, "%s%s:%d: %s", i ? "\n" : "",
                                     cx->file, e[i].line, e[i].msg);
        else
            used += (size_t)snprintf(out + used, total - used, "%s%s: %s", i ? "\n" : "", cx->file,
                                     e[i].msg);
    }
    if (cx->truncated)
        snprintf(out + used, total - used, "\n%s: too many errors; the first %d are shown",
                 cx->file, n);
    return out;
}

__attribute__((format(printf, 2, 3))) static void cfg_fail(char **err, const char *fmt, ...)
{
    char msg[CFG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *err = sl_strdup(msg);
}

/* The line of byte <offset> in <s>: reader errors (bad UTF-8, control
 * characters) carry an offset but no mark. */
static int cfg_offset_line(const char *s, size_t len, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && i < len; i++)
        line += s[i] == '\n';
    return line;
}

static void cfg_yaml_error(yaml_parser_t *parser, const char *yaml, size_t len, const char *name,
                           char **err)
{
    if (parser->error == YAML_MEMORY_ERROR)
        cfg_yaml_oom();
    int line = parser->error == YAML_READER_ERROR
                   ? cfg_offset_line(yaml, len, parser->problem_offset)
                   : (int)parser->problem_mark.line + 1;
    cfg_fail(err, "%s:%d: YAML syntax error: %s", name, line,
             parser->problem ? parser->problem : "unknown problem");
}

/* Reads document <doc> into a new config; NULL with *<err> set when it is
 * not valid. */
static struct config *cfg_build(yaml_document_t *doc, const char *name, cfg_getenv_fn getenv_fn,
                                void *getenv_ctx, char **err)
{
    struct cfg_ctx *cx = sl_calloc(1, sizeof *cx);
    struct arena *a = arena_new(CFG_ARENA_FIRST);
    struct config *c = arena_calloc(a, sizeof *c);

    c->refs = 1;
    c->arena = a;
    c->path = arena_strndup(a, name, strlen(name));
    cx->c = c;
    cx->file = name;
    cx->doc = doc;
    cx->getenv_fn = getenv_fn;
    cx->getenv_ctx = getenv_ctx;
    cfg_read_top(cx, yaml_document_get_root_node(doc));
    if (cx->n_errs) {
        *err = cfg_join_errors(cx);
        arena_free(a);
        c = NULL;
    }
    free(cx);
    return c;
}

/* libyaml builds a document in time that grows with the square of its
 * nesting (100k levels: 25 s), before any schema could refuse it: so the
 * events are scanned first, in linear time, and a document nested deeper
 * than CFG_MAX_DEPTH is refused with the line where it goes too deep. 0,
 * or -1 with *<err> set (syntax errors are left to the loader). */
static int cfg_check_depth(const char *yaml, size_t len, const char *name, char **err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, rc = 0;
    if (!yaml_parser_initialize(&parser))
        cfg_yaml_oom();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev))
            break; /* the loader reports it */
        yaml_event_type_t t = ev.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            if (++depth > CFG_MAX_DEPTH) {
                cfg_fail(err, "%s:%d: nested deeper than %d levels", name,
                         (int)ev.start_mark.line + 1, CFG_MAX_DEPTH);
                rc = -1;
            }
        } else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (rc < 0 || t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

struct config *cfg_load_string(const char *yaml, size_t len, const char *name,
                               cfg_getenv_fn getenv_fn, void *getenv_ctx, char **err)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct config *c = NULL;

    *err = NULL;
    if (len > SL_MAX_CONFIG_BYTES) {
        cfg_fail(err, "%s: too large (the limit is %u bytes)", name, (unsigned)SL_MAX_CONFIG_BYTES);
        return NULL;
    }
    if (cfg_check_depth(yaml, len, name, err) < 0)
        return NULL;
    if (!yaml_parser_initialize(&parser))
        cfg_yaml_oom();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        cfg_yaml_error(&parser, yaml, len, name, err);
        yaml_parser_delete(&parser);
        return NULL;
    }
    /* A second document would be silently ignored; say so instead. */
    if (!yaml_parser_load(&parser, &extra)) {
        cfg_yaml_error(&parser, yaml, len, name, err);
    } else {
        if (yaml_document_get_root_node(&extra))
            cfg_fail(err, "%s:%d: only one YAML document is allowed", name,
                     (int)extra.start_mark.line + 1);
        else
            c = cfg_build(&doc, name, getenv_fn, getenv_ctx, err);
        yaml_document_delete(&extra);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return c;
}

struct config *cfg_load(const char *path, char **err)
{
    size_t cap = 64 << 10, len = 0;
    char *buf;
    int fd;

    *err = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_fail(err, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    buf = sl_malloc(cap);
    for (;;) {
        if (len == cap) {
            /* One byte past the limit is enough to know it is too large. */
            if (cap > SL_MAX_CONFIG_BYTES)
                break;
            cap = cap * 2 > SL_MAX_CONFIG_BYTES ? SL_MAX_CONFIG_BYTES + 1 : cap * 2;
            buf = sl_realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cfg_fail(err, "%s: cannot read: %s", path, strerror(errno));
            close(fd);
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    struct config *c = cfg_load_string(buf, len, path, NULL, NULL, err);
    free(buf);
    return c;
}

void cfg_ref(struct config *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void cfg_unref(struct config *c)
{
    /* Release/acquire so the thread that frees sees every other holder's
     * reads completed. */
    if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        arena_free(c->arena);
}

bool cfg_add_builtin_route(struct config *c, const char *path, const struct cfg_route *r)
{
    if (c->n_builtin_routes == SL_MAX_BUILTIN_ROUTES)
        return false;
    c->builtin_routes[c->n_builtin_routes++] = (struct cfg_builtin_route){path, r, false};
    return true;
}

bool cfg_add_builtin_prefix(struct config *c, const char *prefix, const struct cfg_route *r)
{
    if (c->n_builtin_routes == SL_MAX_BUILTIN_ROUTES)
        return false;
    c->builtin_routes[c->n_builtin_routes++] = (struct cfg_builtin_route){prefix, r, true};
    return true;
}

static bool cfg_route_matches(const struct cfg_route *r, const char *path, size_t len)
{
    if (r->match == CFG_MATCH_EXACT)
        return len == r->path_len && memcmp(path, r->path, len) == 0;
    return len >= r->path_len && memcmp(path, r->path, r->path_len) == 0;
}

const struct cfg_route *cfg_match_route(const struct config *c, const char *path, size_t len,
                                        int method)
{
    /* A method outside the mask (none today) can only match "any method". */
    uint64_t bit = method >= 0 && method < 64 ? 1ull << method : 0;

    for (int i = 0; i < c->n_builtin_routes; i++) {
        const struct cfg_builtin_route *b = &c->builtin_routes[i];
        size_t n = strlen(b->path);
        if ((b->prefix ? n <= len : n == len) && memcmp(b->path, path, n) == 0)
            return b->route;
    }
    for (int i = 0; i < c->n_routes; i++) {
        const struct cfg_route *r = &c->routes[i];
        if ((!r->methods || (r->methods & bit)) && cfg_route_matches(r, path, len))
            return r;
    }
    return NULL;
}
