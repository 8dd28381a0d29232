/* Integration: the queue engine's correctness under concurrency, all over HTTP. (a) Eight
 * consumers drain 5,000 messages while two producers keep sending (batches of ten, long-polling
 * receives, batch deletes): every message sent is delivered, none twice, none lost, each with
 * the id its send returned. (b) A consumer that "crashes" (receives with a 1 s lease and never
 * deletes) has its messages redelivered to another consumer after the lease, with
 * receive_count 2, and its receipts are then superseded. (c) FIFO: four producers and four
 * consumers on 20 groups of 25 messages; every group is consumed in exact send order, nothing
 * twice. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/ids.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_server srv;

static void bigger_server(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "8", &err));
    ck_assert(config_set_flag(cfg, "db-pool-size", "12", &err));
}

static void setup(void)
{
    harness_start(&srv, bigger_server);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* Deletes the receipts of msgs in one batch; returns how many were not deleted (-1: the
 * request itself failed). */
static int delete_all(const char *queue, json_t *msgs)
{
    json_t *receipts = json_array();
    for (size_t i = 0; i < json_array_size(msgs); i++)
        json_array_append(receipts, json_object_get(json_array_get(msgs, i), "receipt"));
    json_t *req = json_pack("{s:o}", "receipts", receipts);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:delete", queue);
    struct response r;
    harness_admin(&srv, "POST", path, body, &r);
    free(body);
    json_t *ok = json_object_get(r.json, "successful"),
           *failed_list = json_object_get(r.json, "failed");
    int failed = -1;
    if (r.status == 200 &&
        json_array_size(ok) + json_array_size(failed_list) == json_array_size(msgs))
        failed = (int)json_array_size(failed_list);
    response_cleanup(&r);
    return failed;
}

/* ---- (a) many producers and consumers on a standard queue ---- */

#define LOAD_PRODUCERS    2
#define LOAD_CONSUMERS    8
#define LOAD_PER_PRODUCER 2500
#define LOAD_TOTAL        (LOAD_PRODUCERS * LOAD_PER_PRODUCER)
#define LOAD_DEADLINE_US  45000000

struct load {
    pthread_mutex_t mu;
    int delivered[LOAD_TOTAL];
    char sent_id[LOAD_TOTAL][IDS_UUID_LEN];
    char got_id[LOAD_TOTAL][IDS_UUID_LEN];
    int total;
    int producers_done;
    int errors;        /* unexpected statuses */
    int delete_failed; /* receipts a batch delete did not delete */
    int bad_bodies;
    int64_t deadline_us;
};

static struct load load;

static void load_error(void)
{
    pthread_mutex_lock(&load.mu);
    load.errors++;
    pthread_mutex_unlock(&load.mu);
}

static void *producer(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int b = 0; b < LOAD_PER_PRODUCER / 10; b++) {
        json_t *entries = json_array();
        for (int i = 0; i < 10; i++) {
            int idx = k * LOAD_PER_PRODUCER + b * 10 + i;
            char id[16], body[32];
            snprintf(id, sizeof id, "e%d", i);
            snprintf(body, sizeof body, "load-%d", idx);
            json_array_append_new(entries, json_pack("{s:s, s:s}", "id", id, "body", body));
        }
        json_t *req = json_pack("{s:o}", "entries", entries);
        char *text = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        struct response r;
        harness_admin(&srv, "POST", "/queues/load/messages:batch", text, &r);
        free(text);
        json_t *ok = json_object_get(r.json, "successful");
        if (r.status != 200 || json_array_size(ok) != 10)
            load_error();
        for (size_t i = 0; i < json_array_size(ok); i++) {
            json_t *e = json_array_get(ok, i);
            int idx = k * LOAD_PER_PRODUCER + b * 10 + atoi(json_str(e, "id") + 1);
            pthread_mutex_lock(&load.mu);
            snprintf(load.sent_id[idx], IDS_UUID_LEN, "%s", json_str(e, "message_id"));
            pthread_mutex_unlock(&load.mu);
        }
        response_cleanup(&r);
    }
    pthread_mutex_lock(&load.mu);
    load.producers_done++;
    pthread_mutex_unlock(&load.mu);
    return NULL;
}

static bool load_finished(void)
{
    pthread_mutex_lock(&load.mu);
    bool done = (load.producers_done == LOAD_PRODUCERS && load.total >= LOAD_TOTAL) ||
                load.errors > 0 || clock_mono_us() > load.deadline_us;
    pthread_mutex_unlock(&load.mu);
    return done;
}

