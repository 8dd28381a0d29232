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
 * success; _lost_auth and _lost_charge (done, every answer lost) undone by their keys once given
 * up, _lost_credit left to an operator; the simulator's undo by key. A crash (saga_crash_hook)
 * after every step, forward and while compensating (also mid-way through a lost charge and after
 * its refund by key), resumed after the one-second lease without a double charge or a second
 * publish; an executor that outlives its lease; a `rydes worker
 * fare-saga` process killed mid-flight; two gateways sharing 40 mixed fares; fares posted while no
 * executor runs finished after a restart. And the HTTP client of a real gateway (payment-url)
 * against a fake one in this process: the calls, their order, bodies, Idempotency-Keys and the
 * references passed along; 402s compensated (void, refund); 503, 429 and 408 retried with the same
 * key; a charge answered 504 every time refunded by its key; a charge cut short by a crash still
 * undone (by key) when the resumed run finds the gateway down; a gateway that is down given up on
 * after the retry budget (nothing undone); no card data sent; a call slower than the lease made
 * again with the same key. */
#include "harness.h"

#include <ctype.h>

#include "rydes/ids.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/payments.h"
#include "rydes/saga.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* Ledger rows of fare of kind. */
static long long ledger(const char *fare, const char *kind)
{
    return harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND kind = '%s'",
                        fare, kind);
}

/* Does the fare balance in view fare_ledger: charged = credited + refunded? */
static bool balanced(const char *fare)
{
    return harness_sqlf("SELECT count(*) FROM fare_ledger WHERE fare_id = '%s' AND balanced",
                        fare) == 1;
}

/* Was every pre-authorization of fare charged or voided? */
static bool no_open_preauth(const char *fare)
{
    return harness_sqlf(
               "SELECT count(*) FROM fare_ledger WHERE fare_id = '%s' AND "
               "preauths <= voids + (SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' "
               "AND kind = 'charge')",
               fare, fare) == 1;
}

/* Messages of queue (any state) published for fare (attribute fare_id). */
static long long published(const char *queue, const char *fare)
{
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s' AND m.attributes->'fare_id'->>'value' = '%s'",
                        queue, fare);
}

/* The step columns of fare at position: "status attempts compensation_attempts". */
static void step_row(const char *fare, int position, char *out, size_t n)
{
    char *v = harness_sqlf_text("SELECT status || ' ' || attempts || ' ' || compensation_attempts "
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
    double until = harness_now_s() + timeout_s;
    for (;;) {
        json_t *f = get_json(s, path);
        if (is_final(f))
            return f;
        if (harness_now_s() > until) {
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
    long long got = harness_wait_sql(sql, n, timeout_s);
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

/* The detail of step name of fare f. */
static const char *detail_of(json_t *f, const char *name)
{
    json_t *steps = json_object_get(f, "steps");
    for (size_t i = 0; i < json_array_size(steps); i++)
        if (strcmp(json_str(json_array_get(steps, i), "name"), name) == 0)
            return json_str(json_array_get(steps, i), "detail");
    ck_abort_msg("no step %s", name);
    return NULL;
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
    char *v =
        harness_sqlf_text("SELECT m.attributes->'is_successful'->>'value' FROM messages m JOIN "
                          "queues q ON q.id = m.queue_id WHERE q.name = '%s' AND "
                          "m.attributes->'fare_id'->>'value' = '%s'",
                          queue, fare);
    ck_assert_str_eq(v, strcmp(outcome, "succeeded") == 0 ? "true" : "false");
    free(v);
    /* the body as a consumer receives it: peek the queue */
    char *body = harness_sqlf_text(
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

/* The fare's outcome went to fare-failed once, marked for an operator. */
static void assert_operator_outcome(const char *fare, const char *customer)
{
    assert_outcome_message("fare-failed", fare, customer, "failed");
    char *v = harness_sqlf_text(
        "SELECT m.attributes->'needs_operator'->>'value' FROM messages m JOIN queues q ON "
        "q.id = m.queue_id WHERE q.name = 'fare-failed' AND m.attributes->'fare_id'->>'value' = "
        "'%s'",
        fare);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "true");
    free(v);
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
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE ride_id = '%s'", ok), 0);

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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND ride_id = '%s' AND "
                     "customer = 'r1-alice' AND amount = 61.50 AND card_last4 IS NULL",
                     ok_fare, ok),
        1);
    ck_assert_int_eq(ledger(ok_fare, "preauth"), 1);
    ck_assert_int_eq(ledger(ok_fare, "charge"), 1);
    ck_assert_int_eq(ledger(ok_fare, "credit"), 1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s'", ok_fare), 3);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND "
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
    ck_assert_int_eq(
        harness_wait_sql("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                         "WHERE q.name = 'customer-accounting'",
                         0, 5),
        0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE ride_id IN ('%s', '%s')", ok, bad), 2);
    down(s);
}
END_TEST

/* customer-accounting believes nothing of a ride event but its id: anyone who may send to the
 * queue could write one. An event naming a stored ride (in capitals, with another customer and
 * a fare of a million) starts that ride's fare for its own customer and amount, once; events
 * naming no stored ride, or none at all, start nothing and stay unacked for the dead-letter
 * queue. */
START_TEST(a_ride_event_starts_only_the_stored_rides_fare)
{
    struct harness_server *const s = &gws[0];
    up(s, no_workers);
    char ride[IDS_UUID_LEN], upper[IDS_UUID_LEN];
    make_ride(s, "sq-owner", "20", ride);
    harness_deliver_outbox();
    struct response r;
    harness_admin(s, "POST", "/queues/customer-accounting:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    for (int i = 0; i < IDS_UUID_LEN; i++)
        upper[i] = (char)toupper((unsigned char)ride[i]);
    const char *const forged[] = {ride, upper, "7d444840-9dc0-11d1-b245-5ffdce74fad2", NULL};
    for (int i = 0; i < 4; i++) {
        char body[300];
        if (forged[i])
            snprintf(body, sizeof body,
                     "{\"body\": {\"id\": \"%s\", \"customer\": \"mallory\", \"fare\": "
                     "1000000}}",
                     forged[i]);
        else
            snprintf(body, sizeof body, "{\"body\": {\"customer\": \"mallory\", \"fare\": 5}}");
        harness_admin(s, "POST", "/queues/customer-accounting/messages", body, &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    down(s);
    up(s, ride_and_saga_workers);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM fares WHERE ride_id = '%s'", ride);
    ck_assert_int_eq(harness_wait_sql(sql, 1, 10), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'ride-%s' AND customer = "
                                  "'sq-owner' AND amount = 20",
                                  ride),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE customer = 'mallory'"), 0);
    /* the events naming no stored ride or none wait for their next receive, then the dead
     * letters */
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                      "m.queue_id WHERE q.name = 'customer-accounting' AND "
                                      "m.receive_count >= 1",
                                      2, 10),
                     2);
    down(s);
}
END_TEST

/* The executor keeps a fare's customer whole, however long the row has it (a fare started by
 * SQL, or before the checks of the entry points): the gateway is called for that customer. */
START_TEST(a_long_customer_is_charged_whole)
{
    struct harness_server *const s = &gws[0];
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM saga_start('long-customer', NULL, repeat('c', 900), "
                     "12.5, '4242', 'h', '{register,preauthorize,charge,credit_account,"
                     "complete,publish}', NULL, NULL) WHERE saga_start"),
        1);
    up(s, saga_workers);
    json_t *f = wait_fare(s, "long-customer", FINAL_S);
    ck_assert_str_eq(json_str(f, "status"), "succeeded");
    json_decref(f);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = "
                                  "'long-customer' AND customer = repeat('c', 900)"),
                     3);
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
    double until = harness_now_s() + 8;
    json_t *f = NULL;
    for (;;) {
        f = get_json(s, path);
        if (is_final(f) || harness_now_s() > until)
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
        harness_sqlf("SELECT count(*) FROM payment_ledger WHERE kind = 'charge' AND customer = "
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
    {"fareAmount", "\"-0\"", "fareAmount"},
    {"fareAmount", "\"20.\"", "fareAmount"},
    {"fareAmount", "\".50\"", "fareAmount"},
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
    long long fares = harness_sqlf("SELECT count(*) FROM fares");
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

    long long now = harness_sqlf("SELECT count(*) FROM fares");
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
    char *union_sql = harness_sqlf_text(
        "SELECT string_agg(format('SELECT %%L AS t FROM %%I.%%I x WHERE x::text LIKE %%L', "
        "table_name, table_schema, table_name, '%%%s%%'), ' UNION ALL ') FROM "
        "information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        text);
    ck_assert_ptr_nonnull(union_sql);
    char *found = harness_sqlf_text("SELECT coalesce(string_agg(DISTINCT t, ','), '') FROM (%s) q",
                                    union_sql);
    free(union_sql);
    return found;
}

static void short_statements(struct config *cfg)
{
    set(cfg, "db-statement-timeout-ms", "300");
}

/* A fare whose steps cannot be read (their table held past the statement timeout) is 503 with
 * Retry-After, not a 200 without steps (the failed read was taken for an empty list). */
START_TEST(a_fare_whose_steps_cannot_be_read_is_503)
{
    harness_stop(&srv);
    harness_start(&srv, short_statements); /* the fixture's teardown stops this one */
    start_fare(&srv, "locked-steps", "lou", "4.20");
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PQclear(PQexec(pg, "BEGIN"));
    PQclear(PQexec(pg, "LOCK TABLE saga_steps IN ACCESS EXCLUSIVE MODE"));
    struct response r;
    harness_request(&srv, "GET", "/fares/locked-steps", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    assert_problem(&r, 503);
    ck_assert(response_header(&r, "Retry-After", (char[16]){0}, 16));
    response_cleanup(&r);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    json_t *f = get_json(&srv, "/fares/locked-steps");
    ck_assert_int_eq(json_array_size(json_object_get(f, "steps")), NSTEPS);
    json_decref(f);
}
END_TEST

/* A GET /fares on its own thread (no ck_assert there). */
struct fare_get {
    const char *path;
    struct response r;
};

static void *fare_get_main(void *arg)
{
    struct fare_get *g = arg;
    harness_request(&srv, "GET", g->path, HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &g->r);
    return NULL;
}

/* A fare's status and its steps come from one snapshot: a GET that reads them around the commit
 * of a step never shows one without the other (it read the fare, then its steps in a second
 * statement). The test's transaction finishes the fare while the GET waits on its lock. */
START_TEST(a_fare_is_read_in_one_snapshot)
{
    start_fare(&srv, "one-view", "viv", "5.00");
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PQclear(PQexec(pg, "BEGIN"));
    PQclear(PQexec(pg, "LOCK TABLE saga_steps IN ACCESS EXCLUSIVE MODE"));
    PQclear(PQexec(pg, "UPDATE fares SET status = 'succeeded', outcome = 'succeeded', "
                       "phase = 'finished' WHERE id = 'one-view'"));
    PQclear(PQexec(pg, "UPDATE saga_steps SET status = 'done', attempts = 1 "
                       "WHERE fare_id = 'one-view'"));
    static struct fare_get g; /* the thread outlives a failed check's jump out of here */
    g = (struct fare_get){.path = "/fares/one-view"};
    pthread_t t;
    pthread_create(&t, NULL, fare_get_main, &g);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND datname = current_database() "
                                      "AND query LIKE '%saga_steps%'",
                                      1, 10),
                     1);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    pthread_join(t, NULL);
    ck_assert_msg(g.r.status == 200, "%ld %s", g.r.status, buf_str(&g.r.body));
    ck_assert_str_eq(json_str(g.r.json, "status"), "succeeded");
    json_t *steps = json_object_get(g.r.json, "steps");
    ck_assert_int_eq(json_array_size(steps), NSTEPS);
    ck_assert_str_eq(json_str(json_array_get(steps, 0), "status"), "done");
    response_cleanup(&g.r);
}
END_TEST

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
        {"fareAmount", "\"$20.000\""}, /* trailing zeros are no decimals */
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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-0' AND amount = 20"), 1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-4' AND amount = 0.50"), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'v-form-9' AND "
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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1' AND ride_id IS NULL "
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
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1'"), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = 'p-fare-1'"),
                     NSTEPS);

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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = 'p-fare-1' AND amount = 20 AND "
                     "customer = 'p-carol' AND card_last4 = '%s'",
                     CARD_LAST4),
        1);

    /* a fare of 0 sent again as the JSON number -0: the same fare, not another one (409) */
    const char *zero[] = {"0", "-0", "-0.0", "\"$0.00\""};
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++) {
        char z[400];
        snprintf(z, sizeof z,
                 "{\"customerId\": \"p-carol\", \"fareId\": \"p-fare-0\", \"fareAmount\": %s, "
                 "\"cc\": \"" CARD_DIGITS "\", \"expiryDate\": \"" CARD_EXPIRY
                 "\", \"cvv\": \"737\"}",
                 zero[i]);
        post_fares(&srv, z, &b);
        ck_assert_msg(b.status == 202, "fareAmount %s: %ld %s", zero[i], b.status,
                      buf_str(&b.body));
        response_cleanup(&b);
    }

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
        harness_sqlf("SELECT count(*) FROM fares WHERE row(fares.*)::text LIKE '%%%s%%'",
                     CARD_DIGITS),
        0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE "
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
    /* pre-authorized five times over without an answer: given up, then voided by its key */
    {"_lost_auth",
     "failed",
     {"done", "compensated", "skipped", "skipped", "done", "done"},
     {1, 5, 0, 0, 1, 1},
     {0, 1, 0, 0, 0, 0},
     {1, 1, 0, 0, 0, 0, 0}},
    /* charged without an answer: refunded by the charge's key, then the pre-authorization voided */
    {"_lost_charge",
     "failed",
     {"done", "compensated", "compensated", "skipped", "done", "done"},
     {1, 1, 5, 0, 1, 1},
     {0, 1, 1, 0, 0, 0},
     {1, 1, 1, 1, 0, 0, 0}},
};
#define NPATHS ((int)(sizeof paths / sizeof *paths))

