/* Allocation helpers: every allocation in Rydes goes through these, and running out of memory
 * aborts through one place (rydes_oom) instead of being half-handled at every call site. */
#ifndef RYDES_MEM_H
#define RYDES_MEM_H

#include <stddef.h>

/* Logs and aborts. Never returns. */
_Noreturn void rydes_oom(void);

/* Like malloc/calloc/realloc/strdup, but never return NULL. The caller frees with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
