/* The message data plane: send, receive, delete, change visibility, peek, redrive; see
 * include/rydes/mq.h and the SQL of sql/002_queues.sql.
 *
 * The hot paths of standard queues are single prepared statements: a send (of one message or a
 * batch, or the single sends the combiner gathered) is one multi-row INSERT, a receive one claim
 * (SKIP LOCKED, lease update and dead-letter move in one statement), a delete one DELETE. FIFO
 * queues, at-most-once receives and the rarer operations call the plpgsql functions; FIFO
 * batches travel as one JSON parameter expanded by json_to_recordset. A send
 * NOTIFYs channel rydes_mq only when some process has long polls waiting on the queue (table
 * queue_listeners, kept by src/mq/hub.c): NOTIFY serialises commits, so idle queues skip it.
 *
 * Claims start a little before the lowest id this process claimed last on the queue instead of
 * at the queue's first row: the rows in front of the head are deleted messages whose index
 * entries vacuum has not yet removed, and walking them on every claim is what makes the
 * textbook SKIP LOCKED queue slow down with churn. A message that becomes visible again behind
 * that point (lease expired, visibility set to 0) is found by the full scan every process makes
 * at least once per MQ_FULL_SCAN_US per queue. */
#include "common.h"

#include "rydes/buf.h"
#include "rydes/fmt.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/mq_counters.h"
#include "rydes/secret.h"

#include "rydes/clock.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How far before the last claimed id a claim starts, in ids: covers ids handed out before
 * the claim but committed after it. */
#define MQ_HINT_MARGIN  1000
#define MQ_FULL_SCAN_US 1000000
#define MQ_HINT_SLOTS   256

/* The receipt a claim gives message ID under the claim's random NONCE: 63 bits of SHA-224 over
 * both, so that the receipts a combined claim deals out to different requests
 * (rydes/mq_combiner.h) do not reveal one another. (It was hashint8extended, which is not
 * cryptographic: from one receipt and its id half a minute's search found the nonce, and with
 * it the receipts of the neighbouring messages of the claim. SHA-224 costs about a
 * microsecond a message more.) */
#define MQ_RECEIPT_SQL(id, nonce)                                                     \
    "(('x' || encode(substr(sha224(int8send(" id ") || int8send(" nonce ")), 1, 8), " \
    "'hex'))::bit(64)::bigint & 9223372036854775807)"

/* $1 queue, $2 first id to look at, $3 max, $4 visibility, $5 nonce, $6 max receive count.
 * Claims and leases the oldest visible messages in one statement; a message already received
 * $6 times is leased without counting and flagged exhausted: the caller moves it to the
 * dead-letter queue (q_dead_letter) instead of delivering it. The locked rows are joined back
 * by ctid, which the lock keeps stable: a TID scan whatever the queue's statistics say (see
 * sql/012_claim_by_ctid.sql). */
/* (unformatted: clang-format breaks the MQ_RECEIPT_SQL calls in the concatenated SQL apart) */
/* clang-format off */
static struct db_stmt q_claim = DB_STMT(
    "mq_claim",
    "WITH c AS (SELECT m.ctid AS t, m.id, m.receive_count AS rc0 FROM messages m "
    "WHERE m.queue_id = $1 "
    "AND m.id >= $2 AND m.visible_at <= now() ORDER BY m.id LIMIT $3 FOR UPDATE SKIP LOCKED) "
    "UPDATE messages m SET visible_at = now() + make_interval(secs => $4), "
    "receive_count = m.receive_count + (c.rc0 < $6)::int, "
    "receipt = " MQ_RECEIPT_SQL("m.id", "$5") ", "
    "first_received_at = coalesce(m.first_received_at, now()) "
    "FROM c WHERE m.ctid = c.t "
    "RETURNING " MQ_MESSAGE_COLUMNS ", c.rc0 >= $6",
    6);
/* Moves leased messages $2 (claimed under nonce $3) of queue $1 to dead-letter queue $4, if $4
 * still is the queue's dead-letter queue: the caller's copy of the queue may be a second old,
 * and a deleted or replaced one would take the messages with it. The dead-letter queue's row is
 * locked against deletion until the move commits; one being deleted (its row locked) is
 * skipped, not waited for: the messages stay leased, as when the move fails. The rows are found
 * by one index probe per id and deleted by ctid: `queue_id = $1 AND id = ANY ($2)`, planned
 * once per connection while the queue was nearly empty, scanned the whole queue by queue_id. */
