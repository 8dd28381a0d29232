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

int main(void)
{
    Suite *s = suite_create("plans");
    TCase *tc = tcase_create("plans");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_sweep_keeps_to_its_window_after_its_table_filled);
    tcase_add_test(tc, a_dead_letter_move_reads_only_the_head_after_its_queue_filled);
    tcase_add_test(tc, a_claims_dead_letter_move_reads_only_its_rows_after_its_queue_filled);
    tcase_add_test(tc, fifo_group_lookups_read_only_their_group_after_the_queue_filled);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
