/* The settings table and its parser; see include/rydes/config.h.
 *
 * Every setting is one row: adding a setting means adding a field to struct config and a row
 * here, nothing else. Values are parsed from text by type (integer with range, boolean, enum,
 * string), whether they come from the default column, the environment or a flag, so a default
 * can never bypass validation. */
#include "rydes/config.h"

#include "rydes/cidr.h"
#include "rydes/mem.h"
#include "rydes/secret.h"
#include "rydes/validate.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum setting_type { SETTING_STRING, SETTING_INT, SETTING_BOOL, SETTING_ENUM };

struct setting {
    const char *name; /* flag: --name */
    const char *env;
    enum setting_type type;
    const char *def;
    int64_t min, max;
    const char *const *choices; /* SETTING_ENUM: NULL-terminated */
    size_t offset;
    bool secret; /* never print the value */
    bool (*valid)(const char *value);
    const char *help;
};

static bool trusted_proxies_valid(const char *value)
{
    struct cidr_list l;
    return cidr_list_parse(value, &l);
}

static bool bind_valid(const char *value)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, value, addr) == 1 || inet_pton(AF_INET6, value, addr) == 1;
}

/* A PostgreSQL role name as Rydes accepts it: empty, or an unquoted lower-case identifier that
 * is not one of the names PostgreSQL reserves ("public" would grant to every role). */
static bool role_valid(const char *value)
{
    static const char *const reserved[] = {"public",       "none",         "current_role",
                                           "current_user", "session_user", NULL};
    for (const char *const *r = reserved; *r; r++)
        if (strcmp(value, *r) == 0)
            return false;
    if (strncmp(value, "pg_", 3) == 0)
        return false;
    size_t n = strlen(value);
    if (n > 63 || (n && !(islower((unsigned char)value[0]) || value[0] == '_')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)value[i]) && !isdigit((unsigned char)value[i]) &&
            value[i] != '_')
            return false;
    return true;
}

/* A libpq connection string or URI, a database name (none of ":@/" or spaces: more likely a
 * mistyped URI, whose password a server's "database does not exist" would log), or empty. Checked
 * here because libpq's own complaint about a malformed one quotes it, password and all, and it
 * would reach the log. libpq takes a value as a connection string or URI only when it has an '=' or
 * begins with a URI's scheme; anything else is a database name. */
static bool database_url_valid(const char *value)
{
    if (!strchr(value, '=') && strncmp(value, "postgresql://", 13) != 0 &&
        strncmp(value, "postgres://", 11) != 0) /* a database name, but not a mistyped URI */
        return !value[strcspn(value, ":@/ \t\r\n")];
    PQconninfoOption *opts = PQconninfoParse(value, NULL); /* NULL: no error text to leak */
    PQconninfoFree(opts);
    return opts != NULL;
}

/* Empty (the simulator), or an http(s) base URL the gateway's paths are appended to: a host,
 * no query or fragment (a path would follow them), no blanks, and short enough that a call's
 * URL is whole. A scheme-less value would go out as plain http (curl's guess), a mistyped one
 * fail every call as if the gateway were down. */
static bool payment_url_valid(const char *value)
{
    size_t n = strlen(value);
    if (n == 0)
        return true;
    size_t scheme = strncasecmp(value, "https://", 8) == 0  ? 8
                    : strncasecmp(value, "http://", 7) == 0 ? 7
                                                            : 0;
    return scheme && n <= CONFIG_PAYMENT_URL_MAX && value[scheme] && value[scheme] != '/' &&
           !value[strcspn(value, "?# \t\r\n")] && validate_printable_ascii(value, n);
}

/* Empty (none), or a bearer token that can log in: it arrives in a header, trimmed of spaces,
 * so a space, a line end (a secret file's last newline) or anything else never would. */
static bool admin_token_valid(const char *value)
{
    size_t n = strlen(value);
    return n == 0 || (n >= CONFIG_ADMIN_TOKEN_MIN && n <= SECRET_TOKEN_MAX &&
                      validate_printable_ascii(value, n) && !strchr(value, ' '));
}

