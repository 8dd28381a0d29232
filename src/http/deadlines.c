/* Request deadlines; see include/rydes/deadlines.h. The watches form a doubly linked list under
 * one mutex; the watchdog walks it. libmicrohttpd notifies a closing connection before it closes
 * the socket, and the watch is unlinked under the mutex then, so the watchdog never shuts down a
 * descriptor that was closed and reused. */
#include "rydes/deadlines.h"

#include "rydes/clock.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#define DEADLINES_CHECK_MS 500

struct deadline_watch {
    struct deadline_watch *prev, *next;
    int fd;
    int64_t deadline_us; /* when its request must have arrived or its reply gone; 0: none now */
    bool expired;        /* shut down already */
};

struct deadlines {
    pthread_mutex_t mu;
    struct deadline_watch head; /* sentinel of a circular list */
    int64_t timeout_us, idle_us;
    atomic_ullong expired;
    struct worker *watchdog;
};

/* Shuts down every connection past its deadline. */
static int check(struct worker *w, void *arg)
{
    (void)w;
    struct deadlines *d = arg;
    int64_t now = clock_mono_us();
    pthread_mutex_lock(&d->mu);
    for (struct deadline_watch *x = d->head.next; x != &d->head; x = x->next) {
        if (x->expired || !x->deadline_us || now < x->deadline_us)
            continue;
        x->expired = true;
        shutdown(x->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
        atomic_fetch_add(&d->expired, 1);
    }
    pthread_mutex_unlock(&d->mu);
    return DEADLINES_CHECK_MS;
}

struct deadlines *deadlines_start(int request_timeout_s, int idle_timeout_s)
{
    struct deadlines *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->head.prev = d->head.next = &d->head;
    d->timeout_us = (int64_t)request_timeout_s * 1000000;
    d->idle_us = (int64_t)idle_timeout_s * 1000000;
    d->watchdog = worker_start(check, d);
    return d;
}

void deadlines_stop(struct deadlines *d)
{
    if (!d)
        return;
    worker_stop(d->watchdog);
    for (struct deadline_watch *x = d->head.next, *next; x != &d->head; x = next) {
        next = x->next;
        free(x);
    }
    pthread_mutex_destroy(&d->mu);
    free(d);
}

struct deadline_watch *deadlines_watch(struct deadlines *d, int fd)
{
    struct deadline_watch *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->deadline_us = clock_mono_us() + d->timeout_us;
    pthread_mutex_lock(&d->mu);
    w->next = d->head.next;
    w->prev = &d->head;
    d->head.next->prev = w;
    d->head.next = w;
    pthread_mutex_unlock(&d->mu);
    return w;
}

void deadlines_arrived(struct deadlines *d, struct deadline_watch *w)
{
    pthread_mutex_lock(&d->mu);
    w->deadline_us = 0;
    pthread_mutex_unlock(&d->mu);
}

void deadlines_replying(struct deadlines *d, struct deadline_watch *w, size_t bytes)
{
    int64_t mibs = 1 + (int64_t)(bytes >> 20);
    pthread_mutex_lock(&d->mu);
    w->deadline_us = clock_mono_us() + mibs * d->timeout_us;
    pthread_mutex_unlock(&d->mu);
}

void deadlines_waiting(struct deadlines *d, struct deadline_watch *w)
{
    /* a keep-alive connection may first idle (MHD's idle timeout ends that), then its next
     * request has the whole request timeout */
    pthread_mutex_lock(&d->mu);
    w->deadline_us = clock_mono_us() + d->idle_us + d->timeout_us;
    pthread_mutex_unlock(&d->mu);
}

void deadlines_forget(struct deadlines *d, struct deadline_watch *w)
{
    pthread_mutex_lock(&d->mu);
    w->prev->next = w->next;
    w->next->prev = w->prev;
    pthread_mutex_unlock(&d->mu);
    free(w);
}

unsigned long long deadlines_expired(const struct deadlines *d)
{
    return atomic_load(&d->expired);
}