/* Checks fare (of customer, posted for amount) against path p. */
/* Set while checking fares whose process was killed: a kill between the simulator's _flaky
 * marker and the saga's record of that attempt leaves one attempt fewer on record. */
static bool attempts_may_be_one_short;

static void assert_path(struct harness_server *s, const char *fare, const char *customer,
                        double amount, const struct path *p)
{
    json_t *f = wait_fare(s, fare, FINAL_S);
    assert_fare(f, fare, NULL, amount, p->outcome, p->status);
    ck_assert_msg(json_is_false(json_object_get(f, "needs_operator")), "%s needs an operator",
                  fare);
    for (int i = 0; i < NSTEPS; i++) {
        char row[64], want[64], short_one[64], short_comp[64];
        step_row(fare, i, row, sizeof row);
        snprintf(want, sizeof want, "%s %d %d", p->status[i], p->attempts[i], p->compensations[i]);
        snprintf(short_one, sizeof short_one, "%s %d %d", p->status[i], p->attempts[i] - 1,
                 p->compensations[i]);
        /* the flaky void compensation is an attempt too: a kill can lose its record the same way */
        snprintf(short_comp, sizeof short_comp, "%s %d %d", p->status[i], p->attempts[i],
                 p->compensations[i] - 1);
        bool ok =
            strcmp(row, want) == 0 ||
            (attempts_may_be_one_short && p->attempts[i] > 1 && strcmp(row, short_one) == 0) ||
            (attempts_may_be_one_short && p->compensations[i] > 1 && strcmp(row, short_comp) == 0);
        ck_assert_msg(ok, "%s step %s: %s, expected %s", fare, step_names[i], row, want);
        /* the representation counts both */
        long long shown = attempts_of(f, step_names[i]);
        ck_assert(shown == p->attempts[i] + p->compensations[i] ||
                  (attempts_may_be_one_short && shown == p->attempts[i] + p->compensations[i] - 1));
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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND NOT ("
                     "idempotency_key LIKE 'fare:%s:%%') ",
                     fare, fare),
        0);
    ck_assert_int_eq(
        harness_sqlf(
            "SELECT count(*) FROM payment_ledger WHERE fare_id = '%s' AND kind IN ('charge', "
            "'preauth', 'credit', 'void', 'refund') AND (amount <> %.2f OR customer <> '%s')",
            fare, amount, customer),
        0);
    if (p->rows[1])
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE idempotency_key = "
                                      "'fare:%s:preauthorize:compensate' AND kind = 'void'",
                                      fare),
                         1);
    if (p->rows[3])
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE idempotency_key = "
                                      "'fare:%s:charge:compensate' AND kind = 'refund'",
                                      fare),
                         1);
    ck_assert_msg(balanced(fare), "%s does not balance", fare);
    ck_assert_msg(no_open_preauth(fare), "%s leaves a pre-authorization open", fare);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND outcome = '%s' AND "
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
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM stuck_sagas WHERE id = 'op-1' AND step = 'charge' "
                     "AND status = 'failed' AND compensation_attempts = 6 AND amount = 33.30"),
        1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = 'op-1' AND status = 'failed' "
                     "AND outcome = 'failed' AND needs_operator"),
        1);
    /* stays there: nothing runs it again */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'op-1' AND status IN "
                                  "('pending', 'running')"),
                     0);
    ck_assert_int_ge(metric(s, "rydes_sagas_total{outcome=\"needs_operator\"}"), before + 1);
    assert_operator_outcome("op-1", customer); /* told, once: downstream knows it failed */
    /* money taken and not returned: that is the operator's case */
    ck_assert_int_eq(ledger("op-1", "charge"), 1);
    ck_assert_int_eq(ledger("op-1", "refund"), 0);
    ck_assert_int_eq(ledger("op-1", "credit"), 0);
    ck_assert_int_eq(ledger("op-1", "declined"), 2); /* the credit and the refund, once per key */
    ck_assert(!balanced("op-1"));
    ck_assert_int_eq(
        harness_sqlf("SELECT (charged::text = '33.30' AND refunded = 0 AND credited = 0)::int "
                     "FROM fare_ledger WHERE fare_id = 'op-1'"),
        1);
    down(s);
}
END_TEST

/* A credit whose answer never came may have reached the account, and nothing undoes a credit:
 * refunding the customer could pay out twice, so the fare waits for an operator as it is. */
START_TEST(a_credit_without_an_answer_is_left_to_an_operator)
{
    struct harness_server *const s = &gws[0];
    up(s, saga_workers);
    long long before = metric(s, "rydes_sagas_total{outcome=\"needs_operator\"}");
    ck_assert_int_ge(before, 0);
    start_fare(s, "lost-credit-1", "lc-fred_lost_credit", "27.00");
    json_t *f = wait_fare(s, "lost-credit-1", FINAL_S);
    char *text = json_dumps(f, JSON_COMPACT);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", text);
    free(text);
    ck_assert_msg(strcmp(json_str(f, "status"), "failed") == 0, "%s", copy);
    ck_assert_msg(json_is_true(json_object_get(f, "needs_operator")), "%s", copy);
    const char *detail = detail_of(f, "credit_account");
    ck_assert_msg(detail && strstr(detail, "unknown") && strstr(detail, "operator"), "%s", copy);
    json_decref(f);
    const char *want[] = {"done 1 0", "done 1 0", "done 1 0", "failed 5 0"};
    for (int i = 0; i < 4; i++) {
        char row[64];
        step_row("lost-credit-1", i, row, sizeof row);
        ck_assert_msg(strcmp(row, want[i]) == 0, "step %d: %s, expected %s", i, row, want[i]);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_sagas WHERE id = 'lost-credit-1' "
                                  "AND step = 'credit_account' AND status = 'failed'"),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'lost-credit-1' AND "
                                  "status = 'failed' AND phase = 'finished' AND needs_operator"),
                     1);
    ck_assert_int_ge(metric(s, "rydes_sagas_total{outcome=\"needs_operator\"}"), before + 1);
    assert_operator_outcome("lost-credit-1", "lc-fred_lost_credit");
    /* nothing undone: the charge and the (unanswered) credit stand */
    ck_assert_int_eq(ledger("lost-credit-1", "charge"), 1);
    ck_assert_int_eq(ledger("lost-credit-1", "credit"), 1);
    ck_assert_int_eq(ledger("lost-credit-1", "refund"), 0);
    ck_assert_int_eq(ledger("lost-credit-1", "void"), 0);
    down(s);
}
END_TEST

/* A connection of the test's own for calling the simulator directly; PQfinish its pg. */
static struct db_conn simulator_conn(void)
{
    char err[256];
    PGconn *pg = db_connect(harness_db_url(), 5, NULL, err, sizeof err);
    ck_assert_msg(pg != NULL, "connect: %s", err);
    return (struct db_conn){.pg = pg};
}

/* The simulator's undo by key: of a call that happened it undoes that call; of one that never
 * happened it answers that there is nothing to undo and cancels the key, so that the call, should
 * it still come, is refused. */
START_TEST(an_undo_by_key_cancels_a_call_that_never_happened)
{
    struct db_conn c = simulator_conn();
    struct payments *p = payments_simulator();
    struct pay_result r;
    /* a charge that happened, undone by its key */
    struct pay_request charge = {
        .key = "fare:ubk-1:charge", .fare_id = "ubk-1", .customer = "ubk-al", .amount = 5};
    ck_assert_int_eq(payments_call(p, &c, PAY_CHARGE, &charge, &r), PAY_OK);
    struct pay_request undo = {.key = "fare:ubk-1:charge:compensate",
                               .fare_id = "ubk-1",
                               .customer = "ubk-al",
                               .amount = 5,
                               .original_key = "fare:ubk-1:charge"};
    ck_assert_int_eq(payments_call(p, &c, PAY_REFUND, &undo, &r), PAY_OK);
    ck_assert(r.reference[0]);
    ck_assert_int_eq(ledger("ubk-1", "refund"), 1);
    /* a charge that never happened: nothing to undo, and it is cancelled */
    undo.key = "fare:ubk-2:charge:compensate";
    undo.fare_id = "ubk-2";
    undo.original_key = "fare:ubk-2:charge";
    for (int i = 0; i < 2; i++) { /* the same answer when asked again */
        ck_assert_int_eq(payments_call(p, &c, PAY_REFUND, &undo, &r), PAY_OK);
        ck_assert_str_eq(r.reference, "");
        ck_assert_msg(strstr(r.detail, "nothing to undo"), "%s", r.detail);
    }
    ck_assert_int_eq(ledger("ubk-2", "refund"), 0);
    ck_assert_int_eq(ledger("ubk-2", "cancelled"), 1);
    charge.key = "fare:ubk-2:charge";
    charge.fare_id = "ubk-2";
    ck_assert_int_eq(payments_call(p, &c, PAY_CHARGE, &charge, &r), PAY_DECLINED);
    ck_assert_int_eq(ledger("ubk-2", "charge"), 0);
    payments_free(p);
    PQfinish(c.pg);
}
END_TEST

