/* Integration: FIFO topics over HTTP, and subscription changes seen by every process. Topic
 * creation (fifo disagreeing with the name, content_based_dedup on a standard topic and bad
 * values refused naming the field; FIFO topics created with and without content-based
 * deduplication, shown by GET and updated by PUT), subscription rules (a FIFO topic takes FIFO
 * queues only, neither standard queues nor URLs; a standard topic refuses FIFO queues), publish
 * validation on FIFO and standard topics (group_id and dedup_id required, refused or malformed,
 * each 400 naming its field with nothing stored), deduplication (a repeated dedup id answered 200
 * with the original message id and delivered nowhere, content-based by the body's SHA-256,
 * independent per topic, recorded even when no filter matches, a five-minute window that leaves
 * the id free again once passed), order (four publisher threads into ten groups fanned out to
 * three FIFO queues, one of them filtered: every queue gets every group complete, in publish
 * order, nothing twice, the filtered one exactly the matching subset, with sequence numbers rising
 * within each group), the envelope (MessageGroupId) and raw delivery into FIFO queues, batch
 * publishing (entries without group_id or dedup_id reported by their fields, the others delivered
 * in order, a duplicate inside the batch answered with the first one's id; two publishers whose
 * batches name the same groups in opposite orders both get every batch through), the recipient
 * list with FIFO queues (group_id required, refused without FIFO recipients, dedup_id refused).
 * Across processes: two gateways on one database; a subscription added or deleted through the
 * first, or changed by hand in SQL, is seen by the second's next publish within a second (the
 * NOTIFY on rydes_topics; the same change made without it stays invisible, so it is the
 * notification that does it), and so are a topic's new attributes, its deletion and its
 * re-creation. Latencies are printed to stderr. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/ids.h"
#include "rydes/secret.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_server srv;
/* the second gateway of the cross-process tests; stopped by teardown if a test fails */
static struct harness_server other;
static bool other_running;

static void roomy(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "4", &err));
    ck_assert(config_set_flag(cfg, "db-pool-size", "6", &err));
}

static void setup(void)
{
    harness_start(&srv, roomy);
}

static void teardown(void)
{
    if (other_running)
        harness_stop(&other);
    other_running = false;
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

static void sql_run(const char *sql)
{
    free(harness_sql(harness_db_url(), sql));
}

/* How many dedup ids topic holds. */
static long long dedup_entries(const char *topic)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM topic_dedup d JOIN topics t ON t.id = d.topic_id "
             "WHERE t.name = '%s'",
             topic);
    return sql_int(sql);
}

/* The JSON text of a json_t, which it consumes (caller frees). Called on the test's threads
 * too, where no check may be made: out of memory aborts. */
static char *dump(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s)
        abort();
    return s;
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

/* The message of the error of r naming field, or NULL. */
static const char *error_message(const struct response *r, const char *field)
{
    json_t *errors = json_object_get(r->json, "errors");
    for (size_t i = 0; i < json_array_size(errors); i++) {
        json_t *e = json_array_get(errors, i);
        const char *f = json_str(e, "field");
        if (f && strcmp(f, field) == 0)
            return json_str(e, "message");
    }
    return NULL;
}

/* PUT /topics/{name} through s with body; asserts the status. */
static void put_topic_on(struct harness_server *s, const char *name, const char *body, long status)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s", name);
    struct response r;
    harness_admin(s, "PUT", path, body, &r);
    ck_assert_msg(r.status == status, "PUT %s %s: %ld %s", path, body ? body : "", r.status,
                  buf_str(&r.body));
    response_cleanup(&r);
}

static void put_topic(const char *name, const char *body, long status)
{
    put_topic_on(&srv, name, body, status);
}

/* PUT /topics/{topic}/subscriptions/{sub} through s with body; asserts the status. */
static void put_sub_on(struct harness_server *s, const char *topic, const char *sub,
                       const char *body, long status)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/subscriptions/%s", topic, sub);
    struct response r;
    harness_admin(s, "PUT", path, body, &r);
    ck_assert_msg(r.status == status, "PUT %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

static void put_sub(const char *topic, const char *sub, const char *body, long status)
{
    put_sub_on(&srv, topic, sub, body, status);
}

/* The request text of a publish: group and dedup are left out when NULL (caller frees). */
static char *fifo_request(const char *body, const char *group, const char *dedup)
{
    json_t *o = json_pack("{s:s}", "body", body);
    if (group)
        json_object_set_new(o, "group_id", json_string(group));
    if (dedup)
        json_object_set_new(o, "dedup_id", json_string(dedup));
    return dump(o);
}

/* POST /topics/{topic}/messages through s with the request text req into r. */
static void publish_on(struct harness_server *s, const char *topic, const char *req,
                       struct response *r)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/messages", topic);
    harness_admin(s, "POST", path, req, r);
}

/* Publishes req to topic, asserts a new message (201, duplicate false) and returns its
 * deliveries; id (IDS_UUID_LEN), when given, receives the message id. */
static int publish_new(const char *topic, const char *req, char *id)
{
    struct response r;
    publish_on(&srv, topic, req, &r);
    ck_assert_msg(r.status == 201, "publish %s to %s: %ld %s", req, topic, r.status,
                  buf_str(&r.body));
    ck_assert_msg(json_is_false(json_object_get(r.json, "duplicate")), "%s", buf_str(&r.body));
    const char *mid = json_str(r.json, "message_id");
    ck_assert_ptr_nonnull(mid);
    ck_assert_int_eq(strlen(mid), IDS_UUID_LEN - 1);
    json_t *d = json_object_get(r.json, "deliveries");
    ck_assert_msg(json_is_integer(d), "%s", buf_str(&r.body));
    int n = (int)json_integer_value(d);
    if (id)
        snprintf(id, IDS_UUID_LEN, "%s", mid);
    response_cleanup(&r);
    return n;
}

/* Publishes req to topic and asserts it was taken for a duplicate of original: 200, the
 * original message id, duplicate true, no deliveries. */
