/* Integration: bearer-token authentication and the token endpoints. The role matrix (no token,
 * bad token, role too low, right role), tokens stored only as hashes, pagination, deletion
 * revoking at once, RYDES_ADMIN_TOKEN ensured idempotently, per-token rate limits (429 with
 * Retry-After), the budget of lookups of unknown tokens per client address, and lookups that
 * hold no HTTP thread (they run on a data-plane thread, the request's body read afterwards). */
#include "harness.h"

#include "rydes/db.h"
#include "rydes/secret.h"
#include "rydes/ttlcache.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* Creates a token of role through the API; returns its secret in secret and its id in id. */
static void create_token(const char *role, char *secret, char *id)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"t-%s\"}", role, role);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_string_value(json_object_get(r.json, "token")));
    snprintf(id, 40, "%s", json_string_value(json_object_get(r.json, "id")));
    response_cleanup(&r);
}

static long status_of(const char *method, const char *path, const char *token)
{
    struct response r;
    harness_request(&srv, method, path, token, NULL, NULL, NULL, &r);
    long st = r.status;
    if (st == 401) {
        char www[128];
        ck_assert(response_header(&r, "WWW-Authenticate", www, sizeof www));
        ck_assert(strncmp(www, "Bearer", 6) == 0);
        assert_problem(&r, 401);
    }
    if (st == 403)
        assert_problem(&r, 403);
    response_cleanup(&r);
    return st;
}

START_TEST(role_matrix_on_admin_routes)
{
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN], admin[SECRET_TOKEN_LEN], id[40];
    create_token("app", app, id);
    create_token("service", service, id);
    create_token("admin", admin, id);
    ck_assert_int_eq(status_of("GET", "/tokens", NULL), 401);
    ck_assert_int_eq(status_of("GET", "/tokens", "rydes_not_a_real_token"), 401);
    ck_assert_int_eq(status_of("GET", "/tokens", app), 403);
    ck_assert_int_eq(status_of("GET", "/tokens", service), 403);
    ck_assert_int_eq(status_of("GET", "/tokens", admin), 200);
    ck_assert_int_eq(status_of("GET", "/tokens", HARNESS_ADMIN_TOKEN), 200);
    /* every customer's rides are for operators; one customer's, for the (public) app token */
    ck_assert_int_eq(status_of("GET", "/rides", app), 403);
    ck_assert_int_eq(status_of("GET", "/rides?order=newest", service), 403);
    ck_assert_int_eq(status_of("GET", "/rides?order=newest", admin), 200);
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 200);
    /* open routes ignore tokens, even invalid ones */
    ck_assert_int_eq(status_of("GET", "/healthz", "garbage"), 200);
    ck_assert_int_eq(status_of("GET", "/metrics", NULL), 200);
}
END_TEST

START_TEST(malformed_authorization_headers_are_401)
{
    const char *headers[] = {
        "Authorization: Basic YWRtaW46YWRtaW4=",
        "Authorization: Bearer",
        "Authorization: Bearer ",
        "Authorization: " HARNESS_ADMIN_TOKEN,
        "Authorization: Token " HARNESS_ADMIN_TOKEN,
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct response r;
        harness_request(&srv, "GET", "/tokens", NULL, NULL, NULL, headers[i], &r);
        ck_assert_msg(r.status == 401, "%s gave %ld", headers[i], r.status);
        response_cleanup(&r);
    }
    struct response r;
    harness_request(&srv, "GET", "/tokens", NULL, NULL, NULL,
                    "Authorization: bearer " HARNESS_ADMIN_TOKEN, &r);
    ck_assert_int_eq(r.status, 200); /* the scheme is case-insensitive */
    response_cleanup(&r);
}
END_TEST

