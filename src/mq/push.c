/* The push worker; see include/rydes/mq_push.h. Up to PUSH_BATCH deliveries are in flight at
 * once on a curl multi handle, at most PUSH_PER_SUBSCRIPTION of them to one subscription; each
 * outcome is written back as soon as its attempt ends, and the freed slot is filled by the
 * next claim, so a slow or failing endpoint holds a few slots, not the deliveries to every
 * other endpoint. */
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
#define PUSH_PER_SUBSCRIPTION   "4"    /* ...to one subscription (its endpoint) */
#define PUSH_LEASE_S            "120"  /* a claimed delivery is due again after this... */
#define PUSH_TIMEOUT_MS         15000L /* ...which outlasts the longest attempt */
#define PUSH_CONNECT_TIMEOUT_MS 5000L
#define PUSH_IDLE_MS            250 /* how often an idle worker looks for due deliveries */
#define PUSH_RETRY_CONNECT_MS   1000
#define PUSH_POLL_MS            200 /* the multi loop looks at worker_stopping this often */

/* $1: how many (the free slots); $2, $3: the subscriptions with deliveries in flight here and
 * how many each. Each subscription offers its earliest due deliveries up to its share (an
 * index probe per subscription: a backlog is never scanned), and the earliest of those are
 * taken. */
static const char claim_sql[] =
    "WITH f AS (SELECT * FROM unnest($2::int[], $3::int[]) AS f(sub, n)), "
    "c AS (SELECT x.id FROM subscriptions s LEFT JOIN f ON f.sub = s.id CROSS JOIN LATERAL "
    "(SELECT d.id, d.next_attempt_at FROM push_deliveries d WHERE d.subscription_id = s.id "
    "AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at "
    "LIMIT greatest(" PUSH_PER_SUBSCRIPTION " - coalesce(f.n, 0), 0) FOR UPDATE SKIP LOCKED) x "
    "ORDER BY x.next_attempt_at LIMIT $1::int) "
    "UPDATE push_deliveries d SET attempts = d.attempts + 1, "
    "next_attempt_at = now() + interval '" PUSH_LEASE_S " seconds' "
    "FROM c, subscriptions s, topics t, payloads p "
    "WHERE d.id = c.id AND s.id = d.subscription_id AND t.id = s.topic_id AND p.id = d.payload_id "
    "RETURNING d.id, d.attempts, s.max_attempts, s.min_delay_seconds, s.max_delay_seconds, s.url, "
    "d.message_id, t.name, d.raw, d.body_json, p.body, d.subscription_id";

/* One claimed delivery: columns of the claim's row (owned copies), and the attempt's state. */
struct job {
    bool in_use;
    int subscription;
    char *id, *url, *message_id, *topic, *body;
    int attempts, max_attempts, min_delay, max_delay;
    bool raw, body_json;
    CURL *easy;
    struct curl_slist *headers;
    bool done;
    CURLcode rc;
    long status;
    char error[CURL_ERROR_SIZE];
};

