/* SNS's Publish and PublishBatch over the engine's publish (rydes/topics.h), through the
 * process's topic cache like POST /topics/{name}/messages.
 *
 * An SNS message becomes a Rydes publish body {body, attributes, subject, group_id, dedup_id}
 * that the REST API's own validation (rydes/mq_input.h) checks, so both APIs accept the same
 * messages: Message is the body (a string), MessageAttributes {DataType, StringValue|BinaryValue}
 * are Rydes attributes {type, value}, Subject the subject, MessageGroupId and
 * MessageDeduplicationId the FIFO ids. The envelope queues receive without RawMessageDelivery
 * then carries the TopicArn as well. MessageStructure=json publishes the "default" message. */
#include "rydes/aws_sns.h"

#include "rydes/api.h"
#include "rydes/app.h"
#include "rydes/aws_sqs.h"
#include "rydes/mem.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_hub.h"
#include "rydes/mq_input.h"
#include "rydes/topic_cache.h"
#include "rydes/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One SNS message converted: the Rydes publish and what it borrows. */
struct sns_message {
    struct mq_publish p;
    json_t *body;  /* the Rydes publish body p borrows from (owned) */
    char *owned;   /* of mq_input_publish */
    char why[300]; /* the reason it was refused */
};

static void message_cleanup(struct sns_message *m)
{
    json_decref(m->body);
    free(m->owned);
}

/* The first field error of fe as SNS words it, with SNS's parameter name, into why. */
static void first_error(struct field_errors *fe, char *why, size_t n)
{
    json_t *e = json_array_get(fe->list, 0);
    const char *field = json_string_value(json_object_get(e, "field"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    field = aws_field_name(field, "Message");
    snprintf(why, n, "Invalid parameter: %s Reason: %s", field ? field : "Message",
             msg ? msg : "invalid");
}

/* The message to publish: Message, or its "default" member with MessageStructure=json. */
static json_t *message_text(json_t *e, char *why, size_t n)
{
    json_t *msg = json_object_get(e, "Message");
    const char *structure = json_string_value(json_object_get(e, "MessageStructure"));
    if (!json_is_string(msg) || json_string_length(msg) == 0) {
        snprintf(why, n, "Invalid parameter: Empty message");
        return NULL;
    }
    if (!structure)
        return json_incref(msg);
    json_t *doc = strcmp(structure, "json") == 0 ? aws_parse_json(json_string_value(msg)) : NULL;
    json_t *def = json_incref(json_object_get(doc, "default"));
    json_decref(doc);
    if (!json_is_string(def) || json_string_length(def) == 0) {
        json_decref(def);
        snprintf(why, n,
                 "Invalid parameter: Message Structure - No default entry in JSON message "
                 "body");
        return NULL;
    }
    return def;
}

/* Is v (the value of parameter name) not a string, or a string of characters SNS can send on
 * (XML 1.0's)? */
static bool chars_valid(json_t *v, const char *name, char *why, size_t n)
{
    if (!json_is_string(v) || wire_chars_valid(json_string_value(v), json_string_length(v)))
        return true;
    snprintf(why, n,
             "Invalid parameter: %s Reason: contains a character that is not allowed (only #x9 "
             "| #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF)",
             name);
    return false;
}

/* Builds the Rydes publish body of SNS entry e into m->body. */
static bool rydes_body(json_t *e, struct sns_message *m)
{
    if (!chars_valid(json_object_get(e, "Subject"), "Subject", m->why, sizeof m->why))
        return false;
    json_t *text = message_text(e, m->why, sizeof m->why), *attrs;
    if (!text)
        return false;
    if (!chars_valid(text, "Message", m->why, sizeof m->why)) { /* the default one's too */
        json_decref(text);
        return false;
    }
    if (!aws_attributes_in(json_object_get(e, "MessageAttributes"), &attrs, m->why,
                           sizeof m->why)) {
        json_decref(text);
        json_decref(attrs);
        return false;
    }
    m->body = json_pack("{s:o}", "body", text);
    if (json_object_size(attrs))
        json_object_set(m->body, "attributes", attrs);
    json_decref(attrs);
    static const char *const copied[][2] = {{"Subject", "subject"},
                                            {"MessageGroupId", "group_id"},
                                            {"MessageDeduplicationId", "dedup_id"}};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        json_t *v = json_object_get(e, copied[i][0]);
        if (v)
            json_object_set(m->body, copied[i][1], v);
    }
    return true;
}

/* Converts and validates SNS entry e for topic t (arn: its ARN, borrowed by m->p). */
static bool convert(json_t *e, const struct mq_topic *t, const char *arn, struct sns_message *m)
{
    memset(m, 0, sizeof *m);
    if (!rydes_body(e, m))
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_publish(m->body, "", &m->p, &m->owned, &fe);
    if (!fe.count)
        mq_input_publish_topic(&m->p, "", t, &fe);
    if (fe.count)
        first_error(&fe, m->why, sizeof m->why);
    field_errors_cleanup(&fe);
    m->p.topic_arn = arn;
    return m->why[0] == '\0';
}

/* The topic of the input's TopicArn (or TargetArn) from the cache, on a connection taken for
 * it: both NULL with the error answered. The caller releases both. */
static struct topic_set *publish_topic(struct aws_call *call, struct db_conn **c,
                                       enum handler_result *res)
{
    *c = NULL;
    if (sqs_str(call, "PhoneNumber"))
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: PhoneNumber Reason: SMS is not supported");
    bool target = !sqs_str(call, "TopicArn") && sqs_str(call, "TargetArn");
    const char *name = sqs_str(call, "PhoneNumber")
                           ? NULL
                           : sns_topic_name(call, target ? "TargetArn" : "TopicArn", res);
    if (!name || !(*c = aws_db(call, res)))
        return NULL;
    enum mq_status st;
    struct app *app = call->req->app;
    struct topic_set *set = topic_cache_current(app->topic_cache, app->hub, *c, name, &st);
    if (!set) {
        aws_db_release(call, *c);
        *c = NULL;
        *res = sns_engine_failed(call, st, "Topic", NULL);
    }
    return set;
}

/* Publish on a data-plane thread: every topic (FIFO, URL or mixed subscriptions, one not
 * cached yet), and those the combiner did not take. */
static enum handler_result publish_direct(struct http_request *req)
{
    struct aws_call *call = req->state;
    enum handler_result res;
    struct db_conn *c;
    struct topic_set *set = publish_topic(call, &c, &res);
    if (!set)
        return res;
    char arn[SNS_ARN_MAX];
    sns_topic_arn(call, set->topic.name, arn);
    struct sns_message m;
    struct mq_publish_result out;
    enum mq_status st = MQ_INVALID;
    if (convert(call->in, &set->topic, arn, &m))
        st = mq_publish(c, &set->topic, set->subs, set->n, &m.p, mq_hub_listened_cb,
                        call->req->app->hub, &out);
    aws_db_release(call, c);
    topic_set_release(set);
    if (st == MQ_OK)
        api_published(call->req, &out);
    res = st == MQ_OK ? aws_reply(call, json_pack("{s:s}", "MessageId", out.message_id))
          : m.why[0]  ? aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "%s", m.why)
                      : sns_engine_failed(call, st, "Topic", NULL);
    message_cleanup(&m);
    return res;
}

