/* Chaos: PostgreSQL goes away under the real binary, run as separate processes (`rydes serve`
 * and `rydes worker` with the four ride services).
 *
 * outage_under_load_recovers: the cluster is stopped for 10 s while two clients send, receive
 * and read without pause. Every request is answered within a bounded time, either as usual or
 * with 503 problem+json and Retry-After (never another status, never a hang); /readyz is 503
 * and /healthz 200 meanwhile; both processes stay alive and their logs do not flood (the
 * workers back off); once the cluster is back, /readyz turns 200 by itself, sends and receives
 * work, a ride submitted after the outage is notified, credited and ingested by the worker
 * process, and the messages sent before the outage are all still there.
 *
 * long_polls_survive_a_restart: the cluster restarts while long polls wait; every waiter is
 * answered (an empty list at its deadline, or a 503 problem) and none hangs; afterwards a sent
 * message wakes a new long poll promptly (the hub's LISTEN connection came back).
 *
 * Runs alone (it stops the shared test cluster) and is skipped without cluster control. */
#include "harness.h"
#include "proc.h"

#include "rydes/ids.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define OUTAGE_S      10
#define ANSWER_MAX_S  6.0 /* acquire (2 s) + connect (3 s) timeouts, and some slack */
#define LOG_LINES_MAX 100 /* lines a process may log during the outage (a flood is thousands) */
#define KEPT          20  /* messages sent before the outage */
#define WAITERS       8

static const char *const ride_services[] = {"customer-notification", "customer-loyalty",
                                            "datalake-ingestion", "extraordinary-rides", NULL};

static struct proc serve, worker;

/* ---- a client that never asserts (it runs on threads) ---------------------------------------- */

static size_t keep(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

/* One request as admin on a fresh connection; fills out (release with response_cleanup) and
 * returns curl's result. */
static CURLcode try_request(const char *base, const char *method, const char *path,
                            const char *body, long timeout_s, struct response *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->body);
    buf_init(&out->headers);
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct curl_slist *hs = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    if (out->body.len)
        out->json = json_loadb(out->body.data, out->body.len, 0, NULL);
    return rc;
}

/* Is r a 503 problem+json with Retry-After? */
static bool is_unavailable(const struct response *r)
{
    char ct[128], retry[16];
    return r->status == 503 && response_header(r, "Content-Type", ct, sizeof ct) &&
           strcmp(ct, "application/problem+json") == 0 &&
           response_header(r, "Retry-After", retry, sizeof retry) && atoi(retry) > 0 &&
           json_integer_value(json_object_get(r->json, "status")) == 503;
}

/* ---- processes, logs and the cluster -------------------------------------------------------- */

/* Is the process still running? (Reaps it when it is not.) */
static bool alive(struct proc *p)
{
    int status;
    if (!p->pid)
        return false;
    if (waitpid(p->pid, &status, WNOHANG) != p->pid)
        return true;
    p->pid = 0;
    return false;
}

static void assert_alive(struct proc *p, const char *what)
{
    if (!alive(p))
        proc_dump_log(p);
    ck_assert_msg(p->pid != 0, "%s exited", what);
}

