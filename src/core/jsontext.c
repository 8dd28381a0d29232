/* Shortest faithful JSON numbers; see include/rydes/jsontext.h. */
#include "rydes/jsontext.h"

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

bool jsontext_fifteen_digits(double v)
{
    char text[32];
    snprintf(text, sizeof text, "%.15g", v);
    return strtod(text, NULL) == v; /* jsontext_format_double decides the same way */
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

/* Does every real in v read back from 15 significant digits? */
static bool fifteen_digits_suffice(const json_t *v, int depth)
{
    if (json_is_real(v))
        return jsontext_fifteen_digits(json_real_value(v));
    /* a parsed value is at most jansson's parser depth (2048: bodies of that depth are
     * accepted), and jansson writes none deeper; a value built deeper does not reach here */
    if (depth > JSON_PARSER_MAX_DEPTH)
        return false;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!fifteen_digits_suffice(json_array_get(v, i), depth + 1))
                return false;
    } else if (json_is_object(v)) {
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)v, key, value)
        {
            (void)key;
            if (!fifteen_digits_suffice(value, depth + 1))
                return false;
        }
    }
    return true;
}

char *jsontext_dumps(const json_t *v, size_t flags)
{
    if (!v) /* a json_pack that failed (text that was not UTF-8): never a crash */
        return xstrdup("null");
    size_t precision = fifteen_digits_suffice(v, 0) ? 15 : 17;
    char *text = json_dumps(v, flags | JSON_REAL_PRECISION(precision));
    if (!text)
        rydes_oom();
    return text;
}
