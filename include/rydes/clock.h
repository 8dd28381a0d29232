/* Time: monotonic clock for durations and deadlines, wall clock for timestamps, and the RFC 3339
 * format (UTC, milliseconds) used in every API representation. */
#ifndef RYDES_CLOCK_H
#define RYDES_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define CLOCK_RFC3339_LEN 32 /* buffer size for clock_format_rfc3339, including the NUL */

int64_t clock_mono_us(void);
int64_t clock_wall_us(void);
/* Writes e.g. "2026-11-26T12:00:00.123Z" into out (CLOCK_RFC3339_LEN bytes). */
void clock_format_rfc3339(int64_t wall_us, char *out);
/* Parses an RFC 3339 date-time ("2026-11-26T12:00:00Z", with optional fraction and a numeric
 * offset, "T" or "t" or a space between date and time) into *wall_us. Rejects anything else,
 * including impossible dates (February 30) and leap seconds. Pure. */
bool clock_parse_rfc3339(const char *s, int64_t *wall_us);

#endif
