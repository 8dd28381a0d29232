/* The rydes command line; see include/rydes/cli.h.
 *
 * Every command reads the settings table from the environment first and then from its flags
 * (--name value or --name=value; boolean settings also as --name / --no-name), so a value is
 * validated the same way wherever it comes from. Commands with options of their own (token
 * create) take those before falling back to the settings. */
#include "rydes/cli.h"

#include "rydes/app.h"
#include "rydes/aws_store.h"
#include "rydes/body.h"
#include "rydes/buf.h"
#include "rydes/config.h"
#include "rydes/db.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/tokens.h"
#include "rydes/validate.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RYDES_VERSION
#define RYDES_VERSION "dev"
#endif

/* Options a command takes besides the settings. */
struct cli_opts {
    const char *role;
    const char *name;
    bool aws; /* token create --aws: also issue a SigV4 access key */
    bool help;
};

static void usage(FILE *out)
{
    fputs("usage: rydes COMMAND [OPTIONS]\n\n"
          "Commands:\n"
          "  serve                          serve the HTTP gateway (and the workers RYDES_WORKERS\n"
          "                                 names, all by default)\n"
          "  worker NAME...                 run only these built-in workers, without HTTP:\n"
          "                                 push, customer-notification, customer-loyalty,\n"
          "                                 datalake-ingestion, extraordinary-rides,\n"
          "                                 prebooking-submission, prebooking-processing,\n"
          "                                 prebooking-datalake, rfq-aggregator, unicorn-fleet,\n"
          "                                 customer-accounting, fare-saga\n"
          "  migrate                        apply pending database migrations, then exit\n"
          "  token create --role R [--name N] [--aws]\n"
          "                                 create an API token (app, service or admin) and\n"
          "                                 print its secret, which is shown only once; --aws\n"
          "                                 also prints an access key id and secret for the\n"
          "                                 AWS protocols (SQS, SNS) acting with its role\n"
          "  version                        print the version\n\n"
          "Run 'rydes COMMAND --help' for the settings every command accepts.\n",
          out);
}

static bool take_value(int argc, char **argv, int *i, char *arg, char **value)
{
    char *eq = strchr(arg, '=');
    if (eq) {
        *value = eq + 1;
        return true;
    }
    if (*i + 1 >= argc)
        return false;
    *value = argv[++*i];
    return true;
}

static bool set_setting(struct config *cfg, const char *name, const char *value)
{
    struct config_error err;
    if (config_set_flag(cfg, name, value, &err))
        return true;
    fprintf(stderr, "rydes: %s\n", err.message);
    return false;
}

/* Applies a flag's value taken from argv; a secret's is then wiped from argv, so that
 * /proc/PID/cmdline (readable by every local user) no longer shows it. */
static bool set_from_argv(struct config *cfg, const char *name, char *value)
{
    bool ok = set_setting(cfg, name, value);
    if (config_is_secret_flag(name))
        explicit_bzero(value, strlen(value));
    return ok;
}

/* Applies one --flag. Returns false (after printing why) on a bad flag or value. */
static bool parse_flag(struct config *cfg, struct cli_opts *opts, int argc, char **argv, int *i)
{
    char *arg = argv[*i] + 2;
    bool has_eq = strchr(arg, '=') != NULL;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    if (strcmp(name, "help") == 0)
        return (opts->help = true);
    if (strcmp(name, "aws") == 0 && !has_eq)
        return (opts->aws = true);
    if (!has_eq && config_is_bool_flag(name))
        return set_setting(cfg, name, "true");
    if (!has_eq && strncmp(name, "no-", 3) == 0 && config_is_bool_flag(name + 3))
        return set_setting(cfg, name + 3, "false");
    char *value;
    if (!take_value(argc, argv, i, arg, &value)) {
        fprintf(stderr, "rydes: option --%s needs a value\n", name);
        return false;
    }
    if (strcmp(name, "role") == 0)
        opts->role = value;
    else if (strcmp(name, "name") == 0)
        opts->name = value;
    else
        return set_from_argv(cfg, name, value);
    return true;
}

/* Loads the environment, then the flags from argv[first..]. */
static bool load_settings(struct config *cfg, struct cli_opts *opts, int argc, char **argv,
                          int first)
{
    struct config_error err;
    if (!config_load_env(cfg, &err)) {
        fprintf(stderr, "rydes: %s\n", err.message);
        return false;
    }
    for (int i = first; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            fprintf(stderr, "rydes: unexpected argument '%s'\n", argv[i]);
            return false;
        }
        if (!parse_flag(cfg, opts, argc, argv, &i))
            return false;
    }
    if (!config_check(cfg, &err)) {
        fprintf(stderr, "rydes: %s\n", err.message);
        return false;
    }
    log_configure((enum log_level)cfg->log_level, (enum log_format)cfg->log_format);
    return true;
}

