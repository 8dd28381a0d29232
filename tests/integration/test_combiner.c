/* Integration: the combiner (src/mq/combiner.c). Sends that gather while the database is busy
 * go out together, at most MQ_MAX_ROWS to a statement, each stored exactly once with its own
 * message id; a message the database refuses fails alone while the others of its statement are
 * stored; receives of one queue and visibility share a claim and get the messages dealt out in
 * id order, each up to its max, while other queues and visibilities claim apart; deletes share a
 * statement and keep their own outcomes (deleted, superseded, not ours, also a lease renewed
 * under the statement); concurrent HTTP clients each get their own message id, and concurrent
 * HTTP cycles deliver every message exactly once;
 * stopping finishes every operation already handed over (failing, in time, those it cannot
 * run), also HTTP sends suspended at shutdown. Rides (the upper layer's kind) that gather are
 * stored and published together, each with its own id and its own deliveries, a refused one
 * failing alone; a lone HTTP ride is stored on its own thread; concurrent HTTP rides each get
 * their own ride, published once. */
#include "harness.h"

#include "rydes/db.h"
#include "rydes/mq.h"
#include "rydes/mq_combiner.h"
#include "rydes/mq_hub.h"
#include "rydes/mq_poll.h"
#include "rydes/rides.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct harness_server srv;

/* One connection, so a test can hold it and let sends gather behind it. */
static void one_connection(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "db-pool-size", "1", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "3000", &err));
}

static struct mq_queue queue; /* "combined", emptied before each test */

static void setup(void)
{
    harness_start(&srv, one_connection);
    struct response r;
    harness_admin(&srv, "PUT", "/queues/combined", NULL, &r);
    ck_assert(r.status == 201 || r.status == 200);
    response_cleanup(&r);
    free(harness_sql(harness_db_url(), "TRUNCATE messages"));
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(mq_queue_get(c, "combined", &queue), MQ_OK);
    db_pool_release(srv.app.pool, c);
}

static bool stopped_by_test; /* the test stopped the server itself */

static void teardown(void)
{
    if (!stopped_by_test)
        harness_stop(&srv);
    stopped_by_test = false;
}

#define STATUS_UNSET ((enum mq_status)99) /* no outcome yet */

struct sends {
    struct mq_send_entry entries[40];
    struct mq_combined_send s[40];
    char bodies[40][32];
    atomic_int done;
};

/* Every kind's done: counts into the atomic_int its ctx points to. */
static void count_done(struct mq_combined *o)
{
    atomic_fetch_add((atomic_int *)o->ctx, 1);
}

/* Hands n sends with bodies "<prefix>-<i>" to the combiner; true when all were taken. */
static bool submit(struct sends *ss, int n, const char *prefix)
{
    bool all = true;
    for (int i = 0; i < n; i++) {
        snprintf(ss->bodies[i], sizeof ss->bodies[i], "%s-%d", prefix, i);
        ss->entries[i] = (struct mq_send_entry){
            .body = ss->bodies[i], .body_len = strlen(ss->bodies[i]), .delay_seconds = -1};
        ss->s[i] = (struct mq_combined_send){
            .o = {.done = count_done, .ctx = &ss->done, .status = STATUS_UNSET},
            .q = queue,
            .e = &ss->entries[i]};
        all &= mq_combiner_send(srv.app.combiner, &ss->s[i]);
    }
    return all;
}

static void wait_count(atomic_int *done, int n)
{
    for (int i = 0; i < 1000 && atomic_load(done) < n; i++)
        harness_sleep_ms(10);
    ck_assert_int_eq(atomic_load(done), n);
}

static void wait_done(struct sends *ss, int n)
{
    wait_count(&ss->done, n);
}

static struct db_conn *hold_pool(void)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* The stored row of body has the message id the combiner reported for it. */
static void assert_stored(const struct sends *ss, int i)
{
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE body = '%s' "
                                  "AND message_id = '%s'",
                                  ss->bodies[i], ss->s[i].result.message_id),
                     1);
}

START_TEST(sends_that_gather_share_statements)
{
    unsigned long long st0, msg0, st1, msg1;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_SEND, &st0, &msg0);
    struct db_conn *held = hold_pool();
    static struct sends ss;
    memset(&ss, 0, sizeof ss);
    ck_assert(submit(&ss, 40, "gather"));
    harness_sleep_ms(100); /* the combiner waits for the connection with what it took */
    ck_assert_int_eq(atomic_load(&ss.done), 0);
    db_pool_release(srv.app.pool, held);
    wait_done(&ss, 40);
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_SEND, &st1, &msg1);
    ck_assert_int_eq(msg1 - msg0, 40);
    /* at most one statement took a lone first send before the rest gathered: 1 + 16 + 16 + 7 */
    ck_assert_int_le(st1 - st0, 4);
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(ss.s[i].o.status, MQ_OK);
        assert_stored(&ss, i);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(DISTINCT message_id) FROM messages"), 40);
}
END_TEST

START_TEST(a_refused_message_fails_alone)
{
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN IF NEW.body LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                     "RETURN NEW; END $$; "
                     "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"));
    struct db_conn *held = hold_pool();
    static struct sends ok1, bad, ok2;
    memset(&ok1, 0, sizeof ok1);
    memset(&bad, 0, sizeof bad);
    memset(&ok2, 0, sizeof ok2);
    ck_assert(submit(&ok1, 3, "fine"));
    ck_assert(submit(&bad, 1, "poison"));
    ck_assert(submit(&ok2, 3, "good"));
    db_pool_release(srv.app.pool, held);
    wait_done(&ok1, 3);
    wait_done(&bad, 1);
    wait_done(&ok2, 3);
    free(harness_sql(harness_db_url(), "DROP TRIGGER refuse_poison ON messages"));
    ck_assert_int_eq(bad.s[0].o.status, MQ_ERROR);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ok1.s[i].o.status, MQ_OK);
        ck_assert_int_eq(ok2.s[i].o.status, MQ_OK);
        assert_stored(&ok1, i);
        assert_stored(&ok2, i);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 6);
}
END_TEST

/* ---- rides (the upper layer's kind: rydes/rides.h) ---- */

#define RIDES 12

struct rides_batch {
    struct rides_combined rc[RIDES];
    struct ride_input in[RIDES];
    char customers[RIDES][40];
    atomic_int done;
};

/* The ride-completion topic with its subscriptions (a reference: topic_set_release). */
static struct topic_set *rides_topic(void)
{
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(srv.app.pool, 1000, &why);
    ck_assert_ptr_nonnull(c);
    enum mq_status st;
    struct topic_set *set =
        topic_cache_current(srv.app.topic_cache, srv.app.hub, c, RIDES_TOPIC, &st);
    db_pool_release(srv.app.pool, c);
    ck_assert_msg(set != NULL, "no topic %s: %d", RIDES_TOPIC, st);
    return set;
}

/* Hands n rides of customers "<prefix>-<i>" to combiner cb; true when all were taken. Takes
 * the reference set. */
