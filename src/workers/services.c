/* The set of built-in consumers a process runs; see include/rydes/services.h. */
#include "rydes/services.h"

#include "rydes/buf.h"
#include "rydes/mem.h"

#include <stdlib.h>

/* One per line, so adding a service touches one line. */
// clang-format off
const struct consumer_def *const services_all[] = {
    &service_customer_notification,
    &service_customer_loyalty,
    &service_datalake_ingestion,
    &service_extraordinary_rides,
    &service_prebooking_submission,
    &service_prebooking_processing,
    &service_prebooking_datalake,
    &service_rfq_aggregator,
    &service_customer_accounting,
    NULL,
};
// clang-format on

#define SERVICES_MAX 128 /* consumers per process, all definitions and their threads */

struct services {
    struct consumer *running[SERVICES_MAX];
    int n;
    struct rfq_timer *rfq_timer; /* with the aggregator */
    struct fleet *fleet;         /* unicorn-fleet */
    struct sagas *sagas;         /* fare-saga */
};

struct services *services_start(const struct config *cfg, const struct consumer_env *env)
{
    struct services *s = xcalloc(1, sizeof *s);
    for (int i = 0; services_all[i]; i++) {
        const struct consumer_def *def = services_all[i];
        if (!config_worker_enabled(cfg, def->name))
            continue;
        int threads = def->threads ? def->threads(cfg) : 1;
        for (int t = 0; t < threads && s->n < (int)SERVICES_MAX; t++)
            s->running[s->n++] = consumer_start(def, env);
    }
    if (config_worker_enabled(cfg, service_rfq_aggregator.name))
        s->rfq_timer = rfq_timer_start(env);
    if (config_worker_enabled(cfg, "unicorn-fleet"))
        s->fleet = fleet_start(cfg, env);
    if (config_worker_enabled(cfg, "fare-saga"))
        s->sagas = sagas_start(cfg, env);
    return s;
}

/* Every thread is asked first, then each is waited for: they stop together, not one after the
 * other (with the database unreachable each step may last a timeout). */
void services_request_stop(struct services *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        consumer_request_stop(s->running[i]);
    rfq_timer_request_stop(s->rfq_timer);
    fleet_request_stop(s->fleet);
    sagas_request_stop(s->sagas);
}

void services_stop(struct services *s)
{
    if (!s)
        return;
    services_request_stop(s);
    for (int i = 0; i < s->n; i++)
        consumer_stop(s->running[i]);
    rfq_timer_stop(s->rfq_timer);
    fleet_stop(s->fleet);
    sagas_stop(s->sagas);
    free(s);
}

void consumer_totals_add(struct consumer_totals *t, struct consumer *c)
{
    t->handled += atomic_load(&consumer_counters(c)->handled);
    t->failed += atomic_load(&consumer_counters(c)->failed);
    t->lost += atomic_load(&consumer_counters(c)->lost);
}

static void render_worker(struct buf *out, const char *name, const struct consumer_totals *t)
{
    buf_printf(out,
               "rydes_worker_messages_total{worker=\"%s\",outcome=\"handled\"} %llu\n"
               "rydes_worker_messages_total{worker=\"%s\",outcome=\"failed\"} %llu\n"
               "rydes_worker_messages_total{worker=\"%s\",outcome=\"lost\"} %llu\n",
               name, t->handled, name, t->failed, name, t->lost);
}

void services_render_metrics(const struct services *s, struct buf *out)
{
    rfq_render_metrics(out, s && s->rfq_timer); /* the expiries also where reads record them */
    if (s && s->sagas)
        sagas_render_metrics(out);
    if (!s || (!s->n && !s->fleet))
        return;
    buf_puts(out, "# HELP rydes_worker_messages_total Messages handled by built-in services, by "
                  "outcome (failed ones are redelivered; lost ones were no longer this "
                  "consumer's when it came to them: their lease ran out).\n"
                  "# TYPE rydes_worker_messages_total counter\n");
    for (int i = 0; i < s->n; i++) {
        const char *name = consumer_def_of(s->running[i])->name;
        bool seen = false; /* a worker with several consumers: one series, summed */
        for (int j = 0; j < i && !seen; j++)
            seen = consumer_def_of(s->running[j]) == consumer_def_of(s->running[i]);
        if (seen)
            continue;
        struct consumer_totals t = {0};
        for (int j = i; j < s->n; j++)
            if (consumer_def_of(s->running[j]) == consumer_def_of(s->running[i]))
                consumer_totals_add(&t, s->running[j]);
        render_worker(out, name, &t);
    }
    if (s->fleet) {
        struct consumer_totals t = {0};
        fleet_totals(s->fleet, &t);
        render_worker(out, "unicorn-fleet", &t);
    }
}
