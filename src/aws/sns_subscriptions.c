/* SNS's subscription operations over the engine's subscriptions (rydes/topics.h): Subscribe,
 * Unsubscribe, ListSubscriptions(ByTopic) and Get/SetSubscriptionAttributes; the operation
 * table that runs them is in sns.c.
 *
 * Subscribe names the subscriptions it makes from their endpoint ("sqs-QUEUE", or "url-" and a
 * hash of the URL) and is idempotent for a topic and endpoint, as SNS is. Subscription
 * attributes map onto the subscription's columns: FilterPolicy = filter_policy (compiled by the
 * same filter engine: an invalid one is InvalidParameter with the reason), FilterPolicyScope =
 * filter_scope, RawMessageDelivery = raw_delivery, RedrivePolicy = dead_letter_queue and
 * DeliveryPolicy's healthyRetryPolicy = the retry policy (both of URL subscriptions). */
#include "rydes/aws_sns.h"

#include "rydes/aws_sqs.h"
#include "rydes/mq_input.h"
#include "rydes/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNS_PAGE 100 /* subscriptions per page of a listing, as SNS pages them */

static void subscription_arn(struct aws_call *call, const char *topic, const char *name, char *out)
{
    char resource[MQ_TOPIC_NAME_MAX + MQ_NAME_MAX + 2];
    snprintf(resource, sizeof resource, "%s:%s", topic, name);
    aws_arn(call, "sns", resource, out, SNS_ARN_MAX);
}

/* ---- subscription attributes ---- */

/* A subscription being made or changed: the engine's input and what it borrows. */
struct sub_change {
    struct mq_subscription_input in;
    json_t *policy; /* owned reference, or NULL */
    char dlq[MQ_NAME_MAX + 1];
    bool url;        /* an http/https subscription */
    bool new_policy; /* the request gave the policy (a stored one keeps the rules it met) */
};

static void change_cleanup(struct sub_change *ch)
{
    json_decref(ch->policy);
}

static bool fail_attr(struct aws_call *call, const char *name, const char *why,
                      enum handler_result *res)
{
    *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: %.64s Reason: %s", name,
                    why);
    return false;
}

static bool redrive_attr(struct aws_call *call, const char *v, struct sub_change *ch,
                         enum handler_result *res)
{
    if (!ch->url)
        return fail_attr(call, "RedrivePolicy", "Rydes dead-letters http/https subscriptions only",
                         res);
    json_t *p = *v ? aws_parse_json(v) : NULL;
    const char *q =
        aws_arn_resource(json_string_value(json_object_get(p, "deadLetterTargetArn")), "sqs");
    bool ok = !*v || (q && mq_input_queue_name(q));
    if (ok)
        snprintf(ch->dlq, sizeof ch->dlq, "%s", *v ? q : "");
    json_decref(p);
    ch->in.dead_letter_queue = ch->dlq[0] ? ch->dlq : NULL;
    return ok || fail_attr(call, "RedrivePolicy", "needs a deadLetterTargetArn of a queue", res);
}

/* Member name of policy h as an integer, def when it is absent; *ok false when it is there but
 * not an integer. */
static json_int_t policy_int(json_t *h, const char *name, json_int_t def, bool *ok)
{
    json_t *v = json_object_get(h, name);
    *ok = *ok && (!v || json_is_integer(v));
    return v ? json_integer_value(v) : def;
}

/* DeliveryPolicy {"healthyRetryPolicy": {numRetries, minDelayTarget, maxDelayTarget}}, each
 * SNS's default when absent (3, 20, 20). */
