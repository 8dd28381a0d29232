/* Line-oriented logging; see include/rydes/log.h. Each line is built in a buffer and written
 * with one write(2) so lines from different threads never mix. Every string is escaped by hand
 * (control characters and non-ASCII bytes included), so a hostile path or header can never
 * break the line format or inject a fake log line. */
#include "rydes/log.h"

#include "rydes/buf.h"
#include "rydes/clock.h"
#include "rydes/trace.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int log_min_level = LOG_LEVEL_INFO;
static atomic_int log_fmt = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_configure(enum log_level level, enum log_format format)
{
    atomic_store(&log_min_level, (int)level);
    atomic_store(&log_fmt, (int)format);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_min_level);
}

/* Appends s as the inside of a JSON string: quotes, backslashes and all bytes < 0x20 or >= 0x7f
 * are escaped, so the output is plain ASCII whatever the input. */
static void append_json_escaped(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_append(b, p, 1);
    }
}

/* Text values: printable ASCII kept, anything else as \xNN, quoted when it contains a space. */
static void append_text_value(struct buf *b, const char *s)
{
    bool quote = s[0] == '\0';
    for (const char *p = s; *p && !quote; p++)
        quote = *p == ' ' || *p == '"';
    if (quote)
        buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            buf_printf(b, "\\x%02x", *p);
        else
            buf_append(b, p, 1);
    }
    if (quote)
        buf_puts(b, "\"");
}

static void append_field_json(struct buf *b, const struct log_field *f)
{
    buf_puts(b, ",\"");
    append_json_escaped(b, f->key);
    buf_puts(b, "\":");
    if (f->kind == LOG_FIELD_INT) {
        buf_printf(b, "%lld", (long long)f->i);
    } else if (f->kind == LOG_FIELD_DOUBLE) {
        buf_printf(b, "%.3f", f->d);
    } else {
        buf_puts(b, "\"");
        append_json_escaped(b, f->str ? f->str : "");
        buf_puts(b, "\"");
    }
}

static void append_field_text(struct buf *b, const struct log_field *f)
{
    buf_printf(b, " %s=", f->key);
    if (f->kind == LOG_FIELD_INT)
        buf_printf(b, "%lld", (long long)f->i);
    else if (f->kind == LOG_FIELD_DOUBLE)
        buf_printf(b, "%.3f", f->d);
    else
        append_text_value(b, f->str ? f->str : "");
}

/* Does fields name key already? */
static bool has_field(const struct log_field *fields, int nfields, const char *key)
{
    for (int i = 0; i < nfields; i++)
        if (strcmp(fields[i].key, key) == 0)
            return true;
    return false;
}

/* The fields of the event followed by the thread's trace (request_id, traceparent) when it has
 * one the event does not name itself; returns how many there are in out. */
static int with_trace(const struct log_field *fields, int nfields, struct log_field *out, int max)
{
    int n = 0;
    for (int i = 0; i < nfields && n < max; i++)
        out[n++] = fields[i];
    const struct trace *t = trace_current();
    if (t && t->request_id[0] && n < max && !has_field(fields, nfields, "request_id"))
        out[n++] = LOG_STR("request_id", t->request_id);
    if (t && t->traceparent[0] && n < max && !has_field(fields, nfields, "traceparent"))
        out[n++] = LOG_STR("traceparent", t->traceparent);
    return n;
}

void log_event(enum log_level level, const char *msg, const struct log_field *given, int ngiven)
{
    if (!log_enabled(level))
        return;
    struct log_field fields[LOG_MAX_FIELDS];
    int nfields = with_trace(given, ngiven, fields, LOG_MAX_FIELDS);
    char ts[CLOCK_RFC3339_LEN];
    clock_format_rfc3339(clock_wall_us(), ts);
    struct buf b;
    buf_init(&b);
    if (atomic_load(&log_fmt) == LOG_FORMAT_JSON) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[level]);
        append_json_escaped(&b, msg);
        buf_puts(&b, "\"");
        for (int i = 0; i < nfields; i++)
            append_field_json(&b, &fields[i]);
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "%s %-5s ", ts, level_names[level]);
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
            buf_printf(&b, (*p < 0x20 || *p == 0x7f) ? "\\x%02x" : "%c", *p);
        for (int i = 0; i < nfields; i++)
            append_field_text(&b, &fields[i]);
        buf_puts(&b, "\n");
    }
    ssize_t ignored = write(STDERR_FILENO, b.data, b.len);
    (void)ignored;
    buf_cleanup(&b);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    struct buf b;
    buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    log_event(level, buf_str(&b), NULL, 0);
    buf_cleanup(&b);
}
