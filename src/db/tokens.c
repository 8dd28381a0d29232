/* The token store; see include/rydes/tokens.h. Secrets are hashed before they reach SQL and the
 * hash travels as a binary parameter; the stored hash is compared again in constant time. */
#include "rydes/tokens.h"

#include "rydes/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_COLUMNS       \
    "id, seq, name, role, " \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static struct db_stmt q_insert =
    DB_STMT("tokens_insert",
            "INSERT INTO tokens (id, name, role, secret_hash) VALUES ($1, $2, $3, $4) "
            "RETURNING " TOKEN_COLUMNS,
            4);
/* The bootstrap token is replaced, not added to: rotating RYDES_ADMIN_TOKEN revokes the old.
 * A token made otherwise with the same secret is not made the bootstrap admin (no row). */
static struct db_stmt q_ensure =
    DB_STMT("tokens_ensure",
            "WITH old AS (DELETE FROM tokens WHERE bootstrap AND secret_hash <> $2) "
            "INSERT INTO tokens AS t (id, name, role, secret_hash, bootstrap) "
            "VALUES ($1, 'RYDES_ADMIN_TOKEN', 'admin', $2, true) "
            "ON CONFLICT (secret_hash) DO UPDATE SET role = 'admin' "
            "WHERE t.bootstrap AND t.name = 'RYDES_ADMIN_TOKEN' RETURNING 1",
            2);
/* Start-ups ensuring their tokens one at a time ("bootstra" in ASCII): two at once each
 * deleted only what it saw, and both tokens stayed. */
static struct db_stmt q_ensure_lock =
    DB_STMT("tokens_ensure_lock", "SELECT pg_advisory_xact_lock(7093010484075721313)", 0);
static struct db_stmt q_auth =
    DB_STMT("tokens_auth", "SELECT role, secret_hash FROM token_lookup($1)", 1); /* sql/059 */
static struct db_stmt q_get =
    DB_STMT("tokens_get", "SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = $1", 1);
static struct db_stmt q_delete = DB_STMT("tokens_delete", "DELETE FROM tokens WHERE id = $1", 1);
static struct db_stmt q_list = DB_STMT("tokens_list",
                                       "SELECT " TOKEN_COLUMNS " FROM tokens WHERE seq > $1 "
                                       "ORDER BY seq LIMIT $2",
                                       2);

static enum store_result failed(struct db_conn *c, PGresult *r)
{
    bool unavailable = db_conn_lost(c) || db_transient(r);
    PQclear(r);
    return unavailable ? STORE_UNAVAILABLE : STORE_ERROR;
}

static void read_row(PGresult *r, int row, struct token_info *out)
{
    snprintf(out->id, sizeof out->id, "%s", PQgetvalue(r, row, 0));
    out->seq = atoll(PQgetvalue(r, row, 1));
    snprintf(out->name, sizeof out->name, "%s", PQgetvalue(r, row, 2));
    if (!role_parse(PQgetvalue(r, row, 3), &out->role))
        out->role = ROLE_NONE;
    snprintf(out->created_at, sizeof out->created_at, "%s", PQgetvalue(r, row, 4));
}

enum store_result tokens_create(struct db_conn *c, enum role role, const char *name, char *secret,
                                struct token_info *out)
{
    char id[IDS_UUID_LEN];
    unsigned char hash[SECRET_HASH_LEN];
    ids_uuid(id);
    secret_token_generate(secret);
    secret_token_hash(secret, strlen(secret), hash);
    const char *v[] = {id, name, role_name(role), (const char *)hash};
    const int len[] = {0, 0, 0, SECRET_HASH_LEN};
    const int fmt[] = {0, 0, 0, 1};
    PGresult *r = db_exec(c, &q_insert, v, len, fmt);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    read_row(r, 0, out);
    PQclear(r);
    return STORE_OK;
}

enum store_result tokens_ensure_admin(struct db_conn *c, const char *secret)
{
    char id[IDS_UUID_LEN];
    unsigned char hash[SECRET_HASH_LEN];
    ids_uuid(id);
    secret_token_hash(secret, strlen(secret), hash);
    const char *v[] = {id, (const char *)hash};
    const int len[] = {0, SECRET_HASH_LEN};
    const int fmt[] = {0, 1};
    if (!db_begin(c))
        return db_conn_lost(c) ? STORE_UNAVAILABLE : STORE_ERROR;
    PGresult *r = db_exec(c, &q_ensure_lock, NULL, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r); /* the caller's release rolls back */
    PQclear(r);
    r = db_exec(c, &q_ensure, v, len, fmt);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    bool ensured = PQntuples(r) == 1;
    PQclear(r);
    if (!ensured) {
        db_rollback(c); /* the previous bootstrap token stays */
        return STORE_NOT_FOUND;
    }
    return db_commit(c) ? STORE_OK : (db_conn_lost(c) ? STORE_UNAVAILABLE : STORE_ERROR);
}

enum store_result tokens_authenticate(struct db_conn *c, const char *secret, enum role *role)
{
    unsigned char hash[SECRET_HASH_LEN];
    secret_token_hash(secret, strlen(secret), hash);
    const char *v[] = {(const char *)hash};
    const int len[] = {SECRET_HASH_LEN};
    const int fmt[] = {1};
    PGresult *r = db_exec(c, &q_auth, v, len, fmt);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    size_t stored_len = 0;
    unsigned char *stored =
        PQntuples(r) ? PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &stored_len)
                     : NULL;
    bool match = stored && stored_len == SECRET_HASH_LEN &&
                 secret_equal(stored, hash, SECRET_HASH_LEN) &&
                 role_parse(PQgetvalue(r, 0, 0), role);
    PQfreemem(stored);
    PQclear(r);
    return match ? STORE_OK : STORE_NOT_FOUND;
}

enum store_result tokens_get(struct db_conn *c, const char *id, struct token_info *out)
{
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_get, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    bool found = PQntuples(r) > 0;
    if (found)
        read_row(r, 0, out);
    PQclear(r);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

enum store_result tokens_delete(struct db_conn *c, const char *id)
{
    const char *v[] = {id};
    PGresult *r = db_exec(c, &q_delete, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_COMMAND_OK))
        return failed(c, r);
    bool found = strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

enum store_result tokens_list(struct db_conn *c, long long after, int limit,
                              struct token_info **items, int *count, bool *more)
{
    char a[24], l[16];
    snprintf(a, sizeof a, "%lld", after);
    snprintf(l, sizeof l, "%d", limit + 1); /* one extra row tells whether there is more */
    const char *v[] = {a, l};
    PGresult *r = db_exec(c, &q_list, v, NULL, NULL);
    if (!db_ok(c, r, PGRES_TUPLES_OK))
        return failed(c, r);
    int n = PQntuples(r);
    *more = n > limit;
    *count = *more ? limit : n;
    *items = xcalloc((size_t)(*count ? *count : 1), sizeof **items);
    for (int i = 0; i < *count; i++)
        read_row(r, i, &(*items)[i]);
    PQclear(r);
    return STORE_OK;
}
