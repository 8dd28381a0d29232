/* Topics, subscriptions and publishing; see include/rydes/topics.h. */
#include "common.h"

#include "rydes/buf.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/mq_counters.h"
#include "rydes/mq_fanout.h"
#include "rydes/secret.h"
#include "rydes/topics.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct db_stmt q_topic_put =
    DB_STMT("mq_topic_put",
            "INSERT INTO topics AS t (name, fifo, content_based_dedup) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET content_based_dedup = EXCLUDED.content_based_dedup, "
            "updated_at = now() RETURNING (xmax = 0)",
            3);
/* Creates a topic unless one of that name exists: no row then. */
static struct db_stmt q_topic_create =
    DB_STMT("mq_topic_create",
            "INSERT INTO topics (name, fifo, content_based_dedup) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO NOTHING RETURNING true",
            3);
static struct db_stmt q_topic_set_dedup =
    DB_STMT("mq_topic_set_dedup",
            "UPDATE topics SET content_based_dedup = $2, updated_at = now() WHERE name = $1", 2);
static struct db_stmt q_topic_get = DB_STMT(
    "mq_topic_get",
    "SELECT id, name, fifo, content_based_dedup, created_at FROM topics WHERE name = $1", 1);
static struct db_stmt q_topic_delete =
    DB_STMT("mq_topic_delete", "DELETE FROM topics WHERE name = $1", 1);
static struct db_stmt q_topic_list =
    DB_STMT("mq_topic_list", "SELECT name FROM topics WHERE name > $1 ORDER BY name LIMIT $2", 2);
#define SUB_INSERT_SQL                                                                             \
    "INSERT INTO subscriptions AS s (topic_id, name, queue_id, url, filter_policy, filter_scope, " \
    "raw_delivery, dead_letter_queue_id, max_attempts, min_delay_seconds, max_delay_seconds) "     \
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (topic_id, name) "
static struct db_stmt q_sub_put = DB_STMT(
    "mq_sub_put",
    SUB_INSERT_SQL
    "DO UPDATE SET queue_id = EXCLUDED.queue_id, url = EXCLUDED.url, "
    "filter_policy = EXCLUDED.filter_policy, "
    "filter_scope = EXCLUDED.filter_scope, raw_delivery = EXCLUDED.raw_delivery, "
    "dead_letter_queue_id = EXCLUDED.dead_letter_queue_id, max_attempts = EXCLUDED.max_attempts, "
    "min_delay_seconds = EXCLUDED.min_delay_seconds, "
    "max_delay_seconds = EXCLUDED.max_delay_seconds, updated_at = now() RETURNING (xmax = 0)",
    11);
/* The same, creating only: no row when the subscription exists. */
static struct db_stmt q_sub_add =
    DB_STMT("mq_sub_add", SUB_INSERT_SQL "DO NOTHING RETURNING true", 11);
/* The deliveries still to be POSTed of URL subscription $2 of topic $1 (by id and name). */
static struct db_stmt q_sub_pushes_pending =
    DB_STMT("mq_sub_pushes_pending",
            "SELECT count(*) FROM push_deliveries d JOIN subscriptions s ON s.id = "
            "d.subscription_id WHERE s.topic_id = $1 AND s.name = $2 AND s.url IS NOT NULL AND "
            "d.next_attempt_at < 'infinity'",
            2);
/* Locks subscription $2 of topic $1 (by name) for a change of its attributes. */
static struct db_stmt q_sub_lock =
    DB_STMT("mq_sub_lock",
            "SELECT 1 FROM subscriptions s JOIN topics t ON t.id = s.topic_id "
            "WHERE t.name = $1 AND s.name = $2 FOR NO KEY UPDATE OF s",
            2);
static struct db_stmt q_sub_queue =
    DB_STMT("mq_sub_queue", "SELECT id, fifo FROM queues WHERE name = $1", 1);
static struct db_stmt q_sub_delete =
    DB_STMT("mq_sub_delete", "DELETE FROM subscriptions WHERE topic_id = $1 AND name = $2", 2);
static struct db_stmt q_sub_load =
    DB_STMT("mq_sub_load",
            "SELECT s.name, coalesce(q.name, ''), coalesce(q.id, 0), coalesce(q.fifo, false), "
            "s.filter_policy, s.filter_scope, s.raw_delivery, s.created_at, s.id, s.url, "
            "coalesce(d.name, ''), s.max_attempts, s.min_delay_seconds, s.max_delay_seconds "
            "FROM subscriptions s LEFT JOIN queues q ON q.id = s.queue_id "
            "LEFT JOIN queues d ON d.id = s.dead_letter_queue_id WHERE s.topic_id = $1 ORDER BY "
            "s.name COLLATE \"C\"",
            1);
/* The payloads of a publish: $2/$3 the raw body and whether any raw target matched, $4/$5 the
 * envelope and whether any enveloped one did. */