static bool submit_rides_to(struct mq_combiner *cb, struct rides_batch *rb, int n,
                            const char *prefix, struct topic_set *set)
{
    bool all = true;
    for (int i = 0; i < n; i++) {
        snprintf(rb->customers[i], sizeof rb->customers[i], "%s-%d", prefix, i);
        rb->in[i] = (struct ride_input){.from = "Berlin",
                                        .to = "Potsdam",
                                        .customer = rb->customers[i],
                                        .duration = 900,
                                        .distance = 5, /* not extraordinary: four deliveries */
                                        .fare = 12.5};
        ck_assert(rides_combined_init(&rb->rc[i], set, &rb->in[i], "combined-test",
                                      mq_hub_listened_cb, srv.app.hub));
        rb->rc[i].o =
            (struct mq_combined){.done = count_done, .ctx = &rb->done, .status = STATUS_UNSET};
        all &= mq_combiner_upper(cb, &rb->rc[i].o);
    }
    topic_set_release(set);
    return all;
}

/* A rides combiner of the test's own whose statement waiting for the held pool never counts as
 * stuck: the app's turns rides away once its statement has waited MQ_COMBINER_STALL_MS, which
 * a loaded machine under the sanitizers took to prepare twelve rides (stop and free it). */
static struct mq_combiner *patient_rides_combiner(void)
{
    return mq_combiner_start(srv.app.pool, 3000, 60000, &rides_combiner_kind);
}

static void clear_rides(struct rides_batch *rb, int n)
{
    for (int i = 0; i < n; i++)
        rides_combined_clear(&rb->rc[i]);
}

/* A delivered message's body, wherever it is stored (in the message, or once in payloads). */
#define BODY_SQL "coalesce((SELECT p.body FROM payloads p WHERE p.id = m.payload_id), m.body)"

/* Waits for the fan-out to empty the outbox; then the number of messages in queue name whose
 * body is an event of a customer LIKE pattern. */
static long long deliveries(const char *name, const char *pattern)
{
    for (int i = 0; i < 500 && harness_sqlf("SELECT count(*) FROM publish_outbox") > 0; i++)
        harness_sleep_ms(10);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM publish_outbox"), 0);
    return harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                        "WHERE q.name = '%s' AND (" BODY_SQL "::jsonb)->>'customer' LIKE '%s'",
                        name, pattern);
}

START_TEST(rides_that_gather_are_stored_and_published_together)
{
    struct mq_combiner *cb = patient_rides_combiner();
    struct topic_set *set = rides_topic();
    struct db_conn *held = hold_pool();
    static struct rides_batch rb;
    memset(&rb, 0, sizeof rb);
    ck_assert(submit_rides_to(cb, &rb, RIDES, "gather", set));
    harness_sleep_ms(100); /* the combiner waits for the connection with what it took */
    ck_assert_int_eq(atomic_load(&rb.done), 0);
    db_pool_release(srv.app.pool, held);
    wait_count(&rb.done, RIDES);
    unsigned long long statements, stored;
    mq_combiner_counts(cb, MQ_COMBINED_UPPER, &statements, &stored);
    mq_combiner_stop(cb, 1000);
    mq_combiner_free(cb);
    ck_assert_int_eq(stored, RIDES);
    ck_assert_int_le(statements, 2); /* the first alone, then the rest together */
    for (int i = 0; i < RIDES; i++) {
        ck_assert_int_eq(rb.rc[i].o.status, MQ_OK);
        ck_assert_int_eq(rb.rc[i].published.deliveries, 4);
        ck_assert_ptr_nonnull(rb.rc[i].out.json);
        ck_assert_msg(strstr(rb.rc[i].out.json, rb.customers[i]), "%s", rb.rc[i].out.json);
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE id = '%s' AND "
                                      "customer = '%s' AND correlation_id = 'combined-test'",
                                      rb.rc[i].out.id, rb.customers[i]),
                         1);
    }
    /* each ride's own event, under the message id its publish reported */
    deliveries("customer-notification", "gather-%"); /* (waits for the fan-out) */
    for (int i = 0; i < RIDES; i++)
        ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                      "m.queue_id WHERE q.name = 'customer-notification' "
                                      "AND m.message_id = '%s' AND (" BODY_SQL "::jsonb)->>'id' "
                                      "= '%s' AND (" BODY_SQL "::jsonb)->>'customer' = '%s'",
                                      rb.rc[i].published.message_id, rb.rc[i].out.id,
                                      rb.customers[i]),
                         1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE customer LIKE 'gather-%%'"),
                     RIDES);
    ck_assert_int_eq(deliveries("customer-notification", "gather-%"), RIDES);
    ck_assert_int_eq(deliveries("customer-accounting", "gather-%"), RIDES);
    ck_assert_int_eq(deliveries("extraordinary-rides", "gather-%"), 0);
    clear_rides(&rb, RIDES);
}
END_TEST

/* A ride its caller stores alone holds the lane: rides that come meanwhile wait for it, then go
 * out together; a stop does not wait for the lone one. */
START_TEST(rides_that_come_during_a_lone_one_wait_then_go_together)
{
    struct mq_combiner *cb = patient_rides_combiner();
    ck_assert(mq_combiner_idle(cb, MQ_COMBINED_UPPER));
    ck_assert(mq_combiner_alone(cb, MQ_COMBINED_UPPER));
    ck_assert(!mq_combiner_idle(cb, MQ_COMBINED_UPPER));
    ck_assert(!mq_combiner_alone(cb, MQ_COMBINED_UPPER)); /* one at a time */
    static struct rides_batch rb;
    memset(&rb, 0, sizeof rb);
    ck_assert(submit_rides_to(cb, &rb, 3, "behind", rides_topic()));
    harness_sleep_ms(100);
    ck_assert_int_eq(atomic_load(&rb.done), 0);
    mq_combiner_alone_end(cb, MQ_COMBINED_UPPER);
    wait_count(&rb.done, 3);
    unsigned long long statements, stored;
    mq_combiner_counts(cb, MQ_COMBINED_UPPER, &statements, &stored);
    ck_assert_int_eq(statements, 1);
    ck_assert_int_eq(stored, 3);
    ck_assert(mq_combiner_alone(cb, MQ_COMBINED_UPPER));
    double t0 = harness_now_s();
    mq_combiner_stop(cb, 1000);
    ck_assert_double_lt(harness_now_s() - t0, 0.5);
    mq_combiner_alone_end(cb, MQ_COMBINED_UPPER);
    ck_assert(!mq_combiner_alone(cb, MQ_COMBINED_UPPER)); /* stopped */
    mq_combiner_free(cb);
    clear_rides(&rb, 3);
}
END_TEST

/* A prepared ride the combiner refused is stored as it is on the caller's connection (not
 * planned, filtered and counted a second time). */
