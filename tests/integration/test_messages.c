/* Integration: the message data plane of standard queues over HTTP. Send (201, message id, MD5
 * of the body; JSON bodies and attributes round-trip; bad input 400 with nothing enqueued), send
 * batches (per-entry success and failure, envelope rules), receive (defaults, max_messages,
 * receive_count and first_received_at across visibility timeouts, delete:true at-most-once),
 * receipts (delete idempotent with the latest receipt, superseded receipts 409 leaving the
 * message alone, malformed ones and those of another queue 404), changing visibility (extend,
 * release with 0, receivable at once even behind a long run of newer claims), batch delete,
 * per-message and queue-level delays, dead-lettering after max_receive_count (body, attributes,
 * sent_at and count kept; never delivered once more) and redrive, purge, peek and stats, and long
 * polling (woken by a send, by a delayed message coming due, timing out empty, and 50 concurrent
 * polls sharing 50 messages exactly once). */
#include "harness.h"

#include "rydes/mq.h"

#include "rydes/clock.h"
#include "rydes/ids.h"
#include "rydes/mq_hub.h"
#include "rydes/secret.h"
#include "rydes/ttlcache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* POSTs body to /queues/{queue}{suffix} as admin into r and asserts the status. */
static void post(const char *queue, const char *suffix, const char *body, long status,
                 struct response *r)
{
    char path[256];
    snprintf(path, sizeof path, "/queues/%s%s", queue, suffix);
    harness_admin(&srv, "POST", path, body, r);
    ck_assert_msg(r->status == status, "POST %s %s: %ld %s", path, body ? body : "", r->status,
                  buf_str(&r->body));
}

/* Sends one message (request is the whole JSON body); copies its id when message_id != NULL. */
static void send_msg(const char *queue, const char *request, char *message_id)
{
    struct response r;
    post(queue, "/messages", request, 201, &r);
    if (message_id)
        snprintf(message_id, IDS_UUID_LEN, "%s", json_str(r.json, "message_id"));
    response_cleanup(&r);
}

/* Receives with request (JSON text); returns the messages array, owned by r. */
static json_t *receive(const char *queue, const char *request, struct response *r)
{
    post(queue, "/messages:receive", request, 200, r);
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert_msg(json_is_array(msgs), "%s", buf_str(&r->body));
    return msgs;
}

/* Receives and returns how many messages came back (the response is freed). */
static size_t receive_n(const char *queue, const char *request)
{
    struct response r;
    size_t n = json_array_size(receive(queue, request, &r));
    response_cleanup(&r);
    return n;
}

static long status_of(const char *method, const char *path, const char *body)
{
    struct response r;
    harness_admin(&srv, method, path, body, &r);
    long st = r.status;
    if (st >= 400)
        assert_problem(&r, st);
    response_cleanup(&r);
    return st;
}

static long delete_receipt(const char *queue, const char *receipt)
{
    char path[256];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, receipt);
    return status_of("DELETE", path, NULL);
}

static long change_visibility(const char *queue, const char *receipt, int seconds)
{
    char path[256], body[64];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, receipt);
    snprintf(body, sizeof body, "{\"visibility_timeout\": %d}", seconds);
    return status_of("PATCH", path, body);
}

static long long stat_of(const char *queue, const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s", queue);
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *v = json_object_get(json_object_get(r.json, "stats"), name);
    ck_assert_msg(json_is_integer(v), "%s", buf_str(&r.body));
    long long n = json_integer_value(v);
    response_cleanup(&r);
    return n;
}

static void assert_timestamp(const char *t)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(strlen(t), 24);
    ck_assert_int_eq(t[10], 'T');
    ck_assert_int_eq(t[23], 'Z');
}

/* ---- send ---- */

