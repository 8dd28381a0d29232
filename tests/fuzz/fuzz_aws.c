/* libFuzzer harness for the decoders of the Amazon SQS/SNS protocols (src/aws/wire.c, sigv4.c,
 * md5attrs.c): the input is read as a query-protocol form (parsed, reshaped into the JSON
 * protocol's input, rendered back as both XML documents, its pairs made a SigV4 canonical
 * query), as an Authorization header and an X-Amz-Date, and as JSON attributes for their
 * digest. Run with ./dev fuzz aws. */
#include "rydes/body.h"
#include "rydes/buf.h"
#include "rydes/md5attrs.h"
#include "rydes/sigv4.h"
#include "rydes/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    body_json_setup(0);
    return 0;
}

/* The form reshaped and rendered, and its pairs (those without NUL bytes) as a canonical
 * query. */
static void form(const char *data, size_t size)
{
    struct wire_form f;
    char why[256];
    if (wire_form_parse(data, size, &f, why, sizeof why)) {
        json_t *j = wire_query_to_json(&f, why, sizeof why);
        struct buf b;
        buf_init(&b);
        if (j) {
            wire_xml_response(&b, "ns", "Op", j, "id");
            buf_reset(&b);
            wire_xml_response_sns(&b, "ns", "Op", j, "id");
            json_decref(j);
        }
        const char **names = calloc((size_t)f.n + 1, sizeof *names);
        const char **values = calloc((size_t)f.n + 1, sizeof *values);
        size_t n = 0;
        for (int i = 0; i < f.n; i++)
            if (strlen(f.pairs[i].value) == f.pairs[i].value_len) {
                names[n] = f.pairs[i].name;
                values[n++] = f.pairs[i].value;
            }
        buf_reset(&b);
        sigv4_canonical_query(names, values, n, &b);
        free(names);
        free(values);
        buf_cleanup(&b);
    }
    wire_form_cleanup(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    form(text, size);
    char *s = strndup(text, size);
    struct sigv4_auth a;
    sigv4_parse_authorization(s, &a);
    int64_t epoch;
    sigv4_parse_amz_date(s, &epoch);
    struct buf b;
    buf_init(&b);
    wire_xml_escape(&b, text, size);
    buf_reset(&b);
    wire_xml_clean(&b, text, size);
    buf_cleanup(&b);
    wire_chars_valid(text, size);
    char detail[128], hex[33];
    json_t *attrs = body_parse_json(text, size, NULL, detail, sizeof detail);
    if (json_is_object(attrs))
        md5attrs_hex(attrs, hex);
    json_decref(attrs);
    free(s);
    return 0;
}
