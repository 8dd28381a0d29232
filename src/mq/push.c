/* The push worker; see include/rydes/mq_push.h. Up to PUSH_BATCH deliveries are in flight at
 * once on a curl multi handle, at most PUSH_PER_ENDPOINT of them to one endpoint; each
 * outcome is written back as soon as its attempt ends, and the freed slot is filled by the
 * next claim, so a slow or failing endpoint holds a few slots, not the deliveries to every
 * other endpoint. One event loop drives both: the worker's statements (one at a time, sent
 * without waiting) and the transfers are polled together, so a slow database never freezes
 * the POSTs in flight, and the worker reconnects only when none is. */
#include "rydes/mq_push.h"

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/ids.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/worker.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUSH_BATCH              16     /* deliveries in flight at once */
#define PUSH_PER_ENDPOINT       "4"    /* ...to one endpoint (scheme, host and port) */
#define PUSH_LEASE_S            "120"  /* a claimed delivery is due again after this... */
#define PUSH_TIMEOUT_MS         15000L /* ...which outlasts the longest attempt */
#define PUSH_CONNECT_TIMEOUT_MS 5000L
#define PUSH_IDLE_MS            250 /* how often an idle worker looks for due deliveries */
#define PUSH_RETRY_CONNECT_MS   1000
#define PUSH_POLL_MS            200     /* the multi loop looks at worker_stopping this often */
#define PUSH_FINISH_US          5000000 /* write-backs at shutdown start within this */
#define PUSH_MAX_ANSWER_BYTES   65536   /* of an answer's body read; then the transfer ends */

/* The endpoint of a subscription's URL: scheme://host:port, lower-cased, the port spelt out
 * (sql/058; URLs carry no credentials: mq_input refuses them; no URL, the subscription's id). */
#define ENDPOINT_SQL "coalesce(push_endpoint(s.url), 'subscription ' || s.id)"

/* $1: how many (the free slots); $2, $3: the subscriptions with deliveries in flight here and
 * how many each. An endpoint (ENDPOINT_SQL) takes at most PUSH_PER_ENDPOINT slots, however many
 * subscriptions lead there: each subscription offers its earliest due deliveries, up to that
 * many (an index probe per subscription: a backlog is never scanned), each endpoint keeps its
 * earliest offers up to its share (the endpoint is worked out for offers and deliveries in
 * flight only: nothing when nothing is due), and the earliest of those (four times as many as
 * wanted, for those a concurrent claim holds) are then locked, skipping locked ones, until $1
 * are. Locking while offering would lock every subscription's share, hundreds of rows written to
 * take a few. */
static const char claim_sql[] =
    "WITH o AS (SELECT x.id, x.next_attempt_at, " ENDPOINT_SQL " AS ep FROM subscriptions s "
    "CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at FROM push_deliveries d "
    "WHERE d.subscription_id = s.id AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at "
    "LIMIT " PUSH_PER_ENDPOINT ") x), "
    "f AS (SELECT " ENDPOINT_SQL " AS ep, sum(u.n)::int AS n "
    "FROM unnest($2::int[], $3::int[]) AS u(sub, n) JOIN subscriptions s ON s.id = u.sub "
    "GROUP BY 1), "
    "r AS (SELECT o.id FROM (SELECT o.*, row_number() OVER (PARTITION BY o.ep "
    "ORDER BY o.next_attempt_at, o.id) AS k FROM o) o LEFT JOIN f ON f.ep = o.ep "
    "WHERE o.k <= " PUSH_PER_ENDPOINT " - coalesce(f.n, 0) "
    "ORDER BY o.next_attempt_at LIMIT $1::int * 4), "
    "c AS (SELECT d.id FROM push_deliveries d WHERE d.id IN (SELECT r.id FROM r) "
    "AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at LIMIT $1::int "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE push_deliveries d SET attempts = d.attempts + 1, "
    "next_attempt_at = now() + interval '" PUSH_LEASE_S " seconds' "
    "FROM c, subscriptions s, topics t, payloads p "
    "WHERE d.id = c.id AND s.id = d.subscription_id AND t.id = s.topic_id AND p.id = d.payload_id "
    "RETURNING d.id, d.attempts, s.max_attempts, s.min_delay_seconds, s.max_delay_seconds, s.url, "
    "d.message_id, t.name, d.raw, d.body_json, p.body, d.subscription_id";

/* Where a slot is: free, its POST in flight, its outcome waiting to be written back, or
 * being written back (the statement in flight). */