/* A fare balances only with no pre-authorization left open: a hold still on the card is owed
 * to the customer, whatever the money columns say. */
START_TEST(an_open_preauthorization_is_not_balanced)
{
    struct db_conn c = simulator_conn();
    struct payments *p = payments_simulator();
    struct pay_result r;
    free(harness_sql(harness_db_url(),
                     "INSERT INTO fares (id, customer, amount, status, phase, outcome) VALUES "
                     "('held-1', 'held-al', 7, 'failed', 'finished', 'failed')"));
    struct pay_request hold = {
        .key = "fare:held-1:preauth", .fare_id = "held-1", .customer = "held-al", .amount = 7};
    ck_assert_int_eq(payments_call(p, &c, PAY_PREAUTH, &hold, &r), PAY_OK);
    ck_assert(!balanced("held-1"));
    char code[sizeof r.reference];
    snprintf(code, sizeof code, "%s", r.reference); /* r is the next call's answer */
    struct pay_request release = {.key = "fare:held-1:preauth:compensate",
                                  .fare_id = "held-1",
                                  .customer = "held-al",
                                  .amount = 7,
                                  .reference = code};
    ck_assert_int_eq(payments_call(p, &c, PAY_VOID, &release, &r), PAY_OK);
    ck_assert(balanced("held-1"));
    payments_free(p);
    PQfinish(c.pg);
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
    int ncompensating = ncrashes - NSTEPS;
    /* a charge whose answers are lost (_lost_charge): after its third attempt, and after the
     * refund by its key (the sixth call: five attempts, then the compensation) */
    plan_crash("crashl-attempt", "charge", 3);
    plan_crash("crashl-refund", "charge", 6);
    int nforward = NSTEPS;
    saga_crash_hook = crash_planned;
    struct harness_server *const s = &gws[0];
    up(s, saga_workers);
    double t0 = harness_now_s();
    const char *customers[16];
    const struct path *want[16];
    for (int i = 0; i < ncrashes; i++) {
        bool compensating = i >= nforward && i < nforward + ncompensating;
        customers[i] = i < nforward   ? "cr-frank"
                       : compensating ? "cr-gina_fail_credit"
                                      : "cr-hal_lost_charge";
        want[i] = i < nforward ? &paths[0] : compensating ? &paths[3] : &paths[8];
        start_fare(s, crashes[i].fare, customers[i], "\"$17.25\"");
    }
    wait_all_final("crash-", nforward, FINAL_S);
    wait_all_final("crashc-", ncompensating, FINAL_S);
    wait_all_final("crashl-", ncrashes - nforward - ncompensating, FINAL_S);
    double took = harness_now_s() - t0;
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
        assert_path(s, fare, customers[i], 17.25, want[i]);
        /* resumed only once the lease ran out */
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND "
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
    double until = harness_now_s() + 10;
    while (!atomic_load(&slow_done) && harness_now_s() < until)
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
    long long progress =
        harness_wait_sql("SELECT least(count(*), 20) FROM payment_ledger WHERE fare_id "
                         "LIKE 'kill-%' AND kind <> 'transient'",
                         20, 20);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    worker_pid = 0;
    long long final_at_kill = harness_sqlf("SELECT count(*) FROM fares WHERE id LIKE 'kill-%%' AND "
                                           "status IN ('succeeded', 'failed')");
    ck_assert_msg(progress == 20, "the worker made no progress (its log: %s)", log);
    unlink(log);
    down(s);
    if (final_at_kill == n)
        fprintf(stderr, "test_fares: every fare was final before the kill\n");
    up(s, saga_workers);
    wait_all_final("kill-", n, FINAL_S);
    attempts_may_be_one_short = true;
    for (int i = 0; i < n; i++) {
        char fare[32];
        snprintf(fare, sizeof fare, "kill-%02d", i);
        if (i % 3)
            assert_path(s, fare, "kl-ivy_flaky", 5.55, &paths[6]);
        else
            assert_path(s, fare, "kl-jack_flaky_fail_charge", 5.55, &paths[5]);
    }
    attempts_may_be_one_short = false;
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
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id LIKE 'two-%%' AND ("
                                  "(customer = 'tw-liam_fail_charge') <> (status = 'failed') OR "
                                  "needs_operator)"),
                     0);
    /* the ledger: each operation once per fare, every fare balanced with nothing left open */
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM (SELECT fare_id, kind FROM payment_ledger WHERE "
                     "fare_id LIKE 'two-%%' AND kind <> 'transient' GROUP BY 1, 2 "
                     "HAVING count(*) > 1) d"),
        0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                                  "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'charge'"),
                     n - (n + 1) / 3);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                                  "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'credit'"),
                     n - (n + 1) / 3);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                                  "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind = 'void'"),
                     (n + 1) / 3);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fare_ledger WHERE fare_id LIKE 'two-%%' AND "
                     "balanced AND preauths = 1 AND preauths = voids + (charged > 0)::int"),
        n);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM payment_ledger l JOIN fares f ON f.id = "
                     "l.fare_id WHERE f.id LIKE 'two-%%' AND l.kind IN ('preauth', 'charge', "
                     "'credit', 'void') AND l.amount <> f.amount"),
        0);
    /* each published exactly once, to the right queue */
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                     "WHERE q.name IN ('fare-succeeded', 'fare-failed') AND "
                     "m.attributes->'fare_id'->>'value' LIKE 'two-%%'"),
        n);
    ck_assert_int_eq(
        harness_sqlf(
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
    char *st = harness_sqlf_text("SELECT string_agg(id || ' ' || status || ' step ' || step, ', ') "
                                 "FROM fares WHERE id IN ('rs-1', 'rs-2')");
    char copy[200];
    snprintf(copy, sizeof copy, "%s", st ? st : "none");
    free(st);
    ck_assert_msg(
        harness_sqlf("SELECT count(*) FROM fares WHERE id IN ('rs-1', 'rs-2') AND status = "
                     "'pending' AND step = 0") == 2,
        "nothing runs them yet: %s", copy);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id IN ('rs-1', "
                                  "'rs-2')"),
                     0);
    down(s);
    up(s, saga_workers);
    assert_path(s, "rs-1", "rs-nora", 8, &paths[0]);
    assert_path(s, "rs-2", "rs-oscar_fail_auth", 9, &paths[1]);
    down(s);
}
END_TEST

/* Starts fare id over s, stops s, and runs the fare once on a connection of this test with
 * an executor that stops when *stopping says so (and the crash hook as the caller set it). */
static void run_once_offline(struct harness_server *s, const char *id, const char *customer,
                             const char *amount, atomic_bool *stopping)
{
    up(s, no_workers);
    start_fare(s, id, customer, amount);
    down(s);
    char err[256];
    PGconn *pg = db_connect(harness_db_url(), 5, NULL, err, sizeof err);
    ck_assert_msg(pg != NULL, "connect: %s", err);
    struct db_conn c = {.pg = pg};
    struct saga_env env = {
        .payments = payments_simulator(), .lease_seconds = 60, .stopping = stopping};
    bool ran = false;
    ck_assert_int_eq(saga_run_one(&c, &env, &ran), MQ_OK);
    ck_assert(ran);
    payments_free(env.payments);
    PQfinish(pg);
}

/* A run that begins while the process stops gives its fare back at once (lease cleared, due
 * now) instead of holding it for the lease, and a gateway that starts later finishes it. */
START_TEST(a_stopping_process_pauses_its_saga_between_steps)
{
    saga_crash_hook = NULL;
    struct harness_server *const s = &gws[0];
    atomic_bool stopping = true;
    run_once_offline(s, "pause-1", "pa-quinn", "\"$7.00\"", &stopping);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'pause-1' AND lease IS "
                                  "NULL AND next_attempt_at <= now() AND step = 0"),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = 'pause-1'"),
                     0);
    up(s, saga_workers); /* resumed at once, not after the 60 s lease */
    assert_path(s, "pause-1", "pa-quinn", 7, &paths[0]);
    down(s);
}
END_TEST

/* The stop flag of the next test: raised once a run has done its register step. */
static atomic_bool stop_after_register_flag;

static bool stop_after_register(const char *fare_id, const char *step)
{
    (void)fare_id;
    if (strcmp(step, "register") == 0)
        atomic_store(&stop_after_register_flag, true);
    return false; /* no crash: the step is recorded, and the run pauses before the next */
}

/* A run paused before a payment step gives the step back as it found it: the record of the
 * step before marked it in flight, but it was never called, so a resumed run must not treat
 * it as a call whose answer was lost. */
START_TEST(a_pause_before_a_payment_step_leaves_its_outcome_known)
{
    struct harness_server *const s = &gws[0];
    atomic_store(&stop_after_register_flag, false);
    saga_crash_hook = stop_after_register;
    run_once_offline(s, "pause-2", "pa-rowan", "\"$9.00\"", &stop_after_register_flag);
    saga_crash_hook = NULL;
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'pause-2' AND lease IS "
                                  "NULL AND step = 1"),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = 'pause-2' "
                                  "AND name = 'preauthorize' AND NOT outcome_unknown"),
                     1);
    up(s, saga_workers);
    assert_path(s, "pause-2", "pa-rowan", 9, &paths[0]);
    down(s);
}
END_TEST

/* ---- a real payment gateway over HTTP (RYDES_PAYMENT_URL) ------------------------------------ */

/* A fake payment gateway in this process (libmicrohttpd) that records every request and answers
 * as its body's customer scripts it:
 *   "decline-auth", "decline-charge", "decline-credit": 402 on /preauthorizations, /charges or
 *   /credits;
 *   "flaky": 503 to the first request of each Idempotency-Key ("throttled": 429, "timeout": 408);
 *   "lost-charge": 504 to every /charges; "forbidden-charge": 504 to the first, then 403;
 *   "slow": the first request of each key is answered only after PAY_SLOW_MS (the lease is 1 s);
 *   "created": 201 rather than 200;
 *   "longref": references of 90-odd characters (PAY_LONG_SUFFIX appended);
 *   "hugeref": references of 300-odd characters, more than a reference is kept whole;
 *   "htmlpage": a 2xx whose body is an HTML page; "numref": the reference 12345 as a JSON
 *   number; "noref": a 2xx JSON object without a reference; "emptybody": a 2xx without a body.
 * Anything else is 200 {"reference": "<path>-<n>"} (n counting every request). A key answered
 * with a 2xx before gets the same reference again, as a real gateway's idempotency has it. */

#define PAY_MAX_HITS 256
#define PAY_SLOW_MS  2000
/* 72 characters: a gateway's reference longer than 64 (an opaque token, as some hand back) */
#define PAY_LONG_SUFFIX "-tok_7Hq2xV9mLp3RkT8wZc4NbY6dFs1GjA5eUo0iKr2yQh8vXn3MzB7tLw4PaS9cDf6gJe1"

