/* SQS over the engine: the operation table with the role each operation needs (like the REST
 * API: the data plane needs `service`, management `admin`), the shared input helpers, and the
 * queue operations (create, URL, list, attributes, delete, purge, dead-letter sources, tags).
 *
 * SQS attributes map onto the queue's columns (VisibilityTimeout = visibility_timeout, ...,
 * RedrivePolicy = dead_letter_queue + max_receive_count) so a queue made through either API is
 * the same queue through the other. The data plane is in sqs_messages.c. */
#include "rydes/aws_sqs.h"

#include "rydes/app.h"
#include "rydes/clock.h"
#include "rydes/mem.h"
#include "rydes/mq_input.h"
#include "rydes/validate.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ---- */

const char *sqs_str(struct aws_call *call, const char *name)
{
    return json_string_value(json_object_get(call->in, name));
}

bool sqs_int(struct aws_call *call, const char *name, int min, int max, int *out,
             enum handler_result *res)
{
    json_t *v = json_object_get(call->in, name);
    int64_t n = 0;
    if (!v || json_is_null(v))
        return true;
    bool ok = json_is_integer(v) ? (n = json_integer_value(v), n >= min && n <= max)
                                 : validate_query_int(json_string_value(v), min, max, &n);
    if (!ok) {
        *res = aws_fail(call, WIRE_INVALID_PARAMETER,
                        "Value for parameter %s is invalid. Reason: must be an integer from %d "
                        "to %d.",
                        name, min, max);
        return false;
    }
    *out = (int)n;
    return true;
}

bool sqs_lists_bounded(struct aws_call *call, const char *const *names, enum handler_result *res)
{
    for (; *names; names++)
        if (json_array_size(json_object_get(call->in, *names)) > WIRE_QUERY_MAX_INDEX) {
            *res = aws_fail(call, WIRE_INVALID_PARAMETER,
                            "Value for parameter %s is invalid. Reason: at most %d names.", *names,
                            WIRE_QUERY_MAX_INDEX);
            return false;
        }
    return true;
}

const char *sqs_required(struct aws_call *call, const char *name, enum handler_result *res)
{
    const char *s = sqs_str(call, name);
    if (!s || !*s)
        *res = aws_fail(call, WIRE_MISSING_PARAMETER, "The request must contain the parameter %s.",
                        name);
    return s && *s ? s : NULL;
}

/* The queue name of a queue URL: its last path segment (any host, any account). */
static const char *url_queue_name(const char *url)
{
    const char *slash = strrchr(url, '/');
    return slash ? slash + 1 : url;
}

bool sqs_queue(struct aws_call *call, struct db_conn *c, struct mq_queue *q,
               enum handler_result *res)
{
    const char *url = sqs_str(call, "QueueUrl");
    const char *name = url ? url_queue_name(url) : call->path_queue;
    if (!name) {
        *res = aws_fail(call, WIRE_MISSING_PARAMETER,
                        "The request must contain the parameter QueueUrl.");
        return false;
    }
    struct ttlcache *cache = call->req->app->queue_cache;
    enum mq_status st = MQ_NOT_FOUND;
    uint64_t gen = 0;
    if (mq_input_queue_name(name)) {
        if (ttlcache_get(cache, name, strlen(name), q, &gen))
            return true;
        struct db_conn *own = c ? NULL : aws_db(call, res);
        if (!c && !own)
            return false;
        st = mq_queue_get(c ? c : own, name, q);
        if (own)
            aws_db_release(call, own);
    }
    if (st == MQ_OK) {
        ttlcache_put(cache, name, strlen(name), q, gen);
        return true;
    }
    *res = sqs_engine_failed(call, st, NULL);
    return false;
}

enum handler_result sqs_engine_failed(struct aws_call *call, enum mq_status st, const char *detail)
{
    switch (st) {
    case MQ_NOT_FOUND:
        return aws_fail(call, WIRE_QUEUE_DOES_NOT_EXIST, "The specified queue does not exist.");
    case MQ_INVALID:
    case MQ_CONFLICT:
        return aws_fail(call, WIRE_INVALID_PARAMETER, "%s",
                        detail && *detail ? detail : "The request conflicts with the queue.");
    case MQ_UNAVAILABLE:
    case MQ_BUSY:
        http_add_header(call->req, "Retry-After", "1");
        return aws_fail(call, WIRE_UNAVAILABLE, "The database could not complete the request.");
    default:
        return aws_fail(call, WIRE_INTERNAL, "The database refused the request.");
    }
}

