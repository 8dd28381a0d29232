/* Trace context: the X-Request-Id (and W3C traceparent) of the HTTP request a piece of work
 * descends from. It is thread-local: the HTTP layer sets it around a handler, the consumer
 * framework around a message (from its attributes), the saga executor around a fare. Every log
 * line written meanwhile carries it (log.c), and the Wild Rydes publishers copy it into the
 * attributes of what they publish (request_id, traceparent), so one ride can be followed from
 * the HTTP call through every queue and topic hop to the last saga step. */
#ifndef RYDES_TRACE_H
#define RYDES_TRACE_H

#include "rydes/ids.h"

#include <jansson.h>
#include <stdbool.h>

#define TRACE_PARENT_LEN 56 /* "00-" 32 hex "-" 16 hex "-" 2 hex, and the NUL */

struct trace {
    char request_id[IDS_REQUEST_ID_MAX + 1]; /* "" when none */
    char traceparent[TRACE_PARENT_LEN];      /* "" when none */
};

/* Is s a W3C traceparent of version 00 with non-zero ids? */
bool trace_parent_valid(const char *s);
/* Makes request_id and traceparent (either may be NULL; invalid ones are dropped) the calling
 * thread's trace; both NULL clears it. */
void trace_set(const char *request_id, const char *traceparent);
/* Takes the trace from a message's attributes (request_id, traceparent); clears it when the
 * message carries none. */
void trace_from_attributes(json_t *attributes);
/* The calling thread's trace, or NULL when it has none. */
const struct trace *trace_current(void);
/* Adds request_id and traceparent String attributes of the current trace to attributes (an
 * object of {type, value}), unless they are there already. */
void trace_add_attributes(json_t *attributes);

#endif