/* One request the gateway got. Written once under pgw.mu, never changed afterwards. */
struct pay_hit {
    char method[16];
    char path[64];
    char key[200]; /* Idempotency-Key ("" when there was none) */
    char content_type[80];
    char *headers; /* every header, "name: value\n" each */
    char *body;
    json_t *json;        /* the body parsed, or NULL */
    unsigned status;     /* what it was answered */
    char reference[400]; /* the reference of a 2xx answer */
    double at;           /* CLOCK_MONOTONIC seconds when the body was complete */
};

static struct {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu;
    struct pay_hit hits[PAY_MAX_HITS];
    int n;
} pgw;
static int refused_fd = -1;  /* a socket bound and never listening: a gateway that is down */
static char payment_url[64]; /* what http_gateway sets payment-url to */

static enum MHD_Result pay_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    (void)kind;
    buf_printf(cls, "%s: %s\n", key, value ? value : "");
    return MHD_YES;
}

/* The scripted status of a request for path with key, from customer. Under pgw.mu. */
static unsigned pay_scripted(const char *path, const char *key, const char *customer,
                             const char **kept)
{
    int earlier = 0;
    *kept = NULL;
    for (int i = 0; i < pgw.n; i++)
        if (strcmp(pgw.hits[i].key, key) == 0) {
            earlier++;
            if (!*kept && pgw.hits[i].status / 100 == 2)
                *kept = pgw.hits[i].reference;
        }
    if (strstr(customer, "lost-charge") && strcmp(path, "/charges") == 0)
        return 504; /* every time: the charge's outcome stays unknown */
    if (strstr(customer, "forbidden-charge") && strcmp(path, "/charges") == 0)
        return earlier == 0 ? 504 : 403; /* then something in front of the gateway refuses */
    if (earlier == 0 && strstr(customer, "flaky"))
        return 503;
    if (earlier == 0 && strstr(customer, "throttled"))
        return 429;
    if (earlier == 0 && strstr(customer, "timeout"))
        return 408;
    if (earlier == 0 && strstr(customer, "redirected"))
        return 307; /* something in front of the gateway: no answer for the call */
    if ((strstr(customer, "decline-auth") && strcmp(path, "/preauthorizations") == 0) ||
        (strstr(customer, "decline-charge") && strcmp(path, "/charges") == 0) ||
        (strstr(customer, "decline-credit") && strcmp(path, "/credits") == 0))
        return 402;
    return strstr(customer, "created") ? 201 : 200;
}

static enum MHD_Result pay_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)cls;
    (void)version;
    struct buf *upload = *con_cls;
    if (!upload) { /* the headers: the body follows */
        upload = xcalloc(1, sizeof *upload);
        buf_init(upload);
        *con_cls = upload;
        return MHD_YES;
    }
    if (*upload_data_size) {
        buf_append(upload, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct buf headers;
    buf_init(&headers);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, pay_collect_header, &headers);
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    char *body = buf_steal(upload);
    json_t *json = json_loads(body, 0, NULL);
    const char *customer = json_str(json, "customer");
    const char *kept;
    char reference[400] = "";
    pthread_mutex_lock(&pgw.mu);
    unsigned status = pay_scripted(url, key ? key : "", customer ? customer : "", &kept);
    bool slow = customer && strstr(customer, "slow") && !kept;
    if (status / 100 == 2) {
        if (kept)
            snprintf(reference, sizeof reference, "%s", kept);
        else
            snprintf(reference, sizeof reference, "%s-%d%s%s", url[0] ? url + 1 : url, pgw.n + 1,
                     customer && strstr(customer, "longref") ? PAY_LONG_SUFFIX : "",
                     customer && strstr(customer, "hugeref")
                         ? PAY_LONG_SUFFIX PAY_LONG_SUFFIX PAY_LONG_SUFFIX PAY_LONG_SUFFIX
                         : "");
    }
    if (pgw.n < PAY_MAX_HITS) {
        struct pay_hit *h = &pgw.hits[pgw.n];
        snprintf(h->method, sizeof h->method, "%s", method);
        snprintf(h->path, sizeof h->path, "%s", url);
        snprintf(h->key, sizeof h->key, "%s", key ? key : "");
        snprintf(h->content_type, sizeof h->content_type, "%s", ct ? ct : "");
        h->headers = buf_steal(&headers);
        h->body = body;
        h->json = json;
        h->status = status;
        snprintf(h->reference, sizeof h->reference, "%s", reference);
        h->at = harness_now_s();
        pgw.n++;
    } else {
        buf_cleanup(&headers);
        free(body);
        json_decref(json);
    }
    pthread_mutex_unlock(&pgw.mu);
    if (slow)
        harness_sleep_ms(PAY_SLOW_MS);
    char answer[480];
    if (status / 100 == 2 && customer && strstr(customer, "htmlpage"))
        snprintf(answer, sizeof answer, "<html>down for maintenance</html>");
    else if (status / 100 == 2 && customer && strstr(customer, "numref"))
        snprintf(answer, sizeof answer, "{\"reference\": 12345}");
    else if (status / 100 == 2 && customer && strstr(customer, "emptybody"))
        answer[0] = '\0';
    else if (status / 100 == 2 && customer && strstr(customer, "noref"))
        snprintf(answer, sizeof answer, "{\"status\": \"ok\"}");
    else if (status / 100 == 2)
        snprintf(answer, sizeof answer, "{\"reference\": \"%s\"}", reference);
    else
        snprintf(answer, sizeof answer, "{\"error\": \"%s\"}",
                 status == 402 ? "card_declined" : "try_again");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(answer), answer, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void pay_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct buf *upload = *con_cls;
    if (upload) {
        buf_cleanup(upload);
        free(upload);
        *con_cls = NULL;
    }
}

/* Starts the fake gateway and points payment_url at it. */
/* Starts the fake gateway on port (0: any free one). */
static void pgw_start_on(uint16_t port)
{
    memset(&pgw, 0, sizeof pgw);
    pthread_mutex_init(&pgw.mu, NULL);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    pgw.daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, pay_on_request, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED,
        pay_on_completed, NULL, MHD_OPTION_END);
    ck_assert_msg(pgw.daemon != NULL, "the fake payment gateway did not start");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(pgw.daemon, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert(info != NULL && info->port != 0);
    pgw.port = info->port;
    snprintf(payment_url, sizeof payment_url, "http://127.0.0.1:%d", pgw.port);
}

static void pgw_start(void)
{
    pgw_start_on(0);
}

static void pgw_stop(void)
{
    if (!pgw.daemon)
        return;
    MHD_stop_daemon(pgw.daemon);
    pgw.daemon = NULL;
    for (int i = 0; i < pgw.n; i++) {
        free(pgw.hits[i].headers);
        free(pgw.hits[i].body);
        json_decref(pgw.hits[i].json);
    }
    pgw.n = 0;
    pthread_mutex_destroy(&pgw.mu);
}

/* Points payment_url at a port where nothing listens (a bound socket that never listens, kept
 * until the teardown, so no one else can take the port). */
