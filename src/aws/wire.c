/* The AWS wire formats; see include/rydes/wire.h.
 *
 * The query protocol flattens lists and maps into numbered parameters. Rather than give every
 * operation a second decoder, the flattened names are first nested by their dots into JSON
 * objects ({"Attribute": {"1": {"Name", "Value"}}}) and then reshaped by a small table into the
 * JSON protocol's members; the operations read only that shape. The reverse table renders a
 * JSON-protocol result as the query protocol's XML. */
#include "rydes/wire.h"

#include "rydes/mem.h"
#include "rydes/validate.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- form-urlencoded ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes s[0..n) into a new NUL-terminated string of *len bytes; NULL for a bad escape. */
static char *form_decode(const char *s, size_t n, size_t *len)
{
    char *out = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[j++] = ' ';
        } else if (s[i] != '%') {
            out[j++] = s[i];
        } else if (i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            free(out);
            return NULL;
        }
    }
    out[j] = '\0';
    *len = j;
    return out;
}

/* Adds the pair "name=value" of s[0..n); false with why on a bad one. */
static bool form_add(struct wire_form *f, const char *s, size_t n, char *why, size_t wn)
{
    const char *eq = memchr(s, '=', n);
    size_t nlen = eq ? (size_t)(eq - s) : n, klen, vlen;
    if (nlen == 0 || nlen > WIRE_FORM_MAX_NAME * 3) {
        snprintf(why, wn, "a parameter name is empty or too long");
        return false;
    }
    char *name = form_decode(s, nlen, &klen);
    char *value = eq ? form_decode(eq + 1, n - nlen - 1, &vlen) : (vlen = 0, xstrdup(""));
    /* names are printable ASCII, as every AWS parameter name is (other bytes could make invalid
     * JSON keys when the query is reshaped) */
    if (!name || !value || klen == 0 || klen > WIRE_FORM_MAX_NAME ||
        !validate_printable_ascii(name, klen)) {
        snprintf(why, wn, "a parameter is not properly form-urlencoded");
        free(name);
        free(value);
        return false;
    }
    f->pairs[f->n++] = (struct wire_pair){name, value, vlen};
    return true;
}

bool wire_form_parse(const char *data, size_t len, struct wire_form *out, char *why, size_t n)
{
    out->n = 0;
    out->pairs = xcalloc(WIRE_FORM_MAX_PAIRS, sizeof *out->pairs);
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(data + i, '&', len - i);
        size_t seg = amp ? (size_t)(amp - data - i) : len - i;
        if (seg > 0 && out->n == WIRE_FORM_MAX_PAIRS) {
            snprintf(why, n, "more than %d parameters", WIRE_FORM_MAX_PAIRS);
            wire_form_cleanup(out);
            return false;
        }
        if (seg > 0 && !form_add(out, data + i, seg, why, n)) {
            wire_form_cleanup(out);
            return false;
        }
        i += seg + 1;
    }
    return true;
}

void wire_form_cleanup(struct wire_form *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->pairs[i].name);
        free(f->pairs[i].value);
    }
    free(f->pairs);
    f->pairs = NULL;
    f->n = 0;
}

const char *wire_form_get(const struct wire_form *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->pairs[i].name, name) == 0)
            return f->pairs[i].value;
    return NULL;
}

/* ---- query parameters -> JSON-protocol input ---- */

enum shape { SHAPE_LIST, SHAPE_ENTRIES, SHAPE_MAP };

struct flat_rule {
    const char *flat;   /* first segment of the flattened name */
    const char *member; /* the JSON protocol's member */
    enum shape shape;
    const char *key, *value; /* of a map entry */
};

