/* Per-process cache of topics with their subscriptions and compiled filter policies, so a
 * publish neither queries the subscriptions nor compiles a policy. Entries live one second
 * (a change made by another process is seen within that), and this process drops an entry as
 * soon as it changes the topic or its subscriptions itself. Entries are immutable and
 * reference-counted: a publish keeps the set it started with even if it is replaced meanwhile. */
#ifndef RYDES_TOPIC_CACHE_H
#define RYDES_TOPIC_CACHE_H

#include "rydes/topics.h"

#include <stdatomic.h>

struct topic_set {
    atomic_int refs;
    struct mq_topic topic;
    struct mq_subscription *subs;
    int n;
    int64_t loaded_us; /* monotonic */
};

struct topic_cache;

struct topic_cache *topic_cache_create(void);
void topic_cache_free(struct topic_cache *tc);
/* The topic named name with its subscriptions, from the cache or loaded on c. Returns a
 * reference the caller gives back with topic_set_release; NULL with *st set on failure
 * (MQ_NOT_FOUND for an unknown topic). */
struct topic_set *topic_cache_get(struct topic_cache *tc, struct db_conn *c, const char *name,
                                  enum mq_status *st);
void topic_set_release(struct topic_set *set);
/* Forgets the entry of name (after this process changed the topic or its subscriptions). */
void topic_cache_forget(struct topic_cache *tc, const char *name);

#endif
