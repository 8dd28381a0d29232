/* libFuzzer harness for the Wild Rydes request decoders: the input is parsed as a request body
 * and fed to the ride, prebooking, RFQ, quote and fare validators (the src/rydes files ending
 * in _input.c), and, as raw text, to the RFC 3339 parser (src/core/clock.c) and its formatter. Run
 * with
 * ./dev fuzz wildrydes. */
#include "rydes/body.h"
#include "rydes/clock.h"
#include "rydes/fare_input.h"
#include "rydes/prebookings.h"
#include "rydes/rfqs.h"
#include "rydes/rides.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parse cap with no floor: small inputs reach it, wherever it runs out. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    body_json_setup(0);
    return 0;
}

static void decode(json_t *body)
{
    struct field_errors fe;
    field_errors_init(&fe);
    struct ride_input ride;
    rides_input(body, &ride, &fe);
    struct prebooking_input pb;
    prebooking_input(body, 1795000000000000, 90, &pb, &fe);
    struct rfq_input rfq;
    rfq_input(body, &rfq, &fe);
    struct quote_input quote;
    quote_input(body, &quote, &fe);
    struct fare_input fare;
    if (json_is_object(body)) /* the endpoint refuses anything else first */
        fare_input(body, &fare, &fe);
    field_errors_cleanup(&fe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[128];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    int64_t us;
    char back[CLOCK_RFC3339_LEN];
    if (clock_parse_rfc3339(text, &us))
        clock_format_rfc3339(us, back);
    char detail[256];
    json_t *body = body_parse_json((const char *)data, size, NULL, detail, sizeof detail);
    if (body && json_is_object(body))
        decode(body);
    json_decref(body);
    return 0;
}
