#ifndef SLUICE_TEST_SUPPORT_H
#define SLUICE_TEST_SUPPORT_H
/* What several unit tests need from the machine: a free loopback port, a
 * real redis-server that cannot outlive the test, and removing a
 * temporary directory. Header-only: each test is one executable. */

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A loopback TCP port nobody listens on now, or -1. */
static inline int test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts `redis-server --port <port> --bind 127.0.0.1`, without persistence,
 * plus the NULL-terminated <extra> arguments (may be NULL). The child dies
 * with the test, whatever way the test dies (PR_SET_PDEATHSIG). Returns its
 * pid (> 0) or -1; waiting until it answers is the caller's. */
static inline pid_t test_redis_spawn(int port, const char *const *extra)
{
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the test died before the prctl */
        _exit(1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    const char *argv[32] = {"redis-server", "--port", port_s,  "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no",     "--dir", "/tmp"};
    int n = 11;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    execvp("redis-server", (char *const *)argv);
    _exit(127);
}

/* SIGKILL and reap <pid> (nothing when <= 0). */
static inline void test_redis_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* rm -rf <path>. */
static inline void test_rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        if (snprintf(p, sizeof(p), "%s/%s", path, e->d_name) < (int)sizeof(p))
            test_rm_rf(p);
    }
    closedir(d);
    rmdir(path);
}

#endif
