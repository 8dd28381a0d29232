/* The integration-test harness; see harness.h. */
#include "harness.h"

#include "rydes/body.h"
#include "rydes/log.h"
#include "rydes/mem.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <execinfo.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HARNESS_MAX_DATABASES 64 /* per process: some suites make one per test */
static char *created[HARNESS_MAX_DATABASES];
static int ncreated;
static char *main_url;

/* The thread that runs the tests (harness_run's). Check's assertions jump back into its stack
 * (no fork): one made on another thread is undefined behaviour, so helpers a test's threads
 * call report failures in what they return instead. */
static pthread_t test_thread;

static bool on_test_thread(void)
{
    return pthread_equal(pthread_self(), test_thread);
}

static void cached_close_all(void);

static const char *base_url(void)
{
    const char *u = getenv("DATABASE_URL");
    ck_assert_msg(u && *u, "DATABASE_URL must point at a test cluster (use ./dev test)");
    return u;
}

/* Builds a key=value conninfo of base with dbname replaced (caller frees). */
static char *with_dbname(const char *base, const char *dbname)
{
    return harness_conninfo_with(base, "dbname", dbname);
}

char *harness_conninfo_with(const char *base, const char *keyword, const char *value)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &errmsg);
    ck_assert_msg(opts != NULL, "bad DATABASE_URL: %s", errmsg ? errmsg : "?");
    struct buf b;
    buf_init(&b);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, keyword) == 0 ? value : o->val;
        if (!v)
            continue;
        buf_printf(&b, "%s='", o->keyword);
        for (const char *p = v; *p; p++)
            buf_printf(&b, "%s%c", (*p == '\'' || *p == '\\') ? "\\" : "", *p);
        buf_puts(&b, "' ");
    }
    PQconninfoFree(opts);
    return buf_steal(&b);
}

/* A new connection to url (caller PQfinishes); the test fails when there is none. */
static PGconn *connect_to(const char *url)
{
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", PQerrorMessage(pg));
        PQfinish(pg);
        ck_abort_msg("cannot connect: %s", why);
    }
    return pg;
}

static void exec_admin(const char *sql)
{
    PGconn *pg = connect_to(base_url());
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
}

/* Runs at exit, outside any test: no ck_assert here. */
static void drop_all(void)
{
    cached_close_all();
    for (int i = 0; i < ncreated; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", created[i]);
        PGconn *pg = PQconnectdb(getenv("DATABASE_URL"));
        PQclear(PQexec(pg, sql));
        PQfinish(pg);
        free(created[i]);
    }
    ncreated = 0;
    free(main_url);
    main_url = NULL;
}

char *harness_db_create(void)
{
    static int seq;
    static unsigned tag; /* random: a pid is not unique across killed runs and containers */
    if (!tag && getrandom(&tag, sizeof tag, 0) != (ssize_t)sizeof tag)
        tag = (unsigned)time(NULL);
    char name[64];
    snprintf(name, sizeof name, "rydes_test_%d_%08x_%d", (int)getpid(), tag, ++seq);
    ck_assert_int_lt(ncreated, HARNESS_MAX_DATABASES); /* before: each one made is dropped */
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    exec_admin(sql);
    if (ncreated == 0)
        atexit(drop_all);
    created[ncreated++] = xstrdup(name);
    return with_dbname(base_url(), name);
}

const char *harness_db_url(void)
{
    if (!main_url)
        main_url = harness_db_create();
    return main_url;
}

/* Delivers the publish outbox now (what the fan-out thread does within milliseconds), so that
 * a test reading messages right after a store-and-publish request sees its deliveries: runs
 * the fan-out, and waits (up to 10 s) for the batch a fan-out thread may hold to commit. No
 * outbox (a database without migrations) is fine. */
static void deliver_outbox(PGconn *pg, const char *sql)
{
    if (!strstr(sql, "messages") && !strstr(sql, "payloads"))
        return;
    for (int i = 0; i < 1000; i++) {
        PQclear(PQexec(pg, "SELECT mq_fanout(100000)"));
        PGresult *r = PQexec(pg, "SELECT count(*) FROM publish_outbox WHERE failed_at IS NULL");
        bool empty = PQresultStatus(r) != PGRES_TUPLES_OK || atoll(PQgetvalue(r, 0, 0)) == 0;
        PQclear(r);
        if (empty)
            return;
        usleep(10000);
    }
    /* not an abort: tests of failing deliveries leave events that never go; but said, so a
     * stalled fan-out is not taken for "nothing was published" unnoticed */
    fprintf(stderr, "harness: the publish outbox still holds events after 10 s\n");
}

