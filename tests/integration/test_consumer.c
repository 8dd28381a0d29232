/* Integration: the consumer loop (src/workers/consumer.c) on standard queues, with handlers of
 * this test's own against the real database:
 *   a_slow_batch_gives_back_what_it_cannot_reach_in_time: messages a slow batch would reach only
 *     after their lease are given back untried at half the lease, so another consumer's receive
 *     does not count them towards the dead-letter queue;
 *   a_stopping_consumer_gives_its_batch_back: a stop during a batch hands the rest back at once;
 *   a_deferred_message_keeps_its_receive_count: CONSUMER_DEFER gives the message back without
 *     charging its receive, and the consumer pauses. */
#include "harness.h"

#include "rydes/consumer.h"
#include "rydes/mq_hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static struct harness_server srv;

/* What the handlers did: the bodies handled (each once: handled_twice counts repeats). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char handled[512];
static int handled_count, handled_twice;
static int slow_ms;               /* every handler call sleeps this long */
static _Atomic bool entered;      /* a handler call has begun */
static _Atomic bool release_gate; /* gated handlers wait for this */
static _Atomic int defers_left;   /* handler calls still to answer CONSUMER_DEFER */
/* The consumers a test started (defs static: a failed assertion leaves the test's frame), stopped
 * by the test or, when it failed, by the teardown. */
static struct consumer *running[2];

static void setup(void)
{
    harness_start(&srv, NULL);
    handled[0] = '\0';
    handled_count = handled_twice = 0;
    slow_ms = 0;
    entered = release_gate = false;
    defers_left = 0;
}

static void stop(struct consumer **k);

static void teardown(void)
{
    release_gate = true;
    for (int i = 0; i < 2; i++)
        stop(&running[i]);
    harness_stop(&srv);
}

static void record(const char *body)
{
    pthread_mutex_lock(&mu);
    char token[64];
    snprintf(token, sizeof token, "<%s>", body);
    if (strstr(handled, token))
        handled_twice++;
    else if (strlen(handled) + strlen(token) < sizeof handled)
        strcat(handled, token);
    handled_count++;
    pthread_mutex_unlock(&mu);
}

static int count_handled(void)
{
    pthread_mutex_lock(&mu);
    int n = handled_count;
    pthread_mutex_unlock(&mu);
    return n;
}

static enum consumer_result slow(const struct consumer_env *env, struct db_conn *c,
                                 const struct mq_message *m, char *why, size_t n)
{
    (void)env, (void)c, (void)why, (void)n;
    harness_sleep_ms(slow_ms);
    record(m->body);
    return CONSUMER_DONE;
}

static enum consumer_result gated(const struct consumer_env *env, struct db_conn *c,
                                  const struct mq_message *m, char *why, size_t n)
{
    (void)env, (void)c, (void)why, (void)n;
    entered = true;
    while (!release_gate)
        harness_sleep_ms(10);
    record(m->body);
    return CONSUMER_DONE;
}

static enum consumer_result deferring(const struct consumer_env *env, struct db_conn *c,
                                      const struct mq_message *m, char *why, size_t n)
{
    (void)env, (void)c, (void)why, (void)n;
    if (atomic_fetch_sub(&defers_left, 1) > 0)
        return CONSUMER_DEFER;
    record(m->body);
    return CONSUMER_DONE;
}

static struct consumer **start(const struct consumer_def *def)
{
    struct consumer_env env = {
        .pool = srv.app.pool, .hub = srv.app.hub, .cfg = &srv.cfg, .acquire_timeout_ms = 2000};
    struct consumer **slot = running[0] ? &running[1] : &running[0];
    *slot = consumer_start(def, &env);
    return slot;
}

/* Stops *k (NULL: nothing to do), waking its long poll. */
static void stop(struct consumer **k)
{
    if (!*k)
        return;
    consumer_request_stop(*k);
    const char *queue = consumer_def_of(*k)->queue;
    mq_hub_poke(srv.app.hub, (int)harness_sqlf("SELECT id FROM queues WHERE name = '%s'", queue));
    consumer_stop(*k);
    *k = NULL;
}

