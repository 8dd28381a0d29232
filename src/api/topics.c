/* Topic endpoints: PUT/GET/DELETE /topics/{name}, GET /topics, the subscriptions of a topic,
 * and publishing. Filter policies are compiled here first, so an invalid one is a 400 that says
 * what is wrong before anything is stored. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/mem.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_input.h"
#include "rydes/problem.h"
#include "rydes/topic_cache.h"
#include "rydes/topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *topic_json(const struct mq_topic *t)
{
    char self[300], subs[340], msgs[340];
    snprintf(self, sizeof self, "/topics/%s", t->name);
    snprintf(subs, sizeof subs, "%s/subscriptions", self);
    snprintf(msgs, sizeof msgs, "%s/messages", self);
    return json_pack("{s:s, s:{s:b, s:b}, s:s, s:{s:s, s:s, s:s}}", "name", t->name, "attributes",
                     "fifo", t->fifo, "content_based_dedup", t->content_based_dedup, "created_at",
                     t->created_at, "links", "self", self, "subscriptions", subs, "messages", msgs);
}

/* Reads the topic named by {name}; answers 404/503/500 itself otherwise. */
static bool api_topic(struct http_request *req, struct db_conn *c, struct mq_topic *t,
                      enum handler_result *res)
{
    const char *name = route_param(&req->match, "name");
    enum mq_status st = MQ_NOT_FOUND;
    if (name && mq_topic_name_valid(name))
        st = mq_topic_get(c, name, t);
    if (st == MQ_OK)
        return true;
    *res = api_mq_failure(req, st, "no such topic");
    return false;
}

/* A connection with the topic of {name} read; NULL when either failed (answered). */
static struct db_conn *topic_conn(struct http_request *req, struct mq_topic *t,
                                  enum handler_result *res)
{
    struct db_conn *c = api_db_acquire(req, res);
    if (c && !api_topic(req, c, t, res)) {
        api_db_release(req, c);
        c = NULL;
    }
    return c;
}

enum handler_result api_topics_put(struct http_request *req)
{
    const char *name = route_param(&req->match, "name");
    struct field_errors fe;
    field_errors_init(&fe);
    bool cbd;
    if (!mq_topic_name_valid(name))
        field_errors_add(&fe, "name", "must be 1 to 256 of A-Z a-z 0-9 _ -, and .fifo for FIFO");
    topic_input(req->json, name, &cbd, &fe);
    enum handler_result res;
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    bool created = false;
    struct mq_topic t;
    enum mq_status st = mq_topic_put(c, name, cbd, &created);
    topic_cache_forget(req->app->topic_cache, name);
    if (st == MQ_OK)
        st = mq_topic_get(c, name, &t);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    if (created) {
        char self[300];
        snprintf(self, sizeof self, "/topics/%s", name);
        http_add_header(req, "Location", self);
    }
    return http_reply_json(req, created ? 201 : 200, topic_json(&t));
}

enum handler_result api_topics_get(struct http_request *req)
{
    enum handler_result res;
    struct mq_topic t;
    struct db_conn *c = topic_conn(req, &t, &res);
    if (!c)
        return res;
    api_db_release(req, c);
    return http_reply_json(req, 200, topic_json(&t));
}

static void forget_topic(struct app *app, const char *name)
{
    topic_cache_forget(app->topic_cache, name);
}

enum handler_result api_topics_delete(struct http_request *req)
{
    return api_delete_named(req, mq_topic_name_valid, mq_topic_delete, forget_topic,
                            "no such topic");
}

static json_t *topic_links(const char *name)
{
    char self[300];
    snprintf(self, sizeof self, "/topics/%s", name);
    return json_pack("{s:s}", "self", self);
}

enum handler_result api_topics_list(struct http_request *req)
{
    return api_list_names(req, "topics", mq_topic_name_valid, mq_topic_list, topic_links);
}

static json_t *subscription_json(const struct mq_topic *t, const struct mq_subscription *s)
{
    char self[400];
    snprintf(self, sizeof self, "/topics/%s/subscriptions/%s", t->name, s->name);
    json_t *o = json_pack("{s:s, s:O?, s:s, s:b, s:s, s:{s:s}}", "name", s->name, "filter_policy",
                          s->filter_policy, "filter_policy_scope",
                          s->scope == FILTER_SCOPE_BODY ? "body" : "attributes", "raw_delivery",
                          s->raw, "created_at", s->created_at, "links", "self", self);
    if (!s->url) {
        json_object_set_new(o, "queue", json_string(s->queue));
        return o;
    }
    json_object_set_new(o, "url", json_string(s->url));
    json_object_set_new(o, "dead_letter_queue",
                        s->dead_letter_queue[0] ? json_string(s->dead_letter_queue) : json_null());
    json_object_set_new(o, "delivery_policy",
                        json_pack("{s:i, s:i, s:i}", "max_attempts", s->max_attempts,
                                  "min_delay_seconds", s->min_delay_seconds, "max_delay_seconds",
                                  s->max_delay_seconds));
    return o;
}

