/* YAML file -> struct config. Every key is one row of a table (name, setter,
 * offset, bounds, default), as nginx's ngx_command_t and Redis's
 * static_configs: the walker below knows nothing about particular keys, and
 * docs/configuration.md can be checked against the tables. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <llhttp.h>
#include <yaml.h>

#include "auth/jwt_verify.h"
#include "conf/conf.h"
#include "util/mem.h"

/* Error messages quote at most this much of a value: enough to recognise it,
 * short enough to keep one error on one screen line. */
#define CFG_QUOTE_MAX 80
#define CFG_MSG_MAX 512
#define CFG_PATH_MAX 256
/* Upstream names show up in logs and metric labels, where spaces and quotes
 * would need escaping. */
#define CFG_NAME_MAX 64

struct cfg_err {
    int line; /* 1-based; 0 when the message is about the file, not a line */
    char msg[CFG_MSG_MAX];
};

struct cfg_ctx {
    struct config *c;
    const char *file;
    yaml_document_t *doc;
    cfg_getenv_fn getenv_fn;
    void *getenv_ctx;
    char env_name[CFG_PATH_MAX]; /* the last variable looked up; see cfg_scalar */
    char path[CFG_PATH_MAX];     /* the key being read, "server.timeouts.idle" */
    size_t path_len;
    /* The line of the key being read: a block mapping or list starts on the
     * line after its key, and messages about the whole value (unsupported,
     * required) point at the key. */
    int key_line;
    bool upstreams_given; /* "upstreams:" had entries, or an error of its own */
    bool route_has_path;  /* the route being read had a path or prefix, valid or not */
    struct cfg_err errs[SL_MAX_CONFIG_ERRORS];
    int n_errs;
    bool truncated;
};

struct cfg_key;

/* Reads <node> (NULL: apply the row's default) into the struct at <base>. */
typedef void (*cfg_set_fn)(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base);

struct cfg_section {
    const struct cfg_key *keys; /* ends with a row whose name is NULL */
    /* Rules across keys, run after every key of the section was read; <line>
     * is the section's, 0 when it is absent. */
    void (*check)(struct cfg_ctx *cx, void *base, int line);
};

enum {
    CFG_REQUIRED = 1 << 0,   /* an error when absent */
    CFG_AUTO = 1 << 1,       /* integer that also accepts "auto" (one per online core) */
    CFG_NONEMPTY = 1 << 2,   /* string that must not be "" */
    CFG_IF_PRESENT = 1 << 3, /* section: absent means off, so no defaults or required keys */
};

/* One word of a key that takes one of a few words (`rejection: drf`). */
struct cfg_word {
    const char *name;
    int value;
};

struct cfg_key {
    const char *name;
    cfg_set_fn set;
    size_t off;       /* the value, from the start of the section's struct */
    size_t n_off;     /* lists: the int that counts the items */
    int64_t min, max; /* numbers: the value; lists: the number of items */
    const char *def;  /* the default, spelled as in a config file; NULL: zero */
    unsigned flags;
    const struct cfg_section *sub;
    size_t size; /* the value's size: integers are stored by width (int, uint32_t, ...) */
    const struct cfg_word *words; /* words: the accepted ones, ending with a NULL name */
};

/* One row per key, one constructor per kind of value (as Redis's
 * createIntConfig): <st> is the struct the section fills, <f> its field.
 * A list also names <n>, the int that counts its items, and bounds that
 * count with <lo>..<hi>. */
/* clang-format off */
#define CFG_FIELD_SIZE(st, f) sizeof(((st *)0)->f)
#define CFG_ROW(name, set, st, f, lo, hi, def, fl) \
    {name, set, offsetof(st, f), 0, lo, hi, def, fl, NULL, CFG_FIELD_SIZE(st, f), NULL}
#define CFG_INT(name, st, f, lo, hi, def, fl) CFG_ROW(name, cfg_set_int, st, f, lo, hi, def, fl)
#define CFG_DURATION(name, st, f, lo, hi, d) CFG_ROW(name, cfg_set_duration, st, f, lo, hi, d, 0)
#define CFG_SIZE(name, st, f, lo, hi, def) CFG_ROW(name, cfg_set_size, st, f, lo, hi, def, 0)
#define CFG_BOOL(name, st, f, def) CFG_ROW(name, cfg_set_bool, st, f, 0, 0, def, 0)
#define CFG_STRING(name, st, f, fl) CFG_ROW(name, cfg_set_string, st, f, 0, 0, NULL, fl)
#define CFG_ADDR(name, st, f, fl) CFG_ROW(name, cfg_set_addr, st, f, 0, 0, NULL, fl)
#define CFG_LIST(name, set, st, f, n, lo, hi, def, fl) \
    {name, set, offsetof(st, f), offsetof(st, n), lo, hi, def, fl, NULL, \
     CFG_FIELD_SIZE(st, f), NULL}
#define CFG_SECTION(name, st, f, sub, fl) \
    {name, cfg_set_section, offsetof(st, f), 0, 0, 0, NULL, fl, sub, CFG_FIELD_SIZE(st, f), NULL}
/* A section that also accepts off, false or no: absent or off leave it zeroed. */
#define CFG_SECTION_OR_OFF(name, st, f, sub) \
    {name, cfg_set_section_or_off, offsetof(st, f), 0, 0, 0, NULL, CFG_IF_PRESENT, sub, \
     CFG_FIELD_SIZE(st, f), NULL}
/* One of the words of <words>, stored as its value in an int or enum field. */
#define CFG_WORD(name, st, f, words, def) \
    {name, cfg_set_word, offsetof(st, f), 0, 0, 0, def, 0, NULL, CFG_FIELD_SIZE(st, f), words}
/* A key whose setter knows where its value goes. */
#define CFG_CUSTOM(name, set) {name, set, 0, 0, 0, 0, NULL, 0, NULL, 0, NULL}
#define CFG_UNSUPPORTED(name) CFG_CUSTOM(name, cfg_set_unsupported)
#define CFG_END {NULL, NULL, 0, 0, 0, 0, NULL, 0, NULL, 0, NULL}
/* clang-format on */

/* libyaml reports its own allocation failures; they end the process as
 * sl_malloc's do. */
static void cfg_yaml_oom(void)
{
    fputs("sluice: out of memory parsing YAML\n", stderr);
    abort();
}

/* ---- errors ---------------------------------------------------------- */

static int cfg_line(const yaml_node_t *node)
{
    return node ? (int)node->start_mark.line + 1 : 0;
}

__attribute__((format(printf, 3, 0))) static void cfg_verror(struct cfg_ctx *cx, int line,
                                                             const char *fmt, va_list ap)
{
    if (cx->n_errs == SL_MAX_CONFIG_ERRORS) {
        cx->truncated = true;
        return;
    }
    struct cfg_err *e = &cx->errs[cx->n_errs++];
    e->line = line;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    /* Values may hold newlines or escapes; the output is one error per line
     * and goes to a terminal. */
    for (char *p = e->msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

__attribute__((format(printf, 3, 4))) static void cfg_error(struct cfg_ctx *cx, int line,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verror(cx, line, fmt, ap);
    va_end(ap);
}

/* An error about the key being read: the message starts with its path. */
__attribute__((format(printf, 3, 4))) static void cfg_kerror(struct cfg_ctx *cx, int line,
                                                             const char *fmt, ...)
{
    char msg[CFG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cfg_error(cx, line, "%s: %s", cx->path_len ? cx->path : "top level", msg);
}

/* Appending to the key path returns the length to restore with
 * cfg_path_pop. A path too long for the buffer is cut, which only shortens
 * messages. */
static size_t cfg_path_end(struct cfg_ctx *cx, size_t old, int n)
{
    size_t room = sizeof cx->path - old;
    cx->path_len = n < 0 ? old : (size_t)n >= room ? sizeof cx->path - 1 : old + (size_t)n;
    return old;
}

static size_t cfg_path_key(struct cfg_ctx *cx, const char *name)
{
    size_t old = cx->path_len;
    return cfg_path_end(
        cx, old, snprintf(cx->path + old, sizeof cx->path - old, "%s%s", old ? "." : "", name));
}

static size_t cfg_path_index(struct cfg_ctx *cx, int i)
{
    size_t old = cx->path_len;
    return cfg_path_end(cx, old, snprintf(cx->path + old, sizeof cx->path - old, "[%d]", i));
}

static void cfg_path_pop(struct cfg_ctx *cx, size_t old)
{
    cx->path_len = old;
    cx->path[old] = '\0';
}

static const char *cfg_node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a single value";
    }
}

static void cfg_type_error(struct cfg_ctx *cx, yaml_node_t *node, const char *want)
{
    cfg_kerror(cx, cfg_line(node), "expected %s, got %s", want, cfg_node_kind(node));
}

/* Messages quote bounds as the user would write them. */
static void cfg_fmt_duration(char *buf, size_t size, int64_t ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, size, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%lldms", (long long)ms);
}

static void cfg_fmt_size(char *buf, size_t size, uint64_t n)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        unsigned shift = (unsigned)(3 - i) * 10;
        if (n != 0 && n % (1ull << shift) == 0) {
            snprintf(buf, size, "%llu%c", (unsigned long long)(n >> shift), units[i]);
            return;
        }
    }
    snprintf(buf, size, "%llu", (unsigned long long)n);
}

