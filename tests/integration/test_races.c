/* Integration: regressions for the races and edge cases a review of the queue engine found.
 * FIFO deletes running in parallel leave the group open; FIFO batches naming the same groups in
 * opposite orders never deadlock; a long poll whose client has gone takes no message; a busy
 * group cannot starve another under delete:true; redrive never moves a message a consumer holds
 * and never redrives a queue into itself; a purge racing a send to a new group keeps the group of
 * what it leaves; a dead-letter move takes only what is still there, and only into a dead-letter
 * queue that still is the queue's. */
#include "harness.h"

#include "rydes/mq.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

static json_t *receive(const char *queue, const char *body, struct response *r)
{
    char path[160];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", queue);
    harness_admin(&srv, "POST", path, body, r);
    ck_assert_int_eq(r->status, 200);
    return json_object_get(r->json, "messages");
}

/* Receives from queue with request body req: exactly one message, whose body is want. */
static void receive_only(const char *queue, const char *req, const char *want)
{
    struct response r;
    json_t *msgs = receive(queue, req, &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), want);
    response_cleanup(&r);
}

static void send_group(const char *queue, const char *group, const char *body)
{
    char path[160], req[256];
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    snprintf(req, sizeof req, "{\"body\":\"%s\",\"group_id\":\"%s\",\"dedup_id\":\"%s-%s\"}", body,
             group, group, body);
    struct response r;
    harness_admin(&srv, "POST", path, req, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}

/* A new session on the test database; the SQL of fmt and ap is formatted into sql. */
__attribute__((format(printf, 3, 0))) static PGconn *session(char *sql, size_t n, const char *fmt,
                                                             va_list ap)
{
    vsnprintf(sql, n, fmt, ap);
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    return pg;
}

/* A second session that opens a transaction and runs the printf-formatted SQL in it,
 * holding its locks until release(); idle for 20 s at most if the test dies first. */
__attribute__((format(printf, 1, 2))) static PGconn *hold(const char *fmt, ...)
{
    char sql[200];
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg = session(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(pg, "SET idle_in_transaction_session_timeout = '20s'; BEGIN");
    PQclear(r);
    r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s", PQerrorMessage(pg));
    PQclear(r);
    return pg;
}

/* Starts the printf-formatted SQL on a session of its own without waiting for it, and
 * waits (up to 10 s) until that session waits for a lock. Returns the session; *blocked says
 * whether it came to wait. */
__attribute__((format(printf, 2, 3))) static PGconn *start_blocked(bool *blocked, const char *fmt,
                                                                   ...)
{
    char sql[200];
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg = session(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_eq(PQsendQuery(pg, sql), 1);
    char probe[160];
    snprintf(probe, sizeof probe,
             "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
             PQbackendPID(pg));
    *blocked = harness_wait_sql(probe, 1, 10) == 1;
    return pg;
}

/* Commits the holder, then collects the blocked statement's outcome: its first value, or -1 on
 * an error. Both sessions end. */
static long long release(PGconn *holder, PGconn *blocked)
{
    PGresult *r = PQexec(holder, "COMMIT");
    PQclear(r);
    PQfinish(holder);
    long long v = -1;
    while ((r = PQgetResult(blocked)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(blocked);
    return v;
}

/* The id of queue name. */
static long long queue_id(const char *name)
{
    return harness_sqlf("SELECT id FROM queues WHERE name = '%s'", name);
}

/* Creates queue with dead-letter queue dlq (max_receive_count 1), sends it "x" and receives
 * that once with visibility 0: the next receive would exceed the count. */
static void received_once(const char *queue, const char *dlq)
{
    harness_put_queue(&srv, dlq, NULL, 201);
    char attrs[160], path[160];
    snprintf(attrs, sizeof attrs, "{\"dead_letter\":{\"queue\":\"%s\",\"max_receive_count\":1}}",
             dlq);
    harness_put_queue(&srv, queue, attrs, 201);
    snprintf(path, sizeof path, "/queues/%s/messages", queue);
    struct response r;
    harness_admin(&srv, "POST", path, "{\"body\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    json_t *msgs = receive(queue, "{\"visibility_timeout\":0}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
}

struct deleter {
    char path[256];
    _Atomic long status; /* read while the thread may be running */
};

static void *delete_in_thread(void *arg)
{
    struct deleter *d = arg;
    struct response r;
    harness_admin(&srv, "DELETE", d->path, NULL, &r);
    d->status = r.status;
    response_cleanup(&r);
    return NULL;
}

START_TEST(parallel_fifo_deletes_leave_the_group_open)
{
    harness_put_queue(&srv, "par.fifo", NULL, 201);
    for (int i = 1; i <= 3; i++) {
        char b[8];
        snprintf(b, sizeof b, "m%d", i);
        send_group("par.fifo", "g", b);
    }
    struct response r;
    json_t *msgs = receive("par.fifo", "{\"max_messages\":2,\"visibility_timeout\":600}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    struct deleter d[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        snprintf(d[i].path, sizeof d[i].path, "/queues/par.fifo/messages/%s",
                 json_str(json_array_get(msgs, (size_t)i), "receipt"));
        pthread_create(&t[i], NULL, delete_in_thread, &d[i]);
    }
    for (int i = 0; i < 2; i++) /* both joined before a check can jump out of here */
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(d[i].status, 204);
    response_cleanup(&r);
    msgs = receive("par.fifo", "{}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1); /* m3 flows at once, not after the lease */
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "m3");
    response_cleanup(&r);
}
END_TEST

struct batcher {
    bool reverse;
    int failures;
};

static void *send_batches(void *arg)
{
    struct batcher *b = arg;
    for (int round = 0; round < 15; round++) {
        char body[1024] = "{\"entries\":[";
        for (int i = 0; i < 5; i++) {
            int g = b->reverse ? 4 - i : i;
            size_t n = strlen(body);
            snprintf(
                body + n, sizeof body - n,
                "%s{\"id\":\"e%d\",\"body\":\"x\",\"group_id\":\"g%d\",\"dedup_id\":\"%c%d-%d\"}",
                i ? "," : "", i, g, b->reverse ? 'r' : 'f', round, i);
        }
        strcat(body, "]}");
        struct response r;
        harness_admin(&srv, "POST", "/queues/order.fifo/messages:batch", body, &r);
        if (r.status != 200 || json_array_size(json_object_get(r.json, "failed")) != 0)
            b->failures++;
        response_cleanup(&r);
    }
    return NULL;
}

START_TEST(fifo_batches_in_opposite_orders_do_not_deadlock)
{
    harness_put_queue(&srv, "order.fifo", NULL, 201);
    struct batcher b[2] = {{.reverse = false}, {.reverse = true}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, send_batches, &b[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(b[0].failures + b[1].failures, 0);
    ck_assert_int_eq(harness_stored("order.fifo"), 150);
}
END_TEST

static size_t ignore(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

START_TEST(long_poll_of_a_client_that_left_takes_nothing)
{
    harness_put_queue(&srv, "left", NULL, 201);
    CURL *c = curl_easy_init();
    char url[160];
    snprintf(url, sizeof url, "%s/queues/left/messages:receive", srv.base);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"wait_seconds\":10}");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 700L); /* the client gives up and closes */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ignore);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    struct response r;
    harness_admin(&srv, "POST", "/queues/left/messages", "{\"body\":\"for the living\"}", &r);
    response_cleanup(&r);
    json_t *msgs = receive("left", "{\"wait_seconds\":5}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(msgs, 0), "receive_count")),
                     1);
    response_cleanup(&r);
}
END_TEST

START_TEST(delete_now_does_not_starve_other_groups)
{
    harness_put_queue(&srv, "fair.fifo", NULL, 201);
    for (int i = 0; i < 30; i++) {
        char b[8];
        snprintf(b, sizeof b, "a%d", i);
        send_group("fair.fifo", "busy", b);
    }
    send_group("fair.fifo", "quiet", "q0");
    bool seen = false;
    for (int i = 0; i < 2 && !seen; i++) {
        struct response r;
        json_t *msgs = receive("fair.fifo", "{\"max_messages\":10,\"delete\":true}", &r);
        for (size_t k = 0; k < json_array_size(msgs); k++)
            seen |= strcmp(json_str(json_array_get(msgs, k), "body"), "q0") == 0;
        response_cleanup(&r);
    }
    ck_assert_msg(seen, "the quiet group waited behind the busy one");
}
END_TEST

START_TEST(redrive_leaves_held_messages_and_refuses_itself)
{
    received_once("held", "held-dlq");
    struct response r;
    json_t *msgs = receive("held", "{}", &r); /* the next one would exceed: dead-lettered */
    ck_assert_int_eq(json_array_size(msgs), 0);
    response_cleanup(&r);
    msgs = receive("held-dlq", "{\"visibility_timeout\":60}", &r); /* a consumer holds it */
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/held-dlq:redrive", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 0);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/held-dlq:redrive", "{\"to\":\"held-dlq\"}", &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
}
END_TEST

/* A purge waits for a message another transaction holds; meanwhile a send to a new group
 * commits. The purge leaves that message and its group together: it is still handed out. */
START_TEST(a_purge_racing_a_send_to_a_new_group_keeps_its_group)
{
    harness_put_queue(&srv, "purged.fifo", NULL, 201);
    send_group("purged.fifo", "old", "m1");
    long long q = queue_id("purged.fifo");
    PGconn *holder = hold("SELECT 1 FROM messages WHERE queue_id = %lld FOR UPDATE", q);
    bool blocked;
    PGconn *purge = start_blocked(&blocked, "SELECT 1 FROM mq_purge(%lld)", q);
    if (blocked)
        send_group("purged.fifo", "new", "m2");
    ck_assert_int_eq(release(holder, purge), 1);
    ck_assert(blocked);
    receive_only("purged.fifo", "{\"max_messages\":10}", "m2");
}
END_TEST

/* A FIFO head due for the dead-letter queue is deleted by its consumer (whose receipt still
 * holds) while a receive waits to move it: nothing reaches the dead-letter queue. */
START_TEST(a_fifo_dead_letter_move_skips_a_message_deleted_meanwhile)
{
    harness_put_queue(&srv, "moved-dlq.fifo", NULL, 201);
    harness_put_queue(&srv, "moved.fifo",
                      "{\"dead_letter\":{\"queue\":\"moved-dlq.fifo\",\"max_receive_count\":1}}",
                      201);
    send_group("moved.fifo", "g", "m1");
    struct response r;
    json_t *msgs = receive("moved.fifo", "{\"visibility_timeout\":0}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
    long long q = queue_id("moved.fifo");
    PGconn *holder = hold("DELETE FROM messages WHERE queue_id = %lld", q);
    bool blocked;
    PGconn *receiver =
        start_blocked(&blocked, "SELECT count(*) FROM mq_receive(%lld, 1, 30, 7, false)", q);
    ck_assert_int_eq(release(holder, receiver), 0);
    ck_assert(blocked);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld",
                                  queue_id("moved-dlq.fifo")),
                     0);
}
END_TEST

/* mq_hold: a consumer's transaction locks its message under its receipt. A receive meanwhile
 * skips it, even with its lease run out; a receipt superseded by a later receive finds out (1),
 * and so does one whose message is gone (2). */
START_TEST(a_held_message_is_skipped_and_a_stale_receipt_finds_out)
{
    harness_put_queue(&srv, "consumed", NULL, 201);
    struct response r;
    harness_admin(&srv, "POST", "/queues/consumed/messages", "{\"body\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    json_t *msgs = receive("consumed", "{\"visibility_timeout\":0}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
    long long q = queue_id("consumed");
    long long id = harness_sqlf("SELECT id FROM messages WHERE queue_id = %lld", q);
    long long first = harness_sqlf("SELECT receipt FROM messages WHERE queue_id = %lld", q);
    PGconn *holder = hold("SELECT mq_hold(%lld, %lld, %lld)", q, id, first);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM mq_receive(%lld, 1, 0, 7, false)", q), 0);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM mq_receive(%lld, 1, 0, 8, false)", q), 1);
    ck_assert_int_eq(harness_sqlf("SELECT mq_hold(%lld, %lld, %lld)", q, id, first), 1);
    ck_assert_int_eq(harness_sqlf("SELECT mq_hold(%lld, %lld, 8)", q, id), 0);
    ck_assert_int_eq(harness_sqlf("SELECT mq_delete(%lld, %lld, 8)", q, id), 0);
    ck_assert_int_eq(harness_sqlf("SELECT mq_hold(%lld, %lld, 8)", q, id), 2);
}
END_TEST

/* Another process deletes a queue's dead-letter queue; this process's copy of the queue still
 * names it for up to a second. An exhausted message received meanwhile stays in its queue
 * instead of going to the deleted one, and is delivered once the queue is read again. */
START_TEST(a_dead_letter_move_into_a_deleted_queue_keeps_the_message)
{
    received_once("keeps", "gone-dlq");
    /* this process's copy of the queue, as read before the deletion (a copy that expired would
     * be read again: taken here, the receive below uses it whatever the machine's speed) */
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 5000, &why);
    ck_assert_ptr_nonnull(c);
    struct mq_queue stale;
    ck_assert_int_eq(mq_queue_get(c, "keeps", &stale), MQ_OK);
    free(harness_sql(harness_db_url(),
                     "WITH q AS (DELETE FROM queues WHERE name = 'gone-dlq' RETURNING id), "
                     "t AS (INSERT INTO deleted_queues (queue_id) SELECT id FROM q) "
                     "UPDATE queues SET dead_letter_queue_id = NULL, max_receive_count = NULL "
                     "WHERE dead_letter_queue_id IN (SELECT id FROM q)"));
    struct mq_message *got;
    int n = -1;
    enum mq_status st = mq_receive(c, &stale, 10, 0, false, &got, &n); /* the copy names gone-dlq */
    db_pool_release(srv.app.pool, c);
    ck_assert_int_eq(st, MQ_OK);
    ck_assert_int_eq(n, 0);
    mq_messages_free(got, n);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", queue_id("keeps")), 1);
    harness_sleep_ms(1200); /* the process's cached copy has expired: it reads the queue again */
    receive_only("keeps", "{}", "x");
}
END_TEST

/* A dead letter of queue src in dlq: sent, received once with visibility 0, and moved by the
 * next receive. */
static void one_dead_letter(const char *src, const char *dlq)
{
    received_once(src, dlq);
    struct response r;
    json_t *msgs = receive(src, "{}", &r);
    ck_assert_int_eq(json_array_size(msgs), 0);
    response_cleanup(&r);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", queue_id(dlq)), 1);
}

/* A redrive into a queue holds it against deletion until it commits: the queue's DELETE waits,
 * then takes the moved message with it. (It used to delete the queue at once, and the message
 * the redrive moved in landed under the deleted queue's id, for the sweep to delete: lost,
 * where a delete that came first would have left it in the dead-letter queue.) */
START_TEST(a_queue_deleted_during_a_redrive_into_it_takes_what_was_moved)
{
    one_dead_letter("mv-src", "mv-dlq");
    long long src = queue_id("mv-src"), dlq = queue_id("mv-dlq");
    PGconn *holder =
        hold("SELECT moved FROM mq_redrive_some(%lld, NULL, 0, 9223372036854775807, 100)", dlq);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", dlq), 1);
    static struct deleter d; /* the thread outlives a failed check's jump out of here */
    d = (struct deleter){.path = "/queues/mv-src"};
    pthread_t t;
    pthread_create(&t, NULL, delete_in_thread, &d);
    /* the delete waits for the redrive (a sleep here could let the redrive commit first) */
    long long waits = harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                       "wait_event_type = 'Lock' AND query LIKE "
                                       "'%mq_delete_queue%' AND query NOT LIKE '%pg_stat%'",
                                       1, 10);
    long long answered = d.status; /* before the commit: none yet */
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    pthread_join(t, NULL);
    ck_assert_int_eq(waits, 1);
    ck_assert_int_eq(answered, 0);
    ck_assert_int_eq(d.status, 204);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", src), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", dlq), 0);
}
END_TEST

/* A redrive while the target queue is being deleted moves nothing: the message stays in the
 * dead-letter queue once the queue is gone. */
START_TEST(a_redrive_into_a_queue_being_deleted_leaves_the_message)
{
    one_dead_letter("mv2-src", "mv2-dlq");
    long long dlq = queue_id("mv2-dlq");
    PGconn *holder = hold("SELECT mq_delete_queue('mv2-src')");
    struct response r;
    harness_admin(&srv, "POST", "/queues/mv2-dlq:redrive", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "moved")), 0);
    response_cleanup(&r);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM queues WHERE name = 'mv2-src'"), 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", dlq), 1);
}
END_TEST

