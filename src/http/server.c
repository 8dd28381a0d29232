/* The libmicrohttpd daemon and the request lifecycle; see include/rydes/http.h.
 *
 * MHD runs an internal thread pool, each thread polling its share of connections with poll(2).
 * Not epoll: libmicrohttpd 0.9.75's epoll loop calls epoll_wait again with the same timeout
 * when one call returned exactly 128 events, before handling them; a worker whose other
 * connections are suspended long polls has no timeout (-1) and stalls with those 128 requests
 * unread until some other event reaches it.
 * Handlers of ROUTE_HTTP_THREAD routes run on those threads: they touch no database, or hand
 * their statements to the combiner or to the data plane's threads (http_offload_work) and go
 * on when resumed. Every other handler runs on a handler thread (rydes/offload.h): the request
 * is suspended, the handler's reply is built there and kept, and the connection's own thread
 * queues it once resumed, since MHD_queue_response belongs to the access handler. The two sets
 * of threads are apart, so that slow handlers (a purge stuck on a lock) never hold up the data
 * plane. Everything a request owns hangs off struct http_request, which is created on the
 * first call of the access handler and freed in on_completed, the only place that frees it.
 *
 * The URL is not unescaped by MHD (a no-op unescape callback): the router decodes path
 * parameters itself, so "%2F" can never change how a path splits into segments and a "%00"
 * can never truncate one; query values are decoded on demand by http_query. */
#include "rydes/http.h"

#include "rydes/body.h"
#include "rydes/clock.h"
#include "rydes/deadlines.h"
#include "rydes/jsontext.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/metrics.h"
#include "rydes/offload.h"
#include "rydes/problem.h"
#include "rydes/secret.h"
#include "rydes/trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_config cfg;
    atomic_int in_flight;
    atomic_int connections; /* open connections counted against cfg.connection_limit */
    atomic_size_t parsed;   /* what the requests' parsed bodies hold (http_request.json_cost) */
    atomic_bool stopping;   /* http_server_quiesce has begun */
    MHD_socket listener;    /* taken back from MHD by http_server_quiesce */
    atomic_bool cut_off;    /* its wait ran out: handler and data-plane threads begin no more */
    struct deadlines *deadlines;
    struct offload *offload; /* the handler threads; NULL: every handler runs on its HTTP thread */
    struct offload *data;    /* the data plane's threads (http_offload_work); NULL with offload */
    int port;
};

/* How long a stop waits for the replies of handler threads to go out after its own wait. */
#define HTTP_LAST_REPLIES_US 500000

/* Connections MHD may accept beyond RYDES_CONNECTION_LIMIT, only to close them at once. */
#define HTTP_LIMIT_HEADROOM 64

/* X-Forwarded-For headers a request's client is looked for in (the last ones). */
#define HTTP_FORWARDED_MAX 16

/* Decoded query values handed out by http_query live until the request is freed. */
struct query_value {
    struct query_value *next;
    char value[];
};

/* The 413 of a body sent to a route that takes none (a purge, a GET). */
#define NO_BODY_DETAIL "this route takes no request body: send none"

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    struct buf b;
    buf_init(&b);
    buf_vprintf(&b, fmt, ap);
    while (b.len && (b.data[b.len - 1] == '\n'))
        b.data[--b.len] = '\0';
    log_event(LOG_LEVEL_WARN, buf_str(&b), (struct log_field[]){LOG_STR("source", "mhd")}, 1);
    buf_cleanup(&b);
}

bool http_request_stopping(const struct http_request *req)
{
    return atomic_load(&req->server->stopping);
}

const char *http_header(struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void http_add_header(struct http_request *req, const char *name, const char *value)
{
    if (req->nheaders == HTTP_MAX_EXTRA_HEADERS) {
        log_error("too many reply headers for %s (dropped %s)", req->path, name);
        return;
    }
    req->headers[req->nheaders].name = name;
    req->headers[req->nheaders].value = xstrdup(value);
    req->nheaders++;
}

/* Decodes application/x-www-form-urlencoded text: '+' is a space, %HH a byte. */
static char *query_decode(const char *raw)
{
    size_t n = strlen(raw);
    char *plus = xstrdup(raw);
    for (size_t i = 0; i < n; i++)
        if (plus[i] == '+')
            plus[i] = ' ';
    char *out = router_percent_decode(plus, n);
    free(plus);
    return out;
}

static struct query_value **query_list(struct http_request *req);

struct query_each {
    void (*fn)(void *ctx, const char *name, const char *value);
    void *ctx;
};

static enum MHD_Result query_each_one(void *cls, enum MHD_ValueKind kind, const char *name,
                                      const char *value)
{
    (void)kind;
    struct query_each *e = cls;
    e->fn(e->ctx, name, value);
    return MHD_YES;
}

void http_query_each(struct http_request *req,
                     void (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    struct query_each e = {fn, ctx};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_each_one, &e);
}

const char *http_query(struct http_request *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw)
        return NULL;
    char *decoded = query_decode(raw);
    if (!decoded)
        return ""; /* malformed escapes read as an empty (hence invalid) value */
    size_t n = strlen(decoded);
    struct query_value *v = xmalloc(sizeof *v + n + 1);
    memcpy(v->value, decoded, n + 1);
    free(decoded);
    struct query_value **head = query_list(req);
    v->next = *head;
    *head = v;
    return v->value;
}