static void publish_duplicate(const char *topic, const char *req, const char *original)
{
    struct response r;
    publish_on(&srv, topic, req, &r);
    ck_assert_msg(r.status == 200, "publish %s to %s: %ld %s", req, topic, r.status,
                  buf_str(&r.body));
    ck_assert_msg(json_is_true(json_object_get(r.json, "duplicate")), "%s", buf_str(&r.body));
    ck_assert_ptr_nonnull(json_str(r.json, "message_id"));
    ck_assert_str_eq(json_str(r.json, "message_id"), original);
    ck_assert_msg(json_integer_value(json_object_get(r.json, "deliveries")) == 0 &&
                      json_is_integer(json_object_get(r.json, "deliveries")),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
}

/* Receives up to 10 messages of queue with a 60 s lease. */
static json_t *receive(const char *queue, struct response *r)
{
    char path[200];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    harness_admin(&srv, "POST", path, "{\"max_messages\": 10, \"visibility_timeout\": 60}", r);
    ck_assert_msg(r->status == 200, "receive %s: %ld %s", queue, r->status, buf_str(&r->body));
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert(json_is_array(msgs));
    return msgs;
}

static void delete_receipt(const char *queue, const char *receipt)
{
    ck_assert_ptr_nonnull(receipt);
    char path[300];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, receipt);
    struct response r;
    harness_admin(&srv, "DELETE", path, NULL, &r);
    ck_assert_msg(r.status == 204, "DELETE %s: %ld %s", path, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

/* Receives and deletes until queue answers empty; every message in receive order (a new
 * reference). */
static json_t *drain(const char *queue)
{
    json_t *all = json_array();
    for (int rounds = 0;; rounds++) {
        ck_assert_int_lt(rounds, 2000);
        struct response r;
        json_t *msgs = receive(queue, &r);
        size_t n = json_array_size(msgs);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            json_array_append(all, m);
            delete_receipt(queue, json_str(m, "receipt"));
        }
        response_cleanup(&r);
        if (n == 0)
            break;
    }
    ck_assert_int_eq(harness_stored(queue), 0);
    return all;
}

/* The envelope a queue received as message m (a new reference). */
static json_t *envelope_of(json_t *m)
{
    json_t *b = json_object_get(m, "body");
    json_t *e = json_is_string(b) ? json_loads(json_string_value(b), 0, NULL) : json_incref(b);
    ck_assert_msg(json_is_object(e), "the delivery is not an envelope");
    return e;
}

/* ---- 1. topic creation ---- */

START_TEST(fifo_topic_creation_rules)
{
    const struct {
        const char *name, *body, *field;
    } cases[] = {
        {"tc-a.fifo", "{\"fifo\": false}", "fifo"},
        {"tc-b", "{\"fifo\": true}", "fifo"},
        {"tc-b", "{\"content_based_dedup\": true}", "content_based_dedup"},
        {"tc-b", "{\"fifo\": false, \"content_based_dedup\": true}", "content_based_dedup"},
        {"tc-a.fifo", "{\"fifo\": \"yes\"}", "fifo"},
        {"tc-a.fifo", "{\"content_based_dedup\": 1}", "content_based_dedup"},
        {"tc-a.fifo", "{\"fifo\": true, \"sequencing\": true}", "sequencing"},
        {".fifo", "{\"fifo\": true}", "name"},
        {"tc-a.fifo.fifo", "{\"fifo\": true}", "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[300];
        snprintf(path, sizeof path, "/topics/%s", cases[i].name);
        struct response r;
        harness_admin(&srv, "PUT", path, cases[i].body, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i].field), "PUT %s %s: %s", path, cases[i].body,
                      buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM topics WHERE name LIKE 'tc-%'"), 0);

    /* created with and without content-based deduplication, fifo given or implied */
    const struct {
        const char *name, *body;
        bool cbd;
    } ok[] = {
        {"tc-plain.fifo", "{\"fifo\": true}", false},
        {"tc-implied.fifo", NULL, false},
        {"tc-cbd.fifo", "{\"fifo\": true, \"content_based_dedup\": true}", true},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char path[300], loc[300];
        snprintf(path, sizeof path, "/topics/%s", ok[i].name);
        struct response r;
        harness_admin(&srv, "PUT", path, ok[i].body, &r);
        ck_assert_msg(r.status == 201, "PUT %s: %ld %s", path, r.status, buf_str(&r.body));
        ck_assert(response_header(&r, "Location", loc, sizeof loc));
        ck_assert_str_eq(loc, path);
        json_t *attrs = json_object_get(r.json, "attributes");
        ck_assert(json_is_true(json_object_get(attrs, "fifo")));
        ck_assert(json_is_boolean(json_object_get(attrs, "content_based_dedup")));
        ck_assert_int_eq(json_is_true(json_object_get(attrs, "content_based_dedup")), ok[i].cbd);
        response_cleanup(&r);

        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(json_str(r.json, "name"), ok[i].name);
        attrs = json_object_get(r.json, "attributes");
        ck_assert(json_is_true(json_object_get(attrs, "fifo")));
        ck_assert_int_eq(json_is_true(json_object_get(attrs, "content_based_dedup")), ok[i].cbd);
        response_cleanup(&r);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM topics WHERE name LIKE 'tc-%' AND fifo"), 3);

    /* PUT replaces the attributes: content-based deduplication on, and off again */
    struct response r;
    harness_admin(&srv, "PUT", "/topics/tc-plain.fifo", "{\"content_based_dedup\": true}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_true(
        json_object_get(json_object_get(r.json, "attributes"), "content_based_dedup")));
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/tc-plain.fifo", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_true(json_object_get(json_object_get(r.json, "attributes"), "fifo")));
    ck_assert(json_is_true(
        json_object_get(json_object_get(r.json, "attributes"), "content_based_dedup")));
    response_cleanup(&r);
    put_topic("tc-plain.fifo", "{\"fifo\": true}", 200);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM topics WHERE name = 'tc-plain.fifo' "
                             "AND content_based_dedup"),
                     0);
    /* a standard topic shows fifo false */
    put_topic("tc-standard", "{\"fifo\": false}", 201);
    harness_admin(&srv, "GET", "/topics/tc-standard", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_false(json_object_get(json_object_get(r.json, "attributes"), "fifo")));
    response_cleanup(&r);
}
END_TEST

/* ---- 2. subscription rules ---- */

/* PUT a subscription expected to be refused: 400 with an error on the member the body names
 * (url or queue) whose message contains want. */
static void refused_sub(const char *topic, const char *sub, const char *body, const char *want)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/subscriptions/%s", topic, sub);
    struct response r;
    harness_admin(&srv, "PUT", path, body, &r);
    assert_problem(&r, 400);
    const char *field = strstr(body, "\"url\"") ? "url" : "queue";
    json_t *e = json_array_get(json_object_get(r.json, "errors"), 0);
    const char *message = json_str(e, "message");
    ck_assert_msg(problem_names_field(&r, field) && message && strstr(message, want),
                  "PUT %s %s: %s (want \"%s\" on %s)", path, body, buf_str(&r.body), want, field);
    response_cleanup(&r);
}

START_TEST(fifo_subscription_rules)
{
    harness_put_queue(&srv, "sr-std", NULL, 201);
    harness_put_queue(&srv, "sr-q.fifo", NULL, 201);
    put_topic("sr-t.fifo", NULL, 201);
    put_topic("sr-plain", NULL, 201);

    refused_sub("sr-t.fifo", "std", "{\"queue\": \"sr-std\"}",
                "a FIFO topic delivers to FIFO queues only; queue sr-std is a standard queue");
    refused_sub("sr-t.fifo", "web", "{\"url\": \"http://127.0.0.1:9/hook\"}",
                "a FIFO topic delivers to FIFO queues only, not to URLs");
    refused_sub("sr-plain", "fq", "{\"queue\": \"sr-q.fifo\"}",
                "a standard topic delivers to standard queues only; queue sr-q.fifo is a FIFO "
                "queue");
    ck_assert_int_eq(sql_int("SELECT count(*) FROM subscriptions s JOIN topics t ON "
                             "t.id = s.topic_id WHERE t.name IN ('sr-t.fifo', 'sr-plain')"),
                     0);

    put_sub("sr-t.fifo", "fq", "{\"queue\": \"sr-q.fifo\"}", 201);
    put_sub("sr-t.fifo", "fq", "{\"queue\": \"sr-q.fifo\", \"raw_delivery\": true}", 200);
    /* an update cannot turn it into a standard queue or a URL either, and leaves it as it was */
    refused_sub("sr-t.fifo", "fq", "{\"queue\": \"sr-std\"}", "is a standard queue");
    refused_sub("sr-t.fifo", "fq", "{\"url\": \"https://example.com/x\"}", "not to URLs");
    struct response r;
    harness_admin(&srv, "GET", "/topics/sr-t.fifo/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 1);
    ck_assert_str_eq(json_str(json_array_get(subs, 0), "queue"), "sr-q.fifo");
    ck_assert(json_is_true(json_object_get(json_array_get(subs, 0), "raw_delivery")));
    response_cleanup(&r);
    /* a standard topic still takes the standard queue */
    put_sub("sr-plain", "std", "{\"queue\": \"sr-std\"}", 201);
}
END_TEST

/* ---- 3. publish validation ---- */

START_TEST(publish_validation_names_the_field)
{
    harness_put_queue(&srv, "pv-q.fifo", NULL, 201);
    harness_put_queue(&srv, "pv-c.fifo", NULL, 201);
    harness_put_queue(&srv, "pv-s", NULL, 201);
    put_topic("pv.fifo", NULL, 201);
    put_topic("pv-cbd.fifo", "{\"content_based_dedup\": true}", 201);
    put_topic("pv-plain", NULL, 201);
    put_sub("pv.fifo", "q", "{\"queue\": \"pv-q.fifo\"}", 201);
    put_sub("pv-cbd.fifo", "c", "{\"queue\": \"pv-c.fifo\"}", 201);
    put_sub("pv-plain", "s", "{\"queue\": \"pv-s\"}", 201);
    char *long_id = filled(129, 'g');
    char *max_id = filled(128, 'g');
    char long_group[200], long_dedup[200];
    snprintf(long_group, sizeof long_group,
             "{\"body\": \"x\", \"group_id\": \"%s\", \"dedup_id\": \"d\"}", long_id);
    snprintf(long_dedup, sizeof long_dedup,
             "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"%s\"}", long_id);
    const struct {
        const char *topic, *req, *field, *message;
    } cases[] = {
        {"pv.fifo", "{\"body\": \"x\", \"dedup_id\": \"d\"}", "group_id",
         "is required on a FIFO topic"},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"g\"}", "dedup_id",
         "is required unless the topic has content_based_dedup"},
        {"pv.fifo", "{\"body\": \"x\"}", "group_id", NULL},
        {"pv.fifo", "{\"body\": \"x\"}", "dedup_id", NULL},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"a b\", \"dedup_id\": \"d\"}", "group_id",
         "must be 1 to 128 printable ASCII characters without spaces"},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"\", \"dedup_id\": \"d\"}", "group_id", NULL},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"caf\\u00e9\", \"dedup_id\": \"d\"}",
         "group_id", NULL},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"a\\tb\", \"dedup_id\": \"d\"}", "group_id",
         NULL},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": 7, \"dedup_id\": \"d\"}", "group_id", NULL},
        {"pv.fifo", long_group, "group_id",
         "must be 1 to 128 printable ASCII characters without spaces"},
        {"pv.fifo", "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d d\"}", "dedup_id",
         NULL},
        {"pv.fifo", long_dedup, "dedup_id", NULL},
        {"pv-cbd.fifo", "{\"body\": \"x\"}", "group_id", "is required on a FIFO topic"},
        {"pv-cbd.fifo", "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"\"}", "dedup_id",
         NULL},
        {"pv-plain", "{\"body\": \"x\", \"group_id\": \"g\"}", "group_id",
         "applies to FIFO topics only"},
        {"pv-plain", "{\"body\": \"x\", \"dedup_id\": \"d\"}", "dedup_id",
         "applies to FIFO topics only"},
        {"pv-plain", "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d\"}", "dedup_id",
         "applies to FIFO topics only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        publish_on(&srv, cases[i].topic, cases[i].req, &r);
        assert_problem(&r, 400);
        const char *msg = error_message(&r, cases[i].field);
        ck_assert_msg(msg != NULL, "%s %s: %s names no %s", cases[i].topic, cases[i].req,
                      buf_str(&r.body), cases[i].field);
        ck_assert_msg(!cases[i].message || strcmp(msg, cases[i].message) == 0,
                      "%s %s: %s: %s, want %s", cases[i].topic, cases[i].req, cases[i].field, msg,
                      cases[i].message);
        response_cleanup(&r);
    }
    free(long_id);
    /* nothing stored, no dedup id recorded */
    ck_assert_int_eq(harness_stored("pv-q.fifo"), 0);
    ck_assert_int_eq(harness_stored("pv-c.fifo"), 0);
    ck_assert_int_eq(harness_stored("pv-s"), 0);
    ck_assert_int_eq(dedup_entries("pv.fifo"), 0);
    ck_assert_int_eq(dedup_entries("pv-cbd.fifo"), 0);

    /* the limits themselves are fine: 128 characters, all of printable ASCII */
    char *req = fifo_request("x", max_id, max_id);
    ck_assert_int_eq(publish_new("pv.fifo", req, NULL), 1);
    free(req);
    ck_assert_int_eq(publish_new("pv.fifo",
                                 "{\"body\": \"x\", \"group_id\": \"!~a-Z_0.9\", "
                                 "\"dedup_id\": \"!\\\"#$%&'()*+,-./:;<=>?@[\\\\]^`{|}\"}",
                                 NULL),
                     1);
    ck_assert_int_eq(publish_new("pv-cbd.fifo", "{\"body\": \"x\", \"group_id\": \"g\"}", NULL), 1);
    ck_assert_int_eq(publish_new("pv-plain", "{\"body\": \"x\"}", NULL), 1);
    free(max_id);
    ck_assert_int_eq(harness_stored("pv-q.fifo"), 2);
    ck_assert_int_eq(dedup_entries("pv.fifo"), 2);
}
END_TEST

