/* Per-queue, per-topic and per-subscription operation counters of this process, for /metrics:
 * fixed lock-free tables keyed by database id. A slot is claimed by a compare-and-swap on its
 * key and never released; when a table is full, further ids are counted in its overflow total
 * (rendered, so an operator sees that it happened). Counts are taken when a statement succeeded;
 * a transaction rolled back afterwards (a failed consumer handler) still counts. */
#ifndef RYDES_MQ_COUNTERS_H
#define RYDES_MQ_COUNTERS_H

#include <stdint.h>

enum mq_queue_counter {
    MQC_SENT,          /* messages put into the queue (sends, publishes, redrives into it) */
    MQC_RECEIVED,      /* messages handed to receivers */
    MQC_DELETED,       /* messages acknowledged (deleted by receipt) */
    MQC_REDELIVERED,   /* of the received, those delivered before (receive_count > 1) */
    MQC_DEAD_LETTERED, /* moved to the dead-letter queue by a receive (standard queues) */
    MQC_QUEUE_N
};

enum mq_subscription_counter {
    MQC_MATCHED,      /* publishes the subscription took (its filter passed, or none) */
    MQC_FILTERED_OUT, /* publishes its filter policy turned away */
    MQC_SUBSCRIPTION_N
};

void mq_count_queue(int queue_id, enum mq_queue_counter which, uint64_t n);
void mq_count_subscription(int subscription_id, enum mq_subscription_counter which, uint64_t n);
void mq_count_topic(int topic_id, uint64_t publishes);

/* The current values (0 for an id never counted). */
uint64_t mq_queue_count(int queue_id, enum mq_queue_counter which);
uint64_t mq_subscription_count(int subscription_id, enum mq_subscription_counter which);
uint64_t mq_topic_count(int topic_id);
/* Counts that found their table full (0 normally). */
uint64_t mq_counters_overflow(void);

#endif
