/* loadgen: a small HTTP load client for ./dev bench. N threads, each with one keep-alive libcurl
 * handle, drive the gateway for a fixed time and report operations per second and latency
 * percentiles on one line of JSON.
 *
 *   loadgen BASE_URL TOKEN NAME send|sendattr|publish|ride|prebook|rfq|cycle|cycle10 CONNECTIONS
 * SECONDS
 *
 * send: POST /queues/NAME/messages. sendattr: the same with the three message attributes a
 * publish carries. publish: POST /topics/NAME/messages with those attributes. ride: POST /rides
 * (a completed ride; NAME is ignored). prebook: POST /prebookings (a customer of its own each
 * time). rfq: POST /rfqs. LOADGEN_MAX_OPS=N stops after N operations. cycle: send,
 * receive one, delete it (one message's life). cycle10: send a batch of 10, receive up to 10,
 * delete them with one batch delete; counted in messages. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SAMPLES 2000000

struct shared {
    const char *base, *token, *queue, *mode;
    double seconds;
    long max_ops;         /* LOADGEN_MAX_OPS: stop after this many operations (0: no limit) */
    _Atomic long started; /* operations begun, against max_ops */
    pthread_mutex_t mu;
    double *lat; /* seconds per operation */
    long nlat;
    long ops, errors;
};

struct conn {
    struct shared *sh;
    CURL *curl;
    struct curl_slist *headers;
    char *resp;
    size_t len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    struct conn *c = ud;
    c->resp = realloc(c->resp, c->len + size * n + 1);
    memcpy(c->resp + c->len, p, size * n);
    c->len += size * n;
    c->resp[c->len] = '\0';
    return size * n;
}

