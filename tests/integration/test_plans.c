/* Integration: statements whose plans a connection keeps (the pool's generic plans, the plans
 * PL/pgSQL caches for a function's statements) do work bounded by their batch when the plans
 * were made on an empty table without statistics (a new database) or analysed while empty,
 * and the table filled afterwards. Each test makes the plan on an emptied table, fills it, and
 * bounds the rows that any node of the statements' plans handled (auto_explain,
 * harness_plans_begin/end): no timing. */
#include "harness.h"

#include "rydes/db.h"
#include "rydes/mq.h"
#include "rydes/mq_sweeper.h"
#include "rydes/payments.h"
#include "rydes/prebookings.h"
#include "rydes/rfqs.h"
#include "rydes/saga.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

static struct harness_server srv;

static void no_sweeper(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "sweep-interval-ms", "0", &err)); /* the test sweeps */
}

/* Empties messages and forgets its statistics: a new database's table. Autovacuum is kept off
 * it (this test binary's database only): an analyze after the fill would make the plans anew,
 * and a test pass on the code it is meant to catch. */
static void empty_messages(void)
{
    free(harness_sql(harness_db_url(), "ALTER TABLE messages SET (autovacuum_enabled = off)"));
    free(harness_sql(harness_db_url(), "TRUNCATE messages"));
    free(harness_sql(harness_db_url(),
                     "DELETE FROM pg_statistic WHERE starelid = 'messages'::regclass"));
}

/* Only the push worker: no consumers. */
static void few_workers(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "workers", "push", &err));
}

/* Starts the server and makes queue name, whose messages go to queue dlq once received once;
 * empties messages. */
static void dead_lettering_queue(const char *name, const char *dlq)
{
    harness_start(&srv, few_workers);
    harness_put_queue(&srv, dlq, "{}", 201);
    char attrs[200];
    snprintf(attrs, sizeof attrs, "{\"dead_letter\":{\"queue\":\"%s\",\"max_receive_count\":1}}",
             dlq);
    harness_put_queue(&srv, name, attrs, 201);
    empty_messages();
}

/* A pool of one connection, as the gateway's, and that connection. */
static struct db_conn *pooled(struct db_pool **pool)
{
    *pool = db_pool_create(harness_db_url(), 1, 5, 60000);
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(*pool, 5000, &why);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void unpool(struct db_pool *pool, struct db_conn *c)
{
    db_pool_release(pool, c);
    db_pool_free(pool);
}

/* n messages in queue name, sent minutes_ago, received received times. */
static void fill(const char *name, int n, int minutes_ago, int received)
{
    free(harness_sqlf_text("INSERT INTO messages (queue_id, visible_at, message_id, body, "
                           "sent_at, receive_count) SELECT q.id, now(), gen_random_uuid(), 'x', "
                           "now() - interval '%d minutes', %d FROM queues q, "
                           "generate_series(1, %d) WHERE q.name = '%s'",
                           minutes_ago, received, n, name));
}

static long long messages_in(const char *name)
{
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s'",
                        name);
}

/* A connection with the pool's planner settings (src/db/pool.c): a generic plan from the first
 * execution on, index scans only. */
static PGconn *pool_like(void)
{
    char err[256];
    PGconn *pg =
        db_connect(harness_db_url(), 5, "-c plan_cache_mode=force_generic_plan " DB_PLANNER_OPTIONS,
                   err, sizeof err);
    ck_assert_msg(pg, "%s", err);
    return pg;
}

/* The sweeper's retention statement read the whole queue once per expired id it deleted with a
 * plan cached on the empty table (9 s a sweep for 100,000 expired messages; in a bench run its
 * 60 s statement timeout, seven times over). Its own connection plans afresh (051). */
START_TEST(a_sweep_keeps_to_its_window_after_its_table_filled)
{
    harness_start(&srv, no_sweeper);
    harness_put_queue(&srv, "filled", "{\"retention_seconds\":60}", 201);
    empty_messages();
    char err[256];
    PGconn *pg = db_connect(harness_db_url(), 5, mq_sweeper_options, err, sizeof err);
    ck_assert_msg(pg, "%s", err);
    for (int i = 0; i < 8; i++) { /* more runs than PL/pgSQL needs to settle on a plan */
        harness_sqlf("WITH d AS (DELETE FROM queue_sweeps RETURNING 1) SELECT count(*) FROM d");
        ck_assert_int_ge(mq_sweep_once(pg), 0);
    }
    fill("filled", 100000, 2, 0);
    harness_sqlf("WITH d AS (DELETE FROM queue_sweeps RETURNING 1) SELECT count(*) FROM d");
    /* the sweep reads the 10,000 oldest and the next 10,000 of the queue: 20,000 rows */
    ck_assert_int_le(harness_plan_max_rows(pg, "SELECT mq_sweep(1000, 10000)"), 20000);
    ck_assert_int_eq(messages_in("filled"), 99000);
    PQfinish(pg);
    harness_stop(&srv);
}
END_TEST