void harness_deliver_outbox(void)
{
    free(harness_sql(harness_db_url(), "SELECT 1 FROM payloads LIMIT 0"));
}

/* The test thread's connections, one per URL, kept between statements. A connection costs its
 * backend's start and its first calls' plans (the outbox's fan-out above all): tens of ms of the
 * server's CPU, and polling tests made dozens a second. Other threads connect per statement. */
#define HARNESS_CACHED_CONNS 4
static struct cached_conn {
    char *url;
    PGconn *pg;
} cached[HARNESS_CACHED_CONNS];
static int cached_next;

static void cached_drop(struct cached_conn *c)
{
    PQfinish(c->pg);
    free(c->url);
    c->pg = NULL;
    c->url = NULL;
}

static void cached_close_all(void)
{
    for (int i = 0; i < HARNESS_CACHED_CONNS; i++)
        cached_drop(&cached[i]);
}

/* The test thread's connection to url (the cache owns it; made if need be), else NULL. */
static struct cached_conn *cached_conn(const char *url)
{
    if (!on_test_thread())
        return NULL;
    for (int i = 0; i < HARNESS_CACHED_CONNS; i++)
        if (cached[i].url && strcmp(cached[i].url, url) == 0)
            return &cached[i];
    struct cached_conn *c = &cached[cached_next];
    cached_next = (cached_next + 1) % HARNESS_CACHED_CONNS;
    cached_drop(c);
    c->pg = connect_to(url);
    c->url = xstrdup(url);
    return c;
}

/* What one statement left behind; the connection is clean again for the next one. */
struct sql_outcome {
    ExecStatusType status;
    char *value; /* the first row's first column, or NULL (caller frees) */
    char error[1024];
};

/* Runs sql on pg, then takes back what it may have left on the session: an open transaction,
 * settings, advisory locks and listens (a closed connection took them all before). */
static void run_sql(PGconn *pg, const char *sql, struct sql_outcome *out)
{
    deliver_outbox(pg, sql);
    PGresult *r = PQexec(pg, sql);
    out->status = PQresultStatus(r);
    snprintf(out->error, sizeof out->error, "%s", PQerrorMessage(pg));
    out->value =
        (out->status == PGRES_TUPLES_OK && PQntuples(r) > 0) ? xstrdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    if (PQstatus(pg) != CONNECTION_OK)
        return;
    if (PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
    PQclear(PQexec(pg, "RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()"));
}

char *harness_sql(const char *url, const char *sql)
{
    struct sql_outcome out;
    struct cached_conn *c = cached_conn(url);
    if (!c) {
        PGconn *pg = connect_to(url);
        run_sql(pg, sql, &out);
        PQfinish(pg);
    } else {
        run_sql(c->pg, sql, &out);
        bool failed = out.status != PGRES_TUPLES_OK && out.status != PGRES_COMMAND_OK;
        if (failed && PQstatus(c->pg) != CONNECTION_OK) {
            /* closed while it idled here (a restarted cluster, a terminated backend): the
             * statement met no server; once more on a new connection. (One that ran and lost
             * its connection after is not run again: that is the next statement's to find.) */
            free(out.value);
            cached_drop(c);
            c = cached_conn(url);
            run_sql(c->pg, sql, &out);
        }
    }
    ck_assert_msg(out.status == PGRES_TUPLES_OK || out.status == PGRES_COMMAND_OK, "%s: %s", sql,
                  out.error);
    return out.value;
}

#define HOLD_KEY "4713"

/* Runs sql on pg; asserts it succeeded. */
static void hold_exec(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQerrorMessage(pg));
    PQclear(r);
}

PGconn *harness_lock_table(const char *table)
{
    PGconn *pg = connect_to(harness_db_url());
    char sql[200];
    snprintf(sql, sizeof sql, "BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", table);
    hold_exec(pg, sql);
    return pg;
}

