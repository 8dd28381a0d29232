/* Field validation helpers; see include/rydes/validate.h. */
#include "rydes/validate.h"

#include "rydes/buf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
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

/* Is byte c within lo..hi? */
static bool in(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

size_t validate_utf8_char(const char *text, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)text;
    unsigned char c = s[0];
    /* the second byte's range, which rules out overlong forms, surrogates and > U+10FFFF */
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    size_t len = c < 0x80            ? 1
                 : in(c, 0xc2, 0xdf) ? 2
                 : in(c, 0xe0, 0xef) ? 3
                 : in(c, 0xf0, 0xf4) ? 4
                                     : 0;
    if (len == 0 || c == 0)
        return 0;
    uint32_t v = len == 1 ? c : c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if (!(i == 1 ? in(s[i], lo, hi) : in(s[i], 0x80, 0xbf)))
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (cp)
        *cp = v;
    return len;
}

size_t validate_utf8_prefix(const char *s, size_t max_bytes)
{
    size_t n = 0;
    while (s[n]) {
        size_t len = validate_utf8_char(s + n, NULL);
        if (len == 0 || n + len > max_bytes)
            break;
        n += len;
    }
    return n;
}

/* A JSON string of s, with every byte that is not part of valid UTF-8 replaced by '?'. */
static json_t *json_string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    struct buf b;
    buf_init(&b);
    for (size_t n = 0; s[n];) {
        size_t ok = validate_utf8_prefix(s + n, 4);
        if (ok) {
            buf_append(&b, s + n, ok);
            n += ok;
        } else {
            buf_puts(&b, "?");
            n++;
        }
    }
    j = json_string(buf_str(&b));
    buf_cleanup(&b);
    return j ? j : json_string("?");
}

static void field_errors_vadd(struct field_errors *fe, const char *field, const char *fmt,
                              va_list ap)
{
    fe->count++;
    if (fe->count > VALIDATE_MAX_FIELD_ERRORS)
        return;
    struct buf msg;
    buf_init(&msg);
    buf_vprintf(&msg, fmt, ap);
    if (!fe->list)
        fe->list = json_array();
    /* a field or message cut inside a character (by a precision or a fixed buffer) would be
     * invalid UTF-8, which json_string refuses: keep what is valid */
    json_t *item = json_object();
    json_object_set_new(item, "field", json_string_lossy(field));
    json_object_set_new(item, "message", json_string_lossy(buf_str(&msg)));
    json_array_append_new(fe->list, item);
    buf_cleanup(&msg);
}

void field_errors_add(struct field_errors *fe, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    field_errors_vadd(fe, field, fmt, ap);
    va_end(ap);
}

void validate_field_path(char *out, size_t n, const char *prefix, const char *field)
{
    snprintf(out, n, "%s%s%s", prefix, *prefix ? "." : "", field);
}

void field_errors_add_at(struct field_errors *fe, const char *prefix, const char *field,
                         const char *fmt, ...)
{
    char f[160];
    validate_field_path(f, sizeof f, prefix, field);
    va_list ap;
    va_start(ap, fmt);
    field_errors_vadd(fe, f, fmt, ap);
    va_end(ap);
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
        if (!is_known(key, known))
            field_errors_add_at(fe, prefix, key, "unknown field");
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

bool validate_decimal_text(const char *s, double *out, int *decimals)
{
    const char *p = s + (*s == '-');
    size_t whole = strspn(p, "0123456789");
    const char *dot = p + whole;
    size_t frac = *dot == '.' ? strspn(dot + 1, "0123456789") : 0;
    const char *end = *dot == '.' ? dot + 1 + frac : dot;
    if (whole == 0 || *end != '\0' || (*dot == '.' && frac == 0) || strlen(s) > 40)
        return false;
    errno = 0;
    *out = strtod(s, NULL);
    while (frac > 0 && dot[frac] == '0')
        frac--;
    *decimals = (int)frac;
    return errno == 0 && isfinite(*out);
}

int validate_decimals_of(double v)
{
    double scale = 1;
    for (int d = 0; d < 3; d++, scale *= 10)
        if (round(v * scale) / scale == v)
            return d;
    return 3;
}

bool validate_cents(json_t *v, double max, bool dollar, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
    } else {
        const char *s = json_string_value(v);
        if (s && dollar && *s == '$')
            s++;
        int decimals; /* "12", "12.5", "12.50", "12.500" */
        if (!s || *s == '-' || !validate_decimal_text(s, out, &decimals) || decimals > 2)
            return false;
    }
    if (*out == 0)
        *out = 0; /* -0 is 0: hashed and written alike */
    /* exactly a number of cents: 1e-9 and 12.0000000001 are not */
    return isfinite(*out) && *out >= 0 && *out <= max && validate_decimals_of(*out) <= 2;
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

bool validate_one_line(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            return false;
        if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) /* U+0080..U+009F, NEL among them */
            return false;
        if (c[0] == 0xe2 && c[1] == 0x80 && (c[2] == 0xa8 || c[2] == 0xa9)) /* U+2028, U+2029 */
            return false;
    }
    return true;
}

bool validate_printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < ' ' || s[i] > '~')
            return false;
    return true;
}
