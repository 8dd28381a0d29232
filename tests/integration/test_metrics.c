/* Integration: /metrics. The whole exposition is checked line by line with the rules of
 * `promtool check metrics` (names, label syntax and escaping, one HELP and one TYPE per family
 * before its samples, families contiguous, no duplicate series, counters ending in _total,
 * histograms with le buckets up to +Inf and _sum/_count, values that parse), and the series of
 * issue 10 are present and move: per-queue operations (sent, received, deleted, redelivered,
 * dead-lettered), per-topic publishes, per-subscription deliveries and filtered-out, Wild Rydes
 * work by state, the pool, long-poll waiters and PostgreSQL's health of the engine's tables. */
#include "harness.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_server srv;

enum { MAX_FAMILIES = 256, MAX_SERIES = 8192 };

struct family {
    char name[128];
    char type[16];
    bool help, typed, closed;
};

struct checker {
    struct family fam[MAX_FAMILIES];
    int nfam;
    int current; /* family of the last line, -1 before any */
    char *series[MAX_SERIES];
    int nseries;
};

static bool name_ok(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != ':')
            return false;
    return true;
}

static struct family *family(struct checker *k, const char *name, size_t n)
{
    for (int i = 0; i < k->nfam; i++)
        if (strlen(k->fam[i].name) == n && strncmp(k->fam[i].name, name, n) == 0)
            return &k->fam[i];
    ck_assert_int_lt(k->nfam, MAX_FAMILIES);
    struct family *f = &k->fam[k->nfam++];
    snprintf(f->name, sizeof f->name, "%.*s", (int)n, name);
    return f;
}

/* Makes f the family being read; a family seen before and left is an error (not contiguous). */
static void enter(struct checker *k, struct family *f, const char *line)
{
    int idx = (int)(f - k->fam);
    if (k->current == idx)
        return;
    ck_assert_msg(!f->closed, "family %s is not contiguous: %s", f->name, line);
    if (k->current >= 0)
        k->fam[k->current].closed = true;
    k->current = idx;
}

static void comment_line(struct checker *k, const char *line)
{
    bool help = strncmp(line, "# HELP ", 7) == 0, type = strncmp(line, "# TYPE ", 7) == 0;
    if (!help && !type)
        return; /* other comments are allowed */
    const char *name = line + 7;
    size_t n = strcspn(name, " ");
    ck_assert_msg(name_ok(name, n), "bad metric name: %s", line);
    ck_assert_msg(name[n] == ' ' && name[n + 1], "%s without text: %s", help ? "HELP" : "TYPE",
                  line);
    struct family *f = family(k, name, n);
    enter(k, f, line);
    if (help) {
        ck_assert_msg(!f->help, "second HELP: %s", line);
        f->help = true;
        return;
    }
    ck_assert_msg(!f->typed, "second TYPE: %s", line);
    const char *t = name + n + 1;
    ck_assert_msg(!strcmp(t, "counter") || !strcmp(t, "gauge") || !strcmp(t, "histogram") ||
                      !strcmp(t, "summary") || !strcmp(t, "untyped"),
                  "bad type: %s", line);
    ck_assert_msg(strcmp(t, "counter") != 0 || (n > 6 && !strncmp(name + n - 6, "_total", 6)),
                  "a counter's name must end in _total: %s", line);
    snprintf(f->type, sizeof f->type, "%s", t);
    f->typed = true;
}

/* Checks the label set at p ("{...}") and returns the character after it. */
static const char *labels(const char *p, const char *line)
{
    p++;
    while (*p != '}') {
        size_t n = strcspn(p, "=");
        ck_assert_msg(name_ok(p, n) && p[n] == '=' && p[n + 1] == '"', "bad label: %s", line);
        p += n + 2;
        while (*p && *p != '"') {
            if (*p == '\\') {
                ck_assert_msg(p[1] == '\\' || p[1] == '"' || p[1] == 'n', "bad escape: %s", line);
                p++;
            }
            p++;
        }
        ck_assert_msg(*p == '"', "unterminated label value: %s", line);
        p++;
        if (*p == ',')
            p++;
        else
            ck_assert_msg(*p == '}', "bad label list: %s", line);
    }
    return p + 1;
}

