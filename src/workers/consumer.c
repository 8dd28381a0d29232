/* The consumer loop; see include/rydes/consumer.h. */
#include "rydes/consumer.h"

#include "rydes/clock.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/trace.h"
#include "rydes/worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CONSUMER_WAIT_US      5000000  /* a long poll on the hub lasts at most this */
#define CONSUMER_BACKOFF_MIN  100      /* ms, when the database is away... */
#define CONSUMER_BACKOFF_MAX  5000     /* ...doubling up to this */
#define CONSUMER_NO_QUEUE_MS  5000     /* the queue does not exist (yet) */
#define CONSUMER_QUEUE_TTL_US 10000000 /* queue attributes are read again this often */
#define CONSUMER_RETRY_MAX_S  60       /* a failed message's backoff is at most this */
#define CONSUMER_DEFER_MS     1000     /* a pause after a handler said "not now" */

bool (*consumer_fault_hook)(const char *worker, const struct mq_message *m);

struct consumer {
    const struct consumer_def *def;
    struct consumer_env env;
    struct consumer_counters counters;
    struct mq_queue q;
    int64_t q_read_us; /* 0: not read */
    int backoff_ms;
    struct worker *worker;
    /* the long poll: the hub's wake callback sets woken */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken;
    struct mq_waiter waiter;
};

static int backoff(struct consumer *k)
{
    k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : CONSUMER_BACKOFF_MIN;
    if (k->backoff_ms > CONSUMER_BACKOFF_MAX)
        k->backoff_ms = CONSUMER_BACKOFF_MAX;
    return k->backoff_ms;
}

