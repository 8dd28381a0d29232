/* Integration: hostile requests. A table of malformed, oversized, mistyped and tricky requests
 * against every kind of route: each must get a 4xx problem+json (never a 5xx, never a dropped
 * connection for a complete request), and the server must keep serving afterwards. */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
    static bool created;
    if (!created) { /* the database outlives the fixture: create the queues once */
        harness_put_queue(&srv, "h", NULL, 201);
        harness_put_queue(&srv, "h.fifo", NULL, 201);
        struct response r; /* the topic too: a missing one would make every bad body a 404 */
        harness_admin(&srv, "PUT", "/topics/h", "{}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
        created = true;
    }
}

static void teardown(void)
{
    harness_stop(&srv);
}

struct hostile {
    const char *method, *path, *body, *content_type;
    long status; /* expected; 0: any 4xx */
};

/* Long texts built at start-up (an overlong header, an overlong name). */
static char long_key[12000], long_name[200], long_path[300], long_id_header[400];

#define A HARNESS_ADMIN_TOKEN
static const struct hostile cases[] = {
    /* bodies */
    {"POST", "/queues/h/messages", "{\"body\":\"\xff\xfe\"}", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"a\\u0000b\"}", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":1e999999}", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\",\"delay_seconds\":1e300}", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\",\"delay_seconds\":-9223372036854775808}", NULL,
     400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\",\"delay_seconds\":\"5\"}", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\",\"attributes\":[]}", NULL, 400},
    {"POST", "/queues/h/messages",
     "{\"body\":\"x\",\"attributes\":{\"a\":{\"type\":\"Number\","
     "\"value\":\"1; DROP TABLE messages\"}}}",
     NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\"} trailing", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\",\"body\":\"y\"}", NULL, 400},
    {"POST", "/queues/h/messages", "", "application/json", 400},
    {"POST", "/queues/h/messages", "null", NULL, 400},
    {"POST", "/queues/h/messages", "\"just a string\"", NULL, 400},
    {"POST", "/queues/h/messages", "{\"body\":\"x\"}", "text/plain", 415},
    {"POST", "/queues/h/messages", "{\"body\":\"x\"}", "application/jsonp", 415},
    {"POST", "/queues/h.fifo/messages", "{\"body\":\"x\",\"group_id\":\"a b\",\"dedup_id\":\"1\"}",
     NULL, 400},
    {"POST", "/queues/h.fifo/messages", "{\"body\":\"x\",\"group_id\":\"g\"}", NULL, 400},
    {"POST", "/queues/h/messages:batch", "{\"entries\":{}}", NULL, 400},
    {"POST", "/queues/h/messages:batch", "{\"entries\":[1,2,3]}", NULL, 400},
    {"POST", "/queues/h/messages:receive", "{\"max_messages\":0}", NULL, 400},
    {"POST", "/queues/h/messages:receive", "{\"max_messages\":11}", NULL, 400},
    {"POST", "/queues/h/messages:receive", "{\"wait_seconds\":21}", NULL, 400},
    {"POST", "/queues/h/messages:receive", "{\"visibility_timeout\":43201}", NULL, 400},
    {"POST", "/queues/h/messages:receive", "[]", NULL, 400},
    {"POST", "/queues/h/messages:delete", "{\"receipts\":[]}", NULL, 400},
    {"PATCH", "/queues/h/messages/0000000100000000000000010000000000000001",
     "{\"visibility_timeout\":-1}", NULL, 400},
    {"PUT", "/queues/h", "{\"visibility_timeout\":\"30\"}", NULL, 400},
    {"PUT", "/queues/h", "{\"dead_letter\":{\"queue\":\"../etc\",\"max_receive_count\":1}}", NULL,
     400},
    {"PUT", "/queues/h", "{\"dead_letter\":\"h\"}", NULL, 400},
    {"POST", "/queues/h:redrive", "{\"max_messages\":0}", NULL, 400},
    {"POST", "/tokens", "{\"role\":\"admin\",\"name\":\"' OR 1=1 --\",\"x\":1}", NULL, 400},
    /* paths and names */
    {"PUT", "/queues/a%2Fb", NULL, NULL, 400},
    {"PUT", "/queues/..%2F..%2Fetc", NULL, NULL, 400},
    {"PUT", "/queues/%00", NULL, NULL, 400},
    {"PUT", "/queues/x%zz", NULL, NULL, 400},
    {"GET", "/queues/x%2", NULL, NULL, 400},
    {"DELETE", "/queues/h/messages/%zz", NULL, NULL, 400},
    {"GET", "/queues/%27%3B%20DROP%20TABLE%20queues%3B--", NULL, NULL, 404},
    {"GET", "/queues/nope", NULL, NULL, 404},
    {"GET", "/queues/h/../../tokens", NULL, NULL, 404},
    {"DELETE", "/queues/h/messages/zz", NULL, NULL, 404},
    {"DELETE", "/queues/h/messages/ffffffffffffffffffffffffffffffffffffffff", NULL, NULL, 404},
    {"GET", "/queues?limit=99999999999999999999", NULL, NULL, 400},
    {"GET", "/queues?limit=%00", NULL, NULL, 400},
    {"GET", "/queues?after=%ff", NULL, NULL, 400},
    {"GET", "/tokens?after=1e5", NULL, NULL, 400},
    {"BREW", "/queues/h", NULL, NULL, 0},
    {"GET", "/healthz/", NULL, NULL, 404},
    /* Wild Rydes ids and bodies that are not UTF-8 or not ids at all (review of session 2) */
    {"GET", "/fares/%FF", NULL, NULL, 404},
    {"GET", "/fares/ab%C3", NULL, NULL, 404},
    {"GET", "/tasks/%FF", NULL, NULL, 404},
    {"GET", "/rfqs/%FF/status", NULL, NULL, 404},
    {"GET", "/retrieve-rfq-result?id=%FF", NULL, NULL, 404},
    {"GET", "/rides?customer=%FF", NULL, NULL, 400},
    {"GET", "/rides/%FF/fare", NULL, NULL, 404},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"duration\":1,"
     "\"distance\":1,\"fare\":1e-10}",
     NULL, 400},
    {"POST", "/fares",
     "{\"customerId\":\"c\",\"fareId\":\"f\",\"fareAmount\":1e-9,"
     "\"cc\":\"4111111111111111\",\"expiryDate\":\"12/99\",\"cvv\":\"123\"}",
     NULL, 400},
    {"POST", "/queues/h/messages",
     "{\"body\":\"x\",\"attributes\":{"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9\u00e9\":"
     "{\"type\":\"String\",\"value\":\"v\"}}}",
     NULL, 400},
    /* Wild Rydes bodies: NUL bytes, bad UTF-8, huge numbers, wrong types, duplicate keys,
     * SQL-looking text, unknown fields */
    {"POST", "/rides",
     "{\"from\":\"a\\u0000b\",\"to\":\"b\",\"customer\":\"c\",\"duration\":1,"
     "\"distance\":1,\"fare\":1}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"\xc3\x28\",\"duration\":1,"
     "\"distance\":1,\"fare\":1}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"duration\":1,"
     "\"distance\":1,\"fare\":1e400}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"duration\":"
     "99999999999999999999999,\"distance\":1,\"fare\":1}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"duration\":1,"
     "\"distance\":\"NaN\",\"fare\":1}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":[\"c\"],\"duration\":1,"
     "\"distance\":1,\"fare\":{\"amount\":1}}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"customer\":\"d\","
     "\"duration\":1,\"distance\":1,\"fare\":1}",
     NULL, 400},
    {"POST", "/rides",
     "{\"from\":\"a'); DROP TABLE rides;--\",\"to\":\"b\",\"customer\":\"c\","
     "\"duration\":1,\"distance\":1,\"fare\":1,\"admin\":true}",
     NULL, 400},
    {"POST", "/rides", "[{\"from\":\"a\"}]", NULL, 400},
    {"POST", "/rides", "{\"from\":\"a\"", NULL, 400},
    {"POST", "/prebookings",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"when\":\"2099-13-45T25:61:61Z\"}", NULL,
     400},
    {"POST", "/prebookings",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"when\":\"1970-01-01T00:00:00Z\"}", NULL,
     400},
    {"POST", "/prebookings",
     "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"when\":99999999999}", NULL, 400},
    {"POST", "/rfqs", "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"timeout_in_secs\":1e18}",
     NULL, 400},
    {"POST", "/rfqs", "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"timeout_in_secs\":-1}",
     NULL, 400},
    {"POST", "/rfqs/00000000-0000-0000-0000-000000000000/quotes",
     "{\"unicorn\":\"u\",\"price\":\"free\"}", NULL, 400},
    /* topics and filter policies */
    {"PUT", "/topics/t%20t", NULL, NULL, 400},
    {"PUT", "/topics/h", "{\"fifo\":\"yes\"}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s", "{\"queue\":\"h\",\"url\":\"http://x\"}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s", "{\"url\":\"file:///etc/passwd\"}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s", "{\"url\":\"gopher://127.0.0.1:5432/\"}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s",
     "{\"queue\":\"h\",\"filter_policy\":{\"a\":[{\"numeric\":[\">\",\"x\"]}]}}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s",
     "{\"queue\":\"h\",\"filter_policy\":{\"a\":[{\"prefix\":1}]}}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s", "{\"queue\":\"h\",\"filter_policy\":[]}", NULL, 400},
    {"PUT", "/topics/h/subscriptions/s",
     "{\"queue\":\"h\",\"filter_policy\":{\"a\":[\"x\"]},\"filter_policy_scope\":\"everything\"}",
     NULL, 400},
    {"POST", "/topics/h/messages", "{\"body\":\"x\",\"subject\":\"\xff\"}", NULL, 400},
    /* overlong names and headers, path tricks */
    {"PUT", long_path, NULL, NULL, 400},
    {"GET", "//queues//h", NULL, NULL, 404},
    {"GET", "/queues/./h", NULL, NULL, 404},
    {"GET", "/queues/%2e%2e/tokens", NULL, NULL, 0},
    {"GET", "/rides/..%5c..%5cetc", NULL, NULL, 404},
    {"GET", "/queues/h%0d%0aX-Injected:%201", NULL, NULL, 0},
};

