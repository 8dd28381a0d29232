/* Unit tests for request validation (src/core/validate.c): field_errors collecting every error
 * as {"field","message"} entries (the list is capped at VALIDATE_MAX_FIELD_ERRORS while count
 * keeps counting), validate_known_fields, validate_string (required or optional absence, wrong
 * type, length bounds in UTF-8 code points, embedded NUL refused), validate_int (non-integers,
 * reals, bounds, absence leaving the output untouched), validate_bool, validate_query_int on a
 * table of query-string texts (signs, blanks, empty, overflow, range) and validate_utf8_length. */
#include "rydes/validate.h"

#include "unit.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry at index i of fe's list; asserts it has the given field and a non-empty message. */
static const char *entry_message(const struct field_errors *fe, size_t i, const char *field)
{
    ck_assert_ptr_nonnull(fe->list);
    ck_assert(json_is_array(fe->list));
    json_t *item = json_array_get(fe->list, i);
    ck_assert_ptr_nonnull(item);
    const char *f = json_string_value(json_object_get(item, "field"));
    const char *msg = json_string_value(json_object_get(item, "message"));
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(f, field);
    ck_assert_ptr_nonnull(msg);
    ck_assert(msg[0] != '\0');
    return msg;
}

/* Builds an object from JSON text (test helper). */
static json_t *obj(const char *text)
{
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    ck_assert_msg(o != NULL, "bad test JSON %s: %s", text, err.text);
    return o;
}

START_TEST(test_errors_init_empty)
{
    struct field_errors fe;
    fe.list = (json_t *)1;
    fe.count = 7;
    field_errors_init(&fe);
    ck_assert_ptr_null(fe.list);
    ck_assert_int_eq(fe.count, 0);
    field_errors_cleanup(&fe);
    ck_assert_ptr_null(fe.list);
}
END_TEST

START_TEST(test_errors_accumulate)
{
    struct field_errors fe;
    field_errors_init(&fe);
    field_errors_add(&fe, "name", "is required");
    field_errors_add(&fe, "entries[2].delay_seconds", "must be %d to %d", 0, 900);
    ck_assert_int_eq(fe.count, 2);
    ck_assert_uint_eq(json_array_size(fe.list), 2);
    ck_assert_str_eq(entry_message(&fe, 0, "name"), "is required");
    ck_assert_str_eq(entry_message(&fe, 1, "entries[2].delay_seconds"), "must be 0 to 900");
    json_t *item = json_array_get(fe.list, 0);
    ck_assert_uint_eq(json_object_size(item), 2);
    field_errors_cleanup(&fe);
    ck_assert_ptr_null(fe.list);
    ck_assert_int_eq(fe.count, 0);
}
END_TEST

