/* Integration: fare collection, the orchestrated saga, end to end against the built-in payment
 * simulator, whose ledger (payment_ledger, view fare_ledger) is the judge of every path: money
 * taken must be credited or refunded, every pre-authorization charged or voided, every gateway
 * operation recorded once per idempotency key, every outcome published once on fare-processing
 * (fare-succeeded / fare-failed by is_successful). A ride through customer-accounting (the
 * pending placeholder of GET /rides/{id}/fare, 404s, then the saga's six steps done); POST /fares
 * with its validation table naming the fields, 202 with Location and Content-Location, the same
 * fareId again (202 with the same fare, 409 with other details), GET /fares/{id} and its 404, and
 * no card number, expiry or request body stored in any table, logged or echoed; a POST /fares
 * fareId cannot take a ride's fare away from it (nor reuse a started one). Every failure suffix
 * with exactly the right compensations, steps, attempts and ledger rows (and a flaky customer who
 * is also declined, compensations retried); _fail_credit_fail_refund left to an operator after six
 * refunds (stuck_sagas, needs_operator, the metric, an unbalanced ledger); _flaky retried to
 * success. A crash (saga_crash_hook) after every step, forward and while compensating, resumed
 * after the one-second lease without a double charge or a second publish; an executor that outlives
 * its lease; a `rydes worker fare-saga` process killed mid-flight; two gateways sharing 40 mixed
 * fares; fares posted while no executor runs finished after a restart. */
#include "harness.h"

#include "rydes/ids.h"
#include "rydes/log.h"
#include "rydes/saga.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CARD_DIGITS    "4000056655665556"
#define CARD_FORMATTED "4000 0566 5566 5556"
#define CARD_LAST4     "5556"
#define CARD_EXPIRY    "11/2097"
#define NSTEPS         6
#define FINAL_S        15 /* how long a saga may take to finish (the operator case: ~6 s) */

static const char *const step_names[NSTEPS] = {"register",       "preauthorize", "charge",
                                               "credit_account", "complete",     "publish"};

static struct harness_server srv; /* the api tests' server: no saga executor runs */

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* ---- settings -------------------------------------------------------------------------------- */

static void set(struct config *cfg, const char *name, const char *value)
{
    struct config_error err;
    ck_assert_msg(config_set_flag(cfg, name, value, &err), "setting %s=%s", name, value);
}

static void saga_workers(struct config *cfg)
{
    set(cfg, "workers", "fare-saga");
    set(cfg, "saga-lease-seconds", "1");
}

static void ride_and_saga_workers(struct config *cfg)
{
    set(cfg, "workers", "customer-accounting,fare-saga");
    set(cfg, "saga-lease-seconds", "1");
}

static void all_workers(struct config *cfg)
{
    set(cfg, "workers", "all");
    set(cfg, "saga-lease-seconds", "1");
}

static void no_workers(struct config *cfg)
{
    set(cfg, "workers", "none");
}

static void four_executors(struct config *cfg)
{
    saga_workers(cfg);
    set(cfg, "saga-concurrency", "4");
}

/* The servers the saga tests start, static so that a failed check (which leaves its test at
 * once) leaves nothing running behind it: the teardown stops what is still up. */
static struct harness_server gws[2];
static bool gw_up[2];
static pid_t worker_pid; /* a `rydes worker` process of a test, while it runs */

static void up(struct harness_server *s, void (*tweak)(struct config *cfg))
{
    harness_start(s, tweak);
    gw_up[s - gws] = true;
}

static void down(struct harness_server *s)
{
    if (gw_up[s - gws]) {
        gw_up[s - gws] = false;
        harness_stop(s);
    }
}

static void saga_teardown(void)
{
    if (worker_pid > 0) {
        kill(worker_pid, SIGKILL);
        waitpid(worker_pid, NULL, 0);
        worker_pid = 0;
    }
    down(&gws[1]);
    down(&gws[0]);
    saga_crash_hook = NULL;
}

/* ---- SQL and time ---------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The first value of the SQL printf-formatted from fmt (caller frees), or NULL. The values
 * formatted in are the tests' own (fare ids, customers): no quoting needed. */
static char *sqlf_text(const char *fmt, ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof sql);
    return harness_sql(harness_db_url(), sql);
}

/* The first value of the formatted SQL as an integer; asserts there is a row. */
static long long sqlf(const char *fmt, ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof sql);
    char *v = harness_sql(harness_db_url(), sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    long long x = atoll(v);
    free(v);
    return x;
}

/* Polls sql (an integer query) every 100 ms until it gives want or timeout_s passed; returns
 * the last value. */
static long long wait_sql(const char *sql, long long want, double timeout_s)
{
    double until = now_s() + timeout_s;
    long long v;
    while ((v = sqlf("%s", sql)) != want && now_s() < until)
        harness_sleep_ms(100);
    return v;
}

/* Ledger rows of fare of kind. */
static long long ledger(const char *fare, const char *kind)
{
    return sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND kind = '%s'", fare,
                kind);
}

/* Does the fare balance in view fare_ledger: charged = credited + refunded? */
static bool balanced(const char *fare)
{
    return sqlf("SELECT count(*) FROM fare_ledger WHERE fare_id = '%s' AND balanced", fare) == 1;
}

/* Was every pre-authorization of fare charged or voided? */
static bool no_open_preauth(const char *fare)
{
    return sqlf("SELECT count(*) FROM fare_ledger WHERE fare_id = '%s' AND "
                "preauths <= voids + (SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' "
                "AND kind = 'charge')",
                fare, fare) == 1;
}

/* Messages of queue (any state) published for fare (attribute fare_id). */
static long long published(const char *queue, const char *fare)
{
    return sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                "WHERE q.name = '%s' AND m.attributes->'fare_id'->>'value' = '%s'",
                queue, fare);
}

