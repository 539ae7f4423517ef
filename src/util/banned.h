#ifndef SLUICE_BANNED_H
#define SLUICE_BANNED_H
/* Functions that overflow buffers or hide errors are compile errors in our
 * code (after git's banned.h). Use snprintf, memcpy with a checked length,
 * strtol/strtoull with end-pointer checks, and our own tokenizers instead. */
#define BANNED(func) sorry_##func##_is_a_banned_function
#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef atol
#define atol(x) BANNED(atol)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)
#endif
