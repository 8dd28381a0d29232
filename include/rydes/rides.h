/* Wild Rydes ride completion: the validated input of POST /rides, storing a ride and publishing
 * it to topic ride-completion in one transaction (with Idempotency-Key replay), and reading
 * rides back. The HTTP layer decodes and encodes; everything here is the domain. */
#ifndef RYDES_RIDES_H
#define RYDES_RIDES_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/ids.h"
#include "rydes/mq.h"
#include "rydes/mq_combiner.h"
#include "rydes/topic_cache.h"
#include "rydes/validate.h"

#include <jansson.h>
#include <stdbool.h>

#define RIDES_TOPIC        "ride-completion"
#define RIDES_TEXT_MAX     200        /* from, to, customer, unicorn */
#define RIDES_FARE_MAX     1000000.0  /* currency units */
#define RIDES_DISTANCE_MAX 100000.0   /* km */
#define RIDES_DURATION_MAX 31536000.0 /* seconds: a year */
#define RIDES_KEY_SCOPE    "rides"    /* of its idempotency keys */

/* A validated ride submission; strings point into the request body. */
struct ride_input {
    const char *from, *to, *customer, *unicorn; /* unicorn may be NULL */
    double duration, distance, fare;
};

/* Reads a POST /rides body (fields or their hyphenated aliases, numbers as JSON numbers or
 * numeric strings) into in, recording every problem in fe. Pure. */
void rides_input(json_t *body, struct ride_input *in, struct field_errors *fe);

/* Reads text member field (or its hyphenated alias; both is an error) of 1..RIDES_TEXT_MAX
 * characters; NULL when absent (an error if required) or invalid. Shared by the Wild Rydes
 * inputs. */
const char *rides_text_field(json_t *body, const char *field, const char *alias, bool required,
                             struct field_errors *fe);

/* A stored ride as the API shows it. */
struct ride {
    char id[IDS_UUID_LEN];
    char *from, *to, *customer, *unicorn; /* owned; unicorn NULL when not given */
    double duration, distance, fare;
    char submitted_at[CLOCK_RFC3339_LEN];
    char *json; /* owned: ride_json as compact text when already made (a new ride), or NULL */
};

void ride_clear(struct ride *r);
/* The representation {"id","from",...,"links":{"self","fare"}} (a new reference). */
json_t *ride_json(const struct ride *r);
/* The same as compact text, written directly: byte for byte what jsontext_dumps(ride_json(r),
 * JSON_COMPACT) gives, without building the values (a ride's event and its 201). Malloc'd;
 * the caller frees it. */
char *ride_text(const struct ride *r);

enum rides_outcome {
    RIDES_CREATED,    /* stored and published */
    RIDES_REPLAYED,   /* the idempotency key was used before with this body: the earlier ride */
    RIDES_KEY_REUSED, /* the key was used before with another body: nothing done (422) */
    RIDES_NO_TOPIC,   /* ride-completion does not exist: nothing stored (503) */
    RIDES_FAILED,     /* the database failed: nothing stored (*st says how) */
};

/* Stores the ride and publishes it to topic set (ride-completion, from the topic cache) in one
 * transaction. key (NULL: none) with request_hash (the body's canonical SHA-256) makes a retry
 * replay the first ride. correlation_id becomes a message attribute. listened tells which
 * queues have long polls to NOTIFY. On RIDES_CREATED/RIDES_REPLAYED out is filled (ride_clear
 * it). */
enum rides_outcome rides_create(struct db_conn *c, const struct topic_set *set,
                                const struct ride_input *in, const char *key,
                                const char *request_hash, const char *correlation_id,
                                bool (*listened)(void *ctx, int queue_id), void *ctx,
                                struct ride *out, struct mq_publish_result *published,
                                enum mq_status *st);

/* A ride without an Idempotency-Key handed to the combiner (rydes/mq_combiner.h), which stores
 * and publishes the rides of concurrent requests in one statement: each ride still with its
 * publish, atomically, as rides_create does. */
struct rides_combined {
    struct mq_combined o; /* status MQ_OK: out and published are filled */
    struct rides_submission *s;
    struct ride out; /* the ride stored (the submitter clears it) */
    struct mq_publish_result published;
};
/* The kind of operation the combiner runs for rides_combined (mq_combiner_start's upper). */
extern const struct mq_combiner_kind rides_combiner_kind;
/* Prepares rc for in, to be published to set; correlation_id is borrowed until rc is done.
 * False, leaving rc empty and counting nothing, when the ride cannot be combined: the topic has
 * other subscriptions than raw (or only enveloped) standard queues (rides_create runs those in a
 * transaction). Clear rc with rides_combined_clear in both cases. */
bool rides_combined_init(struct rides_combined *rc, const struct topic_set *set,
                         const struct ride_input *in, const char *correlation_id,
                         bool (*listened)(void *ctx, int queue_id), void *ctx);
/* Stores and publishes a prepared rc alone on c (the combiner refused it); sets rc->o.status. */
void rides_combined_store(struct db_conn *c, struct rides_combined *rc);
void rides_combined_clear(struct rides_combined *rc);

/* Reads ride id (a UUID). MQ_NOT_FOUND when there is none. */
enum mq_status rides_get(struct db_conn *c, const char *id, struct ride *out);

/* Lists up to limit rides (of customer, or all when NULL) after cursor after ("" from the
 * start), oldest first or, with newest, newest first. *rides is allocated (free each with
 * ride_clear, then the array); next receives the cursor of the next page or "" when this was
 * the last. */
enum mq_status rides_list(struct db_conn *c, const char *customer, bool newest, const char *after,
                          int limit, struct ride **rides, int *count, char *next, size_t next_len);

#endif
