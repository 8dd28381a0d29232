/* The fan-out thread: delivers the publish outbox (sql/013_publish_outbox.sql) into the
 * subscribed queues, many events per statement. Every process runs one; the process that
 * published wakes its own at once (mq_fanout_kick), and each looks every FANOUT_POLL_MS for
 * events of other or crashed processes. Several processes deliver side by side without
 * delivering an event twice (SKIP LOCKED). */
#ifndef RYDES_MQ_FANOUT_H
#define RYDES_MQ_FANOUT_H

#define FANOUT_POLL_MS 100

struct mq_fanout;

/* Starts the thread on a connection of its own. Stop and free with mq_fanout_stop. */
struct mq_fanout *mq_fanout_start(const char *conninfo, int connect_timeout_s);
/* Asks the thread to stop without waiting (mq_fanout_stop then waits). NULL is fine. */
void mq_fanout_request_stop(struct mq_fanout *f);
void mq_fanout_stop(struct mq_fanout *f);
/* Wakes every fan-out thread of this process: an outbox row has just committed. */
void mq_fanout_kick(void);
/* Events and deliveries this thread has made (tests, /metrics). */
void mq_fanout_counts(struct mq_fanout *f, unsigned long long *events,
                      unsigned long long *deliveries);

#endif
