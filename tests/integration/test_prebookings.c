/* Integration: Wild Rydes prebookings end to end. POST /prebookings (and its alias POST
 * /submit-ride-prebooking) answers 202 with Location, Content-Location and Retry-After and the
 * pending task; its row and the publish to prebooking-notification commit together (one event in
 * each of prebooking-processing and prebooking-datalake; a publish that fails or a missing topic
 * leaves no task, and a restart re-creates the topic). With the workers started the task goes
 * pending -> succeeded with links.result, the prebooking reads back with "when" normalised to UTC
 * milliseconds and the data lake has the submission. A table of invalid submissions answered 400
 * naming the field with nothing stored; the horizon and the slot as settings. The business rule:
 * a customer's prebookings at least the slot apart, one too close fails "Slot not available"
 * naming the customer, ten concurrent submissions of one slot make exactly one prebooking (also
 * with consumers forced to decide at the same moment). The direct-queue path: task id = message
 * id; invalid bodies become failed tasks "Invalid prebooking", never poison messages. Transient
 * failures retried without failing the task; a worker that dies holding the message (the lease
 * runs out, the task still succeeds once) and duplicate events changing nothing; the backlog in
 * GET /queues/prebooking-processing and /metrics, then drained by four consumers, and one
 * metrics series per worker; the role matrix, 404 for unknown ids, 405 for other methods. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/consumer.h"
#include "rydes/ids.h"
#include "rydes/secret.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- settings of the servers the tests start ------------------------------------------------ */

static void set(struct config *cfg, const char *name, const char *value)
{
    struct config_error err;
    ck_assert_msg(config_set_flag(cfg, name, value, &err), "setting %s=%s", name, value);
}

static void no_workers(struct config *cfg)
{
    set(cfg, "workers", "none");
}

/* The three prebooking services, and nothing else. */
static void prebooking_workers(struct config *cfg)
{
    set(cfg, "workers", "prebooking-submission,prebooking-processing,prebooking-datalake");
}

/* Only the submission service (with connections to spare). */
static void submission_worker(struct config *cfg)
{
    set(cfg, "workers", "prebooking-submission");
    set(cfg, "db-pool-size", "12");
}

/* Four processing consumers, and connections enough for them and the test's requests. */
static void four_consumers(struct config *cfg)
{
    prebooking_workers(cfg);
    set(cfg, "prebooking-concurrency", "4");
    set(cfg, "db-pool-size", "12");
}

static void four_consumers_slot_10(struct config *cfg)
{
    four_consumers(cfg);
    set(cfg, "prebooking-slot-minutes", "10");
}

static void horizon_7(struct config *cfg)
{
    no_workers(cfg);
    set(cfg, "prebooking-horizon-days", "7");
}

/* The server of the running test (one at a time); the teardown stops it when a failed check
 * left it running, and takes the fault hook away. */
static struct harness_server srv;
static bool up;

static void start(void (*tweak)(struct config *cfg))
{
    ck_assert(!up);
    harness_start(&srv, tweak);
    up = true;
}

static void stop(void)
{
    if (up) {
        up = false;
        harness_stop(&srv);
    }
}

static void setup(void)
{
    consumer_fault_hook = NULL;
}

static void teardown(void)
{
    consumer_fault_hook = NULL;
    stop();
}

/* ---- SQL and time ---------------------------------------------------------------------------- */

/* Messages of queue (any state) carrying the event of task id. The bodies of the two
 * prebooking-notification queues are JSON events (small: in each message, sql/018). */
static long long events_of(const char *queue, const char *id)
{
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "LEFT JOIN payloads p ON p.id = m.payload_id WHERE q.name = '%s' AND "
                        "CASE WHEN q.name IN ('prebooking-processing', 'prebooking-datalake') "
                        "THEN coalesce(p.body, m.body)::jsonb->>'task_id' END = '%s'",
                        queue, id);
}

static long long prebookings_of_task(const char *id)
{
    return harness_sqlf("SELECT count(*) FROM prebookings WHERE task_id = '%s'", id);
}

static long long submissions_of_task(const char *id)
{
    return harness_sqlf("SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s'", id);
}

/* Sweeps as if the message ids handed out so far were minutes old: every sweep cursor's fence is
 * aged twice (the first fence read may be older than the latest move), each time followed by a
 * sweep. */
static void sweep_after_minutes(void)
{
    for (int i = 0; i < 2; i++) {
        free(harness_sql(harness_db_url(),
                         "UPDATE sweep_cursors SET fence_at = now() - interval '6 minutes' "
                         "WHERE fence_at IS NOT NULL"));
        free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    }
}

/* "when" text for the instant unix_s + frac written at an offset of offset_min minutes east
 * of UTC; frac is "" or ".digits". */
static void when_at(char *out, size_t n, time_t unix_s, const char *frac, int offset_min)
{
    time_t local = unix_s + (time_t)offset_min * 60;
    struct tm tm;
    gmtime_r(&local, &tm);
    char date[32], off[16];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    if (offset_min == 0)
        snprintf(off, sizeof off, "Z");
    else
        snprintf(off, sizeof off, "%c%02d:%02d", offset_min < 0 ? '-' : '+', abs(offset_min) / 60,
                 abs(offset_min) % 60);
    snprintf(out, n, "%s%s%s", date, frac, off);
}