static bool delivery_attr(struct aws_call *call, const char *v, struct sub_change *ch,
                          enum handler_result *res)
{
    if (!ch->url)
        return fail_attr(call, "DeliveryPolicy", "applies to http/https subscriptions", res);
    json_t *p = aws_parse_json(v), *h = json_object_get(p, "healthyRetryPolicy");
    bool ok = json_is_object(h);
    json_int_t retries = policy_int(h, "numRetries", 3, &ok);
    json_int_t lo = policy_int(h, "minDelayTarget", 20, &ok);
    json_int_t hi = policy_int(h, "maxDelayTarget", 20, &ok);
    ok = ok && retries >= 0 && retries <= 99 && lo >= 1 && hi <= 3600 && lo <= hi;
    json_decref(p);
    if (!ok)
        return fail_attr(call, "DeliveryPolicy",
                         "needs healthyRetryPolicy {numRetries 0..99, minDelayTarget >= 1, "
                         "maxDelayTarget <= 3600}",
                         res);
    ch->in.max_attempts = (int)retries + 1;
    ch->in.min_delay_seconds = (int)lo;
    ch->in.max_delay_seconds = (int)hi;
    return true;
}

static bool policy_attr(struct aws_call *call, const char *v, struct sub_change *ch,
                        enum handler_result *res)
{
    if (strlen(v) > FILTER_MAX_POLICY_BYTES)
        return fail_attr(call, "FilterPolicy", "must be at most 256 KB", res);
    json_decref(ch->policy);
    ch->policy = *v ? aws_parse_json(v) : NULL;
    ch->in.filter_policy = ch->policy;
    ch->new_policy = true;
    if (*v && !json_is_object(ch->policy))
        return fail_attr(call, "FilterPolicy", "must be a JSON object", res);
    return true;
}

/* Applies one subscription attribute to ch. */
static bool sub_attribute(struct aws_call *call, const char *name, const char *v,
                          struct sub_change *ch, enum handler_result *res)
{
    if (!v)
        return fail_attr(call, name, "the value must be a string", res);
    if (strcmp(name, "RawMessageDelivery") == 0)
        return sns_bool(v, &ch->in.raw) || fail_attr(call, name, "must be true or false", res);
    if (strcmp(name, "FilterPolicyScope") == 0) {
        bool body = strcmp(v, "MessageBody") == 0;
        enum filter_scope was = ch->in.scope;
        ch->in.scope = body ? FILTER_SCOPE_BODY : FILTER_SCOPE_ATTRIBUTES;
        ch->new_policy |= ch->in.scope != was; /* read anew: the rules of new policies */
        return body || strcmp(v, "MessageAttributes") == 0 ||
               fail_attr(call, name, "must be MessageAttributes or MessageBody", res);
    }
    if (strcmp(name, "FilterPolicy") == 0)
        return policy_attr(call, v, ch, res);
    if (strcmp(name, "RedrivePolicy") == 0)
        return redrive_attr(call, v, ch, res);
    if (strcmp(name, "DeliveryPolicy") == 0)
        return delivery_attr(call, v, ch, res);
    return fail_attr(call, "AttributeName", "not a subscription attribute Rydes supports", res);
}

/* Compiles the change's policy for its scope, as the REST API does before storing it: one the
 * request gave meets the rules of new policies; a stored one (another attribute changes) those
 * it was saved under. */
static bool policy_compiles(struct aws_call *call, struct sub_change *ch, enum handler_result *res)
{
    if (!ch->policy)
        return true;
    char err[256];
    struct filter_policy *p = ch->new_policy
                                  ? filter_compile_new(ch->policy, ch->in.scope, err, sizeof err)
                                  : filter_compile(ch->policy, ch->in.scope, err, sizeof err);
    filter_free(p);
    if (!p)
        *res =
            aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: FilterPolicy: %s", err);
    return p != NULL;
}

/* The change that keeps subscription s as it is (borrowing from s). */
static void change_of(const struct mq_subscription *s, struct sub_change *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->url = s->url != NULL;
    ch->in.queue = s->url ? NULL : s->queue;
    ch->in.url = s->url;
    snprintf(ch->dlq, sizeof ch->dlq, "%s", s->dead_letter_queue);
    ch->in.dead_letter_queue = ch->dlq[0] ? ch->dlq : NULL;
    ch->in.max_attempts = s->max_attempts;
    ch->in.min_delay_seconds = s->min_delay_seconds;
    ch->in.max_delay_seconds = s->max_delay_seconds;
    ch->policy = json_incref(s->filter_policy);
    ch->in.filter_policy = ch->policy;
    ch->in.scope = s->scope;
    ch->in.raw = s->raw;
}

