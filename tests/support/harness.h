/* Integration-test harness: a fresh database per test binary (created from DATABASE_URL, which
 * ./dev test points at a throwaway cluster), the real gateway started in-process on port 0, and
 * a small libcurl client. Everything here aborts the test (ck_abort) on failure, so tests read
 * as straight-line code. */
#ifndef RYDES_TEST_HARNESS_H
#define RYDES_TEST_HARNESS_H

#include "rydes/app.h"
#include "rydes/buf.h"
#include "rydes/config.h"

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define HARNESS_ADMIN_TOKEN "rydes_test_admin_token_0123456789"

/* Creates an empty database for this process and returns its conninfo (static storage). The
 * database is dropped by harness_db_drop (registered with atexit on first use). */
const char *harness_db_url(void);
/* A new, separate empty database (caller frees the conninfo; dropped at exit too). */
char *harness_db_create(void);
/* The key=value conninfo of url with keyword ("user", "dbname") set to value (caller frees). */
char *harness_conninfo_with(const char *url, const char *keyword, const char *value);
/* Runs SQL on url and returns the first value of the first row (caller frees), or NULL. SQL
 * that reads messages or payloads first delivers the publish outbox, as the fan-out thread
 * would a moment later (sql/013_publish_outbox.sql). The test thread keeps its connection to
 * url until harness_stop (session settings, an open transaction and advisory locks are taken
 * back after each statement); other threads connect per call. */
char *harness_sql(const char *url, const char *sql);
/* Delivers the publish outbox now, before a test looks at queues through HTTP. */
void harness_deliver_outbox(void);

struct harness_server {
    struct config cfg;
    struct app app;
    char base[64]; /* http://127.0.0.1:PORT */
};

/* Starts the gateway against harness_db_url() with the admin token above and only the push
 * worker (RYDES_WORKERS=push); tweak(cfg), when given, adjusts the settings first. */
void harness_start(struct harness_server *s, void (*tweak)(struct config *cfg));
void harness_stop(struct harness_server *s);

struct response {
    long status;
    struct buf body;
    struct buf headers; /* raw header block */
    json_t *json;       /* parsed body when it is JSON, else NULL */
};

/* Performs one request. token may be NULL; body may be NULL (no body). content_type NULL means
 * application/json when there is a body. extra_header, when not NULL, is "Name: value" (several
 * separated by newlines). A transfer that fails is a test failure on the test's thread; on
 * another thread (no assertion may be made there) it is out->status -1, for the test to assert
 * once it has joined the thread. */
void harness_request(struct harness_server *s, const char *method, const char *path,
                     const char *token, const char *body, const char *content_type,
                     const char *extra_header, struct response *out);
/* Shorthand with JSON body and the admin token. */
void harness_admin(struct harness_server *s, const char *method, const char *path, const char *body,
                   struct response *out);
/* The value of response header name (case-insensitive) copied into out, or false. */
bool response_header(const struct response *r, const char *name, char *out, size_t n);
void response_cleanup(struct response *r);
/* Checks a problem+json response: status, content type and the problem members. */
void assert_problem(const struct response *r, long status);

/* Small shared helpers of the queue tests. */
void harness_sleep_ms(int ms);
/* The string member key of o, or NULL. */
const char *json_str(json_t *o, const char *key);
/* PUT /queues/{name} with body (NULL: defaults) as admin; asserts the status. */
void harness_put_queue(struct harness_server *s, const char *name, const char *body, long status);
/* How many messages the queue named name holds, by SQL. */
int harness_stored(const char *name);
/* Does the problem in r name field among its errors? */
bool problem_names_field(const struct response *r, const char *field);

/* Walks a named collection ("/queues", key "queues") two items a page through its next
 * cursors, as admin, checking each page's shape, that names ascend and that every item links
 * to collection/name. Counts the items, those whose name starts with prefix, and the pages. */
void harness_walk_names(struct harness_server *s, const char *collection, const char *key,
                        const char *prefix, int *seen, int *ours, int *pages);

/* The monotonic clock in seconds, for deadlines. */
double harness_now_s(void);

/* A TCP connection to s from a socket bound to source address ip (NULL: any), for tests that
 * write raw HTTP; close it. */
