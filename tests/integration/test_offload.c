/* Integration: handler threads (rydes/offload.h). With a single HTTP thread and a single
 * handler thread, a slow route (a purge held up by another session's row locks) runs on the
 * handler thread, so the data plane (on the HTTP thread and the data plane's own threads) and
 * the readiness probe keep answering; slow requests beyond the handler
 * threads wait their turn and are all answered; a shutdown lets a running one finish and sends
 * its reply, and answers the ones not yet begun 503 without running them; without handler
 * threads every route still works on the HTTP thread. */
#include "harness.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct harness_server srv;

static void threads(struct config *cfg, const char *http, const char *handler)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", http, &err));
    ck_assert(config_set_flag(cfg, "handler-threads", handler, &err));
}

static void one_of_each(struct config *cfg)
{
    threads(cfg, "1", "1");
}

/* One handler thread, two for the data plane. */
static void two_data_threads(struct config *cfg)
{
    struct config_error err;
    threads(cfg, "1", "1");
    ck_assert(config_set_flag(cfg, "data-threads", "2", &err));
}

/* One of each, and at most two requests waiting for a thread of a set. */
static void short_queue(struct config *cfg)
{
    struct config_error err;
    threads(cfg, "1", "1");
    ck_assert(config_set_flag(cfg, "thread-queue-limit", "2", &err));
}

static void no_handler_threads(struct config *cfg)
{
    threads(cfg, "1", "0");
}

static void quick_stop(struct config *cfg)
{
    struct config_error err;
    threads(cfg, "1", "1");
    ck_assert(config_set_flag(cfg, "shutdown-timeout", "1", &err));
}

static long status_of(const char *method, const char *path, const char *body)
{
    struct response r;
    harness_admin(&srv, method, path, body, &r);
    long status = r.status;
    response_cleanup(&r);
    return status;
}

static void queue_with_a_message(const char *queue)
{
    char path[96];
    harness_put_queue(&srv, queue, NULL, 201);
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    ck_assert_int_eq(status_of("POST", path, "{\"body\": {\"n\": 1}}"), 201);
}

static long long messages_of(const char *queue)
{
    return harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = "
                        "(SELECT id FROM queues WHERE name = '%s')",
                        queue);
}

/* A session that holds every message of queue locked (FOR UPDATE) until holder_release. */
static PGconn *holder_lock(const char *queue)
{
    PGconn *holder = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SET idle_in_transaction_session_timeout = '15s'; BEGIN; "
             "SELECT id FROM messages WHERE queue_id = "
             "(SELECT id FROM queues WHERE name = '%s') FOR UPDATE",
             queue);
    PGresult *r = PQexec(holder, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_ge(PQntuples(r), 1);
    PQclear(r);
    return holder;
}

static void holder_release(PGconn *holder)
{
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
}

/* A request made on a thread of its own; status is 0 until it is answered. */
struct call {
    char method[8], path[96];
    _Atomic long status;
    pthread_t t;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    atomic_store(&c->status, status_of(c->method, c->path, NULL));
    return NULL;
}

static void call_start(struct call *c, const char *method, const char *path)
{
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", path);
    atomic_store(&c->status, 0);
    ck_assert_int_eq(pthread_create(&c->t, NULL, call_main, c), 0);
}

static long call_end(struct call *c)
{
    pthread_join(c->t, NULL);
    return atomic_load(&c->status);
}

/* Starts a purge of queue and waits until its statements wait for n locks in all. */
static void purge_blocked(struct call *c, const char *queue, int n)
{
    char path[96];
    snprintf(path, sizeof path, "/queues/%s:purge", queue);
    call_start(c, "POST", path);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND query LIKE '%mq_purge%'",
                                      n, 10),
                     n);
}