START_TEST(send_returns_id_and_md5)
{
    harness_put_queue(&srv, "send", NULL, 201);
    struct response r;
    post("send", "/messages", "{\"body\": \"hello world\"}", 201, &r);
    char md5[33];
    secret_md5_hex("hello world", 11, md5);
    ck_assert_str_eq(json_str(r.json, "md5_of_body"), md5);
    ck_assert_str_eq(md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
    const char *id = json_str(r.json, "message_id");
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(strlen(id), 36);
    ck_assert_ptr_null(json_object_get(r.json, "sequence_number"));
    char sent_id[IDS_UUID_LEN];
    snprintf(sent_id, sizeof sent_id, "%s", id);
    response_cleanup(&r);

    /* a JSON body's MD5 is that of its compact text */
    post("send", "/messages", "{\"body\": {\"a\": 1, \"b\": [true, null]}}", 201, &r);
    const char *compact = "{\"a\":1,\"b\":[true,null]}";
    secret_md5_hex(compact, strlen(compact), md5);
    ck_assert_str_eq(json_str(r.json, "md5_of_body"), md5);
    char json_id[IDS_UUID_LEN];
    snprintf(json_id, sizeof json_id, "%s", json_str(r.json, "message_id"));
    ck_assert_str_ne(json_id, sent_id);
    response_cleanup(&r);

    /* a string that happens to be JSON text stays a string */
    send_msg("send", "{\"body\": \"{\\\"a\\\": 1}\"}", NULL);

    json_t *msgs = receive("send", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 3);
    json_t *m0 = json_array_get(msgs, 0), *m1 = json_array_get(msgs, 1),
           *m2 = json_array_get(msgs, 2);
    ck_assert_str_eq(json_str(m0, "message_id"), sent_id);
    ck_assert_str_eq(json_str(m0, "body"), "hello world");
    ck_assert_str_eq(json_str(m1, "message_id"), json_id);
    json_t *expected = json_loads("{\"a\": 1, \"b\": [true, null]}", 0, NULL);
    ck_assert_msg(json_equal(json_object_get(m1, "body"), expected), "%s", buf_str(&r.body));
    json_decref(expected);
    ck_assert(json_is_string(json_object_get(m2, "body")));
    ck_assert_str_eq(json_str(m2, "body"), "{\"a\": 1}");
    response_cleanup(&r);
}
END_TEST

START_TEST(attributes_round_trip)
{
    harness_put_queue(&srv, "attrs", NULL, 201);
    const char *attrs = "{\"fare\": {\"type\": \"Number\", \"value\": \"12.50\"}, "
                        "\"who\": {\"type\": \"String\", \"value\": \"unicorn \\u00e9\"}, "
                        "\"blob\": {\"type\": \"Binary\", \"value\": \"AAEC\"}, "
                        "\"n\": {\"type\": \"Number.int\", \"value\": \"-3\"}}";
    char request[512];
    snprintf(request, sizeof request, "{\"body\": \"x\", \"attributes\": %s}", attrs);
    send_msg("attrs", request, NULL);
    send_msg("attrs", "{\"body\": \"bare\"}", NULL);
    struct response r;
    json_t *msgs = receive("attrs", "{\"max_messages\": 2}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    json_t *expected = json_loads(attrs, 0, NULL);
    ck_assert_msg(json_equal(json_object_get(json_array_get(msgs, 0), "attributes"), expected),
                  "%s", buf_str(&r.body));
    json_t *none = json_object_get(json_array_get(msgs, 1), "attributes");
    ck_assert(json_is_object(none));
    ck_assert_int_eq(json_object_size(none), 0);
    json_decref(expected);
    response_cleanup(&r);
}
END_TEST

START_TEST(send_refuses_bad_input)
{
    harness_put_queue(&srv, "strict", "{\"max_message_bytes\": 1024}", 201);
    char big[1200] = "{\"body\": \"";
    memset(big + strlen(big), 'x', 1025);
    strcat(big, "\"}");
    const struct {
        const char *body;
        const char *field; /* NULL: a 400 without field errors */
    } cases[] = {
        {"{}", "body"},
        {"{\"body\": \"\"}", "body"},
        {"{\"body\": null}", "body"},
        {"{\"body\": \"x\", \"attributes\": {\"AWS.x\": {\"type\": \"String\", \"value\": "
         "\"v\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"attributes\": {\"n\": {\"type\": \"Number\", \"value\": \"abc\"}}}",
         "attributes"},
        {"{\"body\": \"x\", \"delay_seconds\": 901}", "delay_seconds"},
        {"{\"body\": \"x\", \"group_id\": \"g\"}", "group_id"},
        {"{\"body\": \"x\", \"bogus\": 1}", "bogus"},
        {big, "body"},
        {"[\"x\"]", NULL},
        {"\"x\"", NULL},
        {"{\"body\": ", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/strict/messages", cases[i].body, &r);
        assert_problem(&r, 400);
        if (cases[i].field)
            ck_assert_msg(problem_names_field(&r, cases[i].field), "case %zu: %s", i,
                          buf_str(&r.body));
        response_cleanup(&r);
    }
    struct response r;
    harness_admin(&srv, "POST", "/queues/strict/messages", NULL, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("strict"), 0);
    /* exactly max_message_bytes is fine */
    big[strlen(big) - 3] = '\0';
    strcat(big, "\"}");
    send_msg("strict", big, NULL);
    ck_assert_int_eq(harness_stored("strict"), 1);
}
END_TEST

/* ---- batches ---- */

static json_t *by_id(json_t *list, const char *id)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(json_str(json_array_get(list, i), "id"), id) == 0)
            return json_array_get(list, i);
    return NULL;
}

START_TEST(batch_reports_each_entry)
{
    harness_put_queue(&srv, "batch", NULL, 201);
    struct response r;
    post("batch", "/messages:batch",
         "{\"entries\": [{\"id\": \"a\", \"body\": \"one\"}, {\"id\": \"b\", \"body\": \"\"}, "
         "{\"id\": \"c\", \"body\": \"three\", \"delay_seconds\": 901}, "
         "{\"id\": \"d\", \"body\": {\"four\": 4}}, "
         "{\"id\": \"e\", \"body\": \"five\", \"attributes\": {\"x\": {\"type\": \"Strin\", "
         "\"value\": \"v\"}}}]}",
         200, &r);
    json_t *ok = json_object_get(r.json, "successful"), *failed = json_object_get(r.json, "failed");
    ck_assert_int_eq(json_array_size(ok), 2);
    ck_assert_int_eq(json_array_size(failed), 3);
    char md5[33];
    secret_md5_hex("one", 3, md5);
    ck_assert_str_eq(json_str(by_id(ok, "a"), "md5_of_body"), md5);
    ck_assert_int_eq(strlen(json_str(by_id(ok, "a"), "message_id")), 36);
    ck_assert_ptr_nonnull(by_id(ok, "d"));
    char id_a[IDS_UUID_LEN], id_d[IDS_UUID_LEN];
    snprintf(id_a, sizeof id_a, "%s", json_str(by_id(ok, "a"), "message_id"));
    snprintf(id_d, sizeof id_d, "%s", json_str(by_id(ok, "d"), "message_id"));
    const char *bad[] = {"b", "c", "e"};
    for (int i = 0; i < 3; i++) {
        json_t *f = by_id(failed, bad[i]);
        ck_assert_msg(f != NULL, "entry %s not among the failed: %s", bad[i], buf_str(&r.body));
        ck_assert_ptr_nonnull(json_str(f, "code"));
        ck_assert_ptr_nonnull(json_str(f, "message"));
    }
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("batch"), 2);
    json_t *msgs = receive("batch", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), id_a);
    ck_assert_str_eq(json_str(json_array_get(msgs, 1), "message_id"), id_d);
    response_cleanup(&r);
}
END_TEST

START_TEST(batch_envelope_rules)
{
    harness_put_queue(&srv, "envelope", NULL, 201);
    char eleven[1024] = "{\"entries\": [";
    for (int i = 0; i < 11; i++) {
        size_t n = strlen(eleven);
        snprintf(eleven + n, sizeof eleven - n, "%s{\"id\": \"e%d\", \"body\": \"b\"}",
                 i ? ", " : "", i);
    }
    strcat(eleven, "]}");
    const char *bodies[] = {
        "{\"entries\": [{\"id\": \"a\", \"body\": \"1\"}, {\"id\": \"a\", \"body\": \"2\"}]}",
        eleven,
        "{\"entries\": []}",
        "{}",
        "{\"entries\": {\"id\": \"a\", \"body\": \"1\"}}",
        "{\"entries\": [{\"body\": \"1\"}]}",
        "{\"entries\": [{\"id\": \"a b\", \"body\": \"1\"}]}",
        "{\"entries\": [\"x\"]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/envelope/messages:batch", bodies[i], &r);
        assert_problem(&r, 400);
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("envelope"), 0);
    /* ten is the most */
    eleven[strlen(eleven) - 2] = '\0';
    char *last = strrchr(eleven, '{');
    strcpy(last - 2, "]}");
    struct response r;
    post("envelope", "/messages:batch", eleven, 200, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "successful")), 10);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("envelope"), 10);
}
END_TEST

/* ---- receive ---- */

