/* Integration: the operator dashboard and the lists it reads. GET /ui and GET /ui/{file} answer
 * without a token, with the right Content-Type, a strict Content-Security-Policy, no-cache with
 * an ETag (a revalidation is a 304) and nothing loaded from another origin; unknown files are
 * 404 problems, other methods 405. The operators' lists GET /tasks, GET /rfqs and GET /fares
 * need an admin token (401 without, 403 for app and service), list newest first, paginate by
 * limit and after exactly like the other lists (every item once, in order, across pages), show
 * what the single GETs show, and answer 400 naming each bad query parameter. GET /rides?order=
 * newest lists a customer's rides newest first. (The browser test in tests/ui drives the page
 * itself.) */
#include "harness.h"

#include "rydes/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ITEMS 5

static struct harness_server srv;

static void setup(void)
{
    harness_start(&srv, NULL);
}

static void teardown(void)
{
    harness_stop(&srv);
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void create_token(const char *role, char *secret)
{
    char body[128];
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"name\":\"ui-%s\"}", role, role);
    struct response r;
    harness_admin(&srv, "POST", "/tokens", body, &r);
    ck_assert_int_eq(r.status, 201);
    snprintf(secret, SECRET_TOKEN_LEN, "%s", json_str(r.json, "token"));
    response_cleanup(&r);
}

/* GET path without a token; asserts 200 and the Content-Type, and the headers every dashboard
 * file carries. The caller cleans r up. */
