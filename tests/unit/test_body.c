/* Unit tests for request-body handling (src/http/body.c): the body_reader size cap (exactly max
 * bytes accepted, max+1 refused whether in one feed or over several, data dropped and the reader
 * staying too_large), body_reader_hopeless (only once far past the cap: more than 4x the cap and
 * at least 1 MiB over it), body_declared_too_large on Content-Length values (including overflow
 * and malformed values, which are not "too large"), the application/json media-type check, and
 * body_parse_json (the memory cap, duplicate keys, line/column in the error, trailing data, invalid
 * UTF-8, NUL bytes raw and escaped, very deep nesting, scalars accepted). */
#include "rydes/body.h"

#include "unit.h"

#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1048576)

static char zeros[65536];

/* Offers n bytes to r in chunks; returns the result of the last feed (true when n == 0). */
static bool feed_n(struct body_reader *r, size_t n)
{
    bool ok = true;
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? n : sizeof zeros;
        ok = body_reader_feed(r, zeros, chunk);
        n -= chunk;
    }
    return ok;
}

START_TEST(test_reader_init)
{
    struct body_reader r;
    body_reader_init(&r, 100);
    ck_assert_uint_eq(r.max, 100);
    ck_assert(!r.too_large);
    ck_assert_uint_eq(r.seen, 0);
    ck_assert_uint_eq(r.buf.len, 0);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_exactly_max)
{
    struct body_reader r;
    body_reader_init(&r, 10);
    ck_assert(body_reader_feed(&r, "0123456789", 10));
    ck_assert(!r.too_large);
    ck_assert_uint_eq(r.buf.len, 10);
    ck_assert_mem_eq(r.buf.data, "0123456789", 10);
    /* an empty feed at the cap is still fine */
    ck_assert(body_reader_feed(&r, "", 0));
    ck_assert(!r.too_large);
    ck_assert_uint_eq(r.seen, 10);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_max_plus_one_single_feed)
{
    struct body_reader r;
    body_reader_init(&r, 10);
    ck_assert(!body_reader_feed(&r, "0123456789A", 11));
    ck_assert(r.too_large);
    ck_assert_uint_eq(r.buf.len, 0);
    ck_assert_uint_eq(r.seen, 11);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_max_plus_one_several_feeds)
{
    struct body_reader r;
    body_reader_init(&r, 10);
    ck_assert(body_reader_feed(&r, "0123", 4));
    ck_assert(body_reader_feed(&r, "4567", 4));
    ck_assert(body_reader_feed(&r, "89", 2));
    ck_assert_uint_eq(r.buf.len, 10);
    ck_assert_mem_eq(r.buf.data, "0123456789", 10);
    ck_assert(!body_reader_feed(&r, "A", 1));
    ck_assert(r.too_large);
    /* the data kept so far is dropped too */
    ck_assert_uint_eq(r.buf.len, 0);
    ck_assert_ptr_null(r.buf.data);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_crossing_in_middle_of_feed)
{
    struct body_reader r;
    body_reader_init(&r, 10);
    ck_assert(body_reader_feed(&r, "012345", 6));
    ck_assert(!body_reader_feed(&r, "67890", 5));
    ck_assert(r.too_large);
    ck_assert_uint_eq(r.buf.len, 0);
    ck_assert_uint_eq(r.seen, 11);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_stays_too_large)
{
    struct body_reader r;
    body_reader_init(&r, 10);
    ck_assert(!body_reader_feed(&r, "0123456789AB", 12));
    ck_assert(r.too_large);
    /* further data, even small enough to fit, is refused and dropped, but still counted */
    ck_assert(!body_reader_feed(&r, "x", 1));
    ck_assert(!body_reader_feed(&r, "", 0));
    ck_assert(r.too_large);
    ck_assert_uint_eq(r.buf.len, 0);
    ck_assert_uint_eq(r.seen, 13);
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_hopeless_small_cap)
{
    /* cap 1024: 4x would be 4 KiB, so the 1 MiB floor applies: hopeless once seen > max + 1 MiB */
    struct body_reader r;
    body_reader_init(&r, 1024);
    ck_assert(feed_n(&r, 1024));
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 1));
    ck_assert(r.too_large);
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 4 * 1024));
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 1024 + MIB - r.seen));
    ck_assert_uint_eq(r.seen, 1024 + MIB);
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 1));
    ck_assert(body_reader_hopeless(&r));
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_hopeless_large_cap)
{
    /* cap 1 MiB: 4x the cap dominates: hopeless once seen > 4 MiB */
    struct body_reader r;
    body_reader_init(&r, MIB);
    ck_assert(feed_n(&r, MIB));
    ck_assert(!r.too_large);
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, MIB + 1)); /* just past max + 1 MiB: not yet */
    ck_assert(r.too_large);
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 4 * MIB - r.seen));
    ck_assert_uint_eq(r.seen, 4 * MIB);
    ck_assert(!body_reader_hopeless(&r));
    ck_assert(!feed_n(&r, 1));
    ck_assert(body_reader_hopeless(&r));
    body_reader_cleanup(&r);
}
END_TEST

