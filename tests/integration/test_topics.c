/* Integration: topics over HTTP. Topic management (PUT creating and updating, the
 * representation, GET, the paginated list, DELETE taking its subscriptions and leaving its queues
 * alone, FIFO topics and bad names refused naming the field, the role matrix), subscriptions
 * (create, update, the sorted list with policy, scope and raw flag, delete, every invalid input
 * answered 400 naming the field, a deleted queue taking its subscriptions along) and publishing:
 * fan-out to envelope, raw and filtered subscriptions with each queue's received body checked,
 * the Wild Rydes numeric filter at its boundary, body-scope filters, the body stored once in
 * payloads, per-queue delays, validation, deleting, peeking, dead-lettering and redriving a
 * delivery with its body intact, a long poll woken by a publish, atomicity (an injected failure
 * on one target queue leaves every queue and payloads untouched) and 4 concurrent publishers
 * whose deliveries always appear in both queues together. The recipient list: raw delivery to
 * exactly the named queues with the body stored once, unknown and FIFO recipients refused with
 * nothing delivered, the recipients-array and message 400s, 100 recipients, the role matrix.
 * Batch publishing: valid entries fanned out each with its own message id, filters and stored
 * body, invalid ones reported by id with their fields and not delivered, the envelope 400s
 * (count, ids, shape) before the topic is looked up, unknown topics, the role matrix. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/ids.h"
#include "rydes/secret.h"
#include "rydes/topics.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* The first value of sql as an integer. */
static long long sql_int(const char *sql)
{
    char *v = harness_sql(harness_db_url(), sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    long long n = atoll(v);
    free(v);
    return n;
}

static int queue_id(const char *name)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT id FROM queues WHERE name = '%s'", name);
    return (int)sql_int(sql);
}

static long long max_payload_id(void)
{
    return sql_int("SELECT coalesce(max(id), 0) FROM payloads");
}

/* PUT /topics/{name} with body as admin; asserts the status. */
static void put_topic(const char *name, const char *body, long status)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s", name);
    struct response r;
    harness_admin(&srv, "PUT", path, body, &r);
    ck_assert_msg(r.status == status, "PUT %s %s: %ld %s", path, body ? body : "", r.status,
                  buf_str(&r.body));
    response_cleanup(&r);
}

/* PUT /topics/{topic}/subscriptions/{sub} with body as admin; asserts the status. */
static void put_sub(const char *topic, const char *sub, const char *body, long status)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/subscriptions/%s", topic, sub);
    struct response r;
    harness_admin(&srv, "PUT", path, body, &r);
    ck_assert_msg(r.status == status, "PUT %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

/* Publishes body (the JSON text of the whole request) to topic as admin; asserts 201 and
 * returns the deliveries. message_id (IDS_UUID_LEN), when given, receives the id. */
static int publish(const char *topic, const char *body, char *message_id)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/messages", topic);
    struct response r;
    harness_admin(&srv, "POST", path, body, &r);
    ck_assert_msg(r.status == 201, "publish %s: %ld %s", body, r.status, buf_str(&r.body));
    const char *id = json_str(r.json, "message_id");
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(strlen(id), IDS_UUID_LEN - 1);
    json_t *d = json_object_get(r.json, "deliveries");
    ck_assert_msg(json_is_integer(d), "deliveries missing: %s", buf_str(&r.body));
    int n = (int)json_integer_value(d);
    if (message_id)
        snprintf(message_id, IDS_UUID_LEN, "%s", id);
    response_cleanup(&r);
    return n;
}

/* Receives up to 10 messages of queue with the request body req (NULL: a 60 s lease). */
static json_t *receive(const char *queue, const char *req, struct response *r)
{
    char path[200];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    harness_admin(&srv, "POST", path,
                  req ? req : "{\"max_messages\": 10, \"visibility_timeout\": 60}", r);
    ck_assert_msg(r->status == 200, "receive %s: %ld %s", queue, r->status, buf_str(&r->body));
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert(json_is_array(msgs));
    return msgs;
}

/* Receives exactly one message of queue into r and returns it. */
static json_t *receive_one(const char *queue, struct response *r)
{
    json_t *msgs = receive(queue, NULL, r);
    ck_assert_msg(json_array_size(msgs) == 1, "%s: %zu messages: %s", queue, json_array_size(msgs),
                  buf_str(&r->body));
    return json_array_get(msgs, 0);
}

static void assert_timestamp(const char *ts)
{
    ck_assert_ptr_nonnull(ts);
    ck_assert_msg(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts);
}

/* The envelope a queue received as message m (a new reference), whether the body came as the
 * envelope object or as its JSON text. */
static json_t *envelope_of(json_t *m)
{
    json_t *b = json_object_get(m, "body");
    json_t *e = json_is_string(b) ? json_loads(json_string_value(b), 0, NULL) : json_incref(b);
    ck_assert_msg(json_is_object(e), "the delivery is not an envelope");
    return e;
}

/* Checks an envelope: message is the expected Message text, subject NULL means none, attrs is
 * the expected MessageAttributes. */
static void assert_envelope(json_t *e, const char *message_id, const char *topic,
                            const char *message, const char *subject, json_t *attrs)
{
    ck_assert_str_eq(json_str(e, "Type"), "Notification");
    ck_assert_ptr_nonnull(json_str(e, "MessageId"));
    ck_assert_str_eq(json_str(e, "MessageId"), message_id);
    ck_assert_ptr_nonnull(json_str(e, "Topic"));
    ck_assert_str_eq(json_str(e, "Topic"), topic);
    ck_assert_msg(json_is_string(json_object_get(e, "Message")), "Message is not a string");
    ck_assert_str_eq(json_str(e, "Message"), message);
    if (subject) {
        ck_assert_ptr_nonnull(json_str(e, "Subject"));
        ck_assert_str_eq(json_str(e, "Subject"), subject);
    } else {
        ck_assert_ptr_null(json_object_get(e, "Subject"));
    }
    assert_timestamp(json_str(e, "Timestamp"));
    json_t *ma = json_object_get(e, "MessageAttributes");
    ck_assert_msg(json_equal(ma, attrs), "MessageAttributes differ");
}

/* A string of n copies of c (caller frees). */
static char *filled(size_t n, char c)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* The JSON text of a json_t, which it consumes (caller frees). */
static char *dump(json_t *v)
{
    ck_assert_ptr_nonnull(v);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(put_creates_then_updates)
{
    struct response r;
    harness_admin(&srv, "PUT", "/topics/rides", NULL, &r);
    ck_assert_int_eq(r.status, 201);
    char loc[128];
    ck_assert(response_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, "/topics/rides");
    ck_assert_str_eq(json_str(r.json, "name"), "rides");
    json_t *attrs = json_object_get(r.json, "attributes");
    ck_assert(json_is_false(json_object_get(attrs, "fifo")));
    ck_assert(json_is_false(json_object_get(attrs, "content_based_dedup")));
    json_t *links = json_object_get(r.json, "links");
    ck_assert_str_eq(json_str(links, "self"), "/topics/rides");
    ck_assert_str_eq(json_str(links, "subscriptions"), "/topics/rides/subscriptions");
    ck_assert_str_eq(json_str(links, "messages"), "/topics/rides/messages");
    assert_timestamp(json_str(r.json, "created_at"));
    char created_at[32];
    snprintf(created_at, sizeof created_at, "%s", json_str(r.json, "created_at"));
    response_cleanup(&r);

    harness_admin(&srv, "PUT", "/topics/rides", "{\"fifo\": false, \"content_based_dedup\": false}",
                  &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(!response_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(json_str(r.json, "name"), "rides");
    ck_assert_str_eq(json_str(r.json, "created_at"), created_at);
    response_cleanup(&r);

    harness_admin(&srv, "GET", "/topics/rides", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "name"), "rides");
    ck_assert_str_eq(json_str(r.json, "created_at"), created_at);
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "self"), "/topics/rides");
    response_cleanup(&r);

    harness_admin(&srv, "GET", "/topics/no-such-topic", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

/* Timestamps whose fraction PostgreSQL prints short ("…:00.12+00") still get three digits. */
START_TEST(created_at_always_has_three_fraction_digits)
{
    harness_put_queue(&srv, "ts-q", NULL, 201);
    put_topic("ts-t", NULL, 201);
    put_sub("ts-t", "ts-s", "{\"queue\": \"ts-q\"}", 201);
    free(harness_sql(harness_db_url(), "UPDATE topics SET created_at = "
                                       "'2026-11-26 12:00:00.12+00' WHERE name = 'ts-t'"));
    free(harness_sql(harness_db_url(), "UPDATE subscriptions SET created_at = "
                                       "'2026-11-26 12:00:01.5+00' WHERE name = 'ts-s'"));
    /* both read before asserting, so a failure leaks no response */
    char topic_at[64] = "", sub_at[64] = "";
    struct response r;
    harness_admin(&srv, "GET", "/topics/ts-t", NULL, &r);
    long topic_status = r.status;
    snprintf(topic_at, sizeof topic_at, "%s",
             json_str(r.json, "created_at") ? json_str(r.json, "created_at") : "");
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/ts-t/subscriptions", NULL, &r);
    long sub_status = r.status;
    json_t *s = json_array_get(json_object_get(r.json, "subscriptions"), 0);
    snprintf(sub_at, sizeof sub_at, "%s",
             json_str(s, "created_at") ? json_str(s, "created_at") : "");
    response_cleanup(&r);
    ck_assert_int_eq(topic_status, 200);
    ck_assert_int_eq(sub_status, 200);
    ck_assert_msg(strcmp(topic_at, "2026-11-26T12:00:00.120Z") == 0 &&
                      strcmp(sub_at, "2026-11-26T12:00:01.500Z") == 0,
                  "topic created_at %s (want 2026-11-26T12:00:00.120Z), subscription created_at "
                  "%s (want 2026-11-26T12:00:01.500Z)",
                  topic_at, sub_at);
}
END_TEST

START_TEST(fifo_topics_and_bad_names_are_400)
{
    const struct {
        const char *path, *body, *field;
    } cases[] = {
        {"/topics/jobs.fifo", "{\"fifo\": false}", "fifo"},
        {"/topics/plain", "{\"fifo\": true}", "fifo"},
        {"/topics/plain", "{\"content_based_dedup\": true}", "content_based_dedup"},
        {"/topics/plain", "{\"fifo\": \"yes\"}", "fifo"},
        {"/topics/plain", "{\"colour\": \"red\"}", "colour"},
        {"/topics/plain", "[1]", "body"},
        {"/topics/a.b", NULL, "name"},
        {"/topics/.fifo", NULL, "name"},
        {"/topics/bad!name", NULL, "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "PUT", cases[i].path, cases[i].body, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i].field), "%s %s: %s", cases[i].path,
                      cases[i].body ? cases[i].body : "", buf_str(&r.body));
        response_cleanup(&r);
    }
    /* none of them was created */
    const char *gone[] = {"/topics/jobs.fifo", "/topics/plain", "/topics/a.b"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        struct response r;
        harness_admin(&srv, "GET", gone[i], NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM topics WHERE name IN ('jobs.fifo', 'plain')"),
                     0);
    struct response ok;
    harness_admin(&srv, "PUT", "/topics/jobs.fifo",
                  "{\"fifo\": true, \"content_based_dedup\": true}", &ok);
    ck_assert_int_eq(ok.status, 201);
    response_cleanup(&ok);

    /* 256 characters is the longest name */
    char *name = filled(257, 'n');
    char path[300];
    snprintf(path, sizeof path, "/topics/%s", name);
    struct response r;
    harness_admin(&srv, "PUT", path, NULL, &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "name"));
    response_cleanup(&r);
    name[256] = '\0';
    put_topic(name, NULL, 201);
    free(name);
}
END_TEST

START_TEST(list_paginates)
{
    const char *names[] = {"tl-e", "tl-a", "tl-d", "tl-c", "tl-b"};
    for (size_t i = 0; i < 5; i++)
        put_topic(names[i], NULL, 201);
    int total = (int)sql_int("SELECT count(*) FROM topics");
    ck_assert_int_ge(total, 5);

    int seen, ours, pages;
    harness_walk_names(&srv, "/topics", "topics", "tl-", &seen, &ours, &pages);
    ck_assert_int_eq(seen, total);
    ck_assert_int_eq(ours, 5);
    ck_assert_int_eq(pages, (total + 1) / 2);

    const char *bad[] = {"/topics?limit=0", "/topics?limit=1001", "/topics?limit=x",
                         "/topics?after=a.b"};
    const char *fields[] = {"limit", "limit", "limit", "after"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct response r;
        harness_admin(&srv, "GET", bad[i], NULL, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, fields[i]), "%s: %s", bad[i], buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(delete_takes_the_subscriptions_and_leaves_the_queues)
{
    harness_put_queue(&srv, "del-q1", NULL, 201);
    harness_put_queue(&srv, "del-q2", NULL, 201);
    put_topic("del-t", NULL, 201);
    put_sub("del-t", "one", "{\"queue\": \"del-q1\"}", 201);
    put_sub("del-t", "two", "{\"queue\": \"del-q2\", \"raw_delivery\": true}", 201);
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("del-t", "{\"body\": \"before the delete\"}", id), 2);
    long long tid = sql_int("SELECT id FROM topics WHERE name = 'del-t'");
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM subscriptions WHERE topic_id = %lld", tid);
    ck_assert_int_eq(sql_int(sql), 2);

    struct response r;
    harness_admin(&srv, "DELETE", "/topics/del-t", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/del-t", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", "/topics/del-t", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/del-t/subscriptions", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    ck_assert_int_eq(sql_int(sql), 0);

    /* the queues and what was delivered stay */
    harness_admin(&srv, "GET", "/queues/del-q1", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("del-q1"), 1);
    ck_assert_int_eq(harness_stored("del-q2"), 1);
    json_t *e = envelope_of(receive_one("del-q1", &r));
    json_t *none = json_object();
    assert_envelope(e, id, "del-t", "before the delete", NULL, none);
    json_decref(none);
    json_decref(e);
    response_cleanup(&r);
    ck_assert_str_eq(json_str(receive_one("del-q2", &r), "body"), "before the delete");
    response_cleanup(&r);

    /* the name can be used again, for a topic without subscriptions */
    put_topic("del-t", NULL, 201);
    harness_admin(&srv, "GET", "/topics/del-t/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "subscriptions")), 0);
    response_cleanup(&r);
    ck_assert_int_eq(publish("del-t", "{\"body\": \"x\"}", NULL), 0);
}
END_TEST

/* Creates a token of role through the API into secret (SECRET_TOKEN_LEN). */
static void create_token(const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"t-%s\"}", role, role);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_str(r.json, "token"));
    response_cleanup(&r);
}

/* The status of one request with token; 403s and 401s must be problems. */
static long status_of(const char *method, const char *path, const char *token, const char *body)
{
    struct response r;
    harness_request(&srv, method, path, token, body, NULL, NULL, &r);
    long st = r.status;
    if (st == 403 || st == 401)
        assert_problem(&r, st);
    response_cleanup(&r);
    return st;
}

START_TEST(role_matrix)
{
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN];
    create_token("app", app);
    create_token("service", service);
    harness_put_queue(&srv, "roles-q", NULL, 201);
    put_topic("roles-t", NULL, 201);
    put_sub("roles-t", "s1", "{\"queue\": \"roles-q\"}", 201);
    const char *sub = "/topics/roles-t/subscriptions/s1";
    const char *sub_body = "{\"queue\": \"roles-q\", \"raw_delivery\": true}";

    /* service: reading and publishing */
    ck_assert_int_eq(status_of("GET", "/topics", service, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/topics/roles-t", service, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/topics/roles-t/subscriptions", service, NULL), 200);
    ck_assert_int_eq(status_of("POST", "/topics/roles-t/messages", service, "{\"body\": \"s\"}"),
                     201);
    /* ... but no management */
    ck_assert_int_eq(status_of("PUT", "/topics/roles-t", service, "{}"), 403);
    ck_assert_int_eq(status_of("PUT", "/topics/svc-new", service, "{}"), 403);
    ck_assert_int_eq(status_of("DELETE", "/topics/roles-t", service, NULL), 403);
    ck_assert_int_eq(status_of("PUT", sub, service, sub_body), 403);
    ck_assert_int_eq(status_of("PUT", "/topics/roles-t/subscriptions/s2", service, sub_body), 403);
    ck_assert_int_eq(status_of("DELETE", sub, service, NULL), 403);

    /* app: none of it */
    ck_assert_int_eq(status_of("POST", "/topics/roles-t/messages", app, "{\"body\": \"a\"}"), 403);
    ck_assert_int_eq(status_of("GET", "/topics", app, NULL), 403);
    ck_assert_int_eq(status_of("GET", "/topics/roles-t", app, NULL), 403);
    ck_assert_int_eq(status_of("GET", "/topics/roles-t/subscriptions", app, NULL), 403);
    ck_assert_int_eq(status_of("PUT", "/topics/roles-t", app, "{}"), 403);
    ck_assert_int_eq(status_of("DELETE", sub, app, NULL), 403);

    /* no token */
    ck_assert_int_eq(status_of("GET", "/topics", NULL, NULL), 401);
    ck_assert_int_eq(status_of("POST", "/topics/roles-t/messages", NULL, "{\"body\": \"n\"}"), 401);

    /* the refused requests changed nothing */
    ck_assert_int_eq(harness_stored("roles-q"), 1);
    struct response r;
    harness_admin(&srv, "GET", "/topics/svc-new", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/roles-t/subscriptions", NULL, &r);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 1);
    ck_assert(json_is_false(json_object_get(json_array_get(subs, 0), "raw_delivery")));
    response_cleanup(&r);
}
END_TEST

/* A subscription whose queue is deleted between its lookup and its insert (a PUT racing a
 * DELETE /queues/{name}; a trigger plays the DELETE here) answers 409, not 500, and leaves
 * nothing behind. */
START_TEST(a_subscription_racing_its_queue_s_delete_is_a_conflict)
{
    harness_put_queue(&srv, "race-q", NULL, 201);
    put_topic("race-t", NULL, 201);
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION race_delete_queue() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN DELETE FROM queues WHERE id = NEW.queue_id; RETURN NEW; END $$; "
                     "CREATE TRIGGER race_delete_queue BEFORE INSERT ON subscriptions "
                     "FOR EACH ROW EXECUTE FUNCTION race_delete_queue()"));
    struct response r;
    harness_admin(&srv, "PUT", "/topics/race-t/subscriptions/s", "{\"queue\": \"race-q\"}", &r);
    free(harness_sql(harness_db_url(), "DROP TRIGGER race_delete_queue ON subscriptions; "
                                       "DROP FUNCTION race_delete_queue()"));
    assert_problem(&r, 409);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON "
                                  "t.id = s.topic_id WHERE t.name = 'race-t'"),
                     0);
}
END_TEST