static void *consumer(void *arg)
{
    (void)arg;
    while (!load_finished()) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/load/messages:receive",
                      "{\"max_messages\": 10, \"wait_seconds\": 1, \"visibility_timeout\": 30}",
                      &r);
        json_t *msgs = json_object_get(r.json, "messages");
        if (r.status != 200 || !json_is_array(msgs)) {
            load_error();
            response_cleanup(&r);
            break;
        }
        pthread_mutex_lock(&load.mu);
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *m = json_array_get(msgs, i);
            const char *body = json_str(m, "body");
            int idx = body && strncmp(body, "load-", 5) == 0 ? atoi(body + 5) : -1;
            if (idx < 0 || idx >= LOAD_TOTAL) {
                load.bad_bodies++;
                continue;
            }
            if (load.delivered[idx]++ == 0)
                snprintf(load.got_id[idx], IDS_UUID_LEN, "%s", json_str(m, "message_id"));
            load.total++;
        }
        pthread_mutex_unlock(&load.mu);
        if (json_array_size(msgs) > 0) {
            int failed = delete_all("load", msgs);
            pthread_mutex_lock(&load.mu);
            if (failed < 0)
                load.errors++;
            else
                load.delete_failed += failed;
            pthread_mutex_unlock(&load.mu);
        }
        response_cleanup(&r);
    }
    return NULL;
}

START_TEST(consumers_drain_while_producers_send)
{
    harness_put_queue(&srv, "load", "{\"visibility_timeout\": 30}", 201);
    memset(&load, 0, sizeof load);
    pthread_mutex_init(&load.mu, NULL);
    int64_t start = clock_mono_us();
    load.deadline_us = start + LOAD_DEADLINE_US;
    pthread_t producers[LOAD_PRODUCERS], consumers[LOAD_CONSUMERS];
    for (int i = 0; i < LOAD_CONSUMERS; i++)
        ck_assert_int_eq(pthread_create(&consumers[i], NULL, consumer, NULL), 0);
    for (int i = 0; i < LOAD_PRODUCERS; i++)
        ck_assert_int_eq(pthread_create(&producers[i], NULL, producer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOAD_PRODUCERS; i++)
        pthread_join(producers[i], NULL);
    for (int i = 0; i < LOAD_CONSUMERS; i++)
        pthread_join(consumers[i], NULL);
    int64_t elapsed = clock_mono_us() - start;
    pthread_mutex_destroy(&load.mu);

    ck_assert_int_eq(load.errors, 0);
    ck_assert_int_eq(load.bad_bodies, 0);
    int missing = 0, twice = 0, wrong_id = 0;
    for (int i = 0; i < LOAD_TOTAL; i++) {
        missing += load.delivered[i] == 0;
        twice += load.delivered[i] > 1;
        wrong_id += load.delivered[i] > 0 && strcmp(load.sent_id[i], load.got_id[i]) != 0;
    }
    ck_assert_msg(missing == 0 && twice == 0,
                  "%d of %d messages never delivered, %d delivered more than once (%.1f s)",
                  missing, LOAD_TOTAL, twice, elapsed / 1e6);
    ck_assert_int_eq(wrong_id, 0);
    ck_assert_int_eq(load.total, LOAD_TOTAL);
    ck_assert_int_eq(load.delete_failed, 0);
    ck_assert_int_eq(harness_stored("load"), 0);
    ck_assert_msg(elapsed < LOAD_DEADLINE_US, "took %.1f s", elapsed / 1e6);
}
END_TEST

/* ---- (b) a consumer that crashes ---- */

struct crash_consumer {
    int count;
    int wrong_count; /* messages whose receive_count is not 2 */
    char ids[5][IDS_UUID_LEN];
    json_t *received; /* the messages, to delete later */
    int64_t elapsed_us;
};

static void *patient_consumer(void *arg)
{
    struct crash_consumer *c = arg;
    int64_t start = clock_mono_us();
    while (c->count < 5 && clock_mono_us() - start < 6000000) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/crash/messages:receive",
                      "{\"max_messages\": 10, \"wait_seconds\": 5}", &r);
        json_t *msgs = json_object_get(r.json, "messages");
        for (size_t i = 0; i < json_array_size(msgs) && c->count < 5; i++) {
            json_t *m = json_array_get(msgs, i);
            c->wrong_count += json_integer_value(json_object_get(m, "receive_count")) != 2;
            snprintf(c->ids[c->count++], IDS_UUID_LEN, "%s", json_str(m, "message_id"));
        }
        json_array_extend(c->received, msgs);
        response_cleanup(&r);
    }
    c->elapsed_us = clock_mono_us() - start;
    return NULL;
}

