/* Unit tests for the AWS wire formats (src/aws/wire.c): the form parser (escapes, '+', empty
 * values, NUL bytes, malformed escapes, the pair limit), the query protocol's flattened
 * parameters reshaped into the JSON protocol's members, XML escaping, the XML rendering of a
 * result and both error envelopes. */
#include "rydes/aws.h"
#include "rydes/body.h"
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
    /* names are printable ASCII: a byte that is not valid UTF-8 in a dotted name once made
     * the reshaping use a freed object */
    static const char *const bad[] = {"A=%zz",   "A=%4",    "=x",       "%00=x",         "A%=1",
                                      "%FF.x=1", "A.%FF=1", "%C3%A9=1", "Attribute%0A=1"};
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
    json_t *j = wire_query_to_json(&f, why, sizeof why);
    wire_form_cleanup(&f);
    return j;
}

/* The query of text is refused by wire_query_to_json with a reason holding want. */
static void expect_refused(const char *text, const char *want)
{
    struct wire_form f;
    char why[256];
    ck_assert(wire_form_parse(text, strlen(text), &f, why, sizeof why));
    json_t *j = wire_query_to_json(&f, why, sizeof why);
    ck_assert_msg(j == NULL, "%s was accepted", text);
    ck_assert_msg(strstr(why, want), "%s: %s", text, why);
    wire_form_cleanup(&f);
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
    expect_refused("MessageBody=%FF", "MessageBody is not valid UTF-8");
}
END_TEST

/* A NUL byte anywhere in a value is refused: it would truncate in C (QueueUrl=.../q1%00junk
 * naming q1) or be refused by PostgreSQL (a 500). */
START_TEST(test_query_refuses_nul)
{
    expect_refused("QueueUrl=http://h/000000000000/q1%00junk", "QueueUrl contains a NUL");
    expect_refused("Tag.1.Key=a&Tag.1.Value=x%00y", "Tag.1.Value contains a NUL");
    expect_refused("TagKey.1=a%00", "TagKey.1 contains a NUL");
    expect_refused("Action=SendMessage%00junk&MessageBody=x", "Action contains a NUL");
}
END_TEST

/* List indexes are 1..WIRE_QUERY_MAX_INDEX without sign or leading zero: no overflow when they
 * are sorted (2147483647 - -2 was one), no silent reordering. */
