/* A growable byte buffer, always NUL-terminated so it can be used as a C string. The struct is
 * caller-owned: buf_init before use, buf_cleanup to release the storage. */
#ifndef RYDES_BUF_H
#define RYDES_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_cleanup(struct buf *b);
void buf_reset(struct buf *b);
/* Drops everything after the first len bytes (nothing when len >= the length). */
void buf_truncate(struct buf *b, size_t len);
/* Makes room for total bytes (and the NUL) at least; when it must grow, to exactly that. */
void buf_grow_exact(struct buf *b, size_t total);
void buf_append(struct buf *b, const void *data, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Returns the contents ("" when empty); valid until the next append or cleanup. */
const char *buf_str(const struct buf *b);
/* Hands the storage to the caller, who frees it with free(); the buffer is left empty. */
char *buf_steal(struct buf *b);

#endif