START_TEST(a_refused_hand_over_stores_the_prepared_ride)
{
    struct topic_set *set = rides_topic();
    static struct rides_combined rc;
    struct ride_input in = {
        .from = "A", .to = "B", .customer = "direct-1", .duration = 60, .distance = 2, .fare = 7};
    ck_assert(rides_combined_init(&rc, set, &in, "direct-test", mq_hub_listened_cb, srv.app.hub));
    topic_set_release(set);
    rc.o.status = MQ_ERROR;
    struct db_conn *c = hold_pool();
    rides_combined_store(c, &rc);
    db_pool_release(srv.app.pool, c);
    ck_assert_int_eq(rc.o.status, MQ_OK);
    ck_assert_int_eq(rc.published.deliveries, 4);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE id = '%s' AND customer = "
                                  "'direct-1' AND correlation_id = 'direct-test'",
                                  rc.out.id),
                     1);
    ck_assert_int_eq(deliveries("customer-loyalty", "direct-1"), 1);
    rides_combined_clear(&rc);
}
END_TEST

START_TEST(a_refused_ride_fails_alone)
{
    free(harness_sql(harness_db_url(),
                     "CREATE FUNCTION refuse_ride() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN IF NEW.customer = 'refused-3' THEN RAISE EXCEPTION 'no'; END IF; "
                     "RETURN NEW; END $$; "
                     "CREATE TRIGGER refuse_ride BEFORE INSERT ON rides "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_ride()"));
    struct topic_set *set = rides_topic();
    struct db_conn *held = hold_pool();
    static struct rides_batch rb;
    memset(&rb, 0, sizeof rb);
    struct mq_combiner *cb = patient_rides_combiner();
    ck_assert(submit_rides_to(cb, &rb, 6, "refused", set));
    db_pool_release(srv.app.pool, held);
    wait_count(&rb.done, 6);
    mq_combiner_stop(cb, 1000);
    mq_combiner_free(cb);
    free(harness_sql(harness_db_url(), "DROP TRIGGER refuse_ride ON rides"));
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(rb.rc[i].o.status, i == 3 ? MQ_ERROR : MQ_OK);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE customer LIKE 'refused-%%'"),
                     5);
    /* nothing of the refused ride went out; every other one once */
    ck_assert_int_eq(deliveries("customer-loyalty", "refused-3"), 0);
    ck_assert_int_eq(deliveries("customer-loyalty", "refused-%"), 5);
    clear_rides(&rb, 6);
}
END_TEST

START_TEST(stopping_finishes_what_was_handed_over)
{
    struct db_conn *held = hold_pool();
    static struct sends ss, late;
    memset(&ss, 0, sizeof ss);
    memset(&late, 0, sizeof late);
    ck_assert(submit(&ss, 20, "before-stop"));
    db_pool_release(srv.app.pool, held);
    mq_combiner_stop(srv.app.combiner, 10000);
    ck_assert_int_eq(atomic_load(&ss.done), 20); /* stop returned only after all of them */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ss.s[i].o.status, MQ_OK);
        assert_stored(&ss, i);
    }
    ck_assert(!submit(&late, 1, "after-stop"));
    /* a send over HTTP now takes its own statement */
    struct response r;
    harness_admin(&srv, "POST", "/queues/combined/messages", "{\"body\": \"direct\"}", &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE body = 'direct' AND "
                                  "message_id = '%s'",
                                  json_str(r.json, "message_id")),
                     1);
    response_cleanup(&r);
}
END_TEST

/* ---- receives and deletes ---- */

/* n visible messages "<prefix>-<i>" in queue_id, in order. */
static void fill(int queue_id, int n, const char *prefix)
{
    harness_sqlf("WITH s AS (INSERT INTO messages (queue_id, visible_at, message_id, body) "
                 "SELECT %d, now(), gen_random_uuid(), '%s-' || g FROM generate_series(1, %d) g "
                 "ORDER BY g RETURNING 1) SELECT count(*) FROM s",
                 queue_id, prefix, n);
}

static struct mq_combined_receive a_receive(const struct mq_queue *q, int max, int visibility,
                                            atomic_int *done)
{
    return (struct mq_combined_receive){
        .o = {.done = count_done, .ctx = done, .status = STATUS_UNSET},
        .q = *q,
        .max = max,
        .visibility = visibility};
}

static unsigned long long statements_of(enum mq_combined_kind kind)
{
    unsigned long long statements, operations;
    mq_combiner_counts(srv.app.combiner, kind, &statements, &operations);
    return statements;
}

START_TEST(receives_that_gather_share_a_claim)
{
    fill(queue.id, 12, "r");
    unsigned long long st0 = statements_of(MQ_COMBINED_RECEIVE);
    struct db_conn *held = hold_pool();
    static struct mq_combined_receive r[6];
    static atomic_int done;
    atomic_store(&done, 0);
    for (int i = 0; i < 6; i++) {
        r[i] = a_receive(&queue, 2, 30, &done);
        ck_assert(mq_combiner_receive(srv.app.combiner, &r[i]));
    }
    db_pool_release(srv.app.pool, held);
    wait_count(&done, 6);
    /* the first receive may have gone alone before the others gathered: 2 + 10 */
    ck_assert_int_le(statements_of(MQ_COMBINED_RECEIVE) - st0, 2);
    long long last = 0;
    static char secrets[12][17];  /* the receipts' nonce parts */
    for (int i = 0; i < 6; i++) { /* dealt out in id order, each up to its max */
        ck_assert_int_eq(r[i].o.status, MQ_OK);
        ck_assert_int_eq(r[i].count, 2);
        for (int k = 0; k < 2; k++) {
            ck_assert_int_gt(r[i].msgs[k].id, last);
            last = r[i].msgs[k].id;
            ck_assert_int_eq(r[i].msgs[k].receive_count, 1);
            memcpy(secrets[2 * i + k], r[i].msgs[k].receipt + 24, 16);
        }
        mq_messages_free(r[i].msgs, r[i].count);
    }
    /* one claim, but no receipt tells another's: each message has its own */
    for (int a = 0; a < 12; a++)
        for (int b = a + 1; b < 12; b++)
            ck_assert_str_ne(secrets[a], secrets[b]);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE queue_id = %d AND "
                                  "visible_at > now() + interval '20 s'",
                                  queue.id),
                     12);
}
END_TEST

/* Three receives of 1 of q: r[0] alone (the lane takes it before the others come), then r[1]
 * and r[2] in one claim of 2 (or all three together). Returns how many were told to look again,
 * after checking that only receives left empty were, and that got messages were dealt. */
static int three_receives_of_one(const struct mq_queue *q, int got)
{
    struct db_conn *held = hold_pool();
    static struct mq_combined_receive r[3];
    static atomic_int done;
    atomic_store(&done, 0);
    for (int i = 0; i < 3; i++) {
        r[i] = a_receive(q, 1, 30, &done);
        ck_assert(mq_combiner_receive(srv.app.combiner, &r[i]));
    }
    db_pool_release(srv.app.pool, held);
    wait_count(&done, 3);
    ck_assert_int_eq(r[0].count + r[1].count + r[2].count, got);
    int told = 0;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].o.status, MQ_OK);
        ck_assert(!r[i].more || r[i].count == 0);
        told += r[i].more;
        mq_messages_free(r[i].msgs, r[i].count);
    }
    return told;
}