/* The normal form of the API: UTC with milliseconds. */
static void utc_ms(char *out, size_t n, time_t unix_s, int ms)
{
    struct tm tm;
    gmtime_r(&unix_s, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", date, ms);
}

/* A whole minute days ahead (plus minutes). */
static time_t ahead(int days, int minutes)
{
    time_t t = time(NULL) + (time_t)days * 86400 + (time_t)minutes * 60;
    return t - t % 60;
}

static void assert_timestamp(const char *ts)
{
    ck_assert_ptr_nonnull(ts);
    ck_assert_msg(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts);
    int64_t us;
    ck_assert_msg(clock_parse_rfc3339(ts, &us), "not a date-time: %s", ts);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* The sum of the values of the metric samples whose line starts with sample (name and labels)
 * on s, -1 when there is none; *lines (when not NULL) receives how many lines there were. */
static long long metric_lines(struct harness_server *s, const char *sample, int *lines)
{
    struct response r;
    harness_request(s, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = -1;
    int n_lines = 0;
    size_t n = strlen(sample);
    for (const char *line = buf_str(&r.body); line && *line;) {
        if (strncmp(line, sample, n) == 0 && line[n] == ' ') {
            v = (v < 0 ? 0 : v) + atoll(line + n + 1);
            n_lines++;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    response_cleanup(&r);
    if (lines)
        *lines = n_lines;
    return v;
}

static long long metric(struct harness_server *s, const char *sample)
{
    return metric_lines(s, sample, NULL);
}

/* A worker's counter, summed over the lines exposing it; *lines as above. */
static long long worker_metric_lines(struct harness_server *s, const char *worker,
                                     const char *outcome, int *lines)
{
    char sample[200];
    snprintf(sample, sizeof sample, "rydes_worker_messages_total{worker=\"%s\",outcome=\"%s\"}",
             worker, outcome);
    return metric_lines(s, sample, lines);
}

static long long worker_metric(struct harness_server *s, const char *worker, const char *outcome)
{
    return worker_metric_lines(s, worker, outcome, NULL);
}

/* POST /tokens as admin; secret receives the new token of role. */
static void create_token(struct harness_server *s, const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"prebookings-%s\"}", role, role);
    struct response r;
    harness_admin(s, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_str(r.json, "token"));
    response_cleanup(&r);
}

static void pb_body(char *out, size_t n, const char *customer, const char *when)
{
    snprintf(out, n,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s\", "
             "\"when\": \"%s\"}",
             customer, when);
}

/* Checks r is the 202 of an accepted submission (headers and the pending task) and copies the
 * task id (IDS_UUID_LEN) to id. */
static void assert_accepted(const struct response *r, char *id)
{
    ck_assert_msg(r->status == 202, "%ld %s", r->status, buf_str(&r->body));
    ck_assert_ptr_nonnull(r->json);
    const char *tid = json_str(r->json, "id");
    ck_assert_ptr_nonnull(tid);
    ck_assert_msg(strlen(tid) == 36 && ids_is_uuid(tid), "not a UUID: %s", tid);
    char self[80], h[200];
    snprintf(self, sizeof self, "/tasks/%s", tid);
    ck_assert(response_header(r, "Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(r, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(r, "Retry-After", h, sizeof h));
    ck_assert_str_eq(h, "1");
    ck_assert(response_header(r, "Content-Type", h, sizeof h));
    ck_assert_str_eq(h, "application/json");
    ck_assert_str_eq(json_str(r->json, "kind"), "prebooking");
    ck_assert_str_eq(json_str(r->json, "status"), "pending");
    assert_timestamp(json_str(r->json, "submitted_at"));
    assert_timestamp(json_str(r->json, "updated_at"));
    json_t *links = json_object_get(r->json, "links");
    ck_assert_int_eq(json_object_size(links), 1);
    ck_assert_str_eq(json_str(links, "self"), self);
    ck_assert_ptr_null(json_object_get(r->json, "error"));
    snprintf(id, IDS_UUID_LEN, "%s", tid);
}

/* Submits body to path with token; asserts the 202 and copies the task id to id. */
static void submit_as(struct harness_server *s, const char *path, const char *token,
                      const char *body, char *id)
{
    struct response r;
    harness_request(s, "POST", path, token, body, NULL, NULL, &r);
    ck_assert_msg(r.status == 202, "POST %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    assert_accepted(&r, id);
    response_cleanup(&r);
}

/* Submits a prebooking of customer at when as admin. */
static void submit(struct harness_server *s, const char *customer, const char *when, char *id)
{
    char body[512];
    pb_body(body, sizeof body, customer, when);
    submit_as(s, "/prebookings", HARNESS_ADMIN_TOKEN, body, id);
}

/* GET /tasks/{id} as admin into r; asserts 200 and that Retry-After is there exactly while the
 * task is not final. */
static void get_task(struct harness_server *s, const char *id, struct response *r)
{
    char path[80], h[32];
    snprintf(path, sizeof path, "/tasks/%s", id);
    harness_admin(s, "GET", path, NULL, r);
    ck_assert_msg(r->status == 200, "GET %s: %ld %s", path, r->status, buf_str(&r->body));
    const char *st = json_str(r->json, "status");
    ck_assert_ptr_nonnull(st);
    bool final = strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0;
    ck_assert_msg(final || strcmp(st, "pending") == 0 || strcmp(st, "processing") == 0, "status %s",
                  st);
    bool retry = response_header(r, "Retry-After", h, sizeof h);
    ck_assert_msg(retry == !final, "task %s %s: Retry-After %s", id, st,
                  retry ? "present" : "missing");
    if (retry)
        ck_assert_str_eq(h, "1");
}

/* Checks the shape of a final task: links.result exactly when succeeded, error exactly when
 * failed. */
static void assert_final_shape(json_t *t)
{
    const char *st = json_str(t, "status");
    json_t *links = json_object_get(t, "links"), *error = json_object_get(t, "error");
    char self[80];
    snprintf(self, sizeof self, "/tasks/%s", json_str(t, "id"));
    ck_assert_str_eq(json_str(links, "self"), self);
    assert_timestamp(json_str(t, "submitted_at"));
    assert_timestamp(json_str(t, "updated_at"));
    ck_assert_msg(strcmp(json_str(t, "updated_at"), json_str(t, "submitted_at")) >= 0,
                  "updated before submitted");
    if (strcmp(st, "succeeded") == 0) {
        const char *result = json_str(links, "result");
        ck_assert_ptr_nonnull(result);
        ck_assert_msg(strncmp(result, "/prebookings/", 13) == 0 && ids_is_uuid(result + 13),
                      "links.result %s", result);
        ck_assert_ptr_null(error);
    } else {
        ck_assert_ptr_null(json_object_get(links, "result"));
        ck_assert_ptr_nonnull(error);
        ck_assert(json_is_string(json_object_get(error, "title")));
        ck_assert(json_is_string(json_object_get(error, "detail")));
        ck_assert_int_gt(strlen(json_str(error, "title")), 0);
        ck_assert_int_gt(strlen(json_str(error, "detail")), 0);
    }
}

/* What wait_task saw on the way. */
struct seen {
    bool pending, processing, failed_early;
};

/* Polls GET /tasks/{id} every 50 ms until the task is final or timeout_s passed; returns the
 * final task (a new reference). */
static json_t *wait_task_ex(struct harness_server *s, const char *id, double timeout_s,
                            struct seen *seen)
{
    double until = harness_now_s() + timeout_s;
    for (;;) {
        struct response r;
        get_task(s, id, &r);
        const char *st = json_str(r.json, "status");
        if (seen) {
            seen->pending |= strcmp(st, "pending") == 0;
            seen->processing |= strcmp(st, "processing") == 0;
        }
        if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0) {
            json_t *t = json_incref(r.json);
            response_cleanup(&r);
            assert_final_shape(t);
            return t;
        }
        char last[16];
        snprintf(last, sizeof last, "%s", st);
        response_cleanup(&r);
        ck_assert_msg(harness_now_s() < until, "task %s still %s after %.0f s", id, last,
                      timeout_s);
        harness_sleep_ms(50);
    }
}

static json_t *wait_task(struct harness_server *s, const char *id, double timeout_s)
{
    return wait_task_ex(s, id, timeout_s, NULL);
}

/* Waits for task id to succeed; copies its prebooking id to pid when not NULL. */
static void wait_succeeded(struct harness_server *s, const char *id, char *pid)
{
    json_t *t = wait_task(s, id, 15);
    ck_assert_msg(strcmp(json_str(t, "status"), "succeeded") == 0, "task %s %s: %s", id,
                  json_str(t, "status"), json_str(json_object_get(t, "error"), "detail"));
    if (pid)
        snprintf(pid, IDS_UUID_LEN, "%s",
                 json_str(json_object_get(t, "links"), "result") + strlen("/prebookings/"));
    json_decref(t);
}

/* Waits for task id to fail with title; returns its error detail (caller frees). */
static char *wait_failed(struct harness_server *s, const char *id, const char *title)
{
    json_t *t = wait_task(s, id, 15);
    ck_assert_msg(strcmp(json_str(t, "status"), "failed") == 0, "task %s %s, want failed", id,
                  json_str(t, "status"));
    json_t *error = json_object_get(t, "error");
    ck_assert_str_eq(json_str(error, "title"), title);
    char *detail = strdup(json_str(error, "detail"));
    json_decref(t);
    return detail;
}

/* GET /prebookings/{pid} as admin into r; asserts 200 and the shape. */
static void get_prebooking(struct harness_server *s, const char *pid, struct response *r)
{
    char path[80], h[200];
    snprintf(path, sizeof path, "/prebookings/%s", pid);
    harness_admin(s, "GET", path, NULL, r);
    ck_assert_msg(r->status == 200, "GET %s: %ld %s", path, r->status, buf_str(&r->body));
    ck_assert_str_eq(json_str(r->json, "id"), pid);
    json_t *links = json_object_get(r->json, "links");
    ck_assert_str_eq(json_str(links, "self"), path);
    ck_assert(response_header(r, "Content-Type", h, sizeof h));
    ck_assert_str_eq(h, "application/json");
    const char *task = json_str(links, "task");
    ck_assert_ptr_nonnull(task);
    ck_assert(strncmp(task, "/tasks/", 7) == 0 && ids_is_uuid(task + 7));
    assert_timestamp(json_str(r->json, "when"));
    assert_timestamp(json_str(r->json, "created_at"));
    ck_assert(json_is_string(json_object_get(r->json, "from")));
    ck_assert(json_is_string(json_object_get(r->json, "to")));
    ck_assert(json_is_string(json_object_get(r->json, "customer")));
}

/* ---- the lifecycle --------------------------------------------------------------------------- */

START_TEST(lifecycle_from_202_to_succeeded)
{
    start(no_workers);
    /* three days ahead, written at +02:00 with microseconds */
    time_t at = ahead(3, 17) + 42;
    char when[64], want_when[40], body[512], id[IDS_UUID_LEN];
    when_at(when, sizeof when, at, ".123456", 120);
    utc_ms(want_when, sizeof want_when, at, 123);
    pb_body(body, sizeof body, "lc-alice", when);
    struct response r;
    harness_request(&srv, "POST", "/prebookings", HARNESS_ADMIN_TOKEN, body, NULL,
                    "X-Request-Id: prebookings-test.lc:1", &r);
    assert_accepted(&r, id);
    json_t *accepted = json_incref(r.json);
    ck_assert_str_eq(json_str(accepted, "submitted_at"), json_str(accepted, "updated_at"));
    response_cleanup(&r);

    /* the task reads back as it was answered */
    get_task(&srv, id, &r);
    ck_assert_msg(json_equal(r.json, accepted), "GET gave %s, not the 202's task",
                  buf_str(&r.body));
    response_cleanup(&r);
    /* stored: the pending task and one event in each queue of the topic; nothing made */
    ck_assert_int_eq(
        harness_sqlf(
            "SELECT count(*) FROM tasks WHERE id = '%s' AND kind = 'prebooking' AND "
            "status = 'pending' AND attempts = 0 AND result_id IS NULL AND error_title IS NULL",
            id),
        1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM open_tasks WHERE id = '%s'", id), 1);
    ck_assert_int_eq(events_of("prebooking-processing", id), 1);
    ck_assert_int_eq(events_of("prebooking-datalake", id), 1);
    ck_assert_int_eq(prebookings_of_task(id), 0);
    ck_assert_int_eq(submissions_of_task(id), 0);
    /* the event: what the worker needs, "when" already normalised, the request id attached */
    char *event =
        harness_sqlf_text("SELECT coalesce(p.body, m.body) FROM messages m JOIN queues q ON "
                          "q.id = m.queue_id LEFT JOIN payloads p ON p.id = m.payload_id "
                          "WHERE q.name = 'prebooking-processing' AND "
                          "coalesce(p.body, m.body)::jsonb->>'task_id' = '%s'",
                          id);
    json_t *e = json_loads(event, 0, NULL);
    ck_assert_msg(e != NULL, "event is not JSON: %s", event);
    ck_assert_str_eq(json_str(e, "customer"), "lc-alice");
    ck_assert_str_eq(json_str(e, "from"), "Sunset Blvd");
    ck_assert_str_eq(json_str(e, "to"), "Hollywood Hills");
    ck_assert_str_eq(json_str(e, "when"), want_when);
    json_decref(e);
    free(event);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name = 'prebooking-processing' "
                     "AND m.attributes->'customer'->>'value' = 'lc-alice' "
                     "AND m.attributes->'correlation_id'->>'value' = 'prebookings-test.lc:1'"),
        1);
    stop();

    /* the same database with the workers on */
    start(prebooking_workers);
    struct seen seen = {0};
    json_t *t = wait_task_ex(&srv, id, 15, &seen);
    ck_assert_str_eq(json_str(t, "status"), "succeeded");
    ck_assert_str_eq(json_str(t, "submitted_at"), json_str(accepted, "submitted_at"));
    ck_assert_str_eq(json_str(t, "id"), id);
    ck_assert_str_eq(json_str(t, "kind"), "prebooking");
    const char *result = json_str(json_object_get(t, "links"), "result");
    char pid[IDS_UUID_LEN];
    snprintf(pid, sizeof pid, "%s", result + strlen("/prebookings/"));
    json_decref(t);
    json_decref(accepted);

    get_prebooking(&srv, pid, &r);
    char task_link[80], h[120];
    snprintf(task_link, sizeof task_link, "/tasks/%s", id);
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "task"), task_link);
    ck_assert_str_eq(json_str(r.json, "from"), "Sunset Blvd");
    ck_assert_str_eq(json_str(r.json, "to"), "Hollywood Hills");
    ck_assert_str_eq(json_str(r.json, "customer"), "lc-alice");
    ck_assert_str_eq(json_str(r.json, "when"), want_when);
    ck_assert_int_eq(json_object_size(r.json), 7);
    ck_assert(response_header(&r, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, json_str(json_object_get(r.json, "links"), "self"));
    response_cleanup(&r);

    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'succeeded' "
                     "AND result_id = '%s' AND attempts = 1",
                     id, pid),
        1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM open_tasks WHERE id = '%s'", id), 0);
    ck_assert_int_eq(prebookings_of_task(id), 1);
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s' "
             "AND submission->>'customer' = 'lc-alice' AND submission->>'when' = '%s'",
             id, want_when);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name IN ('prebooking-processing', 'prebooking-datalake') "
             "AND m.attributes->'customer'->>'value' = 'lc-alice'");
    ck_assert_int_eq(harness_wait_sql(sql, 0, 10), 0);
    stop();
}
END_TEST

/* ---- the task and its event commit together ---------------------------------------------------
 */

static long long stored_everything(void)
{
    return harness_sqlf("SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM messages) + "
                        "(SELECT count(*) FROM payloads) + (SELECT count(*) FROM prebookings) + "
                        "(SELECT count(*) FROM publish_outbox)");
}

/* POSTs submission body until it is refused 503 (a process may still hold the topic as it
 * was for a moment: those are taken), with Retry-After and naming, if not NULL, what is
 * missing; the refused one stored nothing. */
static void refused_unstored(const char *body, const char *names)
{
    struct response r;
    double until = harness_now_s() + 5;
    long long before;
    for (;;) {
        before = stored_everything();
        harness_request(&srv, "POST", "/prebookings", HARNESS_ADMIN_TOKEN, body, NULL, NULL, &r);
        if (r.status == 503 || harness_now_s() > until)
            break;
        ck_assert_msg(r.status == 202, "%ld %s", r.status, buf_str(&r.body));
        response_cleanup(&r);
        harness_sleep_ms(100);
    }
    assert_problem(&r, 503);
    char h[32];
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    ck_assert_msg(!names || strstr(buf_str(&r.body), names), "%s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(stored_everything(), before);
}

START_TEST(no_task_without_its_event)
{
    start(no_workers);
    /* the publish fails (a trigger refuses the outbox row of customer tx-fail's event) */
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION pb_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN IF NEW.attributes->'customer'->>'value' = 'tx-fail' THEN "
                     "RAISE EXCEPTION 'refused by a test'; END IF; RETURN NEW; END $$"));
    free(harness_sql(harness_db_url(),
                     "CREATE TRIGGER pb_test_refuse BEFORE INSERT ON publish_outbox FOR EACH ROW "
                     "EXECUTE FUNCTION pb_test_refuse()"));
    char when[64], body[512], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(2, 30), "", 0);
    pb_body(body, sizeof body, "tx-fail", when);
    long long before = stored_everything();
    struct response r;
    harness_request(&srv, "POST", "/prebookings", HARNESS_ADMIN_TOKEN, body, NULL, NULL, &r);
    long status = r.status;
    if (status >= 500)
        assert_problem(&r, status);
    response_cleanup(&r);
    long long after = stored_everything();
    free(harness_sql(harness_db_url(), "DROP TRIGGER pb_test_refuse ON publish_outbox"));
    free(harness_sql(harness_db_url(), "DROP FUNCTION pb_test_refuse()"));
    ck_assert_msg(status >= 500, "POST with a failing publish: %ld", status);
    ck_assert_int_eq(after, before);
    submit(&srv, "tx-fail", when, id);
    ck_assert_int_eq(events_of("prebooking-processing", id), 1);
    ck_assert_int_eq(events_of("prebooking-datalake", id), 1);

    /* without the topic: 503, nothing stored, until a restart re-creates it */
    harness_admin(&srv, "DELETE", "/topics/prebooking-notification", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    pb_body(body, sizeof body, "tx-notopic", when);
    refused_unstored(body, NULL);
    stop();
    start(no_workers);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON t.id = "
                     "s.topic_id JOIN queues q ON q.id = s.queue_id WHERE t.name = "
                     "'prebooking-notification' AND s.name = q.name AND s.raw_delivery"),
        2);
    submit(&srv, "tx-notopic", when, id);
    ck_assert_int_eq(events_of("prebooking-processing", id), 1);
    ck_assert_int_eq(events_of("prebooking-datalake", id), 1);
    stop();
}
END_TEST

