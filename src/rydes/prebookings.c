/* Tasks and prebookings: accepting submissions, processing them, reading them back; see
 * include/rydes/prebookings.h. */
#include "rydes/prebookings.h"

#include "rydes/buf.h"
#include "rydes/idempotency.h"
#include "rydes/jsontext.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_COLUMNS \
    "id, kind, status, result_id, error_title, error_detail, submitted_at, updated_at"

static struct db_stmt q_task_get =
    DB_STMT("pb_task_get", "SELECT " TASK_COLUMNS " FROM tasks WHERE id = $1", 1);
/* Newest first, for the dashboard (the index of sql/010, partial since sql/056, serves it). */
static struct db_stmt q_task_list =
    DB_STMT("pb_task_list",
            "SELECT " TASK_COLUMNS ", " DB_PAGE_CURSOR(
                "submitted_at", "id") " FROM tasks "
                                      "WHERE " DB_PAGE_BEFORE(
                                          "submitted_at", "id",
                                          "uuid") " "
                                                  "ORDER BY submitted_at DESC, id DESC LIMIT $3",
            3);
static struct db_stmt q_prebooking_get =
    DB_STMT("pb_get",
            "SELECT id, task_id, from_location, to_location, customer, pickup_at, created_at "
            "FROM prebookings WHERE id = $1",
            1);
/* A task keeps its submission (the event published for it, sql/044): processing reads it there,
 * not from the message, which anyone allowed to send to the queue could have written. A task
 * stored pending when its submission was sent into the queue (sql/057) is filled in, its times
 * kept (still pending: updated_at stays submitted_at); any other task of that id was taken in
 * already. */
static struct db_stmt q_task_insert =
    DB_STMT("pb_task_insert",
            "INSERT INTO tasks (id, kind, submitted_at, updated_at, submission) "
            "VALUES ($1, 'prebooking', $2, $2, $3::jsonb) ON CONFLICT (id) DO UPDATE "
            "SET submission = EXCLUDED.submission, awaiting_submission = false, "
            "taken_in_at = now() WHERE tasks.awaiting_submission AND tasks.status = 'pending'",
            3);
/* When the task of a submission sent into the queue was stored (no row: it was not, or it was
 * taken in already). */
static struct db_stmt q_task_awaiting_since =
    DB_STMT("pb_task_awaiting_since",
            "SELECT submitted_at FROM tasks WHERE id = $1 AND awaiting_submission", 1);
/* The tasks of submissions just sent into the queue ($1, their message ids): pending, awaiting
 * the worker that takes them in, which may have done so already. */
static struct db_stmt q_task_awaiting =
    DB_STMT("pb_task_awaiting",
            "INSERT INTO tasks (id, kind, awaiting_submission) "
            "SELECT unnest($1::uuid[]), 'prebooking', true ON CONFLICT (id) DO NOTHING",
            1);
/* The event id a task keeps (sql/045): only a dead letter with it fails the task. */
static struct db_stmt q_task_event =
    DB_STMT("pb_task_event", "UPDATE tasks SET event_id = $2 WHERE id = $1", 2);
/* The task (submission $8, event id $3) and its publish (mq_publish_payload, sql/006) in one
 * statement. */
static struct db_stmt q_submit =
    DB_STMT("pb_submit",
            "WITH t AS (INSERT INTO tasks (id, kind, submitted_at, updated_at, submission, "
            "event_id) VALUES ($1::uuid, 'prebooking', $2::timestamptz, $2::timestamptz, "
            "$8::jsonb, $3::uuid) "
            "RETURNING id) "
            "SELECT " MQ_PUBLISH_JSON_SQL("3", "4", "5", "6", "7") " FROM t",
            8);
/* The same behind an idempotency key ($9, request hash $10): no row when the key was taken. */
static struct db_stmt q_submit_key =
    DB_STMT("pb_submit_key",
            "WITH k AS (INSERT INTO idempotency_keys (scope, key, request_hash, resource_id) "
            "VALUES ('" PREBOOKINGS_KEY_SCOPE "', $9, $10, $1::uuid) ON CONFLICT DO NOTHING "
            "RETURNING 1), "
            "t AS (INSERT INTO tasks (id, kind, submitted_at, updated_at, submission, event_id) "
            "SELECT $1::uuid, 'prebooking', $2::timestamptz, $2::timestamptz, $8::jsonb, $3::uuid "
            "WHERE EXISTS (SELECT 1 FROM k) RETURNING id) "
            "SELECT " MQ_PUBLISH_JSON_SQL("3", "4", "5", "6", "7") " FROM t",
            10);
