/* RFC 9457 problem details: every error the gateway returns is application/problem+json with
 * type, title, status, detail, instance and request_id, plus errors[] for validation failures.
 * Field errors (rydes/validate.h) are collected while a body is validated, so one 400 names
 * every bad field at once. */
#ifndef RYDES_PROBLEM_H
#define RYDES_PROBLEM_H

#include "rydes/http.h"
#include "rydes/validate.h"

#include <jansson.h>

/* Builds the problem object (caller owns the reference). type_slug names the problem type, e.g.
 * "validation"; NULL gives "about:blank". */
json_t *problem_build(int status, const char *type_slug, const char *detail, const char *instance,
                      const char *request_id);

/* Queues a problem reply with the standard title for status. */
enum handler_result http_reply_problem(struct http_request *req, int status, const char *detail);
/* Queues a 400 listing the field errors (fe is left intact; the caller cleans it up), with
 * detail, or (NULL) a count of the fields. */
enum handler_result http_reply_invalid(struct http_request *req, struct field_errors *fe,
                                       const char *detail);
/* Queues 503 with Retry-After: the database could not serve the request. */
enum handler_result http_reply_unavailable(struct http_request *req, const char *detail);

/* The reason phrase for an HTTP status ("Not Found"), "Unknown" when not known. */
const char *problem_title(int status);

#endif