START_TEST(tokens_are_stored_hashed_and_shown_once)
{
    struct response r;
    harness_admin(&srv, "POST", "/tokens", "{\"role\":\"service\",\"name\":\"billing\"}", &r);
    ck_assert_int_eq(r.status, 201);
    const char *secret = json_string_value(json_object_get(r.json, "token"));
    const char *id = json_string_value(json_object_get(r.json, "id"));
    ck_assert(strncmp(secret, "rydes_", 6) == 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "role")), "service");
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "name")), "billing");
    char loc[128], self[128];
    snprintf(self, sizeof self, "/tokens/%s", id);
    ck_assert(response_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, self);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "links"), "self")),
                     self);

    unsigned char hash[SECRET_HASH_LEN];
    secret_token_hash(secret, strlen(secret), hash);
    char sql[512], hex[2 * SECRET_HASH_LEN + 1];
    for (int i = 0; i < SECRET_HASH_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    snprintf(sql, sizeof sql, "SELECT encode(secret_hash, 'hex') FROM tokens WHERE id = '%s'", id);
    char *stored = harness_sql(harness_db_url(), sql);
    ck_assert_str_eq(stored, hex);
    free(stored);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tokens t WHERE strpos(t::text, '%s') > 0",
             secret + 6);
    char *leaked = harness_sql(harness_db_url(), sql);
    ck_assert_str_eq(leaked, "0");
    free(leaked);

    struct response g;
    harness_admin(&srv, "GET", self, NULL, &g);
    ck_assert_int_eq(g.status, 200);
    ck_assert_ptr_null(json_object_get(g.json, "token"));
    ck_assert_str_eq(json_string_value(json_object_get(g.json, "id")), id);
    response_cleanup(&g);
    response_cleanup(&r);
}
END_TEST

