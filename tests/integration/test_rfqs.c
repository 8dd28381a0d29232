/* Integration: Wild Rydes instant-ride RFQs (scatter-gather) end to end. POST /rfqs and its
 * alias POST /submit-instant-ride-rfq (202 with Location, Content-Location and the running RFQ
 * expecting one answer per unicorn subscribed to rfq-requests), the simulated fleet answering
 * everything before the deadline (done early, all_answered, quotes cheapest first with the
 * deterministic prices and goodies of each unicorn, the rfq_progress view), a silent fleet (done
 * at the eta by the deadline timer, timeout, no quotes, 409 with Retry-After for the result while
 * running), a moody fleet whose silent unicorns are predicted from the RFQ id, late and duplicate
 * quotes (a later quote replaces a unicorn's earlier one, 409 once done) and what the aggregator
 * acks and counts without storing (finished and unknown RFQs, missing or bad correlation ids,
 * invalid bodies: nothing left in rfq-responses or its dead-letter queue), the validation tables
 * of RFQs and quotes (400 naming the field, nothing stored or published), the read aliases, 404
 * for unknown ids, the role matrix, goodies limited in characters rather than bytes, an external
 * unicorn joining through the messaging API (raw, filtered-out and enveloped subscriptions; an
 * RFQ nobody is subscribed to done at once; 503 once an operator deleted the topic or the return
 * address), RFQs that complete across a restart of the server (a quote gathered before the stop,
 * two quotes of one unicorn gathered after it), and 50 concurrent RFQs against 5 unicorns. Every
 * test runs against a database of its own: the topology (one subscription per simulated unicorn)
 * decides how many answers an RFQ expects. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/ids.h"
#include "rydes/secret.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The simulated fleet's first five unicorns (rfqs_unicorn_name) and its goodies. */
#define FLEET 5
static const char *const fleet_names[FLEET] = {"shadowfax", "sparkle", "stardust", "moonbeam",
                                               "rainbow"};
static const char *const goodie_names[4] = {"bottled water", "phone charger", "snacks",
                                            "unicorn stickers"};

/* ---- a database per test --------------------------------------------------------------------- */

static char *test_db; /* the conninfo of the running test's database */

static void fresh_database(void)
{
    test_db = harness_db_create();
}

static void forget_database(void)
{
    free(test_db);
    test_db = NULL;
}

/* ---- settings of the servers ----------------------------------------------------------------- */

static void set(struct config *cfg, const char *name, const char *value)
{
    struct config_error err;
    ck_assert_msg(config_set_flag(cfg, name, value, &err), "setting %s=%s", name, value);
}

/* Workers "push" only (the harness's default): nothing consumes the RFQ queues. */
static void no_services(struct config *cfg)
{
    set(cfg, "database-url", test_db);
    set(cfg, "unicorns", "5");
}

/* The aggregator and its deadline timer; 5 unicorns are subscribed but no fleet answers. */
static void aggregator_only(struct config *cfg)
{
    no_services(cfg);
    set(cfg, "workers", "rfq-aggregator");
}

/* The aggregator; 2 unicorns subscribed, nobody answering for them. */
static void two_quiet_unicorns(struct config *cfg)
{
    aggregator_only(cfg);
    set(cfg, "unicorns", "2");
}

static void fleet(struct config *cfg, const char *unicorns, const char *percent, const char *min_ms,
                  const char *max_ms)
{
    set(cfg, "database-url", test_db);
    set(cfg, "workers", "rfq-aggregator,unicorn-fleet");
    set(cfg, "unicorns", unicorns);
    set(cfg, "unicorn-answer-percent", percent);
    set(cfg, "unicorn-min-latency-ms", min_ms);
    set(cfg, "unicorn-max-latency-ms", max_ms);
    set(cfg, "unicorn-min-price", "20");
    set(cfg, "unicorn-max-price", "100");
}

static void eager_fleet(struct config *cfg)
{
    fleet(cfg, "5", "100", "50", "200");
}

static void silent_fleet(struct config *cfg)
{
    fleet(cfg, "5", "0", "50", "200");
}

#define MOODY_PERCENT 60
static void moody_fleet(struct config *cfg)
{
    fleet(cfg, "5", "60", "50", "200");
}

static void no_unicorns(struct config *cfg)
{
    fleet(cfg, "0", "100", "50", "200");
}

static void busy_fleet(struct config *cfg)
{
    fleet(cfg, "5", "100", "50", "300");
    set(cfg, "threads", "4");
    set(cfg, "db-pool-size", "10");
}

/* ---- time and SQL ---------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    return (double)clock_wall_us() / 1e6;
}

/* An RFC 3339 timestamp with milliseconds as seconds since the epoch. */
static double ts_s(const char *ts)
{
    int64_t us = 0;
    ck_assert_msg(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts ? ts : "(null)");
    ck_assert_msg(clock_parse_rfc3339(ts, &us), "unparsable timestamp %s", ts);
    return (double)us / 1e6;
}

/* The first value of the printf-formatted SQL on the test's database (caller frees), or NULL.
 * The values formatted in are the tests' own (ids, names): no quoting needed. */
static char *sqlf_text(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof sql);
    return harness_sql(test_db, sql);
}

static long long sqlf(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof sql);
    char *v = harness_sql(test_db, sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    long long x = atoll(v);
    free(v);
    return x;
}

/* Polls the integer query sql every 50 ms until it gives want or timeout_s passed; returns the
 * last value. */
static long long wait_sql(const char *sql, long long want, double timeout_s)
{
    double until = now_s() + timeout_s;
    long long v;
    while ((v = sqlf("%s", sql)) != want && now_s() < until)
        harness_sleep_ms(50);
    return v;
}

/* Messages (any state) in the queue called name. */
static long long in_queue(const char *name)
{
    return sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                "WHERE q.name = '%s'",
                name);
}

/* Messages in the RFQ queues: the unicorns' (and their dead-letter queues), rfq-responses and
 * rfq-responses-dlq. */
#define RFQ_QUEUES_SQL                                                                      \
    "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id WHERE q.name LIKE " \
    "'rfq-unicorn-%' OR q.name IN ('rfq-responses', 'rfq-responses-dlq')"

/* Messages in rfq-responses and its dead-letter queue. */
#define RESPONSES_SQL                                                                     \
    "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id WHERE q.name IN " \
    "('rfq-responses', 'rfq-responses-dlq')"

/* ---- HTTP ------------------------------------------------------------------------------------ */

static void request(struct harness_server *s, const char *method, const char *path,
                    const char *token, const char *body, struct response *r)
{
    harness_request(s, method, path, token, body, NULL, NULL, r);
}

static void create_token(struct harness_server *s, const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"rfqs-%s\"}", role, role);
    struct response r;
    harness_admin(s, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_str(r.json, "token"));
    response_cleanup(&r);
}

/* The value of the /metrics sample whose line starts with sample; -1 when there is none. */
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

enum outcome { STORED, COMPLETED, UNKNOWN, FINISHED, NOT_ASKED, INVALID, SUPERSEDED, OUTCOMES };
static const char *const outcome_names[OUTCOMES] = {"stored",
                                                    "completed",
                                                    "ignored_unknown",
                                                    "ignored_finished",
                                                    "ignored_not_asked",
                                                    "ignored_invalid",
                                                    "ignored_superseded"};

static void quote_counts(struct harness_server *s, long long out[OUTCOMES])
{
    for (int i = 0; i < OUTCOMES; i++) {
        char sample[128];
        snprintf(sample, sizeof sample, "rydes_rfq_quotes_total{outcome=\"%s\"}", outcome_names[i]);
        out[i] = metric(s, sample);
        ck_assert_msg(out[i] >= 0, "no sample %s", sample);
    }
}

/* Waits up to timeout_s until every outcome counter moved by want[] from base[]; asserts it
 * moved by exactly that. */
static void wait_quote_counts(struct harness_server *s, const long long base[OUTCOMES],
                              const long long want[OUTCOMES], double timeout_s)
{
    long long now[OUTCOMES];
    double until = now_s() + timeout_s;
    for (;;) {
        quote_counts(s, now);
        bool reached = true;
        for (int i = 0; i < OUTCOMES; i++)
            reached = reached && now[i] - base[i] >= want[i];
        if (reached || now_s() >= until)
            break;
        harness_sleep_ms(50);
    }
    for (int i = 0; i < OUTCOMES; i++)
        ck_assert_msg(now[i] - base[i] == want[i],
                      "rydes_rfq_quotes_total{%s} moved by %lld, not %lld", outcome_names[i],
                      now[i] - base[i], want[i]);
}

static long long handled(struct harness_server *s)
{
    return metric(s, "rydes_worker_messages_total{worker=\"rfq-aggregator\",outcome=\"handled\"}");
}

/* ---- RFQs ------------------------------------------------------------------------------------ */

/* An RFQ body for customer; timeout_s < 0 leaves timeout_in_secs out (caller frees). */
static char *rfq_body(const char *customer, int timeout_s)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "from", "Unicorn Meadow", "to", "Rainbow Bridge",
                          "customer", customer);
    if (timeout_s >= 0)
        json_object_set_new(o, "timeout_in_secs", json_integer(timeout_s));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* Checks the representation of a status (GET /rfqs/{id}/status, or the 202 when accepted). */
static void assert_status(json_t *st, const char *id, bool done, const char *reason, int expected,
                          int responses, bool result_link)
{
    ck_assert_ptr_nonnull(st);
    char self[80], result[80];
    snprintf(self, sizeof self, "/rfqs/%s/status", id);
    snprintf(result, sizeof result, "/rfqs/%s/result", id);
    ck_assert_str_eq(json_str(st, "id"), id);
    ck_assert_str_eq(json_str(st, "status"), done ? "done" : "running");
    ck_assert_int_eq(json_integer_value(json_object_get(st, "expected_responses")), expected);
    ck_assert(json_is_integer(json_object_get(st, "response_count")));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "response_count")), responses);
    json_t *links = json_object_get(st, "links");
    ck_assert_str_eq(json_str(links, "self"), self);
    if (result_link || done)
        ck_assert_str_eq(json_str(links, "result"), result);
    else
        ck_assert_ptr_null(json_object_get(links, "result"));
    if (done) {
        ck_assert_ptr_null(json_object_get(st, "eta"));
        ck_assert_str_eq(json_str(st, "completion_reason"), reason);
    } else {
        ts_s(json_str(st, "eta"));
        ck_assert_ptr_null(json_object_get(st, "completion_reason"));
    }
}

/* POSTs body to path with token and checks the 202: headers, and a running RFQ (done at once
 * when it expects no answer) expecting `expected` answers. Copies its id and returns its eta
 * (0 when done at once). */
