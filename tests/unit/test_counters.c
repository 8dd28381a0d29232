/* Unit tests of the per-id counters (rydes/mq_counters.h): counts per id and kind, retirement of
 * ids the database no longer lists (their slots are reused, so a process whose queues come and
 * go never fills its tables), the claim-time guard that keeps an id created after the listing,
 * and the overflow total once an id's probe range is full. */
#include "rydes/clock.h"
#include "rydes/mq_counters.h"

#include "unit.h"

#include <stdlib.h>

START_TEST(counts_are_kept_per_id_and_kind)
{
    mq_count_queue(7, MQC_SENT, 3);
    mq_count_queue(7, MQC_DELETED, 1);
    mq_count_queue(8, MQC_SENT, 5);
    mq_count_topic(7, 2);
    mq_count_subscription(7, MQC_FILTERED_OUT, 4);
    ck_assert_uint_eq(mq_queue_count(7, MQC_SENT), 3);
    ck_assert_uint_eq(mq_queue_count(7, MQC_DELETED), 1);
    ck_assert_uint_eq(mq_queue_count(8, MQC_SENT), 5);
    ck_assert_uint_eq(mq_queue_count(9, MQC_SENT), 0);
    ck_assert_uint_eq(mq_topic_count(7), 2);
    ck_assert_uint_eq(mq_subscription_count(7, MQC_FILTERED_OUT), 4);
    ck_assert_uint_eq(mq_subscription_count(7, MQC_MATCHED), 0);
}
END_TEST

/* 100,000 queues made, counted and deleted one after another, as a gateway serving temporary
 * queues sees them: with a scrape now and then, every one is counted and nothing overflows (the
 * table has 4096 slots). */
START_TEST(retired_ids_free_their_slots)
{
    uint64_t overflow0 = mq_counters_overflow();
    int live[1];
    for (int id = 1000; id < 101000; id++) {
        mq_count_queue(id, MQC_SENT, 1);
        ck_assert_uint_eq(mq_queue_count(id, MQC_SENT), 1);
        if (id % 1000 == 999) { /* a scrape: only this id is still there */
            live[0] = id;
            ck_assert_int_ge(mq_counters_retire(MQC_QUEUES, live, 1, clock_mono_us() + 1), 999);
            ck_assert_uint_eq(mq_queue_count(id, MQC_SENT), 1);
            ck_assert_uint_eq(mq_queue_count(id - 1, MQC_SENT), 0);
        }
    }
    ck_assert_uint_eq(mq_counters_overflow(), overflow0);
}
END_TEST

/* An id first counted after the listing began may have been created after it: it stays. */
START_TEST(an_id_claimed_after_the_listing_stays)
{
    int64_t listed_at = clock_mono_us();
    while (clock_mono_us() == listed_at)
        ;
    mq_count_topic(424242, 1);
    int none[1] = {0};
    mq_counters_retire(MQC_TOPICS, none, 0, listed_at);
    ck_assert_uint_eq(mq_topic_count(424242), 1);
    mq_counters_retire(MQC_TOPICS, none, 0, clock_mono_us() + 1);
    ck_assert_uint_eq(mq_topic_count(424242), 0);
    mq_count_topic(424242, 2); /* counted again (an operation that raced its deletion) */
    ck_assert_uint_eq(mq_topic_count(424242), 2);
}
END_TEST

/* Without retirements a full table counts further ids in the overflow total. */
START_TEST(a_full_table_overflows)
{
    uint64_t overflow0 = mq_counters_overflow();
    for (int id = 1; id <= 5000; id++)
        mq_count_subscription(id, MQC_MATCHED, 1);
    ck_assert_uint_ge(mq_counters_overflow() - overflow0, 5000 - 4096);
    int *live = calloc(5000, sizeof *live);
    for (int i = 0; i < 5000; i++)
        live[i] = 5000 - i; /* unsorted: retire sorts */
    ck_assert_int_eq(mq_counters_retire(MQC_SUBSCRIPTIONS, live, 5000, clock_mono_us() + 1), 0);
    ck_assert_int_gt(mq_counters_retire(MQC_SUBSCRIPTIONS, live, 0, clock_mono_us() + 1), 4000);
    free(live);
    overflow0 = mq_counters_overflow();
    mq_count_subscription(6000, MQC_MATCHED, 1);
    ck_assert_uint_eq(mq_subscription_count(6000, MQC_MATCHED), 1);
    ck_assert_uint_eq(mq_counters_overflow(), overflow0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("counters");
    TCase *tc = tcase_create("counters");
    tcase_add_test(tc, counts_are_kept_per_id_and_kind);
    tcase_add_test(tc, retired_ids_free_their_slots);
    tcase_add_test(tc, an_id_claimed_after_the_listing_stays);
    tcase_add_test(tc, a_full_table_overflows);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
