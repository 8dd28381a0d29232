/* Integration: the publish outbox and its fan-out thread (sql/013_publish_outbox.sql,
 * src/mq/fanout.c). A ride's event reaches every subscribed queue right after the 201, through
 * the thread alone; an event a crashed process left in the outbox is delivered by the poll; an
 * event that cannot be delivered is set aside with its error while the others flow, and is
 * delivered once an operator clears it. Reads go through HTTP or touch publish_outbox only, so
 * the harness never delivers on the thread's behalf (see harness_sql). */
#include "harness.h"

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

/* Long-polls queue once (up to 5 s) and returns the number of messages whose body or
 * attributes mention needle. */
static int received(const char *queue, const char *needle)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"max_messages\": 10, \"wait_seconds\": 5}", &r);
    ck_assert_int_eq(r.status, 200);
    int n = 0;
    json_t *msgs = json_object_get(r.json, "messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        char *text = json_dumps(json_array_get(msgs, i), JSON_COMPACT);
        n += strstr(text, needle) != NULL;
        free(text);
    }
    response_cleanup(&r);
    return n;
}

/* POST /rides from Berlin to Potsdam for customer; asserts the 201. */
static void submit_ride(const char *customer, int distance, int fare)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"from\": \"Berlin\", \"to\": \"Potsdam\", \"customer\": \"%s\", "
             "\"duration\": 600, \"distance\": %d, \"fare\": %d}",
             customer, distance, fare);
    struct response r;
    harness_admin(&srv, "POST", "/rides", body, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}

static long long outbox_rows(void)
{
    return harness_sqlf("SELECT count(*) FROM publish_outbox");
}

START_TEST(a_ride_reaches_its_queues_through_the_thread)
{
    submit_ride("outbox-1", 30, 80);
    /* the five subscriptions of ride-completion: the extraordinary filter passes this ride */
    const char *queues[] = {"customer-notification", "customer-loyalty", "datalake-ingestion",
                            "extraordinary-rides", "customer-accounting"};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(received(queues[i], "outbox-1") == 1, "no delivery to %s", queues[i]);
    ck_assert_int_eq(outbox_rows(), 0);
    /* the event is small: each delivery carries it, no payload row is shared (sql/018) */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE payload_id IS NULL "
                                  "AND body LIKE '%%outbox-1%%'"),
                     5);
}
END_TEST

