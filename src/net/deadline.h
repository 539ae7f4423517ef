#ifndef SLUICE_DEADLINE_H
#define SLUICE_DEADLINE_H
/* Lazy timeouts (as nginx keeps its timer tree quiet): a deadline that moves
 * later -- every read, every request -- costs one store; the libuv timer is
 * re-armed only when a deadline moves earlier, and when it fires early it
 * re-arms itself for the rest. Times are the loop's milliseconds. */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define DEADLINE_NONE UINT64_MAX

/* Expire <ms> from now. */
static inline void deadline_set(uv_timer_t *t, uint64_t *at, uint64_t ms, uv_timer_cb cb)
{
    *at = uv_now(t->loop) + ms;
    if (!uv_is_active((uv_handle_t *)t) || uv_timer_get_due_in(t) > ms)
        uv_timer_start(t, cb, ms, 0);
}

static inline void deadline_clear(uint64_t *at)
{
    *at = DEADLINE_NONE;
}

/* For the timer callback: true when deadline <at> has passed; otherwise the
 * timer is re-armed for what is left (or left idle when there is none). */
static inline bool deadline_due(uv_timer_t *t, uint64_t at, uv_timer_cb cb)
{
    if (at == DEADLINE_NONE)
        return false;
    uint64_t now = uv_now(t->loop);
    if (now >= at)
        return true;
    uv_timer_start(t, cb, at - now, 0);
    return false;
}

#endif