START_TEST(receive_defaults_and_max_messages)
{
    harness_put_queue(&srv, "recv", NULL, 201);
    struct response r;
    post("recv", "/messages:batch",
         "{\"entries\": [{\"id\": \"1\", \"body\": \"m1\"}, {\"id\": \"2\", \"body\": \"m2\"}, "
         "{\"id\": \"3\", \"body\": \"m3\"}, {\"id\": \"4\", \"body\": \"m4\"}, "
         "{\"id\": \"5\", \"body\": \"m5\"}, {\"id\": \"6\", \"body\": \"m6\"}]}",
         200, &r);
    response_cleanup(&r);
    post("recv", "/messages:batch",
         "{\"entries\": [{\"id\": \"7\", \"body\": \"m7\"}, {\"id\": \"8\", \"body\": \"m8\"}, "
         "{\"id\": \"9\", \"body\": \"m9\"}, {\"id\": \"10\", \"body\": \"m10\"}, "
         "{\"id\": \"11\", \"body\": \"m11\"}, {\"id\": \"12\", \"body\": \"m12\"}]}",
         200, &r);
    response_cleanup(&r);

    /* no body at all: one message */
    json_t *msgs = receive("recv", NULL, &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    json_t *m = json_array_get(msgs, 0);
    ck_assert_str_eq(json_str(m, "body"), "m1");
    ck_assert_int_eq(strlen(json_str(m, "message_id")), 36);
    const char *receipt = json_str(m, "receipt");
    ck_assert_ptr_nonnull(receipt);
    ck_assert_int_eq(strlen(receipt), MQ_RECEIPT_LEN - 1);
    ck_assert_int_eq(strspn(receipt, "0123456789abcdef"), MQ_RECEIPT_LEN - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 1);
    assert_timestamp(json_str(m, "sent_at"));
    assert_timestamp(json_str(m, "first_received_at"));
    ck_assert(json_is_object(json_object_get(m, "attributes")));
    ck_assert_ptr_null(json_object_get(m, "group_id"));
    ck_assert_ptr_null(json_object_get(m, "sequence_number"));
    response_cleanup(&r);

    ck_assert_int_eq(receive_n("recv", "{}"), 1);
    ck_assert_int_eq(receive_n("recv", "{\"max_messages\": 10}"), 10);
    ck_assert_int_eq(receive_n("recv", "{\"max_messages\": 10}"), 0);

    const char *bad[] = {"{\"max_messages\": 0}",
                         "{\"max_messages\": 11}",
                         "{\"wait_seconds\": 21}",
                         "{\"visibility_timeout\": -1}",
                         "{\"delete\": 1}",
                         "{\"maxMessages\": 2}",
                         "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        harness_admin(&srv, "POST", "/queues/recv/messages:receive", bad[i], &r);
        assert_problem(&r, 400);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(receive_count_and_first_received_at)
{
    harness_put_queue(&srv, "again", "{\"visibility_timeout\": 1}", 201);
    send_msg("again", "{\"body\": \"x\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("again", "{}", &r), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 1);
    char first[32], receipt[MQ_RECEIPT_LEN], sent[32];
    snprintf(first, sizeof first, "%s", json_str(m, "first_received_at"));
    snprintf(sent, sizeof sent, "%s", json_str(m, "sent_at"));
    snprintf(receipt, sizeof receipt, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    ck_assert_int_eq(receive_n("again", "{}"), 0); /* still leased */
    harness_sleep_ms(1100);
    m = json_array_get(receive("again", "{}", &r), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    ck_assert_str_eq(json_str(m, "first_received_at"), first);
    ck_assert_str_eq(json_str(m, "sent_at"), sent);
    ck_assert_str_ne(json_str(m, "receipt"), receipt);
    response_cleanup(&r);
}
END_TEST

START_TEST(delete_by_receipt_is_idempotent)
{
    harness_put_queue(&srv, "del", NULL, 201);
    send_msg("del", "{\"body\": \"x\"}", NULL);
    send_msg("del", "{\"body\": \"y\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("del", "{}", &r), 0);
    char receipt[MQ_RECEIPT_LEN];
    snprintf(receipt, sizeof receipt, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    ck_assert_int_eq(delete_receipt("del", receipt), 204);
    ck_assert_int_eq(harness_stored("del"), 1);
    ck_assert_int_eq(delete_receipt("del", receipt), 204);
    ck_assert_int_eq(harness_stored("del"), 1);
    /* malformed receipts are unknown */
    ck_assert_int_eq(delete_receipt("del", "garbage"), 404);
    ck_assert_int_eq(delete_receipt("del", "0123456789abcdef0123456789abcdeg"), 404);
    ck_assert_int_eq(delete_receipt("del", "0123456789ABCDEF0123456789ABCDEF"), 404);
    ck_assert_int_eq(harness_stored("del"), 1);
}
END_TEST

START_TEST(receipt_of_another_queue_is_not_ours)
{
    harness_put_queue(&srv, "mine", NULL, 201);
    harness_put_queue(&srv, "theirs", NULL, 201);
    send_msg("theirs", "{\"body\": \"x\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("theirs", "{}", &r), 0);
    ck_assert_ptr_nonnull(m);
    char receipt[MQ_RECEIPT_LEN];
    snprintf(receipt, sizeof receipt, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    /* the message is untouched whatever the answer ... */
    long st = delete_receipt("mine", receipt);
    ck_assert_int_eq(harness_stored("theirs"), 1);
    ck_assert_int_eq(change_visibility("mine", receipt, 0), 404);
    ck_assert_int_eq(stat_of("theirs", "in_flight"), 1);
    /* ... but a 204 would tell a consumer with the wrong queue name that it was deleted */
    ck_assert_msg(st == 404, "DELETE with a receipt of another queue answered %ld", st);
    ck_assert_int_eq(delete_receipt("theirs", receipt), 204);
}
END_TEST

START_TEST(superseded_receipt_is_409)
{
    harness_put_queue(&srv, "super", NULL, 201);
    send_msg("super", "{\"body\": \"x\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("super", "{\"visibility_timeout\": 1}", &r), 0);
    ck_assert_ptr_nonnull(m);
    char first[MQ_RECEIPT_LEN], second[MQ_RECEIPT_LEN];
    snprintf(first, sizeof first, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    harness_sleep_ms(1100);
    /* expired but not yet received again: the first receipt is still the latest */
    ck_assert_int_eq(change_visibility("super", first, 0), 204);
    m = json_array_get(receive("super", "{\"visibility_timeout\": 30}", &r), 0);
    ck_assert_ptr_nonnull(m);
    snprintf(second, sizeof second, "%s", json_str(m, "receipt"));
    response_cleanup(&r);

    ck_assert_int_eq(delete_receipt("super", first), 409);
    ck_assert_int_eq(harness_stored("super"), 1);
    ck_assert_int_eq(change_visibility("super", first, 0), 409);
    ck_assert_int_eq(stat_of("super", "in_flight"), 1); /* untouched: still leased */
    ck_assert_int_eq(delete_receipt("super", second), 204);
    ck_assert_int_eq(harness_stored("super"), 0);
}
END_TEST

START_TEST(change_visibility_extends_and_releases)
{
    harness_put_queue(&srv, "vis", NULL, 201);
    send_msg("vis", "{\"body\": \"x\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("vis", "{\"visibility_timeout\": 1}", &r), 0);
    char receipt[MQ_RECEIPT_LEN];
    snprintf(receipt, sizeof receipt, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    ck_assert_int_eq(change_visibility("vis", receipt, 3), 204);
    harness_sleep_ms(1200);
    ck_assert_int_eq(receive_n("vis", "{}"), 0); /* extended past the original second */
    ck_assert_int_eq(stat_of("vis", "in_flight"), 1);
    ck_assert_int_eq(change_visibility("vis", receipt, 0), 204);
    m = json_array_get(receive("vis", "{}", &r), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    response_cleanup(&r);

    ck_assert_int_eq(change_visibility("vis", receipt, 5), 409);
    ck_assert_int_eq(change_visibility("vis", "garbage", 5), 404);
    ck_assert_int_eq(change_visibility("vis", "ffffffffffffffff0000000000000001", 5), 404);
    ck_assert_int_eq(change_visibility("vis", "7fffffffffffffff0000000000000001", 5), 404);

    const char *bad[] = {"{\"visibility_timeout\": 43201}", "{\"visibility_timeout\": -1}", "{}",
                         "{\"visibility_timeout\": 5, \"x\": 1}"};
    char path[128];
    snprintf(path, sizeof path, "/queues/vis/messages/%s", receipt);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(status_of("PATCH", path, bad[i]), 400);
}
END_TEST

/* Sends n messages to queue in batches of ten. */
static void send_many(const char *queue, int n)
{
    for (int done = 0; done < n; done += 10) {
        char body[512] = "{\"entries\": [";
        for (int i = 0; i < 10 && done + i < n; i++) {
            size_t len = strlen(body);
            snprintf(body + len, sizeof body - len, "%s{\"id\": \"e%d\", \"body\": \"n%d\"}",
                     i ? ", " : "", i, done + i);
        }
        strcat(body, "]}");
        struct response r;
        post(queue, "/messages:batch", body, 200, &r);
        response_cleanup(&r);
    }
}

START_TEST(released_message_is_receivable_at_once_behind_many_claims)
{
    harness_put_queue(&srv, "release", NULL, 201);
    send_msg("release", "{\"body\": \"oldest\"}", NULL);
    struct response r;
    json_t *m = json_array_get(receive("release", "{\"visibility_timeout\": 60}", &r), 0);
    ck_assert_ptr_nonnull(m);
    char receipt[MQ_RECEIPT_LEN];
    snprintf(receipt, sizeof receipt, "%s", json_str(m, "receipt"));
    response_cleanup(&r);
    /* a long run of newer messages is claimed after it */
    send_many("release", 1100);
    for (int i = 0; i < 110; i++)
        ck_assert_int_eq(receive_n("release", "{\"max_messages\": 10, \"visibility_timeout\": 60}"),
                         10);
    ck_assert_int_eq(change_visibility("release", receipt, 0), 204);
    m = json_array_get(receive("release", "{\"max_messages\": 10}", &r), 0);
    ck_assert_msg(m != NULL, "the released message was not receivable at once");
    ck_assert_str_eq(json_str(m, "body"), "oldest");
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    response_cleanup(&r);
}
END_TEST

START_TEST(batch_delete_reports_each_receipt)
{
    harness_put_queue(&srv, "bdel", NULL, 201);
    for (int i = 0; i < 4; i++)
        send_msg("bdel", "{\"body\": \"x\"}", NULL);
    struct response r;
    json_t *msgs = receive("bdel", "{\"max_messages\": 3}", &r);
    ck_assert_int_eq(json_array_size(msgs), 3);
    char r1[MQ_RECEIPT_LEN], r2[MQ_RECEIPT_LEN], r3[MQ_RECEIPT_LEN], old[MQ_RECEIPT_LEN];
    snprintf(r1, sizeof r1, "%s", json_str(json_array_get(msgs, 0), "receipt"));
    snprintf(r2, sizeof r2, "%s", json_str(json_array_get(msgs, 1), "receipt"));
    snprintf(r3, sizeof r3, "%s", json_str(json_array_get(msgs, 2), "receipt"));
    response_cleanup(&r);
    /* the fourth, received twice: its first receipt is superseded */
    msgs = receive("bdel", "{\"visibility_timeout\": 0}", &r);
    snprintf(old, sizeof old, "%s", json_str(json_array_get(msgs, 0), "receipt"));
    response_cleanup(&r);
    ck_assert_int_eq(receive_n("bdel", "{}"), 1);

    char body[512];
    snprintf(body, sizeof body, "{\"receipts\": [\"%s\", \"%s\", \"garbage\", \"%s\", 5]}", r1, r2,
             old);
    post("bdel", "/messages:delete", body, 200, &r);
    json_t *ok = json_object_get(r.json, "successful"), *failed = json_object_get(r.json, "failed");
    ck_assert_int_eq(json_array_size(ok), 2);
    ck_assert_int_eq(json_array_size(failed), 3);
    ck_assert_str_eq(json_str(json_array_get(ok, 0), "receipt"), r1);
    ck_assert_str_eq(json_str(json_array_get(ok, 1), "receipt"), r2);
    for (size_t i = 0; i < 3; i++) {
        json_t *f = json_array_get(failed, i);
        ck_assert_ptr_nonnull(json_str(f, "code"));
        ck_assert_ptr_nonnull(json_str(f, "message"));
    }
    ck_assert_str_eq(json_str(json_array_get(failed, 1), "receipt"), old);
    ck_assert_str_ne(json_str(json_array_get(failed, 0), "code"),
                     json_str(json_array_get(failed, 1), "code"));
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("bdel"), 2);

    snprintf(body, sizeof body, "{\"receipts\": [\"%s\"]}", r3);
    post("bdel", "/messages:delete", body, 200, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "successful")), 1);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("bdel"), 1);

    const char *bad[] = {"{\"receipts\": []}", "{}", "{\"receipts\": \"x\"}",
                         "{\"receipts\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
                         "\"10\",\"11\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(status_of("POST", "/queues/bdel/messages:delete", bad[i]), 400);
}
END_TEST

START_TEST(delete_true_is_at_most_once)
{
    harness_put_queue(&srv, "amo", "{\"visibility_timeout\": 1}", 201);
    send_msg("amo", "{\"body\": \"once\"}", NULL);
    send_msg("amo", "{\"body\": \"twice\"}", NULL);
    struct response r;
    json_t *msgs = receive("amo", "{\"delete\": true, \"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "once");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(msgs, 0), "receive_count")),
                     1);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("amo"), 0);
    harness_sleep_ms(1100);
    ck_assert_int_eq(receive_n("amo", "{\"max_messages\": 10}"), 0);
}
END_TEST

/* ---- delays ---- */

START_TEST(message_delay)
{
    harness_put_queue(&srv, "delay", NULL, 201);
    send_msg("delay", "{\"body\": \"later\", \"delay_seconds\": 1}", NULL);
    int64_t sent = clock_mono_us();
    ck_assert_int_eq(receive_n("delay", "{}"), 0);
    ck_assert_int_eq(stat_of("delay", "delayed"), 1);
    ck_assert_int_eq(stat_of("delay", "available"), 0);
    int64_t left = 1100000 - (clock_mono_us() - sent);
    if (left > 0)
        harness_sleep_ms((int)(left / 1000));
    ck_assert_int_eq(stat_of("delay", "available"), 1);
    ck_assert_int_eq(receive_n("delay", "{}"), 1);
}
END_TEST

START_TEST(queue_delay)
{
    harness_put_queue(&srv, "qdelay", "{\"delay_seconds\": 1}", 201);
    send_msg("qdelay", "{\"body\": \"later\"}", NULL);
    int64_t sent = clock_mono_us();
    send_msg("qdelay", "{\"body\": \"now\", \"delay_seconds\": 0}", NULL);
    struct response r;
    json_t *msgs = receive("qdelay", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "now");
    response_cleanup(&r);
    int64_t left = 1100000 - (clock_mono_us() - sent);
    if (left > 0)
        harness_sleep_ms((int)(left / 1000));
    msgs = receive("qdelay", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "later");
    response_cleanup(&r);
}
END_TEST

/* ---- dead letters, redrive, purge, peek ---- */

/* Peeks queue into r and returns the messages array. */
static json_t *peek(const char *queue, struct response *r)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:peek", queue);
    harness_admin(&srv, "GET", path, NULL, r);
    ck_assert_int_eq(r->status, 200);
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert(json_is_array(msgs));
    return msgs;
}

START_TEST(dead_letter_after_max_receive_count)
{
    harness_put_queue(&srv, "dead", NULL, 201);
    harness_put_queue(&srv, "live",
                      "{\"dead_letter\": {\"queue\": \"dead\", \"max_receive_count\": 2}}", 201);
    char id[IDS_UUID_LEN];
    const char *attrs = "{\"k\": {\"type\": \"String\", \"value\": \"v\"}}";
    char request[256];
    snprintf(request, sizeof request, "{\"body\": {\"poison\": true}, \"attributes\": %s}", attrs);
    send_msg("live", request, id);
    send_msg("live", "{\"body\": \"healthy\", \"delay_seconds\": 60}", NULL);

    struct response r;
    json_t *m = json_array_get(receive("live", "{\"visibility_timeout\": 0}", &r), 0);
    ck_assert_ptr_nonnull(m);
    char sent_at[32], first[32];
    snprintf(sent_at, sizeof sent_at, "%s", json_str(m, "sent_at"));
    snprintf(first, sizeof first, "%s", json_str(m, "first_received_at"));
    response_cleanup(&r);
    m = json_array_get(receive("live", "{\"visibility_timeout\": 0}", &r), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    response_cleanup(&r);
    /* a third receive would exceed max_receive_count: the message moves instead */
    ck_assert_int_eq(receive_n("live", "{\"max_messages\": 10}"), 0);
    ck_assert_int_eq(receive_n("live", "{\"max_messages\": 10}"), 0);
    ck_assert_int_eq(harness_stored("live"), 1); /* the delayed one */
    ck_assert_int_eq(harness_stored("dead"), 1);

    json_t *msgs = peek("dead", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    m = json_array_get(msgs, 0);
    ck_assert_str_eq(json_str(m, "message_id"), id);
    json_t *body = json_loads("{\"poison\": true}", 0, NULL);
    json_t *want_attrs = json_loads(attrs, 0, NULL);
    ck_assert(json_equal(json_object_get(m, "body"), body));
    ck_assert(json_equal(json_object_get(m, "attributes"), want_attrs));
    json_decref(body);
    json_decref(want_attrs);
    ck_assert_str_eq(json_str(m, "sent_at"), sent_at);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    ck_assert_str_eq(json_str(m, "state"), "available");
    response_cleanup(&r);

    /* redrive takes it back to its source, as a fresh message */
    post("dead", ":redrive", NULL, 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 1);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("dead"), 0);
    msgs = receive("live", "{\"visibility_timeout\": 0}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    m = json_array_get(msgs, 0);
    ck_assert_str_eq(json_str(m, "message_id"), id);
    ck_assert_str_eq(json_str(m, "sent_at"), sent_at);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 1);
    response_cleanup(&r);
}
END_TEST

/* A redrive larger than one step (1000 messages a transaction) moves everything, and a limit
 * across steps holds exactly. */
START_TEST(redrive_moves_in_steps)
{
    harness_put_queue(&srv, "st-dead", NULL, 201);
    harness_put_queue(&srv, "st-live",
                      "{\"dead_letter\": {\"queue\": \"st-dead\", \"max_receive_count\": 1}}", 201);
    harness_sqlf("WITH d AS (INSERT INTO messages (queue_id, visible_at, message_id, body, "
                 "source_queue_id) SELECT (SELECT id FROM queues WHERE name = 'st-dead'), now(), "
                 "gen_random_uuid(), 'm' || g, (SELECT id FROM queues WHERE name = 'st-live') "
                 "FROM generate_series(1, 2500) g RETURNING 1) SELECT count(*) FROM d");
    struct response r;
    post("st-dead", ":redrive", "{\"max_messages\": 1200}", 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 1200);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("st-live"), 1200);
    post("st-dead", ":redrive", NULL, 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 1300);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("st-live"), 2500);
    ck_assert_int_eq(harness_stored("st-dead"), 0);
    /* oldest first: the bodies come back in the order they had */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM (SELECT body, lag(body) OVER (ORDER BY id) "
                                  "AS prev FROM messages WHERE queue_id = (SELECT id FROM queues "
                                  "WHERE name = 'st-live')) s WHERE substr(body, 2)::int < "
                                  "substr(prev, 2)::int"),
                     0);
}
END_TEST

START_TEST(redrive_rules)
{
    harness_put_queue(&srv, "rd-dead", NULL, 201);
    harness_put_queue(&srv, "rd-live",
                      "{\"dead_letter\": {\"queue\": \"rd-dead\", \"max_receive_count\": 1}}", 201);
    harness_put_queue(&srv, "rd-other", NULL, 201);
    harness_put_queue(&srv, "rd-other.fifo", NULL, 201);
    /* Statistics gathered while the dead-letter queue was still empty, as autovacuum leaves
     * them in production, make the planner expect next to no rows there. */
    harness_put_queue(&srv, "rd-filler", NULL, 201);
    for (int i = 0; i < 20; i++)
        send_msg("rd-filler", "{\"body\": \"f\"}", NULL);
    free(harness_sql(harness_db_url(), "ANALYZE messages"));
    send_msg("rd-dead", "{\"body\": \"direct\"}", NULL);
    struct response r;
    /* a message sent straight to the dead-letter queue has no source: it stays */
    post("rd-dead", ":redrive", "{}", 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 0);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("rd-dead"), 1);

    const char *bad_to[] = {"{\"to\": \"nope\"}", "{\"to\": \"rd-other.fifo\"}",
                            "{\"to\": \"rd-dead\"}"};
    for (int i = 0; i < 3; i++) {
        post("rd-dead", ":redrive", bad_to[i], 400, &r);
        ck_assert_msg(problem_names_field(&r, "to"), "%s", buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(status_of("POST", "/queues/rd-dead:redrive", "{\"max_messages\": 0}"), 400);
    ck_assert_int_eq(status_of("POST", "/queues/rd-dead:redrive", "{\"bogus\": 1}"), 400);
    ck_assert_int_eq(harness_stored("rd-dead"), 1);

    /* dead-letter three, then redrive at most two of them elsewhere */
    for (int i = 0; i < 3; i++)
        send_msg("rd-live", "{\"body\": \"p\"}", NULL);
    ck_assert_int_eq(receive_n("rd-live", "{\"max_messages\": 10, \"visibility_timeout\": 0}"), 3);
    ck_assert_int_eq(receive_n("rd-live", "{\"max_messages\": 10}"), 0);
    ck_assert_int_eq(harness_stored("rd-dead"), 4);
    /* with "to", every message qualifies, oldest first: the direct one and one more */
    post("rd-dead", ":redrive", "{\"to\": \"rd-other\", \"max_messages\": 2}", 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 2);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("rd-other"), 2);
    ck_assert_int_eq(harness_stored("rd-dead"), 2);
    post("rd-dead", ":redrive", NULL, 200, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 2);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("rd-live"), 2);
    ck_assert_int_eq(harness_stored("rd-dead"), 0);
    ck_assert_int_eq(receive_n("rd-other", "{\"max_messages\": 10}"), 2);
}
END_TEST

START_TEST(purge_empties_the_queue)
{
    harness_put_queue(&srv, "purge", NULL, 201);
    harness_put_queue(&srv, "purge-other", NULL, 201);
    for (int i = 0; i < 3; i++)
        send_msg("purge", "{\"body\": \"x\"}", NULL);
    send_msg("purge", "{\"body\": \"x\", \"delay_seconds\": 60}", NULL);
    send_msg("purge-other", "{\"body\": \"x\"}", NULL);
    ck_assert_int_eq(receive_n("purge", "{}"), 1);
    struct response r;
    post("purge", ":purge", NULL, 204, &r);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("purge"), 0);
    ck_assert_int_eq(harness_stored("purge-other"), 1);
    ck_assert_int_eq(stat_of("purge", "available") + stat_of("purge", "in_flight") +
                         stat_of("purge", "delayed"),
                     0);
    ck_assert_int_eq(receive_n("purge", "{\"max_messages\": 10}"), 0);
}
END_TEST

/* A peek stops once the bodies read reach MQ_PEEK_BYTES (4 MiB), whatever its limit: six
 * messages of 1 MiB give four, the fifth starting at the budget. */
START_TEST(peek_is_bounded_in_bytes)
{
    harness_put_queue(&srv, "bigpeek", NULL, 201);
    free(harness_sql(harness_db_url(),
                     "INSERT INTO messages (queue_id, visible_at, message_id, body) "
                     "SELECT q.id, now(), gen_random_uuid(), repeat('x', 1048576) "
                     "FROM queues q, generate_series(1, 6) WHERE q.name = 'bigpeek'"));
    struct response r;
    harness_admin(&srv, "GET", "/queues/bigpeek/messages:peek?limit=1000", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *msgs = json_object_get(r.json, "messages");
    ck_assert_int_eq(json_array_size(msgs), 4);
    ck_assert_uint_eq(strlen(json_str(json_array_get(msgs, 3), "body")), 1048576);
    /* a page the budget cut short has a next page: the last two */
    char path[200];
    snprintf(path, sizeof path, "/queues/bigpeek/messages:peek?limit=1000&after=%s",
             json_str(r.json, "next"));
    response_cleanup(&r);
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 2);
    ck_assert(json_is_null(json_object_get(r.json, "next")));
    response_cleanup(&r);
    /* a message larger than the budget still comes, alone */
    harness_admin(&srv, "POST", "/queues/bigpeek:purge", NULL, &r);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(),
                     "INSERT INTO messages (queue_id, visible_at, message_id, body) "
                     "SELECT q.id, now(), gen_random_uuid(), repeat('y', 5000000) "
                     "FROM queues q, generate_series(1, 2) WHERE q.name = 'bigpeek'"));
    harness_admin(&srv, "GET", "/queues/bigpeek/messages:peek", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
}
END_TEST

/* A peek is a list like the others: pages of limit messages in the queue's order, each with
 * the cursor of the next (null after the last); a cursor it did not give is a 400 naming
 * after. (Peek took the first messages only: a dead-letter queue deeper than 1000 could not be
 * read past them.) */
START_TEST(peek_pages_through_the_queue)
{
    harness_put_queue(&srv, "pages", NULL, 201);
    for (int i = 0; i < 5; i++) {
        char body[40];
        snprintf(body, sizeof body, "{\"body\": \"m%d\"}", i);
        send_msg("pages", body, NULL);
    }
    char path[200] = "/queues/pages/messages:peek?limit=2";
    int seen = 0, pages = 0;
    for (;;) {
        struct response r;
        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        json_t *msgs = json_object_get(r.json, "messages");
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            char want[16];
            snprintf(want, sizeof want, "m%d", seen++);
            ck_assert_str_eq(json_str(json_array_get(msgs, i), "body"), want);
        }
        pages++;
        json_t *next = json_object_get(r.json, "next");
        ck_assert_msg(json_is_string(next) || json_is_null(next), "%s", buf_str(&r.body));
        if (json_is_null(next)) {
            response_cleanup(&r);
            break;
        }
        snprintf(path, sizeof path, "/queues/pages/messages:peek?limit=2&after=%s",
                 json_string_value(next));
        response_cleanup(&r);
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
    struct response zeros; /* digits, as openapi says: leading zeros are the number */
    harness_admin(&srv, "GET", "/queues/pages/messages:peek?after=00000000000000000000000", NULL,
                  &zeros);
    ck_assert_int_eq(zeros.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(zeros.json, "messages")), 5);
    response_cleanup(&zeros);
    static const char *const bad[] = {"abc", "-1", "12345678901234567890", "1x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "/queues/pages/messages:peek?after=%s", bad[i]);
        struct response r;
        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_msg(r.status == 400 && problem_names_field(&r, "after"), "after=%s: %ld", bad[i],
                      r.status);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(peek_and_stats_show_state)
{
    harness_put_queue(&srv, "peek", NULL, 201);
    char first[IDS_UUID_LEN];
    send_msg("peek", "{\"body\": \"a\"}", first);
    send_msg("peek", "{\"body\": \"b\"}", NULL);
    send_msg("peek", "{\"body\": \"c\", \"delay_seconds\": 60}", NULL);
    ck_assert_int_eq(receive_n("peek", "{\"visibility_timeout\": 60}"), 1);
    ck_assert_int_eq(stat_of("peek", "available"), 1);
    ck_assert_int_eq(stat_of("peek", "in_flight"), 1);
    ck_assert_int_eq(stat_of("peek", "delayed"), 1);

    struct response r;
    for (int round = 0; round < 2; round++) { /* peeking twice changes nothing */
        json_t *msgs = peek("peek", &r);
        ck_assert_int_eq(json_array_size(msgs), 3);
        const char *states[] = {"in_flight", "available", "delayed"};
        const char *bodies[] = {"a", "b", "c"};
        const int counts[] = {1, 0, 0};
        for (size_t i = 0; i < 3; i++) {
            json_t *m = json_array_get(msgs, i);
            ck_assert_ptr_null(json_object_get(m, "receipt"));
            ck_assert_str_eq(json_str(m, "state"), states[i]);
            ck_assert_str_eq(json_str(m, "body"), bodies[i]);
            assert_timestamp(json_str(m, "visible_at"));
            ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), counts[i]);
        }
        ck_assert_str_eq(json_str(json_array_get(msgs, 0), "message_id"), first);
        response_cleanup(&r);
    }
    harness_admin(&srv, "GET", "/queues/peek/messages:peek?limit=2", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 2);
    response_cleanup(&r);
    ck_assert_int_eq(status_of("GET", "/queues/peek/messages:peek?limit=0", NULL), 400);
    ck_assert_int_eq(stat_of("peek", "available"), 1);
    ck_assert_int_eq(stat_of("peek", "in_flight"), 1);
    ck_assert_int_eq(stat_of("peek", "delayed"), 1);
    ck_assert_int_eq(receive_n("peek", "{\"max_messages\": 10}"), 1);
}
END_TEST

/* ---- long polling ---- */

struct delayed_send {
    const char *queue;
    int delay_ms;
    long status;
};

static void *send_later(void *arg)
{
    struct delayed_send *d = arg;
    harness_sleep_ms(d->delay_ms);
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages", d->queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"body\": \"wake up\"}", &r);
    d->status = r.status;
    response_cleanup(&r);
    return NULL;
}

START_TEST(long_poll_returns_when_a_message_arrives)
{
    harness_put_queue(&srv, "lp", NULL, 201);
    static struct delayed_send d; /* the thread outlives a failed check's jump out of here */
    d = (struct delayed_send){"lp", 300, 0};
    pthread_t t;
    int64_t start = clock_mono_us();
    ck_assert_int_eq(pthread_create(&t, NULL, send_later, &d), 0);
    struct response r;
    json_t *msgs = receive("lp", "{\"wait_seconds\": 5}", &r);
    int64_t elapsed = clock_mono_us() - start;
    pthread_join(t, NULL);
    ck_assert_int_eq(d.status, 201);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "wake up");
    response_cleanup(&r);
    ck_assert_msg(elapsed >= 250000 && elapsed < 800000, "long poll took %lld us",
                  (long long)elapsed);
}
END_TEST

