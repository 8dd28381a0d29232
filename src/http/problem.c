/* Problem details (RFC 9457) and field-error lists; see include/rydes/problem.h. */
#include "rydes/problem.h"

#include "rydes/buf.h"
#include "rydes/mem.h"

#include <stdio.h>
#include <string.h>

static const struct {
    int status;
    const char *title;
    const char *slug;
} titles[] = {
    {400, "Bad Request", "bad-request"},
    {401, "Unauthorized", "unauthorized"},
    {403, "Forbidden", "forbidden"},
    {404, "Not Found", "not-found"},
    {405, "Method Not Allowed", "method-not-allowed"},
    {409, "Conflict", "conflict"},
    {413, "Content Too Large", "content-too-large"},
    {415, "Unsupported Media Type", "unsupported-media-type"},
    {422, "Unprocessable Content", "unprocessable-content"},
    {429, "Too Many Requests", "too-many-requests"},
    {500, "Internal Server Error", "internal-error"},
    {503, "Service Unavailable", "service-unavailable"},
};

const char *problem_title(int status)
{
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        if (titles[i].status == status)
            return titles[i].title;
    return "Unknown";
}

static const char *problem_slug(int status)
{
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        if (titles[i].status == status)
            return titles[i].slug;
    return NULL;
}

static bool hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The request's path as a URI reference (RFC 3986) into out: a byte a path may not hold, a
 * '%' that begins no escape included, is percent-encoded (the path is as the client sent it:
 * "/queues/a%zz" or one with a space would not be one). */
static void instance_text(const char *path, struct buf *out)
{
    static const char keep[] = "-._~!$&'()*+,;=:@/?";
    for (const char *c = path; *c; c++) {
        unsigned char b = (unsigned char)*c;
        bool plain = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
                     strchr(keep, b) || (b == '%' && hex_digit(c[1]) && hex_digit(c[2]));
        if (plain)
            buf_append(out, c, 1);
        else
            buf_printf(out, "%%%02X", b);
    }
}

json_t *problem_build(int status, const char *type_slug, const char *detail, const char *instance,
                      const char *request_id)
{
    char type[128];
    if (type_slug)
        snprintf(type, sizeof type, "urn:rydes:problem:%s", type_slug);
    else
        snprintf(type, sizeof type, "about:blank");
    json_t *p = json_pack("{s:s, s:s, s:i}", "type", type, "title", problem_title(status), "status",
                          status);
    if (!p)
        rydes_oom();
    json_t *d = json_string(detail ? detail : "");
    /* A detail quoting client input may not be UTF-8; never let that cost the reply. */
    json_object_set_new(p, "detail", d ? d : json_string("(detail withheld: not UTF-8)"));
    if (instance) {
        struct buf b;
        buf_init(&b);
        instance_text(instance, &b);
        json_object_set_new(p, "instance", json_string(buf_str(&b)));
        buf_cleanup(&b);
    }
    if (request_id)
        json_object_set_new(p, "request_id", json_string(request_id));
    return p;
}

static enum handler_result reply_problem_json(struct http_request *req, int status, json_t *p)
{
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    if (!text)
        rydes_oom();
    enum handler_result r = http_reply(req, status, "application/problem+json", text, strlen(text));
    free(text);
    return r;
}

enum handler_result http_reply_problem(struct http_request *req, int status, const char *detail)
{
    json_t *p = problem_build(status, problem_slug(status), detail, req->path, req->request_id);
    return reply_problem_json(req, status, p);
}

enum handler_result http_reply_invalid(struct http_request *req, struct field_errors *fe,
                                       const char *detail)
{
    char counted[96];
    snprintf(counted, sizeof counted, "%d field%s of the request %s invalid", fe->count,
             fe->count == 1 ? "" : "s", fe->count == 1 ? "is" : "are");
    json_t *p =
        problem_build(400, "validation", detail ? detail : counted, req->path, req->request_id);
    json_object_set_new(p, "errors", fe->list ? json_incref(fe->list) : json_array());
    return reply_problem_json(req, 400, p);
}

enum handler_result http_reply_unavailable(struct http_request *req, const char *detail)
{
    http_add_header(req, "Retry-After", "1");
    return http_reply_problem(req, 503, detail);
}
