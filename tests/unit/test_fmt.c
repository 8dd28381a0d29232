/* Unit tests of fmt: each writer gives exactly what its printf conversion gives, at the edges of
 * its range and for a spread of values between, and the copy truncates and terminates as
 * snprintf("%s") does. */
#include "rydes/fmt.h"

#include "unit.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* A spread of 64-bit values: the edges, powers of ten around them, and a xorshift sequence. */
static unsigned long long value(int i)
{
    static const unsigned long long edges[] = {0,
                                               1,
                                               9,
                                               10,
                                               99,
                                               100,
                                               999999999,
                                               1000000000,
                                               9999999999999999999ULL,
                                               10000000000000000000ULL,
                                               LLONG_MAX,
                                               (unsigned long long)LLONG_MAX + 1,
                                               ULLONG_MAX};
    int edge_count = (int)(sizeof edges / sizeof edges[0]);
    if (i < edge_count)
        return edges[i];
    unsigned long long x = 0x9E3779B97F4A7C15ULL * (unsigned long long)(i + 1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x >> (i % 64); /* short values as often as long ones */
}

START_TEST(integers_are_written_as_printf_writes_them)
{
    for (int i = 0; i < 2000; i++) {
        unsigned long long u = value(i);
        char want[32], got[FMT_INT_LEN];
        snprintf(want, sizeof want, "%llu", u);
        ck_assert_uint_eq(fmt_uint(got, u), strlen(want));
        ck_assert_str_eq(got, want);
        long long s = (long long)u; /* the same bits as signed: negatives, LLONG_MIN */
        snprintf(want, sizeof want, "%lld", s);
        ck_assert_uint_eq(fmt_int(got, s), strlen(want));
        ck_assert_str_eq(got, want);
        long long neg = s == LLONG_MIN ? s : -s; /* -LLONG_MIN does not exist */
        snprintf(want, sizeof want, "%lld", neg);
        ck_assert_uint_eq(fmt_int(got, neg), strlen(want));
        ck_assert_str_eq(got, want);
    }
}
END_TEST

START_TEST(hex_is_zero_padded_to_its_width)
{
    for (int i = 0; i < 2000; i++) {
        unsigned long long u = value(i);
        for (int digits = 1; digits <= 16; digits++) {
            unsigned long long low = digits == 16 ? u : u & ((1ULL << (4 * digits)) - 1);
            char want[32], got[17];
            snprintf(want, sizeof want, "%0*llx", digits, low);
            ck_assert_uint_eq(fmt_hex(got, u, digits), (size_t)digits);
            ck_assert_str_eq(got, want);
        }
    }
}
END_TEST

START_TEST(copies_truncate_and_terminate_as_snprintf_does)
{
    const char *src = "0123456789";
    for (size_t n = 1; n <= 14; n++) {
        char want[16], got[16];
        memset(got, 'x', sizeof got);
        snprintf(want, n, "%s", src);
        ck_assert_uint_eq(fmt_copy(got, n, src), strlen(want));
        ck_assert_str_eq(got, want);
        ck_assert_int_eq(got[strlen(want) + 1], 'x'); /* nothing written past the terminator */
    }
    char one[1] = {'x'};
    ck_assert_uint_eq(fmt_copy(one, 1, src), 0);
    ck_assert_int_eq(one[0], '\0');
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fmt");
    TCase *tc = tcase_create("fmt");
    tcase_add_test(tc, integers_are_written_as_printf_writes_them);
    tcase_add_test(tc, hex_is_zero_padded_to_its_width);
    tcase_add_test(tc, copies_truncate_and_terminate_as_snprintf_does);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
