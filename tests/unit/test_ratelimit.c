/* Unit tests of the token buckets: a burst is allowed, then requests are refused with a
 * Retry-After until the bucket refills at its rate; keys in different slots are independent,
 * keys in one slot share its bucket; a token can be given back; asking takes none. */
#include "rydes/ratelimit.h"

#include "unit.h"

#include <string.h>

static const unsigned char key_a[32] = {1}, key_b[32] = {2};

START_TEST(burst_then_refill)
{
    struct ratelimit *rl = ratelimit_create_seeded(64, 0);
    int retry = 0;
    int64_t t = 1000000;
    for (int i = 0; i < 4; i++) /* rate 2/s, burst 4 */
        ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t, &retry));
    ck_assert_int_eq(retry, 1);
    /* another key has its own bucket */
    ck_assert(ratelimit_take(rl, key_b, sizeof key_b, 2, 4, t, &retry));
    /* half a second refills one token, and only one */
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 500000, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 500000, &retry));
    /* a long pause refills up to the burst, not beyond */
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 60000000, &retry);
    ck_assert_int_eq(ok, 4);
    ratelimit_free(rl);
}
END_TEST

/* Callers read the clock before the bucket's lock: a reading older than the bucket's time
 * refills nothing and does not set the time back (the interval would be refilled twice). */
START_TEST(an_earlier_reading_refills_nothing_twice)
{
    struct ratelimit *rl = ratelimit_create_seeded(64, 0);
    int retry = 0;
    int64_t t = 1000000;
    for (int i = 0; i < 4; i++) /* rate 2/s, burst 4: empty at t + 1 s */
        ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 1000000, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t, &retry));
    /* half a second after t + 1 s: one token, not the two a bucket set back to t would have */
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 1500000, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 2, 4, t + 1500000, &retry));
    ratelimit_free(rl);
}
END_TEST

/* A token given back can be taken again, and never beyond the burst. */
START_TEST(give_puts_one_back_up_to_the_burst)
{
    struct ratelimit *rl = ratelimit_create_seeded(64, 0);
    int retry = 0;
    int64_t t = 1000000;
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ratelimit_give(rl, key_a, sizeof key_a, 1, 2, t);
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    for (int i = 0; i < 5; i++)
        ratelimit_give(rl, key_a, sizeof key_a, 1, 2, t);
    int ok = 0;
    for (int i = 0; i < 5; i++)
        ok += ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry);
    ck_assert_int_eq(ok, 2);
    ratelimit_free(rl);
}
END_TEST

/* ratelimit_holds says what a take would, and takes nothing. */
START_TEST(holds_asks_without_taking)
{
    struct ratelimit *rl = ratelimit_create_seeded(64, 0);
    int retry = 0;
    int64_t t = 1000000;
    for (int i = 0; i < 10; i++) /* rate 1/s, burst 2 */
        ck_assert(ratelimit_holds(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(ratelimit_holds(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    retry = 0;
    ck_assert(!ratelimit_holds(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 1, 2, t, &retry));
    ck_assert(ratelimit_holds(rl, key_a, sizeof key_a, 1, 2, t + 1000000, &retry));
    ratelimit_free(rl);
}
END_TEST

START_TEST(slow_rates_say_when)
{
    struct ratelimit *rl = ratelimit_create(8);
    int retry = 0;
    ck_assert(ratelimit_take(rl, key_a, sizeof key_a, 0.1, 1, 0, &retry));
    ck_assert(!ratelimit_take(rl, key_a, sizeof key_a, 0.1, 1, 0, &retry));
    ck_assert_int_eq(retry, 10); /* one token per 10 s */
    ratelimit_free(rl);
}
END_TEST

/* Two keys in one slot (a table of one) share its bucket: used in turn, they never get a fresh
 * burst from each other. */
START_TEST(colliding_keys_share_a_bucket)
{
    struct ratelimit *rl = ratelimit_create(1);
    int retry = 0, ok = 0;
    for (int i = 0; i < 10; i++)
        ok += ratelimit_take(rl, i % 2 ? key_b : key_a, sizeof key_a, 2, 4, 1000000, &retry);
    ck_assert_int_eq(ok, 4);
    ratelimit_free(rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("buckets");
    tcase_add_test(tc, burst_then_refill);
    tcase_add_test(tc, an_earlier_reading_refills_nothing_twice);
    tcase_add_test(tc, give_puts_one_back_up_to_the_burst);
    tcase_add_test(tc, holds_asks_without_taking);
    tcase_add_test(tc, slow_rates_say_when);
    tcase_add_test(tc, colliding_keys_share_a_bucket);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