/* The topic exists but takes submissions to no prebooking-processing queue (its subscription
 * deleted, or filtering them out): 503 and nothing stored, not a task that waits for a worker no
 * message reaches. A restart re-creates the subscription. */
START_TEST(no_task_when_nothing_would_process_it)
{
    start(no_workers);
    char when[64], body[512], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(2, 30), "", 0);
    struct response r;
    harness_admin(&srv, "PUT",
                  "/topics/prebooking-notification/subscriptions/prebooking-processing",
                  "{\"queue\":\"prebooking-processing\",\"raw_delivery\":true,"
                  "\"filter_policy\":{\"customer\":[\"nobody\"]}}",
                  &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    for (int gone = 0; gone < 2; gone++) {
        if (gone) {
            harness_admin(&srv, "DELETE",
                          "/topics/prebooking-notification/subscriptions/prebooking-processing",
                          NULL, &r);
            ck_assert_int_eq(r.status, 204);
            response_cleanup(&r);
        }
        pb_body(body, sizeof body, gone ? "unrouted-gone" : "unrouted-filtered", when);
        refused_unstored(body, "prebooking-processing");
    }
    stop();
    start(no_workers);
    submit(&srv, "unrouted-after", when, id);
    ck_assert_int_eq(events_of("prebooking-processing", id), 1);
    stop();
}
END_TEST

/* ---- validation ------------------------------------------------------------------------------ */

/* A submission with one thing wrong: field f set to JSON v (NULL: removed), a second change
 * f2/v2, and the field the 400 must name. */
struct bad_prebooking {
    const char *f1, *v1, *f2, *v2, *named;
};

#define WHEN_OK   "@ok"   /* a valid time two days ahead */
#define WHEN_PAST "@past" /* a minute ago */
#define WHEN_91   "@91"   /* 91 days ahead */
#define TEXT_201  "@201"  /* 201 characters */

static const struct bad_prebooking bad_prebookings[] = {
    /* missing */
    {"from", NULL, NULL, NULL, "from"},
    {"to", NULL, NULL, NULL, "to"},
    {"customer", NULL, NULL, NULL, "customer"},
    {"when", NULL, NULL, NULL, "when"},
    /* a field and its alias */
    {"customer-id", "\"v-other\"", NULL, NULL, "customer"},
    {"from-location", "\"Elsewhere\"", NULL, NULL, "from"},
    {"to-location", "\"Elsewhere\"", NULL, NULL, "to"},
    /* wrong types and lengths */
    {"from", "\"\"", NULL, NULL, "from"},
    {"to", TEXT_201, NULL, NULL, "to"},
    {"customer", "42", NULL, NULL, "customer"},
    {"customer", "null", NULL, NULL, "customer"},
    {"customer", NULL, "customer-id", "[\"v\"]", "customer-id"},
    {"from", "{\"street\": \"x\"}", NULL, NULL, "from"},
    {"when", "1795694400", NULL, NULL, "when"},
    {"when", "\"\"", NULL, NULL, "when"},
    {"when", "true", NULL, NULL, "when"},
    /* not RFC 3339 */
    {"when", "\"tomorrow\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01T10:00:00\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01T10:00\"", NULL, NULL, "when"},
    {"when", "\"01/01/2030 10:00\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01T10:00:00Z \"", NULL, NULL, "when"},
    {"when", "\"2030-02-29T10:00:00Z\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01T24:00:00Z\"", NULL, NULL, "when"},
    {"when", "\"2030-06-30T23:59:60Z\"", NULL, NULL, "when"},
    {"when", "\"2030-01-01T10:00:00+0100\"", NULL, NULL, "when"},
    /* outside the window */
    {"when", WHEN_PAST, NULL, NULL, "when"},
    {"when", WHEN_91, NULL, NULL, "when"},
    {"when", "\"2020-01-01T10:00:00Z\"", NULL, NULL, "when"},
    {"when", "\"2999-01-01T10:00:00Z\"", NULL, NULL, "when"},
    /* unknown fields, near misses of known ones included */
    {"extra", "1", NULL, NULL, "extra"},
    {"When", "\"2030-01-01T10:00:00Z\"", NULL, NULL, "When"},
    {"customer_id", "\"v\"", NULL, NULL, "customer_id"},
    {"pickup_at", "\"x\"", NULL, NULL, "pickup_at"},
};

/* A request body that is wrong as a whole, and the answer. */
struct bad_body {
    const char *body, *content_type;
    long status;
};

static const struct bad_body bad_bodies[] = {
    {"[]", NULL, 400},
    {"\"prebooking\"", NULL, 400},
    {"42", NULL, 400},
    {"null", NULL, 400},
    {"{\"from\": ", NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"customer\": \"d\", "
     "\"when\": \"2030-01-01T10:00:00Z\"}",
     NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"when\": \"2030-01-01T10:00:00Z\"}",
     "text/plain", 415},
    {"from=A&to=B", "application/x-www-form-urlencoded", 415},
};

/* The JSON of a table value: a valid time, a time in the past, 91 days ahead, 201 characters
 * or the literal JSON text. */
static json_t *table_value(const char *v)
{
    char when[64];
    if (strcmp(v, WHEN_OK) == 0) {
        when_at(when, sizeof when, ahead(2, 0), "", 0);
        return json_string(when);
    }
    if (strcmp(v, WHEN_PAST) == 0) {
        when_at(when, sizeof when, time(NULL) - 60, "", 0);
        return json_string(when);
    }
    if (strcmp(v, WHEN_91) == 0) {
        when_at(when, sizeof when, ahead(91, 0), "", 0);
        return json_string(when);
    }
    if (strcmp(v, TEXT_201) == 0) {
        char s[202];
        memset(s, 'x', 201);
        s[201] = '\0';
        return json_string(s);
    }
    json_t *x = json_loads(v, JSON_DECODE_ANY, NULL);
    ck_assert_msg(x != NULL, "bad table value %s", v);
    return x;
}

/* The valid submission with case b applied (caller frees). */
static char *bad_prebooking_body(const struct bad_prebooking *b)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "from", "A", "to", "B", "customer", "v-valid",
                          "when", table_value(WHEN_OK));
    const char *f[] = {b->f1, b->f2}, *v[] = {b->v1, b->v2};
    for (int i = 0; i < 2 && f[i]; i++) {
        if (!v[i])
            json_object_del(o, f[i]);
        else
            json_object_set_new(o, f[i], table_value(v[i]));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

START_TEST(invalid_submissions_are_400_naming_the_field_and_change_nothing)
{
    start(no_workers);
    const char *paths[] = {"/prebookings", "/submit-ride-prebooking"};
    long long before = stored_everything();
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof bad_prebookings / sizeof *bad_prebookings; i++) {
            char *body = bad_prebooking_body(&bad_prebookings[i]);
            struct response r;
            harness_request(&srv, "POST", paths[p], HARNESS_ADMIN_TOKEN, body, NULL, NULL, &r);
            ck_assert_msg(r.status == 400, "%s %s: %ld %s", paths[p], body, r.status,
                          buf_str(&r.body));
            assert_problem(&r, 400);
            ck_assert_msg(problem_names_field(&r, bad_prebookings[i].named),
                          "%s %s: %s does not name %s", paths[p], body, buf_str(&r.body),
                          bad_prebookings[i].named);
            response_cleanup(&r);
            free(body);
        }
        for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
            const struct bad_body *b = &bad_bodies[i];
            struct response r;
            harness_request(&srv, "POST", paths[p], HARNESS_ADMIN_TOKEN, b->body, b->content_type,
                            NULL, &r);
            ck_assert_msg(r.status == b->status, "%s %s: %ld %s", paths[p], b->body, r.status,
                          buf_str(&r.body));
            assert_problem(&r, b->status);
            response_cleanup(&r);
        }
        struct response r;
        harness_request(&srv, "POST", paths[p], HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
        ck_assert_msg(r.status == 400 || r.status == 415, "no body: %ld", r.status);
        response_cleanup(&r);
        /* every problem is reported at once */
        harness_request(&srv, "POST", paths[p], HARNESS_ADMIN_TOKEN,
                        "{\"from\": \"\", \"customer-id\": 1, \"when\": \"soon\", \"extra\": 0}",
                        NULL, NULL, &r);
        assert_problem(&r, 400);
        const char *named[] = {"from", "to", "customer-id", "when", "extra"};
        for (size_t i = 0; i < sizeof named / sizeof *named; i++)
            ck_assert_msg(problem_names_field(&r, named[i]), "%s not named: %s", named[i],
                          buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(stored_everything(), before);

    /* the edges of the window are accepted, through either path and the hyphenated spellings */
    long long tasks = harness_sqlf("SELECT count(*) FROM tasks");
    char when[64], body[512], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(89, 0), "", 0);
    pb_body(body, sizeof body, "v-89", when);
    submit_as(&srv, "/prebookings", HARNESS_ADMIN_TOKEN, body, id);
    when_at(when, sizeof when, time(NULL) + 90 * 86400 - 120, ".5", -60);
    snprintf(body, sizeof body,
             "{\"from-location\": \"A\", \"to-location\": \"B\", \"customer-id\": \"v-90\", "
             "\"when\": \"%s\"}",
             when);
    submit_as(&srv, "/submit-ride-prebooking", HARNESS_ADMIN_TOKEN, body, id);
    when_at(when, sizeof when, time(NULL) + 120, "", 0);
    pb_body(body, sizeof body, "v-soon", when);
    submit_as(&srv, "/prebookings", HARNESS_ADMIN_TOKEN, body, id);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks + 3);
    ck_assert_int_eq(events_of("prebooking-processing", id), 1);
    stop();

    /* the horizon is a setting */
    start(horizon_7);
    when_at(when, sizeof when, ahead(6, 0), "", 0);
    pb_body(body, sizeof body, "v-h6", when);
    submit_as(&srv, "/prebookings", HARNESS_ADMIN_TOKEN, body, id);
    when_at(when, sizeof when, ahead(8, 0), "", 0);
    pb_body(body, sizeof body, "v-h8", when);
    struct response r;
    harness_request(&srv, "POST", "/prebookings", HARNESS_ADMIN_TOKEN, body, NULL, NULL, &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "when"));
    ck_assert_msg(strstr(buf_str(&r.body), "7 days") != NULL, "%s", buf_str(&r.body));
    response_cleanup(&r);
    stop();
}
END_TEST

/* ---- the business rule ----------------------------------------------------------------------- */

START_TEST(a_customer_cannot_hold_two_prebookings_within_the_slot)
{
    start(prebooking_workers);
    time_t at = ahead(10, 0);
    char when[64], first[IDS_UUID_LEN], id[IDS_UUID_LEN], pid[IDS_UUID_LEN];
    when_at(when, sizeof when, at, "", 0);
    submit(&srv, "br-ann", when, first);
    wait_succeeded(&srv, first, pid);

    /* 30 minutes later, written at another offset: the slot is taken */
    when_at(when, sizeof when, at + 30 * 60, "", -330);
    submit(&srv, "br-ann", when, id);
    char *detail = wait_failed(&srv, id, "Slot not available");
    ck_assert_msg(strstr(detail, "br-ann") != NULL, "detail does not name the customer: %s",
                  detail);
    free(detail);
    ck_assert_int_eq(prebookings_of_task(id), 0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'failed' "
                     "AND error_title = 'Slot not available' AND result_id IS NULL",
                     id),
        1);
    /* 30 minutes earlier, too */
    when_at(when, sizeof when, at - 30 * 60, "", 0);
    submit(&srv, "br-ann", when, id);
    free(wait_failed(&srv, id, "Slot not available"));
    /* 61 minutes either side is free; so is exactly the slot's length apart */
    when_at(when, sizeof when, at + 61 * 60, "", 0);
    submit(&srv, "br-ann", when, id);
    wait_succeeded(&srv, id, NULL);
    when_at(when, sizeof when, at - 61 * 60, "", 0);
    submit(&srv, "br-ann", when, id);
    wait_succeeded(&srv, id, NULL);
    when_at(when, sizeof when, at + 122 * 60, "", 0);
    submit(&srv, "br-ann", when, id);
    wait_succeeded(&srv, id, NULL);
    /* another customer at the very same time */
    when_at(when, sizeof when, at, "", 0);
    submit(&srv, "br-bob", when, id);
    wait_succeeded(&srv, id, NULL);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'br-ann'"), 4);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'br-bob'"), 1);
    /* the failed ones are final: nothing comes back for them */
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name LIKE 'prebooking-%%' AND m.attributes->'customer'->>'value' "
             "IN ('br-ann', 'br-bob')");
    ck_assert_int_eq(harness_wait_sql(sql, 0, 10), 0);
    stop();
}
END_TEST

