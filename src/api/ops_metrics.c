/* The /metrics series beyond the HTTP ones (src/http/metrics.c): the pool, queue depths and
 * this process's per-queue operations, topics and subscriptions, the long-poll waiters, and
 * the gauges PostgreSQL answers (Wild Rydes work by state, the health of the engine's tables).
 * What the database says is cached (struct scrape_part), so that scrapes, which need no token,
 * stay cheap at any rate and on large tables. Every series has HELP and TYPE; counters end in
 * _total. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/clock.h"
#include "rydes/mem.h"
#include "rydes/mq.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_counters.h"
#include "rydes/mq_fanout.h"
#include "rydes/mq_hub.h"
#include "rydes/mq_push.h"
#include "rydes/services.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DEPTHS_TTL_US   1000000  /* queue depths, topics and subscriptions */
#define GAUGES_TTL_US   5000000  /* the gauges of rydes_gauges() */
#define SCRAPE_STALE_US 30000000 /* a part older than this is left out */
#define READY_TTL_US    1000000  /* /readyz answers from the database's last answer */

static const char *const queue_ops[MQC_QUEUE_N] = {
    [MQC_SENT] = "sent",
    [MQC_RECEIVED] = "received",
    [MQC_DELETED] = "deleted",
    [MQC_REDELIVERED] = "redelivered",
    [MQC_DEAD_LETTERED] = "dead_lettered",
};

/* This process's operations on each queue that exists. */
static void render_queue_counters(const struct mq_depth *d, int n, struct buf *out)
{
    buf_puts(out, "# HELP rydes_queue_operations_total Messages sent to, received from, deleted "
                  "from, redelivered by and dead-lettered from each queue by this process.\n"
                  "# TYPE rydes_queue_operations_total counter\n");
    for (int i = 0; i < n; i++)
        for (int op = 0; op < MQC_QUEUE_N; op++)
            buf_printf(out, "rydes_queue_operations_total{queue=\"%s\",op=\"%s\"} %llu\n",
                       d[i].name, queue_ops[op],
                       (unsigned long long)mq_queue_count(d[i].id, (enum mq_queue_counter)op));
}

/* One unlabelled counter with its HELP and TYPE lines. */
static void render_counter(struct buf *out, const char *name, const char *help,
                           unsigned long long value)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, value);
}

static void render_fanout(struct mq_fanout *f, struct buf *out)
{
    unsigned long long events = 0, deliveries = 0;
    if (f)
        mq_fanout_counts(f, &events, &deliveries);
    render_counter(out, "rydes_fanout_events_total",
                   "Published events this process moved from the publish outbox into their "
                   "queues.",
                   events);
    render_counter(out, "rydes_fanout_deliveries_total", "Messages those events became.",
                   deliveries);
}

static void render_combiner(struct mq_combiner *cb, struct buf *out)
{
    static const struct {
        enum mq_combined_kind kind;
        const char *statements, *operations, *help_operations;
    } kinds[] = {
        {MQ_COMBINED_SEND, "rydes_combined_send_statements_total",
         "rydes_combined_send_messages_total", "Single sends those statements stored."},
        {MQ_COMBINED_RECEIVE, "rydes_combined_receive_statements_total",
         "rydes_combined_receive_messages_total", "Messages those claims handed out."},
        {MQ_COMBINED_DELETE, "rydes_combined_delete_statements_total",
         "rydes_combined_delete_messages_total", "Messages those statements deleted."},
        {MQ_COMBINED_PUBLISH, "rydes_combined_publish_statements_total",
         "rydes_combined_publish_stored_total", "Publishes those statements stored."},
        {MQ_COMBINED_UPPER, "rydes_combined_ride_statements_total",
         "rydes_combined_ride_stored_total", "Rides those statements stored and published."},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        unsigned long long statements = 0, operations = 0;
        if (cb)
            mq_combiner_counts(cb, kinds[i].kind, &statements, &operations);
        render_counter(out, kinds[i].statements,
                       "Statements the combiner of this process ran for this kind of operation.",
                       statements);
        render_counter(out, kinds[i].operations, kinds[i].help_operations, operations);
    }
}

