/* The SNS query protocol (Version 2010-03-31) over the engine's topics (rydes/topics.h): the
 * operation table with the role each operation needs (reads and publishing `service`,
 * management `admin`, as in the REST API), the shared helpers of rydes/aws_sns.h, and the topic
 * operations. Subscriptions are in sns_subscriptions.c, publishing in sns_publish.c.
 *
 * A topic made by CreateTopic is the REST API's topic of that name and the other way round;
 * CreateTopic is idempotent (an existing topic with other attributes is InvalidParameter), and
 * FifoTopic / ContentBasedDeduplication are the topic's fifo / content_based_dedup. */
#include "rydes/aws_sns.h"

#include "rydes/app.h"
#include "rydes/aws_sqs.h"
#include "rydes/mq_input.h"
#include "rydes/topic_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SNS_PAGE 100 /* topics per page of ListTopics, as SNS pages them */

/* ---- shared helpers ---- */

const char *sns_topic_name(struct aws_call *call, const char *member, enum handler_result *res)
{
    const char *arn = sqs_str(call, member);
    const char *name = aws_arn_resource(arn, "sns");
    if (!arn || !*arn)
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: %s Reason: no value for required parameter", member);
    else if (!name || !mq_topic_name_valid(name))
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: %s", member);
    return arn && name && mq_topic_name_valid(name) ? name : NULL;
}

void sns_topic_arn(struct aws_call *call, const char *name, char *out)
{
    aws_arn(call, "sns", name, out, SNS_ARN_MAX);
}

enum handler_result sns_engine_failed(struct aws_call *call, enum mq_status st, const char *what,
                                      const char *detail)
{
    switch (st) {
    case MQ_NOT_FOUND:
        return aws_fail(call, WIRE_SNS_NOT_FOUND, "%s does not exist", what);
    case MQ_INVALID:
    case MQ_CONFLICT:
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: %s",
                        detail && *detail ? detail : "the request conflicts with the topic");
    case MQ_UNAVAILABLE:
    case MQ_BUSY:
        http_add_header(call->req, "Retry-After", "1");
        return aws_fail(call, WIRE_UNAVAILABLE, "The database could not complete the request.");
    default:
        return aws_fail(call, WIRE_INTERNAL, "The database refused the request.");
    }
}

/* Reads the topic the input's TopicArn names; answers InvalidParameter or NotFound. */
bool sns_topic(struct aws_call *call, struct db_conn *c, struct mq_topic *t,
               enum handler_result *res)
{
    const char *name = sns_topic_name(call, "TopicArn", res);
    if (!name)
        return false;
    enum mq_status st = mq_topic_get(c, name, t);
    if (st != MQ_OK)
        *res = sns_engine_failed(call, st, "Topic", NULL);
    return st == MQ_OK;
}

void sns_forget(struct aws_call *call, const char *topic)
{
    topic_cache_forget(call->req->app->topic_cache, topic);
}

bool sns_bool(const char *v, bool *out)
{
    if (!v || (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0))
        return false;
    *out = strcasecmp(v, "true") == 0;
    return true;
}

/* ---- topics ---- */

static enum handler_result reply_topic_arn(struct aws_call *call, const char *name)
{
    char arn[SNS_ARN_MAX];
    sns_topic_arn(call, name, arn);
    return aws_reply(call, json_pack("{s:s}", "TopicArn", arn));
}

/* Reads CreateTopic's attributes: FifoTopic (must agree with the name) and
 * ContentBasedDeduplication (FIFO only; *cbd_given when named). */