START_TEST(test_query_indexes)
{
    expect_refused("Attribute.2147483647.Name=A&Attribute.2147483647.Value=1&Attribute.-2.Name=B"
                   "&Attribute.-2.Value=2",
                   "is not a number from 1 to 1000");
    static const char *const bad[] = {"AttributeName.0=A",
                                      "AttributeName.-1=A",
                                      "AttributeName.01=A",
                                      "AttributeName.+1=A",
                                      "AttributeName.1001=A",
                                      "AttributeName.x=A",
                                      "AttributeName.99999999999=A",
                                      "Tag.1a.Key=k&Tag.1a.Value=v",
                                      "SendMessageBatchRequestEntry.4294967297.Id=a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(bad[i], "from 1 to 1000");
    /* numbers order as numbers, the largest index included */
    expect_json(query_json("AttributeName.1000=D&AttributeName.2=B&AttributeName.10=C"
                           "&AttributeName.1=A"),
                "{\"AttributeNames\":[\"A\",\"B\",\"C\",\"D\"]}");
}
END_TEST

/* A parameter name of more than WIRE_QUERY_MAX_PARTS parts is refused (each part was a nested
 * object: 2000 deep names made a small body cost a hundred megabytes); the deepest AWS name
 * passes. A map entry without its name or value, or naming a key twice, is refused rather than
 * dropped or merged. */
START_TEST(test_query_shapes_refused)
{
    expect_refused("A.b.c.d.e.f.g.h.i.j.k=1", "more than 10 parts");
    json_t *j = query_json("PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value."
                           "DataType=String&PublishBatchRequestEntries.member.1."
                           "MessageAttributes.entry.1.Name=k&PublishBatchRequestEntries.member.1."
                           "Id=a");
    ck_assert_ptr_nonnull(j);
    json_decref(j);
    expect_refused("Attribute.1.Value=5", "needs a Name and a Value");
    expect_refused("Attribute.1.Name=DelaySeconds", "needs a Name and a Value");
    expect_refused("MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value."
                   "StringValue=x",
                   "needs a Name and a Value");
    expect_refused("Attribute.1.Name=A&Attribute.1.Value=1&Attribute.2.Name=A&Attribute.2.Value=2",
                   "The Name A is given twice");
    expect_refused("Tag.1.Key=t&Tag.1.Value=1&Tag.2.Key=t&Tag.2.Value=2", "given twice");
}
END_TEST

/* JSON inside a parameter (a policy, a MessageStructure=json Message) is parsed under the body's
 * memory cap: a text of empty objects takes ~75x its size parsed, past the 32x allowed. */
START_TEST(test_parameter_json_is_capped)
{
    size_t k = 20000, n = 0;
    char *text = malloc(k * 3 + 8);
    ck_assert_ptr_nonnull(text);
    text[n++] = '[';
    for (size_t i = 0; i < k; i++) {
        memcpy(text + n, "{},", 3);
        n += 3;
    }
    memcpy(text + n, "{}]", 4);
    ck_assert_ptr_null(aws_parse_json(text));
    free(text);
    json_t *j = aws_parse_json("{\"deadLetterTargetArn\": \"arn:aws:sqs:r:1:q\"}");
    ck_assert(json_is_object(j));
    json_decref(j);
    ck_assert_ptr_null(aws_parse_json("{\"a\": 1, \"a\": 2}"));
    ck_assert_ptr_null(aws_parse_json("{\"a\": 1} x"));
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

/* What XML 1.0 forbids even as a character reference becomes U+FFFD: controls but tab, LF and
 * CR, U+FFFE, U+FFFF, and malformed UTF-8 (a cut sequence, an overlong one, a surrogate). */
START_TEST(test_xml_escape_forbidden)
{
    struct buf b;
    buf_init(&b);
    static const char s[] = "a\x01"
                            "b\x1f\x7f"
                            "c\xef\xbf\xbe"
                            "d\xef\xbf\xbf"
                            "e\xef\xbf\xbd"
                            "f\xc0\xaf"
                            "g\xed\xa0\x80"
                            "h\xf0\x9f\x98\x80"
                            "i\x00j\xe2\x82";
    wire_xml_escape(&b, s, sizeof s - 1);
    ck_assert_str_eq(buf_str(&b), "a\xef\xbf\xbd"
                                  "b\xef\xbf\xbd\x7f"
                                  "c\xef\xbf\xbd"
                                  "d\xef\xbf\xbd"
                                  "e\xef\xbf\xbd"
                                  "f\xef\xbf\xbd\xef\xbf\xbd"
                                  "g\xef\xbf\xbd\xef\xbf\xbd"
                                  "\xef\xbf\xbd"
                                  "h\xf0\x9f\x98\x80"
                                  "i\xef\xbf\xbd"
                                  "j\xef\xbf\xbd\xef\xbf\xbd");
    buf_cleanup(&b);
}
END_TEST

START_TEST(test_chars_valid)
{
    static const char *const ok[] = {
        "", "plain", "tab\t lf\n cr\r", "ü€\xf0\x9f\x98\x80", "\xee\x80\x80\xef\xbf\xbd", "\x7f"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ck_assert_msg(wire_chars_valid(ok[i], strlen(ok[i])), "%zu", i);
    static const char *const bad[] = {"a\x01",        "\x1f",     "x\x0b",        "\xef\xbf\xbe",
                                      "\xef\xbf\xbf", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!wire_chars_valid(bad[i], strlen(bad[i])), "%zu", i);
    ck_assert(!wire_chars_valid("a\0b", 3));
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
    /* throttling as the SDKs' models have it: SQS RequestThrottled 403, SNS Throttled 429 */
    ck_assert_str_eq(wire_error_info(WIRE_THROTTLED)->code, "RequestThrottled");
    ck_assert_int_eq(wire_error_info(WIRE_SNS_THROTTLED)->status, 429);
    ck_assert_str_eq(wire_error_info(WIRE_SNS_THROTTLED)->code, "Throttled");
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
    tcase_add_test(tc, test_query_refuses_nul);
    tcase_add_test(tc, test_query_indexes);
    tcase_add_test(tc, test_query_shapes_refused);
    tcase_add_test(tc, test_parameter_json_is_capped);
    tcase_add_test(tc, test_xml_escape);
    tcase_add_test(tc, test_xml_escape_forbidden);
    tcase_add_test(tc, test_chars_valid);
    tcase_add_test(tc, test_xml_response);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    body_json_setup(0); /* no floor: the cap is reached with small texts */
    return unit_run(wire_suite());
}
