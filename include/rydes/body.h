/* Request bodies: the size cap (from Content-Length before reading, and while reading chunked
 * bodies), the media-type check, and JSON parsing with duplicate keys refused and errors that
 * give line and column. Pure: no MHD, unit-tested in tests/unit/test_body.c. */
#ifndef RYDES_BODY_H
#define RYDES_BODY_H

#include "rydes/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct body_reader {
    struct buf buf;
    size_t max;
    bool too_large; /* once set, further data is dropped and the request gets 413 */
    size_t seen;    /* bytes offered, kept or not */
};

void body_reader_init(struct body_reader *r, size_t max);
void body_reader_cleanup(struct body_reader *r);
/* Adds n bytes; returns false (and drops everything) once the total would exceed the cap. */
bool body_reader_feed(struct body_reader *r, const char *data, size_t n);

/* Has an oversized body gone on so far past the cap (4x, at least 1 MiB more) that draining it
 * for a polite 413 is no longer worth it? */
bool body_reader_hopeless(const struct body_reader *r);
/* Is a Content-Length header value larger than max? Malformed values are not "too large"
 * (MHD itself refuses them with 400, and values past 2^64 with 413, before any handler). */
bool body_declared_too_large(const char *content_length, size_t max);
/* Is the Content-Type header value application/json (parameters such as charset allowed)? */
bool body_media_type_is_json(const char *content_type);
/* A JSON body of len bytes may take at most body_json_memory_cap(len) bytes of memory once
 * parsed: BODY_JSON_EXPANSION times its size, plus BODY_JSON_FLOOR. Typical bodies take 2-15
 * times their size; a megabyte of "[{},{},...]" would take 75 times, 78 MB, and a server holds a
 * parsed body per request being handled. */
#define BODY_JSON_EXPANSION 32
#define BODY_JSON_FLOOR     (1024 * 1024)
size_t body_json_memory_cap(size_t len);

/* Makes jansson allocate through a counter that body_parse_json caps (only there: every other
 * use of jansson is unlimited), with floor in place of BODY_JSON_FLOOR (the fuzzers take 0, to
 * reach the cap with small inputs). Call once at start, before any thread uses jansson; without
 * it body_parse_json parses uncapped. */
void body_json_setup(size_t floor);

/* Parses a JSON text of any type, refusing duplicate object keys, NUL bytes, invalid UTF-8,
 * trailing data and a body that would take more than body_json_memory_cap(len) once parsed.
 * Returns a new reference, or NULL with a message for the client in detail; *too_large (may be
 * NULL) then tells the last case (a 413) from a malformed text (a 400). */
json_t *body_parse_json(const char *data, size_t len, bool *too_large, char *detail,
                        size_t detail_len);
/* What the last body_parse_json on this thread allocated (as its cap counts it): what the value
 * it returned holds. 0 without body_json_setup. */
size_t body_last_parse_cost(void);

#endif
