/* loadgen: a small HTTP load client for ./dev bench. N keep-alive HTTP/1.1 connections drive
 * the gateway for a fixed time and report operations per second and latency percentiles on one
 * line of JSON. Like pgbench -j 2 (the baselines' client), two threads (LOADGEN_THREADS) share
 * the connections: each connection runs its operations as a coroutine (ucontext) that yields to
 * its thread's poll(2) loop whenever its socket would block, so a thread answers whatever
 * responses have arrived in one wake-up instead of one thread switch per response. No libcurl:
 * the client must cost the measured machine little. It owns its minimal HTTP client: request
 * framing, status line and headers, Content-Length and chunked bodies, reconnects.
 *
 *   loadgen BASE_URL TOKEN NAME send|sendattr|publish|ride|prebook|rfq|cycle|cycle10 CONNECTIONS
 * SECONDS
 *
 * BASE_URL is http://HOST[:PORT] (plain http only). send: POST /queues/NAME/messages. sendattr:
 * the same with the three message attributes a publish carries. publish: POST
 * /topics/NAME/messages with those attributes. ride: POST /rides (a completed ride; NAME is
 * ignored). prebook: POST /prebookings (a customer of its own each time). rfq: POST /rfqs.
 * LOADGEN_MAX_OPS=N stops after N operations. cycle: send, receive one, delete it (one
 * message's life). cycle10: send a batch of 10, receive up to 10, delete them with one batch
 * delete; counted in messages. A closed loop: each connection waits for its answer before the
 * next request, so a stall shows as one slow sample per connection (no coordinated-omission
 * correction). Latencies include failed operations; "errors" counts them. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_SAMPLES 2000000
#define MAX_LINE    65536 /* longest status, header or chunk-size line accepted */

struct shared {
    const char *queue, *mode;
    struct addrinfo *addr; /* the gateway, resolved once */
    char *prefix;          /* "Host: ...\r\nAuthorization: Bearer ...\r\n" */
    double seconds;
    long max_ops;         /* LOADGEN_MAX_OPS: stop after this many operations (0: no limit) */
    _Atomic long started; /* operations begun, against max_ops */
    pthread_mutex_t mu;
    double *lat; /* seconds per operation */
    long nlat;
    long ops, errors;
};

/* A growing byte buffer, kept NUL-terminated. */
struct buf {
    char *p;
    size_t len, cap;
};

struct coro;

struct conn {
    struct shared *sh;
    struct coro *co; /* the coroutine this connection runs in */
    int fd;          /* -1: not connected; non-blocking */
    bool got_any;    /* a byte of the current response has arrived */
    struct buf out;  /* the request being sent */
    struct buf in;   /* bytes read from the socket, consumed from in_pos */
    size_t in_pos;
    struct buf resp; /* the body of the last response */
};

/* What the status line and headers of a response say. */
struct head {
    long status;
    long long length; /* Content-Length, -1 when absent */
    bool chunked, close;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) {
        fputs("loadgen: out of memory\n", stderr);
        exit(1);
    }
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* ---- connection ---- */

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->in.len = c->in_pos = 0;
}

/* ---- coroutines: one per connection, a poll(2) loop per thread ---- */

#define CORO_STACK      (256 * 1024)
#define LOADGEN_GRACE_S 10 /* how long past its run a connection may wait for an answer */

struct coro {
    ucontext_t ctx, *loop;
    char *stack;
    struct conn c;
    short events; /* what it waits for on c.fd; 0: ready to run */
    bool done;
};

/* Gives the thread back to its loop until fd is ready for events. */
static void wait_for(struct conn *c, int fd, short events)
{
    c->co->events = events;
    c->fd = fd;
    swapcontext(&c->co->ctx, c->co->loop);
}

static int connect_one(struct conn *c, const struct addrinfo *a)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1, err = 0;
    socklen_t len = sizeof err;
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
        wait_for(c, fd, POLLOUT);
        c->fd = -1;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            close(fd);
            return -1;
        }
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool conn_open(struct conn *c)
{
    for (const struct addrinfo *a = c->sh->addr; a && c->fd < 0; a = a->ai_next)
        c->fd = connect_one(c, a);
    return c->fd >= 0;
}

