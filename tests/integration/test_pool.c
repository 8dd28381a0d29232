/* Integration: the connection pool. An exhausted pool answers 503 with Retry-After after the
 * acquire timeout (never a hang); a connection returned inside a failed transaction is rolled
 * back; a connection killed by the server is replaced without a restart. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/mq.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct harness_server srv;

static void tiny_pool(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "db-pool-size", "1", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "200", &err));
}

static void setup(void)
{
    harness_start(&srv, tiny_pool);
}

static void teardown(void)
{
    harness_stop(&srv);
}

static struct db_conn *take(void)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(exhausted_pool_is_503_with_retry_after)
{
    struct db_conn *held = take();
    struct response r;
    harness_request(&srv, "GET", "/tokens", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    assert_problem(&r, 503);
    char retry[16];
    ck_assert(response_header(&r, "Retry-After", retry, sizeof retry));
    ck_assert_int_gt(atoi(retry), 0);
    response_cleanup(&r);
    /* a busy pool is a working database: the instance stays ready, and the probe says so at
     * once instead of waiting the acquire timeout (200 ms here) on its HTTP thread */
    double t0 = harness_now_s();
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    double took = harness_now_s() - t0;
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "database")), "busy");
    ck_assert_msg(took < 0.15, "the probe took %.3f s", took);
    response_cleanup(&r);
    /* the 503 counts as exhausted; the probe's look, which waited for nothing, does not */
    harness_request(&srv, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_ptr_nonnull(strstr(buf_str(&r.body), "rydes_db_pool_exhausted_total 1\n"));
    ck_assert_ptr_nonnull(
        strstr(buf_str(&r.body), "rydes_db_pool_connections{state=\"in_use\"} 1\n"));
    response_cleanup(&r);
    db_pool_release(srv.app.pool, held);
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

/* A pool whose every connection stays taken (statements a database that stopped answering
 * holds) is not ready once none has come back for 5 s: the busy answer said ready for ever. */
START_TEST(a_pool_busy_for_long_is_not_ready)
{
    struct db_conn *held = take();
    struct response r;
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200); /* busy a moment: ready */
    response_cleanup(&r);
    harness_sleep_ms(5300);
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    assert_problem(&r, 503);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r.json, "detail")), "busy"));
    response_cleanup(&r);
    db_pool_release(srv.app.pool, held);
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

/* What an HTTP thread may take: an open connection that is free, or none at once, saying
 * whether none was free (busy) or the free one is not open (connecting is for other threads). */
START_TEST(an_http_thread_takes_only_an_open_free_connection)
{
    int64_t made = clock_mono_us();
    struct db_pool *pool = db_pool_create(harness_db_url(), 1, 3, 30000);
    /* a new pool counts as having had a connection back (readiness: not stuck yet) */
    struct db_pool_stats st;
    db_pool_stats(pool, &st);
    ck_assert_int_ge(st.last_back_us, made);
    bool busy = true;
    ck_assert_ptr_null(db_pool_acquire_connected(pool, &busy));
    ck_assert(!busy); /* free, but never opened */
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(db_pool_acquire_connected(pool, &busy));
    ck_assert(busy); /* the one connection is taken */
    db_pool_release(pool, c);
    struct db_conn *again = db_pool_acquire_connected(pool, &busy);
    ck_assert_ptr_eq(again, c);
    db_pool_release(pool, again);
    db_pool_free(pool);
}
END_TEST

/* Pool sessions read committed whatever the database's default: under a repeatable-read
 * default, a start-up that waited for another's lock (the bootstrap token, the topology) read a
 * snapshot from before it, and inserts met rows they could not see. */
START_TEST(sessions_read_committed_whatever_the_default)
{
    char *db = harness_sql(harness_db_url(), "SELECT current_database()");
    char sql[200];
    snprintf(sql, sizeof sql,
             "ALTER DATABASE \"%s\" SET default_transaction_isolation = 'repeatable read'", db);
    free(harness_sql(harness_db_url(), sql));
    struct db_pool *pool = db_pool_create(harness_db_url(), 1, 3, 30000);
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    PGresult *r = PQexec(c->pg, "SHOW default_transaction_isolation");
    char *level = strdup(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?");
    PQclear(r);
    db_pool_release(pool, c);
    db_pool_free(pool);
    snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" RESET default_transaction_isolation", db);
    free(harness_sql(harness_db_url(), sql));
    free(db);
    ck_assert_str_eq(level, "read committed");
    free(level);
}
END_TEST

