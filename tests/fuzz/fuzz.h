#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H
/* Shared by the libFuzzer harnesses of tests/fuzz. */
#include <stdio.h>
#include <stdlib.h>

/* A broken invariant: say which check (file:line) before the crash report. */
#define FUZZ_ABORT()                                                                               \
    do {                                                                                           \
        fprintf(stderr, "fuzz: invariant broken at %s:%d\n", __FILE__, __LINE__);                  \
        abort();                                                                                   \
    } while (0)

#endif
