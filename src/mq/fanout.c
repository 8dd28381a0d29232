/* The fan-out thread; see include/rydes/mq_fanout.h.
 *
 * One statement (mq_fanout) moves up to FANOUT_BATCH_N outbox rows; a full batch is followed by
 * the next at once, so a backlog drains at the speed of bulk inserts, and an empty outbox
 * costs one index probe per FANOUT_POLL_MS. Statements are at least FANOUT_GATHER_US apart, so
 * that under a steady stream of kicks the events of those microseconds share one statement. A
 * failed batch is retried event by event (mq_fanout_careful), which sets an event that fails alone
 * aside for an operator; a batch that ran out of time is not (the same work would, with 1,000
 * subtransactions on top): the batch is halved instead, and grows back only while batches take
 * well under the timeout. Kicks reach the threads through a small registry of this process's
 * fan-outs (one per app; tests run a few). */
#include "rydes/mq_fanout.h"

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FANOUT_BATCH_N    1000
#define FANOUT_TIMEOUT_MS 60000 /* the fan-out session's statement timeout */
#define FANOUT_GATHER_US  2000  /* at most one statement per 2 ms: kicks gather into batches */
#define REGISTRY_SLOTS    16

struct mq_fanout {
    char *conninfo;
    int connect_timeout_s;
    PGconn *pg;
    int64_t last_run_us;
    int batch;         /* FANOUT_BATCH_N, less after batches that ran out of time */
    char options[192]; /* the session's settings */
    struct worker *worker;
    _Atomic unsigned long long events, deliveries;
};

static struct {
    pthread_mutex_t mu;
    struct mq_fanout *slots[REGISTRY_SLOTS];
} registry = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void registry_set(struct mq_fanout *from, struct mq_fanout *to)
{
    pthread_mutex_lock(&registry.mu);
    for (int i = 0; i < REGISTRY_SLOTS; i++)
        if (registry.slots[i] == from) {
            registry.slots[i] = to;
            break;
        }
    pthread_mutex_unlock(&registry.mu);
}

void mq_fanout_kick(void)
{
    pthread_mutex_lock(&registry.mu);
    for (int i = 0; i < REGISTRY_SLOTS; i++)
        if (registry.slots[i])
            worker_wake(registry.slots[i]->worker);
    pthread_mutex_unlock(&registry.mu);
}

/* Runs fn (one of the fan-out functions) over up to f->batch events; returns the events
 * delivered, or -1 on a failure (*timed_out: the statement timeout cancelled it). */
static int run(struct mq_fanout *f, const char *fn, bool *timed_out)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT events, deliveries FROM %s(%d)", fn, f->batch);
    PGresult *r = PQexec(f->pg, sql);
    int events = -1;
    *timed_out = false;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        events = atoi(PQgetvalue(r, 0, 0));
        atomic_fetch_add(&f->events, (unsigned long long)events);
        atomic_fetch_add(&f->deliveries, strtoull(PQgetvalue(r, 0, 1), NULL, 10));
    } else if (PQstatus(f->pg) == CONNECTION_OK) {
        const char *why = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        log_warn("fan-out: %s", why ? why : PQresultErrorMessage(r));
        *timed_out = strcmp(db_sqlstate(r), "57014") == 0;
    }
    PQclear(r);
    return events;
}

/* One batch. A batch that failed goes again event by event, so that an event that cannot be
 * delivered is set aside instead of blocking the others (one that met a transient error stays
 * for the next batch); but one that ran out of time is halved for next time instead, which is
 * sooner than going through it event by event only to run out of time again. */
static int fanout_once(struct mq_fanout *f, bool stopping)
{
    bool timed_out;
    int64_t t0 = clock_mono_us();
    int events = run(f, "mq_fanout", &timed_out);
    bool quick = clock_mono_us() - t0 < FANOUT_TIMEOUT_MS * 1000LL / 4;
    if (events < 0 && timed_out)
        f->batch = f->batch > 1 ? f->batch / 2 : 1;
    else if (events < 0 && PQstatus(f->pg) == CONNECTION_OK && !stopping)
        events = run(f, "mq_fanout_careful", &timed_out);
    else if (events >= 0 && quick && f->batch < FANOUT_BATCH_N)
        f->batch = f->batch * 2 < FANOUT_BATCH_N ? f->batch * 2 : FANOUT_BATCH_N;
    return events;
}

static int fanout_step(struct worker *w, void *arg)
{
    struct mq_fanout *f = arg;
    char err[256];
    if (!db_reconnect(&f->pg, f->conninfo, f->connect_timeout_s, f->options, err, sizeof err))
        return FANOUT_POLL_MS * 10; /* the pool and readiness report the outage */
    int64_t since = clock_mono_us() - f->last_run_us;
    if (since < FANOUT_GATHER_US) /* events published meanwhile join this batch */
        usleep((useconds_t)(FANOUT_GATHER_US - since));
    f->last_run_us = clock_mono_us();
    int batch = f->batch;
    int events = fanout_once(f, worker_stopping(w));
    /* a full batch, or a smaller batch to try after a timeout: at once */
    bool again = events == batch || (events < 0 && f->batch < batch);
    return again && !worker_stopping(w) ? 0 : FANOUT_POLL_MS;
}

struct mq_fanout *mq_fanout_start(const char *conninfo, int connect_timeout_s)
{
    struct mq_fanout *f = xcalloc(1, sizeof *f);
    f->conninfo = xstrdup(conninfo);
    f->connect_timeout_s = connect_timeout_s;
    f->batch = FANOUT_BATCH_N;
    snprintf(f->options, sizeof f->options, "-c statement_timeout=%d " DB_PLANNER_OPTIONS,
             FANOUT_TIMEOUT_MS);
    f->worker = worker_start(fanout_step, f);
    registry_set(NULL, f); /* a full registry only loses the kicks: the poll still delivers */
    return f;
}

void mq_fanout_request_stop(struct mq_fanout *f)
{
    if (f)
        worker_request_stop(f->worker);
}

void mq_fanout_stop(struct mq_fanout *f)
{
    if (!f)
        return;
    registry_set(f, NULL);
    worker_stop(f->worker);
    if (f->pg)
        PQfinish(f->pg);
    free(f->conninfo);
    free(f);
}

void mq_fanout_counts(struct mq_fanout *f, unsigned long long *events,
                      unsigned long long *deliveries)
{
    *events = atomic_load(&f->events);
    *deliveries = atomic_load(&f->deliveries);
}