/* ---- subscriptions ---- */

/* Reads the input's SubscriptionArn into its topic and name. */
static bool subscription_names(struct aws_call *call, char *topic, char *name,
                               enum handler_result *res)
{
    const char *r = aws_arn_resource(sqs_str(call, "SubscriptionArn"), "sns");
    const char *colon = r ? strchr(r, ':') : NULL;
    bool ok = colon && (size_t)(colon - r) <= MQ_TOPIC_NAME_MAX && strlen(colon + 1) <= MQ_NAME_MAX;
    if (ok) {
        snprintf(topic, MQ_TOPIC_NAME_MAX + 1, "%.*s", (int)(colon - r), r);
        snprintf(name, MQ_NAME_MAX + 1, "%s", colon + 1);
        ok = mq_topic_name_valid(topic) && mq_input_queue_name(name);
    }
    if (!ok)
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: SubscriptionArn");
    return ok;
}

/* A subscription of a topic with everything its topic has: the caller frees subs. */
struct found_sub {
    struct mq_topic topic;
    struct mq_subscription *subs;
    int n;
    const struct mq_subscription *sub;
};

/* Finds the subscription the input's SubscriptionArn names; NotFound when there is none. */
static bool find_subscription(struct aws_call *call, struct db_conn *c, struct found_sub *f,
                              enum handler_result *res)
{
    char topic[MQ_TOPIC_NAME_MAX + 1], name[MQ_NAME_MAX + 1];
    memset(f, 0, sizeof *f);
    if (!subscription_names(call, topic, name, res))
        return false;
    enum mq_status st = mq_topic_get(c, topic, &f->topic);
    if (st == MQ_OK)
        st = mq_subscriptions_load(c, &f->topic, &f->subs, &f->n);
    for (int i = 0; st == MQ_OK && i < f->n && !f->sub; i++)
        if (strcmp(f->subs[i].name, name) == 0)
            f->sub = &f->subs[i];
    if (st == MQ_OK && !f->sub)
        st = MQ_NOT_FOUND;
    if (st != MQ_OK) {
        mq_subscriptions_free(f->subs, f->n);
        f->subs = NULL;
        *res = sns_engine_failed(call, st, "Subscription", NULL);
    }
    return st == MQ_OK;
}

/* Reads Protocol and Endpoint into ch (queue name into queue). */
static bool subscribe_target(struct aws_call *call, struct sub_change *ch, char *queue,
                             enum handler_result *res)
{
    const char *proto = sqs_str(call, "Protocol"), *ep = sqs_str(call, "Endpoint");
    char why[128];
    if (!proto || !*proto || !ep || !*ep)
        return fail_attr(call, proto && *proto ? "Endpoint" : "Protocol",
                         "no value for required parameter", res);
    if (strcmp(proto, "sqs") == 0) {
        const char *q = aws_arn_resource(ep, "sqs");
        if (!q || !mq_input_queue_name(q))
            return fail_attr(call, "Endpoint", "an sqs endpoint must be a queue ARN", res);
        snprintf(queue, MQ_NAME_MAX + 1, "%s", q);
        ch->in.queue = queue;
        return true;
    }
    if (strcmp(proto, "http") && strcmp(proto, "https")) {
        *res = aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Amazon SNS does not support this protocol string: "
                        "%.32s",
                        proto);
        return false;
    }
    if (strncmp(ep, proto, strlen(proto)) != 0 || strncmp(ep + strlen(proto), "://", 3) != 0)
        return fail_attr(call, "Endpoint", "the URL's scheme must be the protocol", res);
    if (strlen(ep) > MQ_URL_MAX || !mq_input_url(ep, why, sizeof why))
        return fail_attr(call, "Endpoint", strlen(ep) > MQ_URL_MAX ? "too long" : why, res);
    ch->in.url = ep;
    ch->url = true;
    return true;
}

/* The stable name of a subscription Subscribe makes: "sqs-QUEUE" (the dot of .fifo a dash; a
 * topic holds only standard or only FIFO queues) or "url-" and 24 hex digits of the URL's
 * SHA-256; hashed too when the queue's name is too long. */
