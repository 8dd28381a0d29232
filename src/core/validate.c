/* Field validation helpers; see include/rydes/validate.h. */
#include "rydes/validate.h"

#include "rydes/buf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void field_errors_init(struct field_errors *fe)
{
    fe->list = NULL;
    fe->count = 0;
}

void field_errors_cleanup(struct field_errors *fe)
{
    json_decref(fe->list);
    field_errors_init(fe);
}

void field_errors_add(struct field_errors *fe, const char *field, const char *fmt, ...)
{
    fe->count++;
    if (fe->count > VALIDATE_MAX_FIELD_ERRORS)
        return;
    struct buf msg;
    buf_init(&msg);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    if (!fe->list)
        fe->list = json_array();
    /* json_string refuses invalid UTF-8; field names come from our code or from validated keys */
    json_t *item = json_object();
    json_object_set_new(item, "field", json_string(field));
    json_object_set_new(item, "message", json_string(buf_str(&msg)));
    json_array_append_new(fe->list, item);
    buf_cleanup(&msg);
}

static bool is_known(const char *key, const char *const *known)
{
    for (; *known; known++)
        if (strcmp(key, *known) == 0)
            return true;
    return false;
}

void validate_known_fields_at(json_t *obj, const char *prefix, const char *const *known,
                              struct field_errors *fe)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        (void)value;
        char f[160];
        snprintf(f, sizeof f, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (!is_known(key, known))
            field_errors_add(fe, f, "unknown field");
    }
}

void validate_known_fields(json_t *obj, const char *const *known, struct field_errors *fe)
{
    validate_known_fields_at(obj, "", known, fe);
}

size_t validate_utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

const char *validate_string_at(json_t *obj, const char *field, const char *path, bool required,
                               size_t min, size_t max, struct field_errors *fe)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required)
            field_errors_add(fe, path, "is required");
        return NULL;
    }
    if (!json_is_string(v)) {
        field_errors_add(fe, path, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        field_errors_add(fe, path, "must not contain NUL characters");
        return NULL;
    }
    size_t len = validate_utf8_length(s);
    if (len < min || len > max) {
        field_errors_add(fe, path, "must be %zu to %zu characters long", min, max);
        return NULL;
    }
    return s;
}

const char *validate_string(json_t *obj, const char *field, bool required, size_t min, size_t max,
                            struct field_errors *fe)
{
    return validate_string_at(obj, field, field, required, min, max, fe);
}

bool validate_int(json_t *obj, const char *field, bool required, int64_t min, int64_t max,
                  int64_t *out, struct field_errors *fe)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required)
            field_errors_add(fe, field, "is required");
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        field_errors_add(fe, field, "must be an integer from %lld to %lld", (long long)min,
                         (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

bool validate_bool(json_t *obj, const char *field, bool required, bool *out,
                   struct field_errors *fe)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required)
            field_errors_add(fe, field, "is required");
        return false;
    }
    if (!json_is_boolean(v)) {
        field_errors_add(fe, field, "must be true or false");
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool validate_query_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    /* strtoll alone would skip any leading whitespace and take a '+' */
    if (!text || !(isdigit((unsigned char)text[0]) || (text[0] == '-' && min < 0)))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}
