/* The latency histogram's buckets and quantiles (usage/hist.h). */
#include "usage/hist.h"

/* Upper bounds in microseconds: round(1000 * 2^(k/2)) for k = 0..31, then
 * 60 s. Written out so that every build and every store agrees to the
 * microsecond, whatever the libm. */
static const int64_t usage_hist_bounds[USAGE_LAT_N - 1] = {
    1000,     1414,     2000,     2828,     4000,     5657,     8000,    11314,   16000,
    22627,    32000,    45255,    64000,    90510,    128000,   181019,  256000,  362039,
    512000,   724077,   1024000,  1448155,  2048000,  2896309,  4096000, 5792619, 8192000,
    11585238, 16384000, 23170475, 32768000, 46340950, 60000000,
};

int64_t usage_hist_upper_us(int b)
{
    return usage_hist_bounds[b];
}

int64_t usage_hist_lower_us(int b)
{
    return b == 0 ? 0 : usage_hist_bounds[b - 1];
}

int usage_hist_bucket(int64_t us)
{
    /* The first bound above <us>: a binary search over 33 bounds. */
    int lo = 0, hi = USAGE_LAT_N - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (us < usage_hist_bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double usage_hist_quantile_ms(const uint64_t *counts, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < USAGE_LAT_N; b++)
        total += counts[b];
    if (total == 0)
        return -1;
    double rank = q * (double)total;
    uint64_t below = 0;
    for (int b = 0; b < USAGE_LAT_N; b++) {
        if (counts[b] == 0 || (double)(below + counts[b]) < rank) {
            below += counts[b];
            continue;
        }
        double lo = (double)usage_hist_lower_us(b);
        if (b == USAGE_LAT_N - 1)
            return lo / 1000;
        double hi = (double)usage_hist_upper_us(b);
        double frac = (rank - (double)below) / (double)counts[b];
        if (frac < 0)
            frac = 0;
        return (lo + (hi - lo) * frac) / 1000;
    }
    /* Rounding put the rank past the last sample: the highest bucket used. */
    for (int b = USAGE_LAT_N - 1; b >= 0; b--)
        if (counts[b])
            return (double)(b == USAGE_LAT_N - 1 ? usage_hist_lower_us(b)
                                                 : usage_hist_upper_us(b)) /
                   1000;
    return -1;
}
