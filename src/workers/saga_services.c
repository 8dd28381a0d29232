/* The fare services: customer-accounting turns every ride of its queue into a fare saga (once:
 * the fare id is the ride id), and the fare-saga executors (RYDES_SAGA_CONCURRENCY threads) run
 * due sagas (rydes/saga.h) against the payment gateway: the built-in simulator, or the gateway at
 * RYDES_PAYMENT_URL. */
#include "rydes/saga.h"
#include "rydes/services.h"

#include "rydes/buf.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/rides.h"
#include "rydes/validate.h"
#include "rydes/worker.h"

#include <stdio.h>
#include <stdlib.h>

#define SAGA_IDLE_MS 200 /* an executor with nothing due looks again this often */

/* Starts the fare of the ride an event names. Only its id is read: the customer and the fare
 * are the stored ride's, so an event anyone wrote into the queue charges no one anything the
 * ride did not cost. An event without a ride id, or naming no stored ride, starts nothing and
 * stays unacked for the dead-letter queue. */
static enum consumer_result start_fare(const struct consumer_env *env, struct db_conn *c,
                                       const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    json_t *event = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(event, "id"));
    enum consumer_result r = CONSUMER_RETRY;
    bool found, created;
    if (!id || !ids_is_uuid(id))
        snprintf(why, n, "not a ride event (id)");
    else if (saga_start_ride(c, id, &found, &created) != MQ_OK)
        snprintf(why, n, "starting the saga failed");
    else if (!found)
        snprintf(why, n, "no such ride");
    else
        r = CONSUMER_DONE;
    json_decref(event);
    return r;
}

const struct consumer_def service_customer_accounting = {.name = "customer-accounting",
                                                         .queue = "customer-accounting",
                                                         .batch = 10,
                                                         .visibility = 30,
                                                         .handle = start_fare};

/* The executors of a process and what they share. */
struct sagas {
    struct consumer_env env;
    struct saga_env saga;
    struct worker *workers[64];
    int n;
    _Atomic uint64_t runs;
    atomic_bool stopping;
};

static int execute_step(struct worker *w, void *arg)
{
    (void)w;
    struct sagas *s = arg;
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(s->env.pool, s->env.acquire_timeout_ms, &why);
    if (!c)
        return SAGA_IDLE_MS;
    bool ran = false;
    enum mq_status st = saga_run_one(c, &s->saga, &ran);
    db_pool_release(s->env.pool, c);
    if (ran)
        atomic_fetch_add(&s->runs, 1);
    return st == MQ_OK && ran ? 0 : SAGA_IDLE_MS;
}

struct sagas *sagas_start(const struct config *cfg, const struct consumer_env *env)
{
    struct sagas *s = xcalloc(1, sizeof *s);
    s->env = *env;
    s->saga = (struct saga_env){
        .payments = cfg->payment_url[0]
                        ? payments_http(cfg->payment_url, cfg->saga_lease_seconds * 500)
                        : payments_simulator(),
        .topics = env->topics,
        .hub = env->hub,
        .lease_seconds = (int)cfg->saga_lease_seconds,
        .unreachable_seconds = (int)cfg->saga_unreachable_seconds,
        .stopping = &s->stopping};
    int n = (int)cfg->saga_concurrency;
    for (int i = 0; i < n && i < (int)(sizeof s->workers / sizeof *s->workers); i++)
        s->workers[s->n++] = worker_start(execute_step, s);
    return s;
}

void sagas_request_stop(struct sagas *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true); /* runs pause between steps instead of finishing */
    for (int i = 0; i < s->n; i++)
        worker_request_stop(s->workers[i]);
}

void sagas_stop(struct sagas *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true); /* runs pause between steps instead of finishing */
    for (int i = 0; i < s->n; i++)
        worker_stop(s->workers[i]);
    log_info("fare-saga: stopped after %llu saga runs", (unsigned long long)atomic_load(&s->runs));
    payments_free(s->saga.payments);
    free(s);
}

void sagas_render_metrics(struct buf *out)
{
    buf_printf(out,
               "# HELP rydes_sagas_total Fare sagas this process finished, by outcome.\n"
               "# TYPE rydes_sagas_total counter\n"
               "rydes_sagas_total{outcome=\"succeeded\"} %llu\n"
               "rydes_sagas_total{outcome=\"failed\"} %llu\n"
               "rydes_sagas_total{outcome=\"needs_operator\"} %llu\n"
               "# HELP rydes_saga_retries_total Saga steps and compensations retried after an "
               "error.\n# TYPE rydes_saga_retries_total counter\nrydes_saga_retries_total %llu\n",
               (unsigned long long)atomic_load(&saga_counters.succeeded),
               (unsigned long long)atomic_load(&saga_counters.failed),
               (unsigned long long)atomic_load(&saga_counters.operator),
               (unsigned long long)atomic_load(&saga_counters.retries));
}