static double submit_as(struct harness_server *s, const char *path, const char *token,
                        const char *body, int expected, char *id)
{
    struct response r;
    request(s, "POST", path, token, body, &r);
    ck_assert_msg(r.status == 202, "POST %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    ck_assert_ptr_nonnull(r.json);
    const char *got = json_str(r.json, "id");
    ck_assert_msg(got && strlen(got) == 36 && ids_is_uuid(got), "not a UUID: %s",
                  got ? got : "(null)");
    snprintf(id, IDS_UUID_LEN, "%s", got);
    char self[80], h[200];
    snprintf(self, sizeof self, "/rfqs/%s/status", id);
    ck_assert(response_header(&r, "Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(&r, "Content-Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    ck_assert(response_header(&r, "Content-Type", h, sizeof h));
    ck_assert_str_eq(h, "application/json");
    assert_status(r.json, id, expected == 0, "all_answered", expected, 0, true);
    double eta = expected ? ts_s(json_str(r.json, "eta")) : 0;
    response_cleanup(&r);
    return eta;
}

static double submit(struct harness_server *s, const char *customer, int timeout_s, int expected,
                     char *id)
{
    char *body = rfq_body(customer, timeout_s);
    double eta = submit_as(s, "/rfqs", HARNESS_ADMIN_TOKEN, body, expected, id);
    free(body);
    return eta;
}

/* The path of template tmpl ("/rfqs/%s/status", ...) with its %s replaced by id. */
static void path_of(char *out, size_t n, const char *tmpl, const char *id)
{
    const char *at = strstr(tmpl, "%s");
    ck_assert_ptr_nonnull(at);
    snprintf(out, n, "%.*s%s%s", (int)(at - tmpl), tmpl, id, at + 2);
}

/* GET of one of the RFQ's resources (a path_of template) as admin. */
static void get(struct harness_server *s, const char *tmpl, const char *id, struct response *r)
{
    char path[200];
    path_of(path, sizeof path, tmpl, id);
    harness_admin(s, "GET", path, NULL, r);
}

/* Polls the status of id every 50 ms until it is done or timeout_s passed; fills r with the last
 * status and returns the wall clock at which it was first seen done (0: never). */
static double wait_done(struct harness_server *s, const char *id, double timeout_s,
                        struct response *r)
{
    double until = now_s() + timeout_s;
    for (;;) {
        get(s, "/rfqs/%s/status", id, r);
        ck_assert_msg(r->status == 200, "status of %s: %ld %s", id, r->status, buf_str(&r->body));
        if (strcmp(json_str(r->json, "status"), "done") == 0)
            return wall_s();
        if (now_s() >= until)
            return 0;
        response_cleanup(r);
        harness_sleep_ms(50);
    }
}

/* Polls the status of id until its response_count is want (timeout_s); returns the last one. */
static long long wait_responses(struct harness_server *s, const char *id, long long want,
                                double timeout_s)
{
    double until = now_s() + timeout_s;
    long long n;
    for (;;) {
        struct response r;
        get(s, "/rfqs/%s/status", id, &r);
        ck_assert_int_eq(r.status, 200);
        n = json_integer_value(json_object_get(r.json, "response_count"));
        response_cleanup(&r);
        if (n == want || now_s() >= until)
            return n;
        harness_sleep_ms(50);
    }
}

/* GET /rfqs/{id}/result: asserts 200 and the representation's fixed members. */
static void get_result(struct harness_server *s, const char *id, struct response *r)
{
    get(s, "/rfqs/%s/result", id, r);
    ck_assert_msg(r->status == 200, "result of %s: %ld %s", id, r->status, buf_str(&r->body));
    ck_assert_str_eq(json_str(r->json, "id"), id);
    ck_assert_str_eq(json_str(r->json, "from"), "Unicorn Meadow");
    ck_assert_str_eq(json_str(r->json, "to"), "Rainbow Bridge");
    ck_assert(json_is_string(json_object_get(r->json, "customer")));
    double submitted = ts_s(json_str(r->json, "submitted_at")),
           completed = ts_s(json_str(r->json, "completed_at"));
    ck_assert_msg(completed >= submitted, "completed %.3f before submitted %.3f", completed,
                  submitted);
    ck_assert(json_is_array(json_object_get(r->json, "quotes")));
    char self[80], status[80];
    snprintf(self, sizeof self, "/rfqs/%s/result", id);
    snprintf(status, sizeof status, "/rfqs/%s/status", id);
    json_t *links = json_object_get(r->json, "links");
    ck_assert_str_eq(json_str(links, "self"), self);
    ck_assert_str_eq(json_str(links, "status"), status);
}

/* Checks quotes: each one's shape, cheapest first, each unicorn once. Returns how many. */
static size_t assert_quotes(json_t *quotes)
{
    ck_assert(json_is_array(quotes));
    double prev = -1;
    for (size_t i = 0; i < json_array_size(quotes); i++) {
        json_t *q = json_array_get(quotes, i);
        const char *u = json_str(q, "unicorn");
        ck_assert_ptr_nonnull(u);
        ck_assert(json_is_number(json_object_get(q, "price")));
        double p = json_number_value(json_object_get(q, "price"));
        ck_assert_msg(p >= prev, "quotes not cheapest first: %.2f after %.2f", p, prev);
        prev = p;
        ck_assert_msg(fabs(p * 100 - round(p * 100)) < 1e-6, "price %f has more than 2 decimals",
                      p);
        json_t *g = json_object_get(q, "goodies");
        ck_assert(json_is_array(g));
        for (size_t k = 0; k < json_array_size(g); k++)
            ck_assert(json_is_string(json_array_get(g, k)));
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(json_str(json_array_get(quotes, j), "unicorn"), u) != 0,
                          "%s quoted twice", u);
    }
    return json_array_size(quotes);
}

/* The quote of unicorn in quotes, or NULL. */
static json_t *quote_of(json_t *quotes, const char *unicorn)
{
    for (size_t i = 0; i < json_array_size(quotes); i++)
        if (strcmp(json_str(json_array_get(quotes, i), "unicorn"), unicorn) == 0)
            return json_array_get(quotes, i);
    return NULL;
}

/* What a simulated unicorn answers to an RFQ: it decides "deterministically from the RFQ id and
 * its name" (src/workers/unicorns.c: FNV-1a of both) whether it answers, its price and its
 * goodies. Reproduced here so that the tests can tell exactly who answers what. */
struct prediction {
    bool answers;
    long cents;
    unsigned goodies; /* a bit per goodie_names entry */
};

static struct prediction predict(const char *rfq, const char *unicorn, int percent)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = rfq; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = unicorn; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= h >> 29;
    struct prediction pr = {.answers = h % 100 < (uint64_t)percent,
                            .cents = 2000 + (long)((h >> 24) % 8000),
                            .goodies = (unsigned)(h >> 48) & 0xf};
    return pr;
}

/* Checks that q is the predicted quote of its unicorn for rfq. */
static void assert_predicted(const char *rfq, json_t *q, int percent)
{
    const char *u = json_str(q, "unicorn");
    struct prediction pr = predict(rfq, u, percent);
    ck_assert_msg(pr.answers, "%s answered RFQ %s, which it should not", u, rfq);
    double price = json_number_value(json_object_get(q, "price"));
    ck_assert_msg(price >= 20 && price < 100, "%s: price %.2f outside [20, 100)", u, price);
    ck_assert_msg(lround(price * 100) == pr.cents, "%s: price %.2f, predicted %.2f", u, price,
                  pr.cents / 100.0);
    json_t *g = json_object_get(q, "goodies");
    size_t k = 0;
    for (int i = 0; i < 4; i++) {
        if (!(pr.goodies & (1u << i)))
            continue;
        ck_assert_msg(k < json_array_size(g) &&
                          strcmp(json_string_value(json_array_get(g, k)), goodie_names[i]) == 0,
                      "%s: goodies %s lack %s", u, json_dumps(g, 0), goodie_names[i]);
        k++;
    }
    ck_assert_int_eq(json_array_size(g), k);
}

/* POSTs {"body": body, "attributes": {"correlation_id": ...}} into rfq-responses as a unicorn
 * would (correlation NULL: no attributes); body is JSON text. */
static void send_response(struct harness_server *s, const char *body, const char *correlation)
{
    json_t *b = json_loads(body, JSON_DECODE_ANY, NULL);
    ck_assert_msg(b != NULL, "bad test body %s", body);
    json_t *m = json_pack("{s:o}", "body", b);
    if (correlation)
        json_object_set_new(
            m, "attributes",
            json_pack("{s:{s:s, s:s}}", "correlation_id", "type", "String", "value", correlation));
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    struct response r;
    harness_admin(s, "POST", "/queues/rfq-responses/messages", text, &r);
    ck_assert_msg(r.status == 201, "send %s: %ld %s", text, r.status, buf_str(&r.body));
    response_cleanup(&r);
    free(text);
}

/* POST /rfqs/{id}/quotes with token; returns the status. */
static long post_quote(struct harness_server *s, const char *id, const char *token,
                       const char *body, struct response *r)
{
    char path[120];
    snprintf(path, sizeof path, "/rfqs/%s/quotes", id);
    request(s, "POST", path, token, body, r);
    return r->status;
}

/* ---- 1. every unicorn answers before the deadline -------------------------------------------- */

START_TEST(all_unicorns_answer_early)
{
    struct harness_server s;
    harness_start(&s, eager_fleet);
    long long base[OUTCOMES];
    quote_counts(&s, base);
    char id[IDS_UUID_LEN];
    double w0 = wall_s(), t0 = now_s();
    double eta = submit(&s, "early-1", 10, FLEET, id);
    ck_assert_msg(eta >= w0 + 9.9 && eta <= wall_s() + 10.1, "eta %.3f is not submission + 10 s",
                  eta - w0);

    /* while it runs the status carries the eta and Retry-After: 1 (the fleet answers after
     * 50 ms at the soonest, but a slow machine may already see it done) */
    struct response r;
    get(&s, "/rfqs/%s/status", id, &r);
    ck_assert_int_eq(r.status, 200);
    char h[64];
    if (strcmp(json_str(r.json, "status"), "running") == 0) {
        ck_assert(response_header(&r, "Retry-After", h, sizeof h));
        ck_assert_str_eq(h, "1");
        ck_assert_double_eq_tol(ts_s(json_str(r.json, "eta")), eta, 0.0005);
        assert_status(r.json, id, false, NULL, FLEET,
                      (int)json_integer_value(json_object_get(r.json, "response_count")), false);
    }
    response_cleanup(&r);

    ck_assert_msg(wait_done(&s, id, 3, &r) > 0, "not done 3 s after submission: %s",
                  buf_str(&r.body));
    double took = now_s() - t0;
    assert_status(r.json, id, true, "all_answered", FLEET, FLEET, false);
    ck_assert_msg(!response_header(&r, "Retry-After", h, sizeof h), "Retry-After once done");
    response_cleanup(&r);
    ck_assert_msg(took < 3, "took %.2f s", took);

    get_result(&s, id, &r);
    ck_assert_str_eq(json_str(r.json, "customer"), "early-1");
    ck_assert_msg(ts_s(json_str(r.json, "completed_at")) < eta, "completed at its eta");
    json_t *quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), FLEET);
    for (int i = 0; i < FLEET; i++) {
        json_t *q = quote_of(quotes, fleet_names[i]);
        ck_assert_msg(q != NULL, "no quote of %s", fleet_names[i]);
        assert_predicted(id, q, 100);
    }
    double best = json_number_value(json_object_get(json_array_get(quotes, 0), "price"));

    /* the aliases read the same */
    const char *same_result[] = {"/retrieve-rfq-result?id=%s", "/query-instant-ride-rfq/%s"};
    for (int i = 0; i < 2; i++) {
        struct response a;
        get(&s, same_result[i], id, &a);
        ck_assert_int_eq(a.status, 200);
        ck_assert_msg(json_equal(a.json, r.json), "%s: %s differs from %s", same_result[i],
                      buf_str(&a.body), buf_str(&r.body));
        response_cleanup(&a);
    }
    response_cleanup(&r);
    struct response a;
    get(&s, "/rfqs/%s/status", id, &r);
    get(&s, "/retrieve-rfq-status?id=%s", id, &a);
    ck_assert_int_eq(a.status, 200);
    ck_assert(json_equal(a.json, r.json));
    response_cleanup(&a);
    response_cleanup(&r);

    /* the operator's view */
    char *row = sqlf_text("SELECT concat_ws('|', status, completion_reason, expected_responses, "
                          "response_count, best_price, took > interval '0') FROM rfq_progress "
                          "WHERE id = '%s'",
                          id);
    char want[160];
    snprintf(want, sizeof want, "done|all_answered|5|5|%.2f|t", best);
    ck_assert_str_eq(row, want);
    free(row);

    /* four quotes stored, the fifth completed it; every message consumed */
    long long moved[OUTCOMES] = {FLEET - 1, 1, 0, 0, 0, 0};
    wait_quote_counts(&s, base, moved, 3);
    ck_assert_int_eq(wait_sql(RFQ_QUEUES_SQL, 0, 5), 0);
    /* the unicorns' consumers count like every worker's: one series for the fleet */
    const char *fleet = "rydes_worker_messages_total{worker=\"unicorn-fleet\",outcome=\"handled\"}";
    for (int i = 0; i < 100 && metric(&s, fleet) < FLEET; i++) /* counted after each commit */
        harness_sleep_ms(50);
    ck_assert_int_eq(metric(&s, fleet), FLEET);
    harness_stop(&s);
}
END_TEST

/* An answer whose send fails (the database refuses quotes for a while: a trigger here) goes
 * again a second later instead of being dropped: the RFQ still gets every quote. */
START_TEST(answers_that_fail_to_send_go_again)
{
    struct harness_server s;
    harness_start(&s, eager_fleet);
    char sql[600];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION test_refuse_quotes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "RAISE EXCEPTION 'quotes refused for a while'; END $$; "
             "CREATE TRIGGER test_refuse_quotes BEFORE INSERT ON messages FOR EACH ROW "
             "WHEN (NEW.queue_id = %lld) EXECUTE FUNCTION test_refuse_quotes()",
             sqlf("SELECT id FROM queues WHERE name = 'rfq-responses'"));
    free(harness_sql(test_db, sql));
    char id[IDS_UUID_LEN];
    submit(&s, "refused-1", 10, FLEET, id);
    harness_sleep_ms(1500); /* every answer is due within 200 ms: each has failed */
    struct response r;
    get(&s, "/rfqs/%s/status", id, &r);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "response_count")), 0);
    response_cleanup(&r);
    free(harness_sql(test_db, "DROP TRIGGER test_refuse_quotes ON messages; "
                              "DROP FUNCTION test_refuse_quotes()"));
    ck_assert_msg(wait_done(&s, id, 5, &r) > 0, "not done 5 s after the database took quotes: %s",
                  buf_str(&r.body));
    assert_status(r.json, id, true, "all_answered", FLEET, FLEET, false);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

