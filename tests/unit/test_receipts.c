/* Unit tests of receipts (src/mq/messages.c): what mq_receipt_encode writes decodes to the same
 * queue, message and nonce at the edges of their ranges, and anything else is refused: a wrong
 * length, a character that is not lower-case hex at any place, a queue beyond 31 bits, a
 * message or nonce beyond 63. */
#include "rydes/mq.h"

#include "unit.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

START_TEST(receipts_decode_to_what_was_encoded)
{
    const int queues[] = {0, 1, 255, 65536, INT32_MAX};
    const long long ids[] = {0, 1, 4096, 1LL << 40, LLONG_MAX};
    const unsigned long long nonces[] = {0, 1, 0xabcdefULL, (unsigned long long)LLONG_MAX};
    for (size_t q = 0; q < sizeof queues / sizeof queues[0]; q++)
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
            for (size_t k = 0; k < sizeof nonces / sizeof nonces[0]; k++) {
                char r[MQ_RECEIPT_LEN];
                mq_receipt_encode(queues[q], ids[i], nonces[k], r);
                ck_assert_uint_eq(strlen(r), MQ_RECEIPT_LEN - 1);
                int queue_id;
                long long id;
                unsigned long long nonce;
                ck_assert(mq_receipt_decode(r, &queue_id, &id, &nonce));
                ck_assert_int_eq(queue_id, queues[q]);
                ck_assert_int_eq(id, ids[i]);
                ck_assert_uint_eq(nonce, nonces[k]);
            }
}
END_TEST

static bool decodes(const char *r)
{
    int queue_id;
    long long id;
    unsigned long long nonce;
    return mq_receipt_decode(r, &queue_id, &id, &nonce);
}

START_TEST(anything_else_is_refused)
{
    char good[MQ_RECEIPT_LEN];
    mq_receipt_encode(7, 12345, 678, good);
    ck_assert(decodes(good));
    for (int at = 0; at < MQ_RECEIPT_LEN - 1; at++) {
        const char bad[] = {'A', 'F', 'g', 'z', ' ', '-', 'x'};
        for (size_t b = 0; b < sizeof bad; b++) {
            char r[MQ_RECEIPT_LEN];
            memcpy(r, good, sizeof r);
            r[at] = bad[b];
            ck_assert_msg(!decodes(r), "%s decoded", r);
        }
    }
    char shorter[MQ_RECEIPT_LEN];
    memcpy(shorter, good, sizeof shorter);
    shorter[MQ_RECEIPT_LEN - 2] = '\0';
    ck_assert(!decodes(shorter));
    char longer[MQ_RECEIPT_LEN + 1];
    memcpy(longer, good, MQ_RECEIPT_LEN - 1);
    memcpy(longer + MQ_RECEIPT_LEN - 1, "0", 2);
    ck_assert(!decodes(longer));
    ck_assert(!decodes(""));
    /* each field one past its range: a queue of 32 bits, a message or nonce of 64 */
    ck_assert(!decodes("80000000"
                       "0000000000000001"
                       "0000000000000001"));
    ck_assert(!decodes("00000001"
                       "8000000000000000"
                       "0000000000000001"));
    ck_assert(!decodes("00000001"
                       "0000000000000001"
                       "8000000000000000"));
    ck_assert(decodes("7fffffff"
                      "7fffffffffffffff"
                      "7fffffffffffffff"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("receipts");
    TCase *tc = tcase_create("receipts");
    tcase_add_test(tc, receipts_decode_to_what_was_encoded);
    tcase_add_test(tc, anything_else_is_refused);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