/* A receive dealt nothing is told to look again only when its claim moved exhausted messages to
 * the dead-letter queue: those may have taken the places of messages it would have got. A claim
 * that came back short because the queue had no more tells nobody (with many long polls of a
 * quiet queue, each would claim again at once). */
START_TEST(a_receive_left_empty_by_a_short_claim_is_told_to_look_again)
{
    fill(queue.id, 2, "m");
    ck_assert_int_eq(three_receives_of_one(&queue, 2), 0);

    struct response r;
    harness_admin(&srv, "PUT", "/queues/combined-dl-dead", NULL, &r);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/combined-dl",
                  "{\"dead_letter\": {\"queue\": \"combined-dl-dead\", \"max_receive_count\": 1}}",
                  &r);
    ck_assert(r.status == 201 || r.status == 200);
    response_cleanup(&r);
    struct mq_queue dl;
    struct db_conn *c = hold_pool();
    ck_assert_int_eq(mq_queue_get(c, "combined-dl", &dl), MQ_OK);
    db_pool_release(srv.app.pool, c);
    fill(dl.id, 4, "exhausted"); /* received once each already: the next receive moves them */
    harness_sqlf("WITH u AS (UPDATE messages SET receive_count = 1 WHERE queue_id = %d "
                 "RETURNING 1) SELECT count(*) FROM u",
                 dl.id);
    fill(dl.id, 1, "deliverable");
    /* r[0]'s claim moves three and gives up empty; the claim of r[1] and r[2] moves the fourth
     * and deals the deliverable one (all three together: the same, three moved first) */
    ck_assert_int_eq(three_receives_of_one(&dl, 1), 2);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = 'combined-dl-dead'"),
                     4);
}
END_TEST

static void count_resume(void *ctx)
{
    atomic_fetch_add((atomic_int *)ctx, 1);
}

static bool never_gone(void *ctx)
{
    (void)ctx;
    return false;
}

/* Registers p as a long poll of the combined queue whose claim found nothing, for up to
 * wait_s; count_resume counts into resumed when it ends. */
static void start_wait(struct mq_poll *p, atomic_int *resumed, int wait_s, bool short_claim)
{
    mq_poll_init(p, srv.app.hub, srv.app.combiner, &queue, 1, 30, false, wait_s, never_gone,
                 count_resume, resumed);
    p->waiter_seq = mq_hub_seq(srv.app.hub, queue.id); /* as the hand-over reads it */
    p->handed = true;
    p->claim.o.status = MQ_OK;
    p->claim.more = short_claim; /* the claim found fewer messages than it was asked for */
    enum mq_status st;
    struct mq_message *msgs;
    int n;
    ck_assert(mq_poll_taken(p, &st, &msgs, &n));
    ck_assert_int_eq(n, 0);
    mq_poll_wait(p);
}

static double wait_resumed(atomic_int *resumed, double timeout_s)
{
    double t0 = harness_now_s();
    while (atomic_load(resumed) == 0 && harness_now_s() - t0 < timeout_s)
        harness_sleep_ms(10);
    return harness_now_s() - t0;
}

/* A long poll whose combined claim came back short and left it empty looks again at once: its
 * next wait ends immediately, not at the next notification or visibility check, while another
 * long poll of the queue waits on. (The polls are static: the hub may still call them after a
 * failed check.) */
START_TEST(a_wait_after_a_short_empty_claim_ends_at_once)
{
    static struct mq_poll first, other, p;
    static atomic_int first_resumed, other_resumed, resumed;
    atomic_store(&first_resumed, 0);
    atomic_store(&other_resumed, 0);
    atomic_store(&resumed, 0);
    /* the hub starts listening to the queue: its announcement is in (a hub that has not read
     * the table yet counts every queue as listened to, so that is no sign; a slow start, as
     * under the sanitizers, could outlast a short first wait), and senders have read it */
    start_wait(&first, &first_resumed, 8, false);
    char announced[128];
    snprintf(announced, sizeof announced,
             "SELECT least(count(*), 1) FROM queue_listeners WHERE queue_id = %d", queue.id);
    ck_assert_int_eq(harness_wait_sql(announced, 1, 8), 1);
    harness_sleep_ms(400);
    start_wait(&other, &other_resumed, 2, false);
    start_wait(&p, &resumed, 2, true);
    double took = wait_resumed(&resumed, 4);
    wait_resumed(&other_resumed, 4);
    ck_assert(mq_hub_listened(srv.app.hub, queue.id));
    ck_assert_int_eq(atomic_load(&resumed), 1);
    ck_assert_msg(took < 0.5, "the wait took %.2f s", took);
}
END_TEST

/* A second standard queue, "combined-other", into *q (before the test holds the pool). */
static void other_queue(struct mq_queue *q)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/combined-other", NULL, &r);
    ck_assert(r.status == 201 || r.status == 200);
    response_cleanup(&r);
    struct db_conn *c = hold_pool();
    ck_assert_int_eq(mq_queue_get(c, "combined-other", q), MQ_OK);
    db_pool_release(srv.app.pool, c);
}

/* A combiner of the test's own whose statements never count as stuck. */
static struct mq_combiner *patient_combiner(void)
{
    return mq_combiner_start(srv.app.pool, 3000, 60000, NULL);
}

START_TEST(receives_wait_only_for_claims_they_can_share)
{
    struct mq_queue other;
    other_queue(&other);
    struct db_conn *c = hold_pool();
    fill(queue.id, 4, "a");
    struct mq_combiner *cb = patient_combiner();
    static struct mq_combined_receive r[4];
    static atomic_int done;
    atomic_store(&done, 0);
    r[0] = a_receive(&queue, 1, 30, &done); /* taken, and stuck while the pool is held */
    ck_assert(mq_combiner_receive(cb, &r[0]));
    harness_sleep_ms(200);
    r[1] = a_receive(&queue, 2, 30, &done); /* joins the next claim of its queue */
    ck_assert(mq_combiner_receive(cb, &r[1]));
    r[2] = a_receive(&other, 2, 30, &done); /* another queue: not behind that claim */
    ck_assert(!mq_combiner_receive(cb, &r[2]));
    r[3] = a_receive(&queue, 1, 600, &done); /* another visibility: neither */
    ck_assert(!mq_combiner_receive(cb, &r[3]));
    db_pool_release(srv.app.pool, c);
    wait_count(&done, 2);
    unsigned long long statements, messages;
    mq_combiner_counts(cb, MQ_COMBINED_RECEIVE, &statements, &messages);
    ck_assert_int_eq(statements, 2);
    ck_assert_int_eq(messages, 3);
    ck_assert_int_eq(r[0].count, 1);
    ck_assert_int_eq(r[1].count, 2);
    ck_assert_int_gt(r[1].msgs[0].id, r[0].msgs[0].id);
    for (int i = 0; i < 2; i++)
        mq_messages_free(r[i].msgs, r[i].count);
    mq_combiner_free(cb);
}
END_TEST