/* A task born failed ($1 id, $2 detail, $3 title): a submission sent into the queue that is
 * invalid, or that could not be taken in; the task stored when it was sent (sql/057) fails. */
static struct db_stmt q_task_failed =
    DB_STMT("pb_task_failed",
            "INSERT INTO tasks (id, kind, status, error_title, error_detail) "
            "VALUES ($1, 'prebooking', 'failed', $3, $2) ON CONFLICT (id) DO UPDATE "
            "SET status = 'failed', error_title = $3, error_detail = $2, result_id = NULL, "
            "updated_at = now(), awaiting_submission = false "
            "WHERE tasks.awaiting_submission AND tasks.status = 'pending'",
            3);
/* A task not finished is written `status NOT IN` the finished ones: `status IN ('pending',
 * 'processing')` is the predicate of the partial index tasks_open, which a plan made while no
 * task was open took for a lookup by id and read every open task. */
static struct db_stmt q_processing =
    DB_STMT("pb_processing",
            "UPDATE tasks SET status = 'processing', attempts = attempts + 1, updated_at = now() "
            "WHERE id = $1 AND status NOT IN ('succeeded', 'failed') AND NOT awaiting_submission",
            1);
/* A task awaiting its submission (sql/057) is no task to a processing message: no message
 * carries its event yet, and it has no submission to book from. */
static struct db_stmt q_task_lock =
    DB_STMT("pb_task_lock",
            "SELECT status, submission FROM tasks WHERE id = $1 AND NOT awaiting_submission "
            "FOR UPDATE",
            1);
/* A customer's prebookings are checked and made under a lock on the customer, so two workers
 * cannot both find a slot free. */
static struct db_stmt q_customer_lock =
    DB_STMT("pb_customer_lock", "SELECT pg_advisory_xact_lock(7337, hashtext($1))", 1);
/* Whether pickup time $2 has passed, and a prebooking of customer $1 within $3 minutes of it
 * (NULL: none). */
static struct db_stmt q_overlap =
    DB_STMT("pb_overlap",
            "SELECT $2::timestamptz <= clock_timestamp(), (SELECT pickup_at FROM prebookings "
            "WHERE customer = $1 AND pickup_at > $2::timestamptz - make_interval(mins => $3) "
            "AND pickup_at < $2::timestamptz + make_interval(mins => $3) LIMIT 1)",
            3);
static struct db_stmt q_make =
    DB_STMT("pb_make",
            "WITH p AS (INSERT INTO prebookings (id, task_id, from_location, to_location, "
            "customer, pickup_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, task_id) "
            "UPDATE tasks t SET status = 'succeeded', result_id = p.id, updated_at = now() "
            "FROM p WHERE t.id = p.task_id",
            6);
static struct db_stmt q_fail = DB_STMT("pb_fail",
                                       "UPDATE tasks SET status = 'failed', error_title = $2, "
                                       "error_detail = $3, updated_at = now() WHERE id = $1",
                                       3);
/* Only by the task's own event ($3, its message id; sql/045), as the dead-letter sweep. */
static struct db_stmt q_give_up =
    DB_STMT("pb_give_up",
            "UPDATE tasks SET status = 'failed', error_title = 'Processing failed', "
            "error_detail = $2, result_id = NULL, updated_at = now() "
            "WHERE id = $1 AND status NOT IN ('succeeded', 'failed') AND NOT awaiting_submission "
            "AND (event_id IS NULL OR event_id = $3::uuid)",
            3);
/* The task's stored submission, as the processing reads it (a message names the task only);
 * tasks from before sql/044 keep the message's. No row for a task that does not exist, was
 * born failed ("Invalid prebooking": never published, no event of it is ours) or awaits its
 * submission (sql/057: no event of it exists yet). */
