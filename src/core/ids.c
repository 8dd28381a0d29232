/* Random identifiers; see include/rydes/ids.h. */
#include "rydes/ids.h"

#include "rydes/clock.h"
#include "rydes/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void fill_from_kernel(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            log_error("getrandom failed: %s", strerror(errno));
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

/* Kernel randomness is fetched 512 bytes at a time per thread: one getrandom(2) serves dozens
 * of ids instead of one syscall each. The bytes are used once and never shared by threads. */
void ids_random(void *out, size_t n)
{
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t left;
    unsigned char *p = out;
    while (n > 0) {
        if (left == 0) {
            fill_from_kernel(pool, sizeof pool);
            left = sizeof pool;
        }
        size_t take = n < left ? n : left;
        memcpy(p, pool + sizeof pool - left, take);
        memset(pool + sizeof pool - left, 0, take); /* used bytes do not linger */
        left -= take;
        p += take;
        n -= take;
    }
}

/* Writes the 16 bytes b as a lower-case UUID string, version v. */
static void uuid_format(unsigned char *b, int v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    b[6] = (unsigned char)((b[6] & 0x0f) | (v << 4));
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

void ids_uuid(char *out)
{
    unsigned char b[16];
    ids_random(b, sizeof b);
    uuid_format(b, 4, out);
}

void ids_uuid_v7(char *out)
{
    unsigned char b[16];
    ids_random(b + 6, sizeof b - 6);
    uint64_t ms = (uint64_t)(clock_wall_us() / 1000);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    uuid_format(b, 7, out);
}

bool ids_is_uuid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return s[36] == '\0';
}

bool ids_request_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= IDS_REQUEST_ID_MAX || !(isalnum(c) || strchr("._:-", c)))
            return false;
    }
    return n > 0;
}
