/* Clocks and timestamp formatting; see include/rydes/clock.h. */
#include "rydes/clock.h"

#include <ctype.h>
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
    int64_t us = wall_us % 1000000;
    if (us < 0) /* before 1970: floor the seconds, keep the fraction positive */
        us += 1000000;
    time_t secs = (time_t)((wall_us - us) / 1000000);
    int ms = (int)(us / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96]; /* roomy enough for any int the compiler imagines; real dates need 24 */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    size_t n = strnlen(tmp, CLOCK_RFC3339_LEN - 1);
    memcpy(out, tmp, n);
    out[n] = '\0';
}

/* Reads exactly n digits at *p into *out, advancing *p. */
static bool digits(const char **p, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return false;
        *out = *out * 10 + (**p - '0');
    }
    return true;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_valid(int y, int mon, int d)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mon < 1 || mon > 12 || d < 1)
        return false;
    return d <= days[mon - 1] + (mon == 2 && leap(y));
}

/* The offset part: "Z", or "+HH:MM" / "-HH:MM", into seconds east of UTC. */
static bool offset(const char *p, int *secs)
{
    int h, m;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return (*secs = 0, true);
    if (*p != '+' && *p != '-')
        return false;
    int sign = *p++ == '-' ? -1 : 1;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &m) || *p != '\0' || h > 23 || m > 59)
        return false;
    *secs = sign * (h * 3600 + m * 60);
    return true;
}

bool clock_parse_rfc3339(const char *s, int64_t *wall_us)
{
    const char *p = s;
    int y, mon, d, h, mi, sec, off;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return false;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; isdigit((unsigned char)*p); p++, n++)
            if (n < 6)
                frac_us = frac_us * 10 + (*p - '0');
        if (n == 0)
            return false;
        for (; n < 6; n++)
            frac_us *= 10;
    }
    if (!offset(p, &off) || !date_valid(y, mon, d) || h > 23 || mi > 59 || sec > 59)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *wall_us = ((int64_t)t - off) * 1000000 + frac_us;
    return true;
}
