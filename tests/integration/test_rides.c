/* Integration: Wild Rydes ride completion end to end. POST /rides and its alias POST
 * /submit-ride-completion: 201 with Location, Content-Location and the ride (numbers as numbers,
 * unicorn null when absent, links), numeric strings, hyphenated aliases and the limits
 * themselves accepted; the ride stored and published together: one raw delivery in each of the
 * four unfiltered queues with the fare, distance, customer, unicorn and correlation_id
 * (= X-Request-Id) attributes. A table of invalid submissions answered 400/415 naming the field,
 * with nothing stored or published. Idempotency-Key: a replay of the same body (in any member
 * order, through either route) answers the first ride and publishes nothing, another body is
 * 422, invalid keys are 400 and not used up, concurrent requests with one key make one ride.
 * GET /rides/{id} (200, 404 for unknown and malformed ids), GET /rides?customer= paginated
 * oldest first with its 400s, the role matrix. Then the services behind the topic: the
 * extraordinary-rides filter at its boundary (with every other service reached), the thresholds
 * as settings (the stored filter policy follows them; restarts keep an operator's subscription
 * and queue attributes and never duplicate the topology), a deleted topic answering 503 with
 * nothing stored until a restart re-creates it, effects committed exactly once per ride when
 * the first delivery of half the rides fails (loyalty points add up, queues and dead-letter
 * queues end empty), two gateways sharing the work without a message handled twice, a poison
 * message dead-lettered after five receives with nothing written, and `rydes worker NAME` as a
 * separate process that exits 0 on SIGTERM. */
#include "harness.h"

#include "rydes/consumer.h"
#include "rydes/ids.h"
#include "rydes/secret.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The queues topic ride-completion delivers every ride to (extraordinary-rides is filtered). */
static const char *const unfiltered[] = {"customer-notification", "customer-loyalty",
                                         "datalake-ingestion", "customer-accounting"};
/* The queues the built-in ride services consume (customer-accounting belongs to the saga). */
static const char *const serviced[] = {"customer-notification", "customer-loyalty",
                                       "datalake-ingestion", "extraordinary-rides"};
#define NQUEUES 4

static struct harness_server srv; /* the api tests' server: no ride service runs */

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* ---- settings of the servers the service tests start ---------------------------------------- */

static void set(struct config *cfg, const char *name, const char *value)
{
    struct config_error err;
    ck_assert_msg(config_set_flag(cfg, name, value, &err), "setting %s=%s", name, value);
}

static void all_workers(struct config *cfg)
{
    set(cfg, "workers", "all");
}

static void no_workers(struct config *cfg)
{
    set(cfg, "workers", "none");
}

static void loyalty_worker(struct config *cfg)
{
    set(cfg, "workers", "customer-loyalty");
}

static void all_workers_fare_100(struct config *cfg)
{
    all_workers(cfg);
    set(cfg, "extraordinary-fare", "100");
}

/* ---- SQL and time ---------------------------------------------------------------------------- */

/* Messages of queue (any state) whose customer attribute is customer (NULL: all). */
static long long in_queue(const char *queue, const char *customer)
{
    if (!customer)
        return harness_stored(queue);
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s' AND m.attributes->'customer'->>'value' = '%s'",
                        queue, customer);
}

/* Messages left in the serviced queues and in every dead-letter queue of the topology. */
static long long left_in_service_queues(void)
{
    return harness_sqlf(
        "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
        "WHERE q.name IN ('customer-notification', 'customer-loyalty', "
        "'datalake-ingestion', 'extraordinary-rides') OR q.name IN ("
        "'customer-notification-dlq', 'customer-loyalty-dlq', 'datalake-ingestion-dlq', "
        "'customer-accounting-dlq', 'extraordinary-rides-dlq')");
}

/* Waits (up to 10 s) until the serviced queues are empty: every delivery handled. */
static void wait_services_settled(void)
{
    ck_assert_int_eq(
        harness_wait_sql("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                         "WHERE q.name IN ('customer-notification', 'customer-loyalty', "
                         "'datalake-ingestion', 'extraordinary-rides')",
                         0, 10),
        0);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* The value of the metric sample whose line starts with sample (name and labels) on s; -1 when
 * there is no such line. */
static long long metric(struct harness_server *s, const char *sample)
{
    struct response r;
    harness_request(s, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = -1;
    size_t n = strlen(sample);
    for (const char *line = buf_str(&r.body); line && *line;) {
        if (strncmp(line, sample, n) == 0 && line[n] == ' ') {
            v = atoll(line + n + 1);
            break;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    response_cleanup(&r);
    return v;
}

static long long worker_metric(struct harness_server *s, const char *worker, const char *outcome)
{
    char sample[200];
    snprintf(sample, sizeof sample, "rydes_worker_messages_total{worker=\"%s\",outcome=\"%s\"}",
             worker, outcome);
    return metric(s, sample);
}

/* POST /tokens as admin; secret receives the new token of role. */
static void create_token(struct harness_server *s, const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"rides-%s\"}", role, role);
    struct response r;
    harness_admin(s, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_str(r.json, "token"));
    response_cleanup(&r);
}

/* A ride body for customer; fare and distance are JSON text ("50", "\"50.00\""). */
static void ride_body(char *out, size_t n, const char *customer, const char *fare,
                      const char *distance)
{
    snprintf(out, n,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s\", "
             "\"duration\": 600, \"distance\": %s, \"fare\": %s}",
             customer, distance, fare);
}

/* POSTs body to /rides on s as admin with extra_header (may be NULL). */
static void post_ride(struct harness_server *s, const char *body, const char *extra_header,
                      struct response *r)
{
    harness_request(s, "POST", "/rides", HARNESS_ADMIN_TOKEN, body, NULL, extra_header, r);
}

/* Submits a ride of customer through s; asserts 201 and copies its id (IDS_UUID_LEN) to id
 * when id is not NULL. */
static void make_ride(struct harness_server *s, const char *customer, const char *fare,
                      const char *distance, char *id)
{
    char body[512];
    ride_body(body, sizeof body, customer, fare, distance);
    struct response r;
    post_ride(s, body, NULL, &r);
    ck_assert_msg(r.status == 201, "POST /rides %s: %ld %s", body, r.status, buf_str(&r.body));
    if (id)
        snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "id"));
    response_cleanup(&r);
}

static void assert_timestamp(const char *ts)
{
    ck_assert_ptr_nonnull(ts);
    ck_assert_msg(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts);
}

/* Checks that r is the 201 of a created ride: the headers and the representation's shape. */
static void assert_created(const struct response *r)
{
    ck_assert_msg(r->status == 201, "%ld %s", r->status, buf_str(&r->body));
    ck_assert_ptr_nonnull(r->json);
    const char *id = json_str(r->json, "id");
    ck_assert_ptr_nonnull(id);
    ck_assert_msg(strlen(id) == 36 && ids_is_uuid(id), "not a UUID: %s", id);
    char self[80], fare[96], h[200];
    snprintf(self, sizeof self, "/rides/%s", id);
    snprintf(fare, sizeof fare, "/rides/%s/fare", id);
    ck_assert(response_header(r, "Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(r, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(r, "Content-Type", h, sizeof h));
    ck_assert_str_eq(h, "application/json");
    json_t *links = json_object_get(r->json, "links");
    ck_assert_str_eq(json_str(links, "self"), self);
    ck_assert_str_eq(json_str(links, "fare"), fare);
    assert_timestamp(json_str(r->json, "submitted_at"));
    ck_assert(json_is_string(json_object_get(r->json, "from")));
    ck_assert(json_is_string(json_object_get(r->json, "to")));
    ck_assert(json_is_string(json_object_get(r->json, "customer")));
    ck_assert(json_is_number(json_object_get(r->json, "duration")));
    ck_assert(json_is_number(json_object_get(r->json, "distance")));
    ck_assert(json_is_number(json_object_get(r->json, "fare")));
    json_t *unicorn = json_object_get(r->json, "unicorn");
    ck_assert_msg(json_is_string(unicorn) || json_is_null(unicorn), "unicorn: %s",
                  buf_str(&r->body));
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_msg(json_is_number(v), "%s is not a number", key);
    return json_number_value(v);
}

/* The attributes of the message of queue whose customer attribute is customer (a new
 * reference), asserting there is exactly one such message. */
static json_t *attributes_in(const char *queue, const char *customer)
{
    ck_assert_int_eq(in_queue(queue, customer), 1);
    char *text = harness_sqlf_text("SELECT m.attributes::text FROM messages m JOIN queues q "
                                   "ON q.id = m.queue_id WHERE q.name = '%s' "
                                   "AND m.attributes->'customer'->>'value' = '%s'",
                                   queue, customer);
    ck_assert_ptr_nonnull(text);
    json_t *a = json_loads(text, 0, NULL);
    ck_assert_msg(a != NULL, "attributes are not JSON: %s", text);
    free(text);
    return a;
}

/* ---- POST /rides ----------------------------------------------------------------------------- */

START_TEST(post_rides_answers_201_and_publishes_the_ride)
{
    const char *body = "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", "
                       "\"customer\": \"p1-alice\", \"unicorn\": \"Shadowfax\", "
                       "\"duration\": \"600\", \"distance\": 12.5, \"fare\": \"61.50\"}";
    struct response r;
    post_ride(&srv, body, "X-Request-Id: rides-test.req:1", &r);
    assert_created(&r);
    char id[IDS_UUID_LEN], rid[128];
    snprintf(id, sizeof id, "%s", json_str(r.json, "id"));
    ck_assert(response_header(&r, "X-Request-Id", rid, sizeof rid));
    ck_assert_str_eq(rid, "rides-test.req:1");
    ck_assert_str_eq(json_str(r.json, "from"), "Sunset Blvd");
    ck_assert_str_eq(json_str(r.json, "to"), "Hollywood Hills");
    ck_assert_str_eq(json_str(r.json, "customer"), "p1-alice");
    ck_assert_str_eq(json_str(r.json, "unicorn"), "Shadowfax");
    /* numeric strings come back as numbers: "600" as the integer 600, "61.50" as 61.5 */
    ck_assert(json_is_integer(json_object_get(r.json, "duration")));
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "duration")), 600);
    ck_assert(num(r.json, "distance") == 12.5);
    ck_assert(num(r.json, "fare") == 61.5);
    ck_assert_int_eq(json_object_size(r.json), 10);

    /* stored... */
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM rides WHERE id = '%s' AND customer = 'p1-alice' "
                     "AND from_location = 'Sunset Blvd' AND to_location = 'Hollywood Hills' "
                     "AND unicorn = 'Shadowfax' AND duration = 600 AND distance = 12.5 "
                     "AND fare::text = '61.50' AND correlation_id = 'rides-test.req:1'",
                     id),
        1);
    /* ...and published: once to each unfiltered queue, not to extraordinary-rides (distance) */
    json_t *want = json_pack("{s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}}",
                             "fare", "type", "Number", "value", "61.50", "distance", "type",
                             "Number", "value", "12.5", "customer", "type", "String", "value",
                             "p1-alice", "unicorn", "type", "String", "value", "Shadowfax",
                             "correlation_id", "type", "String", "value", "rides-test.req:1");
    /* the trace (rydes/trace.h): the request id travels on as request_id */
    json_object_set_new(want, "request_id",
                        json_pack("{s:s,s:s}", "type", "String", "value", "rides-test.req:1"));
    for (int i = 0; i < NQUEUES; i++) {
        json_t *a = attributes_in(unfiltered[i], "p1-alice");
        char *text = json_dumps(a, JSON_SORT_KEYS);
        bool same = json_equal(a, want);
        json_decref(a);
        ck_assert_msg(same, "%s: attributes %s", unfiltered[i], text);
        free(text);
    }
    json_decref(want);
    ck_assert_int_eq(in_queue("extraordinary-rides", "p1-alice"), 0);

    /* what a consumer receives: the ride itself (raw delivery) with those attributes */
    struct response m;
    harness_admin(&srv, "POST", "/queues/customer-accounting/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 60}", &m);
    ck_assert_int_eq(m.status, 200);
    json_t *msgs = json_object_get(m.json, "messages"), *ours = NULL;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *b = json_object_get(json_array_get(msgs, i), "body");
        if (json_is_object(b) && json_str(b, "id") && strcmp(json_str(b, "id"), id) == 0)
            ours = json_array_get(msgs, i);
    }
    ck_assert_msg(ours != NULL, "ride %s not received: %s", id, buf_str(&m.body));
    ck_assert_msg(json_equal(json_object_get(ours, "body"), r.json), "delivered %s",
                  buf_str(&m.body));
    json_t *attrs = json_object_get(ours, "attributes");
    ck_assert_str_eq(json_str(json_object_get(attrs, "correlation_id"), "value"),
                     "rides-test.req:1");
    ck_assert_str_eq(json_str(json_object_get(attrs, "fare"), "type"), "Number");
    char del[200];
    snprintf(del, sizeof del, "/queues/customer-accounting/messages/%s", json_str(ours, "receipt"));
    response_cleanup(&m);
    harness_admin(&srv, "DELETE", del, NULL, &m);
    ck_assert_int_eq(m.status, 204);
    response_cleanup(&m);

    /* GET of the Location is the same representation */
    char self[80];
    snprintf(self, sizeof self, "/rides/%s", id);
    harness_admin(&srv, "GET", self, NULL, &m);
    ck_assert_int_eq(m.status, 200);
    ck_assert(json_equal(m.json, r.json));
    response_cleanup(&m);
    response_cleanup(&r);
}
END_TEST