/* Receives of 10 go one per claim: no more than MQ_COMBINER_QUEUED claims' worth of them waits
 * behind the one in flight; the next runs on its own, and a smaller one that still fits in the
 * last waiting claim joins it. */
START_TEST(receives_queue_up_for_a_bounded_number_of_claims)
{
    struct db_conn *c = hold_pool();
    fill(queue.id, 10 * (MQ_COMBINER_QUEUED + 1) + MQ_MAX_ROWS, "b");
    struct mq_combiner *cb = patient_combiner();
    static struct mq_combined_receive r[MQ_COMBINER_QUEUED + 3];
    static atomic_int done;
    atomic_store(&done, 0);
    r[0] = a_receive(&queue, 10, 30, &done); /* taken, and stuck while the pool is held */
    ck_assert(mq_combiner_receive(cb, &r[0]));
    harness_sleep_ms(200);
    for (int i = 1; i <= MQ_COMBINER_QUEUED; i++) {
        r[i] = a_receive(&queue, 10, 30, &done);
        ck_assert(mq_combiner_receive(cb, &r[i]));
    }
    int refused = MQ_COMBINER_QUEUED + 1, joined = MQ_COMBINER_QUEUED + 2;
    r[refused] = a_receive(&queue, 10, 30, &done);
    ck_assert(!mq_combiner_receive(cb, &r[refused]));
    r[joined] = a_receive(&queue, MQ_MAX_ROWS - 10, 30, &done);
    ck_assert(mq_combiner_receive(cb, &r[joined]));
    db_pool_release(srv.app.pool, c);
    wait_count(&done, MQ_COMBINER_QUEUED + 2);
    unsigned long long statements, messages;
    mq_combiner_counts(cb, MQ_COMBINED_RECEIVE, &statements, &messages);
    ck_assert_int_eq(statements, MQ_COMBINER_QUEUED + 1);
    ck_assert_int_eq(messages, 10 * (MQ_COMBINER_QUEUED + 1) + MQ_MAX_ROWS - 10);
    for (int i = 0; i <= joined; i++)
        if (i != refused) {
            ck_assert_int_eq(r[i].o.status, MQ_OK);
            mq_messages_free(r[i].msgs, r[i].count);
        }
    mq_combiner_free(cb);
}
END_TEST

START_TEST(nothing_waits_behind_a_stuck_statement)
{
    struct db_conn *held = hold_pool();
    static struct sends first, later;
    memset(&first, 0, sizeof first);
    memset(&later, 0, sizeof later);
    ck_assert(submit(&first, 1, "first"));
    /* the combiner's statement waits for a connection for longer than MQ_COMBINER_STALL_MS */
    harness_sleep_ms(4 * MQ_COMBINER_STALL_MS);
    ck_assert(!submit(&later, 1, "later"));
    db_pool_release(srv.app.pool, held);
    wait_done(&first, 1);
    ck_assert_int_eq(first.s[0].o.status, MQ_OK);
}
END_TEST

/* A statement that gets no connection within the acquire timeout (3 s here) fails its
 * operations as MQ_BUSY, which the API answers "all database connections are busy", not as a
 * lost database. */
START_TEST(an_operation_without_a_connection_is_told_the_pool_is_busy)
{
    struct db_conn *held = hold_pool();
    static struct sends ss;
    memset(&ss, 0, sizeof ss);
    ck_assert(submit(&ss, 1, "busy"));
    for (int i = 0; i < 1000 && atomic_load(&ss.done) < 1; i++)
        harness_sleep_ms(10);
    db_pool_release(srv.app.pool, held);
    ck_assert_int_eq(atomic_load(&ss.done), 1);
    ck_assert_int_eq(ss.s[0].o.status, MQ_BUSY);
}
END_TEST

START_TEST(deletes_that_gather_share_a_statement_and_keep_their_outcomes)
{
    fill(queue.id, 6, "d");
    struct mq_queue other;
    other_queue(&other);
    struct db_conn *c = hold_pool();
    fill(other.id, 1, "o");
    struct mq_message *msgs, *again, *theirs;
    int n, m, k;
    ck_assert_int_eq(mq_receive(c, &queue, 6, 0, false, &msgs, &n), MQ_OK);
    ck_assert_int_eq(n, 6);
    /* leased for 0 s, they are received again at once: their first receipts are superseded */
    ck_assert_int_eq(mq_receive(c, &queue, 6, 30, false, &again, &m), MQ_OK);
    ck_assert_int_eq(m, 6);
    ck_assert_int_eq(mq_delete(c, &queue, again[5].receipt), MQ_OK); /* gone before */
    ck_assert_int_eq(mq_receive(c, &other, 1, 30, false, &theirs, &k), MQ_OK);
    ck_assert_int_eq(k, 1);
    unsigned long long st0 = statements_of(MQ_COMBINED_DELETE);
    static struct mq_combined_delete d[10];
    static atomic_int done;
    atomic_store(&done, 0);
    char elsewhere[MQ_RECEIPT_LEN]; /* well formed, but of another queue */
    mq_receipt_encode(queue.id + 1000, again[4].id, 1, elsewhere);
    const char *receipts[10] = {again[0].receipt, again[1].receipt, again[2].receipt,
                                again[3].receipt, msgs[4].receipt,  /* superseded */
                                "not-a-receipt",  again[0].receipt, /* twice: deleted */
                                elsewhere,        again[5].receipt, /* already gone: deleted */
                                theirs[0].receipt};
    for (int i = 0; i < 10; i++) {
        d[i] = (struct mq_combined_delete){
            .o = {.done = count_done, .ctx = &done, .status = STATUS_UNSET},
            .q = i == 9 ? other : queue,
            .receipt = receipts[i]};
        ck_assert(mq_combiner_delete(srv.app.combiner, &d[i]));
    }
    db_pool_release(srv.app.pool, c);
    wait_count(&done, 10);
    /* the first alone, the rest together, then the superseded one and the gone one again alone
     * (the not-ours ones never reach the database) */
    ck_assert_int_le(statements_of(MQ_COMBINED_DELETE) - st0, 2);
    enum mq_status want[] = {MQ_OK,        MQ_OK, MQ_OK,        MQ_OK, MQ_CONFLICT,
                             MQ_NOT_FOUND, MQ_OK, MQ_NOT_FOUND, MQ_OK, MQ_OK};
    for (int i = 0; i < 10; i++)
        ck_assert_msg(d[i].o.status == want[i], "delete %d: %d, not %d", i, d[i].o.status, want[i]);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE id = %lld", again[4].id), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 1);
    mq_messages_free(msgs, n);
    mq_messages_free(again, m);
    mq_messages_free(theirs, k);
}
END_TEST