START_TEST(subscriptions_put_update_list_delete)
{
    harness_put_queue(&srv, "subs-q1", NULL, 201);
    harness_put_queue(&srv, "subs-q2", NULL, 201);
    put_topic("subs-t", NULL, 201);

    struct response r;
    harness_admin(&srv, "PUT", "/topics/subs-t/subscriptions/zeta", "{\"queue\": \"subs-q1\"}", &r);
    ck_assert_int_eq(r.status, 201);
    char loc[160];
    ck_assert(response_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, "/topics/subs-t/subscriptions/zeta");
    ck_assert_str_eq(json_str(r.json, "name"), "zeta");
    ck_assert_str_eq(json_str(r.json, "queue"), "subs-q1");
    ck_assert(json_is_null(json_object_get(r.json, "filter_policy")));
    ck_assert_str_eq(json_str(r.json, "filter_policy_scope"), "attributes");
    ck_assert(json_is_false(json_object_get(r.json, "raw_delivery")));
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "self"),
                     "/topics/subs-t/subscriptions/zeta");
    assert_timestamp(json_str(r.json, "created_at"));
    char created_at[32];
    snprintf(created_at, sizeof created_at, "%s", json_str(r.json, "created_at"));
    response_cleanup(&r);

    /* switching to raw delivery is an update */
    harness_admin(&srv, "PUT", "/topics/subs-t/subscriptions/zeta",
                  "{\"queue\": \"subs-q1\", \"raw_delivery\": true}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(!response_header(&r, "Location", loc, sizeof loc));
    ck_assert(json_is_true(json_object_get(r.json, "raw_delivery")));
    ck_assert_str_eq(json_str(r.json, "created_at"), created_at);
    response_cleanup(&r);

    put_sub("subs-t", "alpha",
            "{\"queue\": \"subs-q2\", \"filter_policy\": {\"kind\": [\"ride\"]}, "
            "\"filter_policy_scope\": \"body\"}",
            201);
    put_sub("subs-t", "mid",
            "{\"queue\": \"subs-q2\", \"filter_policy\": {\"fare\": [{\"numeric\": [\">\", 10]}]}, "
            "\"filter_policy_scope\": \"attributes\"}",
            201);

    harness_admin(&srv, "GET", "/topics/subs-t/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 3);
    const char *order[] = {"alpha", "mid", "zeta"};
    for (size_t i = 0; i < 3; i++)
        ck_assert_str_eq(json_str(json_array_get(subs, i), "name"), order[i]);
    json_t *alpha = json_array_get(subs, 0), *mid = json_array_get(subs, 1),
           *zeta = json_array_get(subs, 2);
    json_t *want = json_pack("{s:[s]}", "kind", "ride");
    ck_assert(json_equal(json_object_get(alpha, "filter_policy"), want));
    json_decref(want);
    ck_assert_str_eq(json_str(alpha, "filter_policy_scope"), "body");
    ck_assert_str_eq(json_str(alpha, "queue"), "subs-q2");
    ck_assert(json_is_false(json_object_get(alpha, "raw_delivery")));
    want = json_loads("{\"fare\": [{\"numeric\": [\">\", 10]}]}", 0, NULL);
    ck_assert(json_equal(json_object_get(mid, "filter_policy"), want));
    json_decref(want);
    ck_assert_str_eq(json_str(mid, "filter_policy_scope"), "attributes");
    ck_assert(json_is_null(json_object_get(zeta, "filter_policy")));
    ck_assert(json_is_true(json_object_get(zeta, "raw_delivery")));
    ck_assert_str_eq(json_str(zeta, "queue"), "subs-q1");
    ck_assert_str_eq(json_str(json_object_get(zeta, "links"), "self"),
                     "/topics/subs-t/subscriptions/zeta");
    response_cleanup(&r);

    /* the three deliver: no policy, the body's kind, the fare attribute */
    ck_assert_int_eq(publish("subs-t",
                             "{\"body\": {\"kind\": \"ride\"}, \"attributes\": "
                             "{\"fare\": {\"type\": \"Number\", \"value\": \"11\"}}}",
                             NULL),
                     3);
    ck_assert_int_eq(harness_stored("subs-q1"), 1);
    ck_assert_int_eq(harness_stored("subs-q2"), 2);

    /* moving a subscription to another queue */
    harness_admin(&srv, "PUT", "/topics/subs-t/subscriptions/zeta", "{\"queue\": \"subs-q2\"}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "queue"), "subs-q2");
    ck_assert(json_is_false(json_object_get(r.json, "raw_delivery")));
    response_cleanup(&r);
    ck_assert_int_eq(publish("subs-t", "{\"body\": \"plain\"}", NULL), 1);
    ck_assert_int_eq(harness_stored("subs-q1"), 1);
    ck_assert_int_eq(harness_stored("subs-q2"), 3);

    harness_admin(&srv, "DELETE", "/topics/subs-t/subscriptions/zeta", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", "/topics/subs-t/subscriptions/zeta", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", "/topics/subs-t/subscriptions/a.b", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/subs-t/subscriptions", NULL, &r);
    subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 2);
    ck_assert_str_eq(json_str(json_array_get(subs, 0), "name"), "alpha");
    ck_assert_str_eq(json_str(json_array_get(subs, 1), "name"), "mid");
    response_cleanup(&r);
    ck_assert_int_eq(publish("subs-t", "{\"body\": \"plain\"}", NULL), 0);
}
END_TEST

/* GETs subscription sub of topic, takes out the read-only members, sets member null and PUTs
 * it back: asserts 200. Returns the subscription as GET shows it then (the caller decrefs). */
static json_t *put_back_with_null(const char *topic, const char *sub, const char *member)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/subscriptions/%s", topic, sub);
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *o = json_deep_copy(r.json);
    response_cleanup(&r);
    const char *read_only[] = {"name", "created_at", "links"};
    for (size_t i = 0; i < 3; i++)
        json_object_del(o, read_only[i]);
    json_object_set_new(o, member, json_null());
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    put_sub(topic, sub, body, 200);
    free(body);
    harness_admin(&srv, "GET", path, NULL, &r);
    o = json_deep_copy(r.json);
    response_cleanup(&r);
    return o;
}

/* What GET shows of a URL subscription can be PUT back once the read-only members are taken
 * out: its dead_letter_queue is null when it has none, and null reads as none (also to clear
 * one), as a null delivery_policy reads as the defaults. */
START_TEST(a_url_subscription_as_get_shows_it_can_be_put_back)
{
    harness_put_queue(&srv, "rt-dlq", NULL, 201);
    put_topic("rt-t", NULL, 201);
    put_sub("rt-t", "hook",
            "{\"url\": \"http://127.0.0.1:9/x\", \"dead_letter_queue\": \"rt-dlq\", "
            "\"delivery_policy\": {\"max_attempts\": 7}}",
            201);
    json_t *o = put_back_with_null("rt-t", "hook", "dead_letter_queue");
    ck_assert(json_is_null(json_object_get(o, "dead_letter_queue")));
    json_t *dp = json_object_get(o, "delivery_policy");
    ck_assert_int_eq(json_integer_value(json_object_get(dp, "max_attempts")), 7);
    json_decref(o);
    o = put_back_with_null("rt-t", "hook", "delivery_policy");
    ck_assert(json_is_null(json_object_get(o, "dead_letter_queue")));
    dp = json_object_get(o, "delivery_policy");
    ck_assert_int_eq(json_integer_value(json_object_get(dp, "max_attempts")),
                     MQ_PUSH_ATTEMPTS_DEFAULT);
    json_decref(o);
}
END_TEST

START_TEST(invalid_subscriptions_are_400)
{
    harness_put_queue(&srv, "sv-q", NULL, 201);
    harness_put_queue(&srv, "sv-q.fifo", NULL, 201);
    put_topic("sv-t", NULL, 201);
    const struct {
        const char *body, *field; /* field NULL: a 400 without a field to name */
    } cases[] = {
        {"{\"queue\": \"sv-missing\"}", NULL},
        {"{\"queue\": \"sv-q.fifo\"}", NULL},
        {"{\"url\": \"ftp://example.com/hook\"}", "url"},
        {"{\"url\": \"example.com/hook\"}", "url"},
        {"{\"url\": \"http://user:pw@example.com/hook\"}", "url"},
        {"{\"url\": \"http://example.com/hook#x\"}", "url"},
        {"{\"url\": \"http://example.com/a b\"}", "url"},
        {"{\"url\": \"http://\"}", "url"},
        {"{\"url\": \"HTTP://example.com/hook\"}", "url"},
        {"{\"url\": \"http:/example.com/hook\"}", "url"},
        {"{\"url\": \"http://example.com:0/hook\"}", "url"},
        {"{\"url\": \"http:///hook\"}", "url"},
        {"{\"url\": \"https:///example.com/hook\"}", "url"},
        {"{\"url\": \"http://example.com:000/hook\"}", "url"},
        {"{\"url\": \"http://example.com/\", \"dead_letter_queue\": \"sv-missing\"}", NULL},
        {"{\"url\": \"http://example.com/\", \"dead_letter_queue\": \"sv-q.fifo\"}", NULL},
        {"{\"url\": \"http://example.com/\", \"delivery_policy\": {\"max_attempts\": 0}}",
         "delivery_policy"},
        {"{\"url\": \"http://example.com/\", \"delivery_policy\": {\"min_delay_seconds\": 9, "
         "\"max_delay_seconds\": 3}}",
         "delivery_policy"},
        {"{\"url\": \"http://example.com/\", \"delivery_policy\": {\"tries\": 3}}",
         "delivery_policy.tries"},
        {"{\"url\": \"http://example.com/\", \"delivery_policy\": 3}", "delivery_policy"},
        {"{\"queue\": \"sv-q\", \"dead_letter_queue\": \"sv-q\"}", "dead_letter_queue"},
        {"{\"queue\": \"sv-q\", \"delivery_policy\": {}}", "delivery_policy"},
        {"{\"queue\": \"sv-q\", \"url\": \"http://example.com/hook\"}", "url"},
        {"{}", "queue"},
        {"{\"queue\": \"a.b\"}", "queue"},
        {"{\"queue\": 5}", "queue"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": {\"fare\": [{\"numeric\": [\">=\", \"x\"]}]}}",
         "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": {\"fare\": [{\"numeric\": [\"~\", 5]}]}}",
         "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": {\"fare\": [{\"numeric\": [\">\", 1e10]}]}}",
         "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": {\"fare\": [{\"bogus-operator\": 1}]}}",
         "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": {\"a\": [\"1\"], \"b\": [\"1\"], "
         "\"c\": [\"1\"], \"d\": [\"1\"], \"e\": [\"1\"], \"f\": [\"1\"]}}",
         "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": [\"fare\"]}", "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy\": \"fare\"}", "filter_policy"},
        {"{\"queue\": \"sv-q\", \"filter_policy_scope\": \"payload\"}", "filter_policy_scope"},
        {"{\"queue\": \"sv-q\", \"filter_policy_scope\": \"MessageBody\"}", "filter_policy_scope"},
        {"{\"queue\": \"sv-q\", \"filter_policy_scope\": 1}", "filter_policy_scope"},
        {"{\"queue\": \"sv-q\", \"raw_delivery\": \"yes\"}", "raw_delivery"},
        {"{\"queue\": \"sv-q\", \"colour\": \"red\"}", "colour"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "PUT", "/topics/sv-t/subscriptions/s", cases[i].body, &r);
        ck_assert_msg(r.status == 400, "%s: %ld", cases[i].body, r.status);
        assert_problem(&r, 400);
        if (cases[i].field)
            ck_assert_msg(problem_names_field(&r, cases[i].field), "%s: %s", cases[i].body,
                          buf_str(&r.body));
        response_cleanup(&r);
    }
    const char *no_object[] = {"[1]", "\"queue\""};
    for (size_t i = 0; i < 2; i++) {
        struct response r;
        harness_admin(&srv, "PUT", "/topics/sv-t/subscriptions/s", no_object[i], &r);
        assert_problem(&r, 400);
        response_cleanup(&r);
    }
    struct response r;
    harness_admin(&srv, "PUT", "/topics/sv-t/subscriptions/s", NULL, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    /* a policy over SNS's 256 KB, and one just within it */
    size_t n = 256 * 1024;
    char *big = malloc(n + 100);
    ck_assert_ptr_nonnull(big);
    for (int over = 1; over >= 0; over--) {
        int head = snprintf(big, 100, "{\"queue\": \"sv-q\", \"filter_policy\": {\"k\": [\"");
        size_t fill = n - 10 + (size_t)over; /* {"k":["…"]} is 10 bytes around the value */
        memset(big + head, 'v', fill);
        strcpy(big + head + fill, "\"]}}");
        harness_admin(&srv, "PUT", "/topics/sv-t/subscriptions/s", big, &r);
        if (over) {
            assert_problem(&r, 400);
            ck_assert_msg(problem_names_field(&r, "filter_policy"), "%s", buf_str(&r.body));
        } else {
            ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
        }
        response_cleanup(&r);
    }
    free(big);
    harness_admin(&srv, "DELETE", "/topics/sv-t/subscriptions/s", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);

    /* bad subscription names */
    char long_name[82];
    memset(long_name, 's', 81);
    long_name[81] = '\0';
    const char *bad_names[] = {"s.fifo", "a.b", long_name};
    for (size_t i = 0; i < 3; i++) {
        char path[200];
        snprintf(path, sizeof path, "/topics/sv-t/subscriptions/%s", bad_names[i]);
        harness_admin(&srv, "PUT", path, "{\"queue\": \"sv-q\"}", &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, "sub"), "%s: %s", path, buf_str(&r.body));
        response_cleanup(&r);
    }

    /* nothing was stored */
    harness_admin(&srv, "GET", "/topics/sv-t/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "subscriptions")), 0);
    response_cleanup(&r);

    /* the limits themselves are fine: 5 keys, a name of 80 */
    put_sub("sv-t", "five",
            "{\"queue\": \"sv-q\", \"filter_policy\": {\"a\": [\"1\"], \"b\": [\"1\"], "
            "\"c\": [\"1\"], \"d\": [\"1\"], \"e\": [\"1\"]}}",
            201);
    long_name[80] = '\0';
    put_sub("sv-t", long_name, "{\"queue\": \"sv-q\", \"filter_policy\": null}", 201);
}
END_TEST

START_TEST(unknown_topic_is_404)
{
    harness_put_queue(&srv, "u-q", NULL, 201);
    const char *topics[] = {"nope", "a.b", "nope.fifo"};
    for (size_t i = 0; i < 3; i++) {
        char path[200];
        struct response r;
        snprintf(path, sizeof path, "/topics/%s", topics[i]);
        harness_admin(&srv, "GET", path, NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        harness_admin(&srv, "DELETE", path, NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        snprintf(path, sizeof path, "/topics/%s/messages", topics[i]);
        harness_admin(&srv, "POST", path, "{\"body\": \"x\"}", &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        snprintf(path, sizeof path, "/topics/%s/subscriptions", topics[i]);
        harness_admin(&srv, "GET", path, NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        snprintf(path, sizeof path, "/topics/%s/subscriptions/s", topics[i]);
        harness_admin(&srv, "PUT", path, "{\"queue\": \"u-q\"}", &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        harness_admin(&srv, "DELETE", path, NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(deleting_a_queue_removes_its_subscriptions)
{
    harness_put_queue(&srv, "dq-a", NULL, 201);
    harness_put_queue(&srv, "dq-b", NULL, 201);
    put_topic("dq-t", NULL, 201);
    put_sub("dq-t", "a", "{\"queue\": \"dq-a\"}", 201);
    put_sub("dq-t", "b", "{\"queue\": \"dq-b\"}", 201);
    struct response r;
    harness_admin(&srv, "DELETE", "/queues/dq-a", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/dq-t/subscriptions", NULL, &r);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 1);
    ck_assert_str_eq(json_str(json_array_get(subs, 0), "name"), "b");
    response_cleanup(&r);
    ck_assert_int_eq(publish("dq-t", "{\"body\": \"x\"}", NULL), 1);
    ck_assert_int_eq(harness_stored("dq-b"), 1);
}
END_TEST

START_TEST(publish_fans_out_as_envelope_raw_and_filtered)
{
    harness_put_queue(&srv, "fan-env", NULL, 201);
    harness_put_queue(&srv, "fan-raw", NULL, 201);
    harness_put_queue(&srv, "fan-filt", NULL, 201);
    put_topic("fanout", NULL, 201);
    put_sub("fanout", "env", "{\"queue\": \"fan-env\"}", 201);
    put_sub("fanout", "raw", "{\"queue\": \"fan-raw\", \"raw_delivery\": true}", 201);
    put_sub("fanout", "filt",
            "{\"queue\": \"fan-filt\", \"raw_delivery\": true, \"filter_policy\": "
            "{\"fare\": [{\"numeric\": [\">=\", 50]}], "
            "\"distance\": [{\"numeric\": [\">=\", 20]}]}}",
            201);

    /* a string body with a subject, matching the filter */
    json_t *attrs = json_loads("{\"fare\": {\"type\": \"Number\", \"value\": \"50\"}, "
                               "\"distance\": {\"type\": \"Number\", \"value\": \"20\"}, "
                               "\"city\": {\"type\": \"String\", \"value\": \"Seattle\"}}",
                               0, NULL);
    char *req = dump(json_pack("{s:s, s:s, s:O}", "body", "hello rider", "subject",
                               "Ride completed", "attributes", attrs));
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("fanout", req, id), 3);
    free(req);
    json_t *env_attrs = json_loads("{\"fare\": {\"Type\": \"Number\", \"Value\": \"50\"}, "
                                   "\"distance\": {\"Type\": \"Number\", \"Value\": \"20\"}, "
                                   "\"city\": {\"Type\": \"String\", \"Value\": \"Seattle\"}}",
                                   0, NULL);
    struct response r;
    json_t *m = receive_one("fan-env", &r);
    json_t *e = envelope_of(m);
    assert_envelope(e, id, "fanout", "hello rider", "Ride completed", env_attrs);
    json_decref(e);
    json_decref(env_attrs);
    json_t *ma = json_object_get(m, "attributes");
    ck_assert_msg(ma == NULL || (json_is_object(ma) && json_object_size(ma) == 0),
                  "the envelope delivery carries attributes: %s", buf_str(&r.body));
    response_cleanup(&r);

    m = receive_one("fan-raw", &r);
    ck_assert(json_is_string(json_object_get(m, "body")));
    ck_assert_str_eq(json_str(m, "body"), "hello rider");
    ck_assert_msg(json_equal(json_object_get(m, "attributes"), attrs), "raw attributes: %s",
                  buf_str(&r.body));
    response_cleanup(&r);
    m = receive_one("fan-filt", &r);
    ck_assert_str_eq(json_str(m, "body"), "hello rider");
    response_cleanup(&r);
    json_decref(attrs);

    /* a JSON object body without a subject, not matching the filter */
    attrs = json_loads("{\"fare\": {\"type\": \"Number\", \"value\": \"12\"}}", 0, NULL);
    json_t *body =
        json_loads("{\"ride\": {\"id\": 7, \"fare\": 12.5, \"tags\": [\"a\", \"b\"]}}", 0, NULL);
    req = dump(json_pack("{s:O, s:O}", "body", body, "attributes", attrs));
    ck_assert_int_eq(publish("fanout", req, id), 2);
    free(req);

    m = receive_one("fan-env", &r);
    e = envelope_of(m);
    json_t *msg = json_object_get(e, "Message");
    ck_assert_msg(json_is_string(msg), "Message is not the JSON text of the body");
    json_t *parsed = json_loads(json_string_value(msg), 0, NULL);
    ck_assert_msg(json_equal(parsed, body), "Message: %s", json_string_value(msg));
    json_decref(parsed);
    env_attrs = json_loads("{\"fare\": {\"Type\": \"Number\", \"Value\": \"12\"}}", 0, NULL);
    assert_envelope(e, id, "fanout", json_string_value(msg), NULL, env_attrs);
    json_decref(env_attrs);
    json_decref(e);
    response_cleanup(&r);

    m = receive_one("fan-raw", &r);
    ck_assert_msg(json_is_object(json_object_get(m, "body")), "raw JSON body: %s",
                  buf_str(&r.body));
    ck_assert(json_equal(json_object_get(m, "body"), body));
    ck_assert(json_equal(json_object_get(m, "attributes"), attrs));
    response_cleanup(&r);
    json_t *none = receive("fan-filt", NULL, &r);
    ck_assert_int_eq(json_array_size(none), 0);
    response_cleanup(&r);
    json_decref(body);
    json_decref(attrs);
    ck_assert_int_eq(harness_stored("fan-filt"), 1);
}
END_TEST

/* Publishes body with fare and distance attributes to topic; returns the deliveries. */
static int publish_ride(const char *topic, const char *body, const char *fare, const char *distance)
{
    json_t *attrs = json_object();
    if (fare)
        json_object_set_new(attrs, "fare",
                            json_pack("{s:s, s:s}", "type", "Number", "value", fare));
    if (distance)
        json_object_set_new(attrs, "distance",
                            json_pack("{s:s, s:s}", "type", "Number", "value", distance));
    char *req = dump(json_pack("{s:s, s:o}", "body", body, "attributes", attrs));
    int n = publish(topic, req, NULL);
    free(req);
    return n;
}

START_TEST(wild_rydes_filter_boundary)
{
    harness_put_queue(&srv, "wr-big", NULL, 201);
    put_topic("wr-rides", NULL, 201);
    put_sub("wr-rides", "big",
            "{\"queue\": \"wr-big\", \"raw_delivery\": true, \"filter_policy\": "
            "{\"fare\": [{\"numeric\": [\">=\", 50]}], "
            "\"distance\": [{\"numeric\": [\">=\", 20]}]}}",
            201);
    ck_assert_int_eq(publish_ride("wr-rides", "50/20", "50", "20"), 1);
    ck_assert_int_eq(publish_ride("wr-rides", "49.99/20", "49.99", "20"), 0);
    ck_assert_int_eq(publish_ride("wr-rides", "50/19.99", "50", "19.99"), 0);
    ck_assert_int_eq(publish_ride("wr-rides", "50/-", "50", NULL), 0);
    ck_assert_int_eq(publish_ride("wr-rides", "-/-", NULL, NULL), 0);
    ck_assert_int_eq(publish_ride("wr-rides", "50.00001/20.5", "50.00001", "20.5"), 1);
    struct response r;
    json_t *msgs = receive("wr-big", NULL, &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "50/20");
    ck_assert_str_eq(json_str(json_array_get(msgs, 1), "body"), "50.00001/20.5");
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("wr-big"), 2);
}
END_TEST

/* A subscription's links.self (and Location) can be fetched: GET gives what PUT answered. */
START_TEST(a_subscription_reads_back_at_its_self_link)
{
    harness_put_queue(&srv, "self-q", NULL, 201);
    put_topic("self-t", NULL, 201);
    struct response put, got;
    harness_admin(&srv, "PUT", "/topics/self-t/subscriptions/s1",
                  "{\"queue\": \"self-q\", \"filter_policy\": {\"a\": [\"b\"]}}", &put);
    ck_assert_int_eq(put.status, 201);
    char location[200];
    ck_assert(response_header(&put, "Location", location, sizeof location));
    ck_assert_str_eq(json_str(json_object_get(put.json, "links"), "self"), location);
    harness_admin(&srv, "GET", location, NULL, &got);
    ck_assert_int_eq(got.status, 200);
    ck_assert(json_equal(put.json, got.json));
    response_cleanup(&put);
    response_cleanup(&got);
    harness_admin(&srv, "GET", "/topics/self-t/subscriptions/nope", NULL, &got);
    assert_problem(&got, 404);
    response_cleanup(&got);
    harness_admin(&srv, "GET", "/topics/no-such-topic/subscriptions/s1", NULL, &got);
    assert_problem(&got, 404);
    response_cleanup(&got);
}
END_TEST

/* The subscription list is paginated as the other lists are, in byte order of the names
 * (so the cursor and the order agree whatever the database's collation). */
START_TEST(subscriptions_are_listed_in_pages)
{
    harness_put_queue(&srv, "page-q", NULL, 201);
    put_topic("page-t", NULL, 201);
    const char *names[] = {"b", "Z", "a"};
    for (int i = 0; i < 3; i++)
        put_sub("page-t", names[i], "{\"queue\": \"page-q\"}", 201);
    struct response r;
    harness_admin(&srv, "GET", "/topics/page-t/subscriptions?limit=2", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 2);
    ck_assert_str_eq(json_str(json_array_get(subs, 0), "name"), "Z");
    ck_assert_str_eq(json_str(json_array_get(subs, 1), "name"), "a");
    ck_assert_str_eq(json_str(r.json, "next"), "a");
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/page-t/subscriptions?limit=2&after=a", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 1);
    ck_assert_str_eq(json_str(json_array_get(subs, 0), "name"), "b");
    ck_assert(json_is_null(json_object_get(r.json, "next")));
    response_cleanup(&r);
    const char *bad[] = {"/topics/page-t/subscriptions?limit=0",
                         "/topics/page-t/subscriptions?after=no%20such"};
    for (int i = 0; i < 2; i++) {
        harness_admin(&srv, "GET", bad[i], NULL, &r);
        assert_problem(&r, 400);
        response_cleanup(&r);
    }
}
END_TEST

/* A subscription naming a queue that does not exist is a validation error on that member. */
START_TEST(a_missing_queue_is_an_error_on_its_field)
{
    put_topic("mf-t", NULL, 201);
    const char *cases[][2] = {
        {"{\"queue\": \"mf-none\"}", "queue"},
        {"{\"url\": \"http://127.0.0.1:9/x\", \"dead_letter_queue\": \"mf-none\"}",
         "dead_letter_queue"},
    };
    for (int i = 0; i < 2; i++) {
        struct response r;
        harness_admin(&srv, "PUT", "/topics/mf-t/subscriptions/s", cases[i][0], &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i][1]), "%s", buf_str(&r.body));
        ck_assert_msg(strstr(buf_str(&r.body), "mf-none does not exist"), "%s", buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

/* A Number.Array attribute holds a JSON array, as SNS's filter documentation has it: taken at
 * publish (it used to be refused as "not a number") and matched element by element. */
START_TEST(number_arrays_are_matched_by_their_elements)
{
    harness_put_queue(&srv, "na-cheap", NULL, 201);
    put_topic("na-prices", NULL, 201);
    put_sub("na-prices", "cheap",
            "{\"queue\": \"na-cheap\", \"filter_policy\": "
            "{\"price\": [{\"numeric\": [\"<\", 60]}]}}",
            201);
    const char *prices[] = {"[100, 50]", "[100, 70]"};
    int want[] = {1, 0};
    for (int i = 0; i < 2; i++) {
        char *req = dump(json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", "x", "attributes", "price",
                                   "type", "Number.Array", "value", prices[i]));
        ck_assert_int_eq(publish("na-prices", req, NULL), want[i]);
        free(req);
    }
}
END_TEST

START_TEST(body_scope_filters_match_nested_json_bodies)
{
    harness_put_queue(&srv, "paid-q", NULL, 201);
    put_topic("orders", NULL, 201);
    put_sub("orders", "paid",
            "{\"queue\": \"paid-q\", \"raw_delivery\": true, \"filter_policy_scope\": \"body\", "
            "\"filter_policy\": {\"order\": {\"status\": [\"paid\"]}}}",
            201);
    const struct {
        const char *req;
        int deliveries;
    } cases[] = {
        {"{\"body\": {\"order\": {\"status\": \"paid\", \"id\": 1}}}", 1},
        {"{\"body\": {\"order\": {\"status\": \"open\", \"id\": 2}}}", 0},
        {"{\"body\": {\"status\": \"paid\", \"id\": 3}}", 0},
        {"{\"body\": \"paid\"}", 0},
        {"{\"body\": \"order status paid\", \"attributes\": "
         "{\"status\": {\"type\": \"String\", \"value\": \"paid\"}}}",
         0},
        {"{\"body\": [{\"order\": {\"status\": \"paid\"}}]}", 0},
        {"{\"body\": {\"order\": [{\"status\": \"paid\", \"id\": 4}]}}", 1},
        {"{\"body\": {\"order\": {\"status\": \"paid\", \"id\": 5}, \"x\": 1}}", 1},
        /* JSON text that jansson's defaults refuse: an integer past 64 bits, a \u0000 */
        {"{\"body\": \"{\\\"order\\\": {\\\"status\\\": \\\"paid\\\", \\\"id\\\": "
         "18446744073709551616}}\"}",
         1},
        {"{\"body\": \"{\\\"order\\\": {\\\"status\\\": \\\"paid\\\", \\\"note\\\": "
         "\\\"a\\\\u0000b\\\"}}\"}",
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(publish("orders", cases[i].req, NULL) == cases[i].deliveries, "%s",
                      cases[i].req);
    struct response r;
    json_t *msgs = receive("paid-q", NULL, &r);
    ck_assert_int_eq(json_array_size(msgs), 5);
    json_t *b = json_object_get(json_array_get(msgs, 0), "body");
    ck_assert(json_is_object(b));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(b, "order"), "id")), 1);
    response_cleanup(&r);
}
END_TEST

/* filter.h: an empty policy matches every message, whatever its body. */
START_TEST(empty_policy_matches_every_message)
{
    harness_put_queue(&srv, "ep-attrs", NULL, 201);
    harness_put_queue(&srv, "ep-body", NULL, 201);
    put_topic("ep-t", NULL, 201);
    put_sub("ep-t", "attrs", "{\"queue\": \"ep-attrs\", \"filter_policy\": {}}", 201);
    put_sub("ep-t", "body",
            "{\"queue\": \"ep-body\", \"filter_policy\": {}, \"filter_policy_scope\": \"body\"}",
            201);
    ck_assert_int_eq(publish("ep-t", "{\"body\": {\"a\": 1}}", NULL), 2);
    ck_assert_int_eq(publish("ep-t", "{\"body\": \"plain text\"}", NULL), 2);
    ck_assert_int_eq(harness_stored("ep-attrs"), 2);
    ck_assert_int_eq(harness_stored("ep-body"), 2);
}
END_TEST

START_TEST(topic_without_subscriptions_delivers_nothing)
{
    put_topic("lonely", NULL, 201);
    long long before = max_payload_id();
    long long messages = sql_int("SELECT count(*) FROM messages");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("lonely", "{\"body\": \"anyone?\", \"subject\": \"s\"}", id), 0);
    ck_assert_int_eq(max_payload_id(), before);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM messages"), messages);
    /* and every publish gets its own id */
    char id2[IDS_UUID_LEN];
    ck_assert_int_eq(publish("lonely", "{\"body\": \"anyone?\"}", id2), 0);
    ck_assert_str_ne(id, id2);
}
END_TEST

START_TEST(body_is_stored_once)
{
    harness_put_queue(&srv, "once-a", NULL, 201);
    harness_put_queue(&srv, "once-b", NULL, 201);
    harness_put_queue(&srv, "once-c", NULL, 201);
    put_topic("once", NULL, 201);
    put_sub("once", "a", "{\"queue\": \"once-a\"}", 201);
    put_sub("once", "b", "{\"queue\": \"once-b\"}", 201);
    put_sub("once", "c", "{\"queue\": \"once-c\", \"raw_delivery\": true}", 201);
    char *text = filled(20000, 'p');
    char *req = dump(json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", text, "attributes", "k", "type",
                               "String", "value", "v"));
    long long before = max_payload_id();
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("once", req, id), 3);
    free(req);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payloads WHERE id > %lld", before);
    long long grew = sql_int(sql);
    ck_assert_msg(grew >= 1 && grew <= 2, "payloads grew by %lld", grew);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE message_id = '%s'", id);
    ck_assert_int_eq(sql_int(sql), 3);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE message_id = '%s' "
             "AND payload_id IS NOT NULL AND body = ''",
             id);
    ck_assert_int_eq(sql_int(sql), 3);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT payload_id) FROM messages WHERE message_id = '%s'", id);
    ck_assert_int_eq(sql_int(sql), 2); /* the raw body and the envelope */

    /* and every queue reads it whole */
    const char *env_queues[] = {"once-a", "once-b"};
    json_t *env_attrs = json_pack("{s:{s:s, s:s}}", "k", "Type", "String", "Value", "v");
    for (int i = 0; i < 2; i++) {
        struct response r;
        json_t *e = envelope_of(receive_one(env_queues[i], &r));
        assert_envelope(e, id, "once", text, NULL, env_attrs);
        json_decref(e);
        response_cleanup(&r);
    }
    json_decref(env_attrs);
    struct response r;
    ck_assert_str_eq(json_str(receive_one("once-c", &r), "body"), text);
    response_cleanup(&r);
    free(text);
}
END_TEST

START_TEST(deliveries_respect_queue_delay)
{
    harness_put_queue(&srv, "slow-q", "{\"delay_seconds\": 2}", 201);
    harness_put_queue(&srv, "fast-q", NULL, 201);
    put_topic("delays", NULL, 201);
    put_sub("delays", "slow", "{\"queue\": \"slow-q\", \"raw_delivery\": true}", 201);
    put_sub("delays", "fast", "{\"queue\": \"fast-q\", \"raw_delivery\": true}", 201);
    ck_assert_int_eq(publish("delays", "{\"body\": \"later\"}", NULL), 2);
    struct response r;
    ck_assert_int_eq(json_array_size(receive("slow-q", NULL, &r)), 0);
    response_cleanup(&r);
    ck_assert_str_eq(json_str(receive_one("fast-q", &r), "body"), "later");
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("slow-q"), 1);
    harness_admin(&srv, "GET", "/queues/slow-q", NULL, &r);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r.json, "stats"), "delayed")), 1);
    response_cleanup(&r);
    harness_sleep_ms(2200);
    ck_assert_str_eq(json_str(receive_one("slow-q", &r), "body"), "later");
    response_cleanup(&r);
}
END_TEST

START_TEST(invalid_publishes_are_400)
{
    harness_put_queue(&srv, "pv-q", NULL, 201);
    put_topic("pv", NULL, 201);
    put_sub("pv", "s", "{\"queue\": \"pv-q\", \"raw_delivery\": true}", 201);
    char *subject101 = filled(101, 's');
    char *big = filled(262140, 'b');
    char *subject_req = dump(json_pack("{s:s, s:s}", "body", "x", "subject", subject101));
    char *big_req = dump(json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", big, "attributes", "ab",
                                   "type", "String", "value", "xyz"));
    const struct {
        const char *req, *field;
    } cases[] = {
        {"{}", "body"},
        {"{\"body\": \"\"}", "body"},
        {"{\"body\": null}", "body"},
        {"{\"body\": \"x\", \"attributes\": {\"n\": {\"type\": \"Number\", \"value\": \"abc\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"attributes\": {\"n\": {\"type\": \"Weird\", \"value\": \"1\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"attributes\": {\"n\": {\"type\": \"String\", \"value\": \"\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"attributes\": {\"AWS.n\": {\"type\": \"String\", \"value\": \"v\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"attributes\": [1]}", "attributes"},
        {subject_req, "subject"},
        {"{\"body\": \"x\", \"subject\": \"\"}", "subject"},
        {"{\"body\": \"x\", \"subject\": 5}", "subject"},
        {"{\"body\": \"x\", \"subject\": \"two\\nlines\"}", "subject"},
        {"{\"body\": \"x\", \"subject\": \"tab\\tbed\"}", "subject"},
        {"{\"body\": \"x\", \"subject\": \"del\\u007f\"}", "subject"},
        {"{\"body\": \"x\", \"foo\": 1}", "foo"},
        {big_req, "body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/topics/pv/messages", cases[i].req, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i].field), "%.200s: %s", cases[i].req,
                      buf_str(&r.body));
        response_cleanup(&r);
    }
    free(subject_req);
    free(big_req);
    const char *malformed[] = {"[1]", "\"x\"", "{\"body\": "};
    for (size_t i = 0; i < 3; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/topics/pv/messages", malformed[i], &r);
        assert_problem(&r, 400);
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("pv-q"), 0);

    /* the limits themselves pass: a subject of 100, body and attributes of 262144 bytes */
    subject101[100] = '\0';
    char *req = dump(json_pack("{s:s, s:s}", "body", "x", "subject", subject101));
    ck_assert_int_eq(publish("pv", req, NULL), 1);
    free(req);
    big[262133] = '\0'; /* + "ab" + "String" + "xyz" = 262144 */
    req = dump(json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", big, "attributes", "ab", "type",
                         "String", "value", "xyz"));
    ck_assert_int_eq(publish("pv", req, NULL), 1);
    free(req);
    ck_assert_int_eq(harness_stored("pv-q"), 2);
    free(subject101);
    free(big);
}
END_TEST

