/* The send combiner; see include/rydes/mq_combiner.h. */
#include "rydes/mq_combiner.h"

#include "rydes/mem.h"

#include <pthread.h>
#include <stdlib.h>

struct mq_combiner {
    struct db_pool *pool;
    int acquire_timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mq_combined_send *head, *tail; /* submitted, oldest first */
    bool stopping;
    unsigned long long statements, messages; /* under mu */
    pthread_t thread;
};

static void finish(struct mq_combined_send *s, enum mq_status st)
{
    s->status = st;
    s->done(s); /* s may be gone after this */
}

/* Sends each message alone: a combined statement failed and one of them may be the cause. */
static void send_each(struct db_conn *c, struct mq_combined_send **list, int n)
{
    for (int i = 0; i < n; i++) {
        struct mq_send_row row = {&list[i]->q, list[i]->e, &list[i]->result};
        finish(list[i], mq_send_rows(c, &row, 1, 0));
    }
}

/* Sends list[0..n) in one statement; every send is finished when this returns. */
static void send_together(struct mq_combiner *cb, struct mq_combined_send **list, int n)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(cb->pool, cb->acquire_timeout_ms, &why);
    if (!c) {
        for (int i = 0; i < n; i++)
            finish(list[i], MQ_UNAVAILABLE);
        return;
    }
    struct mq_send_row rows[MQ_MAX_ROWS];
    for (int i = 0; i < n; i++)
        rows[i] = (struct mq_send_row){&list[i]->q, list[i]->e, &list[i]->result};
    enum mq_status st = mq_send_rows(c, rows, n, 0);
    if (st == MQ_OK || st == MQ_UNAVAILABLE || n == 1)
        for (int i = 0; i < n; i++)
            finish(list[i], st);
    else
        send_each(c, list, n);
    db_pool_release(cb->pool, c);
    pthread_mutex_lock(&cb->mu);
    cb->statements++;
    cb->messages += (unsigned long long)n;
    pthread_mutex_unlock(&cb->mu);
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

void mq_combiner_stop(struct mq_combiner *cb)
{
    if (!cb)
        return;
    pthread_mutex_lock(&cb->mu);
    bool running = !cb->stopping;
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
    mq_combiner_stop(cb);
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