/* The size of the process's log in bytes. */
static long log_size(const struct proc *p)
{
    FILE *f = fopen(p->log, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Lines of the log between byte offsets from and to, leaving out those containing skip (NULL:
 * none). */
static int log_lines(const struct proc *p, long from, long to, const char *skip)
{
    FILE *f = fopen(p->log, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, from, SEEK_SET);
    char line[4096];
    int n = 0;
    while (ftell(f) < to && fgets(line, sizeof line, f))
        n += !skip || !strstr(line, skip);
    fclose(f);
    return n;
}

/* Starts the cluster unless it runs (teardown: a failed test must not leave it stopped). */
static void cluster_running(void)
{
    const char *script = getenv("RYDES_TEST_PGCTL");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' status >/dev/null 2>&1 || '%s' start >/dev/null", script,
             script);
    if (system(cmd) != 0)
        fprintf(stderr, "could not start the cluster again\n");
}

/* ---- requests of the main thread ------------------------------------------------------------ */

static long get_status(const char *path)
{
    struct response r;
    CURLcode rc = try_request(serve.http.base, "GET", path, NULL, 15, &r);
    ck_assert_msg(rc == CURLE_OK, "GET %s: %s", path, curl_easy_strerror(rc));
    long st = r.status;
    if (st == 503)
        ck_assert_msg(is_unavailable(&r), "GET %s: a 503 without its problem: %s", path,
                      buf_str(&r.body));
    response_cleanup(&r);
    return st;
}

static bool wait_status(const char *path, long want, double timeout_s)
{
    double until = harness_now_s() + timeout_s;
    while (get_status(path) != want)
        if (harness_now_s() > until)
            return false;
        else
            harness_sleep_ms(200);
    return true;
}

/* Sends body to queue; asserts 201 and copies the message id (IDS_UUID_LEN) to id. */
static void send_message(const char *queue, const char *body, char *id)
{
    char path[128], json[128];
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    snprintf(json, sizeof json, "{\"body\":\"%s\"}", body);
    struct response r;
    harness_admin(&serve.http, "POST", path, json, &r);
    ck_assert_msg(r.status == 201, "POST %s: %ld %s", path, r.status, buf_str(&r.body));
    if (id)
        snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "message_id"));
    response_cleanup(&r);
}

/* Submits a ride of customer; returns its id in id (IDS_UUID_LEN). */
static void submit_ride(const char *customer, char *id)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s\", "
             "\"duration\": 600, \"distance\": 25, \"fare\": 60}",
             customer);
    struct response r;
    harness_admin(&serve.http, "POST", "/rides", body, &r);
    ck_assert_msg(r.status == 201, "POST /rides: %ld %s", r.status, buf_str(&r.body));
    snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "id"));
    response_cleanup(&r);
}

/* Waits until the worker process notified, credited, ingested and flagged ride id. */
static void assert_ride_processed(const char *id, double timeout_s)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ride_journeys WHERE id = '%s' AND notified_at IS NOT NULL "
             "AND loyalty_points IS NOT NULL AND ingested_at IS NOT NULL AND extraordinary_at IS "
             "NOT NULL",
             id);
    if (harness_wait_sql(sql, 1, timeout_s) != 1)
        proc_dump_log(&worker);
    ck_assert_msg(harness_sqlf("%s", sql) == 1, "ride %s not processed within %.0f s", id,
                  timeout_s);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM loyalty_credits WHERE ride_id = '%s'", id),
                     1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM datalake_rides WHERE ride_id = '%s'", id),
                     1);
}

/* ---- the load ------------------------------------------------------------------------------- */

struct load {
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool outage; /* set while the cluster is stopped */
    int ok, unavailable, outage_unavailable, bad, errors;
    double max_secs;
    char first_bad[300];
};

static struct load loads[2];

/* Files one answer of the load. */
static void load_record(struct load *l, CURLcode rc, const struct response *r, double secs,
                        const char *what)
{
    if (secs > l->max_secs)
        l->max_secs = secs;
    bool ok = rc == CURLE_OK && r->status >= 200 && r->status < 300;
    bool unavailable = rc == CURLE_OK && is_unavailable(r);
    l->ok += ok;
    l->unavailable += unavailable;
    l->outage_unavailable += unavailable && atomic_load(&l->outage);
    l->errors += rc != CURLE_OK;
    l->bad += rc == CURLE_OK && !ok && !unavailable;
    if (!ok && !unavailable && !l->first_bad[0])
        snprintf(l->first_bad, sizeof l->first_bad, "%s: %s %ld %.150s", what,
                 rc == CURLE_OK ? "status" : curl_easy_strerror(rc), r->status, buf_str(&r->body));
}