/* ---- scalars --------------------------------------------------------- */

static bool cfg_is_null(const yaml_node_t *node)
{
    if (!node || node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *cfg_record_getenv(const char *name, void *arg)
{
    struct cfg_ctx *cx = arg;
    snprintf(cx->env_name, sizeof cx->env_name, "%s", name);
    return cx->getenv_fn ? cx->getenv_fn(name, cx->getenv_ctx) : getenv(name);
}

/* The value of scalar <node> with ${VAR} expanded, or for NULL the default of
 * row <k>. Malloc'd; NULL after reporting why there is none. */
static char *cfg_scalar(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node)
{
    if (!node)
        return sl_strdup(k->def);
    if (node->type != YAML_SCALAR_NODE) {
        cfg_type_error(cx, node, "a single value");
        return NULL;
    }
    if (cfg_is_null(node)) {
        cfg_kerror(cx, cfg_line(node), "missing value");
        return NULL;
    }
    const char *v = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length;
    if (memchr(v, '\0', len)) {
        cfg_kerror(cx, cfg_line(node), "value contains a NUL byte");
        return NULL;
    }
    if (!memchr(v, '$', len))
        return sl_strndup(v, len);

    const char *why;
    cx->env_name[0] = '\0';
    char *s = cfg_expand_env(v, cfg_record_getenv, cx, &why);
    if (s)
        return s;
    /* cfg_expand_env checks the syntax before any lookup, so a failure after
     * a lookup is that variable being unset. */
    if (cx->env_name[0])
        cfg_kerror(cx, cfg_line(node),
                   "environment variable '%s' is not set (give a default with ${%s:-value})",
                   cx->env_name, cx->env_name);
    else
        cfg_kerror(cx, cfg_line(node), "%s in '%.*s'", why, CFG_QUOTE_MAX, v);
    return NULL;
}

/* A whole decimal integer. A sign is allowed, and overflow saturates, so
 * that "-1" and "99999999999999999999" read as out of range rather than as
 * garbage. */
static int cfg_int64(const char *s, int64_t *out)
{
    char *end;
    if (!((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Stores <v>, already checked against the row's bounds, into the integer
 * field of row <k>, whatever its width: rows fill int, enum, uint32_t and
 * uint64_t fields. Through memcpy, as the field's type is only known by its
 * size; a value that fits the field has the same bytes signed or not. */
static void cfg_store_int(const struct cfg_key *k, void *base, int64_t v)
{
    char *dst = (char *)base + k->off;
    if (k->size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(dst, &x, sizeof x);
    } else if (k->size == sizeof(uint64_t)) {
        memcpy(dst, &v, sizeof v);
    } else {
        /* A row with any other width is a bug in the tables below. */
        fprintf(stderr, "sluice: config key '%s' has an integer of %zu bytes\n", k->name, k->size);
        abort();
    }
}

static void cfg_set_int(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    int64_t v;
    if (!s)
        return;
    if ((k->flags & CFG_AUTO) && strcmp(s, "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        v = n < k->min ? k->min : n > k->max ? k->max : n;
    } else if (cfg_int64(s, &v) < 0) {
        cfg_kerror(cx, cfg_line(node), "'%.*s' is not a whole number%s", CFG_QUOTE_MAX, s,
                   k->flags & CFG_AUTO ? " or auto" : "");
        goto out;
    } else if (v < k->min || v > k->max) {
        cfg_kerror(cx, cfg_line(node), "%.*s is out of range (%lld..%lld)", CFG_QUOTE_MAX, s,
                   (long long)k->min, (long long)k->max);
        goto out;
    }
    cfg_store_int(k, base, v);
out:
    free(s);
}

static void cfg_set_duration(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                             void *base)
{
    char *s = cfg_scalar(cx, k, node);
    int64_t v;
    if (!s)
        return;
    if (cfg_parse_duration_ms(s, &v) < 0) {
        cfg_kerror(cx, cfg_line(node), "bad duration '%.*s' (use 500ms, 30s, 5m, 2h, 7d)",
                   CFG_QUOTE_MAX, s);
    } else if (v < k->min || v > k->max) {
        char lo[32], hi[32];
        cfg_fmt_duration(lo, sizeof lo, k->min);
        cfg_fmt_duration(hi, sizeof hi, k->max);
        cfg_kerror(cx, cfg_line(node), "%s is out of range (%s..%s)", s, lo, hi);
    } else {
        *(int64_t *)((char *)base + k->off) = v;
    }
    free(s);
}

static void cfg_set_size(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    uint64_t v;
    if (!s)
        return;
    if (cfg_parse_size(s, &v) < 0) {
        cfg_kerror(cx, cfg_line(node), "bad size '%.*s' (use 512, 16k, 10m, 1g)", CFG_QUOTE_MAX, s);
    } else if (v < (uint64_t)k->min || v > (uint64_t)k->max) {
        char lo[32], hi[32];
        cfg_fmt_size(lo, sizeof lo, (uint64_t)k->min);
        cfg_fmt_size(hi, sizeof hi, (uint64_t)k->max);
        cfg_kerror(cx, cfg_line(node), "%s is out of range (%s..%s)", s, lo, hi);
    } else {
        *(uint64_t *)((char *)base + k->off) = v;
    }
    free(s);
}

static void cfg_set_bool(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    /* YAML 1.1's words, which is what operators coming from Ansible or
     * Kubernetes expect. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *(bool *)((char *)base + k->off) = strcasecmp(s, yes[i]) == 0;
            free(s);
            return;
        }
    }
    cfg_kerror(cx, cfg_line(node), "'%.*s' is not a boolean (use true or false)", CFG_QUOTE_MAX, s);
    free(s);
}

static void cfg_set_string(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    char *s = cfg_scalar(cx, k, node);
    char **dst = (char **)((char *)base + k->off);
    if (!s)
        return;
    if ((k->flags & CFG_NONEMPTY) && s[0] == '\0') {
        cfg_kerror(cx, cfg_line(node), "must not be empty");
        free(s);
        return;
    }
    free(*dst);
    *dst = s;
}

static void cfg_set_word(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    char list[CFG_QUOTE_MAX * 2];
    size_t used = 0;
    if (!s)
        return;
    for (const struct cfg_word *w = k->words; w->name; w++) {
        if (strcmp(s, w->name) == 0) {
            cfg_store_int(k, base, w->value);
            free(s);
            return;
        }
    }
    /* The words are short and few; the list is cut rather than overflow. */
    list[0] = '\0';
    for (const struct cfg_word *w = k->words; w->name && used < sizeof list; w++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", w->name);
    cfg_kerror(cx, cfg_line(node), "unknown value '%.*s' (use %s)", CFG_QUOTE_MAX, s, list);
    free(s);
}

static void cfg_set_addr(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    const char *why;
    if (!s)
        return;
    if (cfg_parse_addr(s, (struct cfg_addr *)((char *)base + k->off), &why) < 0)
        cfg_kerror(cx, cfg_line(node), "bad address '%.*s': %s", CFG_QUOTE_MAX, s, why);
    free(s);
}

/* ---- lists ----------------------------------------------------------- */

/* Reads item <i> with value <s> into the list of row <k> in <base>; 0 or -1
 * after reporting. */
typedef int (*cfg_item_fn)(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                           int i, void *base);

/* Calls <item> for each item of list <node>. One value stands for a list of
 * one, as "listen: 0.0.0.0:80" is what people write; a null node is the empty
 * list. Returns how many items were read, -1 after an error. */
static int cfg_each(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base,
                    cfg_item_fn item)
{
    int n = 0, rc = 0;

    if (!node || (node->type == YAML_SCALAR_NODE && !cfg_is_null(node))) {
        char *s = cfg_scalar(cx, k, node);
        if (!s)
            return -1;
        rc = item(cx, k, s, cfg_line(node), 0, base);
        free(s);
        n = 1;
    } else if (node->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = node->data.sequence.items.start;
        ptrdiff_t count = node->data.sequence.items.top - it;
        if (count > k->max) {
            cfg_kerror(cx, cx->key_line, "too many entries (%td; at most %lld)", count,
                       (long long)k->max);
            return -1;
        }
        for (; it < node->data.sequence.items.top; it++, n++) {
            yaml_node_t *child = yaml_document_get_node(cx->doc, *it);
            size_t old = cfg_path_index(cx, n);
            char *s = cfg_scalar(cx, k, child);
            if (!s || item(cx, k, s, cfg_line(child), n, base) < 0)
                rc = -1;
            free(s);
            cfg_path_pop(cx, old);
        }
    } else if (!cfg_is_null(node)) {
        cfg_type_error(cx, node, "a list");
        return -1;
    }
    if (rc == 0 && n < k->min) {
        cfg_kerror(cx, cx->key_line, "needs at least %lld entr%s", (long long)k->min,
                   k->min == 1 ? "y" : "ies");
        return -1;
    }
    return rc < 0 ? -1 : n;
}

static int cfg_addr_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                         int i, void *base)
{
    struct cfg_addr *a = (struct cfg_addr *)((char *)base + k->off) + i;
    const char *why;
    if (cfg_parse_addr(s, a, &why) == 0)
        return 0;
    cfg_kerror(cx, line, "bad address '%.*s': %s", CFG_QUOTE_MAX, s, why);
    return -1;
}

static void cfg_set_addr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    int n = cfg_each(cx, k, node, base, cfg_addr_item);
    *(int *)((char *)base + k->n_off) = n < 0 ? 0 : n;
}

static int cfg_cidr_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                         int i, void *base)
{
    struct cfg_cidr *net = (struct cfg_cidr *)((char *)base + k->off) + i;
    if (cfg_parse_cidr(s, net) == 0)
        return 0;
    cfg_kerror(cx, line, "bad CIDR '%.*s' (use 10.0.0.0/8, 2001:db8::/32 or one address)",
               CFG_QUOTE_MAX, s);
    return -1;
}

static void cfg_set_cidr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    int n = cfg_each(cx, k, node, base, cfg_cidr_item);
    *(int *)((char *)base + k->n_off) = n < 0 ? 0 : n;
}

/* The methods the HTTP parser can report, by the enum values it reports them
 * with; llhttp_method_name aborts on a value outside this map, so the map,
 * not a 0..63 loop, says which values exist. RTSP's methods are left out:
 * the gateway parses HTTP only, so a route naming one could never match. */
static const llhttp_method_t cfg_http_methods[] = {
#define CFG_METHOD(num, name, string) HTTP_##name,
    HTTP_METHOD_MAP(CFG_METHOD)
#undef CFG_METHOD
};

static int cfg_method_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                           int i, void *base)
{
    for (size_t m = 0; m < sizeof cfg_http_methods / sizeof cfg_http_methods[0]; m++) {
        if (cfg_http_methods[m] < 64 && strcmp(llhttp_method_name(cfg_http_methods[m]), s) == 0) {
            *(uint64_t *)((char *)base + k->off) |= 1ull << cfg_http_methods[m];
            return 0;
        }
    }
    cfg_kerror(cx, line, "unknown method '%.*s' (methods are upper case: GET, POST, ...)",
               CFG_QUOTE_MAX, s);
    return -1;
}

static void cfg_set_methods(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                            void *base)
{
    cfg_each(cx, k, node, base, cfg_method_item);
}

static int cfg_limit_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                          int i, void *base)
{
    struct limit *l = *(struct limit **)((char *)base + k->off) + i;
    const char *why;
    if (lim_parse(s, l, &why) == 0)
        return 0;
    cfg_kerror(cx, line, "bad limit '%.*s': %s", CFG_QUOTE_MAX, s, why);
    return -1;
}

/* A list of limit strings into a struct limit array of its own size (the
 * field at k->off), counted by the int at k->n_off. */
static void cfg_set_limit_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                               void *base)
{
    struct limit **dst = (struct limit **)((char *)base + k->off);
    size_t cap = 1; /* a single value is a list of one */

    if (node && node->type == YAML_SEQUENCE_NODE) {
        ptrdiff_t count = node->data.sequence.items.top - node->data.sequence.items.start;
        /* Past the bound cfg_each reports the list before reading an item. */
        if (count > 0 && count <= k->max)
            cap = (size_t)count;
    }
    *dst = sl_calloc(cap, sizeof **dst);
    int n = cfg_each(cx, k, node, base, cfg_limit_item);
    *(int *)((char *)base + k->n_off) = n < 0 ? 0 : n;
}

static int cfg_header_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                           int i, void *base)
{
    struct cfg_limits *lim = base;
    if (strcmp(s, "x-ratelimit") == 0) {
        lim->header_xratelimit = true;
        return 0;
    }
    if (strcmp(s, "ietf") == 0) {
        lim->header_ietf = true;
        return 0;
    }
    cfg_kerror(cx, line, "unknown value '%.*s' (use x-ratelimit, ietf)", CFG_QUOTE_MAX, s);
    return -1;
}