static const struct flat_rule flat_rules[] = {
    {"AttributeName", "AttributeNames", SHAPE_LIST, NULL, NULL},
    {"MessageAttributeName", "MessageAttributeNames", SHAPE_LIST, NULL, NULL},
    {"MessageSystemAttributeName", "MessageSystemAttributeNames", SHAPE_LIST, NULL, NULL},
    {"TagKey", "TagKeys", SHAPE_LIST, NULL, NULL},
    {"AWSAccountId", "AWSAccountIds", SHAPE_LIST, NULL, NULL},
    {"ActionName", "Actions", SHAPE_LIST, NULL, NULL},
    {"Attribute", "Attributes", SHAPE_MAP, "Name", "Value"},
    {"Attributes.entry", "Attributes", SHAPE_MAP, "key", "value"},
    {"Tag", "Tags", SHAPE_MAP, "Key", "Value"},
    {"MessageAttribute", "MessageAttributes", SHAPE_MAP, "Name", "Value"},
    {"MessageAttributes.entry", "MessageAttributes", SHAPE_MAP, "Name", "Value"},
    {"MessageSystemAttribute", "MessageSystemAttributes", SHAPE_MAP, "Name", "Value"},
    {"SendMessageBatchRequestEntry", "Entries", SHAPE_ENTRIES, NULL, NULL},
    {"DeleteMessageBatchRequestEntry", "Entries", SHAPE_ENTRIES, NULL, NULL},
    {"ChangeMessageVisibilityBatchRequestEntry", "Entries", SHAPE_ENTRIES, NULL, NULL},
    {"PublishBatchRequestEntries.member", "PublishBatchRequestEntries", SHAPE_ENTRIES, NULL, NULL},
    {"Tags.member", "Tags", SHAPE_ENTRIES, NULL, NULL},
    {"AttributeNames.member", "AttributeNames", SHAPE_LIST, NULL, NULL},
    {"TagKeys.member", "TagKeys", SHAPE_LIST, NULL, NULL},
};

/* Sets the nested member of obj named by the dotted path to v (stolen). */
static void nest(json_t *obj, const char *path, json_t *v)
{
    const char *dot = strchr(path, '.');
    if (!dot) {
        json_object_set_new(obj, path, v);
        return;
    }
    char *head = xstrndup(path, (size_t)(dot - path));
    json_t *child = json_object_get(obj, head);
    if (!json_is_object(child)) {
        child = json_object();
        if (json_object_set_new(obj, head, child) != 0) { /* child is gone too */
            free(head);
            json_decref(v);
            return;
        }
    }
    free(head);
    nest(child, dot + 1, v);
}

/* Collects the first reason a query could not be reshaped. */
struct reshape_err {
    char *why;
    size_t n;
    bool failed;
};

static json_t *reshape(json_t *obj, struct reshape_err *err);

/* The index of a flattened list member ("1".."WIRE_QUERY_MAX_INDEX", no sign, no leading
 * zero), or 0 when key is none. */
static long list_index(const char *key)
{
    if (key[0] < '1' || key[0] > '9' || strlen(key) > 9)
        return 0;
    char *end;
    long v = strtol(key, &end, 10);
    return *end == '\0' && v >= 1 && v <= WIRE_QUERY_MAX_INDEX ? v : 0;
}

static int by_index(const void *a, const void *b)
{
    long x = list_index(*(const char *const *)a), y = list_index(*(const char *const *)b);
    return (x > y) - (x < y);
}

/* The values of an object {"1": v, "2": w} as an array ordered by index (new reference); an
 * index out of 1..WIRE_QUERY_MAX_INDEX fails the whole query with err. */
static json_t *indexed_array(json_t *o, const char *flat, struct reshape_err *err)
{
    json_t *arr = json_array();
    size_t n = json_object_size(o), i = 0;
    if (!json_is_object(o) || n == 0)
        return arr;
    const char **keys = xcalloc(n, sizeof *keys);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!list_index(k) && !err->failed) {
            snprintf(err->why, err->n,
                     "The index %.40s of the parameter %.80s is not a number from 1 to %d.", k,
                     flat, WIRE_QUERY_MAX_INDEX);
            err->failed = true;
        }
        keys[i++] = k;
    }
    if (!err->failed) {
        qsort(keys, n, sizeof *keys, by_index);
        for (i = 0; i < n; i++)
            json_array_append_new(arr, reshape(json_object_get(o, keys[i]), err));
    }
    free(keys);
    return arr;
}

