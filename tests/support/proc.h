/* The real binary as a separate process, for the chaos suites: `rydes serve` and
 * `rydes worker` started with posix_spawn against the harness database, their output in a log
 * file (in /tmp, or in the directory RYDES_TEST_PROC_LOGS names), stopped with a signal of the
 * test's choosing. */
#ifndef RYDES_TEST_PROC_H
#define RYDES_TEST_PROC_H

#include "harness.h"

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct proc {
    pid_t pid;                  /* 0 when not running */
    int port;                   /* serve: the port it listens on */
    struct harness_server http; /* only .base is set: pass &p->http to harness_request */
    char log[PATH_MAX];         /* stdout and stderr of the process */
    bool keep_log;              /* in RYDES_TEST_PROC_LOGS: proc_cleanup leaves it */
};

/* Starts `rydes serve` on a port of its own choosing against harness_db_url(), with the
 * harness admin token, workers (a RYDES_WORKERS value) and more "--setting", "value" pairs in
 * extra (NULL-terminated, may be NULL); waits up to 20 s for its "listening" line. Aborts the
 * test when it does not come up (the log is printed). */
void proc_serve(struct proc *p, const char *workers, const char *const *extra);
/* Starts `rydes worker NAME…` with args (NULL-terminated: names, then "--setting", "value"
 * pairs) against harness_db_url(). Does not wait for anything. */
void proc_worker(struct proc *p, const char *const *args);
/* Sends sig and waits for the process; returns its wait status. No-op (returns 0) when not
 * running. The log file stays until proc_cleanup. */
int proc_signal_wait(struct proc *p, int sig);
/* Kills (SIGKILL) a running process and removes its log, unless RYDES_TEST_PROC_LOGS names the
 * directory the logs are made in (./dev test's, so that its secrets check reads them too). */
void proc_cleanup(struct proc *p);
/* Does the process's log contain needle? */
bool proc_log_contains(const struct proc *p, const char *needle);
/* Prints the last lines of the log to stderr (for failure messages). */
void proc_dump_log(const struct proc *p);

#endif
