/* Validation of queue API bodies; see include/rydes/mq_input.h. The rules and ranges are those
 * of ../shared/docs/API.md, and where it is silent, Amazon SQS's. */
#include "rydes/mq_input.h"

#include "rydes/buf.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool mq_input_queue_name(const char *name)
{
    size_t n = strlen(name);
    size_t base = n > 5 && strcmp(name + n - 5, ".fifo") == 0 ? n - 5 : n;
    if (n == 0 || n > MQ_NAME_MAX || base == 0)
        return false;
    for (size_t i = 0; i < base; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-'))
            return false;
    return true;
}

bool mq_input_name_is_fifo(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".fifo") == 0;
}

static int read_int(json_t *o, const char *field, int64_t min, int64_t max, int def,
                    struct field_errors *fe)
{
    int64_t v = def;
    validate_int(o, field, false, min, max, &v, fe);
    return (int)v;
}

static void read_dead_letter(json_t *body, struct mq_attrs *out, struct field_errors *fe)
{
    static const char *const known[] = {"queue", "max_receive_count", NULL};
    json_t *dl = json_object_get(body, "dead_letter");
    if (!dl || json_is_null(dl))
        return;
    if (!json_is_object(dl)) {
        field_errors_add(fe, "dead_letter", "must be an object {queue, max_receive_count}");
        return;
    }
    struct field_errors inner;
    field_errors_init(&inner);
    validate_known_fields(dl, known, &inner);
    const char *queue = validate_string(dl, "queue", true, 1, MQ_NAME_MAX, &inner);
    if (queue && !mq_input_queue_name(queue))
        field_errors_add(&inner, "queue", "is not a valid queue name");
    int64_t mrc = 0;
    validate_int(dl, "max_receive_count", true, 1, 1000, &mrc, &inner);
    for (size_t i = 0; i < json_array_size(inner.list); i++) {
        json_t *e = json_array_get(inner.list, i);
        field_errors_add_at(fe, "dead_letter", json_string_value(json_object_get(e, "field")), "%s",
                            json_string_value(json_object_get(e, "message")));
    }
    if (!inner.count && queue) {
        snprintf(out->dead_letter_queue, sizeof out->dead_letter_queue, "%s", queue);
        out->max_receive_count = (int)mrc;
    }
    field_errors_cleanup(&inner);
}

void mq_input_attrs(json_t *body, const char *name, struct mq_attrs *out, struct field_errors *fe)
{
    static const char *const known[] = {"fifo",
                                        "visibility_timeout",
                                        "delay_seconds",
                                        "retention_seconds",
                                        "max_message_bytes",
                                        "receive_wait_seconds",
                                        "content_based_dedup",
                                        "dead_letter",
                                        NULL};
    memset(out, 0, sizeof *out);
    out->fifo = mq_input_name_is_fifo(name);
    json_t *o = body ? body : json_object();
    validate_known_fields(o, known, fe);
    bool fifo = out->fifo;
    if (validate_bool(o, "fifo", false, &fifo, fe) && fifo != out->fifo)
        field_errors_add(fe, "fifo", "FIFO queue names end in .fifo, and only theirs do");
    out->visibility_timeout = read_int(o, "visibility_timeout", 0, 43200, 30, fe);
    out->delay_seconds = read_int(o, "delay_seconds", 0, 900, 0, fe);
    out->retention_seconds = read_int(o, "retention_seconds", 60, 1209600, 345600, fe);
    out->max_message_bytes = read_int(o, "max_message_bytes", 1024, 1048576, 262144, fe);
    out->receive_wait_seconds = read_int(o, "receive_wait_seconds", 0, 20, 0, fe);
    validate_bool(o, "content_based_dedup", false, &out->content_based_dedup, fe);
    if (out->content_based_dedup && !out->fifo)
        field_errors_add(fe, "content_based_dedup", "applies to FIFO queues only");
    read_dead_letter(o, out, fe);
    if (!body)
        json_decref(o);
}

/* SQS's attribute-name rules: [A-Za-z0-9_.-]{1,256}, no leading, trailing or double '.', and
 * not in the reserved AWS./Amazon. namespaces. */
static bool attribute_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 256 || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
        return false;
    if (strncasecmp(s, "aws.", 4) == 0 || strncasecmp(s, "amazon.", 7) == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || strchr("_.-", s[i])))
            return false;
    return true;
}