/* A Publish planned on its HTTP thread, while the combiner stores it (the call's op_state). */
struct planned_publish {
    struct sns_message m;
    char arn[SNS_ARN_MAX];
    struct mq_publish_plan plan; /* borrows m */
    struct mq_combined_publish cp;
    bool direct; /* the combiner did not take it: publish_direct */
};

static void planned_publish_free(void *v)
{
    struct planned_publish *pp = v;
    mq_publish_plan_clear(&pp->plan);
    message_cleanup(&pp->m);
    free(pp);
}

static enum handler_result planned_publish_stored(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct planned_publish *pp = call->op_state;
    if (pp->direct)
        return http_offload_data(req, publish_direct);
    if (pp->cp.o.status != MQ_OK)
        return sns_engine_failed(call, pp->cp.o.status, "Topic", NULL);
    struct mq_publish_result out = {.deliveries = pp->cp.deliveries};
    memcpy(out.message_id, pp->plan.message_id, sizeof out.message_id);
    api_published(req, &out);
    return aws_reply(call, json_pack("{s:s}", "MessageId", out.message_id));
}

/* Publish to a cached standard topic whose publishes are all lean, planned here and stored by
 * the combiner with those of other requests (as POST /topics/{name}/messages does); any other
 * goes to a data-plane thread whole. */
enum handler_result sns_publish(struct aws_call *call)
{
    struct http_request *req = call->req;
    if (!req->app->combiner || sqs_str(call, "PhoneNumber"))
        return http_offload_data(req, publish_direct);
    enum handler_result res;
    bool target = !sqs_str(call, "TopicArn") && sqs_str(call, "TargetArn");
    const char *name = sns_topic_name(call, target ? "TargetArn" : "TopicArn", &res);
    if (!name)
        return res;
    struct topic_set *set = api_cached_lean_topic(req, name);
    if (!set)
        return http_offload_data(req, publish_direct);
    struct planned_publish *pp = xcalloc(1, sizeof *pp);
    call->op_state = pp;
    call->op_state_free = planned_publish_free;
    sns_topic_arn(call, set->topic.name, pp->arn);
    if (!convert(call->in, &set->topic, pp->arn, &pp->m)) {
        topic_set_release(set);
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "%s", pp->m.why);
    }
    mq_publish_plan(&set->topic, set->subs, set->n, &pp->m.p, mq_hub_listened_cb, req->app->hub,
                    &pp->plan);
    topic_set_release(set);
    return api_publish_handed_over(req, &pp->cp, &pp->plan, &pp->direct, planned_publish_stored);
}

