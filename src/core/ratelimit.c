/* Token buckets; see include/rydes/ratelimit.h. */
#include "rydes/ratelimit.h"

#include "rydes/clock.h"
#include "rydes/mem.h"

#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>

#define RL_KEY_MAX 64
#define RL_STRIPES 64

struct bucket {
    bool used; /* false: no key has taken from it yet */
    double tokens;
    int64_t at_us;
};

struct ratelimit {
    size_t mask;
    uint64_t seed; /* random per table: which keys share a slot cannot be chosen from outside */
    struct bucket *slots;
    pthread_mutex_t stripes[RL_STRIPES];
};

struct ratelimit *ratelimit_create_seeded(size_t slots, uint64_t seed)
{
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    struct ratelimit *rl = xcalloc(1, sizeof *rl);
    rl->mask = n - 1;
    rl->seed = seed;
    rl->slots = xcalloc(n, sizeof *rl->slots);
    for (int i = 0; i < RL_STRIPES; i++)
        pthread_mutex_init(&rl->stripes[i], NULL);
    return rl;
}

struct ratelimit *ratelimit_create(size_t slots)
{
    uint64_t seed;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) != 1) /* OpenSSL's CSPRNG failed */
        seed = (uint64_t)clock_mono_us() * 0x9e3779b97f4a7c15ULL;
    return ratelimit_create_seeded(slots, seed);
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < RL_STRIPES; i++)
        pthread_mutex_destroy(&rl->stripes[i]);
    free(rl->slots);
    free(rl);
}

static size_t slot_of(const struct ratelimit *rl, const unsigned char *key, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ rl->seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 32));
}

/* Refills key's bucket to now_us, takes one token from it when it holds one (cost 1), leaves it
 * (cost 0) or gives one back, up to burst (cost -1), and returns what it held before. */
static double bucket_use(struct ratelimit *rl, const unsigned char *key, size_t key_len,
                         double rate, double burst, int64_t now_us, double cost)
{
    if (key_len > RL_KEY_MAX)
        key_len = RL_KEY_MAX;
    size_t i = slot_of(rl, key, key_len) & rl->mask;
    pthread_mutex_t *mu = &rl->stripes[i % RL_STRIPES];
    pthread_mutex_lock(mu);
    struct bucket *b = &rl->slots[i];
    if (!b->used) {
        b->used = true;
        b->tokens = burst;
        b->at_us = now_us;
    }
    /* callers read the clock before the lock: a later reading may come first, and the bucket's
     * time must not go back (the interval between would be refilled twice) */
    if (now_us > b->at_us) {
        b->tokens = fmin(burst, b->tokens + (double)(now_us - b->at_us) / 1e6 * rate);
        b->at_us = now_us;
    }
    double level = b->tokens;
    if (cost < 0)
        b->tokens = fmin(burst, b->tokens - cost);
    else if (level >= 1.0)
        b->tokens -= cost;
    pthread_mutex_unlock(mu);
    return level;
}

/* Whether level holds a token; if not, *retry_after_s says when one will be there. */
static bool holds_one(double level, double rate, int *retry_after_s)
{
    if (level >= 1.0)
        return true;
    *retry_after_s = (int)ceil((1.0 - level) / rate);
    return false;
}

bool ratelimit_take(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                    double burst, int64_t now_us, int *retry_after_s)
{
    return holds_one(bucket_use(rl, key, key_len, rate, burst, now_us, 1.0), rate, retry_after_s);
}

bool ratelimit_holds(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                     double burst, int64_t now_us, int *retry_after_s)
{
    return holds_one(bucket_use(rl, key, key_len, rate, burst, now_us, 0.0), rate, retry_after_s);
}

void ratelimit_give(struct ratelimit *rl, const unsigned char *key, size_t key_len, double rate,
                    double burst, int64_t now_us)
{
    bucket_use(rl, key, key_len, rate, burst, now_us, -1.0);
}