/* The family a sample named name (n bytes) belongs to: itself, or a histogram's base. */
static struct family *sample_family(struct checker *k, const char *name, size_t n)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t s = strlen(suffixes[i]);
        if (n > s && !strncmp(name + n - s, suffixes[i], s)) {
            for (int j = 0; j < k->nfam; j++)
                if (strlen(k->fam[j].name) == n - s && !strncmp(k->fam[j].name, name, n - s) &&
                    !strcmp(k->fam[j].type, "histogram"))
                    return &k->fam[j];
        }
    }
    return family(k, name, n);
}

static void sample_line(struct checker *k, const char *line)
{
    size_t n = strcspn(line, "{ ");
    ck_assert_msg(name_ok(line, n), "bad sample name: %s", line);
    struct family *f = sample_family(k, line, n);
    ck_assert_msg(f->typed && f->help, "sample before its HELP and TYPE: %s", line);
    enter(k, f, line);
    const char *p = line[n] == '{' ? labels(line + n, line) : line + n;
    ck_assert_msg(*p == ' ', "no value: %s", line);
    char *end;
    double v = strtod(p + 1, &end);
    ck_assert_msg(end != p + 1 && (*end == '\0' || *end == ' '), "bad value: %s", line);
    ck_assert_msg(strcmp(f->type, "counter") != 0 || (v >= 0 && !isnan(v)), "negative counter: %s",
                  line);
    size_t key = (size_t)(p - line);
    for (int i = 0; i < k->nseries; i++)
        ck_assert_msg(strlen(k->series[i]) != key || strncmp(k->series[i], line, key) != 0,
                      "duplicate series: %s", line);
    ck_assert_int_lt(k->nseries, MAX_SERIES);
    k->series[k->nseries++] = strndup(line, key);
}

/* Every histogram has +Inf buckets, _sum and _count. */
static void check_histograms(const char *text, const struct checker *k)
{
    for (int i = 0; i < k->nfam; i++) {
        if (strcmp(k->fam[i].type, "histogram") != 0)
            continue;
        char want[200];
        snprintf(want, sizeof want, "\n%s_bucket{", k->fam[i].name);
        ck_assert_msg(strstr(text, want), "%s has no buckets", k->fam[i].name);
        snprintf(want, sizeof want, "\n%s_count{", k->fam[i].name);
        ck_assert_msg(strstr(text, want), "%s has no _count", k->fam[i].name);
        snprintf(want, sizeof want, "\n%s_sum{", k->fam[i].name);
        ck_assert_msg(strstr(text, want), "%s has no _sum", k->fam[i].name);
        bool inf = false; /* on one of this family's own bucket lines */
        snprintf(want, sizeof want, "\n%s_bucket{", k->fam[i].name);
        for (const char *at = strstr(text, want); at && !inf; at = strstr(at + 1, want)) {
            const char *end = strchr(at + 1, '\n');
            const char *le = strstr(at, "le=\"+Inf\"");
            inf = le && (!end || le < end);
        }
        ck_assert_msg(inf, "%s has no +Inf bucket", k->fam[i].name);
    }
}

/* Checks the whole exposition text. */
static void check_exposition(const char *text)
{
    struct checker *k = calloc(1, sizeof *k);
    k->current = -1;
    char *copy = strdup(text);
    ck_assert_msg(text[strlen(text) - 1] == '\n', "the exposition must end with a newline");
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            comment_line(k, line);
        else
            sample_line(k, line);
    }
    check_histograms(text, k);
    for (int i = 0; i < k->nseries; i++)
        free(k->series[i]);
    free(copy);
    free(k);
}

/* The value of the series whose line starts with prefix (name and labels), or -1. */
static double series_value(const char *text, const char *prefix)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s ", prefix);
    const char *at = strstr(text, want);
    return at ? strtod(at + strlen(want), NULL) : -1;
}

static char *scrape(void);

/* A scrape that shows series: queues, topics and subscriptions made a moment ago appear once a
 * scrape reads them again (at most a second later; test_ops shows a new queue's). Caller
 * frees. */
static char *scrape_showing(const char *series)
{
    for (int i = 0;; i++) {
        char *text = scrape();
        if (series_value(text, series) >= 0 || i == 30)
            return text;
        free(text);
        harness_sleep_ms(100);
    }
}

