/* Integration: least privilege. The owner role migrates and grants data access to a second
 * role (RYDES_GRANT_ROLE); the gateway and its workers then run as that role — queues, topics,
 * rides and their services work — while the role cannot create, alter, drop or truncate
 * anything, nor rewrite the migrations table. Two roles of this process are created for the
 * suite and dropped at exit. */
#include "harness.h"

#include "rydes/app.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char owner[64], data[64];
static char *owner_url, *data_url;
static struct harness_server srv;

static void superuser_exec(const char *url, const char *sql)
{
    free(harness_sql(url, sql));
}

/* Runs at exit, after the server stopped; the harness then drops the database. */
static void drop_roles(void)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "REASSIGN OWNED BY %s TO CURRENT_USER; DROP OWNED BY %s, %s; DROP ROLE %s, %s", owner,
             owner, data, owner, data);
    PGconn *pg = PQconnectdb(harness_db_url());
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
    free(owner_url);
    free(data_url);
}

/* Migrates as the owner, granting data access to the data role; false with msg filled when it
 * fails. Runs on the test's threads too: it makes no checks. */
static bool migrate_as_owner(int *applied, char *msg, size_t n)
{
    struct config cfg;
    struct config_error err;
    config_init(&cfg);
    bool ok = config_set_flag(&cfg, "database-url", owner_url, &err) &&
              config_set_flag(&cfg, "grant-role", data, &err);
    if (!ok)
        snprintf(msg, n, "%s", err.message);
    ok = ok && app_migrate(&cfg, true, applied, msg, n);
    config_cleanup(&cfg);
    return ok;
}

/* Creates the two roles, hands the database to the owner and migrates as the owner. */
static void set_up_roles(void)
{
    snprintf(owner, sizeof owner, "rydes_t_owner_%d", (int)getpid());
    snprintf(data, sizeof data, "rydes_t_data_%d", (int)getpid());
    const char *db = harness_db_url();
    char *dbname = harness_sql(db, "SELECT current_database()");
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN; ALTER DATABASE %s OWNER TO %s", owner,
             data, dbname, owner);
    superuser_exec(db, sql);
    free(dbname);
    atexit(drop_roles);
    owner_url = harness_conninfo_with(db, "user", owner);
    data_url = harness_conninfo_with(db, "user", data);
    int applied = 0;
    char msg[512];
    ck_assert_msg(migrate_as_owner(&applied, msg, sizeof msg), "migrate: %s", msg);
    ck_assert_int_gt(applied, 0);
    /* again: idempotent, nothing to apply, the grants repeated */
    ck_assert_msg(migrate_as_owner(&applied, msg, sizeof msg), "migrate: %s", msg);
    ck_assert_int_eq(applied, 0);
}

static void as_data_role(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "database-url", data_url, &err));
    ck_assert(config_set_flag(cfg, "workers",
                              "push,customer-notification,customer-loyalty,datalake-ingestion,"
                              "extraordinary-rides",
                              &err));
}

/* The SQLSTATE of running sql as the data role ("" when it succeeded). */
static void sqlstate_as_data(const char *sql, char out[6])
{
    PGconn *pg = PQconnectdb(data_url);
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(pg));
    PGresult *r = PQexec(pg, sql);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(out, 6, "%s", st ? st : "");
    PQclear(r);
    PQfinish(pg);
}

START_TEST(the_owner_owns_every_table)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> '%s'",
             owner);
    char *n = harness_sql(harness_db_url(), sql);
    ck_assert_str_eq(n, "0");
    free(n);
    snprintf(sql, sizeof sql,
             "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE "
             "rolname = '%s'",
             data);
    char *mighty = harness_sql(harness_db_url(), sql);
    ck_assert_str_eq(mighty, "f");
    free(mighty);
}
END_TEST

START_TEST(the_data_role_cannot_change_the_schema)
{
    static const char *const refused[] = {
        "CREATE TABLE intruder (i int)",
        "DROP TABLE messages",
        "ALTER TABLE messages ADD COLUMN intruder int",
        "TRUNCATE messages",
        "CREATE INDEX intruder ON messages (id)",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION mq_sweep() RETURNS void LANGUAGE sql AS ''",
        "INSERT INTO rydes_migrations (version, name) VALUES (999, 'intruder')",
        "DELETE FROM rydes_migrations",
        "ALTER ROLE CURRENT_USER SUPERUSER",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char st[6];
        sqlstate_as_data(refused[i], st);
        ck_assert_msg(strcmp(st, "42501") == 0, "%s: SQLSTATE '%s', want 42501", refused[i], st);
    }
    /* what it may do: read and write the data */
    char st[6];
    sqlstate_as_data("SELECT count(*) FROM queue_stats", st);
    ck_assert_str_eq(st, "");
    sqlstate_as_data("SELECT version FROM rydes_migrations", st);
    ck_assert_str_eq(st, "");
}
END_TEST