START_TEST(delivered_messages_can_be_deleted_peeked_and_taken)
{
    harness_put_queue(&srv, "ops-q", NULL, 201);
    put_topic("ops", NULL, 201);
    put_sub("ops", "s", "{\"queue\": \"ops-q\"}", 201);
    char ids[3][IDS_UUID_LEN];
    for (int i = 0; i < 3; i++) {
        char req[64];
        snprintf(req, sizeof req, "{\"body\": \"m%d\"}", i);
        ck_assert_int_eq(publish("ops", req, ids[i]), 1);
    }
    struct response r;
    json_t *m = json_array_get(
        receive("ops-q", "{\"max_messages\": 1, \"visibility_timeout\": 60}", &r), 0);
    ck_assert_ptr_nonnull(m);
    json_t *e = envelope_of(m);
    ck_assert_str_eq(json_str(e, "Message"), "m0");
    json_decref(e);
    char path[300];
    snprintf(path, sizeof path, "/queues/ops-q/messages/%s", json_str(m, "receipt"));
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", path, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("ops-q"), 2);

    harness_admin(&srv, "GET", "/queues/ops-q/messages:peek?limit=10", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *msgs = json_object_get(r.json, "messages");
    ck_assert_int_eq(json_array_size(msgs), 2);
    e = envelope_of(json_array_get(msgs, 0));
    ck_assert_str_eq(json_str(e, "Message"), "m1");
    ck_assert_str_eq(json_str(e, "MessageId"), ids[1]);
    json_decref(e);
    response_cleanup(&r);

    msgs = receive("ops-q", "{\"max_messages\": 10, \"delete\": true}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    for (size_t i = 0; i < 2; i++) {
        e = envelope_of(json_array_get(msgs, i));
        char want[8];
        snprintf(want, sizeof want, "m%zu", i + 1);
        ck_assert_str_eq(json_str(e, "Message"), want);
        json_decref(e);
    }
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("ops-q"), 0);
}
END_TEST

