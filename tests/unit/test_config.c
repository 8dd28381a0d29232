/* Unit tests for the settings table (src/core/config.c): the defaults filled by config_init,
 * config_load_env reading RYDES_* variables and DATABASE_URL (integer ranges and strict integer
 * syntax, enums, booleans, worker lists, and error messages that name the offending variable),
 * config_set_flag for command-line flags (errors name "--flag" or the unknown flag),
 * config_is_flag / config_is_bool_flag, the RYDES_WORKERS syntax checked by config_workers_valid,
 * and config_print_help listing every setting. Every test unsets the variables it sets and
 * releases its config with config_cleanup. */
#include "rydes/config.h"
#include "rydes/secret.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every environment variable the table reads, so tests start from a clean environment. */
static const char *const all_env[] = {
    "DATABASE_URL",
    "RYDES_BIND",
    "RYDES_PORT",
    "RYDES_THREADS",
    "RYDES_HANDLER_THREADS",
    "RYDES_DATA_THREADS",
    "RYDES_DB_POOL_SIZE",
    "RYDES_DB_ACQUIRE_TIMEOUT_MS",
    "RYDES_DB_CONNECT_TIMEOUT",
    "RYDES_MAX_BODY_BYTES",
    "RYDES_ADMIN_TOKEN",
    "RYDES_LOG_LEVEL",
    "RYDES_LOG_FORMAT",
    "RYDES_WORKERS",
    "RYDES_MIGRATE",
    "RYDES_CONNECTION_LIMIT",
    "RYDES_CONNECTION_TIMEOUT",
    "RYDES_CONNECTION_MEMORY_LIMIT",
    "RYDES_SHUTDOWN_TIMEOUT",
};

static const char *const all_flags[] = {
    "database-url",
    "bind",
    "port",
    "threads",
    "handler-threads",
    "data-threads",
    "db-pool-size",
    "db-acquire-timeout-ms",
    "db-connect-timeout",
    "max-body-bytes",
    "admin-token",
    "log-level",
    "log-format",
    "workers",
    "migrate",
    "connection-limit",
    "connection-timeout",
    "connection-memory-limit",
    "shutdown-timeout",
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void clear_env(void)
{
    for (size_t i = 0; i < NELEMS(all_env); i++)
        unsetenv(all_env[i]);
}

static void setup(void)
{
    clear_env();
}

static void teardown(void)
{
    clear_env();
}

START_TEST(test_defaults)
{
    struct config c;
    config_init(&c);
    ck_assert_int_eq(c.port, 8080);
    ck_assert_ptr_nonnull(c.bind);
    ck_assert_str_eq(c.bind, "127.0.0.1");
    ck_assert_int_eq(c.max_body_bytes, 1048576);
    ck_assert(c.migrate);
    ck_assert_int_eq(c.log_level, 1);
    ck_assert_int_eq(c.log_format, 0);
    ck_assert_ptr_nonnull(c.workers);
    ck_assert_str_eq(c.workers, "all");
    ck_assert_ptr_nonnull(c.database_url);
    ck_assert_str_eq(c.database_url, "");
    ck_assert_ptr_nonnull(c.admin_token);
    ck_assert_str_eq(c.admin_token, "");
    ck_assert_int_eq(c.threads, 0); /* half the cores */
    ck_assert_int_eq(c.handler_threads, 4);
    ck_assert_int_eq(c.data_threads, 0); /* as many as the handler threads */
    ck_assert_int_eq(c.db_pool_size, 16);
    ck_assert_int_eq(c.db_acquire_timeout_ms, 2000);
    ck_assert_int_eq(c.db_connect_timeout, 3);
    ck_assert_int_eq(c.connection_limit, 1000);
    ck_assert_int_eq(c.connection_timeout, 60);
    ck_assert_int_eq(c.connection_memory_limit, 16384);
    ck_assert_int_eq(c.shutdown_timeout, 10);
    config_cleanup(&c);
    ck_assert_ptr_null(c.bind);
    ck_assert_ptr_null(c.workers);
    ck_assert_ptr_null(c.database_url);
}
END_TEST

START_TEST(test_env_empty_keeps_defaults)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.port, 8080);
    ck_assert_str_eq(c.bind, "127.0.0.1");
    ck_assert(c.migrate);
    config_cleanup(&c);
}
END_TEST