static void render_pool(struct db_pool *pool, struct buf *out)
{
    struct db_pool_stats st;
    db_pool_stats(pool, &st);
    buf_printf(out,
               "# HELP rydes_db_pool_connections Database connections by state.\n"
               "# TYPE rydes_db_pool_connections gauge\n"
               "rydes_db_pool_connections{state=\"in_use\"} %d\n"
               "rydes_db_pool_connections{state=\"idle\"} %d\n"
               "rydes_db_pool_connections{state=\"open\"} %d\n"
               "# HELP rydes_db_pool_size Configured size of the database pool.\n"
               "# TYPE rydes_db_pool_size gauge\nrydes_db_pool_size %d\n"
               "# HELP rydes_db_pool_waiting Requests waiting for a database connection.\n"
               "# TYPE rydes_db_pool_waiting gauge\nrydes_db_pool_waiting %d\n"
               "# HELP rydes_db_pool_exhausted_total Acquires that waited their whole timeout for "
               "a connection (a request then gets 503, a worker backs off).\n"
               "# TYPE rydes_db_pool_exhausted_total counter\n"
               "rydes_db_pool_exhausted_total %llu\n"
               "# HELP rydes_db_connect_failures_total Failed attempts to open a connection.\n"
               "# TYPE rydes_db_connect_failures_total counter\n"
               "rydes_db_connect_failures_total %llu\n",
               st.in_use, st.connected > st.in_use ? st.connected - st.in_use : 0, st.connected,
               st.size, st.waiting, st.exhausted_total, st.connect_failures_total);
}

/* Queue depths as the sweeper last measured them, with this process's counters. */
struct depths {
    struct mq_depth *d;
    int n;
};

static void *read_depths(struct app *app)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, 200, &why);
    if (!c)
        return NULL;
    struct depths *q = xcalloc(1, sizeof *q);
    int64_t listed_at = clock_mono_us();
    enum mq_status st = mq_queue_depths(c, &q->d, &q->n);
    db_pool_release(app->pool, c);
    if (st != MQ_OK) {
        free(q);
        return NULL;
    }
    int *live = xcalloc((size_t)q->n + 1, sizeof *live);
    for (int i = 0; i < q->n; i++)
        live[i] = q->d[i].id;
    mq_counters_retire(MQC_QUEUES, live, q->n, listed_at);
    free(live);
    return q;
}

static void free_depths(void *data)
{
    struct depths *q = data;
    free(q->d);
    free(q);
}

static void render_depths(const void *data, struct buf *out)
{
    const struct mq_depth *d = ((const struct depths *)data)->d;
    int n = ((const struct depths *)data)->n;
    buf_puts(out, "# HELP rydes_queue_messages Messages per queue and state (sweeper's last "
                  "measurement).\n# TYPE rydes_queue_messages gauge\n");
    for (int i = 0; i < n; i++)
        buf_printf(out,
                   "rydes_queue_messages{queue=\"%s\",state=\"available\"} %lld\n"
                   "rydes_queue_messages{queue=\"%s\",state=\"in_flight\"} %lld\n"
                   "rydes_queue_messages{queue=\"%s\",state=\"delayed\"} %lld\n",
                   d[i].name, d[i].stats.available, d[i].name, d[i].stats.in_flight, d[i].name,
                   d[i].stats.delayed);
    buf_puts(out, "# HELP rydes_queue_oldest_age_seconds Age of the oldest message per queue.\n"
                  "# TYPE rydes_queue_oldest_age_seconds gauge\n");
    for (int i = 0; i < n; i++)
        buf_printf(out, "rydes_queue_oldest_age_seconds{queue=\"%s\"} %lld\n", d[i].name,
                   d[i].stats.oldest_age_seconds);
    render_queue_counters(d, n, out);
    buf_puts(out, "# HELP rydes_dead_letter_messages Messages waiting in dead-letter queues.\n"
                  "# TYPE rydes_dead_letter_messages gauge\n");
    for (int i = 0; i < n; i++)
        if (d[i].dead_letter)
            buf_printf(out, "rydes_dead_letter_messages{queue=\"%s\"} %lld\n", d[i].name,
                       d[i].stats.available + d[i].stats.in_flight + d[i].stats.delayed);
}