START_TEST(dead_letter_and_redrive_keep_the_body)
{
    harness_put_queue(&srv, "dl-dlq", NULL, 201);
    const char *dl = "{\"dead_letter\": {\"queue\": \"dl-dlq\", \"max_receive_count\": 1}}";
    harness_put_queue(&srv, "dl-env", dl, 201);
    harness_put_queue(&srv, "dl-raw", dl, 201);
    put_topic("dl", NULL, 201);
    put_sub("dl", "env", "{\"queue\": \"dl-env\"}", 201);
    put_sub("dl", "raw", "{\"queue\": \"dl-raw\", \"raw_delivery\": true}", 201);
    json_t *body = json_pack("{s:s, s:i}", "trip", "t-1", "fare", 42);
    json_t *attrs = json_pack("{s:{s:s, s:s}}", "city", "type", "String", "value", "Oslo");
    json_t *env_attrs = json_pack("{s:{s:s, s:s}}", "city", "Type", "String", "Value", "Oslo");
    char *body_text = json_dumps(body, JSON_COMPACT);
    char *req = dump(json_pack("{s:O, s:O, s:s}", "body", body, "attributes", attrs, "subject",
                               "dead or alive"));
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("dl", req, id), 2);
    free(req);

    const char *sources[] = {"dl-env", "dl-raw"};
    struct response r;
    for (int i = 0; i < 2; i++) {
        json_t *msgs = receive(sources[i], "{\"visibility_timeout\": 0}", &r);
        ck_assert_int_eq(json_array_size(msgs), 1);
        response_cleanup(&r);
        msgs = receive(sources[i], "{}", &r); /* would exceed max_receive_count: moved */
        ck_assert_int_eq(json_array_size(msgs), 0);
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("dl-dlq"), 2);

    /* in the dead-letter queue, both bodies are intact */
    json_t *msgs = receive("dl-dlq", "{\"max_messages\": 10, \"visibility_timeout\": 0}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    int envs = 0, raws = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *b = json_object_get(m, "body");
        if (json_object_get(b, "Type")) {
            json_t *e = envelope_of(m);
            assert_envelope(e, id, "dl", body_text, "dead or alive", env_attrs);
            json_decref(e);
            envs++;
        } else {
            ck_assert_msg(json_equal(b, body), "dead-lettered raw body: %s", buf_str(&r.body));
            ck_assert(json_equal(json_object_get(m, "attributes"), attrs));
            raws++;
        }
    }
    ck_assert_int_eq(envs, 1);
    ck_assert_int_eq(raws, 1);
    response_cleanup(&r);

    /* redriven back to where they came from, still intact */
    harness_admin(&srv, "POST", "/queues/dl-dlq:redrive", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 2);
    response_cleanup(&r);
    json_t *e = envelope_of(receive_one("dl-env", &r));
    assert_envelope(e, id, "dl", body_text, "dead or alive", env_attrs);
    json_decref(e);
    response_cleanup(&r);
    json_t *m = receive_one("dl-raw", &r);
    ck_assert(json_equal(json_object_get(m, "body"), body));
    ck_assert(json_equal(json_object_get(m, "attributes"), attrs));
    response_cleanup(&r);
    free(body_text);
    json_decref(body);
    json_decref(attrs);
    json_decref(env_attrs);
}
END_TEST