/* mq_move_exhausted joined the rows it locked back by id: with the pool's generic plan made on
 * an empty queue, each move of up to ten exhausted messages walked every message of the queue
 * (052 joins by ctid). */
START_TEST(a_dead_letter_move_reads_only_the_head_after_its_queue_filled)
{
    dead_lettering_queue("poison", "poison-dlq");
    PGconn *pg = pool_like();
    char move[160];
    snprintf(move, sizeof move, "SELECT mq_move_exhausted(%lld, %lld, 1, 10)",
             harness_sqlf("SELECT id FROM queues WHERE name = 'poison'"),
             harness_sqlf("SELECT id FROM queues WHERE name = 'poison-dlq'"));
    for (int i = 0; i < 3; i++) { /* planned while the queue holds one message */
        fill("poison", 1, 0, 1);
        PQclear(PQexec(pg, move));
    }
    ck_assert_int_eq(messages_in("poison-dlq"), 3);
    fill("poison", 50000, 0, 1);
    ck_assert_int_le(harness_plan_max_rows(pg, move), 100);
    ck_assert_int_eq(messages_in("poison-dlq"), 13);
    PQfinish(pg);
    harness_stop(&srv);
}
END_TEST

/* A receive whose claim took exhausted messages moves them with mq_dead_letter, which found them
 * by `queue_id = $1 AND id = ANY ($2)`: planned on the pool's connection while the queue held a
 * few messages, the index was scanned by queue_id alone and every message of the queue read. */
START_TEST(a_claims_dead_letter_move_reads_only_its_rows_after_its_queue_filled)
{
    dead_lettering_queue("claimed", "claimed-dlq");
    struct db_pool *pool;
    struct db_conn *c = pooled(&pool);
    struct mq_queue q;
    ck_assert_int_eq(mq_queue_get(c, "claimed", &q), MQ_OK);
    struct mq_message *msgs;
    int n;
    fill("claimed", 3, 0, 1); /* exhausted: the receive moves them */
    ck_assert_int_eq(mq_receive(c, &q, 10, 30, false, &msgs, &n), MQ_OK);
    mq_messages_free(msgs, n);
    ck_assert_int_eq(messages_in("claimed-dlq"), 3);
    fill("claimed", 50000, 0, 1);
    struct buf plans;
    buf_init(&plans);
    harness_plans_begin(c->pg, &plans);
    ck_assert_int_eq(mq_receive(c, &q, 10, 30, false, &msgs, &n), MQ_OK);
    mq_messages_free(msgs, n);
    ck_assert_int_le(harness_plans_end(c->pg, &plans), 100);
    buf_cleanup(&plans);
    ck_assert_int_ge(messages_in("claimed-dlq"), 13); /* a receive claims up to three times */
    unpool(pool, c);
    harness_stop(&srv);
}
END_TEST

