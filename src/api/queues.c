/* Queue management endpoints: PUT/GET/DELETE /queues/{name}, GET /queues, and the admin
 * operations purge, redrive and peek. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/fmt.h"

#include "rydes/mem.h"
#include "rydes/mq.h"
#include "rydes/mq_input.h"
#include "rydes/problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum handler_result mq_failure(struct http_request *req, enum mq_status st,
                                      const char *detail)
{
    if (detail && !*detail)
        detail = NULL; /* the callee found nothing to say: the generic text below */
    switch (st) {
    case MQ_NOT_FOUND:
        return http_reply_problem(req, 404, detail ? detail : "no such queue");
    case MQ_CONFLICT:
        return http_reply_problem(req, 409,
                                  detail ? detail
                                         : "a queue or topic the request names changed under it "
                                           "(deleted meanwhile); retry");
    case MQ_INVALID:
        return http_reply_problem(req, 400, detail ? detail : "the request is invalid");
    case MQ_UNAVAILABLE:
        return http_reply_unavailable(req, "the database could not complete the request "
                                           "(connection lost, deadlock or timeout); retry");
    case MQ_BUSY:
        return api_reply_no_conn(req, DB_ACQUIRE_EXHAUSTED);
    default:
        return http_reply_problem(req, 500, "the database refused the request");
    }
}

enum handler_result api_mq_failure(struct http_request *req, enum mq_status st, const char *detail)
{
    return mq_failure(req, st, detail);
}

/* The queue named name, from the cache or by c (cached then). */
static enum mq_status queue_find(struct app *app, struct db_conn *c, const char *name,
                                 struct mq_queue *q)
{
    if (!name || !mq_input_queue_name(name))
        return MQ_NOT_FOUND;
    uint64_t gen = 0;
    if (ttlcache_get(app->queue_cache, name, strlen(name), q, &gen))
        return MQ_OK;
    enum mq_status st = mq_queue_get(c, name, q);
    if (st == MQ_OK)
        ttlcache_put(app->queue_cache, name, strlen(name), q, gen);
    return st;
}

/* What find_queue found, for the handler's second run. */
struct queue_found {
    enum mq_status st;
    struct api_conn_miss miss;
    struct mq_queue q;
};

/* api_queue_lookup's work on a data-plane thread. */
static void find_queue(struct http_request *req)
{
    struct queue_found *f = xcalloc(1, sizeof *f);
    struct db_conn *c = api_db_for_work(req, &f->miss);
    if (c) {
        f->st = queue_find(req->app, c, route_param(&req->match, "name"), &f->q);
        api_db_release(req, c);
    }
    req->found = f;
    req->found_free = free;
}

/* The route's handler again, from the start, with what find_queue found. */
static enum handler_result handle_again(struct http_request *req)
{
    if (req->state_free)
        req->state_free(req->state);
    req->state = NULL;
    req->state_free = NULL;
    return req->match.route->handler(req);
}

bool api_queue_lookup(struct http_request *req, struct mq_queue *q, enum handler_result *res)
{
    const struct queue_found *f = req->found;
    if (f && f->miss.missed) {
        *res = api_reply_no_conn(req, f->miss.why);
        return false;
    }
    if (f && f->st != MQ_OK) {
        *res = mq_failure(req, f->st, "no such queue");
        return false;
    }
    if (f) {
        *q = f->q;
        return true;
    }
    const char *name = route_param(&req->match, "name");
    if (name && ttlcache_get(req->app->queue_cache, name, strlen(name), q, NULL))
        return true; /* the common case: no connection needed */
    if (!http_may_wait(req)) {
        *res = http_offload_work(req, find_queue, handle_again);
        return false;
    }
    struct db_conn *c = api_db_acquire(req, res);
    if (!c)
        return false;
    bool found = api_queue(req, c, q, res);
    api_db_release(req, c);
    return found;
}

struct db_conn *api_queue_conn(struct http_request *req, struct mq_queue *q,
                               enum handler_result *res)
{
    struct db_conn *c = api_db_acquire(req, res);
    if (c && !api_queue(req, c, q, res)) {
        api_db_release(req, c);
        c = NULL;
    }
    return c;
}

bool api_queue(struct http_request *req, struct db_conn *c, struct mq_queue *q,
               enum handler_result *res)
{
    enum mq_status st = queue_find(req->app, c, route_param(&req->match, "name"), q);
    if (st == MQ_OK)
        return true;
    *res = mq_failure(req, st, "no such queue");
    return false;
}

