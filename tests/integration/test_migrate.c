/* Integration: migrations. Applying twice changes nothing the second time; several processes
 * migrating one database at once all succeed and apply each migration exactly once; a server
 * started without migrating is not ready until the schema is current; the topology gives way
 * to a queue made while it runs. And `rydes token create`
 * against such databases: all or nothing, names counted in characters. */
#include "harness.h"

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

START_TEST(migrating_twice_applies_nothing_the_second_time)
{
    char *url = harness_db_create();
    char err[1024];
    PGconn *pg = db_connect(url, 5, NULL, err, sizeof err);
    ck_assert_msg(pg != NULL, "%s", err);
    int applied = -1, status = -1;
    ck_assert(migrate_status(pg, &status));
    ck_assert_int_eq(status, 0);
    ck_assert_msg(migrate_apply(pg, &applied, err, sizeof err), "%s", err);
    ck_assert_int_eq(applied, (int)rydes_migrations_count);
    ck_assert_msg(migrate_apply(pg, &applied, err, sizeof err), "%s", err);
    ck_assert_int_eq(applied, 0);
    ck_assert(migrate_status(pg, &status));
    ck_assert_int_eq(status, (int)rydes_migrations_count);
    PQfinish(pg);
    free(url);
}
END_TEST

START_TEST(concurrent_migrators_apply_each_migration_once)
{
    ck_assert_msg(getenv("RYDES_BINARY") != NULL, "RYDES_BINARY is set by meson");
    char *url = harness_db_create();
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            setenv("DATABASE_URL", url, 1);
            setenv("RYDES_LOG_LEVEL", "warn", 1);
            execl(getenv("RYDES_BINARY"), "rydes", "migrate", (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < N; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    char *count = harness_sql(url, "SELECT count(*) FROM rydes_migrations");
    char *distinct = harness_sql(url, "SELECT count(DISTINCT version) FROM rydes_migrations");
    ck_assert_int_eq(atoi(count), (int)rydes_migrations_count);
    ck_assert_str_eq(count, distinct);
    free(count);
    free(distinct);
    free(url);
}
END_TEST

/* `rydes migrate` on url in a child process; returns its pid. */
static pid_t migrate_child(const char *url)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("DATABASE_URL", url, 1);
        setenv("RYDES_LOG_LEVEL", "warn", 1);
        execl(getenv("RYDES_BINARY"), "rydes", "migrate", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The topology gives way to a queue someone makes while it runs (a PUT, an SQS CreateQueue;
 * start-up's lock holds back only other start-ups): the insert failed and start-up with it
 * (sql/047). Under a database whose default isolation is repeatable read, whose snapshot from
 * before that queue committed would refuse to insert over it: the topology reads committed. */
START_TEST(start_up_takes_a_queue_made_meanwhile)
{
    ck_assert_msg(getenv("RYDES_BINARY") != NULL, "RYDES_BINARY is set by meson");
    char *url = harness_db_create();
    char err[1024], sql[400];
    PGconn *pg = db_connect(url, 5, NULL, err, sizeof err);
    ck_assert_msg(pg != NULL, "%s", err);
    int applied;
    ck_assert_msg(migrate_apply(pg, &applied, err, sizeof err), "%s", err);
    /* the topology's insert of customer-notification-dlq waits for a lock the test holds */
    PGconn *hold = harness_hold_inserts(url, "queues", "customer-notification-dlq");
    char *db = harness_sql(url, "SELECT current_database()");
    snprintf(sql, sizeof sql,
             "ALTER DATABASE \"%s\" SET default_transaction_isolation = 'repeatable read'", db);
    free(harness_sql(url, sql));
    free(db);
    pid_t pid = migrate_child(url);
    harness_hold_wait(hold);
    free(harness_sql(url, "INSERT INTO queues (name, visibility_timeout) "
                          "VALUES ('customer-notification', 77)"));
    harness_hold_release(hold, "queues");
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    /* the queue made meanwhile stands, and the topology's subscription delivers to it */
    char *n = harness_sql(url, "SELECT count(*) FROM queues q JOIN subscriptions s ON s.queue_id "
                               "= q.id WHERE q.name = 'customer-notification' AND "
                               "q.visibility_timeout = 77");
    ck_assert_str_eq(n, "1");
    free(n);
    /* and the dead-letter queue made for the one that was not made is gone again */
    n = harness_sql(url, "SELECT count(*) FROM queues WHERE name = 'customer-notification-dlq'");
    ck_assert_str_eq(n, "0");
    free(n);
    PQfinish(pg);
    free(url);
}
END_TEST

static void no_migrate(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "migrate", "false", &err));
    ck_assert(config_set_flag(cfg, "admin-token", "", &err));
}

START_TEST(unmigrated_database_is_not_ready)
{
    struct harness_server srv;
    harness_start(&srv, no_migrate); /* harness_db_url() is still empty */
    struct response r;
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    assert_problem(&r, 503);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(r.json, "detail")), "migrations"));
    response_cleanup(&r);
    int applied;
    char err[1024];
    ck_assert_msg(app_migrate(&srv.cfg, true, &applied, err, sizeof err), "%s", err);
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
    harness_stop(&srv);
}
END_TEST

