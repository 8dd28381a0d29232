/* Chaos: crashes and crowds, with the real binary as separate processes (tests/support/proc.c).
 *
 * 1. kill -9 of `rydes serve` in the middle of a mixed load (rides, prebookings, queue sends,
 *    receives and acks, RFQs, fares), then a restart: every request that got a 2xx is durable.
 *    Right after the kill (by SQL): every ride, task, RFQ and fare answered 2xx is stored, every
 *    message sent 201 and never acked is still queued, every message acked 204 is gone. After
 *    the restart: every ride reached its four services (notification, loyalty credited once,
 *    data lake, its fare saga final and balanced), every prebooking task is final with its
 *    prebooking, every RFQ done, every fare saga (some killed mid-flight, resumed after the 1 s
 *    lease) final with a balanced ledger, each payment operation and outcome once, and draining
 *    the queue delivers every sent message while no message acked before the kill is ever
 *    delivered again. The killed process serves the API and runs the sagas; the consumers run in
 *    a `rydes worker` process that stays up (a consumer lease is 30 s: a consumer killed while
 *    holding a message is covered by test_prebookings and test_concurrency).
 * 2. Two, then three `rydes serve` processes (all workers) plus two `rydes worker NAME...`
 *    processes on one database under load: no double effects (loyalty points credited once, one
 *    data lake row and one notification per ride, each payment operation once per fare and its
 *    outcome published once, every queue message delivered to exactly one consumer while its
 *    30 s lease holds, the services' handled counters summing to exactly one per message with
 *    none failed), no deadlocks (no "deadlock" in any process's log, no backend waiting on a
 *    lock at the end), and balanced work: every serve process answered requests and each worker
 *    process handled messages (the "NAME: stopped after N messages handled" line every
 *    consumer logs when its process stops on SIGTERM, which it must survive with exit 0). */
#include "proc.h"

#include "rydes/buf.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define NPROCS    6
#define MAX_IDS   400
#define MAX_MSGS  400
#define MAX_DELIV 6
#define NTHREADS  3
#define FINAL_S   25 /* how long outcomes may take once the processes are up */
#define CARD_BODY "\"cc\": \"4000 0566 5566 5556\", \"expiryDate\": \"11/2097\", \"cvv\": \"737\""

/* The processes of the running test, stopped by the teardown whatever happened. */
static struct proc procs[NPROCS];

static void dump_logs(void)
{
    for (int i = 0; i < NPROCS; i++)
        if (procs[i].log[0])
            proc_dump_log(&procs[i]);
}

/* Fails the test with every process's log tail on stderr. */
#define require(cond, ...)             \
    do {                               \
        if (!(cond)) {                 \
            dump_logs();               \
            ck_abort_msg(__VA_ARGS__); \
        }                              \
    } while (0)

static void teardown(void)
{
    for (int i = 0; i < NPROCS; i++)
        proc_cleanup(&procs[i]);
}

/* ---- a client the load threads may use: no assertions, status 0 when there is no answer ---- */

struct reply {
    long status;
    json_t *json; /* the body when it is JSON */
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    buf_append(userdata, p, size * n);
    return size * n;
}