START_TEST(failed_transaction_is_rolled_back_on_release)
{
    struct db_conn *c = take();
    ck_assert(db_begin(c));
    PQclear(PQexec(c->pg, "SELECT no_such_column FROM tokens"));
    ck_assert_int_eq(PQtransactionStatus(c->pg), PQTRANS_INERROR);
    db_pool_release(srv.app.pool, c);
    c = take();
    ck_assert_int_eq(PQtransactionStatus(c->pg), PQTRANS_IDLE);
    PGresult *r = PQexec(c->pg, "SELECT 1");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    db_pool_release(srv.app.pool, c);
}
END_TEST

static struct db_stmt q_pool_test_one = DB_STMT("pool_test_one", "SELECT 1", 0);

/* A connection that dies inside a transaction: every later statement of the request fails like
 * any other failure (libpq gives no result at all for a dead connection; it was taken for out
 * of memory and aborted the process), and the pool replaces the connection. */
START_TEST(statements_after_a_lost_connection_fail_cleanly)
{
    struct db_conn *c = take();
    ck_assert(db_begin(c));
    PQclear(PQexec(c->pg, "SELECT pg_terminate_backend(pg_backend_pid())"));
    ck_assert(db_conn_lost(c));
    PGresult *r = db_exec(c, &q_pool_test_one, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert(!db_ok(c, r, PGRES_TUPLES_OK));
    PQclear(r);
    ck_assert(!db_commit(c));
    db_rollback(c);
    db_pool_release(srv.app.pool, c);
    c = take();
    r = db_exec(c, &q_pool_test_one, NULL, NULL, NULL);
    ck_assert(db_ok(c, r, PGRES_TUPLES_OK));
    PQclear(r);
    db_pool_release(srv.app.pool, c);
}
END_TEST

/* Lets connections to the test database in, or not (for every role: ALLOW_CONNECTIONS). */
static void allow_connections(const char *db, bool allow)
{
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s WITH ALLOW_CONNECTIONS %s", db,
             allow ? "true" : "false");
    free(harness_sql(getenv("DATABASE_URL"), sql));
}

/* The database refuses new connections while the pool holds an open one. A slot whose connect
 * failed went back on top of the free slots, and every later acquire took it again and failed
 * (503) while the open connection under it sat idle; the open one is taken first now. */
