/* Allocation helpers: every allocation in Rydes goes through these, and running out of memory
 * (or of threads) aborts through one place instead of being half-handled at every call site. */
#ifndef RYDES_MEM_H
#define RYDES_MEM_H

#include <pthread.h>
#include <stddef.h>

/* Logs and aborts. Never returns. */
_Noreturn void rydes_oom(void);

/* Like malloc/calloc/realloc/strdup, but never return NULL. The caller frees with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* pthread_create with default attributes that never fails: when the system refuses a thread (a
 * container's pids limit, RLIMIT_NPROC, no memory for its stack) it writes why to stderr and
 * aborts, as rydes_oom does. A process without one of its threads would run without a part of
 * itself (no request deadlines, no retention) and join a thread that never was. */
void xthread_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
