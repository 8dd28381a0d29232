/* The combiner; see include/rydes/mq_combiner.h. Each kind of operation has a lane: the list of
 * operations submitted, a thread, and what is particular to the kind (which waiting operations
 * may share a statement, and the statement). Everything else (taking, stopping, failing what
 * cannot get a connection, retrying one by one) is the same for every kind. */
#include "rydes/mq_combiner.h"

#include "rydes/clock.h"
#include "rydes/mem.h"
#include "rydes/topics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct lane {
    struct mq_combiner *cb;
    const struct mq_combiner_kind *kind; /* NULL: this lane was not started */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mq_combined *head, *tail; /* submitted, oldest first */
    bool busy; /* a statement is in flight (the lane's, or one run alone: mq_combiner_alone) */
    uint64_t busy_key; /* its operations' key */
    int64_t busy_since_us;
    bool stopping;
    int64_t give_up_us; /* once stopping: operations still waiting after this fail */
    unsigned long long statements, operations; /* under mu */
    pthread_t thread;
};

struct mq_combiner {
    struct db_pool *pool;
    int acquire_timeout_ms;
    int64_t stall_us; /* a statement older than this takes no newcomers */
    atomic_bool stopped;
    struct lane lanes[MQ_COMBINED_KINDS];
};

/* ---- the kinds ---- */

static int weight_one(const struct mq_combined *o)
{
    (void)o;
    return 1;
}

static uint64_t key_none(const struct mq_combined *o)
{
    (void)o;
    return 0;
}

static enum mq_status run_sends(struct db_conn *c, struct mq_combined **list, int n,
                                unsigned long long *operations)
{
    struct mq_send_row rows[MQ_MAX_ROWS] = {0};
    for (int i = 0; i < n; i++) {
        struct mq_combined_send *s = (struct mq_combined_send *)list[i];
        rows[i] = (struct mq_send_row){&s->q, s->e, &s->result};
    }
    enum mq_status st = mq_send_rows(c, rows, n, 0);
    for (int i = 0; st == MQ_OK && i < n; i++)
        list[i]->status = MQ_OK;
    *operations = st == MQ_OK ? (unsigned long long)n : 0;
    return st;
}

static int weight_receive(const struct mq_combined *o)
{
    return ((const struct mq_combined_receive *)o)->max;
}

static uint64_t key_receive(const struct mq_combined *o)
{
    const struct mq_combined_receive *r = (const void *)o;
    return (uint64_t)(uint32_t)r->q.id << 32 | (uint32_t)r->visibility;
}

/* Deals the claimed messages (in id order) out to the receives, each up to its max; the array
 * itself is freed, the messages move. A receive left with none while the claim moved exhausted
 * messages to the dead-letter queue (moved) may have missed messages whose places those took:
 * it is told so. */
static void deal(struct mq_combined **list, int n, struct mq_message *msgs, int count, int moved)
{
    int at = 0;
    for (int i = 0; i < n; i++) {
        struct mq_combined_receive *r = (struct mq_combined_receive *)list[i];
        int k = count - at < r->max ? count - at : r->max;
        r->msgs = xcalloc((size_t)(k ? k : 1), sizeof *r->msgs);
        if (k)
            memcpy(r->msgs, msgs + at, (size_t)k * sizeof *msgs);
        r->count = k;
        r->more = k == 0 && moved > 0;
        r->o.status = MQ_OK;
        at += k;
    }
    free(msgs);
}

static enum mq_status run_receives(struct db_conn *c, struct mq_combined **list, int n,
                                   unsigned long long *operations)
{
    const struct mq_combined_receive *first = (const struct mq_combined_receive *)list[0];
    int total = 0;
    for (int i = 0; i < n; i++)
        total += weight_receive(list[i]);
    struct mq_message *msgs;
    int count, moved;
    enum mq_status st =
        mq_receive_moving(c, &first->q, total, first->visibility, &msgs, &count, &moved);
    if (st != MQ_OK)
        return st;
    deal(list, n, msgs, count, moved);
    *operations = (unsigned long long)count;
    return MQ_OK;
}