bool harness_unlock_table(PGconn *lock, const char *table)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_locks WHERE relation = '%s'::regclass AND mode = "
             "'AccessExclusiveLock' AND granted AND pid = pg_backend_pid()",
             table);
    PGresult *r = PQexec(lock, sql);
    bool held = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
    PQclear(r);
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    return held;
}

PGconn *harness_hold_inserts(const char *url, const char *table, const char *name)
{
    char when[300];
    snprintf(when, sizeof when, "NEW.name = '%s'", name);
    return harness_hold_inserts_when(url, table, when);
}

PGconn *harness_hold_inserts_when(const char *url, const char *table, const char *when)
{
    PGconn *pg = connect_to(url);
    char sql[800];
    snprintf(sql, sizeof sql,
             "CREATE OR REPLACE FUNCTION harness_hold() RETURNS trigger LANGUAGE plpgsql AS $$ "
             "BEGIN PERFORM pg_advisory_lock(" HOLD_KEY "); PERFORM pg_advisory_unlock(" HOLD_KEY
             "); RETURN NEW; END $$; CREATE TRIGGER harness_hold BEFORE INSERT ON %s FOR EACH ROW "
             "WHEN (%s) EXECUTE FUNCTION harness_hold()",
             table, when);
    hold_exec(pg, sql);
    hold_exec(pg, "SELECT pg_advisory_lock(" HOLD_KEY ")");
    return pg;
}

void harness_hold_wait(PGconn *hold)
{
    /* advisory locks are per database: suites running at once hold the same key */
    static const char waiting[] =
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid "
        "= " HOLD_KEY
        " AND objsubid = 1 AND NOT granted AND database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())";
    for (double until = harness_now_s() + 10;; harness_sleep_ms(20)) {
        PGresult *r = PQexec(hold, waiting);
        bool one = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) == 1;
        PQclear(r);
        if (one)
            return;
        ck_assert_msg(harness_now_s() < until, "no insert came to wait within 10 s");
    }
}

void harness_hold_release(PGconn *hold, const char *table)
{
    char sql[200];
    hold_exec(hold, "SELECT pg_advisory_unlock(" HOLD_KEY ")");
    snprintf(sql, sizeof sql, "DROP TRIGGER harness_hold ON %s", table);
    hold_exec(hold, sql);
    PQfinish(hold);
}

/* Servers started and not stopped yet. The runner does not fork, so a failed check longjmps
 * out of its test past the test's harness_stop: that server keeps running, its threads using
 * the test's struct. Starting the same struct again would zero its app under them (a receive
 * in flight then found the pool NULL), and the process would exit under them. */
#define HARNESS_MAX_RUNNING 16
static struct harness_server *running[HARNESS_MAX_RUNNING];
static SRunner *runner; /* while harness_run runs the suite */

static struct harness_server **running_slot(const struct harness_server *s)
{
    for (int i = 0; i < HARNESS_MAX_RUNNING; i++)
        if (running[i] == s)
            return &running[i];
    return NULL;
}

/* Is p on this thread's stack? A struct there that outlived its test was overwritten since. */
static bool on_stack(const void *p)
{
    pthread_attr_t a;
    void *base;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &a) != 0)
        return true; /* unknown: do not touch it */
    pthread_attr_getstack(&a, &base, &size);
    pthread_attr_destroy(&a);
    return (const char *)p >= (const char *)base && (const char *)p < (const char *)base + size;
}

/* Stops the server a failed test left running in s. One on that test's stack cannot be stopped
 * (its struct is overwritten): the run ends here, with the results so far. */
static void stop_leftover(struct harness_server *s)
{
    if (on_stack(s)) {
        fprintf(stderr, "harness: a failed test left its server running on its stack: "
                        "ending the run\n");
        if (runner)
            srunner_print(runner, CK_NORMAL);
        fflush(stdout);
        _exit(EXIT_FAILURE);
    }
    fprintf(stderr, "harness: stopping the server a failed test left running\n");
    harness_stop(s);
}

