/* Chaos: abusive clients against the real binary (`rydes serve` as a separate process).
 *
 * slow_clients_are_cut_off: with --connection-timeout 2, a client that sends its header bytes
 * slower than that, and one that stops in the middle of its body, are disconnected by the
 * server within the timeout (and some slack); the half-sent message is never stored; a normal
 * client is served meanwhile. So is one that trickles bytes (the request deadline).
 *
 * slow_readers_are_cut_off: a client that reads its reply a little at a time is cut off by the
 * reply deadline.
 *
 * idle_flood_is_bounded: with --connection-limit 500 and RLIMIT_NOFILE raised, 1500 or more idle
 * TCP connections are opened. Those past the limit are closed promptly (no client is left
 * hanging in the accept queue); a client that connected before the flood keeps being served
 * on its keep-alive connection; the server stays alive; once the idle connections time out,
 * new clients are served again.
 *
 * waiters_are_bounded: with --max-waiters 20, twenty long polls wait; the next ones get 503
 * problem+json with Retry-After at once; sends, receives and GET /queues are served meanwhile;
 * the twenty are answered at their deadline, after which long polls are accepted again. */
#include "harness.h"
#include "proc.h"

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONN_LIMIT  500
#define FLOOD_MAX   2000
#define IDLE_S      8 /* the flood's --connection-timeout */
#define MAX_WAITERS 20
#define EXTRA_POLLS 5

static struct proc srv;

/* ---- plumbing -------------------------------------------------------------------------------- */

static size_t keep(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

/* Prepares curl handle c for a request as admin (hs: the header list, freed by the caller). */
static struct curl_slist *prepare(CURL *c, const char *method, const char *path, const char *body,
                                  struct response *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->body);
    buf_init(&out->headers);
    char url[256];
    snprintf(url, sizeof url, "%s%s", srv.http.base, path);
    struct curl_slist *hs = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L); /* forget an earlier body of a reused handle */
    if (body)
        curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    return hs;
}

/* One request on handle c (reused connections stay open between calls); never asserts. */
static CURLcode perform(CURL *c, const char *method, const char *path, const char *body,
                        struct response *out)
{
    struct curl_slist *hs = prepare(c, method, path, body, out);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hs);
    if (out->body.len)
        out->json = json_loadb(out->body.data, out->body.len, 0, NULL);
    return rc;
}

/* One request on a fresh connection; never asserts (threads use it). */
static CURLcode try_request(const char *method, const char *path, const char *body,
                            struct response *out)
{
    CURL *c = curl_easy_init();
    CURLcode rc = perform(c, method, path, body, out);
    curl_easy_cleanup(c);
    return rc;
}

/* A request on a fresh connection that must be answered with status within bound_s. */
static void expect_status(const char *method, const char *path, const char *body, long status,
                          double bound_s)
{
    struct response r;
    double t0 = harness_now_s();
    CURLcode rc = try_request(method, path, body, &r);
    double took = harness_now_s() - t0;
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    ck_assert_msg(r.status == status, "%s %s: %ld %s", method, path, r.status, buf_str(&r.body));
    ck_assert_msg(took < bound_s, "%s %s took %.1f s", method, path, took);
    response_cleanup(&r);
}

static bool alive(struct proc *p)
{
    int status;
    if (p->pid && waitpid(p->pid, &status, WNOHANG) == p->pid)
        p->pid = 0;
    return p->pid != 0;
}

static void assert_alive(void)
{
    if (!alive(&srv))
        proc_dump_log(&srv);
    ck_assert_msg(srv.pid != 0, "rydes serve exited");
}

/* A TCP connection to the server; blocking unless nonblock. -1 when socket() fails. */
static int dial(bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS)
        ck_abort_msg("connect: %s", strerror(errno));
    return fd;
}

/* Did the server close fd (EOF or reset)? Reads and drops whatever it sent. */
static bool closed_by_server(int fd, bool *got_bytes)
{
    char b[512];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0) {
            if (got_bytes)
                *got_bytes = true;
            continue;
        }
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* ---- slow clients ------------------------------------------------------------------------ */