static json_t *attrs_json(const struct mq_attrs *a)
{
    json_t *dl = a->dead_letter_queue[0] ? json_pack("{s:s, s:i}", "queue", a->dead_letter_queue,
                                                     "max_receive_count", a->max_receive_count)
                                         : json_null();
    return json_pack("{s:b, s:i, s:i, s:i, s:i, s:i, s:b, s:o}", "fifo", a->fifo,
                     "visibility_timeout", a->visibility_timeout, "delay_seconds", a->delay_seconds,
                     "retention_seconds", a->retention_seconds, "max_message_bytes",
                     a->max_message_bytes, "receive_wait_seconds", a->receive_wait_seconds,
                     "content_based_dedup", a->content_based_dedup, "dead_letter", dl);
}

static json_t *queue_links(const char *name)
{
    char self[128], messages[160];
    snprintf(self, sizeof self, "/queues/%s", name);
    snprintf(messages, sizeof messages, "/queues/%s/messages", name);
    return json_pack("{s:s, s:s}", "self", self, "messages", messages);
}

static json_t *queue_json(const struct mq_queue *q, const struct mq_stats *s)
{
    return json_pack("{s:s, s:o, s:{s:I, s:I, s:I, s:I, s:b}, s:s, s:o}", "name", q->name,
                     "attributes", attrs_json(&q->attrs), "stats", "available",
                     (json_int_t)s->available, "in_flight", (json_int_t)s->in_flight, "delayed",
                     (json_int_t)s->delayed, "oldest_age_seconds",
                     (json_int_t)s->oldest_age_seconds, "approximate", s->approximate, "created_at",
                     q->created_at, "links", queue_links(q->name));
}

/* Reads the queue with its stats and replies with its representation. */
static enum handler_result reply_queue(struct http_request *req, struct db_conn *c, int status)
{
    struct mq_queue q;
    struct mq_stats s;
    enum handler_result res;
    if (!api_queue(req, c, &q, &res))
        return res;
    enum mq_status st = mq_queue_stats(c, &q, &s);
    if (st != MQ_OK)
        return mq_failure(req, st, NULL);
    if (status == 201) {
        char self[128];
        snprintf(self, sizeof self, "/queues/%s", q.name);
        http_add_header(req, "Location", self);
    }
    return http_reply_json(req, status, queue_json(&q, &s));
}

/* Does the body ask to turn an existing queue into the other type? That is a state conflict
 * (409); for a new queue the same mismatch with its name is an invalid field (400). */
static bool changes_type_of_existing(struct http_request *req, struct db_conn *c, const char *name)
{
    json_t *f = json_object_get(req->json, "fifo");
    size_t n = strlen(name);
    bool named_fifo = n > 5 && strcmp(name + n - 5, ".fifo") == 0;
    struct mq_queue existing;
    return json_is_boolean(f) && json_is_true(f) != named_fifo &&
           mq_queue_get(c, name, &existing) == MQ_OK;
}

enum handler_result api_queues_put(struct http_request *req)
{
    const char *name = route_param(&req->match, "name");
    struct field_errors fe;
    field_errors_init(&fe);
    if (!mq_input_queue_name(name))
        field_errors_add(&fe, "name",
                         "must be 1 to 80 of A-Z a-z 0-9 _ - (FIFO queues end in .fifo)");
    if (req->json && !json_is_object(req->json))
        field_errors_add(&fe, "body", "must be a JSON object of attributes");
    enum handler_result res;
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    if (changes_type_of_existing(req, c, name)) {
        api_db_release(req, c);
        return http_reply_problem(req, 409,
                                  "the fifo attribute of an existing queue cannot "
                                  "change");
    }
    struct mq_attrs attrs;
    mq_input_attrs(req->json, name, &attrs, &fe);
    if (fe.count)
        api_db_release(req, c);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    bool created = false;
    char detail[256] = "";
    enum mq_status st = mq_queue_put(c, name, &attrs, &created, detail, sizeof detail);
    ttlcache_remove(req->app->queue_cache, name, strlen(name));
    /* (what mq_queue_put finds invalid is the dead-letter queue it names) */
    res = st == MQ_OK        ? reply_queue(req, c, created ? 201 : 200)
          : st == MQ_INVALID ? api_reply_field_error(req, "dead_letter.queue", detail)
                             : mq_failure(req, st, detail);
    api_db_release(req, c);
    return res;
}

