/* Unit tests of the RFC 3339 parser and formatter (rydes/clock.h): a table of valid date-times
 * with the microseconds they stand for ("Z" and "z", offsets either side of UTC crossing days
 * and years, fractions of 1 to 9 digits with the sub-microsecond digits dropped, "T", "t" and a
 * space between date and time, leap days by the 4/100/400 rule, the first and last instants of
 * four-digit years), a table of strings it must refuse (impossible dates, 24:00:00, minute and
 * second 60 including leap seconds, a missing or malformed offset, trailing garbage, the empty
 * string...), and round trips through clock_format_rfc3339, before the epoch too. */
#include "rydes/clock.h"

#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define S 1000000LL /* microseconds per second */

/* 2026-11-26T12:00:00Z, the instant most valid cases spell in some way. */
#define NOON 1795694400LL

struct valid {
    const char *text;
    int64_t us;
};

static const struct valid valid[] = {
    {"1970-01-01T00:00:00Z", 0},
    {"2026-11-26T12:00:00Z", NOON *S},
    {"2026-11-26T12:00:00z", NOON *S},
    {"2026-11-26t12:00:00Z", NOON *S},
    {"2026-11-26 12:00:00Z", NOON *S},
    {"2026-11-26T12:00:00+00:00", NOON *S},
    {"2026-11-26T12:00:00-00:00", NOON *S},
    {"2026-11-26T14:30:00+02:30", NOON *S},
    {"2026-11-26T07:00:00-05:00", NOON *S},
    {"2026-11-27T11:59:00+23:59", NOON *S},
    {"2026-11-25T12:01:00-23:59", NOON *S},
    {"2026-11-26 13:00:00+01:00", NOON *S},
    /* fractions: 1 to 9 digits; digits below the microsecond are dropped */
    {"2026-11-26T12:00:00.1Z", NOON *S + 100000},
    {"2026-11-26T12:00:00.12Z", NOON *S + 120000},
    {"2026-11-26T12:00:00.123Z", NOON *S + 123000},
    {"2026-11-26T12:00:00.1234Z", NOON *S + 123400},
    {"2026-11-26T12:00:00.12345Z", NOON *S + 123450},
    {"2026-11-26T12:00:00.123456Z", NOON *S + 123456},
    {"2026-11-26T12:00:00.1234567Z", NOON *S + 123456},
    {"2026-11-26T12:00:00.12345678Z", NOON *S + 123456},
    {"2026-11-26T12:00:00.123456789Z", NOON *S + 123456},
    {"2026-11-26T12:00:00.999999999Z", NOON *S + 999999},
    {"2026-11-26T12:00:00.000001Z", NOON *S + 1},
    {"2026-11-26T12:00:00.0Z", NOON *S},
    {"2026-11-26T12:00:00.000000000Z", NOON *S},
    {"2026-11-26T14:00:00.5+02:00", NOON *S + 500000},
    {"2026-11-26T12:00:00.25-00:00", NOON *S + 250000},
    /* an offset that moves the instant into the next day and the next year */
    {"2026-11-26T23:00:59-01:00", 1795737659LL * S},
    {"2026-12-31T23:30:00-01:00", 1798763400LL * S},
    {"2027-01-01T01:30:00+01:00", 1798763400LL * S},
    /* leap days: every 4 years, not every 100, every 400 */
    {"2028-02-29T00:00:00Z", 1835395200LL * S},
    {"2000-02-29T12:34:56Z", 951827696LL * S},
    {"2026-03-29T01:00:00Z", 1774746000LL * S},
    /* the ends of the four-digit years, and before the epoch */
    {"0001-01-01T00:00:00Z", -62135596800LL * S},
    {"9999-12-31T23:59:59Z", 253402300799LL * S},
    {"9999-12-31T23:59:59.999999Z", 253402300799LL * S + 999999},
    {"1969-07-20T20:17:40Z", -14182940LL * S},
    {"1969-07-20T20:17:40.25Z", -14182940LL * S + 250000},
    {"1969-12-31T23:59:59.5Z", -500000},
};

