/* Integration: SNS's query protocol at the protocol level, with curl against the real server and
 * database: the XML shapes of results (<CreateTopicResponse xmlns=...><CreateTopicResult>, lists
 * as <member>, attribute maps as <entry><key/><value/>, <ResponseMetadata><RequestId>), the
 * <ErrorResponse> of SNS's codes (NotFound, InvalidParameter, AuthorizationError,
 * InvalidAction, the batch errors), the token roles, filter policies compiled by the filter
 * engine, topics shared with the REST API, and hostile parameters that must never get a 500.
 * Requests are signed with rydes/sigv4.h for service "sns" (real SDKs: tests/aws/). */
#include "harness.h"

#include "rydes/aws_store.h"
#include "rydes/mq_combiner.h"
#include "rydes/sigv4.h"
#include "rydes/tokens.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNS_NS     "xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\""
#define QUERY_TYPE "application/x-www-form-urlencoded"
#define ARN        "arn:aws:sns:us-east-1:000000000000:"

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
    ck_assert_int_eq(tokens_create(&c, role, "sns-test", token, &t), STORE_OK);
    ck_assert_int_eq(aws_credentials_create(&c, t.id, key, secret), STORE_OK);
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

struct header_set {
    const char *host, *date, *type;
};

static const char *header_of(void *ctx, const char *name)
{
    struct header_set *h = ctx;
    return strcmp(name, "host") == 0         ? h->host
           : strcmp(name, "x-amz-date") == 0 ? h->date
                                             : h->type;
}

/* POSTs the form body signed with SigV4 for us-east-1/sns with key and secret into out. */
/* body POSTed to path (its query string not signed) as key, signed for SNS. */
static void sns_at(const char *path, const char *body, const char *key, const char *secret,
                   struct response *out)
{
    char date[17], scope[96], sig[65], extra[1024], day[9];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    struct header_set h = {srv.base + 7, date, QUERY_TYPE};
    const char *signed_headers = "content-type;host;x-amz-date";
    struct sigv4_request sr = {"POST", "/", "", header_of, &h, body, strlen(body)};
    struct buf c, s;
    buf_init(&c);
    buf_init(&s);
    sigv4_canonical_request(&sr, signed_headers, &c);
    snprintf(scope, sizeof scope, "%.8s/us-east-1/sns/aws4_request", date);
    sigv4_string_to_sign(date, scope, buf_str(&c), &s);
    unsigned char k[32];
    snprintf(day, sizeof day, "%.8s", date);
    sigv4_signing_key(secret, day, "us-east-1", "sns", k);
    sigv4_hmac_hex(k, buf_str(&s), s.len, sig);
    snprintf(extra, sizeof extra,
             "X-Amz-Date: %s\nAuthorization: AWS4-HMAC-SHA256 Credential=%s/%s, "
             "SignedHeaders=%s, Signature=%s",
             date, key, scope, signed_headers, sig);
    harness_request(&srv, "POST", path, NULL, body, QUERY_TYPE, extra, out);
    buf_cleanup(&c);
    buf_cleanup(&s);
}

static void sns_as(const char *body, const char *key, const char *secret, struct response *out)
{
    sns_at("/", body, key, secret, out);
}

static void sns(const char *body, struct response *out)
{
    sns_as(body, admin_key, admin_secret, out);
}

/* A result document: 200, the body holds every NULL-terminated fragment. */
static void assert_ok(struct response *r, ...)
{
    const char *b = buf_str(&r->body);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, b);
    ck_assert_msg(strstr(b, SNS_NS) && strstr(b, "<ResponseMetadata><RequestId>"), "%s", b);
    va_list ap;
    va_start(ap, r);
    for (const char *f = va_arg(ap, const char *); f; f = va_arg(ap, const char *))
        ck_assert_msg(strstr(b, f), "%s not in %s", f, b);
    va_end(ap);
}

/* An SNS <ErrorResponse>: status, <Type>Sender</Type> and <Code>. */
static void assert_error(struct response *r, long status, const char *code)
{
    char want[160];
    snprintf(want, sizeof want, "<Error><Type>Sender</Type><Code>%s</Code>", code);
    const char *b = buf_str(&r->body);
    ck_assert_msg(r->status == status, "%ld %s", r->status, b);
    ck_assert_msg(strstr(b, "<ErrorResponse " SNS_NS) && strstr(b, want) &&
                      strstr(b, "<RequestId>"),
                  "%s", b);
}

