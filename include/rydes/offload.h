/* A fixed set of threads that run jobs handed to them in order of arrival. The HTTP server has
 * two: one for the handlers that may wait on the database for long (lists, peeks, purges, the
 * Wild Rydes workflows, metrics), one for the data plane's statements, so that the HTTP
 * threads, half as many as the machine has cores by default, only read, route and write
 * (rydes/http.h). */
#ifndef RYDES_OFFLOAD_H
#define RYDES_OFFLOAD_H

#include <stdbool.h>

struct offload;
typedef void (*offload_fn)(void *arg);

/* Starts threads (at least 1) threads, of which at most max_waiting jobs (at least 1) may wait;
 * free with offload_free. */
struct offload *offload_start(int threads, int max_waiting);
enum offload_submitted {
    OFFLOAD_QUEUED,  /* fn(arg) will run */
    OFFLOAD_FULL,    /* max_waiting jobs wait already: nothing queued */
    OFFLOAD_STOPPED, /* stopping: nothing queued */
};
/* Queues fn(arg) to run on one of the threads, in order of arrival. */
enum offload_submitted offload_submit(struct offload *o, offload_fn fn, void *arg);
/* Refuses new jobs and runs every job queued so far, on the threads and on the calling one,
 * whichever is free first: a thread stuck in a job holds back none queued behind it. Returns
 * once the queue is empty (jobs begun on the threads may still run). */
void offload_stop_begin(struct offload *o);
/* offload_stop_begin, then joins the threads; o stays valid (its submits answer
 * OFFLOAD_STOPPED) until offload_free. Call from one thread; later calls return at once. */
void offload_stop(struct offload *o);
/* Stops (if not yet) and frees. */
void offload_free(struct offload *o);
/* Jobs queued and not yet begun (0 for NULL). */
int offload_waiting(struct offload *o);

#endif