enum job_state { JOB_FREE, JOB_RUNNING, JOB_DONE, JOB_RECORDING };

/* What the write-back of a job says. OUT_NO_URL: its subscription has no URL any more (it became
 * a queue's after the publish chose it): into that queue (sql/055). */
enum outcome { OUT_ABANDONED, OUT_DELIVERED, OUT_RETRY, OUT_GIVE_UP, OUT_NO_URL };

/* One claimed delivery: columns of the claim's row (owned copies), and the attempt's state. */
struct job {
    enum job_state state;
    enum outcome outcome; /* set when its write-back is sent */
    int subscription;
    char *id, *url, *message_id, *topic, *body;
    int attempts, max_attempts, min_delay, max_delay;
    bool raw, body_json;
    CURL *easy;
    struct curl_slist *headers;
    CURLcode rc;
    long status;
    size_t answer_bytes; /* of the answer's body, read and thrown away */
    char error[CURL_ERROR_SIZE];
};

/* The one statement the worker may have in flight on its connection. */
enum pending { PG_NONE, PG_CLAIM, PG_RECORD };

struct mq_push {
    char *conninfo;
    int connect_timeout_s;
    PGconn *pg;
    int64_t connect_at_us; /* no reconnect before this (after a failed one) */
    enum pending pending;
    int recording;       /* the job whose write-back is in flight (PG_RECORD) */
    PGresult *result;    /* the in-flight statement's result, until the statement has ended */
    int64_t claim_at_us; /* the next claim is due then */
    _Atomic bool kicked; /* deliveries were written: claim at once */
    CURLM *multi;
    struct worker *worker;
    struct mq_push_counters counters;
    uint64_t rng;
    struct job jobs[PUSH_BATCH];
    int active; /* jobs not free */
};

/* Throws the answer's body away, but reads no more than PUSH_MAX_ANSWER_BYTES of it: an
 * endpoint streaming a large or endless body would hold a slot until the timeout. Ending the
 * transfer early keeps its status: a 2xx is a delivery (outcome_of). */
static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    struct job *j = arg;
    j->answer_bytes += size * n;
    return j->answer_bytes > PUSH_MAX_ANSWER_BYTES ? 0 : size * n;
}

static void job_read(struct job *j, PGresult *r, int row)
{
    memset(j, 0, sizeof *j);
    j->state = JOB_RUNNING;
    j->id = xstrdup(PQgetvalue(r, row, 0));
    j->attempts = atoi(PQgetvalue(r, row, 1));
    j->max_attempts = atoi(PQgetvalue(r, row, 2));
    j->min_delay = atoi(PQgetvalue(r, row, 3));
    j->max_delay = atoi(PQgetvalue(r, row, 4));
    j->url = PQgetisnull(r, row, 5) ? NULL : xstrdup(PQgetvalue(r, row, 5));
    j->message_id = xstrdup(PQgetvalue(r, row, 6));
    j->topic = xstrdup(PQgetvalue(r, row, 7));
    j->raw = PQgetvalue(r, row, 8)[0] == 't';
    j->body_json = PQgetvalue(r, row, 9)[0] == 't';
    j->body = xstrdup(PQgetvalue(r, row, 10));
    j->subscription = atoi(PQgetvalue(r, row, 11));
}

static struct curl_slist *job_headers(const struct job *j)
{
    char line[400];
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, j->raw && !j->body_json ? "Content-Type: text/plain; charset=utf-8"
                                                     : "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    h = curl_slist_append(h, "User-Agent: rydes-push/" RYDES_VERSION);
    h = curl_slist_append(h, "x-rydes-message-type: Notification");
    snprintf(line, sizeof line, "x-rydes-message-id: %s", j->message_id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "x-rydes-topic: %s", j->topic);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "x-rydes-delivery-attempt: %d", j->attempts);
    h = curl_slist_append(h, line);
    if (!h)
        rydes_oom();
    return h;
}

/* Prepares the POST of j; false when it is not to be tried: the subscription has no URL any
 * more, or the delivery is claimed a second time past its last attempt. Once past it is the
 * last attempt's again (its process died during the POST: at least once means it is made), but
 * a second time means its give-up failed after a POST, and the next would come after every
 * lease, for ever. */