/* The retention sweep skips an expired message a consumer holds (it used to wait for it, the
 * whole sweep standing still behind one slow handler) and deletes the rest. */
/* The test sweeps: the server's own sweep could delete both messages before the hold. */
static void no_sweeper(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "sweep-interval-ms", "0", &err));
}

START_TEST(retention_skips_a_held_message)
{
    harness_stop(&srv);
    harness_start(&srv, no_sweeper);
    harness_put_queue(&srv, "expiring", NULL, 201);
    struct response r;
    for (int i = 0; i < 2; i++) {
        harness_admin(&srv, "POST", "/queues/expiring/messages", "{\"body\":\"x\"}", &r);
        ck_assert_int_eq(r.status, 201);
        response_cleanup(&r);
    }
    long long q = queue_id("expiring");
    harness_sqlf("WITH u AS (UPDATE messages SET sent_at = now() - interval '30 days' "
                 "WHERE queue_id = %lld RETURNING 1) SELECT count(*) FROM u",
                 q);
    harness_sqlf("WITH u AS (UPDATE queue_sweeps SET next_at = now() WHERE queue_id = %lld "
                 "RETURNING 1) SELECT count(*) FROM u",
                 q);
    PGconn *holder = hold("SELECT 1 FROM messages WHERE queue_id = %lld ORDER BY id LIMIT 1 "
                          "FOR UPDATE",
                          q);
    char *swept =
        harness_sql(harness_db_url(), "SET lock_timeout = '2s'; SELECT mq_sweep(1000, 10000)");
    ck_assert_ptr_nonnull(swept);
    free(swept);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %lld", q), 1);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
}
END_TEST

