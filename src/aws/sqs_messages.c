/* The SQS data plane over the engine: SendMessage(Batch), ReceiveMessage with long polling,
 * DeleteMessage(Batch) and ChangeMessageVisibility(Batch).
 *
 * An SQS message becomes a Rydes send entry ({body, attributes, delay_seconds, group_id,
 * dedup_id}) that the REST API's own validation (rydes/mq_input.h) checks, so both APIs accept
 * the same messages. SQS message attributes {DataType, StringValue|BinaryValue} are Rydes
 * attributes {type, value} (Binary values stay base64). A receive that finds nothing suspends
 * the request and waits on the process's hub exactly like POST /queues/{name}/messages:receive:
 * no thread and no pooled connection are held while it waits. Receipts are ReceiptHandles.
 * SendMessage, ReceiveMessage and DeleteMessage of standard queues go through the process's
 * combiner (rydes/mq_combiner.h) as their REST counterparts do. */
#include "rydes/aws_sqs.h"

#include "rydes/app.h"
#include "rydes/clock.h"
#include "rydes/md5attrs.h"
#include "rydes/mem.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_hub.h"
#include "rydes/mq_input.h"
#include "rydes/mq_poll.h"
#include "rydes/prebookings.h"
#include "rydes/secret.h"
#include "rydes/validate.h"
#include "rydes/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- send ---- */

/* May the call's role send into q? Apps only into prebooking-submission (API.md), and only one
 * message at a time: SendMessageBatch needs `service`, like POST /queues/{name}/messages:batch. */
static bool may_send(struct aws_call *call, const struct mq_queue *q, enum handler_result *res)
{
    if (call->role >= ROLE_SERVICE || strcmp(q->name, PREBOOKINGS_SUBMISSION_QUEUE) == 0)
        return true;
    *res = aws_fail(call, WIRE_ACCESS_DENIED,
                    "Access to the resource is denied: an app token may send only into %s.",
                    PREBOOKINGS_SUBMISSION_QUEUE);
    return false;
}

struct entry_error {
    enum wire_err code;
    char message[256];
};

static bool entry_fail(struct entry_error *err, enum wire_err code, const char *message)
{
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", message);
    return false;
}

/* SQS MessageAttributes -> Rydes attributes (new object in *out). */
static bool convert_attributes(json_t *in, json_t **out, struct entry_error *err)
{
    err->code = WIRE_INVALID_PARAMETER;
    return aws_attributes_in(in, out, err->message, sizeof err->message);
}

/* SQS MessageSystemAttributes: AWSTraceHeader, a String, is the only one (tracing SDKs add it).
 * A new object in *system, or NULL when e has none. It is answered with its digest
 * (MD5OfMessageSystemAttributes, which SDKs check) and not stored. */
static bool convert_system(json_t *e, json_t **system, struct entry_error *err)
{
    *system = NULL;
    json_t *in = json_object_get(e, "MessageSystemAttributes");
    if (!in)
        return true;
    if (!json_is_object(in))
        return entry_fail(err, WIRE_INVALID_PARAMETER, "MessageSystemAttributes must be a map.");
    json_t *attrs;
    bool ok = aws_attributes_in(in, &attrs, err->message, sizeof err->message);
    err->code = WIRE_INVALID_PARAMETER;
    const char *name;
    json_t *a;
    json_object_foreach(attrs, name, a)
    {
        if (!ok)
            break;
        if (strcmp(name, "AWSTraceHeader") != 0)
            ok = entry_fail(err, WIRE_INVALID_PARAMETER,
                            "Message system attribute name is invalid: only AWSTraceHeader is "
                            "supported.");
        else if (strcmp(json_string_value(json_object_get(a, "type")), "String") != 0)
            ok = entry_fail(err, WIRE_INVALID_PARAMETER,
                            "Message system attribute AWSTraceHeader must be of DataType "
                            "String.");
    }
    if (ok && json_object_size(attrs))
        *system = attrs;
    else
        json_decref(attrs);
    return ok;
}