static bool topic_attributes(struct aws_call *call, const char *name, bool *cbd, bool *cbd_given,
                             enum handler_result *res)
{
    json_t *attrs = json_object_get(call->in, "Attributes"), *v;
    size_t n = strlen(name);
    bool named_fifo = n > 5 && strcmp(name + n - 5, ".fifo") == 0, fifo = false;
    const char *key, *bad = NULL;
    *cbd = *cbd_given = false;
    json_object_foreach(attrs, key, v)
    {
        const char *s = json_string_value(v);
        if (strcmp(key, "FifoTopic") == 0 && !sns_bool(s, &fifo))
            bad = "FifoTopic";
        else if (strcmp(key, "ContentBasedDeduplication") == 0 && !sns_bool(s, cbd))
            bad = "ContentBasedDeduplication";
        else if (strcmp(key, "FifoTopic") && strcmp(key, "ContentBasedDeduplication"))
            bad = key;
        *cbd_given |= strcmp(key, "ContentBasedDeduplication") == 0;
    }
    if (bad)
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Attributes Reason: %.100s is not supported here or "
                        "has an invalid value",
                        bad);
    else if (fifo != named_fifo)
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Fifo Topic names must end with .fifo and must have "
                        "the attribute FifoTopic=true");
    else if (*cbd && !fifo)
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Attributes Reason: ContentBasedDeduplication applies "
                        "to FIFO topics only");
    return !bad && fifo == named_fifo && !(*cbd && !fifo);
}

static enum handler_result create_topic(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    const char *name = sqs_str(call, "Name");
    if (!name || !mq_topic_name_valid(name))
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Topic Name: 1 to 256 of A-Z a-z 0-9 _ -, and .fifo "
                        "for a FIFO topic");
    const char *key;
    json_t *v;
    json_object_foreach(call->in, key, v)
    {
        if (strncmp(key, "Tags", 4) == 0) /* however the form nested them */
            return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                            "Invalid parameter: Tags Reason: topic tags are not supported");
    }
    bool cbd, cbd_given, created;
    if (!topic_attributes(call, name, &cbd, &cbd_given, &res))
        return res;
    struct mq_topic t;
    enum mq_status st = mq_topic_get(c, name, &t);
    if (st == MQ_NOT_FOUND) {
        /* insert only: a topic someone made since the lookup is compared, not overwritten */
        st = mq_topic_create(c, name, cbd, &created);
        sns_forget(call, name);
        if (st == MQ_OK && created)
            return reply_topic_arn(call, name);
        if (st == MQ_OK)
            st = mq_topic_get(c, name, &t);
    }
    if (st == MQ_OK && cbd_given && cbd != t.content_based_dedup)
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Attributes Reason: Topic already exists with "
                        "different attributes");
    return st == MQ_OK ? reply_topic_arn(call, name) : sns_engine_failed(call, st, "Topic", NULL);
}

static enum handler_result list_topics(struct aws_call *call, struct db_conn *c)
{
    const char *after = sqs_str(call, "NextToken");
    if (after && !mq_topic_name_valid(after))
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: NextToken");
    char **names;
    int count;
    bool more;
    enum mq_status st = mq_topic_list(c, after ? after : "", SNS_PAGE, &names, &count, &more);
    if (st != MQ_OK)
        return sns_engine_failed(call, st, "Topic", NULL);
    json_t *topics = json_array();
    char arn[SNS_ARN_MAX];
    for (int i = 0; i < count; i++) {
        sns_topic_arn(call, names[i], arn);
        json_array_append_new(topics, json_pack("{s:s}", "TopicArn", arn));
    }
    json_t *out = json_pack("{s:o}", "Topics", topics);
    if (more && count)
        json_object_set_new(out, "NextToken", json_string(names[count - 1]));
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return aws_reply(call, out);
}

static void set_count(json_t *o, const char *name, int v)
{
    char s[16];
    snprintf(s, sizeof s, "%d", v);
    json_object_set_new(o, name, json_string(s));
}