/* The step columns of fare at position: "status attempts compensation_attempts". */
static void step_row(const char *fare, int position, char *out, size_t n)
{
    char *v = sqlf_text("SELECT status || ' ' || attempts || ' ' || compensation_attempts "
                        "FROM saga_steps WHERE fare_id = '%s' AND position = %d",
                        fare, position);
    ck_assert_msg(v != NULL, "fare %s has no step %d", fare, position);
    snprintf(out, n, "%s", v);
    free(v);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* The value of the metric sample whose line starts with sample (name and labels) on s; -1 when
 * there is no such line. */
static long long metric(struct harness_server *s, const char *sample)
{
    struct response r;
    harness_request(s, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = -1;
    size_t n = strlen(sample);
    for (const char *line = buf_str(&r.body); line && *line;) {
        if (strncmp(line, sample, n) == 0 && line[n] == ' ') {
            v = atoll(line + n + 1);
            break;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    response_cleanup(&r);
    return v;
}

/* A valid POST /fares body; amount is JSON text ("20", "\"$20.00\""). Caller frees. */
static char *fare_body(const char *fare_id, const char *customer, const char *amount)
{
    json_t *a = json_loads(amount, JSON_DECODE_ANY, NULL);
    ck_assert_msg(a != NULL, "bad amount %s", amount);
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "customerId", customer, "fareId", fare_id,
                  "fareAmount", a, "cc", CARD_FORMATTED, "expiryDate", CARD_EXPIRY, "cvv", "737");
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static void post_fares(struct harness_server *s, const char *body, struct response *r)
{
    harness_request(s, "POST", "/fares", HARNESS_ADMIN_TOKEN, body, NULL, NULL, r);
}

/* POSTs a fare through s and asserts the 202. */
static void start_fare(struct harness_server *s, const char *fare_id, const char *customer,
                       const char *amount)
{
    char *body = fare_body(fare_id, customer, amount);
    struct response r;
    post_fares(s, body, &r);
    ck_assert_msg(r.status == 202, "POST /fares %s: %ld %s", body, r.status, buf_str(&r.body));
    free(body);
    response_cleanup(&r);
}

/* GET path on s as admin: the 200 body (a new reference). */
static json_t *get_json(struct harness_server *s, const char *path)
{
    struct response r;
    harness_admin(s, "GET", path, NULL, &r);
    ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, buf_str(&r.body));
    ck_assert_ptr_nonnull(r.json);
    json_t *j = json_incref(r.json);
    response_cleanup(&r);
    return j;
}

static bool is_final(json_t *fare)
{
    const char *st = json_str(fare, "status");
    return st && (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0);
}

/* Polls path (a fare) until its status is final; returns it (a new reference). */
static json_t *wait_final(struct harness_server *s, const char *path, double timeout_s)
{
    double until = now_s() + timeout_s;
    for (;;) {
        json_t *f = get_json(s, path);
        if (is_final(f))
            return f;
        if (now_s() > until) {
            char *text = json_dumps(f, JSON_COMPACT);
            json_decref(f);
            char copy[4096];
            snprintf(copy, sizeof copy, "%s", text);
            free(text);
            ck_abort_msg("%s not final after %.0f s: %s", path, timeout_s, copy);
        }
        json_decref(f);
        harness_sleep_ms(100);
    }
}

static json_t *wait_fare(struct harness_server *s, const char *fare_id, double timeout_s)
{
    char path[128];
    snprintf(path, sizeof path, "/fares/%s", fare_id);
    return wait_final(s, path, timeout_s);
}

/* Waits (SQL) until every fare whose id starts with prefix is final; asserts there are n. */
static void wait_all_final(const char *prefix, long long n, double timeout_s)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM fares WHERE id LIKE '%s%%' AND status IN ('succeeded', "
             "'failed')",
             prefix);
    long long got = wait_sql(sql, n, timeout_s);
    ck_assert_msg(got == n, "%lld of %lld fares %s* final after %.0f s", got, n, prefix, timeout_s);
}

static void assert_timestamp(const char *ts)
{
    ck_assert_ptr_nonnull(ts);
    ck_assert_msg(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts);
}

/* Checks the shape of a fare representation and its steps against want (one status each). */
static void assert_fare(json_t *f, const char *fare_id, const char *ride_id, double amount,
                        const char *status, const char *const want[NSTEPS])
{
    char *text = json_dumps(f, JSON_COMPACT);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", text);
    free(text);
    ck_assert_msg(json_is_object(f), "%s", copy);
    ck_assert_msg(json_str(f, "fare_id") && strcmp(json_str(f, "fare_id"), fare_id) == 0, "%s",
                  copy);
    json_t *ride = json_object_get(f, "ride_id");
    if (ride_id)
        ck_assert_msg(json_is_string(ride) && strcmp(json_string_value(ride), ride_id) == 0, "%s",
                      copy);
    else
        ck_assert_msg(ride == NULL || json_is_null(ride), "%s", copy);
    ck_assert_msg(json_is_number(json_object_get(f, "amount")) &&
                      json_number_value(json_object_get(f, "amount")) == amount,
                  "amount: %s", copy);
    ck_assert_msg(strcmp(json_str(f, "status"), status) == 0, "status %s expected: %s", status,
                  copy);
    ck_assert_msg(json_is_boolean(json_object_get(f, "needs_operator")), "%s", copy);
    json_t *links = json_object_get(f, "links");
    char self[128], ride_link[80];
    snprintf(self, sizeof self, "/fares/%s", fare_id);
    ck_assert_msg(json_str(links, "self") && strcmp(json_str(links, "self"), self) == 0, "%s",
                  copy);
    if (ride_id) {
        snprintf(ride_link, sizeof ride_link, "/rides/%s", ride_id);
        ck_assert_msg(json_str(links, "ride") && strcmp(json_str(links, "ride"), ride_link) == 0,
                      "%s", copy);
    } else {
        ck_assert_msg(json_object_get(links, "ride") == NULL, "%s", copy);
    }
    json_t *steps = json_object_get(f, "steps");
    ck_assert_msg(json_array_size(steps) == NSTEPS, "%s", copy);
    for (int i = 0; i < NSTEPS; i++) {
        json_t *s = json_array_get(steps, (size_t)i);
        ck_assert_msg(strcmp(json_str(s, "name"), step_names[i]) == 0, "step %d: %s", i, copy);
        ck_assert_msg(strcmp(json_str(s, "status"), want[i]) == 0, "step %s: %s expected in %s",
                      step_names[i], want[i], copy);
        ck_assert_msg(json_is_integer(json_object_get(s, "attempts")), "%s", copy);
        json_t *d = json_object_get(s, "detail");
        ck_assert_msg(json_is_string(d) || json_is_null(d), "%s", copy);
        json_t *started = json_object_get(s, "started_at"),
               *finished = json_object_get(s, "finished_at");
        ck_assert_msg(json_is_string(started) || json_is_null(started), "%s", copy);
        ck_assert_msg(json_is_string(finished) || json_is_null(finished), "%s", copy);
        if (strcmp(want[i], "pending") == 0) {
            ck_assert_msg(json_is_null(finished), "%s", copy);
        } else if (strcmp(want[i], "skipped") != 0) {
            /* done, failed, compensated: it ran, and when */
            assert_timestamp(json_string_value(started));
            assert_timestamp(json_string_value(finished));
            ck_assert_msg(strcmp(json_string_value(started), json_string_value(finished)) <= 0,
                          "%s", copy);
        }
    }
}

/* The attempts the representation shows for step name of f. */
static long long attempts_of(json_t *f, const char *name)
{
    json_t *steps = json_object_get(f, "steps");
    for (size_t i = 0; i < json_array_size(steps); i++)
        if (strcmp(json_str(json_array_get(steps, i), "name"), name) == 0)
            return json_integer_value(json_object_get(json_array_get(steps, i), "attempts"));
    ck_abort_msg("no step %s", name);
    return -1;
}

/* The one message published for fare in queue: its body and is_successful attribute. */
static void assert_outcome_message(const char *queue, const char *fare, const char *customer,
                                   const char *outcome)
{
    ck_assert_msg(published(queue, fare) == 1, "%s: %lld messages for %s", queue,
                  published(queue, fare), fare);
    char *v = sqlf_text("SELECT m.attributes->'is_successful'->>'value' FROM messages m JOIN "
                        "queues q ON q.id = m.queue_id WHERE q.name = '%s' AND "
                        "m.attributes->'fare_id'->>'value' = '%s'",
                        queue, fare);
    ck_assert_str_eq(v, strcmp(outcome, "succeeded") == 0 ? "true" : "false");
    free(v);
    /* the body as a consumer receives it: peek the queue */
    char *body = sqlf_text(
        "SELECT coalesce(p.body, m.body) FROM messages m JOIN queues q ON q.id = m.queue_id "
        "LEFT JOIN payloads p ON p.id = m.payload_id WHERE q.name = '%s' AND "
        "m.attributes->'fare_id'->>'value' = '%s'",
        queue, fare);
    ck_assert_ptr_nonnull(body);
    json_t *b = json_loads(body, 0, NULL);
    ck_assert_msg(b != NULL, "body not JSON: %s", body);
    free(body);
    bool ok = json_str(b, "fare_id") && strcmp(json_str(b, "fare_id"), fare) == 0 &&
              json_str(b, "customer") && strcmp(json_str(b, "customer"), customer) == 0 &&
              json_str(b, "outcome") && strcmp(json_str(b, "outcome"), outcome) == 0 &&
              json_is_number(json_object_get(b, "amount"));
    json_decref(b);
    ck_assert_msg(ok, "the published body of %s", fare);
}

/* ---- GET /rides/{id}/fare through customer-accounting -----------------------------------------
 */

static void make_ride(struct harness_server *s, const char *customer, const char *fare, char *id)
{
    char body[400];
    snprintf(body, sizeof body,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s\", "
             "\"duration\": 600, \"distance\": 12.5, \"fare\": %s}",
             customer, fare);
    struct response r;
    harness_request(s, "POST", "/rides", HARNESS_ADMIN_TOKEN, body, NULL, NULL, &r);
    ck_assert_msg(r.status == 201, "POST /rides %s: %ld %s", body, r.status, buf_str(&r.body));
    snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "id"));
    response_cleanup(&r);
}

static const char *const all_done[NSTEPS] = {"done", "done", "done", "done", "done", "done"};

