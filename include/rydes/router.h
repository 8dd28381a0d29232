/* Route matching over a static table of {method, pattern, role, handler}. Pure: no I/O, no MHD.
 *
 * A pattern is a sequence of '/'-separated segments. A segment is a literal ("tokens",
 * "messages:batch") or a parameter with an optional literal suffix ("{name}", "{name}:purge").
 * A parameter matches one non-empty path segment whose raw (still encoded) text contains no ':',
 * so "/queues/q1:purge" reaches "{name}:purge" and never "{name}"; the decoded value may contain
 * anything but NUL, and handlers validate it like any other input. HEAD is served by GET
 * routes. When the path matches but the method does not, the caller gets the Allow list. */
#ifndef RYDES_ROUTER_H
#define RYDES_ROUTER_H

#include "rydes/role.h"

#include <stdbool.h>
#include <stddef.h>

#define ROUTER_MAX_PARAMS 4

struct http_request;
enum handler_result { HANDLER_DONE, HANDLER_SUSPENDED, HANDLER_FAIL };
typedef enum handler_result (*route_handler)(struct http_request *req);

/* The body a route reads. The first two are spelled false and true in the route table. */
enum route_body {
    ROUTE_NO_BODY = 0,
    ROUTE_JSON_BODY = 1,
    ROUTE_RAW_BODY = 2, /* bytes of any media type, up to the cap (the AWS protocols) */
};

/* Where the handler runs (rydes/http.h): on a handler thread (it may wait on the database for
 * long), on a data-plane thread (the statements of one request's own size), or on the HTTP
 * thread (it waits on nothing: no statement, or its statements are handed on). */
enum route_thread {
    ROUTE_HANDLER_THREAD = 0,
    ROUTE_DATA_THREAD = 1,
    ROUTE_HTTP_THREAD = 2,
};

struct route {
    const char *method;
    const char *pattern;
    enum role role;
    route_handler handler;
    /* what body the route reads: false (none), true (JSON), or ROUTE_RAW_BODY */
    enum route_body json_body;
    enum route_thread thread;
};

struct route_param {
    const char *name; /* points into the pattern; not NUL-terminated: name_len */
    size_t name_len;
    char *value; /* percent-decoded, NUL-terminated, owned by the match */
};

struct route_match {
    const struct route *route;
    int index; /* of route in the table */
    int nparams;
    struct route_param params[ROUTER_MAX_PARAMS];
    /* ROUTER_BAD_PARAM: the parameter whose value failed to decode (points into the pattern;
     * not NUL-terminated: bad_name_len) */
    const char *bad_name;
    size_t bad_name_len;
};

enum router_result {
    ROUTER_FOUND,
    ROUTER_NOT_FOUND,
    ROUTER_METHOD_NOT_ALLOWED,
    ROUTER_BAD_PARAM /* the route matched, but a parameter is not validly percent-encoded */
};

/* Matches method and path (without query string) against the table. On ROUTER_FOUND, m is
 * filled and must be released with route_match_cleanup. On ROUTER_METHOD_NOT_ALLOWED, allow
 * receives the comma-separated methods that the path supports. */
enum router_result router_match(const struct route *table, size_t n, const char *method,
                                const char *path, struct route_match *m, char *allow,
                                size_t allow_len);
void route_match_cleanup(struct route_match *m);
/* The decoded value of parameter name, or NULL. */
const char *route_param(const struct route_match *m, const char *name);
/* Percent-decodes src[0..n) into a new string (caller frees). NULL when malformed or when the
 * result would contain a NUL byte. */
char *router_percent_decode(const char *src, size_t n);

#endif