struct held_delete {
    struct db_conn *c;
    struct mq_delete_row rows[2];
    enum mq_status out[2], st;
};

static void *run_held_delete(void *arg)
{
    struct held_delete *h = arg;
    h->st = mq_delete_rows(h->c, h->rows, 2, h->out);
    return NULL;
}

/* A delete that waits for a message's row while another transaction leases it again finds the
 * new lease when it gets the row: the old receipt is superseded (409), the message stays. (A
 * server whose TID recheck compares the new version's TID turns it away by that alone; the
 * statement's receipt filter turns it away on one whose recheck does not.) */
START_TEST(a_delete_behind_a_new_lease_leaves_the_message)
{
    fill(queue.id, 2, "l");
    struct db_conn *c = hold_pool();
    struct mq_message *msgs;
    int n;
    ck_assert_int_eq(mq_receive(c, &queue, 2, 30, false, &msgs, &n), MQ_OK);
    ck_assert_int_eq(n, 2);
    PGconn *other = PQconnectdb(harness_db_url());
    ck_assert_int_eq(PQstatus(other), CONNECTION_OK);
    char sql[320];
    snprintf(sql, sizeof sql,
             "SET idle_in_transaction_session_timeout = '20s'; BEGIN; "
             "UPDATE messages SET receipt = receipt + 1, receive_count = receive_count + 1 "
             "WHERE id = %lld",
             msgs[0].id);
    PGresult *r = PQexec(other, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    static struct held_delete h; /* the thread outlives a failed check's jump out of here */
    h = (struct held_delete){.c = c,
                             .rows = {{&queue, msgs[0].receipt}, {&queue, msgs[1].receipt}}};
    pthread_t t;
    pthread_create(&t, NULL, run_held_delete, &h);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
             PQbackendPID(c->pg));
    long long waiting = harness_wait_sql(sql, 1, 10);
    /* whatever happened, the transaction ends and the thread is joined before any check */
    r = PQexec(other, waiting == 1 ? "COMMIT" : "ROLLBACK");
    PQclear(r);
    pthread_join(t, NULL);
    PQfinish(other);
    db_pool_release(srv.app.pool, c);
    ck_assert_int_eq(waiting, 1);
    ck_assert_int_eq(h.st, MQ_OK);
    ck_assert_int_eq(h.out[0], MQ_CONFLICT);
    ck_assert_int_eq(h.out[1], MQ_OK);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE id = %lld", msgs[0].id), 1);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 1);
    mq_messages_free(msgs, n);
}
END_TEST

/* A stopped combiner takes nothing more: HTTP receives and deletes run on their own. */
START_TEST(after_a_stop_receives_and_deletes_run_alone)
{
    fill(queue.id, 1, "s");
    mq_combiner_stop(srv.app.combiner, 1000);
    struct response r;
    harness_admin(&srv, "POST", "/queues/combined/messages:receive", "{\"max_messages\": 5}", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *m = json_array_get(json_object_get(r.json, "messages"), 0);
    ck_assert_ptr_nonnull(m);
    char path[160];
    snprintf(path, sizeof path, "/queues/combined/messages/%s", json_str(m, "receipt"));
    response_cleanup(&r);
    harness_admin(&srv, "DELETE", path, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 0);
    unsigned long long statements, operations;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_RECEIVE, &statements, &operations);
    ck_assert_int_eq(statements, 0);
}
END_TEST

/* ---- many HTTP clients at once ---- */

#define CLIENTS    8
#define PER_CLIENT 25

struct client {
    int n;
    char ids[PER_CLIENT][40];
    long status[PER_CLIENT];
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    for (int i = 0; i < PER_CLIENT; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"body\": \"client-%d-%d\"}", c->n, i);
        struct response r;
        harness_admin(&srv, "POST", "/queues/combined/messages", body, &r);
        c->status[i] = r.status;
        snprintf(c->ids[i], sizeof c->ids[i], "%s",
                 r.status == 201 ? json_str(r.json, "message_id") : "");
        response_cleanup(&r);
    }
    return NULL;
}

START_TEST(concurrent_http_sends_each_get_their_own_message)
{
    static struct client clients[CLIENTS];
    pthread_t threads[CLIENTS];
    /* until the hub has read who long-polls what, every send NOTIFYs and goes alone */
    for (int i = 0; i < 500 && mq_hub_listened(srv.app.hub, queue.id); i++)
        harness_sleep_ms(10);
    for (int k = 0; k < CLIENTS; k++) {
        clients[k].n = k;
        pthread_create(&threads[k], NULL, client_main, &clients[k]);
    }
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < CLIENTS; k++)
        for (int i = 0; i < PER_CLIENT; i++) {
            ck_assert_int_eq(clients[k].status[i], 201);
            ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE body = "
                                          "'client-%d-%d' AND message_id = '%s'",
                                          k, i, clients[k].ids[i]),
                             1);
        }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), CLIENTS * PER_CLIENT);
    unsigned long long statements, messages;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_SEND, &statements, &messages);
    /* a hub that fell behind (a loaded machine) sends some alone, to be safe: see the wait */
    ck_assert_int_gt(messages, 0);
}
END_TEST

/* Publishes over HTTP to combined-t, alternately from Berlin and Paris. */
#define PUB_CLIENTS 8
#define PUB_EACH    10

struct publisher {
    int n;
    long status[PUB_EACH];
    long long deliveries[PUB_EACH];
    char ids[PUB_EACH][40];
};

static void *publisher_main(void *arg)
{
    struct publisher *p = arg;
    for (int i = 0; i < PUB_EACH; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"body\": \"pub-%d-%d\", \"attributes\": {\"city\": {\"type\": \"String\", "
                 "\"value\": \"%s\"}}}",
                 p->n, i, i % 2 ? "Berlin" : "Paris");
        struct response r;
        harness_admin(&srv, "POST", "/topics/combined-t/messages", body, &r);
        p->status[i] = r.status;
        p->deliveries[i] = json_integer_value(json_object_get(r.json, "deliveries"));
        snprintf(p->ids[i], sizeof p->ids[i], "%s",
                 r.status == 201 ? json_str(r.json, "message_id") : "");
        response_cleanup(&r);
    }
    return NULL;
}

static long long delivered_to(const char *queue_name, const char *message_id)
{
    return harness_sqlf("SELECT count(*) FROM messages WHERE message_id = '%s' AND queue_id = "
                        "(SELECT id FROM queues WHERE name = '%s')",
                        message_id, queue_name);
}