/* The deadline timer completes the due RFQs it can lock and skips one a stalled quote
 * transaction holds (it used to wait for it, holding up every other due RFQ). */
START_TEST(the_deadline_timer_skips_a_locked_rfq)
{
    struct harness_server s;
    harness_start(&s, no_services); /* migrates the database; nothing runs the timer but this */
    const char *ids[] = {"0b0b0b0b-0000-4000-8000-00000000000a",
                         "0b0b0b0b-0000-4000-8000-00000000000b"};
    for (int i = 0; i < 2; i++)
        sqlf("WITH r AS (INSERT INTO rfqs (id, from_location, to_location, customer, "
             "submitted_at, eta, expected_responses) VALUES ('%s', 'a', 'b', 'c', "
             "now() - interval '10 s', now() - interval '5 s', 5) RETURNING 1) "
             "SELECT count(*) FROM r",
             ids[i]);
    PGconn *holder = PQconnectdb(test_db), *timer = PQconnectdb(test_db);
    ck_assert(PQstatus(holder) == CONNECTION_OK && PQstatus(timer) == CONNECTION_OK);
    char sql[200];
    snprintf(sql, sizeof sql, "BEGIN; SELECT 1 FROM rfqs WHERE id = '%s' FOR NO KEY UPDATE",
             ids[0]);
    PQclear(PQexec(holder, sql));
    PQclear(PQexec(timer, "SET statement_timeout = '3s'"));
    PGresult *r = PQexec(timer, "SELECT rfq_expire()");
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(timer));
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND status = 'done' AND "
                          "completion_reason = 'timeout' AND completed_at = eta",
                          ids[1]),
                     1);
    PQclear(PQexec(holder, "ROLLBACK"));
    r = PQexec(timer, "SELECT rfq_expire()");
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE status = 'running'"), 0);
    PQfinish(holder);
    PQfinish(timer);
    harness_stop(&s);
}
END_TEST

/* ---- 2. nobody answers: done at the eta ------------------------------------------------------ */

START_TEST(silent_unicorns_make_it_time_out_at_the_eta)
{
    struct harness_server s;
    harness_start(&s, silent_fleet);
    long long expired = metric(&s, "rydes_rfqs_expired_total");
    ck_assert_int_ge(expired, 0);
    char id[IDS_UUID_LEN];
    double w0 = wall_s();
    double eta = submit(&s, "silent-1", 2, FLEET, id);
    ck_assert_msg(eta >= w0 + 1.99 && eta <= wall_s() + 2.01, "eta is not submission + 2 s");

    /* while it runs: status with Retry-After: 1, the result is 409 with Retry-After, the query
     * alias shows it as it stands */
    struct response r;
    char h[64];
    get(&s, "/rfqs/%s/status", id, &r);
    ck_assert_int_eq(r.status, 200);
    assert_status(r.json, id, false, NULL, FLEET, 0, false);
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    ck_assert_str_eq(h, "1");
    response_cleanup(&r);
    const char *results[] = {"/rfqs/%s/result", "/retrieve-rfq-result?id=%s"};
    for (int i = 0; i < 2; i++) {
        get(&s, results[i], id, &r);
        assert_problem(&r, 409);
        ck_assert_msg(response_header(&r, "Retry-After", h, sizeof h), "%s: no Retry-After",
                      results[i]);
        ck_assert_msg(atoi(h) >= 1 && atoi(h) <= 2, "%s: Retry-After %s", results[i], h);
        response_cleanup(&r);
    }
    get(&s, "/query-instant-ride-rfq/%s", id, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "id"), id);
    ck_assert_str_eq(json_str(r.json, "status"), "running");
    ck_assert_str_eq(json_str(r.json, "customer"), "silent-1");
    ck_assert(json_is_null(json_object_get(r.json, "completed_at")) ||
              !json_object_get(r.json, "completed_at"));
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "quotes")), 0);
    response_cleanup(&r);

    /* done at the eta: not before it, and within the timer's period after it */
    double seen = wait_done(&s, id, eta - wall_s() + 1.5, &r);
    ck_assert_msg(seen > 0, "not done 1.5 s after its eta");
    ck_assert_msg(seen >= eta - 0.05, "done %.3f s before its eta", eta - seen);
    ck_assert_msg(seen <= eta + 1.5, "done %.3f s after its eta", seen - eta);
    assert_status(r.json, id, true, "timeout", FLEET, 0, false);
    ck_assert(!response_header(&r, "Retry-After", h, sizeof h));
    response_cleanup(&r);
    /* past the eta no quote is taken any more, whether or not the timer recorded it yet */
    ck_assert_int_eq(
        post_quote(&s, id, HARNESS_ADMIN_TOKEN, "{\"unicorn\": \"sparkle\", \"price\": 1}", &r),
        409);
    assert_problem(&r, 409);
    response_cleanup(&r);

    get_result(&s, id, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "quotes")), 0);
    char completed_at[40];
    snprintf(completed_at, sizeof completed_at, "%s", json_str(r.json, "completed_at"));
    double completed = ts_s(completed_at);
    ck_assert_msg(fabs(completed - eta) < 0.0005, "completed %.3f s from its eta", completed - eta);
    response_cleanup(&r);

    /* the deadline timer records it within its period; the RFQ reads the same afterwards */
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM rfqs WHERE id = '%s' AND status = 'done' AND "
             "completion_reason = 'timeout' AND completed_at IS NOT NULL",
             id);
    ck_assert_int_eq(wait_sql(sql, 1, 2), 1);
    get_result(&s, id, &r);
    ck_assert_msg(strcmp(json_str(r.json, "completed_at"), completed_at) == 0,
                  "completed_at of a done RFQ changed from %s to %s once the deadline timer "
                  "recorded it",
                  completed_at, json_str(r.json, "completed_at"));
    response_cleanup(&r);
    double until = now_s() + 2;
    while (metric(&s, "rydes_rfqs_expired_total") < expired + 1 && now_s() < until)
        harness_sleep_ms(50);
    ck_assert_int_eq(metric(&s, "rydes_rfqs_expired_total"), expired + 1);
    char *row = sqlf_text("SELECT concat_ws('|', status, completion_reason, expected_responses, "
                          "response_count, coalesce(best_price::text, '-')) FROM rfq_progress "
                          "WHERE id = '%s'",
                          id);
    ck_assert_str_eq(row, "done|timeout|5|0|-");
    free(row);
    /* every unicorn took its request off its queue without answering */
    ck_assert_int_eq(wait_sql(RFQ_QUEUES_SQL, 0, 3), 0);
    harness_stop(&s);
}
END_TEST

/* ---- 2b. some answer, the others never do ---------------------------------------------------- */

#define MOODY_RFQS 4

START_TEST(unicorns_that_never_answer_leave_the_others_quotes_at_the_eta)
{
    struct harness_server s;
    harness_start(&s, moody_fleet);
    char ids[MOODY_RFQS][IDS_UUID_LEN];
    double etas[MOODY_RFQS];
    int answering[MOODY_RFQS], partial = 0;
    for (int i = 0; i < MOODY_RFQS; i++) {
        char customer[32];
        snprintf(customer, sizeof customer, "moody-%d", i);
        etas[i] = submit(&s, customer, 2, FLEET, ids[i]);
        answering[i] = 0;
        for (int u = 0; u < FLEET; u++)
            answering[i] += predict(ids[i], fleet_names[u], MOODY_PERCENT).answers;
        partial += answering[i] < FLEET;
    }
    for (int i = 0; i < MOODY_RFQS; i++) {
        struct response r;
        double seen = wait_done(&s, ids[i], etas[i] - wall_s() + 1.5, &r);
        ck_assert_msg(seen > 0, "RFQ %d not done 1.5 s after its eta", i);
        bool all = answering[i] == FLEET;
        assert_status(r.json, ids[i], true, all ? "all_answered" : "timeout", FLEET, answering[i],
                      false);
        if (!all)
            ck_assert_msg(seen >= etas[i] - 0.05, "RFQ %d done %.3f s before its eta", i,
                          etas[i] - seen);
        response_cleanup(&r);
        get_result(&s, ids[i], &r);
        json_t *quotes = json_object_get(r.json, "quotes");
        ck_assert_int_eq(assert_quotes(quotes), answering[i]);
        for (int u = 0; u < FLEET; u++) {
            json_t *q = quote_of(quotes, fleet_names[u]);
            bool answers = predict(ids[i], fleet_names[u], MOODY_PERCENT).answers;
            ck_assert_msg(answers == (q != NULL), "RFQ %d: %s %s", i, fleet_names[u],
                          answers ? "did not answer" : "answered");
            if (q)
                assert_predicted(ids[i], q, MOODY_PERCENT);
        }
        response_cleanup(&r);
    }
    /* each RFQ completes early with probability 0.6^5 (0.08): all four of them, 4e-5 */
    ck_assert_int_gt(partial, 0);
    ck_assert_int_eq(wait_sql(RFQ_QUEUES_SQL, 0, 3), 0);
    harness_stop(&s);
}
END_TEST

/* ---- 3. late and duplicate quotes, and what the aggregator ignores -------------------------- */

