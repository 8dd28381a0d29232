/* The rules a request's headers must keep before it is routed (see include/rydes/http.h,
 * http_headers_refused): one pass over them, refusing what a proxy in front and libmicrohttpd
 * could read two ways, and what HTTP/1.1 requires but the library lets through. */
#include "rydes/http.h"

#include "rydes/problem.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Headers a request may carry once: [0] delimits the body, the others a lookup would read the
 * first of, whichever a proxy or the client meant. */
static const char *const single_headers[] = {MHD_HTTP_HEADER_CONTENT_LENGTH,
                                             MHD_HTTP_HEADER_AUTHORIZATION,
                                             MHD_HTTP_HEADER_CONTENT_TYPE, "Idempotency-Key"};
#define NSINGLE (sizeof single_headers / sizeof single_headers[0])

/* What one pass over a request's headers counts. */
struct header_census {
    int single[NSINGLE];
    int host;
    int transfer_encoding;
    bool bad_name; /* a name with a character HTTP's token does not allow (a space, a colon) */
};

static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* MHD_get_connection_values' iterator: counts into cls (a struct header_census). */
static enum MHD_Result census_add(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    (void)value;
    struct header_census *c = cls;
    for (size_t i = 0; i < NSINGLE; i++)
        c->single[i] += strcasecmp(key, single_headers[i]) == 0;
    c->host += strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0;
    c->transfer_encoding += strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0;
    for (const unsigned char *k = (const unsigned char *)key; *k && !c->bad_name; k++)
        c->bad_name = !tchar(*k);
    c->bad_name |= !*key;
    return MHD_YES;
}

/* The framing problem of a request, or NULL: what a proxy in front and libmicrohttpd could
 * read two ways, so that what one takes for the body the other takes for another request
 * (request smuggling; RFC 9112 5.1 and 6.3 ask for a 400 and the connection closed). */
static const char *framing_problem(struct http_request *req, const struct header_census *c)
{
    const char *te = http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (c->bad_name)
        return "a header name holds a character HTTP does not allow (such as a space before "
               "the colon)";
    if (c->single[0] > 1 || (c->single[0] == 1 && te))
        return "the request gives two Content-Length headers, or Content-Length beside "
               "Transfer-Encoding";
    if ((te && strcasecmp(te, "chunked") != 0) || c->transfer_encoding > 1)
        return "the request's Transfer-Encoding is not chunked, the one coding understood here";
    return NULL;
}

bool http_headers_refused(struct http_request *req, const char *version, enum handler_result *res)
{
    struct header_census c = {{0}, 0, 0, false};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, census_add, &c);
    const char *framing = framing_problem(req, &c);
    if (framing) {
        http_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close"); /* nothing after is trusted */
        *res = http_reply_problem(req, 400, framing);
        return true;
    }
    if (c.host > 1 || (c.host == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)) {
        *res = http_reply_problem(req, 400, "an HTTP/1.1 request needs one Host header");
        return true;
    }
    for (size_t i = 1; i < NSINGLE; i++) {
        if (c.single[i] > 1) {
            char detail[96];
            snprintf(detail, sizeof detail, "the request gives the %s header more than once",
                     single_headers[i]);
            *res = http_reply_problem(req, 400, detail);
            return true;
        }
    }
    return false;
}
