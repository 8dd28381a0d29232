/* The built-in services (src/workers/): their consumer definitions by RYDES_WORKERS name, and
 * starting and stopping the set a process runs. */
#ifndef RYDES_SERVICES_H
#define RYDES_SERVICES_H

#include "rydes/config.h"
#include "rydes/consumer.h"

#include <stdbool.h>

/* The ride-completion services (src/workers/ride_services.c). */
extern const struct consumer_def service_customer_notification;
extern const struct consumer_def service_customer_loyalty;
extern const struct consumer_def service_datalake_ingestion;
extern const struct consumer_def service_extraordinary_rides;
/* The prebooking services (src/workers/prebooking_services.c). */
extern const struct consumer_def service_prebooking_submission;
extern const struct consumer_def service_prebooking_processing;
extern const struct consumer_def service_prebooking_datalake;
/* The RFQ aggregator and its deadline timer (src/workers/rfq_services.c). */
extern const struct consumer_def service_rfq_aggregator;
struct rfq_timer;
struct rfq_timer *rfq_timer_start(const struct consumer_env *env);
void rfq_timer_request_stop(struct rfq_timer *t);
void rfq_timer_stop(struct rfq_timer *t);
struct buf;
/* The RFQ counters: the aggregator's quotes by outcome (with_quotes: where its timer runs),
 * and the RFQs completed at their eta (by the timer, or by a read past it: every process). */
void rfq_render_metrics(struct buf *out, bool with_quotes);
/* The fare services (src/workers/saga_services.c): customer-accounting starts a saga per ride;
 * the fare-saga executors run them. */
extern const struct consumer_def service_customer_accounting;
struct sagas;
struct sagas *sagas_start(const struct config *cfg, const struct consumer_env *env);
void sagas_request_stop(struct sagas *s);
void sagas_stop(struct sagas *s);
void sagas_render_metrics(struct buf *out);
/* The simulated unicorn fleet (src/workers/unicorns.c): RYDES_UNICORNS consumers and the thread
 * that sends their answers. */
struct fleet;
struct fleet *fleet_start(const struct config *cfg, const struct consumer_env *env);
void fleet_request_stop(struct fleet *f);
void fleet_stop(struct fleet *f);

/* What consumers handled, failed and lost, summed over several. */
struct consumer_totals {
    unsigned long long handled, failed, lost;
};
/* Adds c's counters to t. */
void consumer_totals_add(struct consumer_totals *t, struct consumer *c);
/* Adds the counters of the fleet's unicorns (one consumer each) to t. */
void fleet_totals(const struct fleet *f, struct consumer_totals *t);
/* (Each *_request_stop asks the component's threads to stop without waiting: services_stop asks
 * every thread first, then waits for them, so they stop together.) */

/* Every built-in consumer, NULL-terminated. */
extern const struct consumer_def *const services_all[];

/* The consumers a process runs. */
struct services;

/* Starts the consumers cfg->workers names (all of them for "all"). Stop with services_stop
 * after the hub was shut down. */
struct services *services_start(const struct config *cfg, const struct consumer_env *env);
/* Asks every thread of the set to stop without waiting (services_stop then waits). */
void services_request_stop(struct services *s);
void services_stop(struct services *s);
/* Appends rydes_worker_messages_total per running consumer to out (Prometheus text). */
struct buf;
void services_render_metrics(const struct services *s, struct buf *out);

#endif