START_TEST(a_ride_is_charged_through_customer_accounting)
{
    struct harness_server *const s = &gws[0];
    up(s, NULL); /* no customer-accounting yet */
    char ok[IDS_UUID_LEN], bad[IDS_UUID_LEN], path[128];
    make_ride(s, "r1-alice", "\"61.50\"", ok);
    make_ride(s, "r1-bob_fail_charge", "12", bad);

    /* until customer-accounting started the saga: a pending placeholder */
    snprintf(path, sizeof path, "/rides/%s/fare", ok);
    json_t *p = get_json(s, path);
    ck_assert_str_eq(json_str(p, "ride_id"), ok);
    ck_assert(json_is_null(json_object_get(p, "fare_id")));
    ck_assert_str_eq(json_str(p, "status"), "pending");
    ck_assert(json_number_value(json_object_get(p, "amount")) == 61.5);
    ck_assert(json_is_array(json_object_get(p, "steps")));
    ck_assert_int_eq(json_array_size(json_object_get(p, "steps")), 0);
    char self[128], ride_link[80];
    snprintf(self, sizeof self, "/rides/%s/fare", ok);
    snprintf(ride_link, sizeof ride_link, "/rides/%s", ok);
    ck_assert_str_eq(json_str(json_object_get(p, "links"), "self"), self);
    ck_assert_str_eq(json_str(json_object_get(p, "links"), "ride"), ride_link);
    json_decref(p);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE ride_id = '%s'", ok), 0);

    /* unknown and malformed rides */
    const char *unknown[] = {"/rides/0c2f8a4e-6b1d-4e7a-9f3c-5d8b2a1e7c40/fare",
                             "/rides/not-a-ride/fare", "/rides/1234/fare"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        struct response r;
        harness_admin(s, "GET", unknown[i], NULL, &r);
        ck_assert_msg(r.status == 404, "GET %s: %ld %s", unknown[i], r.status, buf_str(&r.body));
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
    /* and not without a token */
    struct response r;
    harness_request(s, "GET", path, NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 401);
    response_cleanup(&r);
    down(s);

    /* customer-accounting and the executors: the fare's id is "ride-" and the ride's */
    up(s, all_workers);
    char ok_fare[64], bad_fare[64];
    snprintf(ok_fare, sizeof ok_fare, "ride-%s", ok);
    snprintf(bad_fare, sizeof bad_fare, "ride-%s", bad);
    json_t *f = wait_final(s, path, FINAL_S);
    assert_fare(f, ok_fare, ok, 61.5, "succeeded", all_done);
    ck_assert(json_is_false(json_object_get(f, "needs_operator")));
    for (int i = 0; i < NSTEPS; i++)
        ck_assert_int_eq(attempts_of(f, step_names[i]), 1);
    json_t *g = get_json(s, json_str(json_object_get(f, "links"), "self"));
    ck_assert(json_equal(f, g));
    json_decref(g);
    json_decref(f);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND ride_id = '%s' AND "
                          "customer = 'r1-alice' AND amount = 61.50 AND card_last4 IS NULL",
                          ok_fare, ok),
                     1);
    ck_assert_int_eq(ledger(ok_fare, "preauth"), 1);
    ck_assert_int_eq(ledger(ok_fare, "charge"), 1);
    ck_assert_int_eq(ledger(ok_fare, "credit"), 1);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s'", ok_fare), 3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND "
                          "amount = 61.50 AND customer = 'r1-alice'",
                          ok_fare),
                     3);
    ck_assert(balanced(ok_fare));
    ck_assert(no_open_preauth(ok_fare));
    assert_outcome_message("fare-succeeded", ok_fare, "r1-alice", "succeeded");
    ck_assert_int_eq(published("fare-failed", ok_fare), 0);
    /* a ride's fare id is not one POST /fares can name */
    char *again = fare_body(ok_fare, "r1-alice", "61.5");
    struct response c;
    post_fares(s, again, &c);
    free(again);
    ck_assert_msg(c.status == 400, "%ld %s", c.status, buf_str(&c.body));
    response_cleanup(&c);

    /* the declined ride ends failed, compensated, and is told to fare-failed */
    snprintf(path, sizeof path, "/rides/%s/fare", bad);
    f = wait_final(s, path, FINAL_S);
    const char *want[NSTEPS] = {"done", "compensated", "failed", "skipped", "done", "done"};
    assert_fare(f, bad_fare, bad, 12, "failed", want);
    json_decref(f);
    ck_assert(balanced(bad_fare));
    ck_assert(no_open_preauth(bad_fare));
    assert_outcome_message("fare-failed", bad_fare, "r1-bob_fail_charge", "failed");
    ck_assert_int_eq(published("fare-succeeded", bad_fare), 0);
    /* customer-accounting consumed both rides: one fare each */
    ck_assert_int_eq(wait_sql("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                              "WHERE q.name = 'customer-accounting'",
                              0, 5),
                     0);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE ride_id IN ('%s', '%s')", ok, bad), 2);
    down(s);
}
END_TEST

START_TEST(a_posted_fare_id_cannot_take_a_rides_fare)
{
    /* POST /fares shares the fare ids of rides (fare id = ride id). A fareId naming a ride whose
     * fare is not started yet must not stop that ride from being charged. */
    struct harness_server *const s = &gws[0];
    up(s, NULL);
    char ride[IDS_UUID_LEN], path[128];
    make_ride(s, "sq-ride-owner", "30", ride);
    char *body = fare_body(ride, "sq-someone-else", "1");
    struct response r;
    post_fares(s, body, &r);
    free(body);
    long st = r.status;
    response_cleanup(&r);
    down(s);
    up(s, ride_and_saga_workers);
    snprintf(path, sizeof path, "/rides/%s/fare", ride);
    double until = now_s() + 8;
    json_t *f = NULL;
    for (;;) {
        f = get_json(s, path);
        if (is_final(f) || now_s() > until)
            break;
        json_decref(f);
        harness_sleep_ms(100);
    }
    char *text = json_dumps(f, JSON_COMPACT);
    char copy[2048];
    snprintf(copy, sizeof copy, "%s", text);
    free(text);
    bool charged = is_final(f) && json_number_value(json_object_get(f, "amount")) == 30;
    json_decref(f);
    long long owner_charged =
        sqlf("SELECT count(*) FROM payment_ledger WHERE kind = 'charge' AND customer = "
             "'sq-ride-owner'");
    down(s);
    ck_assert_msg(charged && owner_charged == 1,
                  "POST /fares with fareId = ride id answered %ld; the ride's own fare never "
                  "started: GET %s = %s (charges of the ride's customer: %lld)",
                  st, path, copy, owner_charged);
}
END_TEST

/* ---- POST /fares ----------------------------------------------------------------------------- */

/* One invalid submission: a change to a valid body (value NULL: remove the member; "@N": a
 * string of N 'x') and the field the 400 must name. */
struct bad_fare {
    const char *field, *value, *named;
};

