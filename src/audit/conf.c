/* The audit module's config rows (audit/conf.h). */
#include "audit/conf.h"

#include "conf/walker.h"
#include "modules.h"

const struct audit_conf *audit_conf(const struct config *c)
{
    return c->mod[MOD_audit];
}

/* The chain needs a key: audit.key, else the store's encryption key. A
 * generated key file was the other choice; it would sit next to the log it
 * protects, where whoever can edit the log can read it. */
static void audit_cfg_check(struct cfg_ctx *cx, void *base, int line)
{
    struct audit_conf *ac = base;
    if (ac->key.set)
        return;
    if (cx->c->store.encryption_key.set) {
        ac->key = cx->c->store.encryption_key;
        return;
    }
    cfg_kerror(cx, line,
               "needs audit.key or store.encryption_key (32 bytes as 64 hex digits or "
               "base64, e.g. from `openssl rand -base64 32`) to chain its lines");
}

static const struct cfg_key audit_cfg_keys[] = {
    CFG_ROW("path", cfg_set_path_rel, struct audit_conf, path, 0, 0, "./var/audit.log",
            CFG_NONEMPTY | CFG_RESTART),
    /* At least 1k, so a test can rotate; a line is at most 8k, and a file
     * holds at least one batch whatever the bound. */
    CFG_SIZE("max_size", struct audit_conf, max_size, 1024, (int64_t)1 << 40, "100m"),
    /* Rotated files kept: audit.log.1 ... audit.log.<keep>. */
    CFG_INT("keep", struct audit_conf, keep, 1, 1000, "5", 0),
    CFG_BOOL("requests", struct audit_conf, requests, "false"),
    CFG_ROW("key", cfg_set_secret32, struct audit_conf, key, 0, 0, NULL, CFG_RESTART),
    CFG_END,
};
static const struct cfg_section audit_cfg_section = {audit_cfg_keys, audit_cfg_check};

/* The top level; its first member is what audit_conf() returns. */
struct audit_cfg_top {
    struct audit_conf audit;
};
static const struct cfg_key audit_cfg_top_keys[] = {
    CFG_SECTION_OR_OFF("audit", struct audit_cfg_top, audit, &audit_cfg_section),
    CFG_END,
};
static const struct cfg_section audit_cfg_top_section = {audit_cfg_top_keys, NULL};

const struct cfg_module audit_cfg_module = {
    .top = &audit_cfg_top_section,
    .top_size = sizeof(struct audit_cfg_top),
};
