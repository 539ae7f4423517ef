#ifndef SLUICE_MEM_H
#define SLUICE_MEM_H
/* Allocation that cannot fail: out of memory aborts the process with one
 * message (as Redis and h2o do) instead of half-checked error paths. */
#include <stdarg.h>
#include <stddef.h>

void *sl_malloc(size_t n);
void *sl_calloc(size_t n, size_t size);
void *sl_realloc(void *p, size_t n);
char *sl_strdup(const char *s);
char *sl_strndup(const char *s, size_t n);
/* A malloc'd string formatted as vsnprintf would (the caller frees it). */
char *sl_vstrdupf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* Write <msg> to stderr and abort: for the few states with nothing sane to
 * fall back on (no memory, no randomness). */
void sl_fatal(const char *msg) __attribute__((noreturn));

/* SL_ASAN: built with AddressSanitizer (GCC says so with a macro, clang
 * with __has_feature). Memory pools then free instead of keeping, so a
 * pointer used after its owner ended is reported, not silently reused. */
#if defined(__SANITIZE_ADDRESS__)
#define SL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_ASAN 1
#endif
#endif

#endif
