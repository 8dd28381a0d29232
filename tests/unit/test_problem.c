/* Unit tests for RFC 9457 problem details (src/http/problem.c): problem_title's reason phrases
 * for known statuses and "Unknown" otherwise, and problem_build's object: type
 * "urn:rydes:problem:<slug>" or "about:blank" without a slug, title matching the status, status
 * as an integer, detail (empty string when NULL), and instance and request_id present exactly
 * when given (the instance percent-encoded where the path holds what a URI may not).
 * The reply functions need a live MHD connection and are covered by the integration tests. */
#include "rydes/problem.h"

#include "unit.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct title_case {
    int status;
    const char *title;
};

static const struct title_case title_cases[] = {
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {413, "Content Too Large"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {500, "Internal Server Error"},
    {503, "Service Unavailable"},
    {200, "Unknown"},
    {402, "Unknown"},
    {999, "Unknown"},
    {0, "Unknown"},
    {-404, "Unknown"},
};

START_TEST(test_title_table)
{
    for (size_t i = 0; i < sizeof title_cases / sizeof title_cases[0]; i++) {
        const char *t = problem_title(title_cases[i].status);
        ck_assert_ptr_nonnull(t);
        ck_assert_msg(strcmp(t, title_cases[i].title) == 0, "problem_title(%d) = \"%s\"",
                      title_cases[i].status, t);
    }
}
END_TEST

static const char *str_member(const json_t *p, const char *key)
{
    json_t *v = json_object_get(p, key);
    ck_assert_msg(v != NULL, "member %s missing", key);
    ck_assert_msg(json_is_string(v), "member %s is not a string", key);
    return json_string_value(v);
}

START_TEST(test_build_full)
{
    json_t *p = problem_build(404, "not-found", "no token with this id", "/tokens/42", "req-1");
    ck_assert_ptr_nonnull(p);
    ck_assert(json_is_object(p));
    ck_assert_str_eq(str_member(p, "type"), "urn:rydes:problem:not-found");
    ck_assert_str_eq(str_member(p, "title"), "Not Found");
    json_t *status = json_object_get(p, "status");
    ck_assert(json_is_integer(status));
    ck_assert_int_eq(json_integer_value(status), 404);
    ck_assert_str_eq(str_member(p, "detail"), "no token with this id");
    ck_assert_str_eq(str_member(p, "instance"), "/tokens/42");
    ck_assert_str_eq(str_member(p, "request_id"), "req-1");
    ck_assert_uint_eq(json_object_size(p), 6);
    json_decref(p);
}
END_TEST

START_TEST(test_build_minimal)
{
    json_t *p = problem_build(503, NULL, "database down", NULL, NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(str_member(p, "type"), "about:blank");
    ck_assert_str_eq(str_member(p, "title"), "Service Unavailable");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 503);
    ck_assert_str_eq(str_member(p, "detail"), "database down");
    ck_assert_ptr_null(json_object_get(p, "instance"));
    ck_assert_ptr_null(json_object_get(p, "request_id"));
    ck_assert_uint_eq(json_object_size(p), 4);
    json_decref(p);
}
END_TEST

START_TEST(test_build_null_detail)
{
    json_t *p = problem_build(500, "internal-error", NULL, "/x", NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(str_member(p, "detail"), "");
    ck_assert_str_eq(str_member(p, "instance"), "/x");
    ck_assert_ptr_null(json_object_get(p, "request_id"));
    json_decref(p);
}
END_TEST

START_TEST(test_build_only_request_id)
{
    json_t *p = problem_build(429, "too-many-requests", "slow down", NULL, "abc-123");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(json_object_get(p, "instance"));
    ck_assert_str_eq(str_member(p, "request_id"), "abc-123");
    ck_assert_str_eq(str_member(p, "title"), "Too Many Requests");
    json_decref(p);
}
END_TEST

struct type_case {
    const char *slug;
    const char *type;
};

static const struct type_case type_cases[] = {
    {"not-found", "urn:rydes:problem:not-found"},
    {"validation", "urn:rydes:problem:validation"},
    {"content-too-large", "urn:rydes:problem:content-too-large"},
    {NULL, "about:blank"},
};

START_TEST(test_build_type_table)
{
    for (size_t i = 0; i < sizeof type_cases / sizeof type_cases[0]; i++) {
        json_t *p = problem_build(400, type_cases[i].slug, "d", NULL, NULL);
        ck_assert_ptr_nonnull(p);
        ck_assert_str_eq(str_member(p, "type"), type_cases[i].type);
        json_decref(p);
    }
}
END_TEST

START_TEST(test_build_unknown_status)
{
    json_t *p = problem_build(999, NULL, "odd", NULL, NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(str_member(p, "title"), "Unknown");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 999);
    json_decref(p);
}
END_TEST

START_TEST(test_build_invalid_utf8_instance)
{
    /* the path may hold arbitrary bytes, and '%' that begin no escape: percent-encoded, so the
     * instance is a URI reference (and valid UTF-8) whatever the client sent */
    json_t *p = problem_build(404, "not-found", "no resource at this path", "/x\xff\xfe", "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(str_member(p, "instance"), "/x%FF%FE");
    json_decref(p);
    p = problem_build(400, "validation", "bad", "/queues/a%zz%4 b%2F%c3%A9\"<", "r");
    ck_assert_str_eq(str_member(p, "instance"), "/queues/a%25zz%254%20b%2F%c3%A9%22%3C");
    ck_assert_str_eq(str_member(p, "request_id"), "r");
    char *text = json_dumps(p, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    free(text);
    json_decref(p);
}
END_TEST

START_TEST(test_build_serialises)
{
    json_t *p = problem_build(413, "content-too-large", "too \"big\"", "/q?x=1", "id:1");
    char *text = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "{\"detail\":\"too \\\"big\\\"\",\"instance\":\"/q?x=1\","
                           "\"request_id\":\"id:1\",\"status\":413,\"title\":\"Content Too "
                           "Large\",\"type\":\"urn:rydes:problem:content-too-large\"}");
    free(text);
    json_decref(p);
}
END_TEST

static Suite *problem_suite(void)
{
    Suite *s = suite_create("problem");

    TCase *titles = tcase_create("titles");
    tcase_add_test(titles, test_title_table);
    suite_add_tcase(s, titles);

    TCase *build = tcase_create("build");
    tcase_add_test(build, test_build_full);
    tcase_add_test(build, test_build_minimal);
    tcase_add_test(build, test_build_null_detail);
    tcase_add_test(build, test_build_only_request_id);
    tcase_add_test(build, test_build_type_table);
    tcase_add_test(build, test_build_unknown_status);
    tcase_add_test(build, test_build_invalid_utf8_instance);
    tcase_add_test(build, test_build_serialises);
    suite_add_tcase(s, build);

    return s;
}

int main(void)
{
    return unit_run(problem_suite());
}
