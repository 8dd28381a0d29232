/* Storing, publishing, gathering and reading RFQs; see include/rydes/rfqs.h. */
#include "rydes/rfqs.h"

#include "rydes/buf.h"
#include "rydes/fmt.h"
#include "rydes/idempotency.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/trace.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An RFQ past its eta reads as done even before the deadline timer has recorded it. */
#define RFQ_COLUMNS                                                                     \
    "id, from_location, to_location, customer, submitted_at, eta, expected_responses, " \
    "status = 'done' OR eta <= now(), coalesce(completion_reason, "                     \
    "CASE WHEN eta <= now() THEN 'timeout' END), coalesce(completed_at, "               \
    "CASE WHEN eta <= now() THEN eta END), "                                            \
    "(SELECT count(*) FROM rfq_quotes q WHERE q.rfq_id = rfqs.id)"

/* RFQ_COLUMNS, and whether the RFQ is past its eta with that not recorded yet. */
static struct db_stmt q_get = DB_STMT(
    "rfq_get",
    "SELECT " RFQ_COLUMNS ", status = 'running' AND eta <= now() FROM rfqs WHERE id = $1", 1);
/* Records the timeout of RFQ $1 past its eta, as the timer would, unless its row is locked (a
 * quote being recorded, or the timer): then nothing, and the RFQ is shown still running. */
static struct db_stmt q_settle =
    DB_STMT("rfq_settle",
            "UPDATE rfqs SET status = 'done', completion_reason = 'timeout', completed_at = eta "
            "WHERE id = (SELECT id FROM rfqs WHERE id = $1 AND status = 'running' AND "
            "eta <= now() FOR NO KEY UPDATE SKIP LOCKED)",
            1);
/* Newest first, for the dashboard (the index of sql/010, partial since sql/056, serves it). */
static struct db_stmt q_list =
    DB_STMT("rfq_list",
            "SELECT " RFQ_COLUMNS ", " DB_PAGE_CURSOR(
                "submitted_at", "id") " FROM rfqs "
                                      "WHERE " DB_PAGE_BEFORE(
                                          "submitted_at", "id",
                                          "uuid") " "
                                                  "ORDER BY submitted_at DESC, id DESC LIMIT $3",
            3);
static struct db_stmt q_quotes = DB_STMT("rfq_quotes",
                                         "SELECT unicorn, price::text, goodies::text, received_at "
                                         "FROM rfq_quotes WHERE rfq_id = $1 "
                                         "ORDER BY price, received_at, unicorn",
                                         1);
/* $1..$7 and the recipients (sql/024) as parameter $R, inserted when cond holds. */
#define RFQ_INSERT(R, cond)                                                             \
    "INSERT INTO rfqs (id, from_location, to_location, customer, submitted_at, eta, "   \
    "expected_responses, status, completed_at, completion_reason, recipients) "         \
    "SELECT $1::uuid, $2::text, $3::text, $4::text, $5::timestamptz, $6::timestamptz, " \
    "$7::int, CASE WHEN $7::int = 0 THEN 'done' ELSE 'running' END, "                   \
    "CASE WHEN $7::int = 0 THEN $5::timestamptz END, "                                  \
    "CASE WHEN $7::int = 0 THEN 'all_answered' END, $" R "::text[] WHERE " cond
static struct db_stmt q_insert = DB_STMT("rfq_insert", RFQ_INSERT("8", "true"), 8);
/* The RFQ and its publish (mq_publish_payload, sql/006) in one statement. */
static struct db_stmt q_submit =
    DB_STMT("rfq_submit",
            "WITH r AS (" RFQ_INSERT("13", "true") " RETURNING id) "
                                                   "SELECT " MQ_PUBLISH_JSON_SQL(
                                                       "8", "9", "10", "11", "12") " FROM r",
            13);
/* The same behind an idempotency key ($14, request hash $15): no row when the key was taken. */
static struct db_stmt q_submit_key = DB_STMT(
    "rfq_submit_key",
    "WITH k AS (INSERT INTO idempotency_keys (scope, key, request_hash, resource_id) "
    "VALUES ('" RFQS_KEY_SCOPE "', $14, $15, $1::uuid) ON CONFLICT DO NOTHING RETURNING 1), "
    "r AS (" RFQ_INSERT("13", "EXISTS (SELECT 1 FROM k)") " RETURNING id) "
                                                          "SELECT " MQ_PUBLISH_JSON_SQL(
                                                              "8", "9", "10", "11", "12") " FROM r",
    15);
