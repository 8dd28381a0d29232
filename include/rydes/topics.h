/* Topics: publish-subscribe channels over the queue engine. A topic has subscriptions, each
 * delivering into one queue or POSTing to one URL, optionally behind an SNS filter policy
 * (rydes/filter.h) and as the raw body or an SNS-style envelope. A publish puts, atomically (one
 * statement), one message into every matching queue (a body of up to 1024 bytes in each, a larger
 * one stored once in table payloads; sql/018) and one push delivery per matching URL (sent later by
 * the push worker, rydes/push.h). FIFO topics deduplicate publishes and append to one message group
 * in every subscribed queue. */
#ifndef RYDES_TOPICS_H
#define RYDES_TOPICS_H

#include "rydes/buf.h"
#include "rydes/filter.h"
#include "rydes/mq.h"

#include <stdatomic.h>

#define MQ_TOPIC_NAME_MAX 256
#define MQ_MAX_RECIPIENTS 100 /* queues of one recipient-list message */
#define MQ_URL_MAX        2048

/* Retry policy of a URL subscription: attempts in all, and the bounds of the backoff. */
#define MQ_PUSH_ATTEMPTS_DEFAULT  10
#define MQ_PUSH_MIN_DELAY_DEFAULT 1
#define MQ_PUSH_MAX_DELAY_DEFAULT 60

struct mq_topic {
    int id;
    char name[MQ_TOPIC_NAME_MAX + 1];
    bool fifo;
    bool content_based_dedup;
    char created_at[CLOCK_RFC3339_LEN];
};

struct mq_subscription {
    int id;
    char name[MQ_NAME_MAX + 1];
    char queue[MQ_NAME_MAX + 1]; /* "" for a URL subscription */
    int queue_id;                /* 0 for a URL subscription */
    bool queue_fifo;
    char *url;                               /* owned; NULL for a queue subscription */
    char dead_letter_queue[MQ_NAME_MAX + 1]; /* URL subscriptions; "" when none */
    int max_attempts, min_delay_seconds, max_delay_seconds;
    json_t *filter_policy; /* owned reference, or NULL */
    enum filter_scope scope;
    bool raw;
    char created_at[CLOCK_RFC3339_LEN];
    struct filter_policy *compiled; /* owned; NULL when there is no policy */
};

struct mq_subscription_input {
    const char *queue; /* exactly one of queue and url */
    const char *url;
    const char *dead_letter_queue; /* URL subscriptions only; may be NULL */
    int max_attempts, min_delay_seconds, max_delay_seconds;
    json_t *filter_policy; /* borrowed, or NULL */
    enum filter_scope scope;
    bool raw;
    bool only_new; /* mq_subscription_put creates only: an existing one is left as it is */
};

struct mq_publish {
    const char *body; /* borrowed */
    size_t body_len;
    bool body_json;
    json_t *attributes;    /* borrowed, or NULL */
    const char *subject;   /* borrowed, or NULL */
    const char *group_id;  /* FIFO targets; borrowed, or NULL */
    const char *dedup_id;  /* FIFO topics; NULL: the SHA-256 of the body (content-based) */
    const char *topic_arn; /* the envelope's TopicArn (SNS publishes); borrowed, or NULL */
};

struct mq_publish_result {
    char message_id[IDS_UUID_LEN]; /* the original one for a duplicate */
    int deliveries;                /* queues and URLs the message went to */
    int pushes;                    /* of those, URLs (push deliveries to send) */
    bool duplicate;                /* a FIFO topic had seen dedup_id in the last 5 minutes */
};

/* Publishes since start, for /metrics (kept by the API layer). */
struct mq_publish_counters {
    _Atomic uint64_t publishes;  /* accepted publishes, recipient lists included */
    _Atomic uint64_t duplicates; /* FIFO publishes dropped as duplicates */
    _Atomic uint64_t deliveries; /* messages put into queues or queued for URLs */
};

/* Is name a valid topic name: [A-Za-z0-9_-]{1,256}, a FIFO one ending in ".fifo"? */
bool mq_topic_name_valid(const char *name);