static struct db_stmt q_dead_letter = DB_STMT(
    "mq_dead_letter",
    "WITH d AS (SELECT d.id FROM queues s JOIN queues d ON d.id = s.dead_letter_queue_id "
    "WHERE s.id = $1 AND d.id = $4 FOR KEY SHARE OF d SKIP LOCKED), "
    "moved AS (DELETE FROM messages m WHERE m.ctid = ANY (ARRAY(SELECT (SELECT x.ctid "
    "FROM messages x WHERE x.queue_id = $1 AND x.id = i) FROM unnest($2::bigint[]) i)) "
    "AND m.receipt = " MQ_RECEIPT_SQL("m.id", "$3") " AND EXISTS (SELECT 1 FROM d) "
    "RETURNING m.*) "
    "INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at, "
    "message_id, group_id, source_queue_id, body_json, body, attributes, payload_id) "
    "SELECT $4, now(), receive_count, first_received_at, sent_at, message_id, group_id, $1, "
    "body_json, body, attributes, payload_id FROM moved ORDER BY id",
    4);
/* clang-format on */
static struct db_stmt q_delete_fast = DB_STMT(
    "mq_delete_fast", "DELETE FROM messages WHERE queue_id = $1 AND id = $2 AND receipt = $3", 3);
static struct db_stmt q_exists = DB_STMT(
    "mq_exists", "SELECT EXISTS (SELECT 1 FROM messages WHERE queue_id = $1 AND id = $2)", 2);
static struct db_stmt q_send_fifo =
    DB_STMT("mq_send_fifo",
            "SELECT ord, message_id, sequence, duplicate FROM mq_send_fifo($1, $2::json) "
            "ORDER BY ord",
            2);
static struct db_stmt q_receive =
    DB_STMT("mq_receive",
            "SELECT " MQ_MESSAGE_COLUMNS " FROM mq_receive($1, $2, $3, $4, $5) m ORDER BY m.id", 5);

/* Per-process claim hints, by queue id (a slot shared by two queues just scans fully). */
static struct {
    _Atomic int queue_id;
    _Atomic long long from;
    _Atomic int64_t full_at_us;
} hints[MQ_HINT_SLOTS];

/* Where a claim on queue_id starts: 0 (a full scan) at least once per MQ_FULL_SCAN_US. */
static long long hint_from(int queue_id)
{
    unsigned slot = (unsigned)queue_id % MQ_HINT_SLOTS;
    int64_t now = clock_mono_us();
    if (atomic_load(&hints[slot].queue_id) != queue_id ||
        now - atomic_load(&hints[slot].full_at_us) > MQ_FULL_SCAN_US) {
        atomic_store(&hints[slot].full_at_us, now);
        atomic_store(&hints[slot].queue_id, queue_id);
        return 0;
    }
    long long from = atomic_load(&hints[slot].from) - MQ_HINT_MARGIN;
    return from > 0 ? from : 0;
}

/* A message behind the hint will be visible again: claims must start at it. */
static void hint_lower(int queue_id, long long id)
{
    unsigned slot = (unsigned)queue_id % MQ_HINT_SLOTS;
    if (atomic_load(&hints[slot].queue_id) == queue_id && atomic_load(&hints[slot].from) > id)
        atomic_store(&hints[slot].from, id);
}

static void hint_update(int queue_id, long long lowest_claimed)
{
    unsigned slot = (unsigned)queue_id % MQ_HINT_SLOTS;
    if (atomic_load(&hints[slot].queue_id) == queue_id)
        atomic_store(&hints[slot].from, lowest_claimed);
}
static struct db_stmt q_delete = DB_STMT("mq_delete", "SELECT mq_delete($1, $2, $3)", 3);
static struct db_stmt q_hold = DB_STMT("mq_hold", "SELECT mq_hold($1, $2, $3)", 3);
static struct db_stmt q_visibility =
    DB_STMT("mq_visibility", "SELECT mq_change_visibility($1, $2, $3, $4)", 4);
static struct db_stmt q_release_unreceived =
    DB_STMT("mq_release_unreceived", "SELECT mq_release_unreceived($1, $2, $3)", 3);
/* $1 queue, $2 max messages, $3 max bytes, $4 the id to start after: the first messages of the
 * queue after $4, up to $2 and for as long as the bodies and attributes before a message stay
 * under $3 (the first one always), so that a peek of large messages cannot fill the gateway's
 * memory. */
static struct db_stmt q_peek = DB_STMT(
    "mq_peek",
    "SELECT p.id, p.message_id, NULL, p.body, p.body_json, p.attributes, p.receive_count, "
    "p.sent_at, p.first_received_at, p.visible_at, p.state, p.group_id FROM ("
    "SELECT x.*, sum(x.size) OVER (ORDER BY x.id) - x.size AS before FROM ("
    "SELECT y.*, octet_length(y.body) + coalesce(octet_length(y.attributes::text), 0) AS size "
    "FROM (SELECT m.id, m.message_id, " MQ_BODY_SQL " AS body, m.body_json, m.attributes, "
    "m.receive_count, m.sent_at, m.first_received_at, m.visible_at, "
    "mq_state(m.visible_at, m.receive_count) AS state, m.group_id "
    "FROM messages m WHERE m.queue_id = $1 AND m.id > $4 ORDER BY m.id LIMIT $2) y) x) p "
    "WHERE p.before < $3 ORDER BY p.id",
    4);
