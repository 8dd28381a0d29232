/* Integration: request-size limits. The body cap is enforced from Content-Length before the
 * body is read and while a chunked body is read; a JSON body that would take too much memory
 * parsed is refused, and so is one while the bodies of requests in progress hold
 * RYDES_PARSED_BODY_MEMORY; oversized headers are refused; none of it stops the server from
 * serving the next client. */
#include "harness.h"

#include "rydes/clock.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CAP 2048

static struct harness_server srv;

static void small_cap(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "max-body-bytes", "2048", &err));
}

static void setup(void)
{
    harness_start(&srv, small_cap);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* A JSON object of exactly len bytes: {"role":"app","pad":"xxxx..."}. */
static char *json_of_size(size_t len)
{
    static const char head[] = "{\"role\":\"app\",\"pad\":\"";
    char *s = malloc(len + 1);
    memcpy(s, head, sizeof head - 1);
    memset(s + sizeof head - 1, 'x', len - (sizeof head - 1) - 2);
    memcpy(s + len - 2, "\"}", 3);
    return s;
}

START_TEST(body_at_the_cap_is_read)
{
    char *body = json_of_size(CAP);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    assert_problem(&r, 400); /* read and validated: "pad" is not a field */
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(r.json, "errors"), 0), "field")),
                     "pad");
    response_cleanup(&r);
    free(body);
}
END_TEST

/* A body sent to a route that takes none (a purge) is refused before it is read, saying so,
 * also when it is small; none is fine. */
START_TEST(a_body_on_a_route_without_one_says_so)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/nobody", NULL, &r);
    ck_assert(r.status == 201 || r.status == 200);
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/nobody:purge", "{}", &r);
    assert_problem(&r, 413);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "detail")),
                     "this route takes no request body: send none");
    response_cleanup(&r);
    harness_request(&srv, "POST", "/queues/nobody:purge", HARNESS_ADMIN_TOKEN, "{}", NULL,
                    "Transfer-Encoding: chunked", &r);
    assert_problem(&r, 413);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "detail")),
                     "this route takes no request body: send none");
    response_cleanup(&r);
    harness_admin(&srv, "POST", "/queues/nobody:purge", NULL, &r);
    ck_assert_int_eq(r.status, 204);
    response_cleanup(&r);
}
END_TEST

START_TEST(content_length_over_the_cap_is_413)
{
    char *body = json_of_size(CAP + 1);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    assert_problem(&r, 413);
    response_cleanup(&r);
    free(body);
}
END_TEST