START_TEST(test_errors_cap)
{
    struct field_errors fe;
    field_errors_init(&fe);
    for (int i = 0; i < VALIDATE_MAX_FIELD_ERRORS + 5; i++) {
        char field[32];
        snprintf(field, sizeof field, "f%d", i);
        field_errors_add(&fe, field, "bad %d", i);
    }
    ck_assert_int_eq(fe.count, VALIDATE_MAX_FIELD_ERRORS + 5);
    ck_assert_uint_eq(json_array_size(fe.list), VALIDATE_MAX_FIELD_ERRORS);
    /* the first errors are the ones kept */
    ck_assert_str_eq(entry_message(&fe, 0, "f0"), "bad 0");
    char last[32];
    snprintf(last, sizeof last, "f%d", VALIDATE_MAX_FIELD_ERRORS - 1);
    entry_message(&fe, VALIDATE_MAX_FIELD_ERRORS - 1, last);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_known_fields)
{
    static const char *const known[] = {"name", "role", NULL};
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{\"name\": \"x\", \"role\": \"app\"}");
    validate_known_fields(o, known, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_ptr_null(fe.list);
    json_decref(o);

    o = obj("{\"name\": \"x\", \"colour\": 1, \"Role\": 2}");
    validate_known_fields(o, known, &fe);
    ck_assert_int_eq(fe.count, 2);
    ck_assert_uint_eq(json_array_size(fe.list), 2);
    /* both unknown keys are named, in either order */
    const char *f0 = json_string_value(json_object_get(json_array_get(fe.list, 0), "field"));
    const char *f1 = json_string_value(json_object_get(json_array_get(fe.list, 1), "field"));
    ck_assert_ptr_nonnull(f0);
    ck_assert_ptr_nonnull(f1);
    ck_assert((strcmp(f0, "colour") == 0 && strcmp(f1, "Role") == 0) ||
              (strcmp(f0, "Role") == 0 && strcmp(f1, "colour") == 0));
    json_decref(o);
    field_errors_cleanup(&fe);

    /* an empty object has no unknown fields; no known list entries means all are unknown */
    static const char *const none[] = {NULL};
    o = obj("{}");
    validate_known_fields(o, none, &fe);
    ck_assert_int_eq(fe.count, 0);
    json_decref(o);
    o = obj("{\"a\": 1}");
    validate_known_fields(o, none, &fe);
    ck_assert_int_eq(fe.count, 1);
    entry_message(&fe, 0, "a");
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_string_absent)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{\"other\": \"x\"}");
    ck_assert_ptr_null(validate_string(o, "name", false, 1, 10, &fe));
    ck_assert_int_eq(fe.count, 0);
    ck_assert_ptr_null(validate_string(o, "name", true, 1, 10, &fe));
    ck_assert_int_eq(fe.count, 1);
    entry_message(&fe, 0, "name");
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_string_wrong_type)
{
    static const char *const texts[] = {"{\"s\": 1}",       "{\"s\": null}", "{\"s\": true}",
                                        "{\"s\": [\"a\"]}", "{\"s\": {}}",   "{\"s\": 1.5}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct field_errors fe;
        field_errors_init(&fe);
        json_t *o = obj(texts[i]);
        /* even when optional, a present value of the wrong type is an error */
        ck_assert_ptr_null(validate_string(o, "s", false, 0, 100, &fe));
        ck_assert_msg(fe.count == 1, "%s", texts[i]);
        entry_message(&fe, 0, "s");
        json_decref(o);
        field_errors_cleanup(&fe);
    }
}
END_TEST

struct length_case {
    const char *value; /* UTF-8 */
    size_t min, max;
    bool ok;
};

static const struct length_case length_cases[] = {
    {"abc", 3, 3, true},
    {"abc", 1, 2, false},
    {"abc", 4, 10, false},
    {"", 0, 5, true},
    {"", 1, 5, false},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 3, 3, true}, /* "ééé": 6 bytes, 3 characters */
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 1, 4, true},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 4, 6, false},
    {"\xe2\x82\xac\xf0\x9f\x98\x80", 2, 2, true}, /* euro sign and an emoji */
    {"\xe2\x82\xac\xf0\x9f\x98\x80", 0, 1, false},
    {"a\xf0\x9f\x98\x80z", 3, 3, true},
};

START_TEST(test_string_length_table)
{
    for (size_t i = 0; i < sizeof length_cases / sizeof length_cases[0]; i++) {
        const struct length_case *c = &length_cases[i];
        struct field_errors fe;
        field_errors_init(&fe);
        json_t *o = json_object();
        json_object_set_new(o, "s", json_string(c->value));
        const char *got = validate_string(o, "s", true, c->min, c->max, &fe);
        if (c->ok) {
            ck_assert_msg(got != NULL, "case %zu refused", i);
            ck_assert_str_eq(got, c->value);
            ck_assert_int_eq(fe.count, 0);
        } else {
            ck_assert_msg(got == NULL, "case %zu accepted", i);
            ck_assert_int_eq(fe.count, 1);
            entry_message(&fe, 0, "s");
        }
        json_decref(o);
        field_errors_cleanup(&fe);
    }
}
END_TEST

START_TEST(test_string_embedded_nul)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = json_object();
    json_object_set_new(o, "s", json_stringn("ab\0cd", 5));
    ck_assert_ptr_nonnull(json_object_get(o, "s"));
    ck_assert_ptr_null(validate_string(o, "s", true, 0, 100, &fe));
    ck_assert_int_eq(fe.count, 1);
    entry_message(&fe, 0, "s");
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_string_returns_owned_by_obj)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{\"s\": \"hello\"}");
    const char *s = validate_string(o, "s", true, 1, 5, &fe);
    ck_assert_ptr_eq(s, json_string_value(json_object_get(o, "s")));
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

struct int_case {
    const char *json; /* the object */
    int64_t min, max;
    bool ok;
    int64_t value;
};

