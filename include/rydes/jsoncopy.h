/* JSON written straight into a buffer, for replies that carry text stored as JSON already (a
 * message body): copied after a syntax check instead of being parsed into jansson values and
 * dumped again, which cost the gateway a third of a receive (callgrind). */
#ifndef RYDES_JSONCOPY_H
#define RYDES_JSONCOPY_H

#include "rydes/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The deepest nesting jsoncopy_compact copies; deeper text is refused. */
#define JSONCOPY_MAX_DEPTH 512

/* Both take valid UTF-8 (PostgreSQL text always is): bytes from 0x80 up are copied unchecked.
 *
 * Appends s[0..n) as a JSON string, quotes included, escaped as jansson escapes it:
 * quote, backslash, \b \f \n \r \t, other bytes below 0x20 as \u00XX; everything else as is. */
void jsoncopy_string(struct buf *b, const char *s, size_t n);

/* Appends the JSON text t[0..n) (one value of any type, surrounded by any whitespace) without
 * its insignificant whitespace, every token byte for byte. Returns false, with b as it was,
 * when t is not exactly one JSON value or nests deeper than JSONCOPY_MAX_DEPTH, and also for
 * what jansson refuses to read although the grammar allows it: \u0000, unpaired surrogates,
 * integers of more than 18 digits, exponents of more than 2 (so that a caller falling back to
 * jansson answers as before). For text that jansson wrote (compact, no escapes beyond its own)
 * the result is what parsing and dumping it compact would give. */
bool jsoncopy_compact(struct buf *b, const char *t, size_t n);

#endif