START_TEST(deleting_a_token_revokes_it)
{
    char admin[SECRET_TOKEN_LEN], id[40], path[80];
    create_token("admin", admin, id);
    ck_assert_int_eq(status_of("GET", "/tokens", admin), 200);
    snprintf(path, sizeof path, "/tokens/%s", id);
    struct response r;
    harness_admin(&srv, "DELETE", path, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
    ck_assert_int_eq(status_of("GET", "/tokens", admin), 401);
    harness_admin(&srv, "DELETE", path, NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "GET", path, NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/tokens/not-a-uuid", NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

START_TEST(list_paginates_through_every_token)
{
    char secret[SECRET_TOKEN_LEN], id[40];
    for (int i = 0; i < 5; i++)
        create_token("app", secret, id);
    char *total = harness_sql(harness_db_url(), "SELECT count(*) FROM tokens");
    int expected = atoi(total);
    free(total);
    char path[128] = "/tokens?limit=2";
    int seen = 0, pages = 0;
    for (;;) {
        struct response r;
        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        json_t *items = json_object_get(r.json, "tokens");
        ck_assert_int_le(json_array_size(items), 2);
        seen += (int)json_array_size(items);
        pages++;
        json_t *next = json_object_get(r.json, "next");
        ck_assert(json_is_string(next) || json_is_null(next));
        if (json_is_null(next)) {
            response_cleanup(&r);
            break;
        }
        snprintf(path, sizeof path, "/tokens?limit=2&after=%s", json_string_value(next));
        response_cleanup(&r);
    }
    ck_assert_int_eq(seen, expected);
    ck_assert_int_eq(pages, (expected + 1) / 2);
}
END_TEST

START_TEST(list_refuses_bad_paging)
{
    const char *paths[] = {"/tokens?limit=0", "/tokens?limit=1001", "/tokens?limit=x",
                           "/tokens?after=abc", "/tokens?after=-1"};
    const char *fields[] = {"limit", "limit", "limit", "after", "after"};
    for (int i = 0; i < 5; i++) {
        struct response r;
        harness_admin(&srv, "GET", paths[i], NULL, &r);
        assert_problem(&r, 400);
        json_t *e = json_array_get(json_object_get(r.json, "errors"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(e, "field")), fields[i]);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(create_validates_role_and_name)
{
    const char *bodies[] = {"{}",
                            "{\"role\":\"superuser\"}",
                            "{\"role\":1}",
                            "{\"role\":\"app\",\"name\":\"\"}",
                            "{\"role\":\"app\",\"name\":\"a\\u0001b\"}",
                            "{\"role\":\"app\",\"name\":\"two\\nlines\"}"};
    const char *fields[] = {"role", "role", "role", "name", "name", "name"};
    for (int i = 0; i < 6; i++) {
        struct response r;
        harness_admin(&srv, "POST", "/tokens", bodies[i], &r);
        assert_problem(&r, 400);
        json_t *e = json_array_get(json_object_get(r.json, "errors"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(e, "field")), fields[i]);
        response_cleanup(&r);
    }
    char body[256] = "{\"role\":\"app\",\"name\":\"";
    memset(body + strlen(body), 'n', 101);
    strcat(body, "\"}");
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
}
END_TEST

START_TEST(admin_token_is_ensured_once)
{
    harness_stop(&srv);
    harness_start(&srv, NULL); /* the fixture's teardown stops this one */
    char *n = harness_sql(harness_db_url(),
                          "SELECT count(*) FROM tokens WHERE name = 'RYDES_ADMIN_TOKEN'");
    ck_assert_str_eq(n, "1");
    free(n);
    ck_assert_int_eq(status_of("GET", "/tokens", HARNESS_ADMIN_TOKEN), 200);
}
END_TEST

static void rotated_admin_token(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "admin-token", "rydes_rotated_admin_token_42", &err));
}

START_TEST(rotating_the_admin_token_revokes_the_old_one)
{
    harness_stop(&srv);
    harness_start(&srv, rotated_admin_token);
    ck_assert_int_eq(status_of("GET", "/tokens", "rydes_rotated_admin_token_42"), 200);
    ck_assert_int_eq(status_of("GET", "/tokens", HARNESS_ADMIN_TOKEN), 401);
    char *n = harness_sql(harness_db_url(), "SELECT count(*) FROM tokens WHERE bootstrap");
    ck_assert_str_eq(n, "1");
    free(n);
}
END_TEST

/* A bootstrap admin token whose secret is that of a token made otherwise (an app token, which
 * is public) refuses to start: it made that token admin for everyone holding it. The token and
 * the previous bootstrap one stay as they were. */
START_TEST(an_admin_token_that_is_another_tokens_secret_is_refused)
{
    char app[SECRET_TOKEN_LEN], id[40];
    create_token("app", app, id);
    struct config cfg;
    config_init(&cfg);
    struct config_error err;
    ck_assert(config_set_flag(&cfg, "database-url", harness_db_url(), &err));
    ck_assert(config_set_flag(&cfg, "port", "0", &err));
    ck_assert(config_set_flag(&cfg, "admin-token", app, &err));
    ck_assert(config_set_flag(&cfg, "workers", "none", &err));
    struct app a;
    char msg[512];
    ck_assert(!app_start(&a, &cfg, msg, sizeof msg));
    ck_assert_msg(strstr(msg, "made otherwise"), "%s", msg);
    config_cleanup(&cfg);
    ck_assert_int_eq(status_of("GET", "/tokens", app), 403);
    ck_assert_int_eq(harness_sqlf("SELECT count(*) FROM tokens WHERE role = 'app' AND NOT "
                                  "bootstrap AND id = '%s'",
                                  id),
                     1);
    /* one an earlier version promoted that way (it kept its own name) is refused too */
    harness_sqlf("WITH u AS (UPDATE tokens SET role = 'admin', bootstrap = true WHERE id = '%s' "
                 "RETURNING 1) SELECT count(*) FROM u",
                 id);
    config_init(&cfg);
    ck_assert(config_set_flag(&cfg, "database-url", harness_db_url(), &err));
    ck_assert(config_set_flag(&cfg, "port", "0", &err));
    ck_assert(config_set_flag(&cfg, "admin-token", app, &err));
    ck_assert(config_set_flag(&cfg, "workers", "none", &err));
    ck_assert(!app_start(&a, &cfg, msg, sizeof msg));
    ck_assert_msg(strstr(msg, "made otherwise"), "%s", msg);
    config_cleanup(&cfg);
    ck_assert_int_eq(status_of("GET", "/tokens", HARNESS_ADMIN_TOKEN), 200);
}
END_TEST

/* An admin token that could never log in is refused with the settings, before any command does
 * anything, with a reason and without showing it: one with a space, or a secret file's
 * trailing newline (the header that carries it is trimmed and ends at a line). */
START_TEST(an_admin_token_that_cannot_log_in_is_refused_with_the_settings)
{
    const char *bad[] = {"rydes_admin_token_with_newline\n", "rydes admin token with spaces",
                         "rydes_admin_token_\x01_control", "rydes_admin_token_\xc3\xa9_utf8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct config cfg;
        config_init(&cfg);
        struct config_error err;
        ck_assert_msg(!config_set_flag(&cfg, "admin-token", bad[i], &err), "token %zu", i);
        ck_assert_msg(strstr(err.message, "printable ASCII characters without spaces"), "%s",
                      err.message);
        ck_assert_msg(strstr(err.message, "--admin-token"), "%s", err.message);
        ck_assert_msg(!strstr(err.message, "rydes_admin"), "%s", err.message);
        config_cleanup(&cfg);
    }
}
END_TEST

static void low_app_limit(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "rate-limit-app", "2", &err)); /* bursts of 4 */
}

/* A 429 problem with a Retry-After of a second or more. */
static void assert_429(const struct response *r)
{
    char ra[16];
    ck_assert(response_header(r, "Retry-After", ra, sizeof ra));
    ck_assert_int_ge(atoi(ra), 1);
    assert_problem(r, 429);
}

/* An app token over its rate gets 429 problems with Retry-After; other tokens are unaffected,
 * and the bucket refills. */
START_TEST(app_tokens_are_rate_limited)
{
    harness_stop(&srv);
    harness_start(&srv, low_app_limit);
    char app[SECRET_TOKEN_LEN], other[SECRET_TOKEN_LEN], id[40];
    create_token("app", app, id);
    create_token("app", other, id);
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        struct response r;
        harness_request(&srv, "GET", "/rides?customer=c", app, NULL, NULL, NULL, &r);
        if (r.status == 429) {
            assert_429(&r);
            limited++;
        } else {
            ck_assert_int_eq(r.status, 200);
            ok++;
        }
        response_cleanup(&r);
    }
    ck_assert_int_ge(ok, 4); /* the burst (plus whatever refilled meanwhile) */
    ck_assert_int_ge(limited, 1);
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", other), 200);     /* its own bucket */
    ck_assert_int_eq(status_of("GET", "/tokens", HARNESS_ADMIN_TOKEN), 200); /* admin: no limit */
    harness_sleep_ms(1100); /* two tokens refill in a second */
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 200);
}
END_TEST