/* Hostile headers: the same rules, one extra header each (no bearer token when it is an
 * Authorization header). */
#define RIDE \
    "{\"from\":\"a\",\"to\":\"b\",\"customer\":\"c\",\"duration\":1,\"distance\":1,\"fare\":1}"
static const struct {
    const char *method, *path, *body, *header;
    long status;
} header_cases[] = {
    {"POST", "/rides", RIDE, long_key, 400},
    {"POST", "/rides", RIDE, "Idempotency-Key: \x01\x02", 400},
    {"POST", "/rides", RIDE, "Idempotency-Key: caf\xc3\xa9 \xff", 400},
    {"GET", "/queues/h", NULL, "Authorization: Basic YWRtaW46YWRtaW4=", 401},
    {"GET", "/queues/h", NULL, "Authorization: Bearer ' OR 1=1 --", 401},
    {"GET", "/queues/h", NULL, "Authorization: Bearer", 401},
};

/* Fills the long texts of the table (an Idempotency-Key past any sane length, a queue name
 * past the 80-character limit). */
static void build_long_texts(void)
{
    int n = snprintf(long_key, sizeof long_key, "Idempotency-Key: ");
    memset(long_key + n, 'k', sizeof long_key - (size_t)n - 1);
    memset(long_name, 'q', sizeof long_name - 1);
    snprintf(long_path, sizeof long_path, "/queues/%s", long_name);
    n = snprintf(long_id_header, sizeof long_id_header, "X-Request-Id: ");
    memset(long_id_header + n, 'r', sizeof long_id_header - (size_t)n - 1);
}

