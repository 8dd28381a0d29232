/* The long-poll protocol shared by the receives; see include/rydes/mq_poll.h. */
#include "rydes/mq_poll.h"

#include "rydes/clock.h"

#include <stdlib.h>
#include <string.h>

static void on_wake(struct mq_waiter *w, enum mq_wake why)
{
    struct mq_poll *p = w->ctx;
    p->why = why;
    p->resume(p->ctx);
}

void mq_poll_init(struct mq_poll *p, struct mq_hub *hub, struct mq_combiner *combiner,
                  const struct mq_queue *q, int max, int visibility, bool delete_now,
                  int wait_seconds, bool (*client_gone)(void *ctx), void (*resume)(void *ctx),
                  void *ctx)
{
    memset(p, 0, sizeof *p);
    p->hub = hub;
    p->combiner = q->attrs.fifo || delete_now ? NULL : combiner;
    p->q = *q;
    p->max = max;
    p->visibility = visibility;
    p->delete_now = delete_now;
    p->wait_seconds = wait_seconds;
    p->why = MQ_WAKE_MESSAGE;
    p->client_gone = client_gone;
    p->resume = resume;
    p->ctx = ctx;
    p->waiter.queue_id = q->id;
    p->waiter.deadline_us = clock_mono_us() + (int64_t)wait_seconds * 1000000;
    p->waiter.wake = on_wake;
    p->waiter.ctx = p;
}

void mq_poll_follow(struct mq_poll *p, struct ttlcache *queues)
{
    p->queues = queues;
}

/* Takes the queue's attributes as they are cached now, or has the claim read them when nothing
 * is cached (mq_poll_follow). Not for the last look at the deadline: the hub times every waiter
 * of a quiet queue out at once, and hundreds of reads on pooled connections would crowd out
 * other requests; that look claims by the copy, through the combiner. */
static void refresh_queue(struct mq_poll *p)
{
    struct mq_queue q;
    if (!p->queues)
        return;
    bool cached = ttlcache_get(p->queues, p->q.name, strlen(p->q.name), &q, &p->reread_gen);
    p->reread = !cached && p->why == MQ_WAKE_MESSAGE;
    if (!cached)
        return;
    if (q.id == p->q.id)
        p->q = q;
}

/* Reads the queue's attributes anew on c (woken with nothing cached) and caches them, as a
 * lookup would; the same queue only. A failed read keeps the copy. */
static void reread_queue(struct mq_poll *p, struct db_conn *c)
{
    struct mq_queue q;
    p->reread = false;
    if (mq_queue_get(c, p->q.name, &q) != MQ_OK || q.id != p->q.id)
        return;
    ttlcache_put(p->queues, p->q.name, strlen(p->q.name), &q, p->reread_gen);
    p->q = q;
}

enum mq_poll_begin mq_poll_begin(struct mq_poll *p)
{
    if (p->refused == MQ_WAIT_FULL)
        return MQ_POLL_FULL;
    /* stopping: the answer is what the last claim found, nothing; hundreds of waiters claiming
     * once more at once would overrun the threads' queues as the server stops */
    if (p->why == MQ_WAKE_SHUTDOWN)
        return MQ_POLL_EMPTY;
    if (p->woken && p->client_gone(p->ctx)) {
        mq_hub_poke(p->hub, p->q.id); /* pass the wake-up on to a waiter that is still there */
        return MQ_POLL_EMPTY;
    }
    if (p->woken)
        refresh_queue(p);
    p->woken = true; /* every later attempt follows a wake-up */
    return MQ_POLL_GO;
}

void mq_poll_free(void *state)
{
    struct mq_poll *p = state;
    if (p && p->claim.msgs)
        mq_messages_free(p->claim.msgs, p->claim.count);
    if (p && p->own.msgs)
        mq_messages_free(p->own.msgs, p->own.count);
    free(p);
}

static void claiming(struct mq_poll *p)
{
    /* read before the claim: a message that arrives after it wakes the wait at once */
    p->waiter_seq = mq_hub_seq(p->hub, p->q.id);
}

static void claimed(struct mq_poll *p, int count)
{
    if (count == p->max)
        mq_hub_poke(p->hub, p->q.id); /* there may be more: let the next waiter look */
}

bool mq_poll_combines(const struct mq_poll *p)
{
    return p->combiner != NULL && !p->reread; /* the combiner's lanes read no queue */
}

static void claim_done(struct mq_combined *o)
{
    struct mq_poll *p = o->ctx;
    p->resume(p->ctx);
}

bool mq_poll_hand_over(struct mq_poll *p)
{
    p->claim = (struct mq_combined_receive){.o = {.status = MQ_ERROR, .done = claim_done, .ctx = p},
                                            .q = p->q,
                                            .max = p->max,
                                            .visibility = p->visibility};
    claiming(p);
    p->handed = mq_combiner_receive(p->combiner, &p->claim);
    return p->handed;
}

bool mq_poll_taken(struct mq_poll *p, enum mq_status *st, struct mq_message **msgs, int *count)
{
    if (!p->handed)
        return false;
    p->handed = false;
    *st = p->claim.o.status;
    *msgs = p->claim.msgs;
    *count = p->claim.count;
    p->claim.msgs = NULL; /* the caller's now */
    p->claim.count = 0;
    if (*st == MQ_OK)
        claimed(p, *count);
    if (*st == MQ_OK && p->claim.more) {
        /* the claim came back short: left empty, this receive's next wait ends at once and it
         * looks again (a sequence the hub has passed and never returns to counts as a missed
         * notification); with some messages it answers, so another waiter is told to look */
        if (*count == 0)
            p->waiter_seq = mq_hub_seq(p->hub, p->q.id) - 1;
        else
            mq_hub_poke(p->hub, p->q.id);
    }
    return true;
}

void mq_poll_receive_pooled(struct mq_poll *p, struct db_pool *pool, int timeout_ms)
{
    struct db_conn *c = db_pool_acquire(pool, timeout_ms, &p->own_why);
    p->own_no_conn = !c;
    if (!c)
        return;
    if (p->reread)
        reread_queue(p, c);
    claiming(p);
    p->own.o.status =
        mq_receive(c, &p->q, p->max, p->visibility, p->delete_now, &p->own.msgs, &p->own.count);
    db_pool_release(pool, c);
    if (p->own.o.status == MQ_OK)
        claimed(p, p->own.count);
}

bool mq_poll_received(struct mq_poll *p, enum db_acquire_error *why, enum mq_status *st,
                      struct mq_message **msgs, int *count)
{
    *why = p->own_why;
    *st = p->own.o.status;
    *msgs = p->own.msgs;
    *count = p->own.count;
    p->own.msgs = NULL; /* the caller's now */
    p->own.count = 0;
    return !p->own_no_conn;
}

bool mq_poll_may_wait(const struct mq_poll *p)
{
    return p->wait_seconds > 0 && p->why == MQ_WAKE_MESSAGE && p->refused == MQ_WAIT_OK &&
           clock_mono_us() < p->waiter.deadline_us;
}

void mq_poll_wait(struct mq_poll *p)
{
    p->refused = mq_hub_wait(p->hub, &p->waiter, p->waiter_seq);
    if (p->refused != MQ_WAIT_OK) {
        p->why = p->refused == MQ_WAIT_STOPPING ? MQ_WAKE_SHUTDOWN : MQ_WAKE_MESSAGE;
        p->resume(p->ctx);
    }
}
