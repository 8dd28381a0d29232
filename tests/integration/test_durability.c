/* Integration: a stopped and restarted PostgreSQL during a send load loses no acknowledged
 * send. A producer thread sends without pause and remembers every message id that got a 201;
 * meanwhile the cluster is stopped and started again. Afterwards every acknowledged message is
 * in the queue. Also: the sweeper deletes messages past their retention, looks at a queue again
 * only when something may be due there (or a minute on), and at once while one sweep was not
 * enough. Runs alone (it stops the shared test cluster). */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/mq_sweeper.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct harness_server srv;

struct producer {
    atomic_bool stop;
    json_t *acked;   /* message ids that got 201 (the producer's until it stops) */
    atomic_int acks; /* how many: the test reads it while the producer runs */
    int refused;     /* 503s while the database was away */
    int unexpected;  /* any other answer, or none */
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; !atomic_load(&p->stop); i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"body\":\"m%d\"}", i);
        struct response r;
        harness_request(&srv, "POST", "/queues/durable/messages", HARNESS_ADMIN_TOKEN, body, NULL,
                        NULL, &r);
        if (r.status == 201) {
            json_array_append(p->acked, json_object_get(r.json, "message_id"));
            atomic_fetch_add(&p->acks, 1);
        } else if (r.status == 503)
            p->refused++;
        else /* no assertion on this thread: the test asserts there were none */
            p->unexpected++;
        response_cleanup(&r);
    }
    return NULL;
}

/* The producer running, if any. The teardown stops one a failed check left behind: it would go
 * on sending into the next tests, and past the end of the run, where the check in its requests
 * (harness_request's) ends the process before Check's report is printed. */
static struct producer *producing;
static pthread_t producer;

static void producer_stop(void)
{
    if (!producing)
        return;
    atomic_store(&producing->stop, true);
    pthread_join(producer, NULL);
    producing = NULL;
}

static long count_present(json_t *ids)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT count(*) FROM messages WHERE message_id IN (");
    for (size_t i = 0; i < json_array_size(ids); i++)
        buf_printf(&sql, "%s'%s'", i ? "," : "", json_string_value(json_array_get(ids, i)));
    buf_puts(&sql, ")");
    char *n = harness_sql(harness_db_url(), buf_str(&sql));
    long v = atol(n);
    free(n);
    buf_cleanup(&sql);
    return v;
}

START_TEST(restart_loses_no_acknowledged_send)
{
    harness_start(&srv, NULL);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/durable", NULL, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    static struct producer p; /* the thread outlives a failed check's jump out of here */
    p = (struct producer){.acked = json_array()};
    pthread_create(&producer, NULL, produce, &p);
    producing = &p;
    usleep(500000);
    ck_assert(harness_pgctl("stop"));
    usleep(1000000);
    ck_assert(harness_pgctl("start"));
    /* sends are acknowledged again once the database is back */
    int before = atomic_load(&p.acks);
    for (int i = 0; i < 150 && atomic_load(&p.acks) <= before; i++)
        usleep(100000);
    int after = atomic_load(&p.acks);
    usleep(500000);
    producer_stop();
    ck_assert_msg(after > before, "no send acknowledged in 15 s after the restart");
    ck_assert_int_gt(json_array_size(p.acked), 10);
    ck_assert_int_gt(p.refused, 0); /* the outage was real and answered with 503 */
    ck_assert_int_eq(p.unexpected, 0);
    ck_assert_int_eq(count_present(p.acked), (long)json_array_size(p.acked));
    json_decref(p.acked);
    harness_stop(&srv);
}
END_TEST

static void no_background_sweeper(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "sweep-interval-ms", "0", &err)); /* the test sweeps */
}

/* Runs times sweeps as the sweeper thread does; returns the rows the last one deleted. */
static long long sweep(int times)
{
    PGconn *pg = PQconnectdb(harness_db_url());
    long long n = -1;
    for (int i = 0; i < times; i++) {
        n = mq_sweep_once(pg);
        ck_assert_int_ge(n, 0);
    }
    PQfinish(pg);
    return n;
}

