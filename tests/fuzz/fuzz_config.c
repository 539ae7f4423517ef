/* libFuzzer harness: the config loader (conf/conf.h cfg_load_string): YAML
 * parsing, every module's table of keys, ${VAR} expansion and the checks
 * across sections. A config that loads is freed with cfg_unref; one that
 * does not must say why.
 *
 * No DNS: addresses ("host:port") are resolved by cfg_parse_addr with
 * getaddrinfo, which for a name the fuzzer made up would ask the network
 * (slow, and not the code under test). This harness defines getaddrinfo
 * itself: the call goes to the C library's with AI_NUMERICHOST added, so
 * numeric addresses load as usual and every name fails at once, as an
 * unknown name would. ${VAR} expansion reads a fixed, injected
 * environment. A jwks_file the input names is read (at most 1 MiB). */
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static getaddrinfo_fn real;
    if (!real)
        real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = {0};
    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}

static const char *fuzz_getenv(const char *name, void *ctx)
{
    static const char *const env[][2] = {
        {"PORT", "8080"},
        {"SECRET", "0123456789abcdef0123456789abcdef"},
        {"EMPTY", ""},
        {"ON", "true"},
    };
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
        if (strcmp(name, env[i][0]) == 0)
            return env[i][1];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly <size> bytes: the loader must not read past its length. */
    char *yaml = malloc(size ? size : 1);
    memcpy(yaml, data, size);
    char *err = NULL;
    struct config *c = cfg_load_string(yaml, size, "fuzz.yaml", fuzz_getenv, NULL, &err);
    if (c) {
        cfg_unref(c);
    } else if (!err || !*err) {
        FUZZ_ABORT(); /* a refused config always says why */
    }
    free(err);
    free(yaml);
    return 0;
}