/* Checks the FIFO parameters of e against q the way SQS words its errors. */
static bool fifo_checks(json_t *e, const struct mq_queue *q, struct entry_error *err)
{
    bool group = json_object_get(e, "MessageGroupId") != NULL;
    bool dedup = json_object_get(e, "MessageDeduplicationId") != NULL;
    if (!q->attrs.fifo && (group || dedup))
        return entry_fail(err, WIRE_INVALID_PARAMETER,
                          "MessageGroupId and MessageDeduplicationId are valid for FIFO queues "
                          "only.");
    if (q->attrs.fifo && !group)
        return entry_fail(err, WIRE_MISSING_PARAMETER,
                          "The request must contain the parameter MessageGroupId.");
    if (q->attrs.fifo && !dedup && !q->attrs.content_based_dedup)
        return entry_fail(err, WIRE_INVALID_PARAMETER,
                          "The queue should either have ContentBasedDeduplication enabled or "
                          "MessageDeduplicationId provided explicitly.");
    if (q->attrs.fifo && json_object_get(e, "DelaySeconds"))
        return entry_fail(err, WIRE_INVALID_PARAMETER,
                          "The request include parameter DelaySeconds that is not valid for "
                          "this queue type.");
    return true;
}

/* Reads DelaySeconds (a JSON integer or a decimal string) into the Rydes entry. */
static bool convert_delay(json_t *e, json_t *out, struct entry_error *err)
{
    json_t *d = json_object_get(e, "DelaySeconds");
    int64_t n = 0;
    if (!d)
        return true;
    bool ok = json_is_integer(d) ? (n = json_integer_value(d), n >= 0 && n <= 900)
                                 : validate_query_int(json_string_value(d), 0, 900, &n);
    if (!ok)
        return entry_fail(err, WIRE_INVALID_PARAMETER,
                          "Value for parameter DelaySeconds is invalid. Reason: must be from 0 "
                          "to 900.");
    json_object_set_new(out, "delay_seconds", json_integer(n));
    return true;
}

/* An SQS send entry as the Rydes send body (new object in *out, NULL on error). */
static bool convert_entry(json_t *e, const struct mq_queue *q, json_t **out, json_t **system,
                          struct entry_error *err)
{
    *out = NULL;
    *system = NULL;
    json_t *body = json_object_get(e, "MessageBody");
    if (!json_is_string(body) || json_string_length(body) == 0)
        return entry_fail(err, WIRE_MISSING_PARAMETER,
                          "The request must contain the parameter MessageBody.");
    if (!wire_chars_valid(json_string_value(body), json_string_length(body)))
        return entry_fail(err, WIRE_INVALID_MESSAGE_CONTENTS,
                          "Invalid binary character in the message body: see the allowed "
                          "characters of SQS.");
    json_t *attrs = NULL;
    if (!fifo_checks(e, q, err))
        return false;
    if (!convert_attributes(json_object_get(e, "MessageAttributes"), &attrs, err)) {
        json_decref(attrs); /* made even when it fails */
        return false;
    }
    *out = json_pack("{s:O}", "body", body);
    if (json_object_size(attrs))
        json_object_set(*out, "attributes", attrs);
    json_decref(attrs);
    json_t *g = json_object_get(e, "MessageGroupId"),
           *d = json_object_get(e, "MessageDeduplicationId");
    if (g)
        json_object_set(*out, "group_id", g);
    if (d)
        json_object_set(*out, "dedup_id", d);
    if (!convert_delay(e, *out, err) || !convert_system(e, system, err)) {
        json_decref(*out);
        *out = NULL;
        return false;
    }
    return true;
}

struct sqs_send {
    int n;
    json_t *bodies[MQ_MAX_BATCH]; /* the Rydes send bodies the entries borrow from */
    json_t *system[MQ_MAX_BATCH]; /* MessageSystemAttributes, answered by digest, or NULL */
    struct mq_send_entry entries[MQ_MAX_BATCH];
    char *owned[MQ_MAX_BATCH];
    const char *ids[MQ_MAX_BATCH]; /* batch entry ids (borrowed from the input) */
    struct mq_send_result results[MQ_MAX_BATCH];
};

static void send_cleanup(struct sqs_send *s)
{
    for (int i = 0; i < s->n; i++) {
        json_decref(s->bodies[i]);
        json_decref(s->system[i]);
        free(s->owned[i]);
    }
}