START_TEST(the_alias_and_hyphenated_fields_work_the_same)
{
    /* no unicorn: null in the ride, no unicorn attribute; the correlation id is generated */
    const char *body = "{\"from-location\": \"Pier 39\", \"to-location\": \"Alcatraz\", "
                       "\"customer-id\": \"p2-bob\", \"duration\": 0, \"distance\": \"0\", "
                       "\"fare\": \"0.5\"}";
    struct response r;
    harness_request(&srv, "POST", "/submit-ride-completion", HARNESS_ADMIN_TOKEN, body, NULL, NULL,
                    &r);
    assert_created(&r);
    ck_assert_str_eq(json_str(r.json, "from"), "Pier 39");
    ck_assert_str_eq(json_str(r.json, "to"), "Alcatraz");
    ck_assert_str_eq(json_str(r.json, "customer"), "p2-bob");
    ck_assert(json_is_null(json_object_get(r.json, "unicorn")));
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "duration")), 0);
    ck_assert(num(r.json, "distance") == 0);
    ck_assert(num(r.json, "fare") == 0.5);
    char rid[128];
    ck_assert(response_header(&r, "X-Request-Id", rid, sizeof rid));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE id = '%s' AND unicorn IS NULL "
                                  "AND correlation_id = '%s'",
                                  json_str(r.json, "id"), rid),
                     1);
    for (int i = 0; i < NQUEUES; i++) {
        json_t *a = attributes_in(unfiltered[i], "p2-bob");
        ck_assert_ptr_null(json_object_get(a, "unicorn"));
        ck_assert_str_eq(json_str(json_object_get(a, "correlation_id"), "value"), rid);
        ck_assert_str_eq(json_str(json_object_get(a, "fare"), "value"), "0.50");
        json_decref(a);
    }
    response_cleanup(&r);

    /* unicorn-id; the limits themselves; 200 characters (not bytes) of UTF-8 */
    char from[512] = "", unicorn[64];
    for (int i = 0; i < 200; i++)
        strcat(from, "\xc3\xa9"); /* é */
    snprintf(unicorn, sizeof unicorn, "Rocinante");
    char big[1024];
    snprintf(big, sizeof big,
             "{\"from\": \"%s\", \"to\": \"B\", \"customer\": \"p2-carol\", \"unicorn-id\": "
             "\"%s\", \"duration\": 31536000, \"distance\": 1e5, \"fare\": \"1000000.00\"}",
             from, unicorn);
    post_ride(&srv, big, NULL, &r);
    assert_created(&r);
    ck_assert_str_eq(json_str(r.json, "from"), from);
    ck_assert_str_eq(json_str(r.json, "unicorn"), "Rocinante");
    ck_assert(num(r.json, "duration") == 31536000);
    ck_assert(num(r.json, "distance") == 100000);
    ck_assert(num(r.json, "fare") == 1000000);
    /* fare ≥ 50 and distance ≥ 20: this one also reaches extraordinary-rides */
    json_t *a = attributes_in("extraordinary-rides", "p2-carol");
    ck_assert_str_eq(json_str(json_object_get(a, "unicorn"), "value"), "Rocinante");
    ck_assert_str_eq(json_str(json_object_get(a, "fare"), "value"), "1000000.00");
    json_decref(a);
    for (int i = 0; i < NQUEUES; i++)
        ck_assert_int_eq(in_queue(unfiltered[i], "p2-carol"), 1);
    response_cleanup(&r);
}
END_TEST

/* One invalid submission: up to two changes to a valid body (value NULL: remove the member;
 * "@201": a string of 201 characters) and the field the 400 must name. */
struct bad_ride {
    const char *f1, *v1, *f2, *v2;
    const char *named;
};