/* The representation of t's subscription name into *out (NULL when there is none). */
static enum mq_status subscription_named(struct db_conn *c, const struct mq_topic *t,
                                         const char *name, json_t **out)
{
    struct mq_subscription *subs = NULL;
    int n = 0;
    *out = NULL;
    enum mq_status st = mq_subscriptions_load(c, t, &subs, &n);
    for (int i = 0; st == MQ_OK && i < n && !*out; i++)
        if (strcmp(subs[i].name, name) == 0)
            *out = subscription_json(t, &subs[i]);
    mq_subscriptions_free(subs, n);
    return st;
}

enum handler_result api_subscriptions_put(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    const char *name = route_param(&req->match, "sub");
    struct field_errors fe;
    field_errors_init(&fe);
    if (!mq_input_queue_name(name) || strstr(name, ".fifo"))
        field_errors_add(&fe, "sub", "must be 1 to 80 of A-Z a-z 0-9 _ -");
    struct mq_subscription_input in;
    subscription_input(req->json, &in, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct mq_topic t;
    struct db_conn *c = topic_conn(req, &t, &res);
    if (!c)
        return res;
    bool created = false;
    char detail[256] = "";
    const char *field = NULL;
    enum mq_status st =
        mq_subscription_put(c, &t, name, &in, &created, detail, sizeof detail, &field);
    topic_cache_forget(req->app->topic_cache, t.name);
    json_t *body = NULL;
    if (st == MQ_OK)
        st = subscription_named(c, &t, name, &body);
    api_db_release(req, c);
    if (st == MQ_INVALID && field) /* a queue that is not there or cannot subscribe */
        return api_reply_field_error(req, field, detail);
    if (st != MQ_OK)
        return api_mq_failure(req, st, detail);
    if (!body) /* deleted by someone else in between */
        return http_reply_problem(req, 409, "the subscription was deleted meanwhile");
    if (created) {
        char self[400];
        snprintf(self, sizeof self, "/topics/%s/subscriptions/%s", t.name, name);
        http_add_header(req, "Location", self);
    }
    return http_reply_json(req, created ? 201 : 200, body);
}

enum handler_result api_subscriptions_get(struct http_request *req)
{
    enum handler_result res;
    struct mq_topic t;
    struct db_conn *c = topic_conn(req, &t, &res);
    if (!c)
        return res;
    const char *name = route_param(&req->match, "sub");
    json_t *body = NULL;
    enum mq_status st = mq_input_queue_name(name) ? subscription_named(c, &t, name, &body) : MQ_OK;
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return body ? http_reply_json(req, 200, body)
                : http_reply_problem(req, 404, "no such subscription");
}

/* A page of a topic's subscriptions in name order: ?limit (1..1000, 100) after ?after (a
 * name), next the last name when more follow. A topic has few: they are read whole and the
 * page is cut here. */
enum handler_result api_subscriptions_list(struct http_request *req)
{
    enum handler_result res;
    int limit;
    const char *after;
    if (!api_name_page(req, mq_input_queue_name, &limit, &after, &res))
        return res;
    struct mq_topic t;
    struct db_conn *c = topic_conn(req, &t, &res);
    if (!c)
        return res;
    struct mq_subscription *subs = NULL;
    int n = 0;
    enum mq_status st = mq_subscriptions_load(c, &t, &subs, &n);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    json_t *list = json_array(), *next = json_null();
    for (int i = 0; i < n; i++) {
        if (after && strcmp(subs[i].name, after) <= 0)
            continue;
        if ((int)json_array_size(list) == limit) {
            json_decref(next);
            next = json_string(subs[i - 1].name);
            break;
        }
        json_array_append_new(list, subscription_json(&t, &subs[i]));
    }
    mq_subscriptions_free(subs, n);
    return http_reply_json(req, 200, json_pack("{s:o, s:o}", "subscriptions", list, "next", next));
}

enum handler_result api_subscriptions_delete(struct http_request *req)
{
    enum handler_result res;
    struct mq_topic t;
    struct db_conn *c = topic_conn(req, &t, &res);
    if (!c)
        return res;
    const char *name = route_param(&req->match, "sub");
    enum mq_status st =
        mq_input_queue_name(name) ? mq_subscription_delete(c, &t, name) : MQ_NOT_FOUND;
    topic_cache_forget(req->app->topic_cache, t.name);
    api_db_release(req, c);
    return st == MQ_OK ? http_reply_empty(req, 204)
                       : api_mq_failure(req, st, "no such subscription");
}

static json_t *publish_result_json(const struct mq_publish_result *r)
{
    return json_pack("{s:s, s:i, s:b}", "message_id", r->message_id, "deliveries", r->deliveries,
                     "duplicate", r->duplicate);
}

/* Validates p against the topic of set and publishes it; MQ_INVALID with fe filled. */
static enum mq_status publish_checked(struct http_request *req, struct db_conn *c,
                                      const struct topic_set *set, const struct mq_publish *p,
                                      const char *prefix, struct field_errors *fe,
                                      struct mq_publish_result *out)
{
    mq_input_publish_topic(p, prefix, &set->topic, fe);
    if (fe->count)
        return MQ_INVALID;
    return mq_publish(c, &set->topic, set->subs, set->n, p, mq_hub_listened_cb, req->app->hub, out);
}

/* A publish the combiner cannot take (a FIFO topic, one not cached, push or mixed
 * subscriptions), on a data-plane thread: as it comes, on a connection of its own. */
static enum handler_result publish_direct(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_publish p;
    char *owned = NULL;
    mq_input_publish(req->json, "", &p, &owned, &fe);
    const char *name = route_param(&req->match, "name");
    struct db_conn *c = NULL;
    if (api_reply_invalid(req, &fe, &res))
        goto done;
    if (!name || !mq_topic_name_valid(name)) {
        res = http_reply_problem(req, 404, "no such topic");
        goto done;
    }
    if (!(c = api_db_acquire(req, &res)))
        goto done;
    enum mq_status st;
    struct mq_publish_result out;
    struct topic_set *set = api_cached_topic(req, c, name, &st);
    if (set)
        st = publish_checked(req, c, set, &p, "", &fe, &out);
    api_db_release(req, c);
    topic_set_release(set);
    if (st == MQ_OK)
        api_published(req, &out);
    if (st == MQ_INVALID && api_reply_invalid(req, &fe, &res))
        goto done;
    res = st != MQ_OK ? api_mq_failure(req, st, "no such topic")
                      : http_reply_json(req, out.duplicate ? 200 : 201, publish_result_json(&out));
done:
    free(owned);
    return res;
}

/* A publish planned on its HTTP thread: the request's state while the combiner or a
 * data-plane thread stores it. */
struct publish_state {
    struct mq_combined_publish cp;
    struct mq_publish p;
    char *owned; /* what p points into besides the request's JSON */
    struct mq_publish_plan plan;
    bool direct;               /* the combiner did not take it: store it on a data-plane thread */
    struct api_conn_miss miss; /* of its work on a data-plane thread */
};

static void publish_state_free(void *v)
{
    struct publish_state *ps = v;
    mq_publish_plan_clear(&ps->plan);
    free(ps->owned);
    free(ps);
}

/* Stores the planned publish on a pooled connection (http_offload_work's work). */
static void publish_store(struct http_request *req)
{
    struct publish_state *ps = req->state;
    struct db_conn *c = api_db_for_work(req, &ps->miss);
    if (c) {
        const struct mq_publish_plan *plans[] = {&ps->plan};
        ps->cp.o.status = mq_publish_plans(c, plans, 1, &ps->cp.deliveries);
        api_db_release(req, c);
    }
}

static enum handler_result publish_finished(struct http_request *req)
{
    struct publish_state *ps = req->state;
    if (ps->direct) {
        ps->direct = false;
        return http_offload_work(req, publish_store, publish_finished);
    }
    if (ps->miss.missed)
        return api_reply_no_conn(req, ps->miss.why);
    if (ps->cp.o.status != MQ_OK)
        return api_mq_failure(req, ps->cp.o.status, "no such topic");
    struct mq_publish_result out = {.deliveries = ps->cp.deliveries};
    memcpy(out.message_id, ps->plan.message_id, sizeof out.message_id);
    api_published(req, &out);
    return http_reply_json(req, 201, publish_result_json(&out));
}

/* Plans a publish to a cached standard topic whose publishes are all lean and hands it to the
 * combiner (rydes/mq_combiner.h): the request suspends until it is stored with those of other
 * requests. False, having done nothing, when the topic is not such a one. */
static bool publish_combined(struct http_request *req, struct publish_state *ps, const char *name,
                             enum handler_result *res)
{
    struct topic_set *set = api_cached_lean_topic(req, name);
    if (!set)
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_publish_topic(&ps->p, "", &set->topic, &fe);
    if (api_reply_invalid(req, &fe, res)) {
        topic_set_release(set);
        return true;
    }
    mq_publish_plan(&set->topic, set->subs, set->n, &ps->p, mq_hub_listened_cb, req->app->hub,
                    &ps->plan);
    topic_set_release(set);
    *res = api_publish_handed_over(req, &ps->cp, &ps->plan, &ps->direct, publish_finished);
    return true;
}

enum handler_result api_topics_publish(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    const char *name = route_param(&req->match, "name");
    if (!req->app->combiner || !name || !mq_topic_name_valid(name))
        return http_offload_data(req, publish_direct); /* which answers every case */
    struct publish_state *ps = xcalloc(1, sizeof *ps);
    req->state = ps;
    req->state_free = publish_state_free;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_publish(req->json, "", &ps->p, &ps->owned, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    if (publish_combined(req, ps, name, &res))
        return res;
    return http_offload_data(req, publish_direct);
}

/* Reads "recipients": 1..MQ_MAX_RECIPIENTS distinct queue names. */
static int recipients_input(json_t *list, const char **names, struct field_errors *fe)
{
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n < 1 || n > MQ_MAX_RECIPIENTS) {
        field_errors_add(fe, "recipients", "must be an array of 1 to %d queue names",
                         MQ_MAX_RECIPIENTS);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = json_string_value(json_array_get(list, i));
        if (!names[i] || !mq_input_queue_name(names[i]))
            field_errors_add(fe, "recipients", "item %zu is not a valid queue name", i);
        for (size_t j = 0; names[i] && j < i; j++)
            if (names[j] && strcmp(names[i], names[j]) == 0)
                field_errors_add(fe, "recipients", "%s is named twice", names[i]);
    }
    return (int)n;
}

enum handler_result api_recipient_list(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    const char *names[MQ_MAX_RECIPIENTS];
    int n = recipients_input(json_object_get(req->json, "recipients"), names, &fe);
    json_t *rest = json_copy(req->json); /* the publish fields, without "recipients" */
    json_object_del(rest, "recipients");
    struct mq_publish p;
    char *owned = NULL;
    mq_input_publish(rest, "", &p, &owned, &fe);
    if (p.dedup_id)
        field_errors_add(&fe, "dedup_id", "applies to topics and queues, not recipient lists");
    struct db_conn *c = fe.count ? NULL : api_db_acquire(req, &res);
    if (!fe.count && !c)
        goto done; /* the 503 is queued */
    if (api_reply_invalid(req, &fe, &res))
        goto done;
    struct mq_subscription *targets = NULL;
    const char *why[MQ_MAX_RECIPIENTS] = {0};
    char detail[MQ_MAX_RECIPIENTS * (MQ_NAME_MAX + 48)] = "";
    struct mq_publish_result out;
    /* one transaction: a recipient deleted between the lookup and the insert means none */
    enum mq_status st = db_begin(c) ? MQ_OK : MQ_UNAVAILABLE;
    if (st == MQ_OK)
        st = mq_recipients_resolve(c, names, n, p.group_id, &targets, why, detail, sizeof detail);
    for (int i = 0; st == MQ_INVALID && i < n; i++)
        if (why[i]) {
            char field[32];
            snprintf(field, sizeof field, "recipients[%d]", i);
            field_errors_add(&fe, field, "%s: %s", names[i], why[i]);
        }
    bool any_fifo = false;
    for (int i = 0; st == MQ_OK && i < n; i++)
        any_fifo |= targets[i].queue_fifo;
    if (st == MQ_OK && p.group_id && !any_fifo) {
        field_errors_add(&fe, "group_id", "applies to FIFO recipients only");
        st = MQ_INVALID;
    }
    if (st == MQ_OK)
        st = mq_publish(c, NULL, targets, n, &p, mq_hub_listened_cb, req->app->hub, &out);
    if (st == MQ_OK && out.deliveries != n) {
        st = MQ_CONFLICT;
        snprintf(detail, sizeof detail, "a recipient was deleted meanwhile; nothing delivered");
    }
    if (st == MQ_OK && !db_commit(c))
        st = MQ_UNAVAILABLE;
    if (st != MQ_OK)
        db_rollback(c);
    api_db_release(req, c);
    mq_subscriptions_free(targets, targets ? n : 0);
    if (st == MQ_OK)
        api_published(req, &out);
    if (fe.count) { /* the recipients' detail names them all; the errors, each by its index */
        res = http_reply_invalid(req, &fe, detail[0] ? detail : NULL);
        field_errors_cleanup(&fe);
        goto done;
    }
    res = st == MQ_OK ? http_reply_json(req, 201, publish_result_json(&out))
                      : api_mq_failure(req, st, detail);
done:
    free(owned);
    json_decref(rest);
    return res;
}

/* Publishes one batch entry: into ok, or into failed with what was wrong; *done collects the
 * publishes for the counters (counted once the batch committed). A database failure stops the
 * batch (*fatal). */
static void publish_entry(struct http_request *req, struct db_conn *c, const struct topic_set *set,
                          size_t index, json_t *item, json_t *ok, json_t *failed,
                          struct mq_publish_result *done, int *ndone, enum mq_status *fatal)
{
    json_t *fields = json_copy(item);
    json_object_del(fields, "id");
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_publish p;
    char *owned = NULL, prefix[32];
    snprintf(prefix, sizeof prefix, "entries[%zu]", index);
    mq_input_publish(fields, prefix, &p, &owned, &fe);
    json_t *id = json_object_get(item, "id");
    struct mq_publish_result out;
    enum mq_status st = fe.count ? MQ_INVALID : publish_checked(req, c, set, &p, prefix, &fe, &out);
    if (st == MQ_INVALID) {
        json_t *first = json_array_get(fe.list, 0);
        json_array_append_new(
            failed,
            json_pack("{s:O, s:s, s:s, s:O}", "id", id, "code", "invalid", "message",
                      json_string_value(json_object_get(first, "message")), "errors", fe.list));
    } else if (st == MQ_OK) {
        json_t *r = publish_result_json(&out);
        json_object_set(r, "id", id);
        json_array_append_new(ok, r);
        done[(*ndone)++] = out;
    } else {
        *fatal = st;
    }
    field_errors_cleanup(&fe);
    free(owned);
    json_decref(fields);
}

/* A FIFO batch locks every group it names up front, in one order (see mq_publish_lock_groups). */
static enum mq_status lock_batch_groups(struct db_conn *c, const struct topic_set *set,
                                        json_t *items)
{
    json_t *groups = json_array();
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *g = json_object_get(json_array_get(items, i), "group_id");
        if (json_is_string(g) && mq_input_token_valid(json_string_value(g)))
            json_array_append(groups, g); /* invalid ones are refused by the entry's check */
    }
    enum mq_status st = mq_publish_lock_groups(c, &set->topic, set->subs, set->n, groups);
    json_decref(groups);
    return st;
}

