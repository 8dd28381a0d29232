/* Validation of RFQs and quotes; see include/rydes/rfqs.h. Pure: no I/O. */
#include "rydes/rfqs.h"

#include "rydes/rides.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An integer given as a JSON integer or a string of digits. */
static bool integer_value(json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 9 || strspn(s, "0123456789") != strlen(s))
        return false;
    *out = atoll(s);
    return true;
}

void rfq_input(json_t *body, struct rfq_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"from",
                                        "to",
                                        "customer",
                                        "timeout_in_secs",
                                        "from-location",
                                        "to-location",
                                        "customer-id",
                                        "timeout-in-secs",
                                        NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->from = rides_text_field(body, "from", "from-location", true, fe);
    in->to = rides_text_field(body, "to", "to-location", true, fe);
    in->customer = rides_text_field(body, "customer", "customer-id", true, fe);
    json_t *t = json_object_get(body, "timeout_in_secs"),
           *alias = json_object_get(body, "timeout-in-secs");
    const char *name = t || !alias ? "timeout_in_secs" : "timeout-in-secs";
    if (t && alias)
        field_errors_add(fe, "timeout_in_secs", "give either timeout_in_secs or timeout-in-secs");
    json_t *v = t ? t : alias;
    long long secs = RFQS_TIMEOUT_DEF;
    if (v && (!integer_value(v, &secs) || secs < RFQS_TIMEOUT_MIN || secs > RFQS_TIMEOUT_MAX))
        field_errors_add(fe, name, "must be a whole number of seconds from %d to %d",
                         RFQS_TIMEOUT_MIN, RFQS_TIMEOUT_MAX);
    in->timeout_s = (int)secs;
}

void quote_input(json_t *body, struct quote_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"unicorn", "price", "goodies", "unicorn-id", NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->unicorn = rides_text_field(body, "unicorn", "unicorn-id", true, fe);
    json_t *price = json_object_get(body, "price");
    if (!price)
        field_errors_add(fe, "price", "is required");
    else if (!validate_cents(price, RFQS_PRICE_MAX, false, &in->price))
        field_errors_add(fe, "price", "must be a number from 0 to %.0f with at most 2 decimals",
                         RFQS_PRICE_MAX);
    json_t *g = json_object_get(body, "goodies");
    if (!g || json_is_null(g))
        return;
    bool ok = json_is_array(g) && json_array_size(g) <= RFQS_GOODIES_MAX;
    for (size_t i = 0; ok && i < json_array_size(g); i++) {
        const char *s = json_string_value(json_array_get(g, i));
        ok = s && *s && validate_utf8_length(s) <= 100; /* characters, not bytes */
    }
    if (!ok)
        field_errors_add(fe, "goodies",
                         "must be a list of at most %d non-empty strings of up "
                         "to 100 characters",
                         RFQS_GOODIES_MAX);
    else
        in->goodies = g;
}
