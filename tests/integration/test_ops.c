/* Integration: the operations endpoints and the HTTP error shapes every route shares (404, 405
 * with Allow, 400 with line/column, 415, X-Request-Id), against the real server and database. */
#include "harness.h"

#include "rydes/api.h"
#include "rydes/ids.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
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

START_TEST(healthz_is_ok_with_request_id)
{
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "ok");
    char rid[160];
    ck_assert(response_header(&r, "X-Request-Id", rid, sizeof rid));
    ck_assert(ids_is_uuid(rid));
    response_cleanup(&r);
}
END_TEST

START_TEST(request_id_is_echoed_only_when_sane)
{
    struct response r;
    char rid[200];
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, "X-Request-Id: trace-42.a:b", &r);
    ck_assert(response_header(&r, "X-Request-Id", rid, sizeof rid));
    ck_assert_str_eq(rid, "trace-42.a:b");
    response_cleanup(&r);
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, "X-Request-Id: <script>", &r);
    ck_assert(response_header(&r, "X-Request-Id", rid, sizeof rid));
    ck_assert(ids_is_uuid(rid));
    response_cleanup(&r);
}
END_TEST

START_TEST(readyz_reports_migrations)
{
    struct response r;
    harness_request(&srv, "GET", "/readyz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *m = json_object_get(r.json, "migrations");
    ck_assert_int_gt(json_integer_value(json_object_get(m, "expected")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "applied")),
                     json_integer_value(json_object_get(m, "expected")));
    response_cleanup(&r);
}
END_TEST

/* The value of the sample that starts with series (name and labels) in GET /metrics; 0 when
 * there is none. */
