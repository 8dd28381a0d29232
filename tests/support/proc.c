/* The real binary as a separate process (see proc.h). */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { MAX_ENV = 512, MAX_ARGS = 64 };

/* The child's environment: ours without RYDES_* and DATABASE_URL, then the harness's own. */
static void child_env(char **env, char *owned[4], const char *workers)
{
    int n = 0;
    for (char **e = environ; *e && n < MAX_ENV - 8; e++)
        if (strncmp(*e, "RYDES_", 6) != 0 && strncmp(*e, "DATABASE_URL=", 13) != 0)
            env[n++] = *e;
    ck_assert(asprintf(&owned[0], "DATABASE_URL=%s", harness_db_url()) > 0);
    ck_assert(asprintf(&owned[1], "RYDES_ADMIN_TOKEN=%s", HARNESS_ADMIN_TOKEN) > 0);
    ck_assert(asprintf(&owned[2], "RYDES_WORKERS=%s", workers ? workers : "none") > 0);
    ck_assert(asprintf(&owned[3], "RYDES_LOG_LEVEL=%s", "info") > 0);
    for (int i = 0; i < 4; i++)
        env[n++] = owned[i];
    env[n] = NULL;
}

static void spawn(struct proc *p, char **argv, const char *workers)
{
    const char *binary = getenv("RYDES_BINARY");
    ck_assert_msg(binary && *binary, "RYDES_BINARY is not set");
    const char *dir = getenv("RYDES_TEST_PROC_LOGS");
    p->keep_log = dir && *dir;
    int len = snprintf(p->log, sizeof p->log, "%s/%s-XXXXXX", p->keep_log ? dir : "/tmp",
                       program_invocation_short_name); /* the suite's name */
    ck_assert_msg(len > 0 && (size_t)len < sizeof p->log, "RYDES_TEST_PROC_LOGS is too long");
    int fd = mkstemp(p->log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, p->log, O_WRONLY | O_APPEND, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, p->log, O_WRONLY | O_APPEND, 0);
    char *env[MAX_ENV];
    char *owned[4];
    child_env(env, owned, workers);
    argv[0] = (char *)binary;
    int rc = posix_spawn(&p->pid, binary, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 4; i++)
        free(owned[i]);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", binary, strerror(rc));
}

/* Copies the NULL-terminated extra into argv from index at; returns the new count. */
static int append_args(char **argv, int at, const char *const *extra)
{
    for (; extra && *extra; extra++) {
        ck_assert_int_lt(at, MAX_ARGS - 1);
        argv[at++] = (char *)*extra;
    }
    argv[at] = NULL;
    return at;
}

/* The port of the "listening on http://host:PORT" line, or 0 when there is none yet. */
static int listening_port(const struct proc *p)
{
    FILE *f = fopen(p->log, "r");
    if (!f)
        return 0;
    char line[1024];
    int port = 0;
    while (!port && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, " listening on http");
        const char *colon = at ? strrchr(at, ':') : NULL;
        if (colon)
            port = atoi(colon + 1);
    }
    fclose(f);
    return port;
}

void proc_serve(struct proc *p, const char *workers, const char *const *extra)
{
    memset(p, 0, sizeof *p);
    char *argv[MAX_ARGS] = {NULL, "serve", "--port", "0", "--threads", "2", "--db-pool-size", "6"};
    append_args(argv, 8, extra);
    spawn(p, argv, workers);
    double deadline = harness_now_s() + 20;
    while (!(p->port = listening_port(p))) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            proc_dump_log(p);
            ck_abort_msg("rydes serve exited before listening (status %d)", status);
        }
        if (harness_now_s() > deadline) {
            proc_dump_log(p);
            ck_abort_msg("rydes serve did not listen within 20 s");
        }
        harness_sleep_ms(20);
    }
    snprintf(p->http.base, sizeof p->http.base, "http://127.0.0.1:%d", p->port);
}

void proc_worker(struct proc *p, const char *const *args)
{
    memset(p, 0, sizeof *p);
    char *argv[MAX_ARGS] = {NULL, "worker"};
    append_args(argv, 2, args);
    spawn(p, argv, NULL);
}

int proc_signal_wait(struct proc *p, int sig)
{
    if (!p->pid)
        return 0;
    kill(p->pid, sig);
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    p->pid = 0;
    return status;
}

void proc_cleanup(struct proc *p)
{
    proc_signal_wait(p, SIGKILL);
    if (p->log[0] && !p->keep_log)
        unlink(p->log);
    p->log[0] = '\0';
}

bool proc_log_contains(const struct proc *p, const char *needle)
{
    FILE *f = fopen(p->log, "r");
    ck_assert_msg(f != NULL, "cannot read %s", p->log); /* else "not in the log" means nothing */
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

void proc_dump_log(const struct proc *p)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", p->log);
    fprintf(stderr, "---- %s ----\n", p->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(could not read the log)\n");
}