static enum mq_status run_deletes(struct db_conn *c, struct mq_combined **list, int n,
                                  unsigned long long *operations)
{
    struct mq_delete_row rows[MQ_MAX_ROWS] = {0};
    enum mq_status out[MQ_MAX_ROWS];
    for (int i = 0; i < n; i++) {
        struct mq_combined_delete *d = (struct mq_combined_delete *)list[i];
        rows[i] = (struct mq_delete_row){&d->q, d->receipt};
    }
    enum mq_status st = mq_delete_rows(c, rows, n, out);
    /* a lost connection after the shared DELETE committed: what it deleted stays answered
     * (204), not failed with the rest (one by one could not be tried: the connection is gone) */
    bool partial = st != MQ_OK && db_conn_lost(c);
    *operations = 0;
    for (int i = 0; (st == MQ_OK || partial) && i < n; i++) {
        list[i]->status = out[i];
        *operations += out[i] == MQ_OK;
    }
    return partial ? MQ_OK : st;
}

static enum mq_status run_publishes(struct db_conn *c, struct mq_combined **list, int n,
                                    unsigned long long *operations)
{
    const struct mq_publish_plan *plans[MQ_MAX_ROWS] = {0};
    int deliveries[MQ_MAX_ROWS] = {0};
    for (int i = 0; i < n; i++)
        plans[i] = ((struct mq_combined_publish *)list[i])->plan;
    enum mq_status st = mq_publish_plans(c, plans, n, deliveries);
    for (int i = 0; st == MQ_OK && i < n; i++) {
        ((struct mq_combined_publish *)list[i])->deliveries = deliveries[i];
        list[i]->status = MQ_OK;
    }
    *operations = st == MQ_OK ? (unsigned long long)n : 0;
    return st;
}

static const struct mq_combiner_kind kinds[MQ_COMBINED_UPPER] = {
    [MQ_COMBINED_SEND] = {weight_one, key_none, run_sends, 0},
    [MQ_COMBINED_RECEIVE] = {weight_receive, key_receive, run_receives, MQ_COMBINER_QUEUED},
    [MQ_COMBINED_DELETE] = {weight_one, key_none, run_deletes, 0},
    [MQ_COMBINED_PUBLISH] = {weight_one, key_none, run_publishes, 0},
};

/* ---- the lanes ---- */

static void finish(struct mq_combined *o, enum mq_status st)
{
    o->status = st;
    o->done(o); /* o may be gone after this */
}

static void count(struct lane *l, unsigned long long operations)
{
    pthread_mutex_lock(&l->mu);
    l->statements++;
    l->operations += operations;
    pthread_mutex_unlock(&l->mu);
}

/* Fails every operation still submitted with st: they would wait for what the last statement
 * could not get. */
static void fail_waiting(struct lane *l, enum mq_status st)
{
    pthread_mutex_lock(&l->mu);
    struct mq_combined *o = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (o) {
        struct mq_combined *next = o->next;
        finish(o, st);
        o = next;
    }
}

/* Runs each operation alone: a combined statement failed and one of them may be the cause (a
 * refused row, a deadlock, a timeout). A lost connection fails the rest without trying them. */
static void run_each(struct lane *l, struct db_conn *c, struct mq_combined **list, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned long long done = 0;
        enum mq_status st = MQ_UNAVAILABLE; /* not tried: the connection is gone */
        if (!db_conn_lost(c)) {
            st = l->kind->run(c, &list[i], 1, &done);
            count(l, done);
        }
        finish(list[i], st == MQ_OK ? list[i]->status : st);
    }
}

/* How long the next acquire may wait: the pool's timeout, or what is left before a stopping
 * lane gives up (0: give up now). */
static int acquire_budget_ms(struct lane *l)
{
    pthread_mutex_lock(&l->mu);
    int64_t left = l->stopping ? (l->give_up_us - clock_mono_us()) / 1000 : INT32_MAX;
    pthread_mutex_unlock(&l->mu);
    if (left <= 0)
        return 0;
    return left < l->cb->acquire_timeout_ms ? (int)left : l->cb->acquire_timeout_ms;
}