static struct db_stmt q_ingest =
    DB_STMT("pb_ingest",
            "INSERT INTO prebooking_submissions (task_id, submission) "
            "SELECT t.id, coalesce(t.submission, $2::jsonb) FROM tasks t WHERE t.id = $1::uuid "
            "AND (t.submission IS NOT NULL OR t.error_title IS DISTINCT FROM 'Invalid prebooking') "
            "AND NOT t.awaiting_submission ON CONFLICT DO NOTHING",
            2);

static const char *const status_names[] = {"pending", "processing", "succeeded", "failed"};

/* Runs a statement whose rows, if any, do not matter. */
static enum mq_status run_as(struct db_conn *c, struct db_stmt *st, const char *const *v,
                             ExecStatusType want)
{
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, want))
        return mq_failed(c, r);
    PQclear(r);
    return MQ_OK;
}

static enum mq_status run(struct db_conn *c, struct db_stmt *st, const char *const *v)
{
    return run_as(c, st, v, PGRES_COMMAND_OK);
}

void task_clear(struct task *t)
{
    free(t->error_title);
    free(t->error_detail);
    memset(t, 0, sizeof *t);
}

bool task_final(const struct task *t)
{
    return t->status == TASK_SUCCEEDED || t->status == TASK_FAILED;
}

json_t *task_json(const struct task *t)
{
    char self[64], result[80];
    snprintf(self, sizeof self, "/tasks/%s", t->id);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "id", t->id, "kind", t->kind,
                          "status", status_names[t->status], "submitted_at", t->submitted_at,
                          "updated_at", t->updated_at, "links", "self", self);
    if (t->status == TASK_SUCCEEDED) {
        snprintf(result, sizeof result, "/prebookings/%s", t->result_id);
        json_object_set_new(json_object_get(o, "links"), "result", json_string(result));
    }
    if (t->status == TASK_FAILED)
        json_object_set_new(o, "error",
                            json_pack("{s:s, s:s}", "title", t->error_title ? t->error_title : "",
                                      "detail", t->error_detail ? t->error_detail : ""));
    return o;
}

static enum task_status status_of(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(status_names[i], name) == 0)
            return (enum task_status)i;
    return TASK_PENDING;
}

static char *dup_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

/* Row row of a TASK_COLUMNS result into t. */
static void read_task(PGresult *r, int row, struct task *t)
{
    snprintf(t->id, sizeof t->id, "%s", PQgetvalue(r, row, 0));
    snprintf(t->kind, sizeof t->kind, "%s", PQgetvalue(r, row, 1));
    t->status = status_of(PQgetvalue(r, row, 2));
    snprintf(t->result_id, sizeof t->result_id, "%s", PQgetvalue(r, row, 3));
    t->error_title = dup_or_null(r, row, 4);
    t->error_detail = dup_or_null(r, row, 5);
    db_read_ts(r, row, 6, t->submitted_at);
    db_read_ts(r, row, 7, t->updated_at);
}

enum mq_status tasks_get(struct db_conn *c, const char *id, struct task *out)
{
    memset(out, 0, sizeof *out);
    if (!id || !ids_is_uuid(id))
        return MQ_NOT_FOUND;
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_task_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found)
        read_task(r, 0, out);
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status tasks_list(struct db_conn *c, const char *after_us, const char *after_id, int limit,
                          struct task **tasks, int *count, char *next, size_t next_len)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *v[] = {after_us, after_us ? after_id : "00000000-0000-0000-0000-000000000000", lim};
    PGresult *r = db_exec(c, &q_task_list, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int n = PQntuples(r);
    *count = n > limit ? limit : n;
    *tasks = xcalloc((size_t)*count + 1, sizeof **tasks);
    for (int i = 0; i < *count; i++)
        read_task(r, i, &(*tasks)[i]);
    next[0] = '\0';
    if (n > limit)
        snprintf(next, next_len, "%s", PQgetvalue(r, limit - 1, 8));
    PQclear(r);
    return MQ_OK;
}

void prebooking_clear(struct prebooking *p)
{
    free(p->from);
    free(p->to);
    free(p->customer);
    memset(p, 0, sizeof *p);
}

