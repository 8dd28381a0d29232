/* Integration: HTTP push subscriptions of topics, with real HTTP both ways (the gateway's push
 * worker POSTs to a small libmicrohttpd receiver in this process, which records every request and
 * answers with a status scripted by its path). Covered: the SNS-style envelope and every
 * x-rydes-* header of a delivery, raw delivery of text (text/plain, verbatim) and JSON
 * (application/json, compact) bodies, filter policies on URL subscriptions (no row and no POST
 * for a non-match, the publish's `deliveries` counting queues and matching URLs only), retries
 * until a 2xx (attempt numbers counting up, the jitter's lower bound between attempts, the
 * backoff doubling), any 2xx a delivery (also with its body cut short) and a 4xx a failure,
 * dead-lettering after max_attempts (the envelope, or the raw body with its attributes, in the DLQ
 * with the same message id; the push metrics), a failed delivery kept in push_backlog without a
 * DLQ, not retried and dropped with its subscription, redirects not followed, connection refused
 * counted as a failure and retried, an attempt in flight at shutdown not counted, deliveries
 * surviving a restart of a gateway that ran without the worker, two gateways sharing the work
 * without duplicates, and URL and queue subscriptions in the subscription list (a deleted DLQ shown
 * as null). */
#include "harness.h"

#include "rydes/ids.h"
#include "rydes/mem.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the receiver -------------------------------------------------------------------------- */

#define MAX_HITS 512

/* One request the receiver got. Written once under rcv.mu, never changed afterwards. */
struct hit {
    char method[16];
    char path[128];
    char content_type[128];
    char message_type[64];
    char message_id[64];
    char topic[300];
    char attempt[16];
    char *body;
    double at; /* CLOCK_MONOTONIC seconds when the body was complete */
    unsigned status;
};

/* One request in progress: its body so far. */
struct upload {
    struct buf body;
    bool big; /* a /big/ request: its completion time is kept */
};

static struct {
    struct MHD_Daemon *daemon, *daemon2; /* on 127.0.0.1 and 127.0.0.2: two endpoints */
    int port, port2;
    char ok_url[64]; /* where /redirect points */
    pthread_mutex_t mu;
    struct hit hits[MAX_HITS];
    int n;
    uint64_t big_size;  /* bytes of a /big/ answer (big_answer) */
    double big_sent_at; /* CLOCK_MONOTONIC seconds when a /big/ answer had gone out or its
                         * client had stopped reading it */
} rcv;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_header(struct MHD_Connection *conn, const char *name, char *out, size_t n)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(out, n, "%s", v ? v : "");
}

/* The scripted answer to a request for path; *location is set for a redirect. Under rcv.mu. */
static unsigned scripted_status(const char *path, const char **location)
{
    *location = NULL;
    if (strncmp(path, "/status/", 8) == 0)
        return (unsigned)atoi(path + 8);
    if (strncmp(path, "/flaky/", 7) == 0) { /* 503 for the first N requests to this path */
        int failures = atoi(path + 7), earlier = 0;
        for (int i = 0; i < rcv.n; i++)
            earlier += strcmp(rcv.hits[i].path, path) == 0;
        return earlier < failures ? 503 : 200;
    }
    if (strncmp(path, "/slow/", 6) == 0) /* answered after N ms (on_request) */
        return 200;
    if (strncmp(path, "/cut/", 5) == 0) /* 200, and the body cut short (on_request) */
        return 200;
    if (strncmp(path, "/big/", 5) == 0) /* 200 after N ms, with big_answer() bytes (on_request) */
        return 200;
    if (strncmp(path, "/endless/", 9) == 0) /* 200 and a body that never ends (on_request) */
        return 200;
    if (strncmp(path, "/redirect", 9) == 0) {
        *location = rcv.ok_url;
        return 302;
    }
    return 200;
}

/* The third number of a /proc/sys/net/ipv4 triple (min default max), or 0. */
static uint64_t sysctl_max(const char *name)
{
    char path[128];
    unsigned long long lo = 0, def = 0, max = 0;
    snprintf(path, sizeof path, "/proc/sys/net/ipv4/%s", name);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%llu %llu %llu", &lo, &def, &max) != 3)
            max = 0;
        fclose(f);
    }
    return max;
}

/* The size of a /big/ answer: more than the socket buffers of both ends can hold (twice their
 * maxima, 64 MiB at least), so it has gone out whole only once the client has read it. */
static uint64_t big_answer(void)
{
    uint64_t n = 2 * (sysctl_max("tcp_rmem") + sysctl_max("tcp_wmem"));
    return n > (64u << 20) ? n : (64u << 20);
}

/* The body of /big/: zeros. */
static ssize_t zeros(void *cls, uint64_t pos, char *buf, size_t max)
{
    uint64_t size = *(const uint64_t *)cls;
    size_t n = size - pos < max ? (size_t)(size - pos) : max;
    memset(buf, 0, n);
    return (ssize_t)n;
}

/* The body of /endless/: zeros for ever. */
static ssize_t endless(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    memset(buf, 0, max);
    return (ssize_t)max;
}

/* The body of /cut/: none of the 100 bytes announced; the connection ends after the headers. */
static ssize_t cut_short(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct upload *u = *con_cls;
    if (!u) { /* the headers: the body follows */
        u = xcalloc(1, sizeof *u);
        buf_init(&u->body);
        *con_cls = u;
        return MHD_YES;
    }
    if (*upload_data_size) {
        buf_append(&u->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *location = NULL;
    pthread_mutex_lock(&rcv.mu);
    unsigned status = scripted_status(url, &location);
    if (rcv.n < MAX_HITS) {
        struct hit *h = &rcv.hits[rcv.n];
        snprintf(h->method, sizeof h->method, "%s", method);
        snprintf(h->path, sizeof h->path, "%s", url);
        copy_header(conn, "Content-Type", h->content_type, sizeof h->content_type);
        copy_header(conn, "x-rydes-message-type", h->message_type, sizeof h->message_type);
        copy_header(conn, "x-rydes-message-id", h->message_id, sizeof h->message_id);
        copy_header(conn, "x-rydes-topic", h->topic, sizeof h->topic);
        copy_header(conn, "x-rydes-delivery-attempt", h->attempt, sizeof h->attempt);
        h->body = buf_steal(&u->body);
        h->at = now_s();
        h->status = status;
        rcv.n++;
    }
    pthread_mutex_unlock(&rcv.mu);
    if (strncmp(url, "/slow/", 6) == 0 || strncmp(url, "/big/", 5) == 0)
        harness_sleep_ms(atoi(url + (url[1] == 's' ? 6 : 5)));
    u->big = strncmp(url, "/big/", 5) == 0;
    static char answer[] = "{}";
    struct MHD_Response *resp;
    if (strncmp(url, "/cut/", 5) == 0)
        resp = MHD_create_response_from_callback(100, 100, cut_short, NULL, NULL);
    else if (u->big)
        resp = MHD_create_response_from_callback(rcv.big_size, 65536, zeros, &rcv.big_size, NULL);
    else if (strncmp(url, "/endless/", 9) == 0)
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, endless, NULL, NULL);
    else
        resp = MHD_create_response_from_buffer(strlen(answer), answer, MHD_RESPMEM_PERSISTENT);
    if (location)
        MHD_add_response_header(resp, "Location", location);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    struct upload *u = *con_cls;
    (void)toe; /* whole, or the client stopped reading it (push reads 64 KiB of an answer) */
    if (u && u->big) {
        pthread_mutex_lock(&rcv.mu);
        rcv.big_sent_at = now_s();
        pthread_mutex_unlock(&rcv.mu);
    }
    if (u) {
        buf_cleanup(&u->body);
        free(u);
        *con_cls = NULL;
    }
}

/* A receiver daemon on address (host order) and a free port (into *port). */
static struct MHD_Daemon *receiver_daemon(uint32_t address, int *port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(address);
    addr.sin_port = 0;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, NULL, MHD_OPTION_END);
    ck_assert_msg(d != NULL, "the receiver did not start");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert(info != NULL && info->port != 0);
    *port = info->port;
    return d;
}

