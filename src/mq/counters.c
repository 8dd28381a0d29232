/* Per-queue, per-topic and per-subscription counters of this process; see
 * include/rydes/mq_counters.h. Open addressing with linear probing over a power-of-two table;
 * ids are positive, 0 marks a free slot. */
#include "rydes/mq_counters.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define SLOTS      4096 /* per table: queues, topics and subscriptions each */
#define MAX_VALUES 5

struct slot {
    _Atomic int id;
    _Atomic uint64_t v[MAX_VALUES];
};

struct table {
    struct slot slots[SLOTS];
};

_Static_assert(MQC_QUEUE_N <= MAX_VALUES && MQC_SUBSCRIPTION_N <= MAX_VALUES, "counter slots");

static struct table queues, topics, subscriptions;
static _Atomic uint64_t overflow;

/* The slot of id in t, claimed when claim and it has none; NULL when absent (or t is full). */
static struct slot *find(struct table *t, int id, bool claim)
{
    unsigned h = (unsigned)id * 2654435761u;
    for (unsigned i = 0; i < SLOTS; i++) {
        struct slot *s = &t->slots[(h + i) & (SLOTS - 1)];
        int have = atomic_load_explicit(&s->id, memory_order_acquire);
        if (have == id)
            return s;
        if (have != 0)
            continue;
        if (!claim)
            return NULL;
        int expected = 0;
        if (atomic_compare_exchange_strong(&s->id, &expected, id) || expected == id)
            return s;
    }
    return NULL;
}

static void add(struct table *t, int id, int which, uint64_t n)
{
    if (id <= 0 || n == 0)
        return;
    struct slot *s = find(t, id, true);
    if (s)
        atomic_fetch_add_explicit(&s->v[which], n, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&overflow, n, memory_order_relaxed);
}

static uint64_t get(struct table *t, int id, int which)
{
    struct slot *s = id > 0 ? find(t, id, false) : NULL;
    return s ? atomic_load_explicit(&s->v[which], memory_order_relaxed) : 0;
}

void mq_count_queue(int queue_id, enum mq_queue_counter which, uint64_t n)
{
    add(&queues, queue_id, which, n);
}

void mq_count_subscription(int subscription_id, enum mq_subscription_counter which, uint64_t n)
{
    add(&subscriptions, subscription_id, which, n);
}

void mq_count_topic(int topic_id, uint64_t publishes)
{
    add(&topics, topic_id, 0, publishes);
}

uint64_t mq_queue_count(int queue_id, enum mq_queue_counter which)
{
    return get(&queues, queue_id, which);
}

uint64_t mq_subscription_count(int subscription_id, enum mq_subscription_counter which)
{
    return get(&subscriptions, subscription_id, which);
}

uint64_t mq_topic_count(int topic_id)
{
    return get(&topics, topic_id, 0);
}

uint64_t mq_counters_overflow(void)
{
    return atomic_load(&overflow);
}
