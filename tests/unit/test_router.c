/* Unit tests for route matching (src/http/router.c) against a route table of our own with dummy
 * handlers: one table of {method, path} cases checks the result (found with route index and
 * decoded parameter values, not found, or method not allowed with the exact Allow list),
 * covering HEAD served by GET routes, trailing and doubled slashes, empty and relative paths,
 * literal suffixes after a parameter ("{name}:purge" versus "{name}"), percent-decoding of
 * parameters (malformed escapes and %00 refused, %2F kept inside one segment) and extra
 * segments. Further tests cover route_param, route_match_cleanup and router_percent_decode. */
#include "rydes/router.h"

#include "unit.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static enum handler_result dummy_handler(struct http_request *req)
{
    (void)req;
    return HANDLER_DONE;
}

static const struct route routes[] = {
    {"GET", "/healthz", ROLE_NONE, dummy_handler, false, ROUTE_HTTP_THREAD},                 /* 0 */
    {"POST", "/tokens", ROLE_ADMIN, dummy_handler, true, ROUTE_HTTP_THREAD},                 /* 1 */
    {"GET", "/tokens", ROLE_ADMIN, dummy_handler, false, ROUTE_HTTP_THREAD},                 /* 2 */
    {"GET", "/tokens/{id}", ROLE_ADMIN, dummy_handler, false, ROUTE_HTTP_THREAD},            /* 3 */
    {"DELETE", "/tokens/{id}", ROLE_ADMIN, dummy_handler, false, ROUTE_HTTP_THREAD},         /* 4 */
    {"PUT", "/queues/{name}", ROLE_ADMIN, dummy_handler, true, ROUTE_HTTP_THREAD},           /* 5 */
    {"POST", "/queues/{name}/messages", ROLE_ADMIN, dummy_handler, true, ROUTE_HTTP_THREAD}, /* 6 */
    {"POST", "/queues/{name}/messages:batch", ROLE_ADMIN, dummy_handler, true,
     ROUTE_HTTP_THREAD},                                                                   /* 7 */
    {"POST", "/queues/{name}:purge", ROLE_ADMIN, dummy_handler, false, ROUTE_HTTP_THREAD}, /* 8 */
    {"DELETE", "/queues/{name}/messages/{receipt}", ROLE_ADMIN, dummy_handler, false,
     ROUTE_HTTP_THREAD}, /* 9 */
};

#define NROUTES (sizeof routes / sizeof routes[0])

struct route_case {
    const char *method;
    const char *path;
    enum router_result result;
    int index;         /* ROUTER_FOUND */
    const char *allow; /* ROUTER_METHOD_NOT_ALLOWED */
    const char *p1, *v1, *p2, *v2;
};

/* Each expands to the fields of one route_case (the table adds the braces). */
#define FOUND(m, path, i)                m, path, ROUTER_FOUND, i, NULL, NULL, NULL, NULL, NULL
#define FOUND1(m, path, i, a, va)        m, path, ROUTER_FOUND, i, NULL, a, va, NULL, NULL
#define FOUND2(m, path, i, a, va, b, vb) m, path, ROUTER_FOUND, i, NULL, a, va, b, vb
#define NOT_FOUND(m, path)               m, path, ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL
/* the route matched, but parameter name does not decode */
#define BAD(m, path, name) m, path, ROUTER_BAD_PARAM, -1, NULL, name, NULL, NULL, NULL
#define NOT_ALLOWED(m, path, allow) \
    m, path, ROUTER_METHOD_NOT_ALLOWED, -1, allow, NULL, NULL, NULL, NULL