/* $1 queue, $2 id: is there a message after $2 (so a peek that ended there has a next page)? */
static struct db_stmt q_peek_more = DB_STMT(
    "mq_peek_more",
    "SELECT EXISTS (SELECT 1 FROM messages WHERE queue_id = $1 AND id > $2 ORDER BY id LIMIT 1)",
    2);
static struct db_stmt q_redrive_upto =
    DB_STMT("mq_redrive_upto", /* not max(id): planned on an empty queue, that read it all */
            "SELECT coalesce((SELECT id FROM messages WHERE queue_id = $1 ORDER BY id DESC "
            "LIMIT 1), 0)",
            1);
static struct db_stmt q_redrive_some =
    DB_STMT("mq_redrive_some", "SELECT moved, last_id FROM mq_redrive_some($1, $2, $3, $4, $5)", 5);

void mq_receipt_encode(int queue_id, long long id, unsigned long long nonce, char *out)
{
    /* "%08x%016llx%016llx" */
    fmt_hex(out, (unsigned)queue_id, 8);
    fmt_hex(out + 8, (unsigned long long)id, 16);
    fmt_hex(out + 24, nonce, 16);
}

/* The value of n lower-case hex digits of s in *out; false at any other character. */
static bool hex_field(const char *s, int n, unsigned long long *out)
{
    unsigned long long v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16;
        if (d == 16)
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

bool mq_receipt_decode(const char *receipt, int *queue_id, long long *id, unsigned long long *nonce)
{
    unsigned long long q, raw_id;
    if (strnlen(receipt, MQ_RECEIPT_LEN) != MQ_RECEIPT_LEN - 1 || !hex_field(receipt, 8, &q) ||
        !hex_field(receipt + 8, 16, &raw_id) || !hex_field(receipt + 24, 16, nonce))
        return false;
    if (q > INT32_MAX || raw_id > INT64_MAX || *nonce > INT64_MAX)
        return false;
    *queue_id = (int)q;
    *id = (long long)raw_id;
    return true;
}

/* The statement parameters of a receipt of queue q; false when it is not one of q's. */
struct receipt_params {
    char qid[FMT_INT_LEN], id[FMT_INT_LEN], nonce[FMT_INT_LEN];
    long long message_id;
};

static bool receipt_params(const struct mq_queue *q, const char *receipt, struct receipt_params *p)
{
    int queue_id;
    unsigned long long nonce;
    if (!mq_receipt_decode(receipt, &queue_id, &p->message_id, &nonce) || queue_id != q->id)
        return false;
    fmt_int(p->qid, q->id);
    fmt_int(p->id, p->message_id);
    fmt_uint(p->nonce, nonce);
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
    char sha[65];
    const char *dedup = e->dedup_id;
    if (!dedup) {
        secret_sha256_hex(e->body, e->body_len, sha);
        dedup = sha;
    }
    json_object_set_new(o, "group_id", json_string(e->group_id));
    json_object_set_new(o, "dedup_id", json_string(dedup));
    return o;
}

/* Builds the JSON batch parameter of a FIFO send and fills each result's message id. Caller
 * frees. */
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

/* The sends of standard queues: "INSERT ... VALUES (6 parameters per message), ...", one
 * statement per message count, and the same with a NOTIFY of the queue in parameter 6n+1 for
 * queues some process long-polls (NOTIFY serialises commits, so the others skip it). A process
 * whose cache still knows a queue another process has just deleted may send to it for up to a
 * second; the sweeper deletes such messages (table deleted_queues). */
static struct db_stmt q_send_rows[2][MQ_MAX_ROWS];
static char q_send_rows_name[2][MQ_MAX_ROWS][32];
static pthread_once_t q_send_rows_once = PTHREAD_ONCE_INIT;

static void send_rows_prepare(void)
{
    for (int notify = 0; notify < 2; notify++)
        for (int n = 1; n <= MQ_MAX_ROWS; n++) {
            struct buf b;
            buf_init(&b);
            buf_puts(&b, notify ? "WITH ins AS (" : "");
            buf_puts(&b, "INSERT INTO messages (queue_id, visible_at, message_id, body_json, "
                         "body, attributes) VALUES ");
            for (int i = 0, p = 1; i < n; i++, p += 6)
                buf_printf(&b,
                           "%s($%d::int, now() + make_interval(secs => $%d::int), $%d::uuid, "
                           "$%d::boolean, $%d::text, $%d::jsonb)",
                           i ? ", " : "", p, p + 1, p + 2, p + 3, p + 4, p + 5);
            if (notify)
                buf_printf(&b,
                           " RETURNING 1) SELECT count(*), pg_notify('rydes_mq', $%d::text) "
                           "FROM ins",
                           6 * n + 1);
            char *name = q_send_rows_name[notify][n - 1];
            snprintf(name, sizeof q_send_rows_name[0][0], "mq_send_rows%s_%d",
                     notify ? "_notify" : "", n);
            q_send_rows[notify][n - 1].name = name;
            q_send_rows[notify][n - 1].sql = buf_steal(&b); /* lives as long as the process */
            q_send_rows[notify][n - 1].nparams = 6 * n + notify;
        }
}

/* The formatted parameters of one row (attrs is malloc'd by jsontext_dumps and freed after use). */
struct row_params {
    char id[FMT_INT_LEN], delay[FMT_INT_LEN];
    char *attrs;
};

enum mq_status mq_send_rows(struct db_conn *c, const struct mq_send_row *rows, int n,
                            int notify_queue)
{
    assert(n >= 1 && n <= MQ_MAX_ROWS);
    pthread_once(&q_send_rows_once, send_rows_prepare);
    struct row_params p[MQ_MAX_ROWS];
    const char *v[6 * MQ_MAX_ROWS + 1];
    int len[6 * MQ_MAX_ROWS + 1] = {0};
    char notify[FMT_INT_LEN];
    for (int i = 0; i < n; i++) {
        const struct mq_queue *q = rows[i].q;
        const struct mq_send_entry *e = rows[i].e;
        memset(rows[i].result, 0, sizeof *rows[i].result);
        ids_uuid(rows[i].result->message_id);
        fmt_int(p[i].id, q->id);
        fmt_int(p[i].delay, e->delay_seconds >= 0 ? e->delay_seconds : q->attrs.delay_seconds);
        p[i].attrs = e->attributes ? jsontext_dumps(e->attributes, JSON_COMPACT) : NULL;
        const char *row[] = {
            p[i].id, p[i].delay, rows[i].result->message_id, e->body_json ? "t" : "f",
            e->body, p[i].attrs};
        memcpy(&v[6 * i], row, sizeof row);
        len[6 * i + 4] = (int)e->body_len;
    }
    if (notify_queue) { /* the parameter only the NOTIFY variant has */
        fmt_int(notify, notify_queue);
        v[6 * n] = notify;
    }
    PGresult *r = db_exec(c, &q_send_rows[notify_queue != 0][n - 1], v, len, NULL);
    for (int i = 0; i < n; i++)
        free(p[i].attrs);
    if (!db_ok(c, r, notify_queue ? PGRES_TUPLES_OK : PGRES_COMMAND_OK))
        return mq_failed(c, r);
    PQclear(r);
    for (int i = 0; i < n; i++)
        mq_count_queue(rows[i].q->id, MQC_SENT, 1);
    return MQ_OK;
}

enum mq_status mq_send(struct db_conn *c, const struct mq_queue *q,
                       const struct mq_send_entry *entries, int n, struct mq_send_result *results,
                       bool notify)
{
    if (!q->attrs.fifo) {
        struct mq_send_row rows[MQ_MAX_BATCH];
        for (int i = 0; i < n; i++)
            rows[i] = (struct mq_send_row){q, &entries[i], &results[i]};
        return mq_send_rows(c, rows, n, notify ? q->id : 0);
    }
    char id[16];
    snprintf(id, sizeof id, "%d", q->id);
    char *batch = batch_param(q, entries, n, results);
    const char *v[] = {id, batch};
    PGresult *r = db_exec(c, &q_send_fifo, v, NULL, NULL);
    free(batch);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int sent = n;
    for (int i = 0; i < PQntuples(r) && i < n; i++) {
        mq_copy(results[i].message_id, sizeof results[i].message_id, r, i, 1);
        results[i].sequence = atoll(PQgetvalue(r, i, 2));
        results[i].duplicate = PQgetvalue(r, i, 3)[0] == 't';
        sent -= results[i].duplicate;
    }
    PQclear(r);
    mq_count_queue(q->id, MQC_SENT, (uint64_t)sent);
    return MQ_OK;
}

/* Reads every row of r as a message into a new array. */
static void read_messages(PGresult *r, int queue_id, struct mq_message **msgs, int *count)
{
    *count = PQntuples(r);
    *msgs = xcalloc((size_t)(*count ? *count : 1), sizeof **msgs);
    for (int i = 0; i < *count; i++)
        mq_read_message(r, i, queue_id, &(*msgs)[i]);
}

static long long lowest_id(const struct mq_message *msgs, int n)
{
    long long low = msgs[0].id;
    for (int i = 1; i < n; i++)
        if (msgs[i].id < low)
            low = msgs[i].id;
    return low;
}

static int by_id(const void *a, const void *b)
{
    long long x = ((const struct mq_message *)a)->id, y = ((const struct mq_message *)b)->id;
    return (x > y) - (x < y);
}

/* The claim of a standard queue, from this process's hint. */
static PGresult *claim(struct db_conn *c, const struct mq_queue *q, const char *id, const char *mx,
                       const char *vt, const char *nonce)
{
    char from[FMT_INT_LEN], mrc[FMT_INT_LEN];
    fmt_int(from, hint_from(q->id));
    fmt_int(mrc, q->dead_letter_queue_id ? q->attrs.max_receive_count : INT32_MAX);
    const char *v[] = {id, from, mx, vt, nonce, mrc};
    return db_exec(c, &q_claim, v, NULL, NULL);
}

/* Moves the exhausted messages of a claim to the dead-letter queue and drops them from msgs;
 * returns how many moved. If the move fails, or the dead-letter queue is no longer the queue's,
 * they stay leased, and a receive after their lease moves them (or delivers them, once the queue
 * has none). */
static int dead_letter(struct db_conn *c, const struct mq_queue *q, PGresult *r, const char *nonce,
                       struct mq_message *msgs, int *count)
{
    struct buf ids;
    buf_init(&ids);
    int kept = 0, moved = 0;
    for (int i = 0; i < *count; i++) {
        if (PQgetvalue(r, i, MQ_MESSAGE_NCOLUMNS)[0] == 't') {
            buf_printf(&ids, "%s%lld", ids.len ? "," : "{", msgs[i].id);
            mq_messages_clear(&msgs[i]);
        } else {
            msgs[kept++] = msgs[i];
        }
    }
    if (ids.len) {
        buf_puts(&ids, "}");
        char qid[16], dlq[16];
        snprintf(qid, sizeof qid, "%d", q->id);
        snprintf(dlq, sizeof dlq, "%d", q->dead_letter_queue_id);
        const char *v[] = {qid, buf_str(&ids), nonce, dlq};
        PGresult *m = db_exec(c, &q_dead_letter, v, NULL, NULL);
        if (db_ok(c, m, PGRES_COMMAND_OK))
            moved = atoi(PQcmdTuples(m));
        PQclear(m);
    }
    buf_cleanup(&ids);
    *count = kept;
    return moved;
}

/* One claim of a standard queue: exhausted messages go to the dead-letter queue and out of
 * msgs. Returns how many went there (not those whose move was refused: they stay leased, and
 * looking again at once would only claim them again when the lease is 0); -1 with *st set when
 * the claim failed. */
static int claim_once(struct db_conn *c, const struct mq_queue *q, const char *id, const char *mx,
                      const char *vt, const char *nonce, struct mq_message **msgs, int *count,
                      enum mq_status *st)
{
    PGresult *r = claim(c, q, id, mx, vt, nonce);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        *st = mq_failed(c, r);
        return -1;
    }
    read_messages(r, q->id, msgs, count);
    if (*count > 0)
        hint_update(q->id, lowest_id(*msgs, *count));
    int moved = q->dead_letter_queue_id ? dead_letter(c, q, r, nonce, *msgs, count) : 0;
    mq_count_queue(q->id, MQC_DEAD_LETTERED, (uint64_t)moved);
    PQclear(r);
    qsort(*msgs, (size_t)*count, sizeof **msgs, by_id); /* UPDATE ... RETURNING has no order */
    return moved;
}

