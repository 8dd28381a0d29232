/* The OpenAPI document, converted from openapi/openapi.yaml to JSON at build time. */
#ifndef RYDES_OPENAPI_H
#define RYDES_OPENAPI_H

#include <stddef.h>

extern const char rydes_openapi_json[];
extern const size_t rydes_openapi_json_len;

#endif