static void subscription_name(const struct sub_change *ch, char *out)
{
    const char *target = ch->in.url ? ch->in.url : ch->in.queue;
    char hex[65];
    secret_sha256_hex(target, strlen(target), hex);
    if (ch->in.url || strlen(ch->in.queue) + 4 > MQ_NAME_MAX) {
        snprintf(out, MQ_NAME_MAX + 1, "%s-%.24s", ch->in.url ? "url" : "sqs", hex);
        return;
    }
    snprintf(out, MQ_NAME_MAX + 1, "sqs-%s", ch->in.queue);
    char *dot = strchr(out, '.');
    if (dot)
        *dot = '-';
}

/* The subscription of f (all of a topic) that delivers where ch does, or NULL. */
static const struct mq_subscription *same_target(const struct found_sub *f,
                                                 const struct sub_change *ch)
{
    for (int i = 0; i < f->n; i++) {
        const struct mq_subscription *s = &f->subs[i];
        if (s->url ? ch->in.url && strcmp(s->url, ch->in.url) == 0
                   : ch->in.queue && strcmp(s->queue, ch->in.queue) == 0)
            return s;
    }
    return NULL;
}

/* Does s have what ch asks for? The delivery and redrive policies are compared when the
 * request names them (named: its Attributes). */
static bool same_attributes(const struct mq_subscription *s, const struct sub_change *ch,
                            json_t *named)
{
    bool policies = (!s->filter_policy && !ch->policy) ||
                    (s->filter_policy && ch->policy && json_equal(s->filter_policy, ch->policy));
    bool delivery = !json_object_get(named, "DeliveryPolicy") ||
                    (s->max_attempts == ch->in.max_attempts &&
                     s->min_delay_seconds == ch->in.min_delay_seconds &&
                     s->max_delay_seconds == ch->in.max_delay_seconds);
    bool redrive =
        !json_object_get(named, "RedrivePolicy") || strcmp(s->dead_letter_queue, ch->dlq) == 0;
    return policies && s->raw == ch->in.raw && (!ch->policy || s->scope == ch->in.scope) &&
           delivery && redrive;
}

/* Applies Subscribe's Attributes map to ch. */
static bool subscribe_attributes(struct aws_call *call, struct sub_change *ch,
                                 enum handler_result *res)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(call->in, "Attributes"), k, v)
    {
        if (!sub_attribute(call, k, json_string_value(v), ch, res))
            return false;
    }
    return policy_compiles(call, ch, res);
}

/* Answers Subscribe for s, the subscription of f's topic that already delivers where ch does. */
static enum handler_result subscribe_existing(struct aws_call *call, const struct found_sub *f,
                                              const struct mq_subscription *s,
                                              const struct sub_change *ch)
{
    json_t *named = json_object_get(call->in, "Attributes");
    if (json_object_size(named) && !same_attributes(s, ch, named))
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: Attributes Reason: Subscription already exists with "
                        "different attributes");
    char arn[SNS_ARN_MAX];
    subscription_arn(call, f->topic.name, s->name, arn);
    return aws_reply(call, json_pack("{s:s}", "SubscriptionArn", arn));
}

static enum handler_result name_taken(struct aws_call *call, const char *name)
{
    return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                    "Invalid parameter: the subscription name %s is taken by another endpoint",
                    name);
}

/* Reads f's subscriptions again after another request changed them. */
static enum mq_status reload_subscriptions(struct db_conn *c, struct found_sub *f)
{
    mq_subscriptions_free(f->subs, f->n);
    f->subs = NULL;
    f->n = 0;
    return mq_subscriptions_load(c, &f->topic, &f->subs, &f->n);
}

/* Answers the subscription of f's topic that delivers where ch does, storing it when there is
 * none. Creates only: when another
 * Subscribe (or a PUT) made a subscription of that name since f was read, f is read again and
 * that one answered as an existing subscription, never overwritten; one deleted again meanwhile
 * is tried anew (three times in all). */
