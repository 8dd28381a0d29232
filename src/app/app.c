/* Start-up and shutdown of the gateway; see include/rydes/app.h. */
#include "rydes/app.h"

#include "rydes/api.h"
#include "rydes/aws.h"
#include "rydes/aws_store.h"
#include "rydes/buf.h"
#include "rydes/clock.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/migrate.h"
#include "rydes/mq.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_fanout.h"
#include "rydes/ratelimit.h"
#include "rydes/rides.h"
#include "rydes/secret.h"
#include "rydes/services.h"
#include "rydes/tokens.h"
#include "rydes/topology.h"
#include "rydes/validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Token roles and queue attributes are cached this long: a change made by another process
 * (a deleted token, new queue attributes) takes effect within a second. */
#define APP_CACHE_TTL_US       1000000
#define APP_CACHE_SLOTS        1024
#define APP_RATE_SLOTS         4096
#define APP_CLIENT_RATE_SLOTS  65536 /* app tokens: a bucket per token and client address */
#define APP_SEEN_SLOTS         16384 /* credentials found valid lately (app_lookup_allowed) */
#define APP_RATE_BURST_SECONDS 2     /* a token may burst to two seconds' worth of requests */

bool app_migrate(const struct config *cfg, bool migrate, int *applied, char *err, size_t errlen)
{
    char cerr[256];
    *applied = 0;
    PGconn *pg =
        db_connect(cfg->database_url, (int)cfg->db_connect_timeout, NULL, cerr, sizeof cerr);
    if (!pg) {
        snprintf(err, errlen, "cannot connect to the database: %s", cerr);
        return false;
    }
    bool ok = !migrate || migrate_apply(pg, applied, err, errlen);
    if (!migrate && cfg->grant_role[0])
        log_warn("RYDES_GRANT_ROLE is ignored with migrations off (RYDES_MIGRATE=false): "
                 "nothing is granted to %s",
                 cfg->grant_role);
    if (ok && migrate && cfg->grant_role[0]) {
        ok = migrate_grant(pg, cfg->grant_role, err, errlen);
        if (ok)
            log_info("granted data access to role %s", cfg->grant_role);
    }
    int have = 0;
    /* without migrating, a database that is behind gets no topology (it would fail): the
     * gateway starts and /readyz says not ready until someone migrates */
    bool current = migrate || (migrate_status(pg, &have) && have == (int)rydes_migrations_count);
    if (ok && !current)
        log_warn("the database has %d of %d migrations: the Wild Rydes topology is not ensured",
                 have, (int)rydes_migrations_count);
    ok = ok && (!current || topology_ensure(pg, cfg, err, errlen));
    PQfinish(pg);
    return ok;
}

static const unsigned char all_key[1] = {0};

/* The failure budgets: an address's, and the process's (ten times as large, refilled twenty
 * times as fast). */
struct budgets {
    double rate, burst, all_rate, all_burst;
};

static struct budgets budgets_of(const struct app *app)
{
    double rate = (double)app->cfg->auth_failures_per_minute / 60.0;
    double burst = (double)app->cfg->auth_failure_burst;
    return (struct budgets){rate, burst, rate * 20, burst * 10};
}

/* Would both budgets let a lookup from peer through now? Takes nothing (the question only). */
static enum app_lookup budgets_hold(struct app *app, const unsigned char *peer, size_t peer_len,
                                    const struct budgets *b, int64_t now, int *retry_after)
{
    if (!ratelimit_holds(app->auth_failures, peer, peer_len, b->rate, b->burst, now, retry_after))
        return APP_LOOKUP_ADDRESS_FAILING;
    if (!ratelimit_holds(app->auth_failures_all, all_key, sizeof all_key, b->all_rate, b->all_burst,
                         now, retry_after))
        return APP_LOOKUP_ALL_FAILING;
    return APP_LOOKUP_OK;
}