static void *load_run(void *arg)
{
    struct load *l = arg;
    static const struct {
        const char *method, *path, *body;
    } ops[] = {
        {"POST", "/queues/load/messages", "{\"body\":\"x\"}"},
        {"POST", "/queues/load/messages:receive", "{\"delete\":true}"},
        {"GET", "/queues/load", NULL},
    };
    for (int i = 0; !atomic_load(&l->stop); i = (i + 1) % 3) {
        struct response r;
        double t0 = harness_now_s();
        CURLcode rc = try_request(serve.http.base, ops[i].method, ops[i].path, ops[i].body, 30, &r);
        load_record(l, rc, &r, harness_now_s() - t0, ops[i].path);
        response_cleanup(&r);
        harness_sleep_ms(rc == CURLE_OK ? 2 : 100); /* load, not a spin on two shared cores */
    }
    return NULL;
}

static void load_start(void)
{
    for (int i = 0; i < 2; i++) {
        memset(&loads[i], 0, sizeof loads[i]);
        ck_assert_int_eq(pthread_create(&loads[i].thread, NULL, load_run, &loads[i]), 0);
        loads[i].started = true;
    }
}

static void load_stop(void)
{
    for (int i = 0; i < 2; i++)
        atomic_store(&loads[i].stop, true);
    for (int i = 0; i < 2; i++)
        if (loads[i].started)
            pthread_join(loads[i].thread, NULL);
    for (int i = 0; i < 2; i++)
        loads[i].started = false;
}

static void load_outage(bool on)
{
    for (int i = 0; i < 2; i++)
        atomic_store(&loads[i].outage, on);
}

/* Every answer was a success or a proper 503, in bounded time, and the outage produced 503s. */
static void assert_load(void)
{
    for (int i = 0; i < 2; i++) {
        struct load *l = &loads[i];
        fprintf(stderr, "load %d: %d ok, %d unavailable (%d during the outage), slowest %.2f s\n",
                i, l->ok, l->unavailable, l->outage_unavailable, l->max_secs);
        ck_assert_msg(l->bad == 0 && l->errors == 0, "%d bad answers, %d errors; first: %s", l->bad,
                      l->errors, l->first_bad);
        ck_assert_int_gt(l->ok, 10);
        ck_assert_int_gt(l->outage_unavailable, 0);
        ck_assert_msg(l->max_secs < ANSWER_MAX_S, "an answer took %.2f s", l->max_secs);
    }
}

/* ---- the crowd of long polls ---------------------------------------------------------------- */

struct crowd {
    pthread_t thread;
    bool started;
    int n;
    const char *queue;
    int wait_seconds;
    CURLcode rc[WAITERS];
    struct response r[WAITERS];
    double done_s[WAITERS]; /* monotonic time of each answer */
};

static struct crowd crowd;

/* One long poll per thread keeps the code short; WAITERS is small. */
struct poller {
    struct crowd *c;
    int i;
};

static void *poll_one(void *arg)
{
    struct poller *p = arg;
    struct crowd *c = p->c;
    char path[128], body[64];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", c->queue);
    snprintf(body, sizeof body, "{\"wait_seconds\": %d}", c->wait_seconds);
    c->rc[p->i] = try_request(serve.http.base, "POST", path, body, 40, &c->r[p->i]);
    c->done_s[p->i] = harness_now_s();
    return NULL;
}

static void *crowd_run(void *arg)
{
    struct crowd *c = arg;
    pthread_t t[WAITERS];
    struct poller p[WAITERS];
    for (int i = 0; i < c->n; i++) {
        p[i] = (struct poller){c, i};
        pthread_create(&t[i], NULL, poll_one, &p[i]);
    }
    for (int i = 0; i < c->n; i++)
        pthread_join(t[i], NULL);
    return NULL;
}

static void crowd_start(int n, const char *queue, int wait_seconds)
{
    memset(&crowd, 0, sizeof crowd);
    crowd.n = n;
    crowd.queue = queue;
    crowd.wait_seconds = wait_seconds;
    ck_assert_int_eq(pthread_create(&crowd.thread, NULL, crowd_run, &crowd), 0);
    crowd.started = true;
}