/* Sequential scans of publish_outbox so far, as the statistics collector has them. */
static long long outbox_seq_scans(void)
{
    return harness_sqlf(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'publish_outbox'");
}

/* The thread's statements stay cached for the life of its connection. Planned on the statistics
 * of an empty outbox they scanned the whole table for every batch (and matched each row against
 * the batch's ids one by one): quadratic once a backlog built up. It plans by index only, like
 * the pool. (Nothing else here reads publish_outbox while the scans are counted.) */
START_TEST(the_thread_never_scans_the_outbox_sequentially)
{
    free(harness_sql(harness_db_url(), "ANALYZE publish_outbox"));
    harness_sleep_ms(1500); /* the thread's polls (every 100 ms) are planned by now */
    long long before = outbox_seq_scans();
    for (int i = 0; i < 3; i++)
        submit_ride("scan-1", 3, 8);
    int got = 0;
    for (int tries = 0; tries < 5 && got < 3; tries++)
        got += received("datalake-ingestion", "scan-1");
    ck_assert_int_eq(got, 3);
    harness_sleep_ms(2500); /* a backend reports its counts at most once a second */
    long long after = outbox_seq_scans();
    ck_assert_msg(after == before, "the outbox was scanned sequentially %lld times",
                  after - before);
}
END_TEST

/* An outbox row as the store-and-publish statement writes it, for queue name, with attributes
 * (JSON text). */
static void leave_in_outbox(const char *queue, const char *body, const char *attributes)
{
    char *insert = harness_sqlf_text(
        "SELECT format('INSERT INTO publish_outbox (message_id, body, body_json, attributes, "
        "queues) VALUES (gen_random_uuid(), %%L, true, %%L, ARRAY[%%s])', '%s', '%s', id) "
        "FROM queues WHERE name = '%s'",
        body, attributes, queue);
    ck_assert_ptr_nonnull(insert);
    free(harness_sql(harness_db_url(), insert));
    free(insert);
}

START_TEST(an_event_left_by_a_crash_is_delivered_by_the_poll)
{
    harness_put_queue(&srv, "orphans", "{}", 201);
    leave_in_outbox("orphans", "{\"left\": \"by a crash\"}", "{}");
    ck_assert_int_eq(received("orphans", "by a crash"), 1);
    ck_assert_int_eq(outbox_rows(), 0);
}
END_TEST

/* The thread writes a small event into each message and stores one over 1024 bytes once in
 * payloads (sql/018), in the same batch; both are received whole. */
START_TEST(only_a_large_event_is_stored_once_in_payloads)
{
    harness_put_queue(&srv, "sizes", "{}", 201);
    char large[1200];
    memset(large, 'L', sizeof large);
    memcpy(large, "{\"large\": \"", 11);
    memcpy(large + sizeof large - 3, "\"}", 3); /* "}" and its terminator */
    leave_in_outbox("sizes", large, "{}");
    leave_in_outbox("sizes", "{\"small\": \"event\"}", "{}");
    int got = 0;
    for (int tries = 0; tries < 5 && got < 2; tries++)
        got += received("sizes", "\"body\":{\""); /* both bodies are objects */
    ck_assert_int_eq(got, 2);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id JOIN payloads p ON p.id = m.payload_id WHERE "
                                  "q.name = 'sizes' AND m.body = '' AND length(p.body) = %zu",
                                  sizeof large - 1),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = 'sizes' AND m.payload_id IS NULL "
                                  "AND m.body LIKE '%%small%%'"),
                     1);
}
END_TEST

START_TEST(an_undeliverable_event_is_set_aside)
{
    harness_put_queue(&srv, "aside", "{}", 201);
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION outbox_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN IF NEW.attributes ? 'poison' THEN RAISE EXCEPTION "
                     "'refused by a test'; END IF; RETURN NEW; END $$"));
    free(harness_sql(harness_db_url(), "CREATE TRIGGER outbox_test_refuse BEFORE INSERT ON "
                                       "messages FOR EACH ROW EXECUTE FUNCTION "
                                       "outbox_test_refuse()"));
    const char *poison = "{\"poison\": {\"type\": \"String\", \"value\": \"x\"}}";
    leave_in_outbox("aside", "{\"n\": \"good-1\"}", "{}");
    leave_in_outbox("aside", "{\"n\": \"poison\"}", poison);
    leave_in_outbox("aside", "{\"n\": \"good-2\"}", "{}");
    int good = 0;
    for (int i = 0; i < 3 && good < 2; i++)
        good += received("aside", "good-");
    ck_assert_int_eq(good, 2);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM publish_outbox WHERE failed_at IS NOT NULL "
                                  "AND error LIKE '%%refused by a test%%'"),
                     1);
    /* where operators look: stuck_work and the gauges of /metrics */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_work WHERE kind = 'outbox' "
                                  "AND state LIKE 'delivery failed: %%refused by a test%%'"),
                     1);
    ck_assert_int_eq(
        harness_sqlf("SELECT value::int FROM rydes_gauges() "
                     "WHERE metric = 'rydes_outbox_events' AND labels = 'state=\"failed\"'"),
        1);
    /* the operator removes the cause and clears the mark: delivered */
    free(harness_sql(harness_db_url(), "DROP TRIGGER outbox_test_refuse ON messages"));
    free(harness_sql(harness_db_url(), "DROP FUNCTION outbox_test_refuse()"));
    free(harness_sql(harness_db_url(), "UPDATE publish_outbox SET failed_at = NULL"));
    ck_assert_int_eq(received("aside", "poison"), 1);
    ck_assert_int_eq(outbox_rows(), 0);
}
END_TEST