static const struct bad_fare bad_fares[] = {
    {"customerId", NULL, "customerId"},
    {"fareId", NULL, "fareId"},
    {"fareAmount", NULL, "fareAmount"},
    {"cc", NULL, "cc"},
    {"expiryDate", NULL, "expiryDate"},
    {"cvv", NULL, "cvv"},
    {"customerId", "\"\"", "customerId"},
    {"customerId", "@201", "customerId"},
    {"customerId", "42", "customerId"},
    {"customerId", "null", "customerId"},
    {"fareId", "\"\"", "fareId"},
    {"fareId", "@65", "fareId"},
    {"fareId", "\"a b\"", "fareId"},
    {"fareId", "\"a/b\"", "fareId"},
    {"fareId", "\"a.b\"", "fareId"},
    {"fareId", "\"caf\\u00e9\"", "fareId"},
    {"fareId", "7", "fareId"},
    {"fareAmount", "\"\"", "fareAmount"},
    {"fareAmount", "\"$\"", "fareAmount"},
    {"fareAmount", "\"abc\"", "fareAmount"},
    {"fareAmount", "\"-5\"", "fareAmount"},
    {"fareAmount", "\"$-5.00\"", "fareAmount"},
    {"fareAmount", "\"20.001\"", "fareAmount"},
    {"fareAmount", "\"1,000\"", "fareAmount"},
    {"fareAmount", "\"1e2\"", "fareAmount"},
    {"fareAmount", "\" 20\"", "fareAmount"},
    {"fareAmount", "\"20.0.0\"", "fareAmount"},
    {"fareAmount", "\"$$20\"", "fareAmount"},
    {"fareAmount", "\"1000000.01\"", "fareAmount"},
    {"fareAmount", "-1", "fareAmount"},
    {"fareAmount", "20.001", "fareAmount"},
    {"fareAmount", "1000000.01", "fareAmount"},
    {"fareAmount", "true", "fareAmount"},
    {"fareAmount", "null", "fareAmount"},
    {"fareAmount", "{\"amount\": 5}", "fareAmount"},
    /* no digits at all, and more than 2 decimals however small (as POST /rides has it) */
    {"fareAmount", "\".\"", "fareAmount"},
    {"fareAmount", "\"$.\"", "fareAmount"},
    {"fareAmount", "1e-9", "fareAmount"},
    {"cc", "\"\"", "cc"},
    {"cc", "\"41111111111\"", "cc"},          /* 11 digits */
    {"cc", "\"41111111111111111111\"", "cc"}, /* 20 */
    {"cc", "\"4111 1111 1111 111x\"", "cc"},
    {"cc", "\"4111.1111.1111.1111\"", "cc"},
    {"cc", "\"------------------\"", "cc"},
    {"cc", "4111111111111111", "cc"},
    {"expiryDate", "\"\"", "expiryDate"},
    {"expiryDate", "\"13/30\"", "expiryDate"},
    {"expiryDate", "\"00/30\"", "expiryDate"},
    {"expiryDate", "\"1230\"", "expiryDate"},
    {"expiryDate", "\"12-30\"", "expiryDate"},
    {"expiryDate", "\"ab/cd\"", "expiryDate"},
    {"expiryDate", "\"01/20\"", "expiryDate"},
    {"expiryDate", "\"01/2020\"", "expiryDate"},
    {"expiryDate", "\"12/30x\"", "expiryDate"},
    {"expiryDate", "1230", "expiryDate"},
    /* neither MM/YY nor MM/YYYY */
    {"expiryDate", "\"1/30\"", "expiryDate"},
    {"expiryDate", "\"12/030\"", "expiryDate"},
    {"expiryDate", "\"+1/30\"", "expiryDate"},
    {"cvv", "\"\"", "cvv"},
    {"cvv", "\"12\"", "cvv"},
    {"cvv", "\"12345\"", "cvv"},
    {"cvv", "\"12a\"", "cvv"},
    {"cvv", "123", "cvv"},
    /* unknown fields, including near misses */
    {"tip", "1", "tip"},
    {"customerid", "\"x\"", "customerid"},
    {"fare_id", "\"x\"", "fare_id"},
    {"cardNumber", "\"4111111111111111\"", "cardNumber"},
};

