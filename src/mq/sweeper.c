/* The sweeper thread; see include/rydes/mq_sweeper.h. */
#include "rydes/mq_sweeper.h"

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/worker.h"

#include <stdbool.h>
#include <stdlib.h>

#define SWEEP_BATCH_S     "1000"  /* rows deleted per queue and sweep, at most */
#define SWEEP_WINDOW_S    "10000" /* oldest messages of a queue looked at for expiry */
#define MEASURE_MIN_US    5000000 /* depths are measured at most this often... */
#define MEASURE_COST_MULT 20      /* ...and spend at most 1/20 of the time measuring */

/* "sweep" in ASCII: the advisory-lock key of the sweeper; and of the measurement, "depth". */
#define SWEEP_LOCK_KEY   "495874320752"
#define MEASURE_LOCK_KEY "431198598248"
#define SWEEP_AGAIN_MS   10 /* a sweep that deleted a whole batch: the next one soon */

/* A plan cached while a table was empty (a new database) can read a whole queue once per
 * expired message it deletes, and one made for a table without statistics can read a whole
 * queue to find its oldest 10,000 (051's header): each statement is planned afresh, by index as
 * the pool's are. Planning costs ~0.25 ms a statement, paid by each queue a sweep looks at
 * (those due: most sweeps look at none); the depth measurement keeps its sequential scan. */
const char mq_sweeper_options[] =
    "-c statement_timeout=60000 -c plan_cache_mode=force_custom_plan " DB_PLANNER_OPTIONS;

struct mq_sweeper {
    char *conninfo;
    const char *extra; /* another layer's sweep statement, or NULL */
    int connect_timeout_s;
    int interval_ms;
    PGconn *pg;
    int64_t next_measure_us;
    int64_t next_extra_us; /* the other layers' sweep is due then */
    struct worker *worker;
};

static bool exec_ok(PGconn *pg, const char *sql, ExecStatusType want, PGresult **out)
{
    PGresult *r = PQexec(pg, sql);
    bool ok = PQresultStatus(r) == want;
    if (!ok && PQstatus(pg) == CONNECTION_OK)
        log_warn("sweeper: %s", PQresultErrorMessage(r));
    if (out && ok)
        *out = r;
    else
        PQclear(r);
    return ok;
}

long long mq_sweep_once(void *arg)
{
    PGconn *pg = arg;
    PGresult *r = NULL;
    long long n = -1;
    if (!exec_ok(pg, "BEGIN", PGRES_COMMAND_OK, NULL))
        return -1;
    if (exec_ok(pg, "SELECT pg_try_advisory_xact_lock(" SWEEP_LOCK_KEY ")", PGRES_TUPLES_OK, &r)) {
        bool mine = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        n = mine ? -1 : 0; /* another process sweeps this turn */
        if (mine && exec_ok(pg, "SELECT mq_sweep(" SWEEP_BATCH_S ", " SWEEP_WINDOW_S ")",
                            PGRES_TUPLES_OK, &r)) {
            n = atoll(PQgetvalue(r, 0, 0));
            PQclear(r);
        }
    }
    if (!exec_ok(pg, n >= 0 ? "COMMIT" : "ROLLBACK", PGRES_COMMAND_OK, NULL))
        n = -1;
    return n;
}

/* The wall clock in the database, in milliseconds: the shared schedule's unit. */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

int mq_measure_once(void *arg)
{
    PGconn *pg = arg;
    PGresult *r = NULL;
    if (!exec_ok(pg, "BEGIN", PGRES_COMMAND_OK, NULL))
        return -1;
    int measured = -1;
    if (exec_ok(pg,
                "SELECT pg_try_advisory_xact_lock(" MEASURE_LOCK_KEY ") AND coalesce((SELECT "
                "after FROM sweep_cursors WHERE name = 'depths'), 0) <= " NOW_MS,
                PGRES_TUPLES_OK, &r)) {
        bool due = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        measured = 0;
        int64_t t0 = clock_mono_us();
        if (due && exec_ok(pg, "SELECT mq_measure_depths()", PGRES_TUPLES_OK, NULL)) {
            char sql[200]; /* the next measurement, by anyone: MEASURE_COST_MULT times this one */
            long long wait_ms = (clock_mono_us() - t0) * MEASURE_COST_MULT / 1000;
            snprintf(sql, sizeof sql,
                     "UPDATE sweep_cursors SET after = " NOW_MS " + %lld WHERE name = 'depths'",
                     wait_ms > MEASURE_MIN_US / 1000 ? wait_ms : MEASURE_MIN_US / 1000);
            measured = exec_ok(pg, sql, PGRES_COMMAND_OK, NULL) ? 1 : -1;
        } else if (due) {
            measured = -1;
        }
    }
    if (!exec_ok(pg, measured >= 0 ? "COMMIT" : "ROLLBACK", PGRES_COMMAND_OK, NULL))
        measured = -1;
    return measured;
}

/* Every MEASURE_MIN_US this process offers to measure; the shared schedule decides. */
static void measure(struct mq_sweeper *s)
{
    if (clock_mono_us() < s->next_measure_us)
        return;
    mq_measure_once(s->pg);
    s->next_measure_us = clock_mono_us() + MEASURE_MIN_US;
}

static int sweep_step(struct worker *w, void *arg)
{
    struct mq_sweeper *s = arg;
    char err[256];
    if (!db_reconnect(&s->pg, s->conninfo, s->connect_timeout_s, mq_sweeper_options, err,
                      sizeof err))
        return s->interval_ms; /* the pool and readiness report the outage */
    long long n = mq_sweep_once(s->pg);
    if (n > 0)
        log_debug("sweeper deleted %lld expired rows", n);
    if (worker_stopping(w)) /* asked to stop during the sweep: the rest can wait */
        return 0;
    /* the other layers' sweep keeps to the interval, whether this one hurries or not */
    if (s->extra && clock_mono_us() >= s->next_extra_us) {
        exec_ok(s->pg, s->extra, PGRES_TUPLES_OK, NULL);
        s->next_extra_us = clock_mono_us() + s->interval_ms * 1000LL;
    }
    measure(s);
    /* a batch's worth of messages and dedup ids deleted: more may be due (retention behind a
     * fast producer) */
    bool hurry = n >= atoll(SWEEP_BATCH_S) && s->interval_ms > SWEEP_AGAIN_MS;
    return hurry ? SWEEP_AGAIN_MS : s->interval_ms;
}

struct mq_sweeper *mq_sweeper_start(const char *conninfo, int connect_timeout_s, int interval_ms,
                                    const char *extra)
{
    struct mq_sweeper *s = xcalloc(1, sizeof *s);
    s->extra = extra;
    s->conninfo = xstrdup(conninfo);
    s->connect_timeout_s = connect_timeout_s;
    s->interval_ms = interval_ms;
    s->worker = worker_start(sweep_step, s);
    return s;
}

void mq_sweeper_request_stop(struct mq_sweeper *s)
{
    if (s)
        worker_request_stop(s->worker);
}

void mq_sweeper_stop(struct mq_sweeper *s)
{
    if (!s)
        return;
    worker_stop(s->worker);
    if (s->pg)
        PQfinish(s->pg);
    free(s->conninfo);
    free(s);
}