static void gateway_down(void)
{
    refused_fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(refused_fd, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(refused_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(refused_fd, (struct sockaddr *)&addr, &len), 0);
    snprintf(payment_url, sizeof payment_url, "http://127.0.0.1:%d", ntohs(addr.sin_port));
}

static void http_teardown(void)
{
    saga_teardown(); /* the gateways (and their executors) first: nothing calls out any more */
    pgw_stop();
    if (refused_fd >= 0) {
        close(refused_fd);
        refused_fd = -1;
    }
    payment_url[0] = '\0';
}

static void http_gateway(struct config *cfg)
{
    saga_workers(cfg); /* fare-saga, a lease of 1 s */
    set(cfg, "payment-url", payment_url);
}

/* The same, waiting out an unreachable gateway for a second only. */
static void http_gateway_short_wait(struct config *cfg)
{
    http_gateway(cfg);
    set(cfg, "saga-unreachable-seconds", "1");
}

/* The same, with every attempt counted whether or not it reached the gateway. */
static void http_gateway_counting_all(struct config *cfg)
{
    http_gateway(cfg);
    set(cfg, "saga-unreachable-seconds", "0");
}

/* The fake gateway, and the first gateway server (fare-saga) calling it. */
static struct harness_server *up_with_fake_gateway(void)
{
    pgw_start();
    up(&gws[0], http_gateway);
    return &gws[0];
}

/* The requests the fake got for fare (by the body's fare_id), in order: their indices. Hits
 * are never changed once counted, so the caller may read them without the lock. */
static int fare_hits(const char *fare, int *idx, int max)
{
    int n = 0;
    pthread_mutex_lock(&pgw.mu);
    for (int i = 0; i < pgw.n; i++) {
        const char *f = json_str(pgw.hits[i].json, "fare_id");
        if (f && strcmp(f, fare) == 0 && n < max)
            idx[n++] = i;
    }
    pthread_mutex_unlock(&pgw.mu);
    return n;
}

/* The requests for fare, one line each, for messages. */
static void describe_hits(const char *fare, char *out, size_t size)
{
    int idx[64];
    int n = fare_hits(fare, idx, 64);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < size; i++) {
        const struct pay_hit *h = &pgw.hits[idx[i]];
        int w = snprintf(out + used, size - used, "\n  %s %s [%s] %u %s <- %s", h->method, h->path,
                         h->key, h->status, h->reference, h->body);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (n == 0)
        snprintf(out, size, " none");
}

/* Checks request i (for fare, of customer, for amount): what it was sent, with what key, and
 * what it was answered; reference NULL: none sent (absent or null). */
static void assert_hit(const char *fare, int i, const char *path, const char *step,
                       bool compensation, unsigned status, const char *customer, double amount,
                       const char *reference)
{
    const struct pay_hit *h = &pgw.hits[i];
    char key[200];
    snprintf(key, sizeof key, "fare:%s:%s%s", fare, step, compensation ? ":compensate" : "");
    ck_assert_msg(strcmp(h->method, "POST") == 0, "%s %s", h->method, h->path);
    ck_assert_msg(strcmp(h->path, path) == 0, "%s: %s, %s expected", fare, h->path, path);
    ck_assert_msg(strcmp(h->key, key) == 0, "%s %s: Idempotency-Key '%s', '%s' expected", fare,
                  h->path, h->key, key);
    ck_assert_msg(strncmp(h->content_type, "application/json", 16) == 0, "%s %s: Content-Type %s",
                  fare, h->path, h->content_type);
    ck_assert_msg(h->status == status, "%s %s: answered %u, %u expected", fare, h->path, h->status,
                  status);
    ck_assert_msg(json_is_object(h->json), "%s %s: the body is not a JSON object: %s", fare,
                  h->path, h->body);
    ck_assert_msg(json_str(h->json, "fare_id") && strcmp(json_str(h->json, "fare_id"), fare) == 0,
                  "%s %s: fare_id in %s", fare, h->path, h->body);
    ck_assert_msg(json_str(h->json, "customer") &&
                      strcmp(json_str(h->json, "customer"), customer) == 0,
                  "%s %s: customer in %s", fare, h->path, h->body);
    json_t *a = json_object_get(h->json, "amount");
    ck_assert_msg(json_is_number(a) && json_number_value(a) == amount, "%s %s: amount in %s", fare,
                  h->path, h->body);
    json_t *ref = json_object_get(h->json, "reference");
    if (reference)
        ck_assert_msg(json_is_string(ref) && strcmp(json_string_value(ref), reference) == 0,
                      "%s %s: reference '%s' expected in %s", fare, h->path, reference, h->body);
    else
        ck_assert_msg(!ref || json_is_null(ref), "%s %s: no reference expected in %s", fare,
                      h->path, h->body);
    /* an undo without a reference names the call it undoes by its key */
    json_t *orig = json_object_get(h->json, "original_idempotency_key");
    if (compensation && !reference) {
        char undone[200];
        snprintf(undone, sizeof undone, "fare:%s:%s", fare, step);
        ck_assert_msg(json_is_string(orig) && strcmp(json_string_value(orig), undone) == 0,
                      "%s %s: original_idempotency_key '%s' expected in %s", fare, h->path, undone,
                      h->body);
    } else
        ck_assert_msg(!orig, "%s %s: no original_idempotency_key expected in %s", fare, h->path,
                      h->body);
    /* nothing else: fare_id, customer, amount, the reference and the original key */
    size_t members = 3 + (ref != NULL) + (orig != NULL);
    ck_assert_msg(json_object_size(h->json) == members, "%s %s: unexpected members in %s", fare,
                  h->path, h->body);
}

/* Checks that the fake got, for fare, exactly the n requests to calls[], in this order. */
static void assert_paths(const char *fare, int *idx, int n, const char *const *calls)
{
    char seen[4096];
    describe_hits(fare, seen, sizeof seen);
    int got = fare_hits(fare, idx, 64);
    bool same = got == n;
    for (int i = 0; same && i < n; i++)
        same = strcmp(pgw.hits[idx[i]].path, calls[i]) == 0;
    ck_assert_msg(same, "%s: %d requests, %d expected (%s, ...):%s", fare, got, n, calls[0], seen);
}

/* The detail of step name of f copied into out ("(null)" for none), so that f can be released
 * before the checks (a failed check leaves the test at once: nothing leaks). */
static void copy_detail(json_t *f, const char *name, char *out, size_t n)
{
    const char *d = detail_of(f, name);
    snprintf(out, n, "%s", d ? d : "(null)");
}

/* The fare's references in its row: "preauth_code charge_id credit_id" ('-' for NULL). */
static void fare_references(const char *fare, char *out, size_t n)
{
    char *v = harness_sqlf_text(
        "SELECT coalesce(preauth_code, '-') || ' ' || coalesce(charge_id, '-') || "
        "' ' || coalesce(credit_id, '-') FROM fares WHERE id = '%s'",
        fare);
    ck_assert_ptr_nonnull(v);
    snprintf(out, n, "%s", v);
    free(v);
}

/* The fare JSON as text, for messages. */
static void fare_text(json_t *f, char *out, size_t n)
{
    char *text = json_dumps(f, JSON_COMPACT);
    snprintf(out, n, "%s", text ? text : "?");
    free(text);
}

/* wait_fare, with the fare's text in out for the messages of failed checks. */
static json_t *wait_fare_text(struct harness_server *s, const char *fare, char *out, size_t n)
{
    json_t *f = wait_fare(s, fare, FINAL_S);
    fare_text(f, out, n);
    return f;
}

/* A success whose reference cannot be kept whole (longer than a reference holds, or not
 * printable ASCII) is no answer: cut short, later steps would name another reference, or cut
 * inside a character it could never be recorded and the fare would stay running for ever. */
START_TEST(http_gateway_a_reference_that_cannot_be_kept_is_no_answer)
{
    pgw_start();
    struct payments *p = payments_http(payment_url, 5000);
    struct pay_result r;
    struct pay_request rq = {
        .key = "fare:huge-1:preauth", .fare_id = "huge-1", .customer = "hp-hugeref", .amount = 5};
    ck_assert_int_eq(payments_call(p, NULL, PAY_PREAUTH, &rq, &r), PAY_TRANSIENT);
    ck_assert_str_eq(r.reference, "");
    ck_assert_msg(strstr(r.detail, "printable ASCII and short enough"), "%s", r.detail);
    rq = (struct pay_request){
        .key = "fare:long-1:preauth", .fare_id = "long-1", .customer = "hp-longref", .amount = 5};
    ck_assert_int_eq(payments_call(p, NULL, PAY_PREAUTH, &rq, &r), PAY_OK);
    ck_assert_msg(strstr(r.reference, PAY_LONG_SUFFIX), "%s", r.reference);
    payments_free(p);
}
END_TEST

/* What a 2xx must hold: a JSON object (a maintenance page served with 200 is no answer) and,
 * for a pre-authorization or a charge, a reference later calls can name (an integer is one);
 * a void's, refund's or credit's reference is not needed, so one that is too long is no reason
 * to call again, and its body may be empty. */
START_TEST(http_gateway_a_success_is_a_json_object_with_the_reference_needed)
{
    pgw_start();
    struct payments *p = payments_http(payment_url, 5000);
    struct pay_result r;
    static const struct {
        enum pay_op op;
        const char *customer;
        enum pay_status want;
        const char *reference; /* on PAY_OK */
    } cases[] = {
        {PAY_PREAUTH, "ok-htmlpage", PAY_TRANSIENT, NULL},
        {PAY_CREDIT, "ok-htmlpage", PAY_TRANSIENT, NULL},
        {PAY_PREAUTH, "ok-numref", PAY_OK, "12345"},
        {PAY_PREAUTH, "ok-noref", PAY_TRANSIENT, NULL},
        {PAY_CHARGE, "ok-noref", PAY_TRANSIENT, NULL},
        {PAY_REFUND, "ok-noref", PAY_OK, ""},
        {PAY_CREDIT, "ok-hugeref", PAY_OK, ""},
        {PAY_VOID, "ok-hugeref", PAY_OK, ""},
        {PAY_CREDIT, "ok-emptybody", PAY_OK, ""},
        {PAY_REFUND, "ok-emptybody", PAY_OK, ""},
        {PAY_PREAUTH, "ok-emptybody", PAY_TRANSIENT, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char key[64];
        snprintf(key, sizeof key, "fare:shape-%zu:call", i);
        struct pay_request rq = {
            .key = key, .fare_id = "shape", .customer = cases[i].customer, .amount = 5};
        enum pay_status got = payments_call(p, NULL, cases[i].op, &rq, &r);
        ck_assert_msg(got == cases[i].want, "case %zu (%s): %d, %s", i, cases[i].customer, got,
                      r.detail);
        ck_assert(!r.unsent);
        if (got == PAY_OK)
            ck_assert_str_eq(r.reference, cases[i].reference);
    }
    payments_free(p);
}
END_TEST

/* A call that failed before a byte of it left cannot have reached the gateway: a TLS handshake
 * that fails, and a connection that is never answered (a full accept queue drops the SYN, as a
 * firewall that black-holes the gateway does), are unsent, as a refused connection is. */
START_TEST(http_gateway_calls_that_never_left_are_unsent)
{
    pgw_start();
    char url[80];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", pgw.port); /* it speaks plain HTTP */
    struct payments *p = payments_http(url, 5000);
    struct pay_result r;
    struct pay_request rq = {
        .key = "fare:tls-1:preauth", .fare_id = "tls-1", .customer = "u-tls", .amount = 5};
    ck_assert_int_eq(payments_call(p, NULL, PAY_PREAUTH, &rq, &r), PAY_TRANSIENT);
    ck_assert_msg(r.unsent, "%s", r.detail);
    payments_free(p);

    /* a listener with a backlog of 0 that never accepts: once its queue is full, SYNs drop */
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4];
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&addr, sizeof addr), 0);
    ck_assert_int_eq(listen(lfd, 0), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&addr, &len), 0);
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&addr, sizeof addr);
    }
    harness_sleep_ms(100);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(addr.sin_port));
    p = payments_http(url, 600);
    rq = (struct pay_request){
        .key = "fare:hole-1:preauth", .fare_id = "hole-1", .customer = "u-hole", .amount = 5};
    ck_assert_int_eq(payments_call(p, NULL, PAY_PREAUTH, &rq, &r), PAY_TRANSIENT);
    ck_assert_msg(r.unsent, "%s", r.detail);
    ck_assert_msg(strstr(r.detail, "imeout") || strstr(r.detail, "timed out"), "%s", r.detail);
    payments_free(p);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}
END_TEST

START_TEST(http_gateway_a_fare_succeeds_over_http)
{
    struct harness_server *const s = up_with_fake_gateway();
    const char *fare = "hp-ok-1", *customer = "hp-alice";
    start_fare(s, fare, customer, "\"$42.10\"");
    char copy[4096];
    json_t *f = wait_fare_text(s, fare, copy, sizeof copy);
    assert_fare(f, fare, NULL, 42.10, "succeeded", all_done);
    for (int i = 0; i < NSTEPS; i++)
        ck_assert_msg(attempts_of(f, step_names[i]) == 1, "%s: %s", step_names[i], copy);
    char d_pre[256], d_chg[256], d_crd[256];
    copy_detail(f, "preauthorize", d_pre, sizeof d_pre);
    copy_detail(f, "charge", d_chg, sizeof d_chg);
    copy_detail(f, "credit_account", d_crd, sizeof d_crd);
    json_decref(f);

    /* the gateway saw the three calls, in order, once each */
    int idx[64];
    const char *const want[] = {"/preauthorizations", "/charges", "/credits"};
    assert_paths(fare, idx, 3, want);
    const struct pay_hit *pre = &pgw.hits[idx[0]], *chg = &pgw.hits[idx[1]],
                         *crd = &pgw.hits[idx[2]];
    assert_hit(fare, idx[0], "/preauthorizations", "preauthorize", false, 200, customer, 42.10,
               NULL);
    /* the charge captures the pre-authorization the gateway handed back */
    assert_hit(fare, idx[1], "/charges", "charge", false, 200, customer, 42.10, pre->reference);
    assert_hit(fare, idx[2], "/credits", "credit_account", false, 200, customer, 42.10, NULL);
    ck_assert(pre->reference[0] && chg->reference[0] && crd->reference[0]);

    /* the references are kept: the steps' details and the fare's row */
    ck_assert_msg(strcmp(d_pre, pre->reference) == 0, "preauthorize detail, %s expected: %s",
                  pre->reference, copy);
    ck_assert_msg(strcmp(d_chg, chg->reference) == 0, "charge detail, %s expected: %s",
                  chg->reference, copy);
    ck_assert_msg(strcmp(d_crd, crd->reference) == 0, "credit_account detail, %s expected: %s",
                  crd->reference, copy);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = '%s' AND ("
                                  "(name = 'preauthorize' AND detail = '%s') OR "
                                  "(name = 'charge' AND detail = '%s') OR "
                                  "(name = 'credit_account' AND detail = '%s'))",
                                  fare, pre->reference, chg->reference, crd->reference),
                     3);
    char refs[1300], want_refs[1300];
    fare_references(fare, refs, sizeof refs);
    snprintf(want_refs, sizeof want_refs, "%s %s %s", pre->reference, chg->reference,
             crd->reference);
    ck_assert_str_eq(refs, want_refs);

    /* the simulator was not used */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s'", fare),
                     0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND outcome = 'succeeded' "
                     "AND phase = 'finished' AND NOT needs_operator",
                     fare),
        1);
    assert_outcome_message("fare-succeeded", fare, customer, "succeeded");
    ck_assert_int_eq(published("fare-failed", fare), 0);
    down(s);
}
END_TEST