/* What a refusal says, where a validator has more to say than "malformed". */
static const struct {
    bool (*valid)(const char *value);
    const char *why;
} refusals[] = {
    {database_url_valid,
     "not a libpq connection string or URI (the value is not shown: it may hold a password)"},
    {admin_token_valid, "must be 16 to 512 printable ASCII characters without spaces (a trailing "
                        "newline from a secret file?)"},
    {payment_url_valid, "must be empty or an http:// or https:// URL with a host, without a query, "
                        "a fragment or blanks, of at most 1000 characters"},
    {trusted_proxies_valid,
     "must be a comma-separated list of at most 64 IPv4 or IPv6 addresses or "
     "ranges (ADDRESS/BITS), or empty"},
};

static const char *refusal_of(const struct setting *s)
{
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
        if (refusals[i].valid == s->valid)
            return refusals[i].why;
    return "malformed (see --help)";
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

#define OFF(field) offsetof(struct config, field)

static const struct setting settings[] = {
    {"database-url", "DATABASE_URL", SETTING_STRING, "", 0, 0, NULL, OFF(database_url), true,
     database_url_valid,
     "libpq connection string or URI of the database (empty: libpq's PG* defaults)"},
    {"bind", "RYDES_BIND", SETTING_STRING, "127.0.0.1", 0, 0, NULL, OFF(bind), false, bind_valid,
     "IPv4 or IPv6 address to listen on"},
    {"port", "RYDES_PORT", SETTING_INT, "8080", 0, 65535, NULL, OFF(port), false, NULL,
     "TCP port; 0 picks a free port and logs it"},
    {"threads", "RYDES_THREADS", SETTING_INT, "0", 0, 256, NULL, OFF(threads), false, NULL,
     "HTTP threads, each polling its own share of connections (0: half the CPU cores)"},
    {"handler-threads", "RYDES_HANDLER_THREADS", SETTING_INT, "4", 0, 256, NULL,
     OFF(handler_threads), false, NULL,
     "threads that run what waits on the database but the data plane's statements (lists, "
     "purges, the Wild Rydes routes, metrics); 0: the HTTP threads run everything"},
    {"data-threads", "RYDES_DATA_THREADS", SETTING_INT, "0", 0, 256, NULL, OFF(data_threads), false,
     NULL,
     "threads of the data plane's set (0: as many as RYDES_HANDLER_THREADS); none without "
     "handler threads"},
    {"thread-queue-limit", "RYDES_THREAD_QUEUE_LIMIT", SETTING_INT, "256", 1, 100000, NULL,
     OFF(thread_queue_limit), false, NULL,
     "requests that may wait for a thread of each set (the handlers', the data plane's); more "
     "are answered 503 at once, so a set whose threads are stuck holds no more connections"},
    {"db-pool-size", "RYDES_DB_POOL_SIZE", SETTING_INT, "16", 1, 1000, NULL, OFF(db_pool_size),
     false, NULL,
     "database connections shared by all threads, opened as needed (at least both sets of "
     "threads and the combiner's five lanes, so that neither waits for the other)"},
    {"db-acquire-timeout-ms", "RYDES_DB_ACQUIRE_TIMEOUT_MS", SETTING_INT, "2000", 1, 60000, NULL,
     OFF(db_acquire_timeout_ms), false, NULL,
     "how long a request waits for a pooled connection before 503"},
    {"db-connect-timeout", "RYDES_DB_CONNECT_TIMEOUT", SETTING_INT, "3", 1, 60, NULL,
     OFF(db_connect_timeout), false, NULL, "seconds allowed to open a database connection"},
    {"db-statement-timeout-ms", "RYDES_DB_STATEMENT_TIMEOUT_MS", SETTING_INT, "30000", 100, 3600000,
     NULL, OFF(db_statement_timeout_ms), false, NULL,
     "statements running longer are cancelled (the request gets 503)"},
    {"max-waiters", "RYDES_MAX_WAITERS", SETTING_INT, "512", 1, 100000, NULL, OFF(max_waiters),
     false, NULL, "long polls waiting at once in this process (more get 503)"},
    {"sweep-interval-ms", "RYDES_SWEEP_INTERVAL_MS", SETTING_INT, "1000", 0, 3600000, NULL,
     OFF(sweep_interval_ms), false, NULL,
     "how often expired messages are swept (0: this process never sweeps)"},
    {"combine", "RYDES_COMBINE", SETTING_BOOL, "true", 0, 0, NULL, OFF(combine), false, NULL,
     "run the single sends, receives, deletes, publishes and rides of concurrent requests "
     "together, up to 16 in one statement"},
    {"max-body-bytes", "RYDES_MAX_BODY_BYTES", SETTING_INT, "1048576", 1024, 67108864, NULL,
     OFF(max_body_bytes), false, NULL, "largest request body accepted (413 above)"},
    {"parsed-body-memory", "RYDES_PARSED_BODY_MEMORY", SETTING_INT, "268435456", 1048576,
     68719476736, NULL, OFF(parsed_body_memory), false, NULL,
     "bytes the parsed JSON bodies of requests in progress may hold at once (bodies that would "
     "take more are answered 503 until some finish)"},
    {"admin-token", "RYDES_ADMIN_TOKEN", SETTING_STRING, "", 0, 0, NULL, OFF(admin_token), true,
     admin_token_valid,
     "ensured to exist as an admin token at start-up (16 to 512 printable ASCII characters, no "
     "spaces)"},
    {"log-level", "RYDES_LOG_LEVEL", SETTING_ENUM, "info", 0, 0, log_levels, OFF(log_level), false,
     NULL, "debug, info, warn or error"},
    {"log-format", "RYDES_LOG_FORMAT", SETTING_ENUM, "text", 0, 0, log_formats, OFF(log_format),
     false, NULL, "text or json"},
    {"workers", "RYDES_WORKERS", SETTING_STRING, "all", 0, 0, NULL, OFF(workers), false,
     config_workers_valid,
     "built-in workers to run in serve: all, none or a comma list of: push, customer-notification, "
     "customer-loyalty, datalake-ingestion, extraordinary-rides, prebooking-submission, "
     "prebooking-processing, prebooking-datalake, rfq-aggregator, unicorn-fleet, "
     "customer-accounting, fare-saga"},
    {"migrate", "RYDES_MIGRATE", SETTING_BOOL, "true", 0, 0, NULL, OFF(migrate), false, NULL,
     "apply pending migrations when serve or worker starts"},
    {"grant-role", "RYDES_GRANT_ROLE", SETTING_STRING, "", 0, 0, NULL, OFF(grant_role), false,
     role_valid,
     "after migrating, grant data access (no DDL) to this database role; the server can then "
     "connect as it (README, Least privilege)"},
    {"connection-limit", "RYDES_CONNECTION_LIMIT", SETTING_INT, "1000", 1, 100000, NULL,
     OFF(connection_limit), false, NULL, "concurrent HTTP connections accepted"},
    {"connection-timeout", "RYDES_CONNECTION_TIMEOUT", SETTING_INT, "60", 1, 3600, NULL,
     OFF(connection_timeout), false, NULL, "seconds an idle HTTP connection is kept"},
    {"request-timeout", "RYDES_REQUEST_TIMEOUT", SETTING_INT, "60", 1, 3600, NULL,
     OFF(request_timeout), false, NULL,
     "seconds a request's headers and body may take to arrive, however slowly they trickle in "
     "(after an idle keep-alive, counted from the end of the idle timeout); a reply must be "
     "taken within the same per started MiB"},
    {"connection-memory-limit", "RYDES_CONNECTION_MEMORY_LIMIT", SETTING_INT, "16384", 8192,
     16777216, NULL, OFF(connection_memory_limit), false, NULL,
     "bytes of header/read buffer per connection (larger request headers are refused)"},
    {"shutdown-timeout", "RYDES_SHUTDOWN_TIMEOUT", SETTING_INT, "10", 0, 600, NULL,
     OFF(shutdown_timeout), false, NULL, "seconds to let in-flight requests finish on SIGTERM"},
    {"extraordinary-fare", "RYDES_EXTRAORDINARY_FARE", SETTING_INT, "50", 0, 1000000, NULL,
     OFF(extraordinary_fare), false, NULL,
     "extraordinary-rides filter: rides with a fare of at least this much..."},
    {"extraordinary-distance", "RYDES_EXTRAORDINARY_DISTANCE", SETTING_INT, "20", 0, 100000, NULL,
     OFF(extraordinary_distance), false, NULL, "...and at least this many km"},
    {"prebooking-horizon-days", "RYDES_PREBOOKING_HORIZON_DAYS", SETTING_INT, "90", 1, 3650, NULL,
     OFF(prebooking_horizon_days), false, NULL, "how far ahead a prebooking may be made"},
    {"prebooking-slot-minutes", "RYDES_PREBOOKING_SLOT_MINUTES", SETTING_INT, "60", 1, 1440, NULL,
     OFF(prebooking_slot_minutes), false, NULL,
     "a customer's prebookings must be at least this far apart"},
    {"prebooking-concurrency", "RYDES_PREBOOKING_CONCURRENCY", SETTING_INT, "2", 1, 64, NULL,
     OFF(prebooking_concurrency), false, NULL,
     "prebooking-processing consumers per process (the campaign drain rate)"},
    {"unicorns", "RYDES_UNICORNS", SETTING_INT, "5", 0, 50, NULL, OFF(unicorns), false, NULL,
     "simulated unicorns subscribed to rfq-requests (the unicorn-fleet worker answers for them)"},
    {"unicorn-answer-percent", "RYDES_UNICORN_ANSWER_PERCENT", SETTING_INT, "80", 0, 100, NULL,
     OFF(unicorn_answer_percent), false, NULL, "how often a simulated unicorn answers an RFQ"},
    {"unicorn-min-latency-ms", "RYDES_UNICORN_MIN_LATENCY_MS", SETTING_INT, "200", 0, 600000, NULL,
     OFF(unicorn_min_latency_ms), false, NULL, "a simulated unicorn answers after at least..."},
    {"unicorn-max-latency-ms", "RYDES_UNICORN_MAX_LATENCY_MS", SETTING_INT, "2000", 0, 600000, NULL,
     OFF(unicorn_max_latency_ms), false, NULL, "...and at most this long"},
    {"unicorn-min-price", "RYDES_UNICORN_MIN_PRICE", SETTING_INT, "20", 0, 100000, NULL,
     OFF(unicorn_min_price), false, NULL, "simulated quotes cost at least this..."},
    {"unicorn-max-price", "RYDES_UNICORN_MAX_PRICE", SETTING_INT, "100", 1, 100000, NULL,
     OFF(unicorn_max_price), false, NULL, "...and less than this"},
    {"saga-concurrency", "RYDES_SAGA_CONCURRENCY", SETTING_INT, "2", 1, 64, NULL,
     OFF(saga_concurrency), false, NULL, "fare-saga executors per process"},
    {"saga-lease-seconds", "RYDES_SAGA_LEASE_SECONDS", SETTING_INT, "60", 1, 3600, NULL,
     OFF(saga_lease_seconds), false, NULL,
     "a saga claimed by a process that died is resumed by another after this long"},
    {"saga-unreachable-seconds", "RYDES_SAGA_UNREACHABLE_SECONDS", SETTING_INT, "3600", 0, 604800,
     NULL, OFF(saga_unreachable_seconds), false, NULL,
     "a payment step whose gateway cannot be reached is retried this long before its attempts "
     "count"},
    {"payment-url", "RYDES_PAYMENT_URL", SETTING_STRING, "", 0, 0, NULL, OFF(payment_url),
     true /* it may carry the gateway's credentials (https://key@host) */, payment_url_valid,
     "base URL (http or https) of a real payment gateway; empty: the built-in "
     "simulator"},
    {"tls-cert", "RYDES_TLS_CERT", SETTING_STRING, "", 0, 0, NULL, OFF(tls_cert), false, NULL,
     "PEM certificate (chain) file: serve HTTPS (with --tls-key)"},
    {"tls-key", "RYDES_TLS_KEY", SETTING_STRING, "", 0, 0, NULL, OFF(tls_key), false, NULL,
     "PEM private key file of the certificate"},
    {"rate-limit-app", "RYDES_RATE_LIMIT_APP", SETTING_INT, "50", 0, 1000000, NULL,
     OFF(rate_limit_app), false, NULL,
     "requests per second an app token may make per client address and process (bursts of "
     "twice that); 0: none"},
    {"rate-limit-app-token", "RYDES_RATE_LIMIT_APP_TOKEN", SETTING_INT, "0", 0, 1000000, NULL,
     OFF(rate_limit_app_token), false, NULL,
     "requests per second an app token may make per process from all addresses together "
     "(bursts of twice that); 0: none"},
    {"rate-limit-service", "RYDES_RATE_LIMIT_SERVICE", SETTING_INT, "0", 0, 1000000, NULL,
     OFF(rate_limit_service), false, NULL, "the same for service tokens"},
    {"rate-limit-admin", "RYDES_RATE_LIMIT_ADMIN", SETTING_INT, "0", 0, 1000000, NULL,
     OFF(rate_limit_admin), false, NULL, "the same for admin tokens"},
    {"trusted-proxies", "RYDES_TRUSTED_PROXIES", SETTING_STRING, "", 0, 0, NULL,
     OFF(trusted_proxies), false, trusted_proxies_valid,
     "addresses or CIDR ranges of reverse proxies (comma-separated): a request from one is "
     "charged to the client its X-Forwarded-For names, for the per-address rate limits; "
     "empty: X-Forwarded-For is ignored"},
    {"auth-failure-burst", "RYDES_AUTH_FAILURE_BURST", SETTING_INT, "50", 1, 1000000, NULL,
     OFF(auth_failure_burst), false, NULL,
     "database lookups of unknown tokens and access keys a client address may make (ten "
     "times that the process) before credentials not found valid lately are refused "
     "without one"},
    {"auth-failures-per-minute", "RYDES_AUTH_FAILURES_PER_MINUTE", SETTING_INT, "300", 1, 60000000,
     NULL, OFF(auth_failures_per_minute), false, NULL,
     "how fast that budget refills; twenty times that per process"},
};

#define NSETTINGS (sizeof settings / sizeof settings[0])

static void *field(struct config *c, const struct setting *s)
{
    return (char *)c + s->offset;
}

static const struct setting *find_by_name(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static bool parse_int(const char *text, int64_t *out)
{
    if (!*text || isspace((unsigned char)*text))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return (*out = true);
        if (strcasecmp(text, no[i]) == 0)
            return !(*out = false);
    }
    return false;
}

static void fail(struct config_error *err, const char *who, const char *value, const char *why)
{
    snprintf(err->message, sizeof err->message, "%s: invalid value '%.100s': %s", who, value, why);
}

/* Frees a string setting's value; a secret's is wiped first, so it does not linger in freed
 * memory. */
static void free_value(const struct setting *s, char **value)
{
    if (*value && s->secret)
        explicit_bzero(*value, strlen(*value));
    free(*value);
    *value = NULL;
}

static bool apply_int(struct config *c, const struct setting *s, const char *who, const char *text,
                      struct config_error *err)
{
    int64_t v;
    if (!parse_int(text, &v) || v < s->min || v > s->max) {
        char why[96];
        snprintf(why, sizeof why, "expected an integer in %" PRId64 "..%" PRId64, s->min, s->max);
        fail(err, who, s->secret ? "***" : text, why);
        return false;
    }
    *(int64_t *)field(c, s) = v;
    return true;
}

static bool apply_enum(struct config *c, const struct setting *s, const char *who, const char *text,
                       struct config_error *err)
{
    for (int i = 0; s->choices[i]; i++) {
        if (strcmp(s->choices[i], text) == 0) {
            *(int *)field(c, s) = i;
            return true;
        }
    }
    fail(err, who, text, "not one of the allowed values (see --help)");
    return false;
}

/* Parses text for setting s; who names the source in the error ("RYDES_PORT" or "--port"). */
static bool apply(struct config *c, const struct setting *s, const char *who, const char *text,
                  struct config_error *err)
{
    switch (s->type) {
    case SETTING_INT:
        return apply_int(c, s, who, text, err);
    case SETTING_ENUM:
        return apply_enum(c, s, who, text, err);
    case SETTING_BOOL:
        if (!parse_bool(text, (bool *)field(c, s))) {
            fail(err, who, text, "expected true or false");
            return false;
        }
        return true;
    case SETTING_STRING:
        if (s->valid && !s->valid(text)) {
            fail(err, who, s->secret ? "***" : text, refusal_of(s));
            return false;
        }
        free_value(s, field(c, s));
        *(char **)field(c, s) = xstrdup(text);
        return true;
    }
    return false;
}

void config_init(struct config *c)
{
    memset(c, 0, sizeof *c);
    struct config_error err;
    for (size_t i = 0; i < NSETTINGS; i++) {
        bool ok = apply(c, &settings[i], settings[i].name, settings[i].def, &err);
        (void)ok; /* the defaults are checked by the unit tests */
    }
}

void config_cleanup(struct config *c)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type == SETTING_STRING)
            free_value(&settings[i], field(c, &settings[i]));
    }
}

