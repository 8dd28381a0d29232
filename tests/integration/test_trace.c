/* Integration: trace propagation and the operators' views. A ride, a prebooking and an RFQ
 * are submitted to a real `rydes serve` process (every worker, JSON logs) with an X-Request-Id
 * and a W3C traceparent; then every hop is checked: the messages the ride, the saga and the
 * unicorns publish carry request_id and traceparent attributes, and every worker's log line for
 * those messages (the four ride services, customer-accounting, the fare saga, the prebooking
 * workers, the RFQ aggregator) carries the request id. ride_timeline, task_history, rfq_board,
 * saga_timeline, consumer_lag, stuck_work and engine_tables answer for them. */
#include "harness.h"
#include "proc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static struct proc gw;

static void setup(void)
{
    const char *extra[] = {"--log-format",
                           "json",
                           "--saga-lease-seconds",
                           "2",
                           "--unicorn-min-latency-ms",
                           "50",
                           "--unicorn-max-latency-ms",
                           "200",
                           NULL};
    proc_serve(&gw, "all", extra);
}

static void teardown(void)
{
    proc_cleanup(&gw);
}

/* POSTs body to path with the test's request id (id) and traceparent; returns the id of the
 * answer (caller frees). */
static char *submit(const char *path, const char *body, const char *id, long status)
{
    char headers[256];
    snprintf(headers, sizeof headers, "X-Request-Id: %s\ntraceparent: %s", id, TRACEPARENT);
    struct response r;
    harness_request(&gw.http, "POST", path, HARNESS_ADMIN_TOKEN, body, NULL, headers, &r);
    ck_assert_msg(r.status == status, "%s: %ld %s", path, r.status, buf_str(&r.body));
    char echoed[160];
    ck_assert(response_header(&r, "X-Request-Id", echoed, sizeof echoed));
    ck_assert_str_eq(echoed, id);
    char *out = strdup(json_str(r.json, "id"));
    response_cleanup(&r);
    return out;
}

/* How many lines of the server's log hold every one of the needles. */
static int log_lines_with(const char *a, const char *b)
{
    FILE *f = fopen(gw.log, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

/* Waits until the log has a line with both needles. */
static void wait_log(const char *a, const char *b)
{
    double deadline = harness_now_s() + 20;
    while (log_lines_with(a, b) == 0 && harness_now_s() < deadline)
        harness_sleep_ms(100);
    ck_assert_msg(log_lines_with(a, b) > 0, "no log line with %s and %s", a, b ? b : "");
}

START_TEST(a_ride_is_traced_to_its_last_saga_step)
{
    char *ride = submit("/rides",
                        "{\"from\": \"Pier 39\", \"to\": \"Twin Peaks\", \"customer\": \"tr-ann\", "
                        "\"duration\": 900, \"distance\": 25, \"fare\": 60}",
                        "trace-ride-1", 201);
    /* every service and the saga handled it, with the request id in their log lines */
    static const char *const workers[] = {"customer-notification", "customer-loyalty",
                                          "datalake-ingestion", "extraordinary-rides",
                                          "customer-accounting"};
    for (size_t i = 0; i < sizeof workers / sizeof workers[0]; i++) {
        char w[96];
        snprintf(w, sizeof w, "\"worker\":\"%s\"", workers[i]);
        wait_log(w, "\"request_id\":\"trace-ride-1\"");
    }
    char fare_line[128];
    snprintf(fare_line, sizeof fare_line, "fare ride-%s: ran to step 6, succeeded", ride);
    wait_log(fare_line, "\"request_id\":\"trace-ride-1\"");
    ck_assert_int_gt(log_lines_with(fare_line, "\"traceparent\":\"" TRACEPARENT "\""), 0);
    /* the saga's outcome message carries the trace on */
    ck_assert_int_eq(
        harness_wait_sql(
            "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
            "WHERE q.name = 'fare-succeeded' AND m.attributes->'request_id'->>'value' "
            "= 'trace-ride-1' AND m.attributes->'traceparent'->>'value' = '" TRACEPARENT "'",
            1, 20),
        1);
    /* the ride's life in one view: submitted, the four services, the saga and its steps */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT event) FROM ride_timeline WHERE ride_id = '%s' AND event IN "
             "('submitted', 'customer-notification', 'customer-loyalty', 'datalake-ingestion', "
             "'extraordinary-rides', 'saga step publish: done')",
             ride);
    ck_assert_int_eq(harness_wait_sql(sql, 6, 10), 6);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_timeline WHERE ride_id = '%s' AND "
                                  "status = 'done'",
                                  ride),
                     6);
    free(ride);
}
END_TEST