/* Converts and validates one SQS entry into s; false with err filled. */
static bool send_add(struct sqs_send *s, json_t *e, const struct mq_queue *q,
                     struct entry_error *err)
{
    json_t *body, *system;
    if (!convert_entry(e, q, &body, &system, err))
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    int k = s->n;
    mq_input_send_entry(body, "", q, &s->entries[k], &s->owned[k], &fe);
    if (fe.count) {
        json_t *first = json_array_get(fe.list, 0);
        snprintf(err->message, sizeof err->message, "%s %s",
                 aws_field_name(json_string_value(json_object_get(first, "field")), "MessageBody"),
                 json_string_value(json_object_get(first, "message")));
        err->code = WIRE_INVALID_PARAMETER;
        field_errors_cleanup(&fe);
        free(s->owned[k]);
        json_decref(body);
        json_decref(system);
        return false;
    }
    field_errors_cleanup(&fe);
    s->bodies[k] = body;
    s->system[k] = system;
    s->n++;
    return true;
}

/* The SQS result of entry k: MessageId, MD5OfMessageBody, MD5OfMessageAttributes,
 * MD5OfMessageSystemAttributes, SequenceNumber. */
static json_t *send_result(const struct sqs_send *s, int k, bool fifo)
{
    char md5[33], amd5[33];
    const struct mq_send_entry *e = &s->entries[k];
    secret_md5_hex(e->body, e->body_len, md5);
    json_t *o =
        json_pack("{s:s, s:s}", "MessageId", s->results[k].message_id, "MD5OfMessageBody", md5);
    if (e->attributes && md5attrs_hex(e->attributes, amd5))
        json_object_set_new(o, "MD5OfMessageAttributes", json_string(amd5));
    if (s->system[k] && md5attrs_hex(s->system[k], amd5))
        json_object_set_new(o, "MD5OfMessageSystemAttributes", json_string(amd5));
    if (fifo) {
        char seq[24];
        snprintf(seq, sizeof seq, "%020lld", s->results[k].sequence);
        json_object_set_new(o, "SequenceNumber", json_string(seq));
    }
    return o;
}

/* Takes a connection and the call's queue; NULL with the failure answered. */
static struct db_conn *queue_conn(struct aws_call *call, struct mq_queue *q,
                                  enum handler_result *res)
{
    struct db_conn *c = aws_db(call, res);
    if (c && !sqs_queue(call, c, q, res)) {
        aws_db_release(call, c);
        return NULL;
    }
    return c;
}

/* A SendMessage in progress: its entry, and the send while the combiner has it. */
struct send_call {
    struct sqs_send s;
    struct mq_combined_send cs;
    bool direct; /* the combiner did not take it: send on a data-plane thread */
};

static void send_call_free(void *state)
{
    struct send_call *sc = state;
    send_cleanup(&sc->s);
    free(sc);
}

static void resume_done(struct mq_combined *o)
{
    http_resume(o->ctx);
}

static enum handler_result reply_sent(struct aws_call *call, const struct send_call *sc,
                                      enum mq_status st)
{
    return st == MQ_OK ? aws_reply(call, send_result(&sc->s, 0, sc->cs.q.attrs.fifo))
                       : sqs_engine_failed(call, st, NULL);
}

/* Sends on a pooled connection, on a data-plane thread (http_offload_data). */
static enum handler_result send_now(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct send_call *sc = call->op_state;
    enum handler_result res;
    struct db_conn *c = aws_db(call, &res);
    if (!c)
        return res;
    enum mq_status st = prebookings_mq_send(c, &sc->cs.q, sc->s.entries, 1, sc->s.results,
                                            mq_hub_listened(call->req->app->hub, sc->cs.q.id));
    aws_db_release(call, c);
    return reply_sent(call, sc, st);
}

static enum handler_result send_finished(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct send_call *sc = call->op_state;
    if (sc->direct)
        return http_offload_data(req, send_now);
    sc->s.results[0] = sc->cs.result;
    return reply_sent(call, sc, sc->cs.o.status);
}

/* Standard queues nobody long-polls go through the combiner, but prebooking-submission, as the
 * REST send does. */
