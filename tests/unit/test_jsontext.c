/* Unit tests of jsontext_dumps: numbers come back the way a client wrote them (0.1 stays 0.1),
 * and values that need 17 digits keep them. */
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
    /* 0.1 + 0.2 is not 0.3: fifteen digits would say it is */
    assert_dumps("[0.30000000000000004, 0.1]", "[0.30000000000000004,0.10000000000000001]");
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

int main(void)
{
    Suite *s = suite_create("jsontext");
    TCase *tc = tcase_create("dumps");
    tcase_add_test(tc, decimals_stay_as_written);
    tcase_add_test(tc, seventeen_digits_when_needed);
    tcase_add_test(tc, depth_does_not_change_numbers);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