/* A task processed after its pickup time (a backlog held it) fails instead of booking a time
 * already past; the slot it would have taken stays free. */
START_TEST(a_task_processed_after_its_pickup_time_fails)
{
    start(no_workers);
    char when[64], id[IDS_UUID_LEN];
    time_t at = time(NULL) + 2;
    when_at(when, sizeof when, at, "", 0);
    submit(&srv, "pt-kim", when, id);
    stop();
    while (time(NULL) <= at)
        harness_sleep_ms(100);
    start(prebooking_workers);
    char *detail = wait_failed(&srv, id, "Pickup time passed");
    ck_assert_msg(strstr(detail, "had passed"), "%s", detail);
    free(detail);
    ck_assert_int_eq(prebookings_of_task(id), 0);
    stop();
}
END_TEST

/* The processing worker reads only the task id of a message: the prebooking is the task's
 * stored submission, whatever the message says (anyone allowed to send to the queue could
 * write one); a message naming a task but nothing else processes it the same, and fails
 * nothing. */
START_TEST(a_task_books_what_was_submitted_not_what_a_message_says)
{
    start(no_workers);
    char when[64], other[64], id[IDS_UUID_LEN], pid[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(3, 0), "", 0);
    when_at(other, sizeof other, ahead(4, 0), "", 0);
    submit(&srv, "ss-owner", when, id);
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-processing:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/prebooking-datalake:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    char forged[2][400];
    snprintf(forged[0], sizeof forged[0],
             "{\"body\": {\"task_id\": \"%s\", \"from\": \"Elsewhere\", \"to\": \"Nowhere\", "
             "\"customer\": \"mallory\", \"when\": \"%s\"}}",
             id, other);
    snprintf(forged[1], sizeof forged[1], "{\"body\": {\"task_id\": \"%s\"}}", id);
    for (int i = 0; i < 2; i++) {
        harness_admin(&srv, "POST", "/queues/prebooking-processing/messages", forged[i], &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    harness_admin(&srv, "POST", "/queues/prebooking-datalake/messages", forged[0], &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    stop();
    start(prebooking_workers);
    wait_succeeded(&srv, id, pid);
    get_prebooking(&srv, pid, &r);
    ck_assert_str_eq(json_str(r.json, "customer"), "ss-owner");
    ck_assert_str_ne(json_str(r.json, "from"), "Elsewhere");
    response_cleanup(&r);
    ck_assert_int_eq(prebookings_of_task(id), 1);
    /* the data lake keeps the submission too, not the message's */
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s' AND "
             "submission->>'customer' = 'ss-owner'",
             id);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    /* both messages were handled (the second found the task done), none left to fail it */
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                      "m.queue_id WHERE q.name = 'prebooking-processing'",
                                      0, 10),
                     0);
    stop();
}
END_TEST

/* One of the concurrent submissions. No ck_assert off the test's thread. */
struct racer {
    const char *url, *body, *key; /* key: an Idempotency-Key header, or NULL */
    pthread_barrier_t *go;
    long status;
    char id[IDS_UUID_LEN];
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

static void *race(void *arg)
{
    struct racer *x = arg;
    struct buf got;
    buf_init(&got);
    CURL *c = curl_easy_init();
    struct curl_slist *hs = NULL;
    hs = curl_slist_append(hs, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    if (x->key)
        hs = curl_slist_append(hs, x->key);
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    pthread_barrier_wait(x->go);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    json_t *j = json_loadb(got.data, got.len, 0, NULL);
    snprintf(x->id, sizeof x->id, "%s", json_str(j, "id") ? json_str(j, "id") : "");
    json_decref(j);
    buf_cleanup(&got);
    return NULL;
}

#define RACERS 10

/* The consumer threads that handled events of customer race_customer (the fault hook records
 * them and fails nothing). */
static pthread_t race_threads[16];
static atomic_int race_nthreads, race_handled;
static pthread_mutex_t race_mu = PTHREAD_MUTEX_INITIALIZER;
static char race_customer[32];

static bool record_racers(const char *worker, const struct mq_message *m)
{
    if (strcmp(worker, "prebooking-processing") != 0 || !m->body || !strstr(m->body, race_customer))
        return false;
    pthread_mutex_lock(&race_mu);
    bool known = false;
    for (int i = 0; i < atomic_load(&race_nthreads); i++)
        known |= pthread_equal(race_threads[i], pthread_self());
    if (!known && atomic_load(&race_nthreads) < 16)
        race_threads[atomic_fetch_add(&race_nthreads, 1)] = pthread_self();
    pthread_mutex_unlock(&race_mu);
    atomic_fetch_add(&race_handled, 1);
    return false;
}

static void race_begin(const char *customer)
{
    snprintf(race_customer, sizeof race_customer, "\"%s\"", customer);
    atomic_store(&race_nthreads, 0);
    atomic_store(&race_handled, 0);
    consumer_fault_hook = record_racers;
}

/* Posts body to /prebookings from n threads at once; x receives the answers. */
static void race_keyed(const char *body, const char *key, int n, struct racer *x)
{
    char url[128];
    snprintf(url, sizeof url, "%s/prebookings", srv.base);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    pthread_t t[RACERS];
    for (int i = 0; i < n; i++) {
        x[i] = (struct racer){.url = url, .body = body, .key = key, .go = &go};
        pthread_create(&t[i], NULL, race, &x[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
}

static void race_all(const char *body, int n, struct racer *x)
{
    race_keyed(body, NULL, n, x);
}

/* Waits for the n tasks of x to be final: exactly one succeeded, the others failed "Slot not
 * available". */
static void assert_one_slot(const struct racer *x, int n)
{
    int succeeded = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_msg(x[i].status == 202 && ids_is_uuid(x[i].id), "racer %d: %ld", i, x[i].status);
        json_t *task = wait_task(&srv, x[i].id, 20);
        if (strcmp(json_str(task, "status"), "succeeded") == 0) {
            succeeded++;
        } else {
            failed++;
            ck_assert_str_eq(json_str(json_object_get(task, "error"), "title"),
                             "Slot not available");
        }
        json_decref(task);
    }
    ck_assert_int_eq(succeeded, 1);
    ck_assert_int_eq(failed, n - 1);
}

/* Backends of the database waiting for a lock. */
static long long lock_waiters(void)
{
    return harness_sqlf(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND "
        "database = (SELECT oid FROM pg_database WHERE datname = current_database())");
}

static void exec_on(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
}

START_TEST(concurrent_submissions_of_one_slot_make_one_prebooking)
{
    start(four_consumers);
    /* ten at once */
    char when[64], body[512];
    when_at(when, sizeof when, ahead(11, 0), "", 0);
    pb_body(body, sizeof body, "br-race", when);
    race_begin("br-race");
    struct racer x[RACERS];
    race_all(body, RACERS, x);
    assert_one_slot(x, RACERS);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'br-race'"),
                     1);
    ck_assert_int_ge(atomic_load(&race_handled), RACERS);
    ck_assert_int_ge(worker_metric(&srv, "prebooking-processing", "handled"), RACERS);

    /* Again, with the decisions made to meet: while a test transaction keeps prebookings from
     * being written, the first event's consumer stops at its write; the other nine, sent then,
     * reach other consumers, which must wait for the first's decision (serialised per customer)
     * rather than decide on what they see. */
    when_at(when, sizeof when, ahead(11, 120), "", 0);
    pb_body(body, sizeof body, "br-gate", when);
    race_begin("br-gate");
    PGconn *gate = PQconnectdb(harness_db_url());
    ck_assert_msg(PQstatus(gate) == CONNECTION_OK, "%s", PQerrorMessage(gate));
    exec_on(gate, "BEGIN");
    exec_on(gate, "LOCK TABLE prebookings IN SHARE MODE");
    struct racer first;
    race_all(body, 1, &first);
    double until = harness_now_s() + 10;
    while (lock_waiters() < 1 && harness_now_s() < until)
        harness_sleep_ms(20);
    long long blocked_first = lock_waiters();
    race_all(body, RACERS - 1, x);
    until = harness_now_s() + 5;
    while (lock_waiters() < 2 && harness_now_s() < until)
        harness_sleep_ms(20);
    long long blocked = lock_waiters();
    exec_on(gate, "COMMIT");
    PQfinish(gate);
    ck_assert_msg(blocked_first >= 1, "the first event's consumer did not reach its write");
    ck_assert_msg(blocked >= 2, "no second consumer met the first (%lld waiting)", blocked);
    assert_one_slot(&first, 1);
    /* first is the one that succeeded (it decided first); the nine fail */
    for (int i = 0; i < RACERS - 1; i++)
        free(wait_failed(&srv, x[i].id, "Slot not available"));
    ck_assert_int_ge(atomic_load(&race_nthreads), 2);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'br-gate'"),
                     1);
    consumer_fault_hook = NULL;
    stop();

    /* the slot is a setting: 15 minutes apart is enough with a 10-minute slot */
    start(four_consumers_slot_10);
    char a[IDS_UUID_LEN], b[IDS_UUID_LEN], c[IDS_UUID_LEN];
    time_t at = ahead(12, 0);
    when_at(when, sizeof when, at, "", 0);
    submit(&srv, "br-slot", when, a);
    wait_succeeded(&srv, a, NULL);
    when_at(when, sizeof when, at + 15 * 60, "", 0);
    submit(&srv, "br-slot", when, b);
    wait_succeeded(&srv, b, NULL);
    when_at(when, sizeof when, at + 20 * 60, "", 0);
    submit(&srv, "br-slot", when, c);
    char *detail = wait_failed(&srv, c, "Slot not available");
    ck_assert_msg(strstr(detail, "br-slot") != NULL, "%s", detail);
    free(detail);
    stop();
}
END_TEST

/* POST /prebookings with header key (NULL: none) as admin into r. */
static void submit_keyed(const char *body, const char *key, struct response *r)
{
    harness_request(&srv, "POST", "/prebookings", HARNESS_ADMIN_TOKEN, body, NULL, key, r);
}

/* Checks r is a 202 naming task id, in status want. */
static void assert_same_task(const struct response *r, const char *id, const char *want)
{
    ck_assert_msg(r->status == 202, "%ld %s", r->status, buf_str(&r->body));
    char self[80], h[200];
    snprintf(self, sizeof self, "/tasks/%s", id);
    ck_assert_str_eq(json_str(r->json, "id"), id);
    ck_assert(response_header(r, "Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert_str_eq(json_str(r->json, "status"), want);
}

START_TEST(a_retry_with_the_same_key_finds_the_first_task)
{
    start(prebooking_workers);
    time_t at = ahead(12, 0);
    char when[64], body[512], id[IDS_UUID_LEN], pid[IDS_UUID_LEN];
    when_at(when, sizeof when, at, "", 0);
    pb_body(body, sizeof body, "ik-amy", when);
    const char *key = "Idempotency-Key: ik-0001";
    long long tasks = harness_sqlf("SELECT count(*) FROM tasks");
    struct response r;
    submit_keyed(body, key, &r);
    assert_accepted(&r, id);
    response_cleanup(&r);
    wait_succeeded(&srv, id, pid);

    /* the retry of a submission whose reply was lost: the first task, as it stands now, and not
     * a second one that finds the slot taken; the same instant at another offset is the same */
    when_at(when, sizeof when, at, ".000", 120);
    pb_body(body, sizeof body, "ik-amy", when);
    submit_keyed(body, key, &r);
    assert_same_task(&r, id, "succeeded");
    char h[80]; /* a 202 has Retry-After, as API.md says, also when its task is final */
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    ck_assert_str_eq(h, "1");
    char result[80];
    snprintf(result, sizeof result, "/prebookings/%s", pid);
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "result"), result);
    response_cleanup(&r);
    harness_request(&srv, "POST", "/submit-ride-prebooking", HARNESS_ADMIN_TOKEN, body, NULL, key,
                    &r);
    assert_same_task(&r, id, "succeeded");
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks + 1);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s'",
             id);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1); /* published once */
    ck_assert_int_eq(submissions_of_task(id), 1);

    /* the same key with another submission: 422, nothing submitted */
    when_at(when, sizeof when, at + 3 * 3600, "", 0);
    pb_body(body, sizeof body, "ik-amy", when);
    submit_keyed(body, key, &r);
    assert_problem(&r, 422);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks + 1);
    /* another key, or none, submits anew; a ride's key of the same text is another key */
    submit_keyed(body, "Idempotency-Key: ik-0002", &r);
    char second[IDS_UUID_LEN];
    assert_accepted(&r, second);
    response_cleanup(&r);
    ck_assert_str_ne(id, second);
    wait_succeeded(&srv, second, NULL);
    harness_request(&srv, "POST", "/rides", HARNESS_ADMIN_TOKEN,
                    "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-amy\", \"duration\": 60, "
                    "\"distance\": 2.5, \"fare\": 3}",
                    NULL, "Idempotency-Key: ik-0002", &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'ik-amy'"), 2);

    /* an invalid key is a 400 naming the header, and submits nothing */
    submit_keyed(body, "Idempotency-Key: a b", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "Idempotency-Key"));
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks + 2);

    /* ten at once with one key: one task, which all ten name */
    when_at(when, sizeof when, at + 6 * 3600, "", 0);
    pb_body(body, sizeof body, "ik-amy", when);
    struct racer x[RACERS];
    race_keyed(body, "Idempotency-Key: ik-race", RACERS, x);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(x[i].status == 202, "racer %d: %ld", i, x[i].status);
        ck_assert_str_eq(x[i].id, x[0].id);
    }
    wait_succeeded(&srv, x[0].id, NULL);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks + 3);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE customer = 'ik-amy'"), 3);
    stop();
}
END_TEST