START_TEST(crashed_consumer_messages_are_redelivered)
{
    harness_put_queue(&srv, "crash", NULL, 201);
    char sent[5][IDS_UUID_LEN];
    for (int i = 0; i < 5; i++) {
        char body[32];
        snprintf(body, sizeof body, "{\"body\": \"c%d\"}", i);
        struct response r;
        harness_admin(&srv, "POST", "/queues/crash/messages", body, &r);
        ck_assert_int_eq(r.status, 201);
        snprintf(sent[i], IDS_UUID_LEN, "%s", json_str(r.json, "message_id"));
        response_cleanup(&r);
    }
    /* the doomed consumer takes everything, then dies without deleting */
    struct response crashed;
    harness_admin(&srv, "POST", "/queues/crash/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 1}", &crashed);
    ck_assert_int_eq(crashed.status, 200);
    json_t *lost = json_object_get(crashed.json, "messages");
    ck_assert_int_eq(json_array_size(lost), 5);

    struct crash_consumer c = {0};
    c.received = json_array();
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, patient_consumer, &c), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.count, 5);
    ck_assert_int_eq(c.wrong_count, 0);
    for (int i = 0; i < 5; i++) {
        bool found = false;
        for (int j = 0; j < 5 && !found; j++)
            found = strcmp(sent[i], c.ids[j]) == 0;
        ck_assert_msg(found, "message %s was not redelivered", sent[i]);
    }
    ck_assert_msg(c.elapsed_us >= 500000 && c.elapsed_us < 3500000,
                  "redelivery took %lld us for a 1 s lease", (long long)c.elapsed_us);
    /* the crashed consumer's receipts were superseded: they delete nothing */
    ck_assert_int_eq(delete_all("crash", lost), 5);
    ck_assert_int_eq(harness_stored("crash"), 5);
    ck_assert_int_eq(delete_all("crash", c.received), 0);
    ck_assert_int_eq(harness_stored("crash"), 0);
    json_decref(c.received);
    response_cleanup(&crashed);
}
END_TEST

/* ---- (c) FIFO groups under concurrency ---- */

#define FIFO_GROUPS      20
#define FIFO_PER_GROUP   25
#define FIFO_PRODUCERS   4
#define FIFO_CONSUMERS   4
#define FIFO_TOTAL       (FIFO_GROUPS * FIFO_PER_GROUP)
#define FIFO_DEADLINE_US 40000000

struct fifo_load {
    pthread_mutex_t mu;
    int order[FIFO_GROUPS][FIFO_TOTAL]; /* per group, the indexes in delivery order */
    int count[FIFO_GROUPS];
    int total;
    int producers_done;
    int errors;
    int bad;
    int delete_failed;
    int64_t deadline_us;
};

static struct fifo_load fl;

/* Producer k sends groups k, k + 4, ...: for each index, one message per group, in batches of
 * ten, so every group's messages go out in index order from one thread. */
static void *fifo_producer(void *arg)
{
    int k = (int)(intptr_t)arg;
    int groups[FIFO_GROUPS / FIFO_PRODUCERS];
    for (int j = 0; j < FIFO_GROUPS / FIFO_PRODUCERS; j++)
        groups[j] = k + j * FIFO_PRODUCERS;
    int per = FIFO_GROUPS / FIFO_PRODUCERS, n = per * FIFO_PER_GROUP;
    for (int start = 0; start < n; start += 10) {
        json_t *entries = json_array();
        for (int e = start; e < start + 10 && e < n; e++) {
            int g = groups[e % per], idx = e / per;
            char id[16], group[16], body[32];
            snprintf(id, sizeof id, "e%d", e - start);
            snprintf(group, sizeof group, "g%d", g);
            snprintf(body, sizeof body, "g%d-%d", g, idx);
            json_array_append_new(entries, json_pack("{s:s, s:s, s:s, s:s}", "id", id, "body", body,
                                                     "group_id", group, "dedup_id", body));
        }
        json_t *req = json_pack("{s:o}", "entries", entries);
        char *text = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        struct response r;
        harness_admin(&srv, "POST", "/queues/groups.fifo/messages:batch", text, &r);
        free(text);
        if (r.status != 200 || json_array_size(json_object_get(r.json, "failed")) != 0) {
            pthread_mutex_lock(&fl.mu);
            fl.errors++;
            pthread_mutex_unlock(&fl.mu);
        }
        response_cleanup(&r);
    }
    pthread_mutex_lock(&fl.mu);
    fl.producers_done++;
    pthread_mutex_unlock(&fl.mu);
    return NULL;
}