/* A budget of 5 failed lookups per address that does not refill within a test (1 a minute):
 * every refusal below is certain, none depends on timing. */
static void small_failure_budget(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "auth-failure-burst", "5", &err));
    ck_assert(config_set_flag(cfg, "auth-failures-per-minute", "1", &err));
}

/* GET path with token and more header lines (each ending in CRLF) from source address ip
 * (127.0.0.N: all loopback); the status, and the reply's text in reply. */
static int status_with(const char *ip, const char *path, const char *token, const char *headers,
                       char *reply, size_t n)
{
    int fd = harness_connect(&srv, ip);
    char req[640];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: rydes\r\nAuthorization: Bearer %s\r\n%s"
                       "Connection: close\r\n\r\n",
                       path, token, headers);
    ck_assert_int_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    size_t got = 0;
    ssize_t r;
    while (got < n - 1 && (r = recv(fd, reply + got, n - 1 - got, 0)) > 0)
        got += (size_t)r;
    reply[got] = '\0';
    close(fd);
    int status = 0;
    ck_assert_int_eq(sscanf(reply, "HTTP/1.1 %d", &status), 1);
    return status;
}

/* The same without more headers. */
static int status_at(const char *ip, const char *path, const char *token, char *reply, size_t n)
{
    return status_with(ip, path, token, "", reply, n);
}

/* GET /queues with token from source address ip. */
static int status_from(const char *ip, const char *token, char *reply, size_t n)
{
    return status_at(ip, "/queues", token, reply, n);
}

/* One app token serves every customer of the app: a client over the rate is limited alone,
 * others with the same token keep their own budget (a bucket per token and address). */
START_TEST(an_app_tokens_clients_are_limited_apart)
{
    harness_stop(&srv);
    harness_start(&srv, low_app_limit);
    char app[SECRET_TOKEN_LEN], id[40], reply[2048];
    create_token("app", app, id);
    int limited = 0;
    for (int i = 0; i < 8; i++) { /* a burst of 4, 2 a second: some of 8 are refused */
        int st = status_at("127.0.0.21", "/rides?customer=c", app, reply, sizeof reply);
        ck_assert_msg(st == 200 || st == 429, "%d", st);
        limited += st == 429;
    }
    ck_assert_int_ge(limited, 1);
    for (int i = 0; i < 3; i++) /* another client of the app: its budget is whole */
        ck_assert_int_eq(status_at("127.0.0.22", "/rides?customer=c", app, reply, sizeof reply),
                         200);
}
END_TEST