static const struct route_case cases[] = {
    {FOUND("GET", "/healthz", 0)},
    {FOUND("HEAD", "/healthz", 0)},
    {NOT_ALLOWED("POST", "/healthz", "GET, HEAD")},
    {FOUND("POST", "/tokens", 1)},
    {FOUND("GET", "/tokens", 2)},
    {FOUND("HEAD", "/tokens", 2)},
    {NOT_ALLOWED("PUT", "/tokens", "POST, GET, HEAD")},
    {NOT_ALLOWED("DELETE", "/tokens", "POST, GET, HEAD")},
    {NOT_ALLOWED("get", "/tokens", "POST, GET, HEAD")}, /* methods are case-sensitive */
    {FOUND1("GET", "/tokens/abc", 3, "id", "abc")},
    {FOUND1("HEAD", "/tokens/abc", 3, "id", "abc")},
    {FOUND1("DELETE", "/tokens/abc", 4, "id", "abc")},
    {NOT_ALLOWED("PUT", "/tokens/abc", "GET, HEAD, DELETE")},
    {NOT_ALLOWED("POST", "/tokens/abc", "GET, HEAD, DELETE")},
    {FOUND1("PUT", "/queues/q1", 5, "name", "q1")},
    {NOT_ALLOWED("GET", "/queues/q1", "PUT")},
    {NOT_ALLOWED("HEAD", "/queues/q1", "PUT")},
    {FOUND1("POST", "/queues/q1/messages", 6, "name", "q1")},
    {FOUND1("POST", "/queues/q1/messages:batch", 7, "name", "q1")},
    {FOUND1("POST", "/queues/q1:purge", 8, "name", "q1")},
    {NOT_ALLOWED("PUT", "/queues/q1:purge", "POST")},
    {NOT_ALLOWED("DELETE", "/queues/q1/messages", "POST")},
    {FOUND2("DELETE", "/queues/q1/messages/r-1", 9, "name", "q1", "receipt", "r-1")},
    {NOT_ALLOWED("GET", "/queues/q1/messages/r-1", "DELETE")},
    /* a parameter never contains ':' and never is empty */
    {NOT_FOUND("PUT", "/queues/q1:other")},
    {NOT_FOUND("POST", "/queues/:purge")},
    {NOT_FOUND("POST", "/queues/q1:purge:purge")},
    {NOT_FOUND("POST", "/queues/q1/messages:other")},
    {NOT_FOUND("POST", "/queues/q1/messages:batchx")},
    {NOT_FOUND("PUT", "/queues/")},
    {NOT_FOUND("PUT", "/queues")},
    /* slashes and malformed paths */
    {NOT_FOUND("GET", "/tokens/")},
    {NOT_FOUND("GET", "/healthz/")},
    {NOT_FOUND("GET", "//tokens")},
    {NOT_FOUND("GET", "/tokens//abc")},
    {NOT_FOUND("GET", "")},
    {NOT_FOUND("GET", "tokens")},
    {NOT_FOUND("GET", "/")},
    {NOT_FOUND("GET", "/Tokens")},
    {NOT_FOUND("GET", "/token")},
    {NOT_FOUND("GET", "/tokensx")},
    {NOT_FOUND("GET", "/nothing/here")},
    /* extra segments */
    {NOT_FOUND("GET", "/tokens/abc/def")},
    {NOT_FOUND("GET", "/healthz/x")},
    {NOT_FOUND("PUT", "/queues/q1/x")},
    {NOT_FOUND("DELETE", "/queues/q1/messages/r/x")},
    {NOT_FOUND("DELETE", "/queues/q1/messages/r/")},
    /* percent-decoding of parameters */
    {FOUND1("GET", "/tokens/a%20b", 3, "id", "a b")},
    {FOUND1("GET", "/tokens/%41%62c", 3, "id", "Abc")},
    {FOUND1("GET", "/tokens/%c3%A9", 3, "id", "\xc3\xa9")},
    {FOUND1("GET", "/tokens/a%2Fb", 3, "id", "a/b")},
    {FOUND1("GET", "/tokens/%2f", 3, "id", "/")},
    {FOUND1("GET", "/tokens/100%25", 3, "id", "100%")},
    {FOUND2("DELETE", "/queues/a%2Fb/messages/c%2Fd", 9, "name", "a/b", "receipt", "c/d")},
    {BAD("GET", "/tokens/%4", "id")},
    {BAD("GET", "/tokens/ab%4", "id")},
    {BAD("GET", "/tokens/%", "id")},
    {BAD("GET", "/tokens/%zz", "id")},
    {BAD("GET", "/tokens/%4g", "id")},
    {BAD("GET", "/tokens/%g4", "id")},
    {BAD("GET", "/tokens/%00", "id")},
    {BAD("GET", "/tokens/a%00b", "id")},
    {BAD("DELETE", "/queues/q1/messages/%zz", "receipt")},
    {BAD("DELETE", "/queues/a%00/messages/%zz", "name")},       /* the first that fails */
    {NOT_ALLOWED("PATCH", "/tokens/%zz", "GET, HEAD, DELETE")}, /* no decoding without a route */
    /* literals are not decoded */
    {NOT_FOUND("GET", "/%74okens")},
};