enum handler_result sqs_send_message(struct aws_call *call)
{
    enum handler_result res;
    struct send_call *sc = xcalloc(1, sizeof *sc);
    call->op_state = sc;
    call->op_state_free = send_call_free;
    if (!sqs_queue(call, NULL, &sc->cs.q, &res) || !may_send(call, &sc->cs.q, &res))
        return res;
    struct entry_error err;
    if (!send_add(&sc->s, call->in, &sc->cs.q, &err))
        return aws_fail(call, err.code, "%s", err.message);
    struct mq_combiner *cb = call->req->app->combiner;
    if (!cb || sc->cs.q.attrs.fifo || mq_hub_listened(call->req->app->hub, sc->cs.q.id) ||
        prebookings_queue_holds_tasks(&sc->cs.q))
        return http_offload_data(call->req, send_now);
    sc->cs.o = (struct mq_combined){.status = MQ_ERROR, .done = resume_done, .ctx = call->req};
    sc->cs.e = &sc->s.entries[0];
    enum handler_result suspended = http_suspend(call->req, send_finished);
    if (!mq_combiner_send(cb, &sc->cs)) {
        sc->direct = true;
        http_resume(call->req);
    }
    return suspended;
}

static json_t *failed_entry(const char *id, enum wire_err code, const char *message)
{
    const struct wire_error *info = wire_error_info(code);
    /* "s#": a message cut short mid-character would make json_pack fail, and the entry would
     * be in neither list */
    return json_pack("{s:s, s:b, s:s, s:s#}", "Id", id, "SenderFault", info->sender, "Code",
                     info->code, "Message", message,
                     (int)validate_utf8_prefix(message, strlen(message)));
}

/* Converts every entry: valid ones into s, the others into failed. */
static void send_collect(json_t *entries, const struct mq_queue *q, struct sqs_send *s,
                         json_t *failed)
{
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        struct entry_error err;
        const char *id = json_string_value(json_object_get(e, "Id"));
        if (send_add(s, e, q, &err))
            s->ids[s->n - 1] = id;
        else
            json_array_append_new(failed, failed_entry(id, err.code, err.message));
    }
}

enum handler_result sqs_send_message_batch(struct aws_call *call)
{
    enum handler_result res;
    json_t *entries = sqs_batch_entries(call, &res);
    if (!entries)
        return res;
    struct mq_queue q;
    struct db_conn *c = queue_conn(call, &q, &res);
    if (!c)
        return res;
    if (!may_send(call, &q, &res)) {
        aws_db_release(call, c);
        return res;
    }
    struct sqs_send s = {0};
    json_t *failed = json_array(), *ok = json_array();
    send_collect(entries, &q, &s, failed);
    enum mq_status st = s.n ? prebookings_mq_send(c, &q, s.entries, s.n, s.results,
                                                  mq_hub_listened(call->req->app->hub, q.id))
                            : MQ_OK;
    aws_db_release(call, c);
    for (int k = 0; st == MQ_OK && k < s.n; k++) {
        json_t *r = send_result(&s, k, q.attrs.fifo);
        json_object_set_new(r, "Id", json_string(s.ids[k]));
        json_array_append_new(ok, r);
    }
    send_cleanup(&s);
    if (st != MQ_OK) {
        json_decref(ok);
        json_decref(failed);
        return sqs_engine_failed(call, st, NULL);
    }
    return aws_reply(call, json_pack("{s:o, s:o}", "Successful", ok, "Failed", failed));
}

/* ---- receive ---- */

static long long epoch_ms(const char *rfc3339)
{
    int64_t us = 0;
    return rfc3339 && rfc3339[0] && clock_parse_rfc3339(rfc3339, &us) ? us / 1000 : 0;
}

/* Does name match one of the selection's names ("All", ".*", "prefix.*" or a name)? */
static bool selected(json_t *names, const char *name)
{
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        const char *s = json_string_value(n);
        size_t len = s ? strlen(s) : 0;
        if (!s)
            continue;
        if (strcmp(s, "All") == 0 || strcmp(s, ".*") == 0 || strcmp(s, name) == 0)
            return true;
        if (len > 2 && strcmp(s + len - 2, ".*") == 0 && strncmp(s, name, len - 1) == 0)
            return true;
    }
    return false;
}

static void put_system(json_t *out, json_t *wanted, const char *name, const char *value)
{
    if (value && selected(wanted, name))
        json_object_set_new(out, name, json_string(value));
}

/* The system attributes the receive asked for (AttributeNames and
 * MessageSystemAttributeNames). */
