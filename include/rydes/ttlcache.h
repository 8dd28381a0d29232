/* A small fixed-size cache of fixed-size values with a time to live, for data every request
 * reads and that changes rarely (token roles, queue attributes). Thread-safe (one mutex); a full
 * cache evicts by slot (hash collision), never grows. A value read from it may be stale by at
 * most the TTL, unless the process invalidates it itself. Values may be secrets: a slot removed,
 * cleared, replaced, found expired or freed is wiped.
 *
 * A miss hands out the cache's generation; the value read from the database after it is put
 * with that generation and stored only if nothing was removed or cleared meanwhile: a lookup
 * that read a token just before its deletion cannot cache it after the deletion cleared it. */
#ifndef RYDES_TTLCACHE_H
#define RYDES_TTLCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TTLCACHE_KEY_MAX 96

struct ttlcache;

/* Creates a cache of nslots values of value_size bytes living ttl_us. Free with ttlcache_free. */
struct ttlcache *ttlcache_create(size_t nslots, size_t value_size, int64_t ttl_us);
void ttlcache_free(struct ttlcache *c);
/* Copies the live value of key into value; false when absent or expired. *generation (when not
 * NULL) is set, on a hit too, for the ttlcache_put that follows. */
bool ttlcache_get(struct ttlcache *c, const void *key, size_t keylen, void *value,
                  uint64_t *generation);
/* Stores value for key, unless something was removed or cleared since generation was read. */
void ttlcache_put(struct ttlcache *c, const void *key, size_t keylen, const void *value,
                  uint64_t generation);
void ttlcache_remove(struct ttlcache *c, const void *key, size_t keylen);
/* Removes key without invalidating lookups in progress (their puts still land): for a cache
 * whose stale values do no harm. */
void ttlcache_forget(struct ttlcache *c, const void *key, size_t keylen);
void ttlcache_clear(struct ttlcache *c);

#endif