static struct db_stmt q_asked = DB_STMT(
    "rfq_asked",
    "SELECT recipients IS NULL OR coalesce($2 = ANY (recipients), false) FROM rfqs WHERE id = $1",
    2);
static struct db_stmt q_add =
    DB_STMT("rfq_add",
            "SELECT rfq_add_quote($1, $2, $3::numeric, $4::jsonb, $5::timestamptz, $6::bigint)", 6);
static struct db_stmt q_expire = DB_STMT("rfq_expire", "SELECT rfq_expire()", 0);

void rfq_clear(struct rfq *r)
{
    free(r->from);
    free(r->to);
    free(r->customer);
    for (int i = 0; i < r->nquotes; i++) {
        free(r->quotes[i].unicorn);
        json_decref(r->quotes[i].goodies);
    }
    free(r->quotes);
    memset(r, 0, sizeof *r);
}

static json_t *links(const struct rfq *r, bool with_result)
{
    char self[80], result[80];
    snprintf(self, sizeof self, "/rfqs/%s/status", r->id);
    snprintf(result, sizeof result, "/rfqs/%s/result", r->id);
    json_t *l = json_pack("{s:s}", "self", self);
    if (with_result)
        json_object_set_new(l, "result", json_string(result));
    return l;
}

json_t *rfq_status_json(const struct rfq *r, bool result_link)
{
    json_t *o =
        json_pack("{s:s, s:s, s:i, s:i}", "id", r->id, "status", r->done ? "done" : "running",
                  "response_count", r->responses, "expected_responses", r->expected);
    if (!r->done)
        json_object_set_new(o, "eta", json_string(r->eta));
    else
        json_object_set_new(o, "completion_reason", json_string(r->reason));
    json_object_set_new(o, "links", links(r, r->done || result_link));
    return o;
}

json_t *rfq_summary_json(const struct rfq *r)
{
    json_t *o = rfq_status_json(r, false);
    json_object_set_new(o, "from", json_string(r->from));
    json_object_set_new(o, "to", json_string(r->to));
    json_object_set_new(o, "customer", json_string(r->customer));
    json_object_set_new(o, "submitted_at", json_string(r->submitted_at));
    if (r->done)
        json_object_set_new(o, "completed_at", json_string(r->completed_at));
    return o;
}

json_t *rfq_result_json(const struct rfq *r)
{
    json_t *quotes = json_array();
    for (int i = 0; i < r->nquotes; i++) {
        const struct rfq_quote *q = &r->quotes[i];
        json_array_append_new(quotes, json_pack("{s:s, s:f, s:O}", "unicorn", q->unicorn, "price",
                                                q->price, "goodies", q->goodies));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:o}", "id", r->id, "status",
                          r->done ? "done" : "running", "from", r->from, "to", r->to, "customer",
                          r->customer, "submitted_at", r->submitted_at, "completed_at",
                          r->done ? r->completed_at : NULL, "quotes", quotes);
    char self[80], status[80];
    snprintf(self, sizeof self, "/rfqs/%s/result", r->id);
    snprintf(status, sizeof status, "/rfqs/%s/status", r->id);
    json_object_set_new(o, "links", json_pack("{s:s, s:s}", "self", self, "status", status));
    return o;
}

static void read_rfq(PGresult *res, int row, struct rfq *r)
{
    snprintf(r->id, sizeof r->id, "%s", PQgetvalue(res, row, 0));
    r->from = xstrdup(PQgetvalue(res, row, 1));
    r->to = xstrdup(PQgetvalue(res, row, 2));
    r->customer = xstrdup(PQgetvalue(res, row, 3));
    db_read_ts(res, row, 4, r->submitted_at);
    db_read_ts(res, row, 5, r->eta);
    r->expected = atoi(PQgetvalue(res, row, 6));
    r->done = PQgetvalue(res, row, 7)[0] == 't';
    snprintf(r->reason, sizeof r->reason, "%s", PQgetvalue(res, row, 8));
    db_read_ts(res, row, 9, r->completed_at);
    r->responses = atoi(PQgetvalue(res, row, 10));
}

