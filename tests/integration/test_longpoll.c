/* Integration: many long polls at once. Three hundred receives wait on an empty queue; while
 * they wait, other requests (health, sends and receives on another queue) are answered at once,
 * because a waiting receive holds no thread and no database connection; every waiter is answered
 * at its deadline with an empty list; RYDES_MAX_WAITERS turns the next one away with 503; and
 * shutdown answers waiters immediately. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/mq_hub.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WAITERS 300

static struct harness_server srv;

static void limited(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-waiters", "300", &err));
    ck_assert(config_set_flag(cfg, "connection-limit", "2000", &err));
}

struct crowd {
    CURLM *multi;
    CURL *easy[WAITERS];
    struct curl_slist *headers;
    struct buf bodies[WAITERS];
    int ok;       /* 200 with an empty list */
    int64_t done; /* monotonic time when the last one finished */
};

static size_t keep(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

static void crowd_start(struct crowd *c, const char *queue, int wait)
{
    char url[256], body[64];
    snprintf(url, sizeof url, "%s/queues/%s/messages:receive", srv.base, queue);
    snprintf(body, sizeof body, "{\"wait_seconds\": %d}", wait);
    c->multi = curl_multi_init();
    c->headers = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    for (int i = 0; i < WAITERS; i++) {
        buf_init(&c->bodies[i]);
        c->easy[i] = curl_easy_init();
        curl_easy_setopt(c->easy[i], CURLOPT_URL, url);
        curl_easy_setopt(c->easy[i], CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(c->easy[i], CURLOPT_COPYPOSTFIELDS, body);
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEFUNCTION, keep);
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEDATA, &c->bodies[i]);
        curl_easy_setopt(c->easy[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(c->multi, c->easy[i]);
    }
}

static void *crowd_run(void *arg)
{
    struct crowd *c = arg;
    int running = 1;
    while (running) {
        curl_multi_perform(c->multi, &running);
        if (running)
            curl_multi_poll(c->multi, NULL, 0, 100, NULL);
    }
    c->done = clock_mono_us();
    for (int i = 0; i < WAITERS; i++) {
        long status = 0;
        curl_easy_getinfo(c->easy[i], CURLINFO_RESPONSE_CODE, &status);
        json_t *j = json_loads(buf_str(&c->bodies[i]), 0, NULL);
        if (status == 200 && json_array_size(json_object_get(j, "messages")) == 0)
            c->ok++;
        json_decref(j);
    }
    return NULL;
}

static void crowd_free(struct crowd *c)
{
    for (int i = 0; i < WAITERS; i++) {
        curl_multi_remove_handle(c->multi, c->easy[i]);
        curl_easy_cleanup(c->easy[i]);
        buf_cleanup(&c->bodies[i]);
    }
    curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
}

static void wait_for_waiters(int n)
{
    for (int i = 0; i < 200 && mq_hub_waiters(srv.app.hub) < n; i++) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(mq_hub_waiters(srv.app.hub), n);
}

START_TEST(waiters_do_not_starve_other_requests)
{
    harness_start(&srv, limited);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/quiet", NULL, &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/busy", NULL, &r);
    response_cleanup(&r);
    static struct crowd c;
    memset(&c, 0, sizeof c);
    int64_t t0 = clock_mono_us();
    crowd_start(&c, "quiet", 4);
    pthread_t t;
    pthread_create(&t, NULL, crowd_run, &c);
    wait_for_waiters(WAITERS);
    /* all 300 wait; everything else is still served, and one more waiter is refused */
    for (int i = 0; i < 20; i++) {
        harness_admin(&srv, "POST", "/queues/busy/messages", "{\"body\":\"b\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
        harness_admin(&srv, "POST", "/queues/busy/messages:receive", "{}", &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
        response_cleanup(&r);
    }
    harness_admin(&srv, "POST", "/queues/busy/messages:receive", "{\"wait_seconds\": 2}", &r);
    assert_problem(&r, 503);
    response_cleanup(&r);
    ck_assert_int_lt(clock_mono_us() - t0, 3500000); /* all of it happened while they waited */
    pthread_join(t, NULL);
    ck_assert_int_eq(c.ok, WAITERS);
    ck_assert_int_ge(c.done - t0, 3900000); /* nobody was answered before the deadline */
    crowd_free(&c);
    harness_stop(&srv);
}
END_TEST

START_TEST(shutdown_answers_waiters_at_once)
{
    harness_start(&srv, limited);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/idle", NULL, &r);
    response_cleanup(&r);
    static struct crowd c;
    memset(&c, 0, sizeof c);
    crowd_start(&c, "idle", 20);
    pthread_t t;
    pthread_create(&t, NULL, crowd_run, &c);
    wait_for_waiters(WAITERS);
    int64_t t0 = clock_mono_us();
    harness_stop(&srv);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.ok, WAITERS);
    ck_assert_int_lt(c.done - t0, 5000000); /* well before the 20 s deadline */
    crowd_free(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("longpoll");
    TCase *tc = tcase_create("longpoll");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, waiters_do_not_starve_other_requests);
    tcase_add_test(tc, shutdown_answers_waiters_at_once);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