int harness_connect(const struct harness_server *s, const char *ip);
/* The first value of the printf-formatted SQL on harness_db_url() (caller frees), or NULL. The
 * values formatted in must be the test's own (no quoting is done). */
char *harness_sqlf_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same as an integer; asserts there is a row. */
long long harness_sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* From harness_plans_begin to harness_plans_end, auto_explain hands every plan that pg (a
 * PGconn *: the test's, or a db_conn's) runs, nested statements of functions included, back as
 * notices with their actual row counts, collected in plans (a buf the caller owns). The end
 * returns the most rows one plan node handled (rows times loops, or rows a filter, join filter
 * or recheck removed) and stops collecting. A test bounds it to show that a statement's work
 * does not grow with a table, whatever plan the session cached, without timing anything. */
void harness_plans_begin(void *pg, struct buf *plans);
long long harness_plans_end(void *pg, struct buf *plans);
/* The most shared buffers (hit or read) one plan node of plans touched, its children included:
 * an index scanned whole for one key (a condition on its second column) reports one row, but
 * every page of the index. */
long long harness_plans_max_buffers(const struct buf *plans);
/* harness_plans_begin, sql (asserted to succeed), harness_plans_end. */
long long harness_plan_max_rows(void *pg, const char *sql);
/* Polls the integer query sql every 100 ms until it gives want or timeout_s passed; returns the
 * last value. */
long long harness_wait_sql(const char *sql, long long want, double timeout_s);

/* Holds back inserts into table (of database url) of the row named name: a BEFORE INSERT
 * trigger waits for an advisory lock the returned connection holds, so a test can make the
 * row itself (on that connection, which the trigger lets through) while a server's insert
 * waits. harness_hold_wait waits until an insert waits (10 s); harness_hold_release lets it go,
 * drops the trigger and closes the connection. */
PGconn *harness_hold_inserts(const char *url, const char *table, const char *name);
/* The same for the rows of table that the SQL condition when (on NEW) picks. */
PGconn *harness_hold_inserts_when(const char *url, const char *table, const char *when);
void harness_hold_wait(PGconn *hold);
void harness_hold_release(PGconn *hold, const char *table);
/* A connection of its own on harness_db_url() holding table in ACCESS EXCLUSIVE mode (as DDL or
 * VACUUM FULL would), its transaction open until harness_unlock_table. */
PGconn *harness_lock_table(const char *table);
/* Did lock still hold table? Then ends its transaction and closes it. Call it before asserting
 * what was seen meanwhile: a failed assertion would leave the lock to the next tests. */
bool harness_unlock_table(PGconn *lock, const char *table);

/* A request made on a thread of its own, for a test that looks at the server while it waits:
 * call makes it into *out and may make no check (it runs on that thread). Keep the struct
 * static: the thread outlives a failed check's jump out of the test. */
struct harness_async {
    void (*call)(void *arg, struct response *out);
    void *arg;
    struct response r;
    atomic_bool done;
    pthread_t thread;
};
/* Restarts s with one data-plane thread, room for one request waiting for it, and two pooled
 * connections (given up on after 5 s); holds both while the n requests of a start, each once
 * the one before is in flight (the first then waits on the thread, the second in its queue, the
 * others find it full); gives them back and joins the requests. Admin requests are admitted
 * from the token cache then (for a second). */
void harness_past_a_full_data_plane(struct harness_server *s, struct harness_async *a, int n);
/* Restarts s with one HTTP thread and one pooled connection (given up on after 1.5 s) and holds
 * that connection while a runs; once s has a request in flight (and 100 ms more, for it to get
 * where it waits), asks for GET /healthz; joins a, gives the connection back and returns
 * whether /healthz was answered first: whether a waited for the pool without its HTTP thread.
 * Admin requests are admitted from the token cache then (for a second). */
bool harness_answered_while_the_pool_is_held(struct harness_server *s, struct harness_async *a);

/* Runs the cluster control script of ./dev test with "stop" or "start". Returns false when the
 * suite runs without one (DATABASE_URL given from outside). */
bool harness_pgctl(const char *action);

/* Runs a suite and returns the process exit status. */
int harness_run(Suite *suite);

#endif
