/* Integration: the AWS wire protocols at the protocol level, with curl against the real server
 * and database: SigV4 failures (missing, malformed, unknown key, wrong secret, clock skew) in
 * both envelopes (JSON __type + x-amzn-query-error, XML <ErrorResponse>), SQS errors of both
 * protocols, unknown operations, malformed bodies, roles, the queue-URL route of the query
 * protocol and an unknown SNS action (tests/integration/test_sns.c has SNS). Requests are
 * signed here with rydes/sigv4.h (the signature itself is checked against AWS's published
 * example in tests/unit/test_sigv4.c and against real AWS clients in tests/aws/). */
#include "harness.h"

#include "rydes/aws_store.h"
#include "rydes/sigv4.h"
#include "rydes/tokens.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct harness_server srv;
static char admin_key[AWS_ACCESS_KEY_LEN], admin_secret[AWS_SECRET_LEN];
static char service_key[AWS_ACCESS_KEY_LEN], service_secret[AWS_SECRET_LEN];

static void make_key(enum role role, char *key, char *secret)
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
    PQfinish(pg);
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

/* Sends r signed with SigV4 (scope us-east-1/service) into out. */
static void send_signed(const struct signed_request *r, struct response *out)
{
    char date[17];
    time_t now = time(NULL) + r->skew_s;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    struct header_set h = {srv.base + 7, date, r->content_type, r->target};
    const char *signed_headers =
        r->target ? "content-type;host;x-amz-date;x-amz-target" : "content-type;host;x-amz-date";
    struct sigv4_request sr = {"POST", r->path, "", header_of, &h, r->body, strlen(r->body)};
    struct buf c, s;
    buf_init(&c);
    buf_init(&s);
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
             "SignedHeaders=%s, Signature=%s%s%s",
             date, r->key, scope, signed_headers, sig, r->target ? "\nX-Amz-Target: " : "",
             r->target ? r->target : "");
    harness_request(&srv, "POST", r->path, NULL, r->body, r->content_type, extra, out);
    buf_cleanup(&c);
    buf_cleanup(&s);
}

#define JSON_TYPE  "application/x-amz-json-1.0"
#define QUERY_TYPE "application/x-www-form-urlencoded"

static void json_call(const char *op, const char *body, const char *key, const char *secret,
                      struct response *out)
{
    char target[96];
    snprintf(target, sizeof target, "AmazonSQS.%s", op);
    struct signed_request r = {"/", body, JSON_TYPE, target, key, secret, "sqs", 0};
    send_signed(&r, out);
}

static void query_call(const char *path, const char *body, struct response *out)
{
    struct signed_request r = {path, body, QUERY_TYPE, NULL, admin_key, admin_secret, "sqs", 0};
    send_signed(&r, out);
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

START_TEST(unknown_key_wrong_secret_and_skew)
{
    struct response r;
    json_call("ListQueues", "{}", "AKIDAAAAAAAAAAAAAAAA", admin_secret, &r);
    assert_json_error(&r, 403, "#InvalidClientTokenId", "InvalidClientTokenId");
    response_cleanup(&r);
    json_call("ListQueues", "{}", admin_key, "0123456789012345678901234567890123456789", &r);
    assert_json_error(&r, 403, "#SignatureDoesNotMatch", "SignatureDoesNotMatch");
    response_cleanup(&r);
    struct signed_request skewed = {"/",       "Action=ListQueues", QUERY_TYPE, NULL,
                                    admin_key, admin_secret,        "sqs",      3600};
    send_signed(&skewed, &r);
    assert_xml_error(&r, 403, "SignatureDoesNotMatch");
    ck_assert(strstr(buf_str(&r.body), "Signature expired"));
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
    json_call("CreateQueue", "{\"QueueName\":\"a\",\"Attributes\":{\"Nope\":\"1\"}}", admin_key,
              admin_secret, &r);
    assert_json_error(&r, 400, "#InvalidAttributeName", "InvalidAttributeName");
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
}
END_TEST

START_TEST(sns_unknown_action)
{
    struct response r;
    struct signed_request sns = {"/",        "Action=CreatePlatformApplication&Version=2010-03-31",
                                 QUERY_TYPE, NULL,
                                 admin_key,  admin_secret,
                                 "sns",      0};
    send_signed(&sns, &r);
    assert_xml_error(&r, 400, "InvalidAction");
    ck_assert(strstr(buf_str(&r.body), "sns.amazonaws.com"));
    response_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sqs");
    TCase *t = tcase_create("sqs");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, missing_and_malformed_signatures);
    tcase_add_test(t, unknown_key_wrong_secret_and_skew);
    tcase_add_test(t, sqs_errors_in_both_protocols);
    tcase_add_test(t, roles_apply);
    tcase_add_test(t, query_protocol_on_the_queue_url);
    tcase_add_test(t, sns_unknown_action);
    suite_add_tcase(s, t);
    return harness_run(s);
}
