/* libFuzzer harness for the request-body decoders of the queue and topic APIs
 * (src/api/mq_input.c, src/api/topic_input.c) and
 * the JSON body parser (src/http/body.c): the input is parsed as a request body and fed to
 * every decoder, for a standard and a FIFO queue. Run with ./dev fuzz mq_input. */
#include "rydes/body.h"
#include "rydes/mq_input.h"

#include <stdint.h>
#include <stdio.h>
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

static void decode(json_t *body, const struct mq_queue *q)
{
    struct field_errors fe;
    field_errors_init(&fe);
    struct mq_attrs attrs;
    mq_input_attrs(json_is_object(body) ? body : NULL, q->name, &attrs, &fe);
    struct mq_send_entry e;
    char *owned = NULL;
    if (json_is_object(body))
        mq_input_send_entry(body, "entries[0]", q, &e, &owned, &fe);
    free(owned);
    struct mq_receive_request rr;
    mq_input_receive(json_is_object(body) ? body : NULL, q, &rr, &fe);
    json_t *attributes = json_object_get(body, "attributes");
    if (attributes)
        mq_input_message_attributes(attributes, "attributes", &fe);
    field_errors_cleanup(&fe);
}

/* The topic decoders: PUT /topics/{name} and a subscription (with its filter policy). */
static void decode_topic(json_t *body)
{
    struct field_errors fe;
    field_errors_init(&fe);
    bool cbd;
    topic_input(body, "rides", &cbd, &fe);
    topic_input(body, "rides.fifo", &cbd, &fe);
    struct mq_subscription_input in;
    if (json_is_object(body)) { /* the endpoints refuse anything else first */
        subscription_input(body, &in, &fe);
        struct mq_publish p;
        char *owned = NULL;
        mq_input_publish(body, "", &p, &owned, &fe);
        struct mq_topic standard = {.id = 1, .name = "rides"}, fifo = {.id = 2, .fifo = true};
        snprintf(fifo.name, sizeof fifo.name, "rides.fifo");
        mq_input_publish_topic(&p, "", &standard, &fe);
        mq_input_publish_topic(&p, "", &fifo, &fe);
        free(owned);
    }
    field_errors_cleanup(&fe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char detail[256];
    json_t *body = body_parse_json((const char *)data, size, NULL, detail, sizeof detail);
    if (!body)
        return 0;
    struct mq_queue standard = {.id = 1, .name = "orders"}, fifo = {.id = 2, .name = "o.fifo"};
    standard.attrs = (struct mq_attrs){.visibility_timeout = 30, .max_message_bytes = 262144};
    fifo.attrs = standard.attrs;
    fifo.attrs.fifo = true;
    decode(body, &standard);
    decode(body, &fifo);
    decode_topic(body);
    json_decref(body);
    return 0;
}