static enum mq_status read_quotes(struct db_conn *c, struct rfq *r)
{
    const char *v[] = {r->id};
    PGresult *res = db_exec(c, &q_quotes, v, NULL, NULL);
    if (!db_ok(c, res, PGRES_TUPLES_OK))
        return mq_failed(c, res);
    r->nquotes = PQntuples(res);
    r->quotes = xcalloc((size_t)r->nquotes + 1, sizeof *r->quotes);
    for (int i = 0; i < r->nquotes; i++) {
        struct rfq_quote *q = &r->quotes[i];
        q->unicorn = xstrdup(PQgetvalue(res, i, 0));
        q->price = strtod(PQgetvalue(res, i, 1), NULL);
        q->goodies = json_loads(PQgetvalue(res, i, 2), 0, NULL);
        if (!q->goodies)
            q->goodies = json_array();
        db_read_ts(res, i, 3, q->received_at);
    }
    PQclear(res);
    return MQ_OK;
}

/* RFQs whose timeout a read recorded before the deadline timer did. */
static _Atomic uint64_t settled;

uint64_t rfqs_settled_total(void)
{
    return atomic_load(&settled);
}

/* Reads RFQ id into out; *unsettled tells that it is past its eta with no outcome recorded. */
static enum mq_status read_one(struct db_conn *c, const char *id, struct rfq *out, bool *unsettled)
{
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found) {
        read_rfq(r, 0, out);
        *unsettled = PQgetvalue(r, 0, 11)[0] == 't';
    }
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status rfqs_get(struct db_conn *c, const char *id, bool with_quotes, struct rfq *out)
{
    memset(out, 0, sizeof *out);
    if (!id || !ids_is_uuid(id))
        return MQ_NOT_FOUND;
    bool unsettled = false;
    enum mq_status st = read_one(c, id, out, &unsettled);
    if (st == MQ_OK && unsettled) {
        /* a quote that came in time may still be committing: the timeout is recorded before
         * the RFQ is shown done (a done RFQ never changes), and while the row is locked (that
         * quote, or the timer) it is shown running, to be polled again */
        const char *v[] = {id};
        PGresult *r = db_exec(c, &q_settle, v, NULL, NULL);
        st = db_ok(c, r, PGRES_COMMAND_OK) ? MQ_OK : mq_failed(c, r);
        if (st == MQ_OK) {
            if (strcmp(PQcmdTuples(r), "1") == 0)
                atomic_fetch_add(&settled, 1);
            PQclear(r);
        }
        rfq_clear(out);
        if (st == MQ_OK)
            st = read_one(c, id, out, &unsettled);
        if (st == MQ_OK && unsettled) {
            out->done = false;
            out->reason[0] = out->completed_at[0] = '\0';
        }
    }
    if (st != MQ_OK)
        return st;
    st = with_quotes ? read_quotes(c, out) : MQ_OK;
    if (st != MQ_OK)
        rfq_clear(out);
    return st;
}

enum mq_status rfqs_list(struct db_conn *c, const char *after_us, const char *after_id, int limit,
                         struct rfq **rfqs, int *count, char *next, size_t next_len)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *v[] = {after_us, after_us ? after_id : "00000000-0000-0000-0000-000000000000", lim};
    PGresult *r = db_exec(c, &q_list, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int n = PQntuples(r);
    *count = n > limit ? limit : n;
    *rfqs = xcalloc((size_t)*count + 1, sizeof **rfqs);
    for (int i = 0; i < *count; i++)
        read_rfq(r, i, &(*rfqs)[i]);
    next[0] = '\0';
    if (n > limit)
        snprintf(next, next_len, "%s", PQgetvalue(r, limit - 1, 11));
    PQclear(r);
    return MQ_OK;
}

/* The request published to the unicorns, and its attributes: the correlation id and the
 * return address of the request-response pattern. */