void harness_start(struct harness_server *s, void (*tweak)(struct config *cfg))
{
    if (running_slot(s))
        stop_leftover(s);
    struct harness_server **slot = running_slot(NULL);
    ck_assert_msg(slot != NULL, "more than %d harness servers at once", HARNESS_MAX_RUNNING);
    const char *level = getenv("RYDES_TEST_LOG_LEVEL");
    log_configure(level && strcmp(level, "debug") == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
                  LOG_FORMAT_TEXT);
    config_init(&s->cfg);
    struct config_error err;
    ck_assert(config_set_flag(&s->cfg, "database-url", harness_db_url(), &err));
    ck_assert(config_set_flag(&s->cfg, "port", "0", &err));
    ck_assert(config_set_flag(&s->cfg, "admin-token", HARNESS_ADMIN_TOKEN, &err));
    ck_assert(config_set_flag(&s->cfg, "threads", "2", &err));
    ck_assert(config_set_flag(&s->cfg, "db-pool-size", "4", &err));
    /* the engine's own worker only: the built-in services consume queues and use pool
     * connections, so the suites that exercise them ask for them in their tweak */
    ck_assert(config_set_flag(&s->cfg, "workers", "push", &err));
    if (tweak)
        tweak(&s->cfg);
    char msg[1024];
    ck_assert_msg(app_start(&s->app, &s->cfg, msg, sizeof msg), "app_start: %s", msg);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", http_server_port(s->app.http));
    *slot = s;
}

void harness_stop(struct harness_server *s)
{
    struct harness_server **slot = running_slot(s);
    if (slot)
        *slot = NULL;
    app_stop(&s->app);
    config_cleanup(&s->cfg);
    /* a test's connections end with its server: what they keep (statistics not yet reported,
     * plans made on the tables as they were) stays out of the next test */
    if (on_test_thread())
        cached_close_all();
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

void harness_request(struct harness_server *s, const char *method, const char *path,
                     const char *token, const char *body, const char *content_type,
                     const char *extra_header, struct response *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->body);
    buf_init(&out->headers);
    CURL *c = curl_easy_init();
    if (!c) { /* no check on another thread, not even one that passes: Check is not thread-safe */
        if (on_test_thread())
            ck_abort_msg("curl_easy_init failed");
        out->status = -1;
        return;
    }
    char url[2048], h[1024];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    struct curl_slist *hs = NULL;
    if (token) {
        snprintf(h, sizeof h, "Authorization: Bearer %s", token);
        hs = curl_slist_append(hs, h);
    }
    if (body) {
        snprintf(h, sizeof h, "Content-Type: %s", content_type ? content_type : "application/json");
        hs = curl_slist_append(hs, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    for (const char *x = extra_header; x && *x;) { /* one header per line */
        size_t n = strcspn(x, "\n");
        char *one = strndup(x, n);
        hs = curl_slist_append(hs, one);
        free(one);
        x += n + (x[n] == '\n');
    }
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "/a/../b" as it is: the server decides */
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK && !on_test_thread()) { /* a thread's failure: its caller asserts */
        fprintf(stderr, "harness: %s %s: %s\n", method, path, curl_easy_strerror(rc));
        out->status = -1;
    } else {
        ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    if (out->body.len)
        out->json = json_loadb(out->body.data, out->body.len, 0, NULL);
}

void harness_admin(struct harness_server *s, const char *method, const char *path, const char *body,
                   struct response *out)
{
    harness_request(s, method, path, HARNESS_ADMIN_TOKEN, body, NULL, NULL, out);
}

bool response_header(const struct response *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *line = buf_str(&r->headers); *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(line + len - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            snprintf(out, n, "%.*s", (int)vl, v);
            return true;
        }
        line += len + (eol ? 1 : 0);
    }
    return false;
}

void response_cleanup(struct response *r)
{
    buf_cleanup(&r->body);
    buf_cleanup(&r->headers);
    json_decref(r->json);
    r->json = NULL;
}

void assert_problem(const struct response *r, long status)
{
    char ct[128];
    ck_assert_int_eq(r->status, status);
    ck_assert(response_header(r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/problem+json");
    ck_assert_msg(r->json != NULL, "problem body is not JSON: %s", buf_str(&r->body));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "status")), status);
    ck_assert(json_is_string(json_object_get(r->json, "type")));
    ck_assert(json_is_string(json_object_get(r->json, "title")));
    ck_assert(json_is_string(json_object_get(r->json, "detail")));
    char rid[160];
    ck_assert(response_header(r, "X-Request-Id", rid, sizeof rid));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "request_id")), rid);
}

