/* The Wild Rydes topology (DESIGN.md): the topics, queues, dead-letter queues and subscriptions
 * the built-in services and the API rely on. Created idempotently at start-up and by
 * `rydes migrate`: what exists is kept (an operator's queue attributes and extra subscriptions
 * survive restarts), what is missing is created, and our own subscriptions are brought back
 * to their definition (the extraordinary-rides filter follows its settings). */
#ifndef RYDES_TOPOLOGY_H
#define RYDES_TOPOLOGY_H

#include "rydes/config.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/* Ensures the topology on pg in one transaction (serialised between processes by an advisory
 * lock). Returns false with err filled when the database refused. */
bool topology_ensure(PGconn *pg, const struct config *cfg, char *err, size_t errlen);

/* The extraordinary-rides filter policy for the configured thresholds, as JSON text
 * (caller frees). */
char *topology_extraordinary_policy(const struct config *cfg);

#endif