START_TEST(sweeper_deletes_expired_messages)
{
    harness_start(&srv, no_background_sweeper);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/short", "{\"retention_seconds\":60}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    for (int i = 0; i < 3; i++) {
        harness_admin(&srv, "POST", "/queues/short/messages", "{\"body\":\"x\"}", &r);
        response_cleanup(&r);
    }
    free(harness_sql(harness_db_url(),
                     "UPDATE messages SET sent_at = now() - interval '61 seconds' WHERE id IN "
                     "(SELECT m.id FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name = 'short' ORDER BY m.id LIMIT 2)"));
    ck_assert_int_ge(sweep(1), 2);
    char *left = harness_sql(harness_db_url(), "SELECT count(*) FROM messages m JOIN queues q "
                                               "ON q.id = m.queue_id WHERE q.name = 'short'");
    ck_assert_str_eq(left, "1");
    free(left);
    harness_stop(&srv);
}
END_TEST

/* Messages in queue name: how many there are. */
static long long messages_in(const char *name)
{
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s'",
                        name);
}

/* A queue whose oldest message is far from expiry is not read again on every sweep: the sweep
 * notes when to look next (when that message expires, or within a minute), and until then a
 * message that became due (here by hand; a dead-letter move can do it) waits. */
START_TEST(sweeper_looks_at_a_queue_again_only_when_something_may_be_due)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "lazy", NULL, 201); /* retention: 4 days */
    struct response r;
    for (int i = 0; i < 2; i++) {
        harness_admin(&srv, "POST", "/queues/lazy/messages", "{\"body\":\"x\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    sweep(1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queue_sweeps s JOIN queues q ON "
                                  "q.id = s.queue_id WHERE q.name = 'lazy' AND s.next_at "
                                  "BETWEEN now() + interval '50 seconds' AND now() + "
                                  "interval '61 seconds'"),
                     1);
    free(harness_sql(harness_db_url(),
                     "UPDATE messages SET sent_at = now() - interval '5 days' WHERE id = "
                     "(SELECT min(m.id) FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name = 'lazy')"));
    sweep(1);
    ck_assert_int_eq(messages_in("lazy"), 2); /* not looked at */
    free(
        harness_sql(harness_db_url(), "UPDATE queue_sweeps SET next_at = now()")); /* a minute on */
    sweep(1);
    ck_assert_int_eq(messages_in("lazy"), 1);
    /* the note follows the oldest message kept when it expires sooner than in a minute */
    harness_admin(&srv, "PUT", "/queues/lazy", "{\"retention_seconds\":60}", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(),
                     "UPDATE messages SET sent_at = now() - interval '30 seconds'; "
                     "UPDATE queue_sweeps SET next_at = now()"));
    sweep(1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queue_sweeps s JOIN queues q ON "
                                  "q.id = s.queue_id WHERE q.name = 'lazy' AND s.next_at "
                                  "BETWEEN now() + interval '25 seconds' AND now() + "
                                  "interval '31 seconds'"),
                     1);
    harness_stop(&srv);
}
END_TEST

/* A message with an old sent_at under a new id (as a dead-letter move or a redrive leaves it)
 * behind more than the sweep's window of 10,000 younger messages is found by the walk through
 * the queue (the next 10,000 after a cursor at each look), not kept until everything before it
 * has gone. */
START_TEST(sweeper_walks_past_its_window_to_an_old_message)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "deep", NULL, 201); /* retention: 4 days */
    free(harness_sql(harness_db_url(),
                     "INSERT INTO messages (queue_id, visible_at, message_id, body) "
                     "SELECT q.id, now(), gen_random_uuid(), 'young' "
                     "FROM queues q, generate_series(1, 20500) WHERE q.name = 'deep'; "
                     "INSERT INTO messages (queue_id, visible_at, message_id, body, sent_at) "
                     "SELECT q.id, now(), gen_random_uuid(), 'old', now() - interval '5 days' "
                     "FROM queues q WHERE q.name = 'deep'"));
    const char *old = "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                      "WHERE q.name = 'deep' AND m.body = 'old'";
    sweep(1); /* the oldest 10,000 and the next 10,000 */
    ck_assert_int_eq(harness_sqlf("%s", old), 1);
    free(
        harness_sql(harness_db_url(), "UPDATE queue_sweeps SET next_at = now()")); /* a minute on */
    sweep(1); /* the oldest 10,000 and the 500 after the cursor, with the old one */
    ck_assert_int_eq(harness_sqlf("%s", old), 0);
    ck_assert_int_eq(messages_in("deep"), 20500);
    harness_stop(&srv);
}
END_TEST

