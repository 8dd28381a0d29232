/* The database layer: a bounded pool of libpq connections shared by all threads, named
 * prepared statements, and transactions.
 *
 * Connections open lazily and reopen after the database went away: a connection found broken
 * is reset on its next acquire, and while the database stays unreachable acquires fail fast
 * (one connect attempt per DB_RETRY_INTERVAL_MS for the whole pool) instead of each waiting out
 * a connect timeout. A connection returned inside a transaction is rolled back; one returned in
 * an unknown state is closed. Statements are prepared on a connection the first time they run
 * there, and again after a reconnect. */
#ifndef RYDES_DB_H
#define RYDES_DB_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_MAX_STMTS         256
#define DB_RETRY_INTERVAL_MS 500

/* How long sent data may stay unacknowledged before a connection counts as lost (ms). */
#define DB_TCP_USER_TIMEOUT_MS "20000"

/* How the engine's connections plan (the pool, the hub, the fan-out, push): by index only. Their
 * statements are written for index access, and their tables (queues, the publish outbox) are
 * often empty when autovacuum analyzes them; a plan costed on those statistics (a sequential scan
 * of a table "of ten pages") stays cached for the life of the connection and turns quadratic
 * once a backlog builds. Without JIT: a plan that must scan a table anyway (the few operator
 * statements that count, such as /metrics) carries the disabled scan's penalty in its cost,
 * which then passes every jit_*_above_cost, and compiling it took 100 ms and more per
 * statement, every time. The sweeper's connection plans freely: its depth measurement and
 * expiry deletes are full scans. */
#define DB_PLANNER_OPTIONS                                                                    \
    "-c enable_seqscan=off -c enable_bitmapscan=off -c jit=off " DB_READ_COMMITTED

/* Every engine connection (the sweeper's too) reads committed whatever the database's default:
 * the engine's statements (SKIP LOCKED claims, ON CONFLICT, a lock taken and then the rows
 * read) assume each sees what committed before it; under a repeatable-read default one that
 * waited for a lock read an older snapshot, and inserts met rows they could not see
 * (serialization failures). */
#define DB_READ_COMMITTED "-c default_transaction_isolation=read\\ committed"

/* A named prepared statement. Define each one once, with static storage:
 *   static struct db_stmt q_find = DB_STMT("token_find", "SELECT ... $1", 1); */
struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
    atomic_int id; /* assigned on first use; indexes the per-connection prepared map */
};
#define DB_STMT(n, s, np)                        \
    {                                            \
        .name = (n), .sql = (s), .nparams = (np) \
    }

struct db_conn {
    PGconn *pg;
    bool prepared[DB_MAX_STMTS];
};

enum db_acquire_error { DB_ACQUIRE_OK, DB_ACQUIRE_EXHAUSTED, DB_ACQUIRE_UNREACHABLE };

struct db_pool_stats {
    int size;
    int in_use;
    int waiting;
    int connected;
    unsigned long long exhausted_total; /* acquires that waited their whole timeout (> 0) */
    unsigned long long connect_failures_total;
    int64_t last_back_us; /* monotonic: when an open connection last came back idle (or the
                           * pool was made, if none has yet) */
};

struct db_pool;

/* Creates a pool of up to size connections to conninfo (a libpq URI or key=value string), whose
 * statements are cancelled after statement_timeout_ms; no connection is opened yet. Free with
 * db_pool_free once every connection is released. */
struct db_pool *db_pool_create(const char *conninfo, int size, int connect_timeout_s,
                               int statement_timeout_ms);
void db_pool_free(struct db_pool *p);
/* Waits up to timeout_ms for a free connection that is connected. Returns NULL with *why set
 * when none became free or the database is unreachable. Give it back with db_pool_release. */
struct db_conn *db_pool_acquire(struct db_pool *p, int timeout_ms, enum db_acquire_error *why);
/* A free connection that is open and alive, at once, for a thread that must not wait (an HTTP
 * thread): NULL with *busy true when none is free, false when the free ones are not connected
 * (opening one may take the connect timeout: leave that to a thread that may wait). */
struct db_conn *db_pool_acquire_connected(struct db_pool *p, bool *busy);
void db_pool_release(struct db_pool *p, struct db_conn *c);
void db_pool_stats(struct db_pool *p, struct db_pool_stats *out);

/* Opens one connection (the pool's, or one of its own for the CLI, migrations, LISTEN), in
 * UTF-8, with TCP keepalives; options (may be NULL) are server settings such as
 * "-c statement_timeout=30000". NULL with err filled on failure; the caller PQfinish()es it. */
PGconn *db_connect(const char *conninfo, int connect_timeout_s, const char *options, char *err,
                   size_t errlen);
/* Keeps a background thread's own connection *pg open: drops a broken one and connects again.
 * Returns false (err filled) when there is no connection now; try again later. */
bool db_reconnect(PGconn **pg, const char *conninfo, int connect_timeout_s, const char *options,
                  char *err, size_t errlen);

/* Runs a prepared statement, preparing it on this connection first if needed. lengths and
 * formats may be NULL (all text). Returns the result, which the caller PQclear()s; it is never
 * NULL (allocation failure aborts). */
PGresult *db_exec(struct db_conn *c, struct db_stmt *st, const char *const *values,
                  const int *lengths, const int *formats);
/* Did res end in status want? Logs the error otherwise (unless the connection is gone). */
bool db_ok(struct db_conn *c, PGresult *res, ExecStatusType want);
/* A timestamptz column (pool sessions: TimeZone UTC, DateStyle ISO) as RFC 3339 with
 * milliseconds into out (CLOCK_RFC3339_LEN bytes); "" when NULL. */
void db_read_ts(PGresult *r, int row, int col, char *out);
/* The newest-first lists (GET /tasks, /rfqs, /fares) page by keyset on (creation time, id),
 * which an index of those two columns serves in both directions. Their cursor is the text
 * "MICROS.ID": the creation time of a page's last row in microseconds since the epoch, and its
 * id. DB_PAGE_CURSOR is a row's cursor; DB_PAGE_BEFORE selects the rows older than the cursor
 * in $1 (microseconds; NULL: from the newest) and $2 (the id, of SQL type idtype; a value
 * always, since a NULL would leave the index without a bound). The index is partial on
 * `ts > '-infinity'` (sql/056: lookups by id must not be able to use it), which the condition
 * states. */
#define DB_PAGE_CURSOR(ts, id) "(extract(epoch FROM " ts ") * 1000000)::bigint || '.' || " id
#define DB_PAGE_BEFORE(ts, id, idtype)                                                            \
    "(" ts " > '-infinity' AND (" ts ", " id ") < (coalesce('epoch'::timestamptz + $1::bigint * " \
    "interval '1 microsecond', 'infinity'), $2::" idtype "))"

/* Has the connection to the server been lost (so the failure means "unavailable")? */
bool db_conn_lost(const struct db_conn *c);
/* Did the statement fail for a reason that retrying later cures (statement timeout, deadlock,
 * serialization failure, lock timeout, server shutting down)? The client then gets 503. */
bool db_transient(const PGresult *res);
/* SQLSTATE of a failed result ("" when none). */
const char *db_sqlstate(const PGresult *res);

/* BEGIN / COMMIT / ROLLBACK as simple statements; false when the server refused. */
bool db_begin(struct db_conn *c);
bool db_commit(struct db_conn *c);
void db_rollback(struct db_conn *c);

#endif