static const char *const invalid[] = {
    "",
    " ",
    "Z",
    "2026",
    "2026-11-26",
    "2026-11-26T",
    "12:00:00Z",
    /* no offset */
    "2026-11-26T12:00:00",
    "2026-11-26T12:00:00.123",
    "2026-11-26 12:00:00",
    /* malformed offsets */
    "2026-11-26T12:00:00+02",
    "2026-11-26T12:00:00+0200",
    "2026-11-26T12:00:00+2:00",
    "2026-11-26T12:00:00+02:0",
    "2026-11-26T12:00:00+24:00",
    "2026-11-26T12:00:00+02:60",
    "2026-11-26T12:00:00-99:99",
    "2026-11-26T12:00:00+",
    "2026-11-26T12:00:00-",
    "2026-11-26T12:00:00UTC",
    "2026-11-26T12:00:00 Z",
    "2026-11-26T12:00:00ZZ",
    "2026-11-26T12:00:00+02:00Z",
    /* trailing and leading garbage */
    "2026-11-26T12:00:00Zjunk",
    "2026-11-26T12:00:00Z ",
    "2026-11-26T12:00:00+02:00 ",
    "2026-11-26T12:00:00+02:00:00",
    " 2026-11-26T12:00:00Z",
    "+2026-11-26T12:00:00Z",
    "x2026-11-26T12:00:00Z",
    /* fractions */
    "2026-11-26T12:00:00.Z",
    "2026-11-26T12:00:00.",
    "2026-11-26T12:00:00,5Z",
    "2026-11-26T12:00:00.5.5Z",
    "2026-11-26T12:00:00.-5Z",
    "2026-11-26T12:00:00.5 Z",
    /* the shape of the date and the time */
    "2026-11-26X12:00:00Z",
    "2026-11-26_12:00:00Z",
    "2026-11-26TT12:00:00Z",
    "2026/11/26T12:00:00Z",
    "26-11-26T12:00:00Z",
    "20261126T120000Z",
    "2026-1-26T12:00:00Z",
    "2026-11-6T12:00:00Z",
    "2026-11-26T1:00:00Z",
    "2026-11-26T12:0:00Z",
    "2026-11-26T12:00:0Z",
    "2026-11-26T12:00Z",
    "2026-11-26T12Z",
    "2026-11-26T12:00:00:00Z",
    "2026-11-26T12-00-00Z",
    "2026-11-26T+1:00:00Z",
    "2026-11-26T 1:00:00Z",
    "-026-11-26T12:00:00Z",
    /* impossible dates */
    "2027-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2100-02-29T00:00:00Z",
    "2028-02-30T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-06-31T00:00:00Z",
    "2026-09-31T00:00:00Z",
    "2026-11-31T00:00:00Z",
    "2026-01-32T00:00:00Z",
    "2026-12-32T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-99-99T00:00:00Z",
    /* impossible times: no 24:00:00, no minute or second 60 (no leap seconds) */
    "2026-11-26T24:00:00Z",
    "2026-11-26T24:00:00+01:00",
    "2026-11-26T25:00:00Z",
    "2026-11-26T12:60:00Z",
    "2026-11-26T23:59:60Z",
    "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60.5Z",
    "2026-11-26T12:00:61Z",
    "2026-11-26T99:99:99Z",
};

START_TEST(valid_date_times_parse_to_their_instant)
{
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        int64_t us = 42;
        bool ok = clock_parse_rfc3339(valid[i].text, &us);
        ck_assert_msg(ok, "\"%s\" was refused", valid[i].text);
        ck_assert_msg(us == valid[i].us, "\"%s\" gave %lld, want %lld", valid[i].text,
                      (long long)us, (long long)valid[i].us);
    }
}
END_TEST

START_TEST(invalid_date_times_are_refused)
{
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        int64_t us = 0;
        ck_assert_msg(!clock_parse_rfc3339(invalid[i], &us), "\"%s\" was accepted (as %lld)",
                      invalid[i], (long long)us);
    }
}
END_TEST

START_TEST(a_string_cut_anywhere_is_refused)
{
    /* every proper prefix of a valid date-time lacks at least its offset */
    const char *full = "2026-11-26T12:34:56.789+01:00";
    char prefix[64];
    for (size_t n = 0; n < strlen(full); n++) {
        snprintf(prefix, sizeof prefix, "%.*s", (int)n, full);
        int64_t us;
        ck_assert_msg(!clock_parse_rfc3339(prefix, &us), "\"%s\" was accepted", prefix);
    }
    int64_t us;
    ck_assert(clock_parse_rfc3339(full, &us));
    ck_assert_int_eq(us, (NOON + 34 * 60 + 56 - 3600) * S + 789000);
}
END_TEST

START_TEST(every_day_of_a_leap_year_and_no_other)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t prev = 0;
    for (int m = 1; m <= 12; m++)
        for (int d = 1; d <= 32; d++) {
            char text[40];
            snprintf(text, sizeof text, "2028-%02d-%02dT00:00:00Z", m, d);
            int64_t us = 0;
            bool ok = clock_parse_rfc3339(text, &us);
            ck_assert_msg(ok == (d <= days[m - 1]), "%s: %s", text, ok ? "accepted" : "refused");
            if (ok && prev)
                ck_assert_msg(us - prev == 86400 * S, "%s is not a day after the day before", text);
            if (ok)
                prev = us;
        }
}
END_TEST

START_TEST(formatting_is_utc_with_milliseconds)
{
    char out[CLOCK_RFC3339_LEN];
    clock_format_rfc3339(0, out);
    ck_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    clock_format_rfc3339(NOON * S, out);
    ck_assert_str_eq(out, "2026-11-26T12:00:00.000Z");
    clock_format_rfc3339(NOON * S + 123456, out);
    ck_assert_str_eq(out, "2026-11-26T12:00:00.123Z");
    clock_format_rfc3339(NOON * S + 999999, out);
    ck_assert_str_eq(out, "2026-11-26T12:00:00.999Z");
    clock_format_rfc3339(1835395200LL * S + 7 * S, out);
    ck_assert_str_eq(out, "2028-02-29T00:00:07.000Z");
    clock_format_rfc3339(253402300799LL * S + 999999, out);
    ck_assert_str_eq(out, "9999-12-31T23:59:59.999Z");
}
END_TEST