/* More expired messages in the oldest window than a sweep deletes (1,000): the walk does not
 * move past the expired ones of its own window that had no room, and gets them next time. */
START_TEST(sweeper_walks_on_only_once_its_window_is_swept)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "crowded", NULL, 201); /* retention: 4 days */
    free(harness_sql(
        harness_db_url(),
        "INSERT INTO messages (queue_id, visible_at, message_id, body, sent_at) "
        "SELECT q.id, now(), gen_random_uuid(), CASE WHEN g = 15000 THEN 'walked' ELSE 'x' END, "
        "CASE WHEN g <= 1500 OR g = 15000 THEN now() - interval '5 days' ELSE now() END "
        "FROM queues q, generate_series(1, 20500) g WHERE q.name = 'crowded' ORDER BY g"));
    sweep(1); /* 1,000 of the 1,501 expired */
    free(
        harness_sql(harness_db_url(), "UPDATE queue_sweeps SET next_at = now()")); /* a minute on */
    sweep(1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = 'crowded' AND m.sent_at < now() - "
                                  "interval '4 days'"),
                     0);
    ck_assert_int_eq(messages_in("crowded"), 20500 - 1501);
    harness_stop(&srv);
}
END_TEST

/* A queue with more expired messages than one sweep deletes (1,000) is looked at again by the
 * next sweep, not a minute later. */
START_TEST(sweeper_comes_back_at_once_to_a_queue_with_more_expired)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "backlog", "{\"retention_seconds\":60}", 201);
    free(harness_sql(harness_db_url(),
                     "INSERT INTO messages (queue_id, visible_at, message_id, body, sent_at) "
                     "SELECT q.id, now(), gen_random_uuid(), 'x', now() - interval '2 minutes' "
                     "FROM queues q, generate_series(1, 1500) WHERE q.name = 'backlog'"));
    sweep(1);
    ck_assert_int_eq(messages_in("backlog"), 500);
    sweep(1);
    ck_assert_int_eq(messages_in("backlog"), 0);
    harness_stop(&srv);
}
END_TEST

/* n payloads with body, published two minutes ago (old enough to be collected). */
static void old_payloads(const char *body, int n)
{
    free(harness_sqlf_text("INSERT INTO payloads (body, created_at) SELECT '%s', now() - "
                           "interval '2 minutes' FROM generate_series(1, %d)",
                           body, n));
}

/* A message of queue for every payload the condition on p selects: they are in use. */
static void use_payloads(const char *queue, const char *condition)
{
    free(harness_sqlf_text("INSERT INTO messages (queue_id, visible_at, message_id, body, "
                           "payload_id) SELECT q.id, now(), gen_random_uuid(), '', p.id "
                           "FROM payloads p, queues q WHERE q.name = '%s' AND %s",
                           queue, condition));
}

START_TEST(sweeper_collects_unused_payloads)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "keeps", NULL, 201);
    old_payloads("old", 5);
    use_payloads("keeps", "p.id = (SELECT min(id) FROM payloads)");
    sweep(1);
    char *left = harness_sql(harness_db_url(), "SELECT count(*) FROM payloads");
    ck_assert_str_eq(left, "1"); /* only the one a message still uses */
    free(left);
    harness_stop(&srv);
}
END_TEST

/* More than the old sweep's window of 10,000 payloads still in use at the head of the table
 * (a dead-letter queue holding topic deliveries) must not keep the unused ones behind them for
 * ever: the sweep's cursor walks past them (sql/015_payload_sweep_cursor.sql). */