static void call(const struct proc *p, const char *method, const char *path, const char *body,
                 struct reply *out)
{
    out->status = 0;
    out->json = NULL;
    CURL *c = curl_easy_init();
    if (!c)
        return;
    struct buf b;
    buf_init(&b);
    char url[512];
    snprintf(url, sizeof url, "%s%s", p->http.base, path);
    struct curl_slist *hs = curl_slist_append(NULL, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    if (b.len)
        out->json = json_loadb(b.data, b.len, 0, NULL);
    buf_cleanup(&b);
}

/* ---- the load: every request's outcome, recorded under a lock -------------------------------- */

enum op { OP_RIDE, OP_PREBOOKING, OP_SEND, OP_RECEIVE, OP_RFQ, OP_FARE, NOPS };
static const char *const op_names[NOPS] = {"ride", "prebooking", "send", "receive", "rfq", "fare"};

/* A message of the load's queue, by its body "TAG-mINDEX" (registered before it is sent, so a
 * receive that beats the sender's 201 still finds it). */
struct msg {
    char id[40];       /* the message_id the send answered */
    bool sent;         /* the send answered 201 */
    bool delete_tried; /* some receiver asked to delete it */
    int acked_rc;      /* receive_count of the delivery whose delete answered 204 (0: none) */
    int n;             /* deliveries */
    int rc[MAX_DELIV]; /* their receive counts */
};

struct load {
    pthread_mutex_t mu;
    const char *tag; /* "k1", "k2": prefix of customers, fare ids, queue, bodies */
    char queue[32];  /* the load's queue */
    int lease;       /* visibility timeout of the load's receives */
    struct proc *servers[3];
    atomic_int nservers;
    atomic_bool stop;
    int ops_per_thread; /* 0: until stop */
    atomic_int seq;     /* operations started */
    int ok[NOPS], failed[NOPS];
    int server_ok[3];
    char ids[NOPS][MAX_IDS][48]; /* rides, tasks, RFQs, fares answered 2xx */
    int nids[NOPS];
    struct msg msgs[MAX_MSGS];
    int nmsgs;
    int alien;    /* deliveries of bodies that are none of ours */
    int mismatch; /* deliveries whose message_id is not the one the send answered */
};

static struct load load;

static void load_init(const char *tag, int lease)
{
    memset(&load, 0, sizeof load);
    pthread_mutex_init(&load.mu, NULL);
    load.tag = tag;
    load.lease = lease;
    snprintf(load.queue, sizeof load.queue, "%s-q", tag);
}

/* Records the outcome of op; id (may be NULL) is what it created. */
static void outcome(enum op op, int server, bool ok, const char *id)
{
    pthread_mutex_lock(&load.mu);
    if (ok) {
        load.ok[op]++;
        load.server_ok[server]++;
        if (id && load.nids[op] < MAX_IDS)
            snprintf(load.ids[op][load.nids[op]++], 48, "%s", id);
    } else {
        load.failed[op]++;
    }
    pthread_mutex_unlock(&load.mu);
}

/* POSTs body to path and records the outcome: a 2xx with the created id (member key). */
static void post_and_record(enum op op, int server, const char *path, const char *body,
                            const char *key, const char *known_id)
{
    struct reply r;
    call(load.servers[server], "POST", path, body, &r);
    bool ok = r.status >= 200 && r.status < 300;
    const char *id = known_id ? known_id : json_string_value(json_object_get(r.json, key));
    outcome(op, server, ok && id, id);
    json_decref(r.json);
}

static void do_ride(int server, int thread, int seq)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s-c%d\", "
             "\"duration\": 600, \"distance\": 3, \"fare\": %d.%02d}",
             load.tag, thread, 5 + seq % 40, seq % 100);
    post_and_record(OP_RIDE, server, "/rides", body, "id", NULL);
}

static void do_prebooking(int server, int seq)
{
    time_t when = time(NULL) + 2 * 86400 + seq * 60;
    struct tm tm;
    gmtime_r(&when, &tm);
    char at[40], body[512];
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* a customer of its own: the slot rule never fails it */
    snprintf(body, sizeof body,
             "{\"from\": \"Sunset Blvd\", \"to\": \"Hollywood Hills\", \"customer\": \"%s-p%d\", "
             "\"when\": \"%s\"}",
             load.tag, seq, at);
    post_and_record(OP_PREBOOKING, server, "/prebookings", body, "id", NULL);
}

static void do_rfq(int server, int thread)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"from\": \"Unicorn Meadow\", \"to\": \"Rainbow Bridge\", \"customer\": \"%s-r%d\", "
             "\"timeout_in_secs\": 2}",
             load.tag, thread);
    post_and_record(OP_RFQ, server, "/rfqs", body, "id", NULL);
}

/* Fares of flaky customers (each payment call fails once first, so the saga waits out a backoff
 * at every step) and, when failures, of customers whose charge is declined. */
static void do_fare(int server, int seq, bool failures)
{
    char fare[48], customer[64], body[512];
    snprintf(fare, sizeof fare, "%s-f%d", load.tag, seq);
    const char *kind = seq % 3 == 0 ? "_flaky" : seq % 3 == 1 && failures ? "_fail_charge" : "";
    snprintf(customer, sizeof customer, "%s-fc%d%s", load.tag, seq, kind);
    snprintf(body, sizeof body,
             "{\"customerId\": \"%s\", \"fareId\": \"%s\", \"fareAmount\": %d.%02d, " CARD_BODY "}",
             customer, fare, 10 + seq % 30, seq % 100);
    post_and_record(OP_FARE, server, "/fares", body, NULL, fare);
}

