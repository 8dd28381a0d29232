/* The body of POST /fares, decoded and validated. Card data stays in the request's memory: only
 * the last four digits are kept; the number and the cvv are checked and dropped. */
#ifndef RYDES_FARE_INPUT_H
#define RYDES_FARE_INPUT_H

#include "rydes/validate.h"

#include <jansson.h>
#include <stdbool.h>

struct fare_input {
    const char *customer, *fare_id; /* borrowed from the body */
    double amount;                  /* a whole number of cents, 0..1e6 */
    char last4[5];
};

/* Is id a fare id: 1..SAGA_FARE_ID_MAX of A-Z a-z 0-9 _ -? */
bool fare_id_valid(const char *id);
/* Reads body into in; every invalid field is recorded in fe (nothing else is trusted then). */
void fare_input(json_t *body, struct fare_input *in, struct field_errors *fe);

#endif