static json_t *system_attributes(struct aws_call *call, const struct mq_message *m, bool fifo)
{
    json_t *wanted = json_array(), *n;
    size_t i;
    json_array_foreach(json_object_get(call->in, "AttributeNames"), i, n)
        json_array_append(wanted, n);
    json_array_foreach(json_object_get(call->in, "MessageSystemAttributeNames"), i, n)
        json_array_append(wanted, n);
    json_t *out = json_object();
    char sent[24], first[24], count[16], seq[24];
    snprintf(sent, sizeof sent, "%lld", epoch_ms(m->sent_at));
    snprintf(first, sizeof first, "%lld", epoch_ms(m->first_received_at));
    snprintf(count, sizeof count, "%d", m->receive_count);
    snprintf(seq, sizeof seq, "%020lld", m->id);
    put_system(out, wanted, "SentTimestamp", sent);
    put_system(out, wanted, "ApproximateReceiveCount", count);
    put_system(out, wanted, "ApproximateFirstReceiveTimestamp",
               m->first_received_at[0] ? first : sent);
    put_system(out, wanted, "SenderId", AWS_ACCOUNT_ID);
    if (fifo) {
        put_system(out, wanted, "MessageGroupId", m->group_id);
        put_system(out, wanted, "SequenceNumber", seq);
    }
    json_decref(wanted);
    return out;
}

/* Over the query protocol the characters XML cannot carry arrive as U+FFFD (text sent through
 * the REST API may hold them), and the digests the client checks must be of the text it reads:
 * true with that text in b when s[0..n) is not delivered as it is. */
static bool delivered_otherwise(struct aws_call *call, const char *s, size_t n, struct buf *b)
{
    if (call->protocol != AWS_PROTOCOL_QUERY || wire_chars_valid(s, n))
        return false;
    wire_xml_clean(b, s, n);
    return true;
}

/* The MD5 of s as the client reads it back, into md5. */
static void delivered_md5(struct aws_call *call, const char *s, char *md5)
{
    struct buf b;
    buf_init(&b);
    if (delivered_otherwise(call, s, strlen(s), &b))
        secret_md5_hex(buf_str(&b), b.len, md5);
    else
        secret_md5_hex(s, strlen(s), md5);
    buf_cleanup(&b);
}

/* A string of an attribute as the client reads it back (a new reference). */
static json_t *as_delivered(struct aws_call *call, json_t *text)
{
    struct buf b;
    buf_init(&b);
    json_t *out = json_is_string(text) && delivered_otherwise(call, json_string_value(text),
                                                              json_string_length(text), &b)
                      ? json_stringn(buf_str(&b), b.len)
                      : json_incref(text);
    buf_cleanup(&b);
    return out;
}

/* The message attributes the receive asked for, in SQS's shape; their MD5 into md5. */
static json_t *message_attributes(struct aws_call *call, const struct mq_message *m, char *md5)
{
    json_t *names = json_object_get(call->in, "MessageAttributeNames");
    json_t *rydes = json_object(), *out = json_object(), *a;
    const char *name;
    json_object_foreach(m->attributes, name, a)
    {
        if (!selected(names, name))
            continue;
        const char *type = json_string_value(json_object_get(a, "type"));
        bool binary = type && strncmp(type, "Binary", 6) == 0;
        json_t *value = json_object_get(a, "value");
        json_t *read =
            json_pack("{s:o, s:o}", "type", as_delivered(call, json_object_get(a, "type")), "value",
                      binary ? json_incref(value) : as_delivered(call, value));
        json_object_set_new(rydes, name, read ? read : json_incref(a));
        json_object_set_new(out, name,
                            json_pack("{s:s?, s:O}", "DataType", type,
                                      binary ? "BinaryValue" : "StringValue",
                                      json_object_get(a, "value")));
    }
    if (!md5attrs_hex(rydes, md5))
        md5[0] = '\0';
    json_decref(rydes);
    return out;
}

static json_t *message_json(struct aws_call *call, const struct mq_message *m, bool fifo)
{
    char md5[33], amd5[33];
    delivered_md5(call, m->body, md5);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "MessageId", m->message_id, "ReceiptHandle",
                          m->receipt, "MD5OfBody", md5, "Body", m->body);
    if (!o)
        return json_pack("{s:s}", "MessageId", m->message_id);
    json_t *sys = system_attributes(call, m, fifo);
    if (json_object_size(sys))
        json_object_set(o, "Attributes", sys);
    json_decref(sys);
    json_t *attrs = message_attributes(call, m, amd5);
    if (json_object_size(attrs)) {
        json_object_set_new(o, "MD5OfMessageAttributes", json_string(amd5));
        json_object_set(o, "MessageAttributes", attrs);
    }
    json_decref(attrs);
    return o;
}