static void cfg_set_headers(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                            void *base)
{
    cfg_each(cx, k, node, base, cfg_header_item);
}

/* ---- sections -------------------------------------------------------- */

static void cfg_walk(struct cfg_ctx *cx, const struct cfg_section *sec, yaml_node_t *node,
                     void *base, int line);

static void cfg_set_section(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                            void *base)
{
    cfg_walk(cx, k->sub, node, (char *)base + k->off, cx->key_line);
}

/* A section that may also be turned off with a word (`cache: off`). Off
 * does not walk the section, so neither defaults nor the section's check
 * (which sets "enabled") run: the struct stays zeroed, as when absent. */
static void cfg_set_section_or_off(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                   void *base)
{
    if (!node || node->type != YAML_SCALAR_NODE || cfg_is_null(node)) {
        cfg_set_section(cx, k, node, base);
        return;
    }
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    /* The words that read as false elsewhere; "on" would need the keys
     * anyway, so it is an error that names them. */
    if (strcasecmp(s, "off") != 0 && strcasecmp(s, "false") != 0 && strcasecmp(s, "no") != 0) {
        const struct cfg_key *req = k->sub->keys;
        while (req->name && !(req->flags & CFG_REQUIRED))
            req++;
        cfg_kerror(cx, cfg_line(node), "'%.*s' is not off (use off, or a mapping%s%s%s)",
                   CFG_QUOTE_MAX, s, req->name ? " such as {" : "", req->name ? req->name : "",
                   req->name ? ": ...}" : "");
    }
    free(s);
}

static void cfg_set_unsupported(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                void *base)
{
    /* Never ignored: an operator who wrote "tiers:" believes the API is
     * protected by it. */
    cfg_error(cx, cx->key_line, "'%s' is not supported by this version of sluice yet", cx->path);
}

