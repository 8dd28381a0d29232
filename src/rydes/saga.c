/* The fare-collection saga; see include/rydes/saga.h. The step table drives everything: the
 * executor runs steps[fare.step] forward, or, while compensating, walks back over the done steps
 * calling their compensations, then finishes with the complete and publish steps. */
#include "rydes/saga.h"

#include "rydes/ids.h"
#include "rydes/jsontext.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP_BUDGET         5 /* attempts of a step before a transient error counts as failure */
#define COMPENSATION_BUDGET 6 /* attempts of a compensation before an operator must step in */
#define BACKOFF_BASE_MS     200
#define BACKOFF_MAX_MS      30000

bool (*saga_crash_hook)(const char *fare_id, const char *step);

struct saga_counters saga_counters;

/* What the executor knows of a claimed fare. */
struct fare {
    char id[SAGA_FARE_ID_MAX + 1];
    char lease[IDS_UUID_LEN]; /* this run's claim: every write checks it is still ours */
    int lease_seconds;
    char *customer; /* as stored, whole (a copy cut short would pay for someone else); owned */
    double amount;
    bool compensating;
    int step;
    char outcome[16];
    char preauth[256], charge[256], credit[256]; /* a gateway's references, as given */
    char key[SAGA_FARE_ID_MAX + 64];             /* the idempotency key of the current call */
    char undone[SAGA_FARE_ID_MAX + 64]; /* while compensating: the key of the call undone */
    bool unknown_before; /* the current step's outcome was unknown before this attempt */
};

/* STEP_TRANSIENT: no answer, and the call may have reached the gateway (a timeout, a 5xx): its
 * outcome is unknown. STEP_UNSENT: no answer because the call never left (connection refused).
 * STEP_REFUSED: a refusal not retried, but one that may not come from the gateway's handling of
 * the call (pay_result.foreign): it settles nothing about an earlier attempt. */
enum step_result { STEP_OK, STEP_DECLINED, STEP_REFUSED, STEP_TRANSIENT, STEP_UNSENT };

struct step {
    const char *name;
    /* the forward action; NULL for steps that only record (register, complete, publish) */
    enum step_result (*action)(struct db_conn *c, const struct saga_env *env, struct fare *f,
                               char *detail, size_t n);
    enum step_result (*compensate)(struct db_conn *c, const struct saga_env *env, struct fare *f,
                                   char *detail, size_t n);
};

/* Calls the gateway for f; ref receives the reference handed back. */
static enum step_result pay(struct db_conn *c, const struct saga_env *env, struct fare *f,
                            enum pay_op op, const char *reference, char *ref, size_t ref_len,
                            char *detail, size_t n)
{
    /* an undo without the reference of what it undoes (its answer was lost) names its key */
    bool by_key = (op == PAY_VOID || op == PAY_REFUND) && !reference[0];
    struct pay_request rq = {.key = f->key,
                             .fare_id = f->id,
                             .customer = f->customer,
                             .amount = f->amount,
                             .reference = by_key ? NULL : reference,
                             .original_key = by_key ? f->undone : NULL};
    struct pay_result r;
    enum pay_status st = payments_call(env->payments, c, op, &rq, &r);
    if (st == PAY_OK && ref)
        snprintf(ref, ref_len, "%s", r.reference);
    /* done: the reference handed back (none: nothing, unless an undo by key says what it did) */
    snprintf(detail, n, "%s", st == PAY_OK && (r.reference[0] || !by_key) ? r.reference : r.detail);
    if (st == PAY_TRANSIENT)
        return r.unsent ? STEP_UNSENT : STEP_TRANSIENT;
    return st == PAY_OK ? STEP_OK : r.foreign ? STEP_REFUSED : STEP_DECLINED;
}

static enum step_result preauthorize(struct db_conn *c, const struct saga_env *env, struct fare *f,
                                     char *d, size_t n)
{
    return pay(c, env, f, PAY_PREAUTH, NULL, f->preauth, sizeof f->preauth, d, n);
}

static enum step_result void_preauth(struct db_conn *c, const struct saga_env *env, struct fare *f,
                                     char *d, size_t n)
{
    return pay(c, env, f, PAY_VOID, f->preauth, NULL, 0, d, n);
}

static enum step_result charge(struct db_conn *c, const struct saga_env *env, struct fare *f,
                               char *d, size_t n)
{
    return pay(c, env, f, PAY_CHARGE, f->preauth, f->charge, sizeof f->charge, d, n);
}

static enum step_result refund(struct db_conn *c, const struct saga_env *env, struct fare *f,
                               char *d, size_t n)
{
    return pay(c, env, f, PAY_REFUND, f->charge, NULL, 0, d, n);
}

static enum step_result credit(struct db_conn *c, const struct saga_env *env, struct fare *f,
                               char *d, size_t n)
{
    return pay(c, env, f, PAY_CREDIT, NULL, f->credit, sizeof f->credit, d, n);
}

static struct db_stmt q_saga_start =
    DB_STMT("saga_start",
            "SELECT saga_start($1, $2::uuid, $3, $4::numeric, $5, $6, "
            "$7::text[], $8, $9)",
            9);

