/* Usage rows in memory (usage/table.h). */
#include "usage/table.h"

#include <string.h>

#include "pipeline/exchange.h"
#include "usage/calendar.h"
#include "util/arena.h"
#include "util/mem.h"
#include "util/str.h"

/* SQLite columns and Redis fields of the counters, in enum order. */
static const char *const usage_columns[USAGE_LAT_N + USAGE_F_LAT0] = {
    "requests",       "status_1xx",     "status_2xx",   "status_3xx", "status_4xx", "status_5xx",
    "rejected_limit", "rejected_quota", "rejected_ban", "bytes_in",   "bytes_out",  "units",
    "cost_nano",      "lat_0",          "lat_1",        "lat_2",      "lat_3",      "lat_4",
    "lat_5",          "lat_6",          "lat_7",        "lat_8",      "lat_9",      "lat_10",
    "lat_11",         "lat_12",         "lat_13",       "lat_14",     "lat_15",     "lat_16",
    "lat_17",         "lat_18",         "lat_19",       "lat_20",     "lat_21",     "lat_22",
    "lat_23",         "lat_24",         "lat_25",       "lat_26",     "lat_27",     "lat_28",
    "lat_29",         "lat_30",         "lat_31",       "lat_32",     "lat_33",
};
static const char *const usage_redis_fields[USAGE_F_N] = {
    "n",   "s1",  "s2",  "s3",  "s4",  "s5",  "rl",  "rq",  "rb",  "bi",  "bo",  "u",
    "c",   "h0",  "h1",  "h2",  "h3",  "h4",  "h5",  "h6",  "h7",  "h8",  "h9",  "h10",
    "h11", "h12", "h13", "h14", "h15", "h16", "h17", "h18", "h19", "h20", "h21", "h22",
    "h23", "h24", "h25", "h26", "h27", "h28", "h29", "h30", "h31", "h32", "h33",
};

const char *usage_field_column(enum usage_field f)
{
    return usage_columns[f];
}

const char *usage_field_redis(enum usage_field f)
{
    return usage_redis_fields[f];
}

int usage_field_from_redis(const char *name, size_t len)
{
    for (int f = 0; f < USAGE_F_N; f++)
        if (strlen(usage_redis_fields[f]) == len && memcmp(usage_redis_fields[f], name, len) == 0)
            return f;
    return -1;
}

void usage_counts_add(struct usage_counts *into, const struct usage_counts *c)
{
    for (int f = 0; f < USAGE_F_N; f++)
        into->v[f] += c->v[f];
}

/* ---- the table ------------------------------------------------------------------- */

#define USAGE_TABLE_MIN_SLOTS 64
/* The index is at most half full: probes stay short. */
#define USAGE_TABLE_LOAD_DEN 2
/* Hash input: the period, the identity (at most 95 bytes) and the route,
 * cut past this; a cut only makes equal hashes likelier, rows still
 * compare whole. */
#define USAGE_HASH_INPUT 512

struct usage_table {
    struct arena *arena;
    const struct siphash_key *key;
    struct usage_row **slots;
    size_t n_slots; /* a power of two */
    size_t n_rows, max_rows;
    size_t bytes; /* of rows and strings */
    struct usage_row *first, *last;
};

struct usage_table *usage_table_new(size_t max_rows, const struct siphash_key *key)
{
    struct usage_table *t = sl_calloc(1, sizeof(*t));
    t->arena = arena_new(16384);
    t->key = key;
    t->max_rows = max_rows;
    t->n_slots = USAGE_TABLE_MIN_SLOTS;
    t->slots = sl_calloc(t->n_slots, sizeof(*t->slots));
    return t;
}

void usage_table_free(struct usage_table *t)
{
    if (!t)
        return;
    arena_free(t->arena);
    free(t->slots);
    free(t);
}

static uint64_t usage_hash(const struct usage_table *t, int64_t period, const char *identity,
                           const char *route)
{
    char in[USAGE_HASH_INPUT];
    size_t n = sizeof(period);
    memcpy(in, &period, n);
    n += str_copy(in + n, sizeof(in) - n, identity) + 1; /* with its NUL: "ab"+"c" != "a"+"bc" */
    if (n < sizeof(in))
        n += str_copy(in + n, sizeof(in) - n, route);
    return siphash24(t->key, in, n);
}