START_TEST(a_slow_route_does_not_hold_up_the_data_plane)
{
    harness_start(&srv, one_of_each);
    queue_with_a_message("offload-slow");
    harness_put_queue(&srv, "offload-fast", NULL, 201);
    harness_put_queue(&srv, "offload-fast.fifo", NULL, 201);
    ck_assert_int_eq(status_of("PUT", "/topics/offload-topic", NULL), 201);
    PGconn *holder = holder_lock("offload-slow");
    static struct call purge; /* the thread outlives a failed check's jump out of here */
    purge_blocked(&purge, "offload-slow", 1);
    /* the only HTTP thread and the data plane's threads still serve, while the only handler
     * thread waits: sends (combined, batch, FIFO), a receive, a publish, the probes */
    double t0 = harness_now_s();
    ck_assert_int_eq(status_of("POST", "/queues/offload-fast/messages", "{\"body\": 1}"), 201);
    ck_assert_int_eq(status_of("POST", "/queues/offload-fast/messages:batch",
                               "{\"entries\": [{\"id\": \"a\", \"body\": 2}]}"),
                     200);
    ck_assert_int_eq(status_of("POST", "/queues/offload-fast.fifo/messages",
                               "{\"body\": 3, \"group_id\": \"g\", \"dedup_id\": \"d\"}"),
                     201);
    ck_assert_int_eq(status_of("POST", "/topics/offload-topic/messages", "{\"body\": 4}"), 201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/offload-fast/messages:receive", "{\"max_messages\": 10}",
                  &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 2);
    response_cleanup(&r);
    ck_assert_int_eq(status_of("GET", "/healthz", NULL), 200);
    ck_assert_int_eq(status_of("GET", "/readyz", NULL), 200);
    double took = harness_now_s() - t0;
    ck_assert_int_eq(atomic_load(&purge.status), 0); /* the purge still waits */
    holder_release(holder);
    ck_assert_int_eq(call_end(&purge), 204);
    ck_assert_msg(took < 3.0, "the data plane waited %.1f s behind a purge", took);
    ck_assert_int_eq(messages_of("offload-slow"), 0);
    harness_stop(&srv);
}
END_TEST

#define CROWD 4

START_TEST(slow_routes_beyond_the_handler_threads_wait_their_turn)
{
    harness_start(&srv, one_of_each);
    queue_with_a_message("crowd-stuck");
    PGconn *holder = holder_lock("crowd-stuck");
    /* the threads outlive a failed check's jump out of here */
    static struct call purge, lists[CROWD];
    purge_blocked(&purge, "crowd-stuck", 1);
    for (int i = 0; i < CROWD; i++)
        call_start(&lists[i], "GET", "/queues");
    harness_sleep_ms(500);
    for (int i = 0; i < CROWD; i++) /* behind the purge on the one handler thread */
        ck_assert_int_eq(atomic_load(&lists[i].status), 0);
    int handlers = -1, data = -1;
    http_server_backlog(srv.app.http, &handlers, &data);
    ck_assert_int_eq(handlers, CROWD);
    ck_assert_int_eq(data, 0);
    double t0 = harness_now_s(); /* the probe does not queue with them */
    ck_assert_int_eq(status_of("GET", "/readyz", NULL), 200);
    double took = harness_now_s() - t0;
    holder_release(holder);
    ck_assert_msg(took < 3.0, "the readiness probe waited %.1f s behind a purge", took);
    ck_assert_int_eq(call_end(&purge), 204);
    for (int i = 0; i < CROWD; i++)
        ck_assert_int_eq(call_end(&lists[i]), 200);
    harness_stop(&srv);
}
END_TEST

static void *stop_main(void *arg)
{
    harness_stop(arg);
    return NULL;
}

START_TEST(a_shutdown_finishes_begun_handlers_and_refuses_queued_ones)
{
    harness_start(&srv, quick_stop);
    queue_with_a_message("stop-begun");
    queue_with_a_message("stop-queued");
    PGconn *holder = holder_lock("stop-begun");
    static struct call begun, queued; /* the threads outlive a failed check's jump out of here */
    purge_blocked(&begun, "stop-begun", 1);
    call_start(&queued, "POST", "/queues/stop-queued:purge");
    harness_sleep_ms(300);
    ck_assert_int_eq(atomic_load(&queued.status), 0); /* behind the first */
    pthread_t st;
    ck_assert_int_eq(pthread_create(&st, NULL, stop_main, &srv), 0);
    harness_sleep_ms(2500); /* past the shutdown timeout (1 s) */
    ck_assert_int_eq(atomic_load(&begun.status), 0);
    /* answered while the begun one still waits: its thread no longer holds the queue back */
    ck_assert_int_eq(atomic_load(&queued.status), 503);
    holder_release(holder);
    pthread_join(st, NULL);
    ck_assert_int_eq(call_end(&begun), 204);
    ck_assert_int_eq(call_end(&queued), 503);
    ck_assert_int_eq(messages_of("stop-begun"), 0);
    ck_assert_int_eq(messages_of("stop-queued"), 1); /* never begun */
}
END_TEST

/* The receipt of the one message of a FIFO queue, received now (caller frees). */
static char *fifo_receipt(const char *queue)
{
    char path[96];
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    ck_assert_int_eq(
        status_of("POST", path, "{\"body\": 1, \"group_id\": \"g\", \"dedup_id\": \"d\"}"), 201);
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{}", &r);
    ck_assert_int_eq(r.status, 200);
    char *receipt =
        strdup(json_str(json_array_get(json_object_get(r.json, "messages"), 0), "receipt"));
    response_cleanup(&r);
    return receipt;
}

/* FIFO deletes are the data plane's work on its threads (one here): one waits on a row lock,
 * the next waits its turn; a stop refuses the waiting one and lets the begun one finish. */
START_TEST(a_shutdown_refuses_data_plane_work_not_yet_begun)
{
    harness_start(&srv, quick_stop);
    harness_put_queue(&srv, "work-begun.fifo", NULL, 201);
    harness_put_queue(&srv, "work-queued.fifo", NULL, 201);
    char *begun_receipt = fifo_receipt("work-begun.fifo");
    char *queued_receipt = fifo_receipt("work-queued.fifo");
    PGconn *holder = holder_lock("work-begun.fifo");
    static struct call begun, queued; /* the threads outlive a failed check's jump out of here */
    char path[256];
    snprintf(path, sizeof path, "/queues/work-begun.fifo/messages/%s", begun_receipt);
    call_start(&begun, "DELETE", path);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND datname = current_database()",
                                      1, 10),
                     1);
    snprintf(path, sizeof path, "/queues/work-queued.fifo/messages/%s", queued_receipt);
    call_start(&queued, "DELETE", path);
    harness_sleep_ms(300);
    ck_assert_int_eq(atomic_load(&queued.status), 0); /* behind the first */
    pthread_t st;
    ck_assert_int_eq(pthread_create(&st, NULL, stop_main, &srv), 0);
    harness_sleep_ms(2500);                             /* past the shutdown timeout (1 s) */
    ck_assert_int_eq(atomic_load(&queued.status), 503); /* while the begun one still waits */
    holder_release(holder);
    pthread_join(st, NULL);
    ck_assert_int_eq(call_end(&begun), 204);
    ck_assert_int_eq(call_end(&queued), 503);
    ck_assert_int_eq(messages_of("work-begun.fifo"), 0);
    ck_assert_int_eq(messages_of("work-queued.fifo"), 1); /* never begun */
    free(begun_receipt);
    free(queued_receipt);
}
END_TEST