json_t *prebooking_json(const struct prebooking *p)
{
    char self[64], task[64];
    snprintf(self, sizeof self, "/prebookings/%s", p->id);
    snprintf(task, sizeof task, "/tasks/%s", p->task_id);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "id", p->id, "from", p->from,
                     "to", p->to, "when", p->when, "customer", p->customer, "created_at",
                     p->created_at, "links", "self", self, "task", task);
}

enum mq_status prebookings_get(struct db_conn *c, const char *id, struct prebooking *out)
{
    memset(out, 0, sizeof *out);
    if (!id || !ids_is_uuid(id))
        return MQ_NOT_FOUND;
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_prebooking_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found) {
        snprintf(out->id, sizeof out->id, "%s", PQgetvalue(r, 0, 0));
        snprintf(out->task_id, sizeof out->task_id, "%s", PQgetvalue(r, 0, 1));
        out->from = xstrdup(PQgetvalue(r, 0, 2));
        out->to = xstrdup(PQgetvalue(r, 0, 3));
        out->customer = xstrdup(PQgetvalue(r, 0, 4));
        db_read_ts(r, 0, 5, out->when);
        db_read_ts(r, 0, 6, out->created_at);
    }
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

/* The event published for a task: what the processing worker needs. */
static void submission_event(const char *task_id, const struct prebooking_input *in,
                             const char *submitted_at, const char *correlation_id, char **body,
                             json_t **attrs)
{
    json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "task_id", task_id, "from", in->from,
                          "to", in->to, "customer", in->customer, "when", in->pickup,
                          "submitted_at", submitted_at);
    *body = jsontext_dumps(b, JSON_COMPACT);
    json_decref(b);
    *attrs = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "customer", "type", "String", "value",
                       in->customer, "correlation_id", "type", "String", "value", correlation_id);
    trace_add_attributes(*attrs);
}

