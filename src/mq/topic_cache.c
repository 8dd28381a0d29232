/* The topic cache; see include/rydes/topic_cache.h. Direct-mapped by a hash of the name; a
 * slot holds one reference to its set, readers take their own under the mutex. A generation
 * counter keeps a set read before an invalidation from being stored after it. */
#include "rydes/topic_cache.h"

#include "rydes/clock.h"
#include "rydes/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_CACHE_SLOTS      256
#define TOPIC_TTL_LISTENING_US 60000000
#define TOPIC_TTL_DEAF_US      1000000

struct topic_cache {
    pthread_mutex_t mu;
    struct topic_set *slots[TOPIC_CACHE_SLOTS];
    uint64_t generation; /* under mu: bumped by every invalidation */
};

struct topic_cache *topic_cache_create(void)
{
    struct topic_cache *tc = xcalloc(1, sizeof *tc);
    pthread_mutex_init(&tc->mu, NULL);
    return tc;
}

void topic_set_release(struct topic_set *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    mq_subscriptions_free(set->subs, set->n);
    free(set);
}

void topic_cache_free(struct topic_cache *tc)
{
    if (!tc)
        return;
    for (int i = 0; i < TOPIC_CACHE_SLOTS; i++)
        topic_set_release(tc->slots[i]);
    pthread_mutex_destroy(&tc->mu);
    free(tc);
}

static unsigned slot_of(const char *name)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % TOPIC_CACHE_SLOTS;
}

/* A cached set of name younger than ttl_us with a reference for the caller, or NULL; *gen
 * is the generation a set loaded now may be stored under. */
static struct topic_set *lookup(struct topic_cache *tc, const char *name, int64_t ttl_us,
                                uint64_t *gen)
{
    pthread_mutex_lock(&tc->mu);
    struct topic_set *set = tc->slots[slot_of(name)];
    if (set && (strcmp(set->topic.name, name) != 0 || clock_mono_us() - set->loaded_us > ttl_us))
        set = NULL;
    if (set)
        atomic_fetch_add(&set->refs, 1);
    *gen = tc->generation;
    pthread_mutex_unlock(&tc->mu);
    return set;
}

static struct topic_set *load(struct db_conn *c, const char *name, enum mq_status *st)
{
    struct topic_set *set = xcalloc(1, sizeof *set);
    atomic_init(&set->refs, 1);
    set->loaded_us = clock_mono_us();
    *st = mq_topic_get(c, name, &set->topic);
    if (*st == MQ_OK)
        *st = mq_subscriptions_load(c, &set->topic, &set->subs, &set->n);
    if (*st != MQ_OK) {
        free(set);
        return NULL;
    }
    return set;
}

struct topic_set *topic_cache_get(struct topic_cache *tc, struct db_conn *c, const char *name,
                                  int64_t ttl_us, enum mq_status *st)
{
    *st = MQ_OK;
    uint64_t gen;
    struct topic_set *set = lookup(tc, name, ttl_us, &gen);
    if (set || !c || !(set = load(c, name, st)))
        return set;
    struct topic_set *old = NULL;
    pthread_mutex_lock(&tc->mu);
    /* a change announced while we read may predate our snapshot: use the set, do not keep it */
    if (tc->generation == gen) {
        atomic_fetch_add(&set->refs, 1); /* one for the slot, one for the caller */
        struct topic_set **slot = &tc->slots[slot_of(name)];
        old = *slot;
        *slot = set;
    }
    pthread_mutex_unlock(&tc->mu);
    topic_set_release(old);
    return set;
}

void topic_cache_invalidate(struct topic_cache *tc, int topic_id)
{
    struct topic_set *gone[TOPIC_CACHE_SLOTS];
    int n = 0;
    pthread_mutex_lock(&tc->mu);
    tc->generation++;
    for (int i = 0; i < TOPIC_CACHE_SLOTS; i++)
        if (tc->slots[i] && (topic_id == 0 || tc->slots[i]->topic.id == topic_id)) {
            gone[n++] = tc->slots[i];
            tc->slots[i] = NULL;
        }
    pthread_mutex_unlock(&tc->mu);
    for (int i = 0; i < n; i++)
        topic_set_release(gone[i]);
}

void topic_cache_forget(struct topic_cache *tc, const char *name)
{
    pthread_mutex_lock(&tc->mu);
    struct topic_set **slot = &tc->slots[slot_of(name)];
    struct topic_set *old = *slot && strcmp((*slot)->topic.name, name) == 0 ? *slot : NULL;
    if (old)
        *slot = NULL;
    tc->generation++;
    pthread_mutex_unlock(&tc->mu);
    topic_set_release(old);
}

struct topic_set *topic_cache_current(struct topic_cache *tc, struct mq_hub *hub, struct db_conn *c,
                                      const char *name, enum mq_status *st)
{
    int64_t ttl = mq_hub_listening(hub) ? TOPIC_TTL_LISTENING_US : TOPIC_TTL_DEAF_US;
    return topic_cache_get(tc, c, name, ttl, st);
}
