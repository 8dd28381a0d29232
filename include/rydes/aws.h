/* The AWS wire protocols of the gateway: POST / (and POST /{account}/{queue}, where query-
 * protocol clients post to a queue URL) authenticated by Signature Version 4 with the access
 * keys of tokens (rydes/aws_store.h), answered by SQS (src/aws/sqs*.c, AWS JSON 1.0 and the
 * query protocol) or SNS (aws_sns_query, query protocol) over the same engine as the REST API.
 *
 * dispatch.c owns the call: it authenticates, picks the protocol, turns the input into the JSON
 * protocol's shape (rydes/wire.h) and hands the call to the service, which answers with
 * aws_reply or aws_fail. The call lives in req->state, so it survives a long poll's suspension. */
#ifndef RYDES_AWS_H
#define RYDES_AWS_H

#include "rydes/aws_store.h"
#include "rydes/http.h"
#include "rydes/mq.h"
#include "rydes/wire.h"

#include <jansson.h>
#include <stdbool.h>

#define AWS_ACCOUNT_ID "000000000000"
#define AWS_SQS_XMLNS  "http://queue.amazonaws.com/doc/2012-11-05/"
#define AWS_SNS_XMLNS  "http://sns.amazonaws.com/doc/2010-03-31/"

enum aws_protocol { AWS_PROTOCOL_JSON, AWS_PROTOCOL_QUERY };

struct aws_operation;

struct aws_call {
    struct http_request *req;
    enum aws_protocol protocol;
    const char *xmlns;                     /* of the service's query responses */
    const char *json_ns;                   /* prefix of __type in JSON errors */
    char op[64];                           /* the operation: Action or the X-Amz-Target suffix */
    const struct aws_operation *operation; /* once chosen (aws_operation_run) */
    json_t *in;                            /* the input in the JSON protocol's shape (owned) */
    enum role role;                        /* of the token the access key belongs to */
    char region[33];                       /* from the signature's scope */
    char access_key[AWS_ACCESS_KEY_LEN];
    const char *path_queue; /* {queue} of POST /{account}/{queue}, or NULL */
    /* the access key's credentials once found (with the headers), so that the handler does not
     * look them up again; wiped with the call */
    struct aws_key key;
    bool key_held;
    /* a service's state across a suspension (ReceiveMessage's long poll) */
    void *op_state;
    void (*op_state_free)(void *op_state);
};

/* The route handler of POST / and POST /{account}/{queue}. */
enum handler_result aws_dispatch(struct http_request *req);
/* Their check once the headers are in, before the body is read (http_server_config's
 * before_raw_body): a request without a well-formed signature of an existing access key is
 * answered at once, as aws_dispatch would, with nothing buffered. */
enum handler_result aws_before_body(struct http_request *req);

/* Answers with result (a JSON-protocol output object, stolen; NULL for an operation without
 * output) in the call's protocol. */
enum handler_result aws_reply(struct aws_call *call, json_t *result);
/* Answers with error e and the printf-formatted message in the call's protocol. */
enum handler_result aws_fail(struct aws_call *call, enum wire_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes a pooled connection; NULL with ServiceUnavailable answered (*res set) when none. */
struct db_conn *aws_db(struct aws_call *call, enum handler_result *res);
void aws_db_release(struct aws_call *call, struct db_conn *c);

/* "http(s)://HOST/000000000000/name" into out, with the Host the client used. */
void aws_queue_url(struct aws_call *call, const char *name, char *out, size_t n);
/* "arn:aws:sqs:REGION:000000000000:name" (service "sqs" or "sns") into out. */
void aws_arn(struct aws_call *call, const char *service, const char *name, char *out, size_t n);

/* Shared by SQS and SNS (src/aws/shared.c). */

/* One operation of a service's table: the role it needs, and either a body that runs on a
 * handler thread with a pooled connection taken for it (with_db) or one that takes its
 * connections itself (own): on a data-plane thread, or, when it hands its statements on itself
 * (the combiner, http_offload_work: it may suspend), on the HTTP thread. */
struct aws_operation {
    const char *name;
    enum role role;
    enum handler_result (*with_db)(struct aws_call *call, struct db_conn *c);
    enum handler_result (*own)(struct aws_call *call);
    bool hands_on; /* own runs on the HTTP thread */
};
/* The operation of ops (n of them) called name, or NULL. */
const struct aws_operation *aws_operation_find(const struct aws_operation *ops, size_t n,
                                               const char *name);
/* Runs op for call (its role is the caller's check) where its table entry says; call must be
 * its request's state. */
enum handler_result aws_operation_run(struct aws_call *call, const struct aws_operation *op);

/* The resource of "arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE" (pointing into arn; any region and
 * account), or NULL when arn is not such an ARN. */
const char *aws_arn_resource(const char *arn, const char *service);
/* AWS MessageAttributes {name: {DataType, StringValue|BinaryValue}} (in may be NULL) as Rydes
 * attributes {name: {type, value}}: a new object in *out the caller releases (also on failure).
 * False with why filled when one is malformed. */
bool aws_attributes_in(json_t *in, json_t **out, char *why, size_t n);
/* A JSON text carried inside a parameter (RedrivePolicy, FilterPolicy, DeliveryPolicy, a
 * MessageStructure=json Message), parsed under the request body's memory cap: NULL when it is
 * not JSON, has duplicate keys or would take more memory than its size allows. New reference. */
json_t *aws_parse_json(const char *text);
/* The AWS parameter a field of the REST message input names ("group_id" -> "MessageGroupId",
 * "attributes.x" -> "MessageAttributes", "body" -> body, which SQS calls MessageBody and SNS
 * Message), or the field itself when AWS has none for it. */
const char *aws_field_name(const char *field, const char *body);

/* The error codes a service answers for a malformed batch. */
struct aws_batch_errors {
    enum wire_err empty, too_many, bad_id, not_distinct;
};
/* Checks the batch in member of the input: 1..10 objects with distinct valid Ids; returns the
 * array (borrowed) or NULL with the error answered. */
json_t *aws_batch_entries(struct aws_call *call, const char *member,
                          const struct aws_batch_errors *errs, enum handler_result *res);

/* SQS (src/aws/sqs.c): runs call->op. */
enum handler_result aws_sqs(struct aws_call *call);
/* The SNS query protocol (src/aws/sns.c): runs call->op. */
enum handler_result aws_sns_query(struct aws_call *call);

#endif
