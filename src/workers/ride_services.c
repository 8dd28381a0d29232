/* The four ride-completion services. Each consumes its queue (raw deliveries of topic
 * ride-completion: the ride's JSON, of which only the id is believed) and writes what it did
 * for the stored ride to its table, keyed by the ride, so a redelivered message changes nothing
 * twice (and the ack commits in the same transaction,
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

/* The stored ride an event names. Only the event's id is read: anyone allowed to send into
 * these queues could write the rest (a fare for loyalty points, another customer), so every
 * service takes the ride as POST /rides stored it. An event that names no stored ride is
 * retried to its dead-letter queue. Fills r (ride_clear) on CONSUMER_DONE. */
static enum consumer_result stored_ride(struct db_conn *c, const struct mq_message *m,
                                        struct ride *r, char *why, size_t n)
{
    json_t *event = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(event, "id"));
    enum mq_status st = id ? rides_get(c, id, r) : MQ_NOT_FOUND;
    json_decref(event);
    if (st == MQ_OK)
        return CONSUMER_DONE;
    if (st == MQ_NOT_FOUND)
        snprintf(why, n, "not a ride event: no stored ride has its id");
    else
        snprintf(why, n, "could not read the ride: the database failed");
    return CONSUMER_RETRY;
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

/* Writes a service's statement parameters for ride r into v, formatting into scratch (or
 * into r->json, which ride_clear frees). */
typedef void ride_params(struct ride *r, char scratch[2][600], const char **v);

/* The shape of every ride service: read the stored ride the event names, run the service's
 * statement with its parameters (keyed by the ride, so a redelivery changes nothing). */
static enum consumer_result handle_ride(struct db_conn *c, const struct mq_message *m,
                                        struct db_stmt *st, ride_params *params, char *why,
                                        size_t n)
{
    struct ride r;
    enum consumer_result res = stored_ride(c, m, &r, why, n);
    if (res != CONSUMER_DONE)
        return res;
    char scratch[2][600];
    const char *v[4] = {0};
    params(&r, scratch, v);
    res = exec(c, st, v, why, n);
    ride_clear(&r);
    return res;
}

static void notify_params(struct ride *e, char scratch[2][600], const char **v)
{
    snprintf(scratch[0], sizeof scratch[0],
             "Thank you for riding with Wild Rydes from %.*s to %.*s. Your fare: %.2f.",
             (int)validate_utf8_prefix(e->from, 200), e->from,
             (int)validate_utf8_prefix(e->to, 200), e->to, e->fare);
    v[0] = e->id;
    v[1] = e->customer;
    v[2] = scratch[0];
}

static void loyalty_params(struct ride *e, char scratch[2][600], const char **v)
{
    snprintf(scratch[0], sizeof scratch[0], "%lld",
             (long long)e->fare + 1); /* a point a unit, +1 */
    v[0] = e->id;
    v[1] = e->customer;
    v[2] = scratch[0];
}

/* The ride's representation as GET /rides/{id} gives it (and its event carried). */
static void datalake_params(struct ride *e, char scratch[2][600], const char **v)
{
    (void)scratch;
    e->json = ride_text(e); /* ride_clear frees it */
    v[0] = e->id;
    v[1] = e->json;
}

/* The ride as stored; whether it is extraordinary is the subscription filter's call (a
 * service token that sends a real ride's id here flags that ride, nothing more). */
static void extraordinary_params(struct ride *e, char scratch[2][600], const char **v)
{
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
