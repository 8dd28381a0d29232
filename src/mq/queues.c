/* Queue management: create/update, read, list, delete, stats, purge, redrive; see
 * include/rydes/mq.h. Shared row helpers live here too (src/mq/common.h). */
#include "common.h"

#include "rydes/fmt.h"
#include "rydes/mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Queues this shallow are counted exactly on every read; deeper ones use the sweeper's
 * measurement, so a read never scans more than this many rows. */
#define MQ_EXACT_COUNT_LIMIT 10000

#define QUEUE_COLUMNS                                                                           \
    "q.id, q.name, q.fifo, q.visibility_timeout, q.delay_seconds, q.retention_seconds, "        \
    "q.max_message_bytes, q.receive_wait_seconds, q.content_based_dedup, "                      \
    "coalesce(d.name, ''), coalesce(q.max_receive_count, 0), coalesce(q.dead_letter_queue_id, " \
    "0), rfc3339(q.created_at)"

static struct db_stmt q_get = DB_STMT(
    "mq_queue_get",
    "SELECT " QUEUE_COLUMNS " FROM queues q LEFT JOIN queues d ON d.id = q.dead_letter_queue_id "
    "WHERE q.name = $1",
    1);
/* The same under the queue's row lock (mq_queue_change). */
static struct db_stmt q_get_locked = DB_STMT(
    "mq_queue_get_locked",
    "SELECT " QUEUE_COLUMNS " FROM queues q LEFT JOIN queues d ON d.id = q.dead_letter_queue_id "
    "WHERE q.name = $1 FOR NO KEY UPDATE OF q",
    1);
/* Serializes the transactions that set a dead-letter queue, so that two of them cannot each
 * miss the other's change and close a cycle ("dlqs" in ASCII, and 0). */
static struct db_stmt q_dlq_lock =
    DB_STMT("mq_queue_dlq_lock", "SELECT pg_advisory_xact_lock(1684828531, 0)", 0);
/* $1 the dead-letter queue, $2 the queue naming it: its id, type, and whether following
 * dead-letter queues from it leads back to $2 (a cycle would bounce an exhausted message
 * between the queues for ever). */
static struct db_stmt q_dlq = DB_STMT(
    "mq_queue_dlq",
    "WITH RECURSIVE chain (id, name, depth) AS (SELECT id, name, 1 FROM queues WHERE name = $1 "
    "UNION ALL SELECT q.id, q.name, c.depth + 1 FROM chain c JOIN queues d ON d.id = c.id "
    "JOIN queues q ON q.id = d.dead_letter_queue_id WHERE c.depth < 1000) "
    "SELECT id, fifo, EXISTS (SELECT 1 FROM chain WHERE name = $2) FROM queues WHERE name = $1",
    2);
static struct db_stmt q_upsert = DB_STMT(
    "mq_queue_upsert",
    "INSERT INTO queues AS q (name, fifo, visibility_timeout, delay_seconds, retention_seconds, "
    "max_message_bytes, receive_wait_seconds, content_based_dedup, dead_letter_queue_id, "
    "max_receive_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (name) DO UPDATE SET visibility_timeout = EXCLUDED.visibility_timeout, "
    "delay_seconds = EXCLUDED.delay_seconds, retention_seconds = EXCLUDED.retention_seconds, "
    "max_message_bytes = EXCLUDED.max_message_bytes, "
    "receive_wait_seconds = EXCLUDED.receive_wait_seconds, "
    "content_based_dedup = EXCLUDED.content_based_dedup, "
    "dead_letter_queue_id = EXCLUDED.dead_letter_queue_id, "
    "max_receive_count = EXCLUDED.max_receive_count, updated_at = now() "
    "WHERE q.fifo = EXCLUDED.fifo RETURNING (xmax = 0)",
    10);
/* A queue and everything of it (sql/041: its row is locked before its messages are read, so a
 * move into it that committed first goes with it). */
static struct db_stmt q_delete = DB_STMT("mq_queue_delete", "SELECT mq_delete_queue($1)", 1);
static struct db_stmt q_list =
    DB_STMT("mq_queue_list", "SELECT name FROM queues WHERE name > $1 ORDER BY name LIMIT $2", 2);