/* The request with its private tail: query values, and what a handler thread leaves for the
 * connection's thread. */
struct request_full {
    struct http_request req;
    struct query_value *queries;
    route_handler job;                      /* the handler a handler thread runs (http_offload) */
    void (*work)(struct http_request *req); /* or the work it does (http_offload_work) */
    bool offloaded;               /* the handler runs on a handler thread: replies are kept */
    int64_t queued_us;            /* when it was handed to a set of threads (monotonic) */
    struct MHD_Response *pending; /* the reply kept for the connection's thread */
    enum handler_result pending_res;
    bool admitting;                /* suspended with its headers in (http_admit_elsewhere) */
    route_handler after_admission; /* what the access handler's call after that resume runs */
    bool arrived;                  /* the whole request is in */
};

static struct query_value **query_list(struct http_request *req)
{
    return &((struct request_full *)req)->queries;
}

/* The deadline watch of the connection conn (NULL for one that was not counted). */
static struct deadline_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Queues resp (and releases it) with the request's status, and gives the connection until its
 * reply deadline to take it; on the connection's thread only. */
static enum handler_result queue_now(struct http_request *req, struct MHD_Response *resp)
{
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    if (r != MHD_YES) {
        log_error("MHD refused a %d reply for %s %s", req->status, req->method, req->path);
        return HANDLER_FAIL;
    }
    struct deadline_watch *w = watch_of(req->conn);
    if (w)
        deadlines_replying(req->server->deadlines, w, req->bytes_out);
    return HANDLER_DONE;
}

static enum handler_result queue_response(struct http_request *req, int status,
                                          const char *content_type, struct MHD_Response *resp,
                                          size_t len)
{
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    /* Once stopping, a kept-alive connection gets this answer and closes: a quiesced daemon still
     * reads new requests from open connections, and a busy client would hold the in-flight wait
     * of http_server_stop to its timeout. */
    if (atomic_load(&req->server->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    struct request_full *full = (struct request_full *)req;
    if (full->offloaded && full->pending) { /* as MHD would: the first reply stands */
        log_error("a second reply for %s %s was refused", req->method, req->path);
        MHD_destroy_response(resp);
        return HANDLER_FAIL;
    }
    req->status = status;
    req->bytes_out = len;
    if (!full->offloaded)
        return queue_now(req, resp);
    full->pending = resp; /* the connection's thread queues it (deliver) */
    return HANDLER_DONE;
}

enum handler_result http_reply(struct http_request *req, int status, const char *content_type,
                               const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        rydes_oom();
    return queue_response(req, status, content_type, resp, len);
}

enum handler_result http_reply_static(struct http_request *req, int status,
                                      const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        rydes_oom();
    return queue_response(req, status, content_type, resp, len);
}

enum handler_result http_reply_owned(struct http_request *req, int status, const char *content_type,
                                     char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, body, &free);
    if (!resp)
        rydes_oom();
    return queue_response(req, status, content_type, resp, len);
}

enum handler_result http_reply_json(struct http_request *req, int status, json_t *json)
{
    if (!json) { /* a json_pack that failed: a value that was not UTF-8, say */
        log_error("%s %s: the reply could not be encoded as JSON", req->method, req->path);
        return http_reply_problem(req, 500, "the response could not be encoded");
    }
    char *text = jsontext_dumps(json, JSON_COMPACT);
    json_decref(json);
    return http_reply_owned(req, status, "application/json", text, strlen(text));
}

enum handler_result http_reply_empty(struct http_request *req, int status)
{
    return http_reply(req, status, NULL, "", 0);
}

static struct http_request *request_new(struct http_server *s, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
    struct request_full *full = xcalloc(1, sizeof *full);
    struct http_request *req = &full->req;
    req->conn = conn;
    req->server = s;
    req->app = s->cfg.app;
    req->method = method;
    req->path = xstrdup(url);
    req->started_us = clock_mono_us();
    body_reader_init(&req->body, s->cfg.max_body_bytes);
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && ids_request_id_valid(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        ids_uuid(req->request_id);
    atomic_fetch_add(&s->in_flight, 1);
    return req;
}

static void request_free(struct http_request *req)
{
    struct request_full *full = (struct request_full *)req;
    while (full->queries) {
        struct query_value *next = full->queries->next;
        free(full->queries);
        full->queries = next;
    }
    if (full->pending) /* never delivered: the daemon stopped first */
        MHD_destroy_response(full->pending);
    if (req->state_free)
        req->state_free(req->state);
    if (req->found_free)
        req->found_free(req->found);
    route_match_cleanup(&req->match);
    body_reader_cleanup(&req->body);
    json_decref(req->json);
    atomic_fetch_sub(&req->server->parsed, req->json_cost);
    for (int i = 0; i < req->nheaders; i++)
        free(req->headers[i].value);
    free(req->path);
    free(full);
}

/* The values of a request's X-Forwarded-For headers, in order (MHD_get_connection_values). */
struct forwarded {
    const char *values[HTTP_FORWARDED_MAX];
    int n;
};

static enum MHD_Result forwarded_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    struct forwarded *f = cls;
    if (strcasecmp(key, "X-Forwarded-For") != 0 || !value)
        return MHD_YES;
    if (f->n == HTTP_FORWARDED_MAX) { /* keep the last ones: the walk starts there */
        memmove(f->values, f->values + 1, sizeof f->values - sizeof f->values[0]);
        f->n--;
    }
    f->values[f->n++] = value;
    return MHD_YES;
}

size_t http_peer_key(struct http_request *req, unsigned char out[HTTP_PEER_KEY_MAX])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct cidr_addr a;
    if (!cidr_addr_of_sockaddr(ci ? ci->client_addr : NULL, &a))
        return 0;
    const struct cidr_list *trusted = &req->server->cfg.trusted_proxies;
    if (trusted->n && cidr_list_contains(trusted, &a)) {
        struct forwarded f = {.n = 0};
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, forwarded_one, &f);
        a = cidr_forwarded_client(trusted, &a, f.values, f.n);
    }
    size_t n = a.family == AF_INET ? 4 : 8;
    memcpy(out, a.bytes, n);
    return n;
}

