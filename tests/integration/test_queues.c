/* Integration: queue management over HTTP. PUT creating (201, Location, the representation with
 * every attribute and its default) and updating (200, changed attributes, created_at kept),
 * the fifo type fixed by the name and never changed (409 on an existing queue, 400 on a new
 * one), invalid attributes answered 400 naming the field, the dead-letter queue's rules (must
 * exist, same type, not the queue itself), GET with live stats, 404 for unknown queues, the
 * paginated list, DELETE removing the queue with its messages (and detaching it where it was a
 * dead-letter queue), and the role matrix of the queue routes (service: data plane only; app:
 * nothing). */
#include "harness.h"

#include "rydes/ids.h"
#include "rydes/secret.h"

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

/* Sends a message body (JSON text of the whole request) to queue name; returns its id. */
static void send_message(const char *name, const char *body, char *message_id)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages", name);
    struct response r;
    harness_admin(&srv, "POST", path, body, &r);
    ck_assert_msg(r.status == 201, "send: %ld %s", r.status, buf_str(&r.body));
    if (message_id)
        snprintf(message_id, IDS_UUID_LEN, "%s",
                 json_string_value(json_object_get(r.json, "message_id")));
    response_cleanup(&r);
}

/* Creates a token of role through the API into secret (SECRET_TOKEN_LEN). */
static void create_token(const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"q-%s\"}", role, role);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_string_value(json_object_get(r.json, "token")));
    response_cleanup(&r);
}

static json_t *attr(const struct response *r, const char *name)
{
    return json_object_get(json_object_get(r->json, "attributes"), name);
}

static long long stat_of(const struct response *r, const char *name)
{
    json_t *v = json_object_get(json_object_get(r->json, "stats"), name);
    ck_assert_msg(json_is_integer(v), "stats.%s missing in %s", name, buf_str(&r->body));
    return json_integer_value(v);
}

START_TEST(put_creates_then_updates)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/orders", "{\"visibility_timeout\": 45}", &r);
    ck_assert_int_eq(r.status, 201);
    char loc[128];
    ck_assert(response_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, "/queues/orders");
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "name")), "orders");
    ck_assert(json_is_false(attr(&r, "fifo")));
    ck_assert_int_eq(json_integer_value(attr(&r, "visibility_timeout")), 45);
    ck_assert_int_eq(json_integer_value(attr(&r, "delay_seconds")), 0);
    ck_assert_int_eq(json_integer_value(attr(&r, "retention_seconds")), 345600);
    ck_assert_int_eq(json_integer_value(attr(&r, "max_message_bytes")), 262144);
    ck_assert_int_eq(json_integer_value(attr(&r, "receive_wait_seconds")), 0);
    ck_assert(json_is_false(attr(&r, "content_based_dedup")));
    ck_assert(json_is_null(attr(&r, "dead_letter")));
    ck_assert_int_eq(stat_of(&r, "available"), 0);
    ck_assert_int_eq(stat_of(&r, "in_flight"), 0);
    ck_assert_int_eq(stat_of(&r, "delayed"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "links"), "self")),
                     "/queues/orders");
    const char *created = json_string_value(json_object_get(r.json, "created_at"));
    ck_assert_ptr_nonnull(created);
    ck_assert_int_eq(strlen(created), 24); /* 2026-11-26T12:00:00.123Z */
    ck_assert_int_eq(created[23], 'Z');
    char created_at[32];
    snprintf(created_at, sizeof created_at, "%s", created);
    response_cleanup(&r);

    harness_admin(&srv, "PUT", "/queues/orders",
                  "{\"visibility_timeout\": 60, \"delay_seconds\": 5, \"receive_wait_seconds\": 2}",
                  &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(!response_header(&r, "Location", loc, sizeof loc));
    ck_assert_int_eq(json_integer_value(attr(&r, "visibility_timeout")), 60);
    ck_assert_int_eq(json_integer_value(attr(&r, "delay_seconds")), 5);
    ck_assert_int_eq(json_integer_value(attr(&r, "receive_wait_seconds")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "created_at")), created_at);
    response_cleanup(&r);

    /* a PUT replaces the attributes: what is absent goes back to its default */
    harness_admin(&srv, "PUT", "/queues/orders", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(attr(&r, "visibility_timeout")), 30);
    ck_assert_int_eq(json_integer_value(attr(&r, "delay_seconds")), 0);
    response_cleanup(&r);

    harness_admin(&srv, "GET", "/queues/orders", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(attr(&r, "visibility_timeout")), 30);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "created_at")), created_at);
    response_cleanup(&r);
}
END_TEST