START_TEST(a_slot_that_cannot_connect_does_not_hide_an_open_one)
{
    struct db_pool *p = db_pool_create(harness_db_url(), 2, 3, 30000);
    enum db_acquire_error why;
    struct db_conn *a = db_pool_acquire(p, 1000, &why), *s = db_pool_acquire(p, 1000, &why);
    ck_assert(a && s);
    int s_pid = PQbackendPID(s->pg);
    db_pool_release(p, a);
    db_pool_release(p, s); /* the most recently freed: taken first */
    char *db = harness_sqlf_text("SELECT current_database()");
    allow_connections(db, false);
    char kill[64];
    snprintf(kill, sizeof kill, "SELECT pg_terminate_backend(%d)", s_pid);
    free(harness_sql(getenv("DATABASE_URL"), kill));
    /* gone, its socket closed (a fixed 200 ms was not always enough in a loaded parallel run) */
    char gone[96];
    snprintf(gone, sizeof gone, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", s_pid);
    for (int i = 0; i < 100; i++) { /* on the maintenance database: the test's is closed */
        char *n = harness_sql(getenv("DATABASE_URL"), gone);
        bool done = n && strcmp(n, "0") == 0;
        free(n);
        if (done)
            break;
        harness_sleep_ms(100);
    }
    harness_sleep_ms(100);
    struct db_conn *c = db_pool_acquire(p, 1000, &why); /* s: closed, and cannot reconnect */
    ck_assert_ptr_null(c);
    ck_assert_int_eq(why, DB_ACQUIRE_UNREACHABLE);
    c = db_pool_acquire(p, 1000, &why);
    allow_connections(db, true);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(why, DB_ACQUIRE_OK);
    db_pool_release(p, c);
    db_pool_free(p);
    free(db);
}
END_TEST

/* A setting of the pool's connection, as SHOW gives it (caller frees). */
static char *show(struct db_conn *c, const char *name)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SHOW %s", name);
    PGresult *r = PQexec(c->pg, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* An options keyword in DATABASE_URL adds to the pool's session settings: it used to replace
 * them all (statement timeout, time zone, date style, planner settings). */
START_TEST(options_in_the_url_add_to_the_pools)
{
    char *conninfo = harness_conninfo_with(harness_db_url(), "options", "-c lock_timeout=1234");
    struct db_pool *p = db_pool_create(conninfo, 1, 3, 4321);
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(p, 1000, &why);
    ck_assert_ptr_nonnull(c);
    const char *want[][2] = {
        {"lock_timeout", "1234ms"}, {"statement_timeout", "4321ms"}, {"TimeZone", "UTC"}};
    for (int i = 0; i < 3; i++) {
        char *v = show(c, want[i][0]);
        ck_assert_msg(strcmp(v, want[i][1]) == 0, "%s is %s", want[i][0], v);
        free(v);
    }
    db_pool_release(p, c);
    db_pool_free(p);
    free(conninfo);
}
END_TEST

/* Without options in DATABASE_URL, PGOPTIONS adds to them as it does for libpq's own
 * connections (the migrator's): the pool's options used to replace it, so a search_path given
 * there reached the migrations but not the pool. */
START_TEST(pgoptions_add_to_the_pools)
{
    setenv("PGOPTIONS", "-c lock_timeout=2345", 1);
    struct db_pool *p = db_pool_create(harness_db_url(), 1, 3, 4321);
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(p, 1000, &why);
    unsetenv("PGOPTIONS");
    ck_assert_ptr_nonnull(c);
    const char *want[][2] = {{"lock_timeout", "2345ms"}, {"statement_timeout", "4321ms"}};
    for (int i = 0; i < 2; i++) {
        char *v = show(c, want[i][0]);
        ck_assert_msg(strcmp(v, want[i][1]) == 0, "%s is %s", want[i][0], v);
        free(v);
    }
    db_pool_release(p, c);
    db_pool_free(p);
}
END_TEST

START_TEST(killed_connection_is_replaced)
{
    struct response r;
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(), "SELECT count(pg_terminate_backend(pid)) FROM "
                                       "pg_stat_activity WHERE application_name = 'rydes' "
                                       "AND pid <> pg_backend_pid() AND datname = "
                                       "current_database()"));
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
        ck_assert(r.status == 200 || r.status == 503);
        ok = r.status == 200;
        response_cleanup(&r);
        if (!ok)
            usleep(100000);
    }
    ck_assert_msg(ok, "readyz never recovered after the connection was killed");
}
END_TEST

