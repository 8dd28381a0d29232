/* Decoding and validation of the topic API's request bodies (PUT /topics/{name}, PUT
 * /topics/{name}/subscriptions/{sub}): pure C over jansson values, no I/O, every problem in a
 * field_errors list. Fuzzed by tests/fuzz/fuzz_mq_input.c. */
#include "rydes/filter.h"
#include "rydes/mq_input.h"

#include <stdio.h>
#include <string.h>

void topic_input(json_t *body, const char *name, bool *cbd, struct field_errors *fe)
{
    static const char *const known[] = {"fifo", "content_based_dedup", NULL};
    *cbd = false;
    bool named_fifo = mq_input_name_is_fifo(name);
    if (body && !json_is_object(body)) {
        field_errors_add(fe, "body", "must be a JSON object of attributes");
        return;
    }
    if (!body)
        return;
    validate_known_fields(body, known, fe);
    bool fifo = named_fifo;
    if (validate_bool(body, "fifo", false, &fifo, fe) && fifo != named_fifo)
        field_errors_add(fe, "fifo", "a FIFO topic's name ends in .fifo, and only a FIFO one's");
    if (validate_bool(body, "content_based_dedup", false, cbd, fe) && *cbd && !named_fifo)
        field_errors_add(fe, "content_based_dedup", "applies to FIFO topics only");
}

/* Reads the retry policy of a URL subscription: {max_attempts?, min_delay_seconds?,
 * max_delay_seconds?}. */
static void delivery_policy_input(json_t *dp, struct mq_subscription_input *in,
                                  struct field_errors *fe)
{
    static const char *const known[] = {"max_attempts", "min_delay_seconds", "max_delay_seconds",
                                        NULL};
    int64_t attempts = MQ_PUSH_ATTEMPTS_DEFAULT, lo = MQ_PUSH_MIN_DELAY_DEFAULT,
            hi = MQ_PUSH_MAX_DELAY_DEFAULT;
    if (dp && !json_is_object(dp)) {
        field_errors_add(fe, "delivery_policy", "must be an object");
    } else if (dp) {
        validate_known_fields_at(dp, "delivery_policy", known, fe);
        struct field_errors sub;
        field_errors_init(&sub);
        validate_int(dp, "max_attempts", false, 1, 100, &attempts, &sub);
        validate_int(dp, "min_delay_seconds", false, 1, 3600, &lo, &sub);
        validate_int(dp, "max_delay_seconds", false, 1, 3600, &hi, &sub);
        for (size_t i = 0; i < json_array_size(sub.list); i++) {
            json_t *e = json_array_get(sub.list, i);
            field_errors_add(fe, "delivery_policy", "%s %s",
                             json_string_value(json_object_get(e, "field")),
                             json_string_value(json_object_get(e, "message")));
        }
        field_errors_cleanup(&sub);
        if (lo > hi)
            field_errors_add(fe, "delivery_policy",
                             "min_delay_seconds must not exceed max_delay_seconds");
    }
    in->max_attempts = (int)attempts;
    in->min_delay_seconds = (int)lo;
    in->max_delay_seconds = (int)hi;
}

/* field of o, NULL when it is left out or null: a URL subscription without a dead-letter queue
 * shows "dead_letter_queue": null, and what GET shows can be PUT back. */
static json_t *given(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    return json_is_null(v) ? NULL : v;
}

/* Reads where a subscription delivers: exactly one of queue and url, and for a URL its
 * dead-letter queue and retry policy. */
static void subscription_target_input(json_t *o, struct mq_subscription_input *in,
                                      struct field_errors *fe)
{
    in->queue = validate_string(o, "queue", false, 1, MQ_NAME_MAX, fe);
    if (in->queue && !mq_input_queue_name(in->queue))
        field_errors_add(fe, "queue", "is not a valid queue name");
    in->url = validate_string(o, "url", false, 1, MQ_URL_MAX, fe);
    char why[128];
    if (in->url && !mq_input_url(in->url, why, sizeof why))
        field_errors_add(fe, "url", "%s", why);
    bool has_queue = json_object_get(o, "queue"), has_url = json_object_get(o, "url");
    if (has_queue == has_url)
        field_errors_add(fe, has_queue ? "url" : "queue", "give exactly one of queue and url");
    in->dead_letter_queue = given(o, "dead_letter_queue")
                                ? validate_string(o, "dead_letter_queue", false, 1, MQ_NAME_MAX, fe)
                                : NULL;
    if (in->dead_letter_queue && !mq_input_queue_name(in->dead_letter_queue))
        field_errors_add(fe, "dead_letter_queue", "is not a valid queue name");
    json_t *dp = given(o, "delivery_policy");
    if (has_queue && given(o, "dead_letter_queue"))
        field_errors_add(fe, "dead_letter_queue", "applies to URL subscriptions only");
    if (has_queue && dp)
        field_errors_add(fe, "delivery_policy", "applies to URL subscriptions only");
    delivery_policy_input(dp, in, fe);
}

/* Validates a subscription body into in; compiles its policy to report a bad one. */
void subscription_input(json_t *body, struct mq_subscription_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"queue",           "url",
                                        "filter_policy",   "filter_policy_scope",
                                        "raw_delivery",    "dead_letter_queue",
                                        "delivery_policy", NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    subscription_target_input(body, in, fe);
    const char *scope = validate_string(body, "filter_policy_scope", false, 1, 16, fe);
    if (scope && strcmp(scope, "body") && strcmp(scope, "attributes"))
        field_errors_add(fe, "filter_policy_scope", "must be attributes or body");
    in->scope = scope && !strcmp(scope, "body") ? FILTER_SCOPE_BODY : FILTER_SCOPE_ATTRIBUTES;
    validate_bool(body, "raw_delivery", false, &in->raw, fe);
    json_t *policy = json_object_get(body, "filter_policy");
    if (!policy || json_is_null(policy))
        return;
    char err[256];
    if (json_is_object(policy) && !filter_fits(policy)) {
        field_errors_add(fe, "filter_policy", "can be at most %d KB as compact JSON",
                         FILTER_MAX_POLICY_BYTES / 1024);
        return;
    }
    struct filter_policy *compiled =
        json_is_object(policy) ? filter_compile_new(policy, in->scope, err, sizeof err) : NULL;
    if (!compiled)
        field_errors_add(fe, "filter_policy", "%s",
                         json_is_object(policy) ? err : "must be a JSON object");
    filter_free(compiled);
    in->filter_policy = policy;
}