json_t *sqs_batch_entries(struct aws_call *call, enum handler_result *res)
{
    static const struct aws_batch_errors errs = {WIRE_EMPTY_BATCH, WIRE_TOO_MANY_ENTRIES,
                                                 WIRE_INVALID_BATCH_ID, WIRE_IDS_NOT_DISTINCT};
    return aws_batch_entries(call, "Entries", &errs, res);
}

/* ---- attributes ---- */

/* Parses a RedrivePolicy {"deadLetterTargetArn", "maxReceiveCount"} into a; "" removes it. */
static bool redrive_policy(const char *text, struct mq_attrs *a)
{
    if (!*text) {
        a->dead_letter_queue[0] = '\0';
        a->max_receive_count = 0;
        return true;
    }
    json_t *p = aws_parse_json(text);
    const char *arn = json_string_value(json_object_get(p, "deadLetterTargetArn"));
    json_t *mrc = json_object_get(p, "maxReceiveCount");
    int64_t count = 0;
    bool ok = arn && strncmp(arn, "arn:", 4) == 0 &&
              (json_is_integer(mrc) ? (count = json_integer_value(mrc)) >= 1 && count <= 1000
                                    : validate_query_int(json_string_value(mrc), 1, 1000, &count));
    const char *name = ok ? aws_arn_resource(arn, "sqs") : NULL;
    ok = ok && name && mq_input_queue_name(name);
    if (ok) {
        snprintf(a->dead_letter_queue, sizeof a->dead_letter_queue, "%s", name);
        a->max_receive_count = (int)count;
    }
    json_decref(p);
    return ok;
}

static bool bool_text(const char *v, bool *out)
{
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
        return false;
    *out = strcmp(v, "true") == 0;
    return true;
}

struct int_attr {
    const char *name;
    size_t offset;
    int min, max;
};

static const struct int_attr int_attrs[] = {
    {"VisibilityTimeout", offsetof(struct mq_attrs, visibility_timeout), 0, 43200},
    {"DelaySeconds", offsetof(struct mq_attrs, delay_seconds), 0, 900},
    {"MessageRetentionPeriod", offsetof(struct mq_attrs, retention_seconds), 60, 1209600},
    {"MaximumMessageSize", offsetof(struct mq_attrs, max_message_bytes), 1024, 1048576},
    {"ReceiveMessageWaitTimeSeconds", offsetof(struct mq_attrs, receive_wait_seconds), 0, 20},
};

/* Applies one SQS attribute to a; answers InvalidAttributeName/Value and returns false. */
static bool apply_attribute(struct aws_call *call, const char *name, json_t *jv, struct mq_attrs *a,
                            bool creating, enum handler_result *res)
{
    const char *v = json_string_value(jv);
    for (size_t i = 0; i < sizeof int_attrs / sizeof int_attrs[0]; i++) {
        if (strcmp(name, int_attrs[i].name) != 0)
            continue;
        int64_t n;
        if (v && validate_query_int(v, int_attrs[i].min, int_attrs[i].max, &n)) {
            *(int *)((char *)a + int_attrs[i].offset) = (int)n;
            return true;
        }
        *res = aws_fail(call, WIRE_INVALID_ATTRIBUTE_VALUE,
                        "Invalid value for the parameter %s: an integer from %d to %d.", name,
                        int_attrs[i].min, int_attrs[i].max);
        return false;
    }
    bool b = false, ok = v != NULL; /* a value that is not a string is a bad value */
    if (strcmp(name, "RedrivePolicy") == 0)
        ok = ok && redrive_policy(v, a);
    else if (strcmp(name, "FifoQueue") == 0 && creating)
        ok = ok && bool_text(v, &b) && b == a->fifo;
    else if (strcmp(name, "ContentBasedDeduplication") == 0 && a->fifo)
        ok = ok && bool_text(v, &a->content_based_dedup);
    else if (strcmp(name, "SqsManagedSseEnabled") == 0 && ok && bool_text(v, &b) && b) {
        /* false only: saying true would claim encryption at rest nothing does */
        *res = aws_fail(call, WIRE_INVALID_ATTRIBUTE_VALUE,
                        "Invalid value for the parameter SqsManagedSseEnabled: server-side "
                        "encryption is not supported (only false).");
        return false;
    } else if (strcmp(name, "SqsManagedSseEnabled") == 0)
        ok = ok && bool_text(v, &b);
    else {
        *res = aws_fail(call, WIRE_INVALID_ATTRIBUTE_NAME, "Unknown Attribute %.100s.", name);
        return false;
    }
    if (!ok)
        *res = aws_fail(call, WIRE_INVALID_ATTRIBUTE_VALUE,
                        "Invalid value for the parameter %.100s.", name);
    return ok;
}

