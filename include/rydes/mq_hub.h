/* The wake-up hub of long polls: one LISTEN connection per process on channel rydes_mq (every
 * send NOTIFYs it with the queue id), fanned out to the waiters of this process in memory.
 *
 * A waiter is a receive that found nothing and may wait. It registers with a deadline; the hub
 * wakes it exactly once: when a notification for its queue arrives (one waiter per notification;
 * a woken receiver that filled its batch pokes the hub to wake the next one), when the hub's
 * once-a-second check finds a message of its queue visible (delayed messages and expired leases
 * send no notification), at its deadline, or at shutdown. Waiters hold no database connection
 * and no thread; the hub's own connection is the only one, whatever the number of waiters. */
#ifndef RYDES_MQ_HUB_H
#define RYDES_MQ_HUB_H

#include <stdbool.h>
#include <stdint.h>

enum mq_wake { MQ_WAKE_MESSAGE, MQ_WAKE_TIMEOUT, MQ_WAKE_SHUTDOWN };

struct mq_waiter {
    int queue_id;
    int64_t deadline_us; /* monotonic */
    /* Called once, from the hub's thread or from mq_hub_wait's caller, without hub locks held;
     * after the call the hub no longer refers to the waiter. */
    void (*wake)(struct mq_waiter *w, enum mq_wake why);
    void *ctx;
    /* owned by the hub while registered: the waiters of its queue, oldest first, and its place
     * in the hub's deadline order */
    struct mq_waiter *prev, *next;
    int heap_at;
};

struct mq_hub;

enum mq_wait_result { MQ_WAIT_OK, MQ_WAIT_FULL, MQ_WAIT_STOPPING };

/* Starts the hub thread (it connects, and reconnects, on its own). Stop it with
 * mq_hub_shutdown, then free it with mq_hub_free once nothing can call it any more.
 * The hub also listens on rydes_topics (sql/004): on_topics(ctx, topic_id), if not NULL, is
 * called from the hub's thread for every topic that changed, and with topic_id 0 ("any topic
 * may have changed") whenever the hub (re)connects. */
struct mq_hub *mq_hub_start(const char *conninfo, int connect_timeout_s, int max_waiters,
                            void (*on_topics)(void *ctx, int topic_id), void *ctx);
/* Is the LISTEN connection up (so topic changes are announced as they happen)? */
bool mq_hub_listening(struct mq_hub *h);
/* Wakes every waiter with MQ_WAKE_SHUTDOWN and asks the thread to stop, without waiting for it;
 * later waits are refused. */
void mq_hub_request_stop(struct mq_hub *h);
/* mq_hub_request_stop, then waits for the thread (it may be in a statement for seconds). */
void mq_hub_shutdown(struct mq_hub *h);
void mq_hub_free(struct mq_hub *h);
/* A counter that changes whenever a notification for queue_id arrives; read it before a receive
 * and pass it to mq_hub_wait so a message that arrived in between is not slept through. */
uint64_t mq_hub_seq(struct mq_hub *h, int queue_id);
/* Registers w; anything but MQ_WAIT_OK means w was not registered. If a notification arrived
 * since seq was read, w is woken at once (from this call). */
enum mq_wait_result mq_hub_wait(struct mq_hub *h, struct mq_waiter *w, uint64_t seq);
/* Wakes one more waiter of queue_id (a receiver that filled its batch: there may be more). */
void mq_hub_poke(struct mq_hub *h, int queue_id);
/* Does some process (this one or another) have long polls waiting on queue_id? Senders NOTIFY
 * only then. Read from queue_listeners every 200 ms; when that has not worked for a second,
 * every queue counts as listened to. A process that starts waiting on a queue looks for
 * messages sent meanwhile without a notification once every sender knows. */
bool mq_hub_listened(struct mq_hub *h, int queue_id);
/* mq_hub_listened with the hub as a void pointer: the listened callback of mq_publish. */
bool mq_hub_listened_cb(void *hub, int queue_id);
/* Registered waiters right now (for /metrics). */
int mq_hub_waiters(struct mq_hub *h);

#endif