static const struct bad_ride bad_rides[] = {
    {"from", NULL, NULL, NULL, "from"},
    {"to", NULL, NULL, NULL, "to"},
    {"customer", NULL, NULL, NULL, "customer"},
    {"duration", NULL, NULL, NULL, "duration"},
    {"distance", NULL, NULL, NULL, "distance"},
    {"fare", NULL, NULL, NULL, "fare"},
    {"from", "\"\"", NULL, NULL, "from"},
    {"to", "\"\"", NULL, NULL, "to"},
    {"customer", "\"\"", NULL, NULL, "customer"},
    {"unicorn", "\"\"", NULL, NULL, "unicorn"},
    {"from", "@201", NULL, NULL, "from"},
    {"to", "@201", NULL, NULL, "to"},
    {"customer", "@201", NULL, NULL, "customer"},
    {"unicorn", "@201", NULL, NULL, "unicorn"},
    {"from", "5", NULL, NULL, "from"},
    {"to", "true", NULL, NULL, "to"},
    {"customer", "null", NULL, NULL, "customer"},
    {"customer", "{}", NULL, NULL, "customer"},
    {"unicorn", "7", NULL, NULL, "unicorn"},
    {"unicorn", "[\"x\"]", NULL, NULL, "unicorn"},
    {"duration", "-1", NULL, NULL, "duration"},
    {"duration", "\"-1\"", NULL, NULL, "duration"},
    {"duration", "31536001", NULL, NULL, "duration"},
    {"duration", "true", NULL, NULL, "duration"},
    {"duration", "null", NULL, NULL, "duration"},
    {"duration", "{}", NULL, NULL, "duration"},
    {"duration", "[1]", NULL, NULL, "duration"},
    {"duration", "\"abc\"", NULL, NULL, "duration"},
    {"duration", "\"\"", NULL, NULL, "duration"},
    {"duration", "\"1e5\"", NULL, NULL, "duration"},
    {"duration", "\"12.\"", NULL, NULL, "duration"},
    {"duration", "\".5\"", NULL, NULL, "duration"},
    {"duration", "\" 12\"", NULL, NULL, "duration"},
    {"duration", "\"+5\"", NULL, NULL, "duration"},
    {"duration", "\"-0\"", NULL, NULL, "duration"},
    {"distance", "\"-0.0\"", NULL, NULL, "distance"},
    {"fare", "\"-0.00\"", NULL, NULL, "fare"},
    {"duration", "\"0x10\"", NULL, NULL, "duration"},
    {"duration", "\"NaN\"", NULL, NULL, "duration"},
    {"distance", "-0.5", NULL, NULL, "distance"},
    {"distance", "\"-0.5\"", NULL, NULL, "distance"},
    {"distance", "100000.5", NULL, NULL, "distance"},
    {"distance", "\"100001\"", NULL, NULL, "distance"},
    {"distance", "\"2E1\"", NULL, NULL, "distance"},
    {"distance", "false", NULL, NULL, "distance"},
    {"fare", "1.234", NULL, NULL, "fare"},
    {"fare", "\"1.234\"", NULL, NULL, "fare"},
    {"fare", "\"0.001\"", NULL, NULL, "fare"},
    {"fare", "-0.01", NULL, NULL, "fare"},
    {"fare", "1000000.01", NULL, NULL, "fare"},
    {"fare", "\"1000000.01\"", NULL, NULL, "fare"},
    {"fare", "\"1e2\"", NULL, NULL, "fare"},
    {"fare", "\"12,50\"", NULL, NULL, "fare"},
    {"fare", "\"9.9.9\"", NULL, NULL, "fare"},
    {"fare", "\"$20.00\"", NULL, NULL, "fare"},
    {"fare", "true", NULL, NULL, "fare"},
    {"fare", "null", NULL, NULL, "fare"},
    {"fare", "{\"amount\": 5}", NULL, NULL, "fare"},
    /* more than 2 decimals given as a JSON number, however small or large the fare */
    {"fare", "1e-10", NULL, NULL, "fare"},
    {"fare", "500000.0004", NULL, NULL, "fare"},
    /* a field and its alias */
    {"customer-id", "\"p3-x\"", NULL, NULL, "customer"},
    {"from-location", "\"A\"", NULL, NULL, "from"},
    {"to-location", "\"B\"", NULL, NULL, "to"},
    {"unicorn", "\"u\"", "unicorn-id", "\"u\"", "unicorn"},
    /* an alias alone is validated under its own name */
    {"customer", NULL, "customer-id", "\"\"", "customer-id"},
    {"from", NULL, "from-location", "5", "from-location"},
    {"unicorn-id", "@201", NULL, NULL, "unicorn-id"},
    /* unknown fields, including near misses of the known ones */
    {"tip", "1", NULL, NULL, "tip"},
    {"Customer", "\"x\"", NULL, NULL, "Customer"},
    {"customer_id", "\"x\"", NULL, NULL, "customer_id"},
    {"fare-amount", "\"1\"", NULL, NULL, "fare-amount"},
};

/* A request body that is wrong as a whole, and the answer. */
struct bad_body {
    const char *body, *content_type;
    long status;
};

static const struct bad_body bad_bodies[] = {
    {"[]", NULL, 400},
    {"\"ride\"", NULL, 400},
    {"42", NULL, 400},
    {"null", NULL, 400},
    {"{\"from\": ", NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"customer\": \"d\", \"duration\": 1, "
     "\"distance\": 1, \"fare\": 1}",
     NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"duration\": 1, \"distance\": 1, "
     "\"fare\": 1}",
     "text/plain", 415},
    {"from=A&to=B", "application/x-www-form-urlencoded", 415},
};

/* The valid body of the table's rides with case b applied (caller frees). */
static char *bad_ride_body(const struct bad_ride *b)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s}", "from", "A", "to", "B", "customer",
                          "p3-valid", "duration", 60, "distance", 3, "fare", "9.90");
    const char *f[] = {b->f1, b->f2}, *v[] = {b->v1, b->v2};
    for (int i = 0; i < 2 && f[i]; i++) {
        if (!v[i]) {
            json_object_del(o, f[i]);
        } else if (strcmp(v[i], "@201") == 0) {
            char s[202];
            memset(s, 'x', 201);
            s[201] = '\0';
            json_object_set_new(o, f[i], json_string(s));
        } else {
            json_t *x = json_loads(v[i], JSON_DECODE_ANY, NULL);
            ck_assert_msg(x != NULL, "bad table value %s", v[i]);
            json_object_set_new(o, f[i], x);
        }
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

START_TEST(invalid_rides_are_400_naming_the_field_and_change_nothing)
{
    long long rides = harness_sqlf("SELECT count(*) FROM rides"),
              messages = harness_sqlf("SELECT count(*) FROM messages"),
              payloads = harness_sqlf("SELECT count(*) FROM payloads");
    /* every row is tried; the ones answered wrongly are listed together at the end */
    struct buf wrong;
    buf_init(&wrong);
    for (size_t i = 0; i < sizeof bad_rides / sizeof *bad_rides; i++) {
        char *body = bad_ride_body(&bad_rides[i]);
        struct response r;
        post_ride(&srv, body, NULL, &r);
        if (r.status != 400 || !problem_names_field(&r, bad_rides[i].named))
            buf_printf(&wrong, "\n  %s: %ld %s (expected 400 naming %s)", body, r.status,
                       buf_str(&r.body), bad_rides[i].named);
        else
            assert_problem(&r, 400);
        response_cleanup(&r);
        free(body);
    }
    for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
        const struct bad_body *b = &bad_bodies[i];
        struct response r;
        harness_request(&srv, "POST", "/rides", HARNESS_ADMIN_TOKEN, b->body, b->content_type, NULL,
                        &r);
        if (r.status != b->status)
            buf_printf(&wrong, "\n  %s: %ld %s (expected %ld)", b->body, r.status, buf_str(&r.body),
                       b->status);
        else
            assert_problem(&r, b->status);
        response_cleanup(&r);
    }
    /* no body at all */
    struct response r;
    harness_request(&srv, "POST", "/rides", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    ck_assert_msg(r.status == 400 || r.status == 415, "%ld", r.status);
    assert_problem(&r, r.status);
    response_cleanup(&r);
    /* the alias answers the same */
    harness_request(&srv, "POST", "/submit-ride-completion", HARNESS_ADMIN_TOKEN,
                    "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"duration\": 1, "
                    "\"distance\": 1, \"fare\": 1.001}",
                    NULL, NULL, &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "fare"));
    response_cleanup(&r);
    /* every problem is reported at once */
    post_ride(&srv, "{\"from\": \"\", \"customer-id\": 1, \"fare\": -1, \"extra\": 0}", NULL, &r);
    assert_problem(&r, 400);
    const char *named[] = {"from", "to", "customer-id", "duration", "distance", "fare", "extra"};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        ck_assert_msg(problem_names_field(&r, named[i]), "%s not named: %s", named[i],
                      buf_str(&r.body));
    response_cleanup(&r);

    long long now[3] = {harness_sqlf("SELECT count(*) FROM rides"),
                        harness_sqlf("SELECT count(*) FROM messages"),
                        harness_sqlf("SELECT count(*) FROM payloads")};
    if (now[0] != rides || now[1] != messages || now[2] != payloads)
        buf_printf(&wrong, "\n  stored: %lld rides, %lld messages, %lld payloads more",
                   now[0] - rides, now[1] - messages, now[2] - payloads);
    /* copied out first: a failed check leaves the test at once, and must not leak */
    char report[4096];
    snprintf(report, sizeof report, "%s", buf_str(&wrong));
    buf_cleanup(&wrong);
    ck_assert_msg(report[0] == '\0', "invalid rides answered wrongly:%s", report);
}
END_TEST

