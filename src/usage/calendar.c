/* UTC calendar arithmetic and the report's time formats (usage/calendar.h). */
#include "usage/calendar.h"

#include <stdio.h>
#include <string.h>

#define USAGE_DAY_S 86400
/* 9999-12-31T23:59:59Z: the last second a four-digit year can name. */
#define USAGE_TIME_LAST INT64_C(253402300799)

static const char *const usage_gran_names[USAGE_GRAN_N] = {"hour", "day", "month"};

const char *usage_gran_name(enum usage_gran g)
{
    return usage_gran_names[g];
}

int usage_gran_parse(const char *s)
{
    for (int g = 0; g < USAGE_GRAN_N; g++)
        if (strcmp(s, usage_gran_names[g]) == 0)
            return g;
    return -1;
}

int64_t usage_period_start(enum usage_gran g, int64_t t)
{
    if (g == USAGE_HOUR)
        return civil_floor_div(t, 3600) * 3600;
    int64_t days = civil_floor_div(t, USAGE_DAY_S);
    if (g == USAGE_DAY)
        return days * USAGE_DAY_S;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    return civil_days_from(y, m, 1) * USAGE_DAY_S;
}

int64_t usage_period_next(enum usage_gran g, int64_t start)
{
    if (g == USAGE_HOUR)
        return start + 3600;
    if (g == USAGE_DAY)
        return start + USAGE_DAY_S;
    int64_t y;
    int m, d;
    civil_from_days(civil_floor_div(start, USAGE_DAY_S), &y, &m, &d);
    return civil_days_from(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * USAGE_DAY_S;
}

/* <n> digits at *<p> into *<out>, advancing *<p>; -1 when they are not all there. */
static int usage_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static bool usage_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int usage_month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && usage_leap(y) ? 29 : days[m - 1];
}

/* "YYYY-MM-DD" at *<p> into days since the epoch; -1 when it is not a date. */
static int usage_parse_date(const char **p, int64_t *days)
{
    int y, m, d;
    if (usage_digits(p, 4, &y) < 0 || *(*p)++ != '-' || usage_digits(p, 2, &m) < 0 ||
        *(*p)++ != '-' || usage_digits(p, 2, &d) < 0)
        return -1;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > usage_month_days(y, m))
        return -1;
    *days = civil_days_from(y, m, d);
    return 0;
}

int usage_time_parse(const char *s, bool end, int64_t *out)
{
    size_t len = strlen(s);
    if (len == 0)
        return -1;
    if (strspn(s, "0123456789") == len) {
        if (len > 12)
            return -1;
        int64_t v = 0;
        for (size_t i = 0; i < len; i++)
            v = v * 10 + (s[i] - '0');
        if (v > USAGE_TIME_LAST)
            return -1;
        *out = v;
        return 0;
    }
    const char *p = s;
    int64_t days;
    if (usage_parse_date(&p, &days) < 0)
        return -1;
    if (*p == '\0') {
        *out = (days + (end ? 1 : 0)) * USAGE_DAY_S;
        return 0;
    }
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    int hh, mm, ss;
    if (usage_digits(&p, 2, &hh) < 0 || *p++ != ':' || usage_digits(&p, 2, &mm) < 0 ||
        *p++ != ':' || usage_digits(&p, 2, &ss) < 0)
        return -1;
    if (hh > 23 || mm > 59 || ss > 60) /* 60: a leap second, read as the next minute's 0 */
        return -1;
    if (*p == '.') {
        p++;
        size_t n = strspn(p, "0123456789");
        if (n == 0)
            return -1;
        p += n;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-' || *p == ' ') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om;
        p++;
        if (usage_digits(&p, 2, &oh) < 0 || *p++ != ':' || usage_digits(&p, 2, &om) < 0 ||
            oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    int64_t t = days * USAGE_DAY_S + hh * 3600 + mm * 60 + ss - offset;
    if (t < 0 || t > USAGE_TIME_LAST)
        return -1;
    *out = t;
    return 0;
}

void usage_time_format(int64_t t, char out[USAGE_TIME_MAX])
{
    int64_t days = civil_floor_div(t, USAGE_DAY_S), secs = t - days * USAGE_DAY_S, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    /* Room for any int the compiler cannot rule out; no time parsed is
     * past the first instant of 10000 (the end of to=9999-12-31), so the
     * copy is never cut. */
    char s[80];
    snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
    snprintf(out, USAGE_TIME_MAX, "%.21s", s);
}