struct late_publish {
    int delay_ms;
    int64_t at_us, done_us; /* when the publish was sent, and when its answer came */
    long status;
};

static void *publish_later(void *arg)
{
    struct late_publish *p = arg;
    harness_sleep_ms(p->delay_ms);
    p->at_us = clock_mono_us();
    struct response r;
    harness_admin(&srv, "POST", "/topics/lp-t/messages", "{\"body\": \"wake up\"}", &r);
    p->done_us = clock_mono_us();
    p->status = r.status;
    response_cleanup(&r);
    return NULL;
}

START_TEST(publish_wakes_a_long_poll)
{
    harness_put_queue(&srv, "lp-q", NULL, 201);
    put_topic("lp-t", NULL, 201);
    put_sub("lp-t", "s", "{\"queue\": \"lp-q\", \"raw_delivery\": true}", 201);
    /* published after the hub's first visibility check (0.5 s), well before its next (1.5 s):
     * only the publish's NOTIFY can wake the poll in time */
    static struct late_publish p; /* the thread outlives a failed check's jump out of here */
    p = (struct late_publish){800, 0, 0, 0};
    pthread_t t;
    int64_t start = clock_mono_us();
    ck_assert_int_eq(pthread_create(&t, NULL, publish_later, &p), 0);
    struct response r;
    json_t *msgs = receive("lp-q", "{\"wait_seconds\": 5}", &r);
    int64_t end = clock_mono_us();
    pthread_join(t, NULL);
    ck_assert_int_eq(p.status, 201);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "wake up");
    response_cleanup(&r);
    ck_assert_int_ge(end - start, 700000);
    /* from the publish's answer, not its sending: a loaded machine may take a while to publish */
    ck_assert_msg(end - p.done_us < 500000,
                  "the long poll answered %lld us after the publish (sent %lld us before it)",
                  (long long)(end - p.done_us), (long long)(end - p.at_us));
}
END_TEST