static void request_event(const struct rfq *r, char **body, json_t **attrs)
{
    json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:s}", "rfq_id", r->id, "from", r->from, "to",
                          r->to, "customer", r->customer, "eta", r->eta);
    *body = jsontext_dumps(b, JSON_COMPACT);
    json_decref(b);
    *attrs = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "correlation_id", "type", "String", "value",
                       r->id, "return_address", "type", "String", "value", RFQS_RESPONSES);
    trace_add_attributes(*attrs);
}

/* Is subscription i of set one the publish chose (chose: its plan's tally, one item per
 * subscription of set) whose target is new: a URL, or a queue none of the chosen before it
 * leads to? Two subscriptions to one queue deliver to one consumer, which answers once. */
static bool chosen_once(const struct topic_set *set, const struct mq_publish_tally *chose, int i)
{
    if (!chose->items[i].wanted)
        return false;
    for (int k = 0; k < i && !set->subs[i].url; k++)
        if (chose->items[k].wanted && !set->subs[k].url &&
            set->subs[k].queue_id == set->subs[i].queue_id)
            return false;
    return true;
}

/* The answers an RFQ published to set waits for when it asks no unicorn by name: one per
 * target its publish chose. */
static int targets_chosen(const struct topic_set *set, const struct mq_publish_tally *chose)
{
    int n = 0;
    for (int i = 0; i < set->n; i++)
        n += chosen_once(set, chose, i);
    return n;
}

/* The unicorns an RFQ published to set asks (sql/024): the NAME of every queue rfq-unicorn-NAME
 * among the subscriptions the publish chose, each once, as {"NAME",...} into out (quoted, or a
 * unicorn called NULL would be a null element; queue names hold no '"' or '\\'). Returns how
 * many: the answers the RFQ waits for. 0 (out empty: quotes under any name count) when a chosen
 * subscription is a URL or a queue named otherwise, or none was chosen. */
static int recipients_of(const struct topic_set *set, const struct mq_publish_tally *chose,
                         struct buf *out)
{
    size_t prefix = strlen(RFQS_UNICORN_QUEUE);
    int n = 0;
    buf_init(out);
    for (int i = 0; i < set->n; i++) {
        if (!chose->items[i].wanted)
            continue;
        const char *q = set->subs[i].queue;
        if (set->subs[i].url || strncmp(q, RFQS_UNICORN_QUEUE, prefix) != 0 || !q[prefix]) {
            buf_cleanup(out); /* empty again */
            return 0;
        }
        if (!chosen_once(set, chose, i))
            continue;
        buf_puts(out, n++ ? ",\"" : "{\"");
        buf_puts(out, q + prefix);
        buf_puts(out, "\"");
    }
    if (n)
        buf_puts(out, "}");
    return n;
}

/* Stores r expecting n responses from recipients (a text[] literal, or NULL) inside the
 * caller's transaction. */
static enum mq_status insert(struct db_conn *c, const struct rfq *r, int n, const char *recipients)
{
    char expected[16];
    snprintf(expected, sizeof expected, "%d", n);
    const char *v[] = {r->id,           r->from, r->to,    r->customer,
                       r->submitted_at, r->eta,  expected, recipients};
    PGresult *res = db_exec(c, &q_insert, v, NULL, NULL);
    if (!db_ok(c, res, PGRES_COMMAND_OK))
        return mq_failed(c, res);
    PQclear(res);
    return MQ_OK;
}

/* An RFQ on its way to the database, planned. */
struct submission {
    const struct topic_set *set;
    struct rfq *r;
    const struct mq_publish *p;
    struct mq_publish_plan plan;
    const char *recipients; /* a text[] literal, or NULL */
    int expected;
    bool (*listened)(void *ctx, int queue_id);
    void *ctx;
    struct mq_publish_result *published;
};

/* A publish that is not lean (a URL among the subscriptions, or raw and enveloped ones mixed),
 * in idempotency_run's transaction: publish first, then store the RFQ expecting the answers of
 * its chosen targets (expected), or fewer when fewer were delivered (a queue deleted since the
 * topic was cached). */
static enum mq_status publish_and_insert(struct db_conn *c, void *arg)
{
    struct submission *s = arg;
    enum mq_status st = mq_publish(c, &s->set->topic, s->set->subs, s->set->n, s->p, s->listened,
                                   s->ctx, s->published);
    struct rfq *r = s->r;
    r->expected = s->expected < s->published->deliveries ? s->expected : s->published->deliveries;
    return st == MQ_OK ? insert(c, r, r->expected, s->recipients) : st;
}