#define PUBLISH_PAYLOADS_SQL                                                      \
    "WITH raw AS (INSERT INTO payloads (body) SELECT $2 WHERE $3 RETURNING id), " \
    "env AS (INSERT INTO payloads (body) SELECT $4 WHERE $5 RETURNING id) "
/* A standard publish: $1 message id, payloads as above, $6 body_json, $7 attributes, $8/$9
 * target queues and whether each is raw, $10 the targets with long polls to NOTIFY, and for
 * q_publish_push $11/$12 the URL subscriptions and whether each is raw. Publishes without URL
 * targets (the common case) run the statement without the push_deliveries part: fewer plan
 * nodes to start up per execution. */
#define PUBLISH_QUEUES_SQL                                                                  \
    PUBLISH_PAYLOADS_SQL                                                                    \
    ", ins AS (INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, "   \
    "attributes, payload_id) SELECT t.q, now() + make_interval(secs => qq.delay_seconds), " \
    "$1::uuid, CASE WHEN t.raw THEN $6::boolean ELSE true END, '', "                        \
    "CASE WHEN t.raw THEN $7::jsonb END, "                                                  \
    "CASE WHEN t.raw THEN (SELECT id FROM raw) ELSE (SELECT id FROM env) END "              \
    "FROM unnest($8::int[], $9::boolean[]) AS t(q, raw) JOIN queues qq ON qq.id = t.q "     \
    "RETURNING queue_id) "
#define PUBLISH_NOTIFY_SQL \
    "(SELECT count(*) FROM (SELECT pg_notify('rydes_mq', x::text) FROM unnest($10::int[]) x) n)"
static struct db_stmt q_publish =
    DB_STMT("mq_publish",
            PUBLISH_QUEUES_SQL "SELECT (SELECT count(*) FROM ins), 0, " PUBLISH_NOTIFY_SQL, 10);
static struct db_stmt q_publish_push = DB_STMT(
    "mq_publish_push",
    PUBLISH_QUEUES_SQL
    ", push AS (INSERT INTO push_deliveries (subscription_id, payload_id, message_id, body_json, "
    "attributes, raw) SELECT u.s, CASE WHEN u.raw THEN (SELECT id FROM raw) "
    "ELSE (SELECT id FROM env) END, $1::uuid, CASE WHEN u.raw THEN $6::boolean ELSE true END, "
    "CASE WHEN u.raw THEN $7::jsonb END, u.raw FROM unnest($11::int[], $12::boolean[]) "
    "AS u(s, raw) JOIN subscriptions ss ON ss.id = u.s RETURNING 1) "
    "SELECT (SELECT count(*) FROM ins) + (SELECT count(*) FROM push), (SELECT count(*) FROM "
    "push), " PUBLISH_NOTIFY_SQL,
    12);
/* The common publish (sql/006): see mq_publish_plan. */
static struct db_stmt q_publish_lean = DB_STMT(
    "mq_publish_lean",
    "SELECT mq_publish_payload($1::uuid, $2, $3::boolean, $4::jsonb, $5::int[], $6::int[])", 6);
/* A publish with FIFO targets (sql/004): $1..$9 as above, $10 the topic id (NULL for a
 * recipient list), $11 the dedup id, $12 the group. */
static struct db_stmt q_publish_fifo =
    DB_STMT("mq_publish_fifo",
            PUBLISH_PAYLOADS_SQL
            "SELECT f.kept, f.deliveries, f.duplicate FROM mq_publish_fifo($10::int, $11, "
            "$1::uuid, $12, $8::int[], $9::boolean[], (SELECT id FROM raw), "
            "(SELECT id FROM env), $6::boolean, $7::jsonb) f",
            12);

