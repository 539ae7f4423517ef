#ifndef SLUICE_PRELUDE_H
#define SLUICE_PRELUDE_H
/* Force-included before every sluice source file (see CMakeLists.txt): the
 * libc headers that declare the banned functions come first, so banned.h can
 * then turn any later use of them into a compile error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/banned.h"
#endif