/* An event whose delivery meets a transient error (here a deadlock, raised by a trigger) is not
 * set aside: the thread tries again, and delivers it once the cause is gone (the trigger
 * dropped). A sequence counts the attempts: no rollback undoes it. */
START_TEST(a_transient_failure_is_retried_not_set_aside)
{
    harness_put_queue(&srv, "retried", "{}", 201);
    free(harness_sql(harness_db_url(), "CREATE SEQUENCE outbox_test_tries"));
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION outbox_test_busy() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN IF NEW.attributes ? 'flaky' "
                     "THEN PERFORM nextval('outbox_test_tries'); RAISE EXCEPTION 'busy' USING "
                     "ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END $$"));
    free(harness_sql(harness_db_url(), "CREATE TRIGGER outbox_test_busy BEFORE INSERT ON "
                                       "messages FOR EACH ROW EXECUTE FUNCTION "
                                       "outbox_test_busy()"));
    leave_in_outbox("retried", "{\"n\": \"flaky\"}",
                    "{\"flaky\": {\"type\": \"String\", \"value\": \"x\"}}");
    /* the batch, then the careful retry, then the next poll's batch at least */
    long long tries = harness_wait_sql(
        "SELECT (is_called AND last_value >= 3)::int FROM outbox_test_tries", 1, 10);
    long long aside =
        harness_sqlf("SELECT count(*) FROM publish_outbox WHERE failed_at IS NOT NULL");
    /* (not naming messages: harness_sql would first deliver the outbox, which cannot succeed) */
    free(harness_sql(harness_db_url(), "DROP FUNCTION outbox_test_busy() CASCADE"));
    ck_assert_int_eq(tries, 1);
    ck_assert_int_eq(aside, 0);
    ck_assert_int_eq(received("retried", "flaky"), 1);
    ck_assert_int_eq(outbox_rows(), 0);
}
END_TEST

START_TEST(an_event_nobody_delivers_shows_as_stuck)
{
    harness_put_queue(&srv, "late", "{}", 201);
    harness_stop(&srv); /* no fan-out thread runs now */
    leave_in_outbox("late", "{\"n\": \"late-1\"}", "{}");
    free(harness_sql(harness_db_url(),
                     "UPDATE publish_outbox SET created_at = now() - interval '2 minutes'"));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_work WHERE kind = 'outbox' "
                                  "AND state = 'waiting for the fan-out'"),
                     1);
    ck_assert_int_eq(
        harness_sqlf("SELECT value::int FROM rydes_gauges() "
                     "WHERE metric = 'rydes_outbox_events' AND labels = 'state=\"pending\"'"),
        1);
    ck_assert_int_ge(harness_sqlf("SELECT value::int FROM rydes_gauges() "
                                  "WHERE metric = 'rydes_outbox_oldest_pending_seconds'"),
                     119);
    harness_start(&srv, NULL); /* a process again: its poll delivers the event */
    ck_assert_int_eq(received("late", "late-1"), 1);
    ck_assert_int_eq(outbox_rows(), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_work WHERE kind = 'outbox'"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("fan-out");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_ride_reaches_its_queues_through_the_thread);
    tcase_add_test(tc, the_thread_never_scans_the_outbox_sequentially);
    tcase_add_test(tc, an_event_left_by_a_crash_is_delivered_by_the_poll);
    tcase_add_test(tc, only_a_large_event_is_stored_once_in_payloads);
    tcase_add_test(tc, an_undeliverable_event_is_set_aside);
    tcase_add_test(tc, a_transient_failure_is_retried_not_set_aside);
    tcase_add_test(tc, an_event_nobody_delivers_shows_as_stuck);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
