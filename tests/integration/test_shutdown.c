/* Integration: graceful shutdown. A request in flight when shutdown begins is finished and
 * answered, with Connection: close (its client sends nothing more on that connection); new
 * connections are refused afterwards, and a readiness probe on a kept-alive one says no. The
 * real binary exits 0 on SIGTERM. */
#include "harness.h"

#include "rydes/clock.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_server srv;

/* A client that uploads its body in two halves with a pause between them. */
struct slow_upload {
    const char *parts[2];
    int next;
    long status;
    CURLcode rc;
    bool closes; /* the answer said Connection: close */
};

static size_t slow_read(char *out, size_t size, size_t n, void *userdata)
{
    struct slow_upload *u = userdata;
    if (u->next == 2)
        return 0;
    if (u->next == 1)
        usleep(700000);
    const char *p = u->parts[u->next++];
    size_t len = strlen(p);
    if (len > size * n) /* (on curl's thread: no check may be made there) */
        return CURL_READFUNC_ABORT;
    memcpy(out, p, len);
    return len;
}

static size_t discard(char *p, size_t size, size_t n, void *userdata)
{
    (void)p;
    (void)userdata;
    return size * n;
}

static size_t see_close(char *p, size_t size, size_t n, void *userdata)
{
    struct slow_upload *u = userdata;
    if (size * n >= 17 && strncasecmp(p, "Connection: close", 17) == 0)
        u->closes = true;
    return size * n;
}

static void *slow_client(void *arg)
{
    struct slow_upload *u = arg;
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/tokens", srv.base);
    struct curl_slist *hs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, slow_read);
    curl_easy_setopt(c, CURLOPT_READDATA, u);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, see_close);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    u->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &u->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return NULL;
}

/* GET /healthz of the server at base (5 s at most): curl's result. */
static CURLcode healthz_at(const char *base)
{
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    return rc;
}

START_TEST(in_flight_request_finishes_during_shutdown)
{
    harness_start(&srv, NULL);
    char base[64];
    snprintf(base, sizeof base, "%s", srv.base);
    static struct slow_upload u; /* the thread outlives a failed check's jump out of here */
    u = (struct slow_upload){.parts = {"{\"role\":", "\"app\"}"}};
    pthread_t t;
    pthread_create(&t, NULL, slow_client, &u);
    int64_t deadline = clock_mono_us() + 5000000;
    while (http_server_in_flight(srv.app.http) == 0 && clock_mono_us() < deadline)
        usleep(5000);
    ck_assert_int_eq(http_server_in_flight(srv.app.http), 1);
    /* from the moment the stop begins, new connections are refused: they used to be queued on
     * the listening socket, unanswered until the process exited */
    http_server_quiesce(srv.app.http);
    ck_assert_int_eq(healthz_at(base), CURLE_COULDNT_CONNECT);
    ck_assert_int_eq(http_server_in_flight(srv.app.http), 1);
    harness_stop(&srv); /* waits for the upload to finish */
    pthread_join(t, NULL);
    ck_assert_int_eq(u.rc, CURLE_OK);
    ck_assert_int_eq(u.status, 201);
    ck_assert(u.closes); /* a kept-alive client would otherwise keep the stop waiting */
    ck_assert_int_eq(healthz_at(base), CURLE_COULDNT_CONNECT);
}
END_TEST

/* Starts `rydes serve --port 0`; its log (stderr) can be read from *log. */
/* Starts `rydes serve` with its log on a pipe; the database URL and the admin token in the
 * environment, or, with secret_flags, as flags. */
static pid_t spawn(FILE **log, bool secret_flags)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        setenv("RYDES_PORT", "0", 1);
        if (secret_flags) {
            char url[512];
            snprintf(url, sizeof url, "--database-url=%s", harness_db_url());
            unsetenv("DATABASE_URL");
            execl(getenv("RYDES_BINARY"), "rydes", "serve", url, "--admin-token",
                  HARNESS_ADMIN_TOKEN, (char *)NULL);
        }
        setenv("DATABASE_URL", harness_db_url(), 1);
        setenv("RYDES_ADMIN_TOKEN", HARNESS_ADMIN_TOKEN, 1);
        execl(getenv("RYDES_BINARY"), "rydes", "serve", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *log = fdopen(fds[0], "r");
    return pid;
}

/* Starts `rydes serve --port 0` and reads the port from its log. */
static pid_t spawn_server(int *port, FILE **log, bool secret_flags)
{
    pid_t pid = spawn(log, secret_flags);
    char line[1024];
    *port = 0;
    while (!*port && fgets(line, sizeof line, *log)) {
        const char *p = strstr(line, "listening on http://127.0.0.1:");
        if (p)
            *port = atoi(p + strlen("listening on http://127.0.0.1:"));
    }
    return pid;
}

/* Waits up to 15 s for pid to end; returns how long after t0 it did (-1: it did not). */
static int64_t ended_after(pid_t pid, int64_t t0, int *status)
{
    pid_t done = 0;
    while ((done = waitpid(pid, status, WNOHANG)) == 0 && clock_mono_us() - t0 < 15000000)
        usleep(10000);
    return done == pid ? clock_mono_us() - t0 : -1;
}

START_TEST(binary_exits_zero_on_sigterm)
{
    ck_assert_msg(getenv("RYDES_BINARY") != NULL, "RYDES_BINARY is set by meson");
    int port;
    FILE *log;
    pid_t pid = spawn_server(&port, &log, false);
    ck_assert_int_gt(port, 0);
    snprintf(srv.base, sizeof srv.base, "http://127.0.0.1:%d", port);
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    kill(pid, SIGTERM);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    char line[1024];
    bool stopped = false;
    while (fgets(line, sizeof line, log))
        stopped |= strstr(line, "stopped") != NULL;
    ck_assert(stopped);
    fclose(log);
}
END_TEST

