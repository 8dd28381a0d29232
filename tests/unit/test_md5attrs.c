/* Unit tests for MD5OfMessageAttributes (src/aws/md5attrs.c). The expected digests were
 * computed by an independent implementation of AWS's algorithm (a few lines of Python: names
 * sorted, 4-byte big-endian lengths, transport byte 1 for String/Number and 2 for Binary with
 * the decoded bytes), and the first one is also what awscli and @aws-sdk/client-sqs accepted. */
#include "rydes/md5attrs.h"

#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void expect(const char *attrs_json, const char *want)
{
    json_t *attrs = json_loads(attrs_json, 0, NULL);
    ck_assert_ptr_nonnull(attrs);
    char hex[33];
    ck_assert(md5attrs_hex(attrs, hex));
    ck_assert_str_eq(hex, want);
    json_decref(attrs);
}

START_TEST(test_string_and_binary)
{
    expect("{\"b\":{\"type\":\"Binary\",\"value\":\"AQID\"},\"a\":{\"type\":\"String\","
           "\"value\":\"x\"}}",
           "aff7372f244d3ebae020d15edb230ef6");
}
END_TEST

START_TEST(test_custom_types_and_utf8)
{
    expect("{\"fare\":{\"type\":\"Number\",\"value\":\"61.5\"},"
           "\"customer\":{\"type\":\"String\",\"value\":\"cust-42\"},"
           "\"zz.\u00fc\":{\"type\":\"String.custom\",\"value\":\"Gr\u00fc\u00dfe\"},"
           "\"blob\":{\"type\":\"Binary.png\",\"value\":\"AAECAwQF/w==\"}}",
           "3365e74d1098628188381be3adf82ac7");
    expect("{\"fare\":{\"type\":\"Number\",\"value\":\"61.5\"},"
           "\"customer\":{\"type\":\"String\",\"value\":\"cust-42\"},"
           "\"blob\":{\"type\":\"Binary\",\"value\":\"AAEC/w==\"}}",
           "42b5a19ea78fd71e0765a910cd1d8d3d");
}
END_TEST

START_TEST(test_empty_and_malformed)
{
    char hex[33];
    json_t *empty = json_object();
    ck_assert(!md5attrs_hex(empty, hex));
    ck_assert_str_eq(hex, "");
    json_decref(empty);
    json_t *bad = json_loads("{\"b\":{\"type\":\"Binary\",\"value\":\"not base64!\"}}", 0, NULL);
    ck_assert(!md5attrs_hex(bad, hex));
    json_decref(bad);
    ck_assert(!md5attrs_hex(NULL, hex));
}
END_TEST

START_TEST(test_base64_decode)
{
    size_t n;
    unsigned char *raw = md5attrs_base64_decode("AAEC/w==", &n);
    ck_assert_ptr_nonnull(raw);
    ck_assert_uint_eq(n, 4);
    ck_assert(memcmp(raw, "\x00\x01\x02\xff", 4) == 0);
    free(raw);
    raw = md5attrs_base64_decode("AQID", &n);
    ck_assert_uint_eq(n, 3);
    free(raw);
    ck_assert_ptr_null(md5attrs_base64_decode("abc", &n));
    ck_assert_ptr_null(md5attrs_base64_decode("ab!=", &n));
}
END_TEST

static Suite *md5attrs_suite(void)
{
    Suite *s = suite_create("md5attrs");
    TCase *tc = tcase_create("md5attrs");
    tcase_add_test(tc, test_string_and_binary);
    tcase_add_test(tc, test_custom_types_and_utf8);
    tcase_add_test(tc, test_empty_and_malformed);
    tcase_add_test(tc, test_base64_decode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(md5attrs_suite());
}