static bool fifo_finished(void)
{
    pthread_mutex_lock(&fl.mu);
    bool done = (fl.producers_done == FIFO_PRODUCERS && fl.total >= FIFO_TOTAL) || fl.errors > 0 ||
                clock_mono_us() > fl.deadline_us;
    pthread_mutex_unlock(&fl.mu);
    return done;
}

static void *fifo_consumer(void *arg)
{
    (void)arg;
    while (!fifo_finished()) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/groups.fifo/messages:receive",
                      "{\"max_messages\": 10, \"wait_seconds\": 1, \"visibility_timeout\": 30}",
                      &r);
        json_t *msgs = json_object_get(r.json, "messages");
        if (r.status != 200 || !json_is_array(msgs)) {
            pthread_mutex_lock(&fl.mu);
            fl.errors++;
            pthread_mutex_unlock(&fl.mu);
            response_cleanup(&r);
            break;
        }
        /* recorded before the delete: the group stays blocked until then */
        pthread_mutex_lock(&fl.mu);
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *m = json_array_get(msgs, i);
            int g = -1, idx = -1;
            const char *body = json_str(m, "body"), *group = json_str(m, "group_id");
            if (!body || sscanf(body, "g%d-%d", &g, &idx) != 2 || g < 0 || g >= FIFO_GROUPS ||
                idx < 0 || idx >= FIFO_PER_GROUP || !group || atoi(group + 1) != g) {
                fl.bad++;
                continue;
            }
            fl.order[g][fl.count[g]++] = idx;
            fl.total++;
        }
        pthread_mutex_unlock(&fl.mu);
        if (json_array_size(msgs) > 0) {
            int failed = delete_all("groups.fifo", msgs);
            pthread_mutex_lock(&fl.mu);
            if (failed < 0)
                fl.errors++;
            else
                fl.delete_failed += failed;
            pthread_mutex_unlock(&fl.mu);
        }
        response_cleanup(&r);
    }
    return NULL;
}

START_TEST(fifo_groups_keep_send_order_under_concurrency)
{
    harness_put_queue(&srv, "groups.fifo", "{\"visibility_timeout\": 30}", 201);
    memset(&fl, 0, sizeof fl);
    pthread_mutex_init(&fl.mu, NULL);
    int64_t start = clock_mono_us();
    fl.deadline_us = start + FIFO_DEADLINE_US;
    pthread_t producers[FIFO_PRODUCERS], consumers[FIFO_CONSUMERS];
    for (int i = 0; i < FIFO_CONSUMERS; i++)
        ck_assert_int_eq(pthread_create(&consumers[i], NULL, fifo_consumer, NULL), 0);
    for (int i = 0; i < FIFO_PRODUCERS; i++)
        ck_assert_int_eq(pthread_create(&producers[i], NULL, fifo_producer, (void *)(intptr_t)i),
                         0);
    for (int i = 0; i < FIFO_PRODUCERS; i++)
        pthread_join(producers[i], NULL);
    for (int i = 0; i < FIFO_CONSUMERS; i++)
        pthread_join(consumers[i], NULL);
    int64_t elapsed = clock_mono_us() - start;
    pthread_mutex_destroy(&fl.mu);

    ck_assert_int_eq(fl.errors, 0);
    ck_assert_int_eq(fl.bad, 0);
    ck_assert_int_eq(fl.delete_failed, 0);
    for (int g = 0; g < FIFO_GROUPS; g++) {
        char seen[FIFO_TOTAL * 4] = "";
        bool in_order = fl.count[g] == FIFO_PER_GROUP;
        for (int i = 0; i < fl.count[g]; i++) {
            size_t n = strlen(seen);
            if (n < sizeof seen - 8)
                snprintf(seen + n, sizeof seen - n, "%s%d", i ? "," : "", fl.order[g][i]);
            in_order = in_order && fl.order[g][i] == i;
        }
        ck_assert_msg(in_order, "group g%d was consumed as [%s] (%d messages), not 0..%d", g, seen,
                      fl.count[g], FIFO_PER_GROUP - 1);
    }
    ck_assert_int_eq(fl.total, FIFO_TOTAL);
    ck_assert_int_eq(harness_stored("groups.fifo"), 0);
    ck_assert_msg(elapsed < FIFO_DEADLINE_US, "took %.1f s", elapsed / 1e6);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, consumers_drain_while_producers_send);
    tcase_add_test(tc, crashed_consumer_messages_are_redelivered);
    tcase_add_test(tc, fifo_groups_keep_send_order_under_concurrency);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