/* The same, only names that start with $3. */
static struct db_stmt q_list_prefix =
    DB_STMT("mq_queue_list_prefix",
            "SELECT name FROM queues WHERE name > $1 AND starts_with(name, $3) ORDER BY name "
            "LIMIT $2",
            3);
static struct db_stmt q_stats =
    DB_STMT("mq_queue_stats",
            "SELECT count(*), count(*) FILTER (WHERE s.visible_at <= now()), "
            "count(*) FILTER (WHERE s.visible_at > now() AND s.receive_count > 0), "
            "coalesce(extract(epoch FROM now() - min(s.sent_at)), 0)::bigint "
            "FROM (SELECT visible_at, receive_count, sent_at FROM messages WHERE queue_id = $1 "
            "LIMIT $2) s",
            2);
static struct db_stmt q_depth =
    DB_STMT("mq_queue_depth",
            "SELECT available, in_flight, delayed, "
            "coalesce(extract(epoch FROM now() - oldest_sent_at), 0)::bigint "
            "FROM queue_depths WHERE queue_id = $1",
            1);
static struct db_stmt q_purge = DB_STMT("mq_queue_purge", "SELECT mq_purge($1)", 1);

enum mq_status mq_failed(struct db_conn *c, PGresult *res)
{
    bool unavailable = db_conn_lost(c) || db_transient(res);
    /* foreign_key_violation: a queue or topic the statement names was deleted after it was
     * looked up (PUT of a subscription or a dead-letter queue racing a DELETE) */
    bool raced = !unavailable && strcmp(db_sqlstate(res), "23503") == 0;
    PQclear(res);
    return unavailable ? MQ_UNAVAILABLE : raced ? MQ_CONFLICT : MQ_ERROR;
}

void mq_copy(char *dst, size_t n, PGresult *r, int row, int col)
{
    fmt_copy(dst, n, PQgetvalue(r, row, col));
}

static bool truthy(PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col)[0] == 't';
}

/* A timestamptz column as RFC 3339 with milliseconds ("" when NULL). Pool connections run with
 * TimeZone=UTC and DateStyle ISO, so the text is "2026-11-26 13:15:43.908327+00" (the fraction
 * absent on a whole second): reformatting it is cheaper than to_char in every row. */
void mq_read_message(PGresult *r, int row, int queue_id, struct mq_message *m)
{
    memset(m, 0, sizeof *m);
    m->id = atoll(PQgetvalue(r, row, 0));
    mq_copy(m->message_id, sizeof m->message_id, r, row, 1);
    if (!PQgetisnull(r, row, 2))
        mq_receipt_encode(queue_id, m->id, strtoull(PQgetvalue(r, row, 2), NULL, 10), m->receipt);
    m->body = xstrndup(PQgetvalue(r, row, 3), (size_t)PQgetlength(r, row, 3));
    m->body_json = truthy(r, row, 4);
    if (!PQgetisnull(r, row, 5))
        m->attributes = json_loads(PQgetvalue(r, row, 5), 0, NULL);
    m->receive_count = atoi(PQgetvalue(r, row, 6));
    db_read_ts(r, row, 7, m->sent_at);
    db_read_ts(r, row, 8, m->first_received_at);
    db_read_ts(r, row, 9, m->visible_at);
    mq_copy(m->state, sizeof m->state, r, row, 10);
    if (!PQgetisnull(r, row, 11))
        m->group_id = xstrdup(PQgetvalue(r, row, 11));
}

void mq_messages_clear(struct mq_message *m)
{
    free(m->body);
    free(m->group_id);
    json_decref(m->attributes);
    m->body = m->group_id = NULL;
    m->attributes = NULL;
}

void mq_messages_free(struct mq_message *msgs, int n)
{
    for (int i = 0; i < n; i++)
        mq_messages_clear(&msgs[i]);
    free(msgs);
}