START_TEST(empty_long_poll_times_out)
{
    harness_put_queue(&srv, "lp-empty", "{\"receive_wait_seconds\": 2}", 201);
    int64_t start = clock_mono_us();
    struct response r;
    json_t *msgs = receive("lp-empty", NULL, &r); /* the queue's default wait */
    int64_t elapsed = clock_mono_us() - start;
    ck_assert_int_eq(json_array_size(msgs), 0);
    response_cleanup(&r);
    ck_assert_msg(elapsed >= 1900000 && elapsed < 3000000, "empty long poll took %lld us",
                  (long long)elapsed);
    /* wait_seconds 0 overrides the queue's default */
    start = clock_mono_us();
    ck_assert_int_eq(receive_n("lp-empty", "{\"wait_seconds\": 0}"), 0);
    ck_assert_int_lt(clock_mono_us() - start, 500000);
}
END_TEST

START_TEST(long_poll_sees_a_delayed_message_come_due)
{
    harness_put_queue(&srv, "lp-delay", NULL, 201);
    send_msg("lp-delay", "{\"body\": \"due\", \"delay_seconds\": 1}", NULL);
    int64_t start = clock_mono_us();
    struct response r;
    json_t *msgs = receive("lp-delay", "{\"wait_seconds\": 5}", &r);
    int64_t elapsed = clock_mono_us() - start;
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "due");
    response_cleanup(&r);
    ck_assert_msg(elapsed >= 800000 && elapsed < 2600000, "took %lld us", (long long)elapsed);
}
END_TEST