static char *scrape(void)
{
    struct response r;
    harness_request(&srv, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char ct[128];
    ck_assert(response_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert_ptr_nonnull(strstr(ct, "text/plain; version=0.0.4"));
    char *text = strdup(buf_str(&r.body));
    response_cleanup(&r);
    return text;
}

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

START_TEST(the_exposition_passes_the_promtool_rules)
{
    struct response r;
    harness_put_queue(&srv, "m-lint", NULL, 201);
    harness_admin(&srv, "POST", "/queues/m-lint/messages", "{\"body\": \"x\"}", &r);
    response_cleanup(&r);
    char *text = scrape();
    check_exposition(text);
    /* the families of issue 10 are all there */
    static const char *const families[] = {
        "rydes_http_requests_total",
        "rydes_http_request_duration_seconds",
        "rydes_queue_messages",
        "rydes_queue_oldest_age_seconds",
        "rydes_dead_letter_messages",
        "rydes_queue_operations_total",
        "rydes_topic_publishes_total",
        "rydes_subscription_deliveries_total",
        "rydes_tasks",
        "rydes_rfqs",
        "rydes_fares",
        "rydes_saga_steps_compensated",
        "rydes_db_pool_connections",
        "rydes_long_poll_waiters",
        "rydes_http_connections",
        "rydes_http_parsed_body_bytes",
        "rydes_pg_dead_rows",
        "rydes_pg_oldest_transaction_seconds",
        "rydes_pg_xid_age",
        "rydes_publishes_total",
        "rydes_fanout_events_total",
        "rydes_fanout_deliveries_total",
        "rydes_combined_send_statements_total",
        "rydes_combined_send_messages_total",
        "rydes_combined_ride_statements_total",
        "rydes_combined_ride_stored_total",
        "rydes_outbox_events",
        "rydes_outbox_oldest_pending_seconds",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char want[160];
        snprintf(want, sizeof want, "# TYPE %s ", families[i]);
        ck_assert_msg(strstr(text, want), "no family %s", families[i]);
    }
    ck_assert_double_ge(series_value(text, "rydes_pg_dead_rows{table=\"messages\"}"), 0);
    ck_assert_double_ge(series_value(text, "rydes_http_connections"), 1); /* the scrape's own */
    free(text);
}
END_TEST

/* Receives from q (visibility 1 s, up to 10) and deletes all but the first; returns how many
 * came. */
static int receive_and_ack(const char *q, bool keep_first)
{
    char path[128];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", q);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"max_messages\": 10, \"visibility_timeout\": 1}", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *msgs = json_object_get(r.json, "messages");
    int n = (int)json_array_size(msgs);
    for (int i = keep_first ? 1 : 0; i < n; i++) {
        char del[256];
        snprintf(del, sizeof del, "/queues/%s/messages/%s", q,
                 json_str(json_array_get(msgs, (size_t)i), "receipt"));
        struct response d;
        harness_admin(&srv, "DELETE", del, NULL, &d);
        ck_assert_int_eq(d.status, 204);
        response_cleanup(&d);
    }
    response_cleanup(&r);
    return n;
}

START_TEST(queue_operations_are_counted)
{
    harness_put_queue(&srv, "m-dlq", NULL, 201);
    harness_put_queue(&srv, "m-ops",
                      "{\"dead_letter\": {\"queue\": \"m-dlq\", \"max_receive_count\": 2}}", 201);
    struct response r;
    for (int i = 0; i < 3; i++) {
        harness_admin(&srv, "POST", "/queues/m-ops/messages", "{\"body\": \"x\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    ck_assert_int_eq(receive_and_ack("m-ops", true), 3); /* two acked, one kept */
    harness_sleep_ms(1200);
    ck_assert_int_eq(receive_and_ack("m-ops", true), 1); /* redelivered, kept again */
    harness_sleep_ms(1200);
    ck_assert_int_eq(receive_and_ack("m-ops", true), 0); /* third delivery: dead-lettered */
    char *text = scrape();
    check_exposition(text);
    const char *series[][2] = {{"sent", "3"},
                               {"received", "4"},
                               {"deleted", "2"},
                               {"redelivered", "1"},
                               {"dead_lettered", "1"}};
    for (size_t i = 0; i < 5; i++) {
        char prefix[160];
        snprintf(prefix, sizeof prefix, "rydes_queue_operations_total{queue=\"m-ops\",op=\"%s\"}",
                 series[i][0]);
        ck_assert_msg(series_value(text, prefix) == atof(series[i][1]), "%s = %g, want %s", prefix,
                      series_value(text, prefix), series[i][1]);
    }
    free(text);
}
END_TEST

static double queue_op(const char *queue, const char *op)
{
    char prefix[160];
    snprintf(prefix, sizeof prefix, "rydes_queue_operations_total{queue=\"%s\",op=\"%s\"}", queue,
             op);
    char *text = scrape();
    double v = series_value(text, prefix);
    free(text);
    return v;
}

/* A move the dead-letter queue refuses (its row locked, as by a delete of it) is not a dead
 * letter: counted were claims, each receive's three with a lease of 0. */
START_TEST(only_messages_moved_count_as_dead_lettered)
{
    harness_put_queue(&srv, "m-held-dlq", NULL, 201);
    harness_put_queue(&srv, "m-held",
                      "{\"dead_letter\": {\"queue\": \"m-held-dlq\", \"max_receive_count\": 1}}",
                      201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/m-held/messages", "{\"body\": \"x\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    const char *receive = "{\"visibility_timeout\": 0, \"wait_seconds\": 0}";
    harness_admin(&srv, "POST", "/queues/m-held/messages:receive", receive, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
    PGconn *hold = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(hold), CONNECTION_OK);
    PGresult *h = PQexec(hold, "BEGIN; SELECT 1 FROM queues WHERE name = 'm-held-dlq' FOR UPDATE");
    ck_assert_int_eq(PQresultStatus(h), PGRES_TUPLES_OK);
    PQclear(h);
    for (int i = 0; i < 3; i++) {
        harness_admin(&srv, "POST", "/queues/m-held/messages:receive", receive, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 0);
        response_cleanup(&r);
    }
    ck_assert_double_eq(queue_op("m-held", "dead_lettered"), 0);
    PQclear(PQexec(hold, "COMMIT"));
    PQfinish(hold);
    harness_admin(&srv, "POST", "/queues/m-held/messages:receive", receive, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 0);
    response_cleanup(&r);
    ck_assert_double_eq(queue_op("m-held", "dead_lettered"), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = 'm-held-dlq'"),
                     1);
}
END_TEST

/* Deleting a message already deleted answers 204 again but deletes nothing: counted once, on a
 * standard queue and on a FIFO one. */
START_TEST(a_message_deleted_twice_is_counted_once)
{
    const char *queues[] = {"m-twice", "m-twice.fifo"};
    const char *sends[] = {"{\"body\": \"x\"}",
                           "{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d\"}"};
    for (int q = 0; q < 2; q++) /* both before a scrape: the list of queues is cached */
        harness_put_queue(&srv, queues[q], NULL, 201);
    for (int q = 0; q < 2; q++) {
        char path[128], del[256];
        struct response r;
        snprintf(path, sizeof path, "/queues/%s/messages", queues[q]);
        harness_admin(&srv, "POST", path, sends[q], &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
        snprintf(path, sizeof path, "/queues/%s/messages:receive", queues[q]);
        harness_admin(&srv, "POST", path, "{}", &r);
        json_t *m = json_array_get(json_object_get(r.json, "messages"), 0);
        ck_assert_ptr_nonnull(m);
        snprintf(del, sizeof del, "/queues/%s/messages/%s", queues[q], json_str(m, "receipt"));
        response_cleanup(&r);
        for (int i = 0; i < 2; i++) {
            harness_admin(&srv, "DELETE", del, NULL, &r);
            ck_assert_int_eq(r.status, 204);
            response_cleanup(&r);
        }
        ck_assert_double_eq(queue_op(queues[q], "deleted"), 1);
    }
}
END_TEST

START_TEST(publishes_and_filters_are_counted_per_subscription)
{
    struct response r;
    harness_put_queue(&srv, "m-all", NULL, 201);
    harness_put_queue(&srv, "m-big", NULL, 201);
    harness_admin(&srv, "PUT", "/topics/m-topic", NULL, &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/topics/m-topic/subscriptions/all", "{\"queue\": \"m-all\"}", &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/topics/m-topic/subscriptions/big",
                  "{\"queue\": \"m-big\", \"filter_policy\": {\"fare\": [{\"numeric\": "
                  "[\">=\", 50]}]}}",
                  &r);
    response_cleanup(&r);
    const char *fares[] = {"10", "60", "70"};
    for (int i = 0; i < 3; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"body\": \"ride\", \"attributes\": {\"fare\": {\"type\": \"Number\", "
                 "\"value\": \"%s\"}}}",
                 fares[i]);
        harness_admin(&srv, "POST", "/topics/m-topic/messages", body, &r);
        ck_assert_int_lt(r.status, 300);
        response_cleanup(&r);
    }
    char *text = scrape_showing("rydes_subscription_deliveries_total{topic=\"m-topic\","
                                "subscription=\"big\",outcome=\"filtered_out\"}");
    ck_assert_double_eq(series_value(text, "rydes_topic_publishes_total{topic=\"m-topic\"}"), 3);
    ck_assert_double_eq(series_value(text, "rydes_subscription_deliveries_total{topic=\"m-topic\","
                                           "subscription=\"all\",outcome=\"delivered\"}"),
                        3);
    ck_assert_double_eq(series_value(text, "rydes_subscription_deliveries_total{topic=\"m-topic\","
                                           "subscription=\"big\",outcome=\"delivered\"}"),
                        2);
    ck_assert_double_eq(series_value(text, "rydes_subscription_deliveries_total{topic=\"m-topic\","
                                           "subscription=\"big\",outcome=\"filtered_out\"}"),
                        1);
    ck_assert_double_eq(
        series_value(text, "rydes_queue_operations_total{queue=\"m-big\",op=\"sent\"}"), 2);
    free(text);
}
END_TEST

/* series_value of a scrape that shows series. */
static double now_value(const char *series)
{
    char *text = scrape_showing(series);
    double v = series_value(text, series);
    free(text);
    return v;
}

#define RIDE_PUBLISHES "rydes_topic_publishes_total{topic=\"ride-completion\"}"
#define HOOK_DELIVERED                                                                       \
    "rydes_subscription_deliveries_total{topic=\"ride-completion\",subscription=\"m-hook\"," \
    "outcome=\"delivered\"}"
#define REFUSED_PUBLISHES "rydes_topic_publishes_total{topic=\"m-refusing\"}"
#define REFUSED_SENT      "rydes_queue_operations_total{queue=\"m-refused\",op=\"sent\"}"

/* A publish is counted once, when it is stored: a ride to a topology that is not lean (a URL
 * subscription) once, not once planned and once published; a publish the database refuses not
 * at all. */
START_TEST(a_publish_is_counted_once_when_it_is_stored)
{
    struct response r;
    harness_admin(&srv, "PUT", "/topics/ride-completion/subscriptions/m-hook",
                  "{\"url\": \"http://127.0.0.1:9/hook\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    double rides0 = now_value(RIDE_PUBLISHES), hook0 = now_value(HOOK_DELIVERED);
    harness_admin(&srv, "POST", "/rides",
                  "{\"from\":\"A\",\"to\":\"B\",\"customer\":\"m-count\",\"duration\":60,"
                  "\"distance\":2,\"fare\":7}",
                  &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    ck_assert_double_eq(now_value(RIDE_PUBLISHES) - rides0, 1);
    ck_assert_double_eq(now_value(HOOK_DELIVERED) - hook0, 1);
    harness_admin(&srv, "DELETE", "/topics/ride-completion/subscriptions/m-hook", NULL, &r);
    response_cleanup(&r);

    harness_put_queue(&srv, "m-refused", NULL, 201);
    harness_admin(&srv, "PUT", "/topics/m-refusing", NULL, &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/topics/m-refusing/subscriptions/all", "{\"queue\": \"m-refused\"}",
                  &r);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(),
                     "CREATE OR REPLACE FUNCTION m_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN IF NEW.body LIKE '%m-refuse-me%' THEN RAISE EXCEPTION "
                     "'refused'; END IF; RETURN NEW; END $$; "
                     "DROP TRIGGER IF EXISTS m_refuse ON messages; "
                     "CREATE TRIGGER m_refuse BEFORE INSERT ON messages "
                     "FOR EACH ROW EXECUTE FUNCTION m_refuse()"));
    harness_admin(&srv, "POST", "/topics/m-refusing/messages", "{\"body\": \"m-refuse-me\"}", &r);
    long refused = r.status;
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/topics/m-refusing/messages", "{\"body\": \"fine\"}", &r);
    long fine = r.status;
    response_cleanup(&r);
    free(harness_sql(harness_db_url(),
                     "DROP TRIGGER m_refuse ON messages; DROP FUNCTION m_refuse()"));
    ck_assert_int_ge(refused, 500);
    ck_assert_int_eq(fine, 201);
    ck_assert_double_eq(now_value(REFUSED_PUBLISHES), 1);
    ck_assert_double_eq(now_value(REFUSED_SENT), 1);
}
END_TEST

START_TEST(wild_rydes_work_is_shown_by_state)
{
    /* a task from the database, read through the gauge cache (refreshed every 5 s) */
    free(harness_sqlf_text("INSERT INTO tasks (id, kind, status, error_title) VALUES "
                           "(gen_random_uuid(), 'prebooking', 'failed', 'metrics test')"));
    double deadline = harness_now_s() + 8, failed = -1;
    while (harness_now_s() < deadline && failed < 1) {
        char *text = scrape();
        failed = series_value(text, "rydes_tasks{status=\"failed\"}");
        ck_assert_double_ge(series_value(text, "rydes_rfqs{outcome=\"running\"}"), 0);
        ck_assert_double_ge(series_value(text, "rydes_fares{status=\"succeeded\"}"), 0);
        free(text);
        if (failed < 1)
            harness_sleep_ms(500);
    }
    ck_assert_double_ge(failed, 1);
}
END_TEST

/* A table whose name holds a double quote, a backslash and a newline (an operator's) shows with
 * its label value escaped: unescaped, the whole scrape was invalid (sql/046). */
START_TEST(table_names_are_escaped_in_labels)
{
    free(harness_sql(harness_db_url(), "CREATE TABLE \"we\"\"ird\\x\ny\" (v int)"));
    const char *series = "rydes_pg_live_rows{table=\"we\\\"ird\\\\x\\ny\"}";
    double deadline = harness_now_s() + 8; /* the gauge cache holds for 5 s */
    free(scrape());                        /* a request for the duration histogram to show */
    char *text = scrape();
    while (series_value(text, series) < 0 && harness_now_s() < deadline) {
        free(text);
        harness_sleep_ms(250);
        text = scrape();
    }
    ck_assert_msg(series_value(text, series) >= 0, "no %s in the scrape", series);
    check_exposition(text);
    free(text);
    free(harness_sql(harness_db_url(), "DROP TABLE \"we\"\"ird\\x\ny\""));
}
END_TEST

/* The Wild Rydes counts in the database's gauges against a count of the tables themselves:
 * how many series differ (0 when they agree; zero counts are left out of both). */
static long long counts_differ(void)
{
    return harness_sqlf(
        "WITH truth AS (SELECT 'rydes_tasks' AS m, status AS l, count(*) AS n FROM tasks "
        "GROUP BY 2 UNION ALL SELECT 'rydes_rfqs', coalesce(completion_reason, 'running'), "
        "count(*) FROM rfqs GROUP BY 2 UNION ALL SELECT 'rydes_fares', status, count(*) "
        "FROM fares GROUP BY 2 UNION ALL SELECT 'rydes_fares_needing_operator', '', count(*) "
        "FROM fares WHERE needs_operator HAVING count(*) > 0 UNION ALL "
        "SELECT 'rydes_saga_steps_compensated', '', count(*) FROM saga_steps "
        "WHERE status = 'compensated' HAVING count(*) > 0), "
        "gauges AS (SELECT metric, CASE WHEN labels = '' THEN '' ELSE split_part(labels, "
        "'\"', 2) END, value::bigint FROM rydes_gauges() WHERE metric IN ('rydes_tasks', "
        "'rydes_rfqs', 'rydes_fares', 'rydes_fares_needing_operator', "
        "'rydes_saga_steps_compensated') AND value <> 0) "
        "SELECT count(*) FROM ((TABLE truth EXCEPT TABLE gauges) UNION ALL "
        "(TABLE gauges EXCEPT TABLE truth)) d");
}

/* The counts follow every insert, change of state and delete, before and after the sweep folds
 * them, and reading them touches none of the counted tables (which another session holds
 * locked). */
START_TEST(work_counts_follow_every_change_without_reading_the_tables)
{
    free(harness_sql(
        harness_db_url(),
        "INSERT INTO fares (id, customer, amount) VALUES ('wc-1', 'c', 5), ('wc-2', 'c', 6), "
        "('wc-3', 'c', 7); "
        "INSERT INTO saga_steps (fare_id, position, name, status) VALUES "
        "('wc-1', 0, 'preauth', 'done'), ('wc-2', 0, 'preauth', 'compensated'); "
        "UPDATE fares SET status = 'running' WHERE id = 'wc-1'; "
        "UPDATE fares SET status = 'succeeded', outcome = 'succeeded' WHERE id = 'wc-1'; "
        "UPDATE fares SET status = 'failed', outcome = 'failed', needs_operator = true "
        "WHERE id = 'wc-2'; "
        "UPDATE saga_steps SET status = 'compensated' WHERE fare_id = 'wc-1'; "
        "DELETE FROM fares WHERE id = 'wc-3'; "
        "INSERT INTO tasks (id, kind) SELECT ('00000000-0000-4000-8000-00000000000' || g)::uuid, "
        "'prebooking' FROM generate_series(1, 3) g; "
        "UPDATE tasks SET status = 'processing' WHERE id = '00000000-0000-4000-8000-000000000001'; "
        "INSERT INTO rfqs (id, from_location, to_location, customer, submitted_at, eta, "
        "expected_responses) SELECT ('00000000-0000-4000-8000-00000000001' || g)::uuid, 'a', "
        "'b', 'c', now(), now(), 1 FROM generate_series(1, 2) g; "
        "UPDATE rfqs SET status = 'done', completed_at = now(), completion_reason = 'timeout' "
        "WHERE id = '00000000-0000-4000-8000-000000000011'"));
    ck_assert_int_eq(counts_differ(), 0);
    free(harness_sql(harness_db_url(), "SELECT rydes_sweep(1000)"));
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM work_count_changes"), 0);
    ck_assert_int_eq(counts_differ(), 0);
    free(harness_sql(harness_db_url(), "DELETE FROM fares WHERE id = 'wc-2'"));
    ck_assert_int_eq(counts_differ(), 0);
    ck_assert_int_eq(harness_sqlf("SELECT value::int FROM rydes_gauges() "
                                  "WHERE metric = 'rydes_fares_needing_operator'"),
                     0);
    /* TRUNCATE bypasses row triggers: a statement trigger takes the table's counts back */
    free(harness_sql(harness_db_url(), "TRUNCATE rfqs CASCADE; TRUNCATE fares CASCADE"));
    ck_assert_int_eq(counts_differ(), 0);

    PGconn *holder = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    PGresult *r = PQexec(holder, "SET idle_in_transaction_session_timeout = '20s'; BEGIN; "
                                 "LOCK TABLE tasks, rfqs, fares, saga_steps");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    char *n = harness_sqlf_text("SET lock_timeout = '2s'; SELECT count(*) FROM rydes_gauges()");
    PQfinish(holder);
    ck_assert_ptr_nonnull(n);
    free(n);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, the_exposition_passes_the_promtool_rules);
    tcase_add_test(tc, queue_operations_are_counted);
    tcase_add_test(tc, only_messages_moved_count_as_dead_lettered);
    tcase_add_test(tc, a_message_deleted_twice_is_counted_once);
    tcase_add_test(tc, publishes_and_filters_are_counted_per_subscription);
    tcase_add_test(tc, a_publish_is_counted_once_when_it_is_stored);
    tcase_add_test(tc, wild_rydes_work_is_shown_by_state);
    tcase_add_test(tc, table_names_are_escaped_in_labels);
    tcase_add_test(tc, work_counts_follow_every_change_without_reading_the_tables);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