static void read_queue(PGresult *r, struct mq_queue *q)
{
    q->id = atoi(PQgetvalue(r, 0, 0));
    mq_copy(q->name, sizeof q->name, r, 0, 1);
    q->attrs.fifo = truthy(r, 0, 2);
    q->attrs.visibility_timeout = atoi(PQgetvalue(r, 0, 3));
    q->attrs.delay_seconds = atoi(PQgetvalue(r, 0, 4));
    q->attrs.retention_seconds = atoi(PQgetvalue(r, 0, 5));
    q->attrs.max_message_bytes = atoi(PQgetvalue(r, 0, 6));
    q->attrs.receive_wait_seconds = atoi(PQgetvalue(r, 0, 7));
    q->attrs.content_based_dedup = truthy(r, 0, 8);
    mq_copy(q->attrs.dead_letter_queue, sizeof q->attrs.dead_letter_queue, r, 0, 9);
    q->attrs.max_receive_count = atoi(PQgetvalue(r, 0, 10));
    q->dead_letter_queue_id = atoi(PQgetvalue(r, 0, 11));
    mq_copy(q->created_at, sizeof q->created_at, r, 0, 12);
}

/* Reads queue name with st (q_get, or q_get_locked). */
static enum mq_status get_with(struct db_conn *c, struct db_stmt *st, const char *name,
                               struct mq_queue *out)
{
    const char *v[] = {name};
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found)
        read_queue(r, out);
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_queue_get(struct db_conn *c, const char *name, struct mq_queue *out)
{
    return get_with(c, &q_get, name, out);
}

/* Resolves the dead-letter queue of attrs into *id (0 when none), checking that it exists, is
 * not the queue itself and has the same type. */
