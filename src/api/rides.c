/* Ride endpoints: POST /rides (and its alias POST /submit-ride-completion), GET /rides/{id},
 * GET /rides?customer=&order=. The domain work is rydes/rides.h; this file decodes and encodes. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/idempotency.h"
#include "rydes/mem.h"
#include "rydes/problem.h"
#include "rydes/rides.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The SHA-256 of the validated ride: the same ride sent again with other spacing, member order,
 * alias spellings or number forms ("600" or 600) is the same request. */
static void request_hash(const struct ride_input *in, char *out)
{
    json_t *canon = json_pack("{s:s, s:s, s:s, s:s?, s:f, s:f, s:f}", "from", in->from, "to",
                              in->to, "customer", in->customer, "unicorn", in->unicorn, "duration",
                              in->duration, "distance", in->distance, "fare", in->fare);
    idempotency_hash(canon, out);
    json_decref(canon);
}

static enum handler_result reply_ride(struct http_request *req, int status, const struct ride *r)
{
    char self[64];
    snprintf(self, sizeof self, "/rides/%s", r->id);
    if (status == 201)
        http_add_header(req, "Location", self);
    http_add_header(req, "Content-Location", self);
    if (r->json) /* a new ride: the text it was published with */
        return http_reply(req, status, "application/json", r->json, strlen(r->json));
    char *text = ride_text(r);
    return http_reply_owned(req, status, "application/json", text, strlen(text));
}

/* Stores and publishes in; answers every outcome. */
static enum handler_result create(struct http_request *req, struct db_conn *c,
                                  const struct ride_input *in, const char *key)
{
    char hash[IDEMPOTENCY_HASH_LEN] = "";
    if (key) /* the fingerprint matters only to a request that may be replayed */
        request_hash(in, hash);
    enum mq_status st;
    struct topic_set *set = api_cached_topic(req, c, RIDES_TOPIC, &st);
    if (!set && st != MQ_NOT_FOUND) {
        api_db_release(req, c);
        return api_mq_failure(req, st, NULL);
    }
    struct ride ride;
    struct mq_publish_result pub;
    enum rides_outcome o = rides_create(c, set, in, key, key ? hash : NULL, req->request_id,
                                        mq_hub_listened_cb, req->app->hub, &ride, &pub, &st);
    api_db_release(req, c);
    topic_set_release(set);
    enum handler_result res;
    switch (o) {
    case RIDES_CREATED:
        api_published(req, &pub);
        /* fall through */
    case RIDES_REPLAYED:
        res = reply_ride(req, 201, &ride);
        ride_clear(&ride);
        return res;
    case RIDES_KEY_REUSED:
        return api_key_reused(req);
    case RIDES_NO_TOPIC:
        return api_topology_missing(req, "topic", RIDES_TOPIC);
    case RIDES_FAILED:
    default:
        return api_mq_failure(req, st, NULL);
    }
}

/* A ride handed to the combiner, and what to fall back on when it was refused. */
struct ride_state {
    struct rides_combined rc;
    bool direct;               /* the combiner did not take it: store it on a data-plane thread */
    struct api_conn_miss miss; /* of its work on a data-plane thread */
};

static void ride_state_free(void *p)
{
    struct ride_state *rs = p;
    rides_combined_clear(&rs->rc);
    free(rs);
}

static void ride_done(struct mq_combined *o)
{
    http_resume(o->ctx);
}

/* Stores a prepared ride as it is (http_offload_work's work). */
static void ride_store(struct http_request *req)
{
    struct ride_state *rs = req->state;
    struct db_conn *c = api_db_for_work(req, &rs->miss);
    if (c) {
        rides_combined_store(c, &rs->rc);
        api_db_release(req, c);
    }
}

static enum handler_result ride_finished(struct http_request *req)
{
    struct ride_state *rs = req->state;
    if (rs->direct) {
        rs->direct = false;
        return http_offload_work(req, ride_store, ride_finished);
    }
    if (rs->miss.missed)
        return api_reply_no_conn(req, rs->miss.why);
    if (rs->rc.o.status != MQ_OK)
        return api_mq_failure(req, rs->rc.o.status, NULL);
    api_published(req, &rs->rc.published);
    return reply_ride(req, 201, &rs->rc.out);
}

/* A ride without an Idempotency-Key, its topic cached with raw queue subscriptions only, goes
 * through the combiner (rydes/mq_combiner.h): the request suspends until the ride is stored and
 * published with those of other requests. False when it cannot (the caller stores it alone). */
static bool create_combined(struct http_request *req, const struct ride_input *in,
                            enum handler_result *res)
{
    enum mq_status st;
    struct topic_set *set = api_cached_topic(req, NULL, RIDES_TOPIC, &st);
    if (!set)
        return false;
    struct ride_state *rs = xcalloc(1, sizeof *rs);
    bool lean =
        rides_combined_init(&rs->rc, set, in, req->request_id, mq_hub_listened_cb, req->app->hub);
    topic_set_release(set);
    if (!lean) {
        ride_state_free(rs);
        return false;
    }
    rs->rc.o = (struct mq_combined){.status = MQ_ERROR, .done = ride_done, .ctx = req};
    req->state = rs;
    req->state_free = ride_state_free;
    *res = http_suspend(req, ride_finished);
    if (!mq_combiner_upper(req->app->combiner, &rs->rc.o)) { /* stopping, or busy */
        rs->direct = true;
        http_resume(req);
    }
    return true;
}

