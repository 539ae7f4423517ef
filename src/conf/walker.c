/* The config walker: rows, setters, lists, errors (conf/walker.h). */
#include "conf/walker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <llhttp.h>

#include "util/arena.h"
#include "util/base64url.h"
#include "util/mem.h"
#include "util/str.h"

/* ---- memory ---------------------------------------------------------- */

void *cfg_alloc(struct cfg_ctx *cx, size_t n)
{
    return arena_calloc(cx->c->arena, n ? n : 1);
}

char *cfg_strdup(struct cfg_ctx *cx, const char *s)
{
    return s ? arena_strndup(cx->c->arena, s, strlen(s)) : NULL;
}

void cfg_on_free(struct cfg_ctx *cx, void (*fn)(void *arg), void *arg)
{
    arena_on_free(cx->c->arena, fn, arg);
}

/* ---- errors ---------------------------------------------------------- */

int cfg_line(const yaml_node_t *node)
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

__attribute__((format(printf, 3, 4))) void cfg_error(struct cfg_ctx *cx, int line, const char *fmt,
                                                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verror(cx, line, fmt, ap);
    va_end(ap);
}

/* An error about the key being read: the message starts with its path. */
__attribute__((format(printf, 3, 4))) void cfg_kerror(struct cfg_ctx *cx, int line, const char *fmt,
                                                      ...)
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

size_t cfg_path_key(struct cfg_ctx *cx, const char *name)
{
    size_t old = cx->path_len;
    return cfg_path_end(
        cx, old, snprintf(cx->path + old, sizeof cx->path - old, "%s%s", old ? "." : "", name));
}

size_t cfg_path_index(struct cfg_ctx *cx, int i)
{
    size_t old = cx->path_len;
    return cfg_path_end(cx, old, snprintf(cx->path + old, sizeof cx->path - old, "[%d]", i));
}

void cfg_path_pop(struct cfg_ctx *cx, size_t old)
{
    cx->path_len = old;
    cx->path[old] = '\0';
}

const char *cfg_node_kind(const yaml_node_t *node)
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

void cfg_type_error(struct cfg_ctx *cx, yaml_node_t *node, const char *want)
{
    cfg_kerror(cx, cfg_line(node), "expected %s, got %s", want, cfg_node_kind(node));
}

/* Messages quote bounds as the user would write them. */
void cfg_fmt_duration(char *buf, size_t size, int64_t ms)
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

void cfg_fmt_size(char *buf, size_t size, uint64_t n)
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

bool cfg_is_null(const yaml_node_t *node)
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
char *cfg_scalar(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node)
{
    if (!node)
        return cfg_strdup(cx, k->def);
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
        return arena_strndup(cx->c->arena, v, len);

    const char *why;
    cx->env_name[0] = '\0';
    char *s = cfg_expand_env(v, cfg_record_getenv, cx, &why);
    if (s) {
        char *kept = cfg_strdup(cx, s);
        free(s);
        return kept;
    }
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
void cfg_store_int(const struct cfg_key *k, void *base, int64_t v)
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

void cfg_set_int(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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
        return;
    } else if (v < k->min || v > k->max) {
        cfg_kerror(cx, cfg_line(node), "%.*s is out of range (%lld..%lld)", CFG_QUOTE_MAX, s,
                   (long long)k->min, (long long)k->max);
        return;
    }
    cfg_store_int(k, base, v);
}

void cfg_set_duration(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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
}

void cfg_set_size(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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
}

void cfg_set_bool(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    /* YAML 1.1's words, which is what operators coming from Ansible or
     * Kubernetes expect, and 1/0, as environment variables often say
     * (RATE_LIMIT_ENABLED=0). */
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    char *s = cfg_scalar(cx, k, node);
    if (!s)
        return;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *(bool *)((char *)base + k->off) = strcasecmp(s, yes[i]) == 0;
            return;
        }
    }
    cfg_kerror(cx, cfg_line(node), "'%.*s' is not a boolean (use true or false)", CFG_QUOTE_MAX, s);
}

void cfg_set_string(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    char **dst = (char **)((char *)base + k->off);
    if (!s)
        return;
    if ((k->flags & CFG_NONEMPTY) && s[0] == '\0') {
        cfg_kerror(cx, cfg_line(node), "must not be empty");
        return;
    }
    *dst = s;
}