/* ---- 4. deduplication ---- */

START_TEST(dedup_by_id_within_the_window)
{
    harness_put_queue(&srv, "dd-a.fifo", NULL, 201);
    harness_put_queue(&srv, "dd-b.fifo", NULL, 201);
    harness_put_queue(&srv, "dd-c.fifo", NULL, 201);
    put_topic("dd.fifo", NULL, 201);
    put_topic("dd-other.fifo", NULL, 201);
    put_sub("dd.fifo", "a", "{\"queue\": \"dd-a.fifo\", \"raw_delivery\": true}", 201);
    put_sub("dd.fifo", "b", "{\"queue\": \"dd-b.fifo\"}", 201);
    put_sub("dd-other.fifo", "c", "{\"queue\": \"dd-c.fifo\", \"raw_delivery\": true}", 201);

    char id[IDS_UUID_LEN];
    char *req = fifo_request("one", "g", "d1");
    ck_assert_int_eq(publish_new("dd.fifo", req, id), 2);
    free(req);
    /* the same id again, whatever the body and group: the original id, delivered nowhere */
    req = fifo_request("two", "g2", "d1");
    publish_duplicate("dd.fifo", req, id);
    publish_duplicate("dd.fifo", req, id);
    free(req);
    ck_assert_int_eq(harness_stored("dd-a.fifo"), 1);
    ck_assert_int_eq(harness_stored("dd-b.fifo"), 1);
    /* the window is five minutes */
    ck_assert_int_eq(sql_int("SELECT count(*) FROM topic_dedup d JOIN topics t ON t.id = "
                             "d.topic_id WHERE t.name = 'dd.fifo' AND d.dedup_id = 'd1' AND "
                             "d.expires_at - now() BETWEEN interval '4 minutes 30 seconds' AND "
                             "interval '5 minutes'"),
                     1);
    /* (the duplicate locked its groups before it knew, as a batch does: rows left empty, which
     * the next receive deletes) */
    ck_assert_int_eq(sql_int("SELECT count(*) FROM messages m JOIN queues q ON "
                             "q.id = m.queue_id WHERE q.name LIKE 'dd-%' AND m.group_id = 'g2'"),
                     0);

    /* another topic keeps its own ids */
    char other_id[IDS_UUID_LEN];
    req = fifo_request("three", "g", "d1");
    ck_assert_int_eq(publish_new("dd-other.fifo", req, other_id), 1);
    free(req);
    ck_assert_str_ne(other_id, id);
    ck_assert_int_eq(harness_stored("dd-c.fifo"), 1);

    /* deduplication outlives delivery and deletion of the original */
    struct response r;
    json_t *msgs = receive("dd-a.fifo", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), id);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "one");
    delete_receipt("dd-a.fifo", json_str(json_array_get(msgs, 0), "receipt"));
    response_cleanup(&r);
    req = fifo_request("four", "g", "d1");
    publish_duplicate("dd.fifo", req, id);
    ck_assert_int_eq(harness_stored("dd-a.fifo"), 0);

    /* once the window has passed, the id is new again */
    sql_run("UPDATE topic_dedup SET expires_at = now() - interval '1 second' WHERE dedup_id = "
            "'d1' AND topic_id = (SELECT id FROM topics WHERE name = 'dd.fifo')");
    char fresh[IDS_UUID_LEN];
    ck_assert_int_eq(publish_new("dd.fifo", req, fresh), 2);
    ck_assert_str_ne(fresh, id);
    /* and starts a new window */
    publish_duplicate("dd.fifo", req, fresh);
    free(req);
    ck_assert_int_eq(harness_stored("dd-a.fifo"), 1);
    ck_assert_int_eq(harness_stored("dd-b.fifo"), 2);
    msgs = receive("dd-a.fifo", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), fresh);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "four");
    response_cleanup(&r);
    /* the other topic's entry was left alone */
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM topic_dedup WHERE dedup_id = 'd1' AND message_id = '%s' "
             "AND expires_at > now()",
             other_id);
    ck_assert_int_eq(sql_int(sql), 1);
}
END_TEST

struct held_publish {
    long status;
    bool duplicate;
};

static void *publish_held(void *arg)
{
    struct held_publish *h = arg;
    struct response r;
    char *req = fifo_request("late", "g", "d");
    publish_on(&srv, "po.fifo", req, &r);
    free(req);
    h->status = r.status;
    h->duplicate = json_is_true(json_object_get(r.json, "duplicate"));
    response_cleanup(&r);
    return NULL;
}

/* A publish locks its groups before it claims its dedup id, as a batch (and a queue send)
 * does: one that claimed the id first and then waited for a group a batch held, while the
 * batch waited for the id, deadlocked with it. Here a transaction holds the group, as a batch
 * would, and then claims the same id. */
START_TEST(a_publish_takes_its_groups_before_its_dedup_id)
{
    harness_put_queue(&srv, "po-q.fifo", NULL, 201);
    put_topic("po.fifo", NULL, 201);
    put_sub("po.fifo", "q", "{\"queue\": \"po-q.fifo\", \"raw_delivery\": true}", 201);
    char *req = fifo_request("first", "g", "d0");
    ck_assert_int_eq(publish_new("po.fifo", req, NULL), 1); /* the group exists */
    free(req);
    PGconn *batch = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(batch), CONNECTION_OK);
    PGresult *r = PQexec(batch, "BEGIN; SELECT 1 FROM message_groups g JOIN queues q ON q.id = "
                                "g.queue_id WHERE q.name = 'po-q.fifo' FOR UPDATE OF g");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    static struct held_publish h; /* the thread outlives a failed check's jump out of here */
    memset(&h, 0, sizeof h);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, publish_held, &h), 0);
    ck_assert_int_eq(
        harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                         "'%mq_publish_fifo%' AND query NOT LIKE "
                         "'%pg_stat_activity%' AND wait_event_type = 'Lock' AND datname = "
                         "current_database()",
                         1, 10),
        1);
    r = PQexec(batch, "INSERT INTO topic_dedup (topic_id, dedup_id, message_id, expires_at) "
                      "SELECT id, 'd', gen_random_uuid(), clock_timestamp() + interval '5 "
                      "minutes' FROM topics WHERE name = 'po.fifo'");
    ExecStatusType st = PQresultStatus(r);
    char err[256];
    snprintf(err, sizeof err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQclear(PQexec(batch, st == PGRES_COMMAND_OK ? "COMMIT" : "ROLLBACK"));
    PQfinish(batch);
    pthread_join(t, NULL);
    ck_assert_msg(st == PGRES_COMMAND_OK, "the batch's dedup id: %s", err);
    ck_assert_int_eq(h.status, 200); /* the id is the batch's now: a duplicate */
    ck_assert(h.duplicate);
}
END_TEST