static enum mq_status resolve_dlq(struct db_conn *c, const char *name, const struct mq_attrs *attrs,
                                  char *dlq_id, size_t n, char *detail, size_t detail_len)
{
    dlq_id[0] = '\0';
    if (!attrs->dead_letter_queue[0])
        return MQ_OK;
    if (strcmp(attrs->dead_letter_queue, name) == 0) {
        snprintf(detail, detail_len, "a queue cannot be its own dead-letter queue");
        return MQ_INVALID;
    }
    PGresult *r = db_exec(c, &q_dlq_lock, NULL, NULL, NULL); /* before the chain is read */
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    PQclear(r);
    const char *v[] = {attrs->dead_letter_queue, name};
    r = db_exec(c, &q_dlq, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    enum mq_status st = MQ_OK;
    if (PQntuples(r) == 0) {
        snprintf(detail, detail_len, "dead-letter queue %s does not exist",
                 attrs->dead_letter_queue);
        st = MQ_INVALID;
    } else if (truthy(r, 0, 1) != attrs->fifo) {
        snprintf(detail, detail_len, "dead-letter queue %s must be %s like this queue",
                 attrs->dead_letter_queue, attrs->fifo ? "FIFO" : "standard");
        st = MQ_INVALID;
    } else if (truthy(r, 0, 2)) {
        snprintf(detail, detail_len,
                 "dead-letter queue %s leads back to this queue through its own dead-letter "
                 "queues",
                 attrs->dead_letter_queue);
        st = MQ_INVALID;
    } else {
        mq_copy(dlq_id, n, r, 0, 0);
    }
    PQclear(r);
    return st;
}

/* Inserts or updates queue name; MQ_CONFLICT (detail says which) when it exists with the other
 * fifo value or its dead-letter queue was deleted meanwhile. */
static enum mq_status upsert(struct db_conn *c, const char *name, const struct mq_attrs *a,
                             const char *dlq_id, bool *created, char *detail, size_t detail_len)
{
    enum mq_status st;
    char vt[12], delay[12], ret[12], maxb[12], wait[12], mrc[12];
    snprintf(vt, sizeof vt, "%d", a->visibility_timeout);
    snprintf(delay, sizeof delay, "%d", a->delay_seconds);
    snprintf(ret, sizeof ret, "%d", a->retention_seconds);
    snprintf(maxb, sizeof maxb, "%d", a->max_message_bytes);
    snprintf(wait, sizeof wait, "%d", a->receive_wait_seconds);
    snprintf(mrc, sizeof mrc, "%d", a->max_receive_count);
    const char *v[] = {name,
                       a->fifo ? "t" : "f",
                       vt,
                       delay,
                       ret,
                       maxb,
                       wait,
                       a->content_based_dedup ? "t" : "f",
                       dlq_id[0] ? dlq_id : NULL,
                       dlq_id[0] ? mrc : NULL};
    PGresult *r = db_exec(c, &q_upsert, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        st = mq_failed(c, r);
        if (st == MQ_CONFLICT) /* the dead-letter queue's row went between lookup and insert */
            snprintf(detail, detail_len, "the dead-letter queue was deleted meanwhile; retry");
        return st;
    }
    st = PQntuples(r) == 1 ? MQ_OK : MQ_CONFLICT;
    if (st == MQ_CONFLICT)
        snprintf(detail, detail_len, "the fifo attribute of an existing queue cannot change");
    if (st == MQ_OK)
        *created = truthy(r, 0, 0);
    PQclear(r);
    return st;
}

enum mq_status mq_queue_put(struct db_conn *c, const char *name, const struct mq_attrs *attrs,
                            bool *created, char *detail, size_t detail_len)
{
    return mq_queue_put_also(c, name, attrs, created, detail, detail_len, NULL, NULL);
}

enum mq_status mq_queue_put_also(struct db_conn *c, const char *name, const struct mq_attrs *attrs,
                                 bool *created, char *detail, size_t detail_len,
                                 enum mq_status (*also)(struct db_conn *c, const char *name,
                                                        bool created, void *ctx),
                                 void *ctx)
{
    char dlq_id[16];
    detail[0] = '\0';
    if (!db_begin(c))
        return db_conn_lost(c) ? MQ_UNAVAILABLE : MQ_ERROR;
    enum mq_status st = resolve_dlq(c, name, attrs, dlq_id, sizeof dlq_id, detail, detail_len);
    if (st == MQ_OK)
        st = upsert(c, name, attrs, dlq_id, created, detail, detail_len);
    if (st == MQ_OK && also)
        st = also(c, name, *created, ctx);
    if (st != MQ_OK) {
        db_rollback(c);
        return st;
    }
    return db_commit(c) ? MQ_OK : (db_conn_lost(c) ? MQ_UNAVAILABLE : MQ_ERROR);
}

enum mq_status mq_queue_change(struct db_conn *c, const char *name,
                               bool (*change)(struct mq_attrs *attrs, void *ctx), void *ctx,
                               bool *changed, char *detail, size_t detail_len)
{
    detail[0] = '\0';
    *changed = false;
    if (!db_begin(c))
        return db_conn_lost(c) ? MQ_UNAVAILABLE : MQ_ERROR;
    /* the dead-letter lock before the row's, in the order mq_queue_put_also takes them (its
     * resolve_dlq, then its upsert), or the two could deadlock */
    PGresult *r = db_exec(c, &q_dlq_lock, NULL, NULL, NULL);
    enum mq_status st = db_ok(c, r, PGRES_TUPLES_OK) ? MQ_OK : mq_failed(c, r);
    if (st == MQ_OK)
        PQclear(r);
    struct mq_queue q;
    if (st == MQ_OK)
        st = get_with(c, &q_get_locked, name, &q); /* under its row lock */
    char dlq_id[16];
    bool created;
    if (st == MQ_OK && (*changed = change(&q.attrs, ctx))) {
        st = resolve_dlq(c, name, &q.attrs, dlq_id, sizeof dlq_id, detail, detail_len);
        if (st == MQ_OK)
            st = upsert(c, name, &q.attrs, dlq_id, &created, detail, detail_len);
    }
    if (st != MQ_OK || !*changed) {
        db_rollback(c);
        return st;
    }
    return db_commit(c) ? MQ_OK : (db_conn_lost(c) ? MQ_UNAVAILABLE : MQ_ERROR);
}

enum mq_status mq_queue_delete(struct db_conn *c, const char *name)
{
    const char *v[] = {name};
    PGresult *r = db_exec(c, &q_delete, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_list_names(struct db_conn *c, struct db_stmt *st, const char *after,
                             const char *also, int limit, char ***names, int *count, bool *more)
{
    char l[16];
    snprintf(l, sizeof l, "%d", limit + 1); /* one extra row tells whether there is more */
    const char *v[] = {after, l, also};
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    int n = PQntuples(r);
    *more = n > limit;
    *count = *more ? limit : n;
    *names = xcalloc((size_t)*count + 1, sizeof **names);
    for (int i = 0; i < *count; i++)
        (*names)[i] = xstrdup(PQgetvalue(r, i, 0));
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_queue_list(struct db_conn *c, const char *after, int limit, char ***names,
                             int *count, bool *more)
{
    return mq_list_names(c, &q_list, after, NULL, limit, names, count, more);
}

enum mq_status mq_queue_list_prefix(struct db_conn *c, const char *after, const char *prefix,
                                    int limit, char ***names, int *count, bool *more)
{
    return mq_list_names(c, &q_list_prefix, after, prefix, limit, names, count, more);
}

static enum mq_status measured_depth(struct db_conn *c, const char *id, struct mq_stats *out)
{
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_depth, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    if (PQntuples(r) == 1) {
        out->available = atoll(PQgetvalue(r, 0, 0));
        out->in_flight = atoll(PQgetvalue(r, 0, 1));
        out->delayed = atoll(PQgetvalue(r, 0, 2));
        out->oldest_age_seconds = atoll(PQgetvalue(r, 0, 3));
    }
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_queue_stats(struct db_conn *c, const struct mq_queue *q, struct mq_stats *out)
{
    char id[16], lim[16];
    snprintf(id, sizeof id, "%d", q->id);
    snprintf(lim, sizeof lim, "%d", MQ_EXACT_COUNT_LIMIT + 1);
    const char *v[] = {id, lim};
    PGresult *r = db_exec(c, &q_stats, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    long long total = atoll(PQgetvalue(r, 0, 0));
    memset(out, 0, sizeof *out);
    out->available = atoll(PQgetvalue(r, 0, 1));
    out->in_flight = atoll(PQgetvalue(r, 0, 2));
    out->delayed = total - out->available - out->in_flight;
    out->oldest_age_seconds = atoll(PQgetvalue(r, 0, 3));
    PQclear(r);
    if (total <= MQ_EXACT_COUNT_LIMIT)
        return MQ_OK;
    out->approximate = true;
    return measured_depth(c, id, out);
}

static struct db_stmt q_depths = DB_STMT(
    "mq_queue_depths",
    "SELECT q.name, coalesce(d.available, 0), coalesce(d.in_flight, 0), coalesce(d.delayed, 0), "
    "coalesce(extract(epoch FROM now() - d.oldest_sent_at), 0)::bigint, "
    "EXISTS (SELECT 1 FROM queues s WHERE s.dead_letter_queue_id = q.id) OR "
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.dead_letter_queue_id = q.id), "
    "coalesce(extract(epoch FROM now() - d.measured_at), -1), q.id "
    "FROM queues q LEFT JOIN queue_depths d ON d.queue_id = q.id ORDER BY q.name",
    0);

enum mq_status mq_queue_depths(struct db_conn *c, struct mq_depth **out, int *count)
{
    PGresult *r = db_exec(c, &q_depths, NULL, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *count = PQntuples(r);
    *out = xcalloc((size_t)*count + 1, sizeof **out);
    for (int i = 0; i < *count; i++) {
        struct mq_depth *d = &(*out)[i];
        mq_copy(d->name, sizeof d->name, r, i, 0);
        d->stats.available = atoll(PQgetvalue(r, i, 1));
        d->stats.in_flight = atoll(PQgetvalue(r, i, 2));
        d->stats.delayed = atoll(PQgetvalue(r, i, 3));
        d->stats.oldest_age_seconds = atoll(PQgetvalue(r, i, 4));
        d->stats.approximate = true;
        d->dead_letter = truthy(r, i, 5);
        d->measured_age_seconds = atof(PQgetvalue(r, i, 6));
        d->id = atoi(PQgetvalue(r, i, 7));
    }
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_purge(struct db_conn *c, const struct mq_queue *q)
{
    char id[16];
    snprintf(id, sizeof id, "%d", q->id);
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_purge, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    PQclear(r);
    return MQ_OK;
}