/* ---- Idempotency-Key ------------------------------------------------------------------------- */

/* Rides of customer, and their messages in each unfiltered queue (asserted equal to rides). */
static long long rides_of(const char *customer)
{
    long long n = harness_sqlf("SELECT count(*) FROM rides WHERE customer = '%s'", customer);
    for (int i = 0; i < NQUEUES; i++)
        ck_assert_msg(in_queue(unfiltered[i], customer) == n, "%s: %lld messages for %lld rides",
                      unfiltered[i], in_queue(unfiltered[i], customer), n);
    return n;
}

START_TEST(a_retry_with_the_same_key_replays_the_first_ride)
{
    const char *body = "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i1-dave\", "
                       "\"duration\": 60, \"distance\": 2.5, \"fare\": \"12.50\"}";
    const char *key = "Idempotency-Key: i1-key-0001";
    struct response a, b;
    post_ride(&srv, body, key, &a);
    assert_created(&a);
    post_ride(&srv, body, key, &b);
    assert_created(&b);
    ck_assert_str_eq(json_str(a.json, "id"), json_str(b.json, "id"));
    ck_assert(json_equal(a.json, b.json));
    ck_assert_int_eq(rides_of("i1-dave"), 1);
    response_cleanup(&b);

    /* other member order and spacing (and the alias route) are the same request */
    const char *reordered = "{ \"fare\":\"12.50\",\"distance\":2.5,  \"duration\":60,"
                            "\"customer\":\"i1-dave\",\"to\":\"B\",\"from\":\"A\" }";
    post_ride(&srv, reordered, key, &b);
    assert_created(&b);
    ck_assert(json_equal(a.json, b.json));
    response_cleanup(&b);
    harness_request(&srv, "POST", "/submit-ride-completion", HARNESS_ADMIN_TOKEN, reordered, NULL,
                    key, &b);
    assert_created(&b);
    ck_assert(json_equal(a.json, b.json));
    response_cleanup(&b);
    ck_assert_int_eq(rides_of("i1-dave"), 1);

    /* trailing zeros are no decimals, in a numeric string as in a number: the same request */
    const char *fares[] = {"\"12.500\"", "12.500", "12.5"};
    for (int i = 0; i < 3; i++) {
        char fb[256];
        snprintf(fb, sizeof fb,
                 "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i1-dave\", "
                 "\"duration\": 60, \"distance\": 2.5, \"fare\": %s}",
                 fares[i]);
        post_ride(&srv, fb, key, &b);
        assert_created(&b);
        ck_assert(json_equal(a.json, b.json));
        response_cleanup(&b);
    }
    ck_assert_int_eq(rides_of("i1-dave"), 1);

    /* -0 is 0 as a number, and "0.0" too: the same request */
    const char *zeros[] = {"0", "\"0.0\"", "-0.0"};
    struct response z[3];
    for (int i = 0; i < 3; i++) {
        char zb[256];
        snprintf(zb, sizeof zb,
                 "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i1-zoe\", "
                 "\"duration\": %s, \"distance\": 2.5, \"fare\": \"12.50\"}",
                 zeros[i]);
        post_ride(&srv, zb, "Idempotency-Key: i1-key-zero", &z[i]);
        assert_created(&z[i]);
        ck_assert(json_equal(z[0].json, z[i].json));
    }
    for (int i = 0; i < 3; i++)
        response_cleanup(&z[i]);

    /* the same key with another body: 422, nothing stored */
    const char *other = "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i1-dave\", "
                        "\"duration\": 60, \"distance\": 2.5, \"fare\": \"12.51\"}";
    post_ride(&srv, other, key, &b);
    assert_problem(&b, 422);
    response_cleanup(&b);
    ck_assert_int_eq(rides_of("i1-dave"), 1);

    /* another key makes another ride; no key at all makes a new ride each time */
    post_ride(&srv, body, "Idempotency-Key: i1-key-0002", &b);
    assert_created(&b);
    ck_assert_str_ne(json_str(a.json, "id"), json_str(b.json, "id"));
    response_cleanup(&b);
    post_ride(&srv, body, NULL, &b);
    assert_created(&b);
    response_cleanup(&b);
    post_ride(&srv, body, NULL, &b);
    assert_created(&b);
    response_cleanup(&b);
    ck_assert_int_eq(rides_of("i1-dave"), 4);
    response_cleanup(&a);
}
END_TEST

START_TEST(invalid_idempotency_keys_are_400)
{
    const char *body = "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i2-erin\", "
                       "\"duration\": 60, \"distance\": 2.5, \"fare\": 3}";
    char long_key[300], max_key[300];
    snprintf(long_key, sizeof long_key, "Idempotency-Key: %0256d", 7);
    snprintf(max_key, sizeof max_key, "Idempotency-Key: %0255d", 7);
    const char *bad[] = {
        "Idempotency-Key;", /* curl sends an empty value */
        long_key,
        "Idempotency-Key: a b",
        "Idempotency-Key: a\tb",
        "Idempotency-Key: a\x01"
        "b",
        "Idempotency-Key: a\x7f"
        "b",
        "Idempotency-Key: cl\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct response r;
        post_ride(&srv, body, bad[i], &r);
        ck_assert_msg(r.status == 400, "%s: %ld %s", bad[i], r.status, buf_str(&r.body));
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, "Idempotency-Key"), "%s: %s", bad[i],
                      buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(rides_of("i2-erin"), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM idempotency_keys WHERE length(key) > 255 "
                                  "OR key ~ '[^!-~]'"),
                     0);
    /* 255 visible characters are fine */
    struct response r;
    post_ride(&srv, body, max_key, &r);
    assert_created(&r);
    response_cleanup(&r);
    /* a key sent with an invalid body is not used up by it */
    post_ride(&srv,
              "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"i2-erin\", \"duration\": 60, "
              "\"distance\": 2.5, \"fare\": -3}",
              "Idempotency-Key: i2-key", &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    post_ride(&srv, body, "Idempotency-Key: i2-key", &r);
    assert_created(&r);
    response_cleanup(&r);
    ck_assert_int_eq(rides_of("i2-erin"), 2);
}
END_TEST