/* Reads and checks the ride and its key; false with the 4xx answered. */
static bool ride_request(struct http_request *req, struct ride_input *in, const char **key,
                         enum handler_result *res)
{
    if (!api_body_object(req, res))
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    rides_input(req->json, in, &fe);
    *key = api_idempotency_key(req, &fe);
    return !api_reply_invalid(req, &fe, res);
}

/* A ride with an Idempotency-Key, or one the combiner cannot take, on a data-plane thread. */
static enum handler_result create_alone(struct http_request *req)
{
    enum handler_result res;
    struct ride_input in;
    const char *key;
    if (!ride_request(req, &in, &key, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    return c ? create(req, c, &in, key) : res;
}

enum handler_result api_rides_create(struct http_request *req)
{
    enum handler_result res;
    struct ride_input in;
    const char *key;
    if (!ride_request(req, &in, &key, &res))
        return res;
    struct mq_combiner *cb = req->app->combiner;
    struct db_conn *c = NULL;
    bool busy;
    if (!key && cb && http_server_connections(req->server) <= 1 &&
        mq_combiner_idle(cb, MQ_COMBINED_UPPER) &&
        (c = db_pool_acquire_connected(req->app->pool, &busy))) {
        /* the only client, nothing else going on and an open connection free: at once, on this
         * thread (the one statement an HTTP thread runs: 5.0-5.2k rides/s so at 1 connection
         * against 4.0-5.2k handed over). Not with other clients: their requests wait unread
         * while it runs, then find the lane idle again and run alone in turn (16 connections, one
         * HTTP thread: 8-10k rides/s against 18-20k combined). The connection first, so that
         * the lane counts this ride as its statement in flight only while it runs, not while
         * it waits for the pool */
        if (mq_combiner_alone(cb, MQ_COMBINED_UPPER)) {
            res = create(req, c, &in, NULL);
            mq_combiner_alone_end(cb, MQ_COMBINED_UPPER);
            return res;
        }
    }
    if (c) /* others came meanwhile: the ride joins them, or goes to a data-plane thread */
        api_db_release(req, c);
    if (!key && cb && create_combined(req, &in, &res))
        return res;
    return http_offload_data(req, create_alone);
}

enum handler_result api_rides_get(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct ride ride;
    enum mq_status st = rides_get(c, route_param(&req->match, "id"), &ride);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, "no such ride");
    res = reply_ride(req, 200, &ride);
    ride_clear(&ride);
    return res;
}

/* The query of GET /rides: ?limit=, ?after=, ?customer=, ?order=. False (the 400 naming every
 * bad one queued, *res set) when any is invalid. */
struct ride_query {
    int limit;
    const char *after, *customer;
    bool newest;
};

static bool list_query(struct http_request *req, struct ride_query *q, enum handler_result *res)
{
    struct field_errors fe;
    field_errors_init(&fe);
    api_page(req, &q->limit, &q->after, &fe);
    int64_t cursor = 0;
    if (q->after && !validate_query_int(q->after, 1, INT64_MAX, &cursor))
        field_errors_add(&fe, "after", "is not a cursor returned by this list");
    q->customer = http_query(req, "customer");
    json_t *utf8 = q->customer ? json_string(q->customer) : NULL; /* NULL: not UTF-8 */
    if (q->customer &&
        (!utf8 || !q->customer[0] || validate_utf8_length(q->customer) > RIDES_TEXT_MAX))
        field_errors_add(&fe, "customer", "must be 1 to %d characters of UTF-8", RIDES_TEXT_MAX);
    json_decref(utf8);
    const char *order = http_query(req, "order");
    if (order && strcmp(order, "oldest") != 0 && strcmp(order, "newest") != 0)
        field_errors_add(&fe, "order", "must be oldest or newest");
    q->newest = order && strcmp(order, "newest") == 0;
    return !api_reply_invalid(req, &fe, res);
}

/* {"rides": [ride, ...], "next"} of n rides, which it clears and frees. */
static json_t *ride_page_json(struct ride *rides, int n, const char *next)
{
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(items, ride_json(&rides[i]));
        ride_clear(&rides[i]);
    }
    free(rides);
    return json_pack("{s:o, s:o}", "rides", items, "next",
                     next[0] ? json_string(next) : json_null());
}

enum handler_result api_rides_list(struct http_request *req)
{
    enum handler_result res;
    struct ride_query q;
    if (!list_query(req, &q, &res))
        return res;
    /* every customer's rides are an operator's view: the app token is public */
    if (!q.customer && req->role < ROLE_ADMIN)
        return http_reply_problem(req, 403,
                                  "listing every customer's rides needs an admin token: name a "
                                  "customer (?customer=)");
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct ride *rides = NULL;
    int n = 0;
    char next[24];
    enum mq_status st = rides_list(c, q.customer, q.newest, q.after ? q.after : "", q.limit, &rides,
                                   &n, next, sizeof next);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(req, 200, ride_page_json(rides, n, next));
}