/* The valid body of row i of the table (b) with b applied (caller frees). */
static char *bad_fare_body(const struct bad_fare *b, size_t i)
{
    char id[32];
    snprintf(id, sizeof id, "v-table-%zu", i); /* one accepted by mistake hides no other */
    char *valid = fare_body(id, "v-customer", "\"$20.00\"");
    json_t *o = json_loads(valid, 0, NULL);
    free(valid);
    if (!b->value) {
        json_object_del(o, b->field);
    } else if (b->value[0] == '@') {
        int n = atoi(b->value + 1);
        char s[256];
        memset(s, 'x', (size_t)n);
        s[n] = '\0';
        json_object_set_new(o, b->field, json_string(s));
    } else {
        json_t *x = json_loads(b->value, JSON_DECODE_ANY, NULL);
        ck_assert_msg(x != NULL, "bad table value %s", b->value);
        json_object_set_new(o, b->field, x);
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* MM/YYYY of this month (months 0) or months away from it. */
static void month(int months, char *out, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int m = tm.tm_year * 12 + tm.tm_mon + months;
    snprintf(out, n, "%02d/%04d", m % 12 + 1, m / 12 + 1900);
}

START_TEST(invalid_fares_are_400_naming_the_field_and_store_nothing)
{
    long long fares = sqlf("SELECT count(*) FROM fares");
    struct buf wrong;
    buf_init(&wrong);
    for (size_t i = 0; i < sizeof bad_fares / sizeof *bad_fares; i++) {
        char *body = bad_fare_body(&bad_fares[i], i);
        struct response r;
        post_fares(&srv, body, &r);
        if (r.status != 400 || !problem_names_field(&r, bad_fares[i].named))
            buf_printf(&wrong, "\n  %s: %ld %s (expected 400 naming %s)", body, r.status,
                       buf_str(&r.body), bad_fares[i].named);
        else
            assert_problem(&r, 400);
        response_cleanup(&r);
        free(body);
    }
    /* last month has passed */
    char last[16], body[512];
    month(-1, last, sizeof last);
    snprintf(body, sizeof body,
             "{\"customerId\": \"v-c\", \"fareId\": \"v-last-month\", \"fareAmount\": 5, "
             "\"cc\": \"" CARD_DIGITS "\", \"expiryDate\": \"%s\", \"cvv\": \"123\"}",
             last);
    struct response r;
    post_fares(&srv, body, &r);
    if (r.status != 400 || !problem_names_field(&r, "expiryDate"))
        buf_printf(&wrong, "\n  %s: %ld (expected 400 naming expiryDate)", body, r.status);
    response_cleanup(&r);
    /* bodies wrong as a whole */
    const char *whole[] = {"[]", "\"fare\"", "42", "null", "{\"fareId\": ", ""};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        harness_request(&srv, "POST", "/fares", HARNESS_ADMIN_TOKEN, whole[i][0] ? whole[i] : NULL,
                        NULL, NULL, &r);
        if (r.status != 400 && !(r.status == 415 && !whole[i][0]))
            buf_printf(&wrong, "\n  body '%s': %ld %s (expected 400)", whole[i], r.status,
                       buf_str(&r.body));
        else
            assert_problem(&r, r.status);
        response_cleanup(&r);
    }
    harness_request(&srv, "POST", "/fares", HARNESS_ADMIN_TOKEN,
                    "customerId=a&fareId=b&fareAmount=1", "application/x-www-form-urlencoded", NULL,
                    &r);
    if (r.status != 415)
        buf_printf(&wrong, "\n  a form: %ld (expected 415)", r.status);
    response_cleanup(&r);
    /* every problem at once */
    post_fares(&srv,
               "{\"customerId\": \"\", \"fareId\": \"a b\", \"fareAmount\": \"x\", \"cc\": \"1\", "
               "\"expiryDate\": \"13/99\", \"cvv\": \"1\", \"extra\": 0}",
               &r);
    const char *named[] = {"customerId", "fareId", "fareAmount", "cc",
                           "expiryDate", "cvv",    "extra"};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        if (r.status != 400 || !problem_names_field(&r, named[i]))
            buf_printf(&wrong, "\n  all wrong: %s not named (%ld %s)", named[i], r.status,
                       buf_str(&r.body));
    response_cleanup(&r);
    /* no token */
    char *valid = fare_body("v-no-token", "v-c", "1");
    harness_request(&srv, "POST", "/fares", NULL, valid, NULL, NULL, &r);
    if (r.status != 401)
        buf_printf(&wrong, "\n  no token: %ld (expected 401)", r.status);
    response_cleanup(&r);
    free(valid);

    long long now = sqlf("SELECT count(*) FROM fares");
    if (now != fares)
        buf_printf(&wrong, "\n  %lld fares stored", now - fares);
    char report[16384];
    snprintf(report, sizeof report, "%s", buf_str(&wrong));
    buf_cleanup(&wrong);
    ck_assert_msg(report[0] == '\0', "invalid fares answered wrongly:%s", report);
}
END_TEST

/* Tables (of the public schema) any of whose rows mention text, comma-separated (caller frees). */
static char *tables_mentioning(const char *text)
{
    char *union_sql = sqlf_text(
        "SELECT string_agg(format('SELECT %%L AS t FROM %%I.%%I x WHERE x::text LIKE %%L', "
        "table_name, table_schema, table_name, '%%%s%%'), ' UNION ALL ') FROM "
        "information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        text);
    ck_assert_ptr_nonnull(union_sql);
    char *found =
        sqlf_text("SELECT coalesce(string_agg(DISTINCT t, ','), '') FROM (%s) q", union_sql);
    free(union_sql);
    return found;
}

START_TEST(post_fares_is_202_idempotent_and_stores_no_card)
{
    /* accepted forms: amounts, card formats, expiry forms (this month included), cvv lengths */
    char this_month[16];
    month(0, this_month, sizeof this_month);
    const char *forms[][2] = {
        {"fareAmount", "\"20.00\""},
        {"fareAmount", "\"20\""},
        {"fareAmount", "20"},
        {"fareAmount", "20.5"},
        {"fareAmount", "\"$0.50\""},
        {"fareAmount", "0"},
        {"fareAmount", "\"$1000000.00\""},
        {"cc", "\"" CARD_DIGITS "\""},
        {"cc", "\"4000-0566-5566-5556\""},
        {"cc", "\"411111111111\""},
        {"cc", "\"4111111111111111111\""},
        {"expiryDate", "\"11/97\""},
        {"expiryDate", "\"@this-month\""},
        {"cvv", "\"0000\""},
        {"customerId", "\"v \\u00e9 spaced\""},
        {"fareId", "\"v_A-z_09\""},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char id[32];
        snprintf(id, sizeof id, "v-form-%zu", i);
        char *text = fare_body(id, "v-forms", "1");
        json_t *o = json_loads(text, 0, NULL);
        free(text);
        json_t *v = strcmp(forms[i][1], "\"@this-month\"") == 0
                        ? json_string(this_month)
                        : json_loads(forms[i][1], JSON_DECODE_ANY, NULL);
        json_object_set_new(o, forms[i][0], v);
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        struct response r;
        post_fares(&srv, text, &r);
        ck_assert_msg(r.status == 202, "%s: %ld %s", text, r.status, buf_str(&r.body));
        free(text);
        response_cleanup(&r);
    }
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-0' AND amount = 20"), 1);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-4' AND amount = 0.50"), 1);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-9' AND "
                          "card_last4 = '1111'"),
                     1);

    /* the 202 with the fare */
    char *body = fare_body("p-fare-1", "p-carol", "\"$20.00\"");
    struct response a, b;
    post_fares(&srv, body, &a);
    ck_assert_msg(a.status == 202, "%ld %s", a.status, buf_str(&a.body));
    char h[200];
    ck_assert(response_header(&a, "Location", h, sizeof h));
    ck_assert_str_eq(h, "/fares/p-fare-1");
    ck_assert(response_header(&a, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, "/fares/p-fare-1");
    ck_assert(response_header(&a, "Content-Type", h, sizeof h));
    ck_assert_str_eq(h, "application/json");
    const char *const pending[NSTEPS] = {"pending", "pending", "pending",
                                         "pending", "pending", "pending"};
    assert_fare(a.json, "p-fare-1", NULL, 20, "pending", pending);
    ck_assert(json_is_false(json_object_get(a.json, "needs_operator")));
    for (int i = 0; i < NSTEPS; i++) {
        json_t *st = json_array_get(json_object_get(a.json, "steps"), (size_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(st, "attempts")), 0);
        ck_assert(json_is_null(json_object_get(st, "started_at")));
    }
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1' AND ride_id IS NULL "
                          "AND customer = 'p-carol' AND amount = 20.00 AND card_last4 = '%s'",
                          CARD_LAST4),
                     1);

    /* the same again (another card format, another cvv and expiry of the same card): the fare */
    post_fares(&srv, body, &b);
    ck_assert_int_eq(b.status, 202);
    ck_assert(response_header(&b, "Location", h, sizeof h));
    ck_assert_str_eq(h, "/fares/p-fare-1");
    ck_assert(json_equal(a.json, b.json));
    response_cleanup(&b);
    free(body);
    const char *same =
        "{\"cvv\": \"1234\", \"expiryDate\": \"01/2099\", \"cc\": \"" CARD_DIGITS "\", "
        "\"fareAmount\": 20, \"fareId\": \"p-fare-1\", \"customerId\": \"p-carol\"}";
    post_fares(&srv, same, &b);
    ck_assert_msg(b.status == 202, "%ld %s", b.status, buf_str(&b.body));
    ck_assert(json_equal(a.json, b.json));
    response_cleanup(&b);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1'"), 1);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = 'p-fare-1'"), NSTEPS);

    /* the same fareId with other details: 409, the fare unchanged */
    const char *other[] = {
        "{\"customerId\": \"p-carol\", \"fareId\": \"p-fare-1\", \"fareAmount\": \"$20.01\", "
        "\"cc\": \"" CARD_DIGITS "\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
        "{\"customerId\": \"p-dave\", \"fareId\": \"p-fare-1\", \"fareAmount\": \"$20.00\", "
        "\"cc\": \"" CARD_DIGITS "\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
        "{\"customerId\": \"p-carol\", \"fareId\": \"p-fare-1\", \"fareAmount\": \"$20.00\", "
        "\"cc\": \"4111111111111111\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        post_fares(&srv, other[i], &b);
        ck_assert_msg(b.status == 409, "%s: %ld %s", other[i], b.status, buf_str(&b.body));
        assert_problem(&b, 409);
        response_cleanup(&b);
    }
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1' AND amount = 20 AND "
                          "customer = 'p-carol' AND card_last4 = '%s'",
                          CARD_LAST4),
                     1);

    /* GET /fares/{id}: the same representation; unknown ids 404 */
    json_t *g = get_json(&srv, "/fares/p-fare-1");
    ck_assert(json_equal(g, a.json));
    json_decref(g);
    response_cleanup(&a);
    char long_id[100];
    memset(long_id, 'x', 65);
    long_id[65] = '\0';
    const char *missing[] = {"/fares/unknown", "/fares/p-fare-", "/fares/P-FARE-1", long_id};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        char path[200];
        snprintf(path, sizeof path, "%s%s", missing[i] == long_id ? "/fares/" : "", missing[i]);
        harness_admin(&srv, "GET", path, NULL, &b);
        ck_assert_msg(b.status == 404, "GET %s: %ld", path, b.status);
        assert_problem(&b, 404);
        response_cleanup(&b);
    }
    harness_request(&srv, "GET", "/fares/p-fare-1", NULL, NULL, NULL, NULL, &b);
    ck_assert_int_eq(b.status, 401);
    response_cleanup(&b);

    /* card data is stored nowhere beyond the last four digits */
    const char *secrets[] = {CARD_DIGITS, CARD_FORMATTED, "4000-0566-5566-5556", CARD_EXPIRY,
                             "01/2099",   "\"cvv\"",      "expiryDate"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        char *found = tables_mentioning(secrets[i]);
        ck_assert_msg(found && !found[0], "%s is stored in: %s", secrets[i], found);
        free(found);
    }
    ck_assert_int_eq(
        sqlf("SELECT count(*) FROM fares WHERE row(fares.*)::text LIKE '%%%s%%'", CARD_DIGITS), 0);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE "
                          "row(payment_ledger.*)::text LIKE '%%%s%%'",
                          CARD_DIGITS),
                     0);

    /* nor logged, nor echoed: requests again with every log line captured (no check in between:
     * a failed one would leave stderr redirected) */
    char logpath[] = "/tmp/test_fares_log_XXXXXX";
    int fd = mkstemp(logpath);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    dup2(fd, STDERR_FILENO);
    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    const char *logged[] = {
        "{\"customerId\": \"p-log\", \"fareId\": \"p-fare-log\", \"fareAmount\": 3, \"cc\": "
        "\"" CARD_FORMATTED "\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
        "{\"customerId\": \"p-log2\", \"fareId\": \"p-fare-log\", \"fareAmount\": 3, \"cc\": "
        "\"" CARD_FORMATTED "\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
        "{\"customerId\": \"p-log\", \"fareId\": \"p-fare-log2\", \"fareAmount\": 3, \"cc\": "
        "\"" CARD_FORMATTED "\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"73x\"}",
        "{\"customerId\": \"p-log\", \"fareId\": \"p-fare-log3\", \"fareAmount\": 3, \"cc\": "
        "\"" CARD_DIGITS "x\", \"expiryDate\": \"" CARD_EXPIRY "\", \"cvv\": \"737\"}",
    };
    long want_status[] = {202, 409, 400, 400}, got_status[4];
    bool echoed = false;
    for (int i = 0; i < 4; i++) {
        post_fares(&srv, logged[i], &b);
        got_status[i] = b.status;
        echoed = echoed || strstr(buf_str(&b.body), CARD_DIGITS) ||
                 strstr(buf_str(&b.body), CARD_FORMATTED) || strstr(buf_str(&b.body), CARD_EXPIRY);
        response_cleanup(&b);
    }
    harness_sleep_ms(200); /* the access log line of the last request */
    log_configure(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char text[65536];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(logpath);
    text[n > 0 ? n : 0] = '\0';
    for (int i = 0; i < 4; i++)
        ck_assert_msg(got_status[i] == want_status[i], "%s: %ld", logged[i], got_status[i]);
    ck_assert_msg(!echoed, "a response repeats the card data");
    ck_assert_msg(strstr(text, "/fares") != NULL, "nothing logged: %s", text);
    ck_assert_msg(!strstr(text, CARD_DIGITS) && !strstr(text, CARD_FORMATTED) &&
                      !strstr(text, CARD_EXPIRY) && !strstr(text, "cvv"),
                  "card data in the log: %s", text);
}
END_TEST