START_TEST(dedup_by_content_and_before_filters)
{
    harness_put_queue(&srv, "cb-q.fifo", NULL, 201);
    harness_put_queue(&srv, "cb-f.fifo", NULL, 201);
    put_topic("cb.fifo", "{\"content_based_dedup\": true}", 201);
    put_topic("cb-filtered.fifo", NULL, 201);
    put_sub("cb.fifo", "q", "{\"queue\": \"cb-q.fifo\", \"raw_delivery\": true}", 201);
    put_sub("cb-filtered.fifo", "f",
            "{\"queue\": \"cb-f.fifo\", \"raw_delivery\": true, \"filter_policy\": "
            "{\"kind\": [\"wanted\"]}}",
            201);

    char id[IDS_UUID_LEN], other_body[IDS_UUID_LEN], explicit_id[IDS_UUID_LEN];
    ck_assert_int_eq(publish_new("cb.fifo", "{\"body\": \"same body\", \"group_id\": \"g1\"}", id),
                     1);
    publish_duplicate("cb.fifo", "{\"body\": \"same body\", \"group_id\": \"g2\"}", id);
    ck_assert_int_eq(
        publish_new("cb.fifo", "{\"body\": \"other body\", \"group_id\": \"g1\"}", other_body), 1);
    ck_assert_str_ne(other_body, id);
    /* an explicit dedup_id wins over the hash */
    ck_assert_int_eq(publish_new("cb.fifo",
                                 "{\"body\": \"same body\", \"group_id\": \"g1\", \"dedup_id\": "
                                 "\"explicit\"}",
                                 explicit_id),
                     1);
    ck_assert_str_ne(explicit_id, id);
    ck_assert_int_eq(harness_stored("cb-q.fifo"), 3);
    char sha[65], sql[300];
    secret_sha256_hex("same body", 9, sha);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM topic_dedup d JOIN topics t ON t.id = d.topic_id "
             "WHERE t.name = 'cb.fifo' AND d.dedup_id = '%s' AND d.message_id = '%s'",
             sha, id);
    ck_assert_int_eq(sql_int(sql), 1);
    /* a JSON body is hashed as its compact text */
    char json_id[IDS_UUID_LEN];
    publish_new("cb.fifo", "{\"body\": {\"k\": [1, 2]}, \"group_id\": \"g1\"}", json_id);
    publish_duplicate("cb.fifo", "{\"body\": {\"k\":[1,2]}, \"group_id\": \"g1\"}", json_id);
    ck_assert_int_eq(harness_stored("cb-q.fifo"), 4);

    /* deduplication comes before the filters: an id seen on a publish no subscription wanted
     * is a duplicate all the same */
    char unwanted[IDS_UUID_LEN];
    ck_assert_int_eq(publish_new("cb-filtered.fifo",
                                 "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"f1\", "
                                 "\"attributes\": {\"kind\": {\"type\": \"String\", \"value\": "
                                 "\"unwanted\"}}}",
                                 unwanted),
                     0);
    publish_duplicate("cb-filtered.fifo",
                      "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"f1\", "
                      "\"attributes\": {\"kind\": {\"type\": \"String\", \"value\": "
                      "\"wanted\"}}}",
                      unwanted);
    ck_assert_int_eq(harness_stored("cb-f.fifo"), 0);
    ck_assert_int_eq(publish_new("cb-filtered.fifo",
                                 "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"f2\", "
                                 "\"attributes\": {\"kind\": {\"type\": \"String\", \"value\": "
                                 "\"wanted\"}}}",
                                 NULL),
                     1);
    ck_assert_int_eq(harness_stored("cb-f.fifo"), 1);
}
END_TEST

/* Starts the second gateway on the same database and waits until both hubs listen (so both keep
 * topics cached for long and depend on the notifications). */
static void start_other(void)
{
    harness_start(&other, roomy);
    other_running = true;
    int64_t deadline = clock_mono_us() + 10000000;
    while (!(mq_hub_listening(srv.app.hub) && mq_hub_listening(other.app.hub)) &&
           clock_mono_us() < deadline)
        harness_sleep_ms(10);
    ck_assert_msg(mq_hub_listening(srv.app.hub) && mq_hub_listening(other.app.hub),
                  "the hubs do not listen");
}

static void stop_other(void)
{
    harness_stop(&other);
    other_running = false;
}

/* ---- 5. order under concurrent publishers ---- */

#define ORDER_GROUPS    10
#define ORDER_PER_GROUP 30
#define ORDER_THREADS   4

/* The message id each publish returned, written by the publishing thread only. */
static char order_ids[ORDER_GROUPS][ORDER_PER_GROUP][IDS_UUID_LEN];

struct order_publisher {
    int k;
    char base[64];
    int failures;
    char first_failure[300];
};

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

/* POSTs body to path on base as admin, on the caller's own libcurl handle. No ck_assert: safe
 * off the main thread. Returns the status (0: the request failed); *json is the parsed reply
 * or NULL. */
static long thread_post(CURL *c, struct curl_slist *headers, const char *base, const char *path,
                        const char *body, json_t **json)
{
    char url[400];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct buf reply;
    buf_init(&reply);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *json = reply.len ? json_loadb(reply.data, reply.len, 0, NULL) : NULL;
    buf_cleanup(&reply);
    return status;
}

static void order_failed(struct order_publisher *p, const char *what, int g, int i)
{
    if (!p->failures++)
        snprintf(p->first_failure, sizeof p->first_failure, "group %d message %d: %s", g, i, what);
}

/* Publishes messages 0..ORDER_PER_GROUP-1 of its groups (g % ORDER_THREADS == k), each group in
 * increasing order, interleaving the groups. Attributes: seq and parity. */
static void *order_publish(void *arg)
{
    struct order_publisher *p = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    for (int i = 0; c && i < ORDER_PER_GROUP; i++) {
        for (int g = p->k; g < ORDER_GROUPS; g += ORDER_THREADS) {
            char req[400];
            snprintf(req, sizeof req,
                     "{\"body\": \"g%d-%d\", \"group_id\": \"grp-%d\", \"dedup_id\": \"o-%d-%d\", "
                     "\"attributes\": {\"seq\": {\"type\": \"Number\", \"value\": \"%d\"}, "
                     "\"parity\": {\"type\": \"String\", \"value\": \"%s\"}}}",
                     g, i, g, g, i, i, i % 2 ? "odd" : "even");
            json_t *reply = NULL;
            long status =
                thread_post(c, headers, p->base, "/topics/ord.fifo/messages", req, &reply);
            const char *id = json_str(reply, "message_id");
            json_t *deliveries = json_object_get(reply, "deliveries");
            if (status != 201)
                order_failed(p, "status is not 201", g, i);
            else if (!id || strlen(id) != IDS_UUID_LEN - 1)
                order_failed(p, "no message id", g, i);
            else if (!json_is_false(json_object_get(reply, "duplicate")))
                order_failed(p, "duplicate is not false", g, i);
            else if (json_integer_value(deliveries) != (i % 2 ? 2 : 3))
                order_failed(p, "wrong number of deliveries", g, i);
            if (id)
                snprintf(order_ids[g][i], IDS_UUID_LEN, "%s", id);
            json_decref(reply);
        }
    }
    if (!c)
        order_failed(p, "curl_easy_init failed", -1, -1);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return NULL;
}

static int compare_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Checks what queue delivered (msgs, in receive order): every group complete (only the even
 * messages when even_only) in publish order, each with its publish's message id, nothing twice,
 * sequence numbers rising within each group and distinct in the queue. envelope: the bodies are
 * envelopes whose Message is the published body. */
