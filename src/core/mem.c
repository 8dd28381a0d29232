/* Allocation helpers that abort on out-of-memory (and a thread start that aborts when refused);
 * see include/rydes/mem.h. */
#include "rydes/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn void rydes_oom(void)
{
    static const char msg[] = "rydes: out of memory\n";
    /* write(2) rather than stdio: stdio may itself need memory. */
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        rydes_oom();
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        rydes_oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        rydes_oom();
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void xthread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(t, NULL, fn, arg);
    if (err == 0)
        return;
    char msg[160];
    int n = snprintf(msg, sizeof msg, "rydes: cannot start a thread: %s\n", strerror(err));
    ssize_t ignored = write(STDERR_FILENO, msg, n > 0 && n < (int)sizeof msg ? (size_t)n : 0);
    (void)ignored;
    abort();
}