/* Runs `rydes token create --role admin --name NAME [--aws]` against url, its output
 * discarded; returns the exit status. */
static int token_create(const char *url, const char *name, bool aws)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("DATABASE_URL", url, 1);
        setenv("RYDES_LOG_LEVEL", "error", 1);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execl(getenv("RYDES_BINARY"), "rydes", "token", "create", "--role", "admin", "--name", name,
              aws ? "--aws" : NULL, (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* A token whose access key cannot be stored is not left behind (its secret was never shown);
 * a name of 100 characters is fine whatever its bytes, one of 101 is not, nor one of two
 * lines. */
START_TEST(token_create_is_all_or_nothing)
{
    char *url = harness_db_create();
    int applied;
    char err[1024];
    struct config cfg;
    config_init(&cfg);
    struct config_error cerr;
    ck_assert(config_set_flag(&cfg, "database-url", url, &cerr));
    ck_assert_msg(app_migrate(&cfg, true, &applied, err, sizeof err), "%s", err);
    config_cleanup(&cfg);
    free(harness_sql(url, "ALTER TABLE aws_credentials RENAME TO aws_credentials_away"));
    ck_assert_int_eq(token_create(url, "half-made", true), 1);
    char *n = harness_sql(url, "SELECT count(*) FROM tokens WHERE name = 'half-made'");
    ck_assert_str_eq(n, "0");
    free(n);
    free(harness_sql(url, "ALTER TABLE aws_credentials_away RENAME TO aws_credentials"));
    char name[512] = "";
    for (int i = 0; i < 100; i++)
        strcat(name, "\xe9\xbe\x8d"); /* 龍: three bytes */
    ck_assert_int_eq(token_create(url, name, true), 0);
    strcat(name, "x");
    ck_assert_int_eq(token_create(url, name, false), 2);
    ck_assert_int_eq(token_create(url, "\xff\xfe", false), 2);
    ck_assert_int_eq(token_create(url, "two\nlines", false), 2); /* one line, as POST /tokens */
    ck_assert_int_eq(token_create(url, "nel\xc2\x85", false), 2);
    n = harness_sql(url,
                    "SELECT count(*) FROM tokens t JOIN aws_credentials a ON a.token_id = t.id "
                    "WHERE char_length(t.name) = 100");
    ck_assert_str_eq(n, "1");
    free(n);
    free(url);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("migrate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, migrating_twice_applies_nothing_the_second_time);
    tcase_add_test(tc, concurrent_migrators_apply_each_migration_once);
    tcase_add_test(tc, start_up_takes_a_queue_made_meanwhile);
    tcase_add_test(tc, unmigrated_database_is_not_ready);
    tcase_add_test(tc, token_create_is_all_or_nothing);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
