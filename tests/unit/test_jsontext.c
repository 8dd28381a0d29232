/* Unit tests of jsontext_dumps: numbers come back the way a client wrote them (0.1 stays 0.1),
 * each real on its own (a neighbour that needs 17 digits does not change the others), and
 * everything else is what json_dumps writes. */
#include "rydes/jsontext.h"

#include "unit.h"

#include <string.h>

static void assert_dumps(const char *in, const char *want)
{
    json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(v);
    char *text = jsontext_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    ck_assert_msg(strcmp(text, want) == 0, "%s gave %s, want %s", in, text, want);
    free(text);
    json_decref(v);
}

START_TEST(decimals_stay_as_written)
{
    assert_dumps("{\"fare\": 0.1}", "{\"fare\":0.1}");
    assert_dumps("[61.55, 12.3, 1e-7, 256.5]", "[61.55,12.3,1e-7,256.5]");
    assert_dumps("{\"a\": {\"b\": [0.2, {\"c\": 0.7}]}}", "{\"a\":{\"b\":[0.2,{\"c\":0.7}]}}");
    assert_dumps("42", "42");
    assert_dumps("\"text\"", "\"text\"");
}
END_TEST

START_TEST(seventeen_digits_when_needed)
{
    /* 0.1 + 0.2 is not 0.3: fifteen digits would say it is; its neighbours keep their own */
    assert_dumps("[0.30000000000000004, 0.1]", "[0.30000000000000004,0.1]");
    assert_dumps("{\"duration\": 0.1234567890123456, \"fare\": 61.55, \"distance\": 4.2}",
                 "{\"duration\":0.12345678901234559,\"fare\":61.55,\"distance\":4.2}");
}
END_TEST

/* A deeply nested neighbour (200 levels, within jansson's parser depth) does not make every
 * number take 17 digits. */
START_TEST(depth_does_not_change_numbers)
{
    char in[512], want[512];
    int depth = 200, n = snprintf(in, sizeof in, "{\"price\":0.1,\"x\":");
    memset(in + n, '[', (size_t)depth);
    memset(in + n + depth, ']', (size_t)depth);
    strcpy(in + n + 2 * depth, "}");
    strcpy(want, in);
    assert_dumps(in, want);
}
END_TEST

/* Text whose reals all read back from 15 digits is written as jansson writes it with that
 * precision, with and without sorted keys. */
static void assert_as_jansson(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(v);
    for (int sorted = 0; sorted < 2; sorted++) {
        size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | (sorted ? JSON_SORT_KEYS : 0);
        char *want = json_dumps(v, flags | JSON_REAL_PRECISION(15));
        char *got = jsontext_dumps(v, flags);
        ck_assert_msg(strcmp(got, want) == 0, "wrote %s, jansson %s", got, want);
        free(got);
        free(want);
    }
    json_decref(v);
}

START_TEST(everything_else_is_what_jansson_writes)
{
    assert_as_jansson("{\"fare\": {\"type\": \"Number\", \"value\": \"80.50\"}, "
                      "\"customer\": {\"type\": \"String\", \"value\": \"a \\\"b\\\" \\u00e9\"}}");
    assert_as_jansson("[1, -2, 0.1, 1e-7, 1.5e300, true, false, null, \"\", {}, []]");
    assert_as_jansson(
        "{\"k\\n\": [[{\"z\": 9223372036854775807}]], \"a\": -0.0, \"\\u0001\": 1e21}");
    assert_as_jansson(
        "{\"b\": 1, \"ab\": 2, \"a\": 3, \"\": 4, \"B\": 5, \"\\u00e9\": 6, \"a\\t\": 7}");
    assert_as_jansson("\"just text\"");
    assert_as_jansson("42");
}
END_TEST

/* A key with a NUL in it (json_object_setn) is written whole, and sorts after its prefix. */
START_TEST(keys_with_nul_are_written_whole)
{
    json_t *v = json_object();
    json_object_setn_new(v, "a\0b", 3, json_integer(1));
    json_object_set_new(v, "a", json_integer(2));
    char *want = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    char *got = jsontext_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(got, want);
    ck_assert_str_eq(got, "{\"a\":2,\"a\\u0000b\":1}");
    free(got);
    free(want);
    json_decref(v);
}
END_TEST

/* jansson's parser depth is written whole; NULL (a failed json_pack) is null. */
START_TEST(the_parser_depth_is_written_whole)
{
    static char in[2 * JSON_PARSER_MAX_DEPTH + 1];
    memset(in, '[', JSON_PARSER_MAX_DEPTH);
    memset(in + JSON_PARSER_MAX_DEPTH, ']', JSON_PARSER_MAX_DEPTH);
    assert_dumps(in, in);
    char *null = jsontext_dumps(NULL, JSON_COMPACT);
    ck_assert_str_eq(null, "null");
    free(null);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsontext");
    TCase *tc = tcase_create("dumps");
    tcase_add_test(tc, decimals_stay_as_written);
    tcase_add_test(tc, seventeen_digits_when_needed);
    tcase_add_test(tc, depth_does_not_change_numbers);
    tcase_add_test(tc, everything_else_is_what_jansson_writes);
    tcase_add_test(tc, keys_with_nul_are_written_whole);
    tcase_add_test(tc, the_parser_depth_is_written_whole);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