START_TEST(sweeper_walks_past_payloads_in_use)
{
    harness_start(&srv, no_background_sweeper);
    harness_put_queue(&srv, "holds", NULL, 201);
    old_payloads("pinned", 10001);
    use_payloads("holds", "p.body = 'pinned'");
    old_payloads("unused", 5);
    sweep(12); /* 1,000 payloads further per sweep */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payloads WHERE body = 'unused'"), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payloads WHERE body = 'pinned'"), 10001);
    harness_stop(&srv);
}
END_TEST

/* A session of its own inside a transaction that has run sql and holds its locks until it
 * commits (20 s at most, should the test die first). */
static PGconn *holding(const char *sql)
{
    PGconn *pg = PQconnectdb(harness_db_url());
    PQclear(PQexec(pg, "SET idle_in_transaction_session_timeout = '20s'"));
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s", PQerrorMessage(pg));
    PQclear(r);
    return pg;
}

/* A sweep whose statement fails says so (-1) and leaves nothing half done: here it cannot
 * lock the sweep's bookkeeping within its lock timeout. */
START_TEST(a_failed_sweep_says_so)
{
    harness_start(&srv, no_background_sweeper);
    PGconn *holder = holding("LOCK TABLE queue_sweeps IN ACCESS EXCLUSIVE MODE");
    PGconn *pg = PQconnectdb(harness_db_url());
    PQclear(PQexec(pg, "SET lock_timeout = '200ms'"));
    ck_assert_int_eq(mq_sweep_once(pg), -1);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    ck_assert_int_ge(mq_sweep_once(pg), 0);
    PQfinish(pg);
    harness_stop(&srv);
}
END_TEST

/* Every process's sweeper would measure the depths (a scan of every queue); one does: none
 * while another holds the measurement's lock, and none before the time the last measurer set
 * for everyone (sweep_cursors 'depths'). */
START_TEST(one_process_measures_the_depths)
{
    harness_start(&srv, no_background_sweeper);
    PGconn *holder = holding("SELECT pg_advisory_xact_lock(431198598248)"); /* "depth" */
    PGconn *pg = PQconnectdb(harness_db_url());
    harness_sqlf("WITH d AS (UPDATE sweep_cursors SET after = 0 WHERE name = 'depths' "
                 "RETURNING 1) SELECT count(*) FROM d");
    ck_assert_int_eq(mq_measure_once(pg), 0); /* another process measures now */
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    ck_assert_int_eq(mq_measure_once(pg), 1);
    ck_assert_int_eq(harness_sqlf("SELECT (after > (extract(epoch FROM now()) * 1000)::bigint + "
                                  "4000)::int FROM sweep_cursors WHERE name = 'depths'"),
                     1);
    ck_assert_int_eq(mq_measure_once(pg), 0); /* not its turn */
    harness_sqlf("WITH d AS (UPDATE sweep_cursors SET after = 0 WHERE name = 'depths' "
                 "RETURNING 1) SELECT count(*) FROM d");
    ck_assert_int_eq(mq_measure_once(pg), 1);
    PQfinish(pg);
    harness_stop(&srv);
}
END_TEST

int main(void)
{
    if (!getenv("RYDES_TEST_PGCTL")) {
        fprintf(stderr, "skipped: no cluster control (run through ./dev test)\n");
        return 77;
    }
    Suite *s = suite_create("durability");
    TCase *tc = tcase_create("durability");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, producer_stop);
    tcase_add_test(tc, restart_loses_no_acknowledged_send);
    tcase_add_test(tc, sweeper_deletes_expired_messages);
    tcase_add_test(tc, sweeper_looks_at_a_queue_again_only_when_something_may_be_due);
    tcase_add_test(tc, sweeper_comes_back_at_once_to_a_queue_with_more_expired);
    tcase_add_test(tc, sweeper_walks_past_its_window_to_an_old_message);
    tcase_add_test(tc, sweeper_walks_on_only_once_its_window_is_swept);
    tcase_add_test(tc, sweeper_collects_unused_payloads);
    tcase_add_test(tc, sweeper_walks_past_payloads_in_use);
    tcase_add_test(tc, a_failed_sweep_says_so);
    tcase_add_test(tc, one_process_measures_the_depths);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