/* Applies every member of the input's Attributes map to a. */
static bool apply_attributes(struct aws_call *call, struct mq_attrs *a, bool creating,
                             enum handler_result *res)
{
    json_t *attrs = json_object_get(call->in, "Attributes");
    if (attrs && !json_is_object(attrs)) {
        *res = aws_fail(call, WIRE_INVALID_PARAMETER, "Attributes must be a map.");
        return false;
    }
    const char *name;
    json_t *v;
    json_object_foreach(attrs, name, v)
    {
        if (!apply_attribute(call, name, v, a, creating, res))
            return false;
    }
    return true;
}

static bool attrs_equal(const struct mq_attrs *x, const struct mq_attrs *y)
{
    return x->fifo == y->fifo && x->visibility_timeout == y->visibility_timeout &&
           x->delay_seconds == y->delay_seconds && x->retention_seconds == y->retention_seconds &&
           x->max_message_bytes == y->max_message_bytes &&
           x->receive_wait_seconds == y->receive_wait_seconds &&
           x->content_based_dedup == y->content_based_dedup &&
           strcmp(x->dead_letter_queue, y->dead_letter_queue) == 0 &&
           x->max_receive_count == y->max_receive_count;
}

/* ---- queue operations ---- */

static enum handler_result reply_url(struct aws_call *call, const char *name)
{
    char url[512];
    aws_queue_url(call, name, url, sizeof url);
    return aws_reply(call, json_pack("{s:s}", "QueueUrl", url));
}

/* ---- CreateQueue's tags (TagQueue and the others are below) ---- */

#define TAGS_MAX      50
#define TAG_KEY_MAX   128
#define TAG_VALUE_MAX 256

/* Is s a tag key (1..128 characters) or value (0..256) of characters SQS allows? */
static bool tag_text_valid(const char *s, size_t len, size_t min, size_t max)
{
    size_t n = validate_utf8_length(s);
    return n >= min && n <= max && wire_chars_valid(s, len);
}

/* 1..50 tags {key: string value}. */
static bool tags_valid(json_t *tags)
{
    const char *k;
    json_t *v;
    if (!json_is_object(tags) || json_object_size(tags) == 0 || json_object_size(tags) > TAGS_MAX)
        return false;
    json_object_foreach(tags, k, v)
    {
        if (!tag_text_valid(k, strlen(k), 1, TAG_KEY_MAX) || !json_is_string(v) ||
            !tag_text_valid(json_string_value(v), json_string_length(v), 0, TAG_VALUE_MAX))
            return false;
    }
    return true;
}

static enum handler_result bad_tags(struct aws_call *call)
{
    return aws_fail(call, WIRE_INVALID_PARAMETER,
                    "Tags must hold 1 to 50 tags, keys of 1 to 128 and string values of at most "
                    "256 characters, all of them characters SQS allows.");
}

/* The tags of CreateQueue ("tags" in JSON, Tag.N in the query protocol), NULL for none; false
 * with the error answered when they are not valid. */
static bool create_tags_input(struct aws_call *call, json_t **tags, enum handler_result *res)
{
    *tags = json_object_get(call->in, "tags");
    if (!*tags)
        *tags = json_object_get(call->in, "Tags");
    if (!*tags || (json_is_object(*tags) && json_object_size(*tags) == 0)) {
        *tags = NULL;
        return true;
    }
    if (tags_valid(*tags))
        return true;
    *res = bad_tags(call);
    return false;
}

/* Stores the tags (ctx) of a queue CreateQueue creates, in the queue's own transaction: a
 * queue is never left without the tags it was created with. A queue someone made since
 * CreateQueue looked (the upsert found it) is not overwritten: MQ_CONFLICT rolls back, and
 * CreateQueue compares with it instead. */