/* Sends body to group of FIFO queue name through the API. */
static void send_to_group(const char *name, const char *group, const char *body)
{
    char path[128], json[128];
    snprintf(path, sizeof path, "/queues/%s/messages", name);
    snprintf(json, sizeof json, "{\"body\":\"%s\",\"group_id\":\"%s\"}", body, group);
    struct response r;
    harness_admin(&srv, "POST", path, json, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}

/* Receives the one message of FIFO queue q on c and deletes it. */
static void receive_and_delete(struct db_conn *c, const struct mq_queue *q)
{
    struct mq_message *msgs;
    int n;
    ck_assert_int_eq(mq_receive(c, q, 1, 30, false, &msgs, &n), MQ_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(mq_delete(c, q, msgs[0].receipt), MQ_OK);
    mq_messages_free(msgs, n);
}

/* A FIFO receive leases its group and a delete locks it by (queue_id, group_id). Planned while
 * message_groups was analysed empty (autovacuum does so whenever receives have emptied it), the
 * lookups used the ready index by queue_id and filtered by group: every group of the queue read
 * (053 makes that index partial, so a lookup by key has only the primary key). */
START_TEST(fifo_group_lookups_read_only_their_group_after_the_queue_filled)
{
    harness_start(&srv, few_workers);
    harness_put_queue(&srv, "many.fifo", "{\"content_based_dedup\":true}", 201);
    empty_messages();
    free(
        harness_sql(harness_db_url(), "ALTER TABLE message_groups SET (autovacuum_enabled = off)"));
    free(harness_sql(harness_db_url(), "TRUNCATE message_groups"));
    free(harness_sql(harness_db_url(), "ANALYZE message_groups")); /* analysed empty */
    struct db_pool *pool;
    struct db_conn *c = pooled(&pool);
    struct mq_queue q;
    ck_assert_int_eq(mq_queue_get(c, "many.fifo", &q), MQ_OK);
    send_to_group("many.fifo", "first", "one");
    receive_and_delete(c, &q); /* plans the lease and the delete's group lock */
    free(harness_sql(harness_db_url(),
                     "INSERT INTO message_groups (queue_id, group_id, in_flight_until) "
                     "SELECT q.id, 'held-' || i, now() + interval '1 hour' "
                     "FROM queues q, generate_series(1, 50000) i WHERE q.name = 'many.fifo'"));
    send_to_group("many.fifo", "second", "two");
    struct buf plans;
    buf_init(&plans);
    harness_plans_begin(c->pg, &plans);
    receive_and_delete(c, &q);
    ck_assert_int_le(harness_plans_end(c->pg, &plans), 100);
    buf_cleanup(&plans);
    unpool(pool, c);
    harness_stop(&srv);
}
END_TEST

/* Empties table and those referencing it and analyses it empty (a new database an operator
 * analysed, or one truncated and analysed), autovacuum kept off it. */
static void empty_analysed(const char *table)
{
    free(harness_sqlf_text("ALTER TABLE %s SET (autovacuum_enabled = off)", table));
    free(harness_sqlf_text("TRUNCATE %s CASCADE", table));
    free(harness_sqlf_text("ANALYZE %s", table));
}

/* The connection makes a generic plan of each statement at its first run and keeps it (the
 * pool's connections settle on one once it costs no more than the custom plans). */
static void generic_plans(struct db_conn *c)
{
    PQclear(PQexec(c->pg, "SET plan_cache_mode = force_generic_plan"));
}

/* Reads task, RFQ and fare id on c (NULL ids: ones that do not exist) and pages through the
 * newest of each. */
static void read_each(struct db_conn *c, const char *task, const char *rfq, const char *fare)
{
    const char *none = "00000000-0000-4000-8000-000000000000";
    struct task t = {0};
    ck_assert_int_eq(tasks_get(c, task ? task : none, &t), task ? MQ_OK : MQ_NOT_FOUND);
    task_clear(&t);
    struct rfq r = {0};
    ck_assert_int_eq(rfqs_get(c, rfq ? rfq : none, false, &r), rfq ? MQ_OK : MQ_NOT_FOUND);
    rfq_clear(&r);
    json_t *f = NULL;
    ck_assert_int_eq(saga_fare_json(c, fare ? fare : "none", NULL, &f, NULL),
                     fare ? MQ_OK : MQ_NOT_FOUND);
    json_decref(f);
    struct task *tasks;
    int n;
    char next[128];
    ck_assert_int_eq(tasks_list(c, NULL, NULL, 10, &tasks, &n, next, sizeof next), MQ_OK);
    for (int i = 0; i < n; i++)
        task_clear(&tasks[i]);
    free(tasks);
    struct rfq *rfqs;
    ck_assert_int_eq(rfqs_list(c, NULL, NULL, 10, &rfqs, &n, next, sizeof next), MQ_OK);
    for (int i = 0; i < n; i++)
        rfq_clear(&rfqs[i]);
    free(rfqs);
    json_t *fares;
    ck_assert_int_eq(saga_fares_list(c, NULL, NULL, 10, &fares, next, sizeof next), MQ_OK);
    json_decref(fares);
}

/* Lookups by id of tasks, RFQs and fares, planned on tables analysed empty, chose the listing
 * index that ends in the id, (submitted_at, id) or (created_at, id), and read all of it for
 * each lookup: one row found, every page of the index read (056 keeps lookups to the primary
 * key). The newest-first pages keep their index. */
START_TEST(lookups_by_id_read_only_their_row_after_their_tables_filled)
{
    harness_start(&srv, few_workers);
    empty_analysed("tasks");
    empty_analysed("rfqs");
    empty_analysed("fares");
    struct db_pool *pool;
    struct db_conn *c = pooled(&pool);
    generic_plans(c);
    read_each(c, NULL, NULL, NULL);
    free(harness_sql(harness_db_url(),
                     "INSERT INTO tasks (id, kind, submitted_at, updated_at) SELECT "
                     "gen_random_uuid(), 'prebooking', now() - i * interval '1 ms', now() "
                     "FROM generate_series(1, 50000) i"));
    free(harness_sql(harness_db_url(),
                     "INSERT INTO rfqs (id, from_location, to_location, customer, submitted_at, "
                     "eta, expected_responses) SELECT gen_random_uuid(), 'a', 'b', 'c', "
                     "now() - i * interval '1 ms', now() + interval '1 hour', 1 "
                     "FROM generate_series(1, 50000) i"));
    free(harness_sql(harness_db_url(),
                     "INSERT INTO fares (id, customer, amount, created_at) SELECT 'plan-' || i, "
                     "'c', 1, now() - i * interval '1 ms' FROM generate_series(1, 50000) i"));
    free(harness_sql(harness_db_url(),
                     "INSERT INTO saga_steps (fare_id, position, name) "
                     "SELECT 'plan-25000', p, 'step' FROM generate_series(0, 3) p"));
    char *task = harness_sqlf_text("SELECT id FROM tasks OFFSET 25000 LIMIT 1");
    char *rfq = harness_sqlf_text("SELECT id FROM rfqs OFFSET 25000 LIMIT 1");
    struct buf plans;
    buf_init(&plans);
    harness_plans_begin(c->pg, &plans);
    read_each(c, task, rfq, "plan-25000");
    ck_assert_int_le(harness_plans_end(c->pg, &plans), 100);
    ck_assert_int_le(harness_plans_max_buffers(&plans), 50);
    buf_cleanup(&plans);
    free(task);
    free(rfq);
    unpool(pool, c);
    harness_stop(&srv);
}
END_TEST

/* The saga's claim joined the claimed fare to saga_steps: planned on tables analysed empty,
 * the join read every step of every fare for each claim (it reaches the steps by the fare's key
 * now), and its fare was found through the listing index (056). */
START_TEST(a_saga_claim_reads_only_its_fare_after_its_tables_filled)
{
    harness_start(&srv, few_workers); /* no saga executor: the test runs the fare */
    empty_analysed("fares");
    empty_analysed("saga_steps");
    struct db_pool *pool;
    struct db_conn *c = pooled(&pool);
    generic_plans(c);
    struct saga_env env = {.payments = payments_simulator(),
                           .topics = srv.app.topic_cache,
                           .hub = srv.app.hub,
                           .lease_seconds = 60};
    bool ran = true;
    ck_assert_int_eq(saga_run_one(c, &env, &ran), MQ_OK); /* plans the claim: nothing due */
    ck_assert(!ran);
    bool created;
    /* a first fare plans the rest, the publish's function too (its first run reads the
     * catalogs), so that the buffers below are the statements' own */
    ck_assert_int_eq(saga_start(c, "plan-first", NULL, "pl-nora", 8.0, NULL, NULL, &created),
                     MQ_OK);
    ck_assert_int_eq(saga_run_one(c, &env, &ran), MQ_OK);
    ck_assert(ran);
    free(harness_sql(harness_db_url(),
                     "INSERT INTO fares (id, customer, amount, status, phase, outcome) "
                     "SELECT 'done-' || i, 'c', 1, 'succeeded', 'finished', 'succeeded' "
                     "FROM generate_series(1, 50000) i"));
    free(harness_sql(
        harness_db_url(),
        "INSERT INTO saga_steps (fare_id, position, name, status) SELECT f.id, p, "
        "'step', 'done' FROM fares f, generate_series(0, 3) p WHERE f.id LIKE 'done-%'"));
    ck_assert_int_eq(saga_start(c, "plan-fare", NULL, "pl-nora", 8.0, NULL, NULL, &created), MQ_OK);
    ck_assert(created);
    struct buf plans;
    buf_init(&plans);
    harness_plans_begin(c->pg, &plans);
    ck_assert_int_eq(saga_run_one(c, &env, &ran), MQ_OK);
    ck_assert(ran);
    ck_assert_int_le(harness_plans_end(c->pg, &plans), 100);
    ck_assert_int_le(harness_plans_max_buffers(&plans), 100);
    buf_cleanup(&plans);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM fares WHERE id = 'plan-fare' AND status "
                                  "= 'succeeded'"),
                     1);
    payments_free(env.payments);
    unpool(pool, c);
    harness_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plans");
    TCase *tc = tcase_create("plans");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_sweep_keeps_to_its_window_after_its_table_filled);
    tcase_add_test(tc, a_dead_letter_move_reads_only_the_head_after_its_queue_filled);
    tcase_add_test(tc, a_claims_dead_letter_move_reads_only_its_rows_after_its_queue_filled);
    tcase_add_test(tc, fifo_group_lookups_read_only_their_group_after_the_queue_filled);
    tcase_add_test(tc, lookups_by_id_read_only_their_row_after_their_tables_filled);
    tcase_add_test(tc, a_saga_claim_reads_only_its_fare_after_its_tables_filled);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