static const struct cfg_key *cfg_find_key(const struct cfg_section *sec, const char *name)
{
    for (const struct cfg_key *k = sec->keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* Reads mapping <node> (NULL or null: absent or empty) into <base> by the
 * rows of <sec>; <line> is where the section starts, for messages. Keys are
 * read in the table's order, not the file's, so a row may rely on the rows
 * above it (routes name upstreams); the errors are put back in file order at
 * the end. A table has at most 64 rows. */
static void cfg_walk(struct cfg_ctx *cx, const struct cfg_section *sec, yaml_node_t *node,
                     void *base, int line)
{
    yaml_node_t *vals[64] = {0};
    int lines[64] = {0};

    if (node && node->type != YAML_MAPPING_NODE && !cfg_is_null(node)) {
        cfg_type_error(cx, node, "a mapping");
        return;
    }
    if (node && node->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
            if (key->type != YAML_SCALAR_NODE) {
                cfg_kerror(cx, cfg_line(key), "keys must be names, got %s", cfg_node_kind(key));
                continue;
            }
            const char *name = (const char *)key->data.scalar.value;
            const struct cfg_key *k = cfg_find_key(sec, name);
            size_t old = cfg_path_key(cx, name);
            if (!k) {
                cfg_error(cx, cfg_line(key), "unknown key '%s'", cx->path);
            } else if (vals[k - sec->keys]) {
                cfg_error(cx, cfg_line(key), "duplicate key '%s'", cx->path);
            } else {
                vals[k - sec->keys] = yaml_document_get_node(cx->doc, p->value);
                lines[k - sec->keys] = cfg_line(key);
            }
            cfg_path_pop(cx, old);
        }
    }
    for (const struct cfg_key *k = sec->keys; k->name; k++) {
        yaml_node_t *v = vals[k - sec->keys];
        size_t old = cfg_path_key(cx, k->name);
        cx->key_line = v ? lines[k - sec->keys] : line;
        if (v)
            k->set(cx, k, v, base);
        else if (k->flags & CFG_REQUIRED)
            cfg_kerror(cx, line, "required");
        else if (k->def || (k->sub && !(k->flags & CFG_IF_PRESENT)))
            k->set(cx, k, NULL, base);
        cfg_path_pop(cx, old);
    }
    if (sec->check)
        sec->check(cx, base, line);
}

/* ---- upstreams and routes -------------------------------------------- */

static bool cfg_good_name(const char *s, size_t len)
{
    if (len == 0 || len > CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static const struct cfg_key cfg_upstream_keys[] = {
    CFG_LIST("servers", cfg_set_addr_list, struct cfg_upstream, servers, n_servers, 1,
             SL_MAX_UPSTREAM_SERVERS, NULL, CFG_REQUIRED),
    CFG_INT("keepalive", struct cfg_upstream, keepalive, 0, 10000, "32", 0),
    CFG_END,
};
static const struct cfg_section cfg_upstream_section = {cfg_upstream_keys, NULL};

/* The text of mapping key <key>, naming a <what> (an upstream, a tier), or
 * NULL after reporting a key that is not a scalar. */
static const char *cfg_key_name(struct cfg_ctx *cx, yaml_node_t *key, const char *what, size_t *len)
{
    if (key->type != YAML_SCALAR_NODE) {
        cfg_kerror(cx, cfg_line(key), "%s names must be names, got %s", what, cfg_node_kind(key));
        return NULL;
    }
    *len = key->data.scalar.length;
    return (const char *)key->data.scalar.value;
}

/* How many entries the mapping or sequence <node> holds: 0 for null, -1
 * after reporting a node of another <type> (<expected> says what is wanted)
 * or more than <max> entries (<what> names them). */
static ptrdiff_t cfg_collection_size(struct cfg_ctx *cx, yaml_node_t *node, yaml_node_type_t type,
                                     const char *expected, const char *what, int max)
{
    if (cfg_is_null(node))
        return 0;
    if (node->type != type) {
        cfg_type_error(cx, node, expected);
        return -1;
    }
    ptrdiff_t count = type == YAML_MAPPING_NODE
                          ? node->data.mapping.pairs.top - node->data.mapping.pairs.start
                          : node->data.sequence.items.top - node->data.sequence.items.start;
    if (count > max) {
        cfg_kerror(cx, cx->key_line, "too many %s (%td; at most %d)", what, count, max);
        return -1;
    }
    return count;
}

static void cfg_set_upstreams(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    struct config *c = base;

    if (cfg_is_null(node))
        return; /* the top-level check reports that none is defined */
    cx->upstreams_given = node->type != YAML_MAPPING_NODE ||
                          node->data.mapping.pairs.top > node->data.mapping.pairs.start;
    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE, "a mapping of names to {servers: [...]}",
                            "upstreams", SL_MAX_UPSTREAMS);
    if (count <= 0)
        return;
    c->upstreams = sl_calloc((size_t)count, sizeof *c->upstreams);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "upstream", &len);
        if (!name)
            continue;
        if (!cfg_good_name(name, len) || memchr(name, '\0', len)) {
            cfg_kerror(cx, cfg_line(key),
                       "bad upstream name '%.*s' (letters, digits, '_', '-', '.'; at most %d)",
                       CFG_QUOTE_MAX, name, CFG_NAME_MAX);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < c->n_upstreams; i++)
            dup = dup || strcmp(c->upstreams[i].name, name) == 0;
        if (dup) {
            cfg_kerror(cx, cfg_line(key), "duplicate upstream '%s'", name);
            continue;
        }
        struct cfg_upstream *u = &c->upstreams[c->n_upstreams++];
        u->name = sl_strndup(name, len);
        size_t old = cfg_path_key(cx, name);
        cfg_walk(cx, &cfg_upstream_section, yaml_document_get_node(cx->doc, p->value), u,
                 cfg_line(key));
        cfg_path_pop(cx, old);
    }
}

/* ---- tiers and limits ------------------------------------------------ */

static const struct cfg_key cfg_tier_keys[] = {
    CFG_LIST("limits", cfg_set_limit_list, struct cfg_tier, limits, n_limits, 0,
             SL_MAX_LIMITS_PER_LIST, NULL, 0),
    /* Exempt wins over limits, which are still checked: a tier made exempt
     * for an incident keeps its limits, valid, for when it is not. */
    CFG_BOOL("exempt", struct cfg_tier, exempt, "false"),
    CFG_UNSUPPORTED("quota"),
    CFG_UNSUPPORTED("price_per_1k"),
    CFG_END,
};
static const struct cfg_section cfg_tier_section = {cfg_tier_keys, NULL};

static void cfg_set_tiers(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                          void *base)
{
    struct config *c = base;

    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_MAPPING_NODE,
                            "a mapping of tier names to {limits: [...]}", "tiers", SL_MAX_TIERS);
    if (count <= 0)
        return;
    c->tiers = sl_calloc((size_t)count, sizeof *c->tiers);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "tier", &len);
        if (!name)
            continue;
        /* Tier names come back in JWT claims and key records, are compared
         * as they are, and show up in metric labels. */
        if (!cfg_good_name(name, len) || memchr(name, '\0', len)) {
            cfg_kerror(cx, cfg_line(key),
                       "bad tier name '%.*s' (letters, digits, '_', '-', '.'; at most %d)",
                       CFG_QUOTE_MAX, name, CFG_NAME_MAX);
            continue;
        }
        if (cfg_find_tier(c, name)) {
            cfg_kerror(cx, cfg_line(key), "duplicate tier '%s'", name);
            continue;
        }
        struct cfg_tier *t = &c->tiers[c->n_tiers++];
        t->name = sl_strndup(name, len);
        t->line = cfg_line(key);
        size_t old = cfg_path_key(cx, name);
        cfg_walk(cx, &cfg_tier_section, yaml_document_get_node(cx->doc, p->value), t, t->line);
        cfg_path_pop(cx, old);
    }
}

const struct cfg_tier *cfg_find_tier(const struct config *c, const char *name)
{
    for (int i = 0; i < c->n_tiers; i++)
        if (strcmp(c->tiers[i].name, name) == 0)
            return &c->tiers[i];
    return NULL;
}

/* limits.algorithm, by the names algo.c knows. "concurrency" is one, but
 * of its own limits only: a default cannot turn "100/h" into a number of
 * requests in flight. */
static void cfg_set_algorithm(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                              void *base)
{
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    int a = lim_algorithm_from_name(s);
    if (a == LIM_CONCURRENCY)
        cfg_kerror(cx, cfg_line(node),
                   "concurrency cannot be a default (write 'concurrency N' as a limit of its own)");
    else if (a < 0)
        cfg_kerror(cx, cfg_line(node),
                   "unknown algorithm '%.*s' (use fixed_window, sliding_window, token_bucket)",
                   CFG_QUOTE_MAX, s);
    else
        cfg_store_int(k, base, a);
    free(s);
}

static const struct cfg_key cfg_limits_keys[] = {
    CFG_ROW("algorithm", cfg_set_algorithm, struct cfg_limits, algorithm, 0, 0, "sliding_window",
            0),
    /* No count: each item sets its own flag; [] sends no headers. */
    CFG_ROW("headers", cfg_set_headers, struct cfg_limits, header_xratelimit, 0, 2, "x-ratelimit",
            0),
    CFG_BOOL("enabled", struct cfg_limits, enabled, "true"),
    /* An entry is one counter of one identity, at most ~128 bytes: the
     * default holds a million in ~128 MB; past 1e9 (~128 GB) no single host
     * could keep them, and below 1000 a busy minute would evict live ones. */
    CFG_INT("max_entries", struct cfg_limits, max_entries, 1000, 1000000000, "1000000", 0),
    CFG_END,
};
static const struct cfg_section cfg_limits_section = {cfg_limits_keys, NULL};