/* Runs list[0..n) in one statement; every operation is finished when this returns. */
static void run_together(struct lane *l, struct mq_combined **list, int n)
{
    enum db_acquire_error why = DB_ACQUIRE_UNREACHABLE;
    int budget = acquire_budget_ms(l);
    struct db_conn *c = budget > 0 ? db_pool_acquire(l->cb->pool, budget, &why) : NULL;
    if (!c) {
        enum mq_status st = why == DB_ACQUIRE_EXHAUSTED ? MQ_BUSY : MQ_UNAVAILABLE;
        for (int i = 0; i < n; i++)
            finish(list[i], st);
        fail_waiting(l, st);
        return;
    }
    unsigned long long done = 0;
    enum mq_status st = l->kind->run(c, list, n, &done);
    count(l, done);
    if (st == MQ_OK)
        for (int i = 0; i < n; i++)
            finish(list[i], list[i]->status);
    else if (db_conn_lost(c) || n == 1)
        for (int i = 0; i < n; i++)
            finish(list[i], st);
    else
        run_each(l, c, list, n);
    db_pool_release(l->cb->pool, c);
}

/* Takes the oldest submitted operation and those that may join it, up to MQ_MAX_ROWS of weight
 * in all; call with mu held and the list not empty. */
static int take(struct lane *l, struct mq_combined **list)
{
    struct mq_combined *first = l->head, *kept = NULL; /* kept: the last one left so far */
    int n = 0, room = MQ_MAX_ROWS;
    for (struct mq_combined **at = &l->head; *at && n < MQ_MAX_ROWS && room > 0;) {
        struct mq_combined *o = *at;
        int w = l->kind->weight(o);
        if (o != first && (w > room || l->kind->key(o) != l->kind->key(first))) {
            kept = o;
            at = &o->next;
            continue;
        }
        *at = o->next; /* unlink */
        if (l->tail == o)
            l->tail = kept;
        list[n++] = o;
        room -= w;
    }
    return n;
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    struct mq_combined *list[MQ_MAX_ROWS];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while ((!l->head || l->busy) && !l->stopping)
            pthread_cond_wait(&l->cv, &l->mu);
        if (!l->head)
            break; /* stopping, and everything submitted is done */
        int n = take(l, list);
        l->busy = true;
        l->busy_key = l->kind->key(list[0]);
        l->busy_since_us = clock_mono_us();
        pthread_mutex_unlock(&l->mu);
        run_together(l, list, n);
        pthread_mutex_lock(&l->mu);
        l->busy = false;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Will o be in a statement soon if it joins the lane? Only if the lane is idle, or its statement
 * is young, one of o's key is in flight or waits, and, for a kind that bounds it, what waits
 * with o's key, o included, fills at most kind->queued statements (counted as if each statement
 * took operations in order until the next did not fit: take packs at least as tightly).
 * Otherwise o runs on its own, in parallel: no receive waits for another queue's claim,
 * nothing waits behind a statement stuck on a lock, and receives of 10, which go one per
 * statement, do not queue up behind each other. Call with mu held. */
static bool worth_waiting(struct lane *l, const struct mq_combined *o)
{
    if (!l->busy)
        return true;
    if (clock_mono_us() - l->busy_since_us > l->cb->stall_us)
        return false;
    uint64_t key = l->kind->key(o);
    if (!l->kind->queued && key == l->busy_key)
        return true;
    bool joins = key == l->busy_key;
    int statements = 1, room = MQ_MAX_ROWS;
    for (const struct mq_combined *w = l->head;; w = w->next) {
        if (w && l->kind->key(w) != key)
            continue;
        if (w && !l->kind->queued)
            return true; /* one of its key waits: o joins it, however many wait */
        int weight = l->kind->weight(w ? w : o);
        if (weight > room) {
            statements++;
            room = MQ_MAX_ROWS;
        }
        room -= weight;
        if (!w)
            break;
        joins = true;
    }
    return joins && (!l->kind->queued || statements <= l->kind->queued);
}