/* Performs one request; returns the HTTP status (0 on transport error). */
static long request(struct conn *c, const char *method, const char *path, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", c->sh->base, path);
    c->len = 0;
    if (c->resp)
        c->resp[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    if (curl_easy_perform(c->curl) != CURLE_OK)
        return 0;
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static const char ride[] = "{\"from\":\"Berlin\",\"to\":\"Frankfurt\",\"fare\":256.5}";

static const char ride_attributes[] = "{\"fare\":{\"type\":\"Number\",\"value\":\"256.5\"},"
                                      "\"city\":{\"type\":\"String\",\"value\":\"Berlin\"},"
                                      "\"unicorn\":{\"type\":\"String\",\"value\":\"uni-17\"}}";

/* POSTs one ride to collection/NAME/messages, with the attributes when attrs. */
static int post_ride(struct conn *c, char *path, const char *collection, bool attrs)
{
    snprintf(path, 256, "/%s/%s/messages", collection, c->sh->queue);
    char body[512];
    snprintf(body, sizeof body, "{\"body\":%s%s%s}", ride, attrs ? ",\"attributes\":" : "",
             attrs ? ride_attributes : "");
    return request(c, "POST", path, body) == 201 ? 1 : -1;
}

static int op_send(struct conn *c, char *path)
{
    return post_ride(c, path, "queues", false);
}

static int op_sendattr(struct conn *c, char *path)
{
    return post_ride(c, path, "queues", true);
}

static int op_publish(struct conn *c, char *path)
{
    return post_ride(c, path, "topics", true);
}

/* A prebooking for tomorrow; each one a customer of its own, so none is refused. */
static int op_prebook(struct conn *c, char *path)
{
    static _Atomic long seq;
    char body[512], when[32];
    time_t t = time(NULL) + 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof body,
             "{\"from\":\"Berlin\",\"to\":\"Hamburg\",\"customer\":\"campaign-%ld\","
             "\"when\":\"%s\"}",
             atomic_fetch_add(&seq, 1), when);
    snprintf(path, 256, "/prebookings");
    return request(c, "POST", path, body) == 202 ? 1 : -1;
}

static int op_rfq(struct conn *c, char *path)
{
    snprintf(path, 256, "/rfqs");
    return request(c, "POST", path,
                   "{\"from\":\"Berlin\",\"to\":\"Hamburg\",\"customer\":\"cust-42\","
                   "\"timeout_in_secs\":30}") == 202
               ? 1
               : -1;
}

static int op_ride(struct conn *c, char *path)
{
    snprintf(path, 256, "/rides");
    return request(c, "POST", path,
                   "{\"from\":\"Berlin\",\"to\":\"Frankfurt\",\"customer\":\"cust-42\","
                   "\"duration\":1800,\"distance\":55.5,\"fare\":61.5,"
                   "\"unicorn\":\"shadowfax\"}") == 201
               ? 1
               : -1;
}

/* Receives up to max and deletes what came; returns the number of messages or -1. */
static int receive_delete(struct conn *c, char *path, int max)
{
    char body[256];
    snprintf(path, 256, "/queues/%s/messages:receive", c->sh->queue);
    snprintf(body, sizeof body, "{\"max_messages\":%d}", max);
    if (request(c, "POST", path, body) != 200)
        return -1;
    json_t *r = json_loads(c->resp, 0, NULL);
    json_t *msgs = json_object_get(r, "messages");
    int n = (int)json_array_size(msgs);
    json_t *receipts = json_array();
    for (int i = 0; i < n; i++)
        json_array_append(receipts, json_object_get(json_array_get(msgs, (size_t)i), "receipt"));
    json_decref(r);
    int ok = n;
    if (n == 1) {
        snprintf(path, 256, "/queues/%s/messages/%s", c->sh->queue,
                 json_string_value(json_array_get(receipts, 0)));
        ok = request(c, "DELETE", path, NULL) == 204 ? 1 : -1;
    } else if (n > 1) {
        json_t *req = json_pack("{s:O}", "receipts", receipts);
        char *text = json_dumps(req, JSON_COMPACT);
        snprintf(path, 256, "/queues/%s/messages:delete", c->sh->queue);
        ok = request(c, "POST", path, text) == 200 ? n : -1;
        free(text);
        json_decref(req);
    }
    json_decref(receipts);
    return ok;
}

static int op_cycle(struct conn *c, char *path)
{
    if (op_send(c, path) < 0)
        return -1;
    return receive_delete(c, path, 1);
}

static int op_cycle10(struct conn *c, char *path)
{
    char body[2048] = "{\"entries\":[";
    for (int i = 0; i < 10; i++) {
        size_t n = strlen(body);
        snprintf(body + n, sizeof body - n, "%s{\"id\":\"e%d\",\"body\":%s}", i ? "," : "", i,
                 ride);
    }
    strcat(body, "]}");
    snprintf(path, 256, "/queues/%s/messages:batch", c->sh->queue);
    if (request(c, "POST", path, body) != 200)
        return -1;
    return receive_delete(c, path, 10);
}

static void record(struct shared *sh, double lat, int n)
{
    pthread_mutex_lock(&sh->mu);
    if (n < 0) {
        sh->errors++;
    } else {
        sh->ops += n;
        if (sh->nlat < MAX_SAMPLES)
            sh->lat[sh->nlat++] = lat;
    }
    pthread_mutex_unlock(&sh->mu);
}

static void *worker(void *arg)
{
    struct shared *sh = arg;
    struct conn c = {.sh = sh, .curl = curl_easy_init()};
    char auth[600], path[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", sh->token);
    c.headers = curl_slist_append(NULL, auth);
    c.headers = curl_slist_append(c.headers, "Content-Type: application/json");
    c.headers = curl_slist_append(c.headers, "Expect:");
    curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, c.headers);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_TCP_NODELAY, 1L);
    int (*op)(struct conn *, char *) = strcmp(sh->mode, "send") == 0       ? op_send
                                       : strcmp(sh->mode, "sendattr") == 0 ? op_sendattr
                                       : strcmp(sh->mode, "publish") == 0  ? op_publish
                                       : strcmp(sh->mode, "ride") == 0     ? op_ride
                                       : strcmp(sh->mode, "prebook") == 0  ? op_prebook
                                       : strcmp(sh->mode, "rfq") == 0      ? op_rfq
                                       : strcmp(sh->mode, "cycle") == 0    ? op_cycle
                                                                           : op_cycle10;
    double end = now() + sh->seconds;
    while (now() < end && (!sh->max_ops || atomic_fetch_add(&sh->started, 1) < sh->max_ops)) {
        double t0 = now();
        int n = op(&c, path);
        record(sh, now() - t0, n);
    }
    curl_slist_free_all(c.headers);
    curl_easy_cleanup(c.curl);
    free(c.resp);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: loadgen BASE_URL TOKEN NAME "
                        "send|sendattr|publish|ride|prebook|rfq|cycle|cycle10 "
                        "CONNS SECONDS\n");
        return 2;
    }
    struct shared sh = {.base = argv[1],
                        .token = argv[2],
                        .queue = argv[3],
                        .mode = argv[4],
                        .seconds = atof(argv[6]),
                        .max_ops = getenv("LOADGEN_MAX_OPS") ? atol(getenv("LOADGEN_MAX_OPS")) : 0};
    int conns = atoi(argv[5]);
    pthread_mutex_init(&sh.mu, NULL);
    sh.lat = malloc(sizeof(double) * MAX_SAMPLES);
    curl_global_init(CURL_GLOBAL_ALL);
    pthread_t *t = calloc((size_t)conns, sizeof *t);
    double t0 = now();
    for (int i = 0; i < conns; i++)
        pthread_create(&t[i], NULL, worker, &sh);
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    double elapsed = now() - t0;
    qsort(sh.lat, (size_t)sh.nlat, sizeof(double), cmp);
    double p50 = sh.nlat ? sh.lat[sh.nlat / 2] : 0, p99 = sh.nlat ? sh.lat[sh.nlat * 99 / 100] : 0;
    printf("{\"mode\":\"%s\",\"connections\":%d,\"seconds\":%.1f,\"ops\":%ld,\"errors\":%ld,"
           "\"per_second\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
           sh.mode, conns, elapsed, sh.ops, sh.errors, (double)sh.ops / elapsed, p50 * 1e3,
           p99 * 1e3);
    free(t);
    free(sh.lat);
    curl_global_cleanup();
    return sh.errors && !sh.ops ? 1 : 0;
}
