/* Integration: HTTPS through libmicrohttpd's GnuTLS support. A throwaway self-signed
 * certificate (openssl, for 127.0.0.1) is made per run; the gateway serves it, a client that
 * trusts it gets answers over TLS, plain HTTP to the same port gets none, and a certificate
 * without its key (or files that cannot be read) stop start-up with a message. */
#include "harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], cert[128], key[128];

static void make_certificate(void)
{
    snprintf(dir, sizeof dir, "/tmp/rydes-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1",
             key, cert);
    ck_assert_msg(system(cmd) == 0, "openssl could not make a certificate");
}

static void remove_certificate(void)
{
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static void with_tls(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "tls-cert", cert, &err));
    ck_assert(config_set_flag(cfg, "tls-key", key, &err));
}

static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* GETs url; the status, or 0 when the transfer failed (*rc says why). */
static long get(const char *url, const char *ca, CURLcode *rc)
{
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    if (ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    *rc = curl_easy_perform(h);
    long status = 0;
    if (*rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

START_TEST(serves_https_with_the_configured_certificate)
{
    make_certificate();
    struct harness_server srv;
    harness_start(&srv, with_tls);
    int port = http_server_port(srv.app.http);
    char url[128];
    CURLcode rc;
    snprintf(url, sizeof url, "https://127.0.0.1:%d/healthz", port);
    ck_assert_int_eq(get(url, cert, &rc), 200);
    /* the certificate is checked: a client that does not trust it is refused */
    ck_assert_int_eq(get(url, NULL, &rc), 0);
    ck_assert_int_ne(rc, CURLE_OK);
    /* plain HTTP to the TLS port gets no HTTP answer */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    long plain = get(url, NULL, &rc);
    ck_assert_msg(plain == 0 || plain >= 400, "plain HTTP answered %ld", plain);
    harness_stop(&srv);
    remove_certificate();
}
END_TEST

static void cert_without_key(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "tls-cert", cert, &err));
}

static void unreadable_files(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "tls-cert", "/nonexistent/cert.pem", &err));
    ck_assert(config_set_flag(cfg, "tls-key", "/nonexistent/key.pem", &err));
}

/* Unreadable files and a new admin token: the token must not be stored (start-up stops
 * before anything is changed). */
static void unreadable_files_and_a_token(struct config *cfg)
{
    struct config_error err;
    unreadable_files(cfg);
    ck_assert(config_set_flag(cfg, "admin-token", "rydes_tls_test_admin_token_0123", &err));
}

/* app_start with the harness settings adjusted by tweak must fail with a message naming want. */
static void refused(void (*tweak)(struct config *cfg), const char *want)
{
    struct config cfg;
    config_init(&cfg);
    struct config_error err;
    ck_assert(config_set_flag(&cfg, "database-url", harness_db_url(), &err));
    ck_assert(config_set_flag(&cfg, "port", "0", &err));
    ck_assert(config_set_flag(&cfg, "workers", "none", &err));
    tweak(&cfg);
    struct app app;
    char msg[512] = "";
    ck_assert(!app_start(&app, &cfg, msg, sizeof msg));
    ck_assert_msg(strstr(msg, want) != NULL, "%s", msg);
    config_cleanup(&cfg);
}

START_TEST(bad_tls_settings_stop_start_up)
{
    make_certificate();
    refused(cert_without_key, "RYDES_TLS_CERT and RYDES_TLS_KEY go together");
    refused(unreadable_files, "cannot read /nonexistent/cert.pem");
    /* before migrations, tokens, workers: the tokens are as they were */
    char *before = harness_sqlf_text("SELECT string_agg(encode(secret_hash, 'hex'), ',' ORDER BY "
                                     "secret_hash) FROM tokens");
    refused(unreadable_files_and_a_token, "cannot read /nonexistent/cert.pem");
    char *after = harness_sqlf_text("SELECT string_agg(encode(secret_hash, 'hex'), ',' ORDER BY "
                                    "secret_hash) FROM tokens");
    ck_assert_str_eq(after ? after : "", before ? before : "");
    free(before);
    free(after);
    remove_certificate();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_add_test(tc, serves_https_with_the_configured_certificate);
    tcase_add_test(tc, bad_tls_settings_stop_start_up);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