#define NCASES (sizeof cases / sizeof cases[0])

static const char *result_name(enum router_result r)
{
    switch (r) {
    case ROUTER_FOUND:
        return "FOUND";
    case ROUTER_NOT_FOUND:
        return "NOT_FOUND";
    case ROUTER_METHOD_NOT_ALLOWED:
        return "METHOD_NOT_ALLOWED";
    case ROUTER_BAD_PARAM:
        return "BAD_PARAM";
    }
    return "?";
}

START_TEST(test_match_table)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct route_case *c = &cases[i];
        struct route_match m;
        char allow[128];
        memset(allow, 'Z', sizeof allow);
        enum router_result r =
            router_match(routes, NROUTES, c->method, c->path, &m, allow, sizeof allow);
        ck_assert_msg(r == c->result, "%s \"%s\": got %s, expected %s", c->method, c->path,
                      result_name(r), result_name(c->result));
        if (r == ROUTER_FOUND) {
            ck_assert_msg(m.index == c->index, "%s \"%s\": route %d, expected %d", c->method,
                          c->path, m.index, c->index);
            ck_assert_ptr_eq(m.route, &routes[c->index]);
            int expected_params = (c->p1 != NULL) + (c->p2 != NULL);
            ck_assert_msg(m.nparams == expected_params, "%s \"%s\": %d params", c->method, c->path,
                          m.nparams);
            if (c->p1) {
                const char *v = route_param(&m, c->p1);
                ck_assert_msg(v && strcmp(v, c->v1) == 0, "%s \"%s\": %s = \"%s\"", c->method,
                              c->path, c->p1, v ? v : "(null)");
            }
            if (c->p2) {
                const char *v = route_param(&m, c->p2);
                ck_assert_msg(v && strcmp(v, c->v2) == 0, "%s \"%s\": %s = \"%s\"", c->method,
                              c->path, c->p2, v ? v : "(null)");
            }
            route_match_cleanup(&m);
        } else {
            /* nothing to release, and no parameters left behind */
            ck_assert_int_eq(m.nparams, 0);
            ck_assert_ptr_null(m.route);
        }
        if (r == ROUTER_BAD_PARAM)
            ck_assert_msg(m.bad_name && m.bad_name_len == strlen(c->p1) &&
                              memcmp(m.bad_name, c->p1, m.bad_name_len) == 0,
                          "%s \"%s\": bad parameter %.*s, expected %s", c->method, c->path,
                          (int)m.bad_name_len, m.bad_name ? m.bad_name : "", c->p1);
        if (r == ROUTER_METHOD_NOT_ALLOWED)
            ck_assert_msg(strcmp(allow, c->allow) == 0, "%s \"%s\": Allow \"%s\", expected \"%s\"",
                          c->method, c->path, allow, c->allow);
    }
}
END_TEST

START_TEST(test_route_param_unknown)
{
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(
        router_match(routes, NROUTES, "DELETE", "/queues/q/messages/r", &m, allow, sizeof allow),
        ROUTER_FOUND);
    ck_assert_str_eq(route_param(&m, "name"), "q");
    ck_assert_str_eq(route_param(&m, "receipt"), "r");
    ck_assert_ptr_null(route_param(&m, "id"));
    ck_assert_ptr_null(route_param(&m, "nam"));
    ck_assert_ptr_null(route_param(&m, "names"));
    ck_assert_ptr_null(route_param(&m, ""));
    ck_assert_ptr_null(route_param(&m, "{name}"));
    route_match_cleanup(&m);
}
END_TEST