/* A route's limits for one tier; the row is only used for reading. */
static const struct cfg_key cfg_route_tier_limits =
    CFG_LIST("limits", cfg_set_limit_list, struct cfg_route_limits, limits, n_limits, 0,
             SL_MAX_LIMITS_PER_LIST, NULL, 0);

/* `limits: {TIER: [LIMIT...], ...}` or `limits: off`. */
static void cfg_set_route_limits(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                 void *base)
{
    struct cfg_route *r = base;
    struct config *c = cx->c;

    if (cfg_is_null(node))
        return;
    if (node->type == YAML_SCALAR_NODE) {
        char *s = cfg_scalar(cx, k, node);
        if (!s)
            return;
        /* The words that read as false elsewhere; "on" has no meaning here. */
        if (strcasecmp(s, "off") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0)
            r->limits_off = true;
        else
            cfg_kerror(cx, cfg_line(node),
                       "'%.*s' is not off (use off, or a mapping of tiers to limits: "
                       "{anonymous: [\"100/h\"]})",
                       CFG_QUOTE_MAX, s);
        free(s);
        return;
    }
    if (node->type != YAML_MAPPING_NODE) {
        cfg_type_error(cx, node, "off or a mapping of tiers to limits");
        return;
    }
    ptrdiff_t count = node->data.mapping.pairs.top - node->data.mapping.pairs.start;
    if (count == 0)
        return;
    /* No bound of its own: accepted keys are distinct tiers, anonymous or
     * "*", which SL_MAX_TIERS bounds; the array, as long as the mapping,
     * is bounded by the file's size. */
    r->limits = sl_calloc((size_t)count, sizeof *r->limits);
    int key_line = cx->key_line;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(cx->doc, p->key);
        size_t len;
        const char *name = cfg_key_name(cx, key, "tier", &len);
        if (!name)
            continue;
        if (memchr(name, '\0', len) ||
            (strcmp(name, "anonymous") != 0 && strcmp(name, "*") != 0 && !cfg_find_tier(c, name))) {
            cfg_kerror(cx, cfg_line(key), "unknown tier '%.*s'", CFG_QUOTE_MAX, name);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < r->n_limits; i++)
            dup = dup || strcmp(r->limits[i].tier, name) == 0;
        if (dup) {
            cfg_kerror(cx, cfg_line(key), "duplicate tier '%s'", name);
            continue;
        }
        struct cfg_route_limits *rl = &r->limits[r->n_limits++];
        rl->tier = sl_strndup(name, len);
        size_t old = cfg_path_key(cx, name);
        cx->key_line = cfg_line(key);
        cfg_set_limit_list(cx, &cfg_route_tier_limits, yaml_document_get_node(cx->doc, p->value),
                           rl);
        cfg_path_pop(cx, old);
    }
    cx->key_line = key_line;
}

static const struct cfg_word cfg_rejection_words[] = {
    {"json", CFG_REJECT_JSON},
    {"drf", CFG_REJECT_DRF},
    {"graphql", CFG_REJECT_GRAPHQL},
    {NULL, 0},
};

/* Resolves what depends on sections read in any order: a limit naming no
 * algorithm takes limits.algorithm. */
static void cfg_resolve_limits(struct config *c)
{
    for (int i = 0; i < c->n_tiers; i++)
        for (int j = 0; j < c->tiers[i].n_limits; j++)
            if (c->tiers[i].limits[j].algorithm == LIM_DEFAULT)
                c->tiers[i].limits[j].algorithm = c->limits.algorithm;
    for (int i = 0; i < c->n_routes; i++)
        for (int j = 0; j < c->routes[i].n_limits; j++)
            for (int m = 0; m < c->routes[i].limits[j].n_limits; m++)
                if (c->routes[i].limits[j].limits[m].algorithm == LIM_DEFAULT)
                    c->routes[i].limits[j].limits[m].algorithm = c->limits.algorithm;
}

static void cfg_route_path(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base, enum cfg_match match)
{
    struct cfg_route *r = base;
    if (cx->route_has_path) {
        cfg_kerror(cx, cx->key_line, "a route has either 'path' (exact) or 'prefix', not both");
        return;
    }
    cx->route_has_path = true;
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    /* Compared with the raw request target's path: a space, '?' or '#' could
     * never be part of one. */
    bool ok = s[0] == '/';
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && *p != 0x7f && *p != '?' && *p != '#';
    if (!ok) {
        cfg_kerror(cx, cfg_line(node),
                   "bad path '%.*s' (must start with '/'; no spaces, '?' or '#')", CFG_QUOTE_MAX,
                   s);
        free(s);
        return;
    }
    r->match = match;
    r->path = s;
    r->path_len = strlen(s);
}

static void cfg_set_path(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    cfg_route_path(cx, k, node, base, CFG_MATCH_EXACT);
}

static void cfg_set_prefix(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    cfg_route_path(cx, k, node, base, CFG_MATCH_PREFIX);
}

static void cfg_set_upstream_ref(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                 void *base)
{
    struct cfg_route *r = base;
    struct config *c = cx->c;
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    for (int i = 0; i < c->n_upstreams; i++) {
        if (strcmp(c->upstreams[i].name, s) == 0) {
            r->upstream = i;
            free(s);
            return;
        }
    }
    cfg_kerror(cx, cfg_line(node), "unknown upstream '%.*s'", CFG_QUOTE_MAX, s);
    free(s);
}

/* A timer longer than a day is a mistake, not a policy. */
#define CFG_DAY_MS 86400000ll

/* ---- lists of names ---------------------------------------------------- */

/* Scopes, roles and header names end up compared as they are and echoed in
 * headers (WWW-Authenticate scope="..."), so each has a charset of its own
 * and a length bound. */
#define CFG_WORD_MAX 64

static bool cfg_chars_ok(const char *s, const char *extra)
{
    size_t len = strlen(s);
    if (len == 0 || len > CFG_WORD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(extra, s[i])))
            return false;
    return true;
}

/* Appends <s> to the char* list of row <k>, refusing a repeat. */
static int cfg_push_name(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                         void *base)
{
    char **v = *(char ***)((char *)base + k->off);
    int *n = (int *)((char *)base + k->n_off);
    for (int j = 0; j < *n; j++) {
        if (strcasecmp(v[j], s) == 0) {
            cfg_kerror(cx, line, "duplicate entry '%s'", s);
            return -1;
        }
    }
    /* Counted as appended, so cfg_free frees exactly what was read. */
    v[(*n)++] = sl_strdup(s);
    return 0;
}

static int cfg_scope_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                          int i, void *base)
{
    if (cfg_chars_ok(s, "_-.:/"))
        return cfg_push_name(cx, k, s, line, base);
    cfg_kerror(cx, line, "bad name '%.*s' (letters, digits, '_', '-', '.', ':', '/'; at most %d)",
               CFG_QUOTE_MAX, s, CFG_WORD_MAX);
    return -1;
}

static int cfg_header_name_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s,
                                int line, int i, void *base)
{
    if (strcasecmp(s, "authorization") == 0) {
        cfg_kerror(cx, line, "Authorization is always read (Bearer sk_...); list other headers");
        return -1;
    }
    if (cfg_chars_ok(s, "-_"))
        return cfg_push_name(cx, k, s, line, base);
    cfg_kerror(cx, line, "bad header name '%.*s'", CFG_QUOTE_MAX, s);
    return -1;
}

/* A list of names into a char* array of its own size, counted at k->n_off
 * by the item function (as tags are). */
static void cfg_set_names_with(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                               void *base, cfg_item_fn item)
{
    size_t cap = 1;
    if (node && node->type == YAML_SEQUENCE_NODE) {
        ptrdiff_t count = node->data.sequence.items.top - node->data.sequence.items.start;
        if (count > 0 && count <= k->max)
            cap = (size_t)count;
    }
    char ***dst = (char ***)((char *)base + k->off);
    *dst = sl_calloc(cap, sizeof **dst);
    cfg_each(cx, k, node, base, item);
}

static void cfg_set_scopes(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    cfg_set_names_with(cx, k, node, base, cfg_scope_item);
}