START_TEST(concurrent_http_publishes_share_statements_and_each_land_once)
{
    struct response r;
    harness_admin(&srv, "PUT", "/topics/combined-t", NULL, &r);
    response_cleanup(&r);
    harness_put_queue(&srv, "pub-all", NULL, 201);
    harness_put_queue(&srv, "pub-berlin", NULL, 201);
    harness_admin(&srv, "PUT", "/topics/combined-t/subscriptions/all", "{\"queue\": \"pub-all\"}",
                  &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/topics/combined-t/subscriptions/berlin",
                  "{\"queue\": \"pub-berlin\", \"filter_policy\": {\"city\": [\"Berlin\"]}}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    static struct publisher pubs[PUB_CLIENTS];
    pubs[0].n = -1; /* a first publish caches the topic: later ones are planned on their thread */
    publisher_main(&pubs[0]);
    unsigned long long st0, n0, st1, n1;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_PUBLISH, &st0, &n0);
    struct db_conn *held = hold_pool(); /* the first statement waits: the others gather */
    pthread_t threads[PUB_CLIENTS];
    for (int k = 0; k < PUB_CLIENTS; k++) {
        pubs[k] = (struct publisher){.n = k};
        pthread_create(&threads[k], NULL, publisher_main, &pubs[k]);
    }
    harness_sleep_ms(300);
    db_pool_release(srv.app.pool, held);
    for (int k = 0; k < PUB_CLIENTS; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < PUB_CLIENTS; k++)
        for (int i = 0; i < PUB_EACH; i++) {
            bool berlin = i % 2;
            ck_assert_int_eq(pubs[k].status[i], 201);
            ck_assert_int_eq(pubs[k].deliveries[i], berlin ? 2 : 1);
            ck_assert_int_eq(delivered_to("pub-all", pubs[k].ids[i]), 1);
            ck_assert_int_eq(delivered_to("pub-berlin", pubs[k].ids[i]), berlin);
        }
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_PUBLISH, &st1, &n1);
    /* a publish that came after the held statement's first 50 ms took its own (not counted) */
    ck_assert_int_gt(n1 - n0, 0);
    ck_assert_int_lt(st1 - st0, n1 - n0);
}
END_TEST

/* PER_CLIENT rides over HTTP, each without an Idempotency-Key (so combined). */
static void *ride_client_main(void *arg)
{
    struct client *c = arg;
    for (int i = 0; i < PER_CLIENT; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"from\":\"A\",\"to\":\"B\",\"customer\":\"http-%d-%d\",\"duration\":60,"
                 "\"distance\":2,\"fare\":7}",
                 c->n, i);
        struct response r;
        harness_admin(&srv, "POST", "/rides", body, &r);
        c->status[i] = r.status;
        snprintf(c->ids[i], sizeof c->ids[i], "%s", r.status == 201 ? json_str(r.json, "id") : "");
        response_cleanup(&r);
    }
    return NULL;
}

/* Waits until the gateway counts n open connections (a closed one is counted until its HTTP
 * thread has seen it close). */
static void wait_connections(int n)
{
    for (int i = 0; i < 500 && http_server_connections(srv.app.http) != n; i++)
        harness_sleep_ms(10);
    ck_assert_int_eq(http_server_connections(srv.app.http), n);
}

/* POST /rides of customer "PREFIX-i"; asserts 201. */
static void post_ride(const char *prefix, int i)
{
    char body[160];
    snprintf(body, sizeof body,
             "{\"from\":\"A\",\"to\":\"B\",\"customer\":\"%s-%d\",\"duration\":60,"
             "\"distance\":2,\"fare\":7}",
             prefix, i);
    struct response r;
    harness_admin(&srv, "POST", "/rides", body, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}

/* One ride at a time from the only client: each is stored at once on its request's thread,
 * never handed over. */
START_TEST(a_lone_ride_is_not_handed_over)
{
    unsigned long long st0, n0, st1, n1;
    post_ride("lone", 0); /* (loads the topic) */
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st0, &n0);
    for (int i = 1; i <= 5; i++) {
        wait_connections(0);
        post_ride("lone", i);
    }
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st1, &n1);
    ck_assert_int_eq(st1 - st0, 0);
    ck_assert_int_eq(n1 - n0, 0);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE customer LIKE 'lone-%%'"), 6);
    ck_assert_int_eq(deliveries("customer-loyalty", "lone-%"), 6);
}
END_TEST

/* With another client connected, a ride never blocks its HTTP thread (that client's requests
 * would wait unread behind it): it is handed over even when nothing else is going on. */
START_TEST(a_ride_beside_another_client_is_handed_over)
{
    unsigned long long st0, n0, st1, n1;
    post_ride("beside", 0); /* (loads the topic) */
    wait_connections(0);
    int other = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(other, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)http_server_port(srv.app.http)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(other, (struct sockaddr *)&a, sizeof a), 0);
    wait_connections(1);
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st0, &n0);
    for (int i = 1; i <= 3; i++)
        post_ride("beside", i);
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st1, &n1);
    close(other);
    ck_assert_int_eq(n1 - n0, 3);
    ck_assert_int_eq(deliveries("customer-loyalty", "beside-%"), 4);
}
END_TEST

START_TEST(concurrent_http_rides_each_get_their_own_ride_published_once)
{
    static struct client clients[CLIENTS];
    pthread_t threads[CLIENTS];
    unsigned long long st0, n0, st1, n1;
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st0, &n0);
    for (int k = 0; k < CLIENTS; k++) {
        clients[k].n = k;
        pthread_create(&threads[k], NULL, ride_client_main, &clients[k]);
    }
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < CLIENTS; k++)
        for (int i = 0; i < PER_CLIENT; i++) {
            ck_assert_int_eq(clients[k].status[i], 201);
            ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM rides WHERE id = '%s' AND "
                                          "customer = 'http-%d-%d'",
                                          clients[k].ids[i], k, i),
                             1);
        }
    ck_assert_int_eq(deliveries("datalake-ingestion", "http-%"), CLIENTS * PER_CLIENT);
    ck_assert_int_eq(harness_sqlf("SELECT count(DISTINCT m.message_id) FROM messages m JOIN "
                                  "queues q ON q.id = m.queue_id WHERE q.name = "
                                  "'datalake-ingestion'"),
                     CLIENTS * PER_CLIENT);
    mq_combiner_counts(srv.app.combiner, MQ_COMBINED_UPPER, &st1, &n1);
    ck_assert_int_gt(n1 - n0, 0); /* (the first ride loads the topic and goes alone) */
}
END_TEST

/* One message's life over HTTP, PER_CLIENT times: send, receive one (any), delete it. */
struct cycler {
    char got[PER_CLIENT][40]; /* message ids received */
    long deleted[PER_CLIENT]; /* status of each delete */
};

static void receive_one(struct cycler *c, int i, char *receipt, size_t n)
{
    for (int tries = 0; tries < 200 && !c->got[i][0]; tries++) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/combined/messages:receive", "{\"max_messages\": 1}",
                      &r);
        ck_assert_int_eq(r.status, 200);
        json_t *m = json_array_get(json_object_get(r.json, "messages"), 0);
        if (m) { /* else the others took what was there: try again */
            snprintf(c->got[i], sizeof c->got[i], "%s", json_str(m, "message_id"));
            snprintf(receipt, n, "%s", json_str(m, "receipt"));
        }
        response_cleanup(&r);
    }
}