bool mq_topic_name_valid(const char *name)
{
    size_t n = strlen(name);
    size_t base = n > 5 && strcmp(name + n - 5, ".fifo") == 0 ? n - 5 : n;
    if (n == 0 || n > MQ_TOPIC_NAME_MAX || base == 0)
        return false;
    for (size_t i = 0; i < base; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-'))
            return false;
    return true;
}

/* Runs q (mq_topic_put or mq_topic_create) for topic name: *created from its one column, true
 * for a row it inserted (no row: nothing written). */
static enum mq_status topic_write(struct db_conn *c, struct db_stmt *q, const char *name,
                                  bool content_based_dedup, bool *created)
{
    size_t n = strlen(name);
    bool fifo = n > 5 && strcmp(name + n - 5, ".fifo") == 0;
    const char *v[] = {name, fifo ? "t" : "f", content_based_dedup ? "t" : "f"};
    PGresult *r = db_exec(c, q, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *created = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_topic_put(struct db_conn *c, const char *name, bool content_based_dedup,
                            bool *created)
{
    return topic_write(c, &q_topic_put, name, content_based_dedup, created);
}

enum mq_status mq_topic_create(struct db_conn *c, const char *name, bool content_based_dedup,
                               bool *created)
{
    return topic_write(c, &q_topic_create, name, content_based_dedup, created);
}

enum mq_status mq_topic_set_dedup(struct db_conn *c, const char *name, bool content_based_dedup)
{
    const char *v[] = {name, content_based_dedup ? "t" : "f"};
    PGresult *r = db_exec(c, &q_topic_set_dedup, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    bool found = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_topic_get(struct db_conn *c, const char *name, struct mq_topic *out)
{
    const char *v[] = {name};
    PGresult *r = db_exec(c, &q_topic_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    if (found) {
        out->id = atoi(PQgetvalue(r, 0, 0));
        mq_copy(out->name, sizeof out->name, r, 0, 1);
        out->fifo = PQgetvalue(r, 0, 2)[0] == 't';
        out->content_based_dedup = PQgetvalue(r, 0, 3)[0] == 't';
        db_read_ts(r, 0, 4, out->created_at);
    }
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

/* Runs a statement whose outcome is the number of rows it touched (0: not found). */
static enum mq_status touch(struct db_conn *c, struct db_stmt *st, const char *const *v)
{
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return mq_failed(c, r);
    bool found = strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_topic_delete(struct db_conn *c, const char *name)
{
    const char *v[] = {name};
    return touch(c, &q_topic_delete, v);
}

enum mq_status mq_topic_list(struct db_conn *c, const char *after, int limit, char ***names,
                             int *count, bool *more)
{
    return mq_list_names(c, &q_topic_list, after, NULL, limit, names, count, more);
}

/* The id of the queue named queue into id, refused (MQ_INVALID with detail) when it does not
 * exist or is FIFO and fifo is not (or the other way round). what names its role in detail. */
static enum mq_status named_queue(struct db_conn *c, const char *queue, bool fifo, const char *what,
                                  char *id, size_t n, char *detail, size_t detail_len)
{
    detail[0] = '\0';
    const char *v[] = {queue};
    PGresult *r = db_exec(c, &q_sub_queue, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    enum mq_status st = MQ_OK;
    if (PQntuples(r) == 0) {
        snprintf(detail, detail_len, "%s %s does not exist", what, queue);
        st = MQ_INVALID;
    } else if ((PQgetvalue(r, 0, 1)[0] == 't') != fifo) {
        snprintf(detail, detail_len, "%s %s is a %s queue; this needs a %s one", what, queue,
                 fifo ? "standard" : "FIFO", fifo ? "FIFO" : "standard");
        st = MQ_INVALID;
    } else {
        mq_copy(id, n, r, 0, 0);
    }
    PQclear(r);
    return st;
}

/* Resolves the queue and the dead-letter queue a subscription names into qid and dlq ("" when
 * none), checked against the topic's type; MQ_INVALID names the refused member in *field. */
static enum mq_status subscription_targets(struct db_conn *c, const struct mq_topic *t,
                                           const struct mq_subscription_input *in, char *qid,
                                           char *dlq, size_t n, char *detail, size_t detail_len,
                                           const char **field)
{
    qid[0] = dlq[0] = '\0';
    if (in->url && t->fifo) {
        snprintf(detail, detail_len, "a FIFO topic delivers to FIFO queues only, not to URLs");
        *field = "url";
        return MQ_INVALID;
    }
    enum mq_status st = MQ_OK;
    *field = "queue";
    if (in->queue)
        st = named_queue(c, in->queue, t->fifo,
                         t->fifo ? "a FIFO topic delivers to FIFO queues only; queue"
                                 : "a standard topic delivers to standard queues only; queue",
                         qid, n, detail, detail_len);
    if (st == MQ_OK && in->dead_letter_queue) {
        *field = "dead_letter_queue";
        st = named_queue(c, in->dead_letter_queue, false, "dead-letter queue", dlq, n, detail,
                         detail_len);
    }
    return st;
}

/* A URL subscription with deliveries still to POST cannot become a queue's: they hold the
 * form of the URL's delivery (raw or enveloped), and with no URL the push worker gives them up.
 * MQ_CONFLICT, saying so, when subscription name of topic tid has some. */
static enum mq_status pushes_pending(struct db_conn *c, const char *tid, const char *name,
                                     char *detail, size_t detail_len)
{
    const char *v[] = {tid, name};
    PGresult *r = db_exec(c, &q_sub_pushes_pending, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    long long n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n == 0)
        return MQ_OK;
    snprintf(detail, detail_len,
             "the subscription has %lld deliveries still to POST to its url: it can become a "
             "queue's once they are delivered or failed (push_backlog shows them), or be deleted "
             "and made anew",
             n);
    return MQ_CONFLICT;
}

enum mq_status mq_subscription_put(struct db_conn *c, const struct mq_topic *t, const char *name,
                                   const struct mq_subscription_input *in, bool *created,
                                   char *detail, size_t detail_len, const char **field)
{
    char qid[16], dlq[16], tid[16], attempts[16], min_delay[16], max_delay[16];
    const char *refused = NULL;
    enum mq_status st =
        subscription_targets(c, t, in, qid, dlq, sizeof qid, detail, detail_len, &refused);
    if (field)
        *field = st == MQ_INVALID ? refused : NULL;
    if (st != MQ_OK)
        return st;
    snprintf(tid, sizeof tid, "%d", t->id);
    if (!in->url && !in->only_new && (st = pushes_pending(c, tid, name, detail, detail_len)))
        return st;
    snprintf(attempts, sizeof attempts, "%d", in->max_attempts);
    snprintf(min_delay, sizeof min_delay, "%d", in->min_delay_seconds);
    snprintf(max_delay, sizeof max_delay, "%d", in->max_delay_seconds);
    char *policy = in->filter_policy ? jsontext_dumps(in->filter_policy, JSON_COMPACT) : NULL;
    const char *v[] = {tid,
                       name,
                       qid[0] ? qid : NULL,
                       in->url,
                       policy,
                       in->scope == FILTER_SCOPE_BODY ? "body" : "attributes",
                       in->raw ? "t" : "f",
                       dlq[0] ? dlq : NULL,
                       attempts,
                       min_delay,
                       max_delay};
    PGresult *r = db_exec(c, in->only_new ? &q_sub_add : &q_sub_put, v, NULL, NULL);
    free(policy);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *created = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return MQ_OK;
}

enum mq_status mq_subscription_lock(struct db_conn *c, const char *topic, const char *name)
{
    const char *v[] = {topic, name};
    PGresult *r = db_exec(c, &q_sub_lock, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    bool found = PQntuples(r) == 1;
    PQclear(r);
    return found ? MQ_OK : MQ_NOT_FOUND;
}

enum mq_status mq_subscription_delete(struct db_conn *c, const struct mq_topic *t, const char *name)
{
    char tid[16];
    snprintf(tid, sizeof tid, "%d", t->id);
    const char *v[] = {tid, name};
    return touch(c, &q_sub_delete, v);
}

static void read_subscription(PGresult *r, int row, struct mq_subscription *s)
{
    memset(s, 0, sizeof *s);
    mq_copy(s->name, sizeof s->name, r, row, 0);
    mq_copy(s->queue, sizeof s->queue, r, row, 1);
    s->queue_id = atoi(PQgetvalue(r, row, 2));
    s->queue_fifo = PQgetvalue(r, row, 3)[0] == 't';
    s->scope =
        strcmp(PQgetvalue(r, row, 5), "body") == 0 ? FILTER_SCOPE_BODY : FILTER_SCOPE_ATTRIBUTES;
    s->raw = PQgetvalue(r, row, 6)[0] == 't';
    db_read_ts(r, row, 7, s->created_at);
    s->id = atoi(PQgetvalue(r, row, 8));
    s->url = PQgetisnull(r, row, 9) ? NULL : xstrdup(PQgetvalue(r, row, 9));
    mq_copy(s->dead_letter_queue, sizeof s->dead_letter_queue, r, row, 10);
    s->max_attempts = atoi(PQgetvalue(r, row, 11));
    s->min_delay_seconds = atoi(PQgetvalue(r, row, 12));
    s->max_delay_seconds = atoi(PQgetvalue(r, row, 13));
    if (PQgetisnull(r, row, 4))
        return;
    s->filter_policy = json_loads(PQgetvalue(r, row, 4), 0, NULL);
    char err[256];
    /* stored policies compiled when they were saved; one that no longer compiles matches
     * nothing rather than everything */
    s->compiled =
        s->filter_policy ? filter_compile(s->filter_policy, s->scope, err, sizeof err) : NULL;
}

enum mq_status mq_subscriptions_load(struct db_conn *c, const struct mq_topic *t,
                                     struct mq_subscription **subs, int *count)
{
    char tid[16];
    snprintf(tid, sizeof tid, "%d", t->id);
    const char *v[] = {tid};
    PGresult *r = db_exec(c, &q_sub_load, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *count = PQntuples(r);
    *subs = xcalloc((size_t)*count + 1, sizeof **subs);
    for (int i = 0; i < *count; i++)
        read_subscription(r, i, &(*subs)[i]);
    PQclear(r);
    return MQ_OK;
}

void mq_subscriptions_free(struct mq_subscription *subs, int count)
{
    for (int i = 0; i < count; i++) {
        free(subs[i].url);
        json_decref(subs[i].filter_policy);
        filter_free(subs[i].compiled);
    }
    free(subs);
}

/* Does subscription s want the message? body is the parsed body (NULL when not JSON). */
static bool wants(const struct mq_subscription *s, const struct mq_publish *p, json_t *body)
{
    if (!s->filter_policy)
        return true;
    if (!s->compiled)
        return false;
    if (s->scope == FILTER_SCOPE_BODY)
        return filter_match_body(s->compiled, body ? body : json_null()); /* {} matches all */
    return filter_match_attributes(s->compiled, p->attributes);
}

/* The SNS-style envelope of a publish (caller frees). */
static char *envelope(const struct mq_topic *t, const struct mq_publish *p, const char *message_id)
{
    char ts[CLOCK_RFC3339_LEN];
    clock_format_rfc3339(clock_wall_us(), ts);
    json_t *e =
        json_pack("{s:s, s:s, s:s, s:s%, s:s}", "Type", "Notification", "MessageId", message_id,
                  "Topic", t->name, "Message", p->body, p->body_len, "Timestamp", ts);
    if (p->subject)
        json_object_set_new(e, "Subject", json_string(p->subject));
    if (p->group_id)
        json_object_set_new(e, "MessageGroupId", json_string(p->group_id));
    if (p->topic_arn)
        json_object_set_new(e, "TopicArn", json_string(p->topic_arn));
    json_t *attrs = json_object();
    const char *name;
    json_t *a;
    json_object_foreach(p->attributes, name, a)
    {
        json_object_set_new(attrs, name,
                            json_pack("{s:O, s:O}", "Type", json_object_get(a, "type"), "Value",
                                      json_object_get(a, "value")));
    }
    json_object_set_new(e, "MessageAttributes", attrs);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (!text)
        rydes_oom();
    return text;
}

/* The matching subscriptions of one publish, as the array literals the statements take. */
struct targets {
    struct buf queues, raws, notify, urls, url_raws;
    bool any_raw, any_env, any_fifo;
    int n, nurls;
};

static void targets_init(struct targets *t)
{
    memset(t, 0, sizeof *t);
    buf_init(&t->queues);
    buf_init(&t->raws);
    buf_init(&t->notify);
    buf_init(&t->urls);
    buf_init(&t->url_raws);
}

static void targets_cleanup(struct targets *t)
{
    buf_cleanup(&t->queues);
    buf_cleanup(&t->raws);
    buf_cleanup(&t->notify);
    buf_cleanup(&t->urls);
    buf_cleanup(&t->url_raws);
}

/* Appends item to the array literal a of *count items. */
static void array_add(struct buf *a, int *count, const char *item)
{
    buf_puts(a, *count ? "," : "{");
    buf_puts(a, item);
    (*count)++;
}

static void targets_add(struct targets *t, const struct mq_subscription *s, bool listened)
{
    int n = t->n, nurls = t->nurls, nnotify = t->notify.len ? 1 : 0;
    char id[16];
    if (s->url) {
        snprintf(id, sizeof id, "%d", s->id);
        array_add(&t->urls, &t->nurls, id);
        array_add(&t->url_raws, &nurls, s->raw ? "t" : "f");
    } else {
        snprintf(id, sizeof id, "%d", s->queue_id);
        array_add(&t->queues, &t->n, id);
        array_add(&t->raws, &n, s->raw ? "t" : "f");
        if (listened)
            array_add(&t->notify, &nnotify, id);
        t->any_fifo |= s->queue_fifo;
    }
    t->any_raw |= s->raw;
    t->any_env |= !s->raw;
}

/* Closes the array literals (an empty one is "{}"). */
static void targets_close(struct targets *t)
{
    struct buf *all[] = {&t->queues, &t->raws, &t->notify, &t->urls, &t->url_raws};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        buf_puts(all[i], all[i]->len ? "}" : "{}");
}

/* Can tg be published by mq_publish_payload: queues only, all of one form, none FIFO? */
static bool targets_lean(const struct mq_topic *t, const struct targets *tg)
{
    return !tg->any_fifo && !(t && t->fifo) && !tg->nurls && !(tg->any_raw && tg->any_env);
}

bool mq_publish_always_lean(const struct mq_topic *t, const struct mq_subscription *subs, int n)
{
    bool raw = false, env = false;
    for (int i = 0; i < n; i++) {
        if (subs[i].url || subs[i].queue_fifo)
            return false;
        raw |= subs[i].raw;
        env |= !subs[i].raw;
    }
    return !(t && t->fifo) && !(raw && env);
}

/* Fills plan from the (closed) targets tg, which must be lean. */
static void plan_fill(const struct mq_topic *t, const struct mq_publish *p, struct targets *tg,
                      struct mq_publish_plan *plan)
{
    plan->lean = true;
    plan->n = tg->n;
    plan->envelope = tg->any_env ? envelope(t, p, plan->message_id) : NULL;
    plan->payload = plan->envelope ? plan->envelope : p->body; /* no copy of a raw body */
    plan->body_json = tg->any_env || p->body_json;
    plan->attributes =
        tg->any_raw && p->attributes ? jsontext_dumps(p->attributes, JSON_COMPACT) : NULL;
    plan->queues = tg->queues;
    plan->notify = tg->notify;
    buf_init(&tg->queues);
    buf_init(&tg->notify);
}

/* Publishes through q_publish_lean. */
static enum mq_status publish_lean(struct db_conn *c, const struct mq_publish_plan *plan,
                                   struct mq_publish_result *out)
{
    const char *v[] = {plan->message_id,
                       plan->payload,
                       plan->body_json ? "t" : "f",
                       plan->attributes,
                       buf_str((struct buf *)&plan->queues),
                       buf_str((struct buf *)&plan->notify)};
    PGresult *r = db_exec(c, &q_publish_lean, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    out->deliveries = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return MQ_OK;
}

/* The statement of n lean publishes (1..MQ_MAX_ROWS): one call of sql/006's
 * mq_publish_payload each, in one statement, so in one transaction and commit. */
static struct db_stmt q_publish_plans[MQ_MAX_ROWS];
static char q_publish_plans_name[MQ_MAX_ROWS][24];
static pthread_once_t q_publish_plans_once = PTHREAD_ONCE_INIT;

static void publish_plans_prepare(void)
{
    for (int n = 1; n <= MQ_MAX_ROWS; n++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "SELECT ");
        for (int i = 0, p = 1; i < n; i++, p += 6)
            buf_printf(&b,
                       "%smq_publish_payload($%d::uuid, $%d, $%d::boolean, $%d::jsonb, "
                       "$%d::int[], $%d::int[])",
                       i ? ", " : "", p, p + 1, p + 2, p + 3, p + 4, p + 5);
        snprintf(q_publish_plans_name[n - 1], sizeof q_publish_plans_name[0], "mq_publish_plans_%d",
                 n);
        q_publish_plans[n - 1].name = q_publish_plans_name[n - 1];
        q_publish_plans[n - 1].sql = buf_steal(&b); /* lives as long as the process */
        q_publish_plans[n - 1].nparams = 6 * n;
    }
}

enum mq_status mq_publish_plans(struct db_conn *c, const struct mq_publish_plan *const *plans,
                                int n, int *deliveries)
{
    pthread_once(&q_publish_plans_once, publish_plans_prepare);
    const char *v[6 * MQ_MAX_ROWS];
    for (int i = 0; i < n; i++) {
        const struct mq_publish_plan *plan = plans[i];
        v[6 * i] = plan->message_id;
        v[6 * i + 1] = plan->payload ? plan->payload : "";
        v[6 * i + 2] = plan->body_json ? "t" : "f";
        v[6 * i + 3] = plan->attributes;
        v[6 * i + 4] = buf_str((struct buf *)&plan->queues);
        v[6 * i + 5] = buf_str((struct buf *)&plan->notify);
    }
    PGresult *r = db_exec(c, &q_publish_plans[n - 1], v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    for (int i = 0; i < n; i++) {
        deliveries[i] = atoi(PQgetvalue(r, 0, i));
        mq_publish_plan_count(plans[i]);
    }
    PQclear(r);
    return MQ_OK;
}

/* Runs the publish statement for the targets tg; fills out. */
static enum mq_status publish_to(struct db_conn *c, const struct mq_topic *t,
                                 const struct mq_publish *p, struct targets *tg,
                                 struct mq_publish_result *out)
{
    bool fifo = tg->any_fifo || (t && t->fifo);
    char *env = tg->any_env ? envelope(t, p, out->message_id) : NULL;
    char *attrs = p->attributes ? jsontext_dumps(p->attributes, JSON_COMPACT) : NULL;
    char tid[16], sha[65];
    snprintf(tid, sizeof tid, "%d", t ? t->id : 0);
    const char *dedup = p->dedup_id;
    if (t && t->fifo && !dedup) {
        secret_sha256_hex(p->body, p->body_len, sha);
        dedup = sha;
    }
    if (fifo && !p->group_id) {
        free(env);
        free(attrs);
        return MQ_INVALID; /* the API checks this first */
    }
    const char *v[] = {out->message_id,
                       p->body,
                       tg->any_raw ? "t" : "f",
                       env ? env : "",
                       tg->any_env ? "t" : "f",
                       p->body_json ? "t" : "f",
                       attrs,
                       buf_str(&tg->queues),
                       buf_str(&tg->raws),
                       fifo ? (t ? tid : NULL) : buf_str(&tg->notify),
                       fifo ? dedup : buf_str(&tg->urls),
                       fifo ? p->group_id : buf_str(&tg->url_raws)};
    const int len[] = {0, (int)p->body_len, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const int fmt[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct db_stmt *st = fifo ? &q_publish_fifo : tg->nurls ? &q_publish_push : &q_publish;
    PGresult *r = db_exec(c, st, v, len, fmt);
    free(env);
    free(attrs);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    if (fifo) {
        mq_copy(out->message_id, sizeof out->message_id, r, 0, 0);
        out->deliveries = atoi(PQgetvalue(r, 0, 1));
        out->duplicate = PQgetvalue(r, 0, 2)[0] == 't';
    } else {
        out->deliveries = atoi(PQgetvalue(r, 0, 0));
        out->pushes = atoi(PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return MQ_OK;
}

/* Adds tally to the counters; with delivered false (a FIFO duplicate, stored before) only the
 * topic's publish. */
static void tally_apply(const struct mq_publish_tally *tally, bool delivered)
{
    mq_count_topic(tally->topic_id, 1);
    for (int i = 0; delivered && i < tally->n; i++) {
        const struct mq_publish_tally_item *it = &tally->items[i];
        mq_count_subscription(it->subscription_id, it->wanted ? MQC_MATCHED : MQC_FILTERED_OUT, 1);
        if (it->wanted && it->queue_id)
            mq_count_queue(it->queue_id, MQC_SENT, 1);
    }
}

void mq_publish_plan_count(const struct mq_publish_plan *plan)
{
    tally_apply(&plan->tally, true);
}

/* Collects the subscriptions of subs that want p into tg (closed), and what the publish will
 * count into tally (owned by the caller: free tally->items). */
static void match_targets(const struct mq_topic *t, const struct mq_subscription *subs, int n,
                          const struct mq_publish *p, bool (*listened)(void *ctx, int queue_id),
                          void *ctx, struct targets *tg, struct mq_publish_tally *tally)
{
    /* body-scope policies look into the body as JSON: a JSON value, or a string holding JSON
     * text (as SNS reads a message string); parsed only when such a policy exists, and only an
     * object (any other value matches only the empty policy, which needs no body). Integers
     * past 64 bits and \u0000 are valid JSON that jansson refuses by default: with these flags
     * they parse (the matcher compares by length, and numbers that large are out of its range);
     * a real past a double's range still fails, and the body is then taken as not JSON */
    bool body_scope = false;
    for (int i = 0; i < n && !body_scope; i++)
        body_scope = subs[i].compiled && subs[i].scope == FILTER_SCOPE_BODY;
    json_t *body =
        body_scope && filter_body_is_object(p->body, p->body_len)
            ? json_loadb(p->body, p->body_len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL)
            : NULL;
    targets_init(tg);
    *tally = (struct mq_publish_tally){.topic_id = t ? t->id : 0, .n = n};
    tally->items = n ? xcalloc((size_t)n, sizeof *tally->items) : NULL;
    for (int i = 0; i < n; i++) {
        bool wanted = wants(&subs[i], p, body);
        tally->items[i] =
            (struct mq_publish_tally_item){.subscription_id = subs[i].id,
                                           .queue_id = subs[i].url ? 0 : subs[i].queue_id,
                                           .wanted = wanted};
        if (wanted)
            targets_add(tg, &subs[i], !subs[i].url && listened(ctx, subs[i].queue_id));
    }
    json_decref(body);
    targets_close(tg);
}

void mq_publish_plan(const struct mq_topic *t, const struct mq_subscription *subs, int n,
                     const struct mq_publish *p, bool (*listened)(void *ctx, int queue_id),
                     void *ctx, struct mq_publish_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    ids_uuid(plan->message_id);
    buf_init(&plan->queues);
    buf_init(&plan->notify);
    struct targets tg;
    match_targets(t, subs, n, p, listened, ctx, &tg, &plan->tally);
    if (targets_lean(t, &tg)) {
        buf_cleanup(&plan->queues);
        buf_cleanup(&plan->notify);
        plan_fill(t, p, &tg, plan);
    }
    targets_cleanup(&tg);
}

void mq_publish_plan_clear(struct mq_publish_plan *plan)
{
    free(plan->envelope);
    free(plan->attributes);
    buf_cleanup(&plan->queues);
    buf_cleanup(&plan->notify);
    free(plan->tally.items);
    memset(plan, 0, sizeof *plan);
}

void mq_publish_plan_params(const struct mq_publish_plan *plan, const char **v)
{
    v[0] = plan->message_id;
    v[1] = plan->payload ? plan->payload : "";
    v[2] = plan->attributes;
    v[3] = buf_str((struct buf *)&plan->queues);
    v[4] = buf_str((struct buf *)&plan->notify);
}

void mq_publish_plan_result(const struct mq_publish_plan *plan, PGresult *r, int col,
                            struct mq_publish_result *out)
{
    out->deliveries = atoi(PQgetvalue(r, 0, col));
    memcpy(out->message_id, plan->message_id, sizeof out->message_id);
    mq_publish_plan_count(plan);
    if (out->deliveries > 0)
        mq_fanout_kick(); /* the statement has committed (they all run alone) */
}

enum mq_status mq_publish(struct db_conn *c, const struct mq_topic *t,
                          const struct mq_subscription *subs, int n, const struct mq_publish *p,
                          bool (*listened)(void *ctx, int queue_id), void *ctx,
                          struct mq_publish_result *out)
{
    memset(out, 0, sizeof *out);
    struct targets tg;
    struct mq_publish_tally tally;
    match_targets(t, subs, n, p, listened, ctx, &tg, &tally);
    enum mq_status st = MQ_OK;
    if (targets_lean(t, &tg)) {
        struct mq_publish_plan plan = {0};
        ids_uuid(plan.message_id);
        plan_fill(t, p, &tg, &plan);
        memcpy(out->message_id, plan.message_id, sizeof out->message_id);
        if (plan.n)
            st = publish_lean(c, &plan, out);
        mq_publish_plan_clear(&plan);
    } else {
        ids_uuid(out->message_id);
        st = publish_to(c, t, p, &tg, out); /* FIFO topics record the dedup id even unmatched */
    }
    if (st == MQ_OK)
        tally_apply(&tally, !out->duplicate);
    free(tally.items);
    targets_cleanup(&tg);
    return st;
}

/* Touches (and so locks) the rows of groups $2 (a JSON array of strings) in each of queues $1,
 * without holding one while waiting for another (sql/054). */
static struct db_stmt q_lock_groups =
    DB_STMT("mq_lock_groups",
            "SELECT mq_touch_groups(array_agg(q), array_agg(g)) "
            "FROM unnest($1::int[]) AS q, json_array_elements_text($2::json) AS g",
            2);
/* FIFO batches of one topic run one at a time ("fifo" in ASCII, then the topic id): their
 * deduplication rows cannot then be taken in opposite orders by two batches. */
static struct db_stmt q_lock_topic_batches =
    DB_STMT("mq_lock_topic_batches", "SELECT pg_advisory_xact_lock(1718183535, $1::int)", 1);

enum mq_status mq_publish_lock_groups(struct db_conn *c, const struct mq_topic *t,
                                      const struct mq_subscription *subs, int n, json_t *groups)
{
    char tid[16];
    snprintf(tid, sizeof tid, "%d", t->id);
    const char *tv[] = {tid};
    PGresult *tr = db_exec(c, &q_lock_topic_batches, tv, NULL, NULL);
    if (!db_ok(c, tr, PGRES_TUPLES_OK))
        return mq_failed(c, tr);
    PQclear(tr);
    struct buf queues;
    buf_init(&queues);
    int nq = 0;
    char id[16];
    for (int i = 0; i < n; i++)
        if (subs[i].queue_fifo && !subs[i].url) {
            snprintf(id, sizeof id, "%d", subs[i].queue_id);
            array_add(&queues, &nq, id);
        }
    buf_puts(&queues, nq ? "}" : "{}");
    char *g = json_dumps(groups, JSON_COMPACT);
    const char *v[] = {buf_str(&queues), g};
    PGresult *r = nq && json_array_size(groups) ? db_exec(c, &q_lock_groups, v, NULL, NULL) : NULL;
    free(g);
    buf_cleanup(&queues);
    if (r && !db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    PQclear(r);
    return MQ_OK;
}

static struct db_stmt q_recipients =
    DB_STMT("mq_recipients", "SELECT name, id, fifo FROM queues WHERE name = ANY ($1::text[])", 1);

/* Finds name among the rows of r; the row index or -1. */
static int row_of(PGresult *r, const char *name)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), name) == 0)
            return i;
    return -1;
}

enum mq_status mq_recipients_resolve(struct db_conn *c, const char *const *names, int n,
                                     const char *group_id, struct mq_subscription **subs,
                                     const char **why, char *detail, size_t detail_len)
{
    struct buf arr, bad;
    buf_init(&arr);
    buf_init(&bad);
    /* validated queue names hold no quote or backslash, but an unquoted element spelled NULL
     * (a queue may be named "null") would be read as SQL NULL: every element is quoted */
    for (int i = 0; i < n; i++)
        buf_printf(&arr, "%s\"%s\"", i ? "," : "{", names[i]);
    buf_puts(&arr, "}");
    const char *v[] = {buf_str(&arr)};
    PGresult *r = db_exec(c, &q_recipients, v, NULL, NULL);
    buf_cleanup(&arr);
    if (!db_ok(c, r, PGRES_TUPLES_OK)) {
        buf_cleanup(&bad);
        return mq_failed(c, r);
    }
    *subs = xcalloc((size_t)n + 1, sizeof **subs);
    for (int i = 0; i < n; i++) {
        int row = row_of(r, names[i]);
        bool fifo = row >= 0 && PQgetvalue(r, row, 2)[0] == 't';
        why[i] = row < 0             ? "no such queue"
                 : fifo && !group_id ? "a FIFO queue: group_id is required"
                                     : NULL;
        if (why[i])
            buf_printf(&bad, "%s%s (%s)", bad.len ? ", " : "", names[i], why[i]);
        else
            (*subs)[i] = (struct mq_subscription){
                .queue_id = atoi(PQgetvalue(r, row, 1)), .queue_fifo = fifo, .raw = true};
    }
    PQclear(r);
    bool ok = bad.len == 0;
    if (!ok)
        snprintf(detail, detail_len, "recipients refused, nothing delivered: %s", buf_str(&bad));
    buf_cleanup(&bad);
    if (!ok) {
        free(*subs);
        *subs = NULL;
    }
    return ok ? MQ_OK : MQ_INVALID;
}
