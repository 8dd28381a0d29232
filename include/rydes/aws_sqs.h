/* What the two halves of the SQS operations share (src/aws/sqs.c: the operation table and
 * queue management; src/aws/sqs_messages.c: the data plane): input accessors that answer
 * SQS's errors, the queue a call names, and the mapping of engine outcomes to SQS errors. */
#ifndef RYDES_AWS_SQS_H
#define RYDES_AWS_SQS_H

#include "rydes/aws.h"

#include <stdbool.h>

/* The string member name of the input, or NULL when absent (or not a string). */
const char *sqs_str(struct aws_call *call, const char *name);
/* Reads the integer member name (a JSON integer, or a decimal string as the query protocol
 * sends it) within min..max into *out; absent leaves *out. False with InvalidParameterValue
 * answered for a bad value. */
bool sqs_int(struct aws_call *call, const char *name, int min, int max, int *out,
             enum handler_result *res);
/* Are the lists named in names (NULL-terminated) of the input at most WIRE_QUERY_MAX_INDEX long,
 * as the query protocol's indexes are? False with InvalidParameterValue answered: a JSON body
 * could otherwise hold a quarter of a million names to compare against every message. */
bool sqs_lists_bounded(struct aws_call *call, const char *const *names, enum handler_result *res);
/* A required string member; false with MissingParameter answered. */
const char *sqs_required(struct aws_call *call, const char *name, enum handler_result *res);
/* Reads the queue the call names (QueueUrl, or the {queue} of the path) from the process's
 * cache when it can, else on c (NULL: on a pooled connection taken for it). False with
 * QueueDoesNotExist (or the failure) answered. */
bool sqs_queue(struct aws_call *call, struct db_conn *c, struct mq_queue *q,
               enum handler_result *res);
/* Answers a failed engine call. */
enum handler_result sqs_engine_failed(struct aws_call *call, enum mq_status st, const char *detail);
/* Checks a batch's entries (member "Entries": 1..10 objects with distinct valid Ids); returns
 * the array (borrowed) or NULL with the batch error answered. */
json_t *sqs_batch_entries(struct aws_call *call, enum handler_result *res);

enum handler_result sqs_send_message(struct aws_call *call);
enum handler_result sqs_send_message_batch(struct aws_call *call);
enum handler_result sqs_receive_message(struct aws_call *call);
enum handler_result sqs_delete_message(struct aws_call *call);
enum handler_result sqs_delete_message_batch(struct aws_call *call);
enum handler_result sqs_change_visibility(struct aws_call *call);
enum handler_result sqs_change_visibility_batch(struct aws_call *call);

#endif