static bool job_prepare(struct job *j)
{
    if (!j->url || j->attempts > j->max_attempts + 1) {
        j->state = JOB_DONE;
        j->rc = CURLE_ABORTED_BY_CALLBACK;
        snprintf(j->error, sizeof j->error, "%s",
                 !j->url ? "the subscription no longer has a URL"
                         : "all attempts were made: giving up");
        return false;
    }
    j->easy = curl_easy_init();
    if (!j->easy)
        rydes_oom();
    j->headers = job_headers(j);
    curl_easy_setopt(j->easy, CURLOPT_URL, j->url);
    curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, PUSH_TIMEOUT_MS);
    curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, PUSH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(j->body));
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->error);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    return true;
}

static void job_cleanup(CURLM *multi, struct job *j)
{
    if (j->easy) {
        curl_multi_remove_handle(multi, j->easy);
        curl_easy_cleanup(j->easy);
    }
    curl_slist_free_all(j->headers);
    free(j->id);
    free(j->url);
    free(j->message_id);
    free(j->topic);
    free(j->body);
    memset(j, 0, sizeof *j); /* the slot is free again */
}

/* Collects finished transfers into their jobs. */
static void collect(CURLM *multi)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct job *j = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
        j->state = JOB_DONE;
        j->rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &j->status);
    }
}

/* The backoff before attempt number attempts + 1: min_delay doubled per attempt made, capped
 * at max_delay, with "equal jitter" (a uniform half of it added to the other half). */
static double backoff_seconds(struct mq_push *p, const struct job *j)
{
    double d = j->min_delay;
    for (int i = 1; i < j->attempts && d < j->max_delay; i++)
        d *= 2;
    if (d > j->max_delay)
        d = j->max_delay;
    p->rng ^= p->rng << 13; /* xorshift64: jitter needs spread, not secrecy */
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return d / 2 + d / 2 * (double)(p->rng >> 11) / (double)(1ULL << 53);
}

static void outcome_error(const struct job *j, char *out, size_t n)
{
    if (j->rc != CURLE_OK && !(j->rc == CURLE_WRITE_ERROR && j->status > 0)) /* discard's end */
        snprintf(out, n, "%s", j->error[0] ? j->error : curl_easy_strerror(j->rc));
    else
        snprintf(out, n, "HTTP status %ld", j->status);
}

/* ---- the connection: one statement in flight at a time, never waited on while POSTs run ---- */

/* Sends sql on the worker's connection without waiting for it; false when it could not be
 * sent (the connection is dropped then, and made again later). */
static bool send_statement(struct mq_push *p, enum pending kind, const char *sql, int n,
                           const char *const *v)
{
    if (!PQsendQueryParams(p->pg, sql, n, NULL, v, NULL, NULL, 0)) {
        log_warn("push: %s", PQerrorMessage(p->pg));
        PQfinish(p->pg);
        p->pg = NULL;
        return false;
    }
    p->pending = kind;
    return true;
}

/* Makes sure there is a connection, but never blocks POSTs in flight to make one: with a
 * transfer running it only says whether there is one. */
static bool connected(struct mq_push *p, int64_t now)
{
    if (p->pg && PQstatus(p->pg) == CONNECTION_OK)
        return true;
    for (int k = 0; k < PUSH_BATCH; k++)
        if (p->jobs[k].state == JOB_RUNNING)
            return false;
    if (now < p->connect_at_us)
        return false;
    char err[256];
    if (db_reconnect(&p->pg, p->conninfo, p->connect_timeout_s,
                     "-c statement_timeout=10000 " DB_PLANNER_OPTIONS, err, sizeof err)) {
        PQsetnonblocking(p->pg, 1); /* sends never wait either (drive polls for writing) */
        return true;
    }
    p->connect_at_us = now + PUSH_RETRY_CONNECT_MS * 1000LL;
    return false;
}

/* ---- writing outcomes back ------------------------------------------------------------------ */

static enum outcome outcome_of(const struct job *j)
{
    if (j->state == JOB_RUNNING) /* abandoned at shutdown */
        return OUT_ABANDONED;
    if (j->status >= 200 && j->status <= 299) /* also when its body was then cut short */
        return OUT_DELIVERED;
    if (!j->url)
        return OUT_NO_URL;
    return j->attempts < j->max_attempts ? OUT_RETRY : OUT_GIVE_UP;
}

/* Sends the write-back of job k. A retry, a give-up or an abandon names the attempt it is
 * about: after the lease ran out and another claim took the delivery, it changes nothing
 * (sql/021). A success deletes the delivery whoever holds it. */