void cfg_set_word(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    char list[CFG_QUOTE_MAX * 2];
    size_t used = 0;
    if (!s)
        return;
    for (const struct cfg_word *w = k->words; w->name; w++) {
        if (strcmp(s, w->name) == 0) {
            cfg_store_int(k, base, w->value);
            return;
        }
    }
    /* The words are short and few; the list is cut rather than overflow. */
    list[0] = '\0';
    for (const struct cfg_word *w = k->words; w->name && used < sizeof list; w++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", w->name);
    cfg_kerror(cx, cfg_line(node), "unknown value '%.*s' (use %s)", CFG_QUOTE_MAX, s, list);
}

void cfg_set_addr(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    const char *why;
    if (!s)
        return;
    if (cfg_parse_addr(s, (struct cfg_addr *)((char *)base + k->off), &why) < 0)
        cfg_kerror(cx, cfg_line(node), "bad address '%.*s': %s", CFG_QUOTE_MAX, s, why);
}

/* ---- lists ----------------------------------------------------------- */

/* Reads item <i> with value <s> into the list of row <k> in <base>; 0 or -1
 * after reporting. */

/* Calls <item> for each item of list <node>. One value stands for a list of
 * one, as "listen: 0.0.0.0:80" is what people write; a null node is the empty
 * list. Returns how many items were read, -1 after an error. */
int cfg_each(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base,
             cfg_item_fn item)
{
    int n = 0, rc = 0;

    if (!node || (node->type == YAML_SCALAR_NODE && !cfg_is_null(node))) {
        char *s = cfg_scalar(cx, k, node);
        if (!s)
            return -1;
        rc = item(cx, k, s, cfg_line(node), 0, base);
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

void cfg_set_addr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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

void cfg_set_cidr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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

void cfg_set_methods(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    cfg_each(cx, k, node, base, cfg_method_item);
}

/* ---- sections -------------------------------------------------------- */

void cfg_set_section(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    cfg_walk(cx, k->sub, node, (char *)base + k->off, cx->key_line);
}

/* A section that may also be turned off with a word (`cache: off`). Off
 * does not walk the section, so neither defaults nor the section's check
 * (which sets "enabled") run: the struct stays zeroed, as when absent. */
void cfg_set_section_or_off(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
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
}

void cfg_set_unsupported(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
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

void cfg_walk_parts(struct cfg_ctx *cx, const struct cfg_part *parts, int n_parts,
                    yaml_node_t *node, int line)
{
    /* Per part, the value and line of each row, by row index. */
    yaml_node_t *vals[SL_MAX_MODULES + 1][64];
    int lines[SL_MAX_MODULES + 1][64];
    memset(vals, 0, sizeof(vals[0]) * (size_t)n_parts);
    memset(lines, 0, sizeof(lines[0]) * (size_t)n_parts);

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
            const struct cfg_key *k = NULL;
            int part = 0;
            for (; part < n_parts && !k; part++)
                k = cfg_find_key(parts[part].sec, name);
            part--;
            size_t old = cfg_path_key(cx, name);
            if (!k) {
                cfg_error(cx, cfg_line(key), "unknown key '%s'", cx->path);
            } else if (vals[part][k - parts[part].sec->keys]) {
                cfg_error(cx, cfg_line(key), "duplicate key '%s'", cx->path);
            } else {
                vals[part][k - parts[part].sec->keys] = yaml_document_get_node(cx->doc, p->value);
                lines[part][k - parts[part].sec->keys] = cfg_line(key);
            }
            cfg_path_pop(cx, old);
        }
    }
    for (int part = 0; part < n_parts; part++) {
        const struct cfg_section *sec = parts[part].sec;
        for (const struct cfg_key *k = sec->keys; k->name; k++) {
            yaml_node_t *v = vals[part][k - sec->keys];
            size_t old = cfg_path_key(cx, k->name);
            cx->key_line = v ? lines[part][k - sec->keys] : line;
            if (v)
                k->set(cx, k, v, parts[part].base);
            else if (k->flags & CFG_REQUIRED)
                cfg_kerror(cx, line, "required");
            else if (k->def || (k->sub && !(k->flags & CFG_IF_PRESENT)))
                k->set(cx, k, NULL, parts[part].base);
            cfg_path_pop(cx, old);
        }
    }
    for (int part = 0; part < n_parts; part++)
        if (parts[part].sec->check)
            parts[part].sec->check(cx, parts[part].base, line);
}

void cfg_walk(struct cfg_ctx *cx, const struct cfg_section *sec, yaml_node_t *node, void *base,
              int line)
{
    struct cfg_part part = {sec, base};
    cfg_walk_parts(cx, &part, 1, node, line);
}

int cfg_module_parts(struct cfg_ctx *cx, enum cfg_kind kind, const struct cfg_section *sec,
                     void *base, void **mod, struct cfg_part *parts)
{
    int n = 0;
    parts[n++] = (struct cfg_part){sec, base};
    int n_mods = cfg_module_count();
    for (int m = 0; m < n_mods; m++) {
        const struct cfg_module *cm = cfg_module_at(m);
        if (!cm)
            continue;
        const struct cfg_section *s = cm->top;
        size_t size = cm->top_size;
        if (kind == CFG_KIND_ROUTE) {
            s = cm->route;
            size = cm->route_size;
        } else if (kind == CFG_KIND_TIER) {
            s = cm->tier;
            size = cm->tier_size;
        } else if (kind == CFG_KIND_UPSTREAM) {
            s = cm->upstream;
            size = cm->upstream_size;
        }
        if (!s)
            continue;
        mod[m] = cfg_alloc(cx, size);
        parts[n++] = (struct cfg_part){s, mod[m]};
    }
    return n;
}

/* ---- names and lists ------------------------------------------------ */

bool cfg_good_name(const char *s, size_t len)
{
    if (len == 0 || len > CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* The text of mapping key <key>, naming a <what> (an upstream, a tier), or
 * NULL after reporting a key that is not a scalar. */
const char *cfg_key_name(struct cfg_ctx *cx, yaml_node_t *key, const char *what, size_t *len)
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
ptrdiff_t cfg_collection_size(struct cfg_ctx *cx, yaml_node_t *node, yaml_node_type_t type,
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

bool cfg_chars_ok(const char *s, const char *extra)
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
int cfg_push_name(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line, void *base)
{
    char **v = *(char ***)((char *)base + k->off);
    int *n = (int *)((char *)base + k->n_off);
    for (int j = 0; j < *n; j++) {
        if (strcasecmp(v[j], s) == 0) {
            cfg_kerror(cx, line, "duplicate entry '%s'", s);
            return -1;
        }
    }
    v[(*n)++] = cfg_strdup(cx, s);
    return 0;
}

size_t cfg_list_cap(const struct cfg_key *k, yaml_node_t *node)
{
    size_t cap = 1; /* a single value is a list of one */
    if (node && node->type == YAML_SEQUENCE_NODE) {
        ptrdiff_t count = node->data.sequence.items.top - node->data.sequence.items.start;
        /* Past the bound cfg_each reports the list before reading an item. */
        if (count > 0 && count <= k->max)
            cap = (size_t)count;
    }
    return cap;
}

void cfg_set_names_with(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base,
                        cfg_item_fn item)
{
    char ***dst = (char ***)((char *)base + k->off);
    *dst = cfg_alloc(cx, cfg_list_cap(k, node) * sizeof **dst);
    cfg_each(cx, k, node, base, item);
}

/* Base64 of exactly 32 bytes into <out>; both alphabets, since
 * `openssl rand -base64 32` writes the standard one. */
static int cfg_base64_32(const char *s, size_t n, unsigned char out[32])
{
    char url[64];
    unsigned char tmp[48];
    size_t got;
    if (n < 43 || n > 44)
        return -1;
    for (size_t i = 0; i < n; i++)
        url[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    if (b64url_decode(url, n, 0, tmp, sizeof tmp, &got) < 0 || got != 32)
        return -1;
    memcpy(out, tmp, 32);
    return 0;
}

int cfg_parse_secret32(const char *s, unsigned char out[32])
{
    size_t n = strlen(s);
    return str_unhex(s, n, out, 32) == 0 || cfg_base64_32(s, n, out) == 0 ? 0 : -1;
}

void cfg_set_secret32(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char *s = cfg_scalar(cx, k, node);
    struct cfg_secret32 *dst = (struct cfg_secret32 *)((char *)base + k->off);
    if (!s || s[0] == '\0')
        return; /* unset, e.g. ${SLUICE_ENCRYPTION_KEY:-} */
    size_t n = strlen(s);
    if (cfg_parse_secret32(s, dst->bytes) < 0) {
        /* The value is a secret: never quoted back. */
        cfg_kerror(cx, cfg_line(node),
                   "must be 32 bytes as 64 hex digits or base64 (got %zu characters), "
                   "e.g. from `openssl rand -base64 32`",
                   n);
        return;
    }
    dst->set = true;
}

/* A relative path in the config is relative to the config file's directory,
 * not to the working directory: the gateway and `sluice keys -c FILE`, run
 * from anywhere, then find the same data_dir. */
void cfg_set_path_rel(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base)
{
    char **dst = (char **)((char *)base + k->off);
    cfg_set_string(cx, k, node, base);
    const char *slash = strrchr(cx->file, '/');
    if (!*dst || (*dst)[0] == '/' || !slash)
        return;
    size_t dir = (size_t)(slash - cx->file);
    size_t len = dir + 1 + strlen(*dst) + 1;
    char *full = cfg_alloc(cx, len);
    snprintf(full, len, "%.*s/%s", (int)dir, cx->file, *dst);
    *dst = full;
}