/* A client that sends head at once and then tail one byte every gap_ms, until the server
 * closes the connection or max_s passed. */
struct slow {
    const char *head, *tail;
    int gap_ms;
    double max_s;
    pthread_t thread;
    bool started;
    int fd;
    double started_s, last_byte_s, closed_s; /* closed_s 0: never closed */
    bool answered;                           /* the server sent bytes (a response) */
    int sent_tail;
};

/* Waits up to ms for the server to close s->fd; true when it did. */
static bool slow_wait_close(struct slow *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    double until = harness_now_s() + ms / 1000.0;
    while (harness_now_s() < until) {
        int left = (int)((until - harness_now_s()) * 1000) + 1;
        if (poll(&p, 1, left) > 0 && closed_by_server(s->fd, &s->answered)) {
            s->closed_s = harness_now_s();
            return true;
        }
    }
    return false;
}

static void *slow_run(void *arg)
{
    struct slow *s = arg;
    double until = harness_now_s() + s->max_s;
    s->started_s = harness_now_s();
    if (send(s->fd, s->head, strlen(s->head), MSG_NOSIGNAL) < 0)
        return NULL;
    s->last_byte_s = harness_now_s();
    for (const char *p = s->tail; harness_now_s() < until; p += *p ? 1 : 0) {
        if (slow_wait_close(s, s->gap_ms))
            return NULL;
        if (*p && send(s->fd, p, 1, MSG_NOSIGNAL) == 1) {
            s->last_byte_s = harness_now_s();
            s->sent_tail++;
        }
    }
    return NULL;
}

static struct slow slows[4];

static void slow_start(struct slow *s)
{
    s->fd = dial(false);
    ck_assert_int_ge(s->fd, 0);
    ck_assert_int_eq(pthread_create(&s->thread, NULL, slow_run, s), 0);
    s->started = true;
}

static void slow_join(struct slow *s)
{
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = false;
    if (s->fd > 0)
        close(s->fd);
    s->fd = -1;
}

static void assert_cut_off(const struct slow *s, const char *what)
{
    ck_assert_msg(s->closed_s > 0, "%s: never disconnected (%d slow bytes sent)", what,
                  s->sent_tail);
    ck_assert_msg(s->closed_s - s->last_byte_s < 2 + 5,
                  "%s: disconnected %.1f s after its last byte", what,
                  s->closed_s - s->last_byte_s);
    ck_assert_msg(s->sent_tail < 4, "%s: %d slow bytes were accepted", what, s->sent_tail);
}

/* A client that trickles a byte more often than the idle timeout is cut off by the request
 * deadline (--request-timeout) counted from when it connected. */
static void assert_deadline(const struct slow *s, const char *what)
{
    ck_assert_msg(s->closed_s > 0, "%s: never disconnected (%d slow bytes sent)", what,
                  s->sent_tail);
    ck_assert_msg(s->closed_s - s->started_s < 3 + 2.5, "%s: disconnected after %.1f s", what,
                  s->closed_s - s->started_s);
    ck_assert_msg(!s->answered, "%s: answered", what);
}

/* Reads one response from the blocking fd (up to 5 s) into b; true when it is a 200. */
static bool read_200(int fd, char *b, size_t n)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t len = 0;
    while (len < n - 1 && poll(&p, 1, 5000) > 0) {
        ssize_t got = recv(fd, b + len, n - 1 - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
        b[len] = '\0';
        if (strstr(b, "\r\n\r\n") && strstr(b, "}"))
            break;
    }
    b[len] = '\0';
    return strncmp(b, "HTTP/1.1 200", 12) == 0;
}

/* A keep-alive connection that idles (less than the idle timeout) and then sends its next
 * request at a normal slow pace is served: the request deadline counts from the end of the
 * idle time it was allowed. */