static void *cycler_main(void *arg)
{
    struct cycler *c = arg;
    for (int i = 0; i < PER_CLIENT; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/queues/combined/messages", "{\"body\": \"cycle\"}", &r);
        response_cleanup(&r);
        char receipt[MQ_RECEIPT_LEN] = "", path[160];
        receive_one(c, i, receipt, sizeof receipt);
        snprintf(path, sizeof path, "/queues/combined/messages/%s", receipt);
        harness_admin(&srv, "DELETE", path, NULL, &r);
        c->deleted[i] = r.status;
        response_cleanup(&r);
    }
    return NULL;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(concurrent_http_cycles_deliver_each_message_once)
{
    for (int i = 0; i < 500 && mq_hub_listened(srv.app.hub, queue.id); i++)
        harness_sleep_ms(10);
    unsigned long long r0 = statements_of(MQ_COMBINED_RECEIVE),
                       d0 = statements_of(MQ_COMBINED_DELETE);
    static struct cycler cyclers[CLIENTS];
    memset(cyclers, 0, sizeof cyclers);
    pthread_t threads[CLIENTS];
    for (int k = 0; k < CLIENTS; k++)
        pthread_create(&threads[k], NULL, cycler_main, &cyclers[k]);
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(threads[k], NULL);
    static char ids[CLIENTS * PER_CLIENT][40];
    for (int k = 0; k < CLIENTS; k++)
        for (int i = 0; i < PER_CLIENT; i++) {
            ck_assert_int_eq(cyclers[k].deleted[i], 204);
            memcpy(ids[k * PER_CLIENT + i], cyclers[k].got[i], sizeof ids[0]);
        }
    qsort(ids, CLIENTS * PER_CLIENT, sizeof ids[0], by_text);
    for (int i = 0; i < CLIENTS * PER_CLIENT; i++) {
        ck_assert_int_ne(ids[i][0], 0);
        ck_assert_msg(i == 0 || strcmp(ids[i - 1], ids[i]) != 0, "%s received twice", ids[i]);
    }
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 0);
    ck_assert_int_gt(statements_of(MQ_COMBINED_RECEIVE) - r0, 0);
    ck_assert_int_gt(statements_of(MQ_COMBINED_DELETE) - d0, 0);
}
END_TEST

START_TEST(a_stop_that_cannot_store_fails_the_sends_in_time)
{
    struct db_conn *held = hold_pool();
    static struct sends ss;
    memset(&ss, 0, sizeof ss);
    ck_assert(submit(&ss, 20, "doomed"));
    double t0 = harness_now_s();
    mq_combiner_stop(srv.app.combiner, 300);
    double took = harness_now_s() - t0;
    db_pool_release(srv.app.pool, held);
    ck_assert_int_eq(atomic_load(&ss.done), 20);
    /* the batch taken before the stop waits out its acquire (3 s); the other one fails with it
     * instead of waiting 3 s more */
    ck_assert_msg(took < 5, "stop took %.1f s", took);
    for (int i = 0; i < 20; i++) /* busy: the pool timed out; unavailable: no time was left */
        ck_assert(ss.s[i].o.status == MQ_BUSY || ss.s[i].o.status == MQ_UNAVAILABLE);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages"), 0);
}
END_TEST

/* A process that stops while HTTP sends wait in the combiner answers them before it closes. */
static void *one_send(void *arg)
{
    struct response r;
    harness_admin(&srv, "POST", "/queues/combined/messages", "{\"body\": \"at-stop\"}", &r);
    *(long *)arg = r.status;
    response_cleanup(&r);
    return NULL;
}

static void *stop_server(void *arg)
{
    (void)arg;
    harness_stop(&srv);
    return NULL;
}

START_TEST(stopping_answers_the_suspended_http_sends)
{
    for (int i = 0; i < 500 && mq_hub_listened(srv.app.hub, queue.id); i++)
        harness_sleep_ms(10);
    struct db_conn *held = hold_pool();
    static long status[4]; /* the senders outlive a failed check's jump out of here */
    memset(status, 0, sizeof status);
    pthread_t senders[4], stopper;
    for (int i = 0; i < 4; i++)
        pthread_create(&senders[i], NULL, one_send, &status[i]);
    for (int i = 0; i < 500 && http_server_in_flight(srv.app.http) < 4; i++)
        harness_sleep_ms(10);
    ck_assert_int_eq(http_server_in_flight(srv.app.http), 4);
    pthread_create(&stopper, NULL, stop_server, NULL);
    harness_sleep_ms(200); /* the stop now waits for the combiner, which waits for the pool */
    db_pool_release(srv.app.pool, held);
    for (int i = 0; i < 4; i++)
        pthread_join(senders[i], NULL);
    pthread_join(stopper, NULL);
    stopped_by_test = true;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(status[i], 201);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM messages WHERE body = 'at-stop'"), 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("combiner");
    TCase *tc = tcase_create("combiner");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sends_that_gather_share_statements);
    tcase_add_test(tc, a_refused_message_fails_alone);
    tcase_add_test(tc, rides_that_gather_are_stored_and_published_together);
    tcase_add_test(tc, rides_that_come_during_a_lone_one_wait_then_go_together);
    tcase_add_test(tc, a_refused_hand_over_stores_the_prepared_ride);
    tcase_add_test(tc, a_refused_ride_fails_alone);
    tcase_add_test(tc, stopping_finishes_what_was_handed_over);
    tcase_add_test(tc, receives_that_gather_share_a_claim);
    tcase_add_test(tc, receives_wait_only_for_claims_they_can_share);
    tcase_add_test(tc, receives_queue_up_for_a_bounded_number_of_claims);
    tcase_add_test(tc, nothing_waits_behind_a_stuck_statement);
    tcase_add_test(tc, an_operation_without_a_connection_is_told_the_pool_is_busy);
    tcase_add_test(tc, a_receive_left_empty_by_a_short_claim_is_told_to_look_again);
    tcase_add_test(tc, a_wait_after_a_short_empty_claim_ends_at_once);
    tcase_add_test(tc, deletes_that_gather_share_a_statement_and_keep_their_outcomes);
    tcase_add_test(tc, a_delete_behind_a_new_lease_leaves_the_message);
    tcase_add_test(tc, after_a_stop_receives_and_deletes_run_alone);
    tcase_add_test(tc, concurrent_http_sends_each_get_their_own_message);
    tcase_add_test(tc, concurrent_http_cycles_deliver_each_message_once);
    tcase_add_test(tc, a_lone_ride_is_not_handed_over);
    tcase_add_test(tc, a_ride_beside_another_client_is_handed_over);
    tcase_add_test(tc, concurrent_http_rides_each_get_their_own_ride_published_once);
    tcase_add_test(tc, concurrent_http_publishes_share_statements_and_each_land_once);
    tcase_add_test(tc, a_stop_that_cannot_store_fails_the_sends_in_time);
    tcase_add_test(tc, stopping_answers_the_suspended_http_sends);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
