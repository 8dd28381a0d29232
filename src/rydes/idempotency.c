/* Idempotency keys of the Wild Rydes POSTs; see include/rydes/idempotency.h. */
#include "rydes/idempotency.h"

#include "rydes/jsontext.h"
#include "rydes/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct db_stmt q_claim =
    DB_STMT("idem_claim",
            "INSERT INTO idempotency_keys (scope, key, request_hash, resource_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            4);
static struct db_stmt q_find = DB_STMT(
    "idem_find",
    "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2", 2);

bool idempotency_key_valid(const char *key)
{
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = key[i] > 0x20 && key[i] < 0x7f;
    return ok;
}

void idempotency_hash(const json_t *canon, char out[IDEMPOTENCY_HASH_LEN])
{
    char *text = jsontext_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
    secret_sha256_hex(text, strlen(text), out);
    free(text);
}

/* Inside the caller's transaction: records key of scope as used by the request of hash to make
 * resource_id. *claimed is false when the key was taken already (by a committed or a concurrent
 * transaction, which this one waits for). */
static enum mq_status idempotency_claim(struct db_conn *c, const char *scope, const char *key,
                                        const char *hash, const char *resource_id, bool *claimed)
{
    const char *v[] = {scope, key, hash, resource_id};
    PGresult *r = db_exec(c, &q_claim, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *claimed = PQntuples(r) == 1;
    PQclear(r);
    return MQ_OK;
}

enum mq_status idempotency_find(struct db_conn *c, const char *scope, const char *key,
                                const char *hash, char id[IDS_UUID_LEN], enum idempotency_match *m)
{
    const char *v[] = {scope, key};
    PGresult *r = db_exec(c, &q_find, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return mq_failed(c, r);
    *m = PQntuples(r) == 0                        ? IDEMPOTENCY_UNKNOWN
         : strcmp(PQgetvalue(r, 0, 0), hash) == 0 ? IDEMPOTENCY_SAME
                                                  : IDEMPOTENCY_OTHER;
    snprintf(id, IDS_UUID_LEN, "%s", *m == IDEMPOTENCY_SAME ? PQgetvalue(r, 0, 1) : "");
    PQclear(r);
    return MQ_OK;
}

enum mq_status idempotency_run(struct db_conn *c, const struct idempotency *k,
                               enum mq_status (*work)(struct db_conn *c, void *arg), void *arg,
                               bool *claimed)
{
    *claimed = true;
    if (!db_begin(c))
        return MQ_UNAVAILABLE;
    enum mq_status st = MQ_OK;
    if (k->key)
        st = idempotency_claim(c, k->scope, k->key, k->hash, k->resource_id, claimed);
    if (st == MQ_OK && *claimed)
        st = work(c, arg);
    if (st == MQ_OK && *claimed && !db_commit(c))
        st = MQ_UNAVAILABLE;
    if (st != MQ_OK || !*claimed)
        db_rollback(c);
    return st;
}