static void send_n(const char *queue, int n)
{
    for (int i = 1; i <= n; i++) {
        char path[128], body[64];
        snprintf(path, sizeof path, "/queues/%s/messages", queue);
        snprintf(body, sizeof body, "{\"body\": \"m%d\"}", i);
        struct response r;
        harness_admin(&srv, "POST", path, body, &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
}

static long long in_queue(const char *queue, const char *where)
{
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s'%s",
                        queue, where);
}

static void wait_handled(int want, double timeout_s)
{
    double until = harness_now_s() + timeout_s;
    while (count_handled() < want && harness_now_s() < until)
        harness_sleep_ms(50);
    ck_assert_msg(count_handled() == want, "handled %d of %d: %s", count_handled(), want, handled);
}

/* Eight messages at 0.9 s each under a 4 s lease, with max_receive_count 1: the first
 * consumer's batch would reach the sixth after the lease, and a second consumer, receiving the
 * last ones again, would move them to the dead-letter queue untried. Given back at half the
 * lease (after the third, 1.3 s before their leases end), every one is handled, once. */
START_TEST(a_slow_batch_gives_back_what_it_cannot_reach_in_time)
{
    harness_put_queue(&srv, "slow-dlq", NULL, 201);
    harness_put_queue(&srv, "slow",
                      "{\"dead_letter\": {\"queue\": \"slow-dlq\", \"max_receive_count\": 1}}",
                      201);
    send_n("slow", 8);
    slow_ms = 900;
    static const struct consumer_def def = {
        .name = "slow-test", .queue = "slow", .batch = 10, .visibility = 4, .handle = slow};
    struct consumer **a = start(&def);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM messages m JOIN queues q ON "
                                      "q.id = m.queue_id WHERE q.name = 'slow' AND "
                                      "m.receive_count = 1",
                                      8, 5),
                     8);
    struct consumer **b = start(&def);
    wait_handled(8, 30);
    stop(a);
    stop(b);
    ck_assert_int_eq(handled_twice, 0);
    ck_assert_int_eq(in_queue("slow-dlq", ""), 0);
    ck_assert_int_eq(in_queue("slow", ""), 0);
}
END_TEST

/* A stop while the first message of a batch of five is being handled: that one finishes, the
 * other four go back at once, as if never received (they used to be handled first). */
START_TEST(a_stopping_consumer_gives_its_batch_back)
{
    harness_put_queue(&srv, "stopping", NULL, 201);
    send_n("stopping", 5);
    static const struct consumer_def def = {
        .name = "stop-test", .queue = "stopping", .batch = 10, .visibility = 30, .handle = gated};
    struct consumer **k = start(&def);
    double until = harness_now_s() + 10;
    while (!entered && harness_now_s() < until)
        harness_sleep_ms(10);
    ck_assert(entered);
    consumer_request_stop(*k);
    release_gate = true;
    stop(k);
    ck_assert_int_eq(count_handled(), 1);
    ck_assert_int_eq(in_queue("stopping", " AND m.receive_count = 0 AND m.visible_at <= now()"), 4);
}
END_TEST

/* A handler that says "not now" twice: the message comes back without its receives counted
 * (max_receive_count 1 would have sent it to the dead-letter queue), after a pause each time. */
START_TEST(a_deferred_message_keeps_its_receive_count)
{
    harness_put_queue(&srv, "defer-dlq", NULL, 201);
    harness_put_queue(&srv, "defer",
                      "{\"dead_letter\": {\"queue\": \"defer-dlq\", \"max_receive_count\": 1}}",
                      201);
    send_n("defer", 1);
    defers_left = 2;
    static const struct consumer_def def = {
        .name = "defer-test", .queue = "defer", .batch = 10, .visibility = 30, .handle = deferring};
    double t0 = harness_now_s();
    struct consumer **k = start(&def);
    wait_handled(1, 10);
    double took = harness_now_s() - t0;
    stop(k);
    ck_assert_msg(took > 1.8, "handled after %.1f s: the consumer did not pause", took);
    ck_assert_int_eq(in_queue("defer-dlq", ""), 0);
    ck_assert_int_eq(in_queue("defer", ""), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("consumer");
    TCase *tc = tcase_create("consumer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_slow_batch_gives_back_what_it_cannot_reach_in_time);
    tcase_add_test(tc, a_stopping_consumer_gives_its_batch_back);
    tcase_add_test(tc, a_deferred_message_keeps_its_receive_count);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