static bool send_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_for(c, c->fd, POLLOUT);
            continue;
        }
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads more bytes into c->in; false on end of stream or error. */
static bool fill(struct conn *c)
{
    if (c->in_pos > 0) {
        memmove(c->in.p, c->in.p + c->in_pos, c->in.len - c->in_pos);
        c->in.len -= c->in_pos;
        c->in_pos = 0;
    }
    buf_reserve(&c->in, 16384);
    ssize_t r;
    for (;;) {
        r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            wait_for(c, c->fd, POLLIN);
        else if (!(r < 0 && errno == EINTR))
            break;
    }
    if (r <= 0)
        return false;
    c->in.len += (size_t)r;
    c->got_any = true;
    return true;
}

/* ---- response ---- */

/* The next line of the response without its CRLF, valid until the next read; NULL on error. */
static char *line(struct conn *c)
{
    for (;;) {
        char *start = c->in.p + c->in_pos;
        char *nl = c->in.len > c->in_pos ? memchr(start, '\n', c->in.len - c->in_pos) : NULL;
        if (nl) {
            *nl = '\0';
            if (nl > start && nl[-1] == '\r')
                nl[-1] = '\0';
            c->in_pos = (size_t)(nl - c->in.p) + 1;
            return start;
        }
        if (c->in.len - c->in_pos > MAX_LINE || !fill(c))
            return NULL;
    }
}

/* Moves n bytes of body into c->resp. */
static bool take(struct conn *c, size_t n)
{
    while (n > 0) {
        if (c->in_pos == c->in.len && !fill(c))
            return false;
        size_t k = c->in.len - c->in_pos < n ? c->in.len - c->in_pos : n;
        buf_add(&c->resp, c->in.p + c->in_pos, k);
        c->in_pos += k;
        n -= k;
    }
    return true;
}

static bool named(const char *l, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(l, name, n) == 0;
}

static void header(struct head *h, const char *l)
{
    const char *colon = strchr(l, ':');
    if (!colon)
        return;
    size_t n = (size_t)(colon - l);
    const char *v = colon + 1;
    if (named(l, n, "content-length"))
        h->length = strtoll(v, NULL, 10);
    else if (named(l, n, "transfer-encoding"))
        h->chunked = strcasestr(v, "chunked") != NULL;
    else if (named(l, n, "connection") && strcasestr(v, "close"))
        h->close = true;
    else if (named(l, n, "connection") && strcasestr(v, "keep-alive"))
        h->close = false;
}

static bool read_head(struct conn *c, struct head *h)
{
    char *l = line(c), *end;
    if (!l || strncmp(l, "HTTP/1.", 7) != 0 || !l[7] || l[8] != ' ')
        return false;
    *h = (struct head){.status = strtol(l + 9, &end, 10), .length = -1, .close = l[7] == '0'};
    if (end == l + 9)
        return false;
    while ((l = line(c)) && *l)
        header(h, l);
    return l != NULL;
}

static bool read_chunked(struct conn *c)
{
    for (;;) {
        char *l = line(c), *end;
        if (!l)
            return false;
        unsigned long long n = strtoull(l, &end, 16);
        if (end == l)
            return false;
        if (n == 0)
            break;
        if (!take(c, (size_t)n) || !(l = line(c)) || *l)
            return false;
    }
    char *l;
    while ((l = line(c)) && *l) /* trailers */
        ;
    return l != NULL;
}

static bool read_body(struct conn *c, struct head *h)
{
    if (h->status / 100 == 1 || h->status == 204 || h->status == 304)
        return true;
    if (h->chunked)
        return read_chunked(c);
    if (h->length >= 0)
        return take(c, (size_t)h->length);
    h->close = true; /* no length: the body runs to the end of the stream */
    do
        take(c, c->in.len - c->in_pos);
    while (fill(c));
    return true;
}

/* Reads one final response into c->resp; returns its status, 0 on error. */
static long read_response(struct conn *c, bool *close_after)
{
    struct head h;
    do {
        c->resp.len = 0;
        buf_reserve(&c->resp, 0);
        c->resp.p[0] = '\0';
        if (!read_head(c, &h) || !read_body(c, &h))
            return 0;
    } while (h.status / 100 == 1);
    *close_after = h.close;
    return h.status;
}