START_TEST(late_duplicate_and_uncorrelated_quotes)
{
    struct harness_server s;
    harness_start(&s, two_quiet_unicorns);
    char service[SECRET_TOKEN_LEN];
    create_token(&s, "service", service);
    long long base[OUTCOMES], handled0 = handled(&s);
    quote_counts(&s, base);
    char id[IDS_UUID_LEN], other[IDS_UUID_LEN];
    submit(&s, "late-1", 30, 2, id);

    /* a first quote, then the same unicorn again: the later one replaces the earlier */
    struct response r;
    ck_assert_int_eq(post_quote(&s, id, service,
                                "{\"unicorn\": \"sparkle\", \"price\": \"55.50\", \"goodies\": "
                                "[\"snacks\"]}",
                                &r),
                     202);
    ck_assert_str_eq(json_str(r.json, "status"), "accepted");
    ck_assert_str_eq(json_str(r.json, "rfq_id"), id);
    response_cleanup(&r);
    ck_assert_int_eq(wait_responses(&s, id, 1, 3), 1);
    get(&s, "/query-instant-ride-rfq/%s", id, &r);
    json_t *quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 1);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "sparkle");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 0), "price")),
                        55.5);
    json_t *g = json_object_get(json_array_get(quotes, 0), "goodies");
    ck_assert(json_array_size(g) == 1 &&
              strcmp(json_string_value(json_array_get(g, 0)), "snacks") == 0);
    response_cleanup(&r);

    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"sparkle\", \"price\": 44}", &r),
                     202);
    response_cleanup(&r);
    double until = now_s() + 3, price = 0;
    for (;;) {
        get(&s, "/query-instant-ride-rfq/%s", id, &r);
        quotes = json_object_get(r.json, "quotes");
        ck_assert_int_eq(assert_quotes(quotes), 1);
        price = json_number_value(json_object_get(json_array_get(quotes, 0), "price"));
        if (price == 44 || now_s() >= until)
            break;
        response_cleanup(&r);
        harness_sleep_ms(50);
    }
    ck_assert_msg(price == 44, "the later quote did not replace the earlier: %s", buf_str(&r.body));
    ck_assert_int_eq(json_array_size(json_object_get(json_array_get(quotes, 0), "goodies")), 0);
    ck_assert_str_eq(json_str(r.json, "status"), "running");
    response_cleanup(&r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfq_quotes WHERE rfq_id = '%s'", id), 1);

    /* the second unicorn completes it */
    ck_assert_int_eq(
        post_quote(&s, id, service, "{\"unicorn\": \"shadowfax\", \"price\": 60.25}", &r), 202);
    response_cleanup(&r);
    ck_assert_msg(wait_done(&s, id, 3, &r) > 0, "not done: %s", buf_str(&r.body));
    assert_status(r.json, id, true, "all_answered", 2, 2, false);
    response_cleanup(&r);
    get_result(&s, id, &r);
    quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 2);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "sparkle");
    ck_assert_str_eq(json_str(json_array_get(quotes, 1), "unicorn"), "shadowfax");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 1), "price")),
                        60.25);
    char *done_result = json_dumps(r.json, JSON_SORT_KEYS);
    response_cleanup(&r);

    /* too late through the API: 409, nothing enqueued */
    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"stardust\", \"price\": 1}", &r),
                     409);
    assert_problem(&r, 409);
    response_cleanup(&r);

    /* straight into the return address: a finished RFQ, an unknown one, no or a bad correlation
     * id, a unicorn the RFQ did not ask, invalid bodies (for a running RFQ), and a valid quote
     * sent as a string body */
    submit(&s, "late-2", 30, 2, other);
    char unknown[IDS_UUID_LEN];
    ids_uuid(unknown);
    send_response(&s, "{\"unicorn\": \"stardust\", \"price\": 10}", id);
    send_response(&s, "{\"unicorn\": \"stardust\", \"price\": 10}", unknown);
    send_response(&s, "{\"unicorn\": \"stardust\", \"price\": 10}", NULL);
    send_response(&s, "{\"unicorn\": \"stardust\", \"price\": 10}", "not-a-uuid");
    send_response(&s, "{\"unicorn\": \"moonbeam\", \"price\": 9}", other);
    const char *invalid[] = {
        "{\"unicorn\": \"stardust\", \"price\": -1}",
        "{\"price\": 10}",
        "{\"unicorn\": \"stardust\"}",
        "{\"unicorn\": \"stardust\", \"price\": 10.001}",
        "{\"unicorn\": \"stardust\", \"price\": 10, \"goodies\": \"snacks\"}",
        "{\"unicorn\": \"stardust\", \"price\": 10, \"tip\": 1}",
        "\"just a string\"",
        "[1, 2]",
    };
    int ninvalid = (int)(sizeof invalid / sizeof *invalid);
    for (int i = 0; i < ninvalid; i++)
        send_response(&s, invalid[i], other);
    send_response(&s, "\"{\\\"unicorn\\\": \\\"sparkle\\\", \\\"price\\\": \\\"12.00\\\"}\"",
                  other);
    long long moved[OUTCOMES] = {3, 1, 1, 1, 1, 2 + ninvalid};
    wait_quote_counts(&s, base, moved, 5);
    ck_assert_int_eq(wait_sql(RESPONSES_SQL, 0, 3), 0);
    ck_assert_int_eq(handled(&s) - handled0, 3 + 1 + 1 + 1 + 2 + ninvalid + 1);

    /* the finished RFQ is untouched; the running one holds the string-bodied quote only */
    get_result(&s, id, &r);
    char *now_result = json_dumps(r.json, JSON_SORT_KEYS);
    ck_assert_str_eq(now_result, done_result);
    free(now_result);
    free(done_result);
    response_cleanup(&r);
    get(&s, "/query-instant-ride-rfq/%s", other, &r);
    quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 1);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "sparkle");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 0), "price")), 12);
    response_cleanup(&r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfq_quotes"), 3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND status = 'running' AND "
                          "recipients = '{shadowfax,sparkle}'",
                          other),
                     1);
    harness_stop(&s);
}
END_TEST

/* ---- 4. validation ----------------------------------------------------------------------------
 */

/* A field change to a valid body (v NULL: remove the field; "@N": a string of N 'x') and the
 * field the 400 must name. */
struct bad_field {
    const char *f1, *v1, *f2, *v2, *named;
};

static const struct bad_field bad_rfqs[] = {
    {"from", NULL, NULL, NULL, "from"},
    {"to", NULL, NULL, NULL, "to"},
    {"customer", NULL, NULL, NULL, "customer"},
    {"from", "\"\"", NULL, NULL, "from"},
    {"to", "@201", NULL, NULL, "to"},
    {"customer", "5", NULL, NULL, "customer"},
    {"customer", "null", NULL, NULL, "customer"},
    {"from", "[\"A\"]", NULL, NULL, "from"},
    /* a field and its alias */
    {"from-location", "\"A\"", NULL, NULL, "from"},
    {"to-location", "\"B\"", NULL, NULL, "to"},
    {"customer-id", "\"c\"", NULL, NULL, "customer"},
    {"timeout-in-secs", "5", NULL, NULL, "timeout_in_secs"},
    /* an alias alone is validated under its own name */
    {"customer", NULL, "customer-id", "\"\"", "customer-id"},
    {"from", NULL, "from-location", "7", "from-location"},
    {"timeout_in_secs", NULL, "timeout-in-secs", "0", "timeout-in-secs"},
    {"timeout_in_secs", NULL, "timeout-in-secs", "\"301\"", "timeout-in-secs"},
    /* the timeout */
    {"timeout_in_secs", "0", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "301", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "-1", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"abc\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"12.5\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "12.5", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"0\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"-5\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\" 5\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"1e2\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "\"99999999999\"", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "true", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "null", NULL, NULL, "timeout_in_secs"},
    {"timeout_in_secs", "[5]", NULL, NULL, "timeout_in_secs"},
    /* unknown fields, near misses included */
    {"price", "1", NULL, NULL, "price"},
    {"timeout", "5", NULL, NULL, "timeout"},
    {"Customer", "\"x\"", NULL, NULL, "Customer"},
    {"timeout_in_seconds", "5", NULL, NULL, "timeout_in_seconds"},
};

static const struct bad_field bad_quotes[] = {
    {"unicorn", NULL, NULL, NULL, "unicorn"},
    {"unicorn", "\"\"", NULL, NULL, "unicorn"},
    {"unicorn", "@201", NULL, NULL, "unicorn"},
    {"unicorn", "5", NULL, NULL, "unicorn"},
    {"unicorn", "null", NULL, NULL, "unicorn"},
    {"price", NULL, NULL, NULL, "price"},
    {"price", "\"abc\"", NULL, NULL, "price"},
    {"price", "12.345", NULL, NULL, "price"},
    {"price", "\"12.345\"", NULL, NULL, "price"},
    {"price", "12.0000000001", NULL, NULL, "price"},
    {"price", "1e-9", NULL, NULL, "price"},
    {"price", "-1", NULL, NULL, "price"},
    {"price", "-0.01", NULL, NULL, "price"},
    {"price", "\"-1\"", NULL, NULL, "price"},
    {"price", "1000000.01", NULL, NULL, "price"},
    {"price", "1e300", NULL, NULL, "price"},
    {"price", "\"\"", NULL, NULL, "price"},
    {"price", "\"1e2\"", NULL, NULL, "price"},
    {"price", "true", NULL, NULL, "price"},
    {"price", "null", NULL, NULL, "price"},
    {"price", "[1]", NULL, NULL, "price"},
    {"goodies", "\"snacks\"", NULL, NULL, "goodies"},
    {"goodies", "{\"snacks\": 1}", NULL, NULL, "goodies"},
    {"goodies", "@list21", NULL, NULL, "goodies"},
    {"goodies", "[\"\"]", NULL, NULL, "goodies"},
    {"goodies", "[\"snacks\", 5]", NULL, NULL, "goodies"},
    {"goodies", "[null]", NULL, NULL, "goodies"},
    {"goodies", "@goodie101", NULL, NULL, "goodies"},
    {"tip", "1", NULL, NULL, "tip"},
    {"correlation_id", "\"x\"", NULL, NULL, "correlation_id"},
};

/* The valid body base with change b applied (caller frees). */
static char *changed_body(const char *base, const struct bad_field *b)
{
    json_t *o = json_loads(base, 0, NULL);
    ck_assert_ptr_nonnull(o);
    const char *f[] = {b->f1, b->f2}, *v[] = {b->v1, b->v2};
    for (int i = 0; i < 2 && f[i]; i++) {
        json_t *x;
        if (!v[i]) {
            json_object_del(o, f[i]);
            continue;
        } else if (strcmp(v[i], "@201") == 0) {
            char str[202];
            memset(str, 'x', 201);
            str[201] = '\0';
            x = json_string(str);
        } else if (strcmp(v[i], "@list21") == 0) {
            x = json_array();
            for (int k = 0; k < 21; k++)
                json_array_append_new(x, json_string("snacks"));
        } else if (strcmp(v[i], "@goodie101") == 0) {
            char str[102];
            memset(str, 'g', 101);
            str[101] = '\0';
            x = json_pack("[s]", str);
        } else {
            x = json_loads(v[i], JSON_DECODE_ANY, NULL);
        }
        ck_assert_msg(x != NULL, "bad table value %s", v[i]);
        json_object_set_new(o, f[i], x);
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* A body wrong as a whole and its status. */
struct bad_body {
    const char *body, *content_type;
    long status;
};

static const struct bad_body bad_bodies[] = {
    {"[]", NULL, 400},
    {"\"rfq\"", NULL, 400},
    {"42", NULL, 400},
    {"null", NULL, 400},
    {"{\"from\": ", NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\", \"customer\": \"d\"}", NULL, 400},
    {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"c\"}", "text/plain", 415},
};

#define VALID_RFQ   "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"v\", \"timeout_in_secs\": 5}"
#define VALID_QUOTE "{\"unicorn\": \"u1\", \"price\": 12.5, \"goodies\": [\"snacks\"]}"

/* Runs table (n rows) against path: each row must be a 400 naming its field. Lists the wrong
 * answers in wrong. */
static void try_table(struct harness_server *s, const char *path, const char *token,
                      const char *base, const struct bad_field *table, size_t n, struct buf *wrong)
{
    for (size_t i = 0; i < n; i++) {
        char *body = changed_body(base, &table[i]);
        struct response r;
        request(s, "POST", path, token, body, &r);
        if (r.status != 400 || !problem_names_field(&r, table[i].named))
            buf_printf(wrong, "\n  %s %s: %ld %s (expected 400 naming %s)", path, body, r.status,
                       buf_str(&r.body), table[i].named);
        else
            assert_problem(&r, 400);
        response_cleanup(&r);
        free(body);
    }
    for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
        struct response r;
        harness_request(s, "POST", path, token, bad_bodies[i].body, bad_bodies[i].content_type,
                        NULL, &r);
        if (r.status != bad_bodies[i].status)
            buf_printf(wrong, "\n  %s %s: %ld %s (expected %ld)", path, bad_bodies[i].body,
                       r.status, buf_str(&r.body), bad_bodies[i].status);
        else
            assert_problem(&r, r.status);
        response_cleanup(&r);
    }
}

/* The seconds between the submission and the eta of RFQ id, read through the query alias. */
static double timeout_of(struct harness_server *s, const char *id, double eta)
{
    struct response r;
    get(s, "/query-instant-ride-rfq/%s", id, &r);
    ck_assert_int_eq(r.status, 200);
    double t = eta - ts_s(json_str(r.json, "submitted_at"));
    response_cleanup(&r);
    return t;
}

START_TEST(invalid_rfqs_are_400_naming_the_field_and_change_nothing)
{
    struct harness_server s;
    harness_start(&s, no_services);
    struct buf wrong;
    buf_init(&wrong);
    try_table(&s, "/rfqs", HARNESS_ADMIN_TOKEN, VALID_RFQ, bad_rfqs,
              sizeof bad_rfqs / sizeof *bad_rfqs, &wrong);
    /* the alias answers the same */
    try_table(&s, "/submit-instant-ride-rfq", HARNESS_ADMIN_TOKEN, VALID_RFQ, bad_rfqs, 3, &wrong);
    ck_assert_msg(wrong.len == 0, "wrong answers:%s", buf_str(&wrong));
    buf_cleanup(&wrong);
    struct response r;
    request(&s, "POST", "/rfqs", HARNESS_ADMIN_TOKEN, NULL, &r);
    ck_assert_msg(r.status == 400 || r.status == 415, "no body: %ld", r.status);
    assert_problem(&r, r.status);
    response_cleanup(&r);
    /* every problem at once */
    request(&s, "POST", "/rfqs", HARNESS_ADMIN_TOKEN,
            "{\"from\": \"\", \"customer-id\": 1, \"timeout_in_secs\": 0, \"extra\": 0}", &r);
    assert_problem(&r, 400);
    const char *named[] = {"from", "to", "customer-id", "timeout_in_secs", "extra"};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        ck_assert_msg(problem_names_field(&r, named[i]), "%s not named: %s", named[i],
                      buf_str(&r.body));
    response_cleanup(&r);
    /* nothing stored, nothing published */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), 0);
    ck_assert_int_eq(sqlf(RFQ_QUEUES_SQL), 0);

    /* accepted: the hyphenated spellings with a numeric string, the bounds, the default */
    char id[IDS_UUID_LEN];
    double eta = submit_as(&s, "/submit-instant-ride-rfq", HARNESS_ADMIN_TOKEN,
                           "{\"from-location\": \"Sunset Blvd\", \"to-location\": \"Hollywood\", "
                           "\"customer-id\": \"hy-1\", \"timeout-in-secs\": \"5\"}",
                           FLEET, id);
    ck_assert_double_eq_tol(timeout_of(&s, id, eta), 5, 0.0005);
    get(&s, "/query-instant-ride-rfq/%s", id, &r);
    ck_assert_str_eq(json_str(r.json, "from"), "Sunset Blvd");
    ck_assert_str_eq(json_str(r.json, "to"), "Hollywood");
    ck_assert_str_eq(json_str(r.json, "customer"), "hy-1");
    response_cleanup(&r);
    const struct {
        const char *body;
        double timeout;
    } ok[] = {
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"d\"}", 30},
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"d\", \"timeout_in_secs\": 1}", 1},
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"d\", \"timeout_in_secs\": 300}", 300},
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"d\", \"timeout_in_secs\": \"300\"}",
         300},
        {"{\"from\": \"A\", \"to\": \"B\", \"customer\": \"d\", \"timeout-in-secs\": 7}", 7},
    };
    int n = (int)(sizeof ok / sizeof *ok);
    for (int i = 0; i < n; i++) {
        eta = submit_as(&s, "/rfqs", HARNESS_ADMIN_TOKEN, ok[i].body, FLEET, id);
        ck_assert_msg(fabs(timeout_of(&s, id, eta) - ok[i].timeout) < 0.0005, "%s: timeout %.3f",
                      ok[i].body, timeout_of(&s, id, eta));
    }
    /* each one published once to each of the five unicorns */
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), n + 1);
    for (int u = 0; u < FLEET; u++) {
        char q[64];
        snprintf(q, sizeof q, "rfq-unicorn-%s", fleet_names[u]);
        ck_assert_int_eq(in_queue(q), n + 1);
    }
    harness_stop(&s);
}
END_TEST

