/* Storing, publishing and reading rides; see include/rydes/rides.h. */
#include "rydes/rides.h"

#include "rydes/buf.h"
#include "rydes/idempotency.h"
#include "rydes/jsoncopy.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/trace.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RIDE_COLUMNS                                                                      \
    "id, from_location, to_location, customer, unicorn, duration::text, distance::text, " \
    "fare::text, submitted_at"

static struct db_stmt q_insert =
    DB_STMT("rides_insert",
            "INSERT INTO rides (id, from_location, to_location, customer, unicorn, duration, "
            "distance, fare, correlation_id, submitted_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            10);
#define RIDE_VALUES                                                                       \
    "SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::numeric, $7::numeric, " \
    "$8::numeric, $9::text, $10::timestamptz"
/* A ride and its publish behind an idempotency key ($16, request hash $17), parameters as
 * submit_rows' for one ride: no row when the key was taken. */
static struct db_stmt q_submit_key = DB_STMT(
    "rides_submit_key",
    "WITH k AS (INSERT INTO idempotency_keys (scope, key, request_hash, resource_id) "
    "VALUES ('" RIDES_KEY_SCOPE "', $16, $17, $1::uuid) ON CONFLICT DO NOTHING RETURNING 1), "
    "r AS (INSERT INTO rides (id, from_location, to_location, customer, unicorn, duration, "
    "distance, fare, correlation_id, submitted_at) " RIDE_VALUES
    " WHERE EXISTS (SELECT 1 FROM k) RETURNING id) "
    "SELECT " MQ_PUBLISH_JSON_SQL("11", "12", "13", "14", "15") " FROM r",
    17);
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
/* The same newest first (?order=newest, the dashboard's recent rides): the cursor bounds from
 * above. */
static struct db_stmt q_list_all_newest =
    DB_STMT("rides_list_all_newest",
            "SELECT " RIDE_COLUMNS ", seq FROM rides WHERE seq < $1 ORDER BY seq DESC LIMIT $2", 2);
static struct db_stmt q_list_customer_newest = DB_STMT("rides_list_customer_newest",
                                                       "SELECT " RIDE_COLUMNS ", seq FROM rides "
                                                       "WHERE customer = $3 AND seq < $1 "
                                                       "ORDER BY seq DESC LIMIT $2",
                                                       3);

void ride_clear(struct ride *r)
{
    free(r->from);
    free(r->to);
    free(r->customer);
    free(r->unicorn);
    free(r->json);
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
/* Is v shown as an integer (below 2^53, where every double is exact)? */
static bool integral(double v)
{
    return v == (double)(long long)v && v < 9007199254740992.0;
}

static json_t *number_json(double v)
{
    return integral(v) ? json_integer((json_int_t)v) : json_real(v);
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

/* A number of the representation as number_json makes it and jansson writes it. */
static void number_text(struct buf *b, double v)
{
    if (integral(v)) {
        buf_printf(b, "%lld", (long long)v);
        return;
    }
    char text[32];
    jsontext_shortest_real(v, text, sizeof text);
    buf_puts(b, text);
}

/* A string member ,"name":"value" (escaped); name needs no escaping. */
static void string_member(struct buf *b, const char *name, const char *value)
{
    buf_puts(b, ",\"");
    buf_puts(b, name);
    buf_puts(b, "\":");
    jsoncopy_string(b, value, strlen(value));
}

char *ride_text(const struct ride *r)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"id\":\"");
    buf_puts(&b, r->id);
    buf_puts(&b, "\"");
    string_member(&b, "from", r->from);
    string_member(&b, "to", r->to);
    buf_puts(&b, ",\"duration\":");
    number_text(&b, r->duration);
    buf_puts(&b, ",\"distance\":");
    number_text(&b, r->distance);
    string_member(&b, "customer", r->customer);
    buf_puts(&b, ",\"fare\":");
    number_text(&b, r->fare);
    if (r->unicorn)
        string_member(&b, "unicorn", r->unicorn);
    else
        buf_puts(&b, ",\"unicorn\":null");
    const char *tail[] = {",\"submitted_at\":\"",
                          r->submitted_at,
                          "\",\"links\":{\"self\":\"/rides/",
                          r->id,
                          "\",\"fare\":\"/rides/",
                          r->id,
                          "/fare\"}}"};
    for (size_t i = 0; i < sizeof tail / sizeof *tail; i++)
        buf_puts(&b, tail[i]);
    return buf_steal(&b);
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
    trace_add_attributes(a);
    return a;
}

/* A submission on its way in: the ride as it will be stored, its columns as SQL text, and
 * the event to publish. */
struct rides_submission {
    char id[IDS_UUID_LEN];
    char numbers[3][32]; /* duration, distance, fare */
    struct ride ride;    /* the values as stored (numbers read back from their text) */
    char *body;          /* the event: the ride's JSON */
    json_t *attributes;
    struct mq_publish_plan plan; /* combined rides: where the event goes */
    const char *correlation_id;  /* combined rides: borrowed */
};

static void submission_init(struct rides_submission *s, const struct ride_input *in,
                            const char *correlation_id)
{
    memset(s, 0, sizeof *s);
    ids_uuid_v7(s->id); /* the primary key: time-ordered */
    jsontext_format_double(in->duration, s->numbers[0], 32);
    jsontext_format_double(in->distance, s->numbers[1], 32);
    snprintf(s->numbers[2], 32, "%.2f", in->fare);
    struct ride *r = &s->ride;
    memcpy(r->id, s->id, sizeof r->id);
    r->from = xstrdup(in->from);
    r->to = xstrdup(in->to);
    r->customer = xstrdup(in->customer);
    r->unicorn = in->unicorn ? xstrdup(in->unicorn) : NULL;
    r->duration = strtod(s->numbers[0], NULL);
    r->distance = strtod(s->numbers[1], NULL);
    r->fare = strtod(s->numbers[2], NULL);
    clock_format_rfc3339(clock_wall_us(), r->submitted_at);
    s->body = ride_text(r);
    s->attributes = ride_attributes(r, s->numbers[2], s->numbers[1], correlation_id);
}

static void submission_clear(struct rides_submission *s)
{
    ride_clear(&s->ride);
    free(s->body);
    json_decref(s->attributes);
}

/* Moves the stored ride out of s, with its JSON text (the event's body is the representation). */
static void ride_take(struct rides_submission *s, struct ride *out)
{
    *out = s->ride;
    out->json = s->body;
    memset(&s->ride, 0, sizeof s->ride);
    s->body = NULL;
}

/* The first ten parameters of the insert statements. */
static void ride_params(const struct rides_submission *s, const char *correlation_id,
                        const char **v)
{
    const struct ride *r = &s->ride;
    const char *cols[] = {s->id,          r->from,        r->to,         r->customer,
                          r->unicorn,     s->numbers[0],  s->numbers[1], s->numbers[2],
                          correlation_id, r->submitted_at};
    memcpy(v, cols, sizeof cols);
}

/* What key was used for: its ride when a request like this one made it (replay), a conflict
 * when another request used it, else unused (for a claim that found the key taken, a key swept
 * since: as good as reused). */
static enum rides_outcome find_key(struct db_conn *c, const char *key, const char *hash,
                                   enum rides_outcome unused, struct ride *out, enum mq_status *st)
{
    char id[IDS_UUID_LEN];
    enum idempotency_match m;
    *st = idempotency_find(c, RIDES_KEY_SCOPE, key, hash, id, &m);
    if (*st != MQ_OK)
        return RIDES_FAILED;
    if (m != IDEMPOTENCY_SAME)
        return m == IDEMPOTENCY_OTHER ? RIDES_KEY_REUSED : unused;
    *st = rides_get(c, id, out);
    return *st == MQ_OK ? RIDES_REPLAYED : RIDES_FAILED;
}

/* For n rides: every ride row in one INSERT ($1..$10 as q_insert), and every ride's event in one
 * INSERT into the publish outbox ($11..$15: MQ_PUBLISH_JSON_SQL's parameters, the last unused
 * as there), 15 parameters a ride, in one statement and so one transaction, no explicit one.
 * Row 0: the rides stored, then each ride's deliveries to come. One ride without a key is this
 * statement for n = 1. What mq_publish_later does for one event, inline: a call per ride cost a
 * plpgsql call and an executor start of its own INSERT. */
static struct db_stmt q_submit_rows[MQ_MAX_ROWS];
static char q_submit_rows_name[MQ_MAX_ROWS][24];
static pthread_once_t q_submit_rows_once = PTHREAD_ONCE_INIT;

static void submit_rows_prepare(void)
{
    for (int n = 1; n <= MQ_MAX_ROWS; n++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "WITH r AS (INSERT INTO rides (id, from_location, to_location, customer, "
                     "unicorn, duration, distance, fare, correlation_id, submitted_at) VALUES ");
        for (int i = 0, p = 1; i < n; i++, p += 15)
            buf_printf(&b,
                       "%s($%d::uuid, $%d::text, $%d::text, $%d::text, $%d::text, $%d::numeric, "
                       "$%d::numeric, $%d::numeric, $%d::text, $%d::timestamptz)",
                       i ? ", " : "", p, p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8,
                       p + 9);
        buf_puts(&b, " RETURNING 1), e (message_id, body, attributes, queues, unused, i) AS "
                     "(VALUES ");
        for (int i = 0, p = 11; i < n; i++, p += 15)
            buf_printf(&b, "%s($%d::uuid, $%d::text, $%d::jsonb, $%d::int[], $%d::int[], %d)",
                       i ? ", " : "", p, p + 1, p + 2, p + 3, p + 4, i);
        buf_puts(&b, "), o AS (INSERT INTO publish_outbox (message_id, body, body_json, "
                     "attributes, queues) SELECT message_id, body, true, attributes, queues "
                     "FROM e WHERE coalesce(cardinality(queues), 0) > 0 ORDER BY i) "
                     "SELECT (SELECT count(*) FROM r)");
        for (int i = 0, p = 14; i < n; i++, p += 15)
            buf_printf(&b, ", coalesce(cardinality($%d::int[]), 0)", p);
        snprintf(q_submit_rows_name[n - 1], sizeof q_submit_rows_name[0], "rides_submit_rows_%d",
                 n);
        q_submit_rows[n - 1].name = q_submit_rows_name[n - 1];
        q_submit_rows[n - 1].sql = buf_steal(&b); /* lives as long as the process */
        q_submit_rows[n - 1].nparams = 15 * n;
    }
}