/* A retry whose pickup time has come since the first submission still finds its task (the
 * key is looked up before "when" is judged against the clock); a new key is judged as ever. */
START_TEST(a_retry_after_the_pickup_time_finds_the_first_task)
{
    start(no_workers);
    char when[64], body[512], id[IDS_UUID_LEN];
    time_t at = time(NULL) + 2;
    when_at(when, sizeof when, at, "", 0);
    pb_body(body, sizeof body, "ik-late", when);
    struct response r;
    submit_keyed(body, "Idempotency-Key: ik-late-1", &r);
    assert_accepted(&r, id);
    response_cleanup(&r);
    while (time(NULL) <= at)
        harness_sleep_ms(100);
    submit_keyed(body, "Idempotency-Key: ik-late-1", &r);
    assert_same_task(&r, id, "pending");
    response_cleanup(&r);
    submit_keyed(body, "Idempotency-Key: ik-late-2", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "when"));
    response_cleanup(&r);
    /* a key used with another submission is 422 even when that one is late too */
    when_at(when, sizeof when, at - 60, "", 0);
    pb_body(body, sizeof body, "ik-late", when);
    submit_keyed(body, "Idempotency-Key: ik-late-1", &r);
    assert_problem(&r, 422);
    response_cleanup(&r);
    stop();
}
END_TEST

/* ---- the direct-queue path ------------------------------------------------------------------- */

/* Sends body (JSON text) into queue with token; returns the message id in mid. */
static void send_into(struct harness_server *s, const char *queue, const char *token,
                      const char *body, char *mid)
{
    char envelope[2048], path[120];
    snprintf(envelope, sizeof envelope, "{\"body\": %s}", body);
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    struct response r;
    harness_request(s, "POST", path, token, envelope, NULL, NULL, &r);
    ck_assert_msg(r.status == 201, "%s: %ld %s", envelope, r.status, buf_str(&r.body));
    snprintf(mid, IDS_UUID_LEN, "%s", json_str(r.json, "message_id"));
    ck_assert(ids_is_uuid(mid));
    response_cleanup(&r);
}

/* The same into prebooking-submission. */
static void send_submission(struct harness_server *s, const char *token, const char *body,
                            char *mid)
{
    send_into(s, "prebooking-submission", token, body, mid);
}

/* A body sent into the queue, and the fields the failed task's detail must name. */
struct bad_message {
    const char *body, *named[3];
};

START_TEST(submissions_sent_into_the_queue_become_tasks)
{
    start(prebooking_workers);
    char service[SECRET_TOKEN_LEN];
    create_token(&srv, "service", service);
    time_t at = ahead(4, 0);
    char when[64], want_when[40], body[512], mid[IDS_UUID_LEN], pid[IDS_UUID_LEN];
    when_at(when, sizeof when, at, ".25", 60);
    utc_ms(want_when, sizeof want_when, at, 250);
    snprintf(body, sizeof body,
             "{\"from-location\": \"Pier\", \"to-location\": \"Airport\", "
             "\"customer-id\": \"dq-1\", \"when\": \"%s\"}",
             when);
    send_submission(&srv, service, body, mid);
    json_t *t = wait_task(&srv, mid, 15);
    ck_assert_str_eq(json_str(t, "id"), mid);
    ck_assert_msg(strcmp(json_str(t, "status"), "succeeded") == 0, "%s: %s %s", body,
                  json_str(t, "status"), json_str(json_object_get(t, "error"), "detail"));
    snprintf(pid, sizeof pid, "%s",
             json_str(json_object_get(t, "links"), "result") + strlen("/prebookings/"));
    json_decref(t);
    struct response r;
    get_prebooking(&srv, pid, &r);
    ck_assert_str_eq(json_str(r.json, "from"), "Pier");
    ck_assert_str_eq(json_str(r.json, "to"), "Airport");
    ck_assert_str_eq(json_str(r.json, "customer"), "dq-1");
    ck_assert_str_eq(json_str(r.json, "when"), want_when);
    char task_link[80];
    snprintf(task_link, sizeof task_link, "/tasks/%s", mid);
    ck_assert_str_eq(json_str(json_object_get(r.json, "links"), "task"), task_link);
    response_cleanup(&r);
    char sql[600];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s'",
             mid);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);

    /* the same rule applies: the slot of dq-1 is taken */
    when_at(when, sizeof when, at + 600, "", 0);
    snprintf(body, sizeof body,
             "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"dq-1\", \"when\": \"%s\"}", when);
    send_submission(&srv, service, body, mid);
    t = wait_task(&srv, mid, 15);
    ck_assert_str_eq(json_str(t, "status"), "failed");
    ck_assert_str_eq(json_str(json_object_get(t, "error"), "title"), "Slot not available");
    json_decref(t);

    /* invalid bodies become failed tasks naming what is wrong */
    char past[64], no_when[256], past_body[256];
    when_at(past, sizeof past, time(NULL) - 3600, "", 0);
    snprintf(past_body, sizeof past_body,
             "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"dq-bad\", \"when\": \"%s\"}", past);
    snprintf(no_when, sizeof no_when, "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"dq-bad\"}");
    const struct bad_message bad[] = {
        {"\"a string, not a prebooking\"", {"body"}},
        {"[1, 2, 3]", {"body"}},
        {"42", {"body"}},
        {"\"{\\\"from\\\": \"", {"body"}},
        {no_when, {"when"}},
        {past_body, {"when"}},
        {"{\"from\": \"\", \"to\": \"B\", \"customer\": 7, \"when\": \"2030-01-01T25:00:00Z\", "
         "\"x\": 1}",
         {"from", "customer", "x"}},
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"dq-bad\", \"when\": \"yesterday\"}",
         {"when"}},
        {"{}", {"from", "to", "customer"}},
    };
    char ids[sizeof bad / sizeof *bad][IDS_UUID_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        send_submission(&srv, service, bad[i].body, ids[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = wait_task(&srv, ids[i], 15);
        ck_assert_msg(strcmp(json_str(t, "status"), "failed") == 0, "%s: %s", bad[i].body,
                      json_str(t, "status"));
        json_t *error = json_object_get(t, "error");
        ck_assert_str_eq(json_str(error, "title"), "Invalid prebooking");
        const char *detail = json_str(error, "detail");
        for (int k = 0; k < 3 && bad[i].named[k]; k++) {
            char field[40];
            snprintf(field, sizeof field, "%s:", bad[i].named[k]);
            ck_assert_msg(strstr(detail, field) != NULL, "%s: the detail \"%s\" does not name %s",
                          bad[i].body, detail, bad[i].named[k]);
        }
        json_decref(t);
        ck_assert_int_eq(prebookings_of_task(ids[i]), 0);
        ck_assert_int_eq(events_of("prebooking-processing", ids[i]), 0);
        ck_assert_int_eq(events_of("prebooking-datalake", ids[i]), 0);
    }
    /* no poison message: the queue and its dead-letter queue end empty */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name IN ('prebooking-submission', 'prebooking-submission-dlq', "
             "'prebooking-processing-dlq', 'prebooking-datalake-dlq')");
    ck_assert_int_eq(harness_wait_sql(sql, 0, 10), 0);
    ck_assert_int_eq(worker_metric(&srv, "prebooking-submission", "failed"), 0);
    ck_assert_int_ge(worker_metric(&srv, "prebooking-submission", "handled"),
                     (long long)(2 + sizeof bad / sizeof *bad));
    stop();
}
END_TEST

/* Sends bodies (JSON texts) into prebooking-submission in one batch as the admin; their message
 * ids into mids, in order. */
static void send_submission_batch(const char *const *bodies, int n, char (*mids)[IDS_UUID_LEN])
{
    json_t *entries = json_array();
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        json_array_append_new(entries, json_pack("{s:s, s:o}", "id", id, "body",
                                                 json_loads(bodies[i], JSON_DECODE_ANY, NULL)));
    }
    json_t *req = json_pack("{s:o}", "entries", entries);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-submission/messages:batch", text, &r);
    free(text);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, buf_str(&r.body));
    json_t *ok = json_object_get(r.json, "successful");
    ck_assert_int_eq(json_array_size(ok), n);
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(ok, (size_t)i);
        int k = atoi(json_str(e, "id") + 1);
        ck_assert(k >= 0 && k < n);
        snprintf(mids[k], IDS_UUID_LEN, "%s", json_str(e, "message_id"));
    }
    response_cleanup(&r);
}

/* Asserts that task id is pending and not taken in (no submission stored yet); its submitted_at
 * into submitted when not NULL. */
static void assert_awaiting(const char *id, char *submitted)
{
    struct response r;
    get_task(&srv, id, &r);
    ck_assert_str_eq(json_str(r.json, "id"), id);
    ck_assert_str_eq(json_str(r.json, "kind"), "prebooking");
    ck_assert_str_eq(json_str(r.json, "status"), "pending");
    assert_timestamp(json_str(r.json, "submitted_at"));
    ck_assert_ptr_null(json_object_get(json_object_get(r.json, "links"), "result"));
    if (submitted)
        snprintf(submitted, 32, "%s", json_str(r.json, "submitted_at"));
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND "
                                  "awaiting_submission AND submission IS NULL",
                                  id),
                     1);
}

/* Makes task id submitted queue's retention and 61 minutes ago. */
static void age_task(const char *id, const char *queue)
{
    ck_assert_int_eq(harness_sqlf("WITH u AS (UPDATE tasks SET submitted_at = now() - "
                                  "make_interval(secs => (SELECT retention_seconds FROM queues "
                                  "WHERE name = '%s')) - interval '61 minutes' WHERE id = '%s' "
                                  "RETURNING 1) SELECT count(*) FROM u",
                                  queue, id),
                     1);
}

/* Only the processing service. */
static void processing_worker(struct config *cfg)
{
    set(cfg, "workers", "prebooking-processing");
}

/* Whether task id is pending and awaiting its submission (SQL, no assertion). */
static bool awaiting(const char *id)
{
    return harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'pending' AND "
                        "awaiting_submission AND submission IS NULL",
                        id) == 1;
}