void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

const char *json_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

void harness_put_queue(struct harness_server *s, const char *name, const char *body, long status)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s", name);
    struct response r;
    harness_admin(s, "PUT", path, body, &r);
    ck_assert_msg(r.status == status, "PUT %s %s: %ld %s", path, body ? body : "", r.status,
                  buf_str(&r.body));
    response_cleanup(&r);
}

int harness_stored(const char *name)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
             "WHERE q.name = '%s'",
             name);
    char *n = harness_sql(harness_db_url(), sql);
    int v = atoi(n);
    free(n);
    return v;
}

bool problem_names_field(const struct response *r, const char *field)
{
    json_t *errors = json_object_get(r->json, "errors");
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *f = json_str(json_array_get(errors, i), "field");
        if (f && strcmp(f, field) == 0)
            return true;
    }
    return false;
}

/* Checks one page of harness_walk_names and counts its items. */
static void walk_page(json_t *items, const char *collection, const char *prefix, char *prev,
                      size_t prev_len, int *seen, int *ours)
{
    ck_assert(json_is_array(items));
    ck_assert_int_le(json_array_size(items), 2);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *item = json_array_get(items, i);
        const char *name = json_str(item, "name");
        ck_assert_ptr_nonnull(name);
        ck_assert_msg(strcmp(prev, name) < 0, "%s listed after %s", name, prev);
        snprintf(prev, prev_len, "%s", name);
        char self[400];
        snprintf(self, sizeof self, "%s/%s", collection, name);
        ck_assert_str_eq(json_str(json_object_get(item, "links"), "self"), self);
        *ours += strncmp(name, prefix, strlen(prefix)) == 0;
        (*seen)++;
    }
}

void harness_walk_names(struct harness_server *s, const char *collection, const char *key,
                        const char *prefix, int *seen, int *ours, int *pages)
{
    char path[400], prev[300] = "";
    snprintf(path, sizeof path, "%s?limit=2", collection);
    *seen = *ours = *pages = 0;
    for (;;) {
        struct response r;
        harness_admin(s, "GET", path, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        walk_page(json_object_get(r.json, key), collection, prefix, prev, sizeof prev, seen, ours);
        (*pages)++;
        json_t *next = json_object_get(r.json, "next");
        ck_assert(json_is_string(next) || json_is_null(next));
        bool more = json_is_string(next);
        if (more)
            snprintf(path, sizeof path, "%s?limit=2&after=%s", collection, json_string_value(next));
        response_cleanup(&r);
        if (!more)
            break;
        ck_assert_int_lt(*pages, 100);
    }
}

bool harness_pgctl(const char *action)
{
    const char *script = getenv("RYDES_TEST_PGCTL");
    if (!script || !*script)
        return false;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null", script, action);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    return true;
}

#ifndef __SANITIZE_ADDRESS__ /* AddressSanitizer's own report of a fault says more */
/* A crash in a run without fork loses Check's report, which comes at the end: say in which test
 * the signal came, where (the stack of the thread it hit), and what failed before, then die of
 * the same signal. Check's printing is not async-signal-safe; the process is lost anyway. */
static void on_fatal_signal(int sig)
{
    alarm(10); /* what follows may block (a lock the fault left held): die regardless */
    char line[256];
    const char *test = tcase_name();
    int n = snprintf(line, sizeof line, "harness: signal %d during test %s\n", sig,
                     test ? test : "(none)");
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
        _exit(EXIT_FAILURE);
    void *frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
    if (runner) {
        srunner_print(runner, CK_NORMAL);
        fflush(stdout);
    }
    raise(sig); /* SA_RESETHAND: the default action now */
}

static void report_fatal_signals(void)
{
    void *frame;
    backtrace(&frame, 1); /* loads what it needs now, not in the handler */
    struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND | SA_NODEFER};
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}
#else
static void report_fatal_signals(void) {}
#endif