static void get_file(const char *path, const char *content_type, struct response *r)
{
    char v[512];
    harness_request(&srv, "GET", path, NULL, NULL, NULL, NULL, r);
    ck_assert_msg(r->status == 200, "%s: %ld", path, r->status);
    ck_assert(response_header(r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, content_type);
    ck_assert(response_header(r, "Content-Security-Policy", v, sizeof v));
    ck_assert_msg(strstr(v, "default-src 'self'") && strstr(v, "script-src 'self'") &&
                      strstr(v, "frame-ancestors 'none'") && !strstr(v, "unsafe-"),
                  "weak CSP: %s", v);
    ck_assert(response_header(r, "Cache-Control", v, sizeof v));
    ck_assert_str_eq(v, "no-cache");
    ck_assert(response_header(r, "X-Content-Type-Options", v, sizeof v));
    ck_assert_str_eq(v, "nosniff");
    ck_assert(response_header(r, "ETag", v, sizeof v));
    ck_assert(v[0] == '"');
    ck_assert_int_gt(r->body.len, 100);
}

/* A date-time a day from now, inside the prebooking horizon. */
static void tomorrow(char *out, size_t n)
{
    time_t t = time(NULL) + 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* POSTs body to path as admin, asserts status, and copies member key of the answer into id.
 * Waits 2 ms first, so the items a test makes carry distinct timestamps (milliseconds, for
 * tasks) and list in the reverse of the order they were made. */
static void create(const char *path, const char *body, long status, const char *key, char *id)
{
    harness_sleep_ms(2);
    struct response r;
    harness_admin(&srv, "POST", path, body, &r);
    ck_assert_msg(r.status == status, "POST %s: %ld %s", path, r.status, buf_str(&r.body));
    snprintf(id, 80, "%s", json_str(r.json, key));
    response_cleanup(&r);
}

/* Walks collection (key: its member) two items a page as admin and checks that the items,
 * identified by member idkey, come newest first: among them the n ids of ours in the reverse
 * of the order they were made, with nothing twice. Returns how many items it saw. */
static int walk_newest_first(const char *collection, const char *key, const char *idkey,
                             char ours[][80], int n)
{
    char path[512], prev_ts[64] = "9999";
    snprintf(path, sizeof path, "%s?limit=2", collection);
    int seen = 0, pages = 0, next_ours = n - 1;
    for (bool more = true; more; pages++) {
        ck_assert_int_lt(pages, 200);
        struct response r;
        harness_admin(&srv, "GET", path, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        json_t *items = json_object_get(r.json, key);
        ck_assert(json_is_array(items));
        ck_assert_int_le(json_array_size(items), 2);
        for (size_t i = 0; i < json_array_size(items); i++, seen++) {
            json_t *item = json_array_get(items, i);
            const char *ts = json_str(item, "submitted_at") ? json_str(item, "submitted_at")
                                                            : json_str(item, "created_at");
            ck_assert_msg(strcmp(ts, prev_ts) <= 0, "%s listed after %s", ts, prev_ts);
            snprintf(prev_ts, sizeof prev_ts, "%s", ts);
            ck_assert(json_is_string(json_object_get(json_object_get(item, "links"), "self")));
            if (next_ours >= 0 && strcmp(json_str(item, idkey), ours[next_ours]) == 0)
                next_ours--;
        }
        json_t *next = json_object_get(r.json, "next");
        ck_assert(json_is_string(next) || json_is_null(next));
        more = json_is_string(next);
        if (more) {
            ck_assert_int_eq(json_array_size(items), 2);
            snprintf(path, sizeof path, "%s?limit=2&after=%s", collection, json_string_value(next));
        }
        response_cleanup(&r);
    }
    ck_assert_msg(next_ours == -1, "%s: %d of ours not seen in order", collection, next_ours + 1);
    ck_assert_int_ge(pages, (n + 1) / 2);
    return seen;
}

/* The first item of GET path (as admin), a new reference. */
static json_t *first_item(const char *path, const char *key)
{
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *item = json_incref(json_array_get(json_object_get(r.json, key), 0));
    ck_assert_ptr_nonnull(item);
    response_cleanup(&r);
    return item;
}

/* ---- the dashboard's files ------------------------------------------------------------------- */

START_TEST(the_page_and_its_files_are_served_without_a_token)
{
    struct response r;
    get_file("/ui", "text/html; charset=utf-8", &r);
    const char *html = buf_str(&r.body);
    ck_assert(strstr(html, "<script src=\"/ui/app.js\""));
    ck_assert(strstr(html, "href=\"/ui/app.css\""));
    ck_assert_msg(!strstr(html, "http://") && !strstr(html, "https://"), "external reference");
    ck_assert_msg(!strstr(html, "<script>") && !strstr(html, "style=\""), "inline code");
    response_cleanup(&r);
    get_file("/ui/index.html", "text/html; charset=utf-8", &r);
    response_cleanup(&r);
    get_file("/ui/app.js", "text/javascript; charset=utf-8", &r);
    ck_assert(strstr(buf_str(&r.body), "sessionStorage"));
    ck_assert(!strstr(buf_str(&r.body), "https://"));
    response_cleanup(&r);
    get_file("/ui/app.css", "text/css; charset=utf-8", &r);
    ck_assert(!strstr(buf_str(&r.body), "@import") && !strstr(buf_str(&r.body), "url("));
    response_cleanup(&r);
    get_file("/ui/icon.svg", "image/svg+xml", &r);
    response_cleanup(&r);
    harness_request(&srv, "HEAD", "/ui", NULL, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
}
END_TEST

START_TEST(a_revalidation_with_the_etag_is_304)
{
    struct response r;
    char etag[128], header[200];
    get_file("/ui/app.js", "text/javascript; charset=utf-8", &r);
    ck_assert(response_header(&r, "ETag", etag, sizeof etag));
    response_cleanup(&r);
    snprintf(header, sizeof header, "If-None-Match: %s", etag);
    harness_request(&srv, "GET", "/ui/app.js", NULL, NULL, NULL, header, &r);
    ck_assert_int_eq(r.status, 304);
    ck_assert_int_eq(r.body.len, 0);
    response_cleanup(&r);
    harness_request(&srv, "GET", "/ui/app.js", NULL, NULL, NULL, "If-None-Match: \"other\"", &r);
    ck_assert_int_eq(r.status, 200);
    response_cleanup(&r);
}
END_TEST

START_TEST(unknown_files_are_404_problems)
{
    static const char *const paths[] = {"/ui/nope.js",    "/ui/APP.JS", "/ui/..%2fmeson.build",
                                        "/ui/app.js.map", "/ui/",       "/ui/index.html/x"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        struct response r;
        harness_request(&srv, "GET", paths[i], NULL, NULL, NULL, NULL, &r);
        assert_problem(&r, 404);
        response_cleanup(&r);
    }
    struct response r;
    char allow[64];
    harness_request(&srv, "POST", "/ui", NULL, "{}", NULL, NULL, &r);
    assert_problem(&r, 405);
    ck_assert(response_header(&r, "Allow", allow, sizeof allow));
    ck_assert_str_eq(allow, "GET, HEAD");
    response_cleanup(&r);
}
END_TEST

/* ---- the operators' lists -------------------------------------------------------------------- */

START_TEST(lists_need_an_admin_token)
{
    static const char *const lists[] = {"/tasks", "/rfqs", "/fares"};
    char app[SECRET_TOKEN_LEN], service[SECRET_TOKEN_LEN];
    create_token("app", app);
    create_token("service", service);
    for (size_t i = 0; i < 3; i++) {
        struct response r;
        harness_request(&srv, "GET", lists[i], NULL, NULL, NULL, NULL, &r);
        assert_problem(&r, 401);
        response_cleanup(&r);
        harness_request(&srv, "GET", lists[i], "not-a-token", NULL, NULL, NULL, &r);
        assert_problem(&r, 401);
        response_cleanup(&r);
        harness_request(&srv, "GET", lists[i], app, NULL, NULL, NULL, &r);
        assert_problem(&r, 403);
        response_cleanup(&r);
        harness_request(&srv, "GET", lists[i], service, NULL, NULL, NULL, &r);
        assert_problem(&r, 403);
        response_cleanup(&r);
        harness_request(&srv, "GET", lists[i], HARNESS_ADMIN_TOKEN, NULL, NULL, NULL, &r);
        ck_assert_int_eq(r.status, 200);
        response_cleanup(&r);
    }
}
END_TEST

START_TEST(tasks_are_listed_newest_first_as_get_shows_them)
{
    char ids[N_ITEMS][80], when[40], body[256];
    tomorrow(when, sizeof when);
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(body, sizeof body,
                 "{\"from\":\"A\",\"to\":\"B\",\"customer\":\"ui-task-%d\",\"when\":\"%s\"}", i,
                 when);
        create("/prebookings", body, 202, "id", ids[i]);
    }
    ck_assert_int_ge(walk_newest_first("/tasks", "tasks", "id", ids, N_ITEMS), N_ITEMS);
    json_t *item = first_item("/tasks?limit=1", "tasks");
    char path[128];
    snprintf(path, sizeof path, "/tasks/%s", ids[N_ITEMS - 1]);
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(json_equal(item, r.json), "the list shows the task as GET does");
    response_cleanup(&r);
    json_decref(item);
}
END_TEST

START_TEST(rfqs_are_listed_newest_first_with_their_request)
{
    char ids[N_ITEMS][80], body[256];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(body, sizeof body,
                 "{\"from\":\"Mitte\",\"to\":\"Wannsee\",\"customer\":\"ui-rfq-%d\","
                 "\"timeout_in_secs\":300}",
                 i);
        create("/rfqs", body, 202, "id", ids[i]);
    }
    ck_assert_int_ge(walk_newest_first("/rfqs", "rfqs", "id", ids, N_ITEMS), N_ITEMS);
    json_t *item = first_item("/rfqs?limit=1", "rfqs");
    ck_assert_str_eq(json_str(item, "id"), ids[N_ITEMS - 1]);
    ck_assert_str_eq(json_str(item, "status"), "running");
    ck_assert_str_eq(json_str(item, "from"), "Mitte");
    ck_assert_str_eq(json_str(item, "to"), "Wannsee");
    ck_assert_str_eq(json_str(item, "customer"), "ui-rfq-4");
    ck_assert(json_is_string(json_object_get(item, "eta")));
    ck_assert(json_is_string(json_object_get(item, "submitted_at")));
    ck_assert(json_is_integer(json_object_get(item, "response_count")));
    ck_assert(json_is_integer(json_object_get(item, "expected_responses")));
    char self[128];
    snprintf(self, sizeof self, "/rfqs/%s/status", ids[N_ITEMS - 1]);
    ck_assert_str_eq(json_str(json_object_get(item, "links"), "self"), self);
    json_decref(item);
}
END_TEST

START_TEST(fares_are_listed_newest_first_with_their_steps)
{
    char ids[N_ITEMS][80], body[512];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(body, sizeof body,
                 "{\"customerId\":\"ui-cust-%d\",\"fareId\":\"ui-fare-%d\",\"fareAmount\":"
                 "\"$1%d.50\",\"cc\":\"4242424242424242\",\"expiryDate\":\"12/30\",\"cvv\":"
                 "\"123\"}",
                 i, i, i);
        create("/fares", body, 202, "fare_id", ids[i]);
    }
    ck_assert_int_ge(walk_newest_first("/fares", "fares", "fare_id", ids, N_ITEMS), N_ITEMS);
    json_t *item = first_item("/fares?limit=1", "fares");
    ck_assert_str_eq(json_str(item, "fare_id"), "ui-fare-4");
    ck_assert_str_eq(json_str(item, "customer"), "ui-cust-4");
    ck_assert(json_real_value(json_object_get(item, "amount")) == 14.5);
    ck_assert_str_eq(json_str(item, "status"), "pending");
    ck_assert(json_is_false(json_object_get(item, "needs_operator")));
    ck_assert(json_is_null(json_object_get(item, "ride_id")));
    json_t *steps = json_object_get(item, "steps");
    ck_assert_int_eq(json_array_size(steps), 6);
    ck_assert_str_eq(json_str(json_array_get(steps, 0), "name"), "register");
    ck_assert_str_eq(json_str(json_array_get(steps, 5), "name"), "publish");
    ck_assert_str_eq(json_str(json_array_get(steps, 0), "status"), "pending");
    ck_assert_str_eq(json_str(json_object_get(item, "links"), "self"), "/fares/ui-fare-4");
    char *text = json_dumps(item, 0);
    ck_assert_msg(!strstr(text, "4242"), "no card digits in the list: %s", text);
    free(text);
    json_decref(item);
}
END_TEST

START_TEST(a_cursor_past_the_oldest_item_is_an_empty_last_page)
{
    static const char *const paths[] = {"/tasks?after=0.00000000-0000-0000-0000-000000000000",
                                        "/rfqs?after=0.00000000-0000-0000-0000-000000000000",
                                        "/fares?after=0.a"};
    static const char *const keys[] = {"tasks", "rfqs", "fares"};
    for (size_t i = 0; i < 3; i++) {
        struct response r;
        harness_admin(&srv, "GET", paths[i], NULL, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(json_array_size(json_object_get(r.json, keys[i])), 0);
        ck_assert(json_is_null(json_object_get(r.json, "next")));
        response_cleanup(&r);
    }
}
END_TEST

/* GET path as admin is a 400 naming field (and, when field2 is given, that one too). */
static void assert_invalid(const char *path, const char *field, const char *field2)
{
    struct response r;
    harness_admin(&srv, "GET", path, NULL, &r);
    assert_problem(&r, 400);
    ck_assert_msg(problem_names_field(&r, field), "%s: %s not named", path, field);
    ck_assert_msg(!field2 || problem_names_field(&r, field2), "%s: %s not named", path, field2);
    response_cleanup(&r);
}

START_TEST(invalid_list_queries_are_400_naming_the_field)
{
    static const char *const lists[] = {"/tasks", "/rfqs", "/fares"};
    static const char *const bad_limits[] = {"0", "1001", "-1", "abc", "1.5", ""};
    static const char *const bad_afters[] = {"abc",
                                             "123",
                                             ".0",
                                             "1.",
                                             "x.00000000-0000-0000-0000-000000000000",
                                             "99999999999999999999.0",
                                             "9007199254740992.a",
                                             "-1.a",
                                             "1.a.b",
                                             "1.a%20b"};
    char path[256];
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < sizeof bad_limits / sizeof *bad_limits; j++) {
            snprintf(path, sizeof path, "%s?limit=%s", lists[i], bad_limits[j]);
            assert_invalid(path, "limit", NULL);
        }
        for (size_t j = 0; j < sizeof bad_afters / sizeof *bad_afters; j++) {
            snprintf(path, sizeof path, "%s?after=%s", lists[i], bad_afters[j]);
            assert_invalid(path, "after", NULL);
        }
        snprintf(path, sizeof path, "%s?limit=0&after=zzz", lists[i]);
        assert_invalid(path, "limit", "after");
    }
    /* task and RFQ cursors carry UUIDs; a fare id of another shape is no cursor either */
    assert_invalid("/tasks?after=1.not-a-uuid", "after", NULL);
    assert_invalid("/rfqs?after=1.not-a-uuid", "after", NULL);
    assert_invalid("/fares?after=1.no%21", "after", NULL);
    assert_invalid("/rides?order=sideways", "order", NULL);
    assert_invalid("/rides?order=newest&limit=0", "limit", NULL);
}
END_TEST

