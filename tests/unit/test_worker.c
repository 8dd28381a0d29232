/* Unit tests of the background step loops (src/core/worker.c): a stop waits for the current
 * step and no more; workers asked to stop together (worker_request_stop, then worker_stop each)
 * all finish their current step at once instead of one after the other. */
#include "rydes/worker.h"

#include "rydes/clock.h"

#include "unit.h"

#include <stdatomic.h>
#include <unistd.h>

#define STEP_US 200000

static atomic_int steps;

/* A step that takes STEP_US (as a database call that waits out a timeout) and runs again at
 * once. */
static int slow_step(struct worker *w, void *arg)
{
    (void)w;
    (void)arg;
    atomic_fetch_add(&steps, 1);
    usleep(STEP_US);
    return 0;
}

START_TEST(workers_asked_together_stop_together)
{
    struct worker *w[5];
    for (int i = 0; i < 5; i++)
        w[i] = worker_start(slow_step, NULL);
    usleep(STEP_US / 2);
    int64_t t0 = clock_mono_us();
    for (int i = 0; i < 5; i++)
        worker_request_stop(w[i]);
    for (int i = 0; i < 5; i++) {
        ck_assert(worker_stopping(w[i]));
        worker_stop(w[i]);
    }
    int64_t took = clock_mono_us() - t0;
    /* each finishes the step it was in: one step's time, not five (1 s one after the other) */
    ck_assert_msg(took < 2 * STEP_US, "stopping took %lld µs", (long long)took);
    ck_assert_int_le(atomic_load(&steps), 10);
}
END_TEST

START_TEST(a_sleeping_worker_stops_at_once)
{
    struct worker *w = worker_start(slow_step, NULL);
    usleep(STEP_US / 2);
    int64_t t0 = clock_mono_us();
    worker_stop(w);
    ck_assert_int_lt(clock_mono_us() - t0, 2 * STEP_US);
    worker_stop(NULL);
    worker_request_stop(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("stop");
    tcase_add_test(tc, workers_asked_together_stop_together);
    tcase_add_test(tc, a_sleeping_worker_stops_at_once);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
