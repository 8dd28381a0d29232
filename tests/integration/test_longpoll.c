/* Integration: many long polls at once. Three hundred receives wait on an empty queue; while
 * they wait, other requests (health, sends and receives on another queue) are answered at once,
 * because a waiting receive holds no thread and no database connection; every waiter is answered
 * at its deadline with an empty list; RYDES_MAX_WAITERS turns the next one away with 503; and
 * shutdown answers waiters immediately, and the receives that keep arriving meanwhile. A server
 * a failed test left running with receives in flight is stopped before the next test starts. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/mq_hub.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAITERS 300
#define STREAMS 4

static struct harness_server srv;

static void limited(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-waiters", "300", &err));
    ck_assert(config_set_flag(cfg, "connection-limit", "2000", &err));
}

/* Room for the streams beside the crowd. */
static void roomy(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-waiters", "400", &err));
    ck_assert(config_set_flag(cfg, "connection-limit", "2000", &err));
}

struct crowd {
    CURLM *multi;
    CURL *easy[WAITERS];
    struct curl_slist *headers;
    struct buf bodies[WAITERS];
    int ok;       /* 200 with an empty list */
    int64_t done; /* monotonic time when the last one finished */
};

static size_t keep(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

static void crowd_start(struct crowd *c, const char *queue, int wait)
{
    char url[256], body[64];
    snprintf(url, sizeof url, "%s/queues/%s/messages:receive", srv.base, queue);
    snprintf(body, sizeof body, "{\"wait_seconds\": %d}", wait);
    c->multi = curl_multi_init();
    c->headers = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    for (int i = 0; i < WAITERS; i++) {
        buf_init(&c->bodies[i]);
        c->easy[i] = curl_easy_init();
        curl_easy_setopt(c->easy[i], CURLOPT_URL, url);
        curl_easy_setopt(c->easy[i], CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(c->easy[i], CURLOPT_COPYPOSTFIELDS, body);
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEFUNCTION, keep);
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEDATA, &c->bodies[i]);
        curl_easy_setopt(c->easy[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(c->multi, c->easy[i]);
    }
}

/* Drives multi until every transfer on it is done; returns the monotonic time then. */
static int64_t multi_drain(CURLM *multi)
{
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    return clock_mono_us();
}

/* Was the receive of e answered 200 with n messages (body: its reply)? */
static bool received(CURL *e, const struct buf *body, size_t n)
{
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    json_t *j = json_loads(buf_str(body), 0, NULL);
    bool ok = status == 200 && json_is_array(json_object_get(j, "messages")) &&
              json_array_size(json_object_get(j, "messages")) == n;
    json_decref(j);
    return ok;
}

static void *crowd_run(void *arg)
{
    struct crowd *c = arg;
    c->done = multi_drain(c->multi);
    for (int i = 0; i < WAITERS; i++)
        c->ok += received(c->easy[i], &c->bodies[i], 0);
    return NULL;
}

static void crowd_free(struct crowd *c)
{
    for (int i = 0; i < WAITERS; i++) {
        curl_multi_remove_handle(c->multi, c->easy[i]);
        curl_easy_cleanup(c->easy[i]);
        buf_cleanup(&c->bodies[i]);
    }
    curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
}

/* Waits until the hub listens: when it connects it wakes every waiter to look again, and a
 * crowd that gathered before would dip below its number meanwhile. */
static void hub_listening(void)
{
    for (int i = 0; i < 250 && !mq_hub_listening(srv.app.hub); i++)
        harness_sleep_ms(20);
    ck_assert(mq_hub_listening(srv.app.hub));
}

/* The hub's waiters once there are n, or after seconds. */
static int waiters_reaching(int n, int seconds)
{
    int64_t deadline = clock_mono_us() + (int64_t)seconds * 1000000;
    int have;
    while ((have = mq_hub_waiters(srv.app.hub)) < n && clock_mono_us() < deadline)
        harness_sleep_ms(20);
    return have;
}

/* A client that sends receives one after another over one kept-alive connection until the
 * server is gone, so some arrive while it stops and after it stopped listening. */
struct stream {
    int answered; /* 200 */
    int other;    /* neither answered nor cut off by the stop: the last one's outcome below */
    CURLcode rc;
    long status;
};

/* Transport errors of a request whose connection the stop closed before it was answered. */
static bool cut_off(CURLcode rc)
{
    return rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR;
}

/* A kept-alive handle receiving from the idle queue, long polls of one second. */
static CURL *stream_handle(struct curl_slist *headers, struct buf *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s/queues/idle/messages:receive", srv.base);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "{\"wait_seconds\": 1}");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    return e;
}

static void *stream_run(void *arg)
{
    struct stream *st = arg;
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    struct buf body;
    buf_init(&body);
    CURL *e = stream_handle(h, &body);
    int64_t give_up = clock_mono_us() + 60000000;
    for (;;) {
        buf_reset(&body);
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_COULDNT_CONNECT || clock_mono_us() > give_up)
            break; /* the server is gone */
        if (rc == CURLE_OK && status == 200) {
            st->answered++;
        } else if (!cut_off(rc) &&
                   !(rc == CURLE_OK && status == 503 && strstr(buf_str(&body), "shutting down"))) {
            /* a receive that arrives once the server has stopped taking work is refused with
             * 503 "shutting down" before it claims anything: an answer, not a failure (any
             * other 503, a busy pool say, still is) */
            st->other++;
            st->rc = rc;
            st->status = status;
        }
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    buf_cleanup(&body);
    return NULL;
}

START_TEST(waiters_do_not_starve_other_requests)
{
    harness_start(&srv, limited);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/quiet", NULL, &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/busy", NULL, &r);
    response_cleanup(&r);
    hub_listening();
    static struct crowd c;
    memset(&c, 0, sizeof c);
    int64_t t0 = clock_mono_us();
    /* long enough to outlast what follows on a loaded machine: 300 connections took more than
     * 4 s to reach the hub under the sanitizers with three other suites running */
    crowd_start(&c, "quiet", 12);
    pthread_t t;
    pthread_create(&t, NULL, crowd_run, &c);
    ck_assert_int_eq(waiters_reaching(WAITERS, 8), WAITERS);
    /* all 300 wait; everything else is still served, and one more waiter is refused */
    for (int i = 0; i < 20; i++) {
        harness_admin(&srv, "POST", "/queues/busy/messages", "{\"body\":\"b\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
        harness_admin(&srv, "POST", "/queues/busy/messages:receive", "{}", &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
        response_cleanup(&r);
    }
    harness_admin(&srv, "POST", "/queues/busy/messages:receive", "{\"wait_seconds\": 2}", &r);
    assert_problem(&r, 503);
    response_cleanup(&r);
    ck_assert_int_lt(clock_mono_us() - t0, 11500000); /* all of it happened while they waited */
    pthread_join(t, NULL);
    ck_assert_int_eq(c.ok, WAITERS);
    ck_assert_int_ge(c.done - t0, 11900000); /* nobody was answered before the deadline */
    crowd_free(&c);
    harness_stop(&srv);
}
END_TEST

/* Starts a roomy server, creates queue and sets crowd c long-polling it (20 s) on thread t. */
static void roomy_server_with_crowd(const char *queue, struct crowd *c, pthread_t *t)
{
    harness_start(&srv, roomy);
    char path[96];
    snprintf(path, sizeof path, "/queues/%s", queue);
    struct response r;
    harness_admin(&srv, "PUT", path, NULL, &r);
    response_cleanup(&r);
    hub_listening();
    memset(c, 0, sizeof *c);
    crowd_start(c, queue, 20);
    pthread_create(t, NULL, crowd_run, c);
}

START_TEST(shutdown_answers_waiters_at_once)
{
    static struct crowd c;
    pthread_t t;
    roomy_server_with_crowd("idle", &c, &t);
    ck_assert_int_eq(waiters_reaching(WAITERS, 10), WAITERS);
    static struct stream st[STREAMS];
    memset(st, 0, sizeof st);
    pthread_t ts[STREAMS];
    for (int i = 0; i < STREAMS; i++)
        pthread_create(&ts[i], NULL, stream_run, &st[i]);
    harness_sleep_ms(300); /* the streams are going */
    int64_t t0 = clock_mono_us();
    harness_stop(&srv);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.ok, WAITERS);
    ck_assert_int_lt(c.done - t0, 5000000); /* well before the 20 s deadline */
    for (int i = 0; i < STREAMS; i++) {
        pthread_join(ts[i], NULL);
        /* each receive was answered, refused as the server stopped, or cut off by the stop */
        ck_assert_msg(st[i].other == 0, "%d receive(s), the last: curl %d, status %ld", st[i].other,
                      (int)st[i].rc, st[i].status);
        ck_assert_int_gt(st[i].answered, 0);
    }
    crowd_free(&c);
}
END_TEST

/* A failed check leaves its test at once (the runner does not fork), past the test's
 * harness_stop, with the server still running. The next test's harness_start on the same server
 * stops that one first: it used to reinitialise the app under the old server's threads, and a
 * receive in flight found the pool NULL (seen under UBSan when the first test's wait for its
 * waiters had failed). */
START_TEST(restart_stops_a_server_left_running)
{
    static struct crowd c;
    pthread_t t;
    roomy_server_with_crowd("left", &c, &t);
    ck_assert_int_ge(waiters_reaching(10, 10), 10); /* receives are arriving and running */
    int64_t t0 = clock_mono_us();
    harness_start(&srv, roomy); /* what the next test does when this one fails here */
    pthread_join(t, NULL);
    ck_assert_int_lt(c.done - t0, 5000000); /* the old server answered or closed every one */
    struct response r;
    harness_admin(&srv, "GET", "/queues/left", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    crowd_free(&c);
    harness_stop(&srv);
}
END_TEST

#define SLOW_QUEUES 5

static struct mq_waiter slow[SLOW_QUEUES]; /* static: the hub may hold them after a failed check */
static _Atomic int64_t slow_woken[SLOW_QUEUES]; /* when each was woken (monotonic µs), or 0 */

static void note_wake(struct mq_waiter *w, enum mq_wake why)
{
    (void)why;
    atomic_store((_Atomic int64_t *)w->ctx, clock_mono_us());
}

/* Registers the waiters of the slow queues until deadline_us. */
static void slow_register(int64_t deadline_us)
{
    for (int i = 0; i < SLOW_QUEUES; i++) {
        atomic_store(&slow_woken[i], 0);
        slow[i].deadline_us = deadline_us;
        ck_assert_int_eq(
            mq_hub_wait(srv.app.hub, &slow[i], mq_hub_seq(srv.app.hub, slow[i].queue_id)),
            MQ_WAIT_OK);
    }
}

/* Waits (up to 15 s after t0) until the slow waiters are all woken; returns how long after t0
 * the last one was. */
static int64_t slow_last_woken(int64_t t0)
{
    int64_t last = 0;
    for (int i = 0; i < SLOW_QUEUES; i++) {
        while (!atomic_load(&slow_woken[i]) && clock_mono_us() - t0 < 15000000)
            harness_sleep_ms(10);
        if (atomic_load(&slow_woken[i]) - t0 > last)
            last = atomic_load(&slow_woken[i]) - t0;
    }
    return last;
}

/* Registers the waiters of the slow queues until deadline_us, then waits (up to 15 s) until
 * they are all woken. Returns how long after t0 the last one was. */
static int64_t slow_waits(int64_t t0, int64_t deadline_us)
{
    slow_register(deadline_us);
    return slow_last_woken(t0);
}

/* The database stalls the hub's visibility check (another session holds messages locked, so
 * each queue's query runs into the hub's 2 s statement timeout): waiters whose deadline passes
 * meanwhile are answered between the queries, within about one statement of their deadline,
 * not after the whole check (here five queries, ~10 s). */
/* Queues prefix-0.. for the slow waiters. */
static void slow_queues(const char *prefix)
{
    for (int i = 0; i < SLOW_QUEUES; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s-%d", prefix, i);
        harness_put_queue(&srv, name, NULL, 201);
        slow[i] = (struct mq_waiter){
            .queue_id = (int)harness_sqlf("SELECT id FROM queues WHERE name = '%s'", name),
            .wake = note_wake,
            .ctx = &slow_woken[i]};
    }
}

/* A session holding table locked (ACCESS EXCLUSIVE) until it commits; PQfinish it. */
static PGconn *lock_table(const char *table)
{
    PGconn *holder = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    char sql[160];
    snprintf(sql, sizeof sql,
             "SET idle_in_transaction_session_timeout = '30s'; BEGIN; "
             "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE",
             table);
    PGresult *r = PQexec(holder, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    return holder;
}

/* Waiters (1 s) on the slow queues while another session holds table locked: how long after
 * they began the last one was answered. */
static int64_t waits_behind_a_lock(const char *table)
{
    PGconn *holder = lock_table(table);
    int64_t t0 = clock_mono_us();
    int64_t last = slow_waits(t0, t0 + 1000000);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    for (int i = 0; i < SLOW_QUEUES; i++)
        ck_assert(atomic_load(&slow_woken[i]) > 0);
    return last;
}

START_TEST(a_stalled_check_does_not_hold_waiters_past_their_deadline)
{
    harness_start(&srv, roomy);
    hub_listening();
    slow_queues("stalled");
    /* a first wait announces the queues, which wakes their waiters to look once */
    int64_t t0 = clock_mono_us();
    ck_assert_int_lt(slow_waits(t0, t0 + 1000000), 5000000);
    int64_t last = waits_behind_a_lock("messages");
    ck_assert_msg(last < 4000000, "the last waiter was answered after %.1f s", last / 1e6);
    harness_stop(&srv);
}
END_TEST

/* The same while the announcements of new queues stall (queue_listeners locked: each upsert
 * runs into the hub's statement timeout). */
START_TEST(a_stalled_announcement_does_not_hold_waiters_past_their_deadline)
{
    harness_start(&srv, roomy);
    hub_listening();
    slow_queues("unannounced");
    int64_t last = waits_behind_a_lock("queue_listeners");
    ck_assert_msg(last < 4000000, "the last waiter was answered after %.1f s", last / 1e6);
    harness_stop(&srv);
}
END_TEST

static size_t keep_nothing(char *p, size_t size, size_t n, void *userdata)
{
    (void)p;
    (void)userdata;
    return size * n;
}

static void *stop_server(void *arg)
{
    (void)arg;
    harness_stop(&srv);
    return NULL;
}

/* Shutdown answers the waiters before it waits for the hub's thread, which may be stuck in a
 * statement: here announcing the waiters' queues while queue_listeners is locked (each upsert
 * runs into the hub's 2 s statement timeout, then its last delete does). */
START_TEST(shutdown_answers_waiters_while_the_hub_is_stalled)
{
    harness_start(&srv, roomy);
    hub_listening();
    slow_queues("stopping");
    PGconn *holder = lock_table("queue_listeners");
    slow_register(clock_mono_us() + 20000000);
    harness_sleep_ms(300); /* the hub is announcing the queues, behind the lock */
    int64_t t0 = clock_mono_us();
    pthread_t stopper;
    pthread_create(&stopper, NULL, stop_server, NULL);
    int64_t last = slow_last_woken(t0);
    /* nor does the server accept connections while the hub's thread is stuck */
    harness_sleep_ms(200);
    CURL *probe = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", srv.base);
    curl_easy_setopt(probe, CURLOPT_URL, url);
    curl_easy_setopt(probe, CURLOPT_WRITEFUNCTION, keep_nothing);
    curl_easy_setopt(probe, CURLOPT_TIMEOUT, 5L);
    CURLcode accepted = curl_easy_perform(probe);
    curl_easy_cleanup(probe);
    int64_t probed = clock_mono_us() - t0;
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    pthread_join(stopper, NULL);
    for (int i = 0; i < SLOW_QUEUES; i++)
        ck_assert(atomic_load(&slow_woken[i]) > 0);
    ck_assert_msg(last < 1500000, "the last waiter was answered %.1f s into the stop", last / 1e6);
    ck_assert_msg(accepted == CURLE_COULDNT_CONNECT && probed < 2000000,
                  "a connection %.1f s into the stop: %s", probed / 1e6,
                  curl_easy_strerror(accepted));
}
END_TEST

/* A listening socket on 127.0.0.1 that never accepts: the kernel completes the handshake and
 * a client then waits for the server's first word for ever. Its port goes to *port. */
static int silent_server(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    ck_assert(listen(fd, 8) == 0);
    socklen_t len = sizeof a;
    ck_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* While the hub's connection attempt hangs (a server that never answers, a 10 s connect
 * timeout), a waiter is still answered at its deadline and a stop does not wait for the
 * attempt. The hub used to connect with a blocking call: both waited the 10 s. */
START_TEST(a_hanging_connect_does_not_hold_waiters_or_the_stop)
{
    int port, fd = silent_server(&port);
    char conninfo[96];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=rydes user=rydes", port);
    struct mq_hub *hub = mq_hub_start(conninfo, 10, 8, NULL, NULL);
    harness_sleep_ms(200); /* the attempt is under way */
    static _Atomic int64_t woken;
    struct mq_waiter w = {.queue_id = 1, .wake = note_wake, .ctx = &woken};
    int64_t t0 = clock_mono_us();
    w.deadline_us = t0 + 300000;
    ck_assert_int_eq(mq_hub_wait(hub, &w, mq_hub_seq(hub, 1)), MQ_WAIT_OK);
    while (!atomic_load(&woken) && clock_mono_us() - t0 < 15000000)
        harness_sleep_ms(10);
    int64_t after = atomic_load(&woken) - t0;
    ck_assert_msg(after > 0 && after < 1500000, "the waiter was answered after %.1f s",
                  after / 1e6);
    ck_assert(!mq_hub_listening(hub));
    t0 = clock_mono_us();
    mq_hub_free(hub);
    int64_t stop = clock_mono_us() - t0;
    ck_assert_msg(stop < 1500000, "the stop took %.1f s", stop / 1e6);
    close(fd);
}
END_TEST

#define QUIET_QUEUES  520 /* more than the 512 the hub once told apart */
#define ACTIVE_QUEUES 80

/* Room for them all. */
static void many(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-waiters", "1000", &err));
    ck_assert(config_set_flag(cfg, "connection-limit", "2000", &err));
    /* 520 first receives arrive at once: none turned away for a busy thread or pool */
    ck_assert(config_set_flag(cfg, "thread-queue-limit", "2000", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "20000", &err));
}

/* One long poll of 20 s on each of n queues PREFIX-1..n, driven on a thread of its own. */
struct spread {
    int n;
    CURLM *multi;
    CURL *easy[QUIET_QUEUES];
    struct curl_slist *headers;
    struct buf bodies[QUIET_QUEUES];
    int got; /* answered 200 with one message */
    int64_t done;
    pthread_t thread;
};

static void *spread_run(void *arg)
{
    struct spread *c = arg;
    c->done = multi_drain(c->multi);
    for (int i = 0; i < c->n; i++) {
        c->got += received(c->easy[i], &c->bodies[i], 1);
        curl_multi_remove_handle(c->multi, c->easy[i]);
        curl_easy_cleanup(c->easy[i]);
        buf_cleanup(&c->bodies[i]);
    }
    curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    return NULL;
}

static void spread_start(struct spread *c, const char *prefix, int n)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    free(harness_sqlf_text("INSERT INTO queues (name) SELECT '%s-' || i "
                           "FROM generate_series(1, %d) i",
                           prefix, n));
    c->multi = curl_multi_init();
    c->headers = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    for (int i = 0; i < n; i++) {
        char url[256];
        snprintf(url, sizeof url, "%s/queues/%s-%d/messages:receive", srv.base, prefix, i + 1);
        buf_init(&c->bodies[i]);
        c->easy[i] = curl_easy_init();
        curl_easy_setopt(c->easy[i], CURLOPT_URL, url);
        curl_easy_setopt(c->easy[i], CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(c->easy[i], CURLOPT_POSTFIELDS, "{\"wait_seconds\": 20}");
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEFUNCTION, keep);
        curl_easy_setopt(c->easy[i], CURLOPT_WRITEDATA, &c->bodies[i]);
        curl_easy_setopt(c->easy[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(c->multi, c->easy[i]);
    }
    pthread_create(&c->thread, NULL, spread_run, c);
}

/* Long polls on more queues than the hub once told apart: while 520 queues have waiters that
 * came first, the waiters of 80 more are announced and checked too, and each is answered as
 * soon as its message is sent. The hub used to take the first 512 queues of its list, so the
 * later ones were neither announced (their sends notified nobody) nor checked, until enough
 * of the earlier waiters left: here at their deadline, 20 s on. */
START_TEST(long_polls_on_many_queues_are_each_woken_by_their_message)
{
    harness_start(&srv, many);
    hub_listening();
    static struct spread quiet, active;
    spread_start(&quiet, "quiet", QUIET_QUEUES);
    ck_assert_int_eq(waiters_reaching(QUIET_QUEUES, 20), QUIET_QUEUES);
    harness_sleep_ms(2500); /* all announced: the hub's check has settled */
    ck_assert_int_eq(waiters_reaching(QUIET_QUEUES, 20), QUIET_QUEUES);
    spread_start(&active, "active", ACTIVE_QUEUES);
    ck_assert_int_eq(waiters_reaching(QUIET_QUEUES + ACTIVE_QUEUES, 20),
                     QUIET_QUEUES + ACTIVE_QUEUES);
    int64_t t0 = clock_mono_us();
    for (int i = 0; i < ACTIVE_QUEUES; i++) {
        char path[96];
        snprintf(path, sizeof path, "/queues/active-%d/messages", i + 1);
        struct response r;
        harness_admin(&srv, "POST", path, "{\"body\":\"m\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    pthread_join(active.thread, NULL);
    ck_assert_int_eq(active.got, ACTIVE_QUEUES);
    /* answered while the quiet ones still wait, whatever the machine's load */
    ck_assert_int_eq(mq_hub_waiters(srv.app.hub), QUIET_QUEUES);
    ck_assert_int_lt(active.done - t0, 15000000);
    harness_stop(&srv); /* answers the quiet ones */
    pthread_join(quiet.thread, NULL);
    ck_assert_int_eq(quiet.got, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("longpoll");
    TCase *tc = tcase_create("longpoll");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, waiters_do_not_starve_other_requests);
    tcase_add_test(tc, long_polls_on_many_queues_are_each_woken_by_their_message);
    tcase_add_test(tc, shutdown_answers_waiters_at_once);
    tcase_add_test(tc, shutdown_answers_waiters_while_the_hub_is_stalled);
    tcase_add_test(tc, restart_stops_a_server_left_running);
    tcase_add_test(tc, a_stalled_check_does_not_hold_waiters_past_their_deadline);
    tcase_add_test(tc, a_stalled_announcement_does_not_hold_waiters_past_their_deadline);
    tcase_add_test(tc, a_hanging_connect_does_not_hold_waiters_or_the_stop);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
