/* The HTTP layer: a libmicrohttpd daemon with an internal thread pool (poll), the request
 * context handed to route handlers, and the reply functions they call.
 *
 * Lifecycle of a request: headers arrive -> route match, body-size check from Content-Length,
 * authentication and Content-Type check (any failure is answered before the body is read; a
 * credential the caches do not hold is looked up on a data-plane thread, see
 * http_admit_elsewhere) ->
 * body chunks are collected under the cap -> the JSON body is parsed -> the handler runs (on
 * the connection's HTTP thread or another, see struct route) and queues exactly one reply ->
 * MHD's completion callback writes the access-log line, records the metrics and frees the
 * context. The context is freed in that one place only. */
#ifndef RYDES_HTTP_H
#define RYDES_HTTP_H

#include "rydes/body.h"
#include "rydes/cidr.h"
#include "rydes/ids.h"
#include "rydes/role.h"
#include "rydes/router.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct MHD_Connection;
struct app;
struct http_server;
struct metrics;

#define HTTP_MAX_EXTRA_HEADERS 8

struct http_header {
    const char *name; /* static string */
    char *value;      /* owned */
};

struct http_request {
    struct MHD_Connection *conn;
    struct http_server *server;
    struct app *app; /* the server's context, for handlers */
    const char *method;
    char *path; /* copy of the URL path, without the query string */
    struct route_match match;
    enum role role; /* the authenticated role, ROLE_NONE when no token was given */
    char request_id[IDS_REQUEST_ID_MAX + 1];
    int64_t started_us;

    struct body_reader body;
    json_t *json;     /* parsed body of json_body routes, NULL when the body was empty */
    size_t json_cost; /* what its parsed bodies took (http_charge_parsed), until it is freed */

    /* State a handler keeps across a suspension (long polls); freed with the request. */
    void *state;
    void (*state_free)(void *state);
    route_handler resume; /* runs instead of the route's handler after http_resume */

    /* What a lookup passed on to a data-plane thread found, for the handler's second run
     * (api_queue_lookup); freed with the request. */
    void *found;
    void (*found_free)(void *found);

    int status; /* 0 until a reply is queued */
    size_t bytes_out;
    int nheaders;
    struct http_header headers[HTTP_MAX_EXTRA_HEADERS];
};

enum http_auth {
    HTTP_AUTH_OK,          /* *role is set */
    HTTP_AUTH_INVALID,     /* 401 */
    HTTP_AUTH_UNAVAILABLE, /* the token store could not be asked: 503 */
    HTTP_AUTH_LIMITED,     /* the token's rate limit is used up: 429, Retry-After *retry_after */
    HTTP_AUTH_FAILING,     /* this address's lookup budget is used up: 429, likewise */
    HTTP_AUTH_ALL_FAILING, /* the process's lookup budget is used up: 429, likewise */
    HTTP_AUTH_ELSEWHERE,   /* the database must answer and may not be waited for here
                            * (http_may_wait): the server asks again on another thread */
};

/* Authenticates the bearer token of req, sent from the client at peer (http_peer_key), and
 * charges it one request of its rate limit. */
typedef enum http_auth (*http_auth_fn)(struct http_request *req, const char *token,
                                       const unsigned char *peer, size_t peer_len, enum role *role,
                                       int *retry_after);

