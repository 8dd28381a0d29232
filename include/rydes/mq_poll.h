/* A receive that may wait: the long-poll protocol with the hub (rydes/mq_hub.h) that the REST
 * receive and SQS ReceiveMessage share. The caller owns the request and its replies; the poll
 * decides what comes next:
 *
 *   switch (mq_poll_begin(p)) { FULL: 503; EMPTY: answer empty; GO: go on }
 *   when mq_poll_combines(p): suspend the request (resuming into "taken"), then
 *     mq_poll_hand_over(p), and resume it yourself when that returns false;
 *     taken: mq_poll_taken(p, ...) gives the claim's outcome, or false: claim yourself as below
 *   otherwise: mq_poll_receive_pooled(p, ...) (on a thread apart: it waits on the database),
 *     then mq_poll_received(p, ...) gives its outcome
 *   messages, or no more waiting (mq_poll_may_wait false): answer them
 *   otherwise: suspend the request (resuming into the next attempt), then mq_poll_wait(p)
 *
 * p->resume resumes the suspended request; the hub calls it when a message may have arrived,
 * at the deadline, or at shutdown, mq_poll_wait calls it at once when the hub refuses, and the
 * combiner when it has claimed. */
#ifndef RYDES_MQ_POLL_H
#define RYDES_MQ_POLL_H

#include "rydes/mq.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_hub.h"
#include "rydes/ttlcache.h"

#include <stdbool.h>
#include <stdint.h>

struct mq_poll {
    struct mq_waiter waiter; /* registered with the hub while the request waits */
    struct mq_hub *hub;
    struct mq_queue q;
    struct ttlcache *queues; /* where later attempts take q's attributes from (mq_poll_follow) */
    int max, visibility, wait_seconds;
    bool delete_now;
    enum mq_wake why;
    enum mq_wait_result refused; /* MQ_WAIT_OK unless the hub turned the wait away */
    bool woken;                  /* the next attempt follows a wake-up */
    bool reread;         /* woken with the queue not cached: the claim reads it first, apart */
    uint64_t reread_gen; /* the cache's generation when it missed (ttlcache_put) */
    uint64_t waiter_seq; /* the hub's sequence read before the last claim */
    struct mq_combiner *combiner;     /* claims go through it; NULL: on the caller's connection */
    struct mq_combined_receive claim; /* the attempt's claim, while the combiner has it */
    bool handed;                      /* the combiner took the attempt's claim */
    struct mq_combined_receive own;   /* the attempt's own claim (mq_poll_receive_pooled) */
    bool own_no_conn;                 /* which got no pooled connection, for own_why */
    enum db_acquire_error own_why;
    bool (*client_gone)(void *ctx);
    void (*resume)(void *ctx);
    void *ctx;
};

enum mq_poll_begin { MQ_POLL_GO, MQ_POLL_FULL, MQ_POLL_EMPTY };

/* Sets p up for a receive of q (copied) that may wait wait_seconds from now. Its claims go
 * through combiner (may be NULL) when q is a standard queue and delete_now is false. Free with
 * mq_poll_free. */
void mq_poll_init(struct mq_poll *p, struct mq_hub *hub, struct mq_combiner *combiner,
                  const struct mq_queue *q, int max, int visibility, bool delete_now,
                  int wait_seconds, bool (*client_gone)(void *ctx), void (*resume)(void *ctx),
                  void *ctx);
/* Attempts after the first take the queue's attributes from queues (name -> struct mq_queue),
 * or, when it does not hold them, read them anew on the attempt's own connection (such an
 * attempt claims apart, not through the combiner) and cache them, so that a long poll claims by
 * a max_receive_count or dead-letter queue changed while it waited, as every receive after the
 * change does, not by the copy it began with (a message would be dead-lettered early). The same
 * queue only (a queue deleted and made again meanwhile is another). */
void mq_poll_follow(struct mq_poll *p, struct ttlcache *queues);
/* Frees p (allocated by the caller with malloc) and a claim it still holds; a state_free. */
void mq_poll_free(void *p);
/* Before each attempt: MQ_POLL_FULL when the hub had no room for the wait (answer 503),
 * MQ_POLL_EMPTY when the client left during the wait (its wake-up is passed on) or the server is
 * stopping (answer empty). */
enum mq_poll_begin mq_poll_begin(struct mq_poll *p);
/* The receive of one attempt on a connection taken from pool (waiting up to timeout_ms), as
 * mq_receive; lets the next waiter look when it took max. Its outcome stays in p for
 * mq_poll_received. */
void mq_poll_receive_pooled(struct mq_poll *p, struct db_pool *pool, int timeout_ms);
/* After mq_poll_receive_pooled: false with *why when it got no connection; else its outcome,
 * as mq_receive gives it (the messages are the caller's now). */
bool mq_poll_received(struct mq_poll *p, enum db_acquire_error *why, enum mq_status *st,
                      struct mq_message **msgs, int *count);
/* Does this attempt's claim go to the combiner? */
bool mq_poll_combines(const struct mq_poll *p);
/* Hands the claim to the combiner; call with the request suspended. False when the combiner
 * did not take it (stopping, or busy with a claim this one cannot share): claim yourself. */
bool mq_poll_hand_over(struct mq_poll *p);
/* After the resume that follows mq_poll_hand_over: false when the combiner did not take the
 * claim; else the claim's outcome, as mq_poll_received gives it. */
bool mq_poll_taken(struct mq_poll *p, enum mq_status *st, struct mq_message **msgs, int *count);
/* May a request that found nothing wait longer? */
bool mq_poll_may_wait(const struct mq_poll *p);
/* Registers the wait; call after suspending the request. */
void mq_poll_wait(struct mq_poll *p);

#endif