/* ---- request ---- */

static void build(struct conn *c, const char *method, const char *path, const char *body)
{
    struct buf *b = &c->out;
    b->len = 0;
    buf_str(b, method);
    buf_str(b, " ");
    buf_str(b, path);
    buf_str(b, " HTTP/1.1\r\n");
    buf_str(b, c->sh->prefix);
    if (body) {
        char len[80];
        size_t n = strlen(body);
        snprintf(len, sizeof len, "Content-Type: application/json\r\nContent-Length: %zu\r\n", n);
        buf_str(b, len);
        buf_str(b, "\r\n");
        buf_add(b, body, n);
    } else {
        buf_str(b, "\r\n");
    }
}

/* Sends c->out and reads the response; 0 on transport error. */
static long exchange(struct conn *c)
{
    bool close_after = false;
    c->got_any = false;
    long status = 0;
    if (send_all(c, c->out.p, c->out.len))
        status = read_response(c, &close_after);
    if (!status || close_after)
        conn_close(c);
    return status;
}

/* Performs one request; returns the HTTP status (0 on transport error). A kept-alive
 * connection the server closed before answering is reopened and the request sent again. */
static long request(struct conn *c, const char *method, const char *path, const char *body)
{
    build(c, method, path, body);
    bool reused = c->fd >= 0;
    if (!reused && !conn_open(c))
        return 0;
    long status = exchange(c);
    if (!status && reused && !c->got_any && conn_open(c))
        status = exchange(c);
    return status;
}

/* ---- operations ---- */

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

/* Whether the batch answer in c->resp says every entry succeeded. */
static bool batch_whole(const struct conn *c)
{
    json_t *r = json_loadb(c->resp.p, c->resp.len, 0, NULL);
    bool whole = json_array_size(json_object_get(r, "failed")) == 0 &&
                 json_is_array(json_object_get(r, "successful"));
    json_decref(r);
    return whole;
}

/* Deletes the messages of these receipts (one DELETE, or a batch delete for several); returns
 * their number or -1. */
static int delete_receipts(struct conn *c, char *path, json_t *receipts)
{
    int n = (int)json_array_size(receipts);
    if (n == 1) {
        snprintf(path, 256, "/queues/%s/messages/%s", c->sh->queue,
                 json_string_value(json_array_get(receipts, 0)));
        return request(c, "DELETE", path, NULL) == 204 ? 1 : -1;
    }
    if (n == 0)
        return 0;
    json_t *req = json_pack("{s:O}", "receipts", receipts);
    char *text = json_dumps(req, JSON_COMPACT);
    snprintf(path, 256, "/queues/%s/messages:delete", c->sh->queue);
    int ok = request(c, "POST", path, text) == 200 && batch_whole(c) ? n : -1;
    free(text);
    json_decref(req);
    return ok;
}

/* Receives up to max and deletes what came; returns the number of messages or -1. */
static int receive_delete(struct conn *c, char *path, int max)
{
    char body[256];
    snprintf(path, 256, "/queues/%s/messages:receive", c->sh->queue);
    snprintf(body, sizeof body, "{\"max_messages\":%d}", max);
    if (request(c, "POST", path, body) != 200)
        return -1;
    json_t *r = json_loadb(c->resp.p, c->resp.len, 0, NULL);
    json_t *msgs = json_object_get(r, "messages");
    json_t *receipts = json_array();
    bool whole = json_is_array(msgs);
    for (size_t i = 0; whole && i < json_array_size(msgs); i++) {
        json_t *receipt = json_object_get(json_array_get(msgs, i), "receipt");
        whole = json_is_string(receipt);
        json_array_append(receipts, receipt);
    }
    json_decref(r);
    /* a 200 without its messages, or one without a receipt, is a failure, not an empty queue */
    int ok = whole ? delete_receipts(c, path, receipts) : -1;
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
    if (request(c, "POST", path, body) != 200 || !batch_whole(c))
        return -1;
    return receive_delete(c, path, 10);
}

/* ---- driver ---- */

/* Counts an operation (n done, or n < 0 failed) that took lat seconds. Failed ones count
 * among the latencies too: a slow failure (a 503 after a pool timeout, a hang) is what p99 is
 * for. */