/* Secrets given as flags are wiped from the command line once read: /proc/PID/cmdline, which
 * every local user may read, no longer shows the database URL (its password) or the token. */
START_TEST(secret_flags_leave_the_command_line)
{
    int port;
    FILE *log;
    pid_t pid = spawn_server(&port, &log, true);
    ck_assert_int_gt(port, 0);
    snprintf(srv.base, sizeof srv.base, "http://127.0.0.1:%d", port);
    struct response r;
    harness_admin(&srv, "GET", "/queues", NULL, &r); /* the token given as a flag works */
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    char path[64], cmdline[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
    if (fd >= 0)
        close(fd);
    kill(pid, SIGTERM); /* before any assertion: a failed one would leave it running */
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_gt(n, 0);
    for (ssize_t i = 0; i < n; i++) /* the arguments, NUL-separated, as one string */
        cmdline[i] = cmdline[i] ? cmdline[i] : ' ';
    cmdline[n] = '\0';
    ck_assert_msg(strstr(cmdline, "--database-url=") && strstr(cmdline, "--admin-token"), "%s",
                  cmdline);
    ck_assert_msg(!strstr(cmdline, harness_db_url()), "the URL is still shown: %s", cmdline);
    ck_assert_msg(!strstr(cmdline, HARNESS_ADMIN_TOKEN), "the token is still shown: %s", cmdline);
    fclose(log);
}
END_TEST

/* Sends a GET of path on fd (kept alive) and reads its answer's status line; 0 when none
 * came within 5 s. */
static int get_on(int fd, const char *path)
{
    char req[128], reply[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t got = 0;
    int status = 0;
    for (int64_t until = clock_mono_us() + 5000000; clock_mono_us() < until && !status;) {
        ssize_t k = read(fd, reply + got, sizeof reply - 1 - got);
        if (k <= 0)
            break;
        got += (size_t)k;
        reply[got] = '\0';
        char *end = strstr(reply, "\r\n\r\n"), *len = strcasestr(reply, "Content-Length:");
        if (end && len && got >= (size_t)(end + 4 - reply) + (size_t)atoi(len + 15))
            sscanf(reply, "HTTP/1.1 %d", &status);
    }
    return status;
}

/* A readiness probe on a connection kept alive across the start of a shutdown is told the
 * instance is going (it used to be 200: a load balancer kept sending to it). */
START_TEST(readiness_says_no_once_shutdown_begins)
{
    struct harness_server s;
    harness_start(&s, NULL);
    int port = atoi(strrchr(s.base, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(get_on(fd, "/readyz"), 200);
    http_server_quiesce(s.app.http);
    ck_assert_int_eq(get_on(fd, "/readyz"), 503);
    close(fd);
    harness_stop(&s);
}
END_TEST

/* A second SIGTERM while the first one's stop waits for a request in flight (an upload that
 * never ends, here) ends the process at once, by the signal: an operator's second Ctrl-C is not
 * ignored for the whole shutdown timeout (10 s). */
START_TEST(a_second_signal_stops_at_once)
{
    int port;
    FILE *log;
    pid_t pid = spawn_server(&port, &log, false);
    ck_assert_int_gt(port, 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char head[] = "POST /tokens HTTP/1.1\r\nHost: x\r\n"
                               "Authorization: Bearer " HARNESS_ADMIN_TOKEN "\r\n"
                               "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    ck_assert_int_eq(write(fd, head, sizeof head - 1), (ssize_t)(sizeof head - 1));
    usleep(300000);
    kill(pid, SIGTERM);
    usleep(500000); /* the stop is waiting for the upload */
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
    int64_t t0 = clock_mono_us();
    kill(pid, SIGTERM);
    int64_t took = ended_after(pid, t0, &status);
    ck_assert(took >= 0);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
                  "the second signal did not end it (%.1f s)", took / 1e6);
    ck_assert_msg(took < 2000000, "the second signal took %.1f s", took / 1e6);
    close(fd);
    fclose(log);
}
END_TEST

/* SIGTERM during a start-up that waits (here on the migration lock, which another session
 * holds: start-up would wait a minute for it) stops it at once. Signals used to be blocked
 * until start-up had finished. */
START_TEST(a_signal_during_start_up_stops_it_at_once)
{
    PGconn *holder = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
    PGresult *r = PQexec(holder, "SELECT pg_advisory_lock(491496453491)"); /* migrate.c's */
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    FILE *log;
    pid_t pid = spawn(&log, false);
    usleep(700000); /* it waits for the lock */
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
    int64_t t0 = clock_mono_us();
    kill(pid, SIGTERM);
    int64_t took = ended_after(pid, t0, &status);
    PQfinish(holder);
    ck_assert_msg(took >= 0 && took < 2000000, "start-up went on %.1f s after SIGTERM", took / 1e6);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 1);
    char line[1024];
    bool said = false;
    while (fgets(line, sizeof line, log))
        said |= strstr(line, "received SIGTERM during start-up") != NULL;
    ck_assert(said);
    fclose(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shutdown");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, in_flight_request_finishes_during_shutdown);
    tcase_add_test(tc, binary_exits_zero_on_sigterm);
    tcase_add_test(tc, secret_flags_leave_the_command_line);
    tcase_add_test(tc, a_second_signal_stops_at_once);
    tcase_add_test(tc, a_signal_during_start_up_stops_it_at_once);
    tcase_add_test(tc, readiness_says_no_once_shutdown_begins);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
