/* Unit tests for AWS Signature Version 4 (src/aws/sigv4.c) against the worked example of the
 * AWS documentation (IAM ListUsers, 20150830T123600Z, secret
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY): the canonical request's hash, the signing key and the
 * signature, checked independently with Python's hmac/hashlib. Then the parser of the Authorization
 * header (host and date must be signed, plain region and service names), X-Amz-Date, and verify:
 * a good signature, a wrong secret, a tampered body, clock skew, a signed header that is missing
 * and an unsigned X-Amz-Target. */
#include "rydes/sigv4.h"

#include "unit.h"

#include <string.h>
#include <strings.h>

static const char *const example_headers[][2] = {
    {"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
    {"host", "iam.amazonaws.com"},
    {"x-amz-date", "20150830T123600Z"},
};

static const char *lookup(void *ctx, const char *name)
{
    (void)ctx;
    for (size_t i = 0; i < 3; i++)
        if (strcasecmp(example_headers[i][0], name) == 0)
            return example_headers[i][1];
    return NULL;
}

/* The example's headers but for content-type (which it signs). */
static const char *without_content_type(void *ctx, const char *name)
{
    return strcasecmp(name, "content-type") == 0 ? NULL : lookup(ctx, name);
}

/* The example's headers and an X-Amz-Target it did not sign. */
static const char *with_target(void *ctx, const char *name)
{
    return strcasecmp(name, "x-amz-target") == 0 ? "AmazonSQS.PurgeQueue" : lookup(ctx, name);
}

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SIG    "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"

static const struct sigv4_request example = {
    "GET", "/", "Action=ListUsers&Version=2010-05-08", lookup, NULL, "", 0};

START_TEST(test_canonical_request_hash)
{
    struct buf b;
    buf_init(&b);
    sigv4_canonical_request(&example, "content-type;host;x-amz-date", &b);
    char hex[65];
    sigv4_sha256_hex(b.data, b.len, hex);
    ck_assert_str_eq(hex, "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    buf_cleanup(&b);
}
END_TEST

/* The canonical query of the AWS SigV4 test suite's cases: sorted by name, then value (byte
 * order: "V" before "v"), unreserved characters kept, everything else %-encoded in upper-case
 * hex (spaces as %20, "+" as %2B, UTF-8 byte by byte), a name without a value as "name=". */
START_TEST(test_canonical_query)
{
    static const struct {
        const char *names[3], *values[3];
        size_t n;
        const char *want;
    } cases[] = {
        {{"Param2", "Param1"}, {"value2", "value1"}, 2, "Param1=value1&Param2=value2"},
        {{"Param1", "Param1"}, {"value2", "Value1"}, 2, "Param1=Value1&Param1=value2"},
        {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"},
         {"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"},
         1,
         "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
         "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"},
        {{"\xe1\x88\xb4"}, {"bar"}, 1, "%E1%88%B4=bar"},
        {{"a b", "c"}, {"x+y", NULL}, 2, "a%20b=x%2By&c="},
        {{NULL}, {NULL}, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b;
        buf_init(&b);
        sigv4_canonical_query(cases[i].names, cases[i].values, cases[i].n, &b);
        ck_assert_str_eq(buf_str(&b), cases[i].want);
        buf_cleanup(&b);
    }
}
END_TEST

START_TEST(test_signing_key_and_signature)
{
    unsigned char key[32];
    ck_assert(sigv4_signing_key(SECRET, "20150830", "us-east-1", "iam", key));
    char hex[65];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[64] = '\0';
    ck_assert_str_eq(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    struct buf c, s;
    buf_init(&c);
    buf_init(&s);
    sigv4_canonical_request(&example, "content-type;host;x-amz-date", &c);
    sigv4_string_to_sign("20150830T123600Z", "20150830/us-east-1/iam/aws4_request", c.data, &s);
    sigv4_hmac_hex(key, s.data, s.len, hex);
    ck_assert_str_eq(hex, SIG);
    buf_cleanup(&c);
    buf_cleanup(&s);
}
END_TEST

static const char *const auth_header =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date, Signature=" SIG;

/* A secret of up to SIGV4_MAX_SECRET characters signs (the key buffer once held 63); a longer
 * one is refused instead of being cut short silently. */
START_TEST(test_signing_key_bounds)
{
    char secret[SIGV4_MAX_SECRET + 2];
    memset(secret, 'k', sizeof secret - 1);
    secret[SIGV4_MAX_SECRET] = '\0';
    unsigned char a[32], b[32], zero[32] = {0};
    ck_assert(sigv4_signing_key(secret, "20150830", "us-east-1", "iam", a));
    secret[SIGV4_MAX_SECRET - 1] = 'j'; /* the last character counts */
    ck_assert(sigv4_signing_key(secret, "20150830", "us-east-1", "iam", b));
    ck_assert(memcmp(a, b, 32) != 0);
    secret[SIGV4_MAX_SECRET] = 'k';
    secret[SIGV4_MAX_SECRET + 1] = '\0';
    ck_assert(!sigv4_signing_key(secret, "20150830", "us-east-1", "iam", a));
    ck_assert(memcmp(a, zero, 32) == 0);
}
END_TEST

START_TEST(test_parse_authorization)
{
    struct sigv4_auth a;
    ck_assert(sigv4_parse_authorization(auth_header, &a));
    ck_assert_str_eq(a.access_key, "AKIDEXAMPLE");
    ck_assert_str_eq(a.date, "20150830");
    ck_assert_str_eq(a.region, "us-east-1");
    ck_assert_str_eq(a.service, "iam");
    ck_assert_str_eq(a.signed_headers, "content-type;host;x-amz-date");
    static const char *const bad[] = {
        "",
        "Bearer x",
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/2015/us-east-1/iam/aws4_request, SignedHeaders=host, "
        "Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws5_request, SignedHeaders=host, "
        "Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, "
        "Signature=zz",
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/aws4_request, SignedHeaders=host, "
        "Signature=" SIG,
        /* the host and the date must be signed (a replay elsewhere would verify otherwise) */
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=host, Signature=" SIG,
        /* the region and service are echoed into ARNs: plain names only */
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us\"x/iam/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/i<am/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" SIG,
        "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=Host;x-amz-date, Signature=" SIG,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!sigv4_parse_authorization(bad[i], &a), "accepted %s", bad[i]);
    ck_assert(!sigv4_parse_authorization(NULL, &a));
}
END_TEST

START_TEST(test_amz_date)
{
    int64_t t;
    ck_assert(sigv4_parse_amz_date("20150830T123600Z", &t));
    ck_assert_int_eq(t, 1440938160);
    ck_assert(!sigv4_parse_amz_date("2015-08-30T12:36:00Z", &t));
    ck_assert(!sigv4_parse_amz_date("20151330T123600Z", &t));
    ck_assert(!sigv4_parse_amz_date("20150830T123600", &t));
    ck_assert(!sigv4_parse_amz_date(NULL, &t));
    /* days a month lacks are refused, not rolled into the next month */
    ck_assert(!sigv4_parse_amz_date("20150231T123600Z", &t));
    ck_assert(!sigv4_parse_amz_date("20150431T123600Z", &t));
    ck_assert(!sigv4_parse_amz_date("20150229T123600Z", &t));
    ck_assert(sigv4_parse_amz_date("20160229T123600Z", &t));
}
END_TEST

START_TEST(test_verify)
{
    struct sigv4_auth a;
    ck_assert(sigv4_parse_authorization(auth_header, &a));
    int64_t now = 1440938160;
    ck_assert_int_eq(sigv4_verify(&example, &a, SECRET, now), SIGV4_OK);
    ck_assert_int_eq(sigv4_verify(&example, &a, SECRET, now + 14 * 60), SIGV4_OK);
    ck_assert_int_eq(sigv4_verify(&example, &a, SECRET, now + 16 * 60), SIGV4_SKEWED);
    ck_assert_int_eq(sigv4_verify(&example, &a, SECRET, now - 16 * 60), SIGV4_SKEWED);
    ck_assert_int_eq(sigv4_verify(&example, &a, "wrong-secret", now), SIGV4_MISMATCH);
    struct sigv4_request tampered = example;
    tampered.body = "x";
    tampered.body_len = 1;
    ck_assert_int_eq(sigv4_verify(&tampered, &a, SECRET, now), SIGV4_MISMATCH);
    tampered = example;
    tampered.method = "POST";
    ck_assert_int_eq(sigv4_verify(&tampered, &a, SECRET, now), SIGV4_MISMATCH);
    /* a signed header the request does not have, or an X-Amz-Target left unsigned */
    tampered = example;
    tampered.header = without_content_type;
    ck_assert_int_eq(sigv4_verify(&tampered, &a, SECRET, now), SIGV4_MISMATCH);
    tampered = example;
    tampered.header = with_target;
    ck_assert_int_eq(sigv4_verify(&tampered, &a, SECRET, now), SIGV4_MISMATCH);
}
END_TEST

static Suite *sigv4_suite(void)
{
    Suite *s = suite_create("sigv4");
    TCase *tc = tcase_create("sigv4");
    tcase_add_test(tc, test_canonical_request_hash);
    tcase_add_test(tc, test_canonical_query);
    tcase_add_test(tc, test_signing_key_and_signature);
    tcase_add_test(tc, test_signing_key_bounds);
    tcase_add_test(tc, test_parse_authorization);
    tcase_add_test(tc, test_amz_date);
    tcase_add_test(tc, test_verify);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(sigv4_suite());
}
