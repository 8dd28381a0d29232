/* Unit tests of the long-poll hub's waiters (rydes/mq_hub.h), without a database: the hub is
 * pointed at a port nobody listens on, so it stays offline and answers waiters by their
 * deadlines, pokes and shutdown only. Deadlines are met in any order of registration; a poke
 * wakes the oldest waiter of its queue and no other; the waiter limit and a stopping hub refuse;
 * a notification missed before registering wakes at once; tens of thousands of waiters on
 * thousands of queues keep all of that, the deadline heap and every queue's line checked
 * whole as they come and go. The hub's source is included so the tests can look inside. */
#include "../../src/mq/hub.c"

#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define OFFLINE "host=127.0.0.1 port=1 connect_timeout=1"

/* One waiter and what became of it. */
struct rec {
    struct mq_waiter w;
    int id;
    _Atomic int why; /* -1 until woken, then its enum mq_wake */
    int64_t woken_us;
};

static _Atomic int woken_count, woken_twice;

/* Called from the hub's thread too: records, asserts nothing (the tests do, on their own). */
static void on_wake(struct mq_waiter *w, enum mq_wake why)
{
    struct rec *r = w->ctx;
    r->woken_us = clock_mono_us();
    if (atomic_exchange(&r->why, (int)why) != -1)
        atomic_fetch_add(&woken_twice, 1);
    atomic_fetch_add(&woken_count, 1);
}

/* Checks the hub's waiters whole: the heap by deadline (each waiter where its heap_at says, no
 * parent after its children) and every queue's line (linked both ways, of that queue, as long
 * as its count), together every waiter once; and that nobody was woken twice. */
static void assert_waiters(struct mq_hub *h)
{
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->nwaiters; i++) {
        ck_assert_int_eq(h->heap[i]->heap_at, i);
        if (i > 0)
            ck_assert_int_le(h->heap[(i - 1) / 2]->deadline_us, h->heap[i]->deadline_us);
    }
    int in_lines = 0;
    for (size_t i = 0; i < h->qcap; i++) {
        const struct hub_queue *q = &h->queues[i];
        int n = 0;
        for (const struct mq_waiter *w = q->queue_id ? q->first : NULL; w; w = w->next, n++) {
            ck_assert_int_eq(w->queue_id, q->queue_id);
            ck_assert(n ? w->prev && w->prev->next == w : !w->prev && q->first == w);
            ck_assert(w->next ? w->next->prev == w : q->last == w);
            ck_assert_ptr_eq(h->heap[w->heap_at], w);
        }
        ck_assert_int_eq(n, q->queue_id ? q->waiters : 0);
        in_lines += n;
    }
    ck_assert_int_eq(in_lines, h->nwaiters);
    pthread_mutex_unlock(&h->mu);
    ck_assert_int_eq(atomic_load(&woken_twice), 0);
}

static void rec_init(struct rec *r, int id, int queue_id, int64_t deadline_us)
{
    r->id = id;
    atomic_init(&r->why, -1);
    r->woken_us = 0;
    r->w = (struct mq_waiter){
        .queue_id = queue_id, .deadline_us = deadline_us, .wake = on_wake, .ctx = r};
}

static enum mq_wait_result wait_on(struct mq_hub *h, struct rec *r)
{
    return mq_hub_wait(h, &r->w, mq_hub_seq(h, r->w.queue_id));
}

/* Waits up to timeout_ms for woken_count to reach n. */
static void wait_woken(int n, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10 && atomic_load(&woken_count) < n; i++)
        usleep(10000);
    ck_assert_int_eq(atomic_load(&woken_count), n);
}

#define FAR_US (60 * 1000000LL)

START_TEST(deadlines_are_met_whatever_the_order_of_registration)
{
    atomic_store(&woken_count, 0);
    struct mq_hub *h = mq_hub_start(OFFLINE, 1, 2000, NULL, NULL);
    enum { N = 2000 };
    struct rec *r = calloc(N, sizeof *r);
    int64_t t0 = clock_mono_us();
    unsigned seed = 7;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], i, 1 + i % 50, t0 + 50000 + rand_r(&seed) % 400000);
        ck_assert_int_eq(wait_on(h, &r[i]), MQ_WAIT_OK);
    }
    wait_woken(N, 10000);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&r[i].why), MQ_WAKE_TIMEOUT);
        ck_assert_int_ge(r[i].woken_us, r[i].w.deadline_us);           /* never early */
        ck_assert_int_lt(r[i].woken_us - r[i].w.deadline_us, 3000000); /* nor seconds late */
    }
    assert_waiters(h);
    ck_assert_int_eq(mq_hub_waiters(h), 0);
    mq_hub_free(h);
    free(r);
}
END_TEST

