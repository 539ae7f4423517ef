#ifndef SLUICE_PROXY_BUFFER_H
#define SLUICE_PROXY_BUFFER_H
/* Request buffering (route `request_buffering`, by default
 * server.request_buffering): a request body read whole
 * before the upstream is asked — in memory up to
 * server.request_buffer_memory, past that in a temp file under data_dir
 * (unlinked at once, so it is gone on every path) — then sent with
 * Content-Length. WSGI servers read only Content-Length bodies; and a slow
 * upload then costs the app nothing. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/exchange.h"

struct px_body;

/* Should <x>'s body be read whole first (its route's mode: auto buffers a
 * chunked body, on every body, off none)? */
bool px_body_wanted(const struct exchange *x);

/* Read <x>'s body whole, then call <done>(<x>) with x->content_length set
 * to its size and x->chunked false; on failure (the temp file), answer 500
 * and call nothing. The body lives as long as <x>. */
void px_body_read(struct exchange *x, void (*done)(struct exchange *x));
/* The same for a stage before the proxy that must see the whole body
 * before the upstream sees a byte of it (request signing): <tap>(<arg>,
 * ...) sees each part as it arrives (e.g. to hash it); the proxy then sends
 * the body from this buffer, without reading it again. <done> runs on the
 * loop, possibly before this returns. */
typedef void (*px_body_tap_fn)(void *arg, const char *data, size_t len);
void px_body_read_tapped(struct exchange *x, void (*done)(struct exchange *x), px_body_tap_fn tap,
                         void *arg);

/* <x>'s buffered body, NULL when it was not buffered. */
struct px_body *px_body_of(const struct exchange *x);

/* Copy the next at most <cap> bytes of <b> into <out>: how many (0: all
 * sent), or -1 when the temp file cannot be read. */
ssize_t px_body_next(struct px_body *b, char *out, size_t cap);
/* Start again from the first byte (a retry on another connection). */
void px_body_rewind(struct px_body *b);

/* Can temp files be made under <dir>? 0, or -1 with *<err> (malloc'd). */
int px_body_check_dir(const char *dir, char **err);

#endif