static long long metric_value(const char *series)
{
    struct response r;
    harness_request(&srv, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    const char *at = strstr(buf_str(&r.body), series);
    long long v = at ? atoll(at + strlen(series) + 1) : 0;
    response_cleanup(&r);
    return v;
}

#define UNMATCHED "rydes_http_requests_total{route=\"unmatched\",method=\"any\",status=\"404\"}"

START_TEST(metrics_count_requests_by_route_and_status)
{
    struct response r;
    for (int i = 0; i < 3; i++) {
        harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
        response_cleanup(&r);
    }
    /* counted from just before: another process's client that meets this server on a port it
     * knew for another (push deliveries, payment calls to a server that is gone) asks for an
     * unknown path too */
    long long unmatched = metric_value(UNMATCHED);
    harness_request(&srv, "GET", "/nowhere", NULL, NULL, NULL, NULL, &r);
    response_cleanup(&r);
    ck_assert_int_eq(metric_value(UNMATCHED), unmatched + 1);
    harness_request(&srv, "GET", "/metrics", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char ct[128];
    ck_assert(response_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert(strncmp(ct, "text/plain; version=0.0.4", 25) == 0);
    const char *text = buf_str(&r.body);
    ck_assert_ptr_nonnull(strstr(
        text, "rydes_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "rydes_http_request_duration_seconds_bucket{route=\""
                                       "/healthz\",method=\"GET\",status=\"200\",le=\"+Inf\"} 3"));
    ck_assert_ptr_nonnull(strstr(text, "rydes_db_pool_size 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "rydes_db_pool_waiting 0\n"));
    response_cleanup(&r);
}
END_TEST

/* Every route of the table is documented, with its method, in the served OpenAPI document. */
START_TEST(openapi_documents_every_route)
{
    struct response r;
    harness_request(&srv, "GET", "/openapi.json", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(r.json);
    ck_assert(strncmp(json_string_value(json_object_get(r.json, "openapi")), "3.1", 3) == 0);
    json_t *paths = json_object_get(r.json, "paths");
    for (size_t i = 0; i < api_nroutes; i++) {
        char method[16];
        size_t n = strlen(api_routes[i].method);
        for (size_t j = 0; j <= n; j++)
            method[j] = (char)(api_routes[i].method[j] | (j < n ? 0x20 : 0));
        json_t *item = json_object_get(paths, api_routes[i].pattern);
        ck_assert_msg(item != NULL, "%s is not in openapi.yaml", api_routes[i].pattern);
        ck_assert_msg(json_object_get(item, method) != NULL, "%s %s is not in openapi.yaml",
                      api_routes[i].method, api_routes[i].pattern);
    }
    response_cleanup(&r);
}
END_TEST

/* The other direction: every operation of the document's paths is a route of the router
 * (HEAD is served by GET). Webhooks are requests Rydes sends, not routes. */
START_TEST(openapi_paths_are_all_routed)
{
    static const char *const methods[] = {"get",   "put",  "post",    "delete",
                                          "patch", "head", "options", "trace"};
    struct response r;
    harness_request(&srv, "GET", "/openapi.json", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *paths = json_object_get(r.json, "paths");
    ck_assert(json_is_object(paths));
    ck_assert_int_gt(json_object_size(paths), 0);
    const char *pattern;
    json_t *item;
    size_t operations = 0;
    json_object_foreach(paths, pattern, item)
    {
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            if (!json_object_get(item, methods[m]))
                continue;
            char upper[16] = "";
            for (size_t j = 0; methods[m][j] && j < sizeof upper - 1; j++)
                upper[j] = (char)toupper((unsigned char)methods[m][j]);
            const char *want = strcmp(upper, "HEAD") == 0 ? "GET" : upper;
            bool routed = false;
            for (size_t i = 0; i < api_nroutes && !routed; i++)
                routed = strcmp(api_routes[i].pattern, pattern) == 0 &&
                         strcmp(api_routes[i].method, want) == 0;
            ck_assert_msg(routed,
                          "openapi.yaml documents %s %s, which is not routed (src/api/routes.c)",
                          upper, pattern);
            operations++;
        }
    }
    ck_assert_int_gt(operations, 0);
    response_cleanup(&r);
}
END_TEST

START_TEST(unknown_path_is_404_problem)
{
    struct response r;
    harness_request(&srv, "GET", "/no/such/thing", NULL, NULL, NULL, NULL, &r);
    assert_problem(&r, 404);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "instance")), "/no/such/thing");
    response_cleanup(&r);
    harness_request(&srv, "GET", "/tokens/", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    assert_problem(&r, 404);
    response_cleanup(&r);
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    struct response r;
    char allow[64];
    harness_request(&srv, "PUT", "/healthz", NULL, NULL, NULL, NULL, &r);
    assert_problem(&r, 405);
    ck_assert(response_header(&r, "Allow", allow, sizeof allow));
    ck_assert_str_eq(allow, "GET, HEAD");
    response_cleanup(&r);
    harness_request(&srv, "PATCH", "/tokens", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    assert_problem(&r, 405);
    ck_assert(response_header(&r, "Allow", allow, sizeof allow));
    ck_assert_str_eq(allow, "POST, GET, HEAD");
    response_cleanup(&r);
}
END_TEST

/* HEAD answers as GET would, headers only: the same status and Content-Length, and no byte
 * after them (read off the wire: a client told HEAD reads no body whatever comes). */
START_TEST(head_is_served_by_get)
{
    struct response r;
    harness_request(&srv, "GET", "/healthz", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    size_t get_len = r.body.len;
    ck_assert_uint_gt(get_len, 0);
    response_cleanup(&r);
    int fd = harness_connect(&srv, NULL);
    static const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(write(fd, head, sizeof head - 1), (ssize_t)(sizeof head - 1));
    char in[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof in - 1 && (n = read(fd, in + got, sizeof in - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    in[got] = '\0';
    ck_assert_msg(strncmp(in, "HTTP/1.1 200", 12) == 0, "%s", in);
    const char *end = strstr(in, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    ck_assert_msg(end + 4 == in + got, "%zu bytes after the headers", (size_t)(in + got - end - 4));
    const char *cl = strcasestr(in, "\r\nContent-Length:");
    ck_assert_ptr_nonnull(cl);
    ck_assert_int_eq(atol(cl + strlen("\r\nContent-Length:")), (long)get_len);
}
END_TEST

START_TEST(malformed_json_is_400_with_line_and_column)
{
    struct response r;
    harness_admin(&srv, "POST", "/tokens", "{\n  \"role\": }", &r);
    assert_problem(&r, 400);
    const char *detail = json_string_value(json_object_get(r.json, "detail"));
    ck_assert_ptr_nonnull(strstr(detail, "line 2, column"));
    response_cleanup(&r);
}
END_TEST

START_TEST(duplicate_keys_are_refused)
{
    struct response r;
    harness_admin(&srv, "POST", "/tokens", "{\"role\":\"app\",\"role\":\"admin\"}", &r);
    assert_problem(&r, 400);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(r.json, "detail")), "duplicate"));
    response_cleanup(&r);
}
END_TEST

START_TEST(non_json_body_is_415)
{
    struct response r;
    harness_request(&srv, "POST", "/tokens", HARNESS_ADMIN_TOKEN, "role=app",
                    "application/x-www-form-urlencoded", NULL, &r);
    assert_problem(&r, 415);
    response_cleanup(&r);
    harness_request(&srv, "POST", "/tokens", HARNESS_ADMIN_TOKEN, "{\"role\":\"app\"}",
                    "application/json; charset=utf-8", NULL, &r);
    ck_assert_int_eq(r.status, 201);
    response_cleanup(&r);
}
END_TEST

START_TEST(body_must_be_an_object)
{
    struct response r;
    harness_admin(&srv, "POST", "/tokens", "[1,2]", &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
    harness_request(&srv, "POST", "/tokens", HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
    assert_problem(&r, 400);
    response_cleanup(&r);
}
END_TEST

START_TEST(validation_errors_name_every_field)
{
    struct response r;
    harness_admin(&srv, "POST", "/tokens", "{\"role\":\"root\",\"name\":7,\"colour\":1}", &r);
    assert_problem(&r, 400);
    json_t *errors = json_object_get(r.json, "errors");
    ck_assert_int_eq(json_array_size(errors), 3);
    const char *want[] = {"colour", "role", "name"};
    for (int i = 0; i < 3; i++) {
        bool seen = false;
        for (size_t j = 0; j < json_array_size(errors); j++)
            seen |= strcmp(json_string_value(json_object_get(json_array_get(errors, j), "field")),
                           want[i]) == 0;
        ck_assert_msg(seen, "no error for %s", want[i]);
    }
    response_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, healthz_is_ok_with_request_id);
    tcase_add_test(tc, request_id_is_echoed_only_when_sane);
    tcase_add_test(tc, readyz_reports_migrations);
    tcase_add_test(tc, metrics_count_requests_by_route_and_status);
    tcase_add_test(tc, openapi_documents_every_route);
    tcase_add_test(tc, openapi_paths_are_all_routed);
    tcase_add_test(tc, unknown_path_is_404_problem);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, head_is_served_by_get);
    tcase_add_test(tc, malformed_json_is_400_with_line_and_column);
    tcase_add_test(tc, duplicate_keys_are_refused);
    tcase_add_test(tc, non_json_body_is_415);
    tcase_add_test(tc, body_must_be_an_object);
    tcase_add_test(tc, validation_errors_name_every_field);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