/* {"1": {key: k, value: v}} -> {k: v} (new reference). An entry without its key or value, or
 * naming a key twice, fails the query with err (the JSON protocol cannot say either). */
static json_t *indexed_map(json_t *o, const struct flat_rule *r, struct reshape_err *err)
{
    json_t *map = json_object(), *items = indexed_array(o, r->flat, err), *item;
    size_t i;
    json_array_foreach(items, i, item)
    {
        const char *k = json_string_value(json_object_get(item, r->key));
        json_t *v = json_object_get(item, r->value);
        bool twice = k && v && json_object_get(map, k);
        if ((!k || !v || twice) && !err->failed) {
            if (twice)
                snprintf(err->why, err->n, "The %s %.64s is given twice in %.80s.", r->key, k,
                         r->flat);
            else
                snprintf(err->why, err->n, "Each entry of %.80s needs a %s and a %s.", r->flat,
                         r->key, r->value);
            err->failed = true;
        }
        if (k && v && !twice)
            json_object_set(map, k, v);
    }
    json_decref(items);
    return map;
}

/* Finds the rule of key: its first segment, or its first two ("Attributes.entry"). */
static const struct flat_rule *rule_of(const char *key, json_t *v, json_t **inner)
{
    *inner = v;
    for (size_t i = 0; i < sizeof flat_rules / sizeof flat_rules[0]; i++) {
        const struct flat_rule *r = &flat_rules[i];
        const char *dot = strchr(r->flat, '.');
        if (!dot && strcmp(key, r->flat) == 0)
            return r;
        if (dot && strncmp(key, r->flat, (size_t)(dot - r->flat)) == 0 &&
            key[dot - r->flat] == '\0' && json_is_object(v) && json_object_get(v, dot + 1)) {
            *inner = json_object_get(v, dot + 1);
            return r;
        }
    }
    return NULL;
}

/* Reshapes a nested object by the rules (new reference). */
static json_t *reshape(json_t *obj, struct reshape_err *err)
{
    if (!json_is_object(obj))
        return json_incref(obj);
    json_t *out = json_object();
    const char *key;
    json_t *v, *inner;
    json_object_foreach(obj, key, v)
    {
        const struct flat_rule *r = rule_of(key, v, &inner);
        if (!r || !json_is_object(inner))
            json_object_set_new(out, key, reshape(v, err));
        else if (r->shape == SHAPE_MAP)
            json_object_set_new(out, r->member, indexed_map(inner, r, err));
        else
            json_object_set_new(out, r->member, indexed_array(inner, r->flat, err));
    }
    return out;
}

/* The dot-separated parts of name. */
static int name_parts(const char *name)
{
    int parts = 1;
    for (const char *d = strchr(name, '.'); d; d = strchr(d + 1, '.'))
        parts++;
    return parts;
}

json_t *wire_query_to_json(const struct wire_form *f, char *why, size_t n)
{
    json_t *nested = json_object();
    for (int i = 0; i < f->n; i++) {
        const struct wire_pair *p = &f->pairs[i];
        /* a NUL would end the value early in C and is refused by PostgreSQL's text */
        if (memchr(p->value, '\0', p->value_len)) {
            snprintf(why, n, "The value of %.100s contains a NUL character.", p->name);
            json_decref(nested);
            return NULL;
        }
        if (strcmp(p->name, "Action") == 0 || strcmp(p->name, "Version") == 0)
            continue;
        if (name_parts(p->name) > WIRE_QUERY_MAX_PARTS) {
            snprintf(why, n, "The parameter name %.100s has more than %d parts.", p->name,
                     WIRE_QUERY_MAX_PARTS);
            json_decref(nested);
            return NULL;
        }
        json_t *v = json_stringn(p->value, p->value_len);
        if (!v) {
            snprintf(why, n, "The value of %.100s is not valid UTF-8.", p->name);
            json_decref(nested);
            return NULL;
        }
        nest(nested, p->name, v);
    }
    struct reshape_err err = {why, n, false};
    json_t *out = reshape(nested, &err);
    json_decref(nested);
    if (err.failed) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* ---- XML ---- */

/* The length of the well-formed UTF-8 sequence at s[0..n) (n >= 1) with its code point in *cp,
 * or 0 when it is not one (overlong, surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* XML 1.0's Char production, which is also what SQS allows in bodies and attribute values. */
static bool xml_char(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

bool wire_chars_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_char(u + i, n - i, &cp);
        if (len == 0 || !xml_char(cp))
            return false;
        i += len;
    }
    return true;
}

