/* Integration: FIFO queues over HTTP. group_id (and dedup_id, unless content-based) required
 * and per-message delays refused; sequence numbers as increasing numeric strings, also when
 * consecutive sends run on different pooled connections; delivery in send order within a group;
 * a group with a message in flight hands out nothing more while other groups keep flowing (no
 * head-of-line blocking), until the message is deleted, released or its lease runs out, and then
 * the same head comes first; a receive may take several messages of one group, in order;
 * deduplication by dedup_id and by the body's SHA-256 within the 5-minute window (200 with the
 * original message id, nothing enqueued), also inside batches; and dead-lettering that keeps
 * the group's order. */
#include "harness.h"

#include "rydes/mq.h"

#include "rydes/consumer.h"
#include "rydes/db.h"
#include "rydes/ids.h"
#include "rydes/mq_hub.h"
#include "rydes/secret.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

static void post(const char *queue, const char *suffix, const char *body, long status,
                 struct response *r)
{
    char path[256];
    snprintf(path, sizeof path, "/queues/%s%s", queue, suffix);
    harness_admin(&srv, "POST", path, body, r);
    ck_assert_msg(r->status == status, "POST %s %s: %ld %s", path, body ? body : "", r->status,
                  buf_str(&r->body));
}

/* Sends body to group with dedup id dedup (NULL: none); returns the sequence number and copies
 * the message id when id != NULL. Asserts 201. */
static long long send_to(const char *queue, const char *group, const char *body, const char *dedup,
                         char *id)
{
    char request[512];
    if (dedup)
        snprintf(request, sizeof request,
                 "{\"body\": \"%s\", \"group_id\": \"%s\", \"dedup_id\": \"%s\"}", body, group,
                 dedup);
    else
        snprintf(request, sizeof request, "{\"body\": \"%s\", \"group_id\": \"%s\"}", body, group);
    struct response r;
    post(queue, "/messages", request, 201, &r);
    const char *seq = json_str(r.json, "sequence_number");
    ck_assert_msg(seq != NULL, "no sequence_number: %s", buf_str(&r.body));
    ck_assert_int_eq(strspn(seq, "0123456789"), strlen(seq));
    long long n = atoll(seq);
    if (id)
        snprintf(id, IDS_UUID_LEN, "%s", json_str(r.json, "message_id"));
    response_cleanup(&r);
    return n;
}

/* Sends body to group with a dedup id equal to the body. */
static long long send_body(const char *queue, const char *group, const char *body)
{
    return send_to(queue, group, body, body, NULL);
}

static json_t *receive(const char *queue, const char *request, struct response *r)
{
    post(queue, "/messages:receive", request, 200, r);
    json_t *msgs = json_object_get(r->json, "messages");
    ck_assert_msg(json_is_array(msgs), "%s", buf_str(&r->body));
    return msgs;
}

/* Receives and writes the bodies, comma-separated, into out; returns the count. The receipt of
 * the first message goes into receipt when not NULL. */
static size_t receive_bodies(const char *queue, const char *request, char *out, size_t n,
                             char *receipt)
{
    struct response r;
    json_t *msgs = receive(queue, request, &r);
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", i ? "," : "", json_str(m, "body"));
        ck_assert_ptr_nonnull(json_str(m, "group_id"));
        ck_assert_ptr_nonnull(json_str(m, "sequence_number"));
    }
    if (receipt && json_array_size(msgs))
        snprintf(receipt, MQ_RECEIPT_LEN, "%s", json_str(json_array_get(msgs, 0), "receipt"));
    size_t count = json_array_size(msgs);
    response_cleanup(&r);
    return count;
}

/* method on the message of receipt in queue, with body (or NULL); returns the status. */
static long on_receipt(const char *method, const char *queue, const char *receipt, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", queue, receipt);
    struct response r;
    harness_admin(&srv, method, path, body, &r);
    long st = r.status;
    response_cleanup(&r);
    return st;
}

static long delete_receipt(const char *queue, const char *receipt)
{
    return on_receipt("DELETE", queue, receipt, NULL);
}

START_TEST(fifo_send_rules)
{
    harness_put_queue(&srv, "rules.fifo", NULL, 201);
    const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{\"body\": \"x\", \"dedup_id\": \"d\"}", "group_id"},
        {"{\"body\": \"x\", \"group_id\": \"g\"}", "dedup_id"},
        {"{\"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": \"d\", \"delay_seconds\": 1}",
         "delay_seconds"},
        {"{\"body\": \"x\", \"group_id\": \"a b\", \"dedup_id\": \"d\"}", "group_id"},
        {"{\"body\": \"x\", \"group_id\": \"\", \"dedup_id\": \"d\"}", "group_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/rules.fifo/messages", cases[i].body, &r);
        assert_problem(&r, 400);
        ck_assert_msg(problem_names_field(&r, cases[i].field), "%s: %s", cases[i].body,
                      buf_str(&r.body));
        response_cleanup(&r);
    }
    ck_assert_int_eq(harness_stored("rules.fifo"), 0);
    struct response r;
    post("rules.fifo", "/messages", "{\"body\": \"ok\", \"group_id\": \"g\", \"dedup_id\": \"d\"}",
         201, &r);
    char md5[33];
    secret_md5_hex("ok", 2, md5);
    ck_assert_str_eq(json_str(r.json, "md5_of_body"), md5);
    ck_assert_ptr_nonnull(json_str(r.json, "sequence_number"));
    response_cleanup(&r);
}
END_TEST