static void receiver_start(void)
{
    memset(&rcv, 0, sizeof rcv);
    pthread_mutex_init(&rcv.mu, NULL);
    rcv.big_size = big_answer();
    rcv.daemon = receiver_daemon(INADDR_LOOPBACK, &rcv.port);
    rcv.daemon2 = receiver_daemon(INADDR_LOOPBACK + 1, &rcv.port2);
    snprintf(rcv.ok_url, sizeof rcv.ok_url, "http://127.0.0.1:%d/ok", rcv.port);
}

static void receiver_stop(void)
{
    MHD_stop_daemon(rcv.daemon);
    MHD_stop_daemon(rcv.daemon2);
    rcv.daemon = rcv.daemon2 = NULL;
    for (int i = 0; i < rcv.n; i++)
        free(rcv.hits[i].body);
    rcv.n = 0;
    pthread_mutex_destroy(&rcv.mu);
}

/* The receiver's URL for path (which starts with '/'). */
static void rcv_url(const char *path, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", rcv.port, path);
}

/* How many requests went to a path that starts with prefix. */
static int rcv_count_prefix(const char *prefix)
{
    pthread_mutex_lock(&rcv.mu);
    int c = 0;
    for (int i = 0; i < rcv.n; i++)
        c += strncmp(rcv.hits[i].path, prefix, strlen(prefix)) == 0;
    pthread_mutex_unlock(&rcv.mu);
    return c;
}

/* How many requests went to path (NULL: to any path). */
static int rcv_count(const char *path)
{
    pthread_mutex_lock(&rcv.mu);
    int c = 0;
    for (int i = 0; i < rcv.n; i++)
        c += !path || strcmp(rcv.hits[i].path, path) == 0;
    pthread_mutex_unlock(&rcv.mu);
    return c;
}

/* The k-th request (from 0) to path; it must exist. Hits never change once recorded. */
static const struct hit *rcv_hit(const char *path, int k)
{
    const struct hit *found = NULL;
    pthread_mutex_lock(&rcv.mu);
    for (int i = 0, seen = 0; i < rcv.n && !found; i++)
        if (strcmp(rcv.hits[i].path, path) == 0 && seen++ == k)
            found = &rcv.hits[i];
    pthread_mutex_unlock(&rcv.mu);
    ck_assert_msg(found != NULL, "no request %d to %s", k, path);
    return found;
}

/* Waits up to timeout_ms for at least n requests to path (NULL: any); returns the count. */
static int rcv_wait(const char *path, int n, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    int c;
    while ((c = rcv_count(path)) < n && now_s() < until)
        harness_sleep_ms(50);
    return c;
}

/* ---- the gateway ----------------------------------------------------------------------------- */

static struct harness_server srv;

/* RYDES_WORKERS=none: the server runs without the push worker. cfg->workers is a heap string
 * the config owns (config_cleanup frees it), so the default is freed and replaced. */
static void no_workers(struct config *cfg)
{
    free(cfg->workers);
    cfg->workers = xstrdup("none");
}

/* Whether srv runs: a test that failed between stopping and starting it again must not have it
 * stopped twice. */
static bool srv_running;

static void srv_stop(void)
{
    harness_stop(&srv);
    srv_running = false;
}

static void srv_start(void (*tweak)(struct config *cfg))
{
    harness_start(&srv, tweak);
    srv_running = true;
}

/* Stops srv and starts it again, with tweak. */
static void restart(void (*tweak)(struct config *cfg))
{
    srv_stop();
    srv_start(tweak);
}

static void setup(void)
{
    receiver_start();
    srv_start(NULL);
}

static void teardown(void)
{
    if (srv_running)
        harness_stop(&srv);
    srv_running = false;
    /* no worker runs now: nothing a test left behind is delivered during a later one (whose
     * receiver may get the same port) */
    free(harness_sql(harness_db_url(), "DELETE FROM push_deliveries"));
    receiver_stop();
}

/* The first value of sql as an integer. */
static long long sql_int(const char *sql)
{
    char *v = harness_sql(harness_db_url(), sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    long long n = atoll(v);
    free(v);
    return n;
}

/* Waits up to timeout_ms for sql to give want; returns the last value. */
static long long wait_sql_int(const char *sql, long long want, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    long long v;
    while ((v = sql_int(sql)) != want && now_s() < until)
        harness_sleep_ms(50);
    return v;
}

/* The first value of sql as a string (caller frees), asserting there is one. */
static char *sql_text(const char *sql)
{
    char *v = harness_sql(harness_db_url(), sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    return v;
}

/* Rows of push_deliveries for message id (NULL: all). */
static long long pending(const char *message_id)
{
    char sql[200];
    if (!message_id)
        return sql_int("SELECT count(*) FROM push_deliveries");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM push_deliveries WHERE message_id = '%s'",
             message_id);
    return sql_int(sql);
}

/* Waits up to 10 s until no row of push_deliveries is left for message_id (NULL: any). */
static void wait_no_pending(const char *message_id)
{
    double until = now_s() + 10;
    long long n;
    while ((n = pending(message_id)) != 0 && now_s() < until)
        harness_sleep_ms(50);
    ck_assert_msg(n == 0, "%lld deliveries of %s still pending", n,
                  message_id ? message_id : "any message");
}

/* Waits up to 10 s until the delivery of message_id is failed for good in push_backlog. */
static void wait_failed(const char *message_id)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM push_backlog WHERE message_id = '%s' AND state = 'failed'",
             message_id);
    ck_assert_msg(wait_sql_int(sql, 1, 10000) == 1, "the delivery of %s did not fail", message_id);
}

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

#define PUSH_METRIC(outcome) "rydes_push_attempts_total{outcome=\"" outcome "\"}"

/* Waits up to 10 s for metric sample of s to reach want (counters move after the database). */
static void wait_metric(struct harness_server *s, const char *sample, long long want)
{
    double until = now_s() + 10;
    long long v;
    while ((v = metric(s, sample)) != want && now_s() < until)
        harness_sleep_ms(50);
    ck_assert_msg(v == want, "%s is %lld, expected %lld", sample, v, want);
}

/* PUT /topics/{name} as admin; asserts 201. */
static void put_topic(const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s", name);
    struct response r;
    harness_admin(&srv, "PUT", path, NULL, &r);
    ck_assert_msg(r.status == 201, "PUT %s: %ld %s", path, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

/* PUT /topics/{topic}/subscriptions/{sub} with body as admin; asserts 201. */
static void put_sub(const char *topic, const char *sub, const char *body)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/subscriptions/%s", topic, sub);
    struct response r;
    harness_admin(&srv, "PUT", path, body, &r);
    ck_assert_msg(r.status == 201, "PUT %s %s: %ld %s", path, body, r.status, buf_str(&r.body));
    response_cleanup(&r);
}

/* A subscription of topic POSTing to the receiver's path; extra is more members of the body
 * (JSON text starting with a comma) or "". */
static void put_url_sub(const char *topic, const char *sub, const char *path, const char *extra)
{
    char url[200], body[1024];
    rcv_url(path, url, sizeof url);
    snprintf(body, sizeof body, "{\"url\": \"%s\"%s}", url, extra);
    put_sub(topic, sub, body);
}

/* The same at the receiver's second address (127.0.0.2): another endpoint. */
static void put_url_sub_elsewhere(const char *topic, const char *sub, const char *path)
{
    char body[300];
    snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.2:%d%s\"}", rcv.port2, path);
    put_sub(topic, sub, body);
}

/* Publishes request (the JSON text of the whole request) to topic through s as admin; asserts
 * 201 and returns the deliveries. message_id (IDS_UUID_LEN), when given, receives the id. */
