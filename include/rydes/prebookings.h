/* Wild Rydes prebookings: a submission is accepted at once as a task (202 + polling) and
 * published to topic prebooking-notification; the prebooking-processing worker later makes the
 * prebooking or fails the task with a reason. Apps may also send the submission straight into
 * queue prebooking-submission (the task id is then the message id). */
#ifndef RYDES_PREBOOKINGS_H
#define RYDES_PREBOOKINGS_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/idempotency.h"
#include "rydes/ids.h"
#include "rydes/mq.h"
#include "rydes/topic_cache.h"
#include "rydes/validate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PREBOOKINGS_TOPIC            "prebooking-notification"
#define PREBOOKINGS_SUBMISSION_QUEUE "prebooking-submission" /* apps may send into it */
#define PREBOOKINGS_PROCESSING_QUEUE "prebooking-processing" /* the topic's worker reads it */
#define PREBOOKINGS_KEY_SCOPE        "prebookings"           /* of its idempotency keys */

/* A validated submission; strings point into the request body. */
struct prebooking_input {
    const char *from, *to, *customer;
    int64_t pickup_us;              /* "when", wall clock */
    char pickup[CLOCK_RFC3339_LEN]; /* "when" normalised to UTC with milliseconds */
};

/* Reads {from, to, customer, when} (with the hyphenated aliases) into in: "when" must be an
 * RFC 3339 date-time (in->pickup is then set; it is not judged against the clock). Pure. */
void prebooking_parse(json_t *body, struct prebooking_input *in, struct field_errors *fe);
/* Checks that the "when" of a parsed in is after now_us and at most horizon_days ahead. Pure. */
void prebooking_timely(const struct prebooking_input *in, int64_t now_us, int horizon_days,
                       struct field_errors *fe);
/* Both. */
void prebooking_input(json_t *body, int64_t now_us, int horizon_days, struct prebooking_input *in,
                      struct field_errors *fe);

enum task_status { TASK_PENDING, TASK_PROCESSING, TASK_SUCCEEDED, TASK_FAILED };

struct task {
    char id[IDS_UUID_LEN];
    char kind[16];
    enum task_status status;
    char result_id[IDS_UUID_LEN];     /* "" unless succeeded */
    char *error_title, *error_detail; /* owned; NULL unless failed */
    char submitted_at[CLOCK_RFC3339_LEN], updated_at[CLOCK_RFC3339_LEN];
};

void task_clear(struct task *t);
bool task_final(const struct task *t);
/* The representation of GET /tasks/{id} (a new reference). */
json_t *task_json(const struct task *t);
enum mq_status tasks_get(struct db_conn *c, const char *id, struct task *out);
/* Lists up to limit tasks newest first (by submitted_at, then id), after the cursor after_us
 * (microseconds since the epoch; NULL: from the newest) and after_id (a UUID); see
 * DB_PAGE_CURSOR. *tasks is allocated (task_clear each, then free the array); next receives the
 * cursor of the next page, "" when this was the last. */
enum mq_status tasks_list(struct db_conn *c, const char *after_us, const char *after_id, int limit,
                          struct task **tasks, int *count, char *next, size_t next_len);

struct prebooking {
    char id[IDS_UUID_LEN], task_id[IDS_UUID_LEN];
    char *from, *to, *customer; /* owned */
    char when[CLOCK_RFC3339_LEN], created_at[CLOCK_RFC3339_LEN];
};

void prebooking_clear(struct prebooking *p);
json_t *prebooking_json(const struct prebooking *p);
enum mq_status prebookings_get(struct db_conn *c, const char *id, struct prebooking *out);

enum prebookings_outcome {
    PREBOOKINGS_SUBMITTED,  /* the task stored and its event published */
    PREBOOKINGS_REPLAYED,   /* the key was used before with this submission: its task */
    PREBOOKINGS_KEY_REUSED, /* the key was used before with another submission: nothing done */
    PREBOOKINGS_FAILED,     /* nothing done; *st says why (MQ_NOT_FOUND: no topic) */
    PREBOOKINGS_UNROUTED,   /* nothing done: the topic takes it to no processing queue */
};