/* Counts what a receive handed out (and, with delete_now, deleted at once). */
static void count_received(const struct mq_queue *q, const struct mq_message *msgs, int n,
                           bool delete_now)
{
    int again = 0;
    for (int i = 0; i < n; i++)
        again += msgs[i].receive_count > 1;
    mq_count_queue(q->id, MQC_RECEIVED, (uint64_t)n);
    mq_count_queue(q->id, MQC_REDELIVERED, (uint64_t)again);
    if (delete_now)
        mq_count_queue(q->id, MQC_DELETED, (uint64_t)n);
}

static enum mq_status receive(struct db_conn *c, const struct mq_queue *q, int max,
                              int visibility_timeout, bool delete_now, struct mq_message **msgs,
                              int *count, int *moved);

enum mq_status mq_receive(struct db_conn *c, const struct mq_queue *q, int max,
                          int visibility_timeout, bool delete_now, struct mq_message **msgs,
                          int *count)
{
    int moved;
    enum mq_status st = receive(c, q, max, visibility_timeout, delete_now, msgs, count, &moved);
    if (st == MQ_OK)
        count_received(q, *msgs, *count, delete_now);
    return st;
}

enum mq_status mq_receive_moving(struct db_conn *c, const struct mq_queue *q, int max,
                                 int visibility_timeout, struct mq_message **msgs, int *count,
                                 int *moved)
{
    enum mq_status st = receive(c, q, max, visibility_timeout, false, msgs, count, moved);
    if (st == MQ_OK)
        count_received(q, *msgs, *count, false);
    return st;
}