static int publish_on(struct harness_server *s, const char *topic, const char *request,
                      char *message_id)
{
    char path[400];
    snprintf(path, sizeof path, "/topics/%s/messages", topic);
    struct response r;
    harness_admin(s, "POST", path, request, &r);
    ck_assert_msg(r.status == 201, "publish %s: %ld %s", request, r.status, buf_str(&r.body));
    const char *id = json_str(r.json, "message_id");
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(strlen(id), IDS_UUID_LEN - 1);
    json_t *d = json_object_get(r.json, "deliveries");
    ck_assert_msg(json_is_integer(d), "deliveries missing: %s", buf_str(&r.body));
    int n = (int)json_integer_value(d);
    if (message_id)
        snprintf(message_id, IDS_UUID_LEN, "%s", id);
    response_cleanup(&r);
    return n;
}

static int publish(const char *topic, const char *request, char *message_id)
{
    return publish_on(&srv, topic, request, message_id);
}

/* Checks the headers every delivery of message_id on topic carries, for attempt number
 * attempt. */
static void assert_delivery_headers(const struct hit *h, const char *message_id, const char *topic,
                                    int attempt)
{
    char want[16];
    snprintf(want, sizeof want, "%d", attempt);
    ck_assert_str_eq(h->method, "POST");
    ck_assert_str_eq(h->message_type, "Notification");
    ck_assert_str_eq(h->message_id, message_id);
    ck_assert_str_eq(h->topic, topic);
    ck_assert_msg(strcmp(h->attempt, want) == 0, "x-rydes-delivery-attempt is \"%s\", not %s",
                  h->attempt, want);
}

static void assert_timestamp(const char *ts)
{
    ck_assert_ptr_nonnull(ts);
    ck_assert_msg(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
                  "not RFC 3339 with milliseconds: %s", ts);
}

/* Checks an envelope (parsed): subject NULL means none, attrs the expected MessageAttributes. */
static void assert_envelope(json_t *e, const char *message_id, const char *topic,
                            const char *message, const char *subject, json_t *attrs)
{
    ck_assert_msg(json_is_object(e), "not an envelope");
    ck_assert_str_eq(json_str(e, "Type"), "Notification");
    ck_assert_ptr_nonnull(json_str(e, "MessageId"));
    ck_assert_str_eq(json_str(e, "MessageId"), message_id);
    ck_assert_ptr_nonnull(json_str(e, "Topic"));
    ck_assert_str_eq(json_str(e, "Topic"), topic);
    ck_assert_msg(json_is_string(json_object_get(e, "Message")), "Message is not a string");
    ck_assert_str_eq(json_str(e, "Message"), message);
    if (subject) {
        ck_assert_ptr_nonnull(json_str(e, "Subject"));
        ck_assert_str_eq(json_str(e, "Subject"), subject);
    } else {
        ck_assert_ptr_null(json_object_get(e, "Subject"));
    }
    assert_timestamp(json_str(e, "Timestamp"));
    ck_assert_msg(json_equal(json_object_get(e, "MessageAttributes"), attrs),
                  "MessageAttributes differ");
}

/* ---- the tests ------------------------------------------------------------------------------- */

START_TEST(envelope_delivery_carries_every_header_and_field)
{
    put_topic("push-env");
    put_url_sub("push-env", "hook", "/ok/envelope", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-env",
                             "{\"body\": \"hello rider\", \"subject\": \"Ride completed\", "
                             "\"attributes\": {\"fare\": {\"type\": \"Number\", \"value\": "
                             "\"12.5\"}, \"city\": {\"type\": \"String\", \"value\": \"Oslo\"}}}",
                             id),
                     1);
    ck_assert_int_eq(rcv_wait("/ok/envelope", 1, 10000), 1);
    const struct hit *h = rcv_hit("/ok/envelope", 0);
    assert_delivery_headers(h, id, "push-env", 1);
    ck_assert_str_eq(h->content_type, "application/json");
    json_error_t err;
    json_t *e = json_loads(h->body, 0, &err);
    ck_assert_msg(e != NULL, "the body is not JSON (%s): %s", err.text, h->body);
    json_t *attrs = json_loads("{\"fare\": {\"Type\": \"Number\", \"Value\": \"12.5\"}, "
                               "\"city\": {\"Type\": \"String\", \"Value\": \"Oslo\"}}",
                               0, NULL);
    assert_envelope(e, id, "push-env", "hello rider", "Ride completed", attrs);
    json_decref(attrs);
    json_decref(e);

    /* a message without subject or attributes: no Subject, empty MessageAttributes */
    char id2[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-env", "{\"body\": \"bare\"}", id2), 1);
    ck_assert_int_eq(rcv_wait("/ok/envelope", 2, 10000), 2);
    h = rcv_hit("/ok/envelope", 1);
    assert_delivery_headers(h, id2, "push-env", 1);
    e = json_loads(h->body, 0, &err);
    attrs = json_object();
    assert_envelope(e, id2, "push-env", "bare", NULL, attrs);
    json_decref(attrs);
    json_decref(e);

    wait_no_pending(NULL);
    ck_assert_int_eq(rcv_count(NULL), 2); /* each delivered once */
    wait_metric(&srv, PUSH_METRIC("delivered"), 2);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 0);
    ck_assert_int_eq(metric(&srv, "rydes_publishes_total"), 2);
    ck_assert_int_eq(metric(&srv, "rydes_publish_deliveries_total"), 2);
}
END_TEST

START_TEST(raw_delivery_posts_the_bare_body)
{
    put_topic("push-raw");
    put_url_sub("push-raw", "hook", "/ok/raw", ", \"raw_delivery\": true");
    const char *text = "plain text, \xc3\xbc"
                       "nic\xc3\xb6"
                       "de \xe2\x9c\x93\n  and a second line";
    json_t *o = json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", text, "attributes", "k", "type",
                          "String", "value", "v");
    char *req = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-raw", req, id), 1);
    free(req);
    ck_assert_int_eq(rcv_wait("/ok/raw", 1, 10000), 1);
    const struct hit *h = rcv_hit("/ok/raw", 0);
    assert_delivery_headers(h, id, "push-raw", 1);
    ck_assert_str_eq(h->content_type, "text/plain; charset=utf-8");
    ck_assert_str_eq(h->body, text);

    /* a JSON body: its compact text, as JSON */
    ck_assert_int_eq(publish("push-raw",
                             "{\"body\": {\"ride\": {\"id\": 7, \"tags\": [\"a\", \"b\"]}, "
                             "\"done\": true, \"driver\": null}}",
                             id),
                     1);
    ck_assert_int_eq(rcv_wait("/ok/raw", 2, 10000), 2);
    h = rcv_hit("/ok/raw", 1);
    assert_delivery_headers(h, id, "push-raw", 1);
    ck_assert_str_eq(h->content_type, "application/json");
    ck_assert_str_eq(h->body, "{\"ride\":{\"id\":7,\"tags\":[\"a\",\"b\"]},\"done\":true,"
                              "\"driver\":null}");

    /* a string body that looks like JSON stays text */
    ck_assert_int_eq(publish("push-raw", "{\"body\": \"{\\\"a\\\": 1}\"}", id), 1);
    ck_assert_int_eq(rcv_wait("/ok/raw", 3, 10000), 3);
    h = rcv_hit("/ok/raw", 2);
    ck_assert_str_eq(h->content_type, "text/plain; charset=utf-8");
    ck_assert_str_eq(h->body, "{\"a\": 1}");
    wait_no_pending(NULL);
    ck_assert_int_eq(rcv_count(NULL), 3);
}
END_TEST

/* Publishes to topic with attribute kind (NULL: no attributes); returns the deliveries. */
static int publish_kind(const char *topic, const char *kind, char *id)
{
    char req[300];
    if (kind)
        snprintf(req, sizeof req,
                 "{\"body\": \"%s\", \"attributes\": {\"kind\": {\"type\": \"String\", "
                 "\"value\": \"%s\"}}}",
                 kind, kind);
    else
        snprintf(req, sizeof req, "{\"body\": \"nothing\"}");
    return publish(topic, req, id);
}