enum app_lookup app_lookup_allowed(struct app *app, const unsigned char *peer, size_t peer_len,
                                   const void *key, size_t key_len, int *retry_after, bool *charged)
{
    if (charged)
        *charged = false;
    unsigned char seen;
    if (ttlcache_get(app->seen_valid, key, key_len, &seen, NULL))
        return APP_LOOKUP_OK;
    int64_t now = clock_mono_us();
    struct budgets b = budgets_of(app);
    if (!charged)
        return budgets_hold(app, peer, peer_len, &b, now, retry_after);
    if (!ratelimit_take(app->auth_failures, peer, peer_len, b.rate, b.burst, now, retry_after))
        return APP_LOOKUP_ADDRESS_FAILING;
    if (!ratelimit_take(app->auth_failures_all, all_key, sizeof all_key, b.all_rate, b.all_burst,
                        now, retry_after)) {
        ratelimit_give(app->auth_failures, peer, peer_len, b.rate, b.burst, now);
        return APP_LOOKUP_ALL_FAILING;
    }
    *charged = true;
    return APP_LOOKUP_OK;
}

void app_lookup_result(struct app *app, const unsigned char *peer, size_t peer_len, const void *key,
                       size_t key_len, bool valid, bool charged)
{
    if (!valid) {
        ttlcache_forget(app->seen_valid, key, key_len); /* gone: exempt no more */
        return;
    }
    unsigned char seen = 1;
    uint64_t gen = 0; /* nothing here bumps it: ttlcache_forget leaves it alone */
    ttlcache_get(app->seen_valid, key, key_len, &seen, &gen);
    ttlcache_put(app->seen_valid, key, key_len, &seen, gen);
    if (!charged)
        return;
    int64_t now = clock_mono_us();
    struct budgets b = budgets_of(app);
    ratelimit_give(app->auth_failures, peer, peer_len, b.rate, b.burst, now);
    ratelimit_give(app->auth_failures_all, all_key, sizeof all_key, b.all_rate, b.all_burst, now);
}

/* Looks the bearer token of req up (cache first, then the token store, if the client at peer
 * may) into *role. Where it may not wait (an HTTP thread, http_may_wait) it only asks the budget
 * and passes the lookup on (HTTP_AUTH_ELSEWHERE): the run there finds the cache filled by a
 * lookup of the same token meanwhile (a burst of one token's first requests), or charges one. */
static enum http_auth lookup_token(struct http_request *req, const char *token,
                                   const unsigned char *hash, const unsigned char *peer,
                                   size_t peer_len, enum role *role, int *retry_after)
{
    struct app *app = req->app;
    uint64_t gen;
    if (ttlcache_get(app->token_cache, hash, SECRET_HASH_LEN, role, &gen))
        return HTTP_AUTH_OK;
    bool may_wait = http_may_wait(req), charged = false;
    enum app_lookup allowed = app_lookup_allowed(app, peer, peer_len, hash, SECRET_HASH_LEN,
                                                 retry_after, may_wait ? &charged : NULL);
    if (allowed != APP_LOOKUP_OK)
        return allowed == APP_LOOKUP_ADDRESS_FAILING ? HTTP_AUTH_FAILING : HTTP_AUTH_ALL_FAILING;
    if (!may_wait)
        return HTTP_AUTH_ELSEWHERE;
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, (int)app->cfg->db_acquire_timeout_ms, &why);
    if (!c)
        return HTTP_AUTH_UNAVAILABLE;
    enum store_result r = tokens_authenticate(c, token, role);
    db_pool_release(app->pool, c);
    if (r == STORE_OK) /* only valid tokens are cached: a miss always asks the database */
        ttlcache_put(app->token_cache, hash, SECRET_HASH_LEN, role, gen);
    if (r == STORE_OK || r == STORE_NOT_FOUND)
        app_lookup_result(app, peer, peer_len, hash, SECRET_HASH_LEN, r == STORE_OK, charged);
    return r == STORE_OK                                ? HTTP_AUTH_OK
           : r == STORE_UNAVAILABLE || r == STORE_ERROR ? HTTP_AUTH_UNAVAILABLE
                                                        : HTTP_AUTH_INVALID;
}

/* The requests per second a role may make (0: no limit). */
static double rate_of(const struct config *cfg, enum role role)
{
    return (double)(role == ROLE_APP       ? cfg->rate_limit_app
                    : role == ROLE_SERVICE ? cfg->rate_limit_service
                                           : cfg->rate_limit_admin);
}

/* The key of a request's bucket into key: the token's hash, and for an app token (one for
 * every customer) the client's address. Returns its length. */
