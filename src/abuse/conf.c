/* The abuse module's config rows (abuse/conf.h). */
#include "abuse/conf.h"

#include "conf/walker.h"

/* Bounds: a window shorter than a minute cannot hold 60 slots of a second;
 * longer than 30 days is a typo. A ban is at least a second and at most a
 * year (SPEC: "temporarily"). */
#define ABUSE_WINDOW_MIN_MS 60000ll
#define ABUSE_WINDOW_MAX_MS (30ll * 86400000)
#define ABUSE_BAN_MIN_MS 1000ll
#define ABUSE_BAN_MAX_MS (365ll * 86400000)

static void abuse_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct abuse_conf *a = base;
    a->enabled = true; /* CFG_IF_PRESENT: the check runs only for a section given */
    if (a->max_ban_ms < a->ban_ms) {
        char b[32], m[32];
        cfg_fmt_duration(b, sizeof b, a->ban_ms);
        cfg_fmt_duration(m, sizeof m, a->max_ban_ms);
        cfg_error(cx, line, "abuse: max_ban (%s) is shorter than ban (%s)", m, b);
    }
}

static const struct cfg_key abuse_cfg_keys[] = {
    /* A million violations in a window is no threshold at all. */
    CFG_INT("violations", struct abuse_conf, violations, 1, 1000000, "10", 0),
    CFG_DURATION("window", struct abuse_conf, window_ms, ABUSE_WINDOW_MIN_MS, ABUSE_WINDOW_MAX_MS,
                 "24h"),
    CFG_DURATION("ban", struct abuse_conf, ban_ms, ABUSE_BAN_MIN_MS, ABUSE_BAN_MAX_MS, "2h"),
    /* 1: every ban as long as the first. */
    CFG_INT("escalate", struct abuse_conf, escalate, 1, 1000, "2", 0),
    CFG_DURATION("max_ban", struct abuse_conf, max_ban_ms, ABUSE_BAN_MIN_MS, ABUSE_BAN_MAX_MS,
                 "7d"),
    CFG_END,
};
static const struct cfg_section abuse_cfg_section = {abuse_cfg_keys, abuse_cfg_check};

struct abuse_cfg_top {
    struct abuse_conf abuse;
};
static const struct cfg_key abuse_cfg_top_keys[] = {
    /* Absent: zeroed, <enabled> false. */
    CFG_SECTION("abuse", struct abuse_cfg_top, abuse, &abuse_cfg_section, CFG_IF_PRESENT),
    CFG_END,
};
static const struct cfg_section abuse_cfg_top_section = {abuse_cfg_top_keys, NULL};

const struct cfg_module abuse_cfg_module = {
    .top = &abuse_cfg_top_section,
    .top_size = sizeof(struct abuse_cfg_top),
};