/* One of the concurrent submissions with the same key. No ck_assert off the test's thread. */
struct racer {
    const char *url, *body;
    char key[64]; /* the header line */
    pthread_barrier_t *go;
    long status;
    char id[IDS_UUID_LEN];
    char *answer; /* the body received (owned) */
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

static void *race(void *arg)
{
    struct racer *x = arg;
    struct buf got;
    buf_init(&got);
    CURL *c = curl_easy_init();
    struct curl_slist *hs = NULL;
    hs = curl_slist_append(hs, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, x->key);
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    pthread_barrier_wait(x->go);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    json_t *j = json_loadb(got.data, got.len, 0, NULL);
    snprintf(x->id, sizeof x->id, "%s", json_str(j, "id") ? json_str(j, "id") : "");
    json_decref(j);
    x->answer = buf_steal(&got);
    return NULL;
}

#define RACERS 6

/* Sends body with Idempotency-Key key from RACERS threads at once into x. */
static void race_all(const char *body, const char *key, struct racer *x)
{
    char url[128];
    snprintf(url, sizeof url, "%s/rides", srv.base);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        x[i] = (struct racer){.url = url, .body = body, .go = &go};
        snprintf(x[i].key, sizeof x[i].key, "Idempotency-Key: %s", key);
        pthread_create(&t[i], NULL, race, &x[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
}

START_TEST(concurrent_requests_with_one_key_make_one_ride)
{
    char bodies[3][256], key[32];
    for (int round = 0; round < 3; round++) {
        snprintf(bodies[round], sizeof bodies[round],
                 "{\"from\": \"A%d\", \"to\": \"B\", \"customer\": \"i3-frank\", "
                 "\"duration\": 60, \"distance\": 25, \"fare\": 55}",
                 round);
        snprintf(key, sizeof key, "race-key-%d", round);
        struct racer x[RACERS];
        race_all(bodies[round], key, x);
        for (int i = 0; i < RACERS; i++)
            ck_assert_msg(x[i].status == 201 && strcmp(x[i].id, x[0].id) == 0 && x[0].id[0],
                          "round %d racer %d: %ld %s (first: %s)", round, i, x[i].status,
                          x[i].answer, x[0].id);
        for (int i = 0; i < RACERS; i++)
            free(x[i].answer);
    }
    ck_assert_int_eq(rides_of("i3-frank"), 3);
    ck_assert_int_eq(in_queue("extraordinary-rides", "i3-frank"), 3);
    /* a key reused with another body, concurrently: every one of them 422 */
    struct racer x[RACERS];
    race_all(bodies[1], "race-key-0", x);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(x[i].status == 422, "racer %d: %ld %s", i, x[i].status, x[i].answer);
    for (int i = 0; i < RACERS; i++)
        free(x[i].answer);
    ck_assert_int_eq(rides_of("i3-frank"), 3);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'race-key-%%'"), 3);
}
END_TEST

/* ---- reading rides --------------------------------------------------------------------------- */

START_TEST(get_ride_is_200_or_404)
{
    char id[IDS_UUID_LEN], path[128];
    make_ride(&srv, "g1-gina", "\"7.25\"", "1.5", id);
    snprintf(path, sizeof path, "/rides/%s", id);
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "id"), id);
    ck_assert(num(r.json, "fare") == 7.25);
    ck_assert(num(r.json, "distance") == 1.5);
    char h[200];
    ck_assert(response_header(&r, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, path);
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "self"), path);
    response_cleanup(&r);
    const char *missing[] = {"/rides/00000000-0000-4000-8000-000000000000",
                             "/rides/not-a-uuid",
                             "/rides/00000000-0000-4000-8000-00000000000",
                             "/rides/00000000-0000-4000-8000-0000000000000",
                             "/rides/00000000x0000-4000-8000-000000000000",
                             "/rides/%27"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        harness_admin(&srv, "GET", missing[i], NULL, &r);
        ck_assert_msg(r.status == 404, "%s: %ld %s", missing[i], r.status, buf_str(&r.body));
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(list_rides_of_a_customer_paginates_oldest_first)
{
    char ids[5][IDS_UUID_LEN];
    for (int i = 0; i < 5; i++) {
        make_ride(&srv, "l1 Mary Ann", "10", "1", ids[i]);
        make_ride(&srv, "l1 someone else", "10", "1", NULL);
    }
    char path[256];
    snprintf(path, sizeof path, "/rides?customer=l1%%20Mary%%20Ann&limit=2");
    int seen = 0, pages = 0;
    for (;;) {
        struct response r;
        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_msg(r.status == 200, "%s: %ld %s", path, r.status, buf_str(&r.body));
        json_t *items = json_object_get(r.json, "rides");
        ck_assert(json_is_array(items));
        pages++;
        ck_assert_int_eq(json_array_size(items), pages < 3 ? 2 : 1);
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *ride = json_array_get(items, i);
            ck_assert_int_lt(seen, 5);
            ck_assert_str_eq(json_str(ride, "id"), ids[seen]);
            ck_assert_str_eq(json_str(ride, "customer"), "l1 Mary Ann");
            ck_assert(json_is_object(json_object_get(ride, "links")));
            seen++;
        }
        json_t *next = json_object_get(r.json, "next");
        ck_assert(json_is_string(next) || json_is_null(next));
        bool more = json_is_string(next);
        if (more)
            snprintf(path, sizeof path, "/rides?customer=l1%%20Mary%%20Ann&limit=2&after=%s",
                     json_string_value(next));
        response_cleanup(&r);
        if (!more)
            break;
        ck_assert_int_lt(pages, 3);
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
    /* an unknown customer has no rides; without customer every ride is listed */
    struct response r;
    harness_admin(&srv, "GET", "/rides?customer=l1-nobody", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "rides")), 0);
    ck_assert(json_is_null(json_object_get(r.json, "next")));
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/rides?limit=1000", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq((long long)json_array_size(json_object_get(r.json, "rides")),
                     harness_sqlf("SELECT count(*) FROM rides"));
    response_cleanup(&r);

    char long_customer[300] = "/rides?customer=";
    for (int i = 0; i < 201; i++)
        strcat(long_customer, "c");
    const struct {
        const char *path, *field;
    } bad[] = {
        {"/rides?customer=x&limit=0", "limit"},
        {"/rides?customer=x&limit=1001", "limit"},
        {"/rides?customer=x&limit=abc", "limit"},
        {"/rides?customer=x&limit=", "limit"},
        {"/rides?customer=x&limit=-1", "limit"},
        {"/rides?customer=x&after=abc", "after"},
        {"/rides?customer=x&after=0", "after"},
        {"/rides?customer=x&after=-5", "after"},
        {"/rides?customer=x&after=", "after"},
        {"/rides?customer=", "customer"},
        {"/rides?customer=%FF", "customer"},
        {long_customer, "customer"},
        {"/rides?after=99999999999999999999", "after"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        harness_admin(&srv, "GET", bad[i].path, NULL, &r);
        ck_assert_msg(r.status == 400, "%s: %ld %s", bad[i].path, r.status, buf_str(&r.body));
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, bad[i].field), "%s: %s", bad[i].path,
                      buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

/* ---- roles ----------------------------------------------------------------------------------- */

static long status_of(const char *method, const char *path, const char *token, const char *body)
{
    struct response r;
    harness_request(&srv, method, path, token, body, NULL, NULL, &r);
    long st = r.status;
    if (st == 401 || st == 403)
        assert_problem(&r, st);
    response_cleanup(&r);
    return st;
}

START_TEST(rides_need_the_app_role)
{
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN], body[512], id[IDS_UUID_LEN];
    create_token(&srv, "app", app);
    create_token(&srv, "service", service);
    ride_body(body, sizeof body, "r1-hank", "20", "4");
    ck_assert_int_eq(status_of("POST", "/rides", NULL, body), 401);
    ck_assert_int_eq(status_of("POST", "/rides", "not-a-token", body), 401);
    ck_assert_int_eq(status_of("POST", "/rides", "rydes_0000000000000000000000000000", body), 401);
    ck_assert_int_eq(status_of("POST", "/submit-ride-completion", NULL, body), 401);
    ck_assert_int_eq(status_of("GET", "/rides?customer=r1-hank", NULL, NULL), 401);
    ck_assert_int_eq(status_of("GET", "/rides/00000000-0000-4000-8000-000000000000", NULL, NULL),
                     401);
    ck_assert_int_eq(rides_of("r1-hank"), 0);
    ck_assert_int_eq(status_of("POST", "/rides", app, body), 201);
    ck_assert_int_eq(status_of("POST", "/submit-ride-completion", app, body), 201);
    ck_assert_int_eq(status_of("POST", "/rides", service, body), 201);
    ck_assert_int_eq(status_of("POST", "/rides", HARNESS_ADMIN_TOKEN, body), 201);
    ck_assert_int_eq(rides_of("r1-hank"), 4);
    make_ride(&srv, "r1-hank", "20", "4", id);
    char path[128];
    snprintf(path, sizeof path, "/rides/%s", id);
    ck_assert_int_eq(status_of("GET", path, app, NULL), 200);
    ck_assert_int_eq(status_of("GET", path, service, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/rides?customer=r1-hank", app, NULL), 200);
    /* app is no more than app: the messaging API and management are refused */
    ck_assert_int_eq(status_of("PUT", "/queues/x", app, "{}"), 403);
    ck_assert_int_eq(status_of("PUT", "/topics/ride-completion/subscriptions/x", app,
                               "{\"queue\": \"customer-loyalty\"}"),
                     403);
    ck_assert_int_eq(status_of("POST", "/queues/customer-accounting/messages:receive", app, "{}"),
                     403);
    ck_assert_int_eq(
        status_of("POST", "/topics/ride-completion/messages", app, "{\"body\": \"x\"}"), 403);
    ck_assert_int_eq(status_of("PUT", "/queues/x", service, "{}"), 403);
    ck_assert_int_eq(status_of("POST", "/tokens", app, "{\"role\":\"admin\",\"name\":\"x\"}"), 403);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'x'"), 0);
    /* other methods on the ride routes */
    ck_assert_int_eq(status_of("DELETE", path, app, NULL), 405);
    ck_assert_int_eq(status_of("PUT", "/rides", app, body), 405);
}
END_TEST

/* ---- the services ---------------------------------------------------------------------------- */

/* Waits up to timeout_s until each of the n rides of id_list (a SQL list) was notified,
 * credited and ingested, and `extraordinary` of them were flagged too. */
static void wait_journeys(const char *id_list, long long n, long long extraordinary,
                          double timeout_s)
{
    char sql[4096];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FILTER (WHERE notified_at IS NOT NULL AND loyalty_points IS NOT "
             "NULL AND ingested_at IS NOT NULL) * 100000 + count(extraordinary_at) "
             "FROM ride_journeys WHERE id IN (%s)",
             id_list);
    long long got = harness_wait_sql(sql, n * 100000 + extraordinary, timeout_s);
    ck_assert_msg(got == n * 100000 + extraordinary,
                  "after %.0f s: %lld of %lld rides done, %lld of %lld flagged", timeout_s,
                  got / 100000, n, got % 100000, extraordinary);
}

/* Appends 'id' to a SQL list. */
static void list_add(char *list, size_t n, const char *id)
{
    size_t len = strlen(list);
    snprintf(list + len, n - len, "%s'%s'", len ? ", " : "", id);
}

START_TEST(extraordinary_filter_boundary)
{
    struct harness_server s;
    harness_start(&s, all_workers);
    const struct {
        const char *customer, *fare, *distance;
        bool extraordinary;
        long long points;
    } rides[] = {
        {"fb-1", "50", "20", true, 51},
        {"fb-2", "\"50.00\"", "25", true, 51},
        {"fb-3", "49.99", "20", false, 50},
        {"fb-4", "50", "19.99", false, 51},
        {"fb-5", "\"49.99\"", "\"100000\"", false, 50},
        {"fb-6", "1000000", "\"20.0\"", true, 1000001},
    };
    const int n = sizeof rides / sizeof *rides;
    char ids[8][IDS_UUID_LEN], list[1024] = "";
    for (int i = 0; i < n; i++) {
        make_ride(&s, rides[i].customer, rides[i].fare, rides[i].distance, ids[i]);
        list_add(list, sizeof list, ids[i]);
    }
    wait_journeys(list, n, 3, 10);
    /* every delivery is settled before we look at what did not happen */
    wait_services_settled();
    for (int i = 0; i < n; i++) {
        ck_assert_msg(harness_sqlf("SELECT count(*) FROM ride_journeys WHERE id = '%s' AND "
                                   "extraordinary_at IS %s NULL",
                                   ids[i], rides[i].extraordinary ? "NOT" : "") == 1,
                      "%s: extraordinary should be %d", rides[i].customer, rides[i].extraordinary);
        ck_assert_int_eq(
            harness_sqlf("SELECT loyalty_points FROM ride_journeys WHERE id = '%s'", ids[i]),
            rides[i].points);
        ck_assert_int_eq(
            harness_sqlf("SELECT count(*) FROM ride_notifications WHERE ride_id = '%s' AND "
                         "customer = '%s' AND message LIKE '%%Your fare: %%'",
                         ids[i], rides[i].customer),
            1);
        ck_assert_int_eq(
            harness_sqlf("SELECT count(*) FROM datalake_rides WHERE ride_id = '%s' AND "
                         "ride->>'customer' = '%s' AND ride->>'id' = '%s'",
                         ids[i], rides[i].customer, ids[i]),
            1);
    }
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM extraordinary_rides WHERE ride_id = '%s' AND "
                     "fare = 50 AND distance = 20 AND customer = 'fb-1'",
                     ids[0]),
        1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM extraordinary_rides WHERE ride_id = '%s' AND "
                     "fare = 50 AND distance = 25",
                     ids[1]),
        1);
    harness_stop(&s);
}
END_TEST