struct mq_push {
    char *conninfo;
    int connect_timeout_s;
    PGconn *pg;
    CURLM *multi;
    struct worker *worker;
    struct mq_push_counters counters;
    uint64_t rng;
    struct job jobs[PUSH_BATCH];
    int active; /* jobs in use */
};

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void job_read(struct job *j, PGresult *r, int row)
{
    memset(j, 0, sizeof *j);
    j->in_use = true;
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

/* Prepares the POST of j; false when it cannot even be tried (no URL any more). */
static bool job_prepare(struct job *j)
{
    if (!j->url) {
        j->done = true;
        j->rc = CURLE_URL_MALFORMAT;
        snprintf(j->error, sizeof j->error, "the subscription no longer has a URL");
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
        j->done = true;
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

/* Runs sql; returns the rows it changed (0 on an error, which is logged). */
static int exec_params(struct mq_push *p, const char *sql, int n, const char *const *v)
{
    PGresult *r = PQexecParams(p->pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        log_warn("push: %s", PQresultErrorMessage(r));
    int changed = atoi(PQcmdTuples(r));
    PQclear(r);
    return changed;
}

static void outcome_error(const struct job *j, char *out, size_t n)
{
    if (j->rc != CURLE_OK)
        snprintf(out, n, "%s", j->error[0] ? j->error : curl_easy_strerror(j->rc));
    else
        snprintf(out, n, "HTTP status %ld", j->status);
}

/* Writes the outcome of one job back. A retry, a give-up or an abandon names the attempt it is
 * about: after the lease ran out and another claim took the delivery, it changes nothing
 * (sql/021). A success deletes the delivery whoever holds it. */
static void record(struct mq_push *p, struct job *j)
{
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", j->attempts);
    if (!j->done) { /* abandoned at shutdown: due again, the attempt not counted */
        const char *v[] = {j->id, attempt};
        exec_params(p,
                    "UPDATE push_deliveries SET attempts = attempts - 1, next_attempt_at = now() "
                    "WHERE id = $1 AND attempts = $2",
                    2, v);
        return;
    }
    /* a 2xx is the receiver's acceptance, also when its body was then cut short */
    if (j->status >= 200 && j->status <= 299) {
        const char *v[] = {j->id};
        exec_params(p, "DELETE FROM push_deliveries WHERE id = $1", 1, v);
        atomic_fetch_add(&p->counters.delivered, 1);
        return;
    }
    char error[CURL_ERROR_SIZE + 32], delay[32];
    outcome_error(j, error, sizeof error);
    if (j->attempts < j->max_attempts && j->url) {
        snprintf(delay, sizeof delay, "%.3f", backoff_seconds(p, j));
        const char *v[] = {j->id, delay, error, attempt};
        if (exec_params(p,
                        "UPDATE push_deliveries SET next_attempt_at = now() + "
                        "make_interval(secs => $2::float8), last_error = $3 "
                        "WHERE id = $1 AND attempts = $4",
                        4, v)) /* not when another claim has it now */
            atomic_fetch_add(&p->counters.retried, 1);
        return;
    }
    const char *v[] = {j->id, attempt, error};
    PGresult *r =
        PQexecParams(p->pg, "SELECT mq_push_exhausted($1, $2::int, $3)", 3, NULL, v, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) /* nothing gave up: the delivery comes back when its lease runs out */
        log_warn("push: %s", PQresultErrorMessage(r));
    bool theirs = ok && PQgetisnull(r, 0, 0); /* another claim has it now */
    bool moved = ok && !theirs && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (theirs || !ok)
        return;
    atomic_fetch_add(moved ? &p->counters.dead_lettered : &p->counters.failed, 1);
    /* the URL without its query: webhook secrets often travel there */
    const char *url = j->url ? j->url : "?";
    log_warn("push: message %s to %.*s gave up after %d attempts (%s)%s", j->message_id,
             (int)strcspn(url, "?#"), url, j->attempts, error, moved ? "; dead-lettered" : "");
}

/* The subscriptions of the deliveries in flight and how many each, as two array literals. */
static void in_flight(const struct mq_push *p, char *subs, char *counts, size_t n)
{
    int sub[PUSH_BATCH], count[PUSH_BATCH], k = 0;
    for (int i = 0; i < PUSH_BATCH; i++) {
        if (!p->jobs[i].in_use)
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

/* Claims due deliveries into the free slots and starts their attempts; false when the claim
 * failed. */
static bool claim_more(struct mq_push *p)
{
    char free_slots[16], subs[PUSH_BATCH * 12 + 4], counts[PUSH_BATCH * 12 + 4];
    snprintf(free_slots, sizeof free_slots, "%d", PUSH_BATCH - p->active);
    in_flight(p, subs, counts, sizeof subs);
    const char *v[] = {free_slots, subs, counts};
    PGresult *r = PQexecParams(p->pg, claim_sql, 3, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (PQstatus(p->pg) == CONNECTION_OK)
            log_warn("push: %s", PQresultErrorMessage(r));
        PQclear(r);
        return false;
    }
    for (int row = 0, k = 0; row < PQntuples(r); row++) {
        while (p->jobs[k].in_use)
            k++;
        job_read(&p->jobs[k], r, row);
        p->active++;
        if (job_prepare(&p->jobs[k]) &&
            curl_multi_add_handle(p->multi, p->jobs[k].easy) != CURLM_OK) {
            p->jobs[k].done = true; /* recorded as a failed attempt, not left in its slot */
            p->jobs[k].rc = CURLE_FAILED_INIT;
            snprintf(p->jobs[k].error, sizeof p->jobs[k].error, "the POST could not be started");
        }
    }
    PQclear(r);
    return true;
}

/* Moves the transfers on for up to PUSH_POLL_MS and writes back every attempt that ended. */
static void drive(struct mq_push *p)
{
    int running;
    curl_multi_perform(p->multi, &running);
    collect(p->multi);
    bool any_done = false;
    for (int k = 0; k < PUSH_BATCH; k++)
        any_done |= p->jobs[k].in_use && p->jobs[k].done;
    if (!any_done && running) {
        curl_multi_poll(p->multi, NULL, 0, PUSH_POLL_MS, NULL);
        curl_multi_perform(p->multi, &running);
        collect(p->multi);
    }
    for (int k = 0; k < PUSH_BATCH; k++)
        if (p->jobs[k].in_use && p->jobs[k].done) {
            record(p, &p->jobs[k]);
            job_cleanup(p->multi, &p->jobs[k]);
            p->active--;
        }
}

static int push_step(struct worker *w, void *arg)
{
    (void)w;
    struct mq_push *p = arg;
    char err[256];
    if (!db_reconnect(&p->pg, p->conninfo, p->connect_timeout_s,
                      "-c statement_timeout=10000 " DB_PLANNER_OPTIONS, err, sizeof err))
        return PUSH_RETRY_CONNECT_MS;
    if (p->active < PUSH_BATCH && !claim_more(p) && p->active == 0)
        return PUSH_RETRY_CONNECT_MS;
    if (p->active == 0)
        return PUSH_IDLE_MS;
    drive(p);
    return 0; /* attempts in flight, or slots freed: keep driving and claiming */
}

/* Attempts still in flight when the worker stops are abandoned: due again at once, the attempt
 * not counted. */
static void abandon_in_flight(struct mq_push *p)
{
    for (int k = 0; k < PUSH_BATCH; k++)
        if (p->jobs[k].in_use) {
            p->jobs[k].done = false;
            if (p->pg && PQstatus(p->pg) == CONNECTION_OK)
                record(p, &p->jobs[k]);
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

void mq_push_stop(struct mq_push *p)
{
    if (!p)
        return;
    worker_stop(p->worker);
    abandon_in_flight(p);
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
    if (p)
        worker_wake(p->worker);
}
