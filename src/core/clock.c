/* Clocks and timestamp formatting; see include/rydes/clock.h. */
#include "rydes/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t clock_read_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_mono_us(void)
{
    return clock_read_us(CLOCK_MONOTONIC);
}

int64_t clock_wall_us(void)
{
    return clock_read_us(CLOCK_REALTIME);
}

void clock_format_rfc3339(int64_t wall_us, char *out)
{
    time_t secs = (time_t)(wall_us / 1000000);
    int ms = (int)((wall_us % 1000000) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96]; /* roomy enough for any int the compiler imagines; real dates need 24 */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    size_t n = strnlen(tmp, CLOCK_RFC3339_LEN - 1);
    memcpy(out, tmp, n);
    out[n] = '\0';
}