static enum mq_status create_tags(struct db_conn *c, const char *name, bool created, void *ctx)
{
    if (!created)
        return MQ_CONFLICT;
    if (!ctx)
        return MQ_OK;
    struct mq_queue q;
    enum mq_status st = mq_queue_get(c, name, &q);
    if (st != MQ_OK)
        return st;
    return aws_tags_put(c, q.id, ctx) == STORE_OK ? MQ_OK : MQ_UNAVAILABLE;
}

/* Creates queue name; *raced (nothing answered) when it exists by now. */
static enum handler_result create_new(struct aws_call *call, struct db_conn *c, const char *name,
                                      json_t *tags, bool *raced)
{
    enum handler_result res;
    struct mq_attrs a;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_attrs(NULL, name, &a, &fe);
    field_errors_cleanup(&fe);
    if (!apply_attributes(call, &a, true, &res))
        return res;
    bool created;
    char detail[256] = "";
    enum mq_status st =
        mq_queue_put_also(c, name, &a, &created, detail, sizeof detail, create_tags, tags);
    ttlcache_remove(call->req->app->queue_cache, name, strlen(name));
    *raced = st == MQ_CONFLICT && !detail[0];
    if (*raced)
        return HANDLER_DONE; /* not answered: the caller compares with the queue made */
    if (st != MQ_OK)
        return sqs_engine_failed(call, st == MQ_NOT_FOUND ? MQ_INVALID : st, detail);
    return reply_url(call, name);
}

/* Does CreateQueue ask for a FIFO queue (FifoQueue=true)? SQS reads a name ending in .fifo
 * without it as a standard queue's name, which cannot hold a '.' (REST goes by the name). */
static bool fifo_asked(struct aws_call *call)
{
    const char *v =
        json_string_value(json_object_get(json_object_get(call->in, "Attributes"), "FifoQueue"));
    bool b = false;
    return v && bool_text(v, &b) && b;
}

static enum handler_result create_queue(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    const char *name = sqs_required(call, "QueueName", &res);
    if (!name)
        return res;
    if (!mq_input_queue_name(name))
        return aws_fail(call, WIRE_INVALID_PARAMETER,
                        "Can only include alphanumeric characters, hyphens, or underscores. 1 to "
                        "80 in length (FIFO queue names end in .fifo).");
    if (mq_input_name_is_fifo(name) && !fifo_asked(call))
        return aws_fail(call, WIRE_INVALID_PARAMETER,
                        "A FIFO queue's name ends in .fifo and needs the attribute "
                        "FifoQueue=true; a standard queue's can only include alphanumeric "
                        "characters, hyphens, or underscores.");
    json_t *tags;
    if (!create_tags_input(call, &tags, &res))
        return res;
    struct mq_queue q;
    enum mq_status st = mq_queue_get(c, name, &q);
    bool raced = false;
    if (st == MQ_NOT_FOUND) {
        res = create_new(call, c, name, tags, &raced);
        if (!raced)
            return res;
        st = mq_queue_get(c, name, &q); /* made meanwhile by someone else */
        if (st == MQ_NOT_FOUND)         /* and deleted again since */
            return sqs_engine_failed(call, MQ_CONFLICT, NULL);
    }
    if (st != MQ_OK)
        return sqs_engine_failed(call, st, NULL);
    struct mq_attrs wanted = q.attrs;
    if (!apply_attributes(call, &wanted, true, &res))
        return res;
    if (!attrs_equal(&wanted, &q.attrs))
        return aws_fail(call, WIRE_QUEUE_EXISTS,
                        "A queue already exists with the same name and a different value for an "
                        "attribute.");
    return reply_url(call, name);
}

static enum handler_result get_queue_url(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    const char *name = sqs_required(call, "QueueName", &res);
    if (!name)
        return res;
    struct mq_queue q;
    enum mq_status st = mq_input_queue_name(name) ? mq_queue_get(c, name, &q) : MQ_NOT_FOUND;
    return st == MQ_OK ? reply_url(call, q.name) : sqs_engine_failed(call, st, NULL);
}