static void check(const char *body, long status, const char *code)
{
    struct response r;
    sns(body, &r);
    assert_error(&r, status, code);
    response_cleanup(&r);
}

static void *create_topic_main(void *arg)
{
    sns("Action=CreateTopic&Name=made-meanwhile.fifo&Attributes.entry.1.key=FifoTopic&"
        "Attributes.entry.1.value=true&Attributes.entry.2.key=ContentBasedDeduplication&"
        "Attributes.entry.2.value=true",
        arg);
    return NULL;
}

/* A topic someone makes between CreateTopic's lookup and its insert is compared with, not
 * overwritten: CreateTopic used to answer 200 and set ContentBasedDeduplication on it. */
START_TEST(create_topic_does_not_overwrite_a_topic_made_meanwhile)
{
    PGconn *hold = harness_hold_inserts(harness_db_url(), "topics", "made-meanwhile.fifo");
    static struct response r; /* the thread (which fills it) outlives a failed check's jump */
    pthread_t t;
    pthread_create(&t, NULL, create_topic_main, &r);
    harness_hold_wait(hold);
    PGresult *res = PQexec(hold, "INSERT INTO topics (name, fifo, content_based_dedup) "
                                 "VALUES ('made-meanwhile.fifo', true, false)");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    harness_hold_release(hold, "topics");
    pthread_join(t, NULL);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM topics WHERE name = "
                                  "'made-meanwhile.fifo' AND NOT content_based_dedup"),
                     1);
}
END_TEST

