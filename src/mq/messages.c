/* The message data plane: send, receive, delete, change visibility, peek, redrive; see
 * include/rydes/mq.h and the SQL functions of sql/002_queues.sql they call.
 *
 * Batches travel as one JSON parameter expanded by json_to_recordset, so a batch of ten costs
 * one round trip and one statement, whatever its size. Every send NOTIFYs channel rydes_mq with
 * the queue id, in the sending transaction, which is what wakes long polls (src/mq/notify.c). */
#include "common.h"

#include "rydes/mem.h"
#include "rydes/secret.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct db_stmt q_send = DB_STMT(
    "mq_send",
    "WITH ins AS (INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, "
    "attributes) SELECT $1, now() + make_interval(secs => x.delay), x.message_id, x.body_json, "
    "x.body, x.attributes FROM json_to_recordset($2::json) AS x(message_id uuid, delay int, "
    "body text, body_json boolean, attributes jsonb) RETURNING id) "
    "SELECT count(*), pg_notify('rydes_mq', $1::text) FROM ins",
    2);
static struct db_stmt q_send_fifo =
    DB_STMT("mq_send_fifo",
            "SELECT ord, message_id, sequence, duplicate FROM mq_send_fifo($1, $2::json) "
            "ORDER BY ord",
            2);
static struct db_stmt q_receive =
    DB_STMT("mq_receive",
            "SELECT " MQ_MESSAGE_COLUMNS " FROM mq_receive($1, $2, $3, $4, $5) m ORDER BY m.id", 5);
static struct db_stmt q_delete = DB_STMT("mq_delete", "SELECT mq_delete($1, $2, $3)", 3);
static struct db_stmt q_visibility =
    DB_STMT("mq_visibility", "SELECT mq_change_visibility($1, $2, $3, $4)", 4);
static struct db_stmt q_peek =
    DB_STMT("mq_peek",
            "SELECT m.id, m.message_id, NULL, m.body, m.body_json, m.attributes, m.receive_count, "
            "rfc3339(m.sent_at), rfc3339(m.first_received_at), rfc3339(m.visible_at), "
            "mq_state(m.visible_at, m.receive_count), m.group_id "
            "FROM messages m WHERE m.queue_id = $1 ORDER BY m.id LIMIT $2",
            2);
static struct db_stmt q_redrive = DB_STMT("mq_redrive", "SELECT mq_redrive($1, $2, $3)", 3);

void mq_receipt_encode(long long id, unsigned long long nonce, char *out)
{
    snprintf(out, MQ_RECEIPT_LEN, "%016llx%016llx", (unsigned long long)id, nonce);
}

bool mq_receipt_decode(const char *receipt, long long *id, unsigned long long *nonce)
{
    if (strlen(receipt) != 32)
        return false;
    for (int i = 0; i < 32; i++)
        if (!strchr("0123456789abcdef", receipt[i]) || !receipt[i])
            return false;
    char part[17];
    memcpy(part, receipt, 16);
    part[16] = '\0';
    unsigned long long raw_id = strtoull(part, NULL, 16);
    *nonce = strtoull(receipt + 16, NULL, 16);
    if (raw_id > INT64_MAX || *nonce > INT64_MAX)
        return false;
    *id = (long long)raw_id;
    return true;
}

/* A receive nonce: 63 random bits, so it fits PostgreSQL's signed bigint. */
static unsigned long long fresh_nonce(void)
{
    unsigned long long n;
    ids_random(&n, sizeof n);
    return n & (unsigned long long)INT64_MAX;
}

static json_t *entry_json(const struct mq_queue *q, const struct mq_send_entry *e,
                          const char *message_id)
{
    int delay = e->delay_seconds >= 0 ? e->delay_seconds : q->attrs.delay_seconds;
    json_t *o = json_pack("{s:s, s:i, s:s%, s:b}", "message_id", message_id, "delay", delay, "body",
                          e->body, e->body_len, "body_json", e->body_json);
    if (!o)
        rydes_oom();
    if (e->attributes)
        json_object_set(o, "attributes", e->attributes);
    if (q->attrs.fifo) {
        char sha[65];
        const char *dedup = e->dedup_id;
        if (!dedup) {
            secret_sha256_hex(e->body, e->body_len, sha);
            dedup = sha;
        }
        json_object_set_new(o, "group_id", json_string(e->group_id));
        json_object_set_new(o, "dedup_id", json_string(dedup));
    }
    return o;
}

/* Builds the JSON batch parameter and fills each result's message id. Caller frees. */
static char *batch_param(const struct mq_queue *q, const struct mq_send_entry *entries, int n,
                         struct mq_send_result *results)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        ids_uuid(results[i].message_id);
        json_array_append_new(arr, entry_json(q, &entries[i], results[i].message_id));
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text)
        rydes_oom();
    return text;
}

