/* The wire formats of the AWS protocols, shared by SQS and SNS: form-urlencoded bodies (with
 * limits), the query protocol's flattened parameters turned into the JSON protocol's shapes,
 * an XML writer that escapes properly, the XML shape of a JSON result, and the error table
 * with both envelopes (JSON __type + x-amzn-query-error, and <ErrorResponse>). Pure: no I/O.
 * Unit-tested in tests/unit/test_wire.c. */
#ifndef RYDES_WIRE_H
#define RYDES_WIRE_H

#include "rydes/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define WIRE_FORM_MAX_PAIRS  2000
#define WIRE_FORM_MAX_NAME   256
#define WIRE_QUERY_MAX_INDEX 1000 /* of a flattened list member: Attribute.N, Tag.N, ... */
/* dotted parts of a parameter name: the deepest AWS name has 8
 * (PublishBatchRequestEntries.member.N.MessageAttributes.entry.N.Value.DataType); each part is a
 * nested object while the query is reshaped, so the bound keeps its memory to ~30x the body */
#define WIRE_QUERY_MAX_PARTS 10

struct wire_pair {
    char *name;  /* decoded, NUL-terminated */
    char *value; /* decoded; may hold NUL bytes: value_len */
    size_t value_len;
};

struct wire_form {
    struct wire_pair *pairs;
    int n;
};

/* Parses application/x-www-form-urlencoded text ('+' is a space, %XX a byte). False with why
 * filled for bad escapes, empty or overlong names and too many pairs; out is then empty. Free
 * with wire_form_cleanup in either case. */
bool wire_form_parse(const char *data, size_t len, struct wire_form *out, char *why, size_t n);
void wire_form_cleanup(struct wire_form *f);
/* The value of the first pair named name, or NULL. */
const char *wire_form_get(const struct wire_form *f, const char *name);

/* The query parameters of f (without Action and Version) as a JSON-protocol input object (new
 * reference): "Attribute.1.Name"/"Attribute.1.Value" become "Attributes": {name: value},
 * "AttributeName.1" "AttributeNames": [...], "SendMessageBatchRequestEntry.1.Id" "Entries":
 * [{"Id"}], and so on; scalars stay strings. NULL with why filled (a sentence) when a value
 * (Action and Version too) holds a NUL byte or is not UTF-8, when a list index is not a
 * number from 1 to WIRE_QUERY_MAX_INDEX, or when a name has more than WIRE_QUERY_MAX_PARTS
 * parts. */
json_t *wire_query_to_json(const struct wire_form *f, char *why, size_t n);

/* Is s[0..n) well-formed UTF-8 of characters XML 1.0 allows, which are those SQS allows in
 * message bodies and attribute values: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
 * #x10000 to #x10FFFF? */
bool wire_chars_valid(const char *s, size_t n);

/* Appends s[0..n) escaped as XML character data (&, <, >, quotes, and CR as &#xD;); anything no
 * XML 1.0 document may hold (other control characters, U+FFFE, U+FFFF, malformed UTF-8)
 * becomes U+FFFD, so the document parses whatever the data. */
void wire_xml_escape(struct buf *b, const char *s, size_t n);
/* The text wire_xml_escape writes before its escaping: what a query-protocol client reads back
 * (the digests it checks are computed over this). */
void wire_xml_clean(struct buf *b, const char *s, size_t n);
/* Appends the query protocol's response document of operation op: <opResponse xmlns=...>,
 * <opResult> with result (a JSON-protocol output; NULL for an operation without one) rendered
 * as SQS/SNS render it, and <ResponseMetadata><RequestId>. */
void wire_xml_response(struct buf *b, const char *xmlns, const char *op, json_t *result,
                       const char *request_id);
/* The same document as SNS renders results: every list as <member> items, the Attributes map
 * as <entry><key/><value/></entry> items, other objects as nested elements. */
void wire_xml_response_sns(struct buf *b, const char *xmlns, const char *op, json_t *result,
                           const char *request_id);

enum wire_err {
    WIRE_ACCESS_DENIED,
    WIRE_MISSING_AUTH,
    WIRE_INCOMPLETE_SIGNATURE,
    WIRE_INVALID_CLIENT_TOKEN,
    WIRE_SIGNATURE_MISMATCH,
    WIRE_INVALID_ACTION,
    WIRE_MISSING_ACTION,
    WIRE_UNKNOWN_OPERATION,
    WIRE_MALFORMED,
    WIRE_MISSING_PARAMETER,
    WIRE_INVALID_PARAMETER,
    WIRE_INVALID_ATTRIBUTE_NAME,
    WIRE_INVALID_ATTRIBUTE_VALUE,
    WIRE_INVALID_MESSAGE_CONTENTS,
    WIRE_QUEUE_DOES_NOT_EXIST,
    WIRE_QUEUE_EXISTS,
    WIRE_TOO_MANY_ENTRIES,
    WIRE_IDS_NOT_DISTINCT,
    WIRE_EMPTY_BATCH,
    WIRE_INVALID_BATCH_ID,
    WIRE_BATCH_TOO_LONG,
    WIRE_RECEIPT_INVALID,
    WIRE_UNSUPPORTED,
    WIRE_THROTTLED,
    WIRE_SNS_THROTTLED,
    /* SNS's own codes */
    WIRE_SNS_NOT_FOUND,
    WIRE_SNS_INVALID_PARAMETER,
    WIRE_SNS_AUTHORIZATION,
    WIRE_SNS_TOO_MANY_ENTRIES,
    WIRE_SNS_IDS_NOT_DISTINCT,
    WIRE_SNS_EMPTY_BATCH,
    WIRE_SNS_INVALID_BATCH_ID,
    WIRE_UNAVAILABLE,
    WIRE_INTERNAL,
};

struct wire_error {
    const char *type; /* the JSON protocol's shape name (__type after '#') */
    const char *code; /* the query protocol's code, also in x-amzn-query-error */
    int status;
    bool sender; /* the client's fault (Sender) or the service's (Receiver) */
};

const struct wire_error *wire_error_info(enum wire_err e);
/* The JSON protocol's error body {"__type", "message"} (new reference); ns prefixes __type
 * ("com.amazonaws.sqs"). */
json_t *wire_error_json(const struct wire_error *e, const char *ns, const char *message);
/* Appends the query protocol's <ErrorResponse> document. */
void wire_error_xml(struct buf *b, const char *xmlns, const struct wire_error *e,
                    const char *message, const char *request_id);

#endif