/* Pages of ListQueues and ListDeadLetterSourceQueues: MaxResults and NextToken. */
static bool page_input(struct aws_call *call, int *limit, const char **after,
                       enum handler_result *res)
{
    *limit = 1000;
    if (!sqs_int(call, "MaxResults", 1, 1000, limit, res))
        return false;
    *after = sqs_str(call, "NextToken");
    if (*after && !mq_input_queue_name(*after)) {
        *res = aws_fail(call, WIRE_INVALID_PARAMETER, "Invalid NextToken value.");
        return false;
    }
    if (!*after)
        *after = "";
    return true;
}

/* Appends the URLs of names with prefix to urls until it holds limit; *last is the name of
 * the last one appended (a copy, caller frees). */
static void free_names(char **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* One page of names (those with QueueNamePrefix, filtered by the database) after NextToken;
 * NextToken again while more follow, when MaxResults asked for pages. */
static enum handler_result list_queues(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    int limit;
    const char *after;
    if (!page_input(call, &limit, &after, &res))
        return res;
    const char *prefix = sqs_str(call, "QueueNamePrefix");
    char **names;
    int count;
    bool more;
    enum mq_status st = prefix && *prefix
                            ? mq_queue_list_prefix(c, after, prefix, limit, &names, &count, &more)
                            : mq_queue_list(c, after, limit, &names, &count, &more);
    if (st != MQ_OK)
        return sqs_engine_failed(call, st, NULL);
    json_t *urls = json_array();
    char url[512];
    for (int i = 0; i < count; i++) {
        aws_queue_url(call, names[i], url, sizeof url);
        json_array_append_new(urls, json_string(url));
    }
    json_t *out = json_pack("{s:o}", "QueueUrls", urls);
    if (more && count && json_object_get(call->in, "MaxResults"))
        json_object_set_new(out, "NextToken", json_string(names[count - 1]));
    free_names(names, count);
    return aws_reply(call, out);
}

static const char *const attribute_names[] = {
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
    NULL,
};

static void set_int(json_t *o, const char *name, long long v)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", v);
    json_object_set_new(o, name, json_string(s));
}

/* Every attribute of q with its stats, as SQS names and formats them (all strings). */
static json_t *all_attributes(struct aws_call *call, const struct mq_queue *q,
                              const struct mq_stats *s)
{
    const struct mq_attrs *a = &q->attrs;
    json_t *o = json_object();
    int64_t created_us = 0;
    clock_parse_rfc3339(q->created_at, &created_us);
    set_int(o, "ApproximateNumberOfMessages", s->available);
    set_int(o, "ApproximateNumberOfMessagesNotVisible", s->in_flight);
    set_int(o, "ApproximateNumberOfMessagesDelayed", s->delayed);
    set_int(o, "CreatedTimestamp", created_us / 1000000);
    set_int(o, "LastModifiedTimestamp", created_us / 1000000);
    char arn[256];
    aws_arn(call, "sqs", q->name, arn, sizeof arn);
    json_object_set_new(o, "QueueArn", json_string(arn));
    for (size_t i = 0; i < sizeof int_attrs / sizeof int_attrs[0]; i++)
        set_int(o, int_attrs[i].name, *(const int *)((const char *)a + int_attrs[i].offset));
    if (a->dead_letter_queue[0]) {
        char dlq[256];
        aws_arn(call, "sqs", a->dead_letter_queue, dlq, sizeof dlq);
        json_t *p = json_pack("{s:s, s:i}", "deadLetterTargetArn", dlq, "maxReceiveCount",
                              a->max_receive_count);
        char *policy = p ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        if (policy)
            json_object_set_new(o, "RedrivePolicy", json_string(policy));
        free(policy);
    }
    if (a->fifo) {
        json_object_set_new(o, "FifoQueue", json_string("true"));
        json_object_set_new(o, "ContentBasedDeduplication",
                            json_string(a->content_based_dedup ? "true" : "false"));
    }
    json_object_set_new(o, "SqsManagedSseEnabled", json_string("false"));
    return o;
}

static bool known_attribute(const char *name)
{
    for (int i = 0; attribute_names[i]; i++)
        if (strcmp(name, attribute_names[i]) == 0)
            return true;
    return strcmp(name, "All") == 0;
}

