/* The queue data plane: send (single and batch), receive (with long polling), delete (single
 * and batch) and change visibility.
 *
 * A long poll that finds nothing suspends its request (no thread, no pooled connection) and
 * registers with the process's hub (src/mq/hub.c); the hub resumes it when a message may have
 * arrived, at its deadline, or at shutdown, and the receive simply runs again. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/clock.h"
#include "rydes/fmt.h"
#include "rydes/jsoncopy.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_input.h"
#include "rydes/mq_poll.h"
#include "rydes/prebookings.h"
#include "rydes/problem.h"
#include "rydes/secret.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stored body that is not compact JSON text as the gateway writes it (an operator's row, say):
 * parsed and dumped as before, or a JSON string when it does not parse. */
static void body_parsed(struct buf *b, const struct mq_message *m)
{
    json_t *v = m->body_json ? json_loads(m->body, JSON_DECODE_ANY, NULL) : NULL;
    if (!v) {
        jsoncopy_string(b, m->body, strlen(m->body));
        return;
    }
    char *text = jsontext_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    buf_puts(b, text);
    free(text);
    json_decref(v);
}

/* ,"name":"value" for a value that needs no escaping (ids, receipts, timestamps, states). */
static void put_member(struct buf *b, const char *name, const char *value)
{
    buf_puts(b, ",\"");
    buf_puts(b, name);
    buf_puts(b, "\":\"");
    buf_puts(b, value);
    buf_puts(b, "\"");
}

/* One message as the API shows it, written as text: the body is stored as JSON text already
 * (or is a string), so it is copied rather than parsed and dumped again (callgrind: jansson
 * was half of a receive's cost in the gateway). */
static void message_text(struct buf *b, const struct mq_message *m, bool fifo)
{
    char n[FMT_INT_LEN];
    buf_puts(b, "{\"message_id\":\"");
    buf_puts(b, m->message_id);
    buf_puts(b, "\",\"body\":");
    if (!m->body_json || !jsoncopy_compact(b, m->body, strlen(m->body)))
        body_parsed(b, m);
    buf_puts(b, ",\"attributes\":");
    if (m->attributes) {
        char *text = jsontext_dumps(m->attributes, JSON_COMPACT);
        buf_puts(b, text);
        free(text);
    } else {
        buf_puts(b, "{}");
    }
    buf_puts(b, ",\"receive_count\":");
    buf_append(b, n, fmt_int(n, m->receive_count));
    put_member(b, "sent_at", m->sent_at);
    if (m->first_received_at[0])
        put_member(b, "first_received_at", m->first_received_at);
    if (m->receipt[0]) {
        put_member(b, "receipt", m->receipt);
    } else if (m->state[0]) {
        put_member(b, "state", m->state);
        put_member(b, "visible_at", m->visible_at);
    }
    if (fifo) {
        buf_puts(b, ",\"group_id\":");
        if (m->group_id)
            jsoncopy_string(b, m->group_id, strlen(m->group_id));
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"sequence_number\":\"");
        buf_append(b, n, fmt_int(n, m->id));
        buf_puts(b, "\"");
    }
    buf_puts(b, "}");
}

enum handler_result api_reply_messages(struct http_request *req, struct mq_message *msgs, int count,
                                       bool fifo)
{
    return api_reply_message_page(req, msgs, count, fifo, false, NULL);
}

enum handler_result api_reply_message_page(struct http_request *req, struct mq_message *msgs,
                                           int count, bool fifo, bool paged, const char *next)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"messages\":[");
    for (int i = 0; i < count; i++) {
        if (i)
            buf_puts(&b, ",");
        message_text(&b, &msgs[i], fifo);
    }
    buf_puts(&b, "]");
    if (paged && next)
        buf_printf(&b, ",\"next\":\"%s\"", next); /* digits: nothing to escape */
    else if (paged)
        buf_puts(&b, ",\"next\":null");
    buf_puts(&b, "}");
    mq_messages_free(msgs, count);
    size_t len = b.len;
    return http_reply_owned(req, 200, "application/json", buf_steal(&b), len);
}

