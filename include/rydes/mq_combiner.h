/* The combiner: per serving process, one thread for each kind of hot single operation (send,
 * receive, delete by receipt, publish) that runs the operations of concurrent requests together, in
 * one statement and one commit, instead of one each. A request hands its operation over and
 * suspends; the thread takes whatever has gathered while its previous statement ran, so a lone
 * request goes out at once and a busy gateway makes fewer, fuller statements.
 *
 * - Sends: up to MQ_MAX_ROWS messages of any standard queues in one INSERT (mq_send_rows).
 * - Receives: the receives of one standard queue with the same visibility timeout, up to
 *   MQ_MAX_ROWS messages in all, as one claim (mq_receive); the claimed messages are dealt out
 *   in id order, each receive taking up to its own max. A receive that got nothing may then
 *   long-poll on its own.
 * - Deletes: up to MQ_MAX_ROWS receipts of any standard queues in one DELETE (mq_delete_rows).
 * - Publishes: up to MQ_MAX_ROWS lean publishes to standard topics in one statement
 *   (mq_publish_plans).
 * - One kind an upper layer defines (struct mq_combiner_kind): the rides' store and publish.
 *
 * Each operation's outcome is its own: when a combined statement fails for any reason but a lost
 * database, the thread runs its operations one by one so that only the culprit fails. When no
 * connection comes within the pool's acquire timeout, every operation of that kind waiting
 * fails at once (MQ_UNAVAILABLE), not one batch per timeout. One statement per kind is in flight
 * at a time: at MQ_MAX_ROWS to a statement that carries tens of thousands of operations a second,
 * more than the HTTP side of one process serves. */
#ifndef RYDES_MQ_COMBINER_H
#define RYDES_MQ_COMBINER_H

#include "rydes/db.h"
#include "rydes/mq.h"

#include <stdbool.h>
#include <stdint.h>

struct mq_combiner;
struct mq_publish_plan;

enum mq_combined_kind {
    MQ_COMBINED_SEND,
    MQ_COMBINED_RECEIVE,
    MQ_COMBINED_DELETE,
    MQ_COMBINED_PUBLISH,
    MQ_COMBINED_UPPER /* the upper layer's kind, if any */
};
#define MQ_COMBINED_KINDS 5

/* What every combined operation has; the first member of each kind below. The submitter owns
 * the operation and everything it points to until done has been called. */
struct mq_combined {
    enum mq_status status;               /* set before done */
    void (*done)(struct mq_combined *o); /* on the combiner's thread, once; o may go after it */
    void *ctx;
    struct mq_combined *next; /* the combiner's */
};

/* A single send to a standard queue. */
struct mq_combined_send {
    struct mq_combined o;
    struct mq_queue q;
    const struct mq_send_entry *e; /* borrowed */
    struct mq_send_result result;  /* filled before done */
};

/* A receive (lease, not delete_now) from a standard queue. */
struct mq_combined_receive {
    struct mq_combined o;
    struct mq_queue q;
    int max, visibility;
    struct mq_message *msgs; /* set before done when status is MQ_OK; the submitter frees them
                              * with mq_messages_free(msgs, count) */
    int count;
    bool more; /* got none while the claim came back short: messages may be left to look at */
};

/* A delete by receipt from a standard queue; status as mq_delete gives it. */
struct mq_combined_delete {
    struct mq_combined o;
    struct mq_queue q;
    const char *receipt; /* borrowed */
};

/* A publish to a standard topic whose plan is lean (rydes/topics.h: mq_publish_plans). */
struct mq_combined_publish {
    struct mq_combined o;
    const struct mq_publish_plan *plan; /* borrowed */
    int deliveries;                     /* set before done when status is MQ_OK */
};

/* What makes a kind: how much of a statement's MQ_MAX_ROWS an operation takes, which operations
 * may share a statement (the same key), and the statement. run gets list[0..n) and returns
 * MQ_OK when it ran, each operation's status set (*operations: what it carried out); otherwise
 * the statement failed as a whole, and the combiner runs the operations one by one (n = 1) to
 * find the culprit, unless the connection was lost. */