static void render_topics(const struct app *app, struct buf *out)
{
    const struct mq_publish_counters *pc = &app->publish_counters;
    buf_printf(out,
               "# HELP rydes_publishes_total Messages published to topics and recipient lists.\n"
               "# TYPE rydes_publishes_total counter\nrydes_publishes_total %llu\n"
               "# HELP rydes_publish_duplicates_total FIFO publishes dropped as duplicates.\n"
               "# TYPE rydes_publish_duplicates_total counter\n"
               "rydes_publish_duplicates_total %llu\n"
               "# HELP rydes_publish_deliveries_total Copies of published messages put into "
               "queues or queued for URLs.\n"
               "# TYPE rydes_publish_deliveries_total counter\n"
               "rydes_publish_deliveries_total %llu\n",
               (unsigned long long)atomic_load(&pc->publishes),
               (unsigned long long)atomic_load(&pc->duplicates),
               (unsigned long long)atomic_load(&pc->deliveries));
    if (!app->push)
        return;
    const struct mq_push_counters *c = mq_push_counters(app->push);
    buf_printf(out,
               "# HELP rydes_push_attempts_total Deliveries to URL subscriptions by outcome.\n"
               "# TYPE rydes_push_attempts_total counter\n"
               "rydes_push_attempts_total{outcome=\"delivered\"} %llu\n"
               "rydes_push_attempts_total{outcome=\"retried\"} %llu\n"
               "rydes_push_attempts_total{outcome=\"dead_lettered\"} %llu\n"
               "rydes_push_attempts_total{outcome=\"failed\"} %llu\n"
               "rydes_push_attempts_total{outcome=\"queued\"} %llu\n",
               (unsigned long long)atomic_load(&c->delivered),
               (unsigned long long)atomic_load(&c->retried),
               (unsigned long long)atomic_load(&c->dead_lettered),
               (unsigned long long)atomic_load(&c->failed),
               (unsigned long long)atomic_load(&c->queued));
}

/* Topic names may hold any of [A-Za-z0-9_-.] only (mq_topic_name_valid): no escaping needed. */
static struct db_stmt q_topic_subscriptions =
    DB_STMT("ops_topic_subscriptions",
            "SELECT t.id, t.name, coalesce(s.id, 0), coalesce(s.name, '') FROM topics t "
            "LEFT JOIN subscriptions s ON s.topic_id = t.id ORDER BY t.name, s.name",
            0);

static void render_subscription_rows(const void *data, struct buf *out)
{
    const PGresult *r = data;
    buf_puts(out, "# HELP rydes_topic_publishes_total Messages this process published to each "
                  "topic.\n# TYPE rydes_topic_publishes_total counter\n");
    for (int i = 0; i < PQntuples(r); i++)
        if (i == 0 || strcmp(PQgetvalue(r, i, 1), PQgetvalue(r, i - 1, 1)) != 0)
            buf_printf(out, "rydes_topic_publishes_total{topic=\"%s\"} %llu\n", PQgetvalue(r, i, 1),
                       (unsigned long long)mq_topic_count(atoi(PQgetvalue(r, i, 0))));
    buf_puts(out, "# HELP rydes_subscription_deliveries_total Publishes each subscription took "
                  "(delivered) or its filter policy turned away (filtered_out), in this process.\n"
                  "# TYPE rydes_subscription_deliveries_total counter\n");
    for (int i = 0; i < PQntuples(r); i++) {
        int sub = atoi(PQgetvalue(r, i, 2));
        if (!sub)
            continue;
        for (int which = 0; which < MQC_SUBSCRIPTION_N; which++)
            buf_printf(out,
                       "rydes_subscription_deliveries_total{topic=\"%s\",subscription=\"%s\","
                       "outcome=\"%s\"} %llu\n",
                       PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                       which == MQC_MATCHED ? "delivered" : "filtered_out",
                       (unsigned long long)mq_subscription_count(
                           sub, (enum mq_subscription_counter)which));
    }
}

