/* The send combiner: one thread per serving process that stores the single sends of concurrent
 * requests together, up to MQ_MAX_ROWS messages in one INSERT (mq_send_rows), instead of one
 * statement and one commit each. A request hands its send over and suspends; the thread takes
 * whatever has gathered while its previous statement ran, so a lone request goes out at once
 * and a busy gateway makes fewer, fuller statements. Each send's outcome is its own: when a
 * combined statement fails for any reason but a lost database, the thread sends its messages
 * one by one so that only the culprit fails. When no connection comes within the pool's acquire
 * timeout, every send waiting fails at once (503), not one batch per timeout. One statement is in
 * flight at a time: at 16 messages per statement that carries tens of thousands of sends a
 * second, more than the HTTP side of one process serves. */
#ifndef RYDES_MQ_COMBINER_H
#define RYDES_MQ_COMBINER_H

#include "rydes/db.h"
#include "rydes/mq.h"

#include <stdbool.h>

struct mq_combiner;

/* One send handed to the combiner; the submitter owns it and everything it points to until
 * done has been called. */
struct mq_combined_send {
    struct mq_queue q;                        /* a standard queue */
    const struct mq_send_entry *e;            /* borrowed */
    struct mq_send_result result;             /* filled before done */
    enum mq_status status;                    /* set before done */
    void (*done)(struct mq_combined_send *s); /* on the combiner's thread, once */
    void *ctx;
    struct mq_combined_send *next; /* the combiner's */
};

/* Starts the thread; it takes connections from pool (waiting up to acquire_timeout_ms).
 * Free with mq_combiner_free. */
struct mq_combiner *mq_combiner_start(struct db_pool *pool, int acquire_timeout_ms);
/* Queues s, or returns false when the combiner is stopping (send it another way then). */
bool mq_combiner_submit(struct mq_combiner *cb, struct mq_combined_send *s);
/* Finishes every send submitted so far (their done runs) and refuses later ones: sends it cannot
 * store within timeout_ms fail with MQ_UNAVAILABLE (a wait for a pooled connection that began
 * before the stop runs to its own timeout first). A process stops its combiner before its HTTP
 * server, so that no request waits on it then. The first call does the work; later calls return
 * at once. */
void mq_combiner_stop(struct mq_combiner *cb, int timeout_ms);
/* Stops (if not yet) and frees. */
void mq_combiner_free(struct mq_combiner *cb);
/* Statements the combiner has run (the combined ones and the one-by-one retries) and the
 * messages they stored (tests, /metrics). */
void mq_combiner_counts(struct mq_combiner *cb, unsigned long long *statements,
                        unsigned long long *messages);

#endif