enum handler_result api_topics_publish_batch(struct http_request *req)
{
    enum handler_result res;
    json_t *items = api_batch_items(req, "entries", true, &res);
    if (!items)
        return res;
    const char *name = route_param(&req->match, "name");
    if (!name || !mq_topic_name_valid(name))
        return http_reply_problem(req, 404, "no such topic");
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    enum mq_status st;
    struct topic_set *set = api_cached_topic(req, c, name, &st);
    json_t *ok = json_array(), *failed = json_array();
    /* one transaction: a failure answered 5xx has published nothing, so a retry is safe */
    if (set && !db_begin(c))
        st = MQ_UNAVAILABLE;
    if (set && st == MQ_OK && set->topic.fifo)
        st = lock_batch_groups(c, set, items);
    struct mq_publish_result done[MQ_MAX_BATCH];
    int ndone = 0;
    for (size_t i = 0; set && st == MQ_OK && i < json_array_size(items); i++)
        publish_entry(req, c, set, i, json_array_get(items, i), ok, failed, done, &ndone, &st);
    if (set && st == MQ_OK && !db_commit(c))
        st = MQ_UNAVAILABLE;
    if (set && st != MQ_OK)
        db_rollback(c);
    api_db_release(req, c);
    topic_set_release(set);
    for (int i = 0; st == MQ_OK && i < ndone; i++)
        api_published(req, &done[i]); /* committed: count them, wake the push worker */
    if (st != MQ_OK) {
        json_decref(ok);
        json_decref(failed);
        return api_mq_failure(req, st, "no such topic");
    }
    return http_reply_json(req, 200, json_pack("{s:o, s:o}", "successful", ok, "failed", failed));
}
