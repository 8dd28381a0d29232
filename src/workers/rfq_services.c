/* The RFQ aggregator: consumes rfq-responses (the return address of every RFQ), correlates each
 * quote with its RFQ by the correlation_id attribute and records it (rydes/rfqs.h: one per
 * unicorn, the RFQ completes when all expected unicorns answered). Quotes for unknown or
 * finished RFQs, from unicorns the RFQ did not ask and malformed ones are acked and counted,
 * never retried. A deadline timer
 * completes RFQs at their eta: one indexed statement a few times a second for all of them. */
#include "rydes/rfqs.h"
#include "rydes/services.h"

#include "rydes/buf.h"
#include "rydes/mem.h"
#include "rydes/worker.h"

#include <stdio.h>
#include <stdlib.h>

#define RFQ_TIMER_MS 200 /* completion shows in status within this of the deadline */

static struct {
    _Atomic uint64_t stored, completed, expired, unknown, finished, not_asked, superseded, invalid;
} counters;

/* The string value of message attribute name, or NULL. */
static const char *attribute(const struct mq_message *m, const char *name)
{
    return json_string_value(json_object_get(json_object_get(m->attributes, name), "value"));
}

static enum consumer_result aggregate(const struct consumer_env *env, struct db_conn *c,
                                      const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    const char *id = attribute(m, "correlation_id");
    json_t *body = json_loads(m->body, 0, NULL);
    struct field_errors fe;
    field_errors_init(&fe);
    struct quote_input q;
    if (json_is_object(body))
        quote_input(body, &q, &fe);
    enum consumer_result r = CONSUMER_DONE;
    if (!id || !ids_is_uuid(id) || !json_is_object(body) || fe.count) {
        atomic_fetch_add(&counters.invalid, 1);
    } else {
        enum quote_outcome o;
        enum mq_status st = rfqs_add_quote(c, id, &q, m->sent_at, m->id, &o);
        if (st != MQ_OK) {
            snprintf(why, n, "recording the quote failed");
            r = CONSUMER_RETRY;
        } else {
            atomic_fetch_add(o == QUOTE_STORED       ? &counters.stored
                             : o == QUOTE_COMPLETED  ? &counters.completed
                             : o == QUOTE_UNKNOWN    ? &counters.unknown
                             : o == QUOTE_NOT_ASKED  ? &counters.not_asked
                             : o == QUOTE_SUPERSEDED ? &counters.superseded
                                                     : &counters.finished,
                             1);
        }
    }
    field_errors_cleanup(&fe);
    json_decref(body);
    return r;
}

const struct consumer_def service_rfq_aggregator = {.name = "rfq-aggregator",
                                                    .queue = RFQS_RESPONSES,
                                                    .batch = 10,
                                                    .visibility = 30,
                                                    .handle = aggregate};

struct rfq_timer {
    struct consumer_env env;
    struct worker *worker;
};

static int expire_step(struct worker *w, void *arg)
{
    (void)w;
    struct rfq_timer *t = arg;
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(t->env.pool, t->env.acquire_timeout_ms, &why);
    if (!c)
        return RFQ_TIMER_MS;
    int n = 0;
    if (rfqs_expire(c, &n) == MQ_OK)
        atomic_fetch_add(&counters.expired, (uint64_t)n);
    db_pool_release(t->env.pool, c);
    return RFQ_TIMER_MS;
}

struct rfq_timer *rfq_timer_start(const struct consumer_env *env)
{
    struct rfq_timer *t = xcalloc(1, sizeof *t);
    t->env = *env;
    t->worker = worker_start(expire_step, t);
    return t;
}

void rfq_timer_request_stop(struct rfq_timer *t)
{
    if (t)
        worker_request_stop(t->worker);
}

void rfq_timer_stop(struct rfq_timer *t)
{
    if (!t)
        return;
    worker_stop(t->worker);
    free(t);
}

void rfq_render_metrics(struct buf *out, bool with_quotes)
{
    if (with_quotes)
        buf_printf(out,
                   "# HELP rydes_rfq_quotes_total Quotes the RFQ aggregator took in, by outcome.\n"
                   "# TYPE rydes_rfq_quotes_total counter\n"
                   "rydes_rfq_quotes_total{outcome=\"stored\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"completed\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"ignored_unknown\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"ignored_finished\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"ignored_not_asked\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"ignored_superseded\"} %llu\n"
                   "rydes_rfq_quotes_total{outcome=\"ignored_invalid\"} %llu\n",
                   (unsigned long long)atomic_load(&counters.stored),
                   (unsigned long long)atomic_load(&counters.completed),
                   (unsigned long long)atomic_load(&counters.unknown),
                   (unsigned long long)atomic_load(&counters.finished),
                   (unsigned long long)atomic_load(&counters.not_asked),
                   (unsigned long long)atomic_load(&counters.superseded),
                   (unsigned long long)atomic_load(&counters.invalid));
    buf_printf(out,
               "# HELP rydes_rfqs_expired_total RFQs completed at their eta, by the timer or by a "
               "read past it.\n"
               "# TYPE rydes_rfqs_expired_total counter\nrydes_rfqs_expired_total %llu\n",
               (unsigned long long)(atomic_load(&counters.expired) + rfqs_settled_total()));
}