static struct db_stmt q_saga_start_ride =
    DB_STMT("saga_start_ride",
            "SELECT saga_start($1 || r.id::text, r.id, r.customer, r.fare, NULL, NULL, "
            "$3::text[], $4, $5) FROM rides r WHERE r.id = $2::uuid",
            5);

/* saga_start's steps, as an array literal */
#define STEPS_LITERAL "{register,preauthorize,charge,credit_account,complete,publish}"

/* The request a fare remembers (its runs carry it on): X-Request-Id and traceparent, or NULL. */
static void trace_values(const char **request_id, const char **traceparent)
{
    const struct trace *t = trace_current();
    *request_id = t && t->request_id[0] ? t->request_id : NULL;
    *traceparent = t && t->traceparent[0] ? t->traceparent : NULL;
}

/* The outcome of a saga_start statement: *created from its one row (none: *found false). */
static enum mq_status started(struct db_conn *c, PGresult *r, bool *found, bool *created)
{
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    *found = ok && PQntuples(r) == 1;
    *created = *found && PQgetvalue(r, 0, 0)[0] == 't';
    enum mq_status st = ok ? MQ_OK : db_conn_lost(c) || db_transient(r) ? MQ_UNAVAILABLE : MQ_ERROR;
    if (!ok)
        log_warn("saga_start: %s", PQresultErrorMessage(r));
    PQclear(r);
    return st;
}

/* The workflow. A charged fare is "compensated" by refunding it, whose pre-authorization is
 * voided by the preauthorize step's own compensation next. */
static const struct step steps[] = {
    {"register", NULL, NULL},   {"preauthorize", preauthorize, void_preauth},
    {"charge", charge, refund}, {"credit_account", credit, NULL},
    {"complete", NULL, NULL},   {"publish", NULL, NULL},
};
#define NSTEPS        ((int)(sizeof steps / sizeof *steps))
#define STEP_COMPLETE 4
#define STEP_PUBLISH  5

const char *const saga_step_names[] = {"register", "preauthorize", "charge", "credit_account",
                                       "complete", "publish",      NULL};

enum mq_status saga_start(struct db_conn *c, const char *id, const char *ride_id,
                          const char *customer, double amount, const char *last4, const char *hash,
                          bool *created)
{
    char a[32];
    snprintf(a, sizeof a, "%.2f", amount);
    const char *v[9] = {id, ride_id, customer, a, last4, hash, STEPS_LITERAL};
    trace_values(&v[7], &v[8]);
    bool found;
    return started(c, db_exec(c, &q_saga_start, v, NULL, NULL), &found, created);
}

enum mq_status saga_start_ride(struct db_conn *c, const char *ride_id, bool *found, bool *created)
{
    const char *v[5] = {SAGA_RIDE_PREFIX, ride_id, STEPS_LITERAL};
    trace_values(&v[3], &v[4]);
    return started(c, db_exec(c, &q_saga_start_ride, v, NULL, NULL), found, created);
}

/* Runs an UPDATE of the claimed fare: false when it fails, and also when it touched no row (the
 * lease was lost: another executor took the fare over, so this run must write nothing more). */
