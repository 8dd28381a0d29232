/* Per-queue, per-topic and per-subscription counters of this process; see
 * include/rydes/mq_counters.h. Open addressing with linear probing over a power-of-two table,
 * at most PROBES slots from an id's home: ids are positive, 0 marks a slot never used and
 * TOMBSTONE one whose id was retired (lookups probe past it, claims reuse it). Counting and
 * lookups are lock-free; claims and retirements take the table's mutex, so an id is never
 * claimed twice and a retirement never races a claim. */
#include "rydes/mq_counters.h"

#include "rydes/clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define SLOTS      4096 /* per table: queues, topics and subscriptions each */
#define PROBES     256  /* an id lives within this many slots of its home, or is not counted */
#define MAX_VALUES 5
#define TOMBSTONE  (-1)

struct slot {
    _Atomic int id;
    _Atomic int64_t claimed_us; /* clock_mono_us when id claimed the slot */
    _Atomic uint64_t v[MAX_VALUES];
};

struct table {
    pthread_mutex_t claim_mu;
    struct slot slots[SLOTS];
};

_Static_assert(MQC_QUEUE_N <= MAX_VALUES && MQC_SUBSCRIPTION_N <= MAX_VALUES, "counter slots");

static struct table tables[MQC_TABLES_N] = {
    [MQC_QUEUES] = {.claim_mu = PTHREAD_MUTEX_INITIALIZER},
    [MQC_TOPICS] = {.claim_mu = PTHREAD_MUTEX_INITIALIZER},
    [MQC_SUBSCRIPTIONS] = {.claim_mu = PTHREAD_MUTEX_INITIALIZER},
};
static _Atomic uint64_t overflow;

static struct slot *slot_at(struct table *t, int id, unsigned i)
{
    return &t->slots[((unsigned)id * 2654435761u + i) & (SLOTS - 1)];
}

/* The slot of id in t, or NULL. */
static struct slot *lookup(struct table *t, int id)
{
    for (unsigned i = 0; i < PROBES; i++) {
        struct slot *s = slot_at(t, id, i);
        int have = atomic_load_explicit(&s->id, memory_order_acquire);
        if (have == id)
            return s;
        if (have == 0)
            return NULL;
    }
    return NULL;
}

/* The slot of id, claimed (zeroed) when it has none; NULL when its probe range is full. */
static struct slot *claim(struct table *t, int id)
{
    pthread_mutex_lock(&t->claim_mu);
    struct slot *s = lookup(t, id);
    for (unsigned i = 0; !s && i < PROBES; i++) {
        struct slot *c = slot_at(t, id, i);
        int have = atomic_load_explicit(&c->id, memory_order_relaxed);
        if (have != 0 && have != TOMBSTONE)
            continue;
        for (int k = 0; k < MAX_VALUES; k++)
            atomic_store_explicit(&c->v[k], 0, memory_order_relaxed);
        atomic_store_explicit(&c->claimed_us, clock_mono_us(), memory_order_relaxed);
        atomic_store_explicit(&c->id, id, memory_order_release);
        s = c;
    }
    pthread_mutex_unlock(&t->claim_mu);
    return s;
}

static void add(struct table *t, int id, int which, uint64_t n)
{
    if (id <= 0 || n == 0)
        return;
    struct slot *s = lookup(t, id);
    if (!s)
        s = claim(t, id);
    if (s)
        atomic_fetch_add_explicit(&s->v[which], n, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&overflow, n, memory_order_relaxed);
}

static uint64_t get(struct table *t, int id, int which)
{
    struct slot *s = id > 0 ? lookup(t, id) : NULL;
    return s ? atomic_load_explicit(&s->v[which], memory_order_relaxed) : 0;
}

void mq_count_queue(int queue_id, enum mq_queue_counter which, uint64_t n)
{
    add(&tables[MQC_QUEUES], queue_id, which, n);
}

void mq_count_subscription(int subscription_id, enum mq_subscription_counter which, uint64_t n)
{
    add(&tables[MQC_SUBSCRIPTIONS], subscription_id, which, n);
}

void mq_count_topic(int topic_id, uint64_t publishes)
{
    add(&tables[MQC_TOPICS], topic_id, 0, publishes);
}

uint64_t mq_queue_count(int queue_id, enum mq_queue_counter which)
{
    return get(&tables[MQC_QUEUES], queue_id, which);
}

uint64_t mq_subscription_count(int subscription_id, enum mq_subscription_counter which)
{
    return get(&tables[MQC_SUBSCRIPTIONS], subscription_id, which);
}

uint64_t mq_topic_count(int topic_id)
{
    return get(&tables[MQC_TOPICS], topic_id, 0);
}

uint64_t mq_counters_overflow(void)
{
    return atomic_load(&overflow);
}

static int compare_ids(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int mq_counters_retire(enum mq_counter_table which, int *live, int n, int64_t listed_at_us)
{
    struct table *t = &tables[which];
    qsort(live, (size_t)n, sizeof *live, compare_ids);
    int retired = 0;
    pthread_mutex_lock(&t->claim_mu);
    for (unsigned i = 0; i < SLOTS; i++) {
        struct slot *s = &t->slots[i];
        int id = atomic_load_explicit(&s->id, memory_order_relaxed);
        if (id <= 0 || atomic_load_explicit(&s->claimed_us, memory_order_relaxed) >= listed_at_us ||
            bsearch(&id, live, (size_t)n, sizeof *live, compare_ids))
            continue;
        atomic_store_explicit(&s->id, TOMBSTONE, memory_order_release);
        retired++;
    }
    pthread_mutex_unlock(&t->claim_mu);
    return retired;
}