/* The subscriptions with a pending delivery of message id, comma-separated ("" when none). */
static char *pending_subscriptions(const char *id)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(string_agg(subscription, ',' ORDER BY subscription), '') "
             "FROM push_backlog WHERE message_id = '%s'",
             id);
    return sql_text(sql);
}

START_TEST(filter_policies_decide_which_urls_get_a_delivery)
{
    /* without the worker first, so the rows a publish writes can be seen */
    restart(no_workers);
    harness_put_queue(&srv, "pf-q", NULL, 201);
    put_topic("push-filter");
    put_sub("push-filter", "q",
            "{\"queue\": \"pf-q\", \"filter_policy\": {\"kind\": [\"ride\", \"bike\"]}}");
    put_url_sub("push-filter", "ride", "/ok/ride", ", \"filter_policy\": {\"kind\": [\"ride\"]}");
    put_url_sub("push-filter", "bike", "/ok/bike",
                ", \"raw_delivery\": true, \"filter_policy\": {\"kind\": [\"bike\"]}");
    char ride[IDS_UUID_LEN], bike[IDS_UUID_LEN], scooter[IDS_UUID_LEN], none[IDS_UUID_LEN];
    ck_assert_int_eq(publish_kind("push-filter", "ride", ride), 2);
    ck_assert_int_eq(publish_kind("push-filter", "bike", bike), 2);
    ck_assert_int_eq(publish_kind("push-filter", "scooter", scooter), 0);
    ck_assert_int_eq(publish_kind("push-filter", NULL, none), 0);

    ck_assert_int_eq(pending(NULL), 2);
    char *subs = pending_subscriptions(ride);
    ck_assert_str_eq(subs, "ride");
    free(subs);
    subs = pending_subscriptions(bike);
    ck_assert_str_eq(subs, "bike");
    free(subs);
    ck_assert_int_eq(pending(scooter), 0);
    ck_assert_int_eq(pending(none), 0);
    ck_assert_int_eq(harness_stored("pf-q"), 2);
    ck_assert_int_eq(metric(&srv, "rydes_publishes_total"), 4);
    ck_assert_int_eq(metric(&srv, "rydes_publish_deliveries_total"), 4);

    /* now with the worker: exactly the matching URLs get their message */
    restart(NULL);
    ck_assert_int_eq(rcv_wait("/ok/ride", 1, 10000), 1);
    ck_assert_int_eq(rcv_wait("/ok/bike", 1, 10000), 1);
    wait_no_pending(NULL);
    assert_delivery_headers(rcv_hit("/ok/ride", 0), ride, "push-filter", 1);
    assert_delivery_headers(rcv_hit("/ok/bike", 0), bike, "push-filter", 1);
    ck_assert_str_eq(rcv_hit("/ok/bike", 0)->body, "bike");
    ck_assert_int_eq(rcv_count(NULL), 2);
}
END_TEST

START_TEST(retries_until_a_2xx)
{
    put_topic("push-retry");
    put_url_sub("push-retry", "hook", "/flaky/2/retry",
                ", \"delivery_policy\": {\"min_delay_seconds\": 1, \"max_delay_seconds\": 1, "
                "\"max_attempts\": 5}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-retry", "{\"body\": \"try again\"}", id), 1);
    ck_assert_int_eq(rcv_wait("/flaky/2/retry", 3, 10000), 3);
    wait_no_pending(id);
    ck_assert_int_eq(rcv_count(NULL), 3); /* delivered on the third: no fourth */
    double prev = 0;
    for (int i = 0; i < 3; i++) {
        const struct hit *h = rcv_hit("/flaky/2/retry", i);
        assert_delivery_headers(h, id, "push-retry", i + 1);
        ck_assert_uint_eq(h->status, i < 2 ? 503 : 200);
        json_t *e = json_loads(h->body, 0, NULL);
        ck_assert_str_eq(json_str(e, "MessageId"), id);
        ck_assert_str_eq(json_str(e, "Message"), "try again");
        json_decref(e);
        /* the backoff is 1 s with equal jitter: never less than half of it */
        if (i > 0)
            ck_assert_msg(h->at - prev >= 0.45, "attempt %d came %.3f s after the previous one",
                          i + 1, h->at - prev);
        prev = h->at;
    }
    wait_metric(&srv, PUSH_METRIC("delivered"), 1);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 2);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("dead_lettered")), 0);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("failed")), 0);
}
END_TEST

START_TEST(exhausted_deliveries_go_to_the_dead_letter_queue)
{
    harness_put_queue(&srv, "push-dlq", NULL, 201);
    put_topic("push-dl");
    const char *policy =
        ", \"dead_letter_queue\": \"push-dlq\", \"delivery_policy\": "
        "{\"max_attempts\": 2, \"min_delay_seconds\": 1, \"max_delay_seconds\": 1}";
    put_url_sub("push-dl", "hook", "/status/500/dl", policy);
    char raw_extra[300];
    snprintf(raw_extra, sizeof raw_extra, ", \"raw_delivery\": true%s", policy);
    put_url_sub("push-dl", "raw", "/status/500/dl-raw", raw_extra);
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-dl",
                             "{\"body\": \"undeliverable\", \"subject\": \"s\", \"attributes\": "
                             "{\"a\": {\"type\": \"String\", \"value\": \"b\"}}}",
                             id),
                     2);
    double until = now_s() + 10;
    while (harness_stored("push-dlq") < 2 && now_s() < until)
        harness_sleep_ms(50);
    ck_assert_int_eq(harness_stored("push-dlq"), 2);
    ck_assert_int_eq(pending(NULL), 0);
    ck_assert_int_eq(rcv_count(NULL), 4);
    /* operators see them where they look for dead letters (they have no source queue) */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM dead_letters WHERE dead_letter_queue = "
                                  "'push-dlq' AND source_queue IS NULL"),
                     2);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM stuck_work WHERE kind = 'dead letter' "
                                  "AND place = 'push-dlq'"),
                     2);
    long long series = -1; /* and /metrics counts it among the dead-letter queues */
    for (int i = 0; i < 50 && series < 0; i++, harness_sleep_ms(100))
        series = metric(&srv, "rydes_dead_letter_messages{queue=\"push-dlq\"}");
    ck_assert_int_ge(series, 0);
    for (int i = 0; i < 2; i++) {
        assert_delivery_headers(rcv_hit("/status/500/dl", i), id, "push-dl", i + 1);
        assert_delivery_headers(rcv_hit("/status/500/dl-raw", i), id, "push-dl", i + 1);
    }

    struct response r;
    harness_admin(&srv, "POST", "/queues/push-dlq/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 60}", &r);
    ck_assert_msg(r.status == 200, "receive: %ld %s", r.status, buf_str(&r.body));
    json_t *msgs = json_object_get(r.json, "messages");
    ck_assert_int_eq(json_array_size(msgs), 2);
    json_t *attrs = json_loads("{\"a\": {\"type\": \"String\", \"value\": \"b\"}}", 0, NULL);
    json_t *env_attrs = json_loads("{\"a\": {\"Type\": \"String\", \"Value\": \"b\"}}", 0, NULL);
    int envelopes = 0, raws = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(msgs, i);
        ck_assert_str_eq(json_str(m, "message_id"), id);
        json_t *b = json_object_get(m, "body");
        if (json_is_string(b) && strcmp(json_string_value(b), "undeliverable") == 0) {
            /* the raw subscription's: the body with its attributes */
            ck_assert_msg(json_equal(json_object_get(m, "attributes"), attrs),
                          "raw dead letter attributes: %s", buf_str(&r.body));
            raws++;
            continue;
        }
        json_t *e = json_is_string(b) ? json_loads(json_string_value(b), 0, NULL) : json_incref(b);
        assert_envelope(e, id, "push-dl", "undeliverable", "s", env_attrs);
        /* the very envelope that was POSTed */
        json_t *posted = json_loads(rcv_hit("/status/500/dl", 0)->body, 0, NULL);
        ck_assert_msg(json_equal(posted, e), "the dead letter differs from the POSTed envelope");
        json_decref(posted);
        json_decref(e);
        envelopes++;
    }
    ck_assert_int_eq(envelopes, 1);
    ck_assert_int_eq(raws, 1);
    json_decref(attrs);
    json_decref(env_attrs);
    response_cleanup(&r);

    wait_metric(&srv, PUSH_METRIC("dead_lettered"), 2);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 2);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("delivered")), 0);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("failed")), 0);
}
END_TEST