static void do_send(int server)
{
    pthread_mutex_lock(&load.mu);
    int idx = load.nmsgs < MAX_MSGS ? load.nmsgs++ : -1;
    pthread_mutex_unlock(&load.mu);
    if (idx < 0)
        return;
    char path[96], body[96];
    snprintf(path, sizeof path, "/queues/%s/messages", load.queue);
    snprintf(body, sizeof body, "{\"body\": \"%s-m%d\"}", load.tag, idx);
    struct reply r;
    call(load.servers[server], "POST", path, body, &r);
    const char *id = json_string_value(json_object_get(r.json, "message_id"));
    bool ok = r.status == 201 && id;
    pthread_mutex_lock(&load.mu);
    if (ok) {
        load.msgs[idx].sent = true;
        snprintf(load.msgs[idx].id, sizeof load.msgs[idx].id, "%s", id);
    }
    pthread_mutex_unlock(&load.mu);
    outcome(OP_SEND, server, ok, NULL);
    json_decref(r.json);
}

/* The entry of a delivered body, or NULL (counted as alien). Called locked. */
static struct msg *msg_of(const char *body)
{
    size_t n = strlen(load.tag);
    if (!body || strncmp(body, load.tag, n) != 0 || strncmp(body + n, "-m", 2) != 0) {
        load.alien++;
        return NULL;
    }
    int idx = atoi(body + n + 2);
    if (idx < 0 || idx >= load.nmsgs) {
        load.alien++;
        return NULL;
    }
    return &load.msgs[idx];
}

/* Records a delivery; returns its receive count. */
static int delivered(json_t *m)
{
    int rc = (int)json_integer_value(json_object_get(m, "receive_count"));
    const char *id = json_string_value(json_object_get(m, "message_id"));
    pthread_mutex_lock(&load.mu);
    struct msg *e = msg_of(json_string_value(json_object_get(m, "body")));
    if (e) {
        if (e->n < MAX_DELIV)
            e->rc[e->n] = rc;
        e->n++;
        if (e->sent && (!id || strcmp(id, e->id) != 0))
            load.mismatch++;
    }
    pthread_mutex_unlock(&load.mu);
    return rc;
}

/* Deletes message m by its receipt; on 204 records the ack. */
static bool ack(const struct proc *p, json_t *m, int rc)
{
    char path[512];
    snprintf(path, sizeof path, "/queues/%s/messages/%s", load.queue,
             json_string_value(json_object_get(m, "receipt")));
    const char *body = json_string_value(json_object_get(m, "body"));
    pthread_mutex_lock(&load.mu);
    struct msg *e = msg_of(body);
    if (e)
        e->delete_tried = true; /* from here on the kill may or may not have let it through */
    pthread_mutex_unlock(&load.mu);
    struct reply r;
    call(p, "DELETE", path, NULL, &r);
    json_decref(r.json);
    if (r.status != 204)
        return false;
    pthread_mutex_lock(&load.mu);
    if (e && rc > e->acked_rc)
        e->acked_rc = rc;
    pthread_mutex_unlock(&load.mu);
    return true;
}

/* Receives up to 5 messages and acks each; the number received, -1 when a request failed. */
static int receive_some(const struct proc *p, int wait_s)
{
    char path[96], body[128];
    snprintf(path, sizeof path, "/queues/%s/messages:receive", load.queue);
    snprintf(body, sizeof body,
             "{\"max_messages\": 5, \"visibility_timeout\": %d, \"wait_seconds\": %d}", load.lease,
             wait_s);
    struct reply r;
    call(p, "POST", path, body, &r);
    json_t *msgs = json_object_get(r.json, "messages");
    int n = r.status == 200 && json_is_array(msgs) ? (int)json_array_size(msgs) : -1;
    bool ok = n >= 0;
    for (int i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, (size_t)i);
        ok = ack(p, m, delivered(m)) && ok;
    }
    json_decref(r.json);
    return ok ? n : -1;
}

/* The i-th operation of thread: each thread goes through every kind in turn, the servers
 * taken in turn by all threads together. */
static void do_op(int thread, int i, bool failures)
{
    int seq = atomic_fetch_add(&load.seq, 1);
    int server = seq % atomic_load(&load.nservers);
    switch ((enum op)((i + 2 * thread) % NOPS)) {
    case OP_RIDE:
        do_ride(server, thread, seq);
        break;
    case OP_PREBOOKING:
        do_prebooking(server, seq);
        break;
    case OP_SEND:
        do_send(server);
        break;
    case OP_RECEIVE:
        outcome(OP_RECEIVE, server, receive_some(load.servers[server], 0) >= 0, NULL);
        break;
    case OP_RFQ:
        do_rfq(server, thread);
        break;
    default:
        do_fare(server, seq, failures);
        break;
    }
}