/* Stores task id (pending) and publishes its event, inside the caller's transaction. */
static enum mq_status submit_in_tx(struct db_conn *c, const struct topic_set *set, const char *id,
                                   const char *now, const struct mq_publish *p,
                                   bool (*listened)(void *ctx, int queue_id), void *ctx,
                                   struct mq_publish_result *published)
{
    const char *v[] = {id, now, p->body};
    PGresult *r = db_exec(c, &q_task_insert, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    bool inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!inserted)
        return MQ_OK; /* this task exists already: published with it */
    enum mq_status st = mq_publish(c, &set->topic, set->subs, set->n, p, listened, ctx, published);
    if (st != MQ_OK)
        return st;
    const char *e[] = {id, published->message_id};
    r = db_exec(c, &q_task_event, e, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    PQclear(r);
    return MQ_OK;
}

/* Whether the publish of plan reaches a queue PREBOOKINGS_PROCESSING_QUEUE: without one (its
 * subscription deleted, or given a filter that refuses submissions) the task would wait for a
 * worker no message reaches. */
static bool reaches_processing(const struct topic_set *set, const struct mq_publish_plan *plan)
{
    for (int i = 0; i < set->n && i < plan->tally.n; i++)
        if (plan->tally.items[i].wanted && !set->subs[i].url &&
            strcmp(set->subs[i].queue, PREBOOKINGS_PROCESSING_QUEUE) == 0)
            return true;
    return false;
}

/* A submission on its way to the database: the task id and its event. */
struct submission {
    const struct topic_set *set;
    struct mq_publish_plan plan;
    const char *id, *now;
    const struct mq_publish *p;
    bool (*listened)(void *ctx, int queue_id);
    void *ctx;
    struct mq_publish_result *published;
};

/* The task and its publish in one statement (a lean plan), behind key when there is one:
 * *claimed is false when the key was taken. The publish is counted and the fan-out woken once
 * the statement has committed. */
static enum mq_status submit_lean(struct db_conn *c, struct submission *s, const char *key,
                                  const char *hash, bool *claimed)
{
    const char *v[10] = {s->id, s->now};
    mq_publish_plan_params(&s->plan, &v[2]);
    v[7] = s->p->body;
    v[8] = key;
    v[9] = hash;
    PGresult *r = db_exec(c, key ? &q_submit_key : &q_submit, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *claimed = PQntuples(r) == 1;
    if (*claimed)
        mq_publish_plan_result(&s->plan, r, 0, s->published);
    PQclear(r);
    return MQ_OK;
}

/* The task insert and mq_publish (a plan that is not lean), in idempotency_run's transaction. */
static enum mq_status submit_in_tx_work(struct db_conn *c, void *arg)
{
    struct submission *s = arg;
    return submit_in_tx(c, s->set, s->id, s->now, s->p, s->listened, s->ctx, s->published);
}

enum prebookings_outcome prebookings_find_key(struct db_conn *c, const char *key, const char *hash,
                                              bool after_claim, struct task *out,
                                              enum mq_status *st)
{
    char id[IDS_UUID_LEN];
    enum idempotency_match m;
    *st = idempotency_find(c, PREBOOKINGS_KEY_SCOPE, key, hash, id, &m);
    if (*st != MQ_OK)
        return PREBOOKINGS_FAILED;
    if (m == IDEMPOTENCY_UNKNOWN && !after_claim) {
        *st = MQ_NOT_FOUND;
        return PREBOOKINGS_FAILED;
    }
    if (m != IDEMPOTENCY_SAME) /* unknown after a claim: swept since, as good as reused */
        return PREBOOKINGS_KEY_REUSED;
    *st = tasks_get(c, id, out);
    return *st == MQ_OK ? PREBOOKINGS_REPLAYED : PREBOOKINGS_FAILED;
}

enum prebookings_outcome prebookings_submit(struct db_conn *c, const struct topic_set *set,
                                            const struct prebooking_input *in, const char *key,
                                            const char *hash, const char *correlation_id,
                                            bool (*listened)(void *ctx, int queue_id), void *ctx,
                                            struct task *out, struct mq_publish_result *published,
                                            enum mq_status *st)
{
    memset(out, 0, sizeof *out);
    memset(published, 0, sizeof *published);
    *st = MQ_NOT_FOUND;
    if (!set)
        return PREBOOKINGS_FAILED;
    ids_uuid_v7(out->id); /* the primary key: time-ordered */
    snprintf(out->kind, sizeof out->kind, "prebooking");
    out->status = TASK_PENDING;
    clock_format_rfc3339(clock_wall_us(), out->submitted_at);
    memcpy(out->updated_at, out->submitted_at, sizeof out->updated_at);
    char *body;
    json_t *attrs;
    submission_event(out->id, in, out->submitted_at, correlation_id, &body, &attrs);
    struct mq_publish p = {
        .body = body, .body_len = strlen(body), .body_json = true, .attributes = attrs};
    struct submission sub = {.set = set,
                             .id = out->id,
                             .now = out->submitted_at,
                             .p = &p,
                             .listened = listened,
                             .ctx = ctx,
                             .published = published};
    mq_publish_plan(&set->topic, set->subs, set->n, &p, listened, ctx, &sub.plan);
    bool routed = reaches_processing(set, &sub.plan);
    struct idempotency k = {PREBOOKINGS_KEY_SCOPE, key, hash, out->id};
    bool claimed = false;
    if (routed)
        *st = sub.plan.lean ? submit_lean(c, &sub, key, hash, &claimed)
                            : idempotency_run(c, &k, submit_in_tx_work, &sub, &claimed);
    mq_publish_plan_clear(&sub.plan);
    free(body);
    json_decref(attrs);
    if (!routed)
        return PREBOOKINGS_UNROUTED;
    if (*st != MQ_OK)
        return PREBOOKINGS_FAILED;
    return claimed ? PREBOOKINGS_SUBMITTED : prebookings_find_key(c, key, hash, true, out, st);
}

void prebookings_request_hash(const struct prebooking_input *in, char out[IDEMPOTENCY_HASH_LEN])
{
    json_t *canon = json_pack("{s:s, s:s, s:s, s:s}", "from", in->from, "to", in->to, "customer",
                              in->customer, "when", in->pickup);
    idempotency_hash(canon, out);
    json_decref(canon);
}

/* The validation errors of fe as one line: "when: must be in the future; from: ...". */
static char *errors_text(const struct field_errors *fe)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < json_array_size(fe->list); i++) {
        json_t *e = json_array_get(fe->list, i);
        buf_printf(&b, "%s%s: %s", i ? "; " : "", json_string_value(json_object_get(e, "field")),
                   json_string_value(json_object_get(e, "message")));
    }
    char *text = xstrdup(buf_str(&b));
    buf_cleanup(&b);
    return text;
}