static size_t rate_key(unsigned char key[SECRET_HASH_LEN + HTTP_PEER_KEY_MAX],
                       const unsigned char hash[SECRET_HASH_LEN], enum role role,
                       const unsigned char *peer, size_t peer_len)
{
    memcpy(key, hash, SECRET_HASH_LEN);
    if (role > ROLE_APP || peer_len > HTTP_PEER_KEY_MAX)
        return SECRET_HASH_LEN;
    memcpy(key + SECRET_HASH_LEN, peer, peer_len);
    return SECRET_HASH_LEN + peer_len;
}

bool app_rate_take(struct app *app, const unsigned char hash[SECRET_HASH_LEN], enum role role,
                   const unsigned char *peer, size_t peer_len, int *retry_after)
{
    double rate = rate_of(app->cfg, role), burst = rate * APP_RATE_BURST_SECONDS;
    double total = role <= ROLE_APP ? (double)app->cfg->rate_limit_app_token : 0;
    unsigned char key[SECRET_HASH_LEN + HTTP_PEER_KEY_MAX];
    size_t n = rate_key(key, hash, role, peer, peer_len);
    struct ratelimit *rl = app->rate_limits[role > ROLE_APP ? role : ROLE_APP];
    int64_t now = clock_mono_us();
    if (rate > 0 && !ratelimit_take(rl, key, n, rate, burst, now, retry_after))
        return false;
    if (total <= 0 || ratelimit_take(app->app_token_totals, hash, SECRET_HASH_LEN, total,
                                     total * APP_RATE_BURST_SECONDS, now, retry_after))
        return true;
    if (rate > 0) /* refused for the token's total: the client's own budget is not spent */
        ratelimit_give(rl, key, n, rate, burst, now);
    return false;
}

/* Authenticates a bearer token for the HTTP layer and charges its rate limit. */
static enum http_auth app_authenticate(struct http_request *req, const char *token,
                                       const unsigned char *peer, size_t peer_len, enum role *role,
                                       int *retry_after)
{
    unsigned char hash[SECRET_HASH_LEN];
    secret_token_hash(token, strlen(token), hash);
    enum http_auth a = lookup_token(req, token, hash, peer, peer_len, role, retry_after);
    if (a == HTTP_AUTH_OK && !app_rate_take(req->app, hash, *role, peer, peer_len, retry_after))
        return HTTP_AUTH_LIMITED;
    return a;
}

static bool ensure_admin_token(struct app *app, char *err, size_t errlen)
{
    const char *token = app->cfg->admin_token;
    if (!token[0])
        return true;
    /* its form was checked with the settings (config.c) */
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, (int)app->cfg->db_acquire_timeout_ms, &why);
    if (!c) {
        snprintf(err, errlen, "cannot connect to the database to ensure RYDES_ADMIN_TOKEN");
        return false;
    }
    enum store_result r = tokens_ensure_admin(c, token);
    db_pool_release(app->pool, c);
    if (r == STORE_NOT_FOUND)
        snprintf(err, errlen,
                 "RYDES_ADMIN_TOKEN is the secret of a token made otherwise (rydes token create, "
                 "POST /tokens): it would become admin; give the bootstrap token its own secret");
    else if (r != STORE_OK)
        snprintf(err, errlen, "could not store RYDES_ADMIN_TOKEN (see the log)");
    return r == STORE_OK;
}