/* A submission sent straight into the queue is a pending task from the send on: GET
 * /tasks/{message id} answered 404 until a worker took the message in (as long as a backlog
 * lasted, and for good when the queue was purged first). The worker fills that task in; until
 * then a message naming it in prebooking-processing or its dead-letter queue changes nothing. */
START_TEST(a_submission_sent_into_the_queue_is_a_task_at_once)
{
    start(no_workers);
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN], when[64], body[512], body2[512],
        mid[IDS_UUID_LEN], submitted[32];
    create_token(&srv, "app", app);
    create_token(&srv, "service", service);
    when_at(when, sizeof when, ahead(8, 0), "", 0);
    pb_body(body, sizeof body, "aq-1", when);
    send_submission(&srv, app, body, mid);
    assert_awaiting(mid, submitted);
    pb_body(body2, sizeof body2, "aq-2", when);
    const char *bodies[] = {body2, "{\"from\": \"A\"}"};
    char batch[2][IDS_UUID_LEN];
    send_submission_batch(bodies, 2, batch);
    assert_awaiting(batch[0], NULL);
    assert_awaiting(batch[1], NULL);

    /* forged: an event naming the task, and a dead letter naming it */
    char forged[512], forged_event[IDS_UUID_LEN], forged_dead[IDS_UUID_LEN];
    snprintf(forged, sizeof forged,
             "{\"task_id\": \"%s\", \"from\": \"X\", \"to\": \"Y\", \"customer\": \"forger\", "
             "\"when\": \"%s\"}",
             mid, when);
    send_into(&srv, "prebooking-processing", service, forged, forged_event);
    snprintf(forged, sizeof forged, "{\"task_id\": \"%s\"}", mid);
    send_into(&srv, "prebooking-processing-dlq", service, forged, forged_dead);
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    ck_assert(awaiting(mid));
    stop();
    start(processing_worker);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE message_id = '%s' AND receive_count >= 1",
             forged_event);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 15), 1);
    stop();
    ck_assert(awaiting(mid));
    ck_assert_int_eq(prebookings_of_task(mid), 0);
    harness_sqlf("WITH d AS (DELETE FROM messages WHERE message_id IN ('%s', '%s') RETURNING 1) "
                 "SELECT count(*) FROM d",
                 forged_event, forged_dead);

    /* the worker fills the tasks in: the one submitted keeps the time it was sent */
    start(prebooking_workers);
    json_t *t = wait_task(&srv, mid, 15);
    ck_assert_msg(strcmp(json_str(t, "status"), "succeeded") == 0, "%s %s", json_str(t, "status"),
                  json_str(json_object_get(t, "error"), "detail"));
    ck_assert_str_eq(json_str(t, "submitted_at"), submitted);
    json_decref(t);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE task_id = '%s' AND "
                                  "customer = 'aq-1'",
                                  mid),
                     1);
    /* its event (what processing books, what the datalake keeps) says the same time */
    char *event_at =
        harness_sqlf_text("SELECT submission->>'submitted_at' FROM tasks WHERE id = '%s'", mid);
    ck_assert_str_eq(event_at, submitted);
    free(event_at);
    wait_succeeded(&srv, batch[0], NULL);
    free(wait_failed(&srv, batch[1], "Invalid prebooking"));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks WHERE id IN ('%s', '%s', '%s') AND "
                                  "NOT awaiting_submission",
                                  mid, batch[0], batch[1]),
                     3);
    stop();

    /* taken in after a long wait: judged by prebooking-processing's retention from then */
    start(submission_worker);
    char late[IDS_UUID_LEN];
    pb_body(body, sizeof body, "aq-4", when);
    send_submission(&srv, app, body, late);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tasks WHERE id = '%s' AND NOT awaiting_submission AND "
             "taken_in_at IS NOT NULL",
             late);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 15), 1);
    stop();
    age_task(late, "prebooking-processing");
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = "
                                  "'pending'",
                                  late),
                     1);
    harness_sqlf("WITH d AS (DELETE FROM messages m USING tasks t WHERE t.id = '%s' AND "
                 "m.message_id = t.event_id RETURNING 1) SELECT count(*) FROM d",
                 late);

    /* purged before a worker came: pending until prebooking-submission's retention (here longer
     * than prebooking-processing's) and an hour have passed, then failed */
    start(no_workers);
    char gone[IDS_UUID_LEN];
    pb_body(body, sizeof body, "aq-3", when);
    send_submission(&srv, app, body, gone);
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-submission:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    long long keep =
        harness_sqlf("SELECT retention_seconds FROM queues WHERE name = 'prebooking-submission'");
    harness_sqlf("WITH u AS (UPDATE queues SET retention_seconds = (SELECT retention_seconds + "
                 "7200 FROM queues WHERE name = 'prebooking-processing') WHERE name = "
                 "'prebooking-submission' RETURNING 1) SELECT count(*) FROM u");
    age_task(gone, "prebooking-processing");
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    bool kept = awaiting(gone);
    age_task(gone, "prebooking-submission");
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    harness_sqlf("WITH u AS (UPDATE queues SET retention_seconds = %lld WHERE name = "
                 "'prebooking-submission' RETURNING 1) SELECT count(*) FROM u",
                 keep);
    ck_assert_msg(kept, "failed by prebooking-processing's retention");
    char *detail = wait_failed(&srv, gone, "Processing failed");
    ck_assert_msg(strstr(detail, "no message of the task was left"), "%s", detail);
    free(detail);
    stop();
}
END_TEST

/* A send into prebooking-submission and its task are one transaction: a task that cannot be
 * stored (a trigger refuses it) fails the send, and no message is left without its task. */
START_TEST(a_submission_is_sent_with_its_task_or_not_at_all)
{
    start(no_workers);
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION pb_test_refuse_task() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'refused by a test'; END $$"));
    free(harness_sql(harness_db_url(), "CREATE TRIGGER pb_test_refuse_task BEFORE INSERT ON tasks "
                                       "FOR EACH ROW EXECUTE FUNCTION pb_test_refuse_task()"));
    char when[64], body[512], envelope[600];
    when_at(when, sizeof when, ahead(6, 0), "", 0);
    pb_body(body, sizeof body, "at-1", when);
    snprintf(envelope, sizeof envelope, "{\"body\": %s}", body);
    long long before = harness_stored("prebooking-submission");
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-submission/messages", envelope, &r);
    long status = r.status;
    if (status >= 500)
        assert_problem(&r, status);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(), "DROP TRIGGER pb_test_refuse_task ON tasks"));
    free(harness_sql(harness_db_url(), "DROP FUNCTION pb_test_refuse_task()"));
    ck_assert_msg(status >= 500, "a send whose task was refused: %ld", status);
    ck_assert_int_eq(harness_stored("prebooking-submission"), before);
    stop();
}
END_TEST

/* ---- failures and redelivery ----------------------------------------------------------------- */

static atomic_int injected;

/* Fails the first two receives of every tr- customer's event in prebooking-processing. */
static bool fail_twice(const char *worker, const struct mq_message *m)
{
    if (strcmp(worker, "prebooking-processing") != 0 || m->receive_count > 2 || !m->body)
        return false;
    json_t *b = json_loads(m->body, 0, NULL);
    const char *c = json_str(b, "customer");
    bool fail = c && strncmp(c, "tr-", 3) == 0;
    json_decref(b);
    if (fail)
        atomic_fetch_add(&injected, 1);
    return fail;
}

static bool fail_submissions(const char *worker, const struct mq_message *m)
{
    (void)m;
    return strcmp(worker, "prebooking-submission") == 0;
}

/* Sends a valid submission of customer into prebooking-submission (mid: its message id) as if
 * it had been received all but left of the times its queue allows. */
static void send_worn_submission(const char *customer, int left, char *mid)
{
    char service[SECRET_TOKEN_LEN], when[64], body[512];
    create_token(&srv, "service", service);
    when_at(when, sizeof when, ahead(5, 0), "", 0);
    pb_body(body, sizeof body, customer, when);
    send_submission(&srv, service, body, mid);
    ck_assert_int_eq(harness_sqlf("WITH u AS (UPDATE messages SET receive_count = (SELECT "
                                  "max_receive_count - %d FROM queues WHERE name = "
                                  "'prebooking-submission') WHERE message_id = '%s' RETURNING 1) "
                                  "SELECT count(*) FROM u",
                                  left, mid),
                     1);
}

/* A submission sent into the queue that fails on the last attempt the queue allows gets a
 * failed task: polling its message_id answered 404 for ever once it was dead-lettered. */
START_TEST(a_submission_that_cannot_be_taken_in_fails_its_task)
{
    start(no_workers);
    char mid[IDS_UUID_LEN];
    send_worn_submission("gu-1", 1, mid); /* its last attempt comes next */
    struct response r;
    get_task(&srv, mid, &r);
    ck_assert_str_eq(json_str(r.json, "status"), "pending");
    response_cleanup(&r);
    consumer_fault_hook = fail_submissions;
    stop();
    start(submission_worker);
    char sql[200]; /* pending from the send on, failed once the worker has given up */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'failed'",
             mid);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 30), 1);
    char *detail = wait_failed(&srv, mid, "Processing failed");
    ck_assert_msg(strstr(detail, "could not be taken in"), "%s", detail);
    free(detail);
    consumer_fault_hook = NULL;
    stop();
    /* nothing of it is left for a later test's workers */
    harness_sqlf("WITH d AS (DELETE FROM messages WHERE message_id = '%s' RETURNING 1) "
                 "SELECT count(*) FROM d",
                 mid);
}
END_TEST

/* The same when that last attempt ended with its process (no given_up runs): the next receive
 * moves the message to prebooking-submission-dlq, and the sweep makes its task, failed. */
START_TEST(a_submission_whose_last_attempt_died_gets_a_failed_task)
{
    start(no_workers);
    char mid[IDS_UUID_LEN];
    send_worn_submission("gu-2", 0, mid); /* its last attempt has been */
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-submission/messages:receive", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 0);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = 'prebooking-submission-dlq' AND "
                                  "m.message_id = '%s'",
                                  mid),
                     1);
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)")); /* or the server's sweep */
    char *detail = wait_failed(&srv, mid, "Processing failed");
    ck_assert_msg(strstr(detail, "could not be taken in after 5 attempts"), "%s", detail);
    free(detail);
    /* submitted when the message was sent (the task stored then keeps its time); a second
     * sweep changes nothing */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks t JOIN messages m ON m.message_id = "
                                  "t.id WHERE t.id = '%s' AND t.submitted_at BETWEEN m.sent_at "
                                  "AND m.sent_at + interval '5 s' AND NOT t.awaiting_submission",
                                  mid),
                     1);
    long long updated = harness_sqlf(
        "SELECT extract(epoch FROM updated_at) * 1000000 FROM tasks WHERE id = '%s'", mid);
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    ck_assert_int_eq(harness_sqlf("SELECT extract(epoch FROM updated_at) * 1000000 FROM tasks "
                                  "WHERE id = '%s'",
                                  mid),
                     updated);
    /* the submission cursor passes the move once its id is older than the last minutes */
    sweep_after_minutes();
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM sweep_cursors c, messages m WHERE c.name = "
                                  "'prebooking-submission-dead-letters' AND m.message_id = '%s' "
                                  "AND c.after >= m.id",
                                  mid),
                     1);
    stop();
}
END_TEST

START_TEST(transient_failures_are_retried_without_failing_the_task)
{
    start(prebooking_workers);
    atomic_store(&injected, 0);
    consumer_fault_hook = fail_twice;
    char when[64], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(5, 0), "", 0);
    submit(&srv, "tr-1", when, id);
    struct seen seen = {0};
    json_t *t = wait_task_ex(&srv, id, 20, &seen);
    consumer_fault_hook = NULL;
    ck_assert_msg(strcmp(json_str(t, "status"), "succeeded") == 0, "%s: %s", json_str(t, "status"),
                  json_str(json_object_get(t, "error"), "detail"));
    json_decref(t);
    ck_assert_msg(seen.processing, "the task was never seen processing between the retries");
    ck_assert_int_eq(atomic_load(&injected), 2);
    ck_assert_int_ge(harness_sqlf("SELECT attempts FROM tasks WHERE id = '%s'", id), 3);
    ck_assert_int_eq(prebookings_of_task(id), 1);
    ck_assert_int_ge(worker_metric(&srv, "prebooking-processing", "failed"), 2);
    ck_assert_int_eq(events_of("prebooking-processing", id), 0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name = 'prebooking-processing-dlq'"),
        0);
    stop();
}
END_TEST

