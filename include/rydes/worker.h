/* A background thread that runs a step function until it is stopped, sleeping between steps
 * on a condition variable so a stop (or a wake) ends the sleep at once. The sweeper and the push
 * worker are built on it. */
#ifndef RYDES_WORKER_H
#define RYDES_WORKER_H

#include <stdbool.h>

struct worker;

/* Starts a thread that calls step(w, arg) until worker_stop; step returns how many milliseconds
 * to sleep before the next call (0: at once). Free with worker_stop. */
struct worker *worker_start(int (*step)(struct worker *w, void *arg), void *arg);
/* Ends a sleep early (the next step runs at once). */
void worker_wake(struct worker *w);
/* Has worker_stop (or worker_request_stop) been called? Long steps look at this to give up
 * early. */
bool worker_stopping(struct worker *w);
/* Asks the thread to stop without waiting for it: workers asked together stop together, each
 * finishing its current step, instead of one after the other. NULL is fine. */
void worker_request_stop(struct worker *w);
/* Asks the thread to stop, waits for its current step to return, and frees w. NULL is fine. */
void worker_stop(struct worker *w);

#endif