static const struct int_case int_cases[] = {
    {"{\"n\": 5}", 0, 10, true, 5},
    {"{\"n\": 0}", 0, 10, true, 0},
    {"{\"n\": 10}", 0, 10, true, 10},
    {"{\"n\": -1}", 0, 10, false, 0},
    {"{\"n\": 11}", 0, 10, false, 0},
    {"{\"n\": -5}", -10, 10, true, -5},
    {"{\"n\": 1.5}", 0, 10, false, 0},
    {"{\"n\": 2.0}", 0, 10, false, 0},
    {"{\"n\": \"5\"}", 0, 10, false, 0},
    {"{\"n\": true}", 0, 10, false, 0},
    {"{\"n\": null}", 0, 10, false, 0},
    {"{\"n\": [5]}", 0, 10, false, 0},
    {"{\"n\": 9223372036854775807}", 0, INT64_MAX, true, INT64_MAX},
    {"{\"n\": -9223372036854775808}", INT64_MIN, 0, true, INT64_MIN},
};

START_TEST(test_int_table)
{
    for (size_t i = 0; i < sizeof int_cases / sizeof int_cases[0]; i++) {
        const struct int_case *c = &int_cases[i];
        struct field_errors fe;
        field_errors_init(&fe);
        json_t *o = obj(c->json);
        int64_t out = 12345;
        bool ok = validate_int(o, "n", true, c->min, c->max, &out, &fe);
        ck_assert_msg(ok == c->ok, "%s in %lld..%lld", c->json, (long long)c->min,
                      (long long)c->max);
        if (ok) {
            ck_assert_int_eq(out, c->value);
            ck_assert_int_eq(fe.count, 0);
        } else {
            ck_assert_int_eq(out, 12345); /* untouched */
            ck_assert_int_eq(fe.count, 1);
            entry_message(&fe, 0, "n");
        }
        json_decref(o);
        field_errors_cleanup(&fe);
    }
}
END_TEST

START_TEST(test_int_absent)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{}");
    int64_t out = 77;
    ck_assert(!validate_int(o, "n", false, 0, 10, &out, &fe));
    ck_assert_int_eq(out, 77);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(!validate_int(o, "n", true, 0, 10, &out, &fe));
    ck_assert_int_eq(out, 77);
    ck_assert_int_eq(fe.count, 1);
    entry_message(&fe, 0, "n");
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_bool)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{\"t\": true, \"f\": false, \"n\": 1, \"s\": \"true\", \"z\": null}");
    bool out = false;
    ck_assert(validate_bool(o, "t", true, &out, &fe));
    ck_assert(out);
    ck_assert(validate_bool(o, "f", true, &out, &fe));
    ck_assert(!out);
    ck_assert_int_eq(fe.count, 0);

    out = true;
    ck_assert(!validate_bool(o, "n", false, &out, &fe));
    ck_assert(!validate_bool(o, "s", false, &out, &fe));
    ck_assert(!validate_bool(o, "z", false, &out, &fe));
    ck_assert(out); /* untouched */
    ck_assert_int_eq(fe.count, 3);
    entry_message(&fe, 0, "n");
    entry_message(&fe, 1, "s");
    entry_message(&fe, 2, "z");

    ck_assert(!validate_bool(o, "absent", false, &out, &fe));
    ck_assert_int_eq(fe.count, 3);
    ck_assert(!validate_bool(o, "absent", true, &out, &fe));
    ck_assert_int_eq(fe.count, 4);
    entry_message(&fe, 3, "absent");
    ck_assert(out);
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(test_errors_across_validators)
{
    /* one pass over a bad body names every bad field */
    static const char *const known[] = {"name", "n", "flag", NULL};
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *o = obj("{\"name\": \"\", \"n\": 99, \"flag\": \"yes\", \"extra\": 0}");
    int64_t n = 0;
    bool flag = false;
    validate_known_fields(o, known, &fe);
    validate_string(o, "name", true, 1, 80, &fe);
    validate_int(o, "n", true, 0, 10, &n, &fe);
    validate_bool(o, "flag", true, &flag, &fe);
    ck_assert_int_eq(fe.count, 4);
    entry_message(&fe, 0, "extra");
    entry_message(&fe, 1, "name");
    entry_message(&fe, 2, "n");
    entry_message(&fe, 3, "flag");
    json_decref(o);
    field_errors_cleanup(&fe);
}
END_TEST

struct query_case {
    const char *text;
    int64_t min, max;
    bool ok;
    int64_t value;
};