static void cfg_set_header_names(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                                 void *base)
{
    cfg_set_names_with(cx, k, node, base, cfg_header_name_item);
}

/* ---- store and identity ------------------------------------------------ */

/* A relative path in the config is relative to the config file's directory,
 * not to the working directory: the gateway and `sluice keys -c FILE`, run
 * from anywhere, then find the same data_dir. */
static void cfg_set_path_rel(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                             void *base)
{
    char **dst = (char **)((char *)base + k->off);
    cfg_set_string(cx, k, node, base);
    const char *slash = strrchr(cx->file, '/');
    if (!*dst || (*dst)[0] == '/' || !slash)
        return;
    size_t dir = (size_t)(slash - cx->file);
    size_t len = dir + 1 + strlen(*dst) + 1;
    char *full = sl_malloc(len);
    snprintf(full, len, "%.*s/%s", (int)dir, cx->file, *dst);
    free(*dst);
    *dst = full;
}

static const struct cfg_word cfg_backend_words[] = {
    {"memory", CFG_BACKEND_MEMORY},
    {"redis", CFG_BACKEND_REDIS},
    {NULL, 0},
};

static const struct cfg_word cfg_on_failure_words[] = {
    {"local", CFG_FAIL_LOCAL},
    {"allow", CFG_FAIL_ALLOW},
    {"deny", CFG_FAIL_DENY},
    {NULL, 0},
};

/* Longest key prefix: keys carry it, and a long one only costs memory. */
#define CFG_REDIS_PREFIX_MAX 64

static void cfg_check_redis(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_redis *r = base;
    const char *why;
    if (!r->url || !r->prefix)
        return; /* reported */
    if (rds_parse_url(r->url, &r->conn, &why) < 0)
        cfg_error(cx, line ? line : 1, "store.redis.url: %s in '%.*s'", why, CFG_QUOTE_MAX, r->url);
    r->conn.timeout_ms = r->timeout_ms;
    bool ok = strlen(r->prefix) <= CFG_REDIS_PREFIX_MAX;
    for (const char *p = r->prefix; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '{' && *p != '}';
    if (!ok)
        cfg_error(cx, line ? line : 1,
                  "store.redis.prefix: printable, no spaces or braces, at most %d characters",
                  CFG_REDIS_PREFIX_MAX);
}

static const struct cfg_key cfg_redis_keys[] = {
    CFG_ROW("url", cfg_set_string, struct cfg_redis, url, 0, 0, "redis://127.0.0.1:6379/0",
            CFG_NONEMPTY),
    /* A limit check waits at most this long; past a second it is no longer
     * a limiter but an outage. */
    CFG_DURATION("timeout", struct cfg_redis, timeout_ms, 1, 60000, "50ms"),
    CFG_WORD("on_failure", struct cfg_redis, on_failure, cfg_on_failure_words, "local"),
    CFG_ROW("prefix", cfg_set_string, struct cfg_redis, prefix, 0, 0, "sluice:", 0),
    CFG_DURATION("lease", struct cfg_redis, lease_ms, 1000, CFG_DAY_MS, "2m"),
    CFG_END,
};
static const struct cfg_section cfg_redis_section = {cfg_redis_keys, cfg_check_redis};

static const struct cfg_key cfg_store_keys[] = {
    CFG_WORD("backend", struct cfg_store, backend, cfg_backend_words, "memory"),
    CFG_ROW("data_dir", cfg_set_path_rel, struct cfg_store, data_dir, 0, 0, "./var", CFG_NONEMPTY),
    /* Always read, so the defaults are there for backend: redis. */
    CFG_SECTION("redis", struct cfg_store, redis, &cfg_redis_section, 0),
    CFG_END,
};
static const struct cfg_section cfg_store_section = {cfg_store_keys, NULL};

static int cfg_alg_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line, int i,
                        void *base)
{
    unsigned bit = jwtv_alg_from_name(s);
    if (!bit) {
        cfg_kerror(cx, line, "unknown algorithm '%.*s' (use HS256, RS256, ES256)", CFG_QUOTE_MAX,
                   s);
        return -1;
    }
    *(unsigned *)((char *)base + k->off) |= bit;
    return 0;
}

static void cfg_set_algs(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    cfg_each(cx, k, node, base, cfg_alg_item);
}

static void cfg_set_roles(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                          void *base)
{
    cfg_set_names_with(cx, k, node, base, cfg_scope_item);
}

/* The verifier is built here, so a bad JWKS file fails `sluice check` and a
 * reload as any other config error does, and lives as long as the snapshot. */
static void cfg_check_jwt(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_jwt *j = base;
    struct config *c = cx->c;
    j->enabled = true;
    if (cx->n_errs)
        return;
    if ((j->algorithms & JWTV_HS256) && !j->secret) {
        cfg_error(cx, line, "identity.jwt: HS256 needs 'secret'");
        return;
    }
    if ((j->algorithms & (JWTV_RS256 | JWTV_ES256)) && !j->jwks_file) {
        cfg_error(cx, line, "identity.jwt: RS256 and ES256 need 'jwks_file'");
        return;
    }
    if (j->secret && !(j->algorithms & JWTV_HS256)) {
        cfg_error(cx, line, "identity.jwt: 'secret' is only used by HS256; add it to algorithms");
        return;
    }
    if (j->secret && strlen(j->secret) < 32) {
        cfg_error(cx, line,
                  "identity.jwt.secret: at least 32 characters (an HS256 key is a password "
                  "anyone with a token can try offline)");
        return;
    }
    if (j->default_tier && !cfg_find_tier(c, j->default_tier)) {
        cfg_error(cx, line, "identity.jwt.default_tier: unknown tier '%.*s'", CFG_QUOTE_MAX,
                  j->default_tier);
        return;
    }
    struct jwtv_config vc = {
        .algorithms = j->algorithms,
        .secret = j->secret,
        .jwks_file = j->jwks_file,
        .issuer = j->issuer,
        .audience = j->audience,
        .tier_claim = j->tier_claim,
        .scope_claim = j->scope_claim,
        .exempt_roles = (const char *const *)j->exempt_roles,
        .n_exempt_roles = j->n_exempt_roles,
        .leeway_s = j->leeway_ms / 1000,
    };
    char *err = NULL;
    j->verifier = jwtv_new(&vc, &err);
    if (!j->verifier) {
        cfg_error(cx, line, "identity.jwt: %s", err ? err : "cannot build the verifier");
        free(err);
    }
}

static const struct cfg_key cfg_jwt_keys[] = {
    CFG_ROW("algorithms", cfg_set_algs, struct cfg_jwt, algorithms, 1, 3, "HS256", 0),
    CFG_STRING("secret", struct cfg_jwt, secret, CFG_NONEMPTY),
    CFG_ROW("jwks_file", cfg_set_path_rel, struct cfg_jwt, jwks_file, 0, 0, NULL, CFG_NONEMPTY),
    CFG_STRING("issuer", struct cfg_jwt, issuer, CFG_NONEMPTY),
    CFG_STRING("audience", struct cfg_jwt, audience, CFG_NONEMPTY),
    CFG_ROW("tier_claim", cfg_set_string, struct cfg_jwt, tier_claim, 0, 0, "tier", CFG_NONEMPTY),
    CFG_ROW("scope_claim", cfg_set_string, struct cfg_jwt, scope_claim, 0, 0, "scope",
            CFG_NONEMPTY),
    CFG_LIST("exempt_roles", cfg_set_roles, struct cfg_jwt, exempt_roles, n_exempt_roles, 0, 32,
             NULL, 0),
    CFG_STRING("default_tier", struct cfg_jwt, default_tier, CFG_NONEMPTY),
    /* SPEC 5.2 says 30 s; more than 5 minutes would keep expired tokens alive. */
    CFG_DURATION("leeway", struct cfg_jwt, leeway_ms, 0, 300000, "30s"),
    CFG_DURATION("access_ttl", struct cfg_jwt, access_ttl_ms, 1000, CFG_DAY_MS, "15m"),
    CFG_DURATION("refresh_ttl", struct cfg_jwt, refresh_ttl_ms, 60000, 365ll * CFG_DAY_MS, "30d"),
    CFG_END,
};
static const struct cfg_section cfg_jwt_section = {cfg_jwt_keys, cfg_check_jwt};