static void *client(void *arg)
{
    int thread = (int)(intptr_t)arg;
    bool failures = strcmp(load.tag, "k2") == 0; /* declined charges in the crowd test only */
    for (int i = 0; !atomic_load(&load.stop) && (!load.ops_per_thread || i < load.ops_per_thread);
         i++)
        do_op(thread, i, failures);
    return NULL;
}

static void start_clients(pthread_t *t)
{
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, client, (void *)(intptr_t)i), 0);
}

static void join_clients(pthread_t *t)
{
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
}

static void print_outcomes(const char *when)
{
    fprintf(stderr, "chaos_crash %s %s:", load.tag, when);
    for (int k = 0; k < NOPS; k++)
        fprintf(stderr, " %s %d/%d", op_names[k], load.ok[k], load.ok[k] + load.failed[k]);
    fprintf(stderr, "\n");
}

/* ---- SQL ------------------------------------------------------------------------------------- */

static long long sql_count(const char *sql)
{
    return harness_sqlf("%s", sql);
}

/* Polls sql until it gives want (FINAL_S at most); fails naming what when it does not. */
static void wait_count(const char *what, const char *sql, long long want)
{
    long long got = harness_wait_sql(sql, want, FINAL_S);
    require(got == want, "%s: %lld of %lld after %d s", what, got, want, FINAL_S);
}

/* Stores the ids answered 2xx in table chaos_ok (tag, kind, id), for the checks to join. */
static void record_ids(void)
{
    char *exists = harness_sql(harness_db_url(), "SELECT to_regclass('public.chaos_ok')::text");
    if (!exists || !*exists)
        free(harness_sql(harness_db_url(), "CREATE TABLE chaos_ok (tag text, kind text, id text, "
                                           "PRIMARY KEY (tag, kind, id))"));
    free(exists);
    struct buf b;
    buf_init(&b);
    for (int k = 0; k < NOPS; k++)
        for (int i = 0; i < load.nids[k]; i++)
            buf_printf(&b, "%s('%s', '%s', '%s')", b.len ? ", " : "", load.tag, op_names[k],
                       load.ids[k][i]);
    if (b.len) {
        char *rows = buf_steal(&b);
        buf_printf(&b, "INSERT INTO chaos_ok VALUES %s", rows);
        free(rows);
        free(harness_sql(harness_db_url(), buf_str(&b)));
    }
    buf_cleanup(&b);
}

/* Fails unless every row of kind (of this test) satisfies cond, a condition on o.id. */
static void require_all(const char *kind, const char *what, const char *cond)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM chaos_ok o WHERE o.tag = '%s' AND o.kind = '%s' AND NOT (%s)",
             load.tag, kind, cond);
    long long bad = sql_count(sql);
    require(bad == 0, "%lld %s answered 2xx: %s", bad, kind, what);
}

/* Waits until every row of kind satisfies cond. */
static void wait_all(const char *kind, const char *what, const char *cond)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM chaos_ok o WHERE o.tag = '%s' AND o.kind = '%s' AND NOT (%s)",
             load.tag, kind, cond);
    long long left = harness_wait_sql(sql, 0, FINAL_S);
    require(left == 0, "%lld %s answered 2xx are not %s after %d s", left, kind, what, FINAL_S);
}

/* The fares of this test: posted ones (TAG-f...) and those of its customers' rides. */
static void our_fares(char *out, size_t n)
{
    snprintf(out, n,
             "SELECT id FROM fares WHERE id LIKE '%s-f%%' OR ride_id IN (SELECT id FROM rides "
             "WHERE customer LIKE '%s-%%')",
             load.tag, load.tag);
}

/* Right after the kill (or the load): what answered 2xx is stored. */
static void check_stored(void)
{
    require_all("ride", "stored", "EXISTS (SELECT 1 FROM rides r WHERE r.id::text = o.id)");
    require_all("prebooking", "a stored task",
                "EXISTS (SELECT 1 FROM tasks t WHERE t.id::text = o.id)");
    require_all("rfq", "stored", "EXISTS (SELECT 1 FROM rfqs r WHERE r.id::text = o.id)");
    require_all("fare", "a stored saga",
                "EXISTS (SELECT 1 FROM fares f WHERE f.id = o.id AND "
                "(SELECT count(*) FROM saga_steps s WHERE s.fare_id = f.id) = 6)");
}

/* Waits for every outcome: rides through their services and their fares, tasks, RFQs, fares
 * (also of requests that committed but whose answer the kill took). */