#define POLLERS 50

struct poller {
    long status;
    int count;
    char body[32];
    int64_t done_us;
};

static void *poll_once(void *arg)
{
    struct poller *p = arg;
    struct response r;
    harness_admin(&srv, "POST", "/queues/lp-many/messages:receive",
                  "{\"wait_seconds\": 10, \"max_messages\": 1}", &r);
    p->status = r.status;
    json_t *msgs = json_object_get(r.json, "messages");
    p->count = (int)json_array_size(msgs);
    if (p->count == 1)
        snprintf(p->body, sizeof p->body, "%s", json_str(json_array_get(msgs, 0), "body"));
    p->done_us = clock_mono_us();
    response_cleanup(&r);
    return NULL;
}

struct changed_poll {
    const char *queue;
    long status;
    int count;
    long long receive_count;
};

static void *poll_changed(void *arg)
{
    struct changed_poll *p = arg;
    char path[128];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", p->queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"wait_seconds\": 20, \"visibility_timeout\": 30}", &r);
    p->status = r.status;
    json_t *msgs = json_object_get(r.json, "messages");
    p->count = (int)json_array_size(msgs);
    if (p->count == 1)
        p->receive_count =
            json_integer_value(json_object_get(json_array_get(msgs, 0), "receive_count"));
    response_cleanup(&r);
    return NULL;
}

