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

static void assert_compact(const char *in, const char *want)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "<");
    ck_assert_msg(jsoncopy_compact(&b, in, strlen(in)), "refused %s", in);
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
    ck_assert_msg(!jsoncopy_compact(&b, in, n), "took %.*s", (int)n, in);
    ck_assert_str_eq(buf_str(&b), "kept");
    ck_assert_uint_eq(b.len, 4);
    buf_cleanup(&b);
}

START_TEST(anything_but_one_json_value_is_refused)
{
    const char *bad[] = {"",        " ",           "{",         "[1,]",    "{\"a\" 1}", "{\"a\":}",
                         "{1:2}",   "{\"a\":1,}",  "01",        "1.",      "-",         ".5",
                         "1e",      "+1",          "tru",       "nulls",   "[1] 2",     "\"abc",
                         "\"\\x\"", "\"\\u12G4\"", "[1}",       "{\"a\"]", "'single'",  "NaN",
                         "[1,,2]",  "\"tab\t\"",   "{\"a\":1}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_refused(bad[i], strlen(bad[i]));
    assert_refused("[1]\0", 4); /* the length counts, not a terminator */
}
END_TEST

static char *nested(int depth)
{
    char *t = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        t[i] = '[';
        t[depth * 2 - 1 - i] = ']';
    }
    t[depth * 2] = '\0';
    return t;
}

START_TEST(nesting_is_bounded)
{
    char *ok = nested(JSONCOPY_MAX_DEPTH), *deep = nested(JSONCOPY_MAX_DEPTH + 1);
    assert_compact(ok, ok);
    assert_refused(deep, strlen(deep));
    free(ok);
    free(deep);
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
