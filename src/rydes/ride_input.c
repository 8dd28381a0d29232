/* Validation of a ride submission (POST /rides); see include/rydes/rides.h. Pure: no I/O. */
#include "rydes/rides.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of field or of its alias (the reference workshop's hyphenated spelling); naming
 * both is an error. *name receives the spelling used. */
static json_t *aliased(json_t *body, const char *field, const char *alias, const char **name,
                       struct field_errors *fe)
{
    json_t *a = json_object_get(body, field), *b = alias ? json_object_get(body, alias) : NULL;
    if (a && b)
        field_errors_add(fe, field, "give either %s or %s, not both", field, alias);
    *name = a || !b ? field : alias;
    return a ? a : b;
}

const char *rides_text_field(json_t *body, const char *field, const char *alias, bool required,
                             struct field_errors *fe)
{
    const char *name;
    json_t *v = aliased(body, field, alias, &name, fe);
    if ((!v || json_is_null(v)) && !required)
        return NULL; /* an optional field may be given as null */
    return validate_string(body, name, required, 1, RIDES_TEXT_MAX, fe);
}

/* Reads a number given as a JSON number or a numeric string, within 0..max and with at most
 * max_decimals decimals (-1: any). */
static double number_field(json_t *body, const char *field, double max, int max_decimals,
                           struct field_errors *fe)
{
    const char *name;
    json_t *v = aliased(body, field, NULL, &name, fe);
    double d = 0;
    int decimals = 0;
    bool ok = true;
    if (!v) {
        field_errors_add(fe, name, "is required");
        return 0;
    }
    if (json_is_number(v)) {
        d = json_number_value(v);
        decimals = validate_decimals_of(d);
    } else {
        /* digits, optionally a point and more: no sign (openapi's RideNumberString) */
        const char *s = json_string_value(v);
        ok = s && *s != '-' && validate_decimal_text(s, &d, &decimals);
    }
    if (!ok)
        field_errors_add(fe, name, "must be a number or a numeric string such as \"12.50\"");
    else if (d < 0 || d > max)
        field_errors_add(fe, name, "must be from 0 to %.0f", max);
    else if (max_decimals >= 0 && decimals > max_decimals)
        field_errors_add(fe, name, "must have at most %d decimals", max_decimals);
    if (d == 0)
        d = 0; /* -0 is 0: the same ride, stored and hashed (Idempotency-Key) alike */
    return ok ? d : 0;
}

void rides_input(json_t *body, struct ride_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"from",        "to",          "customer",   "unicorn",
                                        "duration",    "distance",    "fare",       "from-location",
                                        "to-location", "customer-id", "unicorn-id", NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->from = rides_text_field(body, "from", "from-location", true, fe);
    in->to = rides_text_field(body, "to", "to-location", true, fe);
    in->customer = rides_text_field(body, "customer", "customer-id", true, fe);
    in->unicorn = rides_text_field(body, "unicorn", "unicorn-id", false, fe);
    in->duration = number_field(body, "duration", RIDES_DURATION_MAX, -1, fe);
    in->distance = number_field(body, "distance", RIDES_DISTANCE_MAX, -1, fe);
    in->fare = number_field(body, "fare", RIDES_FARE_MAX, 2, fe);
}