START_TEST(test_reader_not_hopeless_when_within_cap)
{
    struct body_reader r;
    body_reader_init(&r, 8 * MIB);
    ck_assert(feed_n(&r, 8 * MIB));
    ck_assert(!body_reader_hopeless(&r));
    body_reader_cleanup(&r);
}
END_TEST

struct declared_case {
    const char *value;
    size_t max;
    bool too_large;
};

static const struct declared_case declared_cases[] = {
    {"0", 1024, false},
    {"1", 1024, false},
    {"1023", 1024, false},
    {"1024", 1024, false},
    {"1025", 1024, true},
    {"1048577", 1048576, true},
    {"18446744073709551615", 1048576, true},
    {"99999999999999999999999", 1048576, true}, /* overflows: too large */
    {"99999999999999999999999", SIZE_MAX, true},
    {"abc", 1024, false},
    {"", 1024, false},
    {"12x", 1024, false},
    {"2000x", 1024, false},
    {"x2000", 1024, false},
    {NULL, 1024, false},
};

/* Values that are not a plain digit string are malformed, so not "too large" per body.h (MHD
 * answers them with 400); strtoull would accept a sign and leading blanks. */
static const struct declared_case declared_signed_cases[] = {
    {"-1", 1024, false},    {"-0", 1024, false},     {"+2000", 1024, false},
    {" 2000", 1024, false}, {"\t2000", 1024, false},
};

START_TEST(test_declared_too_large_table)
{
    for (size_t i = 0; i < sizeof declared_cases / sizeof declared_cases[0]; i++) {
        const struct declared_case *c = &declared_cases[i];
        ck_assert_msg(body_declared_too_large(c->value, c->max) == c->too_large,
                      "body_declared_too_large(\"%s\", %zu) should be %s",
                      c->value ? c->value : "(null)", c->max, c->too_large ? "true" : "false");
    }
}
END_TEST

START_TEST(test_declared_sign_or_blank_is_malformed)
{
    for (size_t i = 0; i < sizeof declared_signed_cases / sizeof declared_signed_cases[0]; i++) {
        const struct declared_case *c = &declared_signed_cases[i];
        ck_assert_msg(body_declared_too_large(c->value, c->max) == c->too_large,
                      "body_declared_too_large(\"%s\", %zu) should be %s", c->value, c->max,
                      c->too_large ? "true" : "false");
    }
}
END_TEST

struct media_case {
    const char *value;
    bool json;
};

static const struct media_case media_cases[] = {
    {"application/json", true},
    {"Application/JSON", true},
    {"APPLICATION/JSON", true},
    {"application/json; charset=utf-8", true},
    {"application/json;charset=UTF-8", true},
    {"application/json ; charset=utf-8", true},
    {"application/jsonx", false},
    {"application/json-patch+json", false},
    {"application/problem+json", false},
    {"application/jso", false},
    {"application/", false},
    {"text/plain", false},
    {"text/json", false},
    {"", false},
    {" application/json", false},
    {NULL, false},
};

START_TEST(test_media_type_table)
{
    for (size_t i = 0; i < sizeof media_cases / sizeof media_cases[0]; i++) {
        const struct media_case *c = &media_cases[i];
        ck_assert_msg(body_media_type_is_json(c->value) == c->json,
                      "body_media_type_is_json(\"%s\") should be %s",
                      c->value ? c->value : "(null)", c->json ? "true" : "false");
    }
}
END_TEST

/* Parses text (strlen) and returns the value; detail receives the error. */
static json_t *parse(const char *text, char *detail, size_t detail_len)
{
    detail[0] = '\0';
    return body_parse_json(text, strlen(text), NULL, detail, detail_len);
}

START_TEST(test_parse_valid_object)
{
    char detail[256];
    json_t *v =
        parse("{\"name\": \"q1\", \"n\": 3, \"nested\": {\"a\": [1, 2]}}", detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    ck_assert(json_is_object(v));
    ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "q1");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "n")), 3);
    ck_assert_uint_eq(json_array_size(json_object_get(json_object_get(v, "nested"), "a")), 2);
    json_decref(v);
}
END_TEST