START_TEST(a_worker_dying_mid_task_is_covered_by_the_lease)
{
    consumer_fault_hook = NULL;
    start(no_workers);
    char when[64], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(6, 0), "", 0);
    submit(&srv, "cr-1", when, id);
    /* "the worker": receives the event with a short lease, marks the task, and dies */
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-processing/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 2, \"wait_seconds\": 5}", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *msgs = json_object_get(r.json, "messages");
    bool mine = false;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i), *body = json_object_get(m, "body");
        json_t *parsed =
            json_is_string(body) ? json_loads(json_string_value(body), 0, NULL) : json_incref(body);
        if (json_str(parsed, "task_id") && strcmp(json_str(parsed, "task_id"), id) == 0) {
            mine = true;
            ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 1);
        }
        json_decref(parsed);
    }
    ck_assert_msg(mine, "the event was not received: %s", buf_str(&r.body));
    response_cleanup(&r);
    double leased = harness_now_s();
    char sql[300];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'processing', attempts = attempts + 1, "
             "updated_at = now() WHERE id = '%s'",
             id);
    free(harness_sql(harness_db_url(), sql));
    get_task(&srv, id, &r);
    ck_assert_str_eq(json_str(r.json, "status"), "processing");
    response_cleanup(&r);
    stop();

    /* the workers take it over once the lease runs out */
    start(prebooking_workers);
    json_t *t = wait_task(&srv, id, 15);
    double took = harness_now_s() - leased;
    ck_assert_str_eq(json_str(t, "status"), "succeeded");
    json_decref(t);
    ck_assert_msg(took >= 1.5, "succeeded %.2f s after the lease of 2 s began", took);
    ck_assert_int_eq(harness_sqlf("SELECT attempts FROM tasks WHERE id = '%s'", id), 2);
    ck_assert_int_eq(prebookings_of_task(id), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM prebooking_submissions WHERE task_id = '%s'",
             id);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    ck_assert_int_eq(events_of("prebooking-processing", id), 0);
    char *result = harness_sqlf_text("SELECT result_id FROM tasks WHERE id = '%s'", id);
    char *updated = harness_sqlf_text("SELECT updated_at FROM tasks WHERE id = '%s'", id);

    /* the same event again, into both queues (a duplicate delivery): nothing changes */
    char *event = harness_sqlf_text("SELECT submission::text FROM prebooking_submissions "
                                    "WHERE task_id = '%s'",
                                    id);
    ck_assert_ptr_nonnull(event);
    char *envelope = malloc(strlen(event) + 32);
    sprintf(envelope, "{\"body\": %s}", event);
    for (int i = 0; i < 2; i++) {
        harness_admin(&srv, "POST", "/queues/prebooking-processing/messages", envelope, &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
        harness_admin(&srv, "POST", "/queues/prebooking-datalake/messages", envelope, &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    free(envelope);
    free(event);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name IN ('prebooking-processing', 'prebooking-datalake')");
    ck_assert_int_eq(harness_wait_sql(sql, 0, 10), 0);
    ck_assert_int_eq(prebookings_of_task(id), 1);
    ck_assert_int_eq(submissions_of_task(id), 1);
    char *result2 = harness_sqlf_text("SELECT result_id FROM tasks WHERE id = '%s'", id);
    char *updated2 = harness_sqlf_text("SELECT updated_at FROM tasks WHERE id = '%s'", id);
    ck_assert_str_eq(result2, result);
    ck_assert_str_eq(updated2, updated);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'succeeded'", id), 1);
    free(result);
    free(result2);
    free(updated);
    free(updated2);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name IN ('prebooking-processing-dlq', "
                     "'prebooking-datalake-dlq')"),
        0);
    stop();
}
END_TEST

/* What the engine's dead-letter move does to the processing message of task %s. */
#define MOVE_TO_DLQ_SQL                                                     \
    "UPDATE messages SET queue_id = (SELECT id FROM queues WHERE name = "   \
    "'prebooking-processing-dlq'), receive_count = 5, visible_at = now(), " \
    "id = nextval('message_ids') WHERE queue_id = (SELECT id FROM queues "  \
    "WHERE name = 'prebooking-processing') AND body LIKE '%%%s%%'"

/* Is the dead-letter sweep's cursor before id %lld? */
#define CURSOR_BEFORE \
    "SELECT count(*) FROM sweep_cursors WHERE name = 'prebooking-dead-letters' AND after < %lld"

/* The last attempt the queue allows ends with its process (no given_up runs): at the lease's
 * end the message goes to prebooking-processing-dlq, and the sweep fails the task, which would
 * otherwise stay "processing" for ever. */
START_TEST(a_task_whose_last_attempt_died_fails_once_dead_lettered)
{
    consumer_fault_hook = NULL;
    start(no_workers);
    char when[64], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(6, 0), "", 0);
    submit(&srv, "cr-dead", when, id);
    harness_deliver_outbox(); /* the event is in prebooking-processing */
    char sql[600];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET status = 'processing', attempts = 5 WHERE id = '%s'", id);
    free(harness_sql(harness_db_url(), sql));
    snprintf(sql, sizeof sql, MOVE_TO_DLQ_SQL, id);
    free(harness_sql(harness_db_url(), sql));
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    struct response r;
    get_task(&srv, id, &r);
    ck_assert_str_eq(json_str(r.json, "status"), "failed");
    const char *detail = json_str(json_object_get(r.json, "error"), "detail");
    ck_assert_msg(detail && strstr(detail, "after 5 attempts"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    /* the cursor stays before the moves of the last minutes (one with a lower id may still be
     * open) and passes them once they are older (every move of the queue so far, here) */
    long long moved = harness_sqlf("SELECT m.id FROM messages m JOIN queues q ON q.id = "
                                   "m.queue_id WHERE q.name = 'prebooking-processing-dlq' AND "
                                   "m.body LIKE '%%%s%%'",
                                   id);
    ck_assert_int_eq(harness_sqlf(CURSOR_BEFORE, moved), 1);
    /* someone reading the dead-letter queue does not hold the cursor back (025 judged a move's
     * age by visible_at, which a receive moves on) */
    struct response got;
    harness_admin(&srv, "POST", "/queues/prebooking-processing-dlq/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 600}", &got);
    ck_assert_int_ge(json_array_size(json_object_get(got.json, "messages")), 1);
    response_cleanup(&got);
    sweep_after_minutes();
    ck_assert_int_eq(harness_sqlf(CURSOR_BEFORE, moved), 0);
    stop();
}
END_TEST

/* The event id task %s keeps equals the message id of its event in prebooking-processing. */
static void assert_event_id_kept(const char *id)
{
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks t JOIN messages m ON m.message_id "
                                  "= t.event_id JOIN queues q ON q.id = m.queue_id AND q.name = "
                                  "'prebooking-processing' WHERE t.id = '%s' AND m.body LIKE "
                                  "'%%%s%%'",
                                  id, id),
                     1);
}

/* A message someone sent into prebooking-processing-dlq naming an open task does not fail it:
 * only the task's own event, dead-lettered, does (sql/045). Both ways a task is published keep
 * the event's id: a POST (one statement) and a submission sent into the queue (publish, then
 * the id). */
START_TEST(a_dead_letter_someone_sent_fails_no_task)
{
    consumer_fault_hook = NULL;
    start(submission_worker);
    char service[SECRET_TOKEN_LEN];
    create_token(&srv, "service", service);
    char when[64], posted[IDS_UUID_LEN], queued[IDS_UUID_LEN], body[512];
    when_at(when, sizeof when, ahead(6, 30), "", 0);
    submit(&srv, "dl-posted", when, posted);
    when_at(when, sizeof when, ahead(8, 30), "", 0);
    snprintf(body, sizeof body,
             "{\"from-location\": \"Pier\", \"to-location\": \"Airport\", "
             "\"customer-id\": \"dl-queued\", \"when\": \"%s\"}",
             when);
    send_submission(&srv, service, body, queued);
    char sql[300];
    /* taken in by the worker (the task itself is there from the send on) */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tasks WHERE id = '%s' AND event_id IS NOT NULL",
             queued);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 15), 1);
    harness_deliver_outbox(); /* both events are in prebooking-processing */
    assert_event_id_kept(posted);
    assert_event_id_kept(queued);
    const char *ids[] = {posted, queued};
    for (int i = 0; i < 2; i++) {
        char forged[128];
        snprintf(forged, sizeof forged, "{\"body\": {\"task_id\": \"%s\"}}", ids[i]);
        struct response r;
        harness_request(&srv, "POST", "/queues/prebooking-processing-dlq/messages", service, forged,
                        NULL, NULL, &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    sweep_after_minutes(); /* the cursor reaches the forged messages */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = "
                                      "'pending'",
                                      ids[i]),
                         1);
    /* the task's own event, dead-lettered, still fails it */
    char move[600];
    snprintf(move, sizeof move, MOVE_TO_DLQ_SQL, posted);
    free(harness_sql(harness_db_url(), move));
    sweep_after_minutes();
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'failed'", posted),
        1);
    stop();
}
END_TEST

/* A task whose message is gone (here: the queue purged) fails once it is older than the
 * processing queue's retention, where it stayed pending for ever; a younger one stays open. */
START_TEST(a_task_whose_message_is_gone_fails_after_the_retention)
{
    consumer_fault_hook = NULL;
    start(no_workers);
    char when[64], old[IDS_UUID_LEN], young[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(7, 0), "", 0);
    submit(&srv, "or-old", when, old);
    submit(&srv, "or-young", when, young);
    harness_deliver_outbox();
    struct response r;
    harness_admin(&srv, "POST", "/queues/prebooking-processing:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    char sql[300];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET submitted_at = now() - make_interval(secs => (SELECT "
             "retention_seconds FROM queues WHERE name = 'prebooking-processing')) - interval "
             "'61 minutes' WHERE id = '%s'",
             old);
    free(harness_sql(harness_db_url(), sql));
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    char *detail = wait_failed(&srv, old, "Processing failed");
    ck_assert_msg(strstr(detail, "no message of the task was left"), "%s", detail);
    free(detail);
    get_task(&srv, young, &r);
    ck_assert_str_eq(json_str(r.json, "status"), "pending");
    response_cleanup(&r);
    stop();
}
END_TEST

/* A dead-letter move whose id is lower but which commits after a later one is still seen: the
 * sweep's cursor does not pass messages moved in the last minutes (ids are taken at insert,
 * not at commit). */
START_TEST(a_dead_letter_move_that_commits_late_still_fails_its_task)
{
    consumer_fault_hook = NULL;
    start(no_workers);
    char when[64], early[IDS_UUID_LEN], late[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(6, 0), "", 0);
    /* recent moves of earlier tests would hold the cursor back whatever the rule */
    free(harness_sql(harness_db_url(), "DELETE FROM messages WHERE queue_id = (SELECT id FROM "
                                       "queues WHERE name = 'prebooking-processing-dlq')"));
    submit(&srv, "cr-early", when, early);
    when_at(when, sizeof when, ahead(9, 0), "", 0);
    submit(&srv, "cr-late", when, late);
    harness_deliver_outbox(); /* the events are in prebooking-processing */
    char sql[600];
    /* the first move takes its id and stays open; the second takes a higher id and commits */
    PGconn *first = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(first), CONNECTION_OK);
    PQclear(PQexec(first, "BEGIN"));
    snprintf(sql, sizeof sql, MOVE_TO_DLQ_SQL " RETURNING id", early);
    PGresult *r = PQexec(first, sql);
    ck_assert_int_eq(PQntuples(r), 1);
    long long early_id = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    snprintf(sql, sizeof sql, MOVE_TO_DLQ_SQL, late);
    free(harness_sql(harness_db_url(), sql));
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    /* the cursor has not passed the move still open */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM sweep_cursors WHERE name = "
                                  "'prebooking-dead-letters' AND after < %lld",
                                  early_id),
                     1);
    PQclear(PQexec(first, "COMMIT"));
    PQfinish(first);
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks WHERE id IN ('%s', '%s') "
                                  "AND status = 'failed'",
                                  early, late),
                     2);
    stop();
}
END_TEST