static int cmd_migrate(const struct config *cfg)
{
    int applied;
    char err[1024];
    if (!app_migrate(cfg, true, &applied, err, sizeof err)) {
        log_error("migrate failed: %s", err);
        return 1;
    }
    log_info("migrations: %d applied, database is current", applied);
    return 0;
}

/* Start-up, on a thread of its own: the main thread meanwhile waits for a signal, so that
 * SIGTERM stops a start-up that waits (on the migration lock, on a database that does not
 * answer) at once instead of after it. */
struct starting {
    struct app *app;
    const struct config *cfg;
    bool http, ok;
    atomic_bool done; /* ok is set: a SIGUSR1 from anyone else is passed over */
    pthread_t main;
    char err[1024];
};

static void *start_app(void *arg)
{
    struct starting *st = arg;
    st->ok = st->http ? app_start(st->app, st->cfg, st->err, sizeof st->err)
                      : app_start_workers(st->app, st->cfg, st->err, sizeof st->err);
    atomic_store(&st->done, true);
    pthread_kill(st->main, SIGUSR1); /* started (or failed): the main thread goes on */
    return NULL;
}

/* Waits for SIGINT or SIGTERM, or, with st, for st's start-up to be done (SIGUSR1); set
 * holds the three. Returns the signal (SIGUSR1: done). */
static int wait_signal(const sigset_t *set, const struct starting *st)
{
    int sig = 0;
    while (sigwait(set, &sig) == 0 && sig == SIGUSR1 && !(st && atomic_load(&st->done))) {
    }
    return sig;
}

/* Takes the signals of set that are pending already (a Ctrl-C to the process group and a
 * supervisor's SIGTERM at once are one request to stop, not two). */
static void drain_signals(const sigset_t *set)
{
    struct timespec now = {0, 0};
    while (sigtimedwait(set, NULL, &now) > 0) {
    }
}

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

/* Serves (http) or runs the workers only, until SIGINT or SIGTERM. */
static int run_until_signal(const struct config *cfg, bool http)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    /* Blocked before any thread starts, so only sigwait below ever sees them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct app app;
    struct starting st = {.app = &app, .cfg = cfg, .http = http, .main = pthread_self()};
    pthread_t starter;
    if (pthread_create(&starter, NULL, start_app, &st) != 0) {
        log_error("cannot start: no thread");
        return 1;
    }
    int sig = wait_signal(&set, &st);
    if (sig != SIGUSR1 && !atomic_load(&st.done)) { /* nothing serves yet: what start-up began
                                                       rolls back with its connections */
        log_info("received %s during start-up: stopping at once", signal_name(sig));
        _exit(1);
    }
    pthread_join(starter, NULL);
    if (!st.ok) {
        log_error("cannot start: %s", st.err);
        return 1;
    }
    if (http)
        log_info("rydes %s listening on http://%s:%d", RYDES_VERSION, cfg->bind,
                 http_server_port(app.http));
    else
        log_info("rydes %s running workers %s", RYDES_VERSION, cfg->workers);
    if (sig == SIGUSR1) /* else a stop that came just as start-up ended: stop now */
        sig = wait_signal(&set, NULL);
    log_info("received %s: stopping (a second signal stops at once)", signal_name(sig));
    /* only this thread has them unblocked: a second one takes its default action, the exit */
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    drain_signals(&stops);
    pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
    app_stop(&app);
    log_info("stopped");
    return 0;
}

static int cmd_token_create(const struct config *cfg, const struct cli_opts *opts)
{
    enum role role;
    if (!opts->role || !role_parse(opts->role, &role)) {
        fprintf(stderr, "rydes: token create needs --role app|service|admin\n");
        return 2;
    }
    const char *name = opts->name ? opts->name : "";
    if (validate_utf8_prefix(name, SIZE_MAX) != strlen(name) || validate_utf8_length(name) > 100 ||
        !validate_one_line(name)) {
        fprintf(stderr, "rydes: --name: at most 100 characters of UTF-8 on one line\n");
        return 2;
    }
    char cerr[256];
    PGconn *pg =
        db_connect(cfg->database_url, (int)cfg->db_connect_timeout, NULL, cerr, sizeof cerr);
    if (!pg) {
        log_error("cannot connect to the database: %s", cerr);
        return 1;
    }
    struct db_conn c = {.pg = pg};
    char secret[SECRET_TOKEN_LEN], key_id[AWS_ACCESS_KEY_LEN], key_secret[AWS_SECRET_LEN];
    struct token_info t;
    /* one transaction: a token whose access key failed would live on with nobody knowing it */
    enum store_result r = db_begin(&c) ? tokens_create(&c, role, name, secret, &t) : STORE_ERROR;
    if (r == STORE_OK && opts->aws)
        r = aws_credentials_create(&c, t.id, key_id, key_secret);
    if (r == STORE_OK && !db_commit(&c))
        r = STORE_ERROR;
    PQfinish(pg);
    if (r != STORE_OK) {
        log_error("could not create the token (are the migrations applied?)");
        return 1;
    }
    printf("%s\n", secret);
    if (opts->aws)
        printf("%s\n%s\n", key_id, key_secret);
    fprintf(stderr, "created %s token %s (id %s); %s shown only once%s\n", role_name(role), name,
            t.id,
            opts->aws ? "the bearer token, access key id and secret access key above are"
                      : "the secret above is",
            opts->aws ? " (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)" : "");
    return 0;
}