static bool record_send(struct mq_push *p, int k)
{
    struct job *j = &p->jobs[k];
    char attempt[16], delay[32], error[CURL_ERROR_SIZE + 32];
    snprintf(attempt, sizeof attempt, "%d", j->attempts);
    outcome_error(j, error, sizeof error);
    j->outcome = outcome_of(j);
    p->recording = k;
    switch (j->outcome) {
    case OUT_ABANDONED: { /* due again at once, the attempt not counted */
        const char *v[] = {j->id, attempt};
        return send_statement(p, PG_RECORD,
                              "UPDATE push_deliveries SET attempts = attempts - 1, "
                              "next_attempt_at = now() WHERE id = $1 AND attempts = $2",
                              2, v);
    }
    case OUT_DELIVERED: {
        const char *v[] = {j->id};
        return send_statement(p, PG_RECORD, "DELETE FROM push_deliveries WHERE id = $1", 1, v);
    }
    case OUT_RETRY: {
        snprintf(delay, sizeof delay, "%.3f", backoff_seconds(p, j));
        const char *v[] = {j->id, delay, error, attempt};
        return send_statement(p, PG_RECORD,
                              "UPDATE push_deliveries SET next_attempt_at = now() + "
                              "make_interval(secs => $2::float8), last_error = $3 "
                              "WHERE id = $1 AND attempts = $4",
                              4, v);
    }
    case OUT_NO_URL: {
        const char *v[] = {j->id, attempt, error};
        return send_statement(p, PG_RECORD, "SELECT mq_push_without_url($1, $2::int, $3)", 3, v);
    }
    case OUT_GIVE_UP:
    default: {
        const char *v[] = {j->id, attempt, error};
        return send_statement(p, PG_RECORD, "SELECT mq_push_exhausted($1, $2::int, $3)", 3, v);
    }
    }
}

/* What mq_push_without_url did with j (how: its answer): false when the delivery is not given
 * up but went into its subscription's queue (counted and logged here) or is POSTed again. */
static bool no_url_gave_up(struct mq_push *p, const struct job *j, const char *how)
{
    if (strcmp(how, "retried") == 0) /* a URL again: POSTed at once, no attempt counted */
        return false;
    if (strcmp(how, "queued") == 0) {
        atomic_fetch_add(&p->counters.queued, 1);
        log_info("push: message %s: its subscription became a queue's; delivered into the queue",
                 j->message_id);
        return false;
    }
    return true;
}

/* Counts what the write-back of j did (r: its result, NULL when the statement failed before it
 * had one). A 2xx is a delivered attempt also when its DELETE failed (the delivery is POSTed
 * again once its lease runs out). */
static void record_result(struct mq_push *p, const struct job *j, PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (j->outcome == OUT_DELIVERED)
        atomic_fetch_add(&p->counters.delivered, 1);
    if (!ok) { /* nothing changed: the delivery comes back when its lease runs out */
        log_warn("push: %s", r ? PQresultErrorMessage(r) : "the connection was lost");
        return;
    }
    if (j->outcome == OUT_RETRY && atoi(PQcmdTuples(r)) > 0) /* not when another claim has it */
        atomic_fetch_add(&p->counters.retried, 1);
    bool settled = j->outcome == OUT_GIVE_UP || j->outcome == OUT_NO_URL;
    if (!settled || PQgetisnull(r, 0, 0)) /* null: another claim has it now */
        return;
    const char *how = PQgetvalue(r, 0, 0);
    if (j->outcome == OUT_NO_URL && !no_url_gave_up(p, j, how))
        return;
    bool moved = j->outcome == OUT_NO_URL ? strcmp(how, "dead-lettered") == 0 : how[0] == 't';
    atomic_fetch_add(moved ? &p->counters.dead_lettered : &p->counters.failed, 1);
    char error[CURL_ERROR_SIZE + 32];
    outcome_error(j, error, sizeof error);
    /* the URL without its query: webhook secrets often travel there */
    const char *url = j->url ? j->url : "?";
    log_warn("push: message %s to %.*s gave up after %d attempts (%s)%s", j->message_id,
             (int)strcspn(url, "?#"), url, j->attempts, error, moved ? "; dead-lettered" : "");
}

/* ---- claiming ------------------------------------------------------------------------------- */

