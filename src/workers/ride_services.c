/* The four ride-completion services. Each consumes its queue (raw deliveries of topic
 * ride-completion: the ride's JSON) and writes what it did to its table, keyed by the ride, so
 * a redelivered message changes nothing twice (and the ack commits in the same transaction,
 * rydes/consumer.h). The customer-accounting queue is consumed by the fare saga. */
#include "rydes/services.h"

#include "rydes/jsontext.h"
#include "rydes/rides.h"
#include "rydes/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct db_stmt q_notify =
    DB_STMT("svc_notify",
            "INSERT INTO ride_notifications (ride_id, customer, message) VALUES ($1, $2, $3) "
            "ON CONFLICT (ride_id) DO NOTHING",
            3);
static struct db_stmt q_loyalty =
    DB_STMT("svc_loyalty",
            "WITH c AS (INSERT INTO loyalty_credits (ride_id, customer, points) "
            "VALUES ($1, $2, $3) ON CONFLICT (ride_id) DO NOTHING RETURNING customer, points) "
            "INSERT INTO loyalty_accounts AS a (customer, points, rides) "
            "SELECT customer, points, 1 FROM c ON CONFLICT (customer) DO UPDATE "
            "SET points = a.points + EXCLUDED.points, rides = a.rides + 1, updated_at = now()",
            3);
static struct db_stmt q_datalake = DB_STMT("svc_datalake",
                                           "INSERT INTO datalake_rides (ride_id, ride) "
                                           "VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING",
                                           2);
static struct db_stmt q_extraordinary =
    DB_STMT("svc_extraordinary",
            "INSERT INTO extraordinary_rides (ride_id, customer, fare, distance) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            4);

/* The fields of a ride event the services use. */
struct ride_event {
    json_t *json; /* owned */
    const char *id, *customer, *from, *to;
    double fare, distance;
};

static bool parse_ride(const struct mq_message *m, struct ride_event *e, char *why, size_t n)
{
    memset(e, 0, sizeof *e);
    e->json = json_loads(m->body, 0, NULL);
    e->id = json_string_value(json_object_get(e->json, "id"));
    e->customer = json_string_value(json_object_get(e->json, "customer"));
    e->from = json_string_value(json_object_get(e->json, "from"));
    e->to = json_string_value(json_object_get(e->json, "to"));
    json_t *fare = json_object_get(e->json, "fare"),
           *distance = json_object_get(e->json, "distance");
    if (!e->id || !e->customer || !e->from || !e->to || !json_is_number(fare) ||
        !json_is_number(distance)) {
        snprintf(why, n, "not a ride event (id, customer, from, to, fare, distance)");
        json_decref(e->json);
        return false;
    }
    e->fare = json_number_value(fare);
    e->distance = json_number_value(distance);
    /* the ranges POST /rides enforces: anyone may send into these queues, and the loyalty
     * points are a conversion of the fare to an integer */
    if (!(e->fare >= 0 && e->fare <= RIDES_FARE_MAX) ||
        !(e->distance >= 0 && e->distance <= RIDES_DISTANCE_MAX)) {
        snprintf(why, n, "not a ride event (fare or distance out of range)");
        json_decref(e->json);
        return false;
    }
    return true;
}

/* Runs st with v; CONSUMER_RETRY with the database's message when it fails. */
static enum consumer_result exec(struct db_conn *c, struct db_stmt *st, const char *const *v,
                                 char *why, size_t n)
{
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    bool ok = db_ok(c, r, PGRES_COMMAND_OK);
    if (!ok)
        snprintf(why, n, "%s", r ? PQresultErrorMessage(r) : "no connection");
    PQclear(r);
    return ok ? CONSUMER_DONE : CONSUMER_RETRY;
}

/* Writes a service's statement parameters for event e into v, formatting into scratch. */
typedef void ride_params(const struct ride_event *e, const struct mq_message *m,
                         char scratch[2][600], const char **v);

/* The shape of every ride service: read the event, run the service's statement with its
 * parameters (keyed by the ride, so a redelivery changes nothing). */
static enum consumer_result handle_ride(struct db_conn *c, const struct mq_message *m,
                                        struct db_stmt *st, ride_params *params, char *why,
                                        size_t n)
{
    struct ride_event e;
    if (!parse_ride(m, &e, why, n))
        return CONSUMER_RETRY;
    char scratch[2][600];
    const char *v[4] = {0};
    params(&e, m, scratch, v);
    enum consumer_result r = exec(c, st, v, why, n);
    json_decref(e.json);
    return r;
}

static void notify_params(const struct ride_event *e, const struct mq_message *m,
                          char scratch[2][600], const char **v)
{
    (void)m;
    snprintf(scratch[0], sizeof scratch[0],
             "Thank you for riding with Wild Rydes from %.*s to %.*s. Your fare: %.2f.",
             (int)validate_utf8_prefix(e->from, 200), e->from,
             (int)validate_utf8_prefix(e->to, 200), e->to, e->fare);
    v[0] = e->id;
    v[1] = e->customer;
    v[2] = scratch[0];
}

static void loyalty_params(const struct ride_event *e, const struct mq_message *m,
                           char scratch[2][600], const char **v)
{
    (void)m;
    snprintf(scratch[0], sizeof scratch[0], "%lld",
             (long long)e->fare + 1); /* a point a unit, +1 */
    v[0] = e->id;
    v[1] = e->customer;
    v[2] = scratch[0];
}

static void datalake_params(const struct ride_event *e, const struct mq_message *m,
                            char scratch[2][600], const char **v)
{
    (void)scratch;
    v[0] = e->id;
    v[1] = m->body;
}

static void extraordinary_params(const struct ride_event *e, const struct mq_message *m,
                                 char scratch[2][600], const char **v)
{
    (void)m;
    snprintf(scratch[0], sizeof scratch[0], "%.2f", e->fare);
    jsontext_format_double(e->distance, scratch[1], sizeof scratch[1]);
    v[0] = e->id;
    v[1] = e->customer;
    v[2] = scratch[0];
    v[3] = scratch[1];
}

static enum consumer_result notify(const struct consumer_env *env, struct db_conn *c,
                                   const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    return handle_ride(c, m, &q_notify, notify_params, why, n);
}

static enum consumer_result loyalty(const struct consumer_env *env, struct db_conn *c,
                                    const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    return handle_ride(c, m, &q_loyalty, loyalty_params, why, n);
}

static enum consumer_result datalake(const struct consumer_env *env, struct db_conn *c,
                                     const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    return handle_ride(c, m, &q_datalake, datalake_params, why, n);
}

static enum consumer_result extraordinary(const struct consumer_env *env, struct db_conn *c,
                                          const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    return handle_ride(c, m, &q_extraordinary, extraordinary_params, why, n);
}

const struct consumer_def service_customer_notification = {.name = "customer-notification",
                                                           .queue = "customer-notification",
                                                           .batch = 10,
                                                           .visibility = 30,
                                                           .handle = notify};
const struct consumer_def service_customer_loyalty = {.name = "customer-loyalty",
                                                      .queue = "customer-loyalty",
                                                      .batch = 10,
                                                      .visibility = 30,
                                                      .handle = loyalty};
const struct consumer_def service_datalake_ingestion = {.name = "datalake-ingestion",
                                                        .queue = "datalake-ingestion",
                                                        .batch = 10,
                                                        .visibility = 30,
                                                        .handle = datalake};
const struct consumer_def service_extraordinary_rides = {.name = "extraordinary-rides",
                                                         .queue = "extraordinary-rides",
                                                         .batch = 10,
                                                         .visibility = 30,
                                                         .handle = extraordinary};
