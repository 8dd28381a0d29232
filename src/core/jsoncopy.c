/* JSON text written straight into a buffer; see include/rydes/jsoncopy.h. */
#include "rydes/jsoncopy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsoncopy_string(struct buf *b, const char *s, size_t n)
{
    static const char *const shorts[0x20] = {
        ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    buf_append(b, "\"", 1);
    size_t run = 0; /* bytes before i that go out as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, 2);
        } else if (shorts[c]) {
            buf_puts(b, shorts[c]);
        } else {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04X", c);
            buf_puts(b, esc);
        }
    }
    buf_append(b, s + run, n - run);
    buf_append(b, "\"", 1);
}

/* The text being copied: t[i..n) is still to read. */
struct scan {
    const char *t;
    size_t n, i;
    struct buf *b;
};

static void skip_space(struct scan *s)
{
    while (s->i < s->n && strchr(" \t\n\r", s->t[s->i]) && s->t[s->i])
        s->i++;
}

static bool at(const struct scan *s, char c)
{
    return s->i < s->n && s->t[s->i] == c;
}

static bool digit_at(const struct scan *s)
{
    return s->i < s->n && s->t[s->i] >= '0' && s->t[s->i] <= '9';
}

static void skip_digits(struct scan *s)
{
    while (digit_at(s))
        s->i++;
}

static bool hex4_at(const struct scan *s, size_t from)
{
    if (from + 4 > s->n)
        return false;
    for (size_t k = from; k < from + 4; k++)
        if (!strchr("0123456789abcdefABCDEF", s->t[k]) || !s->t[k])
            return false;
    return true;
}

/* The four hex digits at t[from..from+4) (hex4_at checked them). */
static unsigned hex4(const struct scan *s, size_t from)
{
    char digits[5] = {0};
    memcpy(digits, s->t + from, 4);
    return (unsigned)strtoul(digits, NULL, 16);
}

/* Skips the \u escape (four hex digits) at s->i, its backslash, up to its last digit, and the low
 * half after a high surrogate; false for one jansson refuses (\u0000, a surrogate without its
 * pair). */
static bool skip_unicode_escape(struct scan *s)
{
    unsigned u = hex4(s, s->i + 2);
    if (u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
        return false;
    if (u >= 0xD800 && u <= 0xDBFF) {
        size_t j = s->i + 6;
        if (j + 1 >= s->n || s->t[j] != '\\' || s->t[j + 1] != 'u' || !hex4_at(s, j + 2))
            return false;
        unsigned low = hex4(s, j + 2);
        if (low < 0xDC00 || low > 0xDFFF)
            return false;
        s->i += 6;
    }
    s->i += 5;
    return true;
}

/* Skips the string token at s->i (its opening quote); false if it is not one. */
static bool skip_string(struct scan *s)
{
    for (s->i++; s->i < s->n; s->i++) {
        unsigned char c = (unsigned char)s->t[s->i];
        if (c == '"') {
            s->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        char e = s->i + 1 < s->n ? s->t[s->i + 1] : '\0';
        if (e == 'u' && hex4_at(s, s->i + 2)) {
            if (!skip_unicode_escape(s))
                return false;
        } else if (e && strchr("\"\\/bfnrt", e)) {
            s->i++;
        } else {
            return false;
        }
    }
    return false;
}

/* Skips the number token at s->i; false if it is not one, or is one jansson refuses or may
 * (an integer beyond 64 bits, a real beyond a double): more than 18 digits of integer, more
 * than 2 of exponent. */
static bool skip_number(struct scan *s)
{
    if (at(s, '-'))
        s->i++;
    size_t start = s->i;
    if (at(s, '0'))
        s->i++;
    else if (digit_at(s))
        skip_digits(s);
    else
        return false;
    bool integer = !at(s, '.') && !at(s, 'e') && !at(s, 'E');
    if ((integer && s->i - start > 18) || s->i - start > 300)
        return false;
    if (at(s, '.')) {
        s->i++;
        if (!digit_at(s))
            return false;
        skip_digits(s);
    }
    if (at(s, 'e') || at(s, 'E')) {
        s->i++;
        if (at(s, '+') || at(s, '-'))
            s->i++;
        size_t exp = s->i;
        skip_digits(s);
        if (s->i == exp || s->i - exp > 2)
            return false;
    }
    return true;
}

static bool skip_word(struct scan *s, const char *w)
{
    size_t len = strlen(w);
    if (s->n - s->i < len || memcmp(s->t + s->i, w, len) != 0)
        return false;
    s->i += len;
    return true;
}

/* Copies the scalar (string, number, true, false, null) at s->i. */
static bool copy_scalar(struct scan *s)
{
    size_t start = s->i;
    char c = s->t[s->i];
    bool ok = c == '"'   ? skip_string(s)
              : c == 't' ? skip_word(s, "true")
              : c == 'f' ? skip_word(s, "false")
              : c == 'n' ? skip_word(s, "null")
                         : skip_number(s);
    if (ok)
        buf_append(s->b, s->t + start, s->i - start);
    return ok;
}

static void copy_char(struct scan *s)
{
    buf_append(s->b, s->t + s->i, 1);
    s->i++;
}

/* What the copy expects next: a value, an object's key, or what follows a value. */
enum expect { EXPECT_VALUE, EXPECT_KEY, EXPECT_NEXT };

/* One step of the copy: the token after the whitespace at s->i. */
static bool copy_step(struct scan *s, char *stack, int *depth, enum expect *e)
{
    skip_space(s);
    if (*e == EXPECT_NEXT) {
        char open = stack[*depth - 1], close = open == '{' ? '}' : ']';
        if (at(s, ',')) {
            copy_char(s);
            *e = open == '{' ? EXPECT_KEY : EXPECT_VALUE;
            return true;
        }
        if (!at(s, close))
            return false;
        copy_char(s);
        --*depth;
        return true;
    }
    if (s->i >= s->n)
        return false;
    char c = s->t[s->i];
    if (*e == EXPECT_KEY) {
        if (c != '"' || !copy_scalar(s))
            return false;
        skip_space(s);
        if (!at(s, ':'))
            return false;
        copy_char(s);
        *e = EXPECT_VALUE;
        return true;
    }
    *e = EXPECT_NEXT;
    if (c != '{' && c != '[')
        return copy_scalar(s);
    if (*depth == JSONCOPY_MAX_DEPTH)
        return false;
    stack[(*depth)++] = c;
    copy_char(s);
    skip_space(s);
    if (at(s, c == '{' ? '}' : ']')) { /* empty */
        copy_char(s);
        --*depth;
    } else {
        *e = c == '{' ? EXPECT_KEY : EXPECT_VALUE;
    }
    return true;
}

bool jsoncopy_compact(struct buf *b, const char *t, size_t n)
{
    size_t mark = b->len;
    char stack[JSONCOPY_MAX_DEPTH];
    int depth = 0;
    enum expect e = EXPECT_VALUE;
    struct scan s = {.t = t, .n = n, .i = 0, .b = b};
    bool ok = copy_step(&s, stack, &depth, &e);
    while (ok && depth > 0)
        ok = copy_step(&s, stack, &depth, &e);
    skip_space(&s);
    if (ok && s.i == n)
        return true;
    buf_truncate(b, mark);
    return false;
}