START_TEST(hostile_requests_get_4xx_problems)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct hostile *c = &cases[i];
        struct response r;
        harness_request(&srv, c->method, c->path, A, c->body, c->content_type, NULL, &r);
        ck_assert_msg(r.status >= 400 && r.status < 500, "%s %s %s: %ld %s", c->method, c->path,
                      c->body ? c->body : "", r.status, buf_str(&r.body));
        if (c->status)
            ck_assert_msg(r.status == c->status, "%s %s %s: %ld, expected %ld: %s", c->method,
                          c->path, c->body ? c->body : "", r.status, c->status, buf_str(&r.body));
        if (strcmp(c->method, "HEAD") != 0)
            assert_problem(&r, r.status);
        response_cleanup(&r);
    }
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

START_TEST(deeply_nested_json_is_refused)
{
    char body[6000];
    size_t n = 0;
    n += (size_t)snprintf(body, sizeof body, "{\"body\":");
    for (int i = 0; i < 2500; i++)
        body[n++] = '[';
    for (int i = 0; i < 2500; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    struct response r;
    harness_request(&srv, "POST", "/queues/h/messages", A, body, NULL, NULL, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
}
END_TEST

START_TEST(hostile_headers_get_4xx_problems)
{
    for (size_t i = 0; i < sizeof header_cases / sizeof header_cases[0]; i++) {
        const char *h = header_cases[i].header;
        const char *token = strncmp(h, "Authorization", 13) == 0 ? NULL : A;
        struct response r;
        harness_request(&srv, header_cases[i].method, header_cases[i].path, token,
                        header_cases[i].body, NULL, h, &r);
        ck_assert_msg(r.status == header_cases[i].status, "%s %s with header %zu: %ld %s",
                      header_cases[i].method, header_cases[i].path, i, r.status, buf_str(&r.body));
        assert_problem(&r, r.status);
        response_cleanup(&r);
    }
}
END_TEST

/* A path parameter with a malformed percent-escape or %00 is no value any resource has: a 400
 * naming the parameter (openapi: PUT of an invalid queue name is 400 on field name; these were
 * 404 while the rest of the invalid names were 400). */
START_TEST(undecodable_path_parameters_are_400_naming_them)
{
    const struct {
        const char *method, *path, *field;
    } bad[] = {
        {"PUT", "/queues/a%00b", "name"},
        {"PUT", "/queues/a%zzb", "name"},
        {"PATCH", "/queues/h/messages/%4", "receipt"},
        {"GET", "/tokens/%", "id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct response r;
        harness_request(&srv, bad[i].method, bad[i].path, A,
                        strcmp(bad[i].method, "PATCH") ? NULL : "{\"visibility_timeout\": 1}", NULL,
                        NULL, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, bad[i].field), "%s %s: %s", bad[i].method,
                      bad[i].path, buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

/* A request id that is too long is replaced, not echoed or refused. */
START_TEST(an_overlong_request_id_is_replaced)
{
    struct response r;
    harness_request(&srv, "GET", "/queues/h", A, NULL, NULL, long_id_header, &r);
    ck_assert_int_eq(r.status, 200);
    char id[200];
    ck_assert(response_header(&r, "X-Request-Id", id, sizeof id));
    ck_assert_int_lt(strlen(id), 129);
    ck_assert_ptr_null(strstr(id, "rrrrrrrrrrrrrrrrrrrr"));
    response_cleanup(&r);
}
END_TEST

/* Headers past RYDES_CONNECTION_MEMORY_LIMIT never reach a handler: libmicrohttpd answers 431
 * itself (its own short HTML body, Connection: close). The server keeps serving. */
START_TEST(headers_past_the_connection_memory_get_431)
{
    static char huge[40000];
    int n = snprintf(huge, sizeof huge, "X-Huge: ");
    memset(huge + n, 'h', sizeof huge - (size_t)n - 1);
    struct response r;
    harness_request(&srv, "GET", "/queues/h", A, NULL, NULL, huge, &r);
    ck_assert_int_eq(r.status, 431);
    response_cleanup(&r);
    harness_request(&srv, "GET", "/queues/h", A, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

/* Writes raw, one or more requests, on a connection of its own and reads until the server
 * closes it (5 s at most) into out (NUL-terminated). */
static void exchange_raw(const char *raw, char *out, size_t out_len)
{
    int fd = harness_connect(&srv, NULL);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
    size_t got = 0;
    ssize_t n;
    while (got < out_len - 1 && (n = read(fd, out + got, out_len - 1 - got)) > 0)
        got += (size_t)n;
    ck_assert_msg(n == 0, "the connection was not closed: %s", out);
    close(fd);
    out[got] = '\0';
}

/* A body that could be delimited two ways (two Content-Lengths, or one beside Transfer-Encoding)
 * is refused and the connection closed: the bytes after it are not read as a request of their
 * own, which a proxy that read the other length would have sent on as part of this one
 * (request smuggling). libmicrohttpd took the first length and answered the rest. */
START_TEST(ambiguous_framing_is_400_and_closes_the_connection)
{
#define TWO_WAYS    "two Content-Length headers, or Content-Length beside Transfer-Encoding"
#define NOT_CHUNKED "Transfer-Encoding is not chunked"
#define BAD_NAME    "a header name holds a character HTTP does not allow"
#define SMUGGLED    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    static const char *const smuggles[][2] = {
        {"POST /rides HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 2\r\nContent-Length: 39\r\n\r\n{}" SMUGGLED,
         TWO_WAYS},
        {"POST /rides HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}" SMUGGLED,
         TWO_WAYS},
        {"POST /rides HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" SMUGGLED,
         TWO_WAYS},
        /* a space before the colon: libmicrohttpd kept "Content-Length " as another header and
         * read no body, so the body was the next request */
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 35\r\n\r\n" SMUGGLED, BAD_NAME},
        {"POST /rides HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n"
         "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         BAD_NAME},
        /* a coding other than chunked last: the body's end unknown (it waited for the request
         * timeout) */
        {"POST /rides HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\nabc", NOT_CHUNKED},
        {"POST /rides HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
         NOT_CHUNKED},
        {"POST /rides HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         NOT_CHUNKED},
    };
    for (size_t i = 0; i < sizeof smuggles / sizeof smuggles[0]; i++) {
        char in[8192];
        exchange_raw(smuggles[i][0], in, sizeof in);
        ck_assert_msg(strncmp(in, "HTTP/1.1 400", 12) == 0, "%zu: %s", i, in);
        ck_assert_msg(strcasestr(in, "\r\nConnection: close\r\n") != NULL, "%zu: %s", i, in);
        ck_assert_msg(strstr(in, smuggles[i][1]) != NULL, "%zu: %s", i, in);
        ck_assert_msg(strstr(in + 12, "HTTP/1.1 ") == NULL, "%zu: a second answer: %s", i, in);
    }
    char in[4096]; /* one length, stated once: served as before */
    exchange_raw("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n",
                 in, sizeof in);
    ck_assert_msg(strncmp(in, "HTTP/1.1 200", 12) == 0, "%s", in);
}
END_TEST

/* HTTP/1.1 needs one Host header (libmicrohttpd 0.9.75 let a request without one through);
 * HTTP/1.0 needs none. */
START_TEST(an_http11_request_needs_one_host)
{
    static const char *const hosts[][2] = {
        {"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nhost: y\r\nConnection: close\r\n\r\n",
         "HTTP/1.1 400"},
        {"GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.1 200"},
        {"GET /healthz HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", "HTTP/1.1 400"},
    };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        char in[4096];
        exchange_raw(hosts[i][0], in, sizeof in);
        ck_assert_msg(strncmp(in, hosts[i][1], 12) == 0, "%zu: %s", i, in);
        if (hosts[i][1][9] == '4')
            ck_assert_msg(strstr(in, "an HTTP/1.1 request needs one Host header"), "%s", in);
    }
}
END_TEST

/* Authorization, Content-Type and Idempotency-Key given twice: a 400 naming the header, not the
 * first one taken (a lookup saw only that: another key than the client meant, or a second token
 * a proxy added). */
START_TEST(headers_given_twice_are_400)
{
    static const char *const twice[][2] = {
        {"Authorization: Bearer " A "\r\nAuthorization: Bearer nope\r\n", "Authorization"},
        {"Authorization: Bearer " A "\r\nContent-Type: text/plain\r\n", "Content-Type"},
        {"Authorization: Bearer " A "\r\nIdempotency-Key: k1\r\nidempotency-key: k2\r\n",
         "Idempotency-Key"},
    };
    for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
        char raw[1024], in[8192], want[96];
        snprintf(raw, sizeof raw,
                 "POST /rides HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%s",
                 twice[i][0], strlen(RIDE), RIDE);
        exchange_raw(raw, in, sizeof in);
        ck_assert_msg(strncmp(in, "HTTP/1.1 400", 12) == 0, "%zu: %s", i, in);
        snprintf(want, sizeof want, "the request gives the %s header more than once", twice[i][1]);
        ck_assert_msg(strstr(in, want) != NULL, "%zu: %s", i, in);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides"), 0);
}
END_TEST

int main(void)
{
    build_long_texts();
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, hostile_requests_get_4xx_problems);
    tcase_add_test(tc, deeply_nested_json_is_refused);
    tcase_add_test(tc, an_overlong_request_id_is_replaced);
    tcase_add_test(tc, hostile_headers_get_4xx_problems);
    tcase_add_test(tc, headers_past_the_connection_memory_get_431);
    tcase_add_test(tc, ambiguous_framing_is_400_and_closes_the_connection);
    tcase_add_test(tc, an_http11_request_needs_one_host);
    tcase_add_test(tc, undecodable_path_parameters_are_400_naming_them);
    tcase_add_test(tc, headers_given_twice_are_400);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