static void one_thread_one_connection(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "threads", "1", &err));
    ck_assert(config_set_flag(cfg, "db-pool-size", "1", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "1500", &err));
}

static void *async_main(void *arg)
{
    struct harness_async *a = arg;
    a->call(a->arg, &a->r);
    atomic_store(&a->done, true);
    return NULL;
}

static void async_start(struct harness_async *a)
{
    memset(&a->r, 0, sizeof a->r);
    atomic_store(&a->done, false);
    ck_assert_int_eq(pthread_create(&a->thread, NULL, async_main, a), 0);
}

/* Waits until s has n requests in flight, or a (the last started) was answered, and 100 ms more
 * for it to get where it waits. */
static void wait_in_flight(struct harness_server *s, int n, struct harness_async *a)
{
    for (int i = 0; i < 500 && http_server_in_flight(s->app.http) < n && !atomic_load(&a->done);
         i++)
        harness_sleep_ms(10);
    harness_sleep_ms(100);
}

/* One request with the admin token, so that the admin requests that follow within the token
 * cache's second are admitted from it. */
static void warm_admin_token(struct harness_server *s)
{
    struct response r;
    harness_admin(s, "GET", "/queues?limit=1", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}

static struct db_conn *hold_the_connection(struct harness_server *s)
{
    enum db_acquire_error why;
    struct db_conn *held = db_pool_acquire(s->app.pool, 1000, &why);
    ck_assert_ptr_nonnull(held);
    return held;
}

static void one_data_thread_one_waiting(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "data-threads", "1", &err));
    ck_assert(config_set_flag(cfg, "thread-queue-limit", "1", &err));
    ck_assert(config_set_flag(cfg, "db-pool-size", "2", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "5000", &err));
}

void harness_past_a_full_data_plane(struct harness_server *s, struct harness_async *a, int n)
{
    harness_stop(s);
    harness_start(s, one_data_thread_one_waiting);
    warm_admin_token(s);
    struct db_conn *held[2] = {hold_the_connection(s), hold_the_connection(s)};
    for (int i = 0; i < n; i++) {
        async_start(&a[i]);
        wait_in_flight(s, i + 1, &a[i]);
    }
    db_pool_release(s->app.pool, held[0]);
    db_pool_release(s->app.pool, held[1]);
    for (int i = 0; i < n; i++)
        pthread_join(a[i].thread, NULL);
}

bool harness_answered_while_the_pool_is_held(struct harness_server *s, struct harness_async *a)
{
    harness_stop(s);
    harness_start(s, one_thread_one_connection);
    warm_admin_token(s);
    struct db_conn *held = hold_the_connection(s);
    async_start(a);
    wait_in_flight(s, 1, a);
    struct response health;
    harness_request(s, "GET", "/healthz", NULL, NULL, NULL, NULL, &health);
    bool first = !atomic_load(&a->done);
    pthread_join(a->thread, NULL);
    db_pool_release(s->app.pool, held);
    long status = health.status;
    response_cleanup(&health);
    return first && status == 200;
}