/* Settings that were renamed: the old name is refused with the new one, not silently ignored. */
static const struct {
    const char *old, *now;
} renamed[] = {{"RYDES_COMBINE_SENDS", "RYDES_COMBINE"}};

bool config_load_env(struct config *c, struct config_error *err)
{
    for (size_t i = 0; i < sizeof renamed / sizeof renamed[0]; i++)
        if (getenv(renamed[i].old)) {
            snprintf(err->message, sizeof err->message, "%s was renamed %s", renamed[i].old,
                     renamed[i].now);
            return false;
        }
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && !apply(c, &settings[i], settings[i].env, v, err))
            return false;
    }
    return true;
}

bool config_check(const struct config *c, struct config_error *err)
{
    if (c->unicorn_min_latency_ms > c->unicorn_max_latency_ms)
        snprintf(err->message, sizeof err->message,
                 "RYDES_UNICORN_MIN_LATENCY_MS (%lld) is above RYDES_UNICORN_MAX_LATENCY_MS (%lld)",
                 (long long)c->unicorn_min_latency_ms, (long long)c->unicorn_max_latency_ms);
    else if (c->unicorn_min_price >= c->unicorn_max_price)
        snprintf(err->message, sizeof err->message,
                 "RYDES_UNICORN_MIN_PRICE (%lld) must be below RYDES_UNICORN_MAX_PRICE (%lld), "
                 "which no quote reaches",
                 (long long)c->unicorn_min_price, (long long)c->unicorn_max_price);
    else
        return true;
    return false;
}

