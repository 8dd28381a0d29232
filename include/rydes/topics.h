/* Topics: publish-subscribe channels over the queue engine. A topic has subscriptions, each
 * delivering into one queue, optionally behind an SNS filter policy (rydes/filter.h) and as the
 * raw body or an SNS-style envelope. A publish stores the body once (table payloads) and puts
 * one message into every matching queue, atomically (one statement). */
#ifndef RYDES_TOPICS_H
#define RYDES_TOPICS_H

#include "rydes/filter.h"
#include "rydes/mq.h"

#define MQ_TOPIC_NAME_MAX 256
#define MQ_MAX_RECIPIENTS 100 /* queues of one recipient-list message */

struct mq_topic {
    int id;
    char name[MQ_TOPIC_NAME_MAX + 1];
    bool fifo;
    bool content_based_dedup;
    char created_at[CLOCK_RFC3339_LEN];
};

struct mq_subscription {
    char name[MQ_NAME_MAX + 1];
    char queue[MQ_NAME_MAX + 1];
    int queue_id;
    bool queue_fifo;
    json_t *filter_policy; /* owned reference, or NULL */
    enum filter_scope scope;
    bool raw;
    char created_at[CLOCK_RFC3339_LEN];
    struct filter_policy *compiled; /* owned; NULL when there is no policy */
};

struct mq_subscription_input {
    const char *queue;
    json_t *filter_policy; /* borrowed, or NULL */
    enum filter_scope scope;
    bool raw;
};

struct mq_publish {
    const char *body; /* borrowed */
    size_t body_len;
    bool body_json;
    json_t *attributes;  /* borrowed, or NULL */
    const char *subject; /* borrowed, or NULL */
};

/* Is name a valid topic name: [A-Za-z0-9_-]{1,256}, a FIFO one ending in ".fifo"? */
bool mq_topic_name_valid(const char *name);

enum mq_status mq_topic_put(struct db_conn *c, const char *name, bool content_based_dedup,
                            bool *created);
enum mq_status mq_topic_get(struct db_conn *c, const char *name, struct mq_topic *out);
enum mq_status mq_topic_delete(struct db_conn *c, const char *name);
/* Lists topic names after after ("" first); *names as mq_queue_list gives them. */
enum mq_status mq_topic_list(struct db_conn *c, const char *after, int limit, char ***names,
                             int *count, bool *more);

/* Creates or replaces a subscription of topic t. MQ_INVALID with detail when the queue does not
 * exist or cannot subscribe (a FIFO queue to a standard topic). The policy must have compiled. */
enum mq_status mq_subscription_put(struct db_conn *c, const struct mq_topic *t, const char *name,
                                   const struct mq_subscription_input *in, bool *created,
                                   char *detail, size_t detail_len);
enum mq_status mq_subscription_delete(struct db_conn *c, const struct mq_topic *t,
                                      const char *name);
/* Loads every subscription of t with its policy compiled. *subs is allocated; free it with
 * mq_subscriptions_free. */
enum mq_status mq_subscriptions_load(struct db_conn *c, const struct mq_topic *t,
                                     struct mq_subscription **subs, int *count);
void mq_subscriptions_free(struct mq_subscription *subs, int count);

/* Publishes to the n subscriptions subs of t (t may be NULL when every target is raw): message_id
 * (IDS_UUID_LEN) is filled and *deliveries counts the queues that received the message.
 * listened(ctx, queue_id) tells which queues have long polls to NOTIFY. */
enum mq_status mq_publish(struct db_conn *c, const struct mq_topic *t,
                          const struct mq_subscription *subs, int n, const struct mq_publish *p,
                          bool (*listened)(void *ctx, int queue_id), void *ctx, char *message_id,
                          int *deliveries);

/* Resolves the queue names of a recipient list into raw, unfiltered targets for mq_publish
 * (which then needs no topic: pass NULL). MQ_INVALID with detail naming every unknown (or
 * FIFO) queue. *subs is allocated (free with mq_subscriptions_free). */
enum mq_status mq_recipients_resolve(struct db_conn *c, const char *const *names, int n,
                                     struct mq_subscription **subs, char *detail,
                                     size_t detail_len);

#endif