static const struct query_case query_cases[] = {
    {"5", 0, 10, true, 5},
    {"0", 0, 10, true, 0},
    {"10", 0, 10, true, 10},
    {"11", 0, 10, false, 0},
    {"007", 0, 10, true, 7},
    {"-1", 0, 10, false, 0},
    {"-0", 0, 10, false, 0},
    {"-1", -5, 10, true, -1},
    {"-6", -5, 10, false, 0},
    {"+5", 0, 10, false, 0},
    {"+5", -10, 10, false, 0},
    {" 5", 0, 10, false, 0},
    {"5 ", 0, 10, false, 0},
    {"5x", 0, 10, false, 0},
    {"x5", 0, 10, false, 0},
    {"0x5", 0, 10, false, 0},
    {"5.0", 0, 10, false, 0},
    {"", 0, 10, false, 0},
    {NULL, 0, 10, false, 0},
    {"-", -5, 10, false, 0},
    {"9223372036854775807", 0, INT64_MAX, true, INT64_MAX},
    {"9223372036854775808", 0, INT64_MAX, false, 0},
    {"99999999999999999999", 0, INT64_MAX, false, 0},
    {"-99999999999999999999", INT64_MIN, 0, false, 0},
    {"-9223372036854775808", INT64_MIN, 0, true, INT64_MIN},
};

START_TEST(test_query_int_table)
{
    for (size_t i = 0; i < sizeof query_cases / sizeof query_cases[0]; i++) {
        const struct query_case *c = &query_cases[i];
        int64_t out = 4242;
        bool ok = validate_query_int(c->text, c->min, c->max, &out);
        ck_assert_msg(ok == c->ok, "validate_query_int(\"%s\", %lld, %lld) should be %s",
                      c->text ? c->text : "(null)", (long long)c->min, (long long)c->max,
                      c->ok ? "true" : "false");
        if (ok)
            ck_assert_int_eq(out, c->value);
        else
            ck_assert_int_eq(out, 4242);
    }
}
END_TEST

/* Blank characters other than ' ' before the number: not decimal digits, so refused. */
static const char *const query_blank_cases[] = {"\t5", "\n5", "\v5", "\f5", "\r5", " -1"};

START_TEST(test_query_int_leading_whitespace)
{
    for (size_t i = 0; i < sizeof query_blank_cases / sizeof query_blank_cases[0]; i++) {
        int64_t out = 4242;
        ck_assert_msg(!validate_query_int(query_blank_cases[i], -10, 10, &out),
                      "validate_query_int accepted \"%s\" with leading byte 0x%02x",
                      query_blank_cases[i] + 1, (unsigned char)query_blank_cases[i][0]);
        ck_assert_int_eq(out, 4242);
    }
}
END_TEST

struct utf8_case {
    const char *s;
    size_t len;
};

static const struct utf8_case utf8_cases[] = {
    {"", 0},
    {"a", 1},
    {"hello", 5},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 3},
    {"\xe2\x82\xac", 1},
    {"\xf0\x9f\x98\x80", 1},
    {"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 4},
    {"\x7f", 1},
};

START_TEST(test_utf8_length_table)
{
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++)
        ck_assert_msg(validate_utf8_length(utf8_cases[i].s) == utf8_cases[i].len,
                      "case %zu: %zu code points, expected %zu", i,
                      validate_utf8_length(utf8_cases[i].s), utf8_cases[i].len);
}
END_TEST

/* Numeric strings: digits with an optional minus and fraction; the decimals counted up to the
 * last fraction digit that is not 0. */
/* Well-formed UTF-8 only: overlong forms, surrogates, code points past U+10FFFF, stray and
 * missing continuation bytes are not characters (the prefix stops before them). */
static const struct {
    const char *s;
    size_t len;  /* validate_utf8_char */
    uint32_t cp; /* when len > 0 */
} utf8_chars[] = {
    {"a", 1, 'a'},
    {"\xc3\xa9", 2, 0xe9},
    {"\xe2\x82\xac", 3, 0x20ac},
    {"\xed\x9f\xbf", 3, 0xd7ff},
    {"\xef\xbf\xbf", 3, 0xffff},
    {"\xf0\x9f\x98\x80", 4, 0x1f600},
    {"\xf4\x8f\xbf\xbf", 4, 0x10ffff},
    {"", 0, 0},
    {"\xc0\x80", 0, 0},         /* overlong NUL */
    {"\xc1\xbf", 0, 0},         /* overlong */
    {"\xe0\x9f\xbf", 0, 0},     /* overlong */
    {"\xf0\x8f\xbf\xbf", 0, 0}, /* overlong */
    {"\xed\xa0\x80", 0, 0},     /* a surrogate */
    {"\xf4\x90\x80\x80", 0, 0}, /* past U+10FFFF */
    {"\xf5\x80\x80\x80", 0, 0},
    {"\x80", 0, 0},
    {"\xc3", 0, 0},
    {"\xe2\x82", 0, 0},
    {"\xc3"
     "a",
     0, 0},
};