START_TEST(sequence_numbers_increase)
{
    harness_put_queue(&srv, "seq.fifo", NULL, 201);
    long long prev = 0;
    for (int i = 0; i < 5; i++) {
        char body[16];
        snprintf(body, sizeof body, "s%d", i);
        long long seq = send_body("seq.fifo", i % 2 ? "odd" : "even", body);
        ck_assert_msg(seq > prev, "sequence %lld after %lld", seq, prev);
        prev = seq;
    }
    char got[256];
    ck_assert_int_eq(receive_bodies("seq.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     5);
}
END_TEST

static struct db_conn *hold_connection(void)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 2000, &why);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Consecutive sends of one producer land on whichever pooled connection is free; a concurrent
 * request holding one (here: the test itself) is enough to move the next send to another. Send
 * order must still be sequence order and delivery order. */
START_TEST(order_holds_across_pooled_connections)
{
    harness_put_queue(&srv, "rotate.fifo", NULL, 201);
    long long seq[6];
    char want[256] = "";
    for (int i = 0; i < 6; i++) {
        char body[16];
        snprintf(body, sizeof body, "r%d", i);
        /* every other send, the connection the previous one used is busy elsewhere */
        struct db_conn *held = i % 2 ? hold_connection() : NULL;
        seq[i] = send_body("rotate.fifo", "g", body);
        if (held)
            db_pool_release(srv.app.pool, held);
        size_t n = strlen(want);
        snprintf(want + n, sizeof want - n, "%s%s", i ? "," : "", body);
    }
    for (int i = 1; i < 6; i++)
        ck_assert_msg(seq[i] > seq[i - 1],
                      "send %d got sequence number %lld, below the %lld of send %d", i, seq[i],
                      seq[i - 1], i - 1);
    char got[256];
    ck_assert_int_eq(receive_bodies("rotate.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     6);
    ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(order_within_groups)
{
    harness_put_queue(&srv, "order.fifo", NULL, 201);
    for (int i = 1; i <= 5; i++) {
        char a[8], b[8];
        snprintf(a, sizeof a, "a%d", i);
        snprintf(b, sizeof b, "b%d", i);
        send_body("order.fifo", "ga", a);
        send_body("order.fifo", "gb", b);
    }
    struct response r;
    json_t *msgs = receive("order.fifo", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 10);
    int next_a = 1, next_b = 1;
    long long prev_a = 0, prev_b = 0;
    for (size_t i = 0; i < 10; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *body = json_str(m, "body"), *group = json_str(m, "group_id");
        long long seq = atoll(json_str(m, "sequence_number"));
        char want[16];
        if (strcmp(group, "ga") == 0) {
            snprintf(want, sizeof want, "a%d", next_a++);
            ck_assert_int_gt(seq, prev_a);
            prev_a = seq;
        } else {
            ck_assert_str_eq(group, "gb");
            snprintf(want, sizeof want, "b%d", next_b++);
            ck_assert_int_gt(seq, prev_b);
            prev_b = seq;
        }
        ck_assert_str_eq(body, want);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 1);
    }
    response_cleanup(&r);
}
END_TEST

START_TEST(in_flight_group_blocks_only_itself)
{
    harness_put_queue(&srv, "hol.fifo", NULL, 201);
    send_body("hol.fifo", "g1", "x1");
    send_body("hol.fifo", "g1", "x2");
    send_body("hol.fifo", "g2", "y1");
    send_body("hol.fifo", "g2", "y2");
    send_body("hol.fifo", "g3", "z1");

    char got[256], receipt[MQ_RECEIPT_LEN];
    ck_assert_int_eq(receive_bodies("hol.fifo", "{}", got, sizeof got, receipt), 1);
    char head[sizeof got];
    snprintf(head, sizeof head, "%s", got);
    ck_assert_msg(strcmp(head, "x1") == 0 || strcmp(head, "y1") == 0 || strcmp(head, "z1") == 0,
                  "first delivery %s is not the head of a group", head);
    char blocked = head[0]; /* 'x', 'y' or 'z': the group now in flight */

    /* everything else flows, nothing of the blocked group */
    ck_assert_int_eq(receive_bodies("hol.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     head[0] == 'z' ? 4 : 3);
    for (const char *p = got; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p))
        ck_assert_msg(*p != blocked, "group of %s delivered while in flight: %s", head, got);
    if (blocked == 'x')
        ck_assert_str_eq(got, "y1,y2,z1");
    ck_assert_int_eq(receive_bodies("hol.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     0);

    /* deleting the in-flight head lets its group flow again */
    ck_assert_int_eq(delete_receipt("hol.fifo", receipt), 204);
    size_t n = receive_bodies("hol.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL);
    if (blocked == 'z') {
        ck_assert_int_eq(n, 0);
    } else {
        char want[8];
        snprintf(want, sizeof want, "%c2", blocked);
        ck_assert_int_eq(n, 1);
        ck_assert_str_eq(got, want);
    }
}
END_TEST

/* A connection of its own in an open transaction that has run sql (its last statement's
 * result must be want). Ends with finish. */
static PGconn *in_transaction(const char *sql, ExecStatusType want, char *first, size_t n)
{
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PGresult *r = PQexec(pg, "BEGIN");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == want, "%s: %s", sql, PQresultErrorMessage(r));
    if (first)
        snprintf(first, n, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return pg;
}

/* Ends the transaction of in_transaction with end ("COMMIT" or "ROLLBACK"). */
static void finish(PGconn *pg, const char *end)
{
    PQclear(PQexec(pg, end));
    PQfinish(pg);
}

/* A receive locks only the groups it serves: while a transaction that received one message
 * is open, the other ready groups go to concurrent receives (a loop over the ready groups used
 * to fetch, and lock, ten at a time). */
START_TEST(a_receive_locks_only_the_groups_it_serves)
{
    harness_put_queue(&srv, "lock.fifo", NULL, 201);
    send_body("lock.fifo", "g1", "x1");
    send_body("lock.fifo", "g2", "y1");
    send_body("lock.fifo", "g3", "z1");
    char got[256];
    PGconn *pg = in_transaction("SELECT count(*) FROM mq_receive((SELECT id FROM queues "
                                "WHERE name = 'lock.fifo'), 1, 30, 1, false)",
                                PGRES_TUPLES_OK, got, sizeof got);
    ck_assert_str_eq(got, "1");
    ck_assert_int_eq(receive_bodies("lock.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     2);
    finish(pg, "ROLLBACK");
}
END_TEST

struct waiting_receive {
    long status;
    size_t count;
};

static void *receive_waiting(void *arg)
{
    struct waiting_receive *w = arg;
    struct response r;
    harness_admin(&srv, "POST", "/queues/lease.fifo/messages:receive",
                  "{\"max_messages\": 10, \"visibility_timeout\": 2}", &r);
    w->status = r.status;
    w->count = json_array_size(json_object_get(r.json, "messages"));
    response_cleanup(&r);
    return NULL;
}

/* A lease counts from when the receive has its messages, not from when it began: one that
 * waited 3 s for a lock on the group's head (a sweep deleting it, say) with a visibility of 2 s
 * used to lease the group until a time already past, and the next receive took it again. */
START_TEST(a_lease_counts_from_when_the_messages_are_taken)
{
    harness_put_queue(&srv, "lease.fifo", NULL, 201);
    send_body("lease.fifo", "g", "a1");
    send_body("lease.fifo", "g", "a2");
    PGconn *pg = in_transaction("SELECT 1 FROM messages m JOIN queues q ON q.id = m.queue_id "
                                "WHERE q.name = 'lease.fifo' ORDER BY m.id LIMIT 1 FOR UPDATE OF m",
                                PGRES_TUPLES_OK, NULL, 0);
    static struct waiting_receive w; /* the thread outlives a failed check's jump out of here */
    memset(&w, 0, sizeof w);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, receive_waiting, &w), 0);
    harness_sleep_ms(3000);
    finish(pg, "ROLLBACK");
    pthread_join(t, NULL);
    ck_assert_int_eq(w.status, 200);
    ck_assert_int_eq(w.count, 2);
    char got[64];
    ck_assert_int_eq(receive_bodies("lease.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     0);
}
END_TEST

struct purging {
    const char *queue;
    long status;
};

static void *purge_main(void *arg)
{
    struct purging *pu = arg;
    struct response r;
    char path[128];
    snprintf(path, sizeof path, "/queues/%s:purge", pu->queue);
    harness_admin(&srv, "POST", path, NULL, &r);
    pu->status = r.status;
    response_cleanup(&r);
    return NULL;
}

/* A purge changes only the groups it locked. A group made while the purge waited for another
 * (g0, held here as a worker's lease would) is not the purge's: it used to delete that group's
 * row too, so a receive holding the group while it updated one of the messages the purge had
 * deleted deadlocked with it (and a send committing in between lost its group row). */
START_TEST(a_purge_leaves_groups_it_did_not_lock)
{
    harness_put_queue(&srv, "pg.fifo", NULL, 201);
    send_body("pg.fifo", "g0", "m0");
    PGconn *held = in_transaction("SELECT 1 FROM message_groups g JOIN queues q ON q.id = "
                                  "g.queue_id WHERE q.name = 'pg.fifo' FOR UPDATE OF g",
                                  PGRES_TUPLES_OK, NULL, 0);
    static struct purging pu; /* the thread outlives a failed check's jump out of here */
    pu = (struct purging){.queue = "pg.fifo"};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, purge_main, &pu), 0);
    const char *purge_waits = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                              "'%mq_purge%' AND query NOT LIKE '%pg_stat_activity%' AND "
                              "wait_event_type = 'Lock' AND datname = current_database()";
    ck_assert_int_eq(harness_wait_sql(purge_waits, 1, 10), 1);
    long long m1 = send_body("pg.fifo", "gn", "m1"); /* a new group, after the purge's lock */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT 1 FROM message_groups g JOIN queues q ON q.id = g.queue_id WHERE q.name = "
             "'pg.fifo' AND g.group_id = 'gn' FOR UPDATE OF g");
    PGconn *receiver = in_transaction(sql, PGRES_TUPLES_OK, NULL, 0); /* a receive's lock */
    finish(held, "ROLLBACK");
    /* the purge finishes, or (as it used to) waits for the receiver's group */
    for (double until = harness_now_s() + 10; !pu.status && harness_now_s() < until;)
        if (harness_wait_sql(purge_waits, 1, 0.2) == 1)
            break;
    snprintf(sql, sizeof sql,
             "UPDATE messages SET visible_at = now() + interval '30 s' WHERE id IN (SELECT "
             "m.id FROM messages m JOIN queues q ON q.id = m.queue_id WHERE q.name = 'pg.fifo' "
             "AND m.group_id = 'gn' AND m.id >= %lld)",
             m1);
    PGresult *r = PQexec(receiver, sql);
    ExecStatusType st = PQresultStatus(r);
    char err[256];
    snprintf(err, sizeof err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    finish(receiver, "COMMIT");
    pthread_join(t, NULL);
    ck_assert_msg(st == PGRES_COMMAND_OK, "the receive's update failed: %s", err);
    ck_assert_int_eq(pu.status, 204);
    ck_assert_int_eq(harness_stored("pg.fifo"), 0);
}
END_TEST

/* A group made while the purge waited, whose message was leased and is then purged, is open
 * again after the purge: it stayed closed until that lease ended (30 s here), new messages of
 * the group waiting all along. */
START_TEST(a_purge_reopens_a_group_it_emptied_of_its_lease)
{
    harness_put_queue(&srv, "pr.fifo", NULL, 201);
    send_body("pr.fifo", "g0", "m0");
    PGconn *held = in_transaction("SELECT 1 FROM message_groups g JOIN queues q ON q.id = "
                                  "g.queue_id WHERE q.name = 'pr.fifo' FOR UPDATE OF g",
                                  PGRES_TUPLES_OK, NULL, 0);
    static struct purging pu; /* the thread outlives a failed check's jump out of here */
    pu = (struct purging){.queue = "pr.fifo"};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, purge_main, &pu), 0);
    ck_assert_int_eq(harness_wait_sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                      "'%mq_purge%' AND query NOT LIKE '%pg_stat_activity%' AND "
                                      "wait_event_type = 'Lock' AND datname = current_database()",
                                      1, 10),
                     1);
    send_body("pr.fifo", "gn", "m1");
    char got[64];
    ck_assert_int_eq(
        receive_bodies("pr.fifo", "{\"visibility_timeout\": 30}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "m1");
    finish(held, "ROLLBACK");
    pthread_join(t, NULL);
    ck_assert_int_eq(pu.status, 204);
    send_body("pr.fifo", "gn", "m2");
    ck_assert_int_eq(receive_bodies("pr.fifo", "{}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "m2");
}
END_TEST

static void *delete_queue_main(void *arg)
{
    struct purging *pu = arg;
    struct response r;
    char path[128];
    snprintf(path, sizeof path, "/queues/%s", pu->queue);
    harness_admin(&srv, "DELETE", path, NULL, &r);
    pu->status = r.status;
    response_cleanup(&r);
    return NULL;
}

/* The SQL with which a send claims dedup id of queue dq.fifo (as mq_send_fifo does). */
static void dedup_claim(char *out, size_t n, const char *id)
{
    snprintf(out, n,
             "INSERT INTO dedup_entries AS d (queue_id, dedup_id, message_id, sequence, "
             "expires_at) SELECT id, '%s', gen_random_uuid(), 0, clock_timestamp() + interval "
             "'5 minutes' FROM queues WHERE name = 'dq.fifo' ON CONFLICT (queue_id, dedup_id) DO "
             "UPDATE SET expires_at = EXCLUDED.expires_at WHERE d.expires_at <= clock_timestamp()",
             id);
}

/* Deleting a queue leaves its dedup ids to the sweeper: it deleted them after locking the
 * groups, so a batch send into a group made after that lock, holding one dedup id ("b") and
 * then claiming one the delete had just deleted ("a"), deadlocked with it. */
START_TEST(a_queue_deletion_does_not_deadlock_with_a_batch_send)
{
    harness_put_queue(&srv, "dq.fifo", NULL, 201);
    send_to("dq.fifo", "g0", "m0", "a", NULL);
    send_to("dq.fifo", "g0", "m1", "b", NULL);
    PGconn *held = in_transaction("SELECT 1 FROM message_groups g JOIN queues q ON q.id = "
                                  "g.queue_id WHERE q.name = 'dq.fifo' FOR UPDATE OF g",
                                  PGRES_TUPLES_OK, NULL, 0);
    static struct purging del; /* the thread outlives a failed check's jump out of here */
    del = (struct purging){.queue = "dq.fifo"};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, delete_queue_main, &del), 0);
    const char *waits = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                        "'%mq_delete_queue%' AND query NOT LIKE '%pg_stat_activity%' AND "
                        "wait_event_type = 'Lock' AND datname = current_database()";
    ck_assert_int_eq(harness_wait_sql(waits, 1, 10), 1);
    /* the batch: a new group, then dedup id b (locked even as a duplicate) */
    PGconn *batch = in_transaction(
        "SELECT mq_touch_group((SELECT id FROM queues WHERE name = 'dq.fifo'), 'gn')",
        PGRES_TUPLES_OK, NULL, 0);
    char sql[600];
    dedup_claim(sql, sizeof sql, "b");
    PGresult *r = PQexec(batch, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    finish(held, "ROLLBACK");
    /* the delete finishes, or (as it used to) deletes a and waits for b */
    for (double until = harness_now_s() + 10; !del.status && harness_now_s() < until;)
        if (harness_wait_sql(waits, 1, 0.2) == 1)
            break;
    dedup_claim(sql, sizeof sql, "a");
    r = PQexec(batch, sql);
    ExecStatusType st = PQresultStatus(r);
    char err[256];
    snprintf(err, sizeof err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    finish(batch, st == PGRES_COMMAND_OK ? "COMMIT" : "ROLLBACK");
    pthread_join(t, NULL);
    ck_assert_msg(st == PGRES_COMMAND_OK, "the batch's dedup id: %s", err);
    ck_assert_int_eq(del.status, 204);
}
END_TEST

START_TEST(receive_takes_several_of_a_group_in_order)
{
    harness_put_queue(&srv, "several.fifo", NULL, 201);
    send_body("several.fifo", "g", "m1");
    send_body("several.fifo", "g", "m2");
    send_body("several.fifo", "g", "m3");
    send_body("several.fifo", "g", "m4");
    char got[256];
    ck_assert_int_eq(receive_bodies("several.fifo", "{\"max_messages\": 3}", got, sizeof got, NULL),
                     3);
    ck_assert_str_eq(got, "m1,m2,m3");
    /* m4 waits for its group */
    ck_assert_int_eq(
        receive_bodies("several.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL), 0);
}
END_TEST

/* Deleting some of the messages a receive took leaves the group closed while the others are
 * in flight (the group's refresh reads only what it leased, 043), and opens it once they are
 * all gone. */
START_TEST(a_group_stays_closed_until_its_whole_batch_is_done)
{
    harness_put_queue(&srv, "batchdone.fifo", NULL, 201);
    const char *const bodies[] = {"b1", "b2", "b3", "b4", "b5"};
    for (int i = 0; i < 5; i++)
        send_body("batchdone.fifo", "g", bodies[i]);
    struct response r;
    json_t *msgs = receive("batchdone.fifo", "{\"max_messages\": 3}", &r);
    ck_assert_int_eq(json_array_size(msgs), 3);
    char receipts[3][MQ_RECEIPT_LEN];
    for (int i = 0; i < 3; i++)
        snprintf(receipts[i], MQ_RECEIPT_LEN, "%s", json_str(json_array_get(msgs, i), "receipt"));
    response_cleanup(&r);
    char got[256];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(delete_receipt("batchdone.fifo", receipts[i]), 204);
        ck_assert_int_eq(
            receive_bodies("batchdone.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL), 0);
    }
    ck_assert_int_eq(delete_receipt("batchdone.fifo", receipts[2]), 204);
    ck_assert_int_eq(
        receive_bodies("batchdone.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL), 2);
    ck_assert_str_eq(got, "b4,b5");
}
END_TEST

/* Groups are served in the order they became ready: a group that has waited since its last
 * message was deleted goes before one created after that (new groups used to start at
 * '-infinity', ahead of every group that had had a turn). */
START_TEST(a_group_waiting_longer_is_served_first)
{
    harness_put_queue(&srv, "fair.fifo", NULL, 201);
    send_body("fair.fifo", "old", "o1");
    send_body("fair.fifo", "old", "o2");
    char got[256], receipt[MQ_RECEIPT_LEN];
    ck_assert_int_eq(receive_bodies("fair.fifo", "{}", got, sizeof got, receipt), 1);
    ck_assert_str_eq(got, "o1");
    ck_assert_int_eq(delete_receipt("fair.fifo", receipt), 204); /* "old" ready from here */
    harness_sleep_ms(20);
    send_body("fair.fifo", "new", "n1");
    ck_assert_int_eq(receive_bodies("fair.fifo", "{}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "o2");
    ck_assert_int_eq(receive_bodies("fair.fifo", "{}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "n1");
}
END_TEST

/* A group whose first message is not visible yet (the queue's delay) waits out of the serve
 * order until it is, instead of being locked and passed over by every receive meanwhile; it is
 * served once the message is visible. */
START_TEST(a_delayed_group_waits_out_of_the_serve_order)
{
    harness_put_queue(&srv, "later.fifo", "{\"delay_seconds\": 1}", 201);
    send_body("later.fifo", "g", "d1");
    char got[256];
    ck_assert_int_eq(receive_bodies("later.fifo", "{}", got, sizeof got, NULL), 0);
    ck_assert_int_eq(
        harness_sqlf("SELECT count(*) FROM message_groups mg JOIN queues q ON q.id = "
                     "mg.queue_id WHERE q.name = 'later.fifo' AND mg.in_flight_until "
                     "= (SELECT m.visible_at FROM messages m WHERE m.queue_id = q.id)"),
        1);
    harness_sleep_ms(1100);
    ck_assert_int_eq(receive_bodies("later.fifo", "{}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "d1");
}
END_TEST

START_TEST(release_and_expiry_redeliver_the_head_first)
{
    harness_put_queue(&srv, "redeliver.fifo", "{\"visibility_timeout\": 1}", 201);
    send_body("redeliver.fifo", "g", "h1");
    send_body("redeliver.fifo", "g", "h2");
    send_body("redeliver.fifo", "g", "h3");
    char got[256], receipt[MQ_RECEIPT_LEN];
    ck_assert_int_eq(receive_bodies("redeliver.fifo", "{}", got, sizeof got, receipt), 1);
    ck_assert_str_eq(got, "h1");
    ck_assert_int_eq(receive_bodies("redeliver.fifo", "{}", got, sizeof got, NULL), 0);
    harness_sleep_ms(1100);
    struct response r;
    json_t *msgs =
        receive("redeliver.fifo", "{\"max_messages\": 2, \"visibility_timeout\": 30}", &r);
    ck_assert_int_eq(json_array_size(msgs), 2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 0), "body"), "h1");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(msgs, 0), "receive_count")),
                     2);
    ck_assert_str_eq(json_str(json_array_get(msgs, 1), "body"), "h2");
    char h2[MQ_RECEIPT_LEN];
    snprintf(h2, sizeof h2, "%s", json_str(json_array_get(msgs, 1), "receipt"));
    response_cleanup(&r);
    ck_assert_int_eq(delete_receipt("redeliver.fifo", receipt), 409); /* superseded */

    /* releasing one in-flight message of the group (visibility 0) frees the group from it */
    char path[256];
    snprintf(path, sizeof path, "/queues/redeliver.fifo/messages/%s", h2);
    harness_admin(&srv, "PATCH", path, "{\"visibility_timeout\": 0}", &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    /* h1 is still in flight, so the group stays blocked */
    ck_assert_int_eq(
        receive_bodies("redeliver.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL), 0);
}
END_TEST

START_TEST(dedup_id_within_the_window)
{
    harness_put_queue(&srv, "dedup.fifo", NULL, 201);
    char id[IDS_UUID_LEN];
    long long seq = send_to("dedup.fifo", "g", "original", "d-1", id);
    struct response r;
    post("dedup.fifo", "/messages",
         "{\"body\": \"another body\", \"group_id\": \"g2\", \"dedup_id\": \"d-1\"}", 200, &r);
    ck_assert_str_eq(json_str(r.json, "message_id"), id);
    ck_assert_int_eq(atoll(json_str(r.json, "sequence_number")), seq);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("dedup.fifo"), 1);

    /* inside a batch too, and against an earlier entry of the same batch */
    post("dedup.fifo", "/messages:batch",
         "{\"entries\": [{\"id\": \"a\", \"body\": \"x\", \"group_id\": \"g\", \"dedup_id\": "
         "\"d-1\"}, {\"id\": \"b\", \"body\": \"y\", \"group_id\": \"g\", \"dedup_id\": \"d-2\"}, "
         "{\"id\": \"c\", \"body\": \"z\", \"group_id\": \"g\", \"dedup_id\": \"d-2\"}]}",
         200, &r);
    json_t *ok = json_object_get(r.json, "successful");
    ck_assert_int_eq(json_array_size(ok), 3);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "failed")), 0);
    ck_assert_str_eq(json_str(json_array_get(ok, 0), "message_id"), id);
    ck_assert_str_ne(json_str(json_array_get(ok, 1), "message_id"), id);
    ck_assert_str_eq(json_str(json_array_get(ok, 1), "message_id"),
                     json_str(json_array_get(ok, 2), "message_id"));
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("dedup.fifo"), 2);

    /* deduplication outlives delivery and deletion */
    char got[256], receipt[MQ_RECEIPT_LEN];
    ck_assert_int_eq(
        receive_bodies("dedup.fifo", "{\"max_messages\": 10}", got, sizeof got, receipt), 2);
    ck_assert_str_eq(got, "original,y");
    ck_assert_int_eq(delete_receipt("dedup.fifo", receipt), 204);
    post("dedup.fifo", "/messages",
         "{\"body\": \"again\", \"group_id\": \"g\", \"dedup_id\": \"d-1\"}", 200, &r);
    ck_assert_str_eq(json_str(r.json, "message_id"), id);
    response_cleanup(&r);
    ck_assert_int_eq(harness_stored("dedup.fifo"), 1);

    /* once the window has passed, the id is free again */
    free(harness_sql(harness_db_url(),
                     "UPDATE dedup_entries SET expires_at = now() - interval '1 s' "
                     "WHERE dedup_id = 'd-1'"));
    char fresh[IDS_UUID_LEN];
    send_to("dedup.fifo", "g3", "again", "d-1", fresh);
    ck_assert_str_ne(fresh, id);
    ck_assert_int_eq(harness_stored("dedup.fifo"), 2);
}
END_TEST

/* The SQL of a direct mq_send_fifo of entries (a JSON array of {message_id, group_id,
 * dedup_id, body}) to queue; out gets it (n bytes). */
static void send_fifo_sql(char *out, size_t n, const char *queue, const char *entries)
{
    snprintf(
        out, n,
        "SELECT string_agg(duplicate::text, ',' ORDER BY ord) FROM mq_send_fifo((SELECT id "
        "FROM queues WHERE name = '%s'), (SELECT json_agg(e || '{\"body_json\": false, "
        "\"attributes\": null, \"delay\": 0}'::jsonb) FROM jsonb_array_elements('%s') e)::json)",
        queue, entries);
}

/* The 5-minute window is judged by the clock, not by the start of the sending transaction: a
 * send that waited (here: a transaction that began before the id expired) is not taken for a
 * duplicate of an expired id. */
START_TEST(the_window_is_judged_by_the_clock)
{
    harness_put_queue(&srv, "clock.fifo", NULL, 201);
    send_to("clock.fifo", "g", "first", "d-c", NULL);
    harness_sqlf("UPDATE dedup_entries SET expires_at = clock_timestamp() + interval '1 s' "
                 "WHERE dedup_id = 'd-c' RETURNING 1");
    PGconn *pg = in_transaction("SELECT now()", PGRES_TUPLES_OK, NULL, 0);
    harness_sleep_ms(1500);
    char sql[1024], got[64];
    send_fifo_sql(sql, sizeof sql, "clock.fifo",
                  "[{\"message_id\": \"00000000-0000-4000-8000-00000000c10c\", \"group_id\": "
                  "\"g2\", \"dedup_id\": \"d-c\", \"body\": \"later\"}]");
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    snprintf(got, sizeof got, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    finish(pg, "COMMIT");
    ck_assert_str_eq(got, "false");
    ck_assert_int_eq(harness_stored("clock.fifo"), 2);
}
END_TEST

/* Sends sql on a connection of its own without waiting for it; read with sent_result. */
static PGconn *send_async(const char *sql)
{
    PGconn *pg = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    ck_assert(PQsendQuery(pg, sql));
    return pg;
}

/* The single value the statement sent by send_async gave ("" when it failed, with the error in
 * err); closes the connection. */
static void sent_result(PGconn *pg, char *out, size_t n, char *err, size_t errlen)
{
    PGresult *r = PQgetResult(pg);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    snprintf(out, n, "%s", ok ? PQgetvalue(r, 0, 0) : "");
    snprintf(err, errlen, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(pg)))
        PQclear(r);
    PQfinish(pg);
}

/* Two batches with the same dedup ids in opposite orders, in different groups: each used to
 * insert its first id and wait for the other's second (a deadlock, one of them refused). A
 * test trigger holds each batch after its first message until both are under way. */
START_TEST(batches_with_dedup_ids_in_opposite_orders_do_not_deadlock)
{
    harness_put_queue(&srv, "opposite.fifo", NULL, 201);
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "PERFORM pg_advisory_xact_lock_shared(4242, 4242); RETURN NEW; END $$; "
                     "CREATE TRIGGER test_gate BEFORE INSERT ON messages FOR EACH ROW WHEN "
                     "(NEW.body = 'gate') EXECUTE FUNCTION test_gate()"));
    PGconn *gate =
        in_transaction("SELECT pg_advisory_xact_lock(4242, 4242)", PGRES_TUPLES_OK, NULL, 0);
    char a_sql[1024], b_sql[1024];
    send_fifo_sql(a_sql, sizeof a_sql, "opposite.fifo",
                  "[{\"message_id\": \"00000000-0000-4000-8000-0000000000a1\", \"group_id\": "
                  "\"ga\", \"dedup_id\": \"x\", \"body\": \"gate\"}, {\"message_id\": "
                  "\"00000000-0000-4000-8000-0000000000a2\", \"group_id\": \"ga\", \"dedup_id\": "
                  "\"y\", \"body\": \"a2\"}]");
    send_fifo_sql(b_sql, sizeof b_sql, "opposite.fifo",
                  "[{\"message_id\": \"00000000-0000-4000-8000-0000000000b1\", \"group_id\": "
                  "\"gb\", \"dedup_id\": \"y\", \"body\": \"gate\"}, {\"message_id\": "
                  "\"00000000-0000-4000-8000-0000000000b2\", \"group_id\": \"gb\", \"dedup_id\": "
                  "\"x\", \"body\": \"b2\"}]");
    const char *waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND datname = current_database() AND query LIKE '%mq_send_fifo%'";
    PGconn *a = send_async(a_sql);
    ck_assert_int_eq(harness_wait_sql(waiting, 1, 10), 1);
    PGconn *b = send_async(b_sql);
    ck_assert_int_eq(harness_wait_sql(waiting, 2, 10), 2);
    finish(gate, "COMMIT");
    char a_got[64], b_got[64], a_err[512], b_err[512];
    sent_result(a, a_got, sizeof a_got, a_err, sizeof a_err);
    sent_result(b, b_got, sizeof b_got, b_err, sizeof b_err);
    free(harness_sql(harness_db_url(), "DROP TRIGGER test_gate ON messages; "
                                       "DROP FUNCTION test_gate()"));
    ck_assert_msg(a_got[0] && b_got[0], "a: %s b: %s", a_err, b_err);
    /* the first committed both ids; the second found them */
    ck_assert_str_eq(a_got, "false,false");
    ck_assert_str_eq(b_got, "true,true");
    ck_assert_int_eq(harness_stored("opposite.fifo"), 2);
}
END_TEST

/* A batch that meets a busy group holds none of its other groups while it waits (sql/054): a
 * batch for groups ga and gb that met gb held (by a worker's mq_hold, here a transaction's lock)
 * locked ga and waited, and every receive skipped ga until gb's holder was done. */
START_TEST(a_batch_waiting_for_one_group_holds_no_other)
{
    harness_put_queue(&srv, "wait.fifo", NULL, 201);
    send_body("wait.fifo", "ga", "a1");
    send_body("wait.fifo", "gb", "b1");
    PGconn *held = in_transaction("SELECT 1 FROM message_groups g JOIN queues q ON q.id = "
                                  "g.queue_id WHERE q.name = 'wait.fifo' AND g.group_id = 'gb' "
                                  "FOR UPDATE OF g",
                                  PGRES_TUPLES_OK, NULL, 0);
    char sql[1024];
    send_fifo_sql(sql, sizeof sql, "wait.fifo",
                  "[{\"message_id\": \"00000000-0000-4000-8000-0000000001a2\", \"group_id\": "
                  "\"ga\", \"dedup_id\": \"a2\", \"body\": \"a2\"}, {\"message_id\": "
                  "\"00000000-0000-4000-8000-0000000001b2\", \"group_id\": \"gb\", \"dedup_id\": "
                  "\"b2\", \"body\": \"b2\"}]");
    PGconn *batch = send_async(sql);
    const char *waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND datname = current_database() AND query LIKE '%mq_send_fifo%'";
    ck_assert_int_eq(harness_wait_sql(waiting, 1, 10), 1);
    char got[256];
    size_t n = 0; /* the wait seen may be the batch's first try, its 1 ms with ga held */
    for (double until = harness_now_s() + 5; n == 0 && harness_now_s() < until;)
        n = receive_bodies("wait.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL);
    finish(held, "ROLLBACK");
    char out[64], err[512];
    sent_result(batch, out, sizeof out, err, sizeof err);
    ck_assert_msg(n == 1 && strcmp(got, "a1") == 0, "received %zu: %s", n, got);
    ck_assert_msg(out[0], "%s", err);
    ck_assert_str_eq(out, "false,false");
    ck_assert_int_eq(harness_stored("wait.fifo"), 4);
}
END_TEST

START_TEST(content_based_dedup_uses_the_body_hash)
{
    harness_put_queue(&srv, "cbd.fifo", "{\"content_based_dedup\": true}", 201);
    char id[IDS_UUID_LEN];
    send_to("cbd.fifo", "g1", "same body", NULL, id);
    struct response r;
    post("cbd.fifo", "/messages", "{\"body\": \"same body\", \"group_id\": \"g2\"}", 200, &r);
    ck_assert_str_eq(json_str(r.json, "message_id"), id);
    response_cleanup(&r);
    char other[IDS_UUID_LEN];
    send_to("cbd.fifo", "g1", "other body", NULL, other);
    ck_assert_str_ne(other, id);
    /* an explicit dedup_id still wins over the hash */
    send_to("cbd.fifo", "g1", "same body", "explicit", NULL);
    ck_assert_int_eq(harness_stored("cbd.fifo"), 3);

    char sha[65], sql[256];
    secret_sha256_hex("same body", 9, sha);
    snprintf(sql, sizeof sql, "SELECT message_id FROM dedup_entries WHERE dedup_id = '%s'", sha);
    char *stored_id = harness_sql(harness_db_url(), sql);
    ck_assert_ptr_nonnull(stored_id);
    ck_assert_str_eq(stored_id, id);
    free(stored_id);

    /* a JSON body is hashed as its compact text */
    post("cbd.fifo", "/messages", "{\"body\": {\"k\": [1, 2]}, \"group_id\": \"g1\"}", 201, &r);
    response_cleanup(&r);
    post("cbd.fifo", "/messages", "{\"body\": {\"k\":[1,2]}, \"group_id\": \"g1\"}", 200, &r);
    response_cleanup(&r);
    secret_sha256_hex("{\"k\":[1,2]}", 11, sha);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM dedup_entries WHERE dedup_id = '%s'", sha);
    char *n = harness_sql(harness_db_url(), sql);
    ck_assert_str_eq(n, "1");
    free(n);
}
END_TEST

START_TEST(dead_letter_keeps_group_order)
{
    harness_put_queue(&srv, "dl.fifo", NULL, 201);
    harness_put_queue(&srv, "src.fifo",
                      "{\"dead_letter\": {\"queue\": \"dl.fifo\", \"max_receive_count\": 1}}", 201);
    send_body("src.fifo", "g", "d1");
    send_body("src.fifo", "g", "d2");
    send_body("src.fifo", "g", "d3");
    char got[256];
    ck_assert_int_eq(receive_bodies("src.fifo", "{\"max_messages\": 2, \"visibility_timeout\": 1}",
                                    got, sizeof got, NULL),
                     2);
    ck_assert_str_eq(got, "d1,d2");
    send_body("src.fifo", "h", "e1");
    harness_sleep_ms(1100);
    /* d1 and d2 are exhausted: they move, and d3 becomes the head of g */
    ck_assert_int_eq(receive_bodies("src.fifo", "{\"max_messages\": 10, \"visibility_timeout\": 1}",
                                    got, sizeof got, NULL),
                     2);
    ck_assert_str_eq(got, "d3,e1");
    harness_sleep_ms(1100);
    ck_assert_int_eq(receive_bodies("src.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     0);
    ck_assert_int_eq(harness_stored("src.fifo"), 0);
    ck_assert_int_eq(harness_stored("dl.fifo"), 4);

    struct response r;
    json_t *msgs = receive("dl.fifo", "{\"max_messages\": 10}", &r);
    ck_assert_int_eq(json_array_size(msgs), 4);
    const char *order_g[] = {"d1", "d2", "d3"};
    int next = 0;
    for (size_t i = 0; i < 4; i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(json_str(m, "group_id"), "g") == 0) {
            ck_assert_int_lt(next, 3);
            ck_assert_str_eq(json_str(m, "body"), order_g[next++]);
        } else {
            ck_assert_str_eq(json_str(m, "group_id"), "h");
            ck_assert_str_eq(json_str(m, "body"), "e1");
        }
        /* the count it had when it moved, plus this receive */
        ck_assert_int_eq(json_integer_value(json_object_get(m, "receive_count")), 2);
    }
    ck_assert_int_eq(next, 3);
    response_cleanup(&r);
}
END_TEST

/* The receipt of each message received from queue (request), by body, into receipts[i] for
 * bodies[i]; returns how many were received. */
static size_t receive_receipts(const char *queue, const char *request, const char *const *bodies,
                               char (*receipts)[MQ_RECEIPT_LEN], size_t n)
{
    struct response r;
    json_t *msgs = receive(queue, request, &r);
    size_t count = json_array_size(msgs);
    for (size_t i = 0; i < count; i++)
        for (size_t k = 0; k < n; k++)
            if (strcmp(json_str(json_array_get(msgs, i), "body"), bodies[k]) == 0)
                snprintf(receipts[k], MQ_RECEIPT_LEN, "%s",
                         json_str(json_array_get(msgs, i), "receipt"));
    response_cleanup(&r);
    return count;
}

static long release(const char *queue, const char *receipt)
{
    return on_receipt("PATCH", queue, receipt, "{\"visibility_timeout\": 0}");
}

static long long redrive_to(const char *queue, const char *to)
{
    char body[128];
    snprintf(body, sizeof body, "{\"to\": \"%s\"}", to);
    struct response r;
    post(queue, ":redrive", body, 200, &r);
    long long moved = json_integer_value(json_object_get(r.json, "moved"));
    response_cleanup(&r);
    return moved;
}

/* A redrive moves a FIFO group whole and in order, and not while one of its messages is held:
 * it used to move whatever was visible, so a group whose head a consumer held had its later
 * messages moved first and the head put behind them by the next redrive. */
START_TEST(redrive_keeps_groups_whole_and_in_order)
{
    harness_put_queue(&srv, "back.fifo", NULL, 201);
    harness_put_queue(&srv, "held.fifo", NULL, 201);
    send_body("held.fifo", "g", "a1");
    send_body("held.fifo", "g", "a2");
    send_body("held.fifo", "h", "b1");
    const char *bodies[] = {"a1", "a2", "b1"};
    char receipts[3][MQ_RECEIPT_LEN] = {{0}};
    ck_assert_int_eq(receive_receipts("held.fifo", "{\"max_messages\": 10}", bodies, receipts, 3),
                     3);
    ck_assert_int_eq(release("held.fifo", receipts[1]), 204);  /* a2 visible, a1 still held */
    ck_assert_int_eq(release("held.fifo", receipts[2]), 204);  /* h is free */
    ck_assert_int_eq(redrive_to("held.fifo", "back.fifo"), 1); /* b1 only */
    ck_assert_int_eq(release("held.fifo", receipts[0]), 204);
    ck_assert_int_eq(redrive_to("held.fifo", "back.fifo"), 2);
    char got[256];
    ck_assert_int_eq(receive_bodies("back.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     3);
    ck_assert_msg(strstr(got, "a1") && strstr(got, "a2") && strstr(got, "a1") < strstr(got, "a2"),
                  "group g out of order: %s", got);
}
END_TEST

/* A receive that meets an exhausted head whose dead-letter group another transaction holds
 * leaves it there and serves the other groups: it used to wait for that group while holding
 * its own (two source queues sharing a dead-letter queue could deadlock). */
START_TEST(a_busy_dead_letter_group_is_not_waited_for)
{
    harness_put_queue(&srv, "bdl.fifo", NULL, 201);
    harness_put_queue(&srv, "bsrc.fifo",
                      "{\"dead_letter\": {\"queue\": \"bdl.fifo\", \"max_receive_count\": 1}}",
                      201);
    send_body("bsrc.fifo", "g", "a1");
    send_body("bsrc.fifo", "h", "b1");
    char got[256];
    ck_assert_int_eq(receive_bodies("bsrc.fifo",
                                    "{\"max_messages\": 10, \"visibility_timeout\": 1}", got,
                                    sizeof got, NULL),
                     2);
    send_body("bsrc.fifo", "h", "b2");
    harness_sleep_ms(1100); /* a1 and b1 are exhausted */
    harness_sqlf("INSERT INTO message_groups (queue_id, group_id) SELECT id, 'g' FROM queues "
                 "WHERE name = 'bdl.fifo' RETURNING 1");
    PGconn *pg = in_transaction("SELECT 1 FROM message_groups WHERE group_id = 'g' AND queue_id "
                                "= (SELECT id FROM queues WHERE name = 'bdl.fifo') FOR UPDATE",
                                PGRES_TUPLES_OK, NULL, 0);
    /* b1 moves, b2 is served; a1 stays the head of g */
    ck_assert_int_eq(receive_bodies("bsrc.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     1);
    ck_assert_str_eq(got, "b2");
    ck_assert_int_eq(harness_stored("bdl.fifo"), 1);
    ck_assert_int_eq(harness_stored("bsrc.fifo"), 2);
    finish(pg, "COMMIT");
    /* once free, the next receive moves it */
    ck_assert_int_eq(receive_bodies("bsrc.fifo", "{\"max_messages\": 10}", got, sizeof got, NULL),
                     0);
    ck_assert_int_eq(harness_stored("bdl.fifo"), 2);

    /* nor does it wait for a transaction creating that group's row in the dead-letter queue */
    send_body("bsrc.fifo", "k", "c1");
    ck_assert_int_eq(
        receive_bodies("bsrc.fifo", "{\"visibility_timeout\": 1}", got, sizeof got, NULL), 1);
    harness_sleep_ms(1100);
    pg = in_transaction("INSERT INTO message_groups (queue_id, group_id) SELECT id, 'k' "
                        "FROM queues WHERE name = 'bdl.fifo'",
                        PGRES_COMMAND_OK, NULL, 0);
    ck_assert_int_eq(receive_bodies("bsrc.fifo", "{}", got, sizeof got, NULL), 0);
    ck_assert_int_eq(harness_stored("bsrc.fifo"), 2); /* b2 (in flight), and c1 stays for now */
    finish(pg, "ROLLBACK");
    ck_assert_int_eq(receive_bodies("bsrc.fifo", "{}", got, sizeof got, NULL), 0);
    ck_assert_int_eq(harness_stored("bdl.fifo"), 3);
}
END_TEST

/* The retention sweep reopens the group of a message in flight that it deletes: the group used
 * to stay closed until the deleted message's lease would have ended. */
START_TEST(retention_reopens_the_group_it_empties_of_its_message_in_flight)
{
    harness_put_queue(&srv, "ret.fifo", NULL, 201);
    send_body("ret.fifo", "g", "a1");
    send_body("ret.fifo", "g", "a2");
    char got[256];
    ck_assert_int_eq(receive_bodies("ret.fifo",
                                    "{\"max_messages\": 1, \"visibility_timeout\": 3600}", got,
                                    sizeof got, NULL),
                     1);
    ck_assert_str_eq(got, "a1");
    ck_assert_int_eq(receive_bodies("ret.fifo", "{}", got, sizeof got, NULL), 0);
    harness_sqlf("WITH u AS (UPDATE messages SET sent_at = now() - interval '30 days' "
                 "WHERE body = 'a1' AND queue_id = (SELECT id FROM queues WHERE name = "
                 "'ret.fifo') RETURNING 1) SELECT count(*) FROM u");
    /* the server's own sweeper may hold the queue's sweep row (and skip it) meanwhile: sweep
     * until it is done */
    for (int i = 0; i < 50 && harness_stored("ret.fifo") > 1; i++) {
        if (i)
            harness_sleep_ms(100);
        harness_sqlf("WITH u AS (UPDATE queue_sweeps SET next_at = now() WHERE queue_id = "
                     "(SELECT id FROM queues WHERE name = 'ret.fifo') RETURNING 1) "
                     "SELECT count(*) FROM u");
        harness_sqlf("SELECT mq_sweep(1000, 10000)");
    }
    ck_assert_int_eq(harness_stored("ret.fifo"), 1);
    ck_assert_int_eq(receive_bodies("ret.fifo", "{}", got, sizeof got, NULL), 1);
    ck_assert_str_eq(got, "a2");
}
END_TEST

/* The bodies a test consumer handled, in order. a1 fails on its first receive, or on every
 * receive when a1_always. */
static pthread_mutex_t handled_mu = PTHREAD_MUTEX_INITIALIZER;
static char handled[256];
static int handled_count;
static bool a1_always;

static enum consumer_result fail_a1(const struct consumer_env *env, struct db_conn *c,
                                    const struct mq_message *m, char *why, size_t why_len)
{
    (void)env;
    (void)c;
    if (strcmp(m->body, "a1") == 0 && (a1_always || m->receive_count == 1)) {
        snprintf(why, why_len, "a1 fails");
        return CONSUMER_RETRY;
    }
    pthread_mutex_lock(&handled_mu);
    size_t len = strlen(handled);
    snprintf(handled + len, sizeof handled - len, "%s%s", len ? "," : "", m->body);
    handled_count++;
    pthread_mutex_unlock(&handled_mu);
    return CONSUMER_DONE;
}

/* Runs a consumer of queue (batches of 10) until it has handled want messages or 10 s passed;
 * returns what it handled, "a…" bodies into a and the others into b, in order. */
static void consume(const char *queue, int want, char *a, char *b)
{
    handled[0] = '\0';
    handled_count = 0;
    struct consumer_def def = {
        .name = "fifo-test", .queue = queue, .batch = 10, .visibility = 30, .handle = fail_a1};
    struct consumer_env env = {
        .pool = srv.app.pool, .hub = srv.app.hub, .cfg = &srv.cfg, .acquire_timeout_ms = 2000};
    struct consumer *k = consumer_start(&def, &env);
    for (int i = 0; i < 100; i++) { /* a1 comes again after its retry delays (1 s, 2 s) */
        pthread_mutex_lock(&handled_mu);
        int n = handled_count;
        pthread_mutex_unlock(&handled_mu);
        if (n == want)
            break;
        harness_sleep_ms(100);
    }
    consumer_request_stop(k);
    mq_hub_poke(srv.app.hub, (int)harness_sqlf("SELECT id FROM queues WHERE name = '%s'", queue));
    consumer_stop(k);
    a[0] = b[0] = '\0';
    for (const char *t = handled; *t; t += t[2] ? 3 : 2) { /* "x1,x2,…" */
        char *group = *t == 'a' ? a : b;
        snprintf(group + strlen(group), 8, "%.2s", t);
    }
}

static void send_groups(const char *queue)
{
    const char *sends[][2] = {{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"b", "b2"}, {"a", "a3"}};
    for (size_t i = 0; i < sizeof sends / sizeof *sends; i++)
        send_body(queue, sends[i][0], sends[i][1]);
}

/* The worker framework on a FIFO queue: when a message fails, the later messages of its group
 * in the same batch wait for it (they used to be handled at once, running the group out of
 * order); the other groups flow on. */
START_TEST(a_worker_keeps_a_group_in_order_past_a_failure)
{
    harness_put_queue(&srv, "work.fifo", "{\"visibility_timeout\": 30}", 201);
    send_groups("work.fifo");
    a1_always = false;
    char a[64], b[64];
    consume("work.fifo", 5, a, b);
    ck_assert_msg(strcmp(a, "a1a2a3") == 0 && strcmp(b, "b1b2") == 0, "handled %s", handled);
    ck_assert_int_eq(harness_stored("work.fifo"), 0);
}
END_TEST

/* The messages handed back behind a failed one are not charged for its receives: a head that
 * always fails goes to the dead-letter queue alone, and its group mates are handled (they used
 * to reach max_receive_count with it and follow it there unhandled). */
START_TEST(messages_handed_back_keep_their_receive_count)
{
    harness_put_queue(&srv, "wdl.fifo", NULL, 201);
    harness_put_queue(&srv, "wsrc.fifo",
                      "{\"dead_letter\": {\"queue\": \"wdl.fifo\", \"max_receive_count\": 3}}",
                      201);
    send_groups("wsrc.fifo");
    a1_always = true;
    char a[64], b[64];
    consume("wsrc.fifo", 4, a, b);
    ck_assert_msg(strcmp(a, "a2a3") == 0 && strcmp(b, "b1b2") == 0, "handled %s", handled);
    ck_assert_int_eq(harness_stored("wsrc.fifo"), 0);
    ck_assert_int_eq(harness_stored("wdl.fifo"), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fifo");
    TCase *tc = tcase_create("fifo");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fifo_send_rules);
    tcase_add_test(tc, sequence_numbers_increase);
    tcase_add_test(tc, order_holds_across_pooled_connections);
    tcase_add_test(tc, order_within_groups);
    tcase_add_test(tc, in_flight_group_blocks_only_itself);
    tcase_add_test(tc, receive_takes_several_of_a_group_in_order);
    tcase_add_test(tc, a_lease_counts_from_when_the_messages_are_taken);
    tcase_add_test(tc, a_purge_leaves_groups_it_did_not_lock);
    tcase_add_test(tc, a_purge_reopens_a_group_it_emptied_of_its_lease);
    tcase_add_test(tc, a_queue_deletion_does_not_deadlock_with_a_batch_send);
    tcase_add_test(tc, a_group_stays_closed_until_its_whole_batch_is_done);
    tcase_add_test(tc, a_group_waiting_longer_is_served_first);
    tcase_add_test(tc, a_delayed_group_waits_out_of_the_serve_order);
    tcase_add_test(tc, a_receive_locks_only_the_groups_it_serves);
    tcase_add_test(tc, release_and_expiry_redeliver_the_head_first);
    tcase_add_test(tc, dedup_id_within_the_window);
    tcase_add_test(tc, the_window_is_judged_by_the_clock);
    tcase_add_test(tc, batches_with_dedup_ids_in_opposite_orders_do_not_deadlock);
    tcase_add_test(tc, a_batch_waiting_for_one_group_holds_no_other);
    tcase_add_test(tc, content_based_dedup_uses_the_body_hash);
    tcase_add_test(tc, dead_letter_keeps_group_order);
    tcase_add_test(tc, redrive_keeps_groups_whole_and_in_order);
    tcase_add_test(tc, a_busy_dead_letter_group_is_not_waited_for);
    tcase_add_test(tc, retention_reopens_the_group_it_empties_of_its_message_in_flight);
    tcase_add_test(tc, a_worker_keeps_a_group_in_order_past_a_failure);
    tcase_add_test(tc, messages_handed_back_keep_their_receive_count);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