START_TEST(a_poke_wakes_the_oldest_waiter_of_its_queue)
{
    atomic_store(&woken_count, 0);
    struct mq_hub *h = mq_hub_start(OFFLINE, 1, 16, NULL, NULL);
    struct rec a1, b1, a2, b2, a3;
    int64_t far = clock_mono_us() + FAR_US;
    rec_init(&a1, 1, 7, far);
    rec_init(&b1, 2, 8, far - 1000); /* an earlier deadline does not make it first in line */
    rec_init(&a2, 3, 7, far - 2000);
    rec_init(&b2, 4, 8, far);
    rec_init(&a3, 5, 7, far);
    struct rec *all[] = {&a1, &b1, &a2, &b2, &a3};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(wait_on(h, all[i]), MQ_WAIT_OK);
    mq_hub_poke(h, 7);
    ck_assert_int_eq(atomic_load(&a1.why), MQ_WAKE_MESSAGE);
    ck_assert_int_eq(atomic_load(&a2.why), -1);
    mq_hub_poke(h, 7);
    ck_assert_int_eq(atomic_load(&a2.why), MQ_WAKE_MESSAGE);
    mq_hub_poke(h, 8);
    ck_assert_int_eq(atomic_load(&b1.why), MQ_WAKE_MESSAGE);
    mq_hub_poke(h, 9); /* nobody waits on 9 */
    ck_assert_int_eq(atomic_load(&woken_count), 3);
    ck_assert_int_eq(mq_hub_waiters(h), 2);
    assert_waiters(h);
    mq_hub_free(h); /* the rest are answered at shutdown */
    ck_assert_int_eq(atomic_load(&b2.why), MQ_WAKE_SHUTDOWN);
    ck_assert_int_eq(atomic_load(&a3.why), MQ_WAKE_SHUTDOWN);
}
END_TEST

START_TEST(the_limit_and_a_stopping_hub_refuse)
{
    atomic_store(&woken_count, 0);
    struct mq_hub *h = mq_hub_start(OFFLINE, 1, 3, NULL, NULL);
    struct rec r[5];
    int64_t far = clock_mono_us() + FAR_US;
    for (int i = 0; i < 5; i++)
        rec_init(&r[i], i, 1 + i, far);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(wait_on(h, &r[i]), MQ_WAIT_OK);
    ck_assert_int_eq(wait_on(h, &r[3]), MQ_WAIT_FULL);
    mq_hub_poke(h, 2); /* r[1] goes: room for one */
    ck_assert_int_eq(wait_on(h, &r[3]), MQ_WAIT_OK);
    mq_hub_request_stop(h);
    ck_assert_int_eq(wait_on(h, &r[4]), MQ_WAIT_STOPPING);
    ck_assert_int_eq(atomic_load(&woken_count), 4);
    ck_assert_int_eq(atomic_load(&r[4].why), -1); /* refused waiters are never called */
    mq_hub_free(h);
}
END_TEST

START_TEST(a_notification_missed_before_registering_wakes_at_once)
{
    atomic_store(&woken_count, 0);
    struct mq_hub *h = mq_hub_start(OFFLINE, 1, 4, NULL, NULL);
    struct rec r;
    rec_init(&r, 1, 5, clock_mono_us() + FAR_US);
    ck_assert_int_eq(mq_hub_wait(h, &r.w, mq_hub_seq(h, 5) + 1), MQ_WAIT_OK);
    ck_assert_int_eq(atomic_load(&r.why), MQ_WAKE_MESSAGE); /* from mq_hub_wait itself */
    ck_assert_int_eq(mq_hub_waiters(h), 0);
    mq_hub_free(h);
}
END_TEST

/* 20,000 waiters on 5,000 queues, four each in registration rounds 0..3, every one with a
 * deadline of its own: rounds 1 and 3 time out soon, rounds 0 and 2 wait on; then two pokes per
 * queue wake its round 0 and round 2 waiters, in that order. The pokes take waiters from
 * anywhere in the deadline heap, the expiries from its top; heap and lines are checked whole
 * along the way. */
START_TEST(many_waiters_on_many_queues)
{
    atomic_store(&woken_count, 0);
    enum { QUEUES = 5000, ROUNDS = 4, N = QUEUES * ROUNDS };
    struct mq_hub *h = mq_hub_start(OFFLINE, 1, N, NULL, NULL);
    struct rec *r = calloc(N, sizeof *r);
    int64_t t0 = clock_mono_us();
    unsigned seed = 11;
    for (int i = 0; i < N; i++) {
        int round = i / QUEUES;
        int64_t spread = rand_r(&seed) % 1000000; /* distinct deadlines, in no order */
        int64_t deadline = round % 2 ? t0 + 200000 + spread / 10 : t0 + FAR_US + spread;
        rec_init(&r[i], i, 1 + i % QUEUES, deadline);
        ck_assert_int_eq(wait_on(h, &r[i]), MQ_WAIT_OK);
    }
    assert_waiters(h);
    wait_woken(N / 2, 20000);
    assert_waiters(h);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(atomic_load(&r[i].why), (i / QUEUES) % 2 ? MQ_WAKE_TIMEOUT : -1);
    ck_assert_int_eq(mq_hub_waiters(h), N / 2);
    for (int q = 0; q < QUEUES; q++) {
        mq_hub_poke(h, 1 + q);
        ck_assert_int_eq(atomic_load(&r[q].why), MQ_WAKE_MESSAGE);
        ck_assert_int_eq(atomic_load(&r[2 * QUEUES + q].why), -1);
        if (q % 1000 == 999)
            assert_waiters(h);
    }
    for (int q = QUEUES - 1; q >= 0; q--) {
        mq_hub_poke(h, 1 + q);
        ck_assert_int_eq(atomic_load(&r[2 * QUEUES + q].why), MQ_WAKE_MESSAGE);
    }
    assert_waiters(h);
    ck_assert_int_eq(mq_hub_waiters(h), 0);
    ck_assert_int_eq(atomic_load(&woken_count), N);
    mq_hub_free(h);
    free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hub");
    TCase *tc = tcase_create("waiters");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, deadlines_are_met_whatever_the_order_of_registration);
    tcase_add_test(tc, a_poke_wakes_the_oldest_waiter_of_its_queue);
    tcase_add_test(tc, the_limit_and_a_stopping_hub_refuse);
    tcase_add_test(tc, a_notification_missed_before_registering_wakes_at_once);
    tcase_add_test(tc, many_waiters_on_many_queues);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
