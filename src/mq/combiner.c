/* The send combiner; see include/rydes/mq_combiner.h. */
#include "rydes/mq_combiner.h"

#include "rydes/clock.h"
#include "rydes/mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

struct mq_combiner {
    struct db_pool *pool;
    int acquire_timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mq_combined_send *head, *tail; /* submitted, oldest first */
    bool stopping;
    int64_t give_up_us; /* once stopping: sends still waiting after this fail unsent */
    unsigned long long statements, messages; /* under mu */
    pthread_t thread;
};

static void finish(struct mq_combined_send *s, enum mq_status st)
{
    s->status = st;
    s->done(s); /* s may be gone after this */
}

static void count(struct mq_combiner *cb, int statements, int stored)
{
    pthread_mutex_lock(&cb->mu);
    cb->statements += (unsigned long long)statements;
    cb->messages += (unsigned long long)stored;
    pthread_mutex_unlock(&cb->mu);
}

/* Fails every send still submitted with st: they would wait for what the last batch could not
 * get. */
static void fail_waiting(struct mq_combiner *cb, enum mq_status st)
{
    pthread_mutex_lock(&cb->mu);
    struct mq_combined_send *s = cb->head;
    cb->head = cb->tail = NULL;
    pthread_mutex_unlock(&cb->mu);
    while (s) {
        struct mq_combined_send *next = s->next;
        finish(s, st);
        s = next;
    }
}

/* Sends each message alone: a combined statement failed and one of them may be the cause. A
 * lost database fails the rest without trying them. */
static void send_each(struct mq_combiner *cb, struct db_conn *c, struct mq_combined_send **list,
                      int n)
{
    enum mq_status st = MQ_OK;
    for (int i = 0; i < n; i++) {
        struct mq_send_row row = {&list[i]->q, list[i]->e, &list[i]->result};
        if (st != MQ_UNAVAILABLE) {
            st = mq_send_rows(c, &row, 1, 0);
            count(cb, 1, st == MQ_OK);
        }
        finish(list[i], st);
    }
}

/* How long the next acquire may wait: the pool's timeout, or what is left before a stopping
 * combiner gives up (0: give up now). */
static int acquire_budget_ms(struct mq_combiner *cb)
{
    pthread_mutex_lock(&cb->mu);
    int64_t left = cb->stopping ? (cb->give_up_us - clock_mono_us()) / 1000 : INT32_MAX;
    pthread_mutex_unlock(&cb->mu);
    if (left <= 0)
        return 0;
    return left < cb->acquire_timeout_ms ? (int)left : cb->acquire_timeout_ms;
}

/* Sends list[0..n) in one statement; every send is finished when this returns. */
static void send_together(struct mq_combiner *cb, struct mq_combined_send **list, int n)
{
    enum db_acquire_error why;
    int budget = acquire_budget_ms(cb);
    struct db_conn *c = budget > 0 ? db_pool_acquire(cb->pool, budget, &why) : NULL;
    if (!c) {
        for (int i = 0; i < n; i++)
            finish(list[i], MQ_UNAVAILABLE);
        fail_waiting(cb, MQ_UNAVAILABLE);
        return;
    }
    struct mq_send_row rows[MQ_MAX_ROWS];
    for (int i = 0; i < n; i++)
        rows[i] = (struct mq_send_row){&list[i]->q, list[i]->e, &list[i]->result};
    enum mq_status st = mq_send_rows(c, rows, n, 0);
    count(cb, 1, st == MQ_OK ? n : 0);
    if (st == MQ_OK || st == MQ_UNAVAILABLE || n == 1)
        for (int i = 0; i < n; i++)
            finish(list[i], st);
    else
        send_each(cb, c, list, n);
    db_pool_release(cb->pool, c);
}

/* Takes up to MQ_MAX_ROWS of the oldest submitted sends; call with mu held. */
static int take(struct mq_combiner *cb, struct mq_combined_send **list)
{
    int n = 0;
    while (cb->head && n < MQ_MAX_ROWS) {
        list[n++] = cb->head;
        cb->head = cb->head->next;
    }
    if (!cb->head)
        cb->tail = NULL;
    return n;
}

static void *combiner_main(void *arg)
{
    struct mq_combiner *cb = arg;
    struct mq_combined_send *list[MQ_MAX_ROWS];
    pthread_mutex_lock(&cb->mu);
    for (;;) {
        while (!cb->head && !cb->stopping)
            pthread_cond_wait(&cb->cv, &cb->mu);
        if (!cb->head)
            break; /* stopping, and everything submitted is done */
        int n = take(cb, list);
        pthread_mutex_unlock(&cb->mu);
        send_together(cb, list, n);
        pthread_mutex_lock(&cb->mu);
    }
    pthread_mutex_unlock(&cb->mu);
    return NULL;
}

struct mq_combiner *mq_combiner_start(struct db_pool *pool, int acquire_timeout_ms)
{
    struct mq_combiner *cb = xcalloc(1, sizeof *cb);
    cb->pool = pool;
    cb->acquire_timeout_ms = acquire_timeout_ms;
    pthread_mutex_init(&cb->mu, NULL);
    pthread_cond_init(&cb->cv, NULL);
    if (pthread_create(&cb->thread, NULL, combiner_main, cb) != 0)
        rydes_oom();
    return cb;
}

bool mq_combiner_submit(struct mq_combiner *cb, struct mq_combined_send *s)
{
    s->next = NULL;
    pthread_mutex_lock(&cb->mu);
    bool open = !cb->stopping;
    if (open) {
        if (cb->tail)
            cb->tail->next = s;
        else
            cb->head = s;
        cb->tail = s;
        pthread_cond_signal(&cb->cv);
    }
    pthread_mutex_unlock(&cb->mu);
    return open;
}

void mq_combiner_stop(struct mq_combiner *cb, int timeout_ms)
{
    if (!cb)
        return;
    pthread_mutex_lock(&cb->mu);
    bool running = !cb->stopping;
    if (running)
        cb->give_up_us = clock_mono_us() + (int64_t)timeout_ms * 1000;
    cb->stopping = true;
    pthread_cond_signal(&cb->cv);
    pthread_mutex_unlock(&cb->mu);
    if (running)
        pthread_join(cb->thread, NULL);
}

void mq_combiner_free(struct mq_combiner *cb)
{
    if (!cb)
        return;
    mq_combiner_stop(cb, 0);
    pthread_cond_destroy(&cb->cv);
    pthread_mutex_destroy(&cb->mu);
    free(cb);
}

void mq_combiner_counts(struct mq_combiner *cb, unsigned long long *statements,
                        unsigned long long *messages)
{
    pthread_mutex_lock(&cb->mu);
    *statements = cb->statements;
    *messages = cb->messages;
    pthread_mutex_unlock(&cb->mu);
}