/* Frees the counter slots of topics and subscriptions r (q_topic_subscriptions) no longer
 * lists. */
static void retire_gone(PGresult *r, int64_t listed_at)
{
    int n = PQntuples(r), topics = 0, subs = 0;
    int *topic_ids = xcalloc((size_t)n + 1, sizeof *topic_ids);
    int *sub_ids = xcalloc((size_t)n + 1, sizeof *sub_ids);
    for (int i = 0; i < n; i++) {
        topic_ids[topics++] = atoi(PQgetvalue(r, i, 0)); /* repeats do no harm */
        int sub = atoi(PQgetvalue(r, i, 2));
        if (sub)
            sub_ids[subs++] = sub;
    }
    mq_counters_retire(MQC_TOPICS, topic_ids, topics, listed_at);
    mq_counters_retire(MQC_SUBSCRIPTIONS, sub_ids, subs, listed_at);
    free(topic_ids);
    free(sub_ids);
}

static void *read_subscriptions(struct app *app)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, 200, &why);
    if (!c)
        return NULL;
    int64_t listed_at = clock_mono_us();
    PGresult *r = db_exec(c, &q_topic_subscriptions, NULL, NULL, NULL);
    bool ok = db_ok(c, r, PGRES_TUPLES_OK);
    db_pool_release(app->pool, c);
    if (!ok) {
        PQclear(r);
        return NULL;
    }
    retire_gone(r, listed_at);
    return r;
}

static void free_subscriptions(void *data)
{
    PQclear(data);
}

static void render_counters_overflow(struct buf *out)
{
    render_counter(out, "rydes_counters_overflow_total",
                   "Operations not counted per queue, topic or subscription because the counter "
                   "tables were full.",
                   (unsigned long long)mq_counters_overflow());
}

/* HELP texts of the database gauges (sql/010 and 014: rydes_gauges). */
static const struct {
    const char *metric, *help;
} gauge_help[] = {
    {"rydes_fares", "Fares (sagas) by status."},
    {"rydes_fares_needing_operator", "Fares whose compensation failed: an operator must look."},
    {"rydes_outbox_events",
     "Publish outbox events by state: pending (the fan-out delivers them) or failed (an "
     "operator must look)."},
    {"rydes_outbox_oldest_pending_seconds",
     "Age of the oldest event waiting in the publish outbox (0 when none waits)."},
    {"rydes_pg_dead_rows", "Dead rows per table of the engine (autovacuum should keep it low)."},
    {"rydes_pg_last_autovacuum_seconds", "Unix time of the last (auto)vacuum per table."},
    {"rydes_pg_live_rows", "Live rows per table of the engine."},
    {"rydes_pg_oldest_transaction_seconds", "Age of the oldest open transaction on the database."},
    {"rydes_pg_xid_age", "Transaction ids since the database was last frozen (wraparound)."},
    {"rydes_rfqs", "RFQs by outcome (running, all_answered, timeout)."},
    {"rydes_saga_steps_compensated", "Saga steps undone by compensation."},
    {"rydes_tasks", "Tasks by status."},
};

static const char *gauge_help_of(const char *metric)
{
    for (size_t i = 0; i < sizeof gauge_help / sizeof gauge_help[0]; i++)
        if (strcmp(gauge_help[i].metric, metric) == 0)
            return gauge_help[i].help;
    return "A gauge read from the database.";
}

static struct db_stmt q_gauges = DB_STMT(
    "ops_gauges", "SELECT metric, labels, value FROM rydes_gauges() ORDER BY metric, labels", 0);