START_TEST(publish_is_atomic)
{
    harness_put_queue(&srv, "at-a", NULL, 201);
    harness_put_queue(&srv, "at-b", NULL, 201);
    put_topic("atomic", NULL, 201);
    put_sub("atomic", "a", "{\"queue\": \"at-a\"}", 201);
    put_sub("atomic", "b", "{\"queue\": \"at-b\", \"raw_delivery\": true}", 201);
    ck_assert_int_eq(publish("atomic", "{\"body\": \"one\"}", NULL), 2);
    ck_assert_int_eq(harness_stored("at-a"), 1);
    ck_assert_int_eq(harness_stored("at-b"), 1);

    /* the insert into at-b fails: at-a must not keep its copy, nor payloads the body */
    char sql[600];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION topics_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ "
             "BEGIN IF NEW.queue_id = %d THEN RAISE EXCEPTION 'injected failure'; END IF; "
             "RETURN NEW; END $$",
             queue_id("at-b"));
    free(harness_sql(harness_db_url(), sql));
    free(harness_sql(harness_db_url(), "CREATE TRIGGER topics_test_fail BEFORE INSERT ON messages "
                                       "FOR EACH ROW EXECUTE FUNCTION topics_test_fail()"));
    long long before = max_payload_id();
    struct response r;
    char *two = filled(1100, 't'); /* over 1024 bytes: stored once in payloads (sql/018) */
    char *req = dump(json_pack("{s:s}", "body", two));
    harness_admin(&srv, "POST", "/topics/atomic/messages", req, &r);
    free(req);
    free(two);
    long status = r.status;
    if (status >= 400)
        assert_problem(&r, status);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(), "DROP TRIGGER topics_test_fail ON messages"));
    free(harness_sql(harness_db_url(), "DROP FUNCTION topics_test_fail()"));
    ck_assert_int_ge(status, 500);
    ck_assert_int_eq(harness_stored("at-a"), 1);
    ck_assert_int_eq(harness_stored("at-b"), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payloads WHERE id > %lld", before);
    ck_assert_int_eq(sql_int(sql), 0);

    ck_assert_int_eq(publish("atomic", "{\"body\": \"three\"}", NULL), 2);
    ck_assert_int_eq(harness_stored("at-a"), 2);
    ck_assert_int_eq(harness_stored("at-b"), 2);
}
END_TEST

#define PUBLISHERS    4
#define PER_PUBLISHER 100

struct publisher {
    int n;
    int failures;
};

static void *publish_many(void *arg)
{
    struct publisher *p = arg;
    for (int i = 0; i < PER_PUBLISHER; i++) {
        char req[64];
        snprintf(req, sizeof req, "{\"body\": \"p%d-%d\"}", p->n, i);
        struct response r;
        harness_admin(&srv, "POST", "/topics/conc/messages", req, &r);
        if (r.status != 201 || json_integer_value(json_object_get(r.json, "deliveries")) != 2)
            p->failures++;
        response_cleanup(&r);
    }
    return NULL;
}

/* Watches both queues in single snapshots while the publishers run: a publish is all or
 * nothing, so the two counts are always equal. No ck_assert off the main thread. */
struct watcher {
    int a, b;
    _Atomic bool stop;
    int samples, mismatches, errors;
};

static void *watch(void *arg)
{
    struct watcher *w = arg;
    PGconn *pg = PQconnectdb(harness_db_url());
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM messages WHERE queue_id = %d), "
             "(SELECT count(*) FROM messages WHERE queue_id = %d)",
             w->a, w->b);
    while (PQstatus(pg) == CONNECTION_OK && !w->stop) {
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            w->samples++;
            w->mismatches += strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)) != 0;
        } else {
            w->errors++;
        }
        PQclear(r);
        harness_sleep_ms(5);
    }
    if (PQstatus(pg) != CONNECTION_OK)
        w->errors++;
    PQfinish(pg);
    return NULL;
}

START_TEST(concurrent_publishers_deliver_everything_to_both_queues)
{
    harness_put_queue(&srv, "conc-a", NULL, 201);
    harness_put_queue(&srv, "conc-b", NULL, 201);
    put_topic("conc", NULL, 201);
    put_sub("conc", "a", "{\"queue\": \"conc-a\"}", 201);
    put_sub("conc", "b", "{\"queue\": \"conc-b\", \"raw_delivery\": true}", 201);
    static struct watcher w; /* the threads outlive a failed check's jump out of here */
    static struct publisher p[PUBLISHERS];
    w = (struct watcher){.a = queue_id("conc-a"), .b = queue_id("conc-b")};
    pthread_t wt, t[PUBLISHERS];
    ck_assert_int_eq(pthread_create(&wt, NULL, watch, &w), 0);
    for (int i = 0; i < PUBLISHERS; i++) {
        p[i] = (struct publisher){.n = i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, publish_many, &p[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        pthread_join(t[i], NULL);
        failures += p[i].failures;
    }
    w.stop = true;
    pthread_join(wt, NULL);
    ck_assert_int_eq(failures, 0);
    ck_assert_int_eq(harness_stored("conc-a"), PUBLISHERS * PER_PUBLISHER);
    ck_assert_int_eq(harness_stored("conc-b"), PUBLISHERS * PER_PUBLISHER);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT message_id FROM messages WHERE queue_id IN (%d, %d) "
             "GROUP BY message_id HAVING count(*) = 2) x",
             w.a, w.b);
    ck_assert_int_eq(sql_int(sql), PUBLISHERS * PER_PUBLISHER);
    ck_assert_int_eq(w.errors, 0);
    ck_assert_int_gt(w.samples, 0);
    ck_assert_msg(w.mismatches == 0, "%d of %d snapshots saw a publish in one queue only",
                  w.mismatches, w.samples);
}
END_TEST

/* POST /recipient-list with body (the JSON text of the whole request) as admin into r. */
static void send_to_list(const char *body, struct response *r)
{
    harness_admin(&srv, "POST", "/recipient-list", body, r);
}

/* Sends body to the recipient list; asserts 201 and returns the deliveries. message_id
 * (IDS_UUID_LEN), when given, receives the id. */
static int send_to_list_ok(const char *body, char *message_id)
{
    struct response r;
    send_to_list(body, &r);
    long status = r.status;
    const char *id = json_str(r.json, "message_id");
    json_t *d = json_object_get(r.json, "deliveries");
    bool ok = status == 201 && id && strlen(id) == IDS_UUID_LEN - 1 && json_is_integer(d);
    int n = ok ? (int)json_integer_value(d) : -1;
    if (ok && message_id)
        snprintf(message_id, IDS_UUID_LEN, "%s", id);
    char text[300];
    snprintf(text, sizeof text, "%.299s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_msg(ok, "recipient list %.200s: %ld %s", body, status, text);
    return n;
}

/* Sends body to the recipient list, expects a 400 problem and returns its detail (caller
 * frees); field, when not NULL, must be named among its errors. */
static char *send_to_list_400(const char *body, const char *field)
{
    struct response r;
    send_to_list(body, &r);
    assert_problem(&r, 400);
    bool named = !field || (problem_names_field(&r, field) &&
                            strcmp(json_str(r.json, "type"), "urn:rydes:problem:validation") == 0);
    char *detail = strdup(json_str(r.json, "detail"));
    char text[300];
    snprintf(text, sizeof text, "%.299s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_ptr_nonnull(detail);
    ck_assert_msg(named, "%.200s: %s is no validation problem naming %s", body, text, field);
    return detail;
}

static long long payloads_after(long long before)
{
    char sql[120];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payloads WHERE id > %lld", before);
    return sql_int(sql);
}

START_TEST(recipient_list_delivers_raw_to_exactly_its_queues)
{
    harness_put_queue(&srv, "rl-a", NULL, 201);
    harness_put_queue(&srv, "rl-b", NULL, 201);
    harness_put_queue(&srv, "rl-other", NULL, 201);
    json_t *attrs = json_loads("{\"fare\": {\"type\": \"Number\", \"value\": \"12.5\"}, "
                               "\"city\": {\"type\": \"String\", \"value\": \"Seattle\"}}",
                               0, NULL);
    json_t *body = json_loads("{\"ride\": {\"id\": 7, \"tags\": [\"a\", \"b\"]}}", 0, NULL);
    char *req = dump(json_pack("{s:[s, s], s:O, s:O, s:s}", "recipients", "rl-a", "rl-b", "body",
                               body, "attributes", attrs, "subject", "Ride completed"));
    long long before = max_payload_id();
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(send_to_list_ok(req, id), 2);
    free(req);

    /* a small body is written into each message: no payload row (sql/018) */
    ck_assert_int_eq(payloads_after(before), 0);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE message_id = '%s' "
             "AND payload_id IS NULL AND body <> ''",
             id);
    ck_assert_int_eq(sql_int(sql), 2);

    /* each queue receives the bare body (as JSON) and the attributes, no envelope */
    const char *queues[] = {"rl-a", "rl-b"};
    for (int i = 0; i < 2; i++) {
        struct response r;
        json_t *m = receive_one(queues[i], &r);
        bool same_body = json_equal(json_object_get(m, "body"), body);
        bool same_attrs = json_equal(json_object_get(m, "attributes"), attrs);
        const char *mid = json_str(m, "message_id");
        bool same_id = mid && strcmp(mid, id) == 0;
        char text[400];
        snprintf(text, sizeof text, "%.399s", buf_str(&r.body));
        response_cleanup(&r);
        ck_assert_msg(same_body && same_attrs && same_id, "%s received %s (message_id %s)",
                      queues[i], text, id);
    }
    ck_assert_int_eq(harness_stored("rl-other"), 0);
    json_decref(body);
    json_decref(attrs);

    /* a string body without attributes arrives as that string, without attributes */
    ck_assert_int_eq(send_to_list_ok("{\"recipients\": [\"rl-b\"], \"body\": \"hello rider\"}", id),
                     1);
    struct response r;
    json_t *m = receive_one("rl-b", &r);
    bool is_text = json_is_string(json_object_get(m, "body")) &&
                   strcmp(json_str(m, "body"), "hello rider") == 0;
    json_t *ma = json_object_get(m, "attributes");
    bool no_attrs = ma == NULL || json_is_null(ma) || json_object_size(ma) == 0;
    char text[400];
    snprintf(text, sizeof text, "%.399s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_msg(is_text && no_attrs, "rl-b received %s", text);
    ck_assert_int_eq(harness_stored("rl-a"), 1);
    ck_assert_int_eq(harness_stored("rl-other"), 0);
}
END_TEST

/* A body over 1024 bytes is stored once in payloads, shared by every queue's message, and each
 * queue reads it whole. */
START_TEST(recipient_list_stores_a_large_body_once)
{
    harness_put_queue(&srv, "rlb-a", NULL, 201);
    harness_put_queue(&srv, "rlb-b", NULL, 201);
    char *text = filled(1025, 'q');
    char *req = dump(json_pack("{s:[s, s], s:s}", "recipients", "rlb-a", "rlb-b", "body", text));
    long long before = max_payload_id();
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(send_to_list_ok(req, id), 2);
    free(req);
    ck_assert_int_eq(payloads_after(before), 1);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT payload_id) FROM messages WHERE message_id = '%s' "
             "AND payload_id IS NOT NULL AND body = ''",
             id);
    ck_assert_int_eq(sql_int(sql), 1);
    const char *queues[] = {"rlb-a", "rlb-b"};
    for (int i = 0; i < 2; i++) {
        struct response r;
        json_t *m = receive_one(queues[i], &r);
        const char *got = json_str(m, "body");
        bool whole = got && strcmp(got, text) == 0;
        response_cleanup(&r);
        ck_assert_msg(whole, "%s did not receive the body whole", queues[i]);
    }
    free(text);
}
END_TEST

START_TEST(recipient_list_with_an_unknown_queue_delivers_nothing)
{
    harness_put_queue(&srv, "rlu-a", NULL, 201);
    harness_put_queue(&srv, "rlu-b", NULL, 201);
    long long before = max_payload_id();
    char *detail = send_to_list_400(
        "{\"recipients\": [\"rlu-a\", \"rlu-nope\", \"rlu-b\"], \"body\": \"x\"}", "recipients[1]");
    bool exact =
        strcmp(detail, "recipients refused, nothing delivered: rlu-nope (no such queue)") == 0;
    char copy[300];
    snprintf(copy, sizeof copy, "%.299s", detail);
    free(detail);
    ck_assert_msg(exact, "detail: %s", copy);
    ck_assert_int_eq(harness_stored("rlu-a"), 0);
    ck_assert_int_eq(harness_stored("rlu-b"), 0);
    ck_assert_int_eq(payloads_after(before), 0);

    /* every refused queue is named, in the order given */
    detail = send_to_list_400(
        "{\"recipients\": [\"rlu-x\", \"rlu-a\", \"rlu-y\"], \"body\": \"x\"}", "recipients[2]");
    free(send_to_list_400("{\"recipients\": [\"rlu-x\", \"rlu-a\", \"rlu-y\"], \"body\": \"x\"}",
                          "recipients[0]"));
    exact = strcmp(detail, "recipients refused, nothing delivered: rlu-x (no such queue), "
                           "rlu-y (no such queue)") == 0;
    snprintf(copy, sizeof copy, "%.299s", detail);
    free(detail);
    ck_assert_msg(exact, "detail: %s", copy);
    ck_assert_int_eq(harness_stored("rlu-a"), 0);

    /* and the same list without the unknown queue goes through */
    ck_assert_int_eq(
        send_to_list_ok("{\"recipients\": [\"rlu-a\", \"rlu-b\"], \"body\": \"x\"}", NULL), 2);
    ck_assert_int_eq(harness_stored("rlu-a"), 1);
    ck_assert_int_eq(harness_stored("rlu-b"), 1);

    /* queues named like SQL's NULL are queues like any other */
    harness_put_queue(&srv, "null", NULL, 201);
    harness_put_queue(&srv, "NULL", NULL, 201);
    ck_assert_int_eq(
        send_to_list_ok("{\"recipients\": [\"null\", \"NULL\"], \"body\": \"x\"}", NULL), 2);
    ck_assert_int_eq(harness_stored("null"), 1);
    ck_assert_int_eq(harness_stored("NULL"), 1);
}
END_TEST

START_TEST(recipient_list_fifo_queues_need_a_group)
{
    harness_put_queue(&srv, "rlf-q", NULL, 201);
    harness_put_queue(&srv, "rlf-c.fifo", NULL, 201);
    char *detail = send_to_list_400(
        "{\"recipients\": [\"rlf-q\", \"rlf-c.fifo\"], \"body\": \"x\"}", "recipients[1]");
    bool exact = strcmp(detail, "recipients refused, nothing delivered: rlf-c.fifo (a FIFO "
                                "queue: group_id is required)") == 0;
    char copy[300];
    snprintf(copy, sizeof copy, "%.299s", detail);
    free(detail);
    ck_assert_msg(exact, "detail: %s", copy);

    detail = send_to_list_400(
        "{\"recipients\": [\"rlf-nope\", \"rlf-c.fifo\", \"rlf-q\"], \"body\": \"x\"}",
        "recipients[0]");
    exact = strcmp(detail, "recipients refused, nothing delivered: rlf-nope (no such queue), "
                           "rlf-c.fifo (a FIFO queue: group_id is required)") == 0;
    snprintf(copy, sizeof copy, "%.299s", detail);
    free(detail);
    ck_assert_msg(exact, "detail: %s", copy);
    ck_assert_int_eq(harness_stored("rlf-q"), 0);
    ck_assert_int_eq(harness_stored("rlf-c.fifo"), 0);

    /* with a group both get it; the FIFO queue's copy is in that group */
    ck_assert_int_eq(send_to_list_ok("{\"recipients\": [\"rlf-q\", \"rlf-c.fifo\"], \"body\": "
                                     "\"x\", \"group_id\": \"g1\"}",
                                     NULL),
                     2);
    ck_assert_int_eq(harness_stored("rlf-q"), 1);
    ck_assert_int_eq(harness_stored("rlf-c.fifo"), 1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                             "WHERE q.name = 'rlf-c.fifo' AND m.group_id = 'g1'"),
                     1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM message_groups g JOIN queues q ON "
                             "q.id = g.queue_id WHERE q.name = 'rlf-c.fifo' AND g.group_id = 'g1'"),
                     1);
}
END_TEST