START_TEST(results_have_sns_shapes)
{
    struct response r;
    sns("Action=CreateTopic&Name=shapes&Version=2010-03-31", &r);
    assert_ok(&r,
              "<CreateTopicResponse " SNS_NS "><CreateTopicResult><TopicArn>" ARN
              "shapes</TopicArn></CreateTopicResult>",
              NULL);
    response_cleanup(&r);
    sns("Action=ListTopics", &r);
    assert_ok(&r, "<Topics><member><TopicArn>", "<TopicArn>" ARN "shapes</TopicArn>", NULL);
    response_cleanup(&r);
    sns("Action=GetTopicAttributes&TopicArn=" ARN "shapes", &r);
    assert_ok(&r, "<Attributes><entry><key>", "<key>TopicArn</key><value>" ARN "shapes</value>",
              NULL);
    response_cleanup(&r);
    harness_request(&srv, "PUT", "/queues/shapes-q", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    response_cleanup(&r);
    sns("Action=Subscribe&TopicArn=" ARN "shapes&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:"
        "000000000000:shapes-q&Attributes.entry.1.key=RawMessageDelivery&"
        "Attributes.entry.1.value=true",
        &r);
    assert_ok(&r, "<SubscriptionArn>" ARN "shapes:sqs-shapes-q</SubscriptionArn>", NULL);
    response_cleanup(&r);
    sns("Action=Publish&TopicArn=" ARN "shapes&Message=hi%20%3C%26%3E&Subject=s&"
        "MessageAttributes.entry.1.Name=k&MessageAttributes.entry.1.Value.DataType=String&"
        "MessageAttributes.entry.1.Value.StringValue=v",
        &r);
    assert_ok(&r, "<PublishResult><MessageId>", NULL);
    response_cleanup(&r);
    harness_request(&srv, "POST", "/queues/shapes-q/messages:receive", HARNESS_ADMIN_TOKEN, "{}",
                    "application/json", NULL, &r);
    ck_assert_msg(strstr(buf_str(&r.body), "hi <&>"), "%s", buf_str(&r.body));
    ck_assert(strstr(buf_str(&r.body), "\"k\""));
    response_cleanup(&r);
}
END_TEST

START_TEST(errors_have_sns_codes)
{
    check("Action=GetTopicAttributes&TopicArn=" ARN "nope", 404, "NotFound");
    check("Action=GetTopicAttributes", 400, "InvalidParameter");
    check("Action=GetTopicAttributes&TopicArn=arn:aws:sqs:us-east-1:000000000000:x", 400,
          "InvalidParameter");
    check("Action=CreateTopic&Name=bad%20name", 400, "InvalidParameter");
    check("Action=CreateTopic&Name=x.fifo", 400, "InvalidParameter");
    /* tags are not supported (README): refused, not silently dropped */
    check("Action=CreateTopic&Name=tagged&Tags.member.1.Key=k&Tags.member.1.Value=v", 400,
          "InvalidParameter");
    check("Action=GetTopicAttributes&TopicArn=" ARN "tagged", 404, "NotFound");
    check("Action=Publish&TopicArn=" ARN "nope&Message=x", 404, "NotFound");
    check("Action=GetSubscriptionAttributes&SubscriptionArn=" ARN "nope:sub", 404, "NotFound");
    check("Action=Unsubscribe&SubscriptionArn=garbage", 400, "InvalidParameter");
    /* more than 32 query arguments: SNS's InvalidParameter, said as such (before the
     * signature, which covers the query string, is checked) */
    char many[400] = "/?";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sa%d=1", i ? "&" : "", i);
    struct response rq;
    sns_at(many, "Action=ListTopics", admin_key, admin_secret, &rq);
    assert_error(&rq, 400, "InvalidParameter");
    ck_assert_msg(strstr(buf_str(&rq.body), "more than 32 arguments"), "%s", buf_str(&rq.body));
    response_cleanup(&rq);
    /* a subscription (or topic) that is gone: done, as SNS answers a repeated teardown */
    struct response r0;
    sns("Action=Unsubscribe&SubscriptionArn=" ARN "nope:sub", &r0);
    assert_ok(&r0, "<UnsubscribeResponse", NULL);
    response_cleanup(&r0);
    check("Action=CreatePlatformApplication", 400, "InvalidAction");
    struct response r;
    sns("Action=CreateTopic&Name=errs", &r);
    response_cleanup(&r);
    check("Action=Publish&TopicArn=" ARN "errs", 400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "errs&Message=x&MessageGroupId=g", 400,
          "InvalidParameter");
    check("Action=PublishBatch&TopicArn=" ARN "errs", 400, "EmptyBatchRequest");
    check("Action=PublishBatch&TopicArn=" ARN "errs&PublishBatchRequestEntries.member.1.Id=a&"
          "PublishBatchRequestEntries.member.1.Message=x&PublishBatchRequestEntries.member.2.Id=a&"
          "PublishBatchRequestEntries.member.2.Message=y",
          400, "BatchEntryIdsNotDistinct");
    check("Action=PublishBatch&TopicArn=" ARN "errs&PublishBatchRequestEntries.member.1.Id=a%21&"
          "PublishBatchRequestEntries.member.1.Message=x",
          400, "InvalidBatchEntryId");
    check("Action=Subscribe&TopicArn=" ARN "errs&Protocol=sms&Endpoint=%2B1555", 400,
          "InvalidParameter");
}
END_TEST

START_TEST(filter_policies_are_compiled)
{
    struct response r;
    sns("Action=CreateTopic&Name=filters", &r);
    response_cleanup(&r);
    sns("Action=Subscribe&TopicArn=" ARN "filters&Protocol=https&Endpoint=https://example.com/h&"
        "Attributes.entry.1.key=FilterPolicy&Attributes.entry.1.value=%7B%22fare%22%3A%5B%7B%22"
        "numeric%22%3A%5B%22%3E%22%5D%7D%5D%7D",
        &r);
    assert_error(&r, 400, "InvalidParameter");
    ck_assert_msg(strstr(buf_str(&r.body), "FilterPolicy: fare"), "%s", buf_str(&r.body));
    response_cleanup(&r);
    sns("Action=Subscribe&TopicArn=" ARN "filters&Protocol=https&Endpoint=https://example.com/h&"
        "Attributes.entry.1.key=FilterPolicy&Attributes.entry.1.value=%7B%22k%22%3A%5B%22v%22%5D"
        "%7D",
        &r);
    assert_ok(&r, "<SubscriptionArn>" ARN "filters:url-", NULL);
    response_cleanup(&r);
    harness_request(&srv, "GET", "/topics/filters/subscriptions", HARNESS_ADMIN_TOKEN, NULL, NULL,
                    NULL, &r);
    ck_assert_msg(strstr(buf_str(&r.body), "\"filter_policy\":{\"k\":[\"v\"]}"), "%s",
                  buf_str(&r.body));
    response_cleanup(&r);
}
END_TEST

/* A DeliveryPolicy's healthyRetryPolicy takes SNS's defaults for members it leaves out (it
 * read them as 0: one attempt, no retry); a member that is not an integer is refused. */
START_TEST(delivery_policies_default_what_they_leave_out)
{
    struct response r;
    sns("Action=CreateTopic&Name=delivery", &r);
    response_cleanup(&r);
    sns("Action=Subscribe&TopicArn=" ARN "delivery&Protocol=https&Endpoint=https://example.com/d&"
        "Attributes.entry.1.key=DeliveryPolicy&Attributes.entry.1.value=%7B%22healthyRetryPolicy"
        "%22%3A%7B%22numRetries%22%3A5%7D%7D",
        &r);
    assert_ok(&r, "<SubscriptionArn>" ARN "delivery:url-", NULL);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT max_attempts * 10000 + min_delay_seconds * 100 + "
                                  "max_delay_seconds FROM subscriptions WHERE url = "
                                  "'https://example.com/d'"),
                     62020);
    /* the same endpoint again: the same policy finds it, another one is refused (it used to
     * answer the existing subscription and drop the policy asked for) */
    sns("Action=Subscribe&TopicArn=" ARN "delivery&Protocol=https&Endpoint=https://example.com/d&"
        "Attributes.entry.1.key=DeliveryPolicy&Attributes.entry.1.value=%7B%22healthyRetryPolicy"
        "%22%3A%7B%22numRetries%22%3A5%7D%7D",
        &r);
    assert_ok(&r, "<SubscriptionArn>" ARN "delivery:url-", NULL);
    response_cleanup(&r);
    sns("Action=Subscribe&TopicArn=" ARN "delivery&Protocol=https&Endpoint=https://example.com/d&"
        "Attributes.entry.1.key=DeliveryPolicy&Attributes.entry.1.value=%7B%22healthyRetryPolicy"
        "%22%3A%7B%22numRetries%22%3A1%7D%7D",
        &r);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
    harness_put_queue(&srv, "delivery-dlq", NULL, 201);
    sns("Action=Subscribe&TopicArn=" ARN "delivery&Protocol=https&Endpoint=https://example.com/d&"
        "Attributes.entry.1.key=RedrivePolicy&Attributes.entry.1.value=%7B%22deadLetterTargetArn"
        "%22%3A%22arn%3Aaws%3Asqs%3Aus-east-1%3A000000000000%3Adelivery-dlq%22%7D",
        &r);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT max_attempts * 10000 + min_delay_seconds * 100 + "
                                  "max_delay_seconds FROM subscriptions WHERE url = "
                                  "'https://example.com/d' AND dead_letter_queue_id IS NULL"),
                     62020);
    sns("Action=Subscribe&TopicArn=" ARN "delivery&Protocol=https&Endpoint=https://example.com/e&"
        "Attributes.entry.1.key=DeliveryPolicy&Attributes.entry.1.value=%7B%22healthyRetryPolicy"
        "%22%3A%7B%22numRetries%22%3A3.0%7D%7D",
        &r);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
}
END_TEST