/* "String", "Number" or "Binary", optionally followed by ".label". Returns the base type's
 * first letter ('S', 'N', 'B') or 0. */
static char attribute_type(const char *t)
{
    static const char *const bases[] = {"String", "Number", "Binary"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(bases[i]);
        if (strncmp(t, bases[i], n) == 0 &&
            (t[n] == '\0' || (t[n] == '.' && t[n + 1] && strlen(t) <= 256)))
            return bases[i][0];
    }
    return 0;
}

static bool number_valid(const char *v)
{
    /* a decimal number as SQS takes it: optional sign, digits, optional fraction/exponent */
    if (!*v || isspace((unsigned char)*v) || strlen(v) > 64)
        return false;
    errno = 0;
    char *end;
    double d = strtod(v, &end);
    return *end == '\0' && errno != ERANGE && isfinite(d) && !strpbrk(v, "xXnNiI");
}

static bool base64_valid(const char *v)
{
    size_t n = strlen(v), pad = 0;
    if (n == 0 || n % 4)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '=') {
            pad++;
            if (i < n - 2)
                return false;
        } else if (pad || !(isalnum((unsigned char)v[i]) || v[i] == '+' || v[i] == '/')) {
            return false;
        }
    }
    return true;
}

static size_t check_attribute(const char *field, const char *name, json_t *a,
                              struct field_errors *fe)
{
    static const char *const known[] = {"type", "value", NULL};
    if (!json_is_object(a)) {
        field_errors_add(fe, field, "attribute %s must be {\"type\", \"value\"}", name);
        return 0;
    }
    const char *key;
    json_t *unused;
    json_object_foreach(a, key, unused)
    {
        if (strcmp(key, known[0]) && strcmp(key, known[1]))
            field_errors_add(fe, field, "attribute %s has an unknown member", name);
    }
    json_t *t = json_object_get(a, "type"), *v = json_object_get(a, "value");
    char kind = json_is_string(t) ? attribute_type(json_string_value(t)) : 0;
    if (!kind) {
        field_errors_add(fe, field, "attribute %s: type must be String, Number or Binary", name);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        field_errors_add(fe, field, "attribute %s: value must be a non-empty string", name);
        return 0;
    }
    const char *value = json_string_value(v);
    /* Number.Array, like String.Array, holds JSON array text for filter policies to read */
    bool array = strcmp(json_string_value(t), "Number.Array") == 0;
    if (kind == 'N' && !array && !number_valid(value))
        field_errors_add(fe, field, "attribute %s: value is not a number", name);
    if (kind == 'B' && !base64_valid(value))
        field_errors_add(fe, field, "attribute %s: value is not base64", name);
    return strlen(name) + strlen(json_string_value(t)) + json_string_length(v);
}

size_t mq_input_message_attributes(json_t *attrs, const char *field, struct field_errors *fe)
{
    if (!json_is_object(attrs)) {
        field_errors_add(fe, field, "must be an object of {name: {type, value}}");
        return 0;
    }
    if (json_object_size(attrs) > MQ_MAX_ATTRIBUTES)
        field_errors_add(fe, field, "at most %d attributes", MQ_MAX_ATTRIBUTES);
    size_t size = 0;
    const char *name;
    json_t *a;
    json_object_foreach(attrs, name, a)
    {
        if (!attribute_name_valid(name)) {
            field_errors_add(fe, field, "attribute name '%.*s' is not valid",
                             (int)validate_utf8_prefix(name, 64), name);
            continue;
        }
        size += check_attribute(field, name, a, fe);
    }
    return size;
}

/* Reads "body": a string is sent as it is, any other JSON value as its compact text. */
static void read_body(json_t *obj, const char *prefix, struct mq_send_entry *e, char **owned,
                      struct field_errors *fe)
{
    json_t *b = json_object_get(obj, "body");
    if (!b || json_is_null(b)) {
        field_errors_add_at(fe, prefix, "body", "is required");
    } else if (json_is_string(b)) {
        e->body = json_string_value(b);
        e->body_len = json_string_length(b);
        if (e->body_len == 0 || strlen(e->body) != e->body_len)
            field_errors_add_at(fe, prefix, "body",
                                "must be a non-empty string without NUL characters");
    } else {
        *owned = jsontext_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
        e->body = *owned;
        e->body_len = strlen(*owned);
        e->body_json = true;
    }
}