/* s as XML text: every character no XML 1.0 document may hold (not even as &#x...;) becomes
 * U+FFFD; with escape, the markup characters become references. */
static void xml_text(struct buf *b, const char *s, size_t n, bool escape)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_char(u + i, n - i, &cp);
        if (len == 0 || !xml_char(cp)) {
            buf_puts(b, "\xEF\xBF\xBD");
            i += len ? len : 1;
            continue;
        }
        const char *ref = !escape      ? NULL
                          : cp == '&'  ? "&amp;"
                          : cp == '<'  ? "&lt;"
                          : cp == '>'  ? "&gt;"
                          : cp == '"'  ? "&quot;"
                          : cp == '\'' ? "&apos;"
                          : cp == '\r' ? "&#xD;"
                                       : NULL;
        if (ref)
            buf_puts(b, ref);
        else
            buf_append(b, u + i, len);
        i += len;
    }
}

void wire_xml_escape(struct buf *b, const char *s, size_t n)
{
    xml_text(b, s, n, true);
}

void wire_xml_clean(struct buf *b, const char *s, size_t n)
{
    xml_text(b, s, n, false);
}

struct xml_rule {
    const char *member;      /* member of a JSON result */
    const char *element;     /* element of each item; NULL: the operation's "<op>ResultEntry" */
    const char *key, *value; /* for maps: the key and value elements */
};

static const struct xml_rule xml_rules[] = {
    {"QueueUrls", "QueueUrl", NULL, NULL},
    {"queueUrls", "QueueUrl", NULL, NULL},
    {"Messages", "Message", NULL, NULL},
    {"Successful", NULL, NULL, NULL},
    {"Failed", "BatchResultErrorEntry", NULL, NULL},
    {"Attributes", "Attribute", "Name", "Value"},
    {"Tags", "Tag", "Key", "Value"},
    {"MessageAttributes", "MessageAttribute", "Name", "Value"},
};

static void xml_value(struct buf *b, const char *op, json_t *v);

static void xml_element(struct buf *b, const char *name, const char *op, json_t *v)
{
    buf_printf(b, "<%s>", name);
    xml_value(b, op, v);
    buf_printf(b, "</%s>", name);
}

static void xml_member(struct buf *b, const char *op, const char *key, json_t *v)
{
    const struct xml_rule *r = NULL;
    for (size_t i = 0; i < sizeof xml_rules / sizeof xml_rules[0]; i++)
        if (strcmp(xml_rules[i].member, key) == 0)
            r = &xml_rules[i];
    char entry[128];
    snprintf(entry, sizeof entry, "%sResultEntry", op);
    const char *el = r ? (r->element ? r->element : entry) : key;
    size_t i;
    json_t *item;
    const char *k;
    if (json_is_array(v)) {
        json_array_foreach(v, i, item) xml_element(b, el, op, item);
    } else if (r && r->key && json_is_object(v)) {
        json_object_foreach(v, k, item)
        {
            buf_printf(b, "<%s><%s>", el, r->key);
            wire_xml_escape(b, k, strlen(k));
            buf_printf(b, "</%s>", r->key);
            xml_element(b, r->value, op, item);
            buf_printf(b, "</%s>", el);
        }
    } else {
        xml_element(b, key, op, v);
    }
}