static void keep_alive_after_idle_is_served(void)
{
    int fd = dial(false);
    ck_assert_int_ge(fd, 0);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: rydes\r\n\r\n";
    char b[2048];
    ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    ck_assert_msg(read_200(fd, b, sizeof b), "first request: %s", b);
    harness_sleep_ms(1500);                        /* idle, under the 2 s idle timeout */
    for (size_t i = 0; i < strlen(req); i += 10) { /* 2 s of sending, a piece every 0.5 s */
        size_t n = strlen(req) - i < 10 ? strlen(req) - i : 10;
        ck_assert_int_eq(send(fd, req + i, n, MSG_NOSIGNAL), (ssize_t)n);
        harness_sleep_ms(500);
    }
    ck_assert_msg(read_200(fd, b, sizeof b), "the request after the idle time: %s", b);
    close(fd);
}

/* The value of the unlabelled series name in /metrics (-1 when missing). */
static double metric(const char *name)
{
    struct response r;
    ck_assert_int_eq(try_request("GET", "/metrics", NULL, &r), CURLE_OK);
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = buf_str(&r.body); p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    response_cleanup(&r);
    return v;
}

/* A client that reads its reply slowly, a little at a time and never idle for the idle timeout,
 * is cut off by the reply deadline (the request timeout per started MiB) counted from when the
 * reply was queued: /openapi.json (a few hundred KB) at 16 KB/s would take far longer. The
 * kernel may go on handing the client what the server's socket had buffered, so the server's
 * count of deadline closes tells. */
START_TEST(slow_readers_are_cut_off)
{
    /* an idle timeout longer than the test: only the reply deadline can end the connection */
    const char *const args[] = {"--connection-timeout", "30", "--request-timeout", "2", NULL};
    proc_serve(&srv, "none", args);
    double closes = metric("rydes_http_deadline_closes_total");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    /* a small window and small segments: the server's socket buffer, which Linux sizes from
     * the segment size (64 KB on loopback), cannot take the whole reply at once */
    int small = 4096, mss = 536;
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char req[] = "GET /openapi.json HTTP/1.1\r\nHost: rydes\r\n\r\n";
    ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    double t0 = harness_now_s(), cut = 0;
    size_t got = 0;
    char b[4096];
    for (int tick = 1; !cut && harness_now_s() - t0 < 12; tick++) {
        harness_sleep_ms(250);
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        if (tick % 2 == 0 && metric("rydes_http_deadline_closes_total") > closes)
            cut = harness_now_s();
    }
    close(fd);
    ck_assert_msg(cut > 0, "a slow reader kept its connection for 12 s (%zu bytes read)", got);
    ck_assert_msg(got > 0, "the slow reader got no reply");
    ck_assert_msg(cut - t0 < 2 + 2.5, "the slow reader was cut off after %.1f s", cut - t0);
    expect_status("GET", "/healthz", NULL, 200, 5);
}
END_TEST

