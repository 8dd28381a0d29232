/* Idempotency-Key of the Wild Rydes POSTs (rides, prebookings, RFQs): a key records the canonical
 * hash of the request that used it and the resource that request made, so that a retry with the
 * same key and request finds that resource instead of making another, and a reuse of the key with
 * another request is told apart. Keys live in table idempotency_keys (sql/005), scoped by the
 * kind of resource, and are swept after 48 hours. */
#ifndef RYDES_IDEMPOTENCY_H
#define RYDES_IDEMPOTENCY_H

#include "rydes/db.h"
#include "rydes/ids.h"
#include "rydes/mq.h"

#include <jansson.h>
#include <stdbool.h>

#define IDEMPOTENCY_KEY_MAX  255 /* visible ASCII characters */
#define IDEMPOTENCY_HASH_LEN 65  /* hex SHA-256 and the NUL */

/* Is key a valid Idempotency-Key: 1..IDEMPOTENCY_KEY_MAX visible ASCII characters? */
bool idempotency_key_valid(const char *key);

/* The hex SHA-256 of canon (the validated request, its members in a fixed form) as compact JSON
 * with sorted keys: the same request sent with other spacing, member order or spellings has the
 * same hash. canon is borrowed. */
void idempotency_hash(const json_t *canon, char out[IDEMPOTENCY_HASH_LEN]);

/* What a key was used for. */
enum idempotency_match {
    IDEMPOTENCY_UNKNOWN, /* not used (or swept: after a claim found it taken, take it as OTHER) */
    IDEMPOTENCY_SAME,    /* by the same request (hash): id is the resource it made */
    IDEMPOTENCY_OTHER,   /* by another request */
};

/* Looks key of scope up for a request of hash into *m (and id when IDEMPOTENCY_SAME). */
enum mq_status idempotency_find(struct db_conn *c, const char *scope, const char *key,
                                const char *hash, char id[IDS_UUID_LEN], enum idempotency_match *m);

/* The key of a request that may be replayed: key NULL for none (then scope, hash and
 * resource_id are unused). */
struct idempotency {
    const char *scope, *key, *hash, *resource_id;
};

/* Runs work(c, arg) in one transaction with the claim of k->key (when there is one). *claimed
 * is false, and nothing is done, when the key was taken already: find what it made with
 * idempotency_find. Any failure rolls everything back. (A lean publish behind a key is one
 * statement instead, so that it is counted and its fan-out woken after its commit.) */
enum mq_status idempotency_run(struct db_conn *c, const struct idempotency *k,
                               enum mq_status (*work)(struct db_conn *c, void *arg), void *arg,
                               bool *claimed);

#endif