/* The plan of an EXPLAIN statement as text, into *plan (buf_cleanup). */
static void explain(struct db_conn *c, const char *sql, struct buf *plan)
{
    PGresult *r = PQexec(c->pg, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    buf_init(plan);
    for (int i = 0; i < PQntuples(r); i++)
        buf_printf(plan, "%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
}

/* Queue tables have wrong statistics most of the time (empty at the last ANALYZE, full now):
 * pool connections must still claim through the index, never scan and sort a deep queue. */
START_TEST(claims_use_the_index_whatever_the_statistics)
{
    struct db_conn *c = take();
    PQclear(PQexec(c->pg, "ANALYZE messages")); /* statistics of an empty table */
    PGresult *r = PQexec(c->pg, "INSERT INTO messages (queue_id, visible_at, message_id, body) "
                                "SELECT 424242, now(), gen_random_uuid(), 'x' "
                                "FROM generate_series(1, 20000)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    struct buf plan;
    explain(c,
            "EXPLAIN SELECT id FROM messages WHERE queue_id = 424242 AND id >= 0 "
            "AND visible_at <= now() ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED",
            &plan);
    ck_assert_msg(strstr(buf_str(&plan), "Index Scan") && !strstr(buf_str(&plan), "Seq Scan"),
                  "claim plan:\n%s", buf_str(&plan));
    buf_cleanup(&plan);
    /* the engine's own claim statement (prepared on this connection by a receive) updates the
     * rows it locked by TID, never by walking the queue's index from its start */
    struct mq_queue q = {.id = 424242, .attrs = {.visibility_timeout = 30}};
    struct mq_message *msgs;
    int count;
    ck_assert_int_eq(mq_receive(c, &q, 10, 30, false, &msgs, &count), MQ_OK);
    ck_assert_int_eq(count, 10);
    mq_messages_free(msgs, count);
    explain(c, "EXPLAIN EXECUTE mq_claim(424242, 0, 10, 30, 1, 2147483647)", &plan);
    ck_assert_msg(strstr(buf_str(&plan), "Tid Scan") && !strstr(buf_str(&plan), "Seq Scan"),
                  "engine claim plan:\n%s", buf_str(&plan));
    buf_cleanup(&plan);
    /* and with statistics of a deep queue, the generic plan still updates by TID (the key
     * columns in the join made it merge-join against the whole queue's index) */
    PQclear(PQexec(c->pg, "ANALYZE messages"));
    explain(c, "EXPLAIN EXECUTE mq_claim(424242, 0, 10, 30, 1, 2147483647)", &plan);
    ck_assert_msg(strstr(buf_str(&plan), "Tid Scan") && !strstr(buf_str(&plan), "Merge Join"),
                  "engine claim plan, deep queue:\n%s", buf_str(&plan));
    buf_cleanup(&plan);
    PQclear(PQexec(c->pg, "DELETE FROM messages WHERE queue_id = 424242"));
    db_pool_release(srv.app.pool, c);
}
END_TEST

/* The combined delete probes the primary key per receipt and deletes by TID, with the statistics
 * of an empty table (which once made it hash the whole index) and of a deep queue alike. */
START_TEST(deletes_by_receipt_probe_the_key_whatever_the_statistics)
{
    struct db_conn *c = take();
    struct mq_queue q = {.id = 424243};
    char receipts[2][MQ_RECEIPT_LEN]; /* two: a single receipt takes the one-row DELETE */
    mq_receipt_encode(q.id, 1, 1, receipts[0]);
    mq_receipt_encode(q.id, 2, 1, receipts[1]);
    struct mq_delete_row rows[2] = {{&q, receipts[0]}, {&q, receipts[1]}};
    enum mq_status out[2];
    for (int deep = 0; deep < 2; deep++) {
        if (deep)
            PQclear(PQexec(c->pg, "INSERT INTO messages (queue_id, visible_at, message_id, body) "
                                  "SELECT 424243, now(), gen_random_uuid(), 'x' "
                                  "FROM generate_series(1, 20000)"));
        PQclear(PQexec(c->pg, "ANALYZE messages")); /* cached plans are made again */
        ck_assert_int_eq(mq_delete_rows(c, rows, 2, out), MQ_OK);
        struct buf plan;
        explain(c, "EXPLAIN EXECUTE mq_delete_rows('{424243,424243}', '{1,2}', '{1,1}')", &plan);
        /* the deleted rows come from a TID scan; the queue's index is only probed per receipt
         * (the scan of messages x, with its key as index condition), never walked for m */
        ck_assert_msg(strstr(buf_str(&plan), "Tid Scan on messages m") &&
                          !strstr(buf_str(&plan), "using messages_pkey on messages m") &&
                          !strstr(buf_str(&plan), "Seq Scan"),
                      "delete plan:\n%s", buf_str(&plan));
        buf_cleanup(&plan);
    }
    PQclear(PQexec(c->pg, "DELETE FROM messages WHERE queue_id = 424243"));
    db_pool_release(srv.app.pool, c);
}
END_TEST

/* The pool plans by index only, and a statement that scans a table anyway (the gauges of /metrics
 * read catalog views) is not JIT-compiled for the scan penalty in its cost: compiling took 100 ms
 * and more per statement and made every scrape last a second. */
START_TEST(statements_that_scan_anyway_are_not_compiled)
{
    struct db_conn *c = take();
    PGresult *r = PQexec(c->pg, "SELECT current_setting('jit')");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "off"); /* on any server, with JIT or without */
    PQclear(r);
    struct buf plan;
    explain(c, "EXPLAIN (ANALYZE) SELECT * FROM rydes_gauges()", &plan);
    const char *jit = strstr(buf_str(&plan), "JIT");
    ck_assert_msg(!jit, "gauges plan compiled:\n%.300s", jit);
    buf_cleanup(&plan);
    db_pool_release(srv.app.pool, c);
}
END_TEST

/* A pooled connection gives up on a server that stops acknowledging what it sent within
 * DB_TCP_USER_TIMEOUT_MS, not after TCP's ~15 minutes of retransmissions. */
START_TEST(connections_give_up_on_a_vanished_server)
{
    struct db_conn *c = take();
    unsigned timeout = 0;
    socklen_t n = sizeof timeout;
    ck_assert_int_eq(getsockopt(PQsocket(c->pg), IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, &n), 0);
    db_pool_release(srv.app.pool, c);
    ck_assert_int_eq(timeout, atoi(DB_TCP_USER_TIMEOUT_MS));
}
END_TEST

static void pool_of_10(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "combine", "true", &err)); /* whatever RYDES_COMBINE says */
    ck_assert(config_set_flag(cfg, "data-threads", "0", &err));
    ck_assert(config_set_flag(cfg, "handler-threads", "3", &err));
    ck_assert(config_set_flag(cfg, "db-pool-size", "10", &err));
}