static enum handler_result subscribe_stored(struct aws_call *call, struct db_conn *c,
                                            struct found_sub *f, struct sub_change *ch)
{
    char name[MQ_NAME_MAX + 1], detail[256] = "", arn[SNS_ARN_MAX];
    subscription_name(ch, name);
    ch->in.only_new = true;
    enum mq_status st = MQ_OK;
    bool made_by_another = true; /* so far: the subscriptions f was read with */
    for (int attempt = 0; made_by_another; attempt++) {
        const struct mq_subscription *s = same_target(f, ch);
        if (s)
            return subscribe_existing(call, f, s, ch);
        for (int i = 0; i < f->n; i++)
            if (strcmp(f->subs[i].name, name) == 0) /* a REST subscription with that name */
                return name_taken(call, name);
        if (attempt == 3) /* made and deleted again under each of three attempts */
            break;
        bool created;
        st =
            mq_subscription_put(c, &f->topic, name, &ch->in, &created, detail, sizeof detail, NULL);
        sns_forget(call, f->topic.name);
        if (st != MQ_OK)
            break;
        made_by_another = !created;
        if (made_by_another && (st = reload_subscriptions(c, f)) != MQ_OK)
            break;
    }
    if (st == MQ_OK && made_by_another)
        st = MQ_BUSY;
    if (st != MQ_OK)
        return sns_engine_failed(call, st == MQ_NOT_FOUND ? MQ_INVALID : st, "Topic", detail);
    subscription_arn(call, f->topic.name, name, arn);
    return aws_reply(call, json_pack("{s:s}", "SubscriptionArn", arn));
}

static enum handler_result subscribe_on(struct aws_call *call, struct db_conn *c,
                                        struct found_sub *f, struct sub_change *ch, char *queue)
{
    enum handler_result res;
    if (!subscribe_target(call, ch, queue, &res) || !subscribe_attributes(call, ch, &res))
        return res;
    return subscribe_stored(call, c, f, ch);
}

enum handler_result sns_subscribe(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct found_sub f;
    memset(&f, 0, sizeof f);
    if (!sns_topic(call, c, &f.topic, &res))
        return res;
    enum mq_status st = mq_subscriptions_load(c, &f.topic, &f.subs, &f.n);
    if (st != MQ_OK)
        return sns_engine_failed(call, st, "Topic", NULL);
    struct sub_change ch; /* the retry policy is stored for every kind, as REST does */
    memset(&ch, 0, sizeof ch);
    ch.in.max_attempts = MQ_PUSH_ATTEMPTS_DEFAULT;
    ch.in.min_delay_seconds = MQ_PUSH_MIN_DELAY_DEFAULT;
    ch.in.max_delay_seconds = MQ_PUSH_MAX_DELAY_DEFAULT;
    char queue[MQ_NAME_MAX + 1];
    res = subscribe_on(call, c, &f, &ch, queue);
    change_cleanup(&ch);
    mq_subscriptions_free(f.subs, f.n);
    return res;
}

enum handler_result sns_unsubscribe(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    char topic[MQ_TOPIC_NAME_MAX + 1], name[MQ_NAME_MAX + 1];
    if (!subscription_names(call, topic, name, &res))
        return res;
    struct mq_topic t;
    enum mq_status st = mq_topic_get(c, topic, &t);
    if (st == MQ_OK)
        st = mq_subscription_delete(c, &t, name);
    sns_forget(call, topic);
    /* gone already (or its topic): done, as SNS answers, so that a retried or repeated teardown
     * does not fail */
    return st == MQ_OK || st == MQ_NOT_FOUND ? aws_reply(call, NULL)
                                             : sns_engine_failed(call, st, "Subscription", NULL);
}

/* Protocol and Endpoint of a subscription delivering to queue or url (one is ""). */
static void endpoint_of(struct aws_call *call, const char *queue, const char *url, char *proto,
                        char *endpoint, size_t n)
{
    if (*url) {
        snprintf(proto, 8, "%s", strncmp(url, "https:", 6) == 0 ? "https" : "http");
        snprintf(endpoint, n, "%s", url);
    } else {
        snprintf(proto, 8, "sqs");
        aws_arn(call, "sqs", queue, endpoint, n);
    }
}

