/* MD5OfMessageAttributes as Amazon SQS computes it (and the SDKs verify it): the attributes
 * sorted by name, each encoded as the 4-byte big-endian length and the UTF-8 bytes of its name,
 * of its data type, one transport byte (1 for String and Number, 2 for Binary) and the length
 * and bytes of its value (for Binary, the decoded bytes). Pure; unit-tested against values
 * computed by an independent implementation (tests/unit/test_md5attrs.c). */
#ifndef RYDES_MD5ATTRS_H
#define RYDES_MD5ATTRS_H

#include <jansson.h>
#include <stdbool.h>

/* The hex MD5 (33 bytes) of Rydes attributes {name: {"type", "value"}}, Binary values given in
 * base64. False (hex left empty) when attrs is empty or malformed. */
bool md5attrs_hex(json_t *attrs, char *hex);

/* Decodes standard base64 text into a new buffer (caller frees) of *len bytes; NULL when the
 * text is not valid base64. */
unsigned char *md5attrs_base64_decode(const char *text, size_t *len);

#endif
