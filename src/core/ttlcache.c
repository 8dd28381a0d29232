/* The TTL cache; see include/rydes/ttlcache.h. Direct-mapped: a key's slot is its FNV-1a hash
 * modulo the slot count, so lookups are O(1) and a colliding key simply replaces the other.
 * Values may be secrets (the AWS key cache holds secret access keys): a slot that is removed,
 * cleared, found expired or freed is wiped, not just marked empty. */
#include "rydes/ttlcache.h"

#include "rydes/clock.h"
#include "rydes/mem.h"

#include <openssl/crypto.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    unsigned char key[TTLCACHE_KEY_MAX];
    size_t keylen; /* 0: empty */
    int64_t expires_us;
    unsigned char *value;
};

struct ttlcache {
    pthread_mutex_t mu;
    size_t nslots, value_size;
    int64_t ttl_us;
    struct slot *slots;
    unsigned char *values;
    uint64_t generation; /* counts removals and clears */
};

struct ttlcache *ttlcache_create(size_t nslots, size_t value_size, int64_t ttl_us)
{
    struct ttlcache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->nslots = nslots;
    c->value_size = value_size;
    c->ttl_us = ttl_us;
    c->slots = xcalloc(nslots, sizeof *c->slots);
    c->values = xcalloc(nslots, value_size);
    for (size_t i = 0; i < nslots; i++)
        c->slots[i].value = c->values + i * value_size;
    return c;
}

void ttlcache_free(struct ttlcache *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    OPENSSL_cleanse(c->values, c->nslots * c->value_size);
    OPENSSL_cleanse(c->slots, c->nslots * sizeof *c->slots);
    free(c->slots);
    free(c->values);
    free(c);
}

static struct slot *slot_of(struct ttlcache *c, const void *key, size_t keylen)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < keylen; i++)
        h = (h ^ ((const unsigned char *)key)[i]) * 1099511628211ULL;
    return &c->slots[h % c->nslots];
}

static bool matches(const struct slot *s, const void *key, size_t keylen)
{
    return s->keylen == keylen && memcmp(s->key, key, keylen) == 0;
}

/* Empties slot s and wipes its key and value. Called with c->mu held. */
static void slot_wipe(struct ttlcache *c, struct slot *s)
{
    OPENSSL_cleanse(s->key, sizeof s->key);
    OPENSSL_cleanse(s->value, c->value_size);
    s->keylen = 0;
    s->expires_us = 0;
}

bool ttlcache_get(struct ttlcache *c, const void *key, size_t keylen, void *value,
                  uint64_t *generation)
{
    if (keylen == 0 || keylen > TTLCACHE_KEY_MAX)
        return false;
    pthread_mutex_lock(&c->mu);
    if (generation)
        *generation = c->generation;
    struct slot *s = slot_of(c, key, keylen);
    bool expired = s->keylen && s->expires_us <= clock_mono_us();
    bool hit = !expired && matches(s, key, keylen);
    if (hit)
        memcpy(value, s->value, c->value_size);
    else if (expired)
        slot_wipe(c, s); /* nothing of it stays in memory */
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void ttlcache_put(struct ttlcache *c, const void *key, size_t keylen, const void *value,
                  uint64_t generation)
{
    if (keylen == 0 || keylen > TTLCACHE_KEY_MAX)
        return;
    pthread_mutex_lock(&c->mu);
    if (generation != c->generation) { /* invalidated since the miss: the value may be stale */
        pthread_mutex_unlock(&c->mu);
        return;
    }
    struct slot *s = slot_of(c, key, keylen);
    memcpy(s->key, key, keylen);
    memset(s->key + keylen, 0, sizeof s->key - keylen); /* no tail of a longer key it replaces */
    s->keylen = keylen;
    s->expires_us = clock_mono_us() + c->ttl_us;
    memcpy(s->value, value, c->value_size);
    pthread_mutex_unlock(&c->mu);
}

/* Wipes key's slot when it holds key; invalidate: and every lookup in progress. */
static void drop(struct ttlcache *c, const void *key, size_t keylen, bool invalidate)
{
    if (keylen == 0 || keylen > TTLCACHE_KEY_MAX)
        return;
    pthread_mutex_lock(&c->mu);
    struct slot *s = slot_of(c, key, keylen);
    if (matches(s, key, keylen))
        slot_wipe(c, s);
    if (invalidate)
        c->generation++;
    pthread_mutex_unlock(&c->mu);
}

void ttlcache_remove(struct ttlcache *c, const void *key, size_t keylen)
{
    drop(c, key, keylen, true);
}

void ttlcache_forget(struct ttlcache *c, const void *key, size_t keylen)
{
    drop(c, key, keylen, false);
}

void ttlcache_clear(struct ttlcache *c)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nslots; i++)
        slot_wipe(c, &c->slots[i]);
    c->generation++;
    pthread_mutex_unlock(&c->mu);
}
