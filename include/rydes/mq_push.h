/* The push worker: a background thread per process that POSTs topic messages to URL
 * subscriptions. Deliveries are rows of push_deliveries (written by a publish, so they survive
 * restarts); the worker claims due ones with SKIP LOCKED under a lease into its free slots
 * (up to 16 POSTs in flight on a libcurl multi handle), and records each outcome as soon as its
 * attempt ends: a 2xx deletes the row, anything else
 * schedules a retry with exponential backoff and jitter, and the last allowed attempt moves the
 * message to the subscription's dead-letter queue (or marks the row failed). Redirects are not
 * followed; only http and https are spoken. Several processes share the work. */
#ifndef RYDES_MQ_PUSH_H
#define RYDES_MQ_PUSH_H

#include <stdatomic.h>
#include <stdint.h>

/* Outcomes of delivery attempts since start, for /metrics. */
struct mq_push_counters {
    _Atomic uint64_t delivered;     /* answered 2xx (also when the row could not be deleted) */
    _Atomic uint64_t retried;       /* failed, another attempt scheduled */
    _Atomic uint64_t dead_lettered; /* out of attempts, moved to the dead-letter queue */
    _Atomic uint64_t failed;        /* out of attempts, no dead-letter queue: kept as failed */
    _Atomic uint64_t queued; /* its subscription became a queue's: put into that queue (sql/055) */
};

struct mq_push;

/* Starts the worker on a connection of its own. Stop and free with mq_push_stop. */
struct mq_push *mq_push_start(const char *conninfo, int connect_timeout_s);
/* Stops the worker: attempts in progress are abandoned and their deliveries made due again.
 * NULL is fine. */
void mq_push_stop(struct mq_push *p);
/* Asks the worker to stop without waiting (mq_push_stop then waits). NULL is fine. */
void mq_push_request_stop(struct mq_push *p);
/* The worker's counters (valid until mq_push_stop). */
const struct mq_push_counters *mq_push_counters(const struct mq_push *p);
/* Tells the worker that deliveries were just written (it polls otherwise). */
void mq_push_kick(struct mq_push *p);

#endif
