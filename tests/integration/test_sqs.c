/* Integration: the AWS wire protocols at the protocol level, with curl against the real server
 * and database: SigV4 failures (missing, malformed, unknown key, wrong secret, clock skew) in
 * both envelopes (JSON __type + x-amzn-query-error, XML <ErrorResponse>), SQS errors of both
 * protocols, unknown operations, malformed bodies, roles, the queue-URL route of the query
 * protocol and an unknown SNS action (tests/integration/test_sns.c has SNS). Requests are
 * signed here with rydes/sigv4.h (the signature itself is checked against AWS's published
 * example in tests/unit/test_sigv4.c and against real AWS clients in tests/aws/). */
#include "harness.h"

#include "rydes/clock.h"

#include "rydes/aws_store.h"
#include "rydes/md5attrs.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_hub.h"
#include "rydes/prebookings.h"
#include "rydes/router.h"
#include "rydes/secret.h"
#include "rydes/sigv4.h"
#include "rydes/tokens.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct harness_server srv;
static char admin_key[AWS_ACCESS_KEY_LEN], admin_secret[AWS_SECRET_LEN];
static char service_key[AWS_ACCESS_KEY_LEN], service_secret[AWS_SECRET_LEN];

/* Issues a key of a new token of role into key and secret; its token's id into token_id when
 * that is not NULL (IDS_UUID_LEN). */
static void make_key_of(enum role role, char *key, char *secret, char *token_id)
{
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert(PQstatus(pg) == CONNECTION_OK);
    struct db_conn c = {.pg = pg};
    char token[SECRET_TOKEN_LEN];
    struct token_info t;
    ck_assert_int_eq(tokens_create(&c, role, "sqs-test", token, &t), STORE_OK);
    ck_assert_int_eq(aws_credentials_create(&c, t.id, key, secret), STORE_OK);
    ck_assert_int_eq((int)strlen(key), 20);
    ck_assert_int_eq((int)strlen(secret), 40);
    if (token_id)
        snprintf(token_id, 40, "%s", t.id);
    PQfinish(pg);
}

static void make_key(enum role role, char *key, char *secret)
{
    make_key_of(role, key, secret, NULL);
}

static void setup(void)
{
    harness_start(&srv, NULL);
    make_key(ROLE_ADMIN, admin_key, admin_secret);
    make_key(ROLE_SERVICE, service_key, service_secret);
}

static void teardown(void)
{
    harness_stop(&srv);
}

struct signed_request {
    const char *path, *body, *content_type, *target; /* target NULL: the query protocol */
    const char *key, *secret, *service;
    int64_t skew_s;
    const char *host; /* NULL: the server's address */
};

struct header_set {
    const char *host, *date, *type, *target;
};

static const char *header_of(void *ctx, const char *name)
{
    struct header_set *h = ctx;
    return strcmp(name, "host") == 0           ? h->host
           : strcmp(name, "x-amz-date") == 0   ? h->date
           : strcmp(name, "content-type") == 0 ? h->type
                                               : h->target;
}

/* The canonical query of the query part q ("a=1&b=2", percent-encoded) of a test's path into
 * out. */
static void test_canonical_query(const char *q, struct buf *out)
{
    char *copy = strdup(q), *names[40], *values[40], *save = NULL;
    size_t n = 0;
    for (char *p = strtok_r(copy, "&", &save); p && n < 40; p = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(p, '=');
        if (eq)
            *eq = '\0';
        names[n] = router_percent_decode(p, strlen(p));
        values[n++] = eq ? router_percent_decode(eq + 1, strlen(eq + 1)) : NULL;
    }
    sigv4_canonical_query((const char *const *)names, (const char *const *)values, n, out);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(values[i]);
    }
    free(copy);
}

/* Sends r signed with SigV4 (scope us-east-1/service) into out; a query in r->path is
 * signed too. */
static void send_signed(const struct signed_request *r, struct response *out)
{
    char date[17];
    time_t now = time(NULL) + r->skew_s;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    struct header_set h = {r->host ? r->host : srv.base + 7, date, r->content_type, r->target};
    const char *signed_headers =
        r->target ? "content-type;host;x-amz-date;x-amz-target" : "content-type;host;x-amz-date";
    char path[256];
    snprintf(path, sizeof path, "%s", r->path);
    char *question = strchr(path, '?');
    struct buf c, s, q;
    buf_init(&c);
    buf_init(&s);
    buf_init(&q);
    if (question) {
        *question = '\0';
        test_canonical_query(question + 1, &q);
    }
    struct sigv4_request sr = {"POST", path, buf_str(&q), header_of, &h, r->body, strlen(r->body)};
    sigv4_canonical_request(&sr, signed_headers, &c);
    char scope[96], sig[65], extra[1024];
    snprintf(scope, sizeof scope, "%.8s/us-east-1/%s/aws4_request", date, r->service);
    sigv4_string_to_sign(date, scope, buf_str(&c), &s);
    unsigned char key[32];
    char day[9];
    snprintf(day, sizeof day, "%.8s", date);
    sigv4_signing_key(r->secret, day, "us-east-1", r->service, key);
    sigv4_hmac_hex(key, buf_str(&s), s.len, sig);
    snprintf(extra, sizeof extra,
             "X-Amz-Date: %s\nAuthorization: AWS4-HMAC-SHA256 Credential=%s/%s, "
             "SignedHeaders=%s, Signature=%s%s%s%s%s",
             date, r->key, scope, signed_headers, sig, r->target ? "\nX-Amz-Target: " : "",
             r->target ? r->target : "", r->host ? "\nHost: " : "", r->host ? r->host : "");
    harness_request(&srv, "POST", r->path, NULL, r->body, r->content_type, extra, out);
    buf_cleanup(&c);
    buf_cleanup(&s);
    buf_cleanup(&q);
}

#define JSON_TYPE  "application/x-amz-json-1.0"
#define QUERY_TYPE "application/x-www-form-urlencoded"

static void json_call(const char *op, const char *body, const char *key, const char *secret,
                      struct response *out)
{
    char target[96];
    snprintf(target, sizeof target, "AmazonSQS.%s", op);
    struct signed_request r = {"/", body, JSON_TYPE, target, key, secret, "sqs", 0, NULL};
    send_signed(&r, out);
}

static void query_call(const char *path, const char *body, struct response *out)
{
    struct signed_request r = {path,         body,  QUERY_TYPE, NULL, admin_key,
                               admin_secret, "sqs", 0,          NULL};
    send_signed(&r, out);
}

/* CreateQueue name over the query protocol; asserts 200. */
static void create_queue(const char *name)
{
    char body[128];
    snprintf(body, sizeof body, "Action=CreateQueue&QueueName=%s", name);
    struct response r;
    query_call("/", body, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}

/* A JSON-protocol error: status, __type suffix and x-amzn-query-error code. */
static void assert_json_error(struct response *r, long status, const char *type, const char *code)
{
    ck_assert_int_eq(r->status, status);
    char ct[64], qe[160], want[160];
    ck_assert(response_header(r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, JSON_TYPE);
    json_t *j = json_loads(buf_str(&r->body), 0, NULL);
    ck_assert_ptr_nonnull(j);
    const char *t = json_string_value(json_object_get(j, "__type"));
    ck_assert_msg(t && strstr(t, type), "__type %s", t ? t : "(none)");
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "message")));
    json_decref(j);
    ck_assert(response_header(r, "x-amzn-query-error", qe, sizeof qe));
    snprintf(want, sizeof want, "%s;Sender", code);
    ck_assert_str_eq(qe, want);
}

/* A query-protocol error: status and <Code> in an <ErrorResponse>. */
static void assert_xml_error(struct response *r, long status, const char *code)
{
    ck_assert_int_eq(r->status, status);
    char want[160];
    snprintf(want, sizeof want, "<Code>%s</Code>", code);
    const char *b = buf_str(&r->body);
    ck_assert_msg(strstr(b, "<ErrorResponse") && strstr(b, want) && strstr(b, "<RequestId>"), "%s",
                  b);
}

