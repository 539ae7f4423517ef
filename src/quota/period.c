/* Calendar periods in a time zone, from TZif files (RFC 8536). */
#include "quota/period.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/civil.h"
#include "util/mem.h"

#define QUOTA_ZONE_MAX_FILE (256 << 10) /* the largest zoneinfo file is ~4 KiB */
#define QUOTA_ZONE_MAX_NAME 128
#define QUOTA_DAY 86400

struct quota_zone {
    int64_t *at;     /* transition instants, ascending */
    int32_t *offset; /* the offset from at[i] on */
    size_t n;        /* transitions */
    int32_t initial; /* before the first transition: time type 0 */
};

static char *quota_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *quota_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sl_vstrdupf(fmt, ap);
    va_end(ap);
    return s;
}

/* ---- TZif ------------------------------------------------------------------------- */

static uint32_t quota_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t quota_be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)quota_be32(p) << 32 | quota_be32(p + 4));
}

/* The six counts of the header at <p>, in file order. */
struct quota_tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

static struct quota_tzif_counts quota_tzif_header(const unsigned char *p)
{
    return (struct quota_tzif_counts){quota_be32(p + 20), quota_be32(p + 24), quota_be32(p + 28),
                                      quota_be32(p + 32), quota_be32(p + 36), quota_be32(p + 40)};
}

/* Bytes of a data block with <tsize>-byte times. */
static uint64_t quota_tzif_block(const struct quota_tzif_counts *c, int tsize)
{
    return (uint64_t)c->time * (uint64_t)(tsize + 1) + (uint64_t)c->type * 6 + c->chars +
           (uint64_t)c->leap * (uint64_t)(tsize + 4) + c->isstd + c->isut;
}

struct quota_zone *quota_zone_parse(const unsigned char *data, size_t len, char **err)
{
    if (len < 44 || memcmp(data, "TZif", 4) != 0) {
        *err = quota_err("not a TZif file");
        return NULL;
    }
    struct quota_tzif_counts c = quota_tzif_header(data);
    int tsize = 4;
    const unsigned char *p = data + 44, *end = data + len;
    if (data[4] >= '2') { /* skip the 32-bit block for the 64-bit one after it */
        uint64_t skip = quota_tzif_block(&c, 4);
        if (skip + 44 > (uint64_t)(end - p)) {
            *err = quota_err("truncated TZif file");
            return NULL;
        }
        p += skip;
        c = quota_tzif_header(p);
        if (memcmp(p, "TZif", 4) != 0) {
            *err = quota_err("not a TZif file (second header)");
            return NULL;
        }
        p += 44;
        tsize = 8;
    }
    if (c.type == 0 || c.type > 256 || c.time > 100000 ||
        quota_tzif_block(&c, tsize) > (uint64_t)(end - p)) {
        *err = quota_err("truncated or inconsistent TZif file");
        return NULL;
    }
    const unsigned char *times = p, *types = p + (size_t)c.time * (size_t)tsize,
                        *infos = types + c.time;
    for (uint32_t t = 0; t < c.type; t++) {
        int32_t off = (int32_t)quota_be32(infos + 6 * t);
        if (off < -25 * 3600 || off > 26 * 3600) {
            *err = quota_err("inconsistent TZif file (offset %d)", (int)off);
            return NULL;
        }
    }
    struct quota_zone *z = sl_calloc(1, sizeof(*z));
    z->initial = (int32_t)quota_be32(infos);
    z->n = c.time;
    z->at = sl_calloc(c.time ? c.time : 1, sizeof(*z->at));
    z->offset = sl_calloc(c.time ? c.time : 1, sizeof(*z->offset));
    for (size_t i = 0; i < c.time; i++) {
        unsigned t = types[i];
        int64_t at = tsize == 8 ? quota_be64(times + 8 * i) : (int32_t)quota_be32(times + 4 * i);
        if (t >= c.type || (i > 0 && at <= z->at[i - 1])) {
            *err = quota_err("inconsistent TZif file (transition %zu)", i);
            quota_zone_free(z);
            return NULL;
        }
        z->at[i] = at;
        z->offset[i] = (int32_t)quota_be32(infos + 6 * t);
    }
    return z;
}