/* The stored filter policy of subscription extraordinary-rides equals policy (JSON text). */
static long long policy_is(const char *policy)
{
    return harness_sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON t.id = s.topic_id "
                        "WHERE t.name = 'ride-completion' AND s.name = 'extraordinary-rides' "
                        "AND s.filter_policy = '%s'::jsonb AND s.raw_delivery",
                        policy);
}

#define POLICY(fare)                                   \
    "{\"fare\": [{\"numeric\": [\">=\", " fare "]}], " \
    "\"distance\": [{\"numeric\": [\">=\", 20]}]}"

/* Counts of the topology's rows: queues, topics and subscriptions. */
static void topology_counts(long long out[3])
{
    out[0] = harness_sqlf("SELECT count(*) FROM queues");
    out[1] = harness_sqlf("SELECT count(*) FROM topics");
    out[2] = harness_sqlf("SELECT count(*) FROM subscriptions");
}

START_TEST(thresholds_are_settings_and_restarts_keep_the_topology)
{
    long long before[3], after[3];
    topology_counts(before);
    struct harness_server s;
    harness_start(&s, all_workers_fare_100);
    ck_assert_int_eq(policy_is(POLICY("100")), 1);
    topology_counts(after);
    ck_assert_int_eq(after[0], before[0]);
    ck_assert_int_eq(after[1], before[1]);
    ck_assert_int_eq(after[2], before[2]);

    /* an operator's queue and subscription on the topic, and an operator's queue attribute */
    harness_put_queue(&s, "audit", NULL, 201);
    struct response r;
    harness_admin(&s, "PUT", "/topics/ride-completion/subscriptions/audit",
                  "{\"queue\": \"audit\", \"raw_delivery\": true}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    harness_put_queue(&s, "datalake-ingestion",
                      "{\"visibility_timeout\": 45, \"dead_letter\": {\"queue\": "
                      "\"datalake-ingestion-dlq\", \"max_receive_count\": 5}}",
                      200);
    topology_counts(before);

    char id[IDS_UUID_LEN], list[64] = "";
    make_ride(&s, "th-1", "60", "30", id);
    list_add(list, sizeof list, id);
    wait_journeys(list, 1, 0, 10);
    /* every delivery settled (the workers consume the queues): then 60/30 was not flagged */
    wait_services_settled();
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM extraordinary_rides WHERE ride_id = '%s'", id), 0);
    ck_assert_int_eq(in_queue("audit", "th-1"), 1);
    harness_stop(&s);

    /* the defaults again: 50 is back, the operator's changes are kept, nothing duplicated */
    for (int round = 0; round < 2; round++) {
        harness_start(&s, all_workers);
        ck_assert_int_eq(policy_is(POLICY("50")), 1);
        topology_counts(after);
        ck_assert_int_eq(after[0], before[0]);
        ck_assert_int_eq(after[1], before[1]);
        ck_assert_int_eq(after[2], before[2]);
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON "
                                      "t.id = s.topic_id JOIN queues q ON q.id = s.queue_id WHERE "
                                      "t.name = 'ride-completion' AND s.name = 'audit' AND "
                                      "q.name = 'audit' AND s.raw_delivery"),
                         1);
        ck_assert_int_eq(harness_sqlf("SELECT visibility_timeout FROM queues WHERE name = "
                                      "'datalake-ingestion'"),
                         45);
        if (round == 1)
            break;
        make_ride(&s, "th-2", "60", "30", id);
        snprintf(list, sizeof list, "'%s'", id);
        wait_journeys(list, 1, 1, 10);
        ck_assert_int_eq(in_queue("audit", "th-2"), 1);
        harness_stop(&s);
    }
    /* no topology row exists twice under one name */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM (SELECT name FROM queues GROUP BY name "
                                  "HAVING count(*) > 1) d"),
                     0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM queues WHERE name IN ('customer-notification', "
                     "'customer-loyalty', 'datalake-ingestion', 'customer-accounting', "
                     "'extraordinary-rides') AND dead_letter_queue_id = (SELECT id FROM "
                     "queues d WHERE d.name = queues.name || '-dlq') "
                     "AND max_receive_count = 5"),
        5);
    /* put things back for the tests that follow */
    harness_admin(&s, "DELETE", "/topics/ride-completion/subscriptions/audit", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&s, "DELETE", "/queues/audit", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_put_queue(&s, "datalake-ingestion",
                      "{\"dead_letter\": {\"queue\": \"datalake-ingestion-dlq\", "
                      "\"max_receive_count\": 5}}",
                      200);
    harness_stop(&s);
}
END_TEST

START_TEST(without_the_topic_nothing_is_stored_until_a_restart)
{
    struct harness_server s;
    harness_start(&s, no_workers);
    /* an operator breaks one of our subscriptions, then deletes the topic */
    struct response r;
    char stored[512], id[IDS_UUID_LEN] = "";
    ride_body(stored, sizeof stored, "nt-2", "12.5", "3");
    post_ride(&s, stored, "Idempotency-Key: nt-stored", &r);
    assert_created(&r);
    snprintf(id, sizeof id, "%s", json_str(r.json, "id"));
    response_cleanup(&r);
    harness_admin(&s, "PUT", "/topics/ride-completion/subscriptions/customer-notification",
                  "{\"queue\": \"customer-notification\", \"raw_delivery\": false}", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_admin(&s, "DELETE", "/topics/ride-completion", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    char body[512];
    ride_body(body, sizeof body, "nt-1", "10", "1");
    double until = harness_now_s() + 5;
    do {
        post_ride(&s, body, "Idempotency-Key: nt-key", &r);
        long st = r.status;
        if (st != 503)
            response_cleanup(&r);
        if (st == 503 || harness_now_s() > until)
            break;
        harness_sleep_ms(100);
    } while (true);
    assert_problem(&r, 503);
    char h[32];
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    response_cleanup(&r);
    /* no ride without its event: nothing stored, the key not used up */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE customer = 'nt-1'"), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM idempotency_keys WHERE key = 'nt-key'"), 0);
    /* a retry of a ride stored before needs no topic: it replays; another body is a conflict */
    post_ride(&s, stored, "Idempotency-Key: nt-stored", &r);
    assert_created(&r);
    ck_assert_str_eq(json_str(r.json, "id"), id);
    response_cleanup(&r);
    post_ride(&s, body, "Idempotency-Key: nt-stored", &r);
    assert_problem(&r, 422);
    response_cleanup(&r);
    harness_stop(&s);
    /* a restart re-creates the topic with our subscriptions as they are defined */
    harness_start(&s, no_workers);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON t.id = "
                                  "s.topic_id JOIN queues q ON q.id = s.queue_id WHERE t.name = "
                                  "'ride-completion' AND s.name = q.name AND s.raw_delivery"),
                     5);
    ck_assert_int_eq(policy_is(POLICY("50")), 1);
    post_ride(&s, body, "Idempotency-Key: nt-key", &r);
    assert_created(&r);
    response_cleanup(&r);
    ck_assert_int_eq(rides_of("nt-1"), 1);
    ck_assert_int_eq(in_queue("extraordinary-rides", "nt-1"), 0);
    harness_stop(&s);
}
END_TEST

