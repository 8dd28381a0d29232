/* Unit tests for token secrets and identifiers (src/core/secret.c, src/core/ids.c): generated
 * tokens ("rydes_" + 43 base64url characters, NUL-terminated within SECRET_TOKEN_LEN, canonical
 * last character, never repeating), SHA-256 token hashing and MD5 hex digests checked against
 * the published test vectors, constant-time comparison, random UUIDs (format, version 4, RFC
 * 4122 variant, lower case, distinct), ids_is_uuid and ids_request_id_valid on tables of good
 * and bad inputs. Output buffers carry a guard area to catch writes past their documented size
 * (the library is not built with AddressSanitizer). */
#include "rydes/clock.h"
#include "rydes/ids.h"
#include "rydes/secret.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 16

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static void assert_guard(const char *area, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(area[i] == 'G', "byte %zu past the buffer was overwritten", i);
}

START_TEST(test_token_format)
{
    char out[SECRET_TOKEN_LEN + GUARD];
    memset(out, 'G', sizeof out);
    secret_token_generate(out);
    assert_guard(out + SECRET_TOKEN_LEN, GUARD);
    ck_assert_uint_eq(SECRET_TOKEN_LEN, 50);
    ck_assert_uint_eq(strlen(out), 49);
    ck_assert_int_eq(strncmp(out, "rydes_", 6), 0);
    ck_assert_int_eq(strncmp(out, SECRET_TOKEN_PREFIX, strlen(SECRET_TOKEN_PREFIX)), 0);
    for (size_t i = 6; i < 49; i++)
        ck_assert_msg(out[i] != '\0' && strchr(b64url, out[i]) != NULL,
                      "character %zu ('%c') is not base64url", i, out[i]);
}
END_TEST

START_TEST(test_token_canonical_last_char)
{
    /* 256 bits in 43 characters: the last one carries 4 bits and two zero bits */
    static const char last_ok[] = "AEIMQUYcgkosw048";
    for (int i = 0; i < 200; i++) {
        char out[SECRET_TOKEN_LEN];
        secret_token_generate(out);
        ck_assert_msg(strchr(last_ok, out[48]) != NULL, "token %s has a non-canonical end", out);
    }
}
END_TEST

START_TEST(test_token_distinct)
{
    enum { N = 64 };
    static char tokens[N][SECRET_TOKEN_LEN];
    for (int i = 0; i < N; i++) {
        secret_token_generate(tokens[i]);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(tokens[i], tokens[j]);
    }
}
END_TEST

START_TEST(test_token_uses_alphabet)
{
    /* over many tokens, both ends of the alphabet (incl. '-' and '_') show up */
    bool seen[256] = {false};
    for (int i = 0; i < 400; i++) {
        char out[SECRET_TOKEN_LEN];
        secret_token_generate(out);
        for (size_t k = 6; k < 48; k++)
            seen[(unsigned char)out[k]] = true;
    }
    for (size_t k = 0; k < 64; k++)
        ck_assert_msg(seen[(unsigned char)b64url[k]], "'%c' never generated", b64url[k]);
}
END_TEST

struct digest_case {
    const char *in;
    const char *hex;
};

static const struct digest_case sha256_cases[] = {
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
};

START_TEST(test_token_hash_vectors)
{
    for (size_t i = 0; i < sizeof sha256_cases / sizeof sha256_cases[0]; i++) {
        unsigned char out[SECRET_HASH_LEN + GUARD];
        memset(out, 'G', sizeof out);
        secret_token_hash(sha256_cases[i].in, strlen(sha256_cases[i].in), out);
        assert_guard((const char *)out + SECRET_HASH_LEN, GUARD);
        char text[2 * SECRET_HASH_LEN + 1];
        hex(out, SECRET_HASH_LEN, text);
        ck_assert_str_eq(text, sha256_cases[i].hex);
    }
}
END_TEST

START_TEST(test_token_hash_uses_len)
{
    /* only len bytes are hashed */
    unsigned char a[SECRET_HASH_LEN], b[SECRET_HASH_LEN];
    secret_token_hash("abcdef", 3, a);
    secret_token_hash("abc", 3, b);
    ck_assert_mem_eq(a, b, SECRET_HASH_LEN);
    secret_token_hash("abd", 3, b);
    ck_assert(memcmp(a, b, SECRET_HASH_LEN) != 0);
}
END_TEST

static const struct digest_case md5_cases[] = {
    {"", "d41d8cd98f00b204e9800998ecf8427e"},
    {"a", "0cc175b9c0f1b6a831c399e269772661"},
    {"abc", "900150983cd24fb0d6963f7d28e17f72"},
    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
};