START_TEST(test_route_param_name_excludes_suffix)
{
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(
        router_match(routes, NROUTES, "POST", "/queues/q9:purge", &m, allow, sizeof allow),
        ROUTER_FOUND);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_uint_eq(m.params[0].name_len, 4);
    ck_assert_mem_eq(m.params[0].name, "name", 4);
    ck_assert_str_eq(route_param(&m, "name"), "q9");
    ck_assert_ptr_null(route_param(&m, "name}:purge"));
    route_match_cleanup(&m);
}
END_TEST

START_TEST(test_match_cleanup)
{
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(router_match(routes, NROUTES, "DELETE", "/queues/a%20b/messages/c", &m, allow,
                                  sizeof allow),
                     ROUTER_FOUND);
    ck_assert_int_eq(m.nparams, 2);
    route_match_cleanup(&m); /* frees both values (the leak checker would see them otherwise) */
    ck_assert_int_eq(m.nparams, 0);
    ck_assert_ptr_null(m.route);
    ck_assert_ptr_null(route_param(&m, "name"));
    /* cleanup is idempotent */
    route_match_cleanup(&m);
    ck_assert_int_eq(m.nparams, 0);
}
END_TEST

START_TEST(test_match_reuses_struct)
{
    /* a match struct is reset on every call, even one that held parameters */
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(router_match(routes, NROUTES, "GET", "/tokens/x", &m, allow, sizeof allow),
                     ROUTER_FOUND);
    route_match_cleanup(&m);
    ck_assert_int_eq(router_match(routes, NROUTES, "GET", "/healthz", &m, allow, sizeof allow),
                     ROUTER_FOUND);
    ck_assert_int_eq(m.nparams, 0);
    ck_assert_int_eq(m.index, 0);
    route_match_cleanup(&m);
}
END_TEST