bool config_set_flag(struct config *c, const char *name, const char *value,
                     struct config_error *err)
{
    const struct setting *s = find_by_name(name);
    char who[64];
    snprintf(who, sizeof who, "--%s", name);
    if (!s) {
        snprintf(err->message, sizeof err->message, "unknown option --%.60s", name);
        return false;
    }
    return apply(c, s, who, value, err);
}

bool config_is_flag(const char *name)
{
    return find_by_name(name) != NULL;
}

bool config_is_bool_flag(const char *name)
{
    const struct setting *s = find_by_name(name);
    return s && s->type == SETTING_BOOL;
}

bool config_is_secret_flag(const char *name)
{
    const struct setting *s = find_by_name(name);
    return s && s->secret;
}

static void print_range(FILE *out, const struct setting *s)
{
    if (s->type == SETTING_INT)
        fprintf(out, "%" PRId64 "..%" PRId64, s->min, s->max);
    else if (s->type == SETTING_BOOL)
        fputs("true|false", out);
    else if (s->type == SETTING_ENUM)
        for (int i = 0; s->choices[i]; i++)
            fprintf(out, "%s%s", i ? "|" : "", s->choices[i]);
    else
        fputs("string", out);
}

void config_print_help(FILE *out)
{
    fputs("Settings (flag, environment variable, default, range):\n", out);
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        fprintf(out, "  --%-24s %-30s default: %s  (", s->name, s->env,
                s->def[0] ? s->def : "\"\"");
        print_range(out, s);
        fprintf(out, ")\n      %s\n", s->help);
    }
}