/* The last_error of the delivery of id (caller frees). */
static char *last_error(const char *id)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(last_error, '') FROM push_backlog WHERE message_id = '%s'", id);
    return sql_text(sql);
}

START_TEST(failed_without_dead_letter_queue_stays_failed)
{
    put_topic("push-fail");
    put_url_sub("push-fail", "hook", "/status/500/fail",
                ", \"delivery_policy\": {\"max_attempts\": 1}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-fail", "{\"body\": \"x\"}", id), 1);
    wait_failed(id);
    char *err = last_error(id);
    ck_assert_msg(strstr(err, "500") != NULL, "last_error: %s", err);
    free(err);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT attempts FROM push_backlog WHERE message_id = '%s'", id);
    ck_assert_int_eq(sql_int(sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM push_deliveries WHERE message_id = '%s' "
             "AND next_attempt_at = 'infinity'",
             id);
    ck_assert_int_eq(sql_int(sql), 1);
    wait_metric(&srv, PUSH_METRIC("failed"), 1);
    /* not retried */
    harness_sleep_ms(2500);
    ck_assert_int_eq(rcv_count(NULL), 1);
    wait_failed(id);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 0);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("dead_lettered")), 0);
    /* deleting the subscription drops its deliveries, failed ones included */
    struct response r;
    harness_admin(&srv, "DELETE", "/topics/push-fail/subscriptions/hook", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(pending(NULL), 0);
}
END_TEST

START_TEST(redirects_are_not_followed)
{
    put_topic("push-redirect");
    put_url_sub("push-redirect", "hook", "/redirect",
                ", \"delivery_policy\": {\"max_attempts\": 1}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-redirect", "{\"body\": \"x\"}", id), 1);
    wait_failed(id);
    ck_assert_int_eq(rcv_count("/redirect"), 1);
    ck_assert_int_eq(rcv_count("/ok"), 0);
    ck_assert_int_eq(rcv_count(NULL), 1);
    char *err = last_error(id);
    ck_assert_msg(strstr(err, "302") != NULL, "last_error: %s", err);
    free(err);
    wait_metric(&srv, PUSH_METRIC("failed"), 1);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("delivered")), 0);
}
END_TEST

START_TEST(connection_refused_is_a_failure_and_retried)
{
    /* a port bound but not listening: connections to it are refused, and no one else takes it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    put_topic("push-refused");
    char body[300];
    snprintf(body, sizeof body,
             "{\"url\": \"http://127.0.0.1:%d/refused\", \"delivery_policy\": "
             "{\"max_attempts\": 2, \"min_delay_seconds\": 1, \"max_delay_seconds\": 1}}",
             ntohs(addr.sin_port));
    put_sub("push-refused", "hook", body);
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-refused", "{\"body\": \"x\"}", id), 1);
    /* the first attempt fails and another is scheduled */
    wait_metric(&srv, PUSH_METRIC("retried"), 1);
    wait_failed(id);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT attempts FROM push_backlog WHERE message_id = '%s'", id);
    ck_assert_int_eq(sql_int(sql), 2);
    char *err = last_error(id);
    ck_assert_msg(err[0] && strstr(err, "HTTP status") == NULL, "last_error: %s", err);
    free(err);
    wait_metric(&srv, PUSH_METRIC("failed"), 1);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("delivered")), 0);
    ck_assert_int_eq(rcv_count(NULL), 0);
    close(fd);
}
END_TEST

START_TEST(any_2xx_is_a_delivery_and_a_4xx_a_failure)
{
    put_topic("push-codes");
    put_url_sub("push-codes", "s201", "/status/201", "");
    put_url_sub("push-codes", "s204", "/status/204", "");
    put_url_sub("push-codes", "s299", "/status/299", "");
    put_url_sub("push-codes", "s404", "/status/404",
                ", \"delivery_policy\": {\"max_attempts\": 2, \"min_delay_seconds\": 1, "
                "\"max_delay_seconds\": 1}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-codes", "{\"body\": \"codes\"}", id), 4);
    wait_failed(id);
    ck_assert_int_eq(pending(id), 1); /* only the 404 one is left */
    const char *ok[] = {"/status/201", "/status/204", "/status/299"};
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(rcv_count(ok[i]) == 1, "%s got %d POSTs", ok[i], rcv_count(ok[i]));
        assert_delivery_headers(rcv_hit(ok[i], 0), id, "push-codes", 1);
    }
    ck_assert_int_eq(rcv_count("/status/404"), 2);
    assert_delivery_headers(rcv_hit("/status/404", 1), id, "push-codes", 2);
    char *err = last_error(id);
    ck_assert_msg(strstr(err, "404") != NULL, "last_error: %s", err);
    free(err);
    wait_metric(&srv, PUSH_METRIC("failed"), 1);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("delivered")), 3);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 1);
}
END_TEST

/* A 2xx whose body is then cut short is the receiver's acceptance: delivered once, not
 * retried. */
START_TEST(a_2xx_cut_short_is_a_delivery)
{
    put_topic("push-cut");
    put_url_sub("push-cut", "cut", "/cut/",
                ", \"delivery_policy\": {\"max_attempts\": 3, \"min_delay_seconds\": 1, "
                "\"max_delay_seconds\": 1}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-cut", "{\"body\": \"cut\"}", id), 1);
    wait_no_pending(id);
    wait_metric(&srv, PUSH_METRIC("delivered"), 1);
    harness_sleep_ms(1500); /* a retry, had there been one, would have come by now */
    ck_assert_int_eq(rcv_count("/cut/"), 1);
    ck_assert_int_eq(metric(&srv, PUSH_METRIC("retried")), 0);
}
END_TEST

/* A 2xx whose body never ends is a delivery at once: push reads 64 KiB of an answer and ends
 * the transfer, instead of holding the slot until the 15 s timeout. */
START_TEST(an_endless_answer_is_not_read_to_the_end)
{
    put_topic("push-endless");
    put_url_sub("push-endless", "endless", "/endless/", "");
    char id[IDS_UUID_LEN];
    double t0 = now_s();
    ck_assert_int_eq(publish("push-endless", "{\"body\": \"e\"}", id), 1);
    wait_metric(&srv, PUSH_METRIC("delivered"), 1);
    ck_assert_msg(now_s() - t0 < 5, "delivered after %.1f s", now_s() - t0);
    wait_no_pending(id);
    ck_assert_int_eq(rcv_count("/endless/"), 1);
}
END_TEST

START_TEST(backoff_doubles_per_attempt)
{
    put_topic("push-backoff");
    put_url_sub("push-backoff", "hook", "/flaky/3/backoff",
                ", \"delivery_policy\": {\"min_delay_seconds\": 1, \"max_delay_seconds\": 4, "
                "\"max_attempts\": 5}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-backoff", "{\"body\": \"x\"}", id), 1);
    ck_assert_int_eq(rcv_wait("/flaky/3/backoff", 4, 15000), 4);
    wait_no_pending(id);
    ck_assert_int_eq(rcv_count(NULL), 4);
    /* backoffs of 1, 2 and 4 s, each at least half of it with equal jitter */
    const double at_least[] = {0.45, 0.95, 1.95};
    for (int i = 1; i < 4; i++) {
        const struct hit *h = rcv_hit("/flaky/3/backoff", i);
        double gap = h->at - rcv_hit("/flaky/3/backoff", i - 1)->at;
        assert_delivery_headers(h, id, "push-backoff", i + 1);
        ck_assert_msg(gap >= at_least[i - 1], "attempt %d came %.3f s after the previous one",
                      i + 1, gap);
    }
}
END_TEST