/* The statement for n rides (1..MQ_MAX_ROWS). */
static struct db_stmt *submit_rows(int n)
{
    pthread_once(&q_submit_rows_once, submit_rows_prepare);
    return &q_submit_rows[n - 1];
}

/* The common case in one statement: the ride and its publish (plan is lean). */
static enum rides_outcome submit_one_statement(struct db_conn *c, struct rides_submission *s,
                                               const struct mq_publish_plan *plan, const char *key,
                                               const char *hash, const char *correlation_id,
                                               struct ride *out,
                                               struct mq_publish_result *published,
                                               enum mq_status *st)
{
    const char *v[17];
    ride_params(s, correlation_id, v);
    mq_publish_plan_params(plan, &v[10]);
    v[15] = key;
    v[16] = hash;
    PGresult *r = db_exec(c, key ? &q_submit_key : submit_rows(1), v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        *st = mq_failed(c, r);
        return RIDES_FAILED;
    }
    bool stored = PQntuples(r) == 1;
    if (stored) {
        mq_publish_plan_result(plan, r, key ? 0 : 1, published);
        ride_take(s, out);
    }
    PQclear(r);
    return stored ? RIDES_CREATED : find_key(c, key, hash, RIDES_KEY_REUSED, out, st);
}

/* A ride on its way in a transaction (submit_in_transaction). */
struct ride_tx {
    const struct topic_set *set;
    struct rides_submission *s;
    const char *correlation_id;
    bool (*listened)(void *ctx, int queue_id);
    void *ctx;
    struct mq_publish_result *published;
};