START_TEST(http_gateway_declines_are_compensated_over_http)
{
    struct harness_server *const s = up_with_fake_gateway();
    const char *charge_fare = "hp-decl-charge", *charge_customer = "hp-bob-decline-charge";
    const char *credit_fare = "hp-decl-credit", *credit_customer = "hp-carl-decline-credit";
    const char *auth_fare = "hp-decl-auth", *auth_customer = "hp-dan-decline-auth";
    start_fare(s, charge_fare, charge_customer, "12");
    start_fare(s, credit_fare, credit_customer, "\"$13.75\"");
    start_fare(s, auth_fare, auth_customer, "14.5");
    int idx[64];
    char copy[4096];

    /* a 402 on /charges: the pre-authorization is voided with its own reference, nothing is
     * credited nor refunded */
    json_t *f = wait_fare(s, charge_fare, FINAL_S);
    fare_text(f, copy, sizeof copy);
    const char *want_charge[NSTEPS] = {"done", "compensated", "failed", "skipped", "done", "done"};
    assert_fare(f, charge_fare, NULL, 12, "failed", want_charge);
    ck_assert_msg(detail_of(f, "charge") && strstr(detail_of(f, "charge"), "402"),
                  "the charge's detail names the answer: %s", copy);
    ck_assert_int_eq(attempts_of(f, "charge"), 1); /* a decline is not retried */
    json_decref(f);
    const char *const charge_paths[] = {"/preauthorizations", "/charges", "/voids"};
    assert_paths(charge_fare, idx, 3, charge_paths);
    const char *preauth = pgw.hits[idx[0]].reference;
    assert_hit(charge_fare, idx[0], "/preauthorizations", "preauthorize", false, 200,
               charge_customer, 12, NULL);
    assert_hit(charge_fare, idx[1], "/charges", "charge", false, 402, charge_customer, 12, preauth);
    assert_hit(charge_fare, idx[2], "/voids", "preauthorize", true, 200, charge_customer, 12,
               preauth);
    char row[64];
    step_row(charge_fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "compensated 1 1");
    step_row(charge_fare, 2, row, sizeof row);
    ck_assert_str_eq(row, "failed 1 0");
    step_row(charge_fare, 3, row, sizeof row);
    ck_assert_str_eq(row, "skipped 0 0");
    ck_assert_int_eq(
        harness_sqlf(
            "SELECT count(*) FROM fares WHERE id = '%s' AND outcome = 'failed' AND "
            "status = 'failed' AND phase = 'finished' AND NOT needs_operator AND charge_id IS NULL "
            "AND credit_id IS NULL",
            charge_fare),
        1);
    assert_outcome_message("fare-failed", charge_fare, charge_customer, "failed");
    ck_assert_int_eq(published("fare-succeeded", charge_fare), 0);

    /* a 402 on /credits: the charge is refunded with its id, then the pre-authorization voided */
    f = wait_fare(s, credit_fare, FINAL_S);
    const char *want_credit[NSTEPS] = {"done",   "compensated", "compensated",
                                       "failed", "done",        "done"};
    assert_fare(f, credit_fare, NULL, 13.75, "failed", want_credit);
    json_decref(f);
    const char *const credit_paths[] = {"/preauthorizations", "/charges", "/credits", "/refunds",
                                        "/voids"};
    assert_paths(credit_fare, idx, 5, credit_paths);
    preauth = pgw.hits[idx[0]].reference;
    const char *charge = pgw.hits[idx[1]].reference;
    assert_hit(credit_fare, idx[0], "/preauthorizations", "preauthorize", false, 200,
               credit_customer, 13.75, NULL);
    assert_hit(credit_fare, idx[1], "/charges", "charge", false, 200, credit_customer, 13.75,
               preauth);
    assert_hit(credit_fare, idx[2], "/credits", "credit_account", false, 402, credit_customer,
               13.75, NULL);
    assert_hit(credit_fare, idx[3], "/refunds", "charge", true, 200, credit_customer, 13.75,
               charge);
    assert_hit(credit_fare, idx[4], "/voids", "preauthorize", true, 200, credit_customer, 13.75,
               preauth);
    assert_outcome_message("fare-failed", credit_fare, credit_customer, "failed");

    /* a 402 on /preauthorizations: nothing to compensate */
    f = wait_fare(s, auth_fare, FINAL_S);
    const char *want_auth[NSTEPS] = {"done", "failed", "skipped", "skipped", "done", "done"};
    assert_fare(f, auth_fare, NULL, 14.5, "failed", want_auth);
    json_decref(f);
    const char *const auth_paths[] = {"/preauthorizations"};
    assert_paths(auth_fare, idx, 1, auth_paths);
    assert_hit(auth_fare, idx[0], "/preauthorizations", "preauthorize", false, 402, auth_customer,
               14.5, NULL);
    step_row(auth_fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "failed 1 0");
    assert_outcome_message("fare-failed", auth_fare, auth_customer, "failed");

    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id LIKE 'hp-decl-%%'"), 0);
    down(s);
}
END_TEST

/* Checks that every gateway call of fare was answered status once (key first seen) and then,
 * called again with the same key after at least the backoff's lower bound, a 2xx (or a 402, a
 * scripted decline); n calls in all. */
static void assert_retried_once_each(const char *fare, int n, unsigned status)
{
    int idx[64];
    char seen[4096];
    describe_hits(fare, seen, sizeof seen);
    int got = fare_hits(fare, idx, 64);
    ck_assert_msg(got == 2 * n, "%s: %d requests, %d expected:%s", fare, got, 2 * n, seen);
    for (int i = 0; i < got; i += 2) {
        const struct pay_hit *a = &pgw.hits[idx[i]], *b = &pgw.hits[idx[i + 1]];
        ck_assert_msg(strcmp(a->path, b->path) == 0 && strcmp(a->key, b->key) == 0 && a->key[0],
                      "%s: a retry with another path or key:%s", fare, seen);
        ck_assert_msg(a->status == status && (b->status / 100 == 2 || b->status == 402),
                      "%s: statuses:%s", fare, seen);
        ck_assert_msg(b->at - a->at >= 0.09,
                      "%s: %s retried after %.3f s (the backoff is 200 ms "
                      "with equal jitter):%s",
                      fare, a->path, b->at - a->at, seen);
    }
}

START_TEST(http_gateway_transient_answers_are_retried_with_the_same_key)
{
    struct harness_server *const s = up_with_fake_gateway();
    /* 503, 429, 408 and 307: each call fails once, then is answered (201 for the 408
     * customer) */
    const char *fares[] = {"hp-flaky-503", "hp-flaky-429", "hp-flaky-408", "hp-flaky-307"};
    const char *customers[] = {"hp-eve-flaky", "hp-fay-throttled", "hp-gus-timeout-created",
                               "hp-ida-redirected"};
    const unsigned statuses[] = {503, 429, 408, 307};
    for (int i = 0; i < 4; i++)
        start_fare(s, fares[i], customers[i], "\"$21.30\"");
    /* and flaky and declined: the void is retried too */
    const char *mixed = "hp-flaky-decl", *mixed_customer = "hp-hal-flaky-decline-charge";
    start_fare(s, mixed, mixed_customer, "8");
    for (int i = 0; i < 4; i++) {
        json_t *f = wait_fare(s, fares[i], FINAL_S);
        char copy[4096];
        fare_text(f, copy, sizeof copy);
        assert_fare(f, fares[i], NULL, 21.30, "succeeded", all_done);
        const int want[NSTEPS] = {1, 2, 2, 2, 1, 1};
        for (int j = 0; j < NSTEPS; j++)
            ck_assert_msg(attempts_of(f, step_names[j]) == want[j],
                          "%s %s: %lld attempts, %d "
                          "expected: %s",
                          fares[i], step_names[j], attempts_of(f, step_names[j]), want[j], copy);
        json_decref(f);
        assert_retried_once_each(fares[i], 3, statuses[i]);
        int idx[64];
        const char *const calls[] = {"/preauthorizations", "/preauthorizations", "/charges",
                                     "/charges",           "/credits",           "/credits"};
        assert_paths(fares[i], idx, 6, calls);
        const char *const step[] = {"preauthorize", "charge", "credit_account"};
        const char *preauth = pgw.hits[idx[1]].reference;
        for (int j = 0; j < 6; j++)
            assert_hit(fares[i], idx[j], calls[j], step[j / 2], false,
                       j % 2 ? (i == 2 ? 201 : 200) : statuses[i], customers[i], 21.30,
                       j / 2 == 1 ? preauth : NULL);
        /* the references of the answered calls are kept */
        char refs[1300], want_refs[1300];
        fare_references(fares[i], refs, sizeof refs);
        snprintf(want_refs, sizeof want_refs, "%s %s %s", pgw.hits[idx[1]].reference,
                 pgw.hits[idx[3]].reference, pgw.hits[idx[5]].reference);
        ck_assert_str_eq(refs, want_refs);
        assert_outcome_message("fare-succeeded", fares[i], customers[i], "succeeded");
    }
    json_t *f = wait_fare(s, mixed, FINAL_S);
    const char *want_mixed[NSTEPS] = {"done", "compensated", "failed", "skipped", "done", "done"};
    assert_fare(f, mixed, NULL, 8, "failed", want_mixed);
    json_decref(f);
    assert_retried_once_each(mixed, 3, 503);
    int idx[64];
    const char *const calls[] = {
        "/preauthorizations", "/preauthorizations", "/charges", "/charges", "/voids", "/voids"};
    assert_paths(mixed, idx, 6, calls);
    ck_assert_uint_eq(pgw.hits[idx[3]].status, 402);
    assert_hit(mixed, idx[5], "/voids", "preauthorize", true, 200, mixed_customer, 8,
               pgw.hits[idx[1]].reference);
    char row[64];
    step_row(mixed, 1, row, sizeof row);
    ck_assert_str_eq(row, "compensated 2 2");
    step_row(mixed, 2, row, sizeof row);
    ck_assert_str_eq(row, "failed 2 0");
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id LIKE 'hp-flaky-%%'"), 0);
    down(s);
}
END_TEST

/* Starts fare for customer (amount as JSON text and as a number) and waits until it ends failed
 * with its charge and pre-authorization compensated, and no operator needed. */
static void run_to_charge_undone(struct harness_server *s, const char *fare, const char *customer,
                                 const char *amount_text, double amount)
{
    start_fare(s, fare, customer, amount_text);
    char copy[4096];
    json_t *f = wait_fare_text(s, fare, copy, sizeof copy);
    const char *want[NSTEPS] = {"done", "compensated", "compensated", "skipped", "done", "done"};
    assert_fare(f, fare, NULL, amount, "failed", want);
    ck_assert_msg(json_is_false(json_object_get(f, "needs_operator")), "%s", copy);
    json_decref(f);
}

/* A charge answered 504 every time may have gone through: once the retry budget is spent it is
 * refunded by its idempotency key (no reference ever came back), then the pre-authorization is
 * voided by its reference. */