START_TEST(missing_and_malformed_signatures)
{
    struct response r;
    harness_request(&srv, "POST", "/", NULL, "{}", JSON_TYPE, "X-Amz-Target: AmazonSQS.ListQueues",
                    &r);
    assert_json_error(&r, 403, "#MissingAuthenticationToken", "MissingAuthenticationToken");
    response_cleanup(&r);
    harness_request(&srv, "POST", "/", NULL, "Action=ListQueues", QUERY_TYPE, NULL, &r);
    assert_xml_error(&r, 403, "MissingAuthenticationToken");
    response_cleanup(&r);
    harness_request(&srv, "POST", "/", NULL, "Action=ListQueues", QUERY_TYPE,
                    "Authorization: AWS4-HMAC-SHA256 Credential=nonsense", &r);
    assert_xml_error(&r, 400, "IncompleteSignature");
    response_cleanup(&r);
}
END_TEST

/* The reply to headers of POST / that announce body_len bytes of a query-protocol body (with
 * auth, an Authorization header line, or none) and send none, read within 3 s; "" when none
 * came (the server waits for the body). */
static void answer_before_body(const char *auth, size_t body_len, char *reply, size_t n)
{
    int fd = harness_connect(&srv, NULL);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    reply[0] = '\0';
    int len = snprintf(req, sizeof req,
                       "POST / HTTP/1.1\r\nHost: rydes\r\nContent-Type: %s\r\n%s%s"
                       "Content-Length: %zu\r\n\r\n",
                       QUERY_TYPE, auth ? auth : "", auth ? "\r\n" : "", body_len);
    ck_assert_int_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    size_t got = 0;
    ssize_t r;
    while (got < n - 1 && !strstr(reply, "</ErrorResponse>") &&
           (r = recv(fd, reply + got, n - 1 - got, 0)) > 0) {
        got += (size_t)r;
        reply[got] = '\0';
    }
    reply[got] = '\0';
    close(fd);
}

/* A request without a signature of an existing access key is answered once its headers are in:
 * the server buffers no body for it (anyone could make it hold up to RYDES_MAX_BODY_BYTES per
 * connection before). */
START_TEST(unsigned_requests_are_answered_before_their_body)
{
    char reply[2048];
    answer_before_body(NULL, 900000, reply, sizeof reply);
    ck_assert_msg(strstr(reply, " 403 ") && strstr(reply, "MissingAuthenticationToken"), "%s",
                  reply);
    answer_before_body("Authorization: AWS4-HMAC-SHA256 Credential=AKIDAAAAAAAAAAAAAAAA/20261128/"
                       "us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature="
                       "0000000000000000000000000000000000000000000000000000000000000000",
                       900000, reply, sizeof reply);
    ck_assert_msg(strstr(reply, " 403 ") && strstr(reply, "InvalidClientTokenId"), "%s", reply);
}
END_TEST

/* A lock on aws_credentials (DDL, VACUUM FULL) holds an access key's lookup 250 ms at most
 * (sql/059): ServiceUnavailable, while the HTTP thread, which runs the lookup, serves the rest.
 * The lookup used to wait for the lock with every request behind it. */
START_TEST(a_locked_credential_table_is_unavailable_not_a_stall)
{
    PGconn *lock = harness_lock_table("aws_credentials");
    struct response locked, health; /* a key of the issued form never issued: never cached */
    json_call("ListQueues", "{}", "AKIDBBBBBBBBBBBBBBBB", admin_secret, &locked);
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &health);
    ck_assert(harness_unlock_table(lock, "aws_credentials")); /* answered while it held */
    ck_assert_int_eq(locked.status, 503); /* a Receiver fault, as the x-amzn-query-error says */
    ck_assert_msg(strstr(buf_str(&locked.body), "#ServiceUnavailable"), "%s",
                  buf_str(&locked.body));
    ck_assert_int_eq(health.status, 200);
    response_cleanup(&locked);
    response_cleanup(&health);
    struct response res;
    json_call("ListQueues", "{}", "AKIDBBBBBBBBBBBBBBBB", admin_secret, &res);
    assert_json_error(&res, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
    response_cleanup(&res);
}
END_TEST

static void unknown_key_call(void *arg, struct response *out)
{
    (void)arg;
    json_call("ListQueues", "{}", "AKIDDDDDDDDDDDDDDDDD", admin_secret, out);
}

/* An access key the cache does not hold is looked up on a data-plane thread: a lookup waiting
 * (here 1.5 s for the one pooled connection) holds no HTTP thread, and the only one answers the
 * rest meanwhile; a key found there lets its request go on, the body read afterwards. */
START_TEST(a_waiting_key_lookup_holds_no_http_thread)
{
    static struct harness_async a = {.call = unknown_key_call}; /* static: see harness.h */
    ck_assert_msg(harness_answered_while_the_pool_is_held(&srv, &a),
                  "/healthz waited for the lookup");
    ck_assert_int_eq(a.r.status, 503); /* no connection came in time */
    response_cleanup(&a.r);
    create_queue("after-lookup");
    struct response r;
    query_call("/000000000000/after-lookup", "Action=SendMessage&MessageBody=whole", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("after-lookup"), 1);
}
END_TEST

