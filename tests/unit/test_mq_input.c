/* Unit tests for the queue API's input validation (src/api/mq_input.c): queue names (the
 * [A-Za-z0-9_-]{1,80} alphabet, the .fifo suffix and the 80-character cap including it), queue
 * attributes (defaults for a NULL body, every range boundary in and out, non-integer values,
 * fifo agreeing with the name, content_based_dedup only on FIFO queues, the dead_letter object's
 * shapes, unknown fields), message attributes (SQS's name rules, the String/Number/Binary types
 * with optional labels, number and base64 values, the 10-attribute cap and the size returned),
 * one message to send (string and JSON bodies, delay, group and deduplication ids on standard
 * and FIFO queues, the max_message_bytes cap, field paths under a batch prefix) and receive
 * requests (defaults from the queue, ranges). */
#include "rydes/mq_input.h"

#include "unit.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses test JSON (any value). */
static json_t *js(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    ck_assert_msg(v != NULL, "bad test JSON %s: %s", text, err.text);
    return v;
}

/* Does fe hold an error for exactly this field? */
static bool has_error(const struct field_errors *fe, const char *field)
{
    for (size_t i = 0; i < json_array_size(fe->list); i++) {
        json_t *e = json_array_get(fe->list, i);
        const char *f = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        ck_assert_ptr_nonnull(m);
        ck_assert(m[0] != '\0');
        if (f && strcmp(f, field) == 0)
            return true;
    }
    return false;
}

/* All fields of fe, for failure messages (static buffer). */
static const char *fields_of(const struct field_errors *fe)
{
    static char out[1024];
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(fe->list); i++) {
        json_t *e = json_array_get(fe->list, i);
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%s: %s", i ? "; " : "",
                 json_string_value(json_object_get(e, "field")),
                 json_string_value(json_object_get(e, "message")));
    }
    return out;
}

