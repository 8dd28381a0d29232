/* Request validation, pure C over jansson values: typed field readers that record every problem
 * in a caller-owned field_errors list instead of stopping at the first, so a 400 names every
 * bad field. Field names in errors are JSON-pointer-like paths ("entries[2].delay_seconds"). */
#ifndef RYDES_VALIDATE_H
#define RYDES_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VALIDATE_MAX_FIELD_ERRORS 20

struct field_errors {
    json_t *list; /* array of {"field","message"}; NULL until the first error */
    int count;
};

void field_errors_init(struct field_errors *fe);
void field_errors_cleanup(struct field_errors *fe);
/* Records that field is invalid. Past VALIDATE_MAX_FIELD_ERRORS further errors are dropped. */
void field_errors_add(struct field_errors *fe, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the name of field of the object at prefix into out (n bytes, cut to fit):
 * "entries[2]" + "body" is "entries[2].body"; an empty prefix names field alone. */
void validate_field_path(char *out, size_t n, const char *prefix, const char *field);
/* field_errors_add for field of the object at prefix (named as validate_field_path does); the
 * name is built only when there is an error to record. */
void field_errors_add_at(struct field_errors *fe, const char *prefix, const char *field,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records an error for every key of obj that is not in known (NULL-terminated). */
void validate_known_fields(json_t *obj, const char *const *known, struct field_errors *fe);
/* The same for an object at path prefix ("entries[2]"): errors name "prefix.key". */
void validate_known_fields_at(json_t *obj, const char *prefix, const char *const *known,
                              struct field_errors *fe);

/* Reads obj[field] as a string of min..max characters (UTF-8 code points). Returns NULL when
 * absent (an error if required) or invalid (always an error). The string belongs to obj. */
const char *validate_string(json_t *obj, const char *field, bool required, size_t min, size_t max,
                            struct field_errors *fe);
/* The same, with errors naming path instead of field. */
const char *validate_string_at(json_t *obj, const char *field, const char *path, bool required,
                               size_t min, size_t max, struct field_errors *fe);

/* Reads obj[field] as an integer in min..max into *out; absent leaves *out untouched (an error
 * if required). Returns true when a valid value was read. */
bool validate_int(json_t *obj, const char *field, bool required, int64_t min, int64_t max,
                  int64_t *out, struct field_errors *fe);

/* Reads obj[field] as a boolean; same contract as validate_int. */
bool validate_bool(json_t *obj, const char *field, bool required, bool *out,
                   struct field_errors *fe);

/* Parses a query-string integer (decimal, no sign unless min < 0) in min..max. */
bool validate_query_int(const char *text, int64_t min, int64_t max, int64_t *out);

/* A numeric string as money and measures are given ("12", "12.50", "-0"): an optional minus,
 * digits, optionally a dot and more digits; no plus, exponent or blanks, at most 40 characters.
 * Its value goes to *out and its decimals, up to the last fraction digit that is not 0 (so
 * "12.500" has 1, as the JSON number 12.500 does), to *decimals. False when s is not one. */
bool validate_decimal_text(const char *s, double *out, int *decimals);

/* Decimal places a double shows, 0..3, 3 meaning more: v has d decimals when rounding it to d
 * decimals gives back exactly the same double (61.55 has 2; 1e-10 and 500000.0004 have 3). */
int validate_decimals_of(double v);

/* A money amount: a JSON number or a numeric string (with dollar, "$20.00" too), from 0 to max,
 * exact cents (a JSON number must read back as a whole number of cents: 1e-9 and
 * 0.30000000000000004 are not); -0 reads 0. The value goes to *out; false when v is not one. */
bool validate_cents(json_t *v, double max, bool dollar, double *out);

/* The length (1..4) of the well-formed UTF-8 character text starts with, its code point in *cp
 * (NULL: not wanted); 0 when it is not one (a NUL, a stray or missing continuation byte, an
 * overlong form, a surrogate, past U+10FFFF). */
size_t validate_utf8_char(const char *text, uint32_t *cp);

/* The longest prefix of s, at most max_bytes long, that is well-formed UTF-8 (for "%.*s" of
 * text that must stay valid UTF-8). */
size_t validate_utf8_prefix(const char *s, size_t max_bytes);

/* Are the n bytes of s printable ASCII (space to '~')? */
bool validate_printable_ascii(const char *s, size_t n);

/* Is s one line of text: no control character (U+0000 to U+001F, U+007F to U+009F; line
 * breaks included) and no line or paragraph separator (U+2028, U+2029)? */
bool validate_one_line(const char *s);

/* Number of UTF-8 code points in s (s is valid UTF-8, as jansson guarantees). */
size_t validate_utf8_length(const char *s);

#endif