static enum handler_result reply_messages(struct aws_call *call, const struct mq_queue *q,
                                          struct mq_message *msgs, int count)
{
    json_t *list = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(list, message_json(call, &msgs[i], q->attrs.fifo));
    mq_messages_free(msgs, count);
    json_t *out = json_object();
    if (count)
        json_object_set_new(out, "Messages", list);
    else
        json_decref(list);
    return aws_reply(call, out);
}

static bool client_gone(void *call)
{
    return http_client_gone(((struct aws_call *)call)->req);
}

static void resume(void *call)
{
    http_resume(((struct aws_call *)call)->req);
}

static enum handler_result receive_attempt(struct http_request *req);

/* Answers with what a claim found, or suspends the request to wait for more. */
static enum handler_result answer_or_wait(struct aws_call *call, enum mq_status st,
                                          struct mq_message *msgs, int count)
{
    struct mq_poll *p = call->op_state;
    if (st != MQ_OK)
        return sqs_engine_failed(call, st, NULL);
    if (count > 0 || !mq_poll_may_wait(p))
        return reply_messages(call, &p->q, msgs, count);
    mq_messages_free(msgs, count);
    enum handler_result suspended = http_suspend(call->req, receive_attempt);
    mq_poll_wait(p);
    return suspended;
}

/* Claims on a pooled connection (http_offload_work's work). */
static void receive_claim(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct app *app = req->app;
    mq_poll_receive_pooled(call->op_state, app->pool, (int)app->cfg->db_acquire_timeout_ms);
}

static enum handler_result receive_claimed(struct http_request *req)
{
    struct aws_call *call = req->state;
    enum db_acquire_error why;
    enum mq_status st;
    struct mq_message *msgs;
    int count;
    if (!mq_poll_received(call->op_state, &why, &st, &msgs, &count)) {
        http_add_header(req, "Retry-After", "1");
        return aws_fail(call, WIRE_UNAVAILABLE, "The database is unavailable; retry.");
    }
    return answer_or_wait(call, st, msgs, count);
}

/* A claim of its own, on a data-plane thread. */
static enum handler_result receive_now(struct aws_call *call)
{
    return http_offload_work(call->req, receive_claim, receive_claimed);
}

/* The combiner has claimed (or refused the claim). */
static enum handler_result receive_taken(struct http_request *req)
{
    struct aws_call *call = req->state;
    enum mq_status st;
    struct mq_message *msgs;
    int count;
    if (!mq_poll_taken(call->op_state, &st, &msgs, &count))
        return receive_now(call);
    return answer_or_wait(call, st, msgs, count);
}

/* One receive attempt (the protocol of rydes/mq_poll.h, as the REST receive). */
static enum handler_result receive_attempt(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct mq_poll *p = call->op_state;
    switch (mq_poll_begin(p)) {
    case MQ_POLL_FULL:
        http_add_header(req, "Retry-After", "1");
        return aws_fail(call, WIRE_UNAVAILABLE, "Too many long polls are waiting; retry.");
    case MQ_POLL_EMPTY:
        return reply_messages(call, &p->q, NULL, 0);
    case MQ_POLL_GO:
        break;
    }
    if (!mq_poll_combines(p))
        return receive_now(call);
    enum handler_result suspended = http_suspend(req, receive_taken);
    if (!mq_poll_hand_over(p)) /* stopping, or busy with others: claim apart */
        http_resume(req);
    return suspended;
}