/* ---- every path, by customer ----------------------------------------------------------------- */

struct path {
    const char *suffix, *outcome;
    const char *status[NSTEPS];
    int attempts[NSTEPS], compensations[NSTEPS];
    int rows[7]; /* ledger rows of each of kinds[] */
};

static const char *const kinds[7] = {"preauth", "void",     "charge",   "refund",
                                     "credit",  "declined", "transient"};
static const struct path paths[] = {
    {"",
     "succeeded",
     {"done", "done", "done", "done", "done", "done"},
     {1, 1, 1, 1, 1, 1},
     {0, 0, 0, 0, 0, 0},
     {1, 0, 1, 0, 1, 0, 0}},
    {"_fail_auth",
     "failed",
     {"done", "failed", "skipped", "skipped", "done", "done"},
     {1, 1, 0, 0, 1, 1},
     {0, 0, 0, 0, 0, 0},
     {0, 0, 0, 0, 0, 1, 0}},
    {"_fail_charge",
     "failed",
     {"done", "compensated", "failed", "skipped", "done", "done"},
     {1, 1, 1, 0, 1, 1},
     {0, 1, 0, 0, 0, 0},
     {1, 1, 0, 0, 0, 1, 0}},
    {"_fail_credit",
     "failed",
     {"done", "compensated", "compensated", "failed", "done", "done"},
     {1, 1, 1, 1, 1, 1},
     {0, 1, 1, 0, 0, 0},
     {1, 1, 1, 1, 0, 1, 0}},
    /* a refund that is never needed: nothing declined */
    {"_fail_refund",
     "succeeded",
     {"done", "done", "done", "done", "done", "done"},
     {1, 1, 1, 1, 1, 1},
     {0, 0, 0, 0, 0, 0},
     {1, 0, 1, 0, 1, 0, 0}},
    /* flaky and declined: every call (the void compensation too) fails once first */
    {"_flaky_fail_charge",
     "failed",
     {"done", "compensated", "failed", "skipped", "done", "done"},
     {1, 2, 2, 0, 1, 1},
     {0, 2, 0, 0, 0, 0},
     {1, 1, 0, 0, 0, 1, 3}},
    {"_flaky",
     "succeeded",
     {"done", "done", "done", "done", "done", "done"},
     {1, 2, 2, 2, 1, 1},
     {0, 0, 0, 0, 0, 0},
     {1, 0, 1, 0, 1, 0, 3}},
};
#define NPATHS ((int)(sizeof paths / sizeof *paths))

/* Checks fare (of customer, posted for amount) against path p. */
static void assert_path(struct harness_server *s, const char *fare, const char *customer,
                        double amount, const struct path *p)
{
    json_t *f = wait_fare(s, fare, FINAL_S);
    assert_fare(f, fare, NULL, amount, p->outcome, p->status);
    ck_assert_msg(json_is_false(json_object_get(f, "needs_operator")), "%s needs an operator",
                  fare);
    for (int i = 0; i < NSTEPS; i++) {
        char row[64], want[64];
        step_row(fare, i, row, sizeof row);
        snprintf(want, sizeof want, "%s %d %d", p->status[i], p->attempts[i], p->compensations[i]);
        ck_assert_msg(strcmp(row, want) == 0, "%s step %s: %s, expected %s", fare, step_names[i],
                      row, want);
        /* the representation counts both */
        ck_assert_int_eq(attempts_of(f, step_names[i]), p->attempts[i] + p->compensations[i]);
        json_t *st = json_array_get(json_object_get(f, "steps"), (size_t)i);
        if (strcmp(p->status[i], "failed") == 0)
            ck_assert_msg(json_str(st, "detail") && strstr(json_str(st, "detail"), "declined"),
                          "%s: the failed step's detail", fare);
    }
    json_decref(f);
    for (int k = 0; k < 7; k++)
        ck_assert_msg(ledger(fare, kinds[k]) == p->rows[k], "%s: %lld %s rows, expected %d", fare,
                      ledger(fare, kinds[k]), kinds[k], p->rows[k]);
    /* every key of the fare once, each of its own step */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND NOT ("
                          "idempotency_key LIKE 'fare:%s:%%') ",
                          fare, fare),
                     0);
    ck_assert_int_eq(
        sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND kind IN ('charge', "
             "'preauth', 'credit', 'void', 'refund') AND (amount <> %.2f OR customer <> '%s')",
             fare, amount, customer),
        0);
    if (p->rows[1])
        ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE idempotency_key = "
                              "'fare:%s:preauthorize:compensate' AND kind = 'void'",
                              fare),
                         1);
    if (p->rows[3])
        ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE idempotency_key = "
                              "'fare:%s:charge:compensate' AND kind = 'refund'",
                              fare),
                         1);
    ck_assert_msg(balanced(fare), "%s does not balance", fare);
    ck_assert_msg(no_open_preauth(fare), "%s leaves a pre-authorization open", fare);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND outcome = '%s' AND "
                          "status = '%s' AND NOT needs_operator AND phase = 'finished'",
                          fare, p->outcome, p->outcome),
                     1);
    bool ok = strcmp(p->outcome, "succeeded") == 0;
    assert_outcome_message(ok ? "fare-succeeded" : "fare-failed", fare, customer, p->outcome);
    ck_assert_int_eq(published(ok ? "fare-failed" : "fare-succeeded", fare), 0);
}

START_TEST(every_path_ends_with_exactly_the_right_compensations)
{
    struct harness_server *const s = &gws[0];
    up(s, saga_workers);
    long long retries = metric(s, "rydes_saga_retries_total");
    ck_assert_int_ge(retries, 0);
    long long succeeded = metric(s, "rydes_sagas_total{outcome=\"succeeded\"}"),
              failed = metric(s, "rydes_sagas_total{outcome=\"failed\"}");
    int nsucceeded = 0;
    for (int i = 0; i < NPATHS; i++) {
        char fare[64], customer[64];
        snprintf(fare, sizeof fare, "path-%d", i);
        snprintf(customer, sizeof customer, "pc-%d%s", i, paths[i].suffix);
        start_fare(s, fare, customer, "\"$42.10\"");
        nsucceeded += strcmp(paths[i].outcome, "succeeded") == 0;
    }
    for (int i = 0; i < NPATHS; i++) {
        char fare[64], customer[64];
        snprintf(fare, sizeof fare, "path-%d", i);
        snprintf(customer, sizeof customer, "pc-%d%s", i, paths[i].suffix);
        assert_path(s, fare, customer, 42.10, &paths[i]);
    }
    /* the two flaky customers: 3 + 3 retries (steps and a compensation) */
    ck_assert_int_ge(metric(s, "rydes_saga_retries_total"), retries + 6);
    /* other fares (of the api tests) may finish here too: at least ours */
    ck_assert_int_ge(metric(s, "rydes_sagas_total{outcome=\"succeeded\"}"), succeeded + nsucceeded);
    ck_assert_int_ge(metric(s, "rydes_sagas_total{outcome=\"failed\"}"),
                     failed + NPATHS - nsucceeded);
    down(s);
}
END_TEST