START_TEST(an_attempt_in_flight_at_shutdown_is_not_counted)
{
    put_topic("push-inflight");
    put_url_sub("push-inflight", "hook", "/slow/2000", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-inflight", "{\"body\": \"x\"}", id), 1);
    ck_assert_int_eq(rcv_wait("/slow/2000", 1, 10000), 1);
    assert_delivery_headers(rcv_hit("/slow/2000", 0), id, "push-inflight", 1);
    srv_stop(); /* while the receiver still holds its answer back */
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT attempts || ' ' || state || ' ' || coalesce(last_error, '-') "
             "FROM push_backlog WHERE message_id = '%s'",
             id);
    char *row = sql_text(sql);
    ck_assert_str_eq(row, "0 due -");
    free(row);
    srv_start(NULL);
    ck_assert_int_eq(rcv_wait("/slow/2000", 2, 10000), 2);
    assert_delivery_headers(rcv_hit("/slow/2000", 1), id, "push-inflight", 1);
    wait_no_pending(id);
    wait_metric(&srv, PUSH_METRIC("delivered"), 1);
    ck_assert_int_eq(rcv_count(NULL), 2);
}
END_TEST

/* A slow endpoint holds one slot of the worker, not the deliveries to the others: a message
 * published while another endpoint still holds its answer back reaches the fast endpoint at
 * once (the worker used to wait for its whole batch before claiming more). */
START_TEST(a_slow_endpoint_does_not_hold_up_the_others)
{
    put_topic("push-hol");
    put_url_sub("push-hol", "slow", "/slow/4000", "");
    put_url_sub_elsewhere("push-hol", "fast", "/ok/hol");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-hol", "{\"body\": \"first\"}", id), 2);
    ck_assert_int_eq(rcv_wait("/ok/hol", 1, 10000), 1);
    ck_assert_int_eq(rcv_wait("/slow/4000", 1, 10000), 1);
    double t0 = harness_now_s();
    ck_assert_int_eq(publish("push-hol", "{\"body\": \"second\"}", id), 2);
    ck_assert_int_eq(rcv_wait("/ok/hol", 2, 10000), 2);
    double took = harness_now_s() - t0;
    ck_assert_msg(took < 2.5, "the fast endpoint waited %.1f s for the slow one", took);
    ck_assert_int_eq(rcv_wait("/slow/4000", 2, 15000), 2);
}
END_TEST

/* Publishes to topic busy (subscriptions to slow_prefix's endpoint) publishes times, each a
 * delivery to each of its subscriptions: with that endpoint holding its four slots, a publish
 * to a new topic free (one URL subscription to path elsewhere) goes out at once, while the busy
 * endpoint still holds just its share. Then busy and its backlog go. */
static void assert_the_others_go_at_once(const char *busy, int publishes, int subscriptions,
                                         const char *slow_prefix, const char *free,
                                         const char *path)
{
    put_topic(free);
    put_url_sub_elsewhere(free, "fast", path);
    for (int i = 0; i < publishes; i++)
        ck_assert_int_eq(publish(busy, "{\"body\": \"backlog\"}", NULL), subscriptions);
    double until = harness_now_s() + 10;
    while (rcv_count_prefix(slow_prefix) < 4 && harness_now_s() < until)
        harness_sleep_ms(20);
    harness_sleep_ms(500); /* time for the worker to claim more, were it to */
    char id[IDS_UUID_LEN];
    double t0 = harness_now_s();
    ck_assert_int_eq(publish(free, "{\"body\": \"now\"}", id), 1);
    ck_assert_int_eq(rcv_wait(path, 1, 10000), 1);
    double took = harness_now_s() - t0;
    ck_assert_msg(took < 2.5, "the other endpoint waited %.1f s for the busy one", took);
    ck_assert_int_eq(rcv_count_prefix(slow_prefix), 4); /* its share, still being answered */
    char topic[120];
    snprintf(topic, sizeof topic, "/topics/%s", busy);
    struct response r;
    harness_admin(&srv, "DELETE", topic, NULL, &r); /* its backlog goes too */
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
}

/* A backlog to one slow endpoint takes a few of the worker's slots (its endpoint's share), not
 * all of them: a delivery to another endpoint published after it goes out at once. */
START_TEST(a_busy_endpoint_takes_only_its_share_of_the_slots)
{
    put_topic("push-busy");
    put_url_sub("push-busy", "slow", "/slow/4000", "");
    assert_the_others_go_at_once("push-busy", 20, 1, "/slow/4000", "push-free", "/ok/free");
}
END_TEST

/* An endpoint (scheme, host and port) takes its share of the slots however many subscriptions
 * it has: five subscriptions to one slow host took four slots each, all sixteen of them, and
 * a delivery to another host waited for their answers. */
START_TEST(an_endpoint_takes_its_share_whatever_its_subscriptions)
{
    put_topic("push-many");
    for (int i = 0; i < 5; i++) {
        char sub[16], path[32];
        snprintf(sub, sizeof sub, "slow-%d", i);
        snprintf(path, sizeof path, "/slow/4000/%d", i);
        put_url_sub("push-many", sub, path, "");
    }
    assert_the_others_go_at_once("push-many", 4, 5, "/slow/4000/", "push-elsewhere",
                                 "/ok/elsewhere");
}
END_TEST

/* One server spelt two ways is one endpoint: the port with leading zeros (curl reads it as a
 * number), and with the scheme's default port written out or left out (sql/058). Each spelling
 * used to be an endpoint with its own share: eight slots between two subscriptions here. */
START_TEST(an_endpoint_spelt_two_ways_takes_one_share)
{
    put_topic("push-spelt");
    put_url_sub("push-spelt", "plain", "/slow/4000/plain", "");
    char body[300];
    snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.1:0%d/slow/4000/zeros\"}", rcv.port);
    put_sub("push-spelt", "zeros", body);
    assert_the_others_go_at_once("push-spelt", 4, 2, "/slow/4000/", "push-other", "/ok/other");
    char *same = sql_text("SELECT string_agg(DISTINCT push_endpoint(u), ' ') FROM unnest(ARRAY["
                          "'http://H.example/x', 'http://h.example:80', 'http://h.example:0080?q', "
                          "'http://h.example:/#f']) AS u");
    ck_assert_str_eq(same, "http://h.example:80");
    free(same);
    char *each = sql_text(
        "SELECT string_agg(coalesce(push_endpoint(u), '-'), ' ' ORDER BY k) FROM unnest(ARRAY["
        "'https://h.example/', 'https://h.example:443', 'http://h.example:443/', "
        "'http://[::1]/', 'https://[::1]:8443/p', 'ftp://h.example/', 'http://h:80x/'"
        "]) WITH ORDINALITY AS t(u, k)");
    ck_assert_str_eq(each, "https://h.example:443 https://h.example:443 http://h.example:443 "
                           "http://[::1]:80 https://[::1]:8443 - -");
    free(each);
}
END_TEST

/* The POSTs in flight keep going while a statement of the worker waits on the database: the
 * worker used to run its statements between the transfers, so a slow database froze them (their
 * timeouts running meanwhile: an answer could arrive, be taken for a timeout and be POSTed
 * again). Here a table lock holds up the worker's next statement (a claim for its free slots,
 * or the first endpoint's write-back) while the second endpoint answers with more than the
 * sockets can buffer: the worker has to read it to let it go out. */
