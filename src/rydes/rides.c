/* Storing, publishing and reading rides; see include/rydes/rides.h. */
#include "rydes/rides.h"

#include "rydes/jsontext.h"
#include "rydes/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RIDE_COLUMNS                                                                      \
    "id, from_location, to_location, customer, unicorn, duration::text, distance::text, " \
    "fare::text, submitted_at"

static struct db_stmt q_key_claim =
    DB_STMT("rides_key_claim",
            "INSERT INTO idempotency_keys (scope, key, request_hash, resource_id) "
            "VALUES ('rides', $1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
            3);
static struct db_stmt q_key_get = DB_STMT(
    "rides_key_get",
    "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = 'rides' AND key = $1", 1);
static struct db_stmt q_insert =
    DB_STMT("rides_insert",
            "INSERT INTO rides (id, from_location, to_location, customer, unicorn, duration, "
            "distance, fare, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "RETURNING " RIDE_COLUMNS,
            9);
static struct db_stmt q_get =
    DB_STMT("rides_get", "SELECT " RIDE_COLUMNS " FROM rides WHERE id = $1", 1);
static struct db_stmt q_list_all =
    DB_STMT("rides_list_all",
            "SELECT " RIDE_COLUMNS ", seq FROM rides WHERE seq > $1 ORDER BY seq LIMIT $2", 2);
static struct db_stmt q_list_customer = DB_STMT("rides_list_customer",
                                                "SELECT " RIDE_COLUMNS ", seq FROM rides "
                                                "WHERE customer = $3 AND seq > $1 "
                                                "ORDER BY seq LIMIT $2",
                                                3);

void ride_clear(struct ride *r)
{
    free(r->from);
    free(r->to);
    free(r->customer);
    free(r->unicorn);
    memset(r, 0, sizeof *r);
}

static void read_ride(PGresult *res, int row, struct ride *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", PQgetvalue(res, row, 0));
    r->from = xstrdup(PQgetvalue(res, row, 1));
    r->to = xstrdup(PQgetvalue(res, row, 2));
    r->customer = xstrdup(PQgetvalue(res, row, 3));
    r->unicorn = PQgetisnull(res, row, 4) ? NULL : xstrdup(PQgetvalue(res, row, 4));
    r->duration = strtod(PQgetvalue(res, row, 5), NULL);
    r->distance = strtod(PQgetvalue(res, row, 6), NULL);
    r->fare = strtod(PQgetvalue(res, row, 7), NULL);
    db_read_ts(res, row, 8, r->submitted_at);
}

/* A JSON number: an integer when the value is whole, so 600 does not read 600.0. */
static json_t *number_json(double v)
{
    if (v == (double)(long long)v && v < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(v);
}

json_t *ride_json(const struct ride *r)
{
    char self[64], fare[80];
    snprintf(self, sizeof self, "/rides/%s", r->id);
    snprintf(fare, sizeof fare, "%s/fare", self);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:s?, s:s, s:{s:s, s:s}}", "id", r->id,
                     "from", r->from, "to", r->to, "duration", number_json(r->duration), "distance",
                     number_json(r->distance), "customer", r->customer, "fare",
                     number_json(r->fare), "unicorn", r->unicorn, "submitted_at", r->submitted_at,
                     "links", "self", self, "fare", fare);
}

/* The message attributes of a ride event. */
static json_t *ride_attributes(const struct ride *r, const char *fare, const char *distance,
                               const char *correlation_id)
{
    json_t *a = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}}", "fare",
                          "type", "Number", "value", fare, "distance", "type", "Number", "value",
                          distance, "customer", "type", "String", "value", r->customer,
                          "correlation_id", "type", "String", "value", correlation_id);
    if (r->unicorn)
        json_object_set_new(a, "unicorn",
                            json_pack("{s:s, s:s}", "type", "String", "value", r->unicorn));
    return a;
}

/* Publishes ride r (stored in this transaction) to the topic of set. */
static enum mq_status publish_ride(struct db_conn *c, const struct topic_set *set,
                                   const struct ride *r, const char *const *numbers,
                                   const char *correlation_id,
                                   bool (*listened)(void *ctx, int queue_id), void *ctx,
                                   struct mq_publish_result *out)
{
    json_t *body = ride_json(r);
    char *text = jsontext_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *attrs = ride_attributes(r, numbers[2], numbers[1], correlation_id);
    struct mq_publish p = {
        .body = text, .body_len = strlen(text), .body_json = true, .attributes = attrs};
    enum mq_status st = mq_publish(c, &set->topic, set->subs, set->n, &p, listened, ctx, out);
    json_decref(attrs);
    free(text);
    return st;
}

static enum mq_status failed(struct db_conn *c, PGresult *r)
{
    enum mq_status st = db_conn_lost(c) || db_transient(r) ? MQ_UNAVAILABLE : MQ_ERROR;
    PQclear(r);
    return st;
}