/* ---- back-pressure --------------------------------------------------------------------------- */

#define BACKLOG 50

START_TEST(the_backlog_shows_and_drains)
{
    consumer_fault_hook = NULL;
    start(no_workers);
    struct response r;
    const char *queues[] = {"prebooking-processing", "prebooking-datalake"};
    for (int i = 0; i < 2; i++) {
        char path[80];
        snprintf(path, sizeof path, "/queues/%s:purge", queues[i]);
        harness_admin(&srv, "POST", path, NULL, &r);
        ck_assert_int_eq(r.status, 204);
        response_cleanup(&r);
    }
    char when[64], list[BACKLOG * 40 + 8] = "", id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(7, 0), "", 0);
    for (int i = 0; i < BACKLOG; i++) {
        char customer[16];
        snprintf(customer, sizeof customer, "bp-%02d", i);
        submit(&srv, customer, when, id);
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s'%s'", n ? ", " : "", id);
    }
    harness_deliver_outbox();
    harness_admin(&srv, "GET", "/queues/prebooking-processing", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *stats = json_object_get(r.json, "stats");
    ck_assert_msg(json_integer_value(json_object_get(stats, "available")) == BACKLOG, "%s",
                  buf_str(&r.body));
    ck_assert_int_eq(json_integer_value(json_object_get(stats, "in_flight")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(stats, "delayed")), 0);
    ck_assert_int_ge(json_integer_value(json_object_get(stats, "oldest_age_seconds")), 0);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM open_tasks WHERE id IN (%s)", list),
                     BACKLOG);
    /* the sweeper measures at most every 5 s */
    const char *sample = "rydes_queue_messages{queue=\"prebooking-processing\","
                         "state=\"available\"}";
    long long depth = -1;
    for (double until = harness_now_s() + 10;
         (depth = metric(&srv, sample)) != BACKLOG && harness_now_s() < until;)
        harness_sleep_ms(200);
    ck_assert_msg(depth == BACKLOG, "%s %lld", sample, depth);
    stop();

    /* four consumers drain it */
    start(four_consumers);
    char sql[BACKLOG * 40 + 200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tasks WHERE status = 'succeeded' AND id IN (%s)", list);
    ck_assert_int_eq(harness_wait_sql(sql, BACKLOG, 30), BACKLOG);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM open_tasks WHERE id IN (%s)", list), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM prebookings WHERE task_id IN (%s)", list),
                     BACKLOG);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM prebooking_submissions WHERE task_id IN (%s)",
             list);
    ck_assert_int_eq(harness_wait_sql(sql, BACKLOG, 10), BACKLOG);
    harness_admin(&srv, "GET", "/queues/prebooking-processing", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    stats = json_object_get(r.json, "stats");
    ck_assert_int_eq(json_integer_value(json_object_get(stats, "available")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(stats, "in_flight")), 0);
    response_cleanup(&r);
    ck_assert_int_ge(worker_metric(&srv, "prebooking-processing", "handled"), BACKLOG);
    stop();
}
END_TEST

/* Prometheus wants one sample per series: the consumers of one worker add up to one line. */
START_TEST(worker_metrics_have_one_series_per_worker)
{
    start(four_consumers);
    char when[64], id[IDS_UUID_LEN];
    when_at(when, sizeof when, ahead(9, 0), "", 0);
    submit(&srv, "wm-1", when, id);
    wait_succeeded(&srv, id, NULL);
    const char *workers[] = {"prebooking-processing", "prebooking-submission",
                             "prebooking-datalake"};
    for (int i = 0; i < 3; i++) {
        int handled_lines = 0, failed_lines = 0;
        /* a worker counts a message just after its commit, which the task's status shows */
        long long handled = worker_metric_lines(&srv, workers[i], "handled", &handled_lines);
        for (int tries = 0; handled < (i == 1 ? 0 : 1) && tries < 50; tries++) {
            harness_sleep_ms(100);
            handled = worker_metric_lines(&srv, workers[i], "handled", &handled_lines);
        }
        worker_metric_lines(&srv, workers[i], "failed", &failed_lines);
        ck_assert_msg(handled_lines == 1 && failed_lines == 1,
                      "/metrics has %d handled and %d failed samples of worker %s (one each "
                      "expected: duplicate series break the scrape)",
                      handled_lines, failed_lines, workers[i]);
        ck_assert_int_ge(handled, i == 1 ? 0 : 1);
    }
    stop();
}
END_TEST

/* ---- roles and unknown ids ------------------------------------------------------------------- */

static long status_of(struct harness_server *s, const char *method, const char *path,
                      const char *token, const char *body)
{
    struct response r;
    harness_request(s, method, path, token, body, NULL, NULL, &r);
    long st = r.status;
    if (st >= 400)
        assert_problem(&r, st);
    if (st == 405) {
        char allow[64];
        ck_assert_msg(response_header(&r, "Allow", allow, sizeof allow), "405 without Allow");
    }
    response_cleanup(&r);
    return st;
}

START_TEST(prebookings_need_the_app_role_and_unknown_ids_are_404)
{
    consumer_fault_hook = NULL;
    start(prebooking_workers);
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN], body[512], when[64], id[IDS_UUID_LEN],
        pid[IDS_UUID_LEN], path[80], ppath[80];
    create_token(&srv, "app", app);
    create_token(&srv, "service", service);
    when_at(when, sizeof when, ahead(8, 0), "", 0);
    pb_body(body, sizeof body, "ro-1", when);
    const char *zero = "/tasks/00000000-0000-4000-8000-000000000000";
    long long tasks = harness_sqlf("SELECT count(*) FROM tasks");
    ck_assert_int_eq(status_of(&srv, "POST", "/prebookings", NULL, body), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/prebookings", "not-a-token", body), 401);
    ck_assert_int_eq(
        status_of(&srv, "POST", "/prebookings", "rydes_0000000000000000000000000000", body), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/submit-ride-prebooking", NULL, body), 401);
    ck_assert_int_eq(status_of(&srv, "GET", zero, NULL, NULL), 401);
    ck_assert_int_eq(
        status_of(&srv, "GET", "/prebookings/00000000-0000-4000-8000-000000000000", NULL, NULL),
        401);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tasks"), tasks);

    submit_as(&srv, "/prebookings", app, body, id);
    snprintf(path, sizeof path, "/tasks/%s", id);
    ck_assert_int_eq(status_of(&srv, "GET", path, app, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", path, service, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", path, NULL, NULL), 401);
    wait_succeeded(&srv, id, pid);
    snprintf(ppath, sizeof ppath, "/prebookings/%s", pid);
    ck_assert_int_eq(status_of(&srv, "GET", ppath, app, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", ppath, service, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", ppath, NULL, NULL), 401);
    ck_assert_int_eq(status_of(&srv, "GET", path, app, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", path, service, NULL), 200);
    /* the other roles may submit too, and the alias works for apps */
    when_at(when, sizeof when, ahead(8, 120), "", 0);
    pb_body(body, sizeof body, "ro-2", when);
    submit_as(&srv, "/submit-ride-prebooking", app, body, id);
    when_at(when, sizeof when, ahead(8, 240), "", 0);
    pb_body(body, sizeof body, "ro-3", when);
    submit_as(&srv, "/prebookings", service, body, id);
    /* apps poll, they do not manage; but they may use the direct path of API.md: sending a
     * prebooking straight into prebooking-submission (and into no other queue) */
    ck_assert_int_eq(
        status_of(&srv, "POST", "/queues/prebooking-processing/messages:receive", app, "{}"), 403);
    ck_assert_int_eq(
        status_of(&srv, "POST", "/queues/prebooking-processing/messages", app, "{\"body\": \"x\"}"),
        403);
    ck_assert_int_eq(status_of(&srv, "POST", "/queues/prebooking-submission/messages", app,
                               "{\"body\": {\"from\": \"a\"}}"),
                     201);
    ck_assert_int_eq(status_of(&srv, "POST", "/queues/prebooking-processing:purge", service, NULL),
                     403);

    /* unknown and malformed ids */
    char other[80];
    snprintf(other, sizeof other, "/prebookings/%s", id); /* a task id is no prebooking id */
    const char *missing[] = {zero,
                             "/tasks/not-a-uuid",
                             "/tasks/00000000-0000-4000-8000-00000000000",
                             "/tasks/00000000-0000-4000-8000-0000000000000",
                             "/tasks/%27%20OR%201%3D1--",
                             "/prebookings/00000000-0000-4000-8000-000000000000",
                             "/prebookings/not-a-uuid",
                             other};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++)
        ck_assert_msg(status_of(&srv, "GET", missing[i], app, NULL) == 404, "GET %s", missing[i]);
    /* an id that is not validly percent-encoded is a 400 naming it */
    ck_assert_int_eq(status_of(&srv, "GET", "/prebookings/%00", app, NULL), 400);
    snprintf(other, sizeof other, "/tasks/%s", pid); /* nor the other way round */
    ck_assert_int_eq(status_of(&srv, "GET", other, app, NULL), 404);
    /* other methods */
    ck_assert_int_eq(status_of(&srv, "DELETE", path, app, NULL), 405);
    ck_assert_int_eq(status_of(&srv, "PUT", ppath, app, "{}"), 405);
    ck_assert_int_eq(status_of(&srv, "GET", "/submit-ride-prebooking", app, NULL), 405);
    stop();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prebookings");
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_checked_fixture(api, setup, teardown);
    tcase_add_test(api, lifecycle_from_202_to_succeeded);
    tcase_add_test(api, invalid_submissions_are_400_naming_the_field_and_change_nothing);
    tcase_add_test(api, no_task_without_its_event);
    tcase_add_test(api, no_task_when_nothing_would_process_it);
    tcase_add_test(api, prebookings_need_the_app_role_and_unknown_ids_are_404);
    suite_add_tcase(s, api);
    TCase *services = tcase_create("services");
    tcase_set_timeout(services, 90);
    tcase_add_checked_fixture(services, setup, teardown);
    tcase_add_test(services, a_customer_cannot_hold_two_prebookings_within_the_slot);
    tcase_add_test(services, a_task_processed_after_its_pickup_time_fails);
    tcase_add_test(services, a_task_books_what_was_submitted_not_what_a_message_says);
    tcase_add_test(services, concurrent_submissions_of_one_slot_make_one_prebooking);
    tcase_add_test(services, a_retry_with_the_same_key_finds_the_first_task);
    tcase_add_test(services, a_retry_after_the_pickup_time_finds_the_first_task);
    tcase_add_test(services, submissions_sent_into_the_queue_become_tasks);
    tcase_add_test(services, a_submission_sent_into_the_queue_is_a_task_at_once);
    tcase_add_test(services, a_submission_is_sent_with_its_task_or_not_at_all);
    tcase_add_test(services, transient_failures_are_retried_without_failing_the_task);
    tcase_add_test(services, a_submission_that_cannot_be_taken_in_fails_its_task);
    tcase_add_test(services, a_submission_whose_last_attempt_died_gets_a_failed_task);
    tcase_add_test(services, a_worker_dying_mid_task_is_covered_by_the_lease);
    tcase_add_test(services, a_task_whose_last_attempt_died_fails_once_dead_lettered);
    tcase_add_test(services, a_dead_letter_move_that_commits_late_still_fails_its_task);
    tcase_add_test(services, a_dead_letter_someone_sent_fails_no_task);
    tcase_add_test(services, a_task_whose_message_is_gone_fails_after_the_retention);
    tcase_add_test(services, the_backlog_shows_and_drains);
    tcase_add_test(services, worker_metrics_have_one_series_per_worker);
    suite_add_tcase(s, services);
    return harness_run(s);
}