START_TEST(http_gateway_a_charge_without_an_answer_is_refunded_by_its_key)
{
    struct harness_server *const s = up_with_fake_gateway();
    const char *fare = "hp-lost-1", *customer = "hp-jo-lost-charge";
    run_to_charge_undone(s, fare, customer, "19.90", 19.90);
    int idx[64];
    const char *const calls[] = {"/preauthorizations", "/charges", "/charges", "/charges",
                                 "/charges",           "/charges", "/refunds", "/voids"};
    assert_paths(fare, idx, 8, calls);
    const char *preauth = pgw.hits[idx[0]].reference;
    for (int i = 1; i <= 5; i++)
        assert_hit(fare, idx[i], "/charges", "charge", false, 504, customer, 19.90, preauth);
    assert_hit(fare, idx[6], "/refunds", "charge", true, 200, customer, 19.90, NULL);
    assert_hit(fare, idx[7], "/voids", "preauthorize", true, 200, customer, 19.90, preauth);
    char row[64];
    step_row(fare, 2, row, sizeof row);
    ck_assert_str_eq(row, "compensated 5 1");
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = '%s' AND "
                                  "name = 'charge' AND outcome_unknown",
                                  fare),
                     1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND outcome = 'failed' AND "
                     "phase = 'finished' AND NOT needs_operator AND charge_id IS NULL",
                     fare),
        1);
    assert_outcome_message("fare-failed", fare, customer, "failed");
    down(s);
}
END_TEST

/* A charge whose first call got no answer (504) and whose retry met a 403 (a proxy, a rotated
 * key: not the gateway's decline of the call) may still have gone through: the 403 is not retried
 * but settles nothing, and the charge is refunded by its key before the pre-authorization is
 * voided. (A 402, the gateway's own decline, would settle it.) */
START_TEST(http_gateway_a_refusal_in_front_of_it_leaves_the_charge_unknown)
{
    struct harness_server *const s = up_with_fake_gateway();
    const char *fare = "hp-forbidden-1", *customer = "hp-kim-forbidden-charge";
    run_to_charge_undone(s, fare, customer, "12.40", 12.40);
    int idx[64];
    const char *const calls[] = {"/preauthorizations", "/charges", "/charges", "/refunds",
                                 "/voids"};
    assert_paths(fare, idx, 5, calls);
    ck_assert_uint_eq(pgw.hits[idx[1]].status, 504);
    ck_assert_uint_eq(pgw.hits[idx[2]].status, 403);
    assert_hit(fare, idx[3], "/refunds", "charge", true, 200, customer, 12.40, NULL);
    assert_hit(fare, idx[4], "/voids", "preauthorize", true, 200, customer, 12.40,
               pgw.hits[idx[0]].reference);
    assert_outcome_message("fare-failed", fare, customer, "failed");
    down(s);
}
END_TEST

/* A run that dies with a charge in flight leaves the charge's outcome unknown. When the run that
 * resumes cannot reach the gateway at all (refused connections: nothing sent), the charge is
 * still the step to undo, by its key, not skipped as if it had never been tried. The gateway
 * stays down here, so that refund ends with an operator. */
START_TEST(http_gateway_a_charge_cut_short_stays_unknown_for_the_resumed_run)
{
    pgw_start();
    ncrashes = 0;
    const char *fare = "hp-cut-1";
    plan_crash(fare, "charge", 1);
    saga_crash_hook = crash_planned;
    struct harness_server *const s = &gws[0];
    up(s, http_gateway_counting_all); /* the refused calls count: an operator's case at once */
    start_fare(s, fare, "hp-kim", "11.00");
    for (int i = 0; i < 1000 && atomic_load(&crashes[0].crashed) == 0; i++)
        harness_sleep_ms(5);
    ck_assert_int_eq(atomic_load(&crashes[0].crashed), 1);
    pgw_stop(); /* before the lease (1 s) runs out: every later call is refused */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = '%s' AND "
                                  "name = 'charge' AND outcome_unknown AND attempts = 0",
                                  fare),
                     1);
    json_t *f = wait_fare(s, fare, 40);
    char copy[4096];
    fare_text(f, copy, sizeof copy);
    ck_assert_msg(json_is_true(json_object_get(f, "needs_operator")), "%s", copy);
    json_decref(f);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_sagas WHERE id = '%s' AND "
                                  "step = 'charge' AND compensation_attempts = 6",
                                  fare),
                     1);
    char row[64];
    step_row(fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "done 1 0"); /* the walk stopped at the charge */
    saga_crash_hook = NULL;
    down(s);
}
END_TEST

/* With saga-unreachable-seconds 0, a gateway that cannot be reached fails the step after its
 * five attempts, as any other transient error does. */
START_TEST(http_gateway_down_gives_up_after_the_retry_budget)
{
    gateway_down();
    struct harness_server *const s = &gws[0];
    up(s, http_gateway_counting_all);
    const char *fare = "hp-down-1", *customer = "hp-ida";
    double t0 = harness_now_s();
    start_fare(s, fare, customer, "9.99");
    /* five attempts, 200 ms of backoff doubling between them: final well within 10 s */
    json_t *f = wait_fare(s, fare, 10);
    double took = harness_now_s() - t0;
    char copy[4096];
    fare_text(f, copy, sizeof copy);
    const char *want[NSTEPS] = {"done", "failed", "skipped", "skipped", "done", "done"};
    assert_fare(f, fare, NULL, 9.99, "failed", want);
    ck_assert_msg(json_is_false(json_object_get(f, "needs_operator")), "%s", copy);
    const char *detail = detail_of(f, "preauthorize");
    ck_assert_msg(detail && strstr(detail, "connect") && strstr(detail, "retry budget"),
                  "the preauthorize detail names the connection error: %s", copy);
    ck_assert_int_eq(attempts_of(f, "preauthorize"), 5);
    json_decref(f);
    char row[64];
    step_row(fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "failed 5 0"); /* nothing to compensate: no void attempted */
    step_row(fare, 2, row, sizeof row);
    ck_assert_str_eq(row, "skipped 0 0");
    /* the backoffs' lower bounds: 100 + 200 + 400 + 800 ms */
    ck_assert_msg(took >= 1.4, "five attempts within %.2f s: no backoff between them", took);
    ck_assert_msg(took < 10, "final after %.2f s", took);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND outcome = 'failed' AND "
                     "phase = 'finished' AND preauth_code IS NULL",
                     fare),
        1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM payment_ledger WHERE fare_id = '%s'", fare),
                     0);
    assert_outcome_message("fare-failed", fare, customer, "failed");
    down(s);
}
END_TEST

/* A gateway that cannot be reached for a while (a restart) is waited out: the step is retried
 * past its budget of five without those attempts counting, and the fare goes on once the
 * gateway is back (it used to fail after 1.5-3 s, and a refund as soon, for an operator). */
START_TEST(http_gateway_down_for_a_while_is_waited_out)
{
    gateway_down();
    struct harness_server *const s = &gws[0];
    up(s, http_gateway);
    const char *fare = "hp-down-2", *customer = "hp-jo";
    start_fare(s, fare, customer, "12.50");
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM saga_steps WHERE fare_id = "
                                      "'hp-down-2' AND position = 1 AND attempts = 0 AND "
                                      "unreachable_attempts >= 6 AND status = 'running'",
                                      1, 20),
                     1);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND status = 'running'", fare), 1);
    /* the gateway comes back on its port; the next try is nudged (its backoff is 6-13 s) */
    uint16_t port = (uint16_t)atoi(strrchr(payment_url, ':') + 1);
    close(refused_fd);
    refused_fd = -1;
    pgw_start_on(port);
    free(harness_sql(harness_db_url(),
                     "UPDATE fares SET next_attempt_at = now() WHERE id = 'hp-down-2'"));
    json_t *f = wait_fare(s, fare, 15);
    const char *want[NSTEPS] = {"done", "done", "done", "done", "done", "done"};
    assert_fare(f, fare, NULL, 12.5, "succeeded", want);
    ck_assert_int_ge(attempts_of(f, "preauthorize"), 7); /* all calls, as the API counts them */
    json_decref(f);
    char row[64];
    step_row(fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "done 1 0");
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM saga_steps WHERE fare_id = '%s' AND "
                                  "position = 1 AND unreachable_attempts >= 6 AND "
                                  "unreachable_since IS NULL",
                                  fare),
                     1);
    down(s);
}
END_TEST

/* The same while compensating: a refund whose gateway cannot be reached is retried past the six
 * attempts of a compensation's budget instead of going to an operator, and is made once the
 * gateway is back. The run crashes after the refund's first call, and the gateway goes away
 * before the lease runs out. */
START_TEST(http_gateway_down_while_refunding_is_waited_out)
{
    pgw_start();
    ncrashes = 0;
    const char *fare = "hp-down-3";
    plan_crash(fare, "charge", 2); /* the charge, then its refund */
    saga_crash_hook = crash_planned;
    struct harness_server *const s = &gws[0];
    up(s, http_gateway);
    start_fare(s, fare, "hp-decline-credit-lu", "8.00");
    for (int i = 0; i < 1000 && atomic_load(&crashes[0].crashed) == 0; i++)
        harness_sleep_ms(5);
    ck_assert_int_eq(atomic_load(&crashes[0].crashed), 1);
    uint16_t port = pgw.port;
    pgw_stop();
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM saga_steps WHERE fare_id = "
                                      "'hp-down-3' AND name = 'charge' AND status = 'done' AND "
                                      "compensation_attempts = 0 AND unreachable_attempts >= 7",
                                      1, 30),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = '%s' AND status = "
                                  "'running' AND NOT needs_operator",
                                  fare),
                     1);
    pgw_start_on(port);
    free(harness_sql(harness_db_url(),
                     "UPDATE fares SET next_attempt_at = now() WHERE id = 'hp-down-3'"));
    json_t *f = wait_fare(s, fare, 15);
    char copy[4096];
    fare_text(f, copy, sizeof copy);
    const char *want[NSTEPS] = {"done", "compensated", "compensated", "failed", "done", "done"};
    assert_fare(f, fare, NULL, 8.0, "failed", want);
    ck_assert_msg(json_is_false(json_object_get(f, "needs_operator")), "%s", copy);
    json_decref(f);
    saga_crash_hook = NULL;
    down(s);
}
END_TEST

/* Once a gateway has been unreachable for RYDES_SAGA_UNREACHABLE_SECONDS, its refused calls count:
 * the step fails after five more, within seconds (the wait used to start anew after each
 * counted attempt, five windows in all). */
START_TEST(http_gateway_down_past_the_wait_gives_up_after_the_budget)
{
    gateway_down();
    struct harness_server *const s = &gws[0];
    up(s, http_gateway_short_wait);
    const char *fare = "hp-down-4";
    double t0 = harness_now_s();
    start_fare(s, fare, "hp-max", "3.00");
    /* about 1 s waited out, then 100-200 + 200-400 + 400-800 + 800-1600 ms of backoff */
    json_t *f = wait_fare(s, fare, 15);
    double took = harness_now_s() - t0;
    const char *want[NSTEPS] = {"done", "failed", "skipped", "skipped", "done", "done"};
    assert_fare(f, fare, NULL, 3.0, "failed", want);
    json_decref(f);
    char row[64];
    step_row(fare, 1, row, sizeof row);
    ck_assert_str_eq(row, "failed 5 0");
    ck_assert_int_ge(
        harness_sqlf("SELECT unreachable_attempts FROM saga_steps WHERE fare_id = '%s' AND "
                     "position = 1",
                     fare),
        1);
    ck_assert_msg(took < 7, "final after %.2f s", took);
    down(s);
}
END_TEST

