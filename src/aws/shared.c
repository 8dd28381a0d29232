/* What SQS and SNS share beyond the wire formats: reading ARNs, converting AWS message
 * attributes {DataType, StringValue|BinaryValue} into Rydes attributes {type, value}, and
 * checking the entries of a batch (1..10 objects with distinct, well-formed Ids) with the
 * error codes of the calling service. */
#include "rydes/aws.h"
#include "rydes/body.h"
#include "rydes/validate.h"

#include "rydes/mq.h"

#include <stdio.h>
#include <string.h>

const char *aws_arn_resource(const char *arn, const char *service)
{
    char prefix[48];
    snprintf(prefix, sizeof prefix, "arn:aws:%s:", service);
    if (!arn || strncmp(arn, prefix, strlen(prefix)) != 0)
        return NULL;
    const char *region = arn + strlen(prefix), *account = strchr(region, ':');
    const char *resource = account ? strchr(account + 1, ':') : NULL;
    return resource && resource[1] ? resource + 1 : NULL;
}

json_t *aws_parse_json(const char *text)
{
    char detail[128];
    return body_parse_json(text, strlen(text), NULL, detail, sizeof detail);
}

bool aws_attributes_in(json_t *in, json_t **out, char *why, size_t n)
{
    *out = json_object();
    const char *name;
    json_t *a;
    if (in && !json_is_object(in)) {
        snprintf(why, n, "MessageAttributes must be a map.");
        return false;
    }
    json_object_foreach(in, name, a)
    {
        const char *type = json_string_value(json_object_get(a, "DataType"));
        bool binary = type && strncmp(type, "Binary", 6) == 0;
        json_t *v = json_object_get(a, binary ? "BinaryValue" : "StringValue");
        if (!type || !*type || !json_is_string(v) || json_string_length(v) == 0) {
            snprintf(
                why, n, "The message attribute '%.*s' must contain a non-empty DataType and %s.",
                (int)validate_utf8_prefix(name, 100), name, binary ? "BinaryValue" : "StringValue");
            return false;
        }
        /* SQS's allowed characters: a control character could not even be sent back in XML */
        if (!wire_chars_valid(type, strlen(type)) ||
            !wire_chars_valid(json_string_value(v), json_string_length(v))) {
            snprintf(why, n,
                     "The message attribute '%.*s' contains a character that is not allowed "
                     "(only #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to "
                     "#x10FFFF).",
                     (int)validate_utf8_prefix(name, 100), name);
            return false;
        }
        json_object_set_new(*out, name, json_pack("{s:s, s:O}", "type", type, "value", v));
    }
    return true;
}

const char *aws_field_name(const char *field, const char *body)
{
    static const char *const names[][2] = {
        {"attributes", "MessageAttributes"}, {"subject", "Subject"},
        {"group_id", "MessageGroupId"},      {"dedup_id", "MessageDeduplicationId"},
        {"delay_seconds", "DelaySeconds"},
    };
    if (field && strncmp(field, "body", 4) == 0)
        return body;
    for (size_t i = 0; field && i < sizeof names / sizeof names[0]; i++)
        if (strncmp(field, names[i][0], strlen(names[i][0])) == 0)
            return names[i][1];
    return field;
}

static bool batch_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 80)
        return false;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

/* Is the Id of entry i repeated before it? */
static bool id_repeated(json_t *entries, size_t i, const char *id)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(id, json_string_value(json_object_get(json_array_get(entries, j), "Id"))) == 0)
            return true;
    return false;
}

json_t *aws_batch_entries(struct aws_call *call, const char *member,
                          const struct aws_batch_errors *errs, enum handler_result *res)
{
    json_t *entries = json_object_get(call->in, member);
    size_t n = json_array_size(entries);
    if (n == 0) {
        *res = aws_fail(call, errs->empty, "There should be at least one entry in the request.");
        return NULL;
    }
    if (n > MQ_MAX_BATCH) {
        *res = aws_fail(call, errs->too_many,
                        "Maximum number of entries per request are 10. You have sent %zu.", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(entries, i);
        const char *id = json_string_value(json_object_get(e, "Id"));
        if (!json_is_object(e) || !batch_id_valid(id)) {
            *res = aws_fail(call, errs->bad_id,
                            "A batch entry id can only contain alphanumeric characters, hyphens "
                            "and underscores. It can be at most 80 letters long.");
            return NULL;
        }
        if (id_repeated(entries, i, id)) {
            *res = aws_fail(call, errs->not_distinct, "Id %s repeated.", id);
            return NULL;
        }
    }
    return entries;
}

const struct aws_operation *aws_operation_find(const struct aws_operation *ops, size_t n,
                                               const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

/* An operation that takes its connections itself, on a data-plane thread. */
static enum handler_result run_own(struct http_request *req)
{
    struct aws_call *call = req->state;
    return call->operation->own(call);
}

/* An operation that takes a pooled connection, on a handler thread: the request's state is
 * its call (aws_dispatch). */
static enum handler_result run_with_db(struct http_request *req)
{
    struct aws_call *call = req->state;
    enum handler_result res;
    struct db_conn *c = aws_db(call, &res);
    if (!c)
        return res;
    res = call->operation->with_db(call, c);
    aws_db_release(call, c);
    return res;
}

enum handler_result aws_operation_run(struct aws_call *call, const struct aws_operation *op)
{
    if (op->own && op->hands_on)
        return op->own(call);
    call->operation = op;
    return op->own ? http_offload_data(call->req, run_own) : http_offload(call->req, run_with_db);
}