static void xml_value(struct buf *b, const char *op, json_t *v)
{
    const char *k;
    json_t *item;
    if (json_is_string(v))
        wire_xml_escape(b, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v))
        buf_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        buf_puts(b, json_is_true(v) ? "true" : "false");
    else if (json_is_object(v))
        json_object_foreach(v, k, item) xml_member(b, op, k, item);
}

void wire_xml_response(struct buf *b, const char *xmlns, const char *op, json_t *result,
                       const char *request_id)
{
    buf_printf(b, "<?xml version=\"1.0\"?><%sResponse xmlns=\"%s\">", op, xmlns);
    if (result) {
        buf_printf(b, "<%sResult>", op);
        xml_value(b, op, result);
        buf_printf(b, "</%sResult>", op);
    }
    buf_printf(b, "<ResponseMetadata><RequestId>");
    wire_xml_escape(b, request_id, strlen(request_id));
    buf_printf(b, "</RequestId></ResponseMetadata></%sResponse>", op);
}

/* ---- SNS's rendering ---- */

static void sns_value(struct buf *b, json_t *v);

static void sns_member(struct buf *b, const char *key, json_t *v)
{
    const char *k;
    json_t *item;
    size_t i;
    buf_printf(b, "<%s>", key);
    if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            buf_puts(b, "<member>");
            sns_value(b, item);
            buf_puts(b, "</member>");
        }
    } else if (json_is_object(v) && strcmp(key, "Attributes") == 0) {
        json_object_foreach(v, k, item)
        {
            buf_puts(b, "<entry><key>");
            wire_xml_escape(b, k, strlen(k));
            buf_puts(b, "</key><value>");
            sns_value(b, item);
            buf_puts(b, "</value></entry>");
        }
    } else {
        sns_value(b, v);
    }
    buf_printf(b, "</%s>", key);
}

static void sns_value(struct buf *b, json_t *v)
{
    const char *k;
    json_t *item;
    if (json_is_object(v))
        json_object_foreach(v, k, item) sns_member(b, k, item);
    else
        xml_value(b, "", v);
}

void wire_xml_response_sns(struct buf *b, const char *xmlns, const char *op, json_t *result,
                           const char *request_id)
{
    buf_printf(b, "<?xml version=\"1.0\"?><%sResponse xmlns=\"%s\">", op, xmlns);
    if (result) {
        buf_printf(b, "<%sResult>", op);
        sns_value(b, result);
        buf_printf(b, "</%sResult>", op);
    }
    buf_printf(b, "<ResponseMetadata><RequestId>");
    wire_xml_escape(b, request_id, strlen(request_id));
    buf_printf(b, "</RequestId></ResponseMetadata></%sResponse>", op);
}

/* ---- errors ---- */

