/* Unit tests of jsoncopy: strings escaped as jansson escapes them, JSON text copied compact
 * (the same as jansson's compact dump of what it wrote), and anything that is not exactly one
 * JSON value refused with the buffer left as it was. */
#include "rydes/jsoncopy.h"
#include "rydes/jsontext.h"

#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void assert_string_as_jansson(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    ck_assert_ptr_nonnull(v);
    char *want = json_dumps(v, JSON_ENCODE_ANY);
    struct buf b;
    buf_init(&b);
    jsoncopy_string(&b, s, n);
    ck_assert_msg(strcmp(buf_str(&b), want) == 0, "wrote %s, jansson %s", buf_str(&b), want);
    buf_cleanup(&b);
    free(want);
    json_decref(v);
}

START_TEST(strings_are_escaped_as_jansson_escapes_them)
{
    const char *cases[] = {"",
                           "plain",
                           "quote \" and backslash \\",
                           "a/b",
                           "tab\there\nnew\rcr",
                           "\b\f",
                           "\x01\x1f\x7f",
                           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\xa6\x84"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_as_jansson(cases[i], strlen(cases[i]));
    assert_string_as_jansson("nul\0inside", 10);
}
END_TEST

/* A copy of t[0..n) in a block of exactly n bytes, so that ASan sees a read past the end. */
static char *exact(const char *t, size_t n)
{
    char *p = malloc(n ? n : 1);
    memcpy(p, t, n);
    return p;
}

static void assert_compact(const char *in, const char *want)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "<");
    char *copy = exact(in, strlen(in));
    bool ok = jsoncopy_compact(&b, copy, strlen(in));
    free(copy);
    ck_assert_msg(ok, "refused %s", in);
    ck_assert_msg(strcmp(buf_str(&b) + 1, want) == 0, "%s gave %s, want %s", in, buf_str(&b) + 1,
                  want);
    buf_cleanup(&b);
}

START_TEST(json_text_is_copied_compact)
{
    assert_compact(" {\"a\" : 1 ,\n \"b\":[ true,false , null,-0.5e+3, \"x\\\"y \" ] } ",
                   "{\"a\":1,\"b\":[true,false,null,-0.5e+3,\"x\\\"y \"]}");
    assert_compact("[]", "[]");
    assert_compact("{ }", "{}");
    assert_compact("[[],{},[{}]]", "[[],{},[{}]]");
    assert_compact("\"just a string\"", "\"just a string\"");
    assert_compact("0", "0");
    assert_compact("-12.5E-3", "-12.5E-3");
    assert_compact("\"\\u00e9\\/\\b\"", "\"\\u00e9\\/\\b\"");
    assert_compact("\"\\ud83e\\udd84\"", "\"\\ud83e\\udd84\""); /* a pair */
    assert_compact("[-0, 123456789012345678, 1e99, \"\x7f\"]",
                   "[-0,123456789012345678,1e99,\"\x7f\"]");
    /* what jansson wrote comes back exactly as its compact dump */
    const char *written[] = {"{\"ride\":{\"id\":7,\"fare\":0.1,\"tags\":[\"a\",\"b\"]}}",
                             "[1,2.5,\"caf\xc3\xa9\",null,{\"k\":\"v\\n\"}]"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_loads(written[i], 0, NULL);
        ck_assert_ptr_nonnull(v);
        char *dumped = jsontext_dumps(v, JSON_COMPACT);
        assert_compact(written[i], dumped);
        free(dumped);
        json_decref(v);
    }
}
END_TEST

static void assert_refused(const char *in, size_t n)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "kept");
    char *copy = exact(in, n);
    bool ok = jsoncopy_compact(&b, copy, n);
    free(copy);
    ck_assert_msg(!ok, "took %.*s", (int)n, in);
    ck_assert_str_eq(buf_str(&b), "kept");
    ck_assert_uint_eq(b.len, 4);
    buf_cleanup(&b);
    struct buf empty;
    buf_init(&empty);
    copy = exact(in, n);
    ok = jsoncopy_compact(&empty, copy, n);
    free(copy);
    ck_assert(!ok && empty.len == 0 && strcmp(buf_str(&empty), "") == 0);
    buf_cleanup(&empty);
}

START_TEST(anything_but_one_json_value_is_refused)
{
    const char *bad[] = {"", " ", "{", "[1,]", "{\"a\" 1}", "{\"a\":}", "{1:2}", "{\"a\":1,}", "01",
                         "1.", "-", ".5", "1e", "+1", "tru", "nulls", "[1] 2", "\"abc", "\"\\x\"",
                         "\"\\u12G4\"", "[1}", "{\"a\"]", "'single'", "NaN", "[1,,2]", "\"tab\t\"",
                         "{\"a\":1}}",
                         /* cut short */
                         "\"\\", "\"\\u12", "tr", "1e+", "{\"a\"", "{\"a\":", "[", "-",
                         /* numbers the grammar refuses */
                         "-01", "1.e5", "00", "1e+-5",
                         /* not JSON whitespace */
                         "\f1", "1\v",
                         "\xef\xbb\xbf"
                         "1",
                         /* what jansson refuses to read: the caller falls back to it */
                         "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
                         "12345678901234567890", "1e400", "[1.5E-1000]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_refused(bad[i], strlen(bad[i]));
    assert_refused("[1]\0", 4); /* the length counts, not a terminator */
    assert_refused("[1,\0 2]", 7);
    assert_refused("\"a\0b\"", 5);
}
END_TEST

/* depth arrays, or objects {"k":...}, around 0. */
static char *nested(int depth, bool objects)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < depth; i++)
        buf_puts(&b, objects ? "{\"k\":" : "[");
    buf_puts(&b, "0");
    for (int i = 0; i < depth; i++)
        buf_puts(&b, objects ? "}" : "]");
    return buf_steal(&b);
}

START_TEST(nesting_is_bounded)
{
    for (int objects = 0; objects < 2; objects++) {
        char *ok = nested(JSONCOPY_MAX_DEPTH, objects);
        char *deep = nested(JSONCOPY_MAX_DEPTH + 1, objects);
        assert_compact(ok, ok);
        assert_refused(deep, strlen(deep));
        free(ok);
        free(deep);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsoncopy");
    TCase *tc = tcase_create("copy");
    tcase_add_test(tc, strings_are_escaped_as_jansson_escapes_them);
    tcase_add_test(tc, json_text_is_copied_compact);
    tcase_add_test(tc, anything_but_one_json_value_is_refused);
    tcase_add_test(tc, nesting_is_bounded);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