/* The submission time of the message message_id's task into out: when its task was stored at
 * the send (sql/057), or now. */
static enum mq_status submitted_at_of(struct db_conn *c, const char *message_id,
                                      char out[CLOCK_RFC3339_LEN])
{
    const char *v[] = {message_id};
    PGresult *r = db_exec(c, &q_task_awaiting_since, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    if (PQntuples(r) == 1)
        db_read_ts(r, 0, 0, out);
    else
        clock_format_rfc3339(clock_wall_us(), out);
    PQclear(r);
    return MQ_OK;
}

/* The task of message m, invalid (fe): failed, with the validation errors. */
static enum mq_status fail_invalid(struct db_conn *c, const struct mq_message *m,
                                   const struct field_errors *fe)
{
    char *detail = errors_text(fe);
    const char *v[] = {m->message_id, detail, "Invalid prebooking"};
    enum mq_status st = run(c, &q_task_failed, v);
    free(detail);
    return st;
}

/* The task of message m, valid (in), submitted at now: stored and published. */
static enum mq_status take_in(struct db_conn *c, const struct topic_set *set,
                              const struct mq_message *m, const struct prebooking_input *in,
                              const char *now, bool (*listened)(void *ctx, int queue_id), void *ctx)
{
    if (!set)
        return MQ_NOT_FOUND;
    char *event;
    json_t *attrs;
    submission_event(m->message_id, in, now, m->message_id, &event, &attrs);
    struct mq_publish p = {
        .body = event, .body_len = strlen(event), .body_json = true, .attributes = attrs};
    struct mq_publish_plan plan;
    mq_publish_plan(&set->topic, set->subs, set->n, &p, listened, ctx, &plan);
    bool routed = reaches_processing(set, &plan);
    mq_publish_plan_clear(&plan);
    struct mq_publish_result published;
    enum mq_status st =
        routed ? submit_in_tx(c, set, m->message_id, now, &p, listened, ctx, &published)
               : MQ_NOT_FOUND; /* as without the topic: tried again, then dead-lettered */
    free(event);
    json_decref(attrs);
    return st;
}

enum mq_status prebookings_accept_message(struct db_conn *c, const struct topic_set *set,
                                          const struct mq_message *m, int horizon_days,
                                          bool (*listened)(void *ctx, int queue_id), void *ctx)
{
    json_t *body = json_loads(m->body, 0, NULL);
    struct field_errors fe;
    field_errors_init(&fe);
    struct prebooking_input in;
    if (json_is_object(body))
        prebooking_input(body, clock_wall_us(), horizon_days, &in, &fe);
    else
        field_errors_add(&fe, "body", "must be a JSON object {from, to, customer, when}");
    char now[CLOCK_RFC3339_LEN];
    enum mq_status st = submitted_at_of(c, m->message_id, now);
    if (st == MQ_OK)
        st = fe.count ? fail_invalid(c, m, &fe) : take_in(c, set, m, &in, now, listened, ctx);
    field_errors_cleanup(&fe);
    json_decref(body);
    return st;
}

bool prebookings_queue_holds_tasks(const struct mq_queue *q)
{
    return strcmp(q->name, PREBOOKINGS_SUBMISSION_QUEUE) == 0;
}

/* Stores the tasks of the n messages just sent (results), awaiting their submissions. */
static enum mq_status store_awaiting(struct db_conn *c, const struct mq_send_result *results, int n)
{
    struct buf ids;
    buf_init(&ids);
    buf_puts(&ids, "{");
    for (int i = 0; i < n; i++)
        buf_printf(&ids, "%s%s", i ? "," : "", results[i].message_id);
    buf_puts(&ids, "}");
    const char *v[] = {buf_str(&ids)};
    enum mq_status st = run(c, &q_task_awaiting, v);
    buf_cleanup(&ids);
    return st;
}

enum mq_status prebookings_mq_send(struct db_conn *c, const struct mq_queue *q,
                                   const struct mq_send_entry *entries, int n,
                                   struct mq_send_result *results, bool notify)
{
    if (!prebookings_queue_holds_tasks(q))
        return mq_send(c, q, entries, n, results, notify);
    /* one transaction: no worker sees a message whose task is not stored yet */
    enum mq_status st = db_begin(c) ? MQ_OK : MQ_UNAVAILABLE;
    if (st == MQ_OK)
        st = mq_send(c, q, entries, n, results, notify);
    if (st == MQ_OK)
        st = store_awaiting(c, results, n);
    if (st == MQ_OK && !db_commit(c))
        st = MQ_UNAVAILABLE;
    if (st != MQ_OK)
        db_rollback(c);
    return st;
}

void prebookings_mark_processing(struct db_conn *c, const struct mq_message *m)
{
    json_t *body = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "task_id"));
    if (id && ids_is_uuid(id)) {
        const char *v[] = {id};
        run(c, &q_processing, v);
    }
    json_decref(body);
}