static void check_order(const char *queue, json_t *msgs, bool even_only, bool envelope)
{
    int next[ORDER_GROUPS] = {0};
    long long last_seq[ORDER_GROUPS] = {0};
    size_t n = json_array_size(msgs);
    size_t want = ORDER_GROUPS * (even_only ? ORDER_PER_GROUP / 2 : ORDER_PER_GROUP);
    ck_assert_msg(n == want, "%s delivered %zu messages, want %zu", queue, n, want);
    long long *seqs = calloc(n ? n : 1, sizeof *seqs);
    ck_assert_ptr_nonnull(seqs);
    for (size_t k = 0; k < n; k++) {
        json_t *m = json_array_get(msgs, k);
        const char *group = json_str(m, "group_id"), *seq = json_str(m, "sequence_number");
        ck_assert_msg(group && seq, "%s: message %zu lacks group_id or sequence_number", queue, k);
        int g = -1, i = -1;
        char body[64] = "";
        if (envelope) {
            json_t *e = envelope_of(m);
            snprintf(body, sizeof body, "%s", json_str(e, "Message") ? json_str(e, "Message") : "");
            bool same_group =
                json_str(e, "MessageGroupId") && strcmp(json_str(e, "MessageGroupId"), group) == 0;
            json_decref(e);
            ck_assert_msg(same_group, "%s: envelope of %s has another MessageGroupId", queue, body);
        } else {
            snprintf(body, sizeof body, "%s", json_str(m, "body") ? json_str(m, "body") : "");
        }
        ck_assert_msg(sscanf(body, "g%d-%d", &g, &i) == 2 && g >= 0 && g < ORDER_GROUPS && i >= 0 &&
                          i < ORDER_PER_GROUP,
                      "%s: unexpected body %s", queue, body);
        char want_group[16];
        snprintf(want_group, sizeof want_group, "grp-%d", g);
        ck_assert_msg(strcmp(group, want_group) == 0, "%s: %s arrived in group %s", queue, body,
                      group);
        ck_assert_msg(i == next[g], "%s: group %d delivered message %d where %d was due", queue, g,
                      i, next[g]);
        next[g] += even_only ? 2 : 1;
        long long s = atoll(seq);
        ck_assert_msg(s > last_seq[g],
                      "%s: group %d message %d has sequence number %lld after %lld", queue, g, i, s,
                      last_seq[g]);
        last_seq[g] = s;
        seqs[k] = s;
        ck_assert_msg(json_str(m, "message_id") &&
                          strcmp(json_str(m, "message_id"), order_ids[g][i]) == 0,
                      "%s: %s has message id %s, its publish returned %s", queue, body,
                      json_str(m, "message_id"), order_ids[g][i]);
    }
    for (int g = 0; g < ORDER_GROUPS; g++)
        ck_assert_msg(next[g] == ORDER_PER_GROUP, "%s: group %d stopped at %d", queue, g, next[g]);
    qsort(seqs, n, sizeof *seqs, compare_ll);
    for (size_t k = 1; k < n; k++)
        ck_assert_msg(seqs[k] != seqs[k - 1], "%s: sequence number %lld twice", queue, seqs[k]);
    free(seqs);
}

START_TEST(concurrent_publishers_keep_every_group_in_order)
{
    harness_put_queue(&srv, "ord-a.fifo", NULL, 201);
    harness_put_queue(&srv, "ord-b.fifo", NULL, 201);
    harness_put_queue(&srv, "ord-c.fifo", NULL, 201);
    put_topic("ord.fifo", NULL, 201);
    put_sub("ord.fifo", "a", "{\"queue\": \"ord-a.fifo\", \"raw_delivery\": true}", 201);
    put_sub("ord.fifo", "b", "{\"queue\": \"ord-b.fifo\"}", 201);
    put_sub("ord.fifo", "c",
            "{\"queue\": \"ord-c.fifo\", \"raw_delivery\": true, \"filter_policy\": "
            "{\"parity\": [\"even\"]}}",
            201);
    memset(order_ids, 0, sizeof order_ids);
    /* the threads outlive a failed check's jump out of here */
    static struct order_publisher p[ORDER_THREADS];
    pthread_t t[ORDER_THREADS];
    int64_t start = clock_mono_us();
    for (int k = 0; k < ORDER_THREADS; k++) {
        p[k] = (struct order_publisher){.k = k};
        snprintf(p[k].base, sizeof p[k].base, "%s", srv.base);
        ck_assert_int_eq(pthread_create(&t[k], NULL, order_publish, &p[k]), 0);
    }
    int failures = 0;
    char first[300] = "";
    for (int k = 0; k < ORDER_THREADS; k++) {
        pthread_join(t[k], NULL);
        if (p[k].failures && !failures)
            snprintf(first, sizeof first, "%s", p[k].first_failure);
        failures += p[k].failures;
    }
    int64_t published_us = clock_mono_us() - start;
    ck_assert_msg(failures == 0, "%d publishes failed, first: %s", failures, first);
    ck_assert_int_eq(harness_stored("ord-a.fifo"), ORDER_GROUPS * ORDER_PER_GROUP);
    ck_assert_int_eq(harness_stored("ord-b.fifo"), ORDER_GROUPS * ORDER_PER_GROUP);
    ck_assert_int_eq(harness_stored("ord-c.fifo"), ORDER_GROUPS * ORDER_PER_GROUP / 2);

    const struct {
        const char *queue;
        bool even_only, envelope;
    } queues[] = {
        {"ord-a.fifo", false, false},
        {"ord-b.fifo", false, true},
        {"ord-c.fifo", true, false},
    };
    for (size_t q = 0; q < sizeof queues / sizeof queues[0]; q++) {
        json_t *msgs = drain(queues[q].queue);
        check_order(queues[q].queue, msgs, queues[q].even_only, queues[q].envelope);
        json_decref(msgs);
    }
    fprintf(stderr, "topics_fifo: %d publishes by %d threads in %.0f ms, drained in %.0f ms\n",
            ORDER_GROUPS * ORDER_PER_GROUP, ORDER_THREADS, published_us / 1000.0,
            (clock_mono_us() - start - published_us) / 1000.0);
}
END_TEST

/* ---- 6. envelope and raw delivery into FIFO queues ---- */

