/* Idempotency-Key of the Wild Rydes POSTs (rides, prebookings): a key records the canonical hash
 * of the request that used it and the resource that request made, so that a retry with the same
 * key and request finds that resource instead of making another, and a reuse of the key with
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

/* Inside the caller's transaction: records key of scope ("rides", "prebookings") as used by the
 * request of hash to make resource_id. *claimed is false when the key was taken already (by a
 * committed or a concurrent transaction, which this one waits for); the transaction may go on. */
enum mq_status idempotency_claim(struct db_conn *c, const char *scope, const char *key,
                                 const char *hash, const char *resource_id, bool *claimed);

/* After a claim found key taken: *same is true when the same request (hash) used it, with id the
 * resource it made; false when another request did, or when the key was swept meanwhile. */
enum mq_status idempotency_find(struct db_conn *c, const char *scope, const char *key,
                                const char *hash, char id[IDS_UUID_LEN], bool *same);

/* The key of a request that may be replayed: key NULL for none (then scope, hash and
 * resource_id are unused). */
struct idempotency {
    const char *scope, *key, *hash, *resource_id;
};

/* Runs work(c, arg) behind k: in one transaction with the claim of k->key, or as it is (in
 * autocommit, a single statement) when there is no key and in_tx is false. *claimed is false,
 * and nothing is done, when the key was taken already: find what it made with
 * idempotency_find. Any failure rolls everything back. */
enum mq_status idempotency_run(struct db_conn *c, const struct idempotency *k, bool in_tx,
                               enum mq_status (*work)(struct db_conn *c, void *arg), void *arg,
                               bool *claimed);

#endif