enum mq_status mq_send(struct db_conn *c, const struct mq_queue *q,
                       const struct mq_send_entry *entries, int n, struct mq_send_result *results)
{
    char id[16];
    snprintf(id, sizeof id, "%d", q->id);
    char *batch = batch_param(q, entries, n, results);
    const char *v[] = {id, batch};
    PGresult *r = db_exec(c, q->attrs.fifo ? &q_send_fifo : &q_send, v, NULL, NULL);
    free(batch);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    if (q->attrs.fifo) {
        for (int i = 0; i < PQntuples(r) && i < n; i++) {
            mq_copy(results[i].message_id, sizeof results[i].message_id, r, i, 1);
            results[i].sequence = atoll(PQgetvalue(r, i, 2));
            results[i].duplicate = PQgetvalue(r, i, 3)[0] == 't';
        }
    }
    PQclear(r);
    return MQ_OK;
}

/* Reads every row of r as a message into a new array. */
static void read_messages(PGresult *r, struct mq_message **msgs, int *count)
{
    *count = PQntuples(r);
    *msgs = xcalloc((size_t)(*count ? *count : 1), sizeof **msgs);
    for (int i = 0; i < *count; i++)
        mq_read_message(r, i, &(*msgs)[i]);
}

enum mq_status mq_receive(struct db_conn *c, const struct mq_queue *q, int max,
                          int visibility_timeout, bool delete_now, struct mq_message **msgs,
                          int *count)
{
    char id[16], mx[16], vt[16], nonce[24];
    snprintf(id, sizeof id, "%d", q->id);
    snprintf(mx, sizeof mx, "%d", max);
    snprintf(vt, sizeof vt, "%d", visibility_timeout);
    snprintf(nonce, sizeof nonce, "%llu", fresh_nonce());
    const char *v[] = {id, mx, vt, nonce, delete_now ? "t" : "f"};
    PGresult *r = db_exec(c, &q_receive, v, NULL, NULL);
    *msgs = NULL;
    *count = 0;
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    read_messages(r, msgs, count);
    PQclear(r);
    return MQ_OK;
}

/* Runs mq_delete or mq_change_visibility and maps its 0/1/2 answer. */
static enum mq_status by_receipt(struct db_conn *c, struct db_stmt *st, const struct mq_queue *q,
                                 const char *receipt, const char *seconds, bool gone_ok)
{
    long long mid;
    unsigned long long nonce;
    if (!mq_receipt_decode(receipt, &mid, &nonce))
        return MQ_NOT_FOUND;
    char qid[16], idtext[24], ntext[24];
    snprintf(qid, sizeof qid, "%d", q->id);
    snprintf(idtext, sizeof idtext, "%lld", mid);
    snprintf(ntext, sizeof ntext, "%llu", nonce);
    const char *v[] = {qid, idtext, ntext, seconds};
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int outcome = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (outcome == 0)
        return MQ_OK;
    if (outcome == 1)
        return MQ_CONFLICT;
    return gone_ok ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_delete(struct db_conn *c, const struct mq_queue *q, const char *receipt)
{
    return by_receipt(c, &q_delete, q, receipt, NULL, true);
}

enum mq_status mq_change_visibility(struct db_conn *c, const struct mq_queue *q,
                                    const char *receipt, int seconds)
{
    char s[16];
    snprintf(s, sizeof s, "%d", seconds);
    return by_receipt(c, &q_visibility, q, receipt, s, false);
}

enum mq_status mq_peek(struct db_conn *c, const struct mq_queue *q, int limit,
                       struct mq_message **msgs, int *count)
{
    char id[16], l[16];
    snprintf(id, sizeof id, "%d", q->id);
    snprintf(l, sizeof l, "%d", limit);
    const char *v[] = {id, l};
    PGresult *r = db_exec(c, &q_peek, v, NULL, NULL);
    *msgs = NULL;
    *count = 0;
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    read_messages(r, msgs, count);
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_redrive(struct db_conn *c, const struct mq_queue *dlq, const struct mq_queue *to,
                          long long max, long long *moved)
{
    char id[16], t[16], m[24];
    snprintf(id, sizeof id, "%d", dlq->id);
    snprintf(t, sizeof t, "%d", to ? to->id : 0);
    snprintf(m, sizeof m, "%lld", max > 0 ? max : INT64_MAX);
    const char *v[] = {id, to ? t : NULL, m};
    PGresult *r = db_exec(c, &q_redrive, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *moved = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return MQ_OK;
}
