/* Thread-local trace context; see include/rydes/trace.h. */
#include "rydes/trace.h"

#include "rydes/fmt.h"

#include <ctype.h>
#include <string.h>

static _Thread_local struct trace current;

static bool hex_run(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

bool trace_parent_valid(const char *s)
{
    /* 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>, lower case, ids not all zero */
    return s && strlen(s) == TRACE_PARENT_LEN - 1 && !strncmp(s, "00-", 3) && s[35] == '-' &&
           s[52] == '-' && hex_run(s + 3, 32) && hex_run(s + 36, 16) &&
           isxdigit((unsigned char)s[53]) && isxdigit((unsigned char)s[54]);
}

void trace_set(const char *request_id, const char *traceparent)
{
    current.request_id[0] = current.traceparent[0] = '\0';
    if (request_id && ids_request_id_valid(request_id))
        fmt_copy(current.request_id, sizeof current.request_id, request_id);
    if (trace_parent_valid(traceparent))
        fmt_copy(current.traceparent, sizeof current.traceparent, traceparent);
}

static const char *attribute(json_t *attributes, const char *name)
{
    return json_string_value(json_object_get(json_object_get(attributes, name), "value"));
}

void trace_from_attributes(json_t *attributes)
{
    trace_set(attribute(attributes, "request_id"), attribute(attributes, "traceparent"));
}

const struct trace *trace_current(void)
{
    return current.request_id[0] || current.traceparent[0] ? &current : NULL;
}

static void add(json_t *attributes, const char *name, const char *value)
{
    if (*value && !json_object_get(attributes, name))
        json_object_set_new(attributes, name,
                            json_pack("{s:s, s:s}", "type", "String", "value", value));
}

void trace_add_attributes(json_t *attributes)
{
    if (!json_is_object(attributes))
        return;
    add(attributes, "request_id", current.request_id);
    add(attributes, "traceparent", current.traceparent);
}