START_TEST(http_gateway_is_sent_no_card_data)
{
    struct harness_server *const s = up_with_fake_gateway();
    /* every body the gateway can be sent: the three calls, a void, a refund */
    start_fare(s, "hp-nc-ok", "hp-jo", "\"$7.37\"");
    start_fare(s, "hp-nc-void", "hp-kim-decline-charge", "7");
    start_fare(s, "hp-nc-refund", "hp-lou-decline-credit", "7");
    json_decref(wait_fare(s, "hp-nc-ok", FINAL_S));
    json_decref(wait_fare(s, "hp-nc-void", FINAL_S));
    json_decref(wait_fare(s, "hp-nc-refund", FINAL_S));
    down(s); /* nothing is sent any more */
    const char *secrets[] = {CARD_DIGITS, CARD_FORMATTED, "4000-0566", "0566", CARD_EXPIRY, "2097",
                             "\"737\"",   "cvv",          "expiry",    "card", "\"cc\""};
    const char *calls[] = {"/preauthorizations", "/charges", "/credits", "/voids", "/refunds"};
    bool path_seen[5] = {false};
    pthread_mutex_lock(&pgw.mu);
    int n = pgw.n;
    pthread_mutex_unlock(&pgw.mu);
    int ours = 0;
    for (int i = 0; i < n; i++) {
        const struct pay_hit *h = &pgw.hits[i];
        const char *f = json_str(h->json, "fare_id");
        if (!f || strncmp(f, "hp-nc-", 6) != 0)
            continue;
        ours++;
        for (int p = 0; p < 5; p++)
            path_seen[p] = path_seen[p] || strcmp(h->path, calls[p]) == 0;
        for (size_t k = 0; k < sizeof secrets / sizeof *secrets; k++) {
            ck_assert_msg(!strstr(h->body, secrets[k]), "%s is sent to %s: %s", secrets[k], h->path,
                          h->body);
            ck_assert_msg(!strstr(h->headers, secrets[k]), "%s is sent to %s in a header:\n%s",
                          secrets[k], h->path, h->headers);
        }
        /* only what the gateway needs */
        const char *key;
        json_t *v;
        json_object_foreach(h->json, key, v)
        {
            ck_assert_msg(strcmp(key, "fare_id") == 0 || strcmp(key, "customer") == 0 ||
                              strcmp(key, "amount") == 0 || strcmp(key, "reference") == 0,
                          "%s is sent member %s: %s", h->path, key, h->body);
        }
    }
    ck_assert_int_eq(ours, 3 + 3 + 5);
    for (int p = 0; p < 5; p++)
        ck_assert_msg(path_seen[p], "no request to %s", calls[p]);
}
END_TEST

START_TEST(http_gateway_slower_than_the_lease_is_called_again_with_the_same_key)
{
    /* Every first call of a key takes 2 s, the lease 1 s: another executor takes the fare over
     * and calls again, with the same key, so the gateway answers it as the first time. */
    struct harness_server *const s = up_with_fake_gateway();
    const char *fare = "hp-slow-1", *customer = "hp-max-slow";
    start_fare(s, fare, customer, "\"$30.00\"");
    char copy[4096];
    json_t *f = wait_fare_text(s, fare, copy, sizeof copy);
    assert_fare(f, fare, NULL, 30, "succeeded", all_done);
    json_decref(f);
    down(s); /* waits for the run that lost its lease: it must record nothing */
    int idx[64];
    char seen[4096];
    describe_hits(fare, seen, sizeof seen);
    int n = fare_hits(fare, idx, 64);
    /* the calls, collapsed by key, in the saga's order */
    const char *const calls[] = {"/preauthorizations", "/charges", "/credits"};
    const char *const step[] = {"preauthorize", "charge", "credit_account"};
    int at = 0, again = 0;
    const char *refs_of[3];
    for (int k = 0; k < 3; k++) {
        int first = at;
        ck_assert_msg(at < n && strcmp(pgw.hits[idx[at]].path, calls[k]) == 0,
                      "%s: %s expected next:%s", fare, calls[k], seen);
        refs_of[k] = pgw.hits[idx[first]].reference;
        while (at < n && strcmp(pgw.hits[idx[at]].path, calls[k]) == 0) {
            assert_hit(fare, idx[at], calls[k], step[k], false, 200, customer, 30,
                       k == 1 ? refs_of[0] : NULL);
            ck_assert_msg(strcmp(pgw.hits[idx[at]].reference, refs_of[k]) == 0,
                          "%s: the same key answered two references:%s", fare, seen);
            at++;
        }
        again += at - first - 1;
    }
    ck_assert_msg(at == n, "%s: calls after the credit:%s", fare, seen);
    ck_assert_msg(again >= 1, "%s: no call was made again after the lease ran out:%s", fare, seen);
    char refs[1300], want_refs[1300];
    fare_references(fare, refs, sizeof refs);
    snprintf(want_refs, sizeof want_refs, "%s %s %s", refs_of[0], refs_of[1], refs_of[2]);
    ck_assert_str_eq(refs, want_refs);
    assert_outcome_message("fare-succeeded", fare, customer, "succeeded");
    ck_assert_int_eq(published("fare-failed", fare), 0);
}
END_TEST

START_TEST(http_gateway_references_are_passed_along_whole)
{
    /* The gateway's references are opaque: the charge must capture, the refund and the void
     * must name, exactly what the gateway handed back, however long (here 90-odd characters).
     * (References in 64-byte buffers, pay_result.reference and fare.preauth/charge/credit,
     * would cut them to 63 characters and capture, refund or void something else.) */
    struct harness_server *const s = up_with_fake_gateway();
    const char *ok = "hp-long-ok", *ok_customer = "hp-ned-longref";
    const char *back = "hp-long-back", *back_customer = "hp-ola-longref-decline-credit";
    start_fare(s, ok, ok_customer, "15");
    start_fare(s, back, back_customer, "16");
    json_t *f = wait_fare(s, ok, FINAL_S);
    char copy[4096], d_pre[256];
    fare_text(f, copy, sizeof copy);
    assert_fare(f, ok, NULL, 15, "succeeded", all_done);
    copy_detail(f, "preauthorize", d_pre, sizeof d_pre);
    json_decref(f);
    int idx[64];
    const char *const calls[] = {"/preauthorizations", "/charges", "/credits"};
    assert_paths(ok, idx, 3, calls);
    const char *preauth = pgw.hits[idx[0]].reference, *charge = pgw.hits[idx[1]].reference;
    ck_assert_int_gt((int)strlen(preauth), 64);
    assert_hit(ok, idx[1], "/charges", "charge", false, 200, ok_customer, 15, preauth);
    ck_assert_msg(strcmp(d_pre, preauth) == 0, "preauthorize detail, %s expected: %s", preauth,
                  copy);
    char refs[1300], want_refs[1300];
    fare_references(ok, refs, sizeof refs);
    snprintf(want_refs, sizeof want_refs, "%s %s %s", preauth, charge, pgw.hits[idx[2]].reference);
    ck_assert_str_eq(refs, want_refs);

    f = wait_fare(s, back, FINAL_S);
    const char *want[NSTEPS] = {"done", "compensated", "compensated", "failed", "done", "done"};
    assert_fare(f, back, NULL, 16, "failed", want);
    json_decref(f);
    const char *const back_calls[] = {"/preauthorizations", "/charges", "/credits", "/refunds",
                                      "/voids"};
    assert_paths(back, idx, 5, back_calls);
    preauth = pgw.hits[idx[0]].reference;
    charge = pgw.hits[idx[1]].reference;
    assert_hit(back, idx[1], "/charges", "charge", false, 200, back_customer, 16, preauth);
    assert_hit(back, idx[3], "/refunds", "charge", true, 200, back_customer, 16, charge);
    assert_hit(back, idx[4], "/voids", "preauthorize", true, 200, back_customer, 16, preauth);
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
    tcase_add_test(api, a_fare_whose_steps_cannot_be_read_is_503);
    tcase_add_test(api, a_fare_is_read_in_one_snapshot);
    suite_add_tcase(s, api);
    TCase *saga = tcase_create("saga");
    tcase_set_timeout(saga, 90);
    tcase_add_checked_fixture(saga, NULL, saga_teardown);
    tcase_add_test(saga, a_ride_is_charged_through_customer_accounting);
    tcase_add_test(saga, a_posted_fare_id_cannot_take_a_rides_fare);
    tcase_add_test(saga, a_ride_event_starts_only_the_stored_rides_fare);
    tcase_add_test(saga, a_long_customer_is_charged_whole);
    tcase_add_test(saga, every_path_ends_with_exactly_the_right_compensations);
    tcase_add_test(saga, a_refund_that_keeps_failing_is_left_to_an_operator);
    tcase_add_test(saga, a_credit_without_an_answer_is_left_to_an_operator);
    tcase_add_test(saga, an_undo_by_key_cancels_a_call_that_never_happened);
    tcase_add_test(saga, an_open_preauthorization_is_not_balanced);
    tcase_add_test(saga, a_crash_after_any_step_resumes_without_double_charges);
    tcase_add_test(saga, an_executor_that_outlives_its_lease_does_not_publish_twice);
    tcase_add_test(saga, a_killed_worker_process_is_resumed_elsewhere);
    tcase_add_test(saga, two_gateways_share_the_sagas);
    tcase_add_test(saga, fares_posted_without_an_executor_finish_after_a_restart);
    tcase_add_test(saga, a_stopping_process_pauses_its_saga_between_steps);
    tcase_add_test(saga, a_pause_before_a_payment_step_leaves_its_outcome_known);
    suite_add_tcase(s, saga);
    TCase *http = tcase_create("http gateway");
    tcase_set_timeout(http, 60);
    tcase_add_checked_fixture(http, NULL, http_teardown);
    tcase_add_test(http, http_gateway_a_fare_succeeds_over_http);
    tcase_add_test(http, http_gateway_a_reference_that_cannot_be_kept_is_no_answer);
    tcase_add_test(http, http_gateway_a_success_is_a_json_object_with_the_reference_needed);
    tcase_add_test(http, http_gateway_calls_that_never_left_are_unsent);
    tcase_add_test(http, http_gateway_declines_are_compensated_over_http);
    tcase_add_test(http, http_gateway_transient_answers_are_retried_with_the_same_key);
    tcase_add_test(http, http_gateway_a_refusal_in_front_of_it_leaves_the_charge_unknown);
    tcase_add_test(http, http_gateway_a_charge_without_an_answer_is_refunded_by_its_key);
    tcase_add_test(http, http_gateway_a_charge_cut_short_stays_unknown_for_the_resumed_run);
    tcase_add_test(http, http_gateway_down_gives_up_after_the_retry_budget);
    tcase_add_test(http, http_gateway_down_for_a_while_is_waited_out);
    tcase_add_test(http, http_gateway_down_while_refunding_is_waited_out);
    tcase_add_test(http, http_gateway_down_past_the_wait_gives_up_after_the_budget);
    tcase_add_test(http, http_gateway_is_sent_no_card_data);
    tcase_add_test(http, http_gateway_slower_than_the_lease_is_called_again_with_the_same_key);
    tcase_add_test(http, http_gateway_references_are_passed_along_whole);
    suite_add_tcase(s, http);
    return harness_run(s);
}