/* A row of aws_subscriptions_list as SNS lists a subscription. */
static json_t *listed_subscription(struct aws_call *call, json_t *row)
{
    const char *topic = json_string_value(json_object_get(row, "topic"));
    char arn[SNS_ARN_MAX], tarn[SNS_ARN_MAX], proto[8], ep[MQ_URL_MAX + 1];
    subscription_arn(call, topic, json_string_value(json_object_get(row, "name")), arn);
    sns_topic_arn(call, topic, tarn);
    endpoint_of(call, json_string_value(json_object_get(row, "queue")),
                json_string_value(json_object_get(row, "url")), proto, ep, sizeof ep);
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "SubscriptionArn", arn, "Owner", AWS_ACCOUNT_ID,
                     "Protocol", proto, "Endpoint", ep, "TopicArn", tarn);
}

/* Lists a page of subscriptions of topic (NULL: of all) after the input's NextToken
 * ("TOPIC:SUBSCRIPTION"). */
static enum handler_result list_page(struct aws_call *call, struct db_conn *c, const char *topic)
{
    const char *token = sqs_str(call, "NextToken");
    char after_topic[MQ_TOPIC_NAME_MAX + 1] = "", after_name[MQ_NAME_MAX + 1] = "";
    const char *colon = token ? strchr(token, ':') : NULL;
    if (token &&
        (!colon || (size_t)(colon - token) > MQ_TOPIC_NAME_MAX || strlen(colon + 1) > MQ_NAME_MAX))
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER, "Invalid parameter: NextToken");
    if (token) {
        snprintf(after_topic, sizeof after_topic, "%.*s", (int)(colon - token), token);
        snprintf(after_name, sizeof after_name, "%s", colon + 1);
    }
    json_t *rows, *row;
    bool more;
    enum store_result r =
        aws_subscriptions_list(c, topic, after_topic, after_name, SNS_PAGE, &rows, &more);
    if (r != STORE_OK)
        return sns_engine_failed(call, r == STORE_UNAVAILABLE ? MQ_UNAVAILABLE : MQ_ERROR, "Topic",
                                 NULL);
    json_t *list = json_array();
    size_t i;
    json_array_foreach(rows, i, row) json_array_append_new(list, listed_subscription(call, row));
    json_t *out = json_pack("{s:o}", "Subscriptions", list);
    if (more && json_array_size(rows)) {
        row = json_array_get(rows, json_array_size(rows) - 1);
        char next[MQ_TOPIC_NAME_MAX + MQ_NAME_MAX + 2];
        snprintf(next, sizeof next, "%s:%s", json_string_value(json_object_get(row, "topic")),
                 json_string_value(json_object_get(row, "name")));
        json_object_set_new(out, "NextToken", json_string(next));
    }
    json_decref(rows);
    return aws_reply(call, out);
}

enum handler_result sns_list_subscriptions(struct aws_call *call, struct db_conn *c)
{
    return list_page(call, c, NULL);
}

enum handler_result sns_list_subscriptions_by_topic(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_topic t;
    return sns_topic(call, c, &t, &res) ? list_page(call, c, t.name) : res;
}

/* The policies of a URL subscription, as SNS shows them. */
static void url_attributes(struct aws_call *call, const struct mq_subscription *s, json_t *a)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"healthyRetryPolicy\":{\"numRetries\":%d,\"minDelayTarget\":%d,"
             "\"maxDelayTarget\":%d}}",
             s->max_attempts - 1, s->min_delay_seconds, s->max_delay_seconds);
    json_object_set_new(a, "DeliveryPolicy", json_string(text));
    json_object_set_new(a, "EffectiveDeliveryPolicy", json_string(text));
    if (!s->dead_letter_queue[0])
        return;
    char dlq[SNS_ARN_MAX];
    aws_arn(call, "sqs", s->dead_letter_queue, dlq, sizeof dlq);
    snprintf(text, sizeof text, "{\"deadLetterTargetArn\":\"%s\"}", dlq);
    json_object_set_new(a, "RedrivePolicy", json_string(text));
}