static void on_wake(struct mq_waiter *w, enum mq_wake why)
{
    (void)why;
    struct consumer *k = w->ctx;
    pthread_mutex_lock(&k->mu);
    k->woken = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* Waits until a message may have arrived on the queue (or the wait's deadline, or the hub
 * stops). Returns the milliseconds the caller should still sleep (the hub refused us). */
static int wait_for_messages(struct consumer *k, uint64_t seq)
{
    k->woken = false;
    k->waiter = (struct mq_waiter){.queue_id = k->q.id,
                                   .deadline_us = clock_mono_us() + CONSUMER_WAIT_US,
                                   .wake = on_wake,
                                   .ctx = k};
    if (mq_hub_wait(k->env.hub, &k->waiter, seq) != MQ_WAIT_OK)
        return 1000;
    pthread_mutex_lock(&k->mu);
    while (!k->woken)
        pthread_cond_wait(&k->cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

/* The delay before a failed message is offered again: 2^(receive_count - 1) seconds. */
static int retry_delay(int receive_count)
{
    int d = 1;
    for (int i = 1; i < receive_count && d < CONSUMER_RETRY_MAX_S; i++)
        d *= 2;
    return d < CONSUMER_RETRY_MAX_S ? d : CONSUMER_RETRY_MAX_S;
}

/* Locks m for the transaction (mq_hold). False when it is not to be handled: the transaction
 * failed (*lost false), or m is no longer this consumer's (*lost: its lease ran out and another
 * receive took it, or it is gone, handled by that one, dead-lettered or expired). */
static bool hold(struct consumer *k, struct db_conn *c, const struct mq_message *m, bool *lost)
{
    enum mq_status st = mq_hold(c, &k->q, m->receipt);
    *lost = st == MQ_CONFLICT || st == MQ_NOT_FOUND;
    return st == MQ_OK;
}

enum outcome { HANDLED, FAILED, DEFERRED };

/* Gives m back untried (its receive count kept) after the handler deferred it. */
static enum outcome defer(struct consumer *k, struct db_conn *c, const struct mq_message *m)
{
    db_rollback(c);
    if (!db_conn_lost(c))
        mq_release_unreceived(c, &k->q, m->receipt);
    return DEFERRED;
}

/* Handles one message: the handler's work and the ack commit together, or neither. Holding it
 * first makes that once: a batch handled in turn can outlive a message's lease. FAILED when it
 * is to come again later. */
static enum outcome handle_traced(struct consumer *k, struct db_conn *c, const struct mq_message *m)
{
    char why[256] = "";
    if (k->def->claimed)
        k->def->claimed(&k->env, c, m);
    bool ok = db_begin(c), lost = false;
    if (ok && consumer_fault_hook && consumer_fault_hook(k->def->name, m)) {
        snprintf(why, sizeof why, "failure injected by a test");
        ok = false;
    }
    ok = ok && hold(k, c, m, &lost);
    if (lost) {
        if (!db_commit(c)) /* keeps what mq_hold mended (a FIFO group of a message gone) */
            db_rollback(c);
        atomic_fetch_add(&k->counters.lost, 1);
        log_info("%s: message %s is no longer ours (its lease ran out): not handled", k->def->name,
                 m->message_id);
        return HANDLED;
    }
    enum consumer_result res = ok ? k->def->handle(&k->env, c, m, why, sizeof why) : CONSUMER_RETRY;
    if (res == CONSUMER_DEFER)
        return defer(k, c, m);
    ok = res == CONSUMER_DONE && mq_delete(c, &k->q, m->receipt) == MQ_OK && db_commit(c);
    if (ok) {
        atomic_fetch_add(&k->counters.handled, 1);
        if (log_enabled(LOG_LEVEL_INFO)) {
            struct log_field f[] = {LOG_STR("worker", k->def->name),
                                    LOG_STR("message_id", m->message_id),
                                    LOG_INT("receive_count", m->receive_count)};
            log_event(LOG_LEVEL_INFO, "handled", f, 3);
        }
        return HANDLED;
    }
    db_rollback(c);
    atomic_fetch_add(&k->counters.failed, 1);
    log_warn("%s: message %s failed (receive %d): %s", k->def->name, m->message_id,
             m->receive_count, why[0] ? why : "a statement failed");
    /* the last attempt the queue allows: let the engine move it to the dead-letter queue at the
     * next receive instead of holding it back once more */
    bool last = k->q.attrs.max_receive_count && m->receive_count >= k->q.attrs.max_receive_count;
    if (last && k->def->given_up && !db_conn_lost(c))
        k->def->given_up(&k->env, c, m, why[0] ? why : "a statement failed");
    if (!db_conn_lost(c))
        mq_change_visibility(c, &k->q, m->receipt, last ? 0 : retry_delay(m->receive_count));
    return FAILED;
}

/* Handles one message with its trace (rydes/trace.h) as the thread's. */
static enum outcome handle_one(struct consumer *k, struct db_conn *c, const struct mq_message *m)
{
    trace_from_attributes(m->attributes);
    enum outcome o = handle_traced(k, c, m);
    trace_set(NULL, NULL);
    return o;
}

/* Did a message of msgs[i]'s FIFO group fail earlier in the batch? Then msgs[i] must wait for
 * it: handling it now would run the group out of order. */
static bool behind_a_failure(const struct mq_message *msgs, const bool *failed, int i)
{
    for (int j = 0; j < i && msgs[i].group_id; j++)
        if (failed[j] && strcmp(msgs[j].group_id, msgs[i].group_id) == 0)
            return true;
    return false;
}

/* Handles a batch received at received_us in order; true when the consumer is to pause (a
 * handler deferred). Messages not tried are given back as if not received
 * (mq_release_unreceived: their receive counts are kept): in a FIFO queue those after a failed
 * one of its group (the group stays closed while the failed one is held back for its retry,
 * sql/002 mq_refresh_group, and opens with it at its head); all of them after a deferred one;
 * and all of them once the consumer is stopping or half the batch's lease has gone (a slow
 * message, a stalled lock, must not run its batch-mates' leases out, for other receives to
 * count them towards the dead-letter queue untried, nor hold a shutdown up). */
static bool handle_batch(struct consumer *k, struct worker *w, struct db_conn *c,
                         const struct mq_message *msgs, int n, int64_t received_us)
{
    bool failed[MQ_MAX_BATCH] = {false}, rest = false, pause = false;
    int64_t late_us = received_us + (int64_t)k->def->visibility * 500000;
    for (int i = 0; i < n && i < MQ_MAX_BATCH; i++) {
        rest = rest || worker_stopping(w) || clock_mono_us() > late_us;
        if (!rest && !behind_a_failure(msgs, failed, i)) {
            enum outcome o = handle_one(k, c, &msgs[i]);
            failed[i] = o != HANDLED;
            if (o == DEFERRED)
                pause = rest = true;
            continue;
        }
        failed[i] = true;
        if (!db_conn_lost(c))
            mq_release_unreceived(c, &k->q, msgs[i].receipt);
    }
    return pause;
}

/* Reads the queue's attributes when they are missing or old; false when it does not exist. */
static bool refresh_queue(struct consumer *k, struct db_conn *c, enum mq_status *st)
{
    *st = MQ_OK;
    if (k->q_read_us && clock_mono_us() - k->q_read_us < CONSUMER_QUEUE_TTL_US)
        return true;
    *st = mq_queue_get(c, k->def->queue, &k->q);
    if (*st == MQ_NOT_FOUND && k->q_read_us == 0)
        log_warn("%s: queue %s does not exist; waiting for it", k->def->name, k->def->queue);
    if (*st == MQ_OK)
        k->q_read_us = clock_mono_us();
    return *st == MQ_OK;
}

/* w is k's worker (k->worker is written by the starting thread, maybe after this runs). */
static int consumer_step(struct worker *w, void *arg)
{
    struct consumer *k = arg;
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(k->env.pool, k->env.acquire_timeout_ms, &why);
    if (!c)
        return backoff(k);
    enum mq_status st;
    if (!refresh_queue(k, c, &st)) {
        db_pool_release(k->env.pool, c);
        return st == MQ_NOT_FOUND ? CONSUMER_NO_QUEUE_MS : backoff(k);
    }
    uint64_t seq = mq_hub_seq(k->env.hub, k->q.id);
    struct mq_message *msgs = NULL;
    int n = 0;
    int64_t received_us = clock_mono_us();
    st = mq_receive(c, &k->q, k->def->batch, k->def->visibility, false, &msgs, &n);
    if (st == MQ_OK && n == k->def->batch) /* there may be more: the next waiter looks too */
        mq_hub_poke(k->env.hub, k->q.id);
    bool pause = st == MQ_OK && handle_batch(k, w, c, msgs, n, received_us);
    mq_messages_free(msgs, n);
    db_pool_release(k->env.pool, c);
    if (st != MQ_OK)
        return backoff(k);
    k->backoff_ms = 0;
    if (pause)
        return CONSUMER_DEFER_MS;
    return n ? 0 : wait_for_messages(k, seq);
}

struct consumer *consumer_start(const struct consumer_def *def, const struct consumer_env *env)
{
    struct consumer *k = xcalloc(1, sizeof *k);
    k->def = def;
    k->env = *env;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    k->worker = worker_start(consumer_step, k);
    return k;
}

void consumer_request_stop(struct consumer *k)
{
    if (k)
        worker_request_stop(k->worker);
}

void consumer_stop(struct consumer *k)
{
    if (!k)
        return;
    worker_stop(k->worker);
    /* what this consumer did, for the operator (and the multi-process tests, which read it) */
    log_info("%s: stopped after %llu messages handled, %llu failed", k->def->name,
             (unsigned long long)atomic_load(&k->counters.handled),
             (unsigned long long)atomic_load(&k->counters.failed));
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}

const struct consumer_counters *consumer_counters(const struct consumer *k)
{
    return &k->counters;
}

const struct consumer_def *consumer_def_of(const struct consumer *k)
{
    return k->def;
}