START_TEST(fifo_envelope_and_raw_delivery)
{
    harness_put_queue(&srv, "env-e.fifo", NULL, 201);
    harness_put_queue(&srv, "env-r.fifo", NULL, 201);
    put_topic("env.fifo", NULL, 201);
    put_sub("env.fifo", "e", "{\"queue\": \"env-e.fifo\"}", 201);
    put_sub("env.fifo", "r", "{\"queue\": \"env-r.fifo\", \"raw_delivery\": true}", 201);
    char id[IDS_UUID_LEN], json_id[IDS_UUID_LEN];
    ck_assert_int_eq(publish_new("env.fifo",
                                 "{\"body\": \"hello\", \"subject\": \"Greeting\", \"group_id\": "
                                 "\"grp-1\", \"dedup_id\": \"e1\", \"attributes\": {\"k\": "
                                 "{\"type\": \"String\", \"value\": \"v\"}}}",
                                 id),
                     2);
    ck_assert_int_eq(
        publish_new("env.fifo",
                    "{\"body\": {\"ride\": 7}, \"group_id\": \"grp-1\", \"dedup_id\": \"e2\"}",
                    json_id),
        2);

    struct response r;
    json_t *msgs = receive("env-e.fifo", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    json_t *m = json_array_get(msgs, 0);
    ck_assert_str_eq(json_str(m, "message_id"), id);
    ck_assert_str_eq(json_str(m, "group_id"), "grp-1");
    ck_assert_ptr_nonnull(json_str(m, "sequence_number"));
    json_t *e = envelope_of(m);
    ck_assert_str_eq(json_str(e, "Type"), "Notification");
    ck_assert_str_eq(json_str(e, "MessageId"), id);
    ck_assert_str_eq(json_str(e, "Topic"), "env.fifo");
    ck_assert_str_eq(json_str(e, "Message"), "hello");
    ck_assert_str_eq(json_str(e, "Subject"), "Greeting");
    ck_assert_ptr_nonnull(json_str(e, "MessageGroupId"));
    ck_assert_str_eq(json_str(e, "MessageGroupId"), "grp-1");
    json_t *want = json_pack("{s:{s:s, s:s}}", "k", "Type", "String", "Value", "v");
    ck_assert_msg(json_equal(json_object_get(e, "MessageAttributes"), want), "%s",
                  buf_str(&r.body));
    json_decref(want);
    json_decref(e);
    m = json_array_get(msgs, 1);
    ck_assert_str_eq(json_str(m, "message_id"), json_id);
    e = envelope_of(m);
    ck_assert_str_eq(json_str(e, "Message"), "{\"ride\":7}");
    ck_assert_str_eq(json_str(e, "MessageGroupId"), "grp-1");
    ck_assert_ptr_null(json_object_get(e, "Subject"));
    json_decref(e);
    ck_assert_int_lt(atoll(json_str(json_array_get(msgs, 0), "sequence_number")),
                     atoll(json_str(json_array_get(msgs, 1), "sequence_number")));
    response_cleanup(&r);

    msgs = receive("env-r.fifo", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    m = json_array_get(msgs, 0);
    ck_assert_str_eq(json_str(m, "message_id"), id);
    ck_assert_str_eq(json_str(m, "group_id"), "grp-1");
    ck_assert_ptr_nonnull(json_str(m, "sequence_number"));
    ck_assert_str_eq(json_str(m, "body"), "hello");
    want = json_pack("{s:{s:s, s:s}}", "k", "type", "String", "value", "v");
    ck_assert_msg(json_equal(json_object_get(m, "attributes"), want), "%s", buf_str(&r.body));
    json_decref(want);
    m = json_array_get(msgs, 1);
    ck_assert_str_eq(json_str(m, "message_id"), json_id);
    want = json_pack("{s:i}", "ride", 7);
    ck_assert_msg(json_equal(json_object_get(m, "body"), want), "%s", buf_str(&r.body));
    json_decref(want);
    response_cleanup(&r);
}
END_TEST

/* ---- 7. batch publishing ---- */

START_TEST(fifo_batch_publish)
{
    harness_put_queue(&srv, "bp-q.fifo", NULL, 201);
    put_topic("bp.fifo", NULL, 201);
    put_sub("bp.fifo", "q", "{\"queue\": \"bp-q.fifo\", \"raw_delivery\": true}", 201);
    struct response r;
    harness_admin(&srv, "POST", "/topics/bp.fifo/messages:batch",
                  "{\"entries\": ["
                  "{\"id\": \"a\", \"body\": \"b1\", \"group_id\": \"g\", \"dedup_id\": \"x1\"}, "
                  "{\"id\": \"b\", \"body\": \"b2\", \"dedup_id\": \"x2\"}, "
                  "{\"id\": \"c\", \"body\": \"b3\", \"group_id\": \"g\", \"dedup_id\": \"x3\"}, "
                  "{\"id\": \"d\", \"body\": \"b4\", \"group_id\": \"g\", \"dedup_id\": \"x1\"}, "
                  "{\"id\": \"e\", \"body\": \"b5\", \"group_id\": \"g\"}, "
                  "{\"id\": \"f\", \"body\": \"b6\", \"group_id\": \"g\", \"dedup_id\": \"x6\"}]}",
                  &r);
    ck_assert_msg(r.status == 200, "batch: %ld %s", r.status, buf_str(&r.body));
    json_t *ok = json_object_get(r.json, "successful"), *failed = json_object_get(r.json, "failed");
    ck_assert_msg(json_array_size(ok) == 4 && json_array_size(failed) == 2, "%s", buf_str(&r.body));
    const char *ids[] = {"a", "c", "d", "f"};
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(json_str(json_array_get(ok, i), "id"), ids[i]);
    json_t *a = json_array_get(ok, 0), *c = json_array_get(ok, 1), *d = json_array_get(ok, 2),
           *f = json_array_get(ok, 3);
    char id_a[IDS_UUID_LEN], id_c[IDS_UUID_LEN], id_f[IDS_UUID_LEN];
    ck_assert_ptr_nonnull(json_str(a, "message_id"));
    ck_assert_ptr_nonnull(json_str(c, "message_id"));
    ck_assert_ptr_nonnull(json_str(f, "message_id"));
    snprintf(id_a, sizeof id_a, "%s", json_str(a, "message_id"));
    snprintf(id_c, sizeof id_c, "%s", json_str(c, "message_id"));
    snprintf(id_f, sizeof id_f, "%s", json_str(f, "message_id"));
    ck_assert(json_is_false(json_object_get(a, "duplicate")));
    ck_assert_int_eq(json_integer_value(json_object_get(a, "deliveries")), 1);
    ck_assert(json_is_false(json_object_get(c, "duplicate")));
    /* d repeats a's dedup id within the same batch */
    ck_assert_msg(json_is_true(json_object_get(d, "duplicate")), "%s", buf_str(&r.body));
    ck_assert_ptr_nonnull(json_str(d, "message_id"));
    ck_assert_str_eq(json_str(d, "message_id"), id_a);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "deliveries")), 0);
    ck_assert(json_is_false(json_object_get(f, "duplicate")));
    ck_assert_str_ne(id_a, id_c);
    /* b lacks its group, e its dedup id: each reported by its field */
    json_t *b = json_array_get(failed, 0), *e = json_array_get(failed, 1);
    ck_assert_str_eq(json_str(b, "id"), "b");
    ck_assert_str_eq(json_str(b, "code"), "invalid");
    json_t *errors = json_object_get(b, "errors");
    ck_assert_msg(json_array_size(errors) == 1 &&
                      strcmp(json_str(json_array_get(errors, 0), "field"), "entries[1].group_id") ==
                          0,
                  "%s", buf_str(&r.body));
    ck_assert_str_eq(json_str(b, "message"), "is required on a FIFO topic");
    ck_assert_str_eq(json_str(e, "id"), "e");
    errors = json_object_get(e, "errors");
    ck_assert_msg(json_array_size(errors) == 1 &&
                      strcmp(json_str(json_array_get(errors, 0), "field"), "entries[4].dedup_id") ==
                          0,
                  "%s", buf_str(&r.body));
    response_cleanup(&r);

    /* the valid ones, in order, nothing of b, d or e */
    json_t *msgs = drain("bp-q.fifo");
    ck_assert_int_eq(json_array_size(msgs), 3);
    const char *bodies[] = {"b1", "b3", "b6"};
    const char *mids[] = {id_a, id_c, id_f};
    long long prev = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        ck_assert_str_eq(json_str(m, "body"), bodies[i]);
        ck_assert_str_eq(json_str(m, "message_id"), mids[i]);
        ck_assert_str_eq(json_str(m, "group_id"), "g");
        long long s = atoll(json_str(m, "sequence_number"));
        ck_assert_int_gt(s, prev);
        prev = s;
    }
    json_decref(msgs);

    /* a later batch sees the dedup ids of this one */
    harness_admin(&srv, "POST", "/topics/bp.fifo/messages:batch",
                  "{\"entries\": [{\"id\": \"z\", \"body\": \"again\", \"group_id\": \"g\", "
                  "\"dedup_id\": \"x3\"}]}",
                  &r);
    ck_assert_int_eq(r.status, 200);
    ok = json_object_get(r.json, "successful");
    ck_assert_int_eq(json_array_size(ok), 1);
    ck_assert(json_is_true(json_object_get(json_array_get(ok, 0), "duplicate")));
    ck_assert_str_eq(json_str(json_array_get(ok, 0), "message_id"), id_c);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("bp-q.fifo"), 0);

    /* on a standard topic the FIFO fields are refused entry by entry */
    harness_put_queue(&srv, "bp-s", NULL, 201);
    put_topic("bp-plain", NULL, 201);
    put_sub("bp-plain", "s", "{\"queue\": \"bp-s\"}", 201);
    harness_admin(&srv, "POST", "/topics/bp-plain/messages:batch",
                  "{\"entries\": [{\"id\": \"a\", \"body\": \"x\"}, {\"id\": \"b\", \"body\": "
                  "\"y\", \"group_id\": \"g\"}, {\"id\": \"c\", \"body\": \"z\", \"dedup_id\": "
                  "\"d\"}]}",
                  &r);
    ck_assert_int_eq(r.status, 200);
    ok = json_object_get(r.json, "successful");
    failed = json_object_get(r.json, "failed");
    ck_assert_msg(json_array_size(ok) == 1 && json_array_size(failed) == 2, "%s", buf_str(&r.body));
    ck_assert_str_eq(json_str(json_array_get(ok, 0), "id"), "a");
    const char *fields[] = {"entries[1].group_id", "entries[2].dedup_id"};
    for (size_t i = 0; i < 2; i++) {
        json_t *err = json_array_get(json_object_get(json_array_get(failed, i), "errors"), 0);
        ck_assert_msg(json_str(err, "field") && strcmp(json_str(err, "field"), fields[i]) == 0 &&
                          strcmp(json_str(err, "message"), "applies to FIFO topics only") == 0,
                      "%s", buf_str(&r.body));
    }
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("bp-s"), 1);
}
END_TEST

/* Two publishers send batches naming the same ten groups in opposite orders (as test_races does
 * for FIFO queue batches): both must go through. A batch is one transaction holding every group
 * lock it takes; taken in the order of the entries, two such batches deadlock. To make them
 * overlap every time, the test holds the lock of the middle group until both wait; they go to
 * two gateways, so that neither waits for the other's HTTP thread. */
#define CROSS_GROUPS 10 /* one entry per group: a full batch */

struct cross_publisher {
    int k; /* 0 names the groups ascending, 1 descending */
    char base[64];
    long status;
    size_t successful;
    char reply[300];
};

/* The group of entry i of publisher k's batch. */
static int cross_group(int k, int i)
{
    return k ? CROSS_GROUPS - 1 - i : i;
}

static void *cross_publish(void *arg)
{
    struct cross_publisher *p = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    json_t *entries = json_array();
    for (int i = 0; i < CROSS_GROUPS; i++) {
        char id[16], body[48], group[16];
        snprintf(id, sizeof id, "e%d", i);
        snprintf(body, sizeof body, "p%d-e%d", p->k, i);
        snprintf(group, sizeof group, "x%d", cross_group(p->k, i));
        json_array_append_new(entries, json_pack("{s:s, s:s, s:s, s:s}", "id", id, "body", body,
                                                 "group_id", group, "dedup_id", body));
    }
    json_t *req = json_pack("{s:o}", "entries", entries);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *reply = NULL;
    p->status =
        c ? thread_post(c, headers, p->base, "/topics/cross.fifo/messages:batch", text, &reply) : 0;
    free(text);
    p->successful = json_array_size(json_object_get(reply, "successful"));
    char *r = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    snprintf(p->reply, sizeof p->reply, "%s", r ? r : "");
    free(r);
    json_decref(reply);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return NULL;
}

