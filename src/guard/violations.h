#ifndef SLUICE_VIOLATIONS_H
#define SLUICE_VIOLATIONS_H
/* Rate-limit violations (each 429) counted per identity, in a bounded table:
 * when full, the entry seen least recently among a small random sample is
 * dropped (Redis's approximated LRU), so memory stays bounded whatever
 * attackers send. The abuse/ban features read it. Thread-safe; only the
 * rejection path writes it. */

#include <stdint.h>

struct viol_table;

struct viol_view {
    char identity[96];
    char route[128];
    uint64_t count;
    int64_t first_us, last_us; /* wall clock */
};

struct viol_table *viol_new(unsigned capacity);
void viol_free(struct viol_table *v);
/* One more violation by <identity> on <route> at <now_us>. */
void viol_record(struct viol_table *v, const char *identity, const char *route, int64_t now_us);
/* The <identity>'s record into <out>; 0, or -1 when unknown. */
int viol_get(struct viol_table *v, const char *identity, struct viol_view *out);
/* Up to <n> records with the highest counts, highest first; returns how many. */
int viol_top(struct viol_table *v, struct viol_view *out, int n);
unsigned viol_size(struct viol_table *v);

#endif