/* Queue src, whose messages go to queue dlq once received once, holding one message leased
 * for 60 s (its receipt into receipt); a long poll of src on thread t, waiting in the hub, into
 * poll; then src's max_receive_count raised to 5. */
static void poll_a_queue_that_changes(const char *src, const char *dlq, char *receipt,
                                      struct changed_poll *poll, pthread_t *t)
{
    char attrs[160], path[96];
    harness_put_queue(&srv, dlq, NULL, 201);
    snprintf(attrs, sizeof attrs,
             "{\"dead_letter\": {\"queue\": \"%s\", \"max_receive_count\": 1}}", dlq);
    harness_put_queue(&srv, src, attrs, 201);
    /* stored without a send's notification, and received by a receive that asks for more than
     * there are (one that got all it asked for pokes the queue's waiters): either could reach
     * the hub after the poll began to wait and wake it into a look by the old attributes that
     * races the change */
    free(harness_sqlf_text("INSERT INTO messages (queue_id, visible_at, message_id, body) "
                           "SELECT id, now(), gen_random_uuid(), 'm' FROM queues WHERE name = '%s'",
                           src));
    struct response r;
    json_t *got = receive(src, "{\"visibility_timeout\": 60, \"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(got), 1);
    snprintf(receipt, MQ_RECEIPT_LEN, "%s", json_str(json_array_get(got, 0), "receipt"));
    response_cleanup(&r);
    memset(poll, 0, sizeof *poll);
    poll->queue = src;
    ck_assert_int_eq(pthread_create(t, NULL, poll_changed, poll), 0);
    /* the hub listens for src once the poll waits (another test's poll may still be waiting:
     * the count of waiters does not say that this one is) */
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM queue_listeners l JOIN queues q ON q.id = l.queue_id "
             "WHERE q.name = '%s'",
             src);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10.0), 1);
    snprintf(attrs, sizeof attrs,
             "{\"dead_letter\": {\"queue\": \"%s\", \"max_receive_count\": 5}}", dlq);
    snprintf(path, sizeof path, "/queues/%s", src);
    harness_admin(&srv, "PUT", path, attrs, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}