/* The JSON text of a request to n queues named prefix-0 .. prefix-(n-1) (caller frees). */
static char *list_of(const char *prefix, int n)
{
    json_t *names = json_array();
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%d", prefix, i);
        json_array_append_new(names, json_string(name));
    }
    return dump(json_pack("{s:o, s:s}", "recipients", names, "body", "x"));
}

START_TEST(invalid_recipient_lists_are_400)
{
    harness_put_queue(&srv, "rlv-q", NULL, 201);
    char *too_many = list_of("rlv-q", 101);
    char *long_name = filled(81, 'n');
    char *long_req = dump(json_pack("{s:[s], s:s}", "recipients", long_name, "body", "x"));
    const struct {
        const char *req, *field;
    } cases[] = {
        {"{\"body\": \"x\"}", "recipients"},
        {"{\"recipients\": null, \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": \"rlv-q\", \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": {\"rlv-q\": true}, \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": [], \"body\": \"x\"}", "recipients"},
        {too_many, "recipients"},
        {"{\"recipients\": [5], \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": [\"rlv-q\", null], \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": [\"a.b\"], \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": [\"\"], \"body\": \"x\"}", "recipients"},
        {"{\"recipients\": [\".fifo\"], \"body\": \"x\"}", "recipients"},
        {long_req, "recipients"},
        {"{\"recipients\": [\"rlv-q\", \"rlv-q\"], \"body\": \"x\"}", "recipients"},
        /* the message members, as for a publish */
        {"{\"recipients\": [\"rlv-q\"]}", "body"},
        {"{\"recipients\": [\"rlv-q\"], \"body\": \"\"}", "body"},
        {"{\"recipients\": [\"rlv-q\"], \"body\": \"x\", \"subject\": \"\"}", "subject"},
        {"{\"recipients\": [\"rlv-q\"], \"body\": \"x\", \"attributes\": [1]}", "attributes"},
        {"{\"recipients\": [\"rlv-q\"], \"body\": \"x\", \"group_id\": \"g\"}", "group_id"},
        {"{\"recipients\": [\"rlv-q\"], \"body\": \"x\", \"dedup_id\": \"d\"}", "dedup_id"},
        /* both wrong: both named */
        {"{\"recipients\": [], \"body\": \"\"}", "body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        free(send_to_list_400(cases[i].req, cases[i].field));
    free(send_to_list_400("{\"recipients\": [], \"body\": \"\"}", "recipients"));
    free(too_many);
    free(long_req);
    free(long_name);
    const char *malformed[] = {"[\"rlv-q\"]", "\"x\"", "{\"recipients\": "};
    for (size_t i = 0; i < 3; i++)
        free(send_to_list_400(malformed[i], NULL));
    ck_assert_int_eq(harness_stored("rlv-q"), 0);
}
END_TEST

/* 100 recipients pass validation (and are all delivered to); 101 are refused before. */
START_TEST(recipient_list_takes_up_to_100_queues)
{
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "rlm-%d", i);
        harness_put_queue(&srv, name, NULL, 201);
    }
    char *req = list_of("rlm", 100);
    long long before = max_payload_id();
    ck_assert_int_eq(send_to_list_ok(req, NULL), 100);
    free(req);
    ck_assert_int_eq(payloads_after(before), 0); /* a small body: in each message (sql/018) */
    ck_assert_int_eq(sql_int("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                             "WHERE q.name LIKE 'rlm-%'"),
                     100);

    /* 100 valid names of which none exists: refused by the lookup, not the validation */
    req = list_of("rlm-none", 100);
    char *detail = send_to_list_400(req, "recipients[0]");
    free(req);
    bool prefix = strncmp(detail,
                          "recipients refused, nothing delivered: rlm-none-0 (no such "
                          "queue), rlm-none-1 (no such queue)",
                          90) == 0;
    char copy[200];
    snprintf(copy, sizeof copy, "%.199s", detail);
    free(detail);
    ck_assert_msg(prefix, "detail: %s", copy);
}
END_TEST

START_TEST(recipient_list_role_matrix)
{
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN];
    create_token("app", app);
    create_token("service", service);
    harness_put_queue(&srv, "rlr-q", NULL, 201);
    const char *req = "{\"recipients\": [\"rlr-q\"], \"body\": \"r\"}";
    ck_assert_int_eq(status_of("POST", "/recipient-list", service, req), 201);
    ck_assert_int_eq(status_of("POST", "/recipient-list", app, req), 403);
    ck_assert_int_eq(status_of("POST", "/recipient-list", NULL, req), 401);
    ck_assert_int_eq(status_of("POST", "/recipient-list", HARNESS_ADMIN_TOKEN, req), 201);
    ck_assert_int_eq(status_of("GET", "/recipient-list", service, NULL), 405);
    ck_assert_int_eq(harness_stored("rlr-q"), 2);
}
END_TEST

/* POST /topics/{topic}/messages:batch with body (the JSON text of the whole request) as admin. */
static void publish_batch(const char *topic, const char *body, struct response *r)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/messages:batch", topic);
    harness_admin(&srv, "POST", path, body, r);
}

/* The object of list whose string member key is value, or NULL. */
static json_t *find_by(json_t *list, const char *key, const char *value)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *v = json_str(json_array_get(list, i), key);
        if (v && strcmp(v, value) == 0)
            return json_array_get(list, i);
    }
    return NULL;
}

/* Does the errors list of a failed batch entry name field? */
static bool entry_names_field(json_t *failure, const char *field)
{
    return find_by(json_object_get(failure, "errors"), "field", field) != NULL;
}

START_TEST(publish_batch_publishes_the_valid_entries_and_reports_the_invalid)
{
    harness_put_queue(&srv, "pb-all", NULL, 201);
    harness_put_queue(&srv, "pb-big", NULL, 201);
    harness_put_queue(&srv, "pb-env", NULL, 201);
    put_topic("pb-t", NULL, 201);
    put_sub("pb-t", "all", "{\"queue\": \"pb-all\", \"raw_delivery\": true}", 201);
    put_sub("pb-t", "big",
            "{\"queue\": \"pb-big\", \"raw_delivery\": true, \"filter_policy\": "
            "{\"fare\": [{\"numeric\": [\">=\", 50]}]}}",
            201);
    put_sub("pb-t", "env", "{\"queue\": \"pb-env\"}", 201);
    /* a matches the filter, b would too but is invalid (empty subject, unknown member), c does
     * not match it */
    const char *req =
        "{\"entries\": ["
        "{\"id\": \"a\", \"body\": \"ride a\", \"subject\": \"Ride a\", "
        "\"attributes\": {\"fare\": {\"type\": \"Number\", \"value\": \"62.5\"}}}, "
        "{\"id\": \"b\", \"body\": \"ride b\", \"subject\": \"\", \"delay_seconds\": 5, "
        "\"attributes\": {\"fare\": {\"type\": \"Number\", \"value\": \"99\"}}}, "
        "{\"id\": \"c\", \"body\": {\"ride\": \"c\"}, "
        "\"attributes\": {\"fare\": {\"type\": \"Number\", \"value\": \"12\"}}}]}";
    long long before = max_payload_id();
    struct response r;
    publish_batch("pb-t", req, &r);
    ck_assert_msg(r.status == 200, "batch: %ld %s", r.status, buf_str(&r.body));
    json_t *ok = json_object_get(r.json, "successful");
    json_t *failed = json_object_get(r.json, "failed");
    ck_assert_msg(json_array_size(ok) == 2 && json_array_size(failed) == 1, "%s", buf_str(&r.body));
    /* successful in request order, each with its own message id and its deliveries */
    ck_assert_str_eq(json_str(json_array_get(ok, 0), "id"), "a");
    ck_assert_str_eq(json_str(json_array_get(ok, 1), "id"), "c");
    char id_a[IDS_UUID_LEN], id_c[IDS_UUID_LEN];
    json_t *a = find_by(ok, "id", "a"), *c = find_by(ok, "id", "c");
    ck_assert_ptr_nonnull(json_str(a, "message_id"));
    ck_assert_ptr_nonnull(json_str(c, "message_id"));
    ck_assert_int_eq(strlen(json_str(a, "message_id")), IDS_UUID_LEN - 1);
    ck_assert_int_eq(strlen(json_str(c, "message_id")), IDS_UUID_LEN - 1);
    snprintf(id_a, sizeof id_a, "%s", json_str(a, "message_id"));
    snprintf(id_c, sizeof id_c, "%s", json_str(c, "message_id"));
    ck_assert_str_ne(id_a, id_c);
    ck_assert_int_eq(json_integer_value(json_object_get(a, "deliveries")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "deliveries")), 2);
    ck_assert_ptr_null(find_by(ok, "id", "b"));
    /* failed: b, with every error naming its field, the message being the first error's */
    json_t *b = find_by(failed, "id", "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(json_str(b, "code"), "invalid");
    json_t *errors = json_object_get(b, "errors");
    ck_assert_msg(json_array_size(errors) == 2, "%s", buf_str(&r.body));
    /* fields are named by their path in the request, as in a queue batch */
    ck_assert_msg(entry_names_field(b, "entries[1].subject"), "%s", buf_str(&r.body));
    ck_assert_msg(entry_names_field(b, "entries[1].delay_seconds"), "%s", buf_str(&r.body));
    ck_assert_str_eq(json_str(find_by(errors, "field", "entries[1].subject"), "message"),
                     "must be 1 to 100 characters long");
    ck_assert_str_eq(json_str(find_by(errors, "field", "entries[1].delay_seconds"), "message"),
                     "unknown field");
    ck_assert_ptr_nonnull(json_str(b, "message"));
    ck_assert_str_eq(json_str(b, "message"), json_str(json_array_get(errors, 0), "message"));
    response_cleanup(&r);

    /* b reached no queue; the filter was applied to a and c each */
    ck_assert_int_eq(harness_stored("pb-all"), 2);
    ck_assert_int_eq(harness_stored("pb-big"), 1);
    ck_assert_int_eq(harness_stored("pb-env"), 2);
    json_t *msgs = receive("pb-all", NULL, &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    json_t *m = find_by(msgs, "message_id", id_a);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(json_str(m, "body"), "ride a");
    ck_assert_str_eq(json_str(json_object_get(json_object_get(m, "attributes"), "fare"), "value"),
                     "62.5");
    m = find_by(msgs, "message_id", id_c);
    ck_assert_ptr_nonnull(m);
    json_t *body_c = json_pack("{s:s}", "ride", "c");
    ck_assert_msg(json_equal(json_object_get(m, "body"), body_c), "%s", buf_str(&r.body));
    json_decref(body_c);
    response_cleanup(&r);
    m = receive_one("pb-big", &r);
    ck_assert_str_eq(json_str(m, "message_id"), id_a);
    ck_assert_str_eq(json_str(m, "body"), "ride a");
    response_cleanup(&r);
    msgs = receive("pb-env", NULL, &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    json_t *env_attrs = json_pack("{s:{s:s, s:s}}", "fare", "Type", "Number", "Value", "62.5");
    json_t *e = envelope_of(find_by(msgs, "message_id", id_a));
    assert_envelope(e, id_a, "pb-t", "ride a", "Ride a", env_attrs);
    json_decref(e);
    json_decref(env_attrs);
    env_attrs = json_pack("{s:{s:s, s:s}}", "fare", "Type", "Number", "Value", "12");
    e = envelope_of(find_by(msgs, "message_id", id_c));
    assert_envelope(e, id_c, "pb-t", "{\"ride\":\"c\"}", NULL, env_attrs);
    json_decref(e);
    json_decref(env_attrs);
    response_cleanup(&r);

    /* each entry's body stored once for its raw deliveries, its envelope once for the rest */
    ck_assert_int_eq(payloads_after(before), 4);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT payload_id) FROM messages WHERE message_id = '%s'", id_a);
    ck_assert_int_eq(sql_int(sql), 2);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT payload_id) FROM messages WHERE message_id = '%s'", id_c);
    ck_assert_int_eq(sql_int(sql), 2);
}
END_TEST

/* A request of n entries with ids e0 .. e(n-1) (caller frees). */
static char *batch_of(int n)
{
    json_t *entries = json_array();
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        json_array_append_new(entries, json_pack("{s:s, s:s}", "id", id, "body", "x"));
    }
    return dump(json_pack("{s:o}", "entries", entries));
}

