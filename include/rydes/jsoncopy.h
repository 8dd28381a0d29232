/* JSON written straight into a buffer, for replies that carry text stored as JSON already (a
 * message body): copied after a syntax check instead of being parsed into jansson values and
 * dumped again, which cost the gateway a third of a receive (callgrind). */
#ifndef RYDES_JSONCOPY_H
#define RYDES_JSONCOPY_H

#include "rydes/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* The deepest nesting jsoncopy_compact copies; deeper text is refused. */
#define JSONCOPY_MAX_DEPTH 512

/* Appends s[0..n) (UTF-8) as a JSON string, quotes included, escaped as jansson escapes it:
 * quote, backslash, \b \f \n \r \t, other bytes below 0x20 as \u00XX; everything else as is. */
void jsoncopy_string(struct buf *b, const char *s, size_t n);

/* Appends the JSON text t[0..n) (one value of any type, surrounded by any whitespace) without
 * its insignificant whitespace, every token byte for byte. Returns false, with b as it was,
 * when t is not exactly one JSON value or nests deeper than JSONCOPY_MAX_DEPTH. For text that
 * jansson wrote (compact, no escapes beyond its own) the result is what parsing and dumping it
 * compact would give. */
bool jsoncopy_compact(struct buf *b, const char *t, size_t n);

#endif
