/* What the parts of the SNS query protocol share (src/aws/sns.c: the operation table and
 * topics; sns_subscriptions.c; sns_publish.c: Publish and PublishBatch): ARNs, the topic a
 * call names, and the mapping of engine outcomes to SNS's errors.
 *
 * A topic is "arn:aws:sns:REGION:000000000000:NAME", a subscription
 * "arn:aws:sns:REGION:000000000000:TOPIC:SUBSCRIPTION" (Rydes subscriptions have names), with
 * the region of the request's signature; any region and account are accepted on input. */
#ifndef RYDES_AWS_SNS_H
#define RYDES_AWS_SNS_H

#include "rydes/aws.h"
#include "rydes/topics.h"

#include <stdbool.h>

#define SNS_ARN_MAX 700

/* The topic name of the TopicArn-like member of the input (pointing into the input), or NULL
 * with InvalidParameter answered when it is missing or not a topic ARN. */
const char *sns_topic_name(struct aws_call *call, const char *member, enum handler_result *res);
/* "arn:aws:sns:REGION:000000000000:name" into out (SNS_ARN_MAX). */
void sns_topic_arn(struct aws_call *call, const char *name, char *out);
/* Answers a failed engine call (what names the missing thing for NotFound). */
enum handler_result sns_engine_failed(struct aws_call *call, enum mq_status st, const char *what,
                                      const char *detail);

/* Reads the topic the input's TopicArn names; false with InvalidParameter or NotFound answered. */
bool sns_topic(struct aws_call *call, struct db_conn *c, struct mq_topic *t,
               enum handler_result *res);
/* Forgets the process's cached topic (after a change to it or its subscriptions). */
void sns_forget(struct aws_call *call, const char *topic);
/* SNS's booleans: "true" or "false", in any case. */
bool sns_bool(const char *v, bool *out);

/* sns_subscriptions.c: operations on a pooled connection the operation table took. */
enum handler_result sns_subscribe(struct aws_call *call, struct db_conn *c);
enum handler_result sns_unsubscribe(struct aws_call *call, struct db_conn *c);
enum handler_result sns_list_subscriptions(struct aws_call *call, struct db_conn *c);
enum handler_result sns_list_subscriptions_by_topic(struct aws_call *call, struct db_conn *c);
enum handler_result sns_get_subscription_attributes(struct aws_call *call, struct db_conn *c);
enum handler_result sns_set_subscription_attributes(struct aws_call *call, struct db_conn *c);

/* sns_publish.c */
enum handler_result sns_publish(struct aws_call *call);
enum handler_result sns_publish_batch(struct aws_call *call);

#endif