static const struct cfg_key cfg_identity_keys[] = {
    CFG_LIST("api_key_headers", cfg_set_header_names, struct cfg_identity, api_key_headers,
             n_api_key_headers, 0, 8, "X-API-Key", 0),
    CFG_SECTION("jwt", struct cfg_identity, jwt, &cfg_jwt_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section cfg_identity_section = {cfg_identity_keys, NULL};

static const struct cfg_word cfg_auth_words[] = {
    {"optional", CFG_AUTH_OPTIONAL},
    {"required", CFG_AUTH_REQUIRED},
    {NULL, 0},
};

/* ---- caching --------------------------------------------------------- */

/* Longer than a year is not a cache lifetime but a mistake in the unit. */
#define CFG_YEAR_MS (365ll * 86400000)
/* Tags travel in Cache-Tag headers and purge requests, and are compared as
 * they are: the characters of a name, plus ':' for "kind:id" tags. */
#define CFG_TAG_MAX 64

static int cfg_tag_item(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line, int i,
                        void *base)
{
    struct cfg_route_cache *rc = base;
    size_t len = strlen(s);
    bool ok = len > 0 && len <= CFG_TAG_MAX;
    for (size_t j = 0; ok && j < len; j++)
        ok = (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
             (s[j] >= '0' && s[j] <= '9') || s[j] == '_' || s[j] == '-' || s[j] == '.' ||
             s[j] == ':';
    if (!ok) {
        cfg_kerror(cx, line, "bad tag '%.*s' (letters, digits, '_', '-', '.', ':'; at most %d)",
                   CFG_QUOTE_MAX, s, CFG_TAG_MAX);
        return -1;
    }
    for (int j = 0; j < rc->n_tags; j++) {
        if (strcmp(rc->tags[j], s) == 0) {
            cfg_kerror(cx, line, "duplicate tag '%s'", s);
            return -1;
        }
    }
    /* Appended and counted at once, so that cfg_free frees exactly the tags
     * read, even when a later item is bad. */
    rc->tags[rc->n_tags++] = sl_strdup(s);
    return 0;
}

/* A list of tags into an array of its own size; n_tags counts the tags
 * stored (cfg_tag_item), not cfg_each's result. */
static void cfg_set_tag_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                             void *base)
{
    struct cfg_route_cache *rc = base;
    size_t cap = 1; /* a single value is a list of one */

    if (node && node->type == YAML_SEQUENCE_NODE) {
        ptrdiff_t count = node->data.sequence.items.top - node->data.sequence.items.start;
        /* Past the bound cfg_each reports the list before reading an item. */
        if (count > 0 && count <= k->max)
            cap = (size_t)count;
    }
    rc->tags = sl_calloc(cap, sizeof *rc->tags);
    cfg_each(cx, k, node, base, cfg_tag_item);
}

static void cfg_check_route_cache(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_route_cache *rc = base;
    /* Only reached when the section is given as a mapping: off never walks
     * it. */
    rc->enabled = true;
}

static const struct cfg_key cfg_route_cache_keys[] = {
    /* Required: no default lifetime fits every API. 0 keeps nothing on its
     * own, leaving the origin's max-age / s-maxage and the stale windows. */
    CFG_ROW("ttl", cfg_set_duration, struct cfg_route_cache, ttl_ms, 0, CFG_YEAR_MS, NULL,
            CFG_REQUIRED),
    CFG_LIST("tags", cfg_set_tag_list, struct cfg_route_cache, tags, n_tags, 0, SL_MAX_CACHE_TAGS,
             NULL, 0),
    CFG_DURATION("stale_while_revalidate", struct cfg_route_cache, stale_while_revalidate_ms, 0,
                 CFG_YEAR_MS, "0s"),
    CFG_DURATION("stale_if_error", struct cfg_route_cache, stale_if_error_ms, 0, CFG_YEAR_MS, "0s"),
    /* Off by default: a response to a caller with credentials is theirs. */
    CFG_BOOL("shared", struct cfg_route_cache, shared, "false"),
    CFG_BOOL("respect_origin", struct cfg_route_cache, respect_origin, "true"),
    CFG_END,
};
static const struct cfg_section cfg_route_cache_section = {cfg_route_cache_keys,
                                                           cfg_check_route_cache};

/* An object larger than one store shard's share of max_memory could never be
 * stored, so a body of that size would never be cached whatever the headers
 * say; max_memory / 16 keeps max_object_size within a share for up to 16
 * shards (see cache_store_new). */
#define CFG_CACHE_SHARD_DIVISOR 16

static void cfg_check_cache(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_cache *cc = base;
    /* 0 is below both bounds: a key that was bad, already reported. */
    if (cc->max_memory == 0 || cc->max_object_size == 0)
        return;
    if (cc->max_object_size > cc->max_memory / CFG_CACHE_SHARD_DIVISOR) {
        char obj[32], mem[32], most[32];
        cfg_fmt_size(obj, sizeof obj, cc->max_object_size);
        cfg_fmt_size(mem, sizeof mem, cc->max_memory);
        cfg_fmt_size(most, sizeof most, cc->max_memory / CFG_CACHE_SHARD_DIVISOR);
        cfg_kerror(cx, line,
                   "max_object_size %s is larger than max_memory / %d (%s with max_memory %s), "
                   "so an object would not fit a store shard",
                   obj, CFG_CACHE_SHARD_DIVISOR, most, mem);
    }
}

static const struct cfg_key cfg_cache_keys[] = {
    /* Below 1m a cache holds too little to be worth a lookup; past 64g it is
     * not a gateway's memory any more. */
    CFG_SIZE("max_memory", struct cfg_cache, max_memory, 1ll << 20, 64ll << 30, "256m"),
    CFG_SIZE("max_object_size", struct cfg_cache, max_object_size, 1ll << 10, 1ll << 30, "8m"),
    CFG_END,
};
static const struct cfg_section cfg_cache_section = {cfg_cache_keys, cfg_check_cache};

static void cfg_check_route(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_route *r = base;
    if (!cx->route_has_path)
        cfg_kerror(cx, line, "a route needs 'path' (exact match) or 'prefix'");
    if (r->n_scopes)
        r->auth = CFG_AUTH_REQUIRED;
}

static const struct cfg_key cfg_route_keys[] = {
    CFG_CUSTOM("path", cfg_set_path),
    CFG_CUSTOM("prefix", cfg_set_prefix),
    /* No count: the item bits are ORed into one mask. */
    CFG_ROW("methods", cfg_set_methods, struct cfg_route, methods, 1, SL_MAX_METHODS, NULL, 0),
    /* Absent: 0, the first upstream in the file. */
    CFG_CUSTOM("upstream", cfg_set_upstream_ref),
    /* Tier names are looked up as they are read: tiers come before routes. */
    CFG_CUSTOM("limits", cfg_set_route_limits),
    CFG_WORD("rejection", struct cfg_route, rejection, cfg_rejection_words, "json"),
    CFG_INT("cost", struct cfg_route, cost, 1, 1000000, "1", 0),
    /* Absent or off: not cached. */
    CFG_SECTION_OR_OFF("cache", struct cfg_route, cache, &cfg_route_cache_section),
    CFG_UNSUPPORTED("graphql"),
    CFG_WORD("auth", struct cfg_route, auth, cfg_auth_words, "optional"),
    /* Scopes imply auth: required (see cfg_check_route). */
    CFG_LIST("scopes", cfg_set_scopes, struct cfg_route, scopes, n_scopes, 0, 16, NULL, 0),
    CFG_END,
};
static const struct cfg_section cfg_route_section = {cfg_route_keys, cfg_check_route};

static void cfg_set_routes(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base)
{
    struct config *c = base;

    ptrdiff_t count =
        cfg_collection_size(cx, node, YAML_SEQUENCE_NODE, "a list of routes (- prefix: /api/)",
                            "routes", SL_MAX_ROUTES);
    if (count <= 0)
        return; /* none: the top-level check adds the implicit route */
    c->routes = sl_calloc((size_t)count, sizeof *c->routes);
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(cx->doc, *it);
        struct cfg_route *r = &c->routes[c->n_routes];
        r->line = cfg_line(item);
        size_t old = cfg_path_index(cx, c->n_routes++);
        cx->route_has_path = false;
        cfg_walk(cx, &cfg_route_section, item, r, r->line);
        cfg_path_pop(cx, old);
    }
}

/* ---- the top level --------------------------------------------------- */

static const struct cfg_key cfg_timeout_keys[] = {
    CFG_DURATION("header", struct cfg_timeouts, header_ms, 1, CFG_DAY_MS, "10s"),
    CFG_DURATION("idle", struct cfg_timeouts, idle_ms, 1, CFG_DAY_MS, "60s"),
    CFG_DURATION("upstream_connect", struct cfg_timeouts, upstream_connect_ms, 1, CFG_DAY_MS, "2s"),
    CFG_DURATION("upstream_read", struct cfg_timeouts, upstream_read_ms, 1, CFG_DAY_MS, "30s"),
    /* 0: stop at once, dropping what is in flight. */
    CFG_DURATION("drain", struct cfg_timeouts, drain_ms, 0, CFG_DAY_MS, "30s"),
    CFG_END,
};
static const struct cfg_section cfg_timeout_section = {cfg_timeout_keys, NULL};

static const struct cfg_key cfg_server_keys[] = {
    CFG_LIST("listen", cfg_set_addr_list, struct cfg_server, listen, n_listen, 1, SL_MAX_LISTEN,
             "0.0.0.0:8080", 0),
    CFG_INT("workers", struct cfg_server, workers, 1, SL_MAX_WORKERS, "auto", CFG_AUTO),
    CFG_INT("max_connections", struct cfg_server, max_connections, 1, 10000000, "10000", 0),
    CFG_SECTION("timeouts", struct cfg_server, timeouts, &cfg_timeout_section, 0),
    CFG_SIZE("max_header_bytes", struct cfg_server, max_header_bytes, 1 << 10, 1 << 20, "16k"),
    CFG_SIZE("max_body_bytes", struct cfg_server, max_body_bytes, 0, 1ll << 40, "10m"),
    CFG_BOOL("access_log", struct cfg_server, access_log, "true"),
    CFG_LIST("trusted_proxies", cfg_set_cidr_list, struct cfg_server, trusted_proxies,
             n_trusted_proxies, 0, SL_MAX_TRUSTED_PROXIES, NULL, 0),
    CFG_INT("ipv6_prefix", struct cfg_server, ipv6_prefix, 1, 128, "64", 0),
    CFG_END,
};
static const struct cfg_section cfg_server_section = {cfg_server_keys, NULL};

static void cfg_check_admin(struct cfg_ctx *cx, void *base, int line)
{
    struct cfg_admin *a = base;
    /* Only reached when the section is present (CFG_IF_PRESENT); a missing
     * listen or token was reported as required. */
    a->enabled = true;
}

static const struct cfg_key cfg_admin_keys[] = {
    CFG_ADDR("listen", struct cfg_admin, listen, CFG_REQUIRED),
    /* Required: an admin API open to whoever reaches the port is never a
     * default. */
    CFG_STRING("token", struct cfg_admin, token, CFG_REQUIRED | CFG_NONEMPTY),
    CFG_END,
};
static const struct cfg_section cfg_admin_section = {cfg_admin_keys, cfg_check_admin};

static void cfg_check_top(struct cfg_ctx *cx, void *base, int line)
{
    struct config *c = base;

    if (!cx->upstreams_given)
        cfg_error(cx, line,
                  "upstreams: at least one upstream is required, e.g. "
                  "upstreams: {app: {servers: [\"127.0.0.1:8000\"]}}");
    if (c->n_routes == 0) {
        /* A config that is only an upstream proxies everything to it. */
        c->routes = sl_calloc(1, sizeof *c->routes);
        c->routes[0] = (struct cfg_route){.match = CFG_MATCH_PREFIX,
                                          .path = sl_strndup("/", 1),
                                          .path_len = 1,
                                          .rejection = CFG_REJECT_JSON,
                                          .cost = 1,
                                          /* Caching is opt-in per route:
                                           * responses of an API are not
                                           * assumed shareable. */
                                          .cache = {.enabled = false}};
        c->n_routes = 1;
    }
    /* Here, after every section: `limits` may come anywhere in the file. */
    cfg_resolve_limits(c);
    /* The token endpoints exist when the gateway can sign tokens. Limited
     * as any route is, by tier limits only; never cached or proxied. */
    if (c->identity.jwt.secret)
        c->token_route = (struct cfg_route){.match = CFG_MATCH_PREFIX,
                                            .path = sl_strdup("/auth/"),
                                            .path_len = 6,
                                            .rejection = CFG_REJECT_JSON,
                                            .cost = 1,
                                            .token_endpoint = true};
}

/* Upstreams and tiers come before routes: a route's upstream and tier names
 * are looked up as it is read. */
static const struct cfg_key cfg_top_keys[] = {
    CFG_SECTION("server", struct config, server, &cfg_server_section, 0),
    CFG_SECTION("admin", struct config, admin, &cfg_admin_section, CFG_IF_PRESENT),
    CFG_CUSTOM("upstreams", cfg_set_upstreams),
    CFG_CUSTOM("tiers", cfg_set_tiers),
    CFG_SECTION("limits", struct config, limits, &cfg_limits_section, 0),
    CFG_SECTION("store", struct config, store, &cfg_store_section, 0),
    /* After tiers: jwt.default_tier names one. */
    CFG_SECTION("identity", struct config, identity, &cfg_identity_section, 0),
    CFG_CUSTOM("routes", cfg_set_routes),
    /* Always read, so the store's budget has its defaults without one. */
    CFG_SECTION("cache", struct config, cache, &cfg_cache_section, 0),
    /* Later product sections (SPEC 2), each a promise of protection. */
    CFG_UNSUPPORTED("quota_alerts"),
    CFG_UNSUPPORTED("abuse"),
    CFG_UNSUPPORTED("access"),
    CFG_UNSUPPORTED("audit"),
    CFG_END,
};
static const struct cfg_section cfg_top_section = {cfg_top_keys, cfg_check_top};

/* ---- loading --------------------------------------------------------- */

static void cfg_free_names(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void cfg_free(struct config *c)
{
    free(c->path);
    free(c->admin.token);
    for (int i = 0; i < c->n_upstreams; i++)
        free(c->upstreams[i].name);
    free(c->upstreams);
    for (int i = 0; i < c->n_routes; i++) {
        struct cfg_route *r = &c->routes[i];
        free(r->path);
        for (int j = 0; j < r->n_limits; j++) {
            free(r->limits[j].tier);
            free(r->limits[j].limits);
        }
        free(r->limits);
        for (int j = 0; j < r->cache.n_tags; j++)
            free(r->cache.tags[j]);
        free(r->cache.tags);
        cfg_free_names(r->scopes, r->n_scopes);
    }
    free(c->routes);
    free(c->token_route.path);
    free(c->store.data_dir);
    free(c->store.redis.url);
    free(c->store.redis.prefix);
    cfg_free_names(c->identity.api_key_headers, c->identity.n_api_key_headers);
    struct cfg_jwt *j = &c->identity.jwt;
    free(j->secret);
    free(j->jwks_file);
    free(j->issuer);
    free(j->audience);
    free(j->tier_claim);
    free(j->scope_claim);
    free(j->default_tier);
    cfg_free_names(j->exempt_roles, j->n_exempt_roles);
    jwtv_free(j->verifier);
    for (int i = 0; i < c->n_tiers; i++) {
        free(c->tiers[i].name);
        free(c->tiers[i].limits);
    }
    free(c->tiers);
    free(c);
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
    struct config *c = sl_calloc(1, sizeof *c);

    c->refs = 1;
    c->path = sl_strdup(name);
    cx->c = c;
    cx->file = name;
    cx->doc = doc;
    cx->getenv_fn = getenv_fn;
    cx->getenv_ctx = getenv_ctx;
    yaml_node_t *root = yaml_document_get_root_node(doc);
    cfg_walk(cx, &cfg_top_section, root, c, cfg_line(root));
    if (cx->n_errs) {
        *err = cfg_join_errors(cx);
        cfg_free(c);
        c = NULL;
    }
    free(cx);
    return c;
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
        cfg_free(c);
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

    if (c->token_route.token_endpoint && ((len == 11 && memcmp(path, "/auth/token", 11) == 0) ||
                                          (len == 13 && memcmp(path, "/auth/refresh", 13) == 0)))
        return &c->token_route;
    for (int i = 0; i < c->n_routes; i++) {
        const struct cfg_route *r = &c->routes[i];
        if ((!r->methods || (r->methods & bit)) && cfg_route_matches(r, path, len))
            return r;
    }
    return NULL;
}
