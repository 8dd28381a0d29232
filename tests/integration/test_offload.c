/* Integration: handler threads (rydes/offload.h). With a single HTTP thread, a slow route (a
 * purge held up by another session's row locks) runs on a handler thread, so the data plane on
 * that HTTP thread keeps answering; requests for slow routes beyond the handler threads wait
 * their turn and are all answered; a shutdown lets a held-up one finish and answers it; without
 * handler threads every route still works on the HTTP thread. */
#include "harness.h"

#include "rydes/clock.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct harness_server srv;

static void one_http_thread(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "1", &err));
    ck_assert(config_set_flag(cfg, "handler-threads", "2", &err));
}

static void no_handler_threads(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "1", &err));
    ck_assert(config_set_flag(cfg, "handler-threads", "0", &err));
}

static void one_of_each(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "1", &err));
    ck_assert(config_set_flag(cfg, "handler-threads", "1", &err));
}

static void send_one(const char *queue, long status)
{
    char path[96];
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"body\": {\"n\": 1}}", &r);
    ck_assert_int_eq(r.status, status);
    response_cleanup(&r);
}

/* A session that holds every message of queue locked (FOR UPDATE) until holder_release. */
static PGconn *holder_lock(const char *queue)
{
    PGconn *holder = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SET idle_in_transaction_session_timeout = '5s'; BEGIN; "
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

struct purge {
    char queue[64];
    long status;
};

static void *purge_main(void *arg)
{
    struct purge *p = arg;
    char path[96];
    snprintf(path, sizeof path, "/queues/%s:purge", p->queue);
    struct response r;
    harness_admin(&srv, "POST", path, NULL, &r);
    p->status = r.status;
    response_cleanup(&r);
    return NULL;
}

/* Starts a purge of queue on a thread and waits until its DELETE waits for a lock. */
static void purge_blocked(pthread_t *t, struct purge *p, const char *queue)
{
    snprintf(p->queue, sizeof p->queue, "%s", queue);
    p->status = 0;
    ck_assert_int_eq(pthread_create(t, NULL, purge_main, p), 0);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND query LIKE '%mq_purge%'",
                                      1, 10),
                     1);
}

START_TEST(a_slow_route_does_not_hold_up_the_data_plane)
{
    harness_start(&srv, one_http_thread);
    harness_put_queue(&srv, "offload-slow", NULL, 201);
    harness_put_queue(&srv, "offload-fast", NULL, 201);
    send_one("offload-slow", 201);
    PGconn *holder = holder_lock("offload-slow");
    pthread_t t;
    struct purge p;
    purge_blocked(&t, &p, "offload-slow");
    /* the only HTTP thread still serves: a send, a receive, a queue read */
    double t0 = harness_now_s();
    send_one("offload-fast", 201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/offload-fast/messages:receive", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/healthz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    double took = harness_now_s() - t0;
    ck_assert_int_eq(p.status, 0); /* the purge still waits */
    holder_release(holder);
    pthread_join(t, NULL);
    ck_assert_int_eq(p.status, 204);
    ck_assert_msg(took < 3.0, "the data plane waited %.1f s behind a purge", took);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = "
                                  "(SELECT id FROM queues WHERE name = 'offload-slow')"),
                     0);
    harness_stop(&srv);
}
END_TEST

#define CROWD 24

struct lister {
    long status;
    int queues;
};

static void *list_main(void *arg)
{
    struct lister *l = arg;
    struct response r;
    harness_admin(&srv, "GET", "/queues", NULL, &r);
    l->status = r.status;
    l->queues = (int)json_array_size(json_object_get(r.json, "queues"));
    response_cleanup(&r);
    return NULL;
}

START_TEST(slow_routes_beyond_the_handler_threads_wait_their_turn)
{
    harness_start(&srv, one_of_each);
    harness_put_queue(&srv, "crowd-a", NULL, 201);
    harness_put_queue(&srv, "crowd-b", NULL, 201);
    pthread_t t[CROWD];
    struct lister l[CROWD] = {{0}};
    for (int i = 0; i < CROWD; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, list_main, &l[i]), 0);
    for (int i = 0; i < CROWD; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(l[i].status, 200);
        ck_assert_int_ge(l[i].queues, 2);
    }
    harness_stop(&srv);
}
END_TEST

struct stopper {
    struct harness_server *s;
};

static void *stop_main(void *arg)
{
    harness_stop(((struct stopper *)arg)->s);
    return NULL;
}

START_TEST(a_shutdown_lets_a_slow_route_finish_and_answers_it)
{
    harness_start(&srv, one_http_thread);
    harness_put_queue(&srv, "offload-stop", NULL, 201);
    send_one("offload-stop", 201);
    PGconn *holder = holder_lock("offload-stop");
    pthread_t t, st;
    struct purge p;
    purge_blocked(&t, &p, "offload-stop");
    struct stopper stopper = {&srv};
    ck_assert_int_eq(pthread_create(&st, NULL, stop_main, &stopper), 0);
    harness_sleep_ms(500);
    holder_release(holder);
    pthread_join(t, NULL);
    pthread_join(st, NULL);
    ck_assert_int_eq(p.status, 204);
}
END_TEST

START_TEST(without_handler_threads_every_route_runs_on_the_http_thread)
{
    harness_start(&srv, no_handler_threads);
    harness_put_queue(&srv, "offload-none", NULL, 201);
    send_one("offload-none", 201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/offload-none:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/queues/offload-none", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/nothing-here", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
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
    tcase_add_test(tc, a_shutdown_lets_a_slow_route_finish_and_answers_it);
    tcase_add_test(tc, without_handler_threads_every_route_runs_on_the_http_thread);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
