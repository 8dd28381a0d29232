/* Integration: regressions for the races and edge cases a review of the queue engine found.
 * FIFO deletes running in parallel leave the group open; FIFO batches naming the same groups in
 * opposite orders never deadlock; a long poll whose client has gone takes no message; a busy
 * group cannot starve another under delete:true; redrive never moves a message a consumer holds
 * and never redrives a queue into itself. */
#include "harness.h"

#include "rydes/mq.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
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

static json_t *receive(const char *queue, const char *body, struct response *r)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    harness_admin(&srv, "POST", path, body, r);
    ck_assert_int_eq(r->status, 200);
    return json_object_get(r->json, "messages");
}

static void send_group(const char *queue, const char *group, const char *body)
{
    char path[160], req[256];
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    snprintf(req, sizeof req, "{\"body\":\"%s\",\"group_id\":\"%s\",\"dedup_id\":\"%s-%s\"}", body,
             group, group, body);
    struct response r;
    harness_admin(&srv, "POST", path, req, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}

struct deleter {
    char path[256];
    long status;
};

static void *delete_in_thread(void *arg)
{
    struct deleter *d = arg;
    struct response r;
    harness_admin(&srv, "DELETE", d->path, NULL, &r);
    d->status = r.status;
    response_cleanup(&r);
    return NULL;
}

START_TEST(parallel_fifo_deletes_leave_the_group_open)
{
    harness_put_queue(&srv, "par.fifo", NULL, 201);
    for (int i = 1; i <= 3; i++) {
        char b[8];
        snprintf(b, sizeof b, "m%d", i);
        send_group("par.fifo", "g", b);
    }
    struct response r;
    json_t *msgs = receive("par.fifo", "{\"max_messages\":2,\"visibility_timeout\":600}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    struct deleter d[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        snprintf(d[i].path, sizeof d[i].path, "/queues/par.fifo/messages/%s",
                 json_str(json_array_get(msgs, (size_t)i), "receipt"));
        pthread_create(&t[i], NULL, delete_in_thread, &d[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(d[i].status, 204);
    }
    response_cleanup(&r);
    msgs = receive("par.fifo", "{}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1); /* m3 flows at once, not after the lease */
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "m3");
    response_cleanup(&r);
}
END_TEST

struct batcher {
    bool reverse;
    int failures;
};

static void *send_batches(void *arg)
{
    struct batcher *b = arg;
    for (int round = 0; round < 15; round++) {
        char body[1024] = "{\"entries\":[";
        for (int i = 0; i < 5; i++) {
            int g = b->reverse ? 4 - i : i;
            size_t n = strlen(body);
            snprintf(
                body + n, sizeof body - n,
                "%s{\"id\":\"e%d\",\"body\":\"x\",\"group_id\":\"g%d\",\"dedup_id\":\"%c%d-%d\"}",
                i ? "," : "", i, g, b->reverse ? 'r' : 'f', round, i);
        }
        strcat(body, "]}");
        struct response r;
        harness_admin(&srv, "POST", "/queues/order.fifo/messages:batch", body, &r);
        if (r.status != 200 || json_array_size(json_object_get(r.json, "failed")) != 0)
            b->failures++;
        response_cleanup(&r);
    }
    return NULL;
}

START_TEST(fifo_batches_in_opposite_orders_do_not_deadlock)
{
    harness_put_queue(&srv, "order.fifo", NULL, 201);
    struct batcher b[2] = {{.reverse = false}, {.reverse = true}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, send_batches, &b[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(b[0].failures + b[1].failures, 0);
    ck_assert_int_eq(harness_stored("order.fifo"), 150);
}
END_TEST

static size_t ignore(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

START_TEST(long_poll_of_a_client_that_left_takes_nothing)
{
    harness_put_queue(&srv, "left", NULL, 201);
    CURL *c = curl_easy_init();
    char url[160];
    snprintf(url, sizeof url, "%s/queues/left/messages:receive", srv.base);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"wait_seconds\":10}");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 700L); /* the client gives up and closes */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ignore);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    struct response r;
    harness_admin(&srv, "POST", "/queues/left/messages", "{\"body\":\"for the living\"}", &r);
    response_cleanup(&r);
    json_t *msgs = receive("left", "{\"wait_seconds\":5}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(msgs, 0), "receive_count")),
                     1);
    response_cleanup(&r);
}
END_TEST

START_TEST(delete_now_does_not_starve_other_groups)
{
    harness_put_queue(&srv, "fair.fifo", NULL, 201);
    for (int i = 0; i < 30; i++) {
        char b[8];
        snprintf(b, sizeof b, "a%d", i);
        send_group("fair.fifo", "busy", b);
    }
    send_group("fair.fifo", "quiet", "q0");
    bool seen = false;
    for (int i = 0; i < 2 && !seen; i++) {
        struct response r;
        json_t *msgs = receive("fair.fifo", "{\"max_messages\":10,\"delete\":true}", &r);
        for (size_t k = 0; k < json_array_size(msgs); k++)
            seen |= strcmp(json_str(json_array_get(msgs, k), "body"), "q0") == 0;
        response_cleanup(&r);
    }
    ck_assert_msg(seen, "the quiet group waited behind the busy one");
}
END_TEST

START_TEST(redrive_leaves_held_messages_and_refuses_itself)
{
    harness_put_queue(&srv, "held-dlq", NULL, 201);
    harness_put_queue(&srv, "held",
                      "{\"dead_letter\":{\"queue\":\"held-dlq\",\"max_receive_count\":1}}", 201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/held/messages", "{\"body\":\"x\"}", &r);
    response_cleanup(&r);
    receive("held", "{\"visibility_timeout\":0}", &r); /* first delivery */
    response_cleanup(&r);
    json_t *msgs = receive("held", "{}", &r); /* the next one would exceed: dead-lettered */
    ck_assert_int_eq(json_array_size(msgs), 0);
    response_cleanup(&r);
    msgs = receive("held-dlq", "{\"visibility_timeout\":60}", &r); /* a consumer holds it */
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/held-dlq:redrive", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 0);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/held-dlq:redrive", "{\"to\":\"held-dlq\"}", &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("races");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, parallel_fifo_deletes_leave_the_group_open);
    tcase_add_test(tc, fifo_batches_in_opposite_orders_do_not_deadlock);
    tcase_add_test(tc, long_poll_of_a_client_that_left_takes_nothing);
    tcase_add_test(tc, delete_now_does_not_starve_other_groups);
    tcase_add_test(tc, redrive_leaves_held_messages_and_refuses_itself);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
