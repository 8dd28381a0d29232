/* The fare-collection saga, orchestrated and persisted in PostgreSQL (sql/009). The workflow is
 * a table of steps, each with its action and, where it has one, its compensation:
 *
 *   register → preauthorize (void) → charge (refund) → credit_account → complete → publish
 *
 * saga_run_one claims one due fare under a lease and runs it as far as it can go now. After each
 * step the fare's position is committed, so a process that dies mid-saga leaves it to be resumed
 * by any other once the lease expires; every gateway call carries an idempotency key of the
 * fare and the step, so a call repeated after a crash never charges twice. A transient error
 * retries the step with exponential backoff and jitter; a business error, or a transient one past
 * the step's retry budget, compensates what was done in reverse and ends the fare failed. The
 * outcome is published on topic fare-processing with attribute is_successful. A compensation
 * that keeps failing past its budget leaves the fare failed with the step marked for an
 * operator (view stuck_sagas). */
#ifndef RYDES_SAGA_H
#define RYDES_SAGA_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/mq.h"
#include "rydes/mq_hub.h"
#include "rydes/payments.h"
#include "rydes/topic_cache.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SAGA_TOPIC       "fare-processing"
#define SAGA_FARE_ID_MAX 64
#define SAGA_RIDE_PREFIX "ride-" /* a ride's fare id: this and the ride id */

struct saga_env {
    struct payments *payments;
    struct topic_cache *topics;
    struct mq_hub *hub;
    int lease_seconds;
    int unreachable_seconds;     /* a gateway not reached is retried this long, uncounted */
    const atomic_bool *stopping; /* set when the process stops: a run pauses between steps */
};

/* Test hook: called after a step's gateway call returned and before its outcome is recorded;
 * true abandons the run there, as a crash would (the lease runs out, someone resumes). */
extern bool (*saga_crash_hook)(const char *fare_id, const char *step);

/* What the executors of this process did, for /metrics. */
struct saga_counters {
    _Atomic uint64_t succeeded, failed; /* sagas finished, by outcome */
    _Atomic uint64_t operator;          /* sagas left failed for an operator */
    _Atomic uint64_t retries;           /* steps and compensations retried after an error */
};
extern struct saga_counters saga_counters;

/* The names of the steps, in order, NULL-terminated (for saga_start). */
extern const char *const saga_step_names[];

/* Starts the saga of a fare: fare id, ride (NULL for POST /fares), customer, amount, the last
 * four card digits (or NULL) and the request hash (or NULL). *created false when it existed. */
enum mq_status saga_start(struct db_conn *c, const char *id, const char *ride_id,
                          const char *customer, double amount, const char *last4, const char *hash,
                          bool *created);

/* Starts the saga of the stored ride ride_id (a UUID), for its own customer and fare: nothing
 * of a ride event but its id is believed (anyone who may send to a queue could write one). Its
 * fare id is SAGA_RIDE_PREFIX + the ride id as stored (POST /fares refuses ids with that
 * prefix, so none can take a ride's place). *found false when there is no such ride (nothing
 * started); *created false when its saga existed. */
enum mq_status saga_start_ride(struct db_conn *c, const char *ride_id, bool *found, bool *created);

/* Claims one due fare and runs it as far as it goes now. *ran false when none was due. */
enum mq_status saga_run_one(struct db_conn *c, const struct saga_env *env, bool *ran);

/* GET /fares/{id} and GET /rides/{id}/fare: the fare with its steps (a new reference), by fare
 * id or by ride id. MQ_NOT_FOUND when there is none. *hash (may be NULL) receives the stored
 * request hash (owned by the caller). */
enum mq_status saga_fare_json(struct db_conn *c, const char *fare_id, const char *ride_id,
                              json_t **out, char **hash);

/* GET /fares: up to limit fares newest first (by created_at, then id) after the cursor after_us
 * (microseconds since the epoch; NULL: from the newest) and after_id (a fare id); see
 * DB_PAGE_CURSOR. *items receives a new array of summaries: the fare without card or request
 * hash, with customer, created_at, updated_at and its steps as {name, status}. next receives the
 * cursor of the next page, "" when this was the last. */
enum mq_status saga_fares_list(struct db_conn *c, const char *after_us, const char *after_id,
                               int limit, json_t **items, char *next, size_t next_len);

#endif
