/* Logging to stderr, one line per event, as text or JSON. A line is built whole and written
 * with one write (continued if it comes back short); each message and value is cut after 1 KiB
 * escaped, so a line of a few fields stays within PIPE_BUF, which a pipe writes whole, and
 * concurrent threads' lines do not interleave. Events may carry key/value fields; the access
 * log is one such event per HTTP request. */
#ifndef RYDES_LOG_H
#define RYDES_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

enum log_field_kind { LOG_FIELD_STR, LOG_FIELD_INT, LOG_FIELD_DOUBLE };

struct log_field {
    const char *key;
    enum log_field_kind kind;
    const char *str;
    int64_t i;
    double d;
};

#define LOG_STR(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_STR, .str = (v)})
#define LOG_INT(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_INT, .i = (v)})
#define LOG_DBL(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_DOUBLE, .d = (v)})

#define LOG_MAX_FIELDS 16 /* per event, the trace's included; more are dropped */

void log_configure(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);
/* Emits msg with the given fields, and the thread's trace (rydes/trace.h) when it has one. */
void log_event(enum log_level level, const char *msg, const struct log_field *fields, int nfields);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