START_TEST(slow_clients_are_cut_off)
{
    const char *const args[] = {"--connection-timeout", "2", "--request-timeout", "3", NULL};
    proc_serve(&srv, "none", args);
    harness_put_queue(&srv.http, "slow", NULL, 201);
    slows[0] = (struct slow){.head = "GET /healthz HTTP/1.1\r\nHost: rydes\r\nX-Slow: ",
                             .tail = "abcdefghij\r\n\r\n",
                             .gap_ms = 3000,
                             .max_s = 20};
    slows[1] = (struct slow){.head = "POST /queues/slow/messages HTTP/1.1\r\nHost: rydes\r\n"
                                     "Authorization: Bearer " HARNESS_ADMIN_TOKEN "\r\n"
                                     "Content-Type: application/json\r\nContent-Length: 20\r\n"
                                     "\r\n{\"body\":",
                             .tail = "\"slowloris\"}",
                             .gap_ms = 3000,
                             .max_s = 20};
    /* the same, a byte every 0.7 s: never idle for the 2 s timeout */
    slows[2] = slows[0];
    slows[2].tail = "abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    slows[2].gap_ms = 700;
    slows[3] = slows[1];
    slows[3].head = "POST /queues/slow/messages HTTP/1.1\r\nHost: rydes\r\n"
                    "Authorization: Bearer " HARNESS_ADMIN_TOKEN "\r\n"
                    "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"body\":";
    slows[3].tail = "\"slowloris, trickling along\"}";
    slows[3].gap_ms = 700;
    for (int i = 0; i < 4; i++)
        slow_start(&slows[i]);
    double until = harness_now_s() + 4;
    while (harness_now_s() < until) { /* a normal client is served meanwhile */
        expect_status("GET", "/healthz", NULL, 200, 5);
        expect_status("GET", "/queues", NULL, 200, 5);
        harness_sleep_ms(200);
    }
    for (int i = 0; i < 4; i++)
        slow_join(&slows[i]);
    assert_cut_off(&slows[0], "slow headers");
    assert_cut_off(&slows[1], "slow body");
    assert_deadline(&slows[2], "trickled headers");
    assert_deadline(&slows[3], "trickled body");
    ck_assert_msg(!slows[1].answered, "the half-sent body was answered");
    ck_assert_int_eq(harness_stored("slow"), 0);
    keep_alive_after_idle_is_served();
    assert_alive();
    expect_status("POST", "/queues/slow/messages", "{\"body\":\"fast\"}", 201, 5);
}
END_TEST

/* ---- the idle flood -------------------------------------------------------------------------- */

static int flood[FLOOD_MAX];
static int nflood;

/* Raises RLIMIT_NOFILE to its hard limit; returns how many flood sockets fit under it. */
static int flood_size(void)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    long room = rl.rlim_max == RLIM_INFINITY ? FLOOD_MAX : (long)rl.rlim_max - 200;
    return room > FLOOD_MAX ? FLOOD_MAX : (int)room;
}

/* Opens n idle connections, a hundred at a time. */
static void flood_open(int n)
{
    for (nflood = 0; nflood < n; nflood++) {
        flood[nflood] = dial(true);
        ck_assert_msg(flood[nflood] >= 0, "socket %d: %s", nflood, strerror(errno));
        if (nflood % 100 == 99)
            harness_sleep_ms(20);
    }
}

/* How many flood connections the server has closed (each is checked once it reads so). */
static int flood_closed(void)
{
    static struct pollfd p[FLOOD_MAX];
    for (int i = 0; i < nflood; i++)
        p[i] = (struct pollfd){.fd = flood[i], .events = POLLIN};
    ck_assert_int_ge(poll(p, (nfds_t)nflood, 0), 0);
    int closed = 0;
    for (int i = 0; i < nflood; i++)
        closed += (p[i].revents & (POLLIN | POLLHUP | POLLERR)) && closed_by_server(flood[i], NULL);
    return closed;
}

static void flood_close(void)
{
    for (int i = 0; i < nflood; i++)
        close(flood[i]);
    nflood = 0;
}

/* A request on the keep-alive handle: 200 on the connection it already had. */
static void keepalive_served(CURL *ka)
{
    struct response r;
    CURLcode rc = perform(ka, "GET", "/queues", NULL, &r);
    ck_assert_msg(rc == CURLE_OK, "keep-alive client: %s", curl_easy_strerror(rc));
    ck_assert_int_eq(r.status, 200);
    long connects = -1;
    curl_easy_getinfo(ka, CURLINFO_NUM_CONNECTS, &connects);
    ck_assert_msg(connects == 0, "the keep-alive client had to connect again");
    response_cleanup(&r);
}

/* Waits until at least want flood connections are closed, keeping ka busy; returns the count. */
static int wait_flood_closed(int want, double timeout_s, CURL *ka)
{
    double until = harness_now_s() + timeout_s;
    int closed = flood_closed();
    while (closed < want && harness_now_s() < until) {
        harness_sleep_ms(500);
        keepalive_served(ka);
        closed = flood_closed();
    }
    return closed;
}

