/* Formatting without printf; see include/rydes/fmt.h. */
#include "rydes/fmt.h"

#include <assert.h>
#include <string.h>

size_t fmt_uint(char *out, unsigned long long v)
{
    char rev[FMT_INT_LEN];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t fmt_int(char *out, long long v)
{
    if (v >= 0)
        return fmt_uint(out, (unsigned long long)v);
    out[0] = '-';
    /* the magnitude in unsigned arithmetic: -LLONG_MIN does not fit a long long */
    return 1 + fmt_uint(out + 1, 0ULL - (unsigned long long)v);
}

size_t fmt_hex(char *out, unsigned long long v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    out[digits] = '\0';
    return (size_t)digits;
}

size_t fmt_copy(char *dst, size_t n, const char *src)
{
    assert(n >= 1);
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
    return len;
}