static enum handler_result get_queue_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    static const char *const lists[] = {"AttributeNames", NULL};
    if (!sqs_lists_bounded(call, lists, &res))
        return res;
    json_t *names = json_object_get(call->in, "AttributeNames"), *n;
    size_t i;
    bool all = false;
    json_array_foreach(names, i, n)
    {
        const char *s = json_string_value(n);
        if (!s || !known_attribute(s))
            return aws_fail(call, WIRE_INVALID_ATTRIBUTE_NAME, "Unknown Attribute %.100s.",
                            s ? s : "");
        all = all || strcmp(s, "All") == 0;
    }
    struct mq_stats s;
    enum mq_status st = mq_queue_stats(c, &q, &s);
    if (st != MQ_OK)
        return sqs_engine_failed(call, st, NULL);
    json_t *every = all_attributes(call, &q, &s), *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(every, key, v)
    {
        bool wanted = all;
        json_array_foreach(names, i, n) wanted = wanted || strcmp(json_string_value(n), key) == 0;
        if (wanted)
            json_object_set(out, key, v);
    }
    json_decref(every);
    return aws_reply(call, json_object_size(out) ? json_pack("{s:o}", "Attributes", out)
                                                 : (json_decref(out), json_object()));
}

/* SetQueueAttributes' change of the queue's attributes (mq_queue_change): res answers a
 * refusal. */
struct set_attrs {
    struct aws_call *call;
    enum handler_result res;
};

static bool set_attrs_change(struct mq_attrs *a, void *ctx)
{
    struct set_attrs *s = ctx;
    return apply_attributes(s->call, a, false, &s->res);
}

static enum handler_result set_queue_attributes(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    json_t *attrs = json_object_get(call->in, "Attributes");
    if (!json_is_object(attrs) || json_object_size(attrs) == 0)
        return aws_fail(call, WIRE_MISSING_PARAMETER,
                        "The request must contain the parameter Attributes.");
    if (json_object_get(attrs, "FifoQueue"))
        return aws_fail(call, WIRE_INVALID_ATTRIBUTE_NAME,
                        "FifoQueue can be set only when the queue is created.");
    /* the named attributes only, on the queue as it is now (not a cached copy): concurrent
     * changes of other attributes hold, and a queue deleted meanwhile is not made again */
    struct set_attrs s = {call, 0};
    bool changed;
    char detail[256] = "";
    enum mq_status st =
        mq_queue_change(c, q.name, set_attrs_change, &s, &changed, detail, sizeof detail);
    ttlcache_remove(call->req->app->queue_cache, q.name, strlen(q.name));
    if (st == MQ_OK && !changed)
        return s.res;
    return st == MQ_OK ? aws_reply(call, NULL) : sqs_engine_failed(call, st, detail);
}

static enum handler_result delete_queue(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    enum mq_status st = mq_queue_delete(c, q.name);
    /* queues that dead-lettered into it were detached: forget every cached queue */
    ttlcache_clear(call->req->app->queue_cache);
    return st == MQ_OK ? aws_reply(call, NULL) : sqs_engine_failed(call, st, NULL);
}

static enum handler_result purge_queue(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    enum mq_status st = mq_purge(c, &q);
    return st == MQ_OK ? aws_reply(call, NULL) : sqs_engine_failed(call, st, NULL);
}

static enum handler_result dead_letter_sources(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    int limit;
    const char *after;
    if (!sqs_queue(call, c, &q, &res) || !page_input(call, &limit, &after, &res))
        return res;
    json_t *names;
    bool more;
    enum store_result r = aws_dead_letter_sources(c, q.id, after, limit, &names, &more);
    if (r != STORE_OK)
        return sqs_engine_failed(call, r == STORE_UNAVAILABLE ? MQ_UNAVAILABLE : MQ_ERROR, NULL);
    json_t *urls = json_array(), *n;
    size_t i;
    char url[512];
    json_array_foreach(names, i, n)
    {
        aws_queue_url(call, json_string_value(n), url, sizeof url);
        json_array_append_new(urls, json_string(url));
    }
    json_t *out = json_pack("{s:o}", "queueUrls", urls);
    if (more && json_array_size(names))
        json_object_set(out, "NextToken", json_array_get(names, json_array_size(names) - 1));
    json_decref(names);
    return aws_reply(call, out);
}

/* ---- TagQueue, UntagQueue, ListQueueTags ---- */