static void pool_of_11(struct config *cfg)
{
    pool_of_10(cfg);
    struct config_error err;
    ck_assert(config_set_flag(cfg, "db-pool-size", "11", &err));
}

/* What a start with tweak writes to stderr (no check in between: a failed one would leave
 * stderr redirected). */
static void start_logged(void (*tweak)(struct config *cfg), char *text, size_t n)
{
    static struct harness_server other;
    char path[] = "/tmp/test_pool_log_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    harness_start(&other, tweak);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    harness_stop(&other);
    ssize_t got = pread(fd, text, n - 1, 0);
    close(fd);
    unlink(path);
    text[got > 0 ? got : 0] = '\0';
}

/* Two sets of 3 handler threads and the combiner's 5 lanes may hold 11 connections at once: a
 * pool of 10 is warned about at start, one of 11 is not. */
START_TEST(a_pool_smaller_than_the_threads_is_warned_about)
{
    char text[8192];
    start_logged(pool_of_10, text, sizeof text);
    ck_assert_msg(strstr(text, "RYDES_DB_POOL_SIZE 10 is below the 11 connections"), "%s", text);
    start_logged(pool_of_11, text, sizeof text);
    ck_assert_msg(!strstr(text, "RYDES_DB_POOL_SIZE"), "%s", text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, exhausted_pool_is_503_with_retry_after);
    tcase_add_test(tc, a_pool_busy_for_long_is_not_ready);
    tcase_add_test(tc, sessions_read_committed_whatever_the_default);
    tcase_add_test(tc, failed_transaction_is_rolled_back_on_release);
    tcase_add_test(tc, an_http_thread_takes_only_an_open_free_connection);
    tcase_add_test(tc, statements_after_a_lost_connection_fail_cleanly);
    tcase_add_test(tc, killed_connection_is_replaced);
    tcase_add_test(tc, options_in_the_url_add_to_the_pools);
    tcase_add_test(tc, a_slot_that_cannot_connect_does_not_hide_an_open_one);
    tcase_add_test(tc, claims_use_the_index_whatever_the_statistics);
    tcase_add_test(tc, deletes_by_receipt_probe_the_key_whatever_the_statistics);
    tcase_add_test(tc, statements_that_scan_anyway_are_not_compiled);
    tcase_add_test(tc, connections_give_up_on_a_vanished_server);
    tcase_add_test(tc, a_pool_smaller_than_the_threads_is_warned_about);
    suite_add_tcase(s, tc);
    /* without a server: its threads may connect (getenv) while the test sets PGOPTIONS */
    TCase *env = tcase_create("environment");
    tcase_add_test(env, pgoptions_add_to_the_pools);
    suite_add_tcase(s, env);
    return harness_run(s);
}