static json_t *subscription_attributes(struct aws_call *call, const struct found_sub *f)
{
    const struct mq_subscription *s = f->sub;
    char arn[SNS_ARN_MAX], tarn[SNS_ARN_MAX], proto[8], ep[MQ_URL_MAX + 1];
    subscription_arn(call, f->topic.name, s->name, arn);
    sns_topic_arn(call, f->topic.name, tarn);
    endpoint_of(call, s->queue, s->url ? s->url : "", proto, ep, sizeof ep);
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "SubscriptionArn", arn,
                          "TopicArn", tarn, "Owner", AWS_ACCOUNT_ID, "Protocol", proto, "Endpoint",
                          ep, "ConfirmationWasAuthenticated", "true", "PendingConfirmation",
                          "false", "RawMessageDelivery", s->raw ? "true" : "false",
                          "SubscriptionPrincipal", "arn:aws:iam::" AWS_ACCOUNT_ID ":root");
    if (s->filter_policy) {
        char *text = json_dumps(s->filter_policy, JSON_COMPACT);
        json_object_set_new(a, "FilterPolicy", json_string(text ? text : "{}"));
        free(text);
        json_object_set_new(
            a, "FilterPolicyScope",
            json_string(s->scope == FILTER_SCOPE_BODY ? "MessageBody" : "MessageAttributes"));
    }
    if (s->url)
        url_attributes(call, s, a);
    return a;
}

enum handler_result sns_get_subscription_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct found_sub f;
    if (!find_subscription(call, c, &f, &res))
        return res;
    json_t *a = subscription_attributes(call, &f);
    mq_subscriptions_free(f.subs, f.n);
    return aws_reply(call, json_pack("{s:o}", "Attributes", a));
}

/* SetSubscriptionAttributes' change inside its transaction (c), under the subscription's row
 * lock: true when written (the caller answers after its commit), false with *res answered. */
static bool change_subscription(struct aws_call *call, struct db_conn *c, const char *name,
                                enum handler_result *res)
{
    struct found_sub f;
    if (!find_subscription(call, c, &f, res))
        return false;
    struct sub_change ch;
    change_of(f.sub, &ch);
    const char *value = sqs_str(call, "AttributeValue");
    bool ok =
        sub_attribute(call, name, value ? value : "", &ch, res) && policy_compiles(call, &ch, res);
    if (ok) {
        bool created;
        char detail[256] = "";
        enum mq_status st = mq_subscription_put(c, &f.topic, f.sub->name, &ch.in, &created, detail,
                                                sizeof detail, NULL);
        ok = st == MQ_OK;
        if (!ok)
            *res = sns_engine_failed(call, st == MQ_NOT_FOUND ? MQ_INVALID : st, "Subscription",
                                     detail);
    }
    change_cleanup(&ch);
    mq_subscriptions_free(f.subs, f.n);
    return ok;
}

enum handler_result sns_set_subscription_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    const char *name = sqs_str(call, "AttributeName");
    if (!name || !*name)
        return aws_fail(call, WIRE_SNS_INVALID_PARAMETER,
                        "Invalid parameter: AttributeName Reason: no value for required "
                        "parameter");
    char topic[MQ_TOPIC_NAME_MAX + 1], sub[MQ_NAME_MAX + 1];
    if (!subscription_names(call, topic, sub, &res))
        return res;
    /* the subscription as it is, locked: a concurrent change of another attribute holds, and
     * one unsubscribed meanwhile is NotFound, not made again */
    if (!db_begin(c))
        return sns_engine_failed(call, MQ_UNAVAILABLE, "Subscription", NULL);
    enum mq_status st = mq_subscription_lock(c, topic, sub);
    if (st != MQ_OK) {
        db_rollback(c);
        return sns_engine_failed(call, st, "Subscription", NULL);
    }
    if (!change_subscription(call, c, name, &res)) {
        db_rollback(c);
        return res;
    }
    if (!db_commit(c)) {
        db_rollback(c);
        return sns_engine_failed(call, MQ_UNAVAILABLE, "Subscription", NULL);
    }
    sns_forget(call, topic);
    return aws_reply(call, NULL);
}