enum handler_result sqs_receive_message(struct aws_call *call)
{
    enum handler_result res;
    struct mq_queue q;
    if (!sqs_queue(call, NULL, &q, &res))
        return res;
    int max = 1, visibility = q.attrs.visibility_timeout, wait = q.attrs.receive_wait_seconds;
    static const char *const lists[] = {"AttributeNames", "MessageSystemAttributeNames",
                                        "MessageAttributeNames", NULL};
    if (!sqs_int(call, "MaxNumberOfMessages", 1, MQ_MAX_BATCH, &max, &res) ||
        !sqs_int(call, "VisibilityTimeout", 0, 43200, &visibility, &res) ||
        !sqs_int(call, "WaitTimeSeconds", 0, 20, &wait, &res) ||
        !sqs_lists_bounded(call, lists, &res))
        return res;
    struct mq_poll *p = xcalloc(1, sizeof *p);
    call->op_state = p;
    call->op_state_free = mq_poll_free;
    mq_poll_init(p, call->req->app->hub, call->req->app->combiner, &q, max, visibility, false, wait,
                 client_gone, resume, call);
    mq_poll_follow(p, call->req->app->queue_cache);
    return receive_attempt(call->req);
}

/* ---- delete and visibility ---- */

static const char *receipt_problem(enum mq_status st)
{
    return st == MQ_CONFLICT ? "The receipt handle has expired: the message was received again."
                             : "The input receipt handle is not a valid receipt handle.";
}

static enum handler_result receipt_outcome(struct aws_call *call, enum mq_status st)
{
    if (st == MQ_OK)
        return aws_reply(call, NULL);
    if (st == MQ_CONFLICT || st == MQ_NOT_FOUND)
        return aws_fail(call, WIRE_RECEIPT_INVALID, "%s", receipt_problem(st));
    return sqs_engine_failed(call, st, NULL);
}

/* A DeleteMessage while the combiner or a data-plane thread has it. */
struct delete_call {
    struct mq_combined_delete d;
    bool direct; /* the combiner did not take it: delete on a data-plane thread */
};

/* Deletes on a pooled connection, on a data-plane thread (http_offload_data). */
static enum handler_result delete_now(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct delete_call *dc = call->op_state;
    enum handler_result res;
    struct db_conn *c = aws_db(call, &res);
    if (!c)
        return res;
    enum mq_status st = mq_delete(c, &dc->d.q, dc->d.receipt);
    aws_db_release(call, c);
    return receipt_outcome(call, st);
}

static enum handler_result delete_finished(struct http_request *req)
{
    struct aws_call *call = req->state;
    struct delete_call *dc = call->op_state;
    return dc->direct ? http_offload_data(req, delete_now) : receipt_outcome(call, dc->d.o.status);
}

/* Deletes from standard queues go through the combiner, as the REST delete does. */
enum handler_result sqs_delete_message(struct aws_call *call)
{
    enum handler_result res;
    const char *receipt = sqs_required(call, "ReceiptHandle", &res);
    struct mq_queue q;
    if (!receipt || !sqs_queue(call, NULL, &q, &res))
        return res;
    struct delete_call *dc = xcalloc(1, sizeof *dc);
    call->op_state = dc;
    call->op_state_free = free;
    dc->d = (struct mq_combined_delete){
        .o = {.status = MQ_ERROR, .done = resume_done, .ctx = call->req},
        .q = q,
        .receipt = receipt};
    struct mq_combiner *cb = call->req->app->combiner;
    if (!cb || q.attrs.fifo)
        return http_offload_data(call->req, delete_now);
    enum handler_result suspended = http_suspend(call->req, delete_finished);
    if (!mq_combiner_delete(cb, &dc->d)) {
        dc->direct = true;
        http_resume(call->req);
    }
    return suspended;
}

enum handler_result sqs_change_visibility(struct aws_call *call)
{
    enum handler_result res;
    const char *receipt = sqs_required(call, "ReceiptHandle", &res);
    int vt = -1;
    if (!receipt || !sqs_int(call, "VisibilityTimeout", 0, 43200, &vt, &res))
        return res;
    if (vt < 0)
        return aws_fail(call, WIRE_MISSING_PARAMETER,
                        "The request must contain the parameter VisibilityTimeout.");
    struct mq_queue q;
    struct db_conn *c = queue_conn(call, &q, &res);
    if (!c)
        return res;
    enum mq_status st = mq_change_visibility(c, &q, receipt, vt);
    aws_db_release(call, c);
    return receipt_outcome(call, st);
}

/* What is wrong with a batch entry before the engine sees it (message NULL: nothing). */
struct entry_problem {
    enum wire_err code;
    const char *message;
};

