/* Fare endpoints: POST /fares (the reference workshop's input: customerId, fareId, fareAmount,
 * cc, expiryDate, cvv) starts a fare saga; GET /fares/{id} and GET /rides/{id}/fare show it with
 * its steps; the operators' GET /fares lists them newest first. Card data lives only in this
 * request's memory: the saga keeps the last four digits, nothing is logged. The work is
 * rydes/saga.h. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/buf.h"
#include "rydes/fare_input.h"
#include "rydes/jsontext.h"
#include "rydes/problem.h"
#include "rydes/rides.h"
#include "rydes/saga.h"
#include "rydes/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What makes two submissions the same fare (no card number or cvv in it). */
static void fare_hash(const struct fare_input *in, char *out)
{
    struct buf text;
    buf_init(&text);
    buf_printf(&text, "%s\n%s\n%.2f\n%s", in->customer, in->fare_id, in->amount, in->last4);
    secret_sha256_hex(buf_str(&text), text.len, out);
    buf_cleanup(&text);
}

static enum handler_result reply_fare(struct http_request *req, struct db_conn *c,
                                      const char *fare_id, const char *ride_id, int status)
{
    json_t *fare = NULL;
    enum mq_status st = saga_fare_json(c, fare_id, ride_id, &fare, NULL);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, "no such fare");
    if (status == 202) {
        char self[100];
        snprintf(self, sizeof self, "/fares/%s",
                 json_string_value(json_object_get(fare, "fare_id")));
        http_add_header(req, "Location", self);
        http_add_header(req, "Content-Location", self);
    }
    return http_reply_json(req, status, fare);
}

enum handler_result api_fares_create(struct http_request *req)
{
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    struct fare_input in;
    fare_input(req->json, &in, &fe);
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    char hash[65];
    fare_hash(&in, hash);
    bool created = false;
    enum mq_status st =
        saga_start(c, in.fare_id, NULL, in.customer, in.amount, in.last4, hash, &created);
    char *stored = NULL;
    json_t *existing = NULL;
    if (st == MQ_OK && !created)
        st = saga_fare_json(c, in.fare_id, NULL, &existing, &stored);
    json_decref(existing);
    bool same = created || (stored && strcmp(stored, hash) == 0);
    free(stored);
    if (st != MQ_OK) {
        api_db_release(req, c);
        return api_mq_failure(req, st, NULL);
    }
    if (!same) {
        api_db_release(req, c);
        return http_reply_problem(req, 409, "a fare with this fareId exists with other details");
    }
    return reply_fare(req, c, in.fare_id, NULL, 202);
}

enum handler_result api_fares_get(struct http_request *req)
{
    enum handler_result res;
    const char *id = route_param(&req->match, "id");
    if (!id || !fare_id_valid(id))
        return http_reply_problem(req, 404, "no such fare");
    struct db_conn *c = api_db_acquire(req, &res);
    return c ? reply_fare(req, c, id, NULL, 200) : res;
}

enum handler_result api_rides_fare(struct http_request *req)
{
    enum handler_result res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct ride ride;
    enum mq_status st = rides_get(c, route_param(&req->match, "id"), &ride);
    if (st != MQ_OK) {
        api_db_release(req, c);
        return api_mq_failure(req, st, "no such ride");
    }
    json_t *fare = NULL;
    st = saga_fare_json(c, NULL, ride.id, &fare, NULL);
    api_db_release(req, c);
    if (st == MQ_NOT_FOUND) { /* the ride's fare is not started yet (customer-accounting) */
        char self[80], ride_link[64];
        snprintf(self, sizeof self, "/rides/%s/fare", ride.id);
        snprintf(ride_link, sizeof ride_link, "/rides/%s", ride.id);
        fare = json_pack("{s:s, s:n, s:f, s:s, s:[], s:{s:s, s:s}}", "ride_id", ride.id, "fare_id",
                         "amount", ride.fare, "status", "pending", "steps", "links", "self", self,
                         "ride", ride_link);
        st = MQ_OK;
    }
    ride_clear(&ride);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(req, 200, fare);
}

enum handler_result api_fares_list(struct http_request *req)
{
    enum handler_result res;
    int limit;
    struct api_time_cursor cur;
    if (!api_time_page(req, fare_id_valid, &limit, &cur, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    json_t *items = NULL;
    char next[128];
    enum mq_status st =
        saga_fares_list(c, cur.us[0] ? cur.us : NULL, cur.id, limit, &items, next, sizeof next);
    api_db_release(req, c);
    if (st != MQ_OK)
        return api_mq_failure(req, st, NULL);
    return http_reply_json(
        req, 200,
        json_pack("{s:o, s:o}", "fares", items, "next", next[0] ? json_string(next) : json_null()));
}