struct http_server_config {
    const char *bind;
    int port;            /* 0: any free port */
    int threads;         /* HTTP threads (MHD's pool) */
    int handler_threads; /* of the handlers' set (rydes/offload.h); 0: the HTTP threads run it all
                          */
    int data_threads;    /* of the data plane's set, when there are handler threads (0: as many) */
    int thread_queue_limit; /* requests that may wait for a thread of each set */
    int connection_limit;
    int connection_timeout;
    int request_timeout; /* seconds a request may take to arrive (rydes/deadlines.h) */
    size_t connection_memory_limit;
    size_t max_body_bytes;
    size_t parsed_body_memory; /* parsed bodies held at once; past it, bodies are 503 (0: any) */
    const struct route *routes;
    size_t nroutes;
    http_auth_fn authenticate;
    /* Routes of ROUTE_RAW_BODY authenticate themselves (ROLE_NONE): this, if not NULL, runs
     * once their headers are in and before their body is read, and answers (a reply queued) or
     * lets the request go on (req->status 0). */
    route_handler before_raw_body;
    struct app *app;
    struct metrics *metrics;
    const char *tls_cert_pem, *tls_key_pem; /* both: serve HTTPS (borrowed, PEM text) */
    struct cidr_list trusted_proxies;       /* whose X-Forwarded-For names the client (n 0: none) */
};

/* Starts the daemon; returns NULL (and logs why) when it cannot listen. The server is freed by
 * http_server_stop. */
struct http_server *http_server_start(const struct http_server_config *cfg);
/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);
/* Connections closed so far because their request did not arrive in time (slow clients). */
unsigned long long http_server_deadline_closes(const struct http_server *s);
/* Requests being processed right now. */
int http_server_in_flight(const struct http_server *s);
/* Requests waiting for a handler thread and for a data-plane thread (queued, not begun). */
void http_server_backlog(const struct http_server *s, int *handlers, int *data);

/* Connections open right now (those past RYDES_CONNECTION_LIMIT until they are closed). */
int http_server_connections(const struct http_server *s);
/* Bytes the parsed bodies of requests in progress hold (RYDES_PARSED_BODY_MEMORY). */
size_t http_server_parsed_bytes(const struct http_server *s);
/* Would a JSON body of len bytes, parsed for req, take the parsed bodies of the requests in
 * progress past RYDES_PARSED_BODY_MEMORY? (Routes that parse their own raw body ask first and
 * answer 503 in their protocol; json_body routes are asked for.) */
bool http_parsed_memory_full(struct http_request *req, size_t len);
/* Counts cost (body_last_parse_cost) against the server's parsed bodies until req is freed. */
void http_charge_parsed(struct http_request *req, size_t cost);
/* Stops accepting connections (kept-alive ones are closed after their next reply). */
void http_server_quiesce(struct http_server *s);
/* Stops accepting connections, lets in-flight requests finish for up to timeout_ms, then stops
 * the daemon and frees the server. Returns the number of requests that were cut off. */
int http_server_stop(struct http_server *s, int timeout_ms);

/* Do the request's headers make it mean two things, or leave out what HTTP/1.1 requires (version
 * as libmicrohttpd gives it)? Then true with their 400 queued into *res: a body that could be
 * delimited two ways (two Content-Lengths, one beside Transfer-Encoding, a Transfer-Encoding
 * other than chunked, a header name outside HTTP's token: the connection closes), Host missing
 * from an HTTP/1.1 request or given twice, or Authorization, Content-Type or Idempotency-Key
 * given twice. src/http/headers.c. */
bool http_headers_refused(struct http_request *req, const char *version, enum handler_result *res);

/* Has the server's shutdown begun (http_server_quiesce)? */
bool http_request_stopping(const struct http_request *req);
/* Query-string argument, or NULL. */
const char *http_query(struct http_request *req, const char *name);
/* Calls fn with each query-string argument as sent (still percent-encoded; value NULL for a
 * name without "="), in order. */
void http_query_each(struct http_request *req,
                     void (*fn)(void *ctx, const char *name, const char *value), void *ctx);
/* Request header (case-insensitive), or NULL. */
const char *http_header(struct http_request *req, const char *name);
/* Adds a header to the reply that will be queued next. name must be a static string. */
void http_add_header(struct http_request *req, const char *name, const char *value);

/* Suspends the request (it keeps its connection but no thread) until http_resume; on_resume
 * then runs in place of the route's handler. Returns HANDLER_SUSPENDED for the handler to
 * return. Resume may be called from any thread, even before the handler has returned. For
 * handlers on the HTTP threads only (see http_offload). */