static void record(struct shared *sh, double lat, int n)
{
    pthread_mutex_lock(&sh->mu);
    if (n < 0)
        sh->errors++;
    else
        sh->ops += n;
    if (sh->nlat < MAX_SAMPLES)
        sh->lat[sh->nlat++] = lat;
    pthread_mutex_unlock(&sh->mu);
}

typedef int (*op_fn)(struct conn *, char *);

static op_fn pick(const char *mode)
{
    return strcmp(mode, "send") == 0       ? op_send
           : strcmp(mode, "sendattr") == 0 ? op_sendattr
           : strcmp(mode, "publish") == 0  ? op_publish
           : strcmp(mode, "ride") == 0     ? op_ride
           : strcmp(mode, "prebook") == 0  ? op_prebook
           : strcmp(mode, "rfq") == 0      ? op_rfq
           : strcmp(mode, "cycle") == 0    ? op_cycle
           : strcmp(mode, "cycle10") == 0  ? op_cycle10
                                           : NULL;
}

/* The body of a connection's coroutine: operations until the time is up. */
static __thread struct coro *starting;

static void coro_main(void)
{
    struct coro *co = starting;
    struct conn *c = &co->c;
    struct shared *sh = c->sh;
    char path[256];
    op_fn op = pick(sh->mode);
    double end = now() + sh->seconds;
    while (now() < end && (!sh->max_ops || atomic_fetch_add(&sh->started, 1) < sh->max_ops)) {
        double t0 = now();
        int n = op(c, path);
        record(sh, now() - t0, n);
    }
    conn_close(c);
    co->done = true;
    co->events = 0;
} /* returns to co->loop (uc_link) */

struct thread_arg {
    struct shared *sh;
    int conns;
};

/* Runs every ready coroutine, then waits in poll(2) for the sockets the others wait on. */
static void *worker(void *arg)
{
    struct thread_arg *ta = arg;
    ucontext_t loop;
    struct coro *co = calloc((size_t)ta->conns, sizeof *co);
    struct pollfd *pfd = calloc((size_t)ta->conns, sizeof *pfd);
    int *who = calloc((size_t)ta->conns, sizeof *who);
    for (int i = 0; i < ta->conns; i++) {
        co[i].c = (struct conn){.sh = ta->sh, .co = &co[i], .fd = -1};
        co[i].stack = malloc(CORO_STACK);
        co[i].loop = &loop;
        getcontext(&co[i].ctx);
        co[i].ctx.uc_stack = (stack_t){.ss_sp = co[i].stack, .ss_size = CORO_STACK};
        co[i].ctx.uc_link = &loop;
        makecontext(&co[i].ctx, coro_main, 0);
    }
    /* a gateway that never answers a request must not hang the bench: past the run and a grace
     * period, what is still waiting counts as an error and its connection is closed */
    double hard_end = now() + ta->sh->seconds + LOADGEN_GRACE_S;
    for (int alive = ta->conns; alive > 0;) {
        if (now() > hard_end) {
            for (int i = 0; i < ta->conns; i++)
                if (!co[i].done) {
                    conn_close(&co[i].c);
                    record(ta->sh, LOADGEN_GRACE_S, -1); /* waited at least that long */
                    co[i].done = true;
                }
            break;
        }
        int n = 0;
        for (int i = 0; i < ta->conns; i++) {
            if (!co[i].done && !co[i].events) {
                starting = &co[i];
                swapcontext(&loop, &co[i].ctx);
                alive -= co[i].done;
            }
            if (!co[i].done && co[i].events) {
                pfd[n] = (struct pollfd){.fd = co[i].c.fd, .events = co[i].events};
                who[n++] = i;
            }
        }
        if (n && poll(pfd, (nfds_t)n, 1000) > 0)
            for (int k = 0; k < n; k++)
                if (pfd[k].revents)
                    co[who[k]].events = 0;
    }
    for (int i = 0; i < ta->conns; i++) {
        free(co[i].stack);
        free(co[i].c.out.p);
        free(co[i].c.in.p);
        free(co[i].c.resp.p);
    }
    free(co);
    free(pfd);
    free(who);
    return NULL;
}

