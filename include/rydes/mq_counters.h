/* Per-queue, per-topic and per-subscription operation counters of this process, for /metrics:
 * fixed tables keyed by database id, counted lock-free. A slot is claimed on an id's first
 * count and given up once a scrape finds the id gone from the database (mq_counters_retire:
 * queues, topics and subscriptions come and go; their ids are never reused); when a table is
 * full nonetheless, further ids are counted in its overflow total (rendered, so an operator sees
 * that it happened). Counts are taken when a statement succeeded; a transaction rolled back
 * afterwards (a failed consumer handler) still counts. */
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

enum mq_counter_table { MQC_QUEUES, MQC_TOPICS, MQC_SUBSCRIPTIONS, MQC_TABLES_N };

/* Frees the slots of ids that are gone: those not among live (n ids, sorted here in place), the
 * ids the database listed in a read that started at listed_at_us (clock_mono_us), unless the
 * slot was claimed after that (its id may have been created since). An id counted after it was
 * retired, by an operation that raced its deletion, starts again from 0; such an operation's
 * count may also land in the id that takes the slot next (lookups are lock-free): only
 * operations racing their own queue's or topic's deletion can do that. Returns how many were
 * freed. */
int mq_counters_retire(enum mq_counter_table which, int *live, int n, int64_t listed_at_us);

#endif
