/* Unit tests for the AWS wire formats (src/aws/wire.c): the form parser (escapes, '+', empty
 * values, NUL bytes, malformed escapes, the pair limit), the query protocol's flattened
 * parameters reshaped into the JSON protocol's members, XML escaping, the XML rendering of a
 * result and both error envelopes. */
#include "rydes/wire.h"

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_form_parse)
{
    struct wire_form f;
    char why[128];
    const char *text = "Action=SendMessage&MessageBody=a+b%26c%3D%0D&Empty=&Flag&&X=%00y";
    ck_assert(wire_form_parse(text, strlen(text), &f, why, sizeof why));
    ck_assert_int_eq(f.n, 5);
    ck_assert_str_eq(wire_form_get(&f, "Action"), "SendMessage");
    ck_assert_str_eq(wire_form_get(&f, "MessageBody"), "a b&c=\r");
    ck_assert_str_eq(wire_form_get(&f, "Empty"), "");
    ck_assert_str_eq(wire_form_get(&f, "Flag"), "");
    ck_assert_uint_eq(f.pairs[4].value_len, 2);
    ck_assert_ptr_null(wire_form_get(&f, "Missing"));
    wire_form_cleanup(&f);
    static const char *const bad[] = {"A=%zz", "A=%4", "=x", "%00=x", "A%=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!wire_form_parse(bad[i], strlen(bad[i]), &f, why, sizeof why), "%s", bad[i]);
        wire_form_cleanup(&f);
    }
}
END_TEST

START_TEST(test_form_pair_limit)
{
    size_t n = (WIRE_FORM_MAX_PAIRS + 1) * 4;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i += 4)
        memcpy(text + i, "a=1&", 4);
    text[n] = '\0';
    struct wire_form f;
    char why[128];
    ck_assert(!wire_form_parse(text, n, &f, why, sizeof why));
    ck_assert(strstr(why, "parameters") != NULL);
    wire_form_cleanup(&f);
    ck_assert(wire_form_parse(text, n - 4, &f, why, sizeof why));
    ck_assert_int_eq(f.n, WIRE_FORM_MAX_PAIRS);
    wire_form_cleanup(&f);
    free(text);
}
END_TEST

static json_t *query_json(const char *text)
{
    struct wire_form f;
    char why[128];
    ck_assert(wire_form_parse(text, strlen(text), &f, why, sizeof why));
    const char *bad = NULL;
    json_t *j = wire_query_to_json(&f, &bad);
    wire_form_cleanup(&f);
    return j;
}

static void expect_json(json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    ck_assert_ptr_nonnull(want);
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_msg(json_equal(got, want), "got %s", g);
    free(g);
    json_decref(want);
    json_decref(got);
}

START_TEST(test_query_to_json)
{
    expect_json(query_json("Action=SendMessageBatch&Version=2012-11-05&QueueUrl=u"
                           "&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2."
                           "MessageBody=two&SendMessageBatchRequestEntry.1.Id=a"
                           "&SendMessageBatchRequestEntry.1.MessageBody=one"
                           "&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k"
                           "&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType="
                           "String&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value."
                           "StringValue=v"),
                "{\"QueueUrl\":\"u\",\"Entries\":[{\"Id\":\"a\",\"MessageBody\":\"one\","
                "\"MessageAttributes\":{\"k\":{\"DataType\":\"String\",\"StringValue\":\"v\"}}},"
                "{\"Id\":\"b\",\"MessageBody\":\"two\"}]}");
    expect_json(query_json("Action=CreateQueue&QueueName=q&Attribute.1.Name=DelaySeconds"
                           "&Attribute.1.Value=5&Attribute.2.Name=VisibilityTimeout"
                           "&Attribute.2.Value=9&Tag.1.Key=team&Tag.1.Value=rides"),
                "{\"QueueName\":\"q\",\"Attributes\":{\"DelaySeconds\":\"5\","
                "\"VisibilityTimeout\":\"9\"},\"Tags\":{\"team\":\"rides\"}}");
    expect_json(query_json("AttributeName.2=B&AttributeName.1=A&MessageAttributeName.1=All"
                           "&TagKey.1=x"),
                "{\"AttributeNames\":[\"A\",\"B\"],\"MessageAttributeNames\":[\"All\"],"
                "\"TagKeys\":[\"x\"]}");
    struct wire_form f;
    char why[128];
    ck_assert(wire_form_parse("MessageBody=%FF", 15, &f, why, sizeof why));
    const char *bad = NULL;
    ck_assert_ptr_null(wire_query_to_json(&f, &bad));
    ck_assert_str_eq(bad, "MessageBody");
    wire_form_cleanup(&f);
}
END_TEST