START_TEST(chunked_body_over_the_cap_is_413)
{
    char *body = json_of_size(4 * CAP);
    struct response r;
    harness_request(&srv, "POST", "/tokens", HARNESS_ADMIN_TOKEN, body, NULL,
                    "Transfer-Encoding: chunked", &r);
    assert_problem(&r, 413);
    response_cleanup(&r);
    free(body);
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

struct endless {
    size_t sent;
};

static size_t endless_read(char *out, size_t size, size_t n, void *userdata)
{
    struct endless *e = userdata;
    if (e->sent > (size_t)64 << 20)
        return 0; /* a safety net for the test itself: 64 MiB */
    memset(out, 'x', size * n);
    e->sent += size * n;
    return size * n;
}

/* A transfer the server ended: it closed the connection on the client (not a timeout, not a
 * failure of the client's own). */
static bool refused(CURLcode rc)
{
    return rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING;
}

START_TEST(endless_chunked_body_is_cut_off)
{
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/tokens", srv.base);
    struct curl_slist *hs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Authorization: Bearer " HARNESS_ADMIN_TOKEN);
    struct endless e = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, endless_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &e);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    int64_t t0 = clock_mono_us();
    CURLcode rc = curl_easy_perform(c);
    int64_t took = clock_mono_us() - t0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    /* Either the server closed on us or it answered 413, at once; it never read 64 MiB (a
     * server that stopped reading without a word would end in curl's timeout) */
    ck_assert_msg(refused(rc) || status == 413, "rc=%d status=%ld", rc, status);
    ck_assert_msg(took < 10000000, "cut off after %.1f s", took / 1e6);
    ck_assert_uint_lt(e.sent, (size_t)64 << 20);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

START_TEST(oversized_headers_are_refused)
{
    size_t n = 100 * 1024;
    char *h = malloc(n + 32);
    strcpy(h, "X-Padding: ");
    memset(h + strlen(h), 'p', n);
    h[n + 11] = '\0';
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", srv.base);
    struct curl_slist *hs = curl_slist_append(NULL, h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    int64_t t0 = clock_mono_us();
    CURLcode rc = curl_easy_perform(c);
    int64_t took = clock_mono_us() - t0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    ck_assert_msg(refused(rc) || status == 431 || status == 413, "rc=%d status=%ld", rc, status);
    ck_assert_msg(took < 10000000, "refused after %.1f s", took / 1e6);
    fclose(devnull);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    free(h);
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

static void default_setup(void)
{
    harness_start(&srv, NULL);
}

/* {"body":[unit,unit,...]} of about len bytes; free the result. */
static char *message_of(const char *unit, size_t len)
{
    size_t u = strlen(unit), n = 0;
    char *text = malloc(len + u + 16);
    n += (size_t)sprintf(text, "{\"body\":[%s", unit);
    while (n + u + 3 < len) {
        text[n++] = ',';
        memcpy(text + n, unit, u);
        n += u;
    }
    memcpy(text + n, "]}", 3);
    return text;
}

/* A body within the byte cap that would take too much memory parsed (a megabyte of empty
 * objects: some 75 times its size) is refused with 413, on the HTTP thread's routes and on the
 * handler threads' alike; a megabyte of numbers is a body like any other. */
START_TEST(a_body_too_large_once_parsed_is_413)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/parsed", NULL, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    char *body = message_of("{}", 1000000);
    harness_admin(&srv, "POST", "/queues/parsed/messages", body, &r);
    assert_problem(&r, 413);
    ck_assert_msg(strstr(json_string_value(json_object_get(r.json, "detail")), "too many values"),
                  "%s", buf_str(&r.body));
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/parsed2", body, &r); /* a handler thread's route */
    assert_problem(&r, 413);
    response_cleanup(&r);
    free(body);
    body = message_of("1", 250000); /* as large as a message may be: numbers parse */
    harness_admin(&srv, "POST", "/queues/parsed/messages", body, &r);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, buf_str(&r.body));
    response_cleanup(&r);
    free(body);
    harness_admin(&srv, "GET", "/queues/parsed2", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    response_cleanup(&r);
}
END_TEST

static void parsed_memory_8mib(struct config *cfg)
{
    struct config_error err;
    ck_assert(config_set_flag(cfg, "parsed-body-memory", "8388608", &err));
}

static void held_setup(void)
{
    harness_start(&srv, parsed_memory_8mib);
}

/* The gauge rydes_http_parsed_body_bytes. */
static double parsed_bytes(void)
{
    struct response r;
    harness_admin(&srv, "GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    const char *line = strstr(buf_str(&r.body), "\nrydes_http_parsed_body_bytes ");
    ck_assert_ptr_nonnull(line);
    double v = atof(line + strlen("\nrydes_http_parsed_body_bytes "));
    response_cleanup(&r);
    return v;
}

/* Waits up to 10 s for the gauge to pass (above) or fall to (!above) at. */
static double wait_parsed_bytes(bool above, double at)
{
    double v = parsed_bytes();
    for (double until = harness_now_s() + 10; (above ? v <= at : v > at) && harness_now_s() < until;
         v = parsed_bytes())
        harness_sleep_ms(50);
    return v;
}

struct held_send {
    const char *body;
    struct response r;
};

static void *held_send_main(void *arg)
{
    struct held_send *h = arg;
    harness_admin(&srv, "POST", "/queues/held/messages", h->body, &h->r);
    return NULL;
}

/* Requests waiting with their bodies parsed (here a send whose insert a trigger holds back)
 * hold memory a body's bytes only hint at: past RYDES_PARSED_BODY_MEMORY another
 * large body is 503 while small ones still pass, and the memory comes back with the request. */
START_TEST(parsed_bodies_held_at_once_are_bounded)
{
    struct response r;
    harness_admin(&srv, "PUT", "/queues/held", NULL, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    char *body = message_of("1", 200000); /* some 6 MB parsed, 6.4 MB judged by its size */
    PGconn *hold = harness_hold_inserts_when(harness_db_url(), "messages", "NEW.body LIKE '[1,%'");
    static struct held_send h; /* the thread outlives a failed check's jump out of here */
    h = (struct held_send){.body = body};
    pthread_t t;
    pthread_create(&t, NULL, held_send_main, &h);
    harness_hold_wait(hold);
    double held = wait_parsed_bytes(true, 2e6);
    harness_admin(&srv, "POST", "/queues/held/messages", body, &r);
    long refused = r.status;
    char retry[32] = "";
    response_header(&r, "Retry-After", retry, sizeof retry);
    response_cleanup(&r);
    harness_admin(&srv, "PUT", "/queues/small", "{\"delay_seconds\": 0}", &r);
    long small = r.status;
    response_cleanup(&r);
    harness_hold_release(hold, "messages");
    pthread_join(t, NULL);
    ck_assert_msg(held > 2e6, "held %g", held);
    ck_assert_int_eq(refused, 503);
    ck_assert_str_ne(retry, "");
    ck_assert_int_eq(small, 201);
    ck_assert_msg(h.r.status == 201, "%ld %s", h.r.status, buf_str(&h.r.body));
    response_cleanup(&h.r);
    ck_assert_double_eq(wait_parsed_bytes(false, 0), 0);
    harness_admin(&srv, "POST", "/queues/held/messages", body, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
    free(body);
    /* with none held, a body that would pass the limit alone is parsed all the same (here to
     * be refused for the queue's max_message_bytes): else it would be 503 for ever */
    body = message_of("1", 300000);
    ck_assert_double_eq(wait_parsed_bytes(false, 0), 0); /* (the send's, freed after its reply) */
    harness_admin(&srv, "POST", "/queues/held/messages", body, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    free(body);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, body_at_the_cap_is_read);
    tcase_add_test(tc, content_length_over_the_cap_is_413);
    tcase_add_test(tc, a_body_on_a_route_without_one_says_so);
    tcase_add_test(tc, chunked_body_over_the_cap_is_413);
    tcase_add_test(tc, endless_chunked_body_is_cut_off);
    tcase_add_test(tc, oversized_headers_are_refused);
    suite_add_tcase(s, tc);
    TCase *parsed = tcase_create("parsed");
    tcase_add_checked_fixture(parsed, default_setup, teardown);
    tcase_add_test(parsed, a_body_too_large_once_parsed_is_413);
    suite_add_tcase(s, parsed);
    TCase *held = tcase_create("held");
    tcase_add_checked_fixture(held, held_setup, teardown);
    tcase_add_test(held, parsed_bodies_held_at_once_are_bounded);
    suite_add_tcase(s, held);
    return harness_run(s);
}
