/* Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document. None
 * needs a token. Readiness asks the database, so a load balancer stops sending traffic while
 * the database is away or the schema is behind, and resumes by itself when both are fine. */
#include "rydes/api.h"

#include "rydes/app.h"
#include "rydes/clock.h"
#include "rydes/migrate.h"
#include "rydes/mq.h"
#include "rydes/openapi.h"
#include "rydes/problem.h"

#include <stdlib.h>

enum handler_result api_healthz(struct http_request *req)
{
    return http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static enum handler_result readyz_reply(struct http_request *req, int applied)
{
    int expected = (int)rydes_migrations_count;
    if (applied < expected) {
        http_add_header(req, "Retry-After", "5");
        return http_reply_problem(req, 503, "database migrations are behind");
    }
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:{s:i, s:i}}", "status", "ready", "database",
                                     "ok", "migrations", "applied", applied, "expected", expected));
}

/* Asks c whether every migration is applied (unless the database said all were less than a
 * second ago: probes need no token, and their rate must not set what they cost), gives c back,
 * and answers. */
static enum handler_result readyz_answer(struct http_request *req, struct db_conn *c)
{
    int applied = ops_cache_ready(req->app->ops_cache);
    if (applied >= 0) {
        api_db_release(req, c);
        return readyz_reply(req, applied);
    }
    bool asked = migrate_status(c->pg, &applied);
    api_db_release(req, c);
    if (!asked)
        return http_reply_unavailable(req, "the database does not answer");
    if (applied >= (int)rydes_migrations_count) /* behind: asked again at the next probe */
        ops_cache_ready_seen(req->app->ops_cache, applied);
    return readyz_reply(req, applied);
}

/* How long every connection may stay taken before a busy pool no longer counts as a working
 * database: statements that long (a database that stopped answering under them) are stuck. */
#define READY_BUSY_US 5000000

/* None free: ready while connections keep coming back (the database answers), 503 once none
 * has for READY_BUSY_US. */
static enum handler_result readyz_busy(struct http_request *req)
{
    struct db_pool_stats st;
    db_pool_stats(req->app->pool, &st);
    if (clock_mono_us() - st.last_back_us > READY_BUSY_US)
        return http_reply_unavailable(req, "every database connection has been busy for more "
                                           "than 5 s: the database does not answer");
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s}", "status", "ready", "database", "busy"));
}

/* The probe when no open connection was free: opens one on a data-plane thread. */
static enum handler_result readyz_connecting(struct http_request *req)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(req->app->pool, 0, &why);
    if (!c && why == DB_ACQUIRE_EXHAUSTED)
        return readyz_busy(req);
    if (!c)
        return http_reply_unavailable(req, "the database is unreachable");
    return readyz_answer(req, c);
}

enum handler_result api_readyz(struct http_request *req)
{
    /* Every connection busy means the database is answering: a loaded instance is still ready
     * (pulling it from a load balancer would only move its load elsewhere). So the probe takes
     * an open connection that is free, at once, on its HTTP thread; none free is "busy"; free
     * ones that are not open are opened on a data-plane thread (a connect may take seconds).
     * A connection the database closed (it stopped) is found so without a query. */
    /* a probe on a connection kept alive across the start of a shutdown: this instance is
     * going, whatever its database says */
    if (http_request_stopping(req))
        return http_reply_unavailable(req, "the server is shutting down");
    bool busy;
    struct db_conn *c = db_pool_acquire_connected(req->app->pool, &busy);
    if (c)
        return readyz_answer(req, c);
    return busy ? readyz_busy(req) : http_offload_data(req, readyz_connecting);
}

enum handler_result api_metrics(struct http_request *req)
{
    struct buf out;
    buf_init(&out);
    metrics_render(req->app->metrics, &out);
    ops_metrics_render(req, &out);
    enum handler_result r =
        http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf_str(&out), out.len);
    buf_cleanup(&out);
    return r;
}

enum handler_result api_openapi(struct http_request *req)
{
    return http_reply_static(req, 200, "application/json", rydes_openapi_json,
                             rydes_openapi_json_len);
}