static void app_free_parts(struct app *app)
{
    free(app->tls_cert);
    if (app->tls_key) /* the private key does not linger in freed memory */
        explicit_bzero(app->tls_key, strlen(app->tls_key));
    free(app->tls_key);
    app->tls_cert = app->tls_key = NULL;
    /* every background thread is asked first, so they stop together, not one after another;
     * consumers waiting for messages wake at once */
    if (app->hub)
        mq_hub_request_stop(app->hub);
    services_request_stop(app->services);
    mq_push_request_stop(app->push);
    mq_sweeper_request_stop(app->sweeper);
    mq_fanout_request_stop(app->fanout);
    /* push first: its POSTs in flight are abandoned and its ended ones written back now, not
     * after the services' handlers (their timeouts would run meanwhile, and an answer that
     * came in would be taken for a timeout) */
    mq_push_stop(app->push);
    app->push = NULL;
    services_stop(app->services);
    app->services = NULL;
    if (app->hub) /* its thread calls into the topic cache, freed below */
        mq_hub_shutdown(app->hub);
    ttlcache_free(app->token_cache);
    for (int r = 0; r <= ROLE_ADMIN; r++) {
        ratelimit_free(app->rate_limits[r]);
        app->rate_limits[r] = NULL;
    }
    ratelimit_free(app->auth_failures);
    ratelimit_free(app->auth_failures_all);
    ratelimit_free(app->app_token_totals);
    app->app_token_totals = NULL;
    ttlcache_free(app->seen_valid);
    app->auth_failures = app->auth_failures_all = NULL;
    app->seen_valid = NULL;
    ttlcache_free(app->queue_cache);
    ttlcache_free(app->aws_key_cache); /* holds secrets of access keys */
    topic_cache_free(app->topic_cache);
    app->token_cache = app->queue_cache = app->aws_key_cache = NULL;
    app->topic_cache = NULL;
    ops_cache_free(app->ops_cache);
    app->ops_cache = NULL;
    mq_combiner_free(app->combiner); /* before the pool it draws on */
    app->combiner = NULL;
    mq_sweeper_stop(app->sweeper);
    mq_fanout_stop(app->fanout);
    app->fanout = NULL;
    mq_hub_free(app->hub);
    app->sweeper = NULL;
    db_pool_free(app->pool);
    metrics_free(app->metrics);
    app->hub = NULL;
    app->pool = NULL;
    app->metrics = NULL;
}

/* The hub heard that a topic changed (0: any may have). */
static void on_topics_changed(void *ctx, int topic_id)
{
    topic_cache_invalidate(ctx, topic_id);
}

static void curl_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        log_warn("libcurl did not initialise; push deliveries will fail");
}

/* Waiting long polls hold connections: leave a quarter of the connection limit to others. */
static int max_waiters_of(const struct config *cfg)
{
    int max_waiters = (int)cfg->max_waiters;
    if (max_waiters > cfg->connection_limit * 3 / 4) {
        max_waiters = (int)(cfg->connection_limit * 3 / 4);
        log_warn("RYDES_MAX_WAITERS lowered to %d, three quarters of RYDES_CONNECTION_LIMIT",
                 max_waiters);
    }
    return max_waiters;
}

/* Starts the background parts: the hub, the sweeper, the push worker, the services. */
static void start_background(struct app *app)
{
    const struct config *cfg = app->cfg;
    app->hub = mq_hub_start(cfg->database_url, (int)cfg->db_connect_timeout, max_waiters_of(cfg),
                            on_topics_changed, app->topic_cache);
    if (config_worker_enabled(cfg, "push"))
        app->push = mq_push_start(cfg->database_url, (int)cfg->db_connect_timeout);
    app->fanout = mq_fanout_start(cfg->database_url, (int)cfg->db_connect_timeout);
    if (cfg->sweep_interval_ms > 0)
        app->sweeper = mq_sweeper_start(cfg->database_url, (int)cfg->db_connect_timeout,
                                        (int)cfg->sweep_interval_ms, "SELECT rydes_sweep(1000)");
    struct consumer_env env = {.pool = app->pool,
                               .hub = app->hub,
                               .topics = app->topic_cache,
                               .cfg = cfg,
                               .acquire_timeout_ms = (int)cfg->db_acquire_timeout_ms};
    app->services = services_start(cfg, &env);
}

/* Migrates and starts what serve and worker share, into app (zeroed, or holding only what
 * load_tls read), and with admin_token ensures RYDES_ADMIN_TOKEN (serve only: a worker process
 * with a stale value would revoke the gateway's); on failure everything it holds is freed. */