static void crowd_join(void)
{
    if (!crowd.started)
        return;
    pthread_join(crowd.thread, NULL);
    crowd.started = false;
}

static void crowd_free(void)
{
    for (int i = 0; i < crowd.n; i++)
        response_cleanup(&crowd.r[i]);
    crowd.n = 0;
}

/* The rydes_long_poll_waiters gauge of /metrics, or -1. */
static int waiters_now(void)
{
    struct response r;
    if (try_request(serve.http.base, "GET", "/metrics", NULL, 10, &r) != CURLE_OK) {
        response_cleanup(&r);
        return -1;
    }
    const char *at = strstr(buf_str(&r.body), "\nrydes_long_poll_waiters ");
    int n = at ? atoi(at + strlen("\nrydes_long_poll_waiters ")) : -1;
    response_cleanup(&r);
    return n;
}

/* Waits until n long polls of the crowd wait in the server; fails early, with its answer, when
 * one of them was answered instead. Judged by the scrape that saw them: a later one can find
 * them between two waits (the hub wakes every waiter to look again when its LISTEN connection
 * comes up, and each suspends anew after an empty receive). */
static void wait_waiters(int n)
{
    double until = harness_now_s() + 15;
    int seen = waiters_now();
    while (seen < n && harness_now_s() < until) {
        for (int i = 0; i < crowd.n; i++)
            ck_assert_msg(crowd.done_s[i] == 0, "long poll %d answered at once: %s %ld %s", i,
                          curl_easy_strerror(crowd.rc[i]), crowd.r[i].status,
                          buf_str(&crowd.r[i].body));
        harness_sleep_ms(50);
        seen = waiters_now();
    }
    ck_assert_int_ge(seen, n);
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static void setup(void)
{
    memset(&serve, 0, sizeof serve);
    memset(&worker, 0, sizeof worker);
}

/* Runs after every test, failed or not: children killed, threads joined, the cluster up. */
static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        atomic_store(&loads[i].stop, true);
    proc_cleanup(&serve);
    proc_cleanup(&worker);
    load_stop();
    crowd_join();
    crowd_free();
    cluster_running();
}

/* ---- the tests ------------------------------------------------------------------------------ */

/* The outage itself: 503s and quiet logs; returns after starting the cluster again. */
static void outage(void)
{
    long worker_from = log_size(&worker), serve_from = log_size(&serve);
    ck_assert(harness_pgctl("stop"));
    load_outage(true);
    double until = harness_now_s() + OUTAGE_S;
    while (harness_now_s() < until) {
        ck_assert_int_eq(get_status("/readyz"), 503);
        ck_assert_int_eq(get_status("/healthz"), 200);
        assert_alive(&serve, "rydes serve");
        assert_alive(&worker, "rydes worker");
        harness_sleep_ms(1000);
    }
    load_outage(false);
    int wl = log_lines(&worker, worker_from, log_size(&worker), NULL);
    int sl = log_lines(&serve, serve_from, log_size(&serve), " request method=");
    fprintf(stderr, "during the outage: %d worker log lines, %d serve lines (not requests)\n", wl,
            sl);
    if (wl >= LOG_LINES_MAX || sl >= LOG_LINES_MAX) {
        proc_dump_log(&worker);
        proc_dump_log(&serve);
    }
    ck_assert_int_lt(wl, LOG_LINES_MAX);
    ck_assert_int_lt(sl, LOG_LINES_MAX);
    ck_assert_int_gt(wl, 0); /* the worker noticed: the count above measured something */
    ck_assert(harness_pgctl("start"));
}

