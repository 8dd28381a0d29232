/* Unit tests of the text written directly instead of through jansson: jsontext_real formats a
 * real as jansson does, and ride_text is byte for byte jsontext_dumps(ride_json(r)), each real
 * in its own shortest form. */
#include "rydes/jsontext.h"
#include "rydes/rides.h"

#include "unit.h"

#include <stdlib.h>
#include <string.h>

START_TEST(reals_are_written_as_jansson_writes_them)
{
    const double values[] = {0.1,           -0.5,   256.5, 1e-7,    1.5e-300,
                             123456789.125, 1e21,   -2e22, 3.14159, 0.30000000000000004,
                             1e300,         5e-324, 1e15,  1e16,    100.25,
                             -1e-5};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        for (int precision = 15; precision <= 17; precision += 2) {
            json_t *v = json_real(values[i]);
            char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision));
            char got[32];
            jsontext_real(values[i], precision, got, sizeof got);
            ck_assert_msg(strcmp(got, want) == 0, "%.17g at %d: wrote %s, jansson %s", values[i],
                          precision, got, want);
            free(want);
            json_decref(v);
        }
}
END_TEST

static void assert_ride_text(const struct ride *r)
{
    json_t *j = ride_json(r);
    char *want = jsontext_dumps(j, JSON_COMPACT);
    char *got = ride_text(r);
    ck_assert_msg(strcmp(got, want) == 0, "wrote %s\njansson %s", got, want);
    free(got);
    free(want);
    json_decref(j);
}

START_TEST(ride_text_is_what_jansson_writes)
{
    struct ride r = {.id = "0190c0de-0000-7000-8000-000000000001",
                     .from = "Berlin",
                     .to = "Potsdam",
                     .customer = "cust-1",
                     .unicorn = NULL,
                     .duration = 600,
                     .distance = 30,
                     .fare = 80,
                     .submitted_at = "2026-11-27T10:00:00.123Z"};
    assert_ride_text(&r); /* integers, no unicorn (null) */
    r.unicorn = "Shadowfax";
    r.distance = 12.3;
    r.fare = 61.55;
    assert_ride_text(&r);             /* reals with 15 digits */
    r.duration = 0.30000000000000004; /* needs 17 digits: the other reals keep theirs */
    assert_ride_text(&r);
    char *text = ride_text(&r);
    ck_assert_msg(strstr(text, "\"duration\":0.30000000000000004,") &&
                      strstr(text, "\"distance\":12.3,") && strstr(text, "\"fare\":61.55,"),
                  "%s", text);
    free(text);
    r.duration = 1e-7;
    r.from = "Caf\xc3\xa9 \"Zur Post\"\\ \t\x01 \xf0\x9f\xa6\x84";
    r.to = "";
    r.customer = "a/b";
    assert_ride_text(&r);
    r.fare = 9007199254740992.0; /* 2^53: a real for number_json */
    assert_ride_text(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ride_text");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, reals_are_written_as_jansson_writes_them);
    tcase_add_test(tc, ride_text_is_what_jansson_writes);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