/* A FIFO message in flight is deleted by the retention sweep while its consumer's delete (or
 * the hold of a worker's transaction) holds the group and waits for the message; the sweep's
 * refresh skips the held group. The delete or hold, finding the message gone, reopens the group
 * itself: the next message is handed out. */
static void sweep_under(const char *queue, const char *call)
{
    harness_put_queue(&srv, queue, NULL, 201);
    send_group(queue, "g", "m1");
    send_group(queue, "g", "m2");
    struct response r;
    json_t *msgs = receive(queue, "{\"visibility_timeout\":600}", &r);
    ck_assert_int_eq(json_array_size(msgs), 1);
    response_cleanup(&r);
    long long q = queue_id(queue);
    long long id = harness_sqlf("SELECT min(id) FROM messages WHERE queue_id = %lld", q);
    long long nonce = harness_sqlf("SELECT receipt FROM messages WHERE id = %lld", id);
    PGconn *sweep = hold("DELETE FROM messages WHERE queue_id = %lld AND id = %lld", q, id);
    bool blocked;
    PGconn *holder = start_blocked(&blocked, "SELECT %s(%lld, %lld, %lld)", call, q, id, nonce);
    ck_assert_int_eq(release(sweep, holder), 2);
    ck_assert(blocked);
    receive_only(queue, "{}", "m2");
}

