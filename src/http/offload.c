/* Handler threads; see include/rydes/offload.h. A mutex-protected FIFO of jobs and a condition
 * variable; the jobs are few (one per request of a slow route) and each is long next to a lock
 * hand-off, so nothing smarter pays. */
#include "rydes/offload.h"

#include "rydes/mem.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    struct job *next;
    offload_fn fn;
    void *arg;
};

struct offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail; /* queued, oldest first */
    int waiting;             /* how many */
    int max_waiting;
    bool stopping;
    bool joined; /* by offload_stop, which one thread calls */
    int nthreads;
    pthread_t threads[];
};

/* The next job, or NULL once stopping with none left; call with mu held. */
static struct job *next_job(struct offload *o)
{
    while (!o->head && !o->stopping)
        pthread_cond_wait(&o->cv, &o->mu);
    struct job *j = o->head;
    if (j) {
        o->head = j->next;
        if (!o->head)
            o->tail = NULL;
        o->waiting--;
    }
    return j;
}

/* Runs jobs until stopping with none left. */
static void run_jobs(struct offload *o)
{
    pthread_mutex_lock(&o->mu);
    struct job *j;
    while ((j = next_job(o))) {
        pthread_mutex_unlock(&o->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
}

static void *thread_main(void *arg)
{
    run_jobs(arg);
    return NULL;
}

struct offload *offload_start(int threads, int max_waiting)
{
    if (threads < 1)
        threads = 1;
    struct offload *o = xcalloc(1, sizeof *o + (size_t)threads * sizeof(pthread_t));
    o->max_waiting = max_waiting < 1 ? 1 : max_waiting;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->nthreads = threads;
    for (int i = 0; i < threads; i++)
        xthread_create(&o->threads[i], thread_main, o);
    return o;
}

enum offload_submitted offload_submit(struct offload *o, offload_fn fn, void *arg)
{
    struct job *j = xmalloc(sizeof *j);
    *j = (struct job){.fn = fn, .arg = arg};
    pthread_mutex_lock(&o->mu);
    enum offload_submitted r = o->stopping                    ? OFFLOAD_STOPPED
                               : o->waiting >= o->max_waiting ? OFFLOAD_FULL
                                                              : OFFLOAD_QUEUED;
    if (r == OFFLOAD_QUEUED) {
        if (o->tail)
            o->tail->next = j;
        else
            o->head = j;
        o->tail = j;
        o->waiting++;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
    if (r != OFFLOAD_QUEUED)
        free(j);
    return r;
}

void offload_stop_begin(struct offload *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stopping = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    /* the queued jobs run here too, whichever thread is free first: threads stuck in a job
     * (a statement on a lock) no longer hold back the ones queued behind them */
    run_jobs(o);
}

void offload_stop(struct offload *o)
{
    if (!o || o->joined)
        return;
    offload_stop_begin(o);
    for (int i = 0; i < o->nthreads; i++)
        pthread_join(o->threads[i], NULL);
    o->joined = true;
}

int offload_waiting(struct offload *o)
{
    if (!o)
        return 0;
    pthread_mutex_lock(&o->mu);
    int n = o->waiting;
    pthread_mutex_unlock(&o->mu);
    return n;
}

void offload_free(struct offload *o)
{
    if (!o)
        return;
    offload_stop(o);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o);
}