enum handler_result http_suspend(struct http_request *req, route_handler on_resume);
void http_resume(struct http_request *req);
/* Runs handler on a handler thread (the request suspended meanwhile) and returns
 * HANDLER_SUSPENDED for the caller to return; runs it here when there are no handler threads
 * or this is one. The server does this for every ROUTE_HANDLER_THREAD route; a route that
 * serves both kinds (the AWS protocols) calls it for its slow operations. The handler must not
 * suspend (http_suspend aborts there): a resume could run its continuation while it still
 * runs. Once a stop's wait has run out, a handler not yet begun is answered 503 instead. */
enum handler_result http_offload(struct http_request *req, route_handler handler);
/* http_offload on the data plane's threads (the statements of one request's own size, apart
 * from the slow handlers). */
enum handler_result http_offload_data(struct http_request *req, route_handler handler);
/* Does work (which must not reply or suspend: it keeps what it found in the request's state)
 * on a data-plane thread, the request suspended meanwhile, then goes on with then on the
 * connection's HTTP thread, where it may reply or suspend (a long poll). Returns
 * HANDLER_SUSPENDED for the caller to return; runs both here without handler threads. The data
 * plane's handlers wait on the database this way, so an HTTP thread never does. */
enum handler_result http_offload_work(struct http_request *req,
                                      void (*work)(struct http_request *req), route_handler then);
/* May the code running for req wait on the database here? False on an HTTP thread while the
 * server has handler threads: a wait there holds every connection of that thread. */
bool http_may_wait(const struct http_request *req);
/* For an authentication that needs the database while its headers are in (http_auth_fn, the
 * before_raw_body hook) and http_may_wait is false: runs the request's admission again
 * (authentication, the size and media-type checks, before_raw_body) on a data-plane thread, the
 * request suspended meanwhile. A reply made there is sent; without one, the body is read next;
 * with the data plane's threads busy and RYDES_THREAD_QUEUE_LIMIT waiting, or stopping, 503 as
 * for the data plane's other requests. Returns HANDLER_SUSPENDED for the caller to return.
 * Only while the headers are in: once the whole request is, a handler waits on the database
 * through http_offload_work. */
enum handler_result http_admit_elsewhere(struct http_request *req);
/* Has the client closed its connection? (A suspended request is not watched by MHD; a long
 * poll asks before it takes messages for a client that is no longer there.) */
bool http_client_gone(struct http_request *req);

/* The key of the client's address for per-client limits into out: the IPv4 address, or the /64
 * of an IPv6 one (one host can pick any address of its /64). The client is the peer, or behind
 * a trusted proxy the address its X-Forwarded-For names (cidr_forwarded_client). Returns its
 * length; 0 when the address is unknown (all such clients then share one key). */
#define HTTP_PEER_KEY_MAX 8
size_t http_peer_key(struct http_request *req, unsigned char out[HTTP_PEER_KEY_MAX]);

/* Reply functions: each queues the one response of the request and returns HANDLER_DONE (or
 * HANDLER_FAIL when MHD refused, which closes the connection). */
enum handler_result http_reply(struct http_request *req, int status, const char *content_type,
                               const char *body, size_t len);
/* http_reply with a body that lives as long as the program (a built-in document): not copied. */
enum handler_result http_reply_static(struct http_request *req, int status,
                                      const char *content_type, const char *body, size_t len);
/* http_reply with a malloc'd body that the response takes over (and frees). */
enum handler_result http_reply_owned(struct http_request *req, int status, const char *content_type,
                                     char *body, size_t len);
/* Serialises and then releases json (a new reference is stolen). */
enum handler_result http_reply_json(struct http_request *req, int status, json_t *json);
enum handler_result http_reply_empty(struct http_request *req, int status);

#endif