/* The poll of t got the message a second time, not dead-lettered. */
static void poll_got_it_again(struct changed_poll *poll, pthread_t t, const char *dlq)
{
    pthread_join(t, NULL);
    ck_assert_int_eq(poll->status, 200);
    ck_assert_int_eq(poll->count, 1);
    ck_assert_int_eq(poll->receive_count, 2);
    ck_assert_int_eq(harness_stored(dlq), 0);
}

/* A long poll claims by the queue's attributes as they are now, not as they were when it began:
 * max_receive_count raised from 1 to 5 while it waits, a message released from its first lease
 * is delivered a second time instead of dead-lettered. (The release looks the queue up, as any
 * traffic on it would, so it is usually cached when the poll wakes, and read anew otherwise;
 * the lease is released, not left to run out, so that no timing decides.) */
START_TEST(a_long_poll_follows_a_change_of_the_queue)
{
    static struct changed_poll poll; /* the thread outlives a failed check's jump out of here */
    pthread_t t;
    char receipt[MQ_RECEIPT_LEN];
    poll_a_queue_that_changes("lp-src", "lp-dlq", receipt, &poll, &t);
    ck_assert_int_eq(change_visibility("lp-src", receipt, 0), 204);
    poll_got_it_again(&poll, t, "lp-dlq");
}
END_TEST

/* A long poll woken while its queue is not in the process's cache (nothing touched it for a
 * second; here the cache is emptied and the message released and announced in SQL) reads the
 * queue anew before it claims: max_receive_count raised meanwhile, the message is delivered a
 * second time, not dead-lettered by the copy the poll began with. */
START_TEST(a_long_poll_woken_with_nothing_cached_reads_its_queue)
{
    static struct changed_poll poll; /* likewise */
    pthread_t t;
    char receipt[MQ_RECEIPT_LEN];
    poll_a_queue_that_changes("lp2-src", "lp2-dlq", receipt, &poll, &t);
    ttlcache_clear(srv.app.queue_cache);
    free(harness_sql(harness_db_url(), "WITH q AS (SELECT id FROM queues WHERE name = 'lp2-src'), "
                                       "u AS (UPDATE messages m SET visible_at = now() FROM q "
                                       "WHERE m.queue_id = q.id RETURNING 1) "
                                       "SELECT (SELECT count(*) FROM u), mq_notify(q.id) FROM q"));
    poll_got_it_again(&poll, t, "lp2-dlq");
}
END_TEST