/* POST path with an Idempotency-Key header line key; asserts a 202 and copies the RFQ id. */
static void submit_keyed(struct harness_server *s, const char *path, const char *body,
                         const char *key, char *id)
{
    struct response r;
    harness_request(s, "POST", path, HARNESS_ADMIN_TOKEN, body, NULL, key, &r);
    ck_assert_msg(r.status == 202, "POST %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "id"));
    char self[80], h[200];
    snprintf(self, sizeof self, "/rfqs/%s/status", id);
    ck_assert(response_header(&r, "Location", h, sizeof h));
    ck_assert_str_eq(h, self);
    response_cleanup(&r);
}

/* A retried POST /rfqs with the same Idempotency-Key finds the first RFQ instead of asking the
 * unicorns again; the key with another request is 422. */
START_TEST(a_retry_with_the_same_key_finds_the_first_rfq)
{
    struct harness_server s;
    harness_start(&s, no_services);
    const char *key = "Idempotency-Key: rfq-key-1";
    char first[IDS_UUID_LEN], again[IDS_UUID_LEN];
    submit_keyed(&s, "/rfqs", "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\"}", key,
                 first);
    /* the same request spelled otherwise, through the alias */
    submit_keyed(&s, "/submit-instant-ride-rfq",
                 "{\"customer-id\": \"ik-rita\", \"to\": \"B\", \"from\": \"A\", "
                 "\"timeout-in-secs\": \"30\"}",
                 key, again);
    ck_assert_str_eq(again, first);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), 1);
    for (int u = 0; u < FLEET; u++) {
        char q[64];
        snprintf(q, sizeof q, "rfq-unicorn-%s", fleet_names[u]);
        ck_assert_int_eq(in_queue(q), 1);
    }
    /* another timeout is another request */
    struct response r;
    harness_request(&s, "POST", "/rfqs", HARNESS_ADMIN_TOKEN,
                    "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\", "
                    "\"timeout_in_secs\": 31}",
                    NULL, key, &r);
    assert_problem(&r, 422);
    response_cleanup(&r);
    harness_request(&s, "POST", "/rfqs", HARNESS_ADMIN_TOKEN,
                    "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\"}", NULL,
                    "Idempotency-Key: a b", &r);
    assert_problem(&r, 400);
    ck_assert(problem_names_field(&r, "Idempotency-Key"));
    response_cleanup(&r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), 1);
    /* another key asks again */
    submit_keyed(&s, "/rfqs", "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\"}",
                 "Idempotency-Key: rfq-key-2", again);
    ck_assert_str_ne(again, first);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), 2);
    /* a known key still answers after the topic is gone (a new request gets 503) */
    harness_admin(&s, "DELETE", "/topics/rfq-requests", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    submit_keyed(&s, "/rfqs", "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\"}", key,
                 again);
    ck_assert_str_eq(again, first);
    harness_request(&s, "POST", "/rfqs", HARNESS_ADMIN_TOKEN,
                    "{\"from\": \"A\", \"to\": \"B\", \"customer\": \"ik-rita\"}", NULL,
                    "Idempotency-Key: rfq-key-3", &r);
    ck_assert_int_eq(r.status, 503);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

/* A quote that came in before the eta but commits after it: a status read in between used to
 * say done with timeout (final, no Retry-After), then all_answered once the quote committed. It
 * now says running (poll again) while the quote holds the RFQ, and done once it has committed. */
START_TEST(a_quote_committing_at_the_eta_keeps_the_rfq_running)
{
    struct harness_server s;
    harness_start(&s, no_services);
    char id[IDS_UUID_LEN];
    char *body = rfq_body("eta-edith", 30);
    submit_as(&s, "/rfqs", HARNESS_ADMIN_TOKEN, body, FLEET, id);
    free(body);
    ck_assert_int_eq(sqlf("WITH u AS (UPDATE rfqs SET eta = clock_timestamp() + interval "
                          "'700 ms' WHERE id = '%s' RETURNING 1) SELECT count(*) FROM u",
                          id),
                     1);
    PGconn *pg = PQconnectdb(test_db);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PQclear(PQexec(pg, "BEGIN"));
    for (int u = 0; u < FLEET; u++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT rfq_add_quote('%s'::uuid, '%s'::text, 10::numeric, '[]'::jsonb)", id,
                 fleet_names[u]);
        PGresult *r = PQexec(pg, sql);
        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        ck_assert_str_eq(PQgetvalue(r, 0, 0), u + 1 < FLEET ? "stored" : "completed");
        PQclear(r);
    }
    char past[200];
    snprintf(past, sizeof past, "SELECT count(*) FROM rfqs WHERE id = '%s' AND eta <= now()", id);
    ck_assert_int_eq(wait_sql(past, 1, 5), 1);
    struct response r;
    get(&s, "/rfqs/%s/status", id, &r);
    ck_assert_int_eq(r.status, 200);
    assert_status(r.json, id, false, NULL, FLEET, 0, false);
    char h[16];
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    response_cleanup(&r);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    get(&s, "/rfqs/%s/status", id, &r);
    ck_assert_int_eq(r.status, 200);
    assert_status(r.json, id, true, "all_answered", FLEET, FLEET, false);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

START_TEST(invalid_quotes_unknown_ids_and_roles)
{
    struct harness_server s;
    harness_start(&s, no_services); /* nothing consumes rfq-responses: accepted quotes stay */
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN];
    create_token(&s, "app", app);
    create_token(&s, "service", service);
    char id[IDS_UUID_LEN], path[120];
    submit(&s, "quotes-1", 300, FLEET, id);
    snprintf(path, sizeof path, "/rfqs/%s/quotes", id);
    /* quotes under any name, as an RFQ that asked none by name takes them: the values are
     * tested here, the names in only_the_unicorns_asked_complete_an_rfq */
    sqlf("WITH u AS (UPDATE rfqs SET recipients = NULL WHERE id = '%s' RETURNING 1) "
         "SELECT count(*) FROM u",
         id);

    struct buf wrong;
    buf_init(&wrong);
    try_table(&s, path, service, VALID_QUOTE, bad_quotes, sizeof bad_quotes / sizeof *bad_quotes,
              &wrong);
    ck_assert_msg(wrong.len == 0, "wrong answers:%s", buf_str(&wrong));
    buf_cleanup(&wrong);
    ck_assert_int_eq(in_queue("rfq-responses"), 0);

    /* accepted: numeric strings, the bounds, no or null goodies, 20 goodies, 100 characters
     * (a goodie of 100 characters in more than 100 bytes: a test of its own below) */
    char many[1024] = "[", long_ascii[128];
    for (int k = 0; k < 20; k++)
        strcat(many, k ? ", \"snacks\"" : "\"snacks\"");
    strcat(many, "]");
    memset(long_ascii, 'g', 100);
    long_ascii[100] = '\0';
    struct {
        char body[1200];
        double price;
        int goodies;
    } ok[8] = {
        {"{\"unicorn\": \"a\", \"price\": \"12.5\"}", 12.5, 0},
        {"{\"unicorn\": \"b\", \"price\": 0}", 0, 0},
        {"{\"unicorn\": \"c\", \"price\": 1000000}", 1000000, 0},
        {"{\"unicorn\": \"d\", \"price\": \"0.10\", \"goodies\": null}", 0.1, 0},
        {"", 19.99, 20},
        {"", 5, 1},
        {"{\"unicorn\": \"g\", \"price\": \"6\", \"goodies\": [\"\xf0\x9f\xa6\x84 stickers\"]}", 6,
         1},
        {"{\"unicorn\": \"h\", \"price\": 7, \"goodies\": []}", 7, 0},
    };
    snprintf(ok[4].body, sizeof ok[4].body,
             "{\"unicorn\": \"e\", \"price\": 19.99, \"goodies\": %s}", many);
    snprintf(ok[5].body, sizeof ok[5].body,
             "{\"unicorn\": \"f\", \"price\": 5, \"goodies\": [\"%s\"]}", long_ascii);
    for (int i = 0; i < 8; i++) {
        struct response r;
        long st = post_quote(&s, id, i % 2 ? service : HARNESS_ADMIN_TOKEN, ok[i].body, &r);
        if (st != 202)
            buf_printf(&wrong, "\n  %s: %ld %s (expected 202)", ok[i].body, st, buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_msg(wrong.len == 0, "refused valid quotes:%s", buf_str(&wrong));
    buf_cleanup(&wrong);
    /* each is in the return address as a unicorn would have sent it */
    ck_assert_int_eq(in_queue("rfq-responses"), 8);
    struct response r;
    harness_admin(&s, "GET", "/queues/rfq-responses/messages:peek?limit=10", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *msgs = json_object_get(r.json, "messages");
    ck_assert_int_eq(json_array_size(msgs), 8);
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *attr = json_object_get(json_object_get(m, "attributes"), "correlation_id");
        ck_assert_str_eq(json_str(attr, "type"), "String");
        ck_assert_str_eq(json_str(attr, "value"), id);
        json_t *body = json_object_get(m, "body");
        json_t *parsed =
            json_is_string(body) ? json_loads(json_string_value(body), 0, NULL) : json_incref(body);
        ck_assert_msg(json_is_object(parsed), "quote body %s", buf_str(&r.body));
        const char *u = json_str(parsed, "unicorn");
        ck_assert_ptr_nonnull(u);
        int k = u[0] - 'a';
        ck_assert(k >= 0 && k < 8);
        ck_assert_msg(json_is_number(json_object_get(parsed, "price")), "price not a number");
        ck_assert_double_eq_tol(json_number_value(json_object_get(parsed, "price")), ok[k].price,
                                1e-9);
        ck_assert_int_eq(json_array_size(json_object_get(parsed, "goodies")), ok[k].goodies);
        json_decref(parsed);
    }
    response_cleanup(&r);

    /* ids: required by the query aliases, unknown ones 404 everywhere */
    const char *need_id[] = {"/retrieve-rfq-status", "/retrieve-rfq-result"};
    for (int i = 0; i < 2; i++) {
        harness_admin(&s, "GET", need_id[i], NULL, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, "id"), "%s: %s", need_id[i], buf_str(&r.body));
        response_cleanup(&r);
    }
    char unknown[IDS_UUID_LEN];
    ids_uuid(unknown);
    const char *gets[] = {"/rfqs/%s/status", "/rfqs/%s/result", "/retrieve-rfq-status?id=%s",
                          "/retrieve-rfq-result?id=%s", "/query-instant-ride-rfq/%s"};
    const char *unknowns[] = {unknown, "not-a-uuid", "00000000-0000-0000-0000-000000000000"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 5; i++) {
            get(&s, gets[i], unknowns[k], &r);
            ck_assert_msg(r.status == 404, "%s with %s: %ld", gets[i], unknowns[k], r.status);
            assert_problem(&r, 404);
            response_cleanup(&r);
        }
        ck_assert_int_eq(post_quote(&s, unknowns[k], service, VALID_QUOTE, &r), 404);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }

    /* roles: apps submit and read, only services (and admins) post quotes */
    char other[IDS_UUID_LEN];
    char *body = rfq_body("roles-1", 300);
    submit_as(&s, "/rfqs", app, body, FLEET, other);
    submit_as(&s, "/submit-instant-ride-rfq", service, body, FLEET, other);
    const char *reads[] = {"/rfqs/%s/status", "/retrieve-rfq-status?id=%s",
                           "/query-instant-ride-rfq/%s"};
    for (int i = 0; i < 3; i++) {
        path_of(path, sizeof path, reads[i], other);
        request(&s, "GET", path, app, NULL, &r);
        ck_assert_msg(r.status == 200, "app GET %s: %ld", path, r.status);
        response_cleanup(&r);
        request(&s, "GET", path, NULL, NULL, &r);
        assert_problem(&r, 401);
        response_cleanup(&r);
    }
    snprintf(path, sizeof path, "/rfqs/%s/result", other);
    request(&s, "GET", path, app, NULL, &r);
    assert_problem(&r, 409);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, other, app, VALID_QUOTE, &r), 403);
    assert_problem(&r, 403);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, other, NULL, VALID_QUOTE, &r), 401);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, other, "rydes_not_a_token", VALID_QUOTE, &r), 401);
    response_cleanup(&r);
    request(&s, "POST", "/rfqs", NULL, body, &r);
    assert_problem(&r, 401);
    response_cleanup(&r);
    free(body);
    ck_assert_int_eq(in_queue("rfq-responses"), 8);
    /* other methods */
    snprintf(path, sizeof path, "/rfqs/%s/status", other);
    harness_admin(&s, "DELETE", path, NULL, &r);
    assert_problem(&r, 405);
    char allow[64];
    ck_assert(response_header(&r, "Allow", allow, sizeof allow));
    ck_assert_msg(strstr(allow, "GET") != NULL, "Allow: %s", allow);
    response_cleanup(&r);
    harness_stop(&s);
}
END_TEST

