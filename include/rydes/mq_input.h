/* Decoding and validation of the queue API's request bodies: pure C over jansson values, no
 * I/O, every problem recorded in a field_errors list (field paths like "entries[3].body").
 * Unit-tested in tests/unit/test_mq_input.c. */
#ifndef RYDES_MQ_INPUT_H
#define RYDES_MQ_INPUT_H

#include "rydes/mq.h"
#include "rydes/topics.h"
#include "rydes/validate.h"

#include <jansson.h>
#include <stdbool.h>

/* Does name end in .fifo (a FIFO queue's or topic's name)? */
bool mq_input_name_is_fifo(const char *name);
/* Is name a valid queue name: [A-Za-z0-9_-]{1,80}, where a FIFO name ends in ".fifo"? */
bool mq_input_queue_name(const char *name);
/* Is s a valid group_id or dedup_id: 1..128 printable ASCII characters? */
bool mq_input_token_valid(const char *s);
/* Is url acceptable as a push subscription's endpoint: an absolute http or https URL with a
 * host, without credentials, a fragment, spaces or control characters? If not, why says so. */
bool mq_input_url(const char *url, char *why, size_t why_len);

/* Reads the attributes of PUT /queues/{name}; absent attributes take their defaults. body may
 * be NULL (all defaults). fifo follows the name unless given (and must then agree with it). */
void mq_input_attrs(json_t *body, const char *name, struct mq_attrs *out, struct field_errors *fe);

/* Reads one message to send from obj (a send body or a batch entry; prefix names it in errors,
 * "" for a send body). e->body points into obj or into *owned, which the caller frees. */
void mq_input_send_entry(json_t *obj, const char *prefix, const struct mq_queue *q,
                         struct mq_send_entry *e, char **owned, struct field_errors *fe);

/* Checks message attributes {name: {"type","value"}} (at most 10); returns their size in bytes
 * as SQS counts it (names, types and values). */
size_t mq_input_message_attributes(json_t *attrs, const char *field, struct field_errors *fe);

#define MQ_PUBLISH_MAX_BYTES 262144 /* a topic message, as SNS allows */

/* Reads a publish body {body, attributes?, subject?, group_id?, dedup_id?} into p (pointers into
 * obj or *owned, which the caller frees); errors name fields under prefix ("" at the top). */
void mq_input_publish(json_t *obj, const char *prefix, struct mq_publish *p, char **owned,
                      struct field_errors *fe);
/* Checks group_id and dedup_id of p against topic t: required on FIFO topics (dedup_id unless
 * content-based), refused on standard ones. */
void mq_input_publish_topic(const struct mq_publish *p, const char *prefix,
                            const struct mq_topic *t, struct field_errors *fe);

struct mq_receive_request {
    int max_messages;
    int visibility_timeout;
    int wait_seconds;
    bool delete_now;
};

/* Reads a receive body (NULL: all defaults from the queue). */
void mq_input_receive(json_t *body, const struct mq_queue *q, struct mq_receive_request *out,
                      struct field_errors *fe);

/* Reads the attributes of PUT /topics/{name} (body may be NULL) into *cbd (content-based
 * dedup); the name's validity is the caller's check, its .fifo suffix is compared here. */
void topic_input(json_t *body, const char *name, bool *cbd, struct field_errors *fe);
/* Reads a subscription body into in (pointers borrow from body); compiles its filter policy to
 * report a bad one. */
void subscription_input(json_t *body, struct mq_subscription_input *in, struct field_errors *fe);

#endif
