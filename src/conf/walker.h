#ifndef SLUICE_CONF_WALKER_H
#define SLUICE_CONF_WALKER_H
/* The table-driven config walker (nginx's ngx_command_t, Redis's
 * static_configs): every key is one row (name, setter, offset, bounds,
 * default), and the walker knows nothing about particular keys. The core's
 * rows are conf/schema.c's; a module adds rows of its own at the top level,
 * in each route and in each tier (struct cfg_module in conf/conf.h), and
 * finds its values in the mod[] slot of the config, route or tier.
 *
 * Everything a setter keeps lives in the config's arena (cfg_alloc,
 * cfg_strdup); what is not memory (a JWT verifier) is released by a
 * cleanup hook (cfg_on_free). Nothing is freed by hand. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "conf/conf.h"

/* Error messages quote at most this much of a value: enough to recognise it,
 * short enough to keep one error on one screen line. */
#define CFG_QUOTE_MAX 80
#define CFG_MSG_MAX 512
#define CFG_PATH_MAX 256
/* Upstream and tier names show up in logs and metric labels, where spaces
 * and quotes would need escaping. */
#define CFG_NAME_MAX 64
/* Scopes, roles and header names end up compared as they are and echoed in
 * headers, so each has a charset of its own and a length bound. */
#define CFG_WORD_MAX 64
/* A timer longer than a day is a mistake, not a policy. */
#define CFG_DAY_MS 86400000ll
/* Longer than a year is not a cache lifetime but a mistake in the unit. */
#define CFG_YEAR_MS (365ll * 86400000)
/* How deep sections may nest in a file; the schema nests far less. */
#define CFG_MAX_DEPTH 64

struct cfg_err {
    int line; /* 1-based; 0 when the message is about the file, not a line */
    char msg[CFG_MSG_MAX];
};

/* One load in progress. */
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
    bool upstreams_given;          /* "upstreams:" had entries, or an error of its own */
    bool route_has_path;           /* the route being read had a path or prefix, valid or not */
    const struct cfg_route *route; /* the route being read, for modules' route checks */
    struct cfg_err errs[SL_MAX_CONFIG_ERRORS];
    int n_errs;
    bool truncated;
};

struct cfg_key;

/* Reads <node> (NULL: apply the row's default) into the struct at <base>. */
typedef void (*cfg_set_fn)(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                           void *base);

struct cfg_section {
    const struct cfg_key *keys; /* ends with a row whose name is NULL; at most 64 rows */
    /* Rules across keys, run after every key of the section was read; <line>
     * is the section's, 0 when it is absent. */
    void (*check)(struct cfg_ctx *cx, void *base, int line);
};

enum {
    CFG_REQUIRED = 1 << 0,   /* an error when absent */
    CFG_AUTO = 1 << 1,       /* integer that also accepts "auto" (one per online core) */
    CFG_NONEMPTY = 1 << 2,   /* string that must not be "" */
    CFG_IF_PRESENT = 1 << 3, /* section: absent means off, so no defaults or required keys */
    CFG_RESTART = 1 << 4,    /* a reload cannot apply a change: it waits for a restart */
};

/* One word of a key that takes one of a few words (`rejection: drf`). */
struct cfg_word {
    const char *name;
    int value;
};
/* auto, on, off (enum cfg_buffering): server.request_buffering and the
 * proxy's route row of the same name. */
extern const struct cfg_word cfg_buffering_words[];

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

/* ---- memory ---------------------------------------------------------------------- */

/* Allocations that live as long as the config being loaded. */
void *cfg_alloc(struct cfg_ctx *cx, size_t n); /* zeroed */
char *cfg_strdup(struct cfg_ctx *cx, const char *s);
/* Run <fn>(<arg>) when the config is freed (or the load fails). */
void cfg_on_free(struct cfg_ctx *cx, void (*fn)(void *arg), void *arg);

/* ---- errors ----------------------------------------------------------------------- */

int cfg_line(const yaml_node_t *node);
__attribute__((format(printf, 3, 4))) void cfg_error(struct cfg_ctx *cx, int line, const char *fmt,
                                                     ...);
/* An error about the key being read: the message starts with its path. */
__attribute__((format(printf, 3, 4))) void cfg_kerror(struct cfg_ctx *cx, int line, const char *fmt,
                                                      ...);
void cfg_type_error(struct cfg_ctx *cx, yaml_node_t *node, const char *want);
const char *cfg_node_kind(const yaml_node_t *node);
/* Messages quote bounds as the user would write them. */
void cfg_fmt_duration(char *buf, size_t size, int64_t ms);
void cfg_fmt_size(char *buf, size_t size, uint64_t n);

/* The key path in messages: appending returns the length to restore with
 * cfg_path_pop. */
size_t cfg_path_key(struct cfg_ctx *cx, const char *name);
size_t cfg_path_index(struct cfg_ctx *cx, int i);
void cfg_path_pop(struct cfg_ctx *cx, size_t old);

/* ---- values ----------------------------------------------------------------------- */