START_TEST(fifo_queue_representation)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/jobs.fifo", "{\"content_based_dedup\": true}", &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert(json_is_true(attr(&r, "fifo")));
    ck_assert(json_is_true(attr(&r, "content_based_dedup")));
    response_cleanup(&r);
    harness_put_queue(&srv, "jobs.fifo", "{\"fifo\": true}", 200);
}
END_TEST

START_TEST(changing_fifo_of_an_existing_queue_is_409)
{
    harness_put_queue(&srv, "typed", NULL, 201);
    harness_put_queue(&srv, "typed.fifo", NULL, 201);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/typed", "{\"fifo\": true}", &r);
    assert_problem(&r, 409);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/typed.fifo", "{\"fifo\": false}", &r);
    assert_problem(&r, 409);
    response_cleanup(&r);
    /* and nothing changed */
    harness_admin(&srv, "GET", "/queues/typed", NULL, &r);
    ck_assert(json_is_false(attr(&r, "fifo")));
    response_cleanup(&r);
}
END_TEST

START_TEST(new_queue_type_and_name_must_agree)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/newq", "{\"fifo\": true}", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "fifo"));
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/newq.fifo", "{\"fifo\": false}", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "fifo"));
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/queues/newq", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);

    char long_name[82];
    memset(long_name, 'a', 81);
    long_name[81] = '\0';
    const char *bad_names[] = {"a.b", "q.FIFO", ".fifo", long_name};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/queues/%s", bad_names[i]);
        harness_admin(&srv, "PUT", path, "{}", &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, "name"), "%s: %s", path, buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(invalid_attributes_are_400_naming_the_field)
{
    const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{\"visibility_timeout\": 43201}", "visibility_timeout"},
        {"{\"visibility_timeout\": -1}", "visibility_timeout"},
        {"{\"delay_seconds\": 901}", "delay_seconds"},
        {"{\"retention_seconds\": 59}", "retention_seconds"},
        {"{\"max_message_bytes\": 1023}", "max_message_bytes"},
        {"{\"receive_wait_seconds\": 21}", "receive_wait_seconds"},
        {"{\"content_based_dedup\": true}", "content_based_dedup"},
        {"{\"dead_letter\": {\"queue\": \"d\", \"max_receive_count\": 0}}",
         "dead_letter.max_receive_count"},
        {"{\"dead_letter\": {\"queue\": \"d e\", \"max_receive_count\": 1}}", "dead_letter.queue"},
        {"{\"dead_letter\": {\"queue\": \"d\", \"max_receive_count\": 1, \"x\": 1}}",
         "dead_letter.x"},
        {"{\"dead_letter\": \"d\"}", "dead_letter"},
        {"{\"visibility\": 5}", "visibility"},
        {"[1]", "body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "PUT", "/queues/v", cases[i].body, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i].field), "%s: %s", cases[i].body,
                      buf_str(&r.body));
        response_cleanup(&r);
    }
    struct response r;
    harness_admin(&srv, "PUT", "/queues/v", "{\"visibility_timeout\": ", &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/queues/v", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

/* A dead-letter queue refused for what it is (missing, the queue itself, another type, a cycle)
 * is an error on dead_letter.queue. */
static void assert_dead_letter_queue_refused(const struct response *r)
{
    assert_problem(r, 400);
    ck_assert_msg(problem_names_field(r, "dead_letter.queue"), "%s", buf_str(&r->body));
}

START_TEST(dead_letter_queue_rules)
{
    harness_put_queue(&srv, "dlq", NULL, 201);
    harness_put_queue(&srv, "dlq.fifo", NULL, 201);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/src",
                  "{\"dead_letter\": {\"queue\": \"nope\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/src",
                  "{\"dead_letter\": {\"queue\": \"dlq.fifo\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/src.fifo",
                  "{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/src",
                  "{\"dead_letter\": {\"queue\": \"src\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    response_cleanup(&r);
    /* not even once it exists */
    harness_put_queue(&srv, "src", NULL, 201);
    harness_admin(&srv, "PUT", "/queues/src",
                  "{\"dead_letter\": {\"queue\": \"src\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    response_cleanup(&r);

    harness_admin(&srv, "PUT", "/queues/src",
                  "{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 3}}", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *dl = attr(&r, "dead_letter");
    ck_assert_str_eq(json_string_value(json_object_get(dl, "queue")), "dlq");
    ck_assert_int_eq(json_integer_value(json_object_get(dl, "max_receive_count")), 3);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/src.fifo",
                  "{\"dead_letter\": {\"queue\": \"dlq.fifo\", \"max_receive_count\": 1}}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    /* no cycles: src -> dlq, then dlq -> mid -> src would bounce a message for ever */
    harness_put_queue(&srv, "mid",
                      "{\"dead_letter\": {\"queue\": \"src\", \"max_receive_count\": 3}}", 201);
    harness_admin(&srv, "PUT", "/queues/dlq",
                  "{\"dead_letter\": {\"queue\": \"mid\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r);
    ck_assert_msg(strstr(buf_str(&r.body), "leads back"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/dlq",
                  "{\"dead_letter\": {\"queue\": \"dlq.fifo\", \"max_receive_count\": 3}}", &r);
    assert_dead_letter_queue_refused(&r); /* (another type) */
    response_cleanup(&r);
    harness_put_queue(&srv, "end", NULL, 201); /* a chain without a cycle is fine */
    harness_admin(&srv, "PUT", "/queues/dlq",
                  "{\"dead_letter\": {\"queue\": \"end\", \"max_receive_count\": 3}}", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    /* a PUT without dead_letter removes it */
    harness_admin(&srv, "PUT", "/queues/src", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_null(attr(&r, "dead_letter")));
    response_cleanup(&r);
}
END_TEST

START_TEST(get_reports_stats)
{
    harness_put_queue(&srv, "stats", "{\"visibility_timeout\": 60}", 201);
    send_message("stats", "{\"body\": \"a\"}", NULL);
    send_message("stats", "{\"body\": \"b\"}", NULL);
    send_message("stats", "{\"body\": \"c\", \"delay_seconds\": 60}", NULL);
    struct response r;
    harness_admin(&srv, "POST", "/queues/stats/messages:receive", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);

    harness_admin(&srv, "GET", "/queues/stats", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(stat_of(&r, "available"), 1);
    ck_assert_int_eq(stat_of(&r, "in_flight"), 1);
    ck_assert_int_eq(stat_of(&r, "delayed"), 1);
    ck_assert_int_ge(stat_of(&r, "oldest_age_seconds"), 0);
    ck_assert_int_le(stat_of(&r, "oldest_age_seconds"), 5);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "name")), "stats");
    ck_assert(json_is_object(json_object_get(r.json, "links")));
    response_cleanup(&r);

    /* the age of the oldest message is measured from its sent_at */
    free(harness_sql(harness_db_url(), "UPDATE messages SET sent_at = now() - interval '100 s' "
                                       "WHERE body = 'a'"));
    harness_admin(&srv, "GET", "/queues/stats", NULL, &r);
    ck_assert_int_ge(stat_of(&r, "oldest_age_seconds"), 100);
    ck_assert_int_le(stat_of(&r, "oldest_age_seconds"), 105);
    response_cleanup(&r);
}
END_TEST

START_TEST(unknown_queue_is_404)
{
    const char *paths[] = {"/queues/nope", "/queues/a.b", "/queues/nope.fifo"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct response r;
        harness_admin(&srv, "GET", paths[i], NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        harness_admin(&srv, "DELETE", paths[i], NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
    struct response r;
    harness_admin(&srv, "POST", "/queues/nope/messages", "{\"body\": \"x\"}", &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/nope/messages:receive", "{}", &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/nope:purge", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

START_TEST(list_paginates)
{
    const char *names[] = {"list-e", "list-a", "list-d.fifo", "list-c", "list-b"};
    for (size_t i = 0; i < 5; i++)
        harness_put_queue(&srv, names[i], NULL, 201);
    char *total_text = harness_sql(harness_db_url(), "SELECT count(*) FROM queues");
    int total = atoi(total_text);
    free(total_text);
    ck_assert_int_ge(total, 5);

    int seen, ours, pages;
    harness_walk_names(&srv, "/queues", "queues", "list-", &seen, &ours, &pages);
    ck_assert_int_eq(seen, total);
    ck_assert_int_eq(ours, 5);
    ck_assert_int_eq(pages, (total + 1) / 2);

    const char *bad[] = {"/queues?limit=0", "/queues?limit=1001", "/queues?limit=x",
                         "/queues?limit=-1", "/queues?after=a.b"};
    const char *fields[] = {"limit", "limit", "limit", "limit", "after"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct response r;
        harness_admin(&srv, "GET", bad[i], NULL, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, fields[i]), "%s: %s", bad[i], buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

static char *queue_id(const char *name)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT id FROM queues WHERE name = '%s'", name);
    char *id = harness_sql(harness_db_url(), sql);
    ck_assert_ptr_nonnull(id);
    return id;
}

static int count_where(const char *table, const char *id)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE queue_id = %s", table, id);
    char *n = harness_sql(harness_db_url(), sql);
    int v = atoi(n);
    free(n);
    return v;
}

START_TEST(delete_removes_the_queue_and_its_messages)
{
    harness_put_queue(&srv, "doomed", NULL, 201);
    harness_put_queue(&srv, "doomed.fifo", "{\"content_based_dedup\": true}", 201);
    harness_put_queue(&srv, "bystander", NULL, 201);
    send_message("doomed", "{\"body\": \"1\"}", NULL);
    send_message("doomed", "{\"body\": \"2\"}", NULL);
    send_message("doomed.fifo", "{\"body\": \"1\", \"group_id\": \"g\"}", NULL);
    send_message("bystander", "{\"body\": \"stays\"}", NULL);
    char *id = queue_id("doomed"), *fid = queue_id("doomed.fifo"), *bid = queue_id("bystander");
    ck_assert_int_eq(count_where("messages", id), 2);
    ck_assert_int_eq(count_where("message_groups", fid), 1);
    ck_assert_int_eq(count_where("dedup_entries", fid), 1);

    const char *paths[] = {"/queues/doomed", "/queues/doomed.fifo"};
    for (int i = 0; i < 2; i++) {
        struct response r;
        harness_admin(&srv, "DELETE", paths[i], NULL, &r);
        ck_assert_int_eq(r.status, 204);
        ck_assert_int_eq(r.body.len, 0);
        response_cleanup(&r);
        harness_admin(&srv, "GET", paths[i], NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
        harness_admin(&srv, "DELETE", paths[i], NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
    ck_assert_int_eq(count_where("messages", id), 0);
    ck_assert_int_eq(count_where("messages", fid), 0);
    ck_assert_int_eq(count_where("message_groups", fid), 0);
    /* its dedup ids are the sweeper's (deleting them here deadlocked with batch sends) */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM dedup_entries WHERE queue_id = %s", fid);
    ck_assert_int_eq(harness_wait_sql(sql, 0, 10), 0);
    ck_assert_int_eq(count_where("messages", bid), 1);

    /* the name can be used again, for a fresh empty queue */
    harness_put_queue(&srv, "doomed", NULL, 201);
    struct response r;
    harness_admin(&srv, "GET", "/queues/doomed", NULL, &r);
    ck_assert_int_eq(stat_of(&r, "available"), 0);
    response_cleanup(&r);
    free(id);
    free(fid);
    free(bid);
}
END_TEST

START_TEST(deleting_a_dead_letter_queue_detaches_it)
{
    harness_put_queue(&srv, "dl-target", NULL, 201);
    harness_put_queue(&srv, "dl-source",
                      "{\"dead_letter\": {\"queue\": \"dl-target\", \"max_receive_count\": 2}}",
                      201);
    struct response r;
    harness_admin(&srv, "DELETE", "/queues/dl-target", NULL, &r);
    ck_assert_msg(r.status == 204, "DELETE of a queue used as a dead-letter queue: %ld %s",
                  r.status, buf_str(&r.body));
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/queues/dl-source", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_null(attr(&r, "dead_letter")));
    response_cleanup(&r);
}
END_TEST

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
    harness_put_queue(&srv, "roles", NULL, 201);
    harness_put_queue(&srv, "roles-dlq", NULL, 201);

    /* service: the data plane, and reading queues */
    ck_assert_int_eq(status_of("GET", "/queues", service, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/queues/roles", service, NULL), 200);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages", service, "{\"body\": \"s\"}"),
                     201);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages:batch", service,
                               "{\"entries\": [{\"id\": \"a\", \"body\": \"b\"}]}"),
                     200);
    struct response r;
    harness_request(&srv, "POST", "/queues/roles/messages:receive", service, "{}", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *m = json_array_get(json_object_get(r.json, "messages"), 0);
    ck_assert_ptr_nonnull(m);
    char path[256];
    snprintf(path, sizeof path, "/queues/roles/messages/%s",
             json_string_value(json_object_get(m, "receipt")));
    response_cleanup(&r);
    ck_assert_int_eq(status_of("PATCH", path, service, "{\"visibility_timeout\": 5}"), 204);
    ck_assert_int_eq(status_of("DELETE", path, service, NULL), 204);
    ck_assert_int_eq(
        status_of("POST", "/queues/roles/messages:delete", service, "{\"receipts\": [\"x\"]}"),
        200);

    /* ... but not management */
    ck_assert_int_eq(status_of("PUT", "/queues/roles", service, "{}"), 403);
    ck_assert_int_eq(status_of("PUT", "/queues/svc-new", service, "{}"), 403);
    ck_assert_int_eq(status_of("DELETE", "/queues/roles", service, NULL), 403);
    ck_assert_int_eq(status_of("POST", "/queues/roles:purge", service, NULL), 403);
    ck_assert_int_eq(status_of("GET", "/queues/roles/messages:peek", service, NULL), 403);
    ck_assert_int_eq(status_of("POST", "/queues/roles-dlq:redrive", service, "{}"), 403);

    /* app: none of it */
    ck_assert_int_eq(status_of("GET", "/queues", app, NULL), 403);
    ck_assert_int_eq(status_of("GET", "/queues/roles", app, NULL), 403);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages", app, "{\"body\": \"a\"}"), 403);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages:batch", app,
                               "{\"entries\": [{\"id\": \"a\", \"body\": \"b\"}]}"),
                     403);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages:receive", app, "{}"), 403);
    ck_assert_int_eq(status_of("DELETE", path, app, NULL), 403);
    ck_assert_int_eq(status_of("PUT", "/queues/roles", app, "{}"), 403);

    /* no token at all */
    ck_assert_int_eq(status_of("GET", "/queues", NULL, NULL), 401);
    ck_assert_int_eq(status_of("POST", "/queues/roles/messages", NULL, "{\"body\": \"a\"}"), 401);

    /* the refused requests changed nothing: the queue still holds exactly one message */
    harness_admin(&srv, "GET", "/queues/roles", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(stat_of(&r, "available") + stat_of(&r, "in_flight"), 1);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/queues/svc-new", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queues");
    TCase *tc = tcase_create("queues");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, put_creates_then_updates);
    tcase_add_test(tc, fifo_queue_representation);
    tcase_add_test(tc, changing_fifo_of_an_existing_queue_is_409);
    tcase_add_test(tc, new_queue_type_and_name_must_agree);
    tcase_add_test(tc, invalid_attributes_are_400_naming_the_field);
    tcase_add_test(tc, dead_letter_queue_rules);
    tcase_add_test(tc, get_reports_stats);
    tcase_add_test(tc, unknown_queue_is_404);
    tcase_add_test(tc, list_paginates);
    tcase_add_test(tc, delete_removes_the_queue_and_its_messages);
    tcase_add_test(tc, deleting_a_dead_letter_queue_detaches_it);
    tcase_add_test(tc, role_matrix);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
