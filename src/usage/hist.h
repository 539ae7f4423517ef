#ifndef SLUICE_USAGE_HIST_H
#define SLUICE_USAGE_HIST_H
/* The latency histogram of usage rows (SPEC 6.4): fixed buckets, the same in
 * every gateway, every store and every period, so that the histogram of a
 * day or a month is the exact sum of its hours' and p50/p95/p99 of any sum
 * can be computed afterwards. Buckets grow by a factor of sqrt(2) from 1 ms
 * (at most 41% wide, so an interpolated percentile is within about 20% of
 * the true one), capped at 60 s:
 *   bucket 0          [0, 1 ms)
 *   bucket k, 1..31   [1 ms * sqrt(2)^(k-1), 1 ms * sqrt(2)^k)   (rounded to the microsecond)
 *   bucket 32         [46.34 s, 60 s)
 *   bucket 33         [60 s, infinity)
 * Pure functions. */

#include <stdint.h>

#define USAGE_LAT_N 34

/* The upper bound of bucket <b> in microseconds (0 <= b < USAGE_LAT_N - 1);
 * the last bucket has none. */
int64_t usage_hist_upper_us(int b);
/* The lower bound of bucket <b> in microseconds. */
int64_t usage_hist_lower_us(int b);
/* The bucket of a latency of <us> microseconds (negative counts as 0). */
int usage_hist_bucket(int64_t us);

/* The <q> quantile (0 < q <= 1) of the histogram <counts> (USAGE_LAT_N
 * buckets) in milliseconds, by linear interpolation inside the bucket that
 * holds rank q * total (as Prometheus's histogram_quantile); a rank in the
 * open last bucket is its lower bound, 60000. -1 when the histogram is
 * empty. */
double usage_hist_quantile_ms(const uint64_t *counts, double q);

#endif