/* Backends of this database waiting for a lock. */
static int lock_waiters(PGconn *pg)
{
    PGresult *r = PQexec(pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND wait_event_type = 'Lock'");
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

static bool exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

START_TEST(concurrent_batches_in_opposite_group_order)
{
    start_other();
    harness_put_queue(&srv, "cross-a.fifo", NULL, 201);
    harness_put_queue(&srv, "cross-b.fifo", NULL, 201);
    put_topic("cross.fifo", NULL, 201);
    put_sub("cross.fifo", "a", "{\"queue\": \"cross-a.fifo\", \"raw_delivery\": true}", 201);
    put_sub("cross.fifo", "b", "{\"queue\": \"cross-b.fifo\", \"raw_delivery\": true}", 201);
    /* the middle group exists (one message), and the test holds its lock in the first queue */
    ck_assert_int_eq(publish_new("cross.fifo",
                                 "{\"body\": \"first\", \"group_id\": \"x5\", \"dedup_id\": \"f\"}",
                                 NULL),
                     2);
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "%s", PQerrorMessage(pg));
    bool locked = exec_ok(pg, "BEGIN") &&
                  exec_ok(pg, "SELECT 1 FROM message_groups g JOIN queues q ON q.id = g.queue_id "
                              "WHERE q.name = 'cross-a.fifo' AND g.group_id = 'x5' FOR UPDATE");
    static struct cross_publisher p[2]; /* the threads outlive a failed check's jump out of here */
    pthread_t t[2];
    for (int k = 0; locked && k < 2; k++) {
        p[k] = (struct cross_publisher){.k = k};
        snprintf(p[k].base, sizeof p[k].base, "%s", k ? other.base : srv.base);
        ck_assert_int_eq(pthread_create(&t[k], NULL, cross_publish, &p[k]), 0);
    }
    /* both batches hold their first groups and wait for the middle one (or, in a gateway that
     * orders its locks, one waits for the other) */
    int64_t deadline = clock_mono_us() + 5000000;
    int waiting = 0;
    while (locked && (waiting = lock_waiters(pg)) < 2 && clock_mono_us() < deadline)
        harness_sleep_ms(10);
    bool released = exec_ok(pg, "COMMIT");
    for (int k = 0; locked && k < 2; k++)
        pthread_join(t[k], NULL);
    PQfinish(pg);
    ck_assert_msg(locked && released, "could not hold the group lock");
    fprintf(stderr, "topics_fifo: %d batches waited for a lock before the test let go\n", waiting);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(p[k].status == 200 && p[k].successful == CROSS_GROUPS, "the %s batch: %ld %s",
                      k ? "descending" : "ascending", p[k].status, p[k].reply);
    ck_assert_int_eq(harness_stored("cross-a.fifo"), 2 * CROSS_GROUPS + 1);
    ck_assert_int_eq(harness_stored("cross-b.fifo"), 2 * CROSS_GROUPS + 1);
    /* every group holds both publishers' entries (and x5 the first message before them) */
    json_t *msgs = drain("cross-b.fifo");
    ck_assert_int_eq(json_array_size(msgs), 2 * CROSS_GROUPS + 1);
    int seen[2][CROSS_GROUPS] = {{0}};
    bool first_first = false;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *body = json_str(m, "body"), *group = json_str(m, "group_id");
        ck_assert_ptr_nonnull(body);
        ck_assert_ptr_nonnull(group);
        if (strcmp(body, "first") == 0) {
            first_first = seen[0][5] + seen[1][5] == 0;
            continue;
        }
        int k = -1, e = -1;
        ck_assert_msg(sscanf(body, "p%d-e%d", &k, &e) == 2 && k >= 0 && k < 2 && e >= 0 &&
                          e < CROSS_GROUPS,
                      "unexpected message %s", body);
        char want[8];
        snprintf(want, sizeof want, "x%d", cross_group(k, e));
        ck_assert_str_eq(group, want);
        seen[k][cross_group(k, e)]++;
    }
    json_decref(msgs);
    ck_assert(first_first);
    for (int k = 0; k < 2; k++)
        for (int g = 0; g < CROSS_GROUPS; g++)
            ck_assert_int_eq(seen[k][g], 1);
    stop_other();
}
END_TEST

/* ---- 8. the recipient list with FIFO queues ---- */

/* POST /recipient-list with req, expecting a 400 problem; returns its detail (caller frees) and
 * asserts that field, when given, is named. */
static char *recipient_list_400(const char *req, const char *field)
{
    struct response r;
    harness_admin(&srv, "POST", "/recipient-list", req, &r);
    assert_problem(&r, 400);
    ck_assert_msg(!field || problem_names_field(&r, field), "%s: %s names no %s", req,
                  buf_str(&r.body), field);
    char *detail = strdup(json_str(r.json, "detail"));
    response_cleanup(&r);
    ck_assert_ptr_nonnull(detail);
    return detail;
}

START_TEST(recipient_list_with_fifo_queues)
{
    harness_put_queue(&srv, "rl-s", NULL, 201);
    harness_put_queue(&srv, "rl-f.fifo", NULL, 201);
    char *detail =
        recipient_list_400("{\"recipients\": [\"rl-s\", \"rl-f.fifo\"], \"body\": \"x\"}", NULL);
    bool names_queue = strstr(detail, "rl-f.fifo") && strstr(detail, "group_id");
    bool names_standard = strstr(detail, "rl-s ") != NULL;
    char copy[300];
    snprintf(copy, sizeof copy, "%s", detail);
    free(detail);
    ck_assert_msg(names_queue && !names_standard, "detail: %s", copy);
    ck_assert_int_eq(harness_stored("rl-s"), 0);
    ck_assert_int_eq(harness_stored("rl-f.fifo"), 0);

    char id[IDS_UUID_LEN];
    struct response r;
    harness_admin(&srv, "POST", "/recipient-list",
                  "{\"recipients\": [\"rl-s\", \"rl-f.fifo\"], \"body\": \"first\", \"group_id\": "
                  "\"g1\"}",
                  &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "deliveries")), 2);
    ck_assert(json_is_false(json_object_get(r.json, "duplicate")));
    ck_assert_ptr_nonnull(json_str(r.json, "message_id"));
    snprintf(id, sizeof id, "%s", json_str(r.json, "message_id"));
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/recipient-list",
                  "{\"recipients\": [\"rl-f.fifo\"], \"body\": \"second\", \"group_id\": \"g1\"}",
                  &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);

    /* group_id without a FIFO recipient, dedup_id at all: refused, nothing delivered */
    free(recipient_list_400("{\"recipients\": [\"rl-s\"], \"body\": \"x\", \"group_id\": \"g1\"}",
                            "group_id"));
    free(recipient_list_400("{\"recipients\": [\"rl-f.fifo\"], \"body\": \"x\", \"group_id\": "
                            "\"g1\", \"dedup_id\": \"d\"}",
                            "dedup_id"));
    free(recipient_list_400("{\"recipients\": [\"rl-s\", \"rl-f.fifo\"], \"body\": \"x\", "
                            "\"group_id\": \"a b\"}",
                            "group_id"));
    ck_assert_int_eq(harness_stored("rl-s"), 1);
    ck_assert_int_eq(harness_stored("rl-f.fifo"), 2);

    /* the standard copy is raw; the FIFO ones are in group g1, in order */
    json_t *msgs = receive("rl-s", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "first");
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), id);
    ck_assert_ptr_null(json_object_get(json_array_get(msgs, 0), "group_id"));
    response_cleanup(&r);
    msgs = drain("rl-f.fifo");
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "first");
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), id);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "group_id"), "g1");
    ck_assert_str_eq(json_str(json_array_get(msgs, 1), "body"), "second");
    ck_assert_str_eq(json_str(json_array_get(msgs, 1), "group_id"), "g1");
    ck_assert_int_lt(atoll(json_str(json_array_get(msgs, 0), "sequence_number")),
                     atoll(json_str(json_array_get(msgs, 1), "sequence_number")));
    json_decref(msgs);
}
END_TEST

/* ---- 9 and 10. changes seen by another process ---- */

/* One probe publish through s (a fresh body and dedup id each time, in group "probe"); returns
 * the status and the deliveries of a 201 into *deliveries. */
static long probe(struct harness_server *s, const char *topic, bool with_dedup, int *deliveries)
{
    static int n;
    char body[32], req[160];
    snprintf(body, sizeof body, "probe-%d", ++n);
    if (with_dedup)
        snprintf(req, sizeof req,
                 "{\"body\": \"%s\", \"group_id\": \"probe\", \"dedup_id\": "
                 "\"%s\"}",
                 body, body);
    else
        snprintf(req, sizeof req, "{\"body\": \"%s\", \"group_id\": \"probe\"}", body);
    struct response r;
    publish_on(s, topic, req, &r);
    long status = r.status;
    *deliveries =
        status == 201 ? (int)json_integer_value(json_object_get(r.json, "deliveries")) : -1;
    response_cleanup(&r);
    return status;
}