START_TEST(test_utf8_chars)
{
    for (size_t i = 0; i < sizeof utf8_chars / sizeof *utf8_chars; i++) {
        uint32_t cp = 0;
        size_t len = validate_utf8_char(utf8_chars[i].s, &cp);
        ck_assert_msg(len == utf8_chars[i].len, "case %zu: %zu bytes, not %zu", i, len,
                      utf8_chars[i].len);
        if (len)
            ck_assert_msg(cp == utf8_chars[i].cp, "case %zu: U+%x", i, (unsigned)cp);
        ck_assert_uint_eq(validate_utf8_prefix(utf8_chars[i].s, 8), len);
    }
    ck_assert_uint_eq(validate_utf8_prefix("ab\xc3\xa9\xc0\x80"
                                           "cd",
                                           100),
                      4);
    ck_assert_uint_eq(validate_utf8_prefix("ab\xc3\xa9", 3), 2);
}
END_TEST

START_TEST(test_decimal_texts)
{
    const struct {
        const char *s;
        double v;
        int decimals;
    } good[] = {{"12", 12, 0},        {"12.5", 12.5, 1},        {"12.50", 12.5, 1},
                {"12.500", 12.5, 1},  {"0.01", 0.01, 2},        {"-0", 0, 0},
                {"61.550", 61.55, 2}, {"1.000001", 1.000001, 6}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = -1;
        int d = -1;
        ck_assert_msg(validate_decimal_text(good[i].s, &v, &d), "%s", good[i].s);
        ck_assert_double_eq(v, good[i].v);
        ck_assert_int_eq(d, good[i].decimals);
    }
    const char *bad[] = {"",     "-",  ".5",  "5.",  "+5",
                         "1e2",  " 5", "5 ",  "1,5", "9.9.9",
                         "0x10", "$5", "NaN", "inf", "1234567890123456789012345678901234567890.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v;
        int d;
        ck_assert_msg(!validate_decimal_text(bad[i], &v, &d), "%s", bad[i]);
    }
}
END_TEST

/* One line of text: anything but the C0 controls and DEL (UTF-8 beyond ASCII included). */
START_TEST(test_one_line)
{
    const char *ok[] = {"", "ride 42 done", "caf\xc3\xa9 ~ \xc2\xa0", "x\x7e", "\xe2\x80\xa7"};
    const char *bad[] = {"a\nb",           "a\rb",          "\t",          "x\x01",
                         "x\x1f",          "del\x7f",       "nel\xc2\x85", "c1\xc2\x9f",
                         "ls\xe2\x80\xa8", "ps\xe2\x80\xa9"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ck_assert_msg(validate_one_line(ok[i]), "%zu refused", i);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!validate_one_line(bad[i]), "%zu taken", i);
}
END_TEST

static Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");

    TCase *errors = tcase_create("field_errors");
    tcase_add_test(errors, test_errors_init_empty);
    tcase_add_test(errors, test_errors_accumulate);
    tcase_add_test(errors, test_errors_cap);
    tcase_add_test(errors, test_known_fields);
    tcase_add_test(errors, test_errors_across_validators);
    suite_add_tcase(s, errors);

    TCase *fields = tcase_create("fields");
    tcase_add_test(fields, test_string_absent);
    tcase_add_test(fields, test_string_wrong_type);
    tcase_add_test(fields, test_string_length_table);
    tcase_add_test(fields, test_string_embedded_nul);
    tcase_add_test(fields, test_string_returns_owned_by_obj);
    tcase_add_test(fields, test_int_table);
    tcase_add_test(fields, test_int_absent);
    tcase_add_test(fields, test_bool);
    suite_add_tcase(s, fields);

    TCase *text = tcase_create("text");
    tcase_add_test(text, test_query_int_table);
    tcase_add_test(text, test_query_int_leading_whitespace);
    tcase_add_test(text, test_utf8_length_table);
    tcase_add_test(text, test_utf8_chars);
    tcase_add_test(text, test_decimal_texts);
    tcase_add_test(text, test_one_line);
    suite_add_tcase(s, text);

    return s;
}

int main(void)
{
    return unit_run(validate_suite());
}
