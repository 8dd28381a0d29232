/* Request-body limits, media type and JSON parsing; see include/rydes/body.h. */
#include "rydes/body.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

void body_reader_init(struct body_reader *r, size_t max)
{
    buf_init(&r->buf);
    r->max = max;
    r->too_large = false;
    r->seen = 0;
}

void body_reader_cleanup(struct body_reader *r)
{
    buf_cleanup(&r->buf);
}

bool body_reader_feed(struct body_reader *r, const char *data, size_t n)
{
    r->seen = n > SIZE_MAX - r->seen ? SIZE_MAX : r->seen + n;
    if (r->too_large)
        return false;
    if (n > r->max - r->buf.len) {
        r->too_large = true;
        buf_cleanup(&r->buf);
        return false;
    }
    buf_append(&r->buf, data, n);
    return true;
}

bool body_reader_hopeless(const struct body_reader *r)
{
    size_t slack = r->max > SIZE_MAX / 4 ? SIZE_MAX / 4 : r->max * 3;
    if (slack < 1048576)
        slack = 1048576;
    return r->too_large && r->seen - r->max > slack;
}

bool body_declared_too_large(const char *content_length, size_t max)
{
    if (!content_length)
        return false;
    /* Only plain digits: strtoull alone would take signs and leading blanks. */
    if (!isdigit((unsigned char)content_length[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(content_length, &end, 10);
    if (*end)
        return false;
    return errno == ERANGE || v > max;
}

bool body_media_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    if (!ct || strncasecmp(ct, json, sizeof json - 1) != 0)
        return false;
    char next = ct[sizeof json - 1];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

json_t *body_parse_json(const char *data, size_t len, char *detail, size_t detail_len)
{
    json_error_t err;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!v)
        snprintf(detail, detail_len, "malformed JSON at line %d, column %d: %s", err.line,
                 err.column, err.text);
    return v;
}
