/* Helpers shared by the handlers; see include/rydes/api.h. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/idempotency.h"
#include "rydes/mq_combiner.h"
#include "rydes/problem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum handler_result api_reply_no_conn(struct http_request *req, enum db_acquire_error why)
{
    return http_reply_unavailable(req, why == DB_ACQUIRE_EXHAUSTED
                                           ? "all database connections are busy"
                                           : "the database is unreachable");
}

struct db_conn *api_db_for_work(struct http_request *req, struct api_conn_miss *miss)
{
    struct db_conn *c =
        db_pool_acquire(req->app->pool, (int)req->app->cfg->db_acquire_timeout_ms, &miss->why);
    miss->missed = !c;
    return c;
}

struct db_conn *api_db_acquire(struct http_request *req, enum handler_result *res)
{
    enum db_acquire_error why;
    struct db_conn *c =
        db_pool_acquire(req->app->pool, (int)req->app->cfg->db_acquire_timeout_ms, &why);
    if (!c)
        *res = api_reply_no_conn(req, why);
    return c;
}

void api_db_release(struct http_request *req, struct db_conn *c)
{
    db_pool_release(req->app->pool, c);
}

enum handler_result api_store_failed(struct http_request *req, enum store_result r)
{
    if (r == STORE_UNAVAILABLE)
        return http_reply_unavailable(req, "the database connection was lost");
    return http_reply_problem(req, 500, "the database refused the request");
}

bool api_page(struct http_request *req, int *limit, const char **after, struct field_errors *fe)
{
    const char *l = http_query(req, "limit");
    int64_t v = 100;
    if (l && !validate_query_int(l, 1, 1000, &v))
        field_errors_add(fe, "limit", "must be an integer from 1 to 1000");
    *limit = (int)v;
    *after = http_query(req, "after");
    return fe->count == 0;
}

/* Parses "MICROS.ID" into cur; false when it is not such a cursor. MICROS stays below 2^53, the
 * range in which the SQL side turns it into a timestamp exactly. */
static bool time_cursor(const char *text, bool (*valid_id)(const char *id),
                        struct api_time_cursor *cur)
{
    const char *dot = strchr(text, '.');
    size_t n = dot ? (size_t)(dot - text) : 0;
    if (n == 0 || n >= sizeof cur->us || strlen(dot + 1) > API_ID_MAX)
        return false;
    memcpy(cur->us, text, n);
    cur->us[n] = '\0';
    snprintf(cur->id, sizeof cur->id, "%s", dot + 1);
    int64_t us;
    return validate_query_int(cur->us, 0, (INT64_C(1) << 53) - 1, &us) && valid_id(cur->id);
}

bool api_time_page(struct http_request *req, bool (*valid_id)(const char *id), int *limit,
                   struct api_time_cursor *cur, enum handler_result *res)
{
    struct field_errors fe;
    field_errors_init(&fe);
    const char *after;
    api_page(req, limit, &after, &fe);
    memset(cur, 0, sizeof *cur);
    if (after && !time_cursor(after, valid_id, cur))
        field_errors_add(&fe, "after", "is not a cursor returned by this list");
    if (!after || fe.count)
        cur->us[0] = '\0';
    return !api_reply_invalid(req, &fe, res);
}

bool api_name_page(struct http_request *req, bool (*valid)(const char *name), int *limit,
                   const char **after, enum handler_result *res)
{
    struct field_errors fe;
    field_errors_init(&fe);
    api_page(req, limit, after, &fe);
    if (*after && !valid(*after))
        field_errors_add(&fe, "after", "is not a cursor returned by this list");
    return !api_reply_invalid(req, &fe, res);
}