START_TEST(test_env_renamed_setting_is_refused)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("RYDES_COMBINE_SENDS", "false", 1);
    ck_assert(!config_load_env(&c, &err));
    unsetenv("RYDES_COMBINE_SENDS");
    ck_assert_str_eq(err.message, "RYDES_COMBINE_SENDS was renamed RYDES_COMBINE");
    setenv("RYDES_COMBINE", "false", 1);
    ck_assert(config_load_env(&c, &err));
    unsetenv("RYDES_COMBINE");
    ck_assert(!c.combine);
    config_cleanup(&c);
}
END_TEST

struct port_case {
    const char *value;
    bool ok;
    int64_t port;
};

static const struct port_case port_cases[] = {
    {"0", true, 0},
    {"1", true, 1},
    {"80", true, 80},
    {"65535", true, 65535},
    {"65536", false, 0},
    {"-1", false, 0},
    {"abc", false, 0},
    {"", false, 0},
    {" 80", false, 0},
    {"80 ", false, 0},
    {"8o", false, 0},
    {"0x50", false, 0},
    {"99999999999999999999", false, 0},
    {"-99999999999999999999", false, 0},
};

START_TEST(test_env_port_table)
{
    for (size_t i = 0; i < NELEMS(port_cases); i++) {
        const struct port_case *pc = &port_cases[i];
        struct config c;
        struct config_error err = {""};
        config_init(&c);
        ck_assert_int_eq(setenv("RYDES_PORT", pc->value, 1), 0);
        bool ok = config_load_env(&c, &err);
        ck_assert_msg(ok == pc->ok, "RYDES_PORT=\"%s\" should be %s", pc->value,
                      pc->ok ? "accepted" : "refused");
        if (ok) {
            ck_assert_int_eq(c.port, pc->port);
        } else {
            ck_assert_msg(strstr(err.message, "RYDES_PORT") != NULL,
                          "message \"%s\" does not name RYDES_PORT", err.message);
            ck_assert_int_eq(c.port, 8080); /* a refused value is not applied */
        }
        unsetenv("RYDES_PORT");
        config_cleanup(&c);
    }
}
END_TEST