/* Answers 401/403/503 unless the request carries a token of a sufficient role. Returns true
 * when the request may proceed. */
static bool request_authorize(struct http_request *req, enum handler_result *res)
{
    enum role need = req->match.route->role;
    if (need == ROLE_NONE)
        return true;
    const char *auth = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    char tokbuf[SECRET_TOKEN_MAX + 1];
    const char *token = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *p = auth + 7 + strspn(auth + 7, " \t");
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n <= SECRET_TOKEN_MAX) {
            memcpy(tokbuf, p, n);
            tokbuf[n] = '\0';
            token = tokbuf;
        } else {
            token = ""; /* too long to be ours */
        }
    }
    int retry_after = 1;
    unsigned char peer[HTTP_PEER_KEY_MAX];
    size_t peer_len = token && *token ? http_peer_key(req, peer) : 0;
    enum http_auth a = token && *token ? req->server->cfg.authenticate(req, token, peer, peer_len,
                                                                       &req->role, &retry_after)
                                       : HTTP_AUTH_INVALID;
    if (a == HTTP_AUTH_ELSEWHERE) {
        *res = http_admit_elsewhere(req);
        return false;
    }
    if (a == HTTP_AUTH_OK) {
        if (req->role >= need)
            return true;
        *res = http_reply_problem(req, 403, "this route needs a token with a higher role");
        return false;
    }
    if (a == HTTP_AUTH_UNAVAILABLE) {
        *res = http_reply_unavailable(req, "the token store is unavailable");
        return false;
    }
    if (a == HTTP_AUTH_LIMITED || a == HTTP_AUTH_FAILING || a == HTTP_AUTH_ALL_FAILING) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after > 0 ? retry_after : 1);
        http_add_header(req, "Retry-After", v);
        *res = http_reply_problem(
            req, 429,
            a == HTTP_AUTH_LIMITED ? "this token's rate limit is used up; retry later"
            : a == HTTP_AUTH_FAILING
                ? "too many unknown credentials came from this address; retry later"
                : "too many unknown credentials are being tried; retry later");
        return false;
    }
    http_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"rydes\"");
    *res = http_reply_problem(req, 401,
                              token ? "the bearer token is not valid"
                                    : "an Authorization: Bearer token is required");
    return false;
}