/* The subscriptions of the deliveries in flight and how many each, as two array literals. */
static void in_flight(const struct mq_push *p, char *subs, char *counts, size_t n)
{
    int sub[PUSH_BATCH], count[PUSH_BATCH], k = 0;
    for (int i = 0; i < PUSH_BATCH; i++) {
        if (p->jobs[i].state == JOB_FREE)
            continue;
        int at = 0;
        while (at < k && sub[at] != p->jobs[i].subscription)
            at++;
        if (at == k) {
            sub[k] = p->jobs[i].subscription;
            count[k++] = 0;
        }
        count[at]++;
    }
    size_t s = (size_t)snprintf(subs, n, "{"), c = (size_t)snprintf(counts, n, "{");
    for (int i = 0; i < k; i++) {
        s += (size_t)snprintf(subs + s, n - s, "%s%d", i ? "," : "", sub[i]);
        c += (size_t)snprintf(counts + c, n - c, "%s%d", i ? "," : "", count[i]);
    }
    snprintf(subs + s, n - s, "}");
    snprintf(counts + c, n - c, "}");
}

/* Sends the claim of due deliveries for the free slots. */
static bool claim_send(struct mq_push *p)
{
    char free_slots[16], subs[PUSH_BATCH * 12 + 4], counts[PUSH_BATCH * 12 + 4];
    snprintf(free_slots, sizeof free_slots, "%d", PUSH_BATCH - p->active);
    in_flight(p, subs, counts, sizeof subs);
    const char *v[] = {free_slots, subs, counts};
    return send_statement(p, PG_CLAIM, claim_sql, 3, v);
}