/* The consumer fault hook of at_least_once_effects_happen_exactly_once: the first delivery of
 * every ride of a customer "alo-N" with N odd fails, in every service. */
static atomic_int injected;

static bool fail_first_delivery_of_odd_customers(const char *worker, const struct mq_message *m)
{
    bool ours = false;
    for (int i = 0; i < NQUEUES; i++)
        ours = ours || strcmp(worker, serviced[i]) == 0;
    if (!ours || m->receive_count != 1 || !m->body)
        return false;
    json_t *b = json_loads(m->body, 0, NULL);
    const char *c = json_str(b, "customer");
    size_t n = c ? strlen(c) : 0;
    bool fail = n > 4 && strncmp(c, "alo-", 4) == 0 && (c[n - 1] - '0') % 2 == 1;
    json_decref(b);
    if (fail)
        atomic_fetch_add(&injected, 1);
    return fail;
}

/* Checks the loyalty account of customer against the credits of its rides: want points over
 * rides rides. */
static void assert_loyalty(const char *customer, long long points, long long rides)
{
    ck_assert_int_eq(
        harness_sqlf("SELECT coalesce(sum(points), 0) FROM loyalty_credits WHERE customer = "
                     "'%s'",
                     customer),
        points);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM loyalty_accounts WHERE customer = '%s' AND "
                                  "points = %lld AND rides = %lld",
                                  customer, points, rides),
                     1);
}

/* Every ride in list (n) has exactly one row in each service table (extraordinary ones of
 * them in extraordinary_rides). */
static void assert_once_each(const char *list, long long n, long long extraordinary)
{
    const char *tables[] = {"ride_notifications", "loyalty_credits", "datalake_rides"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(
            harness_sqlf("SELECT count(*) FROM %s WHERE ride_id IN (%s)", tables[i], list), n);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM extraordinary_rides WHERE ride_id IN (%s)", list),
        extraordinary);
}

START_TEST(at_least_once_effects_happen_exactly_once)
{
    struct harness_server s;
    harness_start(&s, all_workers);
    atomic_store(&injected, 0);
    consumer_fault_hook = fail_first_delivery_of_odd_customers;
    char list[4096] = "", id[IDS_UUID_LEN];
    long long points[5] = {0}, extraordinary = 0, odd_extraordinary = 0;
    for (int i = 0; i < 20; i++) {
        int k = i % 4 + 1; /* customers alo-1..alo-4, five rides each */
        char customer[16], fare[16];
        snprintf(customer, sizeof customer, "alo-%d", k);
        snprintf(fare, sizeof fare, "%d.%02d", 10 + i * 5, i * 7 % 100);
        bool x = 10 + i * 5 >= 50 && i % 3 != 0;
        make_ride(&s, customer, fare, x ? "20" : "5", id);
        list_add(list, sizeof list, id);
        points[k] += 10 + i * 5 + 1;
        extraordinary += x;
        odd_extraordinary += x && k % 2;
    }
    ck_assert_int_gt(odd_extraordinary, 0);
    wait_journeys(list, 20, extraordinary, 30);
    wait_services_settled();
    consumer_fault_hook = NULL;
    assert_once_each(list, 20, extraordinary);
    for (int k = 1; k <= 4; k++) {
        char customer[16];
        snprintf(customer, sizeof customer, "alo-%d", k);
        assert_loyalty(customer, points[k], 5);
    }
    ck_assert_int_eq(left_in_service_queues(), 0);
    /* 10 odd rides failed once in each of three services, and the odd extraordinary ones once */
    ck_assert_int_eq(atomic_load(&injected), 30 + odd_extraordinary);
    for (int i = 0; i < NQUEUES; i++) {
        long long failed = worker_metric(&s, serviced[i], "failed"),
                  handled = worker_metric(&s, serviced[i], "handled");
        long long want = i == 3 ? odd_extraordinary : 10;
        ck_assert_msg(failed >= want, "%s: %lld failed", serviced[i], failed);
        ck_assert_msg(handled >= (i == 3 ? extraordinary : 20), "%s: %lld handled", serviced[i],
                      handled);
    }
    harness_stop(&s);
}
END_TEST

/* The first delivery of gone-1's ride to customer-notification: before the consumer holds it,
 * another consumer (simulated) has handled and deleted it, as when a batch outlives a lease. */
static bool handled_elsewhere(const char *worker, const struct mq_message *m)
{
    if (strcmp(worker, "customer-notification") != 0 || !m->body || !strstr(m->body, "gone-1"))
        return false;
    harness_sqlf("WITH d AS (DELETE FROM messages WHERE message_id = '%s' RETURNING 1) "
                 "SELECT count(*) FROM d",
                 m->message_id);
    atomic_fetch_add(&injected, 1);
    return false;
}

/* A message that is no longer the consumer's when it comes to it (gone: handled by another
 * after its lease ran out) is not handled again: its work would be committed twice (the ack of
 * a message already gone succeeds). It counts as lost; the next ride is handled as usual. */