START_TEST(a_receipt_of_a_message_the_sweep_deleted_reopens_its_group)
{
    sweep_under("swept.fifo", "mq_delete");
    sweep_under("held-swept.fifo", "mq_hold");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("races");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, parallel_fifo_deletes_leave_the_group_open);
    tcase_add_test(tc, fifo_batches_in_opposite_orders_do_not_deadlock);
    tcase_add_test(tc, long_poll_of_a_client_that_left_takes_nothing);
    tcase_add_test(tc, delete_now_does_not_starve_other_groups);
    tcase_add_test(tc, redrive_leaves_held_messages_and_refuses_itself);
    tcase_add_test(tc, a_purge_racing_a_send_to_a_new_group_keeps_its_group);
    tcase_add_test(tc, a_fifo_dead_letter_move_skips_a_message_deleted_meanwhile);
    tcase_add_test(tc, a_held_message_is_skipped_and_a_stale_receipt_finds_out);
    tcase_add_test(tc, a_dead_letter_move_into_a_deleted_queue_keeps_the_message);
    tcase_add_test(tc, a_queue_deleted_during_a_redrive_into_it_takes_what_was_moved);
    tcase_add_test(tc, a_redrive_into_a_queue_being_deleted_leaves_the_message);
    tcase_add_test(tc, retention_skips_a_held_message);
    tcase_add_test(tc, a_receipt_of_a_message_the_sweep_deleted_reopens_its_group);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