/* A goodie may be "up to 100 characters" (the 400's own words; every other text field counts
 * characters): 100 characters of two bytes each are accepted through the API, and the same quote
 * sent straight into rfq-responses is stored, not ignored as invalid. */
/* A unicorn's quote replaces its earlier one by when it was sent, not when the aggregator got to
 * it: a revision (40) processed before the quote it revises (50, delayed here as a retried
 * message would be) stands. */
START_TEST(a_revised_quote_stands_whatever_the_processing_order)
{
    struct harness_server s;
    harness_start(&s, aggregator_only);
    char id[IDS_UUID_LEN];
    submit(&s, "rev-ruth", 300, FLEET, id);
    long long base[OUTCOMES];
    quote_counts(&s, base);
    char text[512];
    snprintf(text, sizeof text,
             "{\"body\": {\"unicorn\": \"sparkle\", \"price\": 50}, \"delay_seconds\": 2, "
             "\"attributes\": {\"correlation_id\": {\"type\": \"String\", \"value\": \"%s\"}}}",
             id);
    struct response r;
    harness_admin(&s, "POST", "/queues/rfq-responses/messages", text, &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    harness_sleep_ms(20); /* sent later, by the clock */
    send_response(&s, "{\"unicorn\": \"sparkle\", \"price\": 40}", id);
    long long moved[OUTCOMES] = {[STORED] = 1, [SUPERSEDED] = 1};
    wait_quote_counts(&s, base, moved, 6);
    ck_assert_int_eq(sqlf("SELECT price * 100 FROM rfq_quotes WHERE rfq_id = '%s' AND "
                          "unicorn = 'sparkle'",
                          id),
                     4000);
    harness_stop(&s);
}
END_TEST

/* An original and its revision sent in one batch carry the same sent_at: the one inserted later
 * (the revision) stands although the original, delayed, is processed after it (it replaced it). */
START_TEST(a_revision_sent_in_the_same_batch_stands)
{
    struct harness_server s;
    harness_start(&s, aggregator_only);
    char id[IDS_UUID_LEN];
    submit(&s, "rev-batch", 300, FLEET, id);
    long long base[OUTCOMES];
    quote_counts(&s, base);
    char text[800];
    snprintf(text, sizeof text,
             "{\"entries\": [{\"id\": \"original\", \"body\": {\"unicorn\": \"sparkle\", "
             "\"price\": 50}, \"delay_seconds\": 2, \"attributes\": {\"correlation_id\": "
             "{\"type\": \"String\", \"value\": \"%s\"}}}, {\"id\": \"revision\", \"body\": "
             "{\"unicorn\": \"sparkle\", \"price\": 40}, \"attributes\": {\"correlation_id\": "
             "{\"type\": \"String\", \"value\": \"%s\"}}}]}",
             id, id);
    struct response r;
    harness_admin(&s, "POST", "/queues/rfq-responses/messages:batch", text, &r);
    ck_assert_msg(r.status == 200 && json_array_size(json_object_get(r.json, "successful")) == 2,
                  "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    long long moved[OUTCOMES] = {[STORED] = 1, [SUPERSEDED] = 1};
    wait_quote_counts(&s, base, moved, 6);
    ck_assert_int_eq(sqlf("SELECT price * 100 FROM rfq_quotes WHERE rfq_id = '%s' AND "
                          "unicorn = 'sparkle'",
                          id),
                     4000);
    harness_stop(&s);
}
END_TEST

START_TEST(a_goodie_of_100_characters_is_accepted_whatever_its_bytes)
{
    struct harness_server s;
    harness_start(&s, aggregator_only);
    char id[IDS_UUID_LEN];
    submit(&s, "utf8-1", 300, FLEET, id);
    char goodie[256] = "", longer[260], body[400];
    for (int k = 0; k < 100; k++)
        strcat(goodie, "\xc3\xa9"); /* é: 100 characters, 200 bytes */
    strcat(strcpy(longer, goodie), "\xc3\xa9");
    long long base[OUTCOMES];
    quote_counts(&s, base);

    struct response r;
    snprintf(body, sizeof body, "{\"unicorn\": \"sparkle\", \"price\": 2, \"goodies\": [\"%s\"]}",
             longer);
    ck_assert_int_eq(post_quote(&s, id, HARNESS_ADMIN_TOKEN, body, &r), 400);
    ck_assert(problem_names_field(&r, "goodies"));
    response_cleanup(&r);
    snprintf(body, sizeof body, "{\"unicorn\": \"stardust\", \"price\": 3, \"goodies\": [\"%s\"]}",
             goodie);
    send_response(&s, body, id);
    long long now[OUTCOMES];
    double until = now_s() + 3;
    do {
        harness_sleep_ms(50);
        quote_counts(&s, now);
    } while (now[STORED] + now[INVALID] == base[STORED] + base[INVALID] && now_s() < until);
    snprintf(body, sizeof body, "{\"unicorn\": \"shadowfax\", \"price\": 1, \"goodies\": [\"%s\"]}",
             goodie);
    long st = post_quote(&s, id, HARNESS_ADMIN_TOKEN, body, &r);
    char msg[1024];
    snprintf(msg, sizeof msg,
             "a goodie of 100 characters in 200 bytes: POST /rfqs/{id}/quotes answered %ld %s; "
             "sent into rfq-responses, the aggregator counted it %lld stored, %lld ignored_invalid",
             st, buf_str(&r.body), now[STORED] - base[STORED], now[INVALID] - base[INVALID]);
    response_cleanup(&r);
    harness_stop(&s);
    ck_assert_msg(st == 202 && now[STORED] == base[STORED] + 1, "%s", msg);
}
END_TEST

/* ---- 5. an external unicorn joins through the messaging API ---------------------------------- */

/* Receives one message of queue with token (long poll up to 5 s) into r and returns it. */
static json_t *receive_one(struct harness_server *s, const char *queue, const char *token,
                           struct response *r)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    request(s, "POST", path, token, "{\"max_messages\": 10, \"wait_seconds\": 5}", r);
    ck_assert_msg(r->status == 200, "receive %s: %ld %s", queue, r->status, buf_str(&r->body));
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert_msg(json_array_size(msgs) == 1, "%s: %s", queue, buf_str(&r->body));
    return json_array_get(msgs, 0);
}

/* Acks message m of queue. */
static void ack(struct harness_server *s, const char *queue, const char *token, json_t *m)
{
    char path[400];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, json_str(m, "receipt"));
    struct response r;
    request(s, "DELETE", path, token, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
}

/* Checks the request an external unicorn received: its body (JSON text or object) and the
 * correlation id and return address (attributes of a raw delivery, of the envelope otherwise). */
static void assert_request(json_t *m, const char *id, double eta, bool raw)
{
    json_t *body = json_object_get(m, "body"), *attrs = json_object_get(m, "attributes");
    json_t *parsed =
        json_is_string(body) ? json_loads(json_string_value(body), 0, NULL) : json_incref(body);
    ck_assert(json_is_object(parsed));
    const char *type = "type", *value = "value";
    if (!raw) {
        json_t *env = parsed;
        json_t *msg = json_object_get(env, "Message");
        ck_assert_msg(json_is_string(msg), "not an envelope: %s", json_dumps(env, 0));
        attrs = json_incref(json_object_get(env, "MessageAttributes"));
        parsed = json_loads(json_string_value(msg), 0, NULL);
        json_decref(env);
        type = "Type";
        value = "Value";
    } else {
        json_incref(attrs);
    }
    ck_assert_str_eq(json_str(parsed, "rfq_id"), id);
    ck_assert_str_eq(json_str(parsed, "from"), "Unicorn Meadow");
    ck_assert_str_eq(json_str(parsed, "to"), "Rainbow Bridge");
    ck_assert_str_eq(json_str(parsed, "customer"), "ext-1");
    ck_assert_double_eq_tol(ts_s(json_str(parsed, "eta")), eta, 0.0005);
    json_t *c = json_object_get(attrs, "correlation_id"),
           *ra = json_object_get(attrs, "return_address");
    ck_assert_str_eq(json_str(c, type), "String");
    ck_assert_str_eq(json_str(c, value), id);
    ck_assert_str_eq(json_str(ra, type), "String");
    ck_assert_str_eq(json_str(ra, value), "rfq-responses");
    json_decref(parsed);
    json_decref(attrs);
}

static void put_subscription(struct harness_server *s, const char *name, const char *body)
{
    char path[160];
    snprintf(path, sizeof path, "/topics/rfq-requests/subscriptions/%s", name);
    struct response r;
    harness_admin(s, "PUT", path, body, &r);
    ck_assert_msg(r.status == 201, "PUT %s: %ld %s", path, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

START_TEST(an_external_unicorn_joins_through_the_api)
{
    struct harness_server s;
    harness_start(&s, no_unicorns);
    char service[SECRET_TOKEN_LEN], app[SECRET_TOKEN_LEN];
    create_token(&s, "service", service);
    create_token(&s, "app", app);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM subscriptions s JOIN topics t ON t.id = "
                          "s.topic_id WHERE t.name = 'rfq-requests'"),
                     0);

    /* nobody subscribed: nobody to wait for, done at once with no quotes */
    char id[IDS_UUID_LEN];
    char *body = rfq_body("ext-0", 10);
    submit_as(&s, "/rfqs", app, body, 0, id);
    free(body);
    struct response r;
    get_result(&s, id, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "quotes")), 0);
    response_cleanup(&r);

    /* the operator subscribes an external provider's queue, and a filtered one that the
     * requests never match */
    harness_put_queue(&s, "rfq-unicorn-ext", NULL, 201);
    harness_put_queue(&s, "rfq-unicorn-picky", NULL, 201);
    put_subscription(&s, "ext", "{\"queue\": \"rfq-unicorn-ext\", \"raw_delivery\": true}");
    put_subscription(&s, "picky",
                     "{\"queue\": \"rfq-unicorn-picky\", \"raw_delivery\": true, "
                     "\"filter_policy\": {\"return_address\": [\"elsewhere\"]}}");
    body = rfq_body("ext-1", 10);
    double eta = submit_as(&s, "/rfqs", app, body, 1, id);
    json_t *m = receive_one(&s, "rfq-unicorn-ext", service, &r);
    assert_request(m, id, eta, true);
    char answer[300];
    snprintf(answer, sizeof answer,
             "{\"body\": {\"unicorn\": \"ext\", \"price\": 42.5}, \"attributes\": "
             "{\"correlation_id\": {\"type\": \"String\", \"value\": \"%s\"}}}",
             id);
    struct response a;
    request(&s, "POST", "/queues/rfq-responses/messages", service, answer, &a);
    ck_assert_int_eq(a.status, 201);
    response_cleanup(&a);
    ack(&s, "rfq-unicorn-ext", service, m);
    response_cleanup(&r);
    ck_assert_msg(wait_done(&s, id, 3, &r) > 0, "not done: %s", buf_str(&r.body));
    assert_status(r.json, id, true, "all_answered", 1, 1, false);
    response_cleanup(&r);
    get_result(&s, id, &r);
    json_t *quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 1);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "ext");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 0), "price")),
                        42.5);
    ck_assert_int_eq(json_array_size(json_object_get(json_array_get(quotes, 0), "goodies")), 0);
    response_cleanup(&r);
    ck_assert_int_eq(in_queue("rfq-unicorn-picky"), 0);

    /* a second provider that takes the requests in envelopes: both are waited for */
    harness_put_queue(&s, "rfq-unicorn-env", NULL, 201);
    put_subscription(&s, "env", "{\"queue\": \"rfq-unicorn-env\"}");
    eta = submit_as(&s, "/rfqs", app, body, 2, id);
    m = receive_one(&s, "rfq-unicorn-ext", service, &r);
    assert_request(m, id, eta, true);
    ack(&s, "rfq-unicorn-ext", service, m);
    response_cleanup(&r);
    m = receive_one(&s, "rfq-unicorn-env", service, &r);
    assert_request(m, id, eta, false);
    ack(&s, "rfq-unicorn-env", service, m);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, id, service,
                                "{\"unicorn\": \"env\", \"price\": 30, \"goodies\": [\"mints\"]}",
                                &r),
                     202);
    response_cleanup(&r);
    ck_assert_int_eq(wait_responses(&s, id, 1, 3), 1);
    get(&s, "/rfqs/%s/status", id, &r);
    assert_status(r.json, id, false, NULL, 2, 1, false);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"ext\", \"price\": 42.5}", &r),
                     202);
    response_cleanup(&r);
    ck_assert_msg(wait_done(&s, id, 3, &r) > 0, "not done: %s", buf_str(&r.body));
    assert_status(r.json, id, true, "all_answered", 2, 2, false);
    response_cleanup(&r);
    get_result(&s, id, &r);
    quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 2);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "env");
    ck_assert_str_eq(json_str(json_array_get(quotes, 1), "unicorn"), "ext");
    response_cleanup(&r);
    ck_assert_int_eq(in_queue("rfq-unicorn-picky"), 0);
    ck_assert_int_eq(wait_sql(RFQ_QUEUES_SQL, 0, 3), 0);

    /* an operator deleting the topic or the return address: 503 (never 500), nothing stored;
     * a restart re-creates them */
    long long rfqs = sqlf("SELECT count(*) FROM rfqs");
    char running[IDS_UUID_LEN];
    submit_as(&s, "/rfqs", app, body, 2, running);
    harness_admin(&s, "DELETE", "/queues/rfq-responses", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(post_quote(&s, running, service, "{\"unicorn\": \"ext\", \"price\": 1}", &r),
                     503);
    assert_problem(&r, 503);
    char h[32];
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    response_cleanup(&r);
    harness_admin(&s, "DELETE", "/topics/rfq-requests", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    request(&s, "POST", "/rfqs", app, body, &r);
    assert_problem(&r, 503);
    ck_assert(response_header(&r, "Retry-After", h, sizeof h));
    response_cleanup(&r);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs"), rfqs + 1);
    harness_stop(&s);
    harness_start(&s, no_unicorns);
    submit_as(&s, "/rfqs", app, body, 0, running);
    free(body);
    harness_stop(&s);
}
END_TEST

/* Posts a quote of unicorn name at price for RFQ id through the API (202). */
static void quote_as(struct harness_server *s, const char *token, const char *id, const char *name,
                     int price)
{
    char body[160];
    snprintf(body, sizeof body, "{\"unicorn\": \"%s\", \"price\": %d}", name, price);
    struct response r;
    ck_assert_int_eq(post_quote(s, id, token, body, &r), 202);
    response_cleanup(&r);
}

/* Quotes as each of the n unicorns names for RFQ id; asserts it is then done, all answered. */
static void answer_all(struct harness_server *s, const char *token, const char *id,
                       const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        quote_as(s, token, id, names[i], 20 + i);
    struct response r;
    ck_assert_msg(wait_done(s, id, 3, &r) > 0, "not done: %s", buf_str(&r.body));
    assert_status(r.json, id, true, "all_answered", n, n, false);
    response_cleanup(&r);
}

/* Quotes under names of a client's own never complete an RFQ: only the unicorns it asked (the
 * queues rfq-unicorn-NAME whose subscriptions took its request) count. With a subscription named
 * otherwise whose answers may come under any name, every name counts. */
START_TEST(only_the_unicorns_asked_complete_an_rfq)
{
    struct harness_server s;
    harness_start(&s, two_quiet_unicorns);
    char service[SECRET_TOKEN_LEN], id[IDS_UUID_LEN];
    create_token(&s, "service", service);
    long long base[OUTCOMES];
    quote_counts(&s, base);
    submit(&s, "asked-1", 30, 2, id);
    ck_assert_int_eq(
        sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND recipients = '{shadowfax,sparkle}'",
             id),
        1);
    /* through the API: 400 naming unicorn at once, nothing enqueued; straight into the return
     * address: acked and counted, not recorded */
    struct response r;
    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"impostor-1\", \"price\": 1}", &r),
                     400);
    assert_problem(&r, 400);
    ck_assert_msg(problem_names_field(&r, "unicorn"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(in_queue("rfq-responses"), 0);
    send_response(&s, "{\"unicorn\": \"impostor-1\", \"price\": 1}", id);
    send_response(&s, "{\"unicorn\": \"impostor-2\", \"price\": 2}", id);
    long long refused[OUTCOMES] = {0, 0, 0, 0, 2, 0}, refused_one[OUTCOMES] = {0, 0, 0, 0, 1, 0};
    wait_quote_counts(&s, base, refused, 5);
    get(&s, "/rfqs/%s/status", id, &r);
    assert_status(r.json, id, false, NULL, 2, 0, false);
    response_cleanup(&r);
    static const char *const asked[] = {"shadowfax", "sparkle"};
    answer_all(&s, service, id, asked, 2);

    /* a unicorn called NULL is a name like any other (not a null element of the names) */
    harness_put_queue(&s, "rfq-unicorn-NULL", NULL, 201);
    put_subscription(&s, "null", "{\"queue\": \"rfq-unicorn-NULL\", \"raw_delivery\": true}");
    submit(&s, "asked-null", 30, 3, id);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND "
                          "ARRAY(SELECT unnest(recipients) ORDER BY 1) = "
                          "ARRAY['NULL', 'shadowfax', 'sparkle']",
                          id),
                     1);
    quote_counts(&s, base);
    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"impostor-3\", \"price\": 1}", &r),
                     400);
    response_cleanup(&r);
    send_response(&s, "{\"unicorn\": \"impostor-3\", \"price\": 3}", id);
    wait_quote_counts(&s, base, refused_one, 5);
    static const char *const with_null[] = {"NULL", "shadowfax", "sparkle"};
    answer_all(&s, service, id, with_null, 3);

    harness_put_queue(&s, "acme-quotes", NULL, 201);
    put_subscription(&s, "acme", "{\"queue\": \"acme-quotes\", \"raw_delivery\": true}");
    submit(&s, "asked-2", 30, 4, id);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND recipients IS NULL", id),
                     1);
    static const char *const anyone[] = {"acme", "shadowfax", "sparkle", "anyone"};
    answer_all(&s, service, id, anyone, 4);
    harness_stop(&s);
}
END_TEST