/* A SetSubscriptionAttributes call on its own thread (no ck_assert there). */
struct set_call {
    const char *body;
    long status;
    char text[512];
};

static void *set_call_main(void *arg)
{
    struct set_call *sc = arg;
    struct response r;
    sns(sc->body, &r);
    sc->status = r.status;
    snprintf(sc->text, sizeof sc->text, "%s", buf_str(&r.body));
    response_cleanup(&r);
    return NULL;
}

/* SetSubscriptionAttributes changes the subscription as it is, under its row lock: one
 * unsubscribed while the call waits is NotFound (the write used to make it again). A test
 * transaction deletes it and holds the row until the call waits on it. */
START_TEST(set_subscription_attributes_does_not_bring_one_back)
{
    struct response r;
    sns("Action=CreateTopic&Name=again", &r);
    response_cleanup(&r);
    harness_put_queue(&srv, "again-q", NULL, 201);
    sns("Action=Subscribe&TopicArn=" ARN "again&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:"
        "000000000000:again-q",
        &r);
    assert_ok(&r, "<SubscriptionArn>" ARN "again:sqs-again-q</SubscriptionArn>", NULL);
    response_cleanup(&r);
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *d = PQexec(pg, "DELETE FROM subscriptions WHERE name = 'sqs-again-q'");
    ck_assert_str_eq(PQcmdTuples(d), "1");
    PQclear(d);
    static struct set_call sc; /* the thread outlives a failed check's jump out of here */
    sc = (struct set_call){"Action=SetSubscriptionAttributes&SubscriptionArn=" ARN
                           "again:sqs-again-q&AttributeName=RawMessageDelivery&AttributeValue=true",
                           0, ""};
    pthread_t t;
    pthread_create(&t, NULL, set_call_main, &sc);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND datname = current_database() "
                                      "AND query LIKE '%subscriptions%'",
                                      1, 10),
                     1);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    pthread_join(t, NULL);
    ck_assert_msg(sc.status == 404 && strstr(sc.text, "<Code>NotFound</Code>"), "%ld %s", sc.status,
                  sc.text);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions WHERE name = 'sqs-again-q'"),
                     0);
}
END_TEST