START_TEST(a_refund_that_keeps_failing_is_left_to_an_operator)
{
    struct harness_server *const s = &gws[0];
    up(s, saga_workers);
    long long before = metric(s, "rydes_sagas_total{outcome=\"needs_operator\"}");
    ck_assert_int_ge(before, 0);
    const char *customer = "op-erin_fail_credit_fail_refund";
    start_fare(s, "op-1", customer, "33.30");
    json_t *f = wait_fare(s, "op-1", FINAL_S);
    char *text = json_dumps(f, JSON_COMPACT);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", text);
    free(text);
    ck_assert_msg(strcmp(json_str(f, "status"), "failed") == 0, "%s", copy);
    ck_assert_msg(json_is_true(json_object_get(f, "needs_operator")), "%s", copy);
    json_t *steps = json_object_get(f, "steps");
    ck_assert_str_eq(json_str(json_array_get(steps, 2), "name"), "charge");
    ck_assert_msg(strcmp(json_str(json_array_get(steps, 2), "status"), "failed") == 0, "%s", copy);
    ck_assert_msg(strcmp(json_str(json_array_get(steps, 3), "status"), "failed") == 0, "%s", copy);
    ck_assert_msg(strstr(json_str(json_array_get(steps, 2), "detail"), "operator") != NULL, "%s",
                  copy);
    json_decref(f);
    char row[64];
    step_row("op-1", 2, row, sizeof row);
    ck_assert_str_eq(row, "failed 1 6"); /* charged once, refused a refund six times */
    step_row("op-1", 3, row, sizeof row);
    ck_assert_str_eq(row, "failed 1 0");
    ck_assert_int_eq(sqlf("SELECT count(*) FROM stuck_sagas WHERE id = 'op-1' AND step = 'charge' "
                          "AND status = 'failed' AND compensation_attempts = 6 AND amount = 33.30"),
                     1);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'op-1' AND status = 'failed' "
                          "AND outcome = 'failed' AND needs_operator"),
                     1);
    /* stays there: nothing runs it again */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = 'op-1' AND status IN "
                          "('pending', 'running')"),
                     0);
    ck_assert_int_ge(metric(s, "rydes_sagas_total{outcome=\"needs_operator\"}"), before + 1);
    /* money taken and not returned: that is the operator's case */
    ck_assert_int_eq(ledger("op-1", "charge"), 1);
    ck_assert_int_eq(ledger("op-1", "refund"), 0);
    ck_assert_int_eq(ledger("op-1", "credit"), 0);
    ck_assert_int_eq(ledger("op-1", "declined"), 2); /* the credit and the refund, once per key */
    ck_assert(!balanced("op-1"));
    ck_assert_int_eq(sqlf("SELECT (charged::text = '33.30' AND refunded = 0 AND credited = 0)::int "
                          "FROM fare_ledger WHERE fare_id = 'op-1'"),
                     1);
    down(s);
}
END_TEST

/* ---- crashes --------------------------------------------------------------------------------- */

/* One planned crash: the nth call of the hook for step of fare abandons the run. */
struct crash {
    char fare[SAGA_FARE_ID_MAX + 1];
    const char *step;
    int nth;
    atomic_int calls, crashed;
};

static struct crash crashes[16];
static int ncrashes;
static atomic_int slow_ms; /* the slow executor test: how long its hook sleeps, once */

static bool crash_planned(const char *fare, const char *step)
{
    for (int i = 0; i < ncrashes; i++) {
        struct crash *c = &crashes[i];
        if (strcmp(c->fare, fare) != 0 || strcmp(c->step, step) != 0)
            continue;
        int n = atomic_fetch_add(&c->calls, 1) + 1;
        if (n == c->nth) {
            atomic_fetch_add(&c->crashed, 1);
            return true;
        }
    }
    return false;
}

static void plan_crash(const char *fare, const char *step, int nth)
{
    ck_assert_int_lt(ncrashes, 16);
    struct crash *c = &crashes[ncrashes++];
    snprintf(c->fare, sizeof c->fare, "%s", fare);
    c->step = step;
    c->nth = nth;
    atomic_store(&c->calls, 0);
    atomic_store(&c->crashed, 0);
}

START_TEST(a_crash_after_any_step_resumes_without_double_charges)
{
    ncrashes = 0;
    /* forward: a crash right after each step of a fare that succeeds */
    for (int i = 0; i < NSTEPS; i++) {
        char fare[64];
        snprintf(fare, sizeof fare, "crash-%s", step_names[i]);
        plan_crash(fare, step_names[i], 1);
    }
    /* compensating (_fail_credit): after the declined credit, after the refund (the charge's
     * compensation, its second call), after the void, and after complete and publish */
    plan_crash("crashc-credit", "credit_account", 1);
    plan_crash("crashc-refund", "charge", 2);
    plan_crash("crashc-void", "preauthorize", 2);
    plan_crash("crashc-complete", "complete", 1);
    plan_crash("crashc-publish", "publish", 1);
    int nforward = NSTEPS;
    saga_crash_hook = crash_planned;
    struct harness_server *const s = &gws[0];
    up(s, saga_workers);
    double t0 = now_s();
    for (int i = 0; i < ncrashes; i++)
        start_fare(s, crashes[i].fare, i < nforward ? "cr-frank" : "cr-gina_fail_credit",
                   "\"$17.25\"");
    wait_all_final("crash-", nforward, FINAL_S);
    wait_all_final("crashc-", ncrashes - nforward, FINAL_S);
    double took = now_s() - t0;
    down(s);
    saga_crash_hook = NULL;
    for (int i = 0; i < ncrashes; i++)
        ck_assert_msg(atomic_load(&crashes[i].crashed) == 1, "%s: no crash after %s (%d calls)",
                      crashes[i].fare, crashes[i].step, atomic_load(&crashes[i].calls));
    ck_assert_msg(took >= 1.0, "resumed within %.2f s, before the lease ran out", took);
    /* every fare as if nothing had happened */
    up(s, NULL);
    for (int i = 0; i < ncrashes; i++) {
        const char *fare = crashes[i].fare;
        if (i < nforward)
            assert_path(s, fare, "cr-frank", 17.25, &paths[0]);
        else
            assert_path(s, fare, "cr-gina_fail_credit", 17.25, &paths[3]);
        /* resumed only once the lease ran out */
        ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND "
                              "updated_at - created_at >= interval '0.9 s'",
                              fare),
                         1);
    }
    down(s);
}
END_TEST

/* The slow executor test's hook: the first publish of fare "slow-1" takes longer than the lease
 * (a stalled process); every other call returns at once. */
static atomic_int slow_done;

static bool stall_first_publish(const char *fare, const char *step)
{
    if (strcmp(fare, "slow-1") == 0 && strcmp(step, "publish") == 0) {
        int ms = atomic_exchange(&slow_ms, 0);
        if (ms > 0) {
            harness_sleep_ms(ms);
            atomic_store(&slow_done, 1);
        }
    }
    return false;
}