static bool exec_one(struct db_conn *c, struct db_stmt *st, const char *const *v)
{
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
    if (!ok && PQresultStatus(r) == PGRES_COMMAND_OK)
        log_warn("saga: lost the lease of a fare to another executor; leaving it to them");
    else if (!ok && !db_conn_lost(c))
        log_warn("saga: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* The forward steps that call a gateway, as the array literal the claim marks them by. */
static void action_positions(char *out, size_t n)
{
    size_t len = (size_t)snprintf(out, n, "{");
    for (int i = 0; i < NSTEPS && len < n; i++)
        if (steps[i].action)
            len += (size_t)snprintf(out + len, n - len, "%s%d", len > 1 ? "," : "", i);
    if (len < n)
        snprintf(out + len, n - len, "}");
}

static struct db_stmt q_saga_claim = DB_STMT(
    "saga_claim",
    "WITH c AS (UPDATE fares f SET next_attempt_at = now() + make_interval(secs => $1::int), "
    "lease = $2::uuid, status = 'running', updated_at = now() WHERE id = (SELECT id "
    "FROM fares WHERE status IN ('pending', 'running') AND next_attempt_at <= now() "
    "ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, customer, amount::text, phase = 'compensating' AS back, step, "
    "coalesce(outcome, '') AS outcome, coalesce(preauth_code, '') AS preauth, "
    "coalesce(charge_id, '') AS charge, coalesce(credit_id, '') AS credit, request_id, "
    "traceparent), "
    "o AS (SELECT s.fare_id, s.position, s.outcome_unknown FROM saga_steps s "
    "WHERE s.fare_id = (SELECT id FROM c WHERE NOT c.back) AND s.position = (SELECT step FROM c) "
    "AND s.position = ANY ($3::int[]) FOR UPDATE), "
    "m AS (UPDATE saga_steps s SET outcome_unknown = true "
    "WHERE s.fare_id = (SELECT fare_id FROM o) AND s.position = (SELECT position FROM o)) "
    "SELECT c.id, c.customer, c.amount, c.back, c.step, c.outcome, c.preauth, c.charge, "
    "c.credit, c.request_id, c.traceparent, coalesce(o.outcome_unknown, false) "
    "FROM c LEFT JOIN o ON true",
    3);

/* Claims the fare due first. When it resumes a forward step that calls a gateway, the same
 * statement marks that step's outcome unknown (as record's mark_next does) and hands back what the
 * mark was: the row is read FOR UPDATE, so a run that lost the lease and committed meanwhile is
 * seen. The saga's statements reach saga_steps by the values of its key (scalar subqueries of the
 * one fare row), never by a join: planned on saga_steps analysed while empty, a join read the
 * whole table for each fare (test_plans). */
static bool claim(struct db_conn *c, const struct saga_env *env, struct fare *f, bool *found)
{
    char secs[16], lease[IDS_UUID_LEN], actions[32];
    snprintf(secs, sizeof secs, "%d", env->lease_seconds);
    ids_uuid(lease);
    action_positions(actions, sizeof actions);
    const char *v[] = {secs, lease, actions};
    PGresult *r = db_exec(c, &q_saga_claim, v, NULL, NULL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    *found = ok && PQntuples(r) == 1;
    if (*found) {
        memset(f, 0, sizeof *f);
        memcpy(f->lease, lease, sizeof f->lease);
        f->lease_seconds = env->lease_seconds;
        snprintf(f->id, sizeof f->id, "%s", PQgetvalue(r, 0, 0));
        f->customer = xstrdup(PQgetvalue(r, 0, 1));
        f->amount = strtod(PQgetvalue(r, 0, 2), NULL);
        f->compensating = PQgetvalue(r, 0, 3)[0] == 't';
        f->step = atoi(PQgetvalue(r, 0, 4));
        snprintf(f->outcome, sizeof f->outcome, "%s", PQgetvalue(r, 0, 5));
        snprintf(f->preauth, sizeof f->preauth, "%s", PQgetvalue(r, 0, 6));
        snprintf(f->charge, sizeof f->charge, "%s", PQgetvalue(r, 0, 7));
        snprintf(f->credit, sizeof f->credit, "%s", PQgetvalue(r, 0, 8));
        /* the run's log lines and publish carry the trace of the request that started it */
        trace_set(PQgetisnull(r, 0, 9) ? NULL : PQgetvalue(r, 0, 9),
                  PQgetisnull(r, 0, 10) ? NULL : PQgetvalue(r, 0, 10));
        f->unknown_before = PQgetvalue(r, 0, 11)[0] == 't';
    } else if (!ok && !db_conn_lost(c)) {
        log_warn("saga: %s", PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok;
}

/* Does the attempt that got r wait out an unreachable gateway, uncounted? While the step's
 * calls have not reached it for less than unreachable_seconds (sql/038). */
static bool waits_out(const struct saga_env *env, enum step_result r, int unreachable_for)
{
    return r == STEP_UNSENT && unreachable_for < env->unreachable_seconds;
}

/* Equal jitter around an exponential backoff for the attempt-th retry, in milliseconds. */
static int backoff_ms(int attempt)
{
    long d = BACKOFF_BASE_MS;
    for (int i = 1; i < attempt && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    unsigned r;
    ids_random(&r, sizeof r);
    return (int)(d / 2 + r % (unsigned)(d / 2 + 1));
}

static struct db_stmt q_saga_record = DB_STMT(
    "saga_record",
    "WITH f AS (UPDATE fares SET step = $2::int, phase = $3, outcome = coalesce($4, outcome), "
    "status = coalesce($5, status), preauth_code = $7, charge_id = $8, credit_id = $9, "
    "needs_operator = needs_operator OR $10::boolean, updated_at = now(), "
    "next_attempt_at = CASE WHEN $6::int < 0 THEN now() + make_interval(secs => $12::int) "
    "ELSE now() + make_interval(secs => $6::int / 1000.0) END "
    "WHERE id = $1 AND lease = $11::uuid RETURNING id), "
    "s AS (UPDATE saga_steps s SET status = $14, detail = $15, "
    "attempts = attempts + (NOT $16::boolean AND NOT $20::boolean)::int, "
    "compensation_attempts = compensation_attempts + ($16::boolean AND NOT $20::boolean)::int, "
    "unreachable_attempts = unreachable_attempts + $20::boolean::int, "
    "unreachable_since = CASE WHEN $21::boolean THEN coalesce(unreachable_since, now()) END, "
    "outcome_unknown = CASE WHEN $16::boolean THEN outcome_unknown ELSE $17::boolean END, "
    "started_at = coalesce(started_at, now()), "
    "finished_at = CASE WHEN $14 IN ('done', 'failed', 'compensated', 'skipped') "
    "THEN now() END WHERE s.fare_id = $1 AND s.position = $13::int AND EXISTS (SELECT FROM f)), "
    "k AS (UPDATE saga_steps s SET status = 'skipped', finished_at = now() "
    "WHERE $18::boolean AND s.fare_id = $1 AND s.position > $13::int "
    "AND s.position < 4 AND s.status = 'pending' AND EXISTS (SELECT FROM f)), "
    "m AS (UPDATE saga_steps s SET outcome_unknown = true "
    "WHERE $19::boolean AND s.fare_id = $1 AND s.position = $2::int AND EXISTS (SELECT FROM f)) "
    "SELECT count(*) FROM f",
    21);

/* Persists a step's outcome and where the fare goes next, in one statement (and, with publish,
 * one transaction with the publish of the last step); when the fare must wait (delay_ms >= 0)
 * it is due again then, which frees it for any executor's claim (the claim looks at the time,
 * not the lease). Nothing is written unless this run still holds the lease. */
struct record {
    const char *status; /* the step's new status */
    bool compensation;  /* the attempt was a compensation */
    const char *detail;
    int next_step;
    const char *phase;       /* forward, compensating, finished */
    const char *outcome;     /* NULL: unchanged */
    const char *fare_status; /* NULL: unchanged */
    int delay_ms;            /* > 0: due again after this; 0: at once; < 0: keep the lease */
    bool operator;
    bool unknown;     /* a forward attempt: the step's outcome is unknown now (see fail_forward) */
    bool skip_rest;   /* the forward run ends here: the steps after it are skipped */
    bool mark_next;   /* next_step calls a gateway at once: its outcome is unknown from now on */
    bool unreachable; /* the attempt never reached the gateway and does not count (sql/038) */
    bool unsent;      /* it never reached the gateway, counted or not: the outage goes on */
};

static bool record(struct db_conn *c, const struct fare *f, int position, const struct record *rec)
{
    char pos[16], next[16], delay[16], lease_secs[16];
    snprintf(pos, sizeof pos, "%d", position);
    snprintf(next, sizeof next, "%d", rec->next_step);
    snprintf(delay, sizeof delay, "%d", rec->delay_ms < 0 ? -1 : rec->delay_ms);
    snprintf(lease_secs, sizeof lease_secs, "%d", f->lease_seconds);
    const char *v[] = {f->id,
                       next,
                       rec->phase,
                       rec->outcome,
                       rec->fare_status,
                       delay,
                       f->preauth[0] ? f->preauth : NULL,
                       f->charge[0] ? f->charge : NULL,
                       f->credit[0] ? f->credit : NULL,
                       rec->operator? "t" : "f",
                       f->lease,
                       lease_secs,
                       pos,
                       rec->status,
                       rec->detail,
                       rec->compensation ? "t" : "f",
                       rec->unknown ? "t" : "f",
                       rec->skip_rest ? "t" : "f",
                       rec->mark_next ? "t" : "f",
                       rec->unreachable ? "t" : "f",
                       rec->unsent ? "t" : "f"};
    PGresult *r = db_exec(c, &q_saga_record, v, NULL, NULL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok && !db_conn_lost(c))
        log_warn("saga: %s", PQresultErrorMessage(r));
    else if (ok && strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
        log_warn("saga: lost the lease of a fare to another executor; leaving it to them");
        ok = false;
    }
    PQclear(r);
    return ok;
}

/* Publishes the outcome on fare-processing (inside the caller's transaction); a fare left to
 * an operator says so in attribute needs_operator. */
static bool publish_outcome(struct db_conn *c, const struct saga_env *env, const struct fare *f,
                            bool needs_operator)
{
    enum mq_status st;
    struct topic_set *set = topic_cache_current(env->topics, env->hub, c, SAGA_TOPIC, &st);
    if (!set)
        return st == MQ_NOT_FOUND; /* no topic: nobody to tell (the topology re-creates it) */
    bool ok = strcmp(f->outcome, "succeeded") == 0;
    json_t *body = json_pack("{s:s, s:s, s:f, s:s}", "fare_id", f->id, "customer", f->customer,
                             "amount", f->amount, "outcome", f->outcome);
    char *text = jsontext_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *attrs =
        json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "is_successful", "type", "String", "value",
                  ok ? "true" : "false", "fare_id", "type", "String", "value", f->id);
    if (needs_operator)
        json_object_set_new(attrs, "needs_operator",
                            json_pack("{s:s, s:s}", "type", "String", "value", "true"));
    trace_add_attributes(attrs);
    struct mq_publish p = {
        .body = text, .body_len = strlen(text), .body_json = true, .attributes = attrs};
    struct mq_publish_result out;
    st = mq_publish(c, &set->topic, set->subs, set->n, &p, mq_hub_listened_cb, env->hub, &out);
    json_decref(attrs);
    free(text);
    topic_set_release(set);
    return st == MQ_OK;
}

/* Records the step at position with rec, in one transaction with the publish when the step is
 * the last. */
static bool commit_step(struct db_conn *c, const struct saga_env *env, const struct fare *f,
                        int position, const struct record *rec, bool publish)
{
    if (!publish)
        return record(c, f, position, rec);
    if (!db_begin(c))
        return false;
    if (record(c, f, position, rec) && publish_outcome(c, env, f, rec->operator) && db_commit(c))
        return true;
    db_rollback(c);
    return false;
}

static struct db_stmt q_saga_step_state = DB_STMT("saga_step_state",
                                                  "SELECT status, attempts, compensation_attempts, "
                                                  "outcome_unknown, unreachable_attempts, "
                                                  "coalesce(extract(epoch FROM now() - "
                                                  "unreachable_since), 0)::int FROM saga_steps "
                                                  "WHERE fare_id = $1 AND position = $2::int",
                                                  2);

/* What the step log says of the step at position. */
struct step_state {
    char status[16];
    int attempts, compensations;
    bool unknown;        /* its outcome: see fail_forward */
    int unreachable;     /* attempts that never reached the gateway, not counted above */
    int unreachable_for; /* seconds since the first of the current run of those (0: none) */
};

/* The delay before a failed call of a step (or of its compensation) is made again: by the calls
 * that did not reach the gateway while it is waited out, else by the counted attempts of that
 * kind (counted). */
static int retry_backoff_ms(const struct step_state *was, bool waiting, int counted)
{
    return backoff_ms(waiting ? was->unreachable + 1 : counted + 1);
}

/* Reads the step log's row of the step at position into out. */
static bool step_state(struct db_conn *c, const struct fare *f, int position,
                       struct step_state *out)
{
    char pos[16];
    snprintf(pos, sizeof pos, "%d", position);
    const char *v[] = {f->id, pos};
    PGresult *r = db_exec(c, &q_saga_step_state, v, NULL, NULL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) {
        snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 0));
        out->attempts = atoi(PQgetvalue(r, 0, 1));
        out->compensations = atoi(PQgetvalue(r, 0, 2));
        out->unknown = PQgetvalue(r, 0, 3)[0] == 't';
        out->unreachable = atoi(PQgetvalue(r, 0, 4));
        out->unreachable_for = atoi(PQgetvalue(r, 0, 5));
    }
    PQclear(r);
    return ok;
}

static bool fail_forward(struct db_conn *c, const struct saga_env *env, struct fare *f,
                         enum step_result r, const char *detail);
static bool compensate(struct db_conn *c, const struct saga_env *env, struct fare *f);

/* One forward step. Returns true to go on with the next. */
static bool forward(struct db_conn *c, const struct saga_env *env, struct fare *f)
{
    const struct step *s = &steps[f->step];
    char detail[300] = "";
    enum step_result r = STEP_OK;
    snprintf(f->key, sizeof f->key, "fare:%s:%s", f->id, s->name);
    if (s->action)
        r = s->action(c, env, f, detail, sizeof detail);
    if (saga_crash_hook && saga_crash_hook(f->id, s->name))
        return false; /* "crashed": the lease runs out and someone resumes here */
    if (f->step == STEP_COMPLETE && !f->outcome[0])
        snprintf(f->outcome, sizeof f->outcome, "succeeded");
    if (r == STEP_OK) {
        bool last = f->step == STEP_PUBLISH;
        struct record rec = {.status = "done",
                             .detail = detail[0] ? detail : NULL,
                             .next_step = f->step + 1,
                             .phase = last ? "finished" : "forward",
                             .outcome = f->step == STEP_COMPLETE ? f->outcome : NULL,
                             .fare_status = last ? f->outcome : NULL,
                             .delay_ms = last ? 0 : -1,
                             .mark_next = !last && steps[f->step + 1].action};
        if (!commit_step(c, env, f, f->step, &rec, last))
            return false;
        f->unknown_before = false; /* the next step was never called before this one was done */
        if (last)
            atomic_fetch_add(strcmp(f->outcome, "succeeded") == 0 ? &saga_counters.succeeded
                                                                  : &saga_counters.failed,
                             1);
        f->step++;
        return !last;
    }
    return fail_forward(c, env, f, r, detail);
}

/* A step whose outcome is unknown and that nothing undoes (the credit): the fare ends failed,
 * for an operator to settle. */
static void unknown_to_operator(struct db_conn *c, const struct saga_env *env, struct fare *f,
                                const char *detail)
{
    char why[400];
    snprintf(why, sizeof why,
             "%s (gave up after the retry budget; the outcome is unknown and nothing undoes it: "
             "needs an operator)",
             detail);
    snprintf(f->outcome, sizeof f->outcome, "failed");
    struct record rec = {.status = "failed",
                         .detail = why,
                         .next_step = f->step,
                         .phase = "finished",
                         .outcome = "failed",
                         .fare_status = "failed",
                         .delay_ms = 0,
                         .operator= true,
                         .unknown = true,
                         .skip_rest = true};
    if (!commit_step(c, env, f, f->step, &rec, true))
        return;
    atomic_fetch_add(&saga_counters.operator, 1);
    log_warn("saga %s: the outcome of %s is unknown; marked for an operator", f->id,
             steps[f->step].name);
}

/* A forward step did not succeed: retry it later, or give up on it and compensate. A step
 * given up without ever getting an answer from a gateway it reached (timeouts, 5xx, a run that
 * died with the call in flight) may have happened: its own compensation runs too, naming the
 * call by its idempotency key. The gateway's decline answers for the key, so it settles an
 * earlier unknown; another refusal (STEP_REFUSED: a proxy's 403, say) is not retried either but
 * settles nothing, and a refused connection (nothing sent) leaves the outcome as it was. */
static bool fail_forward(struct db_conn *c, const struct saga_env *env, struct fare *f,
                         enum step_result r, const char *detail)
{
    struct step_state was;
    if (!step_state(c, f, f->step, &was))
        return false;
    bool unknown = r != STEP_DECLINED && (f->unknown_before || r == STEP_TRANSIENT);
    bool final = r == STEP_DECLINED || r == STEP_REFUSED; /* retrying gets the same answer */
    bool waiting = waits_out(env, r, was.unreachable_for);
    if (!final && (waiting || was.attempts + 1 < STEP_BUDGET)) {
        struct record rec = {.status = "running",
                             .detail = detail,
                             .next_step = f->step,
                             .phase = "forward",
                             .delay_ms = retry_backoff_ms(&was, waiting, was.attempts),
                             .unknown = unknown,
                             .unreachable = waiting,
                             .unsent = r == STEP_UNSENT};
        if (commit_step(c, env, f, f->step, &rec, false))
            atomic_fetch_add(&saga_counters.retries, 1);
        return false;
    }
    if (unknown && !steps[f->step].compensate) {
        unknown_to_operator(c, env, f, detail);
        return false;
    }
    char why[400];
    snprintf(why, sizeof why, "%s%s", detail,
             unknown
                 ? " (gave up after the retry budget; the outcome is unknown, so it is undone by "
                   "its idempotency key)"
             : !final ? " (gave up after the retry budget)"
                      : "");
    snprintf(f->outcome, sizeof f->outcome, "failed");
    struct record rec = {.status = "failed",
                         .detail = why,
                         .next_step = unknown ? f->step : f->step - 1,
                         .phase = "compensating",
                         .outcome = "failed",
                         .delay_ms = -1,
                         .unknown = unknown,
                         .skip_rest = true};
    if (!commit_step(c, env, f, f->step, &rec, false))
        return false;
    if (!unknown)
        f->step--;
    f->compensating = true;
    return true;
}

static struct db_stmt q_saga_compensated =
    DB_STMT("saga_compensated",
            "UPDATE fares SET phase = 'forward', step = 4, updated_at = now() "
            "WHERE id = $1 AND lease = $2::uuid",
            2);

/* Moves the fare to the complete step once everything done was compensated. */
static bool finish_compensating(struct db_conn *c, struct fare *f)
{
    const char *v[] = {f->id, f->lease};
    if (!exec_one(c, &q_saga_compensated, v))
        return false;
    f->compensating = false;
    f->step = STEP_COMPLETE;
    return true;
}

/* A compensation did not succeed: retry it later, or hand the fare to an operator. */
static void fail_compensation(struct db_conn *c, const struct saga_env *env, struct fare *f,
                              const struct step_state *was, enum step_result r, const char *detail)
{
    char why[400];
    int compensations = was->compensations;
    bool waiting = waits_out(env, r, was->unreachable_for);
    bool give_up = !waiting && compensations + 1 >= COMPENSATION_BUDGET;
    snprintf(why, sizeof why, "compensation failed: %s%s", detail,
             give_up ? "; needs an operator" : "");
    if (give_up)
        snprintf(f->outcome, sizeof f->outcome, "failed");
    /* the step keeps its status (done, or failed with an unknown outcome) while retried */
    struct record rec = {.status = give_up ? "failed" : was->status,
                         .compensation = true,
                         .detail = why,
                         .next_step = f->step,
                         .phase = give_up ? "finished" : "compensating",
                         .outcome = give_up ? "failed" : NULL,
                         .fare_status = give_up ? "failed" : NULL,
                         .delay_ms = give_up ? 0 : retry_backoff_ms(was, waiting, compensations),
                         .operator= give_up,
                         .unreachable = waiting,
                         .unsent = r == STEP_UNSENT};
    if (!commit_step(c, env, f, f->step, &rec, give_up))
        return;
    atomic_fetch_add(give_up ? &saga_counters.operator : &saga_counters.retries, 1);
    if (give_up)
        log_warn("saga %s: compensating %s failed %d times; marked for an operator", f->id,
                 steps[f->step].name, compensations + 1);
}

static struct db_stmt q_saga_step_back = DB_STMT(
    "saga_step_back", "UPDATE fares SET step = $2::int WHERE id = $1 AND lease = $3::uuid", 3);

/* One step back while compensating. Returns true to go on. */
static bool compensate(struct db_conn *c, const struct saga_env *env, struct fare *f)
{
    if (f->step < 0)
        return finish_compensating(c, f);
    const struct step *s = &steps[f->step];
    char detail[300] = "";
    struct step_state was;
    if (!step_state(c, f, f->step, &was))
        return false;
    bool happened = strcmp(was.status, "done") == 0 ||
                    (strcmp(was.status, "failed") == 0 && was.unknown); /* or may have */
    if (!s->compensate || !happened) {                                  /* nothing to undo here */
        char next[16];
        snprintf(next, sizeof next, "%d", f->step - 1);
        const char *v[] = {f->id, next, f->lease};
        if (!exec_one(c, &q_saga_step_back, v))
            return false;
        f->step--;
        return true;
    }
    snprintf(f->key, sizeof f->key, "fare:%s:%s:compensate", f->id, s->name);
    snprintf(f->undone, sizeof f->undone, "fare:%s:%s", f->id, s->name);
    enum step_result r = s->compensate(c, env, f, detail, sizeof detail);
    if (saga_crash_hook && saga_crash_hook(f->id, s->name))
        return false;
    if (r != STEP_OK) {
        fail_compensation(c, env, f, &was, r, detail);
        return false;
    }
    struct record rec = {.status = "compensated",
                         .compensation = true,
                         .detail = detail,
                         .next_step = f->step - 1,
                         .phase = "compensating",
                         .delay_ms = -1};
    if (!commit_step(c, env, f, f->step, &rec, false))
        return false;
    f->step--;
    return true;
}

static bool stopping(const struct saga_env *env)
{
    return env->stopping && atomic_load(env->stopping);
}

static struct db_stmt q_saga_pause =
    DB_STMT("saga_pause",
            "WITH f AS (UPDATE fares SET next_attempt_at = now(), lease = NULL "
            "WHERE id = $1 AND lease = $2::uuid RETURNING id, step, phase) "
            "UPDATE saga_steps s SET outcome_unknown = $3::boolean WHERE s.fare_id = $1 "
            "AND s.position = (SELECT step FROM f WHERE f.phase = 'forward')",
            3);

/* The process is stopping in the middle of f: gives the fare back at once (its lease would
 * otherwise hold it for lease_seconds), so a restart or another process resumes it from the
 * step it stands at. That step was marked in flight (by the claim or the record of the step
 * before) but not called: its mark goes back to what it was, so a pause is not taken for a
 * call whose answer was lost. */
static void pause_run(struct db_conn *c, const struct fare *f)
{
    const char *v[] = {f->id, f->lease, f->unknown_before ? "t" : "f"};
    PGresult *r = db_exec(c, &q_saga_pause, v, NULL, NULL);
    PQclear(r);
    log_info("fare %s: paused at step %d by the shutdown", f->id, f->step);
}

enum mq_status saga_run_one(struct db_conn *c, const struct saga_env *env, bool *ran)
{
    struct fare f = {0};
    if (!claim(c, env, &f, ran))
        return db_conn_lost(c) ? MQ_UNAVAILABLE : MQ_ERROR;
    bool go_on = *ran;
    while (go_on && !stopping(env))
        go_on = f.compensating ? compensate(c, env, &f) : f.step < NSTEPS && forward(c, env, &f);
    if (go_on)
        pause_run(c, &f);
    else if (*ran)
        log_info("fare %s: ran to step %d%s%s", f.id, f.step, f.outcome[0] ? ", " : "", f.outcome);
    free(f.customer);
    trace_set(NULL, NULL);
    return MQ_OK;
}

/* The steps of fare $1 with the fare's status beside them: one snapshot, so that a status and
 * its steps never come from either side of a step's commit. */
static struct db_stmt q_saga_steps_of =
    DB_STMT("saga_steps_of",
            "SELECT s.name, s.status, "
            "s.attempts + s.compensation_attempts + s.unreachable_attempts, s.detail, "
            "s.started_at, s.finished_at, f.status, f.needs_operator FROM fares f "
            "JOIN saga_steps s ON s.fare_id = f.id WHERE f.id = $1 ORDER BY s.position",
            1);

/* The fare's status as of its steps. */
struct fare_state {
    char status[16];
    bool needs_operator;
};

/* The steps of fare id as a JSON array (a new reference) and the fare's state read with them,
 * or NULL with *st when the database did not answer (or the fare is gone: MQ_NOT_FOUND). */
static json_t *steps_json(struct db_conn *c, const char *id, struct fare_state *fs,
                          enum mq_status *st)
{
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_saga_steps_of, v, NULL, NULL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) { /* a fare has six */
        *st = PQresultStatus(r) == PGRES_TUPLES_OK ? MQ_NOT_FOUND
              : db_conn_lost(c) || db_transient(r) ? MQ_UNAVAILABLE
                                                   : MQ_ERROR;
        PQclear(r);
        return NULL;
    }
    snprintf(fs->status, sizeof fs->status, "%s", PQgetvalue(r, 0, 6));
    fs->needs_operator = PQgetvalue(r, 0, 7)[0] == 't';
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        char started[CLOCK_RFC3339_LEN], finished[CLOCK_RFC3339_LEN];
        db_read_ts(r, i, 4, started);
        db_read_ts(r, i, 5, finished);
        json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:s?, s:s?, s:s?}", "name",
                                           PQgetvalue(r, i, 0), "status", PQgetvalue(r, i, 1),
                                           "attempts", atoi(PQgetvalue(r, i, 2)), "detail",
                                           PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3),
                                           "started_at", started[0] ? started : NULL, "finished_at",
                                           finished[0] ? finished : NULL));
    }
    PQclear(r);
    return a;
}

