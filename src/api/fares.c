/* Fare endpoints: POST /fares (the reference workshop's input: customerId, fareId, fareAmount,
 * cc, expiryDate, cvv) starts a fare saga; GET /fares/{id} and GET /rides/{id}/fare show it with
 * its steps. Card data lives only in this request's memory: the saga keeps the last four digits,
 * nothing is logged. The work is rydes/saga.h. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/buf.h"
#include "rydes/jsontext.h"
#include "rydes/problem.h"
#include "rydes/rides.h"
#include "rydes/saga.h"
#include "rydes/secret.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FARE_ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"

struct fare_input {
    const char *customer, *fare_id;
    double amount;
    char last4[5];
};

/* "$20.00", "20.00", "20" or a JSON number; at most 2 decimals, 0..1e6. */
static bool amount_value(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
    } else {
        const char *s = json_string_value(v);
        if (!s)
            return false;
        if (*s == '$')
            s++;
        size_t dot = strcspn(s, ".");
        if (!isdigit((unsigned char)*s) || strspn(s, "0123456789.") != strlen(s) ||
            (s[dot] && strlen(s + dot) > 3) || strchr(s + dot + (s[dot] ? 1 : 0), '.'))
            return false;
        *out = strtod(s, NULL);
    }
    /* exactly a number of cents: 1e-9 is not 0.00 */
    return isfinite(*out) && *out >= 0 && *out <= 1e6 && round(*out * 100) / 100 == *out;
}

/* The card number's digits (spaces and dashes allowed between them): 12..19 of them. */
static bool card_digits(const char *cc, char *last4)
{
    char digits[24];
    size_t n = 0;
    for (const char *p = cc; *p; p++) {
        if (isdigit((unsigned char)*p) && n < sizeof digits - 1)
            digits[n++] = *p;
        else if (*p != ' ' && *p != '-')
            return false;
    }
    if (n < 12 || n > 19)
        return false;
    memcpy(last4, digits + n - 4, 4);
    last4[4] = '\0';
    return true;
}

/* "MM/YY" or "MM/YYYY", not in the past. */
static bool expiry_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if ((n != 5 && n != 7) || s[2] != '/' || strspn(s, "0123456789") != 2 ||
        strspn(s + 3, "0123456789") != n - 3)
        return false;
    int mm = (s[0] - '0') * 10 + (s[1] - '0'), yy = atoi(s + 3);
    if (mm < 1 || mm > 12 || (n == 7 && yy < 2000))
        return false;
    if (yy < 100)
        yy += 2000;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return yy > tm.tm_year + 1900 || (yy == tm.tm_year + 1900 && mm >= tm.tm_mon + 1);
}

static void fare_input(json_t *body, struct fare_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"customerId", "fareId", "fareAmount", "cc",
                                        "expiryDate", "cvv",    NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->customer = validate_string(body, "customerId", true, 1, RIDES_TEXT_MAX, fe);
    in->fare_id = validate_string(body, "fareId", true, 1, SAGA_FARE_ID_MAX, fe);
    if (in->fare_id && strspn(in->fare_id, FARE_ID_CHARS) != strlen(in->fare_id))
        field_errors_add(fe, "fareId", "must be 1 to 64 of A-Z a-z 0-9 _ -");
    else if (in->fare_id && strncmp(in->fare_id, SAGA_RIDE_PREFIX, strlen(SAGA_RIDE_PREFIX)) == 0)
        field_errors_add(fe, "fareId",
                         "must not start with \"" SAGA_RIDE_PREFIX
                         "\": those are the fares of rides");
    json_t *amount = json_object_get(body, "fareAmount");
    if (!amount || !amount_value(amount, &in->amount))
        field_errors_add(fe, "fareAmount", "must be an amount such as \"$20.00\" or 20.5");
    const char *cc = validate_string(body, "cc", true, 12, 23, fe);
    if (cc && !card_digits(cc, in->last4))
        field_errors_add(fe, "cc", "must be a card number of 12 to 19 digits");
    const char *expiry = validate_string(body, "expiryDate", true, 1, 7, fe);
    if (expiry && !expiry_valid(expiry))
        field_errors_add(fe, "expiryDate", "must be MM/YY or MM/YYYY and not in the past");
    const char *cvv = validate_string(body, "cvv", true, 3, 4, fe);
    if (cvv && strspn(cvv, "0123456789") != strlen(cvv))
        field_errors_add(fe, "cvv", "must be 3 or 4 digits");
}

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
    if (!id || !*id || strlen(id) > SAGA_FARE_ID_MAX || strspn(id, FARE_ID_CHARS) != strlen(id))
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