static const struct wire_error errors[] = {
    [WIRE_ACCESS_DENIED] = {"AccessDenied", "AccessDenied", 403, true},
    [WIRE_MISSING_AUTH] = {"MissingAuthenticationToken", "MissingAuthenticationToken", 403, true},
    [WIRE_INCOMPLETE_SIGNATURE] = {"IncompleteSignature", "IncompleteSignature", 400, true},
    [WIRE_INVALID_CLIENT_TOKEN] = {"InvalidClientTokenId", "InvalidClientTokenId", 403, true},
    [WIRE_SIGNATURE_MISMATCH] = {"SignatureDoesNotMatch", "SignatureDoesNotMatch", 403, true},
    [WIRE_INVALID_ACTION] = {"InvalidAction", "InvalidAction", 400, true},
    [WIRE_MISSING_ACTION] = {"MissingAction", "MissingAction", 400, true},
    [WIRE_UNKNOWN_OPERATION] = {"UnknownOperationException", "InvalidAction", 400, true},
    [WIRE_MALFORMED] = {"SerializationException", "MalformedQueryString", 400, true},
    [WIRE_MISSING_PARAMETER] = {"MissingParameter", "MissingParameter", 400, true},
    [WIRE_INVALID_PARAMETER] = {"InvalidParameterValue", "InvalidParameterValue", 400, true},
    [WIRE_INVALID_ATTRIBUTE_NAME] = {"InvalidAttributeName", "InvalidAttributeName", 400, true},
    [WIRE_INVALID_ATTRIBUTE_VALUE] = {"InvalidAttributeValue", "InvalidAttributeValue", 400, true},
    [WIRE_INVALID_MESSAGE_CONTENTS] = {"InvalidMessageContents", "InvalidMessageContents", 400,
                                       true},
    [WIRE_QUEUE_DOES_NOT_EXIST] = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
                                   400, true},
    [WIRE_QUEUE_EXISTS] = {"QueueNameExists", "QueueAlreadyExists", 400, true},
    [WIRE_TOO_MANY_ENTRIES] = {"TooManyEntriesInBatchRequest",
                               "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400, true},
    [WIRE_IDS_NOT_DISTINCT] = {"BatchEntryIdsNotDistinct",
                               "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400, true},
    [WIRE_EMPTY_BATCH] = {"EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400,
                          true},
    [WIRE_INVALID_BATCH_ID] = {"InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId",
                               400, true},
    [WIRE_BATCH_TOO_LONG] = {"BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong",
                             400, true},
    [WIRE_RECEIPT_INVALID] = {"ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 404, true},
    [WIRE_UNSUPPORTED] = {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation",
                          400, true},
    [WIRE_THROTTLED] = {"RequestThrottled", "RequestThrottled", 403, true},
    [WIRE_SNS_THROTTLED] = {"ThrottledException", "Throttled", 429, true},
    [WIRE_SNS_NOT_FOUND] = {"NotFoundException", "NotFound", 404, true},
    [WIRE_SNS_INVALID_PARAMETER] = {"InvalidParameterException", "InvalidParameter", 400, true},
    [WIRE_SNS_AUTHORIZATION] = {"AuthorizationErrorException", "AuthorizationError", 403, true},
    [WIRE_SNS_TOO_MANY_ENTRIES] = {"TooManyEntriesInBatchRequestException",
                                   "TooManyEntriesInBatchRequest", 400, true},
    [WIRE_SNS_IDS_NOT_DISTINCT] = {"BatchEntryIdsNotDistinctException", "BatchEntryIdsNotDistinct",
                                   400, true},
    [WIRE_SNS_EMPTY_BATCH] = {"EmptyBatchRequestException", "EmptyBatchRequest", 400, true},
    [WIRE_SNS_INVALID_BATCH_ID] = {"InvalidBatchEntryIdException", "InvalidBatchEntryId", 400,
                                   true},
    [WIRE_UNAVAILABLE] = {"ServiceUnavailable", "ServiceUnavailable", 503, false},
    [WIRE_INTERNAL] = {"InternalFailure", "InternalFailure", 500, false},
};

const struct wire_error *wire_error_info(enum wire_err e)
{
    return &errors[e];
}

json_t *wire_error_json(const struct wire_error *e, const char *ns, const char *message)
{
    char type[160];
    snprintf(type, sizeof type, "%s#%s", ns, e->type);
    json_t *m = json_string(message);
    return json_pack("{s:s, s:o}", "__type", type, "message", m ? m : json_string("invalid"));
}

void wire_error_xml(struct buf *b, const char *xmlns, const struct wire_error *e,
                    const char *message, const char *request_id)
{
    buf_printf(b,
               "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"%s\"><Error><Type>%s</Type>"
               "<Code>%s</Code><Message>",
               xmlns, e->sender ? "Sender" : "Receiver", e->code);
    wire_xml_escape(b, message, strlen(message));
    buf_puts(b, "</Message><Detail/></Error><RequestId>");
    wire_xml_escape(b, request_id, strlen(request_id));
    buf_puts(b, "</RequestId></ErrorResponse>");
}