/* The DELETE of receipt in FIFO queue queue, begun (not waited for). */
static void fifo_delete_start(struct call *c, const char *queue, const char *receipt)
{
    char path[256];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, receipt);
    call_start(c, "DELETE", path);
}

/* RYDES_DATA_THREADS sizes the data plane's set apart from the handlers': with two, two FIFO
 * deletes wait on row locks at once and a third waits its turn (with one, the second would). */
START_TEST(the_data_plane_runs_as_many_at_once_as_its_threads)
{
    harness_start(&srv, two_data_threads);
    const char *queues[] = {"data-a.fifo", "data-b.fifo", "data-c.fifo"};
    char *receipts[3];
    for (int i = 0; i < 3; i++) {
        harness_put_queue(&srv, queues[i], NULL, 201);
        receipts[i] = fifo_receipt(queues[i]);
    }
    PGconn *holders[] = {holder_lock(queues[0]), holder_lock(queues[1])};
    static struct call deletes[3]; /* the threads outlive a failed check's jump out of here */
    for (int i = 0; i < 2; i++)
        fifo_delete_start(&deletes[i], queues[i], receipts[i]);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND datname = current_database()",
                                      2, 10),
                     2);
    fifo_delete_start(&deletes[2], queues[2], receipts[2]); /* its rows are free */
    harness_sleep_ms(300);
    ck_assert_int_eq(atomic_load(&deletes[2].status), 0); /* no data-plane thread free */
    int handlers = -1, data = -1;
    http_server_backlog(srv.app.http, &handlers, &data);
    ck_assert_int_eq(data, 1);
    for (int i = 0; i < 2; i++)
        holder_release(holders[i]);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(call_end(&deletes[i]), 204);
        ck_assert_int_eq(messages_of(queues[i]), 0);
        free(receipts[i]);
    }
    harness_stop(&srv);
}
END_TEST

START_TEST(without_handler_threads_every_route_runs_on_the_http_thread)
{
    harness_start(&srv, no_handler_threads);
    queue_with_a_message("offload-none");
    harness_put_queue(&srv, "offload-none.fifo", NULL, 201);
    ck_assert_int_eq(status_of("POST", "/queues/offload-none.fifo/messages",
                               "{\"body\": 1, \"group_id\": \"g\", \"dedup_id\": \"d\"}"),
                     201);
    struct response got;
    harness_admin(&srv, "POST", "/queues/offload-none.fifo/messages:receive", "{}", &got);
    ck_assert_int_eq(got.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(got.json, "messages")), 1);
    response_cleanup(&got);
    ck_assert_int_eq(status_of("POST", "/queues/offload-none:purge", NULL), 204);
    ck_assert_int_eq(status_of("GET", "/queues/offload-none", NULL), 200);
    struct response r;
    harness_admin(&srv, "GET", "/nothing-here", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_stop(&srv);
}
END_TEST