enum handler_result api_queues_get(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    res = reply_queue(req, c, 200);
    api_db_release(req, c);
    return res;
}

/* Deleting a queue detaches the queues that dead-lettered into it: forget every entry. */
static void forget_queues(struct app *app, const char *name)
{
    (void)name;
    ttlcache_clear(app->queue_cache);
}

enum handler_result api_queues_delete(struct http_request *req)
{
    return api_delete_named(req, mq_input_queue_name, mq_queue_delete, forget_queues,
                            "no such queue");
}

enum handler_result api_queues_list(struct http_request *req)
{
    return api_list_names(req, "queues", mq_input_queue_name, mq_queue_list, queue_links);
}

enum handler_result api_queues_purge(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct mq_queue q;
    if (api_queue(req, c, &q, &res)) {
        enum mq_status st = mq_purge(c, &q);
        res = st == MQ_OK ? http_reply_empty(req, 204) : mq_failure(req, st, NULL);
    }
    api_db_release(req, c);
    return res;
}

/* Reads the redrive body: optional "to" (a queue name) and "max_messages" (>= 1). */
static bool redrive_input(struct http_request *req, const char **to, int64_t *max,
                          enum handler_result *res)
{
    static const char *const known[] = {"to", "max_messages", NULL};
    struct field_errors fe;
    field_errors_init(&fe);
    *to = NULL;
    *max = 0;
    if (req->json && !json_is_object(req->json)) {
        field_errors_add(&fe, "body", "must be a JSON object");
    } else if (req->json) {
        validate_known_fields(req->json, known, &fe);
        *to = validate_string(req->json, "to", false, 1, MQ_NAME_MAX, &fe);
        if (*to && !mq_input_queue_name(*to))
            field_errors_add(&fe, "to", "is not a valid queue name");
        validate_int(req->json, "max_messages", false, 1, INT32_MAX, max, &fe);
    }
    bool ok = fe.count == 0;
    if (!ok)
        *res = http_reply_invalid(req, &fe, NULL);
    field_errors_cleanup(&fe);
    return ok;
}

static enum handler_result redrive(struct http_request *req, struct db_conn *c,
                                   const struct mq_queue *dlq, const char *to, int64_t max)
{
    struct mq_queue target;
    if (to) {
        enum mq_status st = mq_queue_get(c, to, &target);
        if (st == MQ_NOT_FOUND)
            return api_reply_field_error(req, "to", "names no queue");
        if (st != MQ_OK)
            return mq_failure(req, st, NULL);
        if (target.id == dlq->id)
            return api_reply_field_error(req, "to", "must name another queue");
        if (target.attrs.fifo != dlq->attrs.fifo)
            return api_reply_field_error(req, "to", "must be of the same type (FIFO or not)");
    }
    long long moved = 0;
    enum mq_status st = mq_redrive(c, dlq, to ? &target : NULL, max, &moved);
    if (st != MQ_OK)
        return mq_failure(req, st, NULL);
    return http_reply_json(req, 200, json_pack("{s:I}", "moved", (json_int_t)moved));
}

enum handler_result api_queues_redrive(struct http_request *req)
{
    const char *to;
    int64_t max;
    enum handler_result res;
    if (!redrive_input(req, &to, &max, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct mq_queue dlq;
    if (api_queue(req, c, &dlq, &res))
        res = redrive(req, c, &dlq, to, max);
    api_db_release(req, c);
    return res;
}

enum handler_result api_queues_peek(struct http_request *req)
{
    struct field_errors fe;
    field_errors_init(&fe);
    int limit;
    const char *after;
    int64_t from = 0; /* the cursor: the id of the last message of the page before */
    api_page(req, &limit, &after, &fe);
    if (after && !validate_query_int(after, 0, INT64_MAX, &from))
        field_errors_add(&fe, "after", "is not a cursor returned by this list");
    enum handler_result res;
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct mq_queue q;
    struct mq_message *msgs = NULL;
    int count = 0;
    bool more = false;
    enum mq_status st = MQ_OK;
    if (api_queue(req, c, &q, &res) &&
        (st = mq_peek(c, &q, from, limit, &msgs, &count, &more)) != MQ_OK)
        res = mq_failure(req, st, NULL);
    api_db_release(req, c);
    if (req->status)
        return res;
    char next[FMT_INT_LEN];
    if (more)
        fmt_int(next, msgs[count - 1].id);
    return api_reply_message_page(req, msgs, count, q.attrs.fifo, true, more ? next : NULL);
}