#define SEEN_WITHIN_US 1000000

/* Probes through s until a publish answers status with deliveries (when status is 201), for
 * up to a second after since_us; until then a probe may answer stale, the status of the old
 * state. Asserts it happened and prints how long it took. */
static void probe_until(struct harness_server *s, const char *topic, bool with_dedup, long status,
                        int deliveries, long stale, int64_t since_us, const char *what)
{
    const char *who = s == &other ? "the second process" : "the first process";
    long got = 0;
    int d = -1, probes = 0;
    for (;;) {
        got = probe(s, topic, with_dedup, &d);
        probes++;
        int64_t now = clock_mono_us();
        if (got == status && (status != 201 || d == deliveries)) {
            fprintf(stderr, "topics_fifo: %s seen by %s after %.1f ms (%d probes)\n", what, who,
                    (now - since_us) / 1000.0, probes);
            return;
        }
        ck_assert_msg(got == stale || got == status, "%s: a probe through %s answered %ld", what,
                      who, got);
        ck_assert_msg(now - since_us < SEEN_WITHIN_US,
                      "%s: not seen by %s within 1 s (%d probes; the last answered %ld with %d "
                      "deliveries)",
                      what, who, probes, got, d);
        harness_sleep_ms(5);
    }
}

START_TEST(subscription_changes_reach_every_process)
{
    start_other();
    harness_put_queue(&srv, "inv-1.fifo", NULL, 201);
    harness_put_queue(&srv, "inv-2.fifo", NULL, 201);
    put_topic("inv.fifo", NULL, 201);
    put_sub("inv.fifo", "s1", "{\"queue\": \"inv-1.fifo\"}", 201);
    /* the other process reads (and caches) the topic with S1 */
    int d;
    ck_assert_int_eq(probe(&other, "inv.fifo", true, &d), 201);
    ck_assert_int_eq(d, 1);
    ck_assert_int_eq(probe(&other, "inv.fifo", true, &d), 201);
    ck_assert_int_eq(d, 1);

    /* S2 added through this process: the other one delivers to Q2 too */
    int64_t t0 = clock_mono_us();
    put_sub("inv.fifo", "s2", "{\"queue\": \"inv-2.fifo\"}", 201);
    probe_until(&other, "inv.fifo", true, 201, 2, 201, t0, "subscription added");
    ck_assert_int_ge(harness_stored("inv-2.fifo"), 1);

    /* S1 deleted: the other one stops delivering to Q1 */
    t0 = clock_mono_us();
    struct response r;
    harness_admin(&srv, "DELETE", "/topics/inv.fifo/subscriptions/s1", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    probe_until(&other, "inv.fifo", true, 201, 1, 201, t0, "subscription deleted");
    int q1 = harness_stored("inv-1.fifo"), q2 = harness_stored("inv-2.fifo");
    ck_assert_int_eq(probe(&other, "inv.fifo", true, &d), 201);
    ck_assert_int_eq(d, 1);
    ck_assert_int_eq(harness_stored("inv-1.fifo"), q1);
    ck_assert_int_eq(harness_stored("inv-2.fifo"), q2 + 1);

    /* a change by hand in SQL, through neither process: both stop delivering */
    ck_assert_int_eq(probe(&srv, "inv.fifo", true, &d), 201); /* this one cached it as well */
    t0 = clock_mono_us();
    sql_run("UPDATE subscriptions SET filter_policy = '{\"k\": [\"nomatch\"]}' WHERE name = 's2' "
            "AND topic_id = (SELECT id FROM topics WHERE name = 'inv.fifo')");
    probe_until(&other, "inv.fifo", true, 201, 0, 201, t0, "filter policy set by SQL");
    probe_until(&srv, "inv.fifo", true, 201, 0, 201, t0, "filter policy set by SQL");
    q2 = harness_stored("inv-2.fifo");
    ck_assert_int_eq(probe(&other, "inv.fifo", true, &d), 201);
    ck_assert_int_eq(harness_stored("inv-2.fifo"), q2);

    /* The control: the same change without its notification (triggers off for the session)
     * stays invisible to the other process well past a second, so it is the notification
     * above, not a short cache lifetime, that made the changes visible. Needs a superuser. */
    char *super =
        harness_sql(harness_db_url(), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
    bool superuser = super && strcmp(super, "t") == 0;
    free(super);
    if (superuser) {
        sql_run("SET session_replication_role = replica; UPDATE subscriptions SET filter_policy = "
                "NULL WHERE name = 's2' AND topic_id = (SELECT id FROM topics WHERE name = "
                "'inv.fifo')");
        harness_sleep_ms(1200);
        ck_assert_int_eq(probe(&other, "inv.fifo", true, &d), 201);
        ck_assert_msg(d == 0,
                      "a change made without NOTIFY was seen after 1.2 s: the cache does not keep "
                      "topics long, so this test cannot tell whether notifications work");
        /* a notification alone (a no-op update) makes it read the topic again */
        t0 = clock_mono_us();
        sql_run("UPDATE subscriptions SET filter_policy = filter_policy WHERE name = 's2' AND "
                "topic_id = (SELECT id FROM topics WHERE name = 'inv.fifo')");
        probe_until(&other, "inv.fifo", true, 201, 1, 201, t0, "notification of a no-op update");
    } else {
        fprintf(stderr, "topics_fifo: not a superuser, the un-notified control is skipped\n");
    }
    stop_other();
}
END_TEST

START_TEST(topic_changes_reach_every_process)
{
    start_other();
    harness_put_queue(&srv, "del-q.fifo", NULL, 201);
    put_topic("del.fifo", NULL, 201);
    put_sub("del.fifo", "q", "{\"queue\": \"del-q.fifo\"}", 201);
    int d;
    ck_assert_int_eq(probe(&other, "del.fifo", true, &d), 201);
    ck_assert_int_eq(d, 1);
    /* without content-based deduplication a dedup id is required */
    struct response r;
    publish_on(&other, "del.fifo", "{\"body\": \"x\", \"group_id\": \"g\"}", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "dedup_id"));
    response_cleanup(&r);

    /* an attribute changed through this process: the other one takes publishes without one */
    int64_t t0 = clock_mono_us();
    put_topic("del.fifo", "{\"content_based_dedup\": true}", 200);
    probe_until(&other, "del.fifo", false, 201, 1, 400, t0, "content_based_dedup turned on");

    /* deleted through this process: 404 here at once, and from the other one within 1 s */
    t0 = clock_mono_us();
    harness_admin(&srv, "DELETE", "/topics/del.fifo", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(probe(&srv, "del.fifo", true, &d), 404);
    probe_until(&other, "del.fifo", true, 404, 0, 201, t0, "topic deleted");
    harness_admin(&other, "POST", "/topics/del.fifo/messages:batch",
                  "{\"entries\": [{\"id\": \"a\", \"body\": \"x\", \"group_id\": \"g\", "
                  "\"dedup_id\": \"z\"}]}",
                  &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    int stored = harness_stored("del-q.fifo");

    /* created again: the other one reads the new topic (no subscriptions yet), then sees its
     * new subscription */
    put_topic("del.fifo", NULL, 201);
    ck_assert_int_eq(probe(&other, "del.fifo", true, &d), 201);
    ck_assert_int_eq(d, 0);
    t0 = clock_mono_us();
    put_sub("del.fifo", "q", "{\"queue\": \"del-q.fifo\", \"raw_delivery\": true}", 201);
    probe_until(&other, "del.fifo", true, 201, 1, 201, t0, "topic created again");
    ck_assert_int_eq(harness_stored("del-q.fifo"), stored + 1);
    stop_other();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topics_fifo");
    TCase *tc = tcase_create("topics_fifo");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fifo_topic_creation_rules);
    tcase_add_test(tc, fifo_subscription_rules);
    tcase_add_test(tc, publish_validation_names_the_field);
    tcase_add_test(tc, dedup_by_id_within_the_window);
    tcase_add_test(tc, a_publish_takes_its_groups_before_its_dedup_id);
    tcase_add_test(tc, dedup_by_content_and_before_filters);
    tcase_add_test(tc, concurrent_publishers_keep_every_group_in_order);
    tcase_add_test(tc, fifo_envelope_and_raw_delivery);
    tcase_add_test(tc, fifo_batch_publish);
    tcase_add_test(tc, concurrent_batches_in_opposite_group_order);
    tcase_add_test(tc, recipient_list_with_fifo_queues);
    tcase_add_test(tc, subscription_changes_reach_every_process);
    tcase_add_test(tc, topic_changes_reach_every_process);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