/* Waits until the fan-out has delivered every request published so far. */
static void delivered(void)
{
    ck_assert_int_eq(wait_sql("SELECT count(*) FROM publish_outbox", 0, 5), 0);
}

/* Does RFQ id record exactly the unicorns names (a text[] literal in order)? */
static bool asks(const char *id, const char *names)
{
    return sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND "
                "ARRAY(SELECT unnest(recipients) ORDER BY 1) = '%s'",
                id, names) == 1;
}

/* An RFQ asks the unicorns whose subscriptions took its request: each once, however many
 * subscriptions lead to its queue (it waits for one answer from it, not two), and none whose
 * filter policy turned the request away (its quote does not count). Without names, it waits
 * for one answer per target. */
START_TEST(an_rfq_asks_each_chosen_unicorn_once)
{
    struct harness_server s;
    harness_start(&s, two_quiet_unicorns);
    char service[SECRET_TOKEN_LEN], id[IDS_UUID_LEN];
    create_token(&s, "service", service);
    put_subscription(&s, "shadowfax-again",
                     "{\"queue\": \"rfq-unicorn-shadowfax\", \"raw_delivery\": true}");
    harness_put_queue(&s, "rfq-unicorn-picky", NULL, 201);
    put_subscription(&s, "picky",
                     "{\"queue\": \"rfq-unicorn-picky\", \"raw_delivery\": true, "
                     "\"filter_policy\": {\"customer\": [\"vip-1\"]}, "
                     "\"filter_policy_scope\": \"body\"}");

    submit(&s, "twice-1", 30, 2, id); /* three deliveries, two unicorns */
    delivered();
    ck_assert_int_eq(in_queue("rfq-unicorn-shadowfax"), 2);
    ck_assert_int_eq(in_queue("rfq-unicorn-picky"), 0);
    ck_assert(asks(id, "{shadowfax,sparkle}"));
    struct response r;
    ck_assert_int_eq(post_quote(&s, id, service, "{\"unicorn\": \"picky\", \"price\": 1}", &r),
                     400);
    response_cleanup(&r);
    static const char *const two[] = {"shadowfax", "sparkle"};
    answer_all(&s, service, id, two, 2);

    submit(&s, "vip-1", 30, 3, id); /* the filter takes this one */
    delivered();
    ck_assert_int_eq(in_queue("rfq-unicorn-picky"), 1);
    ck_assert(asks(id, "{picky,shadowfax,sparkle}"));
    static const char *const three[] = {"picky", "shadowfax", "sparkle"};
    answer_all(&s, service, id, three, 3);

    /* raw and enveloped subscriptions mixed: published in a transaction of its own */
    put_subscription(&s, "shadowfax-enveloped", "{\"queue\": \"rfq-unicorn-shadowfax\"}");
    submit(&s, "twice-2", 30, 2, id);
    ck_assert_int_eq(in_queue("rfq-unicorn-shadowfax"), 2 + 2 + 3);
    ck_assert(asks(id, "{shadowfax,sparkle}"));
    answer_all(&s, service, id, two, 2);

    /* a queue named otherwise, subscribed twice: no names, one answer per target */
    harness_put_queue(&s, "acme-quotes", NULL, 201);
    put_subscription(&s, "acme", "{\"queue\": \"acme-quotes\", \"raw_delivery\": true}");
    put_subscription(&s, "acme-again", "{\"queue\": \"acme-quotes\", \"raw_delivery\": true}");
    submit(&s, "twice-3", 30, 3, id);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND recipients IS NULL", id),
                     1);
    static const char *const anyone[] = {"acme", "shadowfax", "sparkle"};
    answer_all(&s, service, id, anyone, 3);
    harness_stop(&s);
}
END_TEST

/* ---- 6. a restart while RFQs run --------------------------------------------------------------
 */

/* Sleeps until the wall clock passes t. */
static void sleep_until_wall(double t)
{
    while (wall_s() < t)
        harness_sleep_ms(20);
}

