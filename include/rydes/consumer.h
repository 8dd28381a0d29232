/* The consumer loop every built-in service runs: long-poll receive of a batch from its queue,
 * the service's handler per message, and the ack (delete by receipt) in the SAME transaction as
 * the handler's own writes, so a message's effect is committed exactly once however often it
 * is delivered. A handler that fails (or a statement that fails) rolls back both; the message
 * becomes visible again after a backoff that grows with its receive count, and after the
 * queue's max_receive_count it lands in the dead-letter queue. When the database is away the
 * loop backs off (100 ms doubling to 5 s). Each consumer is one thread; it waits for messages
 * on the process's long-poll hub, holding no connection. Consumers talk to the engine
 * (rydes/mq.h) directly, never over HTTP. */
#ifndef RYDES_CONSUMER_H
#define RYDES_CONSUMER_H

#include "rydes/config.h"
#include "rydes/db.h"
#include "rydes/mq.h"
#include "rydes/mq_hub.h"
#include "rydes/topic_cache.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct consumer_env;

enum consumer_result {
    CONSUMER_DONE,  /* commit the handler's work with the ack */
    CONSUMER_RETRY, /* roll back; the message comes again later */
    CONSUMER_DEFER, /* roll back; not now (the handler has no room): the message and the rest of
                     * its batch go back as if not received (their receive counts kept, so no
                     * dead-letter queue), and the consumer pauses a second before it receives
                     * again */
};

/* Each message is handled in a transaction that first holds it (mq_hold): on a FIFO queue that
 * also holds its group's row, so sends to that group wait for the handler, and a handler that
 * sends to its own FIFO queue's groups could deadlock with a batch send; the built-in services
 * consume standard queues only. In a FIFO queue, a batch's messages after a failed one of its
 * group are released unhandled, to come again behind it. */
struct consumer_def {
    const char *name;  /* the RYDES_WORKERS name */
    const char *queue; /* the queue it consumes */
    int batch;         /* messages per receive, 1..10 */
    int visibility;    /* seconds a received message stays leased */
    /* Handles m inside the transaction that will ack it. On CONSUMER_RETRY why says what went
     * wrong (logged). Must be idempotent: a message may come again after a crash. */
    enum consumer_result (*handle)(const struct consumer_env *env, struct db_conn *c,
                                   const struct mq_message *m, char *why, size_t why_len);
    /* Optional: runs before that transaction, committed on its own (e.g. marking a task as
     * being processed, for pollers to see). */
    void (*claimed)(const struct consumer_env *env, struct db_conn *c, const struct mq_message *m);
    /* Optional: called (autocommit) when m failed on the last receive its queue allows, before
     * it goes to the dead-letter queue: a service's chance to record the failure where users
     * look (a task that would otherwise stay "processing" for ever). */
    void (*given_up)(const struct consumer_env *env, struct db_conn *c, const struct mq_message *m,
                     const char *why);
    /* Optional: how many consumers of this definition a process runs (NULL: one). */
    int (*threads)(const struct config *cfg);
};

/* What consumers share in a process. Borrowed; must outlive every consumer. */
struct consumer_env {
    struct db_pool *pool;
    struct mq_hub *hub;
    struct topic_cache *topics; /* for services that publish */
    const struct config *cfg;
    int acquire_timeout_ms;
    void *ctx; /* the service's own context for this consumer (e.g. which unicorn it is) */
};

struct consumer_counters {
    _Atomic uint64_t handled; /* committed with their ack */
    _Atomic uint64_t failed;  /* rolled back, to be redelivered */
    _Atomic uint64_t lost;    /* not handled: received again or gone before it was held */
};

struct consumer;

/* Starts def's thread. Stop with consumer_stop after the hub was shut down (mq_hub_shutdown),
 * so a consumer waiting for messages wakes at once. */
struct consumer *consumer_start(const struct consumer_def *def, const struct consumer_env *env);
/* Asks k to stop after its current step (worker_request_stop); consumer_stop still follows. */
void consumer_request_stop(struct consumer *k);
void consumer_stop(struct consumer *k);
const struct consumer_counters *consumer_counters(const struct consumer *k);
const struct consumer_def *consumer_def_of(const struct consumer *k);

/* Test hook: when set, called before each handler; true makes that message fail as if the
 * handler had returned CONSUMER_RETRY. */
extern bool (*consumer_fault_hook)(const char *worker, const struct mq_message *m);

#endif