START_TEST(test_md5_hex_vectors)
{
    for (size_t i = 0; i < sizeof md5_cases / sizeof md5_cases[0]; i++) {
        char out[33 + GUARD];
        memset(out, 'G', sizeof out);
        secret_md5_hex(md5_cases[i].in, strlen(md5_cases[i].in), out);
        assert_guard(out + 33, GUARD);
        ck_assert_str_eq(out, md5_cases[i].hex);
    }
}
END_TEST

START_TEST(test_md5_hex_binary)
{
    /* data may hold NUL bytes: MD5 of the single byte 0x00 */
    char out[33];
    secret_md5_hex("", 1, out);
    ck_assert_str_eq(out, "93b885adfe0da089cdf634904fd59f71");
}
END_TEST

START_TEST(test_secret_equal)
{
    ck_assert(secret_equal("abc", "abc", 3));
    ck_assert(!secret_equal("abc", "abd", 3));
    ck_assert(!secret_equal("abc", "xbc", 3));
    ck_assert(secret_equal("abcX", "abcY", 3)); /* only n bytes compared */
    ck_assert(secret_equal("a", "b", 0));
    unsigned char h1[SECRET_HASH_LEN], h2[SECRET_HASH_LEN];
    secret_token_hash("t1", 2, h1);
    secret_token_hash("t1", 2, h2);
    ck_assert(secret_equal(h1, h2, SECRET_HASH_LEN));
    h2[SECRET_HASH_LEN - 1] ^= 1;
    ck_assert(!secret_equal(h1, h2, SECRET_HASH_LEN));
}
END_TEST

START_TEST(test_uuid_format)
{
    for (int i = 0; i < 100; i++) {
        char out[IDS_UUID_LEN + GUARD];
        memset(out, 'G', sizeof out);
        ids_uuid(out);
        assert_guard(out + IDS_UUID_LEN, GUARD);
        ck_assert_uint_eq(strlen(out), 36);
        ck_assert_msg(ids_is_uuid(out), "%s", out);
        ck_assert_int_eq(out[14], '4');
        ck_assert_msg(strchr("89ab", out[19]) != NULL, "variant of %s", out);
        for (int k = 0; k < 36; k++)
            ck_assert_msg(strchr("0123456789abcdef-", out[k]) != NULL, "%s is not lower case", out);
    }
}
END_TEST

/* The 48-bit millisecond prefix of a v7 UUID, read back from its text. */
static int64_t uuid_v7_ms(const char *u)
{
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return (int64_t)strtoll(hex, NULL, 16);
}

START_TEST(test_uuid_v7_format_and_order)
{
    char prev[IDS_UUID_LEN] = "";
    for (int i = 0; i < 100; i++) {
        int64_t before = clock_wall_us() / 1000;
        char out[IDS_UUID_LEN + GUARD];
        memset(out, 'G', sizeof out);
        ids_uuid_v7(out);
        int64_t after = clock_wall_us() / 1000;
        assert_guard(out + IDS_UUID_LEN, GUARD);
        ck_assert_msg(ids_is_uuid(out), "%s", out);
        ck_assert_int_eq(out[14], '7');
        ck_assert_msg(strchr("89ab", out[19]) != NULL, "variant of %s", out);
        int64_t ms = uuid_v7_ms(out);
        ck_assert_msg(ms >= before && ms <= after, "%s: %lld ms not in [%lld, %lld]", out,
                      (long long)ms, (long long)before, (long long)after);
        /* distinct, and never older than the id made before it */
        ck_assert_str_ne(prev, out);
        ck_assert_msg(!prev[0] || uuid_v7_ms(prev) <= ms, "%s before %s", prev, out);
        memcpy(prev, out, IDS_UUID_LEN);
    }
}
END_TEST

START_TEST(test_uuid_distinct)
{
    char a[IDS_UUID_LEN], b[IDS_UUID_LEN];
    ids_uuid(a);
    ids_uuid(b);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_random_fills)
{
    /* 64 random bytes are all zero with probability 2^-512 */
    unsigned char buf[64 + GUARD];
    memset(buf, 0, 64);
    memset(buf + 64, 'G', GUARD);
    ids_random(buf, 64);
    assert_guard((const char *)buf + 64, GUARD);
    size_t nonzero = 0;
    for (int i = 0; i < 64; i++)
        nonzero += buf[i] != 0;
    ck_assert_uint_gt(nonzero, 0);
    ids_random(buf, 0); /* no-op */
}
END_TEST

struct string_case {
    const char *s;
    bool ok;
};