static void wait_outcomes(void)
{
    wait_all("ride", "through all their services",
             "EXISTS (SELECT 1 FROM ride_journeys j JOIN fares f ON f.ride_id = j.id WHERE "
             "j.id::text = o.id AND j.notified_at IS NOT NULL AND j.loyalty_points IS NOT NULL "
             "AND j.ingested_at IS NOT NULL AND f.status IN ('succeeded', 'failed'))");
    wait_all("prebooking", "succeeded with their prebooking and data lake row",
             "EXISTS (SELECT 1 FROM tasks t JOIN prebookings p ON p.task_id = t.id JOIN "
             "prebooking_submissions s ON s.task_id = t.id WHERE t.id::text = o.id AND "
             "t.status = 'succeeded')");
    wait_all("rfq", "done",
             "EXISTS (SELECT 1 FROM rfqs r WHERE r.id::text = o.id AND "
             "r.status = 'done')");
    char fares[512], sql[1024];
    our_fares(fares, sizeof fares);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM fares WHERE id IN (%s) AND status NOT IN ('succeeded', "
             "'failed')",
             fares);
    wait_count("fares not final", sql, 0);
    /* every ride of the test's customers (answered or not) reached its services */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ride_journeys WHERE customer LIKE '%s-%%' AND (notified_at IS "
             "NULL OR loyalty_points IS NULL OR ingested_at IS NULL)",
             load.tag);
    wait_count("rides of the test not through their services", sql, 0);
}

/* No double effects: loyalty credited once per ride, one notification and data lake row per
 * ride, each payment operation once per fare, each fare balanced and its outcome published
 * once. */
static void check_once(void)
{
    char sql[2048], fares[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM loyalty_accounts a, LATERAL (SELECT sum(floor(r.fare)::bigint + "
             "1)::bigint AS points, count(*) AS rides FROM rides r WHERE r.customer = a.customer) "
             "x WHERE a.customer LIKE '%s-%%' AND (a.points, a.rides) IS DISTINCT FROM (x.points, "
             "x.rides)",
             load.tag);
    require(sql_count(sql) == 0, "loyalty accounts of %s- whose points are not one credit a ride",
            load.tag);
    const char *per_ride[] = {"ride_notifications", "datalake_rides", "loyalty_credits"};
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM rides r WHERE r.customer LIKE '%s-%%' AND "
                 "(SELECT count(*) FROM %s x WHERE x.ride_id = r.id) <> 1",
                 load.tag, per_ride[i]);
        long long bad = sql_count(sql);
        require(bad == 0, "%lld rides without exactly one row in %s", bad, per_ride[i]);
    }
    our_fares(fares, sizeof fares);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT fare_id, kind FROM payment_ledger WHERE fare_id IN (%s) "
             "AND kind <> 'transient' GROUP BY 1, 2 HAVING count(*) > 1) d",
             fares);
    long long twice = sql_count(sql);
    require(twice == 0, "%lld payment operations recorded more than once for one fare", twice);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM fare_ledger WHERE fare_id IN (%s) AND NOT (balanced AND "
             "preauths = 1 AND preauths = voids + (charged > 0)::int)",
             fares);
    long long unbalanced = sql_count(sql);
    require(unbalanced == 0, "%lld fares with an unbalanced ledger or an open pre-authorization",
            unbalanced);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM fares f WHERE f.id IN (%s) AND (f.needs_operator OR (SELECT "
             "string_agg(q.name, ',') FROM messages m JOIN queues q ON q.id = m.queue_id WHERE "
             "q.name IN ('fare-succeeded', 'fare-failed') AND m.attributes->'fare_id'->>'value' = "
             "f.id) IS DISTINCT FROM 'fare-' || f.status)",
             fares);
    long long unpublished = sql_count(sql);
    require(unpublished == 0, "%lld fares whose outcome was not published exactly once",
            unpublished);
}

/* Waits until the queues of the ride and prebooking services are empty. */
static void wait_services_idle(void)
{
    wait_count("messages left in the service queues",
               "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id WHERE q.name IN "
               "('customer-notification', 'customer-loyalty', 'datalake-ingestion', "
               "'customer-accounting', 'prebooking-processing', 'prebooking-datalake')",
               0);
}

/* Receives and acks through p until the load's queue is empty. */
static void drain(const struct proc *p)
{
    double until = harness_now_s() + FINAL_S;
    int errors = 0;
    while (harness_stored(load.queue) > 0 && harness_now_s() < until)
        errors += receive_some(p, 1) < 0;
    require(harness_stored(load.queue) == 0, "%d messages left in %s after %d s",
            harness_stored(load.queue), load.queue, FINAL_S);
    require(errors == 0, "%d receives or acks failed while draining %s", errors, load.queue);
}

/* message_ids of the sent messages matching want (acked, or never asked to delete) as an SQL
 * list; how many. */