static enum handler_result tag_store_result(struct aws_call *call, enum store_result r, json_t *out)
{
    if (r == STORE_OK)
        return aws_reply(call, out);
    json_decref(out);
    return sqs_engine_failed(call,
                             r == STORE_UNAVAILABLE ? MQ_UNAVAILABLE
                             : r == STORE_NOT_FOUND ? MQ_NOT_FOUND
                                                    : MQ_ERROR,
                             NULL);
}

static enum handler_result tag_queue(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    json_t *tags = json_object_get(call->in, "Tags");
    if (!tags_valid(tags))
        return bad_tags(call);
    return tag_store_result(call, aws_tags_put(c, q.id, tags), NULL);
}

static enum handler_result untag_queue(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    json_t *keys = json_object_get(call->in, "TagKeys"), *k;
    size_t i;
    bool ok = json_array_size(keys) > 0 && json_array_size(keys) <= TAGS_MAX;
    json_array_foreach(keys, i, k) ok =
        ok && json_is_string(k) &&
        tag_text_valid(json_string_value(k), json_string_length(k), 1, TAG_KEY_MAX);
    if (!ok)
        return aws_fail(call, WIRE_INVALID_PARAMETER,
                        "TagKeys must list 1 to 50 keys of 1 to 128 characters SQS allows.");
    return tag_store_result(call, aws_tags_remove(c, q.id, keys), NULL);
}

static enum handler_result list_queue_tags(struct aws_call *call, struct db_conn *c)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, c, &q, &res))
        return res;
    json_t *tags = NULL;
    enum store_result r = aws_tags_get(c, q.id, &tags);
    json_t *out = json_object();
    if (r == STORE_OK && json_object_size(tags))
        json_object_set(out, "Tags", tags);
    json_decref(tags);
    return tag_store_result(call, r, out);
}

/* ---- the operation table ---- */

static const struct aws_operation operations[] = {
    {"CreateQueue", ROLE_ADMIN, create_queue, NULL, false},
    {"GetQueueUrl", ROLE_SERVICE, get_queue_url, NULL, false},
    {"ListQueues", ROLE_SERVICE, list_queues, NULL, false},
    {"GetQueueAttributes", ROLE_SERVICE, get_queue_attributes, NULL, false},
    {"SetQueueAttributes", ROLE_ADMIN, set_queue_attributes, NULL, false},
    {"DeleteQueue", ROLE_ADMIN, delete_queue, NULL, false},
    {"PurgeQueue", ROLE_ADMIN, purge_queue, NULL, false},
    {"ListDeadLetterSourceQueues", ROLE_SERVICE, dead_letter_sources, NULL, false},
    {"TagQueue", ROLE_ADMIN, tag_queue, NULL, false},
    {"UntagQueue", ROLE_ADMIN, untag_queue, NULL, false},
    {"ListQueueTags", ROLE_SERVICE, list_queue_tags, NULL, false},
    /* app tokens may send into prebooking-submission only; the operation checks */
    {"SendMessage", ROLE_APP, NULL, sqs_send_message, true},
    {"SendMessageBatch", ROLE_SERVICE, NULL, sqs_send_message_batch, false}, /* as messages:batch */
    {"ReceiveMessage", ROLE_SERVICE, NULL, sqs_receive_message, true},
    {"DeleteMessage", ROLE_SERVICE, NULL, sqs_delete_message, true},
    {"DeleteMessageBatch", ROLE_SERVICE, NULL, sqs_delete_message_batch, false},
    {"ChangeMessageVisibility", ROLE_SERVICE, NULL, sqs_change_visibility, false},
    {"ChangeMessageVisibilityBatch", ROLE_SERVICE, NULL, sqs_change_visibility_batch, false},
};

enum handler_result aws_sqs(struct aws_call *call)
{
    const struct aws_operation *op =
        aws_operation_find(operations, sizeof operations / sizeof operations[0], call->op);
    if (!op)
        return call->protocol == AWS_PROTOCOL_JSON
                   ? aws_fail(call, WIRE_UNKNOWN_OPERATION, "Unknown operation %s.", call->op)
                   : aws_fail(call, WIRE_INVALID_ACTION,
                              "The action %s is not valid for this endpoint.", call->op);
    if (call->role < op->role)
        return aws_fail(call, WIRE_ACCESS_DENIED,
                        "Access to the resource is denied: %s needs a token of role %s.", op->name,
                        role_name(op->role));
    return aws_operation_run(call, op);
}