/* Does the request announce a body? (Content-Length > 0 or chunked transfer coding.) */
static bool request_has_body(struct http_request *req)
{
    const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return (cl && strcmp(cl, "0") != 0) || te; /* te is chunked (http_headers_refused) */
}

/* The 400 of a path whose parameter (req->match.bad_name) holds a malformed percent-escape or
 * %00: a value no resource can have, named as the field it is. */
static enum handler_result reply_bad_param(struct http_request *req)
{
    char field[64];
    snprintf(field, sizeof field, "%.*s", (int)req->match.bad_name_len, req->match.bad_name);
    struct field_errors fe;
    field_errors_init(&fe);
    field_errors_add(&fe, field, "is not validly percent-encoded (a malformed escape, or %%00)");
    enum handler_result res = http_reply_invalid(req, &fe, NULL);
    field_errors_cleanup(&fe);
    return res;
}

/* Decides, once the headers are in, whether the body is read: authentication, the size and
 * media-type checks, the raw-body hook. Returns HANDLER_DONE either having queued an error or
 * leaving req->status 0 to go on, or HANDLER_SUSPENDED while it runs again on another thread
 * (http_admit_elsewhere). */
static enum handler_result request_admit(struct http_request *req)
{
    const struct http_server_config *cfg = &req->server->cfg;
    enum handler_result res = HANDLER_DONE;
    if (!request_authorize(req, &res))
        return res;
    const char *length = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (body_declared_too_large(length, cfg->max_body_bytes))
        return http_reply_problem(req, 413, "the request body is larger than the server accepts");
    if (!req->match.route->json_body) {
        req->body.max = 0; /* a route that reads no body buffers none: any byte is too many */
        if (body_declared_too_large(length, 0)) /* said before a byte is read */
            return http_reply_problem(req, 413, NO_BODY_DETAIL);
    }
    if (request_has_body(req) && req->match.route->json_body == ROUTE_JSON_BODY &&
        !body_media_type_is_json(http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return http_reply_problem(req, 415, "the request body must be application/json");
    if (req->match.route->json_body == ROUTE_RAW_BODY && cfg->before_raw_body)
        return cfg->before_raw_body(req);
    return HANDLER_DONE;
}

/* Runs once the headers are in: the header rules, routing, then the admission. Returns as
 * request_admit does. */
static enum handler_result request_begin(struct http_request *req, const char *version)
{
    char allow[128];
    const struct http_server_config *cfg = &req->server->cfg;
    enum handler_result res = HANDLER_DONE;
    if (http_headers_refused(req, version, &res))
        return res;
    enum router_result rr = router_match(cfg->routes, cfg->nroutes, req->method, req->path,
                                         &req->match, allow, sizeof allow);
    if (rr == ROUTER_METHOD_NOT_ALLOWED) {
        http_add_header(req, MHD_HTTP_HEADER_ALLOW, allow);
        return http_reply_problem(req, 405, "this resource does not support the method");
    }
    if (rr == ROUTER_NOT_FOUND)
        return http_reply_problem(req, 404, "no resource at this path");
    if (rr == ROUTER_BAD_PARAM)
        return reply_bad_param(req);
    return request_admit(req);
}

/* Checks the handler kept its contract: a reply queued unless it suspended. */
static enum handler_result request_finish(struct http_request *req, enum handler_result res)
{
    if (res == HANDLER_DONE && req->status == 0) {
        log_error("handler for %s %s queued no reply", req->method, req->match.route->pattern);
        return http_reply_problem(req, 500, "the handler produced no response");
    }
    return res;
}

enum handler_result http_suspend(struct http_request *req, route_handler on_resume)
{
    if (((struct request_full *)req)->offloaded) {
        /* the connection is suspended already and a resume would run on_resume at once, while
         * the handler still runs here: a route that suspends belongs on the HTTP thread */
        log_error("%s %s suspends on a handler thread", req->method, req->match.route->pattern);
        abort();
    }
    req->resume = on_resume;
    MHD_suspend_connection(req->conn);
    return HANDLER_SUSPENDED;
}

/* The reply a handler thread kept, queued on the connection's thread. */
static enum handler_result deliver(struct http_request *req)
{
    struct request_full *full = (struct request_full *)req;
    struct MHD_Response *resp = full->pending;
    full->pending = NULL;
    if (!resp || full->pending_res == HANDLER_FAIL) {
        if (resp)
            MHD_destroy_response(resp);
        return HANDLER_FAIL;
    }
    return queue_now(req, resp);
}

static enum handler_result request_finish(struct http_request *req, enum handler_result res);

/* The answer to a request whose handler or work a stop's wait cut off before it began. */
static enum handler_result refuse_late(struct http_request *req)
{
    http_add_header(req, "Retry-After", "1");
    return http_reply_problem(req, 503, "the server is shutting down; retry");
}

/* The answer to a request that found every thread of its set busy and max_waiting waiting. */
static enum handler_result refuse_busy(struct http_request *req)
{
    http_add_header(req, "Retry-After", "1");
    return http_reply_problem(req, 503,
                              "too many requests wait for a thread (RYDES_THREAD_QUEUE_LIMIT); "
                              "retry");
}

/* The answer to a request whose client left while it waited for a thread: nobody reads it. */
static enum handler_result refuse_gone(struct http_request *req)
{
    log_debug("%s %s: the client left before a thread took it", req->method, req->path);
    return http_reply_problem(req, 503, "the client left before the request began");
}

/* What a job answers instead of beginning: NULL to begin (not cut off by a stop's wait that ran
 * out, and, when it waited long for a thread, its client still there: a client that gave up
 * leaves no work behind it). Only a long wait is looked at: a client that half-closes its side
 * after sending (allowed, if rare) looks gone too, and is refused only when the threads were
 * that busy. */
#define GONE_CHECK_AFTER_US 1000000
static route_handler refusal(struct http_request *req)
{
    if (atomic_load(&req->server->cut_off))
        return refuse_late;
    struct request_full *full = (struct request_full *)req;
    if (clock_mono_us() - full->queued_us < GONE_CHECK_AFTER_US)
        return NULL;
    return http_client_gone(req) ? refuse_gone : NULL;
}

/* A handler thread's job: runs the handler (or refuses it, see refusal), then hands the
 * connection back with its reply. */
static void offload_run(void *arg)
{
    struct request_full *full = arg;
    struct http_request *req = &full->req;
    trace_set(req->request_id, http_header(req, "traceparent"));
    full->offloaded = true;
    route_handler refused = refusal(req);
    if (full->work) { /* the data plane's statements: then full->job goes on on its thread */
        if (!refused)
            full->work(req);
        if (req->status) /* its reply would be refused: work keeps its outcome for then */
            log_error("%s %s replied from its work", req->method, req->path);
        full->work = NULL;
        full->offloaded = false;
        req->resume = refused ? refused : full->job;
        MHD_resume_connection(req->conn);
        trace_set(NULL, NULL);
        return;
    }
    enum handler_result res = refused ? refused(req) : full->job(req);
    full->pending_res = request_finish(req, res);
    full->offloaded = false;
    req->resume = deliver;
    MHD_resume_connection(req->conn);
    trace_set(NULL, NULL);
}

/* Suspends req and queues it on the threads o (full->job, and full->work when set, filled in);
 * a set that is full or stopping (a stop's wait ran out before) answers it at once instead. */
static enum handler_result hand_over(struct http_request *req, struct offload *o)
{
    struct request_full *full = (struct request_full *)req;
    req->resume = NULL;
    full->queued_us = clock_mono_us();
    MHD_suspend_connection(req->conn);
    enum offload_submitted r = offload_submit(o, offload_run, full);
    if (r != OFFLOAD_QUEUED) {
        full->work = NULL;
        req->resume = r == OFFLOAD_FULL ? refuse_busy : refuse_late;
        MHD_resume_connection(req->conn);
    }
    return HANDLER_SUSPENDED;
}

enum handler_result http_offload_work(struct http_request *req,
                                      void (*work)(struct http_request *req), route_handler then)
{
    struct request_full *full = (struct request_full *)req;
    struct offload *o = req->server->data;
    if (!o || full->offloaded) {
        work(req);
        return then(req);
    }
    full->work = work;
    full->job = then;
    return hand_over(req, o);
}

/* http_offload to the threads o. */
static enum handler_result offload_to(struct http_request *req, struct offload *o,
                                      route_handler handler)
{
    struct request_full *full = (struct request_full *)req;
    if (!o || full->offloaded)
        return handler(req); /* no handler threads, or already on one */
    full->job = handler;
    return hand_over(req, o);
}

enum handler_result http_offload(struct http_request *req, route_handler handler)
{
    return offload_to(req, req->server->offload, handler);
}

enum handler_result http_offload_data(struct http_request *req, route_handler handler)
{
    return offload_to(req, req->server->data, handler);
}

bool http_may_wait(const struct http_request *req)
{
    return ((const struct request_full *)req)->offloaded || !req->server->offload;
}

/* The access handler's call that follows the resume of an admission run elsewhere (MHD calls it
 * as it did with the headers): sends the reply the admission made, or lets MHD read the body. */
static enum handler_result admitted(struct http_request *req)
{
    struct request_full *full = (struct request_full *)req;
    if (full->pending || full->pending_res == HANDLER_FAIL)
        return deliver(req);
    return HANDLER_DONE;
}

/* A data-plane thread's job for http_admit_elsewhere: the admission (or its refusal, see
 * refusal), then the connection back to its thread. */
static void admit_run(void *arg)
{
    struct request_full *full = arg;
    struct http_request *req = &full->req;
    trace_set(req->request_id, http_header(req, "traceparent"));
    full->offloaded = true;
    route_handler refused = refusal(req);
    full->pending_res = refused ? refused(req) : request_admit(req);
    full->offloaded = false;
    full->after_admission = admitted;
    MHD_resume_connection(req->conn);
    trace_set(NULL, NULL);
}

enum handler_result http_admit_elsewhere(struct http_request *req)
{
    struct request_full *full = (struct request_full *)req;
    struct offload *o = req->server->data;
    if (full->offloaded || full->arrived || !o) { /* a caller's mistake: it would run again */
        log_error("%s %s: an admission passed on where it cannot be", req->method, req->path);
        return http_reply_problem(req, 500, "the request's credentials could not be checked");
    }
    full->admitting = true;
    full->after_admission = NULL;
    full->queued_us = clock_mono_us();
    MHD_suspend_connection(req->conn);
    enum offload_submitted r = offload_submit(o, admit_run, full);
    if (r != OFFLOAD_QUEUED) {
        full->after_admission = r == OFFLOAD_FULL ? refuse_busy : refuse_late;
        MHD_resume_connection(req->conn);
    }
    return HANDLER_SUSPENDED;
}

void http_resume(struct http_request *req)
{
    MHD_resume_connection(req->conn);
}

bool http_client_gone(struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Judged by what a body typically takes at most (BODY_JSON_EXPANSION times its size), so that
 * small bodies still pass when large ones are refused; what parses at once may overshoot the
 * limit by as many bodies' caps as threads parse. With none held, any body is parsed (its own
 * cap bounds it): a body larger than the limit allows would otherwise be refused for ever. */
bool http_parsed_memory_full(struct http_request *req, size_t len)
{
    struct http_server *s = req->server;
    size_t limit = s->cfg.parsed_body_memory, held = atomic_load(&s->parsed);
    if (!limit || held == 0)
        return false;
    size_t need = len > SIZE_MAX / BODY_JSON_EXPANSION ? SIZE_MAX : len * BODY_JSON_EXPANSION;
    return held >= limit || need > limit - held;
}

/* Parses the JSON body (on the thread that runs the handler: a request waiting for a handler
 * thread holds its bytes, not the larger parsed form), lets the bytes go, and runs the route's
 * handler; or answers 400 for a malformed body, 413 for one that would take too much memory
 * parsed (rydes/body.h), and 503 while the parsed bodies of requests in progress (waiting for
 * the combiner, a thread or a lock) hold RYDES_PARSED_BODY_MEMORY. */
static enum handler_result parse_then_handle(struct http_request *req)
{
    if (req->match.route->json_body == ROUTE_JSON_BODY && req->body.buf.len > 0) {
        if (http_parsed_memory_full(req, req->body.buf.len))
            return http_reply_unavailable(req, "the request bodies being handled take the memory "
                                               "allowed for them (RYDES_PARSED_BODY_MEMORY)");
        char detail[256];
        bool too_large = false;
        req->json = body_parse_json(req->body.buf.data, req->body.buf.len, &too_large, detail,
                                    sizeof detail);
        if (!req->json)
            return http_reply_problem(req, too_large ? 413 : 400, detail);
        http_charge_parsed(req, body_last_parse_cost());
        buf_cleanup(&req->body.buf);
    }
    return req->match.route->handler(req);
}

static enum handler_result request_dispatch(struct http_request *req)
{
    if (req->body.too_large)
        return http_reply_problem(req, 413,
                                  req->match.route->json_body
                                      ? "the request body is larger than the server accepts"
                                      : NO_BODY_DETAIL);
    struct http_server *s = req->server;
    switch (req->match.route->thread) {
    case ROUTE_HANDLER_THREAD:
        return request_finish(req, offload_to(req, s->offload, parse_then_handle));
    case ROUTE_DATA_THREAD:
        return request_finish(req, http_offload_data(req, parse_then_handle));
    case ROUTE_HTTP_THREAD:
    default:
        return request_finish(req, parse_then_handle(req));
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_request *req = *con_cls;
    if (!req) {
        req = request_new(cls, conn, url, method);
        *con_cls = req;
        return request_begin(req, version) == HANDLER_FAIL ? MHD_NO : MHD_YES;
    }
    struct request_full *full = (struct request_full *)req;
    if (full->admitting) { /* resumed with only its headers in (http_admit_elsewhere) */
        full->admitting = false;
        route_handler then = full->after_admission;
        full->after_admission = NULL;
        return then(req) == HANDLER_FAIL ? MHD_NO : MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->status)
            return MHD_YES;
        /* MHD cannot answer in the middle of a body: an oversized one is drained, and answered
         * with 413 at its end, unless it runs on far past the cap (then the connection closes). */
        return body_reader_feed(&req->body, upload_data, n) || !body_reader_hopeless(&req->body)
                   ? MHD_YES
                   : MHD_NO;
    }
    /* the whole request is in: no deadline now, unless it was answered early (its reply's) */
    full->arrived = true;
    struct deadline_watch *w = req->status ? NULL : watch_of(conn);
    if (w)
        deadlines_arrived(((struct http_server *)cls)->deadlines, w);
    if (req->status && !req->resume)
        return MHD_YES; /* answered early; MHD is only draining */
    /* the handler's log lines and what it publishes carry the request's trace */
    trace_set(req->request_id, http_header(req, "traceparent"));
    enum handler_result res;
    if (req->resume) {
        route_handler resume = req->resume;
        req->resume = NULL;
        res = request_finish(req, resume(req));
    } else {
        res = request_dispatch(req);
    }
    trace_set(NULL, NULL);
    return res == HANDLER_FAIL ? MHD_NO : MHD_YES;
}

static void access_log(struct http_request *req, int64_t duration_us)
{
    if (!log_enabled(LOG_LEVEL_INFO))
        return;
    struct log_field f[] = {
        LOG_STR("method", req->method),
        LOG_STR("path", req->path),
        LOG_INT("status", req->status),
        LOG_INT("bytes", (int64_t)req->bytes_out),
        LOG_DBL("duration_ms", (double)duration_us / 1000.0),
        LOG_STR("request_id", req->request_id),
        LOG_STR("traceparent", ""),
    };
    /* the W3C trace of the call, when the client sent a valid one */
    const char *tp = http_header(req, "traceparent");
    int n = (int)(sizeof f / sizeof f[0]);
    if (trace_parent_valid(tp))
        f[n - 1].str = tp;
    else
        n--;
    log_event(LOG_LEVEL_INFO, "request", f, n);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct http_server *s = cls;
    struct http_request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    struct deadline_watch *w = watch_of(conn); /* the connection waits for its next request */
    if (w)
        deadlines_waiting(s->deadlines, w);
    int64_t duration = clock_mono_us() - req->started_us;
    access_log(req, duration);
    if (req->status && s->cfg.metrics)
        metrics_record(s->cfg.metrics, req->match.route ? req->match.index : -1, req->status,
                       duration);
    request_free(req);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* MHD itself stops accepting at its connection limit and leaves newcomers in the kernel's accept
 * queue, unanswered until a connection closes (an idle one only at its timeout): a flood of idle
 * connections would leave every new client hanging. So MHD may accept HTTP_LIMIT_HEADROOM more,
 * and a connection past the limit is shut down as soon as it is accepted: its client sees the
 * connection closed at once (and may retry), and MHD closes its side on the next read. */
/* The socket context of a connection is its deadline watch (rydes/deadlines.h): set while it is
 * open and counted. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (*socket_context) {
            deadlines_forget(s->deadlines, *socket_context);
            atomic_fetch_sub(&s->connections, 1);
        }
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    *socket_context = deadlines_watch(s->deadlines, ci->connect_fd);
    if (atomic_fetch_add(&s->connections, 1) < s->cfg.connection_limit)
        return;
    shutdown(ci->connect_fd, SHUT_RDWR);
    log_debug("connection limit reached: a new connection was closed");
}

/* The connection limit needs a descriptor per connection: raise the soft RLIMIT_NOFILE towards
 * the hard one when it is lower than that (plus room for the database and files). */
static void ensure_descriptors(int connection_limit)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connection_limit + HTTP_LIMIT_HEADROOM + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        log_warn("RLIMIT_NOFILE allows %llu descriptors, fewer than RYDES_CONNECTION_LIMIT needs",
                 (unsigned long long)rl.rlim_cur);
}

/* Fills addr from the bind address; returns its length or 0 when the address is invalid. */
static socklen_t parse_bind(const char *bind, int port, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, bind, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, bind, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof *a6;
    }
    return 0;
}

static int bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

struct http_server *http_server_start(const struct http_server_config *cfg)
{
    struct sockaddr_storage addr;
    socklen_t alen = parse_bind(cfg->bind, cfg->port, &addr);
    if (!alen) {
        log_error("RYDES_BIND: '%s' is not an IPv4 or IPv6 address", cfg->bind);
        return NULL;
    }
    struct http_server *s = xcalloc(1, sizeof *s);
    s->listener = MHD_INVALID_SOCKET;
    s->cfg = *cfg;
    ensure_descriptors(cfg->connection_limit);
    s->deadlines = deadlines_start(cfg->request_timeout, cfg->connection_timeout);
    if (cfg->handler_threads > 0) { /* apart, so that a stuck purge never holds up a send */
        s->offload = offload_start(cfg->handler_threads, cfg->thread_queue_limit);
        s->data = offload_start(cfg->data_threads > 0 ? cfg->data_threads : cfg->handler_threads,
                                cfg->thread_queue_limit);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* HTTPS through libmicrohttpd's GnuTLS support when a certificate and key are given */
    bool tls = cfg->tls_cert_pem && cfg->tls_key_pem;
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key_pem},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_options[] = {{MHD_OPTION_END, 0, NULL}};
    /* a pool of one is MHD's single polling thread, given without the option (MHD warns) */
    struct MHD_OptionItem pool_options[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (tls)
        flags |= MHD_USE_TLS;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, &on_request, s,
        /* first, so that MHD's own start-up messages go through our log format too */
        MHD_OPTION_EXTERNAL_LOGGER, &mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_ARRAY,
        cfg->threads > 1 ? pool_options : no_options, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->connection_limit + HTTP_LIMIT_HEADROOM, MHD_OPTION_NOTIFY_CONNECTION,
        &on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->connection_memory_limit,
        MHD_OPTION_NOTIFY_COMPLETED, &on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, &no_unescape,
        NULL, MHD_OPTION_ARRAY, tls ? tls_options : no_options, MHD_OPTION_END);
    if (!s->daemon) {
        log_error("cannot listen on %s port %d: %s", cfg->bind, cfg->port, strerror(errno));
        deadlines_stop(s->deadlines);
        offload_free(s->offload);
        offload_free(s->data);
        free(s);
        return NULL;
    }
    s->port = bound_port(s->daemon);
    return s;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

int http_server_connections(const struct http_server *s)
{
    return atomic_load(&s->connections);
}

void http_charge_parsed(struct http_request *req, size_t cost)
{
    req->json_cost += cost;
    atomic_fetch_add(&req->server->parsed, cost);
}

size_t http_server_parsed_bytes(const struct http_server *s)
{
    return atomic_load(&s->parsed);
}

void http_server_backlog(const struct http_server *s, int *handlers, int *data)
{
    *handlers = offload_waiting(s->offload);
    *data = offload_waiting(s->data);
}

unsigned long long http_server_deadline_closes(const struct http_server *s)
{
    return deadlines_expired(s->deadlines);
}

int http_server_in_flight(const struct http_server *s)
{
    return atomic_load(&((struct http_server *)s)->in_flight);
}

void http_server_quiesce(struct http_server *s)
{
    if (!s || atomic_exchange(&s->stopping, true))
        return;
    s->listener = MHD_quiesce_daemon(s->daemon);
    /* the socket stops listening (Linux resets the connections queued on it and refuses new
     * ones) but stays open until MHD_stop_daemon, as MHD asks: a connection that came in during
     * the drain used to wait, unanswered, for the process to exit */
    if (s->listener != MHD_INVALID_SOCKET)
        shutdown(s->listener, SHUT_RDWR);
}

int http_server_stop(struct http_server *s, int timeout_ms)
{
    if (!s)
        return 0;
    http_server_quiesce(s);
    int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
    while (atomic_load(&s->in_flight) > 0 && clock_mono_us() < deadline)
        usleep(10000);
    int cut = atomic_load(&s->in_flight);
    if (cut > 0)
        log_warn("shutdown: %d request(s) still running after %d ms, closing them", cut,
                 timeout_ms);
    /* handlers already begun on handler threads finish (as those on HTTP threads do inside
     * MHD_stop_daemon); the ones still queued answer 503; and their replies go out, briefly */
    atomic_store(&s->cut_off, true);
    offload_stop_begin(s->offload); /* both queues answered before either set is waited for */
    offload_stop_begin(s->data);
    offload_stop(s->offload);
    offload_stop(s->data);
    for (int64_t until = clock_mono_us() + HTTP_LAST_REPLIES_US;
         atomic_load(&s->in_flight) > 0 && clock_mono_us() < until;)
        usleep(5000);
    MHD_stop_daemon(s->daemon);
    offload_free(s->offload);
    offload_free(s->data);
    if (s->listener != MHD_INVALID_SOCKET)
        close(s->listener);
    deadlines_stop(s->deadlines);
    free(s);
    return cut;
}