START_TEST(test_allow_small_buffer)
{
    struct route_match m;
    char allow[6];
    memset(allow, 'Z', sizeof allow);
    ck_assert_int_eq(router_match(routes, NROUTES, "PUT", "/tokens", &m, allow, 5),
                     ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_uint_le(strlen(allow), 4);
    ck_assert_int_eq(allow[5], 'Z');
}
END_TEST

START_TEST(test_param_limit)
{
    /* ROUTER_MAX_PARAMS parameters are fine; a pattern with more never matches (and the values
     * decoded before the limit was hit are freed: the leak checker watches this) */
    static const struct route wide[] = {
        {"GET", "/{a}/{b}/{c}/{d}", ROLE_NONE, dummy_handler, false, ROUTE_HANDLER_THREAD},
        {"GET", "/x/{a}/{b}/{c}/{d}/{e}", ROLE_NONE, dummy_handler, false, ROUTE_HANDLER_THREAD},
    };
    struct route_match m;
    char allow[16];
    ck_assert_int_eq(ROUTER_MAX_PARAMS, 4);
    ck_assert_int_eq(router_match(wide, 2, "GET", "/1/2/3/4", &m, allow, sizeof allow),
                     ROUTER_FOUND);
    ck_assert_int_eq(m.nparams, 4);
    ck_assert_str_eq(route_param(&m, "a"), "1");
    ck_assert_str_eq(route_param(&m, "d"), "4");
    route_match_cleanup(&m);
    ck_assert_int_eq(router_match(wide, 2, "GET", "/x/1/2/3/4/5", &m, allow, sizeof allow),
                     ROUTER_NOT_FOUND);
    ck_assert_int_eq(m.nparams, 0);
}
END_TEST

START_TEST(test_allow_lists_each_method_once)
{
    /* two GET patterns match "/tokens/self": the Allow list names GET once */
    static const struct route overlap[] = {
        {"GET", "/tokens/self", ROLE_APP, dummy_handler, false, ROUTE_HANDLER_THREAD},
        {"GET", "/tokens/{id}", ROLE_ADMIN, dummy_handler, false, ROUTE_HANDLER_THREAD},
        {"DELETE", "/tokens/{id}", ROLE_ADMIN, dummy_handler, false, ROUTE_HANDLER_THREAD},
    };
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(router_match(overlap, 3, "PUT", "/tokens/self", &m, allow, sizeof allow),
                     ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_str_eq(allow, "GET, HEAD, DELETE");
    /* the first matching route wins */
    ck_assert_int_eq(router_match(overlap, 3, "GET", "/tokens/self", &m, allow, sizeof allow),
                     ROUTER_FOUND);
    ck_assert_int_eq(m.index, 0);
    ck_assert_int_eq(m.nparams, 0);
    route_match_cleanup(&m);
}
END_TEST

START_TEST(test_empty_table)
{
    struct route_match m;
    char allow[16];
    ck_assert_int_eq(router_match(routes, 0, "GET", "/healthz", &m, allow, sizeof allow),
                     ROUTER_NOT_FOUND);
    ck_assert_str_eq(allow, "");
}
END_TEST

struct decode_case {
    const char *in;
    const char *out; /* NULL: refused */
};

static const struct decode_case decode_cases[] = {
    {"", ""},        {"abc", "abc"}, {"a%20b", "a b"}, {"%41", "A"},           {"%7e%7E", "~~"},
    {"%2F", "/"},    {"%25", "%"},   {"%2525", "%25"}, {"%c3%a9", "\xc3\xa9"}, {"%ff", "\xff"},
    {"+", "+"}, /* '+' is not a space in a path */
    {"%01", "\x01"}, {"%", NULL},    {"%4", NULL},     {"a%4", NULL},          {"%zz", NULL},
    {"%4g", NULL},   {"%g4", NULL},  {"%-1", NULL},    {"%00", NULL},          {"a%00", NULL},
    {"ok%", NULL},
};

START_TEST(test_percent_decode_table)
{
    for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
        const struct decode_case *c = &decode_cases[i];
        char *out = router_percent_decode(c->in, strlen(c->in));
        if (c->out) {
            ck_assert_msg(out != NULL, "\"%s\" refused", c->in);
            ck_assert_msg(strcmp(out, c->out) == 0, "\"%s\" decoded to \"%s\"", c->in, out);
        } else {
            ck_assert_msg(out == NULL, "\"%s\" accepted as \"%s\"", c->in, out);
        }
        free(out);
    }
}
END_TEST

START_TEST(test_percent_decode_counts_length)
{
    /* only n bytes are read: an escape cut by n is malformed, the rest is ignored */
    char *out = router_percent_decode("abcdef", 3);
    ck_assert_str_eq(out, "abc");
    free(out);
    out = router_percent_decode("%41BC", 3);
    ck_assert_str_eq(out, "A");
    free(out);
    ck_assert_ptr_null(router_percent_decode("%41", 2));
    out = router_percent_decode("x", 0);
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");

    TCase *match = tcase_create("match");
    tcase_add_test(match, test_match_table);
    tcase_add_test(match, test_route_param_unknown);
    tcase_add_test(match, test_route_param_name_excludes_suffix);
    tcase_add_test(match, test_match_cleanup);
    tcase_add_test(match, test_match_reuses_struct);
    tcase_add_test(match, test_allow_small_buffer);
    tcase_add_test(match, test_param_limit);
    tcase_add_test(match, test_allow_lists_each_method_once);
    tcase_add_test(match, test_empty_table);
    suite_add_tcase(s, match);

    TCase *decode = tcase_create("decode");
    tcase_add_test(decode, test_percent_decode_table);
    tcase_add_test(decode, test_percent_decode_counts_length);
    suite_add_tcase(s, decode);

    return s;
}

int main(void)
{
    return unit_run(router_suite());
}