START_TEST(an_executor_that_outlives_its_lease_does_not_publish_twice)
{
    atomic_store(&slow_ms, 2500);
    atomic_store(&slow_done, 0);
    saga_crash_hook = stall_first_publish;
    struct harness_server *const s = &gws[0];
    up(s, saga_workers); /* two executors, a lease of 1 s */
    start_fare(s, "slow-1", "sl-hank", "9");
    json_t *f = wait_fare(s, "slow-1", FINAL_S);
    json_decref(f);
    double until = now_s() + 10;
    while (!atomic_load(&slow_done) && now_s() < until)
        harness_sleep_ms(50);
    harness_sleep_ms(300); /* the stalled executor's commit, if it makes one */
    down(s);
    saga_crash_hook = NULL;
    ck_assert(atomic_load(&slow_done));
    long long n = published("fare-succeeded", "slow-1");
    ck_assert_int_eq(ledger("slow-1", "charge"), 1);
    ck_assert(balanced("slow-1"));
    ck_assert_msg(n == 1,
                  "the outcome of slow-1 was published %lld times: a run that outlived its lease "
                  "still recorded and published after another executor took the fare over",
                  n);
}
END_TEST

START_TEST(a_killed_worker_process_is_resumed_elsewhere)
{
    const char *binary = getenv("RYDES_BINARY");
    if (!binary || !*binary) {
        fprintf(stderr, "test_fares: RYDES_BINARY is not set; skipping the process kill test\n");
        return;
    }
    saga_crash_hook = NULL;
    struct harness_server *const s = &gws[0];
    up(s, NULL); /* the API only */
    char log[] = "/tmp/test_fares_worker_XXXXXX";
    int fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_APPEND, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log, O_WRONLY | O_APPEND, 0);
    char *argv[] = {(char *)binary,
                    "worker",
                    "fare-saga",
                    "--database-url",
                    (char *)harness_db_url(),
                    "--saga-lease-seconds",
                    "1",
                    "--saga-concurrency",
                    "4",
                    NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, binary, &fa, NULL, argv, environ);
    worker_pid = pid;
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", binary, strerror(rc));
    /* flaky customers: each step waits out a backoff, so the kill lands mid-saga */
    const int n = 12;
    for (int i = 0; i < n; i++) {
        char fare[32];
        snprintf(fare, sizeof fare, "kill-%02d", i);
        start_fare(s, fare, i % 3 ? "kl-ivy_flaky" : "kl-jack_flaky_fail_charge", "5.55");
    }
    long long progress = wait_sql("SELECT least(count(*), 20) FROM payment_ledger WHERE fare_id "
                                  "LIKE 'kill-%' AND kind <> 'transient'",
                                  20, 20);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    worker_pid = 0;
    long long final_at_kill = sqlf("SELECT count(*) FROM fares WHERE id LIKE 'kill-%%' AND "
                                   "status IN ('succeeded', 'failed')");
    ck_assert_msg(progress == 20, "the worker made no progress (its log: %s)", log);
    unlink(log);
    down(s);
    if (final_at_kill == n)
        fprintf(stderr, "test_fares: every fare was final before the kill\n");
    up(s, saga_workers);
    wait_all_final("kill-", n, FINAL_S);
    for (int i = 0; i < n; i++) {
        char fare[32];
        snprintf(fare, sizeof fare, "kill-%02d", i);
        if (i % 3)
            assert_path(s, fare, "kl-ivy_flaky", 5.55, &paths[6]);
        else
            assert_path(s, fare, "kl-jack_flaky_fail_charge", 5.55, &paths[5]);
    }
    down(s);
}
END_TEST

/* ---- two gateways, restarts ------------------------------------------------------------------ */

START_TEST(two_gateways_share_the_sagas)
{
    saga_crash_hook = NULL;
    struct harness_server *const a = &gws[0], *const b = &gws[1];
    up(a, four_executors);
    up(b, four_executors);
    const char *customers[] = {"tw-kate", "tw-liam_fail_charge", "tw-mia_flaky"};
    const int n = 40;
    for (int i = 0; i < n; i++) {
        char fare[32], amount[16];
        snprintf(fare, sizeof fare, "two-%02d", i);
        snprintf(amount, sizeof amount, "%d.%02d", 10 + i, i);
        start_fare(i % 2 ? b : a, fare, customers[i % 3], amount);
    }
    wait_all_final("two-", n, 30);
    /* every fare as its customer has it */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fares WHERE id LIKE 'two-%%' AND ("
                          "(customer = 'tw-liam_fail_charge') <> (status = 'failed') OR "
                          "needs_operator)"),
                     0);
    /* the ledger: each operation once per fare, every fare balanced with nothing left open */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM (SELECT fare_id, kind FROM payment_ledger WHERE "
                          "fare_id LIKE 'two-%%' AND kind <> 'transient' GROUP BY 1, 2 "
                          "HAVING count(*) > 1) d"),
                     0);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                          "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'charge'"),
                     n - (n + 1) / 3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                          "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'credit'"),
                     n - (n + 1) / 3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                          "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'void'"),
                     (n + 1) / 3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM fare_ledger WHERE fare_id LIKE 'two-%%' AND "
                          "balanced AND preauths = 1 AND preauths = voids + (charged > 0)::int"),
                     n);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                          "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind IN ('preauth', 'charge', "
                          "'credit', 'void') AND l.amount <> f.amount"),
                     0);
    /* each published exactly once, to the right queue */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                          "WHERE q.name IN ('fare-succeeded', 'fare-failed') AND "
                          "m.attributes->'fare_id'->>'value' LIKE 'two-%%'"),
                     n);
    ck_assert_int_eq(
        sqlf(
            "SELECT count(DISTINCT m.attributes->'fare_id'->>'value') FROM messages m JOIN "
            "queues q ON q.id = m.queue_id JOIN fares f ON f.id = "
            "m.attributes->'fare_id'->>'value' WHERE f.id LIKE 'two-%%' AND "
            "q.name = CASE f.status WHEN 'succeeded' THEN 'fare-succeeded' ELSE 'fare-failed' END"),
        n);
    down(b);
    down(a);
}
END_TEST

START_TEST(fares_posted_without_an_executor_finish_after_a_restart)
{
    saga_crash_hook = NULL;
    struct harness_server *const s = &gws[0];
    up(s, no_workers);
    start_fare(s, "rs-1", "rs-nora", "\"$8.00\"");
    start_fare(s, "rs-2", "rs-oscar_fail_auth", "\"$9.00\"");
    harness_sleep_ms(300);
    char *st = sqlf_text("SELECT string_agg(id || ' ' || status || ' step ' || step, ', ') "
                         "FROM fares WHERE id IN ('rs-1', 'rs-2')");
    char copy[200];
    snprintf(copy, sizeof copy, "%s", st ? st : "none");
    free(st);
    ck_assert_msg(sqlf("SELECT count(*) FROM fares WHERE id IN ('rs-1', 'rs-2') AND status = "
                       "'pending' AND step = 0") == 2,
                  "nothing runs them yet: %s", copy);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id IN ('rs-1', "
                          "'rs-2')"),
                     0);
    down(s);
    up(s, saga_workers);
    assert_path(s, "rs-1", "rs-nora", 8, &paths[0]);
    assert_path(s, "rs-2", "rs-oscar_fail_auth", 9, &paths[1]);
    down(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fares");
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_checked_fixture(api, setup, teardown);
    tcase_add_test(api, invalid_fares_are_400_naming_the_field_and_store_nothing);
    tcase_add_test(api, post_fares_is_202_idempotent_and_stores_no_card);
    suite_add_tcase(s, api);
    TCase *saga = tcase_create("saga");
    tcase_set_timeout(saga, 90);
    tcase_add_checked_fixture(saga, NULL, saga_teardown);
    tcase_add_test(saga, a_ride_is_charged_through_customer_accounting);
    tcase_add_test(saga, a_posted_fare_id_cannot_take_a_rides_fare);
    tcase_add_test(saga, every_path_ends_with_exactly_the_right_compensations);
    tcase_add_test(saga, a_refund_that_keeps_failing_is_left_to_an_operator);
    tcase_add_test(saga, a_crash_after_any_step_resumes_without_double_charges);
    tcase_add_test(saga, an_executor_that_outlives_its_lease_does_not_publish_twice);
    tcase_add_test(saga, a_killed_worker_process_is_resumed_elsewhere);
    tcase_add_test(saga, two_gateways_share_the_sagas);
    tcase_add_test(saga, fares_posted_without_an_executor_finish_after_a_restart);
    suite_add_tcase(s, saga);
    return harness_run(s);
}
