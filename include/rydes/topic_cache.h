/* Per-process cache of topics with their subscriptions and compiled filter policies, so a
 * publish neither queries the subscriptions nor compiles a policy. Every change to a topic or
 * its subscriptions, by any process or by hand in psql, is NOTIFYed (sql/004); the long-poll
 * hub hears it and drops the entry (topic_cache_invalidate). The caller picks the entries'
 * lifetime: long while the hub listens, about a second while it does not. Entries are immutable
 * and reference-counted: a publish keeps the set it started with even if it is replaced
 * meanwhile. */
#ifndef RYDES_TOPIC_CACHE_H
#define RYDES_TOPIC_CACHE_H

#include "rydes/mq_hub.h"
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
 * (MQ_NOT_FOUND for an unknown topic). With c NULL only a cached set is returned: NULL with *st
 * MQ_OK when there is none. */
struct topic_set *topic_cache_get(struct topic_cache *tc, struct db_conn *c, const char *name,
                                  int64_t ttl_us, enum mq_status *st);
void topic_set_release(struct topic_set *set);
/* topic_cache_get with the lifetime the hub allows: long while it listens for changes (they
 * invalidate entries at once), a second while it does not. */
struct topic_set *topic_cache_current(struct topic_cache *tc, struct mq_hub *hub, struct db_conn *c,
                                      const char *name, enum mq_status *st);
/* Forgets the entry of name (after this process changed the topic or its subscriptions). */
void topic_cache_forget(struct topic_cache *tc, const char *name);
/* Forgets the entry of topic topic_id, or every entry when topic_id is 0 (hub callback). */
void topic_cache_invalidate(struct topic_cache *tc, int topic_id);

#endif