/* The built-in workers `serve` can run (RYDES_WORKERS names some of them). */
static const char *const known_workers[] = {"push",
                                            "customer-notification",
                                            "customer-loyalty",
                                            "datalake-ingestion",
                                            "extraordinary-rides",
                                            "prebooking-submission",
                                            "prebooking-processing",
                                            "prebooking-datalake",
                                            "rfq-aggregator",
                                            "unicorn-fleet",
                                            "customer-accounting",
                                            "fare-saga",
                                            NULL};

static bool worker_name_valid(const char *p, size_t n)
{
    for (int i = 0; known_workers[i]; i++)
        if (strlen(known_workers[i]) == n && strncmp(p, known_workers[i], n) == 0)
            return true;
    return false;
}

bool config_workers_valid(const char *value)
{
    if (strcmp(value, "all") == 0 || strcmp(value, "none") == 0)
        return true;
    for (const char *p = value;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!worker_name_valid(p, n))
            return false;
        if (!comma)
            return true;
        p = comma + 1;
    }
}

bool config_worker_enabled(const struct config *cfg, const char *name)
{
    const char *w = cfg->workers;
    if (strcmp(w, "all") == 0)
        return true;
    size_t n = strlen(name);
    for (const char *p = w; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        if (!comma)
            break;
        p = comma + 1;
    }
    return false;
}