/* A policy stored under the rules of its day (two anything-but lists of 600 values: 1,000 in
 * all is the rule for new policies now) does not stop another attribute from changing; given
 * anew, it is refused. */
START_TEST(a_stored_policy_keeps_the_rules_it_was_saved_under)
{
    struct response r;
    sns("Action=CreateTopic&Name=older", &r);
    response_cleanup(&r);
    harness_put_queue(&srv, "older-q", NULL, 201);
    sns("Action=Subscribe&TopicArn=" ARN "older&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:"
        "000000000000:older-q",
        &r);
    response_cleanup(&r);
    harness_sqlf("WITH l AS (SELECT jsonb_build_object('anything-but', jsonb_agg(g)) AS b FROM "
                 "generate_series(1, 600) g), u AS (UPDATE subscriptions SET filter_policy = "
                 "jsonb_build_object('f', jsonb_build_array((SELECT b FROM l), (SELECT b FROM "
                 "l))) WHERE name = 'sqs-older-q' RETURNING 1) SELECT count(*) FROM u");
    sns("Action=SetSubscriptionAttributes&SubscriptionArn=" ARN
        "older:sqs-older-q&AttributeName=RawMessageDelivery&AttributeValue=true",
        &r);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions WHERE name = 'sqs-older-q' "
                                  "AND raw_delivery AND filter_policy IS NOT NULL"),
                     1);
    /* another scope reads the policy anew: under the rules of new policies */
    sns("Action=SetSubscriptionAttributes&SubscriptionArn=" ARN
        "older:sqs-older-q&AttributeName=FilterPolicyScope&AttributeValue=MessageBody",
        &r);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
    char *policy = harness_sqlf_text("SELECT filter_policy::text FROM subscriptions WHERE name = "
                                     "'sqs-older-q'");
    struct buf body;
    buf_init(&body);
    buf_printf(&body, "Action=SetSubscriptionAttributes&SubscriptionArn=" ARN
                      "older:sqs-older-q&AttributeName=FilterPolicy&AttributeValue=");
    for (const char *p = policy; *p; p++)
        buf_printf(&body, isalnum((unsigned char)*p) ? "%c" : "%%%02X", (unsigned char)*p);
    free(policy);
    sns(buf_str(&body), &r);
    assert_error(&r, 400, "InvalidParameter");
    response_cleanup(&r);
    buf_cleanup(&body);
}
END_TEST

/* Two Subscribes of one endpoint with other attributes, racing: one makes the subscription, the
 * other finds it and answers "already exists with different attributes"; neither overwrites
 * the other (the upsert let the later write win). A test transaction holds the table in SHARE
 * mode until both wait to insert. */