START_TEST(rides_can_be_listed_newest_first)
{
    char ids[3][80], body[256];
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body,
                 "{\"from\":\"A\",\"to\":\"B\",\"customer\":\"ui-rider\",\"duration\":60,"
                 "\"distance\":%d,\"fare\":5}",
                 i + 1);
        create("/rides", body, 201, "id", ids[i]);
    }
    struct response r;
    harness_admin(&srv, "GET", "/rides?customer=ui-rider&order=newest&limit=2", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *rides = json_object_get(r.json, "rides");
    ck_assert_int_eq(json_array_size(rides), 2);
    ck_assert_str_eq(json_str(json_array_get(rides, 0), "id"), ids[2]);
    ck_assert_str_eq(json_str(json_array_get(rides, 1), "id"), ids[1]);
    char path[256];
    snprintf(path, sizeof path, "/rides?customer=ui-rider&order=newest&limit=2&after=%s",
             json_str(r.json, "next"));
    response_cleanup(&r);
    harness_admin(&srv, "GET", path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    rides = json_object_get(r.json, "rides");
    ck_assert_int_eq(json_array_size(rides), 1);
    ck_assert_str_eq(json_str(json_array_get(rides, 0), "id"), ids[0]);
    ck_assert(json_is_null(json_object_get(r.json, "next")));
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/rides?customer=ui-rider&order=oldest&limit=1", NULL, &r);
    ck_assert_str_eq(json_str(json_array_get(json_object_get(r.json, "rides"), 0), "id"), ids[0]);
    response_cleanup(&r);
    harness_admin(&srv, "GET", "/rides?order=newest&limit=1", NULL, &r);
    ck_assert_str_eq(json_str(json_array_get(json_object_get(r.json, "rides"), 0), "id"), ids[2]);
    response_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ui");
    TCase *tc = tcase_create("ui");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, the_page_and_its_files_are_served_without_a_token);
    tcase_add_test(tc, a_revalidation_with_the_etag_is_304);
    tcase_add_test(tc, unknown_files_are_404_problems);
    tcase_add_test(tc, lists_need_an_admin_token);
    tcase_add_test(tc, tasks_are_listed_newest_first_as_get_shows_them);
    tcase_add_test(tc, rfqs_are_listed_newest_first_with_their_request);
    tcase_add_test(tc, fares_are_listed_newest_first_with_their_steps);
    tcase_add_test(tc, a_cursor_past_the_oldest_item_is_an_empty_last_page);
    tcase_add_test(tc, invalid_list_queries_are_400_naming_the_field);
    tcase_add_test(tc, rides_can_be_listed_newest_first);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
