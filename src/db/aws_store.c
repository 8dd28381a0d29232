/* The AWS tables; see include/rydes/aws_store.h. Tag sets travel as one JSON parameter and are
 * unpacked by PostgreSQL, so a TagQueue of any size is one statement. */
#include "rydes/aws_store.h"

#include "rydes/ids.h"
#include "rydes/jsontext.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct db_stmt q_insert =
    DB_STMT("aws_credentials_insert",
            "INSERT INTO aws_credentials (access_key_id, token_id, secret) VALUES ($1, $2, $3)", 3);
static struct db_stmt q_lookup =
    DB_STMT("aws_credentials_lookup",
            "SELECT secret, role, secret_hash FROM aws_credentials_lookup($1)", /* sql/059 */
            1);
static struct db_stmt q_tags_get = DB_STMT(
    "aws_tags_get", "SELECT key, value FROM queue_tags WHERE queue_id = $1 ORDER BY key", 1);
static struct db_stmt q_tags_put =
    DB_STMT("aws_tags_put",
            "INSERT INTO queue_tags (queue_id, key, value) "
            "SELECT $1, t.key, t.value FROM jsonb_each_text($2::jsonb) t "
            "ON CONFLICT (queue_id, key) DO UPDATE SET value = excluded.value",
            2);
static struct db_stmt q_tags_remove =
    DB_STMT("aws_tags_remove",
            "DELETE FROM queue_tags WHERE queue_id = $1 "
            "AND key IN (SELECT jsonb_array_elements_text($2::jsonb))",
            2);
static struct db_stmt q_sources =
    DB_STMT("aws_dead_letter_sources",
            "SELECT name FROM queues WHERE dead_letter_queue_id = $1 AND name > $2 "
            "ORDER BY name LIMIT $3",
            3);
/* Subscriptions after ($2, $3) in (topic, name) order, of topic $1 or (NULL) of every topic. */
static struct db_stmt q_subscriptions =
    DB_STMT("aws_subscriptions",
            "SELECT t.name, s.name, coalesce(q.name, ''), coalesce(s.url, '') "
            "FROM subscriptions s JOIN topics t ON t.id = s.topic_id "
            "LEFT JOIN queues q ON q.id = s.queue_id "
            "WHERE ($1::text IS NULL OR t.name = $1) AND (t.name, s.name) > ($2, $3) "
            "ORDER BY t.name, s.name LIMIT $4",
            4);

/* foreign_key_violation: the row the statement names (a queue looked up from a cache) was
 * deleted since: not found, not a bug */
static enum store_result failed(struct db_conn *c, PGresult *r)
{
    bool unavailable = db_conn_lost(c) || db_transient(r);
    bool gone = !unavailable && strcmp(db_sqlstate(r), "23503") == 0;
    PQclear(r);
    return unavailable ? STORE_UNAVAILABLE : gone ? STORE_NOT_FOUND : STORE_ERROR;
}

/* n characters drawn uniformly from alphabet (of 32 or 64 characters: no modulo bias). */
static void random_chars(char *out, size_t n, const char *alphabet, unsigned mask)
{
    unsigned char raw[64];
    ids_random(raw, n);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[raw[i] & mask];
    out[n] = '\0';
}

static const char key_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

bool aws_access_key_valid(const char *key_id)
{
    return strlen(key_id) == AWS_ACCESS_KEY_LEN - 1 && strncmp(key_id, "AKID", 4) == 0 &&
           strspn(key_id + 4, key_alphabet) == AWS_ACCESS_KEY_LEN - 5;
}

enum store_result aws_credentials_create(struct db_conn *c, const char *token_id, char *key_id,
                                         char *secret)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    memcpy(key_id, "AKID", 4);
    random_chars(key_id + 4, 16, key_alphabet, 31);
    random_chars(secret, 40, b64, 63);
    const char *v[] = {key_id, token_id, secret};
    PGresult *r = db_exec(c, &q_insert, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return failed(c, r);
    PQclear(r);
    return STORE_OK;
}

enum store_result aws_credentials_lookup(struct db_conn *c, const char *key_id, struct aws_key *out)
{
    const char *v[] = {key_id};
    PGresult *r = db_exec(c, &q_lookup, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    size_t hash_len = 0;
    unsigned char *hash =
        PQntuples(r) == 1 ? PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 2), &hash_len)
                          : NULL;
    bool found = hash && hash_len == SECRET_HASH_LEN &&
                 strlen(PQgetvalue(r, 0, 0)) == AWS_SECRET_LEN - 1 &&
                 role_parse(PQgetvalue(r, 0, 1), &out->role);
    if (found) {
        memcpy(out->secret, PQgetvalue(r, 0, 0), AWS_SECRET_LEN);
        memcpy(out->token_hash, hash, SECRET_HASH_LEN);
    }
    PQfreemem(hash);
    /* the result held the secret: wipe it before libpq frees it */
    if (PQntuples(r) == 1)
        OPENSSL_cleanse(PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    PQclear(r);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

enum store_result aws_tags_get(struct db_conn *c, int queue_id, json_t **tags)
{
    char id[16];
    snprintf(id, sizeof id, "%d", queue_id);
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_tags_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    *tags = json_object();
    for (int i = 0; i < PQntuples(r); i++)
        json_object_set_new(*tags, PQgetvalue(r, i, 0), json_string(PQgetvalue(r, i, 1)));
    PQclear(r);
    return STORE_OK;
}

/* Runs a tag statement with the queue id and a JSON parameter. */
static enum store_result tags_exec(struct db_conn *c, struct db_stmt *st, int queue_id,
                                   json_t *param)
{
    char id[16];
    snprintf(id, sizeof id, "%d", queue_id);
    char *text = jsontext_dumps(param, JSON_COMPACT);
    const char *v[] = {id, text};
    PGresult *r = db_exec(c, st, v, NULL, NULL);
    free(text);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return failed(c, r);
    PQclear(r);
    return STORE_OK;
}

enum store_result aws_tags_put(struct db_conn *c, int queue_id, json_t *tags)
{
    return tags_exec(c, &q_tags_put, queue_id, tags);
}

enum store_result aws_tags_remove(struct db_conn *c, int queue_id, json_t *keys)
{
    return tags_exec(c, &q_tags_remove, queue_id, keys);
}

enum store_result aws_dead_letter_sources(struct db_conn *c, int queue_id, const char *after,
                                          int limit, json_t **names, bool *more)
{
    char id[16], l[16];
    snprintf(id, sizeof id, "%d", queue_id);
    snprintf(l, sizeof l, "%d", limit + 1);
    const char *v[] = {id, after, l};
    PGresult *r = db_exec(c, &q_sources, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    int n = PQntuples(r);
    *more = n > limit;
    *names = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(*names, json_string(PQgetvalue(r, i, 0)));
    PQclear(r);
    return STORE_OK;
}

enum store_result aws_subscriptions_list(struct db_conn *c, const char *topic,
                                         const char *after_topic, const char *after_name, int limit,
                                         json_t **rows, bool *more)
{
    char l[16];
    snprintf(l, sizeof l, "%d", limit + 1);
    const char *v[] = {topic, after_topic, after_name, l};
    PGresult *r = db_exec(c, &q_subscriptions, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    int n = PQntuples(r);
    *more = n > limit;
    *rows = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(*rows, json_pack("{s:s, s:s, s:s, s:s}", "topic", PQgetvalue(r, i, 0),
                                               "name", PQgetvalue(r, i, 1), "queue",
                                               PQgetvalue(r, i, 2), "url", PQgetvalue(r, i, 3)));
    PQclear(r);
    return STORE_OK;
}
