/* Prebooking endpoints: POST /prebookings (alias POST /submit-ride-prebooking) answers 202 with
 * a task to poll, GET /tasks/{id}, GET /prebookings/{id}, and the operators' GET /tasks (newest
 * first). The work is rydes/prebookings.h. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/prebookings.h"
#include "rydes/problem.h"

#include <stdio.h>
#include <stdlib.h>

/* How soon a poller should look again at a task that is not final. */
#define TASK_RETRY_AFTER "1"

static enum handler_result reply_task(struct http_request *req, int status, const struct task *t)
{
    char self[64];
    snprintf(self, sizeof self, "/tasks/%s", t->id);
    if (status == 202) {
        http_add_header(req, "Location", self);
        http_add_header(req, "Content-Location", self);
    }
    if (status == 202 ||
        !task_final(t)) /* every 202 has it (API.md), a replay's of a final task too */
        http_add_header(req, "Retry-After", TASK_RETRY_AFTER);
    return http_reply_json(req, status, task_json(t));
}

/* Reads and checks the submission and its Idempotency-Key; false with the 4xx answered. With a
 * key, "when" is judged against the clock only once the key turns out new (check_timely): a
 * retry of a submission whose pickup time has come since finds its task. */
static bool submission(struct http_request *req, struct prebooking_input *in, const char **key,
                       enum handler_result *res)
{
    if (!api_body_object(req, res))
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    prebooking_parse(req->json, in, &fe);
    *key = api_idempotency_key(req, &fe);
    if (!*key)
        prebooking_timely(in, clock_wall_us(), (int)req->app->cfg->prebooking_horizon_days, &fe);
    return !api_reply_invalid(req, &fe, res);
}

/* The 400 of a "when" in the past or too far ahead; false then. */
static bool check_timely(struct http_request *req, const struct prebooking_input *in,
                         enum handler_result *res)
{
    struct field_errors fe;
    field_errors_init(&fe);
    prebooking_timely(in, clock_wall_us(), (int)req->app->cfg->prebooking_horizon_days, &fe);
    return !api_reply_invalid(req, &fe, res);
}

/* Answers an outcome of prebookings_submit or prebookings_find_key (t filled when it says so). */
static enum handler_result answer(struct http_request *req, enum prebookings_outcome o,
                                  enum mq_status st, bool no_topic, struct task *t,
                                  const struct mq_publish_result *pub)
{
    enum handler_result res;
    switch (o) {
    case PREBOOKINGS_SUBMITTED:
        api_published(req, pub);
        /* fall through */
    case PREBOOKINGS_REPLAYED:
        res = reply_task(req, 202, t);
        task_clear(t);
        return res;
    case PREBOOKINGS_KEY_REUSED:
        return api_key_reused(req);
    case PREBOOKINGS_UNROUTED:
        return http_reply_unavailable(req, "topic " PREBOOKINGS_TOPIC " takes prebookings to no "
                                           "queue " PREBOOKINGS_PROCESSING_QUEUE " (its "
                                           "subscription is gone or filters them out); "
                                           "restarting the gateway re-creates it");
    case PREBOOKINGS_FAILED:
    default:
        if (no_topic)
            return api_topology_missing(req, "topic", PREBOOKINGS_TOPIC);
        return api_mq_failure(req, st, NULL);
    }
}

enum handler_result api_prebookings_create(struct http_request *req)
{
    enum handler_result res;
    struct prebooking_input in;
    const char *key;
    if (!submission(req, &in, &key, &res))
        return res;
    char hash[IDEMPOTENCY_HASH_LEN] = "";
    if (key)
        prebookings_request_hash(&in, hash);
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct task t;
    struct mq_publish_result pub = {0};
    enum mq_status st = MQ_NOT_FOUND;
    enum prebookings_outcome o = PREBOOKINGS_FAILED;
    if (key)
        o = prebookings_find_key(c, key, hash, false, &t, &st);
    bool fresh = o == PREBOOKINGS_FAILED && st == MQ_NOT_FOUND; /* no key, or a new one */
    if (fresh && key && !check_timely(req, &in, &res)) {
        api_db_release(req, c);
        return res;
    }
    bool no_topic = false;
    if (fresh) {
        struct topic_set *set = api_cached_topic(req, c, PREBOOKINGS_TOPIC, &st);
        if (set || st == MQ_NOT_FOUND)
            o = prebookings_submit(c, set, &in, key, hash, req->request_id, mq_hub_listened_cb,
                                   req->app->hub, &t, &pub, &st);
        no_topic = !set && st == MQ_NOT_FOUND;
        topic_set_release(set);
    }
    api_db_release(req, c);
    return answer(req, o, st, no_topic, &t, &pub);
}

enum handler_result api_tasks_get(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct task t;
    enum mq_status st = tasks_get(c, route_param(&req->match, "id"), &t);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, "no such task");
    res = reply_task(req, 200, &t);
    task_clear(&t);
    return res;
}

enum handler_result api_prebookings_get(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct prebooking p;
    enum mq_status st = prebookings_get(c, route_param(&req->match, "id"), &p);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, "no such prebooking");
    char self[64];
    snprintf(self, sizeof self, "/prebookings/%s", p.id);
    http_add_header(req, "Content-Location", self);
    res = http_reply_json(req, 200, prebooking_json(&p));
    prebooking_clear(&p);
    return res;
}

/* ids_is_uuid as the validator api_time_page wants. */
static bool task_id_valid(const char *id)
{
    return ids_is_uuid(id);
}

/* {"tasks": [task, ...], "next"} of n tasks, which it clears and frees. */
static json_t *task_page_json(struct task *tasks, int n, const char *next)
{
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(items, task_json(&tasks[i]));
        task_clear(&tasks[i]);
    }
    free(tasks);
    return json_pack("{s:o, s:o}", "tasks", items, "next",
                     next[0] ? json_string(next) : json_null());
}

enum handler_result api_tasks_list(struct http_request *req)
{
    enum handler_result res;
    int limit;
    struct api_time_cursor cur;
    if (!api_time_page(req, task_id_valid, &limit, &cur, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct task *tasks = NULL;
    int n = 0;
    char next[128];
    enum mq_status st =
        tasks_list(c, cur.us[0] ? cur.us : NULL, cur.id, limit, &tasks, &n, next, sizeof next);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(req, 200, task_page_json(tasks, n, next));
}
