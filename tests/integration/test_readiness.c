/* Integration: readiness follows the database. With the cluster stopped, /readyz and every
 * database-backed route answer 503 with Retry-After (quickly, never a hang) while /healthz stays
 * 200; once the cluster is back, everything recovers without restarting the server. Runs alone
 * (it stops the shared test cluster). */
#include "harness.h"

#include "rydes/clock.h"

#include <stdio.h>
#include <unistd.h>

static struct harness_server srv;

static long get_status(const char *path, const char *token)
{
    struct response r;
    harness_request(&srv, "GET", path, token, NULL, NULL, NULL, &r);
    long st = r.status;
    if (st == 503) {
        assert_problem(&r, 503);
        char retry[16];
        ck_assert(response_header(&r, "Retry-After", retry, sizeof retry));
    }
    response_cleanup(&r);
    return st;
}

static bool wait_for(const char *path, long status, int seconds)
{
    int64_t deadline = clock_mono_us() + (int64_t)seconds * 1000000;
    while (clock_mono_us() < deadline) {
        if (get_status(path, NULL) == status)
            return true;
        usleep(200000);
    }
    return false;
}

START_TEST(readiness_follows_the_database)
{
    harness_start(&srv, NULL);
    ck_assert_int_eq(get_status("/readyz", NULL), 200);
    ck_assert(harness_pgctl("stop"));
    ck_assert_msg(wait_for("/readyz", 503, 10), "readyz did not turn 503");
    int64_t t0 = clock_mono_us();
    ck_assert_int_eq(get_status("/tokens", HARNESS_ADMIN_TOKEN), 503);
    ck_assert_int_lt(clock_mono_us() - t0, 5 * 1000000); /* an answer, not a hang */
    ck_assert_int_eq(get_status("/healthz", NULL), 200);
    ck_assert(harness_pgctl("start"));
    ck_assert_msg(wait_for("/readyz", 200, 30), "readyz did not recover");
    ck_assert_int_eq(get_status("/tokens", HARNESS_ADMIN_TOKEN), 200);
    harness_stop(&srv);
}
END_TEST

int main(void)
{
    if (!getenv("RYDES_TEST_PGCTL")) {
        fprintf(stderr, "skipped: no cluster control (run through ./dev test)\n");
        return 77; /* meson: skipped */
    }
    Suite *s = suite_create("readiness");
    TCase *tc = tcase_create("readiness");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, readiness_follows_the_database);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