static const struct entry_problem missing_receipt = {
    WIRE_MISSING_PARAMETER, "The request must contain the parameter ReceiptHandle."};

/* Files the outcome of batch entry e under ok or failed; false for a fatal engine failure. */
static bool file_outcome(json_t *e, const struct entry_problem *p, enum mq_status st, json_t *ok,
                         json_t *failed)
{
    const char *id = json_string_value(json_object_get(e, "Id"));
    if (p->message)
        json_array_append_new(failed, failed_entry(id, p->code, p->message));
    else if (st == MQ_OK)
        json_array_append_new(ok, json_pack("{s:s}", "Id", id));
    else if (st == MQ_CONFLICT || st == MQ_NOT_FOUND)
        json_array_append_new(failed, failed_entry(id, WIRE_RECEIPT_INVALID, receipt_problem(st)));
    else
        return false;
    return true;
}

static enum handler_result reply_outcomes(struct aws_call *call, json_t *entries,
                                          const struct entry_problem *problems,
                                          const enum mq_status *out)
{
    json_t *ok = json_array(), *failed = json_array();
    for (size_t i = 0; i < json_array_size(entries); i++) {
        if (!file_outcome(json_array_get(entries, i), &problems[i], out[i], ok, failed)) {
            json_decref(ok);
            json_decref(failed);
            return sqs_engine_failed(call, out[i], NULL);
        }
    }
    return aws_reply(call, json_pack("{s:o, s:o}", "Successful", ok, "Failed", failed));
}

enum handler_result sqs_delete_message_batch(struct aws_call *call)
{
    enum handler_result res;
    json_t *entries = sqs_batch_entries(call, &res);
    if (!entries)
        return res;
    struct mq_queue q;
    struct db_conn *c = queue_conn(call, &q, &res);
    if (!c)
        return res;
    const char *receipts[MQ_MAX_BATCH];
    struct entry_problem problems[MQ_MAX_BATCH] = {0};
    size_t n = json_array_size(entries);
    for (size_t i = 0; i < n; i++) {
        const char *r =
            json_string_value(json_object_get(json_array_get(entries, i), "ReceiptHandle"));
        receipts[i] = r ? r : ""; /* refused without a statement: not a receipt of ours */
        if (!r)
            problems[i] = missing_receipt;
    }
    enum mq_status out[MQ_MAX_BATCH];
    enum mq_status fatal = mq_delete_many(c, &q, receipts, (int)n, out);
    aws_db_release(call, c);
    if (fatal != MQ_OK)
        return sqs_engine_failed(call, fatal, NULL);
    return reply_outcomes(call, entries, problems, out);
}

/* The VisibilityTimeout of a batch entry (0..43200), or -1 with *p saying what is wrong. */
static int entry_visibility(json_t *e, struct entry_problem *p)
{
    json_t *v = json_object_get(e, "VisibilityTimeout");
    int64_t n = -1;
    if (!v) {
        *p = (struct entry_problem){WIRE_MISSING_PARAMETER,
                                    "The request must contain the parameter VisibilityTimeout."};
        return -1;
    }
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (!validate_query_int(json_string_value(v), 0, 43200, &n))
        n = -1;
    if (n >= 0 && n <= 43200)
        return (int)n;
    *p = (struct entry_problem){WIRE_INVALID_PARAMETER,
                                "Value for parameter VisibilityTimeout is invalid. Reason: it "
                                "must be an integer from 0 to 43200."};
    return -1;
}

enum handler_result sqs_change_visibility_batch(struct aws_call *call)
{
    enum handler_result res;
    json_t *entries = sqs_batch_entries(call, &res);
    if (!entries)
        return res;
    struct mq_queue q;
    struct db_conn *c = queue_conn(call, &q, &res);
    if (!c)
        return res;
    enum mq_status out[MQ_MAX_BATCH];
    struct entry_problem problems[MQ_MAX_BATCH] = {0};
    for (size_t i = 0; i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i);
        const char *r = json_string_value(json_object_get(e, "ReceiptHandle"));
        int vt = r ? entry_visibility(e, &problems[i]) : -1;
        if (!r)
            problems[i] = missing_receipt;
        out[i] = vt >= 0 ? mq_change_visibility(c, &q, r, vt) : MQ_OK;
    }
    aws_db_release(call, c);
    return reply_outcomes(call, entries, problems, out);
}