static int id_list(struct buf *b, bool acked)
{
    int n = 0;
    for (int i = 0; i < load.nmsgs; i++) {
        const struct msg *e = &load.msgs[i];
        if (e->sent && (acked ? e->acked_rc > 0 : !e->delete_tried))
            buf_printf(b, "%s'%s'", n++ ? ", " : "", e->id);
    }
    return n;
}

/* Right after the kill: every message sent and never asked to delete is still queued, every
 * acked one is gone. */
static void check_queue_durable(void)
{
    bool acked_sets[2] = {false, true};
    for (int k = 0; k < 2; k++) {
        struct buf b;
        buf_init(&b);
        int n = id_list(&b, acked_sets[k]);
        if (n) {
            char *list = buf_steal(&b);
            buf_printf(&b,
                       "SELECT count(*) FROM messages m JOIN queues q ON q.id = m.queue_id "
                       "WHERE q.name = '%s' AND m.message_id IN (%s)",
                       load.queue, list);
            free(list);
            char *v = harness_sql(harness_db_url(), buf_str(&b));
            long long there = v ? atoll(v) : -1;
            free(v);
            if (acked_sets[k])
                require(there == 0, "%lld of %d messages acked before the kill are still stored",
                        there, n);
            else
                require(there == n,
                        "%lld of %d messages sent (201) and never asked to delete are stored",
                        there, n);
        }
        buf_cleanup(&b);
    }
}

/* After the drain: every sent message was delivered; none after its ack; once only when
 * exactly_once (no lease ran out). */
static void check_deliveries(bool exactly_once)
{
    int lost = 0, after_ack = 0, more = 0, unacked = 0;
    for (int i = 0; i < load.nmsgs; i++) {
        const struct msg *e = &load.msgs[i];
        lost += e->sent && e->n == 0;
        for (int d = 0; d < e->n && d < MAX_DELIV; d++)
            after_ack += e->acked_rc > 0 && e->rc[d] > e->acked_rc;
        more += exactly_once && e->n > 1;
        unacked += exactly_once && e->sent && e->acked_rc == 0;
    }
    require(load.alien == 0 && load.mismatch == 0, "%d foreign deliveries, %d with a wrong id",
            load.alien, load.mismatch);
    require(lost == 0, "%d messages answered 201 were never delivered", lost);
    require(after_ack == 0, "%d deliveries of messages after they were acked", after_ack);
    require(more == 0, "%d messages delivered to more than one consumer within the lease", more);
    require(unacked == 0, "%d messages never acked", unacked);
}

/* ---- processes ------------------------------------------------------------------------------- */

/* Waits until worker process p logged that it runs. */
static void wait_worker_up(struct proc *p)
{
    double until = harness_now_s() + 20;
    while (!proc_log_contains(p, "running workers") && harness_now_s() < until)
        harness_sleep_ms(50);
    require(proc_log_contains(p, "running workers"), "rydes worker did not start (%s)", p->log);
}

/* Stops p with SIGTERM and asserts it exits 0. */
static void stop_cleanly(struct proc *p, const char *what)
{
    int status = proc_signal_wait(p, SIGTERM);
    require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s did not exit 0 on SIGTERM (%d)",
            what, status);
}

/* The sum of the "NAME: stopped after N messages handled, M failed" lines of p's log for
 * worker name (NULL: every worker); failed receives the failures. */
static long long handled_in_log(const struct proc *p, const char *name, long long *failed)
{
    FILE *f = fopen(p->log, "r");
    require(f != NULL, "cannot read %s", p->log);
    char line[4096], pattern[96];
    long long handled = 0;
    *failed = 0;
    while (fgets(line, sizeof line, f)) {
        const char *at = strstr(line, ": stopped after ");
        if (!at || strstr(line, "saga runs"))
            continue;
        if (name) {
            snprintf(pattern, sizeof pattern, " %s: stopped after ", name);
            if (!strstr(line, pattern))
                continue;
        }
        unsigned long long h = 0, x = 0;
        if (sscanf(at, ": stopped after %llu messages handled, %llu failed", &h, &x) == 2) {
            handled += (long long)h;
            *failed += (long long)x;
        }
    }
    fclose(f);
    return handled;
}

/* ---- 1. kill -9 mid-load --------------------------------------------------------------------- */

static const char *const k1_serve_extra[] = {"--db-pool-size",
                                             "8",
                                             "--saga-lease-seconds",
                                             "1",
                                             "--unicorn-min-latency-ms",
                                             "50",
                                             "--unicorn-max-latency-ms",
                                             "300",
                                             NULL};