enum mq_status mq_topic_put(struct db_conn *c, const char *name, bool content_based_dedup,
                            bool *created);
/* Creates topic name unless it exists (*created false then: the existing one is left as it
 * is, where mq_topic_put sets its content_based_dedup). */
enum mq_status mq_topic_create(struct db_conn *c, const char *name, bool content_based_dedup,
                               bool *created);
/* Sets content_based_dedup of existing topic name (never creates it: SNS SetTopicAttributes).
 * MQ_NOT_FOUND when there is no such topic. */
enum mq_status mq_topic_set_dedup(struct db_conn *c, const char *name, bool content_based_dedup);
enum mq_status mq_topic_get(struct db_conn *c, const char *name, struct mq_topic *out);
enum mq_status mq_topic_delete(struct db_conn *c, const char *name);
/* Lists topic names after after ("" first); *names as mq_queue_list gives them. */
enum mq_status mq_topic_list(struct db_conn *c, const char *after, int limit, char ***names,
                             int *count, bool *more);

/* Inside the caller's transaction: locks subscription name of topic (names) for a change of its
 * attributes, so that a concurrent change or delete of it waits. MQ_NOT_FOUND when there is no
 * such subscription. */
enum mq_status mq_subscription_lock(struct db_conn *c, const char *topic, const char *name);
/* Creates or replaces a subscription of topic t (with in->only_new, creates it or leaves the
 * existing one untouched; *created tells which). MQ_INVALID with detail, and the member refused
 * in *field (if not NULL: "queue", "dead_letter_queue" or "url"), when the queue (or the
 * dead-letter queue) does not exist or cannot subscribe (a FIFO queue to a standard topic, a URL
 * to a FIFO topic). The policy must have compiled. */
enum mq_status mq_subscription_put(struct db_conn *c, const struct mq_topic *t, const char *name,
                                   const struct mq_subscription_input *in, bool *created,
                                   char *detail, size_t detail_len, const char **field);
enum mq_status mq_subscription_delete(struct db_conn *c, const struct mq_topic *t,
                                      const char *name);
/* Loads every subscription of t with its policy compiled. *subs is allocated; free it with
 * mq_subscriptions_free. */
enum mq_status mq_subscriptions_load(struct db_conn *c, const struct mq_topic *t,
                                     struct mq_subscription **subs, int *count);
void mq_subscriptions_free(struct mq_subscription *subs, int count);

/* Publishes to the matching ones of the n subscriptions subs of t (t may be NULL when every
 * target is a raw queue: a recipient list). A FIFO topic, or any FIFO target, needs
 * p->group_id; a FIFO topic deduplicates by p->dedup_id (or the body's SHA-256).
 * listened(ctx, queue_id) tells which queues have long polls to NOTIFY. */
enum mq_status mq_publish(struct db_conn *c, const struct mq_topic *t,
                          const struct mq_subscription *subs, int n, const struct mq_publish *p,
                          bool (*listened)(void *ctx, int queue_id), void *ctx,
                          struct mq_publish_result *out);

/* For a batch of FIFO publishes to topic t, inside the caller's transaction: waits for other
 * batches of t to finish, then locks the message groups named in groups (a JSON array of
 * strings) in every FIFO queue of subs, in one global order: two batches cannot then take groups
 * or deduplication rows in opposite orders. (A single publish takes its deduplication row before
 * its group; one racing a batch with the same dedup id and group can deadlock — PostgreSQL
 * breaks that with a 503 the client retries.) */
enum mq_status mq_publish_lock_groups(struct db_conn *c, const struct mq_topic *t,
                                      const struct mq_subscription *subs, int n, json_t *groups);

/* What a publish adds to this process's counters (rydes/mq_counters.h): the topic's publishes,
 * each subscription's matched or filtered_out, each matching queue's sent. Applied once the
 * publish is stored, never for one that failed. */
struct mq_publish_tally_item {
    int subscription_id, queue_id; /* queue_id 0: a URL subscription */
    bool wanted;
};
struct mq_publish_tally {
    int topic_id, n;
    struct mq_publish_tally_item *items; /* owned */
};