START_TEST(racing_subscribes_never_overwrite_each_other)
{
    struct response r;
    sns("Action=CreateTopic&Name=race", &r);
    response_cleanup(&r);
    harness_put_queue(&srv, "race-q", NULL, 201);
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PQclear(PQexec(pg, "BEGIN"));
    PQclear(PQexec(pg, "LOCK TABLE subscriptions IN SHARE MODE"));
#define RACE_SUBSCRIBE                                                                   \
    "Action=Subscribe&TopicArn=" ARN "race&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:" \
    "000000000000:race-q&Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value="
    static struct set_call calls[2]; /* the threads outlive a failed check's jump out of here */
    calls[0] = (struct set_call){RACE_SUBSCRIBE "true", 0, ""};
    calls[1] = (struct set_call){RACE_SUBSCRIBE "false", 0, ""};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, set_call_main, &calls[i]);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "wait_event_type = 'Lock' AND datname = current_database() "
                                      "AND query LIKE '%INSERT INTO subscriptions%'",
                                      2, 10),
                     2);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int won = calls[0].status == 200 ? 0 : 1, lost = 1 - won;
    ck_assert_msg(calls[won].status == 200, "%ld %s", calls[won].status, calls[won].text);
    ck_assert_msg(calls[lost].status == 400 && strstr(calls[lost].text, "different attributes"),
                  "%ld %s", calls[lost].status, calls[lost].text);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM subscriptions WHERE name = 'sqs-race-q' "
                                  "AND raw_delivery = %s",
                                  won == 0 ? "true" : "false"),
                     1);
#undef RACE_SUBSCRIBE
}
END_TEST

START_TEST(roles_apply)
{
    struct response r;
    sns_as("Action=CreateTopic&Name=roles", service_key, service_secret, &r);
    assert_error(&r, 403, "AuthorizationError");
    response_cleanup(&r);
    sns("Action=CreateTopic&Name=roles", &r);
    response_cleanup(&r);
    sns_as("Action=ListTopics", service_key, service_secret, &r);
    assert_ok(&r, ARN "roles", NULL);
    response_cleanup(&r);
    sns_as("Action=Publish&TopicArn=" ARN "roles&Message=m", service_key, service_secret, &r);
    assert_ok(&r, "<MessageId>", NULL);
    response_cleanup(&r);
    sns_as("Action=DeleteTopic&TopicArn=" ARN "roles", service_key, service_secret, &r);
    assert_error(&r, 403, "AuthorizationError");
    response_cleanup(&r);
    sns_as("Action=Subscribe&TopicArn=" ARN "roles&Protocol=http&Endpoint=http://x.example/",
           service_key, service_secret, &r);
    assert_error(&r, 403, "AuthorizationError");
    response_cleanup(&r);
}
END_TEST

START_TEST(hostile_parameters_never_fail_the_server)
{
    static const char *const bodies[] = {
        "Action=CreateTopic&Name=h&Attributes.entry.99999999999.key=FifoTopic",
        "Action=CreateTopic&Name=h&Attributes.entry.1.key=FifoTopic&Attributes.entry.1.value=x",
        "Action=CreateTopic&Name=h&Attributes=3",
        "Action=Publish&TopicArn=" ARN "h&Message=x&MessageAttributes.entry.1.Name=a",
        "Action=Publish&TopicArn=" ARN "h&Message=x&MessageAttributes=7",
        "Action=Publish&TopicArn=" ARN "h&Message=x&MessageStructure=json",
        "Action=Publish&TopicArn=" ARN "h&Message=%00",
        "Action=Publish&TopicArn=" ARN "h&Message=x&Subject=%0A",
        "Action=PublishBatch&TopicArn=" ARN "h&PublishBatchRequestEntries=x",
        "Action=PublishBatch&TopicArn=" ARN "h&PublishBatchRequestEntries.member.1=x",
        "Action=Subscribe&TopicArn=" ARN "h&Protocol=sqs&Endpoint=arn:aws:sqs:::",
        "Action=Subscribe&TopicArn=" ARN "h&Protocol=http&Endpoint=http://",
        "Action=SetSubscriptionAttributes&SubscriptionArn=" ARN "h:x&AttributeName=FilterPolicy",
        "Action=ListSubscriptions&NextToken=%3A%3A%3A",
        "Action=ListTopics&NextToken=%FF",
        "Action=GetTopicAttributes&TopicArn=" ARN,
        "Action=GetTopicAttributes&TopicArn.1=x",
        "Action=Unsubscribe&SubscriptionArn=" ARN "h:",
    };
    struct response r;
    sns("Action=CreateTopic&Name=h", &r);
    response_cleanup(&r);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        sns(bodies[i], &r);
        /* answered as SNS would: a result, or an error in SNS's shape (never a 500) */
        ck_assert_msg(r.status >= 200 && r.status < 500, "%s: %ld %s", bodies[i], r.status,
                      buf_str(&r.body));
        if (r.status >= 400)
            ck_assert_msg(strstr(buf_str(&r.body), "<ErrorResponse") &&
                              strstr(buf_str(&r.body), "<Code>"),
                          "%s: %ld %s", bodies[i], r.status, buf_str(&r.body));
        else
            ck_assert_msg(strstr(buf_str(&r.body), "Response"), "%s: %s", bodies[i],
                          buf_str(&r.body));
        response_cleanup(&r);
    }
}
END_TEST