START_TEST(test_env_database_url_and_strings)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("DATABASE_URL", "postgresql://u@localhost/rydes", 1);
    setenv("RYDES_BIND", "::1", 1);
    setenv("RYDES_ADMIN_TOKEN", "0123456789abcdef0123", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_str_eq(c.database_url, "postgresql://u@localhost/rydes");
    ck_assert_str_eq(c.bind, "::1");
    ck_assert_str_eq(c.admin_token, "0123456789abcdef0123");
    /* loading again replaces (and frees) the previous strings */
    setenv("DATABASE_URL", "dbname=other", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_str_eq(c.database_url, "dbname=other");
    config_cleanup(&c);
}
END_TEST

/* A malformed DATABASE_URL or an admin token that could never log in is refused with the
 * settings, and the refusal never shows the value: libpq's own complaint about a malformed URI
 * quotes it, password and all (it reached the log on a failed connect). */
START_TEST(test_env_secrets_are_checked_and_never_shown)
{
    static const char *const bad_urls[] = {
        "postgresql://app:S3cr%zt@db/rydes",  /* a bad percent escape */
        "postgresql://app:S3cret@[::1/rydes", /* an unclosed IPv6 bracket */
        "host=db password='S3cret",           /* an unterminated quote */
        "host=db S3cret=1",                   /* an unknown keyword */
        "postgresql:/app:S3cret@db/rydes",    /* a mistyped scheme: no '=', not a URI */
        "PostgreSQL://app:S3cret@db/rydes",   /* libpq's schemes are lower-case */
        " postgresql://app:S3cret@db/rydes",  /* a leading space */
    };
    char long_token[SECRET_TOKEN_MAX + 2];
    memset(long_token, 'a', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    const char *const bad_tokens[] = {
        "S3cret-short",
        "0123456789abcdef0123\n",
        "S3cret 0123456789abcdef",
        "S3cret\001abcdef0123456789",
        long_token,
    };
    struct config c;
    struct config_error err;
    config_init(&c);
    for (size_t i = 0; i < NELEMS(bad_urls); i++) {
        setenv("DATABASE_URL", bad_urls[i], 1);
        ck_assert_msg(!config_load_env(&c, &err), "%s", bad_urls[i]);
        ck_assert_ptr_nonnull(strstr(err.message, "DATABASE_URL"));
        ck_assert_ptr_null(strstr(err.message, "S3cr"));
        ck_assert_str_eq(c.database_url, "");
    }
    /* what libpq takes: a database name (no '=', no URI scheme), a string, a URI */
    static const char *const good_urls[] = {"rydes", "host=db dbname=rydes",
                                            "postgresql://u@db:5432/rydes?sslmode=disable"};
    for (size_t i = 0; i < NELEMS(good_urls); i++) {
        setenv("DATABASE_URL", good_urls[i], 1);
        ck_assert_msg(config_load_env(&c, &err), "%s: %s", good_urls[i], err.message);
        ck_assert_str_eq(c.database_url, good_urls[i]);
    }
    unsetenv("DATABASE_URL");
    for (size_t i = 0; i < NELEMS(bad_tokens); i++) {
        setenv("RYDES_ADMIN_TOKEN", bad_tokens[i], 1);
        ck_assert_msg(!config_load_env(&c, &err), "token %zu", i);
        ck_assert_ptr_nonnull(strstr(err.message, "RYDES_ADMIN_TOKEN"));
        ck_assert_ptr_null(strstr(err.message, "S3cr"));
        ck_assert_str_eq(c.admin_token, "");
    }
    ck_assert(!config_set_flag(&c, "admin-token", "short", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--admin-token"));
    long_token[SECRET_TOKEN_MAX] = '\0'; /* 512: the longest */
    setenv("RYDES_ADMIN_TOKEN", long_token, 1);
    ck_assert(config_load_env(&c, &err));
    setenv("RYDES_ADMIN_TOKEN", "0123456789abcdef", 1); /* 16: the shortest */
    ck_assert(config_load_env(&c, &err));
    ck_assert_str_eq(c.admin_token, "0123456789abcdef");
    setenv("RYDES_ADMIN_TOKEN", "", 1); /* none */
    ck_assert(config_load_env(&c, &err));
    unsetenv("RYDES_ADMIN_TOKEN");
    config_cleanup(&c);
}
END_TEST

START_TEST(test_env_log_format_and_level)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("RYDES_LOG_FORMAT", "json", 1);
    setenv("RYDES_LOG_LEVEL", "error", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.log_format, 1);
    ck_assert_int_eq(c.log_level, 3);
    setenv("RYDES_LOG_LEVEL", "debug", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.log_level, 0);
    config_cleanup(&c);
}
END_TEST

struct enum_case {
    const char *env;
    const char *value;
};

static const struct enum_case bad_enum_cases[] = {
    {"RYDES_LOG_FORMAT", "yaml"},   {"RYDES_LOG_FORMAT", "JSON"}, {"RYDES_LOG_FORMAT", ""},
    {"RYDES_LOG_LEVEL", "verbose"}, {"RYDES_LOG_LEVEL", "info "},
};

START_TEST(test_env_bad_enum)
{
    for (size_t i = 0; i < NELEMS(bad_enum_cases); i++) {
        const struct enum_case *ec = &bad_enum_cases[i];
        struct config c;
        struct config_error err = {""};
        config_init(&c);
        setenv(ec->env, ec->value, 1);
        ck_assert_msg(!config_load_env(&c, &err), "%s=\"%s\" accepted", ec->env, ec->value);
        ck_assert_msg(strstr(err.message, ec->env) != NULL, "message \"%s\" does not name %s",
                      err.message, ec->env);
        ck_assert_int_eq(c.log_level, 1);
        ck_assert_int_eq(c.log_format, 0);
        unsetenv(ec->env);
        config_cleanup(&c);
    }
}
END_TEST

struct bool_case {
    const char *value;
    bool ok;
    bool result;
};

static const struct bool_case migrate_cases[] = {
    {"false", true, false}, {"0", true, false},    {"no", true, false},     {"off", true, false},
    {"FALSE", true, false}, {"Off", true, false},  {"true", true, true},    {"1", true, true},
    {"yes", true, true},    {"on", true, true},    {"TRUE", true, true},    {"", false, true},
    {"2", false, true},     {"nope", false, true}, {"false ", false, true},
};

START_TEST(test_env_migrate_table)
{
    for (size_t i = 0; i < NELEMS(migrate_cases); i++) {
        const struct bool_case *bc = &migrate_cases[i];
        struct config c;
        struct config_error err = {""};
        config_init(&c);
        c.migrate = !bc->result; /* start from the opposite so a no-op cannot pass */
        setenv("RYDES_MIGRATE", bc->value, 1);
        bool ok = config_load_env(&c, &err);
        ck_assert_msg(ok == bc->ok, "RYDES_MIGRATE=\"%s\" should be %s", bc->value,
                      bc->ok ? "accepted" : "refused");
        if (ok)
            ck_assert_msg(c.migrate == bc->result, "RYDES_MIGRATE=\"%s\"", bc->value);
        else
            ck_assert_ptr_nonnull(strstr(err.message, "RYDES_MIGRATE"));
        unsetenv("RYDES_MIGRATE");
        config_cleanup(&c);
    }
}
END_TEST

START_TEST(test_env_int_ranges)
{
    /* min and max of another range-checked setting */
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("RYDES_MAX_BODY_BYTES", "1024", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.max_body_bytes, 1024);
    setenv("RYDES_MAX_BODY_BYTES", "1023", 1);
    ck_assert(!config_load_env(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_MAX_BODY_BYTES"));
    setenv("RYDES_MAX_BODY_BYTES", "67108864", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.max_body_bytes, 67108864);
    setenv("RYDES_MAX_BODY_BYTES", "67108865", 1);
    ck_assert(!config_load_env(&c, &err));
    unsetenv("RYDES_MAX_BODY_BYTES");

    setenv("RYDES_THREADS", "-1", 1);
    ck_assert(!config_load_env(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_THREADS"));
    setenv("RYDES_THREADS", "257", 1);
    ck_assert(!config_load_env(&c, &err));
    unsetenv("RYDES_THREADS");
    setenv("RYDES_HANDLER_THREADS", "257", 1);
    ck_assert(!config_load_env(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_HANDLER_THREADS"));
    unsetenv("RYDES_HANDLER_THREADS");
    setenv("RYDES_DATA_THREADS", "-1", 1);
    ck_assert(!config_load_env(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_DATA_THREADS"));
    unsetenv("RYDES_DATA_THREADS");
    config_cleanup(&c);
}
END_TEST

START_TEST(test_env_workers)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("RYDES_WORKERS", "push", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_str_eq(c.workers, "push");
    ck_assert(config_worker_enabled(&c, "push"));
    setenv("RYDES_WORKERS", "push,,push", 1);
    ck_assert(!config_load_env(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_WORKERS"));
    ck_assert_str_eq(c.workers, "push"); /* unchanged */
    unsetenv("RYDES_WORKERS");
    config_cleanup(&c);
}
END_TEST

START_TEST(test_flag_port)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    ck_assert(config_set_flag(&c, "port", "9000", &err));
    ck_assert_int_eq(c.port, 9000);
    ck_assert(!config_set_flag(&c, "port", "70000", &err));
    ck_assert_msg(strstr(err.message, "--port") != NULL, "message \"%s\"", err.message);
    ck_assert_int_eq(c.port, 9000);
    ck_assert(!config_set_flag(&c, "port", "x", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--port"));
    config_cleanup(&c);
}
END_TEST

START_TEST(test_flag_unknown)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    ck_assert(!config_set_flag(&c, "frobnicate", "1", &err));
    ck_assert_msg(strstr(err.message, "frobnicate") != NULL, "message \"%s\"", err.message);
    ck_assert(!config_set_flag(&c, "PORT", "1", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "PORT"));
    ck_assert(!config_set_flag(&c, "", "1", &err));
    ck_assert_int_eq(c.port, 8080);
    config_cleanup(&c);
}
END_TEST

START_TEST(test_flag_other_types)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    ck_assert(config_set_flag(&c, "migrate", "off", &err));
    ck_assert(!c.migrate);
    ck_assert(!config_set_flag(&c, "migrate", "maybe", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--migrate"));
    ck_assert(config_set_flag(&c, "log-format", "json", &err));
    ck_assert_int_eq(c.log_format, 1);
    ck_assert(!config_set_flag(&c, "log-level", "loud", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--log-level"));
    ck_assert(config_set_flag(&c, "bind", "0.0.0.0", &err));
    ck_assert_str_eq(c.bind, "0.0.0.0");
    ck_assert(config_set_flag(&c, "workers", "none", &err));
    ck_assert_str_eq(c.workers, "none");
    ck_assert(!config_worker_enabled(&c, "push"));
    ck_assert(!config_set_flag(&c, "workers", "A", &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--workers"));
    ck_assert_str_eq(c.workers, "none");
    config_cleanup(&c);
}
END_TEST

/* RYDES_PAYMENT_URL: empty or an http(s) base URL; nonsense is refused at start-up, not met at
 * the first saga step (a scheme-less host went out as plain http). */
START_TEST(test_payment_url)
{
    static const struct {
        const char *value;
        bool ok;
    } cases[] = {
        {"", true},
        {"https://pay.example.com", true},
        {"http://127.0.0.1:8081/v1", true},
        {"HTTPS://pay.example.com", true},
        {"https://sk_live_key:@pay.example.com/v1", true},
        {"pay.example.com", false},
        {"htps://pay.example.com", false},
        {"https://", false},
        {"https:///path", false},
        {"https://pay.example.com/v1?key=1", false},
        {"https://pay.example.com/#x", false},
        {"https://pay example.com", false},
        {"https://pay.example.com\n", false},
    };
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    for (size_t i = 0; i < NELEMS(cases); i++)
        ck_assert_msg(config_set_flag(&c, "payment-url", cases[i].value, &err) == cases[i].ok,
                      "'%s'", cases[i].value);
    char longest[1100] = "https://";
    memset(longest + 8, 'a', 1000 - 8);
    ck_assert(config_set_flag(&c, "payment-url", longest, &err));
    strcat(longest, "a");
    ck_assert(!config_set_flag(&c, "payment-url", longest, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "--payment-url"));
    /* it may carry credentials: a refused value is not shown */
    ck_assert(!config_set_flag(&c, "payment-url", "https://sk_live_key:@pay.example.com\n", &err));
    ck_assert_ptr_null(strstr(err.message, "sk_live_key"));
    ck_assert(config_is_secret_flag("payment-url"));
    config_cleanup(&c);
}
END_TEST

START_TEST(test_flag_wins_over_env)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    setenv("RYDES_PORT", "1234", 1);
    ck_assert(config_load_env(&c, &err));
    ck_assert_int_eq(c.port, 1234);
    ck_assert(config_set_flag(&c, "port", "4321", &err));
    ck_assert_int_eq(c.port, 4321);
    unsetenv("RYDES_PORT");
    config_cleanup(&c);
}
END_TEST

START_TEST(test_is_flag)
{
    for (size_t i = 0; i < NELEMS(all_flags); i++) {
        ck_assert_msg(config_is_flag(all_flags[i]), "%s", all_flags[i]);
        ck_assert_msg(config_is_bool_flag(all_flags[i]) == (strcmp(all_flags[i], "migrate") == 0),
                      "config_is_bool_flag(\"%s\")", all_flags[i]);
    }
    ck_assert(config_is_bool_flag("migrate"));
    ck_assert(!config_is_bool_flag("port"));
    ck_assert(!config_is_bool_flag("nonexistent"));
    ck_assert(!config_is_flag("nonexistent"));
    ck_assert(!config_is_flag("--port"));
    ck_assert(!config_is_flag("RYDES_PORT"));
    ck_assert(!config_is_flag(""));
}
END_TEST

struct workers_case {
    const char *value;
    bool valid;
};

static const struct workers_case workers_cases[] = {
    {"push", true},
    {"push,push", true},
    {"none", true},
    {"all", true},
    {"a", false},           /* no such worker */
    {"push,reaper", false}, /* one unknown name spoils the list */
    {"", false},
    {",", false},
    {"push,,push", false},
    {"Push", false},
    {"All", false},
    {"push ", false},
    {"push,", false},
    {",push", false},
    {"push, push", false},
    {"\xc3\xa9", false},
};

START_TEST(test_workers_valid_table)
{
    for (size_t i = 0; i < NELEMS(workers_cases); i++) {
        const struct workers_case *wc = &workers_cases[i];
        ck_assert_msg(config_workers_valid(wc->value) == wc->valid,
                      "config_workers_valid(\"%s\") should be %s", wc->value,
                      wc->valid ? "true" : "false");
    }
}
END_TEST

START_TEST(test_print_help)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    config_print_help(out);
    ck_assert_int_eq(fclose(out), 0);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "RYDES_PORT"));
    ck_assert_ptr_nonnull(strstr(text, "DATABASE_URL"));
    for (size_t i = 0; i < NELEMS(all_env); i++)
        ck_assert_msg(strstr(text, all_env[i]) != NULL, "help lacks %s", all_env[i]);
    for (size_t i = 0; i < NELEMS(all_flags); i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s ", all_flags[i]);
        ck_assert_msg(strstr(text, flag) != NULL, "help lacks %s", flag);
    }
    ck_assert_ptr_nonnull(strstr(text, "0..65535"));
    ck_assert_ptr_nonnull(strstr(text, "text|json"));
    free(text);
}
END_TEST

START_TEST(test_print_help_hides_secret_values)
{
    /* help prints defaults from the table, never values taken from the environment */
    setenv("RYDES_ADMIN_TOKEN", "very-secret-admin-token", 1);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    config_print_help(out);
    fclose(out);
    ck_assert_ptr_null(strstr(text, "very-secret-admin-token"));
    free(text);
    unsetenv("RYDES_ADMIN_TOKEN");
}
END_TEST

/* Two settings that make a range: a minimum above its maximum is refused, naming both. */
START_TEST(test_ranges_across_settings)
{
    struct config c;
    struct config_error err;
    config_init(&c);
    ck_assert(config_check(&c, &err)); /* the defaults */
    ck_assert(config_set_flag(&c, "unicorn-min-latency-ms", "3000", &err));
    ck_assert(!config_check(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_UNICORN_MAX_LATENCY_MS"));
    ck_assert(config_set_flag(&c, "unicorn-max-latency-ms", "3000", &err));
    ck_assert(config_check(&c, &err)); /* equal: a fixed latency */
    ck_assert(config_set_flag(&c, "unicorn-min-price", "100", &err));
    ck_assert(!config_check(&c, &err)); /* the maximum is exclusive */
    ck_assert_ptr_nonnull(strstr(err.message, "RYDES_UNICORN_MIN_PRICE"));
    ck_assert(config_set_flag(&c, "unicorn-max-price", "101", &err));
    ck_assert(config_check(&c, &err));
    config_cleanup(&c);
}
END_TEST

/* RYDES_TRUSTED_PROXIES: addresses and ranges, empty by default; a malformed one is refused
 * with the setting named and the value shown. */
START_TEST(test_trusted_proxies)
{
    struct config c;
    struct config_error err = {""};
    config_init(&c);
    ck_assert_str_eq(c.trusted_proxies, "");
    ck_assert(config_set_flag(&c, "trusted-proxies", "10.0.0.0/8, 192.0.2.7,fd00::/8", &err));
    ck_assert_str_eq(c.trusted_proxies, "10.0.0.0/8, 192.0.2.7,fd00::/8");
    const char *bad[] = {"10.0.0.0/33", "proxy.example.com", "10.0.0.1:8080", "10.0.0.0/8,"};
    for (size_t i = 0; i < NELEMS(bad); i++) {
        ck_assert_msg(!config_set_flag(&c, "trusted-proxies", bad[i], &err), "%s", bad[i]);
        ck_assert_ptr_nonnull(strstr(err.message, "--trusted-proxies"));
        ck_assert_ptr_nonnull(strstr(err.message, "comma-separated list"));
        ck_assert_ptr_nonnull(strstr(err.message, bad[i]));
    }
    ck_assert_str_eq(c.trusted_proxies, "10.0.0.0/8, 192.0.2.7,fd00::/8");
    config_cleanup(&c);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");

    TCase *env = tcase_create("env");
    tcase_add_checked_fixture(env, setup, teardown);
    tcase_add_test(env, test_defaults);
    tcase_add_test(env, test_env_empty_keeps_defaults);
    tcase_add_test(env, test_env_port_table);
    tcase_add_test(env, test_env_database_url_and_strings);
    tcase_add_test(env, test_env_secrets_are_checked_and_never_shown);
    tcase_add_test(env, test_env_log_format_and_level);
    tcase_add_test(env, test_env_bad_enum);
    tcase_add_test(env, test_env_migrate_table);
    tcase_add_test(env, test_env_int_ranges);
    tcase_add_test(env, test_env_workers);
    suite_add_tcase(s, env);

    TCase *flags = tcase_create("flags");
    tcase_add_checked_fixture(flags, setup, teardown);
    tcase_add_test(flags, test_flag_port);
    tcase_add_test(flags, test_flag_unknown);
    tcase_add_test(flags, test_flag_other_types);
    tcase_add_test(flags, test_payment_url);
    tcase_add_test(flags, test_flag_wins_over_env);
    tcase_add_test(flags, test_is_flag);
    suite_add_tcase(s, flags);

    TCase *misc = tcase_create("misc");
    tcase_add_checked_fixture(misc, setup, teardown);
    tcase_add_test(misc, test_workers_valid_table);
    tcase_add_test(misc, test_env_renamed_setting_is_refused);
    tcase_add_test(misc, test_print_help);
    tcase_add_test(misc, test_print_help_hides_secret_values);
    tcase_add_test(misc, test_ranges_across_settings);
    tcase_add_test(misc, test_trusted_proxies);
    suite_add_tcase(s, misc);

    return s;
}

int main(void)
{
    return unit_run(config_suite());
}
