/* Request-body limits, media type and JSON parsing; see include/rydes/body.h. */
#include "rydes/body.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    size_t left, cost; /* cost: of the last parse */
} parse_cap;

static size_t json_floor = BODY_JSON_FLOOR;

/* malloc's own bookkeeping per block, counted so that many tiny values weigh what they cost */
#define BODY_JSON_BLOCK_OVERHEAD 16
/* bytes handed to the parser at a time: past the cap, it overshoots by at most what one such
 * piece expands to (and one buffer growth of a long token) */
#define BODY_JSON_PIECE 1024

/* Counts what a capped parse allocates, and only counts: jansson's lexer does not survive a
 * failed allocation (it drops the character and then asserts, or reads past its buffer), so
 * the parse is stopped by its input instead (feed_piece). */
static void *body_json_malloc(size_t n)
{
    if (parse_cap.on) {
        size_t cost =
            n > SIZE_MAX - BODY_JSON_BLOCK_OVERHEAD ? SIZE_MAX : n + BODY_JSON_BLOCK_OVERHEAD;
        if (cost > parse_cap.left)
            parse_cap.exceeded = true;
        parse_cap.left = cost > parse_cap.left ? 0 : parse_cap.left - cost;
        parse_cap.cost = cost > SIZE_MAX - parse_cap.cost ? SIZE_MAX : parse_cap.cost + cost;
    }
    return malloc(n);
}

void body_json_setup(size_t floor)
{
    json_floor = floor;
    json_set_alloc_funcs(body_json_malloc, free);
}

size_t body_json_memory_cap(size_t len)
{
    size_t scaled = len > SIZE_MAX / BODY_JSON_EXPANSION ? SIZE_MAX : len * BODY_JSON_EXPANSION;
    return scaled > SIZE_MAX - json_floor ? SIZE_MAX : scaled + json_floor;
}

struct json_input {
    const char *data;
    size_t len, at;
};

/* jansson's input callback: the body a piece at a time, and the end of it once the parse has
 * allocated more than its cap (jansson takes (size_t)-1 as the end): the parse stops there,
 * failing or with a value cut short, which body_parse_json refuses either way. */
static size_t feed_piece(void *buffer, size_t buflen, void *arg)
{
    struct json_input *in = arg;
    if (parse_cap.exceeded)
        return (size_t)-1;
    size_t n = in->len - in->at;
    if (n > buflen)
        n = buflen;
    if (n > BODY_JSON_PIECE)
        n = BODY_JSON_PIECE;
    memcpy(buffer, in->data + in->at, n);
    in->at += n;
    return n;
}

json_t *body_parse_json(const char *data, size_t len, bool *too_large, char *detail,
                        size_t detail_len)
{
    json_error_t err;
    const char *nul = memchr(data, '\0', len);
    if (nul) { /* jansson drops a NUL right after a number or literal (its issue 331) */
        if (too_large)
            *too_large = false;
        snprintf(detail, detail_len, "malformed JSON: a NUL byte at offset %zu",
                 (size_t)(nul - data));
        return NULL;
    }
    struct json_input in = {data, len, 0};
    parse_cap.on = true;
    parse_cap.exceeded = false;
    parse_cap.left = body_json_memory_cap(len);
    parse_cap.cost = 0;
    json_t *v = json_load_callback(feed_piece, &in, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    parse_cap.on = false;
    bool big = parse_cap.exceeded;
    if (big) {
        json_decref(v); /* the last piece went past the cap */
        v = NULL;
    }
    if (too_large)
        *too_large = big;
    if (big)
        snprintf(detail, detail_len,
                 "the JSON body holds too many values: parsed, it would take more than %zu "
                 "bytes",
                 body_json_memory_cap(len));
    else if (!v) /* jansson's words for \u0000 name its flag or its limits: say what they mean */
        snprintf(detail, detail_len, "malformed JSON at line %d, column %d: %s", err.line,
                 err.column,
                 strstr(err.text, "JSON_ALLOW_NUL") || strstr(err.text, "NUL byte in object key")
                     ? "\\u0000 (NUL) is not allowed in strings"
                     : err.text);
    return v;
}

size_t body_last_parse_cost(void)
{
    return parse_cap.cost;
}
