/* Shortest faithful JSON numbers; see include/rydes/jsontext.h. */
#include "rydes/jsontext.h"

#include "rydes/jsoncopy.h"
#include "rydes/mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsontext_format_double(double v, char *out, size_t n)
{
    snprintf(out, n, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, n, "%.17g", v);
}

void jsontext_real(double v, int precision, char *out, size_t n)
{
    int len = snprintf(out, n, "%.*g", precision, v);
    if (len < 0 || (size_t)len + 3 > n)
        return; /* (32 bytes always suffice for 17 digits) */
    if (!strchr(out, '.') && !strchr(out, 'e') && !strchr(out, 'n') && !strchr(out, 'i')) {
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    char *e = strchr(out, 'e');
    if (!e)
        return;
    char *from = e + 1, *to = e + 1; /* drop a "+" and the exponent's leading zeros */
    if (*from == '-')
        from = ++to;
    else if (*from == '+')
        from++;
    while (*from == '0' && from[1])
        from++;
    memmove(to, from, strlen(from) + 1);
}

void jsontext_shortest_real(double v, char *out, size_t n)
{
    jsontext_real(v, 15, out, n);
    if (strtod(out, NULL) != v)
        jsontext_real(v, 17, out, n);
}

/* One member of an object being written with sorted keys. */
struct member {
    const char *key;
    size_t len;
    json_t *value;
};

/* jansson's JSON_SORT_KEYS order: bytes, then length. */
static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void write_value(struct buf *b, const json_t *v, bool sorted, int depth);

static void write_member(struct buf *b, bool first, const char *key, size_t len, const json_t *v,
                         bool sorted, int depth)
{
    buf_puts(b, first ? "" : ",");
    jsoncopy_string(b, key, len);
    buf_puts(b, ":");
    write_value(b, v, sorted, depth + 1);
}

static void write_object(struct buf *b, const json_t *v, bool sorted, int depth)
{
    const char *key;
    size_t len, i = 0;
    json_t *value;
    buf_puts(b, "{");
    if (!sorted) {
        json_object_keylen_foreach((json_t *)v, key, len, value)
        {
            write_member(b, i++ == 0, key, len, value, sorted, depth);
        }
    } else if (json_object_size(v) > 0) {
        struct member *m = xcalloc(json_object_size(v), sizeof *m); /* freed below */
        json_object_keylen_foreach((json_t *)v, key, len, value)
        {
            m[i++] = (struct member){key, len, value};
        }
        qsort(m, i, sizeof *m, member_cmp);
        for (size_t k = 0; k < i; k++)
            write_member(b, k == 0, m[k].key, m[k].len, m[k].value, sorted, depth);
        free(m);
    }
    buf_puts(b, "}");
}

static void write_value(struct buf *b, const json_t *v, bool sorted, int depth)
{
    char text[32];
    if (json_is_string(v)) {
        jsoncopy_string(b, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_puts(b, text);
    } else if (json_is_real(v)) {
        jsontext_shortest_real(json_real_value(v), text, sizeof text);
        buf_puts(b, text);
    } else if (json_is_object(v) && depth < JSON_PARSER_MAX_DEPTH) {
        write_object(b, v, sorted, depth);
    } else if (json_is_array(v) && depth < JSON_PARSER_MAX_DEPTH) {
        buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            buf_puts(b, i ? "," : "");
            write_value(b, json_array_get(v, i), sorted, depth + 1);
        }
        buf_puts(b, "]");
    } else {
        buf_puts(b, json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
    }
}

void jsontext_write(struct buf *b, const json_t *v, size_t flags)
{
    write_value(b, v, (flags & JSON_SORT_KEYS) != 0, 0);
}

char *jsontext_dumps(const json_t *v, size_t flags)
{
    struct buf b;
    buf_init(&b);
    jsontext_write(&b, v, flags);
    return buf_steal(&b);
}
