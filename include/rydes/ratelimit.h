/* Rate limiting: a token bucket per key (the SHA-256 of a bearer token, a client's address),
 * refilled at rate tokens per second up to burst. Direct-mapped into a fixed table under striped
 * locks: keys that land on one slot share its bucket, so a collision can make a limit stricter but
 * never lifts it (a fresh bucket per takeover let two colliding tokens, used in turn, go
 * unlimited; with 4096 slots, 76 tokens collide with even odds). Keys are told apart by their
 * first 64 bytes. Thread-safe. */
#ifndef RYDES_RATELIMIT_H
#define RYDES_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* slots rounds up to a power of two; the keys' hash is seeded at random, so which keys share a
 * slot cannot be chosen from outside. Free with ratelimit_free. */
struct ratelimit *ratelimit_create(size_t slots);
/* The same with a given seed (tests: keys whose slots are known). */
struct ratelimit *ratelimit_create_seeded(size_t slots, uint64_t seed);
void ratelimit_free(struct ratelimit *rl);

/* Takes one token from key's bucket (rate per second, at most burst, both > 0) at now_us
 * (monotonic). False when it is empty; *retry_after_s then says when one will be there. */
bool ratelimit_take(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                    double burst, int64_t now_us, int *retry_after_s);
/* Would ratelimit_take succeed now? Takes nothing (*retry_after_s as ratelimit_take's). */
bool ratelimit_holds(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                     double burst, int64_t now_us, int *retry_after_s);
/* Puts back one token ratelimit_take took (key's bucket holds at most burst). */
void ratelimit_give(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                    double burst, int64_t now_us);

#endif