/* The low app limit, behind proxies at 127.0.0.30 and in 10.0.0.0/8. */
static void behind_proxies(struct config *cfg)
{
    low_app_limit(cfg);
    struct config_error err;
    ck_assert(config_set_flag(cfg, "trusted-proxies", "127.0.0.30, 10.0.0.0/8", &err));
}

/* Eight requests of app token from ip, with headers a and b in turn; how many passed (a
 * burst of 4 and 2 a second: 4 to 6 if a and b name one client, 8 if two). */
static int passed_in_turn(const char *ip, const char *token, const char *a, const char *b)
{
    char reply[2048];
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        int st = status_with(ip, "/rides?customer=c", token, i % 2 ? b : a, reply, sizeof reply);
        ck_assert_msg(st == 200 || st == 429, "%d", st);
        ok += st == 200;
    }
    return ok;
}

/* Behind a trusted proxy (RYDES_TRUSTED_PROXIES) an app token's clients are told apart by the
 * address X-Forwarded-For names, walking back over trusted hops; from any other peer the header
 * is ignored, so a client cannot pick a fresh budget by writing one. */
START_TEST(clients_behind_a_trusted_proxy_are_limited_apart)
{
    harness_stop(&srv);
    harness_start(&srv, behind_proxies);
    char app[SECRET_TOKEN_LEN], id[40], reply[2048];
    create_token("app", app, id);
    /* one client, named directly and behind a second trusted hop in a second header */
    int ok = passed_in_turn("127.0.0.30", app, "X-Forwarded-For: 203.0.113.1\r\n",
                            "X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 10.1.1.1\r\n");
    ck_assert_msg(ok <= 6, "%d of 8 passed: one client had two budgets", ok);
    /* another client of the proxy has its own, whatever it wrote before the proxy's entry */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(status_with("127.0.0.30", "/rides?customer=c", app,
                                     "X-Forwarded-For: 203.0.113.1, 203.0.113.2\r\n", reply,
                                     sizeof reply),
                         200);
    /* two clients behind the proxy: a budget each */
    ck_assert_int_eq(passed_in_turn("127.0.0.30", app, "X-Forwarded-For: 203.0.113.3\r\n",
                                    "X-Forwarded-For: 203.0.113.4\r\n"),
                     8);
    /* a peer that is no trusted proxy is its own client: the header changes nothing */
    ok = passed_in_turn("127.0.0.31", app, "X-Forwarded-For: 203.0.113.50\r\n",
                        "X-Forwarded-For: 203.0.113.51\r\n");
    ck_assert_msg(ok <= 6, "%d of 8 passed: an untrusted peer chose its budget", ok);
}
END_TEST

/* Per address a generous budget; per app token, all addresses together, 2 a second (bursts
 * of 4). */
static void app_token_total(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "rate-limit-app", "1000", &err));
    ck_assert(config_set_flag(cfg, "rate-limit-app-token", "2", &err));
}

/* RYDES_RATE_LIMIT_APP_TOKEN bounds an app token's requests from many addresses together,
 * each of which is well within its own budget; another token is not affected. */
START_TEST(an_app_tokens_total_bounds_many_addresses)
{
    harness_stop(&srv);
    harness_start(&srv, app_token_total);
    char app[SECRET_TOKEN_LEN], other[SECRET_TOKEN_LEN], id[40], reply[2048];
    create_token("app", app, id);
    create_token("app", other, id);
    int limited = 0;
    for (int i = 0; i < 20; i++) { /* twenty addresses: all 20 pass only if 8 s went by */
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.0.%d", 40 + i);
        int st = status_at(ip, "/rides?customer=c", app, reply, sizeof reply);
        ck_assert_msg(st == 200 || st == 429, "%d", st);
        limited += st == 429;
    }
    ck_assert_int_ge(limited, 1);
    ck_assert_int_eq(status_at("127.0.0.70", "/rides?customer=c", other, reply, sizeof reply), 200);
}
END_TEST