/* The RFQ and its publish in one statement (a lean plan), behind key when there is one:
 * *claimed is false when the key was taken. The publish is counted and the fan-out woken once
 * the statement has committed. */
static enum mq_status submit_lean(struct db_conn *c, struct submission *s, const char *key,
                                  const char *hash, bool *claimed)
{
    struct rfq *r = s->r;
    char expected[16];
    snprintf(expected, sizeof expected, "%d", s->expected);
    const char *v[15] = {r->id, r->from, r->to, r->customer, r->submitted_at, r->eta, expected};
    mq_publish_plan_params(&s->plan, &v[7]);
    v[12] = s->recipients;
    v[13] = key;
    v[14] = hash;
    PGresult *res = db_exec(c, key ? &q_submit_key : &q_submit, v, NULL, NULL);
    if (!db_ok(c, res, PGRES_TUPLES_OK))
        return mq_failed(c, res);
    *claimed = PQntuples(res) == 1;
    if (*claimed)
        mq_publish_plan_result(&s->plan, res, 0, s->published);
    PQclear(res);
    r->expected = s->expected;
    return MQ_OK;
}

enum rfqs_outcome rfqs_find_key(struct db_conn *c, const char *key, const char *hash,
                                bool after_claim, struct rfq *out, enum mq_status *st)
{
    char id[IDS_UUID_LEN];
    enum idempotency_match m;
    rfq_clear(out);
    *st = idempotency_find(c, RFQS_KEY_SCOPE, key, hash, id, &m);
    if (*st != MQ_OK)
        return RFQS_FAILED;
    if (m == IDEMPOTENCY_UNKNOWN && !after_claim) {
        *st = MQ_NOT_FOUND;
        return RFQS_FAILED;
    }
    if (m != IDEMPOTENCY_SAME) /* unknown after a claim: swept since, as good as reused */
        return RFQS_KEY_REUSED;
    *st = rfqs_get(c, id, false, out);
    return *st == MQ_OK ? RFQS_REPLAYED : RFQS_FAILED;
}

/* Fills out as the RFQ of in, submitted now. */
static void rfq_new(const struct rfq_input *in, struct rfq *out)
{
    ids_uuid_v7(out->id); /* the primary key: time-ordered */
    out->from = xstrdup(in->from);
    out->to = xstrdup(in->to);
    out->customer = xstrdup(in->customer);
    int64_t now = clock_wall_us();
    clock_format_rfc3339(now, out->submitted_at);
    clock_format_rfc3339(now + (int64_t)in->timeout_s * 1000000, out->eta);
}

enum rfqs_outcome rfqs_submit(struct db_conn *c, const struct topic_set *set,
                              const struct rfq_input *in, const char *key, const char *hash,
                              bool (*listened)(void *ctx, int queue_id), void *ctx, struct rfq *out,
                              struct mq_publish_result *published, enum mq_status *st)
{
    memset(out, 0, sizeof *out);
    memset(published, 0, sizeof *published);
    *st = MQ_NOT_FOUND;
    if (!set)
        return RFQS_FAILED;
    rfq_new(in, out);
    char *body;
    json_t *attrs;
    request_event(out, &body, &attrs);
    struct mq_publish p = {
        .body = body, .body_len = strlen(body), .body_json = true, .attributes = attrs};
    struct submission s = {
        .set = set, .r = out, .p = &p, .listened = listened, .ctx = ctx, .published = published};
    mq_publish_plan(&set->topic, set->subs, set->n, &p, listened, ctx, &s.plan);
    struct buf names;
    int asked = recipients_of(set, &s.plan.tally, &names);
    s.recipients = asked ? buf_str(&names) : NULL;
    s.expected = asked ? asked : targets_chosen(set, &s.plan.tally);
    struct idempotency k = {RFQS_KEY_SCOPE, key, hash, out->id};
    bool claimed;
    *st = s.plan.lean ? submit_lean(c, &s, key, hash, &claimed)
                      : idempotency_run(c, &k, publish_and_insert, &s, &claimed);
    buf_cleanup(&names);
    mq_publish_plan_clear(&s.plan);
    free(body);
    json_decref(attrs);
    if (*st != MQ_OK) {
        rfq_clear(out);
        return RFQS_FAILED;
    }
    if (!claimed)
        return rfqs_find_key(c, key, hash, true, out, st);
    out->done = out->expected == 0;
    if (out->done) {
        snprintf(out->reason, sizeof out->reason, "all_answered");
        memcpy(out->completed_at, out->submitted_at, sizeof out->completed_at);
    }
    return RFQS_SUBMITTED;
}