/* ---- loading ---------------------------------------------------------------------- */

static bool quota_zone_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > QUOTA_ZONE_MAX_NAME || name[0] == '/' || name[0] == '.' ||
        strstr(name, "/.") || name[len - 1] == '/')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '/' || *p == '_' || *p == '+' || *p == '-'))
            return false;
    return true;
}

/* The whole of <path> in a malloc'd buffer, or NULL with errno set. */
static unsigned char *quota_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *data = sl_malloc(QUOTA_ZONE_MAX_FILE);
    *len = fread(data, 1, QUOTA_ZONE_MAX_FILE, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(data);
        errno = EIO;
        return NULL;
    }
    return data;
}

struct quota_zone *quota_zone_load(const char *name, char **err)
{
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return sl_calloc(1, sizeof(struct quota_zone));
    if (!quota_zone_name_ok(name)) {
        *err = quota_err("%s: not a time zone name (such as Europe/Paris)", name);
        return NULL;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    size_t len = 0;
    unsigned char *data = quota_read_file(path, &len);
    if (!data) {
        *err = quota_err("%s: unknown time zone (%s: %s)", name, path, strerror(errno));
        return NULL;
    }
    char *why = NULL;
    struct quota_zone *z = quota_zone_parse(data, len, &why);
    free(data);
    if (!z) {
        *err = quota_err("%s: %s: %s", name, path, why);
        free(why);
    }
    return z;
}

void quota_zone_free(struct quota_zone *z)
{
    if (!z)
        return;
    free(z->at);
    free(z->offset);
    free(z);
}

int32_t quota_zone_offset(const struct quota_zone *z, int64_t t)
{
    if (z->n == 0 || t < z->at[0])
        return z->initial;
    size_t lo = 0, hi = z->n; /* the last transition <= t is in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->offset[lo];
}

/* ---- the calendar ----------------------------------------------------------------- */

/* The first instant whose local time in <z> is at or after the local
 * time <local> (seconds of local reckoning): <local> minus its offset,
 * for one of the offsets in force around it. */
static int64_t quota_local_to_utc(const struct quota_zone *z, int64_t local)
{
    int32_t around[3] = {quota_zone_offset(z, local - QUOTA_DAY), quota_zone_offset(z, local),
                         quota_zone_offset(z, local + QUOTA_DAY)};
    int64_t best = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        int64_t c = local - around[i];
        if (c + quota_zone_offset(z, c) >= local && c < best)
            best = c;
    }
    return best == INT64_MAX ? local - around[1] : best; /* (none: not seen in any zone) */
}

static int64_t quota_midnight(const struct quota_zone *z, int64_t y, int m, int d)
{
    return quota_local_to_utc(z, civil_days_from(y, m, d) * QUOTA_DAY);
}

struct quota_period quota_period_at(const struct quota_zone *z, enum quota_span span, int reset_day,
                                    int64_t t)
{
    int64_t days = civil_floor_div(t + quota_zone_offset(z, t), QUOTA_DAY);
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (span == QUOTA_DAILY) {
        int64_t ny;
        int nm, nd;
        civil_from_days(days + 1, &ny, &nm, &nd);
        return (struct quota_period){quota_midnight(z, y, m, d), quota_midnight(z, ny, nm, nd)};
    }
    if (reset_day < 1 || reset_day > 28)
        reset_day = 1;
    if (d < reset_day && --m == 0) {
        m = 12;
        y--;
    }
    int64_t ny = m == 12 ? y + 1 : y;
    int nm = m == 12 ? 1 : m + 1;
    return (struct quota_period){quota_midnight(z, y, m, reset_day),
                                 quota_midnight(z, ny, nm, reset_day)};
}
