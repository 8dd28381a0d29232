/* RFQ endpoints: POST /rfqs (alias POST /submit-instant-ride-rfq), GET /rfqs/{id}/status and
 * /result (aliases GET /retrieve-rfq-status?id= and /retrieve-rfq-result?id=), GET
 * /query-instant-ride-rfq/{id} (the result as it stands) and POST /rfqs/{id}/quotes (a quote
 * posted for a unicorn, put into the return address queue), and the operators' GET /rfqs (newest
 * first). The work is rydes/rfqs.h. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/problem.h"
#include "rydes/rfqs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads and checks the request and its Idempotency-Key; false with the 4xx answered. */
static bool rfq_request(struct http_request *req, struct rfq_input *in, const char **key,
                        enum handler_result *res)
{
    if (!api_body_object(req, res))
        return false;
    struct field_errors fe;
    field_errors_init(&fe);
    rfq_input(req->json, in, &fe);
    *key = api_idempotency_key(req, &fe);
    return !api_reply_invalid(req, &fe, res);
}

enum handler_result api_rfqs_create(struct http_request *req)
{
    enum handler_result res;
    struct rfq_input in;
    const char *key;
    if (!rfq_request(req, &in, &key, &res))
        return res;
    char hash[IDEMPOTENCY_HASH_LEN] = "";
    if (key)
        rfqs_request_hash(&in, hash);
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct rfq r = {0};
    struct mq_publish_result pub;
    enum mq_status st = MQ_NOT_FOUND;
    enum rfqs_outcome o = RFQS_FAILED;
    if (key) /* a known key answers whatever else has changed (a topic deleted since) */
        o = rfqs_find_key(c, key, hash, false, &r, &st);
    bool no_topic = false;
    if (o == RFQS_FAILED && st == MQ_NOT_FOUND) { /* no key, or a new one */
        struct topic_set *set = api_cached_topic(req, c, RFQS_TOPIC, &st);
        if (set || st == MQ_NOT_FOUND)
            o = rfqs_submit(c, set, &in, key, hash, mq_hub_listened_cb, req->app->hub, &r, &pub,
                            &st);
        no_topic = !set && st == MQ_NOT_FOUND;
        topic_set_release(set);
    }
    api_db_release(req, c);
    if (o == RFQS_KEY_REUSED)
        return api_key_reused(req);
    if (o == RFQS_FAILED)
        return no_topic ? api_topology_missing(req, "topic", RFQS_TOPIC)
                        : api_mq_failure(req, st, NULL);
    if (o == RFQS_SUBMITTED)
        api_published(req, &pub);
    char self[80];
    snprintf(self, sizeof self, "/rfqs/%s/status", r.id);
    http_add_header(req, "Location", self);
    http_add_header(req, "Content-Location", self);
    res = http_reply_json(req, 202, rfq_status_json(&r, true));
    rfq_clear(&r);
    return res;
}

/* Reads the RFQ named by {id} or ?id=; answers 400/404/503 itself otherwise. */
static bool load(struct http_request *req, bool with_quotes, struct rfq *r,
                 enum handler_result *res)
{
    const char *id = route_param(&req->match, "id");
    if (!id)
        id = http_query(req, "id");
    if (!id) {
        struct field_errors fe;
        field_errors_init(&fe);
        field_errors_add(&fe, "id", "is required");
        api_reply_invalid(req, &fe, res);
        return false;
    }
    struct db_conn *c = api_db_acquire(req, res);
    if (!c)
        return false;
    enum mq_status st = rfqs_get(c, id, with_quotes, r);
    api_db_release(req, c);
    if (st != MQ_OK)
        *res = api_mq_failure(req, st, "no such RFQ");
    return st == MQ_OK;
}

/* Seconds until the RFQ's eta, at least 1: when an early poller should look again. */
static void retry_after_eta(struct http_request *req, const struct rfq *r)
{
    int64_t eta_us = 0;
    long secs = 1;
    if (clock_parse_rfc3339(r->eta, &eta_us) && eta_us > clock_wall_us())
        secs = (long)((eta_us - clock_wall_us() + 999999) / 1000000);
    char v[24];
    snprintf(v, sizeof v, "%ld", secs < 1 ? 1 : secs);
    http_add_header(req, "Retry-After", v);
}