/* A string of n copies of c followed by suffix (caller frees). */
static char *repeat(char c, size_t n, const char *suffix)
{
    char *s = malloc(n + strlen(suffix) + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    strcpy(s + n, suffix);
    return s;
}

/* ---- queue names ---- */

START_TEST(queue_name_table)
{
    char *n80 = repeat('a', 80, ""), *n81 = repeat('a', 81, "");
    char *f75 = repeat('b', 75, ".fifo"), *f76 = repeat('b', 76, ".fifo");
    const struct {
        const char *name;
        bool valid;
    } cases[] = {
        {"a", true},
        {"orders", true},
        {"a_b-c", true},
        {"A9_Z-0", true},
        {n80, true},
        {"x.fifo", true},
        {f75, true},
        {"", false},
        {n81, false},
        {f76, false},
        {".fifo", false},
        {"a.b", false},
        {"a b", false},
        {"\xc3\xa9", false},
        {"a/b", false},
        {"q.FIFO", false},
        {"q.fifo.fifo", false},
        {"q..fifo", false},
        {"fifo", true},
        {"q.fif", false},
        {"q\tx", false},
        {"q%20", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(mq_input_queue_name(cases[i].name) == cases[i].valid,
                      "case %zu (\"%.20s\", %zu chars): expected %s", i, cases[i].name,
                      strlen(cases[i].name), cases[i].valid ? "valid" : "invalid");
    free(n80);
    free(n81);
    free(f75);
    free(f76);
}
END_TEST

/* ---- queue attributes ---- */

START_TEST(attrs_defaults_with_null_body)
{
    struct mq_attrs a;
    struct field_errors fe;
    field_errors_init(&fe);
    memset(&a, 0x5a, sizeof a);
    mq_input_attrs(NULL, "orders", &a, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(!a.fifo);
    ck_assert_int_eq(a.visibility_timeout, 30);
    ck_assert_int_eq(a.delay_seconds, 0);
    ck_assert_int_eq(a.retention_seconds, 345600);
    ck_assert_int_eq(a.max_message_bytes, 262144);
    ck_assert_int_eq(a.receive_wait_seconds, 0);
    ck_assert(!a.content_based_dedup);
    ck_assert_str_eq(a.dead_letter_queue, "");
    ck_assert_int_eq(a.max_receive_count, 0);

    mq_input_attrs(NULL, "orders.fifo", &a, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(a.fifo);
    ck_assert(!a.content_based_dedup);
    ck_assert_int_eq(a.visibility_timeout, 30);

    /* an empty object is the same as no body */
    json_t *empty = js("{}");
    mq_input_attrs(empty, "orders", &a, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(!a.fifo);
    ck_assert_int_eq(a.max_message_bytes, 262144);
    json_decref(empty);
    field_errors_cleanup(&fe);
}
END_TEST

static int attr_value(const struct mq_attrs *a, const char *field)
{
    if (strcmp(field, "visibility_timeout") == 0)
        return a->visibility_timeout;
    if (strcmp(field, "delay_seconds") == 0)
        return a->delay_seconds;
    if (strcmp(field, "retention_seconds") == 0)
        return a->retention_seconds;
    if (strcmp(field, "max_message_bytes") == 0)
        return a->max_message_bytes;
    if (strcmp(field, "receive_wait_seconds") == 0)
        return a->receive_wait_seconds;
    ck_abort_msg("unknown field %s", field);
    return 0;
}

START_TEST(attrs_range_boundaries)
{
    const struct {
        const char *field;
        const char *value; /* JSON text */
        bool ok;
    } cases[] = {
        {"visibility_timeout", "0", true},
        {"visibility_timeout", "43200", true},
        {"visibility_timeout", "43201", false},
        {"visibility_timeout", "-1", false},
        {"visibility_timeout", "30.0", false},
        {"visibility_timeout", "\"30\"", false},
        {"visibility_timeout", "true", false},
        {"visibility_timeout", "null", false},
        {"delay_seconds", "0", true},
        {"delay_seconds", "900", true},
        {"delay_seconds", "901", false},
        {"delay_seconds", "-1", false},
        {"retention_seconds", "60", true},
        {"retention_seconds", "59", false},
        {"retention_seconds", "1209600", true},
        {"retention_seconds", "1209601", false},
        {"max_message_bytes", "1024", true},
        {"max_message_bytes", "1023", false},
        {"max_message_bytes", "1048576", true},
        {"max_message_bytes", "1048577", false},
        {"receive_wait_seconds", "0", true},
        {"receive_wait_seconds", "20", true},
        {"receive_wait_seconds", "21", false},
        {"receive_wait_seconds", "-1", false},
        {"receive_wait_seconds", "4294967296", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"%s\": %s}", cases[i].field, cases[i].value);
        json_t *body = js(text);
        struct mq_attrs a;
        struct field_errors fe;
        field_errors_init(&fe);
        mq_input_attrs(body, "q", &a, &fe);
        if (cases[i].ok) {
            ck_assert_msg(fe.count == 0, "%s: unexpected errors %s", text, fields_of(&fe));
            ck_assert_int_eq(attr_value(&a, cases[i].field), atoi(cases[i].value));
        } else {
            ck_assert_msg(fe.count == 1 && has_error(&fe, cases[i].field),
                          "%s: expected one error on %s, got %s", text, cases[i].field,
                          fields_of(&fe));
        }
        field_errors_cleanup(&fe);
        json_decref(body);
    }
}
END_TEST

START_TEST(attrs_fifo_must_agree_with_name)
{
    const struct {
        const char *name;
        const char *body;
        bool ok;
        bool fifo;
    } cases[] = {
        {"orders", "{\"fifo\": false}", true, false},
        {"orders", "{\"fifo\": true}", false, false},
        {"orders.fifo", "{\"fifo\": true}", true, true},
        {"orders.fifo", "{\"fifo\": false}", false, true},
        {"orders.fifo", "{}", true, true},
        {"orders", "{\"fifo\": \"yes\"}", false, false},
        {"orders", "{\"fifo\": 1}", false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = js(cases[i].body);
        struct mq_attrs a;
        struct field_errors fe;
        field_errors_init(&fe);
        mq_input_attrs(body, cases[i].name, &a, &fe);
        if (cases[i].ok)
            ck_assert_msg(fe.count == 0, "case %zu: %s", i, fields_of(&fe));
        else
            ck_assert_msg(fe.count == 1 && has_error(&fe, "fifo"), "case %zu: %s", i,
                          fields_of(&fe));
        /* whatever the body says, the representation follows the name */
        ck_assert_msg(a.fifo == cases[i].fifo, "case %zu", i);
        field_errors_cleanup(&fe);
        json_decref(body);
    }
}
END_TEST

START_TEST(attrs_content_based_dedup_is_fifo_only)
{
    json_t *on = js("{\"content_based_dedup\": true}");
    json_t *off = js("{\"content_based_dedup\": false}");
    json_t *bad = js("{\"content_based_dedup\": \"true\"}");
    struct mq_attrs a;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_attrs(on, "q", &a, &fe);
    ck_assert_int_eq(fe.count, 1);
    ck_assert(has_error(&fe, "content_based_dedup"));
    field_errors_cleanup(&fe);

    field_errors_init(&fe);
    mq_input_attrs(off, "q", &a, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(!a.content_based_dedup);

    mq_input_attrs(on, "q.fifo", &a, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(a.content_based_dedup);
    ck_assert(a.fifo);

    mq_input_attrs(bad, "q.fifo", &a, &fe);
    ck_assert(has_error(&fe, "content_based_dedup"));
    field_errors_cleanup(&fe);
    json_decref(on);
    json_decref(off);
    json_decref(bad);
}
END_TEST

START_TEST(attrs_dead_letter_shapes)
{
    char *long_name = repeat('d', 81, "");
    char long_body[256];
    snprintf(long_body, sizeof long_body,
             "{\"dead_letter\": {\"queue\": \"%s\", \"max_receive_count\": 3}}", long_name);
    const struct {
        const char *body;
        bool ok;
        const char *dlq; /* expected when ok */
        int mrc;
    } cases[] = {
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 5}}", true, "dlq", 5},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 1}}", true, "dlq", 1},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 1000}}", true, "dlq", 1000},
        {"{\"dead_letter\": null}", true, "", 0},
        {"{\"dead_letter\": {\"max_receive_count\": 5}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"a b\", \"max_receive_count\": 5}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"\", \"max_receive_count\": 5}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": 7, \"max_receive_count\": 5}}", false, NULL, 0},
        {long_body, false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 0}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 1001}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": \"5\"}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"dlq\"}}", false, NULL, 0},
        {"{\"dead_letter\": {\"queue\": \"dlq\", \"max_receive_count\": 5, \"x\": 1}}", false, NULL,
         0},
        {"{\"dead_letter\": \"dlq\"}", false, NULL, 0},
        {"{\"dead_letter\": [\"dlq\", 5]}", false, NULL, 0},
        {"{\"dead_letter\": 5}", false, NULL, 0},
        {"{\"dead_letter\": {}}", false, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = js(cases[i].body);
        struct mq_attrs a;
        struct field_errors fe;
        field_errors_init(&fe);
        mq_input_attrs(body, "src", &a, &fe);
        if (cases[i].ok) {
            ck_assert_msg(fe.count == 0, "case %zu: %s", i, fields_of(&fe));
            ck_assert_str_eq(a.dead_letter_queue, cases[i].dlq);
            ck_assert_int_eq(a.max_receive_count, cases[i].mrc);
        } else {
            /* dead_letter itself when it is no object, else the member at fault */
            bool named = has_error(&fe, "dead_letter") || has_error(&fe, "dead_letter.queue") ||
                         has_error(&fe, "dead_letter.max_receive_count") ||
                         has_error(&fe, "dead_letter.x");
            ck_assert_msg(fe.count >= 1 && named, "case %zu: %s", i, fields_of(&fe));
            ck_assert_msg(a.dead_letter_queue[0] == '\0', "case %zu kept a dead-letter queue", i);
        }
        field_errors_cleanup(&fe);
        json_decref(body);
    }
    free(long_name);
}
END_TEST

START_TEST(attrs_unknown_fields_are_named)
{
    json_t *body = js("{\"visibilty_timeout\": 5, \"delay_seconds\": 1, \"Fifo\": true}");
    struct mq_attrs a;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_attrs(body, "q", &a, &fe);
    ck_assert_int_eq(fe.count, 2);
    ck_assert(has_error(&fe, "visibilty_timeout"));
    ck_assert(has_error(&fe, "Fifo"));
    ck_assert_int_eq(a.delay_seconds, 1);
    field_errors_cleanup(&fe);
    json_decref(body);
}
END_TEST

START_TEST(attrs_report_every_bad_field)
{
    json_t *body = js("{\"visibility_timeout\": -1, \"delay_seconds\": 901, "
                      "\"max_message_bytes\": 10, \"content_based_dedup\": true}");
    struct mq_attrs a;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_attrs(body, "q", &a, &fe);
    ck_assert_int_eq(fe.count, 4);
    ck_assert(has_error(&fe, "visibility_timeout"));
    ck_assert(has_error(&fe, "delay_seconds"));
    ck_assert(has_error(&fe, "max_message_bytes"));
    ck_assert(has_error(&fe, "content_based_dedup"));
    field_errors_cleanup(&fe);
    json_decref(body);
}
END_TEST

/* ---- message attributes ---- */

/* Checks {name: {"type":"String","value":"v"}}; returns whether it was accepted. */
static bool attribute_name_ok(const char *name)
{
    json_t *attrs = json_pack("{s:{s:s, s:s}}", name, "type", "String", "value", "v");
    ck_assert_ptr_nonnull(attrs);
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_message_attributes(attrs, "attributes", &fe);
    bool ok = fe.count == 0;
    if (!ok)
        ck_assert(has_error(&fe, "attributes"));
    field_errors_cleanup(&fe);
    json_decref(attrs);
    return ok;
}

START_TEST(attribute_name_table)
{
    char *n256 = repeat('n', 256, ""), *n257 = repeat('n', 257, "");
    const struct {
        const char *name;
        bool ok;
    } cases[] = {
        {"a", true},         {"fare", true},      {"a.b", true},       {"A_b-c.d9", true},
        {n256, true},        {"AWSx", true},      {"Amazonia", true},  {"aws", true},
        {"", false},         {n257, false},       {".a", false},       {"a.", false},
        {"a..b", false},     {"AWS.x", false},    {"aws.x", false},    {"Aws.x", false},
        {"Amazon.x", false}, {"amazon.y", false}, {"AMAZON.z", false}, {"a b", false},
        {"a/b", false},      {"\xc3\xa9", false}, {"a$", false},       {"a:b", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(attribute_name_ok(cases[i].name) == cases[i].ok,
                      "name %zu (\"%.20s\", %zu chars): expected %s", i, cases[i].name,
                      strlen(cases[i].name), cases[i].ok ? "accepted" : "refused");
    free(n256);
    free(n257);
}
END_TEST

/* Checks one attribute {"a": attr_text}; returns whether it was accepted. */
static bool attribute_ok(const char *attr_text)
{
    char text[512];
    snprintf(text, sizeof text, "{\"a\": %s}", attr_text);
    json_t *attrs = js(text);
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_message_attributes(attrs, "attributes", &fe);
    bool ok = fe.count == 0;
    if (!ok)
        ck_assert_msg(has_error(&fe, "attributes"), "%s: %s", text, fields_of(&fe));
    field_errors_cleanup(&fe);
    json_decref(attrs);
    return ok;
}

START_TEST(attribute_type_table)
{
    const struct {
        const char *attr;
        bool ok;
    } cases[] = {
        {"{\"type\": \"String\", \"value\": \"x\"}", true},
        {"{\"type\": \"Number\", \"value\": \"1\"}", true},
        {"{\"type\": \"Binary\", \"value\": \"AAAA\"}", true},
        {"{\"type\": \"Number.float\", \"value\": \"1.5\"}", true},
        {"{\"type\": \"String.custom-label\", \"value\": \"x\"}", true},
        {"{\"type\": \"Binary.png\", \"value\": \"AAAA\"}", true},
        {"{\"type\": \"Strin\", \"value\": \"x\"}", false},
        {"{\"type\": \"String.\", \"value\": \"x\"}", false},
        {"{\"type\": \"string\", \"value\": \"x\"}", false},
        {"{\"type\": \"StringX\", \"value\": \"x\"}", false},
        {"{\"type\": \"\", \"value\": \"x\"}", false},
        {"{\"type\": 5, \"value\": \"x\"}", false},
        {"{\"value\": \"x\"}", false},
        /* the value */
        {"{\"type\": \"String\"}", false},
        {"{\"type\": \"String\", \"value\": \"\"}", false},
        {"{\"type\": \"String\", \"value\": 5}", false},
        {"{\"type\": \"String\", \"value\": \"a\\u0000b\"}", false},
        {"{\"type\": \"String\", \"value\": \"x\", \"extra\": 1}", false},
        {"\"String\"", false},
        {"[\"String\", \"x\"]", false},
        {"null", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(attribute_ok(cases[i].attr) == cases[i].ok, "case %zu %s: expected %s", i,
                      cases[i].attr, cases[i].ok ? "accepted" : "refused");
}
END_TEST

START_TEST(attribute_number_values)
{
    const struct {
        const char *value;
        bool ok;
    } cases[] = {
        {"1", true},          {"-1.5e3", true}, {"0", true},      {"3.14159", true}, {"+2", true},
        {"1E-5", true},       {"abc", false},   {"nan", false},   {"NaN", false},    {"inf", false},
        {"-Infinity", false}, {"0x10", false},  {"1 ", false},    {" 1", false},     {"1,5", false},
        {"1e400", false},     {"--1", false},   {"1.2.3", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char attr[128];
        snprintf(attr, sizeof attr, "{\"type\": \"Number\", \"value\": \"%s\"}", cases[i].value);
        ck_assert_msg(attribute_ok(attr) == cases[i].ok, "number \"%s\": expected %s",
                      cases[i].value, cases[i].ok ? "accepted" : "refused");
    }
}
END_TEST

START_TEST(attribute_binary_values)
{
    const struct {
        const char *value;
        bool ok;
    } cases[] = {
        {"AAAA", true},  {"YWJj", true},     {"YQ==", true},    {"YWI=", true},  {"a+/9", true},
        {"YQ=", false},  {"Y===", false},    {"YQ=a", false},   {"=AAA", false}, {"!!!!", false},
        {"YW J", false}, {"YWJj\\n", false}, {"YWJjZA", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char attr[128];
        snprintf(attr, sizeof attr, "{\"type\": \"Binary\", \"value\": \"%s\"}", cases[i].value);
        ck_assert_msg(attribute_ok(attr) == cases[i].ok, "base64 \"%s\": expected %s",
                      cases[i].value, cases[i].ok ? "accepted" : "refused");
    }
}
END_TEST

/* An object of n String attributes a0..a{n-1} with value "v". */
static json_t *n_attributes(int n)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        json_object_set_new(o, name, json_pack("{s:s, s:s}", "type", "String", "value", "v"));
    }
    return o;
}

START_TEST(attribute_count_cap)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *ten = n_attributes(10), *eleven = n_attributes(11);
    mq_input_message_attributes(ten, "attributes", &fe);
    ck_assert_int_eq(fe.count, 0);
    mq_input_message_attributes(eleven, "entries[0].attributes", &fe);
    ck_assert_int_ge(fe.count, 1);
    ck_assert(has_error(&fe, "entries[0].attributes"));
    field_errors_cleanup(&fe);

    /* not an object at all */
    json_t *arr = js("[]"), *str = js("\"x\"");
    field_errors_init(&fe);
    mq_input_message_attributes(arr, "attributes", &fe);
    ck_assert_int_eq(fe.count, 1);
    mq_input_message_attributes(str, "attributes", &fe);
    ck_assert_int_eq(fe.count, 2);
    ck_assert(has_error(&fe, "attributes"));
    field_errors_cleanup(&fe);
    json_decref(ten);
    json_decref(eleven);
    json_decref(arr);
    json_decref(str);
}
END_TEST

START_TEST(attribute_size_counts_names_types_values)
{
    struct field_errors fe;
    field_errors_init(&fe);
    json_t *one = js("{\"fare\": {\"type\": \"Number\", \"value\": \"12.50\"}}");
    ck_assert_uint_eq(mq_input_message_attributes(one, "attributes", &fe), 4 + 6 + 5);
    json_t *two = js("{\"fare\": {\"type\": \"Number\", \"value\": \"12.50\"}, "
                     "\"who\": {\"type\": \"String.name\", \"value\": \"unicorn\"}}");
    ck_assert_uint_eq(mq_input_message_attributes(two, "attributes", &fe),
                      (4 + 6 + 5) + (3 + 11 + 7));
    /* values count in bytes, not code points */
    json_t *utf8 = js("{\"c\": {\"type\": \"String\", \"value\": \"\xc3\xa9\"}}");
    ck_assert_uint_eq(mq_input_message_attributes(utf8, "attributes", &fe), 1 + 6 + 2);
    json_t *empty = js("{}");
    ck_assert_uint_eq(mq_input_message_attributes(empty, "attributes", &fe), 0);
    ck_assert_int_eq(fe.count, 0);
    field_errors_cleanup(&fe);
    json_decref(one);
    json_decref(two);
    json_decref(utf8);
    json_decref(empty);
}
END_TEST

/* ---- one message to send ---- */

static struct mq_queue make_queue(bool fifo, bool cbd, int max_bytes)
{
    struct mq_queue q;
    memset(&q, 0, sizeof q);
    q.id = 1;
    snprintf(q.name, sizeof q.name, "%s", fifo ? "q.fifo" : "q");
    q.attrs.fifo = fifo;
    q.attrs.content_based_dedup = cbd;
    q.attrs.visibility_timeout = 30;
    q.attrs.delay_seconds = 0;
    q.attrs.retention_seconds = 345600;
    q.attrs.max_message_bytes = max_bytes;
    q.attrs.receive_wait_seconds = 0;
    return q;
}

/* Runs mq_input_send_entry on text; fills e and fe (caller cleans fe, frees *owned, decrefs). */
static json_t *send_entry(const char *text, const char *prefix, const struct mq_queue *q,
                          struct mq_send_entry *e, char **owned, struct field_errors *fe)
{
    json_t *obj = js(text);
    field_errors_init(fe);
    mq_input_send_entry(obj, prefix, q, e, owned, fe);
    return obj;
}

START_TEST(send_string_body)
{
    struct mq_queue q = make_queue(false, false, 262144);
    struct mq_send_entry e;
    char *owned = (char *)"sentinel";
    struct field_errors fe;
    json_t *obj = send_entry("{\"body\": \"hello world\"}", "", &q, &e, &owned, &fe);
    ck_assert_msg(fe.count == 0, "%s", fields_of(&fe));
    ck_assert_ptr_null(owned);
    ck_assert_uint_eq(e.body_len, 11);
    ck_assert_mem_eq(e.body, "hello world", 11);
    ck_assert(!e.body_json);
    ck_assert_int_eq(e.delay_seconds, -1);
    ck_assert_ptr_null(e.attributes);
    ck_assert_ptr_null(e.group_id);
    ck_assert_ptr_null(e.dedup_id);
    /* the body points into the request */
    ck_assert_ptr_eq(e.body, json_string_value(json_object_get(obj, "body")));
    field_errors_cleanup(&fe);
    json_decref(obj);
}
END_TEST

START_TEST(send_json_bodies_are_owned_compact_text)
{
    const struct {
        const char *text;
        const char *body;
    } cases[] = {
        {"{\"body\": {\"a\": 1, \"b\": [true, null]}}", "{\"a\":1,\"b\":[true,null]}"},
        {"{\"body\": [1, 2]}", "[1,2]"},
        {"{\"body\": 42}", "42"},
        {"{\"body\": false}", "false"},
        {"{\"body\": {}}", "{}"},
    };
    struct mq_queue q = make_queue(false, false, 262144);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mq_send_entry e;
        char *owned;
        struct field_errors fe;
        json_t *obj = send_entry(cases[i].text, "", &q, &e, &owned, &fe);
        ck_assert_msg(fe.count == 0, "%s: %s", cases[i].text, fields_of(&fe));
        ck_assert(e.body_json);
        ck_assert_ptr_nonnull(owned);
        ck_assert_ptr_eq(e.body, owned);
        ck_assert_str_eq(owned, cases[i].body);
        ck_assert_uint_eq(e.body_len, strlen(cases[i].body));
        free(owned);
        field_errors_cleanup(&fe);
        json_decref(obj);
    }
}
END_TEST

START_TEST(send_body_required_and_not_empty)
{
    const char *bodies[] = {"{}", "{\"body\": null}", "{\"body\": \"\"}",
                            "{\"body\": \"a\\u0000b\"}", "{\"attributes\": {}}"};
    struct mq_queue q = make_queue(false, false, 262144);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct mq_send_entry e;
        char *owned;
        struct field_errors fe;
        json_t *obj = send_entry(bodies[i], "", &q, &e, &owned, &fe);
        ck_assert_msg(fe.count == 1 && has_error(&fe, "body"), "%s: %s", bodies[i], fields_of(&fe));
        ck_assert_ptr_null(owned);
        field_errors_cleanup(&fe);
        json_decref(obj);
    }
}
END_TEST

START_TEST(send_delay_on_standard_queue)
{
    const struct {
        const char *text;
        bool ok;
        int delay;
    } cases[] = {
        {"{\"body\": \"x\", \"delay_seconds\": 0}", true, 0},
        {"{\"body\": \"x\", \"delay_seconds\": 900}", true, 900},
        {"{\"body\": \"x\", \"delay_seconds\": 17}", true, 17},
        {"{\"body\": \"x\", \"delay_seconds\": 901}", false, 0},
        {"{\"body\": \"x\", \"delay_seconds\": -1}", false, 0},
        {"{\"body\": \"x\", \"delay_seconds\": \"5\"}", false, 0},
        {"{\"body\": \"x\", \"delay_seconds\": 1.5}", false, 0},
        {"{\"body\": \"x\", \"delay_seconds\": null}", false, 0},
    };
    struct mq_queue q = make_queue(false, false, 262144);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mq_send_entry e;
        char *owned;
        struct field_errors fe;
        json_t *obj = send_entry(cases[i].text, "", &q, &e, &owned, &fe);
        if (cases[i].ok) {
            ck_assert_msg(fe.count == 0, "%s: %s", cases[i].text, fields_of(&fe));
            ck_assert_int_eq(e.delay_seconds, cases[i].delay);
        } else {
            ck_assert_msg(fe.count == 1 && has_error(&fe, "delay_seconds"), "%s: %s", cases[i].text,
                          fields_of(&fe));
        }
        free(owned);
        field_errors_cleanup(&fe);
        json_decref(obj);
    }
}
END_TEST

START_TEST(send_fifo_fields_on_standard_queue_are_refused)
{
    struct mq_queue q = make_queue(false, false, 262144);
    struct mq_send_entry e;
    char *owned;
    struct field_errors fe;
    json_t *obj = send_entry("{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d\"}", "", &q,
                             &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 2);
    ck_assert(has_error(&fe, "group_id"));
    ck_assert(has_error(&fe, "dedup_id"));
    field_errors_cleanup(&fe);
    json_decref(obj);
    /* one error a field, whatever it holds (null, a number: not a second "must be...") */
    obj = send_entry("{\"body\": \"x\", \"group_id\": null, \"dedup_id\": 7}", "", &q, &e, &owned,
                     &fe);
    ck_assert_msg(fe.count == 2, "%s", fields_of(&fe));
    ck_assert(has_error(&fe, "group_id"));
    ck_assert(has_error(&fe, "dedup_id"));
    ck_assert_ptr_null(e.group_id);
    field_errors_cleanup(&fe);
    json_decref(obj);
}
END_TEST

START_TEST(send_fifo_requires_group_and_dedup)
{
    struct mq_queue q = make_queue(true, false, 262144);
    struct mq_send_entry e;
    char *owned;
    struct field_errors fe;

    json_t *obj = send_entry("{\"body\": \"x\", \"group_id\": \"g1\", \"dedup_id\": \"d1\"}", "",
                             &q, &e, &owned, &fe);
    ck_assert_msg(fe.count == 0, "%s", fields_of(&fe));
    ck_assert_str_eq(e.group_id, "g1");
    ck_assert_str_eq(e.dedup_id, "d1");
    ck_assert_int_eq(e.delay_seconds, -1);
    field_errors_cleanup(&fe);
    json_decref(obj);

    obj = send_entry("{\"body\": \"x\", \"dedup_id\": \"d1\"}", "", &q, &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 1);
    ck_assert(has_error(&fe, "group_id"));
    field_errors_cleanup(&fe);
    json_decref(obj);

    obj = send_entry("{\"body\": \"x\", \"group_id\": \"g1\"}", "", &q, &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 1);
    ck_assert(has_error(&fe, "dedup_id"));
    field_errors_cleanup(&fe);
    json_decref(obj);

    /* content-based deduplication makes dedup_id optional (NULL: the body's hash) */
    struct mq_queue cbd = make_queue(true, true, 262144);
    obj = send_entry("{\"body\": \"x\", \"group_id\": \"g1\"}", "", &cbd, &e, &owned, &fe);
    ck_assert_msg(fe.count == 0, "%s", fields_of(&fe));
    ck_assert_ptr_null(e.dedup_id);
    field_errors_cleanup(&fe);
    json_decref(obj);
    obj = send_entry("{\"body\": \"x\", \"group_id\": \"g1\", \"dedup_id\": \"own\"}", "", &cbd, &e,
                     &owned, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_str_eq(e.dedup_id, "own");
    field_errors_cleanup(&fe);
    json_decref(obj);

    /* FIFO queues take no per-message delay */
    obj = send_entry("{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d\", "
                     "\"delay_seconds\": 5}",
                     "", &q, &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 1);
    ck_assert(has_error(&fe, "delay_seconds"));
    field_errors_cleanup(&fe);
    json_decref(obj);
}
END_TEST

START_TEST(send_fifo_token_rules)
{
    char *g128 = repeat('g', 128, ""), *g129 = repeat('g', 129, "");
    const struct {
        json_t *group; /* JSON value of group_id */
        bool ok;
    } cases[] = {
        {json_string("g"), true},         {json_string(g128), true},
        {json_string("!~{}"), true},      {json_string(g129), false},
        {json_string("a b"), false},      {json_string(""), false},
        {json_string("\xc3\xa9"), false}, {json_string("tab\t"), false},
        {json_integer(5), false},         {json_null(), false},
    };
    struct mq_queue q = make_queue(true, true, 262144);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int which = 0; which < 2; which++) {
            const char *field = which ? "dedup_id" : "group_id";
            json_t *obj = json_pack("{s:s, s:s}", "body", "x", "group_id", "g");
            json_object_set(obj, field, cases[i].group);
            struct mq_send_entry e;
            char *owned;
            struct field_errors fe;
            field_errors_init(&fe);
            mq_input_send_entry(obj, "", &q, &e, &owned, &fe);
            if (cases[i].ok)
                ck_assert_msg(fe.count == 0, "%s case %zu: %s", field, i, fields_of(&fe));
            else
                ck_assert_msg(fe.count >= 1 && has_error(&fe, field), "%s case %zu: %s", field, i,
                              fields_of(&fe));
            field_errors_cleanup(&fe);
            json_decref(obj);
        }
        json_decref(cases[i].group);
    }
    free(g128);
    free(g129);
}
END_TEST

START_TEST(send_size_cap_names_body)
{
    struct mq_queue q = make_queue(false, false, 1024);
    char *fits = repeat('x', 1024, ""), *over = repeat('x', 1025, ""),
         *near = repeat('x', 1010, "");
    const struct {
        const char *body;
        const char *attrs; /* NULL: none */
        bool ok;
    } cases[] = {
        {fits, NULL, true},
        {over, NULL, false},
        /* 1010 + "k" + "String" + "1234567" = 1024: fits exactly */
        {near, "{\"k\": {\"type\": \"String\", \"value\": \"1234567\"}}", true},
        {near, "{\"k\": {\"type\": \"String\", \"value\": \"12345678\"}}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *obj = json_pack("{s:s}", "body", cases[i].body);
        if (cases[i].attrs)
            json_object_set_new(obj, "attributes", js(cases[i].attrs));
        struct mq_send_entry e;
        char *owned;
        struct field_errors fe;
        field_errors_init(&fe);
        mq_input_send_entry(obj, "", &q, &e, &owned, &fe);
        if (cases[i].ok)
            ck_assert_msg(fe.count == 0, "case %zu: %s", i, fields_of(&fe));
        else
            ck_assert_msg(fe.count == 1 && has_error(&fe, "body"), "case %zu: %s", i,
                          fields_of(&fe));
        field_errors_cleanup(&fe);
        json_decref(obj);
    }
    /* a JSON body counts as its compact text */
    json_t *obj = json_pack("{s:{s:s}}", "body", "k", near + 10); /* {"k":"<1000 x>"} = 1008 */
    struct mq_send_entry e;
    char *owned;
    struct field_errors fe;
    field_errors_init(&fe);
    mq_input_send_entry(obj, "", &q, &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_uint_eq(e.body_len, 1008);
    free(owned);
    field_errors_cleanup(&fe);
    json_decref(obj);
    free(fits);
    free(over);
    free(near);
}
END_TEST

START_TEST(send_prefix_names_fields)
{
    struct mq_queue fifo = make_queue(true, false, 1024);
    struct mq_queue std = make_queue(false, false, 1024);
    char *big = repeat('x', 2000, "");
    struct mq_send_entry e;
    char *owned;
    struct field_errors fe;

    json_t *obj =
        json_pack("{s:s, s:s, s:i, s:{s:{s:s}}, s:i}", "id", "e2", "body", big, "delay_seconds", 3,
                  "attributes", "bad name", "type", "String", "foo", 1);
    field_errors_init(&fe);
    mq_input_send_entry(obj, "entries[2]", &fifo, &e, &owned, &fe);
    ck_assert(has_error(&fe, "entries[2].body"));
    ck_assert(has_error(&fe, "entries[2].group_id"));
    ck_assert(has_error(&fe, "entries[2].dedup_id"));
    ck_assert(has_error(&fe, "entries[2].delay_seconds"));
    ck_assert(has_error(&fe, "entries[2].attributes"));
    ck_assert(has_error(&fe, "entries[2].foo"));
    ck_assert_msg(!has_error(&fe, "body") && !has_error(&fe, "foo") && !has_error(&fe, "id"), "%s",
                  fields_of(&fe));
    field_errors_cleanup(&fe);
    json_decref(obj);

    obj = js("{\"id\": \"a\", \"group_id\": \"g\", \"delay_seconds\": 901}");
    field_errors_init(&fe);
    mq_input_send_entry(obj, "entries[0]", &std, &e, &owned, &fe);
    ck_assert_int_eq(fe.count, 3);
    ck_assert(has_error(&fe, "entries[0].body"));
    ck_assert(has_error(&fe, "entries[0].group_id"));
    ck_assert(has_error(&fe, "entries[0].delay_seconds"));
    field_errors_cleanup(&fe);
    json_decref(obj);
    free(big);
}
END_TEST

START_TEST(send_unknown_fields)
{
    struct mq_queue q = make_queue(false, false, 262144);
    struct mq_send_entry e;
    char *owned;
    struct field_errors fe;
    json_t *obj = send_entry("{\"body\": \"x\", \"MessageBody\": \"y\", \"delay\": 1}", "", &q, &e,
                             &owned, &fe);
    ck_assert_int_eq(fe.count, 2);
    ck_assert(has_error(&fe, "MessageBody"));
    ck_assert(has_error(&fe, "delay"));
    field_errors_cleanup(&fe);
    json_decref(obj);
}
END_TEST

/* ---- receive requests ---- */

START_TEST(receive_defaults_come_from_the_queue)
{
    struct mq_queue q = make_queue(false, false, 262144);
    q.attrs.visibility_timeout = 45;
    q.attrs.receive_wait_seconds = 7;
    struct mq_receive_request rr;
    struct field_errors fe;
    field_errors_init(&fe);
    memset(&rr, 0x5a, sizeof rr);
    mq_input_receive(NULL, &q, &rr, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_int_eq(rr.max_messages, 1);
    ck_assert_int_eq(rr.visibility_timeout, 45);
    ck_assert_int_eq(rr.wait_seconds, 7);
    ck_assert(!rr.delete_now);

    json_t *empty = js("{}");
    memset(&rr, 0x5a, sizeof rr);
    mq_input_receive(empty, &q, &rr, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_int_eq(rr.max_messages, 1);
    ck_assert_int_eq(rr.visibility_timeout, 45);
    ck_assert_int_eq(rr.wait_seconds, 7);
    ck_assert(!rr.delete_now);
    json_decref(empty);

    json_t *all = js("{\"max_messages\": 10, \"visibility_timeout\": 0, \"wait_seconds\": 0, "
                     "\"delete\": true}");
    mq_input_receive(all, &q, &rr, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert_int_eq(rr.max_messages, 10);
    ck_assert_int_eq(rr.visibility_timeout, 0);
    ck_assert_int_eq(rr.wait_seconds, 0);
    ck_assert(rr.delete_now);
    json_decref(all);
    field_errors_cleanup(&fe);
}
END_TEST

START_TEST(receive_ranges)
{
    const struct {
        const char *text;
        const char *bad; /* NULL: accepted */
    } cases[] = {
        {"{\"max_messages\": 1}", NULL},
        {"{\"max_messages\": 10}", NULL},
        {"{\"max_messages\": 0}", "max_messages"},
        {"{\"max_messages\": 11}", "max_messages"},
        {"{\"max_messages\": \"2\"}", "max_messages"},
        {"{\"visibility_timeout\": 43200}", NULL},
        {"{\"visibility_timeout\": 43201}", "visibility_timeout"},
        {"{\"visibility_timeout\": -1}", "visibility_timeout"},
        {"{\"wait_seconds\": 20}", NULL},
        {"{\"wait_seconds\": 21}", "wait_seconds"},
        {"{\"wait_seconds\": -1}", "wait_seconds"},
        {"{\"delete\": false}", NULL},
        {"{\"delete\": \"yes\"}", "delete"},
        {"{\"delete\": 1}", "delete"},
        {"{\"max\": 1}", "max"},
    };
    struct mq_queue q = make_queue(false, false, 262144);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = js(cases[i].text);
        struct mq_receive_request rr;
        struct field_errors fe;
        field_errors_init(&fe);
        mq_input_receive(body, &q, &rr, &fe);
        if (!cases[i].bad)
            ck_assert_msg(fe.count == 0, "%s: %s", cases[i].text, fields_of(&fe));
        else
            ck_assert_msg(fe.count == 1 && has_error(&fe, cases[i].bad), "%s: %s", cases[i].text,
                          fields_of(&fe));
        field_errors_cleanup(&fe);
        json_decref(body);
    }
}
END_TEST

/* mq_input_publish: the body of POST /topics/{name}/messages. */
static int publish_errors(const char *text, const char *field)
{
    json_t *obj = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(obj);
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_publish p;
    char *owned = NULL;
    mq_input_publish(obj, "", &p, &owned, &fe);
    int n = fe.count;
    bool named = !field;
    for (size_t i = 0; field && i < json_array_size(fe.list); i++)
        named |= strcmp(json_string_value(json_object_get(json_array_get(fe.list, i), "field")),
                        field) == 0;
    ck_assert_msg(named, "%s: no error for %s", text, field);
    free(owned);
    field_errors_cleanup(&fe);
    json_decref(obj);
    return n;
}

START_TEST(publish_bodies)
{
    ck_assert_int_eq(publish_errors("{\"body\":\"x\"}", NULL), 0);
    ck_assert_int_eq(publish_errors("{\"body\":{\"a\":1},\"subject\":\"s\"}", NULL), 0);
    ck_assert_int_gt(publish_errors("{}", "body"), 0);
    ck_assert_int_gt(publish_errors("{\"body\":\"\"}", "body"), 0);
    /* group_id and dedup_id are read here and checked against the topic later */
    ck_assert_int_eq(publish_errors("{\"body\":\"x\",\"group_id\":\"g\",\"dedup_id\":\"d\"}", NULL),
                     0);
    ck_assert_int_gt(publish_errors("{\"body\":\"x\",\"group_id\":\"\"}", "group_id"), 0);
    ck_assert_int_gt(publish_errors("{\"body\":\"x\",\"dedup_id\":\"a b\"}", "dedup_id"), 0);
    ck_assert_int_gt(publish_errors("{\"body\":\"x\",\"delay_seconds\":1}", "delay_seconds"), 0);
    ck_assert_int_gt(publish_errors("{\"body\":\"x\",\"subject\":\"\"}", "subject"), 0);
    ck_assert_int_gt(publish_errors("{\"body\":\"x\",\"attributes\":{\"a\":1}}", "attributes"), 0);
    /* a JSON body travels as its compact text */
    json_t *obj = json_loads("{\"body\":{\"b\": [1, 2]}}", 0, NULL);
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_publish p;
    char *owned = NULL;
    mq_input_publish(obj, "", &p, &owned, &fe);
    ck_assert_int_eq(fe.count, 0);
    ck_assert(p.body_json);
    ck_assert_str_eq(p.body, "{\"b\":[1,2]}");
    free(owned);
    json_decref(obj);
}
END_TEST

START_TEST(publish_size_limit)
{
    size_t n = MQ_PUBLISH_MAX_BYTES + 1;
    char *text = malloc(n + 32);
    strcpy(text, "{\"body\":\"");
    memset(text + strlen(text), 'x', n);
    strcpy(text + 9 + n, "\"}");
    ck_assert_int_gt(publish_errors(text, "body"), 0);
    text[9 + n - 2] = '\"';
    text[9 + n - 1] = '}';
    text[9 + n] = '\0';
    ck_assert_int_eq(publish_errors(text, NULL), 0); /* exactly at the limit minus one byte */
    free(text);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("mq_input");

    TCase *names = tcase_create("queue_names");
    tcase_add_test(names, queue_name_table);
    suite_add_tcase(s, names);

    TCase *attrs = tcase_create("queue_attributes");
    tcase_add_test(attrs, attrs_defaults_with_null_body);
    tcase_add_test(attrs, attrs_range_boundaries);
    tcase_add_test(attrs, attrs_fifo_must_agree_with_name);
    tcase_add_test(attrs, attrs_content_based_dedup_is_fifo_only);
    tcase_add_test(attrs, attrs_dead_letter_shapes);
    tcase_add_test(attrs, attrs_unknown_fields_are_named);
    tcase_add_test(attrs, attrs_report_every_bad_field);
    suite_add_tcase(s, attrs);

    TCase *mattrs = tcase_create("message_attributes");
    tcase_add_test(mattrs, attribute_name_table);
    tcase_add_test(mattrs, attribute_type_table);
    tcase_add_test(mattrs, attribute_number_values);
    tcase_add_test(mattrs, attribute_binary_values);
    tcase_add_test(mattrs, attribute_count_cap);
    tcase_add_test(mattrs, attribute_size_counts_names_types_values);
    suite_add_tcase(s, mattrs);

    TCase *send = tcase_create("send_entry");
    tcase_add_test(send, send_string_body);
    tcase_add_test(send, send_json_bodies_are_owned_compact_text);
    tcase_add_test(send, send_body_required_and_not_empty);
    tcase_add_test(send, send_delay_on_standard_queue);
    tcase_add_test(send, send_fifo_fields_on_standard_queue_are_refused);
    tcase_add_test(send, send_fifo_requires_group_and_dedup);
    tcase_add_test(send, send_fifo_token_rules);
    tcase_add_test(send, send_size_cap_names_body);
    tcase_add_test(send, send_prefix_names_fields);
    tcase_add_test(send, send_unknown_fields);
    suite_add_tcase(s, send);

    TCase *receive = tcase_create("receive");
    tcase_add_test(receive, receive_defaults_come_from_the_queue);
    tcase_add_test(receive, receive_ranges);
    tcase_add_test(receive, publish_bodies);
    tcase_add_test(receive, publish_size_limit);
    suite_add_tcase(s, receive);

    return s;
}

int main(void)
{
    return unit_run(suite());
}