/* The ride's insert and its mq_publish, inside the caller's transaction. */
static enum mq_status insert_and_publish(struct db_conn *c, void *arg)
{
    struct ride_tx *t = arg;
    const char *v[10];
    ride_params(t->s, t->correlation_id, v);
    PGresult *r = db_exec(c, &q_insert, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    PQclear(r);
    struct mq_publish p = {.body = t->s->body,
                           .body_len = strlen(t->s->body),
                           .body_json = true,
                           .attributes = t->s->attributes};
    return mq_publish(c, &t->set->topic, t->set->subs, t->set->n, &p, t->listened, t->ctx,
                      t->published);
}

/* Any other topology (URL, enveloped or FIFO subscriptions added by an operator): a
 * transaction around the key's claim, the insert and mq_publish. */
static enum rides_outcome
submit_in_transaction(struct db_conn *c, const struct topic_set *set, struct rides_submission *s,
                      const char *key, const char *hash, const char *correlation_id,
                      bool (*listened)(void *ctx, int queue_id), void *ctx, struct ride *out,
                      struct mq_publish_result *published, enum mq_status *st)
{
    struct ride_tx t = {set, s, correlation_id, listened, ctx, published};
    struct idempotency k = {RIDES_KEY_SCOPE, key, hash, s->id};
    bool claimed;
    *st = idempotency_run(c, &k, insert_and_publish, &t, &claimed);
    if (*st != MQ_OK)
        return RIDES_FAILED;
    if (!claimed)
        return find_key(c, key, hash, RIDES_KEY_REUSED, out, st);
    ride_take(s, out);
    return RIDES_CREATED;
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
    if (!set) /* a keyed retry of a ride stored before the topic went replays all the same */
        return key ? find_key(c, key, request_hash, RIDES_NO_TOPIC, out, st) : RIDES_NO_TOPIC;
    struct rides_submission s;
    submission_init(&s, in, correlation_id);
    struct mq_publish p = {
        .body = s.body, .body_len = strlen(s.body), .body_json = true, .attributes = s.attributes};
    struct mq_publish_plan plan;
    mq_publish_plan(&set->topic, set->subs, set->n, &p, listened, ctx, &plan);
    enum rides_outcome o =
        plan.lean ? submit_one_statement(c, &s, &plan, key, request_hash, correlation_id, out,
                                         published, st)
                  : submit_in_transaction(c, set, &s, key, request_hash, correlation_id, listened,
                                          ctx, out, published, st);
    mq_publish_plan_clear(&plan);
    submission_clear(&s);
    return o;
}

/* ---- combined: the rides of concurrent requests in one statement ---- */

static enum mq_status run_rides(struct db_conn *c, struct mq_combined **list, int n,
                                unsigned long long *operations)
{
    const char *v[15 * MQ_MAX_ROWS];
    for (int i = 0; i < n; i++) {
        struct rides_combined *rc = (struct rides_combined *)list[i];
        ride_params(rc->s, rc->s->correlation_id, &v[15 * i]);
        mq_publish_plan_params(&rc->s->plan, &v[15 * i + 10]);
    }
    PGresult *r = db_exec(c, submit_rows(n), v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    for (int i = 0; i < n; i++) {
        struct rides_combined *rc = (struct rides_combined *)list[i];
        mq_publish_plan_result(&rc->s->plan, r, 1 + i, &rc->published);
        ride_take(rc->s, &rc->out);
        list[i]->status = MQ_OK;
    }
    PQclear(r);
    *operations = (unsigned long long)n;
    return MQ_OK;
}

static int ride_weight(const struct mq_combined *o)
{
    (void)o;
    return 1;
}

static uint64_t ride_key(const struct mq_combined *o)
{
    (void)o;
    return 0; /* any rides may share a statement */
}

const struct mq_combiner_kind rides_combiner_kind = {ride_weight, ride_key, run_rides, 0};

bool rides_combined_init(struct rides_combined *rc, const struct topic_set *set,
                         const struct ride_input *in, const char *correlation_id,
                         bool (*listened)(void *ctx, int queue_id), void *ctx)
{
    memset(rc, 0, sizeof *rc);
    if (!mq_publish_always_lean(&set->topic, set->subs, set->n))
        return false; /* nothing planned: rides_create plans it again */
    struct rides_submission *s = xcalloc(1, sizeof *s);
    submission_init(s, in, correlation_id);
    struct mq_publish p = {.body = s->body,
                           .body_len = strlen(s->body),
                           .body_json = true,
                           .attributes = s->attributes};
    mq_publish_plan(&set->topic, set->subs, set->n, &p, listened, ctx, &s->plan);
    s->correlation_id = correlation_id;
    rc->s = s;
    return true;
}

void rides_combined_store(struct db_conn *c, struct rides_combined *rc)
{
    struct mq_combined *list[] = {&rc->o};
    unsigned long long stored;
    enum mq_status st = run_rides(c, list, 1, &stored);
    if (st != MQ_OK)
        rc->o.status = st;
}

void rides_combined_clear(struct rides_combined *rc)
{
    if (rc->s) {
        mq_publish_plan_clear(&rc->s->plan);
        submission_clear(rc->s);
        free(rc->s);
    }
    ride_clear(&rc->out);
    memset(rc, 0, sizeof *rc);
}

enum mq_status rides_get(struct db_conn *c, const char *id, struct ride *out)
{
    if (!ids_is_uuid(id))
        return MQ_NOT_FOUND;
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found)
        read_ride(r, 0, out);
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

/* The list statement for a customer (or all) in an order. */
static struct db_stmt *list_stmt(bool customer, bool newest)
{
    if (newest)
        return customer ? &q_list_customer_newest : &q_list_all_newest;
    return customer ? &q_list_customer : &q_list_all;
}

enum mq_status rides_list(struct db_conn *c, const char *customer, bool newest, const char *after,
                          int limit, struct ride **rides, int *count, char *next, size_t next_len)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *start = newest ? "9223372036854775807" : "0";
    const char *v[] = {after[0] ? after : start, lim, customer};
    PGresult *r = db_exec(c, list_stmt(customer != NULL, newest), v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
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