START_TEST(test_xml_escape)
{
    struct buf b;
    buf_init(&b);
    const char *s = "<a href=\"x\">&'\r\n\tü</a>";
    wire_xml_escape(&b, s, strlen(s));
    ck_assert_str_eq(buf_str(&b), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&#xD;\n\tü&lt;/a&gt;");
    buf_cleanup(&b);
}
END_TEST

START_TEST(test_xml_response)
{
    struct buf b;
    buf_init(&b);
    json_t *r = json_loads("{\"Messages\":[{\"MessageId\":\"m\",\"Body\":\"<b>\","
                           "\"Attributes\":{\"SentTimestamp\":\"1\"},"
                           "\"MessageAttributes\":{\"k\":{\"StringValue\":\"v\","
                           "\"DataType\":\"String\"}}}]}",
                           0, NULL);
    wire_xml_response(&b, "ns", "ReceiveMessage", r, "rid");
    ck_assert_str_eq(buf_str(&b),
                     "<?xml version=\"1.0\"?><ReceiveMessageResponse xmlns=\"ns\">"
                     "<ReceiveMessageResult><Message><MessageId>m</MessageId>"
                     "<Body>&lt;b&gt;</Body><Attribute><Name>SentTimestamp</Name>"
                     "<Value>1</Value></Attribute><MessageAttribute><Name>k</Name><Value>"
                     "<StringValue>v</StringValue><DataType>String</DataType></Value>"
                     "</MessageAttribute></Message></ReceiveMessageResult><ResponseMetadata>"
                     "<RequestId>rid</RequestId></ResponseMetadata></ReceiveMessageResponse>");
    json_decref(r);
    buf_reset(&b);
    r = json_loads("{\"Successful\":[{\"Id\":\"a\"}],\"Failed\":[{\"Id\":\"b\","
                   "\"SenderFault\":true}]}",
                   0, NULL);
    wire_xml_response(&b, "ns", "DeleteMessageBatch", r, "rid");
    ck_assert(strstr(buf_str(&b), "<DeleteMessageBatchResultEntry><Id>a</Id>"
                                  "</DeleteMessageBatchResultEntry><BatchResultErrorEntry>"
                                  "<Id>b</Id><SenderFault>true</SenderFault>"));
    json_decref(r);
    buf_reset(&b);
    wire_xml_response(&b, "ns", "DeleteQueue", NULL, "rid");
    ck_assert(!strstr(buf_str(&b), "Result>"));
    buf_cleanup(&b);
}
END_TEST

START_TEST(test_errors)
{
    const struct wire_error *e = wire_error_info(WIRE_QUEUE_DOES_NOT_EXIST);
    ck_assert_str_eq(e->code, "AWS.SimpleQueueService.NonExistentQueue");
    ck_assert_int_eq(e->status, 400);
    json_t *j = wire_error_json(e, "com.amazonaws.sqs", "gone");
    ck_assert_str_eq(json_string_value(json_object_get(j, "__type")),
                     "com.amazonaws.sqs#QueueDoesNotExist");
    json_decref(j);
    struct buf b;
    buf_init(&b);
    wire_error_xml(&b, "ns", wire_error_info(WIRE_SIGNATURE_MISMATCH), "a < b", "rid");
    ck_assert_str_eq(buf_str(&b), "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"ns\"><Error>"
                                  "<Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
                                  "<Message>a &lt; b</Message><Detail/></Error>"
                                  "<RequestId>rid</RequestId></ErrorResponse>");
    buf_cleanup(&b);
    ck_assert_int_eq(wire_error_info(WIRE_UNAVAILABLE)->status, 503);
    ck_assert(!wire_error_info(WIRE_INTERNAL)->sender);
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("wire");
    tcase_add_test(tc, test_form_parse);
    tcase_add_test(tc, test_form_pair_limit);
    tcase_add_test(tc, test_query_to_json);
    tcase_add_test(tc, test_xml_escape);
    tcase_add_test(tc, test_xml_response);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(wire_suite());
}