/* Starts the attempts of the deliveries the claim's result r took (NULL: the claim failed). */
static void claim_result(struct mq_push *p, PGresult *r, int64_t now)
{
    int asked = PUSH_BATCH - p->active;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (p->pg && PQstatus(p->pg) == CONNECTION_OK)
            log_warn("push: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(p->pg));
        p->claim_at_us = now + PUSH_RETRY_CONNECT_MS * 1000LL;
        return;
    }
    for (int row = 0, k = 0; row < PQntuples(r); row++) {
        while (p->jobs[k].state != JOB_FREE)
            k++;
        struct job *j = &p->jobs[k];
        job_read(j, r, row);
        p->active++;
        if (job_prepare(j) && curl_multi_add_handle(p->multi, j->easy) != CURLM_OK) {
            j->state = JOB_DONE; /* recorded as a failed attempt, not left in its slot */
            j->rc = CURLE_FAILED_INIT;
            snprintf(j->error, sizeof j->error, "the POST could not be started");
        }
    }
    /* none left due: look again after a pause (or a kick); else as soon as a slot frees */
    p->claim_at_us = PQntuples(r) < asked ? now + PUSH_IDLE_MS * 1000LL : now;
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Sends the next statement, if one is due and the connection is free: an outcome's write-back
 * before a claim, so a slot is freed before it is filled. */
static void start_statement(struct mq_push *p, int64_t now)
{
    if (p->pending != PG_NONE || !connected(p, now))
        return;
    for (int k = 0; k < PUSH_BATCH; k++)
        if (p->jobs[k].state == JOB_DONE) {
            if (record_send(p, k))
                p->jobs[k].state = JOB_RECORDING;
            return;
        }
    bool kicked = atomic_exchange(&p->kicked, false);
    if (p->active < PUSH_BATCH && (kicked || now >= p->claim_at_us))
        claim_send(p);
}

/* The in-flight statement ended with r (NULL: it failed before a result): takes its outcome. */
static void statement_ended(struct mq_push *p, PGresult *r, int64_t now)
{
    enum pending kind = p->pending;
    p->pending = PG_NONE;
    if (kind == PG_CLAIM) {
        claim_result(p, r, now);
        return;
    }
    struct job *j = &p->jobs[p->recording];
    if (!p->pg || PQstatus(p->pg) != CONNECTION_OK) {
        j->state = JOB_DONE; /* lost with the connection: written back again on the next one */
        return;
    }
    record_result(p, j, r);
    job_cleanup(p->multi, j);
    p->active--;
    p->claim_at_us = now; /* a slot is free */
}

/* Reads what has arrived for the in-flight statement without waiting; block: wait for its
 * end (shutdown only). */
static void statement_progress(struct mq_push *p, bool block, int64_t now)
{
    bool broken = PQflush(p->pg) < 0 || (!block && !PQconsumeInput(p->pg));
    while (!broken && (block || !PQisBusy(p->pg))) {
        PGresult *r = PQgetResult(p->pg);
        if (!r) { /* the statement has ended */
            statement_ended(p, p->result, now);
            PQclear(p->result);
            p->result = NULL;
            return;
        }
        if (p->result) /* only the first result counts (there is one) */
            PQclear(r);
        else
            p->result = r;
    }
    if (!broken)
        return; /* more is on its way */
    log_warn("push: %s", PQerrorMessage(p->pg));
    PQfinish(p->pg);
    p->pg = NULL;
    PQclear(p->result);
    p->result = NULL;
    statement_ended(p, NULL, now);
}

/* Waits up to timeout_ms for the transfers or the in-flight statement to move, and moves them:
 * the transfers keep going while a statement waits on a slow database. */
static void drive(struct mq_push *p, int timeout_ms)
{
    struct curl_waitfd fd = {.fd = -1};
    if (p->pending != PG_NONE) {
        int unsent = PQflush(p->pg); /* -1 is seen again by statement_progress */
        fd.fd = PQsocket(p->pg);
        fd.events = (short)(CURL_WAIT_POLLIN | (unsent == 1 ? CURL_WAIT_POLLOUT : 0));
    }
    int running;
    curl_multi_poll(p->multi, fd.fd >= 0 ? &fd : NULL, fd.fd >= 0 ? 1 : 0, timeout_ms, NULL);
    curl_multi_perform(p->multi, &running);
    collect(p->multi);
    if (p->pending != PG_NONE)
        statement_progress(p, false, clock_mono_us());
}

static int push_step(struct worker *w, void *arg)
{
    (void)w;
    struct mq_push *p = arg;
    int64_t now = clock_mono_us();
    start_statement(p, now);
    if (p->pending == PG_NONE && p->active == 0) { /* idle: sleep until a claim is due */
        int64_t due = p->pg ? p->claim_at_us : p->connect_at_us;
        return due > now ? (int)((due - now + 999) / 1000) : 0;
    }
    bool may_claim = p->pending == PG_NONE && p->active < PUSH_BATCH && p->pg &&
                     PQstatus(p->pg) == CONNECTION_OK;
    int64_t due = may_claim ? p->claim_at_us : INT64_MAX;
    int timeout_ms = PUSH_POLL_MS;
    if (due - now < PUSH_POLL_MS * 1000LL)
        timeout_ms = due > now ? (int)((due - now + 999) / 1000) : 0;
    drive(p, timeout_ms);
    return 0; /* attempts or a statement in flight: keep driving */
}

/* At shutdown: the statement in flight is waited for, attempts in flight are abandoned (due
 * again at once, the attempt not counted), and ended ones are written back, for at most
 * PUSH_FINISH_US (and the statement then in flight: its timeout bounds it). */
static void finish(struct mq_push *p)
{
    int running;
    curl_multi_perform(p->multi, &running); /* answers already in are outcomes, not abandoned */
    collect(p->multi);
    if (p->pending != PG_NONE)
        statement_progress(p, true, clock_mono_us());
    int64_t until = clock_mono_us() + PUSH_FINISH_US;
    for (int k = 0; k < PUSH_BATCH; k++) {
        if (p->jobs[k].state == JOB_FREE)
            continue;
        if (clock_mono_us() < until && p->pg && PQstatus(p->pg) == CONNECTION_OK &&
            record_send(p, k))
            statement_progress(p, true, clock_mono_us()); /* frees the slot once written */
        if (p->jobs[k].state != JOB_FREE) /* not written back: its lease brings it back */
            job_cleanup(p->multi, &p->jobs[k]);
    }
    p->active = 0;
}

struct mq_push *mq_push_start(const char *conninfo, int connect_timeout_s)
{
    struct mq_push *p = xcalloc(1, sizeof *p);
    p->conninfo = xstrdup(conninfo);
    p->connect_timeout_s = connect_timeout_s;
    ids_random(&p->rng, sizeof p->rng);
    p->rng |= 1;
    p->multi = curl_multi_init();
    if (!p->multi)
        rydes_oom();
    p->worker = worker_start(push_step, p);
    return p;
}

void mq_push_request_stop(struct mq_push *p)
{
    if (!p)
        return;
    worker_request_stop(p->worker);
    curl_multi_wakeup(p->multi); /* ends a wait in drive */
}

void mq_push_stop(struct mq_push *p)
{
    if (!p)
        return;
    worker_stop(p->worker);
    finish(p);
    curl_multi_cleanup(p->multi);
    if (p->pg)
        PQfinish(p->pg);
    free(p->conninfo);
    free(p);
}

const struct mq_push_counters *mq_push_counters(const struct mq_push *p)
{
    return &p->counters;
}

void mq_push_kick(struct mq_push *p)
{
    if (!p)
        return;
    atomic_store(&p->kicked, true);
    worker_wake(p->worker);
    curl_multi_wakeup(p->multi); /* ends a wait in drive */
}