START_TEST(idle_flood_is_bounded)
{
    int n = flood_size();
    if (n < CONN_LIMIT * 3) {
        fprintf(stderr, "skipped: RLIMIT_NOFILE allows only %d sockets\n", n);
        return;
    }
    const char *const args[] = {"--connection-limit", "500", "--connection-timeout", "8", NULL};
    proc_serve(&srv, "none", args);
    CURL *ka = curl_easy_init();
    struct response r;
    ck_assert_int_eq(perform(ka, "GET", "/queues", NULL, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    double t0 = harness_now_s();
    flood_open(n);
    keepalive_served(ka);
    /* everything past the limit is closed promptly; the rest stays open, idle */
    int closed = wait_flood_closed(n - CONN_LIMIT, 4, ka);
    fprintf(stderr, "flood of %d: %d closed after %.1f s\n", n, closed, harness_now_s() - t0);
    ck_assert_msg(closed >= n - CONN_LIMIT, "only %d of %d connections past the limit closed",
                  closed, n - CONN_LIMIT);
    ck_assert_msg(harness_now_s() - t0 < IDLE_S - 1, "the check ran into the idle timeout");
    assert_alive();
    /* the idle ones time out; then new clients are served again */
    closed = wait_flood_closed(n, IDLE_S + 15, ka);
    ck_assert_msg(closed == n, "%d of %d idle connections still open", n - closed, n);
    flood_close();
    expect_status("GET", "/healthz", NULL, 200, 5);
    expect_status("GET", "/queues", NULL, 200, 5);
    keepalive_served(ka);
    curl_easy_cleanup(ka);
    assert_alive();
}
END_TEST

/* ---- bounded long-poll waiters ----------------------------------------------------------------
 */

struct waiter {
    pthread_t thread;
    bool started;
    CURLcode rc;
    struct response r;
    double done_s;
};

static struct waiter waiters[MAX_WAITERS];

static void *wait_run(void *arg)
{
    struct waiter *w = arg;
    w->rc = try_request("POST", "/queues/idle/messages:receive", "{\"wait_seconds\": 5}", &w->r);
    w->done_s = harness_now_s();
    return NULL;
}

static void waiters_join(void)
{
    for (int i = 0; i < MAX_WAITERS; i++) {
        if (waiters[i].started)
            pthread_join(waiters[i].thread, NULL);
        waiters[i].started = false;
        response_cleanup(&waiters[i].r);
    }
}

/* The rydes_long_poll_waiters gauge of /metrics, or -1. */
static int waiters_now(void)
{
    struct response r;
    int n = -1;
    if (try_request("GET", "/metrics", NULL, &r) == CURLE_OK) {
        const char *at = strstr(buf_str(&r.body), "\nrydes_long_poll_waiters ");
        n = at ? atoi(at + strlen("\nrydes_long_poll_waiters ")) : -1;
    }
    response_cleanup(&r);
    return n;
}

static void wait_waiters(int n)
{
    double until = harness_now_s() + 15;
    int seen = 0, now;
    while ((now = waiters_now()) < n && harness_now_s() < until) {
        seen = now > seen ? now : seen;
        harness_sleep_ms(50);
    }
    if (now == n)
        return;
    /* what the waiters got, for the failure's message (seen once, under a loaded suite: 0),
     * read once they have ended */
    for (int i = 0; i < MAX_WAITERS; i++)
        if (waiters[i].started) {
            pthread_join(waiters[i].thread, NULL);
            waiters[i].started = false;
        }
    char got[512] = "";
    size_t len = 0;
    for (int i = 0; i < MAX_WAITERS && len < sizeof got - 16; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, " %ld@%.1f", waiters[i].r.status,
                                waiters[i].done_s);
    ck_assert_msg(0, "%d waiters at once at most (now %d), not %d; answers (status@time):%s", seen,
                  now, n, got);
}

/* A long poll past the limit: 503 problem+json with Retry-After, at once. */
static void poll_refused(void)
{
    struct response r;
    double t0 = harness_now_s();
    ck_assert_int_eq(
        try_request("POST", "/queues/idle/messages:receive", "{\"wait_seconds\": 5}", &r),
        CURLE_OK);
    ck_assert_msg(harness_now_s() - t0 < 3, "refused only after %.1f s", harness_now_s() - t0);
    assert_problem(&r, 503);
    char retry[16];
    ck_assert(response_header(&r, "Retry-After", retry, sizeof retry));
    ck_assert_int_gt(atoi(retry), 0);
    response_cleanup(&r);
}

/* Other requests while the waiters wait: a send, a receive of it, the queue list. */
static void others_served(int i)
{
    char body[64];
    snprintf(body, sizeof body, "{\"body\":\"b%d\"}", i);
    expect_status("POST", "/queues/busy/messages", body, 201, 5);
    struct response r;
    ck_assert_int_eq(try_request("POST", "/queues/busy/messages:receive", "{\"delete\":true}", &r),
                     CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
    expect_status("GET", "/queues", NULL, 200, 5);
}

/* The twenty were answered with empty lists at their deadline (not before, not much after). */
static void assert_waiters_answered(double started)
{
    for (int i = 0; i < MAX_WAITERS; i++) {
        struct waiter *w = &waiters[i];
        ck_assert_msg(w->rc == CURLE_OK, "waiter %d: %s", i, curl_easy_strerror(w->rc));
        ck_assert_msg(w->r.status == 200, "waiter %d: %ld %s", i, w->r.status, buf_str(&w->r.body));
        ck_assert_int_eq(json_array_size(json_object_get(w->r.json, "messages")), 0);
        ck_assert_msg(w->done_s - started > 4.5 && w->done_s - started < 5 + 10,
                      "waiter %d answered after %.1f s", i, w->done_s - started);
    }
}

START_TEST(waiters_are_bounded)
{
    const char *const args[] = {"--max-waiters", "20", NULL};
    proc_serve(&srv, "none", args);
    harness_put_queue(&srv.http, "idle", NULL, 201);
    harness_put_queue(&srv.http, "busy", NULL, 201);
    double started = harness_now_s();
    for (int i = 0; i < MAX_WAITERS; i++) {
        memset(&waiters[i], 0, sizeof waiters[i]);
        ck_assert_int_eq(pthread_create(&waiters[i].thread, NULL, wait_run, &waiters[i]), 0);
        waiters[i].started = true;
    }
    wait_waiters(MAX_WAITERS);
    ck_assert_msg(harness_now_s() - started < 4, "the waiters took too long to start");
    for (int i = 0; i < EXTRA_POLLS; i++) {
        poll_refused();
        others_served(i);
    }
    for (int i = 0; i < MAX_WAITERS; i++) {
        pthread_join(waiters[i].thread, NULL);
        waiters[i].started = false;
    }
    assert_waiters_answered(started);
    assert_alive();
    /* the waiters are gone: a long poll is accepted (it waits its second) */
    double t0 = harness_now_s();
    expect_status("POST", "/queues/idle/messages:receive", "{\"wait_seconds\": 1}", 200, 10);
    ck_assert_msg(harness_now_s() - t0 > 0.8, "the long poll did not wait");
    assert_alive();
}
END_TEST

static void teardown(void)
{
    proc_cleanup(&srv);
    for (int i = 0; i < 4; i++)
        slow_join(&slows[i]);
    waiters_join();
    flood_close();
}

static void setup(void)
{
    memset(&srv, 0, sizeof srv);
    memset(slows, 0, sizeof slows);
    slows[0].fd = slows[1].fd = -1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("chaos_abuse");
    TCase *tc = tcase_create("abuse");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, slow_clients_are_cut_off);
    tcase_add_test(tc, slow_readers_are_cut_off);
    tcase_add_test(tc, idle_flood_is_bounded);
    tcase_add_test(tc, waiters_are_bounded);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