bool cfg_is_null(const yaml_node_t *node);
/* The value of scalar <node> with ${VAR} expanded, or for NULL the default
 * of row <k> (NULL when it has none). In the config's arena; NULL after
 * reporting why there is none. */
char *cfg_scalar(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node);
/* Stores <v>, already checked against the row's bounds, into the integer
 * field of row <k> in <base>, whatever its width. */
void cfg_store_int(const struct cfg_key *k, void *base, int64_t v);

/* Setters of the CFG_* rows. */
void cfg_set_int(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_duration(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_size(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_bool(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_string(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_word(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_addr(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_section(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_section_or_off(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                            void *base);
/* Lists of addresses, CIDRs (counted at k->n_off) and methods (ORed into a
 * uint64_t mask by llhttp method number). */
void cfg_set_addr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_cidr_list(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
void cfg_set_methods(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
/* A key this version does not support yet: always an error, never ignored. */
void cfg_set_unsupported(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node,
                         void *base);
/* A 32-byte secret given as 64 hex digits or base64 (standard or URL-safe,
 * padding optional) into a struct cfg_secret32; empty leaves it unset. */
/* The same spellings outside a config file (an environment variable); 0 or -1. */
int cfg_parse_secret32(const char *s, unsigned char out[32]);
void cfg_set_secret32(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);
/* A path relative to the config file's directory. */
void cfg_set_path_rel(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base);

/* ---- lists ------------------------------------------------------------------------ */

/* Reads item <i> with value <s> into the list of row <k> in <base>; 0 or -1
 * after reporting. */
typedef int (*cfg_item_fn)(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line,
                           int i, void *base);
/* Calls <item> for each item of list <node>. One value stands for a list of
 * one; a null node is the empty list. Returns how many items were read, -1
 * after an error. */
int cfg_each(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base,
             cfg_item_fn item);
/* How many items <node> will give cfg_each (1 for a single value), within
 * the row's bound: the size of the array to allocate for them. */
size_t cfg_list_cap(const struct cfg_key *k, yaml_node_t *node);
/* A list of names into a char* array of its own size, counted at k->n_off
 * by the item function (cfg_push_name). */
void cfg_set_names_with(struct cfg_ctx *cx, const struct cfg_key *k, yaml_node_t *node, void *base,
                        cfg_item_fn item);
/* Appends <s> to the char* list of row <k>, refusing a repeat. */
int cfg_push_name(struct cfg_ctx *cx, const struct cfg_key *k, const char *s, int line, void *base);
/* Is <s> 1..CFG_WORD_MAX letters, digits and characters of <extra>? */
bool cfg_chars_ok(const char *s, const char *extra);
/* A name of an upstream or tier: letters, digits, '_', '-', '.'. */
bool cfg_good_name(const char *s, size_t len);

/* ---- mappings --------------------------------------------------------------------- */

/* The text of mapping key <key>, naming a <what> (an upstream, a tier), or
 * NULL after reporting a key that is not a scalar. */
const char *cfg_key_name(struct cfg_ctx *cx, yaml_node_t *key, const char *what, size_t *len);
/* How many entries the mapping or sequence <node> holds: 0 for null, -1
 * after reporting a node of another <type> (<expected> says what is wanted)
 * or more than <max> entries (<what> names them). */
ptrdiff_t cfg_collection_size(struct cfg_ctx *cx, yaml_node_t *node, yaml_node_type_t type,
                              const char *expected, const char *what, int max);

/* One section of a mapping and the struct it fills. */
struct cfg_part {
    const struct cfg_section *sec;
    void *base;
};
/* Reads mapping <node> (NULL or null: absent or empty) by the rows of
 * <parts>: a key belongs to the first part with a row of its name, and a
 * key no part has is an error. Rows are read part by part in table order,
 * not the file's, so a row may rely on the rows above it; then each part's
 * check runs. <line> is where the mapping starts, for messages. */
void cfg_walk_parts(struct cfg_ctx *cx, const struct cfg_part *parts, int n_parts,
                    yaml_node_t *node, int line);
/* cfg_walk_parts with one part. */
void cfg_walk(struct cfg_ctx *cx, const struct cfg_section *sec, yaml_node_t *node, void *base,
              int line);

/* The parts of a mapping that modules extend: the core's <sec> and <base>,
 * then for each module with rows of <kind> a part whose struct is allocated
 * (zeroed) into <mod>[module] now. Returns how many parts were written to
 * <parts> (room for SL_MAX_MODULES + 1). */
enum cfg_kind { CFG_KIND_TOP, CFG_KIND_ROUTE, CFG_KIND_TIER, CFG_KIND_UPSTREAM };
int cfg_module_parts(struct cfg_ctx *cx, enum cfg_kind kind, const struct cfg_section *sec,
                     void *base, void **mod, struct cfg_part *parts);

/* Fill <r> with every route row's default (the core's and each module's):
 * a route the gateway makes itself; the caller sets its path. */
void cfg_route_defaults(struct cfg_ctx *cx, struct cfg_route *r);

/* The whole file: the core's top level and every module's (conf/schema.c). */
void cfg_read_top(struct cfg_ctx *cx, yaml_node_t *root);

#endif