/* With the handler thread stuck and RYDES_THREAD_QUEUE_LIMIT requests waiting for it, the next
 * one is answered 503 with Retry-After at once (no connection held for a thread that may not
 * come); those waiting are answered once the thread is free. */
START_TEST(a_full_queue_answers_503_at_once)
{
    harness_start(&srv, short_queue);
    queue_with_a_message("queue-full");
    PGconn *holder = holder_lock("queue-full");
    static struct call purge, lists[2]; /* the threads outlive a failed check's jump out of here */
    purge_blocked(&purge, "queue-full", 1);
    for (int i = 0; i < 2; i++)
        call_start(&lists[i], "GET", "/queues");
    int handlers = -1, data = -1;
    for (int i = 0; i < 200 && handlers != 2; i++) {
        harness_sleep_ms(10);
        http_server_backlog(srv.app.http, &handlers, &data);
    }
    ck_assert_int_eq(handlers, 2);
    double t0 = harness_now_s();
    struct response r;
    harness_admin(&srv, "GET", "/queues", NULL, &r);
    double took = harness_now_s() - t0;
    assert_problem(&r, 503);
    char h[16];
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    ck_assert_msg(strstr(buf_str(&r.body), "RYDES_THREAD_QUEUE_LIMIT"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_msg(took < 2.0, "the refusal took %.1f s", took);
    holder_release(holder);
    ck_assert_int_eq(call_end(&purge), 204);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(call_end(&lists[i]), 200);
    harness_stop(&srv);
}
END_TEST

/* Sends method path (no body) on a connection of its own and closes it without reading. */
static void send_and_leave(const char *method, const char *path)
{
    int fd = harness_connect(&srv, NULL);
    char req[256];
    int len = snprintf(req, sizeof req,
                       "%s %s HTTP/1.1\r\nHost: rydes\r\nAuthorization: Bearer %s\r\n"
                       "Content-Length: 0\r\n\r\n",
                       method, path, HARNESS_ADMIN_TOKEN);
    ck_assert_int_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    harness_sleep_ms(200); /* read and queued for the handler thread */
    close(fd);
}

/* A request whose client left while it waited long for the (stuck) handler thread is not
 * begun: a client that gave up leaves no work behind it. */
START_TEST(a_request_whose_client_left_is_not_begun)
{
    harness_start(&srv, one_of_each);
    queue_with_a_message("left-stuck");
    PGconn *holder = holder_lock("left-stuck");
    static struct call purge; /* the thread outlives a failed check's jump out of here */
    purge_blocked(&purge, "left-stuck", 1);
    send_and_leave("PUT", "/queues/left-behind");
    int handlers = -1, data = -1;
    http_server_backlog(srv.app.http, &handlers, &data);
    ck_assert_int_eq(handlers, 1);
    harness_sleep_ms(1000); /* a wait long enough for the thread to look whether it is wanted */
    holder_release(holder);
    ck_assert_int_eq(call_end(&purge), 204);
    for (int i = 0; i < 200 && handlers > 0; i++) {
        harness_sleep_ms(10);
        http_server_backlog(srv.app.http, &handlers, &data);
    }
    ck_assert_int_eq(handlers, 0);
    ck_assert_int_eq(status_of("GET", "/queues/never-made", NULL), 404); /* the thread is free */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'left-behind'"), 0);
    harness_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offload");
    TCase *tc = tcase_create("offload");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_slow_route_does_not_hold_up_the_data_plane);
    tcase_add_test(tc, slow_routes_beyond_the_handler_threads_wait_their_turn);
    tcase_add_test(tc, a_shutdown_finishes_begun_handlers_and_refuses_queued_ones);
    tcase_add_test(tc, a_shutdown_refuses_data_plane_work_not_yet_begun);
    tcase_add_test(tc, the_data_plane_runs_as_many_at_once_as_its_threads);
    tcase_add_test(tc, without_handler_threads_every_route_runs_on_the_http_thread);
    tcase_add_test(tc, a_full_queue_answers_503_at_once);
    tcase_add_test(tc, a_request_whose_client_left_is_not_begun);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