/* Accepts a submission: stores its pending task and publishes it to the topic of set (NULL: no
 * topic) in one transaction; out is the new task. key (NULL: none) with hash
 * (prebookings_request_hash) makes a retry find the task of the first submission, as it stands
 * now, instead of making another. */
enum prebookings_outcome prebookings_submit(struct db_conn *c, const struct topic_set *set,
                                            const struct prebooking_input *in, const char *key,
                                            const char *hash, const char *correlation_id,
                                            bool (*listened)(void *ctx, int queue_id), void *ctx,
                                            struct task *out, struct mq_publish_result *published,
                                            enum mq_status *st);
/* The task the submission of hash made under key: PREBOOKINGS_REPLAYED (out filled: task_clear
 * it) or PREBOOKINGS_KEY_REUSED (another submission used the key). An unknown key is
 * PREBOOKINGS_FAILED with *st MQ_NOT_FOUND, or KEY_REUSED after_claim (a claim found the key
 * taken: it was swept since). */
enum prebookings_outcome prebookings_find_key(struct db_conn *c, const char *key, const char *hash,
                                              bool after_claim, struct task *out,
                                              enum mq_status *st);
/* The canonical hash of a submission for its Idempotency-Key: "when" as normalised, so the same
 * instant written with another offset is the same submission. */
void prebookings_request_hash(const struct prebooking_input *in, char out[IDEMPOTENCY_HASH_LEN]);

/* The same for a submission that arrived as message m of queue prebooking-submission, inside
 * the caller's transaction: task id = the message id; an invalid body becomes a failed task
 * with the validation errors instead of a message that never goes away. Idempotent. */
enum mq_status prebookings_accept_message(struct db_conn *c, const struct topic_set *set,
                                          const struct mq_message *m, int horizon_days,
                                          bool (*listened)(void *ctx, int queue_id), void *ctx);

/* Whether sends into q must go through prebookings_mq_send (q is PREBOOKINGS_SUBMISSION_QUEUE,
 * whose messages are tasks). */
bool prebookings_queue_holds_tasks(const struct mq_queue *q);
/* mq_send of n entries into q; into PREBOOKINGS_SUBMISSION_QUEUE it also stores each sent
 * message's task, pending (sql/057), in the send's transaction, so that GET /tasks/{message id}
 * answers from the send on, not only once a worker took the message in: both or neither. */
enum mq_status prebookings_mq_send(struct db_conn *c, const struct mq_queue *q,
                                   const struct mq_send_entry *entries, int n,
                                   struct mq_send_result *results, bool notify);

/* Marks the task of a prebooking-notification message as processing (autocommit). */
void prebookings_mark_processing(struct db_conn *c, const struct mq_message *m);
/* Processes the task of message m inside the caller's transaction: makes the prebooking, or
 * fails the task when the customer already holds one within slot_minutes of it. MQ_OK when the
 * task is final (also when it already was); anything else is transient (retry). */
enum mq_status prebookings_process(struct db_conn *c, const struct mq_message *m, int slot_minutes,
                                   char *why, size_t why_len);
/* Fails the task of message m (autocommit) after its processing failed for good: title
 * "Processing failed", detail why. Only m being the task's event (its message id, sql/045)
 * fails it; a task already final, or awaiting its submission (sql/057), stays as it is. */
void prebookings_give_up(struct db_conn *c, const struct mq_message *m, const char *why);
/* The prebooking-submission step failed on the last attempt its queue allows: the message's
 * task (its message_id) is made failed, so that polling it does not answer 404 for ever. A task
 * already made stays as it is. */
void prebookings_give_up_submission(struct db_conn *c, const struct mq_message *m, const char *why);
/* The prebooking-datalake step: records the submission once. */
enum mq_status prebookings_ingest(struct db_conn *c, const struct mq_message *m, char *why,
                                  size_t why_len);

#endif