START_TEST(the_gateway_and_its_workers_run_as_the_data_role)
{
    harness_start(&srv, as_data_role); /* RYDES_MIGRATE stays on: a current database needs no DDL */
    struct response r;
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);

    harness_put_queue(&srv, "least", NULL, 201);
    harness_admin(&srv, "POST", "/queues/least/messages", "{\"body\": \"hello\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/least/messages:receive", "{\"delete\": true}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "messages")), 1);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/least:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/tokens", "{\"role\": \"app\", \"name\": \"least\"}", &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);

    harness_admin(&srv, "POST", "/rides",
                  "{\"from\": \"Pier 39\", \"to\": \"Twin Peaks\", \"customer\": \"least-1\", "
                  "\"duration\": 900, \"distance\": 25, \"fare\": 60}",
                  &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    /* the four services, each with its own table, as the data role */
    ck_assert_int_eq(harness_wait_sql("SELECT (SELECT count(*) FROM loyalty_credits) * 1000 + "
                                      "(SELECT count(*) FROM datalake_rides) * 100 + "
                                      "(SELECT count(*) FROM ride_notifications) * 10 + "
                                      "(SELECT count(*) FROM extraordinary_rides)",
                                      1111, 20),
                     1111); /* one row in each */
    harness_admin(&srv, "DELETE", "/queues/least", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    harness_stop(&srv);
}
END_TEST

START_TEST(grant_role_is_validated)
{
    static const char *const bad[] = {
        "Robert",       "a b",
        "x;drop",       "1abc",
        "\"q\"",        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "public",       "none",
        "current_user", "pg_read_all_data"};
    struct config cfg;
    struct config_error err;
    config_init(&cfg);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!config_set_flag(&cfg, "grant-role", bad[i], &err), "%s accepted", bad[i]);
    ck_assert(config_set_flag(&cfg, "grant-role", "rydes_app", &err));
    config_cleanup(&cfg);
}
END_TEST

/* The counting triggers of the Wild Rydes tables (sql/020) run as the tables' owner: the data
 * role writes tasks without a grant on work_count_changes (a migration that adds such a table
 * does not break writes before the next grant). */
START_TEST(counted_writes_need_no_grant_on_the_counts)
{
    char sql[256];
    snprintf(sql, sizeof sql, "REVOKE ALL ON work_count_changes FROM %s", data);
    superuser_exec(harness_db_url(), sql);
    PGconn *pg = PQconnectdb(data_url);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    PGresult *r =
        PQexec(pg, "INSERT INTO tasks (id, kind) VALUES (gen_random_uuid(), 'prebooking')");
    ExecStatusType st = PQresultStatus(r);
    char err[256];
    snprintf(err, sizeof err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(pg);
    snprintf(sql, sizeof sql, "GRANT SELECT, INSERT, UPDATE, DELETE ON work_count_changes TO %s",
             data);
    superuser_exec(harness_db_url(), sql);
    ck_assert_msg(st == PGRES_COMMAND_OK, "%s", err);
}
END_TEST

/* Migrates as the owner with the grant, GRANTS times in a row; counts the failures into arg. */
#define GRANTS 8
static void *grant_repeatedly(void *arg)
{
    for (int i = 0; i < GRANTS; i++) {
        int applied = 0;
        char msg[512];
        if (!migrate_as_owner(&applied, msg, sizeof msg))
            *(int *)arg += 1;
    }
    return NULL;
}

/* Processes that start together (replicas, parallel deploy jobs) all migrate and grant: none
 * fails on the others' grants ("tuple concurrently updated" without the migrations' lock). */
START_TEST(concurrent_grants_all_succeed)
{
    int failed[3] = {0};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, grant_repeatedly, &failed[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(failed[0] + failed[1] + failed[2], 0);
}
END_TEST

/* A schema anyone may create in (PostgreSQL before 15 grants CREATE on public to PUBLIC, and
 * pg_upgrade keeps it) is refused when granting: the data role could create tables and plant
 * functions there, whatever the grants said. */
START_TEST(a_schema_the_data_role_may_create_in_is_refused)
{
    superuser_exec(harness_db_url(), "GRANT CREATE ON SCHEMA public TO PUBLIC");
    int applied = 0;
    char msg[512];
    bool ok = migrate_as_owner(&applied, msg, sizeof msg);
    superuser_exec(harness_db_url(), "REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    ck_assert_msg(!ok, "granted where the data role may create");
    ck_assert_msg(strstr(msg, "may create objects in schema public"), "%s", msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("roles");
    TCase *t = tcase_create("roles");
    tcase_set_timeout(t, 60);
    tcase_add_unchecked_fixture(t, set_up_roles, NULL);
    tcase_add_test(t, the_owner_owns_every_table);
    tcase_add_test(t, the_data_role_cannot_change_the_schema);
    tcase_add_test(t, the_gateway_and_its_workers_run_as_the_data_role);
    tcase_add_test(t, grant_role_is_validated);
    tcase_add_test(t, concurrent_grants_all_succeed);
    tcase_add_test(t, counted_writes_need_no_grant_on_the_counts);
    tcase_add_test(t, a_schema_the_data_role_may_create_in_is_refused);
    suite_add_tcase(s, t);
    return harness_run(s);
}
