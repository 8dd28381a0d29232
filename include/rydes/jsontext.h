/* JSON text from jansson values, with numbers written the shortest way that reads back the
 * same: jansson's default (17 significant digits) turns 0.1 into 0.10000000000000001, which a
 * client that sent 0.1 must never see again. */
#ifndef RYDES_JSONTEXT_H
#define RYDES_JSONTEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* json_dumps(v, flags) with the real precision chosen for v: 15 significant digits when every
 * real in v survives that, else 17. Returns malloc'd text (caller frees); aborts on OOM. A NULL
 * v (a json_pack that failed) gives "null". */
char *jsontext_dumps(const json_t *v, size_t flags);

/* Writes v the shortest way (15 or 17 significant digits) that reads back the same, for SQL
 * parameters of numeric columns. */
void jsontext_format_double(double v, char *out, size_t n);

/* Does v read back from 15 significant digits (jsontext_dumps then uses 15 for every real)? */
bool jsontext_fifteen_digits(double v);
/* The real v as jansson writes it with precision significant digits (a ".0" when it would read
 * as an integer, no "+" or leading zeros in the exponent), into out (32 bytes suffice). */
void jsontext_real(double v, int precision, char *out, size_t n);

#endif