bool mq_input_token_valid(const char *s)
{
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= MQ_GROUP_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] >= 0x21 && s[i] <= 0x7e;
    return ok;
}

/* group_id and dedup_id: 1..128 printable ASCII characters but space, as SQS has them. */
static const char *read_token(json_t *obj, const char *prefix, const char *field,
                              struct field_errors *fe)
{
    json_t *v = json_object_get(obj, field);
    if (!v)
        return NULL;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    bool ok = s && strlen(s) == json_string_length(v) && mq_input_token_valid(s);
    if (!ok) {
        field_errors_add_at(fe, prefix, field,
                            "must be 1 to 128 printable ASCII characters without spaces");
        return NULL;
    }
    return s;
}

static void read_fifo_fields(json_t *obj, const char *prefix, const struct mq_queue *q,
                             struct mq_send_entry *e, struct field_errors *fe)
{
    if (!q->attrs.fifo) { /* one error a field: what it holds does not matter here */
        if (json_object_get(obj, "group_id"))
            field_errors_add_at(fe, prefix, "group_id", "applies to FIFO queues only");
        if (json_object_get(obj, "dedup_id"))
            field_errors_add_at(fe, prefix, "dedup_id", "applies to FIFO queues only");
        return;
    }
    e->group_id = read_token(obj, prefix, "group_id", fe);
    e->dedup_id = read_token(obj, prefix, "dedup_id", fe);
    if (!json_object_get(obj, "group_id"))
        field_errors_add_at(fe, prefix, "group_id", "is required on a FIFO queue");
    if (!json_object_get(obj, "dedup_id") && !q->attrs.content_based_dedup)
        field_errors_add_at(fe, prefix, "dedup_id",
                            "is required unless the queue has content_based_dedup");
    if (json_object_get(obj, "delay_seconds"))
        field_errors_add_at(fe, prefix, "delay_seconds",
                            "FIFO queues take a delay per queue, not per message");
}

void mq_input_send_entry(json_t *obj, const char *prefix, const struct mq_queue *q,
                         struct mq_send_entry *e, char **owned, struct field_errors *fe)
{
    static const char *const known[] = {"id",       "body",     "attributes", "delay_seconds",
                                        "group_id", "dedup_id", NULL};
    char f[96];
    memset(e, 0, sizeof *e);
    *owned = NULL;
    e->delay_seconds = -1;
    validate_known_fields_at(obj, prefix, known, fe);
    read_body(obj, prefix, e, owned, fe);
    size_t size = e->body_len;
    e->attributes = json_object_get(obj, "attributes");
    if (e->attributes) {
        validate_field_path(f, sizeof f, prefix, "attributes");
        size += mq_input_message_attributes(e->attributes, f, fe);
    }
    json_t *d = json_object_get(obj, "delay_seconds");
    if (d && (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > 900))
        field_errors_add_at(fe, prefix, "delay_seconds", "must be an integer from 0 to 900");
    else if (d)
        e->delay_seconds = (int)json_integer_value(d);
    read_fifo_fields(obj, prefix, q, e, fe);
    if (size > (size_t)q->attrs.max_message_bytes)
        field_errors_add_at(fe, prefix, "body",
                            "the message (body and attributes, %zu bytes) exceeds the "
                            "queue's max_message_bytes (%d)",
                            size, q->attrs.max_message_bytes);
}

/* Reads part of a parsed URL: true when present (*out then owned by the caller, curl_free). */
static bool url_part(CURLU *u, CURLUPart part, char **out)
{
    *out = NULL;
    return curl_url_get(u, part, out, 0) == CURLUE_OK && *out;
}

static bool url_check(CURLU *u, const char *url, char *why, size_t why_len)
{
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        snprintf(why, why_len, "is not an absolute URL");
        return false;
    }
    char *scheme, *host, *user, *fragment;
    url_part(u, CURLUPART_SCHEME, &scheme);
    bool has_host = url_part(u, CURLUPART_HOST, &host) && host[0];
    bool has_user = url_part(u, CURLUPART_USER, &user);
    bool has_fragment = url_part(u, CURLUPART_FRAGMENT, &fragment);
    char *port;
    bool port_zero = url_part(u, CURLUPART_PORT, &port) && strtol(port, NULL, 10) == 0;
    curl_free(port);
    bool web = scheme && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    const char *problem = !web           ? "must be an http or https URL"
                          : !has_host    ? "must name a host"
                          : port_zero    ? "must not name port 0"
                          : has_user     ? "must not carry credentials"
                          : has_fragment ? "must not have a fragment"
                                         : NULL;
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(fragment);
    if (problem)
        snprintf(why, why_len, "%s", problem);
    return !problem;
}