void rfqs_request_hash(const struct rfq_input *in, char out[IDEMPOTENCY_HASH_LEN])
{
    json_t *canon = json_pack("{s:s, s:s, s:s, s:i}", "from", in->from, "to", in->to, "customer",
                              in->customer, "timeout_in_secs", in->timeout_s);
    idempotency_hash(canon, out);
    json_decref(canon);
}

/* The quote as the message a unicorn sends: {unicorn, price, goodies}. */
static char *quote_text(const struct quote_input *in)
{
    char price[32];
    snprintf(price, sizeof price, "%.2f", in->price);
    json_t *q = json_pack("{s:s, s:f, s:o}", "unicorn", in->unicorn, "price", strtod(price, NULL),
                          "goodies", in->goodies ? json_incref(in->goodies) : json_array());
    char *text = jsontext_dumps(q, JSON_COMPACT);
    json_decref(q);
    return text;
}

enum mq_status rfqs_enqueue_quote(struct db_conn *c, const struct mq_queue *q, const char *id,
                                  const struct quote_input *in, bool notify)
{
    char *text = quote_text(in);
    json_t *attrs = json_pack("{s:{s:s, s:s}}", "correlation_id", "type", "String", "value", id);
    trace_add_attributes(attrs);
    struct mq_send_entry e = {.body = text,
                              .body_len = strlen(text),
                              .body_json = true,
                              .attributes = attrs,
                              .delay_seconds = -1};
    struct mq_send_result res;
    enum mq_status st = mq_send(c, q, &e, 1, &res, notify);
    json_decref(attrs);
    free(text);
    return st;
}

enum mq_status rfqs_add_quote(struct db_conn *c, const char *id, const struct quote_input *in,
                              const char *sent_at, long long seq, enum quote_outcome *outcome)
{
    char price[32], seq_text[FMT_INT_LEN];
    snprintf(price, sizeof price, "%.2f", in->price);
    fmt_int(seq_text, seq);
    char *goodies = in->goodies ? jsontext_dumps(in->goodies, JSON_COMPACT) : NULL;
    const char *v[] = {id, in->unicorn, price, goodies, sent_at, seq_text};
    PGresult *r = db_exec(c, &q_add, v, NULL, NULL);
    free(goodies);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    const char *o = PQgetvalue(r, 0, 0);
    *outcome = strcmp(o, "stored") == 0       ? QUOTE_STORED
               : strcmp(o, "completed") == 0  ? QUOTE_COMPLETED
               : strcmp(o, "unknown") == 0    ? QUOTE_UNKNOWN
               : strcmp(o, "not_asked") == 0  ? QUOTE_NOT_ASKED
               : strcmp(o, "superseded") == 0 ? QUOTE_SUPERSEDED
                                              : QUOTE_FINISHED;
    PQclear(r);
    return MQ_OK;
}

enum mq_status rfqs_asked(struct db_conn *c, const char *id, const char *unicorn, bool *asked)
{
    const char *v[] = {id, unicorn};
    PGresult *r = db_exec(c, &q_asked, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    *asked = found && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status rfqs_expire(struct db_conn *c, int *n)
{
    PGresult *r = db_exec(c, &q_expire, NULL, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return MQ_OK;
}

void rfqs_unicorn_name(int i, char *out, size_t n)
{
    static const char *const names[] = {"shadowfax", "sparkle",  "stardust", "moonbeam", "rainbow",
                                        "glitter",   "twilight", "blaze",    "comet",    "nimbus"};
    if (i >= 0 && i < (int)(sizeof names / sizeof *names))
        snprintf(out, n, "%s", names[i]);
    else
        snprintf(out, n, "unicorn-%d", i + 1);
}