START_TEST(publish_batch_envelope_errors_are_400)
{
    harness_put_queue(&srv, "pbv-q", NULL, 201);
    put_topic("pbv-t", NULL, 201);
    put_sub("pbv-t", "s", "{\"queue\": \"pbv-q\", \"raw_delivery\": true}", 201);
    char *eleven = batch_of(11);
    char *long_id = filled(81, 'i');
    char *long_req = dump(json_pack("{s:[{s:s, s:s}]}", "entries", "id", long_id, "body", "x"));
    const struct {
        const char *req, *field;
    } cases[] = {
        {"{}", "entries"},
        {"{\"body\": \"x\"}", "entries"},
        {"{\"entries\": null}", "entries"},
        {"{\"entries\": {\"id\": \"a\", \"body\": \"x\"}}", "entries"},
        {"{\"entries\": []}", "entries"},
        {eleven, "entries"},
        {"{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}, {\"id\": \"a\", \"body\": \"y\"}]}",
         "entries[1].id"},
        {"{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}, {\"id\": \"b\", \"body\": \"y\"}, "
         "{\"id\": \"b\", \"body\": \"z\"}]}",
         "entries[2].id"},
        {"{\"entries\": [{\"body\": \"x\"}]}", "entries[0].id"},
        {"{\"entries\": [{\"id\": \"\", \"body\": \"x\"}]}", "entries[0].id"},
        {"{\"entries\": [{\"id\": \"a b\", \"body\": \"x\"}]}", "entries[0].id"},
        {"{\"entries\": [{\"id\": 5, \"body\": \"x\"}]}", "entries[0].id"},
        {long_req, "entries[0].id"},
        {"{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}, \"b\"]}", "entries[1].id"},
        {"{\"entries\": [null]}", "entries[0].id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        publish_batch("pbv-t", cases[i].req, &r);
        long status = r.status;
        bool named = problem_names_field(&r, cases[i].field);
        char text[300];
        snprintf(text, sizeof text, "%.299s", buf_str(&r.body));
        if (status == 400)
            assert_problem(&r, 400);
        response_cleanup(&r);
        ck_assert_msg(status == 400 && named, "%.200s: %ld %s (expected field %s)", cases[i].req,
                      status, text, cases[i].field);
    }
    const char *malformed[] = {"[{\"id\": \"a\", \"body\": \"x\"}]", "\"x\"", "{\"entries\": "};
    for (size_t i = 0; i < 3; i++) {
        struct response r;
        publish_batch("pbv-t", malformed[i], &r);
        long status = r.status;
        if (status == 400)
            assert_problem(&r, 400);
        response_cleanup(&r);
        ck_assert_msg(status == 400, "%s: %ld", malformed[i], status);
    }
    /* the envelope is checked before the topic is looked up */
    struct response r;
    publish_batch("pbv-nope", eleven, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("pbv-q"), 0);

    /* the limits themselves pass: 10 entries, ids of 80 characters */
    char *ten = batch_of(10);
    publish_batch("pbv-t", ten, &r);
    long status = r.status;
    size_t published = json_array_size(json_object_get(r.json, "successful"));
    size_t refused = json_array_size(json_object_get(r.json, "failed"));
    response_cleanup(&r);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(published, 10);
    ck_assert_int_eq(refused, 0);
    long_id[80] = '\0';
    free(long_req);
    long_req = dump(json_pack("{s:[{s:s, s:s}]}", "entries", "id", long_id, "body", "x"));
    publish_batch("pbv-t", long_req, &r);
    status = r.status;
    json_t *first = json_array_get(json_object_get(r.json, "successful"), 0);
    bool same_id = first && json_str(first, "id") && strcmp(json_str(first, "id"), long_id) == 0;
    response_cleanup(&r);
    ck_assert_int_eq(status, 200);
    ck_assert(same_id);
    ck_assert_int_eq(harness_stored("pbv-q"), 11);
    free(ten);
    free(eleven);
    free(long_req);
    free(long_id);
}
END_TEST

START_TEST(publish_batch_to_an_unknown_topic_is_404)
{
    const char *topics[] = {"pbn-nope", "a.b", "pbn-nope.fifo"};
    const char *reqs[] = {"{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}]}",
                          "{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}, {\"id\": \"b\"}]}"};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 2; j++) {
            struct response r;
            publish_batch(topics[i], reqs[j], &r);
            assert_problem(&r, 404);
            response_cleanup(&r);
        }
    /* a topic deleted meanwhile */
    put_topic("pbn-gone", NULL, 201);
    struct response r;
    publish_batch("pbn-gone", reqs[0], &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", "/topics/pbn-gone", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    publish_batch("pbn-gone", reqs[0], &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

START_TEST(publish_batch_role_matrix)
{
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN];
    create_token("app", app);
    create_token("service", service);
    harness_put_queue(&srv, "pbr-q", NULL, 201);
    put_topic("pbr-t", NULL, 201);
    put_sub("pbr-t", "s", "{\"queue\": \"pbr-q\"}", 201);
    const char *path = "/topics/pbr-t/messages:batch";
    const char *req = "{\"entries\": [{\"id\": \"a\", \"body\": \"r\"}]}";
    ck_assert_int_eq(status_of("POST", path, service, req), 200);
    ck_assert_int_eq(status_of("POST", path, app, req), 403);
    ck_assert_int_eq(status_of("POST", path, NULL, req), 401);
    ck_assert_int_eq(status_of("POST", path, HARNESS_ADMIN_TOKEN, req), 200);
    ck_assert_int_eq(status_of("GET", path, service, NULL), 405);
    ck_assert_int_eq(harness_stored("pbr-q"), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topics");
    TCase *tc = tcase_create("topics");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, put_creates_then_updates);
    tcase_add_test(tc, created_at_always_has_three_fraction_digits);
    tcase_add_test(tc, fifo_topics_and_bad_names_are_400);
    tcase_add_test(tc, list_paginates);
    tcase_add_test(tc, delete_takes_the_subscriptions_and_leaves_the_queues);
    tcase_add_test(tc, role_matrix);
    tcase_add_test(tc, subscriptions_put_update_list_delete);
    tcase_add_test(tc, a_subscription_racing_its_queue_s_delete_is_a_conflict);
    tcase_add_test(tc, invalid_subscriptions_are_400);
    tcase_add_test(tc, a_url_subscription_as_get_shows_it_can_be_put_back);
    tcase_add_test(tc, unknown_topic_is_404);
    tcase_add_test(tc, deleting_a_queue_removes_its_subscriptions);
    tcase_add_test(tc, publish_fans_out_as_envelope_raw_and_filtered);
    tcase_add_test(tc, wild_rydes_filter_boundary);
    tcase_add_test(tc, number_arrays_are_matched_by_their_elements);
    tcase_add_test(tc, a_subscription_reads_back_at_its_self_link);
    tcase_add_test(tc, subscriptions_are_listed_in_pages);
    tcase_add_test(tc, a_missing_queue_is_an_error_on_its_field);
    tcase_add_test(tc, body_scope_filters_match_nested_json_bodies);
    tcase_add_test(tc, empty_policy_matches_every_message);
    tcase_add_test(tc, topic_without_subscriptions_delivers_nothing);
    tcase_add_test(tc, body_is_stored_once);
    tcase_add_test(tc, deliveries_respect_queue_delay);
    tcase_add_test(tc, invalid_publishes_are_400);
    tcase_add_test(tc, delivered_messages_can_be_deleted_peeked_and_taken);
    tcase_add_test(tc, dead_letter_and_redrive_keep_the_body);
    tcase_add_test(tc, publish_wakes_a_long_poll);
    tcase_add_test(tc, publish_is_atomic);
    tcase_add_test(tc, concurrent_publishers_deliver_everything_to_both_queues);
    tcase_add_test(tc, recipient_list_delivers_raw_to_exactly_its_queues);
    tcase_add_test(tc, recipient_list_stores_a_large_body_once);
    tcase_add_test(tc, recipient_list_with_an_unknown_queue_delivers_nothing);
    tcase_add_test(tc, recipient_list_fifo_queues_need_a_group);
    tcase_add_test(tc, invalid_recipient_lists_are_400);
    tcase_add_test(tc, recipient_list_takes_up_to_100_queues);
    tcase_add_test(tc, recipient_list_role_matrix);
    tcase_add_test(tc, publish_batch_publishes_the_valid_entries_and_reports_the_invalid);
    tcase_add_test(tc, publish_batch_envelope_errors_are_400);
    tcase_add_test(tc, publish_batch_to_an_unknown_topic_is_404);
    tcase_add_test(tc, publish_batch_role_matrix);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