/* Publish refuses what SQS would refuse and XML cannot hold: control characters in Message (the
 * "default" of MessageStructure=json too), Subject and attribute values; a NUL byte in any
 * value is InvalidParameter, not a 500; list indexes are 1..1000. Nothing is delivered. */
START_TEST(control_characters_and_nul_are_refused)
{
    struct response r;
    sns("Action=CreateTopic&Name=ctl", &r);
    response_cleanup(&r);
    harness_put_queue(&srv, "ctl-q", NULL, 201);
    sns("Action=Subscribe&TopicArn=" ARN "ctl&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:"
        "000000000000:ctl-q",
        &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    check("Action=Publish&TopicArn=" ARN "ctl&Message=a%01b", 400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "ctl&Message=ok&Subject=s%0Bt", 400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "ctl&MessageStructure=json"
          "&Message=%7B%22default%22%3A%22a%5Cu0001b%22%7D",
          400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "ctl&Message=ok&MessageAttributes.entry.1.Name=a"
          "&MessageAttributes.entry.1.Value.DataType=String"
          "&MessageAttributes.entry.1.Value.StringValue=x%EF%BF%BFy",
          400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "ctl&Message=a%00b", 400, "InvalidParameter");
    check("Action=Publish&TopicArn=" ARN "ctl%00x&Message=ok", 400, "InvalidParameter");
    check("Action=PublishBatch&TopicArn=" ARN "ctl&PublishBatchRequestEntries.member.0.Id=a"
          "&PublishBatchRequestEntries.member.0.Message=m",
          400, "InvalidParameter");
    sns("Action=PublishBatch&TopicArn=" ARN "ctl&PublishBatchRequestEntries.member.1.Id=a"
        "&PublishBatchRequestEntries.member.1.Message=a%02b",
        &r);
    assert_ok(&r, "<Failed><member>", "<Code>InvalidParameter</Code>", NULL);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("ctl-q"), 0);
    sns("Action=Publish&TopicArn=" ARN "ctl&Message=fine%09%0A", &r);
    assert_ok(&r, "<MessageId>", NULL);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("ctl-q"), 1);
}
END_TEST

#define SNS_CLIENTS 8
#define SNS_EACH    10

struct sns_client {
    int n;
    long status[SNS_EACH];
};

/* SNS_EACH publishes "c-N-I" to topic together, every other one from Berlin. */
static void *sns_client_main(void *arg)
{
    struct sns_client *c = arg;
    for (int i = 0; i < SNS_EACH; i++) {
        char body[300];
        snprintf(body, sizeof body,
                 "Action=Publish&TopicArn=" ARN "together&Message=c-%d-%d&"
                 "MessageAttributes.entry.1.Name=city&"
                 "MessageAttributes.entry.1.Value.DataType=String&"
                 "MessageAttributes.entry.1.Value.StringValue=%s",
                 c->n, i, i % 2 ? "Berlin" : "Paris");
        struct response r;
        sns_as(body, service_key, service_secret, &r);
        c->status[i] = r.status;
        response_cleanup(&r);
    }
    return NULL;
}

/* Publishes to a cached standard topic go through the combiner, as the REST API's do: each lands
 * once in each queue its filters let it into; one no subscription wants is answered at once. */