/* The fields of a prebooking-notification event. */
struct event {
    json_t *json; /* owned */
    const char *task_id, *from, *to, *customer, *when;
};

static bool read_event(const char *text, struct event *e, char *why, size_t n)
{
    e->json = json_loads(text, 0, NULL);
    e->task_id = json_string_value(json_object_get(e->json, "task_id"));
    e->from = json_string_value(json_object_get(e->json, "from"));
    e->to = json_string_value(json_object_get(e->json, "to"));
    e->customer = json_string_value(json_object_get(e->json, "customer"));
    e->when = json_string_value(json_object_get(e->json, "when"));
    int64_t us;
    bool ok = e->task_id && ids_is_uuid(e->task_id) && e->from && e->to && e->customer && e->when &&
              clock_parse_rfc3339(e->when, &us);
    if (!ok) {
        snprintf(why, n, "not a prebooking event (task_id, from, to, customer, when)");
        json_decref(e->json);
        e->json = NULL;
    }
    return ok;
}

/* Locks the task; *final when it is done already (a redelivery); *submission its stored
 * submission (NULL: a task from before sql/044; the caller frees). */
static enum mq_status lock_task(struct db_conn *c, const char *id, bool *final, bool *exists,
                                char **submission)
{
    const char *v[] = {id};
    *submission = NULL;
    PGresult *r = db_exec(c, &q_task_lock, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *exists = PQntuples(r) == 1;
    *final = *exists && (strcmp(PQgetvalue(r, 0, 0), "succeeded") == 0 ||
                         strcmp(PQgetvalue(r, 0, 0), "failed") == 0);
    if (*exists && !PQgetisnull(r, 0, 1))
        *submission = xstrdup(PQgetvalue(r, 0, 1));
    PQclear(r);
    return MQ_OK;
}

/* The id of the task a processing message names; false with why filled when it names none. */
static bool event_task_id(const struct mq_message *m, char id[IDS_UUID_LEN], char *why, size_t n)
{
    json_t *body = json_loads(m->body, 0, NULL);
    const char *t = json_string_value(json_object_get(body, "task_id"));
    bool ok = t && ids_is_uuid(t);
    if (ok)
        snprintf(id, IDS_UUID_LEN, "%s", t);
    else
        snprintf(why, n, "not a prebooking event (task_id)");
    json_decref(body);
    return ok;
}

/* Makes the prebooking of e, or fails the task when its time has passed or the slot is taken. */
static enum mq_status decide(struct db_conn *c, const struct event *e, int slot_minutes)
{
    char mins[16];
    snprintf(mins, sizeof mins, "%d", slot_minutes);
    const char *lv[] = {e->customer};
    enum mq_status st = run_as(c, &q_customer_lock, lv, PGRES_TUPLES_OK);
    const char *ov[] = {e->customer, e->when, mins};
    PGresult *r = st == MQ_OK ? db_exec(c, &q_overlap, ov, NULL, NULL) : NULL;
    if (st != MQ_OK || !db_ok(c, r, PGRES_TUPLES_OK))
        return st != MQ_OK ? st : mq_failed(c, r);
    bool passed = PQgetvalue(r, 0, 0)[0] == 't';
    char held[CLOCK_RFC3339_LEN] = "";
    if (!PQgetisnull(r, 0, 1))
        db_read_ts(r, 0, 1, held);
    PQclear(r);
    if (passed) { /* the backlog held it past its time: booking it now means nothing */
        char detail[200];
        snprintf(detail, sizeof detail,
                 "the pickup time %.64s had passed when the task was processed", e->when);
        const char *fv[] = {e->task_id, "Pickup time passed", detail};
        return run(c, &q_fail, fv);
    }
    if (held[0]) {
        char detail[600];
        snprintf(detail, sizeof detail,
                 "customer %.*s already holds a prebooking at %s, within %d minutes of %s",
                 (int)validate_utf8_prefix(e->customer, 200), e->customer, held, slot_minutes,
                 e->when);
        const char *fv[] = {e->task_id, "Slot not available", detail};
        return run(c, &q_fail, fv);
    }
    char id[IDS_UUID_LEN];
    ids_uuid_v7(id); /* the primary key: time-ordered */
    const char *mv[] = {id, e->task_id, e->from, e->to, e->customer, e->when};
    return run(c, &q_make, mv);
}

/* Of a message only the task id is read: the prebooking is made from the task's stored
 * submission, so a message someone else wrote makes nothing the customer did not submit (a
 * task from before sql/044 has none: its message is read, as it was then). */
enum mq_status prebookings_process(struct db_conn *c, const struct mq_message *m, int slot_minutes,
                                   char *why, size_t why_len)
{
    char id[IDS_UUID_LEN];
    if (!event_task_id(m, id, why, why_len))
        return MQ_INVALID;
    bool final = false, exists = false;
    char *submission;
    enum mq_status st = lock_task(c, id, &final, &exists, &submission);
    if (st == MQ_OK && !exists) {
        snprintf(why, why_len, "task %s does not exist", id);
        st = MQ_INVALID;
    }
    struct event e = {0};
    if (st == MQ_OK && !final) {
        bool read = read_event(submission ? submission : m->body, &e, why, why_len);
        if (read && strcmp(e.task_id, id) != 0)
            snprintf(why, why_len, "the event names another task");
        st = read && !why[0] ? decide(c, &e, slot_minutes) : MQ_INVALID;
    }
    if (st != MQ_OK && !why[0]) /* why reaches the task's error, which apps read: not this */
        log_warn("prebooking task %s: %s", id, PQerrorMessage(c->pg));
    json_decref(e.json);
    free(submission);
    return st;
}

enum mq_status prebookings_ingest(struct db_conn *c, const struct mq_message *m, char *why,
                                  size_t why_len)
{
    json_t *body = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "task_id"));
    enum mq_status st = MQ_INVALID;
    if (id && ids_is_uuid(id)) {
        const char *v[] = {id, m->body};
        st = run(c, &q_ingest, v);
    } else {
        snprintf(why, why_len, "not a prebooking event (task_id)");
    }
    json_decref(body);
    return st;
}

/* "the WHAT after N attempts: WHY" (why cut to 300 bytes of whole characters), into out. */
static void given_up_detail(char *out, size_t n, const char *what, const struct mq_message *m,
                            const char *why)
{
    snprintf(out, n, "the %s after %d attempts: %.*s", what, m->receive_count,
             (int)validate_utf8_prefix(why, 300), why);
}

void prebookings_give_up_submission(struct db_conn *c, const struct mq_message *m, const char *why)
{
    char detail[400];
    given_up_detail(detail, sizeof detail, "submission could not be taken in", m, why);
    const char *v[] = {m->message_id, detail, "Processing failed"};
    PQclear(db_exec(c, &q_task_failed, v, NULL, NULL));
}

void prebookings_give_up(struct db_conn *c, const struct mq_message *m, const char *why)
{
    json_t *body = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "task_id"));
    char detail[400];
    given_up_detail(detail, sizeof detail, "task could not be processed", m, why);
    if (id && ids_is_uuid(id)) {
        const char *v[] = {id, detail, m->message_id};
        PGresult *r = db_exec(c, &q_give_up, v, NULL, NULL);
        PQclear(r);
    }
    json_decref(body);
}
