/* Background step loops; see include/rydes/worker.h. */
#include "rydes/worker.h"

#include "rydes/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct worker {
    int (*step)(struct worker *w, void *arg);
    void *arg;
    atomic_bool stopping;
    bool woken; /* under mu */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static struct timespec deadline_after(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(&w->stopping)) {
        int ms = w->step(w, w->arg);
        pthread_mutex_lock(&w->mu);
        struct timespec until = deadline_after(ms > 0 ? ms : 0);
        while (ms > 0 && !w->woken && !atomic_load(&w->stopping))
            if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
                break;
        w->woken = false;
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

struct worker *worker_start(int (*step)(struct worker *w, void *arg), void *arg)
{
    struct worker *w = xcalloc(1, sizeof *w);
    w->step = step;
    w->arg = arg;
    atomic_init(&w->stopping, false);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    xthread_create(&w->thread, worker_main, w);
    return w;
}

void worker_wake(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->woken = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bool worker_stopping(struct worker *w)
{
    return atomic_load(&w->stopping);
}

void worker_request_stop(struct worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stopping, true);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void worker_stop(struct worker *w)
{
    if (!w)
        return;
    worker_request_stop(w);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