static int run(const char *cmd, const struct config *cfg, const struct cli_opts *opts)
{
    if (strcmp(cmd, "serve") == 0)
        return run_until_signal(cfg, true);
    if (strcmp(cmd, "worker") == 0)
        return run_until_signal(cfg, false);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(cfg);
    return cmd_token_create(cfg, opts);
}

/* The NAME... of `rydes worker`, up to the first --flag, comma-joined into *names (owned). */
static bool worker_names(int argc, char **argv, int *first, char **names)
{
    struct buf b;
    buf_init(&b);
    for (; *first < argc && strncmp(argv[*first], "--", 2) != 0; (*first)++)
        buf_printf(&b, "%s%s", b.len ? "," : "", argv[*first]);
    if (b.len == 0 && *first < argc && strcmp(argv[*first], "--help") == 0) {
        *names = NULL;
        buf_cleanup(&b);
        return true;
    }
    bool ok = b.len > 0 && strcmp(buf_str(&b), "all") != 0 && strcmp(buf_str(&b), "none") != 0 &&
              config_workers_valid(buf_str(&b));
    if (!ok)
        fprintf(stderr, "usage: rydes worker NAME... [OPTIONS]\n"
                        "names: push, customer-notification, customer-loyalty, "
                        "datalake-ingestion, extraordinary-rides, prebooking-submission, "
                        "prebooking-processing, prebooking-datalake, rfq-aggregator, "
                        "unicorn-fleet, customer-accounting, fare-saga\n");
    *names = ok ? xstrdup(buf_str(&b)) : NULL;
    buf_cleanup(&b);
    return ok;
}

int cli_main(int argc, char **argv)
{
    body_json_setup(BODY_JSON_FLOOR); /* before any thread uses jansson */
    const char *cmd = argc > 1 ? argv[1] : "help";
    int first = 2;
    char *opts_workers = NULL;
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("rydes %s\n", RYDES_VERSION);
        return 0;
    }
    if (strcmp(cmd, "token") == 0) {
        if (argc < 3 || strcmp(argv[2], "create") != 0) {
            fprintf(stderr, "usage: rydes token create --role R [--name N] [--aws]\n");
            return 2;
        }
        cmd = "token create";
        first = 3;
    } else if (strcmp(cmd, "worker") == 0) {
        if (!worker_names(argc, argv, &first, &opts_workers))
            return 2;
    } else if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0) {
        bool help = strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0;
        usage(help ? stdout : stderr);
        if (!help)
            fprintf(stderr, "\nrydes: unknown command '%s'\n", cmd);
        return help ? 0 : 2;
    }
    struct config cfg;
    config_init(&cfg);
    struct cli_opts opts = {0};
    bool is_token = strcmp(cmd, "token create") == 0;
    bool ok = load_settings(&cfg, &opts, argc, argv, first);
    if (ok && opts_workers) /* the names given win over RYDES_WORKERS and --workers */
        ok = set_setting(&cfg, "workers", opts_workers);
    free(opts_workers);
    if (ok && !is_token && (opts.role || opts.name || opts.aws)) {
        fprintf(stderr, "rydes: --role, --name and --aws belong to 'token create'\n");
        ok = false;
    }
    int status = 2;
    if (ok && opts.help) {
        printf("usage: rydes %s [OPTIONS]\n\n", cmd);
        if (is_token)
            printf("  --role R   app, service or admin (required)\n"
                   "  --name N   a label for the token (up to 100 characters)\n"
                   "  --aws      also issue an access key for the AWS protocols (SigV4)\n\n");
        config_print_help(stdout);
        status = 0;
    } else if (ok) {
        status = run(cmd, &cfg, &opts);
    }
    config_cleanup(&cfg);
    return status;
}