/* Unknown tokens cost a query each: an address whose lookups found nothing as often as its
 * budget allows gets 429 with Retry-After, without a query. A token found valid lately is
 * looked up whatever the budget (a proxy's other clients keep working), until a lookup finds
 * it gone; one never seen valid is not. */
START_TEST(unknown_tokens_are_looked_up_only_so_often)
{
    harness_stop(&srv);
    harness_start(&srv, small_failure_budget);
    char app[SECRET_TOKEN_LEN], fresh[SECRET_TOKEN_LEN], id[40], token[64], path[80];
    create_token("app", fresh, id);
    create_token("app", app, id);
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 200); /* found valid: seen */
    for (int i = 0; i < 5; i++) {
        snprintf(token, sizeof token, "rydes_unknown_%d", i);
        ck_assert_int_eq(status_of("GET", "/queues", token), 401);
    }
    struct response r;
    harness_request(&srv, "GET", "/queues", "rydes_unknown_5", NULL, NULL, NULL, &r);
    assert_429(&r);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "detail")),
                     "too many unknown credentials came from this address; retry later");
    response_cleanup(&r);
    harness_sleep_ms(1100); /* past the token cache's second: the next uses are lookups */
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 200);
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", fresh), 429);
    snprintf(path, sizeof path, "/tokens/%s", id);
    harness_admin(&srv, "DELETE", path, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 401); /* looked up: gone */
    ck_assert_int_eq(status_of("GET", "/rides?customer=c", app), 429); /* and exempt no more */
}
END_TEST

static void small_budget_tiny_pool(struct config *cfg)
{
    small_failure_budget(cfg);
    struct config_error err;
    ck_assert(config_set_flag(cfg, "db-pool-size", "1", &err));
    ck_assert(config_set_flag(cfg, "db-acquire-timeout-ms", "100", &err));
}

/* A lookup is charged before it runs: lookups that never finished (no connection to ask with)
 * were never charged, so an unknown client could keep threads waiting on the pool without end,
 * and lookups running at once all passed one token. */
START_TEST(lookups_that_cannot_finish_are_charged)
{
    harness_stop(&srv);
    harness_start(&srv, small_budget_tiny_pool);
    enum db_acquire_error why;
    struct db_conn *held = db_pool_acquire(srv.app.pool, 1000, &why);
    ck_assert_ptr_nonnull(held);
    char token[64];
    for (int i = 0; i < 5; i++) {
        snprintf(token, sizeof token, "rydes_unknown_%d", i);
        ck_assert_int_eq(status_of("GET", "/queues", token), 503);
    }
    struct response r;
    harness_request(&srv, "GET", "/queues", "rydes_unknown_5", NULL, NULL, NULL, &r);
    assert_429(&r);
    response_cleanup(&r);
    db_pool_release(srv.app.pool, held);
}
END_TEST

/* A lock on tokens (DDL, a migration, VACUUM FULL) holds a lookup 250 ms at most (sql/059): the
 * request gets 503, and the HTTP thread, which runs lookups, serves the rest meanwhile. The
 * lookup used to wait for the lock, up to the statement timeout, with every request behind
 * it. */
START_TEST(a_locked_token_table_is_503_not_a_stall)
{
    PGconn *lock = harness_lock_table("tokens");
    struct response made_up, health;
    harness_request(&srv, "GET", "/queues", "rydes_made_up_token", NULL, NULL, NULL, &made_up);
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &health);
    ck_assert(harness_unlock_table(lock, "tokens")); /* answered while it held */
    ck_assert_msg(made_up.status == 503, "%ld %s", made_up.status, buf_str(&made_up.body));
    char h[16];
    ck_assert(response_header(&made_up, "Retry-After", h, sizeof h));
    ck_assert_int_eq(health.status, 200);
    response_cleanup(&made_up);
    response_cleanup(&health);
    ck_assert_int_eq(status_of("GET", "/queues", HARNESS_ADMIN_TOKEN), 200);
}
END_TEST

static void made_up_call(void *arg, struct response *out)
{
    (void)arg;
    harness_request(&srv, "GET", "/queues", "rydes_made_up_token", NULL, NULL, NULL, out);
}

/* A token the cache does not hold is looked up on a data-plane thread: a lookup that waits (here
 * 1.5 s for the one pooled connection) holds no HTTP thread, and the only one answers the rest
 * meanwhile. The lookup used to wait on the HTTP thread, with every request of it behind. */
