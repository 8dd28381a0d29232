/* Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document. None
 * needs a token. Readiness asks the database, so a load balancer stops sending traffic while
 * the database is away or the schema is behind, and resumes by itself when both are fine. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/migrate.h"
#include "rydes/mq.h"
#include "rydes/openapi.h"
#include "rydes/problem.h"

#include <stdlib.h>

enum handler_result api_healthz(struct http_request *req)
{
    return http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

enum handler_result api_readyz(struct http_request *req)
{
    enum db_acquire_error why;
    struct db_conn *c =
        db_pool_acquire(req->app->pool, (int)req->app->cfg->db_acquire_timeout_ms, &why);
    /* Every connection busy means the database is answering: a loaded instance is still ready
     * (pulling it from a load balancer would only move its load elsewhere). */
    if (!c && why == DB_ACQUIRE_EXHAUSTED)
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:s}", "status", "ready", "database", "busy"));
    if (!c)
        return http_reply_unavailable(req, "the database is unreachable");
    int applied = 0;
    bool asked = migrate_status(c->pg, &applied);
    api_db_release(req, c);
    int expected = (int)rydes_migrations_count;
    if (!asked)
        return http_reply_unavailable(req, "the database does not answer");
    if (applied < expected) {
        http_add_header(req, "Retry-After", "5");
        return http_reply_problem(req, 503, "database migrations are behind");
    }
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:{s:i, s:i}}", "status", "ready", "database",
                                     "ok", "migrations", "applied", applied, "expected", expected));
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
               "# HELP rydes_db_pool_exhausted_total Acquires that timed out (answered 503).\n"
               "# TYPE rydes_db_pool_exhausted_total counter\n"
               "rydes_db_pool_exhausted_total %llu\n"
               "# HELP rydes_db_connect_failures_total Failed attempts to open a connection.\n"
               "# TYPE rydes_db_connect_failures_total counter\n"
               "rydes_db_connect_failures_total %llu\n",
               st.in_use, st.connected > st.in_use ? st.connected - st.in_use : 0, st.connected,
               st.size, st.waiting, st.exhausted_total, st.connect_failures_total);
}

/* Queue depths as the sweeper last measured them; left out while the database is away. */
static void render_queues(struct http_request *req, struct buf *out)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(req->app->pool, 200, &why);
    if (!c)
        return;
    struct mq_depth *d = NULL;
    int n = 0;
    enum mq_status st = mq_queue_depths(c, &d, &n);
    db_pool_release(req->app->pool, c);
    if (st != MQ_OK)
        return;
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
    buf_puts(out, "# HELP rydes_dead_letter_messages Messages waiting in dead-letter queues.\n"
                  "# TYPE rydes_dead_letter_messages gauge\n");
    for (int i = 0; i < n; i++)
        if (d[i].dead_letter)
            buf_printf(out, "rydes_dead_letter_messages{queue=\"%s\"} %lld\n", d[i].name,
                       d[i].stats.available + d[i].stats.in_flight + d[i].stats.delayed);
    free(d);
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
               "rydes_push_attempts_total{outcome=\"failed\"} %llu\n",
               (unsigned long long)atomic_load(&c->delivered),
               (unsigned long long)atomic_load(&c->retried),
               (unsigned long long)atomic_load(&c->dead_lettered),
               (unsigned long long)atomic_load(&c->failed));
}

enum handler_result api_metrics(struct http_request *req)
{
    struct buf out;
    buf_init(&out);
    metrics_render(req->app->metrics, &out);
    render_pool(req->app->pool, &out);
    render_queues(req, &out);
    render_topics(req->app, &out);
    services_render_metrics(req->app->services, &out);
    buf_printf(&out,
               "# HELP rydes_long_poll_waiters Receives waiting for messages (long polls).\n"
               "# TYPE rydes_long_poll_waiters gauge\nrydes_long_poll_waiters %d\n",
               mq_hub_waiters(req->app->hub));
    buf_printf(&out,
               "# HELP rydes_http_in_flight Requests being processed.\n"
               "# TYPE rydes_http_in_flight gauge\nrydes_http_in_flight %d\n",
               http_server_in_flight(req->server));
    enum handler_result r =
        http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf_str(&out), out.len);
    buf_cleanup(&out);
    return r;
}

enum handler_result api_openapi(struct http_request *req)
{
    return http_reply(req, 200, "application/json", rydes_openapi_json, rydes_openapi_json_len);
}
