/* libFuzzer harness for the problem+json encoder (src/http/problem.c, compiled in here with
 * stand-ins for the two server functions it calls): the input is cut at 0x01 bytes into a
 * status selector, a detail, the request path, a request id and (field, message) pairs of field
 * errors — every one of them may hold bytes that are not UTF-8. Whatever comes in, the reply
 * must be one well-formed problem+json document with the status it was asked for, a title, at
 * most VALIDATE_MAX_FIELD_ERRORS errors of two strings each, and Retry-After on a 503. Run with
 * ./dev fuzz problem. */
#include "../../src/http/problem.c"

#include <stdint.h>
#include <stdlib.h>

static int want_status;
static bool retry_after;

void http_add_header(struct http_request *req, const char *name, const char *value)
{
    (void)req;
    if (strcmp(name, "Retry-After") != 0 || atoi(value) < 1)
        abort();
    retry_after = true;
}

static void check_errors(json_t *errors)
{
    if (!errors)
        return;
    if (!json_is_array(errors) || json_array_size(errors) > VALIDATE_MAX_FIELD_ERRORS)
        abort();
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (!json_is_string(json_object_get(e, "field")) ||
            !json_is_string(json_object_get(e, "message")) || json_object_size(e) != 2)
            abort();
    }
}

enum handler_result http_reply(struct http_request *req, int status, const char *content_type,
                               const char *body, size_t len)
{
    (void)req;
    if (status != want_status || strcmp(content_type, "application/problem+json") != 0)
        abort();
    json_error_t err;
    json_t *p = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!p || !json_is_object(p) || json_integer_value(json_object_get(p, "status")) != status ||
        !json_is_string(json_object_get(p, "title")) ||
        !json_is_string(json_object_get(p, "type")) ||
        !json_is_string(json_object_get(p, "detail")))
        abort();
    check_errors(json_object_get(p, "errors"));
    json_decref(p);
    return HANDLER_DONE;
}

/* The next piece of the input up to a 0x01 byte (or the end), as a C string in out. */
static const char *next_piece(const uint8_t **at, const uint8_t *end, char *out, size_t n)
{
    size_t len = 0;
    while (*at < end && **at != 1) {
        if (len + 1 < n)
            out[len++] = (char)**at;
        (*at)++;
    }
    if (*at < end)
        (*at)++;
    out[len] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503, 418};
    if (size < 1)
        return 0;
    const uint8_t *at = data + 1, *end = data + size;
    int which = data[0] % (int)(sizeof statuses / sizeof statuses[0] + 1); /* last: invalid */
    char detail[512], path[512], piece[512];
    struct http_request req = {.path = path};
    next_piece(&at, end, detail, sizeof detail);
    next_piece(&at, end, path, sizeof path);
    next_piece(&at, end, req.request_id, sizeof req.request_id);
    retry_after = false;
    if (which == (int)(sizeof statuses / sizeof statuses[0])) {
        struct field_errors fe;
        field_errors_init(&fe);
        while (at < end) {
            char field[160];
            next_piece(&at, end, field, sizeof field);
            field_errors_add(&fe, field, "%s", next_piece(&at, end, piece, sizeof piece));
        }
        want_status = 400;
        http_reply_invalid(&req, &fe, NULL);
        field_errors_cleanup(&fe);
    } else if (statuses[which] == 503) {
        want_status = 503;
        http_reply_unavailable(&req, detail);
        if (!retry_after)
            abort();
    } else {
        want_status = statuses[which];
        http_reply_problem(&req, want_status, detail);
    }
    return 0;
}