/* Claims key for ride id; *claimed false when it was taken (then *same: by this very body,
 * and replay_id the ride it made). */
static enum mq_status claim_key(struct db_conn *c, const char *key, const char *hash,
                                const char *id, bool *claimed, bool *same, char *replay_id)
{
    const char *v[] = {key, hash, id};
    PGresult *r = db_exec(c, &q_key_claim, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    *claimed = PQntuples(r) == 1;
    PQclear(r);
    if (*claimed)
        return MQ_OK;
    r = db_exec(c, &q_key_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    *same = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), hash) == 0;
    if (*same)
        snprintf(replay_id, IDS_UUID_LEN, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return MQ_OK;
}

/* Inserts the ride of in as id; out is filled from what the database stored. */
static enum mq_status insert_ride(struct db_conn *c, const struct ride_input *in, const char *id,
                                  const char *correlation_id, char numbers[3][32], struct ride *out)
{
    jsontext_format_double(in->duration, numbers[0], 32);
    jsontext_format_double(in->distance, numbers[1], 32);
    snprintf(numbers[2], 32, "%.2f", in->fare);
    const char *v[] = {id,         in->from,   in->to,     in->customer,  in->unicorn,
                       numbers[0], numbers[1], numbers[2], correlation_id};
    PGresult *r = db_exec(c, &q_insert, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    read_ride(r, 0, out);
    PQclear(r);
    return MQ_OK;
}

/* The transaction of rides_create, after BEGIN. */
static enum rides_outcome create_in_tx(struct db_conn *c, const struct topic_set *set,
                                       const struct ride_input *in, const char *key,
                                       const char *hash, const char *correlation_id,
                                       bool (*listened)(void *ctx, int queue_id), void *ctx,
                                       struct ride *out, struct mq_publish_result *published,
                                       enum mq_status *st)
{
    char id[IDS_UUID_LEN], replay[IDS_UUID_LEN], numbers[3][32];
    ids_uuid(id);
    bool claimed = true, same = false;
    if (key && (*st = claim_key(c, key, hash, id, &claimed, &same, replay)) != MQ_OK)
        return RIDES_FAILED;
    if (!claimed && !same)
        return RIDES_KEY_REUSED;
    if (!claimed) {
        *st = rides_get(c, replay, out);
        return *st == MQ_OK ? RIDES_REPLAYED : RIDES_FAILED;
    }
    if (!set)
        return RIDES_NO_TOPIC;
    if ((*st = insert_ride(c, in, id, correlation_id, numbers, out)) != MQ_OK)
        return RIDES_FAILED;
    const char *nums[] = {numbers[0], numbers[1], numbers[2]};
    *st = publish_ride(c, set, out, nums, correlation_id, listened, ctx, published);
    if (*st != MQ_OK)
        ride_clear(out);
    return *st == MQ_OK ? RIDES_CREATED : RIDES_FAILED;
}

enum rides_outcome rides_create(struct db_conn *c, const struct topic_set *set,
                                const struct ride_input *in, const char *key,
                                const char *request_hash, const char *correlation_id,
                                bool (*listened)(void *ctx, int queue_id), void *ctx,
                                struct ride *out, struct mq_publish_result *published,
                                enum mq_status *st)
{
    memset(out, 0, sizeof *out);
    memset(published, 0, sizeof *published);
    *st = MQ_OK;
    if (!db_begin(c)) {
        *st = MQ_UNAVAILABLE;
        return RIDES_FAILED;
    }
    enum rides_outcome o = create_in_tx(c, set, in, key, request_hash, correlation_id, listened,
                                        ctx, out, published, st);
    if (o == RIDES_CREATED && !db_commit(c)) {
        ride_clear(out);
        *st = MQ_UNAVAILABLE;
        o = RIDES_FAILED;
    }
    if (o != RIDES_CREATED)
        db_rollback(c);
    return o;
}

enum mq_status rides_get(struct db_conn *c, const char *id, struct ride *out)
{
    if (!ids_is_uuid(id))
        return MQ_NOT_FOUND;
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found)
        read_ride(r, 0, out);
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status rides_list(struct db_conn *c, const char *customer, const char *after, int limit,
                          struct ride **rides, int *count, char *next, size_t next_len)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *v[] = {after[0] ? after : "0", lim, customer};
    PGresult *r = db_exec(c, customer ? &q_list_customer : &q_list_all, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    int n = PQntuples(r);
    *count = n > limit ? limit : n;
    *rides = xcalloc((size_t)*count + 1, sizeof **rides);
    for (int i = 0; i < *count; i++)
        read_ride(r, i, &(*rides)[i]);
    next[0] = '\0';
    if (n > limit)
        snprintf(next, next_len, "%s", PQgetvalue(r, limit - 1, 9));
    PQclear(r);
    return MQ_OK;
}
