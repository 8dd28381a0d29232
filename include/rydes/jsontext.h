/* JSON text from jansson values, with numbers written the shortest way that reads back the
 * same: jansson's default (17 significant digits) turns 0.1 into 0.10000000000000001, which a
 * client that sent 0.1 must never see again. */
#ifndef RYDES_JSONTEXT_H
#define RYDES_JSONTEXT_H

#include "rydes/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Appends v as compact JSON text: json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) byte for byte,
 * except that each real is written the shortest way that reads back the same (15 significant
 * digits, else 17), one real at a time: a body with 0.30000000000000004 in it still shows a fare
 * of 61.55. JSON_SORT_KEYS in flags sorts members as jansson does; other flags are ignored.
 * Nesting deeper than jansson's parser takes (JSON_PARSER_MAX_DEPTH) is written as null, as is
 * a NULL v (a json_pack that failed). */
void jsontext_write(struct buf *b, const json_t *v, size_t flags);
/* jsontext_write into a new malloc'd string (the caller frees it); aborts on OOM. */
char *jsontext_dumps(const json_t *v, size_t flags);

/* Writes v the shortest way (15 or 17 significant digits) that reads back the same, for SQL
 * parameters of numeric columns. */
void jsontext_format_double(double v, char *out, size_t n);

/* The real v as jansson writes it with precision significant digits (a ".0" when it would read
 * as an integer, no "+" or leading zeros in the exponent), into out (32 bytes suffice). */
void jsontext_real(double v, int precision, char *out, size_t n);
/* jsontext_real with 15 digits when they read back as v, else 17. */
void jsontext_shortest_real(double v, char *out, size_t n);

#endif