START_TEST(a_slow_database_does_not_stall_the_posts_in_flight)
{
    put_topic("push-stall");
    put_url_sub("push-stall", "quick", "/slow/500", "");
    put_url_sub("push-stall", "big", "/big/1500", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-stall", "{\"body\": \"b\"}", id), 2);
    ck_assert_int_eq(rcv_wait(NULL, 2, 10000), 2); /* both POSTs are out, the claim is done */
    PGconn *lock = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(lock), CONNECTION_OK);
    PGresult *r = PQexec(lock, "BEGIN; LOCK TABLE push_deliveries IN SHARE MODE");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    harness_sleep_ms(4000); /* /slow/ answers at 0.5 s, /big/ at 1.5 s */
    r = PQexec(lock, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND query LIKE '%push_deliveries%'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_msg(atoi(PQgetvalue(r, 0, 0)) >= 1, "no statement of the worker waits on the lock");
    PQclear(r);
    ck_assert_int_eq(pending(id), 2); /* nothing was written back meanwhile */
    pthread_mutex_lock(&rcv.mu);
    double big_sent_at = rcv.big_sent_at;
    pthread_mutex_unlock(&rcv.mu);
    r = PQexec(lock, "COMMIT");
    PQclear(r);
    PQfinish(lock);
    ck_assert_msg(big_sent_at > 0, "the big answer was not read while the database was locked");
    /* (read as far as push reads an answer: 64 KiB, which ends the transfer) */
    wait_no_pending(id);
    ck_assert_int_eq(rcv_count(NULL), 2); /* no attempt was taken for a failure */
    wait_metric(&srv, PUSH_METRIC("delivered"), 2);
}
END_TEST

START_TEST(deliveries_survive_a_restart)
{
    restart(no_workers);
    put_topic("push-restart");
    put_url_sub("push-restart", "hook", "/ok/restart", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("push-restart", "{\"body\": \"later\"}", id), 1);
    ck_assert_int_eq(pending(id), 1);
    harness_sleep_ms(1000);
    ck_assert_int_eq(rcv_count(NULL), 0);
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT attempts || ' ' || state FROM push_backlog WHERE message_id = '%s'", id);
    char *row = sql_text(sql);
    ck_assert_str_eq(row, "0 due");
    free(row);

    restart(NULL);
    ck_assert_int_eq(rcv_wait("/ok/restart", 1, 10000), 1);
    wait_no_pending(id);
    assert_delivery_headers(rcv_hit("/ok/restart", 0), id, "push-restart", 1);
    ck_assert_int_eq(rcv_count(NULL), 1);
}
END_TEST

START_TEST(two_servers_share_the_work_without_duplicates)
{
    enum { N = 50 };
    put_topic("push-shared");
    put_url_sub("push-shared", "hook", "/ok/shared", "");
    struct harness_server other;
    harness_start(&other, NULL);
    char ids[N][IDS_UUID_LEN];
    for (int i = 0; i < N; i++) {
        char req[64];
        snprintf(req, sizeof req, "{\"body\": \"m%d\"}", i);
        ck_assert_int_eq(publish_on(i % 2 ? &other : &srv, "push-shared", req, ids[i]), 1);
    }
    ck_assert_int_ge(rcv_wait("/ok/shared", N, 20000), N);
    wait_no_pending(NULL);
    /* both workers are done writing back: every delivery counted once, by one of them */
    double until = now_s() + 10;
    long long delivered;
    while ((delivered = metric(&srv, PUSH_METRIC("delivered")) +
                        metric(&other, PUSH_METRIC("delivered"))) != N &&
           now_s() < until)
        harness_sleep_ms(50);
    ck_assert_msg(rcv_count(NULL) == N, "%d POSTs for %d messages", rcv_count(NULL), N);
    ck_assert_int_eq(delivered, N);
    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (int k = 0; k < N; k++) {
            const struct hit *h = rcv_hit("/ok/shared", k);
            if (strcmp(h->message_id, ids[i]) == 0) {
                seen++;
                char body[16];
                snprintf(body, sizeof body, "m%d", i);
                json_t *e = json_loads(h->body, 0, NULL);
                ck_assert_str_eq(json_str(e, "MessageId"), ids[i]);
                ck_assert_str_eq(json_str(e, "Message"), body);
                ck_assert_str_eq(h->attempt, "1");
                json_decref(e);
            }
        }
        ck_assert_msg(seen == 1, "message %s was POSTed %d times", ids[i], seen);
    }
    harness_stop(&other);
}
END_TEST

/* A URL subscription with deliveries still to POST cannot become a queue's (409): with no URL
 * the push worker gave them up, and no dead-letter queue took them (a queue subscription has
 * none). Once none is pending, it can. */
