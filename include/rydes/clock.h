/* Time: monotonic clock for durations and deadlines, wall clock for timestamps, and the RFC 3339
 * format (UTC, milliseconds) used in every API representation. */
#ifndef RYDES_CLOCK_H
#define RYDES_CLOCK_H

#include <stdint.h>

#define CLOCK_RFC3339_LEN 32 /* buffer size for clock_format_rfc3339, including the NUL */

int64_t clock_mono_us(void);
int64_t clock_wall_us(void);
/* Writes e.g. "2026-11-26T12:00:00.123Z" into out (CLOCK_RFC3339_LEN bytes). */
void clock_format_rfc3339(int64_t wall_us, char *out);

#endif