/* ---- PublishBatch ---- */

struct batch {
    json_t *ok, *failed;
    struct mq_publish_result done[MQ_MAX_BATCH];
    int ndone;
};

/* Publishes entry e of the batch into b; a database failure is returned (the batch stops). */
static enum mq_status batch_entry(struct aws_call *call, struct db_conn *c,
                                  const struct topic_set *set, const char *arn, json_t *e,
                                  struct batch *b)
{
    struct sns_message m;
    struct mq_publish_result out;
    json_t *id = json_object_get(e, "Id");
    enum mq_status st = MQ_INVALID;
    if (convert(e, &set->topic, arn, &m))
        st = mq_publish(c, &set->topic, set->subs, set->n, &m.p, mq_hub_listened_cb,
                        call->req->app->hub, &out);
    if (st == MQ_OK) {
        json_array_append_new(b->ok,
                              json_pack("{s:O, s:s}", "Id", id, "MessageId", out.message_id));
        b->done[b->ndone++] = out;
    } else if (m.why[0]) {
        json_array_append_new(b->failed, json_pack("{s:O, s:s, s:s#, s:b}", "Id", id, "Code",
                                                   "InvalidParameter", "Message", m.why,
                                                   (int)validate_utf8_prefix(m.why, strlen(m.why)),
                                                   "SenderFault", 1));
        st = MQ_OK;
    }
    message_cleanup(&m);
    return st;
}

/* A FIFO batch locks every group it names up front (see mq_publish_lock_groups). */
static enum mq_status lock_groups(struct db_conn *c, const struct topic_set *set, json_t *entries)
{
    json_t *groups = json_array(), *e;
    size_t i;
    json_array_foreach(entries, i, e)
    {
        json_t *g = json_object_get(e, "MessageGroupId");
        if (json_is_string(g) && mq_input_token_valid(json_string_value(g)))
            json_array_append(groups, g);
    }
    enum mq_status st = mq_publish_lock_groups(c, &set->topic, set->subs, set->n, groups);
    json_decref(groups);
    return st;
}

/* Publishes every entry in one transaction: a failure answered 5xx has published nothing. */
static enum mq_status batch_run(struct aws_call *call, struct db_conn *c,
                                const struct topic_set *set, json_t *entries, struct batch *b)
{
    char arn[SNS_ARN_MAX];
    sns_topic_arn(call, set->topic.name, arn);
    enum mq_status st = db_begin(c) ? MQ_OK : MQ_UNAVAILABLE;
    if (st == MQ_OK && set->topic.fifo)
        st = lock_groups(c, set, entries);
    for (size_t i = 0; st == MQ_OK && i < json_array_size(entries); i++)
        st = batch_entry(call, c, set, arn, json_array_get(entries, i), b);
    if (st == MQ_OK && !db_commit(c))
        st = MQ_UNAVAILABLE;
    if (st != MQ_OK)
        db_rollback(c);
    return st;
}

enum handler_result sns_publish_batch(struct aws_call *call)
{
    static const struct aws_batch_errors errs = {WIRE_SNS_EMPTY_BATCH, WIRE_SNS_TOO_MANY_ENTRIES,
                                                 WIRE_SNS_INVALID_BATCH_ID,
                                                 WIRE_SNS_IDS_NOT_DISTINCT};
    enum handler_result res;
    struct db_conn *c;
    struct topic_set *set = publish_topic(call, &c, &res);
    if (!set)
        return res;
    json_t *entries = aws_batch_entries(call, "PublishBatchRequestEntries", &errs, &res);
    struct batch b;
    memset(&b, 0, sizeof b);
    b.ok = json_array();
    b.failed = json_array();
    enum mq_status st = entries ? batch_run(call, c, set, entries, &b) : MQ_OK;
    aws_db_release(call, c);
    topic_set_release(set);
    for (int i = 0; entries && st == MQ_OK && i < b.ndone; i++)
        api_published(call->req, &b.done[i]); /* committed: count them, wake the push worker */
    if (entries && st == MQ_OK)
        return aws_reply(call, json_pack("{s:o, s:o}", "Successful", b.ok, "Failed", b.failed));
    json_decref(b.ok);
    json_decref(b.failed);
    return entries ? sns_engine_failed(call, st, "Topic", NULL) : res;
}