START_TEST(unknown_key_wrong_secret_and_skew)
{
    struct response r;
    json_call("ListQueues", "{}", "AKIDAAAAAAAAAAAAAAAA", admin_secret, &r);
    assert_json_error(&r, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
    response_cleanup(&r);
    json_call("ListQueues", "{}", admin_key, "0123456789012345678901234567890123456789", &r);
    assert_json_error(&r, 403, "#SignatureDoesNotMatch", "SignatureDoesNotMatch");
    response_cleanup(&r);
    struct signed_request skewed = {
        "/", "Action=ListQueues", QUERY_TYPE, NULL, admin_key, admin_secret, "sqs", 3600, NULL};
    send_signed(&skewed, &r);
    assert_xml_error(&r, 403, "SignatureDoesNotMatch");
    ck_assert(strstr(buf_str(&r.body), "Signature expired"));
    response_cleanup(&r);
    /* a query string (a proxy's or a client's addition) is part of what is signed: it was
     * taken as empty, and every such request failed to verify */
    struct signed_request query = {"/?b=2&a=1%202&c&d=x+y",
                                   "{}",
                                   JSON_TYPE,
                                   "AmazonSQS.ListQueues",
                                   admin_key,
                                   admin_secret,
                                   "sqs",
                                   0,
                                   NULL};
    send_signed(&query, &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    /* 32 arguments at most, and more is said as such, not as a signature that does not match */
    char path[400] = "/?";
    for (int i = 0; i < 33; i++)
        snprintf(path + strlen(path), sizeof path - strlen(path), "%sa%d=1", i ? "&" : "", i);
    query.path = path;
    send_signed(&query, &r);
    assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
    ck_assert_msg(strstr(buf_str(&r.body), "more than 32 arguments"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    *strrchr(path, '&') = '\0'; /* 32: signed and checked */
    send_signed(&query, &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
}
END_TEST

/* A budget of 5 failed lookups per address that does not refill within a test. */
static void small_failure_budget(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "auth-failure-burst", "5", &err));
    ck_assert(config_set_flag(cfg, "auth-failures-per-minute", "1", &err));
}

/* Unknown access keys are looked up only so often per client address (app_lookup_allowed):
 * then Throttled with Retry-After, without a query. A key found valid lately is looked up
 * whatever the budget. */
START_TEST(unknown_keys_are_looked_up_only_so_often)
{
    harness_stop(&srv);
    harness_start(&srv, small_failure_budget);
    struct response r;
    json_call("ListQueues", "{}", admin_key, admin_secret, &r); /* found valid: seen */
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    char key[32];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "AKIDAAAAAAAAAAAAAAA%c", 'A' + i);
        json_call("ListQueues", "{}", key, admin_secret, &r);
        assert_json_error(&r, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
        response_cleanup(&r);
    }
    json_call("ListQueues", "{}", "AKIDAAAAAAAAAAAAAAAZ", admin_secret, &r);
    assert_json_error(&r, 403, "#RequestThrottled", "RequestThrottled");
    char ra[16];
    ck_assert(response_header(&r, "Retry-After", ra, sizeof ra));
    ck_assert_msg(strstr(buf_str(&r.body), "came from this address"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    harness_sleep_ms(1100); /* past the key cache's second: the next call is a lookup */
    json_call("ListQueues", "{}", admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

START_TEST(sqs_errors_in_both_protocols)
{
    struct response r;
    json_call("GetQueueUrl", "{\"QueueName\":\"no-such-queue\"}", admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue");
    response_cleanup(&r);
    query_call("/", "Action=GetQueueUrl&QueueName=no-such-queue", &r);
    assert_xml_error(&r, 400, "AWS.SimpleQueueService.NonExistentQueue");
    response_cleanup(&r);
    json_call("GetQueueUrl", "{}", admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#MissingParameter", "MissingParameter");
    response_cleanup(&r);
    json_call("CreateQueue", "{\"QueueName\":\"bad name!\"}", admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
    response_cleanup(&r);
    /* a .fifo name without FifoQueue=true is a standard queue's name, which holds no '.'
     * (it used to make a FIFO queue); with FifoQueue=false likewise */
    const char *fifo_unasked[] = {"{\"QueueName\":\"unasked.fifo\"}",
                                  "{\"QueueName\":\"unasked.fifo\",\"Attributes\":"
                                  "{\"FifoQueue\":\"false\"}}"};
    for (int i = 0; i < 2; i++) {
        json_call("CreateQueue", fifo_unasked[i], admin_key, admin_secret, &r);
        assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'unasked.fifo'"), 0);
    json_call("CreateQueue", "{\"QueueName\":\"a\",\"Attributes\":{\"Nope\":\"1\"}}", admin_key,
              admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidAttributeName", "InvalidAttributeName");
    response_cleanup(&r);
    /* a known attribute whose value is not a string has a bad value, not a bad name */
    json_call("CreateQueue",
              "{\"QueueName\":\"a\",\"Attributes\":{\"RedrivePolicy\":{\"maxReceiveCount\":1}}}",
              admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidAttributeValue", "InvalidAttributeValue");
    response_cleanup(&r);
    json_call("NoSuchOperation", "{}", admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#UnknownOperationException", "InvalidAction");
    response_cleanup(&r);
    json_call("ListQueues", "{not json", admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#SerializationException", "MalformedQueryString");
    response_cleanup(&r);
    query_call("/", "Action=Explode", &r);
    assert_xml_error(&r, 400, "InvalidAction");
    response_cleanup(&r);
    query_call("/", "QueueName=x", &r);
    assert_xml_error(&r, 400, "MissingAction");
    response_cleanup(&r);
    query_call("/", "Action=ListQueues&Bad=%zz", &r);
    assert_xml_error(&r, 400, "MalformedQueryString");
    response_cleanup(&r);
    query_call("/", "Action=SendMessageBatch&QueueUrl=http://x/000000000000/q", &r);
    assert_xml_error(&r, 400, "AWS.SimpleQueueService.EmptyBatchRequest");
    response_cleanup(&r);
}
END_TEST

START_TEST(roles_apply)
{
    struct response r;
    json_call("CreateQueue", "{\"QueueName\":\"by-service\"}", service_key, service_secret, &r);
    ck_assert_int_eq(r.status, 403);
    assert_json_error(&r, 403, "#AccessDenied", "AccessDenied");
    response_cleanup(&r);
    json_call("ListQueues", "{}", service_key, service_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

START_TEST(query_protocol_on_the_queue_url)
{
    struct response r;
    query_call("/",
               "Action=CreateQueue&QueueName=sqs-it&Attribute.1.Name=VisibilityTimeout"
               "&Attribute.1.Value=40",
               &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(buf_str(&r.body), "/000000000000/sqs-it</QueueUrl>"));
    response_cleanup(&r);
    query_call("/000000000000/sqs-it", "Action=SendMessage&MessageBody=a%26b%3Cc", &r);
    ck_assert_int_eq(r.status, 200);
    /* MD5 of "a&b<c" */
    ck_assert_msg(strstr(buf_str(&r.body),
                         "<MD5OfMessageBody>bde0855ef275206f964a8c0a982ae949</MD5OfMessageBody>"),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
    query_call("/000000000000/sqs-it", "Action=ReceiveMessage&AttributeName.1=All", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(buf_str(&r.body), "<Body>a&amp;b&lt;c</Body>"));
    ck_assert(strstr(buf_str(&r.body), "<Name>ApproximateReceiveCount</Name><Value>1</Value>"));
    response_cleanup(&r);
    json_call("GetQueueAttributes",
              "{\"QueueUrl\":\"http://elsewhere/000000000000/sqs-it\",\"AttributeNames\":"
              "[\"VisibilityTimeout\"]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(buf_str(&r.body), "{\"Attributes\":{\"VisibilityTimeout\":\"40\"}}");
    response_cleanup(&r);
    /* name lists hold at most 1000 names in JSON too, as the query protocol's indexes */
    static const char *const calls[][2] = {{"GetQueueAttributes", "AttributeNames"},
                                           {"ReceiveMessage", "MessageAttributeNames"},
                                           {"ReceiveMessage", "AttributeNames"}};
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
        struct buf body;
        buf_init(&body);
        buf_printf(&body, "{\"QueueUrl\":\"http://h/000000000000/sqs-it\",\"%s\":[", calls[k][1]);
        for (int i = 0; i < 1001; i++)
            buf_puts(&body, i ? ",\"All\"" : "\"All\"");
        buf_puts(&body, "]}");
        json_call(calls[k][0], buf_str(&body), admin_key, admin_secret, &r);
        assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
        ck_assert_msg(strstr(buf_str(&r.body), "at most 1000"), "%s", buf_str(&r.body));
        response_cleanup(&r);
        buf_cleanup(&body);
    }
}
END_TEST

/* A queue URL names the client's Host only when it is a plain host (and port): anything else
 * would make a URL that names something else, is cut short or is not valid UTF-8. */
START_TEST(queue_urls_take_only_a_plain_host)
{
    static const char *const hosts[][2] = {
        {"sqs.example.com:4566", "http://sqs.example.com:4566/000000000000/hosty"},
        {"[::1]:8080", "http://[::1]:8080/000000000000/hosty"},
        {"evil.example.com/x?", "http://localhost/000000000000/hosty"},
        {"a\xc3", "http://localhost/000000000000/hosty"}};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        struct signed_request req = {"/",        "{\"QueueName\":\"hosty\"}",
                                     JSON_TYPE,  "AmazonSQS.CreateQueue",
                                     admin_key,  admin_secret,
                                     "sqs",      0,
                                     hosts[i][0]};
        struct response r;
        send_signed(&req, &r);
        ck_assert_msg(r.status == 200, "%s: %ld %s", hosts[i][0], r.status, buf_str(&r.body));
        ck_assert_str_eq(json_str(r.json, "QueueUrl"), hosts[i][1]);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(sns_unknown_action)
{
    struct response r;
    struct signed_request sns = {"/",        "Action=CreatePlatformApplication&Version=2010-03-31",
                                 QUERY_TYPE, NULL,
                                 admin_key,  admin_secret,
                                 "sns",      0,
                                 NULL};
    send_signed(&sns, &r);
    assert_xml_error(&r, 400, "InvalidAction");
    ck_assert(strstr(buf_str(&r.body), "sns.amazonaws.com"));
    response_cleanup(&r);
}
END_TEST

/* ---- review fixes ---- */

/* Sends a query-protocol call to path signed with key and secret into out. */
static void query_as(const char *path, const char *body, const char *key, const char *secret,
                     struct response *out)
{
    struct signed_request r = {path, body, QUERY_TYPE, NULL, key, secret, "sqs", 0, NULL};
    send_signed(&r, out);
}

/* Is the text of a 200 one that XML 1.0 can hold: no control character but tab, LF and CR,
 * no U+FFFE or U+FFFF (what made receives of such messages unparsable)? */
static bool xml_text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
        if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
            return false;
    }
    return true;
}

/* A control character in a message attribute value, its data type, a tag or a body is refused
 * (SQS's allowed characters); one that arrived through the REST API is still received over the
 * query protocol as XML that parses, with U+FFFD in its place. */
START_TEST(control_characters_are_refused_or_replaced)
{
    struct response r;
    create_queue("ctl");
    query_call("/000000000000/ctl",
               "Action=SendMessage&MessageBody=ok&MessageAttribute.1.Name=a"
               "&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue="
               "x%01y",
               &r);
    assert_xml_error(&r, 400, "InvalidParameterValue");
    response_cleanup(&r);
    json_call("SendMessage",
              "{\"QueueUrl\":\"http://h/000000000000/ctl\",\"MessageBody\":\"ok\","
              "\"MessageAttributes\":{\"a\":{\"DataType\":\"String.\\u0002\","
              "\"StringValue\":\"v\"}}}",
              admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
    response_cleanup(&r);
    json_call("SendMessageBatch",
              "{\"QueueUrl\":\"http://h/000000000000/ctl\",\"Entries\":[{\"Id\":\"a\","
              "\"MessageBody\":\"ok\",\"MessageAttributes\":{\"n\":{\"DataType\":\"Number\","
              "\"StringValue\":\"1\\uffff\"}}}]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(buf_str(&r.body), "\"Failed\":[{") &&
                      strstr(buf_str(&r.body), "InvalidParameterValue"),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
    /* an error naming an attribute cut at 100 bytes in the middle of a character: the entry is
     * still answered (the cut text once made json_pack fail, and the entry was in neither list) */
    char name[128], batch[512];
    memset(name, 'a', 99);
    strcpy(name + 99, "\u00e9");
    snprintf(batch, sizeof batch,
             "{\"QueueUrl\":\"http://h/000000000000/ctl\",\"Entries\":[{\"Id\":\"cut\","
             "\"MessageBody\":\"ok\",\"MessageAttributes\":{\"%s\":{\"DataType\":\"String\"}}}]}",
             name);
    json_call("SendMessageBatch", batch, admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(buf_str(&r.body), "\"Id\":\"cut\"") &&
                      strstr(buf_str(&r.body), "\"Failed\":[{"),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
    query_call("/000000000000/ctl", "Action=SendMessage&MessageBody=a%1Fb", &r);
    assert_xml_error(&r, 400, "InvalidMessageContents");
    response_cleanup(&r);
    query_call("/000000000000/ctl", "Action=TagQueue&Tag.1.Key=k&Tag.1.Value=x%01y", &r);
    assert_xml_error(&r, 400, "InvalidParameterValue");
    response_cleanup(&r);
    query_call("/000000000000/ctl", "Action=TagQueue&Tag.1.Key=k%08&Tag.1.Value=v", &r);
    assert_xml_error(&r, 400, "InvalidParameterValue");
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("ctl"), 0);
    /* the REST API takes such text: the query protocol's XML must still parse */
    harness_admin(&srv, "POST", "/queues/ctl/messages",
                  "{\"body\":\"a\\u0001b\\uffffc\",\"attributes\":{\"t\":{\"type\":\"String\","
                  "\"value\":\"x\\u001by\"}}}",
                  &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    query_call("/000000000000/ctl",
               "Action=ReceiveMessage&MessageAttributeName.1=All&VisibilityTimeout=0", &r);
    ck_assert_int_eq(r.status, 200);
    const char *b = buf_str(&r.body);
    ck_assert_msg(xml_text_ok(b), "%s", b);
    ck_assert_msg(strstr(b, "<Body>a\xEF\xBF\xBD"
                            "b\xEF\xBF\xBD"
                            "c</Body>"),
                  "%s", b);
    ck_assert_msg(strstr(b, "<StringValue>x\xEF\xBF\xBDy</StringValue>"), "%s", b);
    /* and the digests the client checks are of the text it reads, not of what was stored */
    char md5[33], amd5[33], want[96];
    secret_md5_hex("a\xEF\xBF\xBD"
                   "b\xEF\xBF\xBD"
                   "c",
                   9, md5);
    snprintf(want, sizeof want, "<MD5OfBody>%s</MD5OfBody>", md5);
    ck_assert_msg(strstr(b, want), "%s", b);
    json_t *read = json_pack("{s:{s:s, s:s}}", "t", "type", "String", "value", "x\xEF\xBF\xBDy");
    ck_assert(md5attrs_hex(read, amd5));
    json_decref(read);
    snprintf(want, sizeof want, "<MD5OfMessageAttributes>%s</MD5OfMessageAttributes>", amd5);
    ck_assert_msg(strstr(b, want), "%s", b);
    response_cleanup(&r);
    /* and again: the message is not stuck behind a broken document */
    query_call("/000000000000/ctl", "Action=ReceiveMessage", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(buf_str(&r.body), "<Message>"));
    response_cleanup(&r);
}
END_TEST

#define TRACE "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

/* MessageSystemAttributes (AWSTraceHeader, which tracing SDKs add to every send) are answered
 * with their digest, MD5OfMessageSystemAttributes, which SDKs compare: without it they raise a
 * checksum error and send again. Any other name, or another type, is refused. */
START_TEST(system_attributes_are_answered_by_digest)
{
    create_queue("sysattr");
    char want[33], tag[128];
    json_t *attrs = json_pack("{s:{s:s, s:s}}", "AWSTraceHeader", "type", "String", "value", TRACE);
    ck_assert(md5attrs_hex(attrs, want));
    json_decref(attrs);
    struct response r;
    json_call("SendMessage",
              "{\"QueueUrl\":\"http://h/000000000000/sysattr\",\"MessageBody\":\"x\","
              "\"MessageSystemAttributes\":{\"AWSTraceHeader\":{\"DataType\":\"String\","
              "\"StringValue\":\"" TRACE "\"}}}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "MD5OfMessageSystemAttributes"), want);
    response_cleanup(&r);
    json_call("SendMessageBatch",
              "{\"QueueUrl\":\"http://h/000000000000/sysattr\",\"Entries\":[{\"Id\":\"a\","
              "\"MessageBody\":\"x\",\"MessageSystemAttributes\":{\"AWSTraceHeader\":{"
              "\"DataType\":\"String\",\"StringValue\":\"" TRACE "\"}}},{\"Id\":\"b\","
              "\"MessageBody\":\"y\"}]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *ok = json_object_get(r.json, "Successful");
    ck_assert_int_eq(json_array_size(ok), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(ok, i);
        const char *md5 = json_str(e, "MD5OfMessageSystemAttributes");
        if (strcmp(json_str(e, "Id"), "a") == 0)
            ck_assert_str_eq(md5, want);
        else
            ck_assert_ptr_null(md5);
    }
    response_cleanup(&r);
    query_call("/000000000000/sysattr",
               "Action=SendMessage&MessageBody=x&MessageSystemAttribute.1.Name=AWSTraceHeader&"
               "MessageSystemAttribute.1.Value.DataType=String&"
               "MessageSystemAttribute.1.Value.StringValue=Root%3D1-5759e988-"
               "bd862e3fe1be46a994272793%3BParent%3D53995c3f42cd8ad8%3BSampled%3D1",
               &r);
    ck_assert_int_eq(r.status, 200);
    snprintf(tag, sizeof tag, "<MD5OfMessageSystemAttributes>%s</MD5OfMessageSystemAttributes>",
             want);
    ck_assert_msg(strstr(buf_str(&r.body), tag), "%s", buf_str(&r.body));
    response_cleanup(&r);
    static const char *const bad[] = {
        "\"Other\":{\"DataType\":\"String\",\"StringValue\":\"v\"}",
        "\"AWSTraceHeader\":{\"DataType\":\"Number\",\"StringValue\":\"1\"}",
        "\"AWSTraceHeader\":{\"DataType\":\"String\"}",
    };
    json_call("SendMessage",
              "{\"QueueUrl\":\"http://h/000000000000/sysattr\",\"MessageBody\":\"x\","
              "\"MessageSystemAttributes\":\"AWSTraceHeader\"}",
              admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
    ck_assert_ptr_nonnull(strstr(buf_str(&r.body), "MessageSystemAttributes must be a map"));
    response_cleanup(&r);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"QueueUrl\":\"http://h/000000000000/sysattr\",\"MessageBody\":\"x\","
                 "\"MessageSystemAttributes\":{%s}}",
                 bad[i]);
        json_call("SendMessage", body, admin_key, admin_secret, &r);
        assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("sysattr"), 4);
}
END_TEST

/* ListQueues filters by QueueNamePrefix in the database and pages what matches: no NextToken
 * after the last match (one used to follow a page whose last match was not the last name of
 * the page read, leading to an empty page). */
START_TEST(list_queues_pages_by_prefix)
{
    create_queue("lq-a1");
    create_queue("lq-a2");
    create_queue("lq-b1");
    struct response r;
    json_call("ListQueues", "{\"QueueNamePrefix\":\"lq-a\",\"MaxResults\":2}", admin_key,
              admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "QueueUrls")), 2);
    ck_assert_ptr_null(json_object_get(r.json, "NextToken"));
    response_cleanup(&r);
    json_call("ListQueues", "{\"QueueNamePrefix\":\"lq-a\",\"MaxResults\":1}", admin_key,
              admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *urls = json_object_get(r.json, "QueueUrls");
    ck_assert_int_eq(json_array_size(urls), 1);
    ck_assert(strstr(json_string_value(json_array_get(urls, 0)), "/lq-a1"));
    ck_assert_str_eq(json_str(r.json, "NextToken"), "lq-a1");
    response_cleanup(&r);
    json_call("ListQueues",
              "{\"QueueNamePrefix\":\"lq-a\",\"MaxResults\":1,\"NextToken\":\"lq-a1\"}", admin_key,
              admin_secret, &r);
    urls = json_object_get(r.json, "QueueUrls");
    ck_assert_int_eq(json_array_size(urls), 1);
    ck_assert(strstr(json_string_value(json_array_get(urls, 0)), "/lq-a2"));
    ck_assert_ptr_null(json_object_get(r.json, "NextToken"));
    response_cleanup(&r);
    json_call("ListQueues", "{\"QueueNamePrefix\":\"lq-z\",\"MaxResults\":5}", admin_key,
              admin_secret, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "QueueUrls")), 0);
    ck_assert_ptr_null(json_object_get(r.json, "NextToken"));
    response_cleanup(&r);
}
END_TEST

struct create_call {
    const char *body;
    struct response r;
};

static void *create_call_main(void *arg)
{
    struct create_call *cc = arg;
    json_call("CreateQueue", cc->body, admin_key, admin_secret, &cc->r);
    return NULL;
}

/* A queue someone makes between CreateQueue's lookup and its insert is compared with, not
 * overwritten: the second CreateQueue used to answer 200 and replace the attributes. */
START_TEST(create_queue_does_not_overwrite_a_queue_made_meanwhile)
{
    PGconn *hold = harness_hold_inserts(harness_db_url(), "queues", "made-meanwhile");
    static struct create_call cc; /* the thread outlives a failed check's jump out of here */
    cc = (struct create_call){
        .body = "{\"QueueName\":\"made-meanwhile\",\"Attributes\":{\"VisibilityTimeout\":\"60\"}}"};
    pthread_t t;
    pthread_create(&t, NULL, create_call_main, &cc);
    harness_hold_wait(hold);
    PGresult *r = PQexec(hold, "INSERT INTO queues (name, visibility_timeout) "
                               "VALUES ('made-meanwhile', 10)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    harness_hold_release(hold, "queues");
    pthread_join(t, NULL);
    assert_json_error(&cc.r, 400, "#QueueNameExists", "QueueAlreadyExists");
    response_cleanup(&cc.r);
    ck_assert_int_eq(
        harness_sqlf("SELECT visibility_timeout FROM queues WHERE name = 'made-meanwhile'"), 10);
}
END_TEST

/* CreateQueue stores the queue and its tags in one transaction: a connection that dies while
 * the tags are written (a trigger terminates its own backend) leaves no queue behind, where a
 * queue committed first could not be deleted again over the dead connection. */
/* The Code of the Failed entry with this Id in a JSON batch reply, or NULL (static storage). */
static const char *failed_code(const struct response *r, const char *id)
{
    static char code[64];
    json_t *j = json_loads(buf_str(&r->body), 0, NULL);
    json_t *e;
    size_t i;
    code[0] = '\0';
    json_array_foreach(json_object_get(j, "Failed"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "Id")), id) == 0)
            snprintf(code, sizeof code, "%s", json_string_value(json_object_get(e, "Code")));
    }
    json_decref(j);
    return code[0] ? code : NULL;
}

/* A message the engine's validation refuses is answered with the SQS parameter's name. */
START_TEST(validation_errors_name_sqs_parameters)
{
    create_queue("named.fifo&Attribute.1.Name=FifoQueue&Attribute.1.Value=true");
    struct response r;
    json_call("SendMessage",
              "{\"QueueUrl\":\"http://h/000000000000/named.fifo\",\"MessageBody\":\"b\","
              "\"MessageGroupId\":\"a b\",\"MessageDeduplicationId\":\"d\"}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_msg(strstr(buf_str(&r.body), "MessageGroupId") &&
                      !strstr(buf_str(&r.body), "group_id"),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
}
END_TEST

/* Batch entries that lack a receipt or carry a bad VisibilityTimeout say so, each with its own
 * code; they are not answered as invalid receipts, which a client would take for stale ones. */
START_TEST(batch_entries_name_what_is_wrong_with_them)
{
    struct response r;
    create_queue("batchy");
    json_call("ChangeMessageVisibilityBatch",
              "{\"QueueUrl\":\"http://h/000000000000/batchy\",\"Entries\":["
              "{\"Id\":\"noreceipt\",\"VisibilityTimeout\":5},"
              "{\"Id\":\"novt\",\"ReceiptHandle\":\"x\"},"
              "{\"Id\":\"badvt\",\"ReceiptHandle\":\"x\",\"VisibilityTimeout\":99999},"
              "{\"Id\":\"stale\",\"ReceiptHandle\":\"x\",\"VisibilityTimeout\":5}]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(failed_code(&r, "noreceipt"), "MissingParameter");
    ck_assert_str_eq(failed_code(&r, "novt"), "MissingParameter");
    ck_assert_str_eq(failed_code(&r, "badvt"), "InvalidParameterValue");
    ck_assert_str_eq(failed_code(&r, "stale"), "ReceiptHandleIsInvalid");
    response_cleanup(&r);
    json_call("DeleteMessageBatch",
              "{\"QueueUrl\":\"http://h/000000000000/batchy\",\"Entries\":["
              "{\"Id\":\"noreceipt\"},{\"Id\":\"stale\",\"ReceiptHandle\":\"x\"}]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(failed_code(&r, "noreceipt"), "MissingParameter");
    ck_assert_str_eq(failed_code(&r, "stale"), "ReceiptHandleIsInvalid");
    response_cleanup(&r);
}
END_TEST

START_TEST(create_queue_with_tags_is_one_transaction)
{
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION sqs_test_die() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$"));
    free(harness_sql(harness_db_url(), "CREATE TRIGGER sqs_test_die BEFORE INSERT ON queue_tags "
                                       "FOR EACH ROW EXECUTE FUNCTION sqs_test_die()"));
    struct response r;
    json_call("CreateQueue", "{\"QueueName\":\"torn\",\"tags\":{\"team\":\"rides\"}}", admin_key,
              admin_secret, &r);
    ck_assert_int_ge(r.status, 500);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'torn'"), 0);
    free(harness_sql(harness_db_url(), "DROP TRIGGER sqs_test_die ON queue_tags"));
    free(harness_sql(harness_db_url(), "DROP FUNCTION sqs_test_die()"));
    json_call("CreateQueue", "{\"QueueName\":\"torn\",\"tags\":{\"team\":\"rides\"}}", admin_key,
              admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queue_tags t JOIN queues q ON q.id = "
                                  "t.queue_id WHERE q.name = 'torn' AND t.key = 'team'"),
                     1);
}
END_TEST

/* CreateQueue validates its tags before it creates anything: a bad tag is a 400 and no queue
 * (it was a 503 with the queue created); good tags are stored with the queue. */
START_TEST(create_queue_validates_tags_first)
{
    static const char *const bad[] = {
        "{\"QueueName\":\"h2\",\"tags\":{\"\":\"x\"}}",
        "{\"QueueName\":\"h2\",\"tags\":{\"k\":1}}",
        "{\"QueueName\":\"h2\",\"tags\":{\"k\":{\"v\":\"w\"}}}",
        "{\"QueueName\":\"h2\",\"tags\":[\"k\"]}",
        "{\"QueueName\":\"h2\",\"tags\":{\"k\":\"\\u0001\"}}",
    };
    struct response r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_call("CreateQueue", bad[i], admin_key, admin_secret, &r);
        assert_json_error(&r, 400, "#InvalidParameterValue", "InvalidParameterValue");
        response_cleanup(&r);
    }
    char key[200];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    char body[400];
    snprintf(body, sizeof body, "Action=CreateQueue&QueueName=h2&Tag.1.Key=%s&Tag.1.Value=v", key);
    query_call("/", body, &r);
    assert_xml_error(&r, 400, "InvalidParameterValue");
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'h2'"), 0);
    json_call("GetQueueUrl", "{\"QueueName\":\"h2\"}", admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 400);
    response_cleanup(&r);
    json_call("CreateQueue", "{\"QueueName\":\"h2\",\"tags\":{\"team\":\"rides\",\"e\":\"\"}}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    json_call("ListQueueTags", "{\"QueueUrl\":\"http://h/000000000000/h2\"}", admin_key,
              admin_secret, &r);
    ck_assert_str_eq(buf_str(&r.body), "{\"Tags\":{\"e\":\"\",\"team\":\"rides\"}}");
    response_cleanup(&r);
}
END_TEST

/* A NUL byte in a form value is a 400 (it was a 500 from PostgreSQL, or a silent truncation
 * that named another queue); UntagQueue's keys are bounded; list indexes are 1..1000. */
START_TEST(nul_bytes_and_indexes_are_refused)
{
    struct response r;
    create_queue("q1");
    static const char *const bad[] = {
        "Action=TagQueue&QueueUrl=http://h/000000000000/q1&Tag.1.Key=k&Tag.1.Value=x%00y",
        "Action=UntagQueue&QueueUrl=http://h/000000000000/q1&TagKey.1=a%00",
        "Action=GetQueueAttributes&QueueUrl=http://h/000000000000/q1%00junk",
        "Action=SendMessage&QueueUrl=http://h/000000000000/q1&MessageBody=a%00b",
        "Action=ListQueues&Attribute.2147483647.Name=A&Attribute.-2.Name=B",
        "Action=GetQueueAttributes&QueueUrl=http://h/000000000000/q1&AttributeName.0=All",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        query_call("/", bad[i], &r);
        ck_assert_msg(r.status == 400 && strstr(buf_str(&r.body), "InvalidParameterValue"),
                      "%s: %ld %s", bad[i], r.status, buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("q1"), 0);
    struct buf many;
    buf_init(&many);
    buf_puts(&many, "Action=UntagQueue&QueueUrl=http://h/000000000000/q1");
    for (int i = 1; i <= 51; i++)
        buf_printf(&many, "&TagKey.%d=k%d", i, i);
    query_call("/", buf_str(&many), &r);
    assert_xml_error(&r, 400, "InvalidParameterValue");
    response_cleanup(&r);
    buf_cleanup(&many);
    query_call("/", "Action=UntagQueue&QueueUrl=http://h/000000000000/q1&TagKey.1=k", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

/* SetQueueAttributes changes the attributes it names on the queue as it is, not on this
 * process's cached copy: another process's change of another attribute holds, and a queue
 * deleted meanwhile is not made again. */
START_TEST(set_queue_attributes_changes_only_what_it_names)
{
    struct response r;
    create_queue("sqa");
    const char *get = "Action=GetQueueAttributes&QueueUrl=http://h/000000000000/sqa"
                      "&AttributeName.1=All";
    query_call("/", get, &r); /* cached here now */
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_sqlf("WITH u AS (UPDATE queues SET delay_seconds = 7 WHERE name = 'sqa' RETURNING 1) "
                 "SELECT count(*) FROM u"); /* another process */
    query_call("/",
               "Action=SetQueueAttributes&QueueUrl=http://h/000000000000/sqa"
               "&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=61",
               &r);
    ck_assert_msg(r.status == 200, "%s", buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT visibility_timeout * 100 + delay_seconds FROM queues "
                                  "WHERE name = 'sqa'"),
                     6107);
    /* nothing to set is a missing parameter (it used to rewrite the queue and answer 200) */
    query_call("/", "Action=SetQueueAttributes&QueueUrl=http://h/000000000000/sqa", &r);
    assert_xml_error(&r, 400, "MissingParameter");
    response_cleanup(&r);
    /* SqsManagedSseEnabled: false only (true would claim an encryption nothing does); a
     * value that is not a string is a bad value (it crashed the process once) */
    json_call("SetQueueAttributes",
              "{\"QueueUrl\":\"http://h/000000000000/sqa\",\"Attributes\":{"
              "\"SqsManagedSseEnabled\":true}}",
              admin_key, admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidAttributeValue", "InvalidAttributeValue");
    response_cleanup(&r);
    query_call("/",
               "Action=SetQueueAttributes&QueueUrl=http://h/000000000000/sqa"
               "&Attribute.1.Name=SqsManagedSseEnabled&Attribute.1.Value=true",
               &r);
    assert_xml_error(&r, 400, "InvalidAttributeValue");
    response_cleanup(&r);
    query_call("/",
               "Action=SetQueueAttributes&QueueUrl=http://h/000000000000/sqa"
               "&Attribute.1.Name=SqsManagedSseEnabled&Attribute.1.Value=false",
               &r);
    ck_assert_msg(r.status == 200, "%s", buf_str(&r.body));
    response_cleanup(&r);
    query_call("/", get, &r);
    response_cleanup(&r);
    harness_sqlf("WITH d AS (DELETE FROM queues WHERE name = 'sqa' RETURNING 1) "
                 "SELECT count(*) FROM d"); /* deleted by another process */
    query_call("/",
               "Action=SetQueueAttributes&QueueUrl=http://h/000000000000/sqa"
               "&Attribute.1.Name=DelaySeconds&Attribute.1.Value=3",
               &r);
    assert_xml_error(&r, 400, "AWS.SimpleQueueService.NonExistentQueue");
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'sqa'"), 0);
    /* tagging it by its cached id was a foreign-key violation, answered 500 */
    create_queue("sqt");
    query_call("/", "Action=GetQueueAttributes&QueueUrl=http://h/000000000000/sqt", &r);
    response_cleanup(&r);
    harness_sqlf("WITH d AS (DELETE FROM queues WHERE name = 'sqt' RETURNING 1) "
                 "SELECT count(*) FROM d");
    query_call("/", "Action=TagQueue&QueueUrl=http://h/000000000000/sqt&Tag.1.Key=k&Tag.1.Value=v",
               &r);
    assert_xml_error(&r, 400, "AWS.SimpleQueueService.NonExistentQueue");
    response_cleanup(&r);
}
END_TEST

/* RedrivePolicy comes back as JSON a parser reads (built by jansson, not by hand). */
START_TEST(redrive_policy_is_json)
{
    struct response r;
    json_call("CreateQueue", "{\"QueueName\":\"dlq-j\"}", admin_key, admin_secret, &r);
    response_cleanup(&r);
    json_call("CreateQueue",
              "{\"QueueName\":\"src-j\",\"Attributes\":{\"RedrivePolicy\":\"{\\\"deadLetterTarget"
              "Arn\\\":\\\"arn:aws:sqs:eu-west-1:000000000000:dlq-j\\\",\\\"maxReceiveCount\\\":"
              "3}\"}}",
              admin_key, admin_secret, &r);
    ck_assert_msg(r.status == 200, "%s", buf_str(&r.body));
    response_cleanup(&r);
    json_call("GetQueueAttributes",
              "{\"QueueUrl\":\"http://h/000000000000/src-j\",\"AttributeNames\":"
              "[\"RedrivePolicy\"]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = json_loads(buf_str(&r.body), 0, NULL);
    const char *text =
        json_string_value(json_object_get(json_object_get(j, "Attributes"), "RedrivePolicy"));
    json_t *p = text ? json_loads(text, 0, NULL) : NULL;
    ck_assert_msg(p, "%s", buf_str(&r.body));
    ck_assert_str_eq(json_string_value(json_object_get(p, "deadLetterTargetArn")),
                     "arn:aws:sqs:us-east-1:000000000000:dlq-j");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "maxReceiveCount")), 3);
    json_decref(p);
    json_decref(j);
    response_cleanup(&r);
}
END_TEST

/* App tokens may SendMessage into prebooking-submission but not SendMessageBatch, which needs
 * service like POST /queues/{name}/messages:batch. */
START_TEST(app_tokens_cannot_send_batches)
{
    char key[AWS_ACCESS_KEY_LEN], secret[AWS_SECRET_LEN];
    make_key(ROLE_APP, key, secret);
    struct response r;
    json_call("SendMessageBatch",
              "{\"QueueUrl\":\"http://h/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE "\","
              "\"Entries\":[{\"Id\":\"a\",\"MessageBody\":\"{}\"}]}",
              key, secret, &r);
    assert_json_error(&r, 403, "#AccessDenied", "AccessDenied");
    response_cleanup(&r);
    query_as("/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE,
             "Action=SendMessageBatch&SendMessageBatchRequestEntry.1.Id=a"
             "&SendMessageBatchRequestEntry.1.MessageBody=x",
             key, secret, &r);
    assert_xml_error(&r, 403, "AccessDenied");
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored(PREBOOKINGS_SUBMISSION_QUEUE), 0);
}
END_TEST

/* Whether task id is stored, pending and awaiting its submission (sql/057). */
static bool awaiting_task(const char *id)
{
    return harness_sqlf("SELECT count(*) FROM tasks WHERE id = '%s' AND status = 'pending' AND "
                        "awaiting_submission",
                        id) == 1;
}

/* A prebooking sent into prebooking-submission through SQS is a pending task from the send on,
 * as through POST /queues/{name}/messages: GET /tasks/{message id} answers at once. */
START_TEST(submissions_sent_through_sqs_are_tasks_at_once)
{
    char key[AWS_ACCESS_KEY_LEN], secret[AWS_SECRET_LEN];
    make_key(ROLE_APP, key, secret);
    struct response r;
    json_call("SendMessage",
              "{\"QueueUrl\":\"http://h/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE "\","
              "\"MessageBody\":\"{}\"}",
              key, secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(awaiting_task(json_str(r.json, "MessageId")));
    response_cleanup(&r);
    json_call("SendMessageBatch",
              "{\"QueueUrl\":\"http://h/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE "\","
              "\"Entries\":[{\"Id\":\"a\",\"MessageBody\":\"{}\"},{\"Id\":\"b\","
              "\"MessageBody\":\"{}\"}]}",
              admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *ok = json_object_get(r.json, "Successful");
    ck_assert_int_eq(json_array_size(ok), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert(awaiting_task(json_str(json_array_get(ok, i), "MessageId")));
    response_cleanup(&r);
    free(harness_sql(harness_db_url(), "DELETE FROM messages WHERE queue_id = (SELECT id FROM "
                                       "queues WHERE name = '" PREBOOKINGS_SUBMISSION_QUEUE "')"));
    free(harness_sql(harness_db_url(), "DELETE FROM tasks WHERE awaiting_submission"));
}
END_TEST

static unsigned long long combined(enum mq_combined_kind kind)
{
    unsigned long long statements, operations;
    mq_combiner_counts(srv.app.combiner, kind, &statements, &operations);
    return operations;
}

/* SendMessage, ReceiveMessage and DeleteMessage of a standard queue go through the combiner,
 * as their REST counterparts do, and keep their answers. */
START_TEST(the_data_plane_goes_through_the_combiner)
{
    struct response r;
    create_queue("sqs-combined");
    /* until the hub has read who long-polls what, every send NOTIFYs and goes alone */
    int qid = (int)harness_sqlf("SELECT id FROM queues WHERE name = 'sqs-combined'");
    for (int i = 0; i < 500 && mq_hub_listened(srv.app.hub, qid); i++)
        harness_sleep_ms(10);
    const char *url = "\"QueueUrl\":\"http://h/000000000000/sqs-combined\"";
    char body[256];
    snprintf(body, sizeof body, "{%s,\"MessageBody\":\"hello\"}", url);
    json_call("SendMessage", body, service_key, service_secret, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_str(r.json, "MD5OfMessageBody"), "5d41402abc4b2a76b9719d911017c592");
    response_cleanup(&r);
    ck_assert_int_eq(combined(MQ_COMBINED_SEND), 1);
    snprintf(body, sizeof body, "{%s}", url);
    json_call("ReceiveMessage", body, service_key, service_secret, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *m = json_array_get(json_object_get(r.json, "Messages"), 0);
    ck_assert_str_eq(json_str(m, "Body"), "hello");
    char receipt_body[256];
    snprintf(receipt_body, sizeof receipt_body, "{%s,\"ReceiptHandle\":\"%s\"}", url,
             json_str(m, "ReceiptHandle"));
    response_cleanup(&r);
    ck_assert_int_eq(combined(MQ_COMBINED_RECEIVE), 1);
    json_call("DeleteMessage", receipt_body, service_key, service_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    ck_assert_int_eq(combined(MQ_COMBINED_DELETE), 1);
    ck_assert_int_eq(harness_stored("sqs-combined"), 0);
}
END_TEST

static void one_waiter(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-waiters", "1", &err));
}

/* What the long poll of rest_long_poll got: its status, its first message's body and when it
 * was answered (no assertion on its thread: the test asserts). */
struct long_poll {
    long status;
    char body[16];
    int64_t answered_us;
};

static void *rest_long_poll(void *arg)
{
    struct long_poll *lp = arg;
    struct response r;
    harness_admin(&srv, "POST", "/queues/lp/messages:receive", "{\"wait_seconds\": 20}", &r);
    lp->answered_us = clock_mono_us();
    lp->status = r.status;
    json_t *first = json_array_get(json_object_get(r.json, "messages"), 0);
    const char *body = json_string_value(json_object_get(first, "body"));
    snprintf(lp->body, sizeof lp->body, "%s", body ? body : "");
    response_cleanup(&r);
    return NULL;
}

/* The long poll turned away because too many wait says when to retry. */
START_TEST(full_long_polls_say_retry_after)
{
    harness_stop(&srv);
    harness_start(&srv, one_waiter);
    harness_put_queue(&srv, "lp", NULL, 201);
    /* the hub's first connect wakes every waiter to look again: a waiter that registered before
     * it would leave its one place free for a moment (the clean-clone run met that once) */
    for (int i = 0; i < 250 && !mq_hub_listening(srv.app.hub); i++)
        harness_sleep_ms(20);
    ck_assert(mq_hub_listening(srv.app.hub));
    pthread_t t;
    static struct long_poll lp;
    memset(&lp, 0, sizeof lp);
    pthread_create(&t, NULL, rest_long_poll, &lp);
    for (int i = 0; i < 200 && mq_hub_waiters(srv.app.hub) < 1; i++)
        harness_sleep_ms(20);
    ck_assert_int_eq(mq_hub_waiters(srv.app.hub), 1);
    struct response r;
    query_call("/000000000000/lp", "Action=ReceiveMessage&WaitTimeSeconds=2", &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert(strstr(buf_str(&r.body), "<Code>ServiceUnavailable</Code>"));
    char ra[16];
    ck_assert(response_header(&r, "Retry-After", ra, sizeof ra));
    ck_assert_int_ge(atoi(ra), 1);
    response_cleanup(&r);
    /* the waiter waits long enough for a slow machine; a message lets it go */
    harness_admin(&srv, "POST", "/queues/lp/messages", "{\"body\": \"go\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    int64_t sent_us = clock_mono_us();
    pthread_join(t, NULL);
    ck_assert_int_eq(lp.status, 200);
    ck_assert_str_eq(lp.body, "go");
    ck_assert_msg(lp.answered_us - sent_us < 5000000, "the waiter went %.1f s after the send",
                  (lp.answered_us - sent_us) / 1e6);
}
END_TEST

static void slow_statements(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "db-statement-timeout-ms", "1500", &err));
}

/* An access key that was never issued (not "AKID" + 16 of [A-Z2-7]) is refused before the
 * database is asked: it is answered at once while the key table is locked. */
START_TEST(malformed_access_keys_skip_the_database)
{
    harness_stop(&srv);
    harness_start(&srv, slow_statements);
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert(PQstatus(pg) == CONNECTION_OK);
    /* should an assertion leave it behind (no fork), the session ends itself and lets go */
    PQclear(PQexec(pg, "SET idle_in_transaction_session_timeout = '5s'"));
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *lock = PQexec(pg, "LOCK TABLE aws_credentials IN ACCESS EXCLUSIVE MODE");
    ck_assert_int_eq(PQresultStatus(lock), PGRES_COMMAND_OK);
    PQclear(lock);
    static const char *const keys[] = {"AKIDaaaaaaaaaaaaaaaa", "AKID0000000000000000",
                                       "AKIDAAAAAAAAAAAAAAA", "AKIDAAAAAAAAAAAAAAAAA",
                                       "ASIAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct response r;
        double t0 = harness_now_s();
        json_call("ListQueues", "{}", keys[i], admin_secret, &r);
        assert_json_error(&r, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
        ck_assert_msg(harness_now_s() - t0 < 1.0, "%s waited for the database", keys[i]);
        response_cleanup(&r);
    }
    PQclear(PQexec(pg, "ROLLBACK"));
    PQfinish(pg);
}
END_TEST

/* Credentials are cached for a second: a key works on without the database, and stops working
 * within that second once its token is deleted. */
START_TEST(credentials_are_cached_briefly)
{
    char key[AWS_ACCESS_KEY_LEN], secret[AWS_SECRET_LEN], token_id[40];
    make_key_of(ROLE_SERVICE, key, secret, token_id);
    struct response r;
    json_call("ListQueues", "{}", key, secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("WITH d AS (DELETE FROM tokens WHERE id = '%s' RETURNING 1) "
                                  "SELECT count(*) FROM d",
                                  token_id),
                     1);
    json_call("ListQueues", "{}", key, secret, &r); /* from the cache */
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_sleep_ms(1100);
    json_call("ListQueues", "{}", key, secret, &r);
    assert_json_error(&r, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
    response_cleanup(&r);
    /* a wrong secret is refused even while the key is cached */
    make_key(ROLE_SERVICE, key, secret);
    json_call("ListQueues", "{}", key, secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    json_call("ListQueues", "{}", key, admin_secret, &r);
    assert_json_error(&r, 403, "#SignatureDoesNotMatch", "SignatureDoesNotMatch");
    response_cleanup(&r);
}
END_TEST

static void low_app_limit(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "rate-limit-app", "2", &err)); /* bursts of 4 */
}

/* Signed requests are charged to their token's rate limit like its bearer requests: over it,
 * SQS answers RequestThrottled (403) and SNS Throttled (429), with Retry-After; other tokens
 * are unaffected. */
START_TEST(signed_requests_are_rate_limited)
{
    harness_stop(&srv);
    harness_start(&srv, low_app_limit);
    char key[AWS_ACCESS_KEY_LEN], secret[AWS_SECRET_LEN];
    make_key(ROLE_APP, key, secret);
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        struct response r;
        json_call("SendMessage",
                  "{\"QueueUrl\":\"http://h/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE "\","
                  "\"MessageBody\":\"{}\"}",
                  key, secret, &r);
        if (r.status == 200) {
            ok++;
        } else {
            assert_json_error(&r, 403, "#RequestThrottled", "RequestThrottled");
            char ra[16];
            ck_assert(response_header(&r, "Retry-After", ra, sizeof ra));
            ck_assert_int_ge(atoi(ra), 1);
            limited++;
        }
        response_cleanup(&r);
    }
    ck_assert_int_ge(ok, 4);
    ck_assert_int_ge(limited, 1);
    struct response r;
    query_as("/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE, "Action=SendMessage&MessageBody=x", key,
             secret, &r);
    assert_xml_error(&r, 403, "RequestThrottled");
    response_cleanup(&r);
    struct signed_request sns = {"/", "Action=ListTopics", QUERY_TYPE, NULL, key, secret, "sns", 0,
                                 NULL};
    send_signed(&sns, &r);
    assert_xml_error(&r, 429, "Throttled");
    ck_assert(response_header(&r, "Retry-After", (char[16]){0}, 16));
    response_cleanup(&r);
    json_call("ListQueues", "{}", admin_key, admin_secret, &r); /* admin: no limit set */
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_sleep_ms(1100); /* two requests refill in a second */
    query_as("/000000000000/" PREBOOKINGS_SUBMISSION_QUEUE, "Action=SendMessage&MessageBody=x", key,
             secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

static void parsed_memory_8mib(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "parsed-body-memory", "8388608", &err));
}

static void memory_setup(void)
{
    harness_start(&srv, parsed_memory_8mib);
    make_key(ROLE_ADMIN, admin_key, admin_secret);
}

struct held_send {
    char *body;
    long status;
};

static void *held_send_main(void *arg)
{
    struct held_send *h = arg;
    struct response r;
    harness_admin(&srv, "POST", "/queues/mem/messages", h->body, &r);
    h->status = r.status;
    response_cleanup(&r);
    return NULL;
}

/* The JSON protocol parses its own body: it counts against RYDES_PARSED_BODY_MEMORY as the
 * REST routes' bodies do, and a large one is ServiceUnavailable while they take it up. */
START_TEST(json_bodies_count_against_the_parsed_memory)
{
    harness_put_queue(&srv, "mem", NULL, 201);
    static struct held_send h; /* the thread outlives a failed check's jump out of here */
    size_t n = 200000, at = 0;
    h = (struct held_send){.body = malloc(n + 32)};
    at += (size_t)sprintf(h.body, "{\"body\":[1");
    while (at + 4 < n)
        at += (size_t)sprintf(h.body + at, ",1");
    strcpy(h.body + at, "]}");
    PGconn *hold = harness_hold_inserts_when(harness_db_url(), "messages", "NEW.body LIKE '[1,%'");
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, held_send_main, &h), 0);
    harness_hold_wait(hold);
    char *big = malloc(n + 128);
    snprintf(big, n + 128, "{\"QueueUrl\":\"http://h/000000000000/mem\",\"MessageBody\":\"%0*d\"}",
             (int)n, 0);
    struct response r;
    json_call("SendMessage", big, admin_key, admin_secret, &r);
    long refused = r.status;
    char type[160] = "";
    snprintf(type, sizeof type, "%s", r.json ? json_str(r.json, "__type") : "");
    char retry[16] = "";
    response_header(&r, "Retry-After", retry, sizeof retry);
    response_cleanup(&r);
    harness_hold_release(hold, "messages");
    pthread_join(t, NULL);
    free(h.body);
    ck_assert_int_eq(refused, 503);
    ck_assert_msg(strstr(type, "ServiceUnavailable"), "%s", type);
    ck_assert_str_eq(retry, "1");
    ck_assert_int_eq(h.status, 201);
    /* none held once the send is freed (after its reply) */
    for (double until = harness_now_s() + 10;
         http_server_parsed_bytes(srv.app.http) > 0 && harness_now_s() < until;)
        harness_sleep_ms(20);
    json_call("SendMessage", big, admin_key, admin_secret, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sqs");
    TCase *t = tcase_create("sqs");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, missing_and_malformed_signatures);
    tcase_add_test(t, unsigned_requests_are_answered_before_their_body);
    tcase_add_test(t, unknown_key_wrong_secret_and_skew);
    tcase_add_test(t, a_locked_credential_table_is_unavailable_not_a_stall);
    tcase_add_test(t, a_waiting_key_lookup_holds_no_http_thread);
    tcase_add_test(t, unknown_keys_are_looked_up_only_so_often);
    tcase_add_test(t, sqs_errors_in_both_protocols);
    tcase_add_test(t, system_attributes_are_answered_by_digest);
    tcase_add_test(t, create_queue_does_not_overwrite_a_queue_made_meanwhile);
    tcase_add_test(t, list_queues_pages_by_prefix);
    tcase_add_test(t, roles_apply);
    tcase_add_test(t, query_protocol_on_the_queue_url);
    tcase_add_test(t, sns_unknown_action);
    tcase_add_test(t, queue_urls_take_only_a_plain_host);
    tcase_add_test(t, control_characters_are_refused_or_replaced);
    tcase_add_test(t, create_queue_validates_tags_first);
    tcase_add_test(t, validation_errors_name_sqs_parameters);
    tcase_add_test(t, batch_entries_name_what_is_wrong_with_them);
    tcase_add_test(t, create_queue_with_tags_is_one_transaction);
    tcase_add_test(t, nul_bytes_and_indexes_are_refused);
    tcase_add_test(t, redrive_policy_is_json);
    tcase_add_test(t, app_tokens_cannot_send_batches);
    tcase_add_test(t, submissions_sent_through_sqs_are_tasks_at_once);
    tcase_add_test(t, full_long_polls_say_retry_after);
    tcase_add_test(t, malformed_access_keys_skip_the_database);
    tcase_add_test(t, credentials_are_cached_briefly);
    tcase_add_test(t, signed_requests_are_rate_limited);
    tcase_add_test(t, the_data_plane_goes_through_the_combiner);
    tcase_add_test(t, set_queue_attributes_changes_only_what_it_names);
    suite_add_tcase(s, t);
    TCase *mem = tcase_create("memory");
    tcase_add_checked_fixture(mem, memory_setup, teardown);
    tcase_add_test(mem, json_bodies_count_against_the_parsed_memory);
    suite_add_tcase(s, mem);
    return harness_run(s);
}