START_TEST(publishes_to_a_cached_topic_are_combined)
{
    struct response r;
    sns("Action=CreateTopic&Name=together", &r);
    response_cleanup(&r);
    const char *queues[] = {"together-all", "together-berlin"};
    for (int i = 0; i < 2; i++) {
        char path[64], body[400];
        snprintf(path, sizeof path, "/queues/%s", queues[i]);
        harness_request(&srv, "PUT", path, HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
        response_cleanup(&r);
        snprintf(body, sizeof body,
                 "Action=Subscribe&TopicArn=" ARN "together&Protocol=sqs&Endpoint=arn:aws:sqs:"
                 "us-east-1:000000000000:%s&Attributes.entry.1.key=RawMessageDelivery&"
                 "Attributes.entry.1.value=true%s",
                 queues[i],
                 i ? "&Attributes.entry.2.key=FilterPolicy&Attributes.entry.2.value="
                     "%7B%22city%22%3A%5B%22Berlin%22%5D%7D"
                   : "");
        sns(body, &r);
        assert_ok(&r, "<SubscriptionArn>", NULL);
        response_cleanup(&r);
    }
    sns("Action=Publish&TopicArn=" ARN "together&Message=first", &r); /* (caches the topic) */
    assert_ok(&r, "<MessageId>", NULL);
    response_cleanup(&r);
    unsigned long long st0, n0, st1, n1;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_PUBLISH, &st0, &n0);
    static struct sns_client clients[SNS_CLIENTS];
    pthread_t threads[SNS_CLIENTS];
    for (int k = 0; k < SNS_CLIENTS; k++) {
        clients[k] = (struct sns_client){.n = k};
        pthread_create(&threads[k], NULL, sns_client_main, &clients[k]);
    }
    for (int k = 0; k < SNS_CLIENTS; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < SNS_CLIENTS; k++)
        for (int i = 0; i < SNS_EACH; i++)
            ck_assert_int_eq(clients[k].status[i], 200);
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_PUBLISH, &st1, &n1);
    ck_assert_int_gt(n1 - n0, 0);
    ck_assert_int_eq(harness_stored("together-all"), 1 + SNS_CLIENTS * SNS_EACH);
    ck_assert_int_eq(harness_stored("together-berlin"), SNS_CLIENTS * SNS_EACH / 2);
    ck_assert_int_eq(harness_sqlf("SELECT count(DISTINCT message_id) FROM messages m JOIN queues "
                                  "q ON q.id = m.queue_id WHERE q.name = 'together-all'"),
                     1 + SNS_CLIENTS * SNS_EACH);

    /* a publish the filters leave nobody: a MessageId, nothing stored */
    sns("Action=Unsubscribe&SubscriptionArn=" ARN "together:sqs-together-all", &r);
    assert_ok(&r, "<UnsubscribeResponse", NULL);
    response_cleanup(&r);
    long long outbox = harness_sqlf("SELECT count(*) FROM publish_outbox");
    sns("Action=Publish&TopicArn=" ARN "together&Message=nobody", &r);
    assert_ok(&r, "<PublishResult><MessageId>", NULL);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("together-berlin"), SNS_CLIENTS * SNS_EACH / 2);
    ck_assert_int_eq(harness_stored("together-all"), 1 + SNS_CLIENTS * SNS_EACH); /* unsubscribed */
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM publish_outbox"), outbox);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE body LIKE '%%nobody%%'"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sns");
    TCase *t = tcase_create("sns");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, create_topic_does_not_overwrite_a_topic_made_meanwhile);
    tcase_add_test(t, a_stored_policy_keeps_the_rules_it_was_saved_under);
    tcase_add_test(t, results_have_sns_shapes);
    tcase_add_test(t, errors_have_sns_codes);
    tcase_add_test(t, filter_policies_are_compiled);
    tcase_add_test(t, delivery_policies_default_what_they_leave_out);
    tcase_add_test(t, set_subscription_attributes_does_not_bring_one_back);
    tcase_add_test(t, racing_subscribes_never_overwrite_each_other);
    tcase_add_test(t, roles_apply);
    tcase_add_test(t, hostile_parameters_never_fail_the_server);
    tcase_add_test(t, control_characters_and_nul_are_refused);
    tcase_add_test(t, publishes_to_a_cached_topic_are_combined);
    suite_add_tcase(s, t);
    return harness_run(s);
}