bool mq_input_url(const char *url, char *why, size_t why_len)
{
    for (const unsigned char *c = (const unsigned char *)url; *c; c++)
        if (*c <= 0x20 || *c == 0x7f) {
            snprintf(why, why_len, "must not contain spaces or control characters");
            return false;
        }
    /* the scheme as it is stored and sent, not as curl would normalise it ("HTTP:/x") */
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(why, why_len, "must start with http:// or https://");
        return false;
    }
    if (url[url[4] == 's' ? 8 : 7] == '/') { /* curl would read "http:///x" as host x */
        snprintf(why, why_len, "must name a host");
        return false;
    }
    CURLU *u = curl_url();
    if (!u)
        rydes_oom();
    bool ok = url_check(u, url, why, why_len);
    curl_url_cleanup(u);
    return ok;
}

void mq_input_publish(json_t *obj, const char *prefix, struct mq_publish *p, char **owned,
                      struct field_errors *fe)
{
    static const char *const known[] = {"body",     "attributes", "subject",
                                        "group_id", "dedup_id",   NULL};
    char f[96];
    memset(p, 0, sizeof *p);
    validate_known_fields_at(obj, prefix, known, fe);
    struct mq_send_entry e;
    memset(&e, 0, sizeof e);
    *owned = NULL;
    read_body(obj, prefix, &e, owned, fe);
    p->body = e.body;
    p->body_len = e.body_len;
    p->body_json = e.body_json;
    size_t size = e.body_len;
    p->attributes = json_object_get(obj, "attributes");
    if (p->attributes) {
        validate_field_path(f, sizeof f, prefix, "attributes");
        size += mq_input_message_attributes(p->attributes, f, fe);
    }
    validate_field_path(f, sizeof f, prefix, "subject");
    p->subject = validate_string_at(obj, "subject", f, false, 1, 100, fe);
    if (p->subject && !validate_one_line(p->subject)) /* as SNS has it */
        field_errors_add_at(fe, prefix, "subject",
                            "must not contain line breaks or control characters");
    p->group_id = read_token(obj, prefix, "group_id", fe);
    p->dedup_id = read_token(obj, prefix, "dedup_id", fe);
    if (size > MQ_PUBLISH_MAX_BYTES)
        field_errors_add_at(fe, prefix, "body",
                            "the message (body and attributes, %zu bytes) exceeds %d bytes", size,
                            MQ_PUBLISH_MAX_BYTES);
}

void mq_input_publish_topic(const struct mq_publish *p, const char *prefix,
                            const struct mq_topic *t, struct field_errors *fe)
{
    if (!t->fifo && p->group_id)
        field_errors_add_at(fe, prefix, "group_id", "applies to FIFO topics only");
    else if (t->fifo && !p->group_id)
        field_errors_add_at(fe, prefix, "group_id", "is required on a FIFO topic");
    if (!t->fifo && p->dedup_id)
        field_errors_add_at(fe, prefix, "dedup_id", "applies to FIFO topics only");
    else if (t->fifo && !p->dedup_id && !t->content_based_dedup)
        field_errors_add_at(fe, prefix, "dedup_id",
                            "is required unless the topic has content_based_dedup");
}

void mq_input_receive(json_t *body, const struct mq_queue *q, struct mq_receive_request *out,
                      struct field_errors *fe)
{
    static const char *const known[] = {"max_messages", "visibility_timeout", "wait_seconds",
                                        "delete", NULL};
    json_t *o = body ? body : json_object();
    validate_known_fields(o, known, fe);
    out->max_messages = read_int(o, "max_messages", 1, MQ_MAX_BATCH, 1, fe);
    out->visibility_timeout =
        read_int(o, "visibility_timeout", 0, 43200, q->attrs.visibility_timeout, fe);
    out->wait_seconds = read_int(o, "wait_seconds", 0, 20, q->attrs.receive_wait_seconds, fe);
    out->delete_now = false;
    validate_bool(o, "delete", false, &out->delete_now, fe);
    if (!body)
        json_decref(o);
}