START_TEST(round_trips)
{
    /* text in the normal form comes back as it was */
    const char *normal[] = {"1970-01-01T00:00:00.000Z", "2026-11-26T12:00:00.123Z",
                            "2028-02-29T23:59:59.999Z", "2000-01-01T00:00:00.001Z",
                            "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                            "2038-01-19T03:14:08.000Z"};
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) {
        int64_t us;
        char out[CLOCK_RFC3339_LEN];
        ck_assert_msg(clock_parse_rfc3339(normal[i], &us), "%s refused", normal[i]);
        clock_format_rfc3339(us, out);
        ck_assert_str_eq(out, normal[i]);
    }
    /* any spelling comes back normalised: UTC, "T", "Z", milliseconds (truncated) */
    const char *spelled[][2] = {
        {"2026-11-26 14:30:00.5+02:30", "2026-11-26T12:00:00.500Z"},
        {"2026-11-26t07:00:00.123456789-05:00", "2026-11-26T12:00:00.123Z"},
        {"2026-12-31T23:30:00.9999z", "2026-12-31T23:30:00.999Z"},
        {"2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000Z"},
        {"2028-03-01T00:30:00+01:00", "2028-02-29T23:30:00.000Z"},
    };
    for (size_t i = 0; i < sizeof spelled / sizeof *spelled; i++) {
        int64_t us;
        char out[CLOCK_RFC3339_LEN];
        ck_assert_msg(clock_parse_rfc3339(spelled[i][0], &us), "%s refused", spelled[i][0]);
        clock_format_rfc3339(us, out);
        ck_assert_msg(strcmp(out, spelled[i][1]) == 0, "%s gave %s, want %s", spelled[i][0], out,
                      spelled[i][1]);
    }
    /* instants come back truncated to the millisecond */
    const int64_t instants[] = {0,
                                1,
                                999,
                                1000,
                                NOON * S + 1,
                                NOON * S + 123999,
                                4102444799LL * S + 999999,
                                86399LL * S + 1000};
    for (size_t i = 0; i < sizeof instants / sizeof *instants; i++) {
        char out[CLOCK_RFC3339_LEN];
        int64_t us;
        clock_format_rfc3339(instants[i], out);
        ck_assert_msg(clock_parse_rfc3339(out, &us), "%s refused", out);
        ck_assert_msg(us == instants[i] - instants[i] % 1000, "%lld -> %s -> %lld",
                      (long long)instants[i], out, (long long)us);
    }
    /* the clock's own readings round-trip */
    int64_t now = clock_wall_us();
    char out[CLOCK_RFC3339_LEN];
    int64_t back;
    clock_format_rfc3339(now, out);
    ck_assert(clock_parse_rfc3339(out, &back));
    ck_assert_int_eq(back, now - now % 1000);
}
END_TEST

/* The parser accepts years from 0001, so instants before 1970 exist: formatting them must not
 * print a negative millisecond field ("1970-01-01T00:00:00.-500Z"). */
START_TEST(instants_before_the_epoch_round_trip)
{
    const char *normal[] = {"1969-12-31T23:59:59.500Z", "1969-07-20T20:17:40.250Z",
                            "1969-07-20T20:17:40.000Z", "0001-01-01T00:00:00.001Z",
                            "1900-03-01T12:00:00.999Z"};
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) {
        int64_t us;
        char out[CLOCK_RFC3339_LEN];
        ck_assert_msg(clock_parse_rfc3339(normal[i], &us), "%s refused", normal[i]);
        clock_format_rfc3339(us, out);
        ck_assert_msg(strcmp(out, normal[i]) == 0, "%s (%lld us) formatted as %s", normal[i],
                      (long long)us, out);
    }
    char out[CLOCK_RFC3339_LEN];
    clock_format_rfc3339(-1, out); /* one microsecond before the epoch, truncated to its ms */
    ck_assert_str_eq(out, "1969-12-31T23:59:59.999Z");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clock");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, valid_date_times_parse_to_their_instant);
    tcase_add_test(parse, invalid_date_times_are_refused);
    tcase_add_test(parse, a_string_cut_anywhere_is_refused);
    tcase_add_test(parse, every_day_of_a_leap_year_and_no_other);
    suite_add_tcase(s, parse);
    TCase *format = tcase_create("format");
    tcase_add_test(format, formatting_is_utc_with_milliseconds);
    tcase_add_test(format, round_trips);
    tcase_add_test(format, instants_before_the_epoch_round_trip);
    suite_add_tcase(s, format);
    return unit_run(s);
}