/* Splits http://HOST[:PORT][/] into the authority (for Host:), the host (without the brackets
 * of an IPv6 literal) and the port; false with a message on stderr when it is not such a URL. */
static bool split_url(const char *base, char *authority, char *host, char *port)
{
    if (strncmp(base, "http://", 7) != 0) {
        fprintf(stderr, "loadgen: BASE_URL must be http://HOST[:PORT] (plain http only): %s\n",
                base);
        return false;
    }
    size_t n = strcspn(base + 7, "/");
    snprintf(authority, 256, "%.*s", (int)n, base + 7);
    snprintf(host, 256, "%s", authority);
    char *colon = strrchr(host, ':'), *bracket = strrchr(host, ']');
    if (colon && bracket > colon)
        colon = NULL; /* that colon is inside [an IPv6 literal] */
    snprintf(port, 8, "%s", colon ? colon + 1 : "80");
    if (colon)
        *colon = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        memmove(host, host + 1, strlen(host));
    }
    const char *rest = base + 7 + n;
    if (n == 0 || n >= 256 || !*host || !*port || port[strspn(port, "0123456789")] ||
        (*rest && strcmp(rest, "/") != 0)) {
        fprintf(stderr, "loadgen: bad BASE_URL (want http://HOST[:PORT]): %s\n", base);
        return false;
    }
    return true;
}

static struct addrinfo *resolve(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

/* The headers every request carries. */
static char *make_prefix(const char *authority, const char *token)
{
    size_t n = strlen(authority) + strlen(token) + 64;
    char *p = malloc(n);
    snprintf(p, n, "Host: %s\r\nAuthorization: Bearer %s\r\n", authority, token);
    return p;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run(struct shared *sh, int conns)
{
    const char *env = getenv("LOADGEN_THREADS");
    int threads = env ? atoi(env) : 2;
    if (threads < 1)
        threads = 1;
    if (threads > conns)
        threads = conns;
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    struct thread_arg *ta = calloc((size_t)threads, sizeof *ta);
    for (int i = 0; i < threads; i++) {
        ta[i] = (struct thread_arg){sh, conns / threads + (i < conns % threads)};
        pthread_create(&t[i], NULL, worker, &ta[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    free(ta);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: loadgen BASE_URL TOKEN NAME "
                        "send|sendattr|publish|ride|prebook|rfq|cycle|cycle10 "
                        "CONNS SECONDS\n");
        return 2;
    }
    char authority[256], host[256], port[8];
    struct addrinfo *addr;
    if (!split_url(argv[1], authority, host, port) || !(addr = resolve(host, port)))
        return 2;
    struct shared sh = {.queue = argv[3],
                        .mode = argv[4],
                        .addr = addr,
                        .prefix = make_prefix(authority, argv[2]),
                        .seconds = atof(argv[6]),
                        .max_ops = getenv("LOADGEN_MAX_OPS") ? atol(getenv("LOADGEN_MAX_OPS")) : 0};
    int conns = atoi(argv[5]);
    if (!pick(sh.mode) || conns < 1 || sh.seconds <= 0) {
        fprintf(stderr, "loadgen: unknown mode %s, or CONNS or SECONDS not positive\n", sh.mode);
        free(sh.prefix);
        freeaddrinfo(addr);
        return 2;
    }
    pthread_mutex_init(&sh.mu, NULL);
    sh.lat = malloc(sizeof(double) * MAX_SAMPLES);
    double t0 = now();
    run(&sh, conns);
    double elapsed = now() - t0;
    qsort(sh.lat, (size_t)sh.nlat, sizeof(double), cmp);
    double p50 = sh.nlat ? sh.lat[sh.nlat / 2] : 0, p99 = sh.nlat ? sh.lat[sh.nlat * 99 / 100] : 0;
    printf("{\"mode\":\"%s\",\"connections\":%d,\"seconds\":%.1f,\"ops\":%ld,\"errors\":%ld,"
           "\"per_second\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
           sh.mode, conns, elapsed, sh.ops, sh.errors, (double)sh.ops / elapsed, p50 * 1e3,
           p99 * 1e3);
    free(sh.lat);
    free(sh.prefix);
    freeaddrinfo(addr);
    return sh.errors && !sh.ops ? 1 : 0;
}