START_TEST(rfqs_complete_across_a_restart)
{
    struct harness_server s;
    harness_start(&s, aggregator_only);
    char a[IDS_UUID_LEN], b[IDS_UUID_LEN];
    /* A: its quote recorded, then the server stops before the eta and starts after it */
    double eta_a = submit(&s, "restart-a", 10, FLEET, a); /* room for a loaded machine (ASan) */
    send_response(&s, "{\"unicorn\": \"moonbeam\", \"price\": 30}", a);
    ck_assert_int_eq(wait_responses(&s, a, 1, 2), 1);
    long long expired = metric(&s, "rydes_rfqs_expired_total");
    harness_stop(&s);
    ck_assert_msg(wall_s() < eta_a, "the server stopped after the eta (%.2f s late)",
                  wall_s() - eta_a);
    sleep_until_wall(eta_a + 0.3);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfqs WHERE id = '%s' AND status = 'running'", a),
                     1);
    harness_start(&s, aggregator_only);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM rfqs WHERE id = '%s' AND status = 'done' AND "
             "completion_reason = 'timeout'",
             a);
    ck_assert_int_eq(wait_sql(sql, 1, 2), 1);
    struct response r;
    get(&s, "/rfqs/%s/status", a, &r);
    assert_status(r.json, a, true, "timeout", FLEET, 1, false);
    response_cleanup(&r);
    get_result(&s, a, &r);
    json_t *quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 1);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "moonbeam");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 0), "price")), 30);
    ck_assert_msg(ts_s(json_str(r.json, "completed_at")) >= eta_a - 0.001, "completed before eta");
    response_cleanup(&r);
    ck_assert_int_ge(metric(&s, "rydes_rfqs_expired_total"), expired + 1);
    harness_stop(&s);

    /* B: two quotes of one unicorn wait in the return address while no aggregator runs; the
     * restarted server gathers them before the eta (the later one wins) and the RFQ times out
     * as usual */
    harness_start(&s, no_services);
    double eta_b = submit(&s, "restart-b", 4, FLEET, b);
    send_response(&s, "{\"unicorn\": \"rainbow\", \"price\": \"31.00\"}", b);
    send_response(&s, "{\"unicorn\": \"rainbow\", \"price\": \"25.75\"}", b);
    ck_assert_int_eq(in_queue("rfq-responses"), 2);
    harness_stop(&s);
    harness_start(&s, aggregator_only);
    ck_assert_int_eq(wait_responses(&s, b, 1, 2), 1);
    get(&s, "/rfqs/%s/status", b, &r);
    ck_assert_msg(strcmp(json_str(r.json, "status"), "running") == 0 || wall_s() >= eta_b,
                  "done before its eta: %s", buf_str(&r.body));
    response_cleanup(&r);
    double seen = wait_done(&s, b, eta_b - wall_s() + 1.5, &r);
    ck_assert_msg(seen > 0 && seen >= eta_b - 0.05, "B done at %.3f s from its eta", seen - eta_b);
    assert_status(r.json, b, true, "timeout", FLEET, 1, false);
    response_cleanup(&r);
    get_result(&s, b, &r);
    quotes = json_object_get(r.json, "quotes");
    ck_assert_int_eq(assert_quotes(quotes), 1);
    ck_assert_str_eq(json_str(json_array_get(quotes, 0), "unicorn"), "rainbow");
    ck_assert_double_eq(json_number_value(json_object_get(json_array_get(quotes, 0), "price")),
                        25.75);
    response_cleanup(&r);
    ck_assert_int_eq(in_queue("rfq-responses"), 0);
    ck_assert_int_eq(in_queue("rfq-responses-dlq"), 0);
    harness_stop(&s);
}
END_TEST

/* ---- 7. fifty at once --------------------------------------------------------------------------
 */

#define CONCURRENT 50
/* every RFQ done within this of its submission: answers come within 0.3 s, and their eta is
 * 30 s away (an RFQ done later than this timed out); 5 s was met by a sanitizer build in a
 * parallel run */
#define CONCURRENT_S 15.0

struct client {
    const char *base, *token;
    int n;
    pthread_barrier_t *start;
    /* outcome, checked by the main thread */
    long post_status;
    char id[IDS_UUID_LEN];
    int expected, responses, quotes, distinct;
    bool done, sorted, all_answered;
    double took;
    char error[256];
};

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

/* One request on the thread's own handle; returns the status (0: transport error) and the
 * parsed body in *json (caller decrefs). */
static long client_request(CURL *c, struct client *cl, const char *method, const char *path,
                           const char *body, json_t **json)
{
    char url[512], auth[128];
    snprintf(url, sizeof url, "%s%s", cl->base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cl->token);
    struct curl_slist *hs = curl_slist_append(NULL, auth);
    hs = curl_slist_append(hs, "Expect:");
    if (body)
        hs = curl_slist_append(hs, "Content-Type: application/json");
    struct buf out;
    buf_init(&out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    if (!body)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hs);
    *json = out.len ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    buf_cleanup(&out);
    return status;
}

static void *run_client(void *arg)
{
    struct client *cl = arg;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(cl->error, sizeof cl->error, "curl_easy_init failed");
        return NULL;
    }
    char body[200], path[120];
    snprintf(body, sizeof body,
             "{\"from\": \"Unicorn Meadow\", \"to\": \"Rainbow Bridge\", \"customer\": "
             "\"conc-%d\", \"timeout_in_secs\": 30}",
             cl->n);
    json_t *j = NULL;
    pthread_barrier_wait(cl->start);
    double t0 = now_s();
    cl->post_status = client_request(c, cl, "POST", "/rfqs", body, &j);
    const char *id = json_str(j, "id");
    if (cl->post_status != 202 || !id) {
        snprintf(cl->error, sizeof cl->error, "POST /rfqs: %ld", cl->post_status);
        json_decref(j);
        curl_easy_cleanup(c);
        return NULL;
    }
    snprintf(cl->id, sizeof cl->id, "%s", id);
    cl->expected = (int)json_integer_value(json_object_get(j, "expected_responses"));
    json_decref(j);
    snprintf(path, sizeof path, "/rfqs/%s/status", cl->id);
    while (now_s() - t0 < CONCURRENT_S + 5) {
        long st = client_request(c, cl, "GET", path, NULL, &j);
        if (st != 200) {
            snprintf(cl->error, sizeof cl->error, "GET %s: %ld", path, st);
            json_decref(j);
            break;
        }
        cl->done = strcmp(json_str(j, "status") ? json_str(j, "status") : "", "done") == 0;
        if (cl->done) {
            cl->took = now_s() - t0;
            cl->responses = (int)json_integer_value(json_object_get(j, "response_count"));
            const char *reason = json_str(j, "completion_reason");
            cl->all_answered = reason && strcmp(reason, "all_answered") == 0;
        }
        json_decref(j);
        if (cl->done)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (cl->done) {
        snprintf(path, sizeof path, "/rfqs/%s/result", cl->id);
        long st = client_request(c, cl, "GET", path, NULL, &j);
        json_t *quotes = json_object_get(j, "quotes");
        if (st != 200 || !json_is_array(quotes))
            snprintf(cl->error, sizeof cl->error, "GET %s: %ld", path, st);
        cl->quotes = (int)json_array_size(quotes);
        cl->sorted = true;
        for (size_t i = 0; i < json_array_size(quotes); i++) {
            json_t *q = json_array_get(quotes, i);
            if (i > 0 &&
                json_number_value(json_object_get(q, "price")) <
                    json_number_value(json_object_get(json_array_get(quotes, i - 1), "price")))
                cl->sorted = false;
            bool seen = false;
            for (size_t k = 0; k < i; k++)
                seen = seen || strcmp(json_str(json_array_get(quotes, k), "unicorn"),
                                      json_str(q, "unicorn")) == 0;
            cl->distinct += !seen;
        }
        json_decref(j);
    }
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(fifty_concurrent_rfqs_all_answered)
{
    struct harness_server s;
    harness_start(&s, busy_fleet);
    /* every client is an app of its own: a token each (one token would meet its rate limit) */
    static char tokens[CONCURRENT][SECRET_TOKEN_LEN];
    for (int i = 0; i < CONCURRENT; i++)
        create_token(&s, "app", tokens[i]);
    static struct client clients[CONCURRENT];
    pthread_t threads[CONCURRENT];
    static pthread_barrier_t start; /* the threads outlive a failed check's jump out of here */
    pthread_barrier_init(&start, NULL, CONCURRENT);
    for (int i = 0; i < CONCURRENT; i++) {
        clients[i] = (struct client){.base = s.base, .token = tokens[i], .n = i, .start = &start};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_client, &clients[i]), 0);
    }
    for (int i = 0; i < CONCURRENT; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    double slowest = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        struct client *cl = &clients[i];
        ck_assert_msg(cl->error[0] == '\0', "client %d: %s", i, cl->error);
        ck_assert_int_eq(cl->post_status, 202);
        ck_assert_int_eq(cl->expected, FLEET);
        ck_assert_msg(cl->done, "RFQ %s of client %d not done", cl->id, i);
        ck_assert_msg(cl->all_answered, "RFQ %s of client %d timed out", cl->id, i);
        ck_assert_int_eq(cl->responses, FLEET);
        ck_assert_int_eq(cl->quotes, FLEET);
        ck_assert_int_eq(cl->distinct, FLEET);
        ck_assert(cl->sorted);
        slowest = cl->took > slowest ? cl->took : slowest;
    }
    ck_assert_msg(slowest <= CONCURRENT_S, "the slowest RFQ took %.2f s", slowest);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfq_progress WHERE customer LIKE 'conc-%%' AND "
                          "status = 'done' AND completion_reason = 'all_answered' AND "
                          "response_count = 5"),
                     CONCURRENT);
    ck_assert_int_eq(sqlf("SELECT count(*) FROM rfq_quotes"), CONCURRENT * FLEET);
    ck_assert_int_eq(wait_sql(RFQ_QUEUES_SQL, 0, 5), 0);
    harness_stop(&s);
}
END_TEST

/* A quote whose transaction began before the eta but that reaches the RFQ after it (as one
 * that waited for another quote's row lock) is refused: the eta is judged when the quote is
 * recorded, so a reader told "timeout" is never contradicted by a later all_answered. */
START_TEST(a_quote_recorded_after_the_eta_is_refused)
{
    struct harness_server s;
    harness_start(&s, no_services); /* migrates test_db */
    harness_stop(&s);
    char *v = harness_sql(
        test_db, "INSERT INTO rfqs (id, from_location, to_location, customer, submitted_at, eta, "
                 "expected_responses) VALUES ('00000000-0000-4000-8000-0000000000e7', 'a', 'b', "
                 "'c', now(), now() + interval '300 milliseconds', 1)");
    free(v);
    v = harness_sql(test_db, "BEGIN; SELECT pg_sleep(0.6); "
                             "SELECT rfq_add_quote('00000000-0000-4000-8000-0000000000e7', "
                             "'late', 10, NULL); COMMIT");
    free(v);
    v = harness_sql(test_db, "SELECT status || ' ' || coalesce(completion_reason, '-') || ' ' || "
                             "(SELECT count(*) FROM rfq_quotes) FROM rfqs");
    ck_assert_str_eq(v, "running - 0"); /* the timer completes it as timeout, quoteless */
    free(v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rfqs");
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_checked_fixture(api, fresh_database, forget_database);
    tcase_add_test(api, invalid_rfqs_are_400_naming_the_field_and_change_nothing);
    tcase_add_test(api, invalid_quotes_unknown_ids_and_roles);
    tcase_add_test(api, a_retry_with_the_same_key_finds_the_first_rfq);
    tcase_add_test(api, a_quote_committing_at_the_eta_keeps_the_rfq_running);
    tcase_add_test(api, a_revised_quote_stands_whatever_the_processing_order);
    tcase_add_test(api, a_revision_sent_in_the_same_batch_stands);
    tcase_add_test(api, a_goodie_of_100_characters_is_accepted_whatever_its_bytes);
    suite_add_tcase(s, api);
    TCase *gather = tcase_create("scatter-gather");
    tcase_set_timeout(gather, 60);
    tcase_add_checked_fixture(gather, fresh_database, forget_database);
    tcase_add_test(gather, all_unicorns_answer_early);
    tcase_add_test(gather, answers_that_fail_to_send_go_again);
    tcase_add_test(gather, the_deadline_timer_skips_a_locked_rfq);
    tcase_add_test(gather, silent_unicorns_make_it_time_out_at_the_eta);
    tcase_add_test(gather, unicorns_that_never_answer_leave_the_others_quotes_at_the_eta);
    tcase_add_test(gather, late_duplicate_and_uncorrelated_quotes);
    tcase_add_test(gather, an_external_unicorn_joins_through_the_api);
    tcase_add_test(gather, only_the_unicorns_asked_complete_an_rfq);
    tcase_add_test(gather, an_rfq_asks_each_chosen_unicorn_once);
    tcase_add_test(gather, rfqs_complete_across_a_restart);
    tcase_add_test(gather, fifty_concurrent_rfqs_all_answered);
    tcase_add_test(gather, a_quote_recorded_after_the_eta_is_refused);
    suite_add_tcase(s, gather);
    return harness_run(s);
}