static const struct string_case uuid_cases[] = {
    {"123e4567-e89b-42d3-a456-426614174000", true},
    {"123E4567-E89B-42D3-A456-426614174000", true},
    {"00000000-0000-0000-0000-000000000000", true},
    {"ffffffff-ffff-1fff-cfff-ffffffffffff", true}, /* any version and variant */
    {"", false},
    {"123e4567-e89b-42d3-a456-42661417400", false},   /* 35 characters */
    {"123e4567-e89b-42d3-a456-4266141740000", false}, /* 37 characters */
    {"123e4567e89b42d3a456426614174000", false},      /* no dashes */
    {"123e4567-e89b-42d3-a456_426614174000", false},
    {"123e4567+e89b-42d3-a456-426614174000", false},
    {"123e456-7e89b-42d3-a456-426614174000", false}, /* dash misplaced */
    {"123e4567-e89b-42d3-a456-42661417400g", false},
    {"g23e4567-e89b-42d3-a456-426614174000", false},
    {"123e4567-e89b-42d3-a456-4266141740 0", false},
    {"{123e4567-e89b-42d3-a456-426614174000}", false},
    {" 123e4567-e89b-42d3-a456-426614174000", false},
    {"123e4567-e89b-42d3-a456-426614174000\n", false},
    {"------------------------------------", false},
};

START_TEST(test_is_uuid_table)
{
    for (size_t i = 0; i < sizeof uuid_cases / sizeof uuid_cases[0]; i++)
        ck_assert_msg(ids_is_uuid(uuid_cases[i].s) == uuid_cases[i].ok,
                      "ids_is_uuid(\"%s\") should be %s", uuid_cases[i].s,
                      uuid_cases[i].ok ? "true" : "false");
}
END_TEST

static const struct string_case request_id_cases[] = {
    {"abc-123_x.y:z", true},
    {"a", true},
    {"0", true},
    {"ABCxyz019", true},
    {"123e4567-e89b-42d3-a456-426614174000", true},
    {"", false},
    {"a b", false},
    {"a/b", false},
    {"\xc3\xa9", false},
    {"a\tb", false},
    {"a\nb", false},
    {"a,b", false},
    {"a\"b", false},
    {"a;b", false},
    {"%41", false},
    {"a+b", false},
};

START_TEST(test_request_id_table)
{
    for (size_t i = 0; i < sizeof request_id_cases / sizeof request_id_cases[0]; i++)
        ck_assert_msg(ids_request_id_valid(request_id_cases[i].s) == request_id_cases[i].ok,
                      "ids_request_id_valid(\"%s\") should be %s", request_id_cases[i].s,
                      request_id_cases[i].ok ? "true" : "false");
}
END_TEST

START_TEST(test_request_id_length)
{
    char id[IDS_REQUEST_ID_MAX + 2];
    memset(id, 'a', sizeof id);
    id[IDS_REQUEST_ID_MAX] = '\0';
    ck_assert_uint_eq(strlen(id), 128);
    ck_assert(ids_request_id_valid(id));
    id[IDS_REQUEST_ID_MAX] = 'a';
    id[IDS_REQUEST_ID_MAX + 1] = '\0';
    ck_assert_uint_eq(strlen(id), 129);
    ck_assert(!ids_request_id_valid(id));
    /* a bad character at the very end of an otherwise valid id */
    id[IDS_REQUEST_ID_MAX] = '\0';
    id[IDS_REQUEST_ID_MAX - 1] = '/';
    ck_assert(!ids_request_id_valid(id));
}
END_TEST

static Suite *secret_suite(void)
{
    Suite *s = suite_create("secret");

    TCase *tokens = tcase_create("tokens");
    tcase_add_test(tokens, test_token_format);
    tcase_add_test(tokens, test_token_canonical_last_char);
    tcase_add_test(tokens, test_token_distinct);
    tcase_add_test(tokens, test_token_uses_alphabet);
    tcase_add_test(tokens, test_token_hash_vectors);
    tcase_add_test(tokens, test_token_hash_uses_len);
    tcase_add_test(tokens, test_md5_hex_vectors);
    tcase_add_test(tokens, test_md5_hex_binary);
    tcase_add_test(tokens, test_secret_equal);
    suite_add_tcase(s, tokens);

    TCase *ids = tcase_create("ids");
    tcase_add_test(ids, test_uuid_format);
    tcase_add_test(ids, test_uuid_distinct);
    tcase_add_test(ids, test_uuid_v7_format_and_order);
    tcase_add_test(ids, test_random_fills);
    tcase_add_test(ids, test_is_uuid_table);
    tcase_add_test(ids, test_request_id_table);
    tcase_add_test(ids, test_request_id_length);
    suite_add_tcase(s, ids);

    return s;
}

int main(void)
{
    return unit_run(secret_suite());
}
