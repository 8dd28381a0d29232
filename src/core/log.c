/* Line-oriented logging; see include/rydes/log.h. Each line is built in a buffer and written
 * with one write(2), continued if it comes back short. Lines from different threads do not mix
 * because each message and string value is cut once it takes LOG_VALUE_MAX bytes escaped
 * (marked, without spaces): a line of a few fields stays within PIPE_BUF, the most a pipe
 * writes whole (an event with several long fields can exceed it). Every string is escaped by
 * hand (control characters and non-ASCII bytes included), so a hostile path or header can never
 * break the line format or inject a fake log line. */
#include "rydes/log.h"

#include "rydes/buf.h"
#include "rydes/clock.h"
#include "rydes/trace.h"
#include "rydes/validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_VALUE_MAX 1024 /* bytes a message or a string value takes escaped; the rest is cut */

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

/* Says how much of a value was cut (p: where the cut began). */
static void append_cut(struct buf *b, const char *p)
{
    if (*p) /* no space: an unquoted text value stays one key=value */
        buf_printf(b, "...(+%zuB)", strlen(p));
}

/* Appends s as the inside of a JSON string, in plain ASCII whatever the input: quotes and
 * control characters escaped, a backslash doubled (as text logs do), well-formed UTF-8 as
 * \uXXXX (a surrogate pair past U+FFFF), and each byte of anything else as the text \xNN. */
static void append_json_escaped(struct buf *b, const char *s)
{
    const char *p = s;
    size_t start = b->len;
    while (*p && b->len - start < LOG_VALUE_MAX) {
        unsigned char c = (unsigned char)*p;
        uint32_t cp = c;
        size_t len = c < 0x80 ? 1 : validate_utf8_char(p, &cp);
        if (c == '"')
            buf_puts(b, "\\\"");
        else if (c == '\\') /* doubled, as in text logs: \\xNN below stays unambiguous */
            buf_puts(b, "\\\\\\\\");
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\u%04x", c);
        else if (c < 0x80)
            buf_append(b, p, 1);
        else if (len == 0)
            buf_printf(b, "\\\\x%02x", c);
        else if (cp < 0x10000)
            buf_printf(b, "\\u%04x", (unsigned)cp);
        else
            buf_printf(b, "\\u%04x\\u%04x", (unsigned)(0xd800 + ((cp - 0x10000) >> 10)),
                       (unsigned)(0xdc00 + ((cp - 0x10000) & 0x3ff)));
        p += len ? len : 1;
    }
    append_cut(b, p);
}

/* Appends s for text logs: printable ASCII kept, backslashes (and quotes, in a value) escaped,
 * any other byte as \xNN. */
static void append_text_escaped(struct buf *b, const char *s, bool value)
{
    const char *p = s;
    size_t start = b->len;
    for (; *p && b->len - start < LOG_VALUE_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c == '"' && value) || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            buf_printf(b, "\\x%02x", c);
        else
            buf_append(b, p, 1);
    }
    append_cut(b, p);
}

/* Text values: escaped, quoted when empty or holding a space or a quote. */
static void append_text_value(struct buf *b, const char *s)
{
    bool quote = s[0] == '\0' || strpbrk(s, " \"") != NULL;
    if (quote)
        buf_puts(b, "\"");
    append_text_escaped(b, s, true);
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

/* Writes the line, continuing a short write (a signal, a full pipe); a failure drops the rest. */
static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
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
        append_text_escaped(&b, msg, false);
        for (int i = 0; i < nfields; i++)
            append_field_text(&b, &fields[i]);
        buf_puts(&b, "\n");
    }
    write_all(b.data, b.len);
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