START_TEST(fifty_long_polls_share_fifty_messages)
{
    harness_put_queue(&srv, "lp-many", NULL, 201);
    static struct poller polls[POLLERS];
    pthread_t threads[POLLERS];
    memset(polls, 0, sizeof polls);
    for (int i = 0; i < POLLERS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, poll_once, &polls[i]), 0);
    /* every poll is parked in the hub before anything is sent */
    int64_t deadline = clock_mono_us() + 5000000;
    while (mq_hub_waiters(srv.app.hub) < POLLERS && clock_mono_us() < deadline)
        harness_sleep_ms(10);
    ck_assert_int_eq(mq_hub_waiters(srv.app.hub), POLLERS);

    int64_t start = clock_mono_us();
    for (int b = 0; b < POLLERS / 10; b++) {
        char body[1024] = "{\"entries\": [";
        for (int i = 0; i < 10; i++) {
            size_t n = strlen(body);
            snprintf(body + n, sizeof body - n, "%s{\"id\": \"e%d\", \"body\": \"msg-%d\"}",
                     i ? ", " : "", i, b * 10 + i);
        }
        strcat(body, "]}");
        struct response r;
        post("lp-many", "/messages:batch", body, 200, &r);
        ck_assert_int_eq(json_array_size(json_object_get(r.json, "successful")), 10);
        response_cleanup(&r);
    }
    for (int i = 0; i < POLLERS; i++)
        pthread_join(threads[i], NULL);
    int seen[POLLERS] = {0};
    int64_t last = 0;
    for (int i = 0; i < POLLERS; i++) {
        ck_assert_int_eq(polls[i].status, 200);
        ck_assert_msg(polls[i].count == 1, "poll %d got %d messages", i, polls[i].count);
        int k = atoi(polls[i].body + 4);
        ck_assert(k >= 0 && k < POLLERS);
        seen[k]++;
        if (polls[i].done_us > last)
            last = polls[i].done_us;
    }
    for (int k = 0; k < POLLERS; k++)
        ck_assert_msg(seen[k] == 1, "msg-%d delivered %d times", k, seen[k]);
    ck_assert_msg(last - start < 3000000, "the polls took %lld us to drain 50 messages",
                  (long long)(last - start));
    ck_assert_int_eq(mq_hub_waiters(srv.app.hub), 0);
    ck_assert_int_eq(stat_of("lp-many", "in_flight"), POLLERS);
}
END_TEST

static void uncached_send_call(void *arg, struct response *out)
{
    (void)arg;
    harness_admin(&srv, "POST", "/queues/uncached/messages", "{\"body\": \"held\"}", out);
}

static void forget_queue(const char *name)
{
    ttlcache_forget(srv.app.queue_cache, name, strlen(name));
}

/* A queue the cache does not hold is looked up on a data-plane thread: a lookup that waits (here
 * 1.5 s for the one pooled connection) holds no HTTP thread, and the only one answers the rest
 * meanwhile (it used to wait on the HTTP thread, every request of it behind). The handler then
 * runs again with what was found: sends, receives and deletes go on, a missing queue is 404. */
START_TEST(a_queue_lookup_holds_no_http_thread)
{
    harness_put_queue(&srv, "uncached", NULL, 201); /* (the restart below empties the cache) */
    static struct harness_async a = {.call = uncached_send_call}; /* static: see harness.h */
    ck_assert_msg(harness_answered_while_the_pool_is_held(&srv, &a),
                  "/healthz waited for the queue's lookup");
    assert_problem(&a.r, 503); /* no connection came in time for the queue's lookup */
    ck_assert_str_eq(json_str(a.r.json, "detail"), "all database connections are busy");
    response_cleanup(&a.r);
    forget_queue("uncached");
    send_msg("uncached", "{\"body\": \"after\"}", NULL);
    forget_queue("uncached");
    struct response r;
    json_t *msgs = receive("uncached", "{}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "after");
    char receipt[256];
    snprintf(receipt, sizeof receipt, "%s", json_str(json_array_get(msgs, 0), "receipt"));
    response_cleanup(&r);
    forget_queue("uncached");
    ck_assert_int_eq(delete_receipt("uncached", receipt), 204);
    ck_assert_int_eq(harness_stored("uncached"), 0);
    post("never-made", "/messages", "{\"body\": \"x\"}", 404, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

static void send_to_call(void *arg, struct response *out)
{
    char path[64];
    snprintf(path, sizeof path, "/queues/%s/messages", (const char *)arg);
    harness_admin(&srv, "POST", path, "{\"body\": \"b\"}", out);
}

/* A queue's lookup that the data plane cannot take (its one thread busy, its queue of one full)
 * is 503 with Retry-After, as the data plane's other requests are; the others are stored. */
START_TEST(a_queue_lookup_the_data_plane_cannot_take_is_503)
{
    const char *names[] = {"lk-1", "lk-2", "lk-3"};
    static struct harness_async a[3]; /* static: see harness.h */
    for (int i = 0; i < 3; i++) {
        harness_put_queue(&srv, names[i], NULL, 201); /* (the restart empties the cache) */
        a[i] = (struct harness_async){.call = send_to_call, .arg = (void *)names[i]};
    }
    harness_past_a_full_data_plane(&srv, a, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(a[i].r.status == (i < 2 ? 201 : 503), "%s: %ld %s", names[i], a[i].r.status,
                      buf_str(&a[i].r.body));
        ck_assert(i < 2 || strstr(buf_str(&a[i].r.body), "too many requests wait for a thread"));
        response_cleanup(&a[i].r);
        ck_assert_int_eq(harness_stored(names[i]), i < 2);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("messages");
    TCase *tc = tcase_create("messages");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, send_returns_id_and_md5);
    tcase_add_test(tc, attributes_round_trip);
    tcase_add_test(tc, send_refuses_bad_input);
    tcase_add_test(tc, batch_reports_each_entry);
    tcase_add_test(tc, batch_envelope_rules);
    tcase_add_test(tc, receive_defaults_and_max_messages);
    tcase_add_test(tc, receive_count_and_first_received_at);
    tcase_add_test(tc, delete_by_receipt_is_idempotent);
    tcase_add_test(tc, receipt_of_another_queue_is_not_ours);
    tcase_add_test(tc, superseded_receipt_is_409);
    tcase_add_test(tc, change_visibility_extends_and_releases);
    tcase_add_test(tc, released_message_is_receivable_at_once_behind_many_claims);
    tcase_add_test(tc, batch_delete_reports_each_receipt);
    tcase_add_test(tc, delete_true_is_at_most_once);
    tcase_add_test(tc, message_delay);
    tcase_add_test(tc, queue_delay);
    tcase_add_test(tc, dead_letter_after_max_receive_count);
    tcase_add_test(tc, redrive_rules);
    tcase_add_test(tc, a_long_poll_follows_a_change_of_the_queue);
    tcase_add_test(tc, a_long_poll_woken_with_nothing_cached_reads_its_queue);
    tcase_add_test(tc, redrive_moves_in_steps);
    tcase_add_test(tc, purge_empties_the_queue);
    tcase_add_test(tc, peek_and_stats_show_state);
    tcase_add_test(tc, peek_is_bounded_in_bytes);
    tcase_add_test(tc, peek_pages_through_the_queue);
    tcase_add_test(tc, long_poll_returns_when_a_message_arrives);
    tcase_add_test(tc, empty_long_poll_times_out);
    tcase_add_test(tc, long_poll_sees_a_delayed_message_come_due);
    tcase_add_test(tc, fifty_long_polls_share_fifty_messages);
    tcase_add_test(tc, a_queue_lookup_holds_no_http_thread);
    tcase_add_test(tc, a_queue_lookup_the_data_plane_cannot_take_is_503);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
