/* The connection pool and statement execution; see include/rydes/db.h.
 *
 * Pool connections run with sequential and bitmap scans disabled. Every statement the request
 * path prepares is meant to walk an index, and a queue table's statistics are wrong most of
 * the time (it was empty at the last ANALYZE, or it was full): with stale statistics the
 * planner would claim messages with a sequential scan and a sort, O(depth) per receive, until
 * autovacuum analyses the table again. Pinning the plan shape makes claims O(1) from the first
 * one. Full scans (sweeper, depth measurement, operator views) run on connections of their own.
 * Prepared statements always run their generic plan (plan_cache_mode): a claim's custom plan
 * looks cheaper than the generic one for the hint it was planned with, so the plan cache would
 * plan it anew on every execution, which cost 10-20% of the engine's cycle throughput.
 *
 * Slots are handed out from a free stack under one mutex; waiters sleep on a condition variable
 * with a monotonic-clock deadline, so a full pool turns into a 503 after the acquire timeout and
 * never into a hang. Connecting happens outside the mutex. */
#include "rydes/db.h"

#include "rydes/buf.h"
#include "rydes/clock.h"
#include "rydes/log.h"
#include "rydes/mem.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct db_pool {
    char *conninfo;
    char options[384];
    int connect_timeout_s;
    int connected; /* slots holding an open connection */
    int size;
    struct db_conn *conns;
    struct db_conn **free_stack;
    int nfree;
    int waiting;
    int64_t last_connect_failure_us; /* monotonic; 0 when the last connect worked */
    int64_t last_back_us; /* monotonic: an open connection last came back idle, or creation */
    bool probing;         /* after a failure, the one connect attempt allowed is under way */
    unsigned long long exhausted_total;
    unsigned long long connect_failures_total;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static pthread_mutex_t stmt_ids_mu = PTHREAD_MUTEX_INITIALIZER;
static int next_stmt_id = 0; /* under stmt_ids_mu */

/* Our session options followed by those of conninfo's own options keyword, or else of
 * PGOPTIONS, which libpq would have used had we given none (theirs win where both set a
 * parameter: -c settings apply in order); the caller frees. (A service file's options are not
 * read: libpq expands services only when it connects.) */
static char *merged_options(const char *conninfo, const char *ours)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    const char *theirs = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
            theirs = o->val;
    if (!theirs && getenv("PGOPTIONS") && *getenv("PGOPTIONS"))
        theirs = getenv("PGOPTIONS");
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s%s%s", ours, *ours && theirs ? " " : "", theirs ? theirs : "");
    char *merged = xstrdup(buf_str(&b));
    buf_cleanup(&b);
    PQconninfoFree(opts);
    return merged;
}

PGconn *db_connect(const char *conninfo, int connect_timeout_s, const char *options, char *err,
                   size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s);
    /* The settings come first so that the expanded conninfo, which follows, wins over them;
     * but options, which would replace ours, come last, merged with conninfo's own.
     * A vanished server (or network) becomes an error instead of a hang: keepalives notice it
     * within ~25 s on an idle connection, and tcp_user_timeout within DB_TCP_USER_TIMEOUT_MS
     * on one that has sent a statement (TCP's own retransmissions would take ~15 minutes,
     * holding the request's thread all along). */
    const char *keys[] = {"connect_timeout",
                          "application_name",
                          "client_encoding",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          "options",
                          NULL};
    char *merged = merged_options(conninfo, options ? options : "");
    const char *vals[] = {
        timeout,  "rydes", "UTF8", "1", "10", "5", "3", DB_TCP_USER_TIMEOUT_MS,
        conninfo, merged,  NULL,
    };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    free(merged);
    if (!pg)
        rydes_oom();
    if (PQstatus(pg) != CONNECTION_OK) {
        /* libpq's message spans lines; one log line reads better */
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\t')
                *p = ' ';
        size_t n = strlen(err);
        while (n && err[n - 1] == ' ')
            err[--n] = '\0';
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

bool db_reconnect(PGconn **pg, const char *conninfo, int connect_timeout_s, const char *options,
                  char *err, size_t errlen)
{
    if (*pg && PQstatus(*pg) != CONNECTION_OK) {
        PQfinish(*pg);
        *pg = NULL;
    }
    if (!*pg)
        *pg = db_connect(conninfo, connect_timeout_s, options, err, errlen);
    return *pg != NULL;
}

struct db_pool *db_pool_create(const char *conninfo, int size, int connect_timeout_s,
                               int statement_timeout_ms)
{
    struct db_pool *p = xcalloc(1, sizeof *p);
    p->conninfo = xstrdup(conninfo);
    snprintf(p->options, sizeof p->options,
             "-c statement_timeout=%d -c idle_in_transaction_session_timeout=%d "
             "-c TimeZone=UTC -c DateStyle=ISO " DB_PLANNER_OPTIONS
             " -c plan_cache_mode=force_generic_plan",
             statement_timeout_ms, statement_timeout_ms * 2);
    p->connect_timeout_s = connect_timeout_s;
    p->size = size;
    p->conns = xcalloc((size_t)size, sizeof *p->conns);
    p->free_stack = xcalloc((size_t)size, sizeof *p->free_stack);
    for (int i = 0; i < size; i++)
        p->free_stack[i] = &p->conns[size - 1 - i];
    p->nfree = size;
    pthread_mutex_init(&p->mu, NULL);
    p->last_back_us = clock_mono_us(); /* a new pool has been stuck on nothing yet */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &attr);
    pthread_condattr_destroy(&attr);
    return p;
}