START_TEST(a_url_subscription_with_pending_deliveries_keeps_its_url)
{
    harness_put_queue(&srv, "swap-q", NULL, 201);
    put_topic("swap");
    put_url_sub("swap", "s", "/status/503",
                ", \"delivery_policy\": {\"min_delay_seconds\": 60, \"max_delay_seconds\": 60}");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("swap", "{\"body\": \"x\"}", id), 1);
    struct response r;
    harness_admin(&srv, "PUT", "/topics/swap/subscriptions/s", "{\"queue\": \"swap-q\"}", &r);
    assert_problem(&r, 409);
    ck_assert_msg(strstr(buf_str(&r.body), "1 deliveries still to POST"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(pending(id), 1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM subscriptions WHERE name = 's' AND url IS NOT "
                             "NULL AND queue_id IS NULL"),
                     1);
    sql_int("WITH d AS (DELETE FROM push_deliveries RETURNING 1) SELECT count(*) FROM d");
    harness_admin(&srv, "PUT", "/topics/swap/subscriptions/s", "{\"queue\": \"swap-q\"}", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

/* A delivery inserted for a URL subscription that then became a queue's (a publish from a
 * process whose cache still had the URL, which the 409 above cannot see) goes into the queue,
 * in the form it was published in: it used to be given up without a POST, and no dead-letter
 * queue took it. */
START_TEST(a_delivery_whose_subscription_became_a_queues_goes_into_the_queue)
{
    restart(no_workers); /* the delivery waits for the change */
    harness_put_queue(&srv, "became-q", NULL, 201);
    put_topic("became");
    put_url_sub("became", "s", "/ok", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("became", "{\"body\": \"late\"}", id), 1);
    ck_assert_int_eq(pending(id), 1);
    /* the change committing after the publish chose the URL, as PUT {"queue"} makes it */
    ck_assert_int_eq(sql_int("WITH u AS (UPDATE subscriptions SET url = NULL, queue_id = (SELECT "
                             "id FROM queues WHERE name = 'became-q') WHERE name = 's' AND "
                             "topic_id = (SELECT id FROM topics WHERE name = 'became') "
                             "RETURNING 1) SELECT count(*) FROM u"),
                     1);
    restart(NULL);
    wait_no_pending(id);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name = 'became-q' AND m.message_id = '%s'",
             id);
    ck_assert_int_eq(sql_int(sql), 1);
    struct response r;
    harness_admin(&srv, "POST", "/queues/became-q/messages:receive", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *m = json_array_get(json_object_get(r.json, "messages"), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(json_str(m, "message_id"), id);
    json_t *body = json_object_get(m, "body"); /* enveloped, as the URL had it */
    json_t *env =
        json_is_string(body) ? json_loads(json_string_value(body), 0, NULL) : json_incref(body);
    ck_assert_msg(json_is_object(env), "not an envelope: %s", buf_str(&r.body));
    ck_assert_str_eq(json_str(env, "MessageId"), id);
    ck_assert_str_eq(json_str(env, "Message"), "late");
    json_decref(env);
    response_cleanup(&r);
    ck_assert_int_eq(rcv_count("/ok"), 0);
    wait_metric(&srv, PUSH_METRIC("queued"), 1);
}
END_TEST

START_TEST(subscription_list_shows_url_and_queue_subscriptions)
{
    harness_put_queue(&srv, "pl-q", NULL, 201);
    harness_put_queue(&srv, "pl-dlq", NULL, 201);
    put_topic("push-list");
    put_sub("push-list", "a-queue", "{\"queue\": \"pl-q\"}");
    put_url_sub("push-list", "b-url", "/ok/list",
                ", \"dead_letter_queue\": \"pl-dlq\", \"delivery_policy\": {\"max_attempts\": 3, "
                "\"min_delay_seconds\": 2, \"max_delay_seconds\": 30}");
    put_url_sub("push-list", "c-defaults", "/ok/defaults", "");
    struct response r;
    harness_admin(&srv, "GET", "/topics/push-list/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *subs = json_object_get(r.json, "subscriptions");
    ck_assert_int_eq(json_array_size(subs), 3);

    json_t *q = json_array_get(subs, 0);
    ck_assert_str_eq(json_str(q, "name"), "a-queue");
    ck_assert_str_eq(json_str(q, "queue"), "pl-q");
    ck_assert_ptr_null(json_object_get(q, "url"));
    ck_assert_ptr_null(json_object_get(q, "dead_letter_queue"));
    ck_assert_ptr_null(json_object_get(q, "delivery_policy"));

    char url[200];
    json_t *u = json_array_get(subs, 1);
    ck_assert_str_eq(json_str(u, "name"), "b-url");
    rcv_url("/ok/list", url, sizeof url);
    ck_assert_str_eq(json_str(u, "url"), url);
    ck_assert_ptr_null(json_object_get(u, "queue"));
    ck_assert_str_eq(json_str(u, "dead_letter_queue"), "pl-dlq");
    json_t *want = json_pack("{s:i, s:i, s:i}", "max_attempts", 3, "min_delay_seconds", 2,
                             "max_delay_seconds", 30);
    ck_assert_msg(json_equal(json_object_get(u, "delivery_policy"), want), "delivery_policy: %s",
                  buf_str(&r.body));
    json_decref(want);

    json_t *d = json_array_get(subs, 2);
    ck_assert_str_eq(json_str(d, "name"), "c-defaults");
    rcv_url("/ok/defaults", url, sizeof url);
    ck_assert_str_eq(json_str(d, "url"), url);
    ck_assert(json_is_null(json_object_get(d, "dead_letter_queue")));
    want = json_pack("{s:i, s:i, s:i}", "max_attempts", 10, "min_delay_seconds", 1,
                     "max_delay_seconds", 60);
    ck_assert_msg(json_equal(json_object_get(d, "delivery_policy"), want), "delivery_policy: %s",
                  buf_str(&r.body));
    json_decref(want);
    response_cleanup(&r);

    /* deleting the dead-letter queue leaves the subscription without one */
    harness_admin(&srv, "DELETE", "/queues/pl-dlq", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/topics/push-list/subscriptions", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    u = json_array_get(json_object_get(r.json, "subscriptions"), 1);
    ck_assert_str_eq(json_str(u, "name"), "b-url");
    ck_assert_msg(json_is_null(json_object_get(u, "dead_letter_queue")), "%s", buf_str(&r.body));
    response_cleanup(&r);
}
END_TEST

/* A worker whose lease ran out (another claim counted the next attempt) gives up on its own
 * attempt too late: that changes nothing (sql/021). The claim that holds the delivery gives it
 * up: kept as failed. */
START_TEST(a_give_up_after_the_lease_changes_nothing)
{
    restart(no_workers);
    put_topic("late-push");
    put_url_sub("late-push", "hook", "/late", "");
    char id[IDS_UUID_LEN];
    ck_assert_int_eq(publish("late-push", "{\"body\": \"x\"}", id), 1);
    /* worker A claims (attempt 1); its lease runs out; worker B claims (attempt 2) */
    free(harness_sql(harness_db_url(), "UPDATE push_deliveries SET attempts = 2"));
    ck_assert_int_eq(sql_int("SELECT count(*) FROM push_deliveries "
                             "WHERE mq_push_exhausted(id, 1, 'late') IS NULL"),
                     1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM push_deliveries WHERE attempts = 2 AND "
                             "last_error IS NULL AND next_attempt_at < 'infinity'"),
                     1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM push_deliveries "
                             "WHERE mq_push_exhausted(id, 2, 'gave up') = false"),
                     1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM push_deliveries WHERE "
                             "last_error = 'gave up' AND next_attempt_at = 'infinity'"),
                     1);
}
END_TEST

/* A delivery whose give-up did not complete (here: its attempts already one past max_attempts,
 * as after a last attempt whose give-up failed) is given up by the next claim without a POST:
 * it used to be POSTed once more after every lease, for ever. (Claimed once past its last
 * attempt, it is POSTed: that attempt's process may have died mid-POST.) */
START_TEST(a_delivery_out_of_attempts_is_given_up_without_a_post)
{
    restart(no_workers);
    put_topic("spent-push");
    put_url_sub("spent-push", "hook", "/spent",
                ", \"delivery_policy\": {\"max_attempts\": 2, \"min_delay_seconds\": 1, "
                "\"max_delay_seconds\": 1}");
    char id[IDS_UUID_LEN], again[IDS_UUID_LEN];
    ck_assert_int_eq(publish("spent-push", "{\"body\": \"x\"}", id), 1);
    free(harness_sql(harness_db_url(), "UPDATE push_deliveries SET attempts = 3"));
    ck_assert_int_eq(publish("spent-push", "{\"body\": \"y\"}", again), 1);
    free(harness_sql(harness_db_url(),
                     "UPDATE push_deliveries SET attempts = 2 WHERE attempts = 0"));
    restart(NULL);
    wait_failed(id);
    wait_no_pending(again); /* its last attempt's process died: POSTed once more */
    ck_assert_int_eq(rcv_count("/spent"), 1);
    ck_assert_str_eq(rcv_hit("/spent", 0)->message_id, again);
    char *error = last_error(id);
    ck_assert_msg(error && strstr(error, "all attempts were made"), "%s", error ? error : "null");
    free(error);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("push");
    TCase *tc = tcase_create("push");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, envelope_delivery_carries_every_header_and_field);
    tcase_add_test(tc, raw_delivery_posts_the_bare_body);
    tcase_add_test(tc, filter_policies_decide_which_urls_get_a_delivery);
    tcase_add_test(tc, retries_until_a_2xx);
    tcase_add_test(tc, exhausted_deliveries_go_to_the_dead_letter_queue);
    tcase_add_test(tc, failed_without_dead_letter_queue_stays_failed);
    tcase_add_test(tc, any_2xx_is_a_delivery_and_a_4xx_a_failure);
    tcase_add_test(tc, a_2xx_cut_short_is_a_delivery);
    tcase_add_test(tc, an_endless_answer_is_not_read_to_the_end);
    tcase_add_test(tc, a_busy_endpoint_takes_only_its_share_of_the_slots);
    tcase_add_test(tc, an_endpoint_takes_its_share_whatever_its_subscriptions);
    tcase_add_test(tc, a_slow_database_does_not_stall_the_posts_in_flight);
    tcase_add_test(tc, backoff_doubles_per_attempt);
    tcase_add_test(tc, redirects_are_not_followed);
    tcase_add_test(tc, connection_refused_is_a_failure_and_retried);
    tcase_add_test(tc, an_attempt_in_flight_at_shutdown_is_not_counted);
    tcase_add_test(tc, a_slow_endpoint_does_not_hold_up_the_others);
    tcase_add_test(tc, an_endpoint_spelt_two_ways_takes_one_share);
    tcase_add_test(tc, deliveries_survive_a_restart);
    tcase_add_test(tc, two_servers_share_the_work_without_duplicates);
    tcase_add_test(tc, subscription_list_shows_url_and_queue_subscriptions);
    tcase_add_test(tc, a_url_subscription_with_pending_deliveries_keeps_its_url);
    tcase_add_test(tc, a_delivery_whose_subscription_became_a_queues_goes_into_the_queue);
    tcase_add_test(tc, a_give_up_after_the_lease_changes_nothing);
    tcase_add_test(tc, a_delivery_out_of_attempts_is_given_up_without_a_post);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
