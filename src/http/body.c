/* Request-body limits, media type and JSON parsing; see include/rydes/body.h. */
#include "rydes/body.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

void body_reader_init(struct body_reader *r, size_t max)
{
    buf_init(&r->buf);
    r->max = max;
    r->too_large = false;
    r->seen = 0;
}

void body_reader_cleanup(struct body_reader *r)
{
    buf_cleanup(&r->buf);
}

bool body_reader_feed(struct body_reader *r, const char *data, size_t n)
{
    r->seen = n > SIZE_MAX - r->seen ? SIZE_MAX : r->seen + n;
    if (r->too_large)
        return false;
    if (n > r->max - r->buf.len) {
        r->too_large = true;
        buf_cleanup(&r->buf);
        return false;
    }
    size_t need = r->buf.len + n; /* at most r->max */
    if (need >= r->buf.cap) {     /* doubling, but never past the cap: 1 MiB takes 1 MiB */
        size_t room = r->buf.cap ? r->buf.cap : 4096;
        room = room > r->max - r->buf.cap ? r->max : r->buf.cap + room;
        buf_grow_exact(&r->buf, room > need ? room : need);
    }
    buf_append(&r->buf, data, n);
    return true;
}

bool body_reader_hopeless(const struct body_reader *r)
{
    size_t slack = r->max > SIZE_MAX / 4 ? SIZE_MAX / 4 : r->max * 3;
    if (slack < 1048576)
        slack = 1048576;
    return r->too_large && r->seen - r->max > slack;
}

bool body_declared_too_large(const char *content_length, size_t max)
{
    if (!content_length)
        return false;
    /* Only plain digits: strtoull alone would take signs and leading blanks. */
    if (!isdigit((unsigned char)content_length[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(content_length, &end, 10);
    if (*end)
        return false;
    return errno == ERANGE || v > max;
}

bool body_media_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    if (!ct || strncasecmp(ct, json, sizeof json - 1) != 0)
        return false;
    char next = ct[sizeof json - 1];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

/* What the parse running on this thread may still allocate; unlimited when off. jansson
 * allocates through body_json_malloc once body_json_setup has run. */
static _Thread_local struct {
    bool on, exceeded;
    size_t left;
} parse_cap;

/* malloc's own bookkeeping per block, counted so that many tiny values weigh what they cost */
#define BODY_JSON_BLOCK_OVERHEAD 16

static void *body_json_malloc(size_t n)
{
    if (parse_cap.on) {
        size_t cost =
            n > SIZE_MAX - BODY_JSON_BLOCK_OVERHEAD ? SIZE_MAX : n + BODY_JSON_BLOCK_OVERHEAD;
        if (cost > parse_cap.left) {
            parse_cap.exceeded = true;
            return NULL; /* jansson gives up the parse and frees what it built */
        }
        parse_cap.left -= cost;
    }
    return malloc(n);
}

void body_json_setup(void)
{
    json_set_alloc_funcs(body_json_malloc, free);
}

size_t body_json_memory_cap(size_t len)
{
    size_t scaled = len > SIZE_MAX / BODY_JSON_EXPANSION ? SIZE_MAX : len * BODY_JSON_EXPANSION;
    return scaled > SIZE_MAX - BODY_JSON_FLOOR ? SIZE_MAX : scaled + BODY_JSON_FLOOR;
}

json_t *body_parse_json(const char *data, size_t len, bool *too_large, char *detail,
                        size_t detail_len)
{
    json_error_t err;
    parse_cap.on = true;
    parse_cap.exceeded = false;
    parse_cap.left = body_json_memory_cap(len);
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    parse_cap.on = false;
    bool big = !v && parse_cap.exceeded;
    if (too_large)
        *too_large = big;
    if (big)
        snprintf(detail, detail_len,
                 "the JSON body holds too many values: parsed, it would take more than %zu "
                 "bytes",
                 body_json_memory_cap(len));
    else if (!v)
        snprintf(detail, detail_len, "malformed JSON at line %d, column %d: %s", err.line,
                 err.column, err.text);
    return v;
}
