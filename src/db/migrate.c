/* Migrations; see include/rydes/migrate.h.
 *
 * The advisory lock is taken on the session, not in a transaction, so it spans all migrations
 * and is released even when one fails. Each migration file runs through the simple-query
 * protocol (it may hold many statements) inside BEGIN/COMMIT together with its bookkeeping row:
 * either both land or neither does. */
#include "rydes/migrate.h"

#include "rydes/db.h"
#include "rydes/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "rydes" in ASCII: the advisory-lock key of the migrator. */
#define MIGRATE_LOCK_KEY "491496453491"

static bool run(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    PQclear(r);
    return ok;
}

static bool is_applied(PGconn *pg, int version, bool *applied, char *err, size_t errlen)
{
    char v[16];
    snprintf(v, sizeof v, "%d", version);
    const char *params[] = {v};
    PGresult *r = PQexecParams(pg, "SELECT 1 FROM rydes_migrations WHERE version = $1", 1, NULL,
                               params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        *applied = PQntuples(r) > 0;
    else
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static bool apply_one(PGconn *pg, const struct migration *m, char *err, size_t errlen)
{
    char v[16];
    snprintf(v, sizeof v, "%d", m->version);
    const char *params[] = {v, m->name};
    if (!run(pg, "BEGIN", err, errlen))
        return false;
    if (!run(pg, m->sql, err, errlen)) {
        run(pg, "ROLLBACK", err + strlen(err), errlen - strlen(err));
        return false;
    }
    PGresult *r = PQexecParams(pg, "INSERT INTO rydes_migrations (version, name) VALUES ($1, $2)",
                               2, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        run(pg, "ROLLBACK", err + strlen(err), errlen - strlen(err));
        return false;
    }
    return run(pg, "COMMIT", err, errlen);
}

static bool apply_pending(PGconn *pg, int *applied, char *err, size_t errlen)
{
    /* A current database needs no DDL at all: a role without CREATE may "migrate" it. */
    int have = 0;
    if (migrate_status(pg, &have) && have == (int)rydes_migrations_count)
        return true;
    if (!run(pg,
             "CREATE TABLE IF NOT EXISTS rydes_migrations ("
             " version int PRIMARY KEY, name text NOT NULL,"
             " applied_at timestamptz NOT NULL DEFAULT now())",
             err, errlen))
        return false;
    for (size_t i = 0; i < rydes_migrations_count; i++) {
        const struct migration *m = &rydes_migrations[i];
        bool done;
        if (!is_applied(pg, m->version, &done, err, errlen))
            return false;
        if (done)
            continue;
        if (!apply_one(pg, m, err, errlen)) {
            char prefix[600];
            snprintf(prefix, sizeof prefix, "migration %03d_%s: %s", m->version, m->name, err);
            snprintf(err, errlen, "%s", prefix);
            return false;
        }
        log_info("applied migration %03d_%s", m->version, m->name);
        (*applied)++;
    }
    return true;
}

bool migrate_apply(PGconn *pg, int *applied, char *err, size_t errlen)
{
    *applied = 0;
    err[0] = '\0';
    /* Quiet the NOTICEs of IF NOT EXISTS; they say nothing an operator needs. */
    /* A migrator stuck behind another for a minute is a problem to report, not to wait out. */
    if (!run(pg, "SET client_min_messages = warning", err, errlen) ||
        !run(pg, "SET lock_timeout = '60s'", err, errlen))
        return false;
    if (!run(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen)) {
        size_t n = strlen(err); /* PostgreSQL's bare "canceling statement due to lock timeout" */
        if (strstr(err, "lock timeout"))
            snprintf(err + n, errlen - n,
                     " (another process has held the migration lock for a minute: see "
                     "pg_locks, locktype advisory)");
        return false;
    }
    bool ok = apply_pending(pg, applied, err, errlen);
    char unlock_err[256];
    run(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", unlock_err, sizeof unlock_err);
    return ok;
}

bool migrate_status(PGconn *pg, int *applied)
{
    char last[16];
    snprintf(last, sizeof last, "%d",
             rydes_migrations_count ? rydes_migrations[rydes_migrations_count - 1].version : 0);
    const char *params[] = {last};
    /* Versions past ours belong to a newer binary sharing the database; they do not count. */
    PGresult *r = PQexecParams(pg, "SELECT count(*) FROM rydes_migrations WHERE version <= $1", 1,
                               NULL, params, NULL, NULL, 0);
    bool ok = true;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        *applied = atoi(PQgetvalue(r, 0, 0));
    else if (strcmp(db_sqlstate(r), "42P01") == 0)
        *applied = 0; /* undefined_table: nothing migrated yet */
    else
        ok = false;
    PQclear(r);
    return ok;
}

/* The grants of migrate_grant; %1$s is the schema, %2$s the role (both quoted identifiers). The
 * role reads the migrations table but does not write it. Under the migrations' lock (for the
 * transaction): two processes granting at once rewrite the same catalog rows, and PostgreSQL
 * fails the second with "tuple concurrently updated". */
static const char grant_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ");"
    "GRANT USAGE ON SCHEMA %1$s TO %2$s;"
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %1$s TO %2$s;"
    "REVOKE INSERT, UPDATE, DELETE ON rydes_migrations FROM %2$s;"
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %1$s TO %2$s;"
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %1$s TO %2$s;"
    "COMMIT";

/* Whether role may create objects in the current schema (CREATE granted to it or to PUBLIC,
 * as PostgreSQL before 15 grants on public by default, and pg_upgrade keeps): a data role that
 * can create could plant functions or operators the migrations would then call. */
static bool may_create(PGconn *pg, const char *role, bool *creates, char *err, size_t errlen)
{
    const char *v[] = {role};
    PGresult *r = PQexecParams(pg,
                               "SELECT has_schema_privilege($1, current_schema(), 'CREATE'), "
                               "quote_ident(current_schema())",
                               1, NULL, v, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    *creates = ok && PQgetvalue(r, 0, 0)[0] == 't';
    if (!ok)
        snprintf(err, errlen, "grant to %s: %s", role, PQerrorMessage(pg));
    else if (*creates)
        snprintf(err, errlen,
                 "the data role %s may create objects in schema %s (CREATE on it is granted to "
                 "the role, or to PUBLIC as PostgreSQL before 15 does on public): revoke it "
                 "(REVOKE CREATE ON SCHEMA %s FROM PUBLIC, and from the role), or it could plant "
                 "what the migrations call",
                 role, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 1));
    PQclear(r);
    return ok;
}

bool migrate_grant(PGconn *pg, const char *role, char *err, size_t errlen)
{
    bool creates = false;
    if (!may_create(pg, role, &creates, err, errlen) || creates)
        return false;
    PGresult *r = PQexec(pg, "SELECT current_schema()");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
    char *schema =
        ok ? PQescapeIdentifier(pg, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0))) : NULL;
    char *who = PQescapeIdentifier(pg, role, strlen(role));
    PQclear(r);
    char *sql = NULL;
    ok = schema && who && asprintf(&sql, grant_sql, schema, who) > 0;
    if (!ok)
        snprintf(err, errlen, "grant to %s: %s", role, PQerrorMessage(pg));
    else if (!(ok = run(pg, sql, err, errlen)))
        run(pg, "ROLLBACK", err + strlen(err), errlen - strlen(err));
    free(sql);
    PQfreemem(schema);
    PQfreemem(who);
    return ok;
}