/* A publish decided but not written, for callers that write it inside a statement of their own
 * (POST /rides). lean: every matching subscription is a queue taking the same form (all raw or
 * all enveloped), none FIFO, no URL; then the publish is the SQL call
 * mq_publish_payload(message_id::uuid, payload, body_json, attributes::jsonb, queues::int[],
 * notify::int[]) (sql/006) with the values below. When !lean, use mq_publish. */
struct mq_publish_plan {
    bool lean;
    char message_id[IDS_UUID_LEN];
    int n;               /* matching queues (0: nothing to write) */
    const char *payload; /* the envelope (owned, in envelope) or the publish's body (borrowed:
                          * keep the mq_publish alive as long as the plan) */
    char *envelope;
    bool body_json;
    char *attributes;          /* owned JSON text, or NULL */
    struct buf queues, notify; /* int[] literals */
    struct mq_publish_tally tally;
};

/* The SQL call of a lean plan whose payload is a JSON body, for a statement that puts its own
 * INSERT in front ("WITH x AS (INSERT …) SELECT " MQ_PUBLISH_JSON_SQL("3", …) " FROM x"): its
 * five parameters, numbered a..e, are the ones mq_publish_plan_params fills. The publish goes
 * to the outbox with the statement's own rows; the fan-out thread delivers it right after commit
 * (sql/013_publish_outbox.sql): call mq_fanout_kick once the statement has committed. */
#define MQ_PUBLISH_JSON_SQL(a, b, c, d, e) \
    "mq_publish_later($" a "::uuid, $" b ", true, $" c "::jsonb, $" d "::int[], $" e "::int[])"

/* Writes the five parameters of MQ_PUBLISH_JSON_SQL for plan into v[0..4] (borrowed from plan). */
void mq_publish_plan_params(const struct mq_publish_plan *plan, const char **v);
/* Fills out from such a statement's result (the deliveries in column col of row 0), counts the
 * publish (mq_publish_plan_count) and wakes the fan-out: call it once the statement has
 * committed. */
void mq_publish_plan_result(const struct mq_publish_plan *plan, PGresult *r, int col,
                            struct mq_publish_result *out);

/* Evaluates the subscriptions' filters for p and fills plan (clear it with
 * mq_publish_plan_clear). */
/* Is every publish to t with subs lean, whatever their filters decide: queue subscriptions only,
 * none FIFO, all raw or all enveloped, t standard? Runs no filter and counts nothing. */
bool mq_publish_always_lean(const struct mq_topic *t, const struct mq_subscription *subs, int n);
void mq_publish_plan(const struct mq_topic *t, const struct mq_subscription *subs, int n,
                     const struct mq_publish *p, bool (*listened)(void *ctx, int queue_id),
                     void *ctx, struct mq_publish_plan *plan);
void mq_publish_plan_clear(struct mq_publish_plan *plan);
/* Adds plan's publish to the counters: once it is stored (mq_publish_plan_result and
 * mq_publish_plans do it), or when there was nothing to store (n == 0). */
void mq_publish_plan_count(const struct mq_publish_plan *plan);
/* Publishes n lean plans (1..MQ_MAX_ROWS) at once, each as POST /topics/{name}/messages does
 * (its payload and its messages in the statement's transaction, its long polls notified):
 * deliveries[i] is plan i's messages. One statement and one commit for all; each plan is
 * counted when it succeeds. */
enum mq_status mq_publish_plans(struct db_conn *c, const struct mq_publish_plan *const *plans,
                                int n, int *deliveries);

/* Resolves the queue names of a recipient list into raw, unfiltered targets for mq_publish
 * (which then needs no topic: pass NULL). MQ_INVALID with detail naming every unknown queue,
 * or, when group_id is NULL, every FIFO one, and why[i] (n entries; a static string, NULL for a
 * name that resolved) saying what is wrong with names[i]. *subs is allocated (free with
 * mq_subscriptions_free). */
enum mq_status mq_recipients_resolve(struct db_conn *c, const char *const *names, int n,
                                     const char *group_id, struct mq_subscription **subs,
                                     const char **why, char *detail, size_t detail_len);

#endif