/* After the outage: sends and receives work on a fresh queue. */
static void assert_messaging_works(void)
{
    harness_put_queue(&serve.http, "after", NULL, 201);
    send_message("after", "a1", NULL);
    struct response r;
    harness_admin(&serve.http, "POST", "/queues/after/messages:receive", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
}

START_TEST(outage_under_load_recovers)
{
    proc_serve(&serve, "none", NULL);
    proc_worker(&worker, ride_services);
    harness_put_queue(&serve.http, "kept", NULL, 201);
    harness_put_queue(&serve.http, "load", NULL, 201);
    char kept[KEPT][IDS_UUID_LEN], ride[IDS_UUID_LEN];
    for (int i = 0; i < KEPT; i++)
        send_message("kept", "k", kept[i]);
    submit_ride("before-outage", ride);
    assert_ride_processed(ride, 30); /* the worker process works before the outage */
    load_start();
    harness_sleep_ms(1000);
    outage();
    ck_assert_msg(wait_status("/readyz", 200, 30), "readyz did not recover");
    harness_sleep_ms(1000); /* the load sees the recovery too */
    load_stop();
    assert_load();
    assert_alive(&serve, "rydes serve");
    assert_alive(&worker, "rydes worker");
    assert_messaging_works();
    submit_ride("after-outage", ride);
    assert_ride_processed(ride, 30);
    for (int i = 0; i < KEPT; i++)
        ck_assert_int_eq(
            harness_sqlf("SELECT count(*) FROM messages WHERE message_id = '%s'", kept[i]), 1);
    ck_assert_int_eq(harness_stored("kept"), KEPT);
}
END_TEST

/* Every waiter of the crowd was answered: an empty list or a 503 problem, by started + bound. */
static void assert_crowd_answered(double started, double bound_s)
{
    for (int i = 0; i < crowd.n; i++) {
        const struct response *r = &crowd.r[i];
        ck_assert_msg(crowd.rc[i] == CURLE_OK, "waiter %d: %s", i, curl_easy_strerror(crowd.rc[i]));
        bool empty = r->status == 200 && json_is_array(json_object_get(r->json, "messages")) &&
                     json_array_size(json_object_get(r->json, "messages")) == 0;
        ck_assert_msg(empty || is_unavailable(r), "waiter %d: %ld %s", i, r->status,
                      buf_str(&r->body));
        ck_assert_msg(crowd.done_s[i] - started < bound_s, "waiter %d answered after %.1f s", i,
                      crowd.done_s[i] - started);
    }
}

START_TEST(long_polls_survive_a_restart)
{
    proc_serve(&serve, "none", NULL);
    harness_put_queue(&serve.http, "lp", NULL, 201);
    double started = harness_now_s();
    crowd_start(WAITERS, "lp", 6);
    wait_waiters(WAITERS);
    ck_assert(harness_pgctl("stop"));
    harness_sleep_ms(1000);
    ck_assert(harness_pgctl("start"));
    crowd_join();
    assert_crowd_answered(started, 6 + 10);
    crowd_free();
    assert_alive(&serve, "rydes serve");
    ck_assert_msg(wait_status("/readyz", 200, 30), "readyz did not recover");
    /* a new long poll, woken by a new message through the hub's new LISTEN connection */
    crowd_start(1, "lp", 20);
    wait_waiters(1);
    double sent = harness_now_s();
    send_message("lp", "wake", NULL);
    crowd_join();
    ck_assert_int_eq(crowd.rc[0], CURLE_OK);
    ck_assert_int_eq(crowd.r[0].status, 200);
    json_t *msgs = json_object_get(crowd.r[0].json, "messages");
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "wake");
    ck_assert_msg(crowd.done_s[0] - sent < 8, "the waiter was woken after %.1f s",
                  crowd.done_s[0] - sent);
    assert_alive(&serve, "rydes serve");
}
END_TEST

int main(void)
{
    if (!getenv("RYDES_TEST_PGCTL")) {
        fprintf(stderr, "skipped: no cluster control (run through ./dev test)\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("chaos_database");
    TCase *tc = tcase_create("database");
    tcase_set_timeout(tc, 150);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, outage_under_load_recovers);
    tcase_add_test(tc, long_polls_survive_a_restart);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