static bool start_core(struct app *app, const struct config *cfg, bool admin_token, char *err,
                       size_t errlen)
{
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    pthread_once(&curl_once, curl_init_once);
    app->cfg = cfg;
    app->started_wall_us = clock_wall_us();
    int applied = 0;
    if (!app_migrate(cfg, cfg->migrate, &applied, err, errlen)) {
        app_free_parts(app);
        return false;
    }
    app->token_cache = ttlcache_create(APP_CACHE_SLOTS, sizeof(enum role), APP_CACHE_TTL_US);
    for (int r = ROLE_APP; r <= ROLE_ADMIN; r++)
        app->rate_limits[r] =
            ratelimit_create(r == ROLE_APP ? APP_CLIENT_RATE_SLOTS : APP_RATE_SLOTS);
    app->auth_failures = ratelimit_create(APP_RATE_SLOTS);
    app->auth_failures_all = ratelimit_create(1);
    app->app_token_totals = ratelimit_create(APP_RATE_SLOTS);
    app->seen_valid = ttlcache_create(APP_SEEN_SLOTS, 1, (int64_t)APP_SEEN_VALID_S * 1000000);
    app->topic_cache = topic_cache_create();
    app->ops_cache = ops_cache_create();
    app->queue_cache = ttlcache_create(APP_CACHE_SLOTS, sizeof(struct mq_queue), APP_CACHE_TTL_US);
    app->aws_key_cache = ttlcache_create(APP_CACHE_SLOTS, sizeof(struct aws_key), APP_CACHE_TTL_US);
    app->pool = db_pool_create(cfg->database_url, (int)cfg->db_pool_size,
                               (int)cfg->db_connect_timeout, (int)cfg->db_statement_timeout_ms);
    app->metrics = metrics_create(api_routes, api_nroutes);
    if (admin_token && !ensure_admin_token(app, err, errlen)) {
        app_free_parts(app);
        return false;
    }
    start_background(app);
    return true;
}

bool app_start_workers(struct app *app, const struct config *cfg, char *err, size_t errlen)
{
    memset(app, 0, sizeof *app);
    return start_core(app, cfg, false, err, errlen);
}

/* Reads a whole (small) file into a malloc'd string; NULL with err filled on failure. */
#define FILE_MAX 1048576 /* a certificate or key file is smaller than this */

/* Reads a whole file of up to FILE_MAX bytes (caller frees; the key's caller wipes it first).
 * Unbuffered reads into one buffer, wiped before it is freed, so no copy of a private key is
 * left in freed memory (stdio's buffer, a growing buffer's old blocks). */
static char *read_file(const char *path, const char *what, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *all = fd >= 0 ? xmalloc(FILE_MAX) : NULL;
    size_t len = 0;
    bool ok = fd >= 0;
    while (ok && len < FILE_MAX) {
        ssize_t n = read(fd, all + len, FILE_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n >= 0;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    ok = ok && len > 0 && len < FILE_MAX && !memchr(all, '\0', len);
    char *text = NULL;
    if (ok) {
        text = xmalloc(len + 1);
        memcpy(text, all, len);
        text[len] = '\0';
    } else {
        snprintf(err, errlen, "%s: cannot read %s (or it is empty, binary or over 1 MiB)", what,
                 path);
    }
    if (all)
        explicit_bzero(all, len);
    free(all);
    return text;
}

/* Loads the TLS certificate and key when both are configured (neither: plain HTTP). */
static bool load_tls(struct app *app, const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->tls_cert[0] && !cfg->tls_key[0])
        return true;
    if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
        snprintf(err, errlen, "RYDES_TLS_CERT and RYDES_TLS_KEY go together");
        return false;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS");
        return false;
    }
    app->tls_cert = read_file(cfg->tls_cert, "RYDES_TLS_CERT", err, errlen);
    app->tls_key = app->tls_cert ? read_file(cfg->tls_key, "RYDES_TLS_KEY", err, errlen) : NULL;
    return app->tls_key != NULL;
}

/* RYDES_THREADS, or half the CPU cores (rounded up) when it is 0. PostgreSQL's backends share
 * the machine and do most of a request's work; HTTP threads beyond that only add wake-ups and
 * hand-offs (2 cores, 8 connections, 2026-11-27: the HTTP cycle 7.2-8.1k/s with one thread
 * against 6.4-6.5k with two, sends and publishes the same). */
static int http_threads(const struct config *cfg)
{
    if (cfg->threads > 0)
        return (int)cfg->threads;
    cpu_set_t set; /* the CPUs this process may run on (a container's cpuset), not the host's */
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (cores < 1)
        cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (cores + 1) / 2;
    return threads < 1 ? 1 : threads > 64 ? 64 : threads;
}