START_TEST(a_waiting_lookup_holds_no_http_thread)
{
    static struct harness_async a = {.call = made_up_call}; /* static: see harness.h */
    ck_assert_msg(harness_answered_while_the_pool_is_held(&srv, &a),
                  "/healthz waited for the lookup");
    ck_assert_int_eq(a.r.status, 503); /* no connection came in time */
    response_cleanup(&a.r);
    ck_assert_int_eq(status_of("GET", "/queues", HARNESS_ADMIN_TOKEN), 200);
}
END_TEST

/* A request whose token was looked up elsewhere goes on where it stopped: its body (behind an
 * Expect: 100-continue, answered only after the lookup) is read then, and stored whole. */
START_TEST(a_body_is_read_after_its_token_was_looked_up_elsewhere)
{
    harness_put_queue(&srv, "after-lookup", NULL, 201);
    char svc[SECRET_TOKEN_LEN], id[40];
    create_token("service", svc, id);
    unsigned char hash[SECRET_HASH_LEN];
    secret_token_hash(svc, strlen(svc), hash);
    enum role role;
    ck_assert(!ttlcache_get(srv.app.token_cache, hash, sizeof hash, &role, NULL)); /* a lookup */
    static char body[4200];
    memset(body, 'x', sizeof body);
    memcpy(body, "{\"body\": \"", 10);
    memcpy(body + sizeof body - 3, "\"}", 3);
    struct response r;
    harness_request(&srv, "POST", "/queues/after-lookup/messages", svc, body, NULL,
                    "Expect: 100-continue", &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    ck_assert(ttlcache_get(srv.app.token_cache, hash, sizeof hash, &role, NULL));
    ck_assert_int_eq(role, ROLE_SERVICE);
    ck_assert_int_eq(harness_sqlf("SELECT length(coalesce((SELECT p.body FROM payloads p WHERE "
                                  "p.id = m.payload_id), m.body)) FROM messages m JOIN queues q "
                                  "ON q.id = m.queue_id WHERE q.name = 'after-lookup'"),
                     (int)sizeof body - 13);
    /* one refused there keeps its body unread and says why */
    harness_request(&srv, "POST", "/queues/after-lookup/messages", "rydes_made_up_token", body,
                    NULL, NULL, &r);
    assert_problem(&r, 401);
    response_cleanup(&r);
}
END_TEST

struct burst_client {
    const char *token;
    long status;
};

static void *burst_main(void *arg)
{
    struct burst_client *b = arg;
    struct response r;
    harness_request(&srv, "GET", "/queues", b->token, NULL, NULL, NULL, &r);
    b->status = r.status;
    response_cleanup(&r);
    return NULL;
}

/* A burst of a token's first requests is no flood: the lookups passed on find the token cached
 * by the first ones (at most one per data-plane thread runs, each charged and given back), so
 * the lookup budget (5 here) refuses none of 30 at once. Had each been charged where it was
 * passed on, 25 would have been 429. */
START_TEST(a_burst_of_a_tokens_first_requests_is_not_refused)
{
    harness_stop(&srv);
    harness_start(&srv, small_failure_budget);
    char admin[SECRET_TOKEN_LEN], id[40];
    create_token("admin", admin, id);
    enum { BURST = 30 };
    static struct burst_client c[BURST]; /* the threads outlive a failed check's jump */
    pthread_t t[BURST];
    for (int i = 0; i < BURST; i++) {
        c[i] = (struct burst_client){admin, 0};
        pthread_create(&t[i], NULL, burst_main, &c[i]);
    }
    for (int i = 0; i < BURST; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < BURST; i++)
        ck_assert_msg(c[i].status == 200, "request %d: %ld", i, c[i].status);
}
END_TEST

static void tokens_call(void *arg, struct response *out)
{
    harness_request(&srv, "GET", "/tokens", arg, NULL, NULL, NULL, out);
}

/* A token's lookup that the data plane cannot take (its one thread busy, its queue of one full)
 * is 503 with Retry-After, as the data plane's other requests are; the others are answered
 * (403: app tokens, found, on an admin route). It stays off the HTTP thread: a data plane full
 * because the database stalls would stall the HTTP thread too. */
START_TEST(a_lookup_the_data_plane_cannot_take_is_503)
{
    static char tokens[3][SECRET_TOKEN_LEN];
    static struct harness_async a[3]; /* static: see harness.h */
    char id[40];
    for (int i = 0; i < 3; i++) {
        create_token("app", tokens[i], id); /* (the restart empties the cache) */
        a[i] = (struct harness_async){.call = tokens_call, .arg = tokens[i]};
    }
    harness_past_a_full_data_plane(&srv, a, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(a[i].r.status == (i < 2 ? 403 : 503), "%d: %ld %s", i, a[i].r.status,
                      buf_str(&a[i].r.body));
        char ra[16];
        ck_assert(i < 2 || response_header(&a[i].r, "Retry-After", ra, sizeof ra));
        response_cleanup(&a[i].r);
    }
}
END_TEST

/* Many failing addresses together use up the process's budget (ten times an address's): then
 * credentials not found valid lately wait, from any address, saying so; those found valid
 * lately are still looked up. */
START_TEST(failing_addresses_share_a_process_budget)
{
    harness_stop(&srv);
    harness_start(&srv, small_failure_budget);
    char known[SECRET_TOKEN_LEN], fresh[SECRET_TOKEN_LEN], id[40], ip[32], token[64];
    char reply[2048];
    create_token("service", known, id); /* GET /queues takes service */
    create_token("service", fresh, id);
    ck_assert_int_eq(status_from("127.0.0.99", known, reply, sizeof reply), 200); /* seen */
    int together = 0;
    for (int a = 0; a < 14; a++) { /* 70 tries against a process budget of 50 */
        snprintf(ip, sizeof ip, "127.0.0.%d", 10 + a);
        for (int i = 0; i < 5; i++) {
            snprintf(token, sizeof token, "rydes_unknown_%d_%d", a, i);
            int st = status_from(ip, token, reply, sizeof reply);
            if (st == 429) /* this address's (should two share a slot) or everyone's */
                together += strstr(reply, "are being tried") != NULL;
            else
                ck_assert_int_eq(st, 401);
        }
    }
    ck_assert_int_ge(together, 1);
    harness_sleep_ms(1100); /* past the token cache's second */
    ck_assert_int_eq(status_from("127.0.0.99", known, reply, sizeof reply), 200);
    ck_assert_int_eq(status_from("127.0.0.98", fresh, reply, sizeof reply), 429);
    ck_assert_msg(strstr(reply, "Retry-After"), "%s", reply);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, role_matrix_on_admin_routes);
    tcase_add_test(tc, malformed_authorization_headers_are_401);
    tcase_add_test(tc, tokens_are_stored_hashed_and_shown_once);
    tcase_add_test(tc, deleting_a_token_revokes_it);
    tcase_add_test(tc, list_paginates_through_every_token);
    tcase_add_test(tc, list_refuses_bad_paging);
    tcase_add_test(tc, create_validates_role_and_name);
    tcase_add_test(tc, admin_token_is_ensured_once);
    tcase_add_test(tc, rotating_the_admin_token_revokes_the_old_one);
    tcase_add_test(tc, an_admin_token_that_is_another_tokens_secret_is_refused);
    tcase_add_test(tc, an_admin_token_that_cannot_log_in_is_refused_with_the_settings);
    tcase_add_test(tc, app_tokens_are_rate_limited);
    tcase_add_test(tc, an_app_tokens_clients_are_limited_apart);
    tcase_add_test(tc, clients_behind_a_trusted_proxy_are_limited_apart);
    tcase_add_test(tc, an_app_tokens_total_bounds_many_addresses);
    tcase_add_test(tc, unknown_tokens_are_looked_up_only_so_often);
    tcase_add_test(tc, lookups_that_cannot_finish_are_charged);
    tcase_add_test(tc, a_locked_token_table_is_503_not_a_stall);
    tcase_add_test(tc, a_waiting_lookup_holds_no_http_thread);
    tcase_add_test(tc, a_body_is_read_after_its_token_was_looked_up_elsewhere);
    tcase_add_test(tc, a_burst_of_a_tokens_first_requests_is_not_refused);
    tcase_add_test(tc, a_lookup_the_data_plane_cannot_take_is_503);
    tcase_add_test(tc, failing_addresses_share_a_process_budget);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