static bool submit(struct lane *l, struct mq_combined *o)
{
    if (!l->kind)
        return false;
    o->next = NULL;
    pthread_mutex_lock(&l->mu);
    bool open = !l->stopping && worth_waiting(l, o);
    if (open) {
        if (l->tail)
            l->tail->next = o;
        else
            l->head = o;
        l->tail = o;
        pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return open;
}

/* ---- the interface ---- */

struct mq_combiner *mq_combiner_start(struct db_pool *pool, int acquire_timeout_ms, int stall_ms,
                                      const struct mq_combiner_kind *upper)
{
    struct mq_combiner *cb = xcalloc(1, sizeof *cb);
    cb->pool = pool;
    cb->acquire_timeout_ms = acquire_timeout_ms;
    cb->stall_us = (int64_t)stall_ms * 1000;
    for (int k = 0; k < MQ_COMBINED_KINDS; k++) {
        struct lane *l = &cb->lanes[k];
        l->cb = cb;
        l->kind = k == MQ_COMBINED_UPPER ? upper : &kinds[k];
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (l->kind)
            xthread_create(&l->thread, lane_main, l);
    }
    return cb;
}

bool mq_combiner_send(struct mq_combiner *cb, struct mq_combined_send *s)
{
    return submit(&cb->lanes[MQ_COMBINED_SEND], &s->o);
}

bool mq_combiner_receive(struct mq_combiner *cb, struct mq_combined_receive *r)
{
    return submit(&cb->lanes[MQ_COMBINED_RECEIVE], &r->o);
}

bool mq_combiner_delete(struct mq_combiner *cb, struct mq_combined_delete *d)
{
    return submit(&cb->lanes[MQ_COMBINED_DELETE], &d->o);
}

bool mq_combiner_publish(struct mq_combiner *cb, struct mq_combined_publish *p)
{
    return submit(&cb->lanes[MQ_COMBINED_PUBLISH], &p->o);
}

bool mq_combiner_upper(struct mq_combiner *cb, struct mq_combined *o)
{
    return submit(&cb->lanes[MQ_COMBINED_UPPER], o);
}

/* Nothing in flight or waiting, and not stopping; call with mu held. */
static bool lane_idle(const struct lane *l)
{
    return !l->stopping && !l->busy && !l->head;
}

bool mq_combiner_alone(struct mq_combiner *cb, enum mq_combined_kind kind)
{
    struct lane *l = &cb->lanes[kind];
    if (!l->kind)
        return false;
    pthread_mutex_lock(&l->mu);
    bool alone = lane_idle(l);
    if (alone) { /* its statement is the lane's in flight: the next ones gather behind it */
        l->busy = true;
        l->busy_key = 0;
        l->busy_since_us = clock_mono_us();
    }
    pthread_mutex_unlock(&l->mu);
    return alone;
}

bool mq_combiner_idle(struct mq_combiner *cb, enum mq_combined_kind kind)
{
    struct lane *l = &cb->lanes[kind];
    if (!l->kind)
        return false;
    pthread_mutex_lock(&l->mu);
    bool idle = lane_idle(l);
    pthread_mutex_unlock(&l->mu);
    return idle;
}

void mq_combiner_alone_end(struct mq_combiner *cb, enum mq_combined_kind kind)
{
    struct lane *l = &cb->lanes[kind];
    pthread_mutex_lock(&l->mu);
    l->busy = false;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void mq_combiner_stop(struct mq_combiner *cb, int timeout_ms)
{
    if (!cb || atomic_exchange(&cb->stopped, true))
        return;
    int64_t give_up_us = clock_mono_us() + (int64_t)timeout_ms * 1000;
    for (int k = 0; k < MQ_COMBINED_KINDS; k++) {
        struct lane *l = &cb->lanes[k];
        pthread_mutex_lock(&l->mu);
        l->give_up_us = give_up_us;
        l->stopping = true;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    for (int k = 0; k < MQ_COMBINED_KINDS; k++)
        if (cb->lanes[k].kind)
            pthread_join(cb->lanes[k].thread, NULL);
}

void mq_combiner_free(struct mq_combiner *cb)
{
    if (!cb)
        return;
    mq_combiner_stop(cb, 0);
    for (int k = 0; k < MQ_COMBINED_KINDS; k++) {
        pthread_cond_destroy(&cb->lanes[k].cv);
        pthread_mutex_destroy(&cb->lanes[k].mu);
    }
    free(cb);
}

void mq_combiner_counts(struct mq_combiner *cb, enum mq_combined_kind kind,
                        unsigned long long *statements, unsigned long long *operations)
{
    struct lane *l = &cb->lanes[kind];
    pthread_mutex_lock(&l->mu);
    *statements = l->statements;
    *operations = l->operations;
    pthread_mutex_unlock(&l->mu);
}