/* The data plane's threads: RYDES_DATA_THREADS, or as many as the handlers' (0). */
static int data_threads(const struct config *cfg)
{
    return (int)(cfg->data_threads > 0 ? cfg->data_threads : cfg->handler_threads);
}

/* Warns when the pool is smaller than what the threads may hold at once: both sets of threads
 * and the combiner's lanes (the workers share what is left). Slow handlers would then take
 * connections the data plane waits for. */
static void check_pool(const struct config *cfg)
{
    int data = cfg->handler_threads ? data_threads(cfg) : 0; /* none without handler threads */
    long long held = cfg->handler_threads + data + (cfg->combine ? MQ_COMBINED_KINDS : 0);
    if (cfg->db_pool_size < held)
        log_warn("RYDES_DB_POOL_SIZE %lld is below the %lld connections that the handler "
                 "threads (%lld), the data plane's (%d) and the combiner's lanes may hold at "
                 "once: slow handlers can take those the data plane waits for",
                 (long long)cfg->db_pool_size, held, (long long)cfg->handler_threads, data);
}

bool app_start(struct app *app, const struct config *cfg, char *err, size_t errlen)
{
    check_pool(cfg);
    /* before anything is changed or started: a missing key file fails without side effects */
    memset(app, 0, sizeof *app);
    if (!load_tls(app, cfg, err, errlen)) {
        app_free_parts(app);
        return false;
    }
    if (!start_core(app, cfg, true, err, errlen))
        return false;
    if (cfg->combine) /* serves the HTTP data plane only */
        app->combiner = mq_combiner_start(app->pool, (int)cfg->db_acquire_timeout_ms,
                                          MQ_COMBINER_STALL_MS, &rides_combiner_kind);
    struct http_server_config hc = {
        .bind = cfg->bind,
        .port = (int)cfg->port,
        .threads = http_threads(cfg),
        .handler_threads = (int)cfg->handler_threads,
        .data_threads = data_threads(cfg),
        .thread_queue_limit = (int)cfg->thread_queue_limit,
        .connection_limit = (int)cfg->connection_limit,
        .connection_timeout = (int)cfg->connection_timeout,
        .request_timeout = (int)cfg->request_timeout,
        .connection_memory_limit = (size_t)cfg->connection_memory_limit,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .parsed_body_memory = (size_t)cfg->parsed_body_memory,
        .routes = api_routes,
        .nroutes = api_nroutes,
        .authenticate = app_authenticate,
        .before_raw_body = aws_before_body,
        .app = app,
        .metrics = app->metrics,
        .tls_cert_pem = app->tls_cert,
        .tls_key_pem = app->tls_key,
    };
    /* checked when the setting was read (config.c); a list that did not parse would be empty */
    (void)cidr_list_parse(cfg->trusted_proxies, &hc.trusted_proxies);
    app->http = http_server_start(&hc);
    if (!app->http) {
        snprintf(err, errlen,
                 "cannot serve HTTP on %s port %lld (the port in use, or the TLS certificate or "
                 "key refused: see the log above)",
                 cfg->bind, (long long)cfg->port);
        app_free_parts(app);
        return false;
    }
    return true;
}

void app_stop(struct app *app)
{
    /* Long polls answer first (with what they have), so the in-flight wait below is short, and
     * no connection is accepted from here on. The hub's thread, which may take a while to stop (a
     * statement on a stalled database), is waited for only once the HTTP server has stopped. */
    int64_t timeout_ms = app->cfg->shutdown_timeout * 1000, t0 = clock_mono_us();
    mq_hub_request_stop(app->hub);
    http_server_quiesce(app->http);
    /* Combined sends finish now (sends from here on take their own statements), within the
     * shutdown timeout that the in-flight wait below shares. */
    int64_t budget_ms = timeout_ms - (clock_mono_us() - t0) / 1000;
    mq_combiner_stop(app->combiner, budget_ms > 0 ? (int)budget_ms : 0);
    int64_t left_ms = timeout_ms - (clock_mono_us() - t0) / 1000;
    if (app->http)
        http_server_stop(app->http, left_ms > 0 ? (int)left_ms : 0);
    app->http = NULL;
    app_free_parts(app);
}