static void usage_table_grow(struct usage_table *t)
{
    size_t n = t->n_slots * 2;
    struct usage_row **slots = sl_calloc(n, sizeof(*slots));
    for (struct usage_row *r = t->first; r; r = r->next) {
        size_t i = r->hash & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = r;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
}

/* The slot of the row of (<period>, <identity>, <route>) with <hash>: the
 * row's, or the empty one where it would go. */
static size_t usage_table_find(const struct usage_table *t, uint64_t hash, int64_t period,
                               const char *identity, const char *route)
{
    size_t mask = t->n_slots - 1, i = hash & mask;
    for (struct usage_row *r; (r = t->slots[i]) != NULL; i = (i + 1) & mask)
        if (r->hash == hash && r->period == period && strcmp(r->identity, identity) == 0 &&
            strcmp(r->route, route) == 0)
            return i;
    return i;
}

static char *usage_table_strdup(struct usage_table *t, const char *s)
{
    size_t len = strlen(s);
    t->bytes += len + 1;
    return arena_strndup(t->arena, s, len);
}

struct usage_row *usage_table_row(struct usage_table *t, int64_t period, const char *identity,
                                  const char *route, const char *key_id, bool *folded)
{
    uint64_t hash = usage_hash(t, period, identity, route);
    size_t i = usage_table_find(t, hash, period, identity, route);
    struct usage_row *r = t->slots[i];
    if (r) {
        if (key_id && *key_id && !*r->key_id)
            r->key_id = usage_table_strdup(t, key_id);
        return r;
    }
    if (t->n_rows >= t->max_rows && strcmp(identity, USAGE_OTHER) != 0) {
        *folded = true;
        bool again = false;
        return usage_table_row(t, period, USAGE_OTHER, route, NULL, &again);
    }
    if ((t->n_rows + 1) * USAGE_TABLE_LOAD_DEN > t->n_slots) {
        usage_table_grow(t);
        i = usage_table_find(t, hash, period, identity, route);
    }
    r = arena_calloc(t->arena, sizeof(*r));
    t->bytes += sizeof(*r);
    r->hash = hash;
    r->period = period;
    r->identity = usage_table_strdup(t, identity);
    r->route = usage_table_strdup(t, route);
    r->key_id = key_id && *key_id ? usage_table_strdup(t, key_id) : "";
    t->slots[i] = r;
    t->n_rows++;
    if (t->last)
        t->last->next = r;
    else
        t->first = r;
    t->last = r;
    return r;
}

uint64_t usage_table_merge(struct usage_table *into, const struct usage_table *from)
{
    uint64_t folded = 0;
    for (const struct usage_row *r = from->first; r; r = r->next) {
        bool f = false;
        struct usage_row *to =
            usage_table_row(into, r->period, r->identity, r->route, r->key_id, &f);
        usage_counts_add(&to->c, &r->c);
        if (f)
            folded += r->c.v[USAGE_F_REQUESTS];
    }
    return folded;
}

size_t usage_table_size(const struct usage_table *t)
{
    return t->n_rows;
}

size_t usage_table_bytes(const struct usage_table *t)
{
    return sizeof(*t) + t->bytes + t->n_slots * sizeof(*t->slots);
}

struct usage_row *usage_table_first(const struct usage_table *t)
{
    return t->first;
}

static int usage_row_cmp(const void *a, const void *b)
{
    const struct usage_row *x = *(const struct usage_row *const *)a;
    const struct usage_row *y = *(const struct usage_row *const *)b;
    if (x->period != y->period)
        return x->period < y->period ? -1 : 1;
    int c = strcmp(x->identity, y->identity);
    return c ? c : strcmp(x->route, y->route);
}

struct usage_row **usage_table_sorted(const struct usage_table *t)
{
    struct usage_row **v = sl_malloc((t->n_rows ? t->n_rows : 1) * sizeof(*v));
    size_t n = 0;
    for (struct usage_row *r = t->first; r; r = r->next)
        v[n++] = r;
    qsort(v, n, sizeof(*v), usage_row_cmp);
    return v;
}

/* ---- recording ------------------------------------------------------------------- */

bool usage_record(struct usage_table *t, const struct usage_event *ev)
{
    bool folded = false;
    int64_t hour = usage_period_start(USAGE_HOUR, ev->now);
    struct usage_row *r = usage_table_row(t, hour, ev->identity, ev->route, ev->key_id, &folded);
    uint64_t *v = r->c.v;
    v[USAGE_F_REQUESTS]++;
    int cls = ev->status / 100;
    if (cls >= 1 && cls <= 5)
        v[USAGE_F_S1XX + cls - 1]++;
    switch (ev->refused_by) {
    case SL_REFUSED_LIMIT:
        v[USAGE_F_REFUSED_LIMIT]++;
        break;
    case SL_REFUSED_QUOTA:
        v[USAGE_F_REFUSED_QUOTA]++;
        break;
    case SL_REFUSED_BAN:
        v[USAGE_F_REFUSED_BAN]++;
        break;
    case SL_REFUSED_ACCESS: /* refused, but not by a limit: no units */
        break;
    default:
        /* Refused requests consume nothing: units are what was served (as
         * quotas count them, SPEC 6.1). */
        v[USAGE_F_UNITS] += ev->cost;
        v[USAGE_F_COST_NANO] += (uint64_t)ev->cost * (uint64_t)ev->price_micro;
        break;
    }
    v[USAGE_F_BYTES_IN] += ev->bytes_in;
    v[USAGE_F_BYTES_OUT] += ev->bytes_out;
    v[USAGE_F_LAT0 + usage_hist_bucket(ev->latency_us)]++;
    return folded;
}