START_TEST(a_prebooking_and_an_rfq_are_traced)
{
    time_t when = time(NULL) + 3 * 86400;
    struct tm tm;
    gmtime_r(&when, &tm);
    char at[40], body[256];
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof body,
             "{\"from\": \"Pier 39\", \"to\": \"Twin Peaks\", \"customer\": \"tr-bob\", "
             "\"when\": \"%s\"}",
             at);
    char *task = submit("/prebookings", body, "trace-prebooking-1", 202);
    wait_log("\"worker\":\"prebooking-processing\"", "\"request_id\":\"trace-prebooking-1\"");
    wait_log("\"worker\":\"prebooking-datalake\"", "\"request_id\":\"trace-prebooking-1\"");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM task_history WHERE task_id = '%s' AND status = 'succeeded' "
             "AND prebooking_id IS NOT NULL AND datalake_at IS NOT NULL",
             task);
    if (harness_wait_sql(sql, 1, 10) != 1) {
        char *row = harness_sqlf_text("SELECT row_to_json(t)::text FROM task_history t WHERE "
                                      "task_id = '%s'",
                                      task);
        ck_abort_msg("the prebooking's task is not through: %s", row ? row : "(none)");
    }

    char *rfq = submit("/rfqs",
                       "{\"from\": \"Pier 39\", \"to\": \"Twin Peaks\", \"customer\": \"tr-cy\", "
                       "\"timeout_in_secs\": 3}",
                       "trace-rfq-1", 202);
    /* the unicorns answer later, from another thread: their quotes still carry the trace */
    wait_log("\"worker\":\"rfq-aggregator\"", "\"request_id\":\"trace-rfq-1\"");
    snprintf(sql, sizeof sql, "SELECT least(count(*), 1) FROM rfq_board WHERE rfq_id = '%s'", rfq);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    free(task);
    free(rfq);
}
END_TEST

START_TEST(the_operators_views_answer)
{
    static const char *const views[] = {
        "ride_timeline", "task_history",       "rfq_board",    "saga_timeline", "consumer_lag",
        "stuck_work",    "engine_tables",      "dead_letters", "queue_stats",   "in_flight",
        "push_backlog",  "open_tasks",         "rfq_progress", "fare_ledger",   "stuck_sagas",
        "ride_journeys", "topic_subscriptions"};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        ck_assert_int_ge(harness_sqlf("SELECT count(*) FROM %s", views[i]), 0);
    /* a dead letter shows in stuck_work with where it came from */
    struct response r;
    harness_request(&gw.http, "PUT", "/queues/tr-dlq", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    response_cleanup(&r);
    harness_request(&gw.http, "PUT", "/queues/tr-src", HARNESS_ADMIN_TOKEN,
                    "{\"dead_letter\": {\"queue\": \"tr-dlq\", \"max_receive_count\": 1}}", NULL,
                    NULL, &r);
    response_cleanup(&r);
    harness_request(&gw.http, "POST", "/queues/tr-src/messages", HARNESS_ADMIN_TOKEN,
                    "{\"body\": \"x\"}", NULL, NULL, &r);
    response_cleanup(&r);
    for (int i = 0; i < 2; i++) {
        harness_request(&gw.http, "POST", "/queues/tr-src/messages:receive", HARNESS_ADMIN_TOKEN,
                        "{\"visibility_timeout\": 0}", NULL, NULL, &r);
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_work WHERE kind = 'dead letter' "
                                  "AND place = 'tr-dlq' AND state LIKE 'from tr-src%%'"),
                     1);
    ck_assert_int_ge(harness_sqlf("SELECT count(*) FROM consumer_lag WHERE queue = 'tr-dlq' AND "
                                  "waiting = 1"),
                     1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("trace");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_ride_is_traced_to_its_last_saga_step);
    tcase_add_test(tc, a_prebooking_and_an_rfq_are_traced);
    tcase_add_test(tc, the_operators_views_answer);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