static json_t *send_result_json(const struct mq_send_entry *e, const struct mq_send_result *r,
                                bool fifo)
{
    char md5[33];
    secret_md5_hex(e->body, e->body_len, md5);
    json_t *o = json_pack("{s:s, s:s}", "message_id", r->message_id, "md5_of_body", md5);
    if (fifo) {
        char seq[24];
        snprintf(seq, sizeof seq, "%lld", r->sequence);
        json_object_set_new(o, "sequence_number", json_string(seq));
    }
    return o;
}

/* The answer to a single send, the members of send_result_json written as text: ids, digests
 * and sequence numbers need no escaping, and jansson's pack and dump cost the gateway more than
 * the rest of the send (callgrind). */
static enum handler_result reply_sent(struct http_request *req, const struct mq_send_entry *e,
                                      const struct mq_send_result *r, bool fifo)
{
    char md5[33], seq[64] = "", text[192];
    secret_md5_hex(e->body, e->body_len, md5);
    if (fifo)
        snprintf(seq, sizeof seq, ",\"sequence_number\":\"%lld\"", r->sequence);
    int n = snprintf(text, sizeof text, "{\"message_id\":\"%s\",\"md5_of_body\":\"%s\"%s}",
                     r->message_id, md5, seq);
    return http_reply(req, r->duplicate ? 200 : 201, "application/json", text, (size_t)n);
}

/* A single send in progress: the request's state while the combiner has it. */
struct send_state {
    struct mq_combined_send s;
    struct mq_send_entry e;
    char *owned;               /* what e points into besides the request's JSON */
    bool direct;               /* the combiner did not take it: send on a data-plane thread */
    bool notify;               /* the send NOTIFYs (a long poll listens on the queue) */
    struct api_conn_miss miss; /* of its work on a data-plane thread */
};

static void send_state_free(void *p)
{
    struct send_state *ss = p;
    free(ss->owned);
    free(ss);
}

static void send_direct(struct http_request *req);

static enum handler_result reply_send_state(struct http_request *req)
{
    struct send_state *ss = req->state;
    if (ss->direct) { /* only sends that need no NOTIFY are handed over */
        ss->direct = false;
        return http_offload_work(req, send_direct, reply_send_state);
    }
    if (ss->miss.missed)
        return api_reply_no_conn(req, ss->miss.why);
    if (ss->s.o.status != MQ_OK)
        return api_mq_failure(req, ss->s.o.status, NULL);
    return reply_sent(req, &ss->e, &ss->s.result, ss->s.q.attrs.fifo);
}

/* The combiner has stored (or failed) the send: the request answers on its own thread. */
static void resume_done(struct mq_combined *o)
{
    http_resume(o->ctx);
}

/* Sends on a pooled connection (http_offload_work's work). */
static void send_direct(struct http_request *req)
{
    struct send_state *ss = req->state;
    struct db_conn *c = api_db_for_work(req, &ss->miss);
    if (c) {
        ss->s.o.status = prebookings_mq_send(c, &ss->s.q, &ss->e, 1, &ss->s.result, ss->notify);
        api_db_release(req, c);
    }
}

/* Standard queues nobody long-polls go through the combiner (rydes/mq_combiner.h): the request
 * suspends until its message is stored with those of other requests. FIFO sends (sequence
 * numbers, deduplication), sends that must NOTIFY and sends into prebooking-submission (which
 * store their tasks too: prebookings_mq_send) take their own statement. */
static enum handler_result send_combined(struct http_request *req, struct send_state *ss)
{
    ss->s.e = &ss->e;
    ss->s.o.done = resume_done;
    ss->s.o.ctx = req;
    enum handler_result suspended = http_suspend(req, reply_send_state);
    if (!mq_combiner_send(req->app->combiner, &ss->s)) { /* stopping, or busy: see there */
        ss->direct = true;
        http_resume(req);
    }
    return suspended;
}

