#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H
/* The sub-commands of the sluice binary (SPEC 1). Each takes its arguments
 * as main() does, with <argv>[0] the verb ("check") and its options after
 * it, and returns the process's exit code: 0 ok, 1 runtime failure, 2 usage
 * or config error. */

/* sluice check -c FILE: load and validate FILE; print "FILE: ok" on stdout,
 * or every error as "FILE:LINE: message" on stderr. */
int cli_check(int argc, char **argv);

/* sluice purge -c FILE (--key K | --prefix P | --pattern G | --tag T | --all):
 * POST /cache/purge to the admin API of the gateway running with FILE
 * (admin.listen, admin.token) and print "purged N". 1 when the gateway
 * cannot be reached or refuses; 2 when FILE has no admin section. */
int cli_purge(int argc, char **argv);

/* sluice keys (create|list|show ID|rotate ID|revoke ID|export|import F) -c FILE [options]:
 * API keys in the store of FILE (store.data_dir; SPEC 5.1). create and
 * rotate print the new secret once; --json on every subcommand prints the
 * key as JSON ({"key": ..., "secret": ...} for create and rotate). 1 on a
 * store failure or an unknown key ("no key 'ID'"); 2 on a usage or config
 * error (unknown tier, bad --limit/--expires/--grace, redis backend). */
int cli_keys(int argc, char **argv);

/* sluice usage -c FILE [--key ID] [--identity ID] [--route R] [--from T] [--to T]
 * [--granularity G] [--csv]: the usage report of GET /usage (SPEC 6.4), read
 * from the store of FILE, as JSON or CSV on stdout. 1 on a store failure or
 * an unknown key; 2 on a usage or config error. */
int cli_usage(int argc, char **argv);

/* sluice audit verify FILE... (-c FILE | --key HEX): checks the chain of
 * audit files, oldest first (SPEC 7.5). 0 and "ok: N lines"; 1 naming the
 * first bad line; 2 on a usage or config error or an unreadable file. */
int cli_audit(int argc, char **argv);

/* Print "sluice <verb>: <message>" on stderr, then <usage> when not NULL;
 * returns <code>, so a verb can write: return cli_fail(2, ...). */
int cli_fail(int code, const char *verb, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct config;
/* The config at <file>, or NULL after printing its errors (FILE:LINE:
 * message lines) on stderr; a verb then exits 2. */
struct config *cli_load_config(const char *file);

#endif