/* What never changes of a fare; its status comes with its steps (q_saga_steps_of). */
#define FARE_COLUMNS "SELECT id, ride_id, amount::text, request_hash FROM fares "
static struct db_stmt q_fare_by_id = DB_STMT("saga_fare_by_id", FARE_COLUMNS "WHERE id = $1", 1);
static struct db_stmt q_fare_by_ride =
    DB_STMT("saga_fare_by_ride", FARE_COLUMNS "WHERE ride_id = $1::uuid", 1);

enum mq_status saga_fare_json(struct db_conn *c, const char *fare_id, const char *ride_id,
                              json_t **out, char **hash)
{
    const char *v[] = {fare_id ? fare_id : ride_id};
    PGresult *r = db_exec(c, fare_id ? &q_fare_by_id : &q_fare_by_ride, v, NULL, NULL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        enum mq_status st = db_conn_lost(c) || db_transient(r) ? MQ_UNAVAILABLE : MQ_ERROR;
        PQclear(r);
        return st;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return MQ_NOT_FOUND;
    }
    const char *id = PQgetvalue(r, 0, 0);
    const char *ride = PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1);
    enum mq_status st = MQ_OK;
    struct fare_state fs;
    json_t *log = steps_json(c, id, &fs, &st);
    if (!log) {
        PQclear(r);
        return st;
    }
    char self[100], ride_link[80];
    snprintf(self, sizeof self, "/fares/%s", id);
    snprintf(ride_link, sizeof ride_link, "/rides/%s", ride ? ride : "");
    json_t *links = json_pack("{s:s}", "self", self);
    if (ride)
        json_object_set_new(links, "ride", json_string(ride_link));
    *out = json_pack("{s:s?, s:s, s:f, s:s, s:b, s:o, s:o}", "ride_id", ride, "fare_id", id,
                     "amount", strtod(PQgetvalue(r, 0, 2), NULL), "status", fs.status,
                     "needs_operator", fs.needs_operator, "steps", log, "links", links);
    if (hash)
        *hash = PQgetisnull(r, 0, 3) ? NULL : xstrdup(PQgetvalue(r, 0, 3));
    PQclear(r);
    return MQ_OK;
}