static enum mq_status receive(struct db_conn *c, const struct mq_queue *q, int max,
                              int visibility_timeout, bool delete_now, struct mq_message **msgs,
                              int *count, int *moved)
{
    char id[FMT_INT_LEN], mx[FMT_INT_LEN], vt[FMT_INT_LEN], nonce[FMT_INT_LEN];
    fmt_int(id, q->id);
    fmt_int(mx, max);
    fmt_int(vt, visibility_timeout);
    fmt_uint(nonce, fresh_nonce());
    *msgs = NULL;
    *count = 0;
    *moved = 0;
    if (!q->attrs.fifo && !delete_now) {
        enum mq_status st = MQ_OK;
        /* a claim that met only exhausted messages looks again (a few times), so dead letters
         * at the head never make a receive come back empty while deliverable messages wait */
        for (int attempt = 0; attempt < 3; attempt++) {
            mq_messages_free(*msgs, *count);
            int n = claim_once(c, q, id, mx, vt, nonce, msgs, count, &st);
            if (n < 0) {
                *msgs = NULL;
                *count = 0;
                return st;
            }
            *moved += n;
            if (*count > 0 || n == 0)
                break;
        }
        return MQ_OK;
    }
    const char *v[] = {id, mx, vt, nonce, delete_now ? "t" : "f"};
    PGresult *r = db_exec(c, &q_receive, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    read_messages(r, q->id, msgs, count);
    PQclear(r);
    return MQ_OK;
}

/* Runs mq_delete, mq_change_visibility or mq_hold (which take no seconds) and maps its 0/1/2
 * answer; *done (may be NULL) tells 0 (the message was changed) from a message already gone
 * that gone_ok answers MQ_OK. */
static enum mq_status by_receipt(struct db_conn *c, struct db_stmt *st, const struct mq_queue *q,
                                 const char *receipt, const char *seconds, bool gone_ok, bool *done)
{
    if (done)
        *done = false;
    struct receipt_params p;
    if (!receipt_params(q, receipt, &p))
        return MQ_NOT_FOUND;
    const char *v[] = {p.qid, p.id, p.nonce, seconds};
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int outcome = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (outcome == 0 && done)
        *done = true;
    if (outcome == 0)
        return MQ_OK;
    if (outcome == 1)
        return MQ_CONFLICT;
    return gone_ok ? MQ_OK : MQ_NOT_FOUND;
}

/* Deletes from a standard queue: one DELETE; only a miss asks whether the message exists. A
 * message deleted here is counted; one already gone is answered MQ_OK but not counted again. */
static enum mq_status delete_standard(struct db_conn *c, const struct mq_queue *q,
                                      const char *receipt)
{
    struct receipt_params p;
    if (!receipt_params(q, receipt, &p))
        return MQ_NOT_FOUND;
    const char *v[] = {p.qid, p.id, p.nonce};
    PGresult *r = db_exec(c, &q_delete_fast, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    bool deleted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (deleted) {
        mq_count_queue(q->id, MQC_DELETED, 1);
        return MQ_OK;
    }
    r = db_exec(c, &q_exists, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return exists ? MQ_CONFLICT : MQ_OK; /* a message already gone is deleted */
}

/* $1 queue ids, $2 message ids, $3 receipts: one row per receipt, of any standard queues. Each
 * receipt finds its row through the primary key (a subquery per receipt) and the DELETE takes
 * them by TID: plans that stay index lookups whatever the statistics say (a join against the
 * arrays was planned as a hash join over the whole index when ANALYZE had seen an empty table,
 * and "queue_id = ANY ($1) AND id = ANY ($2)" as a scan of the whole queue). Every row deleted
 * matches the queue and receipt at its id's first place in the arrays, checked again on the
 * row's newest version when it was updated between the lookup and the delete, so a new lease
 * is never deleted by an old receipt (whether a row whose receipt is unchanged, a heartbeat, is
 * deleted then depends on the server's TID recheck). A message named twice is deleted only by
 * its first receipt, and then every receipt naming it is answered as deleted; the receipts that
 * deleted nothing are tried again one by one (delete_standard). */
static struct db_stmt q_delete_rows =
    DB_STMT("mq_delete_rows",
            "DELETE FROM messages m WHERE m.ctid = ANY (ARRAY("
            "SELECT (SELECT x.ctid FROM messages x WHERE x.queue_id = r.queue_id AND x.id = r.id "
            "AND x.receipt = r.nonce) "
            "FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS r(queue_id, id, nonce))) "
            "AND m.receipt = ($3::bigint[])[array_position($2::bigint[], m.id)] "
            "AND m.queue_id = ($1::int[])[array_position($2::bigint[], m.id)] "
            "RETURNING m.queue_id, m.id",
            3);

struct message_key {
    int queue_id; /* 0: no message of ours */
    long long id;
};

/* Sets out[i] to st for every key i that a (queue_id, id) row of r names. */
static void mark(PGresult *r, const struct message_key *keys, int n, enum mq_status *out,
                 enum mq_status st)
{
    for (int row = 0; row < PQntuples(r); row++) {
        int queue_id = atoi(PQgetvalue(r, row, 0));
        long long id = atoll(PQgetvalue(r, row, 1));
        for (int i = 0; i < n; i++)
            if (keys[i].queue_id == queue_id && keys[i].id == id)
                out[i] = st;
    }
}

/* Runs q_delete_rows, marking the keys it deleted MQ_OK and counting them. */
static bool delete_marked(struct db_conn *c, const char *const *v, const struct message_key *keys,
                          int n, enum mq_status *out, enum mq_status *fail)
{
    PGresult *r = db_exec(c, &q_delete_rows, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        *fail = mq_failed(c, r);
        return false;
    }
    mark(r, keys, n, out, MQ_OK);
    for (int row = 0; row < PQntuples(r); row++)
        mq_count_queue(atoi(PQgetvalue(r, row, 0)), MQC_DELETED, 1);
    PQclear(r);
    return true;
}

/* The array parameters of the receipts of rows that are ours; out[i] starts as MQ_CONFLICT for
 * those (until the statements say otherwise) and MQ_NOT_FOUND for the others. Returns how many
 * are ours. */
static int delete_params(const struct mq_delete_row *rows, int n, struct message_key *keys,
                         enum mq_status *out, struct buf *qv, struct buf *idv, struct buf *nv)
{
    int ours = 0;
    for (int i = 0; i < n; i++) {
        struct receipt_params p;
        bool mine = receipt_params(rows[i].q, rows[i].receipt, &p);
        out[i] = mine ? MQ_CONFLICT : MQ_NOT_FOUND;
        keys[i] = (struct message_key){mine ? rows[i].q->id : 0, mine ? p.message_id : -1};
        if (mine) {
            buf_printf(qv, "%s%s", ours ? "," : "{", p.qid);
            buf_printf(idv, "%s%s", ours ? "," : "{", p.id);
            buf_printf(nv, "%s%s", ours ? "," : "{", p.nonce);
            ours++;
        }
    }
    buf_puts(qv, "}");
    buf_puts(idv, "}");
    buf_puts(nv, "}");
    return ours;
}

enum mq_status mq_delete_rows(struct db_conn *c, const struct mq_delete_row *rows, int n,
                              enum mq_status *out)
{
    assert(n >= 1 && n <= MQ_MAX_ROWS);
    if (n == 1) { /* the one-row DELETE, without the arrays */
        out[0] = delete_standard(c, rows[0].q, rows[0].receipt);
        return out[0] >= MQ_UNAVAILABLE ? out[0] : MQ_OK;
    }
    struct message_key keys[MQ_MAX_ROWS];
    struct buf qv, idv, nv;
    buf_init(&qv);
    buf_init(&idv);
    buf_init(&nv);
    enum mq_status fail = MQ_OK;
    if (delete_params(rows, n, keys, out, &qv, &idv, &nv) > 0) {
        const char *v[] = {buf_str(&qv), buf_str(&idv), buf_str(&nv)};
        /* a receipt of ours that deleted nothing (superseded, already gone, its row updated
         * under the statement, or named after another receipt of the same message) gets the
         * single delete's answer */
        int i = 0;
        if (delete_marked(c, v, keys, n, out, &fail))
            for (; i < n && fail == MQ_OK; i++)
                if (out[i] == MQ_CONFLICT) {
                    out[i] = delete_standard(c, rows[i].q, rows[i].receipt);
                    if (out[i] >= MQ_UNAVAILABLE)
                        fail = out[i];
                }
        for (; fail != MQ_OK && i < n; i++) /* not tried: the failure is their outcome */
            if (out[i] == MQ_CONFLICT)
                out[i] = fail;
    }
    buf_cleanup(&qv);
    buf_cleanup(&idv);
    buf_cleanup(&nv);
    return fail;
}

enum mq_status mq_delete_many(struct db_conn *c, const struct mq_queue *q,
                              const char *const *receipts, int n, enum mq_status *out)
{
    if (q->attrs.fifo) { /* groups need their bookkeeping: one by one */
        for (int i = 0; i < n; i++)
            if ((out[i] = mq_delete(c, q, receipts[i])) >= MQ_UNAVAILABLE)
                return out[i];
        return MQ_OK;
    }
    if (n <= 0)
        return MQ_OK;
    struct mq_delete_row rows[MQ_MAX_BATCH];
    for (int i = 0; i < n && i < MQ_MAX_BATCH; i++)
        rows[i] = (struct mq_delete_row){q, receipts[i]};
    return mq_delete_rows(c, rows, n < MQ_MAX_BATCH ? n : MQ_MAX_BATCH, out);
}

enum mq_status mq_delete(struct db_conn *c, const struct mq_queue *q, const char *receipt)
{
    if (!q->attrs.fifo)
        return delete_standard(c, q, receipt);
    bool deleted;
    enum mq_status st = by_receipt(c, &q_delete, q, receipt, NULL, true, &deleted);
    if (deleted)
        mq_count_queue(q->id, MQC_DELETED, 1);
    return st;
}

enum mq_status mq_hold(struct db_conn *c, const struct mq_queue *q, const char *receipt)
{
    return by_receipt(c, &q_hold, q, receipt, NULL, false, NULL);
}

/* Runs st (a statement of by_receipt that makes the message visible at some time) and, when it
 * did, lowers this process's claim hint to the message so that the next claim looks at it. */
static enum mq_status make_visible(struct db_conn *c, struct db_stmt *st, const struct mq_queue *q,
                                   const char *receipt, const char *seconds)
{
    enum mq_status s = by_receipt(c, st, q, receipt, seconds, false, NULL);
    struct receipt_params p;
    if (s == MQ_OK && receipt_params(q, receipt, &p))
        hint_lower(q->id, p.message_id);
    return s;
}

enum mq_status mq_change_visibility(struct db_conn *c, const struct mq_queue *q,
                                    const char *receipt, int seconds)
{
    char s[16];
    snprintf(s, sizeof s, "%d", seconds);
    return make_visible(c, &q_visibility, q, receipt, s);
}

enum mq_status mq_release_unreceived(struct db_conn *c, const struct mq_queue *q,
                                     const char *receipt)
{
    return make_visible(c, &q_release_unreceived, q, receipt, NULL);
}

enum mq_status mq_peek(struct db_conn *c, const struct mq_queue *q, long long after, int limit,
                       struct mq_message **msgs, int *count, bool *more)
{
    char id[FMT_INT_LEN], l[FMT_INT_LEN], budget[FMT_INT_LEN], from[FMT_INT_LEN];
    fmt_int(id, q->id);
    fmt_int(l, limit);
    fmt_int(budget, MQ_PEEK_BYTES);
    fmt_int(from, after);
    const char *v[] = {id, l, budget, from};
    PGresult *r = db_exec(c, &q_peek, v, NULL, NULL);
    *msgs = NULL;
    *count = 0;
    *more = false;
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    read_messages(r, q->id, msgs, count);
    PQclear(r);
    if (!*count)
        return MQ_OK;
    fmt_int(from, (*msgs)[*count - 1].id);
    const char *w[] = {id, from};
    r = db_exec(c, &q_peek_more, w, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        mq_messages_free(*msgs, *count);
        *msgs = NULL;
        *count = 0;
        return mq_failed(c, r);
    }
    *more = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return MQ_OK;
}

/* A redrive moves MQ_REDRIVE_STEP messages a transaction (sql/031): a large dead-letter queue
 * does not run into the statement timeout, and what was moved stays moved. */
#define MQ_REDRIVE_STEP 1000

enum mq_status mq_redrive(struct db_conn *c, const struct mq_queue *dlq, const struct mq_queue *to,
                          long long max, long long *moved)
{
    char id[16], t[16], after[24] = "0", upto[24], limit[24];
    snprintf(id, sizeof id, "%d", dlq->id);
    snprintf(t, sizeof t, "%d", to ? to->id : 0);
    const char *u[] = {id};
    PGresult *r = db_exec(c, &q_redrive_upto, u, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    snprintf(upto, sizeof upto, "%s", PQgetvalue(r, 0, 0)); /* messages moved back come after */
    PQclear(r);
    *moved = 0;
    for (;;) {
        long long left = max > 0 ? max - *moved : MQ_REDRIVE_STEP;
        snprintf(limit, sizeof limit, "%lld", left < MQ_REDRIVE_STEP ? left : MQ_REDRIVE_STEP);
        const char *v[] = {id, to ? t : NULL, after, upto, limit};
        r = db_exec(c, &q_redrive_some, v, NULL, NULL);
        if (!db_ok(c, r, PGRES_TUPLES_OK))
            return mq_failed(c, r); /* what earlier steps moved stays moved */
        bool done = PQgetisnull(r, 0, 1);
        *moved += atoll(PQgetvalue(r, 0, 0));
        if (!done)
            snprintf(after, sizeof after, "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
        if (done || (max > 0 && *moved >= max))
            return MQ_OK;
    }
}