static const char *const k1_worker_args[] = {
    "customer-notification", "customer-loyalty",    "datalake-ingestion",
    "extraordinary-rides",   "customer-accounting", "prebooking-processing",
    "prebooking-datalake",   "rfq-aggregator",      NULL};

/* Has every kind of operation answered 2xx at least n times? */
static bool every_op_ok(int n)
{
    pthread_mutex_lock(&load.mu);
    bool all = true;
    for (int k = 0; k < NOPS; k++)
        all = all && load.ok[k] >= n;
    pthread_mutex_unlock(&load.mu);
    return all;
}

/* Prints how much work the kill left unfinished (the test holds either way). */
static void print_unfinished(void)
{
    char fares[512], sql[1024];
    our_fares(fares, sizeof fares);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM fares WHERE id IN (%s) AND status NOT IN ('succeeded', "
             "'failed')",
             fares);
    long long open_fares = sql_count(sql);
    long long open_tasks =
        sql_count("SELECT count(*) FROM tasks WHERE status IN ('pending', 'processing')");
    fprintf(stderr, "chaos_crash k1: at the kill %lld fares and %lld tasks were not final\n",
            open_fares, open_tasks);
}

START_TEST(kill_9_mid_load_keeps_every_2xx)
{
    struct proc *serve = &procs[0], *worker = &procs[1], *again = &procs[2];
    load_init("k1", 2);
    proc_serve(serve, "push,fare-saga,unicorn-fleet", k1_serve_extra);
    proc_worker(worker, k1_worker_args);
    wait_worker_up(worker);
    struct reply r;
    call(serve, "PUT", "/queues/k1-q", "{\"visibility_timeout\": 2}", &r);
    json_decref(r.json);
    require(r.status == 201, "PUT /queues/k1-q: %ld", r.status);

    load.servers[0] = serve;
    atomic_store(&load.nservers, 1);
    pthread_t t[NTHREADS];
    start_clients(t);
    double until = harness_now_s() + 30;
    while (!every_op_ok(6) && harness_now_s() < until)
        harness_sleep_ms(20);
    bool loaded = every_op_ok(6);
    int status = proc_signal_wait(serve, SIGKILL);
    atomic_store(&load.stop, true);
    join_clients(t);
    print_outcomes("at the kill");
    require(loaded, "the load did not get 6 of every request through within 30 s");
    require(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "rydes serve was not killed (%d)",
            status);
    print_unfinished();

    record_ids();
    check_stored();
    check_queue_durable();

    proc_serve(again, "push,fare-saga,unicorn-fleet", k1_serve_extra);
    wait_outcomes();
    check_once();
    drain(again);
    check_deliveries(false);
    wait_services_idle();
    stop_cleanly(worker, "rydes worker");
    stop_cleanly(again, "the restarted rydes serve");
    for (int i = 0; i < 3; i++)
        require(!proc_log_contains(&procs[i], "deadlock"), "a deadlock in %s", procs[i].log);
}
END_TEST

/* ---- 2. several gateways and worker processes ------------------------------------------------ */

static const char *const k2_serve_extra[] = {"--db-pool-size",
                                             "10",
                                             "--saga-lease-seconds",
                                             "2",
                                             "--unicorn-min-latency-ms",
                                             "50",
                                             "--unicorn-max-latency-ms",
                                             "300",
                                             NULL};
static const char *const k2_worker_args[] = {"customer-notification",
                                             "customer-loyalty",
                                             "datalake-ingestion",
                                             "customer-accounting",
                                             "prebooking-processing",
                                             "prebooking-datalake",
                                             "fare-saga",
                                             "--saga-lease-seconds",
                                             "2",
                                             NULL};

/* The services whose handled messages the test counts exactly, and the kind of request that
 * feeds each (one message per ride or prebooking). */
#define NCOUNTED 6
static const char *const counted[NCOUNTED] = {"customer-notification", "customer-loyalty",
                                              "datalake-ingestion",    "customer-accounting",
                                              "prebooking-processing", "prebooking-datalake"};

/* Messages already in each counted queue before the test's processes start (left by another
 * test of this binary); 0 on a fresh database. */
static void baseline(long long *out)
{
    char *exists = harness_sql(harness_db_url(), "SELECT to_regclass('public.messages')::text");
    for (int i = 0; i < NCOUNTED; i++) {
        out[i] = 0;
        if (exists && *exists)
            out[i] = harness_sqlf("SELECT count(*) FROM messages m JOIN queues q ON q.id = "
                                  "m.queue_id WHERE q.name = '%s'",
                                  counted[i]);
    }
    free(exists);
}