struct mq_combiner_kind {
    int (*weight)(const struct mq_combined *o);
    uint64_t (*key)(const struct mq_combined *o);
    enum mq_status (*run)(struct db_conn *c, struct mq_combined **list, int n,
                          unsigned long long *operations);
    /* How many statements' worth of one key may wait, 0: no bound. Receives are bounded
     * (MQ_COMBINER_QUEUED): claims of 10 go one per statement, one after another. Kinds of
     * weight 1 are not: 16 share each statement, and the more wait the more combining pays. */
    int queued;
};

/* Starts the threads; they take connections from pool (waiting up to acquire_timeout_ms). An
 * operation is handed over only when it will not wait long: the lane of its kind is idle, or
 * its statement in flight began less than stall_ms ago, the operation can join a statement of
 * its key in flight or waiting (a receive of another queue or visibility does not wait for a
 * claim it cannot share), and, for a kind that bounds it, no more than its queued statements'
 * worth of its key wait, itself included. upper, if not NULL, is the kind of mq_combiner_upper (it
 * must outlive the combiner). Free with mq_combiner_free. */
#define MQ_COMBINER_STALL_MS 50
#define MQ_COMBINER_QUEUED   4
struct mq_combiner *mq_combiner_start(struct db_pool *pool, int acquire_timeout_ms, int stall_ms,
                                      const struct mq_combiner_kind *upper);
/* Hand an operation over, or get false: run it yourself then (the combiner is stopping, or the
 * operation would wait too long, see mq_combiner_start). */
bool mq_combiner_send(struct mq_combiner *cb, struct mq_combined_send *s);
bool mq_combiner_receive(struct mq_combiner *cb, struct mq_combined_receive *r);
bool mq_combiner_delete(struct mq_combiner *cb, struct mq_combined_delete *d);
bool mq_combiner_publish(struct mq_combiner *cb, struct mq_combined_publish *p);
/* An operation of the upper layer's kind (false also when the combiner was started without). */
bool mq_combiner_upper(struct mq_combiner *cb, struct mq_combined *o);
/* Whether the caller should run its operation of kind itself, at once: true when nothing of
 * that kind is in flight or waiting (a lone request gains nothing from a hand-over and pays two
 * thread switches for it). Its statement then counts as the lane's statement in flight: the
 * operations that come meanwhile gather behind it, as behind the lane's own, and go out when
 * the caller calls mq_combiner_alone_end. For kinds whose operations all share one key (sends,
 * deletes, the upper kind); false also without a lane of that kind. */
bool mq_combiner_alone(struct mq_combiner *cb, enum mq_combined_kind kind);
/* A hint, to take before what mq_combiner_alone should not wait for: is nothing of kind in
 * flight or waiting right now? */
bool mq_combiner_idle(struct mq_combiner *cb, enum mq_combined_kind kind);
void mq_combiner_alone_end(struct mq_combiner *cb, enum mq_combined_kind kind);
/* Finishes every operation submitted so far (their done runs) and refuses later ones: those it
 * cannot run within timeout_ms fail with MQ_UNAVAILABLE (a wait for a pooled connection that
 * began before the stop runs to its own timeout first). A process stops its combiner before its
 * HTTP server, so that no request waits on it then. The first call does the work; later calls
 * return at once. */
void mq_combiner_stop(struct mq_combiner *cb, int timeout_ms);
/* Stops (if not yet) and frees. */
void mq_combiner_free(struct mq_combiner *cb);
/* Statements the combiner has run for one kind (the combined ones and the one-by-one retries)
 * and the operations they carried out (tests, /metrics; a receive counts the messages it got). */
void mq_combiner_counts(struct mq_combiner *cb, enum mq_combined_kind kind,
                        unsigned long long *statements, unsigned long long *operations);

#endif