void db_pool_free(struct db_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].pg)
            PQfinish(p->conns[i].pg);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->free_stack);
    free(p->conns);
    free(p->conninfo);
    free(p);
}

static struct timespec deadline_in(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Takes a free slot, waiting up to timeout_ms: the most recently freed one that holds a
 * connection, else the most recently freed (a slot whose connect failed must not hide the live
 * ones under it while the database refuses new connections). Called with p->mu held. */
static struct db_conn *take_slot(struct db_pool *p, int timeout_ms)
{
    struct timespec deadline = deadline_in(timeout_ms);
    while (p->nfree == 0) {
        p->waiting++;
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        p->waiting--;
        if (rc != 0 && p->nfree == 0) {
            p->exhausted_total += timeout_ms > 0; /* a probe's look (0) waited for nothing */
            return NULL;
        }
    }
    int i = p->nfree - 1;
    while (i > 0 && !p->free_stack[i]->pg) /* free slots are no thread's: pg does not change */
        i--;
    if (!p->free_stack[i]->pg)
        i = p->nfree - 1;
    struct db_conn *c = p->free_stack[i];
    p->free_stack[i] = p->free_stack[--p->nfree];
    return c;
}

static void put_slot(struct db_pool *p, struct db_conn *c)
{
    int64_t now = c->pg ? clock_mono_us() : 0;
    pthread_mutex_lock(&p->mu);
    if (now)
        p->last_back_us = now;
    p->free_stack[p->nfree++] = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Is an idle connection still alive? A server that went away leaves the socket readable (EOF or
 * a termination notice), which PQconsumeInput turns into CONNECTION_BAD; a live idle socket is
 * not readable, so this costs one poll(2) and no round trip. A restarted server sends its
 * termination notice and then closes: the first PQconsumeInput only reads the notice (the
 * connection still looks fine), so the socket is looked at again until it is quiet or the end
 * of the stream has turned the connection bad. */
static bool still_alive(PGconn *pg)
{
    for (int i = 0; i < 8; i++) {
        if (PQstatus(pg) != CONNECTION_OK)
            return false;
        struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
        if (poll(&pfd, 1, 0) <= 0)
            return true;
        if (!PQconsumeInput(pg))
            return false;
    }
    return PQstatus(pg) == CONNECTION_OK;
}

static void close_slot(struct db_pool *p, struct db_conn *c)
{
    if (!c->pg)
        return;
    PQfinish(c->pg);
    memset(c, 0, sizeof *c);
    pthread_mutex_lock(&p->mu);
    p->connected--;
    pthread_mutex_unlock(&p->mu);
}

/* Makes sure slot c holds a live connection, opening one if needed (outside the mutex). While
 * the last attempt failed, one thread at a time tries again, once per DB_RETRY_INTERVAL_MS;
 * the others fail at once rather than each wait out a connect timeout. */
static bool ensure_connected(struct db_pool *p, struct db_conn *c)
{
    if (c->pg && still_alive(c->pg))
        return true;
    close_slot(p, c);
    pthread_mutex_lock(&p->mu);
    int64_t last = p->last_connect_failure_us;
    bool probe = last != 0;
    bool go = !probe || (!p->probing && clock_mono_us() - last >= DB_RETRY_INTERVAL_MS * 1000);
    if (probe && go)
        p->probing = true;
    pthread_mutex_unlock(&p->mu);
    if (!go)
        return false;
    char err[256];
    c->pg = db_connect(p->conninfo, p->connect_timeout_s, p->options, err, sizeof err);
    pthread_mutex_lock(&p->mu);
    if (probe)
        p->probing = false;
    p->last_connect_failure_us = c->pg ? 0 : clock_mono_us();
    if (!c->pg)
        p->connect_failures_total++;
    else
        p->connected++;
    pthread_mutex_unlock(&p->mu);
    if (!c->pg)
        log_warn("database unreachable: %s", err);
    return c->pg != NULL;
}

struct db_conn *db_pool_acquire(struct db_pool *p, int timeout_ms, enum db_acquire_error *why)
{
    pthread_mutex_lock(&p->mu);
    struct db_conn *c = take_slot(p, timeout_ms);
    pthread_mutex_unlock(&p->mu);
    if (!c) {
        *why = DB_ACQUIRE_EXHAUSTED;
        return NULL;
    }
    if (!ensure_connected(p, c)) {
        put_slot(p, c);
        *why = DB_ACQUIRE_UNREACHABLE;
        return NULL;
    }
    *why = DB_ACQUIRE_OK;
    return c;
}

struct db_conn *db_pool_acquire_connected(struct db_pool *p, bool *busy)
{
    struct db_conn *c = NULL;
    pthread_mutex_lock(&p->mu);
    *busy = p->nfree == 0;
    for (int i = p->nfree - 1; i >= 0 && !c; i--)
        if (p->free_stack[i]->pg) { /* free slots are no thread's: their pg does not change */
            c = p->free_stack[i];
            p->free_stack[i] = p->free_stack[--p->nfree];
        }
    pthread_mutex_unlock(&p->mu);
    if (c && !still_alive(c->pg)) {
        close_slot(p, c);
        put_slot(p, c);
        c = NULL;
    }
    return c;
}

void db_pool_release(struct db_pool *p, struct db_conn *c)
{
    if (!c)
        return;
    if (c->pg) {
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            db_rollback(c);
            ts = PQtransactionStatus(c->pg);
        }
        if (ts != PQTRANS_IDLE) /* active or broken: start over next time */
            close_slot(p, c);
    }
    put_slot(p, c);
}

void db_pool_stats(struct db_pool *p, struct db_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    out->size = p->size;
    out->in_use = p->size - p->nfree;
    out->waiting = p->waiting;
    out->connected = p->connected;
    out->exhausted_total = p->exhausted_total;
    out->connect_failures_total = p->connect_failures_total;
    out->last_back_us = p->last_back_us;
    pthread_mutex_unlock(&p->mu);
}

/* The statement's index among those prepared on connections, given on its first use (under a
 * mutex, so that threads racing to use it first take one id between them, not one each). */
static int stmt_id(struct db_stmt *st)
{
    int id = atomic_load(&st->id);
    if (id > 0)
        return id - 1;
    pthread_mutex_lock(&stmt_ids_mu);
    id = atomic_load(&st->id);
    if (id == 0) {
        id = ++next_stmt_id;
        if (id > DB_MAX_STMTS) {
            log_error("more than %d prepared statements: raise DB_MAX_STMTS", DB_MAX_STMTS);
            abort();
        }
        atomic_store(&st->id, id);
    }
    pthread_mutex_unlock(&stmt_ids_mu);
    return id - 1;
}

/* libpq returns no result at all when it cannot send a command (the connection is gone, as
 * after a statement that lost it): such a call gets a failed result like any other failure,
 * carrying the connection's error message. NULL from here on is only out of memory. */
static PGresult *result_or_failure(PGconn *pg, PGresult *r)
{
    if (!r)
        r = PQmakeEmptyPGresult(pg, PGRES_FATAL_ERROR);
    if (!r)
        rydes_oom();
    return r;
}

PGresult *db_exec(struct db_conn *c, struct db_stmt *st, const char *const *values,
                  const int *lengths, const int *formats)
{
    int id = stmt_id(st);
    if (!c->prepared[id]) {
        PGresult *r =
            result_or_failure(c->pg, PQprepare(c->pg, st->name, st->sql, st->nparams, NULL));
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r; /* the caller sees the failure exactly as from the statement itself */
        PQclear(r);
        c->prepared[id] = true;
    }
    return result_or_failure(
        c->pg, PQexecPrepared(c->pg, st->name, st->nparams, values, lengths, formats, 0));
}

bool db_conn_lost(const struct db_conn *c)
{
    return !c->pg || PQstatus(c->pg) != CONNECTION_OK;
}

const char *db_sqlstate(const PGresult *res)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s ? s : "";
}

bool db_transient(const PGresult *res)
{
    const char *s = db_sqlstate(res);
    /* query_canceled (statement timeout), deadlock_detected, serialization_failure,
     * lock_not_available, admin shutdown / cannot connect now */
    static const char *const codes[] = {"57014", "40P01", "40001", "55P03", "57P01", "57P03"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(s, codes[i]) == 0)
            return true;
    return false;
}

bool db_ok(struct db_conn *c, PGresult *res, ExecStatusType want)
{
    if (PQresultStatus(res) == want)
        return true;
    if (!db_conn_lost(c))
        log_error("database error %s: %s", db_sqlstate(res), PQresultErrorMessage(res));
    return false;
}

static bool simple(struct db_conn *c, const char *sql)
{
    PGresult *r = result_or_failure(c->pg, PQexec(c->pg, sql));
    bool ok = db_ok(c, r, PGRES_COMMAND_OK);
    PQclear(r);
    return ok;
}

bool db_begin(struct db_conn *c)
{
    return simple(c, "BEGIN");
}

bool db_commit(struct db_conn *c)
{
    return simple(c, "COMMIT");
}

void db_rollback(struct db_conn *c)
{
    simple(c, "ROLLBACK");
}