static enum handler_result get_topic_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_topic t;
    if (!sns_topic(call, c, &t, &res))
        return res;
    struct mq_subscription *subs = NULL;
    int n = 0;
    enum mq_status st = mq_subscriptions_load(c, &t, &subs, &n);
    mq_subscriptions_free(subs, n);
    if (st != MQ_OK)
        return sns_engine_failed(call, st, "Topic", NULL);
    char arn[SNS_ARN_MAX];
    sns_topic_arn(call, t.name, arn);
    json_t *a =
        json_pack("{s:s, s:s, s:s}", "TopicArn", arn, "Owner", AWS_ACCOUNT_ID, "DisplayName", "");
    set_count(a, "SubscriptionsConfirmed", n);
    set_count(a, "SubscriptionsPending", 0);
    set_count(a, "SubscriptionsDeleted", 0);
    json_object_set_new(a, "FifoTopic", json_string(t.fifo ? "true" : "false"));
    if (t.fifo)
        json_object_set_new(a, "ContentBasedDeduplication",
                            json_string(t.content_based_dedup ? "true" : "false"));
    return aws_reply(call, json_pack("{s:o}", "Attributes", a));
}

static enum handler_result set_topic_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_topic t;
    if (!sns_topic(call, c, &t, &res))
        return res;
    const char *name = sqs_str(call, "AttributeName");
    bool cbd;
    if (!name || strcmp(name, "ContentBasedDeduplication") != 0 || !t.fifo)
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: AttributeName (only ContentBasedDeduplication of a "
                        "FIFO topic can be set)");
    if (!sns_bool(sqs_str(call, "AttributeValue"), &cbd))
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: AttributeValue");
    enum mq_status st = mq_topic_set_dedup(c, t.name, cbd); /* deleted meanwhile: not made again */
    sns_forget(call, t.name);
    return st == MQ_OK ? aws_reply(call, NULL) : sns_engine_failed(call, st, "Topic", NULL);
}

static enum handler_result delete_topic(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    const char *name = sns_topic_name(call, "TopicArn", &res);
    if (!name)
        return res;
    enum mq_status st = mq_topic_delete(c, name);
    sns_forget(call, name);
    /* SNS: deleting a topic that does not exist is not an error */
    return st == MQ_OK || st == MQ_NOT_FOUND ? aws_reply(call, NULL)
                                             : sns_engine_failed(call, st, "Topic", NULL);
}

/* ---- the operation table ---- */

static const struct aws_operation operations[] = {
    {"CreateTopic", ROLE_ADMIN, create_topic, NULL, false},
    {"ListTopics", ROLE_SERVICE, list_topics, NULL, false},
    {"GetTopicAttributes", ROLE_SERVICE, get_topic_attributes, NULL, false},
    {"SetTopicAttributes", ROLE_ADMIN, set_topic_attributes, NULL, false},
    {"DeleteTopic", ROLE_ADMIN, delete_topic, NULL, false},
    {"Subscribe", ROLE_ADMIN, sns_subscribe, NULL, false},
    {"Unsubscribe", ROLE_ADMIN, sns_unsubscribe, NULL, false},
    {"ListSubscriptions", ROLE_SERVICE, sns_list_subscriptions, NULL, false},
    {"ListSubscriptionsByTopic", ROLE_SERVICE, sns_list_subscriptions_by_topic, NULL, false},
    {"GetSubscriptionAttributes", ROLE_SERVICE, sns_get_subscription_attributes, NULL, false},
    {"SetSubscriptionAttributes", ROLE_ADMIN, sns_set_subscription_attributes, NULL, false},
    {"Publish", ROLE_SERVICE, NULL, sns_publish, true},
    {"PublishBatch", ROLE_SERVICE, NULL, sns_publish_batch, false},
};

enum handler_result aws_sns_query(struct aws_call *call)
{
    const struct aws_operation *op =
        aws_operation_find(operations, sizeof operations / sizeof operations[0], call->op);
    if (!op)
        return aws_fail(call, WIRE_INVALID_ACTION, "The action %s is not valid for this endpoint.",
                        call->op);
    if (call->role < op->role)
        return aws_fail(call, WIRE_SNS_AUTHORIZATION,
                        "User: %s is not authorized to perform: SNS:%s (it needs a token of role "
                        "%s)",
                        call->access_key, op->name, role_name(op->role));
    return aws_operation_run(call, op);
}