/* Row i of the list query as an item of GET /fares (a new reference). */
static json_t *fare_summary_json(PGresult *r, int i)
{
    const char *id = PQgetvalue(r, i, 0);
    const char *ride = PQgetisnull(r, i, 1) ? NULL : PQgetvalue(r, i, 1);
    char self[100], ride_link[80], created[CLOCK_RFC3339_LEN], updated[CLOCK_RFC3339_LEN];
    snprintf(self, sizeof self, "/fares/%s", id);
    db_read_ts(r, i, 6, created);
    db_read_ts(r, i, 7, updated);
    json_t *links = json_pack("{s:s}", "self", self);
    if (ride) {
        snprintf(ride_link, sizeof ride_link, "/rides/%s", ride);
        json_object_set_new(links, "ride", json_string(ride_link));
    }
    json_t *log = json_loads(PQgetvalue(r, i, 8), 0, NULL);
    return json_pack("{s:s?, s:s, s:s, s:f, s:s, s:b, s:s, s:s, s:o, s:o}", "ride_id", ride,
                     "fare_id", id, "customer", PQgetvalue(r, i, 2), "amount",
                     strtod(PQgetvalue(r, i, 3), NULL), "status", PQgetvalue(r, i, 4),
                     "needs_operator", PQgetvalue(r, i, 5)[0] == 't', "created_at", created,
                     "updated_at", updated, "steps", log ? log : json_array(), "links", links);
}

static struct db_stmt q_fares_list = DB_STMT(
    "saga_fares_list",
    "SELECT id, ride_id, customer, amount::text, status, needs_operator, created_at, updated_at, "
    "coalesce((SELECT json_agg(json_build_object('name', s.name, 'status', s.status) "
    "ORDER BY s.position) FROM saga_steps s WHERE s.fare_id = fares.id), '[]'), "
    "" DB_PAGE_CURSOR("created_at", "id") " FROM fares WHERE " DB_PAGE_BEFORE(
        "created_at", "id", "text") " ORDER BY created_at DESC, id DESC LIMIT $3",
    3);

enum mq_status saga_fares_list(struct db_conn *c, const char *after_us, const char *after_id,
                               int limit, json_t **items, char *next, size_t next_len)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *v[] = {after_us, after_us ? after_id : "", lim};
    PGresult *r = db_exec(c, &q_fares_list, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int n = PQntuples(r), count = n > limit ? limit : n;
    *items = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(*items, fare_summary_json(r, i));
    next[0] = '\0';
    if (n > limit)
        snprintf(next, next_len, "%s", PQgetvalue(r, limit - 1, 9));
    PQclear(r);
    return MQ_OK;
}