enum handler_result api_list_names(struct http_request *req, const char *key,
                                   bool (*valid)(const char *name), name_lister list,
                                   json_t *(*links)(const char *name))
{
    int limit;
    const char *after;
    enum handler_result res;
    if (!api_name_page(req, valid, &limit, &after, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    char **names;
    int count;
    bool more;
    enum mq_status st = list(c, after ? after : "", limit, &names, &count, &more);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    json_t *items = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(items,
                              json_pack("{s:s, s:o}", "name", names[i], "links", links(names[i])));
    json_t *next = more ? json_string(names[count - 1]) : json_null();
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return http_reply_json(req, 200, json_pack("{s:o, s:o}", key, items, "next", next));
}

enum handler_result api_delete_named(struct http_request *req, bool (*valid)(const char *name),
                                     enum mq_status (*del)(struct db_conn *c, const char *name),
                                     void (*forget)(struct app *app, const char *name),
                                     const char *not_found)
{
    const char *name = route_param(&req->match, "name");
    if (!name || !valid(name))
        return http_reply_problem(req, 404, not_found);
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    enum mq_status st = del(c, name);
    forget(req->app, name);
    api_db_release(req, c);
    return st == MQ_OK ? http_reply_empty(req, 204) : api_mq_failure(req, st, not_found);
}

bool api_reply_invalid(struct http_request *req, struct field_errors *fe, enum handler_result *res)
{
    if (!fe->count)
        return false;
    *res = http_reply_invalid(req, fe, NULL);
    field_errors_cleanup(fe);
    return true;
}

enum handler_result api_reply_field_error(struct http_request *req, const char *field,
                                          const char *message)
{
    struct field_errors fe;
    field_errors_init(&fe);
    field_errors_add(&fe, field, "%s", message);
    enum handler_result res;
    api_reply_invalid(req, &fe, &res);
    return res;
}

bool api_body_object(struct http_request *req, enum handler_result *res)
{
    if (json_is_object(req->json))
        return true;
    *res = http_reply_problem(req, 400,
                              req->json ? "the request body must be a JSON object"
                                        : "a JSON request body is required");
    return false;
}

/* A batch entry id: 1..80 of [A-Za-z0-9_-], as SQS has them. */
static bool entry_id_valid(json_t *id)
{
    const char *s = json_string_value(id);
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 80)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Checks the envelope of a batch body: key holds 1..10 items; for send batches each item is an
 * object with a distinct valid id. Queues a 400 and returns NULL otherwise. */
json_t *api_batch_items(struct http_request *req, const char *key, bool with_ids,
                        enum handler_result *res)
{
    if (!api_body_object(req, res))
        return NULL;
    json_t *items = json_object_get(req->json, key);
    struct field_errors fe;
    field_errors_init(&fe);
    if (!json_is_array(items) || json_array_size(items) < 1 ||
        json_array_size(items) > MQ_MAX_BATCH)
        field_errors_add(&fe, key, "must be an array of 1 to %d items", MQ_MAX_BATCH);
    for (size_t i = 0; with_ids && !fe.count && i < json_array_size(items); i++) {
        json_t *id = json_object_get(json_array_get(items, i), "id");
        char f[32];
        snprintf(f, sizeof f, "%s[%zu].id", key, i);
        if (!entry_id_valid(id))
            field_errors_add(&fe, f, "must be 1 to 80 of A-Z a-z 0-9 _ -");
        for (size_t j = 0; j < i && !fe.count; j++)
            if (json_equal(id, json_object_get(json_array_get(items, j), "id")))
                field_errors_add(&fe, f, "ids must be distinct within a batch");
    }
    if (fe.count) {
        *res = http_reply_invalid(req, &fe, NULL);
        items = NULL;
    }
    field_errors_cleanup(&fe);
    return items;
}

struct topic_set *api_cached_topic(struct http_request *req, struct db_conn *c, const char *name,
                                   enum mq_status *st)
{
    return topic_cache_current(req->app->topic_cache, req->app->hub, c, name, st);
}

void api_published(struct http_request *req, const struct mq_publish_result *r)
{
    struct mq_publish_counters *pc = &req->app->publish_counters;
    atomic_fetch_add(&pc->publishes, 1);
    atomic_fetch_add(&pc->duplicates, r->duplicate);
    atomic_fetch_add(&pc->deliveries, (uint64_t)r->deliveries);
    if (r->pushes)
        mq_push_kick(req->app->push);
}

struct topic_set *api_cached_lean_topic(struct http_request *req, const char *name)
{
    enum mq_status st;
    struct topic_set *set = api_cached_topic(req, NULL, name, &st);
    if (set && !set->topic.fifo && mq_publish_always_lean(&set->topic, set->subs, set->n))
        return set;
    topic_set_release(set);
    return NULL;
}

static void publish_handed_back(struct mq_combined *o)
{
    http_resume(o->ctx);
}

enum handler_result api_publish_handed_over(struct http_request *req,
                                            struct mq_combined_publish *cp,
                                            const struct mq_publish_plan *plan, bool *refused,
                                            route_handler then)
{
    *cp = (struct mq_combined_publish){
        .o = {.status = MQ_OK, .done = publish_handed_back, .ctx = req}, .plan = plan};
    if (plan->n == 0) { /* no subscription wants it: nothing to store */
        mq_publish_plan_count(plan);
        return then(req);
    }
    cp->o.status = MQ_ERROR;
    enum handler_result res = http_suspend(req, then);
    if (!mq_combiner_publish(req->app->combiner, cp)) {
        *refused = true;
        http_resume(req);
    }
    return res;
}

enum handler_result api_topology_missing(struct http_request *req, const char *kind,
                                         const char *name)
{
    char detail[200];
    snprintf(detail, sizeof detail, "%s %s does not exist; restarting the gateway re-creates it",
             kind, name);
    return http_reply_unavailable(req, detail);
}

const char *api_idempotency_key(struct http_request *req, struct field_errors *fe)
{
    const char *key = http_header(req, "Idempotency-Key");
    if (key && !idempotency_key_valid(key))
        field_errors_add(fe, "Idempotency-Key", "must be 1 to %d visible ASCII characters",
                         IDEMPOTENCY_KEY_MAX);
    return key;
}

enum handler_result api_key_reused(struct http_request *req)
{
    return http_reply_problem(req, 422,
                              "this Idempotency-Key was used with a different request body");
}
