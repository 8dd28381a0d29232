/* Validation of a prebooking submission; see include/rydes/prebookings.h. Pure: no I/O. */
#include "rydes/prebookings.h"

#include "rydes/rides.h"

#include <string.h>

void prebooking_parse(json_t *body, struct prebooking_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"from",          "to",          "customer",    "when",
                                        "from-location", "to-location", "customer-id", NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->from = rides_text_field(body, "from", "from-location", true, fe);
    in->to = rides_text_field(body, "to", "to-location", true, fe);
    in->customer = rides_text_field(body, "customer", "customer-id", true, fe);
    const char *when = validate_string(body, "when", true, 1, 64, fe);
    if (!when)
        return;
    if (!clock_parse_rfc3339(when, &in->pickup_us)) {
        field_errors_add(fe, "when",
                         "must be an RFC 3339 date-time such as "
                         "\"2026-12-24T18:30:00Z\"");
        return;
    }
    clock_format_rfc3339(in->pickup_us, in->pickup);
}

void prebooking_timely(const struct prebooking_input *in, int64_t now_us, int horizon_days,
                       struct field_errors *fe)
{
    if (!in->pickup[0]) /* "when" is missing or invalid: said already */
        return;
    int64_t horizon_us = (int64_t)horizon_days * 86400 * 1000000;
    if (in->pickup_us <= now_us)
        field_errors_add(fe, "when", "must be in the future");
    else if (in->pickup_us - now_us > horizon_us)
        field_errors_add(fe, "when", "must be at most %d days ahead", horizon_days);
}

void prebooking_input(json_t *body, int64_t now_us, int horizon_days, struct prebooking_input *in,
                      struct field_errors *fe)
{
    prebooking_parse(body, in, fe);
    prebooking_timely(in, now_us, horizon_days, fe);
}