enum handler_result api_messages_send(struct http_request *req)
{
    enum handler_result res;
    /* apps may send a prebooking straight into its queue (the direct path of API.md); every
     * other queue's data plane needs a service token */
    const char *name = route_param(&req->match, "name");
    if (req->role < ROLE_SERVICE && (!name || strcmp(name, PREBOOKINGS_SUBMISSION_QUEUE) != 0))
        return http_reply_problem(req, 403, "this route needs a token with a higher role");
    if (!api_body_object(req, &res))
        return res;
    struct send_state *ss = xcalloc(1, sizeof *ss);
    ss->s.o.status = MQ_ERROR; /* a path that forgot to set it answers 500, not 201 */
    req->state = ss;
    req->state_free = send_state_free;
    if (!api_queue_lookup(req, &ss->s.q, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_send_entry(req->json, "", &ss->s.q, &ss->e, &ss->owned, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    ss->notify = mq_hub_listened(req->app->hub, ss->s.q.id);
    if (req->app->combiner && !ss->s.q.attrs.fifo && !ss->notify &&
        !prebookings_queue_holds_tasks(&ss->s.q))
        return send_combined(req, ss);
    return http_offload_work(req, send_direct, reply_send_state);
}

struct send_batch {
    int n;
    struct mq_send_entry entries[MQ_MAX_BATCH];
    int index[MQ_MAX_BATCH]; /* entries[k] is item index[k] of the request */
    char *owned[MQ_MAX_BATCH];
    struct mq_send_result results[MQ_MAX_BATCH];
};

/* Validates every item; valid ones go into b, invalid ones into failed. */
static void collect_entries(json_t *items, const struct mq_queue *q, struct send_batch *b,
                            json_t *failed)
{
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *item = json_array_get(items, i);
        struct field_errors fe;
        field_errors_init(&fe);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "entries[%zu]", i);
        struct mq_send_entry *e = &b->entries[b->n];
        if (!json_is_object(item))
            field_errors_add(&fe, prefix, "must be an object");
        else
            mq_input_send_entry(item, prefix, q, e, &b->owned[b->n], &fe);
        if (fe.count) {
            json_t *first = json_array_get(fe.list, 0);
            json_array_append_new(
                failed,
                json_pack("{s:O, s:s, s:s, s:O}", "id", json_object_get(item, "id"), "code",
                          "invalid", "message",
                          json_string_value(json_object_get(first, "message")), "errors", fe.list));
            free(b->owned[b->n]);
            b->owned[b->n] = NULL;
        } else {
            b->index[b->n++] = (int)i;
        }
        field_errors_cleanup(&fe);
    }
}

static enum handler_result reply_batch(struct http_request *req, json_t *items,
                                       const struct mq_queue *q, struct send_batch *b,
                                       json_t *failed)
{
    json_t *ok = json_array();
    for (int k = 0; k < b->n; k++) {
        json_t *r = send_result_json(&b->entries[k], &b->results[k], q->attrs.fifo);
        json_object_set(r, "id", json_object_get(json_array_get(items, (size_t)b->index[k]), "id"));
        json_array_append_new(ok, r);
    }
    return http_reply_json(req, 200, json_pack("{s:o, s:o}", "successful", ok, "failed", failed));
}

enum handler_result api_messages_send_batch(struct http_request *req)
{
    enum handler_result res;
    json_t *items = api_batch_items(req, "entries", true, &res);
    if (!items)
        return res;
    struct mq_queue q;
    struct db_conn *c = api_queue_conn(req, &q, &res);
    if (!c)
        return res;
    struct send_batch b = {0};
    json_t *failed = json_array();
    collect_entries(items, &q, &b, failed);
    enum mq_status st = b.n ? prebookings_mq_send(c, &q, b.entries, b.n, b.results,
                                                  mq_hub_listened(req->app->hub, q.id))
                            : MQ_OK;
    api_db_release(req, c);
    if (st != MQ_OK) {
        json_decref(failed);
        res = api_mq_failure(req, st, NULL);
    } else {
        res = reply_batch(req, items, &q, &b, failed);
    }
    for (int k = 0; k < b.n; k++)
        free(b.owned[k]);
    return res;
}

/* ---- receive and long polling ---- */

static bool client_gone(void *req)
{
    return http_client_gone(req);
}

static void resume(void *req)
{
    http_resume(req);
}

static enum handler_result receive_attempt(struct http_request *req);

/* Answers with what a claim found, or suspends the request to wait for more. */
static enum handler_result answer_or_wait(struct http_request *req, enum mq_status st,
                                          struct mq_message *msgs, int count)
{
    struct mq_poll *p = req->state;
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    if (count > 0 || !mq_poll_may_wait(p))
        return api_reply_messages(req, msgs, count, p->q.attrs.fifo);
    mq_messages_free(msgs, count);
    enum handler_result suspended = http_suspend(req, receive_attempt);
    mq_poll_wait(p);
    return suspended;
}

/* Claims on a pooled connection (http_offload_work's work). */
static void receive_claim(struct http_request *req)
{
    struct app *app = req->app;
    mq_poll_receive_pooled(req->state, app->pool, (int)app->cfg->db_acquire_timeout_ms);
}

static enum handler_result receive_claimed(struct http_request *req)
{
    enum db_acquire_error why;
    enum mq_status st;
    struct mq_message *msgs;
    int count;
    if (!mq_poll_received(req->state, &why, &st, &msgs, &count))
        return api_reply_no_conn(req, why);
    return answer_or_wait(req, st, msgs, count);
}

/* A claim of its own, on a data-plane thread. */
static enum handler_result receive_now(struct http_request *req)
{
    return http_offload_work(req, receive_claim, receive_claimed);
}

/* The combiner has claimed (or refused the claim): the request goes on on its own thread. */
static enum handler_result receive_taken(struct http_request *req)
{
    enum mq_status st;
    struct mq_message *msgs;
    int count;
    if (!mq_poll_taken(req->state, &st, &msgs, &count))
        return receive_now(req);
    return answer_or_wait(req, st, msgs, count);
}

/* One receive attempt; suspends the request while the combiner claims (rydes/mq_combiner.h)
 * and when it found nothing and may wait longer. */
static enum handler_result receive_attempt(struct http_request *req)
{
    struct mq_poll *p = req->state;
    switch (mq_poll_begin(p)) {
    case MQ_POLL_FULL:
        return http_reply_unavailable(req, "too many long polls are waiting (RYDES_MAX_WAITERS)");
    case MQ_POLL_EMPTY:
        return api_reply_messages(req, NULL, 0, p->q.attrs.fifo);
    case MQ_POLL_GO:
        break;
    }
    if (!mq_poll_combines(p))
        return receive_now(req);
    enum handler_result suspended = http_suspend(req, receive_taken);
    if (!mq_poll_hand_over(p)) /* stopping, or busy with others: claim apart */
        http_resume(req);
    return suspended;
}

enum handler_result api_messages_receive(struct http_request *req)
{
    enum handler_result res;
    if (req->json && !json_is_object(req->json))
        return http_reply_problem(req, 400, "the request body must be a JSON object");
    struct mq_queue q;
    if (!api_queue_lookup(req, &q, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_receive_request rr;
    mq_input_receive(req->json, &q, &rr, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct mq_poll *p = xcalloc(1, sizeof *p);
    req->state = p;
    req->state_free = mq_poll_free;
    mq_poll_init(p, req->app->hub, req->app->combiner, &q, rr.max_messages, rr.visibility_timeout,
                 rr.delete_now, rr.wait_seconds, client_gone, resume, req);
    mq_poll_follow(p, req->app->queue_cache);
    return receive_attempt(req);
}

/* ---- delete and change visibility ---- */

static enum handler_result receipt_failure(struct http_request *req, enum mq_status st)
{
    if (st == MQ_CONFLICT)
        return http_reply_problem(req, 409,
                                  "the receipt was superseded by a later receive; "
                                  "the message is untouched");
    if (st == MQ_NOT_FOUND)
        return http_reply_problem(req, 404, "no message with this receipt");
    return api_mq_failure(req, st, NULL);
}

static enum handler_result reply_deleted(struct http_request *req, enum mq_status st)
{
    return st == MQ_OK ? http_reply_empty(req, 204) : receipt_failure(req, st);
}

/* A delete in progress: the request's state while the combiner or a data-plane thread has it. */
struct delete_state {
    struct mq_combined_delete d;
    bool direct;               /* the combiner did not take it: delete on a data-plane thread */
    struct api_conn_miss miss; /* of its work on a data-plane thread */
};

/* Deletes on a pooled connection (http_offload_work's work). */
static void delete_direct(struct http_request *req)
{
    struct delete_state *ds = req->state;
    struct db_conn *c = api_db_for_work(req, &ds->miss);
    if (c) {
        ds->d.o.status = mq_delete(c, &ds->d.q, ds->d.receipt);
        api_db_release(req, c);
    }
}

static enum handler_result delete_finished(struct http_request *req)
{
    struct delete_state *ds = req->state;
    if (ds->direct) {
        ds->direct = false;
        return http_offload_work(req, delete_direct, delete_finished);
    }
    return ds->miss.missed ? api_reply_no_conn(req, ds->miss.why)
                           : reply_deleted(req, ds->d.o.status);
}

/* Deletes from standard queues go through the combiner (rydes/mq_combiner.h): the request
 * suspends until its receipt is deleted with those of other requests. */
static enum handler_result delete_combined(struct http_request *req, struct delete_state *ds)
{
    ds->d.o = (struct mq_combined){.status = MQ_ERROR, .done = resume_done, .ctx = req};
    enum handler_result suspended = http_suspend(req, delete_finished);
    if (!mq_combiner_delete(req->app->combiner, &ds->d)) { /* stopping, or busy: see there */
        ds->direct = true;
        http_resume(req);
    }
    return suspended;
}

enum handler_result api_messages_delete(struct http_request *req)
{
    enum handler_result res;
    struct delete_state *ds = xcalloc(1, sizeof *ds);
    req->state = ds;
    req->state_free = free;
    ds->d.receipt = route_param(&req->match, "receipt");
    if (!api_queue_lookup(req, &ds->d.q, &res))
        return res;
    if (req->app->combiner && !ds->d.q.attrs.fifo)
        return delete_combined(req, ds);
    return http_offload_work(req, delete_direct, delete_finished);
}

enum handler_result api_messages_visibility(struct http_request *req)
{
    static const char *const known[] = {"visibility_timeout", NULL};
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    validate_known_fields(req->json, known, &fe);
    int64_t vt = 0;
    validate_int(req->json, "visibility_timeout", true, 0, 43200, &vt, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct mq_queue q;
    if (api_queue(req, c, &q, &res)) {
        enum mq_status st =
            mq_change_visibility(c, &q, route_param(&req->match, "receipt"), (int)vt);
        res = st == MQ_OK ? http_reply_empty(req, 204) : receipt_failure(req, st);
    }
    api_db_release(req, c);
    return res;
}

/* Files one receipt's outcome under successful or failed. */
static void file_outcome(json_t *receipt, enum mq_status st, json_t *ok, json_t *failed)
{
    if (st == MQ_OK) {
        json_array_append_new(ok, json_pack("{s:O}", "receipt", receipt));
        return;
    }
    bool superseded = st == MQ_CONFLICT;
    json_array_append_new(failed,
                          json_pack("{s:O, s:s, s:s}", "receipt", receipt, "code",
                                    superseded ? "superseded" : "invalid_receipt", "message",
                                    superseded ? "the receipt was superseded by a later receive"
                                               : "not a receipt of this queue"));
}

enum handler_result api_messages_delete_batch(struct http_request *req)
{
    enum handler_result res;
    json_t *receipts = api_batch_items(req, "receipts", false, &res);
    if (!receipts)
        return res;
    struct mq_queue q;
    struct db_conn *c = api_queue_conn(req, &q, &res);
    if (!c)
        return res;
    const char *texts[MQ_MAX_BATCH];
    size_t n = json_array_size(receipts);
    for (size_t i = 0; i < n; i++) /* a non-string is no receipt: it matches nothing */
        texts[i] = json_is_string(json_array_get(receipts, i))
                       ? json_string_value(json_array_get(receipts, i))
                       : "";
    enum mq_status out[MQ_MAX_BATCH];
    enum mq_status fatal = mq_delete_many(c, &q, texts, (int)n, out);
    api_db_release(req, c);
    if (fatal != MQ_OK)
        return api_mq_failure(req, fatal, NULL);
    json_t *ok = json_array(), *failed = json_array();
    for (size_t i = 0; i < n; i++)
        file_outcome(json_array_get(receipts, i), out[i], ok, failed);
    return http_reply_json(req, 200, json_pack("{s:o, s:o}", "successful", ok, "failed", failed));
}