static void run_phase(int nservers, int ops_per_thread)
{
    atomic_store(&load.nservers, nservers);
    load.ops_per_thread = ops_per_thread;
    pthread_t t[NTHREADS];
    start_clients(t);
    join_clients(t);
}

/* No backend of the test's database waits on a lock for more than a second. */
static void check_no_lock_waits(void)
{
    long long waiting =
        harness_sqlf("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                     "wait_event_type = 'Lock' AND now() - query_start > interval '1 second'");
    require(waiting == 0, "%lld backends wait on a lock", waiting);
}

/* The expected handled count of each counted service: what was there plus one per ride or
 * prebooking of the test (answered or not). */
static void expected_handled(const long long *base, long long *want)
{
    long long rides = harness_sqlf("SELECT count(*) FROM rides WHERE customer LIKE 'k2-%%'");
    long long pre = harness_sqlf("SELECT count(*) FROM prebooking_submissions WHERE "
                                 "submission->>'customer' LIKE 'k2-%%'");
    for (int i = 0; i < NCOUNTED; i++)
        want[i] = base[i] + (i < 4 ? rides : pre);
}

/* Stops every process, then checks the services' counters in their logs: each message handled
 * exactly once in all, none failed, and each worker process did a share. */
static void check_shares(const long long *want)
{
    struct proc *order[5] = {&procs[3], &procs[4], &procs[0], &procs[1], &procs[2]};
    const char *names[5] = {"worker 1", "worker 2", "serve 1", "serve 2", "serve 3"};
    for (int i = 0; i < 5; i++)
        stop_cleanly(order[i], names[i]);
    for (int i = 0; i < 5; i++)
        require(!proc_log_contains(order[i], "deadlock"), "a deadlock in %s's log", names[i]);
    long long total[NCOUNTED] = {0}, failed_all = 0;
    for (int i = 0; i < 5; i++) {
        long long failed, mine = handled_in_log(order[i], NULL, &failed);
        failed_all += failed;
        fprintf(stderr, "chaos_crash k2: %s handled %lld messages (%lld failed), answered %d\n",
                names[i], mine, failed, i >= 2 ? load.server_ok[i - 2] : 0);
        if (i < 2)
            require(mine > 0, "%s handled no message", names[i]);
        for (int s = 0; s < NCOUNTED; s++)
            total[s] += handled_in_log(order[i], counted[s], &failed);
    }
    require(failed_all == 0, "%lld messages failed in the services (redelivered)", failed_all);
    for (int s = 0; s < NCOUNTED; s++)
        require(total[s] == want[s], "%s handled %lld messages in all, %lld were published",
                counted[s], total[s], want[s]);
}

START_TEST(gateways_and_workers_share_the_load_once)
{
    struct proc *s1 = &procs[0], *s2 = &procs[1], *s3 = &procs[2], *w1 = &procs[3], *w2 = &procs[4];
    long long base[NCOUNTED], want[NCOUNTED];
    baseline(base);
    load_init("k2", 30);
    proc_serve(s1, "all", k2_serve_extra);
    proc_worker(w1, k2_worker_args);
    proc_worker(w2, k2_worker_args);
    proc_serve(s2, "all", k2_serve_extra);
    wait_worker_up(w1);
    wait_worker_up(w2);
    struct reply r;
    call(s1, "PUT", "/queues/k2-q", "{\"visibility_timeout\": 30}", &r);
    json_decref(r.json);
    require(r.status == 201, "PUT /queues/k2-q: %ld", r.status);

    load.servers[0] = s1;
    load.servers[1] = s2;
    run_phase(2, 4 * NOPS);
    proc_serve(s3, "all", k2_serve_extra);
    load.servers[2] = s3;
    run_phase(3, 4 * NOPS);
    print_outcomes("after the load");
    for (int k = 0; k < NOPS; k++)
        require(load.failed[k] == 0, "%d of %d %s requests failed", load.failed[k],
                load.failed[k] + load.ok[k], op_names[k]);
    for (int i = 0; i < 3; i++)
        require(load.server_ok[i] > 0, "serve %d answered no request", i + 1);

    record_ids();
    check_stored();
    wait_outcomes();
    check_once();
    drain(s3);
    check_deliveries(true);
    wait_services_idle();
    check_no_lock_waits();
    expected_handled(base, want);
    check_shares(want);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("chaos_crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, kill_9_mid_load_keeps_every_2xx);
    tcase_add_test(tc, gateways_and_workers_share_the_load_once);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