static void gauge_rows(PGresult *r, struct buf *out)
{
    for (int i = 0; i < PQntuples(r); i++) {
        const char *metric = PQgetvalue(r, i, 0), *labels = PQgetvalue(r, i, 1);
        if (i == 0 || strcmp(metric, PQgetvalue(r, i - 1, 0)) != 0)
            buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", metric, gauge_help_of(metric),
                       metric);
        buf_printf(out, "%s%s%s%s %s\n", metric, *labels ? "{" : "", labels, *labels ? "}" : "",
                   PQgetvalue(r, i, 2));
    }
}

static void free_text(void *data)
{
    buf_cleanup(data);
    free(data);
}

/* Reads the gauges into a new text (freed by free_text); NULL when the database did not
 * answer. */
static void *read_gauges(struct app *app)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, 200, &why);
    if (!c)
        return NULL;
    struct buf *text = xcalloc(1, sizeof *text);
    buf_init(text);
    PGresult *r = db_exec(c, &q_gauges, NULL, NULL, NULL);
    bool ok = db_ok(c, r, PGRES_TUPLES_OK);
    if (ok)
        gauge_rows(r, text);
    PQclear(r);
    db_pool_release(app->pool, c);
    if (ok)
        return text;
    free_text(text);
    return NULL;
}

static void render_text(const void *data, struct buf *out)
{
    const struct buf *text = data;
    buf_append(out, text->data, text->len);
}

/* A part of the scrape read from the database, so that scrapes (which need no token) cost the
 * database at most one read per part and ttl_us, whatever their rate: one scrape at a time
 * reads it again (outside the lock) once it is older than that, the others render the last
 * copy meanwhile; a copy older than SCRAPE_STALE_US (the database has been away) is left out.
 * The copy holds what the database said; this process's counters are rendered live. */
struct scrape_part {
    pthread_mutex_t mu;
    int64_t ttl_us;
    int64_t at_us;   /* when data was read; 0: never */
    bool refreshing; /* a scrape is reading it now (outside the lock) */
    void *data;      /* owned: free_data frees it */
    void *(*read)(struct app *app);
    void (*render)(const void *data, struct buf *out); /* runs under the lock */
    void (*free_data)(void *data);
};

/* What the open operations endpoints of one app cache (include/rydes/api.h). */
struct ops_cache {
    struct scrape_part depths, subscriptions, gauges;
    pthread_mutex_t ready_mu;
    int64_t ready_at_us; /* 0: the database has not answered a probe yet */
    int ready_applied;
};

static void part_init(struct scrape_part *p, int64_t ttl_us, void *(*read)(struct app *),
                      void (*render)(const void *, struct buf *), void (*free_data)(void *))
{
    *p = (struct scrape_part){
        .ttl_us = ttl_us, .read = read, .render = render, .free_data = free_data};
    pthread_mutex_init(&p->mu, NULL);
}

static void part_free(struct scrape_part *p)
{
    if (p->data)
        p->free_data(p->data);
    pthread_mutex_destroy(&p->mu);
}

struct ops_cache *ops_cache_create(void)
{
    struct ops_cache *c = xcalloc(1, sizeof *c);
    part_init(&c->depths, DEPTHS_TTL_US, read_depths, render_depths, free_depths);
    part_init(&c->subscriptions, DEPTHS_TTL_US, read_subscriptions, render_subscription_rows,
              free_subscriptions);
    part_init(&c->gauges, GAUGES_TTL_US, read_gauges, render_text, free_text);
    pthread_mutex_init(&c->ready_mu, NULL);
    return c;
}

void ops_cache_free(struct ops_cache *c)
{
    if (!c)
        return;
    part_free(&c->depths);
    part_free(&c->subscriptions);
    part_free(&c->gauges);
    pthread_mutex_destroy(&c->ready_mu);
    free(c);
}