enum handler_result api_rfqs_status(struct http_request *req)
{
    enum handler_result res;
    struct rfq r;
    if (!load(req, false, &r, &res))
        return res;
    if (!r.done)
        http_add_header(req, "Retry-After", "1");
    res = http_reply_json(req, 200, rfq_status_json(&r, false));
    rfq_clear(&r);
    return res;
}

enum handler_result api_rfqs_result(struct http_request *req)
{
    enum handler_result res;
    struct rfq r;
    if (!load(req, true, &r, &res))
        return res;
    if (!r.done) {
        retry_after_eta(req, &r);
        res = http_reply_problem(req, 409,
                                 "the RFQ is still gathering quotes; poll its status "
                                 "or come back after Retry-After");
    } else {
        res = http_reply_json(req, 200, rfq_result_json(&r));
    }
    rfq_clear(&r);
    return res;
}

enum handler_result api_rfqs_query(struct http_request *req)
{
    enum handler_result res;
    struct rfq r;
    if (!load(req, true, &r, &res))
        return res;
    res = http_reply_json(req, 200, rfq_result_json(&r));
    rfq_clear(&r);
    return res;
}

enum handler_result api_rfqs_quote(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    struct quote_input q;
    quote_input(req->json, &q, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct rfq r;
    if (!load(req, false, &r, &res))
        return res;
    if (r.done) {
        rfq_clear(&r);
        return http_reply_problem(req, 409, "the RFQ is done; quotes are no longer taken");
    }
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c) {
        rfq_clear(&r);
        return res;
    }
    bool asked = false;
    struct mq_queue queue;
    enum mq_status st = rfqs_asked(c, r.id, q.unicorn, &asked);
    if (st == MQ_OK && asked && (st = mq_queue_get(c, RFQS_RESPONSES, &queue)) == MQ_OK)
        st = rfqs_enqueue_quote(c, &queue, r.id, &q, mq_hub_listened(req->app->hub, queue.id));
    api_db_release(req, c);
    rfq_clear(&r);
    if (st == MQ_OK && !asked)
        return api_reply_field_error(req, "unicorn",
                                     "this RFQ did not ask that unicorn (it asks those whose "
                                     "queue " RFQS_UNICORN_QUEUE
                                     "NAME had a subscription to " RFQS_TOPIC
                                     " that took its request)");
    if (st == MQ_NOT_FOUND && !asked) /* the RFQ went meanwhile */
        return api_mq_failure(req, st, "no such RFQ");
    if (st == MQ_NOT_FOUND)
        return api_topology_missing(req, "queue", RFQS_RESPONSES);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(
        req, 202,
        json_pack("{s:s, s:s}", "status", "accepted", "rfq_id", route_param(&req->match, "id")));
}

/* ids_is_uuid as the validator api_time_page wants. */
static bool rfq_id_valid(const char *id)
{
    return ids_is_uuid(id);
}

/* {"rfqs": [summary, ...], "next"} of n RFQs, which it clears and frees. */
static json_t *rfq_page_json(struct rfq *rfqs, int n, const char *next)
{
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(items, rfq_summary_json(&rfqs[i]));
        rfq_clear(&rfqs[i]);
    }
    free(rfqs);
    return json_pack("{s:o, s:o}", "rfqs", items, "next",
                     next[0] ? json_string(next) : json_null());
}

enum handler_result api_rfqs_list(struct http_request *req)
{
    enum handler_result res;
    int limit;
    struct api_time_cursor cur;
    if (!api_time_page(req, rfq_id_valid, &limit, &cur, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct rfq *rfqs = NULL;
    int n = 0;
    char next[128];
    enum mq_status st =
        rfqs_list(c, cur.us[0] ? cur.us : NULL, cur.id, limit, &rfqs, &n, next, sizeof next);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(req, 200, rfq_page_json(rfqs, n, next));
}
