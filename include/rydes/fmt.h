/* Integers and strings formatted without printf, for the hot paths: statement parameters,
 * receipts and replies (callgrind: the snprintf family was a ninth of the gateway's
 * instructions in a send-receive-delete cycle). Each writes what the printf conversion named
 * beside it writes, within the limits said there, NUL-terminated, and returns the length
 * written. */
#ifndef RYDES_FMT_H
#define RYDES_FMT_H

#include <stddef.h>

/* Room for any long long in decimal, sign and NUL included. */
#define FMT_INT_LEN 21

/* "%lld" into out[FMT_INT_LEN]. */
size_t fmt_int(char *out, long long v);
/* "%llu" into out[FMT_INT_LEN]. */
size_t fmt_uint(char *out, unsigned long long v);
/* "%0*llx" with digits (1..16) into out[digits + 1] for a v of at most 4 * digits bits (of a
 * wider v, the low 4 * digits bits), lower case. */
size_t fmt_hex(char *out, unsigned long long v, int digits);
/* snprintf(dst, n, "%s", src) for n >= 1: copies what fits, always terminated; returns the
 * length copied (not strlen(src)). */
size_t fmt_copy(char *dst, size_t n, const char *src);

#endif