int ops_cache_ready(struct ops_cache *c)
{
    pthread_mutex_lock(&c->ready_mu);
    int applied =
        c->ready_at_us && clock_mono_us() - c->ready_at_us < READY_TTL_US ? c->ready_applied : -1;
    pthread_mutex_unlock(&c->ready_mu);
    return applied;
}

void ops_cache_ready_seen(struct ops_cache *c, int applied)
{
    pthread_mutex_lock(&c->ready_mu);
    c->ready_at_us = clock_mono_us();
    c->ready_applied = applied;
    pthread_mutex_unlock(&c->ready_mu);
}

static void render_part(struct scrape_part *p, struct app *app, struct buf *out)
{
    pthread_mutex_lock(&p->mu);
    int64_t now = clock_mono_us();
    bool refresh = !p->refreshing && (!p->at_us || now - p->at_us > p->ttl_us);
    p->refreshing |= refresh;
    pthread_mutex_unlock(&p->mu);
    void *fresh = refresh ? p->read(app) : NULL;
    pthread_mutex_lock(&p->mu);
    if (fresh) {
        if (p->data)
            p->free_data(p->data);
        p->data = fresh;
        p->at_us = clock_mono_us();
    }
    p->refreshing &= !refresh;
    if (p->at_us && clock_mono_us() - p->at_us < SCRAPE_STALE_US)
        p->render(p->data, out);
    pthread_mutex_unlock(&p->mu);
}

void ops_metrics_render(struct http_request *req, struct buf *out)
{
    render_pool(req->app->pool, out);
    render_part(&req->app->ops_cache->depths, req->app, out);
    render_topics(req->app, out);
    render_part(&req->app->ops_cache->subscriptions, req->app, out);
    render_counters_overflow(out);
    render_part(&req->app->ops_cache->gauges, req->app, out);
    services_render_metrics(req->app->services, out);
    buf_printf(out,
               "# HELP rydes_long_poll_waiters Receives waiting for messages (long polls).\n"
               "# TYPE rydes_long_poll_waiters gauge\nrydes_long_poll_waiters %d\n",
               mq_hub_waiters(req->app->hub));
    buf_printf(out,
               "# HELP rydes_http_deadline_closes_total Connections closed because their "
               "request did not arrive, or their reply was not taken, within RYDES_REQUEST_TIMEOUT "
               "(slow clients).\n"
               "# TYPE rydes_http_deadline_closes_total counter\n"
               "rydes_http_deadline_closes_total %llu\n",
               http_server_deadline_closes(req->server));
    render_fanout(req->app->fanout, out);
    render_combiner(req->app->combiner, out);
    buf_printf(out,
               "# HELP rydes_http_in_flight Requests being processed.\n"
               "# TYPE rydes_http_in_flight gauge\nrydes_http_in_flight %d\n",
               http_server_in_flight(req->server));
    buf_printf(out,
               "# HELP rydes_http_connections Open client connections (RYDES_CONNECTION_LIMIT).\n"
               "# TYPE rydes_http_connections gauge\nrydes_http_connections %d\n",
               http_server_connections(req->server));
    buf_printf(out,
               "# HELP rydes_http_parsed_body_bytes Memory the parsed JSON bodies of requests in "
               "progress hold (RYDES_PARSED_BODY_MEMORY).\n"
               "# TYPE rydes_http_parsed_body_bytes gauge\nrydes_http_parsed_body_bytes %zu\n",
               http_server_parsed_bytes(req->server));
    int handlers, data;
    http_server_backlog(req->server, &handlers, &data);
    buf_printf(out,
               "# HELP rydes_http_thread_backlog Requests waiting for a thread of a set "
               "(RYDES_HANDLER_THREADS, RYDES_DATA_THREADS): the handlers' or the data plane's.\n"
               "# TYPE rydes_http_thread_backlog gauge\n"
               "rydes_http_thread_backlog{set=\"handlers\"} %d\n"
               "rydes_http_thread_backlog{set=\"data\"} %d\n",
               handlers, data);
}