int harness_run(Suite *suite)
{
    report_fatal_signals();
    body_json_setup(BODY_JSON_FLOOR); /* as rydes itself does, for the servers run in-process */
    curl_global_init(CURL_GLOBAL_ALL);
    SRunner *sr = srunner_create(suite);
    /* No fork: the server runs in-process and ASan's leak check covers the whole run. */
    srunner_set_fork_status(sr, CK_NOFORK);
    test_thread = pthread_self();
    runner = sr;
    srunner_run_all(sr, CK_NORMAL);
    runner = NULL;
    cached_close_all();
    int failed = srunner_ntests_failed(sr);
    fflush(stdout); /* the results are out whatever stopping a leftover server does */
    for (int i = 0; i < HARNESS_MAX_RUNNING; i++)
        if (running[i])
            stop_leftover(running[i]);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

double harness_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Formats the SQL of fmt into sql (asserting it fits). */
static void format_sql(char *sql, size_t n, const char *fmt, va_list ap)
{
    int len = vsnprintf(sql, n, fmt, ap);
    ck_assert_int_lt(len, (int)n);
}

char *harness_sqlf_text(const char *fmt, ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    format_sql(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return harness_sql(harness_db_url(), sql);
}

long long harness_sqlf(const char *fmt, ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    format_sql(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *v = harness_sql(harness_db_url(), sql);
    ck_assert_msg(v != NULL, "no row: %s", sql);
    long long x = atoll(v);
    free(v);
    return x;
}

/* Collects the notices of a connection (auto_explain's plans) into a buf. */
static void collect_notice(void *arg, const PGresult *r)
{
    buf_puts(arg, PQresultErrorMessage(r));
}

static long long rows_max(long long a, long long b)
{
    return a > b ? a : b;
}

/* The largest count in plan text: "rows=R loops=L" of an actual row count (R * L) or the
 * number after "Removed by …: ". */
static long long plan_text_max_rows(const char *text)
{
    long long most = 0;
    for (const char *p = text; (p = strstr(p, "actual ")); p++) {
        const char *r = strstr(p, "rows="), *l = strstr(p, "loops="), *end = strchr(p, ')');
        if (r && l && end && r < end && l < end)
            most = rows_max(most, atoll(r + 5) * atoll(l + 6));
    }
    for (const char *p = text; (p = strstr(p, "Removed by ")); p++) {
        const char *colon = strstr(p, ": ");
        if (colon)
            most = rows_max(most, atoll(colon + 2));
    }
    return most;
}

long long harness_plans_max_buffers(const struct buf *plans)
{
    long long most = 0;
    for (const char *p = buf_str(plans); (p = strstr(p, "Buffers: shared ")); p++) {
        /* the shared part only: "shared hit=H read=R dirtied=D, temp read=…" */
        size_t len = strcspn(p, ",\n");
        const char *hit = strstr(p, "hit="), *read = strstr(p, "read=");
        long long n = (hit && hit < p + len ? atoll(hit + 4) : 0) +
                      (read && read < p + len ? atoll(read + 5) : 0);
        most = rows_max(most, n);
    }
    return most;
}

/* The receiver harness_plans_begin replaced (libpq's default: tests set none). */
static PQnoticeReceiver plans_saved_receiver;

void harness_plans_begin(void *pg, struct buf *plans)
{
    static const char *const on[] = {"LOAD 'auto_explain'",
                                     "SET auto_explain.log_min_duration = 0",
                                     "SET auto_explain.log_analyze = on",
                                     "SET auto_explain.log_timing = off",
                                     "SET auto_explain.log_buffers = on",
                                     "SET auto_explain.log_nested_statements = on",
                                     "SET auto_explain.log_level = notice",
                                     "SET client_min_messages = notice"};
    for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
        PGresult *r = PQexec(pg, on[i]);
        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", on[i],
                      PQresultErrorMessage(r));
        PQclear(r);
    }
    plans_saved_receiver = PQsetNoticeReceiver(pg, collect_notice, plans);
}

long long harness_plans_end(void *pg, struct buf *plans)
{
    /* libpq's default receiver takes no argument (it passes the notice on to the processor) */
    PQsetNoticeReceiver(pg, plans_saved_receiver, NULL);
    PQclear(PQexec(pg, "SET auto_explain.log_min_duration = -1"));
    PQclear(PQexec(pg, "RESET client_min_messages"));
    return plan_text_max_rows(buf_str(plans));
}

long long harness_plan_max_rows(void *pg, const char *sql)
{
    struct buf plans;
    buf_init(&plans);
    harness_plans_begin(pg, &plans);
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    PQclear(r);
    long long most = harness_plans_end(pg, &plans);
    buf_cleanup(&plans);
    return most;
}

long long harness_wait_sql(const char *sql, long long want, double timeout_s)
{
    double until = harness_now_s() + timeout_s;
    long long v;
    while ((v = harness_sqlf("%s", sql)) != want && harness_now_s() < until)
        harness_sleep_ms(100);
    return v;
}

int harness_connect(const struct harness_server *s, const char *ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (ip) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        ck_assert_int_eq(inet_pton(AF_INET, ip, &me.sin_addr), 1);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    }
    struct sockaddr_in to = {.sin_family = AF_INET};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons((uint16_t)atoi(strrchr(s->base, ':') + 1));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    return fd;
}