START_TEST(test_parse_valid_utf8)
{
    char detail[256];
    json_t *v = parse("{\"s\": \"h\xc3\xa9llo \xe2\x82\xac\"}", detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(json_string_value(json_object_get(v, "s")), "h\xc3\xa9llo \xe2\x82\xac");
    json_decref(v);
}
END_TEST

START_TEST(test_parse_duplicate_keys)
{
    char detail[256];
    json_t *v = parse("{\"a\": 1, \"a\": 2}", detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(detail, "duplicate"));

    v = parse("{\"outer\": {\"b\": true, \"b\": false}}", detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(detail, "duplicate"));
}
END_TEST

START_TEST(test_parse_error_position)
{
    char detail[256];
    json_t *v = parse("{\n  \"a\": tru\n}", detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(detail, "line 2") != NULL, "detail \"%s\" lacks line 2", detail);
    ck_assert_msg(strstr(detail, "column") != NULL, "detail \"%s\" lacks a column", detail);
}
END_TEST

START_TEST(test_parse_trailing_garbage)
{
    char detail[256];
    static const char *const inputs[] = {"{} x", "{}{}", "[1] 2", "1 2", "\"a\"\"b\""};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        json_t *v = parse(inputs[i], detail, sizeof detail);
        ck_assert_msg(v == NULL, "\"%s\" should be refused", inputs[i]);
        json_decref(v);
        ck_assert(detail[0] != '\0');
    }
    /* trailing whitespace is not garbage */
    json_t *v = parse("{}  \n\t", detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    json_decref(v);
}
END_TEST

START_TEST(test_parse_invalid_utf8)
{
    char detail[256];
    static const char *const inputs[] = {
        "\"\xff\"",
        "\"\xc3\x28\"",           /* bad continuation byte */
        "\"ab\xe2\x82\"",         /* truncated sequence */
        "\"\xc0\xaf\"",           /* overlong encoding */
        "{\"k\xff\": 1}",         /* in a key */
        "\"\xed\xa0\x80\"",       /* UTF-16 surrogate */
        "[\"\xf4\x90\x80\x80\"]", /* beyond U+10FFFF */
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        json_t *v = parse(inputs[i], detail, sizeof detail);
        ck_assert_msg(v == NULL, "invalid UTF-8 case %zu accepted", i);
        json_decref(v);
        ck_assert(detail[0] != '\0');
        /* the detail goes into a JSON problem document, so it must itself be valid UTF-8 */
        json_t *s = json_string(detail);
        ck_assert_msg(s != NULL, "detail for case %zu is not valid UTF-8", i);
        json_decref(s);
    }
}
END_TEST

START_TEST(test_parse_nul_bytes)
{
    char detail[256];
    static const char raw_in_string[] = "{\"a\": \"x\0y\"}";
    json_t *v =
        body_parse_json(raw_in_string, sizeof raw_in_string - 1, NULL, detail, sizeof detail);
    ck_assert_ptr_null(v);

    static const char raw_outside[] = "{\"a\": 1}\0";
    v = body_parse_json(raw_outside, sizeof raw_outside - 1, NULL, detail, sizeof detail);
    ck_assert_ptr_null(v);

    /* right after a number or a literal, where jansson itself would drop it */
    static const char *const after[] = {"{\"a\":1\0}", "[true\0]", "7\0", "{\"a\":null\0}"};
    static const size_t after_len[] = {8, 7, 2, 11};
    for (int i = 0; i < 4; i++) {
        v = body_parse_json(after[i], after_len[i], NULL, detail, sizeof detail);
        ck_assert_msg(!v, "a NUL in %s was taken", after[i]);
        ck_assert_msg(strstr(detail, "NUL byte"), "%s", detail);
    }

    /* a NUL escaped: refused in plain words, not jansson's flag name */
    const char *escaped[] = {"\"\\u0000\"", "{\"a\": \"x\\u0000y\"}", "{\"k\\u0000\": 1}"};
    for (int i = 0; i < 3; i++) {
        v = parse(escaped[i], detail, sizeof detail);
        ck_assert_ptr_null(v);
        ck_assert_msg(strstr(detail, ": \\u0000 (NUL) is not allowed in strings"), "%s", detail);
        ck_assert_msg(!strstr(detail, "JSON_ALLOW_NUL"), "%s", detail);
    }
    /* other errors whose text holds "NUL" keep jansson's words (`NULL` is no token) */
    v = parse("{\"a\": NULL}", detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert_msg(!strstr(detail, "u0000") && strstr(detail, "NULL"), "%s", detail);
}
END_TEST

START_TEST(test_parse_deep_nesting)
{
    enum { DEPTH = 5000 };
    char *text = malloc(2 * DEPTH);
    ck_assert_ptr_nonnull(text);
    memset(text, '[', DEPTH);
    memset(text + DEPTH, ']', DEPTH);
    char detail[256] = "";
    json_t *v = body_parse_json(text, 2 * DEPTH, NULL, detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert(detail[0] != '\0');
    /* unbalanced, too */
    v = body_parse_json(text, DEPTH, NULL, detail, sizeof detail);
    ck_assert_ptr_null(v);
    free(text);

    /* moderate nesting is fine */
    char ok[201];
    memset(ok, '[', 100);
    memset(ok + 100, ']', 100);
    ok[200] = '\0';
    v = parse(ok, detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    ck_assert(json_is_array(v));
    json_decref(v);
}
END_TEST

struct scalar_case {
    const char *text;
    json_type type;
};

static const struct scalar_case scalar_cases[] = {
    {"42", JSON_INTEGER}, {"-1.5", JSON_REAL},   {"\"s\"", JSON_STRING},
    {"true", JSON_TRUE},  {"false", JSON_FALSE}, {"null", JSON_NULL},
    {"[]", JSON_ARRAY},   {"{}", JSON_OBJECT},   {" 7 ", JSON_INTEGER},
};

START_TEST(test_parse_scalars_accepted)
{
    char detail[256];
    for (size_t i = 0; i < sizeof scalar_cases / sizeof scalar_cases[0]; i++) {
        json_t *v = parse(scalar_cases[i].text, detail, sizeof detail);
        ck_assert_msg(v != NULL, "\"%s\" refused: %s", scalar_cases[i].text, detail);
        ck_assert_int_eq(json_typeof(v), scalar_cases[i].type);
        json_decref(v);
    }
}
END_TEST

START_TEST(test_parse_malformed_misc)
{
    char detail[256];
    static const char *const inputs[] = {"",         "   ",  "{",   "[1,2", "{\"a\" 1}",
                                         "{'a': 1}", "[1,]", "nul", "01",   "\"\x01\""};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        json_t *v = parse(inputs[i], detail, sizeof detail);
        ck_assert_msg(v == NULL, "\"%s\" should be refused", inputs[i]);
        json_decref(v);
        ck_assert_msg(strncmp(detail, "malformed JSON", 14) == 0, "detail \"%s\"", detail);
    }
}
END_TEST

START_TEST(test_parse_detail_truncated_safely)
{
    char detail[16];
    memset(detail, 'Z', sizeof detail);
    json_t *v = body_parse_json("{\"a\": 1, \"a\": 2}", 16, NULL, detail, 12);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(strlen(detail), 11);
    ck_assert_int_eq(detail[12], 'Z'); /* nothing written past detail_len */
}
END_TEST

/* A buffer never grows past the cap: a body of exactly max bytes takes max + 1 (the NUL), not
 * the next power of two. */
START_TEST(test_reader_grows_no_further_than_cap)
{
    struct body_reader r;
    body_reader_init(&r, 1000000);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 1000; i++) {
        ck_assert(body_reader_feed(&r, chunk, sizeof chunk));
        ck_assert_uint_le(r.buf.cap, 1000001);
        ck_assert_uint_gt(r.buf.cap, r.buf.len);
    }
    ck_assert_uint_eq(r.buf.len, 1000000);
    ck_assert_uint_eq(r.buf.cap, 1000001);
    body_reader_cleanup(&r);
}
END_TEST

/* "[unit,unit,...]" of about len bytes; free the result. */
static char *json_list_of(const char *unit, size_t len, size_t *out_len)
{
    size_t u = strlen(unit), n = 0;
    char *text = malloc(len + u + 3);
    ck_assert_ptr_nonnull(text);
    text[n++] = '[';
    while (n + u + 2 < len) {
        if (n > 1)
            text[n++] = ',';
        memcpy(text + n, unit, u);
        n += u;
    }
    text[n++] = ']';
    text[n] = '\0';
    *out_len = n;
    return text;
}

/* A megabyte of empty objects would take some 78 MB parsed: refused as too large, and the cap
 * is off again afterwards. A megabyte of numbers (about 20 times) parses. */
START_TEST(test_parse_memory_cap)
{
    char detail[256] = "";
    size_t n;
    char *text = json_list_of("{}", 1 << 20, &n);
    bool too_large = false;
    json_t *v = body_parse_json(text, n, &too_large, detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert(too_large);
    ck_assert_msg(strstr(detail, "too many values"), "%s", detail);
    free(text);

    text = json_list_of("{}", 20000, &n); /* small: within the floor */
    v = body_parse_json(text, n, &too_large, detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    ck_assert(!too_large);
    json_decref(v);
    free(text);

    text = json_list_of("1", 1 << 20, &n);
    v = body_parse_json(text, n, &too_large, detail, sizeof detail);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_gt(json_array_size(v), 500000);
    json_decref(v);
    free(text);

    /* malformed is not too large */
    v = body_parse_json("[1,", 3, &too_large, detail, sizeof detail);
    ck_assert_ptr_null(v);
    ck_assert(!too_large);

    /* outside body_parse_json jansson is not capped */
    json_t *big = json_array();
    for (int i = 0; i < 200000; i++)
        ck_assert_int_eq(json_array_append_new(big, json_object()), 0);
    json_decref(big);
}
END_TEST

/* The cap may run out anywhere, also inside a long number or string whose buffer is growing:
 * jansson's lexer must never see a failed allocation (it asserts, or reads past its buffer).
 * With no floor, "{}," costs more than the cap allows per byte, so over this range of prefixes
 * the cap runs out at every point of the long token after them. */
START_TEST(test_parse_cap_inside_a_token)
{
    body_json_setup(0);
    for (int t = 0; t < 2; t++) {
        for (int k = 700; k < 1400; k += 3) {
            size_t n = 0, cap = (size_t)k * 3 + 6000;
            char *text = malloc(cap);
            ck_assert_ptr_nonnull(text);
            text[n++] = '[';
            for (int i = 0; i < k; i++) {
                memcpy(text + n, "{},", 3);
                n += 3;
            }
            if (t == 1)
                text[n++] = '"';
            memset(text + n, t ? 'a' : '1', 5000); /* a string, or the number 0.111... */
            if (t == 0)
                memcpy(text + n, "0.", 2);
            n += 5000;
            if (t == 1)
                text[n++] = '"';
            text[n++] = ']';
            char detail[256];
            bool too_large = false;
            json_t *v = body_parse_json(text, n, &too_large, detail, sizeof detail);
            if (v) {
                ck_assert(!too_large);
                ck_assert_uint_eq(json_array_size(v), (size_t)k + 1);
            } else {
                ck_assert_msg(too_large, "k=%d: %s", k, detail);
            }
            json_decref(v);
            free(text);
        }
    }
    body_json_setup(BODY_JSON_FLOOR);
}
END_TEST

static Suite *body_suite(void)
{
    Suite *s = suite_create("body");

    TCase *reader = tcase_create("reader");
    tcase_add_test(reader, test_reader_init);
    tcase_add_test(reader, test_reader_exactly_max);
    tcase_add_test(reader, test_reader_max_plus_one_single_feed);
    tcase_add_test(reader, test_reader_max_plus_one_several_feeds);
    tcase_add_test(reader, test_reader_crossing_in_middle_of_feed);
    tcase_add_test(reader, test_reader_stays_too_large);
    tcase_add_test(reader, test_reader_hopeless_small_cap);
    tcase_add_test(reader, test_reader_hopeless_large_cap);
    tcase_add_test(reader, test_reader_not_hopeless_when_within_cap);
    tcase_add_test(reader, test_reader_grows_no_further_than_cap);
    suite_add_tcase(s, reader);

    TCase *headers = tcase_create("headers");
    tcase_add_test(headers, test_declared_too_large_table);
    tcase_add_test(headers, test_declared_sign_or_blank_is_malformed);
    tcase_add_test(headers, test_media_type_table);
    suite_add_tcase(s, headers);

    TCase *json = tcase_create("json");
    tcase_add_test(json, test_parse_valid_object);
    tcase_add_test(json, test_parse_valid_utf8);
    tcase_add_test(json, test_parse_duplicate_keys);
    tcase_add_test(json, test_parse_error_position);
    tcase_add_test(json, test_parse_trailing_garbage);
    tcase_add_test(json, test_parse_invalid_utf8);
    tcase_add_test(json, test_parse_nul_bytes);
    tcase_add_test(json, test_parse_deep_nesting);
    tcase_add_test(json, test_parse_scalars_accepted);
    tcase_add_test(json, test_parse_malformed_misc);
    tcase_add_test(json, test_parse_detail_truncated_safely);
    tcase_add_test(json, test_parse_memory_cap);
    tcase_add_test(json, test_parse_cap_inside_a_token);
    suite_add_tcase(s, json);

    return s;
}

int main(void)
{
    body_json_setup(BODY_JSON_FLOOR);
    return unit_run(body_suite());
}
