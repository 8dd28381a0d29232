/* Settings: one declarative table (name, environment variable, type, default, range, help) read
 * from RYDES_* environment variables and then from command-line flags, which win. A bad value is
 * refused with a message naming the setting. The table is in src/core/config.c. */
#ifndef RYDES_CONFIG_H
#define RYDES_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_ADMIN_TOKEN_MIN 16   /* RYDES_ADMIN_TOKEN's shortest (and 512 at most) */
#define CONFIG_PAYMENT_URL_MAX 1000 /* RYDES_PAYMENT_URL's longest: a call's URL adds its path */

struct config {
    char *database_url;
    char *bind;
    int64_t port;
    int64_t threads;
    int64_t handler_threads;
    int64_t data_threads;
    int64_t thread_queue_limit;
    int64_t db_pool_size;
    int64_t db_acquire_timeout_ms;
    int64_t db_connect_timeout;
    int64_t db_statement_timeout_ms;
    int64_t max_waiters;
    int64_t sweep_interval_ms;
    bool combine;
    int64_t max_body_bytes;
    int64_t parsed_body_memory;
    char *admin_token;
    int log_level;  /* enum log_level */
    int log_format; /* enum log_format */
    char *workers;
    bool migrate;
    char *grant_role; /* migrations grant data access to this role; empty: none */
    int64_t connection_limit;
    int64_t connection_timeout;
    int64_t request_timeout;
    int64_t connection_memory_limit;
    int64_t shutdown_timeout;
    int64_t extraordinary_fare; /* the extraordinary-rides filter's thresholds */
    int64_t extraordinary_distance;
    int64_t prebooking_horizon_days;
    int64_t prebooking_slot_minutes;
    int64_t prebooking_concurrency;
    int64_t unicorns; /* the simulated fleet */
    int64_t unicorn_answer_percent;
    int64_t unicorn_min_latency_ms, unicorn_max_latency_ms;
    int64_t unicorn_min_price, unicorn_max_price;
    int64_t saga_concurrency;
    int64_t saga_lease_seconds;
    int64_t saga_unreachable_seconds;
    char *payment_url;
    int64_t rate_limit_app, rate_limit_service, rate_limit_admin; /* requests/s, 0: none */
    int64_t rate_limit_app_token; /* an app token's requests/s from all addresses; 0: none */
    int64_t auth_failure_burst, auth_failures_per_minute; /* rydes/app.h, app_lookup_allowed */
    char *trusted_proxies;    /* RYDES_TRUSTED_PROXIES: CIDR ranges, comma-separated */
    char *tls_cert, *tls_key; /* file paths; both empty: plain HTTP */
};

struct config_error {
    char message[512];
};

/* Fills c with the defaults of the table; release with config_cleanup. */
void config_init(struct config *c);
void config_cleanup(struct config *c);
/* Checks what no single setting can: ranges given as two settings (a minimum above its
 * maximum). False with err filled. Run once every setting is applied. */
bool config_check(const struct config *c, struct config_error *err);

/* Applies every RYDES_* (and DATABASE_URL) variable that is set. */
bool config_load_env(struct config *c, struct config_error *err);

/* Applies one flag given as its name without dashes ("port") and its text value. Returns false
 * with err set when the flag is unknown or the value is invalid. */
bool config_set_flag(struct config *c, const char *name, const char *value,
                     struct config_error *err);

/* Is name a known setting flag? Boolean settings may be given without a value. */
bool config_is_flag(const char *name);
bool config_is_bool_flag(const char *name);
/* Is name a secret setting (its value never printed: the database URL, the admin token)? */
bool config_is_secret_flag(const char *name);

/* Prints the settings table (flag, variable, default, range, help). */
void config_print_help(FILE *out);

/* Parses a RYDES_WORKERS value: "all", "none" or a comma list of names. Exposed for tests. */
bool config_workers_valid(const char *value);
/* Does cfg->workers ask for the built-in worker called name? */
bool config_worker_enabled(const struct config *cfg, const char *name);

#endif