START_TEST(a_message_handled_elsewhere_is_not_handled_again)
{
    struct harness_server s;
    harness_start(&s, all_workers);
    atomic_store(&injected, 0);
    consumer_fault_hook = handled_elsewhere;
    char gone[IDS_UUID_LEN], next[IDS_UUID_LEN];
    make_ride(&s, "gone-1", "12", "3", gone);
    make_ride(&s, "gone-2", "12", "3", next);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ride_notifications WHERE ride_id = '%s'", next);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    consumer_fault_hook = NULL;
    ck_assert_int_eq(atomic_load(&injected), 1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM ride_notifications WHERE ride_id = '%s'", gone), 0);
    ck_assert_int_eq(worker_metric(&s, "customer-notification", "lost"), 1);
    harness_stop(&s);
}
END_TEST

START_TEST(two_servers_share_the_work)
{
    consumer_fault_hook = NULL;
    struct harness_server a, b;
    /* whatever earlier tests left in the queues is consumed first, so that the counters of the
     * two servers started afterwards count our rides only */
    harness_start(&a, all_workers);
    wait_services_settled();
    harness_stop(&a);
    harness_start(&a, all_workers);
    harness_start(&b, all_workers);
    /* both servers' consumers polling before the first ride: on a loaded machine b's started
     * late once, and a's took all 135 messages */
    for (int i = 0; i < 1000 && (mq_hub_waiters(a.app.hub) < 4 || mq_hub_waiters(b.app.hub) < 4);
         i++)
        harness_sleep_ms(10);
    char list[8192] = "", id[IDS_UUID_LEN];
    long long points[5] = {0}, extraordinary = 0;
    for (int i = 0; i < 40; i++) {
        int k = i % 4 + 1;
        char customer[16], fare[16];
        snprintf(customer, sizeof customer, "two-%d", k);
        snprintf(fare, sizeof fare, "%d", 20 + i * 3);
        bool x = 20 + i * 3 >= 50 && i % 2 == 0;
        make_ride(i % 2 ? &b : &a, customer, fare, x ? "30" : "3", id);
        list_add(list, sizeof list, id);
        points[k] += 20 + i * 3 + 1;
        extraordinary += x;
    }
    wait_journeys(list, 40, extraordinary, 15);
    wait_services_settled();
    assert_once_each(list, 40, extraordinary);
    for (int k = 1; k <= 4; k++) {
        char customer[16];
        snprintf(customer, sizeof customer, "two-%d", k);
        assert_loyalty(customer, points[k], 10);
    }
    long long both[2] = {0, 0};
    for (int i = 0; i < NQUEUES; i++) {
        /* a counter moves just after its commit: allow it a moment */
        long long want = i == 3 ? extraordinary : 40, da, db;
        double until = harness_now_s() + 5;
        while ((da = worker_metric(&a, serviced[i], "handled")) +
                       (db = worker_metric(&b, serviced[i], "handled")) !=
                   want &&
               harness_now_s() < until)
            harness_sleep_ms(50);
        ck_assert_msg(da >= 0 && da <= want && db >= 0 && db <= want && da + db == want,
                      "%s: %lld + %lld handled, expected %lld in all", serviced[i], da, db, want);
        ck_assert_int_eq(worker_metric(&a, serviced[i], "failed"), 0);
        ck_assert_int_eq(worker_metric(&b, serviced[i], "failed"), 0);
        both[0] += da;
        both[1] += db;
    }
    /* shared: each server's workers did some of it */
    ck_assert_msg(both[0] > 0 && both[1] > 0, "handled: %lld by a, %lld by b", both[0], both[1]);
    harness_stop(&b);
    harness_stop(&a);
}
END_TEST

/* How long a poison message may take to reach the dead-letter queue: five failed receives with
 * the consumer's backoff of 1, 2, 4, 8 and 16 s between them (the fifth failure's lease runs out
 * before the sixth receive moves it), plus the once-a-second visibility check. */
#define POISON_DEADLINE_S 45

START_TEST(a_poison_message_is_dead_lettered_and_changes_nothing)
{
    consumer_fault_hook = NULL;
    struct harness_server s;
    harness_start(&s, loyalty_worker);
    long long credits = harness_sqlf("SELECT count(*) FROM loyalty_credits"),
              accounts = harness_sqlf("SELECT coalesce(sum(points), 0) FROM loyalty_accounts");
    struct response r;
    /* not a ride, a ride whose fare no ride can have (its points would not fit), and a well-made
     * event of a ride that was never stored (anyone with a service token can send one) */
    const char *poison[] = {"{\"body\": {\"hello\": \"not a ride\", \"fare\": 10}}",
                            "{\"body\": {\"id\": \"p-1\", \"customer\": \"c\", \"from\": \"a\", "
                            "\"to\": \"b\", \"fare\": 1e300, \"distance\": 1}}",
                            "{\"body\": {\"id\": \"5a1d2c3e-0000-4000-8000-00000000f0f0\", "
                            "\"customer\": \"mallory\", \"from\": \"a\", \"to\": \"b\", "
                            "\"fare\": 1000000, \"distance\": 1}}"};
    enum { NPOISON = sizeof poison / sizeof *poison };
    char mid[NPOISON][IDS_UUID_LEN];
    for (int i = 0; i < NPOISON; i++) {
        harness_admin(&s, "POST", "/queues/customer-loyalty/messages", poison[i], &r);
        ck_assert_int_eq(r.status, 201);
        snprintf(mid[i], sizeof mid[i], "%s", json_str(r.json, "message_id"));
        response_cleanup(&r);
    }
    double t0 = harness_now_s();
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name = 'customer-loyalty-dlq' AND m.message_id IN ('%s', '%s', '%s')",
             mid[0], mid[1], mid[2]);
    ck_assert_msg(harness_wait_sql(sql, NPOISON, POISON_DEADLINE_S) == NPOISON,
                  "not dead-lettered after %d s", POISON_DEADLINE_S);
    double took = harness_now_s() - t0;
    ck_assert_msg(took >= 14, "dead-lettered after %.1f s, before five receives", took);
    for (int i = 0; i < NPOISON; i++)
        ck_assert_int_eq(
            harness_sqlf("SELECT receive_count FROM messages WHERE message_id = '%s'", mid[i]), 5);
    ck_assert_int_eq(in_queue("customer-loyalty", NULL), 0);
    ck_assert_int_eq(worker_metric(&s, "customer-loyalty", "failed"), 5 * NPOISON);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM loyalty_credits"), credits);
    ck_assert_int_eq(harness_sqlf("SELECT coalesce(sum(points), 0) FROM loyalty_accounts"),
                     accounts);
    harness_admin(&s, "POST", "/queues/customer-loyalty-dlq:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

/* An event that names a stored ride but says other things (another customer, a fare for a
 * million points): the service credits the ride as stored, not as the message says. */
START_TEST(forged_ride_events_count_as_the_stored_ride)
{
    consumer_fault_hook = NULL;
    struct harness_server s;
    harness_start(&s, loyalty_worker);
    const char *id = "5a1d2c3e-0000-4000-8000-00000000f00d";
    harness_sqlf("INSERT INTO rides (id, from_location, to_location, customer, duration, "
                 "distance, fare, correlation_id) VALUES ('%s', 'a', 'b', 'forged-victim', 60, "
                 "2, 12.5, 'forged') RETURNING 1",
                 id);
    char body[400];
    snprintf(body, sizeof body,
             "{\"body\": {\"id\": \"%s\", \"customer\": \"mallory\", \"from\": \"x\", "
             "\"to\": \"y\", \"fare\": 1000000, \"distance\": 1}}",
             id);
    struct response r;
    harness_admin(&s, "POST", "/queues/customer-loyalty/messages", body, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM loyalty_credits WHERE ride_id = '%s'", id);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    ck_assert_int_eq(harness_sqlf("SELECT points FROM loyalty_credits WHERE ride_id = '%s' AND "
                                  "customer = 'forged-victim'",
                                  id),
                     13);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM loyalty_accounts WHERE customer = "
                                  "'mallory'"),
                     0);
    harness_stop(&s);
}
END_TEST

START_TEST(rydes_worker_runs_as_a_separate_process)
{
    const char *binary = getenv("RYDES_BINARY");
    ck_assert_msg(binary && *binary, "RYDES_BINARY is set by meson");
    consumer_fault_hook = NULL;
    struct harness_server s;
    harness_start(&s, no_workers);
    char log[] = "/tmp/test_rides_worker_XXXXXX";
    int fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_APPEND, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log, O_WRONLY | O_APPEND, 0);
    /* another admin token in its settings (a stale shared file) is not the worker's to store:
     * it used to revoke the gateway's */
    char *argv[] = {(char *)binary,
                    "worker",
                    "customer-notification",
                    "--database-url",
                    (char *)harness_db_url(),
                    "--admin-token",
                    "rydes_stale_admin_token_0123456789",
                    NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, binary, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", binary, strerror(rc));

    char id[IDS_UUID_LEN], sql[200];
    make_ride(&s, "wp-1", "30", "3", id);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ride_notifications WHERE ride_id = '%s' AND customer = 'wp-1'",
             id);
    long long notified = harness_wait_sql(sql, 1, 10);
    /* only the notification service runs there */
    long long credited =
        harness_sqlf("SELECT count(*) FROM loyalty_credits WHERE ride_id = '%s'", id);
    kill(pid, SIGTERM);
    int status = 0;
    pid_t done = 0;
    for (double until = harness_now_s() + 10;
         (done = waitpid(pid, &status, WNOHANG)) == 0 && harness_now_s() < until;)
        harness_sleep_ms(50);
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    ck_assert_msg(notified == 1, "the worker did not notify (its log: %s)", log);
    ck_assert_int_eq(credited, 0);
    ck_assert_msg(done == pid, "the worker did not stop within 10 s of SIGTERM (log: %s)", log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the worker ended with status %d (log: %s)", status, log);
    unlink(log);
    ck_assert_int_eq(in_queue("customer-notification", "wp-1"), 0);
    ck_assert_int_eq(in_queue("customer-loyalty", "wp-1"), 1);
    harness_sleep_ms(1100); /* past the token cache */
    struct response r;
    harness_request(&s, "GET", "/tokens", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rides");
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_checked_fixture(api, setup, teardown);
    tcase_add_test(api, post_rides_answers_201_and_publishes_the_ride);
    tcase_add_test(api, the_alias_and_hyphenated_fields_work_the_same);
    tcase_add_test(api, invalid_rides_are_400_naming_the_field_and_change_nothing);
    tcase_add_test(api, a_retry_with_the_same_key_replays_the_first_ride);
    tcase_add_test(api, invalid_idempotency_keys_are_400);
    tcase_add_test(api, concurrent_requests_with_one_key_make_one_ride);
    tcase_add_test(api, get_ride_is_200_or_404);
    tcase_add_test(api, list_rides_of_a_customer_paginates_oldest_first);
    tcase_add_test(api, rides_need_the_app_role);
    suite_add_tcase(s, api);
    TCase *services = tcase_create("services");
    tcase_set_timeout(services, 90);
    tcase_add_test(services, extraordinary_filter_boundary);
    tcase_add_test(services, thresholds_are_settings_and_restarts_keep_the_topology);
    tcase_add_test(services, without_the_topic_nothing_is_stored_until_a_restart);
    tcase_add_test(services, at_least_once_effects_happen_exactly_once);
    tcase_add_test(services, two_servers_share_the_work);
    tcase_add_test(services, a_message_handled_elsewhere_is_not_handled_again);
    tcase_add_test(services, a_poison_message_is_dead_lettered_and_changes_nothing);
    tcase_add_test(services, forged_ride_events_count_as_the_stored_ride);
    tcase_add_test(services, rydes_worker_runs_as_a_separate_process);
    suite_add_tcase(s, services);
    return harness_run(s);
}
